//! Repositories on a FileStore (a local directory): round trips, incremental cost,
//! corruption found and named, restores that refuse damaged bytes, locks, forget and the
//! two-phase prune.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::TryStreamExt;
use hybridstore_backup::{
    BackupSource, FileSource, KeySource, PruneOptions, ReadData, Repository, RetentionPolicy,
    SourceEntry, SourceValue, backup, diff, forget, prune, read_tree, restore_file, restore_keys,
    verify,
};
use hybridstore_core::conformance::incompressible;
use hybridstore_core::{ErrorKind, Key, KeyRange, KvStore, MemoryStore, ObjectMeta, PutOptions};
use hybridstore_dedup::{DedupOptions, DedupStore, Manifest};
use hybridstore_file::FileStore;

pub(crate) type Dedup = DedupStore<Arc<dyn KvStore>>;

pub(crate) fn key(s: &str) -> Key {
    Key::new(s.to_string()).unwrap()
}

pub(crate) async fn repo_at(dir: &Path) -> Repository {
    let store: Arc<dyn KvStore> = Arc::new(FileStore::open(dir).await.unwrap());
    Repository::open_or_init(store).await.unwrap()
}

/// The repository opened again on the same store: a fresh index, as another process (or a
/// later run) has. (A FileStore directory has one owner at a time, so the handles share it.)
pub(crate) async fn reopen(repo: &Repository) -> Repository {
    Repository::open(repo.store().clone()).await.unwrap()
}

pub(crate) async fn dedup_store() -> Dedup {
    let manifests: Arc<dyn KvStore> = Arc::new(MemoryStore::new());
    DedupStore::open(
        manifests,
        Arc::new(MemoryStore::new()),
        DedupOptions::default(),
    )
    .await
    .unwrap()
}

/// The source a facade would capture: every key's metadata and manifest.
pub(crate) async fn source_of(
    store: &Dedup,
    files: Vec<FileSource>,
    tags: &[&str],
) -> BackupSource {
    let metas: Vec<_> = store
        .scan_meta(KeyRange::all(), None)
        .try_collect()
        .await
        .unwrap();
    let mut entries = Vec::new();
    for m in metas {
        let value = match store.manifest(&m.key).await.unwrap().unwrap() {
            Manifest::Inline(v) => SourceValue::Inline(v),
            Manifest::Chunked(list) => SourceValue::Chunks(list.chunks),
        };
        entries.push(SourceEntry {
            key: m.key,
            meta: m.meta,
            value,
        });
    }
    BackupSource {
        time: chrono::Local::now().fixed_offset(),
        host: "test-host".into(),
        source: "/data".into(),
        tags: tags.iter().map(|s| s.to_string()).collect(),
        keys: Some(KeySource {
            entries,
            chunks: Some(store.chunk_store().clone()),
            values: None,
        }),
        files,
    }
}

/// Every key with its value and metadata.
pub(crate) async fn contents(store: &dyn KvStore) -> BTreeMap<Vec<u8>, (Bytes, ObjectMeta)> {
    let entries: Vec<_> = store
        .scan(KeyRange::all(), None)
        .try_collect()
        .await
        .unwrap();
    entries
        .into_iter()
        .map(|e| (e.key.as_bytes().to_vec(), (e.value, e.meta)))
        .collect()
}

fn same_meta(a: &ObjectMeta, b: &ObjectMeta) -> bool {
    a.size == b.size
        && a.checksum == b.checksum
        && a.content_type == b.content_type
        && a.created == b.created
        && a.modified == b.modified
}

pub(crate) async fn assert_restores_to(
    repo: &Repository,
    id: &str,
    expected: &BTreeMap<Vec<u8>, (Bytes, ObjectMeta)>,
) {
    let snapshot = repo.load_snapshot(id).await.unwrap();
    let target = MemoryStore::new();
    let report = restore_keys(repo, &snapshot, &target, None, &|_| {})
        .await
        .unwrap();
    assert_eq!(report.keys, expected.len() as u64);
    let got = contents(&target).await;
    assert_eq!(got.len(), expected.len());
    for (k, (value, meta)) in expected {
        let (v, m) = got.get(k).unwrap_or_else(|| panic!("key {k:?} restored"));
        assert_eq!(v, value, "value of {k:?}");
        assert!(same_meta(m, meta), "metadata of {k:?}: {m:?} vs {meta:?}");
    }
}

fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

pub(crate) async fn fill(store: &Dedup) {
    let old = SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000);
    store
        .put_with(
            &key("docs/a.html"),
            Bytes::from_static(b"<p>small, inline in its manifest</p>"),
            &PutOptions::with_content_type("text/html")
                .with_created(old)
                .with_modified(old),
        )
        .await
        .unwrap();
    store.put(&key("empty"), Bytes::new()).await.unwrap();
    store
        .put(&key("big/one"), incompressible(300_000, 1))
        .await
        .unwrap();
    store
        .put(&key("big/two"), incompressible(200_000, 2))
        .await
        .unwrap();
    store
        .put(
            &Key::new(vec![0xff, 0x00, 0x7f]).unwrap(),
            Bytes::from_static(b"binary key"),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn each_snapshot_restores_to_the_state_at_its_time_and_unchanged_backups_cost_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = repo_at(&tmp.path().join("repo")).await;
    let store = dedup_store().await;
    fill(&store).await;
    let files_dir = tmp.path().join("files");
    std::fs::create_dir_all(&files_dir).unwrap();
    let db_bytes = incompressible(1 << 20, 3);
    let db = write_file(&files_dir, "db", &db_bytes);
    let file = |path: &Path| {
        vec![FileSource {
            name: "sql/kv.db".into(),
            path: path.to_path_buf(),
        }]
    };

    let first = backup(
        &repo,
        source_of(&store, file(&db), &["first"]).await,
        &|_| {},
    )
    .await
    .unwrap();
    let state1 = contents(&store).await;
    assert_eq!(first.snapshot.summary.keys, 5);
    assert!(
        first.snapshot.summary.new_bytes >= 1 << 20,
        "{:?}",
        first.snapshot.summary
    );
    assert_eq!(first.snapshot.parent, None);

    // Change, delete and add keys; change the file by one page.
    store
        .put(&key("big/one"), incompressible(300_000, 9))
        .await
        .unwrap();
    store.delete(&key("empty")).await.unwrap();
    store
        .put(&key("new"), Bytes::from_static(b"added later"))
        .await
        .unwrap();
    let mut db2 = db_bytes.to_vec();
    db2[500_000..504_096].copy_from_slice(&[7u8; 4096]);
    let db_v2 = write_file(&files_dir, "db2", &db2);
    let second = backup(&repo, source_of(&store, file(&db_v2), &[]).await, &|_| {})
        .await
        .unwrap();
    let state2 = contents(&store).await;
    assert_eq!(second.snapshot.parent.as_deref(), Some(first.id.as_str()));
    // What changed: one 300 kB value, one small one, a chunk or so of the file, the tree.
    assert!(
        second.snapshot.summary.new_bytes < 450_000,
        "an incremental backup stores what changed: {:?}",
        second.snapshot.summary
    );

    // Nothing changed: no chunk stored.
    let third = backup(&repo, source_of(&store, file(&db_v2), &[]).await, &|_| {})
        .await
        .unwrap();
    assert_eq!(
        third.snapshot.summary.new_chunks, 0,
        "{:?}",
        third.snapshot.summary
    );

    let repo = reopen(&repo).await;
    assert_restores_to(&repo, &first.id, &state1).await;
    assert_restores_to(&repo, &second.id, &state2).await;
    for (id, expected) in [(&first.id, &db_bytes[..]), (&second.id, &db2[..])] {
        let snapshot = repo.load_snapshot(id).await.unwrap();
        let item = snapshot.files().next().unwrap();
        let out = tmp.path().join("restored").join(&id[..8]).join("kv.db");
        restore_file(&repo, item, &out).await.unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), expected);
    }

    // A prefix restores a subset.
    let snapshot = repo.load_snapshot(&second.id).await.unwrap();
    let target = MemoryStore::new();
    restore_keys(&repo, &snapshot, &target, Some(b"big/"), &|_| {})
        .await
        .unwrap();
    let keys: Vec<_> = contents(&target).await.into_keys().collect();
    assert_eq!(keys, vec![b"big/one".to_vec(), b"big/two".to_vec()]);

    let a = repo.load_snapshot(&first.id).await.unwrap();
    let changes = diff(&repo, &a, &snapshot).await.unwrap();
    assert_eq!(changes.keys_added, vec!["new"]);
    assert_eq!(changes.keys_removed, vec!["empty"]);
    assert_eq!(changes.keys_changed, vec!["big/one"]);
    assert_eq!(changes.files_changed, vec!["sql/kv.db"]);

    let report = verify(&repo, ReadData::All, &|_, _| {}).await.unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.snapshots, 3);
    assert_eq!(report.packs_read, report.packs);
}

