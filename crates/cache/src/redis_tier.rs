//! The L2 tier: Redis through a `ConnectionManager`, every call bounded by a timeout, a circuit
//! breaker in front, fill leases against stale sets, and a list of invalidations to replay.
//!
//! Nothing here returns an error to the store: a Redis failure is counted, fed to the breaker
//! and turned into "no answer", and the store reads its backend instead.

use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use bytes::Bytes;
use failsafe::failure_policy::ConsecutiveFailures;
use failsafe::{Instrument, StateMachine};
use hybridstore_core::{Error, ErrorKind, Key, Result};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{RedisResult, Script, Value};

use crate::config::{MAX_PENDING_INVALIDATIONS, RedisConfig};
use crate::stats::Counters;

/// First byte of every value this crate writes to Redis, then a CRC-32 (little endian) of
/// the payload, then the payload.
const FRAME_MAGIC: u8 = 0xC1;
const FRAME_HEADER: usize = 5;
/// Keys per `MGET`, per lease pipeline and per fill script call: bounds one reply's size
/// (at most 64 × `max_value_bytes`).
const KEYS_PER_CALL: usize = 64;
/// Keys per `DEL` (two Redis keys each: value and lease).
const KEYS_PER_DEL: usize = 500;
/// Keys per `SCAN` step when flushing a namespace.
const SCAN_COUNT: usize = 1000;

/// Sets each value whose lease is still the one its reader took, then drops the lease.
/// KEYS: value key, lease key, … ARGV: token, value, ttl in ms, … (three per pair).
/// A writer's invalidation deletes the lease, so a reader that loaded before the write can
/// never put its old value back (memcache leases, Nishtala et al., NSDI'13, §3.2.1).
const FILL_SCRIPT: &str = r"
local filled = 0
for i = 1, #KEYS, 2 do
  local a = (i - 1) / 2 * 3
  if redis.call('GET', KEYS[i + 1]) == ARGV[a + 1] then
    redis.call('SET', KEYS[i], ARGV[a + 2], 'PX', ARGV[a + 3])
    redis.call('DEL', KEYS[i + 1])
    filled = filled + 1
  end
end
return filled
";

type Breaker = StateMachine<ConsecutiveFailures<OpenPeriods>, BreakerLog>;

/// The breaker's open periods: `min`, `2 × min`, `4 × min`, … capped at `max`. failsafe's own
/// `backoff::exponential` panics on periods under one second, which tests need.
#[derive(Clone, Debug)]
struct OpenPeriods {
    next: Duration,
    max: Duration,
}

impl Iterator for OpenPeriods {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let period = self.next;
        self.next = period.saturating_mul(2).min(self.max);
        Some(period)
    }
}

/// Counts and logs the breaker's transitions.
struct BreakerLog {
    counters: Arc<Counters>,
    url: String,
}

impl Instrument for BreakerLog {
    fn on_call_rejected(&self) {}

    fn on_open(&self) {
        Counters::one(&self.counters.breaker_opens);
        tracing::warn!(redis = %self.url, "redis cache tier unavailable; serving from L1 and the backend");
    }

    fn on_half_open(&self) {
        tracing::debug!(redis = %self.url, "probing the redis cache tier");
    }

    fn on_closed(&self) {
        tracing::info!(redis = %self.url, "redis cache tier available");
    }
}

/// Invalidations that could not be sent.
#[derive(Default)]
struct Pending {
    keys: HashSet<Key>,
    /// More than [`MAX_PENDING_INVALIDATIONS`] failed: flush the whole namespace instead.
    overflowed: bool,
}

impl Pending {
    /// Keys waiting, an overflow counting as one more than the list may hold.
    fn len(&self) -> usize {
        if self.overflowed {
            MAX_PENDING_INVALIDATIONS + 1
        } else {
            self.keys.len()
        }
    }
}

/// What a Redis lookup found for one key.
#[derive(Debug)]
pub(crate) enum Lookup {
    /// The value.
    Hit(Bytes),
    /// Not in Redis; the token is this reader's fill lease if it got one.
    Miss(Option<u64>),
    /// Redis was not asked (breaker open, invalidations pending) or did not answer.
    Skipped,
}

