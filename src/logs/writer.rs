//! Where finished log lines go.

use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};

/// A destination for complete JSON log lines.
///
/// Each call receives one whole line including its trailing newline; an implementation must
/// write it in one piece so that lines from different threads never interleave.
pub trait LogWriter: Send + Sync + 'static {
    /// Writes one complete line. Errors are swallowed: logging must never fail the service.
    fn write_line(&self, line: &[u8]);
    /// Pushes buffered lines to their destination.
    fn flush(&self) {}
    /// Lines dropped so far because the destination did not keep up.
    fn dropped_lines(&self) -> u64 {
        0
    }
    /// Called once when telemetry shuts down: write out what is buffered, and write any line
    /// that still comes (logged on the way out of the process) straight through, since no
    /// later flush will come.
    fn close(&self) {
        self.flush()
    }
}

/// Standard output written directly: one `write` system call per line, on the caller's
/// thread, under the stdout lock. The default is [`crate::BufferedWriter`], which moves the
/// write to a background thread.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stdout;

impl LogWriter for Stdout {
    fn write_line(&self, line: &[u8]) {
        let mut out = std::io::stdout().lock();
        // A closed pipe or full disk must not take the service down.
        let _ = out.write_all(line);
    }

    fn flush(&self) {
        let _ = std::io::stdout().lock().flush();
    }
}

/// An in-memory writer for tests: clone it, hand one clone to the builder, read the other.
///
/// ```
/// let logs = service_telemetry::MemoryWriter::new();
/// let _telemetry = service_telemetry::Telemetry::builder()
///     .with_writer(logs.clone())
///     .env_lookup(|_| None);
/// assert!(logs.lines().is_empty());
/// ```
#[derive(Debug, Default, Clone)]
pub struct MemoryWriter {
    buf: Arc<Mutex<Vec<u8>>>,
}

impl MemoryWriter {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every line written so far, without trailing newlines.
    pub fn lines(&self) -> Vec<String> {
        let buf = self.buf.lock().unwrap_or_else(PoisonError::into_inner);
        String::from_utf8_lossy(&buf)
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Every line parsed as JSON; a line that does not parse becomes a `{"unparsed": line}`.
    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        self.lines()
            .into_iter()
            .map(|l| {
                serde_json::from_str(&l).unwrap_or_else(|_| serde_json::json!({ "unparsed": l }))
            })
            .collect()
    }

    /// Forgets everything written so far.
    pub fn clear(&self) {
        self.buf
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

impl LogWriter for MemoryWriter {
    fn write_line(&self, line: &[u8]) {
        self.buf
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(line);
    }
}

impl<W: LogWriter + ?Sized> LogWriter for Arc<W> {
    fn write_line(&self, line: &[u8]) {
        (**self).write_line(line)
    }

    fn flush(&self) {
        (**self).flush()
    }

    fn dropped_lines(&self) -> u64 {
        (**self).dropped_lines()
    }

    fn close(&self) {
        (**self).close()
    }
}
