//! Tenants (seed 000's multi-user isolation, seed 003's quotas): one handle per tenant whose
//! every operation is confined to that tenant, on every engine.
//!
//! [`HybridStorageSystem::tenant`](crate::HybridStorageSystem::tenant) returns a [`Tenant`]:
//!
//! | engine | how the tenant is confined |
//! |---|---|
//! | key/value stack (cache, dedup, primary) | keys live under `t/<tenant>/` ([`Namespaced`]); no key or range can leave the prefix |
//! | cache (L1, Redis L2) | entries are those keys, so one tenant's entries are never another's; deletes invalidate both tiers |
//! | SQL `documents`, `sessions` | rows are keyed by (tenant, id) |
//! | documents | the tenant's rows, values in its namespace, its LanceDB records |
//! | LanceDB | records carry the tenant; a scoped store reads, counts and deletes only them |
//! | analytics | access events of the tenant's keys name the tenant |
//!
//! **Quotas** ([`TenantQuota`]): bytes and keys of the tenant's key/value namespace (the
//! logical size of its values, document contents and texts included) and vector records per
//! LanceDB collection. A write that would pass one fails with `QuotaExceeded` and changes
//! nothing. Concurrent writers cannot pass a quota together: a write reserves what it may add
//! (under a lock of its key's stripe, so two writes of one key are accounted one after the
//! other) before it starts, and settles the reservation with what it did; a streamed put of
//! unknown length reserves all that is left of the byte quota while it runs. Overwrites that
//! shrink and deletes are always allowed. Usage is counted once per process from a scan of
//! the namespace (when the handle is first made) and kept up to date by the handle's writes;
//! writes that bypass the handle (the unscoped store under `t/<tenant>/`, another process on
//! a shared PostgreSQL database) are not seen until the next process counts again. The data
//! directory has one owner process, so within it the figures are exact. Key/value writes run
//! as tasks of their own, so a caller that stops waiting does not leave a reservation or the
//! figure half-updated (a streamed put, which borrows its reader, is the exception: if it is
//! cancelled, the figure may be off until the next process).
//!
//! **Registry.** Each tenant has a record under [`TENANT_REGISTRY_PREFIX`] in the unscoped
//! key/value store (name, creation time, quota), written when the tenant is first asked for;
//! [`HybridStorageSystem::tenants`](crate::HybridStorageSystem::tenants) lists them and
//! [`HybridStorageSystem::delete_tenant`](crate::HybridStorageSystem::delete_tenant) removes
//! a tenant from every engine, its record last, so an interrupted deletion is finished by
//! running it again.

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt, stream};
use hybridstore_core::{
    BatchOp, Error, ErrorKind, Key, KeyRange, KvStore, Namespaced, ObjectMeta, PutOptions, Result,
    TenantId, ValueReader, WriteBatch,
};
use serde::{Deserialize, Serialize};

/// Prefix of the registry records in the unscoped key/value store: tenant `acme`'s record is
/// `.hybridstore/tenants/acme` (JSON: [`TenantInfo`]).
pub const TENANT_REGISTRY_PREFIX: &str = ".hybridstore/tenants/";

/// Lock stripes of one tenant's key/value writes: writes of keys in one stripe are accounted
/// one after the other (64, as the documents store's write locks).
const STRIPES: usize = 64;
/// Concurrent `head`s a write batch reads its keys' sizes with.
const BATCH_HEADS: usize = 16;

/// What a tenant may hold. `None` is no limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TenantQuota {
    /// Logical bytes of the tenant's key/value values (document contents and texts
    /// included), before dedup and compression.
    pub max_bytes: Option<u64>,
    /// Keys of the tenant's key/value namespace (a document holds one or two: content and
    /// text).
    pub max_keys: Option<u64>,
    /// Records per LanceDB collection (a document's passages and embeddings included).
    pub max_vectors: Option<u64>,
}

impl TenantQuota {
    /// No limits.
    pub fn unlimited() -> TenantQuota {
        TenantQuota::default()
    }

