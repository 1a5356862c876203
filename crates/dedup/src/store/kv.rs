//! [`KvStore`] for [`DedupStore`]: values as manifests in the inner store, bytes as chunks.

use super::*;

/// The SHA-256 of the value a manifest describes.
pub(super) fn manifest_value_checksum(manifest: &Manifest) -> Sha256Digest {
    match manifest {
        Manifest::Inline(v) => Sha256Digest::of(v),
        Manifest::Chunked(list) => list.checksum,
    }
}

/// The value's metadata from the manifest's: the value's size and checksum, the manifest's
/// checksum as `dedup_hash`, times and content type as stored.
pub(super) fn outer_meta(inner: ObjectMeta, size: u64, checksum: Sha256Digest) -> ObjectMeta {
    ObjectMeta {
        size,
        checksum,
        dedup_hash: Some(inner.checksum),
        ..inner
    }
}

pub(super) fn decode_meta(entry: &Entry) -> Result<(Manifest, ObjectMeta)> {
    let manifest = Manifest::decode(&entry.value).map_err(|e| e.with_context("key", &entry.key))?;
    let meta = outer_meta(
        entry.meta.clone(),
        manifest.value_len(),
        manifest_value_checksum(&manifest),
    );
    Ok((manifest, meta))
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl<S: KvStore + 'static> KvStore for DedupStore<S> {
    fn capabilities(&self) -> Capabilities {
        let inner = self.inner.capabilities();
        Capabilities::new()
            .with_max_key_len(inner.max_key_len)
            .with_durable(inner.durable && self.chunks.backend().capabilities().durable)
            .with_crash_atomic_batch(inner.crash_atomic_batch)
            .with_max_value_len(self.max_value_len())
    }

    async fn get(&self, key: &Key) -> Result<Option<Bytes>> {
        let Some(manifest) = self.inner.get(key).await? else {
            return Ok(None);
        };
        let manifest = Manifest::decode(&manifest)?;
        self.load(manifest).await.map(Some)
    }

    async fn head(&self, key: &Key) -> Result<Option<ObjectMeta>> {
        // The one-key scan below would read a key the inner store cannot hold as absent.
        self.check_key(key)?;
        match self.inner_entry(key).await? {
            Some(entry) if entry.key == *key => Ok(Some(decode_meta(&entry)?.1)),
            _ => Ok(None),
        }
    }

    async fn put_with(&self, key: &Key, value: Bytes, options: &PutOptions) -> Result<ObjectMeta> {
        self.check_put(key, options)?;
        self.check_value_len(value.len() as u64)?;
        let (this, key, options) = (self.clone(), key.clone(), options.clone());
        // Runs to completion once started (see the type's docs on cancellation).
        run_to_completion(async move {
            // Both taken at the first poll: a write dropped later still holds its place.
            let _writer = this.chunks.writer();
            let ticket = this.order.begin([&key]);
            let size = value.len() as u64;
            let encoded = this.encode(value).await?;
            let (pending, mut done) = this.add_chunks(vec![encoded]).await?;
            this.chunks.commit(pending).await?;
            let Some((_, encoded)) = done.pop() else {
                return Err(Error::backend("internal: encoded value missing"));
            };
            ticket.turn().await;
            let meta = this
                .inner
                .put_with(&key, Bytes::from(encoded.manifest), &options)
                .await?;
            drop(ticket);
            Ok(outer_meta(meta, size, encoded.checksum))
        })
        .await
    }

    async fn put(&self, key: &Key, value: Bytes) -> Result<ObjectMeta> {
        provided::put(self, key, value).await
    }

    /// Reads the whole value and slices it: a ranged read that loads only the chunks it
    /// needs is a later change.
    async fn get_range(&self, key: &Key, range: Range<u64>) -> Result<Option<Bytes>> {
        provided::get_range(self, key, range).await
    }

    /// Chunk by chunk, at most a few chunks ahead ([`READ_AHEAD`]): memory stays bounded
    /// whatever the value's size. Each chunk is checked against its SHA-256 as it is read;
    /// a whole-value stream also hashes the value as it goes and yields a `Corrupted` error
    /// instead of the last chunk if the value does not match its checksum.
    async fn get_stream(
        &self,
        key: &Key,
        range: Option<Range<u64>>,
    ) -> Result<Option<ValueStream<'_>>> {
        let Some(manifest) = self.inner.get(key).await? else {
            return Ok(None);
        };
        let list = match Manifest::decode(&manifest)? {
            Manifest::Inline(value) => {
                let value = match range {
                    None => value,
                    Some(range) => slice_range(&value, range)?,
                };
                return Ok(Some(ValueStream::once(value)));
            }
            Manifest::Chunked(list) => list,
        };
        Ok(Some(self.stream_chunks(list, range)?))
    }

    async fn put_stream(
        &self,
        key: &Key,
        reader: ValueReader<'_>,
        options: &PutOptions,
    ) -> Result<ObjectMeta> {
        self.put_reader(key, reader, options).await
    }

    async fn delete(&self, key: &Key) -> Result<()> {
        self.inner.delete(key).await
    }

    /// A key exists exactly when its manifest does.
    async fn exists(&self, key: &Key) -> Result<bool> {
        self.inner.exists(key).await
    }

    /// The manifests' keys, without decoding them.
    async fn list_keys(&self, range: KeyRange, limit: Option<usize>) -> Result<Vec<Key>> {
        self.inner.list_keys(range, limit).await
    }

    /// Removes every manifest; the chunks they referenced stay in their packs until the next
    /// [`collect_garbage`](DedupStore::collect_garbage).
    async fn clear(&self) -> Result<u64> {
        self.inner.clear().await
    }

    fn scan(&self, range: KeyRange, limit: Option<usize>) -> EntryStream<'_> {
        Box::pin(async_stream::try_stream! {
            let mut entries = self.inner.scan(range, limit);
            while let Some(entry) = entries.try_next().await? {
                let (manifest, meta) = decode_meta(&entry)?;
                let value = self
                    .load(manifest)
                    .await
                    // The key a scan was at: `ErrorContext` cannot know it.
                    .map_err(|e| e.with_context("key", &entry.key))?;
                yield Entry { key: entry.key, value, meta };
            }
        })
    }

    fn scan_meta(&self, range: KeyRange, limit: Option<usize>) -> MetaStream<'_> {
        // Manifests are small (tens of bytes per chunk), so reading them is the metadata scan.
        Box::pin(async_stream::try_stream! {
            let mut entries = self.inner.scan(range, limit);
            while let Some(entry) = entries.try_next().await? {
                let (_, meta) = decode_meta(&entry)?;
                yield MetaEntry { key: entry.key, meta };
            }
        })
    }

    async fn write_batch(&self, batch: WriteBatch) -> Result<()> {
        let this = self.clone();
        // Runs to completion once started (see the type's docs on cancellation).
        run_to_completion(async move { this.write_batch_owned(batch).await }).await
    }

    async fn get_many(&self, keys: &[Key]) -> Result<Vec<Option<Bytes>>> {
        let manifests = self.inner.get_many(keys).await?;
        let mut out = Vec::with_capacity(keys.len());
        for (key, manifest) in keys.iter().zip(manifests) {
            out.push(match manifest {
                None => None,
                Some(m) => {
                    // Which of the keys failed: `ErrorContext` knows only how many there were.
                    let m = Manifest::decode(&m).map_err(|e| e.with_context("key", key))?;
                    Some(self.load(m).await.map_err(|e| e.with_context("key", key))?)
                }
            });
        }
        Ok(out)
    }

    async fn stats(&self) -> Result<StoreStats> {
        Ok(StoreStats::from(&self.dedup_stats().await?))
    }
}
