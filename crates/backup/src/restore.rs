//! Reading snapshots back: the key tree, keys into a store, files into a directory. Every
//! chunk is checked against its id and every value and file against its SHA-256 before it
//! counts as restored; a damaged snapshot fails the restore instead of writing wrong bytes.

use std::path::Path;
use std::time::Instant;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use hybridstore_core::{Error, KvStore, Result, WriteBatch};
use serde::Serialize;
use tokio::io::AsyncWriteExt;

use crate::record::{Item, ItemKind, Snapshot, TreeEntry, decode_tree};
use crate::repo::Repository;

/// Values up to this many bytes are read whole and written in batches; larger ones are
/// streamed into the target with `put_stream` (16 MiB, the facade's streaming threshold).
pub const WHOLE_VALUE_MAX: u64 = 16 << 20;

/// The largest key tree read, in bytes (1 GiB: about five million keys). A longer tree item
/// is refused before it is read.
pub const MAX_TREE_BYTES: u64 = 1 << 30;

/// Values read at once while restoring keys.
const CONCURRENCY: usize = 16;
/// Keys and bytes of one write batch of restored values.
const BATCH_KEYS: usize = 512;
const BATCH_BYTES: u64 = 32 << 20;

/// The key tree of `snapshot` (empty if it has none), checked against its SHA-256 and
/// parsed.
///
/// # Errors
/// `Corrupted` if a chunk of the tree is missing or damaged or the tree does not parse;
/// `InvalidInput` for a tree over [`MAX_TREE_BYTES`].
pub async fn read_tree(repo: &Repository, snapshot: &Snapshot) -> Result<Vec<TreeEntry>> {
    let Some(item) = snapshot.keys_item() else {
        return Ok(Vec::new());
    };
    let bytes = repo
        .read_all(
            &item.name,
            &item.chunks,
            item.size,
            &item.sha256,
            MAX_TREE_BYTES,
        )
        .await?;
    hybridstore_core::raw::cpu_bound(bytes.len(), move || decode_tree(&bytes)).await?
}

/// Progress of a restore.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RestoreProgress {
    /// Keys written.
    pub keys_done: u64,
    /// Keys to write.
    pub keys_total: u64,
    /// Bytes of values and files written.
    pub bytes_done: u64,
    /// Bytes to write.
    pub bytes_total: u64,
}

/// What a restore wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RestoreReport {
    /// Keys written.
    pub keys: u64,
    /// Bytes of their values.
    pub key_bytes: u64,
    /// Files written.
    pub files: u64,
    /// Bytes of the files.
    pub file_bytes: u64,
    /// Wall time, milliseconds.
    pub elapsed_ms: u64,
}

/// Writes the keys of `snapshot` that start with `prefix` (all with `None`) into `target`,
/// each with its recorded content type, creation and modification time. Small values go in
/// write batches of up to 512 keys; values over [`WHOLE_VALUE_MAX`] are streamed.
///
/// # Errors
/// `Corrupted` naming the key if a chunk is missing or damaged or a value does not match its
/// SHA-256 (keys written before it stay written); errors of `target`.
pub async fn restore_keys(
    repo: &Repository,
    snapshot: &Snapshot,
    target: &dyn KvStore,
    prefix: Option<&[u8]>,
    on_progress: &(dyn Fn(RestoreProgress) + Send + Sync),
) -> Result<RestoreReport> {
    let started = Instant::now();
    let tree = read_tree(repo, snapshot).await?;
    let wanted: Vec<TreeEntry> = match prefix {
        None => tree,
        Some(prefix) => tree
            .into_iter()
            .filter(|e| e.key().is_ok_and(|k| k.as_bytes().starts_with(prefix)))
            .collect(),
    };
    let mut progress = RestoreProgress {
        keys_total: wanted.len() as u64,
        bytes_total: wanted.iter().map(|e| e.size).sum(),
        ..RestoreProgress::default()
    };
    on_progress(progress);
    let (small, large): (Vec<TreeEntry>, Vec<TreeEntry>) =
        wanted.into_iter().partition(|e| e.size <= WHOLE_VALUE_MAX);

    let mut batch = WriteBatch::new();
    let mut batch_bytes = 0u64;
    let mut values = futures::stream::iter(small.iter())
        .map(|entry| async move {
            let value = read_value(repo, entry).await?;
            Ok::<_, Error>((entry, value))
        })
        .buffered(CONCURRENCY);
    while let Some((entry, value)) = values.try_next().await? {
        batch_bytes += value.len() as u64;
        batch.put_with(entry.key()?, value, entry.put_options());
        progress.keys_done += 1;
        progress.bytes_done += entry.size;
        if batch.len() >= BATCH_KEYS || batch_bytes >= BATCH_BYTES {
            target.write_batch(std::mem::take(&mut batch)).await?;
            batch_bytes = 0;
            on_progress(progress);
        }
    }
    if !batch.is_empty() {
        target.write_batch(batch).await?;
    }
    on_progress(progress);
    for entry in &large {
        let key = entry.key()?;
        let mut reader = verified_reader(repo, entry);
        target
            .put_stream(&key, &mut reader, &entry.put_options())
            .await
            .map_err(|e| e.with_context("key", &key))?;
        progress.keys_done += 1;
        progress.bytes_done += entry.size;
        on_progress(progress);
    }
    Ok(RestoreReport {
        keys: progress.keys_done,
        key_bytes: progress.bytes_done,
        elapsed_ms: started.elapsed().as_millis() as u64,
        ..RestoreReport::default()
    })
}

