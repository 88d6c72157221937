//! The pieces around the SDK's batch processors that keep memory bounded and losses counted:
//! an admission check and value truncation in front of the queue, an accounting wrapper
//! around the exporter.
// Without an OTLP transport no pipeline is ever accounted.
#![cfg_attr(not(any(feature = "grpc", feature = "http")), allow(dead_code))]

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry::{Context, InstrumentationScope, KeyValue, StringValue, Value};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::logs::{LogBatch, LogProcessor, SdkLogRecord, SdkLogger};
use opentelemetry_sdk::trace::{Span, SpanData, SpanProcessor};

use super::accounting::Ledger;

/// Counts the outcome of every export in the signal's [`Ledger`].
#[derive(Debug)]
pub(crate) struct Accounted<E> {
    inner: E,
    ledger: Arc<Ledger>,
}

impl<E> Accounted<E> {
    pub(crate) fn new(inner: E, ledger: Arc<Ledger>) -> Self {
        Accounted { inner, ledger }
    }
}

impl<E: opentelemetry_sdk::trace::SpanExporter> opentelemetry_sdk::trace::SpanExporter
    for Accounted<E>
{
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let items = batch.len();
        let result = self.inner.export(batch).await;
        self.ledger.record_export(items, &result);
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource)
    }
}

impl<E: opentelemetry_sdk::logs::LogExporter> opentelemetry_sdk::logs::LogExporter
    for Accounted<E>
{
    async fn export(&self, batch: LogBatch<'_>) -> OTelSdkResult {
        let items = batch.iter().count();
        let result = self.inner.export(batch).await;
        self.ledger.record_export(items, &result);
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn event_enabled(&self, level: Severity, target: &str, name: Option<&str>) -> bool {
        self.inner.event_enabled(level, target, name)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource)
    }
}

impl<E: opentelemetry_sdk::metrics::exporter::PushMetricExporter>
    opentelemetry_sdk::metrics::exporter::PushMetricExporter for Accounted<E>
{
    async fn export(
        &self,
        metrics: &opentelemetry_sdk::metrics::data::ResourceMetrics,
    ) -> OTelSdkResult {
        let result = self.inner.export(metrics).await;
        self.ledger.record_export(1, &result);
        result
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn temporality(&self) -> opentelemetry_sdk::metrics::Temporality {
        self.inner.temporality()
    }
}

/// A span processor (the SDK's batch processor) behind the ledger's admission check, with
/// string values cut to the configured length.
#[derive(Debug)]
pub(crate) struct AdmittedSpans<P> {
    inner: P,
    ledger: Arc<Ledger>,
    value_limit: usize,
    closed: AtomicBool,
}

impl<P> AdmittedSpans<P> {
    pub(crate) fn new(inner: P, ledger: Arc<Ledger>, value_limit: usize) -> Self {
        AdmittedSpans {
            inner,
            ledger,
            value_limit,
            closed: AtomicBool::new(false),
        }
    }
}

impl<P: SpanProcessor> SpanProcessor for AdmittedSpans<P> {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.inner.on_start(span, cx)
    }

    fn on_end(&self, mut span: SpanData) {
        // After shutdown the SDK drops the span itself; taking a place would leak it.
        if self.closed.load(Ordering::Relaxed) || !self.ledger.admit() {
            return;
        }
        truncate_span(&mut span, self.value_limit);
        crate::propagation::mark_random_root(&mut span);
        // tracing-opentelemetry's location attributes: `code.file.path` and `code.line.number`
        // are registry names, `code.module.name` is none (semconv v1.44.0 `code.*`).
        span.attributes
            .retain(|kv| kv.key.as_str() != "code.module.name");
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.closed.store(true, Ordering::Relaxed);
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource)
    }
}

/// A log processor (the crate's own batch processor, `log_batches`) behind the ledger's admission check, with
/// string values cut to the configured length.
#[derive(Debug)]
pub(crate) struct AdmittedLogs<P> {
    inner: P,
    ledger: Arc<Ledger>,
    value_limit: usize,
    closed: AtomicBool,
    /// Mints blank records: the SDK offers no way to shorten a record's attributes in place.
    blank: SdkLogger,
}

