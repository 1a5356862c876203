//! Background upkeep of a long-running system (seeds 000 and 004's automatic lifecycle
//! management), each job on its own interval from the configuration, `0` turning it off:
//!
//! - session expiry ([`StorageConfig::upkeep_session_expiry_secs`]): expired rows of the
//!   SQL `sessions` table deleted (they already read as absent; this reclaims the space);
//! - vector TTL purge ([`StorageConfig::upkeep_vector_purge_secs`]): records past their
//!   `expires_at` deleted from every LanceDB collection;
//! - LanceDB optimize ([`StorageConfig::upkeep_lancedb_optimize_secs`]): every collection
//!   compacted, its indexes brought up to date, versions older than LanceDB's 7 days pruned;
//! - chunk GC ([`StorageConfig::upkeep_chunk_gc_secs`]): dedup packs no manifest needs
//!   reclaimed, with [`StorageConfig::upkeep_chunk_gc_grace_secs`] of grace, never while a
//!   backup is taken (the system's upkeep lock).
//!
//! Scheduled backups and the S3 backup push have their own tasks (see
//! [`snapshots`](crate::snapshots) and [`StorageMode::LocalWithS3Backup`](crate::StorageMode)).
//! The task runs only when [`OpenOptions`](crate::OpenOptions) allow background tasks (not
//! in the CLI); it never holds the system itself, so dropping the last clone stops it, and
//! [`shutdown`](crate::HybridStorageSystem::shutdown) stops it after the job under way.
//! A failed job is logged and counted in [`UpkeepStatus`]; the next interval tries again.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::background::BackgroundTask;
use crate::{HybridStorageSystem, StorageConfig};

/// What the upkeep task has done since the system opened. Read with
/// [`HybridStorageSystem::upkeep_status`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct UpkeepStatus {
    /// Session expiry runs finished.
    pub session_expiry_runs: u64,
    /// Expired sessions deleted in all.
    pub sessions_deleted: u64,
    /// Vector TTL purges finished (each over every collection).
    pub vector_purge_runs: u64,
    /// Expired vector records deleted in all.
    pub vectors_purged: u64,
    /// LanceDB optimize runs finished (each over every collection).
    pub optimize_runs: u64,
    /// Chunk garbage collections finished.
    pub gc_runs: u64,
    /// Bytes of packs the collections freed in all.
    pub gc_bytes_freed: u64,
    /// Jobs that failed.
    pub failures: u64,
    /// The last failure's job and message, cleared by the next success of any job.
    pub last_error: Option<String>,
    /// When the last job finished.
    pub last_run: Option<SystemTime>,
}

/// The jobs, by the configuration field that sets their interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Job {
    SessionExpiry,
    VectorPurge,
    LanceOptimize,
    ChunkGc,
}

impl Job {
    fn name(self) -> &'static str {
        match self {
            Job::SessionExpiry => "session expiry",
            Job::VectorPurge => "vector TTL purge",
            Job::LanceOptimize => "LanceDB optimize",
            Job::ChunkGc => "chunk GC",
        }
    }

    fn interval_secs(self, config: &StorageConfig) -> u64 {
        match self {
            Job::SessionExpiry => config.upkeep_session_expiry_secs,
            Job::VectorPurge => config.upkeep_vector_purge_secs,
            Job::LanceOptimize => config.upkeep_lancedb_optimize_secs,
            Job::ChunkGc => config.upkeep_chunk_gc_secs,
        }
    }
}

/// What the task needs of the system, without the system itself.
struct Context {
    config: StorageConfig,
    upkeep: Arc<tokio::sync::Mutex<()>>,
    dedup: Option<Arc<crate::DedupPrimary>>,
    #[cfg(feature = "sql")]
    sql: Option<Arc<hybridstore_sql::SqlStore>>,
    #[cfg(feature = "vectors")]
    vectors: Option<hybridstore_vector::LanceVectorStore>,
}

impl Context {
    /// Whether `job` has anything to work on in this system.
    fn applies(&self, job: Job) -> bool {
        match job {
            #[cfg(feature = "sql")]
            Job::SessionExpiry => self.sql.is_some(),
            #[cfg(feature = "vectors")]
            Job::VectorPurge | Job::LanceOptimize => self.vectors.is_some(),
            Job::ChunkGc => self.dedup.is_some(),
            #[allow(unreachable_patterns)] // reached when a feature is off
            _ => false,
        }
    }

    /// Runs `job` once and records its outcome in `status`.
    async fn run(&self, job: Job, status: &tokio::sync::watch::Sender<UpkeepStatus>) {
        match self.work(job, status).await {
            Ok(()) => status.send_modify(|s| {
                s.last_error = None;
                s.last_run = Some(SystemTime::now());
            }),
            Err(e) => {
                tracing::warn!(job = job.name(), error = %e, "upkeep job failed; the next interval tries again");
                status.send_modify(|s| {
                    s.failures += 1;
                    s.last_error = Some(format!("{}: {e}", job.name()));
                    s.last_run = Some(SystemTime::now());
                });
            }
        }
    }

