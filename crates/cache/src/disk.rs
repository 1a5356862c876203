//! [`DiskCache`]: a size-bounded, read-through cache of a remote store's values in local
//! files, and [`DiskCachedStore`], the `KvStore` layer that reads through it.
//!
//! It exists for stores whose reads cost a network round trip (an S3 primary): a value or a
//! byte range read once is kept in a file under the cache directory, and served from there
//! while it is fresh. Writes go to the store underneath first; the cache never holds a write
//! the store has not acknowledged.
//!
//! **Bound.** The cache keeps at most [`DiskCacheConfig::capacity_bytes`] of files (headers
//! included). Which entries stay is moka's decision (TinyLFU admission, LRU eviction: the
//! policy of Caffeine, <https://github.com/ben-manes/caffeine/wiki/Efficiency>); an evicted
//! entry's file is deleted. The bound is enforced as moka runs its maintenance, so the
//! directory may briefly hold a few entries more.
//!
//! **Freshness.** Every write through the layer makes the cached entries of its keys stale
//! before it returns (striped write epochs, as `CachedStore` does), also when the write's
//! caller drops its future. Writes by other processes are seen when an entry expires:
//! [`Freshness::Ttl`] for stores whose values change (manifests), never for stores whose keys
//! are written once ([`Freshness::Immutable`]: chunk packs, whose names are random and whose
//! bytes never change).
//!
//! **Restart.** Entries survive the process: opening the cache lists its files and indexes
//! them again. Each file carries its length, fill time and CRC-32; a file that does not check
//! is a miss and is deleted, never an error.

use std::future::Future;
use std::hash::Hasher;
use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hybridstore_core::raw::run_to_completion;
use hybridstore_core::{Error, Key, KvStore, ObjectMeta, PutOptions, Result, WriteBatch};
use moka::notification::RemovalCause;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::epoch::StripedEpochs;

/// Bytes of the header in front of every cached value: magic `HSDC`, version, three
/// reserved bytes, fill time (milliseconds since the Unix epoch), value length, CRC-32 of
/// the value, four reserved bytes.
pub const DISK_ENTRY_HEADER_LEN: usize = 32;

const MAGIC: &[u8; 4] = b"HSDC";
const VERSION: u8 = 1;

/// Default bound of a disk cache: 4 GiB.
pub const DEFAULT_DISK_CACHE_BYTES: u64 = 4 << 30;

/// Default largest value a disk cache keeps: 32 MiB (two default chunk packs).
pub const DEFAULT_DISK_MAX_ENTRY_BYTES: u64 = 32 << 20;

/// Settings of a [`DiskCache`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DiskCacheConfig {
    /// The directory holding the cache's files (created if missing; 256 subdirectories).
    pub dir: PathBuf,
    /// Bytes of files the cache keeps at most (default [`DEFAULT_DISK_CACHE_BYTES`]).
    pub capacity_bytes: u64,
    /// Largest value kept, in bytes (default [`DEFAULT_DISK_MAX_ENTRY_BYTES`]); larger ones
    /// are read from the store every time.
    pub max_entry_bytes: u64,
}

impl DiskCacheConfig {
    /// A cache in `dir` with the default bounds.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        DiskCacheConfig {
            dir: dir.into(),
            capacity_bytes: DEFAULT_DISK_CACHE_BYTES,
            max_entry_bytes: DEFAULT_DISK_MAX_ENTRY_BYTES,
        }
    }

    /// Sets `capacity_bytes`.
    pub fn with_capacity_bytes(mut self, bytes: u64) -> Self {
        self.capacity_bytes = bytes;
        self
    }

    /// Sets `max_entry_bytes`.
    pub fn with_max_entry_bytes(mut self, bytes: u64) -> Self {
        self.max_entry_bytes = bytes;
        self
    }

    /// Checks the settings.
    ///
    /// # Errors
    /// `InvalidInput` if the capacity is zero, or an entry may exceed the capacity or 4 GiB.
    pub fn validate(&self) -> Result<()> {
        if self.capacity_bytes == 0 {
            return Err(Error::invalid_input("disk cache capacity must be positive"));
        }
        if self.max_entry_bytes + DISK_ENTRY_HEADER_LEN as u64 > self.capacity_bytes
            || self.max_entry_bytes > u64::from(u32::MAX) - DISK_ENTRY_HEADER_LEN as u64
        {
            return Err(Error::invalid_input(format!(
                "disk cache max_entry_bytes ({}) must leave room for its header within the \
                 capacity ({} bytes) and 4 GiB",
                self.max_entry_bytes, self.capacity_bytes
            )));
        }
        Ok(())
    }
}

