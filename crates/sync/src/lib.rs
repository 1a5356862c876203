//! Sync for hybridstore: [`ObjectStoreKv`], a `KvStore` on any `object_store` store (S3 and
//! S3-compatible servers, a local directory, memory), and the [`SyncEngine`] between a local
//! store and a remote one (push, pull, two-way with conflict policies, tombstones, chunks
//! sent once in packs).
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use hybridstore_core::{Key, KvStore};
//! use hybridstore_sync::{ObjectStoreKv, ObjectStoreKvOptions, RemoteUrl};
//!
//! let remote: RemoteUrl = "memory://".parse()?;
//! let kv = ObjectStoreKv::open_url(&remote, &[], ObjectStoreKvOptions::default()).await?;
//! kv.put(&Key::new("notes/today.md")?, "# Today".into()).await?;
//! assert_eq!(kv.get(&Key::new("notes/today.md")?).await?.as_deref(), Some(&b"# Today"[..]));
//! # Ok::<(), hybridstore_core::Error>(())
//! # }).unwrap();
//! ```
//!
//! # Cargo features
//!
//! None.

mod engine;
mod errors;
mod object_kv;

pub use engine::plan::{ConflictPolicy, Direction, Side};
pub use engine::{
    ConflictReport, INLINE_MAX, LOG_PREFIX, Remote, SyncEngine, SyncOptions, SyncProgress,
    SyncReport, SyncStatus,
};

pub use object_kv::{
    HEADER_LEN, ObjectStoreKv, ObjectStoreKvOptions, RemoteUrl, S3_MAX_OBJECT_KEY_LEN, SEGMENT_HEX,
};
