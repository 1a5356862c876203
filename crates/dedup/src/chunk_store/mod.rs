//! The content-addressed chunk store: chunk blobs grouped into pack files on any `KvStore`,
//! an in-memory index from chunk id to pack and offset, and group commit.
//!
//! **Write path.** Writers [`add`](ChunkStore::add) blobs to the one *open pack* (a memory
//! buffer) and then [`commit`](ChunkStore::commit): the first writer to commit seals the open
//! pack and writes it with one `put` of the backend (durable when it returns), while the
//! others append to the next open pack; every writer whose chunks were in a sealed pack is
//! released when its `put` returns. So concurrent writers share packs and `fsync`s, the way a
//! database groups commits. A chunk already durable (or already in the open pack) is not
//! stored again. **Invariant:** a writer writes the manifest that refers to a chunk only
//! after `commit` returned `Ok`, so no crash can leave a manifest pointing at a chunk that
//! is not durable.
//!
//! **Index.** Opening the store lists `packs/` and reads each pack's index from its footer
//! (two range reads per pack). A pack whose footer or index is damaged is reported in
//! [`OpenReport`] and skipped; its chunks read as missing, which fails their values with
//! `Corrupted`.
//!
//! **Garbage collection** (see `DedupStore::collect_garbage`) runs while writers write: while
//! it runs, every reuse of an existing chunk is recorded, and a pack is only swept when none
//! of its chunks was referenced by a manifest at mark time or reused since, checked under the
//! index lock at the moment the chunks are removed from the index.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::SystemTime;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use hybridstore_core::{Error, ErrorKind, Key, KeyRange, KvStore, Result};
use serde::Serialize;

use crate::chunk::{self, ChunkId};
use crate::pack::{self, PackEntry};

mod collection;
mod commit;
mod packs;

pub use packs::{PackCheck, PackSummary};

/// Key prefix of pack files in the backing store.
pub const PACK_PREFIX: &str = "packs/";

/// Default pack size at which a writer seals the open pack even if nobody else commits:
/// 16 MiB, restic's default pack size since 0.14 (`--pack-size`).
pub const DEFAULT_TARGET_PACK_SIZE: usize = 16 * 1024 * 1024;

/// The outcome of writing one pack, shared by every writer waiting on it.
#[derive(Debug, Default)]
pub(crate) struct PackCommit {
    result: OnceLock<std::result::Result<(), (ErrorKind, String)>>,
}

impl PackCommit {
    fn outcome(&self) -> Option<Result<()>> {
        self.result.get().map(|r| {
            r.clone()
                .map_err(|(kind, message)| Error::new(kind, message).with_operation("chunk commit"))
        })
    }
}

/// Where the index finds a chunk.
#[derive(Clone, Debug)]
enum Slot {
    /// In a durable pack: `packs[pack].entries[entry]`.
    Durable { pack: u32, entry: u32 },
    /// In a pack being written; durable once `commit` has an `Ok` outcome.
    Pending(Arc<PackCommit>),
}

/// A durable pack.
#[derive(Debug)]
pub(crate) struct PackInfo {
    pub(crate) key: Key,
    pub(crate) len: u64,
    pub(crate) created: SystemTime,
    pub(crate) entries: Vec<PackEntry>,
}

#[derive(Debug)]
struct OpenPack {
    buf: Vec<u8>,
    entries: Vec<PackEntry>,
    commit: Arc<PackCommit>,
}

#[derive(Debug)]
struct State {
    index: HashMap<ChunkId, Slot>,
    packs: HashMap<u32, PackInfo>,
    next_pack: u32,
    open: OpenPack,
    /// Chunks found already stored since garbage collection began (`None` when none runs).
    reused: Option<HashSet<ChunkId>>,
}

impl State {
    fn new() -> State {
        State {
            index: HashMap::new(),
            packs: HashMap::new(),
            next_pack: 0,
            open: OpenPack::new(),
            reused: None,
        }
    }

    /// A pack number not used before in this process.
    fn take_pack_number(&mut self) -> u32 {
        let number = self.next_pack;
        self.next_pack = self.next_pack.wrapping_add(1);
        number
    }

