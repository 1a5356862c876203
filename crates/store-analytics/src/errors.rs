//! DuckDB errors as hybridstore errors, classified in one place (rule 2 of
//! `hybridstore_core::Error`'s module).
//!
//! duckdb-rs (1.10506) reports every failure of an open, a prepare or a query as
//! `duckdb::Error::DuckDBFailure` with `ErrorCode::Unknown`: DuckDB's C API returns a bare
//! `DuckDBError` state for those, and the typed part of the error is the exception type that
//! opens its message, `"<type> Error: <message>"`, the names of DuckDB's `ExceptionType`
//! (`Exception::ExceptionTypeToString` in DuckDB's `src/common/exception.cpp`,
//! <https://github.com/duckdb/duckdb/blob/main/src/common/exception.cpp>). So the
//! classification reads, in this order: duckdb-rs's own typed variants
//! (`MultipleStatement`, parameter errors), then the exception type, and only within one
//! type the words DuckDB uses for the case there is no type for: a file lock held by
//! another process (an `IO` error, "Could not set lock"), a statement refused on a
//! read-only connection (an `Invalid Input` error, "read-only mode"). The tests below pin
//! each of those against the linked DuckDB.

use hybridstore_core::{Error, ErrorKind};

/// The exception type that opens a DuckDB message (`"Catalog"` for `"Catalog Error: …"`).
fn exception_type(message: &str) -> Option<&str> {
    message
        .split_once(" Error: ")
        .map(|(kind, _)| kind)
        .filter(|kind| kind.len() <= 32)
}

/// Whether a message is DuckDB's report of a database file locked by another process
/// (`"IO Error: Could not set lock on file …: Conflicting lock is held in …"`).
fn is_lock_conflict(message: &str) -> bool {
    exception_type(message) == Some("IO")
        && (message.contains("Could not set lock") || message.contains("Conflicting lock"))
}

/// A DuckDB error of the store's own statements as a hybridstore error: a lock held by
/// another process is `Unavailable` (retryable), a write-write conflict between
/// transactions (`TransactionContext`) a retryable `Conflict`, an interrupted query
/// `Unavailable`; anything else, a failure of the engine or of the store's own SQL, is
/// `Backend`.
pub(crate) fn duck_error(e: duckdb::Error) -> Error {
    let text = e.to_string();
    if is_lock_conflict(&text) {
        return Error::new(
            ErrorKind::Unavailable,
            format!(
                "the analytics database is held by another process (DuckDB allows one \
                 read-write process per file): {text}"
            ),
        )
        .with_retryable(true);
    }
    let kind = match exception_type(&text) {
        Some("TransactionContext") => ErrorKind::Conflict,
        Some("INTERRUPT") => ErrorKind::Unavailable,
        _ => ErrorKind::Backend,
    };
    Error::new(kind, text)
        .with_retryable(kind != ErrorKind::Backend)
        .with_source(e)
}

/// A DuckDB error of a caller's ad-hoc statement: what the statement got wrong (syntax,
/// names, types, values, a write or a file access on the read-only, locked-down
/// connection, several statements) is `InvalidInput` with the reason; failures of the
/// engine (`IO`, `Out of Memory`, `INTERNAL`, `FATAL`) keep their classification by
/// [`duck_error`].
pub(crate) fn refused(e: duckdb::Error) -> Error {
    if matches!(e, duckdb::Error::MultipleStatement) {
        return Error::invalid_input("analytics SQL takes one statement per call");
    }
    let parameters = matches!(
        e,
        duckdb::Error::InvalidParameterCount(..)
            | duckdb::Error::InvalidParameterName(_)
            | duckdb::Error::InvalidParameterIndex(_)
    );
    let text = e.to_string();
    let engine = matches!(
        exception_type(&text),
        Some("IO" | "Out of Memory" | "INTERNAL" | "FATAL" | "INTERRUPT" | "Connection")
    ) || is_lock_conflict(&text);
    if engine {
        return duck_error(e);
    }
    let reason = match exception_type(&text) {
        _ if parameters => "analytics SQL takes no parameters",
        Some("Permission") => {
            "analytics SQL cannot read or write files: external access is disabled"
        }
        Some("Invalid Input") if text.contains("read-only mode") => {
            "analytics SQL is read-only: statements that write are refused"
        }
        Some("Parser" | "Syntax") => "the analytics SQL statement does not parse",
        Some("Catalog" | "Binder") => {
            "the analytics SQL statement names something that does not exist"
        }
        _ => "the analytics SQL statement failed",
    };
    Error::new(ErrorKind::InvalidInput, format!("{reason}: {text}")).with_source(e)
}

