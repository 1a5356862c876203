//! Bulk import of caller-made vectors from files: Parquet, Arrow IPC (file or stream) and
//! NumPy `.npy`, into any [`VectorStore`].
//!
//! The format is recognised by the file's magic bytes, not its name: `PAR1` (Parquet),
//! `ARROW1` (Arrow IPC file, Feather v2), the `0xFFFFFFFF` continuation marker (Arrow IPC
//! stream) and `\x93NUMPY` (NumPy, format versions 1 to 3).
//!
//! Columns of a Parquet or Arrow file map to a record by name:
//! - the id column ([`ImportOptions::ids`], `id` by default): any string or integer type;
//!   or ids `<prefix><row number>` counted from 0;
//! - the vector column (`vector`): a fixed-size list or list of `float16`/`float32`/`float64`,
//!   every row the same length, which is the collection's dimension;
//! - `text` (if present): any string type;
//! - `event_time`, `expires_at` (if present): a timestamp of any unit, or `int64`
//!   microseconds since the Unix epoch;
//! - every other column is a metadata field: string types become `string`, integers
//!   `integer`, floats `float`, timestamps and dates `timestamp`, lists of strings
//!   `string_list`. [`ImportOptions::skip_columns`] leaves columns out.
//!
//! A `.npy` file holds one C-ordered 2-D array of `float32` or `float64`, `rows × dimension`;
//! its records get row-number ids.
//!
//! A missing collection is created from the file (its dimension, [`ImportOptions::distance`],
//! the metadata columns as fields); an existing one must declare every metadata column with
//! the same type. Records are written in write batches of [`ImportOptions::batch_rows`];
//! reading the next batch (on a blocking thread) overlaps writing the last. An error stops the
//! import: batches written before it stay written, and [`ImportError::rows_written`] says
//! how many rows that was, so an import with `upsert` can be re-run to finish it.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{
    Array, ArrayRef, FixedSizeListArray, Float32Array, GenericListArray, OffsetSizeTrait,
    RecordBatch,
};
use arrow_cast::{CastOptions, cast_with_options};
use arrow_schema::{ArrowError, DataType, Field, Schema, TimeUnit};
use hybridstore_core::vector::{
    CollectionSpec, Distance, FieldType, FieldValue, MAX_DIMENSION, VectorRecord, VectorStore,
};
use hybridstore_core::{Error, ErrorKind, Result};
use serde::Serialize;

/// Rows per write batch by default: large enough that LanceDB writes few fragments, small
/// enough that a batch of 1,536-dimension vectors stays under 64 MiB.
pub const DEFAULT_IMPORT_BATCH_ROWS: usize = 8_192;

/// A file format [`import_file`] reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ImportFormat {
    /// Apache Parquet (any of Snappy, Zstd, LZ4 or no compression).
    Parquet,
    /// Arrow IPC file format (`.arrow`, Feather v2).
    ArrowFile,
    /// Arrow IPC streaming format (`.arrows`).
    ArrowStream,
    /// NumPy `.npy` (`numpy.save`).
    Npy,
}

impl ImportFormat {
    /// The format of the file at `path`, from its first bytes.
    ///
    /// # Errors
    /// `NotFound` if the file does not exist; `InvalidInput` if it is none of the formats.
    pub fn detect(path: &Path) -> Result<ImportFormat> {
        let mut file = File::open(path).map_err(|e| io_error(path, e))?;
        let mut magic = [0u8; 8];
        let mut filled = 0;
        while filled < magic.len() {
            match file.read(&mut magic[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_error(path, e)),
            }
        }
        let magic = &magic[..filled];
        if magic.starts_with(b"PAR1") {
            Ok(ImportFormat::Parquet)
        } else if magic.starts_with(b"ARROW1") {
            Ok(ImportFormat::ArrowFile)
        } else if magic.starts_with(&[0xFF, 0xFF, 0xFF, 0xFF]) {
            Ok(ImportFormat::ArrowStream)
        } else if magic.starts_with(b"\x93NUMPY") {
            Ok(ImportFormat::Npy)
        } else {
            Err(Error::invalid_input(format!(
                "{} is not a Parquet, Arrow IPC or NumPy .npy file (unknown magic bytes {magic:02x?})",
                path.display()
            )))
        }
    }
}

