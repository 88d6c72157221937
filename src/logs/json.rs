//! The JSON line layer: one object per event, span fields rendered once per span and a line's
//! span part once per innermost span, trace ids read from the active OpenTelemetry context.

use std::cell::RefCell;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceId};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_core::dispatcher::WeakDispatch;
use tracing_log::NormalizeEvent;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::{LookupSpan, SpanRef};

use crate::export::Closing;

use super::escape::{
    debug_quoted_into, display_or_debug_quoted_into, escape_into, quoted_bounded_into, quoted_into,
};
use super::time::write_timestamp;
use super::writer::LogWriter;

/// Keys the line itself uses; an event field with one of these names is written as
/// `field.<name>` so that every key in a line is unique.
const RESERVED: &[&str] = &[
    "timestamp",
    "level",
    "target",
    "trace_id",
    "span_id",
    "span",
    "spans",
];

/// The SDK's and the OTLP exporter's line-per-failed-batch errors. The export ledger counts
/// every failure and logs a few summaries a minute instead, so these would only flood the log
/// while a collector is down.
const REPLACED_SDK_EVENTS: &[&str] = &[
    "BatchSpanProcessor.ExportError",
    "BatchLogProcessor.ExportError",
    "PeriodicReader.ExportError",
    "Export.Failed.Exhausted",
    "Export.Failed.DeadlineExceeded",
    "Export.Failed.NonRetryable",
    // Replaced by the one "telemetry shutdown stopped waiting" line before the totals.
    "BatchSpanProcessor.Shutdown.Timeout",
    "BatchLogProcessor.Shutdown.Timeout",
];

fn replaced_by_ledger(meta: &tracing::Metadata<'_>) -> bool {
    meta.target().starts_with("opentelemetry") && REPLACED_SDK_EVENTS.contains(&meta.name())
}

/// Lines longer than this are not kept in the thread's reusable buffer, so one huge event
/// does not pin megabytes per thread.
const KEEP_BUFFER_BYTES: usize = 64 * 1024;

/// Formats events as JSON lines.
pub(crate) struct JsonLayer {
    writer: Arc<dyn LogWriter>,
    dispatch: OnceLock<WeakDispatch>,
    /// Longest value (message, field) in bytes; longer ones are cut with a note.
    value_limit: usize,
    /// After the export totals, the SDK's and the transports' events are not written.
    closing: Closing,
}

impl JsonLayer {
    pub(crate) fn new(writer: Arc<dyn LogWriter>, value_limit: usize, closing: Closing) -> Self {
        JsonLayer {
            writer,
            dispatch: OnceLock::new(),
            value_limit,
            closing,
        }
    }

    /// Events that are not written: the SDK's per-batch errors (the ledger reports those), and
    /// anything the SDK or a transport says once the totals are out (a processor thread
    /// abandoned at the deadline still reports its timeout; the totals are the last word).
    fn suppressed(&self, meta: &tracing::Metadata<'_>) -> bool {
        replaced_by_ledger(meta)
            || (self.closing.sdk_silenced() && crate::builder::is_internal(meta.target()))
    }
}

/// A span's fields pre-rendered as `"k":v,"k2":v2` (no braces), kept in the span's extensions,
/// and the end of the lines logged with this span innermost, made on the first such line.
struct SpanFields {
    rendered: String,
    /// `,"span":{…},"spans":[…]`, and the [`FIELDS_RECORDED`] count it was made at.
    tail: Option<(u64, String)>,
}

/// How many times any span recorded a field after it opened. A span's cached tail also holds
/// its ancestors' fields, and a span cannot reach its descendants, so one record anywhere makes
/// every cached tail stale. Records after opening are rare next to log lines.
static FIELDS_RECORDED: AtomicU64 = AtomicU64::new(0);

/// Tails longer than this are written but not kept, so deep trees of wide spans do not hold
/// their ancestors' fields once per descendant.
const KEEP_TAIL_BYTES: usize = 4 * 1024;

struct Buffers {
    line: String,
    fields: String,
}

thread_local! {
    static BUFFERS: RefCell<Buffers> = const { RefCell::new(Buffers { line: String::new(), fields: String::new() }) };
}

