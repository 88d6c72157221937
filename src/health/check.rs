//! Named readiness checks: each bounded by its own timeout, isolated from panics, and cached
//! so that concurrent probes share one run.

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use super::{DEFAULT_CHECK_CACHE, DEFAULT_CHECK_TIMEOUT, TARGET};
use crate::shutdown::step::CatchUnwind;

type CheckFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;
type CheckFn = Box<dyn Fn() -> CheckFuture + Send + Sync>;

/// A named readiness check with its timeout and cache period.
///
/// ```
/// use std::time::Duration;
/// use service_telemetry::health::{Health, HealthCheck};
/// let health = Health::new();
/// health.add(
///     HealthCheck::new("database", || async { Ok::<(), std::io::Error>(()) })
///         .timeout(Duration::from_millis(500))
///         .cache_for(Duration::from_secs(2)),
/// );
/// ```
#[must_use = "a check does nothing until added with Health::add"]
pub struct HealthCheck {
    name: String,
    run: CheckFn,
    timeout: Duration,
    cache_for: Duration,
    /// The last result and when it was taken; the lock makes concurrent probes wait for the
    /// run in progress instead of starting their own.
    last: tokio::sync::Mutex<Option<(Instant, CheckOutcome)>>,
}

impl std::fmt::Debug for HealthCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthCheck")
            .field("name", &self.name)
            .field("timeout", &self.timeout)
            .field("cache_for", &self.cache_for)
            .finish_non_exhaustive()
    }
}

impl HealthCheck {
    /// A check named `name` (reported under that key) running `check`.
    pub fn new<F, Fut, E>(name: impl Into<String>, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: std::fmt::Display,
    {
        let run: CheckFn = Box::new(move || {
            let future = check();
            Box::pin(async move { future.await.map_err(|e| e.to_string()) })
        });
        HealthCheck {
            name: name.into(),
            run,
            timeout: DEFAULT_CHECK_TIMEOUT,
            cache_for: DEFAULT_CHECK_CACHE,
            last: tokio::sync::Mutex::new(None),
        }
    }

    /// Longest a run may take before it counts as failing. Default 1 s; keep it below the
    /// probe's `timeoutSeconds`.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long a result is reused before the check runs again. Default 1 s; zero runs it on
    /// every probe.
    pub fn cache_for(mut self, period: Duration) -> Self {
        self.cache_for = period;
        self
    }

    async fn evaluate(&self) -> CheckReport {
        let mut last = self.last.lock().await;
        if let Some((at, outcome)) = last.as_ref() {
            if at.elapsed() < self.cache_for {
                return self.report(outcome.clone());
            }
        }
        let outcome = self.run_once().await;
        let previous = last.as_ref().map(|(_, o)| o.is_ok());
        match (&outcome, previous) {
            (CheckOutcome::Failing(reason), None | Some(true)) => tracing::warn!(
                target: TARGET,
                check = %self.name,
                reason = %reason,
                "readiness check \"{}\" failing: {reason}",
                self.name
            ),
            (CheckOutcome::Ok, Some(false)) => tracing::info!(
                target: TARGET,
                check = %self.name,
                "readiness check \"{}\" ok again",
                self.name
            ),
            _ => {}
        }
        *last = Some((Instant::now(), outcome.clone()));
        self.report(outcome)
    }

    async fn run_once(&self) -> CheckOutcome {
        let future = match catch_unwind(AssertUnwindSafe(|| (self.run)())) {
            Ok(future) => future,
            Err(payload) => {
                return CheckOutcome::Failing(format!(
                    "panicked: {}",
                    crate::shutdown::step::panic_message(payload)
                ));
            }
        };
        match tokio::time::timeout(self.timeout, CatchUnwind(future)).await {
            Ok(Ok(Ok(()))) => CheckOutcome::Ok,
            Ok(Ok(Err(error))) => CheckOutcome::Failing(error),
            Ok(Err(panic)) => CheckOutcome::Failing(format!("panicked: {panic}")),
            Err(_) => {
                CheckOutcome::Failing(format!("timed out after {} ms", self.timeout.as_millis()))
            }
        }
    }

    fn report(&self, outcome: CheckOutcome) -> CheckReport {
        CheckReport {
            name: self.name.clone(),
            outcome,
        }
    }
}

/// What a check said.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CheckOutcome {
    /// It passed.
    Ok,
    /// It failed, timed out or panicked; the reason.
    Failing(String),
}

impl CheckOutcome {
    /// `ok` or `failing`.
    pub fn as_str(&self) -> &'static str {
        match self {
            CheckOutcome::Ok => "ok",
            CheckOutcome::Failing(_) => "failing",
        }
    }

    /// Whether it passed.
    pub fn is_ok(&self) -> bool {
        matches!(self, CheckOutcome::Ok)
    }

    /// Why it failed.
    pub fn reason(&self) -> Option<&str> {
        match self {
            CheckOutcome::Ok => None,
            CheckOutcome::Failing(reason) => Some(reason),
        }
    }
}

/// One check's name and outcome in a readiness answer.
#[derive(Clone, Debug)]
pub struct CheckReport {
    name: String,
    outcome: CheckOutcome,
}

impl CheckReport {
    /// The check's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What it said.
    pub fn outcome(&self) -> &CheckOutcome {
        &self.outcome
    }

    /// Whether it passed.
    pub fn is_ok(&self) -> bool {
        self.outcome.is_ok()
    }
}

/// Every check at once, so a probe waits for the slowest one, not for their sum.
pub(super) async fn run_all(checks: &[Arc<HealthCheck>]) -> Vec<CheckReport> {
    type Pending<'a> = Pin<Box<dyn Future<Output = CheckReport> + Send + 'a>>;
    let mut pending: Vec<Option<Pending<'_>>> = checks
        .iter()
        .map(|check| Some(Box::pin(check.evaluate()) as Pending<'_>))
        .collect();
    let mut done: Vec<Option<CheckReport>> = vec![None; checks.len()];
    std::future::poll_fn(|cx| {
        let mut waiting = false;
        for (slot, result) in pending.iter_mut().zip(done.iter_mut()) {
            if let Some(future) = slot {
                match future.as_mut().poll(cx) {
                    Poll::Ready(report) => {
                        *result = Some(report);
                        *slot = None;
                    }
                    Poll::Pending => waiting = true,
                }
            }
        }
        if waiting {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    done.into_iter().flatten().collect()
}
