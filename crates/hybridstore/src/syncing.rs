//! Sync of the system's keys with a remote (feature `sync`): see [`hybridstore_sync`].

use std::sync::Arc;

use hybridstore_core::{Error, KvStore, Result};
use hybridstore_sync::{
    Direction, ObjectStoreKvOptions, Remote, RemoteUrl, SyncEngine, SyncOptions, SyncProgress,
    SyncReport,
};

use crate::HybridStorageSystem;

/// File in the data directory that holds the sync state (SQLite): per remote, what was last
/// synced and the remote's entries.
pub const SYNC_STATE_FILE: &str = "sync.db";

impl HybridStorageSystem {
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
        let url: RemoteUrl = match remote {
            Some(url) => url.parse()?,
            None => self
                .config()
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
            &self.config().s3_storage_options(),
            ObjectStoreKvOptions::default(),
        )
        .await?;
        let state = hybridstore_sql::SqlStore::open_sqlite_file(
            self.config().data_dir.join(SYNC_STATE_FILE),
            Default::default(),
        )
        .await?;
        let state: Arc<dyn KvStore> = Arc::new(state);
        Ok(SyncEngine::new(self.kv().clone(), state, remote))
    }

    /// Syncs with `remote` (see [`sync_engine`](Self::sync_engine)) in `direction`, then,
    /// with vectors on, brings the passages of the keys the sync wrote or deleted here up
    /// to date, so `search` on a device that pulled finds what it finds on the device that
    /// pushed.
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
        let engine = self.sync_engine(remote).await?;
        let report = engine.run(direction, options, on_progress).await?;
        #[cfg(feature = "vectors")]
        if let Some(store) = self.vectors()
            && !(report.written_local.is_empty() && report.deleted_local_keys.is_empty())
        {
            crate::search::index_keys(
                store,
                self.uncached.as_ref(),
                &report.written_local,
                &report.deleted_local_keys,
            )
            .await?;
        }
        Ok(report)
    }
}
