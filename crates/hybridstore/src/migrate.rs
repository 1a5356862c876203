//! `StorageMigrator`: every key of one [`KvStore`] copied to another with its metadata,
//! verified by checksum, resumable, with a dry run, progress and a report (seeds 001 and 003).
//!
//! A migration is two passes. The **plan** walks the source and the target in key order side
//! by side (both scans are sorted), a merge join like rsync's file-list comparison: a key the
//! target already holds with the same size, SHA-256, content type and times is done; every
//! other source key is to copy. The **copy** then moves the planned keys: small values in
//! write batches (one transaction per batch on SQL targets), large ones streamed. Each copied
//! key is then read back from the target and hashed: a key counts as migrated only when the
//! bytes the target returns hash to the source's recorded SHA-256.
//!
//! Resuming is the plan itself: an interrupted migration run again finds the keys already
//! copied (same checksum and times) and copies only the rest. Nothing is deleted from either
//! store; keys only the target has are counted in the report and left alone.
//!
//! Writes that reach the source during a migration are not followed: a key written after the
//! plan read it is copied as it is when copied (its checksum no longer matches the plan and
//! it is reported as changed), and one written after its copy is found by the next run. For
//! a live switch-over, write through [`DualReadStore`](crate::DualReadStore) first.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use futures::{StreamExt, TryStreamExt, stream};
use hybridstore_core::{
    Error, Key, KeyRange, KvStore, MetaEntry, ObjectMeta, PutOptions, Result, Sha256Digest,
    WriteBatch,
};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// Values from this size on are streamed (`get_stream` into `put_stream`) rather than read
/// whole and written in a batch: 16 MiB.
pub const MIGRATE_STREAM_FROM_BYTES: u64 = 16 << 20;
/// Keys per write batch of small values: 512, as `ingest` uses.
pub const MIGRATE_BATCH_KEYS: usize = 512;
/// Value bytes per write batch of small values: 16 MiB, as `ingest` uses.
pub const MIGRATE_BATCH_BYTES: u64 = 16 << 20;

/// How a migration runs.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct MigrateOptions {
    /// Plan only: report what would be copied, write nothing (default `false`).
    pub dry_run: bool,
    /// Write batches or large values in flight at once (default 4; 1 to 64).
    pub concurrency: usize,
    /// The keys to migrate (default all).
    pub range: KeyRange,
    /// Copy only keys the target lacks, leaving the target's own version of a key alone
    /// (default `false`: the source's version replaces it). For a switch-over through
    /// [`DualReadStore`], where what the target holds was written later than the source's.
    pub only_missing: bool,
}

impl Default for MigrateOptions {
    fn default() -> Self {
        MigrateOptions {
            dry_run: false,
            concurrency: 4,
            range: KeyRange::all(),
            only_missing: false,
        }
    }
}

/// Progress of the copy pass, passed to the caller's callback after each batch or large
/// value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MigrateProgress {
    /// Keys copied and verified (or failed) so far.
    pub keys_done: u64,
    /// Bytes of those keys.
    pub bytes_done: u64,
    /// Keys the plan found to copy.
    pub keys_total: u64,
    /// Bytes the plan found to copy.
    pub bytes_total: u64,
}

/// One key that did not migrate, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MigrationFailure {
    /// The key (`hex:` for keys that are not UTF-8).
    pub key: String,
    /// The error.
    pub message: String,
}

/// What a migration found and did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct MigrationReport {
    /// Whether this was a dry run (nothing written).
    pub dry_run: bool,
    /// Keys in the source's range.
    pub source_keys: u64,
    /// Their bytes.
    pub source_bytes: u64,
    /// Keys the target already held identically (an earlier run copied them): not copied.
    pub already_migrated: u64,
    /// Keys the plan found to copy (absent from the target or different there).
    pub to_copy: u64,
    /// Their bytes.
    pub to_copy_bytes: u64,
    /// Of [`to_copy`](Self::to_copy), keys the target held with other content (overwritten).
    pub replaced: u64,
    /// Keys the target held with other content, left alone because of
    /// [`MigrateOptions::only_missing`].
    pub kept_in_target: u64,
    /// Keys copied and verified by reading them back (0 for a dry run).
    pub copied: u64,
    /// Their bytes.
    pub copied_bytes: u64,
    /// Keys deleted from the source between the plan and their copy (not copied).
    pub vanished: u64,
    /// Keys the target holds that the source does not: left alone.
    pub target_only: u64,
    /// Keys that failed; the migration carries on past them. Run again to retry them.
    pub failures: Vec<MigrationFailure>,
    /// Wall time in milliseconds.
    pub elapsed_ms: u64,
}

