//! Forget (apply a retention policy to snapshot records) and prune (remove the packs no
//! snapshot needs), under an exclusive repository lock.
//!
//! **Prune is two-phase**, as rustic's (`--keep-delete`): a prune never deletes a pack it
//! has just found unused. It first copies the chunks still used out of packs that are
//! mostly unused, then *marks* the unused packs (`prune/pending`, with the time). A backup
//! that opens the repository after the mark no longer sees marked packs, so it stores such
//! chunks again instead of relying on them. A later prune, once the grace period has passed
//! since the mark, deletes a marked pack only if no snapshot uses a chunk found only in it;
//! otherwise it takes the mark back. So a backup that loaded its index before a prune and
//! finished after it (it holds a shared lock, which keeps prunes out, unless its lock went
//! stale) never loses a chunk it relies on as long as it is shorter than the grace period.
//! Packs younger than the grace period are never marked: they may hold the chunks of a
//! backup whose snapshot is not written yet.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hybridstore_core::{Key, Result};
use hybridstore_dedup::ChunkId;
use serde::Serialize;

use crate::policy::{PolicyDecision, PolicySnapshot, RetentionPolicy, apply_policy};
use crate::repo::{Pending, Repository, read_pending, write_pending};
use crate::restore::read_tree;

/// What forget decided for one group of snapshots (same host and source).
#[derive(Clone, Debug, Serialize)]
pub struct ForgetGroup {
    /// The host.
    pub host: String,
    /// The source (data directory).
    pub source: String,
    /// Kept (with reasons) and removed, newest first.
    pub decision: PolicyDecision,
}

/// What [`forget`] did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ForgetReport {
    /// Each group's decision.
    pub groups: Vec<ForgetGroup>,
    /// Snapshot records removed (none in a dry run).
    pub removed: u64,
    /// Whether this was a dry run.
    pub dry_run: bool,
}

/// Applies `policy` to each group of snapshots with the same host and source (restic's
/// default `--group-by host,paths`) and removes the snapshot records it does not keep,
/// unless `dry_run`. Chunks stay until [`prune`].
///
/// # Errors
/// `InvalidInput` for an empty policy; `Corrupted` if a snapshot record is damaged (nothing
/// is removed then: which group it belongs to is unknown); `Locked` if another process
/// works on the repository; errors of the store.
pub async fn forget(
    repo: &Repository,
    policy: &RetentionPolicy,
    dry_run: bool,
) -> Result<ForgetReport> {
    // An empty policy is refused before anything is locked or read.
    policy.check()?;
    let lock = repo.lock(true).await?;
    let result = forget_locked(repo, policy, dry_run).await;
    lock.release().await?;
    result
}

async fn forget_locked(
    repo: &Repository,
    policy: &RetentionPolicy,
    dry_run: bool,
) -> Result<ForgetReport> {
    let mut groups: BTreeMap<(String, String), Vec<PolicySnapshot>> = BTreeMap::new();
    for (id, snapshot) in repo.snapshots().await? {
        let snapshot = snapshot?;
        groups
            .entry((snapshot.host.clone(), snapshot.source.clone()))
            .or_default()
            .push(PolicySnapshot {
                time: snapshot.parsed_time()?,
                id,
                tags: snapshot.tags,
            });
    }
    let now = chrono::Local::now().fixed_offset();
    let mut report = ForgetReport {
        dry_run,
        ..ForgetReport::default()
    };
    for ((host, source), list) in groups {
        let decision = apply_policy(&list, policy, now)?;
        if !dry_run {
            for id in &decision.remove {
                repo.delete_snapshot(id).await?;
                report.removed += 1;
            }
        }
        report.groups.push(ForgetGroup {
            host,
            source,
            decision,
        });
    }
    Ok(report)
}

/// Options of [`prune`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct PruneOptions {
    /// How long a pack stays marked before it is deleted, and how old a pack must be before
    /// it is marked (default one hour, as the dedup layer's garbage collection). Zero
    /// deletes unused packs at once.
    pub grace: Duration,
    /// A pack with at least this share of unused bytes, in percent, has its used chunks
    /// copied into a new pack and is marked (default 10, as the dedup layer and borg's
    /// `compact --threshold`); a pack with no used chunk is marked whatever this says.
    pub max_unused_percent: u8,
    /// Decide and report, change nothing.
    pub dry_run: bool,
}

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions {
            grace: Duration::from_secs(3600),
            max_unused_percent: 10,
            dry_run: false,
        }
    }
}

impl PruneOptions {
    /// Options with the given grace period.
    pub fn with_grace(grace: Duration) -> Self {
        PruneOptions {
            grace,
            ..PruneOptions::default()
        }
    }
    /// Sets `dry_run`.
    pub fn with_dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }
}

/// What [`prune`] did (or would do, in a dry run).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PruneReport {
    /// Snapshots whose chunks were counted as used.
    pub snapshots: u64,
    /// Distinct chunks they use.
    pub used_chunks: u64,
    /// Packs in the repository.
    pub packs: u64,
    /// Packs younger than the grace period, left alone.
    pub packs_in_grace: u64,
    /// Packs whose used chunks were copied into new packs.
    pub packs_repacked: u64,
    /// Chunks copied.
    pub chunks_copied: u64,
    /// Packs marked for deletion by this prune.
    pub packs_marked: u64,
    /// Marked packs deleted.
    pub packs_deleted: u64,
    /// Bytes of the packs deleted.
    pub bytes_deleted: u64,
    /// Marked packs a snapshot needed again, unmarked.
    pub packs_recovered: u64,
    /// Packs still marked, waiting for their grace period.
    pub packs_waiting: u64,
    /// Whether this was a dry run.
    pub dry_run: bool,
}

