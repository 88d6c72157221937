//! Spans of the global `tracing` subscriber kept in memory, for tests of the layers in process.

use std::sync::OnceLock;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use tracing_subscriber::layer::SubscriberExt as _;

/// Installs (once per test binary) a global subscriber exporting every span to memory, with
/// the SDK's W3C propagator, and returns the exporter.
pub fn global_memory_exporter() -> &'static InMemorySpanExporter {
    static SETUP: OnceLock<(InMemorySpanExporter, SdkTracerProvider)> = OnceLock::new();
    &SETUP
        .get_or_init(|| {
            let exporter = InMemorySpanExporter::default();
            let provider = SdkTracerProvider::builder()
                .with_simple_exporter(exporter.clone())
                .build();
            let subscriber = tracing_subscriber::registry()
                .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
            tracing::subscriber::set_global_default(subscriber).expect("only global subscriber");
            opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
            (exporter, provider)
        })
        .0
}
