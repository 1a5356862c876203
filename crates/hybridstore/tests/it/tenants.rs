//! Tenants: every engine confined to the tenant (keys, documents, SQL rows, vectors, cache
//! entries in both tiers, analytics events), quotas that concurrent writers cannot pass
//! together, usage, listing and deletion across every engine, a property test of random
//! operations of two tenants, and the conformance suite through a tenant's store.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hybridstore::core::vector::{CollectionSpec, Distance, VectorQuery, VectorRecord, VectorStore};
use hybridstore::core::{ErrorKind, Key, KeyRange, KvStore, WriteBatch};
use hybridstore::documents::{MultimodalQuery, NewDocument};
use hybridstore::tenants::{Tenant, TenantQuota};
use hybridstore::{DocumentsConfig, HybridStorageSystem, Modality, PrimaryStore, StorageConfig};
use proptest::prelude::*;
use serde_json::json;

fn config(dir: &std::path::Path, primary: PrimaryStore, analytics: bool) -> StorageConfig {
    let mut config = StorageConfig::with_data_dir(dir)
        .with_documents(DocumentsConfig::default().with_modality(Modality::Image, 2));
    config.primary = primary;
    config.analytics = analytics;
    config
}

fn key(k: &str) -> Key {
    Key::new(k.to_string()).unwrap()
}

fn document(tenant: &str, id: &str, image: [f32; 2]) -> NewDocument {
    NewDocument::new(id)
        .with_filename(format!("{tenant}/{id}"))
        .with_content(format!("{tenant}'s {id}").into_bytes(), "text/plain")
        .with_text(format!("a report written for {tenant} about {id}"))
        .with_embedding(Modality::Image, image.to_vec())
}

async fn image_hits(tenant: &Tenant) -> Vec<String> {
    let hits = tenant
        .documents()
        .unwrap()
        .search(&MultimodalQuery::new(10).with_vector(Modality::Image, vec![1.0, 0.0]))
        .await
        .unwrap();
    hits.into_iter().map(|h| h.document.filename).collect()
}

