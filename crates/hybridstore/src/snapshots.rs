//! Backups of the whole system into a `hybridstore_backup` repository, and restores of a
//! snapshot into a new data directory.
//!
//! **The moment.** [`HybridStorageSystem::backup_to`] keeps garbage collection out, then
//! holds the primary's writes back (the stack's `WriteBarrier`, directly above the primary:
//! a dedup write has its chunks stored before it reaches the barrier, and its manifest is the
//! commit point) while it takes every engine's point-in-time handle:
//!
//! - the keys: every manifest with its metadata (one scan of the primary; no chunk is read),
//!   or, without the dedup layer, every key's metadata, with the barrier then held until the
//!   values are read;
//! - the SQLite database, every table (`VACUUM INTO` a file in a staging directory);
//! - the LanceDB files: the version manifests are listed first, then every other file, and
//!   each is hard-linked into the staging directory (LanceDB writes files once and replaces
//!   nothing in place, so the links hold the versions that existed, whatever an `optimize`
//!   deletes later);
//! - the DuckDB analytics database (flushed, checkpointed and copied).
//!
//! Then writes go on, and the repository gets what changed: new chunks, the key tree and
//! the files, then the snapshot record.
//!
//! **Restore** ([`restore_system`]) builds a data directory that opens as a working system:
//! with a SQLite primary and the dedup layer (the default), the database file is put back
//! whole (it holds the manifests and every SQL table) and the chunks the manifests name go
//! into new packs; otherwise the keys are written through the new system's stack (times and
//! content types kept). LanceDB and DuckDB files are put back as they were.
//!
//! Not captured: LanceDB tables kept on S3 (`lancedb_uri = "s3://…"`), a PostgreSQL
//! primary's SQL tables (its keys are captured; back the database up with `pg_dump`), and the
//! sync state (`sync.db`: a restored system syncs as a new device).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use futures::{StreamExt, TryStreamExt};
pub use hybridstore_backup::Password;
use hybridstore_backup::{
    BackupProgress, BackupReport, BackupSource, FileSource, KeySource, Repository, RestoreProgress,
    SourceEntry, SourceValue,
};
use hybridstore_core::{Error, ErrorKind, KeyRange, KvStore, Result};
use hybridstore_dedup::{ChunkId, ChunkStore, DEFAULT_TARGET_PACK_SIZE, Manifest};
use serde::Serialize;

use crate::{
    ANALYTICS_FILE, CHUNKS_DIR, HybridStorageSystem, KV_SQLITE_FILE, LANCE_DIR, PrimaryStore,
    StorageConfig,
};

/// Name in a snapshot of the SQLite database (the primary's `kv.db`, every table).
pub const SQL_ITEM: &str = KV_SQLITE_FILE;
/// Name in a snapshot of the documents store's own SQLite database (`documents.db`, when the
/// primary is not a `SqlStore`).
pub const DOCUMENTS_ITEM: &str = "documents.db";
/// Name in a snapshot of the analytics database.
pub const ANALYTICS_ITEM: &str = ANALYTICS_FILE;
/// Prefix of the LanceDB files' names in a snapshot (`lance/<path under <data_dir>/lance>`).
pub const LANCE_ITEM_PREFIX: &str = "lance/";

/// Plaintext bytes of chunks stored at once while packs are rebuilt (one 16 MiB pack).
const RESTORE_CHUNK_BATCH: usize = 16 << 20;

fn io(e: std::io::Error, path: &Path) -> Error {
    Error::from(e).with_context("path", path.display())
}

/// What a backup needs of the system, without the system itself (a scheduled backup's task
/// must not keep the data directory's lock alive).
#[derive(Clone)]
pub(crate) struct Capture {
    config: StorageConfig,
    upkeep: Arc<tokio::sync::Mutex<()>>,
    barrier: hybridstore_core::Barrier,
    dedup: Option<Arc<crate::DedupPrimary>>,
    uncached: Arc<dyn KvStore>,
    #[cfg(feature = "sql")]
    sql: Option<Arc<hybridstore_sql::SqlStore>>,
    #[cfg(feature = "analytics")]
    analytics: Option<Arc<hybridstore_analytics::AnalyticsStore>>,
    #[cfg(all(feature = "sql", feature = "vectors"))]
    documents: Option<crate::documents::DocumentStore>,
}

