//! Which format a file is in, from its first bytes, and its record batches.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use arrow_array::RecordBatch;
use arrow_schema::ArrowError;
use hybridstore_core::{Error, Result};
use serde::Serialize;

use super::npy::NpyBatches;

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

/// A file's record batches.
pub(super) type Batches = Box<dyn Iterator<Item = std::result::Result<RecordBatch, ArrowError>>>;

/// Reads `path` as record batches of at most about `batch_rows` rows into `tx`, after
/// sending the file's row count (if its format records one) into `total`.
pub(super) fn read_batches(
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

pub(super) fn io_error(path: &Path, e: std::io::Error) -> Error {
    Error::from(e).with_context("path", path.display())
}

pub(super) fn arrow_error(path: &Path, e: ArrowError) -> Error {
    match e {
        ArrowError::IoError(_, io) => io_error(path, io),
        other => Error::invalid_input(format!("{}: {other}", path.display())),
    }
}
