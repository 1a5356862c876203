//! A snapshot's keys as a read-only [`KvStore`]: read keys of the past without restoring
//! them (restic's `mount` is the model). The key tree is loaded once (about 300 bytes per
//! key in memory); values are read chunk by chunk from the repository, each chunk checked
//! against its id and each whole value against its SHA-256; a ranged read fetches only the
//! chunks it covers. Every write fails with `Unsupported`.

use std::collections::BTreeMap;
use std::ops::{Bound, Range};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use hybridstore_core::{
    Capabilities, Entry, EntryStream, Error, ErrorKind, Key, KeyRange, KvStore, MetaEntry,
    MetaStream, ObjectMeta, PutOptions, Result, StoreStats, ValueReader, ValueStream, WriteBatch,
};

use crate::record::{SnapshotId, TreeEntry};
use crate::repo::Repository;
use crate::restore::{WHOLE_VALUE_MAX, read_tree, read_value};

/// The keys of one snapshot, read-only (see the module docs). Cloning is cheap.
#[derive(Clone, Debug)]
pub struct SnapshotStore {
    repo: Repository,
    id: SnapshotId,
    entries: Arc<BTreeMap<Vec<u8>, TreeEntry>>,
}

fn read_only() -> Error {
    Error::new(ErrorKind::Unsupported, "a snapshot is read-only").with_retryable(false)
}

fn meta_of(entry: &TreeEntry) -> ObjectMeta {
    ObjectMeta {
        size: entry.size,
        created: UNIX_EPOCH + Duration::from_nanos(entry.created_ns),
        modified: UNIX_EPOCH + Duration::from_nanos(entry.modified_ns),
        checksum: entry.sha256,
        content_type: entry.content_type.clone(),
        dedup_hash: None,
    }
}

impl SnapshotStore {
    /// Opens snapshot `name` (`latest` or an id prefix) of `repo`, loading its key tree.
    ///
    /// # Errors
    /// As [`Repository::resolve`] and [`read_tree`].
    pub async fn open(repo: Repository, name: &str) -> Result<SnapshotStore> {
        let (id, snapshot) = repo.resolve(name).await?;
        let tree = read_tree(&repo, &snapshot).await?;
        let mut entries = BTreeMap::new();
        for entry in tree {
            entries.insert(entry.key()?.as_bytes().to_vec(), entry);
        }
        Ok(SnapshotStore {
            repo,
            id,
            entries: Arc::new(entries),
        })
    }

