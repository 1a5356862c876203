//! Stores that misbehave on purpose, for tests of the layers above them (feature `testing`).

use std::ops::Range;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::oneshot;

use crate::{
    Capabilities, EntryStream, Error, ErrorKind, Key, KeyRange, KvStore, MetaStream, ObjectMeta,
    PutOptions, Result, StoreStats, WriteBatch,
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

crate::kv_store_impl! {
    impl[S: KvStore + 'static] KvStore for PausingStore<S>;
    forward(inner): [capabilities, get, head, delete, scan, scan_meta, write_batch, get_range,
        exists, list_keys, get_many, clear, stats, get_stream];
    // `put` and `put_stream` go through `put_with`, so an armed pause catches them too.
    provided: [put, put_stream];
    {
        async fn put_with(
            &self,
            key: &Key,
            value: Bytes,
            options: &PutOptions,
        ) -> Result<ObjectMeta> {
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
    }
}

/// Forwards every call to `S` and records the name of each [`KvStore`] method it receives,
/// in order: a layer above it shows which of the inner store's methods it really calls (the
/// batched `get_many`, or a loop of `get`s).
#[derive(Debug, Default)]
pub struct CallRecorder<S> {
    inner: S,
    calls: Mutex<Vec<&'static str>>,
}

impl<S: KvStore> CallRecorder<S> {
    /// Wraps `inner` with an empty record.
    pub fn new(inner: S) -> Self {
        CallRecorder {
            inner,
            calls: Mutex::new(Vec::new()),
        }
    }

    /// The wrapped store (calls through it are not recorded).
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// The methods called so far, in order, and clears the record.
    pub fn take_calls(&self) -> Vec<&'static str> {
        std::mem::take(&mut *self.calls.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn note(&self, method: &'static str) {
        self.calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(method);
    }
}

crate::kv_store_impl! {
    impl[S: KvStore] KvStore for CallRecorder<S>;
    forward(inner): [];
    provided: [];
    {
        fn capabilities(&self) -> Capabilities {
            self.inner.capabilities()
        }
        async fn get(&self, key: &Key) -> Result<Option<Bytes>> {
            self.note("get");
            self.inner.get(key).await
        }
        async fn head(&self, key: &Key) -> Result<Option<ObjectMeta>> {
            self.note("head");
            self.inner.head(key).await
        }
        async fn put_with(
            &self,
            key: &Key,
            value: Bytes,
            options: &PutOptions,
        ) -> Result<ObjectMeta> {
            self.note("put_with");
            self.inner.put_with(key, value, options).await
        }
        async fn put(&self, key: &Key, value: Bytes) -> Result<ObjectMeta> {
            self.note("put");
            self.inner.put(key, value).await
        }
        async fn delete(&self, key: &Key) -> Result<()> {
            self.note("delete");
            self.inner.delete(key).await
        }
        fn scan(&self, range: KeyRange, limit: Option<usize>) -> EntryStream<'_> {
            self.note("scan");
            self.inner.scan(range, limit)
        }
        fn scan_meta(&self, range: KeyRange, limit: Option<usize>) -> MetaStream<'_> {
            self.note("scan_meta");
            self.inner.scan_meta(range, limit)
        }
        async fn write_batch(&self, batch: WriteBatch) -> Result<()> {
            self.note("write_batch");
            self.inner.write_batch(batch).await
        }
        async fn get_range(&self, key: &Key, range: Range<u64>) -> Result<Option<Bytes>> {
            self.note("get_range");
            self.inner.get_range(key, range).await
        }
        async fn exists(&self, key: &Key) -> Result<bool> {
            self.note("exists");
            self.inner.exists(key).await
        }
        async fn list_keys(&self, range: KeyRange, limit: Option<usize>) -> Result<Vec<Key>> {
            self.note("list_keys");
            self.inner.list_keys(range, limit).await
        }
        async fn get_many(&self, keys: &[Key]) -> Result<Vec<Option<Bytes>>> {
            self.note("get_many");
            self.inner.get_many(keys).await
        }
        async fn clear(&self) -> Result<u64> {
            self.note("clear");
            self.inner.clear().await
        }
        async fn get_stream(
            &self,
            key: &Key,
            range: Option<Range<u64>>,
        ) -> Result<Option<crate::ValueStream<'_>>> {
            self.note("get_stream");
            self.inner.get_stream(key, range).await
        }
        async fn put_stream(
            &self,
            key: &Key,
            reader: crate::ValueReader<'_>,
            options: &PutOptions,
        ) -> Result<ObjectMeta> {
            self.note("put_stream");
            self.inner.put_stream(key, reader, options).await
        }
        async fn stats(&self) -> Result<StoreStats> {
            self.note("stats");
            self.inner.stats().await
        }
    }
}

/// A store on which every operation fails with one error (its kind, message and
/// retryability), for tests of what the layers above add to an error.
#[derive(Debug, Clone)]
pub struct FailingStore {
    kind: ErrorKind,
    message: &'static str,
}

impl FailingStore {
    /// Every call returns `Error::new(kind, message)`.
    pub fn new(kind: ErrorKind, message: &'static str) -> Self {
        FailingStore { kind, message }
    }

    fn error(&self) -> Error {
        Error::new(self.kind, self.message)
    }
}

crate::kv_store_impl! {
    impl[] KvStore for FailingStore;
    forward(inner): [];
    provided: [put, scan_meta, get_range, exists, list_keys, get_many, clear, stats, get_stream,
        put_stream];
    {
        fn capabilities(&self) -> Capabilities {
            Capabilities::new()
        }
        async fn get(&self, _key: &Key) -> Result<Option<Bytes>> {
            Err(self.error())
        }
        async fn head(&self, _key: &Key) -> Result<Option<ObjectMeta>> {
            Err(self.error())
        }
        async fn put_with(
            &self,
            _key: &Key,
            _value: Bytes,
            _options: &PutOptions,
        ) -> Result<ObjectMeta> {
            Err(self.error())
        }
        async fn delete(&self, _key: &Key) -> Result<()> {
            Err(self.error())
        }
        fn scan(&self, _range: KeyRange, _limit: Option<usize>) -> EntryStream<'_> {
            futures::stream::once(futures::future::ready(Err(self.error()))).boxed()
        }
        async fn write_batch(&self, _batch: WriteBatch) -> Result<()> {
            Err(self.error())
        }
    }
}
