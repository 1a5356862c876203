//! Per-minute rollups of `access_events`, so reports read thousands of summary rows instead
//! of millions of events.
//!
//! The writer keeps summary tables, one row per minute and group (the *minute* is the
//! event's timestamp truncated to the minute, UTC), and the state they lead to:
//!
//! - `access_minutes` (operation, backend, cache tier, outcome): calls and bytes, for event
//!   counts, cache hit rates, growth and error rates;
//! - `latency_minutes` (operation, backend, latency bucket): calls and the slowest latency in
//!   the bucket, a log-linear histogram for the latency percentiles;
//! - `key_read_minutes` (tenant, key hash): reads, bytes and the key, for hot keys, and
//!   `key_read_heads`: each minute's most read keys (the hot-key candidates of
//!   [`AnalyticsOptions::hot_key_candidates`](crate::AnalyticsOptions::hot_key_candidates))
//!   and the reads of the next one, which bound every other key (the threshold test of
//!   TPUT; see `hot_keys_from_heads` in the reader);
//! - `key_write_minutes` (tenant, key hash, and whether it is a `clear`): the minute's last
//!   successful put, delete or clear of the key, for tenant usage at a past time; and
//!   `object_state` / `tenant_clears`, the last write of every object and the last clear of
//!   every tenant before the watermark, and `tenant_usage_state`, the usage they add up to,
//!   for tenant usage now.
//!
//! `rollup_state.rolled_until` is the watermark *W*: every event before *W* is counted in
//! the rollups, and no rollup row holds an event at or after *W*. The writer moves *W*
//! forward a whole number of minutes at a time, rolling `[old W, new W)` from the events in
//! one transaction, once it has seen an event [`GRACE_US`] past the new *W*: when it is idle,
//! or during a stream once two minutes are due (rolling is deferred work, like compaction),
//! and when asked ([`AnalyticsStore::roll_up`](crate::AnalyticsStore::roll_up)) past every
//! minute it wrote. An event that arrives with a timestamp
//! before *W* (a late event) is written to `access_events` and added to the rollups as extra
//! rows in the same transaction: the summary tables are sums, so extra rows for a minute add
//! up, and the state takes a late write only if it is the newest of its object. A writer
//! that crashes between its writes leaves only events past *W* unrolled, and the next roll
//! takes them from `access_events`, so there is no state outside the file to lose.
//!
//! A report over `[start, end)` reads the rollups for the whole minutes from
//! ⌈start⌉ (to the minute) up to min(⌊end⌋, *W*), and `access_events` for the rest: the
//! partial minutes at the edges and whatever is past *W*. The answer is the one the events
//! alone give (tests compare both), with one exception: latency percentiles come from the
//! histogram either way, see [`LATENCY_BUCKET_PRECISION_BITS`].
//!
//! This is the pre-aggregation of time-series systems (Druid's rollup at ingestion,
//! <https://druid.apache.org/docs/latest/ingestion/rollup>; Prometheus recording rules),
//! kept exact by answering the partial edges from the raw events.

use duckdb::types::{TimeUnit, Value};
use duckdb::{Connection, params};
use hybridstore_core::Result;

use crate::appenders::append_access_events_to;
use crate::db::duck_error;
use crate::event::AccessEvent;
use crate::vocabulary::{MIN_TS_US, MINUTE_US, READS, WRITES, usage_of_latest};

/// How far past a minute's end the writer must have seen events before it rolls that minute
/// up: events reach the writer out of order by up to an operation's latency plus the
/// channel's delay (about a second). An event later than this is still counted, as a late
/// event.
pub(crate) const GRACE_US: i64 = 10_000_000;

/// Sub-buckets per power of two in the latency histogram, as a power of two: 7 gives 128
/// buckets per octave above 256 µs and one bucket per microsecond below, HdrHistogram's
/// layout for two significant decimal digits
/// (<https://github.com/HdrHistogram/HdrHistogram>, `subBucketCount` 256). A percentile is
/// reported as the slowest latency measured in the bucket that holds the nearest-rank
/// value, so it is exact below 256 µs and otherwise at most 1/128 (0.78%) above the exact
/// nearest-rank value, never below it.
pub const LATENCY_BUCKET_PRECISION_BITS: u32 = 7;

