//! CPU-bound work (hashing, compression, decoding) off the async workers, at most one task
//! per core at a time.
//!
//! `spawn_blocking` alone moves such work off the workers but not out of their way: tokio's
//! blocking pool grows to 512 threads, and sixteen hashing threads on a two-core machine
//! leave a worker thread one seventeenth of the processor, so its tasks (timers, other
//! requests) wake up tens of milliseconds late. Bounding CPU work to the number of cores
//! keeps the total the same and leaves the workers their share, the reason rayon sizes its
//! pool to the cores (<https://docs.rs/rayon/latest/rayon/struct.ThreadPoolBuilder.html>).

use std::sync::{Arc, OnceLock};

use tokio::sync::Semaphore;

use crate::error::{Error, Result};

fn permits() -> &'static Arc<Semaphore> {
    static PERMITS: OnceLock<Arc<Semaphore>> = OnceLock::new();
    PERMITS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Arc::new(Semaphore::new(cores))
    })
}

/// Runs `work` on tokio's blocking pool once one of the machine's cores
/// (`std::thread::available_parallelism`) is free of other CPU work started here, and
/// returns its result. The permit moves into the blocking task, so a caller that drops the
/// future does not free the core while `work` still runs.
///
/// # Errors
/// `Backend` if `work` panicked.
pub async fn spawn_cpu<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    let permit = permits()
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| Error::backend("the CPU work limiter is closed"))?;
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        work()
    })
    .await
    .map_err(|e| Error::backend(format!("CPU task failed: {e}")))
}
