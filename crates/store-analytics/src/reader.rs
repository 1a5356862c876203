//! Reading the analytics database: typed reports, read-only ad-hoc SQL and Parquet export.
//!
//! Every call opens the file read-only for its duration (see the `db` module for why), so
//! each is a blocking call of a few milliseconds plus the query; call it from
//! `tokio::task::spawn_blocking` in async code.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use duckdb::types::{TimeUnit, Value};
use duckdb::{Connection, params};
use hybridstore_core::{Error, ErrorKind, Result};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde::Serialize;

use crate::db::{Access, DuckFile, duck_error};
use crate::schema::TABLES;

/// A half-open time range `[start, end)` in microseconds since the Unix epoch (UTC);
/// `None` leaves that side open.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TimeWindow {
    /// First microsecond included.
    pub start_us: Option<i64>,
    /// First microsecond excluded.
    pub end_us: Option<i64>,
}

/// 0001-01-01 and 9999-12-31, in microseconds: the open ends of a window, inside DuckDB's
/// TIMESTAMP range.
const MIN_TS_US: i64 = -62_135_596_800_000_000;
const MAX_TS_US: i64 = 253_402_300_799_999_999;

impl TimeWindow {
    /// Every event.
    pub fn all() -> TimeWindow {
        TimeWindow::default()
    }

    /// The last `span` before now.
    pub fn last(span: Duration) -> TimeWindow {
        let span = i64::try_from(span.as_micros()).unwrap_or(i64::MAX);
        TimeWindow {
            start_us: Some(crate::now_micros().saturating_sub(span)),
            end_us: None,
        }
    }

    fn bounds(&self) -> (Value, Value) {
        let ts = |us: i64| Value::Timestamp(TimeUnit::Microsecond, us);
        (
            ts(self.start_us.unwrap_or(MIN_TS_US).max(MIN_TS_US)),
            ts(self.end_us.unwrap_or(MAX_TS_US).min(MAX_TS_US)),
        )
    }
}

/// A key among the most read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HotKey {
    /// The tenant, if any.
    pub tenant: Option<String>,
    /// The key as recorded (cut to 256 bytes), if recorded.
    pub key: Option<String>,
    /// Its XXH3-64 hash.
    pub key_hash: u64,
    /// Reads (`get`, `get_range`, `get_many`) in the window.
    pub reads: u64,
    /// Bytes those reads returned.
    pub bytes: u64,
}

/// Latency percentiles of one operation on one backend, in microseconds.
///
/// Percentiles are DuckDB's `quantile_disc`, the nearest-rank method: always a latency that
/// was measured, the ⌈n · q⌉-th smallest of the n in the group (so p95 of 10 calls is the
/// slowest).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LatencyRow {
    /// The operation.
    pub operation: String,
    /// The backend or layer.
    pub backend: String,
    /// Calls in the window.
    pub calls: u64,
    /// Median latency.
    pub p50_us: u64,
    /// 95th percentile.
    pub p95_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// Slowest call.
    pub max_us: u64,
}

/// How reads through the cache were answered.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct CacheHitRates {
    /// Reads that went through a cache.
    pub lookups: u64,
    /// Answered by the in-process L1.
    pub l1_hits: u64,
    /// Answered by Redis (L2).
    pub l2_hits: u64,
    /// Answered by the store below the cache.
    pub misses: u64,
    /// `l1_hits / lookups`; `None` without lookups.
    pub l1_hit_rate: Option<f64>,
    /// `l2_hits / (lookups − l1_hits)`, the share of L1 misses Redis answered; `None` when no
    /// lookup reached L2.
    pub l2_hit_rate: Option<f64>,
    /// `(l1_hits + l2_hits) / lookups`; `None` without lookups.
    pub overall_hit_rate: Option<f64>,
}

/// What one tenant stores, as the recorded writes tell it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TenantUsage {
    /// The tenant (`None`: operations outside any tenant).
    pub tenant: Option<String>,
    /// Keys whose last recorded write is a put (after the tenant's last `clear`).
    pub objects: u64,
    /// The bytes of those last puts.
    pub bytes: u64,
}

