//! `FileStore`: a crash-safe [`KvStore`] on a local directory, the embedded default.
//!
//! Every key is one file holding a checksummed header (key, size, times, SHA-256, content
//! type) followed by the value, so a value and its metadata always change together.
//!
//! ```text
//! <root>/FORMAT                   "hybridstore-file 1"
//! <root>/LOCK                     held (flock) by the one process that has the store open
//! <root>/objects/<xx>/<name>      one record per key; xx = first key byte in hex (see layout)
//! <root>/journal/<id>.batch       redo log of a write batch in flight (see journal)
//! ```
//!
//! **Durability.** A put writes a temporary file beside its target, `fsync`s it, renames it
//! over the target and `fsync`s the directory, so after a crash (`kill -9` or power loss) a key
//! holds its old or its new value, never a torn one, and an acknowledged put is on disk.
//! Multi-key batches are made atomic by a redo journal (see the `journal` module docs).
//! Temporary files and unfinished batches are cleaned up or completed when the store is
//! opened.
//!
//! **Concurrency.** One process owns a data directory at a time (an exclusive lock on
//! `<root>/LOCK`; a second `open` fails with `Unavailable`). Within that process any number of
//! tasks may read and write concurrently; a reader never sees a half-applied batch. A scan is
//! not a snapshot: a batch committed while a long scan runs may be seen by its later pages
//! only.
//!
//! **Cancellation.** Dropping an operation's future leaves the store as if the operation
//! happened or never started: a write takes its place in a per-key order (a
//! `hybridstore_core::raw::WriteOrder` ticket) at its first poll, and work already on the
//! blocking pool finishes holding its ticket and the gate, so it lands before any write of
//! the same key begun later and before any later batch. If a committed
//! batch cannot be applied (or its journal retired), the store refuses writes (and, if the
//! batch is half-applied, reads) with `Unavailable` until it is reopened, since the journal
//! it replays on open would otherwise overwrite newer data.
//!
//! **Safety.** Key bytes never reach the file system as path syntax: names are hex (see
//! `layout`), so no key can escape the root or alias another key.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use hybridstore_core::{Key, KvStore};
//! use hybridstore_file::FileStore;
//! let dir = tempfile::tempdir().unwrap();
//! let store = FileStore::open(dir.path()).await?;
//! store.put(&Key::new("a/b.txt")?, "hello".into()).await?;
//! assert_eq!(store.get(&Key::new("a/b.txt")?).await?.as_deref(), Some(&b"hello"[..]));
//! # Ok::<(), hybridstore_core::Error>(())
//! # }).unwrap();
//! ```
//!
//! # Cargo features
//!
//! None.

mod durable;
mod journal;
mod layout;
mod listing;
mod objects;
mod record;
mod recovery;
mod streaming;

use std::collections::BTreeSet;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_stream::try_stream;
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use hybridstore_core::raw::{BatchPlan, Mutation, Ticket, WriteOrder};
use hybridstore_core::{
    Capabilities, Entry, EntryStream, Error, ErrorKind, Key, KeyRange, KvStore, MetaEntry,
    MetaStream, ObjectMeta, PutOptions, Result, StoreStats, ValueReader, ValueStream, WriteBatch,
};
use tokio::sync::{OwnedRwLockReadGuard, OwnedRwLockWriteGuard, RwLock};

use crate::durable::*;
use crate::journal::JournalEntry;
use crate::layout::{NameKind, TEMP_PREFIX};
use crate::listing::*;
use crate::objects::*;
use crate::recovery::*;
use crate::streaming::*;

pub use crate::streaming::STREAM_PIECE;

const FORMAT_FILE: &str = "FORMAT";
const FORMAT_LINE: &str = "hybridstore-file 1\n";
const LOCK_FILE: &str = "LOCK";
const OBJECTS_DIR: &str = "objects";
const JOURNAL_DIR: &str = "journal";
/// Records read per blocking task during a scan.
const SCAN_CHUNK: usize = 64;

