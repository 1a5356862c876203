//! SqlStore: conformance on SQLite and PostgreSQL, operational tables, concurrency, crash
//! safety, hostile input.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers report failures by panicking

mod concurrency;
mod crash;
mod tables;

use hybridstore_core::conformance::Fixture;
use hybridstore_core::{Bytes, ErrorKind, Key, KeyRange, KvStore, WriteBatch};
use hybridstore_sql::testing::PostgresTestDatabase;
use hybridstore_sql::{SqlBackend, SqlStore, SqlStoreOptions};

/// A fresh SQLite store in a temporary directory (dropped after the store).
pub(crate) async fn sqlite_store() -> (SqlStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqlStore::open_sqlite_file(dir.path().join("kv.db"), SqlStoreOptions::default())
        .await
        .expect("open sqlite");
    (store, dir)
}

/// A fresh PostgreSQL store in a database of its own, or `None` (skipped) without a server.
pub(crate) async fn postgres_store() -> Option<(SqlStore, PostgresTestDatabase)> {
    let db = PostgresTestDatabase::create().await?;
    let options = SqlStoreOptions::default().with_max_connections(8);
    let store = SqlStore::open(db.url(), options)
        .await
        .expect("open postgres");
    assert_eq!(store.backend(), SqlBackend::Postgres);
    Some((store, db))
}

async fn sqlite_fixture() -> Fixture {
    let (store, dir) = sqlite_store().await;
    Fixture::with_guard(store, dir)
}

async fn postgres_fixture() -> Option<Fixture> {
    let (store, db) = postgres_store().await?;
    Some(Fixture::with_guard(store, db))
}

mod sqlite_conformance {
    hybridstore_core::conformance_tests!(super::sqlite_fixture);
}

mod sqlite_verified_reads_conformance {
    use hybridstore_core::conformance::Fixture;
    use hybridstore_sql::{SqlStore, SqlStoreOptions};

    async fn fixture() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let options = SqlStoreOptions::default().with_verify_reads(true);
        let store = SqlStore::open_sqlite_file(dir.path().join("kv.db"), options)
            .await
            .expect("open");
        Fixture::with_guard(store, dir)
    }
    hybridstore_core::conformance_tests!(fixture);
}

mod sqlite_in_memory_conformance {
    use hybridstore_core::conformance::Fixture;
    use hybridstore_sql::{SqlStore, SqlStoreOptions};

    async fn fixture() -> Fixture {
        Fixture::new(
            SqlStore::open("sqlite::memory:", SqlStoreOptions::default())
                .await
                .expect("open"),
        )
    }
    hybridstore_core::conformance_tests!(fixture);
}

mod sqlite_namespaced_conformance {
    use hybridstore_core::conformance::Fixture;
    use hybridstore_core::{Namespaced, TenantId};

    async fn fixture() -> Fixture {
        let (store, dir) = super::sqlite_store().await;
        Fixture::with_guard(Namespaced::new(store, TenantId::new("t1").unwrap()), dir)
    }
    hybridstore_core::conformance_tests!(fixture);
}

/// A tenant scope over SqlStore reads many keys with the store's batched query (one
/// `get_many`, answered by `SELECT … WHERE key IN (…)`), not one `get` per key.
#[tokio::test]
async fn a_tenant_scope_reads_many_keys_with_one_batched_query() {
    use std::sync::Arc;

    use hybridstore_core::fault::CallRecorder;
    use hybridstore_core::{Namespaced, TenantId};

    let (store, _dir) = sqlite_store().await;
    let recorder = Arc::new(CallRecorder::new(store));
    let tenant = Namespaced::new(recorder.clone(), TenantId::new("t1").unwrap());
    let keys: Vec<Key> = (0..300).map(|i| key(&format!("doc/{i:03}"))).collect();
    let mut batch = hybridstore_core::WriteBatch::new();
    for k in &keys {
        batch.put(k.clone(), k.to_string());
    }
    tenant.write_batch(batch).await.unwrap();
    recorder.take_calls();

    let values = tenant.get_many(&keys).await.unwrap();
    assert_eq!(
        recorder.take_calls(),
        ["get_many"],
        "one batched read below the tenant layer"
    );
    for (k, v) in keys.iter().zip(&values) {
        assert_eq!(v.as_deref(), Some(k.to_string().as_bytes()), "{k}");
    }
    // The tenant's keys are stored under its prefix, and nothing else is read.
    let outer = recorder.inner().get(&key("t/t1/doc/000")).await.unwrap();
    assert_eq!(outer.as_deref(), Some(&b"doc/000"[..]));
}

mod postgres_conformance {
    hybridstore_core::conformance_tests!(super::postgres_fixture);
}

fn key(s: &str) -> Key {
    Key::new(s.to_string()).unwrap()
}

#[tokio::test]
async fn data_and_metadata_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kv.db");
    let meta = {
        let store = SqlStore::open_sqlite_file(&path, SqlStoreOptions::default())
            .await
            .unwrap();
        let meta = store
            .put_with(
                &key("docs/a.html"),
                Bytes::from_static(b"<p>hi</p>"),
                &hybridstore_core::PutOptions::with_content_type("text/html"),
            )
            .await
            .unwrap();
        store.close().await;
        meta
    };
    let store = SqlStore::open_sqlite_file(&path, SqlStoreOptions::default())
        .await
        .unwrap();
    assert_eq!(store.head(&key("docs/a.html")).await.unwrap(), Some(meta));
    assert_eq!(
        store.get(&key("docs/a.html")).await.unwrap().as_deref(),
        Some(&b"<p>hi</p>"[..])
    );
}