#[cfg(test)]
mod tests {
    use duckdb::{AccessMode, Config, Connection};

    use super::*;

    /// A read-only, locked-down connection like the reports' (see `db`), on a fresh file.
    fn read_only() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.duckdb");
        Connection::open(&path)
            .unwrap()
            .execute_batch("CREATE TABLE t (x INTEGER)")
            .unwrap();
        let config = Config::default()
            .access_mode(AccessMode::ReadOnly)
            .unwrap()
            .enable_external_access(false)
            .unwrap();
        let conn = Connection::open_with_flags(&path, config).unwrap();
        (dir, conn)
    }

    fn refusal(conn: &Connection, sql: &str) -> Error {
        match conn
            .prepare(sql)
            .and_then(|mut s| s.query_arrow([]).map(|_| ()))
        {
            Ok(()) => panic!("{sql:?} was accepted"),
            Err(e) => refused(e),
        }
    }

    #[test]
    fn statements_a_caller_got_wrong_are_invalid_input_with_the_reason() {
        let (_dir, conn) = read_only();
        for (sql, reason) in [
            ("INSERT INTO t VALUES (1)", "read-only"),
            (
                "SELECT * FROM read_csv('/etc/passwd')",
                "external access is disabled",
            ),
            ("SELEC 1", "does not parse"),
            ("SELECT * FROM no_such_table", "does not exist"),
            ("SELECT no_such_column FROM t", "does not exist"),
        ] {
            let e = refusal(&conn, sql);
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{sql}: {e}");
            assert!(e.message().contains(reason), "{sql}: {e}");
            assert!(!e.is_retryable(), "{sql}");
        }
    }

    #[test]
    fn exception_types_are_read_from_the_head_of_the_message_only() {
        assert_eq!(
            exception_type("Catalog Error: Table x does not exist"),
            Some("Catalog")
        );
        assert_eq!(
            exception_type("IO Error: Could not set lock on file"),
            Some("IO")
        );
        assert_eq!(exception_type("no type here"), None);
        // A message that merely mentions a lock is no lock conflict.
        assert!(!is_lock_conflict(
            "Binder Error: column \"Could not set lock\" not found"
        ));
        assert!(is_lock_conflict(
            "IO Error: Could not set lock on file \"x\": Conflicting lock is held in /bin/x"
        ));
    }

    #[test]
    fn a_database_locked_by_a_writer_is_retryable_unavailable() {
        // DuckDB's lock is per process (fcntl); a second process is needed to be refused.
        // Within one process the same message reaches `duck_error` from `db`'s open path;
        // its text is pinned here against the message format above.
        let e = duck_error(duckdb::Error::DuckDBFailure(
            duckdb::ffi::Error::new(1),
            Some(
                "IO Error: Could not set lock on file \"/x.duckdb\": Conflicting lock is \
                 held in /usr/bin/hybridstore (PID 1)"
                    .into(),
            ),
        ));
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert!(e.is_retryable());
    }

    #[test]
    fn engine_failures_keep_the_backend_kind() {
        let e = refused(duckdb::Error::DuckDBFailure(
            duckdb::ffi::Error::new(1),
            Some("IO Error: No space left on device".into()),
        ));
        assert_eq!(e.kind(), ErrorKind::Backend);
        let e = duck_error(duckdb::Error::DuckDBFailure(
            duckdb::ffi::Error::new(1),
            Some("TransactionContext Error: Catalog write-write conflict on alter".into()),
        ));
        assert_eq!(e.kind(), ErrorKind::Conflict);
        assert!(e.is_retryable());
    }
}
