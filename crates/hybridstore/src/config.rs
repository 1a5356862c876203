//! `StorageConfig`: every setting of a `HybridStorageSystem`, with documented defaults.

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use hybridstore_core::{Error, Result};
use serde::{Deserialize, Serialize};

/// Prefix of the environment variables that override configuration values:
/// `HYBRIDSTORE_DATA_DIR`, `HYBRIDSTORE_IO_CONCURRENCY`, …
pub const ENV_PREFIX: &str = "HYBRIDSTORE_";

/// Configuration of a [`HybridStorageSystem`](crate::HybridStorageSystem).
///
/// Sources, later ones winning: the defaults below, a TOML file (if given), then environment
/// variables named `HYBRIDSTORE_<FIELD>` in upper case. See [`StorageConfig::load`].
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
    pub sql_url: Option<String>,
    /// Store values through the dedup layer (default `true`): the primary store keeps a
    /// manifest per key (small values inline), content-defined chunks live LZ4-compressed in
    /// pack files under `<data_dir>/chunks`. A data directory is written with or without
    /// dedup for good; opening it the other way is refused.
    pub dedup: bool,
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
        }
    }
}

impl StorageConfig {
    /// A default configuration with `data_dir` set.
    pub fn with_data_dir(data_dir: impl Into<PathBuf>) -> Self {
        StorageConfig {
            data_dir: data_dir.into(),
            ..Self::default()
        }
    }

    /// Loads the configuration: defaults, then `file` (TOML) if given, then `HYBRIDSTORE_*`
    /// environment variables.
    ///
    /// # Errors
    /// `NotFound` if `file` is given but missing; `InvalidInput` if a value has the wrong
    /// type or a key is unknown (the message names it).
    pub fn load(file: Option<&Path>) -> Result<Self> {
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
        figment = figment.merge(Env::prefixed(ENV_PREFIX));
        let config: StorageConfig = figment
            .extract()
            .map_err(|e| Error::invalid_input(format!("invalid configuration: {e}")))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks values that deserialize but make no sense.
    ///
    /// # Errors
    /// `InvalidInput` if `io_concurrency` is 0 or above 1,024, or `sql_url` is set while
    /// `primary` is not `sql`.
    pub fn validate(&self) -> Result<()> {
        if self.sql_url.is_some() && self.primary != PrimaryStore::Sql {
            return Err(Error::invalid_input(
                "sql_url is set but primary is not \"sql\"; set primary = \"sql\" to use it",
            ));
        }
        if !(1..=1024).contains(&self.io_concurrency) {
            return Err(Error::invalid_input(format!(
                "io_concurrency must be between 1 and 1024, got {}",
                self.io_concurrency
            )));
        }
        Ok(())
    }
}
