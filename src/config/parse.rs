//! The resolver: one function per variable family, each with its precedence written out.

use std::time::Duration;

use tracing_subscriber::EnvFilter;

use super::{
    Batching, Compression, Config, ConfigWarning, ConfigWarningKind, DEFAULT_CARDINALITY_LIMIT,
    DEFAULT_EXPORT_TIMEOUT, DEFAULT_SHUTDOWN_TIMEOUT, DEFAULT_VALUE_LENGTH_LIMIT, Defaults,
    Headers, HistogramAggregation, LogFormat, MAX_CARDINALITY_LIMIT, MAX_QUEUE_SIZE, MAX_SHUTDOWN,
    MetricSettings, NO_LIMIT, PrometheusEndpoint, Propagator, Protocol, ResourceDetector,
    RpcConventions, Sampler, ShutdownConfig, Signal, SignalConfig, Temporality, TlsFiles,
};

/// Longest value quoted back in a warning; the rest is elided so a huge variable cannot flood
/// the log.
const MAX_QUOTED: usize = 200;

/// Transport crates whose debug output drowns a service's own logs.
const NOISY_TARGETS: &[&str] = &[
    "h2",
    "hyper",
    "hyper_util",
    "tonic",
    "tower",
    "reqwest",
    "rustls",
];

fn bounded(text: &str) -> String {
    let mut out: String = text.chars().take(MAX_QUOTED).collect();
    if out.len() < text.len() {
        out.push_str("...");
    }
    out
}

pub(super) struct Env<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
    warnings: Vec<ConfigWarning>,
}

impl<'a> Env<'a> {
    pub(super) fn new(lookup: &'a dyn Fn(&str) -> Option<String>) -> Self {
        Env {
            lookup,
            warnings: Vec::new(),
        }
    }

    pub(super) fn into_warnings(self) -> Vec<ConfigWarning> {
        self.warnings
    }

    /// The trimmed value, `None` when unset or empty (the spec treats both alike).
    fn get(&self, name: &str) -> Option<String> {
        let value = (self.lookup)(name)?;
        let trimmed = value.trim();
        if trimmed.is_empty() {
            None
        } else {
            Some(trimmed.to_owned())
        }
    }

    /// Records one warning. Every text is bounded so a huge variable cannot flood the log, and
    /// a generic variable read once per signal is reported once.
    fn warn(
        &mut self,
        variable: &str,
        value: &str,
        reason: impl Into<String>,
        used: impl Into<String>,
    ) {
        let warning = ConfigWarning {
            variable: bounded(variable),
            value: bounded(value),
            reason: bounded(&reason.into()),
            used_instead: bounded(&used.into()),
            kind: ConfigWarningKind::Rejected,
        };
        if !self.warnings.contains(&warning) {
            self.warnings.push(warning);
        }
    }

    /// Records a value that is used as given but contradicts another setting; `fix` says what
    /// to set. Reported once, like [`warn`](Self::warn).
    fn mismatch(&mut self, variable: &str, value: &str, reason: String, fix: String) {
        let warning = ConfigWarning {
            variable: bounded(variable),
            value: bounded(value),
            reason: bounded(&reason),
            used_instead: bounded(&fix),
            kind: ConfigWarningKind::Mismatch,
        };
        if !self.warnings.contains(&warning) {
            self.warnings.push(warning);
        }
    }

