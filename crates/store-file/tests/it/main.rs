//! FileStore: conformance, durability across reopen, corruption, hostile keys, crash safety.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers report failures by panicking

mod crash;
mod streaming;

use hybridstore_core::conformance::Fixture;
use hybridstore_core::{Bytes, ErrorKind, Key, KeyRange, KvStore, WriteBatch};
use hybridstore_file::FileStore;

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = FileStore::open(dir.path().join("store"))
        .await
        .expect("open");
    Fixture::with_guard(store, dir)
}

mod conformance {
    hybridstore_core::conformance_tests!(super::fixture);
}

mod namespaced_conformance {
    use hybridstore_core::conformance::Fixture;
    use hybridstore_core::{Namespaced, TenantId};
    use hybridstore_file::FileStore;

    async fn fixture() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = FileStore::open(dir.path()).await.expect("open");
        Fixture::with_guard(Namespaced::new(store, TenantId::new("t1").unwrap()), dir)
    }
    hybridstore_core::conformance_tests!(fixture);
}

fn key(s: &str) -> Key {
    Key::new(s.to_string()).unwrap()
}

#[tokio::test]
async fn data_and_metadata_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let long_key = Key::new(vec![b'L'; 900]).unwrap();
    let (meta, long_meta) = {
        let store = FileStore::open(dir.path()).await.unwrap();
        let meta = store
            .put_with(
                &key("docs/a.html"),
                Bytes::from_static(b"<p>hi</p>"),
                &hybridstore_core::PutOptions::with_content_type("text/html"),
            )
            .await
            .unwrap();
        let long_meta = store
            .put(&long_key, Bytes::from_static(b"long"))
            .await
            .unwrap();
        (meta, long_meta)
    };
    let store = FileStore::open(dir.path()).await.unwrap();
    assert_eq!(store.head(&key("docs/a.html")).await.unwrap(), Some(meta));
    assert_eq!(store.head(&long_key).await.unwrap(), Some(long_meta));
    assert_eq!(
        store.list_keys(KeyRange::all(), None).await.unwrap(),
        vec![long_key, key("docs/a.html")],
        "'L' (0x4C) sorts before 'd' (0x64)"
    );
    let stats = store.stats().await.unwrap();
    assert_eq!((stats.keys, stats.logical_bytes), (2, 13));
    assert!(stats.stored_bytes.unwrap() > 13);
}

#[tokio::test]
async fn a_second_process_is_refused_while_the_store_is_open() {
    let dir = tempfile::tempdir().unwrap();
    let first = FileStore::open(dir.path()).await.unwrap();
    // A second open in the same process takes a second file description, which conflicts
    // exactly as another process would.
    let err = FileStore::open(dir.path()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Locked);
    assert!(err.to_string().contains("in use"), "{err}");
    drop(first);
    FileStore::open(dir.path())
        .await
        .expect("reopen after close");
}

#[tokio::test]
async fn refuses_a_directory_that_is_not_a_store() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("precious.txt"), b"user data").unwrap();
    let err = FileStore::open(dir.path()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert_eq!(
        std::fs::read(dir.path().join("precious.txt")).unwrap(),
        b"user data"
    );
}

/// Flipping any one byte of a record (header or value) makes reads fail with `Corrupted`,
/// never return different bytes.
#[tokio::test]
async fn every_flipped_byte_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).await.unwrap();
    let k = key("victim");
    let value = Bytes::from((0..300u32).map(|i| (i * 7) as u8).collect::<Vec<_>>());
    store.put(&k, value.clone()).await.unwrap();
    let path = walk_records(dir.path()).pop().unwrap();
    let original = std::fs::read(&path).unwrap();
    for i in 0..original.len() {
        let mut damaged = original.clone();
        damaged[i] ^= 0x01;
        std::fs::write(&path, &damaged).unwrap();
        match store.get(&k).await {
            Err(e) => assert_eq!(e.kind(), ErrorKind::Corrupted, "byte {i}: {e}"),
            Ok(v) => panic!(
                "byte {i}: flipped record read back as {:?}",
                v.map(|v| v.len())
            ),
        }
    }
    std::fs::write(&path, &original[..original.len() - 1]).unwrap();
    assert_eq!(
        store.get(&k).await.unwrap_err().kind(),
        ErrorKind::Corrupted
    );
    std::fs::write(&path, &original).unwrap();
    assert_eq!(store.get(&k).await.unwrap(), Some(value));
}

