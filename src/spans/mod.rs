//! How the crate reaches the OpenTelemetry span behind a `tracing` span, whichever layer
//! built it: `tracing-opentelemetry`'s (the default) or the direct one
//! ([`TelemetryBuilder::direct_spans`](crate::TelemetryBuilder::direct_spans)).

pub(crate) mod direct;
mod values;

use opentelemetry::trace::{Status, TraceContextExt as _};
use opentelemetry::{Context, KeyValue};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

pub(crate) use direct::DirectSpans;

/// The OpenTelemetry context of `span`; empty when neither layer built one for it.
pub(crate) fn context(span: &tracing::Span) -> Context {
    direct::context_of(span).unwrap_or_else(|| span.context())
}

/// Sets an attribute on the OpenTelemetry span behind `span`.
#[cfg_attr(not(feature = "tonic"), allow(dead_code))]
pub(crate) fn set_attribute(span: &tracing::Span, attribute: KeyValue) {
    match direct::context_of(span) {
        Some(cx) => cx.span().set_attribute(attribute),
        None => span.set_attribute(attribute.key, attribute.value),
    }
}

/// Sets the status of the OpenTelemetry span behind `span`.
#[cfg_attr(not(feature = "tower"), allow(dead_code))]
pub(crate) fn set_status(span: &tracing::Span, status: Status) {
    match direct::context_of(span) {
        Some(cx) => cx.span().set_status(status),
        None => span.set_status(status),
    }
}
