//! The sync engine between devices (each a local store and a state store) and one remote.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hybridstore_core::services::SeaweedS3;
use hybridstore_core::{Bytes, ErrorKind, Key, KeyRange, KvStore, MemoryStore, PutOptions};
use hybridstore_sync::{
    ConflictPolicy, Direction, ObjectStoreKv, ObjectStoreKvOptions, Remote, RemoteUrl, Side,
    SyncEngine, SyncOptions,
};
use object_store::ObjectStore;

use crate::faults::FaultyStore;

fn key(s: &str) -> Key {
    Key::new(s.to_string()).unwrap()
}

/// One device: its store, its sync state, and its engine on the shared remote.
struct Device {
    local: Arc<dyn KvStore>,
    engine: SyncEngine,
}

impl Device {
    async fn on(remote: Arc<dyn ObjectStore>) -> Device {
        let kv = ObjectStoreKv::open(
            remote,
            "",
            "shared",
            ObjectStoreKvOptions::default().with_sorted_listing(true),
        )
        .await
        .unwrap();
        Device::with_remote(Remote::on(kv, "shared".into()).await.unwrap())
    }

    fn with_remote(remote: Remote) -> Device {
        let local: Arc<dyn KvStore> = Arc::new(MemoryStore::new());
        let state: Arc<dyn KvStore> = Arc::new(MemoryStore::new());
        Device {
            engine: SyncEngine::new(local.clone(), state, remote),
            local,
        }
    }

    async fn put(&self, k: &str, v: &[u8], modified_secs: u64) {
        let options =
            PutOptions::default().with_modified(UNIX_EPOCH + Duration::from_secs(modified_secs));
        self.local
            .put_with(&key(k), Bytes::copy_from_slice(v), &options)
            .await
            .unwrap();
    }

    async fn get(&self, k: &str) -> Option<Vec<u8>> {
        self.local.get(&key(k)).await.unwrap().map(|b| b.to_vec())
    }

    async fn keys(&self) -> Vec<String> {
        self.local
            .list_keys(KeyRange::all(), None)
            .await
            .unwrap()
            .iter()
            .map(|k| k.to_string())
            .collect()
    }

    async fn sync(
        &self,
        direction: Direction,
        options: &SyncOptions,
    ) -> hybridstore_sync::SyncReport {
        self.engine.run(direction, options, |_| {}).await.unwrap()
    }
}

/// Deterministic incompressible bytes.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// The object path prefix of the keys starting with `key_prefix` in an `ObjectStoreKv` at
/// the root: `v/` and the keys' hex.
fn object_prefix(key_prefix: &str) -> String {
    format!("v/{}", hex::encode(key_prefix))
}

fn memory() -> Arc<dyn ObjectStore> {
    Arc::new(object_store::memory::InMemory::new())
}

#[tokio::test]
async fn a_pull_brings_every_value_with_its_metadata() {
    let remote = memory();
    let a = Device::on(remote.clone()).await;
    let big = noise(300_000, 1);
    a.put("docs/big.bin", &big, 100).await;
    a.put("docs/small.txt", b"small", 200).await;
    let created = UNIX_EPOCH + Duration::from_secs(50);
    let options = PutOptions::with_content_type("text/markdown")
        .with_created(created)
        .with_modified(UNIX_EPOCH + Duration::from_secs(60));
    a.local
        .put_with(
            &key("docs/readme.md"),
            Bytes::from_static(b"# hi"),
            &options,
        )
        .await
        .unwrap();
    let pushed = a.sync(Direction::Push, &SyncOptions::default()).await;
    assert_eq!(pushed.uploaded, 3);
    assert!(
        pushed.packs_sent >= 1 && pushed.segments_sent == 1,
        "{pushed:?}"
    );

    let b = Device::on(remote.clone()).await;
    let pulled = b.sync(Direction::Pull, &SyncOptions::default()).await;
    assert_eq!(pulled.downloaded, 3, "{pulled:?}");
    assert_eq!(b.get("docs/big.bin").await.unwrap(), big);
    assert_eq!(b.get("docs/small.txt").await.unwrap(), b"small");
    let meta = b.local.head(&key("docs/readme.md")).await.unwrap().unwrap();
    assert_eq!(meta.content_type.as_deref(), Some("text/markdown"));
    assert_eq!(meta.created, created);
    assert_eq!(meta.modified, UNIX_EPOCH + Duration::from_secs(60));
}

