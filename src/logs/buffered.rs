//! A log writer that keeps the `write` syscall off the caller's path: lines are appended to a
//! bounded in-memory buffer and a background thread writes them out in large chunks.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread::Thread;
use std::time::{Duration, Instant, SystemTime};

use super::time::write_timestamp;
use super::writer::LogWriter;

/// Default bound on the bytes waiting to be written: 4 MiB.
pub const DEFAULT_BUFFER_CAPACITY: usize = 4 << 20;
/// Default pause between two writes while lines keep coming: 5 ms.
pub const DEFAULT_WRITE_INTERVAL: Duration = Duration::from_millis(5);
/// Longest a flush waits for the background thread, so a stdout nobody reads cannot hold a
/// shutdown or a panic: 1 s.
pub const FLUSH_WAIT: Duration = Duration::from_secs(1);

/// What a [`BufferedWriter`] does with a line when its buffer is full (the destination is not
/// keeping up, e.g. a stalled log collector on the other end of the pipe).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Overflow {
    /// Drop the line and count it; the service never waits for its logs. The count is written
    /// as one `warn` line once the destination accepts lines again, and is available from
    /// [`crate::Telemetry::dropped_log_lines`]. The default.
    #[default]
    DropAndCount,
    /// Wait until the background thread has made room, as a direct write to a full pipe would;
    /// no line is lost, but a stalled destination stalls the threads that log.
    Block,
}

/// The default log writer: JSON lines go into a bounded buffer and a background thread
/// (`log-writer`) writes them to stdout (or any [`Write`]) in chunks.
///
/// - A caller's cost is a short lock and a copy; no system call in steady state (the thread is
///   woken when lines arrive after a quiet period, or when the buffer is half full).
/// - Lines are appended whole under the lock and written in order, so lines from many threads
///   never interleave, and each chunk is one `write_all` under the stdout lock, so `println!`
///   lines from the service do not land inside it.
/// - Nothing is lost at shutdown, on a panic or on the shutdown watchdog's exit: each of them
///   flushes (waiting at most [`FLUSH_WAIT`]), and once the [`crate::Telemetry`] guard has shut
///   down, later lines are written directly on the caller's thread. Only a
///   `std::process::exit` while the guard is still alive can lose the lines of the last
///   write interval; drop or shut down the guard first.
/// - Memory is bounded by twice the capacity: the buffer lines go into, and the chunk being
///   written. Both are reserved at full size by the background thread, so appending a line
///   never allocates on the caller's thread; pages are only touched as lines fill them. One
///   line larger than the capacity is still accepted into an empty buffer. What happens when
///   the buffer is full is the [`Overflow`] policy.
///
/// ```
/// use service_telemetry::{BufferedWriter, Overflow};
///
/// let writer = BufferedWriter::builder()
///     .capacity(16 << 20)
///     .overflow(Overflow::Block)
///     .stdout();
/// let _telemetry = service_telemetry::Telemetry::builder().with_writer(writer);
/// ```
pub struct BufferedWriter {
    shared: Arc<Shared>,
}

/// Settings of a [`BufferedWriter`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `stdout` or `to` is called"]
pub struct BufferedWriterBuilder {
    capacity: usize,
    interval: Duration,
    overflow: Overflow,
}

impl BufferedWriterBuilder {
    /// Bound on the bytes waiting to be written. Default [`DEFAULT_BUFFER_CAPACITY`].
    pub fn capacity(mut self, bytes: usize) -> Self {
        self.capacity = bytes.max(1);
        self
    }

    /// Pause between two writes while lines keep coming, which sets the chunk size. Default
    /// [`DEFAULT_WRITE_INTERVAL`].
    pub fn write_interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// What to do when the buffer is full. Default [`Overflow::DropAndCount`].
    pub fn overflow(mut self, overflow: Overflow) -> Self {
        self.overflow = overflow;
        self
    }

    /// A writer to the process's standard output.
    pub fn stdout(self) -> BufferedWriter {
        self.to(std::io::stdout())
    }

