//! What happened to every span, log record and metric export: delivered, failed or dropped.
//!
//! The SDK's batch processors drop items silently once their queue is full and log one error
//! line per failed export. Here every OTLP pipeline gets a [`Ledger`]: an admission check in
//! front of the SDK's queue (same capacity, so the SDK's own queue never overflows and every
//! drop is counted), and a wrapper around the exporter that counts each batch's outcome. The
//! ledger turns those counts into a few warning lines a minute at most, and into
//! [`ExportStats`].
// Without an OTLP transport no pipeline is ever accounted.
#![cfg_attr(not(any(feature = "grpc", feature = "http")), allow(dead_code))]

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use opentelemetry_sdk::error::OTelSdkResult;

use crate::config::Signal;

/// Default interval between two export-failure reports of one signal.
pub const DEFAULT_EXPORT_REPORT_INTERVAL: Duration = Duration::from_secs(30);

/// Longest error text quoted in a report.
const MAX_ERROR_TEXT: usize = 300;

/// Counts for one signal's OTLP pipeline since `init`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SignalStats {
    /// Items the collector accepted: spans, log records, or (for metrics) export requests.
    pub exported: u64,
    /// Items in export requests that failed (collector down or refusing, timeout, rejection).
    pub failed: u64,
    /// Items refused because the queue was full; they were never sent.
    pub dropped: u64,
    /// Items waiting in the queue or in an export under way.
    pub queued: u64,
    /// Export requests that failed.
    pub failed_exports: u64,
}

impl SignalStats {
    /// Items that will never reach the collector: failed plus dropped.
    pub fn lost(&self) -> u64 {
        self.failed + self.dropped
    }
}

/// Counts for every signal; see [`crate::Telemetry::export_stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExportStats {
    /// Spans.
    pub traces: SignalStats,
    /// Metric export requests (metrics are aggregated in place, so none are queued or dropped).
    pub metrics: SignalStats,
    /// Log records.
    pub logs: SignalStats,
}

impl ExportStats {
    /// The counts of one signal.
    pub fn signal(&self, signal: Signal) -> &SignalStats {
        match signal {
            Signal::Traces => &self.traces,
            Signal::Metrics => &self.metrics,
            Signal::Logs => &self.logs,
        }
    }
}

/// The counters of one signal's OTLP pipeline, shared by its admission check, its exporter
/// wrapper and the guard.
pub(crate) struct Ledger {
    signal: Signal,
    capacity: usize,
    queued: AtomicUsize,
    exported: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    failed_exports: AtomicU64,
    /// Failed items by `error.type`, for the SDK self-metrics.
    failed_by_cause: Mutex<Vec<(&'static str, u64)>>,
    reporter: Mutex<Reporter>,
}

impl fmt::Debug for Ledger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ledger")
            .field("signal", &self.signal)
            .field("stats", &self.stats())
            .finish()
    }
}

struct Reporter {
    interval: Duration,
    /// When the current run of failures began; `None` while exports succeed.
    failing_since: Option<Instant>,
    last_report: Option<Instant>,
    /// The counts at the last report, to give each report the difference.
    at_last_report: SignalStats,
    last_error: String,
}

/// One line to log, decided under the reporter's lock and written after it is released.
#[derive(Debug, PartialEq)]
pub(crate) enum Report {
    /// The first failure after a healthy period.
    FailureStarted { error: String },
    /// Failures continue; counts since the previous report.
    StillFailing {
        since: SignalStats,
        failing_for: Duration,
        error: String,
    },
    /// Exports succeed again; counts of the whole failing period.
    Recovered {
        lost: SignalStats,
        failed_for: Duration,
    },
    /// Exports succeed but the queue overflowed since the previous report.
    QueueFull { dropped: u64 },
}

