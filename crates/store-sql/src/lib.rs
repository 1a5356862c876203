//! `SqlStore`: a [`KvStore`] on SQLite (the embedded default) or PostgreSQL (feature
//! `postgres`), chosen by URL, plus typed operational tables on the same database:
//! [`Documents`], [`Sessions`] (with expiry) and [`Settings`].
//!
//! **Schema.** Created and upgraded by sqlx migrations (`migrations/sqlite`,
//! `migrations/postgres`, one directory per dialect, kept in step). The key/value table
//! `kv_objects` carries each value's metadata in columns beside it: `key`, `size`,
//! `created`, `modified` (Unix nanoseconds), `checksum` (SHA-256 hex, indexed), `content_type`,
//! `dedup_hash` (indexed). Keys compare bytewise on both backends, so scans come back in
//! [`Key`] order.
//!
//! **Transactions.** Every single-key call is one autocommit statement; [`KvStore::write_batch`]
//! is one transaction (checks, deletes, multi-row upserts), so it is all or nothing, also
//! across a crash. On SQLite all writes go through one connection (`BEGIN IMMEDIATE` for
//! batches) and reads through a pool of read-only connections in WAL mode, so readers never
//! wait for writers and concurrent writers queue instead of failing with `SQLITE_BUSY`. On
//! PostgreSQL, a batch with preconditions locks out other writers between its checks and its
//! commit (see `postgres::begin_write`).
//!
//! **Reads.** sqlx-sqlite answers every query through a round trip to a connection's worker
//! thread, which costs far more than a point `SELECT` itself (measured here: 33–67 µs against
//! 2–4 µs). On SQLite files a `get` of a value up to 64 KiB therefore runs its `SELECT`
//! inline on the calling thread, on one of a few read-only rusqlite connections; larger
//! values and everything else go through sqlx (see `inline_reads`). `get_many` is one sqlx
//! query for up to 512 keys.
//!
//! **Safety.** Every statement is a constant string (or built from constant fragments) and
//! every value a bound parameter; no identifier or value is ever spliced from input.
//!
//! **Durability.** SQLite runs with `synchronous=NORMAL` by default: an acknowledged write
//! survives a crash of the process (verified by a `kill -9` test), but power loss may roll
//! back the last commits. Set [`SqlStoreOptions::sqlite_synchronous_full`] for power-loss
//! durability at the price of one `fsync` per commit.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use hybridstore_core::{Key, KvStore};
//! use hybridstore_sql::SqlStore;
//! let dir = tempfile::tempdir().unwrap();
//! let store = SqlStore::open_sqlite_file(dir.path().join("kv.db"), Default::default()).await?;
//! store.put(&Key::new("a/b.txt")?, "hello".into()).await?;
//! assert_eq!(store.get(&Key::new("a/b.txt")?).await?.as_deref(), Some(&b"hello"[..]));
//! store.settings().set("theme", &serde_json::json!("dark")).await?;
//! # Ok::<(), hybridstore_core::Error>(())
//! # }).unwrap();
//! ```
//!
//! # Cargo features
//!
//! - `postgres`: PostgreSQL as a second backend, chosen by a `postgres://` URL. Off by
//!   default.
//! - `testing` (implies `postgres`): `testing::PostgresTestDatabase`, a database of its own
//!   per test.

mod codec;
mod engine;
mod error;
mod inline_reads;
#[cfg(feature = "postgres")]
mod postgres;
mod sqlite;
mod tables;
#[cfg(feature = "testing")]
pub mod testing;

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_stream::try_stream;
use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use hybridstore_core::raw::{WriteOrder, run_to_completion};
use hybridstore_core::{
    Capabilities, EntryStream, Error, Key, KeyRange, KvStore, MAX_KEY_LEN, MetaEntry, MetaStream,
    ObjectMeta, PutOptions, Result, Sha256Digest, StoreStats, TenantId, WriteBatch,
};

use crate::codec::SqlRange;
use crate::engine::SqlEngine;
pub use crate::tables::{
    Document, Documents, MAX_FILENAME_LEN, MAX_ID_LEN, MAX_IDS_PER_QUERY, MAX_JSON_LEN, MAX_PAGE,
    Session, Sessions, Setting, Settings,
};

/// Largest value accepted, in bytes (512 MiB). SQLite's compiled-in `SQLITE_MAX_LENGTH` is
/// 1,000,000,000 bytes and PostgreSQL's field limit 1 GiB; sqlx holds a copy of a value while
/// binding it, so we stay well below both.
pub const MAX_VALUE_LEN: u64 = 512 * 1024 * 1024;