/// Two tenants and the system itself use the same key, document id, vector id and session id
/// on one system: each sees its own on every engine; usage and listing report each; deleting
/// one tenant removes it from every engine and leaves the other and the system's own data.
async fn confined_on_every_engine(system: &HybridStorageSystem) {
    let acme = system.tenant("acme").await.unwrap();
    let globex = system.tenant("globex").await.unwrap();
    assert!(system.tenant("no/slash").await.is_err());

    // Keys.
    acme.kv()
        .put(&key("plan"), "acme's plan".into())
        .await
        .unwrap();
    globex
        .kv()
        .put(&key("plan"), "globex's plan".into())
        .await
        .unwrap();
    system
        .kv()
        .put(&key("plan"), "the system's plan".into())
        .await
        .unwrap();
    assert_eq!(
        acme.kv().get(&key("plan")).await.unwrap().unwrap(),
        "acme's plan"
    );
    assert_eq!(
        globex.kv().get(&key("plan")).await.unwrap().unwrap(),
        "globex's plan"
    );
    assert_eq!(
        system.kv().get(&key("plan")).await.unwrap().unwrap(),
        "the system's plan"
    );
    assert_eq!(
        acme.kv().list_keys(KeyRange::all(), None).await.unwrap(),
        vec![key("plan")]
    );

    // Documents: the same id in each, searched and listed apart.
    for (t, image) in [(&acme, [1.0, 0.0]), (&globex, [0.9, 0.1])] {
        let name = t.id().as_str();
        let docs = t.documents().unwrap();
        docs.put(document(name, "report", image)).await.unwrap();
        docs.put(document(name, "memo", [0.0, 1.0])).await.unwrap();
    }
    system
        .documents()
        .unwrap()
        .put(document("system", "report", [1.0, 0.0]))
        .await
        .unwrap();
    let acme_docs = acme.documents().unwrap();
    assert_eq!(
        acme_docs.get("report").await.unwrap().unwrap().filename,
        "acme/report"
    );
    assert_eq!(
        acme_docs.content("report").await.unwrap().unwrap(),
        "acme's report"
    );
    assert_eq!(acme_docs.count().await.unwrap(), 2);
    assert_eq!(system.documents().unwrap().count().await.unwrap(), 1);
    let mut acme_hits = image_hits(&acme).await;
    acme_hits.sort();
    assert_eq!(acme_hits, ["acme/memo", "acme/report"]);
    let keyword_hits: Vec<String> = globex
        .documents()
        .unwrap()
        .search(&MultimodalQuery::new(10).with_keywords("report written"))
        .await
        .unwrap()
        .into_iter()
        .map(|h| h.document.filename)
        .collect();
    assert!(!keyword_hits.is_empty());
    assert!(
        keyword_hits.iter().all(|f| f.starts_with("globex/")),
        "{keyword_hits:?}"
    );
    let system_hits: Vec<String> = system
        .documents()
        .unwrap()
        .search(&MultimodalQuery::new(10).with_vector(Modality::Image, vec![1.0, 0.0]))
        .await
        .unwrap()
        .into_iter()
        .map(|h| h.document.filename)
        .collect();
    assert_eq!(system_hits, ["system/report"]);
    let listed = acme_docs.list(None, None, 100).await.unwrap();
    assert_eq!(listed.documents.len(), 2);

    // Vectors of a collection of the caller's own.
    let admin = system.vectors().unwrap();
    admin
        .create_collection(&CollectionSpec::new("notes", 2, Distance::Cosine))
        .await
        .unwrap();
    for t in [&acme, &globex] {
        t.vectors()
            .unwrap()
            .add(
                "notes",
                vec![VectorRecord::new("n1", vec![1.0, 0.0]).with_text(t.id().as_str())],
            )
            .await
            .unwrap();
    }
    let seen = acme
        .vectors()
        .unwrap()
        .search("notes", &VectorQuery::new(vec![1.0, 0.0], 10))
        .await
        .unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].text.as_deref(), Some("acme"));

    // Sessions (a SQL primary only).
    if let (Some(a), Some(g)) = (acme.sessions(), globex.sessions()) {
        let ttl = Duration::from_secs(600);
        a.put("s1", &json!({"user": "ana"}), ttl).await.unwrap();
        g.put("s1", &json!({"user": "gus"}), ttl).await.unwrap();
        assert_eq!(
            a.get("s1").await.unwrap().unwrap().data,
            json!({"user": "ana"})
        );
        assert_eq!(
            system.sql().unwrap().sessions().get("s1").await.unwrap(),
            None
        );
    }

    // Usage and listing.
    let usage = acme.usage().await.unwrap();
    assert_eq!(usage.documents, 2);
    // "plan" plus each document's content and text.
    assert_eq!(usage.keys, 5);
    assert_eq!(usage.vectors.get("notes"), Some(&1));
    assert_eq!(usage.sessions, u64::from(acme.sessions().is_some()));
    let names: Vec<String> = system
        .tenants()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, ["acme", "globex"]);

    // Analytics: the tenant's keys are its events.
    if system.analytics().is_some() {
        let window = hybridstore::analytics::TimeWindow::all();
        let recorded = acme.access_usage(window).await.unwrap().unwrap();
        assert_eq!(recorded.tenant.as_deref(), Some("acme"));
        assert_eq!(recorded.objects, 5, "{recorded:?}");
    }

    // Deleting acme removes it from every engine and leaves globex and the system's own.
    let deletion = system.delete_tenant("acme").await.unwrap();
    assert_eq!(deletion.keys, 5);
    assert_eq!(deletion.documents, 2);
    // Two passages collection records, two image embeddings, one note.
    assert_eq!(deletion.vectors, 5, "{deletion:?}");
    assert!(deletion.registered);
    if system.analytics().is_some() {
        assert!(deletion.analytics_events > 0);
    }
    let names: Vec<String> = system
        .tenants()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, ["globex"]);
    let reborn = system.tenant("acme").await.unwrap();
    assert_eq!(reborn.kv().get(&key("plan")).await.unwrap(), None);
    assert_eq!(
        reborn.documents().unwrap().get("report").await.unwrap(),
        None
    );
    assert!(image_hits(&reborn).await.is_empty());
    assert_eq!(
        reborn
            .vectors()
            .unwrap()
            .count("notes", None)
            .await
            .unwrap(),
        0
    );
    if let Some(s) = reborn.sessions() {
        assert_eq!(s.get("s1").await.unwrap(), None);
    }
    let reborn_usage = reborn.usage().await.unwrap();
    assert_eq!(
        (
            reborn_usage.keys,
            reborn_usage.bytes,
            reborn_usage.documents
        ),
        (0, 0, 0)
    );
    assert!(
        system
            .kv()
            .list_keys(KeyRange::prefix("t/acme/"), None)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        globex.kv().get(&key("plan")).await.unwrap().unwrap(),
        "globex's plan"
    );
    assert_eq!(globex.documents().unwrap().count().await.unwrap(), 2);
    assert_eq!(
        globex
            .vectors()
            .unwrap()
            .count("notes", None)
            .await
            .unwrap(),
        1
    );
    assert_eq!(system.documents().unwrap().count().await.unwrap(), 1);
    assert_eq!(
        system.kv().get(&key("plan")).await.unwrap().unwrap(),
        "the system's plan"
    );
    if system.analytics().is_some() {
        let window = hybridstore::analytics::TimeWindow::all();
        assert_eq!(reborn.access_usage(window).await.unwrap(), None);
    }
    // Deleting a tenant that was never registered reports it.
    assert!(!system.delete_tenant("never").await.unwrap().registered);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_are_confined_on_every_engine_over_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let system = HybridStorageSystem::open(config(dir.path(), PrimaryStore::Sql, true))
        .await
        .unwrap();
    confined_on_every_engine(&system).await;
    system.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_are_confined_on_every_engine_over_a_file_primary() {
    let dir = tempfile::tempdir().unwrap();
    let system = HybridStorageSystem::open(config(dir.path(), PrimaryStore::File, false))
        .await
        .unwrap();
    confined_on_every_engine(&system).await;
    system.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_are_confined_on_every_engine_over_postgres() {
    let Some(db) = hybridstore::sql::testing::PostgresTestDatabase::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path(), PrimaryStore::Sql, false);
    config.sql_url = Some(db.url().to_string().into());
    config.dedup = false;
    let system = HybridStorageSystem::open(config).await.unwrap();
    confined_on_every_engine(&system).await;
    system.shutdown().await.unwrap();
}

