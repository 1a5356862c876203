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
use crate::rollup::{self, Coverage, unrolled_events};
use crate::schema::{SCHEMA_VERSION, TABLES};

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
pub(crate) const MIN_TS_US: i64 = -62_135_596_800_000_000;
pub(crate) const MAX_TS_US: i64 = 253_402_300_799_999_999;

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

/// The operations of each kind, as SQL lists (shared with the rollups).
pub(crate) const READS: &str = "('get', 'get_range', 'get_many')";
const PUTS: &str = "('put', 'batch_put')";
const DELETES: &str = "('delete', 'batch_delete')";
/// Puts, deletes and clears: what tenant usage follows.
pub(crate) const WRITES: &str = "('put', 'batch_put', 'delete', 'batch_delete', 'clear')";

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
        let whole_minutes = bucket_us % rollup::MINUTE_US == 0;
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

/// Where a report over `window` reads from: the rollups for the whole rolled minutes, the
/// events for the rest (see the `rollup` module).
fn coverage(c: &Connection, window: TimeWindow, use_rollups: bool) -> Result<Coverage> {
    let start = window.start_us.unwrap_or(MIN_TS_US).max(MIN_TS_US);
    let end = window.end_us.unwrap_or(MAX_TS_US).min(MAX_TS_US);
    let rolled_until = if use_rollups {
        rollup::rolled_until(c).map_err(|e| {
            Error::new(
                ErrorKind::Unsupported,
                format!(
                    "the analytics database predates schema version {SCHEMA_VERSION} (no \
                     rollups): open it once with this hybridstore to migrate it ({e})"
                ),
            )
        })?
    } else {
        None
    };
    Ok(Coverage::new(start, end, rolled_until))
}

/// The `limit` most read keys: exact, by the threshold test over the rollups' heads when it
/// decides, otherwise by adding up every key.
/// `candidates` `None`: add up every key (the reference the threshold test must agree with).
fn hot_keys(
    c: &Connection,
    cov: Coverage,
    limit: usize,
    candidates: Option<usize>,
) -> Result<Vec<HotKey>> {
    if let Some(candidates) = candidates
        && let Some(hot) = hot_keys_from_heads(c, cov, limit, candidates)?
    {
        return Ok(hot);
    }
    hot_keys_exhaustive(c, cov, limit)
}

fn hot_key_row(r: &duckdb::Row<'_>) -> duckdb::Result<HotKey> {
    Ok(HotKey {
        tenant: r.get(0)?,
        key: r.get(1)?,
        key_hash: r.get(2)?,
        reads: u64_of(r.get(3)?),
        bytes: u64_of(r.get(4)?),
    })
}

