//! hybridstore-backup: retention against a hand-worked table of restic's rules, and
//! repositories on a FileStore (round trips, incremental cost, damage, locks, prune).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers report failures by panicking

mod policy;
mod repo;
