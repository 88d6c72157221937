//! The opt-in direct span layer (`TelemetryBuilder::direct_spans`) against the default
//! (`tracing-opentelemetry`'s layer): one workload run under each, and the exported spans
//! compared field by field (names, kinds, attributes, status, parents, links). Then what only
//! the direct layer decides differently: the sampler at creation, the end time at the last
//! exit, and the ids in log lines. Sets the global propagator, so it has this file alone.
#![cfg(feature = "axum")]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body;
use http::{HeaderMap, Request, Response};
use opentelemetry::Value;
use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState,
};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SpanData};
use service_telemetry::instrument::{HttpClientLayer, HttpServerLayer};
use service_telemetry::{MemoryWriter, ScopedTelemetry, Telemetry, TelemetryBuilder};
use tower::{Layer as _, ServiceExt as _};
use tracing::field::Empty;

const REMOTE_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const REMOTE_SPAN: &str = "00f067aa0ba902b7";

fn telemetry(
    direct: bool,
    configure: impl FnOnce(TelemetryBuilder) -> TelemetryBuilder,
) -> (ScopedTelemetry, InMemorySpanExporter, MemoryWriter) {
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    let spans = InMemorySpanExporter::default();
    let lines = MemoryWriter::new();
    let mut builder = Telemetry::builder()
        .env_lookup(|_| None)
        .with_writer(lines.clone())
        .with_span_exporter(spans.clone())
        .without_panic_hook();
    if direct {
        builder = builder.direct_spans();
    }
    (configure(builder).set_default(), spans, lines)
}

fn exported(scoped: &ScopedTelemetry, spans: &InMemorySpanExporter) -> Vec<SpanData> {
    scoped.telemetry().flush().expect("flush");
    spans.get_finished_spans().expect("spans")
}

/// Plain spans with every kind of field, special fields, explicit parents, a link and a late
/// record; then an HTTP request through the server layer (remote parent) that calls out
/// through the client layer (context injected). Returns the headers the backend received.
fn workload() -> HeaderMap {
    let error = std::io::Error::other("disk gone");
    let root = tracing::info_span!(
        "root",
        otel.name = "checkout",
        otel.kind = "producer",
        flag = true,
        count = 3i64,
        big = 7u64,
        ratio = 0.5f64,
        text = "hello",
        list = ?[1, 2],
        later = Empty,
        otel.status_code = Empty,
    );
    {
        let _entered = root.enter();
        let child = tracing::info_span!("child", n = 1i64);
        child.in_scope(|| tracing::info!("inside the child"));
        let explicit = tracing::info_span!(parent: &root, "explicit child");
        drop(explicit);
        let orphan = tracing::info_span!(parent: None, "explicit root");
        drop(orphan);
        let failing = tracing::info_span!(
            "failing",
            error = &error as &(dyn std::error::Error + 'static)
        );
        drop(failing);
        let follower = tracing::info_span!("follower");
        follower.follows_from(&child);
        drop(follower);
    }
    root.record("later", "recorded later");
    root.record("otel.status_code", "ERROR");
    drop(root);

    let received = std::sync::Arc::new(std::sync::Mutex::new(HeaderMap::new()));
    let backend = {
        let received = received.clone();
        HttpClientLayer::new().layer(tower::service_fn(move |request: Request<String>| {
            *received.lock().unwrap() = request.headers().clone();
            async { Ok::<_, Infallible>(Response::new(String::from("ok"))) }
        }))
    };
    let app = axum::Router::new()
        .route(
            "/orders/{id}",
            axum::routing::get(move || {
                let backend = backend.clone();
                async move {
                    let request = Request::get("http://stock.internal/items/9")
                        .body(String::new())
                        .unwrap();
                    backend.oneshot(request).await.unwrap().into_body()
                }
            }),
        )
        .layer(HttpServerLayer::new());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let request = Request::get("/orders/42")
            .header("host", "shop.internal")
            .header("traceparent", format!("00-{REMOTE_TRACE}-{REMOTE_SPAN}-01"))
            .body(Body::empty())
            .unwrap();
        let response = app.oneshot(request).await.unwrap();
        axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
    });
    let headers = received.lock().unwrap();
    headers.clone()
}

/// What must match between the two layers, with parents and links named, not numbered.
#[derive(Debug, PartialEq)]
struct Shape {
    kind: String,
    status: String,
    attributes: BTreeMap<String, String>,
    parent: String,
    links: Vec<String>,
    same_trace_as_parent: bool,
}

/// A value with its type; a string's storage (owned, static, shared) is not part of it.
fn typed(value: &Value) -> String {
    let kind = match value {
        Value::Bool(_) => "bool",
        Value::I64(_) => "i64",
        Value::F64(_) => "f64",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        _ => "other",
    };
    format!("{kind} {value}")
}

