//! [`WriteBarrier`]: a layer that can hold every write back for a moment, so a reader sees
//! the store at one point in time (a backup takes its snapshot's moment this way).
//!
//! Writes take a shared permit; [`Barrier::hold`] takes the exclusive one, which waits for
//! the writes in flight to finish and keeps new ones waiting until the [`BarrierHold`] is
//! dropped. tokio's `RwLock` is fair (first come, first served), so a hold is not starved by
//! a stream of writes and writes queued behind a hold go on in order after it. Reads never
//! wait.
//!
//! **Cancellation.** A write that has its permit runs to completion with the permit moved
//! into it (`run_to_completion`), so a caller dropping its future cannot let a hold begin
//! while the write is still changing the store. `put_stream` reads from a borrowed reader and
//! cannot be detached: it holds its permit in the caller's future, so dropping that future
//! drops the permit and the inner `put_stream` together (the inner store's own cancellation
//! rules then decide whether the value landed).

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{OwnedRwLockReadGuard, OwnedRwLockWriteGuard, RwLock};

use crate::completion::run_to_completion;
use crate::{Key, KvStore, ObjectMeta, PutOptions, Result, ValueReader, WriteBatch};

/// A layer whose writes can be held back (see the module docs). Cloning shares the store and
/// the barrier.
#[derive(Clone, Debug)]
pub struct WriteBarrier<S> {
    inner: Arc<S>,
    gate: Arc<RwLock<()>>,
}

/// The handle that holds a [`WriteBarrier`]'s writes back.
#[derive(Clone, Debug)]
pub struct Barrier {
    gate: Arc<RwLock<()>>,
}

/// While alive, no write passes the barrier it came from.
#[derive(Debug)]
pub struct BarrierHold {
    _guard: OwnedRwLockWriteGuard<()>,
}

impl<S: KvStore + 'static> WriteBarrier<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        WriteBarrier {
            inner: Arc::new(inner),
            gate: Arc::new(RwLock::new(())),
        }
    }

    /// The handle that holds this layer's writes back.
    pub fn barrier(&self) -> Barrier {
        Barrier {
            gate: self.gate.clone(),
        }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    async fn permit(&self) -> OwnedRwLockReadGuard<()> {
        self.gate.clone().read_owned().await
    }

    /// Runs the write `op` on the inner store under a permit that moves into its
    /// run-to-completion task.
    async fn gated<T, F, Fut>(&self, op: F) -> Result<T>
    where
        F: FnOnce(Arc<S>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T>> + Send + 'static,
        T: Send + 'static,
    {
        let permit = self.permit().await;
        let inner = self.inner.clone();
        run_to_completion(async move {
            let _permit = permit;
            op(inner).await
        })
        .await
    }
}

impl Barrier {
    /// Waits until every write in flight has finished, then holds new writes back until the
    /// returned hold is dropped.
    pub async fn hold(&self) -> BarrierHold {
        BarrierHold {
            _guard: self.gate.clone().write_owned().await,
        }
    }
}

crate::kv_store_impl! {
    impl[S: KvStore + 'static] KvStore for WriteBarrier<S>;
    forward(inner): [capabilities, get, head, scan, scan_meta, get_range, exists, list_keys,
        get_stream, get_many, stats];
    provided: [];
    {
        async fn put_with(&self, key: &Key, value: Bytes, options: &PutOptions) -> Result<ObjectMeta> {
            let (key, options) = (key.clone(), options.clone());
            self.gated(move |s| async move { s.put_with(&key, value, &options).await }).await
        }

        async fn put(&self, key: &Key, value: Bytes) -> Result<ObjectMeta> {
            let key = key.clone();
            self.gated(move |s| async move { s.put(&key, value).await }).await
        }

        async fn delete(&self, key: &Key) -> Result<()> {
            let key = key.clone();
            self.gated(move |s| async move { s.delete(&key).await }).await
        }

        async fn write_batch(&self, batch: WriteBatch) -> Result<()> {
            self.gated(move |s| async move { s.write_batch(batch).await }).await
        }

        async fn put_stream(
            &self,
            key: &Key,
            reader: ValueReader<'_>,
            options: &PutOptions,
        ) -> Result<ObjectMeta> {
            let _permit = self.permit().await;
            self.inner.put_stream(key, reader, options).await
        }

        async fn clear(&self) -> Result<u64> {
            self.gated(|s| async move { s.clear().await }).await
        }
    }
}
