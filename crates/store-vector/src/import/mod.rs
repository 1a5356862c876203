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
use std::io::BufReader;
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

mod format;
mod mapping;
mod npy;

pub use format::ImportFormat;
use format::read_batches;
use mapping::Mapping;

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
