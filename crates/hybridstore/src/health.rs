//! Health: each engine of the system probed, ok / degraded / down with the probe's latency
//! and the reason (seeds 000 and 004).
//!
//! A probe is a real round trip that changes nothing and records no access event: a `head`
//! of a key no one writes on the primary (SQLite, PostgreSQL, files or S3), the chunk
//! store's damaged packs, the collections of LanceDB, `SELECT 1` on DuckDB, `PING` to Redis,
//! the backup push's last result, and the data directory's free space. Probes run at once,
//! each bounded by [`HealthOptions::timeout`].
//!
//! The system's status is the worst of its **critical** engines' (the primary, the chunk
//! store, the disk); a non-critical engine (the Redis tier, LanceDB, DuckDB, the backup
//! remote) that is down makes the system degraded, not down, because the key/value path
//! keeps working without it.

use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::HybridStorageSystem;

/// One engine's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// Answering in time.
    Ok,
    /// Answering, but slowly, short of space, or with part of its function lost.
    Degraded,
    /// Not answering, or unusable.
    Down,
}

impl HealthStatus {
    /// `"ok"`, `"degraded"` or `"down"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            HealthStatus::Ok => "ok",
            HealthStatus::Degraded => "degraded",
            HealthStatus::Down => "down",
        }
    }
}

/// One engine's probe.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EngineHealth {
    /// The engine: `sqlite`, `postgres`, `file` or `s3` (the primary), `chunks`, `lancedb`,
    /// `duckdb`, `redis`, `backup-remote`, `disk`.
    pub engine: String,
    /// Its state.
    pub status: HealthStatus,
    /// Whether the system is down when this engine is.
    pub critical: bool,
    /// How long the probe took, in milliseconds.
    pub latency_ms: f64,
    /// Why it is not ok (or a fact worth showing, such as the free space).
    pub reason: Option<String>,
}

/// Every engine's probe and the system's status.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HealthReport {
    /// The worst state of the critical engines; `Degraded` at most when only non-critical
    /// engines are unwell.
    pub status: HealthStatus,
    /// Each engine, in probe order.
    pub engines: Vec<EngineHealth>,
}

/// Bounds of a health check.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct HealthOptions {
    /// A probe with no answer within this long is down (default 5,000 ms).
    pub timeout: Duration,
    /// A probe that answers slower than this is degraded (default 1,000 ms).
    pub slow: Duration,
}

impl Default for HealthOptions {
    fn default() -> Self {
        HealthOptions {
            timeout: Duration::from_secs(5),
            slow: Duration::from_secs(1),
        }
    }
}

/// Free space below this share of the file system is degraded: 10%, the default hard
/// eviction threshold of Kubernetes' kubelet for a node's file system (`nodefs.available<10%`,
/// <https://kubernetes.io/docs/concepts/scheduling-eviction/node-pressure-eviction/>).
pub const DISK_DEGRADED_FRACTION: f64 = 0.10;
/// Free space below this many bytes is down: 64 MiB, four 16 MiB chunk packs, under which a
/// pack, a SQLite checkpoint or a DuckDB write may no longer fit.
pub const DISK_DOWN_BYTES: u64 = 64 << 20;

/// The state the free space of a file system of `total` bytes with `available` bytes free
/// (for unprivileged users) gives, and the reason shown.
pub fn disk_status(available: u64, total: u64) -> (HealthStatus, String) {
    let share = if total == 0 {
        0.0
    } else {
        available as f64 / total as f64
    };
    let text = format!(
        "{:.1} GiB free of {:.1} GiB ({:.0}%)",
        available as f64 / f64::from(1u32 << 30),
        total as f64 / f64::from(1u32 << 30),
        share * 100.0
    );
    if available < DISK_DOWN_BYTES {
        (HealthStatus::Down, format!("{text}: below 64 MiB"))
    } else if share < DISK_DEGRADED_FRACTION {
        (HealthStatus::Degraded, format!("{text}: below 10%"))
    } else {
        (HealthStatus::Ok, text)
    }
}

/// Free and total bytes of the file system holding `path`, by `statvfs(3)`.
fn free_space(path: &Path) -> std::io::Result<(u64, u64)> {
    let stat = rustix::fs::statvfs(path)?;
    Ok((
        stat.f_bavail.saturating_mul(stat.f_frsize),
        stat.f_blocks.saturating_mul(stat.f_frsize),
    ))
}

