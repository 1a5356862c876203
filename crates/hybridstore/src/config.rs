//! `StorageConfig`: every setting of a `HybridStorageSystem`, with documented defaults.

use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use hybridstore_core::{Error, Result, SecretUrl};
use serde::{Deserialize, Serialize};

/// Prefix of the environment variables that override configuration values:
/// `HYBRIDSTORE_DATA_DIR`, `HYBRIDSTORE_IO_CONCURRENCY`, …
pub const ENV_PREFIX: &str = "HYBRIDSTORE_";

/// `HYBRIDSTORE_*` variables that are not configuration fields: the CLI's own
/// (`HYBRIDSTORE_CONFIG`, the `--config` file), the backup repository password
/// (`HYBRIDSTORE_BACKUP_PASSWORD`, a secret kept out of the configuration) and those of the
/// project's tests, benchmarks and tools. [`StorageConfig::load`] ignores them; any other `HYBRIDSTORE_*` variable must
/// name a field, or loading fails naming the variable.
pub const NON_CONFIG_ENV_VARS: &[&str] = &["HYBRIDSTORE_CONFIG", "HYBRIDSTORE_BACKUP_PASSWORD"];

/// Prefixes of `HYBRIDSTORE_*` variables reserved for the project's tests, benchmarks and
/// tools (`HYBRIDSTORE_TEST_POSTGRES_URL`, `HYBRIDSTORE_CRASH_SEED`, `HYBRIDSTORE_BENCH_DIR`,
/// …); like [`NON_CONFIG_ENV_VARS`], never configuration.
pub const NON_CONFIG_ENV_PREFIXES: &[&str] = &[
    "HYBRIDSTORE_TEST_",
    "HYBRIDSTORE_BENCH_",
    "HYBRIDSTORE_CRASH_",
    "HYBRIDSTORE_PROPTEST_",
    "HYBRIDSTORE_CANCEL_",
    "HYBRIDSTORE_SQL_STRESS_",
    "HYBRIDSTORE_ANALYTICS_CHILD_",
];

/// Whether the environment variable `name` is a configuration variable (`HYBRIDSTORE_*` and
/// not one of [`NON_CONFIG_ENV_VARS`] or [`NON_CONFIG_ENV_PREFIXES`]).
pub fn is_config_env_var(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    upper.starts_with(ENV_PREFIX)
        && !NON_CONFIG_ENV_VARS.contains(&upper.as_str())
        && !NON_CONFIG_ENV_PREFIXES.iter().any(|p| upper.starts_with(p))
}

/// Environment variables read without the `HYBRIDSTORE_` prefix, by the names applications
/// already use for them, below `HYBRIDSTORE_*` in precedence: `REDIS_URL` (the name Heroku,
/// Render and most Redis clients' examples use) sets [`StorageConfig::redis_url`]; the
/// variables of the design's seed set the fields of the same name (`S3_BUCKET` sets
/// [`StorageConfig::s3_bucket`], `USE_S3_AS_PRIMARY` [`StorageConfig::use_s3_as_primary`],
/// `LANCEDB_URI` [`StorageConfig::lancedb_uri`], …; booleans as `true`/`false`). Credentials are never configuration:
/// they come from the usual AWS variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
/// `AWS_SESSION_TOKEN`, `AWS_PROFILE` is not read) when a remote is opened.
pub const SEED_ENV_VARS: &[&str] = &[
    "REDIS_URL",
    "S3_BUCKET",
    "S3_PREFIX",
    "S3_REGION",
    "S3_ENDPOINT",
    "S3_BACKUP_BUCKET",
    "S3_BACKUP_PREFIX",
    "S3_STORAGE_ENABLED",
    "USE_S3_AS_PRIMARY",
    "LOCAL_CACHE_ENABLED",
    "S3_BACKUP_ENABLED",
    "SYNC_ON_STARTUP",
    "LANCEDB_URI",
    "LANCEDB_TABLE_NAME",
    "LANCEDB_CHUNKS_TABLE_NAME",
];

/// Where the data lives: the four modes of the design's seed, chosen by
/// [`StorageConfig::mode`] from its flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StorageMode {
    /// Everything under the data directory (the default).
    Local,
    /// Everything under the data directory, and a background task that pushes changes to
    /// the backup remote ([`StorageConfig::default_remote`]) every
    /// [`s3_backup_interval_secs`](StorageConfig::s3_backup_interval_secs) and at
    /// `shutdown`; with [`sync_on_startup`](StorageConfig::sync_on_startup) a long-running
    /// process pulls from it when it opens.
    LocalWithS3Backup,
    /// Manifests and chunk packs in S3 (`s3://<s3_bucket>/<s3_prefix>/kv` and `…/chunks`); a
    /// write is acknowledged once S3 has it. A size-bounded disk cache under
    /// `<data_dir>/s3-cache` serves repeated reads.
    S3PrimaryWithLocalCache,
    /// As [`S3PrimaryWithLocalCache`](Self::S3PrimaryWithLocalCache) without the disk cache.
    S3Only,
}

impl StorageMode {
    /// Whether manifests and chunks live in S3.
    pub fn s3_primary(self) -> bool {
        matches!(
            self,
            StorageMode::S3PrimaryWithLocalCache | StorageMode::S3Only
        )
    }
}

