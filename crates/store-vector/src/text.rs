//! Full-text (BM25) and hybrid (vector + text, fused by reciprocal rank) search.

use super::*;

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

impl LanceVectorStore {
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
