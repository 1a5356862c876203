//! [`ObjectStoreKv`]: a `KvStore` on any `object_store` store under a prefix.
//!
//! ```text
//! <prefix>/v/<hex key in segments>.v   one object per key: header (metadata, SHA-256) | value
//! <prefix>/b/<time>-<random>           batch records: every write of a batch in progress
//! ```
//!
//! **Batches.** A batch with more than one write is written first as one *batch record*
//! object (the commit point), then applied object by object while this store's readers wait,
//! then the record is deleted. A crash or an outage between the record and its deletion
//! leaves the record: [`ObjectStoreKv::open`] applies it again before anything else, and a
//! store that failed to apply one applies it before its next operation (which fails with
//! `Unavailable` while it cannot). So no reader of this store sees half a batch, before or
//! after a crash.
//!
//! **One writer per prefix.** Several processes may read one prefix; one at a time writes it
//! (as one process owns a data directory). A second writer's batch would be applied at its
//! open by the first, so two writers could reorder each other's writes of one key.
//!
//! **Bounded calls.** Every operation has a deadline: [`ObjectStoreKvOptions::timeout`]
//! (10 s by default) plus the time to move its bytes at
//! [`ObjectStoreKvOptions::min_throughput`]; past it the operation fails with a retryable
//! `Unavailable`, instead of object_store's default of retrying for up to three minutes.
//! Stores built by [`ObjectStoreKv::open_url`] also retry at most twice within that time.

mod encoding;
pub(crate) mod format;
mod url;

use std::fmt;
use std::future::Future;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, StreamExt, TryStreamExt};
use hybridstore_core::raw::{BatchPlan, Mutation, WriteOrder, run_to_completion};
use hybridstore_core::{
    Capabilities, EntryStream, Error, ErrorKind, Expect, Key, KeyRange, KvStore, MetaEntry,
    MetaStream, ObjectMeta, PutOptions, Result, Sha256Digest, StoreStats, WriteBatch,
};
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutMode, PutPayload};

use crate::errors::{deadline_passed, object_store_error};
pub use encoding::{S3_MAX_OBJECT_KEY_LEN, SEGMENT_HEX};
pub use format::HEADER_LEN;
use format::RecordedWrite;
pub use url::RemoteUrl;

/// Tuning of an [`ObjectStoreKv`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ObjectStoreKvOptions {
    /// The deadline of one operation before its bytes are counted (default 10 s).
    pub timeout: Duration,
    /// The slowest transfer an operation is allowed, in bytes per second (default 1 MiB/s):
    /// an operation moving `n` bytes has `timeout + n / min_throughput` to finish.
    pub min_throughput: u64,
    /// Values at least this long (bytes, header included) go up as multipart uploads
    /// (default 16 MiB).
    pub multipart_threshold: usize,
    /// Part size of multipart uploads, in bytes (default 8 MiB; S3 wants at least 5 MiB for
    /// every part but the last).
    pub part_size: usize,
    /// Parts uploaded at once, and objects read at once by scans and `get_many` (default 8).
    pub concurrency: usize,
    /// Whether the store's listings come back in key order, as S3's `ListObjectsV2` and
    /// `InMemory`'s do (default `false`: `LocalFileSystem` lists in directory order). When
    /// true a scan stops listing at the end of its range.
    pub sorted_listing: bool,
    /// Whether values outlive the process (default `true`; `false` for `InMemory`).
    pub durable: bool,
}

impl Default for ObjectStoreKvOptions {
    fn default() -> Self {
        ObjectStoreKvOptions {
            timeout: Duration::from_secs(10),
            min_throughput: 1024 * 1024,
            multipart_threshold: 16 * 1024 * 1024,
            part_size: 8 * 1024 * 1024,
            concurrency: 8,
            sorted_listing: false,
            durable: true,
        }
    }
}

impl ObjectStoreKvOptions {
    /// Sets `timeout`.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets `sorted_listing`.
    pub fn with_sorted_listing(mut self, sorted: bool) -> Self {
        self.sorted_listing = sorted;
        self
    }

    /// Sets `durable`.
    pub fn with_durable(mut self, durable: bool) -> Self {
        self.durable = durable;
        self
    }