/// The SQL expression of the latency bucket (its lowest value, µs) of the UBIGINT `column`.
///
/// `floor(log2(v))` is computed in floating point; the same expression buckets the rollups
/// and the raw edges, so the two always agree.
pub(crate) fn latency_bucket_sql(column: &str) -> String {
    let below = 1u64 << (LATENCY_BUCKET_PRECISION_BITS + 1);
    let bits = LATENCY_BUCKET_PRECISION_BITS;
    format!(
        "(CASE WHEN {column} < {below} THEN {column} \
          ELSE ({column} >> (floor(log2({column}))::INTEGER - {bits})) \
               << (floor(log2({column}))::INTEGER - {bits}) END)"
    )
}

/// `ts` truncated to the minute (floor, also before 1970).
pub(crate) fn floor_minute(us: i64) -> i64 {
    us.div_euclid(MINUTE_US) * MINUTE_US
}

/// The first minute boundary at or after `us`.
pub(crate) fn ceil_minute(us: i64) -> i64 {
    let floor = floor_minute(us);
    if floor == us {
        us
    } else {
        floor.saturating_add(MINUTE_US)
    }
}

fn ts(us: i64) -> Value {
    Value::Timestamp(TimeUnit::Microsecond, us)
}

/// The statements that add the events of `source` matching `condition` to the four
/// per-minute tables as list `list`; `condition` may use the bound timestamps `$1` and `$2`.
/// The list id is ours, not a caller's, and goes into the text as an integer literal.
fn minute_statements(source: &str, condition: &str, list: u64) -> [String; 4] {
    let bucket = latency_bucket_sql("latency_us");
    [
        format!(
            "INSERT INTO access_minutes
             SELECT date_trunc('minute', ts), operation, backend, cache_tier, outcome,
                    count(*), sum(bytes)::UBIGINT
             FROM {source} WHERE {condition} GROUP BY ALL"
        ),
        format!(
            "INSERT INTO latency_minutes
             SELECT date_trunc('minute', ts), operation, backend, {bucket},
                    count(*), max(latency_us)
             FROM {source} WHERE {condition} GROUP BY ALL"
        ),
        format!(
            "INSERT INTO key_read_minutes
             SELECT date_trunc('minute', ts), {list}::UBIGINT, tenant, key_hash, min(key),
                    count(*), sum(bytes)::UBIGINT
             FROM {source}
             WHERE {condition} AND operation IN {READS} AND key_hash <> 0
             GROUP BY ALL"
        ),
        format!(
            "INSERT INTO key_write_minutes
             SELECT date_trunc('minute', ts), {list}::UBIGINT, tenant, key_hash,
                    arg_max(operation, ts),
                    arg_max(bytes, ts), max(ts)
             FROM {source}
             WHERE {condition} AND outcome = 'ok' AND operation IN {WRITES}
             GROUP BY date_trunc('minute', ts), tenant, key_hash, operation = 'clear'"
        ),
    ]
}

