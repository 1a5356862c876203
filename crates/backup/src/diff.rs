//! What changed between two snapshots: keys added, removed and changed (by SHA-256 or
//! metadata), and files added, removed and changed.

use std::collections::BTreeMap;

use hybridstore_core::Result;
use serde::Serialize;

use crate::record::{ItemKind, Snapshot};
use crate::repo::Repository;
use crate::restore::read_tree;

/// What [`diff`] found, each list in name order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DiffReport {
    /// Keys only in the second snapshot.
    pub keys_added: Vec<String>,
    /// Keys only in the first.
    pub keys_removed: Vec<String>,
    /// Keys in both whose value (SHA-256) differs.
    pub keys_changed: Vec<String>,
    /// Keys in both with the same value whose content type or times differ.
    pub keys_touched: Vec<String>,
    /// Files only in the second snapshot.
    pub files_added: Vec<String>,
    /// Files only in the first.
    pub files_removed: Vec<String>,
    /// Files in both whose bytes differ.
    pub files_changed: Vec<String>,
    /// Value bytes of the keys added and changed, as of the second snapshot.
    pub bytes_added: u64,
    /// Value bytes of the keys removed and changed, as of the first.
    pub bytes_removed: u64,
}

/// Compares snapshot `a` (older) with `b` (newer).
///
/// # Errors
/// `Corrupted` if a key tree cannot be read.
pub async fn diff(repo: &Repository, a: &Snapshot, b: &Snapshot) -> Result<DiffReport> {
    let mut report = DiffReport::default();
    let old: BTreeMap<String, _> = read_tree(repo, a)
        .await?
        .into_iter()
        .map(|e| (e.key.clone(), e))
        .collect();
    let new: BTreeMap<String, _> = read_tree(repo, b)
        .await?
        .into_iter()
        .map(|e| (e.key.clone(), e))
        .collect();
    for (key, entry) in &new {
        match old.get(key) {
            None => {
                report.bytes_added += entry.size;
                report.keys_added.push(entry.display_key());
            }
            Some(before) if before.sha256 != entry.sha256 => {
                report.bytes_added += entry.size;
                report.bytes_removed += before.size;
                report.keys_changed.push(entry.display_key());
            }
            Some(before) => {
                if before.content_type != entry.content_type
                    || before.created_ns != entry.created_ns
                    || before.modified_ns != entry.modified_ns
                {
                    report.keys_touched.push(entry.display_key());
                }
            }
        }
    }
    for (key, entry) in &old {
        if !new.contains_key(key) {
            report.bytes_removed += entry.size;
            report.keys_removed.push(entry.display_key());
        }
    }
    let files = |s: &Snapshot| -> BTreeMap<String, _> {
        s.items
            .iter()
            .filter(|i| i.kind == ItemKind::File)
            .map(|i| (i.name.clone(), i.sha256))
            .collect()
    };
    let (old_files, new_files) = (files(a), files(b));
    for (name, sha) in &new_files {
        match old_files.get(name) {
            None => report.files_added.push(name.clone()),
            Some(before) if before != sha => report.files_changed.push(name.clone()),
            Some(_) => {}
        }
    }
    for name in old_files.keys() {
        if !new_files.contains_key(name) {
            report.files_removed.push(name.clone());
        }
    }
    Ok(report)
}
