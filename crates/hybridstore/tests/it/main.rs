//! The facade end to end on a generated tree: ingest, export, verify, stats, configuration.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers report failures by panicking

use std::collections::BTreeMap;
use std::path::Path;

use hybridstore::core::{ErrorKind, Key, KvStore};
use hybridstore::{HybridStorageSystem, PrimaryStore, StorageConfig};

#[cfg(feature = "backup")]
mod backup;
#[cfg(all(feature = "sql", feature = "vectors"))]
mod documents;
mod health;
mod migrate;
#[cfg(feature = "sync")]
mod modes;
mod streaming;
#[cfg(all(feature = "sql", feature = "vectors", feature = "analytics"))]
mod tenants;
mod upkeep;

/// Relative path -> contents of every regular file under `root`.
fn tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_file() {
                let rel = e
                    .path()
                    .strip_prefix(root)
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .to_string();
                out.insert(rel, std::fs::read(e.path()).unwrap());
            }
        }
    }
    out
}

fn make_source(root: &Path) {
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("index.html", b"<html>root</html>".to_vec()),
        ("empty.txt", Vec::new()),
        ("book/ch01.html", b"chapter one".repeat(1000)),
        (
            "book/img/logo.png",
            (0..=255u8).cycle().take(70_000).collect(),
        ),
        ("deep/a/b/c/d/e/f.md", b"# deep".to_vec()),
        (
            "unicode/\u{65e5}\u{672c}\u{8a9e} \u{e9}t\u{e9}.txt",
            b"utf-8 name".to_vec(),
        ),
        (".hidden", b"dotfile".to_vec()),
    ];
    for (rel, data) in files {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }
    std::os::unix::fs::symlink(root.join("index.html"), root.join("link.html")).unwrap();
}

#[tokio::test]
async fn ingest_then_export_is_byte_identical_on_file_primary() {
    ingest_then_export_is_byte_identical(PrimaryStore::File).await;
}

#[tokio::test]
async fn ingest_then_export_is_byte_identical_on_sql_primary() {
    ingest_then_export_is_byte_identical(PrimaryStore::Sql).await;
}

