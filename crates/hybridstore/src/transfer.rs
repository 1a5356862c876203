//! Moving whole directory trees in and out of a store: `ingest` and `export`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt, stream};
use hybridstore_core::{Error, KeyRange, KvStore, PutOptions, Result};
use serde::Serialize;

use crate::source_tree::{FileError, SourceFile, walk};

/// Progress of a long transfer, passed to the caller's callback after each file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Files finished (stored, written or failed).
    pub files_done: u64,
    /// Bytes of finished files.
    pub bytes_done: u64,
    /// Files in the whole transfer.
    pub files_total: u64,
    /// Bytes in the whole transfer.
    pub bytes_total: u64,
}

/// What an ingest or export did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TransferReport {
    /// Files transferred.
    pub files: u64,
    /// Bytes transferred.
    pub bytes: u64,
    /// Entries passed over on purpose (symbolic links, sockets, devices).
    pub skipped: u64,
    /// Files that failed; the transfer carries on past them.
    pub errors: Vec<FileError>,
    /// Wall time in milliseconds.
    pub elapsed_ms: u64,
    /// Passages stored for full-text search (ingest with vectors on).
    #[cfg(feature = "vectors")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub passages: Option<crate::search::PassageReport>,
}

impl TransferReport {
    /// Throughput in MB/s (10^6 bytes per second).
    pub fn megabytes_per_second(&self) -> f64 {
        if self.elapsed_ms == 0 {
            return 0.0;
        }
        self.bytes as f64 / 1e6 / (self.elapsed_ms as f64 / 1e3)
    }
}

/// Counts finished files for progress callbacks shared by concurrent tasks.
struct Tracker {
    files_done: AtomicU64,
    bytes_done: AtomicU64,
    files_total: u64,
    bytes_total: u64,
}

impl Tracker {
    fn new(files_total: u64, bytes_total: u64) -> Self {
        Tracker {
            files_done: AtomicU64::new(0),
            bytes_done: AtomicU64::new(0),
            files_total,
            bytes_total,
        }
    }

    fn start(&self) -> Progress {
        Progress {
            files_total: self.files_total,
            bytes_total: self.bytes_total,
            ..Progress::default()
        }
    }

    fn finish_one(&self, size: u64) -> Progress {
        Progress {
            files_done: self.files_done.fetch_add(1, Ordering::Relaxed) + 1,
            bytes_done: self.bytes_done.fetch_add(size, Ordering::Relaxed) + size,
            files_total: self.files_total,
            bytes_total: self.bytes_total,
        }
    }
}

impl TransferReport {
    fn absorb(&mut self, results: Vec<std::result::Result<u64, FileError>>, started: Instant) {
        for r in results {
            match r {
                Ok(len) => {
                    self.files += 1;
                    self.bytes += len;
                }
                Err(e) => self.errors.push(e),
            }
        }
        self.elapsed_ms = started.elapsed().as_millis() as u64;
    }
}

/// The relative path a key exports to, refusing anything that could leave the destination.
///
/// # Errors
/// `InvalidInput` unless the key is UTF-8 made of non-empty `/`-separated components other
/// than `.` and `..`, without NUL.
pub fn export_path(rel_key: &[u8]) -> Result<PathBuf> {
    let text = std::str::from_utf8(rel_key)
        .map_err(|_| Error::invalid_input("key is not UTF-8, so it has no file name"))?;
    let mut path = PathBuf::new();
    for part in text.split('/') {
        if part.is_empty() || part == "." || part == ".." || part.contains('\0') {
            return Err(Error::invalid_input(format!(
                "key {text:?} is not a safe relative path (empty, '.', '..' or NUL component)"
            )));
        }
        path.push(part);
    }
    Ok(path)
}

/// Files per ingest write batch.
const BATCH_FILES: usize = 512;
/// Bytes per ingest write batch; a larger file is a batch of its own.
const BATCH_BYTES: u64 = 16 * 1024 * 1024;
/// Files and values from this size on are streamed (`put_stream`, `get_stream`) in pieces
/// instead of read whole into memory: 16 MiB, [`BATCH_BYTES`], so such a file is a batch of
/// its own anyway.
const STREAM_FROM_BYTES: u64 = BATCH_BYTES;
/// Write batches an ingest keeps in flight.
const BATCHES_IN_FLIGHT: usize = 2;

