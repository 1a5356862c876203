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

mod filter;
pub mod import;
mod schema;
#[cfg(feature = "testing")]
pub mod testing;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arrow_array::{RecordBatch, RecordBatchIterator};
use async_trait::async_trait;
use futures::TryStreamExt;
use hybridstore_core::vector::{
    CollectionInfo, CollectionSpec, Distance, FieldType, Filter, MAX_K, SearchHit, VectorQuery,
    VectorRecord, VectorStore, check_vector, validate_collection_name,
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
pub use schema::SPEC_METADATA_KEY;

/// Rows a collection needs before a quantized vector index can be trained: product
/// quantization learns 2^8 = 256 centroids per sub-vector (lancedb#1465). Below this the
/// exact flat search is used, and is fast at that size anyway.
pub const MIN_ROWS_FOR_VECTOR_INDEX: u64 = 256;

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

/// A vector index to build.
///
/// `None` parameters take LanceDB's defaults (lancedb `index::vector` docs): IVF partitions
/// ≈ √rows, PQ sub-vectors = dimension / 16 with 8 bits each, HNSW 20 edges per node and a
/// construction list of 300.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IndexSpec {
    /// IVF with product quantization: small and fast, approximate; tune recall at query time
    /// with `nprobes` and `refine_factor`.
    IvfPq {
        /// IVF partitions (k-means centroids).
        num_partitions: Option<u32>,
        /// PQ sub-vectors; must divide the dimension.
        num_sub_vectors: Option<u32>,
    },
    /// IVF partitions each holding an HNSW graph over 8-bit scalar-quantized vectors; tune
    /// recall at query time with `ef`.
    IvfHnswSq {
        /// IVF partitions.
        num_partitions: Option<u32>,
        /// Edges per node (HNSW's M).
        num_edges: Option<u32>,
        /// Candidate list size while building (HNSW's efConstruction).
        ef_construction: Option<u32>,
    },
    /// A scalar index on a metadata field (B-tree; label list for string lists), which
    /// speeds up pre-filtering.
    Scalar {
        /// The field.
        field: String,
    },
    /// A full-text (BM25 inverted) index on the `text` column, needed by text and hybrid
    /// search.
    FullText,
}

/// A full-text query.
#[derive(Clone, Debug, PartialEq)]
pub struct TextQuery {
    /// Words to look for (BM25 over the `text` column).
    pub text: String,
    /// How many results at most.
    pub k: usize,
    /// Only records matching this filter.
    pub filter: Option<Filter>,
}

/// A hybrid query: a vector search and a text search fused by reciprocal rank fusion
/// (RRF, k = 60; Cormack, Clarke and Büttcher, SIGIR 2009), LanceDB's default reranker.
#[derive(Clone, Debug, PartialEq)]
pub struct HybridQuery {
    /// The query vector.
    pub vector: Vec<f32>,
    /// The query text.
    pub text: String,
    /// How many results at most.
    pub k: usize,
    /// Only records matching this filter.
    pub filter: Option<Filter>,
}

/// An open table, the spec read from its schema, and that Arrow schema (read once per open,
/// not once per write).
type OpenCollection = (Table, Arc<CollectionSpec>, arrow_schema::SchemaRef);

#[derive(Debug)]
struct TenantScope {
    tenant: TenantId,
    max_vectors: Option<u64>,
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
}

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

