//! Where an object store is: `s3://bucket/prefix`, a local directory, or `memory://`.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use hybridstore_core::{Error, Result};
use object_store::ObjectStore;

use super::ObjectStoreKvOptions;
use crate::errors::object_store_error;

/// The location of an object store, as the CLI's `--remote` and the configuration name it.
///
/// ```
/// use hybridstore_sync::RemoteUrl;
/// let s3: RemoteUrl = "s3://backups/laptop".parse()?;
/// assert_eq!(s3, RemoteUrl::S3 { bucket: "backups".into(), prefix: "laptop".into() });
/// assert_eq!(s3.to_string(), "s3://backups/laptop");
/// let dir: RemoteUrl = "/mnt/usb/hybridstore".parse()?;
/// assert!(matches!(dir, RemoteUrl::Local { .. }));
/// # Ok::<(), hybridstore_core::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RemoteUrl {
    /// A bucket of S3 or an S3-compatible server, and a prefix in it (`""` for the root).
    S3 {
        /// Bucket name (3 to 63 characters).
        bucket: String,
        /// Object path prefix, without leading or trailing `/`.
        prefix: String,
    },
    /// A directory of the local file system (`file:///dir` or a plain path), created if
    /// missing.
    Local {
        /// The directory.
        dir: PathBuf,
    },
    /// A fresh `InMemory` store (`memory://`), for tests: nothing outlives the process.
    Memory,
}

impl FromStr for RemoteUrl {
    type Err = Error;

    /// Parses `s3://bucket[/prefix]`, `file:///path`, `memory://` or a file system path.
    ///
    /// # Errors
    /// `InvalidInput` for an empty string, an S3 URL without a valid bucket, or another
    /// scheme.
    fn from_str(s: &str) -> Result<Self> {
        if s.is_empty() {
            return Err(Error::invalid_input("remote is empty"));
        }
        if let Some(rest) = s.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let valid = (3..=63).contains(&bucket.len())
                && bucket.bytes().all(|c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'.'
                });
            if !valid {
                return Err(Error::invalid_input(format!(
                    "{s:?}: an S3 bucket name is 3 to 63 lowercase letters, digits, '-' and '.'"
                )));
            }
            return Ok(RemoteUrl::S3 {
                bucket: bucket.to_string(),
                prefix: prefix.trim_matches('/').to_string(),
            });
        }
        if s == "memory://" {
            return Ok(RemoteUrl::Memory);
        }
        if let Some(path) = s.strip_prefix("file://") {
            return Ok(RemoteUrl::Local {
                dir: PathBuf::from(path),
            });
        }
        if s.contains("://") {
            return Err(Error::invalid_input(format!(
                "{s:?}: a remote is s3://bucket/prefix, file:///dir, memory:// or a directory"
            )));
        }
        Ok(RemoteUrl::Local {
            dir: PathBuf::from(s),
        })
    }
}

impl fmt::Display for RemoteUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RemoteUrl::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            RemoteUrl::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
            RemoteUrl::Local { dir } => write!(f, "{}", dir.display()),
            RemoteUrl::Memory => f.write_str("memory://"),
        }
    }
}

/// What [`RemoteUrl::build`] gives: the store, the prefix in it, whether its listings are
/// sorted, whether it is durable.
pub(crate) type Built = (Arc<dyn ObjectStore>, String, bool, bool);

impl RemoteUrl {
    /// The object store this URL names, with calls bounded as `options` say. Blocking (a
    /// local directory is created and canonicalized): run it on the blocking pool.
    pub(crate) fn build(
        &self,
        storage_options: &[(String, String)],
        options: &ObjectStoreKvOptions,
    ) -> Result<Built> {
        match self {
            RemoteUrl::S3 { bucket, prefix } => {
                use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
                // Each request may take as long as one part takes at the slowest allowed
                // rate; object_store retries at most twice, within the operation's timeout.
                let client = object_store::ClientOptions::new()
                    .with_connect_timeout(options.timeout.min(Duration::from_secs(2)))
                    .with_timeout(options.deadline(options.part_size as u64));
                let retry = object_store::RetryConfig {
                    max_retries: 2,
                    retry_timeout: options.timeout,
                    ..object_store::RetryConfig::default()
                };
                let mut builder = AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .with_client_options(client)
                    .with_retry(retry);
                for (key, value) in storage_options {
                    let key: AmazonS3ConfigKey = key.parse().map_err(object_store_error)?;
                    builder = builder.with_config(key, value);
                }
                let store = builder.build().map_err(object_store_error)?;
                Ok((Arc::new(store), prefix.clone(), true, true))
            }
            RemoteUrl::Local { dir } => {
                std::fs::create_dir_all(dir).map_err(|e| {
                    Error::from(e)
                        .with_operation("create remote directory")
                        .with_context("path", dir.display())
                })?;
                // Canonicalizes the directory: blocking, so callers run this off the workers.
                let store = object_store::local::LocalFileSystem::new_with_prefix(dir)
                    .map_err(object_store_error)?
                    .with_automatic_cleanup(true);
                Ok((Arc::new(store), String::new(), false, true))
            }
            RemoteUrl::Memory => Ok((
                Arc::new(object_store::memory::InMemory::new()),
                String::new(),
                true,
                false,
            )),
        }
    }
}
