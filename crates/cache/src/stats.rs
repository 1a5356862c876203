//! Cache counters and the `CacheStats` snapshot.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// Live counters, shared by the store, the L1 eviction listener and the Redis tier.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub l1_hits: AtomicU64,
    pub l1_misses: AtomicU64,
    pub l1_evictions: AtomicU64,
    pub l1_expirations: AtomicU64,
    pub l2_hits: AtomicU64,
    pub l2_misses: AtomicU64,
    pub l2_fills: AtomicU64,
    pub l2_damaged: AtomicU64,
    pub l2_skipped: AtomicU64,
    pub redis_errors: AtomicU64,
    pub breaker_opens: AtomicU64,
    pub backend_reads: AtomicU64,
    pub stale_rejections: AtomicU64,
    pub namespace_flushes: AtomicU64,
}

impl Counters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn one(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// A snapshot of a [`CachedStore`](crate::CachedStore)'s counters since it was opened.
///
/// Every count is of keys (a `get_many` of 10 keys counts 10), not of calls.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct CacheStats {
    /// Reads answered from L1.
    pub l1_hits: u64,
    /// Reads L1 could not answer (absent, expired, or invalidated by a write).
    pub l1_misses: u64,
    /// L1 entries removed to stay within the capacity.
    pub l1_evictions: u64,
    /// L1 entries removed because their TTL ran out.
    pub l1_expirations: u64,
    /// L1 entries now (approximate, as moka counts them).
    pub l1_entries: u64,
    /// Bytes L1 holds now, by its weigher (approximate).
    pub l1_bytes: u64,
    /// Reads answered from Redis (and promoted to L1).
    pub l2_hits: u64,
    /// Reads Redis could not answer.
    pub l2_misses: u64,
    /// Values written to Redis after a backend read (under a lease).
    pub l2_fills: u64,
    /// Redis values whose frame or CRC-32 did not check; read from the backend instead.
    pub l2_damaged: u64,
    /// Reads that skipped Redis because the breaker was open or invalidations were pending.
    pub l2_skipped: u64,
    /// Redis calls that failed or timed out.
    pub redis_errors: u64,
    /// Times the circuit breaker opened.
    pub breaker_opens: u64,
    /// Reads that reached the backend store.
    pub backend_reads: u64,
    /// Cached values refused because a write to their key (or a key sharing its epoch
    /// stripe) happened after they were loaded.
    pub stale_rejections: u64,
    /// Keys whose Redis invalidation failed and waits to be replayed.
    pub pending_invalidations: u64,
    /// Times the whole Redis namespace was flushed because too many invalidations failed.
    pub namespace_flushes: u64,
}

impl CacheStats {
    pub(crate) fn from_counters(c: &Counters) -> Self {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        CacheStats {
            l1_hits: get(&c.l1_hits),
            l1_misses: get(&c.l1_misses),
            l1_evictions: get(&c.l1_evictions),
            l1_expirations: get(&c.l1_expirations),
            l1_entries: 0,
            l1_bytes: 0,
            l2_hits: get(&c.l2_hits),
            l2_misses: get(&c.l2_misses),
            l2_fills: get(&c.l2_fills),
            l2_damaged: get(&c.l2_damaged),
            l2_skipped: get(&c.l2_skipped),
            redis_errors: get(&c.redis_errors),
            breaker_opens: get(&c.breaker_opens),
            backend_reads: get(&c.backend_reads),
            stale_rejections: get(&c.stale_rejections),
            pending_invalidations: 0,
            namespace_flushes: get(&c.namespace_flushes),
        }
    }

    /// The counters by name with a `cache.` prefix, as [`StoreStats::counters`] carries them.
    ///
    /// [`StoreStats::counters`]: hybridstore_core::StoreStats::counters
    pub fn to_counters(&self) -> BTreeMap<String, u64> {
        // Every field is a count: the serialized form names each once, for this map and for
        // JSON output alike.
        match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(fields)) => fields
                .into_iter()
                .filter_map(|(name, value)| Some((format!("cache.{name}"), value.as_u64()?)))
                .collect(),
            _ => BTreeMap::new(),
        }
    }

    /// L1 hits / (hits + misses), or `None` before the first read.
    pub fn l1_hit_rate(&self) -> Option<f64> {
        rate(self.l1_hits, self.l1_misses)
    }

    /// L2 hits / (hits + misses), or `None` before the first L2 read.
    pub fn l2_hit_rate(&self) -> Option<f64> {
        rate(self.l2_hits, self.l2_misses)
    }
}

fn rate(hits: u64, misses: u64) -> Option<f64> {
    let total = hits + misses;
    (total > 0).then(|| hits as f64 / total as f64)
}
