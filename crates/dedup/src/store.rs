//! `DedupStore<S>`: the `KvStore` layer that stores values as manifests + shared chunks.

use std::ops::Bound;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use hybridstore_core::{
    BatchOp, Capabilities, Entry, EntryStream, Error, Expect, Key, KeyRange, KvStore, MetaEntry,
    MetaStream, ObjectMeta, PutOptions, Result, Sha256Digest, StoreStats, WriteBatch, WriteOrder,
    cpu_bound, run_to_completion, spawn_cpu,
};
use serde::Serialize;
use sha2::Digest;
use tokio::io::AsyncRead;

use crate::chunk::ChunkId;
use crate::chunk_store::{ChunkStore, DEFAULT_TARGET_PACK_SIZE, NewChunk, PendingChunks};
use crate::chunker::ChunkerConfig;
use crate::encode::{EncodedValue, encode_value, hash_and_encode};
use crate::manifest::{ChunkList, Manifest};

/// Streamed chunks are hashed and compressed in groups of about this many bytes, one
/// blocking task each.
const STREAM_GROUP_BYTES: usize = 1024 * 1024;
/// The most a reassembly allocates up front, whatever a manifest claims: the value's real
/// bytes, each chunk checked against its id and length, grow it from there.
const PREALLOC_MAX: usize = 64 * 1024 * 1024;
/// A write batch's puts are encoded in groups of about this many bytes, one blocking task
/// each, so a batch uses every core.
const ENCODE_GROUP_BYTES: usize = 1024 * 1024;
/// Chunks of one value read concurrently.
const READ_AHEAD: usize = 4;

/// Options of a [`DedupStore`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct DedupOptions {
    /// Chunk size bounds (default 4 / 16 / 64 KiB, see [`ChunkerConfig`]).
    pub chunker: ChunkerConfig,
    /// Values of at most this many bytes are kept inline in their manifest (default 256).
    /// Below about that size a chunk reference (a 36-byte manifest entry, a 48-byte pack index
    /// entry and a 9-byte blob header) costs as much as sharing could save. At most
    /// `chunker.min_size`, so an inline value is always a single chunk's worth.
    pub inline_max: usize,
    /// Size in bytes at which a writer seals the open pack itself (default 16 MiB, restic's
    /// default pack size).
    pub target_pack_size: usize,
}

impl Default for DedupOptions {
    fn default() -> Self {
        DedupOptions {
            chunker: ChunkerConfig::default(),
            inline_max: 256,
            target_pack_size: DEFAULT_TARGET_PACK_SIZE,
        }
    }
}

impl DedupOptions {
    /// Checks the options.
    ///
    /// # Errors
    /// `InvalidInput` for chunk sizes `fastcdc` refuses, `inline_max > chunker.min_size`, or a
    /// zero pack size.
    pub fn validate(&self) -> Result<()> {
        self.chunker.validate()?;
        if self.inline_max > self.chunker.min_size {
            return Err(Error::invalid_input(format!(
                "inline_max ({}) must not exceed the minimum chunk size ({})",
                self.inline_max, self.chunker.min_size
            )));
        }
        if self.target_pack_size == 0 {
            return Err(Error::invalid_input("target_pack_size must be positive"));
        }
        Ok(())
    }
}

/// Statistics of a [`DedupStore`], from one pass over the manifests.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct DedupStats {
    /// Keys.
    pub keys: u64,
    /// Sum of value lengths as written, in bytes.
    pub logical_bytes: u64,
    /// Values kept inline in their manifests.
    pub inline_values: u64,
    /// Bytes of those inline values.
    pub inline_bytes: u64,
    /// Bytes of all manifests (inline values included) in the manifest store.
    pub manifest_bytes: u64,
    /// Chunk references in all manifests.
    pub chunk_references: u64,
    /// Distinct chunks referenced.
    pub referenced_chunks: u64,
    /// Plaintext bytes of the distinct referenced chunks.
    pub referenced_raw_bytes: u64,
    /// Stored (blob) bytes of the distinct referenced chunks.
    pub referenced_blob_bytes: u64,
    /// Referenced chunks the chunk store does not hold (damage; `verify` names the keys).
    pub missing_chunks: u64,
    /// Chunks in the chunk store.
    pub stored_chunks: u64,
    /// Pack files.
    pub packs: u64,
    /// Bytes of all pack files.
    pub pack_bytes: u64,
    /// Blob bytes of stored chunks no manifest references (what `gc` can reclaim).
    pub unreferenced_blob_bytes: u64,
    /// Bytes the content occupies: pack files plus inline values.
    pub stored_bytes: u64,
    /// Logical bytes over unique bytes (referenced chunk plaintext + inline values):
    /// what deduplication saves. 1.0 for an empty store.
    pub dedup_ratio: f64,
    /// Referenced chunk plaintext over its blob bytes: what LZ4 saves. 1.0 if none.
    pub compression_ratio: f64,
}