/// How long a [`DiskCachedStore`]'s entries stay valid against writes by other processes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Freshness {
    /// Keys are written once and never change (content-addressed chunk packs): entries are
    /// valid until evicted or until a write through this layer.
    Immutable,
    /// Values change (manifests): an entry older than this is read again from the store.
    Ttl(Duration),
}

/// Counters of a [`DiskCache`] since it was opened.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct DiskCacheStats {
    /// Reads answered from a file.
    pub hits: u64,
    /// Reads that went to the store (no entry, a stale or expired one, or a damaged file).
    pub misses: u64,
    /// Values written into the cache.
    pub fills: u64,
    /// Entries evicted to keep the bound.
    pub evictions: u64,
    /// Files found damaged (and deleted).
    pub damaged: u64,
    /// Entries indexed now.
    pub entries: u64,
    /// Bytes of the indexed files.
    pub bytes: u64,
}

#[derive(Clone, Copy, Debug)]
struct Indexed {
    /// File length (header included).
    size: u32,
    /// The key's write epoch when the value was loaded.
    epoch: u64,
}

type EntryId = [u8; 32];

#[derive(Debug, Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    fills: AtomicU64,
    evictions: AtomicU64,
    damaged: AtomicU64,
}

struct Inner {
    config: DiskCacheConfig,
    index: moka::sync::Cache<EntryId, Indexed>,
    epochs: StripedEpochs,
    counters: Arc<Counters>,
}

/// A size-bounded cache of values in local files, shared by the [`DiskCachedStore`] layers
/// made from it (see the [module docs](self)). Cloning is cheap and shares the cache.
#[derive(Clone)]
pub struct DiskCache {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for DiskCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskCache")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// The file of entry `id` under `dir`: `<dir>/<first byte, hex>/<id, hex>`.
fn entry_path(dir: &Path, id: &EntryId) -> PathBuf {
    let name = hex::encode(id);
    dir.join(&name[..2]).join(name)
}

fn blocking_error(e: tokio::task::JoinError) -> Error {
    Error::backend(format!("disk cache task failed: {e}"))
}

impl DiskCache {
    /// Opens the cache in `config.dir`, indexing the files an earlier process left (and
    /// deleting half-written ones).
    ///
    /// # Errors
    /// `InvalidInput` for invalid settings; I/O errors creating or listing the directory.
    pub async fn open(config: DiskCacheConfig) -> Result<DiskCache> {
        config.validate()?;
        let counters = Arc::new(Counters::default());
        let dir = config.dir.clone();
        let listener_dir = dir.clone();
        let listener_counters = counters.clone();
        let index = moka::sync::Cache::builder()
            .max_capacity(config.capacity_bytes)
            .weigher(|_: &EntryId, v: &Indexed| v.size)
            .eviction_listener(move |id: Arc<EntryId>, _, cause| {
                // A replaced entry's file was already overwritten by its successor's.
                if cause == RemovalCause::Replaced {
                    return;
                }
                if cause == RemovalCause::Size {
                    listener_counters.evictions.fetch_add(1, Ordering::Relaxed);
                }
                let _ = std::fs::remove_file(entry_path(&listener_dir, &id));
            })
            .build();
        let cache = DiskCache {
            inner: Arc::new(Inner {
                config,
                index,
                epochs: StripedEpochs::new(),
                counters,
            }),
        };
        let inner = cache.inner.clone();
        tokio::task::spawn_blocking(move || inner.rescan(&dir))
            .await
            .map_err(blocking_error)??;
        Ok(cache)
    }

    /// A layer over `inner` that reads through this cache. `name` keeps the entries of
    /// layers sharing the cache apart (e.g. `"manifests"`, `"chunks"`); `freshness` says how
    /// long entries stay valid against other processes' writes.
    pub fn layer<S: KvStore>(
        &self,
        inner: S,
        name: &str,
        freshness: Freshness,
    ) -> DiskCachedStore<S> {
        DiskCachedStore {
            inner,
            cache: self.clone(),
            name: name.to_string(),
            freshness,
        }
    }

    /// The settings.
    pub fn config(&self) -> &DiskCacheConfig {
        &self.inner.config
    }

