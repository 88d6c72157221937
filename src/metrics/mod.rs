//! What the crate measures by itself (process and Tokio runtime), and how metrics are
//! aggregated: the composed view, the temporality, the overflow warning, the Prometheus
//! endpoint.

mod overflow;
mod process;
#[cfg(feature = "prometheus")]
pub(crate) mod prometheus;
mod runtime;
mod view;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry::InstrumentationScope;
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::metrics::{MeterProviderBuilder, SdkMeterProvider};

use crate::config::{MetricSettings, Temporality};

pub(crate) use overflow::OverflowReporter;
pub(crate) use process::ProcessReader;
pub(crate) use runtime::RuntimeSlot;
pub use view::MetricView;
pub(crate) use view::ViewFn;

/// What the meter provider is built with besides its exporters.
#[derive(Clone)]
pub(crate) struct MetricsSetup {
    pub(crate) settings: MetricSettings,
    pub(crate) views: Vec<ViewFn>,
    pub(crate) overflow: Arc<OverflowReporter>,
    pub(crate) runtime: Arc<RuntimeSlot>,
    /// Where `/proc` is read from (`/`; a fixture folder in tests).
    pub(crate) root: PathBuf,
}

impl MetricsSetup {
    pub(crate) fn new(
        settings: MetricSettings,
        views: Vec<ViewFn>,
        report_interval: Duration,
        runtime: Arc<RuntimeSlot>,
        root: PathBuf,
    ) -> Self {
        let overflow = Arc::new(OverflowReporter::new(
            report_interval,
            settings.cardinality_limit,
        ));
        MetricsSetup {
            settings,
            views,
            overflow,
            runtime,
            root,
        }
    }

    /// The one view the SDK sees: the user's views over the crate's defaults.
    pub(crate) fn configure(&self, builder: MeterProviderBuilder) -> MeterProviderBuilder {
        let (views, settings) = (self.views.clone(), self.settings.clone());
        builder.with_view(move |instrument| view::stream_for(instrument, &views, &settings))
    }

    /// Wraps a push exporter: the configured temporality, and the overflow warning.
    pub(crate) fn watch<E: PushMetricExporter>(&self, exporter: E) -> Watched<E> {
        Watched {
            inner: exporter,
            temporality: sdk_temporality(self.settings.temporality),
            overflow: self.overflow.clone(),
        }
    }

    /// Registers the process and runtime instruments that are switched on.
    pub(crate) fn register_builtin(&self, provider: &SdkMeterProvider) {
        let scope = InstrumentationScope::builder("service-telemetry")
            .with_version(env!("CARGO_PKG_VERSION"))
            .build();
        let meter = provider.meter_with_scope(scope);
        if self.settings.process_metrics {
            process::register(&meter, Arc::new(ProcessReader::new(self.root.clone())));
        }
        if self.settings.tokio_metrics {
            runtime::register(&meter, self.runtime.clone());
        }
    }
}

/// Registers the crate's process and Tokio runtime instruments (the tables in the README) on a
/// meter provider built by hand; `init` does this on its own provider. `runtime` is the Tokio
/// runtime to report (`None`: the current one, if there is one).
///
/// ```
/// use opentelemetry_sdk::metrics::SdkMeterProvider;
///
/// let provider = SdkMeterProvider::builder().build();
/// service_telemetry::register_builtin_metrics(&provider, None);
/// ```
pub fn register_builtin_metrics(
    provider: &SdkMeterProvider,
    runtime: Option<tokio::runtime::Handle>,
) {
    let slot = Arc::new(RuntimeSlot::default());
    match runtime {
        Some(handle) => slot.offer(handle),
        None => slot.offer_current(),
    }
    let setup = MetricsSetup::new(
        MetricSettings::default(),
        Vec::new(),
        crate::DEFAULT_EXPORT_REPORT_INTERVAL,
        slot,
        PathBuf::from("/"),
    );
    setup.register_builtin(provider);
}

fn sdk_temporality(t: Temporality) -> opentelemetry_sdk::metrics::Temporality {
    use opentelemetry_sdk::metrics::Temporality as T;
    match t {
        Temporality::Delta => T::Delta,
        Temporality::LowMemory => T::LowMemory,
        _ => T::Cumulative,
    }
}

/// A push exporter with the resolved temporality, whose exports are scanned for overflow.
#[derive(Debug)]
pub(crate) struct Watched<E> {
    inner: E,
    temporality: opentelemetry_sdk::metrics::Temporality,
    overflow: Arc<OverflowReporter>,
}

impl<E: PushMetricExporter> PushMetricExporter for Watched<E> {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        let overflowed = overflow::overflowed_metrics(metrics);
        if !overflowed.is_empty() {
            self.overflow.report(overflowed);
        }
        self.inner.export(metrics).await
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn temporality(&self) -> opentelemetry_sdk::metrics::Temporality {
        self.temporality
    }
}