/// Writes in one time bucket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GrowthRow {
    /// Start of the bucket, microseconds since the Unix epoch.
    pub bucket_start_us: i64,
    /// Puts (single and in batches).
    pub puts: u64,
    /// Bytes those puts wrote.
    pub bytes_written: u64,
    /// Deletes (single and in batches).
    pub deletes: u64,
}

/// Errors of one operation.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ErrorRateRow {
    /// The operation.
    pub operation: String,
    /// Calls in the window.
    pub calls: u64,
    /// Calls that failed (outcome neither `ok` nor `not_found`).
    pub errors: u64,
    /// `errors / calls`.
    pub error_rate: f64,
}

/// Every canned report over one window.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    /// The window reported on.
    pub window: TimeWindow,
    /// Access events in the window.
    pub events: u64,
    /// The most read keys.
    pub hot_keys: Vec<HotKey>,
    /// Latency percentiles per operation and backend.
    pub latency: Vec<LatencyRow>,
    /// Cache answers.
    pub cache: CacheHitRates,
    /// Space per tenant at the window's end.
    pub tenants: Vec<TenantUsage>,
    /// Writes per time bucket.
    pub growth: Vec<GrowthRow>,
    /// Errors per operation.
    pub errors: Vec<ErrorRateRow>,
}

/// What `export_parquet` exports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExportSource {
    /// One of the analytics tables ([`TABLES`]), whole.
    Table(String),
    /// The rows of a read-only query.
    Query(String),
}

/// What an export wrote.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ExportReport {
    /// The Parquet file.
    pub path: PathBuf,
    /// Rows written.
    pub rows: u64,
    /// Size of the file in bytes.
    pub bytes: u64,
}

/// Read access to an analytics database file; holds no lock between calls.
#[derive(Clone, Debug)]
pub struct AnalyticsReader {
    file: DuckFile,
}

const READS: &str = "('get', 'get_range', 'get_many')";
const PUTS: &str = "('put', 'batch_put')";
const DELETES: &str = "('delete', 'batch_delete')";

