//! Inline point reads: the `get` fast path of a SQLite file store.
//!
//! sqlx-sqlite runs every query as a round trip to a connection's worker thread. Measured here
//! (2 cores), that hand-off costs 33–67 µs per query, while the `SELECT` itself takes 2–4 µs
//! on a plain rusqlite connection; a dedicated reader-thread pool fed by a queue was tried and
//! measured no better (each wake-up of a sleeping thread costs ~20 µs on this machine). So a
//! `get` runs the `SELECT` *inline*, on the calling task's thread, on one of a few read-only
//! rusqlite connections (same file, WAL: they see every committed write and never block the
//! writer), guarded by `try_lock`:
//!
//! - only values of at most [`INLINE_VALUE_MAX`] bytes are read inline (the statement checks
//!   `length(value)`, which SQLite answers from the record header without reading overflow
//!   pages), so the calling thread is held for microseconds, as a `std::sync::Mutex` would;
//! - a larger value, or all connections busy, falls back to the sqlx reader pool;
//! - the connections have no busy timeout: where SQLite would make a reader wait for a lock
//!   (`SQLITE_BUSY`, rare in WAL mode: a WAL recovery or an exclusive-mode connection), the
//!   read falls back to the sqlx pool, whose worker thread waits (up to
//!   `SqlStoreOptions::busy_timeout`) instead of the async worker that called `get`.
//!
//! Writes, scans, metadata, `get_many`, migrations and the operational tables stay on sqlx.
//! Both drivers link the same bundled `libsqlite3-sys`.

use std::path::Path;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use hybridstore_core::{Error, ErrorKind, Key, Result};
use rusqlite::{Connection, OpenFlags, OptionalExtension};

use crate::codec::{self, MetaRow};

/// Largest value read inline, in bytes (64 KiB: ~20 µs of copying at worst).
pub(crate) const INLINE_VALUE_MAX: i64 = 64 * 1024;

/// `value` is NULL when it is too large to read inline; `length(value)` tells the size.
const SELECT_SMALL_VALUE: &str = "SELECT length(value), \
     CASE WHEN length(value) <= ?2 THEN value END FROM kv_objects WHERE key = ?1";
const SELECT_SMALL_ENTRY: &str = "SELECT key, size, created, modified, checksum, \
     content_type, dedup_hash, CASE WHEN length(value) <= ?2 THEN value END \
     FROM kv_objects WHERE key = ?1";

/// What an inline read found.
pub(crate) enum InlineRead {
    /// The answer: the value, or `None` for an absent key.
    Done(Option<Bytes>),
    /// Not answered inline (value too large, or every connection busy): use the slow path.
    Fallback,
}

/// A few read-only rusqlite connections for inline point reads.
#[derive(Debug)]
pub(crate) struct InlineReader {
    /// `None` once [`close`](Self::close)d.
    connections: Vec<Mutex<Option<Connection>>>,
    verify: bool,
}

impl InlineReader {
    /// Opens `count` read-only connections to the database file at `path`.
    ///
    /// # Errors
    /// `Unavailable` if a connection cannot be opened.
    pub(crate) fn open(
        path: &Path,
        count: usize,
        mmap_bytes: u64,
        verify: bool,
    ) -> Result<InlineReader> {
        let connections = (0..count.max(1))
            .map(|_| open_reader(path, mmap_bytes).map(|c| Mutex::new(Some(c))))
            .collect::<Result<_>>()?;
        Ok(InlineReader {
            connections,
            verify,
        })
    }

    /// Reads `key` on the calling thread if a connection is free and the value is small.
    pub(crate) fn get(&self, key: &Key) -> Result<InlineRead> {
        for slot in &self.connections {
            if let Ok(guard) = slot.try_lock()
                && let Some(conn) = guard.as_ref()
            {
                return match read_small(conn, key, self.verify) {
                    Err(e) if e.1 => Ok(InlineRead::Fallback),
                    other => other.map_err(|e| e.0),
                };
            }
        }
        Ok(InlineRead::Fallback)
    }

    /// Closes every connection (waiting the microseconds a read in progress holds one);
    /// later reads fall back to the sqlx pool. With the pools closed too, the last
    /// connection to go folds SQLite's write-ahead log into the database file and removes
    /// it.
    pub(crate) fn close(&self) {
        for slot in &self.connections {
            slot.lock().unwrap_or_else(PoisonError::into_inner).take();
        }
    }
}

fn open_reader(path: &Path, mmap_bytes: u64) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)
        .map_err(|e| map_rusqlite(e).with_context("path", path.display()))?;
    // Never wait for a lock on the calling (async) thread: a busy database falls back.
    conn.busy_timeout(Duration::ZERO).map_err(map_rusqlite)?;
    // Shared OS page cache for every reader (see `SqlStoreOptions::sqlite_mmap_bytes`).
    conn.pragma_update(
        None,
        "mmap_size",
        i64::try_from(mmap_bytes).unwrap_or(i64::MAX),
    )
    .map_err(map_rusqlite)?;
    Ok(conn)
}