/// Quotas: sixteen writers racing for a byte quota that fits ten of them get exactly ten
/// through; key quotas hold for batches; a streamed value over what is left is refused and
/// leaves nothing; shrinking overwrites and deletes are allowed over the quota; a new quota
/// applies at once; the vector quota holds for documents and for the tenant's collections;
/// the figures survive a reopen (counted from the namespace).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_hold_against_concurrent_writers() {
    let dir = tempfile::tempdir().unwrap();
    let system = HybridStorageSystem::open(config(dir.path(), PrimaryStore::Sql, false))
        .await
        .unwrap();
    system
        .set_tenant_quota("acme", TenantQuota::unlimited().with_max_bytes(10_000))
        .await
        .unwrap();
    let acme = system.tenant("acme").await.unwrap();
    let mut writers = tokio::task::JoinSet::new();
    for i in 0..16 {
        let kv = acme.kv().clone();
        writers.spawn(async move {
            kv.put(&key(&format!("k{i:02}")), vec![i as u8; 1000].into())
                .await
        });
    }
    let mut allowed = 0;
    while let Some(result) = writers.join_next().await {
        match result.unwrap() {
            Ok(_) => allowed += 1,
            Err(e) => assert_eq!(e.kind(), ErrorKind::QuotaExceeded, "{e}"),
        }
    }
    assert_eq!(allowed, 10);
    let usage = acme.usage().await.unwrap();
    assert_eq!((usage.keys, usage.bytes), (10, 10_000));
    let held = acme.kv().list_keys(KeyRange::all(), None).await.unwrap();
    assert_eq!(held.len(), 10, "every refused write left nothing");

    // Full: one more byte is refused, a shrinking overwrite and a delete are not.
    let err = acme
        .kv()
        .put(&key("one-more"), "x".into())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::QuotaExceeded);
    assert!(err.to_string().contains("acme"), "{err}");
    acme.kv()
        .put(&held[0], vec![0u8; 400].into())
        .await
        .unwrap();
    acme.kv().delete(&held[1]).await.unwrap();
    assert_eq!(acme.usage().await.unwrap().bytes, 8_400);

    // A streamed value over what is left (1,600 bytes) is refused and leaves no key; one
    // that fits is stored.
    let mut big: &[u8] = &[1u8; 5_000];
    let err = acme
        .kv()
        .put_stream(&key("stream"), &mut big, &Default::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::QuotaExceeded, "{err}");
    assert_eq!(acme.kv().get(&key("stream")).await.unwrap(), None);
    let mut small: &[u8] = &[1u8; 1_600];
    acme.kv()
        .put_stream(&key("stream"), &mut small, &Default::default())
        .await
        .unwrap();
    assert_eq!(acme.usage().await.unwrap().bytes, 10_000);

    // A key quota, checked on a batch as a whole.
    system
        .set_tenant_quota(
            "acme",
            TenantQuota::unlimited()
                .with_max_keys(12)
                .with_max_vectors(3),
        )
        .await
        .unwrap();
    let mut batch = WriteBatch::new();
    for i in 0..3 {
        batch.put(key(&format!("b{i}")), "v");
    }
    let err = acme.kv().write_batch(batch).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::QuotaExceeded, "10 keys + 3 > 12");
    assert_eq!(
        acme.kv().get(&key("b0")).await.unwrap(),
        None,
        "all or nothing"
    );
    let mut batch = WriteBatch::new();
    batch
        .delete(held[2].clone())
        .put(key("b0"), "v")
        .put(key("b1"), "v");
    acme.kv().write_batch(batch).await.unwrap();
    assert_eq!(acme.usage().await.unwrap().keys, 11);

    // Vector quota: three records per collection, documents included.
    let docs = acme.documents().unwrap();
    system
        .set_tenant_quota("acme", TenantQuota::unlimited().with_max_vectors(2))
        .await
        .unwrap();
    docs.put(document("acme", "d1", [1.0, 0.0])).await.unwrap();
    docs.put(document("acme", "d2", [0.0, 1.0])).await.unwrap();
    let err = docs
        .put(document("acme", "d3", [0.5, 0.5]))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::QuotaExceeded, "{err}");
    assert_eq!(docs.get("d3").await.unwrap(), None, "no half document");
    assert_eq!(docs.count().await.unwrap(), 2);
    // Another tenant is not held back by acme's quota.
    let globex = system.tenant("globex").await.unwrap();
    globex
        .kv()
        .put(&key("k"), vec![0u8; 20_000].into())
        .await
        .unwrap();

    // The figures are counted again from the namespace by the next process.
    let before = acme.usage().await.unwrap();
    // Handles hold the stack (as `kv()` clones do): dropped before the directory is reopened.
    drop((acme, globex));
    system.shutdown().await.unwrap();
    let system = HybridStorageSystem::open(config(dir.path(), PrimaryStore::Sql, false))
        .await
        .unwrap();
    let acme = system.tenant("acme").await.unwrap();
    let after = acme.usage().await.unwrap();
    assert_eq!((after.keys, after.bytes), (before.keys, before.bytes));
    assert_eq!(after.quota, TenantQuota::unlimited().with_max_vectors(2));
    system.shutdown().await.unwrap();
}