/// Hostile keys never create or touch anything outside `objects/`.
#[tokio::test]
async fn hostile_keys_stay_inside_the_root() {
    let base = tempfile::tempdir().unwrap();
    let root = base.path().join("store");
    let canary = base.path().join("canary");
    std::fs::write(&canary, b"untouched").unwrap();
    let store = FileStore::open(&root).await.unwrap();
    let hostile: Vec<Vec<u8>> = vec![
        b"../canary".to_vec(),
        b"../../canary".to_vec(),
        b"/etc/passwd".to_vec(),
        b"..".to_vec(),
        b".".to_vec(),
        b"a/../../canary".to_vec(),
        b"..\\..\\canary".to_vec(),
        b"%2e%2e/canary".to_vec(),
        b"canary\0.txt".to_vec(),
        "..\u{2215}canary".as_bytes().to_vec(),
        b"LOCK".to_vec(),
        b"FORMAT".to_vec(),
        b"journal/x.batch".to_vec(),
        b".tmp.0000000000000000".to_vec(),
        vec![b'.'; 1024],
        vec![b'/'; 1024],
    ];
    for (i, k) in hostile.iter().enumerate() {
        let k = Key::new(k.clone()).unwrap();
        store.put(&k, Bytes::from(format!("v{i}"))).await.unwrap();
    }
    for (i, k) in hostile.iter().enumerate() {
        let k = Key::new(k.clone()).unwrap();
        assert_eq!(
            store.get(&k).await.unwrap(),
            Some(Bytes::from(format!("v{i}")))
        );
    }
    assert_eq!(std::fs::read(&canary).unwrap(), b"untouched");
    let mut outside: Vec<_> = std::fs::read_dir(base.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    outside.sort();
    assert_eq!(outside, ["canary", "store"]);
    assert_eq!(walk_records(&root).len(), hostile.len());
    drop(store);
    let store = FileStore::open(&root).await.unwrap();
    assert_eq!(
        store.list_keys(KeyRange::all(), None).await.unwrap().len(),
        hostile.len()
    );
}

/// A batch whose journal committed but whose renames never ran (a crash at that instant)
/// is completed on open; temp files of an uncommitted batch are discarded.
#[tokio::test]
async fn committed_batch_is_replayed_on_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = FileStore::open(dir.path()).await.unwrap();
        store
            .put(&key("old"), Bytes::from_static(b"old"))
            .await
            .unwrap();
    }
    // Simulate the moment after the commit point: staged temp + journal, renames not applied.
    let store = FileStore::open(dir.path()).await.unwrap();
    let mut batch = WriteBatch::new();
    batch
        .put(key("new1"), "n1")
        .put(key("new2"), "n2")
        .delete(key("old"));
    store.write_batch(batch).await.unwrap();
    let records = walk_records(dir.path());
    drop(store);
    // Turn the applied state back into "journal committed, nothing applied".
    let objects = dir.path().join("objects");
    let mut entries = Vec::new();
    for path in records {
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let temp_name = format!(".tmp.replay{name}");
        std::fs::rename(&path, path.with_file_name(&temp_name)).unwrap();
        entries.push((path, temp_name));
    }
    std::fs::write(objects.join("6f").join("k6c64"), b"stale old record").unwrap();
    // A journal listing the temp files (built through the public encoding used on disk).
    let journal = build_journal(&entries, dir.path());
    std::fs::write(
        dir.path()
            .join("journal")
            .join("00000000000000000001-0.batch"),
        journal,
    )
    .unwrap();
    std::fs::write(objects.join("6f").join(".tmp.orphan"), b"orphan").unwrap();

    let store = FileStore::open(dir.path()).await.unwrap();
    assert_eq!(store.recovery().replayed_batches, 1);
    assert_eq!(store.recovery().removed_temp_files, 1);
    assert_eq!(
        store.get(&key("new1")).await.unwrap().as_deref(),
        Some(&b"n1"[..])
    );
    assert_eq!(
        store.get(&key("new2")).await.unwrap().as_deref(),
        Some(&b"n2"[..])
    );
    assert_eq!(store.get(&key("old")).await.unwrap(), None);
    assert!(
        std::fs::read_dir(dir.path().join("journal"))
            .unwrap()
            .next()
            .is_none()
    );
}

