//! Encrypted repositories: the sealing layer passes the storage-core conformance suite, a
//! repository sealed under a password round-trips and shows none of its contents, wrong or
//! missing passwords are refused, and damage or moved values fail loudly.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use hybridstore_backup::crypto::{MasterKey, Password, sealed_len};
use hybridstore_backup::{EncryptedStore, ReadData, Repository, backup, restore_keys, verify};
use hybridstore_core::conformance::{Fixture, incompressible};
use hybridstore_core::{ErrorKind, KeyRange, KvStore, MemoryStore};
use hybridstore_file::FileStore;

use crate::repo::{
    assert_restores_to, contents, dedup_store, fill, find_in_files, first_chunk_of, flip, key,
    source_of, walk,
};

mod memory_conformance {
    use super::*;
    hybridstore_core::conformance_tests!(|| async {
        Fixture::new(EncryptedStore::new(
            Arc::new(MemoryStore::new()),
            &MasterKey::generate(),
        ))
    });
}

mod file_conformance {
    use super::*;
    hybridstore_core::conformance_tests!(|| async {
        let dir = tempfile::tempdir().unwrap();
        let inner = FileStore::open(dir.path()).await.unwrap();
        Fixture::with_guard(
            EncryptedStore::new(Arc::new(inner), &MasterKey::generate()),
            dir,
        )
    });
}

fn password(text: &str) -> Password {
    Password::new(text).unwrap()
}

async fn file_store(dir: &Path) -> Arc<dyn KvStore> {
    Arc::new(FileStore::open(dir).await.unwrap())
}

#[tokio::test]
async fn a_sealed_value_opens_only_under_its_key_and_master_key_and_whole() {
    let inner: Arc<dyn KvStore> = Arc::new(MemoryStore::new());
    let master = MasterKey::generate();
    let store = EncryptedStore::new(inner.clone(), &master);
    let value = incompressible(200_000, 7);
    store.put(&key("a"), value.clone()).await.unwrap();
    let sealed = inner.get(&key("a")).await.unwrap().unwrap();
    assert_eq!(sealed.len() as u64, sealed_len(value.len() as u64));
    assert!(
        !sealed.windows(32).any(|w| w == &value[1000..1032]),
        "no plaintext below the layer"
    );
    assert_eq!(store.get(&key("a")).await.unwrap().unwrap(), value);
    assert_eq!(
        store.head(&key("a")).await.unwrap().unwrap().checksum,
        hybridstore_core::Sha256Digest::of(&value)
    );

    // Moved to another key: the associated data no longer matches.
    inner.put(&key("b"), sealed.clone()).await.unwrap();
    let err = store.get(&key("b")).await.expect_err("a moved value");
    assert_eq!(err.kind(), ErrorKind::Corrupted, "{err}");
    // Another master key.
    let other = EncryptedStore::new(inner.clone(), &MasterKey::generate());
    let err = other.get(&key("a")).await.expect_err("another key");
    assert_eq!(err.kind(), ErrorKind::Corrupted, "{err}");
    // Cut short by whole segments, and by one byte.
    inner
        .put(&key("a"), sealed.slice(..sealed.len() - 65_552))
        .await
        .unwrap();
    let err = store.get(&key("a")).await.expect_err("a cut value");
    assert_eq!(err.kind(), ErrorKind::Corrupted, "{err}");
    inner
        .put(&key("a"), sealed.slice(..sealed.len() - 1))
        .await
        .unwrap();
    let err = store.get(&key("a")).await.expect_err("a cut value");
    assert_eq!(err.kind(), ErrorKind::Corrupted, "{err}");
    // One flipped byte in the middle segment: whole reads and range reads of it fail,
    // a range elsewhere still reads.
    let mut damaged = sealed.to_vec();
    damaged[100_000] ^= 1;
    inner.put(&key("a"), Bytes::from(damaged)).await.unwrap();
    let err = store.get(&key("a")).await.expect_err("a damaged value");
    assert_eq!(err.kind(), ErrorKind::Corrupted, "{err}");
    let err = store
        .get_range(&key("a"), 99_000..101_000)
        .await
        .expect_err("a damaged segment");
    assert_eq!(err.kind(), ErrorKind::Corrupted, "{err}");
    assert_eq!(
        store
            .get_range(&key("a"), 10..20_000)
            .await
            .unwrap()
            .unwrap(),
        value.slice(10..20_000)
    );
}

