//! Integration tests of hybridstore-backup.

mod policy;
mod repo;