/// Configuration of a [`HybridStorageSystem`](crate::HybridStorageSystem).
///
/// Sources, later ones winning: the defaults below, a TOML file (if given), `REDIS_URL`, then
/// environment variables named `HYBRIDSTORE_<FIELD>` in upper case. See
/// [`StorageConfig::load`]. `Debug` output shows URLs with their passwords as `***`.
///
/// ```
/// use hybridstore::StorageConfig;
/// let config = StorageConfig::default();
/// assert_eq!(config.data_dir, std::path::PathBuf::from("./hybridstore-data"));
/// assert_eq!(config.io_concurrency, 16);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct StorageConfig {
    /// The data directory holding every embedded store (default `./hybridstore-data`).
    pub data_dir: PathBuf,
    /// How many values `ingest`, `export` and `verify` process at once (default 16: enough
    /// to keep two cores busy while others wait on `fsync`).
    pub io_concurrency: usize,
    /// Re-hash values on every read and fail with `Corrupted` on mismatch (default `true`).
    pub verify_reads: bool,
    /// Which store holds keys and metadata (default [`PrimaryStore::Sql`]: SQLite at
    /// `<data_dir>/kv.db`).
    pub primary: PrimaryStore,
    /// Database of the [`PrimaryStore::Sql`] primary: `sqlite://…` or `postgres://…`
    /// (default none: SQLite at `<data_dir>/kv.db`).
    pub sql_url: Option<SecretUrl>,
    /// Store values through the dedup layer (default `true`): the primary store keeps a
    /// manifest per key (small values inline), content-defined chunks live LZ4-compressed in
    /// pack files under `<data_dir>/chunks`. A data directory is written with or without
    /// dedup for good; opening it the other way is refused.
    pub dedup: bool,
    /// Bytes of the in-process L1 cache in front of the store (default 256 MiB,
    /// `hybridstore_cache::DEFAULT_L1_CAPACITY_BYTES`); `0` turns L1 off. See `hybridstore_cache::CachedStore`.
    pub cache_l1_bytes: u64,
    /// L1 time-to-live in seconds (default 300): how long another process's write may stay
    /// unseen here when several processes share the store.
    pub cache_l1_ttl_secs: u64,
    /// Largest value either cache tier keeps, in bytes (default 1 MiB).
    pub cache_max_value_bytes: u64,
    /// Redis for the shared L2 cache, `redis://[user:password@]host:port[/db]` (default none:
    /// no L2). `REDIS_URL` sets it too.
    pub redis_url: Option<SecretUrl>,
    /// Prefix of every Redis key (default `hybridstore:`).
    pub redis_key_prefix: String,
    /// Namespace (tenant) of this system's Redis keys (default `default`).
    pub redis_namespace: String,
    /// L2 time-to-live in seconds (default 3,600: one hour).
    pub redis_ttl_secs: u64,
    /// Bound on each Redis call in milliseconds (default 100); what a dead Redis can add to a
    /// call.
    pub redis_timeout_ms: u64,
    /// Record an access event per operation in the DuckDB database
    /// `<data_dir>/analytics.duckdb` (default `true`; feature `analytics`). Recording never
    /// blocks an operation: when the writer is behind, events are dropped and counted.
    pub analytics: bool,
    /// Keep each key's text (up to 256 bytes) in its access events, not only its hash
    /// (default `true`); turn off when keys themselves are sensitive.
    pub analytics_record_keys: bool,
    /// LanceDB under `<data_dir>/lance` (default `true`; feature `vectors`): `ingest` also
    /// stores each HTML, Markdown and text file's passages with a full-text index, searched
    /// by `search`; applications keep vector collections there too.
    pub vectors: bool,
    /// S3 bucket of the system's remote (`S3_BUCKET`; default none): what `sync` talks to
    /// when no backup bucket is set.
    pub s3_bucket: Option<String>,
    /// Object prefix in [`s3_bucket`](Self::s3_bucket) (`S3_PREFIX`; default `hybridstore`).
    pub s3_prefix: String,
    /// Region of the S3 buckets (`S3_REGION`; default none: `AWS_REGION`, else
    /// `us-east-1`).
    pub s3_region: Option<String>,
    /// Endpoint of an S3-compatible server, e.g. `http://127.0.0.1:8333` (`S3_ENDPOINT`;
    /// default none: AWS). Path-style requests; `http://` is allowed when given here.
    pub s3_endpoint: Option<String>,
    /// Bucket that `sync` pushes to and pulls from by default (`S3_BACKUP_BUCKET`; default
    /// none: [`s3_bucket`](Self::s3_bucket)).
    pub s3_backup_bucket: Option<String>,
    /// Object prefix in the backup bucket (`S3_BACKUP_PREFIX`; default `hybridstore-backup`).
    pub s3_backup_prefix: String,
    /// S3 holds data (`S3_STORAGE_ENABLED`; default `false`). With
    /// [`use_s3_as_primary`](Self::use_s3_as_primary) it is the primary store; without it,
    /// the data stays local and [`s3_bucket`](Self::s3_bucket) is only what `sync` talks to.
    pub s3_storage_enabled: bool,
    /// Manifests and chunk packs live in `s3_bucket` instead of the data directory
    /// (`USE_S3_AS_PRIMARY`; default `false`; needs `s3_storage_enabled` and `s3_bucket`).
    /// See [`StorageMode`].
    pub use_s3_as_primary: bool,
    /// With an S3 primary, keep what was read in a disk cache under `<data_dir>/s3-cache`
    /// (`LOCAL_CACHE_ENABLED`; default `true`). No effect on a local primary.
    pub local_cache_enabled: bool,
    /// Bytes the S3 primary's disk cache keeps at most (default 4 GiB,
    /// `hybridstore_cache::DEFAULT_DISK_CACHE_BYTES`). Chunk packs stay cached until
    /// evicted (their bytes never change); manifests for
    /// [`cache_l1_ttl_secs`](Self::cache_l1_ttl_secs), like L1, so another node's write is
    /// seen within that time.
    pub local_cache_bytes: u64,
    /// Push changes to the backup remote in the background (`S3_BACKUP_ENABLED`; default
    /// `false`; needs `s3_backup_bucket` or `s3_bucket`). See [`StorageMode`].
    pub s3_backup_enabled: bool,
    /// Seconds between background pushes to the backup remote (default 300).
    pub s3_backup_interval_secs: u64,
    /// With S3 backup on, a long-running process pulls from the backup remote when it opens
    /// the system (`SYNC_ON_STARTUP`; default `true`). The CLI never does: it pulls when
    /// asked (`hybridstore sync pull`).
    pub sync_on_startup: bool,
    /// Where the LanceDB tables live (`LANCEDB_URI`; default none: `<data_dir>/lance`): a
    /// directory or an `s3://bucket/prefix` URI (reached with the S3 region and endpoint
    /// above).
    pub lancedb_uri: Option<String>,
    /// The LanceDB collection holding the passages `ingest` cuts from text files and `search`
    /// queries (`LANCEDB_CHUNKS_TABLE_NAME`, seed 002's chunks table; default `passages`,
    /// [`PASSAGES_COLLECTION`](crate::PASSAGES_COLLECTION)). 1 to 64 ASCII letters, digits,
    /// `_` or `-`, as collection names are.
    pub lancedb_chunks_table_name: String,
    /// The LanceDB collection holding the passages of documents stored with
    /// [`HybridStorageSystem::documents`](crate::HybridStorageSystem::documents)
    /// (`LANCEDB_TABLE_NAME`, seed 002's documents table; default `documents`); each
    /// modality's embeddings live in `<name>_text`, `<name>_image` and `<name>_audio`. 1 to
    /// 58 ASCII letters, digits, `_` or `-` (a collection name with room for the suffix).
    pub lancedb_table_name: String,
    /// The documents store's shape: each modality's embedding dimension and the declared
    /// metadata fields (`[documents]` in the TOML file; default: no embeddings, no fields).
    pub documents: DocumentsConfig,
    /// Seconds between two deletions of expired rows of the SQL `sessions` table by the
    /// background upkeep (default 3,600; `0` off). See [`upkeep`](crate::upkeep).
    pub upkeep_session_expiry_secs: u64,
    /// Seconds between two purges of expired records from every LanceDB collection
    /// (default 3,600; `0` off).
    pub upkeep_vector_purge_secs: u64,
    /// Seconds between two LanceDB optimizes of every collection: compaction, index update,
    /// old versions pruned (default 86,400: daily; `0` off).
    pub upkeep_lancedb_optimize_secs: u64,
    /// Seconds between two chunk garbage collections of the dedup layer (default 86,400:
    /// daily; `0` off).
    pub upkeep_chunk_gc_secs: u64,
    /// Grace of the background chunk GC in seconds: younger packs are never swept (default
    /// 3,600, `hybridstore_dedup::GcOptions`'s, git's `gc.pruneExpire` idea).
    pub upkeep_chunk_gc_grace_secs: u64,
    /// Scheduled snapshots of the whole system (seed 001's `backup_schedule`; default none):
    /// a long-running process takes one every `interval_seconds` into `repository` and
    /// applies `retention_days` (feature `backup`; `[backup_schedule]` in the TOML file).
    pub backup_schedule: Option<BackupSchedule>,
}