/// With the Redis L2 on, a tenant's cache entries are its own: another tenant reading the
/// same key misses in both tiers, and deleting the tenant leaves none of its entries in
/// Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_cache_entries_stay_its_own_in_both_tiers() {
    let Some(server) = hybridstore_cache::testing::RedisServer::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path(), PrimaryStore::Sql, false);
    config.redis_url = Some(server.url().into());
    let system = HybridStorageSystem::open(config).await.unwrap();
    let acme = system.tenant("acme").await.unwrap();
    let globex = system.tenant("globex").await.unwrap();
    acme.kv().put(&key("hot"), "acme's".into()).await.unwrap();
    for _ in 0..3 {
        assert_eq!(acme.kv().get(&key("hot")).await.unwrap().unwrap(), "acme's");
    }
    assert_eq!(globex.kv().get(&key("hot")).await.unwrap(), None);
    let redis_keys = |pattern: &str| {
        let out = std::process::Command::new("redis-cli")
            .args([
                "-p",
                &server.port().to_string(),
                "--scan",
                "--pattern",
                pattern,
            ])
            .output()
            .expect("redis-cli runs beside redis-server");
        String::from_utf8(out.stdout).unwrap().lines().count()
    };
    assert!(redis_keys("*:v:t/acme/*") > 0, "acme's entry is in the L2");
    assert_eq!(redis_keys("*:v:t/globex/*"), 0);
    let stats = system.cache().unwrap().cache_stats();
    assert!(stats.l1_hits + stats.l2_hits > 0, "{stats:?}");
    system.delete_tenant("acme").await.unwrap();
    assert_eq!(
        redis_keys("*t/acme/*"),
        0,
        "deleting the tenant leaves nothing in Redis"
    );
    let reborn = system.tenant("acme").await.unwrap();
    assert_eq!(reborn.kv().get(&key("hot")).await.unwrap(), None);
    system.shutdown().await.unwrap();
}

