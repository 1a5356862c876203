//! 8 writer tasks and 8 reader tasks on one SQLite store for a fixed time: no error (no
//! `SQLITE_BUSY`), and every acknowledged write readable afterwards with its last value.
//! Duration: `HYBRIDSTORE_SQL_STRESS_SECS` (default 10).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hybridstore_core::{Bytes, Key, KvStore, WriteBatch};

const WRITERS: usize = 8;
const READERS: usize = 8;
const KEYS_PER_WRITER: u64 = 200;

fn value(writer: usize, seq: u64) -> Bytes {
    let mut v = format!("{writer}:{seq}:").into_bytes();
    v.resize(1024, b'.');
    Bytes::from(v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writers_and_readers_on_sqlite() {
    let secs: u64 = std::env::var("HYBRIDSTORE_SQL_STRESS_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let (store, _dir) = super::sqlite_store().await;
    let store = Arc::new(store);
    let stop = Arc::new(AtomicBool::new(false));

    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let (store, stop) = (store.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            // Last acknowledged value per key of this writer.
            let mut acked: BTreeMap<Key, Bytes> = BTreeMap::new();
            let mut seq = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let k = Key::new(format!("w{w}/k{}", seq % KEYS_PER_WRITER)).unwrap();
                let v = value(w, seq);
                if seq % 10 == 9 {
                    // Every tenth write is a batch of 4 keys, one of them a delete.
                    let mut batch = WriteBatch::new();
                    let mut puts = Vec::new();
                    for j in 0..3 {
                        let bk = Key::new(format!("w{w}/b{}", (seq + j) % 50)).unwrap();
                        batch.put(bk.clone(), v.clone());
                        puts.push(bk);
                    }
                    batch.delete(k.clone());
                    store.write_batch(batch).await.expect("batch");
                    for bk in puts {
                        acked.insert(bk, v.clone());
                    }
                    acked.remove(&k);
                } else {
                    store.put(&k, v.clone()).await.expect("put");
                    acked.insert(k, v);
                }
                seq += 1;
            }
            (acked, seq)
        }));
    }
    let mut readers = Vec::new();
    for r in 0..READERS {
        let (store, stop) = (store.clone(), stop.clone());
        readers.push(tokio::spawn(async move {
            let mut reads = 0u64;
            let mut i = r as u64;
            while !stop.load(Ordering::Relaxed) {
                let w = (i as usize) % WRITERS;
                let k = Key::new(format!("w{w}/k{}", i % KEYS_PER_WRITER)).unwrap();
                if let Some(v) = store.get(&k).await.expect("get") {
                    // Whatever is read is a whole value some writer wrote for this key.
                    assert_eq!(v.len(), 1024, "torn value for {k}");
                    assert!(
                        v.starts_with(format!("{w}:").as_bytes()),
                        "foreign value in {k}"
                    );
                }
                if i.is_multiple_of(16) {
                    let prefix = format!("w{w}/");
                    let n = store
                        .list_keys(hybridstore_core::KeyRange::prefix(prefix), Some(50))
                        .await
                        .expect("scan");
                    assert!(n.len() <= 50);
                }
                reads += 1;
                i += 7;
            }
            reads
        }));
    }

    tokio::time::sleep(Duration::from_secs(secs)).await; // the test's duration, not a sync point
    stop.store(true, Ordering::Relaxed);
    let mut total_writes = 0;
    let mut total_reads = 0;
    let mut expected = BTreeMap::new();
    for w in writers {
        let (acked, n) = w.await.expect("writer task");
        total_writes += n;
        expected.extend(acked);
    }
    for r in readers {
        total_reads += r.await.expect("reader task");
    }
    for (k, v) in &expected {
        assert_eq!(
            store.get(k).await.unwrap().as_ref(),
            Some(v),
            "acknowledged write lost: {k}"
        );
    }
    eprintln!(
        "sqlite stress: {secs} s, {total_writes} writes ({} keys checked), {total_reads} reads",
        expected.len()
    );
    assert!(total_writes > 0 && total_reads > 0);
}
