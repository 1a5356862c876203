//! Full-text search over ingested documents: their passages in a text-only LanceDB
//! collection (`passages` under `<data_dir>/lance`) with a BM25 index.
//!
//! `ingest_dir` reduces every HTML, Markdown and plain-text file to passages
//! ([`crate::passages`]) and stores them with the document's key; a document ingested again
//! has its old passages replaced. The store does not embed text: vectors come from the
//! application (`hybridstore_vector`), this index is lexical.

use std::path::Path;
use std::time::Instant;

use futures::{StreamExt, stream};
use hybridstore_core::vector::{
    CollectionSpec, FieldType, FieldValue, Filter, VectorRecord, VectorStore,
};
use hybridstore_core::{Error, Result};
use hybridstore_vector::{IndexSpec, LanceVectorStore, TextQuery};
use serde::Serialize;

use crate::passages::{TextKind, passages};
use crate::transfer::{TransferReport, walk};

/// The collection holding document passages.
pub const PASSAGES_COLLECTION: &str = "passages";

/// Files read and cut per blocking task.
const FILES_PER_TASK: usize = 64;

/// One passage found by [`HybridStorageSystem::search`](crate::HybridStorageSystem::search).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PassageHit {
    /// The document's key.
    pub key: String,
    /// The passage's position in the document (0-based).
    pub passage: i64,
    /// BM25 score (higher is better).
    pub score: f32,
    /// The passage.
    pub text: String,
}

/// What indexing a tree's passages did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PassageReport {
    /// Documents with text.
    pub documents: u64,
    /// Passages stored.
    pub passages: u64,
    /// Wall time in milliseconds, index build included.
    pub elapsed_ms: u64,
}

/// The `passages` collection: text-only, with the document key and position.
pub fn passages_spec() -> CollectionSpec {
    CollectionSpec::text_only(PASSAGES_COLLECTION)
        .with_field("doc_key", FieldType::String)
        .with_field("passage", FieldType::Integer)
}

/// Reads every text file under `source` and replaces its passages (keys as `ingest_dir`
/// gives them), then brings the full-text index up to date.
pub(crate) async fn index_tree(
    store: &LanceVectorStore,
    source: &Path,
    prefix: &str,
) -> Result<PassageReport> {
    let started = Instant::now();
    store.create_collection(&passages_spec()).await?;
    let had_rows = store.count(PASSAGES_COLLECTION, None).await? > 0;
    let mut ignored = TransferReport::default();
    let files: Vec<_> = walk(source, prefix, &mut ignored)
        .into_iter()
        .filter(|f| TextKind::of(&f.path).is_some())
        .collect();
    let groups: Vec<Vec<_>> = files.chunks(FILES_PER_TASK).map(<[_]>::to_vec).collect();
    let mut report = PassageReport::default();
    // Two groups cut at once (one per core) while the previous one is written.
    let mut cut = stream::iter(groups)
        .map(|group| {
            tokio::task::spawn_blocking(move || {
                group
                    .into_iter()
                    .filter_map(|f| {
                        let kind = TextKind::of(&f.path)?;
                        // Unreadable files were reported by the ingest itself.
                        let bytes = std::fs::read(&f.path).ok()?;
                        Some((f.key.to_string(), passages(kind, &bytes)))
                    })
                    .collect::<Vec<_>>()
            })
        })
        .buffered(2);
    while let Some(group) = cut.next().await {
        let group = group.map_err(|e| Error::backend(format!("passage extraction failed: {e}")))?;
        let keys: Vec<String> = group.iter().map(|(k, _)| k.clone()).collect();
        if had_rows {
            store
                .delete_where(PASSAGES_COLLECTION, &Filter::is_in("doc_key", keys))
                .await?;
        }
        let mut records = Vec::new();
        for (key, texts) in group {
            report.documents += 1;
            for (i, text) in texts.into_iter().enumerate() {
                let n = i as i64;
                let mut record =
                    VectorRecord::new(format!("{key}#{n}"), Vec::new()).with_text(text);
                record
                    .metadata
                    .insert("doc_key".into(), FieldValue::String(key.clone()));
                record
                    .metadata
                    .insert("passage".into(), FieldValue::Integer(n));
                records.push(record);
            }
        }
        report.passages += records.len() as u64;
        if !records.is_empty() {
            store.add(PASSAGES_COLLECTION, records).await?;
        }
    }
    if report.passages > 0 {
        let info = store.describe_collection(PASSAGES_COLLECTION).await?;
        if info.indexes.is_empty() {
            store
                .create_index(PASSAGES_COLLECTION, &IndexSpec::FullText)
                .await?;
        } else {
            // Folds the new passages into the existing index.
            store.optimize(PASSAGES_COLLECTION).await?;
        }
    }
    report.elapsed_ms = started.elapsed().as_millis() as u64;
    Ok(report)
}

/// The `k` passages that best match `query` (BM25).
pub(crate) async fn search(
    store: &LanceVectorStore,
    query: &str,
    k: usize,
) -> Result<Vec<PassageHit>> {
    let hits = match store
        .text_search(
            PASSAGES_COLLECTION,
            &TextQuery {
                text: query.to_string(),
                k,
                filter: None,
            },
        )
        .await
    {
        Ok(hits) => hits,
        Err(e) if e.kind() == hybridstore_core::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    Ok(hits
        .into_iter()
        .map(|h| PassageHit {
            key: match h.metadata.get("doc_key") {
                Some(FieldValue::String(k)) => k.clone(),
                _ => {
                    h.id.rsplit_once('#')
                        .map_or(h.id.clone(), |(k, _)| k.to_string())
                }
            },
            passage: match h.metadata.get("passage") {
                Some(FieldValue::Integer(n)) => *n,
                _ => 0,
            },
            score: h.score,
            text: h.text.unwrap_or_default(),
        })
        .collect())
}
