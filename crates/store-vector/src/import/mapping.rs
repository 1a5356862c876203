//! From a file's columns to records: which column is the id, the vector, the text, the
//! times and the metadata fields, and the casts that bring each to its type.

use super::format::ImportFormat;
use super::*;

/// A metadata column and the field it fills.
#[derive(Debug)]
pub(super) struct MappedField {
    pub(super) column: String,
    pub(super) spec_name: String,
    pub(super) field_type: FieldType,
}

/// How the columns of a file's batches become records.
#[derive(Debug)]
pub(super) struct Mapping {
    ids: IdSource,
    vector_column: String,
    pub(super) dimension: usize,
    text_column: Option<String>,
    event_time: bool,
    expires_at: bool,
    pub(super) fields: Vec<MappedField>,
}

impl Mapping {
    pub(super) fn new(
        batch: &RecordBatch,
        format: ImportFormat,
        options: &ImportOptions,
    ) -> Result<Mapping> {
        let schema = batch.schema();
        let ids = match (&options.ids, format) {
            (IdSource::RowNumber { prefix }, _) => IdSource::RowNumber {
                prefix: prefix.clone(),
            },
            (IdSource::Column(_), ImportFormat::Npy) => IdSource::RowNumber {
                prefix: String::new(),
            },
            (IdSource::Column(c), _) => {
                let field = schema.field_with_name(c).map_err(|_| {
                    Error::invalid_input(format!(
                        "the file has no id column {c:?} (columns: {}); name it, or number the rows",
                        column_names(&schema)
                    ))
                })?;
                if !(field.data_type().is_integer() || is_string(field.data_type())) {
                    return Err(Error::invalid_input(format!(
                        "id column {c:?} is {}; ids are strings or integers",
                        field.data_type()
                    )));
                }
                IdSource::Column(c.clone())
            }
        };
        let vector_column = if format == ImportFormat::Npy {
            "vector".to_string()
        } else {
            options.vector_column.clone()
        };
        let vector_field = schema.field_with_name(&vector_column).map_err(|_| {
            Error::invalid_input(format!(
                "the file has no vector column {vector_column:?} (columns: {})",
                column_names(&schema)
            ))
        })?;
        let dimension = vector_dimension(batch, &vector_column, vector_field.data_type())?;
        let skipped = |name: &str| {
            options.skip_columns.iter().any(|s| s == name)
                || name == vector_column
                || matches!(&ids, IdSource::Column(c) if c == name)
        };
        let has = |name: &str| !skipped(name) && schema.field_with_name(name).is_ok();
        let text_column = has(&options.text_column).then(|| options.text_column.clone());
        let event_time = has("event_time");
        let expires_at = has("expires_at");
        let mut fields = Vec::new();
        for field in schema.fields() {
            let name = field.name();
            if skipped(name)
                || Some(name) == text_column.as_ref()
                || name == "event_time"
                || name == "expires_at"
            {
                continue;
            }
            if name == "tenant" || name == "ingestion_time" {
                return Err(Error::invalid_input(format!(
                    "column {name:?} is set by the store (the tenant scope, the write time); skip it"
                )));
            }
            let field_type = field_type_of(field.data_type()).ok_or_else(|| {
                Error::invalid_input(format!(
                    "column {name:?} is {}, which no field type holds (string, integer, float, \
                     timestamp, list of strings); skip it",
                    field.data_type()
                ))
            })?;
            fields.push(MappedField {
                column: name.clone(),
                spec_name: name.clone(),
                field_type,
            });
        }
        for (name, ok) in [("event_time", event_time), ("expires_at", expires_at)] {
            if ok {
                let t = schema.field_with_name(name).map(Field::data_type);
                if !matches!(
                    t,
                    Ok(DataType::Int64
                        | DataType::Timestamp(..)
                        | DataType::Date32
                        | DataType::Date64)
                ) {
                    return Err(Error::invalid_input(format!(
                        "column {name:?} must be a timestamp or int64 microseconds, got {}",
                        t.map_or("?".to_string(), |t| t.to_string())
                    )));
                }
            }
        }
        Ok(Mapping {
            ids,
            vector_column,
            dimension,
            text_column,
            event_time,
            expires_at,
            fields,
        })
    }