impl HybridStorageSystem {
    pub(crate) fn capture(&self) -> Capture {
        Capture {
            config: self.config.clone(),
            upkeep: self.upkeep.clone(),
            barrier: self.barrier.clone(),
            dedup: self.dedup.clone(),
            uncached: self.uncached.clone(),
            #[cfg(feature = "sql")]
            sql: self.sql.clone(),
            #[cfg(feature = "analytics")]
            analytics: self.analytics.clone(),
            #[cfg(all(feature = "sql", feature = "vectors"))]
            documents: self.documents.clone(),
        }
    }

    /// Takes a snapshot of the whole system into `repo` (see the module docs for how the
    /// moment is taken), with `tags`; `on_progress` follows the work.
    ///
    /// # Errors
    /// `Locked` if a prune holds the repository; `Corrupted` if a chunk of the system is
    /// damaged (named by key; `verify` finds them all); `Unavailable` for a LanceDB file that
    /// vanished while being linked (an `optimize` ran: back up again); errors of the engines
    /// and the repository. A failed backup leaves no snapshot.
    pub async fn backup_to(
        &self,
        repo: &Repository,
        tags: Vec<String>,
        on_progress: &(dyn Fn(BackupProgress) + Send + Sync),
    ) -> Result<BackupReport> {
        self.capture().backup_to(repo, tags, on_progress).await
    }
}

/// Name prefix of the directory a backup stages its database copies and LanceDB links in,
/// inside the data directory.
const STAGING_PREFIX: &str = ".backup-staging-";

/// Removes staging directories a backup killed midway left in `data_dir` (the data
/// directory has one process, and its backups run one at a time under the upkeep lock, so
/// any found here is stale). Failures are logged: they cost space, not correctness.
fn remove_stale_staging(data_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(data_dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with(STAGING_PREFIX)
        {
            let path = entry.path();
            match std::fs::remove_dir_all(&path) {
                Ok(()) => {
                    tracing::info!(dir = %path.display(), "removed a stale backup staging directory")
                }
                Err(e) => {
                    tracing::warn!(dir = %path.display(), error = %e, "cannot remove a stale backup staging directory")
                }
            }
        }
    }
}

impl Capture {
    /// See [`HybridStorageSystem::backup_to`].
    pub(crate) async fn backup_to(
        &self,
        repo: &Repository,
        tags: Vec<String>,
        on_progress: &(dyn Fn(BackupProgress) + Send + Sync),
    ) -> Result<BackupReport> {
        let _no_gc = self.upkeep.lock().await;
        let data_dir = self.config.data_dir.clone();
        let staging = {
            let dir = data_dir.clone();
            tokio::task::spawn_blocking(move || {
                remove_stale_staging(&dir);
                tempfile::Builder::new()
                    .prefix(STAGING_PREFIX)
                    .tempdir_in(&dir)
                    .map_err(|e| io(e, &dir))
            })
            .await
            .map_err(|e| Error::backend(format!("creating the staging directory: {e}")))??
        };
        // Opened (and repaired, which writes through the stack) before the barrier is held.
        #[cfg(all(feature = "sql", feature = "vectors"))]
        let documents_sql = match &self.documents {
            Some(documents) => documents.own_sql_for_backup().await?,
            None => None,
        };
        let hold = self.barrier.hold().await;
        let time = chrono::Local::now().fixed_offset();
        let keys = self.capture_keys().await?;
        let mut files = Vec::new();
        #[cfg(feature = "sql")]
        if let Some(sql) = &self.sql
            && self.config.sql_url.is_none()
        {
            let path = staging.path().join(SQL_ITEM);
            sql.copy_into(&path).await?;
            files.push(FileSource {
                name: SQL_ITEM.to_string(),
                path,
            });
        }
        #[cfg(all(feature = "sql", feature = "vectors"))]
        if let Some(sql) = documents_sql {
            let path = staging.path().join(DOCUMENTS_ITEM);
            sql.copy_into(&path).await?;
            files.push(FileSource {
                name: DOCUMENTS_ITEM.to_string(),
                path,
            });
        }
        if self.config.vectors && self.config.lancedb_uri.is_none() {
            let lance = data_dir.join(LANCE_DIR);
            let into = staging.path().join(LANCE_DIR);
            let linked = tokio::task::spawn_blocking(move || link_lance(&lance, &into))
                .await
                .map_err(|e| Error::backend(format!("linking LanceDB files: {e}")))??;
            files.extend(linked);
        }
        #[cfg(feature = "analytics")]
        if let Some(analytics) = self.analytics.clone() {
            let path = staging.path().join(ANALYTICS_ITEM);
            let dest = path.clone();
            tokio::task::spawn_blocking(move || analytics.copy_to(&dest))
                .await
                .map_err(|e| Error::backend(format!("copying the analytics database: {e}")))??;
            files.push(FileSource {
                name: ANALYTICS_ITEM.to_string(),
                path,
            });
        }
        // With the dedup layer the keys are captured whole (manifests name immutable
        // chunks): writers may go on. Without it the values are read during the backup, so
        // writers wait until it ends.
        let hold = if self.dedup.is_some() {
            drop(hold);
            None
        } else {
            Some(hold)
        };
        let source = BackupSource {
            time,
            host: hybridstore_backup::host_name(),
            source: data_dir.display().to_string(),
            tags,
            keys: Some(keys),
            files,
        };
        let report = hybridstore_backup::backup(repo, source, on_progress).await;
        drop(hold);
        // Removing the staging directory is file I/O: off the async workers.
        let _ = tokio::task::spawn_blocking(move || drop(staging)).await;
        report
    }

