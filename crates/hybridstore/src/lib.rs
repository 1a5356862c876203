//! hybridstore: one embeddable storage system for documents, metadata, vectors and metrics.
//!
//! This crate is the one-stop dependency. [`HybridStorageSystem`] opens every store a
//! [`StorageConfig`] asks for under one data directory and offers the whole-system operations
//! (ingest of a directory tree, export, verify, stats). The building blocks are re-exported:
//! [`core`] (the `KvStore` trait, errors, `MemoryStore`, tenant namespaces) and, behind the
//! default `file` feature, [`file`](mod@file) (`FileStore`), and behind the default `sql` feature,
//! [`sql`] (`SqlStore` on SQLite; PostgreSQL with the `postgres` feature), and [`dedup`]
//! (`DedupStore`, chunking, garbage collection). The primary store is chosen by
//! [`StorageConfig::primary`]; by default values go through the dedup layer
//! ([`StorageConfig::dedup`]): manifests in the primary store, chunks in pack files under
//! `<data_dir>/chunks`. In front of it all sits [`cache`] (`CachedStore`): an in-process L1
//! (on by default) and a shared Redis L2 when [`StorageConfig::redis_url`] is set.
//!
//! It is not a server: applications link it, and scale-out is configuration of the backends
//! it composes.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use hybridstore::{HybridStorageSystem, StorageConfig};
//! use hybridstore::core::{Key, KvStore};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let system = HybridStorageSystem::open(StorageConfig::with_data_dir(dir.path())).await?;
//! system.kv().put(&Key::new("notes/today.md")?, "# Today".into()).await?;
//! let report = system.verify(|_, _| {}).await?;
//! assert!(report.is_clean());
//! assert_eq!(report.checked_keys, 1);
//! # Ok::<(), hybridstore::core::Error>(())
//! # }).unwrap();
//! ```
//!
//! # Cargo features
//!
//! - `file` (default): the `FileStore` primary and the dedup layer's chunk packs.
//! - `sql` (default): the `SqlStore` primary on SQLite.
//! - `postgres`: `SqlStore` on PostgreSQL (`sql_url = "postgres://…"`); implies `sql`.
//! - `analytics` (default): access events and metric tables in DuckDB and the metrics layer
//!   that records them.
//! - `vectors` (default): LanceDB under `<data_dir>/lance`: the passages of ingested
//!   documents with a full-text index, and the vector store.
//! - `sync` (default): push, pull and two-way sync with S3 or a directory
//!   ([`HybridStorageSystem::sync_engine`], [`sync`](mod@sync)); implies `sql`.
//! - `backup` (default): snapshots of the whole system into a backup repository
//!   ([`HybridStorageSystem::backup_to`], [`snapshots::restore_system`],
//!   [`backup`](mod@backup)); implies `sql`.

mod background;
mod config;
#[cfg(all(feature = "sql", feature = "vectors"))]
pub mod documents;
pub mod health;
#[cfg(feature = "analytics")]
mod metrics;
pub mod migrate;
mod modes;
#[cfg(feature = "vectors")]
pub mod passages;
#[cfg(feature = "vectors")]
mod search;
#[cfg(feature = "backup")]
pub mod snapshots;
mod source_tree;
pub mod stack;
#[cfg(feature = "sync")]
mod syncing;
pub mod tenants;
mod transfer;
pub mod upkeep;

/// The README's examples, compiled as doc tests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use hybridstore_cache::{CacheStats, CachedStore};
use hybridstore_core::verify::{VerifyReport, verify_store};
use hybridstore_core::{
    Barrier, Error, ErrorKind, KeyRange, KvStore, Result, StoreStats, TenantId, WriteBarrier,
};
use hybridstore_dedup::{DedupOptions, DedupStats, DedupStore, GcOptions, GcReport};
use serde::Serialize;
use stack::{Layer, Stack, StackBuilder};

