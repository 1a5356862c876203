//! The key/value stack, assembled from a declarative list of layers.
//!
//! A [`StackBuilder`] takes the primary store and any set of [`Layer`]s, in any order, and
//! puts them together in the one order the system relies on, outermost first:
//!
//! ```text
//! context  → ErrorContext: operation, key and backend on errors the layers below raise
//! metrics  → times and records what callers see (cache hits included)
//! cache    → L1 in process, L2 in Redis; invalidated by every write through it
//! context  → ErrorContext on every error from dedup and the primary (what `uncached` is)
//! dedup    → manifests in the primary, chunks in packs
//! primary  → FileStore, SqlStore on SQLite or PostgreSQL
//! ```
//!
//! The order is not a choice: metrics above the cache so a cache hit is measured as the
//! caller saw it; the cache above dedup so a hit skips chunk reads and re-hashing; dedup
//! directly on the primary so manifests are what the primary holds. `verify` and `export`
//! read [`Stack::uncached`], the stack below the cache, so they check the medium and do not
//! flood the cache.

use std::sync::Arc;

use hybridstore_cache::{CacheConfig, CachedStore};
use hybridstore_core::{Error, ErrorContext, KvStore, Result};
use hybridstore_dedup::{DedupOptions, DedupStore};

use crate::{CachedStack, DedupPrimary};

/// One layer of the key/value stack. Where it goes is the builder's business, not the
/// caller's (see the [module docs](self)).
#[derive(Debug)]
#[non_exhaustive]
pub enum Layer {
    /// One access event per operation into the analytics sink (`MeteredStore`).
    #[cfg(feature = "analytics")]
    Metrics {
        /// Where events go.
        sink: hybridstore_analytics::EventSink,
        /// Whether events carry the key's text (its hash always).
        record_keys: bool,
    },
    /// The two-tier cache (`CachedStore`).
    Cache(CacheConfig),
    /// Content-defined deduplication (`DedupStore`): chunk packs in `chunks`.
    Dedup {
        /// The store holding the chunk packs (a `FileStore` under `<data_dir>/chunks`).
        chunks: Arc<dyn KvStore>,
        /// Chunking and pack settings.
        options: DedupOptions,
    },
}

impl Layer {
    /// Position from the primary upwards: a lower rank sits closer to the primary.
    fn rank(&self) -> u8 {
        match self {
            Layer::Dedup { .. } => 0,
            Layer::Cache(_) => 1,
            #[cfg(feature = "analytics")]
            Layer::Metrics { .. } => 2,
        }
    }

    /// The layer's name in errors.
    pub fn name(&self) -> &'static str {
        match self {
            Layer::Dedup { .. } => "dedup",
            Layer::Cache(_) => "cache",
            #[cfg(feature = "analytics")]
            Layer::Metrics { .. } => "metrics",
        }
    }
}

/// The assembled stack and handles on the layers that have operations of their own.
#[derive(Debug, Clone)]
pub struct Stack {
    /// The whole stack: what callers use.
    pub kv: Arc<dyn KvStore>,
    /// The stack below the cache (and metrics), with its error context.
    pub uncached: Arc<dyn KvStore>,
    /// The dedup layer, if it is in the stack (statistics, garbage collection).
    pub dedup: Option<Arc<DedupPrimary>>,
    /// The cache layer, if it is in the stack (statistics).
    pub cache: Option<Arc<CachedStack>>,
}

/// Builds a [`Stack`] over a primary store from a set of [`Layer`]s.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use std::sync::Arc;
/// use hybridstore::cache::CacheConfig;
/// use hybridstore::core::{Key, KvStore, MemoryStore};
/// use hybridstore::stack::{Layer, StackBuilder};
///
/// let stack = StackBuilder::new(Arc::new(MemoryStore::new()), "memory")
///     .layer(Layer::Cache(CacheConfig::l1_only(1 << 20)))
///     .build()
///     .await?;
/// stack.kv.put(&Key::new("a")?, "1".into()).await?;
/// assert!(stack.cache.is_some() && stack.dedup.is_none());
/// let err = stack.kv.get_range(&Key::new("a")?, 0..5).await.unwrap_err();
/// assert!(err.to_string().contains("backend: memory"), "{err}");
/// # Ok::<(), hybridstore::core::Error>(())
/// # }).unwrap();
/// ```
#[derive(Debug)]
pub struct StackBuilder {
    primary: Arc<dyn KvStore>,
    backend: &'static str,
    layers: Vec<Layer>,
}

impl StackBuilder {
    /// A stack over `primary`, whose errors name `backend` (`"file"`, `"sqlite"`,
    /// `"postgres"`).
    pub fn new(primary: Arc<dyn KvStore>, backend: &'static str) -> Self {
        StackBuilder {
            primary,
            backend,
            layers: Vec::new(),
        }
    }

    /// Adds `layer`; the order of calls does not matter.
    pub fn layer(mut self, layer: Layer) -> Self {
        self.layers.push(layer);
        self
    }

    /// Adds `layer` if it is `Some`.
    pub fn maybe_layer(self, layer: Option<Layer>) -> Self {
        match layer {
            Some(layer) => self.layer(layer),
            None => self,
        }
    }

    /// Opens each layer over the one below it, primary first.
    ///
    /// # Errors
    /// `InvalidInput` if a layer is given twice or a layer's configuration is invalid;
    /// errors of opening the dedup layer (reading the chunk index).
    pub async fn build(self) -> Result<Stack> {
        let StackBuilder {
            primary,
            backend,
            mut layers,
        } = self;
        layers.sort_by_key(Layer::rank);
        if let Some(w) = layers.windows(2).find(|w| w[0].rank() == w[1].rank()) {
            return Err(Error::invalid_input(format!(
                "the {} layer is given twice",
                w[0].name()
            )));
        }
        let mut kv = primary;
        let mut uncached: Option<Arc<dyn KvStore>> = None;
        let mut dedup = None;
        let mut cache = None;
        for layer in layers {
            // The error context goes over dedup and the primary, below everything else.
            if layer.rank() > 0 && uncached.is_none() {
                let context: Arc<dyn KvStore> = Arc::new(ErrorContext::new(kv, backend));
                uncached = Some(context.clone());
                kv = context;
            }
            match layer {
                Layer::Dedup { chunks, options } => {
                    let chunks: Arc<dyn KvStore> = Arc::new(ErrorContext::new(chunks, "chunks"));
                    let store = Arc::new(DedupStore::open(kv, chunks, options).await?);
                    dedup = Some(store.clone());
                    kv = store;
                }
                Layer::Cache(config) => {
                    let cached = Arc::new(CachedStore::open(kv, config)?);
                    cache = Some(cached.clone());
                    kv = cached;
                }
                #[cfg(feature = "analytics")]
                Layer::Metrics { sink, record_keys } => {
                    kv = Arc::new(crate::metrics::MeteredStore::new(
                        kv,
                        sink,
                        backend,
                        record_keys,
                    ));
                }
            }
        }
        // The context over the whole stack names errors the layers above dedup raise (a cache
        // slicing a range it holds); those from below already carry it, once. Without such
        // layers it is the only one, and what `uncached` is.
        let kv: Arc<dyn KvStore> = Arc::new(ErrorContext::new(kv, backend));
        let uncached = uncached.unwrap_or_else(|| kv.clone());
        Ok(Stack {
            kv,
            uncached,
            dedup,
            cache,
        })
    }
}
