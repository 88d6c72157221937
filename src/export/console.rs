//! `console` exporters: one human-readable line per span, log record or metric point on
//! stderr, for local work. Stdout stays reserved for the JSON log lines.

use std::fmt::{self, Display, Write as _};
use std::future::Future;
use std::io::Write as _;
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::Temporality;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};

/// Prints telemetry to stderr.
#[derive(Debug, Default)]
pub(crate) struct Console;

fn emit(text: &str) {
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

struct Attrs<'a, I>(std::cell::Cell<Option<I>>, std::marker::PhantomData<&'a ()>);

fn attrs<'a, I: Iterator<Item = &'a KeyValue>>(iter: I) -> Attrs<'a, I> {
    Attrs(std::cell::Cell::new(Some(iter)), std::marker::PhantomData)
}

impl<'a, I: Iterator<Item = &'a KeyValue>> Display for Attrs<'a, I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for kv in self.0.take().into_iter().flatten() {
            write!(f, " {}={}", kv.key, kv.value)?;
        }
        Ok(())
    }
}

impl opentelemetry_sdk::trace::SpanExporter for Console {
    fn export(
        &self,
        batch: Vec<opentelemetry_sdk::trace::SpanData>,
    ) -> impl Future<Output = OTelSdkResult> + Send {
        let mut text = String::new();
        for span in &batch {
            let duration = span
                .end_time
                .duration_since(span.start_time)
                .unwrap_or_default();
            let _ = writeln!(
                text,
                "[span] {} kind={:?} trace_id={} span_id={} parent={} duration={:?} status={:?}{}",
                span.name,
                span.span_kind,
                span.span_context.trace_id(),
                span.span_context.span_id(),
                span.parent_span_id,
                duration,
                span.status,
                attrs(span.attributes.iter())
            );
        }
        emit(&text);
        std::future::ready(Ok(()))
    }
}

impl opentelemetry_sdk::logs::LogExporter for Console {
    fn export(
        &self,
        batch: opentelemetry_sdk::logs::LogBatch<'_>,
    ) -> impl Future<Output = OTelSdkResult> + Send {
        let mut text = String::new();
        for (record, _scope) in batch.iter() {
            let body = record.body().map(|b| format!("{b:?}")).unwrap_or_default();
            let ids = record
                .trace_context()
                .map(|t| format!(" trace_id={} span_id={}", t.trace_id, t.span_id))
                .unwrap_or_default();
            let _ = write!(
                text,
                "[log] {} {} {}{}",
                record.severity_text().unwrap_or("-"),
                record.target().map(|t| t.as_ref()).unwrap_or("-"),
                body,
                ids
            );
            for (k, v) in record.attributes_iter() {
                let _ = write!(text, " {k}={v:?}");
            }
            text.push('\n');
        }
        emit(&text);
        std::future::ready(Ok(()))
    }
}

impl opentelemetry_sdk::metrics::exporter::PushMetricExporter for Console {
    fn export(&self, metrics: &ResourceMetrics) -> impl Future<Output = OTelSdkResult> + Send {
        let mut text = String::new();
        for scope in metrics.scope_metrics() {
            for metric in scope.metrics() {
                match metric.data() {
                    AggregatedMetrics::F64(data) => write_points(&mut text, metric.name(), data),
                    AggregatedMetrics::U64(data) => write_points(&mut text, metric.name(), data),
                    AggregatedMetrics::I64(data) => write_points(&mut text, metric.name(), data),
                }
            }
        }
        emit(&text);
        std::future::ready(Ok(()))
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }

    fn temporality(&self) -> Temporality {
        Temporality::Cumulative
    }
}

fn write_points<T: fmt::Debug + Copy>(text: &mut String, name: &str, data: &MetricData<T>) {
    match data {
        MetricData::Gauge(g) => {
            for p in g.data_points() {
                let _ = writeln!(
                    text,
                    "[metric] {name} gauge value={:?}{}",
                    p.value(),
                    attrs(p.attributes())
                );
            }
        }
        MetricData::Sum(s) => {
            for p in s.data_points() {
                let _ = writeln!(
                    text,
                    "[metric] {name} sum value={:?}{}",
                    p.value(),
                    attrs(p.attributes())
                );
            }
        }
        MetricData::Histogram(h) => {
            for p in h.data_points() {
                let _ = writeln!(
                    text,
                    "[metric] {name} histogram count={} sum={:?} min={:?} max={:?}{}",
                    p.count(),
                    p.sum(),
                    p.min(),
                    p.max(),
                    attrs(p.attributes())
                );
            }
        }
        MetricData::ExponentialHistogram(h) => {
            for p in h.data_points() {
                let _ = writeln!(
                    text,
                    "[metric] {name} exponential_histogram count={} sum={:?}{}",
                    p.count(),
                    p.sum(),
                    attrs(p.attributes())
                );
            }
        }
    }
}