    /// First variable in `names` holding a value that `parse` accepts; rejected values warn and
    /// resolution moves on to the next name, as if the rejected one were unset.
    fn first<T>(
        &mut self,
        names: &[&str],
        fallback: &dyn Fn(&str) -> String,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Option<(T, String)> {
        for (i, name) in names.iter().enumerate() {
            let Some(raw) = self.get(name) else { continue };
            match parse(&raw) {
                Ok(v) => return Some((v, (*name).to_owned())),
                Err(reason) => {
                    let used = names[i + 1..]
                        .iter()
                        .find(|n| self.get(n).is_some_and(|v| parse(&v).is_ok()))
                        .map(|n| format!("the value of {n}"))
                        .unwrap_or_else(|| fallback(name));
                    self.warn(name, &raw, reason, used);
                }
            }
        }
        None
    }
}

pub(super) fn resolve(env: &mut Env<'_>, defaults: &Defaults) -> Config {
    let export_enabled = resolve_enabled(env, defaults);
    let (service_name, service_version, resource_attributes) = resolve_resource(env, defaults);
    let dev = resource_attributes.iter().any(|(k, v)| {
        (k == "deployment.environment.name" || k == "deployment.environment")
            && ["development", "dev", "local"]
                .iter()
                .any(|d| v.eq_ignore_ascii_case(d))
    });
    let traces = resolve_signal(env, Signal::Traces);
    let metrics = resolve_signal(env, Signal::Metrics);
    let logs = resolve_signal(env, Signal::Logs);
    Config {
        export_enabled,
        service_name,
        service_version,
        resource_attributes,
        traces,
        metrics,
        logs,
        sampler: resolve_sampler(env),
        propagators: resolve_propagators(env),
        log_filter: resolve_log_filter(env, defaults, dev),
        log_format: resolve_log_format(env, defaults),
        shutdown: resolve_shutdown(env, defaults),
        resource_detectors: resolve_detectors(env, defaults),
        metric_settings: resolve_metric_settings(env, defaults),
        rpc_conventions: resolve_rpc_conventions(env, defaults),
    }
}

/// `OTEL_SEMCONV_STABILITY_OPT_IN` is shared by every instrumentation of the process, so
/// values for other domains (`http`, `database/dup`, ...) are not ours to reject; `rpc/dup`
/// wins over `rpc`, as the conventions say. Neither: the code's choice.
fn resolve_rpc_conventions(env: &mut Env<'_>, defaults: &Defaults) -> RpcConventions {
    let raw = env.get("OTEL_SEMCONV_STABILITY_OPT_IN").unwrap_or_default();
    let named = |wanted: &str| {
        raw.split(',')
            .any(|v| v.trim().eq_ignore_ascii_case(wanted))
    };
    if named("rpc/dup") {
        RpcConventions::Duplicate
    } else if named("rpc") {
        RpcConventions::Stable
    } else {
        defaults.rpc_conventions.unwrap_or_default()
    }
}

/// Precedence: `OTEL_RESOURCE_DETECTORS_DISABLED` (a list, `all` or `none`) replaces the
/// code's list; unknown names warn and the rest of the list still applies.
fn resolve_detectors(env: &mut Env<'_>, defaults: &Defaults) -> Vec<ResourceDetector> {
    const VAR: &str = "OTEL_RESOURCE_DETECTORS_DISABLED";
    let disabled: Vec<ResourceDetector> = match env.get(VAR) {
        None => defaults.disabled_detectors.clone(),
        Some(raw) => {
            let mut disabled = Vec::new();
            for item in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                let lower = item.to_ascii_lowercase();
                match lower.as_str() {
                    "all" => disabled.extend(ResourceDetector::ALL),
                    "none" => {}
                    name => match ResourceDetector::ALL.iter().find(|d| d.as_str() == name) {
                        Some(d) => disabled.push(*d),
                        None => env.warn(
                            VAR,
                            &raw,
                            format!(
                                "unknown detector {:?} (expected host, os, process, container, k8s, ecs, all or none)",
                                bounded(item)
                            ),
                            "the other listed detectors",
                        ),
                    },
                }
            }
            disabled
        }
    };
    ResourceDetector::ALL
        .into_iter()
        .filter(|d| !disabled.contains(d))
        .collect()
}

/// Each setting on its own: the variable, then the code default, then the spec's default.
fn resolve_metric_settings(env: &mut Env<'_>, defaults: &Defaults) -> MetricSettings {
    let spec = MetricSettings::default();
    let temporality = env
        .first(
            &["OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE"],
            &|_| "the default (cumulative)".into(),
            |raw| match raw.to_ascii_lowercase().as_str() {
                "cumulative" => Ok(Temporality::Cumulative),
                "delta" => Ok(Temporality::Delta),
                "lowmemory" => Ok(Temporality::LowMemory),
                _ => Err("unknown temporality (expected cumulative, delta or lowmemory)".into()),
            },
        )
        .map_or(spec.temporality, |(t, _)| t);
    let histogram_aggregation = env
        .first(
            &["OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION"],
            &|_| "the default (explicit_bucket_histogram)".into(),
            |raw| match raw.to_ascii_lowercase().as_str() {
                "explicit_bucket_histogram" => Ok(HistogramAggregation::ExplicitBucket),
                "base2_exponential_bucket_histogram" => Ok(HistogramAggregation::Base2Exponential),
                _ => Err("unknown aggregation (expected explicit_bucket_histogram or base2_exponential_bucket_histogram)".into()),
            },
        )
        .map_or(spec.histogram_aggregation, |(h, _)| h);
    let code_limit = defaults
        .cardinality_limit
        .map(|n| n.clamp(1, MAX_CARDINALITY_LIMIT))
        .unwrap_or(DEFAULT_CARDINALITY_LIMIT);
    let cardinality_limit = env
        .first(
            &["OTEL_METRICS_CARDINALITY_LIMIT"],
            &|_| format!("the default ({code_limit})"),
            |raw| match raw.parse::<u64>() {
                Ok(0) => Err("must be at least 1".to_owned()),
                Ok(n) if n > MAX_CARDINALITY_LIMIT as u64 => {
                    Err(format!("larger than the maximum ({MAX_CARDINALITY_LIMIT})"))
                }
                Ok(n) => Ok(n as usize),
                Err(_) => Err(not_a_count(raw, "attribute sets")),
            },
        )
        .map_or(code_limit, |(n, _)| n);
    let mut switch = |var: &str, code: Option<bool>| {
        let default = code.unwrap_or(true);
        env.first(&[var], &|_| format!("the default ({default})"), parse_bool)
            .map_or(default, |(v, _)| v)
    };
    let process_metrics = switch("OTEL_PROCESS_METRICS_ENABLED", defaults.process_metrics);
    let tokio_metrics = switch("OTEL_TOKIO_METRICS_ENABLED", defaults.tokio_metrics);
    let endpoint = PrometheusEndpoint::default();
    let host = env
        .first(
            &["OTEL_EXPORTER_PROMETHEUS_HOST"],
            &|_| format!("the default ({})", endpoint.host),
            |raw| {
                if raw.chars().any(|c| c.is_whitespace() || c == '/') {
                    Err("not a host name or IP address".to_owned())
                } else {
                    Ok(raw.trim_start_matches('[').trim_end_matches(']').to_owned())
                }
            },
        )
        .map_or(endpoint.host, |(h, _)| h);
    let port = env
        .first(
            &["OTEL_EXPORTER_PROMETHEUS_PORT"],
            &|_| format!("the default ({})", endpoint.port),
            |raw| {
                raw.parse::<u16>()
                    .map_err(|_| "not a TCP port (0 to 65535)".to_owned())
            },
        )
        .map_or(endpoint.port, |(p, _)| p);
    MetricSettings {
        temporality,
        histogram_aggregation,
        cardinality_limit,
        process_metrics,
        tokio_metrics,
        prometheus: PrometheusEndpoint { host, port },
    }
}

