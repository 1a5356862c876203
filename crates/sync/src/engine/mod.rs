//! The sync engine: push, pull and two-way sync between a local store and a remote.
//!
//! ```text
//! remote (an ObjectStoreKv)                 local sync state (any KvStore)
//!   packs/<id>   chunks, LZ4, ~16 MiB packs    <ns>gen        last segment folded in
//!   log/<gen>    segments: key → manifest      <ns>r/<key>    the remote's entry for key
//!                or tombstone, one per push    <ns>s/<key>    checksum at the last sync
//! ```
//!
//! **A sync** folds the remote's new segments into the local state (one LIST, then a GET
//! per new segment), scans the local store's metadata, and decides each key by a three-way
//! comparison ([`plan::decide`]): local vs the base (what both had at the last sync) vs
//! remote. Unchanged keys cost nothing: a sync with no changes transfers no bytes.
//!
//! **Chunks travel once.** A value is cut into content-defined chunks (FastCDC, the dedup
//! layer's settings); chunks the remote already has, from any key of any device, are not
//! sent. New chunks go into packs of about 16 MiB (`hybridstore_dedup::ChunkStore` on the
//! remote), and a group of changed keys (up to [`SyncOptions::group_bytes`] of values)
//! becomes one segment: requests grow with packs and groups, not with keys (restic's packs
//! and index, Litestream's log segments). A pull fetches the byte ranges of the packs it
//! needs, adjacent ranges merged.
//!
//! **Order and safety.** For each group: packs first, then the segment (a conditional
//! create of `log/<gen + 1>`: the commit point), then the local state. An interrupted push
//! leaves packs whose chunks the next push finds and does not send again, and no segment
//! naming chunks that are not there. Two devices pushing at once cannot both create one
//! generation: the loser folds the winner's segment, drops every key the winner changed
//! (reported, sent by a later sync after its conflict is resolved) and commits the rest as
//! the next generation, so neither overwrites the other's work.
//!
//! **Limits.** A sync that would delete more than [`SyncOptions::max_delete_percent`] of
//! the keys on the side it changes stops before changing anything, unless forced (rclone's
//! `--max-delete`). Transient remote errors are retried with exponential backoff (backon).

pub mod plan;
pub(crate) mod segment;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use backon::{ExponentialBuilder, Retryable};
use bytes::{Bytes, BytesMut};
use futures::{FutureExt, StreamExt, TryStreamExt};
use hybridstore_core::{
    Error, ErrorKind, Expect, Key, KeyRange, KvStore, ObjectMeta, PutOptions, Result, Sha256Digest,
    WriteBatch,
};
use hybridstore_dedup::{ChunkList, ChunkStore, ChunkerConfig, Manifest};
use serde::Serialize;

use crate::{ObjectStoreKv, RemoteUrl};
use plan::{Action, ConflictPolicy, Direction, Side, Version, decide};
use segment::RemoteState;

/// Key prefix of the remote's segments.
pub const LOG_PREFIX: &str = "log/";

/// Values of at most this many bytes travel inside their segment instead of as chunks
/// (4 KiB: a page; smaller values would cost more in chunk index entries than they save).
pub const INLINE_MAX: usize = 4096;

/// Tuning of a sync.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SyncOptions {
    /// How a key changed on both sides is resolved (default [`ConflictPolicy::Newer`]).
    pub policy: ConflictPolicy,
    /// Refuse a sync that deletes more than this percentage of the keys on the side it
    /// changes (default 50, rclone's default for `--max-delete` in bisync).
    pub max_delete_percent: u8,
    /// Go past `max_delete_percent`.
    pub force: bool,
    /// Decide and report, change nothing.
    pub dry_run: bool,
    /// Values read, chunked or written at once (default 16).
    pub concurrency: usize,
    /// Bytes of values per group, i.e. per segment (default 64 MiB).
    pub group_bytes: u64,
    /// Keys per group at most (default 10,000).
    pub group_keys: usize,
    /// Chunk boundaries (default: the dedup layer's, so a local dedup store and the remote
    /// cut the same chunks).
    pub chunker: ChunkerConfig,
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions {
            policy: ConflictPolicy::Newer,
            max_delete_percent: 50,
            force: false,
            dry_run: false,
            concurrency: 16,
            group_bytes: 64 << 20,
            group_keys: 10_000,
            chunker: ChunkerConfig::default(),
        }
    }
}

impl SyncOptions {
    /// Sets `policy`.
    pub fn with_policy(mut self, policy: ConflictPolicy) -> Self {
        self.policy = policy;
        self
    }
    /// Sets `dry_run`.
    pub fn with_dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }
    /// Sets `max_delete_percent` and `force`.
    pub fn with_max_delete(mut self, percent: u8, force: bool) -> Self {
        self.max_delete_percent = percent;
        self.force = force;
        self
    }
    /// Sets `group_bytes` and `group_keys`.
    pub fn with_groups(mut self, bytes: u64, keys: usize) -> Self {
        self.group_bytes = bytes.max(1);
        self.group_keys = keys.max(1);
        self
    }
}

/// Where a sync is, for a progress bar.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SyncProgress {
    /// `"download"` or `"upload"`.
    pub phase: &'static str,
    /// Keys of this phase done.
    pub keys_done: u64,
    /// Keys of this phase in all.
    pub keys_total: u64,
    /// Bytes sent so far (packs and segments).
    pub bytes_sent: u64,
    /// Bytes received so far.
    pub bytes_received: u64,
}

