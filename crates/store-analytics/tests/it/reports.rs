//! Every report against an event set whose answer is worked out by hand.

use std::time::Duration;

use hybridstore_analytics::{
    CacheHitRates, CacheTier, ErrorRateRow, GrowthRow, HotKey, LatencyRow, Operation, Outcome,
    TenantUsage, TimeWindow,
};
use hybridstore_core::ErrorKind;

use crate::support::{EventExt, SECOND, T0, ev, record_all, store};

#[test]
fn hot_keys_counts_reads_in_the_window_only() {
    let (_dir, _path, store) = store();
    let mut events = Vec::new();
    for i in 0..5 {
        events.push(ev(T0 + i, Operation::Get, "a").bytes(100));
    }
    for i in 0..3 {
        events.push(ev(T0 + i, Operation::GetMany, "b").bytes(10));
    }
    events.push(ev(T0, Operation::GetRange, "c").bytes(7));
    // Before the window: not counted.
    events.push(ev(T0 - SECOND, Operation::Get, "c").bytes(7));
    events.push(ev(T0 - SECOND, Operation::Get, "c").bytes(7));
    // Writes are not reads.
    for i in 0..10 {
        events.push(ev(T0 + i, Operation::Put, "d").bytes(1));
    }
    // Same key text in another tenant is another key.
    events.push(ev(T0, Operation::Get, "a").tenant("t2").bytes(1));
    record_all(&store, events);

    let window = TimeWindow {
        start_us: Some(T0),
        end_us: None,
    };
    let hot = store.reader().hot_keys(window, 3).unwrap();
    let key = |tenant: Option<&str>, k: &str, reads, bytes| HotKey {
        tenant: tenant.map(str::to_string),
        key: Some(k.to_string()),
        key_hash: hybridstore_analytics::key_hash(k.as_bytes()),
        reads,
        bytes,
    };
    assert_eq!(
        hot,
        vec![key(None, "a", 5, 500), key(None, "b", 3, 30), {
            // "c" (1 read) and t2's "a" (1 read) tie; ties go by hash.
            let c = key(None, "c", 1, 7);
            let a2 = key(Some("t2"), "a", 1, 1);
            if c.key_hash < a2.key_hash { c } else { a2 }
        }]
    );
    let all = store.reader().hot_keys(TimeWindow::all(), 10).unwrap();
    let c = all.iter().find(|h| h.key.as_deref() == Some("c")).unwrap();
    assert_eq!((c.reads, c.bytes), (3, 21));
    assert_eq!(all.len(), 4);
}

#[test]
fn latency_percentiles_per_operation_and_backend() {
    let (_dir, _path, store) = store();
    let mut events = Vec::new();
    // 1..=100 µs: p50 = 50, p95 = 95, p99 = 99 under any nearest-rank rule.
    for l in 1..=100u64 {
        events.push(ev(T0, Operation::Get, "k").latency(l));
    }
    // 10, 20, …, 100 µs on another backend.
    for l in 1..=10u64 {
        events.push(ev(T0, Operation::Put, "k").backend("sql").latency(l * 10));
    }
    events.push(ev(T0, Operation::Get, "k").backend("sql").latency(7));
    record_all(&store, events);

    let rows = store
        .reader()
        .latency_percentiles(TimeWindow::all())
        .unwrap();
    let row = |op: &str, backend: &str, calls, p50, p95, p99, max| LatencyRow {
        operation: op.into(),
        backend: backend.into(),
        calls,
        p50_us: p50,
        p95_us: p95,
        p99_us: p99,
        max_us: max,
    };
    assert_eq!(
        rows,
        vec![
            row("get", "file", 100, 50, 95, 99, 100),
            row("get", "sql", 1, 7, 7, 7, 7),
            // Nearest rank ⌈n·q⌉ of 10 sorted values: the 5th, 10th and 10th.
            row("put", "sql", 10, 50, 100, 100, 100),
        ]
    );
}

#[test]
fn cache_hit_rates_per_tier() {
    let (_dir, _path, store) = store();
    let mut events = Vec::new();
    for _ in 0..10 {
        events.push(ev(T0, Operation::Get, "k").tier(CacheTier::L1Hit));
    }
    for _ in 0..6 {
        events.push(ev(T0, Operation::Get, "k").tier(CacheTier::L2Hit));
    }
    for _ in 0..4 {
        events.push(ev(T0, Operation::Get, "k").tier(CacheTier::Miss));
    }
    // Reads without a cache and writes do not count.
    events.push(ev(T0, Operation::Get, "k"));
    events.push(ev(T0, Operation::Put, "k"));
    record_all(&store, events);

    let rates = store.reader().cache_hit_rates(TimeWindow::all()).unwrap();
    assert_eq!(
        rates,
        CacheHitRates {
            lookups: 20,
            l1_hits: 10,
            l2_hits: 6,
            misses: 4,
            l1_hit_rate: Some(0.5),
            l2_hit_rate: Some(0.6),
            overall_hit_rate: Some(0.8),
        }
    );
    let (_dir2, _path2, empty) = crate::support::store();
    let none = empty.reader().cache_hit_rates(TimeWindow::all()).unwrap();
    assert_eq!(none.lookups, 0);
    assert_eq!(none.l1_hit_rate, None);
}