async fn ingest_then_export_is_byte_identical(primary: PrimaryStore) {
    let base = tempfile::tempdir().unwrap();
    let (src, out, data) = (
        base.path().join("src"),
        base.path().join("out"),
        base.path().join("data"),
    );
    make_source(&src);
    let mut config = StorageConfig::with_data_dir(&data);
    config.primary = primary;
    let system = HybridStorageSystem::open(config).await.unwrap();

    let last = std::sync::Mutex::new(None);
    let report = system
        .ingest_dir(&src, "", |p| *last.lock().unwrap() = Some(p))
        .await
        .unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(
        (report.files, report.skipped),
        (7, 1),
        "symlink skipped, the rest stored"
    );
    let progress = last.lock().unwrap().unwrap();
    assert_eq!((progress.files_done, progress.files_total), (7, 7));
    assert_eq!(progress.bytes_done, report.bytes);

    let meta = system
        .kv()
        .head(&Key::new("book/ch01.html").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(meta.content_type.as_deref(), Some("text/html"));

    let exported = system.export_dir(&out, "", |_| {}).await.unwrap();
    assert!(exported.errors.is_empty(), "{:?}", exported.errors);
    let mut expected = tree(&src);
    expected.remove("link.html");
    assert_eq!(tree(&out), expected);

    let stats = system.stats().await.unwrap();
    assert_eq!(stats.kv.keys, 7);
    assert_eq!(stats.kv.logical_bytes, report.bytes);
}

#[tokio::test]
async fn prefixes_keep_trees_apart() {
    let base = tempfile::tempdir().unwrap();
    let src = base.path().join("src");
    make_source(&src);
    let system = HybridStorageSystem::open(StorageConfig::with_data_dir(base.path().join("d")))
        .await
        .unwrap();
    system.ingest_dir(&src, "v1/", |_| {}).await.unwrap();
    system.ingest_dir(&src, "v2/", |_| {}).await.unwrap();
    let out = base.path().join("out");
    let report = system.export_dir(&out, "v2/", |_| {}).await.unwrap();
    assert_eq!(report.files, 7);
    assert!(out.join("book/ch01.html").exists() && !out.join("v2").exists());
}

#[tokio::test]
async fn export_refuses_keys_that_would_escape() {
    let base = tempfile::tempdir().unwrap();
    let system = HybridStorageSystem::open(StorageConfig::with_data_dir(base.path().join("d")))
        .await
        .unwrap();
    for k in ["../escaped", "ok/file", "a//b"] {
        system
            .kv()
            .put(&Key::new(k).unwrap(), "x".into())
            .await
            .unwrap();
    }
    let out = base.path().join("out");
    let report = system.export_dir(&out, "", |_| {}).await.unwrap();
    assert_eq!(report.files, 1);
    assert_eq!(report.errors.len(), 2);
    assert!(!base.path().join("escaped").exists());
}

#[tokio::test]
async fn verify_names_every_damaged_key() {
    let base = tempfile::tempdir().unwrap();
    let data = base.path().join("data");
    let src = base.path().join("src");
    make_source(&src);
    // Whole values in FileStore records, so the test can damage them by path (damage under
    // dedup is tested in hybridstore-dedup and the CLI tests).
    let mut config = StorageConfig::with_data_dir(&data);
    config.primary = PrimaryStore::File;
    config.dedup = false;
    let system = HybridStorageSystem::open(config).await.unwrap();
    system.ingest_dir(&src, "", |_| {}).await.unwrap();
    assert!(system.verify(|_, _| {}).await.unwrap().is_clean());

    // Flip the last byte of two records: "book/ch01.html" is direct-named under 62/ ('b').
    let mut damaged = Vec::new();
    for key in ["book/ch01.html", "index.html"] {
        let name = format!("k{}", hex(&key.as_bytes()[1..]));
        let path = data
            .join("kv/objects")
            .join(hex(&key.as_bytes()[..1]))
            .join(name);
        let mut bytes = std::fs::read(&path).unwrap();
        *bytes.last_mut().unwrap() ^= 0x80;
        std::fs::write(&path, bytes).unwrap();
        damaged.push(key.to_string());
    }
    let report = system.verify(|_, _| {}).await.unwrap();
    assert_eq!(report.checked_keys, 7);
    let names: Vec<_> = report.damaged.iter().map(|d| d.key.clone()).collect();
    assert_eq!(names, damaged);
    assert!(report.damaged.iter().all(|d| d.kind == "corrupted"));
    let err = system
        .kv()
        .get(&Key::new("index.html").unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupted);
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn config_file_values_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hybridstore.toml");
    std::fs::write(&file, "data_dir = \"/srv/store\"\nio_concurrency = 4\n").unwrap();
    let config = StorageConfig::load(Some(&file)).unwrap();
    assert_eq!(config.data_dir, Path::new("/srv/store"));
    assert_eq!(config.io_concurrency, 4);
    assert!(config.verify_reads);

    std::fs::write(&file, "data_dirr = \"typo\"\n").unwrap();
    let err = StorageConfig::load(Some(&file)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("data_dirr"), "{err}");

    std::fs::write(&file, "io_concurrency = 0\n").unwrap();
    assert_eq!(
        StorageConfig::load(Some(&file)).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    assert_eq!(
        StorageConfig::load(Some(&dir.path().join("missing.toml")))
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
}

/// A data directory holding one kind of primary refuses to open as the other, so a wrong
/// setting never shows an empty store over real data.
#[tokio::test]
async fn primary_mismatch_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = StorageConfig::with_data_dir(dir.path());
    config.primary = PrimaryStore::File;
    let system = HybridStorageSystem::open(config.clone()).await.unwrap();
    system
        .kv()
        .put(&Key::new("k").unwrap(), "v".into())
        .await
        .unwrap();
    drop(system);
    config.primary = PrimaryStore::Sql;
    let err = HybridStorageSystem::open(config.clone()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("primary"), "{err}");

    let other = tempfile::tempdir().unwrap();
    config.data_dir = other.path().to_path_buf();
    HybridStorageSystem::open(config.clone()).await.unwrap();
    config.primary = PrimaryStore::File;
    let err = HybridStorageSystem::open(config).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
}

/// Regression (issue 15, defect 5): with `primary = "sql"` and dedup off no lock was taken,
/// so two processes could write one data directory; and a shared PostgreSQL with local
/// chunks was accepted though other nodes could never read those chunks.
#[tokio::test]
async fn one_owner_per_data_directory_and_no_local_chunks_under_shared_manifests() {
    let dir = tempfile::tempdir().unwrap();
    for dedup in [false, true] {
        let mut config = StorageConfig::with_data_dir(dir.path().join(format!("dedup-{dedup}")));
        config.primary = PrimaryStore::Sql;
        config.dedup = dedup;
        config.analytics = false;
        config.vectors = false;
        let first = HybridStorageSystem::open(config.clone()).await.unwrap();
        // A second open takes a second file description, which conflicts exactly as another
        // process would.
        let err = HybridStorageSystem::open(config.clone()).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Locked, "dedup = {dedup}: {err}");
        assert!(err.to_string().contains("in use"), "{err}");
        drop(first);
        HybridStorageSystem::open(config).await.unwrap();
    }

    let mut config = StorageConfig::with_data_dir(dir.path().join("pg"));
    config.sql_url = Some("postgres://postgres@127.0.0.1:5432/postgres".into());
    let err = config.validate().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("dedup"), "{err}");
    config.dedup = false;
    config.validate().unwrap();
}

