//! The per-minute rollups give the answers the events alone give: for any event set, written
//! in several sessions (so minutes are rolled up, and later events land in rolled minutes),
//! and any window.

use std::time::Duration;

use hybridstore_analytics::{
    AccessEvent, AnalyticsOptions, AnalyticsReader, AnalyticsStore, CacheTier,
    LATENCY_BUCKET_PRECISION_BITS, Operation, Outcome, TimeWindow,
};
use hybridstore_core::ErrorKind;
use proptest::prelude::*;

use crate::support::{EventExt, SECOND, T0, ev, quiet_options, record_all, store};

const MINUTE: i64 = 60 * SECOND;

/// `SELECT <one UBIGINT or TIMESTAMP-as-µs column> …` through the read-only SQL path.
fn single_i64(reader: &AnalyticsReader, query: &str) -> Option<i64> {
    use hybridstore_analytics::arrow::array::{Array, Int64Array};
    let batches = reader.sql(query).unwrap();
    let col = batches[0].column(0);
    let col = col.as_any().downcast_ref::<Int64Array>().unwrap();
    (!col.is_null(0)).then(|| col.value(0))
}

fn watermark(reader: &AnalyticsReader) -> Option<i64> {
    single_i64(reader, "SELECT epoch_us(rolled_until) FROM rollup_state")
}

fn rollup_rows(reader: &AnalyticsReader) -> i64 {
    single_i64(
        reader,
        "SELECT ((SELECT count(*) FROM access_minutes) + (SELECT count(*) FROM latency_minutes)
               + (SELECT count(*) FROM key_read_minutes)
               + (SELECT count(*) FROM key_write_minutes))::BIGINT",
    )
    .unwrap()
}

/// One generated event: offset from `T0` in ms (distinct offsets are made distinct in µs by
/// the event's index), operation, backend, tenant, key, bytes, latency, tier, error.
type Spec = (u32, u8, u8, u8, u8, u16, u32, u8, bool);

fn event(i: usize, spec: Spec) -> AccessEvent {
    let (offset_ms, op, backend, tenant, key, bytes, latency, tier, failed) = spec;
    let operation = [
        Operation::Get,
        Operation::GetMany,
        Operation::Put,
        Operation::BatchPut,
        Operation::Delete,
        Operation::Clear,
        Operation::List,
        Operation::Head,
    ][op as usize % 8];
    let ts = T0 + i64::from(offset_ms) * 1_000 + i as i64;
    let mut e = if operation == Operation::Clear {
        let mut e = AccessEvent::new(operation, "file".into(), None);
        e.timestamp_us = ts;
        e
    } else {
        ev(ts, operation, &format!("k{}", key % 12))
    };
    e = e
        .backend(["file", "sql"][backend as usize % 2])
        .bytes(u64::from(bytes))
        // Up to about 4 s, across many histogram octaves.
        .latency(u64::from(latency) >> (latency % 22));
    if tenant % 3 != 0 {
        e = e.tenant(["a", "b"][tenant as usize % 2]);
    }
    if operation.is_read() {
        e = e.tier([CacheTier::L1Hit, CacheTier::L2Hit, CacheTier::Miss][tier as usize % 3]);
    }
    if failed {
        e = e.outcome(Outcome::error(ErrorKind::Timeout));
    }
    e
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        0u32..6 * 60_000,
        any::<u8>(),
        any::<u8>(),
        any::<u8>(),
        any::<u8>(),
        any::<u16>(),
        any::<u32>(),
        any::<u8>(),
        prop::bool::weighted(0.1),
    )
}

/// A window bound: open, on a minute boundary, or anywhere, within the events' span.
fn bound() -> impl Strategy<Value = Option<i64>> {
    prop_oneof![
        Just(None),
        (0i64..8).prop_map(|m| Some(T0 - 20 * SECOND + m * MINUTE)),
        (0i64..7 * MINUTE).prop_map(|us| Some(T0 - MINUTE / 2 + us)),
    ]
}

/// Options keeping only two hot-key candidates per list, so that the threshold test both
/// decides and falls back to adding up every key.
fn few_candidates() -> AnalyticsOptions {
    AnalyticsOptions {
        hot_key_candidates: 2,
        ..quiet_options()
    }
}

/// Every report through `rolled` equals the same report from the events alone: the full
/// report (growth per minute, so from the rollups), growth per 7 s (from the events either
/// way) and the single hottest key.
fn assert_same_reports(rolled: &AnalyticsReader, window: TimeWindow) {
    let events = rolled.events_only();
    let minute = Duration::from_secs(60);
    assert_eq!(
        rolled.report(window, 3, minute).unwrap(),
        events.report(window, 3, minute).unwrap(),
        "window {window:?}"
    );
    let seconds = Duration::from_secs(7);
    assert_eq!(
        rolled.growth(window, seconds).unwrap(),
        events.growth(window, seconds).unwrap(),
        "window {window:?}"
    );
    assert_eq!(
        rolled.hot_keys(window, 1).unwrap(),
        events.hot_keys(window, 1).unwrap(),
        "window {window:?}"
    );
}

