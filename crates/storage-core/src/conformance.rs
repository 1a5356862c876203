//! The conformance suite: the behaviour of [`KvStore`] as executable checks.
//!
//! Every backend and every layer runs it, the way every `object_store` implementation calls
//! `object_store::integration`. Each check is a public async function taking a fresh, empty
//! store; [`conformance_tests!`](crate::conformance_tests) generates one `#[tokio::test]` per
//! check (plus the model-based property test) from a fixture factory:
//!
//! ```ignore
//! mod memory_store {
//!     use hybridstore_core::{conformance::Fixture, MemoryStore};
//!     hybridstore_core::conformance_tests!(|| async { Fixture::new(MemoryStore::new()) });
//! }
//! ```
//!
//! The checks read [`Capabilities`](crate::Capabilities) to size what they try (the key length
//! limit, whether 64 MiB values are accepted). They panic with a message naming the broken
//! promise, as test assertions do.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::any::Any;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use crate::{
    ErrorKind, Expect, Key, KeyRange, KvStore, MAX_CONTENT_TYPE_LEN, MAX_KEY_LEN, PutOptions,
    Sha256Digest, WriteBatch,
};

/// Whether tests that need a service (PostgreSQL, Redis, an S3 server) must fail when it is
/// missing instead of skipping loudly: `CI=true` (or `1`).
pub fn services_required() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// A fresh, empty store for one check, with whatever must outlive it (a temporary directory,
/// a server process).
pub struct Fixture {
    store: Arc<dyn KvStore>,
    _guard: Option<Box<dyn Any + Send + Sync>>,
}

impl Fixture {
    /// A fixture that owns only the store.
    pub fn new(store: impl KvStore + 'static) -> Self {
        Fixture {
            store: Arc::new(store),
            _guard: None,
        }
    }

    /// A fixture that also keeps `guard` alive until the check ends (dropped after the store).
    pub fn with_guard(store: impl KvStore + 'static, guard: impl Any + Send + Sync) -> Self {
        Fixture {
            store: Arc::new(store),
            _guard: Some(Box::new(guard)),
        }
    }

    /// The store under test.
    pub fn store(&self) -> &dyn KvStore {
        self.store.as_ref()
    }

    /// The store under test, shareable across tasks.
    pub fn shared(&self) -> Arc<dyn KvStore> {
        self.store.clone()
    }
}

/// What a fixture factory returns: a [`Fixture`], or `Option<Fixture>` for a backend that
/// needs a service and may skip (returning `None` after printing why).
pub trait MaybeFixture {
    /// The fixture, or `None` to skip the check.
    fn into_fixture(self) -> Option<Fixture>;
}

impl MaybeFixture for Fixture {
    fn into_fixture(self) -> Option<Fixture> {
        Some(self)
    }
}

impl MaybeFixture for Option<Fixture> {
    fn into_fixture(self) -> Option<Fixture> {
        self
    }
}

/// Generates one test per conformance check for the fixture factory `$factory`
/// (an expression of type `Fn() -> impl Future<Output = F>` where `F` is [`Fixture`] or
/// `Option<Fixture>`, see [`MaybeFixture`]). The calling crate needs
/// `tokio` (features `macros`, `rt-multi-thread`) as a dev-dependency.
#[macro_export]
macro_rules! conformance_tests {
    ($factory:expr) => {
        $crate::conformance_tests!(@checks $factory;
            round_trip, overwrite_keeps_created, delete_and_delete_missing, head_metadata,
            scan_order, scan_prefix, scan_range, scan_limit_and_paging, binary_keys,
            batch_applies_in_order, batch_failure_applies_nothing, invalid_input,
            value_of_64_mib, concurrent_tasks, provided_methods, range_reads, cancellation);

        #[test]
        fn conformance_model_based() {
            $crate::conformance::model_based($factory);
        }
    };
    (@checks $factory:expr; $($check:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $check() {
                let Some(fixture) =
                    $crate::conformance::MaybeFixture::into_fixture(($factory)().await)
                else {
                    return; // the factory reported why it skipped
                };
                $crate::conformance::$check(&fixture).await;
            }
        )*
    };
}

fn key(s: impl AsRef<[u8]>) -> Key {
    Key::new(Bytes::copy_from_slice(s.as_ref())).unwrap()
}

async fn scan_keys(store: &dyn KvStore, range: KeyRange, limit: Option<usize>) -> Vec<Vec<u8>> {
    let entries: Vec<_> = store.scan(range, limit).try_collect().await.unwrap();
    entries
        .into_iter()
        .map(|e| e.key.as_bytes().to_vec())
        .collect()
}

/// Deterministic pseudo-random bytes (SplitMix64), so large values need no RNG dependency.
fn pattern(len: usize, seed: u64) -> Bytes {
    let mut state = seed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    Bytes::from(out)
}

