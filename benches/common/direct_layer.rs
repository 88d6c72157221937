//! A prototype, not shipped: a `tracing` layer that builds OpenTelemetry spans directly with
//! the SDK tracer (no `SpanBuilder` kept per span, no extra attributes, the sampler decides
//! at creation), to measure the design proposed where tracing-opentelemetry's layer cannot
//! meet the span targets. It lacks what a real one needs (`OpenTelemetrySpanExt`
//! compatibility, `otel.*` special fields, events, links, status from errors).

use std::cell::RefCell;

use opentelemetry::trace::{TraceContextExt as _, Tracer as _};
use opentelemetry::{Context, ContextGuard, KeyValue};
use tracing::Subscriber;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context as LayerContext;
use tracing_subscriber::registry::LookupSpan;

pub struct DirectLayer {
    pub tracer: opentelemetry_sdk::trace::SdkTracer,
}

struct OtelContext(Context);

thread_local! {
    static GUARDS: RefCell<Vec<ContextGuard>> = const { RefCell::new(Vec::new()) };
}

struct Attrs(Vec<KeyValue>);

impl Visit for Attrs {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push(KeyValue::new(field.name(), value.to_owned()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.push(KeyValue::new(field.name(), value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .push(KeyValue::new(field.name(), format!("{value:?}")));
    }
}

impl<S> Layer<S> for DirectLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: LayerContext<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let parent = attrs
            .parent()
            .and_then(|p| ctx.span(p))
            .or_else(|| {
                attrs
                    .is_contextual()
                    .then(|| ctx.lookup_current())
                    .flatten()
            })
            .and_then(|p| p.extensions().get::<OtelContext>().map(|c| c.0.clone()))
            .unwrap_or_else(Context::current);
        let mut fields = Attrs(Vec::with_capacity(attrs.fields().len()));
        attrs.record(&mut fields);
        let otel = self
            .tracer
            .span_builder(attrs.metadata().name())
            .with_attributes(fields.0)
            .start_with_context(&self.tracer, &parent);
        span.extensions_mut()
            .insert(OtelContext(parent.with_span(otel)));
    }

    fn on_enter(&self, id: &Id, ctx: LayerContext<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        if let Some(cx) = span.extensions().get::<OtelContext>() {
            let guard = cx.0.clone().attach();
            GUARDS.with(|g| g.borrow_mut().push(guard));
        }
    }

    fn on_exit(&self, _id: &Id, _ctx: LayerContext<'_, S>) {
        GUARDS.with(|g| drop(g.borrow_mut().pop()));
    }

    fn on_close(&self, id: Id, ctx: LayerContext<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        if let Some(cx) = span.extensions_mut().remove::<OtelContext>() {
            cx.0.span().end();
        }
    }
}
