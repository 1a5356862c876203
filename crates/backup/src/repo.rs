//! The repository: a config record, content-addressed chunks in packs, snapshot records and
//! locks, all as values of one `KvStore`.
//!
//! ```text
//! config              RepoConfig (JSON), written once by init
//! packs/<random>      chunks: LZ4 blobs with their index at the end (hybridstore_dedup's
//!                     ChunkStore: the same chunk ids and pack format as the dedup layer)
//! snapshots/<sha256>  Snapshot records, named by their SHA-256, written once
//! keys/<random>       KeyFile (JSON, only in an encrypted repository): the master key,
//!                     wrapped under a password (crate::crypto); every other value is then
//!                     sealed by crate::crypto::EncryptedStore
//! locks/<random>      who works on the repository (JSON), refreshed while they do
//! prune/pending       packs a prune marked for deletion, with the time it marked them
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt, TryStreamExt};
use hybridstore_core::{
    Error, ErrorKind, Expect, Key, KeyRange, KvStore, Result, Sha256Digest, WriteBatch,
};
use hybridstore_dedup::{ChunkId, ChunkStore, ChunkerConfig, DEFAULT_TARGET_PACK_SIZE};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncRead;

use crate::crypto::{EncryptedStore, MasterKey, Password, add_key, key_files, unlock};
use crate::record::{
    ChunkerSizes, FORMAT_VERSION, MAX_RECORD_LEN, RepoConfig, Snapshot, SnapshotId,
};

/// Key of the repository's config record.
pub const CONFIG_KEY: &str = "config";
/// Key prefix of snapshot records.
pub const SNAPSHOT_PREFIX: &str = "snapshots/";
/// Key prefix of locks.
pub const LOCK_PREFIX: &str = "locks/";
/// Key of the list of packs a prune marked for deletion.
pub const PENDING_KEY: &str = "prune/pending";

/// A lock not refreshed for this long is stale and ignored: 30 minutes, restic's rule for
/// locks (`internal/restic/lock.go`, `staleTimeout`), which refreshes live locks every 5
/// minutes as [`LOCK_REFRESH`] does here.
pub const LOCK_STALE_AFTER: Duration = Duration::from_secs(30 * 60);
/// How often a held lock is refreshed (restic's `refreshInterval`).
pub const LOCK_REFRESH: Duration = Duration::from_secs(5 * 60);

/// Plaintext bytes handed to the chunk store at once while a file is stored.
const STORE_BATCH_BYTES: usize = 8 << 20;

/// A backup repository on a `KvStore` (see the module docs). Cloning is cheap.
#[derive(Clone, Debug)]
pub struct Repository {
    /// The store as given: key files live here.
    raw: Arc<dyn KvStore>,
    /// The store every other record is read from and written to: the encryption layer
    /// over `raw`, or `raw`.
    store: Arc<dyn KvStore>,
    encrypted: bool,
    config: RepoConfig,
    chunks: ChunkStore,
    pending: Arc<BTreeMap<String, u64>>,
}

/// The packs a prune marked for deletion: pack key → when (seconds since the Unix epoch).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Pending {
    pub(crate) packs: BTreeMap<String, u64>,
}

fn key(text: impl Into<String>) -> Result<Key> {
    Key::new(text.into())
}

async fn get_bounded(store: &dyn KvStore, key: &Key) -> Result<Option<Bytes>> {
    let Some(meta) = store.head(key).await? else {
        return Ok(None);
    };
    if meta.size > MAX_RECORD_LEN {
        return Err(Error::corrupted(format!(
            "{key}: {} bytes, longer than any record ({MAX_RECORD_LEN})",
            meta.size
        )));
    }
    store.get(key).await
}

impl Repository {
    /// Creates an unencrypted repository in `store`, which must not hold one.
    ///
    /// # Errors
    /// As [`init_with`](Self::init_with).
    pub async fn init(store: Arc<dyn KvStore>) -> Result<Repository> {
        Self::init_with(store, None).await
    }

