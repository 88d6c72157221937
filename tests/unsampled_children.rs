//! `TelemetryBuilder::skip_spans_under_unsampled_parents`: what is skipped, what still
//! propagates, and what is exported as before. Alone in its file: it installs the global
//! propagator that `inject_current` writes with.

use http::HeaderMap;
use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState,
};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::InMemorySpanExporter;
use service_telemetry::propagation::{context_of, inject_current};
use service_telemetry::{MemoryWriter, ScopedTelemetry, Telemetry};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// Every root the sampler decides is dropped; a remote parent decides for its children.
fn telemetry(skip: bool) -> (ScopedTelemetry, InMemorySpanExporter, MemoryWriter) {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let spans = InMemorySpanExporter::default();
    let lines = MemoryWriter::new();
    let mut builder = Telemetry::builder()
        .env_lookup(|k| (k == "OTEL_TRACES_SAMPLER").then(|| "parentbased_always_off".into()))
        .with_writer(lines.clone())
        .with_span_exporter(spans.clone())
        .without_panic_hook();
    if skip {
        builder = builder.skip_spans_under_unsampled_parents();
    }
    (builder.set_default(), spans, lines)
}

fn remote(sampled: bool) -> opentelemetry::Context {
    let flags = if sampled {
        TraceFlags::SAMPLED
    } else {
        TraceFlags::default()
    };
    opentelemetry::Context::new().with_remote_span_context(SpanContext::new(
        TraceId::from(0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736_u128),
        SpanId::from(0x00f0_67aa_0ba9_02b7_u64),
        flags,
        true,
        TraceState::default(),
    ))
}

/// The `traceparent` header for `ids` with the given flags.
fn traceparent(ids: &SpanContext, flags: &str) -> String {
    format!("00-{}-{}-{flags}", ids.trace_id(), ids.span_id())
}

/// The span context `OpenTelemetrySpanExt::context` answers for a span.
trait Ids {
    fn ids(&self) -> SpanContext;
}

impl Ids for tracing::Span {
    fn ids(&self) -> SpanContext {
        self.context().span().span_context().clone()
    }
}

/// A `request` span whose parent is the remote context `parent`, and its ids.
fn request_under(parent: opentelemetry::Context) -> (tracing::Span, SpanContext) {
    let request = tracing::info_span!("request");
    request.set_parent(parent).expect("set_parent");
    let ids = request.ids();
    (request, ids)
}

/// A root `request` (not sampled under `telemetry`'s sampler), its ids, and a `db.query`
/// child opened inside it.
fn request_and_child() -> (tracing::Span, SpanContext, tracing::Span) {
    let request = tracing::info_span!("request");
    let request_ids = request.ids();
    let child = request.in_scope(|| tracing::info_span!("db.query"));
    (request, request_ids, child)
}

fn traceparent_inside(span: &tracing::Span) -> String {
    let mut headers = HeaderMap::new();
    span.in_scope(|| inject_current(&mut headers));
    headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("none")
        .to_owned()
}

#[test]
fn children_of_a_not_sampled_request_are_skipped_and_still_propagate_its_context() {
    let (scoped, spans, lines) = telemetry(true);
    let request = tracing::info_span!("request");
    let request_cx = request.context();
    let request_ids = request_cx.span().span_context().clone();
    assert!(request_ids.is_valid() && !request_ids.is_sampled());

    let child = request.in_scope(|| tracing::info_span!("db.query"));
    assert!(
        !child.context().span().span_context().is_valid(),
        "the child was built: {:?}",
        child.context().span().span_context()
    );
    let fallback = context_of(&child);
    assert_eq!(fallback.span().span_context(), &request_ids);
    let sent = traceparent_inside(&child);
    assert_eq!(sent, traceparent(&request_ids, "00"));
    // Entered on a thread where its parent never was, as a spawned task instrumented with it.
    let sent_elsewhere = std::thread::scope(|s| {
        s.spawn(|| traceparent_inside(&child))
            .join()
            .expect("thread")
    });
    assert_eq!(sent_elsewhere, sent);
    child.in_scope(|| tracing::info!("inside the skipped child"));
    drop((child, request));
    scoped.telemetry().flush().expect("flush");

    let line = lines
        .json_lines()
        .into_iter()
        .find(|l| l["message"] == "inside the skipped child")
        .expect("the line");
    assert_eq!(line["trace_id"], request_ids.trace_id().to_string());
    assert_eq!(line["span_id"], request_ids.span_id().to_string());
    assert_eq!(line["span"]["name"], "db.query");
    assert!(spans.get_finished_spans().expect("spans").is_empty());
}