    /// Every key at this moment: manifests through the dedup layer, or metadata to read the
    /// values by.
    async fn capture_keys(&self) -> Result<KeySource> {
        match &self.dedup {
            Some(dedup) => {
                let entries: Vec<SourceEntry> = dedup
                    .scan_manifests(KeyRange::all())
                    .map_ok(|(key, manifest, meta)| SourceEntry {
                        key,
                        meta,
                        value: match manifest {
                            Manifest::Inline(v) => SourceValue::Inline(v),
                            Manifest::Chunked(list) => SourceValue::Chunks(list.chunks),
                        },
                    })
                    .try_collect()
                    .await?;
                Ok(KeySource {
                    entries,
                    chunks: Some(dedup.chunk_store().clone()),
                    values: None,
                })
            }
            None => {
                let entries: Vec<SourceEntry> = self
                    .uncached
                    .scan_meta(KeyRange::all(), None)
                    .map_ok(|m| SourceEntry {
                        key: m.key,
                        meta: m.meta,
                        value: SourceValue::Read,
                    })
                    .try_collect()
                    .await?;
                Ok(KeySource {
                    entries,
                    chunks: None,
                    values: Some(self.uncached.clone()),
                })
            }
        }
    }
}

/// Hard-links every file under `lance` into `into` (same relative paths), version manifests
/// first, and returns them as snapshot files. No directory: no files.
fn link_lance(lance: &Path, into: &Path) -> Result<Vec<FileSource>> {
    if !lance.is_dir() {
        return Ok(Vec::new());
    }
    let mut manifests = Vec::new();
    let mut others = Vec::new();
    // The manifests first: each names only files written before it, so every file a listed
    // version needs is there when the rest is listed.
    for pass in [true, false] {
        for entry in walkdir::WalkDir::new(lance).sort_by_file_name() {
            let entry = entry.map_err(|e| {
                Error::new(
                    ErrorKind::Unavailable,
                    format!("listing LanceDB files: {e}"),
                )
            })?;
            if !entry.file_type().is_file() {
                continue;
            }
            let is_manifest = entry
                .path()
                .parent()
                .and_then(|p| p.file_name())
                .is_some_and(|n| n == "_versions");
            if is_manifest != pass {
                continue;
            }
            let rel = entry
                .path()
                .strip_prefix(lance)
                .map_err(|e| Error::backend(format!("a LanceDB path outside its directory: {e}")))?
                .to_path_buf();
            let target = into.join(&rel);
            if let Some(dir) = target.parent() {
                std::fs::create_dir_all(dir).map_err(|e| io(e, dir))?;
            }
            match std::fs::hard_link(entry.path(), &target) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(Error::new(
                        ErrorKind::Unavailable,
                        format!(
                            "LanceDB file {} vanished while being backed up (an optimize ran?); \
                             back up again",
                            rel.display()
                        ),
                    ));
                }
                Err(e) => return Err(io(e, &target)),
            }
            let name = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            let source = FileSource {
                name: format!("{LANCE_ITEM_PREFIX}{name}"),
                path: target,
            };
            if pass {
                manifests.push(source);
            } else {
                others.push(source);
            }
        }
    }
    manifests.extend(others);
    Ok(manifests)
}