/// Rows per metadata page of a scan.
const META_PAGE: usize = 1000;
/// Bytes of values fetched per query during a scan (at least one row), bounding its memory.
const SCAN_GROUP_BYTES: u64 = 8 * 1024 * 1024;

/// Options of a [`SqlStore`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SqlStoreOptions {
    /// Connections in the read pool (SQLite) or the pool (PostgreSQL). Default: twice the
    /// available parallelism, at least 4.
    pub max_connections: u32,
    /// How long SQLite waits for another process's lock before `Unavailable` (default 5 s,
    /// sqlx's default).
    pub busy_timeout: Duration,
    /// How long a call waits for a pooled connection before `Timeout` (default 30 s, sqlx's
    /// default).
    pub acquire_timeout: Duration,
    /// SQLite `synchronous=FULL` instead of `NORMAL` (default false): survive power loss, not
    /// only process crashes, at one `fsync` per commit.
    pub sqlite_synchronous_full: bool,
    /// Read-only rusqlite connections for inline SQLite `get`s (see the crate docs,
    /// "Reads"). Default: twice the available parallelism (one per runtime worker thread,
    /// with room to spare).
    pub inline_readers: usize,
    /// Re-hash every value read against its stored SHA-256 and return `Corrupted` on mismatch
    /// (default false: the database's own integrity checks apply; `verify` re-hashes all).
    pub verify_reads: bool,
    /// Bytes of the database file each inline reader maps (`PRAGMA mmap_size`, SQLite's
    /// memory-mapped I/O; default 256 MiB, `0` turns it off). Mapped reads share the OS page
    /// cache instead of each reader filling its own 2 MB page cache: concurrent point gets
    /// measured 0.82x of one plain rusqlite connection with the same pragma, against 1.09x
    /// without. SQLite's documented caveat: an I/O error on a mapped page (a disk failure,
    /// another process truncating the file) raises SIGBUS instead of an error.
    pub sqlite_mmap_bytes: u64,
}

impl Default for SqlStoreOptions {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        SqlStoreOptions {
            max_connections: u32::try_from(cores * 2).unwrap_or(u32::MAX).max(4),
            inline_readers: cores * 2,
            busy_timeout: Duration::from_secs(5),
            acquire_timeout: Duration::from_secs(30),
            sqlite_synchronous_full: false,
            verify_reads: false,
            sqlite_mmap_bytes: 256 * 1024 * 1024,
        }
    }
}

impl SqlStoreOptions {
    /// Sets [`verify_reads`](Self::verify_reads).
    pub fn with_verify_reads(mut self, verify: bool) -> Self {
        self.verify_reads = verify;
        self
    }

    /// Sets [`max_connections`](Self::max_connections).
    pub fn with_max_connections(mut self, n: u32) -> Self {
        self.max_connections = n;
        self
    }

    /// Sets [`sqlite_synchronous_full`](Self::sqlite_synchronous_full).
    pub fn with_sqlite_synchronous_full(mut self, full: bool) -> Self {
        self.sqlite_synchronous_full = full;
        self
    }
}

/// Which database a [`SqlStore`] runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SqlBackend {
    /// SQLite (embedded, bundled with the crate).
    Sqlite,
    /// PostgreSQL (feature `postgres`).
    Postgres,
}

/// A [`KvStore`] and operational tables on SQLite or PostgreSQL. Cheap to share behind an
/// `Arc`; all methods take `&self` and may run concurrently.
pub struct SqlStore {
    engine: Arc<dyn SqlEngine>,
    url: String,
    /// Writes of one key reach the database in the order they began (see
    /// [`ordered_write`](Self::ordered_write)).
    order: Arc<WriteOrder>,
}

impl fmt::Debug for SqlStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlStore")
            .field("backend", &self.backend())
            .field("url", &self.url)
            .finish()
    }
}

