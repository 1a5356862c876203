//! A cache for hybridstore: [`CachedStore`] puts a byte-bounded in-process L1 (moka, TinyLFU
//! admission with LRU eviction) and an optional shared Redis L2 in front of any
//! [`KvStore`](hybridstore_core::KvStore), cache-aside.
//!
//! Hot values come from memory in well under a microsecond, warm ones from Redis in tens of
//! microseconds, and everything else from the store underneath, which stays the only source
//! of truth: the cache never holds a write the store has not acknowledged, a Redis failure
//! never fails a call, and a write in this process is never followed by an older read here.
//! See [`CachedStore`] for the exact guarantees, and [`CacheConfig`] / [`RedisConfig`] for
//! the settings and their defaults.
//!
//! For stores behind a network round trip (an S3 primary), [`DiskCache`] keeps values and
//! byte ranges read once in local files, bounded in bytes ([`DiskCachedStore`] reads
//! through it).
//!
//! It is not a write-back cache and not a distributed lock: writes go to the store first, and
//! other processes see them when their L1 entry expires.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use hybridstore_cache::{CacheConfig, CachedStore, RedisConfig};
//! use hybridstore_core::{Key, KvStore, MemoryStore};
//!
//! // L1 only; add `.with_redis(RedisConfig::new("redis://127.0.0.1:6379"))` for a shared L2.
//! let store = CachedStore::open(MemoryStore::new(), CacheConfig::l1_only(256 << 20))?;
//! store.put(&Key::new("k")?, "v".into()).await?;
//! assert!(store.get(&Key::new("k")?).await?.is_some());
//! # Ok::<(), hybridstore_core::Error>(())
//! # }).unwrap();
//! ```
//!
//! # Cargo features
//!
//! - `testing`: `testing::RedisServer`, a private `redis-server` on a free loopback port
//!   for tests and benchmarks.

mod config;
mod disk;
mod epoch;
mod redis_tier;
mod served_by;
mod stats;
mod store;
#[cfg(feature = "testing")]
pub mod testing;

pub use config::{
    CacheConfig, DEFAULT_BREAKER_FAILURES, DEFAULT_BREAKER_MAX_OPEN, DEFAULT_BREAKER_MIN_OPEN,
    DEFAULT_L1_CAPACITY_BYTES, DEFAULT_L1_TTL, DEFAULT_L2_TTL, DEFAULT_LEASE_TTL,
    DEFAULT_MAX_VALUE_BYTES, DEFAULT_REDIS_KEY_PREFIX, DEFAULT_REDIS_NAMESPACE,
    DEFAULT_REDIS_TIMEOUT, DEFAULT_TTL_JITTER, MAX_PENDING_INVALIDATIONS, RedisConfig,
};
pub use disk::{
    DEFAULT_DISK_CACHE_BYTES, DEFAULT_DISK_MAX_ENTRY_BYTES, DISK_ENTRY_HEADER_LEN, DiskCache,
    DiskCacheConfig, DiskCacheStats, DiskCachedStore, Freshness,
};
pub use served_by::{ServedBy, observe_served_by};
pub use stats::CacheStats;
pub use store::CachedStore;
