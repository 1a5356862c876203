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
    /// Row count and the sum of `size`, as two BIGINTs.
    const COUNT_AND_SUM_SIZES: &'static str;
    /// Bytes the database occupies, as one BIGINT.
    const STORED_BYTES: &'static str;

    /// `keys` as the list parameter of the `*_IN_LIST` statements.
    fn key_list_param(keys: &[Key]) -> Self::KeyList;

    /// Rows a statement changed.
    fn rows_affected(done: &<Self::Db as Database>::QueryResult) -> u64;

    /// A write transaction on `writer`; `serializable` when the batch has preconditions,
    /// which must hold against concurrent writers until it commits.
    fn begin_write(
        writer: &Pool<Self::Db>,
        serializable: bool,
    ) -> impl Future<Output = Result<Transaction<'static, Self::Db>>> + Send;
}

/// The store's operations on its database, object safe so [`SqlStore`](crate::SqlStore)
/// holds any dialect's engine the same way.
#[async_trait]
pub(crate) trait SqlEngine: Send + Sync + std::fmt::Debug {
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
    async fn close(&self);

    async fn upsert_document(&self, doc: &Document) -> Result<()>;
    async fn document(&self, doc_id: &str) -> Result<Option<Document>>;
    async fn delete_document(&self, doc_id: &str) -> Result<bool>;
    async fn documents_by_content_hash(
        &self,
        content_hash: &str,
        limit: usize,
    ) -> Result<Vec<Document>>;
    async fn documents_by_filename_prefix(
        &self,
        prefix: &str,
        after: Option<(&str, &str)>,
        limit: usize,
    ) -> Result<Vec<Document>>;
    async fn documents_page(&self, after: Option<&str>, limit: usize) -> Result<Vec<Document>>;
    async fn count_documents(&self) -> Result<u64>;

    async fn upsert_session(&self, session: &Session) -> Result<()>;
    async fn session(&self, session_id: &str, now: SystemTime) -> Result<Option<Session>>;
    async fn touch_session(
        &self,
        session_id: &str,
        now: SystemTime,
        expires_at: SystemTime,
    ) -> Result<bool>;
    async fn delete_session(&self, session_id: &str) -> Result<bool>;
    async fn delete_expired_sessions(&self, now: SystemTime) -> Result<u64>;

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

/// Rows per multi-row `INSERT` in a write batch: 7 parameters a row keeps one statement at
/// 448 parameters, far below SQLite's 32,766 and PostgreSQL's 65,535.
const INSERT_ROWS_PER_STATEMENT: usize = 64;
/// Metadata of one key: [`meta_row`]'s columns.
const META_BY_KEY: &str = "SELECT key, size, created, modified, checksum, content_type, \
     dedup_hash FROM kv_objects WHERE key = $1";
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

#[async_trait]
impl<D: Dialect> SqlEngine for Engine<D>
where
    for<'c> &'c mut <D::Db as Database>::Connection: Executor<'c, Database = D::Db>,
    <D::Db as Database>::Arguments: IntoArguments<D::Db>,
    usize: ColumnIndex<<D::Db as Database>::Row>,
    for<'q> &'q [u8]: Encode<'q, D::Db> + Type<D::Db>,
    for<'q> &'q str: Encode<'q, D::Db> + Type<D::Db>,
    for<'q> Vec<u8>: Encode<'q, D::Db> + Decode<'q, D::Db> + Type<D::Db>,
    for<'q> Option<Vec<u8>>: Encode<'q, D::Db> + Decode<'q, D::Db> + Type<D::Db>,
    for<'q> String: Encode<'q, D::Db> + Decode<'q, D::Db> + Type<D::Db>,
    for<'q> Option<String>: Encode<'q, D::Db> + Decode<'q, D::Db> + Type<D::Db>,
    for<'q> i64: Encode<'q, D::Db> + Decode<'q, D::Db> + Type<D::Db>,
    for<'q> i32: Encode<'q, D::Db> + Type<D::Db>,
    for<'q, 'a> Json<&'a serde_json::Value>: Encode<'q, D::Db> + Type<D::Db>,
    for<'q> Json<serde_json::Value>: Decode<'q, D::Db> + Type<D::Db>,
{
    fn backend(&self) -> SqlBackend {
        D::BACKEND
    }

    async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
    }

