//! A `kill -9` crash harness for any durable [`KvStore`] (after sled's
//! `test_crash_recovery` and RocksDB's blackbox crash test). Feature `testing`.
//!
//! The parent test re-runs its own test binary as a child that writes to the store and prints
//! `BEGIN key seq` before and `ACK key seq` after each write. Once the child has acknowledged
//! a random number of writes the parent kills it with SIGKILL, reopens the store and checks:
//! - every key holds exactly the value of its last acknowledged write, or of a write that
//!   began after it (in flight at the kill), never anything else and never torn bytes;
//! - the two keys of every batch hold the same sequence number (batches are all or nothing);
//! - whatever the backend's `leftovers` check reports (temporary files, journals) is empty.
//!
//! The store is kept across cycles, so recovery from a crash during a store that already
//! recovered from crashes is exercised too. Cycles: `HYBRIDSTORE_CRASH_CYCLES` (default 50);
//! seed: `HYBRIDSTORE_CRASH_SEED` (random, printed).
//!
//! A backend's integration tests use it like this (the child is an ignored test that does
//! nothing unless the parent started it):
//!
//! ```ignore
//! #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
//! #[ignore = "child process of kill_9_during_writes"]
//! async fn child_writer() {
//!     if let Some(child) = crash::ChildEnv::from_env() {
//!         crash::run_child(Arc::new(MyStore::open(&child.dir).await.unwrap()), child.epoch).await;
//!     }
//! }
//!
//! #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
//! async fn kill_9_during_writes() {
//!     crash::run_parent(crash::Parent {
//!         child_test: "crash::child_writer",
//!         open: &|dir| Box::pin(async move { Arc::new(MyStore::open(&dir).await.unwrap()) as _ }),
//!         leftovers: &|_dir| Vec::new(),
//!     }).await;
//! }
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use rand::{Rng, SeedableRng};

use crate::{Key, KvStore, WriteBatch};

const CHILD_DIR_ENV: &str = "HYBRIDSTORE_CRASH_CHILD_DIR";
const CHILD_EPOCH_ENV: &str = "HYBRIDSTORE_CRASH_CHILD_EPOCH";
const SINGLE_WRITERS: u64 = 3;
const KEYS_PER_WRITER: u64 = 6;
const PAIRS: u64 = 4;

/// The value written for `key` at `seq`: self-describing and fully determined by both, with
/// a length from 0 to 96 KiB so writes span one to many pages.
fn expected_value(key: &str, seq: u64) -> Bytes {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seq ^ (key.len() as u64) << 48 ^ fnv(key));
    let len = match rng.random_range(0..10) {
        0 => 0,
        1..=6 => rng.random_range(1..4096),
        _ => rng.random_range(4096..96 * 1024),
    };
    let mut v = format!("{key}|{seq}|").into_bytes();
    v.extend((0..len).map(|_| rng.random::<u8>()));
    Bytes::from(v)
}

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

fn seq_of(value: &[u8]) -> Option<u64> {
    // "<key>|<seq>|<payload>": neither key nor seq contains '|'.
    let mut fields = value.splitn(3, |&b| b == b'|');
    let _key = fields.next()?;
    std::str::from_utf8(fields.next()?).ok()?.parse().ok()
}

fn say(line: String) {
    let mut out = std::io::stdout().lock();
    // Bytes written to the pipe before SIGKILL survive it.
    let _ = out.write_all(line.as_bytes());
    let _ = out.flush();
}

/// What the parent tells the child through its environment.
#[derive(Clone, Debug)]
pub struct ChildEnv {
    /// Where the store lives.
    pub dir: PathBuf,
    /// The cycle number; sequence numbers start at `epoch * 1_000_000`.
    pub epoch: u64,
}

impl ChildEnv {
    /// `Some` only in a child started by [`run_parent`].
    pub fn from_env() -> Option<ChildEnv> {
        let dir = std::env::var_os(CHILD_DIR_ENV)?;
        let epoch = std::env::var(CHILD_EPOCH_ENV).ok()?.parse().ok()?;
        Some(ChildEnv {
            dir: PathBuf::from(dir),
            epoch,
        })
    }
}

/// The child's work: single-key writers and a batch writer, forever (until killed).
pub async fn run_child(store: Arc<dyn KvStore>, epoch: u64) {
    // libtest has printed "test crash::child_writer ... " without a newline: end that line.
    say("\n".to_string());
    let mut tasks = Vec::new();
    for w in 0..SINGLE_WRITERS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0.. {
                let key = format!("w{w}/k{}", i % KEYS_PER_WRITER);
                let seq = epoch * 1_000_000 + i;
                say(format!("BEGIN {key} {seq}\n"));
                store
                    .put(&Key::new(key.clone()).unwrap(), expected_value(&key, seq))
                    .await
                    .unwrap();
                say(format!("ACK {key} {seq}\n"));
            }
        }));
    }
    let pairs = store.clone();
    tasks.push(tokio::spawn(async move {
        for i in 0.. {
            let seq = epoch * 1_000_000 + i;
            let (a, b) = (
                format!("pair/a{}", i % PAIRS),
                format!("pair/b{}", i % PAIRS),
            );
            say(format!("BEGIN {a} {seq}\nBEGIN {b} {seq}\n"));
            let mut batch = WriteBatch::new();
            batch
                .put(Key::new(a.clone()).unwrap(), expected_value(&a, seq))
                .put(Key::new(b.clone()).unwrap(), expected_value(&b, seq));
            pairs.write_batch(batch).await.unwrap();
            say(format!("ACK {a} {seq}\nACK {b} {seq}\n"));
        }
    }));
    for t in tasks {
        t.await.unwrap();
    }
}

