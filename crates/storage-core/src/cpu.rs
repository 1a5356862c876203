//! CPU-bound work (hashing, compression, decoding) off the async workers, at most one task
//! per core at a time.
//!
//! `spawn_blocking` alone moves such work off the workers but not out of their way: tokio's
//! blocking pool grows to 512 threads, and sixteen hashing threads on a two-core machine
//! leave a worker thread one seventeenth of the processor, so its tasks (timers, other
//! requests) wake up tens of milliseconds late. Bounding CPU work to the number of cores
//! keeps the total the same and leaves the workers their share, the reason rayon sizes its
//! pool to the cores (<https://docs.rs/rayon/latest/rayon/struct.ThreadPoolBuilder.html>).

use std::sync::atomic::{AtomicU64, Ordering};
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

/// Work on fewer bytes than this runs inline on the calling task, more through
/// [`spawn_cpu`] ([`cpu_bound`] decides): 16 KiB of SHA-256 plus LZ4 takes about 30 µs here,
/// within the 10–100 µs tokio's documentation allows between two `.await`s
/// (<https://docs.rs/tokio/latest/tokio/#cpu-bound-tasks-and-blocking-code>), and a
/// `spawn_blocking` round trip costs 10–20 µs.
pub const CPU_INLINE_MAX_BYTES: usize = 16 * 1024;

/// Runs `work`, which processes `bytes` bytes, inline when that is under
/// [`CPU_INLINE_MAX_BYTES`] and through [`spawn_cpu`] otherwise.
///
/// # Errors
/// As [`spawn_cpu`].
pub async fn cpu_bound<T: Send + 'static>(
    bytes: usize,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T> {
    if bytes < CPU_INLINE_MAX_BYTES {
        Ok(work())
    } else {
        spawn_cpu(work).await
    }
}

/// Runs `work` on tokio's blocking pool once one of the machine's cores
/// (`std::thread::available_parallelism`) is free of other CPU work started here, and
/// returns its result. The permit moves into the blocking task, so a caller that drops the
/// future does not free the core while `work` still runs.
///
/// # Errors
/// `Backend` if `work` panicked.
pub async fn spawn_cpu<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    HANDED_OFF.fetch_add(1, Ordering::Relaxed);
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

/// Pieces of work [`spawn_cpu`] has taken in this process.
static HANDED_OFF: AtomicU64 = AtomicU64::new(0);

/// How many pieces of work [`spawn_cpu`] (and [`cpu_bound`] above its threshold) has handed
/// to the blocking pool in this process so far: what a test reads before and after an
/// operation to check its CPU work left the async workers (feature `testing`).
#[cfg(feature = "testing")]
pub fn cpu_tasks_handed_off() -> u64 {
    HANDED_OFF.load(Ordering::Relaxed)
}