    /// At most `bytes` logical bytes of values.
    #[must_use]
    pub fn with_max_bytes(mut self, bytes: u64) -> TenantQuota {
        self.max_bytes = Some(bytes);
        self
    }

    /// At most `keys` keys.
    #[must_use]
    pub fn with_max_keys(mut self, keys: u64) -> TenantQuota {
        self.max_keys = Some(keys);
        self
    }

    /// At most `records` records per vector collection.
    #[must_use]
    pub fn with_max_vectors(mut self, records: u64) -> TenantQuota {
        self.max_vectors = Some(records);
        self
    }
}

/// A tenant's registry record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantInfo {
    /// The tenant's name.
    pub name: String,
    /// When the tenant was first asked for, in milliseconds since the Unix epoch.
    pub created_at_ms: i64,
    /// Its quota.
    pub quota: TenantQuota,
}

/// What a tenant holds ([`Tenant::usage`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct TenantUsage {
    /// The tenant's name.
    pub tenant: String,
    /// Keys of its key/value namespace.
    pub keys: u64,
    /// Logical bytes of their values.
    pub bytes: u64,
    /// Its documents (rows of the `documents` table), when documents are on.
    pub documents: u64,
    /// Its live sessions, when the primary is a `SqlStore`.
    pub sessions: u64,
    /// Its LanceDB records per collection that holds any, when vectors are on.
    pub vectors: BTreeMap<String, u64>,
    /// Its quota.
    pub quota: TenantQuota,
}

/// What [`HybridStorageSystem::delete_tenant`](crate::HybridStorageSystem::delete_tenant)
/// removed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct TenantDeletion {
    /// Keys of its key/value namespace (through the cache, which forgets them in both tiers).
    pub keys: u64,
    /// Rows of the `documents` table.
    pub documents: u64,
    /// Rows of the `sessions` table.
    pub sessions: u64,
    /// LanceDB records, over every collection.
    pub vectors: u64,
    /// Access events (and the tenant's rows of the per-key rollups).
    pub analytics_events: u64,
    /// Whether a registry record was removed (false: the tenant was never registered).
    pub registered: bool,
}

/// The usage figures of one tenant's key/value namespace and the writes in progress.
#[derive(Debug, Default)]
struct Usage {
    keys: u64,
    bytes: u64,
    reserved_keys: u64,
    reserved_bytes: u64,
}

/// What the key/value layer of one tenant shares between clones and tasks.
#[derive(Debug)]
pub(crate) struct Accounting {
    tenant: TenantId,
    inner: Namespaced<Arc<dyn KvStore>>,
    quota: Mutex<TenantQuota>,
    usage: Mutex<Usage>,
    /// Taken by the caller before its write's task is spawned (and moved into it), so
    /// writes of one key apply in the order their callers made them, also when a caller
    /// stops waiting and its task runs on.
    stripes: Vec<Arc<tokio::sync::Mutex<()>>>,
    hasher: std::collections::hash_map::RandomState,
}

type StripeGuard = tokio::sync::OwnedMutexGuard<()>;

/// A reservation of keys and bytes against the quota, released when dropped unless
/// settled.
struct Reservation {
    accounting: Arc<Accounting>,
    keys: u64,
    bytes: u64,
}

impl Reservation {
    /// Replaces the reservation by what the write did.
    fn settle(self, keys: i128, bytes: i128) {
        let mut usage = self.accounting.usage();
        usage.keys = apply(usage.keys, keys);
        usage.bytes = apply(usage.bytes, bytes);
        // `Drop` releases the reservation itself.
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut usage = self.accounting.usage();
        usage.reserved_keys = usage.reserved_keys.saturating_sub(self.keys);
        usage.reserved_bytes = usage.reserved_bytes.saturating_sub(self.bytes);
    }
}

fn apply(value: u64, delta: i128) -> u64 {
    u64::try_from((i128::from(value) + delta).max(0)).unwrap_or(u64::MAX)
}

fn join_error(e: tokio::task::JoinError) -> Error {
    Error::backend(format!("a tenant's write task failed: {e}"))
}