    async fn get(&self, key: &Key) -> Result<Option<Bytes>> {
        if let Some(reader) = &self.inline_reader
            && let crate::inline_reads::InlineRead::Done(value) = reader.get(key)?
        {
            return Ok(value);
        }
        if self.verify_reads {
            let row = sqlx::query(ENTRY_BY_KEY)
                .bind(key.as_bytes())
                .fetch_optional(&self.reader)
                .await
                .map_err(map_sqlx)?;
            return row
                .map(|r| entry_row(&r, true).map(|e| e.value))
                .transpose();
        }
        let value: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT value FROM kv_objects WHERE key = $1")
                .bind(key.as_bytes())
                .fetch_optional(&self.reader)
                .await
                .map_err(map_sqlx)?;
        Ok(value.map(codec::bytes))
    }

    /// `range` of the value of `key`, cut by the database (`substr` on a BLOB / `bytea`
    /// counts bytes, 1-based, in both dialects) so only the range travels.
    async fn get_range(&self, key: &Key, range: std::ops::Range<u64>) -> Result<Option<Bytes>> {
        // Values are at most MAX_VALUE_LEN (512 MiB) bytes, so valid offsets fit in i32, the
        // type PostgreSQL's substr takes.
        let (Ok(start), Ok(count)) = (
            i32::try_from(range.start.saturating_add(1)),
            i32::try_from(range.end.saturating_sub(range.start)),
        ) else {
            return Err(Error::invalid_input(format!(
                "byte range {}..{} is beyond any value this store holds",
                range.start, range.end
            )));
        };
        let row: Option<(i64, Option<Vec<u8>>)> = sqlx::query_as(
            "SELECT CAST(length(value) AS BIGINT), substr(value, $2, $3) \
             FROM kv_objects WHERE key = $1",
        )
        .bind(key.as_bytes())
        .bind(start)
        .bind(count)
        .fetch_optional(&self.reader)
        .await
        .map_err(map_sqlx)?;
        let Some((len, part)) = row else {
            return Ok(None);
        };
        hybridstore_core::raw::check_range(&range, u64::try_from(len).unwrap_or(0))?;
        Ok(Some(codec::bytes(part.unwrap_or_default())))
    }

    async fn head(&self, key: &Key) -> Result<Option<ObjectMeta>> {
        let row = sqlx::query(META_BY_KEY)
            .bind(key.as_bytes())
            .fetch_optional(&self.reader)
            .await
            .map_err(map_sqlx)?;
        match row {
            None => Ok(None),
            Some(row) => Ok(Some(meta_row(&row).map_err(map_sqlx)?.into_parts()?.1)),
        }
    }

    async fn put(&self, key: &Key, value: Bytes, options: &PutOptions) -> Result<ObjectMeta> {
        let mut meta = ObjectMeta::for_value(&value, options, None);
        let created: i64 = sqlx::query_scalar(concat!(
            "INSERT INTO kv_objects \
             (key, value, size, created, modified, checksum, content_type, dedup_hash) \
             VALUES ($1, $2, $3, $4, $4, $5, $6, $7)",
            upsert_on_conflict!(),
            " RETURNING created"
        ))
        .bind(key.as_bytes())
        .bind(value.as_ref())
        .bind(size_param(meta.size)?)
        .bind(codec::to_unix_nanos(meta.modified))
        .bind(meta.checksum.to_hex())
        .bind(meta.content_type.clone())
        .bind(dedup_param(&meta))
        .fetch_one(&self.writer)
        .await
        .map_err(map_sqlx)?;
        meta.created = codec::from_unix_nanos(created);
        Ok(meta)
    }

    async fn delete(&self, key: &Key) -> Result<()> {
        sqlx::query("DELETE FROM kv_objects WHERE key = $1")
            .bind(key.as_bytes())
            .execute(&self.writer)
            .await
            .map_err(map_sqlx)?;
        Ok(())
    }