/// Where record ids come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdSource {
    /// This column (any string or integer type; no nulls).
    Column(String),
    /// `<prefix><row number>`, counting the file's rows from 0.
    RowNumber {
        /// Put before each row number, e.g. `img-`.
        prefix: String,
    },
}

/// How [`import_file`] maps and writes a file.
#[derive(Clone, Debug)]
pub struct ImportOptions {
    /// Record ids (default: the column `id`). Ignored for `.npy` files, which always use row
    /// numbers (with the prefix given here, if any).
    pub ids: IdSource,
    /// The vector column (default `vector`).
    pub vector_column: String,
    /// The text column, used when the file has it (default `text`).
    pub text_column: String,
    /// Columns to leave out.
    pub skip_columns: Vec<String>,
    /// The distance of a collection created by the import (default cosine).
    pub distance: Distance,
    /// Replace records with the same id (merge-insert) instead of appending.
    pub upsert: bool,
    /// Rows per write batch, 1 to 1,000,000 (default [`DEFAULT_IMPORT_BATCH_ROWS`]).
    pub batch_rows: usize,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            ids: IdSource::Column("id".into()),
            vector_column: "vector".into(),
            text_column: "text".into(),
            skip_columns: Vec::new(),
            distance: Distance::Cosine,
            upsert: false,
            batch_rows: DEFAULT_IMPORT_BATCH_ROWS,
        }
    }
}

/// Progress of an import: rows written so far, and the file's rows when its format says
/// (Parquet and NumPy do; Arrow IPC does not).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImportProgress {
    /// Rows written.
    pub rows_done: u64,
    /// Rows in the file, if known.
    pub rows_total: Option<u64>,
}

/// What an import did.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ImportReport {
    /// The collection written to.
    pub collection: String,
    /// The file's format.
    pub format: ImportFormat,
    /// Whether the import created the collection.
    pub created: bool,
    /// The vectors' dimension.
    pub dimension: usize,
    /// Metadata fields imported.
    pub fields: Vec<String>,
    /// Rows written.
    pub rows: u64,
    /// Write batches.
    pub batches: u64,
    /// Wall time, milliseconds.
    pub elapsed_ms: u64,
}

/// An import that stopped: the error, and the rows written before it.
#[derive(Debug)]
pub struct ImportError {
    /// Why it stopped.
    pub error: Error,
    /// Rows written (and kept) before it stopped.
    pub rows_written: u64,
}

impl std::fmt::Display for ImportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({} rows were written before the import stopped)",
            self.error, self.rows_written
        )
    }
}

impl std::error::Error for ImportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

impl From<ImportError> for Error {
    fn from(e: ImportError) -> Error {
        let rows = e.rows_written;
        e.error.with_context("rows_written", rows)
    }
}

