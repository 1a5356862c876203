//! Versioned reads: a collection read as it was at an earlier version while writes go on,
//! and rolled back to it.

use hybridstore_core::ErrorKind;
use hybridstore_core::TenantId;
use hybridstore_core::vector::{CollectionSpec, Distance, VectorQuery, VectorRecord, VectorStore};

use crate::support::store;

fn record(id: &str, x: f32) -> VectorRecord {
    VectorRecord::new(id, vec![x, 1.0 - x])
}

#[tokio::test]
async fn an_earlier_version_reads_as_it_was_and_rolls_back() {
    let (_dir, store) = store().await;
    store
        .create_collection(&CollectionSpec::new("notes", 2, Distance::L2))
        .await
        .unwrap();
    store
        .add("notes", vec![record("a", 0.1), record("b", 0.2)])
        .await
        .unwrap();
    let two_records = store.version("notes").await.unwrap();
    store.add("notes", vec![record("c", 0.9)]).await.unwrap();
    store.delete_ids("notes", &["a".to_string()]).await.unwrap();
    let latest = store.version("notes").await.unwrap();
    assert!(latest > two_records, "{latest} after {two_records}");
    let versions = store.versions("notes").await.unwrap();
    assert!(
        versions.iter().any(|v| v.version == two_records)
            && versions.last().unwrap().version == latest,
        "{versions:?}"
    );

    // The view sees the old version, whatever is written after it was made.
    let then = store.at_version("notes", two_records).await.unwrap();
    store.add("notes", vec![record("d", 0.5)]).await.unwrap();
    assert_eq!(then.count(None).await.unwrap(), 2);
    let ids = |records: Vec<VectorRecord>| {
        let mut ids: Vec<String> = records.into_iter().map(|r| r.id).collect();
        ids.sort();
        ids
    };
    let all = ["a", "b", "c", "d"].map(String::from);
    assert_eq!(ids(then.get(&all).await.unwrap()), ["a", "b"]);
    let hits = then
        .search(&VectorQuery::new(vec![0.9, 0.1], 4))
        .await
        .unwrap();
    assert_eq!(hits.len(), 2, "{hits:?}");
    // The store itself still reads the latest version.
    assert_eq!(
        ids(store.get("notes", &all).await.unwrap()),
        ["b", "c", "d"]
    );

    // A tenant cannot roll back everyone's records; the unscoped store can.
    let tenant = store.for_tenant(TenantId::new("acme").unwrap(), None);
    assert_eq!(
        tenant
            .rollback("notes", two_records)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidInput
    );
    let restored = store.rollback("notes", two_records).await.unwrap();
    assert!(restored > latest, "a rollback is a new version on top");
    assert_eq!(ids(store.get("notes", &all).await.unwrap()), ["a", "b"]);
    store.add("notes", vec![record("e", 0.3)]).await.unwrap();
    assert_eq!(
        store.count("notes", None).await.unwrap(),
        3,
        "writes go on after a rollback"
    );

    assert_eq!(
        store.at_version("notes", 10_000).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        store.at_version("missing", 1).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
}
