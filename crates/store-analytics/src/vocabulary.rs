//! The analytics vocabulary the writer, the rollups and the reports share: the time range
//! of a window's open ends, the rollups' granularity, and which operations count as reads,
//! puts, deletes and writes, as SQL lists, with the one SQL definition of tenant usage.

/// 0001-01-01 and 9999-12-31, in microseconds: the open ends of a window, inside DuckDB's
/// TIMESTAMP range.
pub(crate) const MIN_TS_US: i64 = -62_135_596_800_000_000;
/// See [`MIN_TS_US`].
pub(crate) const MAX_TS_US: i64 = 253_402_300_799_999_999;

/// One minute in microseconds: the rollups' granularity.
pub(crate) const MINUTE_US: i64 = 60_000_000;

/// Reads, as an SQL list of `operation` values.
pub(crate) const READS: &str = "('get', 'get_range', 'get_many')";
/// Puts, as an SQL list of `operation` values.
pub(crate) const PUTS: &str = "('put', 'batch_put')";
/// Deletes, as an SQL list of `operation` values.
pub(crate) const DELETES: &str = "('delete', 'batch_delete')";
/// Puts, deletes and clears: what tenant usage follows.
pub(crate) const WRITES: &str = "('put', 'batch_put', 'delete', 'batch_delete', 'clear')";

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
