//! Large values stream through the default stack (SQLite manifests, dedup packs, L1 cache,
//! metrics) in bounded memory, measured in a child process of its own.

use std::pin::Pin;
use std::task::{Context, Poll};

use hybridstore::core::{Key, KvStore, PutOptions};
use hybridstore::{HybridStorageSystem, StorageConfig};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, ReadBuf};

/// Set in the child: the data directory it works in.
const CHILD_ENV: &str = "HYBRIDSTORE_TEST_STREAM_CHILD";
/// 2 GiB.
const VALUE_LEN: u64 = 2 << 30;
/// What the child may use above its starting point: 256 MiB.
const PEAK_BUDGET: u64 = 256 << 20;

/// `len` incompressible bytes (xorshift64), hashed as they are handed out.
struct Generated {
    left: u64,
    state: u64,
    hasher: Sha256,
}

impl AsyncRead for Generated {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let n = (buf.remaining() as u64).min(self.left).min(1 << 20) as usize;
        let mut out = vec![0u8; n];
        for word in out.chunks_mut(8) {
            let mut x = self.state;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.state = x;
            word.copy_from_slice(&x.to_le_bytes()[..word.len()]);
        }
        self.hasher.update(&out);
        self.left -= n as u64;
        buf.put_slice(&out);
        Poll::Ready(Ok(()))
    }
}

/// The process's peak resident set so far (`VmHWM` in `/proc/self/status`), in bytes.
fn vm_hwm() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap();
    kib * 1024
}

/// The child: opens the default stack, notes its peak so far, puts and gets back 2 GiB
/// through the streaming calls, checks the bytes by SHA-256 and prints the peaks.
fn child(data_dir: &str) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut config = StorageConfig::with_data_dir(data_dir);
        // The passages index plays no part in a put or get.
        config.vectors = false;
        let system = HybridStorageSystem::open(config).await.unwrap();
        let start = vm_hwm();
        let key = Key::new("large/value.bin").unwrap();
        let mut source = Generated {
            left: VALUE_LEN,
            state: 0x9E37_79B9_7F4A_7C15,
            hasher: Sha256::new(),
        };
        let meta = system
            .kv()
            .put_stream(&key, &mut source, &PutOptions::default())
            .await
            .unwrap();
        assert_eq!(meta.size, VALUE_LEN);
        let written: [u8; 32] = source.hasher.finalize().into();
        assert_eq!(meta.checksum.0, written);
        let after_put = vm_hwm();

        let kv = system.kv().clone();
        let stream = kv.get_stream(&key, None).await.unwrap().unwrap();
        assert_eq!(stream.len, VALUE_LEN);
        let mut body = stream.body;
        let (mut read, mut hasher) = (0u64, Sha256::new());
        while let Some(piece) = futures::TryStreamExt::try_next(&mut body).await.unwrap() {
            read += piece.len() as u64;
            hasher.update(&piece);
        }
        assert_eq!(read, VALUE_LEN);
        let read_back: [u8; 32] = hasher.finalize().into();
        assert_eq!(
            read_back, written,
            "the bytes read back are the bytes written"
        );
        println!("peak start={start} after_put={after_put} end={}", vm_hwm());
        system.shutdown().await.unwrap();
    });
}

/// A 2 GiB value put and read back through the streaming calls in a child process: its
/// peak resident memory grows by less than 256 MiB, and the bytes are identical.
#[test]
fn a_2_gib_value_streams_through_the_default_stack_in_bounded_memory() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        child(&dir);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "streaming::a_2_gib_value_streams_through_the_default_stack_in_bounded_memory",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The harness may print the test's name on the same line first.
    let line = stdout
        .lines()
        .find_map(|l| l.find("peak start=").map(|at| &l[at..]))
        .unwrap_or_else(|| panic!("no figures from the child: {stdout}"));
    let figure = |name: &str| -> u64 {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.parse().ok())
            .unwrap()
    };
    let (start, end) = (figure("start"), figure("end"));
    eprintln!(
        "2 GiB streamed: peak RSS {} MiB at start, {} MiB after put, {} MiB at end",
        start >> 20,
        figure("after_put") >> 20,
        end >> 20
    );
    assert!(
        end - start < PEAK_BUDGET,
        "peak grew by {} MiB: {line}",
        (end - start) >> 20
    );
}

