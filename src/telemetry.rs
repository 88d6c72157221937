//! The guard returned by `init`: flushes and shuts the pipelines down within one bound.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::time::{Duration, Instant};

use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tokio::runtime::Runtime;

use crate::builder::TelemetryBuilder;
use crate::config::{Config, Signal};
use crate::error::FlushError;
use crate::export::{ExportStats, Ledger, SignalStats};
use crate::logs::LogWriter;

/// Default bound for flushing everything when the guard is dropped.
pub const DEFAULT_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// Installed telemetry. Keep it alive for the life of the service; dropping it flushes and
/// shuts down all three signals within one total bound (default 5 s, see
/// [`TelemetryBuilder::flush_timeout`]).
#[must_use = "dropping the guard shuts telemetry down at once; bind it: `let _telemetry = ...`"]
pub struct Telemetry {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) config: Config,
    pub(crate) tracer_provider: SdkTracerProvider,
    pub(crate) meter_provider: Option<SdkMeterProvider>,
    pub(crate) logger_provider: Option<SdkLoggerProvider>,
    pub(crate) log_handoff: Option<crate::export::LogHandoff>,
    pub(crate) runtime: Mutex<Option<Runtime>>,
    pub(crate) ledgers: Vec<Arc<Ledger>>,
    /// How far the shutdown has got, for the exporters and the log layer.
    pub(crate) closing: crate::export::Closing,
    pub(crate) writer: Arc<dyn LogWriter>,
    pub(crate) flush_timeout: Duration,
    pub(crate) shut_down: AtomicBool,
    /// Cleared before the logger provider shuts down, so no record reaches a closed provider.
    pub(crate) logs_open: Arc<AtomicBool>,
    /// The runtime whose metrics are reported.
    pub(crate) runtime_slot: Arc<crate::metrics::RuntimeSlot>,
    /// Stopped last, after a final scrape window.
    #[cfg(feature = "prometheus")]
    pub(crate) prometheus: Mutex<Option<crate::metrics::prometheus::PrometheusServer>>,
    /// Swaps the level filter; `None` on a guard that installed no subscriber.
    pub(crate) log_filter: Option<crate::builder::LogFilterHandle>,
}

/// Longest wait at shutdown for Prometheus to scrape the last values (at most half the
/// shutdown bound).
const FINAL_SCRAPE_WINDOW: Duration = Duration::from_secs(5);

#[derive(Clone, Copy)]
enum Op {
    Flush,
    Shutdown,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("config", &self.inner.config)
            .field("flush_timeout", &self.inner.flush_timeout)
            .finish_non_exhaustive()
    }
}

impl Telemetry {
    /// A builder for code defaults; the environment still overrides them.
    pub fn builder() -> TelemetryBuilder {
        TelemetryBuilder::default()
    }

    pub(crate) fn from_inner(inner: Inner) -> Self {
        Telemetry {
            inner: Arc::new(inner),
        }
    }

    /// The configuration in effect.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// What the OTLP pipelines did since `init`: items exported, lost in failed exports,
    /// dropped at a full queue, and still queued. All zero for a signal that is not exported
    /// over OTLP.
    pub fn export_stats(&self) -> ExportStats {
        let mut stats = ExportStats::default();
        for ledger in &self.inner.ledgers {
            let s: SignalStats = ledger.stats();
            match ledger.signal() {
                Signal::Traces => stats.traces = s,
                Signal::Metrics => stats.metrics = s,
                Signal::Logs => stats.logs = s,
            }
        }
        stats
    }

    /// Exports everything buffered so far, waiting at most the shutdown timeout in total.
    ///
    /// Safe to call from any thread and from inside an async runtime of any flavour: the SDK
    /// calls run on threads of their own, so a hung collector costs at most the bound.
    pub fn flush(&self) -> Result<(), FlushError> {
        let result = self.inner.run_bounded(Op::Flush, self.inner.flush_timeout);
        self.inner.writer.flush();
        result
    }

    /// Replaces the log filter of the running service: the same syntax as `LOG_LEVEL` (a level,
    /// or `EnvFilter` directives such as `debug,hyper=warn`), with the same quieting of the
    /// transports and the SDK. It takes effect on the next event, on every thread. Invalid
    /// directives are rejected with the reason, and the filter in force stays.
    ///
    /// ```
    /// let telemetry = service_telemetry::Telemetry::builder()
    ///     .with_writer(service_telemetry::MemoryWriter::new())
    ///     .env_lookup(|_| None)
    ///     .set_default();
    /// telemetry.telemetry().set_log_filter("debug,hyper=warn").expect("valid");
    /// assert!(telemetry.telemetry().set_log_filter("info,=[").is_err());
    /// ```
    pub fn set_log_filter(&self, directives: &str) -> Result<(), crate::LogFilterError> {
        let Some(handle) = &self.inner.log_filter else {
            return Err(crate::LogFilterError::NotInstalled);
        };
        let filter = crate::config::live_log_filter(directives).map_err(|reason| {
            crate::LogFilterError::Invalid {
                directives: directives.to_owned(),
                reason,
            }
        })?;
        let parsed = tracing_subscriber::EnvFilter::builder()
            .parse(&filter)
            .map_err(|e| crate::LogFilterError::Invalid {
                directives: directives.to_owned(),
                reason: e.to_string(),
            })?;
        handle.replace(parsed, &filter);
        tracing::info!(
            target: "service_telemetry",
            log_filter = %filter,
            "log filter changed to {filter}"
        );
        Ok(())
    }

