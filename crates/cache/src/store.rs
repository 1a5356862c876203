//! `CachedStore`: the cache-aside layer over any `KvStore`.

use std::future::Future;
use std::ops::Range;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use hybridstore_core::raw::{provided, run_to_completion, slice_range};
use hybridstore_core::{
    BatchOp, Capabilities, EntryStream, Error, Key, KeyRange, KvStore, MetaStream, ObjectMeta,
    PutOptions, Result, StoreStats, WriteBatch,
};
use moka::Expiry;
use moka::future::Cache;

use crate::config::CacheConfig;
use crate::epoch::StripedEpochs;
use crate::redis_tier::{Lookup, RedisTier, jittered};
use crate::served_by::{self, ServedBy};
use crate::stats::{CacheStats, Counters};

/// Bytes added to each L1 entry's weight for the key, the entry and moka's bookkeeping.
const ENTRY_OVERHEAD_BYTES: u64 = 64;
/// Loads of one key retried after a write made them stale before the reader gives up on the
/// cache and reads the backend directly.
const STALE_RETRIES: usize = 3;

/// What L1 holds for a key.
#[derive(Clone, Debug)]
enum Cached {
    Present(Bytes),
    Absent,
    /// Larger than `max_value_bytes`: read the backend (the marker keeps the decision cheap).
    TooLarge,
}

/// What an L1 lookup found.
enum L1Lookup {
    Valid(Cached),
    /// Loaded before a write that has finished since.
    Stale,
    Absent,
}

/// One L1 entry: the value and the stripe epoch read before it was loaded.
#[derive(Clone, Debug)]
struct L1Entry {
    cached: Cached,
    epoch: u64,
}

impl Cached {
    /// How L1 keeps a value read from Redis or the backend.
    fn of(value: Option<&Bytes>, max_value_bytes: u64) -> Cached {
        match value {
            None => Cached::Absent,
            Some(v) if v.len() as u64 <= max_value_bytes => Cached::Present(v.clone()),
            Some(_) => Cached::TooLarge,
        }
    }
}

impl L1Entry {
    fn weight(key: &Key, entry: &L1Entry) -> u32 {
        let value = match &entry.cached {
            Cached::Present(v) => v.len() as u64,
            Cached::Absent | Cached::TooLarge => 0,
        };
        u32::try_from(key.len() as u64 + value + ENTRY_OVERHEAD_BYTES).unwrap_or(u32::MAX)
    }
}

/// Per-entry time-to-live with jitter.
struct JitteredTtl {
    ttl: Duration,
    jitter: f64,
}

impl Expiry<Key, L1Entry> for JitteredTtl {
    fn expire_after_create(&self, _: &Key, _: &L1Entry, _: Instant) -> Option<Duration> {
        Some(jittered(self.ttl, self.jitter))
    }
}