/// Splits files into write batches of at most [`BATCH_FILES`] files and [`BATCH_BYTES`] bytes.
fn group_into_batches(files: Vec<SourceFile>) -> Vec<Vec<SourceFile>> {
    let mut batches: Vec<Vec<SourceFile>> = Vec::new();
    let mut bytes = 0;
    for file in files {
        let full = batches
            .last()
            .is_none_or(|b| b.len() >= BATCH_FILES || bytes + file.size > BATCH_BYTES);
        if full {
            batches.push(Vec::new());
            bytes = 0;
        }
        bytes += file.size;
        if let Some(batch) = batches.last_mut() {
            batch.push(file);
        }
    }
    batches
}

/// Files read per blocking task during an ingest.
const READ_GROUP_FILES: usize = 16;

/// Reads one source file with its guessed content type.
fn read_source(file: SourceFile) -> (SourceFile, Result<(Bytes, PutOptions)>) {
    let value = std::fs::read(&file.path)
        .map_err(|e| Error::from(e).with_context("path", file.path.display()));
    let options = crate::guess_content_type(&file.path)
        .map(PutOptions::with_content_type)
        .unwrap_or_default();
    (file, value.map(|v| (Bytes::from(v), options)))
}

/// Streams one large file into the store ([`KvStore::put_stream`]): at most a few pieces of
/// it are in memory at once, whatever its size.
async fn ingest_large(
    store: &dyn KvStore,
    file: SourceFile,
) -> (u64, std::result::Result<u64, FileError>) {
    let options = crate::guess_content_type(&file.path)
        .map(PutOptions::with_content_type)
        .unwrap_or_default();
    let result = async {
        let opened = tokio::fs::File::open(&file.path)
            .await
            .map_err(|e| Error::from(e).with_context("path", file.path.display()))?;
        let mut reader = tokio::io::BufReader::with_capacity(READ_BUFFER_BYTES, opened);
        store
            .put_stream(&file.key, &mut reader, &options)
            .await
            .map(|meta| meta.size)
    }
    .await;
    let result = result.map_err(|e| FileError {
        path: file.path.display().to_string(),
        message: e.to_string(),
    });
    (file.size, result)
}

/// Bytes read from a source file per read when it is streamed: 1 MiB.
const READ_BUFFER_BYTES: usize = 1 << 20;

/// Bytes gathered from a value's stream before one write to its destination: 4 MiB. The
/// dedup layer yields chunks of 16 KiB on average; one write per chunk, each handed to a
/// blocking thread and back, cost `get -o` more than half its time.
pub const WRITE_BATCH_BYTES: usize = 4 << 20;

/// Batches queued for the writing thread by [`write_stream`]: 8, so at most
/// 8 × [`WRITE_BATCH_BYTES`] = 32 MiB wait in memory while the thread writes or syncs.
pub const WRITE_QUEUE_BATCHES: usize = 8;

/// Bytes [`write_stream`] writes between two `checkpoint` calls (64 MiB). For a file,
/// `File::sync_data` there makes the disk write while the store is still being read,
/// instead of all at the final sync.
pub const CHECKPOINT_EVERY_BYTES: u64 = 64 << 20;

/// Where [`write_stream`] failed.
#[derive(Debug)]
pub enum WriteStreamError {
    /// Reading the value failed (or its checksum did not match): the store's error.
    Read(Error),
    /// Writing, or a checkpoint, failed: the destination's error.
    Write(std::io::Error),
}

impl From<WriteStreamError> for Error {
    fn from(e: WriteStreamError) -> Self {
        match e {
            WriteStreamError::Read(e) => e,
            WriteStreamError::Write(e) => Error::from(e),
        }
    }
}