    /// JSON lines the log writer has dropped because its destination did not keep up (see
    /// [`crate::Overflow`]); always 0 for writers that never drop.
    pub fn dropped_log_lines(&self) -> u64 {
        self.inner.writer.dropped_lines()
    }

    /// Reports the Tokio metrics of `handle`'s runtime, unless `init` already found one.
    pub(crate) fn watch_runtime(&self, handle: tokio::runtime::Handle) {
        self.inner.runtime_slot.offer(handle);
    }

    /// Writes out whatever the log writer buffers, without touching the exporters.
    pub(crate) fn flush_log_writer(&self) {
        self.inner.writer.flush();
    }

    /// Flushes and shuts down every signal within `timeout` in total. Idempotent: later calls
    /// (and the drop) return `Ok` at once.
    ///
    /// With the Prometheus endpoint on, it first waits for one more scrape, at most 5 s and at
    /// most half of `timeout` (under [`crate::Shutdown`], at most the telemetry reserve), so
    /// the final values are scraped; the endpoint closes last.
    pub fn shutdown(&self, timeout: Duration) -> Result<(), FlushError> {
        self.inner
            .shutdown(timeout, FINAL_SCRAPE_WINDOW.min(timeout / 2))
    }

    /// [`shutdown`](Self::shutdown) with the final scrape window given.
    pub(crate) fn shutdown_with_scrape_window(
        &self,
        timeout: Duration,
        scrape_window: Duration,
    ) -> Result<(), FlushError> {
        self.inner.shutdown(timeout, scrape_window.min(timeout))
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        self.close();
    }
}

impl Telemetry {
    #[cfg(test)]
    pub(crate) fn is_shut_down(&self) -> bool {
        self.inner.shut_down.load(Ordering::Acquire)
    }

    /// What dropping the guard does: shut down within the flush timeout (what went wrong is
    /// logged by the shutdown itself, before the totals).
    pub(crate) fn close(&self) {
        let timeout = self.inner.flush_timeout;
        let _ = self
            .inner
            .shutdown(timeout, FINAL_SCRAPE_WINDOW.min(timeout / 2));
    }

    /// The bound of a final flush on its own (the guard's drop, or the one [`crate::Shutdown`]
    /// runs after its steps, which also caps it by the telemetry reserve).
    pub(crate) fn flush_timeout(&self) -> Duration {
        self.inner.flush_timeout
    }
}