/// Cases: `HYBRIDSTORE_PROPTEST_CASES` (default 8); each opens the database about 80 times.
fn cases() -> u32 {
    std::env::var("HYBRIDSTORE_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn reports_from_rollups_equal_reports_from_events(
        first in prop::collection::vec(spec(), 1..300),
        late in prop::collection::vec(spec(), 0..120),
        windows in prop::collection::vec((bound(), bound()), 3),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("analytics.duckdb");
        // First session: rolls up every minute it wrote, then closes.
        let store = AnalyticsStore::open(&path, few_candidates()).unwrap();
        record_all(&store, first.iter().enumerate().map(|(i, s)| event(i, *s)));
        store.roll_up().unwrap();
        store.close();
        let rolled = watermark(store.reader());
        prop_assert!(rolled.is_some(), "roll_up rolled nothing up");
        prop_assert!(rollup_rows(store.reader()) > 0);
        // Second session: its events fall before and after the watermark.
        let store = AnalyticsStore::open(&path, few_candidates()).unwrap();
        let offset = first.len();
        record_all(&store, late.iter().enumerate().map(|(i, s)| event(offset + i, *s)));
        // Mid-session: the events before the watermark went into the rollups as late
        // events; the rest wait for the writer to be idle or to be told.
        for &(start_us, end_us) in &windows {
            assert_same_reports(store.reader(), TimeWindow { start_us, end_us });
        }
        store.roll_up().unwrap();
        store.close();
        for (start_us, end_us) in windows {
            assert_same_reports(store.reader(), TimeWindow { start_us, end_us });
        }
        assert_same_reports(store.reader(), TimeWindow::all());
    }
}

#[test]
fn late_events_count_in_minutes_already_rolled_up() {
    let (_dir, path, store) = store();
    record_all(
        &store,
        (0..10).map(|m| ev(T0 + m * MINUTE, Operation::Get, "early").bytes(1)),
    );
    store.roll_up().unwrap();
    store.close();
    let reader = store.reader();
    let w = watermark(reader).unwrap();
    assert_eq!(w, T0 + 10 * MINUTE - T0.rem_euclid(MINUTE));
    let store = AnalyticsStore::open(&path, quiet_options()).unwrap();
    // Two minutes late, well inside the rolled-up span.
    record_all(
        &store,
        (0..3).map(|i| ev(T0 + 2 * MINUTE + i, Operation::Get, "late").bytes(5)),
    );
    let hot = store.reader().hot_keys(TimeWindow::all(), 10).unwrap();
    let reads: Vec<(Option<&str>, u64, u64)> = hot
        .iter()
        .map(|h| (h.key.as_deref(), h.reads, h.bytes))
        .collect();
    assert_eq!(reads, vec![(Some("early"), 10, 10), (Some("late"), 3, 15)]);
    // Counted once: the window of whole minutes reads the rollups alone.
    let whole = TimeWindow {
        start_us: Some(w - 10 * MINUTE),
        end_us: Some(w),
    };
    let report = store
        .reader()
        .report(whole, 10, Duration::from_secs(60))
        .unwrap();
    assert_eq!(report.events, 13);
    assert_eq!(watermark(store.reader()), Some(w), "no new minute to roll");
}

#[test]
fn latency_percentiles_are_within_the_stated_error_of_the_exact_ones() {
    let (_dir, _path, store) = store();
    // 2,000 latencies from 1 µs to about 1 s, spread over several octaves.
    let latencies: Vec<u64> = (1..=2_000u64)
        .map(|i| (i * i * 997) % 1_000_000 + 1)
        .collect();
    record_all(
        &store,
        latencies
            .iter()
            .enumerate()
            .map(|(i, l)| ev(T0 + i as i64 * 100_000, Operation::Get, "k").latency(*l)),
    );
    store.close();
    let reader = store.reader();
    let row = reader.latency_percentiles(TimeWindow::all()).unwrap();
    assert_eq!(row.len(), 1);
    let row = &row[0];
    let mut sorted = latencies.clone();
    sorted.sort_unstable();
    let nearest_rank = |p: usize| sorted[(sorted.len() * p).div_ceil(100) - 1];
    let bound = 1u64 << LATENCY_BUCKET_PRECISION_BITS;
    for (p, got) in [(50, row.p50_us), (95, row.p95_us), (99, row.p99_us)] {
        let exact = nearest_rank(p);
        assert!(
            got >= exact && (got - exact) * bound <= exact,
            "p{p}: {got} vs exact {exact}"
        );
    }
    assert_eq!(row.max_us, *sorted.last().unwrap());
    assert_eq!(row.calls, 2_000);
}

#[test]
fn an_idle_writer_rolls_up_the_minutes_it_has_seen_ten_seconds_past() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("analytics.duckdb");
    let store = AnalyticsStore::open(
        &path,
        AnalyticsOptions {
            flush_interval: Duration::from_millis(20),
            ..quiet_options()
        },
    )
    .unwrap();
    // Events up to 3 minutes and 15 s after T0 (T0 is 20 s into its minute).
    let newest = T0 + 3 * MINUTE + 15 * SECOND;
    record_all(
        &store,
        [T0, T0 + MINUTE, newest].map(|ts| ev(ts, Operation::Get, "k")),
    );
    // A flush writes without rolling; the idle writer's timer rolls the due minutes.
    let due = (newest - 10 * SECOND).div_euclid(MINUTE) * MINUTE;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while watermark(store.reader()) != Some(due) {
        assert!(
            std::time::Instant::now() < deadline,
            "the idle writer did not roll up to {due}: {:?}",
            watermark(store.reader())
        );
        std::thread::yield_now();
    }
    // Closing rolls up what is due and no more; roll_up the last minute too.
    store.roll_up().unwrap();
    assert_eq!(watermark(store.reader()), Some(due + MINUTE));
    store.close();
    assert_eq!(watermark(store.reader()), Some(due + MINUTE));
}