/// Writes a value's stream to `writer` in bounded memory: pieces are gathered into batches of
/// [`WRITE_BATCH_BYTES`], which a blocking thread writes while the next are read (at most
/// [`WRITE_QUEUE_BATCHES`] queued). Every [`CHECKPOINT_EVERY_BYTES`] written the thread calls
/// `checkpoint` if given (e.g. `File::sync_data`), then `flush` at the end. Returns the writer
/// and the bytes written.
///
/// Dropping the future part-way stops reading; the thread writes what was queued and ends.
///
/// # Errors
/// [`WriteStreamError::Read`] with the store's error if the stream yields one (the batches
/// before it may have been written); [`WriteStreamError::Write`] if a write, checkpoint or the
/// flush fails (reading stops at the next batch).
pub async fn write_stream<W>(
    mut body: futures::stream::BoxStream<'_, Result<Bytes>>,
    writer: W,
    checkpoint: Option<fn(&W) -> std::io::Result<()>>,
) -> std::result::Result<(W, u64), WriteStreamError>
where
    W: std::io::Write + Send + 'static,
{
    let (queue, mut batches) = tokio::sync::mpsc::channel::<Bytes>(WRITE_QUEUE_BATCHES);
    let worker = tokio::task::spawn_blocking(move || {
        let mut writer = writer;
        let (mut written, mut since_checkpoint) = (0u64, 0u64);
        while let Some(batch) = batches.blocking_recv() {
            writer.write_all(&batch)?;
            written += batch.len() as u64;
            since_checkpoint += batch.len() as u64;
            if let Some(checkpoint) = checkpoint
                && since_checkpoint >= CHECKPOINT_EVERY_BYTES
            {
                checkpoint(&writer)?;
                since_checkpoint = 0;
            }
        }
        writer.flush()?;
        Ok::<_, std::io::Error>((writer, written))
    });
    // A failed send means the thread stopped taking batches: it failed, and its error is
    // the answer, so reading stops there without one of its own.
    let read = async {
        let mut batch = bytes::BytesMut::new();
        while let Some(piece) = body.try_next().await? {
            // A batch is sent before a piece would overflow it, so it never reallocates.
            if !batch.is_empty()
                && batch.len() + piece.len() > WRITE_BATCH_BYTES
                && queue
                    .send(std::mem::take(&mut batch).freeze())
                    .await
                    .is_err()
            {
                return Ok(());
            }
            if piece.len() >= WRITE_BATCH_BYTES {
                if queue.send(piece).await.is_err() {
                    return Ok(());
                }
                continue;
            }
            if batch.is_empty() {
                batch.reserve(WRITE_BATCH_BYTES);
            }
            batch.extend_from_slice(&piece);
        }
        if !batch.is_empty() {
            let _ = queue.send(batch.freeze()).await;
        }
        Ok::<_, Error>(())
    }
    .await;
    drop(queue);
    let written = worker
        .await
        .map_err(|e| WriteStreamError::Write(std::io::Error::other(e)))?;
    match (read, written) {
        (Err(e), _) => Err(WriteStreamError::Read(e)),
        (Ok(_), Err(e)) => Err(WriteStreamError::Write(e)),
        (Ok(_), Ok(done)) => Ok(done),
    }
}

/// Writes the value of `key` to `target` as a stream, into a temporary file beside it that
/// is renamed over it once every byte is written: a damaged or failed read leaves no file,
/// and at most a few pieces of the value are in memory.
async fn export_large(
    store: &dyn KvStore,
    key: &hybridstore_core::Key,
    target: &Path,
) -> Result<u64> {
    let io = |e: std::io::Error| Error::from(e).with_context("path", target.display());
    let stream = store
        .get_stream(key, None)
        .await?
        .ok_or_else(|| Error::not_found("deleted during export"))?;
    let dir = target
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let partial = tokio::task::spawn_blocking(move || {
        tempfile::Builder::new()
            .prefix(".hybridstore-export-")
            .tempfile_in(dir)
    })
    .await
    .map_err(|e| Error::backend(format!("export worker failed: {e}")))?
    .map_err(io)?;
    let (file, partial) = partial.into_parts();
    let (file, written) = write_stream(stream.body, file, None)
        .await
        .map_err(|e| match e {
            WriteStreamError::Read(e) => e,
            WriteStreamError::Write(e) => io(e),
        })?;
    drop(file);
    let target = target.to_path_buf();
    tokio::task::spawn_blocking(move || {
        partial
            .persist(&target)
            .map_err(|e| io_err(e.error, &target))
    })
    .await
    .map_err(|e| Error::backend(format!("export worker failed: {e}")))??;
    Ok(written)
}