/// The threshold algorithm of TPUT (P. Cao and Z. Wang, "Efficient top-K query calculation
/// in distributed networks", PODC 2004) over per-minute lists: each rolled minute (and the
/// window's unrolled events, as one more list) keeps its `candidates` most read keys and the
/// reads of the next one. A key in no list's candidates was read at most that next count in
/// each list, so at most their sum (`bound`) in the window. The candidates' exact totals
/// decide the answer when the `limit`-th of them is above `bound` (or no list was cut);
/// otherwise `None`, and the caller adds up every key.
fn hot_keys_from_heads(
    c: &Connection,
    cov: Coverage,
    limit: usize,
    candidates: usize,
) -> Result<Option<Vec<HotKey>>> {
    if limit == 0 {
        return Ok(Some(Vec::new()));
    }
    let events = unrolled_events(
        "tenant, key_hash, key, bytes",
        &format!("operation IN {READS} AND key_hash <> 0"),
    );
    let candidates = candidates.max(1);
    let sql = format!(
        "WITH edge AS (
            SELECT tenant, key_hash, count(*) AS reads, sum(bytes) AS bytes, min(key) AS key
            FROM ({events}) GROUP BY tenant, key_hash
         ), edge_heads AS (
            SELECT tenant, key_hash, reads,
                   row_number() OVER (ORDER BY reads DESC, key_hash, tenant NULLS FIRST) AS rank
            FROM edge QUALIFY rank <= {candidates} + 1
         ), heads AS (
            SELECT tenant, key_hash, key, reads, candidate FROM key_read_heads
            WHERE minute >= $1 AND minute < $2
            UNION ALL
            SELECT e.tenant, e.key_hash, e.key, h.reads, h.rank <= {candidates}
            FROM edge_heads h JOIN edge e ON h.key_hash = e.key_hash
                                         AND h.tenant IS NOT DISTINCT FROM e.tenant
         ), chosen AS (
            SELECT DISTINCT tenant, key_hash FROM heads WHERE candidate
         ), top AS (
            SELECT x.tenant, x.key_hash, sum(x.reads) AS reads, sum(x.bytes) AS bytes
            FROM (
                SELECT tenant, key_hash, reads, bytes FROM key_read_minutes
                WHERE minute >= $1 AND minute < $2
                UNION ALL
                SELECT tenant, key_hash, reads, bytes FROM edge
            ) x
            SEMI JOIN chosen ON x.key_hash = chosen.key_hash
                            AND x.tenant IS NOT DISTINCT FROM chosen.tenant
            GROUP BY x.tenant, x.key_hash
            ORDER BY reads DESC, x.key_hash, x.tenant NULLS FIRST LIMIT $5
         )
         -- Every winner is a candidate, so its key is in the heads (the key's text is the
         -- same wherever its hash is).
         SELECT top.tenant,
                (SELECT min(h.key) FROM heads h
                 WHERE h.key_hash = top.key_hash AND h.tenant IS NOT DISTINCT FROM top.tenant),
                top.key_hash, top.reads::BIGINT, top.bytes::BIGINT,
                (SELECT coalesce(sum(reads) FILTER (NOT candidate), 0) FROM heads)::BIGINT
         FROM top ORDER BY top.reads DESC, top.key_hash, top.tenant NULLS FIRST"
    );
    let [a, b, s, e] = cov.params();
    let limit_param = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut stmt = c.prepare(&sql).map_err(duck_error)?;
    let mut bound = 0u64;
    let rows = stmt
        .query_map(params![a, b, s, e, limit_param], |r| {
            bound = u64_of(r.get(5)?);
            hot_key_row(r)
        })
        .map_err(duck_error)?
        .collect::<duckdb::Result<Vec<HotKey>>>()
        .map_err(duck_error)?;
    let decided = bound == 0 || (rows.len() == limit && rows[limit - 1].reads > bound);
    Ok(decided.then_some(rows))
}

/// Every key's reads in the window, added up.
fn hot_keys_exhaustive(c: &Connection, cov: Coverage, limit: usize) -> Result<Vec<HotKey>> {
    let events = unrolled_events(
        "tenant, key_hash, key, 1 AS reads, bytes",
        &format!("operation IN {READS} AND key_hash <> 0"),
    );
    // Rank on numbers alone, then fetch the keys of the winners only.
    let sql = format!(
        "WITH reads AS (
            SELECT tenant, key_hash, key, reads, bytes FROM key_read_minutes
            WHERE minute >= $1 AND minute < $2
            UNION ALL {events}
         ), top AS (
            SELECT tenant, key_hash, sum(reads) AS reads, sum(bytes) AS bytes FROM reads
            GROUP BY tenant, key_hash
            ORDER BY reads DESC, key_hash, tenant NULLS FIRST LIMIT $5
         )
         SELECT top.tenant, (SELECT min(r.key) FROM reads r
                             WHERE r.key_hash = top.key_hash
                               AND r.tenant IS NOT DISTINCT FROM top.tenant),
                top.key_hash, top.reads::BIGINT, top.bytes::BIGINT
         FROM top ORDER BY top.reads DESC, top.key_hash, top.tenant NULLS FIRST"
    );
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let [a, b, s, e] = cov.params();
    let mut stmt = c.prepare(&sql).map_err(duck_error)?;
    let rows = stmt
        .query_map(params![a, b, s, e, limit], hot_key_row)
        .map_err(duck_error)?;
    rows.collect::<duckdb::Result<_>>().map_err(duck_error)
}