    /// A writer to `sink` (a file, a pipe, a socket).
    pub fn to(self, sink: impl Write + Send + 'static) -> BufferedWriter {
        BufferedWriter {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    pending: Vec::new(),
                    accepted: 0,
                    written: 0,
                    dropped_unreported: 0,
                    dropped_total: 0,
                    worker_idle: true,
                    blocked: 0,
                    closed: false,
                }),
                room: Condvar::new(),
                written: Condvar::new(),
                sink: Mutex::new(Box::new(sink)),
                worker: OnceLock::new(),
                capacity: self.capacity,
                interval: self.interval,
                overflow: self.overflow,
            }),
        }
    }
}

impl BufferedWriter {
    /// A writer to stdout with the default settings.
    pub fn stdout() -> Self {
        Self::builder().stdout()
    }

    /// Settings other than the defaults.
    pub fn builder() -> BufferedWriterBuilder {
        BufferedWriterBuilder {
            capacity: DEFAULT_BUFFER_CAPACITY,
            interval: DEFAULT_WRITE_INTERVAL,
            overflow: Overflow::default(),
        }
    }
}

impl std::fmt::Debug for BufferedWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BufferedWriter")
            .field("capacity", &self.shared.capacity)
            .field("write_interval", &self.shared.interval)
            .field("overflow", &self.shared.overflow)
            .finish_non_exhaustive()
    }
}

struct Shared {
    state: Mutex<State>,
    /// Signalled when the worker has taken the buffer, for callers blocked by [`Overflow::Block`].
    room: Condvar,
    /// Signalled after every chunk is written, for flushes.
    written: Condvar,
    /// Whoever holds this writes; chunks are taken from the buffer under it, so order holds.
    sink: Mutex<Box<dyn Write + Send>>,
    /// The background thread, started by the first line; `None` if it could not be spawned,
    /// in which case lines are written directly.
    worker: OnceLock<Option<Thread>>,
    capacity: usize,
    interval: Duration,
    overflow: Overflow,
}

struct State {
    pending: Vec<u8>,
    /// Lines taken into the buffer, and lines the worker has written, since the start.
    accepted: u64,
    written: u64,
    dropped_unreported: u64,
    dropped_total: u64,
    /// The worker is parked until woken; the next line must wake it.
    worker_idle: bool,
    /// Callers waiting for room.
    blocked: usize,
    closed: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    fn worker(self: &Arc<Self>) -> Option<&Thread> {
        self.worker
            .get_or_init(|| {
                let shared = Arc::clone(self);
                std::thread::Builder::new()
                    .name("log-writer".into())
                    .spawn(move || shared.run())
                    .ok()
                    .map(|handle| handle.thread().clone())
            })
            .as_ref()
    }

    fn write_direct(&self, bytes: &[u8]) {
        let mut sink = lock(&self.sink);
        // A closed pipe or a full disk must not take the service down.
        let _ = sink.write_all(bytes);
        let _ = sink.flush();
    }

    fn append(self: &Arc<Self>, line: &[u8]) {
        let Some(worker) = self.worker() else {
            self.write_direct(line);
            return;
        };
        let mut state = lock(&self.state);
        loop {
            if state.closed {
                drop(state);
                self.write_direct(line);
                return;
            }
            let fits = state.pending.is_empty()
                || state.pending.len().saturating_add(line.len()) <= self.capacity;
            if fits {
                break;
            }
            match self.overflow {
                Overflow::Block => {
                    state.blocked += 1;
                    if state.worker_idle {
                        state.worker_idle = false;
                        worker.unpark();
                    }
                    state = self
                        .room
                        .wait(state)
                        .unwrap_or_else(PoisonError::into_inner);
                    state.blocked -= 1;
                }
                _ => {
                    state.dropped_unreported += 1;
                    state.dropped_total += 1;
                    return;
                }
            }
        }
        state.pending.extend_from_slice(line);
        state.accepted += 1;
        // Wake the worker once per quiet period, and early when half the room is used, so a
        // burst is written before it overflows.
        let wake = state.worker_idle || state.pending.len() >= self.capacity / 2;
        state.worker_idle = false;
        drop(state);
        if wake {
            worker.unpark();
        }
    }