/// Options of a [`FileStore`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct FileStoreOptions {
    /// Re-hash every value on `get` and `scan` and return `Corrupted` on mismatch
    /// (default `true`). Turning it off saves one SHA-256 pass per read (about 1 ms per MiB
    /// without SHA extensions) at the price of possibly returning damaged bytes.
    pub verify_reads: bool,
}

impl Default for FileStoreOptions {
    fn default() -> Self {
        FileStoreOptions { verify_reads: true }
    }
}

/// What opening a store had to repair after an earlier crash.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Committed batches completed from their journal.
    pub replayed_batches: usize,
    /// Temporary files of interrupted writes removed.
    pub removed_temp_files: usize,
}

/// A [`KvStore`] on a local directory. See the crate docs for layout, durability and
/// concurrency. Cloning is cheap; clones share the open store.
#[derive(Clone)]
pub struct FileStore {
    inner: Arc<Inner>,
}

struct Inner {
    root: PathBuf,
    objects: PathBuf,
    journal: PathBuf,
    options: FileStoreOptions,
    /// Single-key operations hold it shared, batches exclusively, so no reader sees part of a
    /// batch. The guard moves into the blocking task that does the work (see [`Gate`]), so a
    /// caller that drops its future cannot release it while the work still runs.
    gate: Arc<RwLock<()>>,
    /// Per-key write order: a put, delete or batch takes a ticket for its keys when it
    /// begins and holds it until its renames are done, so a write whose caller gave up
    /// cannot land after a later write of the same key.
    order: Arc<WriteOrder>,
    /// Set once a committed batch could not be applied or its journal retired: the journal
    /// on disk would be replayed over any later write at the next open, so the store refuses
    /// writes (and, if the batch is half-applied, reads) until it is reopened.
    failed: std::sync::OnceLock<Failure>,
    recovery: RecoveryReport,
    _lock: File,
}

/// Why a store stopped serving until it is reopened.
#[derive(Debug)]
struct Failure {
    message: String,
    /// The batch is half-applied: reads could see part of it.
    reads_too: bool,
}

/// The guards an operation holds, moved into the blocking closure they protect.
#[allow(dead_code)] // held for their `Drop`
enum Gate {
    Shared(OwnedRwLockReadGuard<()>),
    Write(Ticket, OwnedRwLockReadGuard<()>),
    Batch(Ticket, OwnedRwLockWriteGuard<()>),
}

