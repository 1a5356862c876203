//! Events with chosen fields, and stores in temporary directories.

use std::path::PathBuf;
use std::time::Duration;

use hybridstore_analytics::{
    AccessEvent, AnalyticsOptions, AnalyticsStore, CacheTier, Operation, Outcome,
};

/// 2023-11-14 22:13:20 UTC, a whole second: the time tests place events around.
pub const T0: i64 = 1_700_000_000_000_000;
/// One second in microseconds.
pub const SECOND: i64 = 1_000_000;

/// A store in a fresh temporary directory (kept alive by the returned guard).
pub fn store() -> (tempfile::TempDir, PathBuf, AnalyticsStore) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("analytics.duckdb");
    let store = AnalyticsStore::open(&path, quiet_options()).unwrap();
    (dir, path, store)
}

/// Options that never write on their own schedule within a test's lifetime.
pub fn quiet_options() -> AnalyticsOptions {
    AnalyticsOptions {
        flush_interval: Duration::from_secs(3600),
        ..AnalyticsOptions::default()
    }
}

/// A builder-style event.
pub fn ev(ts: i64, op: Operation, key: &str) -> AccessEvent {
    let mut e = AccessEvent::new(op, "file".into(), Some(key));
    e.timestamp_us = ts;
    e
}

/// Chained setters for events in tests.
pub trait EventExt {
    fn bytes(self, n: u64) -> Self;
    fn latency(self, us: u64) -> Self;
    fn backend(self, b: &str) -> Self;
    fn tenant(self, t: &str) -> Self;
    fn tier(self, t: CacheTier) -> Self;
    fn outcome(self, o: Outcome) -> Self;
}

impl EventExt for AccessEvent {
    fn bytes(mut self, n: u64) -> Self {
        self.bytes = n;
        self
    }
    fn latency(mut self, us: u64) -> Self {
        self.latency_us = us;
        self
    }
    fn backend(mut self, b: &str) -> Self {
        self.backend = b.into();
        self
    }
    fn tenant(mut self, t: &str) -> Self {
        self.tenant = Some(t.into());
        self
    }
    fn tier(mut self, t: CacheTier) -> Self {
        self.cache_tier = Some(t);
        self
    }
    fn outcome(mut self, o: Outcome) -> Self {
        self.outcome = o;
        self
    }
}

/// Records every event (asserting none is dropped) and flushes.
pub fn record_all(store: &AnalyticsStore, events: impl IntoIterator<Item = AccessEvent>) {
    for e in events {
        assert!(store.sink().record(e), "event dropped");
    }
    store.flush().unwrap();
}

/// `SELECT count(*) FROM access_events` through the read-only SQL path.
pub fn count_events(reader: &hybridstore_analytics::AnalyticsReader) -> i64 {
    use hybridstore_analytics::arrow::array::{Array, Int64Array};
    let batches = reader.sql("SELECT count(*) FROM access_events").unwrap();
    let col = batches[0].column(0);
    col.as_any().downcast_ref::<Int64Array>().unwrap().value(0)
}