    /// The records of one batch whose first row is the file's row `first_row`.
    pub(super) fn records(&self, batch: &RecordBatch, first_row: u64) -> Result<Vec<VectorRecord>> {
        let n = batch.num_rows();
        let column = |name: &str| {
            batch.column_by_name(name).cloned().ok_or_else(|| {
                Error::invalid_input(format!("a later batch of the file has no column {name:?}"))
            })
        };
        let row_error = |row: usize, what: String| {
            Error::invalid_input(what).with_context("row", first_row + row as u64)
        };

        let ids: Vec<String> = match &self.ids {
            IdSource::RowNumber { prefix } => (0..n)
                .map(|i| format!("{prefix}{}", first_row + i as u64))
                .collect(),
            IdSource::Column(c) => {
                let ids = cast_column(&column(c)?, &DataType::Utf8, c)?;
                let ids = ids.as_string::<i32>();
                let mut out = Vec::with_capacity(n);
                for i in 0..n {
                    if ids.is_null(i) {
                        return Err(row_error(i, format!("id column {c:?} is null")));
                    }
                    out.push(ids.value(i).to_string());
                }
                out
            }
        };

        let item = Arc::new(Field::new("item", DataType::Float32, true));
        let vectors = cast_column(
            &column(&self.vector_column)?,
            &DataType::FixedSizeList(item, self.dimension as i32),
            &self.vector_column,
        )?;
        let vectors = vectors.as_fixed_size_list();

        let texts = match &self.text_column {
            Some(c) => Some(cast_column(&column(c)?, &DataType::Utf8, c)?),
            None => None,
        };
        let micros = |name: &str| -> Result<Option<ArrayRef>> {
            let array = column(name)?;
            let array = if array.data_type() == &DataType::Int64 {
                array
            } else {
                let t = cast_column(
                    &array,
                    &DataType::Timestamp(TimeUnit::Microsecond, None),
                    name,
                )?;
                cast_column(&t, &DataType::Int64, name)?
            };
            Ok(Some(array))
        };
        let event_times = if self.event_time {
            micros("event_time")?
        } else {
            None
        };
        let expiries = if self.expires_at {
            micros("expires_at")?
        } else {
            None
        };
        let metadata: Vec<(&MappedField, ArrayRef)> = self
            .fields
            .iter()
            .map(|f| {
                let canonical = match f.field_type {
                    FieldType::String => DataType::Utf8,
                    FieldType::Integer => DataType::Int64,
                    FieldType::Float => DataType::Float64,
                    FieldType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
                    FieldType::StringList => {
                        DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))
                    }
                };
                Ok((f, cast_column(&column(&f.column)?, &canonical, &f.column)?))
            })
            .collect::<Result<_>>()?;

        let mut records = Vec::with_capacity(n);
        for (i, id) in ids.into_iter().enumerate() {
            if vectors.is_null(i) {
                return Err(row_error(i, format!("vector of record {id:?} is null")));
            }
            let vector = vectors.value(i);
            let vector = vector.as_primitive::<Float32Type>();
            if vector.null_count() > 0 {
                return Err(row_error(
                    i,
                    format!("vector of record {id:?} has null components"),
                ));
            }
            let mut record = VectorRecord::new(id, vector.values().to_vec());
            if let Some(t) = &texts {
                let t = t.as_string::<i32>();
                if t.is_valid(i) {
                    record.text = Some(t.value(i).to_string());
                }
            }
            let at = |a: &Option<ArrayRef>| {
                a.as_ref().and_then(|a| {
                    let a = a.as_primitive::<Int64Type>();
                    a.is_valid(i).then(|| a.value(i))
                })
            };
            record.event_time_us = at(&event_times);
            record.expires_at_us = at(&expiries);
            let mut values = BTreeMap::new();
            for (f, a) in &metadata {
                if a.is_null(i) {
                    continue;
                }
                let value = match f.field_type {
                    FieldType::String => FieldValue::String(a.as_string::<i32>().value(i).into()),
                    FieldType::Integer => {
                        FieldValue::Integer(a.as_primitive::<Int64Type>().value(i))
                    }
                    FieldType::Float => FieldValue::Float(
                        a.as_primitive::<arrow_array::types::Float64Type>().value(i),
                    ),
                    FieldType::Timestamp => {
                        FieldValue::Timestamp(a.as_primitive::<TimestampMicrosecondType>().value(i))
                    }
                    FieldType::StringList => {
                        let list = a.as_list::<i32>().value(i);
                        let list = list.as_string::<i32>();
                        FieldValue::StringList(list.iter().flatten().map(str::to_string).collect())
                    }
                };
                values.insert(f.spec_name.clone(), value);
            }
            record.metadata = values;
            records.push(record);
        }
        Ok(records)
    }
}