#[tokio::test]
async fn values_read_from_a_plain_store_are_cut_and_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = repo_at(tmp.path()).await;
    let plain: Arc<dyn KvStore> = Arc::new(MemoryStore::new());
    plain
        .put(&key("a"), incompressible(100_000, 4))
        .await
        .unwrap();
    plain
        .put(&key("large"), incompressible((16 << 20) + 12_345, 5))
        .await
        .unwrap();
    let metas: Vec<_> = plain
        .scan_meta(KeyRange::all(), None)
        .try_collect()
        .await
        .unwrap();
    let entries = metas
        .iter()
        .map(|m| SourceEntry {
            key: m.key.clone(),
            meta: m.meta.clone(),
            value: SourceValue::Read,
        })
        .collect();
    let source = BackupSource {
        time: chrono::Local::now().fixed_offset(),
        host: "h".into(),
        source: "/plain".into(),
        tags: vec![],
        keys: Some(KeySource {
            entries,
            chunks: None,
            values: Some(plain.clone()),
        }),
        files: vec![],
    };
    let first = backup(&repo, source.clone(), &|_| {}).await.unwrap();
    let expected = contents(plain.as_ref()).await;
    assert_restores_to(&repo, &first.id, &expected).await;

    // A value that changed after its metadata was taken fails the backup, and no snapshot
    // appears.
    plain
        .put(&key("a"), Bytes::from_static(b"changed"))
        .await
        .unwrap();
    let err = backup(&repo, source, &|_| {})
        .await
        .expect_err("a changed value");
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    assert_eq!(repo.snapshot_ids().await.unwrap().len(), 1);
}

/// The FileStore record file holding `needle`, and where.
pub(crate) fn find_in_files(root: &Path, needle: &[u8]) -> Option<(PathBuf, usize)> {
    for entry in walk(root) {
        let bytes = std::fs::read(&entry).ok()?;
        if let Some(at) = bytes.windows(needle.len()).position(|w| w == needle) {
            return Some((entry, at));
        }
    }
    None
}

pub(crate) fn walk(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// The pack and byte range of the first chunk of `key` in `snapshot`.
pub(crate) async fn first_chunk_of(
    repo: &Repository,
    snapshot: &hybridstore_backup::Snapshot,
    key: &str,
) -> (Key, std::ops::Range<u64>) {
    let tree = read_tree(repo, snapshot).await.unwrap();
    let entry = tree.iter().find(|e| e.display_key() == key).unwrap();
    repo.chunks().locate(&entry.chunks[0].0).unwrap()
}

pub(crate) fn flip(path: &Path, at: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at] ^= 0x40;
    std::fs::write(path, bytes).unwrap();
}