    /// Records a durable pack and points the index at each of its chunks whose current slot
    /// (`None` if the chunk is not indexed) `claim` accepts.
    fn install_pack(&mut self, info: PackInfo, claim: impl Fn(Option<&Slot>) -> bool) {
        let number = self.take_pack_number();
        for (i, e) in info.entries.iter().enumerate() {
            if claim(self.index.get(&e.id)) {
                self.index.insert(
                    e.id,
                    Slot::Durable {
                        pack: number,
                        entry: i as u32,
                    },
                );
            }
        }
        self.packs.insert(number, info);
    }

    /// The durable copy of chunk `id`: its pack and index entry.
    fn durable_entry(&self, id: &ChunkId) -> Option<(&PackInfo, &PackEntry)> {
        match self.index.get(id)? {
            Slot::Durable { pack, entry } => {
                let info = self.packs.get(pack)?;
                Some((info, &info.entries[*entry as usize]))
            }
            Slot::Pending(_) => None,
        }
    }

    /// Adds up the durable chunks among `ids` and counts the others.
    fn sum_sizes<'a>(&self, ids: impl IntoIterator<Item = &'a ChunkId>) -> ChunkSizes {
        let mut sizes = ChunkSizes::default();
        for id in ids {
            match self.durable_entry(id) {
                Some((_, e)) => {
                    sizes.chunks += 1;
                    sizes.raw_bytes += u64::from(e.raw_len);
                    sizes.blob_bytes += u64::from(e.blob_len);
                }
                None => sizes.missing += 1,
            }
        }
        sizes
    }

    /// Whether the index resolves entry `entry` of pack `number` (chunk `id`) to that copy.
    fn resolves_to(&self, id: &ChunkId, number: u32, entry: usize) -> bool {
        matches!(self.index.get(id),
            Some(Slot::Durable { pack, entry: e }) if *pack == number && *e as usize == entry)
    }
}

impl OpenPack {
    fn new() -> OpenPack {
        OpenPack {
            buf: Vec::new(),
            entries: Vec::new(),
            commit: Arc::new(PackCommit::default()),
        }
    }
}

/// Where a durable chunk is: see [`ChunkStore::blob_location`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobLocation {
    /// The pack's key in the chunk store's backend.
    pub pack: Key,
    /// Byte range of the chunk's blob in the pack (decode it with
    /// [`decode_blob`](crate::decode_blob)).
    pub range: std::ops::Range<u64>,
    /// Length of the chunk's plaintext, in bytes.
    pub raw_len: u32,
}

/// What opening a chunk store found.
#[derive(Clone, Debug, Default, Serialize)]
pub struct OpenReport {
    /// Packs whose index was loaded.
    pub packs: u64,
    /// Packs that could not be read, with the reason; their chunks are unavailable.
    pub damaged_packs: Vec<(String, String)>,
}

/// Size figures of a chunk store.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ChunkStoreStats {
    /// Durable packs.
    pub packs: u64,
    /// Bytes of all packs (blobs, indexes, footers).
    pub pack_bytes: u64,
    /// Distinct chunks in the index.
    pub chunks: u64,
    /// Plaintext bytes of those chunks.
    pub raw_bytes: u64,
    /// Stored (blob) bytes of those chunks, headers included.
    pub blob_bytes: u64,
}

/// What [`ChunkStore::sizes_of`] adds up.
#[derive(Debug, Default)]
pub(crate) struct ChunkSizes {
    pub(crate) chunks: u64,
    pub(crate) raw_bytes: u64,
    pub(crate) blob_bytes: u64,
    pub(crate) missing: u64,
}

/// Chunks to wait for: the commits of the packs holding them.
#[derive(Debug, Default)]
#[must_use = "chunks are durable only after ChunkStore::commit"]
pub(crate) struct PendingChunks(Vec<Arc<PackCommit>>);

impl PendingChunks {
    /// Adds the commits of `other`.
    pub(crate) fn absorb(&mut self, other: PendingChunks) {
        for commit in &other.0 {
            self.push(commit);
        }
    }

