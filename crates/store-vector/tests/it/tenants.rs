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
