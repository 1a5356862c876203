//! CachedStore read latencies, each against a baseline measured in the same run:
//!
//! - group `cache_l1`: an L1 hit (`CachedStore::get`, L1 only) against `baseline`, a bare
//!   `moka::future::Cache::get` of the same 1 KiB value (so the ratio is the layer's own cost);
//! - group `cache_l2`: an L2 hit (`CachedStore::get`, L1 off) and a miss (Redis miss, lease,
//!   backend read, lease fill) against `baseline`, a plain `GET` of the same 1 KiB value from
//!   the same Redis through the same client (`redis::aio::ConnectionManager`).
//!
//! Criterion reports medians; before it runs, the bench also samples 20,000 single calls of
//! each case, interleaved with its baseline, for p50/p99 and runs 8 concurrent tasks for throughput, and writes
//! `<target>/bench-report/cache.md` and `cache.json`. Redis is a private `redis-server` on a
//! free loopback port (the bench is skipped when `redis-server` is missing).
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr
)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use hybridstore_cache::testing::RedisServer;
use hybridstore_cache::{CacheConfig, CachedStore, RedisConfig};
use hybridstore_core::bench_report::write_bench_report;
use hybridstore_core::{Bytes, Key, KvStore, MemoryStore};
use redis::aio::ConnectionManager;
use tokio::runtime::Runtime;

const VALUE_BYTES: usize = 1024;
const SAMPLES: usize = 20_000;
const TASKS: usize = 8;
const OPS_PER_TASK: usize = 5_000;

struct Setup {
    runtime: Runtime,
    _server: RedisServer,
    key: Key,
    value: Bytes,
    moka: moka::future::Cache<Key, Bytes>,
    l1: Arc<CachedStore<MemoryStore>>,
    l2: Arc<CachedStore<MemoryStore>>,
    conn: ConnectionManager,
    plain_key: Vec<u8>,
}

fn setup() -> Option<Setup> {
    let server = RedisServer::start()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let key = Key::new("bench/value").unwrap();
    let value = Bytes::from(vec![0x5Au8; VALUE_BYTES]);
    let (moka, l1, l2, conn, plain_key) = runtime.block_on(async {
        let moka = moka::future::Cache::builder().max_capacity(1 << 20).build();
        moka.insert(key.clone(), value.clone()).await;
        let l1 = CachedStore::open(MemoryStore::new(), CacheConfig::l1_only(64 << 20)).unwrap();
        l1.put(&key, value.clone()).await.unwrap();
        l1.get(&key).await.unwrap();
        let redis = RedisConfig::new(server.url()).with_namespace("bench");
        let l2 = CachedStore::open(
            MemoryStore::new(),
            CacheConfig::l1_only(0).with_redis(redis),
        )
        .unwrap();
        l2.put(&key, value.clone()).await.unwrap();
        l2.get(&key).await.unwrap(); // fills Redis
        let client = redis::Client::open(server.url()).unwrap();
        let mut conn = ConnectionManager::new(client).await.unwrap();
        let plain_key = b"plain:bench/value".to_vec();
        let _: () = redis::cmd("SET")
            .arg(&plain_key)
            .arg(value.as_ref())
            .query_async(&mut conn)
            .await
            .unwrap();
        (moka, Arc::new(l1), Arc::new(l2), conn, plain_key)
    });
    Some(Setup {
        runtime,
        _server: server,
        key,
        value,
        moka,
        l1,
        l2,
        conn,
        plain_key,
    })
}

async fn plain_get(conn: &ConnectionManager, key: &[u8]) -> Option<Vec<u8>> {
    let mut conn = conn.clone();
    redis::cmd("GET")
        .arg(key)
        .query_async(&mut conn)
        .await
        .unwrap()
}

/// One timed call of each case; a miss first makes the key cold (untimed).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Case {
    MokaGet,
    L1Hit,
    PlainRedisGet,
    L2Hit,
    Miss,
}

impl Case {
    fn name(self) -> &'static str {
        match self {
            Case::MokaGet => "moka get (L1 baseline)",
            Case::L1Hit => "L1 hit",
            Case::PlainRedisGet => "plain Redis GET (L2 baseline)",
            Case::L2Hit => "L2 hit",
            Case::Miss => "miss (Redis miss + backend + fill)",
        }
    }
}

async fn once(s: &Setup, case: Case) -> Duration {
    if case == Case::Miss {
        s.l2.put(&s.key, s.value.clone()).await.unwrap(); // untimed: invalidates, cold again
    }
    let started = Instant::now();
    match case {
        Case::MokaGet => drop(black_box(s.moka.get(&s.key).await)),
        Case::L1Hit => drop(black_box(s.l1.get(&s.key).await.unwrap())),
        Case::PlainRedisGet => drop(black_box(plain_get(&s.conn, &s.plain_key).await)),
        Case::L2Hit | Case::Miss => drop(black_box(s.l2.get(&s.key).await.unwrap())),
    }
    started.elapsed()
}

struct Row {
    case: Case,
    p50_ns: f64,
    p99_ns: f64,
    ops_per_s: f64,
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index].as_nanos() as f64
}