#[tokio::test]
async fn a_sync_without_changes_transfers_nothing_and_unchanged_chunks_travel_once() {
    let remote = memory();
    let a = Device::on(remote.clone()).await;
    for i in 0..20 {
        a.put(&format!("f{i:02}"), &noise(50_000, i), i).await;
    }
    let first = a.sync(Direction::Both, &SyncOptions::default()).await;
    assert_eq!(first.uploaded, 20);
    assert!(first.bytes_sent > 1_000_000, "{first:?}");
    let again = a.sync(Direction::Both, &SyncOptions::default()).await;
    assert_eq!(
        (again.bytes_sent, again.bytes_received),
        (0, 0),
        "{again:?}"
    );
    assert_eq!(again.uploaded + again.downloaded + again.segments_sent, 0);

    // A copy of a value under a new key sends no chunk: the remote has them all.
    a.put("copy-of-f03", &noise(50_000, 3), 99).await;
    let copy = a.sync(Direction::Push, &SyncOptions::default()).await;
    assert_eq!(
        (copy.uploaded, copy.chunks_sent, copy.packs_sent),
        (1, 0, 0),
        "{copy:?}"
    );
    // A value with one small edit sends only the chunks around the edit.
    let mut edited = noise(50_000, 4);
    edited[25_000] ^= 1;
    a.put("f04", &edited, 100).await;
    let edit = a.sync(Direction::Push, &SyncOptions::default()).await;
    assert_eq!(edit.uploaded, 1);
    assert!(edit.chunks_sent <= 2, "{edit:?}");
    assert!(edit.bytes_sent < 40_000, "{edit:?}");
}

#[tokio::test]
async fn tombstones_carry_deletions_both_ways() {
    let remote = memory();
    let (a, b) = (
        Device::on(remote.clone()).await,
        Device::on(remote.clone()).await,
    );
    for k in ["a", "b", "c", "d"] {
        a.put(k, k.as_bytes(), 1).await;
    }
    a.sync(Direction::Push, &SyncOptions::default()).await;
    b.sync(Direction::Pull, &SyncOptions::default()).await;
    assert_eq!(b.keys().await, ["a", "b", "c", "d"]);

    a.local.delete(&key("a")).await.unwrap();
    let pushed = a.sync(Direction::Both, &SyncOptions::default()).await;
    assert_eq!(pushed.deleted_remote, 1);
    b.local.delete(&key("d")).await.unwrap();
    let both = b.sync(Direction::Both, &SyncOptions::default()).await;
    assert_eq!(
        (both.deleted_local, both.deleted_remote),
        (1, 1),
        "{both:?}"
    );
    a.sync(Direction::Both, &SyncOptions::default()).await;
    assert_eq!(a.keys().await, ["b", "c"]);
    assert_eq!(b.keys().await, ["b", "c"]);
    // A deleted key written again comes back everywhere.
    b.put("a", b"again", 5).await;
    b.sync(Direction::Both, &SyncOptions::default()).await;
    a.sync(Direction::Both, &SyncOptions::default()).await;
    assert_eq!(a.get("a").await.unwrap(), b"again");
}

