//! Taking a snapshot: the keys of a key/value store and a set of files, at one moment.
//!
//! The caller describes the moment ([`BackupSource`]): every key with its metadata and how
//! its value is laid out, captured while writers were held back, and files that do not
//! change (immutable files, or point-in-time copies of databases). Then, with writers
//! running again:
//!
//! 1. chunks the repository lacks are read (from the dedup layer's chunk store when the
//!    source has one, so nothing is cut or hashed twice; otherwise the value is read and cut
//!    with the repository's FastCDC settings) and stored in packs of about 16 MiB,
//! 2. the key tree (one JSON line per key) and each file are stored as chunks too,
//! 3. the snapshot record is written: the commit point. A crash before it leaves packs no
//!    snapshot names (the next backup reuses their chunks; prune removes them otherwise),
//!    never a snapshot naming a chunk that is not durable.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use hybridstore_core::{Error, Key, KvStore, ObjectMeta, Result, Sha256Digest};
use hybridstore_dedup::{ChunkId, ChunkStore};
use serde::Serialize;

use crate::record::{
    FORMAT_VERSION, Item, ItemKind, Snapshot, SnapshotId, Summary, TreeEntry, encode_tree,
};
use crate::repo::Repository;

/// Name of the key tree item in a snapshot.
pub const KEYS_ITEM: &str = "keys";

/// Plaintext bytes of new chunks gathered before they are stored together: one pack's worth
/// (16 MiB, the chunk store's target pack size), so a backup of many small keys writes few
/// large packs.
const GATHER_BYTES: usize = 16 << 20;

/// Keys whose new chunks are read at once.
const CONCURRENCY: usize = 16;

/// How one key's value is laid out at the snapshot's moment.
#[derive(Clone, Debug)]
pub enum SourceValue {
    /// The value itself (the dedup layer keeps small values inline in their manifest).
    Inline(Bytes),
    /// The value's chunks, in order, readable from [`KeySource::chunks`].
    Chunks(Vec<(ChunkId, u32)>),
    /// Read the value from [`KeySource::values`] during the backup; it must still hash to
    /// the metadata's checksum (the caller keeps writers of this key out until the backup
    /// ends, or accepts that the backup fails with `Conflict` if it changed).
    Read,
}

/// One key at the snapshot's moment.
#[derive(Clone, Debug)]
pub struct SourceEntry {
    /// The key.
    pub key: Key,
    /// Its metadata (size, checksum, content type, times).
    pub meta: ObjectMeta,
    /// Its value's layout.
    pub value: SourceValue,
}

/// The keys of a snapshot.
#[derive(Clone)]
pub struct KeySource {
    /// Every key, in key order.
    pub entries: Vec<SourceEntry>,
    /// Where [`SourceValue::Chunks`] are read: the dedup layer's chunk store.
    pub chunks: Option<ChunkStore>,
    /// Where [`SourceValue::Read`] values are read.
    pub values: Option<Arc<dyn KvStore>>,
}

impl std::fmt::Debug for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySource")
            .field("entries", &self.entries.len())
            .field("chunks", &self.chunks.is_some())
            .field("values", &self.values.is_some())
            .finish()
    }
}

/// A file of a snapshot: its name in the snapshot and where its bytes are now. The file must
/// not change while the backup reads it (an immutable file, or a copy taken for the backup).
#[derive(Clone, Debug)]
pub struct FileSource {
    /// Relative name with `/` separators (`analytics.duckdb`, `lance/t.lance/data/x.lance`).
    pub name: String,
    /// Where to read it.
    pub path: PathBuf,
}

/// What to back up (see the module docs).
#[derive(Clone, Debug)]
pub struct BackupSource {
    /// The moment the keys and files were captured, with the host's UTC offset.
    pub time: chrono::DateTime<chrono::FixedOffset>,
    /// Host name recorded in the snapshot.
    pub host: String,
    /// What is backed up (a data directory's path), recorded and used to find the parent.
    pub source: String,
    /// Tags to record.
    pub tags: Vec<String>,
    /// The keys, if a key/value store is backed up.
    pub keys: Option<KeySource>,
    /// The files, in any order (the snapshot lists them by name).
    pub files: Vec<FileSource>,
}

/// Progress of a backup, as [`backup`] reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct BackupProgress {
    /// Keys done and in all.
    pub keys_done: u64,
    /// Keys in all.
    pub keys_total: u64,
    /// Bytes of values and files done.
    pub bytes_done: u64,
    /// Bytes of values and files in all.
    pub bytes_total: u64,
}

/// What a backup did.
#[derive(Clone, Debug, Serialize)]
pub struct BackupReport {
    /// The new snapshot's id.
    pub id: SnapshotId,
    /// Its record.
    pub snapshot: Snapshot,
}

