//! A Redis command's span under the crate's own subscriber, where it is built with the
//! OpenTelemetry API rather than as a `tracing` span: parent, kind, attributes and status are
//! what the `tracing` path exported, the level filter and the sampler still decide, and no
//! attribute points into the crate's sources. The connection answers in process, so no server
//! is needed; `tests/db_spans.rs` covers the `tracing` path against real servers.
#![cfg(feature = "redis")]

mod common;

use common::answering_redis::Answering;

use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceContextExt as _, TraceFlags, TraceId, TraceState,
};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SpanData};
use redis::Cmd;
use service_telemetry::instrument::redis::TracedConnection;
use service_telemetry::{MemoryWriter, ScopedTelemetry, Telemetry};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

fn telemetry(log_level: &str) -> (ScopedTelemetry, InMemorySpanExporter) {
    let spans = InMemorySpanExporter::default();
    let scoped = Telemetry::builder()
        .default_log_level(log_level)
        .with_writer(MemoryWriter::new())
        .with_span_exporter(spans.clone())
        .without_panic_hook()
        .set_default();
    (scoped, spans)
}

fn connection() -> TracedConnection<Answering> {
    let info = redis::IntoConnectionInfo::into_connection_info("redis://127.0.0.1:6390/")
        .expect("connection info");
    TracedConnection::with_connection_info(Answering, &info)
}

/// Runs `command` on the current thread, so the scoped subscriber sees every poll.
fn run(command: Cmd) -> redis::RedisResult<Option<String>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    runtime.block_on(async { command.query_async(&mut connection()).await })
}

fn exported(scoped: &ScopedTelemetry, spans: &InMemorySpanExporter) -> Vec<SpanData> {
    scoped.telemetry().flush().expect("flush");
    spans.get_finished_spans().expect("spans")
}

fn attribute(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.to_string())
}

fn named<'a>(spans: &'a [SpanData], name: &str) -> &'a SpanData {
    spans
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no span {name:?} in {spans:#?}"))
}

#[test]
fn a_command_is_a_client_child_of_the_current_span_with_the_conventions_attributes() {
    let (scoped, spans) = telemetry("info");
    let request = tracing::info_span!("request");
    let request_ids = request.context().span().span_context().clone();
    let value = request.in_scope(|| run(redis::cmd("GET").arg("user:42").clone()));
    assert_eq!(value.expect("GET").as_deref(), Some("value"));
    drop(request);

    let spans = exported(&scoped, &spans);
    let get = named(&spans, "GET");
    assert_eq!(get.span_kind, SpanKind::Client);
    assert_eq!(get.span_context.trace_id(), request_ids.trace_id());
    assert_eq!(get.parent_span_id, request_ids.span_id());
    assert_eq!(get.status, Status::Unset);
    assert_eq!(get.instrumentation_scope.name(), "service-telemetry");
    for (key, value) in [
        ("db.system.name", "redis"),
        ("db.operation.name", "GET"),
        ("db.query.text", "GET ?"),
        ("db.namespace", "3"),
        ("server.address", "127.0.0.1"),
        ("server.port", "6390"),
    ] {
        assert_eq!(attribute(get, key).as_deref(), Some(value), "{key}");
    }
    for absent in ["code.file.path", "code.line.number", "error.type"] {
        assert_eq!(attribute(get, absent), None, "{absent}");
    }
}

#[test]
fn a_failed_command_has_an_error_status_and_its_error_type() {
    let (scoped, spans) = telemetry("info");
    let request = tracing::info_span!("request");
    let result = request.in_scope(|| run(redis::cmd("SET").arg("k").arg("v").clone()));
    assert!(result.is_err());
    drop(request);

    let spans = exported(&scoped, &spans);
    let set = named(&spans, "SET");
    assert!(
        matches!(set.status, Status::Error { .. }),
        "{:?}",
        set.status
    );
    let error_type = attribute(set, "error.type").expect("error.type");
    assert!(!error_type.is_empty());
    assert_eq!(
        attribute(set, "db.query.text").as_deref(),
        Some("SET ? ?"),
        "values never recorded"
    );
}

#[test]
fn the_level_filter_and_the_sampler_still_decide() {
    // Instrumentation spans are info: a warn filter turns them off, as it does the request's.
    let (scoped, spans) = telemetry("warn");
    let request = tracing::info_span!("request");
    request
        .in_scope(|| run(redis::cmd("GET").arg("k").clone()))
        .expect("GET");
    drop(request);
    assert_eq!(exported(&scoped, &spans).len(), 0);
    drop(scoped);

    // Under a request whose remote parent was not sampled, the command is not exported either.
    let (scoped, spans) = telemetry("info");
    let request = tracing::info_span!("request");
    let _ = request.set_parent(opentelemetry::Context::new().with_remote_span_context(
        SpanContext::new(
            TraceId::from(0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736_u128),
            SpanId::from(0x00f0_67aa_0ba9_02b7_u64),
            TraceFlags::default(),
            true,
            TraceState::default(),
        ),
    ));
    request
        .in_scope(|| run(redis::cmd("GET").arg("k").clone()))
        .expect("GET");
    drop(request);
    assert_eq!(exported(&scoped, &spans).len(), 0);

    // And at the root, the default sampler keeps it.
    run(redis::cmd("GET").arg("k").clone()).expect("GET");
    let spans = exported(&scoped, &spans);
    assert_eq!(spans.len(), 1, "{spans:#?}");
    assert_eq!(spans[0].parent_span_id, SpanId::INVALID);
}
