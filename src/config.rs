//! Effective configuration, resolved from the environment over code defaults.
//!
//! [`Config::from_lookup`] is a pure function of a lookup closure, so tests never touch the
//! process environment. Every variable follows one policy, taken from the OpenTelemetry
//! specification: an empty value is the same as an unset one; a value that cannot be used is
//! reported as a [`ConfigWarning`] naming the variable, the rejected value and what was used
//! instead, and resolution continues down the precedence chain. Nothing here can fail or panic.

mod parse;
#[cfg(test)]
mod tests;

use std::fmt;
use std::time::Duration;

pub(crate) use parse::live_log_filter;
pub use parse::percent_decode;

/// What the service sets in code; every field may be overridden by the environment.
#[derive(Debug, Clone, Default)]
pub struct Defaults {
    /// `service.name` used when neither `OTEL_SERVICE_NAME` nor `OTEL_RESOURCE_ATTRIBUTES` names one.
    pub service_name: Option<String>,
    /// `service.version`, unless `OTEL_RESOURCE_ATTRIBUTES` sets one.
    pub service_version: Option<String>,
    /// Whether export is on when `OTEL_ENABLED` is unset.
    pub export_enabled: bool,
    /// Log filter used when neither `LOG_LEVEL` nor `RUST_LOG` is set.
    pub log_level: Option<String>,
    /// Shutdown budget used when `SHUTDOWN_TIMEOUT_MS` is unset (else 30 s).
    pub shutdown_timeout: Option<Duration>,
    /// Drain delay used when `SHUTDOWN_DRAIN_DELAY_MS` is unset (else none).
    pub shutdown_drain_delay: Option<Duration>,
    /// Resource detectors turned off when `OTEL_RESOURCE_DETECTORS_DISABLED` is unset.
    pub disabled_detectors: Vec<ResourceDetector>,
    /// Whether the process metrics are on when `OTEL_PROCESS_METRICS_ENABLED` is unset
    /// (`None`: on).
    pub process_metrics: Option<bool>,
    /// Whether the Tokio runtime metrics are on when `OTEL_TOKIO_METRICS_ENABLED` is unset
    /// (`None`: on).
    pub tokio_metrics: Option<bool>,
    /// Per-metric cardinality limit used when `OTEL_METRICS_CARDINALITY_LIMIT` is unset.
    pub cardinality_limit: Option<usize>,
    /// The RPC conventions used when `OTEL_SEMCONV_STABILITY_OPT_IN` names neither `rpc` nor
    /// `rpc/dup` (`None`: [`RpcConventions::Stable`]).
    pub rpc_conventions: Option<RpcConventions>,
    /// The log line format used when `LOG_FORMAT` is unset (`None`: [`LogFormat::Json`]).
    pub log_format: Option<LogFormat>,
}

/// How log lines are written (`LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum LogFormat {
    /// One JSON object per line: the production contract, for log pipelines.
    #[default]
    Json,
    /// One readable line per event (time, level, target, message, fields, short trace id),
    /// coloured on a terminal unless `NO_COLOR` is set: for a laptop.
    Pretty,
}

/// The effective configuration after reading the environment.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Config {
    /// Master switch: when false nothing is exported, but logs keep their trace ids.
    pub export_enabled: bool,
    /// `service.name` resource attribute.
    pub service_name: String,
    /// `service.version` resource attribute, when known.
    pub service_version: Option<String>,
    /// Other resource attributes from `OTEL_RESOURCE_ATTRIBUTES`, percent-decoded, in order.
    pub resource_attributes: Vec<(String, String)>,
    /// Trace export settings.
    pub traces: SignalConfig,
    /// Metric export settings.
    pub metrics: SignalConfig,
    /// Log-record export settings.
    pub logs: SignalConfig,
    /// The trace sampler.
    pub sampler: Sampler,
    /// Context propagators, in order; empty means none.
    pub propagators: Vec<Propagator>,
    /// Filter directives for the service's own logs (`tracing-subscriber` `EnvFilter` syntax).
    pub log_filter: String,
    /// How log lines are written.
    pub log_format: LogFormat,
    /// The graceful-shutdown budget and drain delay.
    pub shutdown: ShutdownConfig,
    /// Resource detectors that run at `init`, in order.
    pub resource_detectors: Vec<ResourceDetector>,
    /// Temporality, histograms, cardinality, built-in metrics and the Prometheus endpoint.
    pub metric_settings: MetricSettings,
    /// Which RPC conventions the gRPC layers emit (`OTEL_SEMCONV_STABILITY_OPT_IN`).
    pub rpc_conventions: RpcConventions,
}