#[test]
fn tenant_usage_follows_last_writes_deletes_and_clears() {
    let (_dir, _path, store) = store();
    let t = |s: i64| T0 + s * SECOND;
    let events = vec![
        ev(t(0), Operation::Put, "k1").tenant("t1").bytes(100),
        ev(t(1), Operation::Put, "k2").tenant("t1").bytes(50),
        ev(t(2), Operation::Put, "k1").tenant("t1").bytes(30),
        ev(t(3), Operation::Delete, "k2").tenant("t1"),
        // A failed put changes nothing.
        ev(t(4), Operation::Put, "k9")
            .tenant("t1")
            .bytes(1000)
            .outcome(Outcome::error(ErrorKind::Timeout)),
        ev(t(0), Operation::Put, "k1").tenant("t2").bytes(10),
        ev(t(1), Operation::BatchPut, "k3").tenant("t2").bytes(20),
        {
            let mut e =
                hybridstore_analytics::AccessEvent::new(Operation::Clear, "file".into(), None);
            e.timestamp_us = t(2);
            e.tenant("t2")
        },
        ev(t(3), Operation::BatchPut, "k4").tenant("t2").bytes(5),
        ev(t(0), Operation::Put, "x").bytes(7),
        // After the window's end: not yet.
        ev(t(10), Operation::Put, "late").tenant("t1").bytes(999),
    ];
    record_all(&store, events);

    let usage = store
        .reader()
        .tenant_usage(TimeWindow {
            start_us: None,
            end_us: Some(t(10)),
        })
        .unwrap();
    let u = |tenant: Option<&str>, objects, bytes| TenantUsage {
        tenant: tenant.map(str::to_string),
        objects,
        bytes,
    };
    assert_eq!(
        usage,
        vec![u(Some("t1"), 1, 30), u(None, 1, 7), u(Some("t2"), 1, 5)]
    );
    let all = store.reader().tenant_usage(TimeWindow::all()).unwrap();
    assert_eq!(all[0], u(Some("t1"), 2, 1029));
}

#[test]
fn growth_per_time_bucket() {
    let (_dir, _path, store) = store();
    let events = vec![
        ev(T0 + SECOND / 10, Operation::Put, "a").bytes(10),
        ev(T0 + SECOND / 2, Operation::BatchPut, "b").bytes(20),
        ev(T0 + 7 * SECOND / 10, Operation::Delete, "a"),
        ev(T0 + 22 * SECOND / 10, Operation::Put, "c").bytes(5),
        ev(T0 + 22 * SECOND / 10, Operation::Get, "c").bytes(5),
    ];
    record_all(&store, events);
    let rows = store
        .reader()
        .growth(TimeWindow::all(), Duration::from_secs(1))
        .unwrap();
    assert_eq!(
        rows,
        vec![
            GrowthRow {
                bucket_start_us: T0,
                puts: 2,
                bytes_written: 30,
                deletes: 1
            },
            GrowthRow {
                bucket_start_us: T0 + 2 * SECOND,
                puts: 1,
                bytes_written: 5,
                deletes: 0
            },
        ]
    );
    let err = store
        .reader()
        .growth(TimeWindow::all(), Duration::ZERO)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
}

#[test]
fn error_rates_per_operation() {
    let (_dir, _path, store) = store();
    let mut events = Vec::new();
    for _ in 0..8 {
        events.push(ev(T0, Operation::Get, "k"));
    }
    events.push(ev(T0, Operation::Get, "k").outcome(Outcome::NOT_FOUND));
    events.push(ev(T0, Operation::Get, "k").outcome(Outcome::error(ErrorKind::Timeout)));
    for _ in 0..3 {
        events.push(ev(T0, Operation::Put, "k"));
    }
    events.push(ev(T0, Operation::Put, "k").outcome(Outcome::error(ErrorKind::InvalidInput)));
    record_all(&store, events);
    let rows = store.reader().error_rates(TimeWindow::all()).unwrap();
    assert_eq!(
        rows,
        vec![
            ErrorRateRow {
                operation: "get".into(),
                calls: 10,
                errors: 1,
                error_rate: 0.1
            },
            ErrorRateRow {
                operation: "put".into(),
                calls: 4,
                errors: 1,
                error_rate: 0.25
            },
        ]
    );
}

#[test]
fn full_report_agrees_with_the_single_reports() {
    let (_dir, _path, store) = store();
    let mut events = Vec::new();
    for i in 0..50u64 {
        let key = format!("k{}", i % 7);
        events.push(
            ev(T0 + i as i64, Operation::Get, &key)
                .latency(i + 1)
                .tier(CacheTier::L1Hit),
        );
        events.push(ev(T0 + i as i64, Operation::Put, &key).bytes(i).tenant("t"));
    }
    record_all(&store, events);
    let r = store.reader();
    let w = TimeWindow::all();
    let report = r.report(w, 5, Duration::from_secs(60)).unwrap();
    assert_eq!(report.events, 100);
    assert_eq!(report.hot_keys, r.hot_keys(w, 5).unwrap());
    assert_eq!(report.latency, r.latency_percentiles(w).unwrap());
    assert_eq!(report.cache, r.cache_hit_rates(w).unwrap());
    assert_eq!(report.tenants, r.tenant_usage(w).unwrap());
    assert_eq!(report.growth, r.growth(w, Duration::from_secs(60)).unwrap());
    assert_eq!(report.errors, r.error_rates(w).unwrap());
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["hot_keys"][0]["reads"], 8);
}
