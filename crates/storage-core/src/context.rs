//! [`ErrorContext`]: the one place where an error learns which operation, key and backend it
//! belongs to (after OpenDAL's `ErrorContextLayer`,
//! <https://docs.rs/opendal/latest/opendal/layers/struct.ErrorContextLayer.html>).

use std::ops::Range;

use bytes::Bytes;
use futures::StreamExt;

use crate::batch::WriteBatch;
use crate::error::{Error, Result};
use crate::key::{Key, KeyRange};
use crate::meta::{ObjectMeta, PutOptions};
use crate::store::{EntryStream, KvStore, MetaStream, StoreStats, ValueReader, ValueStream};

/// A layer that adds the operation (`"get"`, `"write_batch"`, …), the key where there is one,
/// the range of a scan and the backend's name to every error `inner` returns, and changes
/// nothing else: values, metadata, kinds and retryability pass through as they are.
///
/// The facade puts one over each store it opens, so backends and layers never add that
/// context by hand (rule 3 in [`Error`]'s module). A store used on its own can be wrapped the
/// same way:
///
/// ```
/// # futures::executor::block_on(async {
/// use hybridstore_core::{ErrorContext, Key, KvStore, MemoryStore};
/// let store = ErrorContext::new(MemoryStore::new(), "memory");
/// let err = store.get_range(&Key::new("k")?, 0..1).await;
/// assert!(err.is_ok()); // absent: Ok(None)
/// store.put(&Key::new("k")?, "v".into()).await?;
/// let err = store.get_range(&Key::new("k")?, 0..9).await.unwrap_err();
/// assert_eq!(err.operation(), Some("get_range"));
/// assert!(err.to_string().contains("key: k"));
/// assert!(err.to_string().contains("backend: memory"));
/// # Ok::<(), hybridstore_core::Error>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct ErrorContext<S> {
    inner: S,
    backend: &'static str,
}

impl<S: KvStore> ErrorContext<S> {
    /// Wraps `inner`, whose errors will name `backend` (`"file"`, `"sqlite"`, `"postgres"`,
    /// `"memory"`, or a layer's name).
    pub fn new(inner: S, backend: &'static str) -> Self {
        ErrorContext { inner, backend }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// The backend name errors carry.
    pub fn backend(&self) -> &'static str {
        self.backend
    }

    fn add<'a>(
        &'a self,
        operation: &'static str,
        key: Option<&'a Key>,
    ) -> impl Fn(Error) -> Error + 'a {
        move |e: Error| contextualize(e, operation, key, self.backend)
    }
}

/// `e` with `operation`, `key` (if any) and `backend` in its context: what every method of
/// [`ErrorContext`] adds, also to the errors inside a stream (which outlive the call).
fn contextualize(e: Error, operation: &'static str, key: Option<&Key>, backend: &str) -> Error {
    let e = e.with_operation(operation);
    let e = match key {
        Some(key) => e.with_context("key", key),
        None => e,
    };
    e.with_context("backend", backend)
}

crate::kv_store_impl! {
    impl[S: KvStore] KvStore for ErrorContext<S>;
    forward(inner): [capabilities];
    provided: [];
    {
        async fn get(&self, key: &Key) -> Result<Option<Bytes>> {
            self.inner.get(key).await.map_err(self.add("get", Some(key)))
        }

        async fn head(&self, key: &Key) -> Result<Option<ObjectMeta>> {
            self.inner.head(key).await.map_err(self.add("head", Some(key)))
        }

        async fn put_with(
            &self,
            key: &Key,
            value: Bytes,
            options: &PutOptions,
        ) -> Result<ObjectMeta> {
            self.inner
                .put_with(key, value, options)
                .await
                .map_err(self.add("put", Some(key)))
        }

        async fn put(&self, key: &Key, value: Bytes) -> Result<ObjectMeta> {
            self.inner.put(key, value).await.map_err(self.add("put", Some(key)))
        }

        async fn delete(&self, key: &Key) -> Result<()> {
            self.inner.delete(key).await.map_err(self.add("delete", Some(key)))
        }

        fn scan(&self, range: KeyRange, limit: Option<usize>) -> EntryStream<'_> {
            let shown = format!("{range:?}");
            self.inner
                .scan(range, limit)
                .map(move |item| {
                    item.map_err(|e| self.add("scan", None)(e).with_context("range", &shown))
                })
                .boxed()
        }

        fn scan_meta(&self, range: KeyRange, limit: Option<usize>) -> MetaStream<'_> {
            let shown = format!("{range:?}");
            self.inner
                .scan_meta(range, limit)
                .map(move |item| {
                    item.map_err(|e| self.add("scan_meta", None)(e).with_context("range", &shown))
                })
                .boxed()
        }

        async fn write_batch(&self, batch: WriteBatch) -> Result<()> {
            let ops = batch.len();
            self.inner
                .write_batch(batch)
                .await
                .map_err(|e| self.add("write_batch", None)(e).with_context("batch_ops", ops))
        }

        async fn get_range(&self, key: &Key, range: Range<u64>) -> Result<Option<Bytes>> {
            self.inner
                .get_range(key, range)
                .await
                .map_err(self.add("get_range", Some(key)))
        }

        async fn get_stream(
            &self,
            key: &Key,
            range: Option<Range<u64>>,
        ) -> Result<Option<ValueStream<'_>>> {
            let stream = self
                .inner
                .get_stream(key, range)
                .await
                .map_err(self.add("get_stream", Some(key)))?;
            // Errors inside the stream name the key too: the stream owns a copy of it.
            let (key, backend) = (key.clone(), self.backend);
            Ok(stream.map(|s| ValueStream {
                len: s.len,
                body: s
                    .body
                    .map(move |piece| {
                        piece.map_err(|e| contextualize(e, "get_stream", Some(&key), backend))
                    })
                    .boxed(),
            }))
        }

        async fn put_stream(
            &self,
            key: &Key,
            reader: ValueReader<'_>,
            options: &PutOptions,
        ) -> Result<ObjectMeta> {
            self.inner
                .put_stream(key, reader, options)
                .await
                .map_err(self.add("put_stream", Some(key)))
        }

        async fn exists(&self, key: &Key) -> Result<bool> {
            self.inner.exists(key).await.map_err(self.add("exists", Some(key)))
        }

        async fn list_keys(&self, range: KeyRange, limit: Option<usize>) -> Result<Vec<Key>> {
            let shown = format!("{range:?}");
            self.inner
                .list_keys(range, limit)
                .await
                .map_err(|e| self.add("list_keys", None)(e).with_context("range", shown))
        }

        async fn get_many(&self, keys: &[Key]) -> Result<Vec<Option<Bytes>>> {
            self.inner
                .get_many(keys)
                .await
                .map_err(|e| self.add("get_many", None)(e).with_context("keys", keys.len()))
        }

        async fn clear(&self) -> Result<u64> {
            self.inner.clear().await.map_err(self.add("clear", None))
        }

        async fn stats(&self) -> Result<StoreStats> {
            self.inner.stats().await.map_err(self.add("stats", None))
        }
    }
}
