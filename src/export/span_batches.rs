//! The spans' batch processor: ended spans gathered in batch-sized vectors that the export
//! thread hands to the exporter whole.
//!
//! The SDK's `BatchSpanProcessor` (0.33) sends every span through a bounded channel, and its
//! thread moves each one three times more: out of the channel, into its batch, and into the
//! vector it hands the exporter. A profile of sustained export put about a sixth of that
//! thread's time there, and every span also pays two shared counters on the ending thread.
//! [`BatchedSpans`] pushes each span once into a vector behind a lock; the export thread swaps
//! in an empty one and passes the full one to the exporter as it is, so a span is moved once
//! between the thread that ended it and the encoder. A vector never grows past a batch: when
//! the exporter falls behind, a full one is set aside and the next span starts another, so
//! a backlog is never copied into a larger vector on a thread that ends a span, nor split again
//! for export. The empty vectors are allocated on the export thread, outside the lock, except
//! when more than two batches pile up. Every thread that ends a span takes the
//! lock for that one push (the export thread takes it once a batch); the benches have a single
//! producing thread, so contention among many producers is not measured.
//!
//! Its behaviour is the SDK processor's: an export when a batch is full or the schedule delay
//! has passed since the last one, in batches of at most `max_batch`; a flush that returns once
//! every span ended before it has been exported (or after [`FLUSH_TIMEOUT`]); a shutdown that exports what
//! waits, shuts the exporter down and gives up waiting after its timeout; the exporter's own
//! telemetry suppressed on its thread. At most `max_queue` spans wait; more are dropped
//! (the ledger's admission check in front of it counts them before they get here).

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use opentelemetry::Context;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter, SpanProcessor};

/// How long a flush waits for the export thread, as the SDK's processor does.
pub(crate) const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// Sizes and timing of a [`BatchedSpans`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Batching {
    pub(crate) max_queue: usize,
    pub(crate) max_batch: usize,
    pub(crate) delay: Duration,
    /// How long a flush waits for the export thread ([`FLUSH_TIMEOUT`]).
    pub(crate) flush_timeout: Duration,
}

#[derive(Default)]
struct Waiting {
    /// The batch being filled, sized for `max_batch`.
    filling: Vec<SpanData>,
    /// Batches filled while the export thread was busy, oldest first, `max_batch` each.
    full: Vec<Vec<SpanData>>,
    /// An empty vector sized for a batch, made on the export thread for the next one to fill.
    spare: Vec<SpanData>,
    /// Flushes asked for, and the last the export thread has finished with its result.
    flushes_asked: u64,
    flushes_done: u64,
    flush_result: Option<OTelSdkError>,
    /// Set by shutdown (with the exporter's timeout) or by dropping the processor.
    closing: Option<Duration>,
    /// The export thread's shutdown result, once it has exited.
    closed: Option<OTelSdkResult>,
    /// How many times the export thread has started waiting, so that a test can end spans
    /// only once it waits.
    #[cfg(test)]
    waits: u64,
}

struct Shared<E> {
    waiting: Mutex<Waiting>,
    /// Wakes the export thread: a full batch, a flush, a shutdown.
    work: Condvar,
    /// Wakes flushes and shutdown when the export thread has done their part.
    done: Condvar,
    exporter: Mutex<E>,
    batching: Batching,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Waits on `condvar` until woken or `deadline`; `None` once the deadline has passed.
fn wait_until<'a, T>(
    condvar: &Condvar,
    guard: MutexGuard<'a, T>,
    deadline: Instant,
) -> Option<MutexGuard<'a, T>> {
    let left = deadline
        .checked_duration_since(Instant::now())
        .filter(|left| !left.is_zero())?;
    Some(
        condvar
            .wait_timeout(guard, left)
            .unwrap_or_else(PoisonError::into_inner)
            .0,
    )
}

/// A batching span processor with one export thread (see the module docs).
pub(crate) struct BatchedSpans<E> {
    shared: Arc<Shared<E>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl<E> std::fmt::Debug for BatchedSpans<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchedSpans")
            .field("batching", &self.shared.batching)
            .finish_non_exhaustive()
    }
}

