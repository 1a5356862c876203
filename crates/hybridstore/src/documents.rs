//! Documents across engines (seeds 002 and 004): one document id over a SQL row, content
//! and text through the key/value stack, and passages and per-modality embeddings in LanceDB.
//!
//! **Where a document lives.** A [`NewDocument`] stored with [`DocumentStore::put`] becomes:
//!
//! - its content and its text as two values of the key/value stack (cache, dedup layer,
//!   primary) under `.hybridstore/documents/<generation>/content` and `…/text`;
//! - its text cut into passages (at most 1,000 characters, as `ingest` cuts plain text) in the
//!   text-only collection [`StorageConfig::lancedb_table_name`](crate::StorageConfig::lancedb_table_name)
//!   (default `documents`) with a BM25 index, and each embedding in its modality's collection
//!   (`documents_text`, `documents_image`, `documents_audio`), every record carrying the
//!   document id, the generation and the declared metadata fields;
//! - a row of the SQL `documents` table (the primary's database when it is a `SqlStore`, else
//!   `<data_dir>/documents.db`): id, filename, size, SHA-256 of the content, creation time,
//!   and the metadata with the current generation.
//!
//! **The commit point is the SQL row.** Every put writes a new generation (128 random bits):
//! a note of intent first (a `settings` row), then the values, then the LanceDB records,
//! then the row naming the new generation, then the old generation's values and records are
//! deleted and the note removed. A delete removes the row first. Readers go through the row:
//! `get`, `content` and `text` read the generation it names, and `search` drops every hit
//! whose generation is not the one its row names. So a put or delete that fails or crashes
//! half-way leaves the document as it was before or as it is after, never half of each;
//! whatever the interrupted write left behind is deleted when the store is next opened (the
//! notes of intent say what to delete), or at once when the write failed with an error.
//!
//! Writes to one document id are serialized within the process (the data directory has one
//! owner; a PostgreSQL database shared by several systems does not serialize them across
//! processes). A put or delete runs to its end as its own task even if the caller stops
//! waiting.
//!
//! **Tenants.** [`Tenant::documents`](crate::tenants::Tenant::documents) is the same store
//! over one tenant: its rows of the `documents` table (keyed by tenant and id, so two
//! tenants may use one id), its values in its key/value namespace (counted in its byte and
//! key quotas), its LanceDB records (scoped, counted in its vector quota) and notes of intent
//! named `hybridstore.tenants.<tenant>.documents.pending.<generation>`, repaired when the
//! tenant's store is first used. The system's own store sees the documents of no tenant.
//!
//! **Search** ([`MultimodalQuery`]) runs a BM25 query over the passages and a k-NN query per
//! modality, each with the same metadata filter, concurrently; the ranked lists are fused by
//! weighted reciprocal rank fusion (RRF, k = 60; Cormack, Clarke and Büttcher, SIGIR 2009,
//! <https://doi.org/10.1145/1571941.1572114>): a document's score is the sum over the lists
//! it appears in of `weight / (60 + rank)`, ranks from 1.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use hybridstore_core::vector::{
    CollectionSpec, FieldType, FieldValue, Filter, MAX_K, SearchHit, VectorQuery, VectorRecord,
    VectorStore, check_vector,
};
use hybridstore_core::{Error, ErrorKind, Key, KvStore, Result, Sha256Digest, TenantId};
use hybridstore_sql::SqlStore;
use hybridstore_vector::{
    IndexSpec, LanceVectorStore, MIN_ROWS_FOR_VECTOR_INDEX, TextQuery, VectorQuota,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, OnceCell};

use crate::config::{DocumentsConfig, Modality};
use crate::passages::{TextKind, passages};

/// File in the data directory holding the `documents` table when the primary is not a
/// `SqlStore` (a `FileStore` or S3).
pub const DOCUMENTS_SQLITE_FILE: &str = "documents.db";
/// Prefix of the key/value keys holding documents' content and text.
pub const DOCUMENT_KEY_PREFIX: &str = ".hybridstore/documents/";
/// Prefix of the `settings` rows that note a document write in progress.
pub const PENDING_SETTING_PREFIX: &str = "hybridstore.documents.pending.";
/// Prefix of the `settings` rows of tenants' documents: a tenant's notes of intent are
/// `hybridstore.tenants.<tenant>.documents.pending.<generation>`.
pub const TENANT_SETTING_PREFIX: &str = "hybridstore.tenants.";
/// Reciprocal rank fusion's constant `k` (Cormack, Clarke and Büttcher, SIGIR 2009).
pub const RRF_K: f32 = 60.0;
/// Longest document id, in bytes (the SQL `documents` table's limit).
pub const MAX_DOCUMENT_ID_LEN: usize = hybridstore_sql::MAX_ID_LEN;
/// Most documents one [`DocumentStore::list`] call returns.
pub const MAX_LIST_PAGE: usize = hybridstore_sql::MAX_PAGE;

/// Rows read from SQL at once while `list` filters them.
const LIST_SCAN_PAGE: usize = 500;
/// Writes to distinct document ids proceed in parallel unless their ids share one of this
/// many locks.
const WRITE_LOCKS: usize = 64;
/// Version of the row metadata's layout.
const ROW_FORMAT: u32 = 1;

/// A document to store: an id, optional content and text, embeddings per modality and
/// metadata values.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct NewDocument {
    /// 1 to [`MAX_DOCUMENT_ID_LEN`] bytes, no NUL.
    pub id: String,
    /// The original file name (at most 4,096 bytes; default empty).
    pub filename: String,
    /// MIME type of the content, if known.
    pub content_type: Option<String>,
    /// The content (any size the key/value stack takes; default empty).
    pub content: Bytes,
    /// The text: cut into passages for full-text search, and kept whole.
    pub text: Option<String>,
    /// One embedding per modality, of the dimension the store declares for it.
    pub embeddings: BTreeMap<Modality, Vec<f32>>,
    /// Values of the declared metadata fields ([`DocumentsConfig::fields`]).
    pub metadata: BTreeMap<String, FieldValue>,
}

impl NewDocument {
    /// A document with an id and nothing else.
    pub fn new(id: impl Into<String>) -> NewDocument {
        NewDocument {
            id: id.into(),
            ..NewDocument::default()
        }
    }

    /// Sets the content and its MIME type.
    pub fn with_content(mut self, content: impl Into<Bytes>, content_type: &str) -> Self {
        self.content = content.into();
        self.content_type = Some(content_type.to_string());
        self
    }

