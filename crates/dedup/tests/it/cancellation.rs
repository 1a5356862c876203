//! Issue 15 regressions: cancelled writes against garbage collection, lengths a damaged
//! manifest claims, and CPU work kept off the async workers.

use std::sync::Arc;
use std::time::Duration;

use hybridstore_core::fault::PausingStore;
use hybridstore_core::{Bytes, ErrorKind, Key, KvStore, MemoryStore, Sha256Digest};
use hybridstore_dedup::{ChunkList, DedupOptions, DedupStore, GcOptions, Manifest};

fn key(name: &str) -> Key {
    Key::new(name.to_string()).unwrap()
}

/// Regression (defect 1): a put dropped while its manifest write went on released the writer
/// guard at once, so a collection could mark without that manifest and sweep the chunks it
/// was about to reference: the acknowledged-later value read as `Corrupted`. Now the manifest
/// write finishes holding the guard, and the collection waits for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_put_never_loses_its_chunks_to_a_collection() {
    let manifests = PausingStore::new(MemoryStore::new());
    let k = key("big");
    let pause = manifests.pause_next_put(&k);
    let store = Arc::new(
        DedupStore::open(
            manifests,
            Arc::new(MemoryStore::new()),
            DedupOptions::default(),
        )
        .await
        .unwrap(),
    );
    let value = crate::gc::value(7, 600_000);
    let mut put = Box::pin(store.put(&k, value.clone()));
    tokio::select! {
        _ = &mut put => panic!("the paused put returned"),
        reached = pause.reached => reached.unwrap(),
    }
    // The chunks are durable in their pack; the manifest write is in flight. The caller
    // gives up.
    drop(put);
    let mut gc = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .collect_garbage(&GcOptions::with_grace(Duration::ZERO))
                .await
        })
    };
    // A collection that does not wait for the manifest finishes within this bound (it has
    // one pack to sweep); one that waits cannot finish before the resume below.
    let early = tokio::time::timeout(Duration::from_millis(500), &mut gc).await;
    pause.resume.send(()).unwrap();
    pause.landed.await.unwrap();
    let report = match early {
        Ok(done) => done.unwrap().unwrap(),
        Err(_) => gc.await.unwrap().unwrap(),
    };
    assert_eq!(report.packs_deleted, 0, "{report:?}");
    assert_eq!(store.get(&k).await.unwrap(), Some(value));
}

/// Regression (defect 4): a manifest that is self-consistent (its chunk lengths add up to its
/// total) but claims a terabyte sized the reassembly buffer before any chunk was read, which
/// aborts the process. Now chunk lengths above the largest chunk are damage, and the buffer
/// grows only with real chunks.
#[tokio::test]
async fn a_manifest_claiming_a_terabyte_is_corrupted_not_an_abort() {
    let manifests = MemoryStore::new();
    let chunk = Sha256Digest::of(b"nothing");
    let list = ChunkList {
        total_len: 256 * u64::from(u32::MAX),
        chunks: vec![(chunk, u32::MAX); 256],
        checksum: Sha256Digest::of(b"whatever"),
    };
    manifests
        .put(&key("huge"), Bytes::from(Manifest::encode_chunked(&list)))
        .await
        .unwrap();
    let store = DedupStore::open(
        manifests,
        Arc::new(MemoryStore::new()),
        DedupOptions::default(),
    )
    .await
    .unwrap();
    let err = store.get(&key("huge")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupted, "{err}");
}

/// Pieces of CPU work `op` handed to the blocking pool (`spawn_cpu`, one task per core),
/// instead of running them on the async worker. Counted where the work is handed off, so the
/// figure does not depend on how the scheduler interleaves another task meanwhile (a ticker
/// task's count did, and read 0 under CPU load from elsewhere).
async fn handed_off_during<F: std::future::Future>(op: F) -> (u64, F::Output) {
    let before = hybridstore_core::raw::cpu_tasks_handed_off();
    let out = op.await;
    (hybridstore_core::raw::cpu_tasks_handed_off() - before, out)
}

/// Regression (defect 6): encoding a value under 128 KiB, hashing and compressing streamed
/// chunks, decoding chunks and the whole-value SHA-256 on read all ran on the async worker.
/// Each must now hand at least [`FREE`] pieces of work to the blocking pool (a chunk of
/// 16 KiB or more, the whole-value hash); the old code handed off one (a put's pack flush)
/// or none (a get).
const FREE: u64 = 2;

#[tokio::test(flavor = "current_thread")]
async fn dedup_cpu_work_leaves_the_async_worker_free() {
    let store = DedupStore::open(
        MemoryStore::new(),
        Arc::new(MemoryStore::new()),
        DedupOptions::default(),
    )
    .await
    .unwrap();
    // Below the old 128 KiB inline-encoding threshold; several chunks.
    let small = crate::gc::value(1, 100_000);
    let (n, put) = handed_off_during(store.put(&key("small"), small.clone())).await;
    put.unwrap();
    assert!(n >= FREE, "put of 100 KB: {n} pieces of work handed off");

    let streamed = crate::gc::value(2, 3_000_000);
    let (n, put) =
        handed_off_during(store.put_reader(&key("streamed"), &streamed[..], &Default::default()))
            .await;
    put.unwrap();
    assert!(
        n >= FREE,
        "put_reader of 3 MB: {n} pieces of work handed off"
    );

    let (n, got) = handed_off_during(store.get(&key("streamed"))).await;
    assert_eq!(got.unwrap(), Some(streamed));
    assert!(n >= FREE, "get of 3 MB: {n} pieces of work handed off");
    let (n, got) = handed_off_during(store.get(&key("small"))).await;
    assert_eq!(got.unwrap(), Some(small));
    assert!(n >= FREE, "get of 100 KB: {n} pieces of work handed off");
}
