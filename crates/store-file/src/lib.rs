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
//! `hybridstore_core::WriteOrder` ticket) at its first poll, and work already on the
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

mod journal;
mod layout;
mod record;

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
use hybridstore_core::{
    BatchPlan, Capabilities, Entry, EntryStream, Error, ErrorKind, Key, KeyRange, KvStore,
    MetaEntry, MetaStream, Mutation, ObjectMeta, PutOptions, Result, StoreStats, Ticket,
    WriteBatch, WriteOrder,
};
use tokio::sync::{OwnedRwLockReadGuard, OwnedRwLockWriteGuard, RwLock};

use crate::journal::JournalEntry;
use crate::layout::{NameKind, TEMP_PREFIX};

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

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::backend(format!("file store worker failed: {e}")))?
}

fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::from(e).with_context("path", dir.display()))
}

fn io_err(e: io::Error, path: &Path) -> Error {
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
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io_err(e, dir)),
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

/// Creates `.tmp.<random>` in `dir`, fills it with `write`, and `sync_all`s it. On any error
/// the temporary file is removed. The one place the temp-file half of the write protocol lives.
fn write_synced_temp(dir: &Path, write: impl FnOnce(&mut File) -> Result<()>) -> Result<PathBuf> {
    let temp = dir.join(format!("{TEMP_PREFIX}{:016x}", rand::random::<u64>()));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)?;
        write(&mut file)?;
        file.sync_all()?;
        Ok::<_, Error>(())
    })();
    match result {
        Ok(()) => Ok(temp),
        Err(e) => {
            let _ = fs::remove_file(&temp);
            Err(e.with_context("path", temp.display()))
        }
    }
}

/// Writes `name` in `dir` via temp + fsync + rename + fsync(dir).
fn write_durably(dir: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf> {
    let temp = write_synced_temp(dir, |f| Ok(io::Write::write_all(f, bytes)?))?;
    let target = dir.join(name);
    if let Err(e) = fs::rename(&temp, &target) {
        let _ = fs::remove_file(&temp);
        return Err(io_err(e, &target));
    }
    fsync_dir(dir)?;
    Ok(target)
}

/// Completes committed batches and removes temporary files left by a crash.
fn recover(objects: &Path, journal_dir: &Path) -> Result<RecoveryReport> {
    let mut report = RecoveryReport::default();
    let mut journals = Vec::new();
    for entry in fs::read_dir(journal_dir).map_err(|e| io_err(e, journal_dir))? {
        let entry = entry.map_err(|e| io_err(e, journal_dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(TEMP_PREFIX) {
            remove_temp(&entry.path(), &mut report)?;
        } else if name.ends_with(".batch") {
            journals.push(entry.path());
        }
    }
    journals.sort();
    for path in &journals {
        let bytes = fs::read(path).map_err(|e| io_err(e, path))?;
        let entries =
            journal::decode(&bytes).map_err(|e| e.with_context("path", path.display()))?;
        apply_journal(objects, &entries)?;
        fs::remove_file(path).map_err(|e| io_err(e, path))?;
        report.replayed_batches += 1;
    }
    if !journals.is_empty() {
        fsync_dir(journal_dir)?;
    }
    for entry in fs::read_dir(objects).map_err(|e| io_err(e, objects))? {
        let dir = entry.map_err(|e| io_err(e, objects))?.path();
        if !dir.is_dir() {
            continue;
        }
        for entry in fs::read_dir(&dir).map_err(|e| io_err(e, &dir))? {
            let entry = entry.map_err(|e| io_err(e, &dir))?;
            if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
                remove_temp(&entry.path(), &mut report)?;
            }
        }
    }
    Ok(report)
}

fn remove_temp(path: &Path, report: &mut RecoveryReport) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => {
            report.removed_temp_files += 1;
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(e, path)),
    }
}

/// Applies journaled renames and unlinks (idempotently) and syncs the touched directories.
fn apply_journal(objects: &Path, entries: &[JournalEntry]) -> Result<()> {
    let mut dirs = BTreeSet::new();
    for entry in entries {
        match entry {
            JournalEntry::Put { key, temp } => {
                let target = layout::record_path(objects, key);
                let dir = parent(&target)?;
                match fs::rename(dir.join(temp), &target) {
                    Ok(()) => {}
                    // Renamed before the crash.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_err(e, &target)),
                }
                dirs.insert(dir.to_path_buf());
            }
            JournalEntry::Delete { key } => {
                let target = layout::record_path(objects, key);
                match fs::remove_file(&target) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_err(e, &target)),
                }
                dirs.insert(parent(&target)?.to_path_buf());
            }
        }
    }
    for dir in dirs {
        if dir.exists() {
            fsync_dir(&dir)?;
        }
    }
    Ok(())
}