fn latency(c: &Connection, cov: Coverage) -> Result<Vec<LatencyRow>> {
    let bucket = rollup::latency_bucket_sql("latency_us");
    let events = unrolled_events(
        &format!("operation, backend, {bucket} AS bucket_us, 1 AS calls, latency_us AS top"),
        "true",
    );
    // The histogram of each operation and backend, buckets in order: a few thousand rows.
    let sql = format!(
        "SELECT operation, backend, bucket_us, sum(calls)::BIGINT, max(top)::BIGINT
         FROM (
            SELECT operation, backend, bucket_us, calls, max_latency_us AS top
            FROM latency_minutes WHERE minute >= $1 AND minute < $2
            UNION ALL {events}
         ) GROUP BY operation, backend, bucket_us ORDER BY operation, backend, bucket_us"
    );
    let mut stmt = c.prepare(&sql).map_err(duck_error)?;
    let buckets = stmt
        .query_map(cov.params(), |r| {
            Ok(LatencyBucket {
                operation: r.get(0)?,
                backend: r.get(1)?,
                calls: u64_of(r.get(3)?),
                slowest_us: u64_of(r.get(4)?),
            })
        })
        .map_err(duck_error)?
        .collect::<duckdb::Result<Vec<_>>>()
        .map_err(duck_error)?;
    Ok(buckets
        .chunk_by(|a, b| (&a.operation, &a.backend) == (&b.operation, &b.backend))
        .map(percentiles)
        .collect())
}

/// One bucket of the latency histogram of one operation and backend.
struct LatencyBucket {
    operation: String,
    backend: String,
    calls: u64,
    /// The slowest latency measured in the bucket.
    slowest_us: u64,
}

/// Nearest-rank percentiles over one group's buckets (in bucket order, at least one): the
/// ⌈n·p/100⌉-th latency lies in the first bucket whose running count reaches it, and the
/// bucket's slowest latency is reported for it.
fn percentiles(buckets: &[LatencyBucket]) -> LatencyRow {
    let calls: u64 = buckets.iter().map(|b| b.calls).sum();
    let at = |percent: u64| {
        let rank = (calls * percent).div_ceil(100).max(1);
        let mut running = 0;
        buckets
            .iter()
            .find(|b| {
                running += b.calls;
                running >= rank
            })
            .map_or(0, |b| b.slowest_us)
    };
    LatencyRow {
        operation: buckets[0].operation.clone(),
        backend: buckets[0].backend.clone(),
        calls,
        p50_us: at(50),
        p95_us: at(95),
        p99_us: at(99),
        max_us: buckets.iter().map(|b| b.slowest_us).max().unwrap_or(0),
    }
}

