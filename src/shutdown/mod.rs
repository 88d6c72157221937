//! Bounded graceful shutdown: named steps run in order under a watchdog that cannot be
//! starved, then the telemetry flush, then an explicit exit.
//!
//! ```no_run
//! use std::time::Duration;
//! use service_telemetry::Shutdown;
//! use service_telemetry::shutdown::Step;
//!
//! #[tokio::main]
//! async fn main() {
//!     let telemetry = service_telemetry::init().expect("first init");
//!     let mut shutdown = Shutdown::new(telemetry);
//!     let health = shutdown.health(); // serve it on /health
//!     shutdown.add_step("stop job scheduler", || async { Ok::<_, std::io::Error>(()) });
//!     shutdown.add(Step::blocking("close database pool", || ()).timeout(Duration::from_secs(5)));
//!     shutdown.run().await; // waits for SIGTERM/SIGINT, runs the steps, flushes, exits
//! }
//! ```

mod coordinator;
mod report;
mod signals;
pub(crate) mod step;
#[cfg(test)]
mod tests;

use std::future::{Future, IntoFuture};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use crate::health::{Health, HealthStatus};
pub use report::{ShutdownReport, StepOutcome, StepReport};
pub use signals::{ShutdownSignal, SignalSender, SignalSource};
pub use step::{Step, StepResult};
pub use tokio_util::sync::CancellationToken;

use crate::config::ShutdownConfig;
use crate::telemetry::Telemetry;
use coordinator::{ExitFn, Settings, Shared};
use step::{CatchUnwind, Failure, StepFuture};

pub(crate) const TARGET: &str = "service_telemetry::shutdown";

/// Longest share of the budget kept back for the telemetry flush by default.
const MAX_DEFAULT_RESERVE: Duration = Duration::from_secs(5);

/// The shutdown coordinator. Register steps, hand out [`Health`] and tokens, then await
/// [`run`](Shutdown::run) at the end of `main`.
///
/// On `SIGTERM` or `SIGINT` (or [`ShutdownHandle::trigger`]):
/// 1. [`Health`] turns to `shutting_down` on the signal thread, and the watchdog is armed
///    with the whole budget (`SHUTDOWN_TIMEOUT_MS`, default 30 s);
/// 2. the drain delay passes (`SHUTDOWN_DRAIN_DELAY_MS`, default 0);
/// 3. [`token`](Shutdown::token) is cancelled and the steps run in registration order, one at
///    a time, each isolated: an error, a panic or an overrun of its own timeout is logged
///    with its name and the next step runs;
/// 4. one `info` line reports every step, the telemetry is flushed within the reserve or the
///    telemetry's flush timeout, whichever is shorter (exports make one attempt from here on,
///    no retries), and the process exits with code 0. A collector that never answers costs
///    that bound, not the rest of the budget.
///
/// If the steps are still running when only the reserve is left, the watchdog (an OS thread
/// of its own) logs one `error` line naming the step that hung, flushes the telemetry and
/// exits with code 1. A second signal during shutdown exits with code 1 at once.
#[must_use = "a shutdown coordinator does nothing until `run` is awaited"]
pub struct Shutdown {
    shared: Arc<Shared>,
    steps: Vec<Step>,
    /// Set by `run`; a coordinator dropped without running closes its telemetry like a guard.
    ran: bool,
}

impl Drop for Shutdown {
    /// The signal thread keeps the shared state (and so the telemetry) alive for the life of
    /// the process, so a `main` that returns early without `run` would otherwise never flush.
    fn drop(&mut self) {
        if !self.ran && !self.shared.triggered.is_cancelled() {
            if let Some(telemetry) = &self.shared.telemetry {
                telemetry.close();
            }
        }
    }
}

impl std::fmt::Debug for Shutdown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shutdown")
            .field("budget", &self.shared.settings.budget)
            .field("drain_delay", &self.shared.settings.drain_delay)
            .field("reserve", &self.shared.settings.reserve)
            .field("steps", &self.steps)
            .finish_non_exhaustive()
    }
}

/// Options for [`Shutdown`]; everything has a production default.
#[must_use = "a builder does nothing until `build` is called"]
pub struct ShutdownBuilder {
    telemetry: Option<Telemetry>,
    config: Option<ShutdownConfig>,
    reserve: Option<Duration>,
    signals: SignalSource,
    exit: ExitFn,
    second_signal_forces_exit: bool,
    ready_when_running: bool,
}

