//! Whole-system backups: ingest, back up, change keys, passages, SQL rows and analytics, back
//! up again, and restore each snapshot into an empty directory: each restore is the system
//! as it was at its snapshot.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::TryStreamExt;
use hybridstore::backup::{ReadData, Repository, verify};
use hybridstore::core::vector::VectorStore;
use hybridstore::core::{Bytes, ErrorKind, Key, KeyRange, KvStore, ObjectMeta, PutOptions};
use hybridstore::file::FileStore;
use hybridstore::snapshots::{RestoreOptions, restore_system};
use hybridstore::sql::Document;
use hybridstore::{HybridStorageSystem, PASSAGES_COLLECTION, PrimaryStore, StorageConfig};

type State = BTreeMap<Vec<u8>, (Bytes, ObjectMeta)>;

async fn keys_of(system: &HybridStorageSystem) -> State {
    let entries: Vec<_> = system
        .kv()
        .scan(KeyRange::all(), None)
        .try_collect()
        .await
        .unwrap();
    entries
        .into_iter()
        .map(|e| (e.key.as_bytes().to_vec(), (e.value, e.meta)))
        .collect()
}

fn assert_same(got: &State, want: &State) {
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "the same keys"
    );
    for (k, (value, meta)) in want {
        let (v, m) = &got[k];
        assert_eq!(v, value, "value of {k:?}");
        assert_eq!(
            (m.size, m.checksum, &m.content_type, m.created, m.modified),
            (
                meta.size,
                meta.checksum,
                &meta.content_type,
                meta.created,
                meta.modified
            ),
            "metadata of {k:?}"
        );
    }
}

/// Restores snapshot `name` into `dir` (whole, default options) and opens the result.
async fn restore_and_open(
    repo: &Repository,
    name: &str,
    dir: std::path::PathBuf,
) -> (
    hybridstore::snapshots::SystemRestoreReport,
    HybridStorageSystem,
) {
    let target = StorageConfig::with_data_dir(dir);
    let report = restore_system(
        repo,
        name,
        target.clone(),
        &RestoreOptions::default(),
        &|_| {},
    )
    .await
    .unwrap();
    (report, HybridStorageSystem::open(target).await.unwrap())
}

fn doc(id: &str) -> Document {
    Document {
        doc_id: id.to_string(),
        filename: format!("{id}.md"),
        size: 10,
        content_hash: format!("hash-{id}"),
        created_at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        metadata: serde_json::json!({"id": id}),
    }
}

/// Rows in the access-event table, read after everything offered is written.
fn events(system: &HybridStorageSystem) -> u64 {
    let analytics = system.analytics().unwrap();
    analytics.flush().unwrap();
    count_events(analytics.reader())
}

fn count_events(reader: &hybridstore::analytics::AnalyticsReader) -> u64 {
    let batches = reader
        .sql("SELECT count(*)::BIGINT AS n FROM access_events")
        .unwrap();
    let column = batches[0]
        .column(0)
        .as_any()
        .downcast_ref::<arrow_array::Int64Array>()
        .unwrap()
        .value(0);
    column as u64
}

struct Moment {
    keys: State,
    passages: u64,
    events: u64,
    docs: Vec<String>,
}

async fn moment(system: &HybridStorageSystem) -> Moment {
    let vectors = system.vectors().unwrap();
    let sql = system.sql().unwrap();
    let docs = sql.documents().list(None, 100).await.unwrap();
    let events = events(system);
    Moment {
        keys: keys_of(system).await,
        passages: vectors.count(PASSAGES_COLLECTION, None).await.unwrap(),
        events,
        docs: docs.into_iter().map(|d| d.doc_id).collect(),
    }
}

