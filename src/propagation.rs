//! The global context propagator chosen by `OTEL_PROPAGATORS`.

use opentelemetry::propagation::{TextMapCompositePropagator, TextMapPropagator};
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};

use crate::config::Propagator;

/// Installs the propagators as the global one (the SDK's default global is a no-op).
pub(crate) fn install(propagators: &[Propagator]) {
    let list: Vec<Box<dyn TextMapPropagator + Send + Sync>> = propagators
        .iter()
        .map(|p| -> Box<dyn TextMapPropagator + Send + Sync> {
            match p {
                Propagator::TraceContext => Box::new(TraceContextPropagator::new()),
                Propagator::Baggage => Box::new(BaggagePropagator::new()),
            }
        })
        .collect();
    // An empty composite injects and extracts nothing, which is what `none` asks for.
    opentelemetry::global::set_text_map_propagator(TextMapCompositePropagator::new(list));
}
