//! The vector conformance suite: the behaviour of [`VectorStore`] (its trait docs list it)
//! as executable checks, run by every vector engine and through every scope of one, the way
//! the key/value checks above run for every [`KvStore`](crate::KvStore).
//!
//! ```ignore
//! mod lance_local {
//!     use hybridstore_core::conformance::vector::VectorFixture;
//!     hybridstore_core::vector_conformance_tests!(|| async {
//!         let dir = tempfile::tempdir().unwrap();
//!         let store = open_engine(dir.path()).await;
//!         VectorFixture::with_guard(store, dir)
//!     });
//! }
//! ```
//!
//! Checks that need an optional feature read [`VectorCapabilities`](crate::vector::VectorCapabilities) and do nothing for an
//! engine that does not claim it, as OpenDAL's behaviour tests gate on `Capability`
//! (<https://github.com/apache/opendal/tree/main/core/tests/behavior>): the gate is the
//! capability the engine reports, never a skip decided inside a check.

use std::any::Any;
use std::collections::BTreeSet;
use std::sync::Arc;

use crate::ErrorKind;
use crate::vector::{
    CollectionSpec, Distance, FieldType, FieldValue, Filter, MAX_K, VectorQuery, VectorRecord,
    VectorStore,
};

/// A fresh vector store for one check (no collections), with whatever must outlive it.
pub struct VectorFixture {
    store: Arc<dyn VectorStore>,
    _guard: Option<Box<dyn Any + Send + Sync>>,
}

impl VectorFixture {
    /// A fixture that owns only the store.
    pub fn new(store: impl VectorStore + 'static) -> Self {
        VectorFixture {
            store: Arc::new(store),
            _guard: None,
        }
    }

    /// A fixture that also keeps `guard` (a temporary directory, a server) alive until the
    /// check ends.
    pub fn with_guard(store: impl VectorStore + 'static, guard: impl Any + Send + Sync) -> Self {
        VectorFixture {
            store: Arc::new(store),
            _guard: Some(Box::new(guard)),
        }
    }

    /// The store under test.
    pub fn store(&self) -> &dyn VectorStore {
        self.store.as_ref()
    }
}

/// What a vector fixture factory returns: a [`VectorFixture`], or `None` to skip (a service
/// that is missing outside CI, after printing why).
pub trait MaybeVectorFixture {
    /// The fixture, or `None` to skip the check.
    fn into_fixture(self) -> Option<VectorFixture>;
}

impl MaybeVectorFixture for VectorFixture {
    fn into_fixture(self) -> Option<VectorFixture> {
        Some(self)
    }
}

impl MaybeVectorFixture for Option<VectorFixture> {
    fn into_fixture(self) -> Option<VectorFixture> {
        self
    }
}

/// Generates one test per vector conformance check for the fixture factory `$factory` (an
/// expression of type `Fn() -> impl Future<Output = F>`, `F` a [`VectorFixture`] or
/// `Option<VectorFixture>`). The calling crate needs `tokio` with `macros` and
/// `rt-multi-thread`.
#[macro_export]
macro_rules! vector_conformance_tests {
    ($factory:expr) => {
        $crate::vector_conformance_tests!(@checks $factory;
            vector_collections_lifecycle, vector_missing_collection_is_not_found,
            vector_records_round_trip, vector_upsert_replaces_and_refuses_duplicate_ids,
            vector_wrong_shapes_write_nothing, vector_empty_inputs_are_no_work,
            vector_k_bounds, vector_search_order_and_filters, vector_text_only_collections,
            vector_expired_records_are_not_found);
    };
    (@checks $factory:expr; $($check:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let Some(fixture) = $crate::conformance::vector::MaybeVectorFixture::into_fixture(
                    ($factory)().await,
                ) else {
                    return; // the factory reported why it skipped
                };
                $crate::conformance::vector::$check(&fixture).await;
            }
        )*
    };
}