/// The statements that derive from list `list` (once the minute statements added it) the
/// heads of the key reads (`candidates` keys per minute) in `key_read_heads`, the objects'
/// and tenants' latest writes in `object_state` and `tenant_clears`, and the usage they add
/// up to in `tenant_usage_state`. Both numbers are ours and go into the text as literals.
fn state_statements(list: u64, candidates: u64) -> Vec<String> {
    let same_object = "s.key_hash = n.key_hash AND s.tenant IS NOT DISTINCT FROM n.tenant";
    let same_tenant = "s.tenant IS NOT DISTINCT FROM n.tenant";
    let mut statements = vec![
        // The first `candidates` + 1 keys of each new list by reads: the first `candidates`
        // are candidates, the next one's reads bound every key that is not (see `hot_keys`
        // in the reader).
        format!(
            "INSERT INTO key_read_heads
             SELECT minute, list, tenant, key_hash, key, reads, rank <= {candidates} FROM (
                SELECT minute, list, tenant, key_hash, key, reads,
                       row_number() OVER (PARTITION BY minute
                                          ORDER BY reads DESC, key_hash, tenant NULLS FIRST)
                           AS rank
                FROM key_read_minutes
                WHERE list = {list}
                QUALIFY rank <= {candidates} + 1
             )"
        ),
        // The latest write of every object and the latest clear of every tenant: the state
        // at the watermark that tenant usage starts from. A row is replaced only by a newer
        // one (late events may be older than the state).
        format!(
            "CREATE OR REPLACE TEMP TABLE new_writes AS
             SELECT tenant, key_hash, arg_max(operation, last_ts) AS operation,
                    arg_max(bytes, last_ts) AS bytes, max(last_ts) AS last_ts
             FROM key_write_minutes WHERE list = {list} AND operation <> 'clear'
             GROUP BY tenant, key_hash"
        ),
    ];
    statements.extend(newest_wins(
        "object_state",
        "new_writes",
        same_object,
        "last_ts",
    ));
    statements.push(format!(
        "CREATE OR REPLACE TEMP TABLE new_clears AS
         SELECT tenant, max(last_ts) AS cleared
         FROM key_write_minutes WHERE list = {list} AND operation = 'clear'
         GROUP BY tenant"
    ));
    statements.extend(newest_wins(
        "tenant_clears",
        "new_clears",
        same_tenant,
        "cleared",
    ));
    // Usage per tenant at the watermark, for reports that end after it: recomputed only
    // when this list holds writes (a roll of reads alone, such as a short-lived CLI
    // process's, leaves it as it is).
    let has_writes = format!("EXISTS (SELECT 1 FROM key_write_minutes WHERE list = {list})");
    statements.push(format!("DELETE FROM tenant_usage_state WHERE {has_writes}"));
    statements.push(format!(
        "INSERT INTO tenant_usage_state
         WITH latest AS (
            SELECT tenant, key_hash, operation AS op, bytes, last_ts FROM object_state
         ), clears AS (SELECT tenant, cleared FROM tenant_clears)
         {usage}",
        usage = usage_of_latest(&format!("AND {has_writes}")),
    ));
    statements
}

/// Merges the rows of the temporary table `staged` into `table`, where `same` (over the
/// aliases `s` for `table` and `n` for `staged`) matches a row to the one it replaces: a
/// row replaces its match only if its `ts` column is newer. Drops `staged`.
fn newest_wins(table: &str, staged: &str, same: &str, ts: &str) -> [String; 4] {
    [
        format!("DELETE FROM {table} s USING {staged} n WHERE {same} AND s.{ts} < n.{ts}"),
        format!("DELETE FROM {staged} n USING {table} s WHERE {same}"),
        format!("INSERT INTO {table} SELECT * FROM {staged}"),
        format!("DROP TABLE {staged}"),
    ]
}

/// Rolls the events of `source` into the rollup tables under a fresh list id, keeping
/// `candidates` hot-key candidates per minute: those in `[from, until)` (µs), or all of them
/// for `None`.
fn run_rollup(
    conn: &Connection,
    source: &str,
    range: Option<(i64, i64)>,
    candidates: usize,
) -> Result<()> {
    let list: u64 = conn
        .query_row("SELECT nextval('rollup_list')::UBIGINT", [], |r| r.get(0))
        .map_err(duck_error)?;
    let candidates = u64::try_from(candidates.max(1)).unwrap_or(u64::MAX);
    match range {
        Some((from, until)) => {
            let (from, until) = (ts(from), ts(until));
            for statement in minute_statements(source, "ts >= $1 AND ts < $2", list) {
                conn.execute(&statement, params![from, until])
                    .map_err(duck_error)?;
            }
        }
        None => {
            for statement in minute_statements(source, "true", list) {
                conn.execute(&statement, []).map_err(duck_error)?;
            }
        }
    }
    for statement in state_statements(list, candidates) {
        conn.execute(&statement, []).map_err(duck_error)?;
    }
    Ok(())
}

