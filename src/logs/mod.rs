//! Structured JSON logs on stdout, correlated with traces.

mod escape;
mod json;
mod panic;
mod time;
mod writer;

pub(crate) use json::JsonLayer;
pub(crate) use panic::install_panic_hook;
pub use writer::{LogWriter, MemoryWriter, Stdout};
