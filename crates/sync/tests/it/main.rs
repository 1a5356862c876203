//! hybridstore-sync: ObjectStoreKv's conformance on InMemory, LocalFileSystem and SeaweedFS
//! S3, its layout and bounds, and the sync engine.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers report failures by panicking

mod faults;
mod object_kv;
mod sync;