    /// Counters since the cache was opened, and what it holds (entries and bytes as of
    /// moka's last maintenance: [`run_pending_tasks`](Self::run_pending_tasks) first for
    /// exact figures).
    pub fn stats(&self) -> DiskCacheStats {
        let c = &self.inner.counters;
        DiskCacheStats {
            hits: c.hits.load(Ordering::Relaxed),
            misses: c.misses.load(Ordering::Relaxed),
            fills: c.fills.load(Ordering::Relaxed),
            evictions: c.evictions.load(Ordering::Relaxed),
            damaged: c.damaged.load(Ordering::Relaxed),
            entries: self.inner.index.entry_count(),
            bytes: self.inner.index.weighted_size(),
        }
    }

    /// Runs moka's pending maintenance now (evictions to the bound, their files deleted), so
    /// `stats` and the directory agree. Blocks; cheap when nothing is pending.
    pub async fn run_pending_tasks(&self) -> Result<()> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || inner.index.run_pending_tasks())
            .await
            .map_err(blocking_error)
    }
}

impl Inner {
    /// Indexes every complete entry file under `dir` and deletes temporary ones.
    fn rescan(&self, dir: &Path) -> Result<()> {
        let io = |e: std::io::Error, path: &Path| {
            Error::from(e)
                .with_operation("open disk cache")
                .with_context("path", path.display())
        };
        std::fs::create_dir_all(dir).map_err(|e| io(e, dir))?;
        for sub in std::fs::read_dir(dir).map_err(|e| io(e, dir))? {
            let sub = sub.map_err(|e| io(e, dir))?;
            if !sub.file_type().map_err(|e| io(e, dir))?.is_dir() {
                continue;
            }
            for file in std::fs::read_dir(sub.path()).map_err(|e| io(e, &sub.path()))? {
                let file = file.map_err(|e| io(e, &sub.path()))?;
                let name = file.file_name();
                let parsed = name
                    .to_str()
                    .and_then(|n| hex::decode(n).ok())
                    .and_then(|b| EntryId::try_from(b).ok());
                let len = file.metadata().map(|m| m.len()).unwrap_or(0);
                match parsed {
                    Some(id)
                        if (DISK_ENTRY_HEADER_LEN as u64..=u64::from(u32::MAX)).contains(&len) =>
                    {
                        self.index.insert(
                            id,
                            Indexed {
                                size: len as u32,
                                epoch: 0,
                            },
                        );
                    }
                    // Half-written fills, foreign or truncated files.
                    _ => {
                        let _ = std::fs::remove_file(file.path());
                    }
                }
            }
        }
        self.index.run_pending_tasks();
        Ok(())
    }

    fn path(&self, id: &EntryId) -> PathBuf {
        entry_path(&self.config.dir, id)
    }

