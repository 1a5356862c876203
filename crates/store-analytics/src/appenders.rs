//! Rows into DuckDB: access events as Arrow record batches through DuckDB's Arrow appender,
//! metric records through its row appender. The writer thread (`sink`) and the late-event
//! path of the rollups (`rollup`) both append through here.

use std::sync::Arc;

use arrow_array::builder::{StringBuilder, TimestampMicrosecondBuilder, UInt64Builder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use duckdb::{Connection, params};
use hybridstore_core::{Error, Result};

use crate::db::duck_error;
use crate::event::{AccessEvent, MetricRecord};

/// The Arrow schema of `access_events` as the appender receives it (column order matters).
fn access_schema() -> Arc<Schema> {
    // DuckDB's Arrow appender takes plain Utf8, not dictionary arrays; DuckDB dictionary-
    // compresses the columns itself when it checkpoints.
    let text = || DataType::Utf8;
    Arc::new(Schema::new(vec![
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            false,
        ),
        Field::new("operation", text(), false),
        Field::new("backend", text(), false),
        Field::new("tenant", text(), true),
        Field::new("key_hash", DataType::UInt64, false),
        Field::new("key", DataType::Utf8, true),
        Field::new("bytes", DataType::UInt64, false),
        Field::new("latency_us", DataType::UInt64, false),
        Field::new("cache_tier", text(), true),
        Field::new("outcome", text(), false),
    ]))
}

/// `events` as one Arrow record batch with the columns of the `access_events` table, in
/// order (`ts` microsecond timestamps, text columns as Utf8, counts as UInt64).
///
/// # Errors
/// `Backend` only if Arrow rejects the columns (which would be a bug).
pub fn access_events_batch(events: &[AccessEvent]) -> Result<RecordBatch> {
    let n = events.len();
    let mut ts = TimestampMicrosecondBuilder::with_capacity(n);
    let mut operation = StringBuilder::with_capacity(n, n * 8);
    let mut backend = StringBuilder::with_capacity(n, n * 8);
    let mut tenant = StringBuilder::with_capacity(n, n * 8);
    let mut key_hash = UInt64Builder::with_capacity(n);
    let mut key = StringBuilder::with_capacity(n, n * 32);
    let mut bytes = UInt64Builder::with_capacity(n);
    let mut latency = UInt64Builder::with_capacity(n);
    let mut tier = StringBuilder::with_capacity(n, n * 8);
    let mut outcome = StringBuilder::with_capacity(n, n * 8);
    for e in events {
        ts.append_value(e.timestamp_us);
        operation.append_value(e.operation.as_str());
        backend.append_value(&*e.backend);
        tenant.append_option(e.tenant.as_deref());
        key_hash.append_value(e.key_hash);
        key.append_option(e.key.as_deref());
        bytes.append_value(e.bytes);
        latency.append_value(e.latency_us);
        tier.append_option(e.cache_tier.map(|t| t.as_str()));
        outcome.append_value(e.outcome.as_str());
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(ts.finish()),
        Arc::new(operation.finish()),
        Arc::new(backend.finish()),
        Arc::new(tenant.finish()),
        Arc::new(key_hash.finish()),
        Arc::new(key.finish()),
        Arc::new(bytes.finish()),
        Arc::new(latency.finish()),
        Arc::new(tier.finish()),
        Arc::new(outcome.finish()),
    ];
    RecordBatch::try_new(access_schema(), columns)
        .map_err(|e| Error::backend(format!("cannot build the access-event batch: {e}")))
}

/// Appends `events` to `table` (`access_events`, or a table of the same columns).
pub(crate) fn append_access_events_to(
    conn: &Connection,
    table: &str,
    events: &[AccessEvent],
) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let mut appender = conn.appender(table).map_err(duck_error)?;
    // One row group's worth per Arrow batch keeps the builders' memory bounded.
    for chunk in events.chunks(122_880) {
        appender
            .append_record_batch(access_events_batch(chunk)?)
            .map_err(duck_error)?;
    }
    // Drop would flush too but swallow a constraint error: flush and check.
    appender.flush().map_err(duck_error)
}

pub(crate) fn append_metrics(conn: &Connection, metrics: &[MetricRecord]) -> Result<()> {
    if metrics.is_empty() {
        return Ok(());
    }
    let ts = |us: i64| duckdb::types::Value::Timestamp(duckdb::types::TimeUnit::Microsecond, us);
    for m in metrics {
        let (table, result) = match m {
            MetricRecord::Query {
                timestamp_us,
                query_type,
                latency_ms,
                result_count,
                retrieval_strategy,
                success,
            } => (
                "query_metrics",
                conn.appender("query_metrics").and_then(|mut a| {
                    a.append_row(params![
                        ts(*timestamp_us),
                        query_type,
                        latency_ms,
                        result_count,
                        retrieval_strategy,
                        success
                    ])?;
                    a.flush()
                }),
            ),
            MetricRecord::Embedding {
                timestamp_us,
                model_name,
                embedding_time_ms,
                text_length,
                dimension,
            } => (
                "embedding_metrics",
                conn.appender("embedding_metrics").and_then(|mut a| {
                    a.append_row(params![
                        ts(*timestamp_us),
                        model_name,
                        embedding_time_ms,
                        text_length,
                        dimension
                    ])?;
                    a.flush()
                }),
            ),
            MetricRecord::Reranking {
                timestamp_us,
                query_type,
                document_count,
                rerank_time_ms,
                quality_score,
            } => (
                "reranking_metrics",
                conn.appender("reranking_metrics").and_then(|mut a| {
                    a.append_row(params![
                        ts(*timestamp_us),
                        query_type,
                        document_count,
                        rerank_time_ms,
                        quality_score
                    ])?;
                    a.flush()
                }),
            ),
            MetricRecord::System {
                timestamp_us,
                metric_name,
                metric_value,
                metric_unit,
            } => (
                "system_metrics",
                conn.appender("system_metrics").and_then(|mut a| {
                    a.append_row(params![
                        ts(*timestamp_us),
                        metric_name,
                        metric_value,
                        metric_unit
                    ])?;
                    a.flush()
                }),
            ),
        };
        result.map_err(|e| duck_error(e).with_context("table", table))?;
    }
    Ok(())
}
