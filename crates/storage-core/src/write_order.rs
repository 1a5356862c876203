//! Per-key write order: writes of one key are applied in the order they began, even when an
//! earlier one was dropped by its caller and finishes in the background (a blocking task
//! already running, a layer's `run_to_completion`).
//!
//! A write takes a ticket when it begins (synchronously, at its first poll): one sequence
//! number, queued on the stripe of each key it writes (keys map to [`STRIPES`] stripes by
//! hash). Whatever the write does first (a dedup layer's chunking and hashing) runs
//! concurrently; the step that must be ordered waits for its turn, until its number heads
//! every one of its stripes' queues. Tickets are handed
//! out under one lock, so every queue orders any two writes the same way and two batches
//! can never wait for each other. This is a ticket lock (Mellor-Crummey and Scott, "Algorithms
//! for Scalable Synchronization on Shared-Memory Multiprocessors", 1991) per stripe, with the
//! stripes of Guava's `Striped`.

use std::collections::{BTreeSet, VecDeque};
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::Notify;

use crate::key::Key;

/// Stripes (a power of two). Writes of different keys that share a stripe wait for each
/// other's ordered step only.
pub const STRIPES: usize = 4096;

#[derive(Debug)]
struct State {
    next: u64,
    queues: Vec<VecDeque<u64>>,
}

/// The ticket dispenser of one store or layer.
#[derive(Debug)]
pub struct WriteOrder {
    state: Mutex<State>,
    changed: Notify,
    hasher: std::collections::hash_map::RandomState,
}

impl WriteOrder {
    /// A dispenser with no ticket out.
    pub fn new() -> Arc<Self> {
        Arc::new(WriteOrder {
            state: Mutex::new(State {
                next: 0,
                queues: vec![VecDeque::new(); STRIPES],
            }),
            changed: Notify::new(),
            hasher: Default::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Every update is a whole push or removal: a panic cannot leave a queue half-changed.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a ticket for a write of `keys`. Its turn comes once every earlier ticket of the
    /// same stripes is dropped.
    pub fn begin<'k>(self: &Arc<Self>, keys: impl IntoIterator<Item = &'k Key>) -> Ticket {
        let stripes: BTreeSet<usize> = keys
            .into_iter()
            .map(|k| self.hasher.hash_one(k.as_bytes()) as usize & (STRIPES - 1))
            .collect();
        let mut state = self.lock();
        let seq = state.next;
        state.next += 1;
        for &s in &stripes {
            state.queues[s].push_back(seq);
        }
        Ticket {
            order: self.clone(),
            seq,
            stripes: stripes.into_iter().collect(),
        }
    }
}

/// A write's place in the order; dropping it (after the ordered step, or when the write
/// fails or is abandoned) lets the next write of its stripes go. Move it into the blocking
/// closure that does the step, like any guard of blocking work.
#[derive(Debug)]
pub struct Ticket {
    order: Arc<WriteOrder>,
    seq: u64,
    stripes: Vec<usize>,
}

impl Ticket {
    /// Waits until every earlier write of the same stripes has dropped its ticket.
    pub async fn turn(&self) {
        loop {
            let notified = self.order.changed.notified();
            tokio::pin!(notified);
            // Registered before the check, so a change between the check and the wait
            // still wakes us.
            notified.as_mut().enable();
            let first = {
                let state = self.order.lock();
                self.stripes
                    .iter()
                    .all(|&s| state.queues[s].front() == Some(&self.seq))
            };
            if first {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        {
            let mut state = self.order.lock();
            for &s in &self.stripes {
                let queue = &mut state.queues[s];
                if let Some(at) = queue.iter().position(|&q| q == self.seq) {
                    queue.remove(at);
                }
            }
        }
        self.order.changed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn later_tickets_wait_for_earlier_ones_of_the_same_key() {
        let order = WriteOrder::new();
        let (a, b) = (Key::new("a").unwrap(), Key::new("b").unwrap());
        let first = order.begin([&a]);
        let second = order.begin([&a, &b]);
        let mut waiting = Box::pin(second.turn());
        assert!(futures::poll!(&mut waiting).is_pending());
        first.turn().await;
        drop(first);
        waiting.await;
    }
}
