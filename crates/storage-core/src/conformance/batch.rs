//! Write batches: order within a batch, all or nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use super::*;

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
