//! The event sink: callers hand records to a bounded channel and return; one writer thread
//! appends them to DuckDB in batches.
//!
//! The caller's side is a `try_send`: when the channel is full the record is dropped and
//! counted, never waited for, so a slow disk or a report holding the file cannot slow a `get`.
//! The writer thread batches by count (one DuckDB row group, 122,880 rows, by default) and by
//! time (1 s), appends access events as Arrow record batches through DuckDB's Appender, and on
//! shutdown drains the channel and writes what is left, so nothing accepted is lost.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use duckdb::Connection;
use hybridstore_core::{Error, ErrorKind, Result};
use serde::Serialize;

use crate::appenders::{append_access_events_to, append_metrics};
use crate::db::{Access, DuckFile, duck_error};
use crate::event::{AccessEvent, MetricRecord};
use crate::rollup;
use crate::vocabulary::MINUTE_US;

/// A message to the writer thread.
enum Message {
    Access(AccessEvent),
    Metric(MetricRecord),
    /// Write everything received so far, roll up what the `RollUp` says, then answer.
    Flush(RollUp, SyncSender<Result<()>>),
    /// Drain, write, stop.
    Shutdown,
}

/// Counters of the sink since it started.
#[derive(Debug, Default)]
pub(crate) struct SinkCounters {
    accepted: AtomicU64,
    dropped_full: AtomicU64,
    dropped_closed: AtomicU64,
    written: AtomicU64,
    lost: AtomicU64,
    batches: AtomicU64,
    write_errors: AtomicU64,
    write_retries: AtomicU64,
}

/// A snapshot of the sink's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SinkStats {
    /// Records taken into the channel.
    pub accepted: u64,
    /// Records dropped because the channel was full (the writer is behind).
    pub dropped_full: u64,
    /// Records offered after the sink was shut down.
    pub dropped_closed: u64,
    /// Records written to DuckDB.
    pub written: u64,
    /// Accepted records that could not be written (the batch failed after its retries).
    pub lost: u64,
    /// Write batches committed.
    pub batches: u64,
    /// Write batches that failed.
    pub write_errors: u64,
    /// Writes put off because another process held the file past the lock timeout; their
    /// records stay queued for the next attempt (see `AnalyticsOptions::lock_timeout`).
    pub write_retries: u64,
}

/// The caller's handle: cheap to clone, never blocks.
#[derive(Clone, Debug)]
pub struct EventSink {
    tx: SyncSender<Message>,
    counters: Arc<SinkCounters>,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Message::Access(_) => "Access",
            Message::Metric(_) => "Metric",
            Message::Flush(..) => "Flush",
            Message::Shutdown => "Shutdown",
        })
    }
}

impl EventSink {
    /// Offers one access event. Returns `false` if it was dropped (channel full, or the sink
    /// shut down); the drop is counted in [`SinkStats`]. Never blocks.
    pub fn record(&self, event: AccessEvent) -> bool {
        self.offer(Message::Access(event))
    }