pub(crate) struct RedisTier {
    conn: ConnectionManager,
    breaker: Breaker,
    timeout: Duration,
    ttl: Duration,
    lease_ttl: Duration,
    jitter: f64,
    value_prefix: Vec<u8>,
    lease_prefix: Vec<u8>,
    scan_pattern: String,
    url: String,
    pending: Mutex<Pending>,
    /// `pending.len()`, readable without the lock on every Redis read.
    pending_len: AtomicUsize,
    flush_gate: tokio::sync::Mutex<()>,
    /// A background task is replaying the pending invalidations.
    replaying: AtomicBool,
    /// Longest wait between two replay attempts (the breaker's longest open period).
    replay_max_delay: Duration,
    fill_script: Script,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for RedisTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTier")
            .field("url", &self.url)
            .field("namespace", &String::from_utf8_lossy(&self.value_prefix))
            .field("breaker", &self.breaker)
            .finish()
    }
}

impl RedisTier {
    /// A tier that connects lazily: opening never waits for Redis, so a store opens while
    /// Redis is down and starts using it when it answers.
    /// `config` has been validated by [`CacheConfig::validate`](crate::CacheConfig::validate).
    pub fn open(config: &RedisConfig, jitter: f64, counters: Arc<Counters>) -> Result<Self> {
        let url = config.url.redacted();
        if tokio::runtime::Handle::try_current().is_err() {
            // The connection manager spawns its reconnect task on the current runtime.
            return Err(Error::invalid_input(format!(
                "a cache with Redis ({url}) must be opened inside a tokio runtime"
            )));
        }
        let client = redis::Client::open(config.url.expose()).map_err(|e| {
            // The error names the URL's problem, not the URL; show the redacted form.
            Error::invalid_input(format!("invalid redis URL {url}: {e}"))
        })?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.timeout))
            .set_response_timeout(Some(config.timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(10))
            .set_max_delay(config.timeout);
        let conn =
            ConnectionManager::new_lazy_with_config(client, manager_config).map_err(|e| {
                Error::new(
                    ErrorKind::Unavailable,
                    format!("redis client for {url}: {e}"),
                )
            })?;
        let breaker = failsafe::Config::new()
            .failure_policy(failsafe::failure_policy::consecutive_failures(
                config.breaker_failures,
                OpenPeriods {
                    next: config.breaker_min_open,
                    max: config.breaker_max_open.max(config.breaker_min_open),
                },
            ))
            .instrument(BreakerLog {
                counters: counters.clone(),
                url: url.clone(),
            })
            .build();
        let namespace = format!("{}{}:", config.key_prefix, config.namespace);
        Ok(RedisTier {
            conn,
            breaker,
            timeout: config.timeout,
            ttl: config.ttl,
            lease_ttl: config.lease_ttl,
            jitter,
            value_prefix: format!("{namespace}v:").into_bytes(),
            lease_prefix: format!("{namespace}l:").into_bytes(),
            // The prefix and namespace alphabets exclude glob metacharacters.
            scan_pattern: format!("{namespace}*"),
            url,
            pending: Mutex::new(Pending::default()),
            pending_len: AtomicUsize::new(0),
            flush_gate: tokio::sync::Mutex::new(()),
            replaying: AtomicBool::new(false),
            replay_max_delay: config.breaker_max_open.max(config.breaker_min_open),
            fill_script: Script::new(FILL_SCRIPT),
            counters,
        })
    }

    fn value_key(&self, key: &Key) -> Vec<u8> {
        [self.value_prefix.as_slice(), key.as_bytes()].concat()
    }

    fn lease_key(&self, key: &Key) -> Vec<u8> {
        [self.lease_prefix.as_slice(), key.as_bytes()].concat()
    }

    /// Runs one Redis call within the timeout; a failure is counted, fed to the breaker and
    /// logged at debug level, and becomes `None`.
    async fn call<T>(&self, what: &str, fut: impl Future<Output = RedisResult<T>>) -> Option<T> {
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(Ok(value)) => {
                self.breaker.on_success();
                Some(value)
            }
            Ok(Err(e)) => {
                self.failed(what, &e);
                None
            }
            Err(_) => {
                self.failed(what, &"timed out");
                None
            }
        }
    }

    /// Sends `PING` (<https://redis.io/docs/latest/commands/ping/>) within the call timeout,
    /// for health checks: `Ok` once Redis answers, else why not. It neither counts as a
    /// failure nor feeds the breaker, so probing never changes how the cache behaves.
    pub(crate) async fn ping(&self) -> std::result::Result<(), String> {
        let mut conn = self.conn.clone();
        let ping = redis::cmd("PING");
        match tokio::time::timeout(self.timeout, ping.query_async::<String>(&mut conn)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {} ms", self.timeout.as_millis())),
        }
    }

    fn failed(&self, what: &str, e: &dyn std::fmt::Display) {
        Counters::one(&self.counters.redis_errors);
        self.breaker.on_error();
        tracing::debug!(redis = %self.url, op = what, error = %e, "redis call failed");
    }

    /// Whether Redis may be read now: the breaker lets calls through and no invalidation is
    /// waiting (the background replay sends those; reads skip Redis until it has). Reads
    /// that skip Redis are counted. Never waits for the replay itself.
    fn readable(self: &Arc<Self>, keys: u64) -> bool {
        let pending = self.pending_len.load(Ordering::SeqCst) > 0;
        if pending {
            self.ensure_replay();
        }
        let ready = !pending && self.breaker.is_call_permitted();
        if !ready {
            Counters::add(&self.counters.l2_skipped, keys);
        }
        ready
    }

    /// Starts the background replay of pending invalidations unless it runs already. It
    /// retries with exponential backoff (10 ms doubling up to the breaker's longest open
    /// period) until every invalidation reached Redis, whether or not this process reads
    /// again: other processes that share the namespace read Redis, and their stale entries
    /// go only when the replay deletes them.
    fn ensure_replay(self: &Arc<Self>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return; // replayed when a later call runs inside a runtime
        };
        if self.replaying.swap(true, Ordering::SeqCst) {
            return;
        }
        let tier = self.clone();
        runtime.spawn(async move {
            loop {
                let backoff = ExponentialBuilder::default()
                    .with_min_delay(Duration::from_millis(10))
                    .with_max_delay(tier.replay_max_delay)
                    .without_max_times();
                let attempt = || async {
                    if tier.replay_pending().await {
                        Ok(())
                    } else {
                        Err(())
                    }
                };
                let _ = attempt.retry(backoff).sleep(tokio::time::sleep).await;
                tier.replaying.store(false, Ordering::SeqCst);
                // An invalidation deferred after the last attempt found none pending, but
                // before `replaying` was cleared, would have no task: look again.
                if tier.pending_len.load(Ordering::SeqCst) == 0
                    || tier.replaying.swap(true, Ordering::SeqCst)
                {
                    return;
                }
            }
        });
    }

    /// Number of keys whose invalidation waits to be replayed.
    pub fn pending_invalidations(&self) -> u64 {
        self.pending_len.load(Ordering::SeqCst) as u64
    }

    fn lock_pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Remembers keys whose invalidation did not reach Redis.
    fn defer_invalidation<'k>(&self, keys: impl IntoIterator<Item = &'k Key>) {
        let mut pending = self.lock_pending();
        if !pending.overflowed {
            pending.keys.extend(keys.into_iter().cloned());
            if pending.keys.len() > MAX_PENDING_INVALIDATIONS {
                pending.keys = HashSet::new();
                pending.overflowed = true;
            }
        }
        self.pending_len.store(pending.len(), Ordering::SeqCst);
    }

    /// Sends the waiting invalidations (or flushes the namespace after an overflow). Returns
    /// whether none waits any more. One task replays at a time; others skip Redis meanwhile.
    async fn replay_pending(&self) -> bool {
        if !self.breaker.is_call_permitted() {
            return false;
        }
        let Ok(_gate) = self.flush_gate.try_lock() else {
            return false;
        };
        let (keys, overflowed) = {
            let pending = self.lock_pending();
            (
                pending.keys.iter().cloned().collect::<Vec<_>>(),
                pending.overflowed,
            )
        };
        let sent = if overflowed {
            self.flush_namespace().await
        } else {
            self.delete_keys(&keys).await
        };
        if !sent {
            return false;
        }
        let mut pending = self.lock_pending();
        if overflowed {
            // Every key of the namespace is gone, including those deferred meanwhile.
            *pending = Pending::default();
            Counters::one(&self.counters.namespace_flushes);
        } else {
            for key in &keys {
                pending.keys.remove(key);
            }
        }
        let left = pending.len();
        self.pending_len.store(left, Ordering::SeqCst);
        tracing::info!(redis = %self.url, replayed = keys.len(), overflowed, "replayed deferred cache invalidations");
        left == 0
    }

    /// `DEL` of the value and lease keys of `keys`. Returns whether every call succeeded.
    async fn delete_keys(&self, keys: &[Key]) -> bool {
        for group in keys.chunks(KEYS_PER_DEL) {
            let mut cmd = redis::cmd("DEL");
            for key in group {
                cmd.arg(self.value_key(key)).arg(self.lease_key(key));
            }
            let mut conn = self.conn.clone();
            if self
                .call("del", cmd.query_async::<i64>(&mut conn))
                .await
                .is_none()
            {
                return false;
            }
        }
        true
    }

    /// Removes every key of this namespace (values and leases of every process sharing it).
    async fn flush_namespace(&self) -> bool {
        let mut cursor: u64 = 0;
        loop {
            let mut conn = self.conn.clone();
            let scan = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&self.scan_pattern)
                .arg("COUNT")
                .arg(SCAN_COUNT)
                .to_owned();
            let Some((next, found)) = self
                .call("scan", scan.query_async::<(u64, Vec<Vec<u8>>)>(&mut conn))
                .await
            else {
                return false;
            };
            if !found.is_empty() {
                let unlink = redis::cmd("UNLINK").arg(found).to_owned();
                if self
                    .call("unlink", unlink.query_async::<i64>(&mut conn))
                    .await
                    .is_none()
                {
                    return false;
                }
            }
            if next == 0 {
                return true;
            }
            cursor = next;
        }
    }

    /// Removes `keys` from Redis before a write returns; what cannot be sent now (breaker
    /// open, Redis down) is deferred: this process stops reading Redis, and a background task
    /// replays the deletes as soon as Redis answers (see `ensure_replay`).
    pub async fn invalidate(self: &Arc<Self>, keys: &[Key]) {
        if keys.is_empty() {
            return;
        }
        // Once something waits to be replayed, later invalidations queue behind it: one task
        // sends them all, in order, and the breaker sees one caller, not two.
        if self.pending_len.load(Ordering::SeqCst) > 0
            || !self.breaker.is_call_permitted()
            || !self.delete_keys(keys).await
        {
            self.defer_invalidation(keys);
            self.ensure_replay();
        }
    }

    /// Looks `keys` up (`MGET`, also for one key: the same round trip as `GET`), then takes fill leases for the misses (`SET … NX PX`, one
    /// pipeline), so each reader that misses may later [`fill`](Self::fill) what it loads.
    pub async fn lookup(self: &Arc<Self>, keys: &[&Key]) -> Vec<Lookup> {
        if !self.readable(keys.len() as u64) {
            return keys.iter().map(|_| Lookup::Skipped).collect();
        }
        let mut out = Vec::with_capacity(keys.len());
        for group in keys.chunks(KEYS_PER_CALL) {
            out.extend(self.lookup_group(group).await);
        }
        out
    }

    async fn lookup_group(&self, keys: &[&Key]) -> Vec<Lookup> {
        let mut conn = self.conn.clone();
        let mut cmd = redis::cmd("MGET");
        for key in keys {
            cmd.arg(self.value_key(key));
        }
        let values: Option<Vec<Option<Vec<u8>>>> =
            self.call("mget", cmd.query_async(&mut conn)).await;
        let Some(values) = values.filter(|v| v.len() == keys.len()) else {
            return keys.iter().map(|_| Lookup::Skipped).collect();
        };
        let mut out: Vec<Lookup> = values
            .into_iter()
            .map(|raw| match raw.map(decode_frame) {
                Some(Some(value)) => Lookup::Hit(value),
                Some(None) => {
                    // A damaged value is a miss; the lease fill below overwrites it.
                    Counters::one(&self.counters.l2_damaged);
                    Lookup::Miss(None)
                }
                None => Lookup::Miss(None),
            })
            .collect();
        let hits = out.iter().filter(|l| matches!(l, Lookup::Hit(_))).count();
        Counters::add(&self.counters.l2_hits, hits as u64);
        Counters::add(&self.counters.l2_misses, (out.len() - hits) as u64);

        // Leases for the misses, one pipeline.
        let misses: Vec<usize> = (0..out.len())
            .filter(|&i| matches!(out[i], Lookup::Miss(_)))
            .collect();
        if misses.is_empty() {
            return out;
        }
        let tokens: Vec<u64> = misses.iter().map(|_| rand::random()).collect();
        let mut pipe = redis::pipe();
        for (&i, token) in misses.iter().zip(&tokens) {
            pipe.cmd("SET")
                .arg(self.lease_key(keys[i]))
                .arg(token)
                .arg("NX")
                .arg("PX")
                .arg(millis(self.lease_ttl));
        }
        if let Some(replies) = self
            .call("lease", pipe.query_async::<Vec<Value>>(&mut conn))
            .await
        {
            for ((&i, token), reply) in misses.iter().zip(&tokens).zip(replies) {
                if matches!(reply, Value::Okay) {
                    out[i] = Lookup::Miss(Some(*token));
                }
            }
        }
        out
    }

    /// Writes loaded values whose leases are still valid (one script call per group).
    pub async fn fill(&self, items: &[(&Key, u64, Bytes)]) {
        if items.is_empty() || !self.breaker.is_call_permitted() {
            return;
        }
        for group in items.chunks(KEYS_PER_CALL) {
            let mut invocation = self.fill_script.prepare_invoke();
            for (key, token, value) in group {
                invocation
                    .key(self.value_key(key))
                    .key(self.lease_key(key))
                    .arg(*token)
                    .arg(encode_frame(value))
                    .arg(millis(self.jittered_ttl()));
            }
            let mut conn = self.conn.clone();
            if let Some(filled) = self
                .call("fill", invocation.invoke_async::<i64>(&mut conn))
                .await
            {
                Counters::add(&self.counters.l2_fills, filled.max(0) as u64);
            }
        }
    }

    fn jittered_ttl(&self) -> Duration {
        jittered(self.ttl, self.jitter)
    }
}

