//! Documents, sessions and settings on both backends.

use std::time::Duration;

use hybridstore_core::ErrorKind;
use hybridstore_sql::{Document, MAX_ID_LEN, SqlStore};
use serde_json::json;

fn doc(id: &str, filename: &str, hash: &str) -> Document {
    Document {
        doc_id: id.to_string(),
        filename: filename.to_string(),
        size: id.len() as u64 * 100,
        content_hash: hash.to_string(),
        created_at: std::time::SystemTime::now(),
        metadata: json!({"id": id, "tags": ["a", "b"], "nested": {"n": 1.5}}),
    }
}

/// Millisecond precision: what the tables store.
fn truncated(mut d: Document) -> Document {
    let ms = d
        .created_at
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    d.created_at = std::time::UNIX_EPOCH + Duration::from_millis(ms as u64);
    d
}

async fn documents(store: &SqlStore) {
    let docs = store.documents();
    let a = doc("a", "reports/2026/q1.pdf", "h1");
    let b = doc("b", "reports/2026/q2.pdf", "h2");
    let c = doc("c", "reports/2027/q1.pdf", "h1");
    let d = doc("d", "reports_old/x.pdf", "h3");
    let e = doc("e", "reports%/_.pdf", "h1");
    for x in [&a, &b, &c, &d, &e] {
        docs.put(x).await.unwrap();
    }
    assert_eq!(docs.count().await.unwrap(), 5);
    assert_eq!(docs.get("a").await.unwrap(), Some(truncated(a.clone())));
    assert_eq!(docs.get("zz").await.unwrap(), None);

    // Find duplicates by content hash.
    let dups: Vec<_> = docs
        .by_content_hash("h1", 100)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.doc_id)
        .collect();
    assert_eq!(dups, ["a", "c", "e"]);

    // Filename prefix: byte-wise, no wildcards, paged.
    let page1 = docs.by_filename_prefix("reports/", None, 2).await.unwrap();
    let ids: Vec<_> = page1.iter().map(|d| d.doc_id.as_str()).collect();
    assert_eq!(ids, ["a", "b"]);
    let page2 = docs
        .by_filename_prefix("reports/", page1.last(), 2)
        .await
        .unwrap();
    let ids: Vec<_> = page2.iter().map(|d| d.doc_id.as_str()).collect();
    assert_eq!(ids, ["c"]);
    let wild = docs.by_filename_prefix("reports%", None, 10).await.unwrap();
    assert_eq!(wild.len(), 1, "% must not act as a wildcard");

    // Page through everything by id.
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = docs.list(after.as_deref(), 2).await.unwrap();
        if page.is_empty() {
            break;
        }
        after = page.last().map(|d| d.doc_id.clone());
        seen.extend(page.into_iter().map(|d| d.doc_id));
    }
    assert_eq!(seen, ["a", "b", "c", "d", "e"]);

    // Update keeps created_at; delete reports existence.
    let mut a2 = a.clone();
    a2.filename = "moved.pdf".into();
    a2.created_at = std::time::UNIX_EPOCH;
    docs.put(&a2).await.unwrap();
    let stored = docs.get("a").await.unwrap().unwrap();
    assert_eq!(stored.filename, "moved.pdf");
    assert_eq!(stored.created_at, truncated(a).created_at);
    assert!(docs.delete("a").await.unwrap());
    assert!(!docs.delete("a").await.unwrap());

    // Invalid input is refused with InvalidInput, not a database error.
    let err = docs.put(&doc("", "f", "h")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    let long = "x".repeat(MAX_ID_LEN + 1);
    assert_eq!(
        docs.get(&long).await.unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    let mut huge = doc("h", "f", "h");
    huge.metadata = json!("y".repeat(hybridstore_sql::MAX_JSON_LEN));
    assert_eq!(
        docs.put(&huge).await.unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
}

async fn sessions(store: &SqlStore) {
    let sessions = store.sessions();
    let live = sessions
        .put("live", &json!({"user": 7}), Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(live.data, json!({"user": 7}));
    assert_eq!(sessions.get("live").await.unwrap(), Some(live.clone()));

    // A session that has already expired reads as absent, cannot be touched back to life,
    // and is what delete_expired removes.
    sessions
        .put("gone", &json!(null), Duration::ZERO)
        .await
        .expect_err("a zero-ttl session is expired before it can be read back");
    assert_eq!(sessions.get("gone").await.unwrap(), None);
    assert!(
        !sessions
            .touch("gone", Duration::from_secs(60))
            .await
            .unwrap()
    );
    assert!(
        sessions
            .touch("live", Duration::from_secs(7200))
            .await
            .unwrap()
    );
    let touched = sessions.get("live").await.unwrap().unwrap();
    assert!(touched.expires_at > live.expires_at);
    assert_eq!(touched.created_at, live.created_at);
    assert_eq!(sessions.delete_expired().await.unwrap(), 1);
    assert_eq!(sessions.delete_expired().await.unwrap(), 0);
    assert!(sessions.delete("live").await.unwrap());
    assert_eq!(sessions.get("live").await.unwrap(), None);
}

async fn settings(store: &SqlStore) {
    let settings = store.settings();
    settings.set("theme", &json!("dark")).await.unwrap();
    settings
        .set("limits", &json!({"max": 10, "list": [1, 2]}))
        .await
        .unwrap();
    let first = settings.get("theme").await.unwrap().unwrap();
    settings.set("theme", &json!("light")).await.unwrap();
    let second = settings.get("theme").await.unwrap().unwrap();
    assert_eq!(second.value, json!("light"));
    assert!(second.updated_at >= first.updated_at);
    let keys: Vec<_> = settings
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.key)
        .collect();
    assert_eq!(keys, ["limits", "theme"]);
    assert!(settings.delete("theme").await.unwrap());
    assert_eq!(settings.get("theme").await.unwrap(), None);
}

#[tokio::test]
async fn sqlite_documents() {
    let (store, _dir) = super::sqlite_store().await;
    documents(&store).await;
}

#[tokio::test]
async fn sqlite_sessions() {
    let (store, _dir) = super::sqlite_store().await;
    sessions(&store).await;
}

#[tokio::test]
async fn sqlite_settings() {
    let (store, _dir) = super::sqlite_store().await;
    settings(&store).await;
}

#[tokio::test]
async fn postgres_documents() {
    let Some((store, _db)) = super::postgres_store().await else {
        return;
    };
    documents(&store).await;
}

#[tokio::test]
async fn postgres_sessions() {
    let Some((store, _db)) = super::postgres_store().await else {
        return;
    };
    sessions(&store).await;
}

#[tokio::test]
async fn postgres_settings() {
    let Some((store, _db)) = super::postgres_store().await else {
        return;
    };
    settings(&store).await;
}

/// A read snapshot sees the database as it was when it was taken: keys and documents written,
/// overwritten or deleted afterwards are invisible to it and visible to the store; a new
/// snapshot sees the new state.
async fn read_snapshot(store: &SqlStore) {
    use hybridstore_core::{Key, KvStore};
    let (a, b) = (Key::new("a").unwrap(), Key::new("b").unwrap());
    store.put(&a, "one".into()).await.unwrap();
    store
        .documents()
        .put(&doc("d1", "x.md", "h1"))
        .await
        .unwrap();
    let snapshot = store.read_snapshot().await.unwrap();
    store.put(&a, "two".into()).await.unwrap();
    store.put(&b, "new".into()).await.unwrap();
    store.documents().delete("d1").await.unwrap();
    store
        .documents()
        .put(&doc("d2", "y.md", "h2"))
        .await
        .unwrap();

    assert_eq!(snapshot.get(&a).await.unwrap().unwrap().as_ref(), b"one");
    assert_eq!(snapshot.get(&b).await.unwrap(), None);
    assert_eq!(snapshot.key_count().await.unwrap(), 1);
    assert_eq!(
        snapshot.document("d1").await.unwrap().unwrap().filename,
        "x.md"
    );
    assert_eq!(snapshot.document("d2").await.unwrap(), None);
    assert_eq!(snapshot.count_documents().await.unwrap(), 1);
    assert_eq!(
        snapshot.document("").await.unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    assert_eq!(store.get(&a).await.unwrap().unwrap().as_ref(), b"two");
    assert_eq!(store.documents().get("d1").await.unwrap(), None);
    snapshot.close().await.unwrap();

    let now = store.read_snapshot().await.unwrap();
    assert_eq!(now.get(&a).await.unwrap().unwrap().as_ref(), b"two");
    assert_eq!(now.key_count().await.unwrap(), 2);
    assert_eq!(now.document("d2").await.unwrap().unwrap().filename, "y.md");
    drop(now);
    // The store goes on after snapshots end (closed or dropped).
    store.put(&b, "after".into()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_read_snapshot() {
    let (store, _dir) = super::sqlite_store().await;
    read_snapshot(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_read_snapshot() {
    let Some((store, _db)) = super::postgres_store().await else {
        return;
    };
    read_snapshot(&store).await;
}

/// Two tenants and the rows of no tenant share the tables but never each other's rows: the
/// same ids live side by side, every call sees its own, and deleting a tenant's rows leaves
/// the others.
async fn tenant_rows(store: &SqlStore) {
    use hybridstore_core::TenantId;
    let acme = TenantId::new("acme").unwrap();
    let globex = TenantId::new("globex").unwrap();
    let (a, g, none) = (
        store.tenant_documents(&acme),
        store.tenant_documents(&globex),
        store.documents(),
    );
    a.put(&doc("x", "acme/x.pdf", "h1")).await.unwrap();
    a.put(&doc("y", "acme/y.pdf", "h1")).await.unwrap();
    g.put(&doc("x", "globex/x.pdf", "h1")).await.unwrap();
    none.put(&doc("x", "system/x.pdf", "h1")).await.unwrap();
    assert_eq!(a.get("x").await.unwrap().unwrap().filename, "acme/x.pdf");
    assert_eq!(g.get("x").await.unwrap().unwrap().filename, "globex/x.pdf");
    assert_eq!(
        none.get("x").await.unwrap().unwrap().filename,
        "system/x.pdf"
    );
    assert_eq!(g.get("y").await.unwrap(), None);
    assert_eq!((a.count().await.unwrap(), g.count().await.unwrap()), (2, 1));
    assert_eq!(none.count().await.unwrap(), 1);
    let ids = |docs: Vec<Document>| docs.into_iter().map(|d| d.filename).collect::<Vec<_>>();
    assert_eq!(
        ids(g.by_content_hash("h1", 10).await.unwrap()),
        ["globex/x.pdf"]
    );
    assert_eq!(ids(g.list(None, 10).await.unwrap()), ["globex/x.pdf"]);
    assert!(
        ids(a.by_filename_prefix("", None, 10).await.unwrap())
            .iter()
            .all(|f| f.starts_with("acme/"))
    );
    let mut many = ids(a.get_many(&["x", "y", "missing"]).await.unwrap());
    many.sort();
    assert_eq!(
        many,
        ["acme/x.pdf", "acme/y.pdf"],
        "get_many: one query, the tenant's rows"
    );
    assert_eq!(ids(g.get_many(&["y"]).await.unwrap()), Vec::<String>::new());
    assert_eq!(ids(none.get_many(&["x"]).await.unwrap()), ["system/x.pdf"]);
    let hundreds: Vec<String> = (0..1200).map(|i| format!("n{i}")).collect();
    let refs: Vec<&str> = hundreds.iter().map(String::as_str).chain(["x"]).collect();
    assert_eq!(
        a.get_many(&refs).await.unwrap().len(),
        1,
        "over several queries"
    );
    assert!(a.get_many(&[""]).await.is_err());
    assert!(!g.delete("y").await.unwrap(), "globex has no y");
    assert!(a.get("y").await.unwrap().is_some());

    let ttl = Duration::from_secs(3600);
    let (sa, sg) = (store.tenant_sessions(&acme), store.tenant_sessions(&globex));
    sa.put("s", &json!({"who": "acme"}), ttl).await.unwrap();
    sg.put("s", &json!({"who": "globex"}), ttl).await.unwrap();
    assert_eq!(
        sa.get("s").await.unwrap().unwrap().data,
        json!({"who": "acme"})
    );
    assert_eq!(store.sessions().get("s").await.unwrap(), None);
    assert!(!store.sessions().touch("s", ttl).await.unwrap());
    assert_eq!(
        (sa.count().await.unwrap(), sg.count().await.unwrap()),
        (1, 1)
    );

    assert_eq!(store.delete_tenant_rows(&acme).await.unwrap(), (2, 1));
    assert_eq!(a.count().await.unwrap(), 0);
    assert_eq!(sa.get("s").await.unwrap(), None);
    assert_eq!(g.get("x").await.unwrap().unwrap().filename, "globex/x.pdf");
    assert_eq!(
        sg.get("s").await.unwrap().unwrap().data,
        json!({"who": "globex"})
    );
    assert_eq!(none.count().await.unwrap(), 1);
}

#[tokio::test]
async fn sqlite_tenant_rows() {
    let (store, _dir) = super::sqlite_store().await;
    tenant_rows(&store).await;
}

#[tokio::test]
async fn postgres_tenant_rows() {
    let Some((store, _db)) = super::postgres_store().await else {
        return;
    };
    tenant_rows(&store).await;
}

/// A database made by schema version 1 (no tenant column) opens with its documents and
/// sessions kept as rows of no tenant.
#[tokio::test]
async fn a_version_1_sqlite_database_migrates_its_rows_to_no_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let v1 = dir.path().join("v1");
    std::fs::create_dir(&v1).unwrap();
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/migrations/sqlite/0001_schema.sql"
        ),
        v1.join("0001_schema.sql"),
    )
    .unwrap();
    let path = dir.path().join("kv.db");
    {
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true);
        let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
        sqlx::migrate::Migrator::new(v1.as_path())
            .await
            .unwrap()
            .run(&pool)
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO documents (doc_id, filename, size, content_hash, created_at, metadata) \
             VALUES ('old', 'old.txt', 3, 'h', 1000, '{\"k\": 1}')",
        )
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO sessions (session_id, data, created_at, last_accessed, expires_at) \
             VALUES ('s', '{}', 1000, 1000, 9000000000000)",
        )
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;
    }
    let store = SqlStore::open_sqlite_file(&path, Default::default())
        .await
        .unwrap();
    let old = store.documents().get("old").await.unwrap().unwrap();
    assert_eq!(
        (old.filename.as_str(), old.metadata.clone()),
        ("old.txt", json!({"k": 1}))
    );
    assert!(store.sessions().get("s").await.unwrap().is_some());
    let acme = hybridstore_core::TenantId::new("acme").unwrap();
    assert_eq!(
        store.tenant_documents(&acme).get("old").await.unwrap(),
        None
    );
    // The new key: the same id in a tenant is another row.
    store
        .tenant_documents(&acme)
        .put(&doc("old", "acme.txt", "h"))
        .await
        .unwrap();
    assert_eq!(
        store
            .documents()
            .get("old")
            .await
            .unwrap()
            .unwrap()
            .filename,
        "old.txt"
    );
}
