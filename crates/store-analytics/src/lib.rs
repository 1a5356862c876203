//! DuckDB access analytics for hybridstore: what is hot, what is slow, who uses the space.
//!
//! - [`AnalyticsStore`] owns an analytics database file (`access_events` and the metric tables
//!   `query_metrics`, `embedding_metrics`, `reranking_metrics`, `system_metrics`, created by
//!   numbered migrations) and an [`EventSink`]: callers offer [`AccessEvent`]s and
//!   [`MetricRecord`]s to a bounded channel and return at once; a dedicated thread appends
//!   them to DuckDB in batches (Arrow record batches through DuckDB's Appender). When the
//!   channel is full, records are dropped and counted, never waited for. [`AnalyticsStore::close`]
//!   (or drop) drains the channel and writes everything accepted.
//! - [`AnalyticsReader`] answers typed reports (hot keys, latency percentiles, cache hit
//!   rates, tenant usage, growth, error rates), read-only ad-hoc SQL returning Arrow
//!   `RecordBatch`es, and Parquet export.
//!
//! # One writer per file, and other processes
//! DuckDB lets one process open a file read-write, or several read-only, never both. This
//! crate holds the file only while it works: the writer for one batch (by default at most
//! once a second or per 122,880 events), a reader for one query. A second process (the
//! `hybridstore analytics` CLI beside a running application) therefore opens the file
//! between batches and sees every event written up to the last batch; whichever side finds
//! the file locked retries with backoff for up to [`AnalyticsOptions::lock_timeout`] and
//! then fails with `Unavailable` naming the conflict. While a reader holds the file, the
//! writer waits (a write that times out is retried with its batch kept, up to four batches)
//! and its channel fills, so events are dropped (and counted), not the caller slowed. An
//! export streams the query's batches into the Parquet file, one batch in memory at a time.
//!
//! Every DuckDB call blocks; from async code call the reader through
//! `tokio::task::spawn_blocking`. Offering events never blocks.
//!
//! ```
//! use hybridstore_analytics::{AccessEvent, AnalyticsOptions, AnalyticsStore, Operation, TimeWindow};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let store = AnalyticsStore::open(&dir.path().join("analytics.duckdb"), AnalyticsOptions::default())?;
//! let mut event = AccessEvent::new(Operation::Get, "file".into(), Some("docs/a"));
//! event.bytes = 512;
//! event.latency_us = 40;
//! assert!(store.sink().record(event));
//! store.flush()?;
//! let hot = store.reader().hot_keys(TimeWindow::all(), 10)?;
//! assert_eq!(hot[0].key.as_deref(), Some("docs/a"));
//! assert_eq!(hot[0].reads, 1);
//! # Ok::<(), hybridstore_core::Error>(())
//! ```
//!
//! # Cargo features
//!
//! - `testing`: `AnalyticsReader::hold_file`, which stalls the writer deterministically in
//!   tests.

mod appenders;
mod db;
mod errors;
mod event;
mod reader;
mod rollup;
mod schema;
mod sink;
mod vocabulary;

use std::path::Path;
use std::time::Duration;

use hybridstore_core::{Error, ErrorKind, Result};

pub use appenders::access_events_batch;
pub use event::{
    AccessEvent, CacheTier, MAX_EVENT_KEY_BYTES, MetricRecord, Operation, Outcome, key_hash,
    now_micros,
};
pub use reader::{
    AnalyticsReader, CacheHitRates, ErrorRateRow, ExportReport, ExportSource, GrowthRow, HotKey,
    LatencyRow, Report, TenantUsage, TimeWindow,
};
pub use rollup::LATENCY_BUCKET_PRECISION_BITS;
pub use schema::{SCHEMA_VERSION, TABLES};
pub use sink::{EventSink, SinkStats};

/// Arrow, as DuckDB's results use it (arrow 58, the version lancedb shares), with its
/// pretty-printer.
pub use duckdb::arrow;

use db::{Access, DuckFile};
use sink::{Writer, WriterSettings};