/// When and where the system backs itself up (see [`StorageConfig::backup_schedule`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct BackupSchedule {
    /// The backup repository: a directory or `s3://BUCKET/PREFIX` (created if needed).
    pub repository: String,
    /// Seconds between snapshots (default 86,400: daily). The first is taken one interval
    /// after the system opens.
    pub interval_seconds: u64,
    /// After each snapshot, forget the snapshots older than this many days (counted from the
    /// newest, as restic's `--keep-within`; the newest is always kept) and prune (default 0:
    /// keep every snapshot).
    pub retention_days: u32,
    /// Seed 001's flag. Every snapshot is complete (it restores on its own) and costs only
    /// what changed since the last one, so `true` (the default) is the only value: `false`
    /// is refused rather than ignored.
    pub incremental: bool,
    /// The repository password's file (its first line); default none: the
    /// `HYBRIDSTORE_BACKUP_PASSWORD` variable if set, else no password. A new repository is
    /// encrypted when there is one; an `s3://` one must be.
    pub password_file: Option<std::path::PathBuf>,
}

impl Default for BackupSchedule {
    fn default() -> Self {
        BackupSchedule {
            repository: String::new(),
            interval_seconds: 86_400,
            retention_days: 0,
            incremental: true,
            password_file: None,
        }
    }
}

