//! Vectors: the [`VectorStore`] trait every vector engine implements, its records, and the
//! typed [`Filter`] that engines turn into their own expressions (never by splicing text).
//!
//! A collection has a fixed dimension, a [`Distance`] and declared metadata fields
//! ([`FieldSpec`]). Records carry an id, the vector, optional text, metadata values and the
//! reserved bi-temporal and retention fields (`event_time`, `ingestion_time`, `expires_at`,
//! all microseconds since the Unix epoch, UTC) and `tenant`, which engines fill in and
//! filter on themselves.

use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

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

/// How vectors are compared. Scores in results are always "higher is closer".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Distance {
    /// 1 − cosine similarity, in [0, 2]; zero vectors have no direction and are refused.
    #[default]
    Cosine,
    /// Euclidean distance (engines may report its square; ordering is the same).
    L2,
    /// Negative dot product, for vectors normalised by the application.
    Dot,
}

impl Distance {
    /// The name used in configuration and output (`cosine`, `l2`, `dot`).
    pub fn as_str(self) -> &'static str {
        match self {
            Distance::Cosine => "cosine",
            Distance::L2 => "l2",
            Distance::Dot => "dot",
        }
    }
}

/// The type of a metadata field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    /// UTF-8 text.
    String,
    /// 64-bit signed integer.
    Integer,
    /// 64-bit float.
    Float,
    /// Microseconds since the Unix epoch (UTC).
    Timestamp,
    /// A list of UTF-8 strings (tags); filtered with [`Filter::contains`].
    StringList,
}

/// A declared metadata field.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FieldSpec {
    /// `[a-z][a-z0-9_]*`, at most 64 bytes, not one of [`RESERVED_FIELDS`].
    pub name: String,
    /// Its type.
    pub field_type: FieldType,
}

impl FieldSpec {
    /// A field named `name` of type `field_type`.
    pub fn new(name: impl Into<String>, field_type: FieldType) -> FieldSpec {
        FieldSpec {
            name: name.into(),
            field_type,
        }
    }
}

/// What a collection is: its name, vector shape and metadata fields.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollectionSpec {
    /// `[A-Za-z0-9_-]`, 1 to 64 bytes.
    pub name: String,
    /// Vector length, 1 to [`MAX_DIMENSION`]; 0 for a text-only collection (no vector
    /// column: full-text search only, records carry an empty vector).
    pub dimension: usize,
    /// How vectors are compared.
    pub distance: Distance,
    /// Metadata fields records may carry.
    pub fields: Vec<FieldSpec>,
}

impl CollectionSpec {
    /// A collection of `dimension`-long vectors compared by `distance`, without metadata.
    pub fn new(name: impl Into<String>, dimension: usize, distance: Distance) -> CollectionSpec {
        CollectionSpec {
            name: name.into(),
            dimension,
            distance,
            fields: Vec::new(),
        }
    }

    /// A collection of texts without vectors, for full-text search only.
    pub fn text_only(name: impl Into<String>) -> CollectionSpec {
        CollectionSpec::new(name, 0, Distance::default())
    }

    /// Whether records have vectors.
    pub fn has_vectors(&self) -> bool {
        self.dimension > 0
    }

    /// Adds a metadata field.
    pub fn with_field(mut self, name: impl Into<String>, field_type: FieldType) -> Self {
        self.fields.push(FieldSpec::new(name, field_type));
        self
    }

    /// The declared type of `field`, including the reserved ones.
    pub fn field_type(&self, field: &str) -> Option<FieldType> {
        match field {
            "id" | "text" | "tenant" => Some(FieldType::String),
            "event_time" | "ingestion_time" | "expires_at" => Some(FieldType::Timestamp),
            _ => self
                .fields
                .iter()
                .find(|f| f.name == field)
                .map(|f| f.field_type),
        }
    }