/// A conflict and how it was resolved.
#[derive(Clone, Debug, Serialize)]
pub struct ConflictReport {
    /// The key (as `Key`'s `Display` prints it).
    pub key: String,
    /// The side whose version stays under the key.
    pub winner: Side,
    /// Where the other version was kept (policy keep-both).
    pub kept_as: Option<String>,
    /// Whether this sync carried the resolution out (a one-way sync leaves a resolution
    /// that needs the other direction to a later sync).
    pub resolved: bool,
}

/// What a sync did (or, with `dry_run`, would do).
#[derive(Clone, Debug, Default, Serialize)]
pub struct SyncReport {
    /// Whether nothing was changed.
    pub dry_run: bool,
    /// Values sent to the remote.
    pub uploaded: u64,
    /// Deletions sent to the remote (tombstones).
    pub deleted_remote: u64,
    /// Values brought from the remote.
    pub downloaded: u64,
    /// Local keys deleted because the remote deleted them.
    pub deleted_local: u64,
    /// Keys changed the same way on both sides: recorded, nothing moved.
    pub identical: u64,
    /// Keys that changed on both sides to different versions.
    pub conflicts: Vec<ConflictReport>,
    /// Local changes not pushed (a pull) and remote changes not pulled (a push).
    pub pending: u64,
    /// Keys that could not be synced, with the reason (too long for the remote, changed
    /// while being read, damaged on the remote).
    pub failed: Vec<(String, String)>,
    /// Chunks sent (not on the remote before).
    pub chunks_sent: u64,
    /// Packs written to the remote.
    pub packs_sent: u64,
    /// Segments written to the remote.
    pub segments_sent: u64,
    /// Bytes sent: packs and segments.
    pub bytes_sent: u64,
    /// Bytes received: segments and pack ranges.
    pub bytes_received: u64,
    /// The remote's generation (its last segment) after the sync.
    pub generation: u64,
    /// The local keys this sync wrote (downloads, keep-both copies), for a caller that keeps
    /// derived data, such as a search index, up to date. Not in the JSON form.
    #[serde(skip)]
    pub written_local: Vec<Key>,
    /// The local keys this sync deleted. Not in the JSON form.
    #[serde(skip)]
    pub deleted_local_keys: Vec<Key>,
    /// Wall time, in milliseconds.
    pub elapsed_ms: u64,
}

/// What `hybridstore sync status` shows: a dry-run two-way sync, and the last sync.
#[derive(Clone, Debug, Serialize)]
pub struct SyncStatus {
    /// The remote.
    pub remote: String,
    /// Values and deletions a push would send.
    pub pending_uploads: u64,
    /// Values and deletions a pull would bring.
    pub pending_downloads: u64,
    /// Keys changed on both sides.
    pub conflicts: u64,
    /// When the last sync with this remote finished, if any.
    pub last_sync: Option<SystemTime>,
    /// The remote's generation.
    pub generation: u64,
    /// Round trip of one listing request to the remote, in milliseconds (the remote was
    /// reachable: an unreachable one fails the status with `Unavailable`).
    pub remote_latency_ms: f64,
}

/// The remote side: an [`ObjectStoreKv`] holding packs and segments.
#[derive(Clone, Debug)]
pub struct Remote {
    kv: Arc<ObjectStoreKv>,
    chunks: ChunkStore,
    name: String,
    /// The generation up to which the chunk index knows the packs that segments name.
    packs_known_at: Arc<AtomicU64>,
}

impl Remote {
    /// Opens the remote `url` names (see [`ObjectStoreKv::open_url`]) and loads the index of
    /// its packs (a LIST and two ranged GETs per pack).
    ///
    /// # Errors
    /// As [`ObjectStoreKv::open_url`] and `ChunkStore::open`.
    pub async fn open(
        url: &RemoteUrl,
        storage_options: &[(String, String)],
        options: crate::ObjectStoreKvOptions,
    ) -> Result<Remote> {
        let kv = ObjectStoreKv::open_url(url, storage_options, options).await?;
        Remote::on(kv, url.to_string()).await
    }

    /// The remote kept in `kv`, named `name` (the local sync state is kept per name).
    ///
    /// # Errors
    /// As `ChunkStore::open`.
    pub async fn on(kv: ObjectStoreKv, name: String) -> Result<Remote> {
        let kv = Arc::new(kv);
        let chunks =
            ChunkStore::open(kv.clone(), hybridstore_dedup::DEFAULT_TARGET_PACK_SIZE).await?;
        Ok(Remote {
            kv,
            chunks,
            name,
            packs_known_at: Arc::new(AtomicU64::new(0)),
        })
    }

    /// The store holding packs and segments.
    pub fn kv(&self) -> &Arc<ObjectStoreKv> {
        &self.kv
    }

    /// The remote's name, as sync state and reports show it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the remote answers, and how fast: the round trip of one listing request
    /// (at most one key), within the store's deadline.
    ///
    /// # Errors
    /// `Unavailable` (retryable) when the remote does not answer within the deadline.
    pub async fn probe(&self) -> Result<Duration> {
        let started = Instant::now();
        self.kv
            .list_keys(KeyRange::prefix(LOG_PREFIX), Some(1))
            .await?;
        Ok(started.elapsed())
    }
}

/// Sync between one local store and one remote, with its state in a local store.
#[derive(Debug)]
pub struct SyncEngine {
    local: Arc<dyn KvStore>,
    state: Arc<dyn KvStore>,
    remote: Remote,
    /// State key prefix of this remote: `sync/<16 hex of SHA-256(name)>/`.
    ns: String,
}

