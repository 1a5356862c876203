//! Re-reading and re-hashing every value of a store.

use futures::TryStreamExt;
use serde::Serialize;

use crate::error::{ErrorKind, Result};
use crate::key::{Key, KeyRange};
use crate::meta::Sha256Digest;
use crate::store::{KvStore, MetaEntry};

/// One value that failed verification.
#[derive(Clone, Debug, Serialize)]
pub struct Damage {
    /// The key, as [`Key`]'s `Display` prints it.
    pub key: String,
    /// The error kind (`corrupted` for a checksum mismatch).
    pub kind: &'static str,
    /// What was wrong.
    pub message: String,
}

/// The outcome of [`verify_store`].
#[derive(Clone, Debug, Default, Serialize)]
pub struct VerifyReport {
    /// Values read and re-hashed.
    pub checked_keys: u64,
    /// Bytes read and re-hashed.
    pub checked_bytes: u64,
    /// Every damaged value found (verification does not stop at the first): checksum or
    /// size mismatches and `Corrupted` reads.
    pub damaged: Vec<Damage>,
    /// Values that could not be read for a reason that says nothing about their bytes (a
    /// timeout, an unreachable backend, an engine error): not verified, not damaged.
    pub unverified: Vec<Damage>,
}

impl VerifyReport {
    /// Whether no value was found damaged (see [`is_complete`](Self::is_complete) for
    /// whether every value was checked).
    pub fn is_clean(&self) -> bool {
        self.damaged.is_empty()
    }

    /// Whether every listed value could be read and checked.
    pub fn is_complete(&self) -> bool {
        self.unverified.is_empty()
    }
}

/// Reads every value in `range`, re-hashes it with SHA-256 and compares it with the checksum
/// in its metadata, `concurrency` values at a time. Every damaged or unreadable value is
/// recorded and verification carries on, as restic's `check --read-data` does: `Corrupted`
/// reads and mismatches as [`VerifyReport::damaged`], other read errors (timeouts, an
/// unreachable backend) as [`VerifyReport::unverified`]. Values are read as streams
/// ([`KvStore::get_stream`]), so a large one is never whole in memory; hashing runs on the blocking pool
/// from 16 KiB ([`cpu_bound`](crate::raw::cpu_bound)).
/// `on_progress(keys, bytes)` is called after each value.
///
/// # Errors
/// Only a failure of the key listing itself; per-value failures go into the report.
pub async fn verify_store(
    store: &dyn KvStore,
    range: KeyRange,
    concurrency: usize,
    mut on_progress: impl FnMut(u64, u64) + Send,
) -> Result<VerifyReport> {
    let mut report = VerifyReport::default();
    let mut results = store
        .scan_meta(range, None)
        .map_ok(|entry| check_one(store, entry))
        .try_buffer_unordered(concurrency.max(1));
    while let Some((key, bytes, damage)) = results.try_next().await? {
        report.checked_keys += 1;
        report.checked_bytes += bytes;
        if let Some((kind, message)) = damage {
            let found = Damage {
                key: key.to_string(),
                kind: kind.as_str(),
                message,
            };
            if kind == ErrorKind::Corrupted {
                report.damaged.push(found);
            } else {
                report.unverified.push(found);
            }
        }
        on_progress(report.checked_keys, report.checked_bytes);
    }
    report.damaged.sort_by(|a, b| a.key.cmp(&b.key));
    report.unverified.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(report)
}

type CheckOutcome = (Key, u64, Option<(ErrorKind, String)>);

async fn check_one(store: &dyn KvStore, entry: MetaEntry) -> Result<CheckOutcome> {
    let MetaEntry { key, meta } = entry;
    let damage = match store.get_stream(&key, None).await {
        Ok(Some(stream)) => match rehash(stream).await {
            Err(e) => Some((e.kind(), e.to_string())),
            Ok((len, _)) if len != meta.size => Some((
                ErrorKind::Corrupted,
                format!("size is {len} bytes, metadata says {}", meta.size),
            )),
            Ok((_, actual)) if actual != meta.checksum => Some((
                ErrorKind::Corrupted,
                format!("SHA-256 is {actual}, metadata says {}", meta.checksum),
            )),
            Ok(_) => None,
        },
        // Deleted between listing and reading: not damage.
        Ok(None) => None,
        Err(e) => Some((e.kind(), e.to_string())),
    };
    Ok((key, meta.size, damage))
}

/// The length and SHA-256 of the bytes a value stream yields, hashed piece by piece (a
/// large value is never whole in memory) on the blocking pool for pieces from 16 KiB
/// ([`cpu_bound`](crate::raw::cpu_bound)).
async fn rehash(stream: crate::ValueStream<'_>) -> Result<(u64, Sha256Digest)> {
    use futures::StreamExt;
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    let mut len = 0u64;
    let mut body = stream.body;
    while let Some(piece) = body.next().await {
        let piece = piece?;
        len += piece.len() as u64;
        hasher = crate::raw::cpu_bound(piece.len(), move || {
            hasher.update(&piece);
            hasher
        })
        .await?;
    }
    Ok((len, Sha256Digest(hasher.finalize().into())))
}