#[test]
fn without_the_opt_in_children_of_a_not_sampled_request_are_built() {
    let (_scoped, _spans, _lines) = telemetry(false);
    let (_request, request_ids, child) = request_and_child();
    let child_ids = child.ids();
    assert!(child_ids.is_valid() && !child_ids.is_sampled());
    assert_eq!(child_ids.trace_id(), request_ids.trace_id());
    assert_ne!(child_ids.span_id(), request_ids.span_id());
    assert_eq!(traceparent_inside(&child), traceparent(&child_ids, "00"));
}

#[test]
fn children_of_a_sampled_request_are_exported_as_before() {
    let (scoped, spans, _lines) = telemetry(true);
    let (request, request_ids) = request_under(remote(true));
    assert!(request_ids.is_sampled());
    let child = request.in_scope(|| tracing::info_span!("db.query"));
    let child_ids = child.ids();
    assert!(child_ids.is_sampled());
    assert_eq!(traceparent_inside(&child), traceparent(&child_ids, "01"));
    drop((child, request));
    scoped.telemetry().flush().expect("flush");

    let finished = spans.get_finished_spans().expect("spans");
    let mut names: Vec<_> = finished.iter().map(|s| s.name.as_ref()).collect();
    names.sort_unstable();
    assert_eq!(names, ["db.query", "request"]);
    let db = finished.iter().find(|s| s.name == "db.query").expect("db");
    assert_eq!(db.parent_span_id, request_ids.span_id());
    assert_eq!(db.span_context.trace_id(), request_ids.trace_id());
}

#[test]
fn a_request_with_a_not_sampled_remote_parent_is_built_and_its_children_skipped() {
    let (scoped, spans, _lines) = telemetry(true);
    let (request, request_ids) = request_under(remote(false));
    assert!(request_ids.is_valid() && !request_ids.is_sampled());
    assert_eq!(
        request_ids.trace_id(),
        TraceId::from(0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736_u128)
    );
    let child = request.in_scope(|| tracing::info_span!("http.client"));
    assert!(!child.context().span().span_context().is_valid());
    assert_eq!(traceparent_inside(&child), traceparent(&request_ids, "00"));
    drop((child, request));
    scoped.telemetry().flush().expect("flush");
    assert!(spans.get_finished_spans().expect("spans").is_empty());
}

#[test]
fn a_skipped_span_entered_twice_keeps_its_context_until_the_outer_exit() {
    let (_scoped, _spans, _lines) = telemetry(true);
    let (_request, request_ids, child) = request_and_child();
    let current = || opentelemetry::Context::map_current(|cx| cx.span().span_context().clone());
    child.in_scope(|| {
        child.in_scope(|| assert_eq!(current(), request_ids));
        assert_eq!(
            current(),
            request_ids,
            "the inner exit detached the outer's context"
        );
    });
    assert!(!current().is_valid(), "still attached after the last exit");
}

/// The client layer's own span is skipped under a not-sampled request; the call still carries
/// the request's `traceparent`, not-sampled.
#[cfg(feature = "tower")]
#[test]
fn the_http_client_layer_sends_the_not_sampled_parent_from_a_skipped_client_span() {
    use std::sync::{Arc, Mutex};
    use tower::{Layer as _, Service as _, ServiceExt as _};

    let (scoped, spans, _lines) = telemetry(true);
    let seen = Arc::new(Mutex::new(None::<String>));
    let recorder = seen.clone();
    let mut client = service_telemetry::instrument::HttpClientLayer::new().layer(
        tower::service_fn(move |request: http::Request<String>| {
            let recorder = recorder.clone();
            async move {
                *recorder.lock().expect("lock") = request
                    .headers()
                    .get("traceparent")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
            }
        }),
    );
    let (request_span, request_ids) = request_under(remote(false));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    request_span.in_scope(|| {
        let call = http::Request::get("http://127.0.0.1:9/orders")
            .body(String::new())
            .expect("request");
        let response = runtime.block_on(async {
            client.ready().await.expect("ready");
            client.call(call).await
        });
        assert!(response.is_ok());
    });
    assert_eq!(
        seen.lock().expect("lock").as_deref(),
        Some(traceparent(&request_ids, "00").as_str())
    );
    drop(request_span);
    scoped.telemetry().flush().expect("flush");
    assert!(spans.get_finished_spans().expect("spans").is_empty());
}