    /// Keys and metadata in `range`, in key order, at most `limit`.
    async fn meta_page(&self, range: &SqlRange, limit: usize) -> Result<Vec<MetaEntry>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let query = match &range.end {
            Some(end) => sqlx::query(
                "SELECT key, size, created, modified, checksum, content_type, dedup_hash \
                 FROM kv_objects WHERE key >= $1 AND key < $2 ORDER BY key LIMIT $3",
            )
            .bind(range.start.clone())
            .bind(end.clone())
            .bind(limit),
            None => sqlx::query(
                "SELECT key, size, created, modified, checksum, content_type, dedup_hash \
                 FROM kv_objects WHERE key >= $1 ORDER BY key LIMIT $2",
            )
            .bind(range.start.clone())
            .bind(limit),
        };
        query
            .fetch(&self.reader)
            .map_err(map_sqlx)
            .and_then(|row| async move {
                let (key, meta) = meta_row(&row).map_err(map_sqlx)?.into_parts()?;
                Ok(MetaEntry { key, meta })
            })
            .try_collect()
            .await
    }

    /// Entries with values for keys in `[first, last]`, in key order.
    async fn entries_between(&self, first: &Key, last: &Key) -> Result<Vec<Entry>> {
        let rows = sqlx::query(
            "SELECT key, size, created, modified, checksum, content_type, dedup_hash, value \
             FROM kv_objects WHERE key >= $1 AND key <= $2 ORDER BY key",
        )
        .bind(first.as_bytes())
        .bind(last.as_bytes())
        .fetch_all(&self.reader)
        .await
        .map_err(map_sqlx)?;
        rows.iter()
            .map(|row| entry_row(row, self.verify_reads))
            .collect()
    }

    /// Values of up to [`KEYS_PER_STATEMENT`] keys in one statement, in the order asked.
    async fn get_many(&self, keys: &[Key]) -> Result<Vec<Option<Bytes>>> {
        debug_assert!(keys.len() <= KEYS_PER_STATEMENT);
        let mut found: HashMap<Vec<u8>, Bytes> = HashMap::with_capacity(keys.len());
        if self.verify_reads {
            let rows = sqlx::query(D::SELECT_ENTRIES_IN_LIST)
                .bind(D::key_list_param(keys))
                .fetch_all(&self.reader)
                .await
                .map_err(map_sqlx)?;
            for row in &rows {
                let entry = entry_row(row, true)?;
                found.insert(entry.key.as_bytes().to_vec(), entry.value);
            }
        } else {
            let rows = sqlx::query(D::SELECT_VALUES_IN_LIST)
                .bind(D::key_list_param(keys))
                .fetch_all(&self.reader)
                .await
                .map_err(map_sqlx)?;
            for row in &rows {
                let key: Vec<u8> = row.try_get(0).map_err(map_sqlx)?;
                let value: Vec<u8> = row.try_get(1).map_err(map_sqlx)?;
                found.insert(key, codec::bytes(value));
            }
        }
        Ok(keys
            .iter()
            .map(|k| found.get(k.as_bytes()).cloned())
            .collect())
    }

    /// Applies `plan` in one transaction: checks, then deletes, then puts.
    async fn write_batch(&self, plan: BatchPlan) -> Result<()> {
        let mut tx = D::begin_write(&self.writer, !plan.checks.is_empty()).await?;
        for (key, expect) in &plan.checks {
            let row = sqlx::query(META_BY_KEY)
                .bind(key.as_bytes())
                .fetch_optional(&mut *tx)
                .await
                .map_err(map_sqlx)?;
            let current = match row {
                None => None,
                Some(row) => Some(meta_row(&row).map_err(map_sqlx)?.into_parts()?.1),
            };
            if !expect.holds(current.as_ref()) {
                return Err(hybridstore_core::raw::conflict(key, expect));
            }
        }

        let now = SystemTime::now();
        let mut deletes = Vec::new();
        let mut puts = Vec::new();
        for (key, mutation) in plan.writes {
            match mutation {
                Mutation::Delete => deletes.push(key),
                Mutation::Put { value, options } => {
                    let meta = ObjectMeta::for_value(&value, &options, Some(now));
                    puts.push((key, value, meta));
                }
            }
        }
        for chunk in deletes.chunks(KEYS_PER_STATEMENT) {
            sqlx::query(D::DELETE_IN_LIST)
                .bind(D::key_list_param(chunk))
                .execute(&mut *tx)
                .await
                .map_err(map_sqlx)?;
        }
        let mut rest = puts.as_slice();
        while !rest.is_empty() {
            // Statement sizes are powers of two so at most log2(64) + 1 distinct statements
            // enter each connection's statement cache.
            let rows = prev_power_of_two(rest.len().min(INSERT_ROWS_PER_STATEMENT));
            let (chunk, tail) = rest.split_at(rows);
            let mut query = sqlx::query(AssertSqlSafe(multi_row_upsert(rows)));
            for (key, value, meta) in chunk {
                query = query
                    .bind(key.as_bytes())
                    .bind(value.as_ref())
                    .bind(size_param(meta.size)?)
                    .bind(codec::to_unix_nanos(now))
                    .bind(meta.checksum.to_hex())
                    .bind(meta.content_type.clone())
                    .bind(dedup_param(meta));
            }
            query.execute(&mut *tx).await.map_err(map_sqlx)?;
            rest = tail;
        }
        tx.commit().await.map_err(map_sqlx)
    }

    async fn clear(&self) -> Result<u64> {
        let done = sqlx::query("DELETE FROM kv_objects")
            .execute(&self.writer)
            .await
            .map_err(map_sqlx)?;
        Ok(D::rows_affected(&done))
    }

    async fn stats(&self) -> Result<StoreStats> {
        let (keys, logical_bytes): (i64, i64) = sqlx::query_as(D::COUNT_AND_SUM_SIZES)
            .fetch_one(&self.reader)
            .await
            .map_err(map_sqlx)?;
        let stored: i64 = sqlx::query_scalar(D::STORED_BYTES)
            .fetch_one(&self.reader)
            .await
            .map_err(map_sqlx)?;
        Ok(StoreStats {
            keys: u64::try_from(keys).unwrap_or(0),
            logical_bytes: u64::try_from(logical_bytes).unwrap_or(0),
            stored_bytes: u64::try_from(stored).ok(),
            ..StoreStats::default()
        })
    }

    /// Keys whose value has this SHA-256 checksum (duplicates of one content), in key order.
    async fn keys_with_checksum(&self, checksum: &Sha256Digest, limit: usize) -> Result<Vec<Key>> {
        let keys: Vec<Vec<u8>> = sqlx::query_scalar(
            "SELECT key FROM kv_objects WHERE checksum = $1 ORDER BY key LIMIT $2",
        )
        .bind(checksum.to_hex())
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.reader)
        .await
        .map_err(map_sqlx)?;
        keys.into_iter()
            .map(|k| Key::new(k).map_err(|e| Error::corrupted(e.message().to_string())))
            .collect()
    }

    // ---- documents -------------------------------------------------------------------

    async fn upsert_document(&self, doc: &Document) -> Result<()> {
        sqlx::query(
            "INSERT INTO documents (doc_id, filename, size, content_hash, created_at, metadata) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (doc_id) DO UPDATE SET filename = excluded.filename, \
             size = excluded.size, content_hash = excluded.content_hash, \
             metadata = excluded.metadata",
        )
        .bind(doc.doc_id.as_str())
        .bind(doc.filename.as_str())
        .bind(size_param(doc.size)?)
        .bind(doc.content_hash.as_str())
        .bind(codec::to_unix_millis(doc.created_at))
        .bind(Json(&doc.metadata))
        .execute(&self.writer)
        .await
        .map_err(map_sqlx)?;
        Ok(())
    }

    async fn document(&self, doc_id: &str) -> Result<Option<Document>> {
        let row = sqlx::query(
            "SELECT doc_id, filename, size, content_hash, created_at, metadata \
             FROM documents WHERE doc_id = $1",
        )
        .bind(doc_id)
        .fetch_optional(&self.reader)
        .await
        .map_err(map_sqlx)?;
        row.map(|r| document_row(&r)).transpose()
    }

    async fn delete_document(&self, doc_id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM documents WHERE doc_id = $1")
            .bind(doc_id)
            .execute(&self.writer)
            .await
            .map_err(map_sqlx)?;
        Ok(D::rows_affected(&done) > 0)
    }

    async fn documents_by_content_hash(
        &self,
        content_hash: &str,
        limit: usize,
    ) -> Result<Vec<Document>> {
        let rows = sqlx::query(
            "SELECT doc_id, filename, size, content_hash, created_at, metadata \
             FROM documents WHERE content_hash = $1 ORDER BY doc_id LIMIT $2",
        )
        .bind(content_hash)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.reader)
        .await
        .map_err(map_sqlx)?;
        rows.iter().map(document_row).collect()
    }

    /// Documents whose filename starts with `prefix`, ordered by (filename, doc_id), after
    /// the position `after` (keyset paging).
    async fn documents_by_filename_prefix(
        &self,
        prefix: &str,
        after: Option<(&str, &str)>,
        limit: usize,
    ) -> Result<Vec<Document>> {
        let (after_name, after_id) = after.unwrap_or(("", ""));
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        // A prefix range `[prefix, successor)` instead of LIKE: no wildcard escaping, and it
        // uses the (filename, doc_id) index on both backends (bytewise "C" collation).
        let upper = crate::tables::string_prefix_successor(prefix);
        let rows = sqlx::query(
            "SELECT doc_id, filename, size, content_hash, created_at, metadata FROM documents \
             WHERE filename >= $1 AND ($2 IS NULL OR filename < $2) \
             AND (filename > $3 OR (filename = $3 AND doc_id > $4)) \
             ORDER BY filename, doc_id LIMIT $5",
        )
        .bind(prefix)
        .bind(upper)
        .bind(after_name)
        .bind(after_id)
        .bind(limit)
        .fetch_all(&self.reader)
        .await
        .map_err(map_sqlx)?;
        rows.iter().map(document_row).collect()
    }

    /// All documents ordered by `doc_id`, after `after` (keyset paging).
    async fn documents_page(&self, after: Option<&str>, limit: usize) -> Result<Vec<Document>> {
        let rows = sqlx::query(
            "SELECT doc_id, filename, size, content_hash, created_at, metadata FROM documents \
             WHERE doc_id > $1 ORDER BY doc_id LIMIT $2",
        )
        .bind(after.unwrap_or(""))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.reader)
        .await
        .map_err(map_sqlx)?;
        rows.iter().map(document_row).collect()
    }

    async fn count_documents(&self) -> Result<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM documents")
            .fetch_one(&self.reader)
            .await
            .map_err(map_sqlx)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    // ---- sessions --------------------------------------------------------------------

    async fn upsert_session(&self, session: &Session) -> Result<()> {
        sqlx::query(
            "INSERT INTO sessions (session_id, data, created_at, last_accessed, expires_at) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (session_id) DO UPDATE SET data = excluded.data, \
             last_accessed = excluded.last_accessed, expires_at = excluded.expires_at",
        )
        .bind(session.session_id.as_str())
        .bind(Json(&session.data))
        .bind(codec::to_unix_millis(session.created_at))
        .bind(codec::to_unix_millis(session.last_accessed))
        .bind(codec::to_unix_millis(session.expires_at))
        .execute(&self.writer)
        .await
        .map_err(map_sqlx)?;
        Ok(())
    }

    /// The session if it exists and has not expired at `now`.
    async fn session(&self, session_id: &str, now: SystemTime) -> Result<Option<Session>> {
        let row = sqlx::query(
            "SELECT session_id, data, created_at, last_accessed, expires_at FROM sessions \
             WHERE session_id = $1 AND expires_at > $2",
        )
        .bind(session_id)
        .bind(codec::to_unix_millis(now))
        .fetch_optional(&self.reader)
        .await
        .map_err(map_sqlx)?;
        row.map(|r| session_row(&r)).transpose()
    }

    /// Sets `last_accessed = now` and `expires_at` of a live session; false if there is none.
    async fn touch_session(
        &self,
        session_id: &str,
        now: SystemTime,
        expires_at: SystemTime,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE sessions SET last_accessed = $2, expires_at = $3 \
             WHERE session_id = $1 AND expires_at > $2",
        )
        .bind(session_id)
        .bind(codec::to_unix_millis(now))
        .bind(codec::to_unix_millis(expires_at))
        .execute(&self.writer)
        .await
        .map_err(map_sqlx)?;
        Ok(D::rows_affected(&done) > 0)
    }

    async fn delete_session(&self, session_id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM sessions WHERE session_id = $1")
            .bind(session_id)
            .execute(&self.writer)
            .await
            .map_err(map_sqlx)?;
        Ok(D::rows_affected(&done) > 0)
    }

    async fn delete_expired_sessions(&self, now: SystemTime) -> Result<u64> {
        let done = sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
            .bind(codec::to_unix_millis(now))
            .execute(&self.writer)
            .await
            .map_err(map_sqlx)?;
        Ok(D::rows_affected(&done))
    }

    // ---- settings --------------------------------------------------------------------

    async fn set_setting(
        &self,
        key: &str,
        value: &serde_json::Value,
        now: SystemTime,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO settings (key, value, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value, \
             updated_at = excluded.updated_at",
        )
        .bind(key)
        .bind(Json(value))
        .bind(codec::to_unix_millis(now))
        .execute(&self.writer)
        .await
        .map_err(map_sqlx)?;
        Ok(())
    }

    async fn setting(&self, key: &str) -> Result<Option<Setting>> {
        let row = sqlx::query("SELECT key, value, updated_at FROM settings WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.reader)
            .await
            .map_err(map_sqlx)?;
        row.map(|r| setting_row(&r)).transpose()
    }

    async fn delete_setting(&self, key: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM settings WHERE key = $1")
            .bind(key)
            .execute(&self.writer)
            .await
            .map_err(map_sqlx)?;
        Ok(D::rows_affected(&done) > 0)
    }

    async fn all_settings(&self) -> Result<Vec<Setting>> {
        let rows = sqlx::query("SELECT key, value, updated_at FROM settings ORDER BY key")
            .fetch_all(&self.reader)
            .await
            .map_err(map_sqlx)?;
        rows.iter().map(setting_row).collect()
    }
}