fn ids(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// A 4-dimensional L2 collection with a string, an integer and a tag field.
fn docs(name: &str) -> CollectionSpec {
    CollectionSpec::new(name, 4, Distance::L2)
        .with_field("kind", FieldType::String)
        .with_field("year", FieldType::Integer)
        .with_field("tags", FieldType::StringList)
}

/// Record `id` at `x` on the first axis.
fn at(id: &str, x: f32) -> VectorRecord {
    VectorRecord::new(id, vec![x, 0.0, 0.0, 0.0])
}

async fn assert_kind<T: std::fmt::Debug>(what: &str, result: crate::Result<T>, kind: ErrorKind) {
    match result {
        Err(e) => assert_eq!(e.kind(), kind, "{what}: {e}"),
        Ok(v) => panic!("{what}: expected {kind}, got Ok({v:?})"),
    }
}

async fn found_ids(store: &dyn VectorStore, collection: &str, names: &[&str]) -> BTreeSet<String> {
    store
        .get(collection, &ids(names))
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect()
}

/// Create, describe, list (sorted), create again (identical: fine; different: `Conflict`),
/// drop, and the collection is gone.
pub async fn vector_collections_lifecycle(fx: &VectorFixture) {
    let store = fx.store();
    assert!(
        store.list_collections().await.unwrap().is_empty(),
        "a fresh store has no collections"
    );
    let info = store.create_collection(&docs("zeta")).await.unwrap();
    assert_eq!(info.spec, docs("zeta"));
    assert_eq!(info.rows, 0);
    store.create_collection(&docs("alpha")).await.unwrap();
    assert_eq!(
        store.list_collections().await.unwrap(),
        ["alpha", "zeta"],
        "sorted"
    );

    let again = store.create_collection(&docs("zeta")).await.unwrap();
    assert_eq!(
        again.spec,
        docs("zeta"),
        "an identical create describes the collection"
    );
    assert_kind(
        "create with another dimension",
        store
            .create_collection(&CollectionSpec::new("zeta", 8, Distance::L2))
            .await,
        ErrorKind::Conflict,
    )
    .await;
    assert_kind(
        "create with another field",
        store
            .create_collection(&docs("zeta").with_field("extra", FieldType::Float))
            .await,
        ErrorKind::Conflict,
    )
    .await;
    assert_kind(
        "create with an invalid name",
        store
            .create_collection(&CollectionSpec::new("a/b", 4, Distance::L2))
            .await,
        ErrorKind::InvalidInput,
    )
    .await;
    let caps = store.capabilities();
    assert!(
        caps.max_k <= MAX_K && caps.max_dimension <= crate::vector::MAX_DIMENSION,
        "capabilities within the trait's limits: {caps:?}"
    );
    assert_kind(
        "create above max_dimension",
        store
            .create_collection(&CollectionSpec::new(
                "huge",
                caps.max_dimension + 1,
                Distance::L2,
            ))
            .await,
        ErrorKind::InvalidInput,
    )
    .await;

    store.add("zeta", vec![at("a", 1.0)]).await.unwrap();
    assert_eq!(store.describe_collection("zeta").await.unwrap().rows, 1);
    store.drop_collection("zeta").await.unwrap();
    assert_eq!(store.list_collections().await.unwrap(), ["alpha"]);
    assert_kind(
        "describe after drop",
        store.describe_collection("zeta").await,
        ErrorKind::NotFound,
    )
    .await;
    assert_kind(
        "drop again",
        store.drop_collection("zeta").await,
        ErrorKind::NotFound,
    )
    .await;
    // A dropped name can be created afresh, empty.
    let info = store.create_collection(&docs("zeta")).await.unwrap();
    assert_eq!(info.rows, 0, "a re-created collection starts empty");
}

/// Every method on a collection that does not exist fails with `NotFound`, also with empty
/// arguments.
pub async fn vector_missing_collection_is_not_found(fx: &VectorFixture) {
    let store = fx.store();
    store.create_collection(&docs("present")).await.unwrap();
    let none = "absent";
    let q = VectorQuery::new(vec![1.0, 0.0, 0.0, 0.0], 3);
    assert_kind(
        "describe",
        store.describe_collection(none).await,
        ErrorKind::NotFound,
    )
    .await;
    assert_kind(
        "drop",
        store.drop_collection(none).await,
        ErrorKind::NotFound,
    )
    .await;
    assert_kind("count", store.count(none, None).await, ErrorKind::NotFound).await;
    assert_kind(
        "add",
        store.add(none, vec![at("a", 1.0)]).await,
        ErrorKind::NotFound,
    )
    .await;
    assert_kind(
        "add of nothing",
        store.add(none, vec![]).await,
        ErrorKind::NotFound,
    )
    .await;
    assert_kind(
        "upsert",
        store.upsert(none, vec![at("a", 1.0)]).await,
        ErrorKind::NotFound,
    )
    .await;
    assert_kind(
        "upsert of nothing",
        store.upsert(none, vec![]).await,
        ErrorKind::NotFound,
    )
    .await;
    assert_kind(
        "delete_ids",
        store.delete_ids(none, &ids(&["a"])).await,
        ErrorKind::NotFound,
    )
    .await;
    assert_kind(
        "delete_ids of none",
        store.delete_ids(none, &[]).await,
        ErrorKind::NotFound,
    )
    .await;
    assert_kind(
        "delete_where",
        store.delete_where(none, &Filter::eq("kind", "x")).await,
        ErrorKind::NotFound,
    )
    .await;
    assert_kind(
        "get",
        store.get(none, &ids(&["a"])).await,
        ErrorKind::NotFound,
    )
    .await;
    assert_kind(
        "get of none",
        store.get(none, &[]).await,
        ErrorKind::NotFound,
    )
    .await;
    assert_kind("search", store.search(none, &q).await, ErrorKind::NotFound).await;
    assert_eq!(
        store.list_collections().await.unwrap(),
        ["present"],
        "nothing was created"
    );
}

/// Records come back by id with their text and metadata; `count` and deletes by id and by
/// filter see exactly the records written.
pub async fn vector_records_round_trip(fx: &VectorFixture) {
    let store = fx.store();
    store.create_collection(&docs("docs")).await.unwrap();
    let a = at("a", 1.0)
        .with_text("alpha")
        .with_field("kind", "manual")
        .with_field("year", 2024i64)
        .with_field("tags", vec!["rust".to_string(), "db".to_string()]);
    let b = at("b", 2.0)
        .with_field("kind", "guide")
        .with_field("year", 2020i64);
    let c = at("c", 3.0).with_field("kind", "manual");
    store.add("docs", vec![a.clone(), b, c]).await.unwrap();
    assert_eq!(store.count("docs", None).await.unwrap(), 3);
    assert_eq!(
        store
            .count("docs", Some(&Filter::eq("kind", "manual")))
            .await
            .unwrap(),
        2
    );

    let got = store.get("docs", &ids(&["a", "missing"])).await.unwrap();
    assert_eq!(got.len(), 1, "missing ids are left out");
    let got = &got[0];
    assert_eq!(got.id, "a");
    assert_eq!(got.vector, a.vector);
    assert_eq!(got.text.as_deref(), Some("alpha"));
    assert_eq!(got.metadata.get("kind"), Some(&FieldValue::from("manual")));
    assert_eq!(got.metadata.get("year"), Some(&FieldValue::Integer(2024)));
    assert_eq!(
        got.metadata.get("tags"),
        Some(&FieldValue::StringList(vec!["rust".into(), "db".into()]))
    );
    assert!(
        got.ingestion_time_us.is_some(),
        "the store stamps ingestion time"
    );

    assert_eq!(
        store
            .delete_ids("docs", &ids(&["a", "missing"]))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store
            .delete_where("docs", &Filter::lt("year", 2022i64))
            .await
            .unwrap(),
        1,
        "b (2020) matches; c has no year and does not"
    );
    assert_eq!(
        found_ids(store, "docs", &["a", "b", "c"]).await,
        BTreeSet::from(["c".to_string()])
    );
    assert_eq!(store.count("docs", None).await.unwrap(), 1);
}

/// `upsert` replaces by id and inserts the rest; a call naming one id twice is refused and
/// writes nothing; `add` appends without checking ids.
pub async fn vector_upsert_replaces_and_refuses_duplicate_ids(fx: &VectorFixture) {
    let store = fx.store();
    store.create_collection(&docs("docs")).await.unwrap();
    store
        .upsert("docs", vec![at("a", 1.0).with_text("first"), at("b", 2.0)])
        .await
        .unwrap();
    store
        .upsert("docs", vec![at("a", 5.0).with_text("second"), at("c", 3.0)])
        .await
        .unwrap();
    assert_eq!(
        store.count("docs", None).await.unwrap(),
        3,
        "a replaced, c inserted"
    );
    let a = store.get("docs", &ids(&["a"])).await.unwrap();
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].text.as_deref(), Some("second"));
    assert_eq!(a[0].vector[0], 5.0);

    assert_kind(
        "upsert naming an id twice",
        store.upsert("docs", vec![at("d", 1.0), at("d", 2.0)]).await,
        ErrorKind::InvalidInput,
    )
    .await;
    assert_eq!(
        store.count("docs", None).await.unwrap(),
        3,
        "the refused upsert wrote nothing"
    );

    store
        .add("docs", vec![at("e", 1.0), at("e", 2.0)])
        .await
        .unwrap();
    assert_eq!(
        store.count("docs", None).await.unwrap(),
        5,
        "add does not check ids"
    );
}

