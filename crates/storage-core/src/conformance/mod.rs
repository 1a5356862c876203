//! The conformance suite: the behaviour of [`KvStore`] as executable checks.
//!
//! Every backend and every layer runs it, the way every `object_store` implementation calls
//! `object_store::integration`. Each check is a public async function taking a fresh, empty
//! store; [`conformance_tests!`](crate::conformance_tests) generates one `#[tokio::test]` per
//! check (plus the model-based property test) from a fixture factory:
//!
//! ```ignore
//! mod memory_store {
//!     use hybridstore_core::{conformance::Fixture, MemoryStore};
//!     hybridstore_core::conformance_tests!(|| async { Fixture::new(MemoryStore::new()) });
//! }
//! ```
//!
//! The checks read [`Capabilities`](crate::Capabilities) to size what they try (the key length
//! limit, whether 64 MiB values are accepted). They panic with a message naming the broken
//! promise, as test assertions do.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod basic;
mod batch;
mod concurrency;
mod hostile;
mod model;
mod provided;
mod scan;
mod streaming;
pub mod vector;

pub use basic::*;
pub use batch::*;
pub use concurrency::*;
pub use hostile::*;
pub use model::model_based;
pub use provided::*;
pub use scan::*;
pub use streaming::*;

use std::any::Any;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use crate::{
    ErrorKind, Expect, Key, KeyRange, KvStore, MAX_CONTENT_TYPE_LEN, MAX_KEY_LEN, ObjectMeta,
    PutOptions, Sha256Digest, WriteBatch,
};

/// Whether tests that need a service (PostgreSQL, Redis, an S3 server) must fail when it is
/// missing instead of skipping loudly: `CI=true` (or `1`).
pub fn services_required() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// A fresh, empty store for one check, with whatever must outlive it (a temporary directory,
/// a server process).
pub struct Fixture {
    store: Arc<dyn KvStore>,
    _guard: Option<Box<dyn Any + Send + Sync>>,
    reusable: bool,
}

impl Fixture {
    /// A fixture that owns only the store.
    pub fn new(store: impl KvStore + 'static) -> Self {
        Fixture {
            store: Arc::new(store),
            _guard: None,
            reusable: false,
        }
    }

    /// A fixture that also keeps `guard` alive until the check ends (dropped after the store).
    pub fn with_guard(store: impl KvStore + 'static, guard: impl Any + Send + Sync) -> Self {
        Fixture {
            store: Arc::new(store),
            _guard: Some(Box::new(guard)),
            reusable: false,
        }
    }

    /// Lets [`model_based`] run all its cases on this one store, emptied with `clear` (and
    /// checked empty) before each, instead of asking the factory for a fresh store per case:
    /// for fixtures that are slow to build, such as a server started per fixture. Every
    /// other check still gets a fresh store.
    pub fn reusable(mut self) -> Self {
        self.reusable = true;
        self
    }

    /// Whether [`reusable`](Self::reusable) was set.
    pub fn is_reusable(&self) -> bool {
        self.reusable
    }

    /// The store under test.
    pub fn store(&self) -> &dyn KvStore {
        self.store.as_ref()
    }

    /// The store under test, shareable across tasks.
    pub fn shared(&self) -> Arc<dyn KvStore> {
        self.store.clone()
    }
}

/// What a fixture factory returns: a [`Fixture`], or `Option<Fixture>` for a backend that
/// needs a service and may skip (returning `None` after printing why).
pub trait MaybeFixture {
    /// The fixture, or `None` to skip the check.
    fn into_fixture(self) -> Option<Fixture>;
}

impl MaybeFixture for Fixture {
    fn into_fixture(self) -> Option<Fixture> {
        Some(self)
    }
}

impl MaybeFixture for Option<Fixture> {
    fn into_fixture(self) -> Option<Fixture> {
        self
    }
}

/// Generates one test per conformance check for the fixture factory `$factory`
/// (an expression of type `Fn() -> impl Future<Output = F>` where `F` is [`Fixture`] or
/// `Option<Fixture>`, see [`MaybeFixture`]). The calling crate needs
/// `tokio` (features `macros`, `rt-multi-thread`) as a dev-dependency.
#[macro_export]
macro_rules! conformance_tests {
    ($factory:expr) => {
        $crate::conformance_tests!(@checks $factory;
            round_trip, overwrite_keeps_created, delete_and_delete_missing, head_metadata,
            scan_order, scan_prefix, scan_range, scan_limit_and_paging, binary_keys,
            batch_applies_in_order, batch_failure_applies_nothing, invalid_input,
            value_of_64_mib, concurrent_tasks, concurrent_preconditions, provided_methods,
            range_reads, cancellation, hostile_key_names,
            put_options_times, streaming);

        #[test]
        fn conformance_model_based() {
            $crate::conformance::model_based($factory);
        }
    };
    (@checks $factory:expr; $($check:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $check() {
                let Some(fixture) =
                    $crate::conformance::MaybeFixture::into_fixture(($factory)().await)
                else {
                    return; // the factory reported why it skipped
                };
                $crate::conformance::$check(&fixture).await;
            }
        )*
    };
}

fn key(s: impl AsRef<[u8]>) -> Key {
    Key::new(Bytes::copy_from_slice(s.as_ref())).unwrap()
}

async fn scan_keys(store: &dyn KvStore, range: KeyRange, limit: Option<usize>) -> Vec<Vec<u8>> {
    let entries: Vec<_> = store.scan(range, limit).try_collect().await.unwrap();
    entries
        .into_iter()
        .map(|e| e.key.as_bytes().to_vec())
        .collect()
}

/// Deterministic pseudo-random bytes (SplitMix64), so large values need no RNG dependency.
fn pattern(len: usize, seed: u64) -> Bytes {
    let mut state = seed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    Bytes::from(out)
}
