//! FileStore's streaming reads and writes: values of many pieces, a stream's snapshot of the
//! version it began with, damage in the middle of a value, cancellation, and the gate.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures::StreamExt;
use hybridstore_core::{Bytes, ErrorKind, Key, KvStore, PutOptions, Sha256Digest, WriteBatch};
use hybridstore_file::{FileStore, STREAM_PIECE};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::oneshot;

use super::{key, walk_records};

/// Bytes that differ piece from piece.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    hybridstore_core::conformance::incompressible(len, seed).to_vec()
}

/// A reader that yields `prefix`, tells `reached` so, then waits for `go` before yielding
/// `rest` (or pends for ever if `go` is dropped unfired).
struct GatedReader {
    prefix: std::io::Cursor<Vec<u8>>,
    reached: Option<oneshot::Sender<()>>,
    go: oneshot::Receiver<()>,
    released: bool,
    rest: std::io::Cursor<Vec<u8>>,
}

impl GatedReader {
    fn new(
        prefix: Vec<u8>,
        rest: Vec<u8>,
    ) -> (GatedReader, oneshot::Receiver<()>, oneshot::Sender<()>) {
        let (reached_tx, reached_rx) = oneshot::channel();
        let (go_tx, go_rx) = oneshot::channel();
        let reader = GatedReader {
            prefix: std::io::Cursor::new(prefix),
            reached: Some(reached_tx),
            go: go_rx,
            released: false,
            rest: std::io::Cursor::new(rest),
        };
        (reader, reached_rx, go_tx)
    }
}

impl AsyncRead for GatedReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if (self.prefix.position() as usize) < self.prefix.get_ref().len() {
            return Pin::new(&mut self.prefix).poll_read(cx, buf);
        }
        if let Some(reached) = self.reached.take() {
            let _ = reached.send(());
        }
        if !self.released {
            match Pin::new(&mut self.go).poll(cx) {
                Poll::Ready(Ok(())) => self.released = true,
                Poll::Ready(Err(_)) | Poll::Pending => return Poll::Pending,
            }
        }
        Pin::new(&mut self.rest).poll_read(cx, buf)
    }
}

use std::future::Future;

fn temp_files(root: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(".tmp."))
            {
                found.push(path);
            }
        }
    }
    found
}

async fn read_all(store: &FileStore, k: &Key, range: Option<std::ops::Range<u64>>) -> Vec<u8> {
    let stream = store.get_stream(k, range).await.unwrap().unwrap();
    let len = stream.len;
    let mut body = stream.body;
    let mut out = Vec::new();
    while let Some(piece) = body.next().await {
        let piece = piece.unwrap();
        assert!(
            piece.len() <= STREAM_PIECE,
            "a piece of {} bytes",
            piece.len()
        );
        out.extend_from_slice(&piece);
    }
    assert_eq!(out.len() as u64, len, "the stream yields what it announced");
    out
}

/// Values around the piece size go in through `put_stream` and come back through
/// `get_stream` (whole and in ranges that cross pieces) exactly as `put` and `get` store and
/// read them, with the same metadata.
#[tokio::test]
async fn values_of_many_pieces_stream_in_and_out() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).await.unwrap();
    for (i, len) in [
        0,
        1,
        STREAM_PIECE - 1,
        STREAM_PIECE,
        STREAM_PIECE + 1,
        3 * STREAM_PIECE + 17,
    ]
    .into_iter()
    .enumerate()
    {
        let value = pattern(len, i as u64 + 1);
        let k = key(&format!("v{i}"));
        let options = PutOptions::with_content_type("application/x-test");
        let meta = store
            .put_stream(&k, &mut std::io::Cursor::new(value.clone()), &options)
            .await
            .unwrap();
        assert_eq!(meta.size, len as u64);
        assert_eq!(meta.checksum, Sha256Digest::of(&value));
        assert_eq!(store.head(&k).await.unwrap(), Some(meta));
        assert_eq!(store.get(&k).await.unwrap().as_deref(), Some(&value[..]));
        assert_eq!(read_all(&store, &k, None).await, value);
        if len > 2 {
            let (a, b) = (len as u64 / 3, len as u64 - 1);
            assert_eq!(
                read_all(&store, &k, Some(a..b)).await,
                &value[a as usize..b as usize]
            );
        }
    }
    // The creation time survives a streamed overwrite, as it does a put.
    let k = key("v1");
    let before = store.head(&k).await.unwrap().unwrap();
    let after = store
        .put_stream(&k, &mut &b"new"[..], &PutOptions::default())
        .await
        .unwrap();
    assert_eq!(after.created, before.created);
    assert!(temp_files(dir.path()).is_empty());
}

