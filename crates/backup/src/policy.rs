//! Retention: which snapshots a policy keeps, with restic's `forget` semantics.
//!
//! The rules, as restic's `ApplyPolicy` (`internal/data/snapshot_policy.go`,
//! <https://github.com/restic/restic/blob/master/internal/data/snapshot_policy.go>, and the
//! "Removing snapshots according to a policy" chapter of its manual,
//! <https://restic.readthedocs.io/en/stable/060_forget.html>) define them:
//!
//! - Snapshots are taken newest first. A snapshot is kept if **any** criterion keeps it.
//! - `last n`: the n newest. `hourly n`, `daily n`, `weekly n`, `monthly n`, `yearly n`:
//!   walking newest first, a snapshot whose bucket (its hour, day, ISO 8601 week, month or
//!   year, in the snapshot's own UTC offset) differs from the previous snapshot's bucket is
//!   the newest of its bucket and is kept, until n buckets are used; [`UNLIMITED`] (restic's
//!   `-1`) never runs out. While a counter has not run out, the oldest snapshot is kept
//!   too (it is the newest of its bucket as far as the repository knows; restic 0.17 and
//!   later).
//! - `within d`: every snapshot newer than the newest snapshot's time minus `d` (measured
//!   from the newest snapshot, not from now, so an idle repository keeps its last ones).
//!   `within_hourly d` … `within_yearly d`: the newest snapshot of each bucket among those.
//! - `tags`: every snapshot holding all the tags of at least one of the lists.
//! - The newest snapshot is the newest not in the future (a snapshot with a clock ahead does
//!   not move the window).
//!
//! An empty policy is refused: it would remove every snapshot (restic refuses it since
//! 0.16; 0.14 only warned).

use std::collections::HashSet;
use std::str::FromStr;

use chrono::{DateTime, Datelike, Duration, FixedOffset, NaiveDate, TimeZone, Timelike};
use hybridstore_core::{Error, Result};
use serde::Serialize;

/// A bucket count meaning "every bucket" (restic's `-1`, `--keep-daily unlimited`).
pub const UNLIMITED: u32 = u32::MAX;

/// A calendar span: years, months, days and hours, as restic's `--keep-within` takes it
/// (`1y2m3d4h`, any unit may be left out, `2w` is not a unit). Subtracting it from a time
/// moves the calendar date first, normalising an overflowing day into the next month as
/// Go's `time.AddDate` does (31 March minus one month is 3 March in a common year), then
/// subtracts the hours.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CalendarSpan {
    /// Years.
    pub years: u32,
    /// Months.
    pub months: u32,
    /// Days.
    pub days: u32,
    /// Hours.
    pub hours: u32,
}

impl CalendarSpan {
    /// Whether every part is zero.
    pub fn is_zero(&self) -> bool {
        *self == CalendarSpan::default()
    }

    /// `time` moved back by this span (see the type's docs for the calendar rule); `None` if
    /// that leaves chrono's range.
    pub fn before(&self, time: DateTime<FixedOffset>) -> Option<DateTime<FixedOffset>> {
        let offset = *time.offset();
        let local = time.naive_local();
        let month0 = i64::from(local.year()) * 12 + i64::from(local.month0())
            - i64::from(self.years) * 12
            - i64::from(self.months);
        let year = i32::try_from(month0.div_euclid(12)).ok()?;
        let month = u32::try_from(month0.rem_euclid(12)).ok()? + 1;
        let first = NaiveDate::from_ymd_opt(year, month, 1)?;
        let day_shift = i64::from(local.day()) - 1 - i64::from(self.days);
        let date = first.checked_add_signed(Duration::try_days(day_shift)?)?;
        let moved = date.and_time(local.time());
        let moved = offset.from_local_datetime(&moved).single()?;
        moved.checked_sub_signed(Duration::try_hours(i64::from(self.hours))?)
    }
}

impl FromStr for CalendarSpan {
    type Err = Error;

    /// Parses `1y2m3d4h` (units `y`, `m`, `d`, `h`, each a whole number; repeated units add
    /// up, as in restic).
    fn from_str(text: &str) -> Result<CalendarSpan> {
        let bad = |why: &str| {
            Error::invalid_input(format!(
                "duration {text:?}: {why}; write it as restic does, e.g. 1y6m, 14d or 2d12h"
            ))
        };
        let mut span = CalendarSpan::default();
        let mut digits = String::new();
        for c in text.trim().chars() {
            if c.is_ascii_digit() {
                digits.push(c);
                continue;
            }
            if digits.is_empty() {
                return Err(bad("a unit needs a number before it"));
            }
            let n: u32 = digits.parse().map_err(|_| bad("a number is too large"))?;
            digits.clear();
            let part = match c {
                'y' => &mut span.years,
                'm' => &mut span.months,
                'd' => &mut span.days,
                'h' => &mut span.hours,
                _ => return Err(bad(&format!("unknown unit {c:?} (y, m, d or h)"))),
            };
            *part = part
                .checked_add(n)
                .ok_or_else(|| bad("a number is too large"))?;
        }
        if !digits.is_empty() {
            return Err(bad("a number needs a unit after it"));
        }
        if span.is_zero() && !text.trim().chars().any(|c| c.is_ascii_digit()) {
            return Err(bad("it is empty"));
        }
        Ok(span)
    }
}

