//! The SQL engine behind [`SqlStore`](crate::SqlStore), written once, generic over a
//! [`Dialect`]: `sqlite.rs` and `postgres.rs` each implement it with their sqlx database type
//! and the few statements and helpers whose SQL differs (key lists, the batch transaction's
//! start, the size of the database). Everything here is plain SQL that both dialects accept:
//! `$n` placeholders (SQLite accepts them too), `ON CONFLICT … DO UPDATE` (SQLite ≥ 3.24,
//! PostgreSQL ≥ 9.5) and `RETURNING` (SQLite ≥ 3.35).
//!
//! [`SqlStore`](crate::SqlStore) holds an `Arc<dyn SqlEngine>`: one object-safe trait with
//! the store's operations, implemented once for `Engine<D>` whatever the dialect.
//!
//! All statements are `&'static str` or built from constant fragments: no identifier or value
//! ever comes from input; every value is a bound parameter.

use std::collections::HashMap;
use std::future::Future;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use futures::TryStreamExt;
use hybridstore_core::raw::{BatchPlan, Mutation};
use hybridstore_core::{
    Entry, Error, Key, MetaEntry, ObjectMeta, PutOptions, Result, Sha256Digest, StoreStats,
};
use sqlx::types::Json;
use sqlx::{AssertSqlSafe, ColumnIndex, Database, Decode, Encode, Executor, IntoArguments};
use sqlx::{Pool, Row, Transaction, Type};

use crate::SqlBackend;
use crate::codec::{self, MetaRow, SqlRange};
use crate::error::map_sqlx;
use crate::tables::{Document, Session, Setting};

/// What differs between SQL dialects, and nothing else: the sqlx database type, how a list of
/// keys is bound (a JSON array on SQLite, an array on PostgreSQL), the statements that use
/// it, how a write transaction begins, and how the database reports its size.
pub(crate) trait Dialect: Send + Sync + Sized + 'static {
    /// The sqlx database type.
    type Db: Database;
    /// The one parameter a list of keys is bound as.
    type KeyList: for<'q> Encode<'q, Self::Db> + Type<Self::Db> + Send + 'static;

    /// Which backend this is.
    const BACKEND: SqlBackend;
    /// Metadata and value of every key in the list bound as `$1`.
    const SELECT_ENTRIES_IN_LIST: &'static str;
    /// Key and value of every key in the list bound as `$1`.
    const SELECT_VALUES_IN_LIST: &'static str;
    /// Deletes every key in the list bound as `$1`.
    const DELETE_IN_LIST: &'static str;
    /// The `documents` rows of tenant `$2` whose `doc_id` (as UTF-8 bytes) is in the list
    /// bound as `$1`, in `document_row`'s columns.
    const SELECT_DOCUMENTS_IN_LIST: &'static str;
    /// Row count and the sum of `size`, as two BIGINTs.
    const COUNT_AND_SUM_SIZES: &'static str;
    /// Bytes the database occupies, as one BIGINT.
    const STORED_BYTES: &'static str;

    /// `keys` as the list parameter of the `*_IN_LIST` statements.
    fn key_list_param(keys: &[Key]) -> Self::KeyList;

    /// Writes a consistent copy of the whole database to the new file `path` (SQLite's
    /// `VACUUM INTO`); `Unsupported` where the database has no such statement.
    fn copy_into(reader: &Pool<Self::Db>, path: &str) -> impl Future<Output = Result<()>> + Send;

    /// Rows a statement changed.
    fn rows_affected(done: &<Self::Db as Database>::QueryResult) -> u64;

    /// A write transaction on `writer`; `serializable` when the batch has preconditions,
    /// which must hold against concurrent writers until it commits.
    fn begin_write(
        writer: &Pool<Self::Db>,
        serializable: bool,
    ) -> impl Future<Output = Result<Transaction<'static, Self::Db>>> + Send;
}