impl MigrationReport {
    /// Whether every planned key was copied and verified: no failures (and, for a dry run,
    /// always).
    pub fn complete(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Copies every key of `source` to `target` (see the [module docs](self)).
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use hybridstore::core::{Key, KvStore, MemoryStore};
/// use hybridstore::{MigrateOptions, StorageMigrator};
/// let (old, new) = (MemoryStore::new(), MemoryStore::new());
/// old.put(&Key::new("a").unwrap(), "alpha".into()).await.unwrap();
/// let report = StorageMigrator::new(&old, &new).run(|_| {}).await.unwrap();
/// assert_eq!((report.copied, report.failures.len()), (1, 0));
/// assert_eq!(new.get(&Key::new("a").unwrap()).await.unwrap().unwrap(), "alpha");
/// // Run again: nothing left to copy.
/// let again = StorageMigrator::new(&old, &new).run(|_| {}).await.unwrap();
/// assert_eq!((again.already_migrated, again.copied), (1, 0));
/// # });
/// ```
pub struct StorageMigrator<'a> {
    source: &'a dyn KvStore,
    target: &'a dyn KvStore,
    options: MigrateOptions,
}

/// A key the plan found to copy.
struct Planned {
    key: Key,
    meta: ObjectMeta,
}

impl<'a> StorageMigrator<'a> {
    /// A migration from `source` to `target` with default [`MigrateOptions`].
    pub fn new(source: &'a dyn KvStore, target: &'a dyn KvStore) -> Self {
        StorageMigrator {
            source,
            target,
            options: MigrateOptions::default(),
        }
    }

    /// Sets the options.
    pub fn with_options(mut self, options: MigrateOptions) -> Self {
        self.options = options;
        self
    }

    /// Plans, then (unless a dry run) copies and verifies, calling `on_progress` after each
    /// write batch or large value.
    ///
    /// # Errors
    /// `InvalidInput` if `concurrency` is outside 1 to 64; a store's error if scanning either
    /// store fails (nothing is copied then). Failures of single keys do not stop the
    /// migration: they are listed in [`MigrationReport::failures`].
    pub async fn run(&self, on_progress: impl Fn(MigrateProgress)) -> Result<MigrationReport> {
        if !(1..=64).contains(&self.options.concurrency) {
            return Err(Error::invalid_input(format!(
                "migrate concurrency must be between 1 and 64, got {}",
                self.options.concurrency
            )));
        }
        let started = Instant::now();
        let mut report = MigrationReport {
            dry_run: self.options.dry_run,
            ..MigrationReport::default()
        };
        let planned = self.plan(&mut report).await?;
        if self.options.dry_run || planned.is_empty() {
            report.elapsed_ms = started.elapsed().as_millis() as u64;
            return Ok(report);
        }
        let progress = Tracker {
            keys: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            keys_total: report.to_copy,
            bytes_total: report.to_copy_bytes,
        };
        let mut results = stream::iter(group(planned))
            .map(|unit| self.copy_unit(unit))
            .buffer_unordered(self.options.concurrency);
        while let Some(outcomes) = results.next().await {
            let (mut keys, mut bytes) = (0, 0);
            for outcome in outcomes {
                keys += 1;
                match outcome {
                    Outcome::Copied(size) => {
                        report.copied += 1;
                        report.copied_bytes += size;
                        bytes += size;
                    }
                    Outcome::Vanished => report.vanished += 1,
                    Outcome::Failed(failure) => report.failures.push(failure),
                }
            }
            on_progress(progress.add(keys, bytes));
        }
        report.failures.sort_by(|a, b| a.key.cmp(&b.key));
        report.elapsed_ms = started.elapsed().as_millis() as u64;
        Ok(report)
    }

