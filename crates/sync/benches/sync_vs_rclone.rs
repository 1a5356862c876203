//! `cargo xtask bench sync`: hybridstore sync against rclone, in one run, against one
//! SeaweedFS server on loopback ports.
//!
//! A tree of files (the Rust documentation by default; `HYBRIDSTORE_BENCH_SYNC_SOURCE`
//! names another) is ingested into a local store like the facade's default stack (SQLite
//! manifests, dedup chunks in packs). Then, each timed beside `rclone` on the same tree and
//! server (`--transfers 16`, provider Other):
//!
//! 1. first push, against `rclone sync TREE remote:`;
//! 2. a sync with no changes, against `rclone sync` again;
//! 3. a sync after changing 1% of the files, against `rclone sync`; also the bytes sent
//!    against the LZ4-compressed size of the changed files;
//! 4. a pull into an empty second data directory, against `rclone copy remote: EMPTY`.
//!
//! Prints a table and writes `<target>/bench-report/sync.json`. Not a test: nothing here
//! asserts; the aims are in the issue and the closing note gives the figures.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use hybridstore_core::services::SeaweedS3;
use hybridstore_core::{Bytes, Key, KvStore};
use hybridstore_dedup::{DedupOptions, DedupStore};
use hybridstore_sync::{
    Direction, ObjectStoreKvOptions, Remote, RemoteUrl, SyncEngine, SyncOptions, SyncReport,
};

fn files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() {
                out.push(entry.path());
            }
        }
    }
    out.sort();
    out
}

fn key_of(root: &Path, path: &Path) -> Key {
    Key::new(
        path.strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned(),
    )
    .unwrap()
}

/// The local stack of one device: SQLite manifests and dedup chunk packs in `dir`.
async fn device_store(dir: &Path) -> (Arc<dyn KvStore>, Arc<dyn KvStore>) {
    std::fs::create_dir_all(dir).unwrap();
    let manifests =
        hybridstore_sql::SqlStore::open_sqlite_file(dir.join("kv.db"), Default::default())
            .await
            .unwrap();
    let chunks: Arc<dyn KvStore> = Arc::new(
        hybridstore_file::FileStore::open(dir.join("chunks"))
            .await
            .unwrap(),
    );
    let store: Arc<dyn KvStore> = Arc::new(
        DedupStore::open(manifests, chunks, DedupOptions::default())
            .await
            .unwrap(),
    );
    let state: Arc<dyn KvStore> = Arc::new(
        hybridstore_sql::SqlStore::open_sqlite_file(dir.join("sync.db"), Default::default())
            .await
            .unwrap(),
    );
    (store, state)
}

