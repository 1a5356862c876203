//! The `KvStore` trait: the one interface every backend and layer implements.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use serde::Serialize;

pub mod provided;

use crate::batch::WriteBatch;
use crate::error::Result;
use crate::key::{Key, KeyRange, MAX_KEY_LEN};
use crate::meta::{ObjectMeta, PutOptions};

/// One key with its value and metadata, as yielded by [`KvStore::scan`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The key.
    pub key: Key,
    /// The value.
    pub value: Bytes,
    /// The value's metadata.
    pub meta: ObjectMeta,
}

/// One key with its metadata, as yielded by [`KvStore::scan_meta`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetaEntry {
    /// The key.
    pub key: Key,
    /// The value's metadata.
    pub meta: ObjectMeta,
}

/// A stream of entries in key order.
pub type EntryStream<'a> = BoxStream<'a, Result<Entry>>;

/// A value's bytes as a stream, from [`KvStore::get_stream`].
pub struct ValueStream<'a> {
    /// Bytes the stream yields in all: the value's length, or the range's.
    pub len: u64,
    /// The bytes in order, in pieces of any size; an error is yielded as an item and ends
    /// the stream.
    pub body: BoxStream<'a, Result<Bytes>>,
}

impl fmt::Debug for ValueStream<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ValueStream")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl ValueStream<'static> {
    /// A stream of `value` in one piece.
    pub fn once(value: Bytes) -> ValueStream<'static> {
        ValueStream {
            len: value.len() as u64,
            body: futures::stream::once(std::future::ready(Ok(value))).boxed(),
        }
    }
}

impl ValueStream<'_> {
    /// Every byte of the stream in one `Bytes` (for small values and tests).
    ///
    /// # Errors
    /// The stream's first error; `Corrupted` if it yields a different number of bytes than
    /// `len` says.
    pub async fn collect(self) -> Result<Bytes> {
        let mut out = bytes::BytesMut::with_capacity(self.len.min(64 << 20) as usize);
        let mut body = self.body;
        while let Some(piece) = body.next().await {
            out.extend_from_slice(&piece?);
        }
        if out.len() as u64 != self.len {
            return Err(crate::Error::corrupted(format!(
                "value stream yielded {} bytes; it announced {}",
                out.len(),
                self.len
            )));
        }
        Ok(out.freeze())
    }
}

/// What [`KvStore::put_stream`] reads a value from.
pub type ValueReader<'a> = &'a mut (dyn tokio::io::AsyncRead + Send + Unpin);
/// A stream of keys with metadata in key order.
pub type MetaStream<'a> = BoxStream<'a, Result<MetaEntry>>;

/// What a store can do, as data: the conformance suite and callers read it instead of guessing
/// (after OpenDAL's `Capability`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Capabilities {
    /// Longest key accepted, in bytes (at most [`MAX_KEY_LEN`]).
    pub max_key_len: usize,
    /// Largest value accepted, in bytes; `None` means limited only by memory and disk.
    pub max_value_len: Option<u64>,
    /// Whether data survives the process (false for [`MemoryStore`](crate::MemoryStore)).
    pub durable: bool,
    /// Whether a `write_batch` interrupted by a crash recovers to all or nothing.
    pub crash_atomic_batch: bool,
}

impl Default for Capabilities {
    fn default() -> Self {
        Capabilities {
            max_key_len: MAX_KEY_LEN,
            max_value_len: None,
            durable: false,
            crash_atomic_batch: false,
        }
    }
}

impl Capabilities {
    /// Capabilities with every field at its default: [`MAX_KEY_LEN`], no value limit, not
    /// durable. Backends start from this and set what they offer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `max_key_len`.
    pub fn with_max_key_len(mut self, n: usize) -> Self {
        self.max_key_len = n;
        self
    }

    /// Sets `max_value_len`.
    pub fn with_max_value_len(mut self, n: Option<u64>) -> Self {
        self.max_value_len = n;
        self
    }

    /// Sets `durable`.
    pub fn with_durable(mut self, durable: bool) -> Self {
        self.durable = durable;
        self
    }