impl<P> AdmittedLogs<P> {
    pub(crate) fn new(inner: P, ledger: Arc<Ledger>, value_limit: usize) -> Self {
        let blank = opentelemetry_sdk::logs::SdkLoggerProvider::builder()
            .build()
            .logger("service-telemetry");
        AdmittedLogs {
            inner,
            ledger,
            value_limit,
            closed: AtomicBool::new(false),
            blank,
        }
    }
}

impl<P: LogProcessor> LogProcessor for AdmittedLogs<P> {
    fn emit(&self, data: &mut SdkLogRecord, instrumentation: &InstrumentationScope) {
        if self.closed.load(Ordering::Relaxed) || !self.ledger.admit() {
            return;
        }
        // tracing names an event `event <file>:<line>` when the code gives it no name; that
        // is no event name (semconv: `event.name` identifies a class of events). An empty name
        // is not encoded by OTLP.
        if data.event_name().is_some_and(is_default_event_name) {
            data.set_event_name("");
        }
        if record_exceeds(data, self.value_limit) {
            let mut shortened = self.blank.create_log_record();
            copy_truncated(data, &mut shortened, self.value_limit);
            *data = shortened;
        }
        self.inner.emit(data, instrumentation);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.closed.store(true, Ordering::Relaxed);
        self.inner.shutdown_with_timeout(timeout)
    }

    fn event_enabled(&self, level: Severity, target: &str, name: Option<&str>) -> bool {
        self.inner.event_enabled(level, target, name)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource)
    }
}

/// tracing's generated event name: `event src/main.rs:12`.
fn is_default_event_name(name: &str) -> bool {
    name.strip_prefix("event ")
        .and_then(|rest| rest.rsplit_once(':'))
        .is_some_and(|(_, line)| !line.is_empty() && line.bytes().all(|b| b.is_ascii_digit()))
}

/// `s` cut to at most `limit` characters; `None` when it is already short enough.
pub(crate) fn truncated(s: &str, limit: usize) -> Option<String> {
    // Byte length bounds the character count from above: the common case costs nothing.
    if s.len() <= limit {
        return None;
    }
    let (cut, _) = s.char_indices().nth(limit)?;
    Some(s[..cut].to_owned())
}

fn truncate_string_value(v: &mut StringValue, limit: usize) {
    if let Some(short) = truncated(v.as_str(), limit) {
        *v = StringValue::from(short);
    }
}

fn truncate_value(value: &mut Value, limit: usize) {
    match value {
        Value::String(s) => truncate_string_value(s, limit),
        Value::Array(opentelemetry::Array::String(items)) => {
            for s in items {
                truncate_string_value(s, limit);
            }
        }
        _ => {}
    }
}

fn truncate_attributes(attributes: &mut [KeyValue], limit: usize) {
    for kv in attributes {
        truncate_value(&mut kv.value, limit);
    }
}

pub(crate) fn truncate_span(span: &mut SpanData, limit: usize) {
    if let Some(short) = truncated(&span.name, limit) {
        span.name = Cow::Owned(short);
    }
    truncate_attributes(&mut span.attributes, limit);
    for event in span.events.events.iter_mut() {
        if let Some(short) = truncated(&event.name, limit) {
            event.name = Cow::Owned(short);
        }
        truncate_attributes(&mut event.attributes, limit);
    }
    if let opentelemetry::trace::Status::Error { description } = &mut span.status {
        if let Some(short) = truncated(description, limit) {
            *description = Cow::Owned(short);
        }
    }
}

fn any_exceeds(value: &AnyValue, limit: usize) -> bool {
    match value {
        AnyValue::String(s) => s.as_str().len() > limit,
        AnyValue::Bytes(b) => b.len() > limit,
        AnyValue::ListAny(items) => items.iter().any(|v| any_exceeds(v, limit)),
        AnyValue::Map(map) => map.values().any(|v| any_exceeds(v, limit)),
        _ => false,
    }
}

