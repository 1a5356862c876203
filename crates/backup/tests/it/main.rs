//! Integration tests of hybridstore-backup.

mod policy;