    /// Sets `multipart_threshold` and `part_size`.
    pub fn with_multipart(mut self, threshold: usize, part_size: usize) -> Self {
        self.multipart_threshold = threshold;
        self.part_size = part_size;
        self
    }

    /// The deadline of an operation moving `bytes` bytes.
    pub fn deadline(&self, bytes: u64) -> Duration {
        self.timeout + Duration::from_secs_f64(bytes as f64 / self.min_throughput.max(1) as f64)
    }

    fn validate(&self) -> Result<()> {
        if self.timeout.is_zero() || self.concurrency == 0 || self.min_throughput == 0 {
            return Err(Error::invalid_input(
                "object store options: timeout, concurrency and min_throughput must be above 0",
            ));
        }
        if self.part_size < 5 * 1024 * 1024 || self.multipart_threshold < self.part_size {
            return Err(Error::invalid_input(
                "object store options: part_size must be at least 5 MiB (S3's minimum part) \
                 and multipart_threshold at least part_size",
            ));
        }
        Ok(())
    }
}

/// A [`KvStore`] on an `object_store` store (S3 and S3-compatible servers, a local
/// directory, memory) under a prefix. See the module docs for the layout, batches and
/// deadlines.
///
/// - **Keys**: any bytes, up to [`Capabilities::max_key_len`]: about 500 bytes, so that the
///   hex-encoded object path stays within S3's 1,024-byte object-key limit
///   ([`S3_MAX_OBJECT_KEY_LEN`]); the path is injective, keeps scan order, and cannot leave
///   the prefix.
/// - **Values**: no limit of its own (S3 allows 5 TiB per object); values of
///   [`ObjectStoreKvOptions::multipart_threshold`] bytes or more go up as multipart uploads.
/// - **Conditional create**: a batch of one put with an [`Expect::Absent`] check of the same
///   key is a conditional create on the object store (`If-None-Match: *` on S3), so it
///   fails with `Conflict` when any process created the key first. Other checks hold
///   against this process's writers only.
/// - **Requests**: `get` and `put` one each (`put` also reads the previous header to keep
///   `created`), `head` and `get_range` one ranged GET, `list_keys` one LIST per 1,000 keys,
///   `scan` a LIST and a GET per key.
///
/// Cloning is cheap; clones share the store.
#[derive(Clone)]
pub struct ObjectStoreKv {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn ObjectStore>,
    /// What `Debug` and errors show: a URL without credentials.
    location: String,
    /// `<prefix>/v` (or `v`).
    values: String,
    /// `<prefix>/b` (or `b`).
    batches: String,
    options: ObjectStoreKvOptions,
    max_key_len: usize,
    order: Arc<WriteOrder>,
    /// Readers hold it shared; a batch holds it exclusively while it applies its writes.
    visibility: tokio::sync::RwLock<()>,
    /// Batch records committed but not yet fully applied (an outage during the apply):
    /// every operation applies them first.
    unsettled: Mutex<Vec<Path>>,
    batch_seq: AtomicU64,
}

impl fmt::Debug for ObjectStoreKv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectStoreKv")
            .field("location", &self.inner.location)
            .field("max_key_len", &self.inner.max_key_len)
            .finish_non_exhaustive()
    }
}

impl ObjectStoreKv {
    /// Opens the store under `prefix` (object path segments separated by `/`; `""` for the
    /// root) of `store`, applying any batch record a crash left. `location` is what `Debug`
    /// output and errors show (no credentials: e.g. `s3://bucket/prefix`).
    ///
    /// # Errors
    /// `InvalidInput` for a prefix that is not a valid object path or leaves no room for
    /// keys, or invalid options; errors of reading and applying left batch records
    /// (`Unavailable` when the store cannot be reached within the deadline).
    pub async fn open(
        store: Arc<dyn ObjectStore>,
        prefix: &str,
        location: impl Into<String>,
        options: ObjectStoreKvOptions,
    ) -> Result<ObjectStoreKv> {
        options.validate()?;
        let prefix = prefix.trim_matches('/');
        if !prefix.is_empty() {
            Path::parse(prefix).map_err(|e| {
                Error::invalid_input(format!("{prefix:?} is not a valid object path: {e}"))
            })?;
        }
        let join = |leaf: &str| {
            if prefix.is_empty() {
                leaf.to_string()
            } else {
                format!("{prefix}/{leaf}")
            }
        };
        let values = join("v");
        let max_key_len = encoding::max_key_len(values.len() + 1);
        if max_key_len == 0 {
            return Err(Error::invalid_input(format!(
                "prefix {prefix:?} is too long: it leaves no room for keys within S3's \
                 {S3_MAX_OBJECT_KEY_LEN}-byte object keys"
            )));
        }
        let kv = ObjectStoreKv {
            inner: Arc::new(Inner {
                store,
                location: location.into(),
                values,
                batches: join("b"),
                options,
                max_key_len,
                order: WriteOrder::new(),
                visibility: tokio::sync::RwLock::new(()),
                unsettled: Mutex::new(Vec::new()),
                batch_seq: AtomicU64::new(0),
            }),
        };
        kv.recover().await?;
        Ok(kv)
    }