/// put then get returns the same bytes; the returned metadata is right; an empty value is a
/// value; a missing key reads as `None`.
pub async fn round_trip(fx: &Fixture) {
    let s = fx.store();
    let k = key("round/trip");
    assert_eq!(s.get(&k).await.unwrap(), None, "fresh store must be empty");
    let meta = s.put(&k, Bytes::from_static(b"hello")).await.unwrap();
    assert_eq!(meta.size, 5);
    assert_eq!(meta.checksum, Sha256Digest::of(b"hello"));
    assert_eq!(s.get(&k).await.unwrap().as_deref(), Some(&b"hello"[..]));
    assert!(s.exists(&k).await.unwrap());

    let empty = key("round/empty");
    s.put(&empty, Bytes::new()).await.unwrap();
    assert_eq!(s.get(&empty).await.unwrap().as_deref(), Some(&b""[..]));
    assert_eq!(s.head(&empty).await.unwrap().unwrap().size, 0);
    assert_eq!(s.get(&key("round/missing")).await.unwrap(), None);
}

/// `get_range` returns exactly the requested bytes, an empty range as empty bytes, `None` for
/// a missing key, and refuses ranges that are inverted or run past the value's end.
pub async fn range_reads(fx: &Fixture) {
    let s = fx.store();
    let k = key("range/value");
    let value = pattern(300_000, 7);
    s.put(&k, value.clone()).await.unwrap();
    for (start, end) in [
        (0u64, 300_000u64),
        (0, 1),
        (299_999, 300_000),
        (12_345, 200_001),
        (17, 17),
    ] {
        let got = s.get_range(&k, start..end).await.unwrap().expect("present");
        assert_eq!(
            got,
            value.slice(start as usize..end as usize),
            "range {start}..{end}"
        );
    }
    assert_eq!(
        s.get_range(&key("range/missing"), 0..1).await.unwrap(),
        None
    );
    #[allow(clippy::reversed_empty_ranges)] // an inverted range is the point of the check
    let inverted = 10u64..5;
    for bad in [0u64..300_001, 300_001..300_002, inverted] {
        let err = s.get_range(&k, bad.clone()).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "range {bad:?}: {err}");
    }
}

/// An overwrite replaces value, size and checksum, and keeps the first `created` time.
pub async fn overwrite_keeps_created(fx: &Fixture) {
    let s = fx.store();
    let k = key("over/write");
    let first = s.put(&k, Bytes::from_static(b"version one")).await.unwrap();
    let second = s.put(&k, Bytes::from_static(b"v2")).await.unwrap();
    assert_eq!(s.get(&k).await.unwrap().as_deref(), Some(&b"v2"[..]));
    let head = s.head(&k).await.unwrap().unwrap();
    assert_eq!(head.size, 2);
    assert_eq!(head.checksum, Sha256Digest::of(b"v2"));
    assert_eq!(head.created, first.created, "overwrite must keep `created`");
    assert_eq!(head.created, second.created);
    assert!(head.modified >= first.modified);
}

/// delete removes; deleting a missing key, or twice, succeeds.
pub async fn delete_and_delete_missing(fx: &Fixture) {
    let s = fx.store();
    let k = key("del/one");
    s.put(&k, Bytes::from_static(b"x")).await.unwrap();
    s.delete(&k).await.unwrap();
    assert_eq!(s.get(&k).await.unwrap(), None);
    assert_eq!(s.head(&k).await.unwrap(), None);
    assert!(!s.exists(&k).await.unwrap());
    s.delete(&k).await.unwrap();
    s.delete(&key("del/never-written")).await.unwrap();
    assert!(scan_keys(s, KeyRange::all(), None).await.is_empty());
}

/// head reports size, SHA-256 and content type without the value.
pub async fn head_metadata(fx: &Fixture) {
    let s = fx.store();
    let k = key("head/doc.html");
    let value = pattern(10_000, 7);
    s.put_with(
        &k,
        value.clone(),
        &PutOptions::with_content_type("text/html"),
    )
    .await
    .unwrap();
    let meta = s.head(&k).await.unwrap().expect("head of a written key");
    assert_eq!(meta.size, 10_000);
    assert_eq!(meta.checksum, Sha256Digest::of(&value));
    assert_eq!(meta.content_type.as_deref(), Some("text/html"));
    assert!(meta.created <= meta.modified);
    assert_eq!(s.head(&key("head/missing")).await.unwrap(), None);
    // A later put without a content type clears it.
    s.put(&k, Bytes::from_static(b"plain")).await.unwrap();
    assert_eq!(s.head(&k).await.unwrap().unwrap().content_type, None);
}