#[test]
fn primary_and_sql_url_from_config() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hybridstore.toml");
    std::fs::write(&file, "primary = \"sql\"\nsql_url = \"sqlite::memory:\"\n").unwrap();
    let config = StorageConfig::load(Some(&file)).unwrap();
    assert_eq!(config.primary, PrimaryStore::Sql);
    assert_eq!(
        config.sql_url.as_ref().map(|u| u.expose()),
        Some("sqlite::memory:")
    );
    std::fs::write(&file, "primary = \"file\"\nsql_url = \"sqlite::memory:\"\n").unwrap();
    assert_eq!(
        StorageConfig::load(Some(&file)).unwrap_err().kind(),
        ErrorKind::InvalidInput,
        "sql_url with primary = file is a mistake, not silently ignored"
    );
    std::fs::write(&file, "primary = \"lance\"\n").unwrap();
    assert_eq!(
        StorageConfig::load(Some(&file)).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
}

/// The full conformance suite through the facade with a file primary (and dedup).
mod file_primary_conformance {
    use hybridstore::{HybridStorageSystem, PrimaryStore, StorageConfig};
    use hybridstore_core::conformance::Fixture;

    async fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let mut config = StorageConfig::with_data_dir(dir.path());
        config.primary = PrimaryStore::File;
        let system = HybridStorageSystem::open(config).await.unwrap();
        // The system (and so the analytics writer behind the metrics layer) lives as long
        // as the fixture.
        Fixture::with_guard(system.kv().clone(), (system, dir))
    }
    hybridstore_core::conformance_tests!(fixture);
}

/// Dedup through the facade: a second copy of a tree costs (almost) nothing, `stats` says
/// so, garbage collection reclaims a deleted copy, and a data directory written one way
/// refuses to open the other way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dedup_stats_gc_and_mode_mismatch() {
    let base = tempfile::tempdir().unwrap();
    let (src, data) = (base.path().join("src"), base.path().join("data"));
    make_source(&src);
    let config = StorageConfig::with_data_dir(&data);
    assert!(config.dedup, "dedup is the default");
    let system = HybridStorageSystem::open(config.clone()).await.unwrap();
    system.ingest_dir(&src, "one/", |_| {}).await.unwrap();
    let one = system.stats().await.unwrap().dedup.expect("dedup stats");
    system.ingest_dir(&src, "two/", |_| {}).await.unwrap();
    let two = system.stats().await.unwrap().dedup.expect("dedup stats");
    assert_eq!(two.logical_bytes, 2 * one.logical_bytes);
    assert_eq!(
        two.pack_bytes, one.pack_bytes,
        "the second copy adds no chunk bytes"
    );
    assert!(two.dedup_ratio > 1.9, "{two:?}");

    for key in system
        .kv()
        .list_keys(hybridstore::core::KeyRange::prefix("one/"), None)
        .await
        .unwrap()
    {
        system.kv().delete(&key).await.unwrap();
    }
    let gc = system
        .collect_garbage(&hybridstore::dedup::GcOptions::with_grace(
            std::time::Duration::ZERO,
        ))
        .await
        .unwrap();
    assert_eq!(
        gc.chunks_removed, 0,
        "every chunk is still used by two/: {gc:?}"
    );
    assert!(system.verify(|_, _| {}).await.unwrap().is_clean());
    drop(system);

    let mut plain = config.clone();
    plain.dedup = false;
    let err = HybridStorageSystem::open(plain.clone()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    let other = base.path().join("plain");
    plain.data_dir = other.clone();
    let system = HybridStorageSystem::open(plain).await.unwrap();
    system
        .kv()
        .put(&Key::new("k").unwrap(), "v".into())
        .await
        .unwrap();
    drop(system);
    let err = HybridStorageSystem::open(StorageConfig::with_data_dir(&other))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
}

/// The full conformance suite through the facade's primary store.
mod conformance {
    use hybridstore::{HybridStorageSystem, StorageConfig};
    use hybridstore_core::conformance::Fixture;

    async fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let system = HybridStorageSystem::open(StorageConfig::with_data_dir(dir.path()))
            .await
            .unwrap();
        assert!(
            system.analytics().is_some(),
            "the metrics layer is on by default"
        );
        Fixture::with_guard(system.kv().clone(), (system, dir))
    }
    hybridstore_core::conformance_tests!(fixture);
}