fn parent(path: &Path) -> Result<&Path> {
    path.parent()
        .ok_or_else(|| Error::backend(format!("{} has no parent", path.display())))
}

/// Creates the key's directory if needed, making its entry durable.
fn ensure_dir(objects: &Path, dir: &Path) -> Result<()> {
    match fs::create_dir(dir) {
        Ok(()) => fsync_dir(objects),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io_err(e, dir)),
    }
}

/// Opens the record of `key`, checks its header belongs to `key`.
fn open_record(path: &Path, key: &Key) -> Result<Option<(File, record::RecordHeader)>> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(e, path)),
    };
    let header =
        record::read_header(&mut file).map_err(|e| e.with_context("path", path.display()))?;
    if header.key != *key {
        return Err(
            Error::corrupted("record belongs to another key").with_context("path", path.display())
        );
    }
    Ok(Some((file, header)))
}

fn head_blocking(objects: &Path, key: &Key) -> Result<Option<ObjectMeta>> {
    Ok(open_record(&layout::record_path(objects, key), key)?.map(|(_, h)| h.meta))
}

fn get_blocking(objects: &Path, key: &Key, verify: bool) -> Result<Option<Bytes>> {
    let path = layout::record_path(objects, key);
    let Some((mut file, header)) = open_record(&path, key)? else {
        return Ok(None);
    };
    let value = record::read_value(&mut file, &header, verify)
        .map_err(|e| e.with_context("path", path.display()))?;
    Ok(Some(Bytes::from(value)))
}

/// Reads `range` of the value of `key` with one positioned read after the header; the
/// whole-value checksum is not checked (see `KvStore::get_range`), the length is.
fn get_range_blocking(
    objects: &Path,
    key: &Key,
    range: std::ops::Range<u64>,
) -> Result<Option<Bytes>> {
    use std::os::unix::fs::FileExt;
    let path = layout::record_path(objects, key);
    let Some((file, header)) = open_record(&path, key)? else {
        return Ok(None);
    };
    hybridstore_core::check_range(&range, header.meta.size)?;
    record::check_length(&file, &header).map_err(|e| e.with_context("path", path.display()))?;
    let len = usize::try_from(range.end - range.start)
        .map_err(|_| Error::invalid_input("range larger than the address space"))?;
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, header.header_len + range.start)
        .map_err(|e| io_err(e, &path))?;
    Ok(Some(Bytes::from(buf)))
}

/// Writes a synced temporary record for `key` beside its target and returns the temp path.
fn stage_record(
    objects: &Path,
    key: &Key,
    value: &[u8],
    options: &PutOptions,
) -> Result<(PathBuf, ObjectMeta)> {
    let target = layout::record_path(objects, key);
    let dir = parent(&target)?;
    ensure_dir(objects, dir)?;
    // Keep the first-write time across overwrites; a damaged old record does not block a put.
    let created = open_record(&target, key)
        .ok()
        .flatten()
        .map(|(_, h)| h.meta.created);
    let meta = ObjectMeta::for_value(value, options, created);
    let temp = write_synced_temp(dir, |f| record::write_record(f, key, &meta, value))?;
    Ok((temp, meta))
}

fn put_blocking(
    objects: &Path,
    key: &Key,
    value: &[u8],
    options: &PutOptions,
) -> Result<ObjectMeta> {
    let (temp, meta) = stage_record(objects, key, value, options)?;
    let target = layout::record_path(objects, key);
    if let Err(e) = fs::rename(&temp, &target) {
        let _ = fs::remove_file(&temp);
        return Err(io_err(e, &target));
    }
    fsync_dir(parent(&target)?)?;
    Ok(meta)
}

fn delete_blocking(objects: &Path, key: &Key) -> Result<()> {
    let target = layout::record_path(objects, key);
    match fs::remove_file(&target) {
        Ok(()) => fsync_dir(parent(&target)?),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(e, &target)),
    }
}

