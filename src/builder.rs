//! The builder: code defaults, then `init` wires config, pipelines and the subscriber together.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use tracing::{Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Filter, SubscriberExt};
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::config::{Config, ConfigWarning, Defaults, ResourceDetector, Signal};
use crate::error::InitError;
use crate::export::{self, CustomExporters, ExportProblem, Pipelines};
use crate::logs::{BufferedWriter, JsonLayer, LogWriter, install_panic_hook};
use crate::metrics::{MetricView, MetricsSetup, RuntimeSlot, ViewFn};
use crate::resource::{DETECTION_BUDGET, Detection, DetectionInput, DetectorEnv};
use crate::telemetry::{DEFAULT_FLUSH_TIMEOUT, Inner, Telemetry};

type Lookup = Box<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// What [`TelemetryBuilder::assemble`] builds before anything global is touched.
struct Parts {
    config: Config,
    warnings: Vec<ConfigWarning>,
    pipelines: Pipelines,
    problems: Vec<ExportProblem>,
    logs_open: Arc<AtomicBool>,
    dispatch: tracing::Dispatch,
    resource: opentelemetry_sdk::Resource,
    detection: Option<Detection>,
    runtime: Arc<RuntimeSlot>,
    log_filter: LogFilterHandle,
}

/// Telemetry installed for one thread by [`TelemetryBuilder::set_default`]; dropping it
/// restores the previous subscriber and shuts the pipelines down.
#[must_use = "the subscriber is uninstalled when this guard is dropped"]
pub struct ScopedTelemetry {
    telemetry: Telemetry,
    _scope: tracing::dispatcher::DefaultGuard,
}

impl ScopedTelemetry {
    /// The telemetry guard (flush, shutdown, config).
    pub fn telemetry(&self) -> &Telemetry {
        &self.telemetry
    }
}

impl std::fmt::Debug for ScopedTelemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScopedTelemetry")
            .field("telemetry", &self.telemetry)
            .finish_non_exhaustive()
    }
}

/// Code defaults for [`Telemetry`]; the environment overrides every one of them.
///
/// ```no_run
/// let _telemetry = service_telemetry::Telemetry::builder()
///     .service_name("checkout")
///     .service_version(env!("CARGO_PKG_VERSION"))
///     .export_enabled_by_default(true)
///     .try_init()?;
/// # Ok::<(), service_telemetry::InitError>(())
/// ```
#[must_use = "a builder does nothing until `init` or `try_init` is called"]
pub struct TelemetryBuilder {
    defaults: Defaults,
    writer: Arc<dyn LogWriter>,
    lookup: Lookup,
    flush_timeout: Duration,
    panic_hook: bool,
    export_report_interval: Duration,
    custom_exporters: CustomExporters,
    resource_attributes: Vec<(String, String)>,
    views: Vec<ViewFn>,
    detection_root: std::path::PathBuf,
    /// Whether `with_writer` replaced stdout (pretty lines are coloured only on stdout).
    custom_writer: bool,
    skip_unsampled_children: bool,
    direct_spans: bool,
}

impl Default for TelemetryBuilder {
    fn default() -> Self {
        TelemetryBuilder {
            defaults: Defaults::default(),
            writer: Arc::new(BufferedWriter::stdout()),
            lookup: Box::new(crate::config::env_lookup),
            flush_timeout: DEFAULT_FLUSH_TIMEOUT,
            panic_hook: true,
            export_report_interval: export::DEFAULT_EXPORT_REPORT_INTERVAL,
            custom_exporters: CustomExporters::default(),
            resource_attributes: Vec::new(),
            views: Vec::new(),
            detection_root: std::path::PathBuf::from("/"),
            custom_writer: false,
            skip_unsampled_children: false,
            direct_spans: false,
        }
    }
}

impl std::fmt::Debug for TelemetryBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelemetryBuilder")
            .field("defaults", &self.defaults)
            .field("flush_timeout", &self.flush_timeout)
            .finish_non_exhaustive()
    }
}

