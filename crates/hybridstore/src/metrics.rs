//! The metrics layer: a `KvStore` that records one access event per operation into the
//! analytics sink, timing it as the caller sees it (so above the cache, with the tier that
//! answered each `get`).
//!
//! Recording is a non-blocking offer to a bounded channel: when the analytics writer is
//! behind, events are dropped and counted (`SinkStats::dropped_full`), the operation is not
//! slowed. `scan` and `scan_meta` streams and `stats` are passed through unrecorded.
//!
//! An event of a key in a tenant's namespace (`t/<tenant>/…`, where a
//! [`Tenant`](crate::tenants::Tenant)'s keys arrive) names that tenant.

use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use hybridstore_analytics::{AccessEvent, CacheTier, EventSink, Operation, Outcome};
use hybridstore_cache::{ServedBy, observe_served_by};
use hybridstore_core::{
    BatchOp, Capabilities, EntryStream, Key, KeyRange, KvStore, MetaStream, ObjectMeta, PutOptions,
    Result, StoreStats, TenantId, WriteBatch,
};

/// Records an access event for every operation on `inner`.
#[derive(Debug)]
pub struct MeteredStore {
    inner: Arc<dyn KvStore>,
    sink: EventSink,
    backend: Arc<str>,
    record_keys: bool,
}

impl MeteredStore {
    /// Wraps `inner`; events name `backend` (the primary store's kind) and, unless
    /// `record_keys` is false, carry the key text (its hash always).
    pub fn new(
        inner: Arc<dyn KvStore>,
        sink: EventSink,
        backend: &str,
        record_keys: bool,
    ) -> MeteredStore {
        MeteredStore {
            inner,
            sink,
            backend: backend.into(),
            record_keys,
        }
    }

    fn event(&self, operation: Operation, key: Option<&Key>, started: Instant) -> AccessEvent {
        let mut event = AccessEvent::new(operation, self.backend.clone(), None);
        if let Some(key) = key {
            event = event.with_key_bytes(key.as_bytes(), self.record_keys);
            // A tenant handle's keys reach this layer in their namespace (`t/<tenant>/…`).
            event.tenant = TenantId::name_in_key(key).map(Arc::from);
        }
        event.latency_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        // Stamped when the operation began.
        event.timestamp_us = event
            .timestamp_us
            .saturating_sub(i64::try_from(event.latency_us).unwrap_or(i64::MAX));
        event
    }

    /// Records `operation` on `key` as ended by `result`; `measure` gives the bytes moved and
    /// whether the key was found.
    fn record<T>(
        &self,
        operation: Operation,
        key: Option<&Key>,
        started: Instant,
        result: &Result<T>,
        measure: impl FnOnce(&T) -> (u64, bool),
    ) {
        self.record_tier(operation, key, started, result.as_ref().map(measure), None);
    }

    fn record_tier(
        &self,
        operation: Operation,
        key: Option<&Key>,
        started: Instant,
        measured: std::result::Result<(u64, bool), &hybridstore_core::Error>,
        cache_tier: Option<CacheTier>,
    ) {
        let mut event = self.event(operation, key, started);
        event.cache_tier = cache_tier;
        match measured {
            Ok((bytes, found)) => {
                event.bytes = bytes;
                if !found {
                    event.outcome = Outcome::NOT_FOUND;
                }
            }
            Err(e) => event.outcome = Outcome::error(e.kind()),
        }
        self.sink.record(event);
    }
}

fn tier_of(served_by: Option<ServedBy>) -> Option<CacheTier> {
    served_by.map(|s| match s {
        ServedBy::L1 => CacheTier::L1Hit,
        ServedBy::L2 => CacheTier::L2Hit,
        ServedBy::Store => CacheTier::Miss,
    })
}