    /// Creates a repository in `store`, which must not hold one: encrypted with a new
    /// random master key wrapped under `password` (see [`crate::crypto`]) if one is given.
    /// Write order: the key file, then the config (the commit point); a crash between the
    /// two leaves a key file that opens nothing, and `init` can run again.
    ///
    /// # Errors
    /// `Conflict` (not retryable) if `store` already has a repository config; errors of
    /// `store`.
    pub async fn init_with(
        store: Arc<dyn KvStore>,
        password: Option<&Password>,
    ) -> Result<Repository> {
        let exists =
            || Error::conflict("a backup repository already exists here").with_retryable(false);
        if store.head(&key(CONFIG_KEY)?).await?.is_some() {
            return Err(exists());
        }
        let chunker = ChunkerConfig::default();
        let config = RepoConfig {
            version: FORMAT_VERSION,
            id: format!("{:032x}", rand::random::<u128>()),
            chunker: ChunkerSizes {
                min: chunker.min_size,
                avg: chunker.avg_size,
                max: chunker.max_size,
            },
            created: chrono::Local::now().to_rfc3339(),
        };
        let bytes = serde_json::to_vec_pretty(&config)
            .map_err(|e| Error::backend(format!("encoding the repository config: {e}")))?;
        let (sealed, key_file): (Arc<dyn KvStore>, _) = match password {
            Some(password) => {
                let master = MasterKey::generate();
                let key_file = add_key(store.as_ref(), &master, password, host_name()).await?;
                (
                    Arc::new(EncryptedStore::new(store.clone(), &master)),
                    Some(key_file),
                )
            }
            None => (store.clone(), None),
        };
        let mut batch = WriteBatch::new();
        batch.put(key(CONFIG_KEY)?, Bytes::from(bytes));
        batch.expect(key(CONFIG_KEY)?, Expect::Absent);
        if let Err(e) = sealed.write_batch(batch).await {
            if let Some(key_file) = key_file {
                // Best effort: a key file left behind opens nothing.
                let _ = store.delete(&key_file).await;
            }
            return Err(if e.kind() == ErrorKind::Conflict {
                exists()
            } else {
                e
            });
        }
        Self::open_sealed(store, sealed).await
    }

    /// Opens the unencrypted repository in `store`.
    ///
    /// # Errors
    /// As [`open_with`](Self::open_with); `InvalidInput` if the repository is encrypted.
    pub async fn open(store: Arc<dyn KvStore>) -> Result<Repository> {
        Self::open_with(store, None).await
    }

    /// Opens the repository in `store`: unlocks its master key with `password` if it is
    /// encrypted (Argon2id once per key file, about a second of CPU each), reads its config,
    /// the index of every pack (two range reads per pack) and the list of packs a prune
    /// marked for deletion. A password given for an unencrypted repository is not used (a
    /// warning is logged).
    ///
    /// # Errors
    /// `NotFound` if `store` holds no repository; `InvalidInput` (not retryable) if it is
    /// encrypted and no password is given, or the password opens none of its keys;
    /// `Corrupted` if its config or key files are damaged or of another format version;
    /// errors of `store`.
    pub async fn open_with(
        store: Arc<dyn KvStore>,
        password: Option<&Password>,
    ) -> Result<Repository> {
        let files = key_files(store.as_ref()).await?;
        if files.is_empty() {
            let repo = Self::open_sealed(store.clone(), store).await?;
            if password.is_some() {
                tracing::warn!("the backup repository is not encrypted; the password is not used");
            }
            return Ok(repo);
        }
        let Some(password) = password else {
            return Err(Error::invalid_input(
                "the backup repository is encrypted: give its password \
                 (--password-file FILE or HYBRIDSTORE_BACKUP_PASSWORD)",
            )
            .with_retryable(false));
        };
        let masters = unlock(&files, password).await?;
        let mut last = None;
        for master in masters {
            let sealed: Arc<dyn KvStore> = Arc::new(EncryptedStore::new(store.clone(), &master));
            match Self::open_sealed(store.clone(), sealed).await {
                // A key file an interrupted `init` left behind wraps a key that seals nothing.
                Err(e) if e.kind() == ErrorKind::Corrupted => last = Some(e),
                other => return other,
            }
        }
        Err(last.unwrap_or_else(|| Error::corrupted("no key of the repository opens its config")))
    }