/// A cache-aside layer: a byte-bounded in-process L1 (moka) and an optional Redis L2 in front
/// of any [`KvStore`].
///
/// # Reads
/// `get` tries L1, then Redis, then the inner store; a Redis hit is promoted to L1 and a
/// backend read fills both. Concurrent `get`s of one missing key run one load per process
/// (moka's `try_get_with`); the others wait for it. Missing keys are remembered in L1 too.
/// `get_many` takes L1 hits, one `MGET` per 64 keys, and one inner `get_many` for the rest.
/// Values over [`CacheConfig::max_value_bytes`] are never cached. `head`, `scan` and
/// `scan_meta` go to the inner store; `get_range` slices an L1 value when there is one.
///
/// # Writes
/// `put`, `delete` and `write_batch` write the inner store, then remove the keys from L1 and
/// Redis, then bump the keys' write epochs, all before they return: a reader in this process
/// never sees a value older than the last acknowledged write. A value loaded before a write
/// finished is refused even if it lands in a tier after the invalidation (see the epoch
/// stripes below), and a Redis fill needs a lease that the invalidation revokes, so a slow
/// reader cannot put an old value back into Redis either (memcache leases, NSDI'13).
/// Other processes see a write when their L1 entry expires ([`CacheConfig::l1_ttl`]).
/// A write whose caller drops its future still finishes all three steps, in order, in a task
/// of its own, so a cancelled write never leaves an old value valid in either tier.
///
/// # Degradation
/// Every Redis call is bounded by [`RedisConfig::timeout`]; a failure is counted and the call
/// is answered from L1 or the inner store, so Redis adds at most that timeout to a call and
/// never an error. After [`RedisConfig::breaker_failures`] consecutive failures a circuit
/// breaker (failsafe) skips Redis for 1 s, doubling to 30 s while probes fail; the first
/// successful probe closes it. Invalidations that could not reach Redis are remembered; this
/// process stops reading Redis until a background task (exponential backoff) has replayed
/// them, which it does as soon as Redis answers whether or not this process reads again, so
/// other processes sharing the namespace lose the stale entries too (past 10,000 keys the
/// namespace is flushed instead). While this process cannot reach Redis but another can,
/// that other process may read a value this one replaced, until the replay or the L2 TTL:
/// the price of a cache that keeps serving when Redis fails.
/// Redis should run without persistence, as a cache does: a restart from an old RDB
/// snapshot could bring back values invalidated since (Redis's own advice for a pure cache:
/// persistence off, <https://redis.io/docs/latest/operate/oss_and_stack/management/persistence/>).
///
/// # Integrity
/// Values in Redis carry a CRC-32; one that fails it is counted in
/// [`CacheStats::l2_damaged`] and read from the inner store, never returned.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use hybridstore_cache::{CacheConfig, CachedStore};
/// use hybridstore_core::{Key, KvStore, MemoryStore};
///
/// let store = CachedStore::open(MemoryStore::new(), CacheConfig::l1_only(64 << 20))?;
/// let key = Key::new("greeting")?;
/// store.put(&key, "hello".into()).await?;
/// assert_eq!(store.get(&key).await?.as_deref(), Some(&b"hello"[..])); // from the backend
/// assert_eq!(store.get(&key).await?.as_deref(), Some(&b"hello"[..])); // from L1
/// assert_eq!(store.cache_stats().l1_hits, 1);
/// # Ok::<(), hybridstore_core::Error>(())
/// # }).unwrap();
/// ```
///
/// [`RedisConfig::timeout`]: crate::RedisConfig::timeout
/// [`RedisConfig::breaker_failures`]: crate::RedisConfig::breaker_failures
pub struct CachedStore<S> {
    /// Shared with writes that finish after their caller dropped them.
    inner: Arc<S>,
    l1: Option<Cache<Key, L1Entry>>,
    l2: Option<Arc<RedisTier>>,
    epochs: Arc<StripedEpochs>,
    counters: Arc<Counters>,
    config: CacheConfig,
}

impl<S: std::fmt::Debug> std::fmt::Debug for CachedStore<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedStore")
            .field("inner", &self.inner)
            .field("config", &self.config)
            .field("l2", &self.l2)
            .finish()
    }
}

impl<S: KvStore> CachedStore<S> {
    /// Puts a cache in front of `inner`. Never waits for Redis: the L2 connection is made on
    /// first use, so a store opens while Redis is down.
    ///
    /// # Errors
    /// `InvalidInput` for an invalid configuration (see [`CacheConfig::validate`]), a Redis
    /// URL the client cannot parse, or a Redis tier opened outside a tokio runtime.
    pub fn open(inner: S, config: CacheConfig) -> Result<Self> {
        config.validate()?;
        let counters = Arc::new(Counters::default());
        let l1 = (config.l1_capacity_bytes > 0).then(|| {
            let listener_counters = counters.clone();
            Cache::builder()
                .max_capacity(config.l1_capacity_bytes)
                .weigher(L1Entry::weight)
                .expire_after(JitteredTtl {
                    ttl: config.l1_ttl,
                    jitter: config.ttl_jitter,
                })
                .eviction_listener(move |_key, _value, cause| match cause {
                    moka::notification::RemovalCause::Size => {
                        Counters::one(&listener_counters.l1_evictions)
                    }
                    moka::notification::RemovalCause::Expired => {
                        Counters::one(&listener_counters.l1_expirations)
                    }
                    _ => {}
                })
                .build()
        });
        let l2 = match &config.redis {
            Some(redis) => Some(Arc::new(RedisTier::open(
                redis,
                config.ttl_jitter,
                counters.clone(),
            )?)),
            None => None,
        };
        Ok(CachedStore {
            inner: Arc::new(inner),
            l1,
            l2,
            epochs: Arc::new(StripedEpochs::new()),
            counters,
            config,
        })
    }

