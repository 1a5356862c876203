//! The VectorStore conformance suite (`hybridstore_core::conformance::vector`) on a local
//! path, on SeaweedFS S3, and through a tenant scope whose collections also hold another
//! tenant's records.

use hybridstore_core::conformance::vector::VectorFixture;
use hybridstore_core::services::SeaweedS3;
use hybridstore_core::vector::{
    CollectionInfo, CollectionSpec, Filter, SearchHit, VectorCapabilities, VectorQuery,
    VectorRecord, VectorStore,
};
use hybridstore_core::{Result, TenantId};
use hybridstore_vector::{LanceOptions, LanceVectorStore};

mod local {
    use super::*;

    hybridstore_core::vector_conformance_tests!(|| async {
        let dir = tempfile::tempdir().unwrap();
        let store = LanceVectorStore::open(dir.path().to_str().unwrap(), LanceOptions::default())
            .await
            .unwrap();
        VectorFixture::with_guard(store, dir)
    });
}

mod s3 {
    use super::*;

    hybridstore_core::vector_conformance_tests!(|| async {
        let s3 = SeaweedS3::start()?;
        let options = LanceOptions {
            storage_options: s3.storage_options(),
            ..LanceOptions::default()
        };
        let store = LanceVectorStore::open(&s3.uri("conformance"), options)
            .await
            .unwrap();
        Some(VectorFixture::with_guard(store, s3))
    });
}

mod tenant_scope {
    use super::*;

    hybridstore_core::vector_conformance_tests!(|| async {
        let dir = tempfile::tempdir().unwrap();
        let root = LanceVectorStore::open(dir.path().to_str().unwrap(), LanceOptions::default())
            .await
            .unwrap();
        let store = Neighboured {
            scoped: root.for_tenant(TenantId::new("tenant-a").unwrap(), None),
            neighbour: root.for_tenant(TenantId::new("tenant-b").unwrap(), None),
        };
        VectorFixture::with_guard(store, dir)
    });
}

/// A tenant's scope over collections that another tenant writes to as well: every collection
/// the suite creates also gets one record of `tenant-b`'s, so a count, search, get or delete
/// that leaked across the scope would fail the suite's exact expectations.
#[derive(Debug)]
struct Neighboured {
    scoped: LanceVectorStore,
    neighbour: LanceVectorStore,
}

#[async_trait::async_trait]
impl VectorStore for Neighboured {
    fn capabilities(&self) -> VectorCapabilities {
        self.scoped.capabilities()
    }
    async fn create_collection(&self, spec: &CollectionSpec) -> Result<CollectionInfo> {
        let info = self.scoped.create_collection(spec).await?;
        let vector = vec![1.0; spec.dimension];
        // The same id the suite uses first, so a get or delete by id that ignored the scope
        // would find it too.
        let record = VectorRecord::new("a", vector).with_text("the neighbour's");
        self.neighbour.add(&spec.name, vec![record]).await?;
        Ok(info)
    }
    async fn list_collections(&self) -> Result<Vec<String>> {
        self.scoped.list_collections().await
    }
    async fn describe_collection(&self, name: &str) -> Result<CollectionInfo> {
        self.scoped.describe_collection(name).await
    }
    async fn drop_collection(&self, name: &str) -> Result<()> {
        self.scoped.drop_collection(name).await
    }
    async fn count(&self, collection: &str, filter: Option<&Filter>) -> Result<u64> {
        self.scoped.count(collection, filter).await
    }
    async fn add(&self, collection: &str, records: Vec<VectorRecord>) -> Result<()> {
        self.scoped.add(collection, records).await
    }
    async fn upsert(&self, collection: &str, records: Vec<VectorRecord>) -> Result<()> {
        self.scoped.upsert(collection, records).await
    }
    async fn delete_ids(&self, collection: &str, ids: &[String]) -> Result<u64> {
        self.scoped.delete_ids(collection, ids).await
    }
    async fn delete_where(&self, collection: &str, filter: &Filter) -> Result<u64> {
        self.scoped.delete_where(collection, filter).await
    }
    async fn get(&self, collection: &str, ids: &[String]) -> Result<Vec<VectorRecord>> {
        self.scoped.get(collection, ids).await
    }
    async fn search(&self, collection: &str, query: &VectorQuery) -> Result<Vec<SearchHit>> {
        self.scoped.search(collection, query).await
    }
}