    /// The merge join of both stores' metadata in key order: the keys to copy.
    async fn plan(&self, report: &mut MigrationReport) -> Result<Vec<Planned>> {
        let mut source = self.source.scan_meta(self.options.range.clone(), None);
        let mut target = self
            .target
            .scan_meta(self.options.range.clone(), None)
            .peekable();
        let mut planned = Vec::new();
        while let Some(MetaEntry { key, meta }) = source.try_next().await? {
            report.source_keys += 1;
            report.source_bytes += meta.size;
            // Target keys below this one are the target's own.
            let mut held: Option<ObjectMeta> = None;
            loop {
                match std::pin::Pin::new(&mut target).peek().await {
                    Some(Ok(entry)) if entry.key < key => {
                        report.target_only += 1;
                        target.next().await;
                    }
                    Some(Ok(entry)) if entry.key == key => {
                        if let Some(Ok(entry)) = target.next().await {
                            held = Some(entry.meta);
                        }
                        break;
                    }
                    Some(Ok(_)) | None => break,
                    Some(Err(_)) => {
                        if let Some(Err(e)) = target.next().await {
                            return Err(e.with_operation("scan the migration target"));
                        }
                        break;
                    }
                }
            }
            match held {
                Some(there) if same_value(&there, &meta) => report.already_migrated += 1,
                Some(_) if self.options.only_missing => report.kept_in_target += 1,
                other => {
                    if other.is_some() {
                        report.replaced += 1;
                    }
                    report.to_copy += 1;
                    report.to_copy_bytes += meta.size;
                    planned.push(Planned { key, meta });
                }
            }
        }
        while target.try_next().await?.is_some() {
            report.target_only += 1;
        }
        Ok(planned)
    }

    /// Copies one unit (a batch of small values, or one large value) and verifies it.
    async fn copy_unit(&self, unit: Unit) -> Vec<Outcome> {
        match unit {
            Unit::Large(planned) => vec![self.copy_large(planned).await],
            Unit::Batch(planned) => self.copy_batch(planned).await,
        }
    }

    /// Small values: read together, written in one batch, each read back and hashed.
    async fn copy_batch(&self, planned: Vec<Planned>) -> Vec<Outcome> {
        let keys: Vec<Key> = planned.iter().map(|p| p.key.clone()).collect();
        let values = match self.source.get_many(&keys).await {
            Ok(values) => values,
            Err(e) => return planned.iter().map(|p| failed(&p.key, &e)).collect(),
        };
        let mut outcomes = Vec::with_capacity(planned.len());
        let mut batch = WriteBatch::new();
        let mut written = Vec::new();
        for (p, value) in planned.into_iter().zip(values) {
            let Some(value) = value else {
                outcomes.push(Outcome::Vanished);
                continue;
            };
            // The plan's metadata goes along, so the value must be the one it described.
            if value.len() as u64 != p.meta.size || Sha256Digest::of(&value) != p.meta.checksum {
                outcomes.push(failed(&p.key, &changed()));
                continue;
            }
            batch.put_with(p.key.clone(), value, PutOptions::preserving(&p.meta));
            written.push(p);
        }
        if written.is_empty() {
            return outcomes;
        }
        if let Err(e) = self.target.write_batch(batch).await {
            outcomes.extend(written.iter().map(|p| failed(&p.key, &e)));
            return outcomes;
        }
        // Read back together and hashed, as large values are one by one.
        let keys: Vec<Key> = written.iter().map(|p| p.key.clone()).collect();
        let back = match self.target.get_many(&keys).await {
            Ok(back) => back,
            Err(e) => {
                outcomes.extend(written.iter().map(|p| failed(&p.key, &e)));
                return outcomes;
            }
        };
        for (p, value) in written.into_iter().zip(back) {
            let checked = match value {
                Some(value) => check_copy(value.len() as u64, Sha256Digest::of(&value), &p.meta),
                None => Err(gone_after_copy()),
            };
            outcomes.push(match checked {
                Ok(()) => Outcome::Copied(p.meta.size),
                Err(e) => failed(&p.key, &e),
            });
        }
        outcomes
    }

