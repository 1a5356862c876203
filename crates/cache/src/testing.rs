//! Test helpers (feature `testing`): a private `redis-server` on a free loopback port.
//!
//! Each [`RedisServer`] runs its own process without persistence (`--save "" --appendonly
//! no`), so tests never share state with each other or with a Redis the machine runs, and can
//! kill and restart it. When `redis-server` is not installed the test is skipped with a loud
//! message, unless `CI=true`, where it fails.
#![allow(clippy::expect_used, clippy::print_stderr)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub use hybridstore_core::conformance::services_required;
use hybridstore_core::services::PortLease;

/// How long a started server may take to answer `PING`.
const READY_WITHIN: Duration = Duration::from_secs(10);

/// A `redis-server` process on 127.0.0.1, killed when dropped.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    /// Keeps other fixtures off the port while this server lives, across kill and restart.
    _lease: PortLease,
    dir: tempfile::TempDir,
    child: Mutex<Option<Child>>,
}

impl RedisServer {
    /// Starts a server on a free port. Returns `None` (after printing why) when
    /// `redis-server` is not installed outside CI.
    ///
    /// # Panics
    /// When `redis-server` is missing and `CI=true`, or the server does not answer `PING`
    /// within 10 s.
    pub fn start() -> Option<RedisServer> {
        if Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_err()
        {
            if services_required() {
                panic!("redis-server is not installed and CI=true (apt-get install redis-server)");
            }
            eprintln!(
                "SKIPPED: redis-server is not installed (apt-get install redis-server); \
                 run with CI=true to make this a failure"
            );
            return None;
        }
        // Ports are leased against other fixtures; a process that is not a fixture and
        // grabs the port between our probe and the server's bind makes the server exit: try
        // a few ports.
        for _ in 0..5 {
            let lease = PortLease::new();
            let server = RedisServer {
                port: lease.port(),
                _lease: lease,
                dir: tempfile::tempdir().expect("temporary directory"),
                child: Mutex::new(None),
            };
            if server.spawn() {
                return Some(server);
            }
        }
        panic!("redis-server did not start on any of 5 free ports");
    }

    /// `redis://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server with SIGKILL and waits for it to exit.
    pub fn kill(&self) {
        let mut child = self.child.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(mut c) = child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same port (empty: nothing was persisted).
    ///
    /// # Panics
    /// If it does not answer `PING` within 10 s.
    pub fn restart(&self) {
        self.kill();
        assert!(
            self.spawn(),
            "redis-server did not restart on port {}",
            self.port
        );
    }

    /// Spawns the process and waits until it answers `PING`; false if it exited or did not
    /// answer in time.
    fn spawn(&self) -> bool {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        *self.child.lock().unwrap_or_else(|p| p.into_inner()) = Some(child);
        let deadline = Instant::now() + READY_WITHIN;
        while Instant::now() < deadline {
            if ping(self.port) {
                return true;
            }
            let mut guard = self.child.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(c) = guard.as_mut()
                && matches!(c.try_wait(), Ok(Some(_)))
            {
                *guard = None;
                return false; // exited: the port was taken
            }
            drop(guard);
            std::thread::sleep(Duration::from_millis(10));
        }
        self.kill();
        false
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Whether a server on `port` answers `PING` with `+PONG`.
fn ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut reply = [0u8; 7];
    stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
}