fn parse_bool(value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err("not a boolean (expected true or false)".into()),
    }
}

fn resolve_enabled(env: &mut Env<'_>, defaults: &Defaults) -> bool {
    let default = defaults.export_enabled;
    let enabled = env
        .first(
            &["OTEL_ENABLED"],
            &|_| format!("the default ({default})"),
            parse_bool,
        )
        .map_or(default, |(v, _)| v);
    // Spec boolean: only "true" is true; anything else but "false" is reported.
    let sdk_disabled = match env.get("OTEL_SDK_DISABLED") {
        None => false,
        Some(v) if v.eq_ignore_ascii_case("true") => true,
        Some(v) if v.eq_ignore_ascii_case("false") => false,
        Some(v) => {
            env.warn(
                "OTEL_SDK_DISABLED",
                &v,
                "not a boolean (expected true or false)",
                "false",
            );
            false
        }
    };
    enabled && !sdk_disabled
}

fn resolve_resource(
    env: &mut Env<'_>,
    defaults: &Defaults,
) -> (String, Option<String>, Vec<(String, String)>) {
    let mut attributes = Vec::new();
    if let Some(raw) = env.get("OTEL_RESOURCE_ATTRIBUTES") {
        match parse_resource_attributes(&raw) {
            Ok(list) => attributes = list,
            Err(reason) => env.warn(
                "OTEL_RESOURCE_ATTRIBUTES",
                &raw,
                reason,
                "no resource attributes from the environment",
            ),
        }
    }
    let take = |attributes: &mut Vec<(String, String)>, key: &str| {
        let pos = attributes.iter().rposition(|(k, _)| k == key)?;
        let value = attributes.remove(pos).1;
        attributes.retain(|(k, _)| k != key);
        // Empty means unset here as everywhere else.
        Some(value).filter(|v| !v.trim().is_empty())
    };
    let from_attributes = take(&mut attributes, "service.name");
    let version_attribute = take(&mut attributes, "service.version");
    let service_name = env
        .get("OTEL_SERVICE_NAME")
        .or(from_attributes)
        .or_else(|| {
            defaults
                .service_name
                .clone()
                .filter(|s| !s.trim().is_empty())
        })
        .unwrap_or_else(executable_name);
    let service_version = version_attribute.or_else(|| defaults.service_version.clone());
    (service_name, service_version, attributes)
}

fn executable_name() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown_service".to_owned())
}

/// `key=value,key=value` with percent-encoded keys and values. Any bad entry rejects the whole
/// variable, as the resource spec requires.
pub(crate) fn parse_resource_attributes(raw: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for entry in raw.split(',') {
        if entry.trim().is_empty() {
            continue;
        }
        let (key, value) = entry
            .split_once('=')
            .ok_or_else(|| format!("entry {:?} has no '='", truncate(entry)))?;
        let key =
            percent_decode(key.trim()).map_err(|e| format!("key {:?}: {e}", truncate(key)))?;
        let value = percent_decode(value.trim()).map_err(|e| format!("value of {key:?}: {e}"))?;
        if key.is_empty() {
            return Err("an entry has an empty key".into());
        }
        out.push((key, value));
    }
    Ok(out)
}

fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}

/// Decodes `%XX` escapes; the result must be UTF-8. `+` is kept as is (this is not a form).
pub fn percent_decode(input: &str) -> Result<String, String> {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad percent escape at byte {i}"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "percent escapes do not decode to UTF-8".to_owned())
}

/// Each file independently: the per-signal variable, then the generic one. The files belong to
/// `https`: on a plaintext endpoint they are reported and ignored, and a client certificate
/// without its key (or the reverse) is reported and both are ignored.
fn resolve_tls(env: &mut Env<'_>, signal: Signal, endpoint: &str) -> TlsFiles {
    let up = signal.upper();
    let file = |suffix: &str| -> Option<(std::path::PathBuf, String)> {
        let names = [
            format!("OTEL_EXPORTER_OTLP_{up}_{suffix}"),
            format!("OTEL_EXPORTER_OTLP_{suffix}"),
        ];
        names
            .iter()
            .find_map(|n| env.get(n).map(|v| (std::path::PathBuf::from(v), n.clone())))
    };
    let certificate = file("CERTIFICATE");
    let client_certificate = file("CLIENT_CERTIFICATE");
    let client_key = file("CLIENT_KEY");
    let mut tls = TlsFiles {
        certificate: certificate.as_ref().map(|(p, _)| p.clone()),
        client_certificate: None,
        client_key: None,
    };
    let mut client_var = None;
    match (client_certificate, client_key) {
        (Some((cert, var)), Some((key, _))) => {
            tls.client_certificate = Some(cert);
            tls.client_key = Some(key);
            client_var = Some(var);
        }
        (Some((path, var)), None) => env.warn(
            &var,
            &path.display().to_string(),
            "a client certificate needs its key (OTEL_EXPORTER_OTLP_CLIENT_KEY)",
            "no client certificate",
        ),
        (None, Some((path, var))) => env.warn(
            &var,
            &path.display().to_string(),
            "a client key needs its certificate (OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE)",
            "no client certificate",
        ),
        (None, None) => {}
    }
    if !endpoint.starts_with("https://") {
        if let Some(var) = certificate.map(|(_, v)| v).or(client_var) {
            let shown = env.get(&var).unwrap_or_default();
            env.warn(
                &var,
                &shown,
                "TLS files apply to https endpoints only, and the endpoint is plaintext http",
                "plaintext without certificates",
            );
        }
        return TlsFiles::default();
    }
    tls
}

