//! Many tasks at once, and operations dropped part-way.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use super::*;

/// 32 tasks mixing reads and writes: each reads its own writes, and at the end every key holds
/// the last value its owner wrote; shared keys hold one of the values written to them.
pub async fn concurrent_tasks(fx: &Fixture) {
    let store = fx.shared();
    let tasks: Vec<_> = (0..32u32)
        .map(|t| {
            let s = store.clone();
            tokio::spawn(async move {
                for i in 0..40u32 {
                    let own = key(format!("conc/own/{t:02}/{}", i % 5));
                    let value =
                        Bytes::from(format!("{t}:{i}:{}", "x".repeat((i * 37 % 200) as usize)));
                    s.put(&own, value.clone()).await.unwrap();
                    assert_eq!(s.get(&own).await.unwrap(), Some(value), "read-your-write");
                    let shared = key(format!("conc/shared/{}", i % 4));
                    if (t + i) % 3 == 0 {
                        s.put(&shared, Bytes::from(format!("{t}:{i}")))
                            .await
                            .unwrap();
                    } else if let Some(v) = s.get(&shared).await.unwrap() {
                        let text = std::str::from_utf8(&v).unwrap();
                        assert!(text.split(':').count() == 2, "torn shared value {text:?}");
                    }
                    if i % 10 == 9 {
                        let listed = s
                            .list_keys(KeyRange::prefix(format!("conc/own/{t:02}/")), None)
                            .await
                            .unwrap();
                        assert_eq!(listed.len(), 5.min(i as usize + 1));
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task panicked");
    }
    for t in 0..32u32 {
        for slot in 0..5u32 {
            let last = (0..40).filter(|i| i % 5 == slot).max().unwrap();
            let v = store
                .get(&key(format!("conc/own/{t:02}/{slot}")))
                .await
                .unwrap()
                .unwrap();
            assert!(
                v.starts_with(format!("{t}:{last}:").as_bytes()),
                "lost write for task {t}"
            );
        }
    }
}

/// Eight writers race on one counter with compare-and-set batches (`Expect::Checksum` of the
/// value each read, plus a put of the value + 1 and a put of a receipt key), retrying on
/// `Conflict`, until each has incremented it four times; meanwhile eight more race to
/// create one key with `Expect::Absent`. A precondition that is not atomic with its batch
/// lets two writers increment from the same value (a lost update: the counter ends below
/// 32, or two receipts name the same step) or two creators both win.
pub async fn concurrent_preconditions(fx: &Fixture) {
    use crate::batch::Expect;
    use crate::error::ErrorKind;
    use crate::meta::Sha256Digest;
    const WRITERS: u64 = 8;
    const INCREMENTS: u64 = 4;
    let store = fx.shared();
    let counter = key("cas/counter");
    store.put(&counter, Bytes::from_static(b"0")).await.unwrap();
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (s, counter) = (store.clone(), counter.clone());
            tokio::spawn(async move {
                let (mut done, mut conflicts) = (0, 0u64);
                while done < INCREMENTS {
                    let current = s.get(&counter).await.unwrap().unwrap();
                    let n: u64 = std::str::from_utf8(&current).unwrap().parse().unwrap();
                    let mut batch = WriteBatch::new();
                    batch
                        .expect(
                            counter.clone(),
                            Expect::Checksum(Sha256Digest::of(&current)),
                        )
                        .put(counter.clone(), Bytes::from((n + 1).to_string()))
                        .put(
                            key(format!("cas/step/{:03}", n + 1)),
                            Bytes::from(w.to_string()),
                        );
                    match s.write_batch(batch).await {
                        Ok(()) => done += 1,
                        Err(e) if e.kind() == ErrorKind::Conflict => conflicts += 1,
                        Err(e) => panic!("writer {w}: {e}"),
                    }
                    assert!(conflicts < 10_000, "writer {w} never got through");
                }
            })
        })
        .collect();
    let creators: Vec<_> = (0..WRITERS)
        .map(|w| {
            let s = store.clone();
            tokio::spawn(async move {
                let mut batch = WriteBatch::new();
                batch
                    .expect(key("cas/lock"), Expect::Absent)
                    .put(key("cas/lock"), Bytes::from(w.to_string()));
                match s.write_batch(batch).await {
                    Ok(()) => Some(w),
                    Err(e) if e.kind() == ErrorKind::Conflict => None,
                    Err(e) => panic!("creator {w}: {e}"),
                }
            })
        })
        .collect();
    for w in writers {
        w.await.expect("writer panicked");
    }
    let mut winners = Vec::new();
    for c in creators {
        winners.extend(c.await.expect("creator panicked"));
    }
    assert_eq!(
        winners.len(),
        1,
        "exactly one Expect::Absent creator wins: {winners:?}"
    );
    let lock = store.get(&key("cas/lock")).await.unwrap().unwrap();
    assert_eq!(
        lock,
        Bytes::from(winners[0].to_string()),
        "the winner's value stands"
    );
    let total = WRITERS * INCREMENTS;
    assert_eq!(
        store.get(&counter).await.unwrap().unwrap(),
        Bytes::from(total.to_string()),
        "a lost update: two writers incremented from the same value"
    );
    let steps = store
        .list_keys(KeyRange::prefix("cas/step/"), None)
        .await
        .unwrap();
    assert_eq!(steps.len() as u64, total, "one receipt per increment");
}

/// Polls `fut` up to `polls` times (yielding in between, so spawned and blocking work runs)
/// and drops it if it has not finished: a cancellation at an arbitrary point. `None` awaits
/// it to the end.
async fn poll_then_drop<F: Future>(fut: F, polls: impl Into<Option<usize>>) -> Option<F::Output> {
    let Some(polls) = polls.into() else {
        return Some(fut.await);
    };
    let mut fut = std::pin::pin!(fut);
    for _ in 0..polls {
        if let std::task::Poll::Ready(out) = futures::poll!(fut.as_mut()) {
            return Some(out);
        }
        tokio::task::yield_now().await;
    }
    None
}

/// The value generation `generation` writes to `key`: names both, padded so a torn value
/// cannot parse.
fn generation_value(key: &Key, generation: u64) -> Bytes {
    let mut v = format!("gen:{generation:08}:key:{key}:").into_bytes();
    v.resize(v.len() + 300 + (generation as usize * 53) % 2000, b'.');
    Bytes::from(v)
}

fn parse_generation(key: &Key, value: &[u8]) -> u64 {
    let prefix_len = 4 + 8 + 5;
    let text = std::str::from_utf8(&value[..prefix_len.min(value.len())]).unwrap_or("");
    let generation: u64 = text
        .strip_prefix("gen:")
        .and_then(|t| t.get(..8))
        .and_then(|g| g.parse().ok())
        .unwrap_or_else(|| panic!("{key}: not a generation value: {value:?}"));
    assert_eq!(
        value,
        &generation_value(key, generation)[..],
        "{key}: torn or foreign value"
    );
    generation
}

/// Dropping any operation's future, at any point, leaves the store as if the operation either
/// happened before the drop returned or never happened: a write that goes on in the
/// background after its caller gave up must not land after a later acknowledged write, nor
/// show half a batch. One writer issues batches (over 8 keys) and puts with increasing
/// generations and drops most of them after a random number of polls, while reader tasks
/// (which drop some of their own gets and scans part-way) check that no key ever goes back
/// to an older generation, that every value is whole, and that each acknowledged write is
/// seen; at the end an acknowledged batch must be what every key holds. The seed is random
/// and printed on failure (`HYBRIDSTORE_CANCEL_SEED` replays one).
pub async fn cancellation(fx: &Fixture) {
    use rand::{Rng, SeedableRng};
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    const ROUNDS: u64 = 120;
    let seed: u64 = std::env::var("HYBRIDSTORE_CANCEL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    let store = fx.shared();
    let group: Arc<Vec<Key>> = Arc::new((0..8).map(|i| key(format!("cancel/g/{i}"))).collect());
    let single = key("cancel/single");
    let mut first = WriteBatch::new();
    for k in group.iter().chain([&single]) {
        first.put(k.clone(), generation_value(k, 0));
    }
    store.write_batch(first).await.unwrap();
    // The newest generation acknowledged for the group and for the single key.
    let acked_group = Arc::new(AtomicU64::new(0));
    let acked_single = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));

    let readers: Vec<_> = (0..3u64)
        .map(|r| {
            let (store, group, single) = (store.clone(), group.clone(), single.clone());
            let (acked_group, acked_single, stop) =
                (acked_group.clone(), acked_single.clone(), stop.clone());
            tokio::spawn(async move {
                let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ (r + 1));
                let mut seen: BTreeMap<Key, u64> = BTreeMap::new();
                let mut passes = 0u64;
                while !stop.load(Ordering::SeqCst) || passes < 3 {
                    passes += 1;
                    let floor_group = acked_group.load(Ordering::SeqCst);
                    let floor_single = acked_single.load(Ordering::SeqCst);
                    for k in group.iter().chain([&single]) {
                        let floor = if *k == single { floor_single } else { floor_group };
                        if rng.random_bool(0.2) {
                            // A read given up part-way must change nothing.
                            let _ = poll_then_drop(store.get(k), rng.random_range(0..3usize)).await;
                            continue;
                        }
                        let value = store.get(k).await.unwrap().expect("key vanished");
                        let generation = parse_generation(k, &value);
                        assert!(
                            generation >= floor,
                            "seed {seed}: {k} reads generation {generation} after {floor} was acknowledged"
                        );
                        let last = seen.entry(k.clone()).or_insert(0);
                        assert!(
                            generation >= *last,
                            "seed {seed}: {k} went back from generation {last} to {generation}"
                        );
                        *last = generation;
                    }
                    if rng.random_bool(0.3) {
                        let scan = async {
                            let mut stream = store.scan(KeyRange::prefix("cancel/"), None);
                            while let Some(entry) = stream.try_next().await? {
                                parse_generation(&entry.key, &entry.value);
                            }
                            Ok::<_, crate::Error>(())
                        };
                        if let Some(done) = poll_then_drop(scan, rng.random_range(0..8usize)).await {
                            done.unwrap();
                        }
                    }
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();

    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    for generation in 1..=ROUNDS {
        let acknowledge = generation % 8 == 0;
        let polls = (!acknowledge).then(|| rng.random_range(0..12usize));
        if rng.random_bool(0.6) {
            let mut batch = WriteBatch::new();
            for k in group.iter() {
                batch.put(k.clone(), generation_value(k, generation));
            }
            if let Some(done) = poll_then_drop(store.write_batch(batch), polls).await {
                done.unwrap();
                if acknowledge {
                    acked_group.store(generation, Ordering::SeqCst);
                    for k in group.iter() {
                        let v = store.get(k).await.unwrap().unwrap();
                        assert_eq!(
                            parse_generation(k, &v),
                            generation,
                            "seed {seed}: {k} does not hold the batch just acknowledged"
                        );
                    }
                }
            }
        } else {
            let value = generation_value(&single, generation);
            if let Some(done) = poll_then_drop(store.put(&single, value), polls).await {
                done.unwrap();
                if acknowledge {
                    acked_single.store(generation, Ordering::SeqCst);
                    let v = store.get(&single).await.unwrap().unwrap();
                    assert_eq!(
                        parse_generation(&single, &v),
                        generation,
                        "seed {seed}: {single} does not hold the put just acknowledged"
                    );
                }
            }
        }
    }
    // The last word: an acknowledged batch over every key, which nothing dropped earlier may
    // overwrite.
    let last = ROUNDS + 1;
    let mut batch = WriteBatch::new();
    for k in group.iter().chain([&single]) {
        batch.put(k.clone(), generation_value(k, last));
    }
    store.write_batch(batch).await.unwrap();
    acked_group.store(last, Ordering::SeqCst);
    acked_single.store(last, Ordering::SeqCst);
    stop.store(true, Ordering::SeqCst);
    for r in readers {
        r.await.expect("reader panicked");
    }
    for k in group.iter().chain([&single]) {
        let v = store.get(k).await.unwrap().unwrap();
        assert_eq!(
            parse_generation(k, &v),
            last,
            "seed {seed}: a dropped write landed after the last acknowledged batch on {k}"
        );
    }
}
