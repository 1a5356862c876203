//! Scans: order, prefixes, ranges, limits and paging.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use super::*;

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
