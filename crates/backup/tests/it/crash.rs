//! kill -9 in the middle of backups, 20 times at random points: the repository stays valid,
//! every acknowledged snapshot verifies and restores, and the next backup succeeds.
//!
//! The parent re-runs this test binary as a child (the ignored `child_backups` test) that
//! backs up a changing store into a repository on a FileStore, printing `ACK <id>` after each
//! snapshot is written; the parent kills it with SIGKILL after a random number of
//! acknowledgements plus a random delay (so the kill lands anywhere in a backup: reading
//! chunks, writing packs, writing the tree or the record), then checks the repository.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt;
use hybridstore_backup::{
    BackupSource, KeySource, ReadData, Repository, SourceEntry, SourceValue, backup, restore_keys,
    verify,
};
use hybridstore_core::conformance::incompressible;
use hybridstore_core::{ErrorKind, Key, KeyRange, KvStore, MemoryStore};
use hybridstore_dedup::{DedupOptions, DedupStore, Manifest};
use hybridstore_file::FileStore;
use rand::{Rng, SeedableRng};

const DIR_ENV: &str = "HYBRIDSTORE_BACKUP_CRASH_DIR";
const EPOCH_ENV: &str = "HYBRIDSTORE_BACKUP_CRASH_EPOCH";
const CYCLES: u64 = 20;

async fn source(store: &DedupStore<Arc<dyn KvStore>>) -> BackupSource {
    let mut entries = Vec::new();
    let mut scan = std::pin::pin!(store.scan_manifests(KeyRange::all()));
    while let Some((key, manifest, meta)) = scan.try_next().await.unwrap() {
        entries.push(SourceEntry {
            key,
            meta,
            value: match manifest {
                Manifest::Inline(v) => SourceValue::Inline(v),
                Manifest::Chunked(list) => SourceValue::Chunks(list.chunks),
            },
        });
    }
    BackupSource {
        time: chrono::Local::now().fixed_offset(),
        host: "crash-test".into(),
        source: "/crash".into(),
        tags: vec![],
        keys: Some(KeySource {
            entries,
            chunks: Some(store.chunk_store().clone()),
            values: None,
        }),
        files: vec![],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "child process of kill_9_during_backups"]
async fn child_backups() {
    let (Ok(dir), Ok(epoch)) = (std::env::var(DIR_ENV), std::env::var(EPOCH_ENV)) else {
        return;
    };
    let epoch: u64 = epoch.parse().unwrap();
    let repo_store: Arc<dyn KvStore> = Arc::new(FileStore::open(&dir).await.unwrap());
    let repo = Repository::open_or_init(repo_store).await.unwrap();
    let manifests: Arc<dyn KvStore> = Arc::new(MemoryStore::new());
    let store = DedupStore::open(
        manifests,
        Arc::new(MemoryStore::new()),
        DedupOptions::default(),
    )
    .await
    .unwrap();
    for round in 0u64.. {
        // Each round changes a few keys: new chunks every time, some shared with earlier
        // rounds and earlier children.
        for i in 0..24u64 {
            let seed = if i % 3 == 0 {
                epoch * 1000 + round * 31 + i
            } else {
                i
            };
            let key = Key::new(format!("k/{i:02}")).unwrap();
            store
                .put(&key, incompressible(40_000 + (i as usize) * 1000, seed + 1))
                .await
                .unwrap();
        }
        store
            .put(
                &Key::new("round").unwrap(),
                Bytes::from(format!("{epoch}/{round}")),
            )
            .await
            .unwrap();
        let done = backup(&repo, source(&store).await, &|_| {}).await.unwrap();
        println!("ACK {}", done.id);
    }
}

async fn check(dir: &Path, acknowledged: &BTreeSet<String>) {
    let store: Arc<dyn KvStore> = Arc::new(FileStore::open(dir).await.unwrap());
    let repo = match Repository::open(store).await {
        // Killed before the first `init` wrote its config (the commit point): no repository
        // yet is a valid state, and the next child creates it.
        Err(e) if e.kind() == ErrorKind::NotFound && acknowledged.is_empty() => return,
        other => other.unwrap(),
    };
    let ids: BTreeSet<String> = repo.snapshot_ids().await.unwrap().into_iter().collect();
    assert!(
        acknowledged.is_subset(&ids),
        "every acknowledged snapshot is there"
    );
    let report = verify(&repo, ReadData::All, &|_, _| {}).await.unwrap();
    assert!(
        report.is_ok(),
        "the repository verifies: {:?}",
        report.problems
    );
    for id in &ids {
        let snapshot = repo.load_snapshot(id).await.unwrap();
        let target = MemoryStore::new();
        let restored = restore_keys(&repo, &snapshot, &target, None, &|_| {})
            .await
            .unwrap();
        assert_eq!(
            restored.keys, snapshot.summary.keys,
            "snapshot {id} restores whole"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_backups() {
    let seed: u64 = std::env::var("HYBRIDSTORE_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("kill_9_during_backups: seed {seed} (HYBRIDSTORE_CRASH_SEED)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("repo");
    let mut acknowledged = BTreeSet::new();
    for epoch in 0..CYCLES {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "crash::child_backups",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(DIR_ENV, &dir)
            .env(EPOCH_ENV, epoch.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let wanted = rng.random_range(0..3usize);
        let delay = Duration::from_millis(rng.random_range(0..80));
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(id) = line.strip_prefix("ACK ")
                    && tx.send(id.to_string()).is_err()
                {
                    break;
                }
            }
        });
        for _ in 0..wanted {
            let id = rx
                .recv_timeout(Duration::from_secs(120))
                .expect("the child acknowledges backups");
            acknowledged.insert(id);
        }
        // The kill lands at a random point of the next backup (or between two).
        let deadline = std::time::Instant::now() + delay;
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            match rx.recv_timeout(left) {
                Ok(id) => {
                    acknowledged.insert(id);
                }
                Err(_) => break,
            }
        }
        child.kill().unwrap();
        child.wait().unwrap();
        // Anything acknowledged before the kill counts.
        while let Ok(id) = rx.try_recv() {
            acknowledged.insert(id);
        }
        check(&dir, &acknowledged).await;
    }
    assert!(!acknowledged.is_empty(), "some backups completed");
    // And the next backup succeeds.
    let store: Arc<dyn KvStore> = Arc::new(FileStore::open(&dir).await.unwrap());
    let repo = Repository::open(store).await.unwrap();
    let manifests: Arc<dyn KvStore> = Arc::new(MemoryStore::new());
    let source_store = DedupStore::open(
        manifests,
        Arc::new(MemoryStore::new()),
        DedupOptions::default(),
    )
    .await
    .unwrap();
    source_store
        .put(&Key::new("after").unwrap(), incompressible(100_000, 77))
        .await
        .unwrap();
    backup(&repo, source(&source_store).await, &|_| {})
        .await
        .unwrap();
}