impl std::fmt::Display for CalendarSpan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts = [
            (self.years, 'y'),
            (self.months, 'm'),
            (self.days, 'd'),
            (self.hours, 'h'),
        ];
        let mut wrote = false;
        for (n, unit) in parts {
            if n > 0 {
                write!(f, "{n}{unit}")?;
                wrote = true;
            }
        }
        if !wrote {
            write!(f, "0h")?;
        }
        Ok(())
    }
}

/// Which snapshots to keep; every criterion is ORed (see the module docs). Counts of 0 turn
/// a bucket off; [`UNLIMITED`] keeps one snapshot per bucket for all time.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RetentionPolicy {
    /// Keep the `last` newest snapshots.
    pub last: u32,
    /// Keep the newest snapshot of each of the `hourly` newest hours that have one.
    pub hourly: u32,
    /// … of each of the `daily` newest days.
    pub daily: u32,
    /// … of each of the `weekly` newest ISO 8601 weeks.
    pub weekly: u32,
    /// … of each of the `monthly` newest months.
    pub monthly: u32,
    /// … of each of the `yearly` newest years.
    pub yearly: u32,
    /// Keep every snapshot within this span of the newest one.
    pub within: Option<CalendarSpan>,
    /// Keep the newest snapshot of each hour within this span of the newest snapshot.
    pub within_hourly: Option<CalendarSpan>,
    /// … of each day within this span.
    pub within_daily: Option<CalendarSpan>,
    /// … of each ISO week within this span.
    pub within_weekly: Option<CalendarSpan>,
    /// … of each month within this span.
    pub within_monthly: Option<CalendarSpan>,
    /// … of each year within this span.
    pub within_yearly: Option<CalendarSpan>,
    /// Keep every snapshot that has all the tags of at least one of these lists.
    pub tags: Vec<Vec<String>>,
}

impl RetentionPolicy {
    /// Whether the policy keeps nothing at all.
    pub fn is_empty(&self) -> bool {
        let spans = [
            self.within,
            self.within_hourly,
            self.within_daily,
            self.within_weekly,
            self.within_monthly,
            self.within_yearly,
        ];
        [
            self.last,
            self.hourly,
            self.daily,
            self.weekly,
            self.monthly,
            self.yearly,
        ]
        .iter()
        .all(|n| *n == 0)
            && spans.iter().all(|s| s.is_none_or(|s| s.is_zero()))
            && self.tags.iter().all(|t| t.is_empty())
    }
}

impl RetentionPolicy {
    /// Refuses a policy that keeps nothing.
    ///
    /// # Errors
    /// `InvalidInput` if the policy is empty.
    pub fn check(&self) -> Result<()> {
        if self.is_empty() {
            return Err(Error::invalid_input(
                "the retention policy keeps nothing, so it would remove every snapshot; \
                 give at least one --keep-* option",
            ));
        }
        Ok(())
    }
}

/// One snapshot as the policy sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicySnapshot {
    /// The snapshot id (ties in time are broken by id, ascending).
    pub id: String,
    /// When it was taken, in the UTC offset of the host that took it.
    pub time: DateTime<FixedOffset>,
    /// Its tags.
    pub tags: Vec<String>,
}

/// A kept snapshot and every criterion that kept it (restic's wording: "last snapshot",
/// "daily snapshot", "oldest monthly snapshot", "within 7d", "has tags [a b]").
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Kept {
    /// The snapshot id.
    pub id: String,
    /// Why it is kept.
    pub reasons: Vec<String>,
}

/// What [`apply_policy`] decided, newest first in both lists.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PolicyDecision {
    /// Snapshots to keep.
    pub keep: Vec<Kept>,
    /// Ids of snapshots to remove.
    pub remove: Vec<String>,
}

type Bucker = fn(&DateTime<FixedOffset>, usize) -> i64;

fn hour_bucket(t: &DateTime<FixedOffset>, _: usize) -> i64 {
    i64::from(t.year()) * 1_000_000
        + i64::from(t.month()) * 10_000
        + i64::from(t.day()) * 100
        + i64::from(t.hour())
}
fn day_bucket(t: &DateTime<FixedOffset>, _: usize) -> i64 {
    i64::from(t.year()) * 10_000 + i64::from(t.month()) * 100 + i64::from(t.day())
}
fn week_bucket(t: &DateTime<FixedOffset>, _: usize) -> i64 {
    let week = t.iso_week();
    i64::from(week.year()) * 100 + i64::from(week.week())
}
fn month_bucket(t: &DateTime<FixedOffset>, _: usize) -> i64 {
    i64::from(t.year()) * 100 + i64::from(t.month())
}
fn year_bucket(t: &DateTime<FixedOffset>, _: usize) -> i64 {
    i64::from(t.year())
}
fn own_bucket(_: &DateTime<FixedOffset>, nr: usize) -> i64 {
    nr as i64
}

