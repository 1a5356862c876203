//! The model-based property test: random operation sequences against a `BTreeMap`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use super::*;

/// The key universe of the model test: few enough that operations collide, with binary and
/// path-like keys.
fn model_keys() -> Vec<Vec<u8>> {
    vec![
        vec![0x00],
        vec![0x00, 0x00],
        vec![0x00, 0xFF],
        b"a".to_vec(),
        b"a/b".to_vec(),
        b"a/b/c".to_vec(),
        b"ab".to_vec(),
        vec![b'a', 0xFF],
        b"b".to_vec(),
        b"..".to_vec(),
        vec![0xFF],
        vec![0xFF, 0x00],
    ]
}

fn model_prefixes() -> Vec<Vec<u8>> {
    vec![
        Vec::new(),
        b"a".to_vec(),
        b"a/".to_vec(),
        vec![0x00],
        vec![0xFF],
        b"zz".to_vec(),
    ]
}

#[derive(Clone, Debug)]
enum Op {
    Put(usize, Vec<u8>),
    Delete(usize),
    Get(usize),
    Head(usize),
    Scan { prefix: usize, limit: Option<usize> },
    Batch(Vec<BatchStep>),
}

#[derive(Clone, Debug)]
enum BatchStep {
    Put(usize, Vec<u8>),
    Delete(usize),
    ExpectAbsent(usize),
    ExpectPresent(usize),
}

/// Values: mostly short (0 to 47 random bytes), and one in six large enough for the dedup
/// layer to chunk it: 257 bytes (just past its default inline limit of 256) to 192 KiB
/// (several chunks of its default 16 KiB average, 64 KiB maximum), made by [`pattern`] from
/// one of four seeds so that values of different keys and sizes share leading chunks.
fn value_strategy() -> impl Strategy<Value = Vec<u8>> + Clone {
    prop_oneof![
        5 => proptest::collection::vec(any::<u8>(), 0..48),
        1 => (257usize..192 * 1024, 0u64..4).prop_map(|(len, seed)| pattern(len, seed).to_vec()),
    ]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let k = 0..model_keys().len();
    let value = value_strategy();
    let step = prop_oneof![
        3 => (k.clone(), value.clone()).prop_map(|(k, v)| BatchStep::Put(k, v)),
        2 => k.clone().prop_map(BatchStep::Delete),
        1 => k.clone().prop_map(BatchStep::ExpectAbsent),
        1 => k.clone().prop_map(BatchStep::ExpectPresent),
    ];
    prop_oneof![
        4 => (k.clone(), value).prop_map(|(k, v)| Op::Put(k, v)),
        2 => k.clone().prop_map(Op::Delete),
        3 => k.clone().prop_map(Op::Get),
        1 => k.prop_map(Op::Head),
        2 => (0..model_prefixes().len(), proptest::option::of(0usize..5))
            .prop_map(|(prefix, limit)| Op::Scan { prefix, limit }),
        2 => proptest::collection::vec(step, 0..6).prop_map(Op::Batch),
    ]
}

