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
