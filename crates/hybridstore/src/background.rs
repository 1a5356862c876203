//! [`BackgroundTask`]: the handle of a periodic task a system runs (scheduled backups,
//! upkeep): a stop signal, the join handle and a status channel.

use std::sync::Arc;

use tokio::sync::watch;

/// A spawned task that publishes a status `S`. Dropping the handle (the system dropped)
/// or [`stop`](Self::stop) (shutdown) ends it; the task finishes the work under way first,
/// as it only looks at the stop signal between jobs.
pub(crate) struct BackgroundTask<S> {
    stop: watch::Sender<bool>,
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    status: Arc<watch::Sender<S>>,
}

impl<S: std::fmt::Debug> std::fmt::Debug for BackgroundTask<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackgroundTask")
            .field("status", &*self.status.borrow())
            .finish_non_exhaustive()
    }
}

impl<S: Send + Sync + 'static> BackgroundTask<S> {
    /// Spawns `run(stop, status)` with `initial` as the first status.
    pub(crate) fn spawn<F>(
        initial: S,
        run: impl FnOnce(watch::Receiver<bool>, Arc<watch::Sender<S>>) -> F,
    ) -> Self
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let status = Arc::new(watch::Sender::new(initial));
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(run(stop_rx, status.clone()));
        BackgroundTask {
            stop,
            task: std::sync::Mutex::new(Some(task)),
            status,
        }
    }

    /// Signals the task to stop and waits for it (the work under way finishes first); a
    /// panic in it is logged under `what`.
    pub(crate) async fn stop(&self, what: &str) {
        let task = self
            .task
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        let _ = self.stop.send(true);
        if let Some(task) = task
            && let Err(e) = task.await
        {
            tracing::warn!(error = %e, "the {what} task failed");
        }
    }

    /// A receiver that sees every status update.
    pub(crate) fn subscribe(&self) -> watch::Receiver<S> {
        self.status.subscribe()
    }
}
