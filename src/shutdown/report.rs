//! What the shutdown did, step by step, as logged and as returned by `run`.

use std::fmt;
use std::time::Duration;

/// Longest error or panic message kept in a report, so one huge message cannot flood the log.
const MAX_MESSAGE: usize = 1000;

pub(super) fn bounded_message(message: &str) -> String {
    let mut out: String = message.chars().take(MAX_MESSAGE).collect();
    if out.len() < message.len() {
        out.push_str("...");
    }
    out
}

/// How one step ended.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StepOutcome {
    /// It returned `Ok` (or `()`).
    Completed,
    /// It returned an error, with its message.
    Failed(String),
    /// It panicked, with the panic message.
    Panicked(String),
    /// It overran its own timeout and was abandoned.
    TimedOut(Duration),
    /// It never started: the watchdog or a second signal ended the process first.
    NotStarted,
}

impl StepOutcome {
    /// Whether the step completed without error.
    pub fn is_ok(&self) -> bool {
        matches!(self, StepOutcome::Completed)
    }
}

impl fmt::Display for StepOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StepOutcome::Completed => f.write_str("ok"),
            StepOutcome::Failed(e) => write!(f, "failed: {e}"),
            StepOutcome::Panicked(m) => write!(f, "panicked: {m}"),
            StepOutcome::TimedOut(t) => write!(f, "timed out after {} ms", t.as_millis()),
            StepOutcome::NotStarted => f.write_str("not started"),
        }
    }
}

/// One step's outcome and how long it ran.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StepReport {
    /// The step's name.
    pub name: String,
    /// How it ended.
    pub outcome: StepOutcome,
    /// How long it ran.
    pub duration: Duration,
}

/// The whole shutdown, as [`crate::Shutdown::run`] logs it in its final `info` line.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// What started it: `SIGTERM`, `SIGINT` or the reason given to `trigger`.
    pub trigger: String,
    /// Every registered step, in order.
    pub steps: Vec<StepReport>,
    /// From the trigger to the end of the last step.
    pub elapsed: Duration,
    /// 0 when every step ended (even with an error); 1 when the watchdog or a second signal
    /// ended the process, or when shutdown was started by [`crate::ShutdownHandle::fail`].
    pub exit_code: i32,
}

impl ShutdownReport {
    /// Steps that did not complete cleanly.
    pub fn failures(&self) -> impl Iterator<Item = &StepReport> {
        self.steps.iter().filter(|s| !s.outcome.is_ok())
    }
}

/// `1. http server: ok (1204 ms); 2. jobs: failed: boom (3 ms)`: one readable field.
pub(super) fn summarize(steps: &[StepReport]) -> String {
    let mut out = String::new();
    for (i, step) in steps.iter().enumerate() {
        if i > 0 {
            out.push_str("; ");
        }
        out.push_str(&format!(
            "{}. {}: {} ({} ms)",
            i + 1,
            step.name,
            step.outcome,
            step.duration.as_millis()
        ));
    }
    out
}