/// Vectors of the wrong dimension, with NaN or infinity, or zero under cosine, are
/// `InvalidInput` for writes and queries, and a refused write leaves nothing behind.
pub async fn vector_wrong_shapes_write_nothing(fx: &VectorFixture) {
    let store = fx.store();
    store.create_collection(&docs("l2")).await.unwrap();
    store
        .create_collection(&CollectionSpec::new("cos", 4, Distance::Cosine))
        .await
        .unwrap();
    let bad: Vec<(&str, &str, Vec<f32>)> = vec![
        ("l2", "too short", vec![1.0, 2.0, 3.0]),
        ("l2", "too long", vec![1.0; 5]),
        ("l2", "empty", vec![]),
        ("l2", "NaN", vec![1.0, f32::NAN, 0.0, 0.0]),
        ("l2", "infinite", vec![f32::INFINITY, 0.0, 0.0, 0.0]),
        ("cos", "zero under cosine", vec![0.0; 4]),
    ];
    for (collection, what, vector) in bad {
        // A good record first: the whole call is refused, not the bad record alone.
        let records = vec![at("good", 1.0), VectorRecord::new("bad", vector.clone())];
        assert_kind(
            &format!("add, {what}"),
            store.add(collection, records.clone()).await,
            ErrorKind::InvalidInput,
        )
        .await;
        assert_kind(
            &format!("upsert, {what}"),
            store.upsert(collection, records).await,
            ErrorKind::InvalidInput,
        )
        .await;
        assert_kind(
            &format!("search, {what}"),
            store.search(collection, &VectorQuery::new(vector, 1)).await,
            ErrorKind::InvalidInput,
        )
        .await;
        assert_eq!(
            store.count(collection, None).await.unwrap(),
            0,
            "{what}: nothing written"
        );
    }
    assert_kind(
        "a field the collection does not declare",
        store
            .add("l2", vec![at("x", 1.0).with_field("nope", 1i64)])
            .await,
        ErrorKind::InvalidInput,
    )
    .await;
    assert_kind(
        "a field value of another type",
        store
            .add("l2", vec![at("x", 1.0).with_field("year", "2024")])
            .await,
        ErrorKind::InvalidInput,
    )
    .await;
    assert_kind(
        "an empty id",
        store.add("l2", vec![at("", 1.0)]).await,
        ErrorKind::InvalidInput,
    )
    .await;
    assert_eq!(store.count("l2", None).await.unwrap(), 0);
}