fn ratio(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

/// The calls of the window, per operation, backend, cache tier and outcome, from
/// `access_minutes` and the unrolled events: the source of the counting reports.
fn calls_sql() -> String {
    let events = unrolled_events(
        "operation, backend, cache_tier, outcome, 1 AS calls, bytes, ts",
        "true",
    );
    format!(
        "SELECT operation, backend, cache_tier, outcome, calls, bytes, minute AS ts
         FROM access_minutes WHERE minute >= $1 AND minute < $2
         UNION ALL {events}"
    )
}

fn event_count(c: &Connection, cov: Coverage) -> Result<u64> {
    let sql = format!(
        "SELECT coalesce(sum(calls), 0)::BIGINT FROM ({})",
        calls_sql()
    );
    let n: i64 = c
        .query_row(&sql, cov.params(), |r| r.get(0))
        .map_err(duck_error)?;
    Ok(u64_of(n))
}

fn cache_rates(c: &Connection, cov: Coverage) -> Result<CacheHitRates> {
    let sql = format!(
        "SELECT coalesce(sum(calls) FILTER (cache_tier = 'l1_hit'), 0)::BIGINT,
                coalesce(sum(calls) FILTER (cache_tier = 'l2_hit'), 0)::BIGINT,
                coalesce(sum(calls) FILTER (cache_tier = 'miss'), 0)::BIGINT
         FROM ({})",
        calls_sql()
    );
    let (l1, l2, misses): (i64, i64, i64) = c
        .query_row(&sql, cov.params(), |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
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

/// Usage at the end of `cov`, which covers everything before it: from the state at the
/// watermark and the events after it when `cov` ends past the watermark, otherwise from
/// every minute's last writes. `use_state` `false`: the latter always (the reference).
fn tenant_usage(c: &Connection, cov: Coverage, use_state: bool) -> Result<Vec<TenantUsage>> {
    // (statement, whether it takes the coverage's parameters)
    let (sql, bound) = if !(use_state && cov.state_at_watermark) {
        (tenant_usage_from_minutes_sql(), true)
    } else {
        let unrolled: i64 = c
            .query_row(
                &format!("SELECT count(*) FROM ({})", unrolled_writes()),
                cov.params(),
                |r| r.get(0),
            )
            .map_err(duck_error)?;
        if unrolled == 0 {
            // Nothing written after the watermark (before the window's end): the usage at
            // the watermark is the answer.
            let at_watermark = "SELECT tenant, objects::BIGINT, bytes::BIGINT
                                FROM tenant_usage_state ORDER BY bytes DESC, tenant NULLS FIRST";
            (at_watermark.to_owned(), false)
        } else {
            (tenant_usage_from_state_sql(), true)
        }
    };
    let row = |r: &duckdb::Row<'_>| {
        Ok(TenantUsage {
            tenant: r.get(0)?,
            objects: u64_of(r.get(1)?),
            bytes: u64_of(r.get(2)?),
        })
    };
    let mut stmt = c.prepare(&sql).map_err(duck_error)?;
    let rows = if bound {
        stmt.query_map(cov.params(), row)
    } else {
        stmt.query_map([], row)
    };
    rows.map_err(duck_error)?
        .collect::<duckdb::Result<_>>()
        .map_err(duck_error)
}

/// The successful writes of the window's unrolled events.
fn unrolled_writes() -> String {
    unrolled_events(
        "tenant, key_hash, operation, bytes, ts",
        &format!(
            "outcome = 'ok' AND (operation IN {PUTS} OR operation IN {DELETES} \
             OR operation = 'clear')"
        ),
    )
}

/// The unrolled events (all after the watermark) win over `object_state` for the objects
/// they touch; every other object keeps its state.
/// Objects and bytes per tenant from the CTEs `latest` (each object's last put or delete:
/// `tenant, key_hash, op, bytes, last_ts`) and `clears` (each tenant's last clear:
/// `tenant, cleared`): an object counts if its last write is a put after the tenant's last
/// clear. `filter` is an extra condition (`AND …`), or empty. The one definition of usage,
/// for the reports and for `tenant_usage_state`.
pub(crate) fn usage_of_latest(filter: &str) -> String {
    format!(
        "SELECT l.tenant AS tenant, count(*) AS objects, sum(l.bytes)::BIGINT AS bytes
         FROM latest l LEFT JOIN clears c ON l.tenant IS NOT DISTINCT FROM c.tenant
         WHERE l.op IN {PUTS} AND (c.cleared IS NULL OR l.last_ts > c.cleared) {filter}
         GROUP BY l.tenant"
    )
}

fn tenant_usage_from_state_sql() -> String {
    let events = unrolled_writes();
    format!(
        "WITH edge AS ({events}
         ), edge_latest AS (
            SELECT tenant, key_hash, arg_max(operation, ts) AS op, arg_max(bytes, ts) AS bytes,
                   max(ts) AS last_ts
            FROM edge WHERE operation <> 'clear' GROUP BY tenant, key_hash
         ), clears AS (
            SELECT tenant, max(cleared) AS cleared FROM (
                SELECT tenant, cleared FROM tenant_clears
                UNION ALL SELECT tenant, ts FROM edge WHERE operation = 'clear'
            ) GROUP BY tenant
         ), latest AS (
            SELECT s.tenant, s.key_hash, s.operation AS op, s.bytes, s.last_ts
            FROM object_state s
            ANTI JOIN edge_latest n ON s.key_hash = n.key_hash
                                   AND s.tenant IS NOT DISTINCT FROM n.tenant
            UNION ALL
            SELECT tenant, key_hash, op, bytes, last_ts FROM edge_latest
         )
         {usage} ORDER BY bytes DESC, tenant NULLS FIRST",
        usage = usage_of_latest(""),
    )
}

fn tenant_usage_from_minutes_sql() -> String {
    let events = unrolled_writes();
    format!(
        "WITH writes AS (
            SELECT tenant, key_hash, operation, bytes, last_ts AS ts FROM key_write_minutes
            WHERE minute >= $1 AND minute < $2
            UNION ALL {events}
         ), clears AS (
            SELECT tenant, max(ts) AS cleared FROM writes WHERE operation = 'clear'
            GROUP BY tenant
         ), latest AS (
            SELECT tenant, key_hash, arg_max(operation, ts) AS op, arg_max(bytes, ts) AS bytes,
                   max(ts) AS last_ts
            FROM writes WHERE operation <> 'clear' GROUP BY tenant, key_hash
         )
         {usage} ORDER BY bytes DESC, tenant NULLS FIRST",
        usage = usage_of_latest(""),
    )
}

