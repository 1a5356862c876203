//! Full-text search over ingested documents: their passages in a text-only LanceDB
//! collection (`passages` under `<data_dir>/lance`) with a BM25 index.
//!
//! `ingest_dir` reduces every HTML, Markdown and plain-text file to passages
//! ([`crate::passages`]) and stores them with the document's key; a document ingested again
//! has its old passages replaced. The store does not embed text: vectors come from the
//! application (`hybridstore_vector`), this index is lexical.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use futures::{StreamExt, stream};
use hybridstore_core::vector::{
    CollectionSpec, FieldType, FieldValue, Filter, MAX_K, SearchHit, VectorRecord, VectorStore,
};
use hybridstore_core::{Error, Result};
use hybridstore_vector::{IndexSpec, LanceVectorStore, TextQuery};
use serde::Serialize;

use crate::passages::{TextKind, passages};
use crate::source_tree::walk;

/// The default name of the collection holding document passages (seed 002's chunks table,
/// `LANCEDB_CHUNKS_TABLE_NAME`).
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
    /// Other documents holding the same passage (sorted; collapsed into this hit).
    pub also_in: Vec<String>,
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

/// The passages collection named `collection` (default [`PASSAGES_COLLECTION`], set by
/// [`StorageConfig::lancedb_chunks_table_name`](crate::StorageConfig::lancedb_chunks_table_name)):
/// text-only, with the document key (`doc_key`) and position (`passage`).
pub fn passages_spec(collection: &str) -> CollectionSpec {
    CollectionSpec::text_only(collection)
        .with_field("doc_key", FieldType::String)
        .with_field("passage", FieldType::Integer)
}

/// Reads every text file under `source` and replaces its passages (keys as `ingest_dir`
/// gives them), then brings the full-text index up to date.
pub(crate) async fn index_tree(
    store: &LanceVectorStore,
    collection: &str,
    source: &Path,
    prefix: &str,
) -> Result<PassageReport> {
    let started = Instant::now();
    store.create_collection(&passages_spec(collection)).await?;
    // Old passages can only exist under this prefix if any passage key falls in its range:
    // when none does (a first ingest, or a new prefix), nothing is deleted at all.
    let may_replace = match prefix_upper_bound(prefix) {
        Some(end) => {
            let under = Filter::range("doc_key", prefix, end);
            store.count(collection, Some(&under)).await? > 0
        }
        // No prefix (or no string above it): any passage may be replaced.
        None => store.count(collection, None).await? > 0,
    };
    // The walk is blocking file-system work: on the blocking pool, not the async worker.
    let (source_owned, prefix_owned) = (source.to_path_buf(), prefix.to_string());
    let files: Vec<_> = tokio::task::spawn_blocking(move || {
        // Unreadable and skipped entries are the ingest report's to list.
        walk(&source_owned, &prefix_owned)
            .files
            .into_iter()
            .filter(|f| TextKind::of(&f.path).is_some())
            .collect()
    })
    .await
    .map_err(|e| Error::backend(format!("directory walk failed: {e}")))?;
    let groups: Vec<Vec<_>> = files.chunks(FILES_PER_TASK).map(<[_]>::to_vec).collect();
    let mut report = PassageReport::default();
    // Two groups cut at once (one per core) while earlier ones are written.
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
    let mut pending = PendingPassages::default();
    while let Some(group) = cut.next().await {
        let group = group.map_err(|e| Error::backend(format!("passage extraction failed: {e}")))?;
        for (key, texts) in group {
            report.documents += 1;
            report.passages += texts.len() as u64;
            pending.push(key, texts);
        }
        if pending.is_full() {
            pending.write(store, collection, may_replace).await?;
        }
    }
    pending.write(store, collection, may_replace).await?;
    if report.passages > 0 {
        update_text_index(store, collection).await?;
    }
    report.elapsed_ms = started.elapsed().as_millis() as u64;
    Ok(report)
}

/// Creates the passages' full-text index, or folds new passages into the one there is.
async fn update_text_index(store: &LanceVectorStore, collection: &str) -> Result<()> {
    let info = store.describe_collection(collection).await?;
    if info.indexes.is_empty() {
        store.create_index(collection, &IndexSpec::FullText).await
    } else {
        store.optimize(collection).await
    }
}