/// Empty calls succeed and change nothing; an empty collection finds nothing.
pub async fn vector_empty_inputs_are_no_work(fx: &VectorFixture) {
    let store = fx.store();
    store.create_collection(&docs("docs")).await.unwrap();
    let q = VectorQuery::new(vec![1.0, 0.0, 0.0, 0.0], 5);
    assert!(
        store.search("docs", &q).await.unwrap().is_empty(),
        "an empty collection"
    );
    store.add("docs", vec![]).await.unwrap();
    store.upsert("docs", vec![]).await.unwrap();
    assert_eq!(store.delete_ids("docs", &[]).await.unwrap(), 0);
    assert!(store.get("docs", &[]).await.unwrap().is_empty());
    assert_eq!(store.count("docs", None).await.unwrap(), 0);
    store.add("docs", vec![at("a", 1.0)]).await.unwrap();
    assert_eq!(
        store.delete_ids("docs", &[]).await.unwrap(),
        0,
        "no ids delete nothing"
    );
    assert_eq!(store.count("docs", None).await.unwrap(), 1);
}

/// `k` is 1 to `max_k`; a search returns `min(k, matching records)` hits.
pub async fn vector_k_bounds(fx: &VectorFixture) {
    let store = fx.store();
    store.create_collection(&docs("docs")).await.unwrap();
    store
        .add(
            "docs",
            (0..5).map(|i| at(&format!("r{i}"), i as f32)).collect(),
        )
        .await
        .unwrap();
    let max_k = store.capabilities().max_k.min(MAX_K);
    for k in [0, max_k + 1] {
        assert_kind(
            &format!("k = {k}"),
            store
                .search("docs", &VectorQuery::new(vec![0.0; 4], k))
                .await,
            ErrorKind::InvalidInput,
        )
        .await;
    }
    let mut q = VectorQuery::new(vec![0.0; 4], 1);
    q.exact = true;
    let one = store.search("docs", &q).await.unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].id, "r0", "the nearest record");
    q.k = 100;
    assert_eq!(
        store.search("docs", &q).await.unwrap().len(),
        5,
        "k above the row count"
    );
    q.k = max_k;
    assert_eq!(
        store.search("docs", &q).await.unwrap().len(),
        5,
        "k = max_k is allowed"
    );
}