    /// The value of entry `id` if it is indexed, not stale against `key`'s writes, fresh
    /// and undamaged. Blocking.
    fn lookup(&self, id: &EntryId, key: &Key, freshness: Freshness) -> Option<Bytes> {
        let found = self.lookup_inner(id, key, freshness);
        let counter = if found.is_some() {
            &self.counters.hits
        } else {
            &self.counters.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    fn lookup_inner(&self, id: &EntryId, key: &Key, freshness: Freshness) -> Option<Bytes> {
        let indexed = self.index.get(id)?;
        if indexed.epoch != self.epochs.current(key) {
            self.index.invalidate(id);
            return None;
        }
        let bytes = match std::fs::read(self.path(id)) {
            Ok(bytes) => bytes,
            Err(_) => {
                self.index.invalidate(id);
                return None;
            }
        };
        match decode_entry(&bytes) {
            Some((filled, range)) => {
                if let Freshness::Ttl(ttl) = freshness
                    && SystemTime::now()
                        .duration_since(filled)
                        .is_ok_and(|age| age >= ttl)
                {
                    self.index.invalidate(id);
                    return None;
                }
                Some(Bytes::from(bytes).slice(range))
            }
            None => {
                self.counters.damaged.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(path = %self.path(id).display(), "damaged disk cache entry: deleted");
                self.index.invalidate(id);
                None
            }
        }
    }

    /// Stores `value` as entry `id`, loaded when `key`'s write epoch was `epoch`, unless a
    /// write has finished since. Blocking. Failures only cost the entry.
    fn fill(&self, id: &EntryId, key: &Key, epoch: u64, value: &[u8]) {
        if value.len() as u64 > self.config.max_entry_bytes || self.epochs.current(key) != epoch {
            return;
        }
        let path = self.path(id);
        let tmp = path.with_extension(format!("tmp{:016x}", rand::random::<u64>()));
        let written = (|| {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(&encode_header(value))?;
            file.write_all(value)?;
            // No fsync: a file torn by a crash fails its CRC and is a miss.
            std::fs::rename(&tmp, &path)
        })();
        match written {
            Ok(()) => {
                self.index.insert(
                    *id,
                    Indexed {
                        size: (DISK_ENTRY_HEADER_LEN + value.len()) as u32,
                        epoch,
                    },
                );
                self.counters.fills.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                tracing::debug!(error = %e, "disk cache fill failed");
            }
        }
    }
}

fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn crc(value: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.write(value);
    hasher.finalize()
}

fn encode_header(value: &[u8]) -> [u8; DISK_ENTRY_HEADER_LEN] {
    let mut header = [0u8; DISK_ENTRY_HEADER_LEN];
    header[..4].copy_from_slice(MAGIC);
    header[4] = VERSION;
    header[8..16].copy_from_slice(&now_millis().to_le_bytes());
    header[16..24].copy_from_slice(&(value.len() as u64).to_le_bytes());
    header[24..28].copy_from_slice(&crc(value).to_le_bytes());
    header
}

/// The fill time and the value's byte range of an entry file, or `None` if it does not
/// check (magic, version, length, CRC-32).
fn decode_entry(bytes: &[u8]) -> Option<(SystemTime, Range<usize>)> {
    let header = bytes.get(..DISK_ENTRY_HEADER_LEN)?;
    if &header[..4] != MAGIC || header[4] != VERSION {
        return None;
    }
    let filled = u64::from_le_bytes(header[8..16].try_into().ok()?);
    let len = u64::from_le_bytes(header[16..24].try_into().ok()?);
    let stored_crc = u32::from_le_bytes(header[24..28].try_into().ok()?);
    if len != (bytes.len() - DISK_ENTRY_HEADER_LEN) as u64 {
        return None;
    }
    let value = &bytes[DISK_ENTRY_HEADER_LEN..];
    if crc(value) != stored_crc {
        return None;
    }
    let filled = UNIX_EPOCH + Duration::from_millis(filled);
    Some((filled, DISK_ENTRY_HEADER_LEN..bytes.len()))
}

/// A `KvStore` layer that reads `get` and `get_range` through a [`DiskCache`] (see the
/// [module docs](self)); every other read goes to the store underneath, and writes go
/// there first and then make the cached entries of their keys stale.
///
/// Made by [`DiskCache::layer`].
#[derive(Debug, Clone)]
pub struct DiskCachedStore<S> {
    inner: S,
    cache: DiskCache,
    name: String,
    freshness: Freshness,
}

/// Bumps `key`'s write epoch when dropped.
struct BumpOnDrop {
    cache: Arc<Inner>,
    key: Key,
}

impl Drop for BumpOnDrop {
    fn drop(&mut self) {
        self.cache.epochs.bump(&self.key);
    }
}

/// What a cache entry holds: a whole value or one byte range of it.
#[derive(Clone, Copy)]
enum Part {
    Whole,
    Range(u64, u64),
}

impl<S: KvStore> DiskCachedStore<S> {
    /// The store underneath.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// The cache this layer reads through.
    pub fn cache(&self) -> &DiskCache {
        &self.cache
    }

    /// The entry id of `part` of `key` in this layer: SHA-256 of the layer's name, the key
    /// and the part, so layers sharing the cache never see each other's entries.
    fn entry_id(&self, key: &Key, part: Part) -> EntryId {
        let mut hasher = Sha256::new();
        hasher.update((self.name.len() as u64).to_le_bytes());
        hasher.update(self.name.as_bytes());
        hasher.update((key.len() as u64).to_le_bytes());
        hasher.update(key.as_bytes());
        match part {
            Part::Whole => hasher.update([0u8]),
            Part::Range(start, end) => {
                hasher.update([1u8]);
                hasher.update(start.to_le_bytes());
                hasher.update(end.to_le_bytes());
            }
        }
        hasher.finalize().into()
    }

    /// Reads `part` of `key` from the cache, else with `load` from the store (filling the
    /// cache with what it found).
    async fn read_through<F>(&self, key: &Key, part: Part, load: F) -> Result<Option<Bytes>>
    where
        F: Future<Output = Result<Option<Bytes>>> + Send,
    {
        let id = self.entry_id(key, part);
        let inner = self.cache.inner.clone();
        let (k, freshness) = (key.clone(), self.freshness);
        // The epoch before the lookup: a write that finishes after it makes the fill stale.
        let epoch = inner.epochs.current(key);
        let hit = tokio::task::spawn_blocking(move || inner.lookup(&id, &k, freshness))
            .await
            .map_err(blocking_error)?;
        if let Some(value) = hit {
            return Ok(Some(value));
        }
        let loaded = load.await?;
        if let Some(value) = &loaded
            && value.len() as u64 <= self.cache.inner.config.max_entry_bytes
        {
            let (inner, k, value) = (self.cache.inner.clone(), key.clone(), value.clone());
            // Awaited, so the next read finds it; a caller that gives up does not stop it.
            let _ = tokio::task::spawn_blocking(move || inner.fill(&id, &k, epoch, &value)).await;
        }
        Ok(loaded)
    }

    /// Runs `write` on the store, then makes every cached entry of `keys` stale, both even
    /// if the caller drops the future.
    async fn invalidating<T: Send + 'static>(
        &self,
        keys: Vec<Key>,
        write: impl Future<Output = Result<T>> + Send + 'static,
    ) -> Result<T> {
        let cache = self.cache.inner.clone();
        let whole: Vec<EntryId> = keys.iter().map(|k| self.entry_id(k, Part::Whole)).collect();
        run_to_completion(async move {
            let result = write.await;
            for key in &keys {
                cache.epochs.bump(key);
            }
            // The bump made them stale; removing the whole-value entries frees their files
            // now instead of at their next lookup.
            let _ = tokio::task::spawn_blocking(move || {
                for id in &whole {
                    cache.index.invalidate(id);
                }
            })
            .await;
            result
        })
        .await
    }
}

hybridstore_core::kv_store_impl! {
    impl[S: KvStore + Clone + 'static] KvStore for DiskCachedStore<S>;
    // Streams are for values too large to cache: read from the store.
    forward(inner): [capabilities, head, scan, scan_meta, exists, list_keys, stats, get_stream];
    provided: [put, get_many, clear];
    {
        async fn get(&self, key: &Key) -> Result<Option<Bytes>> {
            self.read_through(key, Part::Whole, self.inner.get(key)).await
        }

        async fn get_range(&self, key: &Key, range: Range<u64>) -> Result<Option<Bytes>> {
            if range.start >= range.end {
                // Empty and inverted ranges: the store's own answer (or error), uncached.
                return self.inner.get_range(key, range).await;
            }
            let part = Part::Range(range.start, range.end);
            self.read_through(key, part, self.inner.get_range(key, range.clone()))
                .await
        }

        async fn put_with(&self, key: &Key, value: Bytes, options: &PutOptions) -> Result<ObjectMeta> {
            let (inner, k, options) = (self.inner.clone(), key.clone(), options.clone());
            self.invalidating(vec![key.clone()], async move {
                inner.put_with(&k, value, &options).await
            })
            .await
        }

        async fn put_stream(
            &self,
            key: &Key,
            reader: hybridstore_core::ValueReader<'_>,
            options: &PutOptions,
        ) -> Result<ObjectMeta> {
            // The reader is borrowed, so the write cannot move into a task of its own; the
            // epochs are bumped when this future ends, dropped or not (a bump is a few
            // atomic increments), which makes every entry of the key loaded before stale.
            let _stale = BumpOnDrop {
                cache: self.cache.inner.clone(),
                key: key.clone(),
            };
            self.inner.put_stream(key, reader, options).await
        }

        async fn delete(&self, key: &Key) -> Result<()> {
            let (inner, k) = (self.inner.clone(), key.clone());
            self.invalidating(vec![key.clone()], async move { inner.delete(&k).await })
                .await
        }

        async fn write_batch(&self, batch: WriteBatch) -> Result<()> {
            let keys = crate::store::written_keys(&batch);
            let inner = self.inner.clone();
            self.invalidating(keys, async move { inner.write_batch(batch).await })
                .await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_round_trips_and_damage_is_refused() {
        let value = b"some bytes".to_vec();
        let mut file = encode_header(&value).to_vec();
        file.extend_from_slice(&value);
        let (_, range) = decode_entry(&file).unwrap();
        assert_eq!(&file[range], &value[..]);
        let last = file.len() - 1;
        file[last] ^= 1;
        assert!(decode_entry(&file).is_none());
        assert!(decode_entry(&file[..10]).is_none());
    }
}
