//! What garbage collection needs of the chunk store: the packs at the start of a
//! collection, reuse recorded while it runs, each pack classified into live and dead
//! chunks, live chunks copied, and a pack retired from the index.

use super::*;

impl ChunkStore {
    /// Starts recording reuse, takes the numbers of the packs that exist now, and waits for
    /// the writers in flight (whose lookups were not recorded) to finish; returns the packs.
    /// New writers never wait for it.
    pub(crate) async fn begin_collection(&self) -> Vec<u32> {
        // Under the index lock: record reuse from now on, and take the packs that exist now.
        // A pack sealed later (by a writer of either epoch) is not this collection's: its
        // chunks may be new and referenced by a manifest the mark will not see.
        let mut packs: Vec<u32> = {
            let mut state = self.state();
            state.reused = Some(HashSet::new());
            state.packs.keys().copied().collect()
        };
        // Then open a new epoch: every writer of the new epoch does its lookups with
        // recording on; the writers of older epochs may have looked up chunks unrecorded, so
        // the mark must see their manifests: wait for them.
        let old = {
            let mut writers = self.writers();
            writers.epoch += 1;
            writers.epoch - 1
        };
        loop {
            let left = self.inner.writer_left.notified();
            tokio::pin!(left);
            left.as_mut().enable(); // before the check: a writer leaving after it wakes us
            if self.writers().active.range(..=old).next().is_none() {
                break;
            }
            left.await;
        }
        packs.sort_unstable();
        packs
    }

    /// Stops recording reuse.
    pub(crate) fn end_collection(&self) {
        self.state().reused = None;
    }

    /// The pack's key, creation time and the entries the index resolves to it, split by
    /// whether `live` holds them (or they were reused since collection began).
    pub(crate) fn classify_pack(
        &self,
        number: u32,
        live: &HashSet<ChunkId>,
    ) -> Option<PackClassification> {
        let state = self.state();
        let info = state.packs.get(&number)?;
        let reused = state.reused.as_ref();
        let mut out = PackClassification {
            key: info.key.clone(),
            created: info.created,
            pack_bytes: info.len,
            live: Vec::new(),
            dead: Vec::new(),
        };
        for (i, e) in info.entries.iter().enumerate() {
            if state.resolves_to(&e.id, number, i)
                && (live.contains(&e.id) || reused.is_some_and(|r| r.contains(&e.id)))
            {
                out.live.push(*e);
            } else {
                out.dead.push(*e);
            }
        }
        Some(out)
    }

    /// Reads a blob for copying, checking it decodes to its id.
    pub(crate) async fn read_blob(&self, key: &Key, entry: &PackEntry) -> Result<Vec<u8>> {
        let blob = self
            .inner
            .backend
            .get_range(key, entry.blob_range())
            .await?
            .ok_or_else(|| Error::corrupted("pack vanished while being collected"))?;
        chunk::decode_blob(&entry.id, entry.raw_len, &blob)?;
        Ok(blob.to_vec())
    }

    /// Writes `blobs` (copies of live chunks) as a new durable pack outside the open pack,
    /// then points the index at them where it still points at `old_pack`.
    pub(crate) async fn write_copies(
        &self,
        old_pack: u32,
        blobs: Vec<(PackEntry, Vec<u8>)>,
    ) -> Result<()> {
        let mut buf = Vec::new();
        let mut entries = Vec::with_capacity(blobs.len());
        for (e, blob) in blobs {
            entries.push(PackEntry {
                offset: buf.len() as u64,
                ..e
            });
            buf.extend_from_slice(&blob);
        }
        let info = self.write_pack(buf, &entries).await?;
        self.state().install_pack(
            info,
            |slot| matches!(slot, Some(Slot::Durable { pack, .. }) if *pack == old_pack),
        );
        Ok(())
    }

    /// Drops pack `number` from the index unless one of its chunks is still resolved to it
    /// and was reused since `classify_pack`, or is in `live`. Returns the pack's key if it
    /// may now be deleted.
    pub(crate) fn retire_pack(&self, number: u32, live: &HashSet<ChunkId>) -> Option<Key> {
        let mut state = self.state();
        let state = &mut *state;
        let info = state.packs.get(&number)?;
        let still_needed = info.entries.iter().enumerate().any(|(i, e)| {
            state.resolves_to(&e.id, number, i)
                && (live.contains(&e.id)
                    || state.reused.as_ref().is_some_and(|r| r.contains(&e.id)))
        });
        if still_needed {
            return None;
        }
        let info = state.packs.remove(&number)?;
        for e in &info.entries {
            if matches!(state.index.get(&e.id), Some(Slot::Durable { pack, .. }) if *pack == number)
            {
                state.index.remove(&e.id);
            }
        }
        Some(info.key)
    }
}

/// A pack's chunks split for garbage collection.
#[derive(Debug)]
pub(crate) struct PackClassification {
    pub(crate) key: Key,
    pub(crate) created: SystemTime,
    pub(crate) pack_bytes: u64,
    pub(crate) live: Vec<PackEntry>,
    pub(crate) dead: Vec<PackEntry>,
}