fn batch_blocking(inner: &Inner, plan: BatchPlan) -> Result<()> {
    let (objects, journal_dir) = (inner.objects.as_path(), inner.journal.as_path());
    plan.verify_checks(|k| head_blocking(objects, k))?;
    let mut writes = plan.writes;
    if writes.len() <= 1 {
        // One rename or unlink is atomic by itself; no journal needed.
        return match writes.pop() {
            Some((key, Mutation::Put { value, options })) => {
                put_blocking(objects, &key, &value, &options).map(|_| ())
            }
            Some((key, Mutation::Delete)) => delete_blocking(objects, &key),
            None => Ok(()),
        };
    }
    // 1. Stage every value in a synced temporary file and make their entries durable.
    let mut entries = Vec::with_capacity(writes.len());
    let mut temps = Vec::new();
    let mut staged_dirs = BTreeSet::new();
    let staged: Result<()> = (|| {
        for (key, mutation) in writes {
            match mutation {
                Mutation::Put { value, options } => {
                    let (temp, _) = stage_record(objects, &key, &value, &options)?;
                    let name = temp
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    staged_dirs.insert(parent(&temp)?.to_path_buf());
                    temps.push(temp);
                    entries.push(JournalEntry::Put { key, temp: name });
                }
                Mutation::Delete => entries.push(JournalEntry::Delete { key }),
            }
        }
        for dir in &staged_dirs {
            fsync_dir(dir)?;
        }
        Ok(())
    })();
    let cleanup = |temps: &[PathBuf]| {
        for t in temps {
            let _ = fs::remove_file(t);
        }
    };
    if let Err(e) = staged {
        cleanup(&temps);
        return Err(e);
    }
    // 2. Commit: the journal becomes durable.
    let name = format!(
        "{:020}-{:016x}.batch",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
        rand::random::<u64>()
    );
    let journal_path = match write_durably(journal_dir, &name, &journal::encode(&entries)) {
        Ok(p) => p,
        Err(e) => {
            cleanup(&temps);
            return Err(e);
        }
    };
    // 3. Apply. 4. Retire the journal durably before anyone can write again. If either
    // fails, the committed journal stays on disk and the next open replays it, so no later
    // write may be acknowledged before then: the store refuses them until it is reopened.
    if let Err(e) = apply_journal(objects, &entries) {
        const WHY: &str = "a write batch is committed but could not be fully applied";
        inner.fail(format!("{WHY} ({e})"), true);
        return Err(Error::backend(format!(
            "{WHY}; it completes when the store is next opened, and until then the store refuses reads and writes"
        ))
        .with_source(e));
    }
    let retired = fs::remove_file(&journal_path)
        .map_err(|e| io_err(e, &journal_path))
        .and_then(|()| fsync_dir(journal_dir));
    if let Err(e) = retired {
        const WHY: &str = "a write batch is applied but its journal could not be retired";
        inner.fail(format!("{WHY} ({e})"), false);
        return Err(Error::backend(format!(
            "{WHY}; the store refuses writes until it is reopened (which replays the batch again, harmlessly)"
        ))
        .with_source(e));
    }
    Ok(())
}

/// First key bytes whose directories exist and may hold keys in `range`, ascending.
fn list_dirs(objects: &Path, range: &KeyRange) -> Result<Vec<u8>> {
    let mut firsts = Vec::new();
    for entry in fs::read_dir(objects).map_err(|e| io_err(e, objects))? {
        let entry = entry.map_err(|e| io_err(e, objects))?;
        if let Some(first) = layout::parse_dir_name(&entry.file_name().to_string_lossy())
            && dir_may_intersect(range, first)
        {
            firsts.push(first);
        }
    }
    firsts.sort_unstable();
    Ok(firsts)
}

/// Whether any key starting with `first` can lie in `range`.
fn dir_may_intersect(range: &KeyRange, first: u8) -> bool {
    use std::ops::Bound;
    let lowest = [first];
    let below_end = match range.end() {
        Bound::Unbounded => true,
        Bound::Included(e) => e >= &lowest[..],
        Bound::Excluded(e) => e > &lowest[..],
    };
    let above_start = match range.start() {
        Bound::Unbounded => true,
        Bound::Included(s) | Bound::Excluded(s) => s.is_empty() || s[0] <= first,
    };
    below_end && above_start
}