/// The RPC semantic conventions the gRPC layers emit. The conventions' migration guide
/// (`docs/non-normative/rpc-migration.md`) has three: the experimental ones of v1.37.0, the
/// v1.44.0 ones, and both. The code picks one with `TelemetryBuilder::rpc_conventions`
/// (default [`RpcConventions::Stable`]); `OTEL_SEMCONV_STABILITY_OPT_IN` overrides it as the
/// guide describes (`rpc`: stable only; `rpc/dup`: both, winning over `rpc`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum RpcConventions {
    /// v1.44.0: `rpc.system.name`, fully qualified `rpc.method`, `rpc.response.status_code`.
    #[default]
    Stable,
    /// Both: the stable span attributes plus the experimental ones backends may still query
    /// (`rpc.system`, `rpc.service`, `rpc.grpc.status_code`, `rpc.message` events; `rpc.method`
    /// keeps its stable, fully qualified value), and both duration metrics, each with its own
    /// attributes (`rpc.server.call.duration` in seconds, `rpc.server.duration` in
    /// milliseconds; the same for the client).
    Duplicate,
    /// The experimental conventions of v1.37.0 only, for dashboards not yet migrated:
    /// `rpc.system`, `rpc.service`, the short `rpc.method`, the integer `rpc.grpc.status_code`,
    /// `rpc.message` events, and `rpc.server.duration` / `rpc.client.duration` in milliseconds.
    Experimental,
}

/// A resource detector run at `init` (see the README's "Who is speaking").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ResourceDetector {
    /// `host.name`, `host.arch`, `host.id`.
    Host,
    /// `os.type`, `os.description`.
    Os,
    /// `process.pid`, `process.executable.name`, `process.creation.time`, `process.runtime.*`.
    Process,
    /// `container.id` from cgroup v1 and v2.
    Container,
    /// `k8s.*` from downward-API variables and the service-account namespace file.
    Kubernetes,
    /// `cloud.*`, `aws.ecs.*`, `aws.log.*` from the ECS task metadata endpoint v4.
    Ecs,
}

impl ResourceDetector {
    /// Every detector, in the order they run.
    pub const ALL: [ResourceDetector; 6] = [
        ResourceDetector::Host,
        ResourceDetector::Os,
        ResourceDetector::Process,
        ResourceDetector::Container,
        ResourceDetector::Kubernetes,
        ResourceDetector::Ecs,
    ];

    /// The name used in `OTEL_RESOURCE_DETECTORS_DISABLED` and in warnings.
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceDetector::Host => "host",
            ResourceDetector::Os => "os",
            ResourceDetector::Process => "process",
            ResourceDetector::Container => "container",
            ResourceDetector::Kubernetes => "k8s",
            ResourceDetector::Ecs => "ecs",
        }
    }
}

impl fmt::Display for ResourceDetector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How metric points are aggregated and what the crate measures by itself.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MetricSettings {
    /// Temporality asked of the OTLP exporter
    /// (`OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE`, default cumulative). The
    /// Prometheus endpoint is always cumulative.
    pub temporality: Temporality,
    /// Aggregation of histogram instruments without a view of their own
    /// (`OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION`).
    pub histogram_aggregation: HistogramAggregation,
    /// Most attribute sets kept per metric per collection; the rest are folded into one
    /// series marked `otel.metric.overflow=true` (`OTEL_METRICS_CARDINALITY_LIMIT`,
    /// default [`DEFAULT_CARDINALITY_LIMIT`]).
    pub cardinality_limit: usize,
    /// `process.*` metrics (`OTEL_PROCESS_METRICS_ENABLED`, default on).
    pub process_metrics: bool,
    /// `tokio.*` runtime metrics (`OTEL_TOKIO_METRICS_ENABLED`, default on).
    pub tokio_metrics: bool,
    /// Where the Prometheus endpoint listens when `OTEL_METRICS_EXPORTER` lists `prometheus`.
    pub prometheus: PrometheusEndpoint,
}