/// Exact results are the true nearest neighbours, closest first; filters select before the
/// search and are checked against the collection.
pub async fn vector_search_order_and_filters(fx: &VectorFixture) {
    let store = fx.store();
    store.create_collection(&docs("docs")).await.unwrap();
    let records: Vec<VectorRecord> = (0..20)
        .map(|i| {
            at(&format!("r{i:02}"), i as f32)
                .with_field("kind", if i % 2 == 0 { "even" } else { "odd" })
                .with_field("year", 2000 + i as i64)
                .with_field("tags", vec![format!("t{}", i % 3)])
        })
        .collect();
    store.add("docs", records).await.unwrap();
    let mut q = VectorQuery::new(vec![10.2, 0.0, 0.0, 0.0], 4);
    q.exact = true;
    let hits = store.search("docs", &q).await.unwrap();
    let got: Vec<&str> = hits.iter().map(|h| h.id.as_str()).collect();
    assert_eq!(got, ["r10", "r11", "r09", "r12"], "nearest first");
    assert!(
        hits.windows(2).all(|w| w[0].score >= w[1].score),
        "scores never increase: {hits:?}"
    );
    assert!(
        hits.iter().all(|h| h.distance.is_some()),
        "vector hits carry their distance"
    );

    let cases: Vec<(Filter, Vec<&str>)> = vec![
        (Filter::eq("kind", "odd"), vec!["r11", "r09", "r13", "r07"]),
        (
            Filter::range("year", 2015i64, 2018i64),
            vec!["r15", "r16", "r17"],
        ),
        (
            Filter::contains("tags", "t0"),
            vec!["r09", "r12", "r06", "r15"],
        ),
        (
            Filter::is_in("kind", ["even"]).and(Filter::lt("year", 2005i64)),
            vec!["r04", "r02", "r00"],
        ),
        (
            Filter::eq("kind", "odd").not(),
            vec!["r10", "r12", "r08", "r14"],
        ),
    ];
    for (filter, expected) in cases {
        let hits = store
            .search("docs", &q.clone().with_filter(filter.clone()))
            .await
            .unwrap();
        let got: Vec<&str> = hits.iter().map(|h| h.id.as_str()).collect();
        assert_eq!(got, expected, "{filter:?}");
        let matching = store.count("docs", Some(&filter)).await.unwrap();
        assert!(
            matching as usize >= got.len(),
            "{filter:?}: count {matching} < hits"
        );
    }
    for (what, filter) in [
        ("unknown field", Filter::eq("nope", "x")),
        ("value of another type", Filter::eq("year", "2024")),
        (
            "contains on a plain string",
            Filter::contains("kind", "odd"),
        ),
    ] {
        assert_kind(
            &format!("search with {what}"),
            store
                .search("docs", &q.clone().with_filter(filter.clone()))
                .await,
            ErrorKind::InvalidInput,
        )
        .await;
        assert_kind(
            &format!("count with {what}"),
            store.count("docs", Some(&filter)).await,
            ErrorKind::InvalidInput,
        )
        .await;
        assert_kind(
            &format!("delete_where with {what}"),
            store.delete_where("docs", &filter).await,
            ErrorKind::InvalidInput,
        )
        .await;
    }
    assert_eq!(
        store.count("docs", None).await.unwrap(),
        20,
        "refused deletes deleted nothing"
    );
}