/// How an operation takes the gate.
#[derive(Clone, Copy)]
enum Hold<'k> {
    /// Shared, for a read.
    Read,
    /// Its turn for the key, then shared, for a single-key write.
    Write(&'k Key),
    /// Its turn for every key it writes, then exclusive, for a batch.
    Batch(&'k [Key]),
}

/// Whether an operation reads or writes, for [`Inner::check_usable`].
#[derive(Clone, Copy, PartialEq, Eq)]
enum Access {
    Read,
    Write,
}

impl Inner {
    /// `Unavailable` (not retryable) if an earlier batch left the store needing a reopen.
    fn check_usable(&self, access: Access) -> Result<()> {
        match self.failed.get() {
            Some(f) if access == Access::Write || f.reads_too => Err(Error::new(
                ErrorKind::Unavailable,
                format!(
                    "file store {} must be reopened: {}; opening it completes the batch from its journal",
                    self.root.display(),
                    f.message
                ),
            )
            .with_retryable(false)),
            _ => Ok(()),
        }
    }

    /// Marks the store failed (the first failure's message is kept).
    fn fail(&self, message: impl Into<String>, reads_too: bool) {
        let _ = self.failed.set(Failure {
            message: message.into(),
            reads_too,
        });
    }

    /// Runs `work` on the blocking pool holding the gate as `hold` says. The guards are
    /// taken here and moved into the task, so they stay held until the work is done even if
    /// the caller's future is dropped: a cancelled operation either completes (as if the
    /// caller had waited, and before any later write of the same key or any later batch) or
    /// never started.
    async fn gated<T: Send + 'static>(
        self: &Arc<Self>,
        hold: Hold<'_>,
        work: impl FnOnce(&Inner) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        // A write's ticket is taken before the first `.await`: its place in the order is
        // where the caller first polled it.
        let (gate, access) = match hold {
            Hold::Read => (
                Gate::Shared(self.gate.clone().read_owned().await),
                Access::Read,
            ),
            Hold::Write(key) => {
                let ticket = self.order.begin([key]);
                ticket.turn().await;
                let shared = self.gate.clone().read_owned().await;
                (Gate::Write(ticket, shared), Access::Write)
            }
            Hold::Batch(keys) => {
                let ticket = self.order.begin(keys);
                ticket.turn().await;
                let exclusive = self.gate.clone().write_owned().await;
                (Gate::Batch(ticket, exclusive), Access::Write)
            }
        };
        self.run_gated(gate, access, work).await
    }

    /// Runs `work` on the blocking pool holding `gate`, moved into the task (see
    /// [`gated`](Self::gated)).
    async fn run_gated<T: Send + 'static>(
        self: &Arc<Self>,
        gate: Gate,
        access: Access,
        work: impl FnOnce(&Inner) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let inner = self.clone();
        blocking(move || {
            let _gate = gate;
            inner.check_usable(access)?;
            work(&inner)
        })
        .await
    }
}

impl fmt::Debug for FileStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileStore")
            .field("root", &self.inner.root)
            .finish()
    }
}

pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::backend(format!("file store worker failed: {e}")))?
}

pub(crate) fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::from(e).with_context("path", dir.display()))
}

pub(crate) fn io_err(e: io::Error, path: &Path) -> Error {
    Error::from(e).with_context("path", path.display())
}

impl FileStore {
    /// Opens (creating if needed) the store at `root` with default options.
    ///
    /// # Errors
    /// `Locked` if another process has the store open; `Corrupted` if `root` holds an
    /// unknown format or a damaged batch journal; I/O errors.
    pub async fn open(root: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(root, FileStoreOptions::default()).await
    }

    /// Opens (creating if needed) the store at `root`, completing or discarding whatever a
    /// crash interrupted (see [`recovery`](Self::recovery)).
    ///
    /// # Errors
    /// As [`open`](Self::open).
    pub async fn open_with(root: impl AsRef<Path>, options: FileStoreOptions) -> Result<Self> {
        let root = root.as_ref().to_path_buf();
        blocking(move || Self::open_blocking(root, options)).await
    }

