//! Sync of the system's keys with a remote (feature `sync`): see [`hybridstore_sync`]. Also
//! the background push of [`StorageMode::LocalWithS3Backup`](crate::StorageMode).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hybridstore_core::{Error, KvStore, Result};
use hybridstore_sync::{
    Direction, ObjectStoreKvOptions, Remote, RemoteUrl, SyncEngine, SyncOptions, SyncProgress,
    SyncReport,
};
use serde::Serialize;
use tokio::sync::watch;

use crate::{HybridStorageSystem, OpenOptions, StorageConfig, StorageMode};

/// File in the data directory that holds the sync state (SQLite): per remote, what was last
/// synced and the remote's entries.
pub const SYNC_STATE_FILE: &str = "sync.db";

/// What the background push of [`StorageMode::LocalWithS3Backup`] has done since the system
/// opened (see [`HybridStorageSystem::backup_status`]).
#[derive(Clone, Debug, Default, Serialize)]
#[non_exhaustive]
pub struct BackupStatus {
    /// The backup remote.
    pub remote: String,
    /// Background pushes that finished.
    pub pushes: u64,
    /// Background pushes that failed (the remote unreachable, the max-delete limit, …);
    /// the next one sends what they did not.
    pub failures: u64,
    /// Why the last attempt failed; `None` once one succeeds.
    pub last_error: Option<String>,
    /// When the last push finished.
    pub last_push: Option<SystemTime>,
    /// Values the pushes sent, in all.
    pub uploaded: u64,
    /// Deletions the pushes sent, in all.
    pub deleted_remote: u64,
    /// Values the pull at startup brought (`None` if none ran or it failed).
    pub startup_pulled: Option<u64>,
    /// Why the pull at startup failed, if it did (the system opened anyway).
    pub startup_pull_error: Option<String>,
}

/// What a sync needs from the system, without the system itself (the background task must
/// not keep the data directory's lock alive).
#[derive(Clone)]
struct SyncContext {
    kv: Arc<dyn KvStore>,
    config: StorageConfig,
    options: OpenOptions,
    lock: Arc<tokio::sync::Mutex<()>>,
}

impl SyncContext {
    /// A sync engine between the system's store and `remote` (or the configured one).
    async fn engine(&self, remote: Option<&str>) -> Result<SyncEngine> {
        let url: RemoteUrl = match remote {
            Some(url) => url.parse()?,
            None => self
                .config
                .default_remote()
                .ok_or_else(|| {
                    Error::invalid_input(
                        "no remote: pass --remote s3://BUCKET/PREFIX (or a directory), or set \
                         S3_BACKUP_BUCKET or S3_BUCKET",
                    )
                })?
                .parse()?,
        };
        let remote = Remote::open(
            &url,
            &self.options.s3_options(&self.config),
            ObjectStoreKvOptions::default(),
        )
        .await?;
        let state = hybridstore_sql::SqlStore::open_sqlite_file(
            self.config.data_dir.join(SYNC_STATE_FILE),
            Default::default(),
        )
        .await?;
        let state: Arc<dyn KvStore> = Arc::new(state);
        Ok(SyncEngine::new(self.kv.clone(), state, remote))
    }

    /// One push to the backup remote with `engine` (opened first if `None`, dropped after a
    /// failure so the next push reconnects), recorded in `status`.
    async fn push(
        &self,
        engine: &mut Option<SyncEngine>,
        status: &watch::Sender<BackupStatus>,
    ) -> Result<SyncReport> {
        let _one_sync = self.lock.lock().await;
        let outcome = async {
            if engine.is_none() {
                *engine = Some(self.engine(None).await?);
            }
            let engine = engine.as_ref().expect("opened above");
            engine
                .run(Direction::Push, &SyncOptions::default(), |_| {})
                .await
        }
        .await;
        match &outcome {
            Ok(report) => {
                tracing::debug!(
                    uploaded = report.uploaded,
                    deleted = report.deleted_remote,
                    "pushed to the backup remote"
                );
                status.send_modify(|s| {
                    s.pushes += 1;
                    s.uploaded += report.uploaded;
                    s.deleted_remote += report.deleted_remote;
                    s.last_error = None;
                    s.last_push = Some(SystemTime::now());
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "push to the backup remote failed; the next one catches up");
                *engine = None;
                status.send_modify(|s| {
                    s.failures += 1;
                    s.last_error = Some(e.to_string());
                });
            }
        }
        outcome
    }
}

/// The background push (see [`StorageMode::LocalWithS3Backup`]).
pub(crate) struct Backup {
    /// `true` asks the task for a last push and to stop; dropping it stops the task without
    /// one (the system was dropped without `shutdown`).
    stop: watch::Sender<bool>,
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<Option<Result<SyncReport>>>>>,
    status: Arc<watch::Sender<BackupStatus>>,
}

impl std::fmt::Debug for Backup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backup")
            .field("status", &*self.status.borrow())
            .finish_non_exhaustive()
    }
}

