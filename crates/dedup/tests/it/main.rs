//! DedupStore: conformance over MemoryStore, FileStore and SqlStore; chunking properties;
//! damage detection; garbage collection.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers report failures by panicking

mod cancellation;
mod chunking;
mod damage;
mod gc;

use std::sync::Arc;

use hybridstore_core::conformance::Fixture;
use hybridstore_core::{KvStore, MemoryStore};
use hybridstore_dedup::{ChunkerConfig, DedupOptions, DedupStore};
use hybridstore_file::FileStore;
use hybridstore_sql::{SqlStore, SqlStoreOptions};

/// Small chunks (64 B / 256 B / 1 KiB) so that conformance values of a few hundred bytes are
/// already several chunks, and every path (inline, one chunk, many chunks) is exercised.
pub(crate) fn small_chunks() -> DedupOptions {
    let mut options = DedupOptions::default();
    options.chunker = ChunkerConfig {
        min_size: 64,
        avg_size: 256,
        max_size: 1024,
    };
    options.inline_max = 16;
    options.target_pack_size = 64 * 1024;
    options
}

/// Manifests and chunks in two FileStores under one temporary directory.
pub(crate) async fn file_backed(
    options: DedupOptions,
) -> (DedupStore<FileStore>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = open_file_backed(dir.path(), options).await;
    (store, dir)
}

pub(crate) async fn open_file_backed(
    root: &std::path::Path,
    options: DedupOptions,
) -> DedupStore<FileStore> {
    let manifests = FileStore::open(root.join("kv")).await.unwrap();
    let chunks: Arc<dyn KvStore> = Arc::new(FileStore::open(root.join("chunks")).await.unwrap());
    DedupStore::open(manifests, chunks, options).await.unwrap()
}

mod memory_small_chunks_conformance {
    use super::*;
    hybridstore_core::conformance_tests!(|| async {
        let store = DedupStore::open(
            MemoryStore::new(),
            Arc::new(MemoryStore::new()),
            small_chunks(),
        )
        .await
        .unwrap();
        Fixture::new(store)
    });
}

mod memory_default_conformance {
    use super::*;
    hybridstore_core::conformance_tests!(|| async {
        let store = DedupStore::open(
            MemoryStore::new(),
            Arc::new(MemoryStore::new()),
            DedupOptions::default(),
        )
        .await
        .unwrap();
        Fixture::new(store)
    });
}

mod file_conformance {
    use super::*;
    hybridstore_core::conformance_tests!(|| async {
        let (store, dir) = file_backed(small_chunks()).await;
        Fixture::with_guard(store, dir)
    });
}

mod sqlite_conformance {
    use super::*;
    hybridstore_core::conformance_tests!(|| async {
        let dir = tempfile::tempdir().unwrap();
        let manifests =
            SqlStore::open_sqlite_file(dir.path().join("kv.db"), SqlStoreOptions::default())
                .await
                .unwrap();
        let chunks: Arc<dyn KvStore> =
            Arc::new(FileStore::open(dir.path().join("chunks")).await.unwrap());
        let store = DedupStore::open(manifests, chunks, small_chunks())
            .await
            .unwrap();
        Fixture::with_guard(store, dir)
    });
}

mod postgres_conformance {
    use super::*;
    use hybridstore_core::TenantId;
    use hybridstore_sql::testing::PostgresTestDatabase;
    hybridstore_core::conformance_tests!(|| async {
        let db = PostgresTestDatabase::create().await?;
        let manifests =
            SqlStore::open(db.url(), SqlStoreOptions::default().with_max_connections(4))
                .await
                .unwrap();
        // Packs in PostgreSQL too: a chunk backend needs nothing but the KvStore trait.
        let packs = SqlStore::open(db.url(), SqlStoreOptions::default().with_max_connections(4))
            .await
            .unwrap();
        let store = DedupStore::open(
            hybridstore_core::Namespaced::new(manifests, TenantId::new("manifests").unwrap()),
            Arc::new(hybridstore_core::Namespaced::new(
                packs,
                TenantId::new("chunks").unwrap(),
            )),
            // Default chunks: the 64 MiB check would otherwise make 260,000 tiny chunks.
            DedupOptions::default(),
        )
        .await
        .unwrap();
        Some(Fixture::with_guard(store, db))
    });
}
