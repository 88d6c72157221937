//! One warning naming a metric whose attribute sets overflowed its cardinality limit.
//!
//! The SDK folds the series past the limit into one marked `otel.metric.overflow=true` and
//! says nothing. Every export (and every Prometheus scrape) is scanned for that series; a
//! metric is named at once the first time, then at most once per report interval.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use opentelemetry::KeyValue;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};

pub(crate) const OVERFLOW_KEY: &str = "otel.metric.overflow";

/// Remembers when each metric was last reported.
#[derive(Debug)]
pub(crate) struct OverflowReporter {
    interval: Duration,
    limit: usize,
    last: Mutex<HashMap<String, Instant>>,
}

impl OverflowReporter {
    pub(crate) fn new(interval: Duration, limit: usize) -> Self {
        OverflowReporter {
            interval,
            limit,
            last: Mutex::new(HashMap::new()),
        }
    }

    /// Warns about each of `names` not warned about within the interval; returns the names
    /// warned about now.
    pub(crate) fn report<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        let now = Instant::now();
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        let mut warned = Vec::new();
        for name in names {
            let due = last
                .get(name)
                .is_none_or(|at| now.saturating_duration_since(*at) >= self.interval);
            if due && !warned.iter().any(|w| w == name) {
                last.insert(name.to_owned(), now);
                warned.push(name.to_owned());
            }
        }
        drop(last);
        for name in &warned {
            tracing::warn!(
                target: "service_telemetry::metrics",
                metric = %name,
                cardinality_limit = self.limit,
                "metric {name} has more attribute sets than its cardinality limit ({}); the rest are merged into one series with otel.metric.overflow=true: drop a high-cardinality attribute (a view's keep_attributes) or raise OTEL_METRICS_CARDINALITY_LIMIT",
                self.limit
            );
        }
        warned
    }
}

fn overflowed<'a>(mut attributes: impl Iterator<Item = &'a KeyValue>) -> bool {
    attributes.any(|kv| kv.key.as_str() == OVERFLOW_KEY)
}

fn data_overflowed<T>(data: &MetricData<T>) -> bool {
    match data {
        MetricData::Gauge(g) => g.data_points().any(|p| overflowed(p.attributes())),
        MetricData::Sum(s) => s.data_points().any(|p| overflowed(p.attributes())),
        MetricData::Histogram(h) => h.data_points().any(|p| overflowed(p.attributes())),
        MetricData::ExponentialHistogram(h) => h.data_points().any(|p| overflowed(p.attributes())),
    }
}

/// Names of the metrics in `metrics` that carry an overflow series.
pub(crate) fn overflowed_metrics(metrics: &ResourceMetrics) -> Vec<&str> {
    let mut out = Vec::new();
    for scope in metrics.scope_metrics() {
        for metric in scope.metrics() {
            let hit = match metric.data() {
                AggregatedMetrics::F64(d) => data_overflowed(d),
                AggregatedMetrics::U64(d) => data_overflowed(d),
                AggregatedMetrics::I64(d) => data_overflowed(d),
            };
            if hit {
                out.push(metric.name());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_metric_is_named_once_per_interval() {
        let reporter = OverflowReporter::new(Duration::from_secs(3600), 10);
        assert_eq!(reporter.report(["a", "b", "a"]), ["a", "b"]);
        assert!(reporter.report(["a", "b"]).is_empty());
        assert_eq!(reporter.report(["c"]), ["c"]);
        let eager = OverflowReporter::new(Duration::ZERO, 10);
        assert_eq!(eager.report(["a"]), ["a"]);
        assert_eq!(eager.report(["a"]), ["a"]);
    }
}