/// The key/value operations on `kv_objects`, object safe.
#[async_trait]
pub(crate) trait KvEngine: Send + Sync + std::fmt::Debug {
    fn backend(&self) -> SqlBackend;
    async fn get(&self, key: &Key) -> Result<Option<Bytes>>;
    async fn get_range(&self, key: &Key, range: std::ops::Range<u64>) -> Result<Option<Bytes>>;
    async fn head(&self, key: &Key) -> Result<Option<ObjectMeta>>;
    async fn put(&self, key: &Key, value: Bytes, options: &PutOptions) -> Result<ObjectMeta>;
    async fn delete(&self, key: &Key) -> Result<()>;
    async fn meta_page(&self, range: &SqlRange, limit: usize) -> Result<Vec<MetaEntry>>;
    async fn entries_between(&self, first: &Key, last: &Key) -> Result<Vec<Entry>>;
    async fn get_many(&self, keys: &[Key]) -> Result<Vec<Option<Bytes>>>;
    async fn write_batch(&self, plan: BatchPlan) -> Result<()>;
    async fn clear(&self) -> Result<u64>;
    async fn stats(&self) -> Result<StoreStats>;
    async fn keys_with_checksum(&self, checksum: &Sha256Digest, limit: usize) -> Result<Vec<Key>>;
    async fn copy_into(&self, path: &str) -> Result<()>;
    async fn close(&self);
    /// A read transaction, its snapshot taken.
    async fn snapshot(&self) -> Result<Box<dyn SnapshotEngine>>;
}