/// The cache settings: defaults, TOML, the seed's `REDIS_URL`, `HYBRIDSTORE_*` over it, and
/// passwords hidden from `Debug`.
#[test]
#[allow(clippy::result_large_err)] // figment's Jail closure returns figment::Error by design
fn cache_settings_from_file_and_environment() {
    let default = StorageConfig::default().cache_config().unwrap().unwrap();
    assert_eq!(default.l1_capacity_bytes, 256 << 20, "L1 on by default");
    assert!(default.redis.is_none(), "no L2 without a Redis URL");

    figment::Jail::expect_with(|jail| {
        jail.create_file(
            "store.toml",
            "cache_l1_bytes = 0\nredis_url = \"redis://:from-file@10.0.0.1:6379/\"\n",
        )?;
        let path = jail.directory().join("store.toml");
        let from_file = StorageConfig::load(Some(&path)).unwrap();
        let cache = from_file.cache_config().unwrap().unwrap();
        assert_eq!(cache.l1_capacity_bytes, 0);
        let redis = cache.redis.unwrap();
        assert_eq!(redis.url.expose(), "redis://:from-file@10.0.0.1:6379/");
        assert_eq!(redis.namespace, "default");
        let shown = format!("{from_file:?}");
        assert!(!shown.contains("from-file"), "{shown}");
        assert!(shown.contains("redis://:***@10.0.0.1:6379/"), "{shown}");

        jail.set_env("REDIS_URL", "redis://seed-style:6379/");
        let seed = StorageConfig::load(Some(&path)).unwrap();
        assert_eq!(seed.redis_url.unwrap().expose(), "redis://seed-style:6379/");
        jail.set_env("HYBRIDSTORE_REDIS_URL", "redis://ours:6379/");
        jail.set_env("HYBRIDSTORE_REDIS_NAMESPACE", "tenant-7");
        let ours = StorageConfig::load(None).unwrap();
        assert_eq!(
            ours.redis_url.as_ref().unwrap().expose(),
            "redis://ours:6379/"
        );
        assert_eq!(
            ours.cache_config()
                .unwrap()
                .unwrap()
                .redis
                .unwrap()
                .namespace,
            "tenant-7"
        );

        jail.set_env("HYBRIDSTORE_REDIS_NAMESPACE", "bad:namespace");
        assert_eq!(
            StorageConfig::load(None).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
        Ok(())
    });
}

/// Regression (issue 15, defect 3): every `HYBRIDSTORE_*` variable was read as a field, so
/// the CLI's own `HYBRIDSTORE_CONFIG` or a test's `HYBRIDSTORE_TEST_POSTGRES_URL` made every
/// load fail with "unknown field". Those are ignored now; a misspelled configuration variable
/// still fails, naming the variable.
#[test]
#[allow(clippy::result_large_err)] // figment's Jail closure returns figment::Error by design
fn variables_for_other_purposes_are_not_configuration() {
    figment::Jail::expect_with(|jail| {
        jail.set_env("HYBRIDSTORE_CONFIG", "/etc/hybridstore.toml");
        jail.set_env("HYBRIDSTORE_TEST_POSTGRES_URL", "postgres://x@127.0.0.1/y");
        jail.set_env("HYBRIDSTORE_CRASH_SEED", "7");
        jail.set_env("HYBRIDSTORE_ANALYTICS_CHILD_DB", "/tmp/x.duckdb");
        jail.set_env("HYBRIDSTORE_IO_CONCURRENCY", "3");
        let config = StorageConfig::load(None).unwrap();
        assert_eq!(
            config.io_concurrency, 3,
            "real configuration variables still apply"
        );

        jail.set_env("HYBRIDSTORE_DATA_DRI", "/tmp/typo");
        let err = StorageConfig::load(None).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert!(
            err.to_string().contains("HYBRIDSTORE_DATA_DRI"),
            "the error names the misspelled variable: {err}"
        );
        assert!(err.to_string().contains("HYBRIDSTORE_DATA_DIR"), "{err}");
        Ok(())
    });
}

/// `load_explained` tells where each value came from (default, the file, a `HYBRIDSTORE_*`
/// variable, a seed variable), shows URL passwords as `***`, and a validation error names the
/// source of the fields it is about.
#[test]
#[allow(clippy::result_large_err)] // figment's Jail closure returns figment::Error by design
fn explained_configuration_names_each_source() {
    use hybridstore::ValueSource;
    figment::Jail::expect_with(|jail| {
        jail.create_file(
            "store.toml",
            "io_concurrency = 5\nredis_url = \"redis://:hunter2@10.0.0.1:6379/\"\n\n\
             [backup_schedule]\nrepository = \"/backups\"\n",
        )?;
        let path = jail.directory().join("store.toml");
        jail.set_env("HYBRIDSTORE_VERIFY_READS", "false");
        jail.set_env("S3_BUCKET", "seed-bucket");
        let (config, explained) = StorageConfig::load_explained(Some(&path)).unwrap();
        assert_eq!(config.io_concurrency, 5);
        let entry = |field: &str| {
            explained
                .entries
                .iter()
                .find(|e| e.field == field)
                .unwrap_or_else(|| panic!("no entry for {field}: {explained:?}"))
                .clone()
        };
        assert_eq!(
            entry("io_concurrency").source,
            ValueSource::File(path.clone())
        );
        assert_eq!(entry("io_concurrency").value, "5");
        assert_eq!(
            entry("backup_schedule.repository").source,
            ValueSource::File(path.clone())
        );
        assert_eq!(
            entry("verify_reads").source,
            ValueSource::Env("HYBRIDSTORE_VERIFY_READS".into())
        );
        assert_eq!(entry("verify_reads").value, "false");
        assert_eq!(
            entry("s3_bucket").source,
            ValueSource::Env("S3_BUCKET".into())
        );
        assert_eq!(entry("s3_bucket").value, "seed-bucket");
        assert_eq!(entry("dedup").source, ValueSource::Default);
        assert_eq!(entry("dedup").value, "true");
        assert_eq!(
            entry("sql_url").value,
            "none",
            "unset optional fields are listed"
        );
        assert_eq!(entry("redis_url").value, "redis://:***@10.0.0.1:6379/");
        let all = format!("{explained:?}");
        assert!(!all.contains("hunter2"), "a password leaked: {all}");

        // A validation error names the offending field's source.
        jail.set_env("HYBRIDSTORE_IO_CONCURRENCY", "0");
        let err = StorageConfig::load_explained(Some(&path)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert!(
            err.to_string()
                .contains("io_concurrency from environment variable HYBRIDSTORE_IO_CONCURRENCY"),
            "{err}"
        );
        Ok(())
    });
}

/// `verify` and `export` read the stores, not the cache: damage under a cached value is
/// still found.
#[tokio::test]
async fn verify_reads_past_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = StorageConfig::with_data_dir(dir.path());
    config.primary = PrimaryStore::File;
    config.dedup = false;
    let system = HybridStorageSystem::open(config).await.unwrap();
    let key = Key::new("a").unwrap();
    system.kv().put(&key, "cached value".into()).await.unwrap();
    assert!(system.kv().get(&key).await.unwrap().is_some()); // now in L1
    let record = dir.path().join("kv/objects/61/k");
    let mut bytes = std::fs::read(&record).unwrap();
    *bytes.last_mut().unwrap() ^= 0x01;
    std::fs::write(&record, bytes).unwrap();
    let report = system.verify(|_, _| {}).await.unwrap();
    assert_eq!(report.damaged.len(), 1, "{report:?}");
    let stats = system.stats().await.unwrap();
    assert_eq!(stats.cache.unwrap().l1_hits, 0);
}

/// The conformance suite through the facade with the Redis L2 on.
mod redis_cache_conformance {
    use hybridstore::{HybridStorageSystem, StorageConfig};
    use hybridstore_cache::testing::RedisServer;
    use hybridstore_core::conformance::Fixture;

    async fn fixture() -> Option<Fixture> {
        let server = RedisServer::start()?;
        let dir = tempfile::tempdir().unwrap();
        let mut config = StorageConfig::with_data_dir(dir.path());
        config.redis_url = Some(server.url().into());
        let system = HybridStorageSystem::open(config).await.unwrap();
        assert!(system.cache().unwrap().config().redis.is_some());
        Some(Fixture::with_guard(
            system.kv().clone(),
            (system, dir, server),
        ))
    }
    hybridstore_core::conformance_tests!(fixture);
}

/// The metrics layer records one event per operation, with the cache tier of each get, and
/// the reports read them back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_layer_records_every_operation() {
    use hybridstore::analytics::{CacheHitRates, TenantUsage, TimeWindow};
    use hybridstore::core::WriteBatch;
    let dir = tempfile::tempdir().unwrap();
    let system = HybridStorageSystem::open(StorageConfig::with_data_dir(dir.path()))
        .await
        .unwrap();
    let kv = system.kv();
    let (a, b, c) = (
        Key::new("a").unwrap(),
        Key::new("b").unwrap(),
        Key::new("c").unwrap(),
    );
    kv.put(&a, "alpha".into()).await.unwrap();
    kv.put(&b, "bravo!".into()).await.unwrap();
    for _ in 0..5 {
        assert!(kv.get(&a).await.unwrap().is_some());
    }
    assert!(
        kv.get(&Key::new("missing").unwrap())
            .await
            .unwrap()
            .is_none()
    );
    kv.get_many(&[a.clone(), b.clone()]).await.unwrap();
    let mut batch = WriteBatch::new();
    batch.put(c.clone(), "charlie").delete(b.clone());
    kv.write_batch(batch).await.unwrap();
    assert!(kv.get(&a).await.unwrap().is_some()); // still in L1: the batch touched b and c

    let analytics = system.analytics().unwrap();
    analytics.flush().unwrap();
    let stats = system.stats().await.unwrap().analytics.unwrap();
    assert_eq!(stats.written, stats.accepted);
    assert_eq!(stats.dropped_full, 0);

    let reader = analytics.reader().clone();
    let (hot, cache, tenants, latency) = tokio::task::spawn_blocking(move || {
        let w = TimeWindow::all();
        (
            reader.hot_keys(w, 10).unwrap(),
            reader.cache_hit_rates(w).unwrap(),
            reader.tenant_usage(w).unwrap(),
            reader.latency_percentiles(w).unwrap(),
        )
    })
    .await
    .unwrap();
    // a: 6 gets + 1 in get_many; b: 1 in get_many; missing: 1.
    assert_eq!(hot[0].key.as_deref(), Some("a"));
    assert_eq!(hot[0].reads, 7);
    assert_eq!(hot[0].bytes, 7 * 5);
    assert_eq!(hot.len(), 3);
    // The first gets of a and of missing miss L1; the other five gets of a hit it.
    assert_eq!(
        cache,
        CacheHitRates {
            lookups: 7,
            l1_hits: 5,
            l2_hits: 0,
            misses: 2,
            l1_hit_rate: Some(5.0 / 7.0),
            l2_hit_rate: Some(0.0),
            overall_hit_rate: Some(5.0 / 7.0),
        }
    );
    // a (5 bytes) and c (7 bytes) remain; b was deleted in the batch.
    assert_eq!(
        tenants,
        vec![TenantUsage {
            tenant: None,
            objects: 2,
            bytes: 12
        }]
    );
    assert!(
        latency
            .iter()
            .any(|r| r.operation == "batch_put" && r.backend == "sqlite")
    );
}