/// One key to send: under `key`, the local value of `source`, or a remote state already
/// on the remote (a keep-both copy).
#[derive(Clone, Debug)]
enum Upload {
    Local {
        key: Key,
        source: Key,
        meta: ObjectMeta,
    },
    Copy {
        key: Key,
        state: RemoteState,
    },
    Tombstone {
        key: Key,
    },
}

impl Upload {
    /// The key the upload writes on the remote.
    fn key(&self) -> &Key {
        match self {
            Upload::Local { key, .. } | Upload::Copy { key, .. } | Upload::Tombstone { key } => key,
        }
    }
}

/// One upload ready to send: its key, its segment entry, and the chunks (id, plaintext) of
/// it that the remote lacks.
type Prepared = (Key, RemoteState, Vec<(Sha256Digest, Bytes)>);

/// One group of downloads with its chunks: `keys` in the group, the values to write
/// (remote key, local key, metadata, manifest), the chunks they need, and the keys whose
/// manifests were damaged.
#[derive(Default)]
struct FetchedGroup {
    keys: u64,
    values: Vec<(Key, Key, ObjectMeta, Manifest)>,
    chunks: Arc<HashMap<Sha256Digest, Bytes>>,
    failed: Vec<(String, String)>,
}

/// Counters shared by the concurrent parts of a sync.
#[derive(Debug, Default)]
struct Traffic {
    sent: AtomicU64,
    received: AtomicU64,
}

fn backoff() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(2))
        .with_max_times(5)
}

fn key_of(bytes: impl Into<Bytes>) -> Result<Key> {
    Key::new(bytes)
}

/// `log/<generation, 20 digits>`: zero-padded, so key order is generation order.
fn log_key(generation: u64) -> Result<Key> {
    Key::new(format!("{LOG_PREFIX}{generation:020}"))
}

fn version_of(meta: &ObjectMeta) -> Version {
    Version {
        checksum: meta.checksum,
        modified: meta.modified,
    }
}

fn remote_version(state: Option<&RemoteState>) -> Option<Version> {
    match state? {
        RemoteState::Tombstone { .. } => None,
        RemoteState::Value { meta, .. } => Some(version_of(meta)),
    }
}

/// `<key>.conflict-<side>-<RFC 3339 time>`.
fn conflict_key(key: &Key, side: Side, modified: SystemTime) -> Result<Key> {
    let side = match side {
        Side::Local => "local",
        Side::Remote => "remote",
    };
    let mut bytes = key.as_bytes().to_vec();
    bytes.extend_from_slice(
        format!(
            ".conflict-{side}-{}",
            humantime::format_rfc3339_seconds(modified)
        )
        .as_bytes(),
    );
    Key::new(bytes)
}

impl SyncEngine {
    /// An engine syncing `local` with `remote`, keeping what it knows in `state` under
    /// `sync/<hash of the remote's name>/`. `local` should be the store applications write
    /// through (so a pull invalidates their caches); `state` any durable store of its own.
    pub fn new(local: Arc<dyn KvStore>, state: Arc<dyn KvStore>, remote: Remote) -> SyncEngine {
        let digest = Sha256Digest::of(remote.name.as_bytes()).to_hex();
        SyncEngine {
            local,
            state,
            ns: format!("sync/{}/", &digest[..16]),
            remote,
        }
    }

    /// The remote.
    pub fn remote(&self) -> &Remote {
        &self.remote
    }

    fn state_key(&self, kind: &str, key: &[u8]) -> Result<Key> {
        let mut bytes = Vec::with_capacity(self.ns.len() + kind.len() + key.len());
        bytes.extend_from_slice(self.ns.as_bytes());
        bytes.extend_from_slice(kind.as_bytes());
        bytes.extend_from_slice(key);
        key_of(bytes)
    }

    async fn state_u64(&self, name: &'static str) -> Result<Option<u64>> {
        let Some(bytes) = self.state.get(&self.state_key(name, b"")?).await? else {
            return Ok(None);
        };
        let raw: [u8; 8] = bytes[..]
            .try_into()
            .map_err(|_| Error::corrupted(format!("sync state {name}: not 8 bytes")))?;
        Ok(Some(u64::from_le_bytes(raw)))
    }

    /// Folds the remote's segments after the last one seen into the local state, one
    /// segment per state batch (so a crash leaves the state at a segment boundary).
    /// Returns the remote's generation and the bytes read.
    async fn refresh(&self) -> Result<(u64, u64)> {
        let mut generation = self.state_u64("gen").await?.unwrap_or(0);
        let kv = self.remote.kv.clone();
        let start = log_key(generation + 1)?.into_bytes();
        let end = hybridstore_core::prefix_successor(LOG_PREFIX.as_bytes())
            .ok_or_else(|| Error::backend("no successor of the log prefix"))?;
        let range = KeyRange::new(Bound::Included(start), Bound::Excluded(end));
        let listed = (|| kv.list_keys(range.clone(), None))
            .retry(backoff())
            .when(Error::is_retryable)
            .await?;
        let mut read = 0u64;
        for key in listed {
            let wanted = generation + 1;
            if key != log_key(wanted)? {
                return Err(Error::corrupted(format!(
                    "the remote's log skips from generation {generation} to {key}; \
                     a segment is missing"
                )));
            }
            let bytes = (|| kv.get(&key))
                .retry(backoff())
                .when(Error::is_retryable)
                .await?
                .ok_or_else(|| Error::corrupted(format!("segment {key} vanished")))?;
            read += bytes.len() as u64;
            let entries = hybridstore_core::raw::spawn_cpu(move || segment::decode_segment(&bytes))
                .await?
                .map_err(|e| e.with_context("segment", &key))?;
            let mut batch = WriteBatch::new();
            for (k, state) in &entries {
                let mut encoded = BytesMut::new();
                segment::put_state(&mut encoded, state);
                batch.put(self.state_key("r/", k.as_bytes())?, encoded.freeze());
            }
            batch.put(
                self.state_key("gen", b"")?,
                Bytes::copy_from_slice(&wanted.to_le_bytes()),
            );
            self.state.write_batch(batch).await?;
            generation = wanted;
        }
        Ok((generation, read))
    }

