//! Pack-level access for tools that manage a chunk store from outside the dedup layer (the
//! backup repository's prune and verify): what each pack holds, dropping packs from the
//! index, copying chosen chunks out of a pack, and re-reading a pack whole.

use super::*;

/// One durable pack as the index knows it: see [`ChunkStore::pack_summaries`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackSummary {
    /// The pack's key in the chunk store's backend.
    pub key: Key,
    /// Length of the pack, in bytes.
    pub len: u64,
    /// When the backend created the pack.
    pub created: SystemTime,
    /// Every chunk in the pack: id, plaintext length and blob length in bytes, in pack
    /// order. A chunk also stored in another pack is listed in both.
    pub chunks: Vec<(ChunkId, u32, u32)>,
}

/// What [`ChunkStore::check_pack`] found in one pack.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PackCheck {
    /// Chunks that decoded to their id.
    pub good: u64,
    /// Chunks that did not, with the reason.
    pub bad: Vec<(ChunkId, String)>,
}

impl ChunkStore {
    /// Every durable pack in the index, in no particular order.
    pub fn pack_summaries(&self) -> Vec<PackSummary> {
        let state = self.state();
        state
            .packs
            .values()
            .map(|p| PackSummary {
                key: p.key.clone(),
                len: p.len,
                created: p.created,
                chunks: p
                    .entries
                    .iter()
                    .map(|e| (e.id, e.raw_len, e.blob_len))
                    .collect(),
            })
            .collect()
    }

    /// Drops the packs named in `keys` from this process's index, as if they did not exist:
    /// their chunks read as missing unless another pack holds them, and a chunk stored after
    /// this is written again instead of being found there. The packs themselves are not
    /// touched. Returns how many packs were dropped.
    pub fn forget_packs(&self, keys: &HashSet<Key>) -> u64 {
        let mut state = self.state();
        let state = &mut *state;
        let numbers: Vec<u32> = state
            .packs
            .iter()
            .filter(|(_, p)| keys.contains(&p.key))
            .map(|(n, _)| *n)
            .collect();
        for number in &numbers {
            if let Some(info) = state.packs.remove(number) {
                for e in &info.entries {
                    if matches!(state.index.get(&e.id), Some(Slot::Durable { pack, .. }) if pack == number)
                    {
                        state.index.remove(&e.id);
                    }
                }
            }
        }
        // A chunk the dropped packs shared with a pack still known is indexed again there.
        let known: Vec<u32> = state.packs.keys().copied().collect();
        for number in known {
            let Some(info) = state.packs.get(&number) else {
                continue;
            };
            for (i, e) in info.entries.iter().enumerate() {
                state.index.entry(e.id).or_insert(Slot::Durable {
                    pack: number,
                    entry: i as u32,
                });
            }
        }
        numbers.len() as u64
    }

    /// Copies the chunks of pack `key` that `keep` names into a new durable pack and points
    /// the index at the copies; the old pack is left in place (its caller deletes it later,
    /// once nothing can still be reading it). Each blob is checked against its id before it
    /// is copied. Returns the number of chunks copied (0 when `keep` names none of them, and
    /// then no pack is written).
    ///
    /// # Errors
    /// `NotFound` if the index has no pack `key`; `Corrupted` if a chunk to copy is damaged
    /// (nothing is written then); errors of reading or writing packs.
    pub async fn copy_out(&self, key: &Key, keep: &HashSet<ChunkId>) -> Result<u64> {
        let found = {
            let state = self.state();
            state
                .packs
                .iter()
                .find(|(_, p)| &p.key == key)
                .map(|(n, p)| {
                    let entries: Vec<PackEntry> = p
                        .entries
                        .iter()
                        .filter(|e| keep.contains(&e.id))
                        .copied()
                        .collect();
                    (*n, entries)
                })
        };
        let Some((number, entries)) = found else {
            return Err(Error::not_found(format!("pack {key} is not in the index")));
        };
        if entries.is_empty() {
            return Ok(0);
        }
        let mut blobs = Vec::with_capacity(entries.len());
        for entry in entries {
            let blob = self.read_blob(key, &entry).await?;
            blobs.push((entry, blob));
        }
        let copied = blobs.len() as u64;
        self.write_copies(number, blobs).await?;
        Ok(copied)
    }

    /// Reads pack `key` (of `len` bytes, as listed) whole and checks its footer, its index
    /// and every blob against its chunk id; collects every bad chunk rather than stopping at
    /// the first. The pack is read in one `get` (packs are about the target size, 16 MiB by
    /// default), so at most one pack sits in memory per call.
    ///
    /// # Errors
    /// `Corrupted` if the footer or the index is damaged (no chunk can be checked then),
    /// `NotFound` if the pack is gone; backend errors.
    pub async fn check_pack(&self, key: &Key) -> Result<PackCheck> {
        let bytes = match self.inner.backend.get(key).await {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return Err(Error::not_found(format!("pack {key} is missing"))),
            // The backend found the pack damaged as a whole (a FileStore record fails its
            // checksum): find which chunks, one range read each, from the index loaded at
            // open.
            Err(e) if e.kind() == ErrorKind::Corrupted => {
                return self.check_pack_by_chunk(key).await;
            }
            Err(e) => return Err(e),
        };
        hybridstore_core::raw::cpu_bound(bytes.len(), move || {
            let len = bytes.len() as u64;
            let footer_len = pack::FOOTER_LEN as u64;
            if len < footer_len {
                return Err(Error::corrupted("pack is shorter than its footer"));
            }
            let (count, crc) = pack::parse_footer(&bytes[(len - footer_len) as usize..], len)?;
            let index_start = len - footer_len - (count * pack::ENTRY_LEN) as u64;
            let entries = pack::parse_index(
                &bytes[index_start as usize..(len - footer_len) as usize],
                crc,
                index_start,
            )?;
            let mut check = PackCheck::default();
            for e in entries {
                let r = e.blob_range();
                match chunk::decode_blob(&e.id, e.raw_len, &bytes[r.start as usize..r.end as usize])
                {
                    Ok(_) => check.good += 1,
                    Err(err) => check.bad.push((e.id, err.to_string())),
                }
            }
            Ok(check)
        })
        .await?
    }

    /// [`check_pack`](Self::check_pack) one blob at a time.
    async fn check_pack_by_chunk(&self, key: &Key) -> Result<PackCheck> {
        let entries: Vec<PackEntry> = {
            let state = self.state();
            state
                .packs
                .values()
                .find(|p| &p.key == key)
                .map(|p| p.entries.clone())
                .ok_or_else(|| Error::not_found(format!("pack {key} is not in the index")))?
        };
        let mut check = PackCheck::default();
        for e in entries {
            let outcome = match self.inner.backend.get_range(key, e.blob_range()).await {
                Ok(Some(blob)) => chunk::decode_blob(&e.id, e.raw_len, &blob).map(|_| ()),
                Ok(None) => Err(Error::not_found(format!("pack {key} is missing"))),
                Err(err) => Err(err),
            };
            match outcome {
                Ok(()) => check.good += 1,
                Err(err) if err.kind() == ErrorKind::NotFound => return Err(err),
                Err(err) => check.bad.push((e.id, err.to_string())),
            }
        }
        Ok(check)
    }
}