/// The operational tables: documents, sessions, settings.
#[async_trait]
pub(crate) trait TablesEngine: Send + Sync {
    // `tenant` is the rows' tenant: a tenant name, or "" for the rows of no tenant.
    async fn upsert_document(&self, tenant: &str, doc: &Document) -> Result<()>;
    async fn document(&self, tenant: &str, doc_id: &str) -> Result<Option<Document>>;
    async fn delete_document(&self, tenant: &str, doc_id: &str) -> Result<bool>;
    async fn documents_by_content_hash(
        &self,
        tenant: &str,
        content_hash: &str,
        limit: usize,
    ) -> Result<Vec<Document>>;
    async fn documents_by_filename_prefix(
        &self,
        tenant: &str,
        prefix: &str,
        after: Option<(&str, &str)>,
        limit: usize,
    ) -> Result<Vec<Document>>;
    async fn documents_page(
        &self,
        tenant: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Document>>;
    async fn count_documents(&self, tenant: &str) -> Result<u64>;
    /// The rows of the ids in `ids` (each a `doc_id`'s bytes), in any order.
    async fn documents_in(&self, tenant: &str, ids: &[Key]) -> Result<Vec<Document>>;

    async fn upsert_session(&self, tenant: &str, session: &Session) -> Result<()>;
    async fn session(
        &self,
        tenant: &str,
        session_id: &str,
        now: SystemTime,
    ) -> Result<Option<Session>>;
    async fn touch_session(
        &self,
        tenant: &str,
        session_id: &str,
        now: SystemTime,
        expires_at: SystemTime,
    ) -> Result<bool>;
    async fn delete_session(&self, tenant: &str, session_id: &str) -> Result<bool>;
    /// Every tenant's expired sessions.
    async fn delete_expired_sessions(&self, now: SystemTime) -> Result<u64>;
    /// Live sessions of `tenant`.
    async fn count_sessions(&self, tenant: &str, now: SystemTime) -> Result<u64>;
    /// Deletes every document and session row of `tenant` in one transaction; returns
    /// (documents, sessions) deleted.
    async fn delete_tenant_rows(&self, tenant: &str) -> Result<(u64, u64)>;

    async fn set_setting(
        &self,
        key: &str,
        value: &serde_json::Value,
        now: SystemTime,
    ) -> Result<()>;
    async fn setting(&self, key: &str) -> Result<Option<Setting>>;
    async fn delete_setting(&self, key: &str) -> Result<bool>;
    async fn all_settings(&self) -> Result<Vec<Setting>>;
}

/// Reads inside one read transaction (see [`SqlSnapshot`](crate::SqlSnapshot)).
#[async_trait]
pub(crate) trait SnapshotEngine: Send {
    async fn get(&mut self, key: &Key) -> Result<Option<Bytes>>;
    async fn key_count(&mut self) -> Result<u64>;
    async fn document(&mut self, doc_id: &str) -> Result<Option<Document>>;
    async fn count_documents(&mut self) -> Result<u64>;
    async fn finish(self: Box<Self>) -> Result<()>;
}

/// The store's operations on its database, object safe so [`SqlStore`](crate::SqlStore)
/// holds any dialect's engine the same way (`Arc<dyn SqlEngine>`).
pub(crate) trait SqlEngine: KvEngine + TablesEngine {}

impl<T: KvEngine + TablesEngine> SqlEngine for T {}

/// Rows per multi-row `INSERT` in a write batch: 8 parameters a row keeps one statement at
/// 512 parameters, far below SQLite's 32,766 and PostgreSQL's 65,535.
const INSERT_ROWS_PER_STATEMENT: usize = 64;
/// Metadata of one key: [`meta_row`]'s columns.
const META_BY_KEY: &str = "SELECT key, size, created, modified, checksum, content_type, \
     dedup_hash FROM kv_objects WHERE key = $1";
/// The value of one key, unchecked.
const VALUE_BY_KEY: &str = "SELECT value FROM kv_objects WHERE key = $1";
/// One `documents` row: `tables::document_row`'s columns.
const DOCUMENT_BY_ID: &str = "SELECT doc_id, filename, size, content_hash, created_at, metadata \
     FROM documents WHERE doc_id = $1 AND tenant = $2";
/// Rows of `documents`, as one BIGINT.
const COUNT_DOCUMENTS: &str = "SELECT COUNT(*) FROM documents WHERE tenant = $1";
/// Metadata and value of one key: [`entry_row`]'s columns.
const ENTRY_BY_KEY: &str = "SELECT key, size, created, modified, checksum, content_type, \
     dedup_hash, value FROM kv_objects WHERE key = $1";

/// The conflict clause of every `kv_objects` upsert: all columns but `created` are replaced,
/// so a key keeps its creation time across overwrites.
macro_rules! upsert_on_conflict {
    () => {
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value, size = excluded.size, \
         modified = excluded.modified, checksum = excluded.checksum, \
         content_type = excluded.content_type, dedup_hash = excluded.dedup_hash"
    };
}

/// The conflict clause of an upsert whose caller gave the creation time
/// (`PutOptions::created`): `created` is replaced too.
macro_rules! upsert_on_conflict_with_created {
    () => {
        concat!(upsert_on_conflict!(), ", created = excluded.created")
    };
}

/// Keys per `get_many` / batch delete statement.
pub(crate) const KEYS_PER_STATEMENT: usize = 512;

/// The connection pools of one store. On SQLite `writer` is a pool of exactly one connection
/// (SQLite allows one writer at a time) and `reader` a pool of read-only connections; on
/// PostgreSQL both are the same pool.
pub(crate) struct Engine<D: Dialect> {
    pub(crate) reader: Pool<D::Db>,
    pub(crate) writer: Pool<D::Db>,
    pub(crate) verify_reads: bool,
    /// The `get` fast path (SQLite files only; see `inline_reads`).
    pub(crate) inline_reader: Option<std::sync::Arc<crate::inline_reads::InlineReader>>,
}

impl<D: Dialect> std::fmt::Debug for Engine<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("backend", &D::BACKEND)
            .field("verify_reads", &self.verify_reads)
            .finish_non_exhaustive()
    }
}

fn meta_row<R: Row>(row: &R) -> std::result::Result<MetaRow, sqlx::Error>
where
    usize: ColumnIndex<R>,
    for<'r> Vec<u8>: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Option<Vec<u8>>: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Option<String>: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(MetaRow {
        key: row.try_get(0)?,
        size: row.try_get(1)?,
        created: row.try_get(2)?,
        modified: row.try_get(3)?,
        checksum: row.try_get(4)?,
        content_type: row.try_get(5)?,
        dedup_hash: row.try_get(6)?,
    })
}