impl Ledger {
    /// `capacity` is the queue size the admission check enforces (0: no admission check).
    pub(crate) fn new(signal: Signal, capacity: usize, interval: Duration) -> Arc<Ledger> {
        Arc::new(Ledger {
            signal,
            capacity,
            queued: AtomicUsize::new(0),
            exported: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            failed_exports: AtomicU64::new(0),
            failed_by_cause: Mutex::new(Vec::new()),
            reporter: Mutex::new(Reporter {
                interval,
                failing_since: None,
                last_report: None,
                at_last_report: SignalStats::default(),
                last_error: String::new(),
            }),
        })
    }

    pub(crate) fn signal(&self) -> Signal {
        self.signal
    }

    /// Takes one place in the queue, or counts the item as dropped when it is full.
    #[inline]
    pub(crate) fn admit(&self) -> bool {
        if self.queued.fetch_add(1, Ordering::AcqRel) < self.capacity {
            return true;
        }
        self.queued.fetch_sub(1, Ordering::AcqRel);
        self.dropped.fetch_add(1, Ordering::Relaxed);
        false
    }

    /// Counts items dropped before they reached the admission check (a full handoff).
    pub(crate) fn count_dropped(&self, items: u64) {
        self.dropped.fetch_add(items, Ordering::Relaxed);
    }