    /// Opens the repository whose values `sealed` reads (the encryption layer over `raw`,
    /// or `raw` itself).
    async fn open_sealed(raw: Arc<dyn KvStore>, store: Arc<dyn KvStore>) -> Result<Repository> {
        let Some(bytes) = get_bounded(store.as_ref(), &key(CONFIG_KEY)?).await? else {
            return Err(Error::not_found(
                "no backup repository here (create one with `backup init`)",
            ));
        };
        let config: RepoConfig = serde_json::from_slice(&bytes)
            .map_err(|e| Error::corrupted(format!("the repository config does not parse: {e}")))?;
        if config.version != FORMAT_VERSION {
            return Err(Error::corrupted(format!(
                "repository format version {} is not {FORMAT_VERSION}, the one this build reads",
                config.version
            )));
        }
        let chunks = ChunkStore::open(store.clone(), DEFAULT_TARGET_PACK_SIZE).await?;
        let pending = read_pending(store.as_ref()).await?;
        Ok(Repository {
            encrypted: !Arc::ptr_eq(&raw, &store),
            raw,
            store,
            config,
            chunks,
            pending: Arc::new(pending.packs),
        })
    }

    /// Opens the unencrypted repository in `store`, creating it first if there is none.
    ///
    /// # Errors
    /// As [`open`](Self::open) and [`init`](Self::init).
    pub async fn open_or_init(store: Arc<dyn KvStore>) -> Result<Repository> {
        Self::open_or_init_with(store, None).await
    }

    /// Opens the repository in `store`, creating it first if there is none (encrypted if
    /// `password` is given).
    ///
    /// # Errors
    /// As [`open_with`](Self::open_with) and [`init_with`](Self::init_with).
    pub async fn open_or_init_with(
        store: Arc<dyn KvStore>,
        password: Option<&Password>,
    ) -> Result<Repository> {
        match Self::open_with(store.clone(), password).await {
            Err(e) if e.kind() == ErrorKind::NotFound => {
                match Self::init_with(store.clone(), password).await {
                    Err(e) if e.kind() == ErrorKind::Conflict => {
                        Self::open_with(store, password).await
                    }
                    other => other,
                }
            }
            other => other,
        }
    }

    /// Whether the repository's values are encrypted.
    pub fn is_encrypted(&self) -> bool {
        self.encrypted
    }

    /// The store below the encryption layer (the store itself for an unencrypted
    /// repository): where the key files live.
    pub fn raw_store(&self) -> &Arc<dyn KvStore> {
        &self.raw
    }

    /// Adds a key file that opens the repository with `password` (as `restic key add`).
    /// Returns its key.
    ///
    /// # Errors
    /// `InvalidInput` for an unencrypted repository; errors of the store.
    pub async fn add_password(&self, current: &Password, password: &Password) -> Result<Key> {
        if !self.encrypted {
            return Err(Error::invalid_input("the repository is not encrypted"));
        }
        let files = key_files(self.raw.as_ref()).await?;
        let masters = unlock(&files, current).await?;
        let Some(master) = masters.into_iter().next() else {
            return Err(Error::invalid_input("the current password opens no key"));
        };
        add_key(self.raw.as_ref(), &master, password, host_name()).await
    }

    /// The store the repository's records are read from and written to: the encryption
    /// layer over [`raw_store`](Self::raw_store) in an encrypted repository.
    pub fn store(&self) -> &Arc<dyn KvStore> {
        &self.store
    }

    /// The config record.
    pub fn config(&self) -> &RepoConfig {
        &self.config
    }

    /// The chunk store (packs and their index).
    pub fn chunks(&self) -> &ChunkStore {
        &self.chunks
    }

    /// The FastCDC settings of the repository.
    pub fn chunker(&self) -> ChunkerConfig {
        ChunkerConfig {
            min_size: self.config.chunker.min,
            avg_size: self.config.chunker.avg,
            max_size: self.config.chunker.max,
        }
    }

    /// Packs a prune marked for deletion when the repository was opened, with the time
    /// (seconds since the Unix epoch).
    pub fn pending_packs(&self) -> &BTreeMap<String, u64> {
        &self.pending
    }

    /// The ids of every snapshot, in id order.
    ///
    /// # Errors
    /// Errors of listing the store.
    pub async fn snapshot_ids(&self) -> Result<Vec<SnapshotId>> {
        let metas: Vec<_> = self
            .store
            .scan_meta(KeyRange::prefix(SNAPSHOT_PREFIX), None)
            .try_collect()
            .await?;
        Ok(metas
            .into_iter()
            .filter_map(|m| {
                m.key
                    .as_str()
                    .and_then(|k| k.strip_prefix(SNAPSHOT_PREFIX))
                    .map(str::to_string)
            })
            .collect())
    }

