//! The readiness state a health endpoint serves; it flips in the signal path.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use http::StatusCode;

/// Readiness shared between the shutdown coordinator and the service's health endpoint.
///
/// It turns to [`HealthStatus::ShuttingDown`] on the thread that receives the signal, before
/// the drain delay and before any step, so a readiness probe fails at once.
///
/// ```
/// use service_telemetry::shutdown::{Health, HealthStatus};
/// let health = Health::new();
/// assert_eq!(health.response(), (http::StatusCode::OK, r#"{"status":"ok"}"#));
/// health.set_shutting_down();
/// assert_eq!(health.status(), HealthStatus::ShuttingDown);
/// assert_eq!(health.response().0, http::StatusCode::SERVICE_UNAVAILABLE);
/// ```
#[derive(Clone, Debug, Default)]
pub struct Health(Arc<AtomicU8>);

/// What [`Health`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HealthStatus {
    /// Serving; `{"status":"ok"}` with 200.
    Ok,
    /// Shutdown has started; `{"status":"shutting_down"}` with 503.
    ShuttingDown,
}

impl HealthStatus {
    /// `ok` or `shutting_down`.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Ok => "ok",
            HealthStatus::ShuttingDown => "shutting_down",
        }
    }
}

const OK: u8 = 0;
const SHUTTING_DOWN: u8 = 1;

impl Health {
    /// A new state, reporting [`HealthStatus::Ok`].
    pub fn new() -> Self {
        Self::default()
    }

    /// The current status.
    pub fn status(&self) -> HealthStatus {
        match self.0.load(Ordering::Acquire) {
            OK => HealthStatus::Ok,
            _ => HealthStatus::ShuttingDown,
        }
    }

    /// Whether shutdown has started.
    pub fn is_shutting_down(&self) -> bool {
        self.status() == HealthStatus::ShuttingDown
    }

    /// Marks the service as shutting down; it never turns back.
    pub fn set_shutting_down(&self) {
        self.0.store(SHUTTING_DOWN, Ordering::Release);
    }

    /// HTTP status and JSON body for a health endpoint: 200 `{"status":"ok"}`, then
    /// 503 `{"status":"shutting_down"}`.
    pub fn response(&self) -> (StatusCode, &'static str) {
        match self.status() {
            HealthStatus::Ok => (StatusCode::OK, r#"{"status":"ok"}"#),
            HealthStatus::ShuttingDown => (
                StatusCode::SERVICE_UNAVAILABLE,
                r#"{"status":"shutting_down"}"#,
            ),
        }
    }
}