impl std::fmt::Debug for ShutdownBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShutdownBuilder")
            .field("config", &self.config)
            .field("reserve", &self.reserve)
            .field("signals", &self.signals)
            .field("second_signal_forces_exit", &self.second_signal_forces_exit)
            .field("ready_when_running", &self.ready_when_running)
            .finish_non_exhaustive()
    }
}

impl Default for ShutdownBuilder {
    fn default() -> Self {
        ShutdownBuilder {
            telemetry: None,
            config: None,
            reserve: None,
            signals: SignalSource::os(),
            exit: Arc::new(|code| std::process::exit(code)),
            second_signal_forces_exit: true,
            ready_when_running: true,
        }
    }
}

impl ShutdownBuilder {
    /// Flushes and shuts down this telemetry last, and takes the budget and drain delay from
    /// its configuration.
    pub fn telemetry(mut self, telemetry: Telemetry) -> Self {
        self.telemetry = Some(telemetry);
        self
    }

    /// Uses this budget and drain delay instead of the environment's.
    pub fn config(mut self, config: ShutdownConfig) -> Self {
        self.config = Some(config);
        self
    }

    /// Share of the budget kept back for the telemetry flush. Default: a quarter of the
    /// budget, at most 5 s. Capped at half the budget.
    pub fn telemetry_reserve(mut self, reserve: Duration) -> Self {
        self.reserve = Some(reserve);
        self
    }

    /// Where signals come from; default [`SignalSource::os`].
    pub fn signals(mut self, signals: SignalSource) -> Self {
        self.signals = signals;
        self
    }

    /// Replaces `std::process::exit`, for tests. If it returns, [`Shutdown::run`] returns the
    /// report instead of ending the process.
    pub fn exit_with(mut self, exit: impl Fn(i32) + Send + Sync + 'static) -> Self {
        self.exit = Arc::new(exit);
        self
    }

    /// Whether a second `SIGTERM`/`SIGINT` during shutdown exits with code 1 at once (the
    /// default). Turn it off for supervisors that resend `SIGTERM` while waiting; the
    /// watchdog still bounds the shutdown.
    pub fn second_signal_forces_exit(mut self, forces: bool) -> Self {
        self.second_signal_forces_exit = forces;
        self
    }

    /// Whether [`Shutdown::run`] marks the [`Health`] ready once it is awaited (the default),
    /// after the services from [`Shutdown::spawn_service`] have been started. Turn it off for a
    /// service that must warm up first, and call [`Health::set_ready`] when it has.
    pub fn ready_when_running(mut self, automatic: bool) -> Self {
        self.ready_when_running = automatic;
        self
    }

    /// Builds the coordinator and starts listening for signals.
    pub fn build(self) -> Shutdown {
        let config = match (self.config, &self.telemetry) {
            (Some(config), _) => config,
            (None, Some(telemetry)) => telemetry.config().shutdown,
            (None, None) => {
                let (config, warnings) = ShutdownConfig::from_env();
                for warning in &warnings {
                    crate::builder::warn_config(warning);
                }
                config
            }
        };
        let half = config.timeout / 2;
        let reserve = self
            .reserve
            .unwrap_or_else(|| (config.timeout / 4).min(MAX_DEFAULT_RESERVE))
            .min(half);
        let settings = Settings {
            budget: config.timeout,
            drain_delay: config.drain_delay,
            reserve,
            second_signal_forces_exit: self.second_signal_forces_exit,
            ready_when_running: self.ready_when_running,
        };
        let shared = Arc::new(Shared::new(
            settings,
            self.exit,
            self.telemetry,
            Health::new(),
        ));
        self.signals.start(&shared);
        Shutdown {
            shared,
            steps: Vec::new(),
            ran: false,
        }
    }
}

/// A cheap, cloneable view of a [`Shutdown`]: health, tokens and the programmatic trigger.
#[derive(Clone, Debug)]
pub struct ShutdownHandle {
    shared: Arc<Shared>,
}

impl ShutdownHandle {
    /// Starts the shutdown as a signal would, for a planned stop; a sequence that completes
    /// exits with code 0. Later calls, and calls during a shutdown, do nothing.
    pub fn trigger(&self, reason: impl Into<String>) {
        self.shared.trigger(reason.into(), 0);
    }