/// One step of the property test, by one of two tenants (`t` is 0 or 1).
#[derive(Clone, Debug)]
enum Op {
    Put { t: usize, key: u8, len: usize },
    Delete { t: usize, key: u8 },
    Get { t: usize, key: u8 },
    List { t: usize },
    PutDocument { t: usize, id: u8 },
    DeleteDocument { t: usize, id: u8 },
    GetDocument { t: usize, id: u8 },
    SearchDocuments { t: usize },
    UpsertVector { t: usize, id: u8 },
    GetVector { t: usize, id: u8 },
    SearchVectors { t: usize },
    PutSession { t: usize, id: u8 },
    GetSession { t: usize, id: u8 },
}

fn op() -> impl Strategy<Value = Op> {
    let t = 0..2usize;
    prop_oneof![
        (t.clone(), 0..4u8, 0..64usize).prop_map(|(t, key, len)| Op::Put { t, key, len }),
        (t.clone(), 0..4u8).prop_map(|(t, key)| Op::Delete { t, key }),
        (t.clone(), 0..4u8).prop_map(|(t, key)| Op::Get { t, key }),
        t.clone().prop_map(|t| Op::List { t }),
        (t.clone(), 0..3u8).prop_map(|(t, id)| Op::PutDocument { t, id }),
        (t.clone(), 0..3u8).prop_map(|(t, id)| Op::DeleteDocument { t, id }),
        (t.clone(), 0..3u8).prop_map(|(t, id)| Op::GetDocument { t, id }),
        t.clone().prop_map(|t| Op::SearchDocuments { t }),
        (t.clone(), 0..3u8).prop_map(|(t, id)| Op::UpsertVector { t, id }),
        (t.clone(), 0..3u8).prop_map(|(t, id)| Op::GetVector { t, id }),
        t.clone().prop_map(|t| Op::SearchVectors { t }),
        (t.clone(), 0..3u8).prop_map(|(t, id)| Op::PutSession { t, id }),
        (t, 0..3u8).prop_map(|(t, id)| Op::GetSession { t, id }),
    ]
}