    /// The snapshot record `id`, checked against its checksum.
    ///
    /// # Errors
    /// `NotFound` if there is no such snapshot; `Corrupted` if its record is damaged.
    pub async fn load_snapshot(&self, id: &str) -> Result<Snapshot> {
        let bytes = get_bounded(self.store.as_ref(), &key(format!("{SNAPSHOT_PREFIX}{id}"))?)
            .await?
            .ok_or_else(|| Error::not_found(format!("snapshot {id} does not exist")))?;
        Snapshot::decode(id, &bytes)
    }

    /// Every snapshot, oldest first (by time, then id); a damaged record is returned as its
    /// error, so a listing shows it instead of hiding it.
    ///
    /// # Errors
    /// Errors of listing the store.
    pub async fn snapshots(&self) -> Result<Vec<(SnapshotId, Result<Snapshot>)>> {
        let ids = self.snapshot_ids().await?;
        let mut out: Vec<(SnapshotId, Result<Snapshot>)> = futures::stream::iter(ids)
            .map(|id| async move {
                let snapshot = self.load_snapshot(&id).await;
                (id, snapshot)
            })
            .buffered(16)
            .collect()
            .await;
        out.sort_by(|a, b| {
            let time = |s: &Result<Snapshot>| s.as_ref().ok().and_then(|s| s.parsed_time().ok());
            time(&a.1).cmp(&time(&b.1)).then_with(|| a.0.cmp(&b.0))
        });
        Ok(out)
    }