impl Accounting {
    /// Counts the tenant's keys and bytes with one metadata scan of its namespace.
    pub(crate) async fn open(
        tenant: TenantId,
        inner: Arc<dyn KvStore>,
        quota: TenantQuota,
    ) -> Result<Accounting> {
        let inner = Namespaced::new(inner, tenant.clone());
        // `Namespaced::stats` is the metadata scan of the tenant's keys alone.
        let counted = inner.stats().await?;
        Ok(Accounting {
            tenant,
            inner,
            quota: Mutex::new(quota),
            usage: Mutex::new(Usage {
                keys: counted.keys,
                bytes: counted.logical_bytes,
                ..Usage::default()
            }),
            stripes: (0..STRIPES).map(|_| Arc::default()).collect(),
            hasher: std::collections::hash_map::RandomState::new(),
        })
    }

    fn usage(&self) -> std::sync::MutexGuard<'_, Usage> {
        self.usage.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn quota(&self) -> TenantQuota {
        *self.quota.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn set_quota(&self, quota: TenantQuota) {
        *self.quota.lock().unwrap_or_else(PoisonError::into_inner) = quota;
    }

    /// (keys, bytes) the tenant holds.
    pub(crate) fn figures(&self) -> (u64, u64) {
        let usage = self.usage();
        (usage.keys, usage.bytes)
    }

    fn stripe(&self, key: &Key) -> usize {
        (self.hasher.hash_one(key.as_bytes()) % STRIPES as u64) as usize
    }

    /// The stripe lock of `key`.
    async fn lock(&self, key: &Key) -> StripeGuard {
        self.stripes[self.stripe(key)].clone().lock_owned().await
    }

    /// The stripe locks of every key of `batch`, taken in index order (so two batches
    /// cannot deadlock).
    async fn lock_batch(&self, batch: &WriteBatch) -> Vec<StripeGuard> {
        let mut stripes: Vec<usize> = batch.ops().iter().map(|op| self.stripe(op.key())).collect();
        stripes.sort_unstable();
        stripes.dedup();
        let mut guards = Vec::with_capacity(stripes.len());
        for i in stripes {
            guards.push(self.stripes[i].clone().lock_owned().await);
        }
        guards
    }

    /// Reserves `keys` new keys and `bytes` more bytes, or fails with `QuotaExceeded`.
    fn reserve(self: &Arc<Self>, keys: u64, bytes: u64) -> Result<Reservation> {
        let quota = self.quota();
        let mut usage = self.usage();
        let exceeded = |what: &str, held: u64, reserved: u64, more: u64, max: u64| {
            Error::new(
                ErrorKind::QuotaExceeded,
                format!(
                    "tenant {} holds {held} {what} ({reserved} more reserved by writes in \
                     progress); {more} more would pass its quota of {max}",
                    self.tenant.as_str()
                ),
            )
            .with_retryable(false)
        };
        if let Some(max) = quota.max_keys
            && keys > 0
            && usage
                .keys
                .saturating_add(usage.reserved_keys)
                .saturating_add(keys)
                > max
        {
            return Err(exceeded("keys", usage.keys, usage.reserved_keys, keys, max));
        }
        if let Some(max) = quota.max_bytes
            && bytes > 0
            && usage
                .bytes
                .saturating_add(usage.reserved_bytes)
                .saturating_add(bytes)
                > max
        {
            return Err(exceeded(
                "bytes",
                usage.bytes,
                usage.reserved_bytes,
                bytes,
                max,
            ));
        }
        usage.reserved_keys += keys;
        usage.reserved_bytes += bytes;
        drop(usage);
        Ok(Reservation {
            accounting: self.clone(),
            keys,
            bytes,
        })
    }

    async fn put_with(
        self: Arc<Self>,
        _stripe: StripeGuard,
        key: Key,
        value: Bytes,
        options: PutOptions,
    ) -> Result<ObjectMeta> {
        let old = self.inner.head(&key).await?;
        let old_size = old.as_ref().map_or(0, |m| m.size);
        let new_size = value.len() as u64;
        let reservation =
            self.reserve(u64::from(old.is_none()), new_size.saturating_sub(old_size))?;
        let meta = self.inner.put_with(&key, value, &options).await?;
        reservation.settle(
            i128::from(old.is_none()),
            i128::from(meta.size) - i128::from(old_size),
        );
        Ok(meta)
    }

    async fn delete(self: Arc<Self>, _stripe: StripeGuard, key: Key) -> Result<()> {
        let old = self.inner.head(&key).await?;
        self.inner.delete(&key).await?;
        if let Some(old) = old {
            let mut usage = self.usage();
            usage.keys = usage.keys.saturating_sub(1);
            usage.bytes = usage.bytes.saturating_sub(old.size);
        }
        Ok(())
    }

    async fn write_batch(
        self: Arc<Self>,
        guards: Vec<StripeGuard>,
        batch: WriteBatch,
    ) -> Result<()> {
        // Each key's size before the batch and after it (the last operation on a key wins).
        let mut after: HashMap<Key, Option<u64>> = HashMap::new();
        for op in batch.ops() {
            match op {
                BatchOp::Put { key, value, .. } => {
                    after.insert(key.clone(), Some(value.len() as u64));
                }
                BatchOp::Delete { key } => {
                    after.insert(key.clone(), None);
                }
                BatchOp::Check { .. } => {}
            }
        }
        let inner = &self.inner;
        let before: Vec<(Key, Option<u64>)> = stream::iter(after.keys().cloned())
            .map(|key| async move {
                let old = inner.head(&key).await?;
                Ok::<_, Error>((key, old.map(|m| m.size)))
            })
            .buffer_unordered(BATCH_HEADS)
            .try_collect()
            .await?;
        let (mut dkeys, mut dbytes, mut new_keys, mut grow) = (0i128, 0i128, 0u64, 0u64);
        for (key, old) in &before {
            let new = after.get(key).copied().flatten();
            match (old, new) {
                (None, Some(n)) => {
                    dkeys += 1;
                    new_keys += 1;
                    dbytes += i128::from(n);
                    grow += n;
                }
                (Some(o), None) => {
                    dkeys -= 1;
                    dbytes -= i128::from(*o);
                }
                (Some(o), Some(n)) => {
                    dbytes += i128::from(n) - i128::from(*o);
                    grow += n.saturating_sub(*o);
                }
                (None, None) => {}
            }
        }
        let reservation = self.reserve(new_keys, grow)?;
        self.inner.write_batch(batch).await?;
        reservation.settle(dkeys, dbytes);
        drop(guards);
        Ok(())
    }

    async fn put_stream(
        self: &Arc<Self>,
        key: &Key,
        reader: ValueReader<'_>,
        options: &PutOptions,
    ) -> Result<ObjectMeta> {
        let _stripe = self.lock(key).await;
        let old = self.inner.head(key).await?;
        let old_size = old.as_ref().map_or(0, |m| m.size);
        // All that is left of the byte quota (plus what the old value frees) while the
        // stream runs: the length is not known up front.
        let allowance = self.quota().max_bytes.map(|max| {
            let usage = self.usage();
            max.saturating_sub(usage.bytes.saturating_add(usage.reserved_bytes))
                .saturating_add(old_size)
        });
        let reservation = self.reserve(
            u64::from(old.is_none()),
            allowance.map_or(0, |a| a.saturating_sub(old_size)),
        )?;
        let mut limited = LimitedReader {
            inner: reader,
            left: allowance,
            passed: false,
        };
        let result = self.inner.put_stream(key, &mut limited, options).await;
        if limited.passed {
            return Err(Error::new(
                ErrorKind::QuotaExceeded,
                format!(
                    "tenant {}: the streamed value passes what is left of its byte quota \
                     ({} bytes)",
                    self.tenant.as_str(),
                    allowance.unwrap_or(0)
                ),
            )
            .with_retryable(false)
            .with_context("key", key));
        }
        let meta = result?;
        reservation.settle(
            i128::from(old.is_none()),
            i128::from(meta.size) - i128::from(old_size),
        );
        Ok(meta)
    }
}

/// A reader that fails (with an I/O error the layer turns into `QuotaExceeded`) as soon as
/// its source yields more than `left` bytes, so a streamed value over the quota is never
/// stored (the store below sees a failed read and keeps the previous value).
struct LimitedReader<'a> {
    inner: ValueReader<'a>,
    /// Bytes the stream may still yield (`None`: no limit).
    left: Option<u64>,
    passed: bool,
}