/// Pieces of the sizes a stream may yield: many small (dedup chunks), one larger than a batch.
fn pieces() -> Vec<bytes::Bytes> {
    let mut out = Vec::new();
    let mut next = 0u8;
    let mut piece = |len: usize| {
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                next = next.wrapping_add(7);
                next
            })
            .collect();
        bytes::Bytes::from(bytes)
    };
    for len in [1, 16 << 10, 3 << 20, 5 << 20, 17, (1 << 20) + 3] {
        out.push(piece(len));
    }
    for _ in 0..600 {
        out.push(piece(16 << 10));
    }
    out
}

/// `write_stream` hands every byte over in order, in batches of at most `WRITE_BATCH_BYTES`
/// unless a piece alone is larger, and checkpoints on the way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_stream_writes_every_byte_in_order_in_batches() {
    use futures::StreamExt;
    #[derive(Default)]
    struct Recorder {
        bytes: Vec<u8>,
        writes: Vec<usize>,
        checkpoints: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    }
    impl std::io::Write for Recorder {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.bytes.extend_from_slice(buf);
            self.writes.push(buf.len());
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let pieces = pieces();
    let expected: Vec<u8> = pieces.iter().flat_map(|p| p.iter().copied()).collect();
    let body = futures::stream::iter(pieces.into_iter().map(Ok)).boxed();
    let (recorder, written) = hybridstore::write_stream(
        body,
        Recorder::default(),
        Some(|r: &Recorder| {
            r.checkpoints
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok(())
        }),
    )
    .await
    .expect("written");
    assert_eq!(written, expected.len() as u64);
    assert!(recorder.bytes == expected, "bytes differ from the stream's");
    let oversized = recorder
        .writes
        .iter()
        .filter(|&&w| w > hybridstore::WRITE_BATCH_BYTES)
        .count();
    assert_eq!(
        oversized, 1,
        "only the 5 MiB piece is a write above a batch"
    );
    assert!(
        recorder.writes.len() < 10,
        "{} writes for {} bytes: pieces were not gathered",
        recorder.writes.len(),
        expected.len()
    );
    // The test's value is below CHECKPOINT_EVERY_BYTES: no checkpoint is due.
    assert!((expected.len() as u64) < hybridstore::CHECKPOINT_EVERY_BYTES);
    assert_eq!(
        recorder
            .checkpoints
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
}

/// A stream error comes back as `Read` with the store's error; a failing destination as
/// `Write`, and reading stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_stream_tells_read_failures_from_write_failures() {
    use futures::StreamExt;
    let mut items: Vec<hybridstore::core::Result<bytes::Bytes>> =
        pieces().into_iter().map(Ok).collect();
    items.insert(
        3,
        Err(hybridstore::core::Error::corrupted("checksum mismatch")),
    );
    let failed = hybridstore::write_stream(futures::stream::iter(items).boxed(), Vec::new(), None)
        .await
        .expect_err("the stream failed");
    assert!(
        matches!(&failed, hybridstore::WriteStreamError::Read(e) if e.kind() == hybridstore::core::ErrorKind::Corrupted),
        "{failed:?}"
    );

    #[derive(Debug)]
    struct Full;
    impl std::io::Write for Full {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::from(std::io::ErrorKind::StorageFull))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    // An endless stream: only the writer's failure can end this call.
    let endless =
        futures::stream::repeat_with(|| Ok(bytes::Bytes::from(vec![1u8; 64 << 10]))).boxed();
    let failed = hybridstore::write_stream(endless, Full, None)
        .await
        .expect_err("the destination is full");
    assert!(
        matches!(&failed, hybridstore::WriteStreamError::Write(e) if e.kind() == std::io::ErrorKind::StorageFull),
        "{failed:?}"
    );
}

/// `verify` streams every value with `io_concurrency` of them at once: with many chunked
/// values among small ones it finishes (a regression test: 16 at once once stalled for
/// good on a tree of 659 files) and finds every key clean.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_of_many_chunked_values_at_full_concurrency_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = StorageConfig::with_data_dir(dir.path());
    config.analytics = false;
    config.vectors = false;
    config.io_concurrency = 16;
    let system = HybridStorageSystem::open(config).await.unwrap();
    for i in 0..700u64 {
        let len = if i % 5 == 0 {
            300_000
        } else {
            3_000 + (i as usize * 37) % 20_000
        };
        let value = hybridstore_core::conformance::incompressible(len, i + 1);
        system
            .kv()
            .put(&Key::new(format!("v/{i:04}")).unwrap(), value)
            .await
            .unwrap();
    }
    let report = tokio::time::timeout(
        std::time::Duration::from_secs(120),
        system.verify(|_, _| {}),
    )
    .await
    .expect("verify finishes")
    .unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.checked_keys, 700);
    system.shutdown().await.unwrap();
}
