//! Values written from an `AsyncRead`: chunked as they arrive, hashed and compressed in
//! groups on the blocking pool.

use super::*;

impl<S: KvStore> DedupStore<S> {
    /// Stores the bytes read from `reader` under `key`, chunking as it reads, so the value
    /// never sits whole in memory (at most about one pack, [`DedupOptions::target_pack_size`]
    /// bytes, of new chunks is buffered). The result is the same as a `put` of the same bytes.
    ///
    /// # Errors
    /// As `put_with`; `Unavailable` if reading fails, `InvalidInput` once the bytes read pass
    /// [`Capabilities::max_value_len`](hybridstore_core::Capabilities::max_value_len)
    /// (nothing is stored under `key` then).
    pub async fn put_reader<R: AsyncRead + Unpin + Send>(
        &self,
        key: &Key,
        reader: R,
        options: &PutOptions,
    ) -> Result<ObjectMeta>
    where
        S: 'static,
    {
        self.check_put(key, options)?;
        let writer = self.chunks.writer();
        let ticket = self.order.begin([key]);
        let mut stream = std::pin::pin!(self.options.chunker.stream(reader));
        let mut hasher = sha2::Sha256::new();
        let mut list = Vec::new();
        let mut total = 0u64;
        let mut pending = PendingChunks::default();
        // A first chunk within `inline_max` is the whole value (`inline_max <= min_size`, and
        // only a value's last chunk is shorter than `min_size`): it is held back, not stored.
        let mut held: Option<Vec<u8>> = None;
        // Chunks read but not hashed yet, hashed and compressed a group at a time (on the
        // blocking pool unless the group is small), in order.
        let mut group: Vec<Vec<u8>> = Vec::new();
        let mut group_bytes = 0usize;
        loop {
            let next = stream.try_next().await?;
            let at_end = next.is_none();
            if let Some((_, data)) = next {
                total += data.len() as u64;
                // A value over the limit fails as soon as it passes it, before its manifest
                // is written; chunks already committed are unreferenced, for the garbage
                // collector.
                self.check_value_len(total)?;
                if list.is_empty()
                    && group.is_empty()
                    && held.is_none()
                    && data.len() <= self.options.inline_max
                {
                    held = Some(data);
                    continue;
                }
                for data in held.take().into_iter().chain([data]) {
                    group_bytes += data.len();
                    group.push(data);
                }
                if group_bytes < STREAM_GROUP_BYTES {
                    continue;
                }
            }
            if !group.is_empty() {
                let taken = std::mem::take(&mut group);
                let (h, encoded) = encode_group(hasher, taken, group_bytes, &self.chunks).await?;
                hasher = h;
                group_bytes = 0;
                for (id, data, blob) in encoded {
                    pending.absorb(self.chunks.add([NewChunk {
                        id,
                        data: &data,
                        blob,
                    }]));
                    list.push((id, data.len() as u32));
                }
                if self.chunks.open_pack_is_full() {
                    self.chunks.commit(std::mem::take(&mut pending)).await?;
                }
            }
            if at_end {
                break;
            }
        }
        self.chunks.commit(pending).await?;
        let (manifest, checksum) = match (held, list.len()) {
            (Some(small), 0) => (Manifest::encode_inline(&small), Sha256Digest::of(&small)),
            (None, 0) => (Manifest::encode_inline(b""), Sha256Digest::of(b"")),
            (_, n) => {
                let checksum = if n == 1 {
                    list[0].0
                } else {
                    Sha256Digest(hasher.finalize().into())
                };
                let manifest = Manifest::encode_chunked(&ChunkList {
                    total_len: total,
                    chunks: list,
                    checksum,
                });
                (manifest, checksum)
            }
        };
        // The manifest write finishes (holding the writer guard) even if this future is
        // dropped now: see the type's docs on cancellation.
        let (inner, key, options) = (self.inner.clone(), key.clone(), options.clone());
        let meta = run_to_completion(async move {
            let _writer = writer;
            ticket.turn().await;
            let meta = inner.put_with(&key, Bytes::from(manifest), &options).await;
            drop(ticket);
            meta
        })
        .await?;
        Ok(outer_meta(meta, total, checksum))
    }
}

