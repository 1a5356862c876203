//! `CacheConfig` and `RedisConfig`: every setting of a `CachedStore`, with documented defaults.

use std::time::Duration;

use hybridstore_core::{Error, Result, SecretUrl};

/// Default L1 capacity: 256 MiB, a bound that fits beside an application on a small node and
/// holds about a quarter of a million values of 1 KiB.
pub const DEFAULT_L1_CAPACITY_BYTES: u64 = 256 * 1024 * 1024;
/// Default L1 time-to-live: 5 minutes. L1 is per process and is not told about writes made by
/// other processes, so this bounds how stale another node's write can look here.
pub const DEFAULT_L1_TTL: Duration = Duration::from_secs(300);
/// Default L2 (Redis) time-to-live: 1 hour, so an entry that nobody invalidates (its writer
/// lost Redis) is gone within the hour.
pub const DEFAULT_L2_TTL: Duration = Duration::from_secs(3600);
/// Default largest cached value: 1 MiB. Larger values are read from the backend every time,
/// so one big object cannot push hundreds of small hot ones out of L1 or clog Redis.
pub const DEFAULT_MAX_VALUE_BYTES: u64 = 1024 * 1024;
/// Default TTL jitter: each entry lives its TTL times a factor drawn uniformly from
/// `1 ± 0.1`, so entries filled together do not expire together and reload at once (the cache
/// stampede of Vattani, Chierichetti and Lowenstein, "Optimal Probabilistic Cache Stampede
/// Prevention", VLDB 2015, <https://www.vldb.org/pvldb/vol8/p886-vattani.pdf>).
pub const DEFAULT_TTL_JITTER: f64 = 0.1;
/// Default bound on each Redis call (connect included): 100 ms. On loopback a `GET` takes
/// tens of microseconds; the bound is what a dead or stalled Redis can add to a call.
pub const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_millis(100);
/// Default Redis key prefix.
pub const DEFAULT_REDIS_KEY_PREFIX: &str = "hybridstore:";
/// Default Redis namespace (tenant) when none is configured.
pub const DEFAULT_REDIS_NAMESPACE: &str = "default";
/// Default number of consecutive Redis failures that open the circuit breaker.
pub const DEFAULT_BREAKER_FAILURES: u32 = 5;
/// Default first open period of the breaker; it doubles on each failed probe up to
/// [`DEFAULT_BREAKER_MAX_OPEN`] (failsafe's exponential backoff).
pub const DEFAULT_BREAKER_MIN_OPEN: Duration = Duration::from_secs(1);
/// Default longest open period of the breaker.
pub const DEFAULT_BREAKER_MAX_OPEN: Duration = Duration::from_secs(30);
/// Default lifetime of a fill lease: how long a reader that missed may take to read the
/// backend and fill Redis (after the memcache leases of Nishtala et al., NSDI'13).
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(10);
/// Invalidations that failed (Redis down) are remembered, up to this many keys, and replayed
/// before Redis is read again; past it the whole namespace is flushed instead.
pub const MAX_PENDING_INVALIDATIONS: usize = 10_000;

/// Settings of a [`CachedStore`](crate::CachedStore).
///
/// ```
/// use hybridstore_cache::CacheConfig;
/// let config = CacheConfig::default();
/// assert_eq!(config.l1_capacity_bytes, 256 * 1024 * 1024);
/// assert!(config.redis.is_none());
/// ```
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct CacheConfig {
    /// L1 (in-process moka cache) capacity in bytes, keys and a 64-byte per-entry overhead
    /// included; `0` turns L1 off (and with it request coalescing). Default
    /// [`DEFAULT_L1_CAPACITY_BYTES`].
    pub l1_capacity_bytes: u64,
    /// L1 time-to-live (before jitter). Default [`DEFAULT_L1_TTL`].
    pub l1_ttl: Duration,
    /// Largest value, in bytes, either tier keeps. Default [`DEFAULT_MAX_VALUE_BYTES`].
    pub max_value_bytes: u64,
    /// TTL jitter as a fraction in `0.0..=0.5`. Default [`DEFAULT_TTL_JITTER`].
    pub ttl_jitter: f64,
    /// The L2 tier; `None` (the default) runs L1 alone.
    pub redis: Option<RedisConfig>,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            l1_capacity_bytes: DEFAULT_L1_CAPACITY_BYTES,
            l1_ttl: DEFAULT_L1_TTL,
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
            ttl_jitter: DEFAULT_TTL_JITTER,
            redis: None,
        }
    }
}

impl CacheConfig {
    /// L1 only, with `capacity_bytes` of memory.
    pub fn l1_only(capacity_bytes: u64) -> Self {
        CacheConfig {
            l1_capacity_bytes: capacity_bytes,
            ..Self::default()
        }
    }

    /// Sets the L2 tier.
    pub fn with_redis(mut self, redis: RedisConfig) -> Self {
        self.redis = Some(redis);
        self
    }

    /// Sets [`l1_ttl`](Self::l1_ttl).
    pub fn with_l1_ttl(mut self, ttl: Duration) -> Self {
        self.l1_ttl = ttl;
        self
    }

    /// Sets [`max_value_bytes`](Self::max_value_bytes).
    pub fn with_max_value_bytes(mut self, bytes: u64) -> Self {
        self.max_value_bytes = bytes;
        self
    }

