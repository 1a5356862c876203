//! ObjectStoreKv: the conformance suite on three object stores, the object layout, crash
//! recovery of batches, and bounded calls when S3 is down.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::faults::FaultyStore;
use hybridstore_core::conformance::Fixture;
use hybridstore_core::services::SeaweedS3;
use hybridstore_core::{Bytes, ErrorKind, Key, KeyRange, KvStore, PutOptions, WriteBatch};
use hybridstore_sync::{ObjectStoreKv, ObjectStoreKvOptions, RemoteUrl, S3_MAX_OBJECT_KEY_LEN};
use object_store::{ObjectStore, ObjectStoreExt};

fn key(s: impl AsRef<[u8]>) -> Key {
    Key::new(Bytes::copy_from_slice(s.as_ref())).unwrap()
}

async fn on_s3(s3: &SeaweedS3, prefix: &str, options: ObjectStoreKvOptions) -> ObjectStoreKv {
    let url: RemoteUrl = s3.uri(prefix).parse().unwrap();
    ObjectStoreKv::open_url(&url, &s3.storage_options(), options)
        .await
        .unwrap()
}

mod in_memory {
    use super::*;
    hybridstore_core::conformance_tests!(|| async {
        let url: RemoteUrl = "memory://".parse().unwrap();
        Fixture::new(
            ObjectStoreKv::open_url(&url, &[], ObjectStoreKvOptions::default())
                .await
                .unwrap(),
        )
    });
}

mod local_file_system {
    use super::*;
    hybridstore_core::conformance_tests!(|| async {
        let dir = tempfile::tempdir().unwrap();
        let url = RemoteUrl::Local {
            dir: dir.path().join("remote"),
        };
        let kv = ObjectStoreKv::open_url(&url, &[], ObjectStoreKvOptions::default())
            .await
            .unwrap();
        Fixture::with_guard(kv, dir)
    });
}

mod seaweedfs {
    use super::*;
    hybridstore_core::conformance_tests!(|| async {
        let s3 = SeaweedS3::start()?;
        // Small parts, so the 64 MiB check goes up as a real multipart upload.
        let options = ObjectStoreKvOptions::default().with_multipart(8 << 20, 5 << 20);
        let kv = on_s3(&s3, "conformance/kv", options).await;
        Some(Fixture::with_guard(kv, s3).reusable())
    });
}

mod tenant_on_seaweedfs {
    use super::*;
    use hybridstore_core::{Namespaced, TenantId};
    hybridstore_core::conformance_tests!(|| async {
        let s3 = SeaweedS3::start()?;
        let kv = on_s3(&s3, "tenants", ObjectStoreKvOptions::default()).await;
        Some(Fixture::with_guard(Namespaced::new(kv, TenantId::new("t1").unwrap()), s3).reusable())
    });
}

/// Every object a store wrote, as paths relative to the store's root.
async fn object_paths(store: &Arc<dyn ObjectStore>) -> Vec<String> {
    use futures::TryStreamExt;
    let mut paths: Vec<String> = store
        .list(None)
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap();
    paths.sort();
    paths
}