impl TelemetryBuilder {
    /// `service.name` when `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES` name none.
    /// Default is the executable's name.
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.defaults.service_name = Some(name.into());
        self
    }

    /// `service.version`, unless `OTEL_RESOURCE_ATTRIBUTES` sets one. Default is none;
    /// `env!("CARGO_PKG_VERSION")` is the usual value.
    pub fn service_version(mut self, version: impl Into<String>) -> Self {
        self.defaults.service_version = Some(version.into());
        self
    }

    /// Whether export is on when `OTEL_ENABLED` is unset. Default is `false`: managed
    /// deployments that always run a collector turn it on; self-hosted installs leave it off.
    pub fn export_enabled_by_default(mut self, enabled: bool) -> Self {
        self.defaults.export_enabled = enabled;
        self
    }

    /// Log level or filter directives used when `LOG_LEVEL` and `RUST_LOG` are unset.
    /// Default is `info` (`debug` in a development deployment environment).
    pub fn default_log_level(mut self, filter: impl Into<String>) -> Self {
        self.defaults.log_level = Some(filter.into());
        self
    }

    /// Sends JSON lines to `writer` instead of the default, a [`BufferedWriter`] to stdout
    /// (for tests: [`crate::MemoryWriter`]).
    pub fn with_writer(mut self, writer: impl LogWriter) -> Self {
        self.writer = Arc::new(writer);
        self.custom_writer = true;
        self
    }

    /// Reads configuration through `lookup` instead of the process environment.
    pub fn env_lookup(
        mut self,
        lookup: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.lookup = Box::new(lookup);
        self
    }

    /// Total bound for flushing all signals when the guard is dropped or [`Telemetry::flush`] is called. Default is 5 s. (The whole-process shutdown budget is [`shutdown_timeout`](Self::shutdown_timeout).)
    pub fn flush_timeout(mut self, timeout: Duration) -> Self {
        self.flush_timeout = timeout;
        self
    }

    /// Budget for the whole graceful shutdown run by [`crate::Shutdown`], used when
    /// `SHUTDOWN_TIMEOUT_MS` is unset. Default 30 s.
    pub fn shutdown_timeout(mut self, budget: Duration) -> Self {
        self.defaults.shutdown_timeout = Some(budget);
        self
    }

    /// Pause between the shutdown signal and the first step, used when
    /// `SHUTDOWN_DRAIN_DELAY_MS` is unset. Default none.
    pub fn shutdown_drain_delay(mut self, delay: Duration) -> Self {
        self.defaults.shutdown_drain_delay = Some(delay);
        self
    }

    /// Shortest interval between two warnings about one signal's failing exports or full
    /// queue. Default [`DEFAULT_EXPORT_REPORT_INTERVAL`](crate::DEFAULT_EXPORT_REPORT_INTERVAL)
    /// (30 s): the first failure is logged at once, then at most one summary per interval with
    /// the counts of failed exports and lost items.
    pub fn export_report_interval(mut self, interval: Duration) -> Self {
        self.export_report_interval = interval;
        self
    }

    /// Sends spans to `exporter` instead of OTLP or the console, whatever `OTEL_ENABLED` and
    /// `OTEL_TRACES_EXPORTER` say; batching, the queue bound and the export counts in
    /// [`Telemetry::export_stats`] apply as for OTLP. For tests (the SDK's
    /// `InMemorySpanExporter`) and for exporters this crate does not ship.
    ///
    /// ```
    /// use opentelemetry_sdk::trace::InMemorySpanExporter;
    ///
    /// let spans = InMemorySpanExporter::default();
    /// let scoped = service_telemetry::Telemetry::builder()
    ///     .env_lookup(|_| None)
    ///     .with_writer(service_telemetry::MemoryWriter::new())
    ///     .with_span_exporter(spans.clone())
    ///     .set_default();
    /// tracing::info_span!("checkout").in_scope(|| {});
    /// scoped.telemetry().flush()?;
    /// assert_eq!(spans.get_finished_spans()?[0].name, "checkout");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_span_exporter(
        mut self,
        exporter: impl opentelemetry_sdk::trace::SpanExporter + 'static,
    ) -> Self {
        self.custom_exporters.spans = Some(CustomExporters::spans(exporter));
        self
    }

    /// Sends log records to `exporter` instead of OTLP or the console, whatever `OTEL_ENABLED`
    /// and `OTEL_LOGS_EXPORTER` say; JSON lines on the writer are unaffected. See
    /// [`with_span_exporter`](Self::with_span_exporter).
    pub fn with_log_exporter(
        mut self,
        exporter: impl opentelemetry_sdk::logs::LogExporter + 'static,
    ) -> Self {
        self.custom_exporters.logs = Some(CustomExporters::logs(exporter));
        self
    }

    /// A resource attribute (`deployment.environment.name`, `service.namespace`, even
    /// `service.instance.id`). It beats what the detectors find; `OTEL_RESOURCE_ATTRIBUTES`
    /// beats it. `service.name` and `service.version` have their own methods.
    pub fn resource_attribute(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.resource_attributes.push((key.into(), value.into()));
        self
    }

    /// Turns one resource detector off, unless `OTEL_RESOURCE_DETECTORS_DISABLED` is set
    /// (which then decides alone). All detectors are on by default.
    pub fn disable_resource_detector(mut self, detector: ResourceDetector) -> Self {
        self.defaults.disabled_detectors.push(detector);
        self
    }

    /// Reads the detectors' files (`/proc/self/...`, `/etc/...`, the Kubernetes service-account
    /// namespace file) and the process metrics' `/proc/self` under `root` instead of `/`. For
    /// tests with fixture files.
    pub fn resource_detection_root(mut self, root: impl Into<std::path::PathBuf>) -> Self {
        self.detection_root = root.into();
        self
    }

    /// Whether the `process.*` metrics are on when `OTEL_PROCESS_METRICS_ENABLED` is unset.
    /// Default on (whenever metrics are exported).
    pub fn process_metrics(mut self, enabled: bool) -> Self {
        self.defaults.process_metrics = Some(enabled);
        self
    }

    /// Whether the `tokio.*` runtime metrics are on when `OTEL_TOKIO_METRICS_ENABLED` is
    /// unset. Default on (whenever metrics are exported).
    pub fn tokio_metrics(mut self, enabled: bool) -> Self {
        self.defaults.tokio_metrics = Some(enabled);
        self
    }

    /// The log line format used when `LOG_FORMAT` is unset. Default [`crate::LogFormat::Json`],
    /// the production contract; [`crate::LogFormat::Pretty`] suits a laptop.
    pub fn log_format(mut self, format: crate::LogFormat) -> Self {
        self.defaults.log_format = Some(format);
        self
    }

    /// The RPC conventions the gRPC layers emit when `OTEL_SEMCONV_STABILITY_OPT_IN` names
    /// neither `rpc` nor `rpc/dup`. Default [`crate::RpcConventions::Stable`] (v1.44.0);
    /// [`crate::RpcConventions::Experimental`] keeps the v1.37.0 names for dashboards not yet migrated,
    /// and lets operators migrate per deployment with the variable, as the conventions'
    /// migration guide intends.
    pub fn rpc_conventions(mut self, conventions: crate::RpcConventions) -> Self {
        self.defaults.rpc_conventions = Some(conventions);
        self
    }

    /// Most attribute sets per metric, used when `OTEL_METRICS_CARDINALITY_LIMIT` is unset.
    /// Default 2000.
    pub fn metrics_cardinality_limit(mut self, limit: usize) -> Self {
        self.defaults.cardinality_limit = Some(limit);
        self
    }

    /// A metric view: for each instrument the first view returning `Some` decides its name,
    /// kept attributes, aggregation and cardinality limit (see [`MetricView`]). May be called
    /// several times; views are tried in the order given.
    pub fn with_view(
        mut self,
        view: impl Fn(&opentelemetry_sdk::metrics::Instrument) -> Option<MetricView>
        + Send
        + Sync
        + 'static,
    ) -> Self {
        self.views.push(Arc::new(view));
        self
    }

    /// Opt-in: a span opened while the current OpenTelemetry context holds a valid,
    /// not-sampled span is not built through `tracing-opentelemetry` at all. With a
    /// parent-based sampler (the default) such a span would be dropped anyway; skipping it
    /// saves the bookkeeping the SDK does before it samples, so the child spans of a
    /// sampled-out request cost little more than the `tracing` span itself. Roots and spans
    /// under a sampled or remote-only context are built as before.
    ///
    /// The limits, which are why this is not the default:
    ///
    /// - `OpenTelemetrySpanExt` has no OpenTelemetry span to reach on a skipped span:
    ///   `context()` answers an empty context, and `set_parent`, `add_link`, `set_attribute`
    ///   and `set_status` do nothing. Propagation written against `context()` (for example
    ///   third-party HTTP middleware) then sends no `traceparent`, and the next service starts
    ///   a trace of its own. This crate's layers and [`crate::propagation::inject_current`]
    ///   use [`crate::propagation::context_of`], which falls back to the current context, so
    ///   they still send the not-sampled parent's `traceparent`.
    /// - The decision sees only the current context, not the span's own parent: a span with
    ///   an explicit parent (`parent: &other` or `parent: None`) opened inside a not-sampled
    ///   span is skipped too, even when `other` is sampled.
    /// - Only right for parent-based samplers. A sampler that can keep a child of a
    ///   not-sampled parent (for example `OTEL_TRACES_SAMPLER=traceidratio`) would have kept
    ///   some of what this skips.
    /// - Log lines inside a skipped span carry the trace id and the span id of its nearest
    ///   built ancestor.
    pub fn skip_spans_under_unsampled_parents(mut self) -> Self {
        self.skip_unsampled_children = true;
        self
    }

    /// Opt-in: spans are built by a layer of this crate's own instead of
    /// `tracing-opentelemetry`'s. Each `tracing` span becomes an OpenTelemetry span when it
    /// opens: the sampler decides there, a span that is not recorded (sampled out, or export
    /// off) never has its fields turned into attributes, and nothing but the span's context is
    /// kept per span. Measured against `tracing-opentelemetry`'s defaults, a kept span costs
    /// about 0.6 of theirs, a sampled-out one about 0.5, and one with export off about 0.23
    /// (see the README's performance section). The exported spans carry the same data: the same `otel.*` fields, value
    /// conversions, `code.file.path` and `code.line.number`, parents and end times. This
    /// crate's layers (HTTP, gRPC, databases) and [`crate::propagation::context_of`] work
    /// with either.
    ///
    /// The limits, which are why this is not the default:
    ///
    /// - `tracing_opentelemetry::OpenTelemetrySpanExt` reaches `tracing-opentelemetry`'s layer
    ///   through a type that crate keeps private, so on these spans it does nothing:
    ///   `context()` answers an empty context, and `set_parent`, `add_link`, `set_attribute`
    ///   and `set_status` are ignored. Third-party middleware that propagates through
    ///   `context()` then sends no `traceparent`. Use [`crate::propagation::context_of`] for
    ///   the context and [`crate::spans::SpanTelemetryExt`] for attributes and status (both
    ///   work under either layer), or record them as span fields (declared with
    ///   `tracing::field::Empty`; `otel.status_code = "ERROR"` sets the status).
    /// - A span's parent and kind are fixed when it opens. To give a span a remote parent, make
    ///   that context current while the span is created
    ///   (`let _guard = remote.attach(); let span = info_span!(...);`); an `otel.kind`
    ///   recorded later is ignored. An `otel.name` recorded later renames the span.
    /// - Takes the place of [`Self::skip_spans_under_unsampled_parents`], which it makes
    ///   unnecessary: a span under a not-sampled parent is decided at once.
    pub fn direct_spans(mut self) -> Self {
        self.direct_spans = true;
        self
    }

    /// Leaves the panic hook alone. By default a hook logs each panic as one `error` line and
    /// then calls the hook that was installed before.
    pub fn without_panic_hook(mut self) -> Self {
        self.panic_hook = false;
        self
    }

    /// The configuration this builder would use, with its warnings, without installing anything.
    pub fn config(&self) -> (Config, Vec<ConfigWarning>) {
        Config::resolve(&self.defaults, &self.lookup)
    }

    /// Installs telemetry globally: the `tracing` subscriber (and the `log` bridge), the
    /// propagator and the tracer, meter and logger providers.
    ///
    /// Fails only when another global subscriber is already set. Nothing in the environment
    /// makes it fail, it never blocks on the network and it works with or without a Tokio
    /// runtime of either flavour.
    pub fn try_init(mut self) -> Result<Telemetry, InitError> {
        let parts = self.assemble();
        if tracing::dispatcher::set_global_default(parts.dispatch.clone()).is_err() {
            // The same bounded, parallel shutdown as any guard's, so this cannot hang either.
            let _ = self.guard(parts).shutdown(self.flush_timeout);
            return Err(InitError::SubscriberAlreadySet);
        }
        crate::logs::install_writer(self.writer.clone());
        // Route `log` records into the same pipeline; an existing `log` logger is kept.
        let log_bridge = tracing_log::LogTracer::init().is_ok();
        crate::propagation::install(&parts.config.propagators);
        #[cfg(feature = "tower")]
        crate::instrument::set_rpc_conventions(parts.config.rpc_conventions);
        opentelemetry::global::set_tracer_provider(parts.pipelines.tracer_provider.clone());
        if let Some(meter_provider) = &parts.pipelines.meter_provider {
            opentelemetry::global::set_meter_provider(meter_provider.clone());
        }
        if self.panic_hook {
            install_panic_hook();
        }
        report(&parts, log_bridge);
        Ok(self.guard(parts))
    }

    /// Installs the subscriber for the current thread only, until the returned guard is
    /// dropped, and touches no global state (no global providers, propagator, `log` bridge
    /// or panic hook). For tests and benchmarks that must not install globals.
    pub fn set_default(mut self) -> ScopedTelemetry {
        let parts = self.assemble();
        let scope = tracing::dispatcher::set_default(&parts.dispatch);
        report(&parts, false);
        ScopedTelemetry {
            telemetry: self.guard(parts),
            _scope: scope,
        }
    }

    fn assemble(&mut self) -> Parts {
        let (config, warnings) = self.config();
        let custom = &self.custom_exporters;
        // Nothing exported: nobody reads the resource, so no detector runs.
        let detection = (config.export_enabled || custom.spans.is_some() || custom.logs.is_some())
            .then(|| {
                crate::resource::detect(DetectionInput {
                    detectors: config.resource_detectors.clone(),
                    root: self.detection_root.clone(),
                    env: DetectorEnv::from_lookup(&self.lookup),
                    budget: DETECTION_BUDGET,
                })
            });
        let resource = crate::resource::build(
            &config,
            &self.resource_attributes,
            detection.as_ref().unwrap_or(&Detection::default()),
        );
        let runtime = Arc::new(RuntimeSlot::default());
        runtime.offer_current();
        let metrics = MetricsSetup::new(
            config.metric_settings.clone(),
            self.views.clone(),
            self.export_report_interval,
            runtime.clone(),
            self.detection_root.clone(),
        );
        let (pipelines, problems) = export::build(
            &config,
            &resource,
            self.export_report_interval,
            std::mem::take(&mut self.custom_exporters),
            &metrics,
        );
        let logs_open = Arc::new(AtomicBool::new(true));
        let line_writer = match config.log_format {
            crate::LogFormat::Pretty => {
                // no-color.org: set and not empty turns colour off.
                let no_color = (self.lookup)("NO_COLOR").is_some_and(|v| !v.is_empty());
                let colour = !self.custom_writer
                    && !no_color
                    && std::io::IsTerminal::is_terminal(&std::io::stdout());
                Arc::new(crate::logs::PrettyWriter::new(self.writer.clone(), colour))
                    as Arc<dyn LogWriter>
            }
            _ => self.writer.clone(),
        };
        let admission = SpanAdmission {
            skip_unsampled_children: self.skip_unsampled_children && !self.direct_spans,
            direct_spans: self.direct_spans,
        };
        let (subscriber, log_filter) = subscriber(
            &config,
            &pipelines,
            line_writer,
            logs_open.clone(),
            admission,
        );
        let dispatch = subscriber.into();
        Parts {
            config,
            warnings,
            pipelines,
            problems,
            logs_open,
            dispatch,
            resource,
            detection,
            runtime,
            log_filter,
        }
    }

    fn guard(&self, parts: Parts) -> Telemetry {
        Telemetry::from_inner(Inner {
            config: parts.config,
            tracer_provider: parts.pipelines.tracer_provider,
            meter_provider: parts.pipelines.meter_provider,
            logger_provider: parts.pipelines.logger_provider,
            log_handoff: parts.pipelines.log_handoff,
            runtime: Mutex::new(parts.pipelines.runtime),
            ledgers: parts.pipelines.ledgers,
            closing: parts.pipelines.closing,
            writer: self.writer.clone(),
            flush_timeout: self.flush_timeout,
            shut_down: AtomicBool::new(false),
            logs_open: parts.logs_open,
            runtime_slot: parts.runtime,
            #[cfg(feature = "prometheus")]
            prometheus: Mutex::new(parts.pipelines.prometheus),
            log_filter: Some(parts.log_filter),
        })
    }

    /// Like [`try_init`](Self::try_init), but never fails: when a global subscriber is
    /// already set, it says so on stderr and returns a guard with export off, so the service
    /// still starts.
    pub fn init(self) -> Telemetry {
        let writer = self.writer.clone();
        let flush_timeout = self.flush_timeout;
        self.try_init().unwrap_or_else(|e| {
            eprintln!("service-telemetry: {e}");
            TelemetryBuilder {
                lookup: Box::new(|_| None),
                writer,
                flush_timeout,
                ..TelemetryBuilder::default()
            }
            .guard_without_export()
        })
    }

    /// A guard with export off and nothing installed, for unit tests of what owns one.
    #[cfg(test)]
    pub(crate) fn build_without_installing(self) -> Telemetry {
        self.guard_without_export()
    }

    fn guard_without_export(&self) -> Telemetry {
        let (config, _) = self.config();
        Telemetry::from_inner(Inner {
            config,
            tracer_provider: opentelemetry_sdk::trace::SdkTracerProvider::builder().build(),
            meter_provider: None,
            logger_provider: None,
            log_handoff: None,
            runtime: Mutex::new(None),
            ledgers: Vec::new(),
            closing: crate::export::Closing::default(),
            writer: self.writer.clone(),
            flush_timeout: self.flush_timeout,
            shut_down: AtomicBool::new(false),
            logs_open: Arc::new(AtomicBool::new(false)),
            runtime_slot: Arc::new(RuntimeSlot::default()),
            #[cfg(feature = "prometheus")]
            prometheus: Mutex::new(None),
            log_filter: None,
        })
    }
}