impl BackupSchedule {
    /// A daily schedule into `repository`, keeping every snapshot.
    pub fn new(repository: impl Into<String>) -> Self {
        BackupSchedule {
            repository: repository.into(),
            ..BackupSchedule::default()
        }
    }

    /// Checks the schedule.
    ///
    /// # Errors
    /// `InvalidInput` for an empty repository, a zero interval, or `incremental = false`.
    pub fn validate(&self) -> Result<()> {
        if self.repository.trim().is_empty() {
            return Err(Error::invalid_input(
                "backup_schedule.repository is empty: give a directory or s3://BUCKET/PREFIX",
            ));
        }
        if self.interval_seconds == 0 {
            return Err(Error::invalid_input(
                "backup_schedule.interval_seconds must be at least 1",
            ));
        }
        if !self.incremental {
            return Err(Error::invalid_input(
                "backup_schedule.incremental = false is not supported: every snapshot is \
                 complete and stores only what changed, so there is no full-copy mode",
            ));
        }
        Ok(())
    }
}

/// Longest [`StorageConfig::lancedb_table_name`]: a collection name (64 bytes) less the
/// longest modality suffix (`_image`, `_audio`: 6 bytes).
pub const MAX_DOCUMENTS_TABLE_NAME_LEN: usize = hybridstore_core::vector::MAX_NAME_LEN - 6;

/// Metadata field names the documents store uses itself on every LanceDB record.
pub const RESERVED_DOCUMENT_FIELDS: &[&str] = &["doc_id", "generation", "passage"];

/// A kind of embedding a document may carry (seed 004's `MultimodalDocument`): each has its
/// own collection, dimension and index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Modality {
    /// An embedding of the document's text.
    Text,
    /// An embedding of an image.
    Image,
    /// An embedding of audio.
    Audio,
}

impl Modality {
    /// Every modality, in order.
    pub const ALL: [Modality; 3] = [Modality::Text, Modality::Image, Modality::Audio];

    /// The name used in configuration, collection names and output.
    pub fn as_str(self) -> &'static str {
        match self {
            Modality::Text => "text",
            Modality::Image => "image",
            Modality::Audio => "audio",
        }
    }
}

impl std::fmt::Display for Modality {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The shape of the documents store ([`StorageConfig::documents`]): which modalities carry
/// embeddings and of what dimension, how they are compared, and the metadata fields
/// documents may carry (typed, filterable in `list` and `search`).
///
/// ```
/// use hybridstore::{DocumentsConfig, Modality};
/// use hybridstore::core::vector::FieldType;
/// let shape = DocumentsConfig::default()
///     .with_modality(Modality::Text, 384)
///     .with_modality(Modality::Image, 512)
///     .with_field("author", FieldType::String);
/// assert_eq!(shape.dimension(Modality::Image), 512);
/// assert_eq!(shape.dimension(Modality::Audio), 0);
/// shape.validate()?;
/// # Ok::<(), hybridstore::core::Error>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct DocumentsConfig {
    /// Dimension of text embeddings, 1 to 16,384 (default 0: documents carry none).
    pub text_dimension: usize,
    /// Dimension of image embeddings (default 0: none).
    pub image_dimension: usize,
    /// Dimension of audio embeddings (default 0: none).
    pub audio_dimension: usize,
    /// How embeddings are compared (default cosine).
    pub distance: hybridstore_core::vector::Distance,
    /// Metadata fields documents may carry, by name (`[a-z][a-z0-9_]*`, not one of the
    /// vector store's reserved names nor [`RESERVED_DOCUMENT_FIELDS`]).
    pub fields: std::collections::BTreeMap<String, hybridstore_core::vector::FieldType>,
}

impl DocumentsConfig {
    /// This shape with `modality`'s embeddings of `dimension` components (0: none).
    pub fn with_modality(mut self, modality: Modality, dimension: usize) -> Self {
        match modality {
            Modality::Text => self.text_dimension = dimension,
            Modality::Image => self.image_dimension = dimension,
            Modality::Audio => self.audio_dimension = dimension,
        }
        self
    }

    /// This shape with a metadata field.
    pub fn with_field(
        mut self,
        name: impl Into<String>,
        field_type: hybridstore_core::vector::FieldType,
    ) -> Self {
        self.fields.insert(name.into(), field_type);
        self
    }

    /// This shape with `distance` comparing embeddings.
    pub fn with_distance(mut self, distance: hybridstore_core::vector::Distance) -> Self {
        self.distance = distance;
        self
    }

    /// The dimension of `modality`'s embeddings (0: documents carry none).
    pub fn dimension(&self, modality: Modality) -> usize {
        match modality {
            Modality::Text => self.text_dimension,
            Modality::Image => self.image_dimension,
            Modality::Audio => self.audio_dimension,
        }
    }

    /// The modalities with embeddings.
    pub fn modalities(&self) -> Vec<Modality> {
        Modality::ALL
            .into_iter()
            .filter(|m| self.dimension(*m) > 0)
            .collect()
    }

