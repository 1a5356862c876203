//! SQLite backend: connection set-up and the SQLite side of the dialect.
//!
//! Tuned the way SQLite's users tune it (sqlx#459, the SQLite WAL documentation):
//! `journal_mode=WAL` so readers never block the writer, `synchronous=NORMAL` (in WAL mode a
//! commit survives a process crash; power loss can roll back the last commits, see
//! [`SqlStoreOptions::sqlite_synchronous_full`](crate::SqlStoreOptions)), a busy timeout, one
//! writer connection and a pool of read-only connections. With a single writer connection in
//! the process, our own writers queue in the pool instead of meeting `SQLITE_BUSY`; write
//! transactions start with `BEGIN IMMEDIATE` so a writer in another process makes us wait on
//! the busy timeout rather than fail a lock upgrade.

use hybridstore_core::{Key, Result};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Pool, Transaction};

use crate::engine::{Dialect, Engine};
use crate::error::{map_sqlx, open_error};
use crate::{SqlBackend, SqlStoreOptions};

/// The Sqlite dialect of the shared engine.
#[derive(Debug)]
pub(crate) struct SqliteDialect;

type Db = sqlx::Sqlite;

impl Dialect for SqliteDialect {
    type Db = Db;
    type KeyList = String;

    const BACKEND: SqlBackend = SqlBackend::Sqlite;

    /// `get_many` with verification: the key list is a JSON array of hex strings, unpacked by
    /// `json_each` + `unhex` (SQLite ≥ 3.41), so one prepared statement serves any list length.
    const SELECT_ENTRIES_IN_LIST: &'static str = "SELECT key, size, created, modified, checksum, content_type, dedup_hash, value \
         FROM kv_objects WHERE key IN (SELECT unhex(value) FROM json_each($1))";
    /// `get_many` without verification.
    const SELECT_VALUES_IN_LIST: &'static str =
        "SELECT key, value FROM kv_objects WHERE key IN (SELECT unhex(value) FROM json_each($1))";
    /// Batch deletes.
    const DELETE_IN_LIST: &'static str =
        "DELETE FROM kv_objects WHERE key IN (SELECT unhex(value) FROM json_each($1))";
    /// Documents by id: the ids' bytes cast back to TEXT (UTF-8), so the primary key
    /// (tenant, doc_id) answers each.
    const SELECT_DOCUMENTS_IN_LIST: &'static str = "SELECT doc_id, filename, size, content_hash, created_at, metadata FROM documents \
         WHERE tenant = $2 AND doc_id IN (SELECT CAST(unhex(value) AS TEXT) FROM json_each($1))";
    /// Number of keys and sum of value sizes.
    const COUNT_AND_SUM_SIZES: &'static str =
        "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM kv_objects";
    /// Bytes the database occupies on disk (pages in use or free).
    const STORED_BYTES: &'static str =
        "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()";

    /// The parameter for the `*_IN_LIST` statements: `["6b31","6b32",…]`.
    fn key_list_param(keys: &[Key]) -> String {
        let mut json =
            String::with_capacity(2 + keys.iter().map(|k| k.len() * 2 + 3).sum::<usize>());
        json.push('[');
        for (i, key) in keys.iter().enumerate() {
            if i > 0 {
                json.push(',');
            }
            json.push('"');
            json.push_str(&hex::encode(key.as_bytes()));
            json.push('"');
        }
        json.push(']');
        json
    }

    /// Starts a write transaction with `BEGIN IMMEDIATE`: it takes the write lock up front, so
    /// the transaction can never fail later on a read-to-write lock upgrade. The single-writer
    /// pool already serializes our own batches, so `serializable` needs nothing more.
    async fn begin_write(
        writer: &Pool<Db>,
        _serializable: bool,
    ) -> Result<Transaction<'static, Db>> {
        writer.begin_with("BEGIN IMMEDIATE").await.map_err(map_sqlx)
    }

    /// `VACUUM INTO $1` (<https://www.sqlite.org/lang_vacuum.html#vacuuminto>): one read
    /// transaction, so the copy is the database at one moment, and writers go on meanwhile
    /// (WAL mode).
    async fn copy_into(reader: &Pool<Db>, path: &str) -> Result<()> {
        sqlx::query("VACUUM INTO $1")
            .bind(path.to_string())
            .execute(reader)
            .await
            .map_err(map_sqlx)?;
        Ok(())
    }

    fn rows_affected(done: &sqlx::sqlite::SqliteQueryResult) -> u64 {
        done.rows_affected()
    }
}

// ---- Connection set-up -----------------------------------------------------------------

/// Opens (creating if needed) the database at `url`, runs the migrations and builds the pools.
/// `url` only names the database in errors.
pub(crate) async fn open(
    connect: SqliteConnectOptions,
    url: &str,
    options: &SqlStoreOptions,
) -> Result<Engine<SqliteDialect>> {
    let connect = connect
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(if options.sqlite_synchronous_full {
            SqliteSynchronous::Full
        } else {
            SqliteSynchronous::Normal
        })
        .busy_timeout(options.busy_timeout)
        .foreign_keys(true);
    // sqlx names in-memory databases `file:sqlx-in-memory-<n>` (sqlx-sqlite options/parse.rs).
    let in_memory = connect
        .get_filename()
        .to_string_lossy()
        .starts_with("file:sqlx-in-memory-")
        || url.contains("mode=memory");

    let writer = SqlitePoolOptions::new()
        .max_connections(1)
        .min_connections(1)
        // A local file's connection cannot go stale; the default ping before every acquire
        // costs a round trip to the connection's worker thread per call.
        .test_before_acquire(false)
        .acquire_timeout(options.acquire_timeout)
        // An in-memory database lives as long as a connection to it: keep the one we have.
        .idle_timeout(None)
        .max_lifetime(None)
        .connect_with(connect.clone())
        .await
        .map_err(|e| open_error(url, e))?;
    sqlx::migrate!("./migrations/sqlite")
        .run(&writer)
        .await
        .map_err(|e| open_error(url, e))?;

    // An in-memory database is private to its connection: the one connection serves reads too.
    let (reader, inline_reader) = if in_memory {
        (writer.clone(), None)
    } else {
        let inline = crate::inline_reads::InlineReader::open(
            connect.get_filename(),
            options.inline_readers,
            options.sqlite_mmap_bytes,
            options.verify_reads,
        )?;
        let reader = SqlitePoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(options.acquire_timeout)
            .test_before_acquire(false)
            .connect_with(connect.read_only(true))
            .await
            .map_err(|e| open_error(url, e))?;
        (reader, Some(std::sync::Arc::new(inline)))
    };
    Ok(Engine {
        reader,
        writer,
        verify_reads: options.verify_reads,
        inline_reader,
    })
}