fn resolve_signal(env: &mut Env<'_>, signal: Signal) -> SignalConfig {
    let up = signal.upper();
    let exporter_var = format!("OTEL_{up}_EXPORTER");
    let exporters = match env.get(&exporter_var) {
        None => Exporters {
            otlp: true,
            ..Exporters::default()
        },
        Some(raw) => parse_exporters(env, &exporter_var, &raw, signal),
    };

    let protocol_vars = [
        format!("OTEL_EXPORTER_OTLP_{up}_PROTOCOL"),
        "OTEL_EXPORTER_OTLP_PROTOCOL".to_owned(),
    ];
    let (protocol, protocol_source) = env
        .first(
            &[&protocol_vars[0], &protocol_vars[1]],
            &|_| "the default (http/protobuf)".into(),
            parse_protocol,
        )
        .map_or((Protocol::HttpProtobuf, None), |(p, var)| (p, Some(var)));

    let insecure_vars = [
        format!("OTEL_EXPORTER_OTLP_{up}_INSECURE"),
        "OTEL_EXPORTER_OTLP_INSECURE".to_owned(),
    ];
    let insecure = env
        .first(
            &[&insecure_vars[0], &insecure_vars[1]],
            &|_| "the default (false)".into(),
            parse_bool,
        )
        .is_some_and(|(v, _)| v);

    let (endpoint, endpoint_source) = resolve_endpoint(env, signal, protocol, insecure);
    warn_on_other_protocols_port(env, endpoint_source, protocol, protocol_source.as_deref());
    let endpoint_for_tls = endpoint.clone();

    let header_vars = [
        format!("OTEL_EXPORTER_OTLP_{up}_HEADERS"),
        "OTEL_EXPORTER_OTLP_HEADERS".to_owned(),
    ];
    let headers = resolve_headers(env, &header_vars);

    let timeout_vars = [
        format!("OTEL_EXPORTER_OTLP_{up}_TIMEOUT"),
        "OTEL_EXPORTER_OTLP_TIMEOUT".to_owned(),
    ];
    let timeout = env
        .first(
            &[&timeout_vars[0], &timeout_vars[1]],
            &|_| "the default (10000 ms)".into(),
            parse_millis,
        )
        .map_or(Some(DEFAULT_EXPORT_TIMEOUT), |(t, _)| t);

    let compression_vars = [
        format!("OTEL_EXPORTER_OTLP_{up}_COMPRESSION"),
        "OTEL_EXPORTER_OTLP_COMPRESSION".to_owned(),
    ];
    let compression = env
        .first(
            &[&compression_vars[0], &compression_vars[1]],
            &|_| "no compression".into(),
            parse_compression,
        )
        .map_or(Compression::None, |(c, _)| c);

    SignalConfig {
        otlp: exporters.otlp,
        console: exporters.console,
        prometheus: exporters.prometheus,
        protocol,
        endpoint,
        endpoint_source,
        headers,
        timeout,
        compression,
        batch: resolve_batching(env, signal),
        value_length_limit: resolve_value_length_limit(env, signal),
        tls: resolve_tls(env, signal, &endpoint_for_tls),
    }
}

/// Precedence: the per-signal variable, `OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT`, the default.
fn resolve_value_length_limit(env: &mut Env<'_>, signal: Signal) -> usize {
    const GENERIC: &str = "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT";
    let names: &[&str] = match signal {
        Signal::Traces => &["OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", GENERIC],
        Signal::Logs => &["OTEL_LOGRECORD_ATTRIBUTE_VALUE_LENGTH_LIMIT", GENERIC],
        Signal::Metrics => &[GENERIC],
    };
    env.first(
        names,
        &|_| format!("the default ({DEFAULT_VALUE_LENGTH_LIMIT})"),
        |raw| match raw.parse::<u64>() {
            Ok(0) => Err("must be at least 1".to_owned()),
            Ok(n) => Ok(usize::try_from(n).unwrap_or(usize::MAX)),
            Err(_) => Err(not_a_count(raw, "characters")),
        },
    )
    .map_or(DEFAULT_VALUE_LENGTH_LIMIT, |(n, _)| n)
}

