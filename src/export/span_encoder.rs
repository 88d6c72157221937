//! OTLP's `ExportTraceServiceRequest`, written as protobuf straight from the SDK's span data.
//!
//! opentelemetry-otlp first converts every span into the generated message types (a `String`
//! per name, key and string value, a `Vec` per id and attribute list) and then encodes those;
//! on the export thread that conversion and its frees cost more than the socket. Writing the
//! wire format from `&SpanData` into one buffer gives the same message with no allocation per
//! span. The output decodes to exactly what opentelemetry-proto's conversion builds (the
//! tests check field by field), including its choices: scopes in order of first appearance,
//! a status on every span, the span flags' "has is-remote" bit.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status, TraceState};
use opentelemetry::{Array, InstrumentationScope, KeyValue, Value};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::SpanData;

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const FIXED32: u8 = 5;

/// `SpanFlags.SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK` and `..._IS_REMOTE_MASK` of trace.proto.
const HAS_IS_REMOTE: u32 = 0x100;
const IS_REMOTE: u32 = 0x200;

/// A resource in wire form, encoded once when the exporter learns it.
#[derive(Debug, Default, Clone)]
pub(crate) struct EncodedResource {
    /// The body of the `Resource` message.
    message: Vec<u8>,
    schema_url: String,
}

impl EncodedResource {
    pub(crate) fn new(resource: &Resource) -> Self {
        let mut message = Vec::new();
        for (key, value) in resource.iter() {
            nested(&mut message, 1, |buf| key_value(buf, key.as_str(), value));
        }
        EncodedResource {
            message,
            schema_url: resource.schema_url().unwrap_or_default().to_owned(),
        }
    }
}

/// What both span exporters keep between batches: the resource in wire form, the last request's
/// size (so the next buffer is allocated once), and whether they have been shut down.
#[derive(Debug, Default)]
pub(crate) struct SpanRequests {
    resource: EncodedResource,
    last_len: AtomicUsize,
    shut_down: AtomicBool,
}

impl SpanRequests {
    /// The request body for `batch`; an error once shut down.
    pub(crate) fn encode(&self, batch: &[SpanData]) -> Result<Vec<u8>, OTelSdkError> {
        if self.shut_down.load(Ordering::Acquire) {
            return Err(OTelSdkError::AlreadyShutdown);
        }
        let mut body = Vec::with_capacity(self.last_len.load(Ordering::Relaxed));
        encode_request(&mut body, &self.resource, batch);
        self.last_len.store(body.len(), Ordering::Relaxed);
        Ok(body)
    }

    pub(crate) fn shut_down(&self) -> OTelSdkResult {
        if self.shut_down.swap(true, Ordering::AcqRel) {
            return Err(OTelSdkError::AlreadyShutdown);
        }
        Ok(())
    }

    pub(crate) fn set_resource(&mut self, resource: &Resource) {
        self.resource = EncodedResource::new(resource);
    }
}

/// Appends the request for `spans` (one `ResourceSpans`, one `ScopeSpans` per distinct scope)
/// to `buf`.
pub(crate) fn encode_request(buf: &mut Vec<u8>, resource: &EncodedResource, spans: &[SpanData]) {
    // The first span of each scope, in order of first appearance; batches hold a few scopes.
    let mut scopes: Vec<&InstrumentationScope> = Vec::new();
    for span in spans {
        if !scopes
            .iter()
            .any(|s| same_scope(s, &span.instrumentation_scope))
        {
            scopes.push(&span.instrumentation_scope);
        }
    }
    nested(buf, 1, |buf| {
        nested(buf, 1, |buf| buf.extend_from_slice(&resource.message));
        for scope in &scopes {
            nested(buf, 2, |buf| {
                nested(buf, 1, |buf| instrumentation_scope(buf, scope));
                for span in spans {
                    if same_scope(scope, &span.instrumentation_scope) {
                        nested(buf, 2, |buf| encode_span(buf, span));
                    }
                }
                string(buf, 3, scope.schema_url().unwrap_or_default());
            });
        }
        string(buf, 3, &resource.schema_url);
    });
}

