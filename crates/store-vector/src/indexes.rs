//! Vector, scalar and full-text indexes of a collection, and its upkeep (optimize, purge).

use super::*;

/// Rows a collection needs before a quantized vector index can be trained: product
/// quantization learns 2^8 = 256 centroids per sub-vector (lancedb#1465). Below this the
/// exact flat search is used, and is fast at that size anyway.
pub const MIN_ROWS_FOR_VECTOR_INDEX: u64 = 256;

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

impl LanceVectorStore {
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
}
