//! The four storage modes against a real S3-compatible server (SeaweedFS): the conformance
//! suite over the whole stack in each S3 mode, and one end-to-end test per mode.

use std::path::Path;
use std::time::{Duration, Instant};

use hybridstore::core::{Bytes, ErrorKind, Key, KeyRange, KvStore};
use hybridstore::sync::{Direction, SyncOptions};
use hybridstore::{BackupStatus, HybridStorageSystem, OpenOptions, StorageConfig, StorageMode};
use hybridstore_core::services::SeaweedS3;

use super::{make_source, tree};

/// The credentials SeaweedFS (no identities configured) accepts, as an application that
/// holds its own would pass them.
fn s3_credentials() -> OpenOptions {
    OpenOptions::new()
        .with_s3_option("aws_access_key_id", "hybridstore")
        .with_s3_option("aws_secret_access_key", "hybridstore")
}

/// S3 primary on `s3` under `prefix`, with or without the disk cache.
fn s3_primary(s3: &SeaweedS3, data_dir: &Path, prefix: &str, cache: bool) -> StorageConfig {
    let mut config = StorageConfig::with_data_dir(data_dir);
    config.s3_storage_enabled = true;
    config.use_s3_as_primary = true;
    config.local_cache_enabled = cache;
    config.s3_bucket = Some(s3.buckets()[0].clone());
    config.s3_prefix = prefix.to_string();
    config.s3_endpoint = Some(s3.endpoint());
    config.s3_region = Some("us-east-1".to_string());
    config
}

/// Local primary backed up to `s3` under `prefix`, pushing every `interval_secs`.
fn backed_up(s3: &SeaweedS3, data_dir: &Path, prefix: &str, interval_secs: u64) -> StorageConfig {
    let mut config = StorageConfig::with_data_dir(data_dir);
    config.s3_backup_enabled = true;
    config.s3_backup_bucket = Some(s3.buckets()[0].clone());
    config.s3_backup_prefix = prefix.to_string();
    config.s3_backup_interval_secs = interval_secs;
    config.s3_endpoint = Some(s3.endpoint());
    config.s3_region = Some("us-east-1".to_string());
    config
}

fn key(s: &str) -> Key {
    Key::new(s.to_string()).unwrap()
}

/// Waits (at most 60 s) until the background push's status satisfies `done`.
async fn wait_for(
    status: &mut tokio::sync::watch::Receiver<BackupStatus>,
    what: &str,
    done: impl Fn(&BackupStatus) -> bool,
) -> BackupStatus {
    let waited = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            {
                let now = status.borrow_and_update();
                if done(&now) {
                    return now.clone();
                }
            }
            status.changed().await.unwrap();
        }
    })
    .await;
    match waited {
        Ok(s) => s,
        Err(_) => panic!("timed out waiting for {what}: {:?}", *status.borrow()),
    }
}

/// The whole stack in `mode`, opened with `config` on a fresh SeaweedFS and data
/// directory, as a conformance fixture (one store, emptied between model-based cases).
async fn mode_fixture(
    mode: StorageMode,
    config: impl FnOnce(&SeaweedS3, &Path) -> StorageConfig,
) -> Option<hybridstore_core::conformance::Fixture> {
    let s3 = SeaweedS3::start()?;
    let dir = tempfile::tempdir().unwrap();
    let system = HybridStorageSystem::open_with(config(&s3, dir.path()), s3_credentials())
        .await
        .unwrap();
    assert_eq!(system.mode(), mode);
    assert_eq!(
        system.backup_status().is_some(),
        mode == StorageMode::LocalWithS3Backup
    );
    let kv = system.kv().clone();
    Some(hybridstore_core::conformance::Fixture::with_guard(kv, (system, dir, s3)).reusable())
}

mod s3_primary_with_local_cache_conformance {
    use super::*;
    hybridstore_core::conformance_tests!(|| mode_fixture(
        StorageMode::S3PrimaryWithLocalCache,
        |s3, dir| s3_primary(s3, dir, "conformance", true)
    ));
}