    /// Checks dimensions and field names.
    ///
    /// # Errors
    /// `InvalidInput` for a dimension above 16,384 or a field name that is invalid or
    /// reserved.
    pub fn validate(&self) -> Result<()> {
        use hybridstore_core::vector::{CollectionSpec, MAX_DIMENSION};
        for m in Modality::ALL {
            let d = self.dimension(m);
            if d > MAX_DIMENSION {
                return Err(Error::invalid_input(format!(
                    "documents.{m}_dimension must be at most {MAX_DIMENSION}, got {d}"
                )));
            }
        }
        let mut spec = CollectionSpec::text_only("documents");
        for (name, ty) in &self.fields {
            if RESERVED_DOCUMENT_FIELDS.contains(&name.as_str()) {
                return Err(Error::invalid_input(format!(
                    "documents.fields: {name:?} is reserved (reserved: {})",
                    RESERVED_DOCUMENT_FIELDS.join(", ")
                )));
            }
            spec = spec.with_field(name.clone(), *ty);
        }
        spec.validate()
            .map_err(|e| Error::invalid_input(format!("documents.fields: {}", e.message())))
    }
}

/// The primary key/value store of a [`HybridStorageSystem`](crate::HybridStorageSystem).
/// Configured as `primary = "file"` or `primary = "sql"` (`HYBRIDSTORE_PRIMARY=sql`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PrimaryStore {
    /// `FileStore` under `<data_dir>/kv` (feature `file`).
    File,
    /// `SqlStore` on [`StorageConfig::sql_url`], or SQLite at `<data_dir>/kv.db` (feature
    /// `sql`; `postgres://` URLs need feature `postgres`). The default.
    #[default]
    Sql,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            data_dir: PathBuf::from("./hybridstore-data"),
            io_concurrency: 16,
            verify_reads: true,
            primary: PrimaryStore::Sql,
            sql_url: None,
            dedup: true,
            cache_l1_bytes: hybridstore_cache::DEFAULT_L1_CAPACITY_BYTES,
            cache_l1_ttl_secs: hybridstore_cache::DEFAULT_L1_TTL.as_secs(),
            cache_max_value_bytes: hybridstore_cache::DEFAULT_MAX_VALUE_BYTES,
            redis_url: None,
            redis_key_prefix: hybridstore_cache::DEFAULT_REDIS_KEY_PREFIX.to_string(),
            redis_namespace: hybridstore_cache::DEFAULT_REDIS_NAMESPACE.to_string(),
            redis_ttl_secs: hybridstore_cache::DEFAULT_L2_TTL.as_secs(),
            redis_timeout_ms: hybridstore_cache::DEFAULT_REDIS_TIMEOUT.as_millis() as u64,
            analytics: true,
            analytics_record_keys: true,
            vectors: true,
            s3_bucket: None,
            s3_prefix: "hybridstore".to_string(),
            s3_region: None,
            s3_endpoint: None,
            s3_backup_bucket: None,
            s3_backup_prefix: "hybridstore-backup".to_string(),
            s3_storage_enabled: false,
            use_s3_as_primary: false,
            local_cache_enabled: true,
            local_cache_bytes: hybridstore_cache::DEFAULT_DISK_CACHE_BYTES,
            s3_backup_enabled: false,
            s3_backup_interval_secs: 300,
            sync_on_startup: true,
            lancedb_uri: None,
            lancedb_chunks_table_name: "passages".to_string(),
            lancedb_table_name: "documents".to_string(),
            documents: DocumentsConfig::default(),
            upkeep_session_expiry_secs: 3_600,
            upkeep_vector_purge_secs: 3_600,
            upkeep_lancedb_optimize_secs: 86_400,
            upkeep_chunk_gc_secs: 86_400,
            upkeep_chunk_gc_grace_secs: 3_600,
            backup_schedule: None,
        }
    }
}

impl StorageConfig {
    /// This configuration with `documents` as the documents store's shape.
    pub fn with_documents(mut self, documents: DocumentsConfig) -> Self {
        self.documents = documents;
        self
    }

    /// A default configuration with `data_dir` set.
    pub fn with_data_dir(data_dir: impl Into<PathBuf>) -> Self {
        StorageConfig {
            data_dir: data_dir.into(),
            ..Self::default()
        }
    }

    /// Loads the configuration: defaults, then `file` (TOML) if given, then the seed's
    /// variables ([`SEED_ENV_VARS`]), then `HYBRIDSTORE_*` environment variables.
    ///
    /// `HYBRIDSTORE_*` variables that are not configuration ([`NON_CONFIG_ENV_VARS`],
    /// [`NON_CONFIG_ENV_PREFIXES`]) are ignored.
    ///
    /// # Errors
    /// `NotFound` if `file` is given but missing; `InvalidInput` if a value has the wrong
    /// type or a key is unknown: the message names the key and where it came from (the file,
    /// or the environment variable, e.g. `HYBRIDSTORE_DATA_DRI`).
    pub fn load(file: Option<&Path>) -> Result<Self> {
        Self::load_explained(file).map(|(config, _)| config)
    }

    /// As [`load`](Self::load), and also where each value came from: a default, the file,
    /// or which environment variable. A value that fails [`validate`](Self::validate) is
    /// reported with the source of each field the error names ("… (sql_url from environment
    /// variable HYBRIDSTORE_SQL_URL)").
    ///
    /// # Errors
    /// As [`load`](Self::load).
    pub fn load_explained(file: Option<&Path>) -> Result<(Self, ConfigExplanation)> {
        let mut figment = Figment::from(Serialized::defaults(StorageConfig::default()));
        if let Some(path) = file {
            if !path.exists() {
                return Err(Error::not_found(format!(
                    "configuration file {} does not exist",
                    path.display()
                )));
            }
            figment = figment.merge(Toml::file(path));
        }
        figment = figment
            .merge(Env::raw().only(SEED_ENV_VARS).lowercase(true))
            .merge(
                Env::prefixed(ENV_PREFIX)
                    .filter(|k| is_config_env_var(&format!("{ENV_PREFIX}{}", k.as_str()))),
            );
        let config: StorageConfig = figment.extract().map_err(config_error)?;
        let explanation = ConfigExplanation::new(&config, &figment)?;
        config
            .validate()
            .map_err(|e| Error::new(e.kind(), explanation.annotate(e.message())))?;
        Ok((config, explanation))
    }