impl tokio::io::AsyncRead for LimitedReader<'_> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let polled = std::pin::Pin::new(&mut *this.inner).poll_read(cx, buf);
        if let std::task::Poll::Ready(Ok(())) = &polled
            && let Some(left) = &mut this.left
        {
            let read = (buf.filled().len() - before) as u64;
            if read > *left {
                this.passed = true;
                return std::task::Poll::Ready(Err(std::io::Error::other(
                    "the value passes the tenant's byte quota",
                )));
            }
            *left -= read;
        }
        polled
    }
}

/// The key/value store of one tenant: [`Namespaced`] over the whole stack, with the quota
/// accounting of the [module docs](self). Reads go straight to the namespace.
#[derive(Clone, Debug)]
pub struct TenantKv {
    ns: Namespaced<Arc<dyn KvStore>>,
    accounting: Arc<Accounting>,
}

impl TenantKv {
    pub(crate) fn new(accounting: Arc<Accounting>) -> TenantKv {
        TenantKv {
            ns: accounting.inner.clone(),
            accounting,
        }
    }
}

hybridstore_core::kv_store_impl! {
    impl[] KvStore for TenantKv;
    forward(ns): [capabilities, get, get_many, head, get_range, get_stream, scan, scan_meta,
        exists, list_keys];
    // `put` reaches `put_with`; `clear` scans and deletes through `write_batch`; `stats`
    // counts the namespace: each is accounted or confined.
    provided: [put, clear, stats];
    {
        async fn put_with(
            &self,
            key: &Key,
            value: Bytes,
            options: &PutOptions,
        ) -> Result<ObjectMeta> {
            // The stripe first, then the task: see `Accounting::stripes`.
            let stripe = self.accounting.lock(key).await;
            let task = self
                .accounting
                .clone()
                .put_with(stripe, key.clone(), value, options.clone());
            tokio::spawn(task).await.map_err(join_error)?
        }

        async fn put_stream(
            &self,
            key: &Key,
            reader: ValueReader<'_>,
            options: &PutOptions,
        ) -> Result<ObjectMeta> {
            self.accounting.put_stream(key, reader, options).await
        }

        async fn delete(&self, key: &Key) -> Result<()> {
            let stripe = self.accounting.lock(key).await;
            let task = self.accounting.clone().delete(stripe, key.clone());
            tokio::spawn(task).await.map_err(join_error)?
        }

        async fn write_batch(&self, batch: WriteBatch) -> Result<()> {
            if batch.is_empty() {
                return self.ns.write_batch(batch).await;
            }
            let stripes = self.accounting.lock_batch(&batch).await;
            let task = self.accounting.clone().write_batch(stripes, batch);
            tokio::spawn(task).await.map_err(join_error)?
        }
    }
}

