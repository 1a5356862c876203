//! Analytics benchmark: ingest of synthetic access events and every report over them.
//!
//! - Ingest: `HYBRIDSTORE_BENCH_EVENTS` events (default 10,000,000, one per 10 µs of event
//!   time; fixed seed; generated before the clock starts) handed to the sink by one producer
//!   thread with `record_blocking`, from the first event until `flush` returns, and until
//!   `roll_up` and `close` return, every minute rolled up (events/s); baseline in the same run: the
//!   same events appended by hand on one open DuckDB connection (Arrow batches of 122,880
//!   through the Appender, no channel, no thread, no rollups).
//! - Caller-side cost: 1,000,000 `record` calls (ns per event) on a store of their own,
//!   against a bare `std::sync::mpsc::sync_channel` `try_send` of the same events with a
//!   consumer draining.
//! - Reports over the ingested events (median of 5, each opening the file read-only as the
//!   CLI does), from the per-minute rollups, against the same report computed from the
//!   events alone (`AnalyticsReader::events_only`) in the same run.
//!
//! Writes `<target>/bench-report/analytics.md` and `analytics.json`. The databases go to a
//! temporary directory, or to `HYBRIDSTORE_BENCH_DIR` (which must not hold them yet).
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr
)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hybridstore_analytics::{
    AccessEvent, AnalyticsOptions, AnalyticsReader, AnalyticsStore, CacheTier, Operation, Outcome,
    TimeWindow, access_events_batch,
};
use hybridstore_core::ErrorKind;
use hybridstore_core::bench_report::write_bench_report;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const SEED: u64 = 0x5EED_A11A;
const KEYS: u64 = 100_000;
const START_US: i64 = 1_700_000_000_000_000;

/// Event `i` of a deterministic stream: keys skewed toward low numbers (the square of a
/// uniform draw), 80% gets, 12% puts, 3% deletes, 5% others, ten tenants, three backends,
/// L1/L2/miss for reads, 1% errors; one event per 10 µs of simulated time.
struct Generator {
    rng: StdRng,
    backends: [Arc<str>; 3],
    tenants: Vec<Arc<str>>,
}

impl Generator {
    fn new() -> Generator {
        Generator {
            rng: StdRng::seed_from_u64(SEED),
            backends: ["file".into(), "sql".into(), "postgres".into()],
            tenants: (0..10).map(|t| Arc::from(format!("tenant-{t}"))).collect(),
        }
    }

    fn event(&mut self, i: u64) -> AccessEvent {
        let r = &mut self.rng;
        let u: f64 = r.random();
        let key = format!("docs/{:06}", (u * u * KEYS as f64) as u64);
        let roll = r.random_range(0..100);
        let operation = match roll {
            0..80 => Operation::Get,
            80..92 => Operation::Put,
            92..95 => Operation::Delete,
            95..97 => Operation::GetMany,
            97..99 => Operation::Head,
            _ => Operation::List,
        };
        let mut e = AccessEvent::new(
            operation,
            self.backends[r.random_range(0..3)].clone(),
            Some(&key),
        );
        e.timestamp_us = START_US + i as i64 * 10;
        e.tenant = Some(self.tenants[r.random_range(0..10)].clone());
        e.bytes = r.random_range(0..65_536);
        e.latency_us = 20 + (r.random::<f64>().powi(4) * 20_000.0) as u64;
        if operation.is_read() {
            e.cache_tier = Some(match r.random_range(0..10) {
                0..6 => CacheTier::L1Hit,
                6..8 => CacheTier::L2Hit,
                _ => CacheTier::Miss,
            });
        }
        if r.random_range(0..100) == 0 {
            e.outcome = Outcome::error(ErrorKind::Timeout);
        }
        e
    }
}

struct Row {
    name: String,
    value: f64,
    unit: &'static str,
    baseline: Option<f64>,
}

