//! What the sink records: one [`AccessEvent`] per storage operation, and the metric records
//! of the query, embedding, reranking and system metric tables ([`MetricRecord`]).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Longest key text kept in an access event, in bytes; longer keys are cut at a character
/// boundary (the hash is always of the whole key).
pub const MAX_EVENT_KEY_BYTES: usize = 256;

/// Microseconds since the Unix epoch (UTC), the unit of every timestamp in the analytics
/// tables. Clocks before 1970 read as 0.
pub fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// The stable 64-bit hash of a key stored in `access_events.key_hash`: XXH3-64 with seed 0
/// (the xxHash specification), so the same key hashes the same in every process and release.
pub fn key_hash(key: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(key)
}

/// The storage operation an access event describes (`access_events.operation`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    /// `get` of one key.
    Get,
    /// `get_range`: part of a value.
    GetRange,
    /// `get_many`: one event per key asked for.
    GetMany,
    /// `head`: metadata only.
    Head,
    /// `exists`.
    Exists,
    /// `put` / `put_with`.
    Put,
    /// `delete`.
    Delete,
    /// A put inside a `write_batch` (one event per put, each with the batch's latency).
    BatchPut,
    /// A delete inside a `write_batch` (one event per delete, each with the batch's latency).
    BatchDelete,
    /// `list_keys`, `scan`, `scan_meta`: one event per call.
    List,
    /// `clear`.
    Clear,
}

impl Operation {
    /// The name stored in the table.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Get => "get",
            Operation::GetRange => "get_range",
            Operation::GetMany => "get_many",
            Operation::Head => "head",
            Operation::Exists => "exists",
            Operation::Put => "put",
            Operation::Delete => "delete",
            Operation::BatchPut => "batch_put",
            Operation::BatchDelete => "batch_delete",
            Operation::List => "list",
            Operation::Clear => "clear",
        }
    }

    /// Whether the operation reads values (counts toward hot keys).
    pub fn is_read(self) -> bool {
        matches!(
            self,
            Operation::Get | Operation::GetRange | Operation::GetMany
        )
    }
}

/// Which cache tier answered a read (`access_events.cache_tier`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CacheTier {
    /// Served from the in-process cache.
    L1Hit,
    /// Missed the in-process cache, served from Redis.
    L2Hit,
    /// Missed every tier: read from the store below the cache.
    Miss,
}

impl CacheTier {
    /// The name stored in the table.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheTier::L1Hit => "l1_hit",
            CacheTier::L2Hit => "l2_hit",
            CacheTier::Miss => "miss",
        }
    }
}

/// How an operation ended (`access_events.outcome`): `ok`, `not_found` (a read of an absent
/// key), or the name of the error kind (`ErrorKind::as_str`: `invalid_input`, `timeout`, …).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Outcome(&'static str);

impl Outcome {
    /// The operation succeeded.
    pub const OK: Outcome = Outcome("ok");
    /// A read found no value.
    pub const NOT_FOUND: Outcome = Outcome("not_found");

    /// The operation failed with `kind`.
    pub fn error(kind: hybridstore_core::ErrorKind) -> Outcome {
        Outcome(kind.as_str())
    }

    /// The name stored in the table.
    pub fn as_str(self) -> &'static str {
        self.0
    }

    /// Whether this outcome is an error (neither `ok` nor `not_found`).
    pub fn is_error(self) -> bool {
        self != Outcome::OK && self != Outcome::NOT_FOUND
    }
}

/// One storage operation, a row of `access_events`.
#[derive(Clone, Debug, PartialEq)]
pub struct AccessEvent {
    /// When the operation began, in microseconds since the Unix epoch (UTC).
    pub timestamp_us: i64,
    /// What was done.
    pub operation: Operation,
    /// The backend or layer that served it (`"file"`, `"sql"`, `"postgres"`, …).
    pub backend: Arc<str>,
    /// The tenant, when the store is namespaced.
    pub tenant: Option<Arc<str>>,
    /// [`key_hash`] of the key; 0 for operations on no single key (list, clear).
    pub key_hash: u64,
    /// The key, cut to [`MAX_EVENT_KEY_BYTES`]; `None` when not recorded.
    pub key: Option<Box<str>>,
    /// Value bytes moved: read for reads, written for writes, 0 otherwise.
    pub bytes: u64,
    /// Wall time of the operation as the caller saw it, in microseconds.
    pub latency_us: u64,
    /// Which cache tier answered, for reads through a cache.
    pub cache_tier: Option<CacheTier>,
    /// How it ended.
    pub outcome: Outcome,
}

