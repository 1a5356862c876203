//! Retention against a table of snapshot times and policies, the kept sets worked out by
//! hand from restic's rules (`internal/data/snapshot_policy.go`): buckets walked newest
//! first, every criterion ORed, the oldest snapshot kept while a counter has not run out,
//! `within` measured from the newest snapshot that is not in the future.
//!
//! Calendar notes for the table: 1 January 2026 is a Thursday, so ISO week 2026-W01 runs
//! from Monday 29 December 2025 to Sunday 4 January 2026, 2026 has 53 ISO weeks, and
//! 1 January 2027 (a Friday) is in 2026-W53.

use chrono::{DateTime, FixedOffset};
use hybridstore_backup::{CalendarSpan, PolicySnapshot, RetentionPolicy, UNLIMITED, apply_policy};
use hybridstore_core::ErrorKind;

fn t(text: &str) -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339(text).expect("a valid time in the table")
}

fn snap(id: &str, time: &str, tags: &[&str]) -> PolicySnapshot {
    PolicySnapshot {
        id: id.to_string(),
        time: t(time),
        tags: tags.iter().map(|s| s.to_string()).collect(),
    }
}

fn table() -> Vec<PolicySnapshot> {
    vec![
        snap("s01", "2026-01-01T10:00:00Z", &[]),
        snap("s02", "2026-01-01T11:30:00Z", &["weekly"]),
        snap("s03", "2026-01-01T11:45:00Z", &[]),
        snap("s04", "2026-01-02T09:00:00Z", &["weekly", "manual"]),
        snap("s05", "2026-01-05T08:00:00Z", &[]), // Monday, W02
        snap("s06", "2026-01-11T23:00:00Z", &["manual"]), // Sunday, W02
        snap("s07", "2026-01-12T00:30:00Z", &[]), // Monday, W03
        snap("s08", "2026-02-01T12:00:00Z", &[]), // Sunday, W05
        snap("s09", "2026-02-28T12:00:00Z", &[]), // Saturday, W09
        snap("s10", "2026-03-01T12:00:00Z", &[]), // Sunday, W09
        snap("s11", "2027-01-01T00:00:00Z", &[]), // Friday, 2026-W53
    ]
}

fn span(text: &str) -> CalendarSpan {
    text.parse().expect("a valid span in the table")
}

fn kept(snapshots: &[PolicySnapshot], policy: &RetentionPolicy) -> Vec<String> {
    let decision =
        apply_policy(snapshots, policy, t("2027-06-01T00:00:00Z")).expect("a non-empty policy");
    assert_eq!(
        decision.keep.len() + decision.remove.len(),
        snapshots.len(),
        "every snapshot is either kept or removed"
    );
    let mut ids: Vec<String> = decision.keep.into_iter().map(|k| k.id).collect();
    ids.sort();
    ids
}

