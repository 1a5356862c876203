//! A collection's Arrow schema, and records to and from Arrow record batches.
//!
//! Columns: `id` (Utf8), `vector` (FixedSizeList<Float32>[dimension]), `text` (Utf8),
//! `tenant` (Utf8), `event_time`, `ingestion_time`, `expires_at` (Int64 microseconds since
//! the Unix epoch), then one column per declared field (Utf8, Int64, Float64, Int64 µs,
//! List<Utf8>). The `CollectionSpec` itself is kept as JSON in the schema's metadata under
//! [`SPEC_METADATA_KEY`], so a collection describes itself.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::builder::{ListBuilder, StringBuilder};
use arrow_array::types::Float32Type;
use arrow_array::{
    Array, ArrayRef, FixedSizeListArray, Float32Array, Float64Array, Int64Array, ListArray,
    RecordBatch, StringArray,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use hybridstore_core::vector::{CollectionSpec, FieldType, FieldValue, SearchHit, VectorRecord};
use hybridstore_core::{Error, Result};

/// Schema metadata key holding the collection's spec as JSON.
pub const SPEC_METADATA_KEY: &str = "hybridstore.collection";

fn field_data_type(t: FieldType) -> DataType {
    match t {
        FieldType::String => DataType::Utf8,
        FieldType::Integer | FieldType::Timestamp => DataType::Int64,
        FieldType::Float => DataType::Float64,
        FieldType::StringList => DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
    }
}

fn vector_type(dimension: usize) -> DataType {
    DataType::FixedSizeList(
        Arc::new(Field::new("item", DataType::Float32, true)),
        i32::try_from(dimension).unwrap_or(i32::MAX),
    )
}

/// The Arrow schema of a collection, with its spec in the metadata.
pub(crate) fn arrow_schema(spec: &CollectionSpec) -> Result<SchemaRef> {
    let mut fields = vec![Field::new("id", DataType::Utf8, false)];
    if spec.has_vectors() {
        fields.push(Field::new("vector", vector_type(spec.dimension), false));
    }
    fields.extend([
        Field::new("text", DataType::Utf8, true),
        Field::new("tenant", DataType::Utf8, true),
        Field::new("event_time", DataType::Int64, true),
        Field::new("ingestion_time", DataType::Int64, false),
        Field::new("expires_at", DataType::Int64, true),
    ]);
    for f in &spec.fields {
        fields.push(Field::new(&f.name, field_data_type(f.field_type), true));
    }
    let json = serde_json::to_string(spec)
        .map_err(|e| Error::backend(format!("cannot encode the collection spec: {e}")))?;
    let metadata = [(SPEC_METADATA_KEY.to_string(), json)]
        .into_iter()
        .collect();
    Ok(Arc::new(Schema::new_with_metadata(fields, metadata)))
}

/// The spec kept in a table's schema.
///
/// # Errors
/// `InvalidInput` if the table was not created by hybridstore.
pub(crate) fn spec_of(schema: &Schema, table: &str) -> Result<CollectionSpec> {
    let json = schema.metadata().get(SPEC_METADATA_KEY).ok_or_else(|| {
        Error::invalid_input(format!(
            "table {table:?} is not a hybridstore collection (no {SPEC_METADATA_KEY} metadata)"
        ))
    })?;
    serde_json::from_str(json)
        .map_err(|e| Error::corrupted(format!("collection {table:?} has a damaged spec: {e}")))
}

/// `records` as one record batch of the collection's schema; every record gets `tenant`
/// and `ingestion_time_us`. Records must have been validated.
pub(crate) fn to_batch(
    spec: &CollectionSpec,
    schema: &SchemaRef,
    records: &[VectorRecord],
    tenant: Option<&str>,
    ingestion_time_us: i64,
) -> Result<RecordBatch> {
    let dim = i32::try_from(spec.dimension).unwrap_or(i32::MAX);
    let ids = StringArray::from_iter_values(records.iter().map(|r| r.id.as_str()));
    let texts: StringArray = records.iter().map(|r| r.text.as_deref()).collect();
    let tenants: StringArray = records.iter().map(|_| tenant).collect();
    let event: Int64Array = records.iter().map(|r| r.event_time_us).collect();
    let ingested = Int64Array::from_iter_values(records.iter().map(|_| ingestion_time_us));
    let expires: Int64Array = records.iter().map(|r| r.expires_at_us).collect();
    let mut columns: Vec<ArrayRef> = vec![Arc::new(ids)];
    if spec.has_vectors() {
        columns.push(Arc::new(FixedSizeListArray::from_iter_primitive::<
            Float32Type,
            _,
            _,
        >(
            records
                .iter()
                .map(|r| Some(r.vector.iter().copied().map(Some))),
            dim,
        )));
    }
    columns.extend([
        Arc::new(texts) as ArrayRef,
        Arc::new(tenants),
        Arc::new(event),
        Arc::new(ingested),
        Arc::new(expires),
    ]);
    for f in &spec.fields {
        let values = records.iter().map(|r| r.metadata.get(&f.name));
        let column: ArrayRef = match f.field_type {
            FieldType::String => Arc::new(
                values
                    .map(|v| match v {
                        Some(FieldValue::String(s)) => Some(s.as_str()),
                        _ => None,
                    })
                    .collect::<StringArray>(),
            ),
            FieldType::Integer | FieldType::Timestamp => Arc::new(
                values
                    .map(|v| match v {
                        Some(FieldValue::Integer(n) | FieldValue::Timestamp(n)) => Some(*n),
                        _ => None,
                    })
                    .collect::<Int64Array>(),
            ),
            FieldType::Float => Arc::new(
                values
                    .map(|v| match v {
                        Some(FieldValue::Float(x)) => Some(*x),
                        _ => None,
                    })
                    .collect::<Float64Array>(),
            ),
            FieldType::StringList => {
                let mut builder = ListBuilder::new(StringBuilder::new());
                for v in values {
                    match v {
                        Some(FieldValue::StringList(items)) => {
                            for item in items {
                                builder.values().append_value(item);
                            }
                            builder.append(true);
                        }
                        _ => builder.append(false),
                    }
                }
                Arc::new(builder.finish())
            }
        };
        columns.push(column);
    }
    RecordBatch::try_new(schema.clone(), columns)
        .map_err(|e| Error::backend(format!("cannot build the record batch: {e}")))
}

/// Typed access to a result batch's columns by name.
pub(crate) struct Columns<'a> {
    batch: &'a RecordBatch,
}