/// A full scan yields every key once, in bytewise order, with its value and metadata.
pub async fn scan_order(fx: &Fixture) {
    let s = fx.store();
    let mut keys: Vec<Vec<u8>> = (0..300u32)
        .map(|i| format!("order/{:05}", (i * 7919) % 300).into_bytes())
        .collect();
    keys.extend([b"order/".to_vec(), b"order/~".to_vec(), b"order".to_vec()]);
    for (i, k) in keys.iter().enumerate() {
        s.put(&key(k), Bytes::from(format!("v{i}"))).await.unwrap();
    }
    let mut expected = keys.clone();
    expected.sort();
    let entries: Vec<_> = s.scan(KeyRange::all(), None).try_collect().await.unwrap();
    let got: Vec<Vec<u8>> = entries.iter().map(|e| e.key.as_bytes().to_vec()).collect();
    assert_eq!(got, expected, "scan must yield every key once, in order");
    for e in &entries {
        let i = keys.iter().position(|k| k == e.key.as_bytes()).unwrap();
        assert_eq!(e.value, Bytes::from(format!("v{i}")));
        assert_eq!(e.meta.size, e.value.len() as u64);
        assert_eq!(e.meta.checksum, Sha256Digest::of(&e.value));
    }
    let metas: Vec<_> = s
        .scan_meta(KeyRange::all(), None)
        .try_collect()
        .await
        .unwrap();
    let meta_keys: Vec<Vec<u8>> = metas.iter().map(|e| e.key.as_bytes().to_vec()).collect();
    assert_eq!(meta_keys, expected, "scan_meta must match scan");
}

/// A prefix scan yields exactly the keys with that prefix, including prefixes ending in 0xFF.
pub async fn scan_prefix(fx: &Fixture) {
    let s = fx.store();
    let keys: Vec<Vec<u8>> = vec![
        b"a".to_vec(),
        b"a/".to_vec(),
        b"a/1".to_vec(),
        b"a/2/x".to_vec(),
        b"a0".to_vec(),
        b"ab".to_vec(),
        b"b".to_vec(),
        vec![b'p', 0xFF],
        vec![b'p', 0xFF, 0x00],
        vec![b'p', 0xFF, 0xFF],
        vec![b'q'],
    ];
    for k in &keys {
        s.put(&key(k), Bytes::from_static(b"v")).await.unwrap();
    }
    let cases: Vec<(Vec<u8>, Vec<Vec<u8>>)> = vec![
        (
            b"a/".to_vec(),
            vec![b"a/".to_vec(), b"a/1".to_vec(), b"a/2/x".to_vec()],
        ),
        (b"a".to_vec(), keys[..6].to_vec()),
        (vec![b'p', 0xFF], keys[7..10].to_vec()),
        (b"zzz".to_vec(), vec![]),
        (Vec::new(), keys.clone()),
    ];
    for (prefix, expected) in cases {
        let got = scan_keys(s, KeyRange::prefix(prefix.clone()), None).await;
        assert_eq!(got, expected, "prefix {prefix:?}");
    }
}

/// Explicit bounds are honoured exactly (inclusive, exclusive, empty, inverted).
pub async fn scan_range(fx: &Fixture) {
    use std::ops::Bound::{Excluded, Included, Unbounded};
    let s = fx.store();
    for c in b'a'..=b'f' {
        s.put(&key([c]), Bytes::from_static(b"v")).await.unwrap();
    }
    let b = |x: &'static [u8]| Bytes::from_static(x);
    let cases: Vec<(KeyRange, &[u8])> = vec![
        (KeyRange::between(b(b"b"), b(b"e")), b"bcd"),
        (KeyRange::new(Included(b(b"b")), Included(b(b"e"))), b"bcde"),
        (KeyRange::new(Excluded(b(b"b")), Excluded(b(b"e"))), b"cd"),
        (KeyRange::new(Unbounded, Excluded(b(b"c"))), b"ab"),
        (KeyRange::new(Excluded(b(b"d")), Unbounded), b"ef"),
        (KeyRange::new(Included(b(b"bb")), Included(b(b"d"))), b"cd"),
        (KeyRange::between(b(b"c"), b(b"c")), b""),
        (KeyRange::between(b(b"e"), b(b"b")), b""),
    ];
    for (range, expected) in cases {
        let got: Vec<u8> = scan_keys(s, range.clone(), None)
            .await
            .into_iter()
            .map(|k| k[0])
            .collect();
        assert_eq!(got, expected, "range {range:?}");
    }
}

/// `limit` caps a scan; resuming after the last key pages through everything exactly once.
pub async fn scan_limit_and_paging(fx: &Fixture) {
    let s = fx.store();
    let n = 600;
    let mut batch = WriteBatch::new();
    for i in 0..n {
        batch.put(key(format!("page/{i:04}")), Bytes::from(format!("{i}")));
    }
    s.write_batch(batch).await.unwrap();
    assert!(scan_keys(s, KeyRange::all(), Some(0)).await.is_empty());
    assert_eq!(
        scan_keys(s, KeyRange::all(), Some(1)).await,
        vec![b"page/0000".to_vec()]
    );
    assert_eq!(scan_keys(s, KeyRange::all(), Some(n + 10)).await.len(), n);
    assert_eq!(
        scan_keys(s, KeyRange::prefix("page/05"), Some(7))
            .await
            .len(),
        7
    );

    let mut range = KeyRange::prefix("page/");
    let mut seen = Vec::new();
    loop {
        let page = scan_keys(s, range.clone(), Some(97)).await;
        let Some(last) = page.last().cloned() else {
            break;
        };
        seen.extend(page);
        range = range.resume_after(&last);
    }
    let expected: Vec<Vec<u8>> = (0..n)
        .map(|i| format!("page/{i:04}").into_bytes())
        .collect();
    assert_eq!(seen, expected, "paging must visit every key once, in order");
}

