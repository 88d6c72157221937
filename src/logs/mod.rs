//! Structured JSON logs on stdout, correlated with traces.

mod buffered;
mod escape;
mod json;
mod live_filter;
mod panic;
mod pretty;
mod time;
mod writer;

pub use buffered::{
    BufferedWriter, BufferedWriterBuilder, DEFAULT_BUFFER_CAPACITY, DEFAULT_WRITE_INTERVAL,
    FLUSH_WAIT, Overflow,
};
pub(crate) use json::JsonLayer;
pub(crate) use live_filter::LiveFilter;
pub(crate) use panic::install_panic_hook;
pub(crate) use pretty::PrettyWriter;
pub(crate) use time::write_timestamp;
pub use writer::{LogWriter, MemoryWriter, Stdout};

use std::sync::{Arc, OnceLock};

/// The writer of the globally installed subscriber, flushed by the panic hook and before the
/// shutdown coordinator exits.
static INSTALLED_WRITER: OnceLock<Arc<dyn LogWriter>> = OnceLock::new();

pub(crate) fn install_writer(writer: Arc<dyn LogWriter>) {
    let _ = INSTALLED_WRITER.set(writer);
}

/// Writes out what the installed writer buffers (bounded by the writer's own wait).
pub(crate) fn flush_installed_writer() {
    if let Some(writer) = INSTALLED_WRITER.get() {
        writer.flush();
    }
}