    fn open_blocking(root: PathBuf, options: FileStoreOptions) -> Result<Self> {
        fs::create_dir_all(&root).map_err(|e| io_err(e, &root))?;
        let lock_path = root.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io_err(e, &lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(Error::new(
                    ErrorKind::Locked,
                    format!(
                        "data directory {} is in use by another process; stop it or use another directory",
                        root.display()
                    ),
                )
                .with_retryable(false));
            }
            Err(fs::TryLockError::Error(e)) => return Err(io_err(e, &lock_path)),
        }
        let format_path = root.join(FORMAT_FILE);
        match fs::read_to_string(&format_path) {
            Ok(s) if s == FORMAT_LINE => {}
            Ok(s) => {
                return Err(Error::corrupted(format!(
                    "{} says {:?}; this version reads {:?}",
                    format_path.display(),
                    s.trim(),
                    FORMAT_LINE.trim()
                )));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let nonempty = fs::read_dir(&root)
                    .map_err(|e| io_err(e, &root))?
                    .filter_map(|e| e.ok())
                    .any(|e| e.file_name() != LOCK_FILE);
                if nonempty {
                    return Err(Error::invalid_input(format!(
                        "{} is not empty and is not a hybridstore file store",
                        root.display()
                    )));
                }
                write_durably(&root, FORMAT_FILE, FORMAT_LINE.as_bytes())?;
            }
            Err(e) => return Err(io_err(e, &format_path)),
        }
        let objects = root.join(OBJECTS_DIR);
        let journal = root.join(JOURNAL_DIR);
        for dir in [&objects, &journal] {
            match fs::create_dir(dir) {
                Ok(()) => fsync_dir(&root)?,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => check_real_dir(dir)?,
                Err(e) => return Err(io_err(e, dir)),
            }
        }
        // Every key directory must be one, not a link planted to lead writes elsewhere.
        for entry in fs::read_dir(&objects).map_err(|e| io_err(e, &objects))? {
            let entry = entry.map_err(|e| io_err(e, &objects))?;
            if layout::parse_dir_name(&entry.file_name().to_string_lossy()).is_some() {
                check_real_dir(&entry.path())?;
            }
        }
        let recovery = recover(&objects, &journal)?;
        if recovery != RecoveryReport::default() {
            tracing::info!(root = %root.display(), ?recovery, "file store recovered after a crash");
        }
        Ok(FileStore {
            inner: Arc::new(Inner {
                root,
                objects,
                journal,
                options,
                gate: Arc::new(RwLock::new(())),
                order: WriteOrder::new(),
                failed: std::sync::OnceLock::new(),
                recovery,
                _lock: lock,
            }),
        })
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// What [`open`](Self::open) repaired.
    pub fn recovery(&self) -> &RecoveryReport {
        &self.inner.recovery
    }

    fn record_stream(
        &self,
        range: KeyRange,
        limit: Option<usize>,
        with_values: bool,
    ) -> BoxStream<'static, Result<(Key, ObjectMeta, Option<Bytes>)>> {
        let inner = self.inner.clone();
        let stream = try_stream! {
            let mut remaining = limit.unwrap_or(usize::MAX);
            if remaining == 0 || range.is_empty() {
                return;
            }
            let r = range.clone();
            let dirs = inner
                .gated(Hold::Read, move |i| list_dirs(&i.objects, &r))
                .await?;
            for first in dirs {
                let r = range.clone();
                let listing = inner
                    .gated(Hold::Read, move |i| list_dir(&i.objects, first, &r))
                    .await?;
                for chunk in listing.chunks(SCAN_CHUNK) {
                    let take = chunk.len().min(remaining);
                    let paths: Vec<(Key, PathBuf)> = chunk[..take].to_vec();
                    let verify = inner.options.verify_reads;
                    let records = inner
                        .gated(Hold::Read, move |_| {
                            read_records(paths, with_values, verify)
                        })
                        .await?;
                    for record in records {
                        remaining -= 1;
                        yield record;
                    }
                    if remaining == 0 {
                        return;
                    }
                }
            }
        };
        stream.boxed()
    }
}

#[async_trait]
impl KvStore for FileStore {
    fn capabilities(&self) -> Capabilities {
        Capabilities::new()
            .with_durable(true)
            .with_crash_atomic_batch(true)
    }

    async fn get(&self, key: &Key) -> Result<Option<Bytes>> {
        let k = key.clone();
        self.inner
            .gated(Hold::Read, move |i| {
                get_blocking(&i.objects, &k, i.options.verify_reads)
            })
            .await
    }

    async fn get_range(&self, key: &Key, range: std::ops::Range<u64>) -> Result<Option<Bytes>> {
        let k = key.clone();
        self.inner
            .gated(Hold::Read, move |i| {
                get_range_blocking(&i.objects, &k, range)
            })
            .await
    }