fn shapes(spans: &[SpanData]) -> BTreeMap<String, Shape> {
    let names: std::collections::HashMap<SpanId, String> = spans
        .iter()
        .map(|s| (s.span_context.span_id(), s.name.to_string()))
        .collect();
    let name_of = |id: SpanId| {
        if id == SpanId::INVALID {
            "(none)".to_owned()
        } else if id == SpanId::from_hex(REMOTE_SPAN).unwrap() {
            "(remote)".to_owned()
        } else {
            names.get(&id).cloned().unwrap_or_else(|| format!("{id}"))
        }
    };
    let mut shapes = BTreeMap::new();
    for span in spans {
        let parent_trace = spans
            .iter()
            .find(|p| p.span_context.span_id() == span.parent_span_id)
            .map(|p| p.span_context.trace_id());
        let shape = Shape {
            kind: format!("{:?}", span.span_kind),
            status: format!("{:?}", span.status),
            attributes: span
                .attributes
                .iter()
                .map(|kv| (kv.key.to_string(), typed(&kv.value)))
                .collect(),
            parent: name_of(span.parent_span_id),
            links: span
                .links
                .iter()
                .map(|link| name_of(link.span_context.span_id()))
                .collect(),
            same_trace_as_parent: parent_trace.is_none_or(|t| t == span.span_context.trace_id()),
        };
        let previous = shapes.insert(span.name.to_string(), shape);
        assert!(previous.is_none(), "two spans named {:?}", span.name);
    }
    shapes
}