/// Each variable on its own: the variable, then the spec default. The SDK reads these too, but
/// without bounds (a queue of 10^12 would be allocated up front and abort the process) and
/// without warnings, so the resolved values are always passed to it explicitly.
fn resolve_batching(env: &mut Env<'_>, signal: Signal) -> Batching {
    let defaults = Batching::default_for(signal);
    let (prefix, delay_var) = match signal {
        Signal::Traces => ("OTEL_BSP_", "OTEL_BSP_SCHEDULE_DELAY"),
        Signal::Logs => ("OTEL_BLRP_", "OTEL_BLRP_SCHEDULE_DELAY"),
        Signal::Metrics => ("OTEL_METRIC_", "OTEL_METRIC_EXPORT_INTERVAL"),
    };
    let millis = |env: &mut Env<'_>, var: &str, default: Duration| {
        env.first(
            &[var],
            &|_| format!("the default ({} ms)", default.as_millis()),
            |raw| match raw.parse::<u64>() {
                Ok(0) => Err("must be at least 1 ms".to_owned()),
                Ok(ms) if Duration::from_millis(ms) > NO_LIMIT => {
                    Err("longer than a day".to_owned())
                }
                Ok(ms) => Ok(Duration::from_millis(ms)),
                Err(_) => Err(not_a_count(raw, "milliseconds")),
            },
        )
        .map_or(default, |(d, _)| d)
    };
    let schedule_delay = millis(env, delay_var, defaults.schedule_delay);
    let export_timeout = millis(
        env,
        &format!("{prefix}EXPORT_TIMEOUT"),
        defaults.export_timeout,
    );
    if signal == Signal::Metrics {
        return Batching {
            schedule_delay,
            export_timeout,
            ..defaults
        };
    }
    let count = |env: &mut Env<'_>, var: &str, default: usize, max: usize| {
        env.first(
            &[var],
            &|_| format!("the default ({default})"),
            |raw| match raw.parse::<u64>() {
                Ok(0) => Err("must be at least 1".to_owned()),
                Ok(n) if n > max as u64 => Err(format!("larger than the maximum ({max})")),
                Ok(n) => Ok(n as usize),
                Err(_) => Err(not_a_count(raw, "items")),
            },
        )
        .map_or(default, |(n, _)| n)
    };
    let max_queue_size = count(
        env,
        &format!("{prefix}MAX_QUEUE_SIZE"),
        defaults.max_queue_size,
        MAX_QUEUE_SIZE,
    );
    let batch_var = format!("{prefix}MAX_EXPORT_BATCH_SIZE");
    let max_export_batch_size = count(
        env,
        &batch_var,
        defaults.max_export_batch_size.min(max_queue_size),
        max_queue_size,
    );
    Batching {
        max_queue_size,
        max_export_batch_size,
        schedule_delay,
        export_timeout,
    }
}

fn not_a_count(raw: &str, unit: &str) -> String {
    if raw.starts_with('-') && raw[1..].bytes().all(|b| b.is_ascii_digit()) {
        "negative number".to_owned()
    } else {
        format!("not a whole number of {unit}")
    }
}

#[derive(Default)]
struct Exporters {
    otlp: bool,
    console: bool,
    prometheus: bool,
}

fn parse_exporters(env: &mut Env<'_>, var: &str, raw: &str, signal: Signal) -> Exporters {
    let mut chosen = Exporters::default();
    let (mut none, mut any_known) = (false, false);
    let expected = if signal == Signal::Metrics {
        "otlp, prometheus, console or none"
    } else {
        "otlp, console or none"
    };
    for item in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match item.to_ascii_lowercase().as_str() {
            "otlp" => chosen.otlp = true,
            "console" | "logging" => chosen.console = true,
            "prometheus" if signal == Signal::Metrics => chosen.prometheus = true,
            "none" => none = true,
            _ => {
                env.warn(
                    var,
                    raw,
                    format!("unknown exporter {:?} (expected {expected})", bounded(item)),
                    "the other listed exporters, else otlp",
                );
                continue;
            }
        }
        any_known = true;
    }
    if none {
        Exporters::default()
    } else if any_known {
        chosen
    } else {
        Exporters {
            otlp: true,
            ..Exporters::default()
        }
    }
}

fn parse_protocol(value: &str) -> Result<Protocol, String> {
    match value.to_ascii_lowercase().as_str() {
        "grpc" => Ok(Protocol::Grpc),
        "http/protobuf" => Ok(Protocol::HttpProtobuf),
        "http/json" => Err("http/json is not supported (use http/protobuf or grpc)".into()),
        _ => Err("unknown protocol (expected grpc or http/protobuf)".into()),
    }
}

fn parse_compression(value: &str) -> Result<Compression, String> {
    match value.to_ascii_lowercase().as_str() {
        "gzip" => Ok(Compression::Gzip),
        "none" => Ok(Compression::None),
        _ => Err("unsupported compression (expected gzip or none)".into()),
    }
}

/// Non-negative integer milliseconds; 0 means no limit.
fn parse_millis(value: &str) -> Result<Option<Duration>, String> {
    match value.parse::<u64>() {
        Ok(0) => Ok(None),
        Ok(ms) => Ok(Some(Duration::from_millis(ms).min(NO_LIMIT))),
        Err(_) if value.starts_with('-') && value[1..].bytes().all(|b| b.is_ascii_digit()) => {
            Err("negative duration".into())
        }
        Err(_) => Err("not a whole number of milliseconds".into()),
    }
}