    /// The snapshot's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn entries_in(&self, range: &KeyRange) -> impl Iterator<Item = (&Vec<u8>, &TreeEntry)> {
        let start = match range.start() {
            Bound::Included(k) => Bound::Included(k.to_vec()),
            Bound::Excluded(k) => Bound::Excluded(k.to_vec()),
            Bound::Unbounded => Bound::Unbounded,
        };
        self.entries
            .range((start, Bound::Unbounded))
            .take_while(move |(k, _)| !range.is_past_end(k))
            .filter(move |(k, _)| range.contains(k))
    }

    /// The bytes `range` of `entry`'s value: only the chunks that cover it are read.
    async fn read_range(&self, entry: &TreeEntry, range: Range<u64>) -> Result<Bytes> {
        hybridstore_core::raw::check_range(&range, entry.size)?;
        // The chunks that cover the range, and where the first one starts.
        let (mut first, mut start) = (entry.chunks.len(), 0u64);
        let mut last = entry.chunks.len();
        let mut offset = 0u64;
        for (i, (_, len)) in entry.chunks.iter().enumerate() {
            let end = offset + u64::from(*len);
            if first == entry.chunks.len() && end > range.start {
                (first, start) = (i, offset);
            }
            if end >= range.end {
                last = i + 1;
                break;
            }
            offset = end;
        }
        let mut out = BytesMut::with_capacity((range.end - range.start) as usize);
        let covering = &entry.chunks[first.min(last)..last];
        let mut pieces = std::pin::pin!(self.repo.chunk_stream(covering));
        let mut at = start;
        while let Some(piece) = pieces.next().await {
            let piece = piece?;
            let end = at + piece.len() as u64;
            let from = range.start.saturating_sub(at) as usize;
            let to = (range.end.min(end) - at) as usize;
            out.extend_from_slice(&piece[from..to]);
            at = end;
        }
        Ok(out.freeze())
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl KvStore for SnapshotStore {
    fn capabilities(&self) -> Capabilities {
        Capabilities::new()
            .with_max_value_len(Some(0))
            .with_durable(true)
    }

    async fn get(&self, key: &Key) -> Result<Option<Bytes>> {
        match self.entries.get(key.as_bytes()) {
            None => Ok(None),
            Some(entry) if entry.size > WHOLE_VALUE_MAX => {
                let stream = self
                    .get_stream(key, None)
                    .await?
                    .ok_or_else(|| Error::not_found("vanished"))?;
                stream.collect().await.map(Some)
            }
            Some(entry) => read_value(&self.repo, entry)
                .await
                .map(Some)
                .map_err(|e| e.with_context("key", key)),
        }
    }

    async fn head(&self, key: &Key) -> Result<Option<ObjectMeta>> {
        Ok(self.entries.get(key.as_bytes()).map(meta_of))
    }

    async fn put_with(&self, _: &Key, _: Bytes, _: &PutOptions) -> Result<ObjectMeta> {
        Err(read_only())
    }

    async fn delete(&self, _: &Key) -> Result<()> {
        Err(read_only())
    }

    fn scan(&self, range: KeyRange, limit: Option<usize>) -> EntryStream<'_> {
        let picked: Vec<&TreeEntry> = self
            .entries_in(&range)
            .map(|(_, e)| e)
            .take(limit.unwrap_or(usize::MAX))
            .collect();
        futures::stream::iter(picked)
            .then(move |entry| async move {
                let key = entry.key()?;
                let value = self
                    .get(&key)
                    .await?
                    .ok_or_else(|| Error::not_found("vanished"))?;
                Ok(Entry {
                    key,
                    value,
                    meta: meta_of(entry),
                })
            })
            .boxed()
    }

    fn scan_meta(&self, range: KeyRange, limit: Option<usize>) -> MetaStream<'_> {
        let picked: Vec<Result<MetaEntry>> = self
            .entries_in(&range)
            .take(limit.unwrap_or(usize::MAX))
            .map(|(_, e)| {
                Ok(MetaEntry {
                    key: e.key()?,
                    meta: meta_of(e),
                })
            })
            .collect();
        futures::stream::iter(picked).boxed()
    }

    async fn write_batch(&self, _: WriteBatch) -> Result<()> {
        Err(read_only())
    }

    async fn put(&self, _: &Key, _: Bytes) -> Result<ObjectMeta> {
        Err(read_only())
    }

    async fn get_range(&self, key: &Key, range: Range<u64>) -> Result<Option<Bytes>> {
        match self.entries.get(key.as_bytes()) {
            None => Ok(None),
            Some(entry) => self
                .read_range(entry, range)
                .await
                .map(Some)
                .map_err(|e| e.with_context("key", key)),
        }
    }

    async fn get_stream(
        &self,
        key: &Key,
        range: Option<Range<u64>>,
    ) -> Result<Option<ValueStream<'_>>> {
        let Some(entry) = self.entries.get(key.as_bytes()) else {
            return Ok(None);
        };
        if let Some(range) = range {
            let bytes = self.read_range(entry, range).await?;
            return Ok(Some(ValueStream::once(bytes)));
        }
        // Whole values stream chunk by chunk; the SHA-256 of the whole is checked before the
        // last piece is handed out.
        let body = self
            .repo
            .verified_stream(entry.display_key(), &entry.chunks, entry.sha256);
        Ok(Some(ValueStream {
            len: entry.size,
            body,
        }))
    }

    async fn put_stream(&self, _: &Key, _: ValueReader<'_>, _: &PutOptions) -> Result<ObjectMeta> {
        Err(read_only())
    }

    async fn exists(&self, key: &Key) -> Result<bool> {
        Ok(self.entries.contains_key(key.as_bytes()))
    }

    async fn list_keys(&self, range: KeyRange, limit: Option<usize>) -> Result<Vec<Key>> {
        self.entries_in(&range)
            .take(limit.unwrap_or(usize::MAX))
            .map(|(_, e)| e.key())
            .collect()
    }

    async fn get_many(&self, keys: &[Key]) -> Result<Vec<Option<Bytes>>> {
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            out.push(self.get(key).await?);
        }
        Ok(out)
    }

    async fn clear(&self) -> Result<u64> {
        Err(read_only())
    }

    async fn stats(&self) -> Result<StoreStats> {
        Ok(StoreStats {
            keys: self.entries.len() as u64,
            logical_bytes: self.entries.values().map(|e| e.size).sum(),
            ..StoreStats::default()
        })
    }
}