fn unix(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Removes what no snapshot needs, in two phases (see the module docs), under an exclusive
/// lock.
///
/// # Errors
/// `Corrupted` if a snapshot record or key tree cannot be read (nothing is marked or deleted
/// then: what it uses is unknown); `Locked` if another process works on the repository;
/// errors of reading and writing packs (what was done so far stands and is safe).
pub async fn prune(repo: &Repository, options: &PruneOptions) -> Result<PruneReport> {
    let lock = repo.lock(true).await?;
    let result = prune_locked(repo, options).await;
    lock.release().await?;
    result
}

async fn prune_locked(repo: &Repository, options: &PruneOptions) -> Result<PruneReport> {
    let mut report = PruneReport {
        dry_run: options.dry_run,
        ..PruneReport::default()
    };
    // Used: every chunk any snapshot names.
    let mut used: HashSet<ChunkId> = HashSet::new();
    for (id, snapshot) in repo.snapshots().await? {
        let snapshot = snapshot.map_err(|e| e.with_context("snapshot", &id))?;
        report.snapshots += 1;
        for item in &snapshot.items {
            used.extend(item.chunks.iter().map(|(c, _)| *c));
        }
        for entry in read_tree(repo, &snapshot)
            .await
            .map_err(|e| e.with_context("snapshot", &id))?
        {
            used.extend(entry.chunks.iter().map(|(c, _)| *c));
        }
    }
    report.used_chunks = used.len() as u64;

    let now = SystemTime::now();
    let cutoff = unix(now).saturating_sub(options.grace.as_secs());
    let mut pending: Pending = read_pending(repo.store().as_ref()).await?;
    let packs = repo.chunks().pack_summaries();
    report.packs = packs.len() as u64;
    // Where each used chunk can be found outside marked packs.
    let mut held_unmarked: HashSet<ChunkId> = HashSet::new();
    for pack in &packs {
        let name = pack.key.as_str().unwrap_or_default();
        if !pending.packs.contains_key(name) {
            held_unmarked.extend(pack.chunks.iter().map(|(id, _, _)| *id));
        }
    }

    let was_pending: HashSet<String> = pending.packs.keys().cloned().collect();
    let mut deleted: HashSet<Key> = HashSet::new();
    // Phase two: marked packs whose grace has passed.
    let by_name: HashMap<&str, &hybridstore_dedup::PackSummary> = packs
        .iter()
        .filter_map(|p| p.key.as_str().map(|k| (k, p)))
        .collect();
    let mut still_pending = BTreeMap::new();
    for (name, marked) in std::mem::take(&mut pending.packs) {
        let Some(pack) = by_name.get(name.as_str()) else {
            continue; // already gone
        };
        let needed = pack
            .chunks
            .iter()
            .any(|(id, _, _)| used.contains(id) && !held_unmarked.contains(id));
        if needed {
            report.packs_recovered += 1;
            held_unmarked.extend(pack.chunks.iter().map(|(id, _, _)| *id));
            continue;
        }
        if marked > cutoff && !options.grace.is_zero() {
            report.packs_waiting += 1;
            still_pending.insert(name, marked);
            continue;
        }
        report.packs_deleted += 1;
        report.bytes_deleted += pack.len;
        if !options.dry_run {
            repo.store().delete(&pack.key).await?;
            deleted.insert(pack.key.clone());
        }
    }
    pending.packs = still_pending;

    // Phase one: unmarked packs past the grace period with unused chunks.
    let mut newly_marked = Vec::new();
    for pack in &packs {
        let name = pack.key.as_str().unwrap_or_default().to_string();
        if was_pending.contains(&name) {
            continue; // handled above: deleted, recovered or still waiting
        }
        if unix(pack.created) > cutoff && !options.grace.is_zero() {
            report.packs_in_grace += 1;
            continue;
        }
        let total: u64 = pack.chunks.iter().map(|(_, _, b)| u64::from(*b)).sum();
        let unused: u64 = pack
            .chunks
            .iter()
            .filter(|(id, _, _)| !used.contains(id))
            .map(|(_, _, b)| u64::from(*b))
            .sum();
        if unused == 0 {
            continue;
        }
        let live: HashSet<ChunkId> = pack
            .chunks
            .iter()
            .map(|(id, _, _)| *id)
            .filter(|id| used.contains(id))
            .collect();
        if !live.is_empty() {
            if unused * 100 < total * u64::from(options.max_unused_percent) {
                continue;
            }
            report.packs_repacked += 1;
            if options.dry_run {
                report.chunks_copied += live.len() as u64;
            } else {
                report.chunks_copied += repo.chunks().copy_out(&pack.key, &live).await?;
            }
        }
        report.packs_marked += 1;
        newly_marked.push((name, pack.key.clone(), pack.len));
    }
    if options.grace.is_zero() {
        // No grace: what would be marked goes at once (the exclusive lock keeps backups out).
        let mut gone = Vec::new();
        for (_, key, len) in &newly_marked {
            report.packs_deleted += 1;
            report.bytes_deleted += len;
            if !options.dry_run {
                gone.push(key.clone());
            }
        }
        for key in gone {
            repo.store().delete(&key).await?;
            deleted.insert(key);
        }
    } else {
        for (name, _, _) in newly_marked {
            pending.packs.insert(name, unix(now));
        }
    }
    report.packs_waiting = pending.packs.len() as u64;
    if !options.dry_run {
        // The copies above are durable (copy_out waits), so the marks can be written.
        write_pending(repo.store().as_ref(), &pending).await?;
        let mut gone: HashSet<Key> = pending
            .packs
            .keys()
            .filter_map(|k| Key::new(k.clone()).ok())
            .collect();
        gone.extend(deleted);
        repo.chunks().forget_packs(&gone);
    }
    tracing::info!(?report, "prune finished");
    Ok(report)
}