/// Imports the records of the file at `path` into `collection` of `store`, creating the
/// collection if it does not exist. `progress` is called after every write batch.
///
/// # Errors
/// In [`ImportError::error`]: `NotFound` if the file does not exist; `InvalidInput` for an
/// unknown format, a missing or null id or vector column, vectors of differing lengths or
/// with NaN or infinite values, a column no field type can hold, a metadata column the
/// existing collection does not declare (or declares with another type), or batch_rows out
/// of range; `Conflict` when the collection exists with another dimension; and the store's
/// errors from writing.
pub async fn import_file(
    store: &dyn VectorStore,
    collection: &str,
    path: &Path,
    options: &ImportOptions,
    progress: &(dyn Fn(ImportProgress) + Send + Sync),
) -> std::result::Result<ImportReport, ImportError> {
    let mut rows_written = 0;
    let stopped = |error: Error, rows_written: u64| ImportError {
        error: error.with_context("file", path.display()),
        rows_written,
    };
    if !(1..=1_000_000).contains(&options.batch_rows) {
        return Err(stopped(
            Error::invalid_input(format!(
                "batch_rows must be 1 to 1,000,000, got {}",
                options.batch_rows
            )),
            0,
        ));
    }
    let started = Instant::now();
    let format = ImportFormat::detect(path).map_err(|e| stopped(e, 0))?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<RecordBatch>>(2);
    let (total_tx, total_rx) = tokio::sync::oneshot::channel();
    let reader_path = path.to_path_buf();
    let batch_rows = options.batch_rows;
    let reader = tokio::task::spawn_blocking(move || {
        read_batches(&reader_path, format, batch_rows, total_tx, &tx)
    });
    let rows_total = total_rx.await.ok().flatten();

    let mut mapping: Option<Mapping> = None;
    let mut created = false;
    let mut batches = 0;
    let mut next_row: u64 = 0;
    let result: Result<()> = async {
        while let Some(batch) = rx.recv().await {
            let batch = batch?;
            if batch.num_rows() == 0 {
                continue;
            }
            let m = match &mapping {
                Some(m) => m,
                None => mapping.insert(Mapping::new(&batch, format, options)?),
            };
            let mut offset = 0;
            while offset < batch.num_rows() {
                let len = options.batch_rows.min(batch.num_rows() - offset);
                let records = m.records(&batch.slice(offset, len), next_row)?;
                if batches == 0 {
                    // Only once the first write batch converted: a file that cannot be read
                    // leaves no empty collection behind.
                    created = ensure_collection(store, collection, m, options.distance).await?;
                }
                let written = records.len() as u64;
                if options.upsert {
                    store.upsert(collection, records).await?;
                } else {
                    store.add(collection, records).await?;
                }
                offset += len;
                next_row += written;
                rows_written += written;
                batches += 1;
                progress(ImportProgress {
                    rows_done: rows_written,
                    rows_total,
                });
            }
        }
        Ok(())
    }
    .await;
    // Stop the reader (its sends fail once the receiver is gone) and surface its panics.
    drop(rx);
    let joined = reader.await;
    result.map_err(|e| stopped(e, rows_written))?;
    if let Err(e) = joined {
        return Err(stopped(
            Error::backend(format!("the file reader failed: {e}")),
            rows_written,
        ));
    }
    let Some(mapping) = mapping else {
        return Err(stopped(
            Error::invalid_input(format!("{} holds no rows", path.display())),
            0,
        ));
    };
    Ok(ImportReport {
        collection: collection.to_string(),
        format,
        created,
        dimension: mapping.dimension,
        fields: mapping.fields.iter().map(|f| f.spec_name.clone()).collect(),
        rows: rows_written,
        batches,
        elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    })
}

