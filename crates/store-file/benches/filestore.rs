//! FileStore put and get against the same work done directly with `std::fs` in the same run.
//!
//! Groups `filestore_{put,get}_{4KiB,1MiB}`; in each, `baseline` is plain std::fs:
//! - put: write a temp file, `sync_all`, `rename` over the target, `fsync` the directory —
//!   the same durability FileStore gives, without its header, checksum and async hop;
//! - get: `std::fs::read` of a file of the same size, no checksum.
//!
//! `cargo xtask bench` turns these into ratios (FileStore time / baseline time).
#![allow(missing_docs, clippy::unwrap_used)]

use std::fs::{self, File};
use std::hint::black_box;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use hybridstore_core::{Bytes, Key, KvStore};
use hybridstore_file::{FileStore, FileStoreOptions};

const SIZES: [(usize, &str); 2] = [(4 * 1024, "4KiB"), (1024 * 1024, "1MiB")];
/// Keys cycled through, so puts overwrite like a real workload and directories stay small.
const KEYS: usize = 64;

fn value(len: usize) -> Bytes {
    Bytes::from((0..len).map(|i| (i * 31 % 251) as u8).collect::<Vec<_>>())
}

fn std_put(dir: &Path, name: &str, data: &[u8]) {
    let temp = dir.join(format!(".tmp.{name}"));
    let mut f = File::create(&temp).unwrap();
    f.write_all(data).unwrap();
    f.sync_all().unwrap();
    fs::rename(&temp, dir.join(name)).unwrap();
    File::open(dir).unwrap().sync_all().unwrap();
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    for (len, label) in SIZES {
        let data = value(len);
        let keys: Vec<Key> = (0..KEYS)
            .map(|i| Key::new(format!("bench/key-{i:03}")).unwrap())
            .collect();

        let mut group = c.benchmark_group(format!("filestore_put_{label}"));
        group.throughput(Throughput::Bytes(len as u64));
        group
            .sample_size(30)
            .measurement_time(Duration::from_secs(4))
            .warm_up_time(Duration::from_secs(1));
        let base = tempfile::tempdir().unwrap();
        let mut i = 0usize;
        group.bench_function(BenchmarkId::from_parameter("baseline"), |b| {
            b.iter(|| {
                i += 1;
                std_put(base.path(), &format!("key-{:03}", i % KEYS), &data);
            })
        });
        let dir = tempfile::tempdir().unwrap();
        let store = rt.block_on(FileStore::open(dir.path())).unwrap();
        let mut i = 0usize;
        group.bench_function(BenchmarkId::from_parameter("filestore"), |b| {
            b.to_async(&rt).iter(|| {
                i += 1;
                let (store, key, data) = (&store, &keys[i % KEYS], data.clone());
                async move { store.put(key, data).await.unwrap() }
            })
        });
        group.finish();

        let mut group = c.benchmark_group(format!("filestore_get_{label}"));
        group.throughput(Throughput::Bytes(len as u64));
        group
            .sample_size(50)
            .measurement_time(Duration::from_secs(3))
            .warm_up_time(Duration::from_secs(1));
        for k in 0..KEYS {
            std_put(base.path(), &format!("key-{k:03}"), &data);
        }
        let mut i = 0usize;
        group.bench_function(BenchmarkId::from_parameter("baseline"), |b| {
            b.iter(|| {
                i += 1;
                black_box(fs::read(base.path().join(format!("key-{:03}", i % KEYS))).unwrap())
            })
        });
        rt.block_on(async {
            for k in &keys {
                store.put(k, data.clone()).await.unwrap();
            }
        });
        let mut i = 0usize;
        group.bench_function(BenchmarkId::from_parameter("filestore"), |b| {
            b.to_async(&rt).iter(|| {
                i += 1;
                let (store, key) = (&store, &keys[i % KEYS]);
                async move { black_box(store.get(key).await.unwrap()) }
            })
        });
        drop(store);
        let mut options = FileStoreOptions::default();
        options.verify_reads = false;
        let unverified = rt
            .block_on(FileStore::open_with(dir.path(), options))
            .unwrap();
        let mut i = 0usize;
        group.bench_function(BenchmarkId::from_parameter("filestore_unverified"), |b| {
            b.to_async(&rt).iter(|| {
                i += 1;
                let (store, key) = (&unverified, &keys[i % KEYS]);
                async move { black_box(store.get(key).await.unwrap()) }
            })
        });
        group.finish();
    }
}

criterion_group!(filestore, benches);
criterion_main!(filestore);