    /// Gives back a place taken by [`admit`](Self::admit) for an item that never reached the
    /// exporter.
    pub(crate) fn release(&self, items: usize) {
        let _ = self
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| {
                Some(q.saturating_sub(items))
            });
    }

    /// Records the outcome of one export of `items` items and logs a report when one is due.
    pub(crate) fn record_export(&self, items: usize, result: &OTelSdkResult) {
        if self.capacity > 0 {
            self.release(items);
        }
        match result {
            Ok(()) => {
                self.exported.fetch_add(items as u64, Ordering::Relaxed);
            }
            Err(e) => {
                self.failed.fetch_add(items as u64, Ordering::Relaxed);
                self.failed_exports.fetch_add(1, Ordering::Relaxed);
                let cause = export_error_type(e);
                let mut by_cause = self
                    .failed_by_cause
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                match by_cause.iter_mut().find(|(c, _)| *c == cause) {
                    Some((_, n)) => *n += items as u64,
                    None => by_cause.push((cause, items as u64)),
                }
            }
        }
        let error = result.as_ref().err().map(|e| e.to_string());
        if let Some(report) = self.next_report(Instant::now(), error) {
            self.log(&report);
        }
    }

    pub(crate) fn stats(&self) -> SignalStats {
        SignalStats {
            exported: self.exported.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            queued: self.queued.load(Ordering::Relaxed) as u64,
            failed_exports: self.failed_exports.load(Ordering::Relaxed),
        }
    }

    /// Decides whether this export outcome warrants a line. Pure apart from the reporter's
    /// state, so the rate limit is unit-tested with made-up instants.
    pub(crate) fn next_report(&self, now: Instant, error: Option<String>) -> Option<Report> {
        let stats = self.stats();
        let mut r = self.reporter.lock().unwrap_or_else(PoisonError::into_inner);
        let due = r
            .last_report
            .is_none_or(|last| now.saturating_duration_since(last) >= r.interval);
        let report = match (error, r.failing_since) {
            (Some(error), None) => {
                r.failing_since = Some(now);
                r.last_error = bounded_error(&error);
                Some(Report::FailureStarted {
                    error: r.last_error.clone(),
                })
            }
            (Some(error), Some(since)) => {
                r.last_error = bounded_error(&error);
                due.then(|| Report::StillFailing {
                    since: difference(&stats, &r.at_last_report),
                    failing_for: now.saturating_duration_since(since),
                    error: r.last_error.clone(),
                })
            }
            (None, Some(since)) => {
                r.failing_since = None;
                Some(Report::Recovered {
                    lost: difference(&stats, &r.at_last_report),
                    failed_for: now.saturating_duration_since(since),
                })
            }
            (None, None) => {
                let dropped = stats.dropped - r.at_last_report.dropped;
                (due && dropped > 0).then_some(Report::QueueFull { dropped })
            }
        };
        if report.is_some() {
            r.last_report = Some(now);
            r.at_last_report = stats;
        }
        report
    }

    fn log(&self, report: &Report) {
        let signal = self.signal.as_str();
        let unit = self.unit();
        match report {
            // Metrics have no queue: a failed export's points are lost, and the next interval
            // exports afresh (cumulative sums then carry the whole total again).
            Report::FailureStarted { error } if self.signal == Signal::Metrics => tracing::warn!(
                target: "service_telemetry::export",
                signal,
                error = %error,
                "{signal} export failing: {error}; each failed export is lost and the next one \
                 is tried at the usual interval; a summary follows at most every {} s while it lasts",
                self.report_interval().as_secs(),
            ),
            Report::FailureStarted { error } => tracing::warn!(
                target: "service_telemetry::export",
                signal,
                error = %error,
                queued = self.queued.load(Ordering::Relaxed) as u64,
                "{signal} export failing: {error}; {unit} are queued up to {} and then dropped; \
                 a summary follows at most every {} s while it lasts",
                self.capacity,
                self.report_interval().as_secs(),
            ),
            Report::StillFailing {
                since,
                failing_for,
                error,
            } => tracing::warn!(
                target: "service_telemetry::export",
                signal,
                failed_exports = since.failed_exports,
                failed = since.failed,
                dropped = since.dropped,
                failing_for_s = failing_for.as_secs(),
                error = %error,
                "{signal} export still failing after {} s: {} exports failed, {} {unit} lost \
                 ({} in failed exports, {} dropped at a full queue) since the last report; last error: {error}",
                failing_for.as_secs(),
                since.failed_exports,
                since.lost(),
                since.failed,
                since.dropped,
            ),
            Report::Recovered { lost, failed_for } => tracing::info!(
                target: "service_telemetry::export",
                signal,
                failed = lost.failed,
                dropped = lost.dropped,
                failed_for_s = failed_for.as_secs(),
                "{signal} export recovered after {} s; {} {unit} lost since the last report",
                failed_for.as_secs(),
                lost.lost(),
            ),
            Report::QueueFull { dropped } => tracing::warn!(
                target: "service_telemetry::export",
                signal,
                dropped,
                queue_capacity = self.capacity as u64,
                "{signal} queue full: {dropped} {unit} dropped since the last report (queue \
                 capacity {}); the service produces more than the exporter sends",
                self.capacity,
            ),
        }
    }

    fn report_interval(&self) -> Duration {
        self.reporter
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .interval
    }

    fn unit(&self) -> &'static str {
        match self.signal {
            Signal::Traces => "spans",
            Signal::Metrics => "metric exports",
            Signal::Logs => "log records",
        }
    }

    /// One line at shutdown with the counts over the life of the service: `info` when
    /// everything was delivered, `warn` when anything was lost.
    pub(crate) fn log_totals(&self) {
        let stats = self.stats();
        let signal = self.signal.as_str();
        let unit = self.unit();
        macro_rules! totals {
            ($level:ident) => {
                tracing::$level!(
                    target: "service_telemetry::export",
                    signal,
                    exported = stats.exported,
                    failed = stats.failed,
                    dropped = stats.dropped,
                    undelivered = stats.queued,
                    "{signal} export totals: {} {unit} exported, {} lost in failed exports, {} dropped at a full queue, {} undelivered at exit (still queued, or in an export the collector never answered)",
                    stats.exported,
                    stats.failed,
                    stats.dropped,
                    stats.queued,
                )
            };
        }
        if stats.lost() == 0 && stats.queued == 0 {
            totals!(info);
        } else {
            totals!(warn);
        }
    }
}

/// `error.type` of a failed export, low-cardinality: what the SDK's error or its text says.
pub(crate) fn export_error_type(error: &opentelemetry_sdk::error::OTelSdkError) -> &'static str {
    use opentelemetry_sdk::error::OTelSdkError;
    match error {
        OTelSdkError::Timeout(_) => "timeout",
        OTelSdkError::AlreadyShutdown => "already_shutdown",
        other => error_type_from_text(&other.to_string()),
    }
}