/// The handle that swaps the level filter of a running subscriber.
pub(crate) type LogFilterHandle = crate::logs::LiveFilter;

/// The full subscriber: level filter (swappable at run time), span export, JSON lines and
/// log-record export.
pub(crate) fn subscriber(
    config: &Config,
    pipelines: &Pipelines,
    writer: Arc<dyn LogWriter>,
    logs_open: Arc<AtomicBool>,
    admission: SpanAdmission,
) -> (impl Subscriber + Send + Sync, LogFilterHandle) {
    // Validated in Config; the fallback only guards against a future mismatch.
    let filter = EnvFilter::builder()
        .parse(&config.log_filter)
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let filter = crate::logs::LiveFilter::new(filter, &config.log_filter);
    let log_filter = filter.clone();
    let tracer = if pipelines.traces_exported {
        crate::propagation::RandomFlagTracer::new(
            pipelines.tracer_provider.tracer("service-telemetry"),
            crate::export::sdk_sampler(config.sampler),
        )
    } else {
        crate::propagation::RandomFlagTracer::minting(crate::export::sdk_sampler(config.sampler))
    };
    // A bare `target` attribute is no registry name (semconv v1.44.0 `code.*` registry); the
    // location's `code.module.name` is dropped from exported spans by the admission check.
    let current_tracer = crate::propagation::CurrentTracer(tracer.clone());
    let (spans, direct_spans) = if admission.direct_spans {
        let direct = crate::spans::DirectSpans::new(tracer, ExportableSpans::exportable);
        (None, Some(direct))
    } else {
        let spans = tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_tracked_inactivity(false)
            .with_threads(false)
            .with_target(false)
            .with_filter(ExportableSpans(admission));
        (Some(spans), None)
    };
    let log_records = pipelines
        .logger_provider
        .as_ref()
        .zip(pipelines.log_handoff.clone())
        .map(|(provider, handoff)| {
            crate::export::LogRecordLayer::new(provider, handoff, logs_open.clone(), |target| {
                !is_internal(target)
            })
        });
    let skipped_spans =
        admission
            .skip_unsampled_children
            .then_some(crate::propagation::SkippedSpans {
                skipped: ExportableSpans::skipped_under_unsampled_parent,
            });
    let subscriber = Registry::default()
        .with(filter)
        .with(spans)
        .with(direct_spans)
        .with(skipped_spans)
        .with(current_tracer)
        .with(JsonLayer::new(
            writer,
            config.logs.value_length_limit,
            pipelines.closing.clone(),
        ))
        .with(log_records);
    (subscriber, log_filter)
}