impl SqlStore {
    /// Opens the database at `url`, creating it (SQLite) and its schema if needed:
    /// `sqlite://path/to/file.db`, `sqlite::memory:`, or (feature `postgres`)
    /// `postgres://user@host:port/db`. SQLite query parameters (`?mode=ro`, …) are honoured.
    ///
    /// # Errors
    /// `InvalidInput` for an unparsable URL; `Unsupported` for a scheme this build lacks;
    /// `Unavailable` if the database cannot be reached or opened; `Corrupted` if the file is
    /// not a database or its schema history does not match this version's migrations.
    pub async fn open(url: &str, options: SqlStoreOptions) -> Result<SqlStore> {
        let redacted = error::redact_url(url);
        let engine = if url.starts_with("sqlite:") {
            let connect = url
                .parse::<sqlx::sqlite::SqliteConnectOptions>()
                .map_err(|e| error::open_error(url, e))?;
            Arc::new(sqlite::open(connect, &redacted, &options).await?) as Arc<dyn SqlEngine>
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            #[cfg(feature = "postgres")]
            {
                Arc::new(postgres::open(url, &options).await?) as Arc<dyn SqlEngine>
            }
            #[cfg(not(feature = "postgres"))]
            {
                return Err(Error::new(
                    hybridstore_core::ErrorKind::Unsupported,
                    "this build of hybridstore-sql has no PostgreSQL support \
                     (enable the `postgres` feature)",
                )
                .with_operation("open")
                .with_context("url", redacted));
            }
        } else {
            return Err(
                Error::invalid_input("a SqlStore URL starts with sqlite: or postgres://")
                    .with_operation("open")
                    .with_context("url", redacted),
            );
        };
        Ok(SqlStore {
            engine,
            url: redacted,
            order: WriteOrder::new(),
        })
    }

    /// Opens (creating if needed) the SQLite database file at `path`. Unlike
    /// [`open`](Self::open) this takes any path, including ones with `?` or `#` in them.
    ///
    /// # Errors
    /// As [`open`](Self::open).
    pub async fn open_sqlite_file(
        path: impl AsRef<Path>,
        options: SqlStoreOptions,
    ) -> Result<SqlStore> {
        let path = path.as_ref();
        let url = format!("sqlite://{}", path.display());
        let connect = sqlx::sqlite::SqliteConnectOptions::new().filename(path);
        let engine = sqlite::open(connect, &url, &options).await?;
        Ok(SqlStore {
            engine: Arc::new(engine),
            url,
            order: WriteOrder::new(),
        })
    }

    /// The database this store runs on.
    pub fn backend(&self) -> SqlBackend {
        self.engine.backend()
    }

    /// The URL this store was opened with, password removed.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The `documents` table's rows of no tenant.
    pub fn documents(&self) -> Documents<'_> {
        Documents {
            store: self,
            tenant: "",
        }
    }

    /// The `documents` table's rows of `tenant`.
    pub fn tenant_documents<'a>(&'a self, tenant: &'a TenantId) -> Documents<'a> {
        Documents {
            store: self,
            tenant: tenant.as_str(),
        }
    }

    /// The `sessions` table's sessions of no tenant.
    pub fn sessions(&self) -> Sessions<'_> {
        Sessions {
            store: self,
            tenant: "",
        }
    }

    /// The `sessions` table's sessions of `tenant`.
    pub fn tenant_sessions<'a>(&'a self, tenant: &'a TenantId) -> Sessions<'a> {
        Sessions {
            store: self,
            tenant: tenant.as_str(),
        }
    }

    /// Deletes every `documents` and `sessions` row of `tenant`, in one transaction, and
    /// returns how many of each: (documents, sessions).
    ///
    /// # Errors
    /// Errors of the database (then nothing was deleted).
    pub async fn delete_tenant_rows(&self, tenant: &TenantId) -> Result<(u64, u64)> {
        self.engine.delete_tenant_rows(tenant.as_str()).await
    }

    /// The `settings` table.
    pub fn settings(&self) -> Settings<'_> {
        Settings { store: self }
    }

    /// Keys whose value has SHA-256 `checksum` (duplicate contents), in key order, at most
    /// `limit`. Uses the `checksum` index.
    pub async fn keys_with_checksum(
        &self,
        checksum: &Sha256Digest,
        limit: usize,
    ) -> Result<Vec<Key>> {
        self.engine.keys_with_checksum(checksum, limit).await
    }

    /// Keys and metadata in `range`, in key order, as keyset pages of at most [`META_PAGE`]
    /// rows and `limit` rows in all. No connection is held between pages.
    fn meta_pages(
        &self,
        range: KeyRange,
        limit: Option<usize>,
    ) -> BoxStream<'_, Result<Vec<MetaEntry>>> {
        try_stream! {
            let mut remaining = limit.unwrap_or(usize::MAX);
            let mut cursor = SqlRange::new(&range);
            while remaining > 0 {
                let want = remaining.min(META_PAGE);
                let page = self.engine.meta_page(&cursor, want).await?;
                let Some(last) = page.last() else { break };
                cursor = cursor.after(last.key.as_bytes());
                let page_was_full = page.len() == want;
                remaining -= page.len();
                yield page;
                if !page_was_full {
                    break;
                }
            }
        }
        .boxed()
    }

    /// Writes a consistent copy of the whole database (every table) to the new file `path`,
    /// while writers go on: SQLite's `VACUUM INTO`. A backup takes the SQL database this way.
    ///
    /// # Errors
    /// `Unsupported` on PostgreSQL; `InvalidInput` for a path that is not UTF-8; errors of
    /// the database (a file already at `path` makes SQLite fail).
    pub async fn copy_into(&self, path: &Path) -> Result<()> {
        let text = path
            .to_str()
            .ok_or_else(|| Error::invalid_input(format!("{} is not UTF-8", path.display())))?;
        self.engine.copy_into(text).await
    }

    /// A consistent point in time of the whole database (seed 004's versioned reads): every
    /// read through the snapshot sees the database as it was when this returned, whatever
    /// is written meanwhile. It is one read transaction on a reader connection (SQLite: a
    /// deferred transaction pinned by a first read, so WAL mode lets writers go on;
    /// PostgreSQL: `REPEATABLE READ READ ONLY`), held until [`SqlSnapshot::close`] or drop.
    /// Keep it short: it holds a reader connection, and on SQLite no checkpoint can fold the
    /// write-ahead log past it (<https://www.sqlite.org/wal.html#avoiding_excessively_large_wal_files>).
    ///
    /// # Errors
    /// `Unavailable` if no reader connection can be had; errors of the database.
    pub async fn read_snapshot(&self) -> Result<SqlSnapshot> {
        Ok(SqlSnapshot {
            tx: tokio::sync::Mutex::new(self.engine.snapshot().await?),
        })
    }

    /// Waits for in-flight calls, then closes every connection (on SQLite this checkpoints
    /// the WAL into the database file). Calls made afterwards fail with `Unavailable`.
    pub async fn close(&self) {
        self.engine.close().await
    }
}

