//! The level filter, replaceable while the service runs (`Telemetry::set_log_filter`).
//!
//! `tracing_subscriber::reload` does the same, but it takes a read lock around every call it
//! forwards, including `on_event` and the four span callbacks, which `EnvFilter` does nothing
//! with unless a directive names a span. Measured in the `log_event` bench, that was 30 ns on
//! every event (a tenth of the JSON path). Here each thread keeps the filter it last used and
//! checks one counter to see whether it is still the one in force, so the hot path takes no
//! lock; the span callbacks are forwarded only while the filter has a span directive; events
//! are never seen; and tracing's per-callsite cache is rebuilt on each change.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use tracing::subscriber::Interest;
use tracing::{Metadata, Subscriber, span};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::Context;

/// The layer and its handle at once: clones share the filter.
#[derive(Clone)]
pub(crate) struct LiveFilter(Arc<Shared>);

struct Shared {
    /// Tells this filter's entries in the threads' caches from another subscriber's.
    instance: u64,
    current: RwLock<Arc<EnvFilter>>,
    /// Bumped on every replacement; a thread whose cached copy is older fetches the new one.
    generation: AtomicU64,
    /// Whether a directive filters by span (`target[span{field}]=level`): only then does
    /// `EnvFilter` need to follow spans.
    follows_spans: AtomicBool,
}

static INSTANCES: AtomicU64 = AtomicU64::new(0);

struct Cached {
    instance: u64,
    generation: u64,
    filter: Arc<EnvFilter>,
}

thread_local! {
    static CACHED: RefCell<Option<Cached>> = const { RefCell::new(None) };
}

/// Span-scoped directives are the ones with a `[...]` part.
fn follows_spans(directives: &str) -> bool {
    directives.contains('[')
}

impl LiveFilter {
    /// `directives` is what `filter` was parsed from.
    pub(crate) fn new(filter: EnvFilter, directives: &str) -> Self {
        LiveFilter(Arc::new(Shared {
            instance: INSTANCES.fetch_add(1, Ordering::Relaxed),
            current: RwLock::new(Arc::new(filter)),
            generation: AtomicU64::new(0),
            follows_spans: AtomicBool::new(follows_spans(directives)),
        }))
    }

    /// Puts `filter` (parsed from `directives`) in force for the next event on every thread.
    pub(crate) fn replace(&self, filter: EnvFilter, directives: &str) {
        {
            let mut current = self
                .0
                .current
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            *current = Arc::new(filter);
            self.0
                .follows_spans
                .store(follows_spans(directives), Ordering::Release);
            self.0.generation.fetch_add(1, Ordering::AcqRel);
        }
        // Callsites cached their answer from the old filter; the lock is released first, as
        // the rebuild calls back into `register_callsite`.
        tracing_core::callsite::rebuild_interest_cache();
    }

    fn locked(&self) -> Arc<EnvFilter> {
        self.0
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Calls `f` with the filter in force: this thread's copy when it is current, else the
    /// shared one (fetched once into the copy). `f` runs exactly once.
    fn with<R>(&self, f: impl Fn(&EnvFilter) -> R) -> R {
        let generation = self.0.generation.load(Ordering::Acquire);
        let instance = self.0.instance;
        let answered = CACHED.try_with(|cached| {
            // Busy only if the filter itself logged from inside a call: take the slow path.
            let mut cached = cached.try_borrow_mut().ok()?;
            let fresh = cached
                .as_ref()
                .is_some_and(|c| c.instance == instance && c.generation == generation);
            if !fresh {
                *cached = Some(Cached {
                    instance,
                    generation,
                    filter: self.locked(),
                });
            }
            cached.as_ref().map(|c| f(&c.filter))
        });
        match answered {
            Ok(Some(answer)) => answer,
            _ => f(&self.locked()),
        }
    }

    fn follows(&self) -> bool {
        self.0.follows_spans.load(Ordering::Acquire)
    }
}

impl<S: Subscriber> Layer<S> for LiveFilter {
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        self.with(|f| <EnvFilter as Layer<S>>::register_callsite(f, metadata))
    }

    fn enabled(&self, metadata: &Metadata<'_>, ctx: Context<'_, S>) -> bool {
        self.with(|f| <EnvFilter as Layer<S>>::enabled(f, metadata, ctx.clone()))
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        self.with(|f| <EnvFilter as Layer<S>>::max_level_hint(f))
    }

    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, S>) {
        if self.follows() {
            self.with(|f| <EnvFilter as Layer<S>>::on_new_span(f, attrs, id, ctx.clone()));
        }
    }

    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, ctx: Context<'_, S>) {
        if self.follows() {
            self.with(|f| <EnvFilter as Layer<S>>::on_record(f, id, values, ctx.clone()));
        }
    }

    fn on_enter(&self, id: &span::Id, ctx: Context<'_, S>) {
        if self.follows() {
            self.with(|f| <EnvFilter as Layer<S>>::on_enter(f, id, ctx.clone()));
        }
    }

    fn on_exit(&self, id: &span::Id, ctx: Context<'_, S>) {
        if self.follows() {
            self.with(|f| <EnvFilter as Layer<S>>::on_exit(f, id, ctx.clone()));
        }
    }

    fn on_close(&self, id: span::Id, ctx: Context<'_, S>) {
        if self.follows() {
            self.with(|f| <EnvFilter as Layer<S>>::on_close(f, id.clone(), ctx.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    use crate::logs::MemoryWriter;

    fn messages(logs: &MemoryWriter) -> Vec<String> {
        logs.json_lines()
            .into_iter()
            .filter_map(|l| l["message"].as_str().map(str::to_owned))
            .collect()
    }

    #[test]
    fn a_replaced_filter_applies_to_the_next_event_and_span_directives_work_both_ways() {
        let logs = MemoryWriter::new();
        let filter = LiveFilter::new(EnvFilter::new("info"), "info");
        let subscriber =
            tracing_subscriber::registry()
                .with(filter.clone())
                .with(crate::logs::JsonLayer::new(
                    std::sync::Arc::new(logs.clone()),
                    1024,
                    crate::export::Closing::default(),
                ));
        tracing::subscriber::with_default(subscriber, || {
            tracing::debug!("hidden");
            tracing::info!("shown");
            filter.replace(EnvFilter::new("debug"), "debug");
            tracing::debug!("debug now shown");
            // A span-scoped directive: debug only inside `checkout`.
            let directives = "info,[checkout]=debug";
            filter.replace(EnvFilter::new(directives), directives);
            tracing::debug!("outside checkout");
            tracing::info_span!("checkout").in_scope(|| tracing::debug!("inside checkout"));
            filter.replace(EnvFilter::new("warn"), "warn");
            tracing::info!("info now hidden");
            tracing::warn!("warn shown");
        });
        assert_eq!(
            messages(&logs),
            ["shown", "debug now shown", "inside checkout", "warn shown"]
        );
    }
}
