//! The opt-in span layer
//! ([`TelemetryBuilder::direct_spans`](crate::TelemetryBuilder::direct_spans)): each
//! `tracing` span becomes an OpenTelemetry span when it opens, through the crate's tracer,
//! and nothing is kept per span but its context.
//!
//! What it records follows `tracing-opentelemetry` 0.34 as this crate configures it (the same
//! `otel.*` fields, the same value conversions, `code.file.path` and `code.line.number`, the end
//! time of the last exit), so the exported spans carry the same data. The differences all come
//! from deciding at creation: the sampler runs before any field is visited, and a span that
//! is not recorded (sampled out, or export off) never has its fields turned into attributes.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{Span as _, SpanBuilder, SpanKind, Status, TraceContextExt as _};
use opentelemetry::{Context, ContextGuard, Key, KeyValue, StringValue, Value};
use tracing::Subscriber;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context as LayerContext;
use tracing_subscriber::registry::LookupSpan;

use super::entered::Entered;
use crate::propagation::RandomFlagTracer;

const NAME_FIELD: &str = "otel.name";
const KIND_FIELD: &str = "otel.kind";
const STATUS_CODE_FIELD: &str = "otel.status_code";
const STATUS_DESCRIPTION_FIELD: &str = "otel.status_description";

/// The OpenTelemetry side of one `tracing` span, in its extensions.
pub(crate) struct DirectSpan {
    pub(crate) cx: Context,
    /// Whether the span is exported: one that is not (sampled out, export off) has no end
    /// time to keep and nothing to end.
    recording: bool,
    /// Nanoseconds since the Unix epoch of the last exit, 0 before the first: the span ends
    /// there, as `tracing-opentelemetry`'s do, not when the handle is finally dropped.
    exited_at: AtomicU64,
}

thread_local! {
    /// The contexts made current by entering direct spans on this thread, with whether each
    /// span is recorded, so that exiting one that is not needs no lookup.
    static ENTERED: Entered<(ContextGuard, bool)> = const { Entered::new() };
}

/// The layer. `exportable` says which spans it builds (the others stay `tracing`-only).
pub(crate) struct DirectSpans {
    tracer: RandomFlagTracer,
    exportable: fn(&tracing::Metadata<'_>) -> bool,
}

impl DirectSpans {
    pub(crate) fn new(
        tracer: RandomFlagTracer,
        exportable: fn(&tracing::Metadata<'_>) -> bool,
    ) -> Self {
        DirectSpans { tracer, exportable }
    }
}

impl<S> Layer<S> for DirectSpans
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: LayerContext<'_, S>) {
        let meta = attrs.metadata();
        if !(self.exportable)(meta) {
            return;
        }
        let Some(span) = ctx.span(id) else { return };
        let parent = parent_context(attrs, &ctx);
        let mut specials = Specials::default();
        attrs.record(&mut specials);
        let mut builder =
            SpanBuilder::from_name(specials.name.take().unwrap_or(Cow::Borrowed(meta.name())));
        builder.span_kind = specials.kind;
        let mut otel = self.tracer.start_kept(builder, &parent, |builder| {
            // Sized once for everything recorded now.
            let mut attributes = Vec::with_capacity(attrs.fields().len() + 2);
            if let Some(file) = meta.file() {
                attributes.push(KeyValue::new("code.file.path", file));
            }
            if let Some(line) = meta.line() {
                attributes.push(KeyValue::new("code.line.number", i64::from(line)));
            }
            builder.attributes = Some(attributes);
        });
        if otel.is_recording() {
            // Straight into the span still owned here: no lock, no intermediate vector.
            attrs.record(&mut Fields(|attribute| otel.set_attribute(attribute)));
            if let Some(status) = specials.status {
                otel.set_status(status);
            }
        }
        let recording = otel.is_recording();
        let cx = otel.into_context(&parent);
        // Inserted last: nothing above may run while the extensions are locked, since the SDK
        // can log, and a log line looks the current span up.
        span.extensions_mut().insert(DirectSpan {
            cx,
            recording,
            exited_at: AtomicU64::new(0),
        });
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: LayerContext<'_, S>) {
        let Some(cx) = context_in(id, &ctx) else {
            return;
        };
        let span = cx.span();
        if !span.is_recording() {
            return;
        }
        let mut specials = Specials::default();
        values.record(&mut specials);
        let mut attributes = Vec::new();
        values.record(&mut Fields(|attribute| attributes.push(attribute)));
        if let Some(name) = specials.name {
            span.update_name(name);
        }
        if let Some(status) = specials.status {
            span.set_status(status);
        }
        if !attributes.is_empty() {
            span.set_attributes(attributes);
        }
    }

    fn on_follows_from(&self, id: &Id, follows: &Id, ctx: LayerContext<'_, S>) {
        let (Some(cx), Some(follows)) = (context_in(id, &ctx), context_in(follows, &ctx)) else {
            return;
        };
        cx.span()
            .add_link(follows.span().span_context().clone(), Vec::new());
    }

    fn on_enter(&self, id: &Id, ctx: LayerContext<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let extensions = span.extensions();
        let Some(direct) = extensions.get::<DirectSpan>() else {
            return;
        };
        let (cx, recording) = (direct.cx.clone(), direct.recording);
        drop(extensions);
        super::entered::push(&ENTERED, id, (cx.attach(), recording));
    }