/// The database at one point in time, from [`SqlStore::read_snapshot`]: key/value reads and
/// the `documents` table, all answered by one read transaction. Calls are serialized (one
/// connection).
pub struct SqlSnapshot {
    tx: tokio::sync::Mutex<Box<dyn crate::engine::SnapshotEngine>>,
}

impl fmt::Debug for SqlSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlSnapshot").finish_non_exhaustive()
    }
}

impl SqlSnapshot {
    /// The value of `key` at the snapshot.
    ///
    /// # Errors
    /// `Corrupted` if the store verifies reads and the value does not match its SHA-256;
    /// errors of the database.
    pub async fn get(&self, key: &Key) -> Result<Option<Bytes>> {
        self.tx.lock().await.get(key).await
    }

    /// Number of keys at the snapshot.
    ///
    /// # Errors
    /// Errors of the database.
    pub async fn key_count(&self) -> Result<u64> {
        self.tx.lock().await.key_count().await
    }

    /// The `documents` row `doc_id` of no tenant at the snapshot.
    ///
    /// # Errors
    /// `InvalidInput` for an id outside 1 to [`MAX_ID_LEN`] bytes; errors of the database.
    pub async fn document(&self, doc_id: &str) -> Result<Option<Document>> {
        if doc_id.is_empty() || doc_id.len() > MAX_ID_LEN {
            return Err(Error::invalid_input(format!(
                "doc_id must be 1..={MAX_ID_LEN} bytes, got {}",
                doc_id.len()
            )));
        }
        self.tx.lock().await.document(doc_id).await
    }

    /// Number of `documents` rows of no tenant at the snapshot.
    ///
    /// # Errors
    /// Errors of the database.
    pub async fn count_documents(&self) -> Result<u64> {
        self.tx.lock().await.count_documents().await
    }

    /// Ends the read transaction (dropping the snapshot ends it too).
    ///
    /// # Errors
    /// Errors of the database.
    pub async fn close(self) -> Result<()> {
        self.tx.into_inner().finish().await
    }
}

fn check_value_len(len: usize) -> Result<()> {
    if len as u64 > MAX_VALUE_LEN {
        return Err(Error::invalid_input(format!(
            "value is {len} bytes; SqlStore accepts at most {MAX_VALUE_LEN}"
        )));
    }
    Ok(())
}