    /// Checks names, dimension and fields.
    ///
    /// # Errors
    /// `InvalidInput` naming the first problem.
    pub fn validate(&self) -> Result<()> {
        validate_collection_name(&self.name)?;
        if self.dimension > MAX_DIMENSION {
            return Err(Error::invalid_input(format!(
                "a collection's dimension must be between 0 (text only) and {MAX_DIMENSION}, got {}",
                self.dimension
            )));
        }
        let mut seen = std::collections::BTreeSet::new();
        for f in &self.fields {
            let ok = !f.name.is_empty()
                && f.name.len() <= MAX_NAME_LEN
                && f.name.starts_with(|c: char| c.is_ascii_lowercase())
                && f.name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !ok {
                return Err(Error::invalid_input(format!(
                    "field name {:?} must match [a-z][a-z0-9_]* (at most {MAX_NAME_LEN} bytes)",
                    f.name
                )));
            }
            if RESERVED_FIELDS.contains(&f.name.as_str()) {
                return Err(Error::invalid_input(format!(
                    "field name {:?} is reserved (reserved: {})",
                    f.name,
                    RESERVED_FIELDS.join(", ")
                )));
            }
            if !seen.insert(&f.name) {
                return Err(Error::invalid_input(format!(
                    "field {:?} is declared twice",
                    f.name
                )));
            }
        }
        Ok(())
    }
}

/// Checks a collection name: `[A-Za-z0-9_-]`, 1 to 64 bytes.
///
/// # Errors
/// `InvalidInput` otherwise.
pub fn validate_collection_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid_input(format!(
            "collection name {name:?} must be 1 to {MAX_NAME_LEN} of [A-Za-z0-9_-]"
        )))
    }
}

/// Checks a vector against a collection's dimension: not empty, the right length, every
/// component finite (and, for cosine, not all zero).
///
/// # Errors
/// `InvalidInput` with the expected and given shape, or the index of the first bad value.
pub fn check_vector(vector: &[f32], dimension: usize, distance: Distance) -> Result<()> {
    if dimension == 0 {
        return Err(Error::invalid_input(
            "the collection is text-only: it has no vectors to search",
        ));
    }
    if vector.len() != dimension {
        return Err(Error::invalid_input(format!(
            "vector has {} dimensions; the collection expects {dimension}",
            vector.len()
        ))
        .with_context("expected", dimension)
        .with_context("given", vector.len()));
    }
    if let Some(i) = vector.iter().position(|x| !x.is_finite()) {
        return Err(Error::invalid_input(format!(
            "vector component {i} is {} (NaN and infinities are refused)",
            vector[i]
        )));
    }
    if distance == Distance::Cosine && vector.iter().all(|x| *x == 0.0) {
        return Err(Error::invalid_input(
            "a zero vector has no direction: cosine distance is undefined for it",
        ));
    }
    Ok(())
}

/// A metadata value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldValue {
    /// Text.
    String(String),
    /// A signed integer.
    Integer(i64),
    /// A float.
    Float(f64),
    /// Microseconds since the Unix epoch (UTC).
    Timestamp(i64),
    /// Tags.
    StringList(Vec<String>),
}

impl FieldValue {
    /// The type of this value.
    pub fn field_type(&self) -> FieldType {
        match self {
            FieldValue::String(_) => FieldType::String,
            FieldValue::Integer(_) => FieldType::Integer,
            FieldValue::Float(_) => FieldType::Float,
            FieldValue::Timestamp(_) => FieldType::Timestamp,
            FieldValue::StringList(_) => FieldType::StringList,
        }
    }
}

impl From<&str> for FieldValue {
    fn from(s: &str) -> Self {
        FieldValue::String(s.to_string())
    }
}
impl From<String> for FieldValue {
    fn from(s: String) -> Self {
        FieldValue::String(s)
    }
}
impl From<i64> for FieldValue {
    fn from(n: i64) -> Self {
        FieldValue::Integer(n)
    }
}
impl From<f64> for FieldValue {
    fn from(x: f64) -> Self {
        FieldValue::Float(x)
    }
}
impl From<Vec<String>> for FieldValue {
    fn from(v: Vec<String>) -> Self {
        FieldValue::StringList(v)
    }
}

/// One record of a collection.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VectorRecord {
    /// Unique within the collection (and tenant), 1 to [`MAX_ID_LEN`] bytes.
    pub id: String,
    /// `dimension` finite components.
    pub vector: Vec<f32>,
    /// Text for full-text search and for showing with results.
    pub text: Option<String>,
    /// Values of declared fields; absent fields are null.
    pub metadata: BTreeMap<String, FieldValue>,
    /// When the thing the record describes happened (µs since the epoch).
    pub event_time_us: Option<i64>,
    /// When the store took the record (µs since the epoch); set by the store on write.
    pub ingestion_time_us: Option<i64>,
    /// After this instant (µs since the epoch) the record is invisible and purgeable.
    pub expires_at_us: Option<i64>,
}

