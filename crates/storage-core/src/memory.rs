//! `MemoryStore`: an in-process `KvStore` on a `BTreeMap`.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream;

use crate::batch::{Mutation, WriteBatch};
use crate::error::Result;
use crate::key::{Key, KeyRange};
use crate::meta::{ObjectMeta, PutOptions};
use crate::store::{Capabilities, Entry, EntryStream, KvStore};

/// Entries copied out of the map per lock acquisition during a scan, so a long scan neither
/// holds the lock nor copies the whole map.
const SCAN_PAGE: usize = 256;

/// A `KvStore` held in memory: the reference implementation of the trait's behaviour, for
/// tests and for caches of small data. Nothing survives the process.
///
/// Cloning is cheap and clones share the same data.
///
/// ```
/// # futures::executor::block_on(async {
/// use hybridstore_core::{Key, KvStore, MemoryStore};
/// let store = MemoryStore::new();
/// let key = Key::new("greeting")?;
/// store.put(&key, "hello".into()).await?;
/// assert_eq!(store.get(&key).await?.as_deref(), Some(&b"hello"[..]));
/// # Ok::<(), hybridstore_core::Error>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    map: Arc<RwLock<BTreeMap<Key, Stored>>>,
}

#[derive(Clone, Debug)]
struct Stored {
    value: Bytes,
    meta: ObjectMeta,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    // A panic while holding the lock cannot leave the map half-updated (every mutation is a
    // single insert/remove, or a batch applied after all checks), so a poisoned lock is safe
    // to keep using.
    fn read(&self) -> RwLockReadGuard<'_, BTreeMap<Key, Stored>> {
        self.map.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, BTreeMap<Key, Stored>> {
        self.map.write().unwrap_or_else(|p| p.into_inner())
    }

    fn page(&self, range: &KeyRange, max: usize) -> Vec<Entry> {
        let map = self.read();
        map.range::<[u8], _>((range.start(), range.end()))
            .take(max)
            .map(|(k, s)| Entry {
                key: k.clone(),
                value: s.value.clone(),
                meta: s.meta.clone(),
            })
            .collect()
    }
}

#[async_trait]
impl KvStore for MemoryStore {
    fn capabilities(&self) -> Capabilities {
        Capabilities::new()
    }

    async fn get(&self, key: &Key) -> Result<Option<Bytes>> {
        Ok(self.read().get(key).map(|s| s.value.clone()))
    }

    async fn head(&self, key: &Key) -> Result<Option<ObjectMeta>> {
        Ok(self.read().get(key).map(|s| s.meta.clone()))
    }

    async fn put_with(&self, key: &Key, value: Bytes, options: &PutOptions) -> Result<ObjectMeta> {
        options.validate()?;
        let mut map = self.write();
        let created = map.get(key).map(|s| s.meta.created);
        let meta = ObjectMeta::for_value(&value, options, created);
        map.insert(
            key.clone(),
            Stored {
                value,
                meta: meta.clone(),
            },
        );
        Ok(meta)
    }

    async fn delete(&self, key: &Key) -> Result<()> {
        self.write().remove(key);
        Ok(())
    }

    fn scan(&self, range: KeyRange, limit: Option<usize>) -> EntryStream<'_> {
        let remaining = limit.unwrap_or(usize::MAX);
        stream::unfold(
            (Some(range), remaining),
            move |(range, remaining)| async move {
                let range = range?;
                if remaining == 0 || range.is_empty() {
                    return None;
                }
                let page = self.page(&range, remaining.min(SCAN_PAGE));
                let last = page.last()?.key.clone();
                let next = (page.len() == SCAN_PAGE).then(|| range.resume_after(last.as_bytes()));
                let remaining = remaining - page.len();
                Some((stream::iter(page.into_iter().map(Ok)), (next, remaining)))
            },
        )
        .flatten()
        .boxed()
    }

    async fn write_batch(&self, batch: WriteBatch) -> Result<()> {
        let plan = batch.into_plan()?;
        let mut map = self.write();
        plan.verify_checks(|k| Ok(map.get(k).map(|s| s.meta.clone())))?;
        for (key, mutation) in plan.writes {
            match mutation {
                Mutation::Put { value, options } => {
                    let created = map.get(&key).map(|s| s.meta.created);
                    let meta = ObjectMeta::for_value(&value, &options, created);
                    map.insert(key, Stored { value, meta });
                }
                Mutation::Delete => {
                    map.remove(&key);
                }
            }
        }
        Ok(())
    }

    async fn clear(&self) -> Result<u64> {
        let mut map = self.write();
        let n = map.len() as u64;
        map.clear();
        Ok(n)
    }
}
