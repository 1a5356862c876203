//! Streaming reads and writes, checked against the whole-value calls.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use super::*;

/// `len` bytes no dedup layer or compressor can shorten, the same for the same `seed`: a
/// xorshift64 sequence (Marsaglia, "Xorshift RNGs", Journal of Statistical Software 8(14),
/// 2003, <https://doi.org/10.18637/jss.v008.i14>, shifts 13, 7, 17), one byte per step.
pub fn incompressible(len: usize, seed: u64) -> Bytes {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect::<Vec<_>>()
        .into()
}

/// A reader that yields `prefix`, then fails: a streaming put that must store nothing.
struct FailingReader {
    prefix: std::io::Cursor<Vec<u8>>,
}

impl tokio::io::AsyncRead for FailingReader {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if (self.prefix.position() as usize) < self.prefix.get_ref().len() {
            return std::pin::Pin::new(&mut self.prefix).poll_read(cx, buf);
        }
        std::task::Poll::Ready(Err(std::io::Error::other("the source went away")))
    }
}

/// `put_stream` stores what `put` would (metadata included); `get_stream` of the whole value
/// and of ranges yields what `get` and `get_range` do, for an empty value, a small one and
/// one of several chunks; a missing key is `None`; a stream dropped part-way leaves the store
/// working; a reader that fails part-way stores nothing and keeps the previous value.
pub async fn streaming(fx: &Fixture) {
    let s = fx.store();
    let values = [
        ("stream/empty", Bytes::new()),
        ("stream/small", Bytes::from_static(b"a small value")),
        ("stream/large", incompressible(300_000, 7)),
    ];
    for (k, v) in &values {
        let mut reader = std::io::Cursor::new(v.to_vec());
        let options = PutOptions::with_content_type("application/octet-stream");
        let meta = s.put_stream(&key(*k), &mut reader, &options).await.unwrap();
        assert_eq!(meta.size, v.len() as u64, "{k}");
        assert_eq!(meta.checksum, Sha256Digest::of(v), "{k}");
        let head = s.head(&key(*k)).await.unwrap().unwrap();
        assert_eq!(head.checksum, meta.checksum, "{k}");
        assert_eq!(
            head.content_type.as_deref(),
            Some("application/octet-stream")
        );
        assert_eq!(s.get(&key(*k)).await.unwrap().unwrap(), *v, "{k}");
        let stream = s.get_stream(&key(*k), None).await.unwrap().unwrap();
        assert_eq!(stream.len, v.len() as u64, "{k}");
        assert_eq!(stream.collect().await.unwrap(), *v, "{k}");
    }
    let large = &values[2].1;
    let k = key("stream/large");
    for range in [0..0, 0..1, 1000..70_000, 299_000..300_000, 0..300_000] {
        let stream = s
            .get_stream(&k, Some(range.clone()))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stream.len, range.end - range.start, "{range:?}");
        assert_eq!(
            stream.collect().await.unwrap(),
            s.get_range(&k, range.clone()).await.unwrap().unwrap(),
            "{range:?}"
        );
        assert_eq!(
            s.get_range(&k, range.clone()).await.unwrap().unwrap(),
            large.slice(range.start as usize..range.end as usize)
        );
    }
    assert!(
        s.get_stream(&key("stream/missing"), None)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        s.get_stream(&key("stream/missing"), Some(0..1))
            .await
            .unwrap()
            .is_none()
    );
    // Dropped after the first piece.
    {
        let mut stream = s.get_stream(&k, None).await.unwrap().unwrap();
        let first = futures::StreamExt::next(&mut stream.body)
            .await
            .unwrap()
            .unwrap();
        assert!(!first.is_empty());
    }
    assert_eq!(s.get(&k).await.unwrap().unwrap(), *large);
    // A failing source: nothing stored, the previous value kept.
    let mut failing = FailingReader {
        prefix: std::io::Cursor::new(incompressible(200_000, 9).to_vec()),
    };
    let err = s
        .put_stream(&k, &mut failing, &PutOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert_eq!(s.get(&k).await.unwrap().unwrap(), *large);
    let mut failing = FailingReader {
        prefix: std::io::Cursor::new(b"partial".to_vec()),
    };
    assert!(
        s.put_stream(&key("stream/never"), &mut failing, &PutOptions::default())
            .await
            .is_err()
    );
    assert!(s.get(&key("stream/never")).await.unwrap().is_none());
}
