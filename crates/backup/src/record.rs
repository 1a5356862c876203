//! The records a repository keeps: the repository config, snapshot records and the key tree
//! a snapshot's keys item holds.
//!
//! ```text
//! snapshot record := JSON (Snapshot), stored under snapshots/<SHA-256 of the JSON, hex>
//! key tree        := one JSON line (TreeEntry) per key, in key order, stored as chunks
//! ```
//!
//! A snapshot record is named by its own SHA-256, so a reader checks it against its name,
//! and is written once. Every item it lists names its chunks and the SHA-256 of its bytes.

use hybridstore_core::nanos_since_epoch as nanos;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use hybridstore_core::{Error, Key, ObjectMeta, PutOptions, Result, Sha256Digest};
use hybridstore_dedup::ChunkId;
use serde::{Deserialize, Serialize};

/// Version of the record formats this crate writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// The longest snapshot record or repository config read, in bytes (a snapshot record
/// lists the chunks of its file items, about 80 bytes each: 64 MiB covers files of tens of
/// gigabytes). Longer values are refused as damage before they are parsed.
pub const MAX_RECORD_LEN: u64 = 64 << 20;

/// The longest line of a key tree, in bytes: a key (at most 1 KiB, hex-encoded) and the
/// chunk list of the largest value a store reports (a 512 MiB value has about 32,000 chunks
/// of 16 KiB, 78 bytes each in JSON). Longer lines are damage.
pub const MAX_TREE_LINE_LEN: usize = 8 << 20;

/// A snapshot's id: the SHA-256 of its record, in hex (64 characters). Commands take any
/// unambiguous prefix of at least 4 characters.
pub type SnapshotId = String;

/// The repository's config record (`config`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoConfig {
    /// [`FORMAT_VERSION`] of the repository.
    pub version: u32,
    /// A random id, so two repositories can be told apart.
    pub id: String,
    /// FastCDC sizes the repository cuts values and files with, in bytes.
    pub chunker: ChunkerSizes,
    /// When the repository was created (RFC 3339).
    pub created: String,
}

/// FastCDC sizes in bytes (see `hybridstore_dedup::ChunkerConfig`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkerSizes {
    /// Minimum chunk length.
    pub min: usize,
    /// Average chunk length aimed at.
    pub avg: usize,
    /// Maximum chunk length.
    pub max: usize,
}

/// What kind of thing an item of a snapshot is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemKind {
    /// A key tree: every key of a key/value store with its metadata and chunks.
    Keys,
    /// A file's bytes (a database copy, an index file, a table's file).
    File,
}

/// One item of a snapshot: a key tree or a file, as a chunk list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    /// The item's name: `keys` for the key/value stack, a relative path with `/` for a file
    /// (`lance/passages.lance/_versions/1.manifest`).
    pub name: String,
    /// Key tree or file.
    pub kind: ItemKind,
    /// Length of the item's bytes (the tree's JSON lines, or the file).
    pub size: u64,
    /// SHA-256 of those bytes.
    pub sha256: Sha256Digest,
    /// The chunks, in order: id and length in bytes.
    pub chunks: Vec<(ChunkId, u32)>,
}

/// Figures of a snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Keys in the key tree.
    pub keys: u64,
    /// Bytes of their values.
    pub key_bytes: u64,
    /// File items.
    pub files: u64,
    /// Bytes of the files.
    pub file_bytes: u64,
    /// Chunks this snapshot added to the repository.
    pub new_chunks: u64,
    /// Plaintext bytes of those chunks.
    pub new_bytes: u64,
    /// Milliseconds the backup took.
    pub duration_ms: u64,
}

/// A snapshot record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// [`FORMAT_VERSION`].
    pub version: u32,
    /// When the snapshot's moment was taken, RFC 3339 with the host's UTC offset.
    pub time: String,
    /// The snapshot this one was taken after (the newest of the same host and source).
    pub parent: Option<SnapshotId>,
    /// The host that took it.
    pub host: String,
    /// What was backed up (a data directory's path).
    pub source: String,
    /// Tags given at backup time.
    pub tags: Vec<String>,
    /// The items: at most one key tree, then files in name order.
    pub items: Vec<Item>,
    /// Figures.
    pub summary: Summary,
}

impl Snapshot {
    /// The record's bytes and its id (their SHA-256).
    pub fn encode(&self) -> Result<(SnapshotId, Bytes)> {
        let bytes = serde_json::to_vec_pretty(self)
            .map_err(|e| Error::backend(format!("encoding a snapshot record: {e}")))?;
        Ok((Sha256Digest::of(&bytes).to_hex(), Bytes::from(bytes)))
    }

    /// Parses the record stored as `id`, checking that it hashes to its id.
    ///
    /// # Errors
    /// `Corrupted` if the bytes do not hash to `id`, do not parse, or are of an unknown
    /// version; `InvalidInput` for a record longer than [`MAX_RECORD_LEN`].
    pub fn decode(id: &str, bytes: &[u8]) -> Result<Snapshot> {
        if bytes.len() as u64 > MAX_RECORD_LEN {
            return Err(Error::corrupted(format!(
                "snapshot {id}: record of {} bytes is longer than {MAX_RECORD_LEN}",
                bytes.len()
            )));
        }
        if Sha256Digest::of(bytes).to_hex() != id {
            return Err(Error::corrupted(format!(
                "snapshot {id}: the record does not match its checksum"
            )));
        }
        let snapshot: Snapshot = serde_json::from_slice(bytes).map_err(|e| {
            Error::corrupted(format!("snapshot {id}: the record does not parse: {e}"))
        })?;
        if snapshot.version != FORMAT_VERSION {
            return Err(Error::corrupted(format!(
                "snapshot {id}: format version {} is not {FORMAT_VERSION}",
                snapshot.version
            )));
        }
        Ok(snapshot)
    }

