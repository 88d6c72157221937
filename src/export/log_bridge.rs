//! Events as OTLP log records, with the caller's thread doing no more than visiting the
//! fields once into a reused slot.
//!
//! `opentelemetry-appender-tracing` builds an owned `SdkLogRecord` on the caller's thread
//! (a `String` per string field, the record boxed again into the batch processor's channel,
//! whose send may wake the export thread). Here the caller fills a thread-local [`Slot`]
//! (field names stay `&'static str`, values go into one reused text buffer), then trades it
//! under one short lock for an empty recycled slot. A thread of the crate's own turns the
//! slots into SDK records and emits them into the provider, whose processors (the admission
//! check, then the crate's own batch processor, which exports on this same thread: see
//! `log_batches`) take them from there; the thread also flushes the provider on the batch
//! schedule. The records are the same as the appender's:
//! body, attributes, severity, target, event name, scope and trace context (tested against
//! it in `tests`).
//!
//! Bounded: at most `capacity` slots wait; when they are all taken the event is counted as
//! dropped in the logs ledger, the same as a full export queue.

use std::collections::VecDeque;
use std::fmt::{self, Write as _};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry::trace::{SpanId, TraceContextExt as _, TraceFlags, TraceId};
use opentelemetry::{Key, StringValue};
use opentelemetry_sdk::logs::{SdkLogger, SdkLoggerProvider};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;

use super::accounting::Ledger;

/// How long the handoff thread lets slots gather after a busy round: long enough that a
/// steady stream of events never makes a producer wake it, short next to the batch delay.
const GATHER: Duration = Duration::from_millis(5);

/// A slot's buffers are kept for reuse up to this size, so one huge event does not pin
/// memory in every slot it passes through.
const KEEP_SLOT_BYTES: usize = 4 * 1024;

/// One event, as the caller left it.
struct Slot {
    observed: SystemTime,
    level: Level,
    target: &'static str,
    name: &'static str,
    trace: Option<(TraceId, SpanId, TraceFlags)>,
    body: Option<Range<usize>>,
    attributes: Vec<(&'static str, Value)>,
    /// The text of the body and of the string attributes, end to end.
    text: String,
    bytes: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq)]
enum Value {
    Str(Range<usize>),
    Bytes(Range<usize>),
    I64(i64),
    F64(f64),
    Bool(bool),
}

impl Default for Slot {
    fn default() -> Self {
        Slot {
            observed: SystemTime::UNIX_EPOCH,
            level: Level::INFO,
            target: "",
            name: "",
            trace: None,
            body: None,
            attributes: Vec::new(),
            text: String::new(),
            bytes: Vec::new(),
        }
    }
}

impl Slot {
    fn clear(&mut self) {
        self.trace = None;
        self.body = None;
        self.attributes.clear();
        self.text.clear();
        self.bytes.clear();
        if self.text.capacity() > KEEP_SLOT_BYTES {
            self.text = String::new();
        }
        if self.bytes.capacity() > KEEP_SLOT_BYTES {
            self.bytes = Vec::new();
        }
    }

    fn fill(&mut self, event: &Event<'_>) {
        self.clear();
        let meta = event.metadata();
        self.observed = SystemTime::now();
        self.level = *meta.level();
        self.target = meta.target();
        self.name = meta.name();
        // The SDK takes the trace context from the current context when the record is
        // emitted; that happens on the handoff thread, so it is read here.
        self.trace = opentelemetry::Context::map_current(|cx| {
            cx.has_active_span().then(|| {
                let sc = cx.span().span_context().clone();
                (sc.trace_id(), sc.span_id(), sc.trace_flags())
            })
        });
        event.record(self);
    }

    fn push_text(&mut self, f: impl FnOnce(&mut String)) -> Range<usize> {
        let start = self.text.len();
        f(&mut self.text);
        start..self.text.len()
    }

    /// Shared rather than owned: the batch processor clones every record it is handed, and a
    /// shared string's clone is a count, not a copy freed later on the export thread.
    fn text(&self, range: &Range<usize>) -> StringValue {
        StringValue::from(std::sync::Arc::<str>::from(
            self.text.get(range.clone()).unwrap_or_default(),
        ))
    }