    /// Sets the original file name.
    pub fn with_filename(mut self, filename: impl Into<String>) -> Self {
        self.filename = filename.into();
        self
    }

    /// Sets the text.
    pub fn with_text(mut self, text: impl Into<String>) -> Self {
        self.text = Some(text.into());
        self
    }

    /// Sets the embedding of one modality.
    pub fn with_embedding(mut self, modality: Modality, vector: Vec<f32>) -> Self {
        self.embeddings.insert(modality, vector);
        self
    }

    /// Sets a metadata value.
    pub fn with_field(mut self, name: impl Into<String>, value: impl Into<FieldValue>) -> Self {
        self.metadata.insert(name.into(), value.into());
        self
    }
}

/// A stored document, as its SQL row describes it (content and text are read apart:
/// [`DocumentStore::content`], [`DocumentStore::text`]).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Document {
    /// Its id.
    pub id: String,
    /// The original file name (may be empty).
    pub filename: String,
    /// MIME type of the content, if given.
    pub content_type: Option<String>,
    /// Size of the content in bytes.
    pub size: u64,
    /// SHA-256 of the content, lowercase hex (64 characters).
    pub sha256: String,
    /// Whether it has text.
    pub has_text: bool,
    /// Passages of its text in the full-text index.
    pub passages: u64,
    /// The modalities it has embeddings of, in order.
    pub modalities: Vec<Modality>,
    /// Its metadata values.
    pub metadata: BTreeMap<String, FieldValue>,
    /// When the id was first stored (millisecond precision).
    pub created_at: SystemTime,
    /// When it was last stored (millisecond precision).
    pub updated_at: SystemTime,
    /// The generation its values and records carry (32 hex digits; new at every put).
    pub generation: String,
}

/// One page of [`DocumentStore::list`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DocumentPage {
    /// Documents in id order (bytewise).
    pub documents: Vec<Document>,
    /// Pass as `after` for the next page; `None` when this is the last.
    pub next: Option<String>,
}

/// One part of a [`MultimodalQuery`]: the BM25 keyword search or one modality's k-NN.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum QuerySource {
    /// BM25 over the documents' passages.
    Keywords,
    /// k-NN over one modality's embeddings.
    Vector(Modality),
}

/// A query vector and its weight in the fusion.
#[derive(Clone, Debug, PartialEq)]
pub struct WeightedVector {
    /// The query vector (the modality's dimension).
    pub vector: Vec<f32>,
    /// Its list's weight in the fusion (finite, non-negative; default 1).
    pub weight: f32,
}

/// A search over documents (seed 004's `MultimodalQuery`): keywords, one query vector per
/// modality, or any mix, with one metadata filter for all, fused by weighted RRF.
///
/// ```
/// use hybridstore::documents::MultimodalQuery;
/// use hybridstore::Modality;
/// use hybridstore::core::vector::Filter;
/// let query = MultimodalQuery::new(10)
///     .with_keywords("harbour at dawn")
///     .with_vector(Modality::Image, vec![0.1, 0.9, 0.0])
///     .with_weight(Modality::Image, 2.0)
///     .with_filter(Filter::eq("author", "ana"));
/// assert_eq!(query.k, 10);
/// ```
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct MultimodalQuery {
    /// How many documents at most (1 to 10,000).
    pub k: usize,
    /// Words to find in the passages (BM25), if any.
    pub keywords: Option<String>,
    /// The keyword list's weight in the fusion (default 1).
    pub keyword_weight: f32,
    /// A query vector per modality.
    pub vectors: BTreeMap<Modality, WeightedVector>,
    /// Only documents whose metadata matches (applied in every list, before the search).
    pub filter: Option<Filter>,
}

impl MultimodalQuery {
    /// A query for the `k` best documents, with no parts yet.
    pub fn new(k: usize) -> MultimodalQuery {
        MultimodalQuery {
            k,
            keywords: None,
            keyword_weight: 1.0,
            vectors: BTreeMap::new(),
            filter: None,
        }
    }

    /// Adds a keyword search.
    pub fn with_keywords(mut self, keywords: impl Into<String>) -> Self {
        self.keywords = Some(keywords.into());
        self
    }

    /// Adds (or replaces) the query vector of `modality`, weight 1.
    pub fn with_vector(mut self, modality: Modality, vector: Vec<f32>) -> Self {
        self.vectors.insert(
            modality,
            WeightedVector {
                vector,
                weight: 1.0,
            },
        );
        self
    }

    /// Sets the weight of `modality`'s list (after [`with_vector`](Self::with_vector)).
    pub fn with_weight(mut self, modality: Modality, weight: f32) -> Self {
        if let Some(v) = self.vectors.get_mut(&modality) {
            v.weight = weight;
        }
        self
    }

    /// Sets the weight of the keyword list.
    pub fn with_keyword_weight(mut self, weight: f32) -> Self {
        self.keyword_weight = weight;
        self
    }

    /// Adds a metadata filter.
    pub fn with_filter(mut self, filter: Filter) -> Self {
        self.filter = Some(filter);
        self
    }
}

/// Where one list placed a hit.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SourceRank {
    /// The list.
    pub source: QuerySource,
    /// 1-based rank among that list's documents.
    pub rank: usize,
    /// The list's own score: BM25 for keywords, `−distance` for vectors.
    pub score: f32,
}

/// One document found by [`DocumentStore::search`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DocumentHit {
    /// The document.
    pub document: Document,
    /// The fused score: the sum of `weight / (60 + rank)` over the lists it is in.
    pub score: f32,
    /// Its place in each list it appears in.
    pub sources: Vec<SourceRank>,
    /// Its best-matching passage, when the keywords found it.
    pub passage: Option<String>,
}

/// One document of a put: what to write and the note of intent that describes it.
struct Plan {
    doc: NewDocument,
    pending: Pending,
    /// The replaced document's creation time.
    created_at: Option<SystemTime>,
}

/// What the store keeps in the SQL row's metadata column.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct RowMeta {
    format: u32,
    generation: String,
    content_type: Option<String>,
    has_text: bool,
    passages: u64,
    modalities: Vec<Modality>,
    updated_at_ms: i64,
    fields: BTreeMap<String, FieldValue>,
}

/// A note of a write in progress (a `settings` row until the write is done).
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Pending {
    /// `put` or `delete`.
    op: String,
    doc_id: String,
    /// The generation the put writes, or the delete removes.
    generation: String,
    /// The generation a put replaces.
    replaces: Option<String>,
}