    /// The snapshot's time.
    ///
    /// # Errors
    /// `Corrupted` if the recorded time is not RFC 3339.
    pub fn parsed_time(&self) -> Result<chrono::DateTime<chrono::FixedOffset>> {
        chrono::DateTime::parse_from_rfc3339(&self.time)
            .map_err(|e| Error::corrupted(format!("snapshot time {:?}: {e}", self.time)))
    }

    /// The key tree item, if the snapshot has one.
    pub fn keys_item(&self) -> Option<&Item> {
        self.items.iter().find(|i| i.kind == ItemKind::Keys)
    }

    /// The file items.
    pub fn files(&self) -> impl Iterator<Item = &Item> {
        self.items.iter().filter(|i| i.kind == ItemKind::File)
    }
}

/// One key of a key tree: the key, what its metadata said, and the chunks of its value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeEntry {
    /// The key's bytes, in hex.
    pub key: String,
    /// Value length, bytes.
    pub size: u64,
    /// SHA-256 of the value.
    pub sha256: Sha256Digest,
    /// Content type, if one was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// Creation time, nanoseconds since the Unix epoch.
    pub created_ns: u64,
    /// Modification time, nanoseconds since the Unix epoch.
    pub modified_ns: u64,
    /// The value's chunks in order (one chunk, the whole value, for values the dedup layer
    /// keeps inline).
    pub chunks: Vec<(ChunkId, u32)>,
    /// Whether the source kept the value inline in its manifest (so a restore of the
    /// manifests themselves needs no chunk for it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub inline: bool,
}

impl TreeEntry {
    /// The entry for `key` with metadata `meta` and value chunks `chunks`.
    pub fn new(key: &Key, meta: &ObjectMeta, chunks: Vec<(ChunkId, u32)>) -> TreeEntry {
        TreeEntry {
            key: hex::encode(key.as_bytes()),
            size: meta.size,
            sha256: meta.checksum,
            content_type: meta.content_type.clone(),
            created_ns: nanos(meta.created),
            modified_ns: nanos(meta.modified),
            chunks,
            inline: false,
        }
    }

    /// The key.
    ///
    /// # Errors
    /// `Corrupted` if the hex does not decode to a valid key.
    pub fn key(&self) -> Result<Key> {
        let bytes = hex::decode(&self.key).map_err(|e| {
            Error::corrupted(format!("key tree: key {:?} is not hex: {e}", self.key))
        })?;
        Key::new(bytes).map_err(|e| Error::corrupted(format!("key tree: {e}")))
    }

    /// The options that write this entry back with its content type and times.
    pub fn put_options(&self) -> PutOptions {
        let mut options = PutOptions::default()
            .with_created(UNIX_EPOCH + Duration::from_nanos(self.created_ns))
            .with_modified(UNIX_EPOCH + Duration::from_nanos(self.modified_ns));
        options.content_type = self.content_type.clone();
        options
    }

    /// Checks the chunk lengths add up to the size.
    ///
    /// # Errors
    /// `Corrupted` naming the key if they do not.
    pub fn check_sizes(&self) -> Result<()> {
        let sum: u64 = self.chunks.iter().map(|(_, n)| u64::from(*n)).sum();
        if sum != self.size {
            return Err(Error::corrupted(format!(
                "key {}: chunks add up to {sum} bytes, the value has {}",
                self.display_key(),
                self.size
            )));
        }
        Ok(())
    }

    /// The key for messages: as text when it is UTF-8, else as hex.
    pub fn display_key(&self) -> String {
        match hex::decode(&self.key) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text) => text,
                Err(_) => format!("0x{}", self.key),
            },
            Err(_) => self.key.clone(),
        }
    }
}

/// Encodes entries (already in key order) as JSON lines.
pub fn encode_tree(entries: &[TreeEntry]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for entry in entries {
        serde_json::to_writer(&mut out, entry)
            .map_err(|e| Error::backend(format!("encoding a key tree: {e}")))?;
        out.push(b'\n');
    }
    Ok(out)
}

/// Decodes a key tree, checking each line's length, that keys are strictly ascending and
/// that every entry's chunk lengths add up to its size.
///
/// # Errors
/// `Corrupted` naming the line that fails.
pub fn decode_tree(bytes: &[u8]) -> Result<Vec<TreeEntry>> {
    let mut entries: Vec<TreeEntry> = Vec::new();
    for (n, line) in bytes.split(|b| *b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        if line.len() > MAX_TREE_LINE_LEN {
            return Err(Error::corrupted(format!(
                "key tree line {}: {} bytes, longer than {MAX_TREE_LINE_LEN}",
                n + 1,
                line.len()
            )));
        }
        let entry: TreeEntry = serde_json::from_slice(line).map_err(|e| {
            Error::corrupted(format!("key tree line {}: does not parse: {e}", n + 1))
        })?;
        entry.check_sizes()?;
        // Hex keeps byte order, so the strings compare as the keys do.
        if let Some(previous) = entries.last()
            && previous.key >= entry.key
        {
            return Err(Error::corrupted(format!(
                "key tree line {}: keys out of order",
                n + 1
            )));
        }
        entries.push(entry);
    }
    Ok(entries)
}