/// Default per-metric cardinality limit, the SDK's and the Java agent's.
pub const DEFAULT_CARDINALITY_LIMIT: usize = 2000;

/// Largest accepted cardinality limit: every series is kept in memory.
pub const MAX_CARDINALITY_LIMIT: usize = 1_000_000;

impl Default for MetricSettings {
    fn default() -> Self {
        MetricSettings {
            temporality: Temporality::Cumulative,
            histogram_aggregation: HistogramAggregation::ExplicitBucket,
            cardinality_limit: DEFAULT_CARDINALITY_LIMIT,
            process_metrics: true,
            tokio_metrics: true,
            prometheus: PrometheusEndpoint::default(),
        }
    }
}

/// Aggregation temporality preference, as the OTLP exporter spec names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Temporality {
    /// `cumulative`: every point counts from the start (the default; what Prometheus expects).
    Cumulative,
    /// `delta`: counters and histograms (synchronous and observable) count since the last
    /// export; up-down counters stay cumulative.
    Delta,
    /// `lowmemory`: synchronous counters and histograms are delta, the rest cumulative.
    LowMemory,
}

impl Temporality {
    /// The spec's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Temporality::Cumulative => "cumulative",
            Temporality::Delta => "delta",
            Temporality::LowMemory => "lowmemory",
        }
    }
}

/// Default aggregation of histogram instruments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HistogramAggregation {
    /// `explicit_bucket_histogram`: the spec's default buckets, or the instrument's advice.
    ExplicitBucket,
    /// `base2_exponential_bucket_histogram`: 160 buckets, scale 20 down to what fits.
    /// The Prometheus endpoint cannot show these (opentelemetry-prometheus skips them).
    Base2Exponential,
}

impl HistogramAggregation {
    /// The spec's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            HistogramAggregation::ExplicitBucket => "explicit_bucket_histogram",
            HistogramAggregation::Base2Exponential => "base2_exponential_bucket_histogram",
        }
    }
}

/// Address of the Prometheus scrape endpoint (`OTEL_EXPORTER_PROMETHEUS_HOST`, default
/// `localhost`; `OTEL_EXPORTER_PROMETHEUS_PORT`, default 9464).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PrometheusEndpoint {
    /// Host name or IP address to listen on.
    pub host: String,
    /// TCP port; 0 picks a free one.
    pub port: u16,
}

impl Default for PrometheusEndpoint {
    fn default() -> Self {
        PrometheusEndpoint {
            host: "localhost".to_owned(),
            port: 9464,
        }
    }
}

/// Timing of the graceful shutdown run by [`crate::Shutdown`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownConfig {
    /// Whole budget from the signal to the exit, drain delay and telemetry flush included
    /// (`SHUTDOWN_TIMEOUT_MS`, default 30 s, the default grace period of Kubernetes and ECS).
    pub timeout: Duration,
    /// Pause between the signal and the first step, while the health endpoint already
    /// reports `shutting_down`, so load balancers stop routing (`SHUTDOWN_DRAIN_DELAY_MS`,
    /// default 0).
    pub drain_delay: Duration,
}

/// Default shutdown budget: the default grace period of Kubernetes and ECS.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest accepted shutdown budget or drain delay.
const MAX_SHUTDOWN: Duration = Duration::from_secs(24 * 60 * 60);

impl Default for ShutdownConfig {
    fn default() -> Self {
        ShutdownConfig {
            timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            drain_delay: Duration::ZERO,
        }
    }
}

impl ShutdownConfig {
    /// A budget and a drain delay given in code, used as they are. A drain delay that would
    /// leave no time for the steps is capped at half the budget.
    pub fn new(timeout: Duration, drain_delay: Duration) -> Self {
        let timeout = timeout.clamp(Duration::from_millis(1), MAX_SHUTDOWN);
        ShutdownConfig {
            timeout,
            drain_delay: if drain_delay >= timeout {
                timeout / 2
            } else {
                drain_delay
            },
        }
    }

