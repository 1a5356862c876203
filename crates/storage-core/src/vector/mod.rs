//! Vectors: the [`VectorStore`] trait every vector engine implements, its records, and the
//! typed [`Filter`] that engines turn into their own expressions (never by splicing text).
//!
//! A collection has a fixed dimension, a [`Distance`] and declared metadata fields
//! ([`FieldSpec`]). Records carry an id, the vector, optional text, metadata values and the
//! reserved bi-temporal and retention fields (`event_time`, `ingestion_time`, `expires_at`,
//! all microseconds since the Unix epoch, UTC) and `tenant`, which engines fill in and
//! filter on themselves.

mod filter;
mod query;
mod record;
mod spec;

use std::fmt;

use async_trait::async_trait;
use serde::Serialize;

use crate::Result;

pub use filter::Filter;
pub use query::{MAX_K, SearchHit, VectorQuery};
pub use record::{FieldValue, VectorRecord};
pub use spec::{
    CollectionSpec, Distance, FieldSpec, FieldType, check_vector, validate_collection_name,
};

/// Largest vector dimension a collection accepts (Lance stores up to 2^31 − 1 per row; this
/// bound keeps one vector under 64 KiB).
pub const MAX_DIMENSION: usize = 16_384;
/// Longest record id in bytes.
pub const MAX_ID_LEN: usize = 1_024;
/// Longest collection or field name in bytes.
pub const MAX_NAME_LEN: usize = 64;

/// Names of the columns every collection has; metadata fields may not use them, nor start
/// with `_` (engines' own columns such as `_distance` and `_score`).
pub const RESERVED_FIELDS: &[&str] = &[
    "id",
    "vector",
    "text",
    "tenant",
    "event_time",
    "ingestion_time",
    "expires_at",
];

/// What a collection holds.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CollectionInfo {
    /// Its definition.
    pub spec: CollectionSpec,
    /// Records (visible to the caller's tenant scope, expired ones included).
    pub rows: u64,
    /// Names of its indexes.
    pub indexes: Vec<String>,
}

/// What a vector engine can do, as data: callers and the conformance suite
/// ([`conformance::vector`](crate::conformance)) read it instead of guessing (after OpenDAL's
/// `Capability`, <https://docs.rs/opendal/latest/opendal/struct.Capability.html>).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct VectorCapabilities {
    /// Largest dimension a collection may declare (at most [`MAX_DIMENSION`]).
    pub max_dimension: usize,
    /// Largest `k` a query may ask for (at most [`MAX_K`]).
    pub max_k: usize,
    /// Whether records survive the process.
    pub durable: bool,
    /// Whether collections without vectors ([`CollectionSpec::text_only`]) can be created.
    pub text_only_collections: bool,
    /// Whether searches leave out records whose `expires_at_us` has passed.
    pub expiry: bool,
    /// Whether approximate vector indexes can be built (queries then take `nprobes`, `ef`
    /// and `refine_factor`; `exact` bypasses them).
    pub vector_indexes: bool,
}

impl VectorCapabilities {
    /// Capabilities with nothing optional: [`MAX_DIMENSION`], [`MAX_K`], not durable, no
    /// text-only collections, no expiry, no indexes. Engines start from this.
    pub fn new() -> Self {
        VectorCapabilities {
            max_dimension: MAX_DIMENSION,
            max_k: MAX_K,
            durable: false,
            text_only_collections: false,
            expiry: false,
            vector_indexes: false,
        }
    }

    /// Sets `durable`.
    pub fn with_durable(mut self, yes: bool) -> Self {
        self.durable = yes;
        self
    }

    /// Sets `text_only_collections`.
    pub fn with_text_only_collections(mut self, yes: bool) -> Self {
        self.text_only_collections = yes;
        self
    }

    /// Sets `expiry`.
    pub fn with_expiry(mut self, yes: bool) -> Self {
        self.expiry = yes;
        self
    }

    /// Sets `vector_indexes`.
    pub fn with_vector_indexes(mut self, yes: bool) -> Self {
        self.vector_indexes = yes;
        self
    }
}

impl Default for VectorCapabilities {
    fn default() -> Self {
        Self::new()
    }
}