/// With `analytics = false` there is no metrics layer and no database file.
#[tokio::test]
async fn analytics_can_be_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = StorageConfig::with_data_dir(dir.path());
    config.analytics = false;
    let system = HybridStorageSystem::open(config).await.unwrap();
    system
        .kv()
        .put(&Key::new("k").unwrap(), "v".into())
        .await
        .unwrap();
    assert!(system.analytics().is_none());
    assert!(system.stats().await.unwrap().analytics.is_none());
    assert!(!dir.path().join(hybridstore::ANALYTICS_FILE).exists());
}

/// `ingest_dir` stores the passages of HTML, Markdown and text files; `search` finds them
/// by their words with the document's key; ingesting again replaces them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingested_documents_are_searchable_by_their_words() {
    use hybridstore::core::vector::VectorStore;
    let base = tempfile::tempdir().unwrap();
    let src = base.path().join("src");
    make_source(&src);
    std::fs::write(
        src.join("book/lifetimes.html"),
        "<html><body><nav><p>Contents borrow</p></nav><main><h1>Validating References with \
         Lifetimes</h1><p>The borrow checker compares scopes to determine whether all borrows \
         are valid.</p></main></body></html>",
    )
    .unwrap();
    let system = HybridStorageSystem::open(StorageConfig::with_data_dir(base.path().join("d")))
        .await
        .unwrap();
    let report = system.ingest_dir(&src, "docs/", |_| {}).await.unwrap();
    let passages = report.passages.clone().expect("vectors are on by default");
    // index.html, ch01.html, lifetimes.html, f.md, the two .txt files (not the png, not the
    // extensionless .hidden).
    assert_eq!(passages.documents, 6, "{passages:?}");
    let hits = system.search("borrow checker lifetimes", 5).await.unwrap();
    assert_eq!(hits[0].key, "docs/book/lifetimes.html", "{hits:?}");
    assert!(hits[0].text.contains("borrow checker"));
    assert!(
        hits.iter().all(|h| !h.text.contains("Contents")),
        "navigation is not a passage"
    );
    let chapter = system.search("chapter", 3).await.unwrap();
    assert_eq!(chapter[0].key, "docs/book/ch01.html");

    let store = system.vectors().unwrap();
    let before = store
        .count(hybridstore::PASSAGES_COLLECTION, None)
        .await
        .unwrap();
    assert_eq!(before, passages.passages);
    system.ingest_dir(&src, "docs/", |_| {}).await.unwrap();
    assert_eq!(
        store
            .count(hybridstore::PASSAGES_COLLECTION, None)
            .await
            .unwrap(),
        before,
        "a second ingest replaces passages instead of adding copies"
    );

    // The same tree under another prefix: twice the passages, but each text found once,
    // with the other document named.
    system.ingest_dir(&src, "copy/", |_| {}).await.unwrap();
    let count = || async {
        store
            .count(hybridstore::PASSAGES_COLLECTION, None)
            .await
            .unwrap()
    };
    assert_eq!(count().await, 2 * before);
    let hits = system.search("borrow checker lifetimes", 5).await.unwrap();
    assert_eq!(
        (hits[0].key.as_str(), hits[0].also_in.as_slice()),
        (
            "copy/book/lifetimes.html",
            &["docs/book/lifetimes.html".to_string()][..]
        ),
        "{hits:?}"
    );
    let texts: std::collections::HashSet<&str> = hits.iter().map(|h| h.text.as_str()).collect();
    assert_eq!(texts.len(), hits.len(), "no text twice: {hits:?}");
    // Re-ingesting one prefix replaces its passages and leaves the other prefix's alone.
    system.ingest_dir(&src, "docs/", |_| {}).await.unwrap();
    assert_eq!(count().await, 2 * before);
    let empty = system.search("   ", 3).await.unwrap_err();
    assert_eq!(empty.kind(), ErrorKind::InvalidInput);
}