#[tokio::test]
async fn keys_are_hex_paths_under_the_prefix_and_the_longest_fits_s3() {
    let url: RemoteUrl = "memory://".parse().unwrap();
    let kv = ObjectStoreKv::open_url(&url, &[], ObjectStoreKvOptions::default())
        .await
        .unwrap();
    let max = kv.capabilities().max_key_len;
    assert!((490..=511).contains(&max), "max key length {max}");
    // Hostile keys: traversal, separators, NUL and 0xFF, the longest allowed.
    let hostile = [
        b"../../etc/passwd".to_vec(),
        b"/absolute".to_vec(),
        b"a/./b//c".to_vec(),
        vec![0u8, 0xFF, b'/', b'.'],
        vec![0xFFu8; max],
    ];
    for k in &hostile {
        kv.put(&key(k), Bytes::from_static(b"x")).await.unwrap();
    }
    let paths = object_paths(kv.object_store()).await;
    assert_eq!(paths.len(), hostile.len());
    for p in &paths {
        assert!(p.starts_with("v/") && p.ends_with(".v"), "{p}");
        assert!(p.len() <= S3_MAX_OBJECT_KEY_LEN, "{} bytes", p.len());
        assert!(!p.contains("..") || p.ends_with(".v") && !p[..p.len() - 2].contains('.'));
    }
    let listed = kv.list_keys(KeyRange::all(), None).await.unwrap();
    let mut expected: Vec<Key> = hostile.iter().map(key).collect();
    expected.sort();
    assert_eq!(listed, expected);
    let err = kv
        .put(&key(vec![b'k'; max + 1]), Bytes::from_static(b"x"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
}

#[tokio::test]
async fn metadata_round_trips_through_the_objects() {
    let dir = tempfile::tempdir().unwrap();
    let url = RemoteUrl::Local {
        dir: dir.path().to_path_buf(),
    };
    let created = std::time::UNIX_EPOCH + Duration::from_secs(1_600_000_000);
    let modified = created + Duration::from_nanos(123_456_789);
    let options = PutOptions::with_content_type("text/markdown")
        .with_created(created)
        .with_modified(modified);
    let meta = {
        let kv = ObjectStoreKv::open_url(&url, &[], ObjectStoreKvOptions::default())
            .await
            .unwrap();
        kv.put_with(&key("notes/a.md"), Bytes::from_static(b"# A"), &options)
            .await
            .unwrap()
    };
    // A new instance (another process) reads what the first wrote.
    let kv = ObjectStoreKv::open_url(&url, &[], ObjectStoreKvOptions::default())
        .await
        .unwrap();
    let head = kv.head(&key("notes/a.md")).await.unwrap().unwrap();
    assert_eq!(head, meta);
    assert_eq!(head.created, created);
    assert_eq!(head.modified, modified);
    assert_eq!(head.content_type.as_deref(), Some("text/markdown"));
}

#[tokio::test]
async fn a_damaged_object_reads_as_corrupted() {
    let url: RemoteUrl = "memory://".parse().unwrap();
    let kv = ObjectStoreKv::open_url(&url, &[], ObjectStoreKvOptions::default())
        .await
        .unwrap();
    kv.put(&key("k"), Bytes::from(vec![7u8; 1000]))
        .await
        .unwrap();
    let store = kv.object_store().clone();
    let path = object_store::path::Path::from(object_paths(&store).await[0].as_str());
    let mut bytes = store
        .get(&path)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x20;
    store.put(&path, bytes.into()).await.unwrap();
    assert_eq!(
        kv.get(&key("k")).await.unwrap_err().kind(),
        ErrorKind::Corrupted
    );
}

fn values_down() -> Arc<FaultyStore> {
    FaultyStore::in_memory()
}

async fn open_on(store: Arc<FaultyStore>) -> hybridstore_core::Result<ObjectStoreKv> {
    ObjectStoreKv::open(
        store,
        "",
        "memory://values-down",
        ObjectStoreKvOptions::default().with_sorted_listing(true),
    )
    .await
}

fn three_key_batch() -> WriteBatch {
    let mut batch = WriteBatch::new();
    batch
        .put(key("a"), Bytes::from_static(b"new a"))
        .put(key("b"), Bytes::from_static(b"new b"))
        .delete(key("c"));
    batch
}

async fn assert_batch_applied(kv: &ObjectStoreKv) {
    assert_eq!(
        kv.get(&key("a")).await.unwrap().as_deref(),
        Some(&b"new a"[..])
    );
    assert_eq!(
        kv.get(&key("b")).await.unwrap().as_deref(),
        Some(&b"new b"[..])
    );
    assert_eq!(kv.get(&key("c")).await.unwrap(), None);
}

/// A batch whose record was written but whose values were not (the process died in
/// between) is applied by the next open, before any read, and its record removed.
#[tokio::test]
async fn a_committed_batch_left_by_a_crash_is_applied_at_open() {
    let store = values_down();
    let kv = open_on(store.clone()).await.unwrap();
    kv.put(&key("a"), Bytes::from_static(b"old a"))
        .await
        .unwrap();
    kv.put(&key("c"), Bytes::from_static(b"old c"))
        .await
        .unwrap();
    store.fail_puts_under("v/", 0);
    // Committed (the record is durable), so acknowledged; applying it is owed.
    kv.write_batch(three_key_batch()).await.unwrap();
    drop(kv); // the process dies before it applies the batch
    let dyn_store: Arc<dyn ObjectStore> = store.clone();
    let paths = object_paths(&dyn_store).await;
    assert_eq!(
        paths.iter().filter(|p| p.starts_with("b/")).count(),
        1,
        "{paths:?}"
    );
    // While the values cannot be written, opening fails rather than show half a batch.
    let err = open_on(store.clone()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    store.heal();
    let kv = open_on(store.clone()).await.unwrap();
    assert_batch_applied(&kv).await;
    let paths = object_paths(&dyn_store).await;
    assert!(
        paths.iter().all(|p| p.starts_with("v/")),
        "record not removed: {paths:?}"
    );
}

/// A batch cut off by an outage after its commit point is applied before the same store's
/// next operation: reads fail with a retryable `Unavailable` until it can be, and then see
/// all of it; never the old values of some keys beside the new values of others.
#[tokio::test]
async fn a_batch_cut_off_by_an_outage_is_finished_before_the_next_read() {
    let store = values_down();
    let kv = open_on(store.clone()).await.unwrap();
    kv.put(&key("a"), Bytes::from_static(b"old a"))
        .await
        .unwrap();
    kv.put(&key("c"), Bytes::from_static(b"old c"))
        .await
        .unwrap();
    store.fail_puts_under("v/", 0);
    kv.write_batch(three_key_batch()).await.unwrap();
    for k in ["a", "b", "c"] {
        let err = kv.get(&key(k)).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
        assert!(err.is_retryable());
    }
    assert_eq!(
        kv.list_keys(KeyRange::all(), None)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::Unavailable
    );
    store.heal();
    assert_batch_applied(&kv).await;
    assert_eq!(
        kv.list_keys(KeyRange::all(), None).await.unwrap(),
        vec![key("a"), key("b")]
    );
}

/// With S3 down, every kind of call fails with a retryable `Unavailable` within the
/// configured time (not object_store's default of retrying for three minutes); once it is
/// back, the store works again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_fail_fast_and_retryable_while_s3_is_down() {
    let Some(mut s3) = SeaweedS3::start() else {
        return;
    };
    let timeout = Duration::from_secs(3);
    // Written with the default timeout (a server just started may be slow), read back
    // through a store with a short one.
    on_s3(&s3, "down", ObjectStoreKvOptions::default())
        .await
        .put(&key("before"), Bytes::from_static(b"kept"))
        .await
        .unwrap();
    let kv = on_s3(
        &s3,
        "down",
        ObjectStoreKvOptions::default().with_timeout(timeout),
    )
    .await;
    s3.stop();
    let started = Instant::now();
    let errors = [
        kv.get(&key("before")).await.unwrap_err(),
        kv.put(&key("during"), Bytes::from_static(b"x"))
            .await
            .unwrap_err(),
        kv.list_keys(KeyRange::all(), None).await.unwrap_err(),
        kv.delete(&key("before")).await.unwrap_err(),
    ];
    let elapsed = started.elapsed();
    for e in &errors {
        assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
        assert!(e.is_retryable(), "{e}");
    }
    // Four calls, each bounded by the timeout (plus scheduling slack).
    assert!(
        elapsed < 4 * timeout + Duration::from_secs(4),
        "took {elapsed:?}"
    );
    s3.restart();
    assert_eq!(
        kv.get(&key("before")).await.unwrap().as_deref(),
        Some(&b"kept"[..])
    );
    assert_eq!(kv.get(&key("during")).await.unwrap(), None);
}

/// A prefix scan whose prefix fills whole path segments (64 bytes) finds the key equal to
/// the prefix too, on every kind of listing.
#[tokio::test]
async fn a_prefix_of_whole_segments_scans_the_key_equal_to_it() {
    let dir = tempfile::tempdir().unwrap();
    for url in [
        RemoteUrl::Local {
            dir: dir.path().to_path_buf(),
        },
        RemoteUrl::Memory,
    ] {
        let kv = ObjectStoreKv::open_url(&url, &[], ObjectStoreKvOptions::default())
            .await
            .unwrap();
        let prefix = vec![b'p'; 64];
        let keys = [prefix.clone(), [prefix.clone(), b"/x".to_vec()].concat()];
        for k in &keys {
            kv.put(&key(k), Bytes::from_static(b"v")).await.unwrap();
        }
        kv.put(&key(b"q"), Bytes::from_static(b"v")).await.unwrap();
        let listed = kv
            .list_keys(KeyRange::prefix(Bytes::from(prefix)), None)
            .await
            .unwrap();
        assert_eq!(listed, keys.iter().map(key).collect::<Vec<_>>(), "{url}");
    }
}