    /// The inner store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// The configuration.
    pub fn config(&self) -> &CacheConfig {
        &self.config
    }

    /// Pings the Redis tier (`PING`, within the Redis timeout) for a health check: `None`
    /// without one, else `Ok` or why it did not answer. The breaker and the counters are
    /// left as they were.
    pub async fn ping_l2(&self) -> Option<std::result::Result<(), String>> {
        match &self.l2 {
            Some(l2) => Some(l2.ping().await),
            None => None,
        }
    }

    /// The counters since the store was opened, with L1's current size.
    pub fn cache_stats(&self) -> CacheStats {
        let mut stats = CacheStats::from_counters(&self.counters);
        if let Some(l1) = &self.l1 {
            stats.l1_entries = l1.entry_count();
            stats.l1_bytes = l1.weighted_size();
        }
        if let Some(l2) = &self.l2 {
            stats.pending_invalidations = l2.pending_invalidations();
        }
        stats
    }

    /// Applies L1's pending housekeeping (evictions, expirations, size accounting) now, so
    /// [`cache_stats`](Self::cache_stats) is exact; moka otherwise does it as it goes.
    pub async fn run_pending_tasks(&self) {
        if let Some(l1) = &self.l1 {
            l1.run_pending_tasks().await;
        }
    }

    fn cacheable(&self, value: &Bytes) -> bool {
        value.len() as u64 <= self.config.max_value_bytes
    }

    /// The L1 entry for `key`, checked against the key's write epoch.
    async fn l1_lookup(&self, l1: &Cache<Key, L1Entry>, key: &Key) -> L1Lookup {
        let epoch = self.epochs.current(key);
        match l1.get(key).await {
            Some(entry) if entry.epoch == epoch => L1Lookup::Valid(entry.cached),
            Some(_) => {
                Counters::one(&self.counters.stale_rejections);
                L1Lookup::Stale
            }
            None => L1Lookup::Absent,
        }
    }

    /// Redis, then the inner store (filling Redis under a lease). `epoch` was read before.
    async fn load(
        &self,
        key: &Key,
        epoch: u64,
        oversized: &Mutex<Option<Bytes>>,
    ) -> Result<L1Entry> {
        let value = self.read_through(key).await?;
        let cached = Cached::of(value.as_ref(), self.config.max_value_bytes);
        if let Cached::TooLarge = cached {
            *oversized.lock().unwrap_or_else(PoisonError::into_inner) = value;
        }
        Ok(L1Entry { cached, epoch })
    }

    async fn read_through(&self, key: &Key) -> Result<Option<Bytes>> {
        let mut lease = None;
        if let Some(l2) = &self.l2 {
            match l2.lookup(&[key]).await.pop() {
                Some(Lookup::Hit(value)) => {
                    served_by::note(ServedBy::L2);
                    return Ok(Some(value));
                }
                Some(Lookup::Miss(token)) => lease = token,
                Some(Lookup::Skipped) | None => {}
            }
        }
        let value = self.backend_get(key).await?;
        if let (Some(l2), Some(token), Some(v)) = (&self.l2, lease, &value)
            && self.cacheable(v)
        {
            l2.fill(&[(key, token, v.clone())]).await;
        }
        Ok(value)
    }

    /// A read of the inner store, counted.
    async fn backend_get(&self, key: &Key) -> Result<Option<Bytes>> {
        Counters::one(&self.counters.backend_reads);
        served_by::note(ServedBy::Store);
        self.inner.get(key).await
    }