    /// Checks values that deserialize but make no sense.
    ///
    /// # Errors
    /// `InvalidInput` if `io_concurrency` is 0 or above 1,024, `sql_url` is set while
    /// `primary` is not `sql`, `dedup` is on with a PostgreSQL `sql_url` (its chunks would
    /// stay on this machine while its manifests are shared), or the cache settings are
    /// invalid (see
    /// [`cache_config`](Self::cache_config)), `lancedb_chunks_table_name` or
    /// `lancedb_table_name` is not a collection name, `documents` is invalid (see
    /// [`DocumentsConfig::validate`]), or the S3 flags do not make one of the four
    /// modes (see [`mode`](Self::mode)).
    pub fn validate(&self) -> Result<()> {
        self.mode()?;
        if self.sql_url.is_some() && self.primary != PrimaryStore::Sql {
            return Err(Error::invalid_input(
                "sql_url is set but primary is not \"sql\"; set primary = \"sql\" to use it",
            ));
        }
        if self.dedup && self.backend_name() == "postgres" {
            return Err(Error::invalid_input(
                "dedup = true keeps chunks in <data_dir>/chunks on this machine, while manifests in \
                 PostgreSQL are shared with every node: another node would find keys whose chunks \
                 it cannot read. Use dedup = false with a postgres:// sql_url",
            ));
        }
        if !(1..=1024).contains(&self.io_concurrency) {
            return Err(Error::invalid_input(format!(
                "io_concurrency must be between 1 and 1024, got {}",
                self.io_concurrency
            )));
        }
        self.cache_config()?;
        hybridstore_core::vector::validate_collection_name(&self.lancedb_chunks_table_name)
            .map_err(|e| Error::invalid_input(format!("lancedb_chunks_table_name: {e}")))?;
        if self.lancedb_table_name.len() > MAX_DOCUMENTS_TABLE_NAME_LEN {
            return Err(Error::invalid_input(format!(
                "lancedb_table_name is {} bytes; at most {MAX_DOCUMENTS_TABLE_NAME_LEN} leave room \
                 for the modality suffix (`_image`)",
                self.lancedb_table_name.len()
            )));
        }
        hybridstore_core::vector::validate_collection_name(&self.lancedb_table_name)
            .map_err(|e| Error::invalid_input(format!("lancedb_table_name: {e}")))?;
        self.documents.validate()?;
        if let Some(schedule) = &self.backup_schedule {
            schedule.validate()?;
        }
        Ok(())
    }

    /// The storage mode the flags choose (see [`StorageMode`]): `use_s3_as_primary` (with
    /// `s3_storage_enabled`) an S3 primary, with the disk cache if `local_cache_enabled`;
    /// else `s3_backup_enabled` a local primary with S3 backup; else local.
    ///
    /// # Errors
    /// `InvalidInput` if `use_s3_as_primary` is set without `s3_storage_enabled` or
    /// `s3_bucket`, or together with `s3_backup_enabled` or `sql_url` (S3 is then the
    /// primary); `s3_backup_enabled` without a bucket; a zero backup interval or disk cache
    /// size in a mode that uses it.
    pub fn mode(&self) -> Result<StorageMode> {
        if self.use_s3_as_primary {
            let refuse = |why: &str| Err(Error::invalid_input(format!("use_s3_as_primary: {why}")));
            if !self.s3_storage_enabled {
                return refuse("needs s3_storage_enabled = true (S3_STORAGE_ENABLED=true)");
            }
            if self.s3_bucket.is_none() {
                return refuse("needs s3_bucket (S3_BUCKET)");
            }
            if self.s3_backup_enabled {
                return refuse(
                    "S3 is then the primary; s3_backup_enabled backs up a local primary and \
                     cannot be combined with it",
                );
            }
            if self.sql_url.is_some() {
                return refuse("manifests then live in S3; remove sql_url");
            }
            if !self.local_cache_enabled {
                return Ok(StorageMode::S3Only);
            }
            if self.local_cache_bytes <= hybridstore_cache::DEFAULT_DISK_MAX_ENTRY_BYTES {
                return refuse(&format!(
                    "local_cache_bytes must exceed {} bytes (the largest cached entry)",
                    hybridstore_cache::DEFAULT_DISK_MAX_ENTRY_BYTES
                ));
            }
            return Ok(StorageMode::S3PrimaryWithLocalCache);
        }
        if self.s3_backup_enabled {
            if self.default_remote().is_none() {
                return Err(Error::invalid_input(
                    "s3_backup_enabled needs s3_backup_bucket (S3_BACKUP_BUCKET) or s3_bucket",
                ));
            }
            if self.s3_backup_interval_secs == 0 {
                return Err(Error::invalid_input(
                    "s3_backup_interval_secs must be positive",
                ));
            }
            return Ok(StorageMode::LocalWithS3Backup);
        }
        Ok(StorageMode::Local)
    }

