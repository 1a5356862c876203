//! A second process reads the database while the owner keeps writing (DuckDB allows one
//! read-write process per file; the store only holds the file while it writes a batch).

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use hybridstore_analytics::{AnalyticsOptions, AnalyticsStore, Operation, TimeWindow};

use crate::support::{T0, count_events, ev};

const CHILD_PATH_ENV: &str = "HYBRIDSTORE_ANALYTICS_CHILD_DB";

/// The owner process: offers 100 events every 5 ms (the writer thread writes a batch every
/// 20 ms), printing `WROTE <n>` whenever the count of written events grows, until its stdin
/// closes; then closes the store and prints `DONE <total>`.
#[test]
#[ignore = "child process of second_process_reads_while_the_owner_writes"]
fn child_owner_writes_until_told_to_stop() {
    let Some(path) = std::env::var_os(CHILD_PATH_ENV) else {
        return;
    };
    let saturate = std::env::var_os(SATURATE_ENV).is_some();
    let options = AnalyticsOptions {
        flush_interval: Duration::from_millis(20),
        // Small batches, so that a saturating stream runs the writer's long holds.
        batch_rows: if saturate { 2_000 } else { 122_880 },
        ..AnalyticsOptions::default()
    };
    let store = AnalyticsStore::open(path.as_ref(), options).unwrap();
    if saturate {
        return saturate_until_told_to_stop(&store);
    }
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
        let _ = stop_tx.send(());
    });
    let mut total = 0i64;
    let mut reported = 0;
    let mut out = std::io::stdout();
    // Bounded: 2,000 rounds (about 10 s) even if the parent never says stop.
    for _ in 0..2_000 {
        if stop_rx.try_recv().is_ok() {
            break;
        }
        for _ in 0..100 {
            assert!(store.sink().record(ev(T0 + total, Operation::Get, "k")));
            total += 1;
        }
        let written = store.stats().written;
        if written > reported {
            reported = written;
            writeln!(out, "WROTE {written}").unwrap();
            out.flush().unwrap();
        }
        // The workload's pace, not a synchronisation: 20,000 events/s.
        std::thread::park_timeout(Duration::from_millis(5));
    }
    let stats = store.close();
    assert_eq!((stats.dropped_full, stats.lost), (0, 0), "{stats:?}");
    writeln!(out, "DONE {total}").unwrap();
}

/// The owner as fast as it can go: `record_blocking` in a loop keeps the channel full, so the
/// writer holds the file for its longest (1 s) again and again; prints `WROTE <n>` as the
/// count grows, until stdin closes (or 60 s pass); then `DONE <total>`.
fn saturate_until_told_to_stop(store: &AnalyticsStore) {
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
        let _ = stop_tx.send(());
    });
    let started = std::time::Instant::now();
    let mut total = 0i64;
    let mut reported = 0;
    let mut out = std::io::stdout();
    while started.elapsed() < Duration::from_secs(60) && stop_rx.try_recv().is_err() {
        for _ in 0..1_000 {
            assert!(
                store
                    .sink()
                    .record_blocking(ev(T0 + total, Operation::Get, "k"))
            );
            total += 1;
        }
        let written = store.stats().written;
        if written > reported {
            reported = written;
            writeln!(out, "WROTE {written}").unwrap();
            out.flush().unwrap();
        }
    }
    let stats = store.close();
    assert_eq!((stats.dropped_full, stats.lost), (0, 0), "{stats:?}");
    writeln!(out, "DONE {total}").unwrap();
}

/// Set for the child of `readers_get_in_while_the_owner_saturates_the_writer`.
const SATURATE_ENV: &str = "HYBRIDSTORE_ANALYTICS_CHILD_SATURATE";

#[test]
fn readers_get_in_while_the_owner_saturates_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("analytics.duckdb");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "processes::child_owner_writes_until_told_to_stop",
            "--ignored",
            "--nocapture",
        ])
        .env(CHILD_PATH_ENV, &path)
        .env(SATURATE_ENV, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next_total = |prefix: &str| -> i64 {
        for line in lines.by_ref() {
            let line = line.unwrap();
            if let Some(n) = line.strip_prefix(prefix) {
                return n.trim().parse().unwrap();
            }
        }
        panic!("the child process ended before printing {prefix}");
    };
    // The default lock timeout (10 s): a reader that waited for the stream to end would fail.
    let options = AnalyticsOptions::default();
    let mut seen = Vec::new();
    for _ in 0..3 {
        let acknowledged = next_total("WROTE ");
        let reader = AnalyticsStore::open_reader(&path, &options).unwrap();
        let count = count_events(&reader);
        assert!(
            count >= acknowledged,
            "{count} < {acknowledged} acknowledged"
        );
        seen.push(count);
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "the owner was still streaming"
    );
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
    drop(child.stdin.take());
    let total = next_total("DONE ");
    assert!(child.wait().unwrap().success());
    let reader = AnalyticsStore::open_reader(&path, &options).unwrap();
    assert_eq!(count_events(&reader), total);
}

#[test]
fn second_process_reads_while_the_owner_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("analytics.duckdb");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "processes::child_owner_writes_until_told_to_stop",
            "--ignored",
            "--nocapture",
        ])
        .env(CHILD_PATH_ENV, &path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next_total = |prefix: &str| -> i64 {
        for line in lines.by_ref() {
            let line = line.unwrap();
            if let Some(n) = line.strip_prefix(prefix) {
                return n.trim().parse().unwrap();
            }
        }
        panic!("the child process ended before printing {prefix}");
    };

    let options = AnalyticsOptions {
        lock_timeout: Duration::from_secs(30),
        ..AnalyticsOptions::default()
    };
    let mut seen = Vec::new();
    for _ in 0..5 {
        let acknowledged = next_total("WROTE ");
        // A fresh reader each time, as the CLI would be.
        let reader = AnalyticsStore::open_reader(&path, &options).unwrap();
        let count = count_events(&reader);
        assert!(
            count >= acknowledged,
            "{count} < {acknowledged} acknowledged"
        );
        let report = reader
            .report(TimeWindow::all(), 3, Duration::from_secs(60))
            .unwrap();
        assert!(report.events as i64 >= count);
        seen.push(count);
    }
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");

    drop(child.stdin.take());
    let total = next_total("DONE ");
    assert!(child.wait().unwrap().success());
    let reader = AnalyticsStore::open_reader(&path, &options).unwrap();
    assert_eq!(count_events(&reader), total);
}