    /// A large value: streamed from the source into the target, then read back and hashed.
    async fn copy_large(&self, planned: Planned) -> Outcome {
        let Planned { key, meta } = planned;
        let result = async {
            let Some(stream) = self.source.get_stream(&key, None).await? else {
                return Ok(None);
            };
            let mut reader = tokio_util::io::StreamReader::new(
                stream
                    .body
                    .map_err(|e| std::io::Error::other(e.to_string())),
            );
            let written = self
                .target
                .put_stream(&key, &mut reader, &PutOptions::preserving(&meta))
                .await?;
            // The target hashed what it received: another value than the plan's means the
            // source changed in between (its metadata went along, so it must be redone).
            if written.checksum != meta.checksum || written.size != meta.size {
                return Err(changed());
            }
            self.verify(&key, &meta).await?;
            Ok(Some(meta.size))
        }
        .await;
        match result {
            Ok(Some(size)) => Outcome::Copied(size),
            Ok(None) => Outcome::Vanished,
            Err(e) => failed(&key, &e),
        }
    }

    /// Reads `key` back from the target and checks its bytes hash to `meta.checksum`.
    async fn verify(&self, key: &Key, meta: &ObjectMeta) -> Result<()> {
        let stream = self
            .target
            .get_stream(key, None)
            .await?
            .ok_or_else(gone_after_copy)?;
        let mut hasher = Sha256::new();
        let mut len = 0u64;
        let mut body = stream.body;
        while let Some(piece) = body.try_next().await? {
            len += piece.len() as u64;
            hasher.update(&piece);
        }
        check_copy(len, Sha256Digest(hasher.finalize().into()), meta)
    }
}

/// `Corrupted` unless the target's copy has the source's length and SHA-256.
fn check_copy(len: u64, digest: Sha256Digest, meta: &ObjectMeta) -> Result<()> {
    if len == meta.size && digest == meta.checksum {
        return Ok(());
    }
    Err(Error::corrupted(format!(
        "the target returned {len} bytes with SHA-256 {digest} after the copy; the source has \
         {} bytes with SHA-256 {}",
        meta.size, meta.checksum
    )))
}

fn gone_after_copy() -> Error {
    Error::corrupted("missing from the target right after its copy")
}

/// Whether the target's copy is the source's value with its metadata.
fn same_value(there: &ObjectMeta, here: &ObjectMeta) -> bool {
    there.size == here.size
        && there.checksum == here.checksum
        && there.content_type == here.content_type
        && there.created == here.created
        && there.modified == here.modified
}

/// A source value that is no longer the one the plan read.
fn changed() -> Error {
    Error::conflict("changed in the source while being migrated; run the migration again")
}

fn failed(key: &Key, e: &Error) -> Outcome {
    Outcome::Failed(MigrationFailure {
        key: key.to_string(),
        message: e.to_string(),
    })
}

/// What became of one planned key.
enum Outcome {
    Copied(u64),
    Vanished,
    Failed(MigrationFailure),
}

/// Work for one task of the copy pass.
enum Unit {
    Batch(Vec<Planned>),
    Large(Planned),
}

/// Small values into batches of at most [`MIGRATE_BATCH_KEYS`] keys and
/// [`MIGRATE_BATCH_BYTES`] bytes; large ones each a unit of their own.
fn group(planned: Vec<Planned>) -> Vec<Unit> {
    let mut units = Vec::new();
    let mut batch: Vec<Planned> = Vec::new();
    let mut bytes = 0u64;
    for p in planned {
        if p.meta.size >= MIGRATE_STREAM_FROM_BYTES {
            units.push(Unit::Large(p));
            continue;
        }
        if batch.len() >= MIGRATE_BATCH_KEYS || bytes + p.meta.size > MIGRATE_BATCH_BYTES {
            units.push(Unit::Batch(std::mem::take(&mut batch)));
            bytes = 0;
        }
        bytes += p.meta.size;
        batch.push(p);
    }
    if !batch.is_empty() {
        units.push(Unit::Batch(batch));
    }
    units
}

/// Counts for progress callbacks from concurrent units.
struct Tracker {
    keys: AtomicU64,
    bytes: AtomicU64,
    keys_total: u64,
    bytes_total: u64,
}

impl Tracker {
    fn add(&self, keys: u64, bytes: u64) -> MigrateProgress {
        MigrateProgress {
            keys_done: self.keys.fetch_add(keys, Ordering::Relaxed) + keys,
            bytes_done: self.bytes.fetch_add(bytes, Ordering::Relaxed) + bytes,
            keys_total: self.keys_total,
            bytes_total: self.bytes_total,
        }
    }
}

/// Seed 001's "read from both, write to new": a [`KvStore`] over the store being migrated
/// from (`old`) and the one being migrated to (`new`), for a live switch-over while a
/// [`StorageMigrator`] copies in the background.
///
/// - Reads (`get`, `head`, ranges, streams, `get_many`) ask `new` first and `old` for what
///   `new` lacks.
/// - Writes go to `new` only; a key only `old` holds keeps its creation time there (unless
///   the write sets one), as a store keeps it across overwrites. A delete (alone or in a batch) removes the key from both, so a
///   deleted key never reappears from `old`; [`clear`](KvStore::clear) clears both.
/// - A write batch whose checks or writes name a key only `old` holds first copies that key
///   to `new` with its metadata, so `Expect` preconditions see the value a read would.
/// - Scans merge both stores in key order, `new`'s entry winning when both hold a key.
///
/// Capabilities are `new`'s (it takes every write). Run the background migration with
/// [`MigrateOptions::only_missing`], so it never replaces what was written through this
/// layer; when it is complete, switch to `new` alone. A delete of a key at the moment the
/// migration copies that same key can be undone by the copy (there are no tombstones):
/// delete such keys again after the migration if that matters.
#[derive(Debug)]
pub struct DualReadStore<O, N> {
    old: O,
    new: N,
}

impl<O: KvStore, N: KvStore> DualReadStore<O, N> {
    /// Reads from `new`, then `old`; writes to `new`.
    pub fn new(old: O, new: N) -> Self {
        DualReadStore { old, new }
    }