/// `error.type` from an error's message, for errors known only by their text; `_OTHER` when it
/// names no cause this knows.
pub(crate) fn error_type_from_text(text: &str) -> &'static str {
    let text = text.to_ascii_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| text.contains(w));
    if has(&["timed out", "timeout", "deadline"]) {
        "timeout"
    } else if has(&["connection refused"]) {
        "connection_refused"
    } else if has(&["connection reset"]) {
        "connection_reset"
    } else if has(&["dns", "failed to lookup", "name resolution", "no such host"]) {
        "name_resolution_error"
    } else if has(&["certificate", "tls", "handshake"]) {
        "tls_error"
    } else if has(&["connection closed", "incomplete message", "unexpected eof"]) {
        "connection_closed"
    } else if has(&["unavailable"]) {
        "unavailable"
    } else if let Some(status) = http_status_in(&text) {
        status
    } else {
        "_OTHER"
    }
}

/// An HTTP error status quoted in an exporter's error text (`... status 503 ...`).
fn http_status_in(text: &str) -> Option<&'static str> {
    const STATUSES: [&str; 9] = [
        "400", "401", "403", "404", "413", "429", "500", "502", "503",
    ];
    STATUSES
        .iter()
        .find(|s| {
            text.contains(&format!("status {s}")) || text.contains(&format!("status code {s}"))
        })
        .copied()
}

/// Publishes the ledgers as the SDK self-observability metrics of the semantic conventions
/// (`otel.sdk.exporter.{span,log}.exported`, `otel.sdk.processor.{span,log}.processed`, the
/// queue size and capacity), so a dashboard can show what the pipeline lost.
/// `exporter_type` gives each signal's `otel.component.type` (registry values such as
/// `otlp_grpc_span_exporter`).
pub(crate) fn register_metrics(
    meter: &opentelemetry::metrics::Meter,
    ledgers: &[Arc<Ledger>],
    exporter_type: &dyn Fn(Signal) -> String,
) {
    use opentelemetry::KeyValue;
    for ledger in ledgers {
        let (kind, unit, processor) = match ledger.signal {
            Signal::Traces => ("span", "{span}", "batching_span_processor"),
            Signal::Logs => ("log", "{log_record}", "batching_log_processor"),
            Signal::Metrics => continue,
        };
        // otel registry: a name unique in the process, `{type}/{index}` as it suggests; each
        // signal has one pipeline of each component.
        let exporter = exporter_type(ledger.signal);
        let exporter_attrs = [
            KeyValue::new("otel.component.type", exporter.clone()),
            KeyValue::new("otel.component.name", format!("{exporter}/0")),
        ];
        let processor_attrs = [
            KeyValue::new("otel.component.type", processor),
            KeyValue::new("otel.component.name", format!("{processor}/0")),
        ];

        let (l, attrs) = (ledger.clone(), exporter_attrs.clone());
        meter
            .u64_observable_counter(format!("otel.sdk.exporter.{kind}.exported"))
            .with_unit(unit)
            .with_description("Items the exporter sent, with error.type when the export failed")
            .with_callback(move |observer| {
                let stats = l.stats();
                observer.observe(stats.exported, &attrs);
                let by_cause = l
                    .failed_by_cause
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone();
                for (cause, n) in by_cause {
                    let mut failed = attrs.to_vec();
                    failed.push(KeyValue::new("error.type", cause));
                    observer.observe(n, &failed);
                }
            })
            .build();

        let (l, attrs) = (ledger.clone(), processor_attrs.clone());
        meter
            .u64_observable_counter(format!("otel.sdk.processor.{kind}.processed"))
            .with_unit(unit)
            .with_description("Items refused by the processor, by error.type (queue_full)")
            .with_callback(move |observer| {
                let mut dropped = attrs.to_vec();
                dropped.push(KeyValue::new("error.type", "queue_full"));
                observer.observe(l.stats().dropped, &dropped);
            })
            .build();

        let (l, attrs) = (ledger.clone(), processor_attrs.clone());
        meter
            .i64_observable_up_down_counter(format!("otel.sdk.processor.{kind}.queue.size"))
            .with_unit(unit)
            .with_description("Items waiting in the queue or being exported")
            .with_callback(move |observer| {
                observer.observe(i64::try_from(l.stats().queued).unwrap_or(i64::MAX), &attrs)
            })
            .build();

        let (capacity, attrs) = (ledger.capacity, processor_attrs);
        meter
            .i64_observable_up_down_counter(format!("otel.sdk.processor.{kind}.queue.capacity"))
            .with_unit(unit)
            .with_description("Most items the queue holds before dropping")
            .with_callback(move |observer| {
                observer.observe(i64::try_from(capacity).unwrap_or(i64::MAX), &attrs)
            })
            .build();
    }
}