/// The outcome of one probe before timing: `Ok(note)` or `Err((status, reason))`.
type ProbeOutcome = std::result::Result<Option<String>, (HealthStatus, String)>;

/// Runs `probe` within `options`' bounds and turns it into an [`EngineHealth`].
async fn timed(
    engine: &str,
    critical: bool,
    options: &HealthOptions,
    probe: impl Future<Output = ProbeOutcome>,
) -> EngineHealth {
    let started = Instant::now();
    let outcome = tokio::time::timeout(options.timeout, probe).await;
    let elapsed = started.elapsed();
    let (status, reason) = match outcome {
        // An answer that came in past the bound counts as none (the timer fires only at
        // the next tick, so a probe may finish after the bound without timing out).
        Ok(_) if elapsed > options.timeout => (
            HealthStatus::Down,
            Some(format!(
                "answered in {:.1} ms, past the bound of {} ms",
                elapsed.as_secs_f64() * 1000.0,
                options.timeout.as_millis()
            )),
        ),
        Err(_) => (
            HealthStatus::Down,
            Some(format!(
                "no answer within {} ms",
                options.timeout.as_millis()
            )),
        ),
        Ok(Err((status, reason))) => (status, Some(reason)),
        Ok(Ok(note)) if elapsed > options.slow => (
            HealthStatus::Degraded,
            Some(format!(
                "answered in {} ms, slower than {} ms{}",
                elapsed.as_millis(),
                options.slow.as_millis(),
                note.map(|n| format!("; {n}")).unwrap_or_default()
            )),
        ),
        Ok(Ok(note)) => (HealthStatus::Ok, note),
    };
    EngineHealth {
        engine: engine.to_string(),
        status,
        critical,
        latency_ms: elapsed.as_secs_f64() * 1000.0,
        reason,
    }
}

/// The key the primary's probe reads: no one writes it (it is not a key `put` refuses, so
/// the probe is the same read any client could make).
const PROBE_KEY: &str = ".hybridstore-health-probe";

impl HybridStorageSystem {
    /// Probes every engine of the system with the default [`HealthOptions`] (see the module
    /// docs). Never fails: an engine that errs is reported down with the error.
    pub async fn health(&self) -> HealthReport {
        self.health_with(&HealthOptions::default()).await
    }

