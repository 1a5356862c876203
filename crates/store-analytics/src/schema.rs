//! The analytics tables, created by numbered migrations recorded in `schema_migrations`.
//!
//! A migration is applied once, in order, inside a transaction with its record; a database
//! whose newest recorded migration is unknown to this build (written by a newer release) is
//! refused rather than written with an older idea of the schema.

use duckdb::Connection;
use hybridstore_core::{Error, ErrorKind, Result};

use crate::db::duck_error;

/// Tables the analytics database holds, in creation order (the names `export` accepts).
pub const TABLES: &[&str] = &[
    "access_events",
    "query_metrics",
    "embedding_metrics",
    "reranking_metrics",
    "system_metrics",
    "access_minutes",
    "latency_minutes",
    "key_read_minutes",
    "key_read_heads",
    "key_write_minutes",
    "object_state",
    "tenant_clears",
    "tenant_usage_state",
];

/// Deletes of one tenant's rows (`?` = the tenant) from every table other than
/// `access_events` whose rows name a tenant: what
/// [`AnalyticsStore::delete_tenant`](crate::AnalyticsStore::delete_tenant) runs.
pub(crate) const TENANT_DELETES: &[&str] = &[
    "DELETE FROM key_read_minutes WHERE tenant = ?",
    "DELETE FROM key_read_heads WHERE tenant = ?",
    "DELETE FROM key_write_minutes WHERE tenant = ?",
    "DELETE FROM object_state WHERE tenant = ?",
    "DELETE FROM tenant_clears WHERE tenant = ?",
    "DELETE FROM tenant_usage_state WHERE tenant = ?",
];

/// `(version, name, SQL)`, oldest first. Never edit one that has shipped: add another.
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "access_events",
        "CREATE TABLE access_events (
            ts TIMESTAMP NOT NULL,
            operation VARCHAR NOT NULL,
            backend VARCHAR NOT NULL,
            tenant VARCHAR,
            key_hash UBIGINT NOT NULL,
            key VARCHAR,
            bytes UBIGINT NOT NULL,
            latency_us UBIGINT NOT NULL,
            cache_tier VARCHAR,
            outcome VARCHAR NOT NULL
        );",
    ),
    (
        2,
        "seed 002 metric tables",
        "CREATE TABLE query_metrics (
            timestamp TIMESTAMP NOT NULL,
            query_type VARCHAR NOT NULL,
            latency_ms DOUBLE NOT NULL,
            result_count BIGINT NOT NULL,
            retrieval_strategy VARCHAR NOT NULL,
            success BOOLEAN NOT NULL
        );
        CREATE TABLE embedding_metrics (
            timestamp TIMESTAMP NOT NULL,
            model_name VARCHAR NOT NULL,
            embedding_time_ms DOUBLE NOT NULL,
            text_length BIGINT NOT NULL,
            dimension BIGINT NOT NULL
        );
        CREATE TABLE reranking_metrics (
            timestamp TIMESTAMP NOT NULL,
            query_type VARCHAR NOT NULL,
            document_count BIGINT NOT NULL,
            rerank_time_ms DOUBLE NOT NULL,
            quality_score DOUBLE NOT NULL
        );
        CREATE TABLE system_metrics (
            timestamp TIMESTAMP NOT NULL,
            metric_name VARCHAR NOT NULL,
            metric_value DOUBLE NOT NULL,
            metric_unit VARCHAR NOT NULL
        );",
    ),
    (
        3,
        "per-minute rollups of access_events",
        // See the `rollup` module. `rolled_until` NULL: nothing rolled yet, so the first roll
        // of an older database takes every event it already holds.
        "CREATE TABLE rollup_state (rolled_until TIMESTAMP);
        INSERT INTO rollup_state VALUES (NULL);
        CREATE TABLE access_minutes (
            minute TIMESTAMP NOT NULL,
            operation VARCHAR NOT NULL,
            backend VARCHAR NOT NULL,
            cache_tier VARCHAR,
            outcome VARCHAR NOT NULL,
            calls UBIGINT NOT NULL,
            bytes UBIGINT NOT NULL
        );
        CREATE TABLE latency_minutes (
            minute TIMESTAMP NOT NULL,
            operation VARCHAR NOT NULL,
            backend VARCHAR NOT NULL,
            bucket_us UBIGINT NOT NULL,
            calls UBIGINT NOT NULL,
            max_latency_us UBIGINT NOT NULL
        );
        CREATE SEQUENCE rollup_list START 1;
        CREATE TABLE key_read_minutes (
            minute TIMESTAMP NOT NULL,
            list UBIGINT NOT NULL,
            tenant VARCHAR,
            key_hash UBIGINT NOT NULL,
            key VARCHAR,
            reads UBIGINT NOT NULL,
            bytes UBIGINT NOT NULL
        );
        CREATE TABLE key_read_heads (
            minute TIMESTAMP NOT NULL,
            list UBIGINT NOT NULL,
            tenant VARCHAR,
            key_hash UBIGINT NOT NULL,
            key VARCHAR,
            reads UBIGINT NOT NULL,
            candidate BOOLEAN NOT NULL
        );
        CREATE TABLE key_write_minutes (
            minute TIMESTAMP NOT NULL,
            list UBIGINT NOT NULL,
            tenant VARCHAR,
            key_hash UBIGINT NOT NULL,
            operation VARCHAR NOT NULL,
            bytes UBIGINT NOT NULL,
            last_ts TIMESTAMP NOT NULL
        );
        CREATE TABLE object_state (
            tenant VARCHAR,
            key_hash UBIGINT NOT NULL,
            operation VARCHAR NOT NULL,
            bytes UBIGINT NOT NULL,
            last_ts TIMESTAMP NOT NULL
        );
        CREATE TABLE tenant_clears (
            tenant VARCHAR,
            cleared TIMESTAMP NOT NULL
        );
        CREATE TABLE tenant_usage_state (
            tenant VARCHAR,
            objects UBIGINT NOT NULL,
            bytes UBIGINT NOT NULL
        );",
    ),
];

/// The newest schema version this build knows.
pub const SCHEMA_VERSION: i32 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// Applies every migration `conn`'s database has not seen yet.
///
/// # Errors
/// `Unsupported` if the database was written by a newer schema; DuckDB errors as `Backend`.
pub(crate) fn migrate(conn: &mut Connection) -> Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version INTEGER PRIMARY KEY,
            name VARCHAR NOT NULL,
            applied_at TIMESTAMP NOT NULL DEFAULT current_timestamp
        );",
    )
    .map_err(duck_error)?;
    let applied: i32 = conn
        .query_row(
            "SELECT coalesce(max(version), 0) FROM schema_migrations",
            [],
            |r| r.get(0),
        )
        .map_err(duck_error)?;
    if applied > SCHEMA_VERSION {
        return Err(Error::new(
            ErrorKind::Unsupported,
            format!(
                "the analytics database has schema version {applied}; this build knows up to \
                 {SCHEMA_VERSION}: open it with a newer hybridstore"
            ),
        ));
    }
    for (version, name, sql) in MIGRATIONS.iter().filter(|m| m.0 > applied) {
        let tx = conn.transaction().map_err(duck_error)?;
        tx.execute_batch(sql).map_err(duck_error)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name) VALUES (?, ?)",
            duckdb::params![version, name],
        )
        .map_err(duck_error)?;
        tx.commit().map_err(duck_error)?;
        tracing::debug!(version, name, "analytics migration applied");
    }
    Ok(())
}