impl AccessEvent {
    /// An event for `operation` on `key` (hashed, and kept cut to [`MAX_EVENT_KEY_BYTES`]),
    /// stamped now, with zero bytes and latency, no tenant, no cache tier and outcome `ok`.
    pub fn new(operation: Operation, backend: Arc<str>, key: Option<&str>) -> AccessEvent {
        AccessEvent {
            timestamp_us: now_micros(),
            operation,
            backend,
            tenant: None,
            key_hash: key.map_or(0, |k| key_hash(k.as_bytes())),
            key: key.map(|k| truncate_at_char(k, MAX_EVENT_KEY_BYTES).into()),
            bytes: 0,
            latency_us: 0,
            cache_tier: None,
            outcome: Outcome::OK,
        }
    }
}

impl AccessEvent {
    /// Sets the key from its bytes: the hash of all of them, and (if `keep_text`) the text,
    /// lossily decoded as UTF-8 and cut to [`MAX_EVENT_KEY_BYTES`].
    pub fn with_key_bytes(mut self, key: &[u8], keep_text: bool) -> AccessEvent {
        self.key_hash = key_hash(key);
        self.key = keep_text
            .then(|| truncate_at_char(&String::from_utf8_lossy(key), MAX_EVENT_KEY_BYTES).into());
        self
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn truncate_at_char(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A row of one of the metric tables (`query_metrics`, `embedding_metrics`,
/// `reranking_metrics`, `system_metrics`). Timestamps are microseconds since the Unix epoch
/// (UTC); durations are milliseconds, as the tables' columns are.
#[derive(Clone, Debug, PartialEq)]
pub enum MetricRecord {
    /// `query_metrics`: one retrieval query.
    Query {
        /// When it ran.
        timestamp_us: i64,
        /// `"vector"`, `"full_text"`, `"hybrid"`, …
        query_type: String,
        /// How long it took, in milliseconds.
        latency_ms: f64,
        /// Rows returned.
        result_count: i64,
        /// Index or strategy used (`"flat"`, `"ivf_pq"`, …).
        retrieval_strategy: String,
        /// Whether it succeeded.
        success: bool,
    },
    /// `embedding_metrics`: one embedding computed by the application.
    Embedding {
        /// When it ran.
        timestamp_us: i64,
        /// The model's name.
        model_name: String,
        /// How long it took, in milliseconds.
        embedding_time_ms: f64,
        /// Input length in characters.
        text_length: i64,
        /// Vector dimension.
        dimension: i64,
    },
    /// `reranking_metrics`: one reranking pass.
    Reranking {
        /// When it ran.
        timestamp_us: i64,
        /// The query type reranked.
        query_type: String,
        /// Documents reranked.
        document_count: i64,
        /// How long it took, in milliseconds.
        rerank_time_ms: f64,
        /// The application's quality score.
        quality_score: f64,
    },
    /// `system_metrics`: one named measurement.
    System {
        /// When it was taken.
        timestamp_us: i64,
        /// The metric's name.
        metric_name: String,
        /// Its value.
        metric_value: f64,
        /// Its unit (`"bytes"`, `"ms"`, …).
        metric_unit: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_keys_are_cut_on_a_character_boundary_and_hashed_whole() {
        let key = "é".repeat(200); // 400 bytes
        let e = AccessEvent::new(Operation::Get, "file".into(), Some(&key));
        let kept = e.key.as_deref().unwrap_or_default();
        assert!(kept.len() <= MAX_EVENT_KEY_BYTES && kept.len() >= MAX_EVENT_KEY_BYTES - 1);
        assert!(key.starts_with(kept));
        assert_eq!(e.key_hash, key_hash(key.as_bytes()));
        assert_ne!(e.key_hash, key_hash(kept.as_bytes()));
    }

    #[test]
    fn key_hash_is_the_published_xxh3_of_the_bytes() {
        // XXH3-64 of the empty input with seed 0 (xxHash's test vectors).
        assert_eq!(key_hash(b""), 0x2D06_8005_38D3_94C2);
    }
}
