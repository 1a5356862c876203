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
use duckdb::{Connection, params};
use hybridstore_core::{Error, ErrorKind, Result};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde::Serialize;

use crate::db::{Access, DuckFile, duck_error};
use crate::errors::refused;
use crate::rollup::{self, Coverage, unrolled_events};
use crate::schema::{SCHEMA_VERSION, TABLES};
mod export;
mod queries;

use crate::vocabulary::{DELETES, MAX_TS_US, MIN_TS_US, MINUTE_US, PUTS, READS, usage_of_latest};
use export::{run_query, write_parquet};
use queries::*;

/// A half-open time range `[start, end)` in microseconds since the Unix epoch (UTC);
/// `None` leaves that side open.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TimeWindow {
    /// First microsecond included.
    pub start_us: Option<i64>,
    /// First microsecond excluded.
    pub end_us: Option<i64>,
}

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
/// Percentiles follow the nearest-rank method: the ⌈n · q⌉-th smallest of the n latencies
/// in the group (so p95 of 10 calls is the slowest), read from a log-linear histogram (see
/// [`LATENCY_BUCKET_PRECISION_BITS`](crate::LATENCY_BUCKET_PRECISION_BITS)): the value
/// reported is the slowest latency measured in the bucket holding that rank, exact below
/// 256 µs and otherwise at most 1/128 above the exact value. `calls` and `max_us` are exact.
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
    /// `false`: reports read the events alone, ignoring the rollups (tests compare both).
    use_rollups: bool,
    /// Hot-key candidates taken from the window's unrolled events.
    hot_key_candidates: usize,
}

fn u64_of(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

impl AnalyticsReader {
    pub(crate) fn new(file: DuckFile, hot_key_candidates: usize) -> AnalyticsReader {
        AnalyticsReader {
            file,
            use_rollups: true,
            hot_key_candidates,
        }
    }

    /// The same reader with reports computed from the events alone, ignoring the per-minute
    /// rollups: the reference the rollups must agree with. Tests and benchmarks only.
    #[cfg(feature = "testing")]
    pub fn events_only(&self) -> AnalyticsReader {
        AnalyticsReader {
            file: self.file.clone(),
            use_rollups: false,
            hot_key_candidates: self.hot_key_candidates,
        }
    }

    /// Hot-key candidates per list for the threshold test; `None` for the events-only
    /// reference.
    fn candidates(&self) -> Option<usize> {
        self.use_rollups.then_some(self.hot_key_candidates)
    }

    /// Where a report over `window` reads from.
    fn coverage(&self, c: &Connection, window: TimeWindow) -> Result<Coverage> {
        coverage(c, window, self.use_rollups)
    }

    /// The coverage of tenant usage at `window`'s end: everything before it.
    fn usage_coverage(&self, c: &Connection, window: TimeWindow) -> Result<Coverage> {
        let before_end = TimeWindow {
            start_us: None,
            end_us: window.end_us,
        };
        coverage(c, before_end, self.use_rollups)
    }

    /// The coverage of growth per `bucket_us`: the rollups only serve whole minutes.
    fn growth_coverage(
        &self,
        c: &Connection,
        window: TimeWindow,
        bucket_us: i64,
    ) -> Result<Coverage> {
        let whole_minutes = bucket_us % MINUTE_US == 0;
        coverage(c, window, self.use_rollups && whole_minutes)
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
        self.read(|c| {
            let cov = self.coverage(c, window)?;
            hot_keys(c, cov, limit, self.candidates())
        })
    }

    /// p50/p95/p99/max latency per operation and backend in `window`.
    ///
    /// # Errors
    /// As [`hot_keys`](Self::hot_keys).
    pub fn latency_percentiles(&self, window: TimeWindow) -> Result<Vec<LatencyRow>> {
        self.read(|c| latency(c, self.coverage(c, window)?))
    }

    /// How reads through the cache were answered in `window`.
    ///
    /// # Errors
    /// As [`hot_keys`](Self::hot_keys).
    pub fn cache_hit_rates(&self, window: TimeWindow) -> Result<CacheHitRates> {
        self.read(|c| cache_rates(c, self.coverage(c, window)?))
    }

    /// Objects and bytes per tenant as of the window's end, from the recorded writes (so
    /// from when analytics was switched on, less any dropped events). Largest first.
    ///
    /// # Errors
    /// As [`hot_keys`](Self::hot_keys).
    pub fn tenant_usage(&self, window: TimeWindow) -> Result<Vec<TenantUsage>> {
        self.read(|c| tenant_usage(c, self.usage_coverage(c, window)?, self.use_rollups))
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
        self.read(|c| growth(c, self.growth_coverage(c, window, bucket_us)?, bucket_us))
    }

    /// Calls, errors and error rate per operation in `window`.
    ///
    /// # Errors
    /// As [`hot_keys`](Self::hot_keys).
    pub fn error_rates(&self, window: TimeWindow) -> Result<Vec<ErrorRateRow>> {
        self.read(|c| error_rates(c, self.coverage(c, window)?))
    }

    /// Every report over `window` in one connection: the `hot_limit` hottest keys, and
    /// growth per `bucket`.
    ///
    /// # Errors
    /// As [`growth`](Self::growth).
    pub fn report(&self, window: TimeWindow, hot_limit: usize, bucket: Duration) -> Result<Report> {
        let bucket_us = i64::try_from(bucket.as_micros()).unwrap_or(i64::MAX).max(1);
        self.read(|c| {
            let cov = self.coverage(c, window)?;
            Ok(Report {
                window,
                events: event_count(c, cov)?,
                hot_keys: hot_keys(c, cov, hot_limit, self.candidates())?,
                latency: latency(c, cov)?,
                cache: cache_rates(c, cov)?,
                tenants: tenant_usage(c, self.usage_coverage(c, window)?, self.use_rollups)?,
                growth: growth(c, self.growth_coverage(c, window, bucket_us)?, bucket_us)?,
                errors: error_rates(c, cov)?,
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
        // Batches go into the Parquet writer as DuckDB hands them out: memory holds one
        // batch, not the whole result.
        self.read(|c| {
            let mut stmt = c.prepare(&query).map_err(refused)?;
            let rows = stmt.query_arrow([]).map_err(refused)?;
            write_parquet(rows.get_schema(), rows, path)
        })
    }
}
