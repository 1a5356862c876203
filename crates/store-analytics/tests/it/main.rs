//! Integration tests of hybridstore-analytics: reports against known event sets, the
//! per-minute rollups against the events, read-only SQL, Parquet export, the sink under
//! overload and at shutdown, and a second process reading while the owner writes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod processes;
mod reports;
mod rollups;
mod sink;
mod sql;
mod support;