impl<E: SpanExporter + 'static> BatchedSpans<E> {
    /// Starts the export thread. When no thread can be started, spans are exported by the
    /// thread that fills a batch, and by flushes and shutdown.
    pub(crate) fn new(exporter: E, batching: Batching) -> Self {
        let batching = Batching {
            max_queue: batching.max_queue.max(1),
            max_batch: batching.max_batch.clamp(1, batching.max_queue.max(1)),
            ..batching
        };
        let shared = Arc::new(Shared {
            waiting: Mutex::new(Waiting {
                filling: Vec::with_capacity(batching.max_batch),
                spare: Vec::with_capacity(batching.max_batch),
                ..Waiting::default()
            }),
            work: Condvar::new(),
            done: Condvar::new(),
            exporter: Mutex::new(exporter),
            batching,
        });
        let for_thread = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("OpenTelemetry.Traces.BatchProcessor".into())
            .spawn(move || export_until_closed(&for_thread))
            .ok();
        BatchedSpans {
            shared,
            thread: Mutex::new(thread),
        }
    }

    fn has_thread(&self) -> bool {
        lock(&self.thread).is_some()
    }
}

impl<E: SpanExporter> Shared<E> {
    /// Exports each batch as it was filled; the last failure, if any.
    fn export(&self, batches: Vec<Vec<SpanData>>) -> Option<OTelSdkError> {
        if batches.is_empty() {
            return None;
        }
        let _quiet = Context::enter_telemetry_suppressed_scope();
        let exporter = lock(&self.exporter);
        let mut failure = None;
        for batch in batches {
            if let Err(e) = futures_executor::block_on(exporter.export(batch)) {
                failure = Some(e);
            }
        }
        failure
    }

    /// Exports what waits on the calling thread (when there is no export thread).
    fn export_waiting(&self) -> Option<OTelSdkError> {
        let batches = self.take(&mut lock(&self.waiting));
        self.export(batches)
    }

    fn shut_down(&self, timeout: Duration) -> OTelSdkResult {
        let _quiet = Context::enter_telemetry_suppressed_scope();
        lock(&self.exporter).shutdown_with_timeout(timeout)
    }

    /// Takes what waits, oldest batch first, leaving an empty vector to fill.
    fn take(&self, waiting: &mut Waiting) -> Vec<Vec<SpanData>> {
        let mut batches = std::mem::take(&mut waiting.full);
        if !waiting.filling.is_empty() {
            let next = waiting.next_batch(self.batching.max_batch);
            batches.push(std::mem::replace(&mut waiting.filling, next));
        }
        batches
    }
}

impl Waiting {
    fn queued(&self, max_batch: usize) -> usize {
        self.full.len() * max_batch + self.filling.len()
    }

    /// The spare when there is one; otherwise a vector made here, under the lock.
    fn next_batch(&mut self, max_batch: usize) -> Vec<SpanData> {
        let spare = std::mem::take(&mut self.spare);
        if spare.capacity() >= max_batch {
            spare
        } else {
            Vec::with_capacity(max_batch)
        }
    }
}

/// The export thread: waits for a full batch, the schedule delay, a flush or shutdown.
fn export_until_closed<E: SpanExporter>(shared: &Shared<E>) {
    let mut last_export = Instant::now();
    loop {
        let mut waiting = lock(&shared.waiting);
        let due = last_export + shared.batching.delay;
        while waiting.closing.is_none()
            && waiting.flushes_asked == waiting.flushes_done
            && waiting.full.is_empty()
        {
            #[cfg(test)]
            {
                waiting.waits += 1;
            }
            match wait_until(&shared.work, waiting, due) {
                Some(woken) => waiting = woken,
                None => {
                    waiting = lock(&shared.waiting);
                    break;
                }
            }
        }
        let flush = waiting.flushes_asked;
        let closing = waiting.closing;
        let batches = shared.take(&mut waiting);
        let spare_taken = waiting.spare.capacity() == 0;
        drop(waiting);

        let failure = shared.export(batches);
        last_export = Instant::now();
        let spare = spare_taken.then(|| Vec::with_capacity(shared.batching.max_batch));

        let mut waiting = lock(&shared.waiting);
        if let Some(spare) = spare.filter(|_| waiting.spare.capacity() == 0) {
            waiting.spare = spare;
        }
        if flush > waiting.flushes_done {
            waiting.flushes_done = flush;
            waiting.flush_result = failure;
            shared.done.notify_all();
        }
        if let Some(timeout) = closing {
            // Nothing was added since the spans were taken: `on_end` refuses spans once
            // `closing` is set, and both are read under the same lock.
            drop(waiting);
            let shut = shared.shut_down(timeout);
            lock(&shared.waiting).closed = Some(shut);
            shared.done.notify_all();
            return;
        }
    }
}

