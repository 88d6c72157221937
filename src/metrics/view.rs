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

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::Arc;

    use opentelemetry::KeyValue;
    use opentelemetry::metrics::MeterProvider as _;
    use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};
    use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};

    use super::*;
    use crate::metrics::{MetricsSetup, RuntimeSlot};

    fn provider(
        settings: MetricSettings,
        views: Vec<ViewFn>,
    ) -> (SdkMeterProvider, InMemoryMetricExporter) {
        let exporter = InMemoryMetricExporter::default();
        let setup = MetricsSetup::new(
            settings,
            views,
            std::time::Duration::from_secs(30),
            Arc::new(RuntimeSlot::default()),
            PathBuf::from("/"),
        );
        let provider = setup
            .configure(SdkMeterProvider::builder())
            .with_reader(PeriodicReader::builder(exporter.clone()).build())
            .build();
        (provider, exporter)
    }

    /// The last export.
    fn exported(provider: &SdkMeterProvider, exporter: &InMemoryMetricExporter) -> ResourceMetrics {
        provider.force_flush().expect("flush");
        let mut batches: Vec<ResourceMetrics> = exporter.get_finished_metrics().expect("metrics");
        batches.pop().expect("one export")
    }

    fn names(rm: &ResourceMetrics) -> Vec<&str> {
        rm.scope_metrics()
            .flat_map(|s| s.metrics())
            .map(|m| m.name())
            .collect()
    }

    fn find<'a>(rm: &'a ResourceMetrics, name: &str) -> &'a AggregatedMetrics {
        rm.scope_metrics()
            .flat_map(|s| s.metrics())
            .find(|m| m.name() == name)
            .map(|m| m.data())
            .unwrap_or_else(|| panic!("no metric {name}"))
    }

    fn histogram_bounds(data: &AggregatedMetrics) -> Option<Vec<f64>> {
        match data {
            AggregatedMetrics::F64(MetricData::Histogram(h)) => {
                h.data_points().next().map(|p| p.bounds().collect())
            }
            _ => None,
        }
    }

    fn sum_attribute_sets(data: &AggregatedMetrics) -> Vec<Vec<KeyValue>> {
        match data {
            AggregatedMetrics::U64(MetricData::Sum(s)) => s
                .data_points()
                .map(|p| p.attributes().cloned().collect())
                .collect(),
            _ => Vec::new(),
        }
    }

    #[test]
    fn a_view_renames_keeps_attributes_changes_buckets_and_drops() {
        let view: ViewFn = Arc::new(|i: &Instrument| match i.name() {
            "legacy.hits" => Some(
                MetricView::new()
                    .rename("checkout.hits")
                    .keep_attributes(["route"]),
            ),
            "payment.duration" => Some(MetricView::new().histogram_buckets(vec![0.5, 1.0, 5.0])),
            "debug.samples" => Some(MetricView::new().drop_metric()),
            _ => None,
        });
        let (provider, exporter) = provider(MetricSettings::default(), vec![view]);
        let meter = provider.meter("test");
        let hits = meter.u64_counter("legacy.hits").build();
        hits.add(
            1,
            &[KeyValue::new("route", "/a"), KeyValue::new("user.id", "u1")],
        );
        hits.add(
            1,
            &[KeyValue::new("route", "/a"), KeyValue::new("user.id", "u2")],
        );
        meter
            .f64_histogram("payment.duration")
            .build()
            .record(0.7, &[]);
        meter.u64_counter("debug.samples").build().add(1, &[]);
        meter
            .f64_histogram("other.duration")
            .build()
            .record(0.7, &[]);
        let metrics = exported(&provider, &exporter);
        let names = names(&metrics);
        assert!(
            names.contains(&"checkout.hits") && !names.contains(&"legacy.hits"),
            "{names:?}"
        );
        assert!(!names.contains(&"debug.samples"), "{names:?}");
        let hits = find(&metrics, "checkout.hits");
        assert_eq!(
            sum_attribute_sets(hits),
            vec![vec![KeyValue::new("route", "/a")]],
            "user.id dropped, series merged"
        );
        let payment = find(&metrics, "payment.duration");
        assert_eq!(histogram_bounds(payment), Some(vec![0.5, 1.0, 5.0]));
        let other = find(&metrics, "other.duration");
        assert_eq!(
            histogram_bounds(other).map(|b| b.len()),
            Some(15),
            "the spec's default buckets"
        );
    }

    #[test]
    fn exponential_by_default_for_histograms_without_a_view_and_a_rejected_view_is_left_out() {
        let settings = MetricSettings {
            histogram_aggregation: HistogramAggregation::Base2Exponential,
            ..MetricSettings::default()
        };
        let view: ViewFn = Arc::new(|i: &Instrument| {
            (i.name() == "bad.buckets").then(|| MetricView::new().histogram_buckets(vec![5.0, 1.0]))
        });
        let (provider, exporter) = provider(settings, vec![view]);
        let meter = provider.meter("test");
        meter.f64_histogram("latency").build().record(0.25, &[]);
        meter.f64_histogram("bad.buckets").build().record(0.25, &[]);
        let metrics = exported(&provider, &exporter);
        for name in ["latency", "bad.buckets"] {
            let data = find(&metrics, name);
            assert!(
                matches!(
                    data,
                    AggregatedMetrics::F64(MetricData::ExponentialHistogram(_))
                ),
                "{name}: {data:?}"
            );
        }
    }

    #[test]
    fn the_cardinality_limit_folds_the_rest_into_the_overflow_series() {
        let settings = MetricSettings {
            cardinality_limit: 3,
            ..MetricSettings::default()
        };
        let per_view: ViewFn = Arc::new(|i: &Instrument| {
            (i.name() == "roomy").then(|| MetricView::new().cardinality_limit(100))
        });
        let (provider, exporter) = provider(settings, vec![per_view]);
        let meter = provider.meter("test");
        let tight = meter.u64_counter("tight").build();
        let roomy = meter.u64_counter("roomy").build();
        for i in 0..20 {
            tight.add(1, &[KeyValue::new("i", i)]);
            roomy.add(1, &[KeyValue::new("i", i)]);
        }
        let metrics = exported(&provider, &exporter);
        let sets = |name: &str| sum_attribute_sets(find(&metrics, name));
        let tight_sets = sets("tight");
        assert!(tight_sets.len() <= 4, "{}", tight_sets.len());
        assert!(tight_sets.iter().any(|s| {
            s.iter()
                .any(|kv| kv.key.as_str() == crate::metrics::overflow::OVERFLOW_KEY)
        }));
        assert_eq!(sets("roomy").len(), 20, "a view's own limit wins");
    }
}