/// Takes a snapshot of `source` into `repo` under a shared repository lock; `on_progress` is
/// called as keys and files are done.
///
/// # Errors
/// `Locked` if a prune holds the repository; `Corrupted` if a chunk of the source is
/// damaged (named by key); `Conflict` if a [`SourceValue::Read`] value changed since its
/// metadata was taken; `InvalidInput` if a file name is empty or not relative; errors of
/// reading the source or writing the repository. Nothing a failed backup wrote is visible as
/// a snapshot.
pub async fn backup(
    repo: &Repository,
    source: BackupSource,
    on_progress: &(dyn Fn(BackupProgress) + Send + Sync),
) -> Result<BackupReport> {
    let lock = repo.lock(false).await?;
    let result = run(repo, source, on_progress).await;
    lock.release().await?;
    result
}

async fn run(
    repo: &Repository,
    mut source: BackupSource,
    on_progress: &(dyn Fn(BackupProgress) + Send + Sync),
) -> Result<BackupReport> {
    let started = Instant::now();
    for file in &source.files {
        check_name(&file.name)?;
    }
    source.files.sort_by(|a, b| a.name.cmp(&b.name));
    // Packs a prune marked for deletion are not reused: their chunks are stored again.
    let pending: HashSet<Key> = repo
        .pending_packs()
        .keys()
        .filter_map(|k| Key::new(k.clone()).ok())
        .collect();
    repo.chunks().forget_packs(&pending);
    let parent = parent_of(repo, &source.host, &source.source).await?;

    let mut progress = BackupProgress::default();
    if let Some(keys) = &source.keys {
        progress.keys_total = keys.entries.len() as u64;
        progress.bytes_total += keys.entries.iter().map(|e| e.meta.size).sum::<u64>();
    }
    for file in &source.files {
        let len = tokio::fs::metadata(&file.path)
            .await
            .map_err(|e| io(e, &file.path))?
            .len();
        progress.bytes_total += len;
    }
    on_progress(progress);

    let mut summary = Summary::default();
    let mut items = Vec::new();
    if let Some(keys) = source.keys.take() {
        let tree = back_up_keys(repo, keys, &mut summary, &mut progress, on_progress).await?;
        let bytes = Bytes::from(encode_tree(&tree)?);
        let stored = repo.store_bytes(bytes).await?;
        summary.new_chunks += stored.new_chunks;
        summary.new_bytes += stored.new_bytes;
        items.push(Item {
            name: KEYS_ITEM.to_string(),
            kind: ItemKind::Keys,
            size: stored.size,
            sha256: stored.sha256,
            chunks: stored.chunks,
        });
    }
    for file in &source.files {
        let reader = tokio::fs::File::open(&file.path)
            .await
            .map_err(|e| io(e, &file.path))?;
        let reader = tokio::io::BufReader::with_capacity(1 << 20, reader);
        let stored = repo
            .store_reader(reader)
            .await
            .map_err(|e| e.with_context("file", &file.name))?;
        summary.files += 1;
        summary.file_bytes += stored.size;
        summary.new_chunks += stored.new_chunks;
        summary.new_bytes += stored.new_bytes;
        progress.bytes_done += stored.size;
        on_progress(progress);
        items.push(Item {
            name: file.name.clone(),
            kind: ItemKind::File,
            size: stored.size,
            sha256: stored.sha256,
            chunks: stored.chunks,
        });
    }
    summary.duration_ms = started.elapsed().as_millis() as u64;
    let snapshot = Snapshot {
        version: FORMAT_VERSION,
        time: source.time.to_rfc3339(),
        parent,
        host: source.host,
        source: source.source,
        tags: source.tags,
        items,
        summary,
    };
    let id = repo.write_snapshot(&snapshot).await?;
    tracing::info!(snapshot = %id, keys = snapshot.summary.keys, files = snapshot.summary.files,
        new_bytes = snapshot.summary.new_bytes, "snapshot written");
    Ok(BackupReport { id, snapshot })
}

fn io(e: std::io::Error, path: &std::path::Path) -> Error {
    Error::from(e).with_context("path", path.display())
}

/// A file name in a snapshot: relative, `/`-separated, no `.` or `..` segment, not empty.
pub(crate) fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && !name.starts_with('/')
        && !name.contains('\\')
        && name
            .split('/')
            .all(|s| !s.is_empty() && s != "." && s != ".." && !s.contains('\0'));
    if ok && name != KEYS_ITEM {
        Ok(())
    } else {
        Err(Error::invalid_input(format!(
            "file name {name:?} in a snapshot must be a relative path of plain segments, and not {KEYS_ITEM:?}"
        )))
    }
}

async fn parent_of(repo: &Repository, host: &str, source: &str) -> Result<Option<SnapshotId>> {
    let mut parent = None;
    for (id, snapshot) in repo.snapshots().await? {
        if let Ok(s) = snapshot
            && s.host == host
            && s.source == source
        {
            parent = Some(id);
        }
    }
    Ok(parent)
}

/// One key's tree entry and the chunks it needs stored.
struct Prepared {
    entry: TreeEntry,
    missing: Vec<(ChunkId, Bytes)>,
}

