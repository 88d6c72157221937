//! The three export pipelines (traces, metrics, logs), with a no-op fallback for each.
//!
//! Building never fails: a pipeline that cannot be built is left out and reported as an
//! [`ExportProblem`], which `init` logs as one warning once the logger is up.

mod accounting;
#[cfg(any(feature = "grpc", feature = "http"))]
mod bounded;
mod closing;
mod console;
#[cfg(feature = "grpc")]
mod grpc_spans;
#[cfg(feature = "http")]
mod http_spans;
mod log_batches;
mod log_bridge;
mod otlp;
#[cfg(any(feature = "grpc", feature = "http"))]
mod otlp_wire;
mod pipeline;
mod span_batches;
#[cfg(any(feature = "grpc", feature = "http"))]
mod span_encoder;
#[cfg(feature = "tls")]
mod tls;

pub(crate) use accounting::Ledger;
#[cfg(feature = "tower")]
pub(crate) use accounting::error_type_from_text;
pub use accounting::{DEFAULT_EXPORT_REPORT_INTERVAL, ExportStats, SignalStats};

use opentelemetry_sdk::Resource;
use opentelemetry_sdk::logs::{LoggerProviderBuilder, SdkLoggerProvider};
use opentelemetry_sdk::metrics::{MeterProviderBuilder, SdkMeterProvider};
use opentelemetry_sdk::trace::{SdkTracerProvider, TracerProviderBuilder};
use tokio::runtime::{Handle, Runtime};

use crate::config::{Config, Protocol, Sampler, Signal, SignalConfig};
use crate::metrics::MetricsSetup;
#[cfg(any(feature = "grpc", feature = "http"))]
use bounded::{Exporters, OnRuntime};
pub(crate) use closing::Closing;
use console::Console;
use log_batches::{BatchedLogs, RecordUse};
pub(crate) use log_bridge::{LogHandoff, LogRecordLayer};
#[cfg_attr(not(any(feature = "grpc", feature = "http")), allow(unused_imports))]
use pipeline::{Accounted, AdmittedLogs, AdmittedSpans};
use std::sync::Arc;
use std::time::Duration;

/// Why one signal's exporter could not be built; the signal falls back to no-op.
#[derive(Debug, Clone)]
pub(crate) struct ExportProblem {
    pub(crate) signal: Signal,
    pub(crate) cause: String,
    /// About the Prometheus endpoint, not the signal's OTLP exporter (which may well work).
    pub(crate) prometheus: bool,
}

/// Adds a span exporter supplied in code (accounted, behind the admission check) to the
/// tracer provider builder.
pub(crate) type AddSpanExporter = Box<
    dyn FnOnce(
            TracerProviderBuilder,
            &SignalConfig,
            Arc<Ledger>,
            &MetricsSetup,
        ) -> TracerProviderBuilder
        + Send
        + Sync,
>;
/// Adds a log exporter supplied in code to the logger provider builder.
pub(crate) type AddLogExporter = Box<
    dyn FnOnce(
            LoggerProviderBuilder,
            &SignalConfig,
            Arc<Ledger>,
            &MetricsSetup,
        ) -> LoggerProviderBuilder
        + Send
        + Sync,
>;

/// Exporters a service supplies in code; each replaces OTLP and the console for its signal.
#[derive(Default)]
pub(crate) struct CustomExporters {
    pub(crate) spans: Option<AddSpanExporter>,
    pub(crate) logs: Option<AddLogExporter>,
}

impl CustomExporters {
    pub(crate) fn spans<E>(exporter: E) -> AddSpanExporter
    where
        E: opentelemetry_sdk::trace::SpanExporter + 'static,
    {
        Box::new(move |builder, config, ledger, metrics| {
            with_spans(
                builder,
                Accounted::new(exporter, ledger.clone()),
                config,
                Some(ledger),
                metrics,
            )
        })
    }