/// One tenant's view of the system; see the [module docs](self). Obtained from
/// [`HybridStorageSystem::tenant`](crate::HybridStorageSystem::tenant); cloning is cheap and
/// clones share the quota accounting.
#[derive(Clone, Debug)]
pub struct Tenant {
    pub(crate) id: TenantId,
    pub(crate) accounting: Arc<Accounting>,
    pub(crate) kv: Arc<dyn KvStore>,
    #[cfg(feature = "vectors")]
    pub(crate) vector_quota: hybridstore_vector::VectorQuota,
    #[cfg(feature = "vectors")]
    pub(crate) vectors: Option<hybridstore_vector::LanceVectorStore>,
    #[cfg(all(feature = "sql", feature = "vectors"))]
    pub(crate) documents: Option<crate::documents::DocumentStore>,
    #[cfg(feature = "sql")]
    pub(crate) sql: Option<Arc<hybridstore_sql::SqlStore>>,
    #[cfg(feature = "analytics")]
    pub(crate) analytics: Option<Arc<hybridstore_analytics::AnalyticsStore>>,
}

impl Tenant {
    /// The tenant.
    pub fn id(&self) -> &TenantId {
        &self.id
    }

    /// The tenant's key/value store: the whole stack (cache, dedup, primary) under the
    /// tenant's namespace, with its key and byte quotas. Keys may be up to the stack's
    /// limit less the prefix `t/<tenant>/`.
    pub fn kv(&self) -> &Arc<dyn KvStore> {
        &self.kv
    }

