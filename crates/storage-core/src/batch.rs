//! Atomic write batches with preconditions.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::key::Key;
use crate::meta::{ObjectMeta, PutOptions, Sha256Digest};

/// A precondition on a key's current state, checked before a batch applies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    /// The key must not exist.
    Absent,
    /// The key must exist.
    Present,
    /// The key must exist with this value checksum (compare-and-set).
    Checksum(Sha256Digest),
}

impl Expect {
    /// Whether the precondition holds for a key whose current metadata is `current`.
    pub fn holds(&self, current: Option<&ObjectMeta>) -> bool {
        match (self, current) {
            (Expect::Absent, None) => true,
            (Expect::Present, Some(_)) => true,
            (Expect::Checksum(want), Some(meta)) => meta.checksum == *want,
            _ => false,
        }
    }
}

/// One operation of a [`WriteBatch`].
#[derive(Clone, Debug)]
pub enum BatchOp {
    /// Write `value` under `key`.
    Put {
        /// The key.
        key: Key,
        /// The value.
        value: Bytes,
        /// Content type and other options.
        options: PutOptions,
    },
    /// Remove `key` (no error if it does not exist).
    Delete {
        /// The key.
        key: Key,
    },
    /// Fail the whole batch with `Conflict` unless `key` matches `expect`.
    Check {
        /// The key.
        key: Key,
        /// The precondition.
        expect: Expect,
    },
}

impl BatchOp {
    /// The key the operation touches.
    pub fn key(&self) -> &Key {
        match self {
            BatchOp::Put { key, .. } | BatchOp::Delete { key } | BatchOp::Check { key, .. } => key,
        }
    }
}

/// A group of puts, deletes and checks applied all or nothing.
///
/// Semantics, the same for every backend:
/// - every [`BatchOp::Check`] is evaluated against the state *before* the batch; if any fails
///   the batch returns `Conflict` and changes nothing;
/// - puts and deletes then apply in order, so a later operation on the same key wins;
/// - if the call returns an error, nothing was applied; if the process crashes, a durable
///   backend recovers to either none or all of the batch (see each backend's docs).
///
/// ```
/// use hybridstore_core::{Expect, Key, WriteBatch};
/// let mut batch = WriteBatch::new();
/// batch
///     .expect(Key::new("lock")?, Expect::Absent)
///     .put(Key::new("lock")?, "owner-1")
///     .delete(Key::new("stale")?);
/// assert_eq!(batch.len(), 3);
/// # Ok::<(), hybridstore_core::Error>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct WriteBatch {
    ops: Vec<BatchOp>,
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a put.
    pub fn put(&mut self, key: Key, value: impl Into<Bytes>) -> &mut Self {
        self.put_with(key, value, PutOptions::default())
    }

    /// Adds a put with options.
    pub fn put_with(
        &mut self,
        key: Key,
        value: impl Into<Bytes>,
        options: PutOptions,
    ) -> &mut Self {
        self.ops.push(BatchOp::Put {
            key,
            value: value.into(),
            options,
        });
        self
    }

    /// Adds a delete.
    pub fn delete(&mut self, key: Key) -> &mut Self {
        self.ops.push(BatchOp::Delete { key });
        self
    }

    /// Adds a precondition.
    pub fn expect(&mut self, key: Key, expect: Expect) -> &mut Self {
        self.ops.push(BatchOp::Check { key, expect });
        self
    }

    /// Number of operations.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether the batch has no operations.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The operations in order.
    pub fn ops(&self) -> &[BatchOp] {
        &self.ops
    }

    /// Total bytes of the values the batch writes.
    pub fn value_bytes(&self) -> u64 {
        self.ops
            .iter()
            .map(|op| match op {
                BatchOp::Put { value, .. } => value.len() as u64,
                _ => 0,
            })
            .sum()
    }

    /// Rewrites every key (used by layers such as a tenant namespace).
    ///
    /// # Errors
    /// The first error `f` returns; the batch is then unusable and should be dropped.
    pub fn try_map_keys(self, mut f: impl FnMut(&Key) -> Result<Key>) -> Result<WriteBatch> {
        let ops = self
            .ops
            .into_iter()
            .map(|op| {
                Ok(match op {
                    BatchOp::Put {
                        key,
                        value,
                        options,
                    } => BatchOp::Put {
                        key: f(&key)?,
                        value,
                        options,
                    },
                    BatchOp::Delete { key } => BatchOp::Delete { key: f(&key)? },
                    BatchOp::Check { key, expect } => BatchOp::Check {
                        key: f(&key)?,
                        expect,
                    },
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(WriteBatch { ops })
    }

    /// Reduces the batch to what a backend has to do: the checks, and the final mutation of
    /// each key in key order (a later put or delete of a key replaces an earlier one).
    ///
    /// # Errors
    /// `InvalidInput` if a put's options are invalid (see [`PutOptions::validate`]).
    pub fn into_plan(self) -> Result<BatchPlan> {
        let mut checks = Vec::new();
        let mut writes: BTreeMap<Key, Mutation> = BTreeMap::new();
        for op in self.ops {
            match op {
                BatchOp::Put {
                    key,
                    value,
                    options,
                } => {
                    options.validate()?;
                    writes.insert(key, Mutation::Put { value, options });
                }
                BatchOp::Delete { key } => {
                    writes.insert(key, Mutation::Delete);
                }
                BatchOp::Check { key, expect } => checks.push((key, expect)),
            }
        }
        Ok(BatchPlan {
            checks,
            writes: writes.into_iter().collect(),
        })
    }
}

/// The final effect of a batch on one key.
#[derive(Clone, Debug)]
pub enum Mutation {
    /// The key ends up holding this value.
    Put {
        /// The value.
        value: Bytes,
        /// Its options.
        options: PutOptions,
    },
    /// The key ends up absent.
    Delete,
}

/// A [`WriteBatch`] reduced by [`WriteBatch::into_plan`].
#[derive(Clone, Debug)]
pub struct BatchPlan {
    /// Preconditions, in the order given.
    pub checks: Vec<(Key, Expect)>,
    /// One mutation per key, in key order.
    pub writes: Vec<(Key, Mutation)>,
}

impl BatchPlan {
    /// Every key the plan checks or writes (checks first, a key may repeat): what a backend
    /// orders the batch by against other writes of the same keys.
    pub fn keys(&self) -> impl Iterator<Item = &Key> {
        self.checks
            .iter()
            .map(|(k, _)| k)
            .chain(self.writes.iter().map(|(k, _)| k))
    }

    /// Evaluates every check with `lookup` (the key's current metadata).
    ///
    /// # Errors
    /// `Conflict` naming the first key whose precondition fails; any error of `lookup`.
    pub fn verify_checks(
        &self,
        mut lookup: impl FnMut(&Key) -> Result<Option<ObjectMeta>>,
    ) -> Result<()> {
        for (key, expect) in &self.checks {
            let current = lookup(key)?;
            if !expect.holds(current.as_ref()) {
                return Err(conflict(key, expect));
            }
        }
        Ok(())
    }
}

/// The `Conflict` error for a failed precondition.
pub fn conflict(key: &Key, expect: &Expect) -> Error {
    Error::conflict(format!("batch precondition failed: expected {expect:?}"))
        .with_operation("write_batch")
        .with_context("key", key)
}