fn document_row<R: Row>(row: &R) -> Result<Document>
where
    usize: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Json<serde_json::Value>: Decode<'r, R::Database> + Type<R::Database>,
{
    let size: i64 = row.try_get(2).map_err(map_sqlx)?;
    let created_at: i64 = row.try_get(4).map_err(map_sqlx)?;
    let metadata: Json<serde_json::Value> = row.try_get(5).map_err(map_sqlx)?;
    Ok(Document {
        doc_id: row.try_get(0).map_err(map_sqlx)?,
        filename: row.try_get(1).map_err(map_sqlx)?,
        size: u64::try_from(size)
            .map_err(|_| Error::corrupted(format!("documents.size is negative: {size}")))?,
        content_hash: row.try_get(3).map_err(map_sqlx)?,
        created_at: codec::from_unix_millis(created_at),
        metadata: metadata.0,
    })
}

fn session_row<R: Row>(row: &R) -> Result<Session>
where
    usize: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Json<serde_json::Value>: Decode<'r, R::Database> + Type<R::Database>,
{
    let data: Json<serde_json::Value> = row.try_get(1).map_err(map_sqlx)?;
    let created_at: i64 = row.try_get(2).map_err(map_sqlx)?;
    let last_accessed: i64 = row.try_get(3).map_err(map_sqlx)?;
    let expires_at: i64 = row.try_get(4).map_err(map_sqlx)?;
    Ok(Session {
        session_id: row.try_get(0).map_err(map_sqlx)?,
        data: data.0,
        created_at: codec::from_unix_millis(created_at),
        last_accessed: codec::from_unix_millis(last_accessed),
        expires_at: codec::from_unix_millis(expires_at),
    })
}

