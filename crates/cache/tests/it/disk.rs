//! The disk cache: conformance as a layer, reads served from files, the byte bound, restart,
//! damaged files, staleness against this process's writes and expiry against others'.

use std::time::Duration;

use hybridstore_cache::{DiskCache, DiskCacheConfig, DiskCachedStore, Freshness};
use hybridstore_core::conformance::Fixture;
use hybridstore_core::{Bytes, KvStore, MemoryStore};

use crate::support::{Probe, key};

async fn cache_in(dir: &std::path::Path, capacity: u64) -> DiskCache {
    DiskCache::open(
        DiskCacheConfig::new(dir)
            .with_capacity_bytes(capacity)
            .with_max_entry_bytes(capacity / 4),
    )
    .await
    .unwrap()
}

/// Bytes of the cache's files on disk.
fn bytes_on_disk(dir: &std::path::Path) -> u64 {
    walk(dir).iter().map(|p| p.metadata().unwrap().len()).sum()
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

mod immutable_conformance {
    use super::*;
    hybridstore_core::conformance_tests!(|| async {
        let dir = tempfile::tempdir().unwrap();
        let cache = cache_in(dir.path(), 256 << 20).await;
        Fixture::with_guard(
            cache.layer(MemoryStore::new(), "t", Freshness::Immutable),
            dir,
        )
    });
}

/// A cache small enough that the suite's values evict one another.
mod ttl_tiny_conformance {
    use super::*;
    hybridstore_core::conformance_tests!(|| async {
        let dir = tempfile::tempdir().unwrap();
        let cache = cache_in(dir.path(), 64 << 10).await;
        Fixture::with_guard(
            cache.layer(
                MemoryStore::new(),
                "t",
                Freshness::Ttl(Duration::from_secs(300)),
            ),
            dir,
        )
    });
}

type Layer = DiskCachedStore<std::sync::Arc<Probe<MemoryStore>>>;

async fn probed(
    dir: &std::path::Path,
    freshness: Freshness,
) -> (Layer, std::sync::Arc<Probe<MemoryStore>>) {
    let probe = Probe::new(MemoryStore::new());
    let cache = cache_in(dir, 64 << 20).await;
    (cache.layer(probe.clone(), "kv", freshness), probe)
}

#[tokio::test]
async fn a_second_read_of_a_value_or_range_comes_from_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (store, probe) = probed(dir.path(), Freshness::Immutable).await;
    let k = key("packs/0001");
    let value = Bytes::from((0..100_000u32).map(|i| i as u8).collect::<Vec<_>>());
    store.put(&k, value.clone()).await.unwrap();
    assert_eq!(store.get(&k).await.unwrap(), Some(value.clone()));
    assert_eq!(store.get(&k).await.unwrap(), Some(value.clone()));
    assert_eq!(
        store.get_range(&k, 10..4_000).await.unwrap(),
        Some(value.slice(10..4_000))
    );
    assert_eq!(
        store.get_range(&k, 10..4_000).await.unwrap(),
        Some(value.slice(10..4_000))
    );
    // One read of the store for the value, one for the range (Probe counts ranges as gets).
    assert_eq!(probe.reads(), 2);
    store.cache().run_pending_tasks().await.unwrap();
    let stats = store.cache().stats();
    assert_eq!(
        (stats.hits, stats.misses, stats.fills),
        (2, 2, 2),
        "{stats:?}"
    );
    assert_eq!(stats.entries, 2);
    // A missing key is not cached: every read asks the store.
    assert_eq!(store.get(&key("missing")).await.unwrap(), None);
    assert_eq!(store.get(&key("missing")).await.unwrap(), None);
    assert_eq!(probe.reads(), 4);
}

#[tokio::test]
async fn writes_through_the_layer_are_seen_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = probed(dir.path(), Freshness::Immutable).await;
    let k = key("manifest");
    store.put(&k, "one".into()).await.unwrap();
    assert_eq!(store.get_range(&k, 0..2).await.unwrap().unwrap(), "on");
    assert_eq!(store.get(&k).await.unwrap().unwrap(), "one");
    store.put(&k, "two".into()).await.unwrap();
    assert_eq!(store.get(&k).await.unwrap().unwrap(), "two");
    assert_eq!(store.get_range(&k, 0..2).await.unwrap().unwrap(), "tw");
    let mut batch = hybridstore_core::WriteBatch::new();
    batch.put(k.clone(), "three");
    store.write_batch(batch).await.unwrap();
    assert_eq!(store.get(&k).await.unwrap().unwrap(), "three");
    store.delete(&k).await.unwrap();
    assert_eq!(store.get(&k).await.unwrap(), None);
    assert_eq!(store.get_range(&k, 0..2).await.unwrap(), None);
}

/// The set-after-delete race: a read that loaded the old value before a write finished
/// must not leave that value in the cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_that_raced_a_write_does_not_cache_the_old_value() {
    let dir = tempfile::tempdir().unwrap();
    let (store, probe) = probed(dir.path(), Freshness::Immutable).await;
    let k = key("k");
    store.put(&k, "old".into()).await.unwrap();
    let hold = probe.hold_next_get(&k);
    let reader = {
        let store = store.clone();
        let k = k.clone();
        tokio::spawn(async move { store.get(&k).await.unwrap() })
    };
    hold.reached.await.unwrap();
    store.put(&k, "new".into()).await.unwrap();
    hold.resume.send(()).unwrap();
    assert_eq!(reader.await.unwrap().unwrap(), "old");
    assert_eq!(store.get(&k).await.unwrap().unwrap(), "new");
}

