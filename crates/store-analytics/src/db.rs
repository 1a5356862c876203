//! Opening the DuckDB file: locked-down settings, and waiting out other processes' locks.
//!
//! DuckDB lets one process open a database file read-write, or several open it read-only,
//! never both (<https://duckdb.org/docs/stable/connect/concurrency>). So that a second process
//! (the `hybridstore analytics` CLI next to a running application) can read the file at all,
//! nobody keeps it open: the writer opens it for one write batch, readers for one query, and
//! whoever finds it locked retries with exponential backoff for up to the lock timeout.
//! Within one process, a mutex per file keeps two DuckDB instances off the same file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use backon::{BlockingRetryable, ExponentialBuilder};
use duckdb::{AccessMode, Config, Connection};
use hybridstore_core::{Error, ErrorKind, Result};

/// How a connection may touch the database.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    /// Writes (the sink's batches, migrations). Takes DuckDB's exclusive file lock.
    ReadWrite,
    /// Reports and ad-hoc SQL: DuckDB refuses every write on such a connection.
    ReadOnly,
}

/// A DuckDB error as a hybridstore error: a lock held by another process is `Unavailable`
/// (retryable), anything else `Backend`.
pub(crate) fn duck_error(e: duckdb::Error) -> Error {
    let text = e.to_string();
    if is_lock_conflict(&text) {
        return Error::new(
            ErrorKind::Unavailable,
            format!(
                "the analytics database is held by another process (DuckDB allows one \
                 read-write process per file): {text}"
            ),
        )
        .with_retryable(true);
    }
    Error::backend(text).with_source(e)
}

fn is_lock_conflict(message: &str) -> bool {
    message.contains("Conflicting lock") || message.contains("Could not set lock")
}

/// The per-file mutex of this process (keyed by the canonical path).
fn file_mutex(path: &Path) -> Arc<Mutex<()>> {
    static FILES: OnceLock<Mutex<HashMap<PathBuf, Arc<Mutex<()>>>>> = OnceLock::new();
    let key = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    FILES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .entry(key)
        .or_default()
        .clone()
}

/// A DuckDB database file opened on demand.
#[derive(Debug, Clone)]
pub(crate) struct DuckFile {
    path: PathBuf,
    lock_timeout: Duration,
    threads: Option<i64>,
    file_mutex: Arc<Mutex<()>>,
}

impl DuckFile {
    pub(crate) fn new(path: &Path, lock_timeout: Duration, threads: Option<i64>) -> DuckFile {
        DuckFile {
            path: path.to_path_buf(),
            lock_timeout,
            threads,
            file_mutex: file_mutex(path),
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    #[cfg(feature = "testing")]
    pub(crate) fn hold(&self) -> std::sync::MutexGuard<'_, ()> {
        self.file_mutex
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Opens the file, runs `work` on the connection, and closes it again (DuckDB checkpoints
    /// on close), holding this process's mutex for the file throughout.
    ///
    /// # Errors
    /// `Unavailable` if another process still holds the file after the lock timeout; `work`'s
    /// errors; DuckDB errors as `Backend`.
    pub(crate) fn with_connection<T>(
        &self,
        access: Access,
        work: impl FnOnce(&mut Connection) -> Result<T>,
    ) -> Result<T> {
        let _in_process = self
            .file_mutex
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut conn = self.open(access)?;
        let out = work(&mut conn)?;
        conn.close().map_err(|(_, e)| duck_error(e))?;
        Ok(out)
    }

    fn open(&self, access: Access) -> Result<Connection> {
        // 2 ms doubling to 20 ms: a writer holds the lock for a batch (tens of milliseconds)
        // or, under a saturating stream, up to a second, then leaves the file alone for 25 ms
        // (sink::READER_WINDOW); a failed attempt costs one failed file lock.
        let backoff = ExponentialBuilder::new()
            .with_min_delay(Duration::from_millis(2))
            .with_max_delay(Duration::from_millis(20))
            .with_jitter()
            .without_max_times()
            .with_total_delay(Some(self.lock_timeout));
        (|| self.open_once(access))
            .retry(backoff)
            .when(|e| e.kind() == ErrorKind::Unavailable)
            .call()
    }

    fn open_once(&self, access: Access) -> Result<Connection> {
        let mode = match access {
            Access::ReadWrite => AccessMode::ReadWrite,
            Access::ReadOnly => AccessMode::ReadOnly,
        };
        let config = locked_down(Config::default().access_mode(mode).map_err(duck_error)?)
            .and_then(|c| match self.threads {
                Some(n) => c.threads(n),
                None => Ok(c),
            })
            .map_err(duck_error)?;
        Connection::open_with_flags(&self.path, config)
            .map_err(|e| duck_error(e).with_context("path", self.path.display()))
    }
}

/// No file access beyond the database itself (no `read_csv`, `COPY`, `ATTACH`), no extension
/// loading or installing, and settings that SQL cannot change afterwards.
fn locked_down(config: Config) -> duckdb::Result<Config> {
    config
        .enable_external_access(false)?
        .enable_autoload_extension(false)?
        .with("autoinstall_known_extensions", "false")?
        .with("allow_community_extensions", "false")?
        .with("lock_configuration", "true")
}