    /// The tenant's quota.
    pub fn quota(&self) -> TenantQuota {
        self.accounting.quota()
    }

    /// The LanceDB store scoped to the tenant (its vector quota per collection), if vectors
    /// are on.
    #[cfg(feature = "vectors")]
    pub fn vectors(&self) -> Option<&hybridstore_vector::LanceVectorStore> {
        self.vectors.as_ref()
    }

    /// The tenant's documents ([`documents`](mod@crate::documents)): its rows of the
    /// `documents` table, its values in its namespace, its LanceDB records.
    ///
    /// # Errors
    /// `Unsupported` if vectors are off.
    #[cfg(all(feature = "sql", feature = "vectors"))]
    pub fn documents(&self) -> Result<&crate::documents::DocumentStore> {
        self.documents
            .as_ref()
            .ok_or_else(|| Error::new(ErrorKind::Unsupported, "documents need vectors = true"))
    }

    /// The tenant's sessions (its rows of the `sessions` table), when the primary is a
    /// `SqlStore`.
    #[cfg(feature = "sql")]
    pub fn sessions(&self) -> Option<hybridstore_sql::Sessions<'_>> {
        self.sql.as_ref().map(|sql| sql.tenant_sessions(&self.id))
    }

    /// The tenant's figures in the analytics store over `window`: the keys whose last
    /// recorded write is a put and their bytes, from the access events of its keys; `None`
    /// if analytics is off or nothing of the tenant was recorded. Waits for the events
    /// offered so far to be written.
    ///
    /// # Errors
    /// Errors of the analytics store.
    #[cfg(feature = "analytics")]
    pub async fn access_usage(
        &self,
        window: hybridstore_analytics::TimeWindow,
    ) -> Result<Option<hybridstore_analytics::TenantUsage>> {
        let Some(analytics) = self.analytics.clone() else {
            return Ok(None);
        };
        let name = self.id.as_str().to_string();
        tokio::task::spawn_blocking(move || {
            analytics.flush()?;
            let rows = analytics.reader().tenant_usage(window)?;
            Ok(rows
                .into_iter()
                .find(|r| r.tenant.as_deref() == Some(name.as_str())))
        })
        .await
        .map_err(|e| Error::backend(format!("analytics query task failed: {e}")))?
    }

    /// What the tenant holds on every engine.
    ///
    /// # Errors
    /// Errors of the engines asked.
    pub async fn usage(&self) -> Result<TenantUsage> {
        let (keys, bytes) = self.accounting.figures();
        #[allow(unused_mut)]
        let mut usage = TenantUsage {
            tenant: self.id.as_str().to_string(),
            keys,
            bytes,
            documents: 0,
            sessions: 0,
            vectors: BTreeMap::new(),
            quota: self.quota(),
        };
        #[cfg(all(feature = "sql", feature = "vectors"))]
        if let Some(documents) = &self.documents {
            usage.documents = documents.count().await?;
        }
        #[cfg(feature = "sql")]
        if let Some(sessions) = self.sessions() {
            usage.sessions = sessions.count().await?;
        }
        #[cfg(feature = "vectors")]
        if let Some(vectors) = &self.vectors {
            use hybridstore_core::vector::VectorStore;
            for collection in vectors.list_collections().await? {
                let n = vectors.count(&collection, None).await?;
                if n > 0 {
                    usage.vectors.insert(collection, n);
                }
            }
        }
        Ok(usage)
    }
}