impl<S: KvStore> DedupStore<S> {
    /// The stream of `list`'s chunks (or of the bytes `range` of the value), see
    /// `get_stream`.
    pub(super) fn stream_chunks(
        &self,
        list: ChunkList,
        range: Option<Range<u64>>,
    ) -> Result<ValueStream<'_>> {
        let whole = range.is_none();
        let range = range.unwrap_or(0..list.total_len);
        check_range(&range, list.total_len)?;
        // The chunks the range touches, with the part of each it wants.
        let mut wanted = Vec::new();
        let mut offset = 0u64;
        for (id, len) in list.chunks.iter().copied() {
            let (start, end) = (offset, offset + u64::from(len));
            offset = end;
            if end <= range.start || start >= range.end {
                continue;
            }
            let from = range.start.saturating_sub(start) as usize;
            let to = (range.end.min(end) - start) as usize;
            wanted.push((id, len, from..to));
        }
        if offset != list.total_len {
            return Err(Error::corrupted(format!(
                "manifest lists {offset} bytes of chunks for a value of {} bytes",
                list.total_len
            )));
        }
        let single = list.chunks.len() == 1;
        let checksum = list.checksum;
        let chunks = self.chunks.clone();
        let mut pieces = futures::stream::iter(wanted)
            .map(move |(id, len, part)| {
                let chunks = chunks.clone();
                async move {
                    let data = chunks.read(&id).await?;
                    check_len(&id, len, &data)?;
                    Ok::<_, Error>((data, part))
                }
            })
            .buffered(READ_AHEAD);
        let body = async_stream::try_stream! {
            let mut hasher = sha2::Sha256::new();
            // One piece held back, so a whole value that fails its checksum never hands
            // out its last bytes.
            let mut held: Option<Bytes> = None;
            while let Some((data, part)) = pieces.try_next().await? {
                if whole && !single {
                    hasher.update(&data);
                }
                if let Some(previous) = held.take() {
                    yield previous;
                }
                held = Some(data.slice(part));
            }
            if whole && !single && Sha256Digest(hasher.finalize().into()) != checksum {
                Err(Error::corrupted(
                    "value does not match its SHA-256 checksum after reassembly",
                ))?;
            }
            if let Some(last) = held {
                yield last;
            }
        };
        Ok(ValueStream {
            len: range.end - range.start,
            body: Box::pin(body),
        })
    }
}

/// A streamed chunk: id, plaintext, and its blob unless the store holds it already.
pub(super) type StreamedChunk = (ChunkId, Vec<u8>, Option<Vec<u8>>);

/// Feeds `group` (consecutive chunks of a streamed value, `bytes` in all) to the whole-value
/// `hasher` and hashes and compresses each chunk (through [`cpu_bound`]).
pub(super) async fn encode_group(
    mut hasher: sha2::Sha256,
    group: Vec<Vec<u8>>,
    bytes: usize,
    store: &ChunkStore,
) -> Result<(sha2::Sha256, Vec<StreamedChunk>)> {
    let work = move |store: &ChunkStore| {
        let encoded = group
            .into_iter()
            .map(|data| {
                hasher.update(&data);
                let (id, blob) = hash_and_encode(&data, store);
                (id, data, blob)
            })
            .collect::<Vec<_>>();
        (hasher, encoded)
    };
    let store = store.clone();
    cpu_bound(bytes, move || work(&store)).await
}

pub(super) fn check_len(id: &ChunkId, want: u32, data: &[u8]) -> Result<()> {
    if data.len() != want as usize {
        return Err(Error::corrupted(format!(
            "chunk {id} is {} bytes; the manifest says {want}",
            data.len()
        )));
    }
    Ok(())
}