    /// Opens the store a [`RemoteUrl`] names: `s3://bucket/prefix` (AWS credentials and
    /// region from the usual `AWS_*` variables, then `options`), `file:///dir` or a plain
    /// directory path (created if missing), or `memory://` (a fresh, empty `InMemory`).
    /// `storage_options` are object_store's S3 keys (`aws_endpoint`, `aws_region`,
    /// `aws_allow_http`, …), applied after the environment.
    ///
    /// # Errors
    /// `InvalidInput` for a URL or option object_store does not accept; as
    /// [`open`](Self::open).
    pub async fn open_url(
        url: &RemoteUrl,
        storage_options: &[(String, String)],
        options: ObjectStoreKvOptions,
    ) -> Result<ObjectStoreKv> {
        let (u, so, o) = (url.clone(), storage_options.to_vec(), options.clone());
        let (store, prefix, sorted, durable) =
            tokio::task::spawn_blocking(move || u.build(&so, &o))
                .await
                .map_err(|e| Error::backend(format!("opening the object store failed: {e}")))??;
        let options = options.with_sorted_listing(sorted).with_durable(durable);
        ObjectStoreKv::open(store, &prefix, url.to_string(), options).await
    }

    /// The object store underneath.
    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.inner.store
    }

    /// The options in force.
    pub fn options(&self) -> &ObjectStoreKvOptions {
        &self.inner.options
    }

    fn value_path(&self, key: &Key) -> Path {
        join_path(&self.inner.values, &encoding::encode(key.as_bytes()))
    }

    fn check_key(&self, key: &Key) -> Result<()> {
        encoding::check_key(key, self.inner.max_key_len)
    }

    /// Runs `fut` under the deadline of an operation moving `bytes` bytes.
    async fn bounded<T>(
        &self,
        operation: &'static str,
        bytes: u64,
        fut: impl Future<Output = object_store::Result<T>>,
    ) -> Result<T> {
        let after = self.inner.options.deadline(bytes);
        let result = match tokio::time::timeout(after, fut).await {
            Ok(result) => result.map_err(object_store_error),
            Err(_) => Err(deadline_passed(operation, after)),
        };
        // Errors name the store as its URL (`s3://bucket/prefix`), not the HTTP request.
        result.map_err(|e| e.with_context("store", &self.inner.location))
    }

    /// The whole object at `path`, or `None`. The request has the plain timeout; reading
    /// the body has the timeout plus its size at the minimum throughput.
    async fn get_object(&self, path: &Path) -> Result<Option<Bytes>> {
        self.get_object_with(path, GetOptions::default(), 0).await
    }

    /// Bytes `range` of the object at `path`, or `None` if it is absent. A range past the
    /// end of the object is returned short or refused, as the store answers it.
    async fn get_object_range(&self, path: &Path, range: Range<u64>) -> Result<Option<Bytes>> {
        let len = range.end - range.start;
        let options = GetOptions {
            range: Some(GetRange::Bounded(range)),
            ..GetOptions::default()
        };
        self.get_object_with(path, options, len).await
    }

    async fn get_object_with(
        &self,
        path: &Path,
        options: GetOptions,
        expected: u64,
    ) -> Result<Option<Bytes>> {
        let store = &self.inner.store;
        let response = self
            .bounded("a GET", expected, store.get_opts(path, options))
            .await;
        let response = match response {
            Ok(r) => r,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.with_context("object", path)),
        };
        let body_len = response.range.end - response.range.start;
        self.bounded("reading a GET's body", body_len, response.bytes())
            .await
            .map(Some)
            .map_err(|e| e.with_context("object", path))
    }

    /// The metadata in the header of the object at `path`, or `None`.
    async fn head_object(&self, path: &Path) -> Result<Option<ObjectMeta>> {
        match self.get_object_range(path, 0..HEADER_LEN as u64).await? {
            Some(bytes) => format::decode_header(&bytes)
                .map(Some)
                .map_err(|e| e.with_context("object", path)),
            None => Ok(None),
        }
    }

    /// Uploads `parts` (concatenated) as the object at `path`: one PUT, or a multipart upload
    /// from [`ObjectStoreKvOptions::multipart_threshold`] bytes on.
    async fn upload(&self, path: &Path, parts: Vec<Bytes>, mode: PutMode) -> Result<()> {
        let len: usize = parts.iter().map(Bytes::len).sum();
        let options = &self.inner.options;
        let store = &self.inner.store;
        let result = if len < options.multipart_threshold || mode != PutMode::Overwrite {
            let payload: PutPayload = parts.into_iter().collect();
            self.bounded("a PUT", len as u64, async {
                store.put_opts(path, payload, mode.into()).await.map(|_| ())
            })
            .await
        } else {
            self.bounded("a multipart upload", len as u64, async {
                let upload = store.put_multipart(path).await?;
                let mut writer =
                    object_store::WriteMultipart::new_with_chunk_size(upload, options.part_size);
                for part in parts {
                    writer.wait_for_capacity(options.concurrency).await?;
                    writer.put(part);
                }
                writer.finish().await.map(|_| ())
            })
            .await
        };
        result.map_err(|e| e.with_context("object", path))
    }

    async fn delete_object(&self, path: &Path) -> Result<()> {
        let store = &self.inner.store;
        match self.bounded("a DELETE", 0, store.delete(path)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.with_context("object", path)),
        }
    }

    /// The keys in `range` and their object paths, in key order, at most `limit`.
    async fn list_range(&self, range: &KeyRange, limit: Option<usize>) -> Result<Vec<Key>> {
        if range.is_empty() || limit == Some(0) {
            return Ok(Vec::new());
        }
        let values = &self.inner.values;
        // List the deepest directory that holds the whole range, from just before its start.
        let common = common_prefix(range);
        let dir = encoding::directory_of_prefix(&common);
        let list_root = if dir.is_empty() {
            join_path(values, "")
        } else {
            join_path(values, &dir)
        };
        let offset = match range.start() {
            std::ops::Bound::Included(start) | std::ops::Bound::Excluded(start) => {
                Some(join_path(values, &encoding::encode_lower_bound(start)))
            }
            std::ops::Bound::Unbounded => None,
        };
        let store = &self.inner.store;
        let mut listing = match &offset {
            Some(offset) => store.list_with_offset(Some(&list_root), offset),
            None => store.list(Some(&list_root)),
        };
        let sorted = self.inner.options.sorted_listing;
        let strip = format!("{values}/");
        let mut keys = Vec::new();
        let deadline = tokio::time::Instant::now() + self.inner.options.timeout;
        loop {
            let next = match tokio::time::timeout_at(deadline, listing.next()).await {
                Ok(next) => next,
                Err(_) => {
                    return Err(deadline_passed(
                        "a listing page",
                        self.inner.options.timeout,
                    ));
                }
            };
            let Some(meta) = next else { break };
            let meta = meta.map_err(object_store_error)?;
            let Some(key) = meta
                .location
                .as_ref()
                .strip_prefix(&strip)
                .and_then(encoding::decode)
            else {
                continue; // not a value object of ours
            };
            if range.is_past_end(key.as_bytes()) {
                if sorted {
                    break;
                }
                continue;
            }
            if !range.contains(key.as_bytes()) {
                continue;
            }
            keys.push(key);
            if sorted && limit.is_some_and(|l| keys.len() >= l) {
                break;
            }
        }
        if !sorted {
            keys.sort_unstable();
            keys.dedup();
        }
        if let Some(limit) = limit {
            keys.truncate(limit);
        }
        Ok(keys)
    }

    /// Applies the batch records a crash or an outage left, oldest first.
    async fn recover(&self) -> Result<()> {
        let root = join_path(&self.inner.batches, "");
        let listed: Vec<_> = self
            .bounded(
                "listing batch records",
                0,
                self.inner.store.list(Some(&root)).try_collect::<Vec<_>>(),
            )
            .await?;
        let mut records: Vec<Path> = listed.into_iter().map(|m| m.location).collect();
        records.sort();
        if records.is_empty() {
            return Ok(());
        }
        tracing::info!(
            location = %self.inner.location,
            records = records.len(),
            "applying batch records left by an interrupted write"
        );
        let _visible = self.inner.visibility.write().await;
        for record in records {
            self.apply_record(&record).await?;
        }
        Ok(())
    }

    /// Reads, applies and deletes one batch record.
    async fn apply_record(&self, record: &Path) -> Result<()> {
        let Some(bytes) = self.get_object(record).await? else {
            return Ok(()); // applied and deleted meanwhile
        };
        let writes = format::decode_record(&bytes).map_err(|e| e.with_context("object", record))?;
        self.apply_writes(&writes).await?;
        self.delete_object(record).await
    }

    async fn apply_writes(&self, writes: &[RecordedWrite]) -> Result<()> {
        // Owned items and a clone of the store per write keep the futures `Send` for any
        // caller's lifetime (a closure over borrowed items is not general enough).
        stream::iter(writes.to_vec())
            .map(|w| {
                let this = self.clone();
                async move {
                    match w {
                        RecordedWrite::Put { key, object } => {
                            this.upload(&this.value_path(&key), vec![object], PutMode::Overwrite)
                                .await
                        }
                        RecordedWrite::Delete { key } => {
                            this.delete_object(&this.value_path(&key)).await
                        }
                    }
                }
            })
            .buffer_unordered(self.inner.options.concurrency)
            .try_collect::<Vec<()>>()
            .await
            .map(|_| ())
    }

    /// Applies the records an earlier batch could not finish applying, if any. Every
    /// operation calls it first, so none sees half a batch.
    async fn settle(&self) -> Result<()> {
        // An uncontended lock per call; the list is empty unless an outage cut a batch off.
        if lock(&self.inner.unsettled).is_empty() {
            return Ok(());
        }
        let _visible = self.inner.visibility.write().await;
        let pending: Vec<Path> = lock(&self.inner.unsettled).clone();
        for record in &pending {
            self.apply_record(record).await.map_err(|e| {
                Error::new(
                    ErrorKind::Unavailable,
                    format!("an earlier write batch is not applied yet: {e}"),
                )
                .with_retryable(true)
            })?;
            lock(&self.inner.unsettled).retain(|r| r != record);
        }
        Ok(())
    }

    fn record_path(&self) -> Path {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let seq = self.inner.batch_seq.fetch_add(1, Ordering::Relaxed);
        join_path(
            &self.inner.batches,
            &format!("{now:020}-{seq:08}-{:016x}", rand::random::<u64>()),
        )
    }

    /// The metadata a write of `value` under a key whose current metadata is `current`
    /// records.
    async fn meta_for(
        value: &Bytes,
        options: &PutOptions,
        current: Option<&ObjectMeta>,
    ) -> Result<ObjectMeta> {
        let created = current.map(|m| m.created);
        let (value, options) = (value.clone(), options.clone());
        hybridstore_core::raw::cpu_bound(value.len(), move || {
            ObjectMeta::for_value(&value, &options, created)
        })
        .await
    }

    async fn put_owned(self, key: Key, value: Bytes, options: PutOptions) -> Result<ObjectMeta> {
        let ticket = self.inner.order.begin([&key]);
        ticket.turn().await;
        self.settle().await?;
        let path = self.value_path(&key);
        let current = match options.created {
            Some(_) => None,
            None => self.head_object(&path).await?,
        };
        let meta = Self::meta_for(&value, &options, current.as_ref()).await?;
        let header = Bytes::copy_from_slice(&format::encode_header(&meta));
        self.upload(&path, vec![header, value], PutMode::Overwrite)
            .await?;
        drop(ticket);
        Ok(meta)
    }

    async fn delete_owned(self, key: Key) -> Result<()> {
        let ticket = self.inner.order.begin([&key]);
        ticket.turn().await;
        self.settle().await?;
        self.delete_object(&self.value_path(&key)).await?;
        drop(ticket);
        Ok(())
    }

    async fn write_batch_owned(self, plan: BatchPlan) -> Result<()> {
        let ticket = self.inner.order.begin(plan.keys());
        ticket.turn().await;
        self.settle().await?;
        if let Some((key, value, options)) = conditional_create(&plan) {
            // One put that requires the key to be absent: a conditional create on the object
            // store itself (`If-None-Match: *` on S3), so it holds against other processes.
            let meta = Self::meta_for(value, options, None).await?;
            let object = format::encode_object(&meta, value);
            let result = self
                .upload(&self.value_path(key), vec![object], PutMode::Create)
                .await;
            return match result {
                Err(e) if e.kind() == ErrorKind::Conflict => {
                    Err(hybridstore_core::raw::conflict(key, &Expect::Absent))
                }
                other => other,
            };
        }
        // Current metadata of every checked key and of every key a put writes (for `created`).
        let mut wanted: Vec<&Key> = plan.checks.iter().map(|(k, _)| k).collect();
        wanted.extend(plan.writes.iter().filter_map(|(k, m)| match m {
            Mutation::Put { options, .. } if options.created.is_none() => Some(k),
            _ => None,
        }));
        wanted.sort_unstable();
        wanted.dedup();
        let wanted: Vec<Key> = wanted.into_iter().cloned().collect();
        let current: std::collections::BTreeMap<Key, Option<ObjectMeta>> = stream::iter(wanted)
            .map(|k| {
                let this = self.clone();
                async move {
                    let meta = this.head_object(&this.value_path(&k)).await?;
                    Ok::<_, Error>((k, meta))
                }
            })
            .buffer_unordered(self.inner.options.concurrency)
            .try_collect()
            .await?;
        plan.verify_checks(|k| Ok(current.get(k).cloned().flatten()))?;
        let mut writes = Vec::with_capacity(plan.writes.len());
        for (key, mutation) in plan.writes {
            writes.push(match mutation {
                Mutation::Put { value, options } => {
                    let meta = Self::meta_for(
                        &value,
                        &options,
                        current.get(&key).and_then(Option::as_ref),
                    )
                    .await?;
                    RecordedWrite::Put {
                        key,
                        object: format::encode_object(&meta, &value),
                    }
                }
                Mutation::Delete => RecordedWrite::Delete { key },
            });
        }
        match writes.len() {
            0 => {}
            // One object write is atomic by itself.
            1 => self.apply_writes(&writes).await?,
            _ => {
                let record = self.record_path();
                self.upload(
                    &record,
                    vec![format::encode_record(&writes)],
                    PutMode::Overwrite,
                )
                .await?;
                // Committed: from here on the batch is applied, now or by `settle`/`open`.
                let applied = {
                    let _visible = self.inner.visibility.write().await;
                    self.apply_writes(&writes).await
                };
                match applied {
                    Ok(()) => {
                        if let Err(e) = self.delete_object(&record).await {
                            // Applying it again later is harmless; only this store's own
                            // later writes of these keys must not be undone by that.
                            tracing::warn!(error = %e, "batch record not deleted; applying it again before the next operation");
                            self.defer(record);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "batch committed but not yet applied; applying it before the next operation");
                        self.defer(record);
                    }
                }
            }
        }
        drop(ticket);
        Ok(())
    }

    /// The keys in `range` (at most `limit`), listed once, then each read by `read` (up to
    /// `concurrency` at once, each under the visibility lock, so never inside half a batch),
    /// in key order. A key deleted between the listing and its read is not in the scan.
    fn scan_with<T, F, Fut>(
        &self,
        range: KeyRange,
        limit: Option<usize>,
        read: F,
    ) -> futures::stream::BoxStream<'static, Result<T>>
    where
        T: Send + 'static,
        F: Fn(ObjectStoreKv, Key) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Option<T>>> + Send + 'static,
    {
        let this = self.clone();
        let read = Arc::new(read);
        stream::once(async move {
            this.settle().await?;
            let keys = {
                let _visible = this.inner.visibility.read().await;
                this.list_range(&range, limit).await?
            };
            let concurrency = this.inner.options.concurrency;
            Ok::<_, Error>(
                stream::iter(keys)
                    .map(move |key| {
                        let (this, read) = (this.clone(), read.clone());
                        async move {
                            let _visible = this.inner.visibility.read().await;
                            read(this.clone(), key).await
                        }
                    })
                    .buffered(concurrency)
                    .try_filter_map(|e| async move { Ok(e) }),
            )
        })
        .try_flatten()
        .boxed()
    }

    fn defer(&self, record: Path) {
        lock(&self.inner.unsettled).push(record);
    }

    async fn read_value(&self, key: &Key) -> Result<Option<(ObjectMeta, Bytes)>> {
        let Some(bytes) = self.get_object(&self.value_path(key)).await? else {
            return Ok(None);
        };
        let (meta, value) = format::decode_object(bytes).map_err(|e| e.with_context("key", key))?;
        let check = value.clone();
        let actual =
            hybridstore_core::raw::cpu_bound(check.len(), move || Sha256Digest::of(&check)).await?;
        if actual != meta.checksum {
            return Err(Error::corrupted(format!(
                "value checksum mismatch: stored {}, read {actual}",
                meta.checksum
            ))
            .with_context("object", self.value_path(key)));
        }
        Ok(Some((meta, value)))
    }
}