fn ratio(numerator: u64, denominator: u64) -> f64 {
    if denominator == 0 {
        1.0
    } else {
        numerator as f64 / denominator as f64
    }
}

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

    /// Serialises garbage collections.
    pub(crate) fn gc_lock(&self) -> &tokio::sync::Mutex<()> {
        &self.gc
    }

    fn check_put(&self, key: &Key, options: &PutOptions) -> Result<()> {
        options.validate()?;
        self.check_key(key)
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

    /// Stores the bytes read from `reader` under `key`, chunking as it reads, so the value
    /// never sits whole in memory (at most about one pack, [`DedupOptions::target_pack_size`]
    /// bytes, of new chunks is buffered). The result is the same as a `put` of the same bytes.
    ///
    /// # Errors
    /// As `put_with`; `Unavailable` if reading fails (nothing is stored under `key` then).
    pub async fn put_reader<R: AsyncRead + Unpin + Send>(
        &self,
        key: &Key,
        reader: R,
        options: &PutOptions,
    ) -> Result<ObjectMeta>
    where
        S: 'static,
    {
        self.check_put(key, options)?;
        let writer = self.chunks.writer();
        let ticket = self.order.begin([key]);
        let mut stream = std::pin::pin!(self.options.chunker.stream(reader));
        let mut hasher = sha2::Sha256::new();
        let mut list = Vec::new();
        let mut total = 0u64;
        let mut pending = PendingChunks::default();
        // A first chunk within `inline_max` is the whole value (`inline_max <= min_size`, and
        // only a value's last chunk is shorter than `min_size`): it is held back, not stored.
        let mut held: Option<Vec<u8>> = None;
        // Chunks read but not hashed yet, hashed and compressed a group at a time (on the
        // blocking pool unless the group is small), in order.
        let mut group: Vec<Vec<u8>> = Vec::new();
        let mut group_bytes = 0usize;
        loop {
            let next = stream.try_next().await?;
            let at_end = next.is_none();
            if let Some((_, data)) = next {
                total += data.len() as u64;
                if list.is_empty()
                    && group.is_empty()
                    && held.is_none()
                    && data.len() <= self.options.inline_max
                {
                    held = Some(data);
                    continue;
                }
                for data in held.take().into_iter().chain([data]) {
                    group_bytes += data.len();
                    group.push(data);
                }
                if group_bytes < STREAM_GROUP_BYTES {
                    continue;
                }
            }
            if !group.is_empty() {
                let taken = std::mem::take(&mut group);
                let (h, encoded) = encode_group(hasher, taken, group_bytes, &self.chunks).await?;
                hasher = h;
                group_bytes = 0;
                for (id, data, blob) in encoded {
                    pending.absorb(self.chunks.add([NewChunk {
                        id,
                        data: &data,
                        blob,
                    }]));
                    list.push((id, data.len() as u32));
                }
                if self.chunks.open_pack_is_full() {
                    self.chunks.commit(std::mem::take(&mut pending)).await?;
                }
            }
            if at_end {
                break;
            }
        }
        self.chunks.commit(pending).await?;
        let (manifest, checksum) = match (held, list.len()) {
            (Some(small), 0) => (Manifest::encode_inline(&small), Sha256Digest::of(&small)),
            (None, 0) => (Manifest::encode_inline(b""), Sha256Digest::of(b"")),
            (_, n) => {
                let checksum = if n == 1 {
                    list[0].0
                } else {
                    Sha256Digest(hasher.finalize().into())
                };
                let manifest = Manifest::encode_chunked(&ChunkList {
                    total_len: total,
                    chunks: list,
                    checksum,
                });
                (manifest, checksum)
            }
        };
        // The manifest write finishes (holding the writer guard) even if this future is
        // dropped now: see the type's docs on cancellation.
        let (inner, key, options) = (self.inner.clone(), key.clone(), options.clone());
        let meta = run_to_completion(async move {
            let _writer = writer;
            ticket.turn().await;
            let meta = inner.put_with(&key, Bytes::from(manifest), &options).await;
            drop(ticket);
            meta
        })
        .await?;
        Ok(outer_meta(meta, total, checksum))
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
                                _ => return Err(hybridstore_core::conflict(key, expect)),
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

/// A streamed chunk: id, plaintext, and its blob unless the store holds it already.
type StreamedChunk = (ChunkId, Vec<u8>, Option<Vec<u8>>);

/// Feeds `group` (consecutive chunks of a streamed value, `bytes` in all) to the whole-value
/// `hasher` and hashes and compresses each chunk (through [`cpu_bound`]).
async fn encode_group(
    mut hasher: sha2::Sha256,
    group: Vec<Vec<u8>>,
    bytes: usize,
    store: &ChunkStore,
) -> Result<(sha2::Sha256, Vec<StreamedChunk>)> {
    let work = move |store: &ChunkStore| {
        let encoded = group
            .into_iter()
            .map(|data| {
                hasher.update(&data);
                let (id, blob) = hash_and_encode(&data, store);
                (id, data, blob)
            })
            .collect::<Vec<_>>();
        (hasher, encoded)
    };
    let store = store.clone();
    cpu_bound(bytes, move || work(&store)).await
}

fn check_len(id: &ChunkId, want: u32, data: &[u8]) -> Result<()> {
    if data.len() != want as usize {
        return Err(Error::corrupted(format!(
            "chunk {id} is {} bytes; the manifest says {want}",
            data.len()
        )));
    }
    Ok(())
}

/// The SHA-256 of the value a manifest describes.
fn manifest_value_checksum(manifest: &Manifest) -> Sha256Digest {
    match manifest {
        Manifest::Inline(v) => Sha256Digest::of(v),
        Manifest::Chunked(list) => list.checksum,
    }
}

/// The value's metadata from the manifest's: the value's size and checksum, the manifest's
/// checksum as `dedup_hash`, times and content type as stored.
fn outer_meta(inner: ObjectMeta, size: u64, checksum: Sha256Digest) -> ObjectMeta {
    ObjectMeta {
        size,
        checksum,
        dedup_hash: Some(inner.checksum),
        ..inner
    }
}

fn decode_meta(entry: &Entry) -> Result<(Manifest, ObjectMeta)> {
    let manifest = Manifest::decode(&entry.value).map_err(|e| e.with_context("key", &entry.key))?;
    let meta = outer_meta(
        entry.meta.clone(),
        manifest.value_len(),
        manifest_value_checksum(&manifest),
    );
    Ok((manifest, meta))
}

#[async_trait]
impl<S: KvStore + 'static> KvStore for DedupStore<S> {
    fn capabilities(&self) -> Capabilities {
        let inner = self.inner.capabilities();
        Capabilities::new()
            .with_max_key_len(inner.max_key_len)
            .with_durable(inner.durable && self.chunks.backend().capabilities().durable)
            .with_crash_atomic_batch(inner.crash_atomic_batch)
    }

    async fn get(&self, key: &Key) -> Result<Option<Bytes>> {
        let Some(manifest) = self.inner.get(key).await? else {
            return Ok(None);
        };
        let manifest = Manifest::decode(&manifest).map_err(|e| e.with_context("key", key))?;
        self.load(manifest)
            .await
            .map(Some)
            .map_err(|e| e.with_operation("get").with_context("key", key))
    }

    async fn head(&self, key: &Key) -> Result<Option<ObjectMeta>> {
        // The one-key scan below would read a key the inner store cannot hold as absent.
        self.check_key(key)?;
        match self.inner_entry(key).await? {
            Some(entry) if entry.key == *key => Ok(Some(decode_meta(&entry)?.1)),
            _ => Ok(None),
        }
    }

    async fn put_with(&self, key: &Key, value: Bytes, options: &PutOptions) -> Result<ObjectMeta> {
        self.check_put(key, options)?;
        let (this, key, options) = (self.clone(), key.clone(), options.clone());
        // Runs to completion once started (see the type's docs on cancellation).
        run_to_completion(async move {
            // Both taken at the first poll: a write dropped later still holds its place.
            let _writer = this.chunks.writer();
            let ticket = this.order.begin([&key]);
            let size = value.len() as u64;
            let encoded = this.encode(value).await?;
            let (pending, mut done) = this.add_chunks(vec![encoded]).await?;
            this.chunks.commit(pending).await?;
            let Some((_, encoded)) = done.pop() else {
                return Err(Error::backend("internal: encoded value missing"));
            };
            ticket.turn().await;
            let meta = this
                .inner
                .put_with(&key, Bytes::from(encoded.manifest), &options)
                .await?;
            drop(ticket);
            Ok(outer_meta(meta, size, encoded.checksum))
        })
        .await
    }

    async fn delete(&self, key: &Key) -> Result<()> {
        self.inner.delete(key).await
    }

    fn scan(&self, range: KeyRange, limit: Option<usize>) -> EntryStream<'_> {
        Box::pin(async_stream::try_stream! {
            let mut entries = self.inner.scan(range, limit);
            while let Some(entry) = entries.try_next().await? {
                let (manifest, meta) = decode_meta(&entry)?;
                let value = self
                    .load(manifest)
                    .await
                    .map_err(|e| e.with_operation("scan").with_context("key", &entry.key))?;
                yield Entry { key: entry.key, value, meta };
            }
        })
    }

    fn scan_meta(&self, range: KeyRange, limit: Option<usize>) -> MetaStream<'_> {
        // Manifests are small (tens of bytes per chunk), so reading them is the metadata scan.
        Box::pin(async_stream::try_stream! {
            let mut entries = self.inner.scan(range, limit);
            while let Some(entry) = entries.try_next().await? {
                let (_, meta) = decode_meta(&entry)?;
                yield MetaEntry { key: entry.key, meta };
            }
        })
    }

    async fn write_batch(&self, batch: WriteBatch) -> Result<()> {
        let this = self.clone();
        // Runs to completion once started (see the type's docs on cancellation).
        run_to_completion(async move { this.write_batch_owned(batch).await }).await
    }

    async fn get_many(&self, keys: &[Key]) -> Result<Vec<Option<Bytes>>> {
        let manifests = self.inner.get_many(keys).await?;
        let mut out = Vec::with_capacity(keys.len());
        for (key, manifest) in keys.iter().zip(manifests) {
            out.push(match manifest {
                None => None,
                Some(m) => {
                    let m = Manifest::decode(&m).map_err(|e| e.with_context("key", key))?;
                    Some(
                        self.load(m)
                            .await
                            .map_err(|e| e.with_operation("get_many").with_context("key", key))?,
                    )
                }
            });
        }
        Ok(out)
    }

    async fn stats(&self) -> Result<StoreStats> {
        Ok(StoreStats::from(&self.dedup_stats().await?))
    }
}

impl From<&DedupStats> for StoreStats {
    /// Keys, logical and stored bytes, and every count of `DedupStats` as a counter.
    fn from(d: &DedupStats) -> StoreStats {
        let mut stats = StoreStats {
            keys: d.keys,
            logical_bytes: d.logical_bytes,
            stored_bytes: Some(d.stored_bytes),
            ..StoreStats::default()
        };
        for (name, value) in [
            ("inline_values", d.inline_values),
            ("manifest_bytes", d.manifest_bytes),
            ("chunk_references", d.chunk_references),
            ("referenced_chunks", d.referenced_chunks),
            ("referenced_raw_bytes", d.referenced_raw_bytes),
            ("referenced_blob_bytes", d.referenced_blob_bytes),
            ("missing_chunks", d.missing_chunks),
            ("stored_chunks", d.stored_chunks),
            ("packs", d.packs),
            ("pack_bytes", d.pack_bytes),
            ("unreferenced_blob_bytes", d.unreferenced_blob_bytes),
        ] {
            stats.counters.insert(name.to_string(), value);
        }
        stats
    }
}