fn write_tree(root: &std::path::Path, files: &[(&str, &str)]) {
    for (name, text) in files {
        let path = root.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
}

#[tokio::test]
async fn each_snapshot_restores_the_whole_system_as_it_was() {
    let base = tempfile::tempdir().unwrap();
    let config = StorageConfig::with_data_dir(base.path().join("data"));
    let system = HybridStorageSystem::open(config.clone()).await.unwrap();
    let src = base.path().join("src");
    write_tree(
        &src,
        &[
            (
                "guide/borrowing.md",
                "# Borrowing\n\nReferences borrow values; lifetimes bound them.",
            ),
            (
                "guide/traits.html",
                "<h1>Traits</h1><p>Traits define shared behaviour.</p>",
            ),
        ],
    );
    system.ingest_dir(&src, "docs/", |_| {}).await.unwrap();
    let old = SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000);
    system
        .kv()
        .put_with(
            &Key::new("notes/kept").unwrap(),
            Bytes::from(vec![7u8; 200_000]),
            &PutOptions::with_content_type("application/octet-stream")
                .with_created(old)
                .with_modified(old),
        )
        .await
        .unwrap();
    system
        .kv()
        .put(
            &Key::new("notes/gone").unwrap(),
            Bytes::from_static(b"soon deleted"),
        )
        .await
        .unwrap();
    system
        .sql()
        .unwrap()
        .documents()
        .put(&doc("first"))
        .await
        .unwrap();

    let repo_store: Arc<dyn KvStore> =
        Arc::new(FileStore::open(base.path().join("repo")).await.unwrap());
    let repo = Repository::open_or_init(repo_store).await.unwrap();
    let one = system
        .backup_to(&repo, vec!["first".into()], &|_| {})
        .await
        .unwrap();
    let at_one = moment(&system).await;

    // Change every engine.
    system
        .kv()
        .delete(&Key::new("notes/gone").unwrap())
        .await
        .unwrap();
    system
        .kv()
        .put(
            &Key::new("notes/new").unwrap(),
            Bytes::from(vec![9u8; 50_000]),
        )
        .await
        .unwrap();
    write_tree(
        &src,
        &[(
            "guide/errors.md",
            "# Errors\n\nResult carries recoverable errors.",
        )],
    );
    system.ingest_dir(&src, "docs/", |_| {}).await.unwrap();
    system
        .sql()
        .unwrap()
        .documents()
        .put(&doc("second"))
        .await
        .unwrap();
    let two = system.backup_to(&repo, vec![], &|_| {}).await.unwrap();
    let at_two = moment(&system).await;
    assert!(
        at_two.passages > at_one.passages,
        "the second ingest added passages"
    );
    assert!(at_two.events > at_one.events);
    assert_eq!(two.snapshot.parent.as_deref(), Some(one.id.as_str()));

    let report = verify(&repo, ReadData::All, &|_, _| {}).await.unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    system.shutdown().await.unwrap();

    for (id, want) in [(&one.id, &at_one), (&two.id, &at_two)] {
        let (restored, system) = restore_and_open(
            &repo,
            id,
            base.path().join(format!("restored-{}", &id[..8])),
        )
        .await;
        assert_eq!(restored.method, "files");
        let got = moment(&system).await;
        assert_same(&got.keys, &want.keys);
        assert_eq!(got.passages, want.passages, "passages of {id}");
        assert_eq!(got.docs, want.docs, "SQL rows of {id}");
        // Counted before the scan above added its own events, as at the snapshot.
        assert_eq!(got.events, want.events, "access events of {id}");
        let hits = system.search("lifetimes borrow", 5).await.unwrap();
        assert!(!hits.is_empty(), "the restored passages are searchable");
        assert!(system.verify(|_, _| {}).await.unwrap().is_clean());
        system.shutdown().await.unwrap();
    }

    // A restore refuses a directory that is not empty, and a prefix restores a subset
    // through the stack.
    let busy = StorageConfig::with_data_dir(base.path().join(format!("restored-{}", &one.id[..8])));
    let err = restore_system(&repo, &one.id, busy, &RestoreOptions::default(), &|_| {})
        .await
        .expect_err("not empty");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    let mut subset = StorageConfig::with_data_dir(base.path().join("subset"));
    subset.primary = PrimaryStore::File;
    let restored = restore_system(
        &repo,
        "latest",
        subset.clone(),
        &RestoreOptions::with_prefix("notes/"),
        &|_| {},
    )
    .await
    .unwrap();
    assert_eq!(restored.method, "keys");
    let system = HybridStorageSystem::open(subset).await.unwrap();
    let got = keys_of(&system).await;
    let want: State = at_two
        .keys
        .iter()
        .filter(|(k, _)| k.starts_with(b"notes/"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert_same(&got, &want);
}

/// The same round trip with the repository on S3 (SeaweedFS): back up, change, back up,
/// restore each snapshot, verify with --read-data.
#[cfg(feature = "sync")]
#[tokio::test]
async fn backups_to_s3_restore_each_snapshot() {
    use hybridstore::OpenOptions;
    use hybridstore::snapshots::{Password, RepositoryAccess, open_repository};
    use hybridstore_core::services::SeaweedS3;

    let Some(s3) = SeaweedS3::start() else {
        return;
    };
    let base = tempfile::tempdir().unwrap();
    let mut config = StorageConfig::with_data_dir(base.path().join("data"));
    config.s3_endpoint = Some(s3.endpoint());
    config.s3_region = Some("us-east-1".to_string());
    let credentials = OpenOptions::command()
        .with_s3_option("aws_access_key_id", "hybridstore")
        .with_s3_option("aws_secret_access_key", "hybridstore");
    let location = format!("s3://{}/backups/main", s3.buckets()[0]);
    // A new s3:// repository is encrypted: without a password (or consent) it is refused.
    let err = open_repository(
        &config,
        &credentials,
        &location,
        true,
        &RepositoryAccess::new(),
    )
    .await
    .expect_err("an s3:// repository without a password");
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(err.to_string().contains("password"), "{err}");
    let access =
        RepositoryAccess::new().with_password(Password::new("s3 repository password").unwrap());
    let repo = open_repository(&config, &credentials, &location, true, &access)
        .await
        .unwrap();
    assert!(repo.is_encrypted());

    let system = HybridStorageSystem::open(config.clone()).await.unwrap();
    system
        .kv()
        .put(&Key::new("a").unwrap(), Bytes::from(vec![1u8; 300_000]))
        .await
        .unwrap();
    system
        .kv()
        .put(&Key::new("b").unwrap(), Bytes::from_static(b"small"))
        .await
        .unwrap();
    let one = system.backup_to(&repo, vec![], &|_| {}).await.unwrap();
    let at_one = keys_of(&system).await;
    system.kv().delete(&Key::new("b").unwrap()).await.unwrap();
    system
        .kv()
        .put(&Key::new("c").unwrap(), Bytes::from(vec![3u8; 100_000]))
        .await
        .unwrap();
    let two = system.backup_to(&repo, vec![], &|_| {}).await.unwrap();
    let at_two = keys_of(&system).await;
    system.shutdown().await.unwrap();

    // A fresh handle, as another process would open it: only with the password.
    let err = open_repository(
        &config,
        &credentials,
        &location,
        false,
        &RepositoryAccess::new(),
    )
    .await
    .expect_err("an encrypted repository without its password");
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    let repo = open_repository(&config, &credentials, &location, false, &access)
        .await
        .unwrap();
    let report = verify(&repo, ReadData::All, &|_, _| {}).await.unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.snapshots, 2);
    for (id, want) in [(&one.id, &at_one), (&two.id, &at_two)] {
        let (_, system) =
            restore_and_open(&repo, id, base.path().join(format!("r-{}", &id[..8]))).await;
        assert_same(&keys_of(&system).await, want);
        system.shutdown().await.unwrap();
    }
}

/// `backup_schedule`: a long-running process backs itself up every interval and stops on
/// shutdown; `incremental = false` is refused.
#[tokio::test]
async fn scheduled_backups_run_every_interval_and_stop_on_shutdown() {
    use hybridstore::BackupSchedule;
    use hybridstore::snapshots::{Password, RepositoryAccess, open_repository};

    let base = tempfile::tempdir().unwrap();
    let repo_dir = base.path().join("repo");
    let password_file = base.path().join("password");
    std::fs::write(&password_file, "scheduled secret\n").unwrap();
    let mut config = StorageConfig::with_data_dir(base.path().join("data"));
    let mut schedule = BackupSchedule::new(repo_dir.to_str().unwrap());
    schedule.password_file = Some(password_file);
    schedule.interval_seconds = 1;
    schedule.retention_days = 30;
    config.backup_schedule = Some(schedule.clone());
    let system = HybridStorageSystem::open(config.clone()).await.unwrap();
    system
        .kv()
        .put(&Key::new("k").unwrap(), Bytes::from_static(b"v1"))
        .await
        .unwrap();
    let mut status = system.backup_schedule_status().expect("the schedule runs");
    let waited = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            if status.borrow_and_update().snapshots >= 2 {
                return;
            }
            status.changed().await.unwrap();
        }
    })
    .await;
    assert!(
        waited.is_ok(),
        "two scheduled snapshots within 60 s: {:?}",
        *status.borrow()
    );
    assert_eq!(status.borrow().failures, 0, "{:?}", *status.borrow());
    system.shutdown().await.unwrap();
    let taken = status.borrow().snapshots;

    // Stopped: the repository (encrypted under the schedule's password) holds what the
    // status says, and the latest restores.
    let repo = open_repository(
        &config,
        &hybridstore::OpenOptions::command(),
        repo_dir.to_str().unwrap(),
        false,
        &RepositoryAccess::new().with_password(Password::new("scheduled secret").unwrap()),
    )
    .await
    .unwrap();
    assert!(repo.is_encrypted());
    assert_eq!(repo.snapshot_ids().await.unwrap().len() as u64, taken);
    let (_, restored) = restore_and_open(&repo, "latest", base.path().join("restored")).await;
    assert_eq!(
        restored
            .kv()
            .get(&Key::new("k").unwrap())
            .await
            .unwrap()
            .as_deref(),
        Some(&b"v1"[..])
    );

    schedule.incremental = false;
    config.backup_schedule = Some(schedule);
    config.data_dir = base.path().join("other");
    let err = HybridStorageSystem::open(config)
        .await
        .expect_err("incremental = false");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
}