#[tokio::test]
async fn a_flipped_byte_in_a_chunk_is_named_by_verify_and_fails_the_restore() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("repo");
    let repo = repo_at(&dir).await;
    let store = dedup_store().await;
    fill(&store).await;
    let done = backup(&repo, source_of(&store, vec![], &[]).await, &|_| {})
        .await
        .unwrap();
    // Damage one chunk of big/two inside its pack.
    let snapshot = repo.load_snapshot(&done.id).await.unwrap();
    let (pack, range) = first_chunk_of(&repo, &snapshot, "big/two").await;
    let blob = repo
        .store()
        .get_range(&pack, range.clone())
        .await
        .unwrap()
        .unwrap();
    let (file, at) = find_in_files(&dir, &blob[blob.len() / 2..blob.len() / 2 + 64]).unwrap();
    flip(&file, at + 10);

    let repo = reopen(&repo).await;
    let structure = verify(&repo, ReadData::None, &|_, _| {}).await.unwrap();
    assert!(
        structure.is_ok(),
        "the structure is intact: {:?}",
        structure.problems
    );
    let report = verify(&repo, ReadData::All, &|_, _| {}).await.unwrap();
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    let problem = &report.problems[0];
    assert_eq!(problem.snapshot.as_deref(), Some(done.id.as_str()));
    assert_eq!(problem.item.as_deref(), Some("keys:big/two"));
    assert_eq!(problem.pack.as_deref(), pack.as_str());

    let target = MemoryStore::new();
    let err = restore_keys(&repo, &snapshot, &target, None, &|_| {})
        .await
        .expect_err("a damaged value is not restored");
    assert_eq!(err.kind(), ErrorKind::Corrupted, "{err}");
    assert!(target.get(&key("big/two")).await.unwrap().is_none());
}

#[tokio::test]
async fn damaged_snapshot_records_and_missing_packs_are_found_by_the_structure_check() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("repo");
    let repo = repo_at(&dir).await;
    let store = dedup_store().await;
    fill(&store).await;
    let one = backup(&repo, source_of(&store, vec![], &[]).await, &|_| {})
        .await
        .unwrap();
    store
        .put(&key("later"), incompressible(80_000, 7))
        .await
        .unwrap();
    let two = backup(&repo, source_of(&store, vec![], &[]).await, &|_| {})
        .await
        .unwrap();

    // Snapshot one's record: flip a byte in it.
    let record = repo
        .store()
        .get(&Key::new(format!("snapshots/{}", one.id)).unwrap())
        .await
        .unwrap()
        .unwrap();
    let (file, at) = find_in_files(&dir, &record[..record.len().min(200)]).unwrap();
    flip(&file, at + 20);
    // Snapshot two's new chunk: delete the pack that holds it.
    let snapshot_two = repo.load_snapshot(&two.id).await.unwrap();
    let tree = read_tree(&repo, &snapshot_two).await.unwrap();
    let later = tree.iter().find(|e| e.display_key() == "later").unwrap();
    let (pack, _) = repo.chunks().locate(&later.chunks[0].0).unwrap();
    repo.store().delete(&pack).await.unwrap();

    let repo = reopen(&repo).await;
    let report = verify(&repo, ReadData::None, &|_, _| {}).await.unwrap();
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.snapshot.as_deref() == Some(one.id.as_str()) && p.item.is_none()),
        "the damaged record is named: {:?}",
        report.problems
    );
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.snapshot.as_deref() == Some(two.id.as_str())
                && p.item.as_deref() == Some("keys:later")
                && p.message.contains("missing")),
        "the missing chunk is named by snapshot and key: {:?}",
        report.problems
    );
    let err = restore_keys(&repo, &snapshot_two, &MemoryStore::new(), None, &|_| {})
        .await
        .expect_err("a snapshot with a lost chunk does not restore");
    assert_eq!(err.kind(), ErrorKind::Corrupted);
}

