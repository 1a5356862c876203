//! Checking a repository: its structure always, its data on request. Every problem is
//! collected and named by snapshot and item (a key or a file), none stops the check.

use std::collections::HashMap;

use hybridstore_core::Result;
use hybridstore_dedup::ChunkId;
use rand::seq::SliceRandom;
use serde::Serialize;

use crate::record::{ItemKind, SnapshotId};
use crate::repo::Repository;
use crate::restore::read_tree;

/// How much data a verify reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub enum ReadData {
    /// Structure only: every snapshot record, key tree and chunk reference.
    #[default]
    None,
    /// Every pack, re-read and every chunk re-hashed (`--read-data`).
    All,
    /// A random share of the packs, in percent, 0 < p <= 100 (`--read-data-subset 10%`).
    Subset(f64),
}

/// One problem a verify found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VerifyProblem {
    /// The snapshot it affects, if it is one's.
    pub snapshot: Option<SnapshotId>,
    /// The item (`keys`, a key as `keys:<key>`, or a file name), if it is one's.
    pub item: Option<String>,
    /// The pack, if the problem is in one.
    pub pack: Option<String>,
    /// What is wrong.
    pub message: String,
}

/// What a verify checked and found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Snapshot records read.
    pub snapshots: u64,
    /// Items (key trees and files) checked.
    pub items: u64,
    /// Keys in the key trees.
    pub keys: u64,
    /// Distinct chunks referenced.
    pub chunks: u64,
    /// Packs in the repository.
    pub packs: u64,
    /// Packs read and re-hashed.
    pub packs_read: u64,
    /// Chunks re-hashed.
    pub chunks_read: u64,
    /// Every problem found; empty when the repository is sound.
    pub problems: Vec<VerifyProblem>,
}

