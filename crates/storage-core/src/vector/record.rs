//! Records and their metadata values.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{CollectionSpec, FieldType, MAX_ID_LEN, check_vector};
use crate::{Error, Result};

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