impl<S> Layer<S> for JsonLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_register_dispatch(&self, subscriber: &tracing::Dispatch) {
        let _ = self.dispatch.set(subscriber.downgrade());
    }

    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: Context<'_, S>,
    ) {
        let Some(span) = ctx.span(id) else { return };
        // Sized once for typical fields: growing from empty cost several reallocations, a
        // quarter of a span's life when nothing else is exported.
        let fields = attrs.metadata().fields().len();
        let mut rendered = String::with_capacity((fields * 32).min(512));
        attrs.record(&mut FieldWriter::for_span(&mut rendered, self.value_limit));
        span.extensions_mut().insert(SpanFields {
            rendered,
            tail: None,
        });
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        ctx: Context<'_, S>,
    ) {
        let Some(span) = ctx.span(id) else { return };
        let mut extensions = span.extensions_mut();
        if let Some(fields) = extensions.get_mut::<SpanFields>() {
            values.record(&mut FieldWriter::for_span(
                &mut fields.rendered,
                self.value_limit,
            ));
            FIELDS_RECORDED.fetch_add(1, Ordering::Release);
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        if self.suppressed(event.metadata()) {
            return;
        }
        let now = SystemTime::now();
        // A log call made while this thread is already formatting (a Debug impl that logs)
        // gets a fresh buffer instead of a RefCell panic.
        let reentrant = BUFFERS.with(|b| {
            let Ok(mut buffers) = b.try_borrow_mut() else {
                return true;
            };
            let Buffers { line, fields } = &mut *buffers;
            self.format_event(line, fields, event, &ctx, now);
            self.writer.write_line(line.as_bytes());
            if line.capacity() > KEEP_BUFFER_BYTES {
                *line = String::new();
            }
            if fields.capacity() > KEEP_BUFFER_BYTES {
                *fields = String::new();
            }
            false
        });
        if reentrant {
            let (mut line, mut fields) = (String::new(), String::new());
            self.format_event(&mut line, &mut fields, event, &ctx, now);
            self.writer.write_line(line.as_bytes());
        }
    }
}

impl JsonLayer {
    fn format_event<S>(
        &self,
        line: &mut String,
        fields: &mut String,
        event: &Event<'_>,
        ctx: &Context<'_, S>,
        now: SystemTime,
    ) where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        line.clear();
        fields.clear();
        // Records from the `log` crate arrive with their real target in `log.*` fields.
        let normalized = event.normalized_metadata();
        let from_log = normalized.is_some();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        line.push_str("{\"timestamp\":\"");
        write_timestamp(line, now);
        line.push_str("\",\"level\":\"");
        line.push_str(level_str(meta.level()));
        line.push_str("\",\"message\":");
        let mut visitor = FieldWriter::for_event(fields, line, self.value_limit);
        visitor.skip_log_fields = from_log;
        event.record(&mut visitor);
        if !visitor.message_written {
            line.push_str("\"\"");
        }
        line.push_str(",\"target\":");
        quoted_into(line, meta.target());
        line.push_str(fields);

        if let Some(span_context) = self.span_context(event) {
            push_ids(line, span_context.trace_id(), span_context.span_id());
        }

        if let Some(leaf) = ctx.event_span(event) {
            push_span_tail(line, &leaf);
        }
        line.push_str("}\n");
    }

    fn span_context(&self, event: &Event<'_>) -> Option<SpanContext> {
        let context = if event.is_contextual() {
            // tracing-opentelemetry activates the span's context on enter.
            opentelemetry::Context::map_current(|cx| cx.span().span_context().clone())
        } else {
            let id = event.parent()?;
            let dispatch = self.dispatch.get()?.upgrade()?;
            let cx = tracing_opentelemetry::get_otel_context(id, &dispatch)?;
            cx.span().span_context().clone()
        };
        context.is_valid().then_some(context)
    }
}

