//! The storage-core conformance suite over every tier combination and two backends.

use hybridstore_cache::testing::RedisServer;
use hybridstore_cache::{CacheConfig, CachedStore};
use hybridstore_core::MemoryStore;
use hybridstore_core::conformance::Fixture;
use hybridstore_file::FileStore;

use crate::support::{redis_config, two_tiers};

async fn file_store() -> (FileStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path().join("kv")).await.unwrap();
    (store, dir)
}

mod memory_l1 {
    use super::*;
    hybridstore_core::conformance_tests!(|| async {
        Fixture::new(CachedStore::open(MemoryStore::new(), CacheConfig::l1_only(64 << 20)).unwrap())
    });
}

/// L1 small enough that the suite's values evict one another.
mod memory_l1_tiny {
    use super::*;
    hybridstore_core::conformance_tests!(|| async {
        Fixture::new(CachedStore::open(MemoryStore::new(), CacheConfig::l1_only(4096)).unwrap())
    });
}

mod file_l1 {
    use super::*;
    hybridstore_core::conformance_tests!(|| async {
        let (store, dir) = file_store().await;
        Fixture::with_guard(
            CachedStore::open(store, CacheConfig::l1_only(64 << 20)).unwrap(),
            dir,
        )
    });
}

mod memory_l1_l2 {
    use super::*;
    hybridstore_core::conformance_tests!(|| async {
        let server = RedisServer::start()?;
        let store = CachedStore::open(MemoryStore::new(), two_tiers(&server)).unwrap();
        Some(Fixture::with_guard(store, server))
    });
}

mod file_l1_l2 {
    use super::*;
    hybridstore_core::conformance_tests!(|| async {
        let server = RedisServer::start()?;
        let (store, dir) = file_store().await;
        let store = CachedStore::open(store, two_tiers(&server)).unwrap();
        Some(Fixture::with_guard(store, (server, dir)))
    });
}

/// L2 alone (L1 off): every read goes through Redis.
mod memory_l2_only {
    use super::*;
    hybridstore_core::conformance_tests!(|| async {
        let server = RedisServer::start()?;
        let config = CacheConfig::l1_only(0).with_redis(redis_config(&server));
        let store = CachedStore::open(MemoryStore::new(), config).unwrap();
        Some(Fixture::with_guard(store, server))
    });
}