    /// The store being migrated from.
    pub fn old(&self) -> &O {
        &self.old
    }

    /// The store being migrated to.
    pub fn new_store(&self) -> &N {
        &self.new
    }

    /// `options`, with `old`'s creation time of `key` when only `old` holds it and the
    /// options set none.
    async fn carry_created(&self, key: &Key, options: &PutOptions) -> Result<PutOptions> {
        let mut options = options.clone();
        if options.created.is_none()
            && self.new.head(key).await?.is_none()
            && let Some(meta) = self.old.head(key).await?
        {
            options.created = Some(meta.created);
        }
        Ok(options)
    }

    /// Copies `key` from `old` to `new` if only `old` holds it.
    async fn promote(&self, key: &Key) -> Result<()> {
        if self.new.head(key).await?.is_some() {
            return Ok(());
        }
        let Some(meta) = self.old.head(key).await? else {
            return Ok(());
        };
        let Some(stream) = self.old.get_stream(key, None).await? else {
            return Ok(());
        };
        let mut reader = tokio_util::io::StreamReader::new(
            stream
                .body
                .map_err(|e| std::io::Error::other(e.to_string())),
        );
        self.new
            .put_stream(key, &mut reader, &PutOptions::preserving(&meta))
            .await?;
        Ok(())
    }
}

/// Two key-ordered streams as one, `first`'s item winning when both have a key.
fn merge_by_key<'a, T: Send + Sync + 'a>(
    first: futures::stream::BoxStream<'a, Result<T>>,
    second: futures::stream::BoxStream<'a, Result<T>>,
    key: fn(&T) -> &Key,
) -> futures::stream::BoxStream<'a, Result<T>> {
    let state = (first.peekable(), second.peekable());
    stream::unfold(state, move |(mut a, mut b)| async move {
        use std::cmp::Ordering::{Equal, Greater, Less};
        let order = {
            let pa = std::pin::Pin::new(&mut a).peek().await;
            let pb = std::pin::Pin::new(&mut b).peek().await;
            match (pa, pb) {
                (None, None) => return None,
                (Some(Err(_)), _) | (Some(_), None) => Less,
                (None, Some(_)) | (_, Some(Err(_))) => Greater,
                (Some(Ok(x)), Some(Ok(y))) => key(x).cmp(key(y)),
            }
        };
        let item = match order {
            Less => a.next().await,
            Greater => b.next().await,
            Equal => {
                b.next().await;
                a.next().await
            }
        };
        item.map(|item| (item, (a, b)))
    })
    .boxed()
}