/// Where the `documents` table is.
#[derive(Clone, Debug)]
pub(crate) enum SqlHome {
    /// The primary's database.
    Primary(Arc<SqlStore>),
    /// A SQLite file of its own.
    File(PathBuf),
}

/// What opening the documents store made ready.
#[derive(Debug)]
struct Ready {
    sql: Arc<SqlStore>,
    /// Whether the store opened `sql` itself (then `shutdown` closes it).
    owned: bool,
}

#[derive(Debug)]
struct Shared {
    kv: Arc<dyn KvStore>,
    vectors: LanceVectorStore,
    home: SqlHome,
    shape: DocumentsConfig,
    table: String,
    verify_reads: bool,
    ready: OnceCell<Ready>,
    /// The passages collection has its full-text index.
    text_index: AtomicBool,
    locks: Vec<Mutex<()>>,
    /// The tenant whose documents these are (`None`: the documents of no tenant).
    tenant: Option<TenantId>,
    /// The vector store without a tenant scope: indexes cover every tenant's records of a
    /// collection and train on all of them, so `create_indexes` counts and builds through it.
    tables: LanceVectorStore,
}

/// Documents across SQL, the key/value stack and LanceDB; see the [module docs](self).
/// Obtained from [`HybridStorageSystem::documents`](crate::HybridStorageSystem::documents);
/// cloning is cheap. The first call opens the SQL table, creates the collections and repairs
/// what interrupted writes left.
#[derive(Clone, Debug)]
pub struct DocumentStore {
    shared: Arc<Shared>,
}

impl DocumentStore {
    pub(crate) fn new(
        kv: Arc<dyn KvStore>,
        vectors: LanceVectorStore,
        home: SqlHome,
        shape: DocumentsConfig,
        table: String,
        verify_reads: bool,
    ) -> DocumentStore {
        DocumentStore {
            shared: Arc::new(Shared {
                kv,
                tables: vectors.clone(),
                vectors,
                home,
                shape,
                table,
                verify_reads,
                ready: OnceCell::new(),
                text_index: AtomicBool::new(false),
                locks: (0..WRITE_LOCKS).map(|_| Mutex::new(())).collect(),
                tenant: None,
            }),
        }
    }

    /// The documents of `tenant`: the same tables and collections, with the tenant's rows
    /// (the SQL table is keyed by tenant and id), its values in `kv` (the tenant's
    /// namespace) and its LanceDB records (scoped to the tenant, under `quota`).
    ///
    /// # Errors
    /// As opening this store (the first call of any operation).
    pub(crate) async fn for_tenant(
        &self,
        tenant: TenantId,
        kv: Arc<dyn KvStore>,
        quota: VectorQuota,
    ) -> Result<DocumentStore> {
        let parent = &self.shared;
        // The tenant's store shares the parent's open database (closed by the parent).
        let sql = self.ready().await?.sql.clone();
        Ok(DocumentStore {
            shared: Arc::new(Shared {
                kv,
                vectors: parent.vectors.for_tenant_with_quota(tenant.clone(), quota),
                home: SqlHome::Primary(sql),
                shape: parent.shape.clone(),
                table: parent.table.clone(),
                verify_reads: parent.verify_reads,
                ready: OnceCell::new(),
                text_index: AtomicBool::new(false),
                locks: (0..WRITE_LOCKS).map(|_| Mutex::new(())).collect(),
                tenant: Some(tenant),
                tables: parent.tables.clone(),
            }),
        })
    }

    /// Builds the indexes a large documents store searches with, and returns how many: a
    /// vector index (IVF-HNSW-SQ with LanceDB's default parameters: √rows partitions, 20
    /// edges per node, a construction list of 300) on each modality collection holding at
    /// least [`MIN_ROWS_FOR_VECTOR_INDEX`] records, and a scalar index (B-tree) on `doc_id`
    /// and on each declared metadata field of every collection, so filtered searches
    /// pre-filter through it. Building again replaces them. Records added later are searched
    /// beside the indexes, unindexed, until LanceDB's optimize folds them in (the upkeep's
    /// daily `upkeep_lancedb_optimize_secs` job). The collections are every tenant's: a
    /// tenant's store counts every tenant's records and builds the same indexes.
    ///
    /// # Errors
    /// Errors of LanceDB (a field whose values it cannot index, a write in progress).
    pub async fn create_indexes(&self) -> Result<usize> {
        self.ready().await?;
        let tables = &self.shared.tables;
        let modalities: Vec<String> = self
            .shared
            .shape
            .modalities()
            .into_iter()
            .map(|m| self.modality_collection(m))
            .collect();
        let mut built = 0;
        for collection in std::iter::once(&self.shared.table).chain(&modalities) {
            let is_modality = collection != &self.shared.table;
            if is_modality && tables.count(collection, None).await? >= MIN_ROWS_FOR_VECTOR_INDEX {
                let index = IndexSpec::IvfHnswSq {
                    num_partitions: None,
                    num_edges: None,
                    ef_construction: None,
                };
                tables.create_index(collection, &index).await?;
                built += 1;
            }
            let fields = std::iter::once("doc_id")
                .chain(self.shared.shape.fields.keys().map(String::as_str));
            for field in fields {
                let index = IndexSpec::Scalar {
                    field: field.to_string(),
                };
                tables.create_index(collection, &index).await?;
                built += 1;
            }
        }
        Ok(built)
    }

    /// The tenant whose documents these are (`None`: the documents of no tenant).
    pub fn tenant(&self) -> Option<&TenantId> {
        self.shared.tenant.as_ref()
    }

    /// The SQL database of the `documents` table (opened if needed).
    pub(crate) async fn sql(&self) -> Result<Arc<SqlStore>> {
        Ok(self.ready().await?.sql.clone())
    }

    /// The shape the store was configured with.
    pub fn shape(&self) -> &DocumentsConfig {
        &self.shared.shape
    }

    /// The passages collection's name.
    pub fn passages_collection(&self) -> &str {
        &self.shared.table
    }

    /// The collection holding `modality`'s embeddings (`<table>_<modality>`).
    pub fn modality_collection(&self, modality: Modality) -> String {
        format!("{}_{}", self.shared.table, modality.as_str())
    }

