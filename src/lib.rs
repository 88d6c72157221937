//! service-telemetry
#![deny(missing_docs)]

mod builder;
pub mod config;
mod error;
mod export;
mod logs;
mod propagation;
mod resource;
mod telemetry;

pub use builder::{ScopedTelemetry, TelemetryBuilder};
pub use config::{Config, ConfigWarning, Signal};
pub use error::{FlushError, InitError};
pub use logs::{LogWriter, MemoryWriter, Stdout};
pub use telemetry::{DEFAULT_SHUTDOWN_TIMEOUT, Telemetry};

pub use opentelemetry;
pub use opentelemetry_sdk;
pub use tracing;
pub use tracing_opentelemetry;

/// Installs telemetry from the environment with no code defaults.
pub fn init() -> Result<Telemetry, InitError> {
    Telemetry::builder().try_init()
}