hybridstore_core::kv_store_impl! {
    impl[O: KvStore, N: KvStore] KvStore for DualReadStore<O, N>;
    forward(new): [];
    // Through the merged scans above, so both stores' keys count.
    provided: [list_keys, exists, stats];
    {
        fn capabilities(&self) -> hybridstore_core::Capabilities {
            self.new.capabilities()
        }

        async fn get(&self, key: &Key) -> Result<Option<hybridstore_core::Bytes>> {
            match self.new.get(key).await? {
                Some(value) => Ok(Some(value)),
                None => self.old.get(key).await,
            }
        }

        async fn head(&self, key: &Key) -> Result<Option<ObjectMeta>> {
            match self.new.head(key).await? {
                Some(meta) => Ok(Some(meta)),
                None => self.old.head(key).await,
            }
        }

        async fn get_range(
            &self,
            key: &Key,
            range: std::ops::Range<u64>,
        ) -> Result<Option<hybridstore_core::Bytes>> {
            match self.new.get_range(key, range.clone()).await? {
                Some(value) => Ok(Some(value)),
                None => self.old.get_range(key, range).await,
            }
        }

        async fn get_stream(
            &self,
            key: &Key,
            range: Option<std::ops::Range<u64>>,
        ) -> Result<Option<hybridstore_core::ValueStream<'_>>> {
            match self.new.get_stream(key, range.clone()).await? {
                Some(stream) => Ok(Some(stream)),
                None => self.old.get_stream(key, range).await,
            }
        }

        async fn get_many(&self, keys: &[Key]) -> Result<Vec<Option<hybridstore_core::Bytes>>> {
            let mut values = self.new.get_many(keys).await?;
            let missing: Vec<usize> = (0..keys.len()).filter(|&i| values[i].is_none()).collect();
            if missing.is_empty() {
                return Ok(values);
            }
            let wanted: Vec<Key> = missing.iter().map(|&i| keys[i].clone()).collect();
            for (i, value) in missing.into_iter().zip(self.old.get_many(&wanted).await?) {
                values[i] = value;
            }
            Ok(values)
        }

        async fn put(&self, key: &Key, value: hybridstore_core::Bytes) -> Result<ObjectMeta> {
            self.put_with(key, value, &PutOptions::default()).await
        }

        async fn put_with(
            &self,
            key: &Key,
            value: hybridstore_core::Bytes,
            options: &PutOptions,
        ) -> Result<ObjectMeta> {
            let options = self.carry_created(key, options).await?;
            self.new.put_with(key, value, &options).await
        }

        async fn put_stream(
            &self,
            key: &Key,
            reader: hybridstore_core::ValueReader<'_>,
            options: &PutOptions,
        ) -> Result<ObjectMeta> {
            let options = self.carry_created(key, options).await?;
            self.new.put_stream(key, reader, &options).await
        }

        async fn delete(&self, key: &Key) -> Result<()> {
            // New first: if the second delete fails, the key may still be read from old,
            // and the caller's retry deletes it there.
            self.new.delete(key).await?;
            self.old.delete(key).await
        }

        fn scan(&self, range: KeyRange, limit: Option<usize>) -> hybridstore_core::EntryStream<'_> {
            let merged = merge_by_key(
                self.new.scan(range.clone(), None),
                self.old.scan(range, None),
                |e: &hybridstore_core::Entry| &e.key,
            );
            match limit {
                Some(n) => merged.take(n).boxed(),
                None => merged,
            }
        }

        fn scan_meta(&self, range: KeyRange, limit: Option<usize>) -> hybridstore_core::MetaStream<'_> {
            let merged = merge_by_key(
                self.new.scan_meta(range.clone(), None),
                self.old.scan_meta(range, None),
                |e: &MetaEntry| &e.key,
            );
            match limit {
                Some(n) => merged.take(n).boxed(),
                None => merged,
            }
        }

        async fn write_batch(&self, batch: WriteBatch) -> Result<()> {
            use hybridstore_core::BatchOp;
            let mut deleted = Vec::new();
            let mut carried = WriteBatch::new();
            for op in batch.ops() {
                match op {
                    BatchOp::Check { key, expect } => {
                        self.promote(key).await?;
                        carried.expect(key.clone(), expect.clone());
                    }
                    BatchOp::Delete { key } => {
                        deleted.push(key.clone());
                        carried.delete(key.clone());
                    }
                    BatchOp::Put { key, value, options } => {
                        let options = self.carry_created(key, options).await?;
                        carried.put_with(key.clone(), value.clone(), options);
                    }
                }
            }
            self.new.write_batch(carried).await?;
            for key in deleted {
                self.old.delete(&key).await?;
            }
            Ok(())
        }

        async fn clear(&self) -> Result<u64> {
            // Keys both hold count once: the merged count, then both cleared.
            let keys = self.scan_meta(KeyRange::all(), None).try_fold(0u64, |n, _| async move { Ok(n + 1) }).await?;
            self.new.clear().await?;
            self.old.clear().await?;
            Ok(keys)
        }
    }
}