/// `ttl` times a factor drawn uniformly from `1 ± jitter`.
pub(crate) fn jittered(ttl: Duration, jitter: f64) -> Duration {
    if jitter <= 0.0 {
        return ttl;
    }
    let factor = 1.0 + jitter * (2.0 * rand::random::<f64>() - 1.0);
    ttl.mul_f64(factor.max(0.0))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// Magic byte, CRC-32 of the payload (little endian), payload.
pub(crate) fn encode_frame(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(FRAME_HEADER + value.len());
    out.push(FRAME_MAGIC);
    out.extend_from_slice(&crc32fast::hash(value).to_le_bytes());
    out.extend_from_slice(value);
    out
}

/// The payload of a frame, or `None` if the magic or the CRC-32 does not match.
pub(crate) fn decode_frame(raw: Vec<u8>) -> Option<Bytes> {
    if raw.len() < FRAME_HEADER || raw[0] != FRAME_MAGIC {
        return None;
    }
    let crc = u32::from_le_bytes([raw[1], raw[2], raw[3], raw[4]]);
    let payload = Bytes::from(raw).slice(FRAME_HEADER..);
    (crc32fast::hash(&payload) == crc).then_some(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_reject_damage() {
        for value in [&b""[..], b"x", &[7u8; 1000]] {
            let frame = encode_frame(value);
            assert_eq!(decode_frame(frame.clone()).as_deref(), Some(value));
            for i in 0..frame.len() {
                let mut bad = frame.clone();
                bad[i] ^= 0x01;
                assert_eq!(decode_frame(bad), None, "flip at {i}");
            }
            assert_eq!(decode_frame(frame[..frame.len() - 1].to_vec()), None);
        }
        assert_eq!(decode_frame(b"raw".to_vec()), None);
    }

    #[test]
    fn jitter_stays_within_its_band() {
        let ttl = Duration::from_secs(100);
        for _ in 0..1000 {
            let t = jittered(ttl, 0.1);
            assert!(
                t >= Duration::from_secs(90) && t <= Duration::from_secs(110),
                "{t:?}"
            );
        }
        assert_eq!(jittered(ttl, 0.0), ttl);
    }
}
