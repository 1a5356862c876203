//! The storage modes' stores: the S3 primary (manifests and chunk packs in S3, optionally
//! behind a disk cache) and where LanceDB lives. See [`StorageMode`](crate::StorageMode).

use std::fmt;
use std::sync::Arc;

use hybridstore_core::{Error, KvStore, Result};

use crate::StorageConfig;
use crate::stack::Layer;

/// Subdirectory of the data directory that holds the S3 primary's disk cache.
pub const S3_CACHE_DIR: &str = "s3-cache";

/// How [`HybridStorageSystem::open_with`](crate::HybridStorageSystem::open_with) opens a
/// system, beyond its configuration.
///
/// `Debug` output shows the names of the S3 options, never their values.
#[derive(Clone)]
pub struct OpenOptions {
    background_tasks: bool,
    s3_options: Vec<(String, String)>,
}

impl fmt::Debug for OpenOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.s3_options.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("OpenOptions")
            .field("background_tasks", &self.background_tasks)
            .field("s3_options", &names)
            .finish()
    }
}

impl Default for OpenOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl OpenOptions {
    /// A long-running process: background tasks on (the backup push, the pull on startup),
    /// S3 reached with the configuration's region and endpoint and the AWS variables'
    /// credentials.
    pub fn new() -> Self {
        OpenOptions {
            background_tasks: true,
            s3_options: Vec::new(),
        }
    }

    /// A short command (the CLI): no background push and no pull on startup, so a `get`
    /// stays a local read; `sync` runs only when asked.
    pub fn command() -> Self {
        Self::new().with_background_tasks(false)
    }

    /// Sets whether background tasks run.
    pub fn with_background_tasks(mut self, on: bool) -> Self {
        self.background_tasks = on;
        self
    }

    /// Adds an object_store S3 option (`aws_access_key_id`, `aws_secret_access_key`,
    /// `aws_session_token`, …) for every S3 store the system opens (primary, backup,
    /// LanceDB), applied after the configuration's: for applications that hold credentials
    /// from somewhere other than the environment. Values never appear in `Debug` output.
    pub fn with_s3_option(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.s3_options.push((key.into(), value.into()));
        self
    }

    /// Whether background tasks run.
    pub fn background_tasks(&self) -> bool {
        self.background_tasks
    }

    /// The configuration's S3 options followed by these.
    pub(crate) fn s3_options(&self, config: &StorageConfig) -> Vec<(String, String)> {
        let mut options = config.s3_storage_options();
        options.extend(self.s3_options.iter().cloned());
        options
    }
}

/// The opened S3 primary: the manifest store, the dedup layer over the chunk store, and the
/// disk cache in front of both when the mode has one.
pub(crate) struct S3Primary {
    pub kv: Arc<dyn KvStore>,
    pub dedup: Option<Layer>,
    pub disk_cache: Option<hybridstore_cache::DiskCache>,
}

/// `<s3_prefix>/<leaf>`, or `<leaf>` for an empty prefix.
fn join(prefix: &str, leaf: &str) -> String {
    match prefix.trim_matches('/') {
        "" => leaf.to_string(),
        p => format!("{p}/{leaf}"),
    }
}

/// Opens the S3 primary of `config`: `ObjectStoreKv`s at `s3://<bucket>/<prefix>/kv`
/// (manifests, or values without dedup) and `…/chunks` (packs), each behind the disk cache
/// if the mode has one. A store written with dedup is never opened without it, nor the
/// other way round.
#[cfg(feature = "sync")]
pub(crate) async fn open_s3_primary(
    config: &StorageConfig,
    options: &OpenOptions,
) -> Result<S3Primary> {
    use hybridstore_cache::{DiskCache, DiskCacheConfig, Freshness};
    use hybridstore_core::KeyRange;
    use hybridstore_sync::{ObjectStoreKv, ObjectStoreKvOptions, RemoteUrl};

    let bucket = config
        .s3_bucket
        .clone()
        .ok_or_else(|| Error::invalid_input("use_s3_as_primary needs s3_bucket"))?;
    let s3_options = options.s3_options(config);
    let open = |leaf: &str| {
        let url = RemoteUrl::S3 {
            bucket: bucket.clone(),
            prefix: join(&config.s3_prefix, leaf),
        };
        let s3_options = s3_options.clone();
        async move { ObjectStoreKv::open_url(&url, &s3_options, ObjectStoreKvOptions::default()).await }
    };
    let (kv, chunks) = futures::try_join!(open("kv"), open("chunks"))?;
    let has_packs = !chunks
        .list_keys(KeyRange::prefix(hybridstore_dedup::PACK_PREFIX), Some(1))
        .await?
        .is_empty();
    let has_keys = !kv.list_keys(KeyRange::all(), Some(1)).await?.is_empty();
    if !config.dedup && has_packs {
        return Err(Error::invalid_input(format!(
            "s3://{bucket}/{} holds dedup chunk packs; open it with dedup = true",
            join(&config.s3_prefix, "chunks")
        )));
    }
    if config.dedup && !has_packs && has_keys {
        return Err(Error::invalid_input(format!(
            "s3://{bucket}/{} holds values written without dedup; open it with dedup = false",
            join(&config.s3_prefix, "kv")
        )));
    }
    let (kv, chunks, disk_cache): (Arc<dyn KvStore>, Arc<dyn KvStore>, _) =
        if config.local_cache_enabled {
            let cache = DiskCache::open(
                DiskCacheConfig::new(config.data_dir.join(S3_CACHE_DIR))
                    .with_capacity_bytes(config.local_cache_bytes),
            )
            .await?;
            let ttl = std::time::Duration::from_secs(config.cache_l1_ttl_secs);
            (
                Arc::new(cache.layer(kv, "kv", Freshness::Ttl(ttl))),
                Arc::new(cache.layer(chunks, "chunks", Freshness::Immutable)),
                Some(cache),
            )
        } else {
            (Arc::new(kv), Arc::new(chunks), None)
        };
    let dedup = config.dedup.then(|| Layer::Dedup {
        chunks,
        options: hybridstore_dedup::DedupOptions::default(),
    });
    Ok(S3Primary {
        kv,
        dedup,
        disk_cache,
    })
}

#[cfg(not(feature = "sync"))]
pub(crate) async fn open_s3_primary(
    _config: &StorageConfig,
    _options: &OpenOptions,
) -> Result<S3Primary> {
    Err(Error::new(
        hybridstore_core::ErrorKind::Unsupported,
        "use_s3_as_primary needs the `sync` feature (its ObjectStoreKv)",
    ))
}

/// Opens LanceDB at [`lancedb_uri`](StorageConfig::lancedb_uri), or `<data_dir>/lance`.
#[cfg(feature = "vectors")]
pub(crate) async fn open_lance(
    config: &StorageConfig,
    options: &OpenOptions,
) -> Result<hybridstore_vector::LanceVectorStore> {
    let uri = match &config.lancedb_uri {
        Some(uri) => uri.clone(),
        None => {
            let dir = config.data_dir.join(crate::LANCE_DIR);
            dir.to_str()
                .ok_or_else(|| {
                    Error::invalid_input(format!("data directory {} is not UTF-8", dir.display()))
                })?
                .to_string()
        }
    };
    let mut lance = hybridstore_vector::LanceOptions::default();
    if uri.starts_with("s3://") {
        lance.storage_options = options.s3_options(config);
    }
    hybridstore_vector::LanceVectorStore::open(&uri, lance).await
}