    /// Reads `SHUTDOWN_TIMEOUT_MS` and `SHUTDOWN_DRAIN_DELAY_MS` through `lookup`, with the
    /// warnings for values that could not be used.
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> (ShutdownConfig, Vec<ConfigWarning>) {
        let mut env = parse::Env::new(&lookup);
        let config = parse::resolve_shutdown(&mut env, &Defaults::default());
        (config, env.into_warnings())
    }

    /// [`from_lookup`](Self::from_lookup) over the process environment.
    pub fn from_env() -> (ShutdownConfig, Vec<ConfigWarning>) {
        Self::from_lookup(env_lookup)
    }
}

/// The three OpenTelemetry signals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Signal {
    /// Spans.
    Traces,
    /// Metric points.
    Metrics,
    /// Log records.
    Logs,
}

impl Signal {
    /// All signals, in the order they are configured and flushed.
    pub const ALL: [Signal; 3] = [Signal::Traces, Signal::Metrics, Signal::Logs];

    /// Lower-case name, as in `/v1/{name}` and `OTEL_{NAME}_EXPORTER`.
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Traces => "traces",
            Signal::Metrics => "metrics",
            Signal::Logs => "logs",
        }
    }

    fn upper(self) -> &'static str {
        match self {
            Signal::Traces => "TRACES",
            Signal::Metrics => "METRICS",
            Signal::Logs => "LOGS",
        }
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where one signal goes.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SignalConfig {
    /// Send to an OTLP endpoint.
    pub otlp: bool,
    /// Serve on the Prometheus scrape endpoint (metrics only).
    pub prometheus: bool,
    /// Print to stderr in a human-readable form.
    pub console: bool,
    /// OTLP transport.
    pub protocol: Protocol,
    /// OTLP endpoint, final form (for HTTP, including `/v1/{signal}`).
    pub endpoint: String,
    /// The variable the endpoint came from, or `"default"`.
    pub endpoint_source: &'static str,
    /// Extra request headers (API keys); values are redacted in `Debug`.
    pub headers: Headers,
    /// Per-export timeout; `None` means no limit (`..._TIMEOUT=0`).
    pub timeout: Option<Duration>,
    /// Request compression.
    pub compression: Compression,
    /// Queue, batch and schedule of the exports (`OTEL_BSP_*`, `OTEL_BLRP_*`,
    /// `OTEL_METRIC_EXPORT_*`).
    pub batch: Batching,
    /// Longest string value, in characters, in an exported span or log record; longer ones
    /// are cut (`OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT`,
    /// `OTEL_LOGRECORD_ATTRIBUTE_VALUE_LENGTH_LIMIT`, `OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT`;
    /// default [`DEFAULT_VALUE_LENGTH_LIMIT`]). For logs it also bounds each value in the
    /// JSON lines, counted in bytes there.
    pub value_length_limit: usize,
    /// PEM files for TLS to an `https` endpoint.
    pub tls: TlsFiles,
}

/// PEM files for TLS, as paths (`OTEL_EXPORTER_OTLP_[SIGNAL_]CERTIFICATE`, `_CLIENT_CERTIFICATE`,
/// `_CLIENT_KEY`). They are read when the exporter is built; a file that cannot be read or
/// parsed turns that signal's export off with one warning.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TlsFiles {
    /// Trusted CA certificates; when set they replace the system's trust roots.
    pub certificate: Option<std::path::PathBuf>,
    /// Client certificate chain for mutual TLS; always paired with `client_key`.
    pub client_certificate: Option<std::path::PathBuf>,
    /// The client certificate's private key.
    pub client_key: Option<std::path::PathBuf>,
}

impl TlsFiles {
    /// Whether any file is configured.
    pub fn is_empty(&self) -> bool {
        self.certificate.is_none() && self.client_certificate.is_none()
    }
}