fn ids(list: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = list.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

#[test]
fn the_policy_table_keeps_what_restics_rules_keep() {
    let cases: Vec<(&str, RetentionPolicy, Vec<&str>)> = vec![
        (
            "last 3",
            RetentionPolicy {
                last: 3,
                ..Default::default()
            },
            vec!["s11", "s10", "s09"],
        ),
        (
            "daily 4: the four newest days",
            RetentionPolicy {
                daily: 4,
                ..Default::default()
            },
            vec!["s11", "s10", "s09", "s08"],
        ),
        (
            "hourly unlimited: s02 shares its hour with the newer s03",
            RetentionPolicy {
                hourly: UNLIMITED,
                ..Default::default()
            },
            vec![
                "s01", "s03", "s04", "s05", "s06", "s07", "s08", "s09", "s10", "s11",
            ],
        ),
        (
            "weekly 3: s09 shares W09 with the newer s10",
            RetentionPolicy {
                weekly: 3,
                ..Default::default()
            },
            vec!["s11", "s10", "s08"],
        ),
        (
            "monthly 2",
            RetentionPolicy {
                monthly: 2,
                ..Default::default()
            },
            vec!["s11", "s10"],
        ),
        (
            "monthly 10: counters left over, so the oldest is kept too",
            RetentionPolicy {
                monthly: 10,
                ..Default::default()
            },
            vec!["s11", "s10", "s09", "s07", "s01"],
        ),
        (
            "yearly unlimited: the newest of each year, and the oldest",
            RetentionPolicy {
                yearly: UNLIMITED,
                ..Default::default()
            },
            vec!["s11", "s10", "s01"],
        ),
        (
            "within 2m of the newest (2026-11-01 on)",
            RetentionPolicy {
                within: Some(span("2m")),
                ..Default::default()
            },
            vec!["s11"],
        ),
        (
            "within 11m of the newest (2026-02-01T00:00 on)",
            RetentionPolicy {
                within: Some(span("11m")),
                ..Default::default()
            },
            vec!["s11", "s10", "s09", "s08"],
        ),
        (
            "hourly within 1y: everything is inside, s02 shares an hour",
            RetentionPolicy {
                within_hourly: Some(span("1y")),
                ..Default::default()
            },
            vec![
                "s01", "s03", "s04", "s05", "s06", "s07", "s08", "s09", "s10", "s11",
            ],
        ),
        (
            "weekly within 11m: s09 shares W09 with s10",
            RetentionPolicy {
                within_weekly: Some(span("11m")),
                ..Default::default()
            },
            vec!["s11", "s10", "s08"],
        ),
        (
            "tags manual AND weekly",
            RetentionPolicy {
                tags: vec![vec!["manual".into(), "weekly".into()]],
                ..Default::default()
            },
            vec!["s04"],
        ),
        (
            "tags manual OR weekly",
            RetentionPolicy {
                tags: vec![vec!["manual".into()], vec!["weekly".into()]],
                ..Default::default()
            },
            vec!["s02", "s04", "s06"],
        ),
        (
            "last 1 + daily 2 + tag manual, ORed",
            RetentionPolicy {
                last: 1,
                daily: 2,
                tags: vec![vec!["manual".into()]],
                ..Default::default()
            },
            vec!["s11", "s10", "s06", "s04"],
        ),
    ];
    let snapshots = table();
    for (name, policy, expected) in cases {
        assert_eq!(kept(&snapshots, &policy), ids(&expected), "{name}");
    }
}

#[test]
fn reasons_name_every_criterion_that_kept_a_snapshot() {
    let policy = RetentionPolicy {
        last: 1,
        monthly: 10,
        tags: vec![vec!["manual".into()]],
        ..Default::default()
    };
    let decision = apply_policy(&table(), &policy, t("2027-06-01T00:00:00Z")).unwrap();
    let reasons = |id: &str| {
        decision
            .keep
            .iter()
            .find(|k| k.id == id)
            .map(|k| k.reasons.clone())
            .unwrap_or_default()
    };
    assert_eq!(reasons("s11"), vec!["last snapshot", "monthly snapshot"]);
    assert_eq!(reasons("s06"), vec!["has tags [manual]"]);
    assert_eq!(reasons("s01"), vec!["oldest monthly snapshot"]);
    // Newest first in both lists.
    assert_eq!(decision.keep.first().map(|k| k.id.as_str()), Some("s11"));
    assert_eq!(decision.remove.first().map(String::as_str), Some("s08"));
}

#[test]
fn buckets_use_each_snapshots_own_utc_offset() {
    // In UTC, a and b fall on 2 January; in their own offsets a is on 1 January.
    let snapshots = vec![
        snap("a", "2026-01-01T23:30:00-05:00", &[]), // 2026-01-02T04:30Z
        snap("b", "2026-01-02T01:00:00+00:00", &[]),
        snap("c", "2026-01-01T22:00:00+00:00", &[]),
    ];
    let policy = RetentionPolicy {
        daily: UNLIMITED,
        ..Default::default()
    };
    assert_eq!(kept(&snapshots, &policy), ids(&["a", "b", "c"]));
}

#[test]
fn a_snapshot_in_the_future_does_not_move_the_within_window() {
    let mut snapshots = table();
    snapshots.push(snap("s12", "2030-01-01T00:00:00Z", &[]));
    let policy = RetentionPolicy {
        within: Some(span("2m")),
        ..Default::default()
    };
    // Measured from s11, the newest not after "now" (2027-06-01); s12 is after the cutoff.
    assert_eq!(kept(&snapshots, &policy), ids(&["s11", "s12"]));
}

#[test]
fn equal_times_are_ordered_by_id() {
    let snapshots = vec![
        snap("b", "2026-05-01T10:00:00Z", &[]),
        snap("a", "2026-05-01T10:00:00Z", &[]),
        snap("c", "2026-04-01T10:00:00Z", &[]),
    ];
    let policy = RetentionPolicy {
        last: 1,
        ..Default::default()
    };
    assert_eq!(kept(&snapshots, &policy), ids(&["a"]));
}

#[test]
fn an_empty_policy_is_refused() {
    let err = apply_policy(
        &table(),
        &RetentionPolicy::default(),
        t("2027-06-01T00:00:00Z"),
    )
    .expect_err("an empty policy removes everything");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    let zero = RetentionPolicy {
        within: Some(span("0d")),
        tags: vec![vec![]],
        ..Default::default()
    };
    assert!(apply_policy(&table(), &zero, t("2027-06-01T00:00:00Z")).is_err());
}

#[test]
fn spans_parse_like_restic_and_move_the_calendar_like_go() {
    assert_eq!(
        span("1y2m3d4h"),
        CalendarSpan {
            years: 1,
            months: 2,
            days: 3,
            hours: 4
        }
    );
    assert_eq!(span("2d12h").to_string(), "2d12h");
    for bad in ["", "d", "3", "2w", "1y-2m", "99999999999d"] {
        assert!(
            bad.parse::<CalendarSpan>().is_err(),
            "{bad:?} must not parse"
        );
    }
    // Go's AddDate normalises 31 February to 3 March.
    assert_eq!(
        span("1m").before(t("2026-03-31T12:00:00Z")),
        Some(t("2026-03-03T12:00:00Z"))
    );
    assert_eq!(
        span("1d").before(t("2026-03-01T12:00:00Z")),
        Some(t("2026-02-28T12:00:00Z"))
    );
    assert_eq!(
        span("1y").before(t("2028-02-29T00:00:00Z")),
        Some(t("2027-03-01T00:00:00Z"))
    );
    assert_eq!(
        span("25h").before(t("2026-01-02T00:30:00+02:00")),
        Some(t("2025-12-31T23:30:00+02:00"))
    );
}