#[tokio::test]
async fn an_exclusive_lock_keeps_backups_out_and_a_dead_process_lock_is_stale() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = repo_at(tmp.path()).await;
    let store = dedup_store().await;
    fill(&store).await;
    let held = repo.lock(true).await.unwrap();
    let err = backup(&repo, source_of(&store, vec![], &[]).await, &|_| {})
        .await
        .expect_err("prune holds the repository");
    assert_eq!(err.kind(), ErrorKind::Locked, "{err}");
    held.release().await.unwrap();
    backup(&repo, source_of(&store, vec![], &[]).await, &|_| {})
        .await
        .unwrap();

    // A lock left by a process of this host that is gone does not count.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let record = serde_json::json!({
        "host": hybridstore_backup::host_name(), "pid": dead, "exclusive": true,
        "time": SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs(),
    });
    repo.store()
        .put(
            &key("locks/left-by-a-crash"),
            Bytes::from(record.to_string()),
        )
        .await
        .unwrap();
    backup(&repo, source_of(&store, vec![], &[]).await, &|_| {})
        .await
        .unwrap();
}

/// Rewrites every pack with a creation time `age` in the past, as if written then.
async fn age_packs(store: &dyn KvStore, age: Duration) {
    let packs: Vec<_> = store
        .scan(KeyRange::prefix("packs/"), None)
        .try_collect()
        .await
        .unwrap();
    let then = SystemTime::now() - age;
    for p in packs {
        store
            .put_with(
                &p.key,
                p.value,
                &PutOptions::default().with_created(then).with_modified(then),
            )
            .await
            .unwrap();
    }
}

/// Moves every prune mark `age` into the past.
async fn age_marks(store: &dyn KvStore, age: Duration) {
    let k = key("prune/pending");
    let bytes = store.get(&k).await.unwrap().unwrap();
    let mut pending: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    for (_, t) in pending["packs"].as_object_mut().unwrap() {
        *t = serde_json::json!(t.as_u64().unwrap() - age.as_secs());
    }
    store
        .put(&k, Bytes::from(pending.to_string()))
        .await
        .unwrap();
}

#[tokio::test]
async fn prune_marks_first_deletes_after_the_grace_and_keeps_what_a_late_backup_reused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("repo");
    let repo = repo_at(&dir).await;
    let store = dedup_store().await;
    store
        .put(&key("kept"), incompressible(100_000, 11))
        .await
        .unwrap();
    store
        .put(&key("dropped"), incompressible(100_000, 12))
        .await
        .unwrap();
    backup(&repo, source_of(&store, vec![], &[]).await, &|_| {})
        .await
        .unwrap();
    store.delete(&key("dropped")).await.unwrap();
    // A second pack for the newer snapshot's tree, so "dropped" has a pack mostly its own.
    let new = backup(&repo, source_of(&store, vec![], &[]).await, &|_| {})
        .await
        .unwrap();

    let forgotten = forget(
        &repo,
        &RetentionPolicy {
            last: 1,
            ..Default::default()
        },
        false,
    )
    .await
    .unwrap();
    assert_eq!(forgotten.removed, 1);
    assert_eq!(repo.snapshot_ids().await.unwrap(), vec![new.id.clone()]);

    // Young packs are never marked.
    let young = prune(&reopen(&repo).await, &PruneOptions::default())
        .await
        .unwrap();
    assert_eq!(
        (young.packs_marked, young.packs_deleted),
        (0, 0),
        "{young:?}"
    );
    assert!(young.packs_in_grace > 0);

    age_packs(repo.store().as_ref(), Duration::from_secs(2 * 3600)).await;
    // A backup that opened the repository before the prune marks anything...
    let late = reopen(&repo).await;
    let first = prune(&reopen(&repo).await, &PruneOptions::default())
        .await
        .unwrap();
    assert!(first.packs_marked >= 1, "{first:?}");
    assert_eq!(
        first.packs_deleted, 0,
        "nothing is deleted in the marking prune"
    );
    // ...reuses the marked chunks of "dropped" when it backs it up again.
    store
        .put(&key("dropped"), incompressible(100_000, 12))
        .await
        .unwrap();
    let reused = backup(&late, source_of(&store, vec![], &["late"]).await, &|_| {})
        .await
        .unwrap();
    assert!(
        reused.snapshot.summary.new_bytes < 50_000,
        "{:?}",
        reused.snapshot.summary
    );
    // A backup that opens after the mark stores them again rather than rely on them.
    let fresh = backup(
        &reopen(&repo).await,
        source_of(&store, vec![], &[]).await,
        &|_| {},
    )
    .await
    .unwrap();
    assert!(
        fresh.snapshot.summary.new_bytes >= 100_000,
        "{:?}",
        fresh.snapshot.summary
    );

    // The grace passes: the marked pack a snapshot still needs only there comes back...
    age_marks(repo.store().as_ref(), Duration::from_secs(2 * 3600)).await;
    let second = prune(&reopen(&repo).await, &PruneOptions::default())
        .await
        .unwrap();
    let repo = reopen(&repo).await;
    let report = verify(&repo, ReadData::All, &|_, _| {}).await.unwrap();
    assert!(report.is_ok(), "{second:?}: {:?}", report.problems);
    for id in repo.snapshot_ids().await.unwrap() {
        let snapshot = repo.load_snapshot(&id).await.unwrap();
        restore_keys(&repo, &snapshot, &MemoryStore::new(), None, &|_| {})
            .await
            .unwrap();
    }
    // ...and once no snapshot needs what is marked, it is deleted.
    let policy = RetentionPolicy {
        tags: vec![vec!["never".into()]],
        last: 1,
        ..Default::default()
    };
    forget(&repo, &policy, false).await.unwrap();
    let before = walk(&dir).len();
    prune(
        &reopen(&repo).await,
        &PruneOptions::with_grace(Duration::ZERO),
    )
    .await
    .unwrap();
    let repo = reopen(&repo).await;
    assert!(walk(&dir).len() < before, "packs were deleted");
    let report = verify(&repo, ReadData::All, &|_, _| {}).await.unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    let only = repo.snapshot_ids().await.unwrap();
    assert_eq!(only.len(), 1);
    let snapshot = repo.load_snapshot(&only[0]).await.unwrap();
    restore_keys(&repo, &snapshot, &MemoryStore::new(), None, &|_| {})
        .await
        .unwrap();
}