/// The journal bytes for puts of `(record path, temp name)` plus a delete of "old", in the
/// format documented in `journal.rs`.
fn build_journal(puts: &[(std::path::PathBuf, String)], root: &std::path::Path) -> Vec<u8> {
    let mut out = b"HSJ1".to_vec();
    out.extend_from_slice(&(puts.len() as u32 + 1).to_le_bytes());
    for (path, temp) in puts {
        let header_key = read_record_key(path.with_file_name(temp).as_path());
        out.push(1);
        out.extend_from_slice(&(header_key.len() as u16).to_le_bytes());
        out.extend_from_slice(&header_key);
        out.extend_from_slice(&(temp.len() as u16).to_le_bytes());
        out.extend_from_slice(temp.as_bytes());
    }
    out.push(2);
    out.extend_from_slice(&3u16.to_le_bytes());
    out.extend_from_slice(b"old");
    let _ = root;
    let crc = crc32(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

fn read_record_key(path: &std::path::Path) -> Vec<u8> {
    let bytes = std::fs::read(path).unwrap();
    let key_len = u16::from_le_bytes([bytes[6], bytes[7]]) as usize;
    bytes[104..104 + key_len].to_vec()
}

/// CRC-32 (IEEE), bitwise; independent of the implementation under test.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Every record file under `root/objects`.
pub fn walk_records(root: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for dir in std::fs::read_dir(root.join("objects")).unwrap() {
        let dir = dir.unwrap().path();
        for f in std::fs::read_dir(&dir).unwrap() {
            let f = f.unwrap().path();
            let name = f.file_name().unwrap().to_str().unwrap().to_string();
            if name.starts_with('k') || name.starts_with('h') {
                out.push(f);
            }
        }
    }
    out.sort();
    out
}

/// Regression (issue 15, defect 1): a write batch whose future is dropped after it started
/// kept running in the blocking pool while its gate guard was released, so a put acknowledged
/// meanwhile was overwritten by the batch's later rename. Now the guard lives in the blocking
/// task: the put waits for the batch, and its value stands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_acknowledged_after_a_cancelled_batch_is_never_overwritten_by_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).await.unwrap();
    // Enough keys that staging them (one fsync each) outlasts a single put by far; the batch
    // renames in key order, so c/000 is renamed first and c/299 last.
    let mut batch = WriteBatch::new();
    for i in 0..300 {
        batch.put(
            key(&format!("c/{i:03}")),
            Bytes::from_static(b"from the batch"),
        );
    }
    let mut pending = Box::pin(store.write_batch(batch));
    assert!(
        futures::poll!(&mut pending).is_pending(),
        "the batch must be in flight when it is dropped"
    );
    drop(pending);
    store
        .put(&key("c/000"), Bytes::from_static(b"acknowledged put"))
        .await
        .unwrap();
    // Wait (bounded) until the batch's last rename is visible: the batch has applied by then.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while store.head(&key("c/299")).await.unwrap().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the batch never applied"
        );
        tokio::task::yield_now().await;
    }
    assert_eq!(
        store.get(&key("c/000")).await.unwrap().as_deref(),
        Some(&b"acknowledged put"[..]),
        "a cancelled batch overwrote a put acknowledged after it"
    );
    // And the batch itself happened whole (dropping its future did not undo it).
    assert_eq!(
        store
            .list_keys(KeyRange::prefix("c/"), None)
            .await
            .unwrap()
            .len(),
        300
    );
}