/// Collections without vectors hold records with text alone (gated on
/// [`VectorCapabilities::text_only_collections`](crate::vector::VectorCapabilities::text_only_collections); engines without them refuse the spec).
pub async fn vector_text_only_collections(fx: &VectorFixture) {
    let store = fx.store();
    let spec = CollectionSpec::text_only("notes");
    if !store.capabilities().text_only_collections {
        assert_kind(
            "a text-only spec on an engine without them",
            store.create_collection(&spec).await,
            ErrorKind::InvalidInput,
        )
        .await;
        return;
    }
    store.create_collection(&spec).await.unwrap();
    store
        .add(
            "notes",
            vec![VectorRecord::new("n1", vec![]).with_text("hello")],
        )
        .await
        .unwrap();
    let got = store.get("notes", &ids(&["n1"])).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].text.as_deref(), Some("hello"));
    assert_kind(
        "a vector in a text-only collection",
        store
            .add("notes", vec![VectorRecord::new("n2", vec![1.0])])
            .await,
        ErrorKind::InvalidInput,
    )
    .await;
}

/// A record whose `expires_at_us` has passed is counted but never found by a search (gated
/// on [`VectorCapabilities::expiry`](crate::vector::VectorCapabilities::expiry)).
pub async fn vector_expired_records_are_not_found(fx: &VectorFixture) {
    let store = fx.store();
    if !store.capabilities().expiry {
        return;
    }
    store.create_collection(&docs("docs")).await.unwrap();
    let mut gone = at("gone", 0.0);
    gone.expires_at_us = Some(1); // 1970
    let mut later = at("later", 1.0);
    later.expires_at_us = Some(4_102_444_800_000_000); // 2100-01-01
    store
        .add("docs", vec![gone, later, at("kept", 2.0)])
        .await
        .unwrap();
    assert_eq!(
        store.count("docs", None).await.unwrap(),
        3,
        "count includes expired records"
    );
    let mut q = VectorQuery::new(vec![0.0; 4], 10);
    q.exact = true;
    let hits = store.search("docs", &q).await.unwrap();
    let got: Vec<&str> = hits.iter().map(|h| h.id.as_str()).collect();
    assert_eq!(got, ["later", "kept"], "the expired record is invisible");
}