    fn on_exit(&self, id: &Id, ctx: LayerContext<'_, S>) {
        let Some((guard, recording)) = super::entered::take(&ENTERED, id) else {
            return;
        };
        if let Some(span) = ctx.span(id).filter(|_| recording) {
            if let Some(direct) = span.extensions().get::<DirectSpan>() {
                direct
                    .exited_at
                    .store(nanos_since_epoch(SystemTime::now()), Ordering::Relaxed);
            }
        }
        // Dropped outside every borrow: detaching may run code that logs.
        drop(guard);
    }

    fn on_close(&self, id: Id, ctx: LayerContext<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let removed = span.extensions_mut().remove::<DirectSpan>();
        let Some(DirectSpan {
            cx,
            recording: true,
            exited_at,
        }) = removed
        else {
            return;
        };
        let otel = cx.span();
        match exited_at.into_inner() {
            0 => otel.end(),
            nanos => otel.end_with_timestamp(UNIX_EPOCH + Duration::from_nanos(nanos)),
        }
    }
}

fn nanos_since_epoch(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(1, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .max(1)
}

/// The context a direct span was opened in: its explicit parent's, else (a contextual span)
/// the current one, else none (an explicit root). As `tracing-opentelemetry` with context
/// activation decides it.
fn parent_context<S>(attrs: &Attributes<'_>, ctx: &LayerContext<'_, S>) -> Context
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    if let Some(cx) = attrs.parent().and_then(|parent| context_in(parent, ctx)) {
        return cx;
    }
    if attrs.is_contextual() {
        Context::current()
    } else {
        Context::new()
    }
}

fn context_in<S>(id: &Id, ctx: &LayerContext<'_, S>) -> Option<Context>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let span = ctx.span(id)?;
    let extensions = span.extensions();
    extensions
        .get::<DirectSpan>()
        .map(|direct| direct.cx.clone())
}

/// The context of `span` when the direct layer built it, found through the registry.
pub(crate) fn context_of(span: &tracing::Span) -> Option<Context> {
    span.with_subscriber(|(id, dispatch)| {
        let registry = dispatch.downcast_ref::<tracing_subscriber::Registry>()?;
        let data = registry.span_data(id)?;
        let extensions = tracing_subscriber::registry::SpanData::extensions(&data);
        extensions
            .get::<DirectSpan>()
            .map(|direct| direct.cx.clone())
    })
    .flatten()
}

/// The `otel.*` fields that decide the span's name, kind and status.
#[derive(Default)]
struct Specials {
    name: Option<Cow<'static, str>>,
    kind: Option<SpanKind>,
    status: Option<Status>,
}

impl Specials {
    fn special(&mut self, field: &Field, value: &str) {
        match field.name() {
            NAME_FIELD => self.name = Some(Cow::Owned(value.to_owned())),
            KIND_FIELD => self.kind = span_kind(value),
            STATUS_CODE_FIELD => self.status = Some(status_code(value)),
            STATUS_DESCRIPTION_FIELD => self.status = Some(Status::error(value.to_owned())),
            _ => {}
        }
    }
}

fn is_special(name: &str) -> bool {
    matches!(
        name,
        NAME_FIELD | KIND_FIELD | STATUS_CODE_FIELD | STATUS_DESCRIPTION_FIELD
    )
}

impl Visit for Specials {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.special(field, value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if is_special(field.name()) {
            self.special(field, &format!("{value:?}"));
        }
    }
}

fn span_kind(value: &str) -> Option<SpanKind> {
    [
        ("server", SpanKind::Server),
        ("client", SpanKind::Client),
        ("producer", SpanKind::Producer),
        ("consumer", SpanKind::Consumer),
        ("internal", SpanKind::Internal),
    ]
    .into_iter()
    .find(|(name, _)| value.eq_ignore_ascii_case(name))
    .map(|(_, kind)| kind)
}

fn status_code(value: &str) -> Status {
    if value.eq_ignore_ascii_case("ok") {
        Status::Ok
    } else if value.eq_ignore_ascii_case("error") {
        Status::error("")
    } else {
        Status::Unset
    }
}

/// Every other field as an attribute, converted as `tracing-opentelemetry` converts it
/// (`u64`, `i128` and the like through `Debug`, as text; an error as its text, its source
/// chain and the `exception.*` pair), handed to the closure.
struct Fields<F>(F);

impl<F: FnMut(KeyValue)> Visit for Fields<F> {
    fn record_bool(&mut self, field: &Field, value: bool) {
        (self.0)(KeyValue::new(field.name(), value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        (self.0)(KeyValue::new(field.name(), value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        (self.0)(KeyValue::new(field.name(), value));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if !is_special(field.name()) {
            (self.0)(KeyValue::new(
                field.name(),
                Value::String(super::values::shared(value)),
            ));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if !is_special(field.name()) {
            (self.0)(KeyValue::new(
                field.name(),
                Value::String(format!("{value:?}").into()),
            ));
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        let mut chain: Vec<StringValue> = Vec::new();
        let mut source = value.source();
        while let Some(error) = source {
            chain.push(error.to_string().into());
            source = error.source();
        }
        let message = value.to_string();
        (self.0)(KeyValue::new("exception.message", message.clone()));
        (self.0)(KeyValue::new(
            "exception.stacktrace",
            Value::Array(chain.clone().into()),
        ));
        (self.0)(KeyValue::new(field.name(), Value::String(message.into())));
        (self.0)(KeyValue::new(
            Key::new(format!("{}.chain", field.name())),
            Value::Array(chain.into()),
        ));
    }
}