    fn push(&mut self, commit: &Arc<PackCommit>) {
        if !self.0.iter().any(|c| Arc::ptr_eq(c, commit)) {
            self.0.push(commit.clone());
        }
    }
}

/// One chunk offered to [`ChunkStore::add`].
pub(crate) struct NewChunk<'a> {
    pub(crate) id: ChunkId,
    pub(crate) data: &'a [u8],
    /// The encoded blob, or `None` if the caller found the chunk stored and skipped
    /// compressing it (`add` encodes it after all if it has gone since).
    pub(crate) blob: Option<Vec<u8>>,
}

#[derive(Debug)]
struct Inner {
    backend: Arc<dyn KvStore>,
    state: Mutex<State>,
    /// Held while a pack is sealed and written: packs are written one at a time, in order.
    flush: tokio::sync::Mutex<()>,
    /// Writers in flight, by the collection epoch they began in: a writer registers before
    /// its first index lookup and leaves once its manifest is written; garbage collection
    /// starts recording reuse, opens a new epoch and waits for the writers of older epochs
    /// (whose lookups it did not record). New writers never wait for a collection.
    writers: Mutex<Writers>,
    /// Signalled whenever a writer leaves.
    writer_left: tokio::sync::Notify,
    target_pack_size: usize,
    report: OpenReport,
    /// Whether other processes add packs to the backend (see [`ChunkStore::set_shared`]).
    shared: std::sync::atomic::AtomicBool,
    /// Held while a read that missed reloads the pack list.
    reload: tokio::sync::Mutex<()>,
    /// How many such reloads finished, so readers that missed together share one.
    reloads: std::sync::atomic::AtomicU64,
}

/// Writers in flight per collection epoch (see `Inner::writers`).
#[derive(Debug, Default)]
struct Writers {
    epoch: u64,
    active: std::collections::BTreeMap<u64, usize>,
}

fn lock_writers(inner: &Inner) -> MutexGuard<'_, Writers> {
    // Updates are whole increments and decrements: poisoning leaves nothing half-done.
    inner
        .writers
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A writer's registration with garbage collection (see [`ChunkStore::writer`]).
#[derive(Debug)]
pub(crate) struct WriterGuard {
    inner: Arc<Inner>,
    epoch: u64,
}

impl Drop for WriterGuard {
    fn drop(&mut self) {
        {
            let mut writers = lock_writers(&self.inner);
            if let Some(n) = writers.active.get_mut(&self.epoch) {
                *n -= 1;
                if *n == 0 {
                    writers.active.remove(&self.epoch);
                }
            }
        }
        self.inner.writer_left.notify_waiters();
    }
}

/// A content-addressed chunk store on a `KvStore` (see the module docs). Cloning is cheap and
/// shares the store.
#[derive(Clone, Debug)]
pub struct ChunkStore {
    inner: Arc<Inner>,
}

impl ChunkStore {
    /// Opens the chunk store kept in `backend` (packs under [`PACK_PREFIX`]), loading every
    /// pack's index into memory (about 100 bytes per chunk).
    ///
    /// `target_pack_size` (bytes) is the size at which a writer seals the open pack itself.
    ///
    /// # Errors
    /// Errors of listing the packs. Damaged packs do not fail the open; see
    /// [`open_report`](Self::open_report).
    pub async fn open(backend: Arc<dyn KvStore>, target_pack_size: usize) -> Result<ChunkStore> {
        let listed: Vec<_> = backend
            .scan_meta(KeyRange::prefix(PACK_PREFIX), None)
            .try_collect()
            .await?;
        let loaded = load_packs(&backend, listed).await;
        let mut report = OpenReport::default();
        let mut state = State::new();
        for (key, info) in loaded {
            match info {
                Ok(info) => {
                    // A chunk in two packs (a crash during garbage collection) is read from
                    // the first; the other copy is garbage.
                    state.install_pack(info, |slot| slot.is_none());
                    report.packs += 1;
                }
                Err(e) if e.kind() == ErrorKind::Corrupted => {
                    tracing::warn!(pack = %key, error = %e, "damaged pack: its chunks are unavailable");
                    report.damaged_packs.push((key.to_string(), e.to_string()));
                }
                Err(e) => return Err(e.with_context("pack", key)),
            }
        }
        Ok(ChunkStore {
            inner: Arc::new(Inner {
                backend,
                state: Mutex::new(state),
                flush: tokio::sync::Mutex::new(()),
                writers: Mutex::new(Writers::default()),
                writer_left: tokio::sync::Notify::new(),
                target_pack_size: target_pack_size.max(1),
                report,
                shared: std::sync::atomic::AtomicBool::new(false),
                reload: tokio::sync::Mutex::new(()),
                reloads: std::sync::atomic::AtomicU64::new(0),
            }),
        })
    }