    async fn state_map<T>(
        &self,
        kind: &'static str,
        decode: impl Fn(&Bytes) -> Result<T>,
    ) -> Result<BTreeMap<Key, T>> {
        let prefix = self.state_key(kind, b"")?;
        let skip = prefix.len();
        let mut out = BTreeMap::new();
        let mut entries = self.state.scan(KeyRange::prefix(prefix.into_bytes()), None);
        while let Some(entry) = entries.try_next().await? {
            let key = key_of(entry.key.to_bytes().slice(skip..))?;
            out.insert(key, decode(&entry.value)?);
        }
        Ok(out)
    }

    /// Runs one sync in `direction`; `on_progress` follows it.
    ///
    /// # Errors
    /// `Conflict` if the sync would delete more than `max_delete_percent` of a side's keys
    /// (nothing is changed then); `Corrupted` if the remote's log is damaged; errors of the
    /// stores, transient ones after five retries. Per-key failures are in the report.
    pub async fn run(
        &self,
        direction: Direction,
        options: &SyncOptions,
        on_progress: impl Fn(&SyncProgress) + Send + Sync,
    ) -> Result<SyncReport> {
        let started = Instant::now();
        let traffic = Traffic::default();
        let (generation, read) = self.refresh().await?;
        traffic.received.fetch_add(read, Ordering::Relaxed);
        if self.remote.packs_known_at.load(Ordering::Acquire) < generation {
            // Segments may name chunks in packs written since the index was loaded.
            self.remote.chunks.load_new_packs().await?;
            self.remote
                .packs_known_at
                .fetch_max(generation, Ordering::AcqRel);
        }
        let local: BTreeMap<Key, ObjectMeta> = self
            .local
            .scan_meta(KeyRange::all(), None)
            .map_ok(|e| (e.key, e.meta))
            .try_collect()
            .await?;
        let remote = self.state_map("r/", segment::decode_state).await?;
        let base = self
            .state_map("s/", |b| {
                let raw: [u8; 32] = b[..]
                    .try_into()
                    .map_err(|_| Error::corrupted("sync state: a base checksum is not 32 bytes"))?;
                Ok(Sha256Digest(raw))
            })
            .await?;

        let mut report = SyncReport {
            dry_run: options.dry_run,
            generation,
            ..SyncReport::default()
        };
        let mut uploads: Vec<Upload> = Vec::new();
        let mut downloads: Vec<(Key, Key)> = Vec::new(); // (remote key, local key)
        let mut local_deletes: Vec<Key> = Vec::new();
        let mut local_copies: Vec<(Key, Key)> = Vec::new(); // (from, to), before downloads
        let mut identical: Vec<(Key, Option<Sha256Digest>)> = Vec::new();
        let keys: std::collections::BTreeSet<&Key> = local
            .keys()
            .chain(remote.keys())
            .chain(base.keys())
            .collect();
        let remote_max = self.remote.kv.capabilities().max_key_len;
        for key in keys {
            let l = local.get(key).map(version_of);
            let r = remote_version(remote.get(key));
            let b = base.get(key).copied();
            let decision = decide(direction, options.policy, l, r, b);
            if key.len() > remote_max && decision.action != Action::Nothing {
                report.failed.push((
                    key.to_string(),
                    format!("key is longer than the remote's {remote_max}-byte limit"),
                ));
                continue;
            }
            let mut kept_as = None;
            match decision.action {
                Action::Nothing => {
                    if l.map(|v| v.checksum) != b || r.map(|v| v.checksum) != b {
                        report.pending += 1;
                    }
                }
                Action::RecordBase => identical.push((key.clone(), l.map(|v| v.checksum))),
                Action::Upload => match local.get(key) {
                    Some(meta) => uploads.push(Upload::Local {
                        key: key.clone(),
                        source: key.clone(),
                        meta: meta.clone(),
                    }),
                    None => uploads.push(Upload::Tombstone { key: key.clone() }),
                },
                Action::Download => match r {
                    Some(_) => downloads.push((key.clone(), key.clone())),
                    None => local_deletes.push(key.clone()),
                },
                Action::KeepBoth { winner } => {
                    let (Some(lv), Some(rv), Some(lmeta)) = (l, r, local.get(key)) else {
                        continue; // decide() keeps both only when both are present
                    };
                    match winner {
                        Side::Local => {
                            let copy = conflict_key(key, Side::Remote, rv.modified)?;
                            kept_as = Some(copy.to_string());
                            downloads.push((key.clone(), copy.clone()));
                            if let Some(state) = remote.get(key) {
                                uploads.push(Upload::Copy {
                                    key: copy,
                                    state: state.clone(),
                                });
                            }
                            uploads.push(Upload::Local {
                                key: key.clone(),
                                source: key.clone(),
                                meta: lmeta.clone(),
                            });
                        }
                        Side::Remote => {
                            let copy = conflict_key(key, Side::Local, lv.modified)?;
                            kept_as = Some(copy.to_string());
                            // The copy is made before the download replaces the key, and
                            // sent from where it is then.
                            local_copies.push((key.clone(), copy.clone()));
                            uploads.push(Upload::Local {
                                key: copy.clone(),
                                source: copy,
                                meta: lmeta.clone(),
                            });
                            downloads.push((key.clone(), key.clone()));
                        }
                    }
                }
            }
            if let Some(winner) = decision.conflict {
                report.conflicts.push(ConflictReport {
                    key: key.to_string(),
                    winner,
                    kept_as,
                    resolved: decision.action != Action::Nothing,
                });
            }
        }

        // The max-delete limit, per side, before anything changes.
        let remote_deletes = uploads
            .iter()
            .filter(|u| matches!(u, Upload::Tombstone { .. }))
            .count();
        let remote_live = remote.values().filter(|s| s.checksum().is_some()).count();
        check_max_delete("remote", remote_deletes, remote_live, options)?;
        check_max_delete("local", local_deletes.len(), local.len(), options)?;

        if options.dry_run {
            report.uploaded = (uploads.len() - remote_deletes) as u64;
            report.deleted_remote = remote_deletes as u64;
            report.downloaded = downloads.len() as u64;
            report.deleted_local = local_deletes.len() as u64;
            report.identical = identical.len() as u64;
            report.elapsed_ms = started.elapsed().as_millis() as u64;
            return Ok(report);
        }

        // Keep-both copies of local versions, before downloads replace them.
        // Owned, not borrowed, across the awaits: a borrowing iterator there makes the
        // future not provably `Send` for every lifetime (rust-lang/rust#102211), which a
        // caller spawning it needs.
        for (from, to) in local_copies {
            if let Some(value) = self.local.get(&from).await? {
                let meta = local.get(&from).cloned();
                let put = meta.map(|m| PutOptions::preserving(&m)).unwrap_or_default();
                self.local.put_with(&to, value, &put).await?;
                report.written_local.push(to);
            }
        }
        // Downloads and local deletions.
        self.download(
            &downloads,
            &remote,
            &mut report,
            &traffic,
            options,
            &on_progress,
        )
        .await?;
        for chunk in local_deletes.chunks(1000) {
            let mut batch = WriteBatch::new();
            let mut state = WriteBatch::new();
            for key in chunk {
                batch.delete(key.clone());
                state.delete(self.state_key("s/", key.as_bytes())?);
            }
            self.local.write_batch(batch).await?;
            self.state.write_batch(state).await?;
            report.deleted_local += chunk.len() as u64;
            report.deleted_local_keys.extend(chunk.iter().cloned());
        }
        // Uploads, group by group.
        let generation = self
            .upload(
                uploads,
                &remote,
                generation,
                &mut report,
                &traffic,
                options,
                &on_progress,
            )
            .await?;
        for chunk in identical.chunks(1000) {
            let mut state = WriteBatch::new();
            for (key, checksum) in chunk {
                let base = self.state_key("s/", key.as_bytes())?;
                match checksum {
                    Some(c) => state.put(base, Bytes::copy_from_slice(c.as_bytes())),
                    // Deleted on both sides: nothing left to remember.
                    None => state.delete(base),
                };
            }
            self.state.write_batch(state).await?;
        }
        report.identical = identical.len() as u64;
        let now = crate::object_kv::format::nanos(SystemTime::now());
        self.state
            .put(
                &self.state_key("last", b"")?,
                Bytes::copy_from_slice(&now.to_le_bytes()),
            )
            .await?;
        report.generation = generation;
        report.bytes_sent = traffic.sent.load(Ordering::Relaxed);
        report.bytes_received = traffic.received.load(Ordering::Relaxed);
        report.elapsed_ms = started.elapsed().as_millis() as u64;
        Ok(report)
    }

