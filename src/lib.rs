#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod builder;
pub mod config;
mod error;
mod export;
pub mod health;
#[cfg(any(feature = "tower", feature = "sqlx", feature = "redis"))]
pub mod instrument;
mod logs;
mod metrics;
pub mod propagation;
mod resource;
pub mod shutdown;
pub mod spans;
mod telemetry;

pub use builder::{ScopedTelemetry, TelemetryBuilder};
pub use config::{
    Config, ConfigWarning, ConfigWarningKind, LogFormat, ResourceDetector, RpcConventions,
    ShutdownConfig, Signal,
};
pub use error::{FlushError, InitError, LogFilterError};
pub use export::{DEFAULT_EXPORT_REPORT_INTERVAL, ExportStats, SignalStats};
pub use logs::{
    BufferedWriter, BufferedWriterBuilder, DEFAULT_BUFFER_CAPACITY, DEFAULT_WRITE_INTERVAL,
    FLUSH_WAIT, LogWriter, MemoryWriter, Overflow, Stdout,
};
pub use metrics::{MetricView, register_builtin_metrics};
pub use shutdown::{Shutdown, ShutdownHandle};
pub use telemetry::{DEFAULT_FLUSH_TIMEOUT, Telemetry};

pub use opentelemetry;
pub use opentelemetry_sdk;
pub use tracing;
pub use tracing_opentelemetry;

/// Installs telemetry from the environment with no code defaults; see [`TelemetryBuilder`]
/// for the defaults a service can set in code.
///
/// ```no_run
/// let _telemetry = service_telemetry::init()?;
/// # Ok::<(), service_telemetry::InitError>(())
/// ```
pub fn init() -> Result<Telemetry, InitError> {
    Telemetry::builder().try_init()
}