fn u64_of(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

impl AnalyticsReader {
    pub(crate) fn new(file: DuckFile) -> AnalyticsReader {
        AnalyticsReader { file }
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// Holds this process's lock on the file until the guard drops: the writer thread waits
    /// (and its channel fills) as it would behind another process's reader. Tests only.
    #[cfg(feature = "testing")]
    pub fn hold_file(&self) -> std::sync::MutexGuard<'_, ()> {
        self.file.hold()
    }

    fn read<T>(&self, work: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        self.file.with_connection(Access::ReadOnly, |c| work(c))
    }

    /// The `limit` most read keys in `window` (ties by hash), with their read counts and bytes.
    ///
    /// # Errors
    /// `Unavailable` if another process holds the file longer than the lock timeout; DuckDB
    /// errors as `Backend`.
    pub fn hot_keys(&self, window: TimeWindow, limit: usize) -> Result<Vec<HotKey>> {
        self.read(|c| hot_keys(c, window, limit))
    }

    /// p50/p95/p99/max latency per operation and backend in `window`.
    ///
    /// # Errors
    /// As [`hot_keys`](Self::hot_keys).
    pub fn latency_percentiles(&self, window: TimeWindow) -> Result<Vec<LatencyRow>> {
        self.read(|c| latency(c, window))
    }

    /// How reads through the cache were answered in `window`.
    ///
    /// # Errors
    /// As [`hot_keys`](Self::hot_keys).
    pub fn cache_hit_rates(&self, window: TimeWindow) -> Result<CacheHitRates> {
        self.read(|c| cache_rates(c, window))
    }

    /// Objects and bytes per tenant as of the window's end, from the recorded writes (so
    /// from when analytics was switched on, less any dropped events). Largest first.
    ///
    /// # Errors
    /// As [`hot_keys`](Self::hot_keys).
    pub fn tenant_usage(&self, window: TimeWindow) -> Result<Vec<TenantUsage>> {
        self.read(|c| tenant_usage(c, window))
    }

    /// Puts, bytes written and deletes per `bucket` of time in `window` (DuckDB's
    /// `time_bucket`, buckets aligned to 2000-01-03 00:00 UTC).
    ///
    /// # Errors
    /// `InvalidInput` for a zero bucket; otherwise as [`hot_keys`](Self::hot_keys).
    pub fn growth(&self, window: TimeWindow, bucket: Duration) -> Result<Vec<GrowthRow>> {
        let bucket_us = i64::try_from(bucket.as_micros()).unwrap_or(i64::MAX);
        if bucket_us == 0 {
            return Err(Error::invalid_input(
                "the growth bucket must be at least 1 µs",
            ));
        }
        self.read(|c| growth(c, window, bucket_us))
    }

    /// Calls, errors and error rate per operation in `window`.
    ///
    /// # Errors
    /// As [`hot_keys`](Self::hot_keys).
    pub fn error_rates(&self, window: TimeWindow) -> Result<Vec<ErrorRateRow>> {
        self.read(|c| error_rates(c, window))
    }

    /// Every report over `window` in one connection: the `hot_limit` hottest keys, and
    /// growth per `bucket`.
    ///
    /// # Errors
    /// As [`growth`](Self::growth).
    pub fn report(&self, window: TimeWindow, hot_limit: usize, bucket: Duration) -> Result<Report> {
        let bucket_us = i64::try_from(bucket.as_micros()).unwrap_or(i64::MAX).max(1);
        self.read(|c| {
            let (start, end) = window.bounds();
            let events: i64 = c
                .query_row(
                    "SELECT count(*) FROM access_events WHERE ts >= ? AND ts < ?",
                    params![start, end],
                    |r| r.get(0),
                )
                .map_err(duck_error)?;
            Ok(Report {
                window,
                events: u64_of(events),
                hot_keys: hot_keys(c, window, hot_limit)?,
                latency: latency(c, window)?,
                cache: cache_rates(c, window)?,
                tenants: tenant_usage(c, window)?,
                growth: growth(c, window, bucket_us)?,
                errors: error_rates(c, window)?,
            })
        })
    }

    /// Runs one read-only SQL statement and returns its rows as Arrow record batches.
    ///
    /// The connection is opened read-only with external access disabled, so DuckDB itself
    /// refuses any statement that writes (INSERT, UPDATE, DELETE, CREATE, DROP, COPY, …) or
    /// touches a file (`read_csv`, `read_parquet`, `ATTACH`, `INSTALL`), and settings are
    /// locked. Only one statement per call.
    ///
    /// # Errors
    /// `InvalidInput` for a refused statement, a syntax or binding error, or several
    /// statements; `Unavailable` as [`hot_keys`](Self::hot_keys).
    pub fn sql(&self, query: &str) -> Result<Vec<RecordBatch>> {
        self.read(|c| run_query(c, query))
            .map(|(_, batches)| batches)
    }

    /// Writes a table or a query's rows to a Parquet file (Snappy-compressed), through a
    /// temporary file in the same directory renamed into place, so `path` never holds a
    /// partial file.
    ///
    /// # Errors
    /// `InvalidInput` for an unknown table or a refused query (as [`sql`](Self::sql));
    /// `Backend` for file errors.
    pub fn export_parquet(&self, source: &ExportSource, path: &Path) -> Result<ExportReport> {
        let query = match source {
            ExportSource::Table(name) => {
                if !TABLES.contains(&name.as_str()) {
                    return Err(Error::invalid_input(format!(
                        "unknown analytics table {name:?}; the tables are {}",
                        TABLES.join(", ")
                    )));
                }
                format!("SELECT * FROM {name}")
            }
            ExportSource::Query(q) => q.clone(),
        };
        let (schema, batches) = self.read(|c| run_query(c, &query))?;
        write_parquet(schema, &batches, path)
    }
}

fn hot_keys(c: &Connection, window: TimeWindow, limit: usize) -> Result<Vec<HotKey>> {
    let (start, end) = window.bounds();
    let sql = format!(
        "SELECT tenant, min(key), key_hash, count(*), sum(bytes)::BIGINT
         FROM access_events
         WHERE ts >= ? AND ts < ? AND operation IN {READS} AND key_hash <> 0
         GROUP BY tenant, key_hash
         ORDER BY count(*) DESC, key_hash
         LIMIT ?"
    );
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut stmt = c.prepare(&sql).map_err(duck_error)?;
    let rows = stmt
        .query_map(params![start, end, limit], |r| {
            Ok(HotKey {
                tenant: r.get(0)?,
                key: r.get(1)?,
                key_hash: r.get(2)?,
                reads: u64_of(r.get(3)?),
                bytes: u64_of(r.get(4)?),
            })
        })
        .map_err(duck_error)?;
    rows.collect::<duckdb::Result<_>>().map_err(duck_error)
}

fn latency(c: &Connection, window: TimeWindow) -> Result<Vec<LatencyRow>> {
    let (start, end) = window.bounds();
    let mut stmt = c
        .prepare(
            "SELECT operation, backend, count(*),
                    quantile_disc(latency_us, 0.5)::BIGINT,
                    quantile_disc(latency_us, 0.95)::BIGINT,
                    quantile_disc(latency_us, 0.99)::BIGINT,
                    max(latency_us)::BIGINT
             FROM access_events WHERE ts >= ? AND ts < ?
             GROUP BY operation, backend ORDER BY operation, backend",
        )
        .map_err(duck_error)?;
    let rows = stmt
        .query_map(params![start, end], |r| {
            Ok(LatencyRow {
                operation: r.get(0)?,
                backend: r.get(1)?,
                calls: u64_of(r.get(2)?),
                p50_us: u64_of(r.get(3)?),
                p95_us: u64_of(r.get(4)?),
                p99_us: u64_of(r.get(5)?),
                max_us: u64_of(r.get(6)?),
            })
        })
        .map_err(duck_error)?;
    rows.collect::<duckdb::Result<_>>().map_err(duck_error)
}

fn ratio(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

fn cache_rates(c: &Connection, window: TimeWindow) -> Result<CacheHitRates> {
    let (start, end) = window.bounds();
    let (l1, l2, misses): (i64, i64, i64) = c
        .query_row(
            "SELECT count(*) FILTER (cache_tier = 'l1_hit'),
                    count(*) FILTER (cache_tier = 'l2_hit'),
                    count(*) FILTER (cache_tier = 'miss')
             FROM access_events WHERE ts >= ? AND ts < ?",
            params![start, end],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .map_err(duck_error)?;
    let (l1_hits, l2_hits, misses) = (u64_of(l1), u64_of(l2), u64_of(misses));
    let lookups = l1_hits + l2_hits + misses;
    Ok(CacheHitRates {
        lookups,
        l1_hits,
        l2_hits,
        misses,
        l1_hit_rate: ratio(l1_hits, lookups),
        l2_hit_rate: ratio(l2_hits, lookups - l1_hits),
        overall_hit_rate: ratio(l1_hits + l2_hits, lookups),
    })
}

fn tenant_usage(c: &Connection, window: TimeWindow) -> Result<Vec<TenantUsage>> {
    let (_, end) = window.bounds();
    let sql = format!(
        "WITH writes AS (
            SELECT tenant, key_hash, operation, bytes, ts FROM access_events
            WHERE ts < ? AND outcome = 'ok'
              AND (operation IN {PUTS} OR operation IN {DELETES} OR operation = 'clear')
         ), clears AS (
            SELECT tenant, max(ts) AS cleared FROM writes WHERE operation = 'clear'
            GROUP BY tenant
         ), latest AS (
            SELECT tenant, key_hash, arg_max(operation, ts) AS op, arg_max(bytes, ts) AS bytes,
                   max(ts) AS last_ts
            FROM writes WHERE operation <> 'clear' GROUP BY tenant, key_hash
         )
         SELECT l.tenant, count(*), sum(l.bytes)::BIGINT
         FROM latest l LEFT JOIN clears c ON l.tenant IS NOT DISTINCT FROM c.tenant
         WHERE l.op IN {PUTS} AND (c.cleared IS NULL OR l.last_ts > c.cleared)
         GROUP BY l.tenant ORDER BY sum(l.bytes) DESC, l.tenant NULLS FIRST"
    );
    let mut stmt = c.prepare(&sql).map_err(duck_error)?;
    let rows = stmt
        .query_map(params![end], |r| {
            Ok(TenantUsage {
                tenant: r.get(0)?,
                objects: u64_of(r.get(1)?),
                bytes: u64_of(r.get(2)?),
            })
        })
        .map_err(duck_error)?;
    rows.collect::<duckdb::Result<_>>().map_err(duck_error)
}

fn growth(c: &Connection, window: TimeWindow, bucket_us: i64) -> Result<Vec<GrowthRow>> {
    let (start, end) = window.bounds();
    let sql = format!(
        "SELECT epoch_us(time_bucket(to_microseconds(?::BIGINT), ts)) AS bucket,
                count(*) FILTER (operation IN {PUTS}),
                coalesce(sum(bytes) FILTER (operation IN {PUTS}), 0)::BIGINT,
                count(*) FILTER (operation IN {DELETES})
         FROM access_events
         WHERE ts >= ? AND ts < ? AND outcome = 'ok'
           AND (operation IN {PUTS} OR operation IN {DELETES})
         GROUP BY bucket ORDER BY bucket"
    );
    let mut stmt = c.prepare(&sql).map_err(duck_error)?;
    let rows = stmt
        .query_map(params![bucket_us, start, end], |r| {
            Ok(GrowthRow {
                bucket_start_us: r.get(0)?,
                puts: u64_of(r.get(1)?),
                bytes_written: u64_of(r.get(2)?),
                deletes: u64_of(r.get(3)?),
            })
        })
        .map_err(duck_error)?;
    rows.collect::<duckdb::Result<_>>().map_err(duck_error)
}

fn error_rates(c: &Connection, window: TimeWindow) -> Result<Vec<ErrorRateRow>> {
    let (start, end) = window.bounds();
    let mut stmt = c
        .prepare(
            "SELECT operation, count(*),
                    count(*) FILTER (outcome NOT IN ('ok', 'not_found'))
             FROM access_events WHERE ts >= ? AND ts < ?
             GROUP BY operation ORDER BY operation",
        )
        .map_err(duck_error)?;
    let rows = stmt
        .query_map(params![start, end], |r| {
            let calls = u64_of(r.get(1)?);
            let errors = u64_of(r.get(2)?);
            Ok(ErrorRateRow {
                operation: r.get(0)?,
                calls,
                errors,
                error_rate: ratio(errors, calls).unwrap_or(0.0),
            })
        })
        .map_err(duck_error)?;
    rows.collect::<duckdb::Result<_>>().map_err(duck_error)
}

/// Runs one statement on a read-only connection; DuckDB's refusals become `InvalidInput`.
fn run_query(c: &Connection, query: &str) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let refused = |e: duckdb::Error| {
        let text = e.to_string();
        let error = duck_error(e);
        if error.kind() == ErrorKind::Unavailable {
            return error;
        }
        if text.starts_with("IO Error") || text.starts_with("Out of Memory") {
            // The engine failed, not the statement.
            return error;
        }
        let lower = text.to_ascii_lowercase();
        let reason = if lower.contains("read-only") || lower.contains("read only") {
            "analytics SQL is read-only: statements that write are refused"
        } else if lower.contains("permission error") || lower.contains("external access") {
            "analytics SQL cannot read or write files: external access is disabled"
        } else if lower.contains("multiple statements") {
            "analytics SQL takes one statement per call"
        } else {
            "the analytics SQL statement failed"
        };
        Error::new(ErrorKind::InvalidInput, format!("{reason}: {text}"))
    };
    let mut stmt = c.prepare(query).map_err(refused)?;
    let rows = stmt.query_arrow([]).map_err(refused)?;
    let schema = rows.get_schema();
    Ok((schema, rows.collect()))
}

fn write_parquet(schema: SchemaRef, batches: &[RecordBatch], path: &Path) -> Result<ExportReport> {
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
        writer.write(batch).map_err(|e| io("write", &e))?;
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
