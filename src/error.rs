//! Errors the caller has to act on. Everything else degrades with a warning.

use std::time::Duration;

use crate::config::Signal;

/// Why [`init`](crate::init) could not install telemetry.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InitError {
    /// Another global `tracing` subscriber was installed first (by another crate's `init`, or
    /// an earlier call). The export pipelines were shut down again.
    #[error("a global tracing subscriber is already set; service-telemetry was not installed")]
    SubscriberAlreadySet,
}

/// Why [`Telemetry::flush`](crate::Telemetry::flush) or
/// [`Telemetry::shutdown`](crate::Telemetry::shutdown) did not complete cleanly.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum FlushError {
    /// Some signals were still flushing when the bound ran out; they were abandoned.
    #[error("telemetry flush did not finish within {timeout:?}; still pending: {pending:?}")]
    TimedOut {
        /// The bound that ran out.
        timeout: Duration,
        /// Signals that had not finished.
        pending: Vec<Signal>,
    },
    /// An exporter reported an error (the collector refused or could not be reached).
    #[error("{signal} exporter failed: {reason}")]
    Exporter {
        /// The signal whose exporter failed.
        signal: Signal,
        /// The SDK's description.
        reason: String,
    },
}

/// Why [`Telemetry::set_log_filter`](crate::Telemetry::set_log_filter) changed nothing.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum LogFilterError {
    /// The directives do not parse; the filter in force stays.
    #[error("invalid log filter {directives:?}: {reason}")]
    Invalid {
        /// What was given.
        directives: String,
        /// Why it was rejected.
        reason: String,
    },
    /// This guard installed no subscriber (the fallback of a second `init`), or it is gone.
    #[error("no log filter to change: this telemetry installed no subscriber")]
    NotInstalled,
}
