//! Opening the DuckDB file: locked-down settings, and waiting out other processes' locks.
//!
//! DuckDB lets one process open a database file read-write, or several open it read-only,
//! never both (<https://duckdb.org/docs/stable/connect/concurrency>). So that a second process
//! (the `hybridstore analytics` CLI next to a running application) can read the file at all,
//! nobody keeps it open: the writer opens it for one write batch, readers for one query, and
//! whoever finds it locked retries with exponential backoff for up to the lock timeout.
//! Within one process, a mutex per file keeps two DuckDB instances off the same file.
//!
//! Retrying alone is not fair: a writer streaming batches reopens the file within
//! milliseconds of closing it, and a reader in another process only gets in if one of its
//! attempts lands in that gap, which on a loaded machine may never happen. So a reader first
//! announces itself by holding a shared lock on a sidecar file, `<database>.readers`, until
//! DuckDB has let it in; the writer checks that lock (a non-blocking exclusive `flock`,
//! released at once) before it opens the file and between the batches of a long hold, and
//! while a reader is announced it does not start another write. This is the converse of
//! SQLite's PENDING lock, which stops new readers so that a waiting writer is not starved
//! (<https://www.sqlite.org/lockingv3.html>): here the reader is the one that must not starve.
//! A reader that cannot create the sidecar (a read-only directory) falls back to retrying.

use std::collections::HashMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use backon::{BlockingRetryable, ExponentialBuilder};
use duckdb::{AccessMode, Config, Connection};
use hybridstore_core::{ErrorKind, Result};

pub(crate) use crate::errors::duck_error;

/// How a connection may touch the database.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    /// Writes (the sink's batches, migrations). Takes DuckDB's exclusive file lock.
    ReadWrite,
    /// Reports and ad-hoc SQL: DuckDB refuses every write on such a connection.
    ReadOnly,
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

/// The sidecar file readers hold a shared lock on while they wait for the database.
fn readers_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".readers");
    PathBuf::from(name)
}

/// Opens (creating if `create`) the readers' sidecar file; `None` if that fails.
fn open_readers_file(path: &Path, create: bool) -> Option<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .truncate(false)
        .open(readers_path(path))
        .or_else(|_| File::open(readers_path(path)))
        .ok()
}

/// Whether a reader in some process has announced itself on `file` (holds its shared lock).
fn reader_announced(file: &File) -> bool {
    match file.try_lock() {
        Ok(()) => {
            let _ = file.unlock();
            false
        }
        Err(TryLockError::WouldBlock) => true,
        // Locks unsupported on this file system: nobody can announce.
        Err(TryLockError::Error(_)) => false,
    }
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

    /// Whether a reader in another process is waiting for the file: the writer should close
    /// it (or not open it) until the reader is in. Cheap: an open, a lock attempt and a close.
    pub(crate) fn reader_waiting(&self) -> bool {
        open_readers_file(&self.path, false).is_some_and(|f| reader_announced(&f))
    }

    /// Waits (up to the lock timeout) until no reader is announced, then returns; after the
    /// timeout the writer goes ahead and DuckDB's own lock decides.
    fn wait_for_readers(&self) {
        let Some(file) = open_readers_file(&self.path, true) else {
            return;
        };
        // 0.5 ms doubling to 10 ms: a reader is announced only while DuckDB lets it in.
        let backoff = ExponentialBuilder::new()
            .with_min_delay(Duration::from_micros(500))
            .with_max_delay(Duration::from_millis(10))
            .without_max_times()
            .with_total_delay(Some(self.lock_timeout));
        let _ = (|| {
            if reader_announced(&file) {
                Err(())
            } else {
                Ok(())
            }
        })
        .retry(backoff)
        .call();
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
        match access {
            Access::ReadWrite => {
                self.wait_for_readers();
                self.open_retrying(access)
            }
            Access::ReadOnly => {
                // Announce this reader until DuckDB has let it in (the lock is released when
                // the file handle drops).
                let announcement =
                    open_readers_file(&self.path, true).filter(|f| f.lock_shared().is_ok());
                let connection = self.open_retrying(access);
                drop(announcement);
                connection
            }
        }
    }

    fn open_retrying(&self, access: Access) -> Result<Connection> {
        // 2 ms doubling to 20 ms: a writer holds the lock for a batch (tens of milliseconds)
        // or, under a saturating stream, until the next batch boundary after a reader
        // announced itself; a failed attempt costs one failed file lock.
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
