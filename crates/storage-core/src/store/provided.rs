//! The bodies of [`KvStore`]'s provided methods, as functions a wrapper can name.
//!
//! A layer decides every method of the trait (its `impl KvStore` denies clippy's
//! `missing_trait_methods`), and for some the trait's default is the right decision: a tenant
//! scope counts its own keys, so its `stats` is the metadata scan below and not the inner
//! store's figures. Naming the function says so; leaving the method out would say nothing,
//! and would silently keep the default when the inner store has a better one (the way
//! `Namespaced<SqlStore>::get_many` once fell back to one query per key).

use std::ops::Range;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};

use super::{KvStore, MetaEntry, MetaStream, StoreStats, ValueReader, ValueStream, slice_range};
use crate::batch::WriteBatch;
use crate::error::Result;
use crate::key::{Key, KeyRange};
use crate::meta::{ObjectMeta, PutOptions};

/// Largest value [`put_stream`] reads into memory for a store that sets no
/// `max_value_len` of its own: 1 GiB.
pub const PROVIDED_STREAM_LIMIT: u64 = 1 << 30;

/// [`KvStore::get_stream`] by default: the whole value (or range) in one piece.
///
/// # Errors
/// As [`KvStore::get`] and [`KvStore::get_range`].
pub async fn get_stream<'a, S: KvStore + ?Sized>(
    store: &'a S,
    key: &Key,
    range: Option<Range<u64>>,
) -> Result<Option<ValueStream<'a>>> {
    let value = match range {
        None => store.get(key).await?,
        Some(range) => store.get_range(key, range).await?,
    };
    Ok(value.map(ValueStream::once))
}

/// [`KvStore::put_stream`] by default: the bytes read into memory (refused past the
/// store's `max_value_len`, else [`PROVIDED_STREAM_LIMIT`], before anything is written),
/// then [`KvStore::put_with`].
///
/// # Errors
/// `InvalidInput` for a value over the limit; `Unavailable` if reading fails; otherwise as
/// `put_with`.
pub async fn put_stream<S: KvStore + ?Sized>(
    store: &S,
    key: &Key,
    reader: ValueReader<'_>,
    options: &PutOptions,
) -> Result<ObjectMeta> {
    use tokio::io::AsyncReadExt;
    let limit = store
        .capabilities()
        .max_value_len
        .unwrap_or(PROVIDED_STREAM_LIMIT)
        .min(PROVIDED_STREAM_LIMIT);
    let mut value = Vec::new();
    // One byte past the limit tells a value over it from one exactly at it.
    let read = reader
        .take(limit + 1)
        .read_to_end(&mut value)
        .await
        .map_err(|e| {
            crate::Error::new(
                crate::ErrorKind::Unavailable,
                format!("reading the value to store failed: {e}"),
            )
        })?;
    if read as u64 > limit {
        return Err(crate::Error::invalid_input(format!(
            "the value is larger than this store's limit of {limit} bytes"
        )));
    }
    store.put_with(key, Bytes::from(value), options).await
}

/// Keys per write batch in [`clear`]: a very large store is never held in memory at once.
pub const CLEAR_BATCH_KEYS: usize = 1000;

/// [`KvStore::scan_meta`] by default: the values of [`KvStore::scan`], dropped.
pub fn scan_meta<S: KvStore + ?Sized>(
    store: &S,
    range: KeyRange,
    limit: Option<usize>,
) -> MetaStream<'_> {
    store
        .scan(range, limit)
        .map_ok(|e| MetaEntry {
            key: e.key,
            meta: e.meta,
        })
        .boxed()
}

/// [`KvStore::put`] by default: [`KvStore::put_with`] with default options.
///
/// # Errors
/// As [`KvStore::put_with`].
pub async fn put<S: KvStore + ?Sized>(store: &S, key: &Key, value: Bytes) -> Result<ObjectMeta> {
    store.put_with(key, value, &PutOptions::default()).await
}

/// [`KvStore::get_range`] by default: the whole value from [`KvStore::get`], sliced.
///
/// # Errors
/// `InvalidInput` for a range outside the value; otherwise as [`KvStore::get`].
pub async fn get_range<S: KvStore + ?Sized>(
    store: &S,
    key: &Key,
    range: Range<u64>,
) -> Result<Option<Bytes>> {
    let Some(value) = store.get(key).await? else {
        return Ok(None);
    };
    slice_range(&value, range).map(Some)
}

/// [`KvStore::exists`] by default: whether [`KvStore::head`] finds the key.
///
/// # Errors
/// As [`KvStore::head`].
pub async fn exists<S: KvStore + ?Sized>(store: &S, key: &Key) -> Result<bool> {
    Ok(store.head(key).await?.is_some())
}

/// [`KvStore::list_keys`] by default: the keys of [`KvStore::scan_meta`].
///
/// # Errors
/// The first error of the scan.
pub async fn list_keys<S: KvStore + ?Sized>(
    store: &S,
    range: KeyRange,
    limit: Option<usize>,
) -> Result<Vec<Key>> {
    store
        .scan_meta(range, limit)
        .map_ok(|e| e.key)
        .try_collect()
        .await
}

/// [`KvStore::get_many`] by default: one [`KvStore::get`] per key, in order.
///
/// # Errors
/// The first error of any `get`.
pub async fn get_many<S: KvStore + ?Sized>(store: &S, keys: &[Key]) -> Result<Vec<Option<Bytes>>> {
    let mut out = Vec::with_capacity(keys.len());
    for key in keys {
        out.push(store.get(key).await?);
    }
    Ok(out)
}

/// [`KvStore::clear`] by default: [`KvStore::list_keys`] and [`KvStore::write_batch`] of
/// deletes, [`CLEAR_BATCH_KEYS`] keys at a time, until the store is empty. Returns how many
/// keys were removed.
///
/// # Errors
/// The first scan or batch error; keys removed before it stay removed.
pub async fn clear<S: KvStore + ?Sized>(store: &S) -> Result<u64> {
    let mut removed = 0;
    loop {
        let keys = store
            .list_keys(KeyRange::all(), Some(CLEAR_BATCH_KEYS))
            .await?;
        if keys.is_empty() {
            return Ok(removed);
        }
        removed += keys.len() as u64;
        let mut batch = WriteBatch::new();
        for key in keys {
            batch.delete(key);
        }
        store.write_batch(batch).await?;
    }
}

/// [`KvStore::stats`] by default: key count and logical bytes from a metadata scan.
///
/// # Errors
/// The first error of the scan.
pub async fn stats<S: KvStore + ?Sized>(store: &S) -> Result<StoreStats> {
    let mut stats = StoreStats::default();
    let mut stream = store.scan_meta(KeyRange::all(), None);
    while let Some(entry) = stream.try_next().await? {
        stats.keys += 1;
        stats.logical_bytes += entry.meta.size;
    }
    Ok(stats)
}