pub use config::{
    BackupSchedule, ConfigEntry, ConfigExplanation, DocumentsConfig, ENV_PREFIX,
    MAX_DOCUMENTS_TABLE_NAME_LEN, Modality, PrimaryStore, RESERVED_DOCUMENT_FIELDS, SEED_ENV_VARS,
    StorageConfig, StorageMode, ValueSource,
};
pub use modes::{OpenOptions, S3_CACHE_DIR};
pub use source_tree::FileError;
pub use transfer::{
    CHECKPOINT_EVERY_BYTES, Progress, TransferReport, WRITE_BATCH_BYTES, WRITE_QUEUE_BATCHES,
    WriteStreamError, export_path, write_stream,
};

#[cfg(feature = "analytics")]
#[doc(inline)]
pub use hybridstore_analytics as analytics;
#[cfg(feature = "backup")]
#[doc(inline)]
pub use hybridstore_backup as backup;
#[doc(inline)]
pub use hybridstore_cache as cache;
#[doc(inline)]
pub use hybridstore_core as core;
#[doc(inline)]
pub use hybridstore_dedup as dedup;
#[cfg(feature = "file")]
#[doc(inline)]
pub use hybridstore_file as file;
#[cfg(feature = "sql")]
#[doc(inline)]
pub use hybridstore_sql as sql;
#[cfg(feature = "sync")]
#[doc(inline)]
pub use hybridstore_sync as sync;
#[cfg(feature = "vectors")]
#[doc(inline)]
pub use hybridstore_vector as vector;
#[cfg(feature = "analytics")]
pub use metrics::MeteredStore;
pub use migrate::{
    DualReadStore, MigrateOptions, MigrateProgress, MigrationEndpoint, MigrationReport,
    StorageMigrator,
};
#[cfg(feature = "vectors")]
pub use search::{PASSAGES_COLLECTION, PassageHit, PassageReport, passages_spec};
#[cfg(feature = "sync")]
pub use syncing::{BackupStatus, SYNC_STATE_FILE};

/// Subdirectory of the data directory that holds the `FileStore` primary's records.
pub const KV_DIR: &str = "kv";
/// File in the data directory that holds the SQLite `SqlStore` primary (when no `sql_url`).
pub const KV_SQLITE_FILE: &str = "kv.db";
/// Subdirectory of the data directory that holds the dedup layer's chunk packs (a
/// `FileStore`).
pub const CHUNKS_DIR: &str = "chunks";
/// File in the data directory that holds the access events and metric tables (DuckDB).
pub const ANALYTICS_FILE: &str = "analytics.duckdb";
/// Subdirectory of the data directory that holds the LanceDB tables (passages, vectors).
pub const LANCE_DIR: &str = "lance";
/// File in the data directory that the process owning it holds an exclusive lock on
/// (`flock`), whatever the primary store: one process per data directory.
pub const LOCK_FILE: &str = "LOCK";

/// The primary store seen through the dedup layer.
pub type DedupPrimary = DedupStore<Arc<dyn KvStore>>;
/// The cache layer over the stack below it.
pub type CachedStack = CachedStore<Arc<dyn KvStore>>;

/// Size figures of the whole system.
#[derive(Clone, Debug, Serialize)]
pub struct SystemStats {
    /// The data directory.
    pub data_dir: PathBuf,
    /// Where the data lives.
    pub mode: StorageMode,
    /// The primary key/value store (through the dedup layer when it is on).
    pub kv: StoreStats,
    /// Deduplication figures, when the dedup layer is on.
    pub dedup: Option<DedupStats>,
    /// Cache counters since this process opened the system, when the cache is on.
    pub cache: Option<CacheStats>,
    /// The S3 primary's disk cache: counters since this process opened it, entries and
    /// bytes it holds (in [`StorageMode::S3PrimaryWithLocalCache`]).
    pub disk_cache: Option<hybridstore_cache::DiskCacheStats>,
    /// Access-event sink counters since this process opened the system, when analytics is
    /// on.
    #[cfg(feature = "analytics")]
    pub analytics: Option<hybridstore_analytics::SinkStats>,
}