    /// Checks values that make no sense.
    ///
    /// # Errors
    /// `InvalidInput` if a TTL is zero, the jitter is outside `0.0..=0.5`, or the Redis
    /// settings are invalid (see [`RedisConfig::validate`]).
    pub fn validate(&self) -> Result<()> {
        if self.l1_ttl.is_zero() {
            return Err(Error::invalid_input("cache l1_ttl must be above zero"));
        }
        if !(0.0..=0.5).contains(&self.ttl_jitter) {
            return Err(Error::invalid_input(format!(
                "cache ttl_jitter must be within 0.0..=0.5, got {}",
                self.ttl_jitter
            )));
        }
        if let Some(redis) = &self.redis {
            redis.validate()?;
        }
        Ok(())
    }
}

/// Settings of the Redis L2 tier.
///
/// Keys in Redis are `<key_prefix><namespace>:v:<key bytes>` (values) and
/// `<key_prefix><namespace>:l:<key bytes>` (fill leases). The namespace is a tenant name
/// (`[A-Za-z0-9_.-]{1,64}`, no `:`), so one namespace's keys never collide with another's.
/// The URL's password is kept in a [`SecretUrl`]: `Debug` output and logs show `***`.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port[/db]`.
    pub url: SecretUrl,
    /// Prefix of every Redis key; `[A-Za-z0-9_.:-]{0,64}`. Default `hybridstore:`.
    pub key_prefix: String,
    /// Namespace (tenant) inside the prefix. Default `default`.
    pub namespace: String,
    /// L2 time-to-live (before jitter). Default [`DEFAULT_L2_TTL`].
    pub ttl: Duration,
    /// Bound on each Redis call, connecting included. Default [`DEFAULT_REDIS_TIMEOUT`].
    pub timeout: Duration,
    /// Consecutive failures that open the breaker. Default [`DEFAULT_BREAKER_FAILURES`].
    pub breaker_failures: u32,
    /// First open period of the breaker. Default [`DEFAULT_BREAKER_MIN_OPEN`].
    pub breaker_min_open: Duration,
    /// Longest open period of the breaker. Default [`DEFAULT_BREAKER_MAX_OPEN`].
    pub breaker_max_open: Duration,
    /// Lifetime of a fill lease. Default [`DEFAULT_LEASE_TTL`].
    pub lease_ttl: Duration,
}

impl RedisConfig {
    /// Defaults for the Redis at `url`.
    pub fn new(url: impl Into<SecretUrl>) -> Self {
        RedisConfig {
            url: url.into(),
            key_prefix: DEFAULT_REDIS_KEY_PREFIX.to_string(),
            namespace: DEFAULT_REDIS_NAMESPACE.to_string(),
            ttl: DEFAULT_L2_TTL,
            timeout: DEFAULT_REDIS_TIMEOUT,
            breaker_failures: DEFAULT_BREAKER_FAILURES,
            breaker_min_open: DEFAULT_BREAKER_MIN_OPEN,
            breaker_max_open: DEFAULT_BREAKER_MAX_OPEN,
            lease_ttl: DEFAULT_LEASE_TTL,
        }
    }

    /// Sets [`namespace`](Self::namespace).
    pub fn with_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// Sets [`key_prefix`](Self::key_prefix).
    pub fn with_key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// Sets [`timeout`](Self::timeout).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the breaker's open periods.
    pub fn with_breaker(mut self, failures: u32, min_open: Duration, max_open: Duration) -> Self {
        self.breaker_failures = failures;
        self.breaker_min_open = min_open;
        self.breaker_max_open = max_open;
        self
    }

    /// Checks the settings.
    ///
    /// # Errors
    /// `InvalidInput` if the URL is not `redis://` or `rediss://`, the prefix or namespace
    /// has a character outside its alphabet or is too long, a duration is zero, or
    /// `breaker_failures` is zero.
    pub fn validate(&self) -> Result<()> {
        let url = self.url.expose();
        if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
            return Err(Error::invalid_input(format!(
                "redis URL must start with redis:// or rediss://, got {}",
                self.url
            )));
        }
        let prefix_ok = self.key_prefix.len() <= 64
            && self
                .key_prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.:-".contains(&b));
        if !prefix_ok {
            return Err(Error::invalid_input(format!(
                "redis key prefix {:?} must be at most 64 of [A-Za-z0-9_.:-]",
                self.key_prefix
            )));
        }
        hybridstore_core::TenantId::new(self.namespace.clone())
            .map_err(|e| Error::invalid_input(format!("redis namespace: {}", e.message())))?;
        for (name, d) in [
            ("ttl", self.ttl),
            ("timeout", self.timeout),
            ("breaker_min_open", self.breaker_min_open),
            ("breaker_max_open", self.breaker_max_open),
            ("lease_ttl", self.lease_ttl),
        ] {
            if d.is_zero() {
                return Err(Error::invalid_input(format!(
                    "redis {name} must be above zero"
                )));
            }
        }
        if self.breaker_failures == 0 {
            return Err(Error::invalid_input(
                "redis breaker_failures must be at least 1",
            ));
        }
        Ok(())
    }
}
