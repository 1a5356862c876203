//! The trait's provided methods, checked against the required ones.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use super::*;

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
