//! Garbage collection: mark from the manifests, sweep what nothing references.

use std::collections::HashSet;
use std::time::{Duration, Instant, SystemTime};

use futures::TryStreamExt;
use hybridstore_core::{KeyRange, KvStore, Result};
use serde::Serialize;

use crate::chunk::ChunkId;
use crate::manifest::Manifest;
use crate::store::DedupStore;

/// Options of [`DedupStore::collect_garbage`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct GcOptions {
    /// Packs younger than this are never swept (default one hour), so chunks written for a
    /// manifest that is not committed yet (by a writer in another process, or before a crash
    /// that the writer will retry after) survive; git's `gc.pruneExpire` protects new loose
    /// objects the same way.
    pub grace: Duration,
    /// A pack with at least this share of unreferenced bytes, in percent, is rewritten with
    /// only its live chunks (default 10, borg's `compact --threshold`); a pack with no live
    /// chunk is deleted whatever this says.
    pub max_unused_percent: u8,
}

impl Default for GcOptions {
    fn default() -> Self {
        GcOptions {
            grace: Duration::from_secs(3600),
            max_unused_percent: 10,
        }
    }
}

impl GcOptions {
    /// Options with the given grace period and the default threshold.
    pub fn with_grace(grace: Duration) -> Self {
        GcOptions {
            grace,
            ..GcOptions::default()
        }
    }
}

/// What a garbage collection did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct GcReport {
    /// Manifests read in the mark phase.
    pub manifests: u64,
    /// Distinct chunks they reference.
    pub live_chunks: u64,
    /// Packs that existed when the collection began.
    pub packs_examined: u64,
    /// Packs left alone because they are younger than the grace period.
    pub packs_in_grace: u64,
    /// Packs deleted because nothing in them was live.
    pub packs_deleted: u64,
    /// Packs rewritten with their live chunks only.
    pub packs_rewritten: u64,
    /// Chunks removed from the store.
    pub chunks_removed: u64,
    /// Pack bytes deleted minus pack bytes written.
    pub bytes_freed: u64,
    /// Wall time in milliseconds.
    pub elapsed_ms: u64,
}

impl<S: KvStore> DedupStore<S> {
    /// Reclaims chunks no manifest references, safely while other tasks write (see the
    /// `chunk_store` module docs for the protocol) and after a crash at any point (a pack is
    /// deleted only after the copies of its live chunks are durable; a crash in between
    /// leaves duplicates, which the next collection removes).
    ///
    /// One collection runs at a time per store; a second call waits for the first.
    ///
    /// # Errors
    /// Errors of scanning the manifests, and `Corrupted` if a manifest does not decode: the
    /// collection then deletes nothing, since it cannot know what that manifest referenced.
    /// Errors of reading or writing packs stop the collection; what it did so far stands.
    pub async fn collect_garbage(&self, options: &GcOptions) -> Result<GcReport> {
        let _one_at_a_time = self.gc_lock().lock().await;
        let started = Instant::now();
        let chunks = self.chunk_store();
        let packs = chunks.begin_collection().await;
        let result = self.mark_and_sweep(packs, options).await;
        chunks.end_collection();
        let mut report = result?;
        report.elapsed_ms = started.elapsed().as_millis() as u64;
        tracing::info!(?report, "garbage collection finished");
        Ok(report)
    }

    async fn mark_and_sweep(&self, packs: Vec<u32>, options: &GcOptions) -> Result<GcReport> {
        let mut report = GcReport {
            packs_examined: packs.len() as u64,
            ..GcReport::default()
        };
        // Mark.
        let mut live: HashSet<ChunkId> = HashSet::new();
        let mut manifests = self.inner().scan(KeyRange::all(), None);
        while let Some(entry) = manifests.try_next().await? {
            let manifest = Manifest::decode(&entry.value).map_err(|e| {
                e.with_operation("collect_garbage")
                    .with_context("key", &entry.key)
            })?;
            report.manifests += 1;
            if let Manifest::Chunked(list) = manifest {
                live.extend(list.chunks.iter().map(|(id, _)| *id));
            }
        }
        drop(manifests);
        report.live_chunks = live.len() as u64;

        // Sweep.
        let chunks = self.chunk_store();
        let cutoff = SystemTime::now()
            .checked_sub(options.grace)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        for number in packs {
            let Some(pack) = chunks.classify_pack(number, &live) else {
                continue;
            };
            if pack.created > cutoff {
                report.packs_in_grace += 1;
                continue;
            }
            if pack.dead.is_empty() {
                continue;
            }
            if pack.live.is_empty() {
                if let Some(key) = chunks.retire_pack(number, &live) {
                    chunks.backend().delete(&key).await?;
                    report.packs_deleted += 1;
                    report.chunks_removed += pack.dead.len() as u64;
                    report.bytes_freed += pack.pack_bytes;
                }
                continue;
            }
            let dead_bytes: u64 = pack.dead.iter().map(|e| u64::from(e.blob_len)).sum();
            if dead_bytes * 100 < pack.pack_bytes * u64::from(options.max_unused_percent) {
                continue;
            }
            let mut copies = Vec::with_capacity(pack.live.len());
            let mut written = crate::pack::FOOTER_LEN as u64;
            for entry in &pack.live {
                let blob = chunks.read_blob(&pack.key, entry).await.map_err(|e| {
                    e.with_operation("collect_garbage")
                        .with_context("pack", &pack.key)
                })?;
                written += blob.len() as u64 + crate::pack::ENTRY_LEN as u64;
                copies.push((*entry, blob));
            }
            chunks.write_copies(number, copies).await?;
            if let Some(key) = chunks.retire_pack(number, &live) {
                chunks.backend().delete(&key).await?;
                report.packs_rewritten += 1;
                report.chunks_removed += pack.dead.len() as u64;
                report.bytes_freed += pack.pack_bytes.saturating_sub(written);
            }
        }
        Ok(report)
    }
}
