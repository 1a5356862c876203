//! LanceDB vectors for hybridstore: collections, filtered k-NN, vector and scalar indexes,
//! full-text and hybrid search, TTL and tenants.
//!
//! [`LanceVectorStore`] implements [`hybridstore_core::vector::VectorStore`] on LanceDB 0.41
//! (a local directory, or `s3://bucket/prefix` with storage options for any S3-compatible
//! server). Each collection is one Lance table whose schema carries the collection's spec;
//! records are written as Arrow record batches; filters are DataFusion expression trees built
//! from [`Filter`] (values are literals, never spliced text); searches pre-filter by default
//! and never return expired records.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use hybridstore_core::vector::{CollectionSpec, Distance, FieldType, Filter, VectorQuery, VectorRecord, VectorStore};
//! use hybridstore_vector::{LanceOptions, LanceVectorStore};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let store = LanceVectorStore::open(dir.path().to_str().unwrap(), LanceOptions::default()).await?;
//! let spec = CollectionSpec::new("docs", 3, Distance::Cosine).with_field("kind", FieldType::String);
//! store.create_collection(&spec).await?;
//! store.add("docs", vec![
//!     VectorRecord::new("a", vec![1.0, 0.0, 0.0]).with_field("kind", "guide"),
//!     VectorRecord::new("b", vec![0.0, 1.0, 0.0]).with_field("kind", "api"),
//! ]).await?;
//! let query = VectorQuery::new(vec![0.9, 0.1, 0.0], 5).with_filter(Filter::eq("kind", "api"));
//! let hits = store.search("docs", &query).await?;
//! assert_eq!(hits.len(), 1);
//! assert_eq!(hits[0].id, "b");
//! # Ok::<(), hybridstore_core::Error>(())
//! # }).unwrap();
//! ```
//!
//! # Cargo features
//!
//! None. (The S3 test server its tests use is `hybridstore_core::services::SeaweedS3`.)

mod errors;
mod filter;
pub mod import;
mod indexes;
mod query;
mod schema;
mod store;
mod text;
mod versions;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::errors::lance_error;
use arrow_array::{RecordBatch, RecordBatchIterator};
use async_trait::async_trait;
use futures::TryStreamExt;
use hybridstore_core::vector::{
    CollectionInfo, CollectionSpec, Distance, FieldType, Filter, MAX_K, SearchHit,
    VectorCapabilities, VectorQuery, VectorRecord, VectorStore, check_vector,
    validate_collection_name,
};
use hybridstore_core::{Error, ErrorKind, Result, TenantId};
use lancedb::expr::{DfExpr, col, lit};
use lancedb::index::Index;
use lancedb::index::scalar::{
    BTreeIndexBuilder, FtsIndexBuilder, FullTextSearchQuery, LabelListIndexBuilder,
};
use lancedb::index::vector::{IvfHnswSqIndexBuilder, IvfPqIndexBuilder};
use lancedb::query::{ExecutableQuery, QueryBase, QueryExecutionOptions, Select};
use lancedb::table::OptimizeAction;
use lancedb::{Connection, DistanceType, Table};

pub use import::{
    IdSource, ImportError, ImportFormat, ImportOptions, ImportProgress, ImportReport, import_file,
};
pub use indexes::{IndexSpec, MIN_ROWS_FOR_VECTOR_INDEX};
use query::{check_k, distance_type, hits};
pub use schema::SPEC_METADATA_KEY;
pub use text::{HybridQuery, TextQuery};
pub use versions::{CollectionAtVersion, CollectionVersion};
/// Settings of a [`LanceVectorStore`].
#[derive(Clone, Debug)]
pub struct LanceOptions {
    /// object_store options for `s3://` URIs (`aws_endpoint`, `aws_region`,
    /// `aws_access_key_id`, `aws_secret_access_key`, `aws_allow_http`, …); ignored for paths.
    pub storage_options: Vec<(String, String)>,
    /// How stale a read may be with respect to other processes' writes: `Some(0 s)` (the
    /// default) checks for a newer table version on every read; `None` never does.
    pub read_consistency: Option<Duration>,
}

impl Default for LanceOptions {
    fn default() -> Self {
        LanceOptions {
            storage_options: Vec::new(),
            read_consistency: Some(Duration::ZERO),
        }
    }
}
/// An open table, the spec read from its schema, and that Arrow schema (read once per open,
/// not once per write).
type OpenCollection = (Table, Arc<CollectionSpec>, arrow_schema::SchemaRef);