    /// Sets `crash_atomic_batch`.
    pub fn with_crash_atomic_batch(mut self, atomic: bool) -> Self {
        self.crash_atomic_batch = atomic;
        self
    }
}

/// Size figures of a store, from [`KvStore::stats`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct StoreStats {
    /// Number of keys.
    pub keys: u64,
    /// Sum of value sizes as written by callers, in bytes.
    pub logical_bytes: u64,
    /// Bytes the store occupies on its medium (headers, chunks, compression included), if the
    /// backend can tell.
    pub stored_bytes: Option<u64>,
    /// Backend- or layer-specific counters, by name (e.g. `"chunks"`).
    pub counters: BTreeMap<String, u64>,
}

/// An asynchronous, ordered key/value store of byte values with metadata.
///
/// Every backend (memory, files, SQL, object stores) and every layer (tenant namespaces,
/// cache, dedup, metrics) implements this trait, so they compose: a layer is a `KvStore` over
/// a `KvStore`. The trait is object safe: `Arc<dyn KvStore>` is the usual currency.
///
/// # Behaviour every implementation guarantees
/// (checked by `conformance` for every backend and layer)
/// - **Keys** are validated by [`Key`]; a store may accept shorter keys only
///   ([`Capabilities::max_key_len`]) and returns `InvalidInput` beyond that.
/// - **Reads see writes**: once `put`, `delete` or `write_batch` returns `Ok`, every later
///   call from any task of the process sees the change.
/// - **Missing is not an error**: `get` and `head` return `Ok(None)`; `delete` of a missing
///   key succeeds.
/// - **Scans** yield keys in ascending bytewise order, each at most once, stop after `limit`
///   entries, and never yield a key outside the range.
/// - **Batches** apply all or nothing (see [`WriteBatch`]).
/// - **Integrity**: a value whose bytes no longer match its checksum is reported as
///   `Corrupted`, never returned.
/// - **No panics** on any input.
#[async_trait]
pub trait KvStore: Send + Sync + fmt::Debug {
    /// What this store supports.
    fn capabilities(&self) -> Capabilities;

    /// The value stored under `key`, or `None`.
    ///
    /// # Errors
    /// `InvalidInput` for a key the store cannot hold, `Corrupted` if the stored bytes fail
    /// their checksum, backend errors.
    async fn get(&self, key: &Key) -> Result<Option<Bytes>>;

    /// The metadata of `key` without reading its value, or `None`.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    async fn head(&self, key: &Key) -> Result<Option<ObjectMeta>>;

    /// Stores `value` under `key`, replacing any previous value, and returns the new metadata.
    /// `created` is kept from the previous value if there was one.
    ///
    /// # Errors
    /// `InvalidInput` for a key or value beyond the store's limits or invalid options;
    /// backend errors. On error the previous value is unchanged.
    async fn put_with(&self, key: &Key, value: Bytes, options: &PutOptions) -> Result<ObjectMeta>;

    /// Removes `key`. Removing a missing key succeeds.
    ///
    /// # Errors
    /// Backend errors.
    async fn delete(&self, key: &Key) -> Result<()>;

    /// Entries (key, value, metadata) in `range`, in ascending key order, at most `limit`.
    ///
    /// Errors are yielded as stream items; the stream ends after the first error.
    fn scan(&self, range: KeyRange, limit: Option<usize>) -> EntryStream<'_>;