/// One end of a migration (`hybridstore migrate --from SRC --to DST`), opened from a
/// location:
///
/// - `file://DIR`: a bare `FileStore` at `DIR` (no dedup);
/// - `sqlite://FILE`: a bare `SqlStore` on the SQLite database `FILE` (created if missing);
/// - `postgres://…` (or `postgresql://…`): a bare `SqlStore` on PostgreSQL (feature
///   `postgres`);
/// - `s3://BUCKET/PREFIX`: an `ObjectStoreKv` under that prefix, reached with the
///   configuration's S3 region and endpoint (feature `sync`);
/// - anything else: a data directory, opened as a [`HybridStorageSystem`] whose primary and
///   dedup setting are read off the directory when it holds a store (`kv/` a file primary,
///   `kv.db` SQLite, `chunks/` dedup), else taken from the base configuration. Its stack
///   below the cache is what is read and written, so the copy is verified against the
///   medium, not the cache. Only the key/value store migrates: the directory's LanceDB
///   collections (passages included) and analytics database stay where they are, and the
///   copy records no access events.
pub enum MigrationEndpoint {
    /// A data directory.
    System(Box<crate::HybridStorageSystem>),
    /// A bare store at a URL.
    Store {
        /// The location, passwords shown as `***`.
        location: String,
        /// The store.
        store: std::sync::Arc<dyn KvStore>,
    },
}