    /// The SDK record, as `opentelemetry-appender-tracing` 0.33 would have built it.
    fn to_record(&self, logger: &SdkLogger) -> opentelemetry_sdk::logs::SdkLogRecord {
        let mut record = logger.create_log_record();
        record.set_target(self.target);
        record.set_event_name(self.name);
        record.set_severity_number(severity_of(&self.level));
        record.set_severity_text(self.level.as_str());
        record.set_observed_timestamp(self.observed);
        if let Some((trace_id, span_id, flags)) = self.trace {
            record.set_trace_context(trace_id, span_id, Some(flags));
        }
        if let Some(body) = &self.body {
            record.set_body(AnyValue::String(self.text(body)));
        }
        for (name, value) in &self.attributes {
            let value = match value {
                Value::Str(range) => AnyValue::String(self.text(range)),
                Value::Bytes(range) => {
                    AnyValue::from(self.bytes.get(range.clone()).unwrap_or_default())
                }
                Value::I64(v) => AnyValue::Int(*v),
                Value::F64(v) => AnyValue::Double(*v),
                Value::Bool(v) => AnyValue::Boolean(*v),
            };
            record.add_attribute(Key::from_static_str(name), value);
        }
        record
    }

    fn attribute(&mut self, field: &Field, value: Value) {
        self.attributes.push((field.name(), value));
    }

    /// An integer that does not fit an `i64` is written out, as the appender does.
    fn integer(&mut self, field: &Field, signed: Option<i64>, debug: &dyn fmt::Debug) {
        let value = match signed {
            Some(v) => Value::I64(v),
            None => Value::Str(self.push_text(|t| {
                let _ = write!(t, "{debug:?}");
            })),
        };
        self.attribute(field, value);
    }
}

impl Visit for Slot {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let range = self.push_text(|t| {
            let _ = write!(t, "{value:?}");
        });
        if field.name() == "message" {
            self.body = Some(range);
        } else {
            self.attribute(field, Value::Str(range));
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        let range = self.push_text(|t| t.push_str(value));
        if field.name() == "message" {
            self.body = Some(range);
        } else {
            self.attribute(field, Value::Str(range));
        }
    }