    /// Stores `doc`, replacing any document with its id (its creation time kept), and
    /// returns what was stored. Atomic: readers see the old document or the new one.
    ///
    /// # Errors
    /// `InvalidInput` for an id outside 1 to [`MAX_DOCUMENT_ID_LEN`] bytes or with NUL, a
    /// filename over 4,096 bytes, an embedding of a modality the store has no dimension for,
    /// of the wrong dimension or not finite (`check_vector`), a metadata field that is not
    /// declared or has another type, metadata over 1 MiB of JSON, or a content or text over
    /// the stack's value limit (nothing is written then); errors of the engines (what was
    /// written is then deleted again, or on the next open if that fails too).
    pub async fn put(&self, doc: NewDocument) -> Result<Document> {
        let mut stored = self.put_many(vec![doc]).await?;
        stored
            .pop()
            .ok_or_else(|| Error::backend("a put of one document stored none"))
    }

    /// Stores several documents (seed 004's `batch_store`), each atomic as with
    /// [`put`](Self::put), with one LanceDB append per collection for the whole call: the
    /// way to load many documents (each append is a new Lance version and fragment until
    /// the upkeep's optimize compacts them). Returns what was stored, in order. If the call
    /// fails, some documents may be stored (each whole) and the others untouched.
    ///
    /// # Errors
    /// As [`put`](Self::put) for any document, and `InvalidInput` if two share an id; nothing
    /// is written when any document is invalid.
    pub async fn put_many(&self, docs: Vec<NewDocument>) -> Result<Vec<Document>> {
        let mut seen = std::collections::HashSet::new();
        for doc in &docs {
            self.validate(doc)?;
            if !seen.insert(doc.id.as_str()) {
                return Err(Error::invalid_input(format!(
                    "document {:?} appears twice in one put_many",
                    doc.id
                )));
            }
        }
        if docs.is_empty() {
            return Ok(Vec::new());
        }
        let this = self.clone();
        // Its own task: a caller that stops waiting does not stop it between two steps.
        tokio::spawn(async move { this.put_now(docs).await })
            .await
            .map_err(|e| Error::backend(format!("document write task failed: {e}")))?
    }

    /// Deletes the document `id`; returns whether it existed. Atomic like `put`.
    ///
    /// # Errors
    /// `InvalidInput` for an invalid id; errors of the engines.
    pub async fn delete(&self, id: &str) -> Result<bool> {
        check_id(id)?;
        let (this, id) = (self.clone(), id.to_string());
        tokio::spawn(async move { this.delete_now(&id).await })
            .await
            .map_err(|e| Error::backend(format!("document delete task failed: {e}")))?
    }

    /// The document `id`, if stored.
    ///
    /// # Errors
    /// `InvalidInput` for an invalid id; `Corrupted` if its row's metadata cannot be read;
    /// errors of the SQL engine.
    pub async fn get(&self, id: &str) -> Result<Option<Document>> {
        check_id(id)?;
        let ready = self.ready().await?;
        self.row(&ready.sql, id).await
    }

    /// The content of document `id` (empty if it was stored without), if stored.
    ///
    /// # Errors
    /// As [`get`](Self::get); `Corrupted` if the content is missing or does not match the
    /// SHA-256 its row records.
    pub async fn content(&self, id: &str) -> Result<Option<Bytes>> {
        let Some(doc) = self.get(id).await? else {
            return Ok(None);
        };
        if doc.size == 0 {
            return Ok(Some(Bytes::new()));
        }
        let key = value_key(&doc.generation, "content")?;
        let bytes = self.shared.kv.get(&key).await?.ok_or_else(|| {
            Error::corrupted(format!("document {id:?}: its content is missing"))
                .with_context("key", String::from_utf8_lossy(key.as_bytes()))
        })?;
        if self.shared.verify_reads && Sha256Digest::of(&bytes).to_hex() != doc.sha256 {
            return Err(Error::corrupted(format!(
                "document {id:?}: its content does not match the SHA-256 its row records"
            )));
        }
        Ok(Some(bytes))
    }

    /// The text of document `id`: `Some(None)` for a document stored without text.
    ///
    /// # Errors
    /// As [`get`](Self::get); `Corrupted` if the text is missing or not UTF-8.
    pub async fn text(&self, id: &str) -> Result<Option<Option<String>>> {
        let Some(doc) = self.get(id).await? else {
            return Ok(None);
        };
        if !doc.has_text {
            return Ok(Some(None));
        }
        let key = value_key(&doc.generation, "text")?;
        let bytes = self
            .shared
            .kv
            .get(&key)
            .await?
            .ok_or_else(|| Error::corrupted(format!("document {id:?}: its text is missing")))?;
        let text = String::from_utf8(bytes.to_vec())
            .map_err(|_| Error::corrupted(format!("document {id:?}: its text is not UTF-8")))?;
        Ok(Some(Some(text)))
    }