#[test]
fn the_direct_layer_exports_what_tracing_opentelemetry_exports() {
    let (scoped, spans, _) = telemetry(false, |b| b);
    let default_headers = workload();
    let default_spans = shapes(&exported(&scoped, &spans));
    drop(scoped);

    let (scoped, spans, _) = telemetry(true, |b| b);
    let direct_headers = workload();
    let direct_exported = exported(&scoped, &spans);
    let direct_spans = shapes(&direct_exported);

    assert_eq!(
        default_spans.keys().collect::<Vec<_>>(),
        direct_spans.keys().collect::<Vec<_>>()
    );
    for (name, default) in &default_spans {
        let direct = &direct_spans[name];
        // The call site differs between runs only in the line, which both record.
        let without_line = |shape: &Shape| {
            let mut attributes = shape.attributes.clone();
            attributes.remove("code.line.number");
            attributes
        };
        assert_eq!(
            without_line(default),
            without_line(direct),
            "attributes of {name:?}"
        );
        assert_eq!(
            default.attributes.contains_key("code.line.number"),
            direct.attributes.contains_key("code.line.number")
        );
        assert_eq!(
            (
                &default.kind,
                &default.status,
                &default.parent,
                &default.links
            ),
            (&direct.kind, &direct.status, &direct.parent, &direct.links),
            "{name:?}"
        );
        assert!(direct.same_trace_as_parent, "{name:?}");
    }

    // What the workload is meant to cover, checked once on the direct run.
    let checkout = &direct_spans["checkout"];
    assert_eq!(checkout.kind, "Producer");
    assert!(checkout.status.contains("Error"), "{checkout:?}");
    assert_eq!(checkout.attributes["big"], "string 7");
    assert_eq!(checkout.attributes["count"], "i64 3");
    assert!(checkout.attributes.contains_key("later"), "{checkout:?}");
    assert_eq!(direct_spans["child"].parent, "checkout");
    assert_eq!(direct_spans["explicit child"].parent, "checkout");
    assert_eq!(direct_spans["explicit root"].parent, "(none)");
    assert_eq!(direct_spans["follower"].links, vec!["child".to_owned()]);
    assert!(
        direct_spans["failing"]
            .attributes
            .contains_key("exception.message")
    );
    let server = &direct_spans["GET /orders/{id}"];
    assert_eq!(
        (server.kind.as_str(), server.parent.as_str()),
        ("Server", "(remote)")
    );
    let server_trace = direct_exported
        .iter()
        .find(|s| s.name == "GET /orders/{id}")
        .unwrap()
        .span_context
        .trace_id();
    assert_eq!(server_trace, TraceId::from_hex(REMOTE_TRACE).unwrap());
    let client = direct_exported.iter().find(|s| s.name == "GET").unwrap();
    assert_eq!(direct_spans["GET"].parent, "GET /orders/{id}");

    // Both layers send the client span's own context downstream.
    let traceparent = |headers: &HeaderMap| {
        headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    assert!(
        traceparent(&direct_headers).is_some_and(|t| t.starts_with(&format!(
            "00-{REMOTE_TRACE}-{}-",
            client.span_context.span_id()
        ))),
        "{direct_headers:?}"
    );
    assert!(
        traceparent(&default_headers)
            .is_some_and(|t| t.starts_with(&format!("00-{REMOTE_TRACE}-"))),
        "{default_headers:?}"
    );
}

#[test]
fn log_lines_carry_the_ids_of_the_direct_span_they_are_written_in() {
    let (scoped, spans, lines) = telemetry(true, |b| b);
    let request = tracing::info_span!("request", user = "ada");
    request.in_scope(|| {
        let step = tracing::info_span!("step");
        step.in_scope(|| tracing::info!("working"));
    });
    drop(request);
    let exported = exported(&scoped, &spans);
    let step = exported.iter().find(|s| s.name == "step").expect("step");
    let line = lines
        .json_lines()
        .into_iter()
        .find(|l| l["message"] == "working")
        .expect("the line");
    assert_eq!(line["trace_id"], step.span_context.trace_id().to_string());
    assert_eq!(line["span_id"], step.span_context.span_id().to_string());
}

#[test]
fn a_direct_span_ends_at_its_last_exit_not_when_its_handle_is_dropped() {
    let (scoped, spans, _) = telemetry(true, |b| b);
    let span = tracing::info_span!("held");
    span.in_scope(|| {});
    std::thread::sleep(Duration::from_millis(150));
    drop(span);
    let never_entered = tracing::info_span!("never entered");
    std::thread::sleep(Duration::from_millis(150));
    drop(never_entered);
    let exported = exported(&scoped, &spans);
    let took = |name: &str| {
        let span = exported.iter().find(|s| s.name == name).expect(name);
        span.end_time.duration_since(span.start_time).unwrap()
    };
    assert!(
        took("held") < Duration::from_millis(100),
        "{:?}",
        took("held")
    );
    assert!(took("never entered") >= Duration::from_millis(150));
}

/// The sampler decides when the span opens: under a not-sampled remote parent nothing is
/// exported, and the context the crate propagates still carries the parent's trace with the
/// not-sampled flag; with export off every span still has ids.
#[test]
fn the_sampler_decides_at_creation_and_propagation_keeps_the_not_sampled_trace() {
    let (scoped, spans, lines) = telemetry(true, |b| b);
    let remote = SpanContext::new(
        TraceId::from_hex(REMOTE_TRACE).unwrap(),
        SpanId::from_hex(REMOTE_SPAN).unwrap(),
        TraceFlags::default(),
        true,
        TraceState::default(),
    );
    let guard = opentelemetry::Context::new()
        .with_remote_span_context(remote)
        .attach();
    let request = tracing::info_span!("request", user = "ada");
    drop(guard);
    let cx = service_telemetry::propagation::context_of(&request);
    let own = cx.span().span_context().clone();
    assert_eq!(own.trace_id(), TraceId::from_hex(REMOTE_TRACE).unwrap());
    assert_ne!(own.span_id(), SpanId::from_hex(REMOTE_SPAN).unwrap());
    assert!(own.is_valid() && !own.is_sampled());
    request.in_scope(|| {
        let child = tracing::info_span!("child");
        child.in_scope(|| tracing::info!("not sampled"));
    });
    drop(request);
    assert!(exported(&scoped, &spans).is_empty());
    let line = lines
        .json_lines()
        .into_iter()
        .find(|l| l["message"] == "not sampled")
        .expect("the line");
    assert_eq!(line["trace_id"], REMOTE_TRACE);
    drop(scoped);

    // Export off: contexts are minted, nothing is built, the lines still carry ids.
    let lines = MemoryWriter::new();
    let _scoped = Telemetry::builder()
        .env_lookup(|key| (key == "OTEL_TRACES_EXPORTER").then(|| "none".to_owned()))
        .with_writer(lines.clone())
        .without_panic_hook()
        .direct_spans()
        .set_default();
    let request = tracing::info_span!("request");
    let own = service_telemetry::propagation::context_of(&request)
        .span()
        .span_context()
        .clone();
    assert!(own.is_valid() && own.is_sampled());
    request.in_scope(|| tracing::info!("export off"));
    let line = lines
        .json_lines()
        .into_iter()
        .find(|l| l["message"] == "export off")
        .expect("the line");
    assert_eq!(line["span_id"], own.span_id().to_string());
}

/// `SpanTelemetryExt` reaches the OpenTelemetry span under either layer, where
/// `OpenTelemetrySpanExt` reaches only tracing-opentelemetry's.
#[test]
fn span_telemetry_ext_sets_attributes_and_status_under_either_layer() {
    use opentelemetry::KeyValue;
    use opentelemetry::trace::Status;
    use service_telemetry::spans::SpanTelemetryExt as _;
    for direct in [false, true] {
        let (scoped, spans, _) = telemetry(direct, |b| b);
        let span = tracing::info_span!("charge");
        span.set_otel_attribute(KeyValue::new("payment.provider", "acme"));
        span.set_otel_status(Status::error("card declined"));
        let own = span.otel_context().span().span_context().clone();
        drop(span);
        let exported = exported(&scoped, &spans);
        let charge = exported
            .iter()
            .find(|s| s.name == "charge")
            .expect("charge");
        assert_eq!(
            charge.span_context.span_id(),
            own.span_id(),
            "direct: {direct}"
        );
        assert_eq!(
            charge.status,
            Status::error("card declined"),
            "direct: {direct}"
        );
        assert!(
            charge
                .attributes
                .iter()
                .any(|kv| kv.key.as_str() == "payment.provider" && kv.value.as_str() == "acme"),
            "direct: {direct}: {:?}",
            charge.attributes
        );
    }
}