/// The storage system: every configured store, opened under one data directory.
///
/// Cloning is cheap; clones share the open stores. The data directory is owned by one
/// process at a time: a second `open` of the same directory fails with `Locked`.
#[derive(Clone, Debug)]
pub struct HybridStorageSystem {
    config: StorageConfig,
    /// The whole stack: cache (if on) over dedup (if on) over the primary.
    kv: Arc<dyn KvStore>,
    /// The primary alone (under the write barrier): what health probes read, so they record
    /// no access event and skip the cache.
    primary: Arc<dyn KvStore>,
    /// The stack without the cache: what `verify` and `export` read, so they check the
    /// medium and do not flood the cache.
    uncached: Arc<dyn KvStore>,
    dedup: Option<Arc<DedupPrimary>>,
    cache: Option<Arc<CachedStack>>,
    #[cfg(feature = "analytics")]
    analytics: Option<Arc<hybridstore_analytics::AnalyticsStore>>,
    #[cfg(feature = "vectors")]
    vectors: Option<hybridstore_vector::LanceVectorStore>,
    /// Documents across SQL, the stack and LanceDB (when vectors are on).
    #[cfg(all(feature = "sql", feature = "vectors"))]
    documents: Option<documents::DocumentStore>,
    /// The SQL primary, kept apart so `shutdown` can close its connections.
    #[cfg(feature = "sql")]
    sql: Option<Arc<hybridstore_sql::SqlStore>>,
    /// Where the data lives.
    mode: StorageMode,
    /// How the system was opened (S3 options beyond the configuration, background tasks).
    options: OpenOptions,
    /// The S3 primary's disk cache, in [`StorageMode::S3PrimaryWithLocalCache`].
    disk_cache: Option<hybridstore_cache::DiskCache>,
    /// The background push to the backup remote, in [`StorageMode::LocalWithS3Backup`].
    #[cfg(feature = "sync")]
    backup: Option<Arc<syncing::Backup>>,
    /// Held by every sync of this system, so the background push and `sync` never run at
    /// once on the same state.
    #[cfg(feature = "sync")]
    sync_lock: Arc<tokio::sync::Mutex<()>>,
    /// The scheduled backups' task, when [`StorageConfig::backup_schedule`] is set.
    #[cfg(feature = "backup")]
    schedule: Option<Arc<background::BackgroundTask<snapshots::ScheduleStatus>>>,
    /// The background upkeep task, when background tasks are on.
    upkeep_task: Option<Arc<background::BackgroundTask<upkeep::UpkeepStatus>>>,
    /// Holds the primary's writes back while a backup takes its moment.
    #[cfg_attr(not(feature = "backup"), allow(dead_code))]
    barrier: Barrier,
    /// Held by garbage collection and by backups (which read chunks GC would sweep).
    upkeep: Arc<tokio::sync::Mutex<()>>,
    /// The tenant handles made so far (one per tenant, so clones share its quota
    /// accounting); the lock also serializes registering and deleting tenants.
    tenants: Arc<tokio::sync::Mutex<std::collections::HashMap<TenantId, tenants::Tenant>>>,
    /// The data directory's lock, held while any clone is alive.
    _owner: Arc<std::fs::File>,
}

/// What [`HybridStorageSystem::shutdown`] did.
#[derive(Clone, Debug, Default, Serialize)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// The access-event sink's counters once it stopped (every accepted event written or
    /// counted as lost), when analytics is on.
    #[cfg(feature = "analytics")]
    pub analytics: Option<hybridstore_analytics::SinkStats>,
    /// Whether the SQL primary's connections were closed (on SQLite this checkpoints the
    /// write-ahead log into the database file).
    pub sql_closed: bool,
    /// The last push to the backup remote, in [`StorageMode::LocalWithS3Backup`] (the
    /// background task stopped first).
    #[cfg(feature = "sync")]
    pub final_push: Option<hybridstore_sync::SyncReport>,
    /// Why that push failed, if it did (the data stays local; the next process's push
    /// catches up).
    #[cfg(feature = "sync")]
    pub final_push_error: Option<String>,
}

/// Takes the exclusive lock on `<data_dir>/LOCK` (creating the directory if needed).
///
/// # Errors
/// `Locked` (not retryable) if another process holds it; I/O errors.
async fn lock_data_dir(data_dir: &Path) -> Result<std::fs::File> {
    let dir = data_dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let io = |e: std::io::Error, path: &Path| {
            Error::from(e)
                .with_operation("lock data directory")
                .with_context("path", path.display())
        };
        std::fs::create_dir_all(&dir).map_err(|e| io(e, &dir))?;
        let path = dir.join(LOCK_FILE);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| io(e, &path))?;
        match file.try_lock() {
            Ok(()) => Ok(file),
            Err(std::fs::TryLockError::WouldBlock) => Err(Error::new(
                ErrorKind::Locked,
                format!(
                    "data directory {} is in use by another process; stop it or use another directory",
                    dir.display()
                ),
            )
            .with_retryable(false)),
            Err(std::fs::TryLockError::Error(e)) => Err(io(e, &path)),
        }
    })
    .await
    .map_err(|e| Error::backend(format!("locking the data directory failed: {e}")))?
}