/// Keys are arbitrary bytes: NUL, 0xFF, and look-alikes of paths stay distinct and ordered.
pub async fn binary_keys(fx: &Fixture) {
    let s = fx.store();
    let max = s.capabilities().max_key_len.min(MAX_KEY_LEN);
    let keys: Vec<Vec<u8>> = vec![
        vec![0x00],
        vec![0x00, 0x00],
        vec![0x00, 0xFF],
        vec![0x01],
        b"../escape".to_vec(),
        b"./.".to_vec(),
        b"/abs".to_vec(),
        b"a\\b".to_vec(),
        b"A".to_vec(),
        b"a".to_vec(),
        vec![0x7F],
        vec![0xFF],
        vec![0xFF, 0x00],
        vec![0xFF; 40],
        vec![0xFE; max],
    ];
    for (i, k) in keys.iter().enumerate() {
        s.put(&key(k), Bytes::from(vec![i as u8; i + 1]))
            .await
            .unwrap();
    }
    let mut expected = keys.clone();
    expected.sort();
    assert_eq!(scan_keys(s, KeyRange::all(), None).await, expected);
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(
            s.get(&key(k)).await.unwrap(),
            Some(Bytes::from(vec![i as u8; i + 1])),
            "key {k:?}"
        );
    }
}

/// A batch applies its puts and deletes in order; the last operation on a key wins.
pub async fn batch_applies_in_order(fx: &Fixture) {
    let s = fx.store();
    s.put(&key("b/old"), Bytes::from_static(b"old"))
        .await
        .unwrap();
    let mut batch = WriteBatch::new();
    batch
        .put(key("b/1"), "one")
        .put(key("b/2"), "two")
        .delete(key("b/old"))
        .put(key("b/1"), "one again")
        .put(key("b/3"), "three")
        .delete(key("b/3"))
        .delete(key("b/never"));
    s.write_batch(batch).await.unwrap();
    assert_eq!(
        s.get(&key("b/1")).await.unwrap().as_deref(),
        Some(&b"one again"[..])
    );
    assert_eq!(
        s.get(&key("b/2")).await.unwrap().as_deref(),
        Some(&b"two"[..])
    );
    assert_eq!(s.get(&key("b/3")).await.unwrap(), None);
    assert_eq!(s.get(&key("b/old")).await.unwrap(), None);
    s.write_batch(WriteBatch::new()).await.unwrap();

    // Compare-and-set through a checksum precondition.
    let mut cas = WriteBatch::new();
    cas.expect(key("b/2"), Expect::Checksum(Sha256Digest::of(b"two")))
        .expect(key("b/new"), Expect::Absent)
        .expect(key("b/1"), Expect::Present)
        .put(key("b/2"), "TWO")
        .put(key("b/new"), "new");
    s.write_batch(cas).await.unwrap();
    assert_eq!(
        s.get(&key("b/2")).await.unwrap().as_deref(),
        Some(&b"TWO"[..])
    );
    assert_eq!(
        s.get(&key("b/new")).await.unwrap().as_deref(),
        Some(&b"new"[..])
    );
}