    /// Starts the shutdown because something failed (a subsystem died, the port is taken):
    /// the same sequence, but the process exits with code 1 so the orchestrator sees a
    /// failure. Later calls, and calls during a shutdown, do nothing.
    pub fn fail(&self, reason: impl Into<String>) {
        self.shared.trigger(reason.into(), 1);
    }

    /// Whether shutdown has been triggered.
    pub fn is_triggered(&self) -> bool {
        self.shared.triggered.is_cancelled()
    }

    /// Resolves when shutdown is triggered (before the drain delay).
    pub async fn triggered(&self) {
        self.shared.triggered.cancelled().await;
    }

    /// The readiness state to serve on a health endpoint.
    pub fn health(&self) -> Health {
        self.shared.health.clone()
    }

    /// Cancelled when the drain delay ends and the steps begin: pass
    /// `token.cancelled_owned()` to `axum::serve(..).with_graceful_shutdown` or tonic's
    /// `serve_with_shutdown` to stop accepting work then.
    pub fn token(&self) -> CancellationToken {
        self.shared.stopping.clone()
    }
}

impl Shutdown {
    /// A coordinator that flushes `telemetry` last, with the budget and drain delay from its
    /// configuration, listening for `SIGTERM` and `SIGINT`.
    pub fn new(telemetry: Telemetry) -> Self {
        Self::builder().telemetry(telemetry).build()
    }

    /// Options: signal source, exit function, reserve, explicit timings.
    pub fn builder() -> ShutdownBuilder {
        ShutdownBuilder::default()
    }