fn resolve_endpoint(
    env: &mut Env<'_>,
    signal: Signal,
    protocol: Protocol,
    insecure: bool,
) -> (String, &'static str) {
    let signal_var = match signal {
        Signal::Traces => "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        Signal::Metrics => "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
        Signal::Logs => "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
    };
    const GENERIC: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
    let default = match protocol {
        Protocol::Grpc => "http://localhost:4317".to_owned(),
        Protocol::HttpProtobuf => format!("http://localhost:4318/v1/{signal}"),
    };
    let check = |raw: &str| validate_endpoint(raw, protocol, insecure);
    // Worded per protocol, not per signal, so a bad generic endpoint warns once, not thrice.
    let default_for_warning = |var: &str| match protocol {
        Protocol::HttpProtobuf if var == GENERIC => "http://localhost:4318/v1/<signal>".to_owned(),
        _ => default.clone(),
    };
    match env.first(
        &[signal_var, GENERIC],
        &|var| format!("the default ({})", default_for_warning(var)),
        check,
    ) {
        // Spec: a per-signal endpoint is used as given; the generic one is a base URL.
        Some((url, var)) if var == GENERIC && protocol == Protocol::HttpProtobuf => (
            format!("{}/v1/{signal}", url.trim_end_matches('/')),
            GENERIC,
        ),
        Some((url, var)) if var == GENERIC => (url, GENERIC),
        Some((url, _)) => (url, signal_var),
        None => (default, "default"),
    }
}

/// The collector's well-known ports: 4317 speaks OTLP/gRPC, 4318 OTLP/HTTP. An endpoint set
/// to one with the other protocol fails every export with an error that rarely says why, so
/// the mismatch is named at start-up, with the variable to set. The endpoint is still used as
/// given: a collector may listen anywhere, and guessing would hide the mistake.
fn warn_on_other_protocols_port(
    env: &mut Env<'_>,
    endpoint_var: &str,
    protocol: Protocol,
    protocol_var: Option<&str>,
) {
    if endpoint_var == "default" {
        return;
    }
    let Some(raw) = env.get(endpoint_var) else {
        return;
    };
    let Some(port) = explicit_port(&raw) else {
        return;
    };
    let (other, right_port) = match (protocol, port) {
        (Protocol::HttpProtobuf, 4317) => (Protocol::Grpc, 4318),
        (Protocol::Grpc, 4318) => (Protocol::HttpProtobuf, 4317),
        _ => return,
    };
    let protocol_from = match protocol_var {
        Some(var) => format!("from {var}"),
        None => "the default, as no OTEL_EXPORTER_OTLP_PROTOCOL is set".to_owned(),
    };
    let set = protocol_var.unwrap_or("OTEL_EXPORTER_OTLP_PROTOCOL");
    env.mismatch(
        endpoint_var,
        &raw,
        format!(
            "port {port} is the collector's OTLP/{} port and the protocol is {} ({protocol_from})",
            if port == 4317 { "gRPC" } else { "HTTP" },
            protocol.as_str(),
        ),
        format!(
            "set {set}={} if the collector speaks {} there, or use port {right_port}",
            other.as_str(),
            other.as_str(),
        ),
    );
}

/// The port written in `raw` (an endpoint URL, with or without a scheme), if any.
fn explicit_port(raw: &str) -> Option<u16> {
    let after_scheme = raw.split_once("://").map_or(raw, |(_, rest)| rest);
    let authority = after_scheme.split(['/', '?', '#']).next()?;
    let after_host = authority
        .rsplit_once(']')
        .map_or(authority, |(_, rest)| rest);
    after_host.rsplit_once(':')?.1.parse().ok()
}

/// An absolute `http(s)://host[:port][/path]` URL. A gRPC endpoint without a scheme follows
/// `OTEL_EXPORTER_OTLP_INSECURE` (https unless insecure), as the spec describes.
fn validate_endpoint(raw: &str, protocol: Protocol, insecure: bool) -> Result<String, String> {
    let with_scheme = if raw.contains("://") {
        raw.to_owned()
    } else if protocol == Protocol::Grpc {
        format!("{}://{raw}", if insecure { "http" } else { "https" })
    } else {
        return Err("not an absolute URL (expected http://host:port or https://host:port)".into());
    };
    let uri: http::Uri = with_scheme
        .parse()
        .map_err(|e| format!("not a valid URL ({e})"))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => return Err("scheme must be http or https".into()),
    }
    let Some(authority) = uri.authority().filter(|a| !a.host().is_empty()) else {
        return Err("URL has no host".into());
    };
    // `http::Uri` keeps whatever follows the host's colon; the transports need a number.
    let after_host = authority
        .as_str()
        .rsplit_once(']')
        .map_or(authority.as_str(), |(_, rest)| rest);
    if let Some((_, port)) = after_host.rsplit_once(':') {
        match port.parse::<u16>() {
            Ok(p) if p > 0 => {}
            _ => return Err(format!("invalid port {:?}", bounded(port))),
        }
    }
    Ok(with_scheme)
}