fn record_exceeds(record: &SdkLogRecord, limit: usize) -> bool {
    record.body().is_some_and(|b| any_exceeds(b, limit))
        || record.attributes_iter().any(|(_, v)| any_exceeds(v, limit))
}

fn truncate_any(value: &AnyValue, limit: usize) -> AnyValue {
    match value {
        AnyValue::String(s) => match truncated(s.as_str(), limit) {
            Some(short) => AnyValue::String(short.into()),
            None => value.clone(),
        },
        AnyValue::Bytes(b) if b.len() > limit => AnyValue::Bytes(Box::new(b[..limit].to_vec())),
        AnyValue::ListAny(items) => AnyValue::ListAny(Box::new(
            items.iter().map(|v| truncate_any(v, limit)).collect(),
        )),
        AnyValue::Map(map) => AnyValue::Map(Box::new(
            map.iter()
                .map(|(k, v)| (k.clone(), truncate_any(v, limit)))
                .collect(),
        )),
        other => other.clone(),
    }
}

fn copy_truncated(from: &SdkLogRecord, to: &mut SdkLogRecord, limit: usize) {
    if let Some(name) = from.event_name() {
        to.set_event_name(name);
    }
    if let Some(target) = from.target() {
        to.set_target(target.clone());
    }
    if let Some(t) = from.timestamp() {
        to.set_timestamp(t);
    }
    if let Some(t) = from.observed_timestamp() {
        to.set_observed_timestamp(t);
    }
    if let Some(text) = from.severity_text() {
        to.set_severity_text(text);
    }
    if let Some(number) = from.severity_number() {
        to.set_severity_number(number);
    }
    if let Some(body) = from.body() {
        to.set_body(truncate_any(body, limit));
    }
    if let Some(cx) = from.trace_context() {
        to.set_trace_context(cx.trace_id, cx.span_id, cx.trace_flags);
    }
    for (key, value) in from.attributes_iter() {
        to.add_attribute(key.clone(), truncate_any(value, limit));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_tracings_generated_event_names_are_dropped() {
        assert!(is_default_event_name("event src/main.rs:12"));
        assert!(is_default_event_name("event C:\\svc\\main.rs:7"));
        assert!(!is_default_event_name("order.placed"));
        assert!(!is_default_event_name("event src/main.rs"));
        assert!(!is_default_event_name("event src/main.rs:x"));
    }

    #[test]
    fn truncation_counts_characters_and_leaves_short_values_alone() {
        assert_eq!(truncated("short", 10), None);
        assert_eq!(truncated("ééééé", 3).as_deref(), Some("ééé"));
        assert_eq!(
            truncated(&"x".repeat(5000), 4096).map(|s| s.len()),
            Some(4096)
        );
    }

    #[test]
    fn oversized_log_records_are_rebuilt_with_every_field_kept_and_values_cut() {
        let provider = opentelemetry_sdk::logs::SdkLoggerProvider::builder().build();
        let logger = provider.logger("test");
        let mut record = logger.create_log_record();
        record.set_body("b".repeat(100).into());
        record.set_severity_number(Severity::Warn);
        record.set_target("svc");
        record.add_attribute("big", "a".repeat(100));
        record.add_attribute("small", 7);
        assert!(record_exceeds(&record, 10));
        let mut short = logger.create_log_record();
        copy_truncated(&record, &mut short, 10);
        assert!(!record_exceeds(&short, 10));
        assert_eq!(short.body(), Some(&AnyValue::from("b".repeat(10))));
        assert_eq!(short.severity_number(), Some(Severity::Warn));
        assert_eq!(short.target().map(|t| t.as_ref()), Some("svc"));
        let attrs: Vec<_> = short.attributes_iter().cloned().collect();
        assert_eq!(attrs.len(), 2);
        assert_eq!(attrs[1].1, AnyValue::Int(7));
    }
}
