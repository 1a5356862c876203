//! Garbage collection: reclaims what nothing references, respects the grace period, keeps
//! every live value readable with concurrent writers and across a reopen.

use std::sync::Arc;
use std::time::Duration;

use hybridstore_core::{Bytes, Key, KvStore, WriteBatch};
use hybridstore_dedup::{DedupOptions, GcOptions};

/// `len` pseudo-random bytes (xorshift64 from `seed`): incompressible, so every chunk is new.
pub(crate) fn value(seed: u64, len: usize) -> Bytes {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    Bytes::from(out)
}

fn key(name: impl Into<String>) -> Key {
    Key::new(name.into()).unwrap()
}

fn no_grace() -> GcOptions {
    GcOptions::with_grace(Duration::ZERO)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_values_are_reclaimed_and_live_ones_stay() {
    let (store, _dir) = crate::file_backed(DedupOptions::default()).await;
    // Two packs: one written alone (to be deleted whole), one shared by two values.
    store.put(&key("gone"), value(1, 300_000)).await.unwrap();
    let mut batch = WriteBatch::new();
    batch.put(key("kept"), value(2, 200_000));
    batch.put(key("half"), value(3, 200_000));
    store.write_batch(batch).await.unwrap();
    let before = store.dedup_stats().await.unwrap();
    assert_eq!(before.packs, 2);
    assert_eq!(before.unreferenced_blob_bytes, 0);

    store.delete(&key("gone")).await.unwrap();
    store.delete(&key("half")).await.unwrap();
    // Inside the grace period nothing is swept.
    let report = store.collect_garbage(&GcOptions::default()).await.unwrap();
    assert_eq!(report.packs_in_grace, 2);
    assert_eq!(report.chunks_removed, 0);
    assert!(store.dedup_stats().await.unwrap().unreferenced_blob_bytes > 0);

    let report = store.collect_garbage(&no_grace()).await.unwrap();
    assert_eq!(report.packs_deleted, 1, "{report:?}");
    assert_eq!(report.packs_rewritten, 1, "{report:?}");
    assert!(report.bytes_freed > 450_000, "{report:?}");
    let after = store.dedup_stats().await.unwrap();
    assert_eq!(after.unreferenced_blob_bytes, 0);
    assert_eq!(after.packs, 1);
    assert!(after.pack_bytes < before.pack_bytes / 2);
    assert_eq!(
        store.get(&key("kept")).await.unwrap().unwrap(),
        value(2, 200_000)
    );
    // Collecting again finds nothing more.
    let again = store.collect_garbage(&no_grace()).await.unwrap();
    assert_eq!((again.packs_deleted, again.packs_rewritten), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reopened_store_rebuilds_its_index_from_the_packs() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = crate::open_file_backed(dir.path(), crate::small_chunks()).await;
        for i in 0..20 {
            store
                .put(&key(format!("v{i}")), value(i % 5, 5_000))
                .await
                .unwrap();
        }
        store.delete(&key("v0")).await.unwrap();
        store.delete(&key("v5")).await.unwrap();
        store.delete(&key("v10")).await.unwrap();
        store.delete(&key("v15")).await.unwrap(); // value(0, ..) is now unreferenced
        let report = store.collect_garbage(&no_grace()).await.unwrap();
        assert!(report.chunks_removed > 0, "{report:?}");
    }
    let store = crate::open_file_backed(dir.path(), crate::small_chunks()).await;
    assert!(store.chunk_store().open_report().damaged_packs.is_empty());
    for i in 0..20u64 {
        let got = store.get(&key(format!("v{i}"))).await.unwrap();
        if i % 5 == 0 {
            assert_eq!(got, None);
        } else {
            assert_eq!(got.unwrap(), value(i % 5, 5_000), "v{i}");
        }
    }
    let stats = store.dedup_stats().await.unwrap();
    assert_eq!(stats.unreferenced_blob_bytes, 0);
    assert_eq!(stats.missing_chunks, 0);
}

/// Writers that keep re-writing values whose chunks are garbage (the worst case: dedup against
/// a chunk the collector is about to sweep) while collections run back to back: every
/// acknowledged value must stay readable.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn collection_with_concurrent_writers_never_loses_a_chunk() {
    let (store, _dir) = crate::file_backed(crate::small_chunks()).await;
    let store = Arc::new(store);
    const ROUNDS: u64 = 30;
    const WRITERS: u64 = 4;
    let collector = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut removed = 0;
            for _ in 0..ROUNDS {
                removed += store
                    .collect_garbage(&no_grace())
                    .await
                    .unwrap()
                    .chunks_removed;
                tokio::task::yield_now().await;
            }
            removed
        })
    };
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                for round in 0..ROUNDS {
                    let k = key(format!("w{w}"));
                    // Alternate between two contents, so each put dedups against chunks the
                    // previous delete made garbage.
                    let v = value(w * 2 + round % 2, 3_000);
                    store.put(&k, v.clone()).await.unwrap();
                    assert_eq!(
                        store.get(&k).await.unwrap().unwrap(),
                        v,
                        "w{w} round {round}"
                    );
                    let scratch = key(format!("scratch{w}"));
                    store
                        .put(&scratch, value(w * 2 + (round + 1) % 2, 3_000))
                        .await
                        .unwrap();
                    store.delete(&scratch).await.unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    let removed = collector.await.unwrap();
    assert!(
        removed > 0,
        "the collector never removed anything; the test proves nothing"
    );
    for w in 0..WRITERS {
        let want = value(w * 2 + (ROUNDS - 1) % 2, 3_000);
        assert_eq!(
            store.get(&key(format!("w{w}"))).await.unwrap().unwrap(),
            want
        );
    }
    let stats = store.dedup_stats().await.unwrap();
    assert_eq!(stats.missing_chunks, 0);
}

/// A manifest that does not decode stops the collection before it deletes anything.
#[tokio::test]
async fn a_damaged_manifest_stops_collection() {
    let (store, _dir) = crate::file_backed(DedupOptions::default()).await;
    store.put(&key("a"), value(1, 100_000)).await.unwrap();
    store.put(&key("b"), value(2, 100_000)).await.unwrap();
    store
        .inner()
        .put(&key("b"), Bytes::from_static(b"garbage"))
        .await
        .unwrap();
    let err = store.collect_garbage(&no_grace()).await.unwrap_err();
    assert_eq!(err.kind(), hybridstore_core::ErrorKind::Corrupted);
    let stats = store.chunk_store().stats();
    assert_eq!(stats.packs, 2, "nothing may be deleted");
}