impl HybridStorageSystem {
    /// Opens (creating if needed) the system described by `config`, as a long-running
    /// process does: see [`open_with`](Self::open_with) and [`OpenOptions::new`].
    ///
    /// # Errors
    /// As [`open_with`](Self::open_with).
    pub async fn open(config: StorageConfig) -> Result<Self> {
        Self::open_with(config, OpenOptions::new()).await
    }

    /// Opens (creating if needed) the system described by `config`, in its
    /// [`StorageMode`]. With an S3 primary the S3 stores are opened (one listing of the
    /// chunk packs, whose indexes are read); in [`StorageMode::LocalWithS3Backup`], when
    /// `options` allow background tasks, the system pulls from the backup remote first if
    /// [`sync_on_startup`](StorageConfig::sync_on_startup) is set (a failure is logged and
    /// kept in [`backup_status`](Self::backup_status), never fatal: the data is local) and
    /// starts the background push.
    ///
    /// # Errors
    /// `InvalidInput` for an invalid configuration; `Locked` if another process has the
    /// data directory open; `Unsupported` if the crate was built without a feature the
    /// configuration needs; `Unavailable` if an S3 primary cannot be reached within its
    /// timeout; errors of the stores being opened.
    pub async fn open_with(config: StorageConfig, options: OpenOptions) -> Result<Self> {
        config.validate()?;
        let mode = config.mode()?;
        let owner = Arc::new(lock_data_dir(&config.data_dir).await?);
        let (primary, sql, dedup, disk_cache) = if mode.s3_primary() {
            let s3 = modes::open_s3_primary(&config, &options).await?;
            (s3.kv, None, s3.dedup, s3.disk_cache)
        } else {
            let (primary, sql) = open_primary(&config).await?;
            let dedup = dedup_layer(&config, primary.as_ref()).await?;
            (primary, sql, dedup, None)
        };
        #[cfg(not(feature = "sql"))]
        let _ = sql;
        // The barrier sits directly on the primary: a dedup write's chunks are stored before
        // it, and its manifest (the commit point) waits at it while a backup holds it.
        let primary = WriteBarrier::new(primary);
        let barrier = primary.barrier();
        let primary: Arc<dyn KvStore> = Arc::new(primary);
        let probe = primary.clone();
        let cache_config = config.cache_config()?;
        tracing::debug!(
            data_dir = %config.data_dir.display(),
            dedup = config.dedup,
            cache = ?cache_config,
            "storage system open"
        );
        #[cfg(feature = "analytics")]
        let (metrics, analytics) = open_analytics(&config).await?;
        #[cfg(not(feature = "analytics"))]
        let metrics = None;
        let stack = StackBuilder::new(primary, config.backend_name())
            .maybe_layer(dedup)
            .maybe_layer(cache_config.map(Layer::Cache))
            .maybe_layer(metrics)
            .build()
            .await?;
        if let Some(store) = &stack.dedup {
            // Other nodes add packs to an S3 primary's chunk store.
            store.chunk_store().set_shared(mode.s3_primary());
            let report = store.chunk_store().open_report();
            if !report.damaged_packs.is_empty() {
                tracing::warn!(
                    damaged = report.damaged_packs.len(),
                    "some chunk packs are damaged; `verify` names the keys that use them"
                );
            }
        }
        let Stack {
            kv,
            uncached,
            dedup,
            cache,
        } = stack;
        #[cfg(feature = "vectors")]
        let vectors = if config.vectors {
            Some(modes::open_lance(&config, &options).await?)
        } else {
            None
        };
        #[cfg(all(feature = "sql", feature = "vectors"))]
        let documents = vectors.as_ref().map(|lance| {
            let home = match &sql {
                Some(sql) => documents::SqlHome::Primary(sql.clone()),
                None => {
                    documents::SqlHome::File(config.data_dir.join(documents::DOCUMENTS_SQLITE_FILE))
                }
            };
            documents::DocumentStore::new(
                kv.clone(),
                lance.clone(),
                home,
                config.documents.clone(),
                config.lancedb_table_name.clone(),
                config.verify_reads,
            )
        });
        let system = HybridStorageSystem {
            config,
            primary: probe,
            kv,
            uncached,
            dedup,
            cache,
            #[cfg(feature = "analytics")]
            analytics,
            #[cfg(feature = "vectors")]
            vectors,
            #[cfg(all(feature = "sql", feature = "vectors"))]
            documents,
            #[cfg(feature = "sql")]
            sql,
            mode,
            options,
            disk_cache,
            #[cfg(feature = "sync")]
            backup: None,
            #[cfg(feature = "sync")]
            sync_lock: Arc::default(),
            #[cfg(feature = "backup")]
            schedule: None,
            upkeep_task: None,
            barrier,
            upkeep: Arc::default(),
            tenants: Arc::default(),
            _owner: owner,
        };
        #[cfg(feature = "sync")]
        let system = system.start_backup().await;
        #[cfg(feature = "backup")]
        let system = system.start_schedule();
        let system = system.start_upkeep();
        Ok(system)
    }

