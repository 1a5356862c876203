//! Stores that misbehave on purpose, for tests of the layers above them (feature `testing`).

use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::oneshot;

use crate::{
    Capabilities, EntryStream, Key, KeyRange, KvStore, MetaStream, ObjectMeta, PutOptions, Result,
    StoreStats, WriteBatch,
};

/// A paused write: `reached` fires when the write arrives at the store, the write waits for
/// `resume`, and `landed` fires once it has been applied.
#[derive(Debug)]
pub struct Pause {
    /// Fires when the paused write reaches the store.
    pub reached: oneshot::Receiver<()>,
    /// Send to let the write go on.
    pub resume: oneshot::Sender<()>,
    /// Fires once the write has been applied.
    pub landed: oneshot::Receiver<()>,
}

type Armed = (
    Key,
    oneshot::Sender<()>,
    oneshot::Receiver<()>,
    oneshot::Sender<()>,
);

/// Forwards every call to `S`, except that the next `put` of one chosen key can be paused.
/// A paused put goes on in a task of its own, so dropping the caller's future does not stop
/// it, as a `FileStore` write on the blocking pool or a query already sent to a database
/// server goes on: the situation a layer's cancellation safety is about.
#[derive(Debug)]
pub struct PausingStore<S> {
    inner: Arc<S>,
    armed: Mutex<Option<Armed>>,
}

impl<S: KvStore + 'static> PausingStore<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        PausingStore {
            inner: Arc::new(inner),
            armed: Mutex::new(None),
        }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Pauses the next `put` of `key` (replacing an earlier request that has not fired).
    pub fn pause_next_put(&self, key: &Key) -> Pause {
        let (reached_tx, reached) = oneshot::channel();
        let (resume, resume_rx) = oneshot::channel();
        let (landed_tx, landed) = oneshot::channel();
        *self.armed.lock().unwrap_or_else(PoisonError::into_inner) =
            Some((key.clone(), reached_tx, resume_rx, landed_tx));
        Pause {
            reached,
            resume,
            landed,
        }
    }

    fn take_armed(&self, key: &Key) -> Option<Armed> {
        let mut armed = self.armed.lock().unwrap_or_else(PoisonError::into_inner);
        match armed.take() {
            Some(a) if a.0 == *key => Some(a),
            other => {
                *armed = other;
                None
            }
        }
    }
}

#[async_trait]
impl<S: KvStore + 'static> KvStore for PausingStore<S> {
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn get(&self, key: &Key) -> Result<Option<Bytes>> {
        self.inner.get(key).await
    }
    async fn head(&self, key: &Key) -> Result<Option<ObjectMeta>> {
        self.inner.head(key).await
    }
    async fn put_with(&self, key: &Key, value: Bytes, options: &PutOptions) -> Result<ObjectMeta> {
        let Some((_, reached, resume, landed)) = self.take_armed(key) else {
            return self.inner.put_with(key, value, options).await;
        };
        let (inner, key, options) = (self.inner.clone(), key.clone(), options.clone());
        let task = tokio::spawn(async move {
            let _ = reached.send(());
            let _ = resume.await;
            let meta = inner.put_with(&key, value, &options).await;
            let _ = landed.send(());
            meta
        });
        task.await
            .map_err(|e| crate::Error::backend(format!("paused put failed: {e}")))?
    }
    async fn delete(&self, key: &Key) -> Result<()> {
        self.inner.delete(key).await
    }
    fn scan(&self, range: KeyRange, limit: Option<usize>) -> EntryStream<'_> {
        self.inner.scan(range, limit)
    }
    fn scan_meta(&self, range: KeyRange, limit: Option<usize>) -> MetaStream<'_> {
        self.inner.scan_meta(range, limit)
    }
    async fn write_batch(&self, batch: WriteBatch) -> Result<()> {
        self.inner.write_batch(batch).await
    }
    async fn get_range(&self, key: &Key, range: std::ops::Range<u64>) -> Result<Option<Bytes>> {
        self.inner.get_range(key, range).await
    }
    async fn get_many(&self, keys: &[Key]) -> Result<Vec<Option<Bytes>>> {
        self.inner.get_many(keys).await
    }
    async fn stats(&self) -> Result<StoreStats> {
        self.inner.stats().await
    }
}