    /// Loads the index of every pack in the backend that this store does not know yet
    /// (written by another process since [`open`](Self::open), as another device's sync
    /// writes them) and returns how many were added. Damaged packs are skipped, as at open.
    ///
    /// # Errors
    /// Errors of listing the packs or reading an index.
    pub async fn load_new_packs(&self) -> Result<u64> {
        let backend = self.inner.backend.clone();
        let known: HashSet<Key> = self.state().packs.values().map(|p| p.key.clone()).collect();
        let listed: Vec<_> = backend
            .scan_meta(KeyRange::prefix(PACK_PREFIX), None)
            .try_filter(|e| std::future::ready(!known.contains(&e.key)))
            .try_collect()
            .await?;
        let loaded = load_packs(&backend, listed).await;
        let mut added = 0;
        let mut state = self.state();
        for (key, info) in loaded {
            match info {
                Ok(info) => {
                    state.install_pack(info, |slot| slot.is_none());
                    added += 1;
                }
                Err(e) if e.kind() == ErrorKind::Corrupted => {
                    tracing::warn!(pack = %key, error = %e, "damaged pack: its chunks are unavailable");
                }
                Err(e) => return Err(e.with_context("pack", key)),
            }
        }
        Ok(added)
    }

    /// Declares that other processes add packs to this store's backend (nodes sharing one
    /// S3 primary): a read of a chunk missing from this process's index then first loads
    /// the packs written since (one listing of `packs/`, shared by readers that miss at the
    /// same time) and fails with `Corrupted` only if the chunk is still missing. Off by
    /// default, where a missing chunk is damage and costs no listing.
    pub fn set_shared(&self, shared: bool) {
        self.inner
            .shared
            .store(shared, std::sync::atomic::Ordering::Relaxed);
    }

