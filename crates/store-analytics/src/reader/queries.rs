//! The report queries: each report over the rollups for whole minutes and the raw events
//! for the rest (see the `rollup` module).

use super::*;

/// Where a report over `window` reads from: the rollups for the whole rolled minutes, the
/// events for the rest (see the `rollup` module).
pub(super) fn coverage(c: &Connection, window: TimeWindow, use_rollups: bool) -> Result<Coverage> {
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
pub(super) fn hot_keys(
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

pub(super) fn hot_key_row(r: &duckdb::Row<'_>) -> duckdb::Result<HotKey> {
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
pub(super) fn hot_keys_from_heads(
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
pub(super) fn hot_keys_exhaustive(
    c: &Connection,
    cov: Coverage,
    limit: usize,
) -> Result<Vec<HotKey>> {
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

pub(super) fn latency(c: &Connection, cov: Coverage) -> Result<Vec<LatencyRow>> {
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
pub(super) struct LatencyBucket {
    operation: String,
    backend: String,
    calls: u64,
    /// The slowest latency measured in the bucket.
    slowest_us: u64,
}

/// Nearest-rank percentiles over one group's buckets (in bucket order, at least one): the
/// ⌈n·p/100⌉-th latency lies in the first bucket whose running count reaches it, and the
/// bucket's slowest latency is reported for it.
pub(super) fn percentiles(buckets: &[LatencyBucket]) -> LatencyRow {
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

pub(super) fn ratio(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

/// The calls of the window, per operation, backend, cache tier and outcome, from
/// `access_minutes` and the unrolled events: the source of the counting reports.
pub(super) fn calls_sql() -> String {
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

pub(super) fn event_count(c: &Connection, cov: Coverage) -> Result<u64> {
    let sql = format!(
        "SELECT coalesce(sum(calls), 0)::BIGINT FROM ({})",
        calls_sql()
    );
    let n: i64 = c
        .query_row(&sql, cov.params(), |r| r.get(0))
        .map_err(duck_error)?;
    Ok(u64_of(n))
}

pub(super) fn cache_rates(c: &Connection, cov: Coverage) -> Result<CacheHitRates> {
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
pub(super) fn tenant_usage(
    c: &Connection,
    cov: Coverage,
    use_state: bool,
) -> Result<Vec<TenantUsage>> {
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
pub(super) fn unrolled_writes() -> String {
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
pub(super) fn tenant_usage_from_state_sql() -> String {
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

pub(super) fn tenant_usage_from_minutes_sql() -> String {
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

pub(super) fn growth(c: &Connection, cov: Coverage, bucket_us: i64) -> Result<Vec<GrowthRow>> {
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

pub(super) fn error_rates(c: &Connection, cov: Coverage) -> Result<Vec<ErrorRateRow>> {
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