/// Settings of an [`AnalyticsStore`].
#[derive(Clone, Debug)]
pub struct AnalyticsOptions {
    /// Records the channel holds before new ones are dropped. Default 65,536 (about 10 MB of
    /// access events).
    pub channel_capacity: usize,
    /// Records per write batch at most. Default 122,880: one DuckDB row group
    /// (`DEFAULT_ROW_GROUP_SIZE` in DuckDB's storage), so each batch fills whole row groups.
    pub batch_rows: usize,
    /// Longest time an accepted record waits before it is written. Default 1 s.
    pub flush_interval: Duration,
    /// How long to wait for another process's lock on the file before `Unavailable`.
    /// Default 10 s. The writer does not drop a batch it could not write for that reason: it
    /// keeps up to four batches for its next attempt (counted in
    /// [`SinkStats::write_retries`]); only past that, or at shutdown, are they counted lost.
    pub lock_timeout: Duration,
    /// DuckDB worker threads per connection; `None` is DuckDB's default (one per core).
    pub threads: Option<i64>,
    /// Hot-key candidates kept per rolled-up minute (the most read keys, see the
    /// `hot_keys` report): with more, the exact top-N is found from them alone more often;
    /// when they do not decide it, the report adds up every key (slower, same answer).
    /// Default 1,000; at least 1.
    pub hot_key_candidates: usize,
}

impl Default for AnalyticsOptions {
    fn default() -> Self {
        AnalyticsOptions {
            channel_capacity: 65_536,
            batch_rows: 122_880,
            flush_interval: Duration::from_secs(1),
            lock_timeout: Duration::from_secs(10),
            threads: None,
            hot_key_candidates: 1_000,
        }
    }
}

impl AnalyticsOptions {
    fn validate(&self) -> Result<()> {
        if self.channel_capacity == 0 || self.batch_rows == 0 || self.hot_key_candidates == 0 {
            return Err(Error::invalid_input(
                "analytics channel_capacity, batch_rows and hot_key_candidates must be at least 1",
            ));
        }
        if self.flush_interval.is_zero() {
            return Err(Error::invalid_input(
                "analytics flush_interval must be above 0",
            ));
        }
        if matches!(self.threads, Some(n) if n < 1) {
            return Err(Error::invalid_input("analytics threads must be at least 1"));
        }
        Ok(())
    }
}

/// The analytics database of one process: the event sink and its writer thread, and a
/// reader over the same file.
#[derive(Debug)]
pub struct AnalyticsStore {
    reader: AnalyticsReader,
    writer: Writer,
    file: DuckFile,
    path: std::path::PathBuf,
}

