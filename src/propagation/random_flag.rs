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
//! [`mark_random_root`] (the recorded span keeps the SDK's own context). With export off it
//! builds no SDK span at all and mints the context as the SDK would ([`RandomFlagTracer::minting`]).
//!
//! With export on, the tracer decides first too: the sampler runs on ids drawn here, a span it
//! drops is only minted, and the SDK builds a kept one with those same ids ([`DecidedIds`],
//! the provider's id generator), so it reaches the same decision.

use std::borrow::Cow;
use std::cell::Cell;
use std::sync::Arc;
use std::time::SystemTime;

use opentelemetry::trace::{
    Span as _, SpanBuilder, SpanContext, SpanId, SpanKind, Status, TraceContextExt as _,
    TraceFlags, TraceId, Tracer,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{
    IdGenerator, RandomIdGenerator, Sampler, SamplingDecision, SdkTracer, ShouldSample as _,
    SpanData,
};

/// Bit 1 of `trace-flags` (Level 2).
pub(crate) const RANDOM: u8 = 0x02;

/// The SDK's tracer, with the `random` flag set on the span contexts it hands out.
#[derive(Clone, Debug)]
pub(crate) struct RandomFlagTracer(Source);

#[derive(Clone, Debug)]
enum Source {
    /// Spans are exported: `decided` (when there is one) runs the sampler first and mints
    /// the spans it drops; the SDK builds the others, with the ids `decided` drew.
    Sdk {
        tracer: SdkTracer,
        decided: Option<Arc<Minter>>,
    },
    /// Nothing exports spans: contexts are minted and no SDK span is built.
    Mint(Arc<Minter>),
}

/// What the SDK's tracer decides for a span's context (ids, sampler, flags), without the
/// recording span nobody would export.
#[derive(Debug)]
struct Minter {
    sampler: Sampler,
    ids: RandomIdGenerator,
}

impl RandomFlagTracer {
    /// `sampler` is the provider's, and the provider's id generator must be [`DecidedIds`].
    /// The SDK's tracer clones itself into every span it makes, dropped ones included, so
    /// each span is decided here first: one the sampler drops is minted instead (the same
    /// flags and state, see [`Minter::span_context`]), and the SDK builds a kept one on the
    /// ids drawn for the decision.
    pub(crate) fn new(tracer: SdkTracer, sampler: Sampler) -> Self {
        RandomFlagTracer(Source::Sdk {
            tracer,
            decided: Some(Arc::new(Minter {
                sampler,
                ids: RandomIdGenerator::default(),
            })),
        })
    }

    /// Export is off: the spans only give log lines and propagation their context, so the
    /// context is made as the SDK would make it (`sampler` is the provider's) and nothing
    /// else is built.
    pub(crate) fn minting(sampler: Sampler) -> Self {
        RandomFlagTracer(Source::Mint(Arc::new(Minter {
            sampler,
            ids: RandomIdGenerator::default(),
        })))
    }
}

impl Minter {
    /// The SDK tracer's `build_with_context` (0.33) up to the sampling decision: the same ids,
    /// the parent's trace id when it has a valid one, and the same flags for each decision.
    fn span_context(&self, builder: &SpanBuilder, parent_cx: &Context) -> SpanContext {
        self.decide(builder, parent_cx).0
    }

    /// [`Self::span_context`] with the sampler's decision.
    fn decide(
        &self,
        builder: &SpanBuilder,
        parent_cx: &Context,
    ) -> (SpanContext, SamplingDecision) {
        if parent_cx.is_telemetry_suppressed() {
            return (SpanContext::empty_context(), SamplingDecision::Drop);
        }
        let parent = parent_cx.span();
        let parent = Some(parent.span_context()).filter(|sc| sc.is_valid());
        let span_id = self.ids.new_span_id();
        let trace_id = parent.map_or_else(|| self.ids.new_trace_id(), |sc| sc.trace_id());
        let parent_flags = parent.map_or_else(TraceFlags::default, |sc| sc.trace_flags());
        let result = self.sampler.should_sample(
            Some(parent_cx),
            trace_id,
            &builder.name,
            builder.span_kind.as_ref().unwrap_or(&SpanKind::Internal),
            builder.attributes.as_deref().unwrap_or(&[]),
            builder.links.as_deref().unwrap_or(&[]),
        );
        let flags = match result.decision {
            SamplingDecision::RecordAndSample => parent_flags.with_sampled(true),
            SamplingDecision::RecordOnly => parent_flags.with_sampled(false),
            SamplingDecision::Drop => TraceFlags::default(),
        };
        (
            SpanContext::new(trace_id, span_id, flags, false, result.trace_state),
            result.decision,
        )
    }
}

thread_local! {
    /// The ids [`RandomFlagTracer`] decided a span on, while the SDK builds that span; each is
    /// taken when the SDK draws it, so nothing the build runs afterwards gets it again.
    static DECIDED_TRACE_ID: Cell<Option<TraceId>> = const { Cell::new(None) };
    static DECIDED_SPAN_ID: Cell<Option<SpanId>> = const { Cell::new(None) };
}

/// The tracer provider's id generator: the SDK's random ids, except for a span
/// [`RandomFlagTracer`] has already sampled, which gets the ids the sampler saw, so that the
/// SDK's own sampling (the same sampler, the same ids) agrees.
#[derive(Debug, Default)]
pub(crate) struct DecidedIds(RandomIdGenerator);

impl IdGenerator for DecidedIds {
    fn new_trace_id(&self) -> TraceId {
        DECIDED_TRACE_ID
            .with(Cell::take)
            .unwrap_or_else(|| self.0.new_trace_id())
    }

    fn new_span_id(&self) -> SpanId {
        DECIDED_SPAN_ID
            .with(Cell::take)
            .unwrap_or_else(|| self.0.new_span_id())
    }
}

/// Builds `builder` with the SDK's tracer on the ids of `decided` (a child's trace id is its
/// parent's, never drawn: cleared after the build, even one that unwinds).
fn build_on(
    tracer: &SdkTracer,
    builder: SpanBuilder,
    parent_cx: &Context,
    decided: &SpanContext,
) -> opentelemetry_sdk::trace::Span {
    struct Clear;
    impl Drop for Clear {
        fn drop(&mut self) {
            DECIDED_TRACE_ID.with(|cell| cell.set(None));
            DECIDED_SPAN_ID.with(|cell| cell.set(None));
        }
    }
    let _clear = Clear;
    DECIDED_TRACE_ID.with(|cell| cell.set(Some(decided.trace_id())));
    DECIDED_SPAN_ID.with(|cell| cell.set(Some(decided.span_id())));
    tracer.build_with_context(builder, parent_cx)
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
    with_current_tracer(RandomFlagTracer::clone)
}

/// `f` of the current subscriber's tracer, when the crate built that subscriber; borrowing it
/// saves the clone on paths that run once per call.
#[cfg(any(feature = "tonic", feature = "sqlx", feature = "redis"))]
pub(crate) fn with_current_tracer<R>(f: impl FnOnce(&RandomFlagTracer) -> R) -> Option<R> {
    let mut f = Some(f);
    tracing::dispatcher::get_default(|dispatch| {
        let current = dispatch.downcast_ref::<CurrentTracer>()?;
        f.take().map(|f| f(&current.0))
    })
}

/// An SDK span whose visible context may carry the flags the SDK did not set, or only a
/// minted context when export is off.
#[derive(Debug)]
// Boxing the SDK span would cost an allocation per exported span; a minted one taking the
// SDK span's size costs nothing it did not before.
#[allow(clippy::large_enum_variant)]
pub(crate) enum RandomFlagSpan {
    Sdk {
        inner: opentelemetry_sdk::trace::Span,
        /// `Some` only when the flags differ from the SDK's own.
        context: Option<SpanContext>,
    },
    /// Nothing is recorded.
    Minted(SpanContext),
}

impl RandomFlagSpan {
    /// `parent` with this span as its span. A span that records nothing is kept as its bare
    /// context: the same answers through `TraceContextExt::span`, without boxing the whole
    /// span behind a lock that nobody would take.
    pub(crate) fn into_context(self, parent: &Context) -> Context {
        match self {
            RandomFlagSpan::Minted(context) => parent.with_remote_span_context(context),
            RandomFlagSpan::Sdk { .. } => parent.with_span(self),
        }
    }

    fn recorded(&mut self) -> Option<&mut opentelemetry_sdk::trace::Span> {
        match self {
            RandomFlagSpan::Sdk { inner, .. } => Some(inner),
            RandomFlagSpan::Minted(_) => None,
        }
    }
}

impl Tracer for RandomFlagTracer {
    type Span = RandomFlagSpan;

    fn build_with_context(&self, builder: SpanBuilder, parent_cx: &Context) -> RandomFlagSpan {
        self.start_kept(builder, parent_cx, |_| {})
    }
}

impl RandomFlagTracer {
    /// [`Tracer::build_with_context`], with `kept` completing the builder (attributes) only
    /// for a span that will be recorded: a dropped one never pays for them. The crate's
    /// samplers are the specification's built-in ones, which read no attribute.
    pub(crate) fn start_kept(
        &self,
        mut builder: SpanBuilder,
        parent_cx: &Context,
        kept: impl FnOnce(&mut SpanBuilder),
    ) -> RandomFlagSpan {
        let parent = parent_cx.span();
        let parent = parent.span_context();
        let random = if parent.is_valid() {
            parent.trace_flags().to_u8() & RANDOM != 0
        } else {
            true
        };
        match &self.0 {
            Source::Mint(mint) => minted_with_flags(mint.span_context(&builder, parent_cx), random),
            Source::Sdk { tracer, decided } => {
                let inner = match decided {
                    Some(minter) => {
                        let (minted, decision) = minter.decide(&builder, parent_cx);
                        if decision == SamplingDecision::Drop {
                            return minted_with_flags(minted, random);
                        }
                        kept(&mut builder);
                        build_on(tracer, builder, parent_cx, &minted)
                    }
                    None => {
                        kept(&mut builder);
                        tracer.build_with_context(builder, parent_cx)
                    }
                };
                let context = with_flags(inner.span_context(), random);
                RandomFlagSpan::Sdk { inner, context }
            }
        }
    }
}

/// A span that records nothing, under `context` with the `random` flag as given.
fn minted_with_flags(context: SpanContext, random: bool) -> RandomFlagSpan {
    RandomFlagSpan::Minted(with_flags(&context, random).unwrap_or(context))
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
        if let Some(inner) = self.recorded() {
            inner.add_event_with_timestamp(name, timestamp, attributes);
        }
    }

    fn span_context(&self) -> &SpanContext {
        match self {
            RandomFlagSpan::Sdk {
                context: Some(context),
                ..
            }
            | RandomFlagSpan::Minted(context) => context,
            RandomFlagSpan::Sdk { inner, .. } => inner.span_context(),
        }
    }

    fn is_recording(&self) -> bool {
        match self {
            RandomFlagSpan::Sdk { inner, .. } => inner.is_recording(),
            RandomFlagSpan::Minted(_) => false,
        }
    }

    fn set_attribute(&mut self, attribute: KeyValue) {
        if let Some(inner) = self.recorded() {
            inner.set_attribute(attribute);
        }
    }

    fn set_attributes(&mut self, attributes: impl IntoIterator<Item = KeyValue>) {
        if let Some(inner) = self.recorded() {
            inner.set_attributes(attributes);
        }
    }

    fn set_status(&mut self, status: Status) {
        if let Some(inner) = self.recorded() {
            inner.set_status(status);
        }
    }

    fn update_name<T>(&mut self, new_name: T)
    where
        T: Into<Cow<'static, str>>,
    {
        if let Some(inner) = self.recorded() {
            inner.update_name(new_name);
        }
    }

    fn add_link(&mut self, span_context: SpanContext, attributes: Vec<KeyValue>) {
        if let Some(inner) = self.recorded() {
            inner.add_link(span_context, attributes);
        }
    }

    fn end_with_timestamp(&mut self, timestamp: SystemTime) {
        if let Some(inner) = self.recorded() {
            inner.end_with_timestamp(timestamp);
        }
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
        let tracer = RandomFlagTracer(Source::Sdk {
            tracer: provider.tracer("test"),
            decided: None,
        });
        (tracer, exporter)
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

    /// The exporting tracer as the crate builds it: deciding first, over a provider that
    /// takes its ids from [`DecidedIds`].
    fn deciding(sampler: Sampler) -> (RandomFlagTracer, SdkTracerProvider) {
        let provider = SdkTracerProvider::builder()
            .with_sampler(sampler.clone())
            .with_id_generator(DecidedIds::default())
            .build();
        (
            RandomFlagTracer::new(provider.tracer("test"), sampler),
            provider,
        )
    }

    /// The exporting tracer decides first and mints what the sampler drops; what it hands
    /// out must be what the SDK would have built, kept or dropped, under any parent.
    #[test]
    fn spans_decided_first_are_the_ones_the_sdk_would_build() {
        let samplers = || {
            [
                Sampler::AlwaysOn,
                Sampler::AlwaysOff,
                Sampler::TraceIdRatioBased(0.5),
                Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
                Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(0.5))),
            ]
        };
        let local_not_sampled = Context::new().with_span(
            RandomFlagTracer::minting(Sampler::AlwaysOff)
                .build_with_context(SpanBuilder::from_name("parent"), &Context::new()),
        );
        assert!(!local_not_sampled.span().span_context().is_remote());
        let parents = [
            remote(0x00),
            remote(0x02),
            remote(0x01),
            remote(0x03),
            local_not_sampled,
            remote(0x00).with_telemetry_suppressed(),
        ];
        for (sampler, same) in samplers().into_iter().zip(samplers()) {
            let label = format!("{sampler:?}");
            let (full, _) = tracer(sampler);
            let (fast, _provider) = deciding(same);
            for parent in &parents {
                let built = full.build_with_context(SpanBuilder::from_name("s"), parent);
                let decided = fast.build_with_context(SpanBuilder::from_name("s"), parent);
                let (b, d) = (built.span_context(), decided.span_context());
                assert_eq!(b.is_valid(), d.is_valid(), "{label} {parent:?}");
                assert_eq!(
                    built.is_recording(),
                    decided.is_recording(),
                    "{label} {parent:?}"
                );
                if !b.is_valid() {
                    continue;
                }
                assert_eq!(b.trace_id(), d.trace_id(), "{label}");
                assert_eq!(b.trace_flags(), d.trace_flags(), "{label} {parent:?}");
                assert_eq!(b.trace_state(), d.trace_state(), "{label}");
                assert!(!d.is_remote());
            }
        }
    }

    /// A root is sampled once, on the ids it keeps: the SDK, sampling again, must see the
    /// ids the crate's tracer decided on, or a ratio would apply twice (a quarter kept, not
    /// half). Each span's fate is the ratio's decision on the trace id it carries.
    #[test]
    fn a_kept_root_is_built_on_the_ids_it_was_sampled_on() {
        let ratio = || Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(0.5)));
        let (tracer, provider) = deciding(ratio());
        let roots = 4000;
        let mut kept = 0;
        for _ in 0..roots {
            let span = tracer.build_with_context(SpanBuilder::from_name("root"), &Context::new());
            let context = span.span_context().clone();
            let decision = ratio()
                .should_sample(
                    None,
                    context.trace_id(),
                    "root",
                    &SpanKind::Internal,
                    &[],
                    &[],
                )
                .decision;
            assert_eq!(
                span.is_recording(),
                decision == SamplingDecision::RecordAndSample,
                "{context:?}"
            );
            assert_eq!(context.is_sampled(), span.is_recording());
            if span.is_recording() {
                kept += 1;
            }
        }
        assert!(
            (1600..2400).contains(&kept),
            "{kept} of {roots} roots kept at a ratio of 0.5"
        );
        // A kept child draws no trace id; the one set for it must not reach the next root
        // the SDK builds on its own.
        let child = tracer.build_with_context(SpanBuilder::from_name("child"), &remote(0x01));
        assert!(child.is_recording());
        let own = provider
            .tracer("own")
            .build_with_context(SpanBuilder::from_name("own"), &Context::new());
        assert_ne!(
            own.span_context().trace_id(),
            child.span_context().trace_id()
        );
        assert_ne!(own.span_context().span_id(), child.span_context().span_id());
    }

    /// The contexts export-off mints are the ones the SDK's tracer hands out, ids apart:
    /// validity, trace id inheritance, flags for every decision, trace state, and none when
    /// telemetry is suppressed.
    #[test]
    fn minted_contexts_are_the_ones_the_sdk_would_hand_out() {
        use opentelemetry::trace::TraceState;
        let samplers = || {
            [
                Sampler::AlwaysOn,
                Sampler::AlwaysOff,
                Sampler::TraceIdRatioBased(0.5),
                Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
                Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
                Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(0.5))),
            ]
        };
        let with_state = |flags: u8| {
            Context::new().with_remote_span_context(SpanContext::new(
                TraceId::from(0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736),
                SpanId::from(0x00f0_67aa_0ba9_02b7),
                TraceFlags::new(flags),
                true,
                TraceState::from_key_value([("vendor", "x")]).expect("state"),
            ))
        };
        let parents = [
            Context::new(),
            remote(0x00),
            remote(0x01),
            remote(0x02),
            remote(0x03),
            with_state(0x01),
            Context::new().with_remote_span_context(SpanContext::empty_context()),
            remote(0x01).with_telemetry_suppressed(),
        ];
        for (sdk_sampler, mint_sampler) in samplers().into_iter().zip(samplers()) {
            let label = format!("{sdk_sampler:?}");
            let (sdk, _) = tracer(sdk_sampler);
            let minting = RandomFlagTracer::minting(mint_sampler);
            for parent in &parents {
                let built = sdk.build_with_context(SpanBuilder::from_name("s"), parent);
                let minted = minting.build_with_context(SpanBuilder::from_name("s"), parent);
                let (b, m) = (built.span_context(), minted.span_context());
                assert_eq!(b.is_valid(), m.is_valid(), "{label} {parent:?}");
                assert!(!minted.is_recording());
                if !b.is_valid() {
                    continue;
                }
                let parent_sc = parent.span().span_context().clone();
                if parent_sc.is_valid() {
                    assert_eq!(m.trace_id(), parent_sc.trace_id(), "{label}");
                    assert_eq!(b.trace_flags(), m.trace_flags(), "{label} {parent_sc:?}");
                } else {
                    // Roots: the ratio decides on the new trace id, so compare the random bit.
                    assert_eq!(m.trace_flags().to_u8() & RANDOM, RANDOM, "{label}");
                }
                assert_ne!(m.span_id(), parent_sc.span_id());
                assert_eq!(b.trace_state(), m.trace_state(), "{label}");
                assert!(!m.is_remote());
            }
        }
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