    async fn work(
        &self,
        job: Job,
        status: &tokio::sync::watch::Sender<UpkeepStatus>,
    ) -> hybridstore_core::Result<()> {
        match job {
            #[cfg(feature = "sql")]
            Job::SessionExpiry => {
                if let Some(sql) = &self.sql {
                    let deleted = sql.sessions().delete_expired().await?;
                    status.send_modify(|s| {
                        s.session_expiry_runs += 1;
                        s.sessions_deleted += deleted;
                    });
                }
            }
            #[cfg(feature = "vectors")]
            Job::VectorPurge => {
                if let Some(store) = &self.vectors {
                    use hybridstore_core::vector::VectorStore;
                    let mut purged = 0;
                    for collection in store.list_collections().await? {
                        purged += store.purge_expired(&collection).await?;
                    }
                    status.send_modify(|s| {
                        s.vector_purge_runs += 1;
                        s.vectors_purged += purged;
                    });
                }
            }
            #[cfg(feature = "vectors")]
            Job::LanceOptimize => {
                if let Some(store) = &self.vectors {
                    use hybridstore_core::vector::VectorStore;
                    for collection in store.list_collections().await? {
                        store.optimize(&collection).await?;
                    }
                    status.send_modify(|s| s.optimize_runs += 1);
                }
            }
            Job::ChunkGc => {
                if let Some(dedup) = &self.dedup {
                    let mut options = hybridstore_dedup::GcOptions::default();
                    options.grace = Duration::from_secs(self.config.upkeep_chunk_gc_grace_secs);
                    // Never while a backup is taken (it relies on the chunks it has seen).
                    let _no_backup = self.upkeep.lock().await;
                    let report = dedup.collect_garbage(&options).await?;
                    status.send_modify(|s| {
                        s.gc_runs += 1;
                        s.gc_bytes_freed += report.bytes_freed;
                    });
                }
            }
            #[allow(unreachable_patterns)] // reached when a feature is off
            _ => {}
        }
        Ok(())
    }
}

/// The task: every job that applies on its interval (the first one interval after opening),
/// one job at a time.
async fn upkeep_loop(
    context: Context,
    mut stop: tokio::sync::watch::Receiver<bool>,
    status: Arc<tokio::sync::watch::Sender<UpkeepStatus>>,
) {
    let jobs = [
        Job::SessionExpiry,
        Job::VectorPurge,
        Job::LanceOptimize,
        Job::ChunkGc,
    ];
    let mut tickers: Vec<(Job, tokio::time::Interval)> = jobs
        .into_iter()
        .filter(|&job| job.interval_secs(&context.config) > 0 && context.applies(job))
        .map(|job| {
            let every = Duration::from_secs(job.interval_secs(&context.config));
            let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            (job, ticker)
        })
        .collect();
    if tickers.is_empty() {
        return;
    }
    loop {
        let next = futures::future::select_all(tickers.iter_mut().map(|(job, ticker)| {
            let job = *job;
            Box::pin(async move {
                ticker.tick().await;
                job
            })
        }));
        tokio::select! {
            (job, _, _) = next => context.run(job, &status).await,
            _ = stop.changed() => return,
        }
    }
}

impl HybridStorageSystem {
    /// With background tasks allowed and any upkeep interval set, starts the upkeep task.
    pub(crate) fn start_upkeep(mut self) -> Self {
        if !self.options.background_tasks() {
            return self;
        }
        let context = Context {
            config: self.config.clone(),
            upkeep: self.upkeep.clone(),
            dedup: self.dedup.clone(),
            #[cfg(feature = "sql")]
            sql: self.sql.clone(),
            #[cfg(feature = "vectors")]
            vectors: self.vectors.clone(),
        };
        self.upkeep_task = Some(Arc::new(BackgroundTask::spawn(
            UpkeepStatus::default(),
            |stop, status| upkeep_loop(context, stop, status),
        )));
        self
    }

    /// Stops the upkeep task (a job under way finishes first).
    pub(crate) async fn stop_upkeep(&self) {
        if let Some(upkeep) = &self.upkeep_task {
            upkeep.stop("upkeep").await;
        }
    }

    /// What background upkeep has done (see the [`upkeep`](crate::upkeep) module), when
    /// background tasks are on (else `None`): a receiver that sees every update, so a caller
    /// can wait for the next job with `changed()`.
    pub fn upkeep_status(&self) -> Option<tokio::sync::watch::Receiver<UpkeepStatus>> {
        self.upkeep_task.as_ref().map(|u| u.subscribe())
    }
}