/// Appends `,"span":{…},"spans":[…]` for a line whose innermost span is `leaf`, from the
/// leaf's cache when no span recorded a field since it was made.
fn push_span_tail<S>(out: &mut String, leaf: &SpanRef<'_, S>)
where
    S: for<'a> LookupSpan<'a>,
{
    // Read before rendering: a record that lands meanwhile leaves the new tail already stale.
    let recorded = FIELDS_RECORDED.load(Ordering::Acquire);
    let mut extensions = leaf.extensions_mut();
    let Some(fields) = extensions.get_mut::<SpanFields>() else {
        drop(extensions);
        return write_span_tail(out, leaf, None);
    };
    if let Some((made_at, tail)) = &fields.tail {
        if *made_at == recorded {
            out.push_str(tail);
            return;
        }
    }
    // Sized for the leaf's part twice (`span`, and last in `spans`) and as much again for its
    // ancestors: grown from empty it would reallocate a handful of times per new span.
    let mut tail = fields.tail.take().map(|(_, tail)| tail).unwrap_or_else(|| {
        String::with_capacity(4 * (fields.rendered.len() + leaf.name().len() + 16))
    });
    tail.clear();
    write_span_tail(&mut tail, leaf, Some(&fields.rendered));
    out.push_str(&tail);
    if tail.len() <= KEEP_TAIL_BYTES {
        fields.tail = Some((recorded, tail));
    }
}

/// Renders the tail. `leaf_fields` are the leaf's own when the caller holds its extensions
/// (reading them again through the registry would wait on the caller's own lock).
fn write_span_tail<S>(out: &mut String, leaf: &SpanRef<'_, S>, leaf_fields: Option<&str>)
where
    S: for<'a> LookupSpan<'a>,
{
    out.push_str(",\"span\":");
    push_span(out, leaf, leaf_fields);
    out.push_str(",\"spans\":[");
    for (i, span) in leaf.scope().from_root().enumerate() {
        if i > 0 {
            out.push(',');
        }
        if span.id() == leaf.id() {
            push_span(out, leaf, leaf_fields);
        } else {
            let extensions = span.extensions();
            let fields = extensions.get::<SpanFields>();
            push_span(out, &span, fields.map(|f| f.rendered.as_str()));
        }
    }
    out.push(']');
}

fn push_span<S>(out: &mut String, span: &SpanRef<'_, S>, fields: Option<&str>)
where
    S: for<'a> LookupSpan<'a>,
{
    out.push_str("{\"name\":");
    quoted_into(out, span.name());
    if let Some(rendered) = fields.filter(|f| !f.is_empty()) {
        out.push(',');
        out.push_str(rendered);
    }
    out.push('}');
}

/// `,"trace_id":"…","span_id":"…"` in lower-case hex, as the ids' `Display` writes them:
/// filled into one fixed template and appended at once, without `fmt`'s padded-integer
/// formatting (a third of an event's cost when it went through it).
fn push_ids(out: &mut String, trace_id: TraceId, span_id: SpanId) {
    const TEMPLATE: &[u8; 75] =
        b",\"trace_id\":\"................................\",\"span_id\":\"................\"";
    const TRACE_AT: usize = 13;
    const SPAN_AT: usize = TRACE_AT + 32 + 13;
    let mut buf = *TEMPLATE;
    fill_hex(&mut buf[TRACE_AT..TRACE_AT + 32], &trace_id.to_bytes());
    fill_hex(&mut buf[SPAN_AT..SPAN_AT + 16], &span_id.to_bytes());
    out.push_str(std::str::from_utf8(&buf).unwrap_or_default());
}

fn fill_hex(into: &mut [u8], bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (pair, b) in into.chunks_exact_mut(2).zip(bytes) {
        pair[0] = DIGITS[usize::from(b >> 4)];
        pair[1] = DIGITS[usize::from(b & 0x0f)];
    }
}

fn level_str(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "error",
        Level::WARN => "warn",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    }
}

/// Writes fields as `,"name":value` pairs. For events, `message` goes to its own buffer so it
/// can sit near the front of the line.
struct FieldWriter<'a> {
    out: &'a mut String,
    message: Option<&'a mut String>,
    message_written: bool,
    /// Span fields are stored without a leading comma before the first one.
    leading_comma: bool,
    /// Drop the `log.*` fields of a normalized `log` record (they are in the metadata).
    skip_log_fields: bool,
    limit: usize,
}

impl<'a> FieldWriter<'a> {
    fn for_span(out: &'a mut String, limit: usize) -> Self {
        let leading_comma = !out.is_empty();
        FieldWriter {
            out,
            message: None,
            message_written: false,
            leading_comma,
            skip_log_fields: false,
            limit,
        }
    }

    fn for_event(out: &'a mut String, message: &'a mut String, limit: usize) -> Self {
        FieldWriter {
            out,
            message: Some(message),
            message_written: false,
            leading_comma: true,
            skip_log_fields: false,
            limit,
        }
    }

    /// Starts a field and returns the buffer its value goes into.
    fn key(&mut self, field: &Field) -> &mut String {
        let name = field.name();

        let is_event = self.message.is_some();
        if is_event && name == "message" && !self.message_written {
            self.message_written = true;
            if let Some(message) = self.message.as_deref_mut() {
                return message;
            }
        }
        if self.leading_comma {
            self.out.push(',');
        }
        self.leading_comma = true;
        self.out.push('"');
        if is_event && RESERVED.contains(&name) {
            self.out.push_str("field.");
        }
        escape_into(self.out, name);
        self.out.push_str("\":");
        self.out
    }
}

impl FieldWriter<'_> {
    fn skips(&self, field: &Field) -> bool {
        self.skip_log_fields && field.name().starts_with("log.")
    }
}

impl Visit for FieldWriter<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.skips(field) {
            return;
        }
        let limit = self.limit;
        debug_quoted_into(self.key(field), value, limit);
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if self.skips(field) {
            return;
        }
        let limit = self.limit;
        quoted_bounded_into(self.key(field), value, limit);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if self.skips(field) {
            return;
        }
        self.key(field).push_str(itoa::Buffer::new().format(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if self.skips(field) {
            return;
        }
        self.key(field).push_str(itoa::Buffer::new().format(value));
    }

    fn record_i128(&mut self, field: &Field, value: i128) {
        if self.skips(field) {
            return;
        }
        self.key(field).push_str(itoa::Buffer::new().format(value));
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        if self.skips(field) {
            return;
        }
        self.key(field).push_str(itoa::Buffer::new().format(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        if self.skips(field) {
            return;
        }
        let out = self.key(field);
        if value.is_finite() {
            out.push_str(ryu::Buffer::new().format_finite(value));
        } else {
            // JSON has no NaN or infinity.
            quoted_into(out, &value.to_string());
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        if self.skips(field) {
            return;
        }
        self.key(field)
            .push_str(if value { "true" } else { "false" });
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        if self.skips(field) {
            return;
        }
        let limit = self.limit;
        display_or_debug_quoted_into(
            self.key(field),
            format_args!("{}", ErrorChain(value)),
            limit,
        );
    }
}

/// An error followed by its sources, `outer: cause: root`.
struct ErrorChain<'a>(&'a (dyn std::error::Error + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