/// The value of `key` through `exec` (the reader pool, or a snapshot's transaction),
/// re-hashed against its recorded SHA-256 when `verify`.
async fn value_by_key<'e, DB, E>(exec: E, key: &'e Key, verify: bool) -> Result<Option<Bytes>>
where
    DB: Database,
    E: Executor<'e, Database = DB>,
    <DB as Database>::Arguments: IntoArguments<DB>,
    usize: ColumnIndex<DB::Row>,
    for<'q> &'q [u8]: Encode<'q, DB> + Type<DB>,
    for<'r> Vec<u8>: Decode<'r, DB> + Type<DB>,
    for<'r> Option<Vec<u8>>: Decode<'r, DB> + Type<DB>,
    for<'r> String: Decode<'r, DB> + Type<DB>,
    for<'r> Option<String>: Decode<'r, DB> + Type<DB>,
    for<'r> i64: Decode<'r, DB> + Type<DB>,
{
    if verify {
        let row = sqlx::query(ENTRY_BY_KEY)
            .bind(key.as_bytes())
            .fetch_optional(exec)
            .await
            .map_err(map_sqlx)?;
        return row
            .map(|r| entry_row(&r, true).map(|e| e.value))
            .transpose();
    }
    let value: Option<Vec<u8>> = sqlx::query_scalar(VALUE_BY_KEY)
        .bind(key.as_bytes())
        .fetch_optional(exec)
        .await
        .map_err(map_sqlx)?;
    Ok(value.map(codec::bytes))
}

/// Decodes `META_COLUMNS, value` into an entry, re-hashing the value when asked to.
fn entry_row<R: Row>(row: &R, verify: bool) -> Result<Entry>
where
    usize: ColumnIndex<R>,
    for<'r> Vec<u8>: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Option<Vec<u8>>: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Option<String>: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
{
    let (key, meta) = meta_row(row).map_err(map_sqlx)?.into_parts()?;
    let value: Vec<u8> = row.try_get(7).map_err(map_sqlx)?;
    if verify {
        codec::check_value(&key, &meta, &value)?;
    }
    Ok(Entry {
        key,
        value: codec::bytes(value),
        meta,
    })
}

fn dedup_param(meta: &ObjectMeta) -> Option<Vec<u8>> {
    meta.dedup_hash.map(|h| h.0.to_vec())
}

/// Sizes are stored as signed 64-bit integers (the widest type both backends share).
fn size_param(size: u64) -> Result<i64> {
    i64::try_from(size).map_err(|_| Error::invalid_input(format!("size {size} exceeds i64")))
}

fn prev_power_of_two(n: usize) -> usize {
    debug_assert!(n > 0);
    1 << (usize::BITS - 1 - n.leading_zeros())
}

/// `INSERT … VALUES (…), (…) … ON CONFLICT … DO UPDATE` for `rows` rows of 8 parameters
/// (key, value, size, created, modified, checksum, content type, dedup hash): built only from
/// constant fragments and numbers. With `replace_created` an existing row takes the new
/// `created` (the caller gave it); otherwise it keeps its own.
fn multi_row_upsert(rows: usize, replace_created: bool) -> String {
    let mut sql = String::with_capacity(200 + rows * 48);
    sql.push_str(
        "INSERT INTO kv_objects \
         (key, value, size, created, modified, checksum, content_type, dedup_hash) VALUES ",
    );
    for row in 0..rows {
        let p = row * 8;
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&format!(
            "(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${})",
            p + 1,
            p + 2,
            p + 3,
            p + 4,
            p + 5,
            p + 6,
            p + 7,
            p + 8
        ));
    }
    sql.push_str(if replace_created {
        upsert_on_conflict_with_created!()
    } else {
        upsert_on_conflict!()
    });
    sql
}

// After the macro above, which both use.
mod kv;
mod snapshot;
mod tables;