    /// The snapshot a user means: `latest` (the newest by time, optionally of one host and
    /// source) or an unambiguous prefix of an id (at least 4 characters).
    ///
    /// # Errors
    /// `NotFound` if none matches; `InvalidInput` if a prefix is too short or matches more
    /// than one; `Corrupted` if the snapshot's record is damaged.
    pub async fn resolve(&self, name: &str) -> Result<(SnapshotId, Snapshot)> {
        if name == "latest" {
            let mut newest = None;
            for (id, snapshot) in self.snapshots().await? {
                if let Ok(snapshot) = snapshot {
                    newest = Some((id, snapshot));
                }
            }
            return newest.ok_or_else(|| Error::not_found("the repository has no snapshot"));
        }
        if name.len() < 4 || !name.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(Error::invalid_input(format!(
                "snapshot {name:?}: give `latest` or at least 4 hex digits of an id"
            )));
        }
        let name = name.to_ascii_lowercase();
        let matches: Vec<SnapshotId> = self
            .snapshot_ids()
            .await?
            .into_iter()
            .filter(|id| id.starts_with(&name))
            .collect();
        match matches.as_slice() {
            [] => Err(Error::not_found(format!(
                "no snapshot id starts with {name}"
            ))),
            [id] => Ok((id.clone(), self.load_snapshot(id).await?)),
            _ => Err(Error::invalid_input(format!(
                "snapshot {name} is ambiguous: {} ids start with it",
                matches.len()
            ))),
        }
    }

    /// Writes a snapshot record (after every chunk it names is durable: the commit point of
    /// a backup) and returns its id.
    ///
    /// # Errors
    /// Errors of `store`.
    pub(crate) async fn write_snapshot(&self, snapshot: &Snapshot) -> Result<SnapshotId> {
        let (id, bytes) = snapshot.encode()?;
        self.store
            .put(&key(format!("{SNAPSHOT_PREFIX}{id}"))?, bytes)
            .await?;
        Ok(id)
    }

    /// Deletes snapshot record `id` (its chunks stay until a prune).
    ///
    /// # Errors
    /// Errors of `store`.
    pub(crate) async fn delete_snapshot(&self, id: &str) -> Result<()> {
        self.store
            .delete(&key(format!("{SNAPSHOT_PREFIX}{id}"))?)
            .await
    }

    /// `data` cut with the repository's FastCDC settings (on the blocking pool when large):
    /// its SHA-256, its chunk list, and the chunks the repository does not hold yet.
    pub(crate) async fn cut(&self, data: Bytes) -> Result<Cut> {
        let chunker = self.chunker();
        let chunks = self.chunks.clone();
        hybridstore_core::raw::cpu_bound(data.len(), move || {
            let mut cut = Cut {
                sha256: Sha256Digest::of(&data),
                list: Vec::new(),
                missing: Vec::new(),
            };
            for (offset, len) in chunker.spans(&data) {
                let piece = data.slice(offset..offset + len);
                let id = Sha256Digest::of(&piece);
                cut.list.push((id, len as u32));
                if chunks.blob_location(&id).is_none() {
                    cut.missing.push((id, piece));
                }
            }
            cut
        })
        .await
    }

    /// Stores `data` as chunks (see [`cut`](Self::cut)); chunks already in the repository
    /// are not stored again. Durable when it returns.
    ///
    /// # Errors
    /// Errors of writing packs.
    pub(crate) async fn store_bytes(&self, data: Bytes) -> Result<StoredItem> {
        let size = data.len() as u64;
        let cut = self.cut(data).await?;
        let (new_chunks, new_bytes) = self.store_missing(cut.missing).await?;
        Ok(StoredItem {
            size,
            sha256: cut.sha256,
            chunks: cut.list,
            new_chunks,
            new_bytes,
        })
    }

    /// Stores what `reader` yields as chunks, in memory bounded by a few megabytes whatever
    /// its length.
    ///
    /// # Errors
    /// `Unavailable` if reading fails; errors of writing packs.
    pub(crate) async fn store_reader<R: AsyncRead + Unpin + Send>(
        &self,
        reader: R,
    ) -> Result<StoredItem> {
        let chunker = self.chunker();
        let mut pieces = std::pin::pin!(chunker.stream(reader));
        let mut item = StoredItem {
            size: 0,
            sha256: Sha256Digest([0; 32]),
            chunks: Vec::new(),
            new_chunks: 0,
            new_bytes: 0,
        };
        let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
        let mut batch: Vec<(ChunkId, Bytes)> = Vec::new();
        let mut batch_bytes = 0usize;
        while let Some(piece) = pieces.next().await {
            let (_, data) = piece?;
            let data = Bytes::from(data);
            let (id, data) = hybridstore_core::raw::cpu_bound(data.len(), move || {
                (Sha256Digest::of(&data), data)
            })
            .await?;
            sha2::Digest::update(&mut hasher, &data);
            item.size += data.len() as u64;
            item.chunks.push((id, data.len() as u32));
            if self.chunks.blob_location(&id).is_none() {
                batch_bytes += data.len();
                batch.push((id, data));
            }
            if batch_bytes >= STORE_BATCH_BYTES {
                let (n, bytes) = self.store_missing(std::mem::take(&mut batch)).await?;
                item.new_chunks += n;
                item.new_bytes += bytes;
                batch_bytes = 0;
            }
        }
        let (n, bytes) = self.store_missing(batch).await?;
        item.new_chunks += n;
        item.new_bytes += bytes;
        item.sha256 = Sha256Digest(sha2::Digest::finalize(hasher).into());
        Ok(item)
    }

    /// Stores chunks (id, plaintext) that are missing; returns how many and their bytes.
    pub(crate) async fn store_missing(
        &self,
        mut chunks: Vec<(ChunkId, Bytes)>,
    ) -> Result<(u64, u64)> {
        chunks.sort_by_key(|(id, _)| *id);
        chunks.dedup_by_key(|(id, _)| *id);
        chunks.retain(|(id, _)| self.chunks.blob_location(id).is_none());
        if chunks.is_empty() {
            return Ok((0, 0));
        }
        let bytes = chunks.iter().map(|(_, d)| d.len() as u64).sum();
        self.chunks.store_chunks(&chunks).await?;
        Ok((chunks.len() as u64, bytes))
    }

    /// The plaintext of `chunks` in order, each checked against its id, the whole against
    /// `sha256` and `size`.
    ///
    /// # Errors
    /// `Corrupted` naming `what` if a chunk is missing or damaged or the whole does not
    /// match; `InvalidInput` if `size` is over `limit` bytes (nothing is read then).
    pub(crate) async fn read_all(
        &self,
        what: &str,
        chunks: &[(ChunkId, u32)],
        size: u64,
        sha256: &Sha256Digest,
        limit: u64,
    ) -> Result<Bytes> {
        if size > limit {
            return Err(Error::invalid_input(format!(
                "{what}: {size} bytes is more than {limit} read at once"
            )));
        }
        let mut out = BytesMut::with_capacity(size as usize);
        let mut pieces = self.verified_stream(what.to_string(), chunks, *sha256);
        while let Some(piece) = pieces.next().await {
            out.extend_from_slice(&piece?);
        }
        if out.len() as u64 != size {
            return Err(Error::corrupted(format!(
                "{what}: the chunks make up {} bytes, {size} were recorded",
                out.len()
            ))
            .with_context("item", what));
        }
        Ok(out.freeze())
    }

    /// The plaintext of `chunks`, in order, each checked against its id and length; up to
    /// eight chunks are read ahead.
    ///
    /// # Errors
    /// Items fail with `Corrupted` for a chunk that is missing, damaged or of another length
    /// than recorded, and with the store's errors.
    pub fn chunk_stream<'a>(
        &'a self,
        chunks: &'a [(ChunkId, u32)],
    ) -> impl Stream<Item = Result<Bytes>> + Send + 'a {
        futures::stream::iter(chunks.iter())
            .map(move |(id, len)| async move {
                let data = self.chunks.read(id).await?;
                if data.len() != *len as usize {
                    return Err(Error::corrupted(format!(
                        "chunk {id}: {} bytes where {len} were recorded",
                        data.len()
                    )));
                }
                Ok(data)
            })
            .buffered(8)
    }

    /// The plaintext of `chunks` as [`chunk_stream`](Self::chunk_stream) gives it, with the
    /// SHA-256 of the whole checked against `sha256` before the last piece is handed out: a
    /// stream that ends without an error has yielded exactly the recorded bytes. `what`
    /// names the value or file in the error.
    pub(crate) fn verified_stream<'a>(
        &'a self,
        what: String,
        chunks: &'a [(ChunkId, u32)],
        sha256: Sha256Digest,
    ) -> futures::stream::BoxStream<'a, Result<Bytes>> {
        async_stream::try_stream! {
            let mut pieces = std::pin::pin!(self.chunk_stream(chunks));
            let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
            let mut held: Option<Bytes> = None;
            while let Some(piece) = pieces.next().await {
                let piece = piece.map_err(|e| e.with_context("item", &what))?;
                sha2::Digest::update(&mut hasher, &piece);
                if let Some(previous) = held.replace(piece) {
                    yield previous;
                }
            }
            if Sha256Digest(sha2::Digest::finalize(hasher).into()) != sha256 {
                Err(Error::corrupted(format!(
                    "{what}: the chunks do not make up the recorded bytes"
                ))
                .with_context("item", &what))?;
            }
            if let Some(last) = held {
                yield last;
            }
        }
        .boxed()
    }

    /// Takes a lock on the repository: `exclusive` for forget and prune, shared for backup,
    /// verify and restore. The lock is written first and the others checked after, so of two
    /// processes racing for conflicting locks at least one sees the other and backs off; it
    /// is refreshed every [`LOCK_REFRESH`] while held and removed when released or dropped.
    /// Locks older than [`LOCK_STALE_AFTER`], and locks of this host whose process is gone,
    /// are stale and ignored.
    ///
    /// # Errors
    /// `Locked` naming the holder if a conflicting lock is held; errors of the store.
    pub async fn lock(&self, exclusive: bool) -> Result<RepoLock> {
        let id = format!("{:032x}", rand::random::<u128>());
        let record = LockRecord::now(exclusive);
        let lock_key = key(format!("{LOCK_PREFIX}{id}"))?;
        self.store.put(&lock_key, record.encode()?).await?;
        let held = RepoLock {
            store: self.store.clone(),
            key: lock_key.clone(),
            refresher: Some(tokio::spawn(refresh(
                self.store.clone(),
                lock_key.clone(),
                exclusive,
            ))),
        };
        let others: Vec<_> = self
            .store
            .scan(KeyRange::prefix(LOCK_PREFIX), None)
            .try_collect()
            .await?;
        for entry in others {
            if entry.key == lock_key {
                continue;
            }
            let Ok(other) = LockRecord::decode(&entry.value) else {
                continue;
            };
            if other.is_stale() || !(exclusive || other.exclusive) {
                continue;
            }
            held.release().await?;
            return Err(Error::new(
                ErrorKind::Locked,
                format!(
                    "the repository is locked ({}) by pid {} on {} since {}; wait for it, or \
                     remove {} if that process is gone",
                    if other.exclusive {
                        "exclusively"
                    } else {
                        "shared"
                    },
                    other.pid,
                    other.host,
                    other.time,
                    entry.key
                ),
            )
            .with_retryable(true));
        }
        Ok(held)
    }
}