    /// After a read missed `id`: loads packs written by other processes (once per group of
    /// readers that missed together) if the store is shared. Returns whether `id` is now
    /// durably indexed.
    async fn reload_for(&self, id: &ChunkId) -> Result<bool> {
        if !self.inner.shared.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(false);
        }
        use std::sync::atomic::Ordering;
        let seen = self.inner.reloads.load(Ordering::Acquire);
        if self.state().durable_entry(id).is_some() {
            return Ok(true);
        }
        let guard = self.inner.reload.lock().await;
        // A reload that finished after this reader missed may already have found the chunk.
        if self.inner.reloads.load(Ordering::Acquire) == seen {
            let added = self.load_new_packs().await?;
            tracing::debug!(chunk = %id, added, "chunk not indexed: loaded new packs");
            self.inner.reloads.fetch_add(1, Ordering::Release);
        }
        drop(guard);
        Ok(self.state().durable_entry(id).is_some())
    }

    /// What [`open`](Self::open) found.
    pub fn open_report(&self) -> &OpenReport {
        &self.inner.report
    }

    /// The store holding the packs.
    pub fn backend(&self) -> &Arc<dyn KvStore> {
        &self.inner.backend
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the index half-updated in a way later
        // calls rely on (every update is a whole insert or remove), so poisoning is ignored.
        self.inner
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Writers hold this from their first lookup until their manifest is written (a manifest
    /// write that outlives its caller, see `DedupStore`'s cancellation docs, keeps holding
    /// it). Never waits.
    pub(crate) fn writer(&self) -> WriterGuard {
        let epoch = {
            let mut writers = self.writers();
            let epoch = writers.epoch;
            *writers.active.entry(epoch).or_insert(0) += 1;
            epoch
        };
        WriterGuard {
            inner: self.inner.clone(),
            epoch,
        }
    }

    fn writers(&self) -> MutexGuard<'_, Writers> {
        lock_writers(&self.inner)
    }

    /// Whether `id` is stored or being stored (callers skip compressing such chunks).
    pub(crate) fn contains(&self, id: &ChunkId) -> bool {
        self.state().index.contains_key(id)
    }
    /// The plaintext of chunk `id`, checked against its SHA-256.
    ///
    /// # Errors
    /// `Corrupted` if the chunk is not in the store (a manifest refers to a chunk that was
    /// lost; in a [shared](Self::set_shared) store, not even after loading the packs other
    /// processes wrote) or its blob is damaged; backend errors.
    pub async fn read(&self, id: &ChunkId) -> Result<Bytes> {
        // At most one retry: garbage collection may move a live chunk to a new pack between
        // the lookup and the read.
        let mut previous: Option<(Key, u64)> = None;
        let mut reloaded = false;
        loop {
            let found = self
                .state()
                .durable_entry(id)
                .map(|(info, entry)| (info.key.clone(), *entry));
            let (key, entry) = match found {
                Some(found) => found,
                None if !reloaded => {
                    reloaded = true;
                    if self.reload_for(id).await? {
                        continue;
                    }
                    return Err(missing(id));
                }
                None => return Err(missing(id)),
            };
            if previous.as_ref() == Some(&(key.clone(), entry.offset)) {
                return Err(Error::corrupted(format!("chunk {id}: its pack is missing"))
                    .with_context("pack", key));
            }
            match self.inner.backend.get_range(&key, entry.blob_range()).await {
                Ok(Some(blob)) => {
                    // LZ4 decoding and SHA-256 of a chunk (up to 64 KiB by default) is tens of
                    // microseconds of CPU: off the async workers unless it is small.
                    let (id, raw_len) = (*id, entry.raw_len);
                    let decoded = hybridstore_core::raw::cpu_bound(blob.len(), move || {
                        chunk::decode_blob(&id, raw_len, &blob)
                    })
                    .await?;
                    return decoded.map_err(|e| e.with_context("pack", &key));
                }
                Ok(None) => previous = Some((key, entry.offset)),
                Err(e) => return Err(e.with_context("pack", key)),
            }
        }
    }

    /// Size figures.
    pub fn stats(&self) -> ChunkStoreStats {
        let state = self.state();
        let mut stats = ChunkStoreStats {
            packs: state.packs.len() as u64,
            pack_bytes: state.packs.values().map(|p| p.len).sum(),
            ..ChunkStoreStats::default()
        };
        let sizes = state.sum_sizes(state.index.keys());
        stats.chunks = sizes.chunks;
        stats.raw_bytes = sizes.raw_bytes;
        stats.blob_bytes = sizes.blob_bytes;
        stats
    }

    /// Where the durable chunk `id` is: its pack's key in the backend and the byte range of
    /// its blob in that pack's value; `None` if the chunk is not durably stored. For tools
    /// and tests that inspect or damage packs on purpose.
    pub fn locate(&self, id: &ChunkId) -> Option<(Key, std::ops::Range<u64>)> {
        let state = self.state();
        let (info, entry) = state.durable_entry(id)?;
        Some((info.key.clone(), entry.blob_range()))
    }

    /// Where the durable chunk `id` is and how long its plaintext is; `None` if the chunk is
    /// not durably stored. What a sync reads to fetch whole packs or ranges of them.
    pub fn blob_location(&self, id: &ChunkId) -> Option<BlobLocation> {
        let state = self.state();
        let (info, entry) = state.durable_entry(id)?;
        Some(BlobLocation {
            pack: info.key.clone(),
            range: entry.blob_range(),
            raw_len: entry.raw_len,
        })
    }

    /// Stores `chunks` (id, plaintext) that are not stored yet and waits until every one is
    /// durable: they fill packs of about the target size (the last one smaller), shared with
    /// concurrent callers (group commit). The
    /// caller vouches that each id is the SHA-256 of its plaintext (as [`ChunkId`] says);
    /// a read checks it again.
    ///
    /// # Errors
    /// `InvalidInput` for a chunk longer than [`MAX_CHUNK_LEN`](crate::MAX_CHUNK_LEN);
    /// the backend's error if a pack could not be written (nothing of that pack is then
    /// recorded).
    pub async fn store_chunks(&self, chunks: &[(ChunkId, Bytes)]) -> Result<()> {
        if let Some((id, data)) = chunks
            .iter()
            .find(|(_, d)| d.len() > crate::MAX_CHUNK_LEN as usize)
        {
            return Err(Error::invalid_input(format!(
                "chunk {id} is {} bytes; the maximum is {}",
                data.len(),
                crate::MAX_CHUNK_LEN
            )));
        }
        let _writer = self.writer();
        // LZ4 of up to `chunks` plaintexts: on the blocking pool, not under the index lock.
        let owned: Vec<Bytes> = chunks.iter().map(|(_, d)| d.clone()).collect();
        let blobs = hybridstore_core::raw::spawn_cpu(move || {
            owned
                .iter()
                .map(|d| chunk::encode_blob(d))
                .collect::<Vec<_>>()
        })
        .await?;
        let mut pending = PendingChunks::default();
        for ((id, data), blob) in chunks.iter().zip(blobs) {
            pending.absorb(self.add([NewChunk {
                id: *id,
                data,
                blob: Some(blob),
            }]));
            // Packs of about the target size, not one pack of everything.
            if self.open_pack_is_full() {
                self.commit(std::mem::take(&mut pending)).await?;
            }
        }
        self.commit(pending).await
    }

    /// Plaintext bytes, blob bytes and count of the durable chunks among `ids`, and how
    /// many of `ids` are not durably stored; one pass under one lock.
    pub(crate) fn sizes_of<'a>(&self, ids: impl IntoIterator<Item = &'a ChunkId>) -> ChunkSizes {
        self.state().sum_sizes(ids)
    }

    // ---- garbage collection support (driven by `DedupStore::collect_garbage`) ----
}