/// `lancedb_chunks_table_name` (seed 002's `LANCEDB_CHUNKS_TABLE_NAME`) names the passages
/// collection: ingest writes there, search reads there, the default name stays unused; a
/// name LanceDB could not take is refused when the configuration is checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passages_live_in_the_configured_chunks_table() {
    use hybridstore::core::vector::VectorStore;
    let base = tempfile::tempdir().unwrap();
    let src = base.path().join("src");
    make_source(&src);
    let mut config = StorageConfig::with_data_dir(base.path().join("d"));
    config.lancedb_chunks_table_name = "doc_chunks".to_string();
    let system = HybridStorageSystem::open(config.clone()).await.unwrap();
    let report = system.ingest_dir(&src, "docs/", |_| {}).await.unwrap();
    let passages = report.passages.expect("vectors are on by default");
    assert!(passages.passages > 0, "{passages:?}");
    let store = system.vectors().unwrap();
    assert_eq!(
        store.count("doc_chunks", None).await.unwrap(),
        passages.passages
    );
    assert_eq!(
        store
            .count(hybridstore::PASSAGES_COLLECTION, None)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound,
        "nothing was written under the default name"
    );
    let hits = system.search("chapter", 3).await.unwrap();
    assert_eq!(hits[0].key, "docs/book/ch01.html", "{hits:?}");

    config.lancedb_chunks_table_name = "no spaces".to_string();
    let err = config.validate().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(
        err.to_string().contains("lancedb_chunks_table_name"),
        "{err}"
    );
}