    /// Pending work and the last sync, from a dry-run two-way sync (conflicts counted in
    /// the direction the default policy would resolve them).
    ///
    /// # Errors
    /// As [`run`](Self::run).
    pub async fn status(&self) -> Result<SyncStatus> {
        let latency = self.remote.probe().await?;
        let options = SyncOptions::default()
            .with_dry_run(true)
            .with_max_delete(100, true);
        let report = self.run(Direction::Both, &options, |_| {}).await?;
        let last_sync = self
            .state_u64("last")
            .await?
            .map(|ns| UNIX_EPOCH + Duration::from_nanos(ns));
        Ok(SyncStatus {
            remote: self.remote.name.clone(),
            pending_uploads: report.uploaded + report.deleted_remote,
            pending_downloads: report.downloaded + report.deleted_local,
            conflicts: report.conflicts.len() as u64,
            last_sync,
            generation: report.generation,
            remote_latency_ms: latency.as_secs_f64() * 1000.0,
        })
    }

    /// Brings `downloads` (remote key → local key) into the local store, group by group.
    async fn download(
        &self,
        downloads: &[(Key, Key)],
        remote: &BTreeMap<Key, RemoteState>,
        report: &mut SyncReport,
        traffic: &Traffic,
        options: &SyncOptions,
        on_progress: &(impl Fn(&SyncProgress) + Send + Sync),
    ) -> Result<()> {
        let total = downloads.len() as u64;
        let mut done = 0u64;
        let mut pending = groups(downloads, options, |(from, _)| match remote.get(from) {
            Some(RemoteState::Value { meta, .. }) => meta.size,
            _ => 0,
        })
        .into_iter();
        // Pipelined: the next group's chunks are fetched while this group is written.
        let mut current = match pending.next() {
            Some(group) => Some(self.fetch_group(group, remote, traffic).await?),
            None => None,
        };
        while let Some(fetched) = current {
            let following = pending.next();
            let (written, prefetched) = futures::join!(
                self.write_group(fetched.values, fetched.chunks, options),
                async {
                    match following {
                        Some(group) => Some(self.fetch_group(group, remote, traffic).await),
                        None => None,
                    }
                }
            );
            report.failed.extend(fetched.failed);
            let mut state = WriteBatch::new();
            for (key, result) in written {
                match result {
                    Ok(checksum) => {
                        state.put(
                            self.state_key("s/", key.as_bytes())?,
                            Bytes::copy_from_slice(checksum.as_bytes()),
                        );
                        report.downloaded += 1;
                        report.written_local.push(key);
                    }
                    Err(e) if e.kind() == ErrorKind::Corrupted => {
                        report.failed.push((key.to_string(), e.to_string()));
                    }
                    Err(e) => return Err(e),
                }
            }
            if !state.is_empty() {
                self.state.write_batch(state).await?;
            }
            done += fetched.keys;
            on_progress(&SyncProgress {
                phase: "download",
                keys_done: done,
                keys_total: total,
                bytes_sent: traffic.sent.load(Ordering::Relaxed),
                bytes_received: traffic.received.load(Ordering::Relaxed),
            });
            current = prefetched.transpose()?;
        }
        Ok(())
    }