    /// The remote `sync` uses when none is named: `s3://<s3_backup_bucket>/<s3_backup_prefix>`
    /// if a backup bucket is set, else `s3://<s3_bucket>/<s3_prefix>`, else `None`.
    pub fn default_remote(&self) -> Option<String> {
        match (&self.s3_backup_bucket, &self.s3_bucket) {
            (Some(bucket), _) => Some(format!("s3://{bucket}/{}", self.s3_backup_prefix)),
            (None, Some(bucket)) => Some(format!("s3://{bucket}/{}", self.s3_prefix)),
            (None, None) => None,
        }
    }

    /// object_store's S3 options for [`s3_region`](Self::s3_region) and
    /// [`s3_endpoint`](Self::s3_endpoint) (credentials are read from the AWS variables by
    /// object_store itself, never from here).
    pub fn s3_storage_options(&self) -> Vec<(String, String)> {
        let mut options = Vec::new();
        if let Some(region) = &self.s3_region {
            options.push(("aws_region".to_string(), region.clone()));
        }
        if let Some(endpoint) = &self.s3_endpoint {
            options.push(("aws_endpoint".to_string(), endpoint.clone()));
            options.push((
                "aws_virtual_hosted_style_request".to_string(),
                "false".to_string(),
            ));
            if endpoint.starts_with("http://") {
                options.push(("aws_allow_http".to_string(), "true".to_string()));
            }
        }
        options
    }

    /// The name access events and errors give the primary store: `s3`, `file`, `sqlite`
    /// or `postgres`.
    pub fn backend_name(&self) -> &'static str {
        if self.use_s3_as_primary {
            return "s3";
        }
        match (self.primary, &self.sql_url) {
            (PrimaryStore::File, _) => "file",
            (PrimaryStore::Sql, Some(url)) if url.expose().starts_with("postgres") => "postgres",
            (PrimaryStore::Sql, _) => "sqlite",
        }
    }

    /// The cache in front of the store, or `None` when both tiers are off (`cache_l1_bytes =
    /// 0` and no `redis_url`).
    ///
    /// # Errors
    /// `InvalidInput` if a TTL or the Redis timeout is zero, or the Redis URL, prefix or
    /// namespace is invalid.
    pub fn cache_config(&self) -> Result<Option<hybridstore_cache::CacheConfig>> {
        if self.cache_l1_bytes == 0 && self.redis_url.is_none() {
            return Ok(None);
        }
        let mut cache = hybridstore_cache::CacheConfig::l1_only(self.cache_l1_bytes)
            .with_l1_ttl(Duration::from_secs(self.cache_l1_ttl_secs))
            .with_max_value_bytes(self.cache_max_value_bytes);
        if let Some(url) = &self.redis_url {
            let mut redis = hybridstore_cache::RedisConfig::new(url.clone())
                .with_key_prefix(self.redis_key_prefix.clone())
                .with_namespace(self.redis_namespace.clone())
                .with_timeout(Duration::from_millis(self.redis_timeout_ms));
            redis.ttl = Duration::from_secs(self.redis_ttl_secs);
            cache = cache.with_redis(redis);
        }
        cache.validate()?;
        Ok(Some(cache))
    }
}

/// Where one configuration value came from (see [`StorageConfig::load_explained`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "name", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ValueSource {
    /// The documented default.
    Default,
    /// The TOML file at this path.
    File(PathBuf),
    /// This environment variable (`HYBRIDSTORE_DATA_DIR`, `S3_BUCKET`, …).
    Env(String),
    /// The program itself, e.g. a command-line flag (`--data-dir`).
    Code(String),
}

impl std::fmt::Display for ValueSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ValueSource::Default => f.write_str("default"),
            ValueSource::File(path) => write!(f, "file {}", path.display()),
            ValueSource::Env(name) => write!(f, "environment variable {name}"),
            ValueSource::Code(what) => f.write_str(what),
        }
    }
}

/// One field of the effective configuration: its dotted name (`backup_schedule.repository`),
/// its value as TOML would spell it with passwords in URLs as `***`, and its source.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ConfigEntry {
    /// The field, as in the TOML file; nested tables joined by `.`.
    pub field: String,
    /// The value (`none` for an unset optional field); URL passwords shown as `***`.
    pub value: String,
    /// Where the value came from.
    pub source: ValueSource,
}

/// Every field of a loaded configuration with where its value came from, for `hybridstore
/// config show`. Built by [`StorageConfig::load_explained`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ConfigExplanation {
    /// The fields in declaration order.
    pub entries: Vec<ConfigEntry>,
}

/// Fields whose values are URLs that may hold a password, shown redacted.
const SECRET_URL_FIELDS: &[&str] = &["sql_url", "redis_url"];

