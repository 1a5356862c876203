//! kill -9 crash test of SqlStore on SQLite, on the shared harness `hybridstore_core::crash`.
//! After every kill the reopened database must also pass `PRAGMA integrity_check`.

use std::path::Path;
use std::sync::Arc;

use hybridstore_core::crash;
use hybridstore_sql::{SqlStore, SqlStoreOptions};

fn db_path(dir: &Path) -> std::path::PathBuf {
    dir.join("kv.db")
}

/// The child: runs only when started by `kill_9_during_writes`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "child process of kill_9_during_writes; runs only when that test starts it"]
async fn child_writer() {
    let Some(child) = crash::ChildEnv::from_env() else {
        return;
    };
    std::fs::create_dir_all(&child.dir).unwrap();
    let store = SqlStore::open_sqlite_file(db_path(&child.dir), SqlStoreOptions::default())
        .await
        .unwrap();
    crash::run_child(Arc::new(store), child.epoch).await;
}

fn integrity_problems(dir: &Path) -> Vec<String> {
    let conn = rusqlite::Connection::open(db_path(dir)).unwrap();
    let mut stmt = conn.prepare("PRAGMA integrity_check").unwrap();
    let rows: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    rows.into_iter().filter(|r| r != "ok").collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_writes() {
    crash::run_parent(crash::Parent {
        child_test: "crash::child_writer",
        open: &|dir| {
            Box::pin(async move {
                std::fs::create_dir_all(&dir).unwrap();
                let store = SqlStore::open_sqlite_file(db_path(&dir), SqlStoreOptions::default())
                    .await
                    .expect("reopen after kill");
                Arc::new(store) as _
            })
        },
        leftovers: &integrity_problems,
    })
    .await;
}
