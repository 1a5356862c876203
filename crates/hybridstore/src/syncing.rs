//! Sync of the system's keys with a remote (feature `sync`): see [`hybridstore_sync`].

use std::sync::Arc;

use hybridstore_core::{Error, KvStore, Result};
use hybridstore_sync::{ObjectStoreKvOptions, Remote, RemoteUrl, SyncEngine};

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
}