    /// The manifests of one group of downloads and every chunk they need, fetched by pack.
    async fn fetch_group(
        &self,
        group: &[(Key, Key)],
        remote: &BTreeMap<Key, RemoteState>,
        traffic: &Traffic,
    ) -> Result<FetchedGroup> {
        let mut fetched = FetchedGroup {
            keys: group.len() as u64,
            ..FetchedGroup::default()
        };
        let mut needed: HashSet<Sha256Digest> = HashSet::new();
        for (from, to) in group {
            let Some(RemoteState::Value { meta, manifest }) = remote.get(from) else {
                continue;
            };
            let manifest = match Manifest::decode(manifest) {
                Ok(m) => m,
                Err(e) => {
                    fetched.failed.push((from.to_string(), e.to_string()));
                    continue;
                }
            };
            if let Manifest::Chunked(list) = &manifest {
                needed.extend(list.chunks.iter().map(|(id, _)| *id));
            }
            fetched
                .values
                .push((from.clone(), to.clone(), meta.clone(), manifest));
        }
        fetched.chunks = Arc::new(self.fetch_chunks(needed, traffic).await?);
        Ok(fetched)
    }

    /// Assembles and writes the values of one fetched group; each local key's outcome.
    async fn write_group(
        &self,
        values: Vec<(Key, Key, ObjectMeta, Manifest)>,
        chunks: Arc<HashMap<Sha256Digest, Bytes>>,
        options: &SyncOptions,
    ) -> Vec<(Key, Result<Sha256Digest>)> {
        futures::stream::iter(values)
            .map(|(_, to, meta, manifest)| {
                let chunks = chunks.clone();
                let local = self.local.clone();
                async move {
                    let written = async {
                        // Copying chunks together and hashing the value: CPU work, off the
                        // async workers when it is large.
                        let len = manifest.value_len() as usize;
                        let value = hybridstore_core::raw::cpu_bound(len, move || {
                            assemble(&manifest, &chunks)
                        })
                        .await??;
                        local
                            .put_with(&to, value, &PutOptions::preserving(&meta))
                            .await?;
                        Ok(meta.checksum)
                    }
                    .await;
                    (to, written)
                }
                .boxed()
            })
            .buffer_unordered(options.concurrency)
            .collect()
            .await
    }

    /// The plaintext of every chunk in `ids`, read from the remote's packs: the blobs of
    /// one pack in ranges, neighbours less than 1 MiB apart read as one.
    async fn fetch_chunks(
        &self,
        ids: HashSet<Sha256Digest>,
        traffic: &Traffic,
    ) -> Result<HashMap<Sha256Digest, Bytes>> {
        const MERGE_GAP: u64 = 1 << 20;
        let mut by_pack: BTreeMap<Key, Vec<(u64, u64, u32, Sha256Digest)>> = BTreeMap::new();
        let mut out = HashMap::with_capacity(ids.len());
        for id in ids {
            match self.remote.chunks.blob_location(&id) {
                Some(loc) => by_pack.entry(loc.pack).or_default().push((
                    loc.range.start,
                    loc.range.end,
                    loc.raw_len,
                    id,
                )),
                // The assembler reports the keys that need it.
                None => continue,
            }
        }
        let mut reads = Vec::new();
        for (pack, mut blobs) in by_pack {
            blobs.sort_unstable_by_key(|b| b.0);
            let mut run: Vec<(u64, u64, u32, Sha256Digest)> = Vec::new();
            for blob in blobs {
                if let Some(last) = run.last()
                    && blob.0 > last.1 + MERGE_GAP
                {
                    reads.push((pack.clone(), std::mem::take(&mut run)));
                }
                run.push(blob);
            }
            if !run.is_empty() {
                reads.push((pack, run));
            }
        }
        let kv = self.remote.kv.clone();
        let decoded: Vec<Vec<(Sha256Digest, Bytes)>> = futures::stream::iter(reads)
            .map(|(pack, run)| {
                let kv = kv.clone();
                async move {
                    let start = run.first().map_or(0, |b| b.0);
                    let end = run.iter().map(|b| b.1).max().unwrap_or(start);
                    let bytes = (|| kv.get_range(&pack, start..end))
                        .retry(backoff())
                        .when(Error::is_retryable)
                        .await?
                        .ok_or_else(|| {
                            Error::corrupted(format!("pack {pack} is missing from the remote"))
                        })?;
                    traffic
                        .received
                        .fetch_add(bytes.len() as u64, Ordering::Relaxed);
                    hybridstore_core::raw::spawn_cpu(move || {
                        run.iter()
                            .map(|&(s, e, raw_len, id)| {
                                let blob = &bytes[(s - start) as usize..(e - start) as usize];
                                hybridstore_dedup::decode_blob(&id, raw_len, blob).map(|b| (id, b))
                            })
                            .collect::<Result<Vec<_>>>()
                    })
                    .await?
                }
            })
            .buffer_unordered(8)
            .try_collect()
            .await?;
        for run in decoded {
            out.extend(run);
        }
        Ok(out)
    }