/// `base/rest` as a path (`base` alone when `rest` is empty); both are valid path text.
fn join_path(base: &str, rest: &str) -> Path {
    if rest.is_empty() {
        Path::from(base)
    } else {
        Path::from(format!("{base}/{rest}"))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every update is a whole push or removal.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The key, value and options of a plan that is one put guarded by an `Absent` check of
/// the same key, and nothing else.
fn conditional_create(plan: &BatchPlan) -> Option<(&Key, &Bytes, &PutOptions)> {
    match (plan.checks.as_slice(), plan.writes.as_slice()) {
        ([(checked, Expect::Absent)], [(key, Mutation::Put { value, options })])
            if checked == key =>
        {
            Some((key, value, options))
        }
        _ => None,
    }
}

/// The longest byte string every key of `range` starts with.
fn common_prefix(range: &KeyRange) -> Vec<u8> {
    use std::ops::Bound;
    let start = match range.start() {
        Bound::Included(s) | Bound::Excluded(s) => s,
        Bound::Unbounded => return Vec::new(),
    };
    let end = match range.end() {
        Bound::Included(e) | Bound::Excluded(e) => e,
        Bound::Unbounded => return Vec::new(),
    };
    let mut n = start.iter().zip(end).take_while(|(a, b)| a == b).count();
    // An exclusive end equal to the prefix's successor (KeyRange::prefix) shares one byte
    // less than the prefix; the keys of the range still share `start[..n]`.
    n = n.min(start.len());
    start[..n].to_vec()
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl KvStore for ObjectStoreKv {
    fn capabilities(&self) -> Capabilities {
        Capabilities::new()
            .with_max_key_len(self.inner.max_key_len)
            .with_max_value_len(None)
            .with_durable(self.inner.options.durable)
            .with_crash_atomic_batch(self.inner.options.durable)
    }

    async fn get(&self, key: &Key) -> Result<Option<Bytes>> {
        self.check_key(key)?;
        self.settle().await?;
        let _visible = self.inner.visibility.read().await;
        Ok(self.read_value(key).await?.map(|(_, value)| value))
    }

    async fn head(&self, key: &Key) -> Result<Option<ObjectMeta>> {
        self.check_key(key)?;
        self.settle().await?;
        let _visible = self.inner.visibility.read().await;
        self.head_object(&self.value_path(key)).await
    }

    async fn put_with(&self, key: &Key, value: Bytes, options: &PutOptions) -> Result<ObjectMeta> {
        self.check_key(key)?;
        options.validate()?;
        run_to_completion(self.clone().put_owned(key.clone(), value, options.clone())).await
    }

    async fn put(&self, key: &Key, value: Bytes) -> Result<ObjectMeta> {
        self.put_with(key, value, &PutOptions::default()).await
    }

    async fn delete(&self, key: &Key) -> Result<()> {
        self.check_key(key)?;
        run_to_completion(self.clone().delete_owned(key.clone())).await
    }

    fn scan(&self, range: KeyRange, limit: Option<usize>) -> EntryStream<'_> {
        self.scan_with(range, limit, |this, key| async move {
            let read = this.read_value(&key).await?;
            Ok(read.map(|(meta, value)| hybridstore_core::Entry { key, value, meta }))
        })
    }

    fn scan_meta(&self, range: KeyRange, limit: Option<usize>) -> MetaStream<'_> {
        self.scan_with(range, limit, |this, key| async move {
            let meta = this.head_object(&this.value_path(&key)).await?;
            Ok(meta.map(|meta| MetaEntry { key, meta }))
        })
    }

    async fn write_batch(&self, batch: WriteBatch) -> Result<()> {
        let plan = batch.into_plan()?;
        for key in plan.keys() {
            self.check_key(key)?;
        }
        if plan.checks.is_empty() && plan.writes.is_empty() {
            return Ok(());
        }
        run_to_completion(self.clone().write_batch_owned(plan)).await
    }

    async fn get_stream(
        &self,
        key: &Key,
        range: Option<Range<u64>>,
    ) -> Result<Option<hybridstore_core::ValueStream<'_>>> {
        hybridstore_core::raw::provided::get_stream(self, key, range).await
    }

    async fn put_stream(
        &self,
        key: &Key,
        reader: hybridstore_core::ValueReader<'_>,
        options: &PutOptions,
    ) -> Result<ObjectMeta> {
        hybridstore_core::raw::provided::put_stream(self, key, reader, options).await
    }

    async fn get_range(&self, key: &Key, range: Range<u64>) -> Result<Option<Bytes>> {
        self.check_key(key)?;
        if range.start > range.end {
            return hybridstore_core::raw::check_range(&range, 0).map(|()| None);
        }
        self.settle().await?;
        let _visible = self.inner.visibility.read().await;
        let path = self.value_path(key);
        let header = HEADER_LEN as u64;
        if range.start < range.end {
            let want = range.end - range.start;
            match self
                .get_object_range(&path, header + range.start..header + range.end)
                .await
            {
                Ok(Some(bytes)) if bytes.len() as u64 == want => return Ok(Some(bytes)),
                Ok(None) => return Ok(None),
                // Short, refused or failed: the header says which it was.
                Ok(Some(_)) | Err(_) => {}
            }
        }
        match self.head_object(&path).await? {
            None => Ok(None),
            Some(meta) => {
                hybridstore_core::raw::check_range(&range, meta.size)?;
                if range.start == range.end {
                    return Ok(Some(Bytes::new()));
                }
                // In range after all: the first read failed for another reason; once more.
                let bytes = self
                    .get_object_range(&path, header + range.start..header + range.end)
                    .await?;
                match bytes {
                    Some(b) if b.len() as u64 == range.end - range.start => Ok(Some(b)),
                    Some(_) => Err(Error::corrupted("object is shorter than its header says")
                        .with_context("object", &path)),
                    None => Ok(None),
                }
            }
        }
    }

    async fn exists(&self, key: &Key) -> Result<bool> {
        Ok(self.head(key).await?.is_some())
    }

    async fn list_keys(&self, range: KeyRange, limit: Option<usize>) -> Result<Vec<Key>> {
        self.settle().await?;
        let _visible = self.inner.visibility.read().await;
        self.list_range(&range, limit).await
    }

    async fn get_many(&self, keys: &[Key]) -> Result<Vec<Option<Bytes>>> {
        for key in keys {
            self.check_key(key)?;
        }
        self.settle().await?;
        let _visible = self.inner.visibility.read().await;
        stream::iter(keys.to_vec())
            .map(|key| {
                let this = self.clone();
                async move { Ok::<_, Error>(this.read_value(&key).await?.map(|(_, v)| v)) }
            })
            .buffered(self.inner.options.concurrency)
            .try_collect()
            .await
    }

    async fn clear(&self) -> Result<u64> {
        hybridstore_core::raw::provided::clear(self).await
    }

    async fn stats(&self) -> Result<StoreStats> {
        hybridstore_core::raw::provided::stats(self).await
    }
}