/// Regression (issue 15, defect 2): a committed batch that fails to apply left its journal on
/// disk while the store went on acknowledging writes, which the next open's replay then
/// overwrote. Now the store refuses reads and writes until reopened, and the reopen
/// completes the batch.
#[tokio::test]
async fn a_batch_that_fails_to_apply_stops_the_store_until_it_is_reopened() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).await.unwrap();
    store
        .put(&key("a1"), Bytes::from_static(b"old"))
        .await
        .unwrap();
    // A directory where b1's record goes makes the batch's rename onto it fail (EISDIR, even
    // for root), after a1's rename succeeded: a half-applied, committed batch.
    let blocker = dir.path().join("objects/62/k31");
    std::fs::create_dir_all(blocker.join("inside")).unwrap();
    let mut batch = WriteBatch::new();
    batch.put(key("a1"), Bytes::from_static(b"batch"));
    batch.put(key("b1"), Bytes::from_static(b"batch"));
    store.write_batch(batch).await.unwrap_err();

    let refused = store
        .put(&key("a1"), Bytes::from_static(b"after"))
        .await
        .expect_err("a write after a failed batch apply must be refused");
    assert_eq!(refused.kind(), ErrorKind::Unavailable, "{refused}");
    assert!(!refused.is_retryable());
    assert_eq!(
        store.get(&key("a1")).await.unwrap_err().kind(),
        ErrorKind::Unavailable,
        "a half-applied batch must not be readable"
    );
    drop(store);

    std::fs::remove_dir_all(&blocker).unwrap();
    let store = FileStore::open(dir.path()).await.unwrap();
    assert_eq!(store.recovery().replayed_batches, 1);
    for k in ["a1", "b1"] {
        assert_eq!(
            store.get(&key(k)).await.unwrap().as_deref(),
            Some(&b"batch"[..])
        );
    }
}

/// Every file under `dir` (links not followed), with its contents.
fn files_under(dir: &std::path::Path) -> std::collections::BTreeMap<std::path::PathBuf, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let t = e.file_type().unwrap();
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file() {
                out.insert(e.path(), std::fs::read(e.path()).unwrap());
            }
        }
    }
    out
}

/// The hostile keys of the conformance suite (traversal, absolute paths, NUL, encodings,
/// look-alikes, device names, overlong) write nothing outside the data directory: a canary
/// beside it is unchanged and every file the store made is under it. A symbolic link
/// planted in the data directory, where a key's directory would be, is refused (the put
/// fails, nothing is written through it) and so is reopening the store with it there.
#[tokio::test]
async fn hostile_keys_and_planted_links_never_write_outside_the_data_directory() {
    use hybridstore_core::conformance::hostile_keys;
    let dir = tempfile::tempdir().unwrap();
    let (root, outside) = (dir.path().join("data"), dir.path().join("outside"));
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("canary"), b"untouched").unwrap();
    std::fs::write(dir.path().join("canary"), b"untouched").unwrap();
    let before = files_under(dir.path());
    let store = FileStore::open(&root).await.unwrap();
    let keys = hostile_keys(store.capabilities().max_key_len);
    assert!(keys.len() >= 500);
    for (i, k) in keys.iter().enumerate() {
        store
            .put(&Key::new(k.clone()).unwrap(), Bytes::from(i.to_string()))
            .await
            .unwrap();
    }
    let after = files_under(dir.path());
    for (path, contents) in &before {
        assert_eq!(
            after.get(path),
            Some(contents),
            "{} changed",
            path.display()
        );
    }
    let made: Vec<_> = after.keys().filter(|p| !before.contains_key(*p)).collect();
    assert!(made.len() > keys.len(), "one record per key (plus FORMAT)");
    assert!(
        made.iter().all(|p| p.starts_with(&root)),
        "a file outside the data directory"
    );

    // A link planted where the directory of keys starting with 'q' (0x71) would be.
    std::os::unix::fs::symlink(&outside, root.join("objects/71")).unwrap();
    let err = store
        .put(
            &Key::new("quiet").unwrap(),
            Bytes::from_static(b"through the link?"),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupted, "{err}");
    assert!(err.to_string().contains("symbolic link"), "{err}");
    assert_eq!(
        files_under(&outside).len(),
        1,
        "nothing was written through the link"
    );
    drop(store);
    let err = FileStore::open(&root).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupted, "{err}");
    std::fs::remove_file(root.join("objects/71")).unwrap();
    let store = FileStore::open(&root).await.unwrap();
    assert_eq!(
        store.list_keys(KeyRange::all(), None).await.unwrap().len(),
        keys.len()
    );
}
