//! `StorageMigrator` between real stores (FileStore, SQLite, PostgreSQL, the dedup stack),
//! resumed after an interruption; `DualReadStore` under the conformance suite and as a live
//! switch-over.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use futures::TryStreamExt;
use hybridstore::core::{
    ErrorKind, Expect, Key, KeyRange, KvStore, MemoryStore, MetaEntry, PutOptions, WriteBatch,
};
use hybridstore::{
    DualReadStore, MigrateOptions, MigrationEndpoint, PrimaryStore, StorageConfig, StorageMigrator,
};

fn key(s: &str) -> Key {
    Key::new(s.to_string()).unwrap()
}

/// A source with what a migration must carry: many small values, a streamed one (17 MiB),
/// an empty one, a binary key, content types and times far in the past.
async fn fill(store: &dyn KvStore, small: usize) {
    let created = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    let modified = created + Duration::from_nanos(123_456_789);
    let mut batch = WriteBatch::new();
    for i in 0..small {
        batch.put_with(
            key(&format!("docs/{i:05}.html")),
            format!("<p>page {i}</p>").repeat(i % 7 + 1),
            PutOptions::with_content_type("text/html")
                .with_created(created)
                .with_modified(modified),
        );
    }
    batch.put(key("empty"), "");
    batch.put(Key::new(vec![0xff, 0x00, 0x01]).unwrap(), "binary key");
    store.write_batch(batch).await.unwrap();
    store
        .put_with(
            &key("big/video.bin"),
            hybridstore_core::conformance::incompressible(17 << 20, 7),
            &PutOptions::with_content_type("video/mp4"),
        )
        .await
        .unwrap();
}

async fn metas(store: &dyn KvStore) -> Vec<MetaEntry> {
    store
        .scan_meta(KeyRange::all(), None)
        .try_collect()
        .await
        .unwrap()
}

/// Every key of `source` is in `target` with the same bytes and metadata.
async fn assert_same(source: &dyn KvStore, target: &dyn KvStore) {
    let (from, to) = (metas(source).await, metas(target).await);
    assert_eq!(from.len(), to.len(), "key counts differ");
    for (a, b) in from.iter().zip(&to) {
        assert_eq!(a.key, b.key);
        assert_eq!(
            (
                a.meta.size,
                a.meta.checksum,
                &a.meta.content_type,
                a.meta.created,
                a.meta.modified
            ),
            (
                b.meta.size,
                b.meta.checksum,
                &b.meta.content_type,
                b.meta.created,
                b.meta.modified
            ),
            "{}",
            a.key
        );
    }
    let big = key("big/video.bin");
    assert_eq!(
        source.get(&big).await.unwrap(),
        target.get(&big).await.unwrap()
    );
}

/// FileStore data directory (with dedup) → SQLite data directory → a bare SQLite store:
/// everything arrives verified with its metadata; a second run copies nothing; a dry run
/// writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrates_between_data_directories_and_stores_keeping_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let mut base = StorageConfig::with_data_dir(dir.path().join("unused"));
    base.analytics = false;
    base.vectors = false;
    let mut file_config = base.clone();
    file_config.primary = PrimaryStore::File;
    file_config.data_dir = dir.path().join("files");
    {
        let system = hybridstore::HybridStorageSystem::open(file_config)
            .await
            .unwrap();
        fill(system.kv().as_ref(), 700).await;
        system.shutdown().await.unwrap();
    }
    // Opened by location: the directory's primary (files) and dedup are read off it.
    let source = MigrationEndpoint::open(dir.path().join("files").to_str().unwrap(), &base)
        .await
        .unwrap();
    assert!(
        source.describe().contains("file + dedup"),
        "{}",
        source.describe()
    );
    let target = MigrationEndpoint::open(dir.path().join("sqlite").to_str().unwrap(), &base)
        .await
        .unwrap();
    assert!(
        target.describe().contains("sqlite"),
        "{}",
        target.describe()
    );

    let mut dry = MigrateOptions::default();
    dry.dry_run = true;
    let plan = StorageMigrator::new(source.kv(), target.kv())
        .with_options(dry)
        .run(|_| {})
        .await
        .unwrap();
    assert_eq!((plan.source_keys, plan.to_copy, plan.copied), (703, 703, 0));
    assert!(metas(target.kv()).await.is_empty(), "a dry run wrote");

    let done = AtomicU64::new(0);
    let report = StorageMigrator::new(source.kv(), target.kv())
        .run(|p| done.store(p.keys_done, Ordering::Relaxed))
        .await
        .unwrap();
    assert!(report.complete(), "{:?}", report.failures);
    assert_eq!(report.copied, 703);
    assert_eq!(
        done.load(Ordering::Relaxed),
        703,
        "progress reached the end"
    );
    assert_same(source.kv(), target.kv()).await;

    let again = StorageMigrator::new(source.kv(), target.kv())
        .run(|_| {})
        .await
        .unwrap();
    assert_eq!((again.already_migrated, again.copied), (703, 0));

    // A bare SQLite file, and on from there back into a bare FileStore.
    let sqlite = dir.path().join("bare.db");
    let bare = MigrationEndpoint::open(&format!("sqlite://{}", sqlite.display()), &base)
        .await
        .unwrap();
    let files = MigrationEndpoint::open(
        &format!("file://{}", dir.path().join("bare-files").display()),
        &base,
    )
    .await
    .unwrap();
    for (from, to) in [(&target, &bare), (&bare, &files)] {
        let report = StorageMigrator::new(from.kv(), to.kv())
            .run(|_| {})
            .await
            .unwrap();
        assert_eq!((report.copied, report.failures.len()), (703, 0));
    }
    assert_same(source.kv(), files.kv()).await;
    for end in [source, target, bare, files] {
        end.close().await.unwrap();
    }
}