    /// Where the data lives (see [`StorageMode`]).
    pub fn mode(&self) -> StorageMode {
        self.mode
    }

    /// The S3 primary's disk cache (counters, size), in
    /// [`StorageMode::S3PrimaryWithLocalCache`].
    pub fn disk_cache(&self) -> Option<&hybridstore_cache::DiskCache> {
        self.disk_cache.as_ref()
    }

    /// Stops the system cleanly: background upkeep stops (a job under way finishes), then
    /// scheduled backups stop (one under way finishes); in
    /// [`StorageMode::LocalWithS3Backup`] the background push
    /// stops (a push under way finishes) and one last push sends what changed since (its
    /// outcome in the report; a failure does not fail the shutdown), then the access-event
    /// writer writes everything it accepted and
    /// stops (its thread joined), then the SQL primary's connections close (SQLite
    /// checkpoints its write-ahead log, so `kv.db` alone holds the data). Operations through
    /// other clones fail with `Unavailable` afterwards; the data directory's lock is
    /// released when the last clone is dropped. LanceDB and the file stores hold nothing
    /// open between calls and need no closing.
    ///
    /// # Errors
    /// `Backend` if the analytics writer's thread could not be joined.
    pub async fn shutdown(self) -> Result<ShutdownReport> {
        #[allow(unused_mut)] // fields exist per feature
        let mut report = ShutdownReport::default();
        self.stop_upkeep().await;
        #[cfg(feature = "backup")]
        self.stop_schedule().await;
        #[cfg(feature = "sync")]
        if let Some(backup) = &self.backup {
            match self.stop_backup(backup).await {
                Ok(pushed) => report.final_push = Some(pushed),
                Err(e) => {
                    tracing::warn!(error = %e, "the last push to the backup remote failed");
                    report.final_push_error = Some(e.to_string());
                }
            }
        }
        #[cfg(feature = "analytics")]
        if let Some(analytics) = self.analytics.clone() {
            let stats = tokio::task::spawn_blocking(move || analytics.close())
                .await
                .map_err(|e| {
                    Error::backend(format!("stopping the analytics writer failed: {e}"))
                })?;
            report.analytics = Some(stats);
        }
        #[cfg(all(feature = "sql", feature = "vectors"))]
        if let Some(documents) = &self.documents {
            documents.close().await;
        }
        #[cfg(feature = "sql")]
        if let Some(sql) = &self.sql {
            sql.close().await;
            report.sql_closed = true;
        }
        Ok(report)
    }

    /// The LanceDB vector store under `<data_dir>/lance`, if [`StorageConfig::vectors`] is on.
    #[cfg(feature = "vectors")]
    pub fn vectors(&self) -> Option<&hybridstore_vector::LanceVectorStore> {
        self.vectors.as_ref()
    }

