//! The write path: chunks added to the open pack, and group commit (the first writer to
//! commit seals the pack and writes it; the others wait on its outcome).

use super::*;

impl ChunkStore {
    /// Adds chunks not yet stored to the open pack and returns the commits to wait for.
    /// Chunks already durable are recorded as reused (for a running garbage collection).
    pub(crate) fn add<'a>(&self, chunks: impl IntoIterator<Item = NewChunk<'a>>) -> PendingChunks {
        let mut pending = PendingChunks::default();
        let mut state = self.state();
        let state = &mut *state;
        for chunk in chunks {
            match state.index.get(&chunk.id) {
                Some(Slot::Durable { .. }) => {
                    if let Some(reused) = &mut state.reused {
                        reused.insert(chunk.id);
                    }
                }
                Some(Slot::Pending(commit)) => pending.push(commit),
                None => {
                    let blob = chunk.blob.unwrap_or_else(|| chunk::encode_blob(chunk.data));
                    let open = &mut state.open;
                    open.entries.push(PackEntry {
                        id: chunk.id,
                        offset: open.buf.len() as u64,
                        blob_len: blob.len() as u32,
                        raw_len: chunk.data.len() as u32,
                    });
                    open.buf.extend_from_slice(&blob);
                    state
                        .index
                        .insert(chunk.id, Slot::Pending(open.commit.clone()));
                    pending.push(&open.commit);
                }
            }
        }
        pending
    }

    /// Whether the open pack has reached the target size (streaming writers commit then, so
    /// a large value never sits whole in memory).
    pub(crate) fn open_pack_is_full(&self) -> bool {
        self.state().open.buf.len() >= self.inner.target_pack_size
    }

    /// Waits until every chunk in `pending` is durable, writing packs as needed.
    ///
    /// # Errors
    /// The backend's error if a pack holding one of the chunks could not be written; those
    /// chunks are then forgotten (a later `add` stores them again).
    pub(crate) async fn commit(&self, pending: PendingChunks) -> Result<()> {
        for commit in pending.0 {
            loop {
                if let Some(outcome) = commit.outcome() {
                    outcome?;
                    break;
                }
                // The flush runs in its own task, so a caller that gives up (a dropped
                // future) cannot leave a sealed pack half-recorded.
                let store = self.clone();
                let target = commit.clone();
                tokio::spawn(async move { store.flush_pack_of(&target).await })
                    .await
                    .map_err(|e| Error::backend(format!("pack writer task failed: {e}")))?;
            }
        }
        Ok(())
    }

    /// Seals the open pack if it is `target`'s and writes it.
    pub(super) async fn flush_pack_of(&self, target: &Arc<PackCommit>) {
        let _flush = self.inner.flush.lock().await;
        if target.result.get().is_some() {
            return; // another writer flushed it while we waited
        }
        let (buf, entries, commit) = {
            let mut state = self.state();
            if !Arc::ptr_eq(&state.open.commit, target) {
                // Packs are sealed only under `flush` and get their outcome before it is
                // released, so a pending commit is always the open pack's.
                let _ = target.result.set(Err((
                    ErrorKind::Backend,
                    "internal: pending chunk commit is not the open pack".into(),
                )));
                return;
            }
            let sealed = std::mem::replace(&mut state.open, OpenPack::new());
            (sealed.buf, sealed.entries, sealed.commit)
        };
        let written = self.write_pack(buf, &entries).await;
        let ours =
            |slot: Option<&Slot>| matches!(slot, Some(Slot::Pending(c)) if Arc::ptr_eq(c, &commit));
        let mut state = self.state();
        let outcome = match written {
            Ok(info) => {
                state.install_pack(info, ours);
                Ok(())
            }
            Err(e) => {
                for e in &entries {
                    if ours(state.index.get(&e.id)) {
                        state.index.remove(&e.id);
                    }
                }
                Err((e.kind(), e.to_string()))
            }
        };
        let _ = commit.result.set(outcome);
    }

    /// Writes `blobs` + index + footer as a new durable pack and describes it.
    pub(super) async fn write_pack(
        &self,
        mut buf: Vec<u8>,
        entries: &[PackEntry],
    ) -> Result<PackInfo> {
        pack::finish(&mut buf, entries);
        let key = Key::new(format!("{PACK_PREFIX}{:032x}", rand::random::<u128>()))?;
        let len = buf.len() as u64;
        let meta = self.inner.backend.put(&key, Bytes::from(buf)).await?;
        tracing::debug!(pack = %key, bytes = len, chunks = entries.len(), "pack written");
        Ok(PackInfo {
            key,
            len,
            created: meta.created,
            entries: entries.to_vec(),
        })
    }
}