#[tokio::test]
async fn a_snapshot_reads_as_a_read_only_store() {
    use hybridstore_backup::SnapshotStore;
    let tmp = tempfile::tempdir().unwrap();
    let repo = repo_at(tmp.path()).await;
    let store = dedup_store().await;
    fill(&store).await;
    let done = backup(&repo, source_of(&store, vec![], &[]).await, &|_| {})
        .await
        .unwrap();
    let expected = contents(&store).await;
    store
        .put(&key("big/one"), Bytes::from_static(b"changed since"))
        .await
        .unwrap();

    let snapshot = SnapshotStore::open(reopen(&repo).await, &done.id[..6])
        .await
        .unwrap();
    assert_eq!(snapshot.id(), done.id);
    let seen = contents(&snapshot).await;
    assert_eq!(seen.len(), expected.len());
    for (k, (value, meta)) in &expected {
        let (v, m) = &seen[k];
        assert_eq!(v, value);
        assert!(same_meta(m, meta), "{k:?}");
    }
    let big = &expected[&b"big/one".to_vec()].0;
    // A range across chunk boundaries reads only what it covers, and matches.
    let part = snapshot
        .get_range(&key("big/one"), 70_000..210_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&part[..], &big[70_000..210_000]);
    let streamed = snapshot
        .get_stream(&key("big/one"), None)
        .await
        .unwrap()
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(&streamed, big);
    let listed = snapshot
        .list_keys(KeyRange::prefix("big/"), None)
        .await
        .unwrap();
    assert_eq!(listed, vec![key("big/one"), key("big/two")]);
    assert!(snapshot.get(&key("missing")).await.unwrap().is_none());
    let err = snapshot
        .put(&key("x"), Bytes::new())
        .await
        .expect_err("read-only");
    assert_eq!(err.kind(), ErrorKind::Unsupported);
    assert_eq!(
        snapshot.delete(&key("empty")).await.unwrap_err().kind(),
        ErrorKind::Unsupported
    );
}