fn value_len(v: &Option<Bytes>) -> (u64, bool) {
    (v.as_ref().map_or(0, |b| b.len() as u64), v.is_some())
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl KvStore for MeteredStore {
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn get(&self, key: &Key) -> Result<Option<Bytes>> {
        let started = Instant::now();
        let (result, served_by) = observe_served_by(self.inner.get(key)).await;
        let measured = result.as_ref().map(value_len);
        self.record_tier(
            Operation::Get,
            Some(key),
            started,
            measured,
            tier_of(served_by),
        );
        result
    }

    async fn head(&self, key: &Key) -> Result<Option<ObjectMeta>> {
        let started = Instant::now();
        let result = self.inner.head(key).await;
        self.record(Operation::Head, Some(key), started, &result, |m| {
            (0, m.is_some())
        });
        result
    }

    async fn put_with(&self, key: &Key, value: Bytes, options: &PutOptions) -> Result<ObjectMeta> {
        let started = Instant::now();
        let len = value.len() as u64;
        let result = self.inner.put_with(key, value, options).await;
        self.record(Operation::Put, Some(key), started, &result, |_| (len, true));
        result
    }

    async fn put(&self, key: &Key, value: Bytes) -> Result<ObjectMeta> {
        let started = Instant::now();
        let len = value.len() as u64;
        let result = self.inner.put(key, value).await;
        self.record(Operation::Put, Some(key), started, &result, |_| (len, true));
        result
    }

    async fn delete(&self, key: &Key) -> Result<()> {
        let started = Instant::now();
        let result = self.inner.delete(key).await;
        self.record(Operation::Delete, Some(key), started, &result, |_| {
            (0, true)
        });
        result
    }

    fn scan(&self, range: KeyRange, limit: Option<usize>) -> EntryStream<'_> {
        self.inner.scan(range, limit)
    }

    fn scan_meta(&self, range: KeyRange, limit: Option<usize>) -> MetaStream<'_> {
        self.inner.scan_meta(range, limit)
    }

    async fn write_batch(&self, batch: WriteBatch) -> Result<()> {
        let started = Instant::now();
        // (operation, key, bytes) of each put and delete, taken before the batch moves.
        let ops: Vec<(Operation, Key, u64)> = batch
            .ops()
            .iter()
            .filter_map(|op| match op {
                BatchOp::Put { key, value, .. } => {
                    Some((Operation::BatchPut, key.clone(), value.len() as u64))
                }
                BatchOp::Delete { key } => Some((Operation::BatchDelete, key.clone(), 0)),
                BatchOp::Check { .. } => None,
            })
            .collect();
        let result = self.inner.write_batch(batch).await;
        for (operation, key, len) in &ops {
            self.record(*operation, Some(key), started, &result, |_| (*len, true));
        }
        result
    }

    async fn get_stream(
        &self,
        key: &Key,
        range: Option<Range<u64>>,
    ) -> Result<Option<hybridstore_core::ValueStream<'_>>> {
        let started = Instant::now();
        let operation = if range.is_some() {
            Operation::GetRange
        } else {
            Operation::Get
        };
        let result = self.inner.get_stream(key, range).await;
        // The event is the stream's opening: its length, not the time to read it all.
        self.record(operation, Some(key), started, &result, |s| {
            (s.as_ref().map_or(0, |s| s.len), s.is_some())
        });
        result
    }

    async fn put_stream(
        &self,
        key: &Key,
        reader: hybridstore_core::ValueReader<'_>,
        options: &PutOptions,
    ) -> Result<ObjectMeta> {
        let started = Instant::now();
        let result = self.inner.put_stream(key, reader, options).await;
        self.record(Operation::Put, Some(key), started, &result, |m| {
            (m.size, true)
        });
        result
    }

    async fn get_range(&self, key: &Key, range: Range<u64>) -> Result<Option<Bytes>> {
        let started = Instant::now();
        let result = self.inner.get_range(key, range).await;
        self.record(Operation::GetRange, Some(key), started, &result, value_len);
        result
    }

    async fn exists(&self, key: &Key) -> Result<bool> {
        let started = Instant::now();
        let result = self.inner.exists(key).await;
        self.record(Operation::Exists, Some(key), started, &result, |found| {
            (0, *found)
        });
        result
    }

    async fn list_keys(&self, range: KeyRange, limit: Option<usize>) -> Result<Vec<Key>> {
        let started = Instant::now();
        let result = self.inner.list_keys(range, limit).await;
        self.record(Operation::List, None, started, &result, |_| (0, true));
        result
    }

    async fn get_many(&self, keys: &[Key]) -> Result<Vec<Option<Bytes>>> {
        let started = Instant::now();
        let result = self.inner.get_many(keys).await;
        match &result {
            Ok(values) => {
                for (key, value) in keys.iter().zip(values) {
                    let measured = Ok(value_len(value));
                    self.record_tier(Operation::GetMany, Some(key), started, measured, None);
                }
            }
            Err(e) => {
                for key in keys {
                    self.record_tier(Operation::GetMany, Some(key), started, Err(e), None);
                }
            }
        }
        result
    }

    async fn clear(&self) -> Result<u64> {
        let started = Instant::now();
        let result = self.inner.clear().await;
        self.record(Operation::Clear, None, started, &result, |_| (0, true));
        result
    }

    async fn stats(&self) -> Result<StoreStats> {
        self.inner.stats().await
    }
}
