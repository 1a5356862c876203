//! Object metadata and checksums.

use std::fmt;
use std::str::FromStr;
use std::time::SystemTime;

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
            created: created.unwrap_or(now),
            modified: now,
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
}

/// The longest content type a store records, in bytes (RFC 6838 caps type and subtype at 127
/// characters each; 255 leaves room for parameters a file name extension will not need).
pub const MAX_CONTENT_TYPE_LEN: usize = 255;

impl PutOptions {
    /// Options with a content type.
    pub fn with_content_type(content_type: impl Into<String>) -> Self {
        PutOptions {
            content_type: Some(content_type.into()),
        }
    }

    /// Checks the options every backend must refuse.
    ///
    /// # Errors
    /// `InvalidInput` if the content type is longer than [`MAX_CONTENT_TYPE_LEN`] bytes.
    pub fn validate(&self) -> Result<()> {
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
