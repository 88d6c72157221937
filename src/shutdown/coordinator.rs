//! State shared by the signal thread, the watchdog thread and the task running the steps.
//!
//! Every deadline (drain delay, step timeouts, the budget) is kept by the watchdog thread, so
//! the sequence needs neither the Tokio timer nor a free async worker: a step that blocks the
//! only thread of a current-thread runtime cannot stop the watchdog from firing.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::TARGET;
use super::report::{ShutdownReport, StepOutcome, StepReport, summarize};
use super::signals::ShutdownSignal;
use crate::health::Health;
use crate::telemetry::Telemetry;

/// Left between the end of the telemetry flush and the budget, for writing the last line and
/// exiting.
const EXIT_MARGIN: Duration = Duration::from_millis(100);

pub(super) type ExitFn = Arc<dyn Fn(i32) + Send + Sync>;

pub(super) struct Settings {
    pub(super) budget: Duration,
    pub(super) drain_delay: Duration,
    /// Kept back from the steps for the telemetry flush, which always runs.
    pub(super) reserve: Duration,
    pub(super) second_signal_forces_exit: bool,
    /// Whether `run` marks the health ready.
    pub(super) ready_when_running: bool,
}

pub(crate) struct Shared {
    pub(super) settings: Settings,
    pub(super) health: Health,
    /// Cancelled the moment shutdown is triggered.
    pub(super) triggered: CancellationToken,
    /// Cancelled when the drain delay ends and the first step starts.
    pub(super) stopping: CancellationToken,
    pub(super) exit: ExitFn,
    pub(super) telemetry: Option<Telemetry>,
    state: Mutex<State>,
    wake: Condvar,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    /// Triggered, but `run` has not picked it up yet.
    Pending,
    Draining,
    Steps,
    /// Steps done: the report and the telemetry flush.
    Finishing,
}

struct Trigger {
    cause: String,
    at: Instant,
    exit_code: i32,
}

struct Current {
    index: usize,
    started: Instant,
    deadline: Option<Instant>,
    on_timeout: Option<oneshot::Sender<()>>,
}

struct State {
    step_names: Vec<String>,
    trigger: Option<Trigger>,
    phase: Phase,
    drain: Option<(Instant, oneshot::Sender<()>)>,
    current: Option<Current>,
    finished: Vec<StepReport>,
    /// Set by whichever path ends the process first; the others stand down.
    exiting: bool,
}

/// What was running when the watchdog fired or a second signal arrived.
struct Interrupted {
    /// The step's name, or what was happening between steps.
    name: String,
    /// `step "name"`, or the same description, for messages.
    running: String,
    running_for: Duration,
    completed: Vec<String>,
    failed: Vec<String>,
    not_started: Vec<String>,
}

impl Shared {
    pub(super) fn new(
        settings: Settings,
        exit: ExitFn,
        telemetry: Option<Telemetry>,
        health: Health,
    ) -> Self {
        Shared {
            settings,
            health,
            triggered: CancellationToken::new(),
            stopping: CancellationToken::new(),
            exit,
            telemetry,
            state: Mutex::new(State {
                step_names: Vec::new(),
                trigger: None,
                phase: Phase::Pending,
                drain: None,
                current: None,
                finished: Vec::new(),
                exiting: false,
            }),
            wake: Condvar::new(),
        }
    }

