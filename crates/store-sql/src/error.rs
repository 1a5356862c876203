//! Mapping sqlx errors onto [`hybridstore_core::Error`] kinds.

use hybridstore_core::{Error, ErrorKind, SecretUrl};

/// SQLite primary result codes (<https://www.sqlite.org/rescode.html>), low byte of the
/// extended code sqlx reports.
mod sqlite_code {
    pub(super) const BUSY: i64 = 5;
    pub(super) const LOCKED: i64 = 6;
    pub(super) const READONLY: i64 = 8;
    pub(super) const IOERR: i64 = 10;
    pub(super) const CORRUPT: i64 = 11;
    pub(super) const FULL: i64 = 13;
    pub(super) const CANTOPEN: i64 = 14;
    pub(super) const TOOBIG: i64 = 18;
    pub(super) const CONSTRAINT: i64 = 19;
    pub(super) const NOTADB: i64 = 26;
}

/// Maps a sqlx error to the core error kinds:
///
/// - pool timeout: `Timeout` (retryable); I/O, TLS, closed pool, crashed worker,
///   SQLite `BUSY`/`LOCKED`, PostgreSQL class 08 (connection), 57P (shutdown), 53300 (too many
///   connections): `Unavailable` (retryable);
/// - PostgreSQL 40001/40P01 (serialization failure, deadlock): `Conflict` (retryable);
/// - SQLite `FULL`, PostgreSQL 53100 (disk full): `QuotaExceeded`;
/// - SQLite `CORRUPT`/`NOTADB`, undecodable columns: `Corrupted`;
/// - SQLite `TOOBIG`, constraint violations, PostgreSQL class 22 (data exception):
///   `InvalidInput`;
/// - anything else: `Backend`.
pub(crate) fn map_sqlx(error: sqlx::Error) -> Error {
    let (kind, retryable) = classify(&error);
    let message = match &error {
        sqlx::Error::Migrate(_) => format!("schema migration failed: {error}"),
        _ => error.to_string(),
    };
    let mut mapped = Error::new(kind, message).with_source(error);
    if let Some(retryable) = retryable {
        mapped = mapped.with_retryable(retryable);
    }
    mapped
}

fn classify(error: &sqlx::Error) -> (ErrorKind, Option<bool>) {
    match error {
        sqlx::Error::PoolTimedOut => (ErrorKind::Timeout, Some(true)),
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => (ErrorKind::Unavailable, Some(true)),
        sqlx::Error::Configuration(_) | sqlx::Error::InvalidArgument(_) => {
            (ErrorKind::InvalidInput, None)
        }
        sqlx::Error::RowNotFound => (ErrorKind::NotFound, None),
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => (ErrorKind::Corrupted, None),
        sqlx::Error::Encode(_) => (ErrorKind::InvalidInput, None),
        sqlx::Error::Migrate(migrate) => match migrate.as_ref() {
            // The database's schema history does not match this build's migrations.
            sqlx::migrate::MigrateError::VersionMissing(_)
            | sqlx::migrate::MigrateError::VersionMismatch(_)
            | sqlx::migrate::MigrateError::Dirty(_) => (ErrorKind::Corrupted, None),
            sqlx::migrate::MigrateError::Execute(inner)
            | sqlx::migrate::MigrateError::ExecuteMigration(inner, _) => classify(inner),
            _ => (ErrorKind::Backend, None),
        },
        sqlx::Error::Database(db) => classify_database(db.as_ref()),
        _ => (ErrorKind::Backend, None),
    }
}

/// The kind of a SQLite (extended) result code; shared by the sqlx and rusqlite paths.
pub(crate) fn classify_sqlite(extended_code: i64) -> (ErrorKind, Option<bool>) {
    match extended_code & 0xff {
        sqlite_code::BUSY | sqlite_code::LOCKED => (ErrorKind::Unavailable, Some(true)),
        sqlite_code::FULL => (ErrorKind::QuotaExceeded, None),
        sqlite_code::CORRUPT | sqlite_code::NOTADB => (ErrorKind::Corrupted, None),
        sqlite_code::TOOBIG | sqlite_code::CONSTRAINT => (ErrorKind::InvalidInput, None),
        sqlite_code::READONLY | sqlite_code::IOERR | sqlite_code::CANTOPEN => {
            (ErrorKind::Unavailable, Some(false))
        }
        _ => (ErrorKind::Backend, None),
    }
}

fn classify_database(db: &dyn sqlx::error::DatabaseError) -> (ErrorKind, Option<bool>) {
    let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
    if let Ok(extended) = code.parse::<i64>() {
        // SQLite reports numeric (extended) result codes.
        return classify_sqlite(extended);
    }
    // PostgreSQL SQLSTATE codes (https://www.postgresql.org/docs/current/errcodes-appendix.html).
    match code.as_str() {
        "40001" | "40P01" => (ErrorKind::Conflict, Some(true)),
        "53100" => (ErrorKind::QuotaExceeded, None),
        "53300" => (ErrorKind::Unavailable, Some(true)),
        c if c.starts_with("08") || c.starts_with("57P") => (ErrorKind::Unavailable, Some(true)),
        c if c.starts_with("22") || c.starts_with("23") => (ErrorKind::InvalidInput, None),
        "XX001" | "XX002" => (ErrorKind::Corrupted, None),
        _ => (ErrorKind::Backend, None),
    }
}

/// An error while opening the store at `url` (connecting or migrating), with the password
/// removed from the URL.
pub(crate) fn open_error(url: &str, error: impl Into<sqlx::Error>) -> Error {
    map_sqlx(error.into())
        .with_operation("open")
        .with_context("url", redact_url(url))
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db` (core's `SecretUrl`
/// redaction, which all crates share).
pub(crate) fn redact_url(raw: &str) -> String {
    SecretUrl::new(raw).redacted()
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_never_reach_error_messages() {
        assert_eq!(
            redact_url("postgres://u:s3cret@db:5432/x?sslmode=disable"),
            "postgres://u:***@db:5432/x?sslmode=disable"
        );
        assert_eq!(redact_url("postgres://u@db/x"), "postgres://u@db/x");
        assert_eq!(redact_url("sqlite://data/k.db"), "sqlite://data/k.db");
        assert_eq!(redact_url("sqlite::memory:"), "sqlite::memory:");
    }
}
