//! Background upkeep: each job runs on its interval and does its work, and shutdown stops
//! the task; a command-line open starts none.

use std::time::{Duration, SystemTime};

use hybridstore::core::vector::{CollectionSpec, Distance, VectorRecord, VectorStore};
use hybridstore::core::{Key, KvStore};
use hybridstore::{HybridStorageSystem, OpenOptions, StorageConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upkeep_expires_purges_optimizes_and_collects_on_its_intervals() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = StorageConfig::with_data_dir(dir.path());
    config.analytics = false;
    config.upkeep_session_expiry_secs = 1;
    config.upkeep_vector_purge_secs = 1;
    config.upkeep_lancedb_optimize_secs = 1;
    config.upkeep_chunk_gc_secs = 1;
    config.upkeep_chunk_gc_grace_secs = 0;
    let system = HybridStorageSystem::open(config.clone()).await.unwrap();

    // An expiring session, an expiring vector record and a value's chunks left unreferenced.
    let sessions = system.sql().unwrap().sessions();
    sessions
        .put(
            "s1",
            &serde_json::json!({"user": 1}),
            Duration::from_millis(300),
        )
        .await
        .unwrap();
    sessions
        .put(
            "s2",
            &serde_json::json!({"user": 2}),
            Duration::from_secs(3_600),
        )
        .await
        .unwrap();
    let vectors = system.vectors().unwrap();
    vectors
        .create_collection(&CollectionSpec::new("notes", 2, Distance::Cosine))
        .await
        .unwrap();
    let now_us = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64;
    let mut expiring = VectorRecord::new("gone", vec![1.0, 0.0]);
    expiring.expires_at_us = Some(now_us + 300_000);
    vectors
        .add(
            "notes",
            vec![expiring, VectorRecord::new("kept", vec![0.0, 1.0])],
        )
        .await
        .unwrap();
    let doomed = Key::new("big").unwrap();
    system
        .kv()
        .put(
            &doomed,
            hybridstore_core::conformance::incompressible(512 << 10, 3),
        )
        .await
        .unwrap();
    system.kv().delete(&doomed).await.unwrap();

    let mut status = system.upkeep_status().expect("background tasks are on");
    let done = tokio::time::timeout(
        Duration::from_secs(120),
        // A job's first run may come before its work is due; later runs do it.
        status.wait_for(|s| {
            s.sessions_deleted >= 1
                && s.vectors_purged >= 1
                && s.optimize_runs >= 1
                && s.gc_bytes_freed > 0
        }),
    )
    .await
    .expect("every job did its work within two minutes")
    .unwrap()
    .clone();
    assert_eq!(done.failures, 0, "{done:?}");
    assert_eq!(done.sessions_deleted, 1, "{done:?}");
    assert_eq!(done.vectors_purged, 1, "{done:?}");
    assert!(
        sessions.get("s2").await.unwrap().is_some(),
        "a live session was deleted"
    );
    assert_eq!(vectors.count("notes", None).await.unwrap(), 1);

    system.shutdown().await.unwrap();
    // The task holds the status sender too: the channel closes only once it has ended
    // (updates of jobs that ran before shutdown are read past).
    tokio::time::timeout(Duration::from_secs(30), async {
        while status.changed().await.is_ok() {}
    })
    .await
    .expect("the upkeep task still runs after shutdown");

    let command = HybridStorageSystem::open_with(config, OpenOptions::command())
        .await
        .unwrap();
    assert!(
        command.upkeep_status().is_none(),
        "a command started upkeep"
    );
}