/// A backup killed midway leaves its staging directory (database copies, LanceDB links) in
/// the data directory; the next backup removes it, and leaves none of its own.
#[tokio::test]
async fn a_backup_removes_the_staging_a_killed_backup_left() {
    let base = tempfile::tempdir().unwrap();
    let data = base.path().join("data");
    let system = HybridStorageSystem::open(StorageConfig::with_data_dir(&data))
        .await
        .unwrap();
    system
        .kv()
        .put(&Key::new("k").unwrap(), Bytes::from_static(b"v"))
        .await
        .unwrap();
    let stale = data.join(".backup-staging-killed");
    std::fs::create_dir_all(stale.join("lance")).unwrap();
    std::fs::write(stale.join("sql.db"), vec![0u8; 1 << 20]).unwrap();

    let repo_store: Arc<dyn KvStore> =
        Arc::new(FileStore::open(base.path().join("repo")).await.unwrap());
    let repo = Repository::open_or_init(repo_store).await.unwrap();
    system.backup_to(&repo, vec![], &|_| {}).await.unwrap();
    let left: Vec<_> = std::fs::read_dir(&data)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".backup-staging-"))
        .collect();
    assert!(left.is_empty(), "staging directories left: {left:?}");
    system.shutdown().await.unwrap();
}

