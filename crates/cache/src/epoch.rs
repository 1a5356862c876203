//! Striped write epochs: how a reader knows a value it loaded may predate a write.
//!
//! Every key maps to one of [`STRIPES`] counters (by a hash of the key). A write bumps the
//! counters of its keys *after* the backend write and the invalidation of both tiers. A load
//! records the counter *before* it reads Redis or the backend, and the cached entry carries
//! that number. An entry is served only while its number still equals the counter: any write
//! to the key that finished after the load began makes it stale, whether the write's
//! invalidation ran before or after the load inserted its value (the set-after-delete race of
//! cache-aside). Keys sharing a stripe only cost each other a spurious miss. This is the
//! lock-striping idea of Guava's `Striped`, applied to version numbers.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};

use hybridstore_core::Key;

/// Number of stripes (a power of two): 16,384 × 8 bytes = 128 KiB.
pub(crate) const STRIPES: usize = 16 * 1024;

pub(crate) struct StripedEpochs {
    stripes: Box<[AtomicU64]>,
    hasher: std::collections::hash_map::RandomState,
}

impl std::fmt::Debug for StripedEpochs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripedEpochs")
            .field("stripes", &self.stripes.len())
            .finish()
    }
}

impl StripedEpochs {
    pub fn new() -> Self {
        StripedEpochs {
            stripes: (0..STRIPES).map(|_| AtomicU64::new(0)).collect(),
            hasher: Default::default(),
        }
    }

    fn stripe(&self, key: &Key) -> &AtomicU64 {
        let index = self.hasher.hash_one(key.as_bytes()) as usize & (STRIPES - 1);
        &self.stripes[index]
    }

    /// The epoch of `key`'s stripe now.
    pub fn current(&self, key: &Key) -> u64 {
        self.stripe(key).load(Ordering::SeqCst)
    }

    /// Marks every value of `key` loaded before now as stale.
    pub fn bump(&self, key: &Key) {
        self.stripe(key).fetch_add(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bump_changes_the_epoch_of_that_key() {
        let epochs = StripedEpochs::new();
        let k = Key::new("a").unwrap();
        let before = epochs.current(&k);
        epochs.bump(&k);
        assert_ne!(epochs.current(&k), before);
    }
}