/// Every error of the default stack names its operation, key and backend once, whichever
/// layer raised it: the cache slicing a value it holds, dedup reading chunks, the primary.
#[tokio::test]
async fn errors_of_the_whole_stack_carry_operation_key_and_backend() {
    let dir = tempfile::tempdir().unwrap();
    let system = HybridStorageSystem::open(StorageConfig::with_data_dir(dir.path()))
        .await
        .unwrap();
    let key = Key::new("notes/today.md").unwrap();
    system.kv().put(&key, "# Today".into()).await.unwrap();
    let context_of = |e: &hybridstore::core::Error, name: &str| -> Vec<String> {
        e.context()
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
            .collect()
    };
    // Not yet in L1: the range is refused below the cache.
    let below = system.kv().get_range(&key, 0..100).await.unwrap_err();
    // Now in L1: the cache slices the value itself.
    assert!(system.kv().get(&key).await.unwrap().is_some());
    let cached = system.kv().get_range(&key, 0..100).await.unwrap_err();
    for (who, e) in [("below the cache", below), ("in the cache", cached)] {
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{who}: {e}");
        assert_eq!(e.operations(), ["get_range"], "{who}: {e}");
        assert_eq!(context_of(&e, "key"), ["notes/today.md"], "{who}: {e}");
        assert_eq!(context_of(&e, "backend"), ["sqlite"], "{who}: {e}");
    }
    // A damaged chunk: dedup's own error, raised while reading the value's chunks.
    let big = Key::new("data/blob.bin").unwrap();
    let value: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    system.kv().put(&big, value.into()).await.unwrap();
    let packs = walk_files(&dir.path().join("chunks/objects"));
    assert!(
        !packs.is_empty(),
        "a 300 kB value is stored as chunks in a pack"
    );
    for pack in &packs {
        let mut bytes = std::fs::read(pack).unwrap();
        // Inside the blobs, before the pack's index and footer.
        for b in &mut bytes[200..4_000] {
            *b ^= 0xFF;
        }
        std::fs::write(pack, bytes).unwrap();
    }
    let e = system.kv().get(&big).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupted, "{e}");
    assert_eq!(e.operation(), Some("get"), "{e}");
    assert_eq!(context_of(&e, "key"), ["data/blob.bin"], "{e}");
    assert_eq!(context_of(&e, "backend"), ["sqlite"], "{e}");
}

fn walk_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk_files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// `shutdown` writes every accepted access event, closes the SQL primary (SQLite's
/// write-ahead log folded into `kv.db`) and leaves a directory the next `open` takes at once.
#[tokio::test]
async fn shutdown_writes_the_events_closes_sqlite_and_frees_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let config = StorageConfig::with_data_dir(dir.path());
    let system = HybridStorageSystem::open(config.clone()).await.unwrap();
    let keys: Vec<Key> = (0..20)
        .map(|i| Key::new(format!("doc/{i}")).unwrap())
        .collect();
    for k in &keys {
        system.kv().put(k, k.to_string().into()).await.unwrap();
    }
    assert!(system.kv().get(&keys[0]).await.unwrap().is_some());
    let wal = dir
        .path()
        .join(format!("{}-wal", hybridstore::KV_SQLITE_FILE));
    assert!(wal.exists(), "SQLite writes through its WAL while open");

    let report = system.shutdown().await.unwrap();
    assert!(report.sql_closed);
    let events = report.analytics.expect("analytics is on by default");
    assert!(events.accepted >= 21, "{events:?}");
    assert_eq!(
        events.written, events.accepted,
        "every accepted event written: {events:?}"
    );
    assert!(
        !wal.exists() || std::fs::metadata(&wal).unwrap().len() == 0,
        "the WAL is checkpointed into kv.db"
    );

    let again = HybridStorageSystem::open(config).await.unwrap();
    for k in &keys {
        assert_eq!(
            again.kv().get(k).await.unwrap().as_deref(),
            Some(k.to_string().as_bytes())
        );
    }
}

