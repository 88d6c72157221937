//! Pieces shared by the benches: exporters and a writer that discard, and env tables.
#![allow(dead_code)]

use std::hint::black_box;

use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::logs::{LogBatch, LogExporter};
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use service_telemetry::{LogWriter, ScopedTelemetry, Telemetry};

/// Accepts every batch at once: what is measured is the service side of export.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoopSpanExporter;

impl SpanExporter for NoopSpanExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        black_box(batch);
        Ok(())
    }
}

#[derive(Debug, Default, Clone, Copy)]
pub struct NoopLogExporter;

impl LogExporter for NoopLogExporter {
    async fn export(&self, batch: LogBatch<'_>) -> OTelSdkResult {
        black_box(batch);
        Ok(())
    }
}

/// JSON lines formatted and then discarded, like `std::io::sink` for the alternatives.
pub struct Discard;

impl LogWriter for Discard {
    fn write_line(&self, line: &[u8]) {
        black_box(line);
    }
}

pub fn lookup(
    env: &'static [(&'static str, &'static str)],
) -> impl Fn(&str) -> Option<String> + Send + Sync + 'static {
    move |k| {
        env.iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| (*v).to_owned())
    }
}

/// What this crate's export does in a variant.
#[derive(Clone, Copy)]
pub enum Export {
    Off,
    Traces,
    TracesAndLogs,
}

/// This crate installed for the current thread, lines discarded, exporters that discard.
pub fn ours(export: Export, env: &'static [(&'static str, &'static str)]) -> ScopedTelemetry {
    let mut builder = Telemetry::builder()
        .with_writer(Discard)
        .without_panic_hook()
        .env_lookup(lookup(env));
    if matches!(export, Export::Traces | Export::TracesAndLogs) {
        builder = builder.with_span_exporter(NoopSpanExporter);
    }
    if matches!(export, Export::TracesAndLogs) {
        builder = builder.with_log_exporter(NoopLogExporter);
    }
    builder.set_default()
}

/// The OTel SDK's tracer provider with a batch processor and a no-op exporter, as a plain
/// tracing-opentelemetry setup would build it.
pub fn sdk_provider(
    sampler: opentelemetry_sdk::trace::Sampler,
) -> opentelemetry_sdk::trace::SdkTracerProvider {
    opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_sampler(sampler)
        .with_batch_exporter(NoopSpanExporter)
        .build()
}
