//! Which tier answered a read, for callers that record it (the facade's metrics layer).
//!
//! A task-local slot, set by `CachedStore::get` as it goes: L1, Redis, or the store below.
//! Only reads run inside [`observe_served_by`] pay for it; elsewhere setting the slot is a
//! no-op.

use std::cell::Cell;
use std::future::Future;

/// The tier that answered one `get`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ServedBy {
    /// The in-process L1.
    L1,
    /// Redis (L2), after an L1 miss.
    L2,
    /// The store below the cache, after missing every tier (also for values too large to
    /// cache, and for readers that waited on another reader's load of the same key).
    Store,
}

tokio::task_local! {
    static SERVED_BY: Cell<Option<ServedBy>>;
}

/// Runs `read` (a `CachedStore::get`) and reports which tier answered it; `None` if the read
/// did not reach the cache (an error before the lookup, or a store without a cache).
pub async fn observe_served_by<F: Future>(read: F) -> (F::Output, Option<ServedBy>) {
    SERVED_BY
        .scope(Cell::new(None), async move {
            let out = read.await;
            (out, SERVED_BY.with(Cell::get))
        })
        .await
}

/// Notes `tier` for an enclosing [`observe_served_by`], if any.
pub(crate) fn note(tier: ServedBy) {
    let _ = SERVED_BY.try_with(|slot| slot.set(Some(tier)));
}