mod s3_only_conformance {
    use super::*;
    hybridstore_core::conformance_tests!(|| mode_fixture(StorageMode::S3Only, |s3, dir| {
        s3_primary(s3, dir, "conformance", false)
    }));
}

/// The local stack with the background push running every second beside the suite.
mod local_with_s3_backup_conformance {
    use super::*;
    hybridstore_core::conformance_tests!(|| mode_fixture(
        StorageMode::LocalWithS3Backup,
        |s3, dir| backed_up(s3, dir, "conformance", 1)
    ));
}

/// Local primary + S3 backup: the background push sends what is written; with S3 stopped,
/// local reads and writes go on and pushes fail; once S3 is back the next push catches up,
/// `shutdown` pushes the rest, and a second device that opens on the same backup pulls
/// (`sync_on_startup`) exactly the first device's keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_primary_with_s3_backup_keeps_working_while_s3_is_down_and_catches_up() {
    let Some(mut s3) = SeaweedS3::start() else {
        return;
    };
    let base = tempfile::tempdir().unwrap();
    let a = HybridStorageSystem::open_with(
        backed_up(&s3, &base.path().join("a"), "laptop", 1),
        s3_credentials(),
    )
    .await
    .unwrap();
    let mut status = a.backup_status().unwrap();
    assert_eq!(
        status.borrow().startup_pulled,
        Some(0),
        "{:?}",
        *status.borrow()
    );
    for i in 0..10 {
        a.kv()
            .put(
                &key(&format!("notes/{i:02}")),
                Bytes::from(vec![i as u8; 50_000]),
            )
            .await
            .unwrap();
    }
    wait_for(&mut status, "the first push", |s| s.uploaded >= 10).await;

    s3.stop();
    let failures_before = status.borrow().failures;
    for i in 10..20 {
        a.kv()
            .put(
                &key(&format!("notes/{i:02}")),
                Bytes::from(vec![i as u8; 50_000]),
            )
            .await
            .unwrap();
    }
    a.kv().delete(&key("notes/00")).await.unwrap();
    assert_eq!(
        a.kv().get(&key("notes/15")).await.unwrap().unwrap(),
        Bytes::from(vec![15u8; 50_000]),
        "local reads work with S3 down"
    );
    let down = wait_for(&mut status, "a push to fail", |s| {
        s.failures > failures_before
    })
    .await;
    assert!(down.last_error.is_some(), "{down:?}");

    s3.restart();
    let caught_up = wait_for(&mut status, "a push after the restart", |s| {
        s.last_error.is_none() && s.uploaded >= 20 && s.deleted_remote >= 1
    })
    .await;
    assert_eq!(
        caught_up.uploaded, 20,
        "each value sent once: {caught_up:?}"
    );

    a.kv()
        .put(&key("notes/last"), "written last".into())
        .await
        .unwrap();
    let report = a.shutdown().await.unwrap();
    assert!(report.final_push.is_some(), "{report:?}");
    assert!(report.final_push_error.is_none(), "{report:?}");
    // The last key went up once: in a background push or in the last one.
    assert_eq!(status.borrow().uploaded, 21, "{:?}", *status.borrow());

    let b = HybridStorageSystem::open_with(
        backed_up(&s3, &base.path().join("b"), "laptop", 300),
        s3_credentials(),
    )
    .await
    .unwrap();
    assert_eq!(b.backup_status().unwrap().borrow().startup_pulled, Some(20));
    let keys = b
        .kv()
        .list_keys(KeyRange::prefix("notes/"), None)
        .await
        .unwrap();
    let expected: Vec<Key> = (1..20)
        .map(|i| key(&format!("notes/{i:02}")))
        .chain([key("notes/last")])
        .collect();
    assert_eq!(keys, expected);
    assert_eq!(
        b.kv().get(&key("notes/19")).await.unwrap().unwrap(),
        Bytes::from(vec![19u8; 50_000])
    );
    assert!(b.verify(|_, _| {}).await.unwrap().is_clean());
}

