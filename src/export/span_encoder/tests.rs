//! The encoder against the reference: opentelemetry-proto's conversion, encoded by prost, is
//! what opentelemetry-otlp sends. The two must agree byte for byte.

use std::borrow::Cow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{
    Event, Link, SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{Array, InstrumentationScope, KeyValue, StringValue, Value};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
use proptest::prelude::*;
use prost::Message;

use super::{EncodedResource, encode_request, varint_len};

fn reference(resource: &Resource, spans: &[SpanData]) -> Vec<u8> {
    let resource = ResourceAttributesWithSchema::from(resource);
    ExportTraceServiceRequest {
        resource_spans: group_spans_by_resource_and_scope(spans.to_vec(), &resource),
    }
    .encode_to_vec()
}

fn ours(resource: &Resource, spans: &[SpanData]) -> Vec<u8> {
    let mut buf = Vec::new();
    encode_request(&mut buf, &EncodedResource::new(resource), spans);
    buf
}

fn assert_same(resource: &Resource, spans: &[SpanData]) {
    let (ours, reference) = (ours(resource, spans), reference(resource, spans));
    if ours != reference {
        let decoded = ExportTraceServiceRequest::decode(ours.as_slice());
        let expected = ExportTraceServiceRequest::decode(reference.as_slice());
        panic!(
            "encodings differ ({} vs {} bytes)\nours: {decoded:#?}\nreference: {expected:#?}",
            ours.len(),
            reference.len()
        );
    }
}

fn context(
    trace: u128,
    span: u64,
    flags: TraceFlags,
    remote: bool,
    state: TraceState,
) -> SpanContext {
    SpanContext::new(
        TraceId::from(trace),
        SpanId::from(span),
        flags,
        remote,
        state,
    )
}

fn at(nanos: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(nanos)
}

fn span(name: &'static str, scope: &InstrumentationScope) -> SpanData {
    SpanData {
        span_context: context(
            0x4bf92f3577b34da6a3ce929d0e0e4736,
            0x00f067aa0ba902b7,
            TraceFlags::SAMPLED,
            false,
            TraceState::NONE,
        ),
        parent_span_id: SpanId::INVALID,
        parent_span_is_remote: false,
        span_kind: SpanKind::Internal,
        name: Cow::Borrowed(name),
        start_time: at(1_700_000_000_000_000_000),
        end_time: at(1_700_000_000_000_250_000),
        attributes: Vec::new(),
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status: Status::Unset,
        instrumentation_scope: scope.clone(),
    }
}

/// The traces configuration for `protocol` and `endpoint` with `extra` variables, from these
/// alone (no process environment); the exporters' tests build from it.
pub(crate) fn traces_config(
    protocol: &str,
    endpoint: &str,
    extra: &[(&str, &str)],
) -> crate::config::SignalConfig {
    let mut vars = vec![
        ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", endpoint),
    ];
    vars.extend_from_slice(extra);
    let (config, warnings) = crate::config::Config::from_lookup(|name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_owned())
    });
    assert!(warnings.is_empty(), "{warnings:?}");
    config.traces
}

/// Three plain server spans of one scope: the batch the exporters' tests send.
pub(crate) fn three_spans() -> Vec<SpanData> {
    let scope = InstrumentationScope::builder("test")
        .with_version("1")
        .build();
    (0..3_u64)
        .map(|n| {
            let mut s = span("GET /", &scope);
            s.span_context = context(0xabc, n + 1, TraceFlags::SAMPLED, false, TraceState::NONE);
            s.span_kind = SpanKind::Server;
            s.attributes = vec![KeyValue::new("n", n as i64)];
            s
        })
        .collect()
}

fn every_value() -> Vec<KeyValue> {
    vec![
        KeyValue::new("bool.true", true),
        KeyValue::new("bool.false", false),
        KeyValue::new("int.zero", 0_i64),
        KeyValue::new("int.negative", -42_i64),
        KeyValue::new("int.max", i64::MAX),
        KeyValue::new("int.min", i64::MIN),
        KeyValue::new("double.zero", 0.0_f64),
        KeyValue::new("double", -1.5e300_f64),
        KeyValue::new("string.empty", ""),
        KeyValue::new("string", "GET /users/{id} – ünïcode"),
        KeyValue::new("string.long", "x".repeat(300)),
        KeyValue::new("", "empty key"),
        KeyValue::new("array.bool", Value::Array(Array::Bool(vec![true, false]))),
        KeyValue::new("array.int", Value::Array(Array::I64(vec![0, -1, 1 << 40]))),
        KeyValue::new("array.double", Value::Array(Array::F64(vec![0.0, 2.5]))),
        KeyValue::new(
            "array.string",
            Value::Array(Array::String(vec![
                StringValue::from(""),
                StringValue::from("b"),
            ])),
        ),
        KeyValue::new("array.empty", Value::Array(Array::I64(Vec::new()))),
    ]
}