#[tokio::test]
async fn url_forms_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("u.db").display());
    let store = SqlStore::open(&url, SqlStoreOptions::default())
        .await
        .unwrap();
    assert_eq!(store.backend(), SqlBackend::Sqlite);
    store
        .put(&key("k"), Bytes::from_static(b"v"))
        .await
        .unwrap();

    let err = SqlStore::open("mysql://localhost/x", SqlStoreOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);

    // A file that is not a database is reported as such, not as an empty store.
    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, vec![0x5a; 8192]).unwrap();
    let err = SqlStore::open_sqlite_file(&junk, SqlStoreOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupted, "{err}");

    // A directory that does not exist: Unavailable, naming the URL.
    let err = SqlStore::open(
        "sqlite:///nonexistent-dir-hybridstore/x.db",
        SqlStoreOptions::default(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(
        err.to_string().contains("nonexistent-dir-hybridstore"),
        "{err}"
    );
}

/// Keys that look like SQL are only data: bound parameters, never spliced.
#[tokio::test]
async fn hostile_keys_are_data() {
    let (store, _dir) = sqlite_store().await;
    let nasty = [
        "'; DROP TABLE kv_objects; --",
        "\" OR 1=1 --",
        "%",
        "_",
        "\\",
        "x') UNION SELECT 1 --",
    ];
    for (i, k) in nasty.iter().enumerate() {
        store
            .put(&key(k), Bytes::from(format!("v{i}")))
            .await
            .unwrap();
    }
    let mut nul = b"a\0b".to_vec();
    nul.extend_from_slice(&[0xff, 0xfe]);
    store
        .put(&Key::new(nul.clone()).unwrap(), Bytes::from_static(b"bin"))
        .await
        .unwrap();
    for (i, k) in nasty.iter().enumerate() {
        assert_eq!(
            store.get(&key(k)).await.unwrap(),
            Some(Bytes::from(format!("v{i}")))
        );
    }
    assert_eq!(
        store.get(&Key::new(nul).unwrap()).await.unwrap().as_deref(),
        Some(&b"bin"[..])
    );
    // `%` and `_` are not wildcards in prefix scans.
    let under = store.list_keys(KeyRange::prefix("_"), None).await.unwrap();
    assert_eq!(under, vec![key("_")]);
    assert_eq!(store.stats().await.unwrap().keys, nasty.len() as u64 + 1);
}

/// Damaged bytes under a verifying store are `Corrupted`, never returned.
#[tokio::test]
async fn verified_reads_detect_damage() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kv.db");
    let store =
        SqlStore::open_sqlite_file(&path, SqlStoreOptions::default().with_verify_reads(true))
            .await
            .unwrap();
    store
        .put(&key("a"), Bytes::from_static(b"original"))
        .await
        .unwrap();
    // Damage the value behind the store's back, as a disk or another program could.
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.execute("UPDATE kv_objects SET value = x'6f726967696e616c21'", [])
        .unwrap();
    drop(raw);
    let err = store.get(&key("a")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupted);
    let err = store.get_many(&[key("a")]).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupted);
    let report = hybridstore_core::verify::verify_store(&store, KeyRange::all(), 4, |_, _| {})
        .await
        .unwrap();
    assert_eq!(report.damaged.len(), 1);
}

/// Values above the documented limit are refused before any I/O.
#[tokio::test]
async fn oversized_value_is_invalid_input() {
    let (store, _dir) = sqlite_store().await;
    assert_eq!(
        store.capabilities().max_value_len,
        Some(hybridstore_sql::MAX_VALUE_LEN)
    );
    let big = Bytes::from(vec![0u8; hybridstore_sql::MAX_VALUE_LEN as usize + 1]);
    let err = store.put(&key("big"), big.clone()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    let mut batch = WriteBatch::new();
    batch.put(key("big"), big);
    let err = store.write_batch(batch).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(!store.exists(&key("big")).await.unwrap());
}

/// Duplicate contents are found through the checksum index.
#[tokio::test]
async fn keys_with_checksum_finds_duplicates() {
    let (store, _dir) = sqlite_store().await;
    let same = Bytes::from_static(b"same bytes");
    for k in ["b", "a", "c"] {
        store.put(&key(k), same.clone()).await.unwrap();
    }
    store
        .put(&key("d"), Bytes::from_static(b"other"))
        .await
        .unwrap();
    let digest = hybridstore_core::Sha256Digest::of(&same);
    let keys = store.keys_with_checksum(&digest, 10).await.unwrap();
    assert_eq!(keys, vec![key("a"), key("b"), key("c")]);
}

/// After `close`, no read is answered, also not by the `get` fast path's own connections,
/// and SQLite's write-ahead log is folded into the database file.
#[tokio::test]
async fn a_closed_store_answers_no_read_and_leaves_no_wal() {
    let (store, dir) = sqlite_store().await;
    store.put(&key("a"), "alpha".into()).await.unwrap();
    assert_eq!(
        store.get(&key("a")).await.unwrap().as_deref(),
        Some(&b"alpha"[..])
    );
    let wal = dir.path().join("kv.db-wal");
    assert!(wal.exists());
    store.close().await;
    let err = store.get(&key("a")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(
        !wal.exists() || std::fs::metadata(&wal).unwrap().len() == 0,
        "the WAL is checkpointed when the last connection closes"
    );
}