    pub(crate) fn logs<E>(exporter: E) -> AddLogExporter
    where
        E: opentelemetry_sdk::logs::LogExporter + 'static,
    {
        // A custom exporter replaces the console one too: nothing reads the record after it.
        Box::new(move |builder, config, ledger, _metrics| {
            with_logs_as(
                builder,
                Accounted::new(exporter, ledger.clone()),
                config,
                Some(ledger),
                RecordUse::Take,
            )
        })
    }
}

/// The providers `init` installs, plus the runtime that drives gRPC exports.
pub(crate) struct Pipelines {
    pub(crate) tracer_provider: SdkTracerProvider,
    pub(crate) meter_provider: Option<SdkMeterProvider>,
    pub(crate) logger_provider: Option<SdkLoggerProvider>,
    /// Carries events from the callers to the logger provider (see [`LogHandoff`]).
    pub(crate) log_handoff: Option<LogHandoff>,
    pub(crate) runtime: Option<Runtime>,
    /// One per OTLP or custom pipeline that was built.
    pub(crate) ledgers: Vec<Arc<Ledger>>,
    /// Whether spans go to any exporter (OTLP, console or one supplied in code); when not,
    /// spans only mint the contexts of log lines and propagation.
    pub(crate) traces_exported: bool,
    /// Which signals go to an exporter supplied in code.
    pub(crate) custom_traces: bool,
    pub(crate) custom_logs: bool,
    /// How far the shutdown has got (see [`Closing`]).
    pub(crate) closing: Closing,
    /// The scrape endpoint, when `OTEL_METRICS_EXPORTER` lists `prometheus` and it could bind.
    #[cfg(feature = "prometheus")]
    pub(crate) prometheus: Option<crate::metrics::prometheus::PrometheusServer>,
}