async fn ingest(store: &Arc<dyn KvStore>, root: &Path, paths: &[PathBuf]) {
    futures::stream::iter(paths)
        .map(|p| {
            let store = store.clone();
            async move {
                let bytes = tokio::fs::read(p).await.unwrap();
                store
                    .put(&key_of(root, p), Bytes::from(bytes))
                    .await
                    .unwrap();
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
}

struct Rclone {
    env: Vec<(String, String)>,
}

impl Rclone {
    fn new(s3: &SeaweedS3) -> Rclone {
        let env = [
            ("RCLONE_CONFIG_BENCH_TYPE", "s3".to_string()),
            ("RCLONE_CONFIG_BENCH_PROVIDER", "Other".to_string()),
            ("RCLONE_CONFIG_BENCH_ENDPOINT", s3.endpoint()),
            (
                "RCLONE_CONFIG_BENCH_ACCESS_KEY_ID",
                "hybridstore".to_string(),
            ),
            (
                "RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY",
                "hybridstore".to_string(),
            ),
            ("RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE", "true".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        Rclone { env }
    }

    /// Wall time of `rclone <verb> FROM TO --transfers 16`, in seconds.
    fn timed(&self, verb: &str, from: &str, to: &str) -> f64 {
        let started = Instant::now();
        let status = Command::new("rclone")
            .args([verb, from, to, "--transfers", "16", "--checkers", "16"])
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            // A CA bundle for AWS in the environment makes rclone refuse its plain-HTTP
            // client; the server here is on loopback without TLS.
            .env_remove("AWS_CA_BUNDLE")
            .status()
            .expect("rclone runs (apt-get install rclone)");
        assert!(status.success(), "rclone {verb} failed");
        started.elapsed().as_secs_f64()
    }
}

struct Row {
    scenario: &'static str,
    ours_s: f64,
    rclone_s: f64,
    aim: f64,
    report: SyncReport,
}

async fn timed_sync(engine: &SyncEngine, direction: Direction) -> (f64, SyncReport) {
    let started = Instant::now();
    let report = engine
        .run(direction, &SyncOptions::default(), |_| {})
        .await
        .unwrap();
    (started.elapsed().as_secs_f64(), report)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    // `cargo bench -- FILTER` hands the filter to every bench binary: this one (no criterion
    // harness) runs only without a filter or with one its name contains, as criterion's do.
    if let Some(filter) = std::env::args().skip(1).find(|a| !a.starts_with('-'))
        && !"sync_vs_rclone".contains(filter.as_str())
    {
        return;
    }
    let source = std::env::var_os("HYBRIDSTORE_BENCH_SYNC_SOURCE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let out = Command::new("rustc")
                .args(["--print", "sysroot"])
                .output()
                .unwrap();
            PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("share/doc/rust/html")
        });
    let work = tempfile::tempdir().unwrap();
    // The tree rclone syncs, changed in place for scenario 3.
    let tree = work.path().join("tree");
    let status = Command::new("cp")
        .arg("-r")
        .arg(&source)
        .arg(&tree)
        .status()
        .unwrap();
    assert!(status.success());
    let paths = files(&tree);
    let total_bytes: u64 = paths.iter().map(|p| p.metadata().unwrap().len()).sum();
    eprintln!(
        "bench sync: {} files, {:.1} MB from {}",
        paths.len(),
        total_bytes as f64 / 1e6,
        source.display()
    );

    let s3 = SeaweedS3::start_with_buckets(&["hybridstore", "rclone"]).expect("weed is installed");
    let rclone = Rclone::new(&s3);
    let url: RemoteUrl = s3.uri("bench").parse().unwrap();
    let open_remote = || async {
        Remote::open(&url, &s3.storage_options(), ObjectStoreKvOptions::default())
            .await
            .unwrap()
    };

    let (store_a, state_a) = device_store(&work.path().join("a")).await;
    let started = Instant::now();
    ingest(&store_a, &tree, &paths).await;
    eprintln!(
        "bench sync: ingest took {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let a = SyncEngine::new(store_a.clone(), state_a, open_remote().await);
    let remote_tree = "bench:rclone/docs";
    let tree_arg = tree.to_string_lossy().into_owned();
    let mut rows = Vec::new();

    let (ours, report) = timed_sync(&a, Direction::Push).await;
    let theirs = rclone.timed("sync", &tree_arg, remote_tree);
    rows.push(Row {
        scenario: "first push",
        ours_s: ours,
        rclone_s: theirs,
        aim: 0.5,
        report,
    });

    let (ours, report) = timed_sync(&a, Direction::Both).await;
    let theirs = rclone.timed("sync", &tree_arg, remote_tree);
    rows.push(Row {
        scenario: "no-change sync",
        ours_s: ours,
        rclone_s: theirs,
        aim: 0.2,
        report,
    });

    // Change 1% of the files (every 100th): a line appended, in the tree and the store.
    let changed: Vec<PathBuf> = paths.iter().step_by(100).cloned().collect();
    let mut changed_compressed = 0u64;
    for p in &changed {
        let mut bytes = std::fs::read(p).unwrap();
        bytes.extend_from_slice(b"\n<!-- edited by the sync bench -->\n");
        std::fs::write(p, &bytes).unwrap();
        changed_compressed += lz4_flex::block::compress(&bytes).len() as u64;
    }
    ingest(&store_a, &tree, &changed).await;
    let (ours, report) = timed_sync(&a, Direction::Both).await;
    let theirs = rclone.timed("sync", &tree_arg, remote_tree);
    let sent_ratio = report.bytes_sent as f64 / changed_compressed as f64;
    rows.push(Row {
        scenario: "1% changed",
        ours_s: ours,
        rclone_s: theirs,
        aim: f64::NAN,
        report,
    });

    let (store_b, state_b) = device_store(&work.path().join("b")).await;
    let b = SyncEngine::new(store_b, state_b, open_remote().await);
    let (ours, report) = timed_sync(&b, Direction::Pull).await;
    let empty = work.path().join("rclone-pull");
    let theirs = rclone.timed("copy", remote_tree, &empty.to_string_lossy());
    rows.push(Row {
        scenario: "pull into empty",
        ours_s: ours,
        rclone_s: theirs,
        aim: 0.5,
        report,
    });

    println!(
        "| scenario | hybridstore | rclone | ratio | aim | sent | received | requests (packs + segments) |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let mut json = Vec::new();
    for row in &rows {
        let ratio = row.ours_s / row.rclone_s;
        println!(
            "| {} | {:.2} s | {:.2} s | {:.3}x | {} | {:.1} MB | {:.1} MB | {} |",
            row.scenario,
            row.ours_s,
            row.rclone_s,
            ratio,
            if row.aim.is_nan() {
                "-".to_string()
            } else {
                format!("<= {}x", row.aim)
            },
            row.report.bytes_sent as f64 / 1e6,
            row.report.bytes_received as f64 / 1e6,
            row.report.packs_sent + row.report.segments_sent,
        );
        json.push(serde_json::json!({
            "scenario": row.scenario, "hybridstore_s": row.ours_s, "rclone_s": row.rclone_s,
            "ratio": ratio, "aim": if row.aim.is_nan() { None } else { Some(row.aim) },
            "bytes_sent": row.report.bytes_sent, "bytes_received": row.report.bytes_received,
            "uploaded": row.report.uploaded, "downloaded": row.report.downloaded,
            "packs_sent": row.report.packs_sent, "segments_sent": row.report.segments_sent,
        }));
    }
    println!(
        "1% changed: {} files, {:.2} MB LZ4-compressed; sent {:.2} MB = {sent_ratio:.2}x (aim <= 2x)",
        changed.len(),
        changed_compressed as f64 / 1e6,
        rows[2].report.bytes_sent as f64 / 1e6
    );
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target"));
    let report_dir = target.join("bench-report");
    std::fs::create_dir_all(&report_dir).unwrap();
    let summary = serde_json::json!({
        "files": paths.len(), "bytes": total_bytes, "scenarios": json,
        "changed_files": changed.len(), "changed_compressed_bytes": changed_compressed,
        "changed_sent_ratio": sent_ratio,
    });
    std::fs::write(
        report_dir.join("sync.json"),
        serde_json::to_string_pretty(&summary).unwrap(),
    )
    .unwrap();
    eprintln!(
        "bench sync: wrote {}",
        report_dir.join("sync.json").display()
    );
}