/// A vector engine: collections of records with k-NN search and metadata filters.
///
/// # Behaviour every implementation guarantees
/// (checked by the vector conformance suite, `conformance::vector`, for every engine and
/// every scope of one)
/// - **Missing collections**: every method but `create_collection` and `list_collections`
///   fails with `NotFound` for a collection that does not exist — also when the rest of the
///   call is empty (no ids, no records), so a typo never reads as "nothing there".
/// - **Shapes**: a vector of the wrong dimension, with a NaN or infinite component, or (for
///   [`Distance::Cosine`]) all zero, is `InvalidInput`, whether written or queried; a call
///   that fails this way writes nothing.
/// - **Empty input** is no work: `add` and `upsert` of no records, `delete_ids` and `get` of
///   no ids succeed and change nothing; a search of an empty collection finds nothing.
/// - **Ids**: `add` appends and does not check ids (two records may share one; both are
///   stored); `upsert` replaces the record with the same id and refuses a call that names one
///   id twice (`InvalidInput`: which one should win is not the engine's to guess).
/// - **k**: 1 to [`VectorCapabilities::max_k`]; anything else is `InvalidInput`. A search
///   returns at most `k` hits and fewer only when fewer records match.
/// - **Order**: hits are closest first (non-increasing `score`); with `exact` they are the
///   true nearest neighbours.
/// - **Filters** are checked against the collection: an unknown field, a value of another
///   type, or `contains` on a field that is not a string list is `InvalidInput`.
/// - **Scopes**: a store scoped to a tenant reads, counts and deletes that tenant's records
///   only; the suite runs through a scope as well.
/// - **No panics** on any input.
#[async_trait]
pub trait VectorStore: Send + Sync + fmt::Debug {
    /// What this engine supports.
    fn capabilities(&self) -> VectorCapabilities;

    /// Creates a collection and returns what it holds.
    ///
    /// # Errors
    /// `Conflict` if it exists with a different spec (an identical spec is not an error:
    /// the call then describes the existing collection); `InvalidInput` for an invalid spec,
    /// a dimension above [`VectorCapabilities::max_dimension`], or a text-only spec where
    /// [`VectorCapabilities::text_only_collections`] is false.
    async fn create_collection(&self, spec: &CollectionSpec) -> Result<CollectionInfo>;

    /// Names of every collection, sorted bytewise.
    ///
    /// # Errors
    /// Engine errors.
    async fn list_collections(&self) -> Result<Vec<String>>;

    /// The collection's spec, row count (of this scope) and index names (sorted).
    ///
    /// # Errors
    /// `NotFound` for a missing collection; engine errors.
    async fn describe_collection(&self, name: &str) -> Result<CollectionInfo>;

    /// Deletes a collection and its records (every tenant's).
    ///
    /// # Errors
    /// `NotFound` for a missing collection; `InvalidInput` for an invalid name.
    async fn drop_collection(&self, name: &str) -> Result<()>;

    /// Records matching `filter` (all when `None`), expired ones included.
    ///
    /// # Errors
    /// `NotFound` for a missing collection; `InvalidInput` for a filter that does not fit it.
    async fn count(&self, collection: &str, filter: Option<&Filter>) -> Result<u64>;

    /// Appends records (ids are not checked; use `upsert` to replace by id).
    ///
    /// # Errors
    /// `NotFound` for a missing collection; `InvalidInput` for a record that does not fit
    /// it (nothing is written then); `QuotaExceeded` beyond a scope's quota.
    async fn add(&self, collection: &str, records: Vec<VectorRecord>) -> Result<()>;

    /// Inserts records, replacing any with the same id (in this scope).
    ///
    /// # Errors
    /// As [`add`](Self::add), and `InvalidInput` if two records of the call share an id.
    async fn upsert(&self, collection: &str, records: Vec<VectorRecord>) -> Result<()>;

    /// Deletes records by id; returns how many were deleted.
    ///
    /// # Errors
    /// `NotFound` for a missing collection.
    async fn delete_ids(&self, collection: &str, ids: &[String]) -> Result<u64>;

