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
        // Large reads of the source (a tokio file reads on the blocking pool: one round trip
        // per read), not one per chunk the chunker asks for.
        let reader = tokio::io::BufReader::with_capacity(STREAM_READ_BUFFER_BYTES, reader);
        let mut stream = std::pin::pin!(self.options.chunker.stream(reader));
        // Three stages at once: this task reads and cuts; one thread feeds the whole-value
        // SHA-256 (in order); the chunks of the previous group are hashed and compressed on
        // the CPU pool.
        let (to_hasher, hashing) = whole_value_hasher();
        let mut list = Vec::new();
        let mut total = 0u64;
        let mut pending = PendingChunks::default();
        // A first chunk within `inline_max` is the whole value (`inline_max <= min_size`, and
        // only a value's last chunk is shorter than `min_size`): it is held back, not stored.
        let mut held: Option<Vec<u8>> = None;
        // Chunks read but not handed on yet, a group at a time.
        let mut group: Vec<Vec<u8>> = Vec::new();
        let mut group_bytes = 0usize;
        let mut in_flight: Option<EncodingGroup> = None;
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
                    && in_flight.is_none()
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
                let taken = Arc::new(std::mem::take(&mut group));
                to_hasher
                    .send(taken.clone())
                    .await
                    .map_err(|_| Error::backend("the whole-value hasher stopped"))?;
                let started = EncodingGroup::start(taken, group_bytes, &self.chunks);
                group_bytes = 0;
                if let Some(previous) = in_flight.replace(started) {
                    self.absorb_group(previous, &mut pending, &mut list).await?;
                }
            }
            if at_end {
                break;
            }
        }
        if let Some(last) = in_flight.take() {
            self.absorb_group(last, &mut pending, &mut list).await?;
        }
        drop(to_hasher);
        let hasher = hashing
            .await
            .map_err(|e| Error::backend(format!("the whole-value hasher failed: {e}")))?;
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
                // Each read ahead is a task of its own, polled whether or not the consumer
                // polls this stream: a read waits for one of the CPU permits (to decode), and
                // a permit handed to a read that nobody polls (its stream suspended at a
                // `yield` while its consumer waits for a permit too, as `verify`'s re-hash
                // does) would never be released: with 16 streams at once, every permit ended
                // up so and `verify` stalled for good.
                let read = tokio::spawn(async move {
                    let data = chunks.read(&id).await?;
                    check_len(&id, len, &data)?;
                    Ok::<_, Error>((data, part))
                });
                async move {
                    read.await
                        .map_err(|e| Error::backend(format!("chunk read task failed: {e}")))?
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

/// Groups of a streamed value's chunks queued for the whole-value hasher.
const HASHER_QUEUE_GROUPS: usize = 4;

/// Consecutive chunks of a streamed value, shared by the hasher and the encoder.
type ChunkGroup = Arc<Vec<Vec<u8>>>;
/// Per chunk of a group: its id and its blob unless the store holds it already.
type EncodedGroup = Vec<(ChunkId, Option<Vec<u8>>)>;

/// A thread that feeds every group it is sent, in order, to one SHA-256 and returns it once
/// the sender is dropped (on the blocking pool: hashing never runs on an async worker).
fn whole_value_hasher() -> (
    tokio::sync::mpsc::Sender<ChunkGroup>,
    tokio::task::JoinHandle<sha2::Sha256>,
) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<ChunkGroup>(HASHER_QUEUE_GROUPS);
    let handle = tokio::task::spawn_blocking(move || {
        let mut hasher = sha2::Sha256::new();
        while let Some(group) = rx.blocking_recv() {
            for data in group.iter() {
                hasher.update(data);
            }
        }
        hasher
    });
    (tx, handle)
}

/// A group of consecutive chunks of a streamed value being hashed and compressed (through
/// [`cpu_bound`], as its own task, so the next group is read meanwhile).
pub(super) struct EncodingGroup {
    data: ChunkGroup,
    encoded: tokio::task::JoinHandle<Result<EncodedGroup>>,
}

impl EncodingGroup {
    fn start(data: ChunkGroup, bytes: usize, store: &ChunkStore) -> EncodingGroup {
        let (shared, store) = (data.clone(), store.clone());
        let encoded = tokio::spawn(async move {
            cpu_bound(bytes, move || {
                shared
                    .iter()
                    .map(|d| hash_and_encode(d, &store))
                    .collect::<Vec<_>>()
            })
            .await
        });
        EncodingGroup { data, encoded }
    }
}

impl<S: KvStore> DedupStore<S> {
    /// Adds a finished group's chunks to the open pack (in order), and commits the pack
    /// once it is full.
    async fn absorb_group(
        &self,
        group: EncodingGroup,
        pending: &mut PendingChunks,
        list: &mut Vec<(ChunkId, u32)>,
    ) -> Result<()> {
        let encoded = group
            .encoded
            .await
            .map_err(|e| Error::backend(format!("chunk encoding failed: {e}")))??;
        for (data, (id, blob)) in group.data.iter().zip(encoded) {
            pending.absorb(self.chunks.add([NewChunk { id, data, blob }]));
            list.push((id, data.len() as u32));
        }
        if self.chunks.open_pack_is_full() {
            self.chunks.commit(std::mem::take(pending)).await?;
        }
        Ok(())
    }
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