    /// Documents in id order whose metadata matches `filter` (all with `None`), after the id
    /// `after`, at most `limit` (clamped to 1 to [`MAX_LIST_PAGE`]). Rows are read from SQL
    /// 500 at a time and filtered as LanceDB would ([`Filter::matches`]), so a selective
    /// filter costs a walk over the rows it skips.
    ///
    /// # Errors
    /// `InvalidInput` for a filter naming an undeclared field or comparing with another
    /// type; errors of the SQL engine.
    pub async fn list(
        &self,
        filter: Option<&Filter>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<DocumentPage> {
        if let Some(f) = filter {
            f.validate(&self.passages_spec())?;
        }
        let limit = limit.clamp(1, MAX_LIST_PAGE);
        let ready = self.ready().await?;
        let mut cursor = after.map(str::to_string);
        let mut documents = Vec::new();
        loop {
            let rows = self
                .rows(&ready.sql)
                .list(cursor.as_deref(), LIST_SCAN_PAGE)
                .await?;
            let exhausted = rows.len() < LIST_SCAN_PAGE;
            for r in rows {
                cursor = Some(r.doc_id.clone());
                let doc = document_of(r)?;
                if filter.is_none_or(|f| f.matches(&doc.metadata)) {
                    documents.push(doc);
                    if documents.len() == limit {
                        // A next page exists unless this was the very last row.
                        let next = Some(documents[limit - 1].id.clone());
                        return Ok(DocumentPage { documents, next });
                    }
                }
            }
            if exhausted {
                return Ok(DocumentPage {
                    documents,
                    next: None,
                });
            }
        }
    }

    /// Number of stored documents.
    ///
    /// # Errors
    /// Errors of the SQL engine.
    pub async fn count(&self) -> Result<u64> {
        self.rows(&self.ready().await?.sql).count().await
    }

    /// The `k` documents that best match `query`, best first; see the [module docs](self)
    /// for the fusion. Hits of a write in progress or of an interrupted one are never
    /// returned.
    ///
    /// # Errors
    /// `InvalidInput` for a query with no keywords and no vector, empty keywords, `k`
    /// outside 1 to 10,000, a vector of a modality the store has no embeddings of or of the
    /// wrong dimension, a weight that is negative or not finite, or a filter that does not
    /// fit the declared fields; errors of the engines.
    pub async fn search(&self, query: &MultimodalQuery) -> Result<Vec<DocumentHit>> {
        self.check_query(query)?;
        let ready = self.ready().await?;
        let mut sources: Vec<(QuerySource, f32)> = Vec::new();
        if query.keywords.is_some() {
            sources.push((QuerySource::Keywords, query.keyword_weight));
        }
        for (m, v) in &query.vectors {
            sources.push((QuerySource::Vector(*m), v.weight));
        }
        // Each list first asks for a few more than k (a text has several passages: more
        // there); a list that comes back full but with fewer than k live documents (hits of
        // writes in progress or interrupted, further passages) is asked again for 4x more.
        let first_fetch = |source: QuerySource| {
            match source {
                QuerySource::Keywords => query.k * 4 + 16,
                QuerySource::Vector(_) => query.k + 8,
            }
            .min(MAX_K)
        };
        let mut lists: Vec<(usize, Vec<SearchHit>)> =
            futures::future::try_join_all(sources.iter().map(|(source, _)| async move {
                let fetch = first_fetch(*source);
                Ok::<_, Error>((fetch, self.run_list(query, *source, fetch).await?))
            }))
            .await?;
        let mut rows: HashMap<String, Option<Document>> = HashMap::new();
        let mut ranked: Vec<Vec<(String, SearchHit)>> = vec![Vec::new(); lists.len()];
        for (i, (source, _)) in sources.iter().enumerate() {
            loop {
                let (fetch, hits) = &lists[i];
                self.load_rows(&ready.sql, hits, &mut rows).await?;
                ranked[i] = live(hits, &rows);
                if ranked[i].len() >= query.k || hits.len() < *fetch || *fetch >= MAX_K {
                    break;
                }
                let more = (fetch * 4).min(MAX_K);
                lists[i] = (more, self.run_list(query, *source, more).await?);
            }
        }
        let mut fused: HashMap<String, DocumentHit> = HashMap::new();
        for ((source, weight), list) in sources.iter().zip(ranked) {
            for (rank, (id, hit)) in (1..).zip(list) {
                let Some(Some(doc)) = rows.get(&id) else {
                    continue;
                };
                let entry = fused.entry(id).or_insert_with(|| DocumentHit {
                    document: doc.clone(),
                    score: 0.0,
                    sources: Vec::new(),
                    passage: None,
                });
                #[allow(clippy::cast_precision_loss)] // ranks are at most 10,000
                let share = weight / (RRF_K + rank as f32);
                entry.score += share;
                entry.sources.push(SourceRank {
                    source: *source,
                    rank,
                    score: hit.score,
                });
                if *source == QuerySource::Keywords {
                    entry.passage = hit.text;
                }
            }
        }
        let mut hits: Vec<DocumentHit> = fused.into_values().collect();
        hits.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then_with(|| best_rank(a).cmp(&best_rank(b)))
                .then_with(|| a.document.id.cmp(&b.document.id))
        });
        hits.truncate(query.k);
        Ok(hits)
    }

    /// One list of a query: `fetch` hits of the BM25 search or of one modality's k-NN.
    async fn run_list(
        &self,
        query: &MultimodalQuery,
        source: QuerySource,
        fetch: usize,
    ) -> Result<Vec<SearchHit>> {
        match source {
            QuerySource::Keywords => {
                // No passage was ever indexed: nothing matches the keywords.
                if !self.has_text_index().await? {
                    return Ok(Vec::new());
                }
                let q = TextQuery {
                    text: query.keywords.clone().unwrap_or_default(),
                    k: fetch,
                    filter: self.scoped_filter(query.filter.as_ref()),
                };
                self.shared
                    .vectors
                    .text_search(&self.shared.table, &q)
                    .await
            }
            QuerySource::Vector(m) => {
                let Some(v) = query.vectors.get(&m) else {
                    return Ok(Vec::new());
                };
                let mut q = VectorQuery::new(v.vector.clone(), fetch);
                q.filter = self.scoped_filter(query.filter.as_ref());
                self.shared
                    .vectors
                    .search(&self.modality_collection(m), &q)
                    .await
            }
        }
    }

    /// Reads the rows of the documents `hits` name that `rows` does not hold yet, with one
    /// query (per 512 ids).
    async fn load_rows(
        &self,
        sql: &Arc<SqlStore>,
        hits: &[SearchHit],
        rows: &mut HashMap<String, Option<Document>>,
    ) -> Result<()> {
        let mut missing: Vec<String> = hits
            .iter()
            .filter_map(|h| text_field(h, "doc_id"))
            .filter(|id| !rows.contains_key(id))
            .collect();
        missing.sort();
        missing.dedup();
        if missing.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = missing.iter().map(String::as_str).collect();
        let found = self.rows(sql).get_many(&ids).await?;
        for id in &missing {
            rows.insert(id.clone(), None);
        }
        for row in found {
            let doc = document_of(row)?;
            rows.insert(doc.id.clone(), Some(doc));
        }
        Ok(())
    }

    /// Closes the SQLite file the store opened itself (not the primary's database).
    pub(crate) async fn close(&self) {
        if let Some(ready) = self.shared.ready.get()
            && ready.owned
        {
            ready.sql.close().await;
        }
    }

    /// The SQLite database of the `documents` table when the store keeps one of its own
    /// (not the primary's) and it exists: what a backup copies.
    pub(crate) async fn own_sql_for_backup(&self) -> Result<Option<Arc<SqlStore>>> {
        match &self.shared.home {
            SqlHome::Primary(_) => Ok(None),
            SqlHome::File(path) => {
                let exists = self.shared.ready.initialized() || {
                    let path = path.clone();
                    tokio::task::spawn_blocking(move || path.exists())
                        .await
                        .map_err(|e| {
                            Error::backend(format!("checking {DOCUMENTS_SQLITE_FILE}: {e}"))
                        })?
                };
                if exists {
                    Ok(Some(self.ready().await?.sql.clone()))
                } else {
                    Ok(None)
                }
            }
        }
    }

    // ---- internals --------------------------------------------------------------------

    /// Opens the table, creates the collections and repairs interrupted writes, once.
    async fn ready(&self) -> Result<&Ready> {
        self.shared
            .ready
            .get_or_try_init(|| async {
                let (sql, owned) = match &self.shared.home {
                    SqlHome::Primary(sql) => (sql.clone(), false),
                    SqlHome::File(path) => {
                        let options = hybridstore_sql::SqlStoreOptions::default()
                            .with_verify_reads(self.shared.verify_reads);
                        let store = SqlStore::open_sqlite_file(path, options).await?;
                        (Arc::new(store), true)
                    }
                };
                self.shared
                    .vectors
                    .create_collection(&self.passages_spec())
                    .await?;
                for m in self.shared.shape.modalities() {
                    self.shared
                        .vectors
                        .create_collection(&self.modality_spec(m))
                        .await?;
                }
                let ready = Ready { sql, owned };
                self.repair(&ready.sql).await?;
                Ok(ready)
            })
            .await
    }

    /// The declared metadata fields as a spec's fields, with the store's own.
    fn with_fields(&self, mut spec: CollectionSpec) -> CollectionSpec {
        spec = spec
            .with_field("doc_id", FieldType::String)
            .with_field("generation", FieldType::String);
        for (name, ty) in &self.shared.shape.fields {
            spec = spec.with_field(name.clone(), *ty);
        }
        spec
    }

    fn passages_spec(&self) -> CollectionSpec {
        self.with_fields(CollectionSpec::text_only(self.shared.table.clone()))
            .with_field("passage", FieldType::Integer)
    }

    fn modality_spec(&self, modality: Modality) -> CollectionSpec {
        self.with_fields(CollectionSpec::new(
            self.modality_collection(modality),
            self.shared.shape.dimension(modality),
            self.shared.shape.distance,
        ))
    }

    fn validate(&self, doc: &NewDocument) -> Result<()> {
        check_id(&doc.id)?;
        if doc.filename.len() > hybridstore_sql::MAX_FILENAME_LEN || doc.filename.contains('\0') {
            return Err(Error::invalid_input(format!(
                "a document's filename must be at most {} bytes without NUL",
                hybridstore_sql::MAX_FILENAME_LEN
            )));
        }
        for (m, vector) in &doc.embeddings {
            let dimension = self.shared.shape.dimension(*m);
            if dimension == 0 {
                return Err(Error::invalid_input(format!(
                    "document {:?} has a {m} embedding, but the documents store has none \
                     (set documents.{m}_dimension)",
                    doc.id
                )));
            }
            check_vector(vector, dimension, self.shared.shape.distance)
                .map_err(|e| e.with_context("modality", m.as_str()))?;
        }
        for (name, value) in &doc.metadata {
            match self.shared.shape.fields.get(name) {
                None => {
                    return Err(Error::invalid_input(format!(
                        "document {:?}: metadata field {name:?} is not declared (declared: {})",
                        doc.id,
                        self.shared
                            .shape
                            .fields
                            .keys()
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(", ")
                    )));
                }
                Some(ty) if *ty != value.field_type() => {
                    return Err(Error::invalid_input(format!(
                        "document {:?}: metadata field {name:?} is {ty:?}, got a {:?} value",
                        doc.id,
                        value.field_type()
                    )));
                }
                Some(_) => {}
            }
        }
        let json = serde_json::to_vec(&doc.metadata).map_or(usize::MAX, |v| v.len());
        // Room for the store's own part of the row's metadata (generation, flags): 4 KiB.
        if json > hybridstore_sql::MAX_JSON_LEN - 4096 {
            return Err(Error::invalid_input(format!(
                "document {:?}: its metadata is {json} bytes of JSON; the most is {}",
                doc.id,
                hybridstore_sql::MAX_JSON_LEN - 4096
            )));
        }
        let limit = self
            .shared
            .kv
            .capabilities()
            .max_value_len
            .unwrap_or(u64::MAX);
        let text_len = doc.text.as_ref().map_or(0, String::len);
        if doc.content.len() as u64 > limit || text_len as u64 > limit {
            return Err(Error::invalid_input(format!(
                "document {:?}: content or text over the store's limit of {limit} bytes",
                doc.id
            )));
        }
        Ok(())
    }

    fn check_query(&self, query: &MultimodalQuery) -> Result<()> {
        if query.k == 0 || query.k > MAX_K {
            return Err(Error::invalid_input(format!(
                "k must be between 1 and {MAX_K}, got {}",
                query.k
            )));
        }
        if query.keywords.is_none() && query.vectors.is_empty() {
            return Err(Error::invalid_input(
                "a document query needs keywords or a vector",
            ));
        }
        if query.keywords.as_ref().is_some_and(|k| k.trim().is_empty()) {
            return Err(Error::invalid_input("the keywords are empty"));
        }
        let weights =
            std::iter::once(query.keyword_weight).chain(query.vectors.values().map(|v| v.weight));
        for w in weights {
            if !w.is_finite() || w < 0.0 {
                return Err(Error::invalid_input(format!(
                    "fusion weights must be finite and non-negative, got {w}"
                )));
            }
        }
        for (m, v) in &query.vectors {
            let dimension = self.shared.shape.dimension(*m);
            if dimension == 0 {
                return Err(Error::invalid_input(format!(
                    "the documents store has no {m} embeddings (set documents.{m}_dimension)"
                )));
            }
            check_vector(&v.vector, dimension, self.shared.shape.distance)?;
        }
        if let Some(f) = &query.filter {
            f.validate(&self.passages_spec())?;
        }
        Ok(())
    }

    /// The write lock stripe of `id`.
    fn stripe(&self, id: &str) -> usize {
        use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
        let hash = BuildHasherDefault::<DefaultHasher>::default().hash_one(id);
        (hash % WRITE_LOCKS as u64) as usize
    }

    async fn put_now(&self, batch: Vec<NewDocument>) -> Result<Vec<Document>> {
        let ready = self.ready().await?;
        // One lock per distinct stripe, taken in order: two batches never wait on each other
        // in a cycle.
        let mut stripes: Vec<usize> = batch.iter().map(|d| self.stripe(&d.id)).collect();
        stripes.sort_unstable();
        stripes.dedup();
        let mut writers = Vec::with_capacity(stripes.len());
        for stripe in stripes {
            writers.push(self.shared.locks[stripe].lock().await);
        }
        let mut plans = Vec::with_capacity(batch.len());
        for doc in batch {
            let old = self.row(&ready.sql, &doc.id).await?;
            let pending = Pending {
                op: "put".to_string(),
                doc_id: doc.id.clone(),
                generation: format!("{:032x}", rand::random::<u128>()),
                replaces: old.as_ref().map(|d| d.generation.clone()),
            };
            self.note(&ready.sql, &pending).await?;
            plans.push(Plan {
                doc,
                pending,
                created_at: old.map(|d| d.created_at),
            });
        }
        match self.write_generations(ready, &plans).await {
            Ok(stored) => {
                for plan in &plans {
                    if let Some(replaced) = &plan.pending.replaces {
                        self.remove_generation(replaced).await?;
                    }
                    self.forget(&ready.sql, &plan.pending).await?;
                }
                Ok(stored)
            }
            Err(e) => {
                // Undo what did not commit; if that fails too, the notes stay and the next
                // open finishes the job.
                for plan in &plans {
                    let committed = self
                        .row(&ready.sql, &plan.doc.id)
                        .await
                        .ok()
                        .flatten()
                        .is_some_and(|d| d.generation == plan.pending.generation);
                    let undo = if committed {
                        match &plan.pending.replaces {
                            Some(old) => self.remove_generation(old).await,
                            None => Ok(()),
                        }
                    } else {
                        self.remove_generation(&plan.pending.generation).await
                    };
                    if undo.is_ok() {
                        self.forget(&ready.sql, &plan.pending).await.ok();
                    }
                }
                Err(e)
            }
        }
    }

    /// Writes every plan's values, then its records (one append per collection), then the
    /// rows: each row is its document's commit point.
    async fn write_generations(&self, ready: &Ready, plans: &[Plan]) -> Result<Vec<Document>> {
        let mut passages_records = Vec::new();
        let mut modality_records: BTreeMap<Modality, Vec<VectorRecord>> = BTreeMap::new();
        let mut cuts = Vec::with_capacity(plans.len());
        for plan in plans {
            let (doc, generation) = (&plan.doc, plan.pending.generation.as_str());
            if !doc.content.is_empty() {
                let options = match &doc.content_type {
                    Some(t) => hybridstore_core::PutOptions::with_content_type(t.clone()),
                    None => hybridstore_core::PutOptions::default(),
                };
                self.shared
                    .kv
                    .put_with(
                        &value_key(generation, "content")?,
                        doc.content.clone(),
                        &options,
                    )
                    .await?;
            }
            let cut = match &doc.text {
                Some(text) => {
                    self.shared
                        .kv
                        .put(
                            &value_key(generation, "text")?,
                            Bytes::from(text.clone().into_bytes()),
                        )
                        .await?;
                    let text = text.clone();
                    tokio::task::spawn_blocking(move || passages(TextKind::Plain, text.as_bytes()))
                        .await
                        .map_err(|e| Error::backend(format!("cutting passages failed: {e}")))?
                }
                None => Vec::new(),
            };
            let base = |id: String| {
                let mut r = VectorRecord::new(id, Vec::new())
                    .with_field("doc_id", doc.id.clone())
                    .with_field("generation", generation.to_string());
                for (name, value) in &doc.metadata {
                    r = r.with_field(name.clone(), value.clone());
                }
                r
            };
            for (n, text) in cut.iter().enumerate() {
                passages_records.push(
                    base(format!("{generation}/{n}"))
                        .with_text(text.clone())
                        .with_field("passage", n as i64),
                );
            }
            for (m, vector) in &doc.embeddings {
                let mut record = base(generation.to_string());
                record.vector.clone_from(vector);
                modality_records.entry(*m).or_default().push(record);
            }
            cuts.push(cut.len() as u64);
        }
        if !passages_records.is_empty() {
            self.shared
                .vectors
                .add(&self.shared.table, passages_records)
                .await?;
            self.ensure_text_index().await?;
        }
        for (m, records) in modality_records {
            self.shared
                .vectors
                .add(&self.modality_collection(m), records)
                .await?;
        }
        let mut stored = Vec::with_capacity(plans.len());
        for (plan, passages) in plans.iter().zip(cuts) {
            let doc = &plan.doc;
            // The row keeps milliseconds: what `put` returns is what `get` will read.
            let now = UNIX_EPOCH
                + std::time::Duration::from_millis(
                    u64::try_from(unix_millis(SystemTime::now())).unwrap_or(0),
                );
            let meta = RowMeta {
                format: ROW_FORMAT,
                generation: plan.pending.generation.clone(),
                content_type: doc.content_type.clone(),
                has_text: doc.text.is_some(),
                passages,
                modalities: doc.embeddings.keys().copied().collect(),
                updated_at_ms: unix_millis(now),
                fields: doc.metadata.clone(),
            };
            let record = hybridstore_sql::Document {
                doc_id: doc.id.clone(),
                filename: doc.filename.clone(),
                size: doc.content.len() as u64,
                content_hash: Sha256Digest::of(&doc.content).to_hex(),
                created_at: plan.created_at.unwrap_or(now),
                metadata: serde_json::to_value(&meta)
                    .map_err(|e| Error::backend(format!("document metadata: {e}")))?,
            };
            // The commit point of this document.
            self.rows(&ready.sql).put(&record).await?;
            stored.push(document_of(record)?);
        }
        Ok(stored)
    }

    async fn delete_now(&self, id: &str) -> Result<bool> {
        let ready = self.ready().await?;
        let _one_writer = self.shared.locks[self.stripe(id)].lock().await;
        let Some(doc) = self.row(&ready.sql, id).await? else {
            return Ok(false);
        };
        let pending = Pending {
            op: "delete".to_string(),
            doc_id: id.to_string(),
            generation: doc.generation.clone(),
            replaces: None,
        };
        self.note(&ready.sql, &pending).await?;
        // The commit point.
        self.rows(&ready.sql).delete(id).await?;
        self.remove_generation(&doc.generation).await?;
        self.forget(&ready.sql, &pending).await?;
        Ok(true)
    }

    /// Deletes every value and record of `generation` (idempotent).
    async fn remove_generation(&self, generation: &str) -> Result<()> {
        for part in ["content", "text"] {
            self.shared.kv.delete(&value_key(generation, part)?).await?;
        }
        let only = Filter::eq("generation", generation);
        let collections = std::iter::once(self.shared.table.clone()).chain(
            self.shared
                .shape
                .modalities()
                .into_iter()
                .map(|m| self.modality_collection(m)),
        );
        for collection in collections {
            match self.shared.vectors.delete_where(&collection, &only).await {
                // A collection dropped under the store holds nothing to delete.
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Finishes or undoes every write a note of intent names.
    async fn repair(&self, sql: &SqlStore) -> Result<()> {
        for setting in sql.settings().list().await? {
            if !setting.key.starts_with(&self.pending_prefix()) {
                continue;
            }
            let pending: Pending = serde_json::from_value(setting.value)
                .map_err(|e| Error::corrupted(format!("unreadable note {:?}: {e}", setting.key)))?;
            let current = self.row(sql, &pending.doc_id).await?.map(|d| d.generation);
            let committed = current.as_deref() == Some(pending.generation.as_str());
            match (pending.op.as_str(), committed) {
                // A put that committed: its old generation goes.
                ("put", true) => {
                    if let Some(old) = &pending.replaces {
                        self.remove_generation(old).await?;
                    }
                }
                // A put that did not, or a delete that did: its generation goes.
                ("put", false) | ("delete", false) => {
                    self.remove_generation(&pending.generation).await?;
                }
                // A delete that did not remove the row: the document stands.
                _ => {}
            }
            tracing::info!(
                doc_id = %pending.doc_id,
                op = %pending.op,
                committed,
                "repaired an interrupted document write"
            );
            self.forget(sql, &pending).await?;
        }
        Ok(())
    }

    async fn has_text_index(&self) -> Result<bool> {
        if self.shared.text_index.load(Ordering::Acquire) {
            return Ok(true);
        }
        let info = self
            .shared
            .vectors
            .describe_collection(&self.shared.table)
            .await?;
        let has = !info.indexes.is_empty();
        if has {
            self.shared.text_index.store(true, Ordering::Release);
        }
        Ok(has)
    }

    /// The `documents` rows this store reads and writes: its tenant's, or those of no
    /// tenant.
    fn rows<'a>(&'a self, sql: &'a SqlStore) -> hybridstore_sql::Documents<'a> {
        match &self.shared.tenant {
            Some(tenant) => sql.tenant_documents(tenant),
            None => sql.documents(),
        }
    }

    /// The row of `id` read as a document.
    async fn row(&self, sql: &SqlStore, id: &str) -> Result<Option<Document>> {
        self.rows(sql).get(id).await?.map(document_of).transpose()
    }

    /// What the names of this store's notes of intent start with:
    /// [`PENDING_SETTING_PREFIX`], or for a tenant's documents
    /// `hybridstore.tenants.<tenant>.documents.pending.` (which the first does not match).
    fn pending_prefix(&self) -> String {
        match &self.shared.tenant {
            Some(tenant) => format!(
                "{TENANT_SETTING_PREFIX}{}.documents.pending.",
                tenant.as_str()
            ),
            None => PENDING_SETTING_PREFIX.to_string(),
        }
    }

    async fn note(&self, sql: &SqlStore, pending: &Pending) -> Result<()> {
        let value = serde_json::to_value(pending)
            .map_err(|e| Error::backend(format!("note of intent: {e}")))?;
        sql.settings()
            .set(
                &format!("{}{}", self.pending_prefix(), pending.generation),
                &value,
            )
            .await
    }

    async fn forget(&self, sql: &SqlStore, pending: &Pending) -> Result<()> {
        sql.settings()
            .delete(&format!("{}{}", self.pending_prefix(), pending.generation))
            .await
            .map(|_| ())
    }

    /// `filter` as this store's LanceDB queries need it: a tenant's store is scoped by its
    /// vector store; the store of no tenant keeps to the records of no tenant.
    fn scoped_filter(&self, filter: Option<&Filter>) -> Option<Filter> {
        if self.shared.tenant.is_some() {
            return filter.cloned();
        }
        let none = Filter::is_null("tenant");
        Some(match filter {
            Some(f) => f.clone().and(none),
            None => none,
        })
    }

    /// Creates the passages' full-text index once; later passages are searched unindexed
    /// until the upkeep's LanceDB optimize folds them in.
    async fn ensure_text_index(&self) -> Result<()> {
        if self.has_text_index().await? {
            return Ok(());
        }
        self.shared
            .vectors
            .create_index(&self.shared.table, &IndexSpec::FullText)
            .await?;
        self.shared.text_index.store(true, Ordering::Release);
        Ok(())
    }
}

fn check_id(id: &str) -> Result<()> {
    if id.is_empty() || id.len() > MAX_DOCUMENT_ID_LEN || id.contains('\0') {
        return Err(Error::invalid_input(format!(
            "a document id must be 1 to {MAX_DOCUMENT_ID_LEN} bytes without NUL, got {} bytes",
            id.len()
        )));
    }
    Ok(())
}

fn value_key(generation: &str, part: &str) -> Result<Key> {
    Key::new(format!("{DOCUMENT_KEY_PREFIX}{generation}/{part}"))
}

fn text_field(hit: &SearchHit, field: &str) -> Option<String> {
    match hit.metadata.get(field) {
        Some(FieldValue::String(s)) => Some(s.clone()),
        _ => None,
    }
}

/// The hits whose generation is the one their row names, one per document, in list order.
fn live(hits: &[SearchHit], rows: &HashMap<String, Option<Document>>) -> Vec<(String, SearchHit)> {
    let mut seen = std::collections::HashSet::new();
    hits.iter()
        .filter_map(|hit| {
            let id = text_field(hit, "doc_id")?;
            let generation = text_field(hit, "generation")?;
            let doc = rows.get(&id)?.as_ref()?;
            (doc.generation == generation && seen.insert(id.clone())).then(|| (id, hit.clone()))
        })
        .collect()
}

fn best_rank(hit: &DocumentHit) -> usize {
    hit.sources
        .iter()
        .map(|s| s.rank)
        .min()
        .unwrap_or(usize::MAX)
}

fn unix_millis(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A `documents` row as the document it describes.
fn document_of(r: hybridstore_sql::Document) -> Result<Document> {
    let meta: RowMeta = serde_json::from_value(r.metadata).map_err(|e| {
        Error::new(
            ErrorKind::Corrupted,
            format!(
                "document {:?}: its row was not written by the documents store: {e}",
                r.doc_id
            ),
        )
    })?;
    let updated_at = UNIX_EPOCH
        + std::time::Duration::from_millis(u64::try_from(meta.updated_at_ms).unwrap_or(0));
    Ok(Document {
        id: r.doc_id,
        filename: r.filename,
        content_type: meta.content_type,
        size: r.size,
        sha256: r.content_hash,
        has_text: meta.has_text,
        passages: meta.passages,
        modalities: meta.modalities,
        metadata: meta.fields,
        created_at: r.created_at,
        updated_at,
        generation: meta.generation,
    })
}
