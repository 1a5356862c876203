//! SqlStore on SQLite against plain `rusqlite` doing the same work in the same run.
//!
//! Every value is 1 KiB. The baseline is one rusqlite connection with the same pragmas
//! (`journal_mode=WAL`, `synchronous=NORMAL`), the same schema (the crate's migration file)
//! and the same statements, prepared once (`prepare_cached`), with the same SHA-256 checksum
//! computed per put. Groups (`baseline` vs `sqlstore` in each):
//! - `sqlstore_put_1KiB`: one upsert;
//! - `sqlstore_batch_put_1000x1KiB`: 1,000 upserts in one transaction (`write_batch`; the
//!   baseline runs its single-row upsert 1,000 times inside `BEGIN IMMEDIATE … COMMIT`);
//! - `sqlstore_get_1KiB`: one point select;
//! - `sqlstore_get_many_100x1KiB`: 100 keys (`get_many`; the baseline runs its point select
//!   100 times), also through a tenant scope (`namespaced`: `Namespaced<SqlStore>` forwards
//!   `get_many` to the batched query, so it costs what `sqlstore` costs, not 100 gets);
//! - `sqlstore_concurrent_get_1024x1KiB`: 1,024 point gets, from 8 tasks doing 128 each for
//!   SqlStore, sequentially on the one connection for the baseline.
//!
//! `cargo xtask bench sqlstore` turns these into ratios (SqlStore time / baseline time).
#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use hybridstore_core::{Bytes, Key, KvStore, Namespaced, Sha256Digest, TenantId, WriteBatch};
use hybridstore_sql::{SqlStore, SqlStoreOptions};
use rusqlite::{Connection, params};

const VALUE_LEN: usize = 1024;
/// Keys preloaded for the read benchmarks.
const PRELOADED: usize = 10_000;
const BATCH: usize = 1000;
const MANY: usize = 100;
const TASKS: usize = 8;
const GETS_PER_TASK: usize = 128;

const UPSERT: &str = "INSERT INTO kv_objects \
    (key, value, size, created, modified, checksum, content_type, dedup_hash) \
    VALUES (?1, ?2, ?3, ?4, ?4, ?5, ?6, ?7) \
    ON CONFLICT (key) DO UPDATE SET value = excluded.value, size = excluded.size, \
    modified = excluded.modified, checksum = excluded.checksum, \
    content_type = excluded.content_type, dedup_hash = excluded.dedup_hash";
const SELECT_VALUE: &str = "SELECT value FROM kv_objects WHERE key = ?1";

fn value(seed: usize) -> Bytes {
    Bytes::from(
        (0..VALUE_LEN)
            .map(|i| ((i + seed) * 31 % 251) as u8)
            .collect::<Vec<_>>(),
    )
}

fn key_name(i: usize) -> String {
    format!("bench/key-{i:06}")
}

fn nanos_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

/// The baseline: one connection, same pragmas, same schema.
fn rusqlite_db(path: &std::path::Path) -> Connection {
    let conn = Connection::open(path).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.pragma_update(None, "synchronous", "NORMAL").unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    // As SqlStore's inline readers (`SqlStoreOptions::sqlite_mmap_bytes`).
    conn.pragma_update(None, "mmap_size", 256 * 1024 * 1024)
        .unwrap();
    conn.execute_batch(include_str!("../migrations/sqlite/0001_schema.sql"))
        .unwrap();
    conn
}

fn rusqlite_put(conn: &Connection, key: &[u8], value: &[u8]) {
    let checksum = Sha256Digest::of(value).to_hex();
    conn.prepare_cached(UPSERT)
        .unwrap()
        .execute(params![
            key,
            value,
            value.len() as i64,
            nanos_now(),
            checksum,
            None::<String>,
            None::<Vec<u8>>
        ])
        .unwrap();
}

