//! Damage detection: one flipped byte in any stored chunk fails every value that uses it with
//! `Corrupted` (and only those), and `verify` names exactly those keys.

use std::collections::{BTreeMap, BTreeSet};

use hybridstore_core::verify::verify_store;
use hybridstore_core::{Bytes, ErrorKind, Key, KeyRange, KvStore};
use hybridstore_dedup::{ChunkId, DedupOptions, Manifest};

fn text(seed: u32, lines: u32) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..lines {
        let n = (i ^ seed).wrapping_mul(2_654_435_761);
        out.extend_from_slice(format!("{seed}:{i} <p>{n:x}</p>\n").as_bytes());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_in_any_chunk_fails_exactly_its_values() {
    let (store, _dir) = crate::file_backed(DedupOptions::default()).await;
    let a = text(1, 5000); // ~120 KB: several chunks
    let mut b = a.clone(); // shares most chunks with a
    b.splice(60_000..60_000, b"an edit".iter().copied());
    let values: BTreeMap<&str, Vec<u8>> = [
        ("a", a),
        ("b", b),
        ("c", text(2, 3000)),
        ("single", text(3, 300)), // one chunk
        ("tiny", b"inline".to_vec()),
    ]
    .into_iter()
    .collect();
    for (k, v) in &values {
        store
            .put(&Key::new(*k).unwrap(), Bytes::from(v.clone()))
            .await
            .unwrap();
    }
    // Which keys use which chunk.
    let mut users: BTreeMap<ChunkId, BTreeSet<&str>> = BTreeMap::new();
    for k in values.keys() {
        if let Some(Manifest::Chunked(list)) = store.manifest(&Key::new(*k).unwrap()).await.unwrap()
        {
            for (id, _) in list.chunks {
                users.entry(id).or_default().insert(*k);
            }
        }
    }
    assert!(users.len() >= 10, "only {} chunks", users.len());
    assert!(
        users.values().any(|u| u.len() > 1),
        "a and b should share chunks"
    );

    let backend = store.chunk_store().backend().clone();
    for (id, using) in &users {
        let (pack_key, range) = store.chunk_store().locate(id).expect("chunk is stored");
        let original = backend.get(&pack_key).await.unwrap().unwrap();
        // The blob's header byte and a byte in the middle of its payload.
        for at in [range.start, range.start + (range.end - range.start) / 2 + 2] {
            let mut damaged = original.to_vec();
            damaged[at as usize] ^= 0x40;
            backend.put(&pack_key, Bytes::from(damaged)).await.unwrap();
            for (k, v) in &values {
                let got = store.get(&Key::new(*k).unwrap()).await;
                if using.contains(k) {
                    let err = got.expect_err("damaged value was returned");
                    assert_eq!(err.kind(), ErrorKind::Corrupted, "{k}: {err}");
                } else {
                    assert_eq!(got.unwrap().unwrap(), Bytes::from(v.clone()), "{k}");
                }
            }
            let report = verify_store(&store, KeyRange::all(), 4, |_, _| {})
                .await
                .unwrap();
            let named: BTreeSet<&str> = report.damaged.iter().map(|d| d.key.as_str()).collect();
            let expected: BTreeSet<&str> = using.iter().copied().collect();
            assert_eq!(
                named, expected,
                "verify must name exactly the keys using chunk {id}"
            );
            assert!(report.damaged.iter().all(|d| d.kind == "corrupted"));
        }
        backend.put(&pack_key, original).await.unwrap();
    }
    let report = verify_store(&store, KeyRange::all(), 4, |_, _| {})
        .await
        .unwrap();
    assert!(report.is_clean(), "{:?}", report.damaged);
}

/// A manifest damaged in the manifest store reads as `Corrupted`, not as a value.
#[tokio::test]
async fn a_damaged_manifest_is_corrupted() {
    let (store, _dir) = crate::file_backed(DedupOptions::default()).await;
    let k = Key::new("doc").unwrap();
    store.put(&k, Bytes::from(text(9, 2000))).await.unwrap();
    let manifest = store.inner().get(&k).await.unwrap().unwrap();
    let mut damaged = manifest.to_vec();
    damaged[10] ^= 0x01; // inside the first chunk id
    store.inner().put(&k, Bytes::from(damaged)).await.unwrap();
    assert_eq!(
        store.get(&k).await.unwrap_err().kind(),
        ErrorKind::Corrupted
    );
    store
        .inner()
        .put(&k, Bytes::from_static(b"not a manifest"))
        .await
        .unwrap();
    assert_eq!(
        store.get(&k).await.unwrap_err().kind(),
        ErrorKind::Corrupted
    );
    assert_eq!(
        store.head(&k).await.unwrap_err().kind(),
        ErrorKind::Corrupted
    );
}

/// A pack whose index is damaged is reported at open, and its values read as `Corrupted`.
#[tokio::test]
async fn a_damaged_pack_index_is_reported_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let k = Key::new("doc").unwrap();
    let pack_key = {
        let store = crate::open_file_backed(dir.path(), DedupOptions::default()).await;
        store.put(&k, Bytes::from(text(5, 3000))).await.unwrap();
        let Some(Manifest::Chunked(list)) = store.manifest(&k).await.unwrap() else {
            panic!("chunked");
        };
        let (pack_key, _) = store.chunk_store().locate(&list.chunks[0].0).unwrap();
        let backend = store.chunk_store().backend().clone();
        let mut pack = backend.get(&pack_key).await.unwrap().unwrap().to_vec();
        let at = pack.len() - 20; // inside the index, before the footer
        pack[at] ^= 0x01;
        backend.put(&pack_key, Bytes::from(pack)).await.unwrap();
        pack_key
    };
    let store = crate::open_file_backed(dir.path(), DedupOptions::default()).await;
    let report = store.chunk_store().open_report();
    assert_eq!(report.damaged_packs.len(), 1);
    assert_eq!(report.damaged_packs[0].0, pack_key.to_string());
    assert_eq!(
        store.get(&k).await.unwrap_err().kind(),
        ErrorKind::Corrupted
    );
}