/// Targets whose telemetry must never be exported: the SDK's own diagnostics and the
/// transports the exporters use, which would otherwise feed back into themselves.
pub(crate) fn is_internal(target: &str) -> bool {
    if target.starts_with("opentelemetry") {
        return true;
    }
    [
        "hyper",
        "hyper_util",
        "h2",
        "tonic",
        "tower",
        "tower_http",
        "reqwest",
        "rustls",
        "tokio_util",
    ]
    .iter()
    .any(|p| {
        target == *p
            || target
                .strip_prefix(p)
                .is_some_and(|rest| rest.starts_with("::"))
    })
}

/// Which spans the OpenTelemetry layer builds, besides the exportable ones.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SpanAdmission {
    /// See [`TelemetryBuilder::skip_spans_under_unsampled_parents`].
    pub(crate) skip_unsampled_children: bool,
    /// See [`TelemetryBuilder::direct_spans`].
    pub(crate) direct_spans: bool,
}

/// Spans only (log events go out as log records, not span events), minus internal targets,
/// and, when opted in, minus spans opened under a not-sampled context.
struct ExportableSpans(SpanAdmission);

impl ExportableSpans {
    fn exportable(meta: &Metadata<'_>) -> bool {
        meta.is_span() && !is_internal(meta.target())
    }