impl ConfigExplanation {
    /// Reads every leaf of `config` and asks `figment` where each came from.
    fn new(config: &StorageConfig, figment: &Figment) -> Result<Self> {
        use figment::value::Value;
        let tree = Value::serialize(config)
            .map_err(|e| Error::invalid_input(format!("configuration does not serialize: {e}")))?;
        let mut leaves = Vec::new();
        fn walk(prefix: &str, value: &Value, out: &mut Vec<(String, Value)>) {
            match value {
                Value::Dict(_, dict) => {
                    for (key, value) in dict {
                        let path = if prefix.is_empty() {
                            key.clone()
                        } else {
                            format!("{prefix}.{key}")
                        };
                        walk(&path, value, out);
                    }
                }
                leaf => out.push((prefix.to_string(), leaf.clone())),
            }
        }
        walk("", &tree, &mut leaves);
        // Fields left unset serialize to nothing: list every declared field, unset ones too.
        let declared = Value::serialize(StorageConfig::default())
            .ok()
            .and_then(|v| v.as_dict().map(|d| d.keys().cloned().collect::<Vec<_>>()))
            .unwrap_or_default();
        let mut entries = Vec::new();
        for field in declared {
            let mut found = false;
            for (path, value) in &leaves {
                if path == &field || path.starts_with(&format!("{field}.")) {
                    found = true;
                    entries.push(ConfigEntry {
                        field: path.clone(),
                        value: display_value(path, value),
                        source: source_of(figment, path),
                    });
                }
            }
            if !found {
                entries.push(ConfigEntry {
                    field: field.clone(),
                    value: "none".to_string(),
                    source: source_of(figment, &field),
                });
            }
        }
        Ok(ConfigExplanation { entries })
    }

    /// The source of `field` (a top-level or dotted name), `Default` for unknown fields.
    pub fn source(&self, field: &str) -> ValueSource {
        self.entries
            .iter()
            .find(|e| e.field == field)
            .map_or(ValueSource::Default, |e| e.source.clone())
    }

    /// Records that the program set `field` itself (e.g. from a `--data-dir` flag), with
    /// `value` as its new display value.
    pub fn set_by_code(&mut self, field: &str, value: impl Into<String>, what: impl Into<String>) {
        let entry = ConfigEntry {
            field: field.to_string(),
            value: value.into(),
            source: ValueSource::Code(what.into()),
        };
        match self.entries.iter_mut().find(|e| e.field == field) {
            Some(existing) => *existing = entry,
            None => self.entries.push(entry),
        }
    }

    /// `message`, followed by where each field it names was set, for fields not at their
    /// default: "… (sql_url from environment variable HYBRIDSTORE_SQL_URL)".
    fn annotate(&self, message: &str) -> String {
        let named: Vec<String> = self
            .entries
            .iter()
            .filter(|e| e.source != ValueSource::Default && names_field(message, &e.field))
            .map(|e| format!("{} from {}", e.field, e.source))
            .collect();
        if named.is_empty() {
            message.to_string()
        } else {
            format!("{message} ({})", named.join("; "))
        }
    }
}

/// Whether `message` names `field` as a whole word.
fn names_field(message: &str, field: &str) -> bool {
    message.match_indices(field).any(|(at, _)| {
        let word = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '.';
        let before = message[..at].chars().next_back();
        let after = message[at + field.len()..].chars().next();
        !before.is_some_and(word) && !after.is_some_and(word)
    })
}

/// A leaf as TOML spells it; strings bare, URL passwords as `***`.
fn display_value(path: &str, value: &figment::value::Value) -> String {
    use figment::value::Value;
    match value {
        Value::String(_, s) if SECRET_URL_FIELDS.contains(&path) => {
            SecretUrl::from(s.clone()).redacted()
        }
        Value::String(_, s) => s.clone(),
        Value::Char(_, c) => c.to_string(),
        Value::Bool(_, b) => b.to_string(),
        Value::Num(..) => match (value.to_u128(), value.to_i128(), value.to_f64()) {
            (Some(u), _, _) => u.to_string(),
            (None, Some(i), _) => i.to_string(),
            (None, None, Some(f)) => f.to_string(),
            (None, None, None) => "?".to_string(),
        },
        Value::Empty(..) => "none".to_string(),
        Value::Array(_, items) => format!(
            "[{}]",
            items
                .iter()
                .map(|v| display_value(path, v))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Value::Dict(..) => "{…}".to_string(),
    }
}

/// Where `figment` took `path` from.
fn source_of(figment: &Figment, path: &str) -> ValueSource {
    let Some(metadata) = figment.find_metadata(path) else {
        return ValueSource::Default;
    };
    if let Some(figment::Source::File(file)) = &metadata.source {
        return ValueSource::File(file.clone());
    }
    if metadata.name.contains("environment") {
        let keys: Vec<&str> = path.split('.').collect();
        let var = metadata.interpolate(&figment::Profile::Default, &keys);
        let prefixed = metadata.name.contains(ENV_PREFIX);
        return ValueSource::Env(if prefixed {
            format!("{ENV_PREFIX}{var}")
        } else {
            var
        });
    }
    ValueSource::Default
}

/// A figment error as `InvalidInput`, naming the environment variable when one caused it.
fn config_error(error: figment::Error) -> Error {
    use figment::error::Kind;
    let from_env = error
        .metadata
        .as_ref()
        .is_some_and(|m| m.name.contains("environment"));
    let message = match (&error.kind, from_env) {
        (Kind::UnknownField(field, expected), true) => format!(
            "unknown configuration variable {ENV_PREFIX}{}; configuration variables are {}",
            field.to_ascii_uppercase(),
            expected
                .iter()
                .map(|f| format!("{ENV_PREFIX}{}", f.to_ascii_uppercase()))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        _ => format!("invalid configuration: {error}"),
    };
    Error::invalid_input(message)
}
