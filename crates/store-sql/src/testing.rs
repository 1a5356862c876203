//! Test helpers (feature `testing`): a PostgreSQL database of its own for each test.
//!
//! Tests use the machine's PostgreSQL at [`POSTGRES_URL_VAR`] (default
//! `postgres://postgres@127.0.0.1:5432/postgres`, trust auth), create a database with a random
//! name, and drop it (`WITH (FORCE)`) when the guard is dropped, so runs never share state.
//! When the server is unreachable the test is skipped with a loud message, unless `CI=true`,
//! where it fails.
#![allow(clippy::expect_used, clippy::print_stderr)]

use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;
use sqlx::{AssertSqlSafe, ConnectOptions, Connection};

/// Environment variable naming the administrative PostgreSQL URL tests connect to.
pub const POSTGRES_URL_VAR: &str = "HYBRIDSTORE_TEST_POSTGRES_URL";
/// Its default: the machine's PostgreSQL with trust auth.
pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

pub use hybridstore_core::conformance::services_required;

/// A database created for one test, dropped when this guard is dropped.
#[derive(Debug)]
pub struct PostgresTestDatabase {
    admin: PgConnectOptions,
    name: String,
    url: String,
}

impl PostgresTestDatabase {
    /// Creates a fresh database. Returns `None` (after printing why) when PostgreSQL is
    /// unreachable outside CI.
    ///
    /// # Panics
    /// When PostgreSQL is unreachable and `CI=true`, or the server refuses `CREATE DATABASE`.
    pub async fn create() -> Option<PostgresTestDatabase> {
        let admin_url =
            std::env::var(POSTGRES_URL_VAR).unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_string());
        let admin = PgConnectOptions::from_str(&admin_url).expect("admin PostgreSQL URL");
        let mut conn = match admin.connect().await {
            Ok(conn) => conn,
            Err(e) if !services_required() => {
                eprintln!(
                    "SKIPPED: PostgreSQL unreachable at {admin_url} ({e}); set {POSTGRES_URL_VAR} \
                     or run with CI=true to make this a failure"
                );
                return None;
            }
            Err(e) => panic!("PostgreSQL unreachable at {admin_url} with CI=true: {e}"),
        };
        let name = format!("hybridstore_test_{:016x}", rand::random::<u64>());
        // The name is generated above from hex digits only: safe to splice as an identifier.
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("CREATE DATABASE");
        let _ = conn.close().await;
        let url = admin.clone().database(&name).to_url_lossy().to_string();
        Some(PostgresTestDatabase { admin, name, url })
    }

    /// URL of the test database.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for PostgresTestDatabase {
    fn drop(&mut self) {
        let admin = self.admin.clone();
        let name = self.name.clone();
        // Drop is synchronous and may run inside a runtime: use a thread with its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let mut conn = admin.connect().await?;
                sqlx::query(AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut conn)
                .await?;
                conn.close().await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("warning: could not drop test database {}", self.name);
        }
    }
}