fn same_scope(a: &InstrumentationScope, b: &InstrumentationScope) -> bool {
    std::ptr::eq(a, b) || a == b
}

fn instrumentation_scope(buf: &mut Vec<u8>, scope: &InstrumentationScope) {
    string(buf, 1, scope.name());
    string(buf, 2, scope.version().unwrap_or_default());
    attributes(buf, 3, scope.attributes());
}

fn encode_span(buf: &mut Vec<u8>, span: &SpanData) {
    let context = &span.span_context;
    bytes(buf, 1, &context.trace_id().to_bytes());
    bytes(buf, 2, &context.span_id().to_bytes());
    trace_state(buf, 3, context.trace_state());
    if span.parent_span_id != SpanId::INVALID {
        bytes(buf, 4, &span.parent_span_id.to_bytes());
    }
    string(buf, 5, &span.name);
    uint(buf, 6, kind(&span.span_kind));
    fixed64(buf, 7, unix_nanos(span.start_time));
    fixed64(buf, 8, unix_nanos(span.end_time));
    attributes(buf, 9, &span.attributes);
    uint(buf, 10, span.dropped_attributes_count.into());
    for event in span.events.iter() {
        nested(buf, 11, |buf| {
            fixed64(buf, 1, unix_nanos(event.timestamp));
            string(buf, 2, &event.name);
            attributes(buf, 3, &event.attributes);
            uint(buf, 4, event.dropped_attributes_count.into());
        });
    }
    uint(buf, 12, span.events.dropped_count.into());
    for link in span.links.iter() {
        nested(buf, 13, |buf| {
            let linked = &link.span_context;
            bytes(buf, 1, &linked.trace_id().to_bytes());
            bytes(buf, 2, &linked.span_id().to_bytes());
            trace_state(buf, 3, linked.trace_state());
            attributes(buf, 4, &link.attributes);
            uint(buf, 5, link.dropped_attributes_count.into());
            fixed32(buf, 6, flags(linked, linked.is_remote()));
        });
    }
    uint(buf, 14, span.links.dropped_count.into());
    nested(buf, 15, |buf| match &span.status {
        Status::Error { description } => {
            string(buf, 2, description);
            uint(buf, 3, 2);
        }
        Status::Ok => uint(buf, 3, 1),
        Status::Unset => {}
    });
    fixed32(buf, 16, flags(context, span.parent_span_is_remote));
}

fn kind(kind: &SpanKind) -> u64 {
    match kind {
        SpanKind::Internal => 1,
        SpanKind::Server => 2,
        SpanKind::Client => 3,
        SpanKind::Producer => 4,
        SpanKind::Consumer => 5,
    }
}

fn flags(context: &SpanContext, remote: bool) -> u32 {
    let mut flags = u32::from(context.trace_flags().to_u8()) | HAS_IS_REMOTE;
    if remote {
        flags |= IS_REMOTE;
    }
    flags
}

/// Before the epoch counts as 0, as in opentelemetry-proto.
fn unix_nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn trace_state(buf: &mut Vec<u8>, field: u32, state: &TraceState) {
    // Most spans carry none; `header()` would allocate an empty string for each.
    if *state != TraceState::NONE {
        string(buf, field, &state.header());
    }
}

fn attributes<'a>(
    buf: &mut Vec<u8>,
    field: u32,
    attributes: impl IntoIterator<Item = &'a KeyValue>,
) {
    for attribute in attributes {
        nested(buf, field, |buf| {
            key_value(buf, attribute.key.as_str(), &attribute.value)
        });
    }
}

fn key_value(buf: &mut Vec<u8>, key: &str, value: &Value) {
    string(buf, 1, key);
    nested(buf, 2, |buf| any_value(buf, value));
}

