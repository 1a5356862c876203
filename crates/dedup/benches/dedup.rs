//! The dedup write path stage by stage, each against plain single-threaded SHA-256 (`sha2`)
//! of the same bytes in the same run, so the slowest stage is visible:
//!
//! - `baseline`: SHA-256 of the whole input, one thread;
//! - `chunking`: FastCDC cut points (default 4/16/64 KiB);
//! - `chunk_hashing`: SHA-256 of every chunk (the chunk ids);
//! - `compression`: LZ4 of every chunk into its blob (`encode_blob`, CRC included);
//! - `pipeline`: the whole in-memory write path, `DedupStore::write_batch` over
//!   `MemoryStore`s into a fresh store each iteration (chunk, hash, compress, pack, manifests),
//!   which encodes on the blocking pool and so uses both cores.
//!
//! Input: the first 32 MiB of the Rust documentation HTML (`rustc --print sysroot`), cut into
//! its files, or, without the docs, generated HTML-like text of the same size.
//! `cargo xtask bench dedup` reports each as MB/s and as a ratio to `baseline`.
#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use hybridstore_core::{Bytes, Key, KvStore, MemoryStore, Sha256Digest, WriteBatch};
use hybridstore_dedup::{ChunkerConfig, DedupOptions, DedupStore, encode_blob};

const INPUT_BYTES: usize = 32 * 1024 * 1024;

/// Files of the Rust docs up to INPUT_BYTES, or generated ones.
fn input_files() -> Vec<Vec<u8>> {
    let sysroot = std::process::Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let mut files = Vec::new();
    let mut total = 0;
    if let Some(root) = sysroot.map(|s| s.join("share/doc/rust/html/std")) {
        let mut stack = vec![root];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            let mut entries: Vec<_> = entries.flatten().map(|e| e.path()).collect();
            entries.sort();
            for path in entries {
                if path.is_dir() {
                    stack.push(path);
                } else if let Ok(data) = std::fs::read(&path) {
                    total += data.len();
                    files.push(data);
                    if total >= INPUT_BYTES {
                        eprintln!("dedup bench: {} Rust doc files, {total} bytes", files.len());
                        return files;
                    }
                }
            }
        }
    }
    eprintln!("dedup bench: no Rust docs found; generated HTML-like input");
    files.clear();
    let mut total = 0;
    let mut i = 0u64;
    while total < INPUT_BYTES {
        let mut page = String::new();
        for line in 0..300u64 {
            let n = (i * 7919 + line).wrapping_mul(2_654_435_761);
            page.push_str(&format!(
                "<div class=\"item\"><a href=\"fn.{n:x}.html\">item {line}</a> {n}</div>\n"
            ));
        }
        total += page.len();
        files.push(page.into_bytes());
        i += 1;
    }
    files
}

fn benches(c: &mut Criterion) {
    let files = input_files();
    let all: Vec<u8> = files.concat();
    let config = ChunkerConfig::default();
    let spans: Vec<(usize, usize)> = files
        .iter()
        .scan(0usize, |start, f| {
            let s = *start;
            *start += f.len();
            Some((s, f))
        })
        .flat_map(|(start, f)| {
            config
                .spans(f)
                .map(move |(o, l)| (start + o, l))
                .collect::<Vec<_>>()
        })
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();

    let mut group = c.benchmark_group("dedup_write_path_32MiB");
    group.throughput(Throughput::Bytes(all.len() as u64));
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(6));
    group.bench_function(BenchmarkId::from_parameter("baseline"), |b| {
        b.iter(|| black_box(Sha256Digest::of(&all)))
    });
    group.bench_function(BenchmarkId::from_parameter("chunking"), |b| {
        b.iter(|| files.iter().map(|f| config.spans(f).count()).sum::<usize>())
    });
    group.bench_function(BenchmarkId::from_parameter("chunk_hashing"), |b| {
        b.iter(|| {
            for &(o, l) in &spans {
                black_box(Sha256Digest::of(&all[o..o + l]));
            }
        })
    });
    group.bench_function(BenchmarkId::from_parameter("compression"), |b| {
        b.iter(|| {
            for &(o, l) in &spans {
                black_box(encode_blob(&all[o..o + l]));
            }
        })
    });
    let values: Vec<(Key, Bytes)> = files
        .iter()
        .enumerate()
        .map(|(i, f)| {
            (
                Key::new(format!("f/{i:06}")).unwrap(),
                Bytes::from(f.clone()),
            )
        })
        .collect();
    group.bench_function(BenchmarkId::from_parameter("pipeline"), |b| {
        b.to_async(&rt).iter_batched(
            || {
                let store = futures::executor::block_on(DedupStore::open(
                    MemoryStore::new(),
                    Arc::new(MemoryStore::new()),
                    DedupOptions::default(),
                ));
                let mut batches = Vec::new();
                for group in values.chunks(512) {
                    let mut batch = WriteBatch::new();
                    for (k, v) in group {
                        batch.put(k.clone(), v.clone());
                    }
                    batches.push(batch);
                }
                (Arc::new(store.unwrap()), batches)
            },
            |(store, batches)| async move {
                // Two batches in flight, as the facade's ingest runs them.
                let mut tasks = Vec::new();
                for batch in batches {
                    let store = store.clone();
                    tasks.push(tokio::spawn(async move { store.write_batch(batch).await }));
                    if tasks.len() == 2 {
                        tasks.remove(0).await.unwrap().unwrap();
                    }
                }
                for t in tasks {
                    t.await.unwrap().unwrap();
                }
                black_box(store.chunk_store().stats())
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(dedup, benches);
criterion_main!(dedup);