#[tokio::test]
async fn the_max_delete_limit_stops_a_mass_deletion_before_it_changes_anything() {
    let remote = memory();
    let (a, b) = (
        Device::on(remote.clone()).await,
        Device::on(remote.clone()).await,
    );
    for i in 0..10 {
        a.put(&format!("k{i}"), b"v", 1).await;
    }
    a.sync(Direction::Push, &SyncOptions::default()).await;
    b.sync(Direction::Pull, &SyncOptions::default()).await;
    for i in 0..6 {
        a.local.delete(&key(&format!("k{i}"))).await.unwrap();
    }
    // 6 of 10 remote keys is over the default 50%.
    let err = a
        .engine
        .run(Direction::Push, &SyncOptions::default(), |_| {})
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    assert!(err.to_string().contains("6 of 10"), "{err}");
    let unchanged = b.sync(Direction::Pull, &SyncOptions::default()).await;
    assert_eq!(unchanged.deleted_local, 0);
    // A higher limit, or --force, lets it through.
    let ok = a
        .sync(
            Direction::Push,
            &SyncOptions::default().with_max_delete(60, false),
        )
        .await;
    assert_eq!(ok.deleted_remote, 6);
    // The pull side is limited too: 6 of 10 local keys.
    let err = b
        .engine
        .run(Direction::Pull, &SyncOptions::default(), |_| {})
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert_eq!(b.keys().await.len(), 10);
    let forced = b
        .sync(
            Direction::Pull,
            &SyncOptions::default().with_max_delete(50, true),
        )
        .await;
    assert_eq!(forced.deleted_local, 6);
    assert_eq!(b.keys().await, ["k6", "k7", "k8", "k9"]);
}

/// Both devices change one key, A's change older than B's; the policy decides.
async fn conflict(policy: ConflictPolicy) -> (Device, Device, hybridstore_sync::SyncReport) {
    let remote = memory();
    let (a, b) = (
        Device::on(remote.clone()).await,
        Device::on(remote.clone()).await,
    );
    a.put("doc", b"base", 1).await;
    a.put("other", b"o", 1).await;
    a.sync(Direction::Push, &SyncOptions::default()).await;
    b.sync(Direction::Pull, &SyncOptions::default()).await;
    a.put("doc", b"from a (older)", 10).await;
    b.put("doc", b"from b (newer)", 20).await;
    b.sync(Direction::Push, &SyncOptions::default()).await;
    let options = SyncOptions::default().with_policy(policy);
    let report = a.sync(Direction::Both, &options).await;
    b.sync(Direction::Both, &options).await;
    (a, b, report)
}

#[tokio::test]
async fn every_conflict_policy_behaves_as_documented() {
    let (a, b, report) = conflict(ConflictPolicy::Newer).await;
    assert_eq!(report.conflicts.len(), 1);
    assert_eq!(report.conflicts[0].winner, Side::Remote);
    assert_eq!(a.get("doc").await.unwrap(), b"from b (newer)");
    assert_eq!(b.get("doc").await.unwrap(), b"from b (newer)");

    let (a, b, report) = conflict(ConflictPolicy::Local).await;
    assert_eq!(report.conflicts[0].winner, Side::Local);
    assert_eq!(a.get("doc").await.unwrap(), b"from a (older)");
    assert_eq!(b.get("doc").await.unwrap(), b"from a (older)");

    let (a, b, report) = conflict(ConflictPolicy::Remote).await;
    assert_eq!(report.conflicts[0].winner, Side::Remote);
    assert_eq!(a.get("doc").await.unwrap(), b"from b (newer)");
    assert_eq!(b.get("doc").await.unwrap(), b"from b (newer)");

    let (a, b, report) = conflict(ConflictPolicy::KeepBoth).await;
    let kept = report.conflicts[0].kept_as.clone().unwrap();
    assert_eq!(kept, "doc.conflict-local-1970-01-01T00:00:10Z");
    for device in [&a, &b] {
        assert_eq!(device.get("doc").await.unwrap(), b"from b (newer)");
        assert_eq!(device.get(&kept).await.unwrap(), b"from a (older)");
        assert_eq!(device.keys().await, ["doc", kept.as_str(), "other"]);
    }
    // Everything settled: nothing left to do on either side.
    for device in [&a, &b] {
        let again = device.sync(Direction::Both, &SyncOptions::default()).await;
        assert!(
            again.conflicts.is_empty() && again.bytes_sent == 0,
            "{again:?}"
        );
    }
}

