//! Integration tests of hybridstore-cache: the conformance suite over every tier combination,
//! request coalescing, the set-after-delete race, Redis failures, namespacing and secrets.
//! Tests that need Redis start their own `redis-server` (skipped loudly when it is missing,
//! failing under `CI=true`).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod conformance;
mod consistency;
mod degradation;
mod disk;
mod support;
mod tiers;