impl<E: SpanExporter + 'static> SpanProcessor for BatchedSpans<E> {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        let Batching {
            max_queue,
            max_batch,
            ..
        } = self.shared.batching;
        let first_full = {
            let mut waiting = lock(&self.shared.waiting);
            if waiting.closing.is_some() || waiting.queued(max_batch) >= max_queue {
                return;
            }
            waiting.filling.push(span);
            if waiting.filling.len() < max_batch {
                false
            } else {
                let next = waiting.next_batch(max_batch);
                let full = std::mem::replace(&mut waiting.filling, next);
                waiting.full.push(full);
                waiting.full.len() == 1
            }
        };
        if first_full {
            if self.has_thread() {
                self.shared.work.notify_one();
            } else {
                // The ledger counts a failed export; the error needs no second report here.
                let _ = self.shared.export_waiting();
            }
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        let flush_timeout = self.shared.batching.flush_timeout;
        let deadline = Instant::now() + flush_timeout;
        let mut waiting = lock(&self.shared.waiting);
        if waiting.closing.is_some() {
            return Err(OTelSdkError::AlreadyShutdown);
        }
        if !self.has_thread() {
            drop(waiting);
            return self.shared.export_waiting().map_or(Ok(()), Err);
        }
        waiting.flushes_asked += 1;
        let asked = waiting.flushes_asked;
        self.shared.work.notify_one();
        while waiting.flushes_done < asked {
            let gone = waiting.closed.is_some();
            match wait_until(&self.shared.done, waiting, deadline).filter(|_| !gone) {
                Some(woken) => waiting = woken,
                None => return Err(OTelSdkError::Timeout(flush_timeout)),
            }
        }
        waiting
            .flush_result
            .as_ref()
            .map_or(Ok(()), |e| Err(copy_of(e)))
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let deadline = Instant::now() + timeout;
        {
            let mut waiting = lock(&self.shared.waiting);
            if waiting.closing.is_some() {
                return Err(OTelSdkError::AlreadyShutdown);
            }
            waiting.closing = Some(timeout);
        }
        let thread = lock(&self.thread).take();
        let Some(thread) = thread else {
            let failure = self.shared.export_waiting();
            let shut = self.shared.shut_down(timeout);
            return failure.map_or(shut, Err);
        };
        self.shared.work.notify_one();
        let mut waiting = lock(&self.shared.waiting);
        loop {
            if let Some(result) = waiting.closed.take() {
                drop(waiting);
                // The thread has nothing left to do but return.
                let _ = thread.join();
                return result;
            }
            match wait_until(&self.shared.done, waiting, deadline) {
                Some(woken) => waiting = woken,
                // Left to finish (or hang) on its own; the process can still exit.
                None => return Err(OTelSdkError::Timeout(timeout)),
            }
        }
    }

    fn set_resource(&mut self, resource: &Resource) {
        lock(&self.shared.exporter).set_resource(resource);
    }
}

/// The error again, for each flush that waited on the same export (the SDK's is not `Clone`).
fn copy_of(error: &OTelSdkError) -> OTelSdkError {
    match error {
        OTelSdkError::AlreadyShutdown => OTelSdkError::AlreadyShutdown,
        OTelSdkError::Timeout(after) => OTelSdkError::Timeout(*after),
        OTelSdkError::InternalFailure(text) => OTelSdkError::InternalFailure(text.clone()),
    }
}

impl<E> Drop for BatchedSpans<E> {
    fn drop(&mut self) {
        // Without a shutdown the thread would wait forever; it exports what waits and ends.
        let mut waiting = lock(&self.shared.waiting);
        if waiting.closing.is_none() {
            waiting.closing = Some(Duration::from_secs(5));
            self.shared.work.notify_one();
        }
    }
}

#[cfg(test)]
mod tests;