#[tokio::test]
async fn an_encrypted_repository_round_trips_and_shows_none_of_its_contents() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("repo");
    let pw = password("correct horse battery staple");
    let repo = Repository::init_with(file_store(&dir).await, Some(&pw))
        .await
        .unwrap();
    assert!(repo.is_encrypted());
    let store = dedup_store().await;
    fill(&store).await;
    let expected = contents(&store).await;
    let done = backup(&repo, source_of(&store, vec![], &["t"]).await, &|_| {})
        .await
        .unwrap();

    // Nothing of the values, the inline value or the key names' tree is in the files.
    for needle in [
        &incompressible(300_000, 1)[5000..5064],
        &incompressible(200_000, 2)[100..164],
        &b"small, inline in its manifest"[..],
    ] {
        assert_eq!(
            find_in_files(&dir, needle),
            None,
            "plaintext in the repository"
        );
    }
    let raw = repo.raw_store().clone();
    let key_files = raw
        .list_keys(KeyRange::prefix("keys/"), None)
        .await
        .unwrap();
    assert_eq!(key_files.len(), 1, "one key file: {key_files:?}");
    assert!(walk(&dir).len() > 3);

    // No password, a wrong one: refused before anything is read.
    let err = Repository::open(raw.clone())
        .await
        .expect_err("no password");
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(err.to_string().contains("password"), "{err}");
    let err = Repository::open_with(raw.clone(), Some(&password("wrong")))
        .await
        .expect_err("a wrong password");
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");

    // The right one: verify reads every pack clean, the snapshot restores.
    let repo = Repository::open_with(raw.clone(), Some(&pw)).await.unwrap();
    let report = verify(&repo, ReadData::All, &|_, _| {}).await.unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_restores_to(&repo, &done.id, &expected).await;

    // A second password opens it too; the first still does.
    let second = password("second");
    repo.add_password(&pw, &second).await.unwrap();
    let by_second = Repository::open_with(raw.clone(), Some(&second))
        .await
        .unwrap();
    assert_restores_to(&by_second, &done.id, &expected).await;
    Repository::open_with(raw, Some(&pw)).await.unwrap();
}

#[tokio::test]
async fn a_flipped_byte_in_an_encrypted_pack_is_named_by_verify_and_fails_the_restore() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("repo");
    let pw = password("pw");
    let repo = Repository::init_with(file_store(&dir).await, Some(&pw))
        .await
        .unwrap();
    let store = dedup_store().await;
    fill(&store).await;
    let done = backup(&repo, source_of(&store, vec![], &[]).await, &|_| {})
        .await
        .unwrap();
    // The pack of big/two: flip a byte in the middle of its sealed file.
    let snapshot = repo.load_snapshot(&done.id).await.unwrap();
    let (pack, range) = first_chunk_of(&repo, &snapshot, "big/two").await;
    let sealed = repo.raw_store().get(&pack).await.unwrap().unwrap();
    // The sealed bytes of the chunk's middle (plaintext offset + header + one tag per
    // segment before it).
    let middle = (range.start + range.end) / 2;
    let at = 23 + middle + 16 * (middle / 65_536);
    let needle = &sealed[at as usize..at as usize + 64];
    let (file, offset) = find_in_files(&dir, needle).unwrap();
    flip(&file, offset);

    let repo = Repository::open_with(repo.raw_store().clone(), Some(&pw))
        .await
        .unwrap();
    let report = verify(&repo, ReadData::All, &|_, _| {}).await.unwrap();
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.snapshot.as_deref() == Some(done.id.as_str())
                && p.item.as_deref() == Some("keys:big/two")
                && p.pack.as_deref() == pack.as_str()),
        "{:?}",
        report.problems
    );
    let target = MemoryStore::new();
    let err = restore_keys(&repo, &snapshot, &target, None, &|_| {})
        .await
        .expect_err("a damaged value is not restored");
    assert_eq!(err.kind(), ErrorKind::Corrupted, "{err}");
    assert!(target.get(&key("big/two")).await.unwrap().is_none());
}

#[test]
fn passwords_come_from_the_first_line_of_a_file_and_never_print() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("pw");
    std::fs::write(&path, "s3cret\nignored\n").unwrap();
    let pw = Password::from_file(&path).unwrap();
    assert!(!format!("{pw:?}").contains("s3cret"));
    std::fs::write(&path, "\n").unwrap();
    assert_eq!(
        Password::from_file(&path).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    std::fs::write(&path, vec![b'a'; 5000]).unwrap();
    assert_eq!(
        Password::from_file(&path).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    assert!(Password::new("").is_err());
}