impl VectorRecord {
    /// A record with an id and a vector and nothing else.
    pub fn new(id: impl Into<String>, vector: Vec<f32>) -> VectorRecord {
        VectorRecord {
            id: id.into(),
            vector,
            text: None,
            metadata: BTreeMap::new(),
            event_time_us: None,
            ingestion_time_us: None,
            expires_at_us: None,
        }
    }

    /// Sets the text.
    pub fn with_text(mut self, text: impl Into<String>) -> Self {
        self.text = Some(text.into());
        self
    }

    /// Sets a metadata value.
    pub fn with_field(mut self, name: impl Into<String>, value: impl Into<FieldValue>) -> Self {
        self.metadata.insert(name.into(), value.into());
        self
    }

    /// Checks the record against `spec`.
    ///
    /// # Errors
    /// `InvalidInput` for an empty or over-long id, a bad vector ([`check_vector`]), an
    /// undeclared field or a value of the wrong type.
    pub fn validate(&self, spec: &CollectionSpec) -> Result<()> {
        if self.id.is_empty() || self.id.len() > MAX_ID_LEN {
            return Err(Error::invalid_input(format!(
                "record ids are 1 to {MAX_ID_LEN} bytes, got {}",
                self.id.len()
            )));
        }
        if spec.has_vectors() {
            check_vector(&self.vector, spec.dimension, spec.distance)
                .map_err(|e| e.with_context("id", &self.id))?;
        } else if !self.vector.is_empty() {
            return Err(Error::invalid_input(format!(
                "collection {:?} is text-only; record {:?} has a vector",
                spec.name, self.id
            )));
        }
        for (name, value) in &self.metadata {
            match spec.fields.iter().find(|f| &f.name == name) {
                None => {
                    return Err(Error::invalid_input(format!(
                        "field {name:?} is not declared in collection {:?}",
                        spec.name
                    ))
                    .with_context("id", &self.id));
                }
                Some(f) if f.field_type != value.field_type() => {
                    return Err(Error::invalid_input(format!(
                        "field {name:?} is {:?}, got a {:?} value",
                        f.field_type,
                        value.field_type()
                    ))
                    .with_context("id", &self.id));
                }
                Some(_) => {}
            }
        }
        Ok(())
    }
}

/// A metadata filter, built with the constructors below and turned by each engine into its
/// own expression tree: values are always literals, so no value can change the filter's
/// structure.
///
/// ```
/// use hybridstore_core::vector::Filter;
/// let f = Filter::eq("kind", "manual")
///     .and(Filter::range("year", 2020i64, 2025i64))
///     .and(Filter::contains("tags", "rust").or(Filter::is_in("lang", ["en", "de"])).not());
/// assert_eq!(f.fields(), vec!["kind", "lang", "tags", "year"]);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Filter {
    /// `field = value`.
    Eq(String, FieldValue),
    /// `field <> value` (records where the field is null do not match).
    Ne(String, FieldValue),
    /// `field > value`.
    Gt(String, FieldValue),
    /// `field >= value`.
    Ge(String, FieldValue),
    /// `field < value`.
    Lt(String, FieldValue),
    /// `field <= value`.
    Le(String, FieldValue),
    /// `field` equals one of the values.
    In(String, Vec<FieldValue>),
    /// A string-list field holds the string.
    Contains(String, String),
    /// The field is null (absent).
    IsNull(String),
    /// Every filter holds (true when empty).
    And(Vec<Filter>),
    /// Some filter holds (false when empty).
    Or(Vec<Filter>),
    /// The filter does not hold.
    Not(Box<Filter>),
}