impl VerifyReport {
    /// Whether no problem was found.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Who refers to a chunk: the first snapshot and item seen, and how many more.
#[derive(Clone, Debug)]
struct Referrer {
    snapshot: SnapshotId,
    item: String,
    others: u64,
}

fn problem(
    snapshot: Option<&str>,
    item: Option<&str>,
    pack: Option<&str>,
    message: impl Into<String>,
) -> VerifyProblem {
    VerifyProblem {
        snapshot: snapshot.map(str::to_string),
        item: item.map(str::to_string),
        pack: pack.map(str::to_string),
        message: message.into(),
    }
}

/// Verifies `repo` (see [`ReadData`] for how much is read); `on_progress(done, total)` is
/// called per snapshot in the structure phase and per pack in the data phase.
///
/// Structure: every snapshot record hashes to its id and parses; every item's chunks add up
/// to its size and are in the index with the recorded lengths; every key tree reads back,
/// matches its SHA-256 and parses, and each key's chunks are indexed with the right
/// lengths; packs whose index could not be read are named. Data: each pack chosen is read
/// whole, its index checked and each chunk decoded and hashed; each damaged chunk is named
/// with the snapshots and items that use it.
///
/// # Errors
/// Errors of listing the repository. Problems in its content are in the report.
pub async fn verify(
    repo: &Repository,
    read_data: ReadData,
    on_progress: &(dyn Fn(u64, u64) + Send + Sync),
) -> Result<VerifyReport> {
    let mut report = VerifyReport::default();
    for (pack, why) in &repo.chunks().open_report().damaged_packs {
        report.problems.push(problem(
            None,
            None,
            Some(pack),
            format!("the pack's index cannot be read: {why}"),
        ));
    }
    let mut referrers: HashMap<ChunkId, Referrer> = HashMap::new();
    let mut refer = |id: ChunkId, snapshot: &str, item: &str| {
        referrers
            .entry(id)
            .and_modify(|r| r.others += 1)
            .or_insert_with(|| Referrer {
                snapshot: snapshot.to_string(),
                item: item.to_string(),
                others: 0,
            });
    };
    let chunks = repo.chunks();
    let check_chunks =
        |list: &[(ChunkId, u32)], problems: &mut Vec<VerifyProblem>, s: &str, item: &str| {
            for (id, len) in list {
                match chunks.blob_location(id) {
                    None => problems.push(problem(
                        Some(s),
                        Some(item),
                        None,
                        format!("chunk {id} is missing from the repository"),
                    )),
                    Some(loc) if loc.raw_len != *len => problems.push(problem(
                        Some(s),
                        Some(item),
                        Some(loc.pack.as_str().unwrap_or("?")),
                        format!(
                            "chunk {id} is {} bytes in its pack, {len} in the snapshot",
                            loc.raw_len
                        ),
                    )),
                    Some(_) => {}
                }
            }
        };

    let snapshots = repo.snapshots().await?;
    let total = snapshots.len() as u64;
    for (done, (id, snapshot)) in snapshots.into_iter().enumerate() {
        on_progress(done as u64, total);
        let snapshot = match snapshot {
            Ok(s) => s,
            Err(e) => {
                report
                    .problems
                    .push(problem(Some(&id), None, None, e.to_string()));
                continue;
            }
        };
        report.snapshots += 1;
        for item in &snapshot.items {
            report.items += 1;
            let sum: u64 = item.chunks.iter().map(|(_, n)| u64::from(*n)).sum();
            if sum != item.size {
                report.problems.push(problem(
                    Some(&id),
                    Some(&item.name),
                    None,
                    format!("chunks add up to {sum} bytes, the item has {}", item.size),
                ));
            }
            check_chunks(&item.chunks, &mut report.problems, &id, &item.name);
            for (chunk, _) in &item.chunks {
                refer(*chunk, &id, &item.name);
            }
        }
        if snapshot
            .keys_item()
            .is_some_and(|i| i.kind == ItemKind::Keys)
        {
            match read_tree(repo, &snapshot).await {
                Err(e) => report.problems.push(problem(
                    Some(&id),
                    Some(crate::create::KEYS_ITEM),
                    None,
                    format!("the key tree cannot be read: {e}"),
                )),
                Ok(tree) => {
                    report.keys += tree.len() as u64;
                    for entry in &tree {
                        let name = format!("keys:{}", entry.display_key());
                        check_chunks(&entry.chunks, &mut report.problems, &id, &name);
                        for (chunk, _) in &entry.chunks {
                            refer(*chunk, &id, &name);
                        }
                    }
                }
            }
        }
    }
    on_progress(total, total);
    report.chunks = referrers.len() as u64;

    let mut packs = chunks.pack_summaries();
    report.packs = packs.len() as u64;
    packs.sort_by(|a, b| a.key.cmp(&b.key));
    let chosen: Vec<_> = match read_data {
        ReadData::None => Vec::new(),
        ReadData::All => packs,
        ReadData::Subset(percent) => {
            let share = percent.clamp(0.0, 100.0) / 100.0;
            let n = ((packs.len() as f64) * share).ceil() as usize;
            let mut packs = packs;
            packs.shuffle(&mut rand::rng());
            packs.truncate(n.min(packs.len()));
            packs
        }
    };
    let total = chosen.len() as u64;
    for (done, pack) in chosen.into_iter().enumerate() {
        on_progress(done as u64, total);
        let name = pack.key.as_str().unwrap_or("?").to_string();
        match chunks.check_pack(&pack.key).await {
            Err(e) => report.problems.push(problem(
                None,
                None,
                Some(&name),
                format!("the pack cannot be read: {e}"),
            )),
            Ok(check) => {
                report.packs_read += 1;
                report.chunks_read += check.good + check.bad.len() as u64;
                for (id, why) in check.bad {
                    match referrers.get(&id) {
                        Some(r) => report.problems.push(problem(
                            Some(&r.snapshot),
                            Some(&r.item),
                            Some(&name),
                            if r.others > 0 {
                                format!("{why} (used by {} more items)", r.others)
                            } else {
                                why
                            },
                        )),
                        None => report.problems.push(problem(
                            None,
                            None,
                            Some(&name),
                            format!("{why} (no snapshot uses it)"),
                        )),
                    }
                }
            }
        }
    }
    on_progress(total, total);
    Ok(report)
}
