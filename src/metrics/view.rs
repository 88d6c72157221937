//! Metric views in code, composed with the crate's own defaults into the one view the SDK sees.
//!
//! The SDK makes one stream per matching view, so two views matching one instrument would
//! export it twice; and its `Stream` cannot be read back to be merged. So views given to
//! [`crate::TelemetryBuilder::with_view`] are described with [`MetricView`], the first one
//! that matches an instrument wins, and the crate fills in what it leaves open (the default
//! histogram aggregation and the cardinality limit).

use std::sync::Arc;

use opentelemetry::Key;
use opentelemetry_sdk::metrics::{Aggregation, Instrument, InstrumentKind, Stream};

use crate::config::{HistogramAggregation, MetricSettings};

/// How one instrument is exported: its name, the attributes kept, its aggregation, its
/// cardinality limit. Everything left unset keeps the instrument's own (or the crate's
/// default).
///
/// ```
/// use service_telemetry::MetricView;
///
/// let _telemetry = service_telemetry::Telemetry::builder()
///     .with_view(|instrument| match instrument.name() {
///         // Seconds-scale buckets for a slow call, and no per-customer series.
///         "payment.duration" => Some(
///             MetricView::new()
///                 .histogram_buckets(vec![0.1, 0.5, 1.0, 2.5, 5.0, 10.0])
///                 .keep_attributes(["payment.method"]),
///         ),
///         "legacy.requests" => Some(MetricView::new().rename("http.server.legacy.requests")),
///         "debug.queue.samples" => Some(MetricView::new().drop_metric()),
///         _ => None,
///     })
///     .env_lookup(|_| None)
///     .set_default();
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
#[must_use = "a view does nothing until returned from the closure given to `with_view`"]
pub struct MetricView {
    name: Option<String>,
    description: Option<String>,
    keep_attributes: Option<Vec<Key>>,
    aggregation: Option<Aggregation>,
    cardinality_limit: Option<usize>,
}

impl MetricView {
    /// A view that changes nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Exports the instrument under another name.
    pub fn rename(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Replaces the instrument's description.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }

    /// Keeps only these attribute keys; measurements differing only in others are merged.
    /// An empty list keeps none.
    pub fn keep_attributes<K: Into<Key>>(mut self, keys: impl IntoIterator<Item = K>) -> Self {
        self.keep_attributes = Some(keys.into_iter().map(Into::into).collect());
        self
    }

    /// An explicit-bucket histogram with these upper bounds (increasing, finite).
    pub fn histogram_buckets(mut self, boundaries: Vec<f64>) -> Self {
        self.aggregation = Some(Aggregation::ExplicitBucketHistogram {
            boundaries,
            record_min_max: true,
        });
        self
    }

    /// A base-2 exponential histogram (160 buckets, scale 20 down to what fits).
    pub fn exponential_histogram(mut self) -> Self {
        self.aggregation = Some(exponential());
        self
    }

    /// Any aggregation of the SDK's.
    pub fn aggregation(mut self, aggregation: Aggregation) -> Self {
        self.aggregation = Some(aggregation);
        self
    }

    /// Does not export the instrument at all.
    pub fn drop_metric(self) -> Self {
        self.aggregation(Aggregation::Drop)
    }

    /// Most attribute sets kept for this instrument per collection, instead of the crate-wide
    /// limit.
    pub fn cardinality_limit(mut self, limit: usize) -> Self {
        self.cardinality_limit = Some(limit);
        self
    }
}

fn exponential() -> Aggregation {
    Aggregation::Base2ExponentialHistogram {
        max_size: 160,
        max_scale: 20,
        record_min_max: true,
    }
}

/// A view closure given in code.
pub(crate) type ViewFn = Arc<dyn Fn(&Instrument) -> Option<MetricView> + Send + Sync>;

/// The stream for `instrument`: the first matching user view over the crate's defaults. A user
/// view the SDK rejects (say, unsorted buckets) is reported once and left out.
pub(crate) fn stream_for(
    instrument: &Instrument,
    views: &[ViewFn],
    settings: &MetricSettings,
) -> Option<Stream> {
    let user = views.iter().find_map(|v| v(instrument));
    let default_aggregation = (instrument.kind() == InstrumentKind::Histogram
        && settings.histogram_aggregation == HistogramAggregation::Base2Exponential)
        .then(exponential);
    let compose = |user: Option<&MetricView>| {
        let mut builder = Stream::builder().with_cardinality_limit(
            user.and_then(|u| u.cardinality_limit)
                .unwrap_or(settings.cardinality_limit)
                .max(1),
        );
        if let Some(aggregation) = user
            .and_then(|u| u.aggregation.clone())
            .or_else(|| default_aggregation.clone())
        {
            builder = builder.with_aggregation(aggregation);
        }
        if let Some(u) = user {
            if let Some(name) = &u.name {
                builder = builder.with_name(name.clone());
            }
            if let Some(description) = &u.description {
                builder = builder.with_description(description.clone());
            }
            if let Some(keys) = &u.keep_attributes {
                builder = builder.with_allowed_attribute_keys(keys.iter().cloned());
            }
        }
        builder.build()
    };
    match compose(user.as_ref()) {
        Ok(stream) => Some(stream),
        Err(e) => {
            tracing::warn!(
                target: "service_telemetry::metrics",
                instrument = instrument.name(),
                error = %e,
                "metric view for {} rejected ({e}); the instrument is exported without it",
                instrument.name()
            );
            compose(None).ok()
        }
    }
}
