//! kill -9 crash test of FileStore, on the shared harness `hybridstore_core::crash`.
//! Besides the harness's checks, no temporary file or batch journal may survive recovery.

use std::path::Path;
use std::sync::Arc;

use hybridstore_core::crash;
use hybridstore_file::FileStore;

/// The child: runs only when started by `kill_9_during_writes`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "child process of kill_9_during_writes; runs only when that test starts it"]
async fn child_writer() {
    let Some(child) = crash::ChildEnv::from_env() else {
        return;
    };
    let store = FileStore::open(&child.dir).await.unwrap();
    crash::run_child(Arc::new(store), child.epoch).await;
}

fn leftover_files(root: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for dir in std::fs::read_dir(root.join("objects")).unwrap() {
        for f in std::fs::read_dir(dir.unwrap().path()).unwrap() {
            let name = f.unwrap().file_name().into_string().unwrap();
            if name.starts_with(".tmp.") {
                found.push(name);
            }
        }
    }
    for f in std::fs::read_dir(root.join("journal")).unwrap() {
        found.push(f.unwrap().file_name().into_string().unwrap());
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_writes() {
    crash::run_parent(crash::Parent {
        child_test: "crash::child_writer",
        open: &|dir| {
            Box::pin(async move {
                let store = FileStore::open(&dir).await.expect("reopen after kill");
                let replayed = store.recovery().replayed_batches;
                if replayed > 0 {
                    eprintln!("recovery completed {replayed} batches");
                }
                Arc::new(store) as _
            })
        },
        leftovers: &leftover_files,
    })
    .await;
}
