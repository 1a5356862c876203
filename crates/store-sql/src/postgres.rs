//! PostgreSQL backend (feature `postgres`): connection set-up and the PostgreSQL side of the
//! dialect. One pool serves reads and writes; PostgreSQL's MVCC lets writers and readers run
//! concurrently.

use std::str::FromStr;

use hybridstore_core::{Error, Key, Result};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Pool, Transaction};

use crate::engine::{Dialect, Engine};
use crate::error::{map_sqlx, open_error};
use crate::{SqlBackend, SqlStoreOptions};

/// The Postgres dialect of the shared engine.
#[derive(Debug)]
pub(crate) struct PostgresDialect;

type Db = sqlx::Postgres;

impl Dialect for PostgresDialect {
    type Db = Db;
    type KeyList = Vec<Vec<u8>>;

    const BACKEND: SqlBackend = SqlBackend::Postgres;

    /// `get_many` with verification: the key list is one `bytea[]` parameter.
    const SELECT_ENTRIES_IN_LIST: &'static str = "SELECT key, size, created, modified, checksum, content_type, dedup_hash, value \
         FROM kv_objects WHERE key = ANY($1)";
    /// `get_many` without verification.
    const SELECT_VALUES_IN_LIST: &'static str =
        "SELECT key, value FROM kv_objects WHERE key = ANY($1)";
    /// Batch deletes.
    const DELETE_IN_LIST: &'static str = "DELETE FROM kv_objects WHERE key = ANY($1)";
    /// Documents by id: the ids' bytes decoded as UTF-8, so the primary key (tenant, doc_id)
    /// answers each.
    const SELECT_DOCUMENTS_IN_LIST: &'static str = "SELECT doc_id, filename, size, content_hash, created_at, metadata FROM documents \
         WHERE tenant = $2 AND doc_id = ANY(SELECT convert_from(id, 'UTF8') FROM unnest($1) AS id)";
    /// Number of keys and sum of value sizes (`SUM(bigint)` is NUMERIC, hence the cast).
    const COUNT_AND_SUM_SIZES: &'static str =
        "SELECT COUNT(*), COALESCE(SUM(size), 0)::BIGINT FROM kv_objects";
    /// Bytes of the table with its indexes and TOAST data.
    const STORED_BYTES: &'static str = "SELECT pg_total_relation_size('kv_objects')";

    /// The parameter for the `*_IN_LIST` statements.
    fn key_list_param(keys: &[Key]) -> Vec<Vec<u8>> {
        keys.iter().map(|k| k.as_bytes().to_vec()).collect()
    }

    /// Starts a write transaction. A batch with preconditions (`serializable`) first takes
    /// `SHARE ROW EXCLUSIVE` on `kv_objects`: the lock conflicts with every other writer's
    /// `ROW EXCLUSIVE` and with itself, but not with readers, so between the checks and the
    /// commit no other write can change a checked key (including creating a key checked as
    /// absent, which row locks cannot cover). Batches without checks take only row locks.
    /// PostgreSQL has no file copy of a database from a client; a logical export
    /// (`pg_dump`) is the way, which this store does not run.
    async fn copy_into(_reader: &Pool<Db>, _path: &str) -> Result<()> {
        Err(Error::new(
            hybridstore_core::ErrorKind::Unsupported,
            "a file copy of a PostgreSQL database is not supported; back it up with pg_dump",
        ))
    }

    async fn begin_write(
        writer: &Pool<Db>,
        serializable: bool,
    ) -> Result<Transaction<'static, Db>> {
        let mut tx = writer.begin().await.map_err(map_sqlx)?;
        if serializable {
            sqlx::query("LOCK TABLE kv_objects IN SHARE ROW EXCLUSIVE MODE")
                .execute(&mut *tx)
                .await
                .map_err(map_sqlx)?;
        }
        Ok(tx)
    }

    fn rows_affected(done: &sqlx::postgres::PgQueryResult) -> u64 {
        done.rows_affected()
    }
}

// ---- Connection set-up -----------------------------------------------------------------

/// Connects to the database at `url`, runs the migrations and builds the pool.
pub(crate) async fn open(url: &str, options: &SqlStoreOptions) -> Result<Engine<PostgresDialect>> {
    let connect = PgConnectOptions::from_str(url).map_err(|e| open_error(url, e))?;
    let pool = PgPoolOptions::new()
        .max_connections(options.max_connections.max(1))
        .acquire_timeout(options.acquire_timeout)
        .connect_with(connect)
        .await
        .map_err(|e| open_error(url, e))?;
    sqlx::migrate!("./migrations/postgres")
        .run(&pool)
        .await
        .map_err(|e| open_error(url, e))?;
    Ok(Engine {
        reader: pool.clone(),
        writer: pool,
        verify_reads: options.verify_reads,
        inline_reader: None,
    })
}