fn main() {
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    if !filter.is_empty() && !filter.iter().any(|f| "analytics".contains(f.as_str())) {
        return;
    }
    let events: u64 = std::env::var("HYBRIDSTORE_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    // HYBRIDSTORE_BENCH_DIR keeps the databases there for a look afterwards.
    let kept = std::env::var_os("HYBRIDSTORE_BENCH_DIR").map(std::path::PathBuf::from);
    let temp = tempfile::tempdir().unwrap();
    let dir = kept.as_deref().unwrap_or(temp.path());
    std::fs::create_dir_all(dir).unwrap();
    let mut rows = Vec::new();

    // The events are generated before either clock starts: the generator's cost (formatting
    // keys, drawing numbers) is the bench's, not the store's.
    let all: Vec<AccessEvent> = {
        let mut generator = Generator::new();
        (0..events).map(|i| generator.event(i)).collect()
    };

    // Baseline: the same events appended by hand on one connection.
    let raw_path = dir.join("raw.duckdb");
    let raw_secs = {
        // The same schema, created by the store and then closed.
        AnalyticsStore::open(&raw_path, AnalyticsOptions::default())
            .unwrap()
            .close();
        let conn = duckdb::Connection::open(&raw_path).unwrap();
        let started = Instant::now();
        let mut appender = conn.appender("access_events").unwrap();
        for chunk in all.chunks(122_880) {
            appender
                .append_record_batch(access_events_batch(chunk).unwrap())
                .unwrap();
        }
        appender.flush().unwrap();
        drop(appender);
        conn.close().unwrap();
        started.elapsed().as_secs_f64()
    };

    // The sink: one producer handing events over as fast as the writer takes them
    // (`record_blocking`: it waits while the channel is full rather than dropping), until
    // `flush` returns (every event written) and until `roll_up` and `close` return (every
    // minute rolled up as well).
    let path = dir.join("analytics.duckdb");
    let store = AnalyticsStore::open(&path, AnalyticsOptions::default()).unwrap();
    let started = Instant::now();
    let (flush_secs, close_secs) = {
        let sink = store.sink().clone();
        for e in all {
            assert!(sink.record_blocking(e));
        }
        store.flush().unwrap();
        let flushed = started.elapsed().as_secs_f64();
        store.roll_up().unwrap();
        store.close();
        (flushed, started.elapsed().as_secs_f64())
    };
    let stats = store.stats();
    assert_eq!(stats.written, events, "{stats:?}");
    eprintln!(
        "ingest: sink {flush_secs:.2} s to flush, {close_secs:.2} s to close; by hand {raw_secs:.2} s"
    );
    rows.push(Row {
        name: format!("ingest {events} events through the sink (until flush)"),
        value: events as f64 / flush_secs,
        unit: "events/s",
        baseline: Some(events as f64 / raw_secs),
    });
    rows.push(Row {
        name: format!("ingest {events} events, rollups included (until roll_up + close)"),
        value: events as f64 / close_secs,
        unit: "events/s",
        baseline: Some(events as f64 / raw_secs),
    });

    // Caller-side cost of record(), against a bare bounded channel, on a store of its own.
    let caller_store =
        AnalyticsStore::open(&dir.join("caller.duckdb"), AnalyticsOptions::default()).unwrap();
    let caller_ns = caller_cost(&caller_store);
    let channel_ns = bare_channel_cost();
    rows.push(Row {
        name: "caller-side cost of record()".into(),
        value: caller_ns,
        unit: "ns/event",
        baseline: Some(channel_ns),
    });
    caller_store.close();

    // Reports, each from the rollups against the same report from the events alone.
    let reader = AnalyticsStore::open_reader(&path, &AnalyticsOptions::default()).unwrap();
    let events_only = reader.events_only();
    let w = TimeWindow::all();
    type RunReport = Box<dyn Fn(&AnalyticsReader)>;
    let reports: Vec<(&str, RunReport)> = vec![
        (
            "hot keys (top 10)",
            Box::new(move |r| {
                black_box(r.hot_keys(w, 10).unwrap());
            }),
        ),
        (
            "latency percentiles",
            Box::new(move |r| {
                black_box(r.latency_percentiles(w).unwrap());
            }),
        ),
        (
            "cache hit rates",
            Box::new(move |r| {
                black_box(r.cache_hit_rates(w).unwrap());
            }),
        ),
        (
            "tenant usage",
            Box::new(move |r| {
                black_box(r.tenant_usage(w).unwrap());
            }),
        ),
        (
            "growth per minute",
            Box::new(move |r| {
                black_box(r.growth(w, Duration::from_secs(60)).unwrap());
            }),
        ),
        (
            "error rates",
            Box::new(move |r| {
                black_box(r.error_rates(w).unwrap());
            }),
        ),
        (
            "full report",
            Box::new(move |r| {
                black_box(r.report(w, 10, Duration::from_secs(60)).unwrap());
            }),
        ),
    ];
    for (name, run) in &reports {
        let ms = median_ms(|| run(&reader));
        let events_ms = median_ms(|| run(&events_only));
        rows.push(Row {
            name: format!("report: {name}"),
            value: ms,
            unit: "ms",
            baseline: Some(events_ms),
        });
    }
    write_report(events, &rows);
}

fn caller_cost(store: &AnalyticsStore) -> f64 {
    const N: u64 = 1_000_000;
    let mut generator = Generator::new();
    let events: Vec<AccessEvent> = (0..N).map(|i| generator.event(i)).collect();
    let sink = store.sink();
    store.flush().unwrap();
    let before = store.stats();
    let started = Instant::now();
    for e in events {
        black_box(sink.record(e));
    }
    let ns = started.elapsed().as_nanos() as f64 / N as f64;
    let after = store.stats();
    eprintln!(
        "caller cost: {ns:.0} ns/event, {} accepted, {} dropped",
        after.accepted - before.accepted,
        after.dropped_full - before.dropped_full
    );
    store.flush().unwrap();
    ns
}

fn bare_channel_cost() -> f64 {
    const N: u64 = 1_000_000;
    let mut generator = Generator::new();
    let events: Vec<AccessEvent> = (0..N).map(|i| generator.event(i)).collect();
    let (tx, rx) = std::sync::mpsc::sync_channel::<AccessEvent>(65_536);
    let consumer = std::thread::spawn(move || rx.iter().count());
    let started = Instant::now();
    for e in events {
        black_box(tx.try_send(e).is_ok());
    }
    let ns = started.elapsed().as_nanos() as f64 / N as f64;
    drop(tx);
    consumer.join().unwrap();
    ns
}

fn median_ms(mut run: impl FnMut()) -> f64 {
    run(); // warm the OS page cache
    let mut times: Vec<f64> = (0..5)
        .map(|_| {
            let started = Instant::now();
            run();
            started.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[2]
}

fn write_report(events: u64, rows: &[Row]) {
    let mut md = format!(
        "# analytics benchmark\n\n{events} synthetic access events (seed {SEED:#x}). Ratio = value / \
         baseline in the same run: for events/s higher is faster, for ns and ms lower is.\n\n\
         | case | value | baseline | ratio |\n|---|---|---|---|\n"
    );
    let mut json = Vec::new();
    for r in rows {
        let ratio = r.baseline.map(|b| r.value / b);
        md.push_str(&format!(
            "| {} | {:.1} {} | {} | {} |\n",
            r.name,
            r.value,
            r.unit,
            r.baseline
                .map_or("-".into(), |b| format!("{b:.1} {}", r.unit)),
            ratio.map_or("-".into(), |x| format!("{x:.2}x")),
        ));
        json.push(serde_json::json!({
            "case": r.name, "value": r.value, "unit": r.unit,
            "baseline": r.baseline, "ratio": ratio,
        }));
    }
    let path = write_bench_report(
        "analytics",
        &md,
        &serde_json::to_string_pretty(&json).unwrap(),
    )
    .unwrap();
    eprintln!("{md}\nwrote {}", path.display());
}