    /// Deletes records matching `filter`; returns how many were deleted.
    ///
    /// # Errors
    /// `NotFound` for a missing collection; `InvalidInput` for a filter that does not fit it.
    async fn delete_where(&self, collection: &str, filter: &Filter) -> Result<u64>;

    /// The records with these ids (in no particular order; missing ids are left out).
    ///
    /// # Errors
    /// `NotFound` for a missing collection.
    async fn get(&self, collection: &str, ids: &[String]) -> Result<Vec<VectorRecord>>;

    /// The `k` nearest unexpired records to the query vector that match its filter,
    /// closest first.
    ///
    /// # Errors
    /// `NotFound` for a missing collection; `InvalidInput` for a vector of the wrong shape,
    /// `k` out of bounds or a filter that does not fit the collection.
    async fn search(&self, collection: &str, query: &VectorQuery) -> Result<Vec<SearchHit>>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    fn spec() -> CollectionSpec {
        CollectionSpec::new("docs", 3, Distance::Cosine)
            .with_field("kind", FieldType::String)
            .with_field("year", FieldType::Integer)
            .with_field("tags", FieldType::StringList)
    }

    #[test]
    fn bad_vectors_name_the_expected_and_given_shape() {
        let e = check_vector(&[1.0, 2.0], 3, Distance::L2).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(e.to_string().contains("expects 3"), "{e}");
        assert_eq!(
            e.context(),
            &[("expected", "3".into()), ("given", "2".into())]
        );
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let e = check_vector(&[1.0, bad, 0.0], 3, Distance::L2).unwrap_err();
            assert!(e.to_string().contains("component 1"), "{e}");
        }
        assert!(check_vector(&[], 3, Distance::L2).is_err());
        assert!(check_vector(&[0.0; 3], 3, Distance::Cosine).is_err());
        assert!(check_vector(&[0.0; 3], 3, Distance::L2).is_ok());
    }

    #[test]
    fn specs_and_records_are_checked() {
        assert!(spec().validate().is_ok());
        for bad in [
            CollectionSpec::new("", 3, Distance::L2),
            CollectionSpec::new("a/b", 3, Distance::L2),
            CollectionSpec::new("ok", MAX_DIMENSION + 1, Distance::L2),
            CollectionSpec::new("ok", 3, Distance::L2).with_field("text", FieldType::String),
            CollectionSpec::new("ok", 3, Distance::L2).with_field("Bad", FieldType::String),
            CollectionSpec::new("ok", 3, Distance::L2)
                .with_field("a", FieldType::String)
                .with_field("a", FieldType::Integer),
        ] {
            assert_eq!(
                bad.validate().unwrap_err().kind(),
                ErrorKind::InvalidInput,
                "{bad:?}"
            );
        }
        let s = spec();
        assert!(
            VectorRecord::new("a", vec![1.0, 0.0, 0.0])
                .with_field("year", 2024i64)
                .validate(&s)
                .is_ok()
        );
        assert!(
            VectorRecord::new("a", vec![1.0, 0.0, 0.0])
                .with_field("year", "x")
                .validate(&s)
                .is_err()
        );
        assert!(
            VectorRecord::new("a", vec![1.0, 0.0, 0.0])
                .with_field("nope", 1i64)
                .validate(&s)
                .is_err()
        );
        assert!(
            VectorRecord::new("", vec![1.0, 0.0, 0.0])
                .validate(&s)
                .is_err()
        );
    }

    #[test]
    fn filters_are_checked_against_the_collection() {
        let s = spec();
        assert!(
            Filter::eq("kind", "a")
                .and(Filter::contains("tags", "x"))
                .validate(&s)
                .is_ok()
        );
        assert!(
            Filter::range(
                "event_time",
                FieldValue::Timestamp(0),
                FieldValue::Timestamp(5)
            )
            .validate(&s)
            .is_ok()
        );
        assert!(Filter::gt("year", 1.5).validate(&s).is_ok());
        for bad in [
            Filter::eq("missing", "a"),
            Filter::eq("year", "2024"),
            Filter::contains("kind", "x"),
            Filter::eq("tags", "x"),
        ] {
            assert_eq!(
                bad.validate(&s).unwrap_err().kind(),
                ErrorKind::InvalidInput,
                "{bad:?}"
            );
        }
    }
}