    /// Keys and metadata in `range`, in ascending key order, at most `limit`, without reading
    /// values. The default reads values through [`scan`](Self::scan); backends that keep
    /// metadata apart from values override it.
    fn scan_meta(&self, range: KeyRange, limit: Option<usize>) -> MetaStream<'_> {
        provided::scan_meta(self, range, limit)
    }

    /// Applies `batch` atomically (see [`WriteBatch`] for the exact semantics).
    ///
    /// # Errors
    /// `Conflict` if a precondition fails, `InvalidInput` for keys or values beyond the store's
    /// limits, backend errors. On error nothing was applied.
    async fn write_batch(&self, batch: WriteBatch) -> Result<()>;

    /// Stores `value` under `key` with default options.
    ///
    /// # Errors
    /// As [`put_with`](Self::put_with).
    async fn put(&self, key: &Key, value: Bytes) -> Result<ObjectMeta> {
        provided::put(self, key, value).await
    }

    /// The bytes `range` (offsets in bytes, end exclusive) of the value of `key`, or `None`
    /// if the key is absent.
    ///
    /// A range read does **not** verify the value's checksum (that needs every byte); callers
    /// that read parts frame and check them themselves, as the dedup chunk store checks each
    /// chunk's SHA-256. The default reads the whole value with [`get`](Self::get) and slices
    /// it; backends that can read a part alone (files, object stores) override it.
    ///
    /// # Errors
    /// `InvalidInput` if `range.start > range.end` or `range.end` is past the end of the value;
    /// otherwise as [`get`](Self::get).
    async fn get_range(&self, key: &Key, range: Range<u64>) -> Result<Option<Bytes>> {
        provided::get_range(self, key, range).await
    }

    /// The value of `key` (or the bytes `range` of it) as a stream, or `None` if the key is
    /// absent, for values too large to hold in memory.
    ///
    /// A whole-value stream is checked as [`get`](Self::get) checks a value: a mismatch with
    /// the stored checksum is yielded as a `Corrupted` error no later than in place of the
    /// last piece, so a reader that sees the stream end cleanly has the stored bytes. A range
    /// stream is checked as [`get_range`](Self::get_range) is. The default reads the whole
    /// value with `get` (or `get_range`) and yields it in one piece; backends and layers that
    /// hold large values (dedup, files) stream them piece by piece in bounded memory.
    ///
    /// # Errors
    /// As [`get`](Self::get) and [`get_range`](Self::get_range), before the stream starts;
    /// later failures are items of the stream.
    async fn get_stream(
        &self,
        key: &Key,
        range: Option<Range<u64>>,
    ) -> Result<Option<ValueStream<'_>>> {
        provided::get_stream(self, key, range).await
    }

    /// Stores the bytes `reader` yields until its end under `key` (the size need not be
    /// known up front) and returns the new metadata, as [`put_with`](Self::put_with) would
    /// for the same bytes. A failed or cancelled call leaves the previous value (or no key).
    ///
    /// The default reads the whole value into memory, refusing it with `InvalidInput` as soon
    /// as it passes [`Capabilities::max_value_len`] (or
    /// [`PROVIDED_STREAM_LIMIT`](provided::PROVIDED_STREAM_LIMIT) for a store without a
    /// limit), before anything is written; stores for large values override it.
    ///
    /// # Errors
    /// As `put_with`; `InvalidInput` for a value over the limit; `Unavailable` if reading
    /// fails.
    async fn put_stream(
        &self,
        key: &Key,
        reader: ValueReader<'_>,
        options: &PutOptions,
    ) -> Result<ObjectMeta> {
        provided::put_stream(self, key, reader, options).await
    }

    /// Whether `key` exists.
    ///
    /// # Errors
    /// As [`head`](Self::head).
    async fn exists(&self, key: &Key) -> Result<bool> {
        provided::exists(self, key).await
    }

    /// The keys in `range`, in order, at most `limit`.
    ///
    /// # Errors
    /// The first error of the scan.
    async fn list_keys(&self, range: KeyRange, limit: Option<usize>) -> Result<Vec<Key>> {
        provided::list_keys(self, range, limit).await
    }

    /// The values of `keys`, in the same order, `None` where a key is missing.
    ///
    /// # Errors
    /// The first error of any `get`.
    async fn get_many(&self, keys: &[Key]) -> Result<Vec<Option<Bytes>>> {
        provided::get_many(self, keys).await
    }

    /// Removes every key and returns how many were removed, in write batches of at most 1,000
    /// keys (so a very large store is not held in memory at once).
    ///
    /// # Errors
    /// The first scan or batch error; keys removed before it stay removed.
    async fn clear(&self) -> Result<u64> {
        provided::clear(self).await
    }

    /// Key count and logical bytes, from a metadata scan. Backends and layers that know more
    /// (stored bytes, chunk counts) override it.
    ///
    /// # Errors
    /// The first error of the scan.
    async fn stats(&self) -> Result<StoreStats> {
        provided::stats(self).await
    }
}

