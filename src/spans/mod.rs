//! The OpenTelemetry span behind a `tracing` span, whichever layer built it:
//! `tracing-opentelemetry`'s (the default) or the crate's direct one
//! ([`TelemetryBuilder::direct_spans`](crate::TelemetryBuilder::direct_spans)), through
//! [`SpanTelemetryExt`]. Code that may run under either uses it where it would use
//! `tracing_opentelemetry::OpenTelemetrySpanExt`, which reaches only the default layer.
//!
//! ```
//! use opentelemetry::KeyValue;
//! use opentelemetry::trace::{Status, TraceContextExt as _};
//! use service_telemetry::spans::SpanTelemetryExt as _;
//!
//! let _telemetry = service_telemetry::Telemetry::builder()
//!     .direct_spans()
//!     .env_lookup(|key| key.ends_with("_EXPORTER").then(|| "none".to_owned()))
//!     .set_default();
//! let span = tracing::info_span!("charge");
//! span.set_otel_attribute(KeyValue::new("payment.provider", "acme"));
//! span.set_otel_status(Status::error("card declined"));
//! assert!(span.otel_context().span().span_context().is_valid());
//! ```

pub(crate) mod direct;
pub(crate) mod entered;
mod values;

use opentelemetry::trace::{Status, TraceContextExt as _};
use opentelemetry::{Context, KeyValue};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

pub(crate) use direct::DirectSpans;

/// Reaches the OpenTelemetry span behind a `tracing` span under either span layer. Does
/// nothing (and answers an empty context) for a span neither built: one disabled by the level
/// filter, or skipped under a not-sampled parent.
pub trait SpanTelemetryExt {
    /// The span's OpenTelemetry context. For propagation prefer
    /// [`crate::propagation::context_of`], which also covers skipped spans.
    fn otel_context(&self) -> Context;

    /// Sets an attribute on the OpenTelemetry span (kept only if the span is recorded).
    fn set_otel_attribute(&self, attribute: KeyValue);

    /// Sets the OpenTelemetry span's status.
    fn set_otel_status(&self, status: Status);
}

impl SpanTelemetryExt for tracing::Span {
    fn otel_context(&self) -> Context {
        context(self)
    }

    fn set_otel_attribute(&self, attribute: KeyValue) {
        set_attribute(self, attribute);
    }

    fn set_otel_status(&self, status: Status) {
        set_status(self, status);
    }
}

/// The OpenTelemetry context of `span`; empty when neither layer built one for it.
pub(crate) fn context(span: &tracing::Span) -> Context {
    direct::context_of(span).unwrap_or_else(|| span.context())
}

/// Sets an attribute on the OpenTelemetry span behind `span`.
pub(crate) fn set_attribute(span: &tracing::Span, attribute: KeyValue) {
    match direct::context_of(span) {
        Some(cx) => cx.span().set_attribute(attribute),
        None => span.set_attribute(attribute.key, attribute.value),
    }
}

/// Sets the status of the OpenTelemetry span behind `span`.
pub(crate) fn set_status(span: &tracing::Span, status: Status) {
    match direct::context_of(span) {
        Some(cx) => cx.span().set_status(status),
        None => span.set_status(status),
    }
}