/// S3 primary + local cache: what one node acknowledged, a second node (its own data
/// directory) reads, exports byte-identically and finds by search (LanceDB on S3 too), also
/// a value written after it opened (chunks in a pack it had not indexed); repeated reads
/// come from the disk cache; with S3 stopped a write fails with a retryable `Unavailable`
/// within the documented bound, and succeeds once S3 is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_primary_nodes_share_acknowledged_writes_and_refuse_writes_s3_did_not_take() {
    let Some(mut s3) = SeaweedS3::start() else {
        return;
    };
    let base = tempfile::tempdir().unwrap();
    let src = base.path().join("src");
    make_source(&src);
    let node = |name: &str| {
        let mut config = s3_primary(&s3, &base.path().join(name), "shared", true);
        config.lancedb_uri = Some(s3.uri("shared/lance"));
        config
    };
    let one = HybridStorageSystem::open_with(node("one"), s3_credentials())
        .await
        .unwrap();
    let ingested = one.ingest_dir(&src, "docs/", |_| {}).await.unwrap();
    assert!(ingested.errors.is_empty(), "{ingested:?}");
    assert!(
        !base
            .path()
            .join("one")
            .join(hybridstore::KV_SQLITE_FILE)
            .exists()
            && !base
                .path()
                .join("one")
                .join(hybridstore::CHUNKS_DIR)
                .exists(),
        "nothing of the store lives locally"
    );

    let two = HybridStorageSystem::open_with(node("two"), s3_credentials())
        .await
        .unwrap();
    let out = base.path().join("out");
    let exported = two.export_dir(&out, "docs/", |_| {}).await.unwrap();
    assert_eq!(exported.files, ingested.files);
    assert_eq!(tree(&out), tree(&src));
    assert!(two.verify(|_, _| {}).await.unwrap().is_clean());
    let hits = two.search("chapter", 3).await.unwrap();
    assert_eq!(
        hits.first().map(|h| h.key.as_str()),
        Some("docs/book/ch01.html")
    );

    let late = Bytes::from(
        (0..300_000u32)
            .map(|i| (i * 7 % 251) as u8)
            .collect::<Vec<_>>(),
    );
    one.kv().put(&key("late.bin"), late.clone()).await.unwrap();
    assert_eq!(
        two.kv().get(&key("late.bin")).await.unwrap(),
        Some(late.clone())
    );
    let cache = two.disk_cache().unwrap();
    let hits_before = cache.stats().hits;
    // Past the in-memory L1: what lies below it reads from the disk cache.
    two.export_dir(&base.path().join("again"), "docs/", |_| {})
        .await
        .unwrap();
    assert!(cache.stats().hits > hits_before, "{:?}", cache.stats());

    s3.stop();
    let started = Instant::now();
    let err = one
        .kv()
        .put(&key("refused"), "never acknowledged".into())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.is_retryable(), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    s3.restart();
    one.kv()
        .put(&key("refused"), "now acknowledged".into())
        .await
        .unwrap();
    assert_eq!(
        two.kv().get(&key("refused")).await.unwrap().unwrap(),
        "now acknowledged"
    );
}

/// S3 only: the same store without a disk cache; nothing but the lock, analytics and
/// LanceDB under the data directory, and a second node reads what the first wrote.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_only_keeps_no_local_copy() {
    let Some(s3) = SeaweedS3::start() else {
        return;
    };
    let base = tempfile::tempdir().unwrap();
    let src = base.path().join("src");
    make_source(&src);
    let one = HybridStorageSystem::open_with(
        s3_primary(&s3, &base.path().join("one"), "only", false),
        s3_credentials(),
    )
    .await
    .unwrap();
    assert_eq!(one.mode(), StorageMode::S3Only);
    assert!(one.disk_cache().is_none());
    let ingested = one.ingest_dir(&src, "docs/", |_| {}).await.unwrap();
    assert!(
        !base
            .path()
            .join("one")
            .join(hybridstore::S3_CACHE_DIR)
            .exists()
    );
    let two = HybridStorageSystem::open_with(
        s3_primary(&s3, &base.path().join("two"), "only", false),
        s3_credentials(),
    )
    .await
    .unwrap();
    let out = base.path().join("out");
    assert_eq!(
        two.export_dir(&out, "docs/", |_| {}).await.unwrap().files,
        ingested.files
    );
    assert_eq!(tree(&out), tree(&src));
    // A store written with dedup is not opened without it.
    let mut no_dedup = s3_primary(&s3, &base.path().join("three"), "only", false);
    no_dedup.dedup = false;
    let err = HybridStorageSystem::open_with(no_dedup, s3_credentials())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
}