/// The environment variable [`RepositoryAccess::from_sources`] reads a backup repository's
/// password from (as restic's `RESTIC_PASSWORD`).
pub const PASSWORD_ENV: &str = "HYBRIDSTORE_BACKUP_PASSWORD";

/// How a backup repository is opened: its password (an encrypted repository needs it, a new
/// one is encrypted under it), and whether a new `s3://` repository may go unencrypted.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct RepositoryAccess {
    /// The repository password.
    pub password: Option<Password>,
    /// Lets [`open_repository`] create an `s3://` repository without a password (restic's
    /// `--insecure-no-password`); a directory repository needs no such consent.
    pub insecure_no_password: bool,
}

impl RepositoryAccess {
    /// No password: opens unencrypted repositories and creates unencrypted directory ones.
    pub fn new() -> Self {
        Self::default()
    }

    /// With `password`.
    pub fn with_password(mut self, password: Password) -> Self {
        self.password = Some(password);
        self
    }

    /// Consents to a new unencrypted `s3://` repository.
    pub fn with_insecure_no_password(mut self, insecure: bool) -> Self {
        self.insecure_no_password = insecure;
        self
    }

    /// The password from `password_file` (its first line) if given, else from
    /// [`PASSWORD_ENV`] if set, else none (as restic resolves `--password-file` and
    /// `RESTIC_PASSWORD`).
    ///
    /// # Errors
    /// `InvalidInput` for a password file that cannot be read or an empty password.
    pub fn from_sources(password_file: Option<&Path>) -> Result<Self> {
        let password = match password_file {
            Some(path) => Some(Password::from_file(path)?),
            None => match std::env::var(PASSWORD_ENV) {
                Ok(text) => Some(Password::new(text).map_err(|_| {
                    Error::invalid_input(format!("{PASSWORD_ENV} is set but empty"))
                })?),
                Err(_) => None,
            },
        };
        Ok(RepositoryAccess {
            password,
            insecure_no_password: false,
        })
    }
}

/// Opens the backup repository at `location`: `s3://BUCKET/PREFIX` (through `ObjectStoreKv`,
/// with the configuration's S3 endpoint, region and credentials) or a local directory
/// (through `FileStore`, created if needed). S3 options are the configuration's plus those of
/// `options` (credentials an application holds). An encrypted repository is unlocked with
/// `access`'s password. With `create`, a repository is created there if there is none,
/// encrypted if `access` has a password; a new `s3://` repository must be (unless
/// `access.insecure_no_password`).
///
/// # Errors
/// `NotFound` if there is no repository and `create` is off; `InvalidInput` for a bad URL,
/// a missing or wrong password, or a new `s3://` repository without one; `Unsupported` for
/// `s3://` without the `sync` feature; `Locked` if another process has the directory open;
/// errors of the store.
pub async fn open_repository(
    config: &StorageConfig,
    options: &crate::OpenOptions,
    location: &str,
    create: bool,
    access: &RepositoryAccess,
) -> Result<Repository> {
    let remote = location.starts_with("s3://");
    let store: Arc<dyn KvStore> = if remote {
        #[cfg(feature = "sync")]
        {
            let url: hybridstore_sync::RemoteUrl = location.parse()?;
            Arc::new(
                hybridstore_sync::ObjectStoreKv::open_url(
                    &url,
                    &options.s3_options(config),
                    hybridstore_sync::ObjectStoreKvOptions::default(),
                )
                .await?,
            )
        }
        #[cfg(not(feature = "sync"))]
        {
            let _ = (config, options);
            return Err(Error::new(
                ErrorKind::Unsupported,
                "an s3:// backup repository needs the `sync` feature",
            ));
        }
    } else {
        #[cfg(feature = "file")]
        {
            let _ = (config, options);
            Arc::new(hybridstore_file::FileStore::open(location).await?)
        }
        #[cfg(not(feature = "file"))]
        {
            return Err(Error::new(
                ErrorKind::Unsupported,
                "a directory backup repository needs the `file` feature",
            ));
        }
    };
    let password = access.password.as_ref();
    match Repository::open_with(store.clone(), password).await {
        Err(e) if e.kind() == ErrorKind::NotFound && create => {
            if remote && password.is_none() && !access.insecure_no_password {
                return Err(Error::invalid_input(format!(
                    "{location}: a new s3:// backup repository is encrypted: give a password \
                     (--password-file FILE or {PASSWORD_ENV}), or --insecure-no-password to \
                     store it in the clear"
                ))
                .with_retryable(false));
            }
            // Another process may create it meanwhile: then it is opened.
            match Repository::init_with(store.clone(), password).await {
                Err(e) if e.kind() == ErrorKind::Conflict => {
                    Repository::open_with(store, password).await
                }
                other => other,
            }
        }
        other => other,
    }
}