/// A LanceDB error as a hybridstore error.
fn lance_error(e: lancedb::Error) -> Error {
    use lancedb::Error as L;
    let kind = match &e {
        L::TableNotFound { .. } | L::IndexNotFound { .. } | L::DatabaseNotFound { .. } => {
            ErrorKind::NotFound
        }
        L::TableAlreadyExists { .. } => ErrorKind::Conflict,
        L::InvalidInput { .. }
        | L::InvalidTableName { .. }
        | L::Schema { .. }
        | L::InvalidExpression { .. }
        | L::ColumnNotFound { .. } => ErrorKind::InvalidInput,
        L::Timeout { .. } => ErrorKind::Timeout,
        L::NotSupported { .. } => ErrorKind::Unsupported,
        // A table dropped by another process under an open handle: lance reports its
        // missing files.
        L::Lance { .. } if e.to_string().contains("Not found:") => ErrorKind::NotFound,
        _ if e
            .to_string()
            .to_ascii_lowercase()
            .contains("commit conflict") =>
        {
            ErrorKind::Conflict
        }
        _ => ErrorKind::Backend,
    };
    let retryable = kind == ErrorKind::Conflict || kind == ErrorKind::Timeout;
    Error::new(kind, e.to_string())
        .with_retryable(retryable)
        .with_source(e)
}

fn distance_type(d: Distance) -> DistanceType {
    match d {
        Distance::Cosine => DistanceType::Cosine,
        Distance::L2 => DistanceType::L2,
        Distance::Dot => DistanceType::Dot,
    }
}