fn difference(now: &SignalStats, before: &SignalStats) -> SignalStats {
    SignalStats {
        exported: now.exported.saturating_sub(before.exported),
        failed: now.failed.saturating_sub(before.failed),
        dropped: now.dropped.saturating_sub(before.dropped),
        queued: now.queued,
        failed_exports: now.failed_exports.saturating_sub(before.failed_exports),
    }
}

fn bounded_error(error: &str) -> String {
    if error.len() <= MAX_ERROR_TEXT {
        return error.to_owned();
    }
    let mut cut = MAX_ERROR_TEXT;
    while !error.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}...", &error[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_sdk::error::OTelSdkError;

    fn failure() -> OTelSdkResult {
        Err(OTelSdkError::InternalFailure("connection refused".into()))
    }

    #[test]
    fn admission_counts_drops_beyond_capacity_and_release_frees_places() {
        let ledger = Ledger::new(Signal::Traces, 3, DEFAULT_EXPORT_REPORT_INTERVAL);
        let admitted = (0..5).filter(|_| ledger.admit()).count();
        assert_eq!(admitted, 3);
        assert_eq!(ledger.stats().dropped, 2);
        assert_eq!(ledger.stats().queued, 3);
        ledger.record_export(2, &Ok(()));
        assert_eq!(ledger.stats().queued, 1);
        assert!(ledger.admit());
        ledger.record_export(2, &failure());
        let stats = ledger.stats();
        assert_eq!(
            (
                stats.exported,
                stats.failed,
                stats.failed_exports,
                stats.queued
            ),
            (2, 2, 1, 0)
        );
        assert_eq!(stats.lost(), 4);
    }

    #[test]
    fn continuous_failure_reports_at_most_once_per_interval_with_counts() {
        let interval = Duration::from_secs(30);
        let ledger = Ledger::new(Signal::Traces, 100, interval);
        let start = Instant::now();
        let mut reports = Vec::new();
        // One failed export of 10 spans every second for two minutes, 5 drops each second.
        for second in 0..120u64 {
            ledger.dropped.fetch_add(5, Ordering::Relaxed);
            ledger.failed.fetch_add(10, Ordering::Relaxed);
            ledger.failed_exports.fetch_add(1, Ordering::Relaxed);
            let now = start + Duration::from_secs(second);
            if let Some(r) = ledger.next_report(now, Some("refused".into())) {
                reports.push((second, r));
            }
        }
        let seconds: Vec<u64> = reports.iter().map(|(s, _)| *s).collect();
        assert_eq!(seconds, [0, 30, 60, 90], "{reports:?}");
        assert!(matches!(reports[0].1, Report::FailureStarted { .. }));
        match &reports[1].1 {
            Report::StillFailing {
                since, failing_for, ..
            } => {
                assert_eq!(since.failed_exports, 30);
                assert_eq!(since.failed, 300);
                assert_eq!(since.dropped, 150);
                assert_eq!(*failing_for, Duration::from_secs(30));
            }
            other => panic!("{other:?}"),
        }
        let recovered = ledger.next_report(start + Duration::from_secs(121), None);
        assert!(
            matches!(recovered, Some(Report::Recovered { lost, .. }) if lost.failed == 290),
            "{recovered:?}"
        );
        assert_eq!(
            ledger.next_report(start + Duration::from_secs(122), None),
            None
        );
    }

    #[test]
    fn queue_overflow_without_failures_is_reported_at_most_once_per_interval() {
        let ledger = Ledger::new(Signal::Logs, 1, Duration::from_secs(30));
        let start = Instant::now();
        assert!(ledger.admit());
        assert!(!ledger.admit());
        assert_eq!(
            ledger.next_report(start, None),
            Some(Report::QueueFull { dropped: 1 })
        );
        assert!(!ledger.admit());
        assert_eq!(
            ledger.next_report(start + Duration::from_secs(10), None),
            None
        );
        assert_eq!(
            ledger.next_report(start + Duration::from_secs(31), None),
            Some(Report::QueueFull { dropped: 1 })
        );
        assert_eq!(
            ledger.next_report(start + Duration::from_secs(70), None),
            None
        );
    }

    #[test]
    fn long_error_texts_are_cut_on_a_char_boundary() {
        let text = "é".repeat(400);
        let cut = bounded_error(&text);
        assert!(cut.len() <= MAX_ERROR_TEXT + 3);
        assert!(cut.ends_with("..."));
    }

    #[test]
    fn self_metrics_use_registry_component_types_and_name_the_cause() {
        use opentelemetry::metrics::MeterProvider as _;
        use opentelemetry_sdk::error::OTelSdkError;
        use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
        use opentelemetry_sdk::metrics::{
            InMemoryMetricExporter, PeriodicReader, SdkMeterProvider,
        };

        let exporter = InMemoryMetricExporter::default();
        let provider = SdkMeterProvider::builder()
            .with_reader(PeriodicReader::builder(exporter.clone()).build())
            .build();
        let ledger = Ledger::new(Signal::Traces, 100, Duration::from_secs(3600));
        register_metrics(&provider.meter("t"), std::slice::from_ref(&ledger), &|_| {
            "otlp_grpc_span_exporter".to_owned()
        });
        for _ in 0..3 {
            assert!(ledger.admit());
        }
        ledger.record_export(1, &Ok(()));
        ledger.record_export(1, &Err(OTelSdkError::Timeout(Duration::from_secs(10))));
        ledger.record_export(
            1,
            &Err(OTelSdkError::InternalFailure(
                "tcp connect error: Connection refused (os error 111)".into(),
            )),
        );
        provider.force_flush().expect("flush");
        let batches = exporter.get_finished_metrics().expect("metrics");
        let metric = batches
            .last()
            .expect("an export")
            .scope_metrics()
            .flat_map(|s| s.metrics())
            .find(|m| m.name() == "otel.sdk.exporter.span.exported")
            .expect("exported counter");
        let AggregatedMetrics::U64(MetricData::Sum(sum)) = metric.data() else {
            panic!("a u64 sum: {:?}", metric.data());
        };
        let mut points: Vec<(String, u64)> = sum
            .data_points()
            .map(|p| {
                let attrs: Vec<String> = p
                    .attributes()
                    .map(|kv| format!("{}={}", kv.key, kv.value))
                    .collect();
                let mut attrs = attrs;
                attrs.sort();
                (attrs.join(","), p.value())
            })
            .collect();
        points.sort();
        let points: Vec<(&str, u64)> = points.iter().map(|(a, n)| (a.as_str(), *n)).collect();
        const NAME: &str = "otel.component.name=otlp_grpc_span_exporter/0";
        const TYPE: &str = "otel.component.type=otlp_grpc_span_exporter";
        assert_eq!(
            points,
            [
                (
                    format!("error.type=connection_refused,{NAME},{TYPE}").as_str(),
                    1
                ),
                (format!("error.type=timeout,{NAME},{TYPE}").as_str(), 1),
                (format!("{NAME},{TYPE}").as_str(), 1),
            ]
        );
    }
}