#[derive(Debug)]
struct TenantScope {
    tenant: TenantId,
    max_vectors: VectorQuota,
}

/// A tenant's vector quota (records per collection), shared by the scopes made with it: a
/// change through [`set`](Self::set) applies to every one of them at once.
#[derive(Clone, Debug, Default)]
pub struct VectorQuota(Arc<std::sync::atomic::AtomicU64>);

impl VectorQuota {
    /// A quota of at most `max` records per collection (`None`: no quota).
    pub fn new(max: Option<u64>) -> VectorQuota {
        let quota = VectorQuota::default();
        quota.set(max);
        quota
    }

    /// Changes the quota; `None` removes it.
    pub fn set(&self, max: Option<u64>) {
        // u64::MAX stands for no quota: no collection can hold that many records.
        self.0.store(
            max.unwrap_or(u64::MAX),
            std::sync::atomic::Ordering::Release,
        );
    }

    /// The quota now.
    pub fn get(&self) -> Option<u64> {
        let max = self.0.load(std::sync::atomic::Ordering::Acquire);
        (max != u64::MAX).then_some(max)
    }
}

/// Collections on LanceDB. Cloning is cheap and clones share open tables.
///
/// A store made with [`for_tenant`](Self::for_tenant) writes every record with that tenant,
/// reads, counts and deletes only that tenant's records, and refuses writes beyond the
/// tenant's vector quota. The unscoped store sees every record.
#[derive(Clone)]
pub struct LanceVectorStore {
    db: Connection,
    uri: String,
    tables: Arc<Mutex<HashMap<String, OpenCollection>>>,
    scope: Option<Arc<TenantScope>>,
    /// One lock per (tenant, collection) with a quota, shared by every clone and scope of
    /// this store: a quota's count and the write it allows happen under it, so concurrent
    /// writers of one tenant cannot pass the quota together.
    quota_locks: Arc<Mutex<QuotaLocks>>,
}

type QuotaLocks = HashMap<(TenantId, String), Arc<tokio::sync::Mutex<()>>>;

impl std::fmt::Debug for LanceVectorStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LanceVectorStore")
            .field("uri", &self.uri)
            .field("tenant", &self.tenant().map(TenantId::as_str))
            .finish_non_exhaustive()
    }
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}
impl LanceVectorStore {
    /// Connects to a LanceDB database: a local directory (created if missing) or
    /// `s3://bucket/prefix`.
    ///
    /// # Errors
    /// `Backend` if the location cannot be used.
    pub async fn open(uri: &str, options: LanceOptions) -> Result<LanceVectorStore> {
        let mut builder =
            lancedb::connect(uri).storage_options(options.storage_options.iter().cloned());
        if let Some(interval) = options.read_consistency {
            builder = builder.read_consistency_interval(interval);
        }
        let db = builder.execute().await.map_err(lance_error)?;
        Ok(LanceVectorStore {
            db,
            uri: uri.to_string(),
            tables: Arc::default(),
            scope: None,
            quota_locks: Arc::default(),
        })
    }

    /// The database location.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// The same store seen by one tenant, allowed at most `max_vectors` records per
    /// collection (`None`: no quota). Writes past the quota fail with `QuotaExceeded`;
    /// concurrent writers of one tenant through any clone or scope of this store cannot
    /// pass it together (the count and the write it allows happen under one lock per tenant
    /// and collection). Other processes writing the same table are not counted in.
    pub fn for_tenant(&self, tenant: TenantId, max_vectors: Option<u64>) -> LanceVectorStore {
        self.for_tenant_with_quota(tenant, VectorQuota::new(max_vectors))
    }

    /// As [`for_tenant`](Self::for_tenant), with a quota shared with other scopes (and
    /// changed for all of them by [`VectorQuota::set`]).
    pub fn for_tenant_with_quota(&self, tenant: TenantId, quota: VectorQuota) -> LanceVectorStore {
        LanceVectorStore {
            scope: Some(Arc::new(TenantScope {
                tenant,
                max_vectors: quota,
            })),
            ..self.clone()
        }
    }

    /// The tenant this store is scoped to.
    pub fn tenant(&self) -> Option<&TenantId> {
        self.scope.as_ref().map(|s| &s.tenant)
    }