fn check_k(k: usize) -> Result<()> {
    if (1..=MAX_K).contains(&k) {
        Ok(())
    } else {
        Err(Error::invalid_input(format!(
            "k must be between 1 and {MAX_K}, got {k}"
        )))
    }
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
        })
    }

    /// The database location.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// The same store seen by one tenant, allowed at most `max_vectors` records per
    /// collection (`None`: no quota).
    pub fn for_tenant(&self, tenant: TenantId, max_vectors: Option<u64>) -> LanceVectorStore {
        LanceVectorStore {
            scope: Some(Arc::new(TenantScope {
                tenant,
                max_vectors,
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
        if records.is_empty() {
            return Err(Error::invalid_input("no records to write"));
        }
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

    /// Refuses a write that would take the tenant past its quota.
    async fn check_quota(&self, table: &Table, spec: &CollectionSpec, new_rows: u64) -> Result<()> {
        let Some(scope) = &self.scope else {
            return Ok(());
        };
        let Some(max) = scope.max_vectors else {
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

    /// Builds an index.
    ///
    /// # Errors
    /// `InvalidInput` for a vector index on fewer than [`MIN_ROWS_FOR_VECTOR_INDEX`] rows, an
    /// unknown field, or parameters LanceDB refuses; `NotFound` for a missing collection.
    pub async fn create_index(&self, collection: &str, index: &IndexSpec) -> Result<()> {
        let (table, spec, _) = self.table(collection).await?;
        let dt = distance_type(spec.distance);
        let (column, lance_index) = match index {
            IndexSpec::IvfPq {
                num_partitions,
                num_sub_vectors,
            } => {
                self.check_trainable(&table, &spec).await?;
                let mut b = IvfPqIndexBuilder::default().distance_type(dt);
                if let Some(n) = num_partitions {
                    b = b.num_partitions(*n);
                }
                if let Some(n) = num_sub_vectors {
                    b = b.num_sub_vectors(*n);
                }
                ("vector".to_string(), Index::IvfPq(b))
            }
            IndexSpec::IvfHnswSq {
                num_partitions,
                num_edges,
                ef_construction,
            } => {
                self.check_trainable(&table, &spec).await?;
                let mut b = IvfHnswSqIndexBuilder::default().distance_type(dt);
                if let Some(n) = num_partitions {
                    b = b.num_partitions(*n);
                }
                if let Some(n) = num_edges {
                    b = b.num_edges(*n);
                }
                if let Some(n) = ef_construction {
                    b = b.ef_construction(*n);
                }
                ("vector".to_string(), Index::IvfHnswSq(b))
            }
            IndexSpec::Scalar { field } => match spec.field_type(field) {
                Some(FieldType::StringList) => (
                    field.clone(),
                    Index::LabelList(LabelListIndexBuilder::default()),
                ),
                Some(_) => (field.clone(), Index::BTree(BTreeIndexBuilder::default())),
                None => {
                    return Err(Error::invalid_input(format!(
                        "collection {collection:?} has no field {field:?}"
                    )));
                }
            },
            IndexSpec::FullText => ("text".to_string(), Index::FTS(FtsIndexBuilder::default())),
        };
        table
            .create_index(&[column.as_str()], lance_index)
            .replace(true)
            .execute()
            .await
            .map_err(|e| lance_error(e).with_context("collection", collection))
    }

    async fn check_trainable(&self, table: &Table, spec: &CollectionSpec) -> Result<()> {
        if !spec.has_vectors() {
            return Err(Error::invalid_input(format!(
                "collection {:?} is text-only: it has no vectors to index",
                spec.name
            )));
        }
        let rows = table.count_rows(None).await.map_err(lance_error)? as u64;
        if rows < MIN_ROWS_FOR_VECTOR_INDEX {
            return Err(Error::invalid_input(format!(
                "a vector index needs at least {MIN_ROWS_FOR_VECTOR_INDEX} rows to train, the \
                 collection has {rows}; searches stay exact (flat) until then"
            )));
        }
        Ok(())
    }

    /// Folds rows written since the indexes were built into them and compacts small files
    /// (LanceDB `optimize`: compaction, index update, and pruning of versions older than 7
    /// days).
    ///
    /// # Errors
    /// `NotFound` for a missing collection; LanceDB errors.
    pub async fn optimize(&self, collection: &str) -> Result<()> {
        let (table, _, _) = self.table(collection).await?;
        table
            .optimize(OptimizeAction::All)
            .await
            .map(|_| ())
            .map_err(lance_error)
    }

    /// Deletes every record (of this tenant, if scoped) whose `expires_at` has passed;
    /// returns how many.
    ///
    /// # Errors
    /// `NotFound` for a missing collection; LanceDB errors.
    pub async fn purge_expired(&self, collection: &str) -> Result<u64> {
        let (table, _, _) = self.table(collection).await?;
        let mut expr = col("expires_at").lt_eq(lit(now_us()));
        if let Some(scope) = self.scope_expr() {
            expr = expr.and(scope);
        }
        self.delete_in(&table, expr).await
    }

    /// BM25 full-text search over the `text` column (needs [`IndexSpec::FullText`]).
    ///
    /// # Errors
    /// `InvalidInput` for an empty query, bad `k` or filter; LanceDB errors (no index).
    pub async fn text_search(&self, collection: &str, query: &TextQuery) -> Result<Vec<SearchHit>> {
        check_k(query.k)?;
        if query.text.trim().is_empty() {
            return Err(Error::invalid_input("the text query is empty"));
        }
        let (table, spec, _) = self.table(collection).await?;
        let fts = FullTextSearchQuery::new(query.text.clone())
            .with_column("text".to_string())
            .map_err(|e| Error::invalid_input(e.to_string()))?;
        let mut q = table.query().full_text_search(fts).limit(query.k);
        if let Some(expr) = self.predicate(&spec, query.filter.as_ref(), true)? {
            q = q.only_if_expr(expr);
        }
        let batches = self
            .collect(q.execute().await.map_err(lance_error)?)
            .await?;
        Ok(hits(&spec, &batches, "_score"))
    }

    /// Vector and text search fused by reciprocal rank fusion (needs a full-text index).
    ///
    /// # Errors
    /// As [`search`](VectorStore::search) and [`text_search`](Self::text_search).
    pub async fn hybrid_search(
        &self,
        collection: &str,
        query: &HybridQuery,
    ) -> Result<Vec<SearchHit>> {
        check_k(query.k)?;
        if query.text.trim().is_empty() {
            return Err(Error::invalid_input("the text query is empty"));
        }
        let (table, spec, _) = self.table(collection).await?;
        check_vector(&query.vector, spec.dimension, spec.distance)?;
        let fts = FullTextSearchQuery::new(query.text.clone())
            .with_column("text".to_string())
            .map_err(|e| Error::invalid_input(e.to_string()))?;
        let mut q = table
            .query()
            .full_text_search(fts)
            .nearest_to(query.vector.as_slice())
            .map_err(lance_error)?
            .distance_type(distance_type(spec.distance))
            .limit(query.k);
        if let Some(expr) = self.predicate(&spec, query.filter.as_ref(), true)? {
            q = q.only_if_expr(expr);
        }
        let stream = q
            .execute_hybrid(QueryExecutionOptions::default())
            .await
            .map_err(lance_error)?;
        let batches = self.collect(stream).await?;
        Ok(hits(&spec, &batches, "_relevance_score"))
    }
}

fn hits(spec: &CollectionSpec, batches: &[RecordBatch], score_column: &str) -> Vec<SearchHit> {
    let mut out = Vec::new();
    for batch in batches {
        let columns = schema::Columns::new(batch);
        out.extend((0..batch.num_rows()).filter_map(|row| columns.hit(spec, row, score_column)));
    }
    out
}

#[async_trait]
impl VectorStore for LanceVectorStore {
    async fn create_collection(&self, spec: &CollectionSpec) -> Result<CollectionInfo> {
        spec.validate()?;
        let arrow = schema::arrow_schema(spec)?;
        match self
            .db
            .create_empty_table(&spec.name, arrow)
            .execute()
            .await
        {
            Ok(_) => {}
            Err(lancedb::Error::TableAlreadyExists { .. }) => {
                let (_, existing, _) = self.table(&spec.name).await?;
                if *existing != *spec {
                    return Err(Error::conflict(format!(
                        "collection {:?} exists with another spec: {existing:?}",
                        spec.name
                    )));
                }
            }
            Err(e) => return Err(lance_error(e)),
        }
        self.describe_collection(&spec.name).await
    }

    async fn list_collections(&self) -> Result<Vec<String>> {
        let mut names = self.db.table_names().execute().await.map_err(lance_error)?;
        names.sort();
        Ok(names)
    }

    async fn describe_collection(&self, name: &str) -> Result<CollectionInfo> {
        let (table, spec, _) = self.table(name).await?;
        let rows = match self.count_in(&table, &spec, None).await {
            Ok(rows) => rows,
            Err(e) => {
                if e.kind() == ErrorKind::NotFound {
                    // Dropped elsewhere: forget the handle so a re-created table is found.
                    self.tables
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .remove(name);
                }
                return Err(e.with_context("collection", name));
            }
        };
        let mut indexes: Vec<String> = table
            .list_indices()
            .await
            .map_err(lance_error)?
            .into_iter()
            .map(|i| i.name)
            .collect();
        indexes.sort();
        Ok(CollectionInfo {
            spec: (*spec).clone(),
            rows,
            indexes,
        })
    }

    async fn drop_collection(&self, name: &str) -> Result<()> {
        validate_collection_name(name)?;
        self.tables
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(name);
        self.db
            .drop_table(name, &[])
            .await
            .map_err(|e| lance_error(e).with_context("collection", name))
    }

    async fn count(&self, collection: &str, filter: Option<&Filter>) -> Result<u64> {
        let (table, spec, _) = self.table(collection).await?;
        self.count_in(&table, &spec, filter).await
    }

    async fn add(&self, collection: &str, records: Vec<VectorRecord>) -> Result<()> {
        let (table, spec, schema) = self.table(collection).await?;
        self.validate_records(&spec, &records)?;
        self.check_quota(&table, &spec, records.len() as u64)
            .await?;
        let batch = self.batch(schema, &spec, &records)?;
        table.add(batch).execute().await.map_err(lance_error)?;
        Ok(())
    }

    async fn upsert(&self, collection: &str, records: Vec<VectorRecord>) -> Result<()> {
        let (table, spec, schema) = self.table(collection).await?;
        self.validate_records(&spec, &records)?;
        if self.scope.as_ref().is_some_and(|s| s.max_vectors.is_some()) {
            let ids: Vec<String> = records.iter().map(|r| r.id.clone()).collect();
            let existing = self
                .count_in(&table, &spec, Some(&Filter::is_in("id", ids)))
                .await?;
            let new_rows = (records.len() as u64).saturating_sub(existing);
            self.check_quota(&table, &spec, new_rows).await?;
        }
        let batch = self.batch(schema.clone(), &spec, &records)?;
        let on: &[&str] = if self.scope.is_some() {
            &["tenant", "id"]
        } else {
            &["id"]
        };
        let mut merge = table.merge_insert(on);
        merge
            .when_matched_update_all(None)
            .when_not_matched_insert_all();
        let reader = RecordBatchIterator::new(vec![Ok(batch)], schema);
        merge.execute(Box::new(reader)).await.map_err(lance_error)?;
        Ok(())
    }

    async fn delete_ids(&self, collection: &str, ids: &[String]) -> Result<u64> {
        if ids.is_empty() {
            return Ok(0);
        }
        let (table, spec, _) = self.table(collection).await?;
        let filter = Filter::is_in("id", ids.iter().cloned());
        let Some(expr) = self.predicate(&spec, Some(&filter), false)? else {
            return Ok(0);
        };
        self.delete_in(&table, expr).await
    }

    async fn delete_where(&self, collection: &str, filter: &Filter) -> Result<u64> {
        let (table, spec, _) = self.table(collection).await?;
        let Some(expr) = self.predicate(&spec, Some(filter), false)? else {
            return Ok(0);
        };
        self.delete_in(&table, expr).await
    }

    async fn get(&self, collection: &str, ids: &[String]) -> Result<Vec<VectorRecord>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let (table, spec, _) = self.table(collection).await?;
        let filter = Filter::is_in("id", ids.iter().cloned());
        let mut q = table.query();
        if let Some(expr) = self.predicate(&spec, Some(&filter), false)? {
            q = q.only_if_expr(expr);
        }
        let batches = self
            .collect(q.execute().await.map_err(lance_error)?)
            .await?;
        let mut out = Vec::new();
        for batch in &batches {
            let columns = schema::Columns::new(batch);
            out.extend((0..batch.num_rows()).filter_map(|row| columns.record(&spec, row)));
        }
        Ok(out)
    }

    async fn search(&self, collection: &str, query: &VectorQuery) -> Result<Vec<SearchHit>> {
        check_k(query.k)?;
        let (table, spec, schema) = self.table(collection).await?;
        check_vector(&query.vector, spec.dimension, spec.distance)?;
        // Every column but the vectors, which hits do not carry (k × dimension floats less
        // to read and copy per query).
        let returned: Vec<&str> = schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .filter(|name| *name != "vector")
            .collect();
        let mut q = table
            .query()
            .select(Select::columns(&returned))
            .nearest_to(query.vector.as_slice())
            .map_err(lance_error)?
            .column("vector")
            .distance_type(distance_type(spec.distance))
            .limit(query.k);
        if let Some(expr) = self.predicate(&spec, query.filter.as_ref(), true)? {
            q = q.only_if_expr(expr);
        }
        if query.postfilter {
            q = q.postfilter();
        }
        if query.exact {
            q = q.bypass_vector_index();
        }
        if let Some(n) = query.nprobes {
            q = q.nprobes(n).map_err(lance_error)?;
        }
        if let Some(ef) = query.ef {
            q = q.ef(ef);
        }
        if let Some(r) = query.refine_factor {
            q = q.refine_factor(r);
        }
        let batches = self
            .collect(q.execute().await.map_err(lance_error)?)
            .await?;
        Ok(hits(&spec, &batches, "_distance"))
    }
}
