//! Integration tests of LanceVectorStore on a local directory.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod collections;
mod conformance;
mod filters;
mod import;
mod indexes;
mod s3;
mod search;
mod support;
mod tenants;
mod versions;