/// The watermark *W* in microseconds; `None` before the first roll.
///
/// # Errors
/// DuckDB errors as `Backend` (a database older than the rollups has no `rollup_state`).
pub(crate) fn rolled_until(conn: &Connection) -> Result<Option<i64>> {
    conn.query_row("SELECT epoch_us(rolled_until) FROM rollup_state", [], |r| {
        r.get(0)
    })
    .map_err(duck_error)
}

/// Rolls every event before `until_us` (a minute boundary) that is not rolled yet, and moves
/// the watermark there, in one transaction, keeping `candidates` hot-key candidates per
/// minute. Nothing happens unless the watermark is at least `at_least_us` (a whole number
/// of minutes, at least one) before `until_us`.
///
/// # Errors
/// DuckDB errors as `Backend`; the transaction is rolled back.
pub(crate) fn roll_until(
    conn: &Connection,
    until_us: i64,
    at_least_us: i64,
    candidates: usize,
) -> Result<()> {
    debug_assert_eq!(floor_minute(until_us), until_us);
    let tx = conn.unchecked_transaction().map_err(duck_error)?;
    let from = rolled_until(&tx)?;
    if from.is_some_and(|w| until_us.saturating_sub(w) < at_least_us) {
        return Ok(());
    }
    run_rollup(
        &tx,
        "access_events",
        Some((from.unwrap_or(MIN_TS_US), until_us)),
        candidates,
    )?;
    tx.execute(
        "UPDATE rollup_state SET rolled_until = $1",
        params![ts(until_us)],
    )
    .map_err(duck_error)?;
    tx.commit().map_err(duck_error)
}

/// Adds late events (timestamps before the watermark, already appended to `access_events`
/// in the caller's transaction) to the rollups, through a temporary table.
///
/// # Errors
/// DuckDB errors as `Backend`.
pub(crate) fn add_late_events(
    conn: &Connection,
    late: &[AccessEvent],
    candidates: usize,
) -> Result<()> {
    if late.is_empty() {
        return Ok(());
    }
    conn.execute_batch(
        "CREATE OR REPLACE TEMP TABLE late_events AS SELECT * FROM access_events LIMIT 0",
    )
    .map_err(duck_error)?;
    append_access_events_to(conn, "late_events", late)?;
    run_rollup(conn, "late_events", None, candidates)?;
    conn.execute_batch("DROP TABLE late_events")
        .map_err(duck_error)
}

/// Which parts of `access_events` and of the rollups a report over `[start, end)` reads,
/// as the positional parameters `$1`..`$4` of its SQL:
/// `$1`, `$2`: the minutes read from the rollups, `minute >= $1 AND minute < $2`;
/// `$3`, `$1`: the events read before them, `ts >= $3 AND ts < $1`;
/// `$2`, `$4`: the events read after them, `ts >= $2 AND ts < $4`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Coverage {
    pub(crate) rolled_start: i64,
    pub(crate) rolled_end: i64,
    pub(crate) start: i64,
    pub(crate) end: i64,
    /// Whether the rolled part ends at the watermark, so that `object_state` and
    /// `tenant_clears` (the state at the watermark) describe it.
    pub(crate) state_at_watermark: bool,
}

