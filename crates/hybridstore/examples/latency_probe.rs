//! How free the async workers stay during an ingest and a `verify`: a probe task on the same
//! runtime asks to be woken every millisecond and records how late each wake-up comes. A
//! worker held by blocking work (hashing, compression, file-system calls, a SQLite busy wait)
//! shows up as late wake-ups.
//!
//! ```text
//! cargo run --release -p hybridstore --example latency_probe -- [--source DIR] [--workers N]
//! ```
//!
//! Analytics and the passage index (LanceDB's full-text builder) are off: what is measured is
//! the storage path. Without `--source` it ingests a generated tree (2,000 files of 64–192
//! KiB, half text, half noise, and 16 files of 24 MiB of noise; about 650 MB). Prints p50, p99 and the largest wake-up delay of each phase, in
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
    // A few large values, where CPU work done on a worker (hashing, compression) would hold
    // it for milliseconds at a time.
    let big = dir.join("big");
    std::fs::create_dir_all(&big).unwrap();
    for i in 0..16u64 {
        let bytes: Vec<u8> = (0..24 << 20)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        std::fs::write(big.join(format!("b{i:02}.bin")), bytes).unwrap();
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
        // Measured: the storage path (dedup, SQLite, files). Analytics writes on a thread of
        // its own; the passage index is LanceDB's work (its full-text index builder runs
        // on the caller's runtime), so both are off.
        config.analytics = false;
        config.vectors = false;
        let system = HybridStorageSystem::open(config).await.unwrap();
        delays.take();
        // The work runs as tasks on the runtime's workers, beside the probe (`block_on` itself
        // runs on the main thread, where blocking would not touch the workers).
        let started = Instant::now();
        let (s, src) = (system.clone(), source.clone());
        let ingested = tokio::spawn(async move { s.ingest_dir(&src, "", |_| {}).await })
            .await
            .unwrap()
            .unwrap();
        report("ingest", started.elapsed(), delays.take());
        println!(
            "         {} files, {} bytes, {} errors",
            ingested.files,
            ingested.bytes,
            ingested.errors.len()
        );
        let started = Instant::now();
        let s = system.clone();
        let verified = tokio::spawn(async move { s.verify(|_, _| {}).await })
            .await
            .unwrap()
            .unwrap();
        report("verify", started.elapsed(), delays.take());
        println!(
            "         {} keys, {} damaged",
            verified.checked_keys,
            verified.damaged.len()
        );
        probe.abort();
    });
}
