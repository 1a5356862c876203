//! What a collection is: its name, dimension, [`Distance`] and declared fields, and the
//! checks of names and vectors against them.

use serde::{Deserialize, Serialize};

use super::{MAX_DIMENSION, MAX_NAME_LEN, RESERVED_FIELDS};
use crate::{Error, Result};

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
