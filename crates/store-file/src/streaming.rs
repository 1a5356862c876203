//! Streaming reads and writes of one record, in pieces of [`STREAM_PIECE`] bytes, for values
//! too large to hold in memory.
//!
//! **Reads.** The record is opened and its header and length checked under the shared gate;
//! from then on the stream reads through its own descriptor, so it yields the version that
//! was current when it began even if a later put renames a new record over it or a delete
//! unlinks it (POSIX keeps an unlinked file's data while a descriptor is open). Each piece is
//! read with a positioned read (and, for a whole value with `verify_reads`, hashed) on the
//! blocking pool, one piece ahead of the consumer; the last piece is handed out only after
//! the whole value's SHA-256 matched the header's, else the stream ends with `Corrupted` in
//! its place.
//!
//! **Writes.** A streamed put takes its place in the key's write order at its first poll,
//! then writes a temporary record beside the target: a placeholder header, the value piece
//! by piece (hashed as it goes, one piece written while the next is read), `fsync`. Only the
//! commit takes the shared gate: it writes the real header (size, SHA-256, times; the
//! creation time kept from the old record), syncs it, renames the file over the target and
//! syncs the directory, the same protocol as a whole-value put. A put that fails or is
//! dropped before the commit removes its temporary file (`tempfile`'s guard, and the next
//! open's sweep after a crash) and leaves the key as it was.

use std::io::Write;
use std::ops::Range;
use std::os::unix::fs::FileExt;

use hybridstore_core::{Sha256Digest, ValueReader, ValueStream};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;
use tokio::task::JoinHandle;

use super::*;

/// Bytes per piece of a streaming read or write: 1 MiB, so a stream holds at most a few MiB
/// (the piece being consumed, the one read ahead) however large the value.
pub const STREAM_PIECE: usize = 1 << 20;

/// Where a streaming read stands.
pub(crate) struct ReadState {
    file: Arc<File>,
    path: PathBuf,
    /// Offset of the value's first byte in the file.
    value_at: u64,
    /// Next byte of the value to read, and the end of what the stream yields.
    pos: u64,
    end: u64,
    /// The running SHA-256 of a whole-value read that is verified, and the header's.
    verify: Option<(Sha256, Sha256Digest)>,
}

/// Opens `key`'s record for a stream of `range` (the whole value for `None`), checking the
/// header, the file's length and the range before the first byte is read.
pub(crate) fn open_stream_blocking(
    objects: &Path,
    key: &Key,
    range: Option<Range<u64>>,
    verify: bool,
) -> Result<Option<(u64, ReadState)>> {
    let path = layout::record_path(objects, key);
    let Some((file, header)) = open_record(&path, key)? else {
        return Ok(None);
    };
    record::check_length(&file, &header).map_err(|e| e.with_context("path", path.display()))?;
    let size = header.meta.size;
    let (pos, end, verify) = match range {
        Some(r) => {
            hybridstore_core::raw::check_range(&r, size)?;
            (r.start, r.end, None)
        }
        None => (
            0,
            size,
            verify.then(|| (Sha256::new(), header.meta.checksum)),
        ),
    };
    Ok(Some((
        end - pos,
        ReadState {
            file: Arc::new(file),
            path,
            value_at: header.header_len,
            pos,
            end,
            verify,
        },
    )))
}

/// Reads the next piece (and, at the end of a verified read, checks the checksum).
fn read_piece(mut state: ReadState) -> Result<(ReadState, Bytes)> {
    let len = (state.end - state.pos).min(STREAM_PIECE as u64) as usize;
    let mut buf = vec![0u8; len];
    state
        .file
        .read_exact_at(&mut buf, state.value_at + state.pos)
        .map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                Error::corrupted("record was truncated while it was read")
                    .with_context("path", state.path.display())
            } else {
                io_err(e, &state.path)
            }
        })?;
    state.pos += len as u64;
    if let Some((hasher, _)) = &mut state.verify {
        hasher.update(&buf);
    }
    if state.pos == state.end
        && let Some((hasher, want)) = state.verify.take()
        && Sha256Digest(hasher.finalize().into()) != want
    {
        return Err(
            Error::corrupted("value does not match its SHA-256 checksum")
                .with_context("path", state.path.display()),
        );
    }
    Ok((state, Bytes::from(buf)))
}

fn spawn_read(state: ReadState) -> JoinHandle<Result<(ReadState, Bytes)>> {
    tokio::task::spawn_blocking(move || read_piece(state))
}

async fn joined<T>(handle: JoinHandle<Result<T>>) -> Result<T> {
    handle
        .await
        .map_err(|e| Error::backend(format!("file store worker failed: {e}")))?
}

/// The stream of an opened record: one piece read ahead on the blocking pool.
pub(crate) fn read_stream(len: u64, state: ReadState) -> ValueStream<'static> {
    let first = (state.pos < state.end).then(|| spawn_read(state));
    let body = futures::stream::unfold(first, |pending| async move {
        let (state, piece) = match joined(pending?).await {
            Ok(done) => done,
            Err(e) => return Some((Err(e), None)),
        };
        let next = (state.pos < state.end).then(|| spawn_read(state));
        Some((Ok(piece), next))
    });
    ValueStream {
        len,
        body: body.boxed(),
    }
}