/// The body of an `AnyValue`. Its `oneof` is written even when the value is the default
/// (`false`, `0`, `""`): presence is what tells the receiver the type.
fn any_value(buf: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Bool(v) => {
            tag(buf, 2, VARINT);
            varint(buf, u64::from(*v));
        }
        Value::I64(v) => {
            tag(buf, 3, VARINT);
            varint(buf, *v as u64);
        }
        Value::F64(v) => {
            tag(buf, 4, FIXED64);
            buf.extend_from_slice(&v.to_le_bytes());
        }
        Value::String(v) => {
            tag(buf, 1, LEN);
            length_delimited(buf, v.as_str().as_bytes());
        }
        Value::Array(array) => nested(buf, 5, |buf| match array {
            Array::Bool(values) => array_values(buf, values, |v| Value::Bool(*v)),
            Array::I64(values) => array_values(buf, values, |v| Value::I64(*v)),
            Array::F64(values) => array_values(buf, values, |v| Value::F64(*v)),
            Array::String(values) => {
                for v in values {
                    nested(buf, 1, |buf| {
                        tag(buf, 1, LEN);
                        length_delimited(buf, v.as_str().as_bytes());
                    });
                }
            }
            // A kind of array added upstream after this was written: sent as an empty array
            // rather than guessed at.
            _ => {}
        }),
        // Likewise for a kind of value added upstream: an `AnyValue` with nothing set.
        _ => {}
    }
}

fn array_values<T>(buf: &mut Vec<u8>, values: &[T], to_value: impl Fn(&T) -> Value) {
    for v in values {
        nested(buf, 1, |buf| any_value(buf, &to_value(v)));
    }
}

fn tag(buf: &mut Vec<u8>, field: u32, wire_type: u8) {
    varint(buf, u64::from(field << 3 | u32::from(wire_type)));
}

fn varint(buf: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        buf.push((value as u8) | 0x80);
        value >>= 7;
    }
    buf.push(value as u8);
}

fn varint_len(value: u64) -> usize {
    // Seven bits a byte; zero still takes one.
    (64 - (value | 1).leading_zeros() as usize).div_ceil(7)
}

fn length_delimited(buf: &mut Vec<u8>, value: &[u8]) {
    varint(buf, value.len() as u64);
    buf.extend_from_slice(value);
}

/// A proto3 scalar: left out when empty or zero, as every encoder does.
fn string(buf: &mut Vec<u8>, field: u32, value: &str) {
    bytes(buf, field, value.as_bytes());
}

fn bytes(buf: &mut Vec<u8>, field: u32, value: &[u8]) {
    if !value.is_empty() {
        tag(buf, field, LEN);
        length_delimited(buf, value);
    }
}

fn uint(buf: &mut Vec<u8>, field: u32, value: u64) {
    if value != 0 {
        tag(buf, field, VARINT);
        varint(buf, value);
    }
}

fn fixed64(buf: &mut Vec<u8>, field: u32, value: u64) {
    if value != 0 {
        tag(buf, field, FIXED64);
        buf.extend_from_slice(&value.to_le_bytes());
    }
}

fn fixed32(buf: &mut Vec<u8>, field: u32, value: u32) {
    if value != 0 {
        tag(buf, field, FIXED32);
        buf.extend_from_slice(&value.to_le_bytes());
    }
}

/// An embedded message, always written (even empty). Its length is known only once the body
/// is written: one byte is reserved, enough for bodies under 128 bytes, and a longer body is
/// moved up to make room.
fn nested(buf: &mut Vec<u8>, field: u32, body: impl FnOnce(&mut Vec<u8>)) {
    tag(buf, field, LEN);
    let at = buf.len();
    buf.push(0);
    body(buf);
    let len = buf.len() - at - 1;
    let width = varint_len(len as u64);
    if width > 1 {
        let end = buf.len();
        buf.resize(end + width - 1, 0);
        buf.copy_within(at + 1..end, at + width);
    }
    let mut value = len as u64;
    for slot in &mut buf[at..at + width] {
        *slot = (value as u8 & 0x7f) | if value >= 0x80 { 0x80 } else { 0 };
        value >>= 7;
    }
}

#[cfg(test)]
pub(crate) mod tests;