    /// Streams the record through its own descriptor, one [`STREAM_PIECE`] read ahead; the
    /// stream yields the version current when it began, even if the key is overwritten or
    /// deleted meanwhile, and a whole-value stream is verified (with `verify_reads`) before
    /// its last piece.
    async fn get_stream(
        &self,
        key: &Key,
        range: Option<std::ops::Range<u64>>,
    ) -> Result<Option<ValueStream<'_>>> {
        let k = key.clone();
        let opened = self
            .inner
            .gated(Hold::Read, move |i| {
                open_stream_blocking(&i.objects, &k, range, i.options.verify_reads)
            })
            .await?;
        Ok(opened.map(|(len, state)| read_stream(len, state)))
    }

    /// Writes a temporary record piece by piece (the value is never in memory) and commits it
    /// as a whole-value put does; until the commit, the key keeps its old value and the put
    /// holds only its place in the key's write order, not the store's gate, so batches of
    /// other keys go on. A failed or dropped put leaves no trace. No size limit beyond the
    /// file system's.
    async fn put_stream(
        &self,
        key: &Key,
        reader: ValueReader<'_>,
        options: &PutOptions,
    ) -> Result<ObjectMeta> {
        options.validate()?;
        self.inner.check_usable(Access::Write)?;
        // Its place in the key's write order is where the caller first polled it.
        let ticket = self.inner.order.begin([key]);
        ticket.turn().await;
        let (k, o) = (key.clone(), options.clone());
        let objects = self.inner.objects.clone();
        let staged = blocking(move || stage_stream_blocking(&objects, &k, &o)).await?;
        let staged = copy_into(reader, staged).await?;
        let shared = self.inner.gate.clone().read_owned().await;
        let (k, o) = (key.clone(), options.clone());
        self.inner
            .run_gated(Gate::Write(ticket, shared), Access::Write, move |i| {
                commit_stream_blocking(&i.objects, &k, staged, &o)
            })
            .await
    }

    async fn head(&self, key: &Key) -> Result<Option<ObjectMeta>> {
        let k = key.clone();
        self.inner
            .gated(Hold::Read, move |i| head_blocking(&i.objects, &k))
            .await
    }

    async fn put_with(&self, key: &Key, value: Bytes, options: &PutOptions) -> Result<ObjectMeta> {
        options.validate()?;
        let (k, o) = (key.clone(), options.clone());
        self.inner
            .gated(Hold::Write(key), move |i| {
                put_blocking(&i.objects, &k, &value, &o)
            })
            .await
    }

    async fn delete(&self, key: &Key) -> Result<()> {
        let k = key.clone();
        self.inner
            .gated(Hold::Write(key), move |i| delete_blocking(&i.objects, &k))
            .await
    }

    fn scan(&self, range: KeyRange, limit: Option<usize>) -> EntryStream<'_> {
        self.record_stream(range, limit, true)
            .map(|r| {
                r.map(|(key, meta, value)| Entry {
                    key,
                    meta,
                    value: value.unwrap_or_default(),
                })
            })
            .boxed()
    }

    fn scan_meta(&self, range: KeyRange, limit: Option<usize>) -> MetaStream<'_> {
        self.record_stream(range, limit, false)
            .map(|r| r.map(|(key, meta, _)| MetaEntry { key, meta }))
            .boxed()
    }

    async fn write_batch(&self, batch: WriteBatch) -> Result<()> {
        let plan = batch.into_plan()?;
        if plan.checks.is_empty() && plan.writes.is_empty() {
            return Ok(());
        }
        // Ordered against other writes of every key it reads (checks) or writes.
        let keys: Vec<Key> = plan.keys().cloned().collect();
        self.inner
            .gated(Hold::Batch(&keys), move |i| batch_blocking(i, plan))
            .await
    }

    /// Counts keys and bytes from the record headers; `stored_bytes` is the total size of the
    /// record files (headers included).
    async fn stats(&self) -> Result<StoreStats> {
        self.inner
            .gated(Hold::Read, move |i| stats_blocking(&i.objects))
            .await
    }
}
