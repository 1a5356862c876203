//! hybridstore-backup: retention against a hand-worked table of restic's rules, and
//! repositories on a FileStore (round trips, incremental cost, damage, locks, prune), and
//! kill -9 during backups.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers report failures by panicking

mod crash;
mod crypto;
mod policy;
mod repo;