impl Coverage {
    /// The split of `[start, end)` for watermark `rolled_until` (`None`: read the events
    /// alone).
    pub(crate) fn new(start: i64, end: i64, rolled_until: Option<i64>) -> Coverage {
        let end = end.max(start);
        let rolled_start = ceil_minute(start);
        let rolled_end = rolled_until.map_or(i64::MIN, |w| floor_minute(end).min(w));
        // Before the first roll the state is empty, which is the state at "no watermark".
        let state_at_watermark = rolled_until.is_none_or(|w| rolled_end == w);
        if rolled_end <= rolled_start {
            // Nothing whole and rolled: all of it from the events.
            return Coverage {
                rolled_start: end,
                rolled_end: end,
                start,
                end,
                state_at_watermark: rolled_until.is_none(),
            };
        }
        Coverage {
            rolled_start,
            rolled_end,
            start,
            end,
            state_at_watermark,
        }
    }

    /// `$1`..`$4` as DuckDB timestamps.
    pub(crate) fn params(&self) -> [Value; 4] {
        [
            ts(self.rolled_start),
            ts(self.rolled_end),
            ts(self.start),
            ts(self.end),
        ]
    }
}

/// The events of the window that the rollups do not cover, as a `UNION ALL` of two range
/// scans of `access_events` (each a plain range, so DuckDB skips row groups by their
/// `ts` min/max): `SELECT {columns} … WHERE {condition}` for each edge.
pub(crate) fn unrolled_events(columns: &str, condition: &str) -> String {
    format!(
        "SELECT {columns} FROM access_events WHERE ts >= $3 AND ts < $1 AND ({condition})
         UNION ALL
         SELECT {columns} FROM access_events WHERE ts >= $2 AND ts < $4 AND ({condition})"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minutes_floor_and_ceil_before_and_after_1970() {
        assert_eq!(floor_minute(0), 0);
        assert_eq!(floor_minute(59_999_999), 0);
        assert_eq!(floor_minute(-1), -MINUTE_US);
        assert_eq!(ceil_minute(1), MINUTE_US);
        assert_eq!(ceil_minute(-1), 0);
        assert_eq!(ceil_minute(MINUTE_US), MINUTE_US);
    }

    #[test]
    fn coverage_reads_whole_rolled_minutes_from_the_rollups() {
        let m = MINUTE_US;
        // [0:30, 5:30) with W = 4:00: rollups [1:00, 4:00), events [0:30, 1:00) and
        // [4:00, 5:30).
        let c = Coverage::new(m / 2, 5 * m + m / 2, Some(4 * m));
        assert_eq!((c.rolled_start, c.rolled_end), (m, 4 * m));
        // W past the end: rollups up to the end's minute.
        let c = Coverage::new(m / 2, 5 * m + m / 2, Some(9 * m));
        assert_eq!((c.rolled_start, c.rolled_end), (m, 5 * m));
        // Nothing rolled, or a window inside one minute: events alone.
        for c in [
            Coverage::new(m / 2, 5 * m, None),
            Coverage::new(m / 4, m / 2, Some(9 * m)),
            Coverage::new(m / 2, 5 * m, Some(m / 2)),
        ] {
            assert_eq!((c.rolled_start, c.rolled_end), (c.end, c.end), "{c:?}");
        }
    }

    #[test]
    fn latency_buckets_are_exact_below_256_and_within_1_in_128_above() {
        let conn = Connection::open_in_memory().unwrap();
        let bucket = latency_bucket_sql("v");
        let mut stmt = conn
            .prepare(&format!("SELECT {bucket} FROM (SELECT ?::UBIGINT AS v)"))
            .unwrap();
        let mut previous = 0u64;
        let mut values: Vec<u64> = (0..5_000).collect();
        values.extend((13..40).flat_map(|p| [(1u64 << p) - 1, 1 << p, (1 << p) + 1]));
        values.extend([123_456_789, u32::MAX as u64, 10_000_000_000]);
        for v in values {
            let b: u64 = stmt.query_row([v], |r| r.get(0)).unwrap();
            if v < 256 {
                assert_eq!(b, v);
            } else {
                assert!(b <= v && (v - b) * 128 < v, "{v} → {b}");
            }
            if v < 5_000 {
                assert!(b >= previous, "buckets are monotone: {v} → {b}");
                previous = b;
            }
        }
    }
}