/// The registry key of `tenant`.
pub(crate) fn registry_key(tenant: &TenantId) -> Result<Key> {
    Key::new(format!("{TENANT_REGISTRY_PREFIX}{}", tenant.as_str()))
}

/// Reads a registry record.
pub(crate) fn parse_info(key: &Key, value: &[u8]) -> Result<TenantInfo> {
    serde_json::from_slice(value).map_err(|e| {
        Error::corrupted(format!("unreadable tenant record: {e}"))
            .with_context("key", String::from_utf8_lossy(key.as_bytes()))
    })
}

/// A registry record as stored.
pub(crate) fn encode_info(info: &TenantInfo) -> Result<Bytes> {
    serde_json::to_vec(info)
        .map(Bytes::from)
        .map_err(|e| Error::backend(format!("tenant record: {e}")))
}

/// Now, in milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl crate::HybridStorageSystem {
    /// The handle of tenant `name`, registering the tenant (with no quota) if it is new. The
    /// first call for a tenant in a process counts what its namespace holds (one metadata
    /// scan); later calls return the same handle.
    ///
    /// # Errors
    /// `InvalidInput` for a name that is not 1 to 64 ASCII letters, digits, `_`, `-` or `.`
    /// ([`TenantId::new`]); `Corrupted` for an unreadable registry record; errors of the
    /// stores.
    pub async fn tenant(&self, name: &str) -> Result<Tenant> {
        let id = TenantId::new(name)?;
        let mut tenants = self.tenants.lock().await;
        if let Some(found) = tenants.get(&id) {
            return Ok(found.clone());
        }
        let info = match self.tenant_info(&id).await? {
            Some(info) => info,
            None => {
                let info = TenantInfo {
                    name: id.as_str().to_string(),
                    created_at_ms: now_ms(),
                    quota: TenantQuota::default(),
                };
                self.kv
                    .put(&registry_key(&id)?, encode_info(&info)?)
                    .await?;
                info
            }
        };
        let tenant = self.open_tenant(id.clone(), info.quota).await?;
        tenants.insert(id, tenant.clone());
        Ok(tenant)
    }

    /// Sets tenant `name`'s quota (registering the tenant if it is new). It applies at once
    /// to every handle of the tenant; what the tenant already holds beyond it stays, and
    /// only writes that would add more fail.
    ///
    /// # Errors
    /// As [`tenant`](Self::tenant).
    pub async fn set_tenant_quota(&self, name: &str, quota: TenantQuota) -> Result<()> {
        let tenant = self.tenant(name).await?;
        let _registry = self.tenants.lock().await;
        let mut info = self
            .tenant_info(&tenant.id)
            .await?
            .ok_or_else(|| Error::not_found(format!("tenant {name:?} was deleted meanwhile")))?;
        info.quota = quota;
        self.kv
            .put(&registry_key(&tenant.id)?, encode_info(&info)?)
            .await?;
        tenant.accounting.set_quota(quota);
        #[cfg(feature = "vectors")]
        tenant.vector_quota.set(quota.max_vectors);
        Ok(())
    }

    /// Every registered tenant, by name.
    ///
    /// # Errors
    /// `Corrupted` for an unreadable record; errors of the store.
    pub async fn tenants(&self) -> Result<Vec<TenantInfo>> {
        self.kv
            .scan(KeyRange::prefix(TENANT_REGISTRY_PREFIX), None)
            .map(|entry| {
                let entry = entry?;
                parse_info(&entry.key, &entry.value)
            })
            .try_collect()
            .await
    }

    /// Deletes tenant `name` from every engine: its key/value namespace (through the cache,
    /// so both tiers forget it), its `documents` and `sessions` rows, its LanceDB records in
    /// every collection, its analytics events, its documents' notes of intent, and last its
    /// registry record, so a deletion that fails part-way is finished by calling it again.
    /// Writes through the tenant's handles that race the deletion may survive it: stop the
    /// tenant's writers first.
    ///
    /// # Errors
    /// `InvalidInput` for an invalid name; errors of the engines (what was deleted before
    /// stays deleted).
    pub async fn delete_tenant(&self, name: &str) -> Result<TenantDeletion> {
        let registered = self.tenant_info(&TenantId::new(name)?).await?.is_some();
        // The handle, so the deletion goes through its accounting and scoped stores.
        let tenant = self.tenant(name).await?;
        let mut tenants = self.tenants.lock().await;
        let mut deletion = TenantDeletion {
            keys: tenant.kv.clear().await?,
            registered,
            ..TenantDeletion::default()
        };
        #[cfg(feature = "sql")]
        {
            let mut databases: Vec<Arc<hybridstore_sql::SqlStore>> =
                self.sql.iter().cloned().collect();
            #[cfg(feature = "vectors")]
            if let Some(documents) = &self.documents {
                let sql = documents.sql().await?;
                if !databases.iter().any(|d| Arc::ptr_eq(d, &sql)) {
                    databases.push(sql);
                }
            }
            let notes = format!(
                "{}{}.",
                crate::documents::TENANT_SETTING_PREFIX,
                tenant.id.as_str()
            );
            for sql in databases {
                let (documents, sessions) = sql.delete_tenant_rows(&tenant.id).await?;
                deletion.documents += documents;
                deletion.sessions += sessions;
                for setting in sql.settings().list().await? {
                    if setting.key.starts_with(&notes) {
                        sql.settings().delete(&setting.key).await?;
                    }
                }
            }
        }
        #[cfg(feature = "vectors")]
        if let Some(vectors) = &tenant.vectors {
            use hybridstore_core::vector::{Filter, VectorStore};
            let everything = Filter::eq("tenant", tenant.id.as_str());
            for collection in vectors.list_collections().await? {
                deletion.vectors += vectors.delete_where(&collection, &everything).await?;
            }
        }
        #[cfg(feature = "analytics")]
        if let Some(analytics) = self.analytics.clone() {
            let name = tenant.id.as_str().to_string();
            deletion.analytics_events =
                tokio::task::spawn_blocking(move || analytics.delete_tenant(&name))
                    .await
                    .map_err(|e| Error::backend(format!("analytics delete task failed: {e}")))??;
        }
        self.kv.delete(&registry_key(&tenant.id)?).await?;
        tenants.remove(&tenant.id);
        Ok(deletion)
    }

    /// The registry record of `id`, if registered.
    async fn tenant_info(&self, id: &TenantId) -> Result<Option<TenantInfo>> {
        let key = registry_key(id)?;
        self.kv
            .get(&key)
            .await?
            .map(|value| parse_info(&key, &value))
            .transpose()
    }

    /// Builds the handle of `id`: its accounting (one scan of its namespace) and its scoped
    /// stores.
    async fn open_tenant(&self, id: TenantId, quota: TenantQuota) -> Result<Tenant> {
        let accounting = Arc::new(Accounting::open(id.clone(), self.kv.clone(), quota).await?);
        let kv: Arc<dyn KvStore> = Arc::new(TenantKv::new(accounting.clone()));
        #[cfg(feature = "vectors")]
        let vector_quota = hybridstore_vector::VectorQuota::new(quota.max_vectors);
        #[cfg(feature = "vectors")]
        let vectors = self
            .vectors
            .as_ref()
            .map(|v| v.for_tenant_with_quota(id.clone(), vector_quota.clone()));
        #[cfg(all(feature = "sql", feature = "vectors"))]
        let documents = match &self.documents {
            Some(documents) => Some(
                documents
                    .for_tenant(id.clone(), kv.clone(), vector_quota.clone())
                    .await?,
            ),
            None => None,
        };
        Ok(Tenant {
            id,
            accounting,
            kv,
            #[cfg(feature = "vectors")]
            vector_quota,
            #[cfg(feature = "vectors")]
            vectors,
            #[cfg(all(feature = "sql", feature = "vectors"))]
            documents,
            #[cfg(feature = "sql")]
            sql: self.sql.clone(),
            #[cfg(feature = "analytics")]
            analytics: self.analytics.clone(),
        })
    }
}