#[tokio::test]
async fn identical_changes_on_both_sides_are_not_conflicts() {
    let remote = memory();
    let (a, b) = (
        Device::on(remote.clone()).await,
        Device::on(remote.clone()).await,
    );
    a.put("same", b"same bytes", 1).await;
    b.put("same", b"same bytes", 2).await;
    a.sync(Direction::Both, &SyncOptions::default()).await;
    let report = b.sync(Direction::Both, &SyncOptions::default()).await;
    assert!(report.conflicts.is_empty(), "{report:?}");
    assert_eq!(report.identical, 1);
}

#[tokio::test]
async fn two_devices_editing_different_keys_converge() {
    let remote = memory();
    let (a, b) = (
        Device::on(remote.clone()).await,
        Device::on(remote.clone()).await,
    );
    for i in 0..10 {
        a.put(&format!("a/{i}"), &noise(10_000, i), 1).await;
        b.put(&format!("b/{i}"), &noise(10_000, 100 + i), 1).await;
    }
    a.sync(Direction::Both, &SyncOptions::default()).await;
    b.sync(Direction::Both, &SyncOptions::default()).await;
    a.sync(Direction::Both, &SyncOptions::default()).await;
    a.put("a/0", b"edited on a", 5).await;
    b.local.delete(&key("b/9")).await.unwrap();
    b.sync(Direction::Both, &SyncOptions::default()).await;
    a.sync(Direction::Both, &SyncOptions::default()).await;
    b.sync(Direction::Both, &SyncOptions::default()).await;
    assert_eq!(a.keys().await, b.keys().await);
    assert_eq!(a.keys().await.len(), 19);
    for k in a.keys().await {
        assert_eq!(a.get(&k).await, b.get(&k).await, "{k}");
    }
    assert_eq!(b.get("a/0").await.unwrap(), b"edited on a");
}

/// Two devices push at the same moment, many times over: neither overwrites the other's
/// keys; both generations are kept and every write arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_pushes_never_overwrite_each_other() {
    let remote = memory();
    let (a, b) = (
        Device::on(remote.clone()).await,
        Device::on(remote.clone()).await,
    );
    for round in 0..8u64 {
        a.put(&format!("a/{round}"), &noise(20_000, round), round)
            .await;
        b.put(&format!("b/{round}"), &noise(20_000, 1000 + round), round)
            .await;
        let options = SyncOptions::default();
        let (ra, rb) = tokio::join!(
            a.engine.run(Direction::Push, &options, |_| {}),
            b.engine.run(Direction::Push, &options, |_| {})
        );
        let (ra, rb) = (ra.unwrap(), rb.unwrap());
        assert!(
            ra.failed.is_empty() && rb.failed.is_empty(),
            "{ra:?} {rb:?}"
        );
    }
    let c = Device::on(remote.clone()).await;
    let pulled = c.sync(Direction::Pull, &SyncOptions::default()).await;
    assert_eq!(pulled.downloaded, 16);
    assert_eq!(pulled.generation, 16, "one segment per push: {pulled:?}");
}

