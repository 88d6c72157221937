//! What the process and Tokio runtime metrics cost per export: one collection of a meter
//! provider through a manual reader, the work a periodic reader (or a Prometheus scrape) does
//! before encoding. Same process, same group, for:
//!
//! - an empty meter provider, the floor of a collection;
//! - this crate's process and Tokio instruments (`register_builtin_metrics`, what `init`
//!   registers);
//! - the common alternative on opentelemetry 0.33: opentelemetry-instrumentation-process
//!   (procfs) and opentelemetry-instrumentation-tokio, registered on the global provider.
//!
//! Before the timings each variant prints what one collection holds (metrics and points), so
//! the comparison is between like amounts of work. Run with
//! `cargo bench --bench runtime_metrics`.

use std::hint::black_box;
use std::sync::{Arc, Weak};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::reader::MetricReader;
use opentelemetry_sdk::metrics::{
    InstrumentKind, ManualReader, Pipeline, SdkMeterProvider, Temporality,
};

/// A manual reader the bench keeps a handle to after giving it to the provider.
#[derive(Debug, Clone)]
struct Shared(Arc<ManualReader>);

impl MetricReader for Shared {
    fn register_pipeline(&self, pipeline: Weak<Pipeline>) {
        self.0.register_pipeline(pipeline)
    }
    fn collect(&self, rm: &mut ResourceMetrics) -> OTelSdkResult {
        self.0.collect(rm)
    }
    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }
    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }
    fn temporality(&self, kind: InstrumentKind) -> Temporality {
        self.0.temporality(kind)
    }
}

fn provider() -> (SdkMeterProvider, Shared) {
    let reader = Shared(Arc::new(ManualReader::builder().build()));
    let provider = SdkMeterProvider::builder()
        .with_reader(reader.clone())
        .build();
    (provider, reader)
}

fn points<T>(data: &MetricData<T>) -> usize {
    match data {
        MetricData::Gauge(g) => g.data_points().count(),
        MetricData::Sum(s) => s.data_points().count(),
        MetricData::Histogram(h) => h.data_points().count(),
        MetricData::ExponentialHistogram(h) => h.data_points().count(),
    }
}

/// Metrics and data points of one collection, printed before the timings.
fn describe(name: &str, reader: &Shared) {
    let mut rm = ResourceMetrics::default();
    reader.collect(&mut rm).expect("collect");
    let (mut metrics, mut total) = (Vec::new(), 0);
    for scope in rm.scope_metrics() {
        for metric in scope.metrics() {
            let n = match metric.data() {
                AggregatedMetrics::F64(d) => points(d),
                AggregatedMetrics::U64(d) => points(d),
                AggregatedMetrics::I64(d) => points(d),
            };
            total += n;
            metrics.push(format!("{}({n})", metric.name()));
        }
    }
    println!(
        "{name}: {} metrics, {total} points per collection: {}",
        metrics.len(),
        metrics.join(" ")
    );
}

fn collection(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let _entered = runtime.enter();

    let (_empty, empty) = provider();
    let (ours_provider, ours) = provider();
    service_telemetry::register_builtin_metrics(&ours_provider, Some(runtime.handle().clone()));
    let (theirs_provider, theirs) = provider();
    opentelemetry::global::set_meter_provider(theirs_provider.clone());
    opentelemetry_instrumentation_process::init().expect("process metrics");
    opentelemetry_instrumentation_tokio::observe_runtime(runtime.handle());

    describe("empty_provider", &empty);
    describe("service_telemetry", &ours);
    describe("instrumentation_process_and_tokio", &theirs);

    let mut group = c.benchmark_group("metrics_collection");
    for (name, reader) in [
        ("empty_provider", &empty),
        ("service_telemetry", &ours),
        ("instrumentation_process_and_tokio", &theirs),
    ] {
        group.bench_function(name, |b| {
            let mut rm = ResourceMetrics::default();
            b.iter(|| {
                reader.collect(&mut rm).expect("collect");
                black_box(&rm);
            })
        });
    }
    group.finish();
    drop(ours_provider);
}

criterion_group!(benches, collection);
criterion_main!(benches);