    /// The `k` ingested passages that best match `query` (BM25 over the passages of every
    /// HTML, Markdown and text file `ingest_dir` stored), best first.
    ///
    /// # Errors
    /// `Unsupported` if vectors are off; `InvalidInput` for an empty query or `k` outside
    /// 1 to 10,000.
    #[cfg(feature = "vectors")]
    pub async fn search(&self, query: &str, k: usize) -> Result<Vec<PassageHit>> {
        match &self.vectors {
            Some(store) => {
                search::search(store, &self.config.lancedb_chunks_table_name, query, k).await
            }
            None => Err(Error::new(
                ErrorKind::Unsupported,
                "search needs vectors = true",
            )),
        }
    }

    /// Documents across engines: content and text through the key/value stack, a row in
    /// the SQL `documents` table, passages and per-modality embeddings in LanceDB, searched
    /// by keywords, vectors or both ([`documents`](mod@documents)). The shape (dimensions,
    /// fields) is [`StorageConfig::documents`].
    ///
    /// # Errors
    /// `Unsupported` if vectors are off.
    #[cfg(all(feature = "sql", feature = "vectors"))]
    pub fn documents(&self) -> Result<&documents::DocumentStore> {
        self.documents
            .as_ref()
            .ok_or_else(|| Error::new(ErrorKind::Unsupported, "documents need vectors = true"))
    }

    /// The analytics store (access events, reports), if [`StorageConfig::analytics`] is on.
    #[cfg(feature = "analytics")]
    pub fn analytics(&self) -> Option<&Arc<hybridstore_analytics::AnalyticsStore>> {
        self.analytics.as_ref()
    }

    /// The cache in front of the stores, unless both tiers are off.
    pub fn cache(&self) -> Option<&Arc<CachedStack>> {
        self.cache.as_ref()
    }

    /// The SQL primary (its `documents`, `sessions` and `settings` tables), when the primary
    /// is a `SqlStore`.
    #[cfg(feature = "sql")]
    pub fn sql(&self) -> Option<&Arc<hybridstore_sql::SqlStore>> {
        self.sql.as_ref()
    }

    /// The dedup layer over the primary store, if [`StorageConfig::dedup`] is on.
    pub fn dedup(&self) -> Option<&Arc<DedupPrimary>> {
        self.dedup.as_ref()
    }

    /// Garbage collection of the dedup layer's chunks (see
    /// [`DedupStore::collect_garbage`]).
    ///
    /// # Errors
    /// `Unsupported` if dedup is off; otherwise as `collect_garbage`.
    pub async fn collect_garbage(&self, options: &GcOptions) -> Result<GcReport> {
        let _no_backup = self.upkeep.lock().await;
        match &self.dedup {
            Some(store) => store.collect_garbage(options).await,
            None => Err(Error::new(
                ErrorKind::Unsupported,
                "garbage collection needs dedup = true",
            )),
        }
    }

    /// The configuration the system was opened with.
    pub fn config(&self) -> &StorageConfig {
        &self.config
    }

    /// The primary key/value store.
    pub fn kv(&self) -> &Arc<dyn KvStore> {
        &self.kv
    }

    /// Stores every regular file under `source` as `prefix` + its `/`-separated relative path,
    /// with a content type guessed from the file name; symbolic links are skipped.
    /// `on_progress` is called after every file. With vectors on, the passages of HTML,
    /// Markdown and text files then go to the full-text index (see [`search`](Self::search)).
    ///
    /// # Errors
    /// `InvalidInput` if `source` is not a directory. Per-file failures (unreadable files,
    /// non-UTF-8 names, keys over 1,024 bytes) are listed in the report instead.
    pub async fn ingest_dir(
        &self,
        source: &Path,
        prefix: &str,
        on_progress: impl Fn(Progress) + Send + Sync,
    ) -> Result<TransferReport> {
        #[allow(unused_mut)] // only the vectors feature adds to it
        let mut report = transfer::ingest(
            self.kv.as_ref(),
            source,
            prefix,
            self.config.io_concurrency,
            &on_progress,
        )
        .await?;
        #[cfg(feature = "vectors")]
        if let Some(store) = &self.vectors {
            report.passages = Some(
                search::index_tree(
                    store,
                    &self.config.lancedb_chunks_table_name,
                    source,
                    prefix,
                )
                .await?,
            );
        }
        Ok(report)
    }