    /// A cloneable handle: trigger, health, token.
    pub fn handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            shared: self.shared.clone(),
        }
    }

    /// The readiness state to serve on a health endpoint.
    pub fn health(&self) -> Health {
        self.shared.health.clone()
    }

    /// See [`ShutdownHandle::token`].
    pub fn token(&self) -> CancellationToken {
        self.shared.stopping.clone()
    }

    /// Adds a step; steps run in the order they are added.
    pub fn add(&mut self, step: Step) -> &mut Self {
        self.shared.register(step.name());
        self.steps.push(step);
        self
    }

    /// Adds an async step with no timeout of its own; see [`Step`] for the other kinds.
    pub fn add_step<F, Fut>(&mut self, name: impl Into<String>, step: F) -> &mut Self
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: StepResult,
    {
        self.add(Step::new(name, step))
    }

    /// Spawns a server (or any long-running task) now on the current Tokio runtime, and adds
    /// the step that stops it: when its turn comes the token given to `serve` is cancelled and
    /// the step waits for `serve` to return (in-flight requests drained).
    ///
    /// If the task ends before shutdown (an error, a panic, or returning early), shutdown is
    /// started with that reason through [`ShutdownHandle::fail`] (exit code 1). Called outside a Tokio runtime, nothing is spawned and the
    /// step reports the mistake.
    ///
    /// ```no_run
    /// # async fn demo(shutdown: &mut service_telemetry::Shutdown, listener: tokio::net::TcpListener, app: axum::Router) {
    /// shutdown.spawn_service("http server", |stop| {
    ///     axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned())
    /// });
    /// # }
    /// ```
    pub fn spawn_service<F, S>(&mut self, name: impl Into<String>, serve: F) -> &mut Self
    where
        F: FnOnce(CancellationToken) -> S,
        S: IntoFuture,
        S::IntoFuture: Send + 'static,
        S::Output: StepResult,
    {
        let name = name.into();
        let stop = CancellationToken::new();
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::error!(
                target: TARGET,
                service = %name,
                "spawn_service called outside a Tokio runtime: service \"{name}\" was not started"
            );
            let message = format!(
                "never started: spawn_service for \"{name}\" was called outside a Tokio runtime"
            );
            return self.add(Step::from_future(name, move || {
                Box::pin(async move { Err(Failure::Error(message)) }) as StepFuture
            }));
        };
        let future = serve(stop.clone()).into_future();
        let handle = self.handle();
        let service = name.clone();
        let watch_stop = stop.clone();
        let task = runtime.spawn(async move {
            let result = match CatchUnwind(Box::pin(future)).await {
                Ok(output) => output.into_step_result().map_err(Failure::Error),
                Err(panic) => Err(Failure::Panic(panic)),
            };
            if !watch_stop.is_cancelled() {
                let why = match &result {
                    Ok(()) => "returned".to_owned(),
                    Err(Failure::Error(e)) => format!("failed: {e}"),
                    Err(Failure::Panic(m)) => format!("panicked: {m}"),
                };
                tracing::error!(
                    target: TARGET,
                    service = %service,
                    "service \"{service}\" stopped before shutdown ({why}); shutting down"
                );
                handle.fail(format!("service \"{service}\" {why}"));
            }
            result
        });
        self.add(Step::from_future(name, move || {
            Box::pin(async move {
                stop.cancel();
                match task.await {
                    Ok(result) => result,
                    Err(e) if e.is_panic() => {
                        Err(Failure::Panic(step::panic_message(e.into_panic())))
                    }
                    Err(e) => Err(Failure::Error(format!("task ended: {e}"))),
                }
            }) as StepFuture
        }))
    }

    /// Waits for the trigger, runs the sequence and exits: with code 0 once every step has
    /// ended (a failed step is reported, not fatal), with 1 if the watchdog or a second signal
    /// ends it or if it was started by [`ShutdownHandle::fail`]. Never relies on dropping the runtime to end the process.
    ///
    /// With the default exit function this never returns. With one given to
    /// [`ShutdownBuilder::exit_with`] that returns, the report is returned after it is called.
    pub async fn run(mut self) -> ShutdownReport {
        self.ran = true;
        let shared = self.shared.clone();
        if let (Some(telemetry), Ok(handle)) =
            (&shared.telemetry, tokio::runtime::Handle::try_current())
        {
            telemetry.watch_runtime(handle);
        }
        let steps = std::mem::take(&mut self.steps);
        let ready_when_running = shared.settings.ready_when_running;
        drop(self);
        if ready_when_running && !shared.triggered.is_cancelled() {
            // The spawned services get a turn first, so a listener is accepting when the
            // readiness probe turns 200.
            tokio::task::yield_now().await;
            shared.health.set_ready();
            tracing::debug!(target: TARGET, "health: ready");
        }
        shared.triggered.cancelled().await;
        let (cause, at, exit_code) = shared.trigger_cause();
        let drain = shared.settings.drain_delay;
        if !drain.is_zero() {
            let until = at.checked_add(drain).unwrap_or(at);
            let drained = shared.begin_drain(until);
            tracing::info!(
                target: TARGET,
                drain_delay_ms = drain.as_millis() as u64,
                "shutdown: health reports shutting_down; waiting {} ms before the first step",
                drain.as_millis()
            );
            let _ = drained.await;
        }
        shared.stopping.cancel();
        for (index, step) in steps.into_iter().enumerate() {
            let name = step.name.clone();
            // Recorded before it is logged, so whoever reads the line sees the step as running.
            let timed_out = shared.begin_step(index, step.timeout);
            tracing::info!(target: TARGET, step = %name, "shutdown step \"{name}\" started");
            let started = Instant::now();
            let outcome = step.execute(timed_out).await;
            let report = StepReport {
                name,
                outcome,
                duration: started.elapsed(),
            };
            coordinator::log_step(&report);
            shared.end_step(report);
        }
        let Some(steps) = shared.finish_steps() else {
            return shared.partial_report();
        };
        let report = ShutdownReport {
            trigger: cause,
            steps,
            elapsed: at.elapsed(),
            exit_code,
        };
        coordinator::log_report(&report);
        if let Some(telemetry) = &shared.telemetry {
            // Bounded by the flush timeout and the reserve, not by what is left of the budget:
            // a silent collector must not hold every pod of a rollout for the whole grace
            // period. A final Prometheus scrape gets at most half of it.
            let bound = shared
                .remaining(at)
                .min(shared.settings.reserve)
                .min(telemetry.flush_timeout());
            // What went wrong is logged by the shutdown, before its totals (the last lines).
            let _ = telemetry.shutdown_with_scrape_window(bound, bound / 2);
        }
        if !shared.claim_exit() {
            return shared.partial_report();
        }
        shared.flush_log_lines();
        (shared.exit)(report.exit_code);
        report
    }
}