fn io_err(e: std::io::Error, path: &Path) -> Error {
    Error::from(e).with_context("path", path.display())
}

/// Reads the files of one batch and stores them in one write batch. If the batch fails, the
/// files are stored one by one, so each failure is reported against its own file.
async fn ingest_batch(
    store: &dyn KvStore,
    files: Vec<SourceFile>,
    read_concurrency: usize,
) -> Vec<(u64, std::result::Result<u64, FileError>)> {
    let file_error = |file: &SourceFile, e: Error| FileError {
        path: file.path.display().to_string(),
        message: e.to_string(),
    };
    // Small files are read a group at a time on one blocking thread: a blocking-pool hop per
    // file costs about as much as reading a typical 12 KB file from the page cache.
    let mut groups: Vec<Vec<SourceFile>> = Vec::new();
    for file in files {
        match groups.last_mut() {
            Some(g) if g.len() < READ_GROUP_FILES => g.push(file),
            _ => groups.push(vec![file]),
        }
    }
    let read: Vec<(SourceFile, Result<(Bytes, PutOptions)>)> = stream::iter(groups)
        .map(|group| async move {
            let kept = group.clone();
            tokio::task::spawn_blocking(move || group.into_iter().map(read_source).collect())
                .await
                .unwrap_or_else(|e| {
                    // The reader panicked: report each of its files as failed.
                    let message = format!("file reader task failed: {e}");
                    kept.into_iter()
                        .map(|f| (f, Err(Error::backend(message.clone()))))
                        .collect::<Vec<_>>()
                })
        })
        .buffered(read_concurrency.div_ceil(READ_GROUP_FILES).max(2))
        .flat_map(stream::iter)
        .collect()
        .await;
    let mut batch = hybridstore_core::WriteBatch::new();
    for (file, value) in &read {
        if let Ok((value, options)) = value {
            batch.put_with(file.key.clone(), value.clone(), options.clone());
        }
    }
    let batch_result = if batch.is_empty() {
        Ok(())
    } else {
        store.write_batch(batch).await
    };
    let mut out = Vec::with_capacity(read.len());
    for (file, value) in read {
        let result = match value {
            Err(e) => Err(file_error(&file, e)),
            Ok((value, options)) => {
                let len = value.len() as u64;
                match &batch_result {
                    Ok(()) => Ok(len),
                    Err(_) => store
                        .put_with(&file.key, value, &options)
                        .await
                        .map(|_| len)
                        .map_err(|e| file_error(&file, e)),
                }
            }
        };
        out.push((file.size, result));
    }
    out
}