    /// Writes every key starting with `prefix` to `dest/<key without prefix>` (creating
    /// directories), the inverse of [`ingest_dir`](Self::ingest_dir). Keys that are not safe
    /// relative paths (see [`export_path`]) are reported and not written.
    ///
    /// # Errors
    /// Listing failures; per-key failures are listed in the report.
    pub async fn export_dir(
        &self,
        dest: &Path,
        prefix: &str,
        on_progress: impl Fn(Progress) + Send + Sync,
    ) -> Result<TransferReport> {
        transfer::export(
            self.uncached.as_ref(),
            dest,
            prefix,
            self.config.io_concurrency,
            &on_progress,
        )
        .await
    }

    /// Re-reads every value, re-hashes it with SHA-256 and compares it with its stored
    /// checksum; every damaged key is listed. `on_progress(keys, bytes)` follows the work.
    ///
    /// # Errors
    /// Only a failure to list the keys.
    pub async fn verify(&self, on_progress: impl FnMut(u64, u64) + Send) -> Result<VerifyReport> {
        verify_store(
            self.uncached.as_ref(),
            KeyRange::all(),
            self.config.io_concurrency,
            on_progress,
        )
        .await
    }

    /// Key count, logical and stored bytes of every store.
    ///
    /// # Errors
    /// Errors of the stores' `stats`.
    pub async fn stats(&self) -> Result<SystemStats> {
        let (kv, dedup) = match &self.dedup {
            Some(store) => {
                let d = store.dedup_stats().await?;
                (StoreStats::from(&d), Some(d))
            }
            None => (self.uncached.stats().await?, None),
        };
        Ok(SystemStats {
            data_dir: self.config.data_dir.clone(),
            mode: self.mode,
            kv,
            dedup,
            cache: self.cache.as_ref().map(|c| c.cache_stats()),
            disk_cache: self.disk_cache.as_ref().map(|c| c.stats()),
            #[cfg(feature = "analytics")]
            analytics: self.analytics.as_ref().map(|a| a.stats()),
        })
    }
}

/// The MIME type of a file, guessed from its extension (`mime_guess`, which follows the
/// Apache `mime.types` list), or `None` if the extension is unknown.
pub fn guess_content_type(path: &Path) -> Option<String> {
    mime_guess::from_path(path).first_raw().map(str::to_string)
}

/// Opens `<data_dir>/analytics.duckdb` and the metrics layer that feeds it, if analytics is
/// on.
#[cfg(feature = "analytics")]
async fn open_analytics(
    config: &StorageConfig,
) -> Result<(
    Option<Layer>,
    Option<Arc<hybridstore_analytics::AnalyticsStore>>,
)> {
    if !config.analytics {
        return Ok((None, None));
    }
    let path = config.data_dir.join(ANALYTICS_FILE);
    let store = tokio::task::spawn_blocking(move || {
        hybridstore_analytics::AnalyticsStore::open(&path, Default::default())
    })
    .await
    .map_err(|e| Error::backend(format!("opening the analytics store failed: {e}")))??;
    let store = Arc::new(store);
    let metrics = Layer::Metrics {
        sink: store.sink().clone(),
        record_keys: config.analytics_record_keys,
    };
    Ok((Some(metrics), Some(store)))
}

/// The dedup layer `config` asks for, after checking that the data directory agrees: values
/// written without dedup are never read as manifests, nor chunks left unused.
async fn dedup_layer(config: &StorageConfig, primary: &dyn KvStore) -> Result<Option<Layer>> {
    let chunks_dir = config.data_dir.join(CHUNKS_DIR);
    if !config.dedup {
        if chunks_dir.exists() {
            return Err(Error::invalid_input(format!(
                "the data directory holds dedup chunks ({}); open it with dedup = true",
                chunks_dir.display()
            )));
        }
        return Ok(None);
    }
    if !chunks_dir.exists()
        && !primary
            .list_keys(KeyRange::all(), Some(1))
            .await?
            .is_empty()
    {
        return Err(Error::invalid_input(
            "the primary store holds values written without dedup; open it with dedup = false",
        ));
    }
    Ok(Some(Layer::Dedup {
        chunks: open_chunk_dir(&chunks_dir).await?,
        options: DedupOptions::default(),
    }))
}