    /// Runs `write` on the inner store, then removes `keys` from both tiers and bumps their
    /// epochs, all before returning (whatever the write's outcome: a failed write may still
    /// have changed the store). The three steps run to completion even if the returned
    /// future is dropped (see [`run_to_completion`]): the epochs are bumped only once the
    /// write is done, so a reader can never load the old value after the bump and keep it in
    /// L1 for the TTL.
    async fn invalidating<T: Send + 'static>(
        &self,
        keys: Vec<Key>,
        write: impl Future<Output = Result<T>> + Send + 'static,
    ) -> Result<T> {
        let invalidation = self.invalidation(keys);
        run_to_completion(async move {
            let result = write.await;
            invalidation.await;
            result
        })
        .await
    }

    /// Removes `keys` from L1 and Redis, then bumps their epochs.
    fn invalidation(&self, keys: Vec<Key>) -> impl Future<Output = ()> + Send + 'static {
        let (l1, l2, epochs) = (self.l1.clone(), self.l2.clone(), self.epochs.clone());
        async move {
            if let Some(l1) = &l1 {
                // The epoch bump below makes any entry of these keys stale; removing it only
                // frees memory, so keys L1 does not hold (an ingest's) cost no async call.
                for key in &keys {
                    if l1.contains_key(key) {
                        l1.invalidate(key).await;
                    }
                }
            }
            if let Some(l2) = &l2 {
                l2.invalidate(&keys).await;
            }
            for key in &keys {
                epochs.bump(key);
            }
        }
    }
}

/// The invalidation a streamed put owes, run when the put ends or, if its future is
/// dropped, in a task of its own (the borrowed reader keeps the write itself in the
/// caller's future).
struct OwedInvalidation {
    invalidation: Option<std::pin::Pin<Box<dyn Future<Output = ()> + Send>>>,
}

impl OwedInvalidation {
    async fn settle(mut self) {
        if let Some(invalidation) = self.invalidation.take() {
            run_to_completion(invalidation).await;
        }
    }
}

impl Drop for OwedInvalidation {
    fn drop(&mut self) {
        if let Some(invalidation) = self.invalidation.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(invalidation);
        }
    }
}

