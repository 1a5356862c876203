//! `DedupStore<S>`: the `KvStore` layer that stores values as manifests + shared chunks.

use std::ops::{Bound, Range};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use hybridstore_core::raw::{WriteOrder, cpu_bound, provided, run_to_completion, spawn_cpu};
use hybridstore_core::raw::{check_range, slice_range};
use hybridstore_core::{
    BatchOp, Capabilities, Entry, EntryStream, Error, Expect, Key, KeyRange, KvStore, MetaEntry,
    MetaStream, ObjectMeta, PutOptions, Result, Sha256Digest, StoreStats, ValueReader, ValueStream,
    WriteBatch,
};
use serde::Serialize;
use sha2::Digest;
use tokio::io::AsyncRead;

use crate::chunk::ChunkId;
use crate::chunk_store::{ChunkStore, DEFAULT_TARGET_PACK_SIZE, NewChunk, PendingChunks};
use crate::chunker::ChunkerConfig;
use crate::encode::{EncodedValue, encode_value, hash_and_encode};
use crate::manifest::{ChunkList, Manifest};

mod kv;
mod options;
mod stream;

use kv::*;
use options::ratio;
pub use options::{DedupOptions, DedupStats};
use stream::*;

/// Streamed chunks are hashed and compressed in groups of about this many bytes, one
/// blocking task each.
const STREAM_GROUP_BYTES: usize = 1024 * 1024;
/// Buffer between a streamed value's source and the chunker, in bytes: tokio's own
/// largest blocking read of a file (2 MiB, `tokio::fs::File`'s `DEFAULT_MAX_BUF_SIZE`).
const STREAM_READ_BUFFER_BYTES: usize = 2 * 1024 * 1024;
/// The most a reassembly allocates up front, whatever a manifest claims: the value's real
/// bytes, each chunk checked against its id and length, grow it from there.
const PREALLOC_MAX: usize = 64 * 1024 * 1024;
/// A write batch's puts are encoded in groups of about this many bytes, one blocking task
/// each, so a batch uses every core.
const ENCODE_GROUP_BYTES: usize = 1024 * 1024;
/// Chunks of one value read concurrently.
const READ_AHEAD: usize = 4;

/// A [`KvStore`] layer that stores each value as a **manifest** in the inner store `S` and
/// its content as content-defined **chunks** in a [`ChunkStore`], so equal and similar
/// values share storage.
///
/// - **Write**: the value is cut with FastCDC ([`ChunkerConfig`]), every chunk hashed
///   (SHA-256 = chunk id) and, if not yet stored, LZ4-compressed and added to a pack; once the
///   packs holding its chunks are durable, the manifest (ordered chunk ids and lengths,
///   whole-value SHA-256; see [`Manifest`]) is written to `S`. Values of at most
///   [`DedupOptions::inline_max`] bytes are kept inline in the manifest.
/// - **Read**: the manifest is decoded, chunks are read (each checked against its id) and the
///   whole value is checked against its SHA-256: damage anywhere gives `Corrupted`, never
///   wrong bytes.
/// - **Metadata** is the value's: `size` and `checksum` are of the value as written;
///   `dedup_hash` is the SHA-256 of its manifest.
/// - **Deleting** a key deletes its manifest; chunks nothing refers to any more are reclaimed
///   by [`collect_garbage`](Self::collect_garbage).
/// - **Batches** are atomic as `S`'s are: all chunks are made durable first, then the
///   manifests are written in one batch of `S`.
///
/// One `DedupStore` owns its chunk store: garbage collection marks from this store's
/// manifests only, so two manifest stores must not share one chunk backend.
///
/// **Cancellation and order.** A `put` or `write_batch` whose future is dropped after its
/// first poll finishes in a task of its own (a `put_reader` once its input is read), still
/// registered with garbage collection, so a collection never marks between the chunks it
/// would sweep and the manifest that references them. Manifest writes of one key reach the
/// manifest store in the order the writes began (a [`WriteOrder`] ticket per write), so
/// a write finishing in the background never lands after a later write of the same key.
/// Writes of different keys stay concurrent; only their manifest writes may wait, and only
/// for writes of keys sharing one of 4,096 stripes.
///
/// Cloning is cheap: clones share the manifest store, the chunk store and the GC lock.
#[derive(Debug)]
pub struct DedupStore<S> {
    inner: Arc<S>,
    chunks: ChunkStore,
    options: DedupOptions,
    gc: Arc<tokio::sync::Mutex<()>>,
    /// Manifest writes of a key reach `inner` in the order the writes began.
    order: Arc<WriteOrder>,
}