/// An interrupted migration (its future dropped after its first write batch) resumes: the
/// next run copies only what the first did not, and a key changed in the source since is
/// copied again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_migration_resumes_where_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let source = hybridstore::file::FileStore::open(dir.path().join("from"))
        .await
        .unwrap();
    let target =
        hybridstore::sql::SqlStore::open_sqlite_file(dir.path().join("to.db"), Default::default())
            .await
            .unwrap();
    fill(&source, 2_000).await;
    let mut options = MigrateOptions::default();
    options.concurrency = 1;
    let first_batch = tokio::sync::Notify::new();
    let migrator = StorageMigrator::new(&source, &target).with_options(options.clone());
    let interrupted = tokio::select! {
        // Units go in key order: the 17 MiB value alone, then batches of 512.
        report = migrator.run(|p| if p.keys_done > 1 { first_batch.notify_one() }) => Some(report),
        () = first_batch.notified() => None,
    };
    assert!(
        interrupted.is_none(),
        "the migration finished before its first batch was seen"
    );
    let copied_before = metas(&target).await.len() as u64;
    assert!(
        (1..2_003).contains(&copied_before),
        "{copied_before} keys after the interruption"
    );
    // A key the first run copied changes in the source before the second.
    let copied_key = metas(&target).await[0].key.clone();
    source.put(&copied_key, "changed".into()).await.unwrap();

    let resumed = StorageMigrator::new(&source, &target)
        .with_options(options)
        .run(|_| {})
        .await
        .unwrap();
    assert!(resumed.complete(), "{:?}", resumed.failures);
    assert_eq!(resumed.source_keys, 2_003);
    assert_eq!(resumed.already_migrated + resumed.copied, 2_003);
    assert!(
        copied_before > 512,
        "{copied_before}: the first run's batch was not kept"
    );
    assert_eq!(
        resumed.already_migrated,
        copied_before - 1,
        "all the first run copied but the changed key is skipped"
    );
    assert_eq!(resumed.replaced, 1, "the changed key is copied again");
    assert_same(&source, &target).await;
}

/// A FileStore to PostgreSQL (a database of the test's own).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrates_into_postgres() {
    let Some(db) = hybridstore::sql::testing::PostgresTestDatabase::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let base = StorageConfig::with_data_dir(dir.path().join("unused"));
    let source = MigrationEndpoint::open(
        &format!("file://{}", dir.path().join("from").display()),
        &base,
    )
    .await
    .unwrap();
    fill(source.kv(), 300).await;
    let target = MigrationEndpoint::open(db.url(), &base).await.unwrap();
    assert!(
        !target.describe().contains("password"),
        "{}",
        target.describe()
    );
    let report = StorageMigrator::new(source.kv(), target.kv())
        .run(|_| {})
        .await
        .unwrap();
    assert_eq!((report.copied, report.failures.len()), (303, 0));
    assert_same(source.kv(), target.kv()).await;
    target.close().await.unwrap();
}

