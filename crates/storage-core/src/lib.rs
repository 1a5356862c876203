//! The core of hybridstore: the [`KvStore`] trait every backend and layer implements, its
//! types ([`Key`], [`KeyRange`], [`ObjectMeta`], [`WriteBatch`]), the one [`Error`] type,
//! the in-memory reference store [`MemoryStore`], the tenant layer [`Namespaced`], and — behind
//! the `testing` feature — the `conformance` suite that every backend and layer runs.
//!
//! This crate has no storage engine of its own and depends on none: backends live in their own
//! crates (`hybridstore-file`, `hybridstore-sql`, …) and the `hybridstore` facade composes them.
//!
//! ```
//! # futures::executor::block_on(async {
//! use hybridstore_core::{Expect, Key, KeyRange, KvStore, MemoryStore, WriteBatch};
//! use futures::TryStreamExt;
//!
//! let store = MemoryStore::new();
//! store.put(&Key::new("docs/a")?, "alpha".into()).await?;
//!
//! // Atomic batch with a precondition: create "docs/b" only if it does not exist yet.
//! let mut batch = WriteBatch::new();
//! batch.expect(Key::new("docs/b")?, Expect::Absent).put(Key::new("docs/b")?, "beta");
//! store.write_batch(batch).await?;
//!
//! let keys = store.list_keys(KeyRange::prefix("docs/"), None).await?;
//! assert_eq!(keys.len(), 2);
//! let meta = store.head(&Key::new("docs/a")?).await?.expect("exists");
//! assert_eq!(meta.size, 5);
//! # Ok::<(), hybridstore_core::Error>(())
//! # }).unwrap();
//! ```
//!
//! # Cargo features
//!
//! - `testing`: the conformance suites (`conformance`, `conformance::vector`), the kill -9
//!   harness (`crash`), misbehaving stores for layer tests (`fault`), real services
//!   (`services::SeaweedS3`, a private S3-compatible server) and the benchmark report helpers
//!   (`bench_report`). Off by default; backends enable it for their tests.

mod barrier;
mod batch;
mod completion;
mod context;
mod cpu;
mod error;
mod forward;
mod key;
mod memory;
mod meta;
mod namespace;
pub mod raw;
mod secret;
mod store;
pub mod vector;
pub mod verify;
mod write_order;

#[cfg(feature = "testing")]
pub mod bench_report;
#[cfg(feature = "testing")]
pub mod conformance;
#[cfg(feature = "testing")]
pub mod crash;
#[cfg(feature = "testing")]
pub mod fault;
#[cfg(feature = "testing")]
pub mod services;

pub use barrier::{Barrier, BarrierHold, WriteBarrier};
pub use batch::{BatchOp, Expect, WriteBatch};
pub use context::ErrorContext;
pub use error::{Error, ErrorKind, Result};
pub use key::{Key, KeyRange, MAX_KEY_LEN, prefix_successor};
pub use memory::MemoryStore;
pub use meta::{
    MAX_CONTENT_TYPE_LEN, MAX_TIME_SINCE_EPOCH, ObjectMeta, PutOptions, Sha256Digest,
    nanos_since_epoch,
};
pub use namespace::{MAX_TENANT_LEN, Namespaced, TENANT_KEY_PREFIX, TenantId};
pub use secret::{SecretUrl, is_secret_parameter};
pub use store::{
    Capabilities, Entry, EntryStream, KvStore, MetaEntry, MetaStream, StoreStats, ValueReader,
    ValueStream,
};

pub use bytes::Bytes;