fn growth(c: &Connection, cov: Coverage, bucket_us: i64) -> Result<Vec<GrowthRow>> {
    let sql = format!(
        "SELECT epoch_us(time_bucket(to_microseconds($5::BIGINT), ts)) AS bucket,
                coalesce(sum(calls) FILTER (operation IN {PUTS}), 0)::BIGINT,
                coalesce(sum(bytes) FILTER (operation IN {PUTS}), 0)::BIGINT,
                coalesce(sum(calls) FILTER (operation IN {DELETES}), 0)::BIGINT
         FROM ({calls})
         WHERE outcome = 'ok' AND (operation IN {PUTS} OR operation IN {DELETES})
         GROUP BY bucket ORDER BY bucket",
        calls = calls_sql()
    );
    let [a, b, s, e] = cov.params();
    let mut stmt = c.prepare(&sql).map_err(duck_error)?;
    let rows = stmt
        .query_map(params![a, b, s, e, bucket_us], |r| {
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

fn error_rates(c: &Connection, cov: Coverage) -> Result<Vec<ErrorRateRow>> {
    let sql = format!(
        "SELECT operation, sum(calls)::BIGINT,
                coalesce(sum(calls) FILTER (outcome NOT IN ('ok', 'not_found')), 0)::BIGINT
         FROM ({}) GROUP BY operation ORDER BY operation",
        calls_sql()
    );
    let mut stmt = c.prepare(&sql).map_err(duck_error)?;
    let rows = stmt
        .query_map(cov.params(), |r| {
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

/// A DuckDB error of a user's statement, classified: refused statements are `InvalidInput`
/// with the reason, engine failures keep their kind.
fn refused(e: duckdb::Error) -> Error {
    {
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
    }
}

/// Runs one statement on a read-only connection; DuckDB's refusals become `InvalidInput`.
fn run_query(c: &Connection, query: &str) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let mut stmt = c.prepare(query).map_err(refused)?;
    let rows = stmt.query_arrow([]).map_err(refused)?;
    let schema = rows.get_schema();
    Ok((schema, rows.collect()))
}

fn write_parquet(
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