/// Documents on a FileStore primary keep their rows in `documents.db`: a backup takes that
/// file too, and the restored system has every document whole (row, content, passages and
/// embeddings); a document stored after the snapshot is not in it.
#[cfg(feature = "vectors")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_beside_a_file_primary_are_backed_up_and_restored() {
    use hybridstore::documents::{MultimodalQuery, NewDocument};
    use hybridstore::{DocumentsConfig, Modality};
    let base = tempfile::tempdir().unwrap();
    let shape = DocumentsConfig::default().with_modality(Modality::Image, 2);
    let mut config = StorageConfig::with_data_dir(base.path().join("data")).with_documents(shape);
    config.primary = PrimaryStore::File;
    config.analytics = false;
    let system = HybridStorageSystem::open(config.clone()).await.unwrap();
    let docs = system.documents().unwrap();
    docs.put(
        NewDocument::new("kept")
            .with_content(vec![5u8; 70_000], "application/octet-stream")
            .with_text("lighthouse keepers log the weather")
            .with_embedding(Modality::Image, vec![1.0, 0.0]),
    )
    .await
    .unwrap();
    let repo_store: Arc<dyn KvStore> =
        Arc::new(FileStore::open(base.path().join("repo")).await.unwrap());
    let repo = Repository::open_or_init(repo_store).await.unwrap();
    let snapshot = system.backup_to(&repo, vec![], &|_| {}).await.unwrap();
    docs.put(NewDocument::new("later").with_text("after the snapshot"))
        .await
        .unwrap();
    system.shutdown().await.unwrap();

    let mut target = config.clone();
    target.data_dir = base.path().join("restored");
    restore_system(
        &repo,
        &snapshot.id,
        target.clone(),
        &RestoreOptions::default(),
        &|_| {},
    )
    .await
    .unwrap();
    let restored = HybridStorageSystem::open(target).await.unwrap();
    let docs = restored.documents().unwrap();
    assert_eq!(docs.count().await.unwrap(), 1);
    assert_eq!(docs.get("later").await.unwrap(), None);
    assert_eq!(
        docs.content("kept").await.unwrap().unwrap().as_ref(),
        &[5u8; 70_000][..]
    );
    let by_words = docs
        .search(&MultimodalQuery::new(3).with_keywords("lighthouse"))
        .await
        .unwrap();
    assert_eq!(by_words.len(), 1);
    let by_image = docs
        .search(&MultimodalQuery::new(3).with_vector(Modality::Image, vec![0.9, 0.1]))
        .await
        .unwrap();
    assert_eq!(by_image[0].document.id, "kept");
    restored.shutdown().await.unwrap();
}
