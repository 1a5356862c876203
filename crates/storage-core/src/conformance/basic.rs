//! Single-key behaviour: round trips, ranged reads, metadata, deletes, binary keys, limits.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use super::*;

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

/// Times given in [`PutOptions`] are the value's times (kept to the millisecond at least),
/// through `put_with`, write batches and scans: a synced or restored value keeps its own. An
/// overwrite with a `created` replaces the old one; without, the old one stays. Times outside
/// the Unix epoch to [`MAX_TIME_SINCE_EPOCH`](crate::MAX_TIME_SINCE_EPOCH) after it are
/// `InvalidInput`.
pub async fn put_options_times(fx: &Fixture) {
    use std::time::{Duration, UNIX_EPOCH};
    let s = fx.store();
    let t = |ms: u64| UNIX_EPOCH + Duration::from_millis(ms);
    let (c1, m1) = (t(1_500_000_000_123), t(1_600_000_000_456));
    let k = key("times/given");
    let options = PutOptions::with_content_type("text/plain")
        .with_created(c1)
        .with_modified(m1);
    let meta = s
        .put_with(&k, Bytes::from_static(b"old"), &options)
        .await
        .unwrap();
    assert_eq!(
        (meta.created, meta.modified),
        (c1, m1),
        "put_with returns the given times"
    );
    let head = s.head(&k).await.unwrap().unwrap();
    assert_eq!((head.created, head.modified), (c1, m1), "head");
    assert_eq!(head.content_type.as_deref(), Some("text/plain"));

    // An overwrite without times keeps `created` and takes a fresh `modified`.
    s.put(&k, Bytes::from_static(b"newer")).await.unwrap();
    let head = s.head(&k).await.unwrap().unwrap();
    assert_eq!(head.created, c1, "created kept");
    assert!(head.modified > m1, "modified is the time of the write");
    // With a `created`, the overwrite replaces it.
    let (c2, m2) = (t(1_400_000_000_001), t(1_450_000_000_002));
    let restored = PutOptions::preserving(&ObjectMeta {
        created: c2,
        modified: m2,
        ..head.clone()
    });
    s.put_with(&k, Bytes::from_static(b"restored"), &restored)
        .await
        .unwrap();
    let head = s.head(&k).await.unwrap().unwrap();
    assert_eq!(
        (head.created, head.modified),
        (c2, m2),
        "a given created replaces the old"
    );

    // Write batches, with and without times, and what scans report.
    let (a, b) = (key("times/batch-a"), key("times/batch-b"));
    let mut batch = WriteBatch::new();
    batch
        .put_with(
            a.clone(),
            "a",
            PutOptions::default().with_created(c1).with_modified(m1),
        )
        .put(b.clone(), "b");
    s.write_batch(batch).await.unwrap();
    let scanned: BTreeMap<Vec<u8>, ObjectMeta> = s
        .scan_meta(KeyRange::prefix("times/"), None)
        .try_collect::<Vec<_>>()
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.key.as_bytes().to_vec(), e.meta))
        .collect();
    let am = &scanned[a.as_bytes()];
    assert_eq!((am.created, am.modified), (c1, m1), "batch put with times");
    let bm = &scanned[b.as_bytes()];
    assert!(
        bm.created > m1 && bm.modified > m1,
        "batch put without times: now"
    );
    assert_eq!(
        scanned[k.as_bytes()].created,
        c2,
        "scan_meta reports the stored times"
    );

    for (what, bad) in [
        (
            "before the epoch",
            PutOptions::default().with_created(UNIX_EPOCH - Duration::from_secs(1)),
        ),
        (
            "after MAX_TIME",
            PutOptions::default()
                .with_modified(UNIX_EPOCH + crate::MAX_TIME_SINCE_EPOCH + Duration::from_secs(1)),
        ),
    ] {
        let err = s
            .put_with(&key("times/bad"), Bytes::from_static(b"x"), &bad)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{what}");
        let mut batch = WriteBatch::new();
        batch.put_with(key("times/bad"), "x", bad);
        let err = s.write_batch(batch).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{what}, in a batch");
    }
    assert_eq!(
        s.head(&key("times/bad")).await.unwrap(),
        None,
        "nothing stored"
    );
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

/// The largest value the store takes, up to 64 MiB
/// ([`max_value_len`](crate::Capabilities::max_value_len) when smaller), round-trips byte
/// for byte; where the store caps values below 64 MiB, one byte more is `InvalidInput` and
/// stores nothing.
pub async fn value_of_64_mib(fx: &Fixture) {
    let s = fx.store();
    let mut len = 64 * 1024 * 1024;
    if let Some(max) = s.capabilities().max_value_len
        && max < len as u64
    {
        len = usize::try_from(max).expect("a cap below 64 MiB fits in usize");
        let over = key("large/over-the-cap");
        let err = s.put(&over, pattern(len + 1, 65)).await.unwrap_err();
        assert_eq!(
            err.kind(),
            ErrorKind::InvalidInput,
            "a value over max_value_len"
        );
        assert_eq!(
            s.get(&over).await.unwrap(),
            None,
            "the refused value was not stored"
        );
    }
    let value = pattern(len, 64);
    let k = key("large/64mib");
    let meta = s.put(&k, value.clone()).await.unwrap();
    assert_eq!(meta.size, len as u64);
    let back = s.get(&k).await.unwrap().expect("large value readable");
    assert!(back == value, "a {len}-byte value came back different");
    assert_eq!(
        s.head(&k).await.unwrap().unwrap().checksum,
        Sha256Digest::of(&value)
    );
}
