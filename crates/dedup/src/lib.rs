//! Deduplication for hybridstore: content-defined chunking, a content-addressed chunk store in
//! pack files, the [`DedupStore`] layer, and garbage collection.
//!
//! ```text
//!   value ──FastCDC──▶ chunks ──SHA-256──▶ ids ──(new ones) LZ4──▶ open pack ──put──▶ packs/<id>
//!     │                                                                       (chunk backend)
//!     └──▶ manifest: ordered (id, length) + whole-value SHA-256 ──put──▶ inner KvStore
//! ```
//!
//! - [`ChunkerConfig`]: FastCDC v2020 cut points on a slice or an async reader.
//! - [`ChunkStore`]: blobs (raw or LZ4, with a header that says which) in pack files with an
//!   index at their end, on any [`KvStore`](hybridstore_core::KvStore); group commit; an
//!   in-memory index loaded at open.
//! - [`DedupStore`]: a `KvStore` layer storing manifests in an inner store; passes the
//!   storage-core conformance suite; reads verify every chunk and the whole value.
//! - [`DedupStore::collect_garbage`]: mark from manifests and sweep, with a grace period,
//!   safe with concurrent writers and after a crash.
//! - [`DedupStats`]: logical and stored bytes, chunk count, dedup and compression ratios.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use std::sync::Arc;
//! use hybridstore_core::{Key, KvStore, MemoryStore};
//! use hybridstore_dedup::{DedupOptions, DedupStore};
//!
//! let store = DedupStore::open(MemoryStore::new(), Arc::new(MemoryStore::new()),
//!                              DedupOptions::default()).await?;
//! let text = "the same paragraph, again and again. ".repeat(4000); // 148 KB
//! store.put(&Key::new("a.txt")?, text.clone().into()).await?;
//! store.put(&Key::new("b.txt")?, text.clone().into()).await?;   // shares every chunk
//! assert_eq!(store.get(&Key::new("b.txt")?).await?.as_deref(), Some(text.as_bytes()));
//! let stats = store.dedup_stats().await?;
//! assert!(stats.dedup_ratio >= 2.0);
//! assert!(stats.compression_ratio > 1.0);
//! # Ok::<(), hybridstore_core::Error>(())
//! # }).unwrap();
//! ```
//!
//! # Cargo features
//!
//! None.

mod chunk;
mod chunk_store;
mod chunker;
mod encode;
mod gc;
mod manifest;
mod pack;
mod store;

pub use chunk::{BLOB_HEADER_LEN, ChunkId, MAX_CHUNK_LEN, decode_blob, encode_blob};
pub use chunk_store::{
    BlobLocation, ChunkStore, ChunkStoreStats, DEFAULT_TARGET_PACK_SIZE, OpenReport, PACK_PREFIX,
    PackCheck, PackSummary,
};
pub use chunker::ChunkerConfig;
pub use gc::{GcOptions, GcReport};
pub use manifest::{ChunkList, Manifest};
pub use store::{DedupOptions, DedupStats, DedupStore};
