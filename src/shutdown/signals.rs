//! Where shutdown signals come from: the OS by default, or a sender under a test's control.

use std::fmt;
use std::sync::{Arc, OnceLock, Weak};

use super::coordinator::Shared;

/// A signal that starts (or, the second time, forces) the shutdown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ShutdownSignal {
    /// `SIGTERM`, what orchestrators send.
    Terminate,
    /// `SIGINT`, Ctrl-C.
    Interrupt,
}

impl ShutdownSignal {
    /// `SIGTERM` or `SIGINT`.
    pub fn as_str(self) -> &'static str {
        match self {
            ShutdownSignal::Terminate => "SIGTERM",
            ShutdownSignal::Interrupt => "SIGINT",
        }
    }
}

impl fmt::Display for ShutdownSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where [`crate::Shutdown`] takes its signals from.
#[derive(Debug)]
pub struct SignalSource(Kind);

#[derive(Debug)]
enum Kind {
    Os,
    Nothing,
    Manual(Arc<OnceLock<Weak<Shared>>>),
}

impl Default for SignalSource {
    fn default() -> Self {
        Self::os()
    }
}

impl SignalSource {
    /// `SIGTERM` and `SIGINT` from the operating system, received on a thread of their own so
    /// they are seen even when every async worker is blocked. The default.
    pub fn os() -> Self {
        SignalSource(Kind::Os)
    }

    /// No signals: shutdown starts only through [`crate::shutdown::ShutdownHandle::trigger`].
    pub fn none() -> Self {
        SignalSource(Kind::Nothing)
    }

    /// Signals delivered by hand through the returned sender, for tests. `send` runs the same
    /// path as a real signal, on the sender's thread.
    pub fn manual() -> (Self, SignalSender) {
        let target = Arc::new(OnceLock::new());
        (
            SignalSource(Kind::Manual(target.clone())),
            SignalSender(target),
        )
    }

    pub(super) fn start(self, shared: &Arc<Shared>) {
        match self.0 {
            Kind::Os => os::start(shared.clone()),
            Kind::Nothing => {}
            Kind::Manual(target) => {
                let _ = target.set(Arc::downgrade(shared));
            }
        }
    }
}

/// Delivers signals to the [`crate::Shutdown`] built with [`SignalSource::manual`].
#[derive(Clone, Debug)]
pub struct SignalSender(Arc<OnceLock<Weak<Shared>>>);

impl SignalSender {
    /// Delivers `signal` as if the OS had. Does nothing before the coordinator is built or
    /// after it is gone.
    pub fn send(&self, signal: ShutdownSignal) {
        if let Some(shared) = self.0.get().and_then(Weak::upgrade) {
            shared.on_signal(signal);
        }
    }
}

#[cfg(unix)]
mod os {
    use std::sync::Arc;

    use signal_hook::consts::{SIGINT, SIGTERM};
    use signal_hook::iterator::Signals;

    use super::{Shared, ShutdownSignal};

    /// The thread keeps the coordinator alive for the life of the process: once the handlers
    /// are installed a signal must always lead to an exit, even if `run` was never awaited.
    pub(super) fn start(shared: Arc<Shared>) {
        let mut signals = match Signals::new([SIGTERM, SIGINT]) {
            Ok(signals) => signals,
            Err(e) => {
                tracing::error!(
                    target: super::super::TARGET,
                    error = %e,
                    "could not install SIGTERM/SIGINT handlers; shutdown starts only when triggered"
                );
                return;
            }
        };
        let spawned = std::thread::Builder::new()
            .name("shutdown-signals".into())
            .spawn(move || {
                for signal in signals.forever() {
                    let signal = if signal == SIGINT {
                        ShutdownSignal::Interrupt
                    } else {
                        ShutdownSignal::Terminate
                    };
                    shared.on_signal(signal);
                }
            });
        if let Err(e) = spawned {
            tracing::error!(
                target: super::super::TARGET,
                error = %e,
                "could not start the signal thread; shutdown starts only when triggered"
            );
        }
    }
}

#[cfg(not(unix))]
mod os {
    use std::sync::Arc;

    use super::Shared;

    pub(super) fn start(_shared: Arc<Shared>) {
        tracing::warn!(
            target: super::super::TARGET,
            "OS signals are only handled on Unix; shutdown starts only when triggered"
        );
    }
}