async fn back_up_keys(
    repo: &Repository,
    keys: KeySource,
    summary: &mut Summary,
    progress: &mut BackupProgress,
    on_progress: &(dyn Fn(BackupProgress) + Send + Sync),
) -> Result<Vec<TreeEntry>> {
    let KeySource {
        entries,
        chunks,
        values,
    } = keys;
    let mut tree = Vec::with_capacity(entries.len());
    let mut gathered: Vec<(ChunkId, Bytes)> = Vec::new();
    let mut gathered_ids: HashSet<ChunkId> = HashSet::new();
    let mut gathered_bytes = 0usize;
    let mut prepared = futures::stream::iter(entries)
        .map(|entry| prepare(repo, entry, chunks.as_ref(), values.as_deref()))
        .buffered(CONCURRENCY);
    while let Some(p) = prepared.try_next().await? {
        summary.keys += 1;
        summary.key_bytes += p.entry.size;
        progress.keys_done += 1;
        progress.bytes_done += p.entry.size;
        for (id, data) in p.missing {
            if gathered_ids.insert(id) {
                gathered_bytes += data.len();
                gathered.push((id, data));
            }
        }
        if gathered_bytes >= GATHER_BYTES {
            let (n, bytes) = repo.store_missing(std::mem::take(&mut gathered)).await?;
            summary.new_chunks += n;
            summary.new_bytes += bytes;
            gathered_ids.clear();
            gathered_bytes = 0;
        }
        tree.push(p.entry);
        if progress.keys_done.is_multiple_of(256) {
            on_progress(*progress);
        }
    }
    let (n, bytes) = repo.store_missing(gathered).await?;
    summary.new_chunks += n;
    summary.new_bytes += bytes;
    on_progress(*progress);
    Ok(tree)
}

async fn prepare(
    repo: &Repository,
    entry: SourceEntry,
    chunks: Option<&ChunkStore>,
    values: Option<&dyn KvStore>,
) -> Result<Prepared> {
    let SourceEntry { key, meta, value } = entry;
    let named = |e: Error| e.with_context("key", &key);
    match value {
        SourceValue::Inline(data) => {
            if data.len() as u64 != meta.size || Sha256Digest::of(&data) != meta.checksum {
                return Err(named(Error::corrupted(
                    "the inline value does not match its metadata",
                )));
            }
            let id = meta.checksum;
            let list = vec![(id, data.len() as u32)];
            let missing = if data.is_empty() || repo.chunks().blob_location(&id).is_some() {
                Vec::new()
            } else {
                vec![(id, data)]
            };
            let mut entry =
                TreeEntry::new(&key, &meta, if meta.size == 0 { Vec::new() } else { list });
            entry.inline = true;
            Ok(Prepared { entry, missing })
        }
        SourceValue::Chunks(list) => {
            let source = chunks.ok_or_else(|| {
                Error::invalid_input("a key source with chunked values needs a chunk store")
            })?;
            let mut missing = Vec::new();
            let mut missing_bytes = 0usize;
            for (id, len) in &list {
                if repo.chunks().blob_location(id).is_some() {
                    continue;
                }
                let data = source.read(id).await.map_err(named)?;
                if data.len() != *len as usize {
                    return Err(named(Error::corrupted(format!(
                        "chunk {id}: {} bytes where the manifest says {len}",
                        data.len()
                    ))));
                }
                missing_bytes += data.len();
                missing.push((*id, data));
                // A large value's new chunks are stored as they come, a pack at a time.
                if missing_bytes >= GATHER_BYTES {
                    repo.store_missing(std::mem::take(&mut missing)).await?;
                    missing_bytes = 0;
                }
            }
            Ok(Prepared {
                entry: TreeEntry::new(&key, &meta, list),
                missing,
            })
        }
        SourceValue::Read => {
            let store = values.ok_or_else(|| {
                Error::invalid_input("a key source with values to read needs a store")
            })?;
            if meta.size > GATHER_BYTES as u64 {
                // Large: streamed and stored a few megabytes at a time.
                let stream = store
                    .get_stream(&key, None)
                    .await
                    .map_err(named)?
                    .ok_or_else(|| named(Error::conflict("deleted while being backed up")))?;
                let reader = tokio_util::io::StreamReader::new(
                    stream
                        .body
                        .map_err(|e| std::io::Error::other(e.to_string())),
                );
                let stored = repo.store_reader(reader).await.map_err(named)?;
                if stored.sha256 != meta.checksum {
                    return Err(named(Error::conflict(
                        "changed while being backed up; back it up again",
                    )));
                }
                return Ok(Prepared {
                    entry: TreeEntry::new(&key, &meta, stored.chunks),
                    missing: Vec::new(),
                });
            }
            let data = store
                .get(&key)
                .await
                .map_err(named)?
                .ok_or_else(|| named(Error::conflict("deleted while being backed up")))?;
            let cut = repo.cut(data).await?;
            if cut.sha256 != meta.checksum {
                return Err(named(Error::conflict(
                    "changed while being backed up; back it up again",
                )));
            }
            Ok(Prepared {
                entry: TreeEntry::new(&key, &meta, cut.list),
                missing: cut.missing,
            })
        }
    }
}