fn resolve_headers(env: &mut Env<'_>, vars: &[String; 2]) -> Headers {
    // The first variable set wins whole (no merging), as the SDKs do.
    let Some((var, raw)) = vars
        .iter()
        .find_map(|v| env.get(v).map(|raw| (v.clone(), raw)))
    else {
        return Headers::default();
    };
    let mut headers = Vec::new();
    for entry in raw.split(',').filter(|e| !e.trim().is_empty()) {
        let parsed = entry.split_once('=').and_then(|(k, v)| {
            let key = percent_decode(k.trim()).ok()?.to_ascii_lowercase();
            let value = percent_decode(v.trim()).ok()?;
            let valid = http::HeaderName::from_bytes(key.as_bytes()).is_ok()
                && http::HeaderValue::from_str(&value).is_ok();
            valid.then_some((key, value))
        });
        match parsed {
            Some(kv) => headers.push(kv),
            None => {
                // Never quote a header value back: it is usually a secret. An entry without '='
                // may itself be the secret (or its tail, cut at an unencoded comma).
                let shown = match entry.split_once('=') {
                    Some((name, _))
                        if http::HeaderName::from_bytes(name.trim().as_bytes()).is_ok() =>
                    {
                        format!("{}=<redacted>", name.trim())
                    }
                    _ => "<redacted>".to_owned(),
                };
                env.warn(&var, &shown, "malformed header entry (expected key=value with a valid header name and value)", "the other entries");
            }
        }
    }
    Headers(headers)
}

fn resolve_sampler(env: &mut Env<'_>) -> Sampler {
    const DEFAULT: Sampler = Sampler::ParentBasedAlwaysOn;
    let Some(raw) = env.get("OTEL_TRACES_SAMPLER") else {
        return DEFAULT;
    };
    let ratio = |env: &mut Env<'_>| -> f64 {
        let Some(arg) = env.get("OTEL_TRACES_SAMPLER_ARG") else {
            return 1.0;
        };
        match arg.parse::<f64>() {
            Ok(r) if (0.0..=1.0).contains(&r) => r,
            _ => {
                env.warn(
                    "OTEL_TRACES_SAMPLER_ARG",
                    &arg,
                    "not a ratio between 0 and 1",
                    "1.0",
                );
                1.0
            }
        }
    };
    match raw.to_ascii_lowercase().as_str() {
        "always_on" => Sampler::AlwaysOn,
        "always_off" => Sampler::AlwaysOff,
        "traceidratio" => Sampler::TraceIdRatio(ratio(env)),
        "parentbased_always_on" => Sampler::ParentBasedAlwaysOn,
        "parentbased_always_off" => Sampler::ParentBasedAlwaysOff,
        "parentbased_traceidratio" => Sampler::ParentBasedTraceIdRatio(ratio(env)),
        _ => {
            env.warn(
                "OTEL_TRACES_SAMPLER",
                &raw,
                "unknown or unsupported sampler",
                DEFAULT.to_string(),
            );
            DEFAULT
        }
    }
}

fn resolve_propagators(env: &mut Env<'_>) -> Vec<Propagator> {
    const DEFAULT: [Propagator; 2] = [Propagator::TraceContext, Propagator::Baggage];
    let Some(raw) = env.get("OTEL_PROPAGATORS") else {
        return DEFAULT.to_vec();
    };
    let mut out = Vec::new();
    let mut none = false;
    for item in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let p = match item.to_ascii_lowercase().as_str() {
            "tracecontext" => Propagator::TraceContext,
            "baggage" => Propagator::Baggage,
            "b3" => Propagator::B3,
            "b3multi" => Propagator::B3Multi,
            "none" => {
                none = true;
                continue;
            }
            _ => {
                env.warn(
                    "OTEL_PROPAGATORS",
                    &raw,
                    format!("unknown or unsupported propagator {:?}", bounded(item)),
                    "the other listed propagators, else tracecontext,baggage",
                );
                continue;
            }
        };
        if !out.contains(&p) {
            out.push(p);
        }
    }
    if none {
        Vec::new()
    } else if out.is_empty() {
        DEFAULT.to_vec()
    } else {
        out
    }
}

/// Precedence: `LOG_FORMAT`, the code default, `json`. An unknown value warns and uses the
/// code default (the production contract when there is none).
fn resolve_log_format(env: &mut Env<'_>, defaults: &Defaults) -> LogFormat {
    const VAR: &str = "LOG_FORMAT";
    let fallback = defaults.log_format.unwrap_or_default();
    let Some(raw) = env.get(VAR) else {
        return fallback;
    };
    match raw.to_ascii_lowercase().as_str() {
        "json" => LogFormat::Json,
        "pretty" | "text" => LogFormat::Pretty,
        _ => {
            let used = match fallback {
                LogFormat::Json => "json",
                LogFormat::Pretty => "pretty",
            };
            env.warn(VAR, &raw, "unknown format (expected json or pretty)", used);
            fallback
        }
    }
}

/// The directives a live filter change installs: the same normalisation and the same quieting
/// of transports and the SDK as `LOG_LEVEL` gets at `init`.
pub(crate) fn live_log_filter(raw: &str) -> Result<String, String> {
    let mut filter = normalize_filter(raw.trim())?;
    quiet_noisy_targets(&mut filter);
    if !filter.contains("opentelemetry") {
        filter.push_str(",opentelemetry=warn");
    }
    Ok(filter)
}

fn quiet_noisy_targets(filter: &mut String) {
    if matches!(filter.as_str(), "debug" | "trace") {
        for target in NOISY_TARGETS {
            filter.push_str(&format!(",{target}=info"));
        }
    }
}

