//! Test stores: one that counts backend reads, and one whose next `get` can be held after it
//! read the backend (a failpoint for the set-after-delete race).

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hybridstore_cache::testing::RedisServer;
use hybridstore_cache::{CacheConfig, RedisConfig};
use hybridstore_core::{Bytes, Key, KvStore, Result};
use tokio::sync::oneshot;

/// A held `get`: `reached` fires once the backend value was read; the get returns only when
/// `resume` is sent.
pub struct Hold {
    pub reached: oneshot::Receiver<()>,
    pub resume: oneshot::Sender<()>,
}

type Armed = (oneshot::Sender<()>, oneshot::Receiver<()>);

/// Counts reads of the inner store and can hold the next `get` of one key.
#[derive(Debug)]
pub struct Probe<S> {
    pub inner: S,
    pub gets: AtomicU64,
    #[allow(clippy::type_complexity)]
    hold: Mutex<Option<(Key, Armed)>>,
}

impl std::fmt::Debug for Hold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hold")
    }
}

impl<S: KvStore> Probe<S> {
    pub fn new(inner: S) -> Arc<Self> {
        Arc::new(Probe {
            inner,
            gets: AtomicU64::new(0),
            hold: Mutex::new(None),
        })
    }

    pub fn reads(&self) -> u64 {
        self.gets.load(Ordering::SeqCst)
    }

    /// Holds the next `get` of `key` after it has read the inner store.
    pub fn hold_next_get(&self, key: &Key) -> Hold {
        let (reached_tx, reached_rx) = oneshot::channel();
        let (resume_tx, resume_rx) = oneshot::channel();
        *self.hold.lock().unwrap() = Some((key.clone(), (reached_tx, resume_rx)));
        Hold {
            reached: reached_rx,
            resume: resume_tx,
        }
    }
}

hybridstore_core::kv_store_impl! {
    impl[S: KvStore] KvStore for Probe<S>;
    forward(inner): [capabilities, head, put_with, put, delete, scan, scan_meta, write_batch,
        exists, list_keys, clear, stats, put_stream];
    // Through `get`, so a range read or a stream is counted and can be held like a get.
    provided: [get_range, get_stream];
    {
        async fn get(&self, key: &Key) -> Result<Option<Bytes>> {
            self.gets.fetch_add(1, Ordering::SeqCst);
            let value = self.inner.get(key).await?;
            let armed = {
                let mut hold = self.hold.lock().unwrap();
                match hold.take() {
                    Some((k, armed)) if &k == key => Some(armed),
                    other => {
                        *hold = other;
                        None
                    }
                }
            };
            if let Some((reached, resume)) = armed {
                let _ = reached.send(());
                let _ = resume.await;
            }
            Ok(value)
        }

        async fn get_many(&self, keys: &[Key]) -> Result<Vec<Option<Bytes>>> {
            self.gets.fetch_add(keys.len() as u64, Ordering::SeqCst);
            self.inner.get_many(keys).await
        }
    }
}

/// Redis settings for tests: a unique namespace per store so fixtures sharing a server never
/// see each other's keys, and a short breaker so recovery happens within a test.
pub fn redis_config(server: &RedisServer) -> RedisConfig {
    RedisConfig::new(server.url())
        .with_namespace(format!("t{:016x}", rand::random::<u64>()))
        .with_breaker(3, Duration::from_millis(50), Duration::from_millis(400))
}

/// L1 (64 MiB) + L2 on `server`.
pub fn two_tiers(server: &RedisServer) -> CacheConfig {
    CacheConfig::l1_only(64 << 20).with_redis(redis_config(server))
}

pub fn key(s: &str) -> Key {
    Key::new(s.to_string()).unwrap()
}
