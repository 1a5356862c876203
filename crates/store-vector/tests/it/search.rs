//! k-NN against brute force for each distance, TTL, bi-temporal ranges, text and hybrid
//! search.

use hybridstore_core::vector::{
    CollectionSpec, Distance, FieldValue, Filter, VectorQuery, VectorRecord, VectorStore,
};
use hybridstore_vector::{HybridQuery, IndexSpec, TextQuery};

use crate::support::{Rng, distance, store};

#[tokio::test]
async fn flat_search_is_exact_for_every_distance() {
    for d in [Distance::Cosine, Distance::L2, Distance::Dot] {
        let (_dir, store) = store().await;
        store
            .create_collection(&CollectionSpec::new("v", 16, d))
            .await
            .unwrap();
        let mut rng = Rng::new(7);
        let data: Vec<Vec<f32>> = (0..200).map(|_| rng.vector(16)).collect();
        let records = data
            .iter()
            .enumerate()
            .map(|(i, v)| VectorRecord::new(format!("{i}"), v.clone()))
            .collect();
        store.add("v", records).await.unwrap();
        for _ in 0..5 {
            let q = rng.vector(16);
            let hits = store
                .search("v", &VectorQuery::new(q.clone(), 10))
                .await
                .unwrap();
            let mut exact: Vec<(f32, usize)> = data
                .iter()
                .enumerate()
                .map(|(i, v)| (distance(d, &q, v), i))
                .collect();
            exact.sort_by(|a, b| a.0.total_cmp(&b.0));
            let want: Vec<String> = exact.iter().take(10).map(|(_, i)| i.to_string()).collect();
            let got: Vec<String> = hits.iter().map(|h| h.id.clone()).collect();
            assert_eq!(got, want, "{d:?}");
            assert!(
                hits.windows(2).all(|w| w[0].score >= w[1].score),
                "closest first"
            );
        }
    }
}

#[tokio::test]
async fn expired_records_are_invisible_and_purged() {
    let (_dir, store) = store().await;
    store
        .create_collection(&CollectionSpec::new("v", 2, Distance::L2))
        .await
        .unwrap();
    let mut live = VectorRecord::new("live", vec![0.0, 1.0]);
    live.expires_at_us = Some(i64::MAX);
    let mut gone = VectorRecord::new("gone", vec![0.0, 1.0]);
    gone.expires_at_us = Some(1);
    let forever = VectorRecord::new("forever", vec![0.0, 2.0]);
    store.add("v", vec![live, gone, forever]).await.unwrap();
    let hits = store
        .search("v", &VectorQuery::new(vec![0.0, 1.0], 10))
        .await
        .unwrap();
    let mut got: Vec<_> = hits.into_iter().map(|h| h.id).collect();
    got.sort();
    assert_eq!(got, vec!["forever", "live"]);
    assert_eq!(
        store.count("v", None).await.unwrap(),
        3,
        "still stored until purged"
    );
    assert_eq!(store.purge_expired("v").await.unwrap(), 1);
    assert_eq!(store.count("v", None).await.unwrap(), 2);
}

#[tokio::test]
async fn bi_temporal_ranges_filter_event_and_ingestion_time() {
    let (_dir, store) = store().await;
    store
        .create_collection(&CollectionSpec::new("v", 2, Distance::L2))
        .await
        .unwrap();
    let at = |id: &str, t: i64| {
        let mut r = VectorRecord::new(id, vec![1.0, 0.0]);
        r.event_time_us = Some(t);
        r
    };
    store
        .add("v", vec![at("early", 100), at("mid", 200)])
        .await
        .unwrap();
    let first = store.get("v", &["early".into()]).await.unwrap()[0]
        .ingestion_time_us
        .unwrap();
    store.add("v", vec![at("late", 300)]).await.unwrap();
    let q = |f: Filter| VectorQuery::new(vec![1.0, 0.0], 10).with_filter(f);
    let ids = |hits: Vec<hybridstore_core::vector::SearchHit>| {
        let mut v: Vec<_> = hits.into_iter().map(|h| h.id).collect();
        v.sort();
        v
    };
    let events = store
        .search(
            "v",
            &q(Filter::range(
                "event_time",
                FieldValue::Timestamp(150),
                FieldValue::Timestamp(301),
            )),
        )
        .await
        .unwrap();
    assert_eq!(ids(events), vec!["late", "mid"]);
    let ingested = store
        .search(
            "v",
            &q(Filter::le("ingestion_time", FieldValue::Timestamp(first))),
        )
        .await
        .unwrap();
    assert_eq!(ids(ingested), vec!["early", "mid"]);
}

#[tokio::test]
async fn text_and_hybrid_search_need_and_use_the_full_text_index() {
    let (_dir, store) = store().await;
    store
        .create_collection(&CollectionSpec::new("p", 3, Distance::Cosine))
        .await
        .unwrap();
    let texts = [
        (
            "borrow",
            "The borrow checker enforces lifetimes of references",
            [1.0, 0.0, 0.0],
        ),
        (
            "traits",
            "Traits define shared behaviour across types",
            [0.0, 1.0, 0.0],
        ),
        (
            "lifetimes",
            "Lifetime annotations relate the lifetimes of references",
            [0.9, 0.1, 0.0],
        ),
        (
            "cargo",
            "Cargo builds packages and resolves dependencies",
            [0.0, 0.0, 1.0],
        ),
    ];
    store
        .add(
            "p",
            texts
                .iter()
                .map(|(id, text, v)| VectorRecord::new(*id, v.to_vec()).with_text(*text))
                .collect(),
        )
        .await
        .unwrap();
    store.create_index("p", &IndexSpec::FullText).await.unwrap();
    let hits = store
        .text_search(
            "p",
            &TextQuery {
                text: "lifetimes references".into(),
                k: 10,
                filter: None,
            },
        )
        .await
        .unwrap();
    let ids: Vec<_> = hits.iter().map(|h| h.id.as_str()).collect();
    assert!(
        ids.len() >= 2 && ids.contains(&"borrow") && ids.contains(&"lifetimes"),
        "{ids:?}"
    );
    assert!(!ids.contains(&"cargo"));
    assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
    let hybrid = store
        .hybrid_search(
            "p",
            &HybridQuery {
                vector: vec![0.0, 0.0, 1.0],
                text: "lifetimes".into(),
                k: 4,
                filter: None,
            },
        )
        .await
        .unwrap();
    let ids: Vec<_> = hybrid.iter().map(|h| h.id.as_str()).collect();
    // "cargo" is the nearest vector, the lifetime passages the best text matches: fusion
    // keeps both kinds.
    assert!(
        ids.contains(&"cargo") && ids.contains(&"lifetimes"),
        "{ids:?}"
    );
}