/// An inline read's error, and whether it was SQLite saying the database is busy (locked),
/// which the caller answers by falling back.
type InlineError = (Error, bool);

fn inline_err(error: rusqlite::Error) -> InlineError {
    let busy = matches!(
        error.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    );
    (map_rusqlite(error), busy)
}

fn read_small(
    conn: &Connection,
    key: &Key,
    verify: bool,
) -> std::result::Result<InlineRead, InlineError> {
    if !verify {
        let mut stmt = conn
            .prepare_cached(SELECT_SMALL_VALUE)
            .map_err(inline_err)?;
        let row: Option<(i64, Option<Vec<u8>>)> = stmt
            .query_row(rusqlite::params![key.as_bytes(), INLINE_VALUE_MAX], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .optional()
            .map_err(inline_err)?;
        return Ok(match row {
            None => InlineRead::Done(None),
            Some((_, Some(value))) => InlineRead::Done(Some(codec::bytes(value))),
            Some((_, None)) => InlineRead::Fallback,
        });
    }
    let mut stmt = conn
        .prepare_cached(SELECT_SMALL_ENTRY)
        .map_err(inline_err)?;
    let row = stmt
        .query_row(rusqlite::params![key.as_bytes(), INLINE_VALUE_MAX], |row| {
            Ok((
                MetaRow {
                    key: row.get(0)?,
                    size: row.get(1)?,
                    created: row.get(2)?,
                    modified: row.get(3)?,
                    checksum: row.get(4)?,
                    content_type: row.get(5)?,
                    dedup_hash: row.get(6)?,
                },
                row.get::<_, Option<Vec<u8>>>(7)?,
            ))
        })
        .optional()
        .map_err(inline_err)?;
    let Some((meta_row, value)) = row else {
        return Ok(InlineRead::Done(None));
    };
    let Some(value) = value else {
        return Ok(InlineRead::Fallback);
    };
    let (key, meta) = meta_row.into_parts().map_err(|e| (e, false))?;
    codec::check_value(&key, &meta, &value).map_err(|e| (e, false))?;
    Ok(InlineRead::Done(Some(codec::bytes(value))))
}

/// Maps rusqlite errors onto the kinds [`crate::error::map_sqlx`] gives the same SQLite
/// result codes.
fn map_rusqlite(error: rusqlite::Error) -> Error {
    let (kind, retryable) = match error.sqlite_error() {
        Some(failure) => crate::error::classify_sqlite(i64::from(failure.extended_code)),
        None => match error {
            rusqlite::Error::FromSqlConversionFailure(..)
            | rusqlite::Error::InvalidColumnType(..) => (ErrorKind::Corrupted, None),
            _ => (ErrorKind::Backend, None),
        },
    };
    let mapped = Error::new(kind, error.to_string()).with_source(error);
    match retryable {
        Some(retryable) => mapped.with_retryable(retryable),
        None => mapped,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Regression (issue 15, defect 6): the inline readers waited out SQLite's 5 s busy
    /// timeout on the calling (async) thread while another connection held the database
    /// locked, then failed. Now a locked database is answered at once by the fallback, which
    /// waits on sqlx's own thread. (A rollback-journal database makes the lock easy to hold:
    /// a WAL reader meets one only in rarer cases, WAL recovery or an exclusive-mode writer.)
    #[test]
    fn a_locked_database_falls_back_instead_of_waiting_on_the_caller() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kv.db");
        let setup = Connection::open(&path).unwrap();
        setup
            .execute_batch(
                "CREATE TABLE kv_objects (key BLOB PRIMARY KEY, value BLOB NOT NULL, \
                 size INTEGER, created INTEGER, modified INTEGER, checksum TEXT, \
                 content_type TEXT, dedup_hash BLOB);
                 INSERT INTO kv_objects VALUES (x'6b', x'76', 1, 0, 0, '', NULL, NULL);",
            )
            .unwrap();
        let reader = InlineReader::open(&path, 1, 0, false).unwrap();
        let key = Key::new("k").unwrap();
        assert!(matches!(
            reader.get(&key).unwrap(),
            InlineRead::Done(Some(_))
        ));

        setup.execute_batch("BEGIN EXCLUSIVE").unwrap();
        assert!(
            matches!(reader.get(&key).unwrap(), InlineRead::Fallback),
            "a busy database is left to the sqlx pool"
        );
        setup.execute_batch("COMMIT").unwrap();
        assert!(matches!(
            reader.get(&key).unwrap(),
            InlineRead::Done(Some(_))
        ));
    }
}