impl std::fmt::Debug for MigrationEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl MigrationEndpoint {
    /// Opens `location` (see the type's docs); `base` supplies a new data directory's
    /// settings and the S3 options.
    ///
    /// # Errors
    /// `InvalidInput` for a URL scheme this build cannot open or a malformed URL; `Locked` if
    /// another process has the data directory open; the store's errors while opening.
    pub async fn open(location: &str, base: &crate::StorageConfig) -> Result<Self> {
        let bare = |store: std::sync::Arc<dyn KvStore>| MigrationEndpoint::Store {
            location: hybridstore_core::SecretUrl::from(location.to_string()).redacted(),
            store,
        };
        if let Some(dir) = location.strip_prefix("file://") {
            #[cfg(feature = "file")]
            return Ok(bare(std::sync::Arc::new(
                hybridstore_file::FileStore::open(dir).await?,
            )));
            #[cfg(not(feature = "file"))]
            return Err(Error::invalid_input(format!(
                "{dir}: file:// needs the `file` feature"
            )));
        }
        #[cfg(feature = "sql")]
        if let Some(file) = location.strip_prefix("sqlite://") {
            return Ok(bare(std::sync::Arc::new(
                hybridstore_sql::SqlStore::open_sqlite_file(file, Default::default()).await?,
            )));
        }
        #[cfg(feature = "sql")]
        if location.starts_with("postgres://") || location.starts_with("postgresql://") {
            return Ok(bare(std::sync::Arc::new(
                hybridstore_sql::SqlStore::open(location, Default::default()).await?,
            )));
        }
        if location.starts_with("s3://") {
            #[cfg(feature = "sync")]
            {
                let url: hybridstore_sync::RemoteUrl = location.parse()?;
                let store = hybridstore_sync::ObjectStoreKv::open_url(
                    &url,
                    &base.s3_storage_options(),
                    hybridstore_sync::ObjectStoreKvOptions::default(),
                )
                .await?;
                return Ok(bare(std::sync::Arc::new(store)));
            }
            #[cfg(not(feature = "sync"))]
            return Err(Error::invalid_input("s3:// needs the `sync` feature"));
        }
        if location.contains("://") {
            return Err(Error::invalid_input(format!(
                "{}: not a data directory, file://, sqlite://, postgres:// or s3:// location",
                hybridstore_core::SecretUrl::from(location.to_string()).redacted()
            )));
        }
        let config = data_dir_config(std::path::Path::new(location), base);
        let system =
            crate::HybridStorageSystem::open_with(config, crate::OpenOptions::command()).await?;
        Ok(MigrationEndpoint::System(Box::new(system)))
    }

    /// The store a migration reads or writes.
    pub fn kv(&self) -> &dyn KvStore {
        match self {
            MigrationEndpoint::System(system) => system.uncached.as_ref(),
            MigrationEndpoint::Store { store, .. } => store.as_ref(),
        }
    }

    /// Where this end is, for reports: the data directory with its stack, or the URL with
    /// any password as `***`.
    pub fn describe(&self) -> String {
        match self {
            MigrationEndpoint::System(system) => {
                let config = system.config();
                format!(
                    "data directory {} ({}{})",
                    config.data_dir.display(),
                    config.backend_name(),
                    if config.dedup { " + dedup" } else { "" }
                )
            }
            MigrationEndpoint::Store { location, .. } => location.clone(),
        }
    }

    /// Closes this end: a data directory is shut down (its stores flushed, its lock released).
    ///
    /// # Errors
    /// As [`HybridStorageSystem::shutdown`](crate::HybridStorageSystem::shutdown).
    pub async fn close(self) -> Result<()> {
        match self {
            MigrationEndpoint::System(system) => system.shutdown().await.map(|_| ()),
            MigrationEndpoint::Store { .. } => Ok(()),
        }
    }
}

/// `base` with `data_dir` = `dir`, analytics and vectors off, and the primary and dedup setting the directory already
/// holds, when it holds a store.
fn data_dir_config(dir: &std::path::Path, base: &crate::StorageConfig) -> crate::StorageConfig {
    let mut config = base.clone();
    config.data_dir = dir.to_path_buf();
    // The key/value store is what migrates: no access events for the copy, and LanceDB is
    // left where it is (it stays in the directory it was written to).
    config.analytics = false;
    config.vectors = false;
    let file_primary = dir.join(crate::KV_DIR).is_dir();
    let sqlite_primary = dir.join(crate::KV_SQLITE_FILE).is_file();
    if file_primary || sqlite_primary {
        config.primary = if file_primary {
            crate::PrimaryStore::File
        } else {
            crate::PrimaryStore::Sql
        };
        config.sql_url = None;
        config.dedup = dir.join(crate::CHUNKS_DIR).is_dir();
    }
    config
}