impl SqlStore {
    /// Runs the write `op` once every earlier write of the same keys is done, and to
    /// completion even if the caller drops the future: a statement already sent to the
    /// server commits whether or not anyone waits for it (PostgreSQL runs it, on a pooled
    /// connection of its own), so a dropped write must still hold its place, or a later
    /// write of the same key on another connection could commit first and be overwritten.
    /// The place is taken at the first poll ([`WriteOrder`]).
    async fn ordered_write<'k, T, F, Fut>(
        &self,
        keys: impl IntoIterator<Item = &'k Key>,
        op: F,
    ) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(Arc<dyn SqlEngine>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<T>> + Send + 'static,
    {
        let ticket = self.order.begin(keys);
        let engine = self.engine.clone();
        run_to_completion(async move {
            ticket.turn().await;
            let out = op(engine).await;
            drop(ticket);
            out
        })
        .await
    }
}

#[async_trait]
impl KvStore for SqlStore {
    fn capabilities(&self) -> Capabilities {
        Capabilities::new()
            .with_max_key_len(MAX_KEY_LEN)
            .with_max_value_len(Some(MAX_VALUE_LEN))
            .with_durable(true)
            .with_crash_atomic_batch(true)
    }

    async fn get(&self, key: &Key) -> Result<Option<Bytes>> {
        self.engine.get(key).await
    }

    async fn get_range(&self, key: &Key, range: std::ops::Range<u64>) -> Result<Option<Bytes>> {
        self.engine.get_range(key, range).await
    }

    async fn head(&self, key: &Key) -> Result<Option<ObjectMeta>> {
        self.engine.head(key).await
    }

    async fn put_with(&self, key: &Key, value: Bytes, options: &PutOptions) -> Result<ObjectMeta> {
        options.validate()?;
        check_value_len(value.len())?;
        let (k, options) = (key.clone(), options.clone());
        self.ordered_write([key], move |engine| async move {
            engine.put(&k, value, &options).await
        })
        .await
    }

    async fn delete(&self, key: &Key) -> Result<()> {
        let k = key.clone();
        self.ordered_write([key], move |engine| async move { engine.delete(&k).await })
            .await
    }

    fn scan(&self, range: KeyRange, limit: Option<usize>) -> EntryStream<'_> {
        try_stream! {
            let mut remaining = limit.unwrap_or(usize::MAX);
            let mut pages = self.meta_pages(range, limit);
            while let Some(page) = pages.try_next().await? {
                // Fetch values in groups of consecutive keys holding at most
                // SCAN_GROUP_BYTES (or one key), so memory stays bounded for large values.
                let mut start = 0;
                while start < page.len() && remaining > 0 {
                    let mut end = start + 1;
                    let mut bytes = page[start].meta.size;
                    while end < page.len() && bytes + page[end].meta.size <= SCAN_GROUP_BYTES {
                        bytes += page[end].meta.size;
                        end += 1;
                    }
                    let (first, last) = (&page[start].key, &page[end - 1].key);
                    let entries = self.engine.entries_between(first, last).await?;
                    // A key written between the two queries may add entries: keep the limit.
                    for entry in entries.into_iter().take(remaining) {
                        remaining -= 1;
                        yield entry;
                    }
                    start = end;
                }
            }
        }
        .boxed()
    }

    fn scan_meta(&self, range: KeyRange, limit: Option<usize>) -> MetaStream<'_> {
        self.meta_pages(range, limit)
            .map_ok(|page| futures::stream::iter(page.into_iter().map(Ok)))
            .try_flatten()
            .boxed()
    }

    async fn write_batch(&self, batch: WriteBatch) -> Result<()> {
        let plan = batch.into_plan()?;
        for (_, mutation) in &plan.writes {
            if let hybridstore_core::raw::Mutation::Put { value, .. } = mutation {
                check_value_len(value.len())?;
            }
        }
        if plan.writes.is_empty() && plan.checks.is_empty() {
            return Ok(());
        }
        let keys: Vec<Key> = plan.keys().cloned().collect();
        self.ordered_write(&keys, move |engine| async move {
            engine.write_batch(plan).await
        })
        .await
    }

    async fn get_many(&self, keys: &[Key]) -> Result<Vec<Option<Bytes>>> {
        let mut out = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(engine::KEYS_PER_STATEMENT) {
            out.extend(self.engine.get_many(chunk).await?);
        }
        Ok(out)
    }

    async fn clear(&self) -> Result<u64> {
        self.engine.clear().await
    }

    async fn stats(&self) -> Result<StoreStats> {
        self.engine.stats().await
    }
}