/// Default longest string value. The specification sets no limit; a bound keeps one
/// megabyte-sized field from occupying a queue slot (and memory) a thousand times over.
pub const DEFAULT_VALUE_LENGTH_LIMIT: usize = 32 * 1024;

/// How one signal is queued and batched before export.
///
/// For metrics only `schedule_delay` (the export interval, `OTEL_METRIC_EXPORT_INTERVAL`) and
/// `export_timeout` apply: metrics are aggregated in place, never queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Batching {
    /// Most items waiting for export; beyond it new items are dropped and counted
    /// (`OTEL_BSP_MAX_QUEUE_SIZE`, `OTEL_BLRP_MAX_QUEUE_SIZE`, default 2048).
    pub max_queue_size: usize,
    /// Most items per export request, at most `max_queue_size` (default 512).
    pub max_export_batch_size: usize,
    /// Longest wait between two exports (default 5 s for spans, 1 s for log records, 60 s
    /// for metrics).
    pub schedule_delay: Duration,
    /// Bound on one whole export (`OTEL_BSP_EXPORT_TIMEOUT`, `OTEL_BLRP_EXPORT_TIMEOUT`,
    /// `OTEL_METRIC_EXPORT_TIMEOUT`, default 30 s); the shorter of it and the OTLP timeout
    /// applies.
    pub export_timeout: Duration,
}

/// Largest accepted queue: at a few hundred bytes to a few KiB per span, a bigger queue
/// could hold gigabytes while a collector is down.
pub const MAX_QUEUE_SIZE: usize = 1 << 20;

impl Batching {
    /// The spec's defaults for `signal`.
    pub fn default_for(signal: Signal) -> Batching {
        Batching {
            max_queue_size: 2048,
            max_export_batch_size: 512,
            schedule_delay: match signal {
                Signal::Traces => Duration::from_secs(5),
                Signal::Metrics => Duration::from_secs(60),
                Signal::Logs => Duration::from_secs(1),
            },
            export_timeout: Duration::from_secs(30),
        }
    }
}

impl SignalConfig {
    /// Whether anything is exported for this signal.
    pub fn is_exported(&self) -> bool {
        self.otlp || self.console || self.prometheus
    }

    /// The per-export timeout to give the transport: the shorter of the OTLP timeout ("no
    /// limit" becomes 24 hours) and the batch export timeout.
    pub fn export_timeout(&self) -> Duration {
        self.timeout
            .unwrap_or(NO_LIMIT)
            .min(self.batch.export_timeout)
    }
}

/// OTLP transport protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Protocol {
    /// OTLP over gRPC (default port 4317).
    Grpc,
    /// OTLP over HTTP with protobuf bodies (default port 4318). The spec's default.
    HttpProtobuf,
}

impl Protocol {
    /// The spec's spelling: `grpc` or `http/protobuf`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Grpc => "grpc",
            Protocol::HttpProtobuf => "http/protobuf",
        }
    }
}

/// OTLP request compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Compression {
    /// No compression.
    None,
    /// gzip.
    Gzip,
}

/// Trace sampler, as named by `OTEL_TRACES_SAMPLER`.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Sampler {
    /// `always_on`.
    AlwaysOn,
    /// `always_off`.
    AlwaysOff,
    /// `traceidratio` with its ratio.
    TraceIdRatio(f64),
    /// `parentbased_always_on` (the default).
    ParentBasedAlwaysOn,
    /// `parentbased_always_off`.
    ParentBasedAlwaysOff,
    /// `parentbased_traceidratio` with its ratio.
    ParentBasedTraceIdRatio(f64),
}

impl fmt::Display for Sampler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Sampler::AlwaysOn => f.write_str("always_on"),
            Sampler::AlwaysOff => f.write_str("always_off"),
            Sampler::TraceIdRatio(r) => write!(f, "traceidratio({r})"),
            Sampler::ParentBasedAlwaysOn => f.write_str("parentbased_always_on"),
            Sampler::ParentBasedAlwaysOff => f.write_str("parentbased_always_off"),
            Sampler::ParentBasedTraceIdRatio(r) => write!(f, "parentbased_traceidratio({r})"),
        }
    }
}