    /// Sends `uploads` group by group: new chunks in packs, then one segment per group,
    /// then the local state. Returns the remote's generation after the last segment.
    #[allow(clippy::too_many_arguments)]
    async fn upload(
        &self,
        uploads: Vec<Upload>,
        remote: &BTreeMap<Key, RemoteState>,
        mut generation: u64,
        report: &mut SyncReport,
        traffic: &Traffic,
        options: &SyncOptions,
        on_progress: &(impl Fn(&SyncProgress) + Send + Sync),
    ) -> Result<u64> {
        let total = uploads.len() as u64;
        let mut done = 0u64;
        let size = |u: &Upload| match u {
            Upload::Local { meta, .. } => meta.size,
            _ => 0,
        };
        for group in groups(&uploads, options, size) {
            // Read, chunk and hash each local value; keep the chunks the remote lacks.
            // Each future boxed as `Send` where its lifetimes are concrete (see `run`'s
            // keep-both copies): callers may spawn a sync.
            let this = self;
            let prepared: Vec<Result<Option<Prepared>>> = futures::stream::iter(group.to_vec())
                .map(move |upload| async move { this.prepare(&upload, options).await }.boxed())
                .buffered(options.concurrency)
                .collect()
                .await;
            let mut entries: Vec<(Key, RemoteState)> = Vec::new();
            let mut new_chunks: Vec<(Sha256Digest, Bytes)> = Vec::new();
            let mut seen: HashSet<Sha256Digest> = HashSet::new();
            for (upload, p) in group.iter().zip(prepared) {
                match p {
                    Ok(Some((key, state, chunks))) => {
                        for (id, data) in chunks {
                            if seen.insert(id) {
                                new_chunks.push((id, data));
                            }
                        }
                        entries.push((key, state));
                    }
                    Ok(None) => {}
                    Err(e) if e.kind() == ErrorKind::Conflict => {
                        report
                            .failed
                            .push((upload.key().to_string(), e.message().to_string()));
                    }
                    Err(e) => return Err(e),
                }
            }
            // Data first: the packs.
            if !new_chunks.is_empty() {
                let before = self.remote.chunks.stats();
                let chunks = &self.remote.chunks;
                (|| chunks.store_chunks(&new_chunks))
                    .retry(backoff())
                    .when(Error::is_retryable)
                    .await?;
                let after = self.remote.chunks.stats();
                report.chunks_sent += new_chunks.len() as u64;
                report.packs_sent += after.packs.saturating_sub(before.packs);
                traffic.sent.fetch_add(
                    after.pack_bytes.saturating_sub(before.pack_bytes),
                    Ordering::Relaxed,
                );
            }
            // Then the commit point: the segment, as the next generation.
            let committed = self
                .commit_segment(entries, remote, &mut generation, report, traffic)
                .await?;
            // Then the local state.
            let mut state = WriteBatch::new();
            for (key, entry) in &committed {
                let mut encoded = BytesMut::new();
                segment::put_state(&mut encoded, entry);
                state.put(self.state_key("r/", key.as_bytes())?, encoded.freeze());
                let base = self.state_key("s/", key.as_bytes())?;
                match entry.checksum() {
                    Some(c) => {
                        state.put(base, Bytes::copy_from_slice(c.as_bytes()));
                        report.uploaded += 1;
                    }
                    None => {
                        state.delete(base);
                        report.deleted_remote += 1;
                    }
                }
            }
            state.put(
                self.state_key("gen", b"")?,
                Bytes::copy_from_slice(&generation.to_le_bytes()),
            );
            self.state.write_batch(state).await?;
            done += group.len() as u64;
            on_progress(&SyncProgress {
                phase: "upload",
                keys_done: done,
                keys_total: total,
                bytes_sent: traffic.sent.load(Ordering::Relaxed),
                bytes_received: traffic.received.load(Ordering::Relaxed),
            });
        }
        Ok(generation)
    }

    /// The segment entry for one upload and the chunks of it the remote lacks; `None`
    /// when there is nothing to send (the local key vanished since the scan).
    ///
    /// # Errors
    /// `Conflict` (with the key in the context) if the value changed since the scan.
    async fn prepare(&self, upload: &Upload, options: &SyncOptions) -> Result<Option<Prepared>> {
        let (key, source, meta) = match upload {
            Upload::Tombstone { key } => {
                let state = RemoteState::Tombstone {
                    deleted_at: SystemTime::now(),
                };
                return Ok(Some((key.clone(), state, Vec::new())));
            }
            Upload::Copy { key, state } => {
                return Ok(Some((key.clone(), state.clone(), Vec::new())));
            }
            Upload::Local { key, source, meta } => (key, source, meta.clone()),
        };
        let Some(value) = self.local.get(source).await? else {
            return Ok(None);
        };
        let chunker = options.chunker;
        let chunks = self.remote.chunks.clone();
        let prepared = hybridstore_core::raw::spawn_cpu(move || {
            let checksum = Sha256Digest::of(&value);
            if checksum != meta.checksum {
                return Err(Error::conflict(
                    "changed while being synced; the next sync sends it",
                ));
            }
            if value.len() <= INLINE_MAX {
                return Ok((
                    meta,
                    Bytes::from(Manifest::encode_inline(&value)),
                    Vec::new(),
                ));
            }
            let mut list = ChunkList {
                total_len: value.len() as u64,
                chunks: Vec::new(),
                checksum,
            };
            let mut missing = Vec::new();
            for (offset, len) in chunker.spans(&value) {
                let data = value.slice(offset..offset + len);
                let id = Sha256Digest::of(&data);
                list.chunks.push((id, len as u32));
                if chunks.blob_location(&id).is_none() {
                    missing.push((id, data));
                }
            }
            Ok((meta, Bytes::from(Manifest::encode_chunked(&list)), missing))
        })
        .await??;
        let (meta, manifest, missing) = prepared;
        Ok(Some((
            key.clone(),
            RemoteState::Value { meta, manifest },
            missing,
        )))
    }