fn setting_row<R: Row>(row: &R) -> Result<Setting>
where
    usize: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Json<serde_json::Value>: Decode<'r, R::Database> + Type<R::Database>,
{
    let value: Json<serde_json::Value> = row.try_get(1).map_err(map_sqlx)?;
    let updated_at: i64 = row.try_get(2).map_err(map_sqlx)?;
    Ok(Setting {
        key: row.try_get(0).map_err(map_sqlx)?,
        value: value.0,
        updated_at: codec::from_unix_millis(updated_at),
    })
}

/// Sizes are stored as signed 64-bit integers (the widest type both backends share).
fn size_param(size: u64) -> Result<i64> {
    i64::try_from(size).map_err(|_| Error::invalid_input(format!("size {size} exceeds i64")))
}

fn prev_power_of_two(n: usize) -> usize {
    debug_assert!(n > 0);
    1 << (usize::BITS - 1 - n.leading_zeros())
}

/// `INSERT … VALUES (…), (…) … ON CONFLICT … DO UPDATE` for `rows` rows of 7 parameters:
/// built only from constant fragments and numbers.
fn multi_row_upsert(rows: usize) -> String {
    let mut sql = String::with_capacity(200 + rows * 40);
    sql.push_str(
        "INSERT INTO kv_objects \
         (key, value, size, created, modified, checksum, content_type, dedup_hash) VALUES ",
    );
    for row in 0..rows {
        let p = row * 7;
        if row > 0 {
            sql.push_str(", ");
        }
        // created and modified both take the batch time ($p+4); an existing row keeps its
        // created (the DO UPDATE below does not set it).
        sql.push_str(&format!(
            "(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${})",
            p + 1,
            p + 2,
            p + 3,
            p + 4,
            p + 4,
            p + 5,
            p + 6,
            p + 7
        ));
    }
    sql.push_str(upsert_on_conflict!());
    sql
}