    /// Probes every engine within `options`' bounds.
    pub async fn health_with(&self, options: &HealthOptions) -> HealthReport {
        let primary = timed(self.config.backend_name(), true, options, async {
            let key = hybridstore_core::Key::new(PROBE_KEY)
                .map_err(|e| (HealthStatus::Down, e.to_string()))?;
            self.primary
                .head(&key)
                .await
                .map(|_| None)
                .map_err(|e| (HealthStatus::Down, e.to_string()))
        });
        let chunks = async {
            match &self.dedup {
                Some(dedup) => Some(
                    timed("chunks", true, options, async {
                        let store = dedup.chunk_store();
                        let damaged = store.open_report().damaged_packs.len();
                        let stats = store.stats();
                        if damaged > 0 {
                            return Err((
                                HealthStatus::Degraded,
                                format!(
                                    "{damaged} damaged packs at open (`verify` names the keys)"
                                ),
                            ));
                        }
                        Ok(Some(format!("{} packs", stats.packs)))
                    })
                    .await,
                ),
                None => None,
            }
        };
        #[cfg(feature = "vectors")]
        let vectors = async {
            match &self.vectors {
                Some(vectors) => Some(
                    timed("lancedb", false, options, async {
                        use hybridstore_core::vector::VectorStore;
                        vectors
                            .list_collections()
                            .await
                            .map(|c| Some(format!("{} collections", c.len())))
                            .map_err(|e| (HealthStatus::Down, e.to_string()))
                    })
                    .await,
                ),
                None => None,
            }
        };
        #[cfg(not(feature = "vectors"))]
        let vectors = async { None };
        #[cfg(feature = "analytics")]
        let analytics = async {
            match self.analytics.clone() {
                Some(analytics) => Some(
                    timed("duckdb", false, options, async move {
                        let stats = analytics.stats();
                        let probe =
                            tokio::task::spawn_blocking(move || analytics.reader().sql("SELECT 1"))
                                .await;
                        let lost = stats.dropped_full + stats.lost + stats.write_errors;
                        match probe {
                            Ok(Ok(_)) if lost > 0 => Err((
                                HealthStatus::Degraded,
                                format!(
                                    "{} access events dropped or lost, {} write errors",
                                    stats.dropped_full + stats.lost,
                                    stats.write_errors
                                ),
                            )),
                            Ok(Ok(_)) => Ok(None),
                            Ok(Err(e)) => Err((HealthStatus::Down, e.to_string())),
                            Err(e) => Err((HealthStatus::Down, format!("probe task failed: {e}"))),
                        }
                    })
                    .await,
                ),
                None => None,
            }
        };
        #[cfg(not(feature = "analytics"))]
        let analytics = async { None };
        let redis = async {
            // Only a cache with a Redis tier has one to probe.
            let cache = self.cache.as_ref().filter(|c| c.config().redis.is_some())?;
            Some(
                timed("redis", false, options, async {
                    match cache.ping_l2().await {
                        Some(Err(e)) => Err((HealthStatus::Down, e)),
                        Some(Ok(())) | None => Ok(None),
                    }
                })
                .await,
            )
        };
        #[cfg(feature = "sync")]
        let remote = async {
            let status = self.backup_status()?;
            let status = status.borrow().clone();
            Some(
                timed("backup-remote", false, options, async move {
                    match status.last_error {
                        Some(e) => Err((
                            HealthStatus::Degraded,
                            format!("the last push to {} failed: {e}", status.remote),
                        )),
                        None => Ok(Some(format!(
                            "{} pushes to {}",
                            status.pushes, status.remote
                        ))),
                    }
                })
                .await,
            )
        };
        #[cfg(not(feature = "sync"))]
        let remote = async { None };
        let disk = timed("disk", true, options, async {
            let dir = self.config.data_dir.clone();
            match tokio::task::spawn_blocking(move || free_space(&dir)).await {
                Ok(Ok((available, total))) => match disk_status(available, total) {
                    (HealthStatus::Ok, text) => Ok(Some(text)),
                    (status, text) => Err((status, text)),
                },
                Ok(Err(e)) => Err((HealthStatus::Down, format!("statvfs: {e}"))),
                Err(e) => Err((HealthStatus::Down, format!("probe task failed: {e}"))),
            }
        });
        let (primary, chunks, vectors, analytics, redis, remote, disk) =
            tokio::join!(primary, chunks, vectors, analytics, redis, remote, disk);
        let engines: Vec<EngineHealth> = std::iter::once(primary)
            .chain(chunks)
            .chain(vectors)
            .chain(analytics)
            .chain(redis)
            .chain(remote)
            .chain(std::iter::once(disk))
            .collect();
        HealthReport {
            status: overall(&engines),
            engines,
        }
    }
}

/// The worst state of the critical engines, and at least degraded when any other engine is
/// not ok.
fn overall(engines: &[EngineHealth]) -> HealthStatus {
    engines
        .iter()
        .map(|e| match (e.critical, e.status) {
            (false, HealthStatus::Down) => HealthStatus::Degraded,
            (_, status) => status,
        })
        .max()
        .unwrap_or(HealthStatus::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_space_thresholds() {
        let gib = 1u64 << 30;
        assert_eq!(disk_status(50 * gib, 100 * gib).0, HealthStatus::Ok);
        assert_eq!(disk_status(9 * gib, 100 * gib).0, HealthStatus::Degraded);
        assert_eq!(disk_status(63 << 20, 100 * gib).0, HealthStatus::Down);
        assert_eq!(disk_status(0, 0).0, HealthStatus::Down);
    }

    #[test]
    fn a_non_critical_engine_down_degrades_the_system_only() {
        let engine = |critical, status| EngineHealth {
            engine: "x".into(),
            status,
            critical,
            latency_ms: 1.0,
            reason: None,
        };
        assert_eq!(
            overall(&[
                engine(true, HealthStatus::Ok),
                engine(false, HealthStatus::Down)
            ]),
            HealthStatus::Degraded
        );
        assert_eq!(
            overall(&[
                engine(true, HealthStatus::Down),
                engine(false, HealthStatus::Ok)
            ]),
            HealthStatus::Down
        );
        assert_eq!(overall(&[engine(true, HealthStatus::Ok)]), HealthStatus::Ok);
    }
}