    /// The spans skipped when opted in, decided from the context they open in.
    fn skipped_under_unsampled_parent(meta: &Metadata<'_>) -> bool {
        Self::exportable(meta) && crate::propagation::under_unsampled_parent()
    }
}

impl<S: Subscriber> Filter<S> for ExportableSpans {
    fn enabled(&self, meta: &Metadata<'_>, _: &Context<'_, S>) -> bool {
        Self::exportable(meta)
            && !(self.0.skip_unsampled_children && crate::propagation::under_unsampled_parent())
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> tracing::subscriber::Interest {
        let exportable = Self::exportable(meta);
        if exportable && self.0.skip_unsampled_children {
            // Decided per span, from the context it opens in.
            return tracing::subscriber::Interest::sometimes();
        }
        interest(exportable)
    }
}

fn interest(enabled: bool) -> tracing::subscriber::Interest {
    if enabled {
        tracing::subscriber::Interest::always()
    } else {
        tracing::subscriber::Interest::never()
    }
}

/// Logs what `init` found once the logger is up: one warning per unusable setting, one per
/// signal that fell back to no-op, then one line with the effective settings.
fn report(parts: &Parts, log_bridge: bool) {
    let Parts {
        config,
        warnings,
        problems,
        pipelines,
        resource,
        detection,
        ..
    } = parts;
    for w in warnings {
        warn_config(w);
    }
    for p in detection.iter().flat_map(|d| &d.problems) {
        tracing::warn!(
            target: "service_telemetry::resource",
            detector = %p.detector,
            cause = %p.cause,
            "resource detector {} skipped: {}",
            p.detector,
            p.cause
        );
    }
    for p in problems {
        tracing::warn!(
            target: "service_telemetry::export",
            signal = %p.signal,
            cause = %p.cause,
            "{} exporter could not be built, falling back to no-op: {}",
            p.signal,
            p.cause
        );
    }
    let describe = |signal: Signal| -> String {
        let c = config.signal(signal);
        let custom = match signal {
            Signal::Traces => pipelines.custom_traces,
            Signal::Logs => pipelines.custom_logs,
            _ => false,
        };
        if custom {
            return "custom exporter".to_owned();
        }
        if !config.exports(signal) {
            return "none".to_owned();
        }
        let failed = problems.iter().any(|p| p.signal == signal && !p.prometheus);
        let mut parts = Vec::new();
        if c.otlp {
            parts.push(format!(
                "otlp {} {}{}{}",
                c.protocol.as_str(),
                c.endpoint,
                if c.headers.is_empty() {
                    String::new()
                } else {
                    format!(" headers={}", c.headers)
                },
                if failed { " (failed: no-op)" } else { "" }
            ));
        }
        if c.console {
            parts.push("console".to_owned());
        }
        if c.prometheus {
            #[cfg(feature = "prometheus")]
            let served = pipelines.prometheus.as_ref().map(|p| {
                p.addresses()
                    .iter()
                    .map(|a| format!("http://{a}/metrics"))
                    .collect::<Vec<_>>()
                    .join(" ")
            });
            #[cfg(not(feature = "prometheus"))]
            let served: Option<String> = None;
            parts.push(match served {
                Some(at) => format!("prometheus {at}"),
                None => "prometheus (failed: no endpoint)".to_owned(),
            });
        }
        parts.join(" + ")
    };
    let identity = |key: &'static str| crate::resource::text(resource, key).unwrap_or_default();
    tracing::info!(
        target: "service_telemetry",
        export_enabled = config.export_enabled,
        service.name = %config.service_name,
        service.version = config.service_version.as_deref().unwrap_or(""),
        service.instance.id = %identity("service.instance.id"),
        host.name = %identity("host.name"),
        k8s.pod.name = %identity("k8s.pod.name"),
        aws.ecs.task.arn = %identity("aws.ecs.task.arn"),
        resource_detection_ms = detection.as_ref().map_or(0, |d| d.elapsed.as_millis() as u64),
        traces = %describe(Signal::Traces),
        metrics = %describe(Signal::Metrics),
        logs = %describe(Signal::Logs),
        sampler = %config.sampler,
        propagators = ?config.propagators,
        log_filter = %config.log_filter,
        log_bridge,
        shutdown_timeout_ms = config.shutdown.timeout.as_millis() as u64,
        shutdown_drain_delay_ms = config.shutdown.drain_delay.as_millis() as u64,
        "telemetry initialised"
    );
}

/// One structured warning for a value that could not be used.
pub(crate) fn warn_config(w: &ConfigWarning) {
    match w.kind {
        crate::ConfigWarningKind::Mismatch => tracing::warn!(
            target: "service_telemetry::config",
            variable = %w.variable,
            value = %w.value,
            reason = %w.reason,
            fix = %w.used_instead,
            "configuration mismatch: {w}"
        ),
        _ => tracing::warn!(
            target: "service_telemetry::config",
            variable = %w.variable,
            value = %w.value,
            reason = %w.reason,
            used_instead = %w.used_instead,
            "invalid configuration: {w}"
        ),
    }
}