    fn record_error(&mut self, _field: &Field, value: &(dyn std::error::Error + 'static)) {
        let range = self.push_text(|t| {
            let _ = write!(t, "{value}");
        });
        self.attributes
            .push(("exception.message", Value::Str(range)));
    }

    fn record_bytes(&mut self, field: &Field, value: &[u8]) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(value);
        let range = start..self.bytes.len();
        self.attribute(field, Value::Bytes(range));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.attribute(field, Value::Bool(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.attribute(field, Value::F64(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.attribute(field, Value::I64(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.integer(field, i64::try_from(value).ok(), &value);
    }

    fn record_i128(&mut self, field: &Field, value: i128) {
        self.integer(field, i64::try_from(value).ok(), &value);
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        self.integer(field, i64::try_from(value).ok(), &value);
    }
}

fn severity_of(level: &Level) -> Severity {
    match *level {
        Level::TRACE => Severity::Trace,
        Level::DEBUG => Severity::Debug,
        Level::INFO => Severity::Info,
        Level::WARN => Severity::Warn,
        Level::ERROR => Severity::Error,
    }
}

thread_local! {
    static CALLER_SLOT: std::cell::RefCell<Slot> = std::cell::RefCell::new(Slot::default());
}

/// The slots between the callers and the handoff thread.
struct Queue {
    pending: VecDeque<Slot>,
    /// Emptied slots, with their buffers, for the callers to trade for full ones.
    free: Vec<Slot>,
    /// The handoff thread waits for the first event (idle), or gathers (busy).
    thread: ThreadState,
    stopping: bool,
}

#[derive(Clone, Copy, PartialEq)]
enum ThreadState {
    Working,
    Gathering,
    Idle,
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
    /// Held while slots are turned into records, so a flush knows that every slot taken
    /// before it has reached the provider.
    emitting: Mutex<Converter>,
    capacity: usize,
    ledger: Option<Arc<Ledger>>,
}

struct Converter {
    logger: SdkLogger,
    batch: VecDeque<Slot>,
    emptied: Vec<Slot>,
    /// Flushed once `delay` has passed since the first record emitted after the last flush:
    /// the batch processor's timer, run on this thread (see `log_batches`).
    provider: SdkLoggerProvider,
    delay: Duration,
    first_unflushed: Option<Instant>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    /// Trades the caller's full slot for an empty one; `false` when the queue is full.
    fn hand_over(&self, slot: &mut Slot) -> bool {
        let wake = {
            let mut queue = lock(&self.queue);
            if queue.pending.len() >= self.capacity || queue.stopping {
                return false;
            }
            let empty = queue.free.pop().unwrap_or_default();
            let full = std::mem::replace(slot, empty);
            queue.pending.push_back(full);
            let waiting = queue.pending.len();
            let wake = match queue.thread {
                ThreadState::Idle => waiting == 1,
                ThreadState::Gathering => waiting == self.capacity / 2,
                ThreadState::Working => false,
            };
            if wake {
                queue.thread = ThreadState::Working;
            }
            wake
        };
        if wake {
            self.wake.notify_one();
        }
        true
    }

    /// Emits every slot handed over so far into the provider, and flushes the provider when
    /// its delay is due. Returns how many were emitted and when the next flush is due.
    fn emit_pending(&self) -> (usize, Option<Instant>) {
        self.emit_with(lock(&self.emitting))
    }

    fn emit_with(&self, mut converter: MutexGuard<'_, Converter>) -> (usize, Option<Instant>) {
        let Converter {
            logger,
            batch,
            emptied,
            provider,
            delay,
            first_unflushed,
        } = &mut *converter;
        std::mem::swap(&mut lock(&self.queue).pending, batch);
        let emitted = batch.len();
        for mut slot in batch.drain(..) {
            logger.emit(slot.to_record(logger));
            slot.clear();
            emptied.push(slot);
        }
        // Emptied outside the lock the callers take: while it is held they wait.
        lock(&self.queue).free.append(emptied);
        let now = Instant::now();
        if emitted > 0 && first_unflushed.is_none() {
            *first_unflushed = Some(now);
        }
        let due = first_unflushed.map(|first| first + *delay);
        if due.is_some_and(|due| due <= now) {
            *first_unflushed = None;
            let provider = provider.clone();
            // A guard's flush waiting for this lock need not also wait for this export.
            drop(converter);
            // An export's failure is counted in the ledger and reported from there.
            let _ = provider.force_flush();
            return (emitted, None);
        }
        (emitted, due)
    }

    fn run(&self) {
        let (mut emitted, mut due) = (0, None::<Instant>);
        loop {
            let mut queue = lock(&self.queue);
            if queue.stopping {
                return;
            }
            if queue.pending.is_empty() {
                let asleep = |q: &mut Queue| q.thread != ThreadState::Working && !q.stopping;
                // Idle waits for the first event, whose caller wakes it; gathering wakes itself.
                // Either also wakes when the provider's flush is due.
                queue.thread = if emitted > 0 {
                    ThreadState::Gathering
                } else {
                    ThreadState::Idle
                };
                let until_due = due.map(|due| due.saturating_duration_since(Instant::now()));
                let timeout = match (emitted > 0, until_due) {
                    (true, Some(until_due)) => Some(until_due.min(GATHER)),
                    (true, None) => Some(GATHER),
                    (false, until_due) => until_due,
                };
                queue = match timeout {
                    Some(timeout) => {
                        self.wake
                            .wait_timeout_while(queue, timeout, asleep)
                            .unwrap_or_else(PoisonError::into_inner)
                            .0
                    }
                    None => self
                        .wake
                        .wait_while(queue, asleep)
                        .unwrap_or_else(PoisonError::into_inner),
                };
                queue.thread = ThreadState::Working;
            }
            drop(queue);
            (emitted, due) = self.emit_pending();
        }
    }
}

/// The handoff's handle for the guard: flushes what waits before the provider's own flush,
/// and stops the thread at shutdown.
#[derive(Clone)]
pub(crate) struct LogHandoff {
    shared: Arc<Shared>,
    /// No thread could be started: the callers emit themselves.
    inline: bool,
}

impl fmt::Debug for LogHandoff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogHandoff")
            .field("capacity", &self.shared.capacity)
            .finish_non_exhaustive()
    }
}

impl LogHandoff {
    /// Starts the handoff thread for `provider`, holding at most `capacity` events, and
    /// flushing the provider `delay` after the first record it has not flushed yet.
    pub(crate) fn start(
        provider: &SdkLoggerProvider,
        capacity: usize,
        ledger: Option<Arc<Ledger>>,
        delay: Duration,
    ) -> LogHandoff {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                pending: VecDeque::new(),
                free: Vec::new(),
                thread: ThreadState::Working,
                stopping: false,
            }),
            wake: Condvar::new(),
            // The appender's scope: an empty name.
            emitting: Mutex::new(Converter {
                logger: provider.logger(""),
                batch: VecDeque::new(),
                emptied: Vec::new(),
                provider: provider.clone(),
                delay,
                first_unflushed: None,
            }),
            capacity: capacity.max(1),
            ledger,
        });
        let worker = shared.clone();
        let inline = std::thread::Builder::new()
            .name("telemetry-log-records".into())
            .spawn(move || worker.run())
            .is_err();
        LogHandoff { shared, inline }
    }