pub(crate) fn build(
    config: &Config,
    resource: &Resource,
    report_interval: Duration,
    custom: CustomExporters,
    metrics: &MetricsSetup,
) -> (Pipelines, Vec<ExportProblem>) {
    let (custom_traces, custom_logs) = (custom.spans.is_some(), custom.logs.is_some());
    let closing = Closing::default();
    let mut problems = Vec::new();
    let mut ledgers = Vec::new();
    let runtime = if needs_runtime(config) {
        match export_runtime() {
            Ok(rt) => Some(rt),
            Err(e) => {
                problems.push(ExportProblem {
                    signal: Signal::Traces,
                    cause: format!("could not start the export runtime for gRPC: {e}"),
                    prometheus: false,
                });
                None
            }
        }
    } else {
        None
    };
    let handle = runtime.as_ref().map(Runtime::handle);
    let transport = Transport {
        handle,
        closing: &closing,
    };

    let traces_exported = custom.spans.is_some() || config.exports(Signal::Traces);
    // The crate's tracer samples each span before the SDK does, on ids this generator then
    // hands the SDK (`RandomFlagTracer::new`).
    let mut traces = SdkTracerProvider::builder()
        .with_sampler(sdk_sampler(config.sampler))
        .with_id_generator(crate::propagation::DecidedIds::default())
        .with_resource(resource.clone());
    // The tracer provider exists even with nothing to export: it mints the ids of log lines.
    if let Some(add) = custom.spans {
        let ledger = Ledger::new(
            Signal::Traces,
            config.traces.batch.max_queue_size,
            report_interval,
        );
        traces = add(traces, &config.traces, ledger.clone(), metrics);
        ledgers.push(ledger);
    } else if config.exports(Signal::Traces) {
        traces = add_traces(
            traces,
            &config.traces,
            &transport,
            &mut problems,
            &mut ledgers,
            report_interval,
            metrics,
        )
        .0;
    }

    #[cfg(feature = "prometheus")]
    let mut prometheus = None;
    let meter_provider = config.exports(Signal::Metrics).then(|| {
        let builder =
            metrics.configure(SdkMeterProvider::builder().with_resource(resource.clone()));
        #[cfg_attr(not(feature = "prometheus"), allow(unused_mut))]
        let (mut builder, mut ok) = add_metrics(
            builder,
            &config.metrics,
            &transport,
            &mut problems,
            &mut ledgers,
            report_interval,
            metrics,
        );
        if config.metrics.prometheus {
            #[cfg(feature = "prometheus")]
            match crate::metrics::prometheus::start(
                &config.metric_settings.prometheus,
                metrics.overflow.clone(),
            ) {
                Ok((reader, server)) => {
                    builder = builder.with_reader(reader);
                    prometheus = Some(server);
                    ok = true;
                }
                Err(cause) => problems.push(ExportProblem {
                    signal: Signal::Metrics,
                    cause: format!("no Prometheus endpoint: {cause}"),
                    prometheus: true,
                }),
            }
            #[cfg(not(feature = "prometheus"))]
            problems.push(ExportProblem {
                signal: Signal::Metrics,
                cause: "exporter prometheus is not compiled in (enable the `prometheus` cargo feature of service-telemetry)".into(),
                prometheus: true,
            });
        }
        ok.then(|| builder.build())
    });

    let logger_provider = if let Some(add) = custom.logs {
        let ledger = Ledger::new(
            Signal::Logs,
            config.logs.batch.max_queue_size,
            report_interval,
        );
        let builder = SdkLoggerProvider::builder().with_resource(resource.clone());
        let provider = add(builder, &config.logs, ledger.clone(), metrics).build();
        ledgers.push(ledger);
        Some(Some(provider))
    } else {
        config.exports(Signal::Logs).then(|| {
            let builder = SdkLoggerProvider::builder().with_resource(resource.clone());
            let (builder, ok) = add_logs(
                builder,
                &config.logs,
                &transport,
                &mut problems,
                &mut ledgers,
                report_interval,
                metrics,
            );
            ok.then(|| builder.build())
        })
    };

    if let Some(Some(provider)) = &meter_provider {
        use opentelemetry::metrics::MeterProvider as _;
        let exporter_type = |signal: Signal| -> String {
            let custom = match signal {
                Signal::Traces => custom_traces,
                Signal::Logs => custom_logs,
                Signal::Metrics => false,
            };
            let kind = match signal {
                Signal::Traces => "span",
                Signal::Logs => "log",
                Signal::Metrics => "metric",
            };
            if custom {
                // "Anything else uses the language's type name" (otel registry).
                return format!("custom_{kind}_exporter");
            }
            let transport = match config.signal(signal).protocol {
                Protocol::Grpc => "grpc",
                _ => "http",
            };
            format!("otlp_{transport}_{kind}_exporter")
        };
        accounting::register_metrics(
            &provider.meter("service-telemetry"),
            &ledgers,
            &exporter_type,
        );
        metrics.register_builtin(provider);
    }

    let logger_provider = logger_provider.flatten();
    let log_handoff = logger_provider.as_ref().map(|provider| {
        let ledger = ledgers.iter().find(|l| l.signal() == Signal::Logs).cloned();
        LogHandoff::start(
            provider,
            config.logs.batch.max_queue_size,
            ledger,
            config.logs.batch.schedule_delay,
        )
    });
    let pipelines = Pipelines {
        tracer_provider: traces.build(),
        meter_provider: meter_provider.flatten(),
        logger_provider,
        log_handoff,
        runtime,
        ledgers,
        traces_exported,
        custom_traces,
        custom_logs,
        closing,
        #[cfg(feature = "prometheus")]
        prometheus,
    };
    (pipelines, problems)
}

/// What every OTLP exporter of one `build` shares: the runtime that drives gRPC, and the
/// shutdown's progress.
struct Transport<'a> {
    #[cfg_attr(not(any(feature = "grpc", feature = "http")), allow(dead_code))]
    handle: Option<&'a Handle>,
    #[cfg_attr(not(any(feature = "grpc", feature = "http")), allow(dead_code))]
    closing: &'a Closing,
}