impl AnalyticsStore {
    /// Opens (creating if needed, and migrating to [`SCHEMA_VERSION`]) the database at
    /// `path` and starts the writer thread.
    ///
    /// # Errors
    /// `InvalidInput` for invalid options; `Unavailable` if another process holds the file
    /// past the lock timeout; `Unsupported` for a database of a newer schema; `Backend` for
    /// DuckDB and file errors.
    pub fn open(path: &Path, options: AnalyticsOptions) -> Result<AnalyticsStore> {
        options.validate()?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                Error::new(
                    ErrorKind::Unavailable,
                    format!("cannot create the analytics directory: {e}"),
                )
                .with_context("path", dir.display())
            })?;
        }
        let file = DuckFile::new(path, options.lock_timeout, options.threads);
        file.with_connection(Access::ReadWrite, schema::migrate)?;
        let writer = Writer::start(
            file.clone(),
            WriterSettings {
                channel_capacity: options.channel_capacity,
                batch_rows: options.batch_rows,
                flush_interval: options.flush_interval,
                hot_key_candidates: options.hot_key_candidates,
            },
        )?;
        Ok(AnalyticsStore {
            reader: AnalyticsReader::new(file.clone(), options.hot_key_candidates),
            writer,
            file,
            path: path.to_path_buf(),
        })
    }

    /// Opens an existing database for reading only (no writer thread, no migration): what a
    /// second process uses while the owner keeps writing.
    ///
    /// # Errors
    /// `NotFound` if there is no database at `path`; `InvalidInput` for invalid options.
    pub fn open_reader(path: &Path, options: &AnalyticsOptions) -> Result<AnalyticsReader> {
        options.validate()?;
        if !path.is_file() {
            return Err(Error::not_found(format!(
                "no analytics database at {} (it is created when a store with analytics on \
                 first opens)",
                path.display()
            )));
        }
        Ok(AnalyticsReader::new(
            DuckFile::new(path, options.lock_timeout, options.threads),
            options.hot_key_candidates,
        ))
    }

    /// The sink callers offer events to; clones share the channel.
    pub fn sink(&self) -> &EventSink {
        self.writer.sink()
    }

    /// Reports, ad-hoc SQL and export over this store's file.
    pub fn reader(&self) -> &AnalyticsReader {
        &self.reader
    }

    /// Blocks until every record offered before the call is written.
    ///
    /// # Errors
    /// `Unavailable` after [`close`](Self::close); the batch's write error.
    pub fn flush(&self) -> Result<()> {
        self.writer.flush()
    }

    /// Blocks until every record offered before the call is written and every minute
    /// written so far is rolled up into the per-minute tables the reports read: what a bulk
    /// load does before it reports, since rolling up otherwise waits for the writer to be
    /// idle. A rollup that fails is logged and left to the next one; reports read the
    /// events it did not roll.
    ///
    /// # Errors
    /// As [`flush`](Self::flush).
    pub fn roll_up(&self) -> Result<()> {
        self.writer.roll_up()
    }

    /// Writes a consistent copy of the database to `dest` (a new file) and returns its length
    /// in bytes: every record offered before the call is written first, then, on a write
    /// connection (which keeps this process's writer out), the database is checkpointed so
    /// the file alone holds every table, and the file is copied. Blocks for the copy; a
    /// backup takes the analytics tables this way.
    ///
    /// # Errors
    /// As [`flush`](Self::flush); `Unavailable` if another process holds the file past the
    /// lock timeout; `Backend` for file errors (a file already at `dest` is one).
    pub fn copy_to(&self, dest: &Path) -> Result<u64> {
        self.flush()?;
        let io = |e: std::io::Error| {
            Error::new(
                ErrorKind::Backend,
                format!("copying the analytics database: {e}"),
            )
            .with_context("path", dest.display())
        };
        // Under the connection (and this process's mutex for the file, which keeps the
        // writer thread out): checkpoint, so the file alone holds every table, then copy.
        self.file.with_connection(Access::ReadWrite, |conn| {
            conn.execute_batch("CHECKPOINT")
                .map_err(errors::duck_error)?;
            let mut from = std::fs::File::open(&self.path).map_err(io)?;
            let mut to = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(dest)
                .map_err(io)?;
            let n = std::io::copy(&mut from, &mut to).map_err(io)?;
            to.sync_all().map_err(io)?;
            Ok(n)
        })
    }

    /// Deletes everything recorded of `tenant` (events, per-key rollups, usage state) and
    /// returns how many access events went: every record offered before the call is
    /// written first, then the rows go in one transaction on a write connection (which keeps
    /// this process's writer out). The per-minute totals over all tenants
    /// (`access_minutes`, `latency_minutes`) name no tenant and stay. Blocks.
    ///
    /// # Errors
    /// As [`flush`](Self::flush); `Unavailable` if another process holds the file past the
    /// lock timeout; `Backend` for DuckDB errors (then nothing was deleted).
    pub fn delete_tenant(&self, tenant: &str) -> Result<u64> {
        self.flush()?;
        self.file.with_connection(Access::ReadWrite, |conn| {
            let tx = conn.transaction().map_err(errors::duck_error)?;
            let events = tx
                .execute("DELETE FROM access_events WHERE tenant = ?", [tenant])
                .map_err(errors::duck_error)?;
            for delete in schema::TENANT_DELETES {
                tx.execute(delete, [tenant]).map_err(errors::duck_error)?;
            }
            tx.commit().map_err(errors::duck_error)?;
            Ok(events as u64)
        })
    }

    /// Counters of the sink.
    pub fn stats(&self) -> SinkStats {
        self.writer.sink().stats()
    }

    /// Stops accepting records, writes every accepted one and stops the writer thread.
    /// Idempotent; drop does the same.
    pub fn close(&self) -> SinkStats {
        self.writer.shutdown();
        self.stats()
    }
}