/// What one tenant should see.
#[derive(Default)]
struct Model {
    kv: BTreeMap<Key, Vec<u8>>,
    documents: BTreeSet<String>,
    vectors: BTreeSet<String>,
    sessions: BTreeSet<String>,
}

async fn run_case(system: &HybridStorageSystem, case: usize, ops: Vec<Op>) {
    let tenants = [
        system.tenant(&format!("p{case}a")).await.unwrap(),
        system.tenant(&format!("p{case}b")).await.unwrap(),
    ];
    let mut models = [Model::default(), Model::default()];
    for op in ops {
        match op {
            Op::Put { t, key: k, len } => {
                let name = tenants[t].id().as_str();
                let value: Vec<u8> = format!("{name}:")
                    .bytes()
                    .chain((0..len).map(|i| i as u8))
                    .collect();
                let k = key(&format!("k{k}"));
                tenants[t].kv().put(&k, value.clone().into()).await.unwrap();
                models[t].kv.insert(k, value);
            }
            Op::Delete { t, key: k } => {
                let k = key(&format!("k{k}"));
                tenants[t].kv().delete(&k).await.unwrap();
                models[t].kv.remove(&k);
            }
            Op::Get { t, key: k } => {
                let k = key(&format!("k{k}"));
                let got = tenants[t].kv().get(&k).await.unwrap().map(|b| b.to_vec());
                assert_eq!(got.as_ref(), models[t].kv.get(&k), "tenant {t} read {k:?}");
            }
            Op::List { t } => {
                let keys = tenants[t]
                    .kv()
                    .list_keys(KeyRange::all(), None)
                    .await
                    .unwrap();
                let own: Vec<Key> = keys
                    .into_iter()
                    .filter(|k| !k.as_bytes().starts_with(b".hybridstore/"))
                    .collect();
                assert_eq!(own, models[t].kv.keys().cloned().collect::<Vec<_>>());
            }
            Op::PutDocument { t, id } => {
                let name = tenants[t].id().as_str();
                let id = format!("d{id}");
                let image = [1.0, f32::from(u8::try_from(t).unwrap())];
                tenants[t]
                    .documents()
                    .unwrap()
                    .put(document(name, &id, image))
                    .await
                    .unwrap();
                models[t].documents.insert(id);
            }
            Op::DeleteDocument { t, id } => {
                let id = format!("d{id}");
                let existed = tenants[t].documents().unwrap().delete(&id).await.unwrap();
                assert_eq!(existed, models[t].documents.remove(&id));
            }
            Op::GetDocument { t, id } => {
                let id = format!("d{id}");
                let name = tenants[t].id().as_str();
                let docs = tenants[t].documents().unwrap();
                match docs.get(&id).await.unwrap() {
                    Some(doc) => {
                        assert!(models[t].documents.contains(&id), "tenant {t} read {id}");
                        assert_eq!(doc.filename, format!("{name}/{id}"));
                        assert_eq!(
                            docs.content(&id).await.unwrap().unwrap(),
                            format!("{name}'s {id}")
                        );
                    }
                    None => assert!(!models[t].documents.contains(&id)),
                }
            }
            Op::SearchDocuments { t } => {
                let name = tenants[t].id().as_str();
                let found: BTreeSet<String> = image_hits(&tenants[t]).await.into_iter().collect();
                let expected: BTreeSet<String> = models[t]
                    .documents
                    .iter()
                    .map(|id| format!("{name}/{id}"))
                    .collect();
                assert_eq!(found, expected);
            }
            Op::UpsertVector { t, id } => {
                let name = tenants[t].id().as_str();
                let id = format!("v{id}");
                let record = VectorRecord::new(id.clone(), vec![1.0, 0.5]).with_text(name);
                tenants[t]
                    .vectors()
                    .unwrap()
                    .upsert("shared", vec![record])
                    .await
                    .unwrap();
                models[t].vectors.insert(id);
            }
            Op::GetVector { t, id } => {
                let name = tenants[t].id().as_str();
                let id = format!("v{id}");
                let got = tenants[t]
                    .vectors()
                    .unwrap()
                    .get("shared", std::slice::from_ref(&id))
                    .await
                    .unwrap();
                assert_eq!(got.len(), usize::from(models[t].vectors.contains(&id)));
                assert!(got.iter().all(|r| r.text.as_deref() == Some(name)));
            }
            Op::SearchVectors { t } => {
                let name = tenants[t].id().as_str();
                let hits = tenants[t]
                    .vectors()
                    .unwrap()
                    .search("shared", &VectorQuery::new(vec![1.0, 0.5], 10))
                    .await
                    .unwrap();
                let ids: BTreeSet<String> = hits.iter().map(|h| h.id.clone()).collect();
                assert_eq!(ids, models[t].vectors);
                assert!(hits.iter().all(|h| h.text.as_deref() == Some(name)));
            }
            Op::PutSession { t, id } => {
                let name = tenants[t].id().as_str();
                let id = format!("s{id}");
                let sessions = tenants[t].sessions().unwrap();
                sessions
                    .put(&id, &json!({"tenant": name}), Duration::from_secs(600))
                    .await
                    .unwrap();
                models[t].sessions.insert(id);
            }
            Op::GetSession { t, id } => {
                let name = tenants[t].id().as_str();
                let id = format!("s{id}");
                let got = tenants[t].sessions().unwrap().get(&id).await.unwrap();
                assert_eq!(got.is_some(), models[t].sessions.contains(&id));
                if let Some(s) = got {
                    assert_eq!(s.data, json!({"tenant": name}));
                }
            }
        }
    }
}