    /// Hands every waiting event to the provider; returns once they are all there.
    pub(crate) fn flush(&self) {
        self.shared.emit_pending();
    }

    /// Flushes, then stops the thread; later events are dropped (the provider is closing).
    pub(crate) fn stop(&self) {
        self.flush();
        lock(&self.shared.queue).stopping = true;
        self.shared.wake.notify_one();
    }

    fn submit(&self, event: &Event<'_>) {
        let handed = CALLER_SLOT.with(|cell| match cell.try_borrow_mut() {
            Ok(mut slot) => {
                slot.fill(event);
                self.shared.hand_over(&mut slot)
            }
            // A field's Debug that logs while this thread fills its slot.
            Err(_) => {
                let mut slot = Slot::default();
                slot.fill(event);
                self.shared.hand_over(&mut slot)
            }
        });
        if !handed {
            if let Some(ledger) = &self.shared.ledger {
                ledger.count_dropped(1);
            }
        } else if self.inline {
            // An event logged by a processor while this thread emits waits for the next one.
            if let Ok(converter) = self.shared.emitting.try_lock() {
                self.shared.emit_with(converter);
            }
        }
    }
}

/// The layer: every event that passes `exported` becomes a log record.
pub(crate) struct LogRecordLayer {
    handoff: LogHandoff,
    /// Asked first, as the appender does: the processors' `event_enabled`, and the SDK's
    /// suppression of its own telemetry on its threads.
    logger: SdkLogger,
    open: Arc<AtomicBool>,
    exported: fn(&str) -> bool,
}

impl LogRecordLayer {
    /// `exported(target)` says which events become records; `open` turns them all off
    /// once the shutdown has begun.
    pub(crate) fn new(
        provider: &SdkLoggerProvider,
        handoff: LogHandoff,
        open: Arc<AtomicBool>,
        exported: fn(&str) -> bool,
    ) -> Self {
        LogRecordLayer {
            handoff,
            logger: provider.logger(""),
            open,
            exported,
        }
    }
}

impl<S: Subscriber> Layer<S> for LogRecordLayer {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let meta = event.metadata();
        if !self.open.load(Ordering::Relaxed) || !(self.exported)(meta.target()) {
            return;
        }
        if !self
            .logger
            .event_enabled(severity_of(meta.level()), meta.target(), Some(meta.name()))
        {
            return;
        }
        self.handoff.submit(event);
    }
}

#[cfg(test)]
mod tests;