/// Local only, the default: no S3 is touched, and `sync` (asked for) reaches a directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_only_is_the_default_and_syncs_only_when_asked() {
    let base = tempfile::tempdir().unwrap();
    let system = HybridStorageSystem::open(StorageConfig::with_data_dir(base.path().join("a")))
        .await
        .unwrap();
    assert_eq!(system.mode(), StorageMode::Local);
    assert!(system.backup_status().is_none() && system.disk_cache().is_none());
    system.kv().put(&key("k"), "v".into()).await.unwrap();
    let remote = base.path().join("remote");
    let report = system
        .sync(
            Some(remote.to_str().unwrap()),
            Direction::Push,
            &SyncOptions::default(),
            |_| {},
        )
        .await
        .unwrap();
    assert_eq!(report.uploaded, 1);
    let report = system.shutdown().await.unwrap();
    assert!(report.final_push.is_none() && report.final_push_error.is_none());
}

#[test]
#[allow(clippy::result_large_err)] // figment's Jail closure returns figment::Error by design
fn the_seeds_flags_choose_the_mode() {
    figment::Jail::expect_with(|jail| {
        assert_eq!(
            StorageConfig::load(None).unwrap().mode().unwrap(),
            StorageMode::Local
        );
        jail.set_env("S3_BUCKET", "primary-bucket");
        jail.set_env("USE_S3_AS_PRIMARY", "true");
        let err = StorageConfig::load(None).unwrap_err();
        assert!(err.to_string().contains("S3_STORAGE_ENABLED"), "{err}");
        jail.set_env("S3_STORAGE_ENABLED", "true");
        let config = StorageConfig::load(None).unwrap();
        assert_eq!(config.mode().unwrap(), StorageMode::S3PrimaryWithLocalCache);
        assert_eq!(config.backend_name(), "s3");
        jail.set_env("LOCAL_CACHE_ENABLED", "false");
        assert_eq!(
            StorageConfig::load(None).unwrap().mode().unwrap(),
            StorageMode::S3Only
        );
        jail.set_env("S3_BACKUP_ENABLED", "true");
        assert_eq!(
            StorageConfig::load(None).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
        jail.set_env("USE_S3_AS_PRIMARY", "false");
        jail.set_env("S3_BACKUP_BUCKET", "backups");
        jail.set_env("SYNC_ON_STARTUP", "false");
        jail.set_env("LANCEDB_URI", "s3://vectors/lance");
        let config = StorageConfig::load(None).unwrap();
        assert_eq!(config.mode().unwrap(), StorageMode::LocalWithS3Backup);
        assert_eq!(
            config.default_remote().as_deref(),
            Some("s3://backups/hybridstore-backup")
        );
        assert!(!config.sync_on_startup);
        assert_eq!(config.lancedb_uri.as_deref(), Some("s3://vectors/lance"));
        Ok(())
    });
}

/// Credentials given to `open_with` never show in `Debug` output.
#[test]
fn open_options_hide_their_values() {
    let options = s3_credentials().with_s3_option("aws_session_token", "do-not-print");
    let shown = format!("{options:?}");
    assert!(
        !shown.contains("do-not-print") && shown.contains("aws_session_token"),
        "{shown}"
    );
}