/// Random sequences of operations of two tenants on every engine (keys, documents, vectors,
/// sessions) against one model per tenant: no read of either ever returns what the other
/// wrote.
#[test]
fn random_operations_of_two_tenants_never_read_across() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let system = runtime
        .block_on(HybridStorageSystem::open(config(
            dir.path(),
            PrimaryStore::Sql,
            false,
        )))
        .unwrap();
    runtime
        .block_on(
            system
                .vectors()
                .unwrap()
                .create_collection(&CollectionSpec::new("shared", 2, Distance::L2)),
        )
        .unwrap();
    let cases = AtomicUsize::new(0);
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 8,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let system = Arc::new(system);
    runner
        .run(&proptest::collection::vec(op(), 1..24), |ops| {
            // Fresh tenants per case (shrinking runs more cases): each starts empty.
            let case = cases.fetch_add(1, Ordering::Relaxed);
            runtime.block_on(run_case(&system, case, ops));
            Ok(())
        })
        .unwrap();
}

/// The conformance suite through a tenant's store (with a quota, so every write is
/// accounted) over the default stack.
mod tenant_conformance {
    use hybridstore::tenants::TenantQuota;
    use hybridstore::{HybridStorageSystem, StorageConfig};
    use hybridstore_core::conformance::Fixture;

    async fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let mut config = StorageConfig::with_data_dir(dir.path());
        config.analytics = false;
        config.vectors = false;
        let system = HybridStorageSystem::open(config).await.unwrap();
        system
            .set_tenant_quota(
                "conformance",
                TenantQuota::unlimited().with_max_bytes(1 << 40),
            )
            .await
            .unwrap();
        let tenant = system.tenant("conformance").await.unwrap();
        Fixture::with_guard(tenant.kv().clone(), (system, dir))
    }
    hybridstore_core::conformance_tests!(fixture);
}