pub(crate) async fn read_pending(store: &dyn KvStore) -> Result<Pending> {
    match get_bounded(store, &key(PENDING_KEY)?).await? {
        None => Ok(Pending::default()),
        Some(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| Error::corrupted(format!("{PENDING_KEY} does not parse: {e}"))),
    }
}

pub(crate) async fn write_pending(store: &dyn KvStore, pending: &Pending) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(pending)
        .map_err(|e| Error::backend(format!("encoding {PENDING_KEY}: {e}")))?;
    store.put(&key(PENDING_KEY)?, Bytes::from(bytes)).await?;
    Ok(())
}

/// Bytes cut into chunks: see [`Repository::cut`].
pub(crate) struct Cut {
    pub(crate) sha256: Sha256Digest,
    pub(crate) list: Vec<(ChunkId, u32)>,
    /// The chunks the repository lacked when they were cut: id and plaintext.
    pub(crate) missing: Vec<(ChunkId, Bytes)>,
}

/// What storing an item's bytes gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StoredItem {
    pub(crate) size: u64,
    pub(crate) sha256: Sha256Digest,
    pub(crate) chunks: Vec<(ChunkId, u32)>,
    pub(crate) new_chunks: u64,
    pub(crate) new_bytes: u64,
}

/// A lock record.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct LockRecord {
    host: String,
    pid: u32,
    exclusive: bool,
    /// Seconds since the Unix epoch when it was written or last refreshed.
    time: u64,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// This machine's host name (`whoami::hostname`, else `localhost`).
