//! Chunking properties: lossless, bounded, deterministic, and the same on a slice and a stream.

use futures::TryStreamExt;
use hybridstore_core::{Bytes, Key, KvStore, MemoryStore, PutOptions, Sha256Digest};
use hybridstore_dedup::{ChunkerConfig, DedupStore, Manifest};
use proptest::prelude::*;
use std::sync::Arc;

const SMALL: ChunkerConfig = ChunkerConfig {
    min_size: 64,
    avg_size: 256,
    max_size: 1024,
};

/// Bytes with long repeats (so content-defined cuts matter) and random stretches.
fn data_strategy() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..2000),
            (any::<u8>(), 0usize..3000).prop_map(|(b, n)| vec![b; n]),
            (0usize..40).prop_map(|n| b"<div class=\"item\">text</div>\n".repeat(n)),
        ],
        0..12,
    )
    .prop_map(|parts| parts.concat())
}

fn stream_spans(config: &ChunkerConfig, data: &[u8]) -> Vec<(usize, Vec<u8>)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        config
            .stream(data)
            .map_ok(|(offset, bytes)| (offset as usize, bytes))
            .try_collect()
            .await
            .unwrap()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn chunks_reassemble_stay_in_bounds_and_are_deterministic(data in data_strategy()) {
        for config in [SMALL, ChunkerConfig::default()] {
            let spans: Vec<_> = config.spans(&data).collect();
            // Lossless and contiguous.
            let mut next = 0;
            let mut rebuilt = Vec::with_capacity(data.len());
            for &(offset, len) in &spans {
                prop_assert_eq!(offset, next);
                rebuilt.extend_from_slice(&data[offset..offset + len]);
                next = offset + len;
            }
            prop_assert_eq!(&rebuilt, &data);
            // Bounded: every chunk at most max; all but the last at least min.
            for (i, &(_, len)) in spans.iter().enumerate() {
                prop_assert!(len <= config.max_size, "chunk {} is {} bytes", i, len);
                prop_assert!(len > 0);
                if i + 1 < spans.len() {
                    prop_assert!(len >= config.min_size, "chunk {} is {} bytes", i, len);
                }
            }
            // Deterministic ids.
            let ids = |spans: &[(usize, usize)]| -> Vec<Sha256Digest> {
                spans.iter().map(|&(o, l)| Sha256Digest::of(&data[o..o + l])).collect()
            };
            let again: Vec<_> = config.spans(&data).collect();
            prop_assert_eq!(ids(&spans), ids(&again));
            // The streaming chunker cuts at the same points.
            let streamed = stream_spans(&config, &data);
            let streamed_spans: Vec<_> = streamed.iter().map(|(o, b)| (*o, b.len())).collect();
            prop_assert_eq!(&spans, &streamed_spans);
        }
    }

    #[test]
    fn put_reader_equals_put(data in data_strategy()) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async {
            let store = DedupStore::open(MemoryStore::new(), Arc::new(MemoryStore::new()), crate::small_chunks())
                .await
                .unwrap();
            let (a, b) = (Key::new("a").unwrap(), Key::new("b").unwrap());
            let meta_a = store.put(&a, Bytes::from(data.clone())).await.unwrap();
            let meta_b = store.put_reader(&b, &data[..], &PutOptions::default()).await.unwrap();
            assert_eq!(meta_a.size, meta_b.size);
            assert_eq!(meta_a.checksum, meta_b.checksum);
            assert_eq!(meta_a.dedup_hash, meta_b.dedup_hash, "same manifest either way");
            assert_eq!(store.get(&b).await.unwrap().unwrap(), Bytes::from(data.clone()));
            assert_eq!(store.manifest(&a).await.unwrap(), store.manifest(&b).await.unwrap());
        });
    }
}

/// An edit in the middle of a large value leaves most chunks shared: the point of CDC.
#[tokio::test]
async fn an_insertion_changes_few_chunks() {
    let store = DedupStore::open(
        MemoryStore::new(),
        Arc::new(MemoryStore::new()),
        hybridstore_dedup::DedupOptions::default(),
    )
    .await
    .unwrap();
    let mut text = Vec::new();
    for i in 0..40_000u32 {
        text.extend_from_slice(format!("line {i}: {}\n", i.wrapping_mul(2_654_435_761)).as_bytes());
    }
    let mut edited = text.clone();
    edited.splice(400_000..400_000, b"AN INSERTED SENTENCE. ".iter().copied());
    store
        .put(&Key::new("v1").unwrap(), Bytes::from(text))
        .await
        .unwrap();
    store
        .put(&Key::new("v2").unwrap(), Bytes::from(edited))
        .await
        .unwrap();
    let ids = |m: Option<Manifest>| match m.unwrap() {
        Manifest::Chunked(list) => list
            .chunks
            .into_iter()
            .map(|(id, _)| id)
            .collect::<Vec<_>>(),
        Manifest::Inline(_) => panic!("large value inline"),
    };
    let v1 = ids(store.manifest(&Key::new("v1").unwrap()).await.unwrap());
    let v2 = ids(store.manifest(&Key::new("v2").unwrap()).await.unwrap());
    let shared = v2.iter().filter(|id| v1.contains(id)).count();
    assert!(v1.len() > 40, "expected many chunks, got {}", v1.len());
    assert!(
        v2.len() - shared <= 3,
        "an insertion should change at most a few chunks; {} of {} are new",
        v2.len() - shared,
        v2.len()
    );
    let stats = store.dedup_stats().await.unwrap();
    assert!(stats.dedup_ratio > 1.9, "dedup ratio {}", stats.dedup_ratio);
}
