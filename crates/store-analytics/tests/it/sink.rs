//! The sink never blocks the caller, counts what it drops, and loses nothing it accepted.

use std::time::Duration;

use hybridstore_analytics::{AnalyticsOptions, AnalyticsStore, MetricRecord, Operation, SinkStats};
use hybridstore_core::ErrorKind;

use crate::support::{T0, count_events, ev, quiet_options};

/// A store in `dir` whose channel holds 16 records and whose writer writes each alone.
fn sixteen_slots(dir: &tempfile::TempDir) -> (std::path::PathBuf, AnalyticsStore) {
    let path = dir.path().join("analytics.duckdb");
    let options = AnalyticsOptions {
        channel_capacity: 16,
        batch_rows: 1,
        ..quiet_options()
    };
    let store = AnalyticsStore::open(&path, options).unwrap();
    (path, store)
}

#[test]
fn a_full_channel_drops_and_counts_instead_of_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let (path, store) = sixteen_slots(&dir);
    let offered = 1000u64;
    let accepted = {
        // The writer's first batch waits for the file as it would behind another process.
        let _held = store.reader().hold_file();
        (0..offered)
            .filter(|i| store.sink().record(ev(T0 + *i as i64, Operation::Get, "k")))
            .count() as u64
    };
    let stats = store.stats();
    assert_eq!(stats.accepted, accepted);
    assert_eq!(stats.accepted + stats.dropped_full, offered);
    // 16 in the channel, at most one taken by the blocked writer.
    assert!(accepted <= 17, "{stats:?}");
    assert!(stats.dropped_full >= offered - 17, "{stats:?}");

    let closed = store.close();
    assert_eq!(closed.written, accepted, "{closed:?}");
    assert_eq!(closed.lost, 0);
    let reader = AnalyticsStore::open_reader(&path, &quiet_options()).unwrap();
    assert_eq!(count_events(&reader), accepted as i64);
}

#[test]
fn record_blocking_waits_for_room_and_drops_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (_, store) = sixteen_slots(&dir);
    let store = std::sync::Arc::new(store);
    let offered = 1000u64;
    let held = store.reader().hold_file();
    let producer = {
        let sink = store.sink().clone();
        std::thread::spawn(move || {
            (0..offered)
                .filter(|i| sink.record_blocking(ev(T0 + *i as i64, Operation::Get, "k")))
                .count() as u64
        })
    };
    // The channel fills while the writer waits for the file; the producer then waits too.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while store.stats().accepted < 16 {
        assert!(std::time::Instant::now() < deadline, "{:?}", store.stats());
        std::thread::yield_now();
    }
    assert!(
        !producer.is_finished(),
        "1,000 events cannot fit in 17 slots"
    );
    drop(held);
    assert_eq!(producer.join().unwrap(), offered);
    let stats = store.stats();
    assert_eq!(
        (stats.accepted, stats.dropped_full),
        (offered, 0),
        "{stats:?}"
    );
    let closed = store.close();
    assert_eq!(closed.written, offered, "{closed:?}");
    assert!(!store.sink().record_blocking(ev(T0, Operation::Get, "k")));
    assert_eq!(store.stats().dropped_closed, 1);
}

#[test]
fn close_writes_everything_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("analytics.duckdb");
    let store = AnalyticsStore::open(&path, quiet_options()).unwrap();
    for i in 0..10_000 {
        assert!(store.sink().record(ev(T0 + i, Operation::Put, "k").clone()));
    }
    assert!(store.sink().record_metric(MetricRecord::System {
        timestamp_us: T0,
        metric_name: "rss".into(),
        metric_value: 1.5e9,
        metric_unit: "bytes".into(),
    }));
    let stats = store.close();
    assert_eq!(
        stats,
        SinkStats {
            accepted: 10_001,
            written: 10_001,
            batches: 1,
            ..SinkStats::default()
        }
    );
    // After close: refused, counted, and flush says so.
    assert!(!store.sink().record(ev(T0, Operation::Get, "k")));
    assert_eq!(store.stats().dropped_closed, 1);
    assert_eq!(store.flush().unwrap_err().kind(), ErrorKind::Unavailable);
    drop(store);
    let reader = AnalyticsStore::open_reader(&path, &quiet_options()).unwrap();
    assert_eq!(count_events(&reader), 10_000);
    let batches = reader
        .sql("SELECT metric_value FROM system_metrics")
        .unwrap();
    assert_eq!(batches[0].num_rows(), 1);
}

#[test]
fn drop_writes_everything_accepted_and_the_database_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("analytics.duckdb");
    {
        let store = AnalyticsStore::open(&path, quiet_options()).unwrap();
        let sink = store.sink().clone();
        for i in 0..5_000 {
            assert!(sink.record(ev(T0 + i, Operation::Get, "k")));
        }
    }
    let store = AnalyticsStore::open(&path, quiet_options()).unwrap();
    assert_eq!(count_events(store.reader()), 5_000);
}