fn rusqlite_get(conn: &Connection, key: &[u8]) -> Option<Vec<u8>> {
    let mut stmt = conn.prepare_cached(SELECT_VALUE).unwrap();
    let mut rows = stmt.query(params![key]).unwrap();
    rows.next().unwrap().map(|r| r.get(0).unwrap())
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let conn = rusqlite_db(&dir.path().join("baseline.db"));
    let store = Arc::new(
        rt.block_on(SqlStore::open_sqlite_file(
            dir.path().join("sqlstore.db"),
            SqlStoreOptions::default(),
        ))
        .unwrap(),
    );
    let keys: Vec<Key> = (0..PRELOADED)
        .map(|i| Key::new(key_name(i)).unwrap())
        .collect();
    let values: Vec<Bytes> = (0..64).map(value).collect();

    // Preload both databases with the same rows.
    conn.execute_batch("BEGIN IMMEDIATE").unwrap();
    for (i, k) in keys.iter().enumerate() {
        rusqlite_put(&conn, k.as_bytes(), &values[i % values.len()]);
    }
    conn.execute_batch("COMMIT").unwrap();
    for chunk in keys.chunks(BATCH) {
        let mut batch = WriteBatch::new();
        for (i, k) in chunk.iter().enumerate() {
            batch.put(k.clone(), values[i % values.len()].clone());
        }
        rt.block_on(store.write_batch(batch)).unwrap();
    }

    // ---- single put ----
    let mut group = c.benchmark_group("sqlstore_put_1KiB");
    group.throughput(Throughput::Bytes(VALUE_LEN as u64));
    group
        .sample_size(40)
        .measurement_time(Duration::from_secs(4));
    let mut i = 0usize;
    group.bench_function(BenchmarkId::from_parameter("baseline"), |b| {
        b.iter(|| {
            i += 1;
            rusqlite_put(
                &conn,
                keys[i % PRELOADED].as_bytes(),
                &values[i % values.len()],
            );
        })
    });
    let mut i = 0usize;
    group.bench_function(BenchmarkId::from_parameter("sqlstore"), |b| {
        b.to_async(&rt).iter(|| {
            i += 1;
            let (store, key, value) = (&store, &keys[i % PRELOADED], values[i % 64].clone());
            async move { store.put(key, value).await.unwrap() }
        })
    });
    group.finish();

    // ---- batched put ----
    let mut group = c.benchmark_group("sqlstore_batch_put_1000x1KiB");
    group.throughput(Throughput::Bytes((BATCH * VALUE_LEN) as u64));
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(6));
    let mut round = 0usize;
    group.bench_function(BenchmarkId::from_parameter("baseline"), |b| {
        b.iter(|| {
            round += 1;
            conn.execute_batch("BEGIN IMMEDIATE").unwrap();
            for j in 0..BATCH {
                let k = (round * BATCH + j) % PRELOADED;
                rusqlite_put(&conn, keys[k].as_bytes(), &values[(round + j) % 64]);
            }
            conn.execute_batch("COMMIT").unwrap();
        })
    });
    let mut round = 0usize;
    group.bench_function(BenchmarkId::from_parameter("sqlstore"), |b| {
        b.to_async(&rt).iter(|| {
            round += 1;
            let mut batch = WriteBatch::new();
            for j in 0..BATCH {
                let k = (round * BATCH + j) % PRELOADED;
                batch.put(keys[k].clone(), values[(round + j) % 64].clone());
            }
            let store = &store;
            async move { store.write_batch(batch).await.unwrap() }
        })
    });
    group.finish();

    // ---- point get ----
    let mut group = c.benchmark_group("sqlstore_get_1KiB");
    group.throughput(Throughput::Bytes(VALUE_LEN as u64));
    group
        .sample_size(50)
        .measurement_time(Duration::from_secs(3));
    let mut i = 0usize;
    group.bench_function(BenchmarkId::from_parameter("baseline"), |b| {
        b.iter(|| {
            i += 7919;
            black_box(rusqlite_get(&conn, keys[i % PRELOADED].as_bytes()).unwrap());
        })
    });
    let mut i = 0usize;
    group.bench_function(BenchmarkId::from_parameter("sqlstore"), |b| {
        b.to_async(&rt).iter(|| {
            i += 7919;
            let (store, key) = (&store, &keys[i % PRELOADED]);
            async move { black_box(store.get(key).await.unwrap().unwrap()) }
        })
    });
    group.finish();

    // ---- get_many ----
    let mut group = c.benchmark_group("sqlstore_get_many_100x1KiB");
    group.throughput(Throughput::Bytes((MANY * VALUE_LEN) as u64));
    group
        .sample_size(40)
        .measurement_time(Duration::from_secs(4));
    let mut round = 0usize;
    group.bench_function(BenchmarkId::from_parameter("baseline"), |b| {
        b.iter(|| {
            round += 1;
            for j in 0..MANY {
                let k = (round * 7919 + j * 97) % PRELOADED;
                black_box(rusqlite_get(&conn, keys[k].as_bytes()).unwrap());
            }
        })
    });
    let mut round = 0usize;
    group.bench_function(BenchmarkId::from_parameter("sqlstore"), |b| {
        b.to_async(&rt).iter(|| {
            round += 1;
            let wanted: Vec<Key> = (0..MANY)
                .map(|j| keys[(round * 7919 + j * 97) % PRELOADED].clone())
                .collect();
            let store = &store;
            async move {
                let got = store.get_many(&wanted).await.unwrap();
                assert!(got.iter().all(Option::is_some));
                black_box(got)
            }
        })
    });
    // The same rows under a tenant's prefix, read through the tenant layer.
    let tenant = Namespaced::new(store.clone(), TenantId::new("bench").unwrap());
    for chunk in keys[..MANY * 8].chunks(BATCH) {
        let mut batch = WriteBatch::new();
        for (i, k) in chunk.iter().enumerate() {
            batch.put(k.clone(), values[i % values.len()].clone());
        }
        rt.block_on(tenant.write_batch(batch)).unwrap();
    }
    let mut round = 0usize;
    group.bench_function(BenchmarkId::from_parameter("namespaced"), |b| {
        b.to_async(&rt).iter(|| {
            round += 1;
            let wanted: Vec<Key> = (0..MANY)
                .map(|j| keys[(round * 7919 + j * 97) % (MANY * 8)].clone())
                .collect();
            let tenant = &tenant;
            async move {
                let got = tenant.get_many(&wanted).await.unwrap();
                assert!(got.iter().all(Option::is_some));
                black_box(got)
            }
        })
    });
    group.finish();

    // ---- concurrent point gets ----
    let total = TASKS * GETS_PER_TASK;
    let mut group = c.benchmark_group(format!("sqlstore_concurrent_get_{total}x1KiB"));
    group.throughput(Throughput::Bytes((total * VALUE_LEN) as u64));
    group
        .sample_size(40)
        .measurement_time(Duration::from_secs(4));
    let mut round = 0usize;
    group.bench_function(BenchmarkId::from_parameter("baseline"), |b| {
        b.iter(|| {
            round += 1;
            for j in 0..total {
                let k = (round * 7919 + j * 131) % PRELOADED;
                black_box(rusqlite_get(&conn, keys[k].as_bytes()).unwrap());
            }
        })
    });
    let keys = Arc::new(keys);
    let mut round = 0usize;
    group.bench_function(BenchmarkId::from_parameter("sqlstore"), |b| {
        b.to_async(&rt).iter(|| {
            round += 1;
            let tasks: Vec<_> = (0..TASKS)
                .map(|t| {
                    let (store, keys) = (store.clone(), keys.clone());
                    tokio::spawn(async move {
                        for g in 0..GETS_PER_TASK {
                            let j = t * GETS_PER_TASK + g;
                            let k = (round * 7919 + j * 131) % PRELOADED;
                            black_box(store.get(&keys[k]).await.unwrap().unwrap());
                        }
                    })
                })
                .collect();
            async move {
                for t in tasks {
                    t.await.unwrap();
                }
            }
        })
    });
    group.finish();
}

criterion_group!(sqlstore, benches);
criterion_main!(sqlstore);