pub fn host_name() -> String {
    whoami::hostname()
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

impl LockRecord {
    fn now(exclusive: bool) -> LockRecord {
        LockRecord {
            host: host_name(),
            pid: std::process::id(),
            exclusive,
            time: unix_now(),
        }
    }

    fn encode(&self) -> Result<Bytes> {
        serde_json::to_vec(self)
            .map(Bytes::from)
            .map_err(|e| Error::backend(format!("encoding a lock: {e}")))
    }

    fn decode(bytes: &[u8]) -> Result<LockRecord> {
        serde_json::from_slice(bytes).map_err(|e| Error::corrupted(format!("a lock: {e}")))
    }

    fn is_stale(&self) -> bool {
        if unix_now().saturating_sub(self.time) > LOCK_STALE_AFTER.as_secs() {
            return true;
        }
        // A process of this host that is gone holds nothing (restic checks the same).
        self.host == host_name()
            && self.pid != std::process::id()
            && !std::path::Path::new(&format!("/proc/{}", self.pid)).exists()
    }
}

async fn refresh(store: Arc<dyn KvStore>, key: Key, exclusive: bool) {
    loop {
        tokio::time::sleep(LOCK_REFRESH).await;
        let record = LockRecord::now(exclusive);
        if let Ok(bytes) = record.encode()
            && let Err(e) = store.put(&key, bytes).await
        {
            tracing::warn!(lock = %key, error = %e, "refreshing a repository lock failed");
        }
    }
}

/// A held repository lock (see [`Repository::lock`]).
#[derive(Debug)]
pub struct RepoLock {
    store: Arc<dyn KvStore>,
    key: Key,
    refresher: Option<tokio::task::JoinHandle<()>>,
}

impl RepoLock {
    /// Removes the lock.
    ///
    /// # Errors
    /// Errors of the store (the lock then goes stale by itself).
    pub async fn release(mut self) -> Result<()> {
        if let Some(task) = self.refresher.take() {
            task.abort();
        }
        self.store.delete(&self.key).await
    }
}

impl Drop for RepoLock {
    fn drop(&mut self) {
        if let Some(task) = self.refresher.take() {
            task.abort();
            // Dropped without `release`: remove the lock in the background if a runtime is
            // there, else it goes stale.
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                let (store, key) = (self.store.clone(), self.key.clone());
                handle.spawn(async move {
                    let _ = store.delete(&key).await;
                });
            }
        }
    }
}