    async fn table(&self, name: &str) -> Result<OpenCollection> {
        validate_collection_name(name)?;
        if let Some(found) = self
            .tables
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
        {
            return Ok(found.clone());
        }
        let table = self
            .db
            .open_table(name)
            .execute()
            .await
            .map_err(|e| lance_error(e).with_context("collection", name))?;
        let schema = table.schema().await.map_err(lance_error)?;
        let spec = Arc::new(schema::spec_of(&schema, name)?);
        self.tables
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                name.to_string(),
                (table.clone(), spec.clone(), schema.clone()),
            );
        Ok((table, spec, schema))
    }

    /// The tenant restriction, if scoped.
    fn scope_expr(&self) -> Option<DfExpr> {
        self.scope
            .as_ref()
            .map(|s| col("tenant").eq(lit(s.tenant.as_str().to_string())))
    }

    /// `filter` (validated) AND the tenant restriction AND, if `live`, "not expired".
    fn predicate(
        &self,
        spec: &CollectionSpec,
        filter: Option<&Filter>,
        live: bool,
    ) -> Result<Option<DfExpr>> {
        let mut parts = Vec::new();
        if let Some(f) = filter {
            f.validate(spec)?;
            parts.push(filter::to_expr(f));
        }
        parts.extend(self.scope_expr());
        if live {
            parts.push(
                col("expires_at")
                    .is_null()
                    .or(col("expires_at").gt(lit(now_us()))),
            );
        }
        Ok(parts.into_iter().reduce(DfExpr::and))
    }

    fn validate_records(&self, spec: &CollectionSpec, records: &[VectorRecord]) -> Result<()> {
        records.iter().try_for_each(|r| r.validate(spec))
    }

    fn batch(
        &self,
        table_schema: arrow_schema::SchemaRef,
        spec: &CollectionSpec,
        records: &[VectorRecord],
    ) -> Result<RecordBatch> {
        let tenant = self.scope.as_ref().map(|s| s.tenant.as_str());
        schema::to_batch(spec, &table_schema, records, tenant, now_us())
    }

    /// The tenant's quota lock of `collection`, when the scope has a quota: held from the
    /// quota check until the write it allowed is done.
    async fn quota_guard(&self, collection: &str) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        let scope = self.scope.as_ref()?;
        scope.max_vectors.get()?;
        let lock = self
            .quota_locks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry((scope.tenant.clone(), collection.to_string()))
            .or_default()
            .clone();
        Some(lock.lock_owned().await)
    }

    /// Refuses a write that would take the tenant past its quota.
    async fn check_quota(&self, table: &Table, spec: &CollectionSpec, new_rows: u64) -> Result<()> {
        let Some(scope) = &self.scope else {
            return Ok(());
        };
        let Some(max) = scope.max_vectors.get() else {
            return Ok(());
        };
        let current = self.count_in(table, spec, None).await?;
        if current + new_rows > max {
            return Err(Error::new(
                ErrorKind::QuotaExceeded,
                format!(
                    "tenant {} holds {current} vectors; {new_rows} more would pass its quota of {max}",
                    scope.tenant.as_str()
                ),
            ));
        }
        Ok(())
    }

    /// Rows matching `filter` within the scope. With a predicate this scans the `id` column
    /// under the expression rather than handing `count_rows` SQL text: LanceDB's unparser
    /// does not quote every string literal so that its parser reads it back (a property
    /// test found values that fail), and a count must never depend on quoting.
    async fn count_in(
        &self,
        table: &Table,
        spec: &CollectionSpec,
        filter: Option<&Filter>,
    ) -> Result<u64> {
        let Some(expr) = self.predicate(spec, filter, false)? else {
            let n = table.count_rows(None).await.map_err(lance_error)?;
            return Ok(n as u64);
        };
        let q = table
            .query()
            .only_if_expr(expr)
            .select(Select::columns(&["id"]));
        let batches = self
            .collect(q.execute().await.map_err(lance_error)?)
            .await?;
        Ok(batches.iter().map(|b| b.num_rows() as u64).sum())
    }

    async fn delete_in(&self, table: &Table, expr: DfExpr) -> Result<u64> {
        let result = table.delete(&expr).await.map_err(lance_error)?;
        Ok(result.num_deleted_rows)
    }

    async fn collect(
        &self,
        stream: impl futures::Stream<Item = lancedb::Result<RecordBatch>>,
    ) -> Result<Vec<RecordBatch>> {
        stream.try_collect().await.map_err(lance_error)
    }
}