/// A boxed future returned by [`Parent::open`].
pub type OpenFuture = Pin<Box<dyn Future<Output = Arc<dyn KvStore>> + Send>>;

/// The parent's view of the backend under test.
pub struct Parent<'a> {
    /// Full name of the ignored child test in the same binary (e.g. `crash::child_writer`).
    pub child_test: &'a str,
    /// Opens (recovering) the store in a directory.
    pub open: &'a (dyn Fn(PathBuf) -> OpenFuture + Sync),
    /// Names of files a clean recovery must not leave behind in the directory.
    pub leftovers: &'a (dyn Fn(&Path) -> Vec<String> + Sync),
}

/// Per key: the values a reopened store may hold.
#[derive(Default, Clone, Debug)]
struct KeyState {
    /// Sequence number of the value known durable (acknowledged or observed after recovery).
    durable: Option<u64>,
    /// Writes begun after it and not acknowledged before the kill.
    in_flight: BTreeSet<u64>,
}

fn all_keys() -> Vec<String> {
    let mut keys = Vec::new();
    for w in 0..SINGLE_WRITERS {
        for k in 0..KEYS_PER_WRITER {
            keys.push(format!("w{w}/k{k}"));
        }
    }
    for p in 0..PAIRS {
        keys.push(format!("pair/a{p}"));
        keys.push(format!("pair/b{p}"));
    }
    keys
}

/// Runs the crash cycles against `parent`'s backend and panics on any broken promise.
pub async fn run_parent(parent: Parent<'_>) {
    let cycles: u64 = std::env::var("HYBRIDSTORE_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let seed: u64 = std::env::var("HYBRIDSTORE_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("crash test: {cycles} cycles, HYBRIDSTORE_CRASH_SEED={seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let mut state: BTreeMap<String, KeyState> = all_keys()
        .into_iter()
        .map(|k| (k, KeyState::default()))
        .collect();
    let mut total_acks = 0u64;

    for epoch in 1..=cycles {
        let kill_after = rng.random_range(1..=60u64);
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                parent.child_test,
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DIR_ENV, &root)
            .env(CHILD_EPOCH_ENV, epoch.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut lines = Vec::new();
        let mut acks = 0;
        while acks < kill_after {
            let line = rx
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|_| {
                    panic!("cycle {epoch}: child stalled or exited after {acks} acks")
                });
            acks += u64::from(line.contains("ACK "));
            lines.push(line);
        }
        child.kill().expect("SIGKILL");
        child.wait().unwrap();
        reader.join().unwrap();
        lines.extend(rx.try_iter());

        for line in &lines {
            // Tolerate anything the test harness printed before a tag on the same line.
            let Some(at) = line.find("BEGIN ").or_else(|| line.find("ACK ")) else {
                continue;
            };
            let mut parts = line[at..].split(' ');
            let (Some(tag), Some(key), Some(seq)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let Ok(seq) = seq.parse::<u64>() else {
                continue;
            };
            let Some(s) = state.get_mut(key) else {
                continue;
            };
            match tag {
                "BEGIN" => {
                    s.in_flight.insert(seq);
                }
                "ACK" => {
                    total_acks += 1;
                    s.durable = Some(seq);
                    s.in_flight.retain(|&x| x > seq);
                }
                _ => {}
            }
        }

        let store = (parent.open)(root.clone()).await;
        let leftovers = (parent.leftovers)(&root);
        assert!(
            leftovers.is_empty(),
            "cycle {epoch}: leftovers {leftovers:?}"
        );
        let mut observed = BTreeMap::new();
        for (key, s) in &state {
            let value = store
                .get(&Key::new(key.clone()).unwrap())
                .await
                .unwrap_or_else(|e| {
                    panic!("cycle {epoch} (seed {seed}): {key} unreadable after crash: {e}")
                });
            let seq = value.as_ref().map(|v| {
                let seq = seq_of(v)
                    .unwrap_or_else(|| panic!("cycle {epoch}: {key} holds a foreign value"));
                assert!(
                    *v == expected_value(key, seq),
                    "cycle {epoch} (seed {seed}): {key} seq {seq} torn"
                );
                seq
            });
            let allowed = seq == s.durable || seq.is_some_and(|q| s.in_flight.contains(&q));
            assert!(
                allowed,
                "cycle {epoch} (seed {seed}): {key} holds {seq:?}; acknowledged {:?}, in flight {:?}",
                s.durable, s.in_flight
            );
            observed.insert(key.clone(), seq);
        }
        for p in 0..PAIRS {
            let (a, b) = (
                &observed[&format!("pair/a{p}")],
                &observed[&format!("pair/b{p}")],
            );
            assert_eq!(
                a, b,
                "cycle {epoch} (seed {seed}): batch pair {p} half applied"
            );
        }
        for (key, seq) in observed {
            let s = state.get_mut(&key).unwrap();
            s.durable = seq;
            s.in_flight.clear();
        }
    }
    eprintln!("crash test: {cycles} kills, {total_acks} acknowledged writes checked");
    assert!(
        total_acks >= cycles,
        "too few writes were acknowledged to mean anything"
    );
}