/// Options of [`restore_system`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RestoreOptions {
    /// Restore only the keys starting with this prefix (and no SQL, LanceDB or analytics
    /// files).
    pub prefix: Option<String>,
    /// Write into a data directory that is not empty: keys are written over what is there,
    /// files replaced.
    pub force: bool,
}

impl RestoreOptions {
    /// Options restoring only keys under `prefix`.
    pub fn with_prefix(prefix: impl Into<String>) -> Self {
        RestoreOptions {
            prefix: Some(prefix.into()),
            force: false,
        }
    }
    /// Sets `force`.
    pub fn with_force(mut self, force: bool) -> Self {
        self.force = force;
        self
    }
}

/// What [`restore_system`] did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SystemRestoreReport {
    /// The snapshot restored.
    pub snapshot: String,
    /// `files` when the database file and chunk packs were put back, `keys` when the keys
    /// were written through the stack.
    pub method: &'static str,
    /// Keys restored.
    pub keys: u64,
    /// Bytes of their values.
    pub key_bytes: u64,
    /// Files restored (database, LanceDB, analytics).
    pub files: u64,
    /// Bytes of those files.
    pub file_bytes: u64,
    /// Chunks written into new packs (the `files` method).
    pub chunks: u64,
    /// Wall time, milliseconds.
    pub elapsed_ms: u64,
}

fn is_empty_dir(dir: &Path) -> Result<bool> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => Ok(entries.next().is_none()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(io(e, dir)),
    }
}

/// Restores snapshot `name` (`latest` or an id prefix) of `repo` into `config.data_dir`,
/// which must be empty or absent unless `options.force`; the system is then opened with
/// `config` to check it works (and closed again). `config` should match the system backed up
/// (primary and dedup setting); with a different one the keys are written through its stack.
///
/// # Errors
/// `InvalidInput` if the data directory is not empty (without `force`); `NotFound` for an
/// unknown snapshot; `Corrupted` if anything read back fails its checksum (the restore
/// stops: a damaged snapshot never yields wrong bytes); errors of opening the system.
pub async fn restore_system(
    repo: &Repository,
    name: &str,
    config: StorageConfig,
    options: &RestoreOptions,
    on_progress: &(dyn Fn(RestoreProgress) + Send + Sync),
) -> Result<SystemRestoreReport> {
    let started = Instant::now();
    let (id, snapshot) = repo.resolve(name).await?;
    let data_dir = config.data_dir.clone();
    let empty = {
        let dir = data_dir.clone();
        tokio::task::spawn_blocking(move || is_empty_dir(&dir))
            .await
            .map_err(|e| Error::backend(format!("reading the data directory: {e}")))??
    };
    if !empty && !options.force {
        return Err(Error::invalid_input(format!(
            "{} is not empty; restore into an empty directory, or force it",
            data_dir.display()
        )));
    }
    let lock = repo.lock(false).await?;
    let result = restore_locked(repo, id, snapshot, config, options, empty, on_progress).await;
    lock.release().await?;
    let mut report = result?;
    report.elapsed_ms = started.elapsed().as_millis() as u64;
    Ok(report)
}