/// An error shared by coalesced readers, as the one error type.
fn unshare(error: Arc<Error>) -> Error {
    Arc::try_unwrap(error).unwrap_or_else(|shared| shared.duplicate())
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl<S: KvStore + 'static> KvStore for CachedStore<S> {
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn get(&self, key: &Key) -> Result<Option<Bytes>> {
        let Some(l1) = &self.l1 else {
            return self.read_through(key).await;
        };
        for _ in 0..STALE_RETRIES {
            // `contains_key` is not a read for moka's frequency sketch: a miss is then recorded
            // once (by `try_get_with` below), not twice (`get` and `try_get_with`), which made
            // every one-time key look twice as popular to the W-TinyLFU admission. On a Zipf(1.0)
            // stream with room for a tenth of the keys the double count cost 2.4 points of hit
            // rate (68.8% against moka's own 71.2%; `cargo xtask bench documents`).
            let found = if l1.contains_key(key) {
                self.l1_lookup(l1, key).await
            } else {
                L1Lookup::Absent
            };
            match found {
                L1Lookup::Valid(Cached::Present(v)) => {
                    Counters::one(&self.counters.l1_hits);
                    served_by::note(ServedBy::L1);
                    return Ok(Some(v));
                }
                L1Lookup::Valid(Cached::Absent) => {
                    Counters::one(&self.counters.l1_hits);
                    served_by::note(ServedBy::L1);
                    return Ok(None);
                }
                L1Lookup::Valid(Cached::TooLarge) => return self.backend_get(key).await,
                // Drop the stale entry so `try_get_with` loads afresh instead of returning it.
                L1Lookup::Stale => l1.invalidate(key).await,
                L1Lookup::Absent => {}
            }
            Counters::one(&self.counters.l1_misses);
            // Until the load says otherwise (a reader that waits on another's load keeps it).
            served_by::note(ServedBy::Store);
            let epoch = self.epochs.current(key);
            let oversized = Mutex::new(None);
            let entry = l1
                .try_get_with(key.clone(), self.load(key, epoch, &oversized))
                .await
                .map_err(unshare)?;
            if entry.epoch != self.epochs.current(key) {
                // A write finished after this load began (ours or the one we waited on).
                Counters::one(&self.counters.stale_rejections);
                continue;
            }
            return match entry.cached {
                Cached::Present(v) => Ok(Some(v)),
                Cached::Absent => Ok(None),
                Cached::TooLarge => {
                    let mine = oversized
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .take();
                    match mine {
                        Some(v) => Ok(Some(v)),
                        // Another reader loaded it; values this large are not shared.
                        None => self.backend_get(key).await,
                    }
                }
            };
        }
        // The key is being written faster than it can be loaded: read through, uncached.
        self.backend_get(key).await
    }

    async fn get_many(&self, keys: &[Key]) -> Result<Vec<Option<Bytes>>> {
        let mut out: Vec<Option<Bytes>> = vec![None; keys.len()];
        // (index, epoch read before anything was loaded)
        let mut missing: Vec<(usize, u64)> = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            let epoch = self.epochs.current(key);
            let found = match &self.l1 {
                Some(l1) => self.l1_lookup(l1, key).await,
                None => L1Lookup::Absent,
            };
            match found {
                L1Lookup::Valid(Cached::Present(v)) => {
                    Counters::one(&self.counters.l1_hits);
                    out[i] = Some(v);
                }
                L1Lookup::Valid(Cached::Absent) => Counters::one(&self.counters.l1_hits),
                L1Lookup::Valid(Cached::TooLarge) => missing.push((i, epoch)),
                L1Lookup::Stale | L1Lookup::Absent => {
                    if self.l1.is_some() {
                        Counters::one(&self.counters.l1_misses);
                    }
                    missing.push((i, epoch));
                }
            }
        }
        if missing.is_empty() {
            return Ok(out);
        }

        let mut leases: Vec<Option<u64>> = vec![None; missing.len()];
        let mut from_backend: Vec<usize> = Vec::new(); // positions in `missing`
        if let Some(l2) = &self.l2 {
            let wanted: Vec<&Key> = missing.iter().map(|&(i, _)| &keys[i]).collect();
            for (m, found) in l2.lookup(&wanted).await.into_iter().enumerate() {
                match found {
                    Lookup::Hit(v) => {
                        let (i, epoch) = missing[m];
                        self.promote(&keys[i], Some(&v), epoch).await;
                        out[i] = Some(v);
                    }
                    Lookup::Miss(token) => {
                        leases[m] = token;
                        from_backend.push(m);
                    }
                    Lookup::Skipped => from_backend.push(m),
                }
            }
        } else {
            from_backend.extend(0..missing.len());
        }
        if from_backend.is_empty() {
            return Ok(out);
        }

        let backend_keys: Vec<Key> = from_backend
            .iter()
            .map(|&m| keys[missing[m].0].clone())
            .collect();
        Counters::add(&self.counters.backend_reads, backend_keys.len() as u64);
        let values = self.inner.get_many(&backend_keys).await?;
        let mut fills = Vec::new();
        for (&m, value) in from_backend.iter().zip(values) {
            let (i, epoch) = missing[m];
            self.promote(&keys[i], value.as_ref(), epoch).await;
            if let (Some(token), Some(v)) = (leases[m], &value)
                && self.cacheable(v)
            {
                fills.push((&keys[i], token, v.clone()));
            }
            out[i] = value;
        }
        if let Some(l2) = &self.l2 {
            l2.fill(&fills).await;
        }
        Ok(out)
    }

    async fn head(&self, key: &Key) -> Result<Option<ObjectMeta>> {
        self.inner.head(key).await
    }

    async fn get_range(&self, key: &Key, range: Range<u64>) -> Result<Option<Bytes>> {
        if let Some(l1) = &self.l1
            && let L1Lookup::Valid(Cached::Present(value)) = self.l1_lookup(l1, key).await
        {
            Counters::one(&self.counters.l1_hits);
            return slice_range(&value, range).map(Some);
        }
        self.inner.get_range(key, range).await
    }

    async fn put_with(&self, key: &Key, value: Bytes, options: &PutOptions) -> Result<ObjectMeta> {
        let (inner, k, options) = (self.inner.clone(), key.clone(), options.clone());
        self.invalidating(vec![key.clone()], async move {
            inner.put_with(&k, value, &options).await
        })
        .await
    }

    /// Through `put_with`, which invalidates.
    async fn put(&self, key: &Key, value: Bytes) -> Result<ObjectMeta> {
        provided::put(self, key, value).await
    }

    /// Not cached: answered by the inner store, like `head`.
    async fn exists(&self, key: &Key) -> Result<bool> {
        self.inner.exists(key).await
    }

    /// Not cached: answered by the inner store, like `scan`.
    async fn list_keys(&self, range: KeyRange, limit: Option<usize>) -> Result<Vec<Key>> {
        self.inner.list_keys(range, limit).await
    }

    /// In write batches through this layer, so every removed key is invalidated in both
    /// tiers (the inner store's `clear` would leave them cached).
    async fn clear(&self) -> Result<u64> {
        provided::clear(self).await
    }

    async fn delete(&self, key: &Key) -> Result<()> {
        let (inner, k) = (self.inner.clone(), key.clone());
        self.invalidating(vec![key.clone()], async move { inner.delete(&k).await })
            .await
    }

    fn scan(&self, range: KeyRange, limit: Option<usize>) -> EntryStream<'_> {
        self.inner.scan(range, limit)
    }

    fn scan_meta(&self, range: KeyRange, limit: Option<usize>) -> MetaStream<'_> {
        self.inner.scan_meta(range, limit)
    }

    /// Streams bypass both tiers (they are for values too large to cache).
    async fn get_stream(
        &self,
        key: &Key,
        range: Option<Range<u64>>,
    ) -> Result<Option<hybridstore_core::ValueStream<'_>>> {
        self.inner.get_stream(key, range).await
    }

    async fn put_stream(
        &self,
        key: &Key,
        reader: hybridstore_core::ValueReader<'_>,
        options: &PutOptions,
    ) -> Result<ObjectMeta> {
        let owed = OwedInvalidation {
            invalidation: Some(Box::pin(self.invalidation(vec![key.clone()]))),
        };
        let result = self.inner.put_stream(key, reader, options).await;
        owed.settle().await;
        result
    }

    async fn write_batch(&self, batch: WriteBatch) -> Result<()> {
        let keys = written_keys(&batch);
        let inner = self.inner.clone();
        self.invalidating(keys, async move { inner.write_batch(batch).await })
            .await
    }

    async fn stats(&self) -> Result<StoreStats> {
        let mut stats = self.inner.stats().await?;
        stats.counters.extend(self.cache_stats().to_counters());
        Ok(stats)
    }
}

impl<S: KvStore> CachedStore<S> {
    /// Puts a loaded value into L1 with the epoch read before it was loaded (a write since
    /// makes it stale on its next read).
    async fn promote(&self, key: &Key, value: Option<&Bytes>, epoch: u64) {
        let Some(l1) = &self.l1 else { return };
        let cached = Cached::of(value, self.config.max_value_bytes);
        l1.insert(key.clone(), L1Entry { cached, epoch }).await;
    }
}

/// The keys `batch` puts or deletes (its checks change nothing): what a cache layer
/// invalidates after the batch.
pub(crate) fn written_keys(batch: &WriteBatch) -> Vec<Key> {
    batch
        .ops()
        .iter()
        .filter_map(|op| match op {
            BatchOp::Put { key, .. } | BatchOp::Delete { key } => Some(key.clone()),
            BatchOp::Check { .. } => None,
        })
        .collect()
}