/// Brings the passages of `changed` keys up to date from their values in `kv` (a sync
/// pulled them): text keys' passages are replaced, and the passages of `deleted` keys are
/// removed; then the full-text index is brought up to date. Keys that are not UTF-8 text
/// paths with a text extension have no passages.
pub(crate) async fn index_keys(
    store: &LanceVectorStore,
    collection: &str,
    kv: &dyn hybridstore_core::KvStore,
    changed: &[hybridstore_core::Key],
    deleted: &[hybridstore_core::Key],
) -> Result<PassageReport> {
    let started = Instant::now();
    let text_key = |k: &hybridstore_core::Key| {
        let s = k.as_str()?;
        TextKind::of(Path::new(s)).map(|kind| (s.to_string(), kind))
    };
    let changed: Vec<_> = changed
        .iter()
        .filter_map(|k| text_key(k).map(|t| (k.clone(), t)))
        .collect();
    let gone: Vec<String> = deleted
        .iter()
        .filter_map(|k| text_key(k).map(|(s, _)| s))
        .collect();
    let mut report = PassageReport::default();
    if changed.is_empty() && gone.is_empty() {
        return Ok(report);
    }
    store.create_collection(&passages_spec(collection)).await?;
    for keys in gone.chunks(DOCUMENTS_PER_DELETE) {
        store
            .delete_where(collection, &Filter::is_in("doc_key", keys.to_vec()))
            .await?;
    }
    let mut pending = PendingPassages::default();
    for group in changed.chunks(FILES_PER_TASK) {
        let keys: Vec<_> = group.iter().map(|(k, _)| k.clone()).collect();
        let values = kv.get_many(&keys).await?;
        let docs: Vec<(String, TextKind, bytes::Bytes)> = group
            .iter()
            .zip(values)
            .filter_map(|((_, (name, kind)), v)| v.map(|v| (name.clone(), *kind, v)))
            .collect();
        let cut = tokio::task::spawn_blocking(move || {
            docs.into_iter()
                .map(|(name, kind, bytes)| (name, passages(kind, &bytes)))
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|e| Error::backend(format!("passage extraction failed: {e}")))?;
        for (key, texts) in cut {
            report.documents += 1;
            report.passages += texts.len() as u64;
            pending.push(key, texts);
        }
        if pending.is_full() {
            pending.write(store, collection, true).await?;
        }
    }
    pending.write(store, collection, true).await?;
    if report.passages > 0 {
        update_text_index(store, collection).await?;
    }
    report.elapsed_ms = started.elapsed().as_millis() as u64;
    Ok(report)
}

/// Passages written per write batch: few, large Lance fragments rather than one per group of
/// files (LanceDB's guidance is to write in batches of many rows).
const PASSAGES_PER_WRITE: usize = 50_000;
/// Documents whose old passages one delete removes (the size of its `IN` list).
const DOCUMENTS_PER_DELETE: usize = 5_000;

/// Passages cut but not yet written, and their documents.
#[derive(Default)]
struct PendingPassages {
    keys: Vec<String>,
    records: Vec<VectorRecord>,
}

impl PendingPassages {
    fn push(&mut self, key: String, texts: Vec<String>) {
        for (i, text) in texts.into_iter().enumerate() {
            let n = i as i64;
            let mut record = VectorRecord::new(format!("{key}#{n}"), Vec::new()).with_text(text);
            record
                .metadata
                .insert("doc_key".into(), FieldValue::String(key.clone()));
            record
                .metadata
                .insert("passage".into(), FieldValue::Integer(n));
            self.records.push(record);
        }
        self.keys.push(key);
    }

    fn is_full(&self) -> bool {
        self.records.len() >= PASSAGES_PER_WRITE || self.keys.len() >= DOCUMENTS_PER_DELETE
    }

    /// Deletes the old passages of the pending documents (if there may be any), then writes
    /// the new ones.
    async fn write(
        &mut self,
        store: &LanceVectorStore,
        collection: &str,
        may_replace: bool,
    ) -> Result<()> {
        let keys = std::mem::take(&mut self.keys);
        let records = std::mem::take(&mut self.records);
        if may_replace && !keys.is_empty() {
            store
                .delete_where(collection, &Filter::is_in("doc_key", keys))
                .await?;
        }
        if !records.is_empty() {
            store.add(collection, records).await?;
        }
        Ok(())
    }
}

/// The least string greater than every string that starts with `prefix` (its last
/// character that has a successor, incremented, the rest dropped); `None` when there is none
/// or `prefix` is empty. UTF-8 byte order is code point order, so this bounds the range.
fn prefix_upper_bound(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = (u32::from(last) + 1..=u32::from(char::MAX)).find_map(char::from_u32);
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// The `k` passages that best match `query` (BM25), identical passages shown once.
///
/// The same text often sits in several documents (a page and the book's all-in-one
/// `print.html`, a translation not yet translated, the same tree under two prefixes). Hits
/// with identical text are collapsed into one, as web search engines collapse duplicates:
/// the copy nearest the start of its document (lowest passage number, then the shortest key:
/// a page rather than its translation's copy) represents the group, the others are listed in [`PassageHit::also_in`]. More hits are fetched (up to
/// [`MAX_K`]) until `k` distinct passages are found or there are no more.
pub(crate) async fn search(
    store: &LanceVectorStore,
    collection: &str,
    query: &str,
    k: usize,
) -> Result<Vec<PassageHit>> {
    // At least k, so text_search refuses a k above MAX_K itself.
    let mut fetch = k.saturating_mul(4).min(MAX_K).max(k);
    loop {
        let hits = match store
            .text_search(
                collection,
                &TextQuery {
                    text: query.to_string(),
                    k: fetch,
                    filter: None,
                },
            )
            .await
        {
            Ok(hits) => hits,
            Err(e) if e.kind() == hybridstore_core::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        let exhausted = hits.len() < fetch || fetch == MAX_K;
        let collapsed = collapse(hits.into_iter().map(passage_hit));
        if collapsed.len() >= k || exhausted {
            return Ok(collapsed.into_iter().take(k).collect());
        }
        fetch = fetch.saturating_mul(4).min(MAX_K);
    }
}

fn passage_hit(h: SearchHit) -> PassageHit {
    PassageHit {
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
        also_in: Vec::new(),
    }
}

/// Hits with the same text become one, in the order of each text's best score.
fn collapse(hits: impl IntoIterator<Item = PassageHit>) -> Vec<PassageHit> {
    let mut groups: Vec<Vec<PassageHit>> = Vec::new();
    let mut by_text: HashMap<String, usize> = HashMap::new();
    for hit in hits {
        match by_text.get(&hit.text) {
            Some(&i) => groups[i].push(hit),
            None => {
                by_text.insert(hit.text.clone(), groups.len());
                groups.push(vec![hit]);
            }
        }
    }
    groups
        .into_iter()
        .filter_map(|mut group| {
            let score = group.iter().map(|h| h.score).fold(f32::MIN, f32::max);
            group.sort_by(|a, b| {
                (a.passage, a.key.len(), &a.key).cmp(&(b.passage, b.key.len(), &b.key))
            });
            let mut copies = group.into_iter();
            let mut first = copies.next()?;
            first.score = score;
            first.also_in = copies.map(|h| h.key).collect();
            first.also_in.sort();
            first.also_in.dedup();
            Some(first)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{PassageHit, collapse, prefix_upper_bound};

    fn hit(key: &str, passage: i64, score: f32, text: &str) -> PassageHit {
        PassageHit {
            key: key.into(),
            passage,
            score,
            text: text.into(),
            also_in: Vec::new(),
        }
    }

    #[test]
    fn identical_passages_collapse_into_the_copy_nearest_its_document_start() {
        let collapsed = collapse([
            hit("book/print.html", 631, 18.7, "The Borrow Checker"),
            hit("book/ch10-03.html", 2, 18.7, "The Borrow Checker"),
            hit("other.html", 0, 17.0, "something else"),
            hit("second/book/ch10-03.html", 2, 18.7, "The Borrow Checker"),
            hit("es/ch10-03.html", 2, 16.0, "something else"),
            hit("rbe/es/lifetime.html", 0, 20.0, "Lifetimes"),
            hit("rbe/lifetime.html", 0, 20.0, "Lifetimes"),
        ]);
        assert_eq!(collapsed.len(), 3);
        assert_eq!(
            (collapsed[2].key.as_str(), collapsed[2].also_in.as_slice()),
            (
                "rbe/lifetime.html",
                &["rbe/es/lifetime.html".to_string()][..]
            )
        );
        assert_eq!(
            (collapsed[0].key.as_str(), collapsed[0].passage),
            ("book/ch10-03.html", 2)
        );
        assert_eq!(
            collapsed[0].also_in,
            ["book/print.html", "second/book/ch10-03.html"]
        );
        assert_eq!(collapsed[1].key, "other.html");
        assert_eq!(collapsed[1].score, 17.0);
        assert_eq!(collapsed[1].also_in, ["es/ch10-03.html"]);
    }

    #[test]
    fn prefix_upper_bound_is_the_least_string_above_the_prefix() {
        assert_eq!(prefix_upper_bound("first/").as_deref(), Some("first0"));
        assert_eq!(
            prefix_upper_bound("a\u{D7FF}").as_deref(),
            Some("a\u{E000}")
        );
        assert_eq!(prefix_upper_bound("ab\u{10FFFF}").as_deref(), Some("ac"));
        assert_eq!(prefix_upper_bound("\u{10FFFF}"), None);
        assert_eq!(prefix_upper_bound(""), None);
        for key in ["first/", "first/book/index.html", "first/\u{10FFFF}x"] {
            assert!(key < prefix_upper_bound("first/").unwrap().as_str());
        }
        assert!("first0" >= prefix_upper_bound("first/").unwrap().as_str());
    }
}
