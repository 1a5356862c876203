//! How free the async workers stay during an ingest and a `verify`: a probe task on the same
//! runtime asks to be woken every millisecond and records how late each wake-up comes. A
//! worker held by blocking work (hashing, compression, file-system calls, a SQLite busy wait)
//! shows up as late wake-ups.
//!
//! ```text
//! cargo run --release -p hybridstore --example latency_probe -- [--source DIR] [--workers N]
//! ```
//!
//! Without `--source` it ingests a generated tree (2,000 files of 64–192 KiB, half text, half
//! noise; about 250 MB). Prints p50, p99 and the largest wake-up delay of each phase, in
//! milliseconds, and the phase's duration.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)] // a measuring tool

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hybridstore::{HybridStorageSystem, StorageConfig};

/// Wake-up delays in microseconds, recorded by the probe task.
#[derive(Default)]
struct Delays(Mutex<Vec<u64>>);

impl Delays {
    fn take(&self) -> Vec<u64> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    // Nearest rank.
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1] as f64 / 1000.0
}

fn report(phase: &str, elapsed: Duration, mut delays: Vec<u64>) {
    delays.sort_unstable();
    println!(
        "{phase:<8} {:>7.1} s  wake-ups {:>6}  p50 {:>6.2} ms  p99 {:>7.2} ms  max {:>8.2} ms",
        elapsed.as_secs_f64(),
        delays.len(),
        percentile(&delays, 50.0),
        percentile(&delays, 99.0),
        delays.last().copied().unwrap_or(0) as f64 / 1000.0
    );
}

fn generate(dir: &Path) {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    for i in 0..2000u64 {
        let sub = dir.join(format!("d{:02}", i % 40));
        std::fs::create_dir_all(&sub).unwrap();
        let len = 64 * 1024 + (i as usize * 7919) % (128 * 1024);
        let bytes: Vec<u8> = if i % 2 == 0 {
            let words = [
                "storage ",
                "chunk ",
                "manifest ",
                "pack ",
                "lifetime ",
                "borrow ",
            ];
            words
                .iter()
                .cycle()
                .skip(i as usize % 6)
                .flat_map(|w| w.bytes())
                .take(len)
                .collect()
        } else {
            (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect()
        };
        let ext = if i % 2 == 0 { "txt" } else { "bin" };
        std::fs::write(sub.join(format!("f{i:05}.{ext}")), bytes).unwrap();
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let workers: usize = arg("--workers").map_or(2, |w| w.parse().unwrap());
    let work = tempfile::tempdir().unwrap();
    let source: PathBuf = match arg("--source") {
        Some(s) => PathBuf::from(s),
        None => {
            let dir = work.path().join("source");
            generate(&dir);
            dir
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let delays = Arc::new(Delays::default());
        let probe = {
            let delays = delays.clone();
            tokio::spawn(async move {
                let tick = Duration::from_millis(1);
                loop {
                    let asked = Instant::now();
                    tokio::time::sleep(tick).await;
                    let late = asked.elapsed().saturating_sub(tick);
                    delays.0.lock().unwrap().push(late.as_micros() as u64);
                }
            })
        };
        let mut config = StorageConfig::with_data_dir(work.path().join("data"));
        config.analytics = false; // its own thread; not what is measured here
        let system = HybridStorageSystem::open(config).await.unwrap();
        delays.take();
        let started = Instant::now();
        let ingested = system.ingest_dir(&source, "", |_| {}).await.unwrap();
        report("ingest", started.elapsed(), delays.take());
        println!(
            "         {} files, {} bytes, {} errors",
            ingested.files,
            ingested.bytes,
            ingested.errors.len()
        );
        let started = Instant::now();
        let verified = system.verify(|_, _| {}).await.unwrap();
        report("verify", started.elapsed(), delays.take());
        println!(
            "         {} keys, {} damaged",
            verified.checked_keys,
            verified.damaged.len()
        );
        probe.abort();
    });
}