impl<S> Clone for DedupStore<S> {
    fn clone(&self) -> Self {
        DedupStore {
            inner: self.inner.clone(),
            chunks: self.chunks.clone(),
            options: self.options.clone(),
            gc: self.gc.clone(),
            order: self.order.clone(),
        }
    }
}

impl<S: KvStore> DedupStore<S> {
    /// A dedup layer over the manifest store `manifests`, with its chunk packs in
    /// `chunk_backend` (opened and indexed here; see [`ChunkStore::open`]).
    ///
    /// # Errors
    /// `InvalidInput` for invalid options; errors of opening the chunk store.
    pub async fn open(
        manifests: S,
        chunk_backend: Arc<dyn KvStore>,
        options: DedupOptions,
    ) -> Result<Self> {
        options.validate()?;
        let chunks = ChunkStore::open(chunk_backend, options.target_pack_size).await?;
        Ok(DedupStore {
            inner: Arc::new(manifests),
            chunks,
            options,
            gc: Arc::new(tokio::sync::Mutex::new(())),
            order: WriteOrder::new(),
        })
    }

    /// The manifest store.
    pub fn inner(&self) -> &S {
        self.inner.as_ref()
    }

    /// The chunk store.
    pub fn chunk_store(&self) -> &ChunkStore {
        &self.chunks
    }

    /// The options in force.
    pub fn options(&self) -> &DedupOptions {
        &self.options
    }

    /// The decoded manifest of `key`, or `None` if absent.
    ///
    /// # Errors
    /// Errors of the inner store; `Corrupted` if the stored bytes are not a manifest.
    pub async fn manifest(&self, key: &Key) -> Result<Option<Manifest>> {
        match self.inner.get(key).await? {
            Some(bytes) => Manifest::decode(&bytes)
                .map(Some)
                .map_err(|e| e.with_context("key", key)),
            None => Ok(None),
        }
    }

