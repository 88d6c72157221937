//! W3C trace context and baggage across process boundaries.
//!
//! `init` installs the propagators named by `OTEL_PROPAGATORS` (default `tracecontext,baggage`)
//! as the global propagator; these helpers use it. The instrumentation layers call them for you;
//! use them directly for transports the layers do not cover (message queues, custom clients).
//!
//! Malformed incoming headers are ignored: extraction then returns a context without a remote
//! span, and the next span starts a new trace. Nothing here fails or panics.
//!
//! ```
//! use service_telemetry::propagation::{extract_headers, inject_context};
//! let mut headers = http::HeaderMap::new();
//! headers.insert("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".parse().unwrap());
//! let cx = extract_headers(&headers); // the caller's span is the parent
//! let mut outgoing = http::HeaderMap::new();
//! inject_context(&cx, &mut outgoing);
//! # let _ = outgoing;
//! ```

use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};
use opentelemetry::Context;
use opentelemetry::propagation::{
    Extractor, Injector, TextMapCompositePropagator, TextMapPropagator,
};
use opentelemetry_sdk::propagation::BaggagePropagator;

use crate::config::Propagator;

mod b3;
mod random_flag;
mod tracecontext;
mod unsampled;

#[cfg(feature = "tonic")]
pub(crate) use random_flag::current_tracer;
#[cfg(any(feature = "sqlx", feature = "redis"))]
pub(crate) use random_flag::with_current_tracer;
pub(crate) use random_flag::{CurrentTracer, DecidedIds, RandomFlagTracer, mark_random_root};
pub(crate) use unsampled::{SkippedSpans, under_unsampled_parent};

/// Installs the propagators as the global one (the SDK's default global is a no-op).
pub(crate) fn install(propagators: &[Propagator]) {
    opentelemetry::global::set_text_map_propagator(build(propagators));
}

fn build(propagators: &[Propagator]) -> TextMapCompositePropagator {
    let list: Vec<Box<dyn TextMapPropagator + Send + Sync>> = propagators
        .iter()
        .map(|p| -> Box<dyn TextMapPropagator + Send + Sync> {
            match p {
                Propagator::TraceContext => Box::new(tracecontext::W3cTraceContext),
                Propagator::Baggage => Box::new(BaggagePropagator::new()),
                Propagator::B3 => Box::new(b3::B3::single()),
                Propagator::B3Multi => Box::new(b3::B3::multi()),
            }
        })
        .collect();
    // An empty composite injects and extracts nothing, which is what `none` asks for.
    TextMapCompositePropagator::new(list)
}

/// Every line of a header, `None` when there is none (what `Extractor::get_all` returns).
fn lines<'a>(values: impl Iterator<Item = &'a str>) -> Option<Vec<&'a str>> {
    let all: Vec<&str> = values.collect();
    (!all.is_empty()).then_some(all)
}

/// Reads `http` headers for the propagators.
pub struct HeaderExtractor<'a>(pub &'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    /// Every line of `key`: `tracestate` lines are one list, and two `traceparent` lines make
    /// both invalid.
    fn get_all(&self, key: &str) -> Option<Vec<&str>> {
        lines(self.0.get_all(key).iter().filter_map(|v| v.to_str().ok()))
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

/// Writes `http` headers for the propagators; values that are not valid header values are
/// skipped.
pub struct HeaderInjector<'a>(pub &'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// The remote context carried by `headers` (`traceparent`, `tracestate`, `baggage`).
pub fn extract_headers(headers: &HeaderMap) -> Context {
    opentelemetry::global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(headers)))
}

/// Writes `cx` into `headers` (replacing any propagation headers already there).
pub fn inject_context(cx: &Context, headers: &mut HeaderMap) {
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(cx, &mut HeaderInjector(headers));
    });
}

/// Writes the current `tracing` span's context into `headers`.
pub fn inject_current(headers: &mut HeaderMap) {
    inject_context(&context_of(&tracing::Span::current()), headers);
}

