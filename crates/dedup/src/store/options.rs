//! The dedup layer's options and its statistics.

use super::*;

/// Options of a [`DedupStore`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct DedupOptions {
    /// Chunk size bounds (default 4 / 16 / 64 KiB, see [`ChunkerConfig`]).
    pub chunker: ChunkerConfig,
    /// Values of at most this many bytes are kept inline in their manifest (default 256).
    /// Below about that size a chunk reference (a 36-byte manifest entry, a 48-byte pack index
    /// entry and a 9-byte blob header) costs as much as sharing could save. At most
    /// `chunker.min_size`, so an inline value is always a single chunk's worth.
    pub inline_max: usize,
    /// Size in bytes at which a writer seals the open pack itself (default 16 MiB, restic's
    /// default pack size).
    pub target_pack_size: usize,
}

impl Default for DedupOptions {
    fn default() -> Self {
        DedupOptions {
            chunker: ChunkerConfig::default(),
            inline_max: 256,
            target_pack_size: DEFAULT_TARGET_PACK_SIZE,
        }
    }
}

impl DedupOptions {
    /// Checks the options.
    ///
    /// # Errors
    /// `InvalidInput` for chunk sizes `fastcdc` refuses, `inline_max > chunker.min_size`, or a
    /// zero pack size.
    pub fn validate(&self) -> Result<()> {
        self.chunker.validate()?;
        if self.inline_max > self.chunker.min_size {
            return Err(Error::invalid_input(format!(
                "inline_max ({}) must not exceed the minimum chunk size ({})",
                self.inline_max, self.chunker.min_size
            )));
        }
        if self.target_pack_size == 0 {
            return Err(Error::invalid_input("target_pack_size must be positive"));
        }
        Ok(())
    }
}

/// Statistics of a [`DedupStore`], from one pass over the manifests.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct DedupStats {
    /// Keys.
    pub keys: u64,
    /// Sum of value lengths as written, in bytes.
    pub logical_bytes: u64,
    /// Values kept inline in their manifests.
    pub inline_values: u64,
    /// Bytes of those inline values.
    pub inline_bytes: u64,
    /// Bytes of all manifests (inline values included) in the manifest store.
    pub manifest_bytes: u64,
    /// Chunk references in all manifests.
    pub chunk_references: u64,
    /// Distinct chunks referenced.
    pub referenced_chunks: u64,
    /// Plaintext bytes of the distinct referenced chunks.
    pub referenced_raw_bytes: u64,
    /// Stored (blob) bytes of the distinct referenced chunks.
    pub referenced_blob_bytes: u64,
    /// Referenced chunks the chunk store does not hold (damage; `verify` names the keys).
    pub missing_chunks: u64,
    /// Chunks in the chunk store.
    pub stored_chunks: u64,
    /// Pack files.
    pub packs: u64,
    /// Bytes of all pack files.
    pub pack_bytes: u64,
    /// Blob bytes of stored chunks no manifest references (what `gc` can reclaim).
    pub unreferenced_blob_bytes: u64,
    /// Bytes the content occupies: pack files plus inline values.
    pub stored_bytes: u64,
    /// Logical bytes over unique bytes (referenced chunk plaintext + inline values):
    /// what deduplication saves. 1.0 for an empty store.
    pub dedup_ratio: f64,
    /// Referenced chunk plaintext over its blob bytes: what LZ4 saves. 1.0 if none.
    pub compression_ratio: f64,
}

pub(super) fn ratio(numerator: u64, denominator: u64) -> f64 {
    if denominator == 0 {
        1.0
    } else {
        numerator as f64 / denominator as f64
    }
}

impl From<&DedupStats> for StoreStats {
    /// Keys, logical and stored bytes, and every count of `DedupStats` as a counter.
    fn from(d: &DedupStats) -> StoreStats {
        let mut stats = StoreStats {
            keys: d.keys,
            logical_bytes: d.logical_bytes,
            stored_bytes: Some(d.stored_bytes),
            ..StoreStats::default()
        };
        for (name, value) in [
            ("inline_values", d.inline_values),
            ("manifest_bytes", d.manifest_bytes),
            ("chunk_references", d.chunk_references),
            ("referenced_chunks", d.referenced_chunks),
            ("referenced_raw_bytes", d.referenced_raw_bytes),
            ("referenced_blob_bytes", d.referenced_blob_bytes),
            ("missing_chunks", d.missing_chunks),
            ("stored_chunks", d.stored_chunks),
            ("packs", d.packs),
            ("pack_bytes", d.pack_bytes),
            ("unreferenced_blob_bytes", d.unreferenced_blob_bytes),
        ] {
            stats.counters.insert(name.to_string(), value);
        }
        stats
    }
}