    /// Every key in `range` with its manifest and its value's metadata (size, checksum, times,
    /// content type: what `scan_meta` gives), in key order, without reading any chunk: one
    /// scan of the manifest store. A backup captures a store's moment this way.
    ///
    /// # Errors
    /// Items fail with the inner store's errors, or `Corrupted` (naming the key) for bytes
    /// that are not a manifest.
    pub fn scan_manifests(
        &self,
        range: KeyRange,
    ) -> futures::stream::BoxStream<'_, Result<(Key, Manifest, ObjectMeta)>> {
        self.inner
            .scan(range, None)
            .and_then(|entry| async move {
                let (manifest, meta) = decode_meta(&entry)?;
                Ok((entry.key, manifest, meta))
            })
            .boxed()
    }

    /// Serialises garbage collections.
    pub(crate) fn gc_lock(&self) -> &tokio::sync::Mutex<()> {
        &self.gc
    }

    fn check_put(&self, key: &Key, options: &PutOptions) -> Result<()> {
        options.validate()?;
        self.check_key(key)
    }

    /// The longest value this store takes: unbounded over a manifest store without a value
    /// limit, else as many bytes as the chunks a largest manifest can list
    /// ([`max_value_len`](crate::manifest::max_value_len)).
    pub(super) fn max_value_len(&self) -> Option<u64> {
        self.inner
            .capabilities()
            .max_value_len
            .map(|m| crate::manifest::max_value_len(m, self.options.chunker.min_size))
    }

    /// `InvalidInput` for a value of `len` bytes over [`max_value_len`](Self::max_value_len).
    pub(super) fn check_value_len(&self, len: u64) -> Result<()> {
        match self.max_value_len() {
            Some(max) if len > max => Err(Error::invalid_input(format!(
                "the value is {len} bytes or more; this store takes at most {max}"
            ))),
            _ => Ok(()),
        }
    }

    fn check_key(&self, key: &Key) -> Result<()> {
        let max = self.inner.capabilities().max_key_len;
        if key.len() > max {
            return Err(Error::invalid_input(format!(
                "key is {} bytes; this store takes at most {max}",
                key.len()
            )));
        }
        Ok(())
    }

    /// Cuts, hashes and compresses `value` (off the async worker from 16 KiB, see
    /// [`cpu_bound`]).
    async fn encode(&self, value: Bytes) -> Result<(Bytes, EncodedValue)> {
        let (chunker, inline_max, chunks) = (
            self.options.chunker,
            self.options.inline_max,
            self.chunks.clone(),
        );
        cpu_bound(value.len(), move || {
            let encoded = encode_value(&value, &chunker, inline_max, &chunks);
            (value, encoded)
        })
        .await
    }

    /// Encodes many values on the blocking pool, about [`ENCODE_GROUP_BYTES`] per task.
    async fn encode_all(&self, values: Vec<Bytes>) -> Result<Vec<(Bytes, EncodedValue)>> {
        let mut groups: Vec<Vec<(usize, Bytes)>> = Vec::new();
        let mut group_bytes = usize::MAX;
        for (i, v) in values.into_iter().enumerate() {
            if group_bytes >= ENCODE_GROUP_BYTES {
                groups.push(Vec::new());
                group_bytes = 0;
            }
            group_bytes += v.len() + 64;
            if let Some(last) = groups.last_mut() {
                last.push((i, v));
            }
        }
        let tasks = groups.into_iter().map(|group| {
            let (chunker, inline_max, chunks) = (
                self.options.chunker,
                self.options.inline_max,
                self.chunks.clone(),
            );
            spawn_cpu(move || {
                group
                    .into_iter()
                    .map(|(i, v)| {
                        let e = encode_value(&v, &chunker, inline_max, &chunks);
                        (i, v, e)
                    })
                    .collect::<Vec<_>>()
            })
        });
        let mut out: Vec<(usize, Bytes, EncodedValue)> = Vec::new();
        for done in futures::future::join_all(tasks).await {
            out.extend(done?);
        }
        out.sort_by_key(|(i, ..)| *i);
        Ok(out.into_iter().map(|(_, v, e)| (v, e)).collect())
    }

    /// Rebuilds a value from its manifest, checking every chunk and the whole value.
    async fn load(&self, manifest: Manifest) -> Result<Bytes> {
        let list = match manifest {
            Manifest::Inline(value) => return Ok(value),
            Manifest::Chunked(list) => list,
        };
        if let [(id, len)] = list.chunks[..] {
            // The chunk id is the value's SHA-256, and `read` checked it.
            let data = self.chunks.read(&id).await?;
            check_len(&id, len, &data)?;
            return Ok(data);
        }
        let checksum = list.checksum;
        let total = usize::try_from(list.total_len)
            .map_err(|_| Error::corrupted("value larger than the address space"))?;
        // `total_len` is the manifest's word only; never allocate more than a bound on it.
        let prealloc = total.min(PREALLOC_MAX);
        let chunks = self.chunks.clone();
        let mut parts = futures::stream::iter(list.chunks)
            .map(move |(id, len)| {
                let chunks = chunks.clone();
                async move {
                    let data = chunks.read(&id).await?;
                    check_len(&id, len, &data)?;
                    Ok::<_, Error>(data)
                }
            })
            .buffered(READ_AHEAD);
        let mut out = Vec::with_capacity(prealloc);
        while let Some(part) = parts.try_next().await? {
            out.extend_from_slice(&part);
        }
        let out = Bytes::from(out);
        let whole = out.clone();
        let digest = cpu_bound(out.len(), move || Sha256Digest::of(&whole)).await?;
        if digest != checksum {
            return Err(Error::corrupted(
                "value does not match its SHA-256 checksum after reassembly",
            ));
        }
        Ok(out)
    }

    /// The inner entry of `key` (manifest and inner metadata), in one read.
    async fn inner_entry(&self, key: &Key) -> Result<Option<Entry>> {
        let bound = key.to_bytes();
        let range = KeyRange::new(Bound::Included(bound.clone()), Bound::Included(bound));
        self.inner.scan(range, Some(1)).try_next().await
    }

    /// Adds the new chunks of encoded values to the open pack (copying their blobs into it:
    /// through [`cpu_bound`]) and returns
    /// the commits to wait for, with the values.
    async fn add_chunks(
        &self,
        mut encoded: Vec<(Bytes, EncodedValue)>,
    ) -> Result<(PendingChunks, Vec<(Bytes, EncodedValue)>)> {
        let chunks = self.chunks.clone();
        let bytes: usize = encoded.iter().map(|(v, _)| v.len()).sum();
        let add = move || {
            let mut pending = PendingChunks::default();
            for (value, enc) in &mut encoded {
                pending.absorb(chunks.add(enc.new_chunks(value)));
            }
            (pending, encoded)
        };
        cpu_bound(bytes, add).await
    }

    /// `write_batch`'s work, on an owned handle so it can outlive a dropped caller.
    async fn write_batch_owned(&self, batch: WriteBatch) -> Result<()> {
        // Both taken at the first poll: a batch dropped later still holds its place.
        let _writer = self.chunks.writer();
        let ticket = self
            .order
            .begin(batch.ops().iter().filter_map(|op| match op {
                BatchOp::Put { key, .. } | BatchOp::Delete { key } => Some(key),
                BatchOp::Check { .. } => None,
            }));
        let mut puts = Vec::new();
        for op in batch.ops() {
            if let BatchOp::Put {
                key,
                value,
                options,
            } = op
            {
                self.check_put(key, options)?;
                self.check_value_len(value.len() as u64)?;
                puts.push(value.clone());
            }
        }
        let encoded = self.encode_all(puts).await?;
        let (pending, encoded) = self.add_chunks(encoded).await?;
        let mut encoded = encoded.into_iter();
        let mut translated = WriteBatch::new();
        for op in batch.ops() {
            match op {
                BatchOp::Put { key, options, .. } => {
                    let Some((_, enc)) = encoded.next() else {
                        return Err(Error::backend("internal: encoded values out of step"));
                    };
                    translated.put_with(key.clone(), Bytes::from(enc.manifest), options.clone());
                }
                BatchOp::Delete { key } => {
                    translated.delete(key.clone());
                }
                BatchOp::Check { key, expect } => {
                    let expect = match expect {
                        Expect::Checksum(want) => {
                            // The inner store knows the manifest's checksum; translate the
                            // value's into it, and let the inner batch check it atomically.
                            let current = self.inner_entry(key).await?.filter(|e| e.key == *key);
                            match current {
                                Some(entry) if decode_meta(&entry)?.1.checksum == *want => {
                                    Expect::Checksum(entry.meta.checksum)
                                }
                                _ => return Err(hybridstore_core::raw::conflict(key, expect)),
                            }
                        }
                        other => other.clone(),
                    };
                    translated.expect(key.clone(), expect);
                }
            }
        }
        self.chunks.commit(pending).await?;
        ticket.turn().await;
        self.inner.write_batch(translated).await
    }

    /// Statistics: one pass over every manifest plus the chunk index.
    ///
    /// # Errors
    /// Errors of scanning the manifest store; `Corrupted` for a manifest that does not decode.
    pub async fn dedup_stats(&self) -> Result<DedupStats> {
        let mut stats = DedupStats::default();
        let mut referenced: std::collections::HashSet<ChunkId> = std::collections::HashSet::new();
        let mut entries = self.inner.scan(KeyRange::all(), None);
        while let Some(entry) = entries.try_next().await? {
            let manifest =
                Manifest::decode(&entry.value).map_err(|e| e.with_context("key", &entry.key))?;
            stats.keys += 1;
            stats.manifest_bytes += entry.value.len() as u64;
            stats.logical_bytes += manifest.value_len();
            match manifest {
                Manifest::Inline(v) => {
                    stats.inline_values += 1;
                    stats.inline_bytes += v.len() as u64;
                }
                Manifest::Chunked(list) => {
                    stats.chunk_references += list.chunks.len() as u64;
                    referenced.extend(list.chunks.iter().map(|(id, _)| *id));
                }
            }
        }
        drop(entries);
        let sizes = self.chunks.sizes_of(&referenced);
        stats.referenced_raw_bytes = sizes.raw_bytes;
        stats.referenced_blob_bytes = sizes.blob_bytes;
        stats.missing_chunks = sizes.missing;
        stats.referenced_chunks = sizes.chunks;
        let store = self.chunks.stats();
        stats.stored_chunks = store.chunks;
        stats.packs = store.packs;
        stats.pack_bytes = store.pack_bytes;
        stats.unreferenced_blob_bytes =
            store.blob_bytes.saturating_sub(stats.referenced_blob_bytes);
        stats.stored_bytes = store.pack_bytes + stats.inline_bytes;
        stats.dedup_ratio = ratio(
            stats.logical_bytes,
            stats.referenced_raw_bytes + stats.inline_bytes,
        );
        stats.compression_ratio = ratio(stats.referenced_raw_bytes, stats.referenced_blob_bytes);
        Ok(stats)
    }
}