async fn run_model(store: &dyn KvStore, ops: &[Op]) -> Result<(), TestCaseError> {
    let keys = model_keys();
    let prefixes = model_prefixes();
    let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    for (n, op) in ops.iter().enumerate() {
        match op {
            Op::Put(k, v) => {
                store
                    .put(&key(&keys[*k]), Bytes::from(v.clone()))
                    .await
                    .unwrap();
                model.insert(keys[*k].clone(), v.clone());
            }
            Op::Delete(k) => {
                store.delete(&key(&keys[*k])).await.unwrap();
                model.remove(&keys[*k]);
            }
            Op::Get(k) => {
                let got = store
                    .get(&key(&keys[*k]))
                    .await
                    .unwrap()
                    .map(|b| b.to_vec());
                prop_assert_eq!(got, model.get(&keys[*k]).cloned(), "op {}: get", n);
            }
            Op::Head(k) => {
                let got = store.head(&key(&keys[*k])).await.unwrap();
                let want = model.get(&keys[*k]);
                prop_assert_eq!(got.as_ref().map(|m| m.size), want.map(|v| v.len() as u64));
                if let (Some(m), Some(v)) = (got, want) {
                    prop_assert_eq!(m.checksum, Sha256Digest::of(v));
                }
            }
            Op::Scan { prefix, limit } => {
                let p = &prefixes[*prefix];
                let entries: Vec<_> = store
                    .scan(KeyRange::prefix(p.clone()), *limit)
                    .try_collect()
                    .await
                    .unwrap();
                let got: Vec<(Vec<u8>, Vec<u8>)> = entries
                    .into_iter()
                    .map(|e| (e.key.as_bytes().to_vec(), e.value.to_vec()))
                    .collect();
                let want: Vec<(Vec<u8>, Vec<u8>)> = model
                    .iter()
                    .filter(|(k, _)| k.starts_with(p))
                    .take(limit.unwrap_or(usize::MAX))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                prop_assert_eq!(got, want, "op {}: scan {:?} limit {:?}", n, p, limit);
            }
            Op::Batch(steps) => {
                let mut batch = WriteBatch::new();
                let mut next = model.clone();
                let mut ok = true;
                for step in steps {
                    match step {
                        BatchStep::Put(k, v) => {
                            batch.put(key(&keys[*k]), Bytes::from(v.clone()));
                            next.insert(keys[*k].clone(), v.clone());
                        }
                        BatchStep::Delete(k) => {
                            batch.delete(key(&keys[*k]));
                            next.remove(&keys[*k]);
                        }
                        BatchStep::ExpectAbsent(k) => {
                            batch.expect(key(&keys[*k]), Expect::Absent);
                            ok &= !model.contains_key(&keys[*k]);
                        }
                        BatchStep::ExpectPresent(k) => {
                            batch.expect(key(&keys[*k]), Expect::Present);
                            ok &= model.contains_key(&keys[*k]);
                        }
                    }
                }
                match store.write_batch(batch).await {
                    Ok(()) => {
                        prop_assert!(ok, "op {}: batch with a failing check succeeded", n);
                        model = next;
                    }
                    Err(e) => {
                        prop_assert!(!ok, "op {}: valid batch failed: {}", n, e);
                        prop_assert_eq!(e.kind(), ErrorKind::Conflict);
                    }
                }
            }
        }
    }
    // Final state equals the model exactly.
    let entries: Vec<_> = store
        .scan(KeyRange::all(), None)
        .try_collect()
        .await
        .unwrap();
    let got: BTreeMap<Vec<u8>, Vec<u8>> = entries
        .into_iter()
        .map(|e| (e.key.as_bytes().to_vec(), e.value.to_vec()))
        .collect();
    prop_assert_eq!(got, model, "final state");
    Ok(())
}

/// Random sequences of put/delete/get/head/scan/batch, each on a fresh store (or on one
/// store emptied before each case, for a [`Fixture::reusable`] fixture), checked step by
/// step against a `BTreeMap` model; proptest shrinks a failure to a minimal sequence.
/// Cases: `HYBRIDSTORE_PROPTEST_CASES` (default 64), up to 40 operations each.
pub fn model_based<F, Fut>(factory: F)
where
    F: Fn() -> Fut,
    Fut: Future,
    Fut::Output: MaybeFixture,
{
    let cases = std::env::var("HYBRIDSTORE_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let Some(first) = rt.block_on(factory()).into_fixture() else {
        return; // skipped: the factory said why
    };
    let shared = first.is_reusable().then_some(first);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&proptest::collection::vec(op_strategy(), 1..40), |ops| {
        rt.block_on(async {
            if let Some(fixture) = &shared {
                let store = fixture.store();
                store
                    .clear()
                    .await
                    .map_err(|e| TestCaseError::fail(format!("clear before a case: {e}")))?;
                let left = store
                    .list_keys(crate::KeyRange::all(), Some(1))
                    .await
                    .map_err(|e| TestCaseError::fail(format!("list after clear: {e}")))?;
                if !left.is_empty() {
                    return Err(TestCaseError::fail(format!("clear left {left:?}")));
                }
                return run_model(store, &ops).await;
            }
            match factory().await.into_fixture() {
                Some(fixture) => run_model(fixture.store(), &ops).await,
                None => Ok(()), // skipped: the factory said why
            }
        })
    });
    if let Err(e) = result {
        panic!("model-based test failed: {e}");
    }
}
