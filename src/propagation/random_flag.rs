//! W3C Trace Context Level 2, 3.2.2.5.2 "Random Trace ID Flag": a participant that generates a
//! trace id whose rightmost 7 bytes are random SHOULD set the `random` flag (bit 1), and a
//! child keeps the flag its parent had, since the trace id is the parent's.
//!
//! The SDK's tracer (0.33) never sets the flag on a root and clears every flag but `sampled`
//! on a span its sampler drops, so a sampled-out request would send the flag downstream
//! only by luck. [`RandomFlagTracer`] wraps it for the `tracing` bridge: the span context the
//! bridge, the propagators and every child see carries the flag as the specification says.
//! The SDK's `RandomIdGenerator` draws all 16 bytes at random, and the crate installs no other
//! generator, so every local root qualifies. The exported copy of a root gets the flag in
//! [`mark_random_root`] (the recorded span keeps the SDK's own context).

use std::borrow::Cow;
use std::time::SystemTime;

use opentelemetry::trace::{
    Span as _, SpanBuilder, SpanContext, Status, TraceContextExt as _, TraceFlags, Tracer,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{SdkTracer, SpanData};

/// Bit 1 of `trace-flags` (Level 2).
pub(crate) const RANDOM: u8 = 0x02;

/// The SDK's tracer, with the `random` flag set on the span contexts it hands out.
#[derive(Clone, Debug)]
pub(crate) struct RandomFlagTracer(SdkTracer);

impl RandomFlagTracer {
    pub(crate) fn new(tracer: SdkTracer) -> Self {
        RandomFlagTracer(tracer)
    }
}

/// The tracer behind the current subscriber's spans, found through the dispatcher, for the
/// spans the crate builds with the OpenTelemetry API (gRPC message spans): under
/// `TelemetryBuilder::set_default` the global tracer is not the one the subscriber exports to.
#[cfg_attr(not(feature = "tonic"), allow(dead_code))]
pub(crate) struct CurrentTracer(pub(crate) RandomFlagTracer);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for CurrentTracer {}

/// The current subscriber's tracer, when the crate built that subscriber.
#[cfg(feature = "tonic")]
pub(crate) fn current_tracer() -> Option<RandomFlagTracer> {
    tracing::dispatcher::get_default(|dispatch| {
        dispatch
            .downcast_ref::<CurrentTracer>()
            .map(|current| current.0.clone())
    })
}

/// An SDK span whose visible context may carry the flags the SDK did not set.
#[derive(Debug)]
pub(crate) struct RandomFlagSpan {
    inner: opentelemetry_sdk::trace::Span,
    /// `Some` only when the flags differ from the SDK's own.
    context: Option<SpanContext>,
}

impl Tracer for RandomFlagTracer {
    type Span = RandomFlagSpan;

    fn build_with_context(&self, builder: SpanBuilder, parent_cx: &Context) -> RandomFlagSpan {
        let parent = parent_cx.span();
        let parent = parent.span_context();
        let random = if parent.is_valid() {
            parent.trace_flags().to_u8() & RANDOM != 0
        } else {
            true
        };
        let inner = self.0.build_with_context(builder, parent_cx);
        let context = with_flags(inner.span_context(), random);
        RandomFlagSpan { inner, context }
    }
}

/// The context with `random` as given and `sampled` as the SDK decided; `None` when that is
/// what the SDK produced already, or when the span has no valid context (telemetry suppressed,
/// provider shut down).
fn with_flags(context: &SpanContext, random: bool) -> Option<SpanContext> {
    if !context.is_valid() {
        return None;
    }
    let sampled = context.trace_flags().to_u8() & TraceFlags::SAMPLED.to_u8();
    let flags = TraceFlags::new(sampled | if random { RANDOM } else { 0 });
    (flags != context.trace_flags()).then(|| {
        SpanContext::new(
            context.trace_id(),
            context.span_id(),
            flags,
            context.is_remote(),
            context.trace_state().clone(),
        )
    })
}

/// Sets the flag on an exported local root (no parent at all: a span with a remote parent has
/// its parent's id), so the exported `flags` agree with what was propagated.
pub(crate) fn mark_random_root(span: &mut SpanData) {
    if span.parent_span_id == opentelemetry::trace::SpanId::INVALID {
        if let Some(context) = with_flags(&span.span_context, true) {
            span.span_context = context;
        }
    }
}

impl opentelemetry::trace::Span for RandomFlagSpan {
    fn add_event_with_timestamp<T>(
        &mut self,
        name: T,
        timestamp: SystemTime,
        attributes: Vec<KeyValue>,
    ) where
        T: Into<Cow<'static, str>>,
    {
        self.inner
            .add_event_with_timestamp(name, timestamp, attributes);
    }

    fn span_context(&self) -> &SpanContext {
        self.context
            .as_ref()
            .unwrap_or_else(|| self.inner.span_context())
    }

    fn is_recording(&self) -> bool {
        self.inner.is_recording()
    }

    fn set_attribute(&mut self, attribute: KeyValue) {
        self.inner.set_attribute(attribute);
    }

    fn set_attributes(&mut self, attributes: impl IntoIterator<Item = KeyValue>) {
        self.inner.set_attributes(attributes);
    }

    fn set_status(&mut self, status: Status) {
        self.inner.set_status(status);
    }

    fn update_name<T>(&mut self, new_name: T)
    where
        T: Into<Cow<'static, str>>,
    {
        self.inner.update_name(new_name);
    }

    fn add_link(&mut self, span_context: SpanContext, attributes: Vec<KeyValue>) {
        self.inner.add_link(span_context, attributes);
    }

    fn end_with_timestamp(&mut self, timestamp: SystemTime) {
        self.inner.end_with_timestamp(timestamp);
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::{SpanId, TraceId, TracerProvider as _};
    use opentelemetry_sdk::trace::{InMemorySpanExporter, Sampler, SdkTracerProvider};

    use super::*;

    fn tracer(sampler: Sampler) -> (RandomFlagTracer, InMemorySpanExporter) {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_sampler(sampler)
            .with_simple_exporter(exporter.clone())
            .build();
        (RandomFlagTracer::new(provider.tracer("test")), exporter)
    }

    fn remote(flags: u8) -> Context {
        Context::new().with_remote_span_context(SpanContext::new(
            TraceId::from(0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736),
            SpanId::from(0x00f0_67aa_0ba9_02b7),
            TraceFlags::new(flags),
            true,
            Default::default(),
        ))
    }

    fn flags_of(span: &RandomFlagSpan) -> u8 {
        span.span_context().trace_flags().to_u8()
    }

    #[test]
    fn a_local_root_is_random_sampled_or_not() {
        let (on, _) = tracer(Sampler::AlwaysOn);
        let root = on.build_with_context(SpanBuilder::from_name("root"), &Context::new());
        assert_eq!(flags_of(&root), RANDOM | 1);
        let (off, _) = tracer(Sampler::AlwaysOff);
        let root = off.build_with_context(SpanBuilder::from_name("root"), &Context::new());
        assert_eq!(flags_of(&root), RANDOM, "dropped, still random");
        assert!(root.span_context().is_valid());
    }

    #[test]
    fn a_child_keeps_its_parents_random_flag_and_takes_the_samplers_decision() {
        let parent_based = || Sampler::ParentBased(Box::new(Sampler::AlwaysOn));
        for (parent_flags, want) in [(0x03, 0x03), (0x01, 0x01), (0x02, 0x02), (0x00, 0x00)] {
            let (tracer, _) = tracer(parent_based());
            let span =
                tracer.build_with_context(SpanBuilder::from_name("child"), &remote(parent_flags));
            assert_eq!(flags_of(&span), want, "parent {parent_flags:#04x}");
            assert_eq!(
                span.span_context().trace_id(),
                TraceId::from(0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736)
            );
        }
        // A local child of a local root, through the context the bridge builds.
        let (tracer, _) = tracer(parent_based());
        let root = tracer.build_with_context(SpanBuilder::from_name("root"), &Context::new());
        let cx = Context::new().with_span(root);
        let child = tracer.build_with_context(SpanBuilder::from_name("child"), &cx);
        assert_eq!(flags_of(&child), RANDOM | 1);
    }

    #[test]
    fn the_exported_root_carries_the_flag_and_a_child_of_a_remote_parent_its_parents() {
        let (tracer, exporter) = tracer(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)));
        let mut root = tracer.build_with_context(SpanBuilder::from_name("root"), &Context::new());
        root.end();
        let mut child = tracer.build_with_context(SpanBuilder::from_name("child"), &remote(0x01));
        child.end();
        let mut spans = exporter.get_finished_spans().expect("spans");
        for span in &mut spans {
            mark_random_root(span);
        }
        let flags = |name: &str| {
            spans
                .iter()
                .find(|s| s.name == name)
                .map(|s| s.span_context.trace_flags().to_u8())
        };
        assert_eq!(flags("root"), Some(RANDOM | 1));
        assert_eq!(flags("child"), Some(0x01));
    }
}
