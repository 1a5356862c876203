//! Object metadata and checksums.

use std::fmt;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// A SHA-256 digest (FIPS 180-4), 32 bytes; displayed and serialized as 64 lowercase hex
/// characters.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sha256Digest(pub [u8; 32]);

impl Sha256Digest {
    /// The digest of `data`.
    pub fn of(data: &[u8]) -> Self {
        Sha256Digest(Sha256::digest(data).into())
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lowercase hex, 64 characters.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256Digest({})", self.to_hex())
    }
}

impl FromStr for Sha256Digest {
    type Err = Error;
    /// Parses 64 hex characters.
    ///
    /// # Errors
    /// `InvalidInput` for anything else.
    fn from_str(s: &str) -> Result<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out)
            .map_err(|e| Error::invalid_input(format!("not a SHA-256 hex digest: {e}")))?;
        Ok(Sha256Digest(out))
    }
}

impl Serialize for Sha256Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Sha256Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// What a store knows about a value without reading it: returned by `head`, `put` and
/// `scan_meta`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectMeta {
    /// Length of the value in bytes.
    pub size: u64,
    /// When the key was first written (kept across overwrites).
    pub created: SystemTime,
    /// When the value was last written.
    pub modified: SystemTime,
    /// SHA-256 of the value bytes, as the caller wrote them.
    pub checksum: Sha256Digest,
    /// Optional MIME type given at `put` time.
    pub content_type: Option<String>,
    /// Set by the dedup layer: SHA-256 identifying the value's chunk manifest.
    pub dedup_hash: Option<Sha256Digest>,
}

impl ObjectMeta {
    /// Metadata for a value written now: size and checksum computed from `value`,
    /// `created = modified = now` unless `created` gives the first-write time to keep.
    pub fn for_value(value: &[u8], options: &PutOptions, created: Option<SystemTime>) -> Self {
        let now = SystemTime::now();
        ObjectMeta {
            size: value.len() as u64,
            created: options.created.or(created).unwrap_or(now),
            modified: options.modified.unwrap_or(now),
            checksum: Sha256Digest::of(value),
            content_type: options.content_type.clone(),
            dedup_hash: None,
        }
    }
}

/// Options of a `put`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PutOptions {
    /// MIME type recorded in the metadata, at most [`MAX_CONTENT_TYPE_LEN`] bytes.
    pub content_type: Option<String>,
    /// The creation time to record, replacing the previous value's: a synced, migrated or
    /// restored value keeps its own. `None` (the default): kept from the previous value,
    /// else the time of the write. Between the Unix epoch and
    /// [`MAX_TIME_SINCE_EPOCH`] after it.
    pub created: Option<SystemTime>,
    /// The modification time to record instead of the time of the write; within the same
    /// bounds.
    pub modified: Option<SystemTime>,
}

/// The latest time a store records, as a span after the Unix epoch:
/// 2262-04-11T23:47:16.854775807Z, `i64::MAX` nanoseconds, the range of the signed 64-bit
/// nanosecond columns SqlStore and FileStore keep times in.
pub const MAX_TIME_SINCE_EPOCH: std::time::Duration =
    std::time::Duration::from_nanos(i64::MAX as u64);

/// `time` as nanoseconds since the Unix epoch, the form stores keep times in: 0 before the
/// epoch, `u64::MAX` past what fits (writes are validated against
/// [`MAX_TIME_SINCE_EPOCH`] first, so neither happens to a stored time).
pub fn nanos_since_epoch(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// The longest content type a store records, in bytes (RFC 6838 caps type and subtype at 127
/// characters each; 255 leaves room for parameters a file name extension will not need).
pub const MAX_CONTENT_TYPE_LEN: usize = 255;

impl PutOptions {
    /// Options with a content type.
    pub fn with_content_type(content_type: impl Into<String>) -> Self {
        PutOptions {
            content_type: Some(content_type.into()),
            ..PutOptions::default()
        }
    }

    /// Records `created` as the value's creation time.
    pub fn with_created(mut self, created: SystemTime) -> Self {
        self.created = Some(created);
        self
    }

    /// Records `modified` as the value's modification time.
    pub fn with_modified(mut self, modified: SystemTime) -> Self {
        self.modified = Some(modified);
        self
    }

    /// The options that give a value `meta`'s content type and times, as a sync, a migration
    /// or a restore writes it again.
    pub fn preserving(meta: &ObjectMeta) -> Self {
        PutOptions {
            content_type: meta.content_type.clone(),
            created: Some(meta.created),
            modified: Some(meta.modified),
        }
    }

    /// Checks the options every backend must refuse.
    ///
    /// # Errors
    /// `InvalidInput` if the content type is longer than [`MAX_CONTENT_TYPE_LEN`] bytes, or
    /// a time is before the Unix epoch or more than [`MAX_TIME_SINCE_EPOCH`] after it.
    pub fn validate(&self) -> Result<()> {
        for (name, time) in [("created", self.created), ("modified", self.modified)] {
            if let Some(t) = time
                && t.duration_since(UNIX_EPOCH)
                    .map_or(true, |since| since > MAX_TIME_SINCE_EPOCH)
            {
                return Err(Error::invalid_input(format!(
                    "{name} time {t:?} is outside the range a store records \
                     (the Unix epoch to 2262-04-11)"
                )));
            }
        }
        if let Some(ct) = &self.content_type
            && ct.len() > MAX_CONTENT_TYPE_LEN
        {
            return Err(Error::invalid_input(format!(
                "content type is {} bytes; the maximum is {MAX_CONTENT_TYPE_LEN}",
                ct.len()
            )));
        }
        Ok(())
    }
}