/// `value[range]` as a cheap `Bytes` slice, checking the range as
/// [`KvStore::get_range`] promises.
///
/// # Errors
/// `InvalidInput` if `range.start > range.end` or `range.end > value.len()`.
pub fn slice_range(value: &Bytes, range: Range<u64>) -> Result<Bytes> {
    check_range(&range, value.len() as u64)?;
    // Both ends are at most `value.len()`, so they fit in usize.
    Ok(value.slice(range.start as usize..range.end as usize))
}

/// Checks `range` against a value of `len` bytes as [`KvStore::get_range`] promises.
///
/// # Errors
/// `InvalidInput` if `range.start > range.end` or `range.end > len`.
pub fn check_range(range: &Range<u64>, len: u64) -> Result<()> {
    if range.start > range.end || range.end > len {
        return Err(crate::Error::invalid_input(format!(
            "byte range {}..{} is not within a value of {len} bytes",
            range.start, range.end
        )));
    }
    Ok(())
}

/// Forwards every method, provided ones included, so an `Arc` keeps its inner overrides
/// (clippy's `missing_trait_methods` fails the build when a method is added to the trait and
/// not here).
macro_rules! forward_kv_store {
    ($ty:ty) => {
        #[async_trait]
        #[deny(clippy::missing_trait_methods)]
        impl<T: KvStore + ?Sized> KvStore for $ty {
            fn capabilities(&self) -> Capabilities {
                (**self).capabilities()
            }
            async fn get(&self, key: &Key) -> Result<Option<Bytes>> {
                (**self).get(key).await
            }
            async fn head(&self, key: &Key) -> Result<Option<ObjectMeta>> {
                (**self).head(key).await
            }
            async fn put_with(
                &self,
                key: &Key,
                value: Bytes,
                options: &PutOptions,
            ) -> Result<ObjectMeta> {
                (**self).put_with(key, value, options).await
            }
            async fn delete(&self, key: &Key) -> Result<()> {
                (**self).delete(key).await
            }
            fn scan(&self, range: KeyRange, limit: Option<usize>) -> EntryStream<'_> {
                (**self).scan(range, limit)
            }
            fn scan_meta(&self, range: KeyRange, limit: Option<usize>) -> MetaStream<'_> {
                (**self).scan_meta(range, limit)
            }
            async fn write_batch(&self, batch: WriteBatch) -> Result<()> {
                (**self).write_batch(batch).await
            }
            async fn put(&self, key: &Key, value: Bytes) -> Result<ObjectMeta> {
                (**self).put(key, value).await
            }
            async fn exists(&self, key: &Key) -> Result<bool> {
                (**self).exists(key).await
            }
            async fn get_stream(
                &self,
                key: &Key,
                range: Option<Range<u64>>,
            ) -> Result<Option<ValueStream<'_>>> {
                (**self).get_stream(key, range).await
            }
            async fn put_stream(
                &self,
                key: &Key,
                reader: ValueReader<'_>,
                options: &PutOptions,
            ) -> Result<ObjectMeta> {
                (**self).put_stream(key, reader, options).await
            }
            async fn get_range(&self, key: &Key, range: Range<u64>) -> Result<Option<Bytes>> {
                (**self).get_range(key, range).await
            }
            async fn list_keys(&self, range: KeyRange, limit: Option<usize>) -> Result<Vec<Key>> {
                (**self).list_keys(range, limit).await
            }
            async fn get_many(&self, keys: &[Key]) -> Result<Vec<Option<Bytes>>> {
                (**self).get_many(keys).await
            }
            async fn clear(&self) -> Result<u64> {
                (**self).clear().await
            }
            async fn stats(&self) -> Result<StoreStats> {
                (**self).stats().await
            }
        }
    };
}

forward_kv_store!(Arc<T>);
forward_kv_store!(Box<T>);