/// The OpenTelemetry context behind `span`, for propagation. When `tracing-opentelemetry`
/// built no OpenTelemetry span for it (the span is disabled by the level filter, or skipped
/// under a not-sampled parent, see
/// [`TelemetryBuilder::skip_spans_under_unsampled_parents`](crate::TelemetryBuilder::skip_spans_under_unsampled_parents)),
/// `OpenTelemetrySpanExt::context` answers an empty context, and injecting that would start a
/// new trace downstream. This answers instead the context a skipped span was opened in (its
/// nearest built ancestor's), or else the current context, so a not-sampled request still
/// sends its `traceparent` with the not-sampled flag.
///
/// ```
/// use tracing::Span;
/// let cx = service_telemetry::propagation::context_of(&Span::current());
/// # let _ = cx;
/// ```
pub fn context_of(span: &tracing::Span) -> Context {
    use opentelemetry::trace::TraceContextExt as _;
    let cx = crate::spans::context(span);
    if cx.span().span_context().is_valid() {
        return cx;
    }
    unsampled::context_of_skipped(span).unwrap_or_else(Context::current)
}

#[cfg(feature = "tonic")]
mod metadata {
    use opentelemetry::Context;
    use opentelemetry::propagation::{Extractor, Injector};
    use tonic::metadata::{KeyRef, MetadataKey, MetadataMap, MetadataValue};

    struct MetadataExtractor<'a>(&'a MetadataMap);

    impl Extractor for MetadataExtractor<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            self.0.get(key).and_then(|v| v.to_str().ok())
        }

        fn get_all(&self, key: &str) -> Option<Vec<&str>> {
            super::lines(self.0.get_all(key).iter().filter_map(|v| v.to_str().ok()))
        }

        fn keys(&self) -> Vec<&str> {
            self.0
                .keys()
                .filter_map(|k| match k {
                    KeyRef::Ascii(k) => Some(k.as_str()),
                    KeyRef::Binary(_) => None,
                })
                .collect()
        }
    }

    struct MetadataInjector<'a>(&'a mut MetadataMap);

    impl Injector for MetadataInjector<'_> {
        fn set(&mut self, key: &str, value: String) {
            if let (Ok(key), Ok(value)) = (
                MetadataKey::from_bytes(key.as_bytes()),
                MetadataValue::try_from(value.as_str()),
            ) {
                self.0.insert(key, value);
            }
        }
    }

    /// The remote context carried by gRPC metadata.
    pub fn extract_metadata(metadata: &MetadataMap) -> Context {
        opentelemetry::global::get_text_map_propagator(|p| p.extract(&MetadataExtractor(metadata)))
    }

    /// Writes `cx` into gRPC metadata.
    pub fn inject_metadata(cx: &Context, metadata: &mut MetadataMap) {
        opentelemetry::global::get_text_map_propagator(|p| {
            p.inject_context(cx, &mut MetadataInjector(metadata));
        });
    }

    /// A tonic interceptor that injects the current span's context into each outgoing call:
    /// `FooClient::with_interceptor(channel, InjectContext)`. The
    /// [`GrpcClientLayer`](crate::instrument::GrpcClientLayer) does this and also makes the
    /// client span; use this when only propagation is wanted.
    #[derive(Clone, Copy, Debug, Default)]
    pub struct InjectContext;

    impl tonic::service::Interceptor for InjectContext {
        fn call(
            &mut self,
            mut request: tonic::Request<()>,
        ) -> Result<tonic::Request<()>, tonic::Status> {
            inject_metadata(
                &super::context_of(&tracing::Span::current()),
                request.metadata_mut(),
            );
            Ok(request)
        }
    }
}

#[cfg(feature = "tonic")]
pub use metadata::{InjectContext, extract_metadata, inject_metadata};

#[cfg(test)]
mod tests {
    use opentelemetry::trace::{SpanContext, TraceContextExt as _, TraceFlags, TraceState};
    use opentelemetry::trace::{SpanId, TraceId};

    use super::*;

    fn remote() -> Context {
        Context::new().with_remote_span_context(SpanContext::new(
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            SpanId::from_hex("00f067aa0ba902b7").unwrap(),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        ))
    }

    fn roundtrip(propagators: &[Propagator]) -> (HeaderMap, Context) {
        let propagator = build(propagators);
        let mut headers = HeaderMap::new();
        propagator.inject_context(&remote(), &mut HeaderInjector(&mut headers));
        let back = propagator.extract(&HeaderExtractor(&headers));
        (headers, back)
    }

    #[test]
    fn tracecontext_roundtrip() {
        let (headers, back) = roundtrip(&[Propagator::TraceContext]);
        assert_eq!(
            headers["traceparent"],
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
        assert_eq!(back.span().span_context(), remote().span().span_context());
    }

    #[test]
    fn none_propagates_nothing() {
        let (headers, back) = roundtrip(&[]);
        assert!(headers.is_empty());
        assert!(!back.span().span_context().is_valid());
    }
}
