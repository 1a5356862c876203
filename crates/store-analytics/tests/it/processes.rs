//! A second process reads the database while the owner keeps writing (DuckDB allows one
//! read-write process per file; the store only holds the file while it writes).

use std::io::{BufRead, BufReader, Lines, Write};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use hybridstore_analytics::{AnalyticsOptions, AnalyticsStore, Operation, TimeWindow};

use crate::support::{T0, count_events, ev};

const CHILD_PATH_ENV: &str = "HYBRIDSTORE_ANALYTICS_CHILD_DB";
/// Set when the child is to stream as fast as it can.
const SATURATE_ENV: &str = "HYBRIDSTORE_ANALYTICS_CHILD_SATURATE";

/// The owner process. Paced: offers 100 events every 5 ms (20,000 events/s; the writer
/// writes a batch every 20 ms). Saturating: hands events over with `record_blocking` in a
/// loop, keeping the channel full so the writer holds the file for its longest (1 s) again
/// and again, in batches of 2,000. Prints `WROTE <n>` whenever the count of written events
/// grows, until its stdin closes (or 60 s pass); then closes the store and prints
/// `DONE <total>`.
#[test]
#[ignore = "child process of the tests below"]
fn child_owner_writes_until_told_to_stop() {
    let Some(path) = std::env::var_os(CHILD_PATH_ENV) else {
        return;
    };
    let saturate = std::env::var_os(SATURATE_ENV).is_some();
    let options = AnalyticsOptions {
        flush_interval: Duration::from_millis(20),
        batch_rows: if saturate { 2_000 } else { 122_880 },
        ..AnalyticsOptions::default()
    };
    let store = AnalyticsStore::open(path.as_ref(), options).unwrap();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
        let _ = stop_tx.send(());
    });
    let sink = store.sink();
    let started = Instant::now();
    let mut total = 0i64;
    let mut reported = 0;
    let mut out = std::io::stdout();
    while started.elapsed() < Duration::from_secs(60) && stop_rx.try_recv().is_err() {
        for _ in 0..if saturate { 1_000 } else { 100 } {
            let event = ev(T0 + total, Operation::Get, "k");
            assert!(if saturate {
                sink.record_blocking(event)
            } else {
                sink.record(event)
            });
            total += 1;
        }
        let written = store.stats().written;
        if written > reported {
            reported = written;
            writeln!(out, "WROTE {written}").unwrap();
            out.flush().unwrap();
        }
        if !saturate {
            // The workload's pace, not a synchronisation.
            std::thread::park_timeout(Duration::from_millis(5));
        }
    }
    let stats = store.close();
    assert_eq!((stats.dropped_full, stats.lost), (0, 0), "{stats:?}");
    writeln!(out, "DONE {total}").unwrap();
}