    /// Hands one access event over, waiting while the channel is full: backpressure instead
    /// of drops, for bulk loads (importing historical access logs, benchmarks) that must
    /// lose nothing and may wait. Never use it on a request path; that is what
    /// [`record`](Self::record) is for. Returns `false` only if the sink has shut down (the
    /// event is then counted as dropped).
    pub fn record_blocking(&self, event: AccessEvent) -> bool {
        match self.tx.send(Message::Access(event)) {
            Ok(()) => {
                self.counters.accepted.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(_) => {
                self.counters.dropped_closed.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Offers one metric record, as [`record`](Self::record).
    pub fn record_metric(&self, metric: MetricRecord) -> bool {
        self.offer(Message::Metric(metric))
    }

    fn offer(&self, message: Message) -> bool {
        match self.tx.try_send(message) {
            Ok(()) => {
                self.counters.accepted.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(TrySendError::Full(_)) => {
                self.counters.dropped_full.fetch_add(1, Ordering::Relaxed);
                false
            }
            Err(TrySendError::Disconnected(_)) => {
                self.counters.dropped_closed.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// The sink's counters.
    pub fn stats(&self) -> SinkStats {
        let c = &self.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        SinkStats {
            accepted: load(&c.accepted),
            dropped_full: load(&c.dropped_full),
            dropped_closed: load(&c.dropped_closed),
            written: load(&c.written),
            lost: load(&c.lost),
            batches: load(&c.batches),
            write_errors: load(&c.write_errors),
            write_retries: load(&c.write_retries),
        }
    }
}

/// Batching settings of the writer thread.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WriterSettings {
    pub channel_capacity: usize,
    pub batch_rows: usize,
    pub flush_interval: Duration,
    pub hot_key_candidates: usize,
}

/// The writer thread and the sender that stops it.
#[derive(Debug)]
pub(crate) struct Writer {
    sink: EventSink,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Writer {
    pub(crate) fn start(file: DuckFile, settings: WriterSettings) -> Result<Writer> {
        let (tx, rx) = mpsc::sync_channel(settings.channel_capacity);
        let counters = Arc::new(SinkCounters::default());
        let thread_counters = counters.clone();
        let thread = std::thread::Builder::new()
            .name("hybridstore-analytics".into())
            .spawn(move || run(file, settings, rx, &thread_counters))
            .map_err(|e| Error::backend(format!("cannot start the analytics writer: {e}")))?;
        Ok(Writer {
            sink: EventSink { tx, counters },
            thread: Mutex::new(Some(thread)),
        })
    }

    pub(crate) fn sink(&self) -> &EventSink {
        &self.sink
    }

    /// Waits until everything offered before this call is written.
    ///
    /// # Errors
    /// `Unavailable` if the writer has stopped; the batch's write error otherwise.
    pub(crate) fn flush(&self) -> Result<()> {
        self.flush_and(RollUp::Nothing)
    }

    /// Waits until everything offered before this call is written and every minute written
    /// so far is rolled up.
    ///
    /// # Errors
    /// As [`flush`](Self::flush).
    pub(crate) fn roll_up(&self) -> Result<()> {
        self.flush_and(RollUp::Everything)
    }

    fn flush_and(&self, roll: RollUp) -> Result<()> {
        let (ack_tx, ack_rx) = mpsc::sync_channel(1);
        let stopped = || Error::new(ErrorKind::Unavailable, "the analytics writer has stopped");
        self.sink
            .tx
            .send(Message::Flush(roll, ack_tx))
            .map_err(|_| stopped())?;
        ack_rx.recv().map_err(|_| stopped())?
    }

    /// The writer thread's handle, unless a shutdown took it already.
    fn take_thread(&self) -> Option<JoinHandle<()>> {
        self.thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// Drains the channel, writes what is left and joins the thread. Idempotent.
    pub(crate) fn shutdown(&self) {
        if let Some(thread) = self.take_thread() {
            // A blocking send: the writer is draining, so room appears.
            let _ = self.sink.tx.send(Message::Shutdown);
            if thread.join().is_err() {
                tracing::error!("the analytics writer thread panicked");
            }
        }
    }
}

impl Drop for Writer {
    /// Writes what is left and stops the thread, without ever blocking an async worker: on a
    /// multi-thread tokio runtime the wait runs under `block_in_place` (the worker's other
    /// tasks move elsewhere meanwhile); on a current-thread runtime, whose one worker must
    /// not wait, the drain and join are handed to a thread of their own (so the events are
    /// written shortly after the drop returns; call `AnalyticsStore::close` from
    /// `spawn_blocking` to wait for them); outside any runtime it waits here.
    fn drop(&mut self) {
        use tokio::runtime::{Handle, RuntimeFlavor};
        match Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(RuntimeFlavor::CurrentThread) => {
                if let Some(thread) = self.take_thread() {
                    let tx = self.sink.tx.clone();
                    let joiner = std::thread::Builder::new()
                        .name("hybridstore-analytics-close".into())
                        .spawn(move || {
                            let _ = tx.send(Message::Shutdown);
                            if thread.join().is_err() {
                                tracing::error!("the analytics writer thread panicked");
                            }
                        });
                    if let Err(e) = joiner {
                        tracing::error!(error = %e, "cannot hand the analytics writer's shutdown to a thread; events still queued are lost");
                    }
                }
            }
            Ok(_) => tokio::task::block_in_place(|| self.shutdown()),
            Err(_) => self.shutdown(),
        }
    }
}

/// Which minutes a write rolls up. Rolling is deferred work, like an LSM tree's
/// compaction: a stream that keeps the channel full is written at full speed and rolled up
/// when it pauses, unless it runs [`ROLL_BEHIND_US`] ahead of the rollups. Shutdown rolls
/// what is due, like a pause: a short-lived process (one CLI command) adds no rollup work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RollUp {
    /// None (a flush: it makes events visible, which they are once written).
    Nothing,
    /// The whole minutes the writer has seen events [`rollup::GRACE_US`] past (when the
    /// writer is idle).
    Due,
    /// The same, but only once at least [`ROLL_BEHIND_US`] of them are due (during a
    /// stream).
    Behind,
    /// Every minute up to the newest event written (`AnalyticsStore::roll_up`).
    Everything,
}

/// How far a busy writer lets the due minutes pile up before it rolls them anyway: reports
/// read at most this much plus [`rollup::GRACE_US`] and a minute of events unrolled.
const ROLL_BEHIND_US: i64 = 2 * MINUTE_US;

/// Records received and not yet written.
#[derive(Default)]
struct Pending {
    access: Vec<AccessEvent>,
    metrics: Vec<MetricRecord>,
    /// The newest access event timestamp written so far (µs), for rolling up.
    newest_written_us: Option<i64>,
    /// The furthest watermark an idle or final roll asked for (µs): an idle writer opens the
    /// file to roll only when a later one is due.
    rolled_to_us: Option<i64>,
}

impl Pending {
    fn len(&self) -> usize {
        self.access.len() + self.metrics.len()
    }

    fn push(&mut self, message: Message) {
        match message {
            Message::Access(e) => self.access.push(e),
            Message::Metric(m) => self.metrics.push(m),
            Message::Flush(..) | Message::Shutdown => {}
        }
    }

    /// Appends everything pending on `conn` as one write batch (one transaction, with the
    /// rollup rows of any event older than the rollup watermark), then empties it and counts
    /// it written. On error nothing is emptied: the caller counts it lost.
    fn append_to(
        &mut self,
        conn: &Connection,
        counters: &SinkCounters,
        settings: &WriterSettings,
    ) -> Result<()> {
        let rows = self.len() as u64;
        let tx = conn.unchecked_transaction().map_err(duck_error)?;
        append_access_events_to(&tx, "access_events", &self.access)?;
        if let Some(watermark) = rollup::rolled_until(&tx)? {
            let late: Vec<AccessEvent> = self
                .access
                .iter()
                .filter(|e| e.timestamp_us < watermark)
                .cloned()
                .collect();
            rollup::add_late_events(&tx, &late, settings.hot_key_candidates)?;
        }
        append_metrics(&tx, &self.metrics)?;
        tx.commit().map_err(duck_error)?;
        let newest = self.access.iter().map(|e| e.timestamp_us).max();
        self.newest_written_us = self.newest_written_us.max(newest);
        self.access.clear();
        self.metrics.clear();
        counters.written.fetch_add(rows, Ordering::Relaxed);
        counters.batches.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Rolls up the minutes `roll` says (see the `rollup` module). A failure is logged and
    /// left: the events are written, and reports read what is not rolled from them.
    fn roll_up(&mut self, conn: &Connection, roll: RollUp, settings: &WriterSettings) {
        let Some((until, at_least)) = self.roll_target(roll) else {
            return;
        };
        match rollup::roll_until(conn, until, at_least, settings.hot_key_candidates) {
            Ok(()) if roll != RollUp::Behind => self.rolled_to_us = Some(until),
            Ok(()) => {}
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    "analytics rollup failed; reports read the events instead"
                );
            }
        }
    }

    /// The watermark `roll` asks for and the least advance worth a roll; `None` when there
    /// is nothing to roll.
    fn roll_target(&self, roll: RollUp) -> Option<(i64, i64)> {
        let newest = self.newest_written_us?;
        let due = rollup::floor_minute(newest.saturating_sub(rollup::GRACE_US));
        match roll {
            RollUp::Nothing => None,
            RollUp::Due => Some((due, MINUTE_US)),
            RollUp::Behind => Some((due, ROLL_BEHIND_US)),
            RollUp::Everything => Some((
                rollup::floor_minute(newest).saturating_add(MINUTE_US),
                MINUTE_US,
            )),
        }
    }

    /// Whether an idle or final roll would ask for more than the last one did.
    fn roll_pending(&self, roll: RollUp) -> bool {
        matches!(roll, RollUp::Due | RollUp::Everything)
            && self
                .roll_target(roll)
                .is_some_and(|(until, _)| self.rolled_to_us.is_none_or(|done| until > done))
    }

    /// After a write failed with `error`: keeps what is pending for the next attempt if
    /// another process only held the file past the lock timeout (`Unavailable`: a long
    /// `analytics export` or query) and at most [`MAX_KEPT_BATCHES`] batches wait, so a reader
    /// costs the writer time, not events; otherwise counts it lost and empties it.
    fn keep_or_lose(&mut self, error: &Error, counters: &SinkCounters, settings: &WriterSettings) {
        let cap = settings.batch_rows.saturating_mul(MAX_KEPT_BATCHES);
        if error.kind() == ErrorKind::Unavailable && self.len() <= cap {
            counters.write_retries.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %error, rows = self.len(), "analytics file held by another process; the write is retried");
            return;
        }
        self.lose(error, counters);
    }

    /// Counts what is pending as lost to `error` and empties it.
    fn lose(&mut self, error: &Error, counters: &SinkCounters) {
        let rows = self.len() as u64;
        counters.lost.fetch_add(rows, Ordering::Relaxed);
        counters.write_errors.fetch_add(1, Ordering::Relaxed);
        self.access.clear();
        self.metrics.clear();
        tracing::error!(error = %error, rows, "analytics write batch failed; its records are lost");
    }
}

/// Write batches a writer keeps (in memory) while another process holds the file, before it
/// counts them lost: with the default 122,880-row batches, about half a million events.
const MAX_KEPT_BATCHES: usize = 4;

/// The longest the writer keeps the file open for a run of full batches (its WAL is
/// checkpointed when it closes). A reader of another process that announced itself (see
/// `db.rs`) ends a hold sooner, at the next batch boundary.
const MAX_HOLD: Duration = Duration::from_secs(1);

/// After a hold of [`MAX_HOLD`], how long the writer leaves the file alone (it keeps
/// receiving meanwhile), for readers that could not announce themselves (no write access to
/// the database's directory) and only retry DuckDB's lock, at least every 20 ms.
const READER_WINDOW: Duration = Duration::from_millis(25);

/// The writer thread: what it has received and not yet written, and when it last wrote.
struct Batcher<'a> {
    file: DuckFile,
    settings: WriterSettings,
    rx: Receiver<Message>,
    counters: &'a SinkCounters,
    pending: Pending,
    last_write: Instant,
    /// No new hold before this instant (the readers' window after a long hold).
    not_before: Instant,
}

fn run(file: DuckFile, settings: WriterSettings, rx: Receiver<Message>, counters: &SinkCounters) {
    let now = Instant::now();
    Batcher {
        file,
        settings,
        rx,
        counters,
        pending: Pending::default(),
        last_write: now,
        not_before: now,
    }
    .run();
}

impl Batcher<'_> {
    fn run(mut self) {
        loop {
            let wait = self
                .settings
                .flush_interval
                .saturating_sub(self.last_write.elapsed());
            let control = match self.rx.recv_timeout(wait) {
                Ok(record @ (Message::Access(_) | Message::Metric(_))) => {
                    self.pending.push(record);
                    self.full_batches()
                }
                Ok(control) => Some(control),
                Err(RecvTimeoutError::Timeout) => {
                    let _ = self.write(RollUp::Due);
                    None
                }
                Err(RecvTimeoutError::Disconnected) => Some(Message::Shutdown),
            };
            match control {
                None | Some(Message::Access(_) | Message::Metric(_)) => {}
                Some(Message::Flush(roll, ack)) => {
                    let _ = ack.send(self.write(roll));
                }
                Some(Message::Shutdown) => return self.shut_down(),
            }
        }
    }

    /// Writes everything already queued and rolls up what is due (everything, if a
    /// `roll_up` was queued); a flush queued behind the shutdown is answered once it is.
    fn shut_down(mut self) {
        let mut acks = Vec::new();
        let mut roll = RollUp::Due;
        while let Ok(message) = self.rx.try_recv() {
            match message {
                Message::Flush(RollUp::Everything, ack) => {
                    roll = RollUp::Everything;
                    acks.push(ack);
                }
                Message::Flush(_, ack) => acks.push(ack),
                other => self.pending.push(other),
            }
        }
        let result = self.write(roll);
        if let Err(e) = &result
            && self.pending.len() > 0
        {
            // No later attempt: what a held file kept back is lost now, and counted.
            self.pending.lose(e, self.counters);
        }
        for ack in acks {
            let copy = match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(Error::new(e.kind(), e.to_string())),
            };
            let _ = ack.send(copy);
        }
    }

    /// Writes and empties `pending` (if it holds anything) on one connection, and rolls up
    /// what `roll` says.
    fn write(&mut self, roll: RollUp) -> Result<()> {
        self.last_write = Instant::now();
        // With nothing to write, open the file only to roll up what earlier writes left.
        if self.pending.len() == 0 && !self.pending.roll_pending(roll) {
            return Ok(());
        }
        let (pending, counters, settings) = (&mut self.pending, self.counters, &self.settings);
        let result = self.file.with_connection(Access::ReadWrite, |conn| {
            pending.append_to(conn, counters, settings)?;
            pending.roll_up(conn, roll, settings);
            Ok(())
        });
        if let Err(e) = &result {
            self.pending.keep_or_lose(e, self.counters, &self.settings);
        }
        result
    }

    /// When `pending` holds a full batch: writes it, and on the same connection every
    /// further full batch already waiting in the channel, for at most [`MAX_HOLD`] and only
    /// while no reader of another process is waiting. A busy stream then pays one open and
    /// one checkpoint a second instead of one per batch.
    /// Returns a flush or shutdown met while taking batches from the channel, for the caller
    /// to carry out; a partial batch taken stays in `pending` for the timer.
    fn full_batches(&mut self) -> Option<Message> {
        if self.pending.len() < self.settings.batch_rows || Instant::now() < self.not_before {
            return None;
        }
        let started = Instant::now();
        let mut control = None;
        let Batcher {
            file,
            settings,
            rx,
            counters,
            pending,
            not_before,
            ..
        } = self;
        let result = file.with_connection(Access::ReadWrite, |conn| {
            'hold: loop {
                pending.append_to(conn, counters, settings)?;
                if started.elapsed() >= MAX_HOLD {
                    *not_before = Instant::now() + READER_WINDOW;
                    break 'hold;
                }
                if file.reader_waiting() {
                    break 'hold;
                }
                // Take what is already queued, up to one batch, without waiting.
                while pending.len() < settings.batch_rows {
                    match rx.try_recv() {
                        Ok(m @ (Message::Flush(..) | Message::Shutdown)) => {
                            control = Some(m);
                            break 'hold;
                        }
                        Ok(m) => pending.push(m),
                        Err(_) => break 'hold,
                    }
                }
            }
            pending.roll_up(conn, RollUp::Behind, settings);
            Ok(())
        });
        if let Err(e) = result {
            // The batch that failed, or everything pending if the file could not be opened.
            self.pending.keep_or_lose(&e, self.counters, &self.settings);
        }
        self.last_write = Instant::now();
        control
    }
}