/// A batch that fails (precondition, invalid option, over-long key) changes nothing.
pub async fn batch_failure_applies_nothing(fx: &Fixture) {
    let s = fx.store();
    s.put(&key("f/existing"), Bytes::from_static(b"keep"))
        .await
        .unwrap();
    let before = scan_keys(s, KeyRange::all(), None).await;

    let mut failing = WriteBatch::new();
    failing
        .put(key("f/a"), "a")
        .delete(key("f/existing"))
        .put(key("f/b"), "b")
        .expect(
            key("f/existing"),
            Expect::Checksum(Sha256Digest::of(b"other")),
        );
    let err = s.write_batch(failing).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");

    let mut failing = WriteBatch::new();
    failing
        .put(key("f/a"), "a")
        .expect(key("f/existing"), Expect::Absent);
    assert_eq!(
        s.write_batch(failing).await.unwrap_err().kind(),
        ErrorKind::Conflict
    );

    let mut failing = WriteBatch::new();
    failing.put(key("f/a"), "a").put_with(
        key("f/b"),
        "b",
        PutOptions::with_content_type("x".repeat(MAX_CONTENT_TYPE_LEN + 1)),
    );
    assert_eq!(
        s.write_batch(failing).await.unwrap_err().kind(),
        ErrorKind::InvalidInput
    );

    let max = s.capabilities().max_key_len;
    if max < MAX_KEY_LEN {
        let mut failing = WriteBatch::new();
        failing
            .put(key("f/a"), "a")
            .put(key(vec![b'k'; max + 1]), "too long");
        assert_eq!(
            s.write_batch(failing).await.unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
    }

    assert_eq!(
        scan_keys(s, KeyRange::all(), None).await,
        before,
        "a failed batch applied"
    );
    assert_eq!(
        s.get(&key("f/existing")).await.unwrap().as_deref(),
        Some(&b"keep"[..])
    );
}

/// Invalid keys and options are `InvalidInput`, never a panic; the longest valid key works.
pub async fn invalid_input(fx: &Fixture) {
    let s = fx.store();
    assert_eq!(Key::new("").unwrap_err().kind(), ErrorKind::InvalidInput);
    assert_eq!(
        Key::new(vec![b'x'; MAX_KEY_LEN + 1]).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    let max = s.capabilities().max_key_len;
    let longest = key(vec![b'L'; max]);
    s.put(&longest, Bytes::from_static(b"ok")).await.unwrap();
    assert_eq!(s.get(&longest).await.unwrap().as_deref(), Some(&b"ok"[..]));
    if max < MAX_KEY_LEN {
        let too_long = key(vec![b'L'; max + 1]);
        for kind in [
            s.put(&too_long, Bytes::new()).await.unwrap_err().kind(),
            s.get(&too_long).await.unwrap_err().kind(),
            s.head(&too_long).await.unwrap_err().kind(),
            s.delete(&too_long).await.unwrap_err().kind(),
        ] {
            assert_eq!(kind, ErrorKind::InvalidInput);
        }
    }
    let long_type = PutOptions::with_content_type("t".repeat(MAX_CONTENT_TYPE_LEN + 1));
    let err = s
        .put_with(&key("opt"), Bytes::new(), &long_type)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert_eq!(s.get(&key("opt")).await.unwrap(), None);
}

/// A 64 MiB value round-trips byte for byte (skipped, loudly, where the store caps values).
pub async fn value_of_64_mib(fx: &Fixture) {
    let s = fx.store();
    let len = 64 * 1024 * 1024;
    if let Some(max) = s.capabilities().max_value_len
        && max < len as u64
    {
        eprintln!("SKIPPED value_of_64_mib: store caps values at {max} bytes");
        return;
    }
    let value = pattern(len, 64);
    let k = key("large/64mib");
    let meta = s.put(&k, value.clone()).await.unwrap();
    assert_eq!(meta.size, len as u64);
    let back = s.get(&k).await.unwrap().expect("large value readable");
    assert!(back == value, "64 MiB value came back different");
    assert_eq!(
        s.head(&k).await.unwrap().unwrap().checksum,
        Sha256Digest::of(&value)
    );
}

/// 32 tasks mixing reads and writes: each reads its own writes, and at the end every key holds
/// the last value its owner wrote; shared keys hold one of the values written to them.
pub async fn concurrent_tasks(fx: &Fixture) {
    let store = fx.shared();
    let tasks: Vec<_> = (0..32u32)
        .map(|t| {
            let s = store.clone();
            tokio::spawn(async move {
                for i in 0..40u32 {
                    let own = key(format!("conc/own/{t:02}/{}", i % 5));
                    let value =
                        Bytes::from(format!("{t}:{i}:{}", "x".repeat((i * 37 % 200) as usize)));
                    s.put(&own, value.clone()).await.unwrap();
                    assert_eq!(s.get(&own).await.unwrap(), Some(value), "read-your-write");
                    let shared = key(format!("conc/shared/{}", i % 4));
                    if (t + i) % 3 == 0 {
                        s.put(&shared, Bytes::from(format!("{t}:{i}")))
                            .await
                            .unwrap();
                    } else if let Some(v) = s.get(&shared).await.unwrap() {
                        let text = std::str::from_utf8(&v).unwrap();
                        assert!(text.split(':').count() == 2, "torn shared value {text:?}");
                    }
                    if i % 10 == 9 {
                        let listed = s
                            .list_keys(KeyRange::prefix(format!("conc/own/{t:02}/")), None)
                            .await
                            .unwrap();
                        assert_eq!(listed.len(), 5.min(i as usize + 1));
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task panicked");
    }
    for t in 0..32u32 {
        for slot in 0..5u32 {
            let last = (0..40).filter(|i| i % 5 == slot).max().unwrap();
            let v = store
                .get(&key(format!("conc/own/{t:02}/{slot}")))
                .await
                .unwrap()
                .unwrap();
            assert!(
                v.starts_with(format!("{t}:{last}:").as_bytes()),
                "lost write for task {t}"
            );
        }
    }
}

/// Polls `fut` up to `polls` times (yielding in between, so spawned and blocking work runs)
/// and drops it if it has not finished: a cancellation at an arbitrary point. `None` awaits
/// it to the end.
async fn poll_then_drop<F: Future>(fut: F, polls: impl Into<Option<usize>>) -> Option<F::Output> {
    let Some(polls) = polls.into() else {
        return Some(fut.await);
    };
    let mut fut = std::pin::pin!(fut);
    for _ in 0..polls {
        if let std::task::Poll::Ready(out) = futures::poll!(fut.as_mut()) {
            return Some(out);
        }
        tokio::task::yield_now().await;
    }
    None
}

/// The value generation `generation` writes to `key`: names both, padded so a torn value
/// cannot parse.
fn generation_value(key: &Key, generation: u64) -> Bytes {
    let mut v = format!("gen:{generation:08}:key:{key}:").into_bytes();
    v.resize(v.len() + 300 + (generation as usize * 53) % 2000, b'.');
    Bytes::from(v)
}

fn parse_generation(key: &Key, value: &[u8]) -> u64 {
    let prefix_len = 4 + 8 + 5;
    let text = std::str::from_utf8(&value[..prefix_len.min(value.len())]).unwrap_or("");
    let generation: u64 = text
        .strip_prefix("gen:")
        .and_then(|t| t.get(..8))
        .and_then(|g| g.parse().ok())
        .unwrap_or_else(|| panic!("{key}: not a generation value: {value:?}"));
    assert_eq!(
        value,
        &generation_value(key, generation)[..],
        "{key}: torn or foreign value"
    );
    generation
}

/// Dropping any operation's future, at any point, leaves the store as if the operation either
/// happened before the drop returned or never happened: a write that goes on in the
/// background after its caller gave up must not land after a later acknowledged write, nor
/// show half a batch. One writer issues batches (over 8 keys) and puts with increasing
/// generations and drops most of them after a random number of polls, while reader tasks
/// (which drop some of their own gets and scans part-way) check that no key ever goes back
/// to an older generation, that every value is whole, and that each acknowledged write is
/// seen; at the end an acknowledged batch must be what every key holds. The seed is random
/// and printed on failure (`HYBRIDSTORE_CANCEL_SEED` replays one).
pub async fn cancellation(fx: &Fixture) {
    use rand::{Rng, SeedableRng};
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    const ROUNDS: u64 = 120;
    let seed: u64 = std::env::var("HYBRIDSTORE_CANCEL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    let store = fx.shared();
    let group: Arc<Vec<Key>> = Arc::new((0..8).map(|i| key(format!("cancel/g/{i}"))).collect());
    let single = key("cancel/single");
    let mut first = WriteBatch::new();
    for k in group.iter().chain([&single]) {
        first.put(k.clone(), generation_value(k, 0));
    }
    store.write_batch(first).await.unwrap();
    // The newest generation acknowledged for the group and for the single key.
    let acked_group = Arc::new(AtomicU64::new(0));
    let acked_single = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));

    let readers: Vec<_> = (0..3u64)
        .map(|r| {
            let (store, group, single) = (store.clone(), group.clone(), single.clone());
            let (acked_group, acked_single, stop) =
                (acked_group.clone(), acked_single.clone(), stop.clone());
            tokio::spawn(async move {
                let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ (r + 1));
                let mut seen: BTreeMap<Key, u64> = BTreeMap::new();
                let mut passes = 0u64;
                while !stop.load(Ordering::SeqCst) || passes < 3 {
                    passes += 1;
                    let floor_group = acked_group.load(Ordering::SeqCst);
                    let floor_single = acked_single.load(Ordering::SeqCst);
                    for k in group.iter().chain([&single]) {
                        let floor = if *k == single { floor_single } else { floor_group };
                        if rng.random_bool(0.2) {
                            // A read given up part-way must change nothing.
                            let _ = poll_then_drop(store.get(k), rng.random_range(0..3usize)).await;
                            continue;
                        }
                        let value = store.get(k).await.unwrap().expect("key vanished");
                        let generation = parse_generation(k, &value);
                        assert!(
                            generation >= floor,
                            "seed {seed}: {k} reads generation {generation} after {floor} was acknowledged"
                        );
                        let last = seen.entry(k.clone()).or_insert(0);
                        assert!(
                            generation >= *last,
                            "seed {seed}: {k} went back from generation {last} to {generation}"
                        );
                        *last = generation;
                    }
                    if rng.random_bool(0.3) {
                        let scan = async {
                            let mut stream = store.scan(KeyRange::prefix("cancel/"), None);
                            while let Some(entry) = stream.try_next().await? {
                                parse_generation(&entry.key, &entry.value);
                            }
                            Ok::<_, crate::Error>(())
                        };
                        if let Some(done) = poll_then_drop(scan, rng.random_range(0..8usize)).await {
                            done.unwrap();
                        }
                    }
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();

    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    for generation in 1..=ROUNDS {
        let acknowledge = generation % 8 == 0;
        let polls = (!acknowledge).then(|| rng.random_range(0..12usize));
        if rng.random_bool(0.6) {
            let mut batch = WriteBatch::new();
            for k in group.iter() {
                batch.put(k.clone(), generation_value(k, generation));
            }
            if let Some(done) = poll_then_drop(store.write_batch(batch), polls).await {
                done.unwrap();
                if acknowledge {
                    acked_group.store(generation, Ordering::SeqCst);
                    for k in group.iter() {
                        let v = store.get(k).await.unwrap().unwrap();
                        assert_eq!(
                            parse_generation(k, &v),
                            generation,
                            "seed {seed}: {k} does not hold the batch just acknowledged"
                        );
                    }
                }
            }
        } else {
            let value = generation_value(&single, generation);
            if let Some(done) = poll_then_drop(store.put(&single, value), polls).await {
                done.unwrap();
                if acknowledge {
                    acked_single.store(generation, Ordering::SeqCst);
                    let v = store.get(&single).await.unwrap().unwrap();
                    assert_eq!(
                        parse_generation(&single, &v),
                        generation,
                        "seed {seed}: {single} does not hold the put just acknowledged"
                    );
                }
            }
        }
    }
    // The last word: an acknowledged batch over every key, which nothing dropped earlier may
    // overwrite.
    let last = ROUNDS + 1;
    let mut batch = WriteBatch::new();
    for k in group.iter().chain([&single]) {
        batch.put(k.clone(), generation_value(k, last));
    }
    store.write_batch(batch).await.unwrap();
    acked_group.store(last, Ordering::SeqCst);
    acked_single.store(last, Ordering::SeqCst);
    stop.store(true, Ordering::SeqCst);
    for r in readers {
        r.await.expect("reader panicked");
    }
    for k in group.iter().chain([&single]) {
        let v = store.get(k).await.unwrap().unwrap();
        assert_eq!(
            parse_generation(k, &v),
            last,
            "seed {seed}: a dropped write landed after the last acknowledged batch on {k}"
        );
    }
}

/// The provided methods (`list_keys`, `get_many`, `stats`, `clear`) agree with the core ones.
pub async fn provided_methods(fx: &Fixture) {
    let s = fx.store();
    for i in 0..25u32 {
        s.put(
            &key(format!("p/{i:02}")),
            Bytes::from(vec![b'v'; i as usize]),
        )
        .await
        .unwrap();
    }
    let keys = s.list_keys(KeyRange::all(), None).await.unwrap();
    assert_eq!(keys.len(), 25);
    assert_eq!(
        s.list_keys(KeyRange::all(), Some(3)).await.unwrap().len(),
        3
    );
    let wanted = [key("p/03"), key("p/missing"), key("p/24")];
    let got = s.get_many(&wanted).await.unwrap();
    assert_eq!(
        got,
        vec![
            Some(Bytes::from(vec![b'v'; 3])),
            None,
            Some(Bytes::from(vec![b'v'; 24]))
        ]
    );
    let stats = s.stats().await.unwrap();
    assert_eq!(stats.keys, 25);
    assert_eq!(stats.logical_bytes, (0..25).sum::<u64>());
    assert_eq!(s.clear().await.unwrap(), 25);
    assert!(s.list_keys(KeyRange::all(), None).await.unwrap().is_empty());
    assert_eq!(s.stats().await.unwrap().keys, 0);
}

// ---------------------------------------------------------------------------------------------
// Model-based property test.

/// The key universe of the model test: few enough that operations collide, with binary and
/// path-like keys.
fn model_keys() -> Vec<Vec<u8>> {
    vec![
        vec![0x00],
        vec![0x00, 0x00],
        vec![0x00, 0xFF],
        b"a".to_vec(),
        b"a/b".to_vec(),
        b"a/b/c".to_vec(),
        b"ab".to_vec(),
        vec![b'a', 0xFF],
        b"b".to_vec(),
        b"..".to_vec(),
        vec![0xFF],
        vec![0xFF, 0x00],
    ]
}

fn model_prefixes() -> Vec<Vec<u8>> {
    vec![
        Vec::new(),
        b"a".to_vec(),
        b"a/".to_vec(),
        vec![0x00],
        vec![0xFF],
        b"zz".to_vec(),
    ]
}

#[derive(Clone, Debug)]
enum Op {
    Put(usize, Vec<u8>),
    Delete(usize),
    Get(usize),
    Head(usize),
    Scan { prefix: usize, limit: Option<usize> },
    Batch(Vec<BatchStep>),
}

#[derive(Clone, Debug)]
enum BatchStep {
    Put(usize, Vec<u8>),
    Delete(usize),
    ExpectAbsent(usize),
    ExpectPresent(usize),
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let k = 0..model_keys().len();
    let value = proptest::collection::vec(any::<u8>(), 0..48);
    let step = prop_oneof![
        3 => (k.clone(), value.clone()).prop_map(|(k, v)| BatchStep::Put(k, v)),
        2 => k.clone().prop_map(BatchStep::Delete),
        1 => k.clone().prop_map(BatchStep::ExpectAbsent),
        1 => k.clone().prop_map(BatchStep::ExpectPresent),
    ];
    prop_oneof![
        4 => (k.clone(), value).prop_map(|(k, v)| Op::Put(k, v)),
        2 => k.clone().prop_map(Op::Delete),
        3 => k.clone().prop_map(Op::Get),
        1 => k.prop_map(Op::Head),
        2 => (0..model_prefixes().len(), proptest::option::of(0usize..5))
            .prop_map(|(prefix, limit)| Op::Scan { prefix, limit }),
        2 => proptest::collection::vec(step, 0..6).prop_map(Op::Batch),
    ]
}

async fn run_model(store: &dyn KvStore, ops: &[Op]) -> Result<(), TestCaseError> {
    let keys = model_keys();
    let prefixes = model_prefixes();
    let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    for (n, op) in ops.iter().enumerate() {
        match op {
            Op::Put(k, v) => {
                store
                    .put(&key(&keys[*k]), Bytes::from(v.clone()))
                    .await
                    .unwrap();
                model.insert(keys[*k].clone(), v.clone());
            }
            Op::Delete(k) => {
                store.delete(&key(&keys[*k])).await.unwrap();
                model.remove(&keys[*k]);
            }
            Op::Get(k) => {
                let got = store
                    .get(&key(&keys[*k]))
                    .await
                    .unwrap()
                    .map(|b| b.to_vec());
                prop_assert_eq!(got, model.get(&keys[*k]).cloned(), "op {}: get", n);
            }
            Op::Head(k) => {
                let got = store.head(&key(&keys[*k])).await.unwrap();
                let want = model.get(&keys[*k]);
                prop_assert_eq!(got.as_ref().map(|m| m.size), want.map(|v| v.len() as u64));
                if let (Some(m), Some(v)) = (got, want) {
                    prop_assert_eq!(m.checksum, Sha256Digest::of(v));
                }
            }
            Op::Scan { prefix, limit } => {
                let p = &prefixes[*prefix];
                let entries: Vec<_> = store
                    .scan(KeyRange::prefix(p.clone()), *limit)
                    .try_collect()
                    .await
                    .unwrap();
                let got: Vec<(Vec<u8>, Vec<u8>)> = entries
                    .into_iter()
                    .map(|e| (e.key.as_bytes().to_vec(), e.value.to_vec()))
                    .collect();
                let want: Vec<(Vec<u8>, Vec<u8>)> = model
                    .iter()
                    .filter(|(k, _)| k.starts_with(p))
                    .take(limit.unwrap_or(usize::MAX))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                prop_assert_eq!(got, want, "op {}: scan {:?} limit {:?}", n, p, limit);
            }
            Op::Batch(steps) => {
                let mut batch = WriteBatch::new();
                let mut next = model.clone();
                let mut ok = true;
                for step in steps {
                    match step {
                        BatchStep::Put(k, v) => {
                            batch.put(key(&keys[*k]), Bytes::from(v.clone()));
                            next.insert(keys[*k].clone(), v.clone());
                        }
                        BatchStep::Delete(k) => {
                            batch.delete(key(&keys[*k]));
                            next.remove(&keys[*k]);
                        }
                        BatchStep::ExpectAbsent(k) => {
                            batch.expect(key(&keys[*k]), Expect::Absent);
                            ok &= !model.contains_key(&keys[*k]);
                        }
                        BatchStep::ExpectPresent(k) => {
                            batch.expect(key(&keys[*k]), Expect::Present);
                            ok &= model.contains_key(&keys[*k]);
                        }
                    }
                }
                match store.write_batch(batch).await {
                    Ok(()) => {
                        prop_assert!(ok, "op {}: batch with a failing check succeeded", n);
                        model = next;
                    }
                    Err(e) => {
                        prop_assert!(!ok, "op {}: valid batch failed: {}", n, e);
                        prop_assert_eq!(e.kind(), ErrorKind::Conflict);
                    }
                }
            }
        }
    }
    // Final state equals the model exactly.
    let entries: Vec<_> = store
        .scan(KeyRange::all(), None)
        .try_collect()
        .await
        .unwrap();
    let got: BTreeMap<Vec<u8>, Vec<u8>> = entries
        .into_iter()
        .map(|e| (e.key.as_bytes().to_vec(), e.value.to_vec()))
        .collect();
    prop_assert_eq!(got, model, "final state");
    Ok(())
}

/// Random sequences of put/delete/get/head/scan/batch, each on a fresh store, checked step by
/// step against a `BTreeMap` model; proptest shrinks a failure to a minimal sequence.
/// Cases: `HYBRIDSTORE_PROPTEST_CASES` (default 64), up to 40 operations each.
pub fn model_based<F, Fut>(factory: F)
where
    F: Fn() -> Fut,
    Fut: Future,
    Fut::Output: MaybeFixture,
{
    let cases = std::env::var("HYBRIDSTORE_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    if rt.block_on(factory()).into_fixture().is_none() {
        return; // skipped: the factory said why
    }
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&proptest::collection::vec(op_strategy(), 1..40), |ops| {
        rt.block_on(async {
            match factory().await.into_fixture() {
                Some(fixture) => run_model(fixture.store(), &ops).await,
                None => Ok(()), // skipped: the factory said why
            }
        })
    });
    if let Err(e) = result {
        panic!("model-based test failed: {e}");
    }
}
