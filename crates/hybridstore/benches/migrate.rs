//! `StorageMigrator` against the write it cannot avoid, in the same run:
//!
//! - `baseline`: the same values, already in memory, written into a fresh SQLite `SqlStore`
//!   in write batches of 512 keys (the migration's batch size): the target's own cost;
//! - `storage_migrator`: `StorageMigrator` from a `FileStore` holding those values into a
//!   fresh SQLite `SqlStore`: the plan (both scans), reading the source, the same batched
//!   writes, and reading every copy back to compare its SHA-256.
//!
//! Input: 4,000 values of 1 to 16 KiB (32 MiB in all, about the Rust documentation's median
//! file size), incompressible. `cargo xtask bench migrate` reports both as MB/s and the
//! migrator as a ratio to `baseline`.
#![allow(missing_docs, clippy::unwrap_used)]

use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use hybridstore::StorageMigrator;
use hybridstore::core::{Key, KvStore, WriteBatch};
use hybridstore::migrate::MIGRATE_BATCH_KEYS;

const VALUES: usize = 4_000;

fn values() -> Vec<(Key, hybridstore::core::Bytes)> {
    (0..VALUES)
        .map(|i| {
            let len = 1024 + (i * 7919) % (15 * 1024);
            (
                Key::new(format!("docs/{i:05}.html")).unwrap(),
                hybridstore_core::conformance::incompressible(len, i as u64 + 1),
            )
        })
        .collect()
}

fn fresh_sqlite(
    runtime: &tokio::runtime::Runtime,
) -> (tempfile::TempDir, hybridstore::sql::SqlStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = runtime.block_on(async {
        hybridstore::sql::SqlStore::open_sqlite_file(dir.path().join("kv.db"), Default::default())
            .await
            .unwrap()
    });
    (dir, store)
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let values = values();
    let bytes: u64 = values.iter().map(|(_, v)| v.len() as u64).sum();
    let source_dir = tempfile::tempdir().unwrap();
    let source = runtime.block_on(async {
        let source = hybridstore::file::FileStore::open(source_dir.path())
            .await
            .unwrap();
        for group in values.chunks(MIGRATE_BATCH_KEYS) {
            let mut batch = WriteBatch::new();
            for (k, v) in group {
                batch.put(k.clone(), v.clone());
            }
            source.write_batch(batch).await.unwrap();
        }
        source
    });

    let mut group = c.benchmark_group("migrate");
    group.throughput(Throughput::Bytes(bytes));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.bench_function("baseline", |b| {
        b.iter_batched(
            || fresh_sqlite(&runtime),
            |(_dir, target)| {
                runtime.block_on(async {
                    for chunk in values.chunks(MIGRATE_BATCH_KEYS) {
                        let mut batch = WriteBatch::new();
                        for (k, v) in chunk {
                            batch.put(k.clone(), v.clone());
                        }
                        target.write_batch(batch).await.unwrap();
                    }
                })
            },
            BatchSize::PerIteration,
        )
    });
    group.bench_function("storage_migrator", |b| {
        b.iter_batched(
            || fresh_sqlite(&runtime),
            |(_dir, target)| {
                runtime.block_on(async {
                    let report = StorageMigrator::new(&source, &target)
                        .run(|_| {})
                        .await
                        .unwrap();
                    assert_eq!(report.copied, VALUES as u64);
                })
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
