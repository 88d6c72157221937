//! Spans skipped under a not-sampled parent
//! ([`TelemetryBuilder::skip_spans_under_unsampled_parents`](crate::TelemetryBuilder::skip_spans_under_unsampled_parents)):
//! the OpenTelemetry layer never sees them, so this layer keeps the context each was opened in
//! and makes it current while the span is entered, as `tracing-opentelemetry` would have done
//! with the span's own. Log lines and propagation inside a skipped span then follow its
//! nearest built ancestor, also where the span is entered without that ancestor (a spawned
//! task instrumented with it).

use opentelemetry::trace::TraceContextExt as _;
use opentelemetry::{Context, ContextGuard};
use tracing::Subscriber;
use tracing::span::{Attributes, Id};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context as LayerContext;
use tracing_subscriber::registry::LookupSpan;

use crate::spans::entered::Entered;

/// Whether the current context holds a valid local span that the sampler dropped. A remote
/// parent alone (current while a server span opens) does not count: the span it parents is
/// built and sampled as it always was.
pub(crate) fn under_unsampled_parent() -> bool {
    Context::map_current(|cx| {
        let parent = cx.span();
        let parent = parent.span_context();
        parent.is_valid() && !parent.is_sampled() && !parent.is_remote()
    })
}

/// The context a skipped span was opened in, kept in its extensions.
struct OpenedUnder(Context);

thread_local! {
    /// Skipped spans entered on this thread, innermost last, with the guard of the context
    /// entering made current (none when it already was).
    static ENTERED: Entered<Option<ContextGuard>> = const { Entered::new() };
}

/// Installed after the OpenTelemetry layer when skipping is opted in. `skipped` is the
/// layer's filter's decision, asked again in the same context.
pub(crate) struct SkippedSpans {
    pub(crate) skipped: fn(&tracing::Metadata<'_>) -> bool,
}

impl<S> Layer<S> for SkippedSpans
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: LayerContext<'_, S>) {
        if !(self.skipped)(attrs.metadata()) {
            return;
        }
        if let Some(span) = ctx.span(id) {
            span.extensions_mut()
                .insert(OpenedUnder(Context::current()));
        }
    }

    fn on_enter(&self, id: &Id, ctx: LayerContext<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let extensions = span.extensions();
        let Some(OpenedUnder(cx)) = extensions.get::<OpenedUnder>() else {
            return;
        };
        // Entered inside the span it was opened under (the usual case): already current.
        let current = Context::map_current(|current| {
            current.span().span_context() == cx.span().span_context()
        });
        let cx = (!current).then(|| cx.clone());
        drop(extensions);
        crate::spans::entered::push(&ENTERED, id, cx.map(Context::attach));
    }

    fn on_exit(&self, id: &Id, _: LayerContext<'_, S>) {
        let guard = crate::spans::entered::take(&ENTERED, id).flatten();
        // Dropped outside the borrow: detaching may run code that logs.
        drop(guard);
    }
}

/// The context `span` was opened in, when it was skipped.
pub(super) fn context_of_skipped(span: &tracing::Span) -> Option<Context> {
    span.with_subscriber(|(id, dispatch)| {
        let registry = dispatch.downcast_ref::<tracing_subscriber::Registry>()?;
        let data = registry.span_data(id)?;
        let extensions = tracing_subscriber::registry::SpanData::extensions(&data);
        extensions.get::<OpenedUnder>().map(|o| o.0.clone())
    })
    .flatten()
}
