//! Operations that finish even when their caller stops waiting.
//!
//! Dropping a future is how async Rust cancels, and it can happen at any `.await`: a
//! `tokio::time::timeout`, a `select!`, a client that hangs up. A storage operation that is
//! dropped half-way must leave the store as if it happened or as if it never started. Work
//! already handed to `spawn_blocking` goes on regardless, so the guards that protect it move
//! into the blocking closure; work that is a future (a layer's write followed by its
//! invalidation, a manifest written after its chunks) is wrapped in [`run_to_completion`].

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Runs `fut` to completion even if the returned future is dropped first.
///
/// While the caller waits, `fut` is polled in place, in the caller's task, exactly as if it
/// were awaited directly: no spawn, no extra allocation beyond one box, and whatever queue
/// position it holds (a fair lock it waits for, a connection's command queue) is kept. If the
/// caller drops the returned future before `fut` is done, the rest of `fut` is spawned onto
/// the current tokio runtime and finishes there; its output is discarded. Outside a runtime
/// (a drop during runtime shutdown) the rest is dropped, which is no worse than plain
/// cancellation. A future dropped before its first poll never started and is dropped
/// unrun: spawning it would run it after operations the caller started later.
///
/// Use it for a sequence of steps whose later steps must follow the earlier ones even after
/// a cancellation: write, then invalidate caches; write chunks, then the manifest, holding a
/// garbage-collection guard throughout.
pub fn run_to_completion<F>(fut: F) -> impl Future<Output = F::Output> + Send
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    Completing {
        fut: Some(Box::pin(fut)),
        started: false,
    }
}

struct Completing<F: Future + Send + 'static>
where
    F::Output: Send + 'static,
{
    fut: Option<Pin<Box<F>>>,
    /// Polled at least once: from then on it has begun and must finish.
    started: bool,
}

impl<F> Future for Completing<F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let Some(fut) = self.fut.as_mut() else {
            // Polled after completion: a caller bug. Stay pending rather than panic.
            return Poll::Pending;
        };
        let polled = fut.as_mut().poll(cx);
        self.started = true;
        match polled {
            Poll::Ready(out) => {
                self.fut = None;
                Poll::Ready(out)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<F> Drop for Completing<F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn drop(&mut self) {
        if let Some(fut) = self.fut.take()
            && self.started
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(fut);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[tokio::test]
    async fn a_dropped_operation_still_finishes_its_later_steps() {
        let (gate_tx, gate_rx) = tokio::sync::oneshot::channel::<()>();
        let finished = Arc::new(AtomicBool::new(false));
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        let flag = finished.clone();
        let op = run_to_completion(async move {
            gate_rx.await.unwrap(); // the first step, still in flight when the caller leaves
            flag.store(true, Ordering::SeqCst); // the later step
            done_tx.send(()).unwrap();
        });
        let mut op = Box::pin(op);
        assert!(futures::poll!(&mut op).is_pending());
        drop(op);
        assert!(!finished.load(Ordering::SeqCst));
        gate_tx.send(()).unwrap();
        done_rx.await.unwrap();
        assert!(finished.load(Ordering::SeqCst));
    }

    #[tokio::test]
    async fn an_operation_dropped_before_its_first_poll_never_runs() {
        let ran = Arc::new(AtomicBool::new(false));
        let flag = ran.clone();
        drop(run_to_completion(async move {
            flag.store(true, Ordering::SeqCst)
        }));
        // Had it been spawned, this yield would let it run on the current-thread runtime.
        tokio::task::yield_now().await;
        assert!(!ran.load(Ordering::SeqCst));
    }

    #[tokio::test]
    async fn an_awaited_operation_returns_its_output() {
        assert_eq!(run_to_completion(async { 7 }).await, 7);
    }
}
