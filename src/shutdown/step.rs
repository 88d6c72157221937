//! One named shutdown step and how it is run in isolation.

use std::any::Any;
use std::fmt;
use std::future::{Future, poll_fn};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::{Pin, pin};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::oneshot;

use super::report::{StepOutcome, bounded_message};

/// What a step may return: `()`, or any `Result` whose error can be displayed
/// (`std::io::Error`, `Box<dyn Error>`, `anyhow::Error`, `String`, ...).
pub trait StepResult {
    /// `Err` with the message to report, or `Ok`.
    fn into_step_result(self) -> Result<(), String>;
}

impl StepResult for () {
    fn into_step_result(self) -> Result<(), String> {
        Ok(())
    }
}

impl<T, E: fmt::Display> StepResult for Result<T, E> {
    fn into_step_result(self) -> Result<(), String> {
        self.map(|_| ()).map_err(|e| e.to_string())
    }
}

pub(super) enum Failure {
    Error(String),
    Panic(String),
}

pub(super) type StepFuture = Pin<Box<dyn Future<Output = Result<(), Failure>> + Send>>;

enum Body {
    Async(Box<dyn FnOnce() -> StepFuture + Send>),
    Blocking(Box<dyn FnOnce() -> Result<(), String> + Send>),
}

/// A named shutdown step, with an optional timeout of its own.
///
/// ```
/// use std::time::Duration;
/// use service_telemetry::shutdown::Step;
/// let flush_flags = Step::new("flush feature flags", || async { Ok::<_, std::io::Error>(()) })
///     .timeout(Duration::from_secs(2));
/// let close_pool = Step::blocking("close database pool", || ());
/// # let _ = (flush_flags, close_pool);
/// ```
#[must_use = "a step does nothing until added with `Shutdown::add`"]
pub struct Step {
    pub(super) name: String,
    pub(super) timeout: Option<Duration>,
    body: Body,
}

impl fmt::Debug for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Step")
            .field("name", &self.name)
            .field("timeout", &self.timeout)
            .field("blocking", &matches!(self.body, Body::Blocking(_)))
            .finish()
    }
}

impl Step {
    /// An async step: `step` is called when its turn comes and the future it returns is
    /// awaited on the runtime that runs [`crate::Shutdown::run`].
    pub fn new<F, Fut>(name: impl Into<String>, step: F) -> Self
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: StepResult,
    {
        Step {
            name: name.into(),
            timeout: None,
            body: Body::Async(Box::new(move || {
                Box::pin(async move { step().await.into_step_result().map_err(Failure::Error) })
            })),
        }
    }

    /// A blocking step, run on a thread of its own so it never holds an async worker. If it
    /// overruns its timeout the thread is abandoned and the next step runs.
    pub fn blocking<F, R>(name: impl Into<String>, step: F) -> Self
    where
        F: FnOnce() -> R + Send + 'static,
        R: StepResult,
    {
        Step {
            name: name.into(),
            timeout: None,
            body: Body::Blocking(Box::new(move || step().into_step_result())),
        }
    }

    pub(super) fn from_future(
        name: String,
        make: impl FnOnce() -> StepFuture + Send + 'static,
    ) -> Self {
        Step {
            name,
            timeout: None,
            body: Body::Async(Box::new(make)),
        }
    }

    /// Gives up on the step after `timeout`: it is reported as timed out and the next step
    /// runs. Without one, only the overall budget bounds it.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The step's name, as it appears in the logs and the report.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs the step to an outcome; never panics. `timed_out` resolves when the step's own
    /// timeout passes.
    pub(super) async fn execute(self, timed_out: Option<oneshot::Receiver<()>>) -> StepOutcome {
        let timeout = self.timeout.unwrap_or_default();
        match self.body {
            Body::Async(make) => {
                let future = match catch_unwind(AssertUnwindSafe(make)) {
                    Ok(future) => future,
                    Err(payload) => return StepOutcome::Panicked(panic_message(payload)),
                };
                match race(CatchUnwind(future), timed_out).await {
                    None => StepOutcome::TimedOut(timeout),
                    Some(Ok(Ok(()))) => StepOutcome::Completed,
                    Some(Ok(Err(Failure::Error(e)))) => StepOutcome::Failed(bounded_message(&e)),
                    Some(Ok(Err(Failure::Panic(m)))) | Some(Err(m)) => StepOutcome::Panicked(m),
                }
            }
            Body::Blocking(work) => {
                let (done, finished) = oneshot::channel();
                let spawned = std::thread::Builder::new()
                    .name(thread_name(&self.name))
                    .spawn(move || {
                        let _ = done.send(catch_unwind(AssertUnwindSafe(work)));
                    });
                if let Err(e) = spawned {
                    return StepOutcome::Failed(format!("could not start its thread: {e}"));
                }
                match race(finished, timed_out).await {
                    None => StepOutcome::TimedOut(timeout),
                    Some(Ok(Ok(Ok(())))) => StepOutcome::Completed,
                    Some(Ok(Ok(Err(e)))) => StepOutcome::Failed(bounded_message(&e)),
                    Some(Ok(Err(payload))) => StepOutcome::Panicked(panic_message(payload)),
                    Some(Err(_)) => {
                        StepOutcome::Panicked("its thread ended without a result".into())
                    }
                }
            }
        }
    }
}

fn thread_name(step: &str) -> String {
    let mut name = String::from("shutdown-step-");
    name.extend(step.chars().filter(|c| !c.is_control()).take(32));
    name.replace('\0', "")
}

/// Resolves to `None` when `timed_out` fires first; a dropped sender means "no timeout".
pub(super) async fn race<T>(
    work: impl Future<Output = T>,
    timed_out: Option<oneshot::Receiver<()>>,
) -> Option<T> {
    let mut work = pin!(work);
    let mut timed_out = timed_out;
    poll_fn(|cx| {
        if let Poll::Ready(value) = work.as_mut().poll(cx) {
            return Poll::Ready(Some(value));
        }
        if let Some(rx) = timed_out.as_mut() {
            match Pin::new(rx).poll(cx) {
                Poll::Ready(Ok(())) => return Poll::Ready(None),
                Poll::Ready(Err(_)) => timed_out = None,
                Poll::Pending => {}
            }
        }
        Poll::Pending
    })
    .await
}

/// Polls the inner future inside `catch_unwind`, turning a panic into its message.
pub(crate) struct CatchUnwind<F: ?Sized>(pub(crate) Pin<Box<F>>);

impl<F: Future + ?Sized> Future for CatchUnwind<F> {
    type Output = Result<F::Output, String>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match catch_unwind(AssertUnwindSafe(|| self.0.as_mut().poll(cx))) {
            Ok(Poll::Ready(value)) => Poll::Ready(Ok(value)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(payload) => Poll::Ready(Err(panic_message(payload))),
        }
    }
}

pub(crate) fn panic_message(payload: Box<dyn Any + Send>) -> String {
    let message = if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_owned()
    };
    bounded_message(&message)
}
