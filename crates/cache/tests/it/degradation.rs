//! Redis down, slow, killed and restarted: callers see no errors and no stale values, the
//! breaker stops the calls, the cache recovers by itself, and secrets stay out of logs.

use std::io::Write;
use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hybridstore_cache::testing::RedisServer;
use hybridstore_cache::{CacheConfig, CachedStore, RedisConfig};
use hybridstore_core::{Bytes, KvStore, MemoryStore};
use rand::{Rng, SeedableRng};

use crate::support::{key, redis_config};

/// 4 tasks × 1,500 mixed operations on 64 keys; Redis is SIGKILLed after the 1,500th
/// operation and restarted after the 3,500th. No call fails; afterwards every key reads its
/// last written value, through this node and through a fresh node sharing the Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_killed_and_restarted_during_a_workload() {
    const KEYS: usize = 64;
    const OPS_PER_TASK: u64 = 1500;
    const KILL_AT: u64 = 1500;
    const RESTART_AT: u64 = 3500;
    let Some(server) = RedisServer::start() else {
        return;
    };
    let server = Arc::new(server);
    let backend = MemoryStore::new();
    let redis = redis_config(&server);
    let store = Arc::new(
        CachedStore::open(
            backend.clone(),
            CacheConfig::l1_only(1 << 20).with_redis(redis.clone()),
        )
        .unwrap(),
    );
    let last: Arc<Vec<tokio::sync::Mutex<Option<Bytes>>>> =
        Arc::new((0..KEYS).map(|_| tokio::sync::Mutex::new(None)).collect());
    let ops = Arc::new(AtomicU64::new(0));
    let at_restart = Arc::new(Mutex::new(None));
    let tasks: Vec<_> = (0..4)
        .map(|t| {
            let (store, last, ops, server, at_restart) = (
                store.clone(),
                last.clone(),
                ops.clone(),
                server.clone(),
                at_restart.clone(),
            );
            tokio::spawn(async move {
                let mut rng = rand::rngs::StdRng::seed_from_u64(rand::random());
                for n in 0..OPS_PER_TASK {
                    match ops.fetch_add(1, Ordering::SeqCst) + 1 {
                        KILL_AT => server.kill(),
                        RESTART_AT => {
                            server.restart();
                            *at_restart.lock().unwrap() = Some(store.cache_stats());
                        }
                        _ => {}
                    }
                    let i = rng.random_range(0..KEYS);
                    let k = key(&format!("w/{i}"));
                    match rng.random_range(0..10) {
                        0..=2 => {
                            let mut slot = last[i].lock().await;
                            let v = Bytes::from(format!("task {t} op {n}"));
                            store
                                .put(&k, v.clone())
                                .await
                                .expect("put during Redis faults");
                            *slot = Some(v);
                        }
                        3 => {
                            let mut slot = last[i].lock().await;
                            store.delete(&k).await.expect("delete during Redis faults");
                            *slot = None;
                        }
                        4 => {
                            store
                                .get_many(&[k.clone(), key("w/absent")])
                                .await
                                .expect("get_many during Redis faults");
                        }
                        _ => {
                            store.get(&k).await.expect("get during Redis faults");
                        }
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let stats = store.cache_stats();
    let before_restart = at_restart
        .lock()
        .unwrap()
        .clone()
        .expect("restart happened");
    assert!(
        stats.redis_errors > 0 && stats.breaker_opens > 0,
        "Redis was down: {stats:?}"
    );
    assert!(
        before_restart.l2_skipped > 0,
        "the breaker skipped Redis: {before_restart:?}"
    );

    // Every key reads its last written value, here and through a fresh node sharing Redis.
    let fresh =
        CachedStore::open(backend.clone(), CacheConfig::l1_only(0).with_redis(redis)).unwrap();
    for i in 0..KEYS {
        let k = key(&format!("w/{i}"));
        let expected = last[i].lock().await.clone();
        assert_eq!(
            store.get(&k).await.unwrap(),
            expected,
            "key {i} on the node"
        );
        assert_eq!(
            fresh.get(&k).await.unwrap(),
            expected,
            "key {i} on a fresh node"
        );
        assert_eq!(
            backend.get(&k).await.unwrap(),
            expected,
            "key {i} in the backend"
        );
    }

    // The cache recovers by itself: Redis answers again within the breaker's longest open
    // period (400 ms here); poll for an L2 hit with a 10 s deadline.
    let probe_key = key("w/recovery");
    store
        .put(&probe_key, Bytes::from_static(b"back"))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    for attempt in 0.. {
        fresh.get(&probe_key).await.unwrap();
        // A read that misses L1 on the node replays its deferred invalidations.
        store.get(&key(&format!("w/poll{attempt}"))).await.unwrap();
        if fresh.cache_stats().l2_hits > 0 && store.cache_stats().pending_invalidations == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Redis never used again: {:?}",
            fresh.cache_stats()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A Redis that accepts connections and never answers: every call still succeeds, none takes
/// much more than the configured timeout, and the breaker stops the attempts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_redis_adds_at_most_the_timeout() {
    let black_hole = TcpListener::bind("127.0.0.1:0").unwrap(); // never accepts, never replies
    let port = black_hole.local_addr().unwrap().port();
    let timeout = Duration::from_millis(100);
    let redis = RedisConfig::new(format!("redis://127.0.0.1:{port}/"))
        .with_timeout(timeout)
        .with_breaker(3, Duration::from_secs(30), Duration::from_secs(30));
    let store = CachedStore::open(
        MemoryStore::new(),
        CacheConfig::l1_only(0).with_redis(redis),
    )
    .unwrap();
    let mut slowest = Duration::ZERO;
    for i in 0..50 {
        let k = key(&format!("k{i}"));
        let started = Instant::now();
        store.put(&k, Bytes::from_static(b"v")).await.unwrap();
        assert_eq!(store.get(&k).await.unwrap().as_deref(), Some(&b"v"[..]));
        slowest = slowest.max(started.elapsed());
    }
    // Each put + get pair makes at most 2 Redis calls, each cut at the timeout; generous
    // slack for a loaded machine, far below the client's own 1 s connect default.
    assert!(
        slowest < 2 * timeout + Duration::from_millis(300),
        "slowest put+get {slowest:?}"
    );
    // The invalidations deferred since the first failure are replayed by one background
    // task, whose failures open the breaker (within a bounded wait: 3 timeouts and backoff).
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.cache_stats().breaker_opens == 0 {
        assert!(Instant::now() < deadline, "{:?}", store.cache_stats());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stats = store.cache_stats();
    assert_eq!(stats.breaker_opens, 1, "{stats:?}");
    assert!(
        stats.redis_errors <= 3,
        "the breaker stopped the calls: {stats:?}"
    );
    assert!(stats.l2_skipped >= 45, "{stats:?}");
    assert_eq!(stats.pending_invalidations, 50, "{stats:?}");
    drop(black_hole);
}

/// A shared buffer the test's log subscriber writes into.
#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn redis_passwords_never_reach_logs_or_debug_output() {
    let logs = LogBuffer::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let closed_port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("redis://user:s3cr3t-pw@127.0.0.1:{closed_port}/0");
    tracing::subscriber::with_default(subscriber, || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let config = CacheConfig::l1_only(1 << 20).with_redis(RedisConfig::new(url.clone()));
            let debug_config = format!("{config:?}");
            let store = CachedStore::open(MemoryStore::new(), config).unwrap();
            for i in 0..10 {
                let k = key(&format!("k{i}"));
                store.put(&k, Bytes::from_static(b"v")).await.unwrap();
                store.get(&k).await.unwrap();
            }
            // The background replay of the deferred invalidations opens the breaker (and
            // logs it) after three refused connections.
            let deadline = Instant::now() + Duration::from_secs(10);
            while store.cache_stats().breaker_opens == 0 {
                assert!(Instant::now() < deadline, "{:?}", store.cache_stats());
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let debug_store = format!("{store:?}");
            for shown in [&debug_config, &debug_store] {
                assert!(!shown.contains("s3cr3t-pw"), "{shown}");
                assert!(
                    shown.contains(&format!("redis://user:***@127.0.0.1:{closed_port}/0")),
                    "{shown}"
                );
            }
            let bad = CachedStore::open(
                MemoryStore::new(),
                CacheConfig::l1_only(1).with_redis(RedisConfig::new("redis://u:s3cr3t-pw@[::1")),
            )
            .unwrap_err();
            assert!(!bad.to_string().contains("s3cr3t-pw"), "{bad}");
        });
    });
    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("redis cache tier unavailable"),
        "logs were captured: {logs}"
    );
    assert!(!logs.contains("s3cr3t-pw"), "{logs}");
}

/// A TCP relay on a loopback port to a Redis server that can cut every connection and refuse
/// new ones, so one node loses Redis while another keeps it.
struct Relay {
    port: u16,
    open: Arc<std::sync::atomic::AtomicBool>,
    links: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn to(upstream: u16) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let open = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let links: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let (o, l) = (open.clone(), links.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !o.load(Ordering::SeqCst) {
                    continue; // dropped: the client sees the connection closed
                }
                let link = tokio::spawn(async move {
                    if let Ok(mut outbound) =
                        tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                l.lock().unwrap().push(link.abort_handle());
            }
        });
        Relay {
            port,
            open,
            links,
            accept,
        }
    }

    fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

/// Regression (issue 15, defect 7): an invalidation that could not reach Redis was replayed
/// only by a later read of the node that deferred it, so a node that only writes left the
/// stale value in Redis for every other node until the L2 TTL. Now a background task
/// replays it as soon as Redis answers again, and the other node reads the new value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deferred_invalidation_reaches_redis_without_another_read() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let relay = Relay::to(server.port()).await;
    let backend = MemoryStore::new();
    let shared = redis_config(&server).with_timeout(Duration::from_millis(100));
    let mut through_relay = shared.clone();
    through_relay.url = format!("redis://127.0.0.1:{}/", relay.port).into();
    // The writer node reaches Redis through the relay; the reader node directly. Neither
    // has an L1, so every read asks Redis.
    let writer = CachedStore::open(
        backend.clone(),
        CacheConfig::l1_only(0).with_redis(through_relay),
    )
    .unwrap();
    let reader =
        CachedStore::open(backend.clone(), CacheConfig::l1_only(0).with_redis(shared)).unwrap();
    let k = key("deferred/key");
    writer.put(&k, Bytes::from_static(b"v1")).await.unwrap();
    assert_eq!(reader.get(&k).await.unwrap().as_deref(), Some(&b"v1"[..]));
    assert_eq!(reader.get(&k).await.unwrap().as_deref(), Some(&b"v1"[..]));
    assert_eq!(reader.cache_stats().l2_hits, 1, "Redis holds v1");

    relay.cut();
    writer.put(&k, Bytes::from_static(b"v2")).await.unwrap();
    assert_eq!(writer.cache_stats().pending_invalidations, 1);
    relay.restore();
    // The writer node does nothing more. Within a bounded wait the reader must see v2.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if reader.get(&k).await.unwrap().as_deref() == Some(&b"v2"[..]) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Redis still serves the value the writer replaced: {:?}",
            writer.cache_stats()
        );
        tokio::task::yield_now().await;
    }
    // The replay clears its list right after the deletes reach Redis.
    while writer.cache_stats().pending_invalidations > 0 {
        assert!(Instant::now() < deadline, "{:?}", writer.cache_stats());
        tokio::task::yield_now().await;
    }
}