#[test]
fn a_batch_with_every_field_and_value_encodes_as_the_reference_does() {
    let resource = Resource::builder_empty()
        .with_attributes([
            KeyValue::new("service.name", "checkout"),
            KeyValue::new(
                "service.instance.id",
                "627cc493-f310-47de-96bd-71410b7dec09",
            ),
            KeyValue::new("process.pid", 4242_i64),
        ])
        .with_schema_url(
            Vec::<KeyValue>::new(),
            "https://opentelemetry.io/schemas/1.44.0",
        )
        .build();
    let crate_scope = InstrumentationScope::builder("service-telemetry")
        .with_version("0.1.0")
        .with_schema_url("https://opentelemetry.io/schemas/1.44.0")
        .build();
    let other_scope = InstrumentationScope::builder("other")
        .with_attributes([KeyValue::new("scope.attr", 7_i64)])
        .build();
    let bare_scope = InstrumentationScope::builder("").build();

    let mut full = span("GET /users/{id}", &crate_scope);
    full.span_context = context(
        u128::MAX,
        u64::MAX,
        TraceFlags::SAMPLED,
        false,
        TraceState::from_key_value([("vendor", "value"), ("other", "x")]).expect("trace state"),
    );
    full.parent_span_id = SpanId::from(0x1122334455667788);
    full.parent_span_is_remote = true;
    full.span_kind = SpanKind::Server;
    full.attributes = every_value();
    full.dropped_attributes_count = 3;
    full.events.events = vec![
        Event::new("exception", at(1_700_000_000_000_100_000), every_value(), 2),
        Event::new("", UNIX_EPOCH, Vec::new(), 0),
    ];
    full.events.dropped_count = 5;
    full.links.links = vec![
        Link::new(
            context(7, 8, TraceFlags::NOT_SAMPLED, true, TraceState::NONE),
            vec![KeyValue::new("link.kind", "follows")],
            1,
        ),
        Link::new(
            context(
                9,
                10,
                TraceFlags::SAMPLED,
                false,
                TraceState::from_key_value([("k", "v")]).expect("trace state"),
            ),
            Vec::new(),
            0,
        ),
    ];
    full.links.dropped_count = 4;
    full.status = Status::error("boom: connection refused");

    let mut client = span("redis GET", &other_scope);
    client.span_kind = SpanKind::Client;
    client.status = Status::Ok;
    client.parent_span_id = SpanId::from(0x00f067aa0ba902b7);
    let mut producer = span("", &bare_scope);
    producer.span_kind = SpanKind::Producer;
    producer.status = Status::error("");
    producer.start_time = UNIX_EPOCH - Duration::from_secs(1);
    producer.end_time = UNIX_EPOCH;
    let mut consumer = span("consume", &crate_scope);
    consumer.span_kind = SpanKind::Consumer;
    consumer.span_context = context(1, 2, TraceFlags::default(), true, TraceState::NONE);

    // Scopes interleaved, so grouping (and its order of first appearance) is exercised.
    let batch = [full, client.clone(), producer, consumer, client];
    assert_same(&resource, &batch);
    assert_same(&Resource::builder_empty().build(), &batch);
    assert_same(&resource, &[]);
}

#[test]
fn bodies_around_every_length_prefix_width_encode_as_the_reference_does() {
    let scope = InstrumentationScope::builder("widths").build();
    let resource = Resource::builder_empty().build();
    // Value lengths that put the attribute, the span and the scope's body on either side of
    // 128 and 16 384 bytes, where a length prefix grows by a byte.
    for len in [
        0, 1, 100, 110, 120, 127, 128, 129, 16_300, 16_383, 16_384, 16_500, 2_100_000,
    ] {
        let mut s = span("w", &scope);
        s.attributes = vec![KeyValue::new("v", "y".repeat(len))];
        assert_same(&resource, &[s]);
    }
    for value in [
        0_u64,
        1,
        127,
        128,
        16_383,
        16_384,
        u64::from(u32::MAX),
        u64::MAX,
    ] {
        let mut bytes = Vec::new();
        super::varint(&mut bytes, value);
        assert_eq!(bytes.len(), varint_len(value), "{value}");
    }
}

#[test]
fn a_span_from_the_sdk_encodes_as_the_reference_does() {
    use opentelemetry::trace::{Span as _, Tracer as _, TracerProvider as _};
    let exporter = opentelemetry_sdk::trace::InMemorySpanExporter::default();
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let tracer = provider.tracer_with_scope(
        InstrumentationScope::builder("sdk")
            .with_version("1")
            .build(),
    );
    let mut parent = tracer.start("parent");
    parent.set_attribute(KeyValue::new("http.request.method", "GET"));
    parent.add_event("started", vec![KeyValue::new("n", 1_i64)]);
    parent.end();
    let spans = exporter.get_finished_spans().expect("finished spans");
    assert_eq!(spans.len(), 1);
    let resource = Resource::builder().build();
    assert_same(&resource, &spans);
}

fn any_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::I64),
        any::<f64>()
            .prop_filter("NaN is unequal to itself", |f| !f.is_nan())
            .prop_map(Value::F64),
        ".{0,200}".prop_map(|s| Value::String(s.into())),
        proptest::collection::vec(any::<i64>(), 0..20).prop_map(|v| Value::Array(Array::I64(v))),
        proptest::collection::vec(".{0,20}", 0..20).prop_map(|v| Value::Array(Array::String(
            v.into_iter().map(StringValue::from).collect()
        ))),
    ]
}

proptest! {
    #[test]
    fn any_attributes_encode_as_the_reference_does(
        attributes in proptest::collection::vec((".{0,30}", any_value()), 0..40),
        name in ".{0,80}",
        times in (any::<u64>(), any::<u64>()),
        ids in (any::<u128>(), any::<u64>(), any::<u64>()),
        flags in any::<u8>(),
    ) {
        let scope = InstrumentationScope::builder("prop").build();
        let mut s = span("p", &scope);
        s.name = Cow::Owned(name);
        s.attributes = attributes.into_iter().map(|(k, v)| KeyValue::new(k, v)).collect();
        s.start_time = at(times.0);
        s.end_time = at(times.1);
        s.span_context = context(ids.0, ids.1, TraceFlags::new(flags), false, TraceState::NONE);
        s.parent_span_id = SpanId::from(ids.2);
        let resource = Resource::builder_empty().build();
        prop_assert_eq!(ours(&resource, &[s.clone()]), reference(&resource, &[s]));
    }
}