/// Precedence: `LOG_LEVEL`, `RUST_LOG`, the code default, then `debug` in a development
/// deployment environment, else `info`.
fn resolve_log_filter(env: &mut Env<'_>, defaults: &Defaults, dev: bool) -> String {
    let implicit = if dev { "debug" } else { "info" };
    let code_default = defaults
        .log_level
        .as_deref()
        .and_then(|d| normalize_filter(d).ok());
    let fallback = code_default.clone().unwrap_or_else(|| {
        if dev {
            "debug (the deployment environment is development)".to_owned()
        } else {
            "info".to_owned()
        }
    });
    let mut filter = env
        .first(
            &["LOG_LEVEL", "RUST_LOG"],
            &|_| fallback.clone(),
            normalize_filter,
        )
        .map(|(f, _)| f)
        .or(code_default)
        .unwrap_or_else(|| implicit.to_owned());

    quiet_noisy_targets(&mut filter);
    // The SDK's own info lines are lifecycle chatter: unless OTEL_LOG_LEVEL or the filter
    // itself says otherwise, show its warnings only. An explicit OTEL_LOG_LEVEL goes last so
    // it wins over any `opentelemetry` directive in the filter.
    let sdk_level = match env.get("OTEL_LOG_LEVEL") {
        None if filter.contains("opentelemetry") => None,
        None => Some("warn"),
        Some(raw) => Some(parse_level(&raw).unwrap_or_else(|reason| {
            env.warn("OTEL_LOG_LEVEL", &raw, reason, "warn");
            "warn"
        })),
    };
    if let Some(level) = sdk_level {
        filter.push_str(",opentelemetry=");
        filter.push_str(level);
    }
    filter
}

fn parse_level(raw: &str) -> Result<&'static str, String> {
    match raw.to_ascii_lowercase().as_str() {
        "error" | "fatal" | "critical" => Ok("error"),
        "warn" | "warning" => Ok("warn"),
        "info" => Ok("info"),
        "debug" => Ok("debug"),
        "trace" => Ok("trace"),
        "off" | "none" => Ok("off"),
        _ => Err("unknown level (expected error, warn, info, debug, trace or off)".into()),
    }
}

/// A bare level (any case, `warning` accepted) or full `EnvFilter` directives.
fn normalize_filter(raw: &str) -> Result<String, String> {
    if let Ok(level) = parse_level(raw) {
        return Ok(level.to_owned());
    }
    // A lone word is a mistyped level far more often than a target to trace (`verbose` would
    // otherwise silence every other target).
    if !raw.contains(['=', ',', '[']) {
        return Err("unknown level (expected error, warn, info, debug, trace, off or filter directives such as info,hyper=warn)".into());
    }
    EnvFilter::builder()
        .parse(raw)
        .map(|_| raw.to_owned())
        .map_err(|e| format!("not a level or filter directive ({e})"))
}

/// Precedence for each: the variable, the code default, the built-in default. The drain delay
/// must leave the steps some of the budget, so one at least as long as the budget is rejected.
pub(super) fn resolve_shutdown(env: &mut Env<'_>, defaults: &Defaults) -> ShutdownConfig {
    let code_timeout = defaults
        .shutdown_timeout
        .map(|t| t.clamp(Duration::from_millis(1), MAX_SHUTDOWN));
    let fallback_timeout = code_timeout.unwrap_or(DEFAULT_SHUTDOWN_TIMEOUT);
    let timeout = env
        .first(
            &["SHUTDOWN_TIMEOUT_MS"],
            &|_| format!("{} ms", fallback_timeout.as_millis()),
            |raw| match parse_shutdown_millis(raw)? {
                Duration::ZERO => Err("a shutdown budget of 0 would exit before any step runs \
                                       (expected a positive number of milliseconds)"
                    .into()),
                t => Ok(t),
            },
        )
        .map_or(fallback_timeout, |(t, _)| t);

    let code_delay = defaults.shutdown_drain_delay.filter(|d| *d < timeout);
    let fallback_delay = code_delay.unwrap_or(Duration::ZERO);
    let drain_delay = env
        .first(
            &["SHUTDOWN_DRAIN_DELAY_MS"],
            &|_| format!("{} ms", fallback_delay.as_millis()),
            |raw| {
                let delay = parse_shutdown_millis(raw)?;
                if delay >= timeout {
                    return Err(format!(
                        "not shorter than the shutdown budget ({} ms), which it counts against",
                        timeout.as_millis()
                    ));
                }
                Ok(delay)
            },
        )
        .map_or(fallback_delay, |(d, _)| d);
    ShutdownConfig {
        timeout,
        drain_delay,
    }
}

fn parse_shutdown_millis(raw: &str) -> Result<Duration, String> {
    match raw.parse::<u64>() {
        Ok(ms) if Duration::from_millis(ms) > MAX_SHUTDOWN => {
            Err("longer than a day (expected milliseconds, e.g. 30000)".into())
        }
        Ok(ms) => Ok(Duration::from_millis(ms)),
        Err(_) if raw.starts_with('-') && raw[1..].bytes().all(|b| b.is_ascii_digit()) => {
            Err("negative duration".into())
        }
        Err(_) => Err("not a whole number of milliseconds".into()),
    }
}
