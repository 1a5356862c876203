//! What each tier does: coalescing, promotion, limits, damage, namespacing, counters.

use std::sync::Arc;

use hybridstore_cache::testing::RedisServer;
use hybridstore_cache::{CacheConfig, CachedStore};
use hybridstore_core::{Bytes, KvStore, MemoryStore};

use crate::support::{Probe, key, redis_config, two_tiers};

/// 1,000 concurrent gets of one cold key run one backend read; every caller gets the value.
async fn stampede(config: CacheConfig) {
    let probe = Probe::new(MemoryStore::new());
    let k = key("hot/cold-key");
    probe
        .inner
        .put(&k, Bytes::from_static(b"payload"))
        .await
        .unwrap();
    let store = Arc::new(CachedStore::open(probe.clone(), config).unwrap());
    let barrier = Arc::new(tokio::sync::Barrier::new(1000));
    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let (store, barrier, k) = (store.clone(), barrier.clone(), k.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                store.get(&k).await
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(
            task.await.unwrap().unwrap().as_deref(),
            Some(&b"payload"[..])
        );
    }
    assert_eq!(probe.reads(), 1, "backend reads under a stampede");
    let stats = store.cache_stats();
    assert_eq!(stats.backend_reads, 1);
    assert_eq!(stats.l1_hits + stats.l1_misses, 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stampede_of_1000_gets_reads_the_backend_once() {
    stampede(CacheConfig::l1_only(64 << 20)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stampede_with_redis_reads_the_backend_once() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    stampede(two_tiers(&server)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l1_hits_misses_and_missing_keys_are_counted() {
    let probe = Probe::new(MemoryStore::new());
    let store = CachedStore::open(probe.clone(), CacheConfig::l1_only(1 << 20)).unwrap();
    let (a, missing) = (key("a"), key("missing"));
    store.put(&a, Bytes::from_static(b"1")).await.unwrap();
    for _ in 0..3 {
        assert_eq!(store.get(&a).await.unwrap().as_deref(), Some(&b"1"[..]));
        assert_eq!(store.get(&missing).await.unwrap(), None);
    }
    assert_eq!(probe.reads(), 2, "one load per key, absent keys included");
    let stats = store.cache_stats();
    assert_eq!((stats.l1_hits, stats.l1_misses), (4, 2));
    let counters = store.stats().await.unwrap().counters;
    assert_eq!(counters["cache.l1_hits"], 4);
    // A write invalidates: the next read loads again and sees the new value.
    store.put(&a, Bytes::from_static(b"2")).await.unwrap();
    assert_eq!(store.get(&a).await.unwrap().as_deref(), Some(&b"2"[..]));
    store
        .put(&missing, Bytes::from_static(b"now here"))
        .await
        .unwrap();
    assert_eq!(
        store.get(&missing).await.unwrap().as_deref(),
        Some(&b"now here"[..])
    );
    assert_eq!(probe.reads(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_over_the_limit_are_never_cached() {
    let probe = Probe::new(MemoryStore::new());
    let config = CacheConfig::l1_only(64 << 20).with_max_value_bytes(1000);
    let store = CachedStore::open(probe.clone(), config).unwrap();
    let (small, big) = (key("small"), key("big"));
    store
        .put(&small, Bytes::from(vec![1u8; 1000]))
        .await
        .unwrap();
    store.put(&big, Bytes::from(vec![2u8; 1001])).await.unwrap();
    for _ in 0..3 {
        assert_eq!(store.get(&small).await.unwrap().unwrap().len(), 1000);
        assert_eq!(store.get(&big).await.unwrap().unwrap().len(), 1001);
    }
    assert_eq!(probe.reads(), 1 + 3, "the big value is read every time");
    store.run_pending_tasks().await;
    assert!(
        store.cache_stats().l1_bytes < 2000,
        "{:?}",
        store.cache_stats()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l1_stays_within_its_byte_capacity() {
    let store = CachedStore::open(MemoryStore::new(), CacheConfig::l1_only(256 * 1024)).unwrap();
    for i in 0..200 {
        let k = key(&format!("v/{i:03}"));
        store
            .put(&k, Bytes::from(vec![i as u8; 10_000]))
            .await
            .unwrap();
        store.get(&k).await.unwrap();
    }
    store.run_pending_tasks().await;
    let stats = store.cache_stats();
    assert!(stats.l1_bytes <= 256 * 1024, "{stats:?}");
    assert!(
        stats.l1_evictions > 0 || stats.l1_entries < 200,
        "{stats:?}"
    );
    // Evicted or not, every value still reads right.
    for i in 0..200 {
        let v = store
            .get(&key(&format!("v/{i:03}")))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(v, Bytes::from(vec![i as u8; 10_000]));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_hits_are_promoted_to_l1_and_shared_between_processes() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let shared_backend = Probe::new(MemoryStore::new());
    let redis = redis_config(&server);
    let node_a = CachedStore::open(
        shared_backend.clone(),
        CacheConfig::l1_only(1 << 20).with_redis(redis.clone()),
    )
    .unwrap();
    let node_b = CachedStore::open(
        shared_backend.clone(),
        CacheConfig::l1_only(1 << 20).with_redis(redis),
    )
    .unwrap();
    let k = key("shared/doc");
    node_a.put(&k, Bytes::from_static(b"v1")).await.unwrap();
    assert_eq!(node_a.get(&k).await.unwrap().as_deref(), Some(&b"v1"[..])); // backend, fills L2
    assert_eq!(node_b.get(&k).await.unwrap().as_deref(), Some(&b"v1"[..])); // L2 hit
    assert_eq!(node_b.get(&k).await.unwrap().as_deref(), Some(&b"v1"[..])); // L1 hit
    assert_eq!(shared_backend.reads(), 1);
    let b = node_b.cache_stats();
    assert_eq!((b.l2_hits, b.l1_hits, b.backend_reads), (1, 1, 0), "{b:?}");
    assert_eq!(node_a.cache_stats().l2_fills, 1);
    // get_many: L1 hits, an MGET, then one backend get_many for the rest.
    let keys: Vec<_> = (0..10).map(|i| key(&format!("many/{i}"))).collect();
    for (i, k) in keys.iter().enumerate().take(8) {
        node_a.put(k, Bytes::from(format!("m{i}"))).await.unwrap();
    }
    let got = node_a.get_many(&keys).await.unwrap();
    let got_b = node_b.get_many(&keys).await.unwrap();
    assert_eq!(got, got_b);
    for (i, v) in got.iter().enumerate() {
        let expected = (i < 8).then(|| Bytes::from(format!("m{i}")));
        assert_eq!(v, &expected);
    }
    // node_b got the 8 present values from Redis; the 2 absent ones from the backend.
    assert_eq!(node_b.cache_stats().l2_hits, 1 + 8);
    assert_eq!(shared_backend.reads(), 1 + 10 + 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_redis_values_are_read_from_the_backend() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let redis = redis_config(&server);
    let namespace = redis.namespace.clone();
    let store = CachedStore::open(
        MemoryStore::new(),
        CacheConfig::l1_only(0).with_redis(redis),
    )
    .unwrap();
    let k = key("doc");
    store
        .put(&k, Bytes::from_static(b"the truth"))
        .await
        .unwrap();
    store.get(&k).await.unwrap(); // fills Redis
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let redis_key = format!("hybridstore:{namespace}:v:doc");
    let framed: Vec<u8> = redis::cmd("GET")
        .arg(&redis_key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(framed.ends_with(b"the truth"), "value is framed in Redis");
    let mut damaged = framed.clone();
    let last = damaged.len() - 1;
    damaged[last] ^= 0x20;
    let _: () = redis::cmd("SET")
        .arg(&redis_key)
        .arg(damaged)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        store.get(&k).await.unwrap().as_deref(),
        Some(&b"the truth"[..])
    );
    assert_eq!(store.cache_stats().l2_damaged, 1);
    // The damaged value was replaced by the next fill.
    let refilled: Vec<u8> = redis::cmd("GET")
        .arg(&redis_key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(refilled, framed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_keys_are_namespaced_by_prefix_and_tenant() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let backend_a = MemoryStore::new();
    let backend_b = MemoryStore::new();
    let config = |ns: &str| {
        CacheConfig::l1_only(0).with_redis(
            redis_config(&server)
                .with_key_prefix("app1:")
                .with_namespace(ns),
        )
    };
    let a = CachedStore::open(backend_a, config("tenant-a")).unwrap();
    let b = CachedStore::open(backend_b, config("tenant-b")).unwrap();
    let k = key("same/key");
    a.put(&k, Bytes::from_static(b"from a")).await.unwrap();
    b.put(&k, Bytes::from_static(b"from b")).await.unwrap();
    for _ in 0..2 {
        assert_eq!(a.get(&k).await.unwrap().as_deref(), Some(&b"from a"[..]));
        assert_eq!(b.get(&k).await.unwrap().as_deref(), Some(&b"from b"[..]));
    }
    assert_eq!(a.cache_stats().l2_hits, 1);
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .unwrap();
    keys.sort();
    assert_eq!(
        keys,
        ["app1:tenant-a:v:same/key", "app1:tenant-b:v:same/key"],
        "values under <prefix><tenant>:v:, leases released by the fill"
    );
}

#[test]
fn invalid_settings_are_refused() {
    let bad = [
        CacheConfig::l1_only(1).with_redis(hybridstore_cache::RedisConfig::new("http://x")),
        CacheConfig::l1_only(1)
            .with_redis(hybridstore_cache::RedisConfig::new("redis://h").with_namespace("a:b")),
        CacheConfig::l1_only(1)
            .with_redis(hybridstore_cache::RedisConfig::new("redis://h").with_key_prefix("a*")),
        CacheConfig::l1_only(1).with_l1_ttl(std::time::Duration::ZERO),
    ];
    for config in bad {
        let err = CachedStore::open(MemoryStore::new(), config.clone()).unwrap_err();
        assert_eq!(
            err.kind(),
            hybridstore_core::ErrorKind::InvalidInput,
            "{config:?}"
        );
    }
}

#[test]
fn redis_outside_a_runtime_is_an_error_not_a_panic() {
    let config = CacheConfig::l1_only(1)
        .with_redis(hybridstore_cache::RedisConfig::new("redis://127.0.0.1:1/"));
    let err = CachedStore::open(MemoryStore::new(), config).unwrap_err();
    assert_eq!(err.kind(), hybridstore_core::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("tokio runtime"), "{err}");
}

/// `observe_served_by` names the tier that answered each get: the store, Redis, then L1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_get_reports_the_tier_that_answered_it() {
    use hybridstore_cache::{ServedBy, observe_served_by};
    let backend = Probe::new(MemoryStore::new());
    let k = key("tiers/doc");
    backend
        .inner
        .put(&k, Bytes::from_static(b"v"))
        .await
        .unwrap();
    let l1 = CachedStore::open(backend.clone(), CacheConfig::l1_only(1 << 20)).unwrap();
    let (v, tier) = observe_served_by(l1.get(&k)).await;
    assert_eq!(
        (v.unwrap().as_deref(), tier),
        (Some(&b"v"[..]), Some(ServedBy::Store))
    );
    let (_, tier) = observe_served_by(l1.get(&k)).await;
    assert_eq!(tier, Some(ServedBy::L1));
    // A missing key is answered from L1 once cached as missing.
    let absent = key("tiers/none");
    assert_eq!(
        observe_served_by(l1.get(&absent)).await.1,
        Some(ServedBy::Store)
    );
    assert_eq!(
        observe_served_by(l1.get(&absent)).await.1,
        Some(ServedBy::L1)
    );
    // Outside observe_served_by nothing is recorded and nothing fails.
    assert!(l1.get(&k).await.unwrap().is_some());
    // A store without a cache reports nothing.
    assert_eq!(observe_served_by(backend.get(&k)).await.1, None);

    let Some(server) = RedisServer::start() else {
        return;
    };
    // One namespace for both nodes, as two processes of one application would share.
    let shared = CacheConfig::l1_only(1 << 20).with_redis(redis_config(&server));
    let node_a = CachedStore::open(backend.clone(), shared.clone()).unwrap();
    let node_b = CachedStore::open(backend.clone(), shared).unwrap();
    assert_eq!(
        observe_served_by(node_a.get(&k)).await.1,
        Some(ServedBy::Store)
    );
    assert_eq!(
        observe_served_by(node_b.get(&k)).await.1,
        Some(ServedBy::L2)
    );
    assert_eq!(
        observe_served_by(node_b.get(&k)).await.1,
        Some(ServedBy::L1)
    );
}
