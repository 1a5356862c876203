//! k-NN queries and their results.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{FieldValue, Filter};

/// A k-nearest-neighbour query.
#[derive(Clone, Debug, PartialEq)]
pub struct VectorQuery {
    /// The query vector (the collection's dimension).
    pub vector: Vec<f32>,
    /// How many results at most (1 to 10,000).
    pub k: usize,
    /// Only records matching this filter (applied before the search unless `postfilter`).
    pub filter: Option<Filter>,
    /// Apply the filter to the nearest candidates instead of before the search: faster with
    /// selective indexes, but may return fewer than `k` results.
    pub postfilter: bool,
    /// Ignore vector indexes and compare with every record (exact results).
    pub exact: bool,
    /// IVF partitions to probe (engine default when `None`).
    pub nprobes: Option<usize>,
    /// HNSW candidate list size (engine default when `None`).
    pub ef: Option<usize>,
    /// Re-rank `k × refine_factor` PQ candidates with full vectors (`None`: no refinement).
    pub refine_factor: Option<u32>,
}

impl VectorQuery {
    /// The `k` records nearest to `vector`, pre-filtered, with the engine's index settings.
    pub fn new(vector: Vec<f32>, k: usize) -> VectorQuery {
        VectorQuery {
            vector,
            k,
            filter: None,
            postfilter: false,
            exact: false,
            nprobes: None,
            ef: None,
            refine_factor: None,
        }
    }

    /// Adds a filter.
    pub fn with_filter(mut self, filter: Filter) -> Self {
        self.filter = Some(filter);
        self
    }
}

/// Largest `k` a query may ask for.
pub const MAX_K: usize = 10_000;

/// One search result.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SearchHit {
    /// The record's id.
    pub id: String,
    /// Higher is better: `−distance` for vector search, BM25 for text, the fused score for
    /// hybrid search.
    pub score: f32,
    /// The vector distance, when the hit came from a vector search.
    pub distance: Option<f32>,
    /// The record's text.
    pub text: Option<String>,
    /// Its metadata.
    pub metadata: BTreeMap<String, FieldValue>,
    /// Its event time (µs).
    pub event_time_us: Option<i64>,
    /// Its ingestion time (µs).
    pub ingestion_time_us: Option<i64>,
}