fn needs_runtime(config: &Config) -> bool {
    cfg!(feature = "grpc")
        && Signal::ALL.iter().any(|&s| {
            let c = config.signal(s);
            config.exports(s) && c.otlp && c.protocol == Protocol::Grpc
        })
}

/// One worker thread is plenty for three batch exports; it is the thread that drives tonic's
/// connections whatever runtime (or none) the service uses.
fn export_runtime() -> std::io::Result<Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("otel-export")
        .enable_all()
        .build()
}

pub(crate) fn sdk_sampler(sampler: Sampler) -> opentelemetry_sdk::trace::Sampler {
    use opentelemetry_sdk::trace::Sampler as S;
    match sampler {
        Sampler::AlwaysOn => S::AlwaysOn,
        Sampler::AlwaysOff => S::AlwaysOff,
        Sampler::TraceIdRatio(r) => S::TraceIdRatioBased(r),
        Sampler::ParentBasedAlwaysOn => S::ParentBased(Box::new(S::AlwaysOn)),
        Sampler::ParentBasedAlwaysOff => S::ParentBased(Box::new(S::AlwaysOff)),
        Sampler::ParentBasedTraceIdRatio(r) => S::ParentBased(Box::new(S::TraceIdRatioBased(r))),
        #[allow(unreachable_patterns)]
        _ => S::ParentBased(Box::new(S::AlwaysOn)),
    }
}

#[cfg(any(feature = "grpc", feature = "http"))]
/// Builds the OTLP exporter `$exporter` for `$config`, as `Result<OnRuntime<$exporter>, String>`:
/// by `$grpc` (inside the export runtime) or by `$http`.
macro_rules! otlp_exporter {
    ($exporter:ty, $grpc:path, $http:path, $config:expr, $handle:expr, $closing:expr) => {{
        let config: &SignalConfig = $config;
        let handle: Option<&Handle> = $handle;
        let closing: &Closing = $closing;
        otlp::preflight(config).and_then(|()| {
            let tls = otlp::tls_for(config)?;
            match config.protocol {
                #[cfg(feature = "grpc")]
                Protocol::Grpc => {
                    let handle = handle.ok_or_else(|| "no export runtime for gRPC".to_owned())?;
                    // tonic spawns its connection task on the runtime current at build time.
                    let _entered = handle.enter();
                    let build = |retries| $grpc(config, tls.as_ref(), retries);
                    let exporters = Exporters::build(closing, build)?;
                    Ok(OnRuntime::new(
                        exporters,
                        handle.clone(),
                        config.export_timeout(),
                    ))
                }
                #[cfg(feature = "http")]
                Protocol::HttpProtobuf => {
                    let _ = handle;
                    let client = otlp::http_client(config, tls)?;
                    let build = |retries| $http(config, &client, retries);
                    let exporters = Exporters::build(closing, build)?;
                    Ok(OnRuntime::passthrough(exporters))
                }
                #[allow(unreachable_patterns)]
                _ => {
                    let _ = (handle, tls, closing);
                    Err(format!(
                        "protocol {} is not compiled in",
                        config.protocol.as_str()
                    ))
                }
            }
        })
    }};
}