/// The vectors' dimension: the fixed size of a fixed-size list, or the length of the first
/// non-null row of a list.
fn vector_dimension(batch: &RecordBatch, column: &str, data_type: &DataType) -> Result<usize> {
    let is_float = |f: &Field| {
        matches!(
            f.data_type(),
            DataType::Float16 | DataType::Float32 | DataType::Float64
        )
    };
    let dimension = match data_type {
        DataType::FixedSizeList(item, size) if is_float(item) => usize::try_from(*size).ok(),
        DataType::List(item) if is_float(item) => {
            first_length(column_of(batch, column)?.as_list::<i32>())
        }
        DataType::LargeList(item) if is_float(item) => {
            first_length(column_of(batch, column)?.as_list::<i64>())
        }
        other => {
            return Err(Error::invalid_input(format!(
                "vector column {column:?} is {other}; vectors are lists of float16, float32 or float64"
            )));
        }
    };
    dimension
        .filter(|d| (1..=MAX_DIMENSION).contains(d))
        .ok_or_else(|| {
            Error::invalid_input(format!(
                "vector column {column:?}: the first vector's length is {dimension:?}; a collection holds 1 to {MAX_DIMENSION} dimensions"
            ))
        })
}

/// The length of the first non-null list.
fn first_length<O: OffsetSizeTrait>(lists: &GenericListArray<O>) -> Option<usize> {
    (0..lists.len())
        .find(|&i| lists.is_valid(i))
        .map(|i| lists.value_length(i).as_usize())
}

fn column_of<'a>(batch: &'a RecordBatch, column: &str) -> Result<&'a ArrayRef> {
    batch
        .column_by_name(column)
        .ok_or_else(|| Error::invalid_input(format!("no column {column:?}")))
}

/// Casts strictly: a value that does not fit (a list of another length, an out-of-range
/// number) is an error, never a silent null.
fn cast_column(array: &ArrayRef, to: &DataType, column: &str) -> Result<ArrayRef> {
    if array.data_type() == to {
        return Ok(array.clone());
    }
    let options = CastOptions {
        safe: false,
        ..CastOptions::default()
    };
    cast_with_options(array, to, &options).map_err(|e| {
        Error::invalid_input(format!(
            "column {column:?} ({}) cannot be read as {to}: {e}",
            array.data_type()
        ))
    })
}

fn field_type_of(data_type: &DataType) -> Option<FieldType> {
    match data_type {
        t if is_string(t) => Some(FieldType::String),
        t if t.is_integer() => Some(FieldType::Integer),
        DataType::Float16 | DataType::Float32 | DataType::Float64 => Some(FieldType::Float),
        DataType::Timestamp(..) | DataType::Date32 | DataType::Date64 => Some(FieldType::Timestamp),
        DataType::List(item) | DataType::LargeList(item) if is_string(item.data_type()) => {
            Some(FieldType::StringList)
        }
        _ => None,
    }
}

fn is_string(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

fn column_names(schema: &Schema) -> String {
    schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect::<Vec<_>>()
        .join(", ")
}