/// A push cut off after its first packs (the connection drops) resumes: the next push sends
/// only the chunks that were not in a finished pack, and the remote ends up complete.
#[tokio::test]
async fn an_interrupted_push_resumes_without_sending_finished_packs_again() {
    let faulty = FaultyStore::in_memory();
    let remote: Arc<dyn ObjectStore> = faulty.clone();
    let a = Device::on(remote.clone()).await;
    // 40 values of 1 MiB of noise: about three 16 MiB packs, in one group.
    for i in 0..40 {
        a.put(&format!("big/{i:02}"), &noise(1 << 20, i), 1).await;
    }
    faulty.fail_puts_under(&object_prefix("packs/"), 2);
    let err = a
        .engine
        .run(Direction::Push, &SyncOptions::default(), |_| {})
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert_eq!(
        faulty.writes_containing(&object_prefix("log/")),
        0,
        "no segment before its packs"
    );
    let finished_packs = faulty.writes_containing(&object_prefix("packs/"));
    assert_eq!(finished_packs, 2);
    faulty.heal();
    let resumed = a.sync(Direction::Push, &SyncOptions::default()).await;
    assert_eq!(resumed.uploaded, 40);
    let fresh = Device::on(remote.clone()).await;
    let pulled = fresh.sync(Direction::Pull, &SyncOptions::default()).await;
    assert_eq!(pulled.downloaded, 40);
    for i in 0..40 {
        assert_eq!(
            fresh.get(&format!("big/{i:02}")).await.unwrap(),
            noise(1 << 20, i)
        );
    }
    // The two finished packs (about 32 MiB of the 40) were not sent again.
    assert!(
        resumed.bytes_sent < 12 << 20,
        "resumed push sent {} bytes in {} chunks",
        resumed.bytes_sent,
        resumed.chunks_sent
    );
}

/// The whole story on a real S3 server: push, pull on a second device, no-change sync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_sync_through_seaweedfs() {
    let Some(mut s3) = SeaweedS3::start() else {
        return;
    };
    let url: RemoteUrl = s3.uri("devices").parse().unwrap();
    let open = || async {
        Remote::open(&url, &s3.storage_options(), ObjectStoreKvOptions::default())
            .await
            .unwrap()
    };
    let a = Device::with_remote(open().await);
    for i in 0..30 {
        a.put(&format!("docs/{i}.html"), &noise(30_000 + i as usize, i), 1)
            .await;
    }
    let pushed = a.sync(Direction::Push, &SyncOptions::default()).await;
    assert_eq!(pushed.uploaded, 30);
    let b = Device::with_remote(open().await);
    let pulled = b.sync(Direction::Both, &SyncOptions::default()).await;
    assert_eq!(pulled.downloaded, 30);
    for i in 0..30 {
        assert_eq!(
            b.get(&format!("docs/{i}.html")).await.unwrap(),
            noise(30_000 + i as usize, i)
        );
    }
    let quiet = b.sync(Direction::Both, &SyncOptions::default()).await;
    assert_eq!(quiet.bytes_sent + quiet.bytes_received, 0, "{quiet:?}");
    let status = b.engine.status().await.unwrap();
    assert_eq!((status.pending_uploads, status.pending_downloads), (0, 0));
    assert!(status.last_sync.unwrap() <= SystemTime::now());
    assert!(
        status.remote_latency_ms > 0.0 && status.remote_latency_ms < 10_000.0,
        "{status:?}"
    );
    // An unreachable remote is a retryable `Unavailable`, not a status of zeros.
    s3.stop();
    let err = b.engine.status().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.is_retryable());
}

/// A device whose engine stays open (a long-running process) pulls values whose packs were
/// written by another device after it opened, also after a status check in between.
#[tokio::test]
async fn a_long_lived_device_finds_packs_written_after_it_opened() {
    let remote = memory();
    let (a, b) = (
        Device::on(remote.clone()).await,
        Device::on(remote.clone()).await,
    );
    a.put("first", &noise(100_000, 1), 1).await;
    a.sync(Direction::Push, &SyncOptions::default()).await;
    assert_eq!(b.engine.status().await.unwrap().pending_downloads, 1);
    a.put("second", &noise(100_000, 2), 2).await;
    a.sync(Direction::Push, &SyncOptions::default()).await;
    assert_eq!(b.engine.status().await.unwrap().pending_downloads, 2);
    let pulled = b.sync(Direction::Pull, &SyncOptions::default()).await;
    assert_eq!(pulled.downloaded, 2, "{pulled:?}");
    assert!(pulled.failed.is_empty(), "{pulled:?}");
    assert_eq!(b.get("second").await.unwrap(), noise(100_000, 2));
}
