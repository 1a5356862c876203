//! Versioned reads (seed 004): every write to a Lance table makes a new version; a
//! [`CollectionAtVersion`] reads one collection as it was at an earlier version, and
//! [`LanceVectorStore::rollback`] makes an earlier version the current one again.
//!
//! Versions live until LanceDB's `optimize` prunes them (older than 7 days, see
//! [`LanceVectorStore::optimize`]); reading or restoring a pruned version fails with
//! `NotFound`.

use super::*;

/// One version of a collection: its number and when it was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CollectionVersion {
    /// The version number (LanceDB's; 1 is the empty table `create_collection` made).
    pub version: u64,
    /// When the version was committed.
    pub committed: SystemTime,
}

/// One collection as it was at one version: reads only (counts, gets, k-NN, full-text and
/// hybrid search), each seeing exactly that version whatever is written meanwhile. Made by
/// [`LanceVectorStore::at_version`]; for a tenant-scoped store, only the tenant's records.
#[derive(Clone, Debug)]
pub struct CollectionAtVersion {
    /// A store whose only open table is the checked-out one.
    store: LanceVectorStore,
    collection: String,
    version: u64,
}

impl CollectionAtVersion {
    /// The version read.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The collection read.
    pub fn collection(&self) -> &str {
        &self.collection
    }

    /// Live records at this version matching `filter` (expiry judged by today's clock).
    ///
    /// # Errors
    /// As [`VectorStore::count`].
    pub async fn count(&self, filter: Option<&Filter>) -> Result<u64> {
        self.store.count(&self.collection, filter).await
    }

    /// The records with these ids at this version.
    ///
    /// # Errors
    /// As [`VectorStore::get`].
    pub async fn get(&self, ids: &[String]) -> Result<Vec<VectorRecord>> {
        self.store.get(&self.collection, ids).await
    }

    /// k-NN search at this version.
    ///
    /// # Errors
    /// As [`VectorStore::search`].
    pub async fn search(
        &self,
        query: &hybridstore_core::vector::VectorQuery,
    ) -> Result<Vec<SearchHit>> {
        self.store.search(&self.collection, query).await
    }

    /// Full-text search at this version.
    ///
    /// # Errors
    /// As [`LanceVectorStore::text_search`].
    pub async fn text_search(&self, query: &TextQuery) -> Result<Vec<SearchHit>> {
        self.store.text_search(&self.collection, query).await
    }
}

impl LanceVectorStore {
    /// The current version of `collection`.
    ///
    /// # Errors
    /// `NotFound` for a missing collection; LanceDB errors.
    pub async fn version(&self, collection: &str) -> Result<u64> {
        let (table, _, _) = self.table(collection).await?;
        table.version().await.map_err(lance_error)
    }

    /// Every version of `collection` still kept, oldest first.
    ///
    /// # Errors
    /// `NotFound` for a missing collection; LanceDB errors.
    pub async fn versions(&self, collection: &str) -> Result<Vec<CollectionVersion>> {
        let (table, _, _) = self.table(collection).await?;
        let mut versions: Vec<CollectionVersion> = table
            .list_versions()
            .await
            .map_err(lance_error)?
            .into_iter()
            .map(|v| CollectionVersion {
                version: v.version,
                committed: SystemTime::from(v.timestamp),
            })
            .collect();
        versions.sort_by_key(|v| v.version);
        Ok(versions)
    }

    /// A table handle of its own for `collection`, checked out at `version`.
    async fn checked_out(&self, collection: &str, version: u64) -> Result<Table> {
        validate_collection_name(collection)?;
        let table = self
            .db
            .open_table(collection)
            .execute()
            .await
            .map_err(|e| lance_error(e).with_context("collection", collection))?;
        table
            .checkout(version)
            .await
            .map_err(|e| lance_error(e).with_context("version", version))?;
        Ok(table)
    }

    /// `collection` as it was at `version`, for reads (see [`CollectionAtVersion`]). The
    /// store's own handles are untouched: its reads and writes still see the latest version.
    ///
    /// # Errors
    /// `NotFound` for a missing collection or a version that does not exist (or was pruned);
    /// LanceDB errors.
    pub async fn at_version(&self, collection: &str, version: u64) -> Result<CollectionAtVersion> {
        let table = self.checked_out(collection, version).await?;
        let schema = table.schema().await.map_err(lance_error)?;
        let spec = Arc::new(schema::spec_of(&schema, collection)?);
        let tables = HashMap::from([(collection.to_string(), (table, spec, schema))]);
        Ok(CollectionAtVersion {
            store: LanceVectorStore {
                tables: Arc::new(Mutex::new(tables)),
                ..self.clone()
            },
            collection: collection.to_string(),
            version,
        })
    }

    /// Rolls `collection` back to `version`: its content becomes that version's again, as a
    /// new version on top (LanceDB `restore`; later versions stay readable until pruned).
    /// Returns the new current version. Rolls back every tenant's records: a tenant-scoped
    /// store refuses.
    ///
    /// # Errors
    /// `InvalidInput` on a tenant-scoped store; `NotFound` for a missing collection or
    /// version; LanceDB errors.
    pub async fn rollback(&self, collection: &str, version: u64) -> Result<u64> {
        if self.scope.is_some() {
            return Err(Error::invalid_input(
                "a rollback restores every tenant's records: roll back through the unscoped store",
            ));
        }
        let table = self.checked_out(collection, version).await?;
        table.restore().await.map_err(lance_error)?;
        // The cached handle reopens at the new version, with that version's spec.
        self.tables
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(collection);
        self.version(collection).await
    }
}