/// A stream that began before an overwrite and a delete of its key still yields the version
/// it began with, whole and verified.
#[tokio::test]
async fn a_stream_yields_the_version_it_began_with() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).await.unwrap();
    let k = key("snapshot");
    let old = pattern(4 * STREAM_PIECE, 3);
    store.put(&k, Bytes::from(old.clone())).await.unwrap();
    let mut stream = store.get_stream(&k, None).await.unwrap().unwrap();
    let mut out = stream.body.next().await.unwrap().unwrap().to_vec();
    store
        .put(&k, Bytes::from(pattern(4 * STREAM_PIECE, 4)))
        .await
        .unwrap();
    store.delete(&k).await.unwrap();
    while let Some(piece) = stream.body.next().await {
        out.extend_from_slice(&piece.unwrap());
    }
    assert!(out == old, "the stream mixed versions");
    assert_eq!(store.get(&k).await.unwrap(), None);
}

/// A byte flipped in the middle of a large value: the stream never ends cleanly; it fails
/// with `Corrupted` in place of its last piece at the latest, so no reader takes the wrong
/// bytes for the value. A range is checked as `get_range` is (its length, not the checksum).
#[tokio::test]
async fn damage_in_the_middle_fails_the_stream_before_its_end() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).await.unwrap();
    let k = key("victim");
    let value = pattern(5 * STREAM_PIECE, 5);
    store.put(&k, Bytes::from(value.clone())).await.unwrap();
    let path = walk_records(dir.path()).pop().unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    let stream = store.get_stream(&k, None).await.unwrap().unwrap();
    let mut body = stream.body;
    let mut yielded = 0usize;
    let mut failure = None;
    while let Some(piece) = body.next().await {
        match piece {
            Ok(p) => yielded += p.len(),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    let failure = failure.expect("a damaged value streamed out cleanly");
    assert_eq!(failure.kind(), ErrorKind::Corrupted, "{failure}");
    assert!(yielded < value.len(), "all {yielded} bytes were handed out");
    // Truncation is caught before the stream starts.
    std::fs::write(&path, &bytes[..bytes.len() - 10]).unwrap();
    let err = store
        .get_stream(&k, None)
        .await
        .expect_err("a truncated record streamed");
    assert_eq!(err.kind(), ErrorKind::Corrupted);
}

/// A streamed put dropped part-way, while its reader waits, leaves the old value and no
/// temporary file once its blocking work has finished (the runtime's shutdown waits for it),
/// and does not hold up a later put of the same key.
#[test]
fn a_dropped_streamed_put_leaves_the_old_value_and_no_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    let k = key("cancelled");
    let old = pattern(1000, 6);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let store = FileStore::open(dir.path()).await.unwrap();
        store.put(&k, Bytes::from(old.clone())).await.unwrap();
        let (mut reader, reached, go) = GatedReader::new(pattern(3 * STREAM_PIECE, 7), Vec::new());
        {
            let options = PutOptions::default();
            let put = store.put_stream(&k, &mut reader, &options);
            tokio::pin!(put);
            tokio::select! {
                r = &mut put => panic!("the put finished while its reader waited: {r:?}"),
                _ = reached => {}
            }
        } // the put's future is dropped here
        drop(go);
        assert_eq!(store.get(&k).await.unwrap().as_deref(), Some(&old[..]));
        // A later write of the key is not held up by the abandoned one.
        store.put(&k, Bytes::from_static(b"later")).await.unwrap();
        assert_eq!(store.get(&k).await.unwrap().as_deref(), Some(&b"later"[..]));
    });
    drop(runtime); // waits for the blocking pool's tasks
    assert_eq!(temp_files(dir.path()), Vec::<std::path::PathBuf>::new());
}

/// While a streamed put waits on its reader it holds only its place in its key's order: a
/// write batch of other keys completes meanwhile, and the put completes once the reader goes
/// on, with the whole value.
#[tokio::test]
async fn a_streamed_put_waiting_on_its_reader_does_not_block_batches() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).await.unwrap();
    let prefix = pattern(2 * STREAM_PIECE, 8);
    let rest = pattern(STREAM_PIECE / 2, 9);
    let (mut reader, reached, go) = GatedReader::new(prefix.clone(), rest.clone());
    let k = key("slow");
    let options = PutOptions::default();
    let put = store.put_stream(&k, &mut reader, &options);
    tokio::pin!(put);
    tokio::select! {
        r = &mut put => panic!("the put finished while its reader waited: {r:?}"),
        _ = reached => {}
    }
    let mut batch = WriteBatch::new();
    batch.put(key("other/a"), Bytes::from_static(b"a"));
    batch.put(key("other/b"), Bytes::from_static(b"b"));
    // A bound on failure, not synchronisation: the batch must not wait for the put.
    tokio::select! {
        r = store.write_batch(batch) => r.unwrap(),
        _ = tokio::time::sleep(std::time::Duration::from_secs(30)) => {
            panic!("a write batch waited for a streamed put of another key")
        }
    }
    assert_eq!(
        store.get(&k).await.unwrap(),
        None,
        "the put is not visible before its end"
    );
    go.send(()).unwrap();
    let meta = put.await.unwrap();
    let whole = [prefix, rest].concat();
    assert_eq!(meta.checksum, Sha256Digest::of(&whole));
    assert_eq!(store.get(&k).await.unwrap().as_deref(), Some(&whole[..]));
}
