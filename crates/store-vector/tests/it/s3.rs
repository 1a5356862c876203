//! The same store on an S3-compatible server (a private SeaweedFS): collections, writes,
//! filtered search, upsert, delete, tenants and full-text search over `s3://`.

use hybridstore_core::TenantId;
use hybridstore_core::services::SeaweedS3;
use hybridstore_core::vector::{
    CollectionSpec, Distance, FieldType, Filter, VectorQuery, VectorRecord, VectorStore,
};
use hybridstore_vector::{IndexSpec, LanceOptions, LanceVectorStore, TextQuery};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collections_search_and_text_on_s3() {
    let Some(s3) = SeaweedS3::start() else {
        return;
    };
    let options = LanceOptions {
        storage_options: s3.storage_options(),
        ..LanceOptions::default()
    };
    let store = LanceVectorStore::open(&s3.uri("db"), options.clone())
        .await
        .unwrap();
    let spec =
        CollectionSpec::new("docs", 3, Distance::Cosine).with_field("kind", FieldType::String);
    store.create_collection(&spec).await.unwrap();
    let records = (0..50)
        .map(|i| {
            VectorRecord::new(format!("r{i}"), vec![1.0, i as f32 / 50.0, 0.5])
                .with_text(if i == 7 {
                    "the borrow checker"
                } else {
                    "something else"
                })
                .with_field("kind", if i % 5 == 0 { "five" } else { "other" })
        })
        .collect();
    store.add("docs", records).await.unwrap();
    let hits = store
        .search(
            "docs",
            &VectorQuery::new(vec![1.0, 0.0, 0.5], 3).with_filter(Filter::eq("kind", "five")),
        )
        .await
        .unwrap();
    assert_eq!(
        hits.iter().map(|h| h.id.as_str()).collect::<Vec<_>>(),
        vec!["r0", "r5", "r10"]
    );
    store
        .upsert(
            "docs",
            vec![VectorRecord::new("r0", vec![0.0, 0.0, 1.0]).with_field("kind", "moved")],
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .count("docs", Some(&Filter::eq("kind", "five")))
            .await
            .unwrap(),
        9
    );
    assert_eq!(
        store
            .delete_where("docs", &Filter::eq("kind", "moved"))
            .await
            .unwrap(),
        1
    );
    store
        .create_index("docs", &IndexSpec::FullText)
        .await
        .unwrap();
    let text = store
        .text_search(
            "docs",
            &TextQuery {
                text: "borrow".into(),
                k: 5,
                filter: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(text[0].id, "r7");

    // Another process's view: a fresh connection sees the same collection.
    let other = LanceVectorStore::open(&s3.uri("db"), options)
        .await
        .unwrap();
    assert_eq!(other.count("docs", None).await.unwrap(), 49);
    let tenant = other.for_tenant(TenantId::new("t1").unwrap(), Some(1));
    tenant
        .add("docs", vec![VectorRecord::new("mine", vec![1.0, 1.0, 1.0])])
        .await
        .unwrap();
    assert_eq!(tenant.count("docs", None).await.unwrap(), 1);
    assert_eq!(store.count("docs", None).await.unwrap(), 50);
    store.drop_collection("docs").await.unwrap();
    let gone = other.describe_collection("docs").await.unwrap_err();
    assert_eq!(gone.kind(), hybridstore_core::ErrorKind::NotFound, "{gone}");
}