async fn restore_locked(
    repo: &Repository,
    id: String,
    snapshot: hybridstore_backup::Snapshot,
    config: StorageConfig,
    options: &RestoreOptions,
    empty: bool,
    on_progress: &(dyn Fn(RestoreProgress) + Send + Sync),
) -> Result<SystemRestoreReport> {
    let data_dir = config.data_dir.clone();
    let mut report = SystemRestoreReport {
        snapshot: id.clone(),
        ..SystemRestoreReport::default()
    };
    let whole = options.prefix.is_none();
    let sql_item = snapshot.files().find(|i| i.name == SQL_ITEM);
    let by_files = whole
        && empty
        && config.dedup
        && config.primary == PrimaryStore::Sql
        && config.sql_url.is_none()
        && sql_item.is_some();
    // Files first: the system opens on them.
    if whole {
        for item in snapshot.files() {
            let target = match item.name.as_str() {
                SQL_ITEM if by_files => data_dir.join(KV_SQLITE_FILE),
                SQL_ITEM => continue,
                DOCUMENTS_ITEM => data_dir.join(DOCUMENTS_ITEM),
                ANALYTICS_ITEM if config.analytics => data_dir.join(ANALYTICS_FILE),
                n if n.starts_with(LANCE_ITEM_PREFIX) && config.vectors => {
                    let rel = &n[LANCE_ITEM_PREFIX.len()..];
                    data_dir.join(LANCE_DIR).join(rel)
                }
                _ => continue,
            };
            report.file_bytes += hybridstore_backup::restore_file(repo, item, &target).await?;
            report.files += 1;
        }
    }
    let tree = hybridstore_backup::read_tree(repo, &snapshot).await?;
    if by_files {
        report.method = "files";
        let (chunks, keys, bytes) = restore_chunks(repo, &tree, &data_dir, on_progress).await?;
        report.chunks = chunks;
        report.keys = keys;
        report.key_bytes = bytes;
        let system = HybridStorageSystem::open_with(config, crate::OpenOptions::command()).await?;
        system.shutdown().await?;
    } else {
        report.method = "keys";
        let system = HybridStorageSystem::open_with(config, crate::OpenOptions::command()).await?;
        let restored = hybridstore_backup::restore_keys(
            repo,
            &snapshot,
            system.uncached.as_ref(),
            options.prefix.as_deref().map(str::as_bytes),
            on_progress,
        )
        .await?;
        report.keys = restored.keys;
        report.key_bytes = restored.key_bytes;
        system.shutdown().await?;
    }
    Ok(report)
}

/// Writes the chunks of every non-inline value of `tree` into new packs under
/// `<data_dir>/chunks`; returns chunks, keys and value bytes.
async fn restore_chunks(
    repo: &Repository,
    tree: &[hybridstore_backup::TreeEntry],
    data_dir: &Path,
    on_progress: &(dyn Fn(RestoreProgress) + Send + Sync),
) -> Result<(u64, u64, u64)> {
    let dir: PathBuf = data_dir.join(CHUNKS_DIR);
    let backend: Arc<dyn KvStore> = crate::open_chunk_dir(&dir).await?;
    let store = ChunkStore::open(backend, DEFAULT_TARGET_PACK_SIZE).await?;
    let mut progress = RestoreProgress {
        keys_total: tree.len() as u64,
        bytes_total: tree.iter().map(|e| e.size).sum(),
        ..RestoreProgress::default()
    };
    on_progress(progress);
    let mut seen: HashSet<ChunkId> = HashSet::new();
    let mut batch = Vec::new();
    let mut batch_bytes = 0usize;
    let mut chunks = 0u64;
    for entry in tree {
        if !entry.inline {
            // Each chunk once, read ahead and checked by the repository's chunk stream.
            let fresh: Vec<(ChunkId, u32)> = entry
                .chunks
                .iter()
                .filter(|(id, _)| seen.insert(*id))
                .copied()
                .collect();
            let mut pieces = std::pin::pin!(repo.chunk_stream(&fresh));
            for (id, _) in &fresh {
                let Some(data) = pieces.next().await else {
                    break;
                };
                let data = data.map_err(|e| e.with_context("key", entry.display_key()))?;
                batch_bytes += data.len();
                batch.push((*id, data));
                chunks += 1;
                if batch_bytes >= RESTORE_CHUNK_BATCH {
                    store.store_chunks(&std::mem::take(&mut batch)).await?;
                    batch_bytes = 0;
                }
            }
        }
        progress.keys_done += 1;
        progress.bytes_done += entry.size;
        if progress.keys_done.is_multiple_of(256) {
            on_progress(progress);
        }
    }
    store.store_chunks(&batch).await?;
    on_progress(progress);
    Ok((chunks, progress.keys_done, progress.bytes_done))
}