/// Two processes on the same manifests and packs (nodes of one S3 primary): a value the
/// other wrote after this one opened uses chunks this index has never seen. A shared chunk
/// store reloads the pack list and reads it; an unshared one reports the chunks missing
/// (`Corrupted`), as it must for real damage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_chunk_store_finds_chunks_another_process_wrote() {
    use hybridstore_core::MemoryStore;
    use hybridstore_dedup::DedupStore;
    use std::sync::Arc;

    let manifests: Arc<dyn KvStore> = Arc::new(MemoryStore::new());
    let packs: Arc<dyn KvStore> = Arc::new(MemoryStore::new());
    let open = || DedupStore::open(manifests.clone(), packs.clone(), DedupOptions::default());
    let (writer, shared, unshared) = (
        open().await.unwrap(),
        open().await.unwrap(),
        open().await.unwrap(),
    );
    shared.chunk_store().set_shared(true);
    let key = Key::new("written-later").unwrap();
    let value = Bytes::from(text(7, 8000)); // ~190 KB: several chunks in a new pack
    writer.put(&key, value.clone()).await.unwrap();

    assert_eq!(shared.get(&key).await.unwrap(), Some(value));
    assert_eq!(
        unshared.get(&key).await.unwrap_err().kind(),
        ErrorKind::Corrupted
    );
    // A chunk that is truly gone is still damage in a shared store: one reload, then
    // `Corrupted`.
    let gone = Key::new("gone").unwrap();
    writer.put(&gone, Bytes::from(text(8, 8000))).await.unwrap();
    for pack in packs.list_keys(KeyRange::all(), None).await.unwrap() {
        packs.delete(&pack).await.unwrap();
    }
    let fresh = open().await.unwrap();
    fresh.chunk_store().set_shared(true);
    assert_eq!(
        fresh.get(&gone).await.unwrap_err().kind(),
        ErrorKind::Corrupted
    );
}

/// A streamed read of a large value: a damaged chunk in the middle fails the stream with
/// `Corrupted` at that chunk; a manifest whose chunks do not add up to its checksum fails it
/// in place of the last chunk, so a reader that saw a clean end has the stored bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_read_never_ends_cleanly_on_damaged_bytes() {
    use futures::TryStreamExt;
    use hybridstore_core::MemoryStore;
    use hybridstore_dedup::{ChunkList, DedupStore};
    use std::sync::Arc;

    let manifests = Arc::new(MemoryStore::new());
    let packs: Arc<dyn KvStore> = Arc::new(MemoryStore::new());
    let store = DedupStore::open(manifests.clone(), packs.clone(), DedupOptions::default())
        .await
        .unwrap();
    let key = Key::new("large").unwrap();
    let value = Bytes::from(text(11, 40_000)); // ~1 MB: dozens of chunks
    store.put(&key, value.clone()).await.unwrap();
    let streamed = store
        .get_stream(&key, None)
        .await
        .unwrap()
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(streamed, value);

    // A manifest that lists the right chunks under a wrong whole-value checksum.
    let Some(Manifest::Chunked(list)) = store.manifest(&key).await.unwrap() else {
        panic!("a chunked manifest");
    };
    let chunks = list.chunks.len();
    assert!(chunks > 10, "{chunks} chunks");
    let forged = Manifest::encode_chunked(&ChunkList {
        checksum: hybridstore_core::Sha256Digest::of(b"something else"),
        ..list.clone()
    });
    let forged_key = Key::new("forged").unwrap();
    manifests
        .put(&forged_key, Bytes::from(forged))
        .await
        .unwrap();
    let mut body = store
        .get_stream(&forged_key, None)
        .await
        .unwrap()
        .unwrap()
        .body;
    let mut handed_out = 0usize;
    let err = loop {
        match body.try_next().await {
            Ok(Some(piece)) => handed_out += piece.len(),
            Ok(None) => panic!("a forged manifest streamed cleanly"),
            Err(e) => break e,
        }
    };
    assert_eq!(err.kind(), ErrorKind::Corrupted, "{err}");
    let last = list.chunks.last().unwrap().1 as usize;
    assert_eq!(
        handed_out,
        value.len() - last,
        "everything but the last chunk"
    );

    // A flipped byte in a chunk in the middle.
    let (middle, _) = list.chunks[chunks / 2];
    let (pack, range) = store.chunk_store().locate(&middle).unwrap();
    let mut bytes = packs.get(&pack).await.unwrap().unwrap().to_vec();
    bytes[(range.start + range.end) as usize / 2] ^= 0x01;
    packs.put(&pack, Bytes::from(bytes)).await.unwrap();
    let err = store
        .get_stream(&key, None)
        .await
        .unwrap()
        .unwrap()
        .collect()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupted, "{err}");
}