/// Decides which of `snapshots` `policy` keeps, as of `now` (snapshots after `now` do not
/// count as the newest; see the module docs for every rule).
///
/// # Errors
/// `InvalidInput` if the policy is empty.
pub fn apply_policy(
    snapshots: &[PolicySnapshot],
    policy: &RetentionPolicy,
    now: DateTime<FixedOffset>,
) -> Result<PolicyDecision> {
    policy.check()?;
    let mut list: Vec<&PolicySnapshot> = snapshots.iter().collect();
    list.sort_by(|a, b| b.time.cmp(&a.time).then_with(|| a.id.cmp(&b.id)));
    // With every snapshot in the future restic's newest is the zero time, so every
    // `within` keeps everything (`None` here); the buckets apply either way.
    let latest = list.iter().map(|s| s.time).filter(|t| *t < now).max();
    Ok(walk(&list, policy, latest))
}

/// What limits a bucket: a count of buckets (the `--keep-daily N` kind, [`UNLIMITED`] for
/// all) or a window before the newest snapshot (the `--keep-within-daily SPAN` kind).
enum Limit {
    Count(u32),
    Within(CalendarSpan),
}

struct Bucket {
    limit: Limit,
    bucker: Bucker,
    last: Option<i64>,
    reason: &'static str,
}

fn walk(
    list: &[&PolicySnapshot],
    policy: &RetentionPolicy,
    latest: Option<DateTime<FixedOffset>>,
) -> PolicyDecision {
    let counted = [
        (policy.last, own_bucket as Bucker, "last snapshot"),
        (policy.hourly, hour_bucket, "hourly snapshot"),
        (policy.daily, day_bucket, "daily snapshot"),
        (policy.weekly, week_bucket, "weekly snapshot"),
        (policy.monthly, month_bucket, "monthly snapshot"),
        (policy.yearly, year_bucket, "yearly snapshot"),
    ];
    let windowed = [
        (policy.within_hourly, hour_bucket as Bucker, "hourly within"),
        (policy.within_daily, day_bucket, "daily within"),
        (policy.within_weekly, week_bucket, "weekly within"),
        (policy.within_monthly, month_bucket, "monthly within"),
        (policy.within_yearly, year_bucket, "yearly within"),
    ];
    // Counted buckets first, then windowed ones, as restic lists the reasons.
    let mut buckets: Vec<Bucket> = counted
        .into_iter()
        .filter(|(n, _, _)| *n > 0)
        .map(|(n, bucker, reason)| Bucket {
            limit: Limit::Count(n),
            bucker,
            last: None,
            reason,
        })
        .chain(windowed.into_iter().filter_map(|(span, bucker, reason)| {
            span.filter(|s| !s.is_zero()).map(|span| Bucket {
                limit: Limit::Within(span),
                bucker,
                last: None,
                reason,
            })
        }))
        .collect();
    // Whether `time` is after `latest - span` (with no newest snapshot, always).
    let inside = |span: &CalendarSpan, time: &DateTime<FixedOffset>| match latest {
        None => true,
        Some(latest) => span.before(latest).is_none_or(|cutoff| *time > cutoff),
    };
    let oldest = list.len().saturating_sub(1);
    let mut decision = PolicyDecision::default();
    for (nr, snapshot) in list.iter().enumerate() {
        let mut reasons = Vec::new();
        let tags: HashSet<&str> = snapshot.tags.iter().map(String::as_str).collect();
        for wanted in &policy.tags {
            if !wanted.is_empty() && wanted.iter().all(|t| tags.contains(t.as_str())) {
                reasons.push(format!("has tags [{}]", wanted.join(" ")));
            }
        }
        if let Some(span) = policy.within.filter(|s| !s.is_zero())
            && inside(&span, &snapshot.time)
        {
            reasons.push(format!("within {span}"));
        }
        for bucket in &mut buckets {
            let active = match &bucket.limit {
                Limit::Count(n) => *n > 0,
                Limit::Within(span) => inside(span, &snapshot.time),
            };
            if !active {
                continue;
            }
            let value = (bucket.bucker)(&snapshot.time, nr);
            let new_bucket = bucket.last != Some(value);
            if new_bucket || nr == oldest {
                let reason = match &bucket.limit {
                    Limit::Count(_) => bucket.reason.to_string(),
                    Limit::Within(span) => format!("{} {span}", bucket.reason),
                };
                reasons.push(if new_bucket {
                    reason
                } else {
                    format!("oldest {reason}")
                });
                bucket.last = Some(value);
                if let Limit::Count(n) = &mut bucket.limit
                    && *n != UNLIMITED
                {
                    *n -= 1;
                }
            }
        }
        if reasons.is_empty() {
            decision.remove.push(snapshot.id.clone());
        } else {
            decision.keep.push(Kept {
                id: snapshot.id.clone(),
                reasons,
            });
        }
    }
    decision
}