/// Adds the OTLP exporter (accounted, behind an admission check) and the console exporter of
/// one signal to its provider builder; returns whether any was added.
macro_rules! add_exporters {
    ($name:ident, $builder:ty, $signal:expr, $exporter:ty, $grpc:path, $http:path, $add:ident) => {
        fn $name(
            mut builder: $builder,
            config: &SignalConfig,
            transport: &Transport<'_>,
            problems: &mut Vec<ExportProblem>,
            ledgers: &mut Vec<Arc<Ledger>>,
            report_interval: Duration,
            metrics: &MetricsSetup,
        ) -> ($builder, bool) {
            let mut added = false;
            if config.otlp {
                #[cfg(any(feature = "grpc", feature = "http"))]
                {
                    let built: Result<OnRuntime<$exporter>, String> = otlp_exporter!(
                        $exporter,
                        $grpc,
                        $http,
                        config,
                        transport.handle,
                        transport.closing
                    );
                    match built {
                        Ok(exporter) => {
                            let ledger = Ledger::new(
                                $signal,
                                queue_capacity($signal, config),
                                report_interval,
                            );
                            builder = $add(
                                builder,
                                Accounted::new(exporter, ledger.clone()),
                                config,
                                Some(ledger.clone()),
                                metrics,
                            );
                            ledgers.push(ledger);
                            added = true;
                        }
                        Err(cause) => problems.push(ExportProblem {
                            signal: $signal,
                            cause,
                            prometheus: false,
                        }),
                    }
                }
                #[cfg(not(any(feature = "grpc", feature = "http")))]
                {
                    let _ = (transport, &ledgers, report_interval);
                    let cause = otlp::preflight(config)
                        .err()
                        .unwrap_or_else(|| "no OTLP transport is compiled in".into());
                    problems.push(ExportProblem {
                        signal: $signal,
                        cause,
                        prometheus: false,
                    });
                }
            }
            if config.console {
                builder = $add(builder, Console, config, None, metrics);
                added = true;
            }
            (builder, added)
        }
    };
}

#[cfg_attr(not(any(feature = "grpc", feature = "http")), allow(dead_code))]
fn queue_capacity(signal: Signal, config: &SignalConfig) -> usize {
    match signal {
        Signal::Metrics => 0,
        _ => config.batch.max_queue_size,
    }
}

fn with_spans(
    builder: TracerProviderBuilder,
    exporter: impl opentelemetry_sdk::trace::SpanExporter + 'static,
    config: &SignalConfig,
    ledger: Option<Arc<Ledger>>,
    _metrics: &MetricsSetup,
) -> TracerProviderBuilder {
    let processor = span_batches::BatchedSpans::new(
        exporter,
        span_batches::Batching {
            max_queue: config.batch.max_queue_size,
            max_batch: config.batch.max_export_batch_size,
            delay: config.batch.schedule_delay,
            flush_timeout: span_batches::FLUSH_TIMEOUT,
        },
    );
    match ledger {
        Some(ledger) => builder.with_span_processor(AdmittedSpans::new(
            processor,
            ledger,
            config.value_length_limit,
        )),
        None => builder.with_span_processor(processor),
    }
}

fn with_logs(
    builder: LoggerProviderBuilder,
    exporter: impl opentelemetry_sdk::logs::LogExporter + 'static,
    config: &SignalConfig,
    ledger: Option<Arc<Ledger>>,
    _metrics: &MetricsSetup,
) -> LoggerProviderBuilder {
    // `add_exporters` adds the console processor after the OTLP one, which must then leave
    // each record for it.
    let record_use = if ledger.is_some() && config.console {
        RecordUse::Copy
    } else {
        RecordUse::Take
    };
    with_logs_as(builder, exporter, config, ledger, record_use)
}

fn with_logs_as(
    builder: LoggerProviderBuilder,
    exporter: impl opentelemetry_sdk::logs::LogExporter + 'static,
    config: &SignalConfig,
    ledger: Option<Arc<Ledger>>,
    record_use: RecordUse,
) -> LoggerProviderBuilder {
    let max_batch = config
        .batch
        .max_export_batch_size
        .min(config.batch.max_queue_size);
    let processor = BatchedLogs::new(exporter, max_batch, record_use);
    match ledger {
        Some(ledger) => builder.with_log_processor(AdmittedLogs::new(
            processor,
            ledger,
            config.value_length_limit,
        )),
        None => builder.with_log_processor(processor),
    }
}