/// Two devices and a remote directory: what the second device pulls verifies, exports the
/// same bytes, and is found by the same searches; a deletion travels and takes its passages
/// with it; nothing moves when nothing changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_pulls_verifies_exports_the_same_files_and_searches_the_same() {
    use hybridstore::sync::{Direction, SyncOptions};
    let base = tempfile::tempdir().unwrap();
    let src = base.path().join("src");
    make_source(&src);
    std::fs::write(
        src.join("book/lifetimes.html"),
        "<html><body><main><h1>Validating References with Lifetimes</h1><p>The borrow \
         checker compares scopes to determine whether all borrows are valid.</p></main>\
         </body></html>",
    )
    .unwrap();
    let remote = base.path().join("remote");
    let remote = remote.to_str().unwrap();
    let a = HybridStorageSystem::open(StorageConfig::with_data_dir(base.path().join("a")))
        .await
        .unwrap();
    let ingested = a.ingest_dir(&src, "docs/", |_| {}).await.unwrap();
    let pushed = a
        .sync(
            Some(remote),
            Direction::Push,
            &SyncOptions::default(),
            |_| {},
        )
        .await
        .unwrap();
    assert_eq!(pushed.uploaded, ingested.files, "{pushed:?}");

    let b = HybridStorageSystem::open(StorageConfig::with_data_dir(base.path().join("b")))
        .await
        .unwrap();
    let pulled = b
        .sync(
            Some(remote),
            Direction::Pull,
            &SyncOptions::default(),
            |_| {},
        )
        .await
        .unwrap();
    assert_eq!(pulled.downloaded, ingested.files, "{pulled:?}");
    let verified = b.verify(|_, _| {}).await.unwrap();
    assert!(verified.is_clean(), "{verified:?}");
    assert_eq!(verified.checked_keys, ingested.files);
    let out = base.path().join("out");
    b.export_dir(&out, "docs/", |_| {}).await.unwrap();
    assert_eq!(tree(&out), tree(&src), "exports are byte-identical");
    let keys =
        |hits: Vec<hybridstore::PassageHit>| hits.into_iter().map(|h| h.key).collect::<Vec<_>>();
    for query in ["borrow checker lifetimes", "chapter", "deep"] {
        assert_eq!(
            keys(b.search(query, 5).await.unwrap()),
            keys(a.search(query, 5).await.unwrap()),
            "{query}"
        );
    }
    assert_eq!(
        keys(b.search("borrow checker", 1).await.unwrap()),
        ["docs/book/lifetimes.html"]
    );

    a.kv()
        .delete(&Key::new("docs/book/lifetimes.html").unwrap())
        .await
        .unwrap();
    a.sync(
        Some(remote),
        Direction::Both,
        &SyncOptions::default(),
        |_| {},
    )
    .await
    .unwrap();
    let second = b
        .sync(
            Some(remote),
            Direction::Both,
            &SyncOptions::default(),
            |_| {},
        )
        .await
        .unwrap();
    assert_eq!(second.deleted_local, 1, "{second:?}");
    assert_eq!(
        b.kv()
            .get(&Key::new("docs/book/lifetimes.html").unwrap())
            .await
            .unwrap(),
        None
    );
    let after = keys(b.search("borrow checker lifetimes", 5).await.unwrap());
    assert!(
        !after.contains(&"docs/book/lifetimes.html".to_string()),
        "{after:?}"
    );
    let quiet = b
        .sync(
            Some(remote),
            Direction::Both,
            &SyncOptions::default(),
            |_| {},
        )
        .await
        .unwrap();
    assert_eq!(
        (quiet.bytes_sent, quiet.bytes_received),
        (0, 0),
        "{quiet:?}"
    );
    let status = b
        .sync_engine(Some(remote))
        .await
        .unwrap()
        .status()
        .await
        .unwrap();
    assert_eq!(
        (
            status.pending_uploads,
            status.pending_downloads,
            status.conflicts
        ),
        (0, 0, 0)
    );
}

#[test]
#[allow(clippy::result_large_err)] // figment's Jail closure returns figment::Error by design
fn the_seeds_s3_variables_name_the_default_remote() {
    figment::Jail::expect_with(|jail| {
        jail.set_env("S3_BUCKET", "primary-bucket");
        jail.set_env("S3_ENDPOINT", "http://127.0.0.1:8333");
        let config = StorageConfig::load(None).unwrap();
        assert_eq!(
            config.default_remote().as_deref(),
            Some("s3://primary-bucket/hybridstore")
        );
        let options = config.s3_storage_options();
        assert!(options.contains(&("aws_allow_http".to_string(), "true".to_string())));
        jail.set_env("S3_BACKUP_BUCKET", "backups");
        jail.set_env("S3_BACKUP_PREFIX", "laptop");
        let config = StorageConfig::load(None).unwrap();
        assert_eq!(
            config.default_remote().as_deref(),
            Some("s3://backups/laptop")
        );
        // Credentials are not configuration: an AWS secret never appears in it.
        jail.set_env("AWS_SECRET_ACCESS_KEY", "do-not-print");
        let config = StorageConfig::load(None).unwrap();
        assert!(!format!("{config:?}").contains("do-not-print"));
        Ok(())
    });
}
