//! Kubernetes-grade health: the three questions a kubelet asks, answered apart.
//!
//! - **Started / ready** (`/readyz`, readiness and startup probes): `starting` until the service
//!   says it is ready ([`Health::set_ready`], or automatically once
//!   [`Shutdown::run`](crate::Shutdown::run) is awaited), then `ready` while every named check
//!   passes, then `shutting_down` from the moment a shutdown signal arrives. Anything but
//!   `ready` answers 503, so traffic stops and nothing restarts.
//! - **Alive** (`/livez`, liveness probe): 200 from start to exit, through the whole shutdown,
//!   and never dependent on a check: a database that is down must not restart every pod. It
//!   turns 503 only when the crate knows the process is wedged (the shutdown watchdog fired).
//!
//! Named checks ([`Health::add_check`]) run when a readiness probe asks, each under its own
//! timeout, and their result is cached briefly ([`HealthCheck::cache_for`]): many kubelets
//! probing many replicas cause one call per check per cache period, not one per probe. The
//! probe's body names each check `ok` or `failing` and carries no error text by default (a
//! readiness endpoint is often reachable from outside); the reason is logged once when a
//! check starts failing (`readiness check "database" failing: ...`) and can be put in the body
//! with [`Health::show_check_details`] on an internal port.
//!
//! ```
//! # async fn demo() {
//! use service_telemetry::health::Health;
//! let health = Health::new();
//! health.add_check("database", || async { Ok::<(), std::io::Error>(()) });
//! assert_eq!(health.readiness().await.http_status(), http::StatusCode::SERVICE_UNAVAILABLE);
//! health.set_ready();
//! let readiness = health.readiness().await;
//! assert_eq!(readiness.http_status(), http::StatusCode::OK);
//! assert_eq!(readiness.to_json(), r#"{"status":"ready","checks":{"database":"ok"}}"#);
//! assert_eq!(health.liveness().http_status(), http::StatusCode::OK);
//! # }
//! ```

mod check;
#[cfg(feature = "tonic")]
mod grpc;
#[cfg(feature = "axum")]
mod http_routes;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use http::StatusCode;
use tokio::sync::watch;

pub use check::{CheckOutcome, CheckReport, HealthCheck};
#[cfg(feature = "tonic")]
pub use grpc::grpc_health_service;
#[cfg(feature = "axum")]
pub use http_routes::router;

pub(crate) const TARGET: &str = "service_telemetry::health";

/// The lifecycle state a [`Health`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HealthStatus {
    /// Started, not ready yet: readiness 503, liveness 200.
    Starting,
    /// Ready: readiness 200 while every named check passes.
    Ready,
    /// Shutdown has begun: readiness 503 for good, liveness still 200.
    ShuttingDown,
}

impl HealthStatus {
    /// `starting`, `ready` or `shutting_down`.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Starting => "starting",
            HealthStatus::Ready => "ready",
            HealthStatus::ShuttingDown => "shutting_down",
        }
    }
}

/// The service's health, shared by the shutdown coordinator, the probe endpoints and the
/// service itself; cheap to clone.
///
/// It turns to [`HealthStatus::ShuttingDown`] on the thread that receives the signal, before
/// the drain delay and before any step, so a readiness probe fails at once.
#[derive(Clone, Debug)]
pub struct Health(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    state: watch::Sender<HealthStatus>,
    wedged: AtomicBool,
    show_details: AtomicBool,
    checks: RwLock<Vec<Arc<HealthCheck>>>,
}

impl Default for Health {
    fn default() -> Self {
        Health(Arc::new(Inner {
            state: watch::Sender::new(HealthStatus::Starting),
            wedged: AtomicBool::new(false),
            show_details: AtomicBool::new(false),
            checks: RwLock::new(Vec::new()),
        }))
    }
}

impl Health {
    /// A new health, [`HealthStatus::Starting`], with no checks.
    pub fn new() -> Self {
        Self::default()
    }

    /// The lifecycle state.
    pub fn status(&self) -> HealthStatus {
        *self.0.state.borrow()
    }

    /// Whether shutdown has started.
    pub fn is_shutting_down(&self) -> bool {
        self.status() == HealthStatus::ShuttingDown
    }

    /// Marks the service ready (from `starting`); does nothing once shutdown has begun.
    pub fn set_ready(&self) {
        self.0.state.send_if_modified(|state| {
            let starting = *state == HealthStatus::Starting;
            if starting {
                *state = HealthStatus::Ready;
            }
            starting
        });
    }

    /// Marks the service as shutting down; it never turns back.
    pub fn set_shutting_down(&self) {
        self.0.state.send_if_modified(|state| {
            let changed = *state != HealthStatus::ShuttingDown;
            *state = HealthStatus::ShuttingDown;
            changed
        });
    }

    /// The shutdown watchdog fired: the process is stuck and about to be ended.
    pub(crate) fn set_wedged(&self) {
        self.0.wedged.store(true, Ordering::Release);
    }

