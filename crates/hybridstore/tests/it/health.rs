//! Health: every engine of a default system is probed and ok; a Redis tier that does not
//! answer is down and degrades the system (which keeps serving keys); a live Redis is ok;
//! a probe past its time bound is down.

use std::time::Duration;

use hybridstore::health::{HealthOptions, HealthStatus};
use hybridstore::{HybridStorageSystem, StorageConfig};
use hybridstore_cache::testing::RedisServer;
use hybridstore_core::services::PortLease;
use hybridstore_core::{Bytes, Key, KvStore};

fn engines(report: &hybridstore::health::HealthReport) -> Vec<&str> {
    report.engines.iter().map(|e| e.engine.as_str()).collect()
}

#[tokio::test]
async fn every_engine_of_a_default_system_is_probed_and_ok() {
    let dir = tempfile::tempdir().unwrap();
    let system = HybridStorageSystem::open(StorageConfig::with_data_dir(dir.path()))
        .await
        .unwrap();
    let report = system.health().await;
    assert_eq!(
        engines(&report),
        ["sqlite", "chunks", "lancedb", "duckdb", "disk"],
        "{report:?}"
    );
    assert_eq!(report.status, HealthStatus::Ok, "{report:?}");
    for e in &report.engines {
        assert_eq!(e.status, HealthStatus::Ok, "{e:?}");
        assert!(e.latency_ms >= 0.0 && e.latency_ms < 5000.0, "{e:?}");
    }
    let disk = report.engines.iter().find(|e| e.engine == "disk").unwrap();
    assert!(
        disk.reason.as_deref().unwrap().contains("GiB free"),
        "{disk:?}"
    );
    // Probing writes no key.
    assert_eq!(system.stats().await.unwrap().kv.keys, 0);
    system.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_redis_tier_that_does_not_answer_is_down_and_the_system_degraded() {
    let dead = PortLease::new();
    let dir = tempfile::tempdir().unwrap();
    let mut config = StorageConfig::with_data_dir(dir.path());
    config.redis_url = Some(format!("redis://127.0.0.1:{}", dead.port()).into());
    let system = HybridStorageSystem::open(config).await.unwrap();
    let report = system.health().await;
    let redis = report.engines.iter().find(|e| e.engine == "redis").unwrap();
    assert_eq!(redis.status, HealthStatus::Down, "{redis:?}");
    assert!(!redis.critical);
    assert!(redis.reason.is_some());
    assert_eq!(report.status, HealthStatus::Degraded, "{report:?}");
    // Degraded, not down: keys are still served.
    let key = Key::new("k").unwrap();
    system
        .kv()
        .put(&key, Bytes::from_static(b"v"))
        .await
        .unwrap();
    assert_eq!(
        system.kv().get(&key).await.unwrap().as_deref(),
        Some(&b"v"[..])
    );
    system.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_live_redis_tier_is_ok() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut config = StorageConfig::with_data_dir(dir.path());
    config.redis_url = Some(server.url().into());
    let system = HybridStorageSystem::open(config).await.unwrap();
    let report = system.health().await;
    let redis = report.engines.iter().find(|e| e.engine == "redis").unwrap();
    assert_eq!(redis.status, HealthStatus::Ok, "{redis:?}");
    assert_eq!(report.status, HealthStatus::Ok, "{report:?}");
    system.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_probe_past_its_time_bound_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let system = HybridStorageSystem::open(StorageConfig::with_data_dir(dir.path()))
        .await
        .unwrap();
    let mut options = HealthOptions::default();
    options.timeout = Duration::ZERO;
    let report = system.health_with(&options).await;
    // No probe answers within zero time: each is down, timed out or answered past the bound.
    let primary = &report.engines[0];
    assert_eq!(primary.status, HealthStatus::Down, "{primary:?}");
    let reason = primary.reason.as_deref().unwrap();
    assert!(
        reason.contains("no answer") || reason.contains("past the bound"),
        "{reason}"
    );
    assert_eq!(report.status, HealthStatus::Down);
    system.shutdown().await.unwrap();
}