impl Filter {
    /// `field = value`.
    pub fn eq(field: impl Into<String>, value: impl Into<FieldValue>) -> Filter {
        Filter::Eq(field.into(), value.into())
    }
    /// `field <> value`.
    pub fn ne(field: impl Into<String>, value: impl Into<FieldValue>) -> Filter {
        Filter::Ne(field.into(), value.into())
    }
    /// `field > value`.
    pub fn gt(field: impl Into<String>, value: impl Into<FieldValue>) -> Filter {
        Filter::Gt(field.into(), value.into())
    }
    /// `field >= value`.
    pub fn ge(field: impl Into<String>, value: impl Into<FieldValue>) -> Filter {
        Filter::Ge(field.into(), value.into())
    }
    /// `field < value`.
    pub fn lt(field: impl Into<String>, value: impl Into<FieldValue>) -> Filter {
        Filter::Lt(field.into(), value.into())
    }
    /// `field <= value`.
    pub fn le(field: impl Into<String>, value: impl Into<FieldValue>) -> Filter {
        Filter::Le(field.into(), value.into())
    }
    /// `start <= field < end` (half-open, as time windows are).
    pub fn range(
        field: impl Into<String>,
        start: impl Into<FieldValue>,
        end: impl Into<FieldValue>,
    ) -> Filter {
        let field = field.into();
        Filter::And(vec![
            Filter::Ge(field.clone(), start.into()),
            Filter::Lt(field, end.into()),
        ])
    }
    /// `field` equals one of `values`.
    pub fn is_in<V: Into<FieldValue>>(
        field: impl Into<String>,
        values: impl IntoIterator<Item = V>,
    ) -> Filter {
        Filter::In(field.into(), values.into_iter().map(Into::into).collect())
    }
    /// The string-list `field` holds `value`.
    pub fn contains(field: impl Into<String>, value: impl Into<String>) -> Filter {
        Filter::Contains(field.into(), value.into())
    }
    /// `field` is null.
    pub fn is_null(field: impl Into<String>) -> Filter {
        Filter::IsNull(field.into())
    }
    /// Both hold.
    pub fn and(self, other: Filter) -> Filter {
        match self {
            Filter::And(mut all) => {
                all.push(other);
                Filter::And(all)
            }
            first => Filter::And(vec![first, other]),
        }
    }
    /// Either holds.
    pub fn or(self, other: Filter) -> Filter {
        match self {
            Filter::Or(mut any) => {
                any.push(other);
                Filter::Or(any)
            }
            first => Filter::Or(vec![first, other]),
        }
    }
    /// Negation.
    #[allow(clippy::should_implement_trait)] // a builder method, like `and` and `or`
    pub fn not(self) -> Filter {
        Filter::Not(Box::new(self))
    }

    /// The fields the filter reads, sorted, without repeats.
    pub fn fields(&self) -> Vec<&str> {
        let mut out = std::collections::BTreeSet::new();
        self.collect_fields(&mut out);
        out.into_iter().collect()
    }

    fn collect_fields<'a>(&'a self, out: &mut std::collections::BTreeSet<&'a str>) {
        match self {
            Filter::Eq(f, _)
            | Filter::Ne(f, _)
            | Filter::Gt(f, _)
            | Filter::Ge(f, _)
            | Filter::Lt(f, _)
            | Filter::Le(f, _)
            | Filter::In(f, _)
            | Filter::Contains(f, _)
            | Filter::IsNull(f) => {
                out.insert(f);
            }
            Filter::And(all) | Filter::Or(all) => all.iter().for_each(|x| x.collect_fields(out)),
            Filter::Not(x) => x.collect_fields(out),
        }
    }

    /// Checks every field exists in `spec` and every value has its field's type (`Contains`
    /// needs a string list; comparisons cannot apply to string lists).
    ///
    /// # Errors
    /// `InvalidInput` naming the field.
    pub fn validate(&self, spec: &CollectionSpec) -> Result<()> {
        let typed = |field: &str| {
            spec.field_type(field).ok_or_else(|| {
                Error::invalid_input(format!(
                    "filter field {field:?} is not a field of collection {:?}",
                    spec.name
                ))
            })
        };
        let same = |field: &str, value: &FieldValue| -> Result<()> {
            let ty = typed(field)?;
            let ok = match (ty, value) {
                (FieldType::StringList, _) => false,
                // Integers compare with floats too.
                (FieldType::Float, FieldValue::Integer(_))
                | (FieldType::Integer, FieldValue::Float(_)) => true,
                (ty, v) => ty == v.field_type(),
            };
            if ok {
                Ok(())
            } else {
                Err(Error::invalid_input(format!(
                    "filter compares field {field:?} ({ty:?}) with a {:?} value",
                    value.field_type()
                )))
            }
        };
        match self {
            Filter::Eq(f, v)
            | Filter::Ne(f, v)
            | Filter::Gt(f, v)
            | Filter::Ge(f, v)
            | Filter::Lt(f, v)
            | Filter::Le(f, v) => same(f, v),
            Filter::In(f, vs) => vs.iter().try_for_each(|v| same(f, v)),
            Filter::Contains(f, _) => match typed(f)? {
                FieldType::StringList => Ok(()),
                other => Err(Error::invalid_input(format!(
                    "contains needs a string-list field; {f:?} is {other:?}"
                ))),
            },
            Filter::IsNull(f) => typed(f).map(|_| ()),
            Filter::And(all) | Filter::Or(all) => all.iter().try_for_each(|x| x.validate(spec)),
            Filter::Not(x) => x.validate(spec),
        }
    }
}