    fn run(self: Arc<Self>) {
        // Both buffers are sized here, on this thread, to the full capacity: the callers'
        // buffer is always one the worker handed back, so a line never reallocates on the
        // caller's thread, however long this thread is descheduled. Untouched pages cost no
        // memory.
        let mut chunk = Vec::with_capacity(self.capacity);
        loop {
            let mut state = lock(&self.state);
            if state.pending.is_empty() && state.dropped_unreported == 0 {
                if state.closed {
                    return;
                }
                state.worker_idle = true;
                drop(state);
                std::thread::park();
                continue;
            }
            drop(state);
            // The sink before the state, as everywhere: a caller must never wait for the
            // state lock while a chunk is being written.
            let mut sink = lock(&self.sink);
            let mut state = lock(&self.state);
            std::mem::swap(&mut state.pending, &mut chunk);
            let upto = state.accepted;
            let dropped = std::mem::take(&mut state.dropped_unreported);
            let blocked = state.blocked > 0;
            drop(state);
            if blocked {
                self.room.notify_all();
            }
            let _ = sink.write_all(&chunk);
            if dropped > 0 {
                let _ = sink.write_all(dropped_line(dropped, self.capacity).as_bytes());
            }
            let _ = sink.flush();
            drop(sink);
            chunk.clear();
            if chunk.capacity() > self.capacity {
                // Grown by a single line larger than the whole buffer: give that memory back.
                chunk = Vec::with_capacity(self.capacity);
            } else {
                chunk.reserve_exact(self.capacity);
            }
            lock(&self.state).written = upto;
            self.written.notify_all();
            // Let lines gather into the next chunk; a flush, a close or a half-full buffer
            // cuts the pause short.
            std::thread::park_timeout(self.interval);
        }
    }

    fn flush(self: &Arc<Self>, wait: Duration) {
        let Some(Some(worker)) = self.worker.get() else {
            let _ = lock(&self.sink).flush();
            return;
        };
        let deadline = Instant::now() + wait;
        let mut state = lock(&self.state);
        let target = state.accepted;
        if state.written >= target && state.dropped_unreported == 0 {
            return;
        }
        state.worker_idle = false;
        worker.unpark();
        while state.written < target {
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            state = self
                .written
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

/// The note written in place of lines dropped by [`Overflow::DropAndCount`].
fn dropped_line(dropped: u64, capacity: usize) -> String {
    let mut line = String::with_capacity(256);
    line.push_str("{\"timestamp\":\"");
    write_timestamp(&mut line, SystemTime::now());
    line.push_str("\",\"level\":\"warn\",\"message\":\"");
    line.push_str(itoa::Buffer::new().format(dropped));
    line.push_str(" log lines dropped: the log destination did not keep up and the ");
    line.push_str(itoa::Buffer::new().format(capacity));
    line.push_str(
        "-byte buffer was full\",\"target\":\"service_telemetry::logs\",\"dropped_lines\":",
    );
    line.push_str(itoa::Buffer::new().format(dropped));
    line.push_str("}\n");
    line
}

impl LogWriter for BufferedWriter {
    fn write_line(&self, line: &[u8]) {
        self.shared.append(line);
    }

    fn flush(&self) {
        self.shared.flush(FLUSH_WAIT);
    }

    fn dropped_lines(&self) -> u64 {
        lock(&self.shared.state).dropped_total
    }

    fn close(&self) {
        self.shared.flush(FLUSH_WAIT);
        self.shared.close();
    }
}

impl Shared {
    /// Flushes, then makes later lines go straight to the sink on the caller's thread.
    fn close(&self) {
        lock(&self.state).closed = true;
        if let Some(Some(worker)) = self.worker.get() {
            worker.unpark();
        }
    }
}

impl Drop for BufferedWriter {
    fn drop(&mut self) {
        self.shared.flush(FLUSH_WAIT);
        self.shared.close();
    }
}

#[cfg(test)]
mod tests;