/// The records of directory `first` in `range`, sorted by key.
fn list_dir(objects: &Path, first: u8, range: &KeyRange) -> Result<Vec<(Key, PathBuf)>> {
    let dir = objects.join(layout::dir_name(first));
    let read = match fs::read_dir(&dir) {
        Ok(r) => r,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(e, &dir)),
    };
    let mut out = Vec::new();
    for entry in read {
        let entry = entry.map_err(|e| io_err(e, &dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let key = match layout::parse_name(first, name) {
            NameKind::Direct(bytes) => match Key::new(bytes) {
                Ok(k) => k,
                Err(_) => continue,
            },
            NameKind::Hashed => {
                let path = entry.path();
                let mut file = match File::open(&path) {
                    Ok(f) => f,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(io_err(e, &path)),
                };
                record::read_header(&mut file)
                    .map_err(|e| e.with_context("path", path.display()))?
                    .key
            }
            NameKind::Temp | NameKind::Foreign => continue,
        };
        if range.contains(key.as_bytes()) {
            out.push((key, entry.path()));
        }
    }
    out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

type Record = (Key, ObjectMeta, Option<Bytes>);

/// Reads listed records; a record deleted since the listing is skipped.
fn read_records(
    paths: Vec<(Key, PathBuf)>,
    with_values: bool,
    verify: bool,
) -> Result<Vec<Record>> {
    let mut out = Vec::with_capacity(paths.len());
    for (key, path) in paths {
        let Some((mut file, header)) = open_record(&path, &key)? else {
            continue;
        };
        let value = if with_values {
            Some(Bytes::from(
                record::read_value(&mut file, &header, verify)
                    .map_err(|e| e.with_context("path", path.display()))?,
            ))
        } else {
            None
        };
        out.push((key, header.meta, value));
    }
    Ok(out)
}

fn stats_blocking(objects: &Path) -> Result<StoreStats> {
    let mut stats = StoreStats {
        stored_bytes: Some(0),
        ..StoreStats::default()
    };
    for first in list_dirs(objects, &KeyRange::all())? {
        for (key, path) in list_dir(objects, first, &KeyRange::all())? {
            let Some((file, header)) = open_record(&path, &key)? else {
                continue;
            };
            stats.keys += 1;
            stats.logical_bytes += header.meta.size;
            let len = file.metadata().map_err(|e| io_err(e, &path))?.len();
            stats.stored_bytes = stats.stored_bytes.map(|s| s + len);
        }
    }
    Ok(stats)
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
            .map_err(|e| e.with_operation("get").with_context("key", key))
    }

    async fn get_range(&self, key: &Key, range: std::ops::Range<u64>) -> Result<Option<Bytes>> {
        let k = key.clone();
        self.inner
            .gated(Hold::Read, move |i| {
                get_range_blocking(&i.objects, &k, range)
            })
            .await
            .map_err(|e| e.with_operation("get_range").with_context("key", key))
    }

    async fn head(&self, key: &Key) -> Result<Option<ObjectMeta>> {
        let k = key.clone();
        self.inner
            .gated(Hold::Read, move |i| head_blocking(&i.objects, &k))
            .await
            .map_err(|e| e.with_operation("head").with_context("key", key))
    }

    async fn put_with(&self, key: &Key, value: Bytes, options: &PutOptions) -> Result<ObjectMeta> {
        options.validate()?;
        let (k, o) = (key.clone(), options.clone());
        self.inner
            .gated(Hold::Write(key), move |i| {
                put_blocking(&i.objects, &k, &value, &o)
            })
            .await
            .map_err(|e| e.with_operation("put").with_context("key", key))
    }

    async fn delete(&self, key: &Key) -> Result<()> {
        let k = key.clone();
        self.inner
            .gated(Hold::Write(key), move |i| delete_blocking(&i.objects, &k))
            .await
            .map_err(|e| e.with_operation("delete").with_context("key", key))
    }

    fn scan(&self, range: KeyRange, limit: Option<usize>) -> EntryStream<'_> {
        self.record_stream(range, limit, true)
            .map(|r| {
                r.map(|(key, meta, value)| Entry {
                    key,
                    meta,
                    value: value.unwrap_or_default(),
                })
                .map_err(|e| e.with_operation("scan"))
            })
            .boxed()
    }

    fn scan_meta(&self, range: KeyRange, limit: Option<usize>) -> MetaStream<'_> {
        self.record_stream(range, limit, false)
            .map(|r| {
                r.map(|(key, meta, _)| MetaEntry { key, meta })
                    .map_err(|e| e.with_operation("scan_meta"))
            })
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
            .map_err(|e| e.with_operation("write_batch"))
    }

    /// Counts keys and bytes from the record headers; `stored_bytes` is the total size of the
    /// record files (headers included).
    async fn stats(&self) -> Result<StoreStats> {
        self.inner
            .gated(Hold::Read, move |i| stats_blocking(&i.objects))
            .await
            .map_err(|e| e.with_operation("stats"))
    }
}