/// The value of `entry`, read whole and checked (for values up to [`WHOLE_VALUE_MAX`]).
///
/// # Errors
/// As [`restore_keys`]; `InvalidInput` for a larger value.
pub async fn read_value(repo: &Repository, entry: &TreeEntry) -> Result<Bytes> {
    repo.read_all(
        &entry.display_key(),
        &entry.chunks,
        entry.size,
        &entry.sha256,
        WHOLE_VALUE_MAX,
    )
    .await
}

/// A reader of `entry`'s value whose last read fails with `Corrupted` if the bytes do not
/// hash to the recorded SHA-256, so a streamed put of it never commits wrong bytes.
fn verified_reader<'a>(
    repo: &'a Repository,
    entry: &'a TreeEntry,
) -> tokio_util::io::StreamReader<futures::stream::BoxStream<'a, std::io::Result<Bytes>>, Bytes> {
    let body = repo
        .verified_stream(entry.display_key(), &entry.chunks, entry.sha256)
        .map_err(std::io::Error::other)
        .boxed();
    tokio_util::io::StreamReader::new(body)
}

/// Writes file item `item` to `path`: into a temporary file beside it, checked against the
/// item's SHA-256, synced, then renamed over `path` and its directory synced (parents
/// created as needed).
///
/// # Errors
/// `InvalidInput` if `item` is not a file item; `Corrupted` if a chunk is missing or
/// damaged or the bytes do not match (no file is left at `path` then); I/O errors.
pub async fn restore_file(repo: &Repository, item: &Item, path: &Path) -> Result<u64> {
    if item.kind != ItemKind::File {
        return Err(Error::invalid_input(format!(
            "{} is not a file item",
            item.name
        )));
    }
    let io = |e: std::io::Error| Error::from(e).with_context("path", path.display());
    let dir = path
        .parent()
        .ok_or_else(|| Error::invalid_input(format!("{} has no parent", path.display())))?;
    tokio::fs::create_dir_all(dir).await.map_err(io)?;
    let dir_owned = dir.to_path_buf();
    let temp = tokio::task::spawn_blocking(move || {
        tempfile::Builder::new()
            .prefix(".hybridstore-restore-")
            .tempfile_in(dir_owned)
    })
    .await
    .map_err(|e| Error::backend(format!("creating a temporary file: {e}")))?
    .map_err(io)?;
    let (file, temp_path) = temp.into_parts();
    let mut file = tokio::fs::File::from_std(file);
    let mut written = 0u64;
    let mut pieces = repo.verified_stream(item.name.clone(), &item.chunks, item.sha256);
    while let Some(piece) = pieces.next().await {
        let piece = piece?;
        written += piece.len() as u64;
        file.write_all(&piece).await.map_err(io)?;
    }
    if written != item.size {
        return Err(Error::corrupted(format!(
            "{}: the chunks make up {written} bytes, {} were recorded",
            item.name, item.size
        )));
    }
    file.sync_all().await.map_err(io)?;
    drop(file);
    let (target, dir) = (path.to_path_buf(), dir.to_path_buf());
    // The rename is durable once the directory is synced (POSIX rename(2) leaves that to
    // the caller; see the ext4 and LWN notes on rename and fsync,
    // <https://lwn.net/Articles/457667/>).
    tokio::task::spawn_blocking(move || {
        temp_path.persist(&target).map_err(|e| e.error)?;
        std::fs::File::open(&dir)?.sync_all()
    })
    .await
    .map_err(|e| Error::backend(format!("renaming a restored file: {e}")))?
    .map_err(io)?;
    Ok(written)
}