#[tokio::test]
async fn the_files_stay_within_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let capacity = 1 << 20;
    let cache = cache_in(dir.path(), capacity).await;
    let store = cache.layer(MemoryStore::new(), "chunks", Freshness::Immutable);
    // 64 values of 64 KiB: 4 MiB read through a 1 MiB cache.
    for i in 0..64u32 {
        let k = key(&format!("packs/{i:04}"));
        store
            .put(&k, Bytes::from(vec![i as u8; 64 << 10]))
            .await
            .unwrap();
        store.get(&k).await.unwrap();
    }
    cache.run_pending_tasks().await.unwrap();
    let stats = cache.stats();
    assert!(stats.bytes <= capacity, "{stats:?}");
    assert!(stats.evictions > 0, "{stats:?}");
    assert!(
        bytes_on_disk(dir.path()) <= capacity,
        "{}",
        bytes_on_disk(dir.path())
    );
    // Every value still reads right, cached or not.
    for i in 0..64u32 {
        let got = store
            .get(&key(&format!("packs/{i:04}")))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, Bytes::from(vec![i as u8; 64 << 10]));
    }
}

#[tokio::test]
async fn entries_survive_a_restart_and_damaged_files_are_misses() {
    let dir = tempfile::tempdir().unwrap();
    let inner = Probe::new(MemoryStore::new());
    let (a, b) = (key("a"), key("b"));
    {
        let store =
            cache_in(dir.path(), 64 << 20)
                .await
                .layer(inner.clone(), "kv", Freshness::Immutable);
        store.put(&a, "alpha".into()).await.unwrap();
        store.put(&b, "beta".into()).await.unwrap();
        store.get(&a).await.unwrap();
        store.get(&b).await.unwrap();
    }
    assert_eq!(inner.reads(), 2);
    // Damage one file: flip the last byte of the file holding "beta".
    let files = walk(dir.path());
    assert_eq!(files.len(), 2);
    let damaged = files
        .iter()
        .find(|p| std::fs::read(p).unwrap().ends_with(b"beta"))
        .unwrap();
    let mut bytes = std::fs::read(damaged).unwrap();
    *bytes.last_mut().unwrap() ^= 0x20;
    std::fs::write(damaged, bytes).unwrap();
    // A half-written fill a crash left is removed at open.
    std::fs::write(files[0].with_extension("tmp0123456789abcdef"), b"partial").unwrap();

    let cache = cache_in(dir.path(), 64 << 20).await;
    assert_eq!(cache.stats().entries, 2);
    let store = cache.layer(inner.clone(), "kv", Freshness::Immutable);
    assert_eq!(store.get(&a).await.unwrap().unwrap(), "alpha");
    assert_eq!(
        inner.reads(),
        2,
        "served from the file written before the restart"
    );
    assert_eq!(store.get(&b).await.unwrap().unwrap(), "beta");
    assert_eq!(inner.reads(), 3, "the damaged file is a miss");
    let stats = cache.stats();
    assert_eq!((stats.hits, stats.damaged), (1, 1), "{stats:?}");
    let names: Vec<String> = walk(dir.path())
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.contains(".tmp")), "{names:?}");
}

/// Another process writes to the store directly: an immutable layer keeps serving what it
/// cached (its keys are never rewritten), a TTL layer reads again once the entry expired
/// (a zero TTL: every entry is expired at once).
#[tokio::test]
async fn other_writers_are_seen_after_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let inner = Probe::new(MemoryStore::new());
    let cache = cache_in(dir.path(), 64 << 20).await;
    let k = key("manifest");
    inner.put(&k, "v1".into()).await.unwrap();
    let forever = cache.layer(inner.clone(), "forever", Freshness::Immutable);
    let expiring = cache.layer(inner.clone(), "expiring", Freshness::Ttl(Duration::ZERO));
    assert_eq!(forever.get(&k).await.unwrap().unwrap(), "v1");
    assert_eq!(expiring.get(&k).await.unwrap().unwrap(), "v1");
    inner.put(&k, "v2".into()).await.unwrap(); // another process's write
    assert_eq!(forever.get(&k).await.unwrap().unwrap(), "v1");
    assert_eq!(expiring.get(&k).await.unwrap().unwrap(), "v2");
}

#[tokio::test]
async fn invalid_settings_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for config in [
        DiskCacheConfig::new(dir.path()).with_capacity_bytes(0),
        DiskCacheConfig::new(dir.path())
            .with_capacity_bytes(1 << 20)
            .with_max_entry_bytes(1 << 20),
    ] {
        let err = DiskCache::open(config).await.unwrap_err();
        assert_eq!(
            err.kind(),
            hybridstore_core::ErrorKind::InvalidInput,
            "{err}"
        );
    }
}