    /// Writes `entries` as segment `generation + 1` with a conditional create. When another
    /// device wrote that generation first, folds its segments, drops the entries whose key
    /// it changed (reported as failed: a later sync resolves them) and tries the next one.
    /// Returns what was committed.
    async fn commit_segment(
        &self,
        mut entries: Vec<(Key, RemoteState)>,
        planned: &BTreeMap<Key, RemoteState>,
        generation: &mut u64,
        report: &mut SyncReport,
        traffic: &Traffic,
    ) -> Result<Vec<(Key, RemoteState)>> {
        for _attempt in 0..16 {
            if entries.is_empty() {
                return Ok(entries);
            }
            let key = log_key(*generation + 1)?;
            let encoded = segment::encode_segment(&entries);
            let len = encoded.len() as u64;
            let kv = &self.remote.kv;
            let write = || {
                let mut batch = WriteBatch::new();
                batch
                    .expect(key.clone(), Expect::Absent)
                    .put(key.clone(), encoded.clone());
                kv.write_batch(batch)
            };
            match write.retry(backoff()).when(Error::is_retryable).await {
                Ok(()) => {
                    *generation += 1;
                    report.segments_sent += 1;
                    traffic.sent.fetch_add(len, Ordering::Relaxed);
                    return Ok(entries);
                }
                Err(e) if e.kind() == ErrorKind::Conflict => {
                    // Another device pushed: fold what it wrote and keep only the entries
                    // whose key it left alone.
                    let (latest, read) = self.refresh().await?;
                    traffic.received.fetch_add(read, Ordering::Relaxed);
                    *generation = latest;
                    // Only this group's keys: read their entries, not the whole state.
                    let state_keys = entries
                        .iter()
                        .map(|(k, _)| self.state_key("r/", k.as_bytes()))
                        .collect::<Result<Vec<_>>>()?;
                    let now = self
                        .state
                        .get_many(&state_keys)
                        .await?
                        .iter()
                        .map(|v| v.as_ref().map(segment::decode_state).transpose())
                        .collect::<Result<Vec<_>>>()?;
                    let mut now = now.into_iter();
                    entries.retain(|(k, _)| {
                        let current = now.next().flatten();
                        let same = current.as_ref().map(RemoteState::checksum)
                            == planned.get(k).map(RemoteState::checksum);
                        if !same {
                            report.failed.push((
                                k.to_string(),
                                "changed on the remote by another device during this sync; \
                                 the next sync resolves it"
                                    .to_string(),
                            ));
                        }
                        same
                    });
                }
                Err(e) => return Err(e),
            }
        }
        Err(Error::new(
            ErrorKind::Unavailable,
            "other devices kept pushing; gave up after 16 attempts",
        )
        .with_retryable(true))
    }
}

/// Splits `items` into groups of at most `group_keys` items and about `group_bytes` bytes.
fn groups<'a, T>(items: &'a [T], options: &SyncOptions, size: impl Fn(&T) -> u64) -> Vec<&'a [T]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0u64);
    for (i, item) in items.iter().enumerate() {
        bytes += size(item);
        if i + 1 - start >= options.group_keys || bytes >= options.group_bytes {
            out.push(&items[start..=i]);
            start = i + 1;
            bytes = 0;
        }
    }
    if start < items.len() {
        out.push(&items[start..]);
    }
    out
}

/// The value a manifest describes, from its inline bytes or `chunks`.
fn assemble(manifest: &Manifest, chunks: &HashMap<Sha256Digest, Bytes>) -> Result<Bytes> {
    match manifest {
        Manifest::Inline(bytes) => Ok(bytes.clone()),
        Manifest::Chunked(list) => {
            let mut out = BytesMut::with_capacity(list.total_len as usize);
            for (id, _) in &list.chunks {
                let chunk = chunks.get(id).ok_or_else(|| {
                    Error::corrupted(format!("chunk {id} is missing from the remote's packs"))
                })?;
                out.extend_from_slice(chunk);
            }
            let value = out.freeze();
            if Sha256Digest::of(&value) != list.checksum {
                return Err(Error::corrupted("the remote's value fails its checksum"));
            }
            Ok(value)
        }
    }
}

fn check_max_delete(side: &str, deletes: usize, total: usize, options: &SyncOptions) -> Result<()> {
    if deletes == 0 || options.force {
        return Ok(());
    }
    let percent = deletes as f64 * 100.0 / total.max(1) as f64;
    if percent > f64::from(options.max_delete_percent) {
        return Err(Error::conflict(format!(
            "this sync would delete {deletes} of {total} {side} keys ({percent:.0}%), more than \
             the limit of {}%; nothing was changed. Check the other side, or pass --force",
            options.max_delete_percent
        )));
    }
    Ok(())
}