/// p50/p99 of SAMPLES single calls of each case, the cases interleaved call by call so
/// machine noise falls on baseline and case alike; then the throughput of TASKS concurrent
/// tasks per case.
fn sample(s: &Arc<Setup>, cases: &[Case]) -> Vec<Row> {
    let mut times: Vec<Vec<Duration>> = s.runtime.block_on(async {
        for _ in 0..1000 {
            for &case in cases {
                once(s, case).await; // warm-up
            }
        }
        let mut times = vec![Vec::with_capacity(SAMPLES); cases.len()];
        for _ in 0..SAMPLES {
            for (i, &case) in cases.iter().enumerate() {
                times[i].push(once(s, case).await);
            }
        }
        times
    });
    let mut rows = Vec::new();
    for (i, &case) in cases.iter().enumerate() {
        times[i].sort();
        let started = Instant::now();
        s.runtime.block_on(async {
            let tasks: Vec<_> = (0..TASKS)
                .map(|_| {
                    let s = s.clone();
                    tokio::spawn(async move {
                        for _ in 0..OPS_PER_TASK {
                            once(&s, case).await;
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
        });
        let elapsed = started.elapsed().as_secs_f64();
        rows.push(Row {
            case,
            p50_ns: percentile(&times[i], 0.50),
            p99_ns: percentile(&times[i], 0.99),
            ops_per_s: (TASKS * OPS_PER_TASK) as f64 / elapsed,
        });
    }
    rows
}

fn latency_report(s: &Arc<Setup>) {
    // Interleaved within a tier only: network calls between L1 calls would evict the CPU
    // caches L1 hits live on and measure that instead.
    let mut rows = sample(s, &[Case::MokaGet, Case::L1Hit]);
    rows.extend(sample(s, &[Case::PlainRedisGet, Case::L2Hit, Case::Miss]));
    let baseline = |case: Case| match case {
        Case::MokaGet | Case::L1Hit => Case::MokaGet,
        _ => Case::PlainRedisGet,
    };
    let find = |case: Case| rows.iter().find(|r| r.case == case).unwrap();
    let mut md = format!(
        "# CachedStore latency ({VALUE_BYTES}-byte values, {SAMPLES} single calls each; \
         throughput: {TASKS} tasks x {OPS_PER_TASK} calls, 2 worker threads)\n\n\
         | case | p50 | p99 | p50 ratio | p99 ratio | throughput |\n|---|---|---|---|---|---|\n"
    );
    let mut json = Vec::new();
    for row in &rows {
        let base = find(baseline(row.case));
        let (r50, r99) = (row.p50_ns / base.p50_ns, row.p99_ns / base.p99_ns);
        md.push_str(&format!(
            "| {} | {:.2} µs | {:.2} µs | {r50:.2}x | {r99:.2}x | {:.0} ops/s |\n",
            row.case.name(),
            row.p50_ns / 1e3,
            row.p99_ns / 1e3,
            row.ops_per_s
        ));
        json.push(serde_json::json!({
            "case": row.case.name(),
            "p50_ns": row.p50_ns,
            "p99_ns": row.p99_ns,
            "p50_ratio": r50,
            "p99_ratio": r99,
            "ops_per_s": row.ops_per_s,
        }));
    }
    md.push_str(
        "\nRatios: L1 rows against the bare moka get, L2 rows against the plain Redis GET.\n",
    );
    eprintln!("\n{md}");
    match write_bench_report(
        "cache",
        &md,
        &serde_json::to_string_pretty(&json).unwrap_or_default(),
    ) {
        Ok(path) => eprintln!("cache bench: wrote {}", path.display()),
        Err(e) => eprintln!("cache bench: cannot write the report: {e}"),
    }
}

fn benches(c: &mut Criterion) {
    let Some(s) = setup() else {
        eprintln!("cache bench: SKIPPED, redis-server is not installed");
        return;
    };
    let s = Arc::new(s);
    latency_report(&s);

    let mut l1 = c.benchmark_group("cache_l1");
    l1.bench_function("baseline", |b| {
        b.to_async(&s.runtime)
            .iter(|| async { black_box(s.moka.get(&s.key).await) })
    });
    l1.bench_function("l1_hit", |b| {
        b.to_async(&s.runtime)
            .iter(|| async { black_box(s.l1.get(&s.key).await.unwrap()) })
    });
    l1.finish();

    let mut l2 = c.benchmark_group("cache_l2");
    l2.bench_function("baseline", |b| {
        b.to_async(&s.runtime)
            .iter(|| async { black_box(plain_get(&s.conn, &s.plain_key).await) })
    });
    l2.bench_function("l2_hit", |b| {
        b.to_async(&s.runtime)
            .iter(|| async { black_box(s.l2.get(&s.key).await.unwrap()) })
    });
    l2.bench_function("miss", |b| {
        b.to_async(&s.runtime).iter_custom(|iters| {
            let s = s.clone();
            async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    total += once(&s, Case::Miss).await;
                }
                total
            }
        })
    });
    l2.finish();
}

criterion_group! {
    name = cache;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(3));
    targets = benches
}
criterion_main!(cache);