/// A k-nearest-neighbour query.
#[derive(Clone, Debug, PartialEq)]
pub struct VectorQuery {
    /// The query vector (the collection's dimension).
    pub vector: Vec<f32>,
    /// How many results at most (1 to 10,000).
    pub k: usize,
    /// Only records matching this filter (applied before the search unless `postfilter`).
    pub filter: Option<Filter>,
    /// Apply the filter to the nearest candidates instead of before the search: faster with
    /// selective indexes, but may return fewer than `k` results.
    pub postfilter: bool,
    /// Ignore vector indexes and compare with every record (exact results).
    pub exact: bool,
    /// IVF partitions to probe (engine default when `None`).
    pub nprobes: Option<usize>,
    /// HNSW candidate list size (engine default when `None`).
    pub ef: Option<usize>,
    /// Re-rank `k × refine_factor` PQ candidates with full vectors (`None`: no refinement).
    pub refine_factor: Option<u32>,
}

impl VectorQuery {
    /// The `k` records nearest to `vector`, pre-filtered, with the engine's index settings.
    pub fn new(vector: Vec<f32>, k: usize) -> VectorQuery {
        VectorQuery {
            vector,
            k,
            filter: None,
            postfilter: false,
            exact: false,
            nprobes: None,
            ef: None,
            refine_factor: None,
        }
    }

    /// Adds a filter.
    pub fn with_filter(mut self, filter: Filter) -> Self {
        self.filter = Some(filter);
        self
    }
}

/// Largest `k` a query may ask for.
pub const MAX_K: usize = 10_000;

/// One search result.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SearchHit {
    /// The record's id.
    pub id: String,
    /// Higher is better: `−distance` for vector search, BM25 for text, the fused score for
    /// hybrid search.
    pub score: f32,
    /// The vector distance, when the hit came from a vector search.
    pub distance: Option<f32>,
    /// The record's text.
    pub text: Option<String>,
    /// Its metadata.
    pub metadata: BTreeMap<String, FieldValue>,
    /// Its event time (µs).
    pub event_time_us: Option<i64>,
    /// Its ingestion time (µs).
    pub ingestion_time_us: Option<i64>,
}

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

/// A vector engine: collections of records with k-NN search and metadata filters.
///
/// Every method fails with `NotFound` for a collection that does not exist, and with
/// `InvalidInput` for vectors, records or filters that do not fit the collection.
#[async_trait]
pub trait VectorStore: Send + Sync + fmt::Debug {
    /// Creates a collection.
    ///
    /// # Errors
    /// `Conflict` if it exists with a different spec (an identical spec is not an error);
    /// `InvalidInput` for an invalid spec.
    async fn create_collection(&self, spec: &CollectionSpec) -> Result<CollectionInfo>;

    /// Names of every collection, sorted.
    async fn list_collections(&self) -> Result<Vec<String>>;

    /// The collection's spec, row count and indexes.
    async fn describe_collection(&self, name: &str) -> Result<CollectionInfo>;

    /// Deletes a collection and its records.
    async fn drop_collection(&self, name: &str) -> Result<()>;

    /// Records matching `filter` (all when `None`), expired ones included.
    async fn count(&self, collection: &str, filter: Option<&Filter>) -> Result<u64>;

    /// Appends records (ids are not checked for uniqueness; use `upsert` for that).
    async fn add(&self, collection: &str, records: Vec<VectorRecord>) -> Result<()>;

    /// Inserts records, replacing any with the same id.
    async fn upsert(&self, collection: &str, records: Vec<VectorRecord>) -> Result<()>;

    /// Deletes records by id; returns how many were deleted.
    async fn delete_ids(&self, collection: &str, ids: &[String]) -> Result<u64>;

    /// Deletes records matching `filter`; returns how many were deleted.
    async fn delete_where(&self, collection: &str, filter: &Filter) -> Result<u64>;

    /// The records with these ids (in no particular order; missing ids are left out).
    async fn get(&self, collection: &str, ids: &[String]) -> Result<Vec<VectorRecord>>;

    /// The `k` nearest unexpired records to the query vector that match its filter,
    /// closest first.
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