    /// A panic while the lock was held cannot leave the state inconsistent in a way that
    /// matters more than exiting, so a poisoned lock is used as is.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn register(&self, name: &str) {
        self.lock().step_names.push(name.to_owned());
    }

    pub(super) fn on_signal(self: &Arc<Self>, signal: ShutdownSignal) {
        self.start(signal.as_str().to_owned(), Some(signal), 0);
    }

    /// A programmatic trigger; `exit_code` is what a sequence that completes exits with.
    pub(super) fn trigger(self: &Arc<Self>, reason: String, exit_code: i32) {
        self.start(reason, None, exit_code);
    }

    /// The signal path: health first, then the watchdog, then wake `run`.
    fn start(self: &Arc<Self>, cause: String, signal: Option<ShutdownSignal>, exit_code: i32) {
        self.health.set_shutting_down();
        let mut state = self.lock();
        if state.trigger.is_some() {
            if let Some(signal) = signal {
                if self.settings.second_signal_forces_exit && !state.exiting {
                    state.exiting = true;
                    let interrupted = interrupted(&state, Instant::now());
                    drop(state);
                    self.force_exit(signal, &interrupted);
                } else {
                    drop(state);
                    tracing::warn!(
                        target: TARGET,
                        signal = signal.as_str(),
                        "{signal} received while already shutting down; ignored"
                    );
                }
            }
            return;
        }
        let at = Instant::now();
        state.trigger = Some(Trigger {
            cause: cause.clone(),
            at,
            exit_code,
        });
        let steps = state.step_names.join(", ");
        drop(state);
        tracing::info!(
            target: TARGET,
            trigger = %cause,
            budget_ms = self.settings.budget.as_millis() as u64,
            drain_delay_ms = self.settings.drain_delay.as_millis() as u64,
            telemetry_reserve_ms = self.settings.reserve.as_millis() as u64,
            steps = %steps,
            "shutdown started ({cause})"
        );
        let watched = self.clone();
        let spawned = std::thread::Builder::new()
            .name("shutdown-watchdog".into())
            .spawn(move || watched.watch(at));
        if let Err(e) = spawned {
            tracing::error!(
                target: TARGET,
                error = %e,
                "could not start the shutdown watchdog thread; the budget is not enforced"
            );
        }
        self.triggered.cancel();
    }

    /// What triggered the shutdown, when, and the exit code if the sequence completes.
    pub(super) fn trigger_cause(&self) -> (String, Instant, i32) {
        trigger_of(&self.lock())
    }

    /// Arms the drain timer; the receiver resolves when it ends.
    pub(super) fn begin_drain(&self, until: Instant) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        let mut state = self.lock();
        state.phase = Phase::Draining;
        state.drain = Some((until, tx));
        self.wake.notify_all();
        rx
    }

    /// Records the step as running; the receiver resolves when its own timeout passes.
    pub(super) fn begin_step(
        &self,
        index: usize,
        timeout: Option<Duration>,
    ) -> Option<oneshot::Receiver<()>> {
        let now = Instant::now();
        let (tx, rx) = match timeout {
            Some(_) => {
                let (tx, rx) = oneshot::channel();
                (Some(tx), Some(rx))
            }
            None => (None, None),
        };
        let mut state = self.lock();
        state.phase = Phase::Steps;
        state.drain = None;
        state.current = Some(Current {
            index,
            started: now,
            deadline: timeout.and_then(|t| now.checked_add(t)),
            on_timeout: tx,
        });
        self.wake.notify_all();
        rx
    }

    pub(super) fn end_step(&self, report: StepReport) {
        let mut state = self.lock();
        state.current = None;
        state.finished.push(report);
        self.wake.notify_all();
    }

    /// Moves to the final phase; returns the report so far, or `None` if the process is
    /// already being ended by the watchdog or a second signal.
    pub(super) fn finish_steps(&self) -> Option<Vec<StepReport>> {
        let mut state = self.lock();
        state.phase = Phase::Finishing;
        self.wake.notify_all();
        (!state.exiting).then(|| state.finished.clone())
    }

    /// Claims the exit; false when another path has already claimed it.
    pub(super) fn claim_exit(&self) -> bool {
        let mut state = self.lock();
        let first = !state.exiting;
        state.exiting = true;
        self.wake.notify_all();
        first
    }

    /// Time left before the budget ends, minus the margin for exiting.
    pub(super) fn remaining(&self, triggered_at: Instant) -> Duration {
        self.settings
            .budget
            .saturating_sub(triggered_at.elapsed())
            .saturating_sub(EXIT_MARGIN)
    }

    /// The watchdog: serves the drain and step timers, and ends the process when the steps
    /// overrun their share of the budget or the final flush overruns the rest.
    fn watch(self: Arc<Self>, at: Instant) {
        let budget = self.settings.budget;
        let steps_deadline = at
            .checked_add(budget.saturating_sub(self.settings.reserve))
            .unwrap_or(at);
        let hard_deadline = at.checked_add(budget).unwrap_or(at);
        let mut state = self.lock();
        loop {
            if state.exiting {
                return;
            }
            let now = Instant::now();
            if state.drain.as_ref().is_some_and(|(until, _)| now >= *until) {
                if let Some((_, tx)) = state.drain.take() {
                    let _ = tx.send(());
                }
            }
            if let Some(current) = state.current.as_mut() {
                if current.deadline.is_some_and(|d| now >= d) {
                    if let Some(tx) = current.on_timeout.take() {
                        let _ = tx.send(());
                    }
                }
            }
            let deadline = if state.phase == Phase::Finishing {
                hard_deadline
            } else {
                steps_deadline
            };
            if now >= deadline {
                state.exiting = true;
                let interrupted = interrupted(&state, now);
                let finishing = state.phase == Phase::Finishing;
                drop(state);
                self.fire(&interrupted, finishing, hard_deadline);
                return;
            }
            let mut next = deadline;
            if let Some((until, _)) = &state.drain {
                next = next.min(*until);
            }
            if let Some(Current {
                deadline: Some(d),
                on_timeout: Some(_),
                ..
            }) = &state.current
            {
                next = next.min(*d);
            }
            let wait = next.saturating_duration_since(now);
            state = self
                .wake
                .wait_timeout(state, wait)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    fn fire(&self, interrupted: &Interrupted, finishing: bool, hard_deadline: Instant) {
        // Liveness probes see it for the moments left before the exit.
        self.health.set_wedged();
        let budget_ms = self.settings.budget.as_millis() as u64;
        let running_ms = interrupted.running_for.as_millis() as u64;
        if finishing {
            tracing::error!(
                target: TARGET,
                budget_ms,
                completed = %interrupted.completed.join(", "),
                failed = %interrupted.failed.join(", "),
                "shutdown watchdog fired: the telemetry flush overran the {budget_ms} ms budget; exiting with code 1"
            );
        } else {
            tracing::error!(
                target: TARGET,
                hung_step = %interrupted.name,
                hung_for_ms = running_ms,
                budget_ms,
                completed = %interrupted.completed.join(", "),
                failed = %interrupted.failed.join(", "),
                not_started = %interrupted.not_started.join(", "),
                "shutdown watchdog fired: {} still running after {running_ms} ms, the steps' share of the {budget_ms} ms budget is used up; flushing telemetry and exiting with code 1",
                interrupted.running
            );
        }
        if let Some(telemetry) = &self.telemetry {
            let left = hard_deadline
                .saturating_duration_since(Instant::now())
                .saturating_sub(EXIT_MARGIN)
                .min(telemetry.flush_timeout());
            if !finishing && !left.is_zero() {
                // Wedged: no waiting for a final Prometheus scrape.
                let _ = telemetry.shutdown_with_scrape_window(left, Duration::ZERO);
            }
        }
        self.flush_log_lines();
        (self.exit)(1);
    }

    fn force_exit(&self, signal: ShutdownSignal, interrupted: &Interrupted) {
        tracing::error!(
            target: TARGET,
            signal = signal.as_str(),
            interrupted_step = %interrupted.name,
            running_for_ms = interrupted.running_for.as_millis() as u64,
            completed = %interrupted.completed.join(", "),
            not_started = %interrupted.not_started.join(", "),
            "second {signal} during shutdown: exiting with code 1 at once, interrupting {}",
            interrupted.running
        );
        self.flush_log_lines();
        (self.exit)(1);
    }

    /// Writes out buffered log lines before the process exits: the guard's writer, and the
    /// installed subscriber's when it is another one.
    pub(super) fn flush_log_lines(&self) {
        if let Some(telemetry) = &self.telemetry {
            telemetry.flush_log_writer();
        }
        crate::logs::flush_installed_writer();
    }

    /// The report when the process is ended early, from the state at that moment.
    pub(super) fn partial_report(&self) -> ShutdownReport {
        let state = self.lock();
        let (cause, at, _) = trigger_of(&state);
        let mut steps = state.finished.clone();
        for name in state.step_names.iter().skip(steps.len()) {
            steps.push(StepReport {
                name: name.clone(),
                outcome: StepOutcome::NotStarted,
                duration: Duration::ZERO,
            });
        }
        ShutdownReport {
            trigger: cause,
            steps,
            elapsed: at.elapsed(),
            exit_code: 1,
        }
    }
}

fn trigger_of(state: &State) -> (String, Instant, i32) {
    match &state.trigger {
        Some(t) => (t.cause.clone(), t.at, t.exit_code),
        None => (String::from("unknown"), Instant::now(), 0),
    }
}

fn interrupted(state: &State, now: Instant) -> Interrupted {
    let (name, running, running_for) = match (&state.current, state.phase) {
        (Some(current), _) => {
            let name = state
                .step_names
                .get(current.index)
                .cloned()
                .unwrap_or_default();
            (
                name.clone(),
                format!("step \"{name}\""),
                now.saturating_duration_since(current.started),
            )
        }
        (None, phase) => {
            let since = state
                .trigger
                .as_ref()
                .map_or(Duration::ZERO, |t| now.saturating_duration_since(t.at));
            let what = match phase {
                Phase::Pending => {
                    "no step (the sequence never started: is Shutdown::run awaited on a runtime with a free worker?)"
                }
                Phase::Draining => "the drain delay (its runtime made no progress)",
                Phase::Steps => "no step (between steps; the runtime made no progress)",
                Phase::Finishing => "the telemetry flush",
            };
            (what.to_owned(), what.to_owned(), since)
        }
    };
    let completed = state
        .finished
        .iter()
        .filter(|s| s.outcome.is_ok())
        .map(|s| s.name.clone())
        .collect();
    let failed = state
        .finished
        .iter()
        .filter(|s| !s.outcome.is_ok())
        .map(|s| format!("{} ({})", s.name, s.outcome))
        .collect();
    let started = state.finished.len() + usize::from(state.current.is_some());
    let not_started = state.step_names.iter().skip(started).cloned().collect();
    Interrupted {
        name,
        running,
        running_for,
        completed,
        failed,
        not_started,
    }
}

pub(super) fn log_step(report: &StepReport) {
    let duration_ms = report.duration.as_millis() as u64;
    match &report.outcome {
        StepOutcome::Completed => tracing::info!(
            target: TARGET,
            step = %report.name,
            outcome = "ok",
            duration_ms,
            "shutdown step \"{}\" completed in {duration_ms} ms",
            report.name
        ),
        outcome => tracing::warn!(
            target: TARGET,
            step = %report.name,
            outcome = %outcome,
            duration_ms,
            "shutdown step \"{}\" {outcome}; continuing with the next step",
            report.name
        ),
    }
}

pub(super) fn log_report(report: &ShutdownReport) {
    let failed = report.failures().count();
    tracing::info!(
        target: TARGET,
        trigger = %report.trigger,
        steps = %summarize(&report.steps),
        failed,
        elapsed_ms = report.elapsed.as_millis() as u64,
        exit_code = report.exit_code,
        "shutdown complete: {} steps, {failed} failed, in {} ms; exiting with code {}",
        report.steps.len(),
        report.elapsed.as_millis(),
        report.exit_code
    );
}
