//! No read older than the last acknowledged write: the set-after-delete race forced with a
//! failpoint, and a concurrent checker.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use hybridstore_cache::testing::RedisServer;
use hybridstore_cache::{CacheConfig, CachedStore};
use hybridstore_core::{Bytes, KvStore, MemoryStore};
use rand::{Rng, SeedableRng};

use crate::support::{Probe, key, redis_config, two_tiers};

/// A reader loads v1, a write of v2 finishes, then the reader's load completes: the old value
/// must not be served afterwards, from L1 or from Redis (as seen by another node).
async fn set_after_delete(config: CacheConfig, second_node: Option<CacheConfig>) {
    let probe = Probe::new(MemoryStore::new());
    let k = key("race/key");
    probe
        .inner
        .put(&k, Bytes::from_static(b"v1"))
        .await
        .unwrap();
    let store = Arc::new(CachedStore::open(probe.clone(), config).unwrap());

    let hold = probe.hold_next_get(&k);
    let reader = {
        let (store, k) = (store.clone(), k.clone());
        tokio::spawn(async move { store.get(&k).await })
    };
    // The reader holds v1, read from the backend (bounded: a cache hit would never get here).
    tokio::time::timeout(std::time::Duration::from_secs(10), hold.reached)
        .await
        .expect("the reader reached the backend")
        .unwrap();
    store.put(&k, Bytes::from_static(b"v2")).await.unwrap(); // acknowledged
    hold.resume.send(()).unwrap();
    let raced = reader.await.unwrap().unwrap().unwrap();
    assert!(
        raced == "v1" || raced == "v2",
        "concurrent read: old or new"
    );

    for _ in 0..3 {
        assert_eq!(store.get(&k).await.unwrap().as_deref(), Some(&b"v2"[..]));
    }
    assert_eq!(
        store.get_many(std::slice::from_ref(&k)).await.unwrap()[0].as_deref(),
        Some(&b"v2"[..])
    );
    if let Some(config) = second_node {
        let other = CachedStore::open(probe.clone(), config).unwrap();
        assert_eq!(
            other.get(&k).await.unwrap().as_deref(),
            Some(&b"v2"[..]),
            "Redis holds v1"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_load_after_a_write_is_never_served_from_l1() {
    set_after_delete(CacheConfig::l1_only(1 << 20), None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_load_after_a_write_never_reaches_redis() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    // A namespace per round: each round starts with a cold Redis.
    let l2_only = CacheConfig::l1_only(0).with_redis(redis_config(&server));
    set_after_delete(l2_only.clone(), Some(l2_only)).await;
    let both = CacheConfig::l1_only(1 << 20).with_redis(redis_config(&server));
    set_after_delete(both.clone(), Some(both)).await;
}

/// 8 tasks × 1,000 operations on 16 keys: writers store increasing version numbers (one
/// writer per key at a time), and every read must return at least the version whose write
/// had been acknowledged before the read began.
async fn reads_never_go_back(config: CacheConfig) {
    const KEYS: usize = 16;
    let store = Arc::new(CachedStore::open(MemoryStore::new(), config).unwrap());
    let acked: Arc<Vec<AtomicU64>> = Arc::new((0..KEYS).map(|_| AtomicU64::new(0)).collect());
    let locks: Arc<Vec<tokio::sync::Mutex<u64>>> =
        Arc::new((0..KEYS).map(|_| tokio::sync::Mutex::new(0)).collect());
    for i in 0..KEYS {
        store
            .put(&key(&format!("k{i}")), Bytes::from("0"))
            .await
            .unwrap();
    }
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (store, acked, locks) = (store.clone(), acked.clone(), locks.clone());
            tokio::spawn(async move {
                let mut rng = rand::rngs::StdRng::seed_from_u64(rand::random());
                for _ in 0..1000 {
                    let i = rng.random_range(0..KEYS);
                    let k = key(&format!("k{i}"));
                    if rng.random_bool(0.3) {
                        let mut version = locks[i].lock().await;
                        *version += 1;
                        store
                            .put(&k, Bytes::from(version.to_string()))
                            .await
                            .unwrap();
                        acked[i].store(*version, Ordering::SeqCst);
                    } else {
                        let floor = acked[i].load(Ordering::SeqCst);
                        let got = if rng.random_bool(0.2) {
                            store
                                .get_many(std::slice::from_ref(&k))
                                .await
                                .unwrap()
                                .remove(0)
                        } else {
                            store.get(&k).await.unwrap()
                        };
                        let got: u64 = std::str::from_utf8(&got.unwrap()).unwrap().parse().unwrap();
                        assert!(
                            got >= floor,
                            "key {i}: read version {got} after {floor} was acknowledged"
                        );
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let stats = store.cache_stats();
    assert!(
        stats.l1_hits + stats.l2_hits > 0,
        "the cache was used: {stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_reads_never_go_back_l1() {
    reads_never_go_back(CacheConfig::l1_only(1 << 20)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_reads_never_go_back_l1_l2() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    reads_never_go_back(two_tiers(&server)).await;
    reads_never_go_back(CacheConfig::l1_only(0).with_redis(redis_config(&server))).await;
}

/// Regression (issue 15, defect 1): a put whose future was dropped while the backend write
/// went on bumped the key's epoch at the drop, so a read before the write landed loaded the
/// old value under the new epoch and L1 served it for the whole TTL. Now the epoch is bumped
/// (and both tiers cleared) only after the write, in a task that outlives the caller.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_put_never_leaves_the_old_value_cached() {
    let backend = Arc::new(hybridstore_core::fault::PausingStore::new(
        MemoryStore::new(),
    ));
    let store = CachedStore::open(
        backend.clone(),
        CacheConfig::l1_only(1 << 20).with_l1_ttl(std::time::Duration::from_secs(3600)),
    )
    .unwrap();
    let k = key("cancel/key");
    store.put(&k, Bytes::from_static(b"old")).await.unwrap();
    assert_eq!(store.get(&k).await.unwrap().as_deref(), Some(&b"old"[..]));

    let pause = backend.pause_next_put(&k);
    let mut put = Box::pin(store.put(&k, Bytes::from_static(b"new")));
    tokio::select! {
        _ = &mut put => panic!("the paused put returned"),
        reached = pause.reached => reached.unwrap(),
    }
    drop(put);
    // Before the write lands, a read sees the old value (and may cache it).
    assert_eq!(store.get(&k).await.unwrap().as_deref(), Some(&b"old"[..]));
    pause.resume.send(()).unwrap();
    pause.landed.await.unwrap();
    assert_eq!(
        backend.inner().get(&k).await.unwrap().as_deref(),
        Some(&b"new"[..])
    );
    // The write's invalidation follows it in its own task: within a bounded wait (far under
    // the hour-long TTL), reads must see the new value.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if store.get(&k).await.unwrap().as_deref() == Some(&b"new"[..]) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "L1 keeps serving the value a cancelled put replaced"
        );
        tokio::task::yield_now().await;
    }
}