impl Inner {
    fn shutdown(&self, timeout: Duration, scrape_window: Duration) -> Result<(), FlushError> {
        if self.shut_down.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        self.logs_open.store(false, Ordering::Relaxed);
        self.closing.begin_final_flush();
        #[cfg(feature = "prometheus")]
        let mut prometheus = self
            .prometheus
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        #[cfg(not(feature = "prometheus"))]
        let _ = scrape_window;
        #[cfg(feature = "prometheus")]
        let timeout = match prometheus.as_mut() {
            // While the meter provider still answers: after its shutdown a scrape is empty.
            Some(server) => {
                let started = Instant::now();
                server.wait_for_final_scrape(scrape_window);
                timeout.saturating_sub(started.elapsed())
            }
            None => timeout,
        };
        let result = self.run_bounded(Op::Shutdown, timeout);
        #[cfg(feature = "prometheus")]
        if let Some(mut server) = prometheus {
            server.stop();
        }
        if let Err(FlushError::TimedOut { timeout, pending }) = &result {
            let pending: Vec<&str> = pending.iter().map(|s| s.as_str()).collect();
            let listed = match pending.split_last() {
                Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
                _ => pending.concat(),
            };
            tracing::warn!(
                target: "service_telemetry::export",
                timeout_ms = timeout.as_millis() as u64,
                unconfirmed = %pending.join(","),
                "telemetry shutdown stopped waiting after {} ms: the collector did not confirm \
                 the last {}; what they held is counted below as undelivered",
                timeout.as_millis(),
                listed,
            );
        }
        for ledger in &self.ledgers {
            ledger.log_totals();
        }
        // The totals are the last word: later SDK diagnostics (from the threads just
        // abandoned) are not written.
        self.closing.totals_reported();
        if let Some(runtime) = self
            .runtime
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            if matches!(result, Err(FlushError::TimedOut { .. })) {
                // An export abandoned at the deadline is still polling on this runtime; shutting
                // it down would panic that export's thread. Leave the idle runtime to the
                // process's exit instead.
                std::mem::forget(runtime);
            } else {
                // Never blocks, even inside an async context (a plain drop would panic there).
                runtime.shutdown_background();
            }
        }
        self.writer.close();
        result
    }

    /// Runs `op` on every provider at once, each on its own thread, and waits until all are
    /// done or `timeout` has passed in total. Threads still running then are abandoned: an
    /// exporter stuck on a silent collector must not hold the service.
    fn run_bounded(&self, op: Op, timeout: Duration) -> Result<(), FlushError> {
        let deadline = Instant::now() + timeout;
        // The deadline is ours: the providers get a later one, only as a backstop. Given the
        // same bound, one could give up an instant before us and report its timeout as a
        // plain shutdown error, and the "stopped waiting" warning would not be written.
        let sdk_bound = timeout.saturating_add(SDK_BACKSTOP);
        let (tx, rx) = mpsc::channel::<(Signal, OTelSdkResult)>();
        let mut pending: Vec<Signal> = Vec::new();
        let mut failures: Vec<FlushError> = Vec::new();

        let mut spawn = |signal: Signal, work: Box<dyn FnOnce() -> OTelSdkResult + Send>| {
            let tx = tx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("telemetry-{}", signal.as_str()))
                .spawn(move || {
                    let _ = tx.send((signal, work()));
                });
            match spawned {
                Ok(_) => pending.push(signal),
                Err(e) => failures.push(FlushError::Exporter {
                    signal,
                    reason: format!("could not start flush thread: {e}"),
                }),
            }
        };

        let traces = self.tracer_provider.clone();
        spawn(
            Signal::Traces,
            Box::new(move || match op {
                Op::Flush => traces.force_flush(),
                Op::Shutdown => traces.shutdown_with_timeout(sdk_bound),
            }),
        );
        if let Some(metrics) = self.meter_provider.clone() {
            spawn(
                Signal::Metrics,
                Box::new(move || match op {
                    Op::Flush => metrics.force_flush(),
                    Op::Shutdown => metrics.shutdown_with_timeout(sdk_bound),
                }),
            );
        }
        if let Some(logs) = self.logger_provider.clone() {
            let handoff = self.log_handoff.clone();
            spawn(
                Signal::Logs,
                Box::new(move || match op {
                    Op::Flush => {
                        handoff.iter().for_each(|h| h.flush());
                        logs.force_flush()
                    }
                    Op::Shutdown => {
                        handoff.iter().for_each(|h| h.stop());
                        logs.shutdown_with_timeout(sdk_bound)
                    }
                }),
            );
        }
        drop(tx);

        // A provider that still gives up on its own has timed out as well.
        let mut gave_up: Vec<Signal> = Vec::new();
        while !pending.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok((signal, result)) => {
                    pending.retain(|s| *s != signal);
                    match result {
                        Err(opentelemetry_sdk::error::OTelSdkError::Timeout(_)) => {
                            gave_up.push(signal);
                        }
                        Err(e) if !is_benign(&e) => failures.push(FlushError::Exporter {
                            signal,
                            reason: e.to_string(),
                        }),
                        _ => {}
                    }
                }
                Err(_) => {
                    gave_up.append(&mut pending);
                    break;
                }
            }
        }
        if !gave_up.is_empty() {
            gave_up.sort_by_key(|s| Signal::ALL.iter().position(|all| all == s));
            return Err(FlushError::TimedOut {
                timeout,
                pending: gave_up,
            });
        }
        failures.into_iter().next().map_or(Ok(()), Err)
    }
}

/// How much longer than the crate's own deadline the providers are given to shut down.
const SDK_BACKSTOP: Duration = Duration::from_secs(1);

/// A provider with nothing to do (no exporter configured, or already shut down) is not a failure.
fn is_benign(e: &opentelemetry_sdk::error::OTelSdkError) -> bool {
    matches!(e, opentelemetry_sdk::error::OTelSdkError::AlreadyShutdown)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use opentelemetry_sdk::error::OTelSdkResult;
    use opentelemetry_sdk::trace::{SpanData, SpanExporter};

    use crate::{FlushError, Signal};

    /// A collector that accepts and never answers.
    #[derive(Debug)]
    struct Hangs;

    impl SpanExporter for Hangs {
        async fn export(&self, _: Vec<SpanData>) -> OTelSdkResult {
            std::future::pending().await
        }
    }

    #[test]
    fn a_shutdown_that_runs_out_of_time_says_so_and_names_the_signal() {
        let scoped = crate::Telemetry::builder()
            .env_lookup(|_| None)
            .with_writer(crate::MemoryWriter::new())
            .with_span_exporter(Hangs)
            .without_panic_hook()
            .set_default();
        tracing::info_span!("last request").in_scope(|| {});
        let started = Instant::now();
        let result = scoped.telemetry().shutdown(Duration::from_millis(300));
        let took = started.elapsed();
        match result {
            Err(FlushError::TimedOut { pending, timeout }) => {
                assert_eq!(pending, [Signal::Traces]);
                assert_eq!(timeout, Duration::from_millis(300));
            }
            other => panic!("expected a timeout naming traces, got {other:?}"),
        }
        assert!(took < Duration::from_secs(1), "took {took:?}");
    }
}