/// What the scheduled backups ([`StorageConfig::backup_schedule`]) have done since the
/// system opened (see [`HybridStorageSystem::backup_schedule_status`]).
#[derive(Clone, Debug, Default, Serialize)]
#[non_exhaustive]
pub struct ScheduleStatus {
    /// The repository.
    pub repository: String,
    /// Snapshots taken.
    pub snapshots: u64,
    /// Attempts that failed (the next one tries again).
    pub failures: u64,
    /// Why the last attempt failed; `None` once one succeeds.
    pub last_error: Option<String>,
    /// The id of the last snapshot taken.
    pub last_snapshot: Option<String>,
    /// When it finished.
    pub last_time: Option<std::time::SystemTime>,
    /// Snapshots the retention removed, in all.
    pub forgotten: u64,
}

/// One scheduled backup, then the retention if the schedule has one.
async fn scheduled_backup(
    capture: &Capture,
    schedule: &crate::BackupSchedule,
    options: &crate::OpenOptions,
) -> Result<(String, u64)> {
    let access = RepositoryAccess::from_sources(schedule.password_file.as_deref())?;
    let repo = open_repository(
        &capture.config,
        options,
        &schedule.repository,
        true,
        &access,
    )
    .await?;
    let report = capture
        .backup_to(&repo, vec!["scheduled".to_string()], &|_| {})
        .await?;
    let mut forgotten = 0;
    if schedule.retention_days > 0 {
        let policy = hybridstore_backup::RetentionPolicy {
            last: 1,
            within: Some(hybridstore_backup::CalendarSpan {
                days: schedule.retention_days,
                ..Default::default()
            }),
            ..Default::default()
        };
        forgotten = hybridstore_backup::forget(&repo, &policy, false)
            .await?
            .removed;
        hybridstore_backup::prune(&repo, &hybridstore_backup::PruneOptions::default()).await?;
    }
    Ok((report.id, forgotten))
}

async fn schedule_loop(
    capture: Capture,
    schedule: crate::BackupSchedule,
    options: crate::OpenOptions,
    mut stop: tokio::sync::watch::Receiver<bool>,
    status: Arc<tokio::sync::watch::Sender<ScheduleStatus>>,
) {
    let interval = std::time::Duration::from_secs(schedule.interval_seconds);
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                // A backup under way is never cut short by a stop: it finishes first.
                match scheduled_backup(&capture, &schedule, &options).await {
                    Ok((id, forgotten)) => {
                        tracing::info!(snapshot = %id, forgotten, "scheduled backup done");
                        status.send_modify(|s| {
                            s.snapshots += 1;
                            s.forgotten += forgotten;
                            s.last_error = None;
                            s.last_snapshot = Some(id);
                            s.last_time = Some(std::time::SystemTime::now());
                        });
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "scheduled backup failed; the next one tries again");
                        status.send_modify(|s| {
                            s.failures += 1;
                            s.last_error = Some(e.to_string());
                        });
                    }
                }
            }
            _ = stop.changed() => return,
        }
    }
}

impl HybridStorageSystem {
    /// With [`StorageConfig::backup_schedule`] set and background tasks allowed, starts the
    /// scheduled backups.
    pub(crate) fn start_schedule(mut self) -> Self {
        let Some(schedule) = self.config.backup_schedule.clone() else {
            return self;
        };
        if !self.options.background_tasks() {
            return self;
        }
        let initial = ScheduleStatus {
            repository: schedule.repository.clone(),
            ..ScheduleStatus::default()
        };
        let (capture, options) = (self.capture(), self.options.clone());
        self.schedule = Some(Arc::new(crate::background::BackgroundTask::spawn(
            initial,
            |stop, status| schedule_loop(capture, schedule, options, stop, status),
        )));
        self
    }

    /// Stops the scheduled backups (one under way finishes first).
    pub(crate) async fn stop_schedule(&self) {
        if let Some(scheduler) = &self.schedule {
            scheduler.stop("scheduled backup").await;
        }
    }

    /// The scheduled backups' progress, when [`StorageConfig::backup_schedule`] is set and
    /// background tasks are on (else `None`): a receiver that sees every update, so a caller
    /// can wait for the next snapshot with `changed()`.
    pub fn backup_schedule_status(&self) -> Option<tokio::sync::watch::Receiver<ScheduleStatus>> {
        self.schedule.as_ref().map(|s| s.subscribe())
    }
}