    /// Adds a named readiness check with the default timeout (1 s) and cache period (1 s).
    /// `Ok(())` passes; an error, a timeout or a panic fails readiness (never liveness).
    pub fn add_check<F, Fut, E>(&self, name: impl Into<String>, check: F) -> &Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<(), E>> + Send + 'static,
        E: std::fmt::Display,
    {
        self.add(HealthCheck::new(name, check))
    }

    /// Adds a check built with its own timeout and cache period.
    pub fn add(&self, check: HealthCheck) -> &Self {
        let mut checks = self
            .0
            .checks
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        checks.push(Arc::new(check));
        drop(checks);
        self
    }

    /// Whether [`Readiness::to_json`] carries each failing check's reason. Off by default: a
    /// readiness endpoint is often reachable from outside, and error texts name hosts, users
    /// and versions. The reason is always logged when a check starts failing.
    pub fn show_check_details(&self, show: bool) -> &Self {
        self.0.show_details.store(show, Ordering::Relaxed);
        self
    }

    /// Answers a readiness probe: the state, and when ready the named checks, run now unless
    /// a recent result is cached. The checks are not run while starting or shutting down.
    pub async fn readiness(&self) -> Readiness {
        let status = self.status();
        let checks: Vec<Arc<HealthCheck>> = if status == HealthStatus::Ready {
            self.0
                .checks
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone()
        } else {
            Vec::new()
        };
        let reports = check::run_all(&checks).await;
        Readiness {
            status,
            checks: reports,
            show_details: self.0.show_details.load(Ordering::Relaxed),
        }
    }

    /// Answers a liveness probe.
    pub fn liveness(&self) -> Liveness {
        Liveness {
            status: self.status(),
            wedged: self.0.wedged.load(Ordering::Acquire),
        }
    }

    /// Resolves when the state changes (for the gRPC health service).
    #[cfg_attr(not(feature = "tonic"), allow(dead_code))]
    pub(crate) fn subscribe(&self) -> watch::Receiver<HealthStatus> {
        self.0.state.subscribe()
    }
}

/// The answer to a readiness probe.
#[derive(Clone, Debug)]
pub struct Readiness {
    status: HealthStatus,
    checks: Vec<CheckReport>,
    show_details: bool,
}

impl Readiness {
    /// Whether the service should get traffic: ready, and every check passing.
    pub fn is_ready(&self) -> bool {
        self.status == HealthStatus::Ready && self.checks.iter().all(CheckReport::is_ok)
    }

    /// 200 when ready, else 503.
    pub fn http_status(&self) -> StatusCode {
        if self.is_ready() {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        }
    }

    /// The lifecycle state.
    pub fn status(&self) -> HealthStatus {
        self.status
    }

    /// Each check's result, in the order they were added (empty unless ready).
    pub fn checks(&self) -> &[CheckReport] {
        &self.checks
    }

    /// The body's `status`: the lifecycle state, or `not_ready` when ready but a check fails.
    pub fn status_text(&self) -> &'static str {
        if self.status == HealthStatus::Ready && !self.is_ready() {
            "not_ready"
        } else {
            self.status.as_str()
        }
    }

    /// `{"status":"ready","checks":{"database":"ok"}}`; with details shown, failing checks'
    /// reasons under `"details"`.
    pub fn to_json(&self) -> String {
        // Written by hand so the keys keep their order: status first, checks as added.
        let quote = |text: &str| serde_json::Value::from(text).to_string();
        let mut body = format!(r#"{{"status":"{}""#, self.status_text());
        let list = |body: &mut String, key: &str, entries: Vec<(&str, &str)>| {
            if entries.is_empty() {
                return;
            }
            body.push_str(&format!(r#","{key}":{{"#));
            for (i, (name, value)) in entries.into_iter().enumerate() {
                if i > 0 {
                    body.push(',');
                }
                body.push_str(&format!("{}:{}", quote(name), quote(value)));
            }
            body.push('}');
        };
        let checks = self
            .checks
            .iter()
            .map(|c| (c.name(), c.outcome().as_str()))
            .collect();
        list(&mut body, "checks", checks);
        if self.show_details {
            let details = self
                .checks
                .iter()
                .filter_map(|c| c.outcome().reason().map(|r| (c.name(), r)))
                .collect();
            list(&mut body, "details", details);
        }
        body.push('}');
        body
    }
}

/// The answer to a liveness probe.
#[derive(Clone, Copy, Debug)]
pub struct Liveness {
    status: HealthStatus,
    wedged: bool,
}

impl Liveness {
    /// Whether the process is alive (everything but wedged).
    pub fn is_live(&self) -> bool {
        !self.wedged
    }

    /// 200 when alive, 503 when wedged.
    pub fn http_status(&self) -> StatusCode {
        if self.is_live() {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        }
    }

    /// `{"status":"ready"}` (the lifecycle state) or `{"status":"wedged"}`.
    pub fn to_json(&self) -> String {
        let status = if self.wedged {
            "wedged"
        } else {
            self.status.as_str()
        };
        format!(r#"{{"status":"{status}"}}"#)
    }
}

/// The default per-check timeout.
pub const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a check's result is reused by default.
pub const DEFAULT_CHECK_CACHE: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests;