fn with_metrics(
    builder: MeterProviderBuilder,
    exporter: impl opentelemetry_sdk::metrics::exporter::PushMetricExporter + 'static,
    config: &SignalConfig,
    _ledger: Option<Arc<Ledger>>,
    metrics: &MetricsSetup,
) -> MeterProviderBuilder {
    let reader = opentelemetry_sdk::metrics::PeriodicReader::builder(metrics.watch(exporter))
        .with_interval(config.batch.schedule_delay)
        .build();
    builder.with_reader(reader)
}

// Each signal's exporter for each transport. Spans go through the crate's own encoder and
// exporters (`grpc_spans`, `http_spans`); metrics and logs through opentelemetry-otlp's.

#[cfg(feature = "grpc")]
fn grpc_span_exporter(
    config: &SignalConfig,
    tls: Option<&otlp::TlsMaterial>,
    retries: otlp::Retries,
) -> Result<otlp::SpanTransport, String> {
    grpc_spans::GrpcSpanExporter::new(config, tls, retries).map(otlp::SpanTransport::Grpc)
}

#[cfg(feature = "grpc")]
fn grpc_metric_exporter(
    config: &SignalConfig,
    tls: Option<&otlp::TlsMaterial>,
    retries: otlp::Retries,
) -> Result<opentelemetry_otlp::MetricExporter, String> {
    let builder = opentelemetry_otlp::MetricExporter::builder().with_tonic();
    otlp::tonic(builder, config, tls, retries)
        .build()
        .map_err(|e| e.to_string())
}

#[cfg(feature = "grpc")]
fn grpc_log_exporter(
    config: &SignalConfig,
    tls: Option<&otlp::TlsMaterial>,
    retries: otlp::Retries,
) -> Result<opentelemetry_otlp::LogExporter, String> {
    let builder = opentelemetry_otlp::LogExporter::builder().with_tonic();
    otlp::tonic(builder, config, tls, retries)
        .build()
        .map_err(|e| e.to_string())
}

#[cfg(feature = "http")]
fn http_span_exporter(
    config: &SignalConfig,
    client: &otlp::HttpClient,
    retries: otlp::Retries,
) -> Result<otlp::SpanTransport, String> {
    http_spans::HttpSpanExporter::new(config, client.0.clone(), retries)
        .map(otlp::SpanTransport::Http)
}

#[cfg(feature = "http")]
fn http_metric_exporter(
    config: &SignalConfig,
    client: &otlp::HttpClient,
    retries: otlp::Retries,
) -> Result<opentelemetry_otlp::MetricExporter, String> {
    let builder = opentelemetry_otlp::MetricExporter::builder().with_http();
    otlp::http(builder, config, client, retries)
        .build()
        .map_err(|e| e.to_string())
}

#[cfg(feature = "http")]
fn http_log_exporter(
    config: &SignalConfig,
    client: &otlp::HttpClient,
    retries: otlp::Retries,
) -> Result<opentelemetry_otlp::LogExporter, String> {
    let builder = opentelemetry_otlp::LogExporter::builder().with_http();
    otlp::http(builder, config, client, retries)
        .build()
        .map_err(|e| e.to_string())
}

add_exporters!(
    add_traces,
    TracerProviderBuilder,
    Signal::Traces,
    otlp::SpanTransport,
    grpc_span_exporter,
    http_span_exporter,
    with_spans
);
add_exporters!(
    add_metrics,
    MeterProviderBuilder,
    Signal::Metrics,
    opentelemetry_otlp::MetricExporter,
    grpc_metric_exporter,
    http_metric_exporter,
    with_metrics
);
add_exporters!(
    add_logs,
    LoggerProviderBuilder,
    Signal::Logs,
    opentelemetry_otlp::LogExporter,
    grpc_log_exporter,
    http_log_exporter,
    with_logs
);