fn missing(id: &ChunkId) -> Error {
    Error::corrupted(format!("chunk {id} is not in the chunk store"))
}

/// Reads the index of the pack `key` of `len` bytes from its footer.
/// The index of each listed pack, eight read at a time.
async fn load_packs(
    backend: &Arc<dyn KvStore>,
    listed: Vec<hybridstore_core::MetaEntry>,
) -> Vec<(Key, Result<PackInfo>)> {
    futures::stream::iter(listed)
        .map(|entry| {
            let backend = backend.clone();
            async move {
                let info = read_pack_index(backend.as_ref(), &entry.key, entry.meta.size)
                    .await
                    .map(|entries| PackInfo {
                        key: entry.key.clone(),
                        len: entry.meta.size,
                        created: entry.meta.created,
                        entries,
                    });
                (entry.key, info)
            }
        })
        .buffered(8)
        .collect()
        .await
}

async fn read_pack_index(backend: &dyn KvStore, key: &Key, len: u64) -> Result<Vec<PackEntry>> {
    let footer_len = pack::FOOTER_LEN as u64;
    if len < footer_len {
        return Err(Error::corrupted("pack is shorter than its footer"));
    }
    let footer = backend
        .get_range(key, len - footer_len..len)
        .await?
        .ok_or_else(|| Error::not_found("pack vanished while opening"))?;
    let (count, crc) = pack::parse_footer(&footer, len)?;
    let index_start = len - footer_len - (count * pack::ENTRY_LEN) as u64;
    let index = backend
        .get_range(key, index_start..len - footer_len)
        .await?
        .ok_or_else(|| Error::not_found("pack vanished while opening"))?;
    pack::parse_index(&index, crc, index_start)
}
