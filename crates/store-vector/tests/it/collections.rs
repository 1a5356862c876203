//! Collections and records: create, list, describe, drop, count, add, upsert, get, delete,
//! and the errors for what does not fit.

use hybridstore_core::ErrorKind;
use hybridstore_core::vector::{CollectionSpec, Distance, Filter, VectorRecord, VectorStore};

use crate::support::{docs_spec, store};

#[tokio::test]
async fn collections_are_created_listed_described_and_dropped() {
    let (_dir, store) = store().await;
    let spec = docs_spec(4, Distance::Cosine);
    let info = store.create_collection(&spec).await.unwrap();
    assert_eq!((info.spec.clone(), info.rows), (spec.clone(), 0));
    // Creating the same spec again is not an error; another spec under the name is.
    store.create_collection(&spec).await.unwrap();
    let other = CollectionSpec::new("docs", 8, Distance::L2);
    assert_eq!(
        store.create_collection(&other).await.unwrap_err().kind(),
        ErrorKind::Conflict
    );
    store
        .create_collection(&CollectionSpec::new("alpha", 2, Distance::Dot))
        .await
        .unwrap();
    assert_eq!(
        store.list_collections().await.unwrap(),
        vec!["alpha", "docs"]
    );
    // A reopened store reads the spec back from the table.
    let reopened = hybridstore_vector::LanceVectorStore::open(store.uri(), Default::default())
        .await
        .unwrap();
    assert_eq!(
        reopened.describe_collection("docs").await.unwrap().spec,
        spec
    );
    store.drop_collection("alpha").await.unwrap();
    assert_eq!(store.list_collections().await.unwrap(), vec!["docs"]);
    for err in [
        store.describe_collection("alpha").await.unwrap_err(),
        store.count("missing", None).await.unwrap_err(),
        store
            .add("missing", vec![VectorRecord::new("a", vec![1.0; 4])])
            .await
            .unwrap_err(),
    ] {
        assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    }
    assert_eq!(
        store
            .describe_collection("../etc")
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidInput
    );
}

#[tokio::test]
async fn records_round_trip_and_upsert_replaces_by_id() {
    let (_dir, store) = store().await;
    store
        .create_collection(&docs_spec(3, Distance::L2))
        .await
        .unwrap();
    let a = VectorRecord::new("a", vec![1.0, 2.0, 3.0])
        .with_text("first")
        .with_field("kind", "guide")
        .with_field("year", 2024i64)
        .with_field("rank", 0.5)
        .with_field("tags", vec!["rust".to_string(), "db".to_string()]);
    let mut b = VectorRecord::new("b", vec![0.0, 0.0, 1.0]);
    b.event_time_us = Some(1_000);
    b.expires_at_us = Some(i64::MAX);
    store.add("docs", vec![a.clone(), b.clone()]).await.unwrap();
    let mut got = store
        .get("docs", &["a".into(), "b".into(), "zz".into()])
        .await
        .unwrap();
    got.sort_by(|x, y| x.id.cmp(&y.id));
    assert_eq!(got.len(), 2);
    assert!(got[0].ingestion_time_us.is_some());
    let mut expected_a = a.clone();
    expected_a.ingestion_time_us = got[0].ingestion_time_us;
    assert_eq!(got[0], expected_a);
    assert_eq!(
        (got[1].event_time_us, got[1].expires_at_us),
        (Some(1_000), Some(i64::MAX))
    );

    let a2 = VectorRecord::new("a", vec![9.0, 9.0, 9.0]).with_field("kind", "api");
    let c = VectorRecord::new("c", vec![1.0, 1.0, 1.0]);
    store.upsert("docs", vec![a2, c]).await.unwrap();
    assert_eq!(store.count("docs", None).await.unwrap(), 3);
    let a_now = store.get("docs", &["a".into()]).await.unwrap();
    assert_eq!(a_now.len(), 1);
    assert_eq!(a_now[0].vector, vec![9.0, 9.0, 9.0]);
    assert_eq!(a_now[0].text, None);

    assert_eq!(
        store
            .delete_ids("docs", &["c".into(), "zz".into()])
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store
            .delete_where("docs", &Filter::eq("kind", "api"))
            .await
            .unwrap(),
        1
    );
    assert_eq!(store.count("docs", None).await.unwrap(), 1);
}

#[tokio::test]
async fn vectors_that_do_not_fit_are_invalid_input_with_their_shape() {
    let (_dir, store) = store().await;
    store
        .create_collection(&docs_spec(3, Distance::Cosine))
        .await
        .unwrap();
    let cases = [
        (vec![1.0, 2.0], "expects 3"),
        (vec![], "expects 3"),
        (vec![1.0, f32::NAN, 0.0], "NaN"),
        (vec![1.0, f32::INFINITY, 0.0], "inf"),
        (vec![0.0, 0.0, 0.0], "zero vector"),
    ];
    for (vector, says) in cases {
        let err = store
            .add("docs", vec![VectorRecord::new("x", vector.clone())])
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert!(err.to_string().contains(says), "{vector:?}: {err}");
        let err = store
            .search(
                "docs",
                &hybridstore_core::vector::VectorQuery::new(vector, 3),
            )
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
    }
    let err = store
        .add(
            "docs",
            vec![VectorRecord::new("x", vec![1.0; 3]).with_field("year", "two")],
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    // No records is no work (the VectorStore contract), not an error.
    store.add("docs", vec![]).await.unwrap();
    assert_eq!(
        store.count("docs", None).await.unwrap(),
        0,
        "nothing was written"
    );
}