/// A context propagator named by `OTEL_PROPAGATORS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Propagator {
    /// W3C `traceparent` / `tracestate`.
    TraceContext,
    /// W3C `baggage`.
    Baggage,
    /// Zipkin B3, the single `b3` header (`b3`).
    B3,
    /// Zipkin B3, the `X-B3-*` headers (`b3multi`).
    B3Multi,
}

/// OTLP headers. `Debug` and `Display` never show the values: they are usually API keys.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Headers(pub(crate) Vec<(String, String)>);

impl Headers {
    /// Header names and values, for building the exporter.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Whether there are no headers.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, (k, _)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{k}=<redacted>")?;
        }
        f.write_str("]")
    }
}

/// One environment value that could not be used, or that is used but looks like a mistake.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConfigWarning {
    /// The variable's name.
    pub variable: String,
    /// The value (redacted for secret-bearing variables).
    pub value: String,
    /// Why it was rejected, or why it looks wrong.
    pub reason: String,
    /// What was used instead; for a [`ConfigWarningKind::Mismatch`], what to set to fix it.
    pub used_instead: String,
    /// Whether the value was rejected or is used as given.
    pub kind: ConfigWarningKind,
}

/// What happened to the value a [`ConfigWarning`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigWarningKind {
    /// The value could not be used; [`ConfigWarning::used_instead`] was.
    Rejected,
    /// The value is valid and used as given, but it contradicts another setting (an endpoint
    /// on the other protocol's well-known port). Nothing is guessed: the operator fixes it.
    Mismatch,
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            ConfigWarningKind::Rejected => write!(
                f,
                "{}={:?} ignored: {}; using {}",
                self.variable, self.value, self.reason, self.used_instead
            ),
            ConfigWarningKind::Mismatch => write!(
                f,
                "{}={:?} is used as given, but {}; {}",
                self.variable, self.value, self.reason, self.used_instead
            ),
        }
    }
}

/// Default per-export timeout (spec: 10 s).
pub const DEFAULT_EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// `..._TIMEOUT=0` means "no limit" in the spec; the transports need a finite bound.
const NO_LIMIT: Duration = Duration::from_secs(24 * 60 * 60);

impl Config {
    /// Resolves the configuration from `lookup` with no code defaults.
    ///
    /// Returns the effective configuration and one warning per value that could not be used.
    ///
    /// ```
    /// use service_telemetry::Config;
    /// let (config, warnings) = Config::from_lookup(|name| match name {
    ///     "OTEL_ENABLED" => Some("true".into()),
    ///     "OTEL_TRACES_SAMPLER" => Some("bogus".into()),
    ///     _ => None,
    /// });
    /// assert!(config.export_enabled);
    /// assert_eq!(warnings[0].variable, "OTEL_TRACES_SAMPLER");
    /// ```
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> (Config, Vec<ConfigWarning>) {
        Self::resolve(&Defaults::default(), lookup)
    }

    /// Resolves the configuration from the process environment with no code defaults.
    pub fn from_env() -> (Config, Vec<ConfigWarning>) {
        Self::from_lookup(env_lookup)
    }

    /// Resolves the configuration: environment first, then `defaults`, then the spec's defaults.
    pub fn resolve(
        defaults: &Defaults,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> (Config, Vec<ConfigWarning>) {
        let mut env = parse::Env::new(&lookup);
        let config = parse::resolve(&mut env, defaults);
        (config, env.into_warnings())
    }

    /// Whether `signal` is exported at all (export on and an exporter chosen).
    pub fn exports(&self, signal: Signal) -> bool {
        self.export_enabled && self.signal(signal).is_exported()
    }

    /// The settings of one signal.
    pub fn signal(&self, signal: Signal) -> &SignalConfig {
        match signal {
            Signal::Traces => &self.traces,
            Signal::Metrics => &self.metrics,
            Signal::Logs => &self.logs,
        }
    }
}

/// Reads a variable from the process environment; non-UTF-8 values are kept lossily so that
/// they are reported, not silently treated as unset.
pub(crate) fn env_lookup(name: &str) -> Option<String> {
    std::env::var_os(name).map(|v| v.to_string_lossy().into_owned())
}