/// A piece being written on the blocking pool: the staged record and the buffer, back.
type PendingWrite = JoinHandle<Result<(Staged, Vec<u8>)>>;

/// A record being written: its temporary file (removed if dropped before the commit), the
/// running SHA-256 and the bytes written so far.
pub(crate) struct Staged {
    temp: tempfile::NamedTempFile,
    hasher: Sha256,
    size: u64,
    header_len: u64,
}

/// Creates the temporary record for `key` with a placeholder header of the real header's
/// length (the key and content type fix it).
pub(crate) fn stage_stream_blocking(
    objects: &Path,
    key: &Key,
    options: &PutOptions,
) -> Result<Staged> {
    let target = layout::record_path(objects, key);
    let dir = parent(&target)?;
    ensure_dir(objects, dir)?;
    let mut temp = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .tempfile_in(dir)
        .map_err(|e| io_err(e, dir))?;
    let header_len = record::header_len(key, options.content_type.as_deref());
    temp.as_file_mut()
        .write_all(&vec![0u8; header_len])
        .map_err(|e| io_err(e, temp.path()))?;
    Ok(Staged {
        temp,
        hasher: Sha256::new(),
        size: 0,
        header_len: header_len as u64,
    })
}

fn append(mut staged: Staged, buf: Vec<u8>, len: usize) -> Result<(Staged, Vec<u8>)> {
    staged
        .temp
        .as_file_mut()
        .write_all(&buf[..len])
        .map_err(|e| io_err(e, staged.temp.path()))?;
    staged.hasher.update(&buf[..len]);
    staged.size += len as u64;
    Ok((staged, buf))
}

/// Fills `buf` from `reader` until it is full or the reader ends; the bytes read.
async fn fill(reader: &mut ValueReader<'_>, buf: &mut [u8]) -> Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        let n = reader.read(&mut buf[filled..]).await.map_err(|e| {
            Error::new(
                ErrorKind::Unavailable,
                format!("reading the value to store failed: {e}"),
            )
        })?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    Ok(filled)
}

/// Copies `reader` into `staged` to its end, writing one piece on the blocking pool while the
/// next is read, and syncs the file's data.
pub(crate) async fn copy_into(mut reader: ValueReader<'_>, staged: Staged) -> Result<Staged> {
    let mut staged = Some(staged);
    let mut pending: Option<PendingWrite> = None;
    let mut buf = vec![0u8; STREAM_PIECE];
    let mut spare = vec![0u8; STREAM_PIECE];
    loop {
        let n = fill(&mut reader, &mut buf).await?;
        if let Some(write) = pending.take() {
            let (done, returned) = joined(write).await?;
            staged = Some(done);
            spare = returned;
        }
        if n == 0 {
            break;
        }
        let Some(s) = staged.take() else {
            return Err(Error::backend("a streamed put lost its temporary file"));
        };
        pending = Some(tokio::task::spawn_blocking(move || append(s, buf, n)));
        // The buffer the previous write gave back (full size: it was filled before).
        buf = std::mem::take(&mut spare);
    }
    let Some(staged) = staged else {
        return Err(Error::backend("a streamed put lost its temporary file"));
    };
    // The data's flush, the long part, happens before the commit takes the gate.
    joined(tokio::task::spawn_blocking(move || {
        staged
            .temp
            .as_file()
            .sync_data()
            .map_err(|e| io_err(e, staged.temp.path()))?;
        Ok(staged)
    }))
    .await
}

/// The commit of a streamed put, under the gate: the real header, synced, renamed over the
/// target, the directory synced.
pub(crate) fn commit_stream_blocking(
    objects: &Path,
    key: &Key,
    staged: Staged,
    options: &PutOptions,
) -> Result<ObjectMeta> {
    let target = layout::record_path(objects, key);
    let now = std::time::SystemTime::now();
    let meta = ObjectMeta {
        size: staged.size,
        created: options
            .created
            .or(previous_created(&target, key))
            .unwrap_or(now),
        modified: options.modified.unwrap_or(now),
        checksum: Sha256Digest(staged.hasher.finalize().into()),
        content_type: options.content_type.clone(),
        dedup_hash: None,
    };
    let header = record::encode_header(key, &meta);
    if header.len() as u64 != staged.header_len {
        return Err(Error::backend(
            "a streamed record's header changed length between its start and its commit",
        ));
    }
    let file = staged.temp.as_file();
    file.write_all_at(&header, 0)
        .and_then(|()| file.sync_all())
        .map_err(|e| io_err(e, staged.temp.path()))?;
    staged
        .temp
        .persist(&target)
        .map_err(|e| io_err(e.error, &target))?;
    fsync_dir(parent(&target)?)?;
    Ok(meta)
}