/// Opens the primary store `config` asks for. A data directory already holding the other
/// kind of primary is refused, so a wrong setting never shows an empty store over real data.
async fn open_primary(config: &StorageConfig) -> Result<(Arc<dyn KvStore>, Option<SqlHandle>)> {
    let file_dir = config.data_dir.join(KV_DIR);
    let sqlite_file = config.data_dir.join(KV_SQLITE_FILE);
    let mismatch = |found: &Path, wanted: &str| {
        Err(hybridstore_core::Error::invalid_input(format!(
            "the data directory holds a different primary store ({}); \
             it is configured as primary = \"{wanted}\"",
            found.display()
        )))
    };
    match config.primary {
        PrimaryStore::File => {
            if sqlite_file.exists() && !file_dir.exists() {
                return mismatch(&sqlite_file, "file");
            }
            Ok((open_file_primary(config, &file_dir).await?, None))
        }
        PrimaryStore::Sql => {
            if config.sql_url.is_none() && file_dir.exists() && !sqlite_file.exists() {
                return mismatch(&file_dir, "sql");
            }
            let (store, handle) = open_sql_primary(config, &sqlite_file).await?;
            Ok((store, Some(handle)))
        }
    }
}

#[cfg(feature = "file")]
async fn open_file_primary(config: &StorageConfig, dir: &Path) -> Result<Arc<dyn KvStore>> {
    let mut options = hybridstore_file::FileStoreOptions::default();
    options.verify_reads = config.verify_reads;
    let store = hybridstore_file::FileStore::open_with(dir, options).await?;
    Ok(Arc::new(store))
}

/// The `FileStore` holding the chunk packs.
#[cfg(feature = "file")]
async fn open_chunk_dir(dir: &Path) -> Result<Arc<dyn KvStore>> {
    Ok(Arc::new(hybridstore_file::FileStore::open(dir).await?))
}

#[cfg(not(feature = "file"))]
async fn open_chunk_dir(_dir: &Path) -> Result<Arc<dyn KvStore>> {
    Err(unsupported(
        "dedup = true keeps chunks in files and needs the `file` feature",
    ))
}

#[cfg(not(feature = "file"))]
async fn open_file_primary(_config: &StorageConfig, _dir: &Path) -> Result<Arc<dyn KvStore>> {
    Err(unsupported("primary = \"file\" needs the `file` feature"))
}

#[cfg(feature = "sql")]
async fn open_sql_primary(
    config: &StorageConfig,
    sqlite_file: &Path,
) -> Result<(Arc<dyn KvStore>, SqlHandle)> {
    let options =
        hybridstore_sql::SqlStoreOptions::default().with_verify_reads(config.verify_reads);
    let store = match &config.sql_url {
        Some(url) => hybridstore_sql::SqlStore::open(url.expose(), options).await?,
        None => {
            std::fs::create_dir_all(&config.data_dir).map_err(|e| {
                hybridstore_core::Error::new(
                    hybridstore_core::ErrorKind::Unavailable,
                    format!("cannot create data directory: {e}"),
                )
                .with_context("path", config.data_dir.display())
            })?;
            hybridstore_sql::SqlStore::open_sqlite_file(sqlite_file, options).await?
        }
    };
    let store = Arc::new(store);
    Ok((store.clone(), store))
}

/// The SQL primary as `shutdown` closes it.
#[cfg(feature = "sql")]
type SqlHandle = Arc<hybridstore_sql::SqlStore>;
/// Without the `sql` feature there is no SQL primary to close.
#[cfg(not(feature = "sql"))]
type SqlHandle = ();

#[cfg(not(feature = "sql"))]
async fn open_sql_primary(
    _config: &StorageConfig,
    _sqlite_file: &Path,
) -> Result<(Arc<dyn KvStore>, SqlHandle)> {
    Err(unsupported("primary = \"sql\" needs the `sql` feature"))
}

#[cfg(not(all(feature = "file", feature = "sql")))]
fn unsupported(message: &str) -> Error {
    Error::new(ErrorKind::Unsupported, message)
}