/// Creates the collection from the mapping, or checks that the existing one fits it.
/// Returns whether it was created.
async fn ensure_collection(
    store: &dyn VectorStore,
    collection: &str,
    mapping: &Mapping,
    distance: Distance,
) -> Result<bool> {
    match store.describe_collection(collection).await {
        Ok(info) => {
            let spec = info.spec;
            if spec.dimension != mapping.dimension {
                return Err(Error::conflict(format!(
                    "collection {collection:?} holds {}-dimension vectors; the file's have {}",
                    spec.dimension, mapping.dimension
                )));
            }
            for f in &mapping.fields {
                match spec.fields.iter().find(|d| d.name == f.spec_name) {
                    Some(d) if d.field_type == f.field_type => {}
                    Some(d) => {
                        return Err(Error::invalid_input(format!(
                            "column {:?} holds {:?} values; collection {collection:?} declares the field as {:?}",
                            f.column, f.field_type, d.field_type
                        )));
                    }
                    None => {
                        return Err(Error::invalid_input(format!(
                            "column {:?} is not a field of collection {collection:?} (fields: {}); skip it, or import into a new collection",
                            f.column,
                            spec.fields
                                .iter()
                                .map(|d| d.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )));
                    }
                }
            }
            Ok(false)
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {
            let mut spec = CollectionSpec::new(collection, mapping.dimension, distance);
            for f in &mapping.fields {
                spec = spec.with_field(f.spec_name.clone(), f.field_type);
            }
            store.create_collection(&spec).await?;
            Ok(true)
        }
        Err(e) => Err(e),
    }
}

/// A file's record batches.
type Batches = Box<dyn Iterator<Item = std::result::Result<RecordBatch, ArrowError>>>;

/// Reads `path` as record batches of at most about `batch_rows` rows into `tx`, after
/// sending the file's row count (if its format records one) into `total`.
fn read_batches(
    path: &Path,
    format: ImportFormat,
    batch_rows: usize,
    total: tokio::sync::oneshot::Sender<Option<u64>>,
    tx: &tokio::sync::mpsc::Sender<Result<RecordBatch>>,
) {
    match open_batches(path, format, batch_rows) {
        Ok((batches, rows)) => {
            let _ = total.send(rows);
            for batch in batches {
                let batch = batch.map_err(|e| arrow_error(path, e));
                let failed = batch.is_err();
                if tx.blocking_send(batch).is_err() || failed {
                    return;
                }
            }
        }
        Err(e) => {
            let _ = total.send(None);
            let _ = tx.blocking_send(Err(e));
        }
    }
}

/// The reader of `path` in its format, and the file's row count if the format records one.
fn open_batches(
    path: &Path,
    format: ImportFormat,
    batch_rows: usize,
) -> Result<(Batches, Option<u64>)> {
    let file = File::open(path).map_err(|e| io_error(path, e))?;
    Ok(match format {
        ImportFormat::Parquet => {
            use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
            let not_parquet = |e| {
                Error::invalid_input(format!(
                    "{} is not a readable Parquet file: {e}",
                    path.display()
                ))
            };
            let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(not_parquet)?;
            let rows = u64::try_from(builder.metadata().file_metadata().num_rows()).ok();
            let reader = builder
                .with_batch_size(batch_rows)
                .build()
                .map_err(not_parquet)?;
            (Box::new(reader), rows)
        }
        ImportFormat::ArrowFile => {
            let reader = arrow_ipc::reader::FileReader::try_new(BufReader::new(file), None)
                .map_err(|e| arrow_error(path, e))?;
            (Box::new(reader), None)
        }
        ImportFormat::ArrowStream => {
            let reader = arrow_ipc::reader::StreamReader::try_new(BufReader::new(file), None)
                .map_err(|e| arrow_error(path, e))?;
            (Box::new(reader), None)
        }
        ImportFormat::Npy => {
            let reader = NpyBatches::open(path, file, batch_rows)?;
            let rows = reader.rows;
            (Box::new(reader), Some(rows))
        }
    })
}

/// A 2-D `float32`/`float64` `.npy` array as record batches of one `vector` column.
struct NpyBatches {
    elements: NpyElements,
    rows: u64,
    dimension: usize,
    next_row: u64,
    batch_rows: usize,
    schema: Arc<Schema>,
}

enum NpyElements {
    F32(npyz::NpyReader<f32, BufReader<File>>),
    F64(npyz::NpyReader<f64, BufReader<File>>),
}

impl NpyBatches {
    fn open(path: &Path, file: File, batch_rows: usize) -> Result<NpyBatches> {
        let bad = |why: String| Error::invalid_input(format!("{}: {why}", path.display()));
        let npy = npyz::NpyFile::new(BufReader::new(file))
            .map_err(|e| bad(format!("not a readable .npy file: {e}")))?;
        let shape = npy.shape().to_vec();
        let [rows, dimension] = shape[..] else {
            return Err(bad(format!(
                "a .npy of vectors is a 2-D array (rows × dimension); this one has shape {shape:?}"
            )));
        };
        if npy.order() == npyz::Order::Fortran {
            return Err(bad(
                "the array is in Fortran (column-major) order; save it with \
                 numpy.save(f, numpy.ascontiguousarray(a))"
                    .into(),
            ));
        }
        let dimension = usize::try_from(dimension)
            .ok()
            .filter(|d| (1..=MAX_DIMENSION).contains(d))
            .ok_or_else(|| {
                bad(format!(
                    "vectors of dimension {dimension}: a collection holds 1 to {MAX_DIMENSION}"
                ))
            })?;
        let dtype = npy.dtype().descr();
        let elements = match npy.try_data::<f32>() {
            Ok(r) => NpyElements::F32(r),
            Err(npy) => match npy.try_data::<f64>() {
                Ok(r) => NpyElements::F64(r),
                Err(_) => {
                    return Err(bad(format!(
                        "the array's dtype is {dtype}; vectors are float32 ('<f4') or float64 ('<f8')"
                    )));
                }
            },
        };
        let schema = Arc::new(Schema::new(vec![Field::new(
            "vector",
            DataType::FixedSizeList(
                Arc::new(Field::new("item", DataType::Float32, false)),
                dimension as i32,
            ),
            false,
        )]));
        Ok(NpyBatches {
            elements,
            rows,
            dimension,
            next_row: 0,
            batch_rows,
            schema,
        })
    }
}

impl Iterator for NpyBatches {
    type Item = std::result::Result<RecordBatch, ArrowError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next_row >= self.rows {
            return None;
        }
        let rows = (self.rows - self.next_row).min(self.batch_rows as u64) as usize;
        let n = rows * self.dimension;
        let values: std::io::Result<Vec<f32>> = match &mut self.elements {
            NpyElements::F32(r) => r.by_ref().take(n).collect(),
            NpyElements::F64(r) => r.by_ref().take(n).map(|x| x.map(|x| x as f32)).collect(),
        };
        let values = match values {
            Ok(v) if v.len() == n => v,
            Err(e) if e.kind() != std::io::ErrorKind::UnexpectedEof => {
                return Some(Err(ArrowError::IoError(e.to_string(), e)));
            }
            _ => {
                return Some(Err(ArrowError::ParseError(format!(
                    "the .npy file ends early: its header promises {} rows of {} values",
                    self.rows, self.dimension
                ))));
            }
        };
        self.next_row += rows as u64;
        let item = Arc::new(Field::new("item", DataType::Float32, false));
        let vectors = FixedSizeListArray::try_new(
            item,
            self.dimension as i32,
            Arc::new(Float32Array::from(values)),
            None,
        );
        Some(vectors.and_then(|v| RecordBatch::try_new(self.schema.clone(), vec![Arc::new(v)])))
    }
}

/// A metadata column and the field it fills.
#[derive(Debug)]
struct MappedField {
    column: String,
    spec_name: String,
    field_type: FieldType,
}

/// How the columns of a file's batches become records.
#[derive(Debug)]
struct Mapping {
    ids: IdSource,
    vector_column: String,
    dimension: usize,
    text_column: Option<String>,
    event_time: bool,
    expires_at: bool,
    fields: Vec<MappedField>,
}

impl Mapping {
    fn new(batch: &RecordBatch, format: ImportFormat, options: &ImportOptions) -> Result<Mapping> {
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
    fn records(&self, batch: &RecordBatch, first_row: u64) -> Result<Vec<VectorRecord>> {
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

fn io_error(path: &Path, e: std::io::Error) -> Error {
    Error::from(e).with_context("path", path.display())
}

fn arrow_error(path: &Path, e: ArrowError) -> Error {
    match e {
        ArrowError::IoError(_, io) => io_error(path, io),
        other => Error::invalid_input(format!("{}: {other}", path.display())),
    }
}