impl<'a> Columns<'a> {
    pub(crate) fn new(batch: &'a RecordBatch) -> Columns<'a> {
        Columns { batch }
    }

    fn column<T: 'static>(&self, name: &str) -> Option<&'a T> {
        self.batch
            .column_by_name(name)
            .and_then(|c| c.as_any().downcast_ref::<T>())
    }

    pub(crate) fn string(&self, name: &str, row: usize) -> Option<String> {
        let c = self.column::<StringArray>(name)?;
        (!c.is_null(row)).then(|| c.value(row).to_string())
    }

    pub(crate) fn int(&self, name: &str, row: usize) -> Option<i64> {
        let c = self.column::<Int64Array>(name)?;
        (!c.is_null(row)).then(|| c.value(row))
    }

    pub(crate) fn float32(&self, name: &str, row: usize) -> Option<f32> {
        let c = self.column::<Float32Array>(name)?;
        (!c.is_null(row)).then(|| c.value(row))
    }

    fn float64(&self, name: &str, row: usize) -> Option<f64> {
        let c = self.column::<Float64Array>(name)?;
        (!c.is_null(row)).then(|| c.value(row))
    }

    fn string_list(&self, name: &str, row: usize) -> Option<Vec<String>> {
        let c = self.column::<ListArray>(name)?;
        if c.is_null(row) {
            return None;
        }
        let items = c.value(row);
        let items = items.as_any().downcast_ref::<StringArray>()?;
        Some(
            items
                .iter()
                .map(|s| s.unwrap_or_default().to_string())
                .collect(),
        )
    }

    fn vector(&self, row: usize) -> Option<Vec<f32>> {
        let c = self.column::<FixedSizeListArray>("vector")?;
        let values = c.value(row);
        let values = values.as_any().downcast_ref::<Float32Array>()?;
        Some(values.values().to_vec())
    }

    pub(crate) fn metadata(
        &self,
        spec: &CollectionSpec,
        row: usize,
    ) -> BTreeMap<String, FieldValue> {
        let mut out = BTreeMap::new();
        for f in &spec.fields {
            let value = match f.field_type {
                FieldType::String => self.string(&f.name, row).map(FieldValue::String),
                FieldType::Integer => self.int(&f.name, row).map(FieldValue::Integer),
                FieldType::Timestamp => self.int(&f.name, row).map(FieldValue::Timestamp),
                FieldType::Float => self.float64(&f.name, row).map(FieldValue::Float),
                FieldType::StringList => self.string_list(&f.name, row).map(FieldValue::StringList),
            };
            if let Some(v) = value {
                out.insert(f.name.clone(), v);
            }
        }
        out
    }

    pub(crate) fn record(&self, spec: &CollectionSpec, row: usize) -> Option<VectorRecord> {
        Some(VectorRecord {
            id: self.string("id", row)?,
            vector: if spec.has_vectors() {
                self.vector(row)?
            } else {
                Vec::new()
            },
            text: self.string("text", row),
            metadata: self.metadata(spec, row),
            event_time_us: self.int("event_time", row),
            ingestion_time_us: self.int("ingestion_time", row),
            expires_at_us: self.int("expires_at", row),
        })
    }

    /// A hit; `score_column` is `_distance` (score = −distance), `_score` (BM25) or
    /// `_relevance_score` (fused).
    pub(crate) fn hit(
        &self,
        spec: &CollectionSpec,
        row: usize,
        score_column: &str,
    ) -> Option<SearchHit> {
        let distance = self.float32("_distance", row);
        let score = match score_column {
            "_distance" => -distance?,
            other => self.float32(other, row)?,
        };
        Some(SearchHit {
            id: self.string("id", row)?,
            score,
            distance,
            text: self.string("text", row),
            metadata: self.metadata(spec, row),
            event_time_us: self.int("event_time", row),
            ingestion_time_us: self.int("ingestion_time", row),
        })
    }
}
