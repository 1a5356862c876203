//! Ad-hoc read-only SQL and Parquet export.

use super::*;

/// Runs one statement on a read-only connection; DuckDB's refusals become `InvalidInput`.
pub(super) fn run_query(c: &Connection, query: &str) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let mut stmt = c.prepare(query).map_err(refused)?;
    let rows = stmt.query_arrow([]).map_err(refused)?;
    let schema = rows.get_schema();
    Ok((schema, rows.collect()))
}

pub(super) fn write_parquet(
    schema: SchemaRef,
    batches: impl IntoIterator<Item = RecordBatch>,
    path: &Path,
) -> Result<ExportReport> {
    let io = |what: &str, e: &dyn std::fmt::Display| {
        Error::backend(format!("cannot {what} {}: {e}", path.display()))
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| io("create a file next to", &e))?;
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let file: File = tmp.reopen().map_err(|e| io("open", &e))?;
    let mut writer =
        ArrowWriter::try_new(file, schema, Some(props)).map_err(|e| io("write", &e))?;
    let mut rows = 0u64;
    for batch in batches {
        writer.write(&batch).map_err(|e| io("write", &e))?;
        rows += batch.num_rows() as u64;
    }
    writer.close().map_err(|e| io("finish", &e))?;
    tmp.as_file().sync_all().map_err(|e| io("sync", &e))?;
    tmp.persist(path).map_err(|e| io("rename into", &e.error))?;
    let bytes = std::fs::metadata(path).map_err(|e| io("stat", &e))?.len();
    Ok(ExportReport {
        path: path.to_path_buf(),
        rows,
        bytes,
    })
}