/// The owner as a child process, and its report lines.
struct Owner {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Owner {
    fn start(path: &Path, saturate: bool) -> Owner {
        let mut command = Command::new(std::env::current_exe().unwrap());
        command
            .args([
                "--exact",
                "processes::child_owner_writes_until_told_to_stop",
                "--ignored",
                "--nocapture",
            ])
            .env(CHILD_PATH_ENV, path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        if saturate {
            command.env(SATURATE_ENV, "1");
        }
        let mut child = command.spawn().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Owner { child, lines }
    }

    /// The number on the owner's next line starting with `prefix`.
    fn next_total(&mut self, prefix: &str) -> i64 {
        for line in self.lines.by_ref() {
            let line = line.unwrap();
            if let Some(n) = line.strip_prefix(prefix) {
                return n.trim().parse().unwrap();
            }
        }
        panic!("the child process ended before printing {prefix}");
    }

    fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Tells the owner to stop; returns how many events it recorded in all.
    fn stop(mut self) -> i64 {
        drop(self.child.stdin.take());
        let total = self.next_total("DONE ");
        assert!(self.child.wait().unwrap().success());
        total
    }
}

/// Opens a fresh reader (as the CLI would) after each of `reads` progress lines of the
/// owner; each must see at least what the owner had acknowledged, and counts never go back.
/// Returns the counts seen.
fn read_while_writing(
    owner: &mut Owner,
    path: &Path,
    options: &AnalyticsOptions,
    reads: usize,
) -> Vec<i64> {
    let mut seen = Vec::new();
    for _ in 0..reads {
        let acknowledged = owner.next_total("WROTE ");
        let reader = AnalyticsStore::open_reader(path, options).unwrap();
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
    seen
}

#[test]
fn second_process_reads_while_the_owner_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("analytics.duckdb");
    let mut owner = Owner::start(&path, false);
    let options = AnalyticsOptions {
        lock_timeout: Duration::from_secs(30),
        ..AnalyticsOptions::default()
    };
    read_while_writing(&mut owner, &path, &options, 5);
    let total = owner.stop();
    let reader = AnalyticsStore::open_reader(&path, &options).unwrap();
    assert_eq!(count_events(&reader), total);
}

#[test]
fn readers_get_in_while_the_owner_saturates_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("analytics.duckdb");
    let mut owner = Owner::start(&path, true);
    // The default lock timeout (10 s): a reader that waited for the stream to end would fail.
    let options = AnalyticsOptions::default();
    read_while_writing(&mut owner, &path, &options, 3);
    assert!(owner.is_running(), "the owner was still streaming");
    let total = owner.stop();
    let reader = AnalyticsStore::open_reader(&path, &options).unwrap();
    assert_eq!(count_events(&reader), total);
}

const HOLDER_ENV: &str = "HYBRIDSTORE_ANALYTICS_CHILD_HOLD";

/// A reader process that keeps the database open read-only (as a long `analytics export`
/// does): prints `HELD` once DuckDB let it in, and holds the file until its stdin closes.
#[test]
#[ignore = "child process of the test below"]
fn child_holds_the_database_until_told_to_stop() {
    let Some(path) = std::env::var_os(HOLDER_ENV) else {
        return;
    };
    let config = duckdb::Config::default()
        .access_mode(duckdb::AccessMode::ReadOnly)
        .unwrap();
    let conn = duckdb::Connection::open_with_flags(&path, config).unwrap();
    println!("HELD");
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    drop(conn);
}

/// Regression (issue 15, defect 8): a reader that held the file longer than the writer's
/// lock timeout made the writer drop the batch it was writing (counted lost). Now the batch
/// waits and is written once the reader lets go.
#[test]
fn a_reader_holding_the_file_costs_the_writer_time_not_events() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("analytics.duckdb");
    let options = AnalyticsOptions {
        lock_timeout: Duration::from_millis(200),
        flush_interval: Duration::from_millis(20),
        ..AnalyticsOptions::default()
    };
    let store = AnalyticsStore::open(&path, options).unwrap();
    let mut holder = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "processes::child_holds_the_database_until_told_to_stop",
            "--ignored",
            "--nocapture",
        ])
        .env(HOLDER_ENV, &path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(holder.stdout.take().unwrap()).lines();
    assert!(
        lines.by_ref().any(|l| l.unwrap().trim() == "HELD"),
        "the holder never opened the database"
    );
    for i in 0..500 {
        assert!(store.sink().record(ev(T0 + i, Operation::Get, "k")));
    }
    // The writer tries, waits out its 200 ms lock timeout, and must keep the events.
    let attempt = store.flush();
    assert!(attempt.is_err(), "the file is held: {attempt:?}");
    assert_eq!(store.stats().lost, 0, "{:?}", store.stats());
    drop(holder.stdin.take());
    assert!(holder.wait().unwrap().success());
    store.flush().unwrap();
    let stats = store.stats();
    assert_eq!((stats.written, stats.lost), (500, 0), "{stats:?}");
    assert!(stats.write_retries >= 1, "{stats:?}");
    assert_eq!(count_events(store.reader()), 500);
}