/// Stores every regular file under `source` as `prefix + relative path`, `concurrency` files
/// at a time. Per-file failures are collected in the report and the ingest carries on.
///
/// # Errors
/// `InvalidInput` if `source` is not a directory.
pub(crate) async fn ingest(
    store: &dyn KvStore,
    source: &Path,
    prefix: &str,
    concurrency: usize,
    on_progress: &(dyn Fn(Progress) + Send + Sync),
) -> Result<TransferReport> {
    if !source.is_dir() {
        return Err(Error::invalid_input(format!(
            "{} is not a directory",
            source.display()
        )));
    }
    let started = Instant::now();
    let (source_owned, prefix_owned) = (source.to_path_buf(), prefix.to_string());
    let tree = tokio::task::spawn_blocking(move || walk(&source_owned, &prefix_owned))
        .await
        .map_err(|e| Error::backend(format!("directory walk failed: {e}")))?;
    let mut report = TransferReport {
        skipped: tree.skipped,
        errors: tree.errors,
        ..TransferReport::default()
    };
    let files = tree.files;

    let tracker = Tracker::new(files.len() as u64, files.iter().map(|f| f.size).sum());
    on_progress(tracker.start());
    // Files go in write batches (one transaction of the primary, one chunk pack): per-file
    // commits cost a transaction and an fsync each. `concurrency` files are read at once, and
    // two batches are in flight, so one is hashed and compressed while the other commits.
    let batches = group_into_batches(files);
    let read_concurrency = concurrency.max(1);
    let results: Vec<std::result::Result<u64, FileError>> = stream::iter(batches)
        .map(|batch| {
            let tracker = &tracker;
            async move {
                let results = match <[SourceFile; 1]>::try_from(batch) {
                    Ok([file]) if file.size >= STREAM_FROM_BYTES => {
                        vec![ingest_large(store, file).await]
                    }
                    Ok([file]) => ingest_batch(store, vec![file], read_concurrency).await,
                    Err(batch) => ingest_batch(store, batch, read_concurrency).await,
                };
                for (size, _) in &results {
                    on_progress(tracker.finish_one(*size));
                }
                results.into_iter().map(|(_, r)| r).collect::<Vec<_>>()
            }
        })
        .buffer_unordered(BATCHES_IN_FLIGHT)
        .flat_map(stream::iter)
        .collect()
        .await;
    report.absorb(results, started);
    Ok(report)
}

/// Writes every key under `prefix` to `dest/<key without prefix>`, `concurrency` at a time.
/// Keys that are not safe relative paths are reported, never written.
///
/// # Errors
/// The first error of listing the keys; per-key failures go into the report.
pub(crate) async fn export(
    store: &dyn KvStore,
    dest: &Path,
    prefix: &str,
    concurrency: usize,
    on_progress: &(dyn Fn(Progress) + Send + Sync),
) -> Result<TransferReport> {
    let started = Instant::now();
    let entries: Vec<_> = store
        .scan_meta(KeyRange::prefix(prefix.to_string()), None)
        .try_collect()
        .await?;
    let tracker = Tracker::new(
        entries.len() as u64,
        entries.iter().map(|e| e.meta.size).sum(),
    );
    on_progress(tracker.start());
    tokio::fs::create_dir_all(dest)
        .await
        .map_err(|e| Error::from(e).with_context("path", dest.display()))?;
    let results: Vec<std::result::Result<u64, FileError>> = stream::iter(entries)
        .map(|entry| {
            let tracker = &tracker;
            async move {
                let outcome = async {
                    let rel = export_path(&entry.key.as_bytes()[prefix.len()..])?;
                    let target = dest.join(rel);
                    if let Some(parent) = target.parent() {
                        tokio::fs::create_dir_all(parent).await?;
                    }
                    if entry.meta.size >= STREAM_FROM_BYTES {
                        return export_large(store, &entry.key, &target).await;
                    }
                    let value = store
                        .get(&entry.key)
                        .await?
                        .ok_or_else(|| Error::not_found("deleted during export"))?;
                    tokio::fs::write(&target, &value)
                        .await
                        .map_err(|e| Error::from(e).with_context("path", target.display()))?;
                    Ok::<_, Error>(value.len() as u64)
                }
                .await;
                on_progress(tracker.finish_one(entry.meta.size));
                outcome.map_err(|e| FileError {
                    path: entry.key.to_string(),
                    message: e.to_string(),
                })
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let mut report = TransferReport::default();
    report.absorb(results, started);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_paths_never_leave_the_destination() {
        for bad in [
            &b"../x"[..],
            b"a/../../x",
            b"/etc/passwd",
            b"a//b",
            b"a/./b",
            b"a\0b",
            b"",
            b"a/",
            b"\xff",
        ] {
            assert!(export_path(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            export_path(b"book/ch01.html").unwrap(),
            PathBuf::from("book/ch01.html")
        );
        assert_eq!(
            export_path(b"a..b/.hidden").unwrap(),
            PathBuf::from("a..b/.hidden")
        );
    }
}
