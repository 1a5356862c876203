//! Tenants: a scoped store writes, reads, counts and deletes only its own records, and stops
//! at its quota.

use hybridstore_core::vector::{
    CollectionSpec, Distance, Filter, VectorQuery, VectorRecord, VectorStore,
};
use hybridstore_core::{ErrorKind, TenantId};

use crate::support::store;

#[tokio::test]
async fn tenants_never_see_each_other_and_stop_at_their_quota() {
    let (_dir, admin) = store().await;
    admin
        .create_collection(&CollectionSpec::new("v", 2, Distance::L2))
        .await
        .unwrap();
    let a = admin.for_tenant(TenantId::new("acme").unwrap(), Some(3));
    let b = admin.for_tenant(TenantId::new("globex").unwrap(), None);
    a.add(
        "v",
        vec![VectorRecord::new("doc", vec![1.0, 0.0]).with_text("acme's")],
    )
    .await
    .unwrap();
    b.add(
        "v",
        vec![VectorRecord::new("doc", vec![1.0, 0.0]).with_text("globex's")],
    )
    .await
    .unwrap();
    let q = VectorQuery::new(vec![1.0, 0.0], 10);
    let seen_by_a = a.search("v", &q).await.unwrap();
    assert_eq!(seen_by_a.len(), 1);
    assert_eq!(seen_by_a[0].text.as_deref(), Some("acme's"));
    assert_eq!(
        b.get("v", &["doc".into()]).await.unwrap()[0]
            .text
            .as_deref(),
        Some("globex's")
    );
    assert_eq!(admin.count("v", None).await.unwrap(), 2);
    assert_eq!(a.count("v", None).await.unwrap(), 1);
    // A filter cannot widen the scope.
    let sneaky = Filter::eq("tenant", "globex").or(Filter::eq("id", "doc"));
    let hits = a
        .search("v", &q.clone().with_filter(sneaky.clone()))
        .await
        .unwrap();
    assert!(
        hits.iter().all(|h| h.text.as_deref() == Some("acme's")),
        "{hits:?}"
    );
    assert_eq!(a.delete_where("v", &sneaky).await.unwrap(), 1);
    assert_eq!(
        b.count("v", None).await.unwrap(),
        1,
        "globex's record survives"
    );

    // Upsert replaces within the tenant only.
    b.upsert(
        "v",
        vec![VectorRecord::new("doc", vec![0.0, 1.0]).with_text("globex v2")],
    )
    .await
    .unwrap();
    assert_eq!(admin.count("v", None).await.unwrap(), 1);

    // Quota: 3 vectors for acme.
    let three: Vec<_> = (0..3)
        .map(|i| VectorRecord::new(format!("r{i}"), vec![1.0, i as f32]))
        .collect();
    a.add("v", three).await.unwrap();
    let err = a
        .add("v", vec![VectorRecord::new("r3", vec![1.0, 3.0])])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::QuotaExceeded, "{err}");
    // Replacing an existing id does not grow the count, so it is allowed.
    a.upsert("v", vec![VectorRecord::new("r0", vec![2.0, 0.0])])
        .await
        .unwrap();
    assert_eq!(a.count("v", None).await.unwrap(), 3);
}

/// Eight writers of one tenant, each through a scope of its own, race to add two records
/// each against a quota of five: the quota is never passed (the count and the write it
/// allows happen under one lock), exactly two writers are allowed, every refusal is
/// `QuotaExceeded`, and another tenant is not held back.
#[tokio::test]
async fn concurrent_writers_cannot_pass_a_vector_quota_together() {
    let (_dir, admin) = store().await;
    admin
        .create_collection(&CollectionSpec::new("v", 2, Distance::L2))
        .await
        .unwrap();
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..8 {
        let scoped = admin.for_tenant(TenantId::new("acme").unwrap(), Some(5));
        writers.spawn(async move {
            let records = (0..2)
                .map(|i| VectorRecord::new(format!("w{w}-{i}"), vec![w as f32, i as f32]))
                .collect();
            if w % 2 == 0 {
                scoped.add("v", records).await
            } else {
                scoped.upsert("v", records).await
            }
        });
    }
    let mut allowed = 0;
    while let Some(result) = writers.join_next().await {
        match result.unwrap() {
            Ok(()) => allowed += 1,
            Err(e) => assert_eq!(e.kind(), ErrorKind::QuotaExceeded, "{e}"),
        }
    }
    assert_eq!(allowed, 2, "two writers of two records fit in five");
    let acme = admin.for_tenant(TenantId::new("acme").unwrap(), None);
    assert_eq!(acme.count("v", None).await.unwrap(), 4);
    let other = admin.for_tenant(TenantId::new("globex").unwrap(), Some(5));
    other
        .add("v", vec![VectorRecord::new("g", vec![0.0, 0.0])])
        .await
        .unwrap();
}