/// The task: a push every `interval`, and a last one when asked to stop.
async fn backup_loop(
    ctx: SyncContext,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
    status: Arc<watch::Sender<BackupStatus>>,
) -> Option<Result<SyncReport>> {
    let mut engine = None;
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                // A push under way is never cut short by a stop: it finishes first.
                let _ = ctx.push(&mut engine, &status).await;
            }
            changed = stop.changed() => {
                return match changed {
                    Ok(()) if *stop.borrow() => Some(ctx.push(&mut engine, &status).await),
                    _ => None,
                };
            }
        }
    }
}

impl HybridStorageSystem {
    fn sync_context(&self) -> SyncContext {
        SyncContext {
            kv: self.kv().clone(),
            config: self.config().clone(),
            options: self.options.clone(),
            lock: self.sync_lock.clone(),
        }
    }

    /// In [`StorageMode::LocalWithS3Backup`] with background tasks allowed: pulls first if
    /// `sync_on_startup`, then starts the background push.
    pub(crate) async fn start_backup(mut self) -> Self {
        if self.mode() != StorageMode::LocalWithS3Backup || !self.options.background_tasks() {
            return self;
        }
        let mut initial = BackupStatus {
            remote: self.config().default_remote().unwrap_or_default(),
            ..BackupStatus::default()
        };
        if self.config().sync_on_startup {
            match self
                .sync(None, Direction::Pull, &SyncOptions::default(), |_| {})
                .await
            {
                Ok(report) => initial.startup_pulled = Some(report.downloaded),
                Err(e) => {
                    tracing::warn!(error = %e, "pull from the backup remote at startup failed; opening with the local data");
                    initial.startup_pull_error = Some(e.to_string());
                }
            }
        }
        let status = Arc::new(watch::Sender::new(initial));
        let (stop, stop_rx) = watch::channel(false);
        let interval = Duration::from_secs(self.config().s3_backup_interval_secs);
        let task = tokio::spawn(backup_loop(
            self.sync_context(),
            interval,
            stop_rx,
            status.clone(),
        ));
        self.backup = Some(Arc::new(Backup {
            stop,
            task: std::sync::Mutex::new(Some(task)),
            status,
        }));
        self
    }

    /// Stops the background push after one last push, and returns that push's report.
    pub(crate) async fn stop_backup(&self, backup: &Backup) -> Result<SyncReport> {
        let task = backup
            .task
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        let Some(task) = task else {
            return Err(Error::invalid_input(
                "the background push was already stopped",
            ));
        };
        let _ = backup.stop.send(true);
        match task.await {
            Ok(Some(outcome)) => outcome,
            Ok(None) => Err(Error::backend(
                "the background push stopped without its last push",
            )),
            Err(e) => Err(Error::backend(format!(
                "the background push task failed: {e}"
            ))),
        }
    }

    /// The background push's progress, in [`StorageMode::LocalWithS3Backup`] with background
    /// tasks on (else `None`): a receiver that sees every update, so a caller can wait for
    /// the next push with `changed()`.
    pub fn backup_status(&self) -> Option<watch::Receiver<BackupStatus>> {
        self.backup.as_ref().map(|b| b.status.subscribe())
    }

    /// The remote `remote` names (or, when `None`, the configured one:
    /// [`StorageConfig::default_remote`](crate::StorageConfig::default_remote)), opened with
    /// the configured S3 region and endpoint, and a sync engine between it and this
    /// system's store. Pulled values go through the whole stack (cache invalidation,
    /// access events); the state lives in `<data_dir>/sync.db`.
    ///
    /// # Errors
    /// `InvalidInput` if no remote is named or configured, or the URL is invalid;
    /// `Unavailable` if the remote cannot be reached within its timeout; errors of opening
    /// the state database.
    pub async fn sync_engine(&self, remote: Option<&str>) -> Result<SyncEngine> {
        self.sync_context().engine(remote).await
    }

    /// Syncs with `remote` (see [`sync_engine`](Self::sync_engine)) in `direction`, then,
    /// with vectors on, brings the passages of the keys the sync wrote or deleted here up
    /// to date, so `search` on a device that pulled finds what it finds on the device that
    /// pushed. Waits for a background push under way to finish first.
    ///
    /// # Errors
    /// As [`sync_engine`](Self::sync_engine) and [`SyncEngine::run`]; errors of updating
    /// the passages.
    pub async fn sync(
        &self,
        remote: Option<&str>,
        direction: Direction,
        options: &SyncOptions,
        on_progress: impl Fn(&SyncProgress) + Send + Sync,
    ) -> Result<SyncReport> {
        let _one_sync = self.sync_lock.lock().await;
        let engine = self.sync_engine(remote).await?;
        let report = engine.run(direction, options, on_progress).await?;
        #[cfg(feature = "vectors")]
        if let Some(store) = self.vectors()
            && !(report.written_local.is_empty() && report.deleted_local_keys.is_empty())
        {
            crate::search::index_keys(
                store,
                &self.config.lancedb_chunks_table_name,
                self.uncached.as_ref(),
                &report.written_local,
                &report.deleted_local_keys,
            )
            .await?;
        }
        Ok(report)
    }
}