/// Locations that name nothing this build opens are refused before anything is touched.
#[tokio::test]
async fn unknown_locations_are_invalid_input() {
    let base = StorageConfig::default();
    let err = MigrationEndpoint::open("ftp://example.com/x", &base)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    let mut options = MigrateOptions::default();
    options.concurrency = 0;
    let (a, b) = (MemoryStore::new(), MemoryStore::new());
    let err = StorageMigrator::new(&a, &b)
        .with_options(options)
        .run(|_| {})
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
}

/// The conformance suite over a `DualReadStore` whose old store is empty: every operation's
/// contract holds through the layer.
mod dual_read_conformance {
    use hybridstore::DualReadStore;
    use hybridstore_core::MemoryStore;
    use hybridstore_core::conformance::Fixture;

    async fn fixture() -> Fixture {
        Fixture::new(DualReadStore::new(MemoryStore::new(), MemoryStore::new()))
    }
    hybridstore_core::conformance_tests!(fixture);
}

/// The switch-over: reads fall back to the old store, writes land in the new one keeping the
/// old creation time, deletes remove both copies, scans merge, and a precondition sees the
/// value only the old store holds.
#[tokio::test]
async fn dual_read_store_reads_both_and_writes_new() {
    let (old, new) = (MemoryStore::new(), MemoryStore::new());
    let created = SystemTime::UNIX_EPOCH + Duration::from_secs(1_500_000_000);
    for (k, v) in [("a", "old a"), ("b", "old b"), ("d", "old d")] {
        old.put_with(
            &key(k),
            v.into(),
            &PutOptions::default().with_created(created),
        )
        .await
        .unwrap();
    }
    new.put(&key("c"), "new c".into()).await.unwrap();
    let dual = DualReadStore::new(old.clone(), new.clone());
    assert_eq!(dual.get(&key("a")).await.unwrap().unwrap(), "old a");
    assert_eq!(dual.get(&key("c")).await.unwrap().unwrap(), "new c");
    let many = dual
        .get_many(&[key("a"), key("c"), key("z")])
        .await
        .unwrap();
    assert_eq!(many, vec![Some("old a".into()), Some("new c".into()), None]);

    let meta = dual.put(&key("b"), "new b".into()).await.unwrap();
    assert_eq!(meta.created, created, "the old creation time is kept");
    assert_eq!(new.get(&key("b")).await.unwrap().unwrap(), "new b");
    assert_eq!(
        old.get(&key("b")).await.unwrap().unwrap(),
        "old b",
        "writes never reach the old store"
    );

    dual.delete(&key("a")).await.unwrap();
    assert!(
        dual.get(&key("a")).await.unwrap().is_none(),
        "a deleted key came back"
    );

    let keys: Vec<Key> = dual.list_keys(KeyRange::all(), None).await.unwrap();
    assert_eq!(keys, vec![key("b"), key("c"), key("d")]);
    let limited: Vec<MetaEntry> = dual
        .scan_meta(KeyRange::all(), Some(2))
        .try_collect()
        .await
        .unwrap();
    assert_eq!(limited.len(), 2);

    // "d" exists only in the old store: Absent must fail, its checksum must hold.
    let mut absent = WriteBatch::new();
    absent.expect(key("d"), Expect::Absent).put(key("d"), "x");
    assert_eq!(
        dual.write_batch(absent).await.unwrap_err().kind(),
        ErrorKind::Conflict
    );
    let checksum = old.head(&key("d")).await.unwrap().unwrap().checksum;
    let mut cas = WriteBatch::new();
    cas.expect(key("d"), Expect::Checksum(checksum))
        .put(key("d"), "new d");
    dual.write_batch(cas).await.unwrap();
    assert_eq!(dual.get(&key("d")).await.unwrap().unwrap(), "new d");

    // The background migration leaves what the switch-over wrote alone.
    let mut options = MigrateOptions::default();
    options.only_missing = true;
    let report = StorageMigrator::new(&old, &new)
        .with_options(options)
        .run(|_| {})
        .await
        .unwrap();
    assert!(report.complete(), "{:?}", report.failures);
    assert_eq!((report.copied, report.kept_in_target), (0, 2), "{report:?}");
    assert_eq!(new.get(&key("b")).await.unwrap().unwrap(), "new b");
    assert_eq!(new.get(&key("d")).await.unwrap().unwrap(), "new d");
}