/// Regression (issue 15, defect 6): dropping the store joined the writer thread on the
/// calling thread, so a drop inside a current-thread tokio runtime stalled its only worker
/// until every queued event was written (here: forever, while the file is held). Now such a
/// drop returns at once and the events are still written.
#[test]
fn a_drop_inside_a_current_thread_runtime_never_waits_for_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("analytics.duckdb");
    let store = AnalyticsStore::open(&path, quiet_options()).unwrap();
    let reader = store.reader().events_only(); // shares the store's file lock
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let held = std::thread::scope(|scope| {
        let held = reader.hold_file(); // the writer cannot write until this guard drops
        for i in 0..1_000 {
            assert!(store.sink().record(ev(T0 + i, Operation::Get, "k")));
        }
        scope.spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            runtime.block_on(async move { drop(store) });
            done_tx.send(()).unwrap();
        });
        let returned = done_rx.recv_timeout(Duration::from_secs(10));
        drop(held);
        returned
    });
    assert!(
        held.is_ok(),
        "dropping the store blocked the runtime's only worker on the writer"
    );
    // The events the dropped store had accepted are written once the file is free.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let reader = AnalyticsStore::open_reader(&path, &quiet_options()).unwrap();
    while count_events(&reader) != 1_000 {
        assert!(std::time::Instant::now() < deadline, "events lost");
        std::thread::yield_now();
    }
}

#[test]
fn batches_are_written_by_count() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("analytics.duckdb");
    let options = AnalyticsOptions {
        batch_rows: 100,
        ..quiet_options()
    };
    let store = AnalyticsStore::open(&path, options).unwrap();
    for i in 0..250 {
        assert!(store.sink().record(ev(T0 + i, Operation::Get, "k")));
    }
    // 100 and 100 by count, the last 50 when closing (the timer is an hour away).
    let stats = store.close();
    assert_eq!((stats.written, stats.batches), (250, 3), "{stats:?}");
}

#[test]
fn a_lone_event_is_written_within_the_flush_interval() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("analytics.duckdb");
    let options = AnalyticsOptions {
        flush_interval: Duration::from_millis(20),
        ..AnalyticsOptions::default()
    };
    let store = AnalyticsStore::open(&path, options).unwrap();
    let offered_at = std::time::Instant::now();
    assert!(store.sink().record(ev(T0, Operation::Get, "k")));
    // Waiting on a timer can only poll: bounded at 5 s, checked every 5 ms.
    while store.stats().written == 0 && offered_at.elapsed() < Duration::from_secs(5) {
        std::thread::park_timeout(Duration::from_millis(5));
    }
    assert_eq!(
        store.stats().written,
        1,
        "not written {:?} after it was offered",
        offered_at.elapsed()
    );
}

#[test]
fn metric_tables_take_seed_002_records() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("analytics.duckdb");
    let store = AnalyticsStore::open(&path, quiet_options()).unwrap();
    let records = [
        MetricRecord::Query {
            timestamp_us: T0,
            query_type: "hybrid".into(),
            latency_ms: 12.5,
            result_count: 10,
            retrieval_strategy: "ivf_pq".into(),
            success: true,
        },
        MetricRecord::Embedding {
            timestamp_us: T0,
            model_name: "all-MiniLM-L6-v2".into(),
            embedding_time_ms: 3.0,
            text_length: 512,
            dimension: 384,
        },
        MetricRecord::Reranking {
            timestamp_us: T0,
            query_type: "hybrid".into(),
            document_count: 20,
            rerank_time_ms: 8.0,
            quality_score: 0.9,
        },
    ];
    for r in records {
        assert!(store.sink().record_metric(r));
    }
    store.flush().unwrap();
    let batches = store
        .reader()
        .sql(
            "SELECT (SELECT count(*) FROM query_metrics WHERE success AND result_count = 10)
                  + (SELECT count(*) FROM embedding_metrics WHERE dimension = 384)
                  + (SELECT count(*) FROM reranking_metrics WHERE document_count = 20)",
        )
        .unwrap();
    use hybridstore_analytics::arrow::array::{Array, Int64Array};
    let n = batches[0]
        .column(0)
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap()
        .value(0);
    assert_eq!(n, 3);
}

#[test]
fn invalid_options_and_missing_databases_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("analytics.duckdb");
    for options in [
        AnalyticsOptions {
            channel_capacity: 0,
            ..AnalyticsOptions::default()
        },
        AnalyticsOptions {
            batch_rows: 0,
            ..AnalyticsOptions::default()
        },
        AnalyticsOptions {
            flush_interval: Duration::ZERO,
            ..AnalyticsOptions::default()
        },
        AnalyticsOptions {
            threads: Some(0),
            ..AnalyticsOptions::default()
        },
        AnalyticsOptions {
            hot_key_candidates: 0,
            ..AnalyticsOptions::default()
        },
    ] {
        let err = AnalyticsStore::open(&path, options).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
    }
    let err = AnalyticsStore::open_reader(&path, &AnalyticsOptions::default()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    // A file that is not a DuckDB database.
    std::fs::write(&path, b"not a database").unwrap();
    let err = AnalyticsStore::open(&path, AnalyticsOptions::default()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Backend, "{err}");
}
