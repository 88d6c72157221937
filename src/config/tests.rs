#![allow(clippy::type_complexity)] // Test tables are clearest written inline.

//! Table-driven tests of the environment resolver.
//!
//! Every test goes through [`Config::from_lookup`] / [`Config::resolve`] with a fake lookup, so
//! nothing here reads or writes the process environment.

use std::collections::HashMap;
use std::time::Duration;

use tracing_subscriber::EnvFilter;

use super::parse::parse_resource_attributes;
use super::*;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A lookup closure over a fixed set of variables.
fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |name| map.get(name).cloned()
}

/// Resolves `pairs` with no code defaults.
fn resolve(pairs: &[(&str, &str)]) -> (Config, Vec<ConfigWarning>) {
    Config::from_lookup(env(pairs))
}

/// Resolves `pairs` over `defaults`.
fn resolve_with(defaults: &Defaults, pairs: &[(&str, &str)]) -> (Config, Vec<ConfigWarning>) {
    Config::resolve(defaults, env(pairs))
}

/// Resolves `pairs` with export switched on by default (as most services do).
fn resolve_on(pairs: &[(&str, &str)]) -> (Config, Vec<ConfigWarning>) {
    resolve_with(&enabled_defaults(), pairs)
}

fn enabled_defaults() -> Defaults {
    Defaults {
        export_enabled: true,
        ..Defaults::default()
    }
}

/// Warnings about `variable`.
fn warnings_for<'a>(warnings: &'a [ConfigWarning], variable: &str) -> Vec<&'a ConfigWarning> {
    warnings.iter().filter(|w| w.variable == variable).collect()
}

/// Asserts there is at least one warning about `variable` and that it is the only variable
/// warned about; returns the first such warning.
fn only_warning_about<'a>(
    warnings: &'a [ConfigWarning],
    variable: &str,
    context: &str,
) -> &'a ConfigWarning {
    assert!(
        !warnings.is_empty() && warnings.iter().all(|w| w.variable == variable),
        "{context}: expected warnings about {variable} only, got {warnings:#?}"
    );
    &warnings[0]
}

fn assert_no_warnings(warnings: &[ConfigWarning], context: &str) {
    assert!(
        warnings.is_empty(),
        "{context}: unexpected warnings {warnings:#?}"
    );
}

/// The first directive of a log filter (the service's own level).
fn first_directive(filter: &str) -> &str {
    filter.split(',').next().unwrap_or("")
}

fn executable_stem() -> String {
    std::env::current_exe()
        .unwrap()
        .file_stem()
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

fn headers_of(config: &SignalConfig) -> Vec<(String, String)> {
    config
        .headers
        .iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Every field of every warning, and the Display form, for "does not contain" checks.
fn warning_texts(warnings: &[ConfigWarning]) -> Vec<String> {
    warnings
        .iter()
        .flat_map(|w| {
            [
                w.variable.clone(),
                w.value.clone(),
                w.reason.clone(),
                w.used_instead.clone(),
                w.to_string(),
                format!("{w:?}"),
            ]
        })
        .collect()
}

const HTTP_DEFAULTS: [(Signal, &str); 3] = [
    (Signal::Traces, "http://localhost:4318/v1/traces"),
    (Signal::Metrics, "http://localhost:4318/v1/metrics"),
    (Signal::Logs, "http://localhost:4318/v1/logs"),
];

/// Every variable the resolver reads.
const ALL_VARIABLES: &[&str] = &[
    "OTEL_ENABLED",
    "OTEL_SDK_DISABLED",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_TRACES_EXPORTER",
    "OTEL_METRICS_EXPORTER",
    "OTEL_LOGS_EXPORTER",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
    "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL",
    "OTEL_EXPORTER_OTLP_INSECURE",
    "OTEL_EXPORTER_OTLP_TRACES_INSECURE",
    "OTEL_EXPORTER_OTLP_METRICS_INSECURE",
    "OTEL_EXPORTER_OTLP_LOGS_INSECURE",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
    "OTEL_EXPORTER_OTLP_METRICS_HEADERS",
    "OTEL_EXPORTER_OTLP_LOGS_HEADERS",
    "OTEL_EXPORTER_OTLP_TIMEOUT",
    "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
    "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT",
    "OTEL_EXPORTER_OTLP_LOGS_TIMEOUT",
    "OTEL_EXPORTER_OTLP_COMPRESSION",
    "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
    "OTEL_EXPORTER_OTLP_METRICS_COMPRESSION",
    "OTEL_EXPORTER_OTLP_LOGS_COMPRESSION",
    "OTEL_EXPORTER_OTLP_CERTIFICATE",
    "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
    "OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE",
    "OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE",
    "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
    "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE",
    "OTEL_EXPORTER_OTLP_METRICS_CLIENT_CERTIFICATE",
    "OTEL_EXPORTER_OTLP_LOGS_CLIENT_CERTIFICATE",
    "OTEL_EXPORTER_OTLP_CLIENT_KEY",
    "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY",
    "OTEL_EXPORTER_OTLP_METRICS_CLIENT_KEY",
    "OTEL_EXPORTER_OTLP_LOGS_CLIENT_KEY",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_PROPAGATORS",
    "LOG_LEVEL",
    "RUST_LOG",
    "OTEL_LOG_LEVEL",
    "SHUTDOWN_TIMEOUT_MS",
    "SHUTDOWN_DRAIN_DELAY_MS",
    "OTEL_BSP_SCHEDULE_DELAY",
    "OTEL_BSP_EXPORT_TIMEOUT",
    "OTEL_BSP_MAX_QUEUE_SIZE",
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
    "OTEL_BLRP_SCHEDULE_DELAY",
    "OTEL_BLRP_EXPORT_TIMEOUT",
    "OTEL_BLRP_MAX_QUEUE_SIZE",
    "OTEL_BLRP_MAX_EXPORT_BATCH_SIZE",
    "OTEL_METRIC_EXPORT_INTERVAL",
    "OTEL_METRIC_EXPORT_TIMEOUT",
    "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT",
    "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT",
    "OTEL_LOGRECORD_ATTRIBUTE_VALUE_LENGTH_LIMIT",
];

// ---------------------------------------------------------------------------------------------
// Baseline
// ---------------------------------------------------------------------------------------------

#[test]
fn empty_environment_gives_spec_defaults_without_warnings() {
    let (config, warnings) = resolve(&[]);
    assert_no_warnings(&warnings, "empty env");
    assert!(
        !config.export_enabled,
        "from_lookup has no code defaults: export is off"
    );
    assert_eq!(config.service_name, executable_stem());
    assert_eq!(config.service_version, None);
    assert!(config.resource_attributes.is_empty());
    for (signal, endpoint) in HTTP_DEFAULTS {
        let s = config.signal(signal);
        assert!(s.otlp && !s.console, "{signal}");
        assert_eq!(s.protocol, Protocol::HttpProtobuf, "{signal}");
        assert_eq!(s.endpoint, endpoint, "{signal}");
        assert_eq!(s.endpoint_source, "default", "{signal}");
        assert!(s.headers.is_empty(), "{signal}");
        assert_eq!(s.timeout, Some(DEFAULT_EXPORT_TIMEOUT), "{signal}");
        assert_eq!(s.compression, Compression::None, "{signal}");
    }
    assert_eq!(DEFAULT_EXPORT_TIMEOUT, Duration::from_secs(10));
    assert_eq!(config.sampler, Sampler::ParentBasedAlwaysOn);
    assert_eq!(
        config.propagators,
        vec![Propagator::TraceContext, Propagator::Baggage]
    );
    assert_eq!(config.log_filter, "info,opentelemetry=warn");
}

#[test]
fn signal_accessor_and_names() {
    let (config, _) = resolve(&[("OTEL_METRICS_EXPORTER", "console")]);
    assert_eq!(Signal::ALL, [Signal::Traces, Signal::Metrics, Signal::Logs]);
    for (signal, name) in [
        (Signal::Traces, "traces"),
        (Signal::Metrics, "metrics"),
        (Signal::Logs, "logs"),
    ] {
        assert_eq!(signal.as_str(), name);
        assert_eq!(signal.to_string(), name);
    }
    assert!(std::ptr::eq(config.signal(Signal::Traces), &config.traces));
    assert!(std::ptr::eq(
        config.signal(Signal::Metrics),
        &config.metrics
    ));
    assert!(std::ptr::eq(config.signal(Signal::Logs), &config.logs));
    assert!(config.metrics.console && !config.metrics.otlp);
}

// ---------------------------------------------------------------------------------------------
// OTEL_ENABLED / OTEL_SDK_DISABLED
// ---------------------------------------------------------------------------------------------

#[test]
fn otel_enabled_accepts_booleans_in_any_case() {
    let cases = [
        ("true", true),
        ("TRUE", true),
        ("True", true),
        ("1", true),
        ("yes", true),
        ("YES", true),
        ("on", true),
        ("false", false),
        ("FALSE", false),
        ("False", false),
        ("0", false),
        ("no", false),
        ("No", false),
        ("off", false),
        (" true ", true),
    ];
    for (value, expected) in cases {
        for default in [true, false] {
            let defaults = Defaults {
                export_enabled: default,
                ..Defaults::default()
            };
            let (config, warnings) = resolve_with(&defaults, &[("OTEL_ENABLED", value)]);
            assert_eq!(
                config.export_enabled, expected,
                "OTEL_ENABLED={value:?}, default {default}"
            );
            assert_no_warnings(&warnings, &format!("OTEL_ENABLED={value:?}"));
        }
    }
}

#[test]
fn otel_enabled_unset_follows_code_default() {
    for default in [true, false] {
        let defaults = Defaults {
            export_enabled: default,
            ..Defaults::default()
        };
        let (config, warnings) = resolve_with(&defaults, &[]);
        assert_eq!(config.export_enabled, default);
        assert_no_warnings(&warnings, "unset");
    }
}

#[test]
fn builder_default_on_is_overridden_by_env_false() {
    let (config, warnings) = resolve_on(&[("OTEL_ENABLED", "false")]);
    assert!(!config.export_enabled);
    assert_no_warnings(&warnings, "OTEL_ENABLED=false");
    for signal in Signal::ALL {
        assert!(!config.exports(signal), "{signal}");
    }
}

#[test]
fn otel_enabled_garbage_warns_and_keeps_default() {
    for value in ["maybe", "2", "enabled", "t", "nope", "tru e"] {
        for default in [true, false] {
            let defaults = Defaults {
                export_enabled: default,
                ..Defaults::default()
            };
            let (config, warnings) = resolve_with(&defaults, &[("OTEL_ENABLED", value)]);
            let context = format!("OTEL_ENABLED={value:?}, default {default}");
            assert_eq!(config.export_enabled, default, "{context}");
            let w = only_warning_about(&warnings, "OTEL_ENABLED", &context);
            assert_eq!(warnings.len(), 1, "{context}");
            assert_eq!(w.value, value, "{context}");
            assert!(w.used_instead.contains("default"), "{context}: {w:?}");
            assert!(
                w.used_instead.contains(&default.to_string()),
                "{context}: {w:?}"
            );
        }
    }
}

#[test]
fn otel_sdk_disabled_wins_over_otel_enabled() {
    let cases = [
        // (OTEL_ENABLED, OTEL_SDK_DISABLED, expected export_enabled)
        (Some("true"), Some("true"), false),
        (Some("true"), Some("TRUE"), false),
        (None, Some("True"), false),
        (Some("true"), Some("false"), true),
        (Some("true"), Some("FALSE"), true),
        (None, Some("false"), true),
        (Some("false"), Some("false"), false),
        (Some("false"), Some("true"), false),
    ];
    for (enabled, disabled, expected) in cases {
        let mut vars = vec![];
        if let Some(v) = enabled {
            vars.push(("OTEL_ENABLED", v));
        }
        if let Some(v) = disabled {
            vars.push(("OTEL_SDK_DISABLED", v));
        }
        let (config, warnings) = resolve_on(&vars);
        assert_eq!(config.export_enabled, expected, "{vars:?}");
        assert_no_warnings(&warnings, &format!("{vars:?}"));
    }
}

#[test]
fn otel_sdk_disabled_garbage_warns_and_is_treated_as_false() {
    // The spec boolean is strict: only true/false, so even "1" and "yes" are reported.
    for value in ["garbage", "1", "yes", "0", "disabled"] {
        let (config, warnings) =
            resolve_on(&[("OTEL_ENABLED", "true"), ("OTEL_SDK_DISABLED", value)]);
        let context = format!("OTEL_SDK_DISABLED={value:?}");
        assert!(config.export_enabled, "{context}");
        let w = only_warning_about(&warnings, "OTEL_SDK_DISABLED", &context);
        assert_eq!(warnings.len(), 1, "{context}");
        assert_eq!(w.value, value, "{context}");
        assert_eq!(w.used_instead, "false", "{context}");
    }
}

// ---------------------------------------------------------------------------------------------
// Service name, version, resource attributes
// ---------------------------------------------------------------------------------------------

#[test]
fn service_name_precedence() {
    let exe = executable_stem();
    assert!(!exe.is_empty());
    // (env, Defaults.service_name, expected)
    let cases: &[(&[(&str, &str)], Option<&str>, &str)] = &[
        (
            &[
                ("OTEL_SERVICE_NAME", "env-svc"),
                ("OTEL_RESOURCE_ATTRIBUTES", "service.name=attr-svc"),
            ],
            Some("code-svc"),
            "env-svc",
        ),
        (
            &[("OTEL_SERVICE_NAME", "  env-svc  ")],
            Some("code-svc"),
            "env-svc",
        ),
        (
            &[("OTEL_RESOURCE_ATTRIBUTES", "service.name=attr-svc")],
            Some("code-svc"),
            "attr-svc",
        ),
        (
            &[
                ("OTEL_SERVICE_NAME", "   "),
                ("OTEL_RESOURCE_ATTRIBUTES", "service.name=attr-svc"),
            ],
            Some("code-svc"),
            "attr-svc",
        ),
        (
            &[("OTEL_RESOURCE_ATTRIBUTES", "team=a")],
            Some("code-svc"),
            "code-svc",
        ),
        (&[], Some("code-svc"), "code-svc"),
        (&[], None, &exe),
        (&[], Some(""), &exe),
        (&[], Some("   "), &exe),
        (&[("OTEL_SERVICE_NAME", "")], None, &exe),
    ];
    for (vars, default, expected) in cases {
        let defaults = Defaults {
            service_name: default.map(str::to_owned),
            ..Defaults::default()
        };
        let (config, warnings) = resolve_with(&defaults, vars);
        assert_eq!(
            &config.service_name, expected,
            "{vars:?} default {default:?}"
        );
        assert!(!config.service_name.is_empty());
        assert_no_warnings(&warnings, &format!("{vars:?}"));
    }
}

#[test]
fn service_version_precedence() {
    // (OTEL_RESOURCE_ATTRIBUTES, Defaults.service_version, expected)
    let cases = [
        (Some("service.version=2.0.0"), Some("1.0.0"), Some("2.0.0")),
        (Some("service.version=2.0.0"), None, Some("2.0.0")),
        (Some("team=a"), Some("1.0.0"), Some("1.0.0")),
        (None, Some("1.0.0"), Some("1.0.0")),
        (None, None, None),
    ];
    for (attrs, default, expected) in cases {
        let vars: Vec<(&str, &str)> = attrs
            .iter()
            .map(|a| ("OTEL_RESOURCE_ATTRIBUTES", *a))
            .collect();
        let defaults = Defaults {
            service_version: default.map(str::to_owned),
            ..Defaults::default()
        };
        let (config, warnings) = resolve_with(&defaults, &vars);
        assert_eq!(
            config.service_version.as_deref(),
            expected,
            "{attrs:?} default {default:?}"
        );
        assert_no_warnings(&warnings, &format!("{attrs:?}"));
    }
}

#[test]
fn resource_attributes_are_percent_decoded_in_order() {
    let cases: &[(&str, &[(&str, &str)])] = &[
        ("team=a%20b,k=v%2Cw", &[("team", "a b"), ("k", "v,w")]),
        ("a=1,b=2,c=3", &[("a", "1"), ("b", "2"), ("c", "3")]),
        (" a = 1 , b=2 ", &[("a", "1"), ("b", "2")]),
        ("a=1,,b=2,", &[("a", "1"), ("b", "2")]),
        ("q=a+b", &[("q", "a+b")]),
        ("my%20key=v%3Dw", &[("my key", "v=w")]),
        ("k=caf%C3%A9", &[("k", "café")]),
        ("k=ünï", &[("k", "ünï")]),
        ("k=", &[("k", "")]),
        ("k=a=b", &[("k", "a=b")]),
        ("k=%41%62", &[("k", "Ab")]),
    ];
    for (raw, expected) in cases {
        let (config, warnings) = resolve(&[("OTEL_RESOURCE_ATTRIBUTES", raw)]);
        assert_eq!(
            config.resource_attributes,
            pairs(expected),
            "OTEL_RESOURCE_ATTRIBUTES={raw:?}"
        );
        assert_no_warnings(&warnings, raw);
        // The parser on its own agrees.
        assert_eq!(
            parse_resource_attributes(raw).unwrap(),
            pairs(expected),
            "{raw:?}"
        );
    }
}

#[test]
fn service_name_and_version_are_removed_from_resource_attributes() {
    let (config, warnings) = resolve(&[(
        "OTEL_RESOURCE_ATTRIBUTES",
        "service.name=checkout,team=payments,service.version=1.2.3,region=eu",
    )]);
    assert_no_warnings(&warnings, "attrs");
    assert_eq!(config.service_name, "checkout");
    assert_eq!(config.service_version.as_deref(), Some("1.2.3"));
    assert_eq!(
        config.resource_attributes,
        pairs(&[("team", "payments"), ("region", "eu")])
    );

    // Removed even when OTEL_SERVICE_NAME wins, and duplicates are all removed.
    let (config, _) = resolve(&[
        ("OTEL_SERVICE_NAME", "env-svc"),
        (
            "OTEL_RESOURCE_ATTRIBUTES",
            "service.name=a,k=v,service.name=b",
        ),
    ]);
    assert_eq!(config.service_name, "env-svc");
    assert_eq!(config.resource_attributes, pairs(&[("k", "v")]));
}

#[test]
fn bad_resource_attributes_drop_the_whole_variable_with_one_warning() {
    let cases = [
        "k=%zz",
        "service.name=attr-svc,k=%zz",
        "team=a,k=%",
        "k=%4",
        "k=%FF",
        "%zz=v",
        "no-equals-sign",
        "team=a,novalue",
        "=v",
        "team=a, =v",
    ];
    for raw in cases {
        let defaults = Defaults {
            service_name: Some("code-svc".into()),
            ..Defaults::default()
        };
        let (config, warnings) = resolve_with(&defaults, &[("OTEL_RESOURCE_ATTRIBUTES", raw)]);
        let context = format!("OTEL_RESOURCE_ATTRIBUTES={raw:?}");
        assert!(
            config.resource_attributes.is_empty(),
            "{context}: {:?}",
            config.resource_attributes
        );
        assert_eq!(config.service_name, "code-svc", "{context}");
        assert_eq!(warnings.len(), 1, "{context}: {warnings:#?}");
        let w = &warnings[0];
        assert_eq!(w.variable, "OTEL_RESOURCE_ATTRIBUTES", "{context}");
        assert_eq!(w.value, raw, "{context}");
        assert!(
            w.used_instead.contains("no resource attributes"),
            "{context}: {w:?}"
        );
        assert!(parse_resource_attributes(raw).is_err(), "{context}");
    }
}

#[test]
fn percent_decode_cases() {
    let ok = [
        ("", ""),
        ("plain", "plain"),
        ("a%20b", "a b"),
        ("%2C%2c", ",,"),
        ("a+b", "a+b"),
        ("%25", "%"),
        ("%C3%A9", "é"),
        ("ünï", "ünï"),
    ];
    for (input, expected) in ok {
        assert_eq!(percent_decode(input).as_deref(), Ok(expected), "{input:?}");
    }
    for input in ["%", "%2", "%zz", "%g0", "a%", "%FF", "%C3", "%é1"] {
        assert!(
            percent_decode(input).is_err(),
            "{input:?} should be rejected"
        );
    }
}

#[test]

fn percent_decode_rejects_sign_in_escape() {
    for input in ["%+1", "%+f", "k%+A"] {
        assert!(
            percent_decode(input).is_err(),
            "{input:?} decoded to {:?}",
            percent_decode(input)
        );
    }
    let (config, warnings) = resolve(&[("OTEL_RESOURCE_ATTRIBUTES", "k=%+1")]);
    assert!(config.resource_attributes.is_empty());
    assert_eq!(warnings.len(), 1);
}

#[test]

fn empty_service_name_attribute_falls_back() {
    let defaults = Defaults {
        service_name: Some("code-svc".into()),
        service_version: Some("1.0.0".into()),
        ..Defaults::default()
    };
    let (config, _) = resolve_with(
        &defaults,
        &[("OTEL_RESOURCE_ATTRIBUTES", "service.name=,service.version=")],
    );
    assert_eq!(config.service_name, "code-svc");
    assert_eq!(config.service_version.as_deref(), Some("1.0.0"));

    let (config, _) = resolve(&[("OTEL_RESOURCE_ATTRIBUTES", "service.name=")]);
    assert!(!config.service_name.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Exporters
// ---------------------------------------------------------------------------------------------

#[test]
fn exporters_per_signal() {
    // (value, otlp, console, warns)
    let cases = [
        ("otlp", true, false, false),
        ("console", false, true, false),
        ("logging", false, true, false),
        ("otlp,console", true, true, false),
        ("console,otlp", true, true, false),
        (" OTLP , Console ", true, true, false),
        ("Otlp", true, false, false),
        ("CONSOLE", false, true, false),
        ("none", false, false, false),
        ("NONE", false, false, false),
        ("none,otlp", false, false, false),
        ("otlp,,", true, false, false),
        ("zipkin", true, false, true),
        ("jaeger,zipkin", true, false, true),
        ("zipkin,console", false, true, true),
    ];
    for signal in Signal::ALL {
        let var = format!("OTEL_{}_EXPORTER", signal.as_str().to_ascii_uppercase());
        for (value, otlp, console, warns) in cases {
            let (config, warnings) = resolve_on(&[(&var, value)]);
            let context = format!("{var}={value:?}");
            let s = config.signal(signal);
            assert_eq!((s.otlp, s.console), (otlp, console), "{context}");
            assert_eq!(s.is_exported(), otlp || console, "{context}");
            assert_eq!(config.exports(signal), otlp || console, "{context}");
            if warns {
                let w = only_warning_about(&warnings, &var, &context);
                assert_eq!(w.value, value, "{context}");
                assert!(w.used_instead.contains("otlp"), "{context}: {w:?}");
            } else {
                assert_no_warnings(&warnings, &context);
            }
            // The other signals keep the default (otlp only).
            for other in Signal::ALL.into_iter().filter(|o| *o != signal) {
                let o = config.signal(other);
                assert_eq!((o.otlp, o.console), (true, false), "{context}: {other}");
            }
        }
    }
}

#[test]
fn unknown_exporter_warning_names_the_unknown_item() {
    let (_, warnings) = resolve(&[("OTEL_TRACES_EXPORTER", "otlp,zipkin")]);
    let w = only_warning_about(&warnings, "OTEL_TRACES_EXPORTER", "otlp,zipkin");
    assert!(w.reason.contains("zipkin"), "{w:?}");
}

#[test]
fn exports_is_false_when_export_disabled() {
    let vars = [
        ("OTEL_TRACES_EXPORTER", "otlp,console"),
        ("OTEL_METRICS_EXPORTER", "console"),
        ("OTEL_LOGS_EXPORTER", "otlp"),
    ];
    let (on, _) = resolve_on(&vars);
    let (off, _) = resolve(&vars);
    let (sdk_off, _) = resolve_on(&[vars[0], vars[1], vars[2], ("OTEL_SDK_DISABLED", "true")]);
    for signal in Signal::ALL {
        assert!(on.exports(signal), "{signal}");
        assert!(!off.exports(signal), "{signal}");
        assert!(!sdk_off.exports(signal), "{signal}");
        // The per-signal choice is still recorded.
        assert!(off.signal(signal).is_exported(), "{signal}");
    }
    let (none, _) = resolve_on(&[("OTEL_LOGS_EXPORTER", "none")]);
    assert!(none.exports(Signal::Traces));
    assert!(none.exports(Signal::Metrics));
    assert!(!none.exports(Signal::Logs));
}

// ---------------------------------------------------------------------------------------------
// Protocol
// ---------------------------------------------------------------------------------------------

#[test]
fn protocol_valid_values_and_precedence() {
    use Protocol::{Grpc, HttpProtobuf};
    // (vars, [traces, metrics, logs])
    let cases: &[(&[(&str, &str)], [Protocol; 3])] = &[
        (&[], [HttpProtobuf; 3]),
        (&[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")], [Grpc; 3]),
        (&[("OTEL_EXPORTER_OTLP_PROTOCOL", "GRPC")], [Grpc; 3]),
        (
            &[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")],
            [HttpProtobuf; 3],
        ),
        (
            &[("OTEL_EXPORTER_OTLP_PROTOCOL", "HTTP/Protobuf")],
            [HttpProtobuf; 3],
        ),
        (
            &[("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc")],
            [Grpc, HttpProtobuf, HttpProtobuf],
        ),
        (
            &[("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "grpc")],
            [HttpProtobuf, Grpc, HttpProtobuf],
        ),
        (
            &[("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", "grpc")],
            [HttpProtobuf, HttpProtobuf, Grpc],
        ),
        (
            &[
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
                ("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", "http/protobuf"),
            ],
            [Grpc, Grpc, HttpProtobuf],
        ),
        (
            &[
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
                ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc"),
            ],
            [Grpc, HttpProtobuf, HttpProtobuf],
        ),
    ];
    for (vars, expected) in cases {
        let (config, warnings) = resolve(vars);
        let got = [
            config.traces.protocol,
            config.metrics.protocol,
            config.logs.protocol,
        ];
        assert_eq!(&got, expected, "{vars:?}");
        assert_no_warnings(&warnings, &format!("{vars:?}"));
    }
    assert_eq!(Grpc.as_str(), "grpc");
    assert_eq!(HttpProtobuf.as_str(), "http/protobuf");
}

#[test]
fn protocol_invalid_generic_warns_and_uses_default() {
    for value in ["http/json", "HTTP/JSON", "thrift", "http", "grpc/protobuf"] {
        let (config, warnings) = resolve(&[("OTEL_EXPORTER_OTLP_PROTOCOL", value)]);
        let context = format!("OTEL_EXPORTER_OTLP_PROTOCOL={value:?}");
        for signal in Signal::ALL {
            assert_eq!(
                config.signal(signal).protocol,
                Protocol::HttpProtobuf,
                "{context}"
            );
        }
        let w = only_warning_about(&warnings, "OTEL_EXPORTER_OTLP_PROTOCOL", &context);
        assert_eq!(w.value, value);
        assert!(w.used_instead.contains("http/protobuf"), "{context}: {w:?}");
        if value.eq_ignore_ascii_case("http/json") {
            assert!(w.reason.contains("http/json"), "{context}: {w:?}");
        }
    }
}

#[test]
fn protocol_invalid_per_signal_falls_back_to_generic() {
    let (config, warnings) = resolve(&[
        ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
    ]);
    assert_eq!(config.traces.protocol, Protocol::Grpc);
    assert_eq!(config.metrics.protocol, Protocol::Grpc);
    let w = only_warning_about(
        &warnings,
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "per-signal",
    );
    assert_eq!(warnings.len(), 1);
    assert_eq!(w.value, "http/json");
    assert!(
        w.used_instead.contains("OTEL_EXPORTER_OTLP_PROTOCOL"),
        "{w:?}"
    );

    // Without a generic value it falls back to the default.
    let (config, warnings) = resolve(&[("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "bogus")]);
    assert_eq!(config.metrics.protocol, Protocol::HttpProtobuf);
    let w = only_warning_about(
        &warnings,
        "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
        "no generic",
    );
    assert!(w.used_instead.contains("default"), "{w:?}");
    assert!(w.used_instead.contains("http/protobuf"), "{w:?}");
}

#[test]

fn protocol_both_invalid_warning_names_what_was_really_used() {
    let (config, warnings) = resolve(&[
        ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "bogus"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "alsobogus"),
    ]);
    assert_eq!(config.traces.protocol, Protocol::HttpProtobuf);
    let w = &warnings_for(&warnings, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")[0];
    assert!(
        !w.used_instead.contains("OTEL_EXPORTER_OTLP_PROTOCOL"),
        "{w:?}"
    );
    assert!(w.used_instead.contains("http/protobuf"), "{w:?}");
}

// ---------------------------------------------------------------------------------------------
// Endpoints and INSECURE
// ---------------------------------------------------------------------------------------------

#[test]
fn endpoint_defaults_depend_on_protocol() {
    let (http, _) = resolve(&[]);
    for (signal, endpoint) in HTTP_DEFAULTS {
        assert_eq!(http.signal(signal).endpoint, endpoint);
        assert_eq!(http.signal(signal).endpoint_source, "default");
    }
    let (grpc, warnings) = resolve(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]);
    assert_no_warnings(&warnings, "grpc");
    for signal in Signal::ALL {
        assert_eq!(
            grpc.signal(signal).endpoint,
            "http://localhost:4317",
            "{signal}"
        );
        assert_eq!(grpc.signal(signal).endpoint_source, "default");
    }
    // Mixed: only traces on grpc.
    let (mixed, _) = resolve(&[("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc")]);
    assert_eq!(mixed.traces.endpoint, "http://localhost:4317");
    assert_eq!(mixed.metrics.endpoint, "http://localhost:4318/v1/metrics");
}

#[test]
fn generic_http_endpoint_gets_signal_path_appended() {
    // (generic endpoint, expected prefix before /v1/{signal})
    let cases = [
        ("http://collector:4318", "http://collector:4318"),
        ("http://collector:4318/", "http://collector:4318"),
        ("https://gw.example.com/otlp", "https://gw.example.com/otlp"),
        (
            "https://gw.example.com/otlp/",
            "https://gw.example.com/otlp",
        ),
        ("https://gw.example.com/a/b/", "https://gw.example.com/a/b"),
        ("  http://10.0.0.1:4318  ", "http://10.0.0.1:4318"),
        ("http://[::1]:4318", "http://[::1]:4318"),
    ];
    for (generic, prefix) in cases {
        let (config, warnings) = resolve(&[("OTEL_EXPORTER_OTLP_ENDPOINT", generic)]);
        assert_no_warnings(&warnings, generic);
        for signal in Signal::ALL {
            let s = config.signal(signal);
            assert_eq!(s.endpoint, format!("{prefix}/v1/{signal}"), "{generic:?}");
            assert_eq!(s.endpoint_source, "OTEL_EXPORTER_OTLP_ENDPOINT");
        }
    }
}

#[test]
fn generic_grpc_endpoint_is_used_as_is() {
    for generic in [
        "http://collector:4317",
        "https://collector:4317",
        "http://collector:4317/",
    ] {
        let (config, warnings) = resolve(&[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", generic),
        ]);
        assert_no_warnings(&warnings, generic);
        for signal in Signal::ALL {
            assert_eq!(config.signal(signal).endpoint, generic, "{signal}");
            assert_eq!(
                config.signal(signal).endpoint_source,
                "OTEL_EXPORTER_OTLP_ENDPOINT"
            );
        }
    }
}

#[test]
fn per_signal_endpoint_is_used_as_given_and_beats_generic() {
    let (config, warnings) = resolve(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://generic:4318"),
        (
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://traces:4318/custom/path",
        ),
        (
            "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
            "https://logs.example.com",
        ),
    ]);
    assert_no_warnings(&warnings, "per-signal");
    assert_eq!(config.traces.endpoint, "http://traces:4318/custom/path");
    assert_eq!(
        config.traces.endpoint_source,
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    );
    assert_eq!(config.metrics.endpoint, "http://generic:4318/v1/metrics");
    assert_eq!(
        config.metrics.endpoint_source,
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    );
    assert_eq!(config.logs.endpoint, "https://logs.example.com");
    assert_eq!(
        config.logs.endpoint_source,
        "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"
    );

    // Also for grpc, and without any generic endpoint.
    let (config, _) = resolve(&[
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://metrics:4317"),
    ]);
    assert_eq!(config.metrics.endpoint, "http://metrics:4317");
    assert_eq!(
        config.metrics.endpoint_source,
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"
    );
    assert_eq!(config.traces.endpoint, "http://localhost:4317");
    assert_eq!(config.traces.endpoint_source, "default");
}

const INVALID_ENDPOINTS: [&str; 7] = [
    "not a url",
    "ftp://x",
    "http://",
    "https://",
    "http://:4318",
    "collector:4318",
    "file:///etc/passwd",
];

#[test]
fn invalid_per_signal_endpoint_falls_back_to_generic_then_default() {
    for bad in INVALID_ENDPOINTS {
        // With a valid generic endpoint: generic + /v1/traces.
        let (config, warnings) = resolve(&[
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", bad),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://generic:4318"),
        ]);
        let context = format!("TRACES_ENDPOINT={bad:?}");
        assert_eq!(
            config.traces.endpoint, "http://generic:4318/v1/traces",
            "{context}"
        );
        assert_eq!(
            config.traces.endpoint_source, "OTEL_EXPORTER_OTLP_ENDPOINT",
            "{context}"
        );
        let w = only_warning_about(&warnings, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &context);
        assert_eq!(warnings.len(), 1, "{context}");
        assert_eq!(w.value, bad, "{context}");
        assert!(
            w.used_instead.contains("OTEL_EXPORTER_OTLP_ENDPOINT"),
            "{context}: {w:?}"
        );

        // Without one: the default.
        let (config, warnings) = resolve(&[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", bad)]);
        assert_eq!(
            config.traces.endpoint, "http://localhost:4318/v1/traces",
            "{context}"
        );
        assert_eq!(config.traces.endpoint_source, "default", "{context}");
        let w = only_warning_about(&warnings, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &context);
        assert!(
            w.used_instead.contains("http://localhost:4318/v1/traces"),
            "{context}: {w:?}"
        );
    }
}

#[test]
fn invalid_generic_endpoint_warns_and_uses_defaults() {
    for bad in INVALID_ENDPOINTS {
        let (config, warnings) = resolve(&[("OTEL_EXPORTER_OTLP_ENDPOINT", bad)]);
        let context = format!("OTEL_EXPORTER_OTLP_ENDPOINT={bad:?}");
        for (signal, endpoint) in HTTP_DEFAULTS {
            assert_eq!(config.signal(signal).endpoint, endpoint, "{context}");
            assert_eq!(
                config.signal(signal).endpoint_source,
                "default",
                "{context}"
            );
        }
        let w = only_warning_about(&warnings, "OTEL_EXPORTER_OTLP_ENDPOINT", &context);
        assert_eq!(w.value, bad);
        assert!(w.used_instead.contains("default"), "{context}: {w:?}");
    }
}

#[test]

fn endpoint_with_invalid_port_warns() {
    for bad in [
        "http://collector:43l8",
        "http://collector:x",
        "http://collector:99999",
    ] {
        let (config, warnings) = resolve(&[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", bad)]);
        assert_eq!(
            config.traces.endpoint, "http://localhost:4318/v1/traces",
            "{bad:?}"
        );
        only_warning_about(&warnings, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", bad);
    }
}

#[test]
fn invalid_grpc_endpoints_warn() {
    for bad in ["not a url", "ftp://x", "http://", "http://:4317"] {
        let (config, warnings) = resolve(&[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", bad),
        ]);
        let context = format!("grpc TRACES_ENDPOINT={bad:?}");
        assert_eq!(config.traces.endpoint, "http://localhost:4317", "{context}");
        only_warning_about(&warnings, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &context);
    }
}

#[test]
fn grpc_endpoint_without_scheme_follows_insecure() {
    // (vars besides grpc + TRACES_ENDPOINT=collector:4317, expected traces endpoint)
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[], "https://collector:4317"),
        (
            &[("OTEL_EXPORTER_OTLP_INSECURE", "true")],
            "http://collector:4317",
        ),
        (
            &[("OTEL_EXPORTER_OTLP_INSECURE", "TRUE")],
            "http://collector:4317",
        ),
        (
            &[("OTEL_EXPORTER_OTLP_INSECURE", "false")],
            "https://collector:4317",
        ),
        (
            &[("OTEL_EXPORTER_OTLP_TRACES_INSECURE", "true")],
            "http://collector:4317",
        ),
        (
            &[("OTEL_EXPORTER_OTLP_METRICS_INSECURE", "true")],
            "https://collector:4317",
        ),
        (
            &[
                ("OTEL_EXPORTER_OTLP_INSECURE", "true"),
                ("OTEL_EXPORTER_OTLP_TRACES_INSECURE", "false"),
            ],
            "https://collector:4317",
        ),
        (
            &[
                ("OTEL_EXPORTER_OTLP_INSECURE", "false"),
                ("OTEL_EXPORTER_OTLP_TRACES_INSECURE", "true"),
            ],
            "http://collector:4317",
        ),
    ];
    for (extra, expected) in cases {
        let mut vars = vec![
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "collector:4317"),
        ];
        vars.extend_from_slice(extra);
        let (config, warnings) = resolve(&vars);
        assert_eq!(config.traces.endpoint, *expected, "{extra:?}");
        assert_eq!(
            config.traces.endpoint_source,
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
        );
        assert_no_warnings(&warnings, &format!("{extra:?}"));
    }

    // The generic endpoint without a scheme, too.
    let (config, _) = resolve(&[
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317"),
        ("OTEL_EXPORTER_OTLP_INSECURE", "true"),
    ]);
    for signal in Signal::ALL {
        assert_eq!(config.signal(signal).endpoint, "http://collector:4317");
    }
}

#[test]
fn insecure_does_not_change_an_explicit_scheme() {
    let (config, _) = resolve(&[
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector:4317"),
        ("OTEL_EXPORTER_OTLP_INSECURE", "true"),
    ]);
    assert_eq!(config.traces.endpoint, "https://collector:4317");
    let (config, _) = resolve(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector:4318"),
        ("OTEL_EXPORTER_OTLP_INSECURE", "true"),
    ]);
    assert_eq!(config.traces.endpoint, "https://collector:4318/v1/traces");
}

#[test]
fn insecure_garbage_warns_and_means_secure() {
    let (config, warnings) = resolve(&[
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "collector:4317"),
        ("OTEL_EXPORTER_OTLP_TRACES_INSECURE", "sometimes"),
    ]);
    assert_eq!(config.traces.endpoint, "https://collector:4317");
    let w = only_warning_about(&warnings, "OTEL_EXPORTER_OTLP_TRACES_INSECURE", "insecure");
    assert_eq!(w.value, "sometimes");
    assert!(w.used_instead.contains("false"), "{w:?}");

    // An http endpoint without a scheme stays invalid regardless of INSECURE.
    let (config, warnings) = resolve(&[
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "collector:4318"),
        ("OTEL_EXPORTER_OTLP_INSECURE", "true"),
    ]);
    assert_eq!(config.traces.endpoint, "http://localhost:4318/v1/traces");
    only_warning_about(
        &warnings,
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "http no scheme",
    );
}

// ---------------------------------------------------------------------------------------------
// Headers
// ---------------------------------------------------------------------------------------------

#[test]
fn headers_are_parsed_and_percent_decoded() {
    let cases: &[(&str, &[(&str, &str)])] = &[
        (
            "api-key=secret,x-team=a%20b",
            &[("api-key", "secret"), ("x-team", "a b")],
        ),
        ("API-Key=Secret", &[("api-key", "Secret")]),
        (" a = 1 , b=2 ", &[("a", "1"), ("b", "2")]),
        ("a=1,,b=2,", &[("a", "1"), ("b", "2")]),
        (
            "authorization=Basic%20dXNlcjpwYXNz",
            &[("authorization", "Basic dXNlcjpwYXNz")],
        ),
        ("k=v%2Cw%3Dx", &[("k", "v,w=x")]),
        ("k=a=b", &[("k", "a=b")]),
        ("k=", &[("k", "")]),
    ];
    for (raw, expected) in cases {
        let (config, warnings) = resolve(&[("OTEL_EXPORTER_OTLP_HEADERS", raw)]);
        assert_no_warnings(&warnings, raw);
        for signal in Signal::ALL {
            assert_eq!(
                headers_of(config.signal(signal)),
                pairs(expected),
                "{raw:?} {signal}"
            );
        }
    }
}

#[test]
fn per_signal_headers_replace_generic_entirely() {
    let (config, warnings) = resolve(&[
        ("OTEL_EXPORTER_OTLP_HEADERS", "api-key=generic,x-team=core"),
        ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "x-trace-key=t"),
        ("OTEL_EXPORTER_OTLP_LOGS_HEADERS", "api-key=logs"),
    ]);
    assert_no_warnings(&warnings, "headers");
    assert_eq!(headers_of(&config.traces), pairs(&[("x-trace-key", "t")]));
    assert_eq!(
        headers_of(&config.metrics),
        pairs(&[("api-key", "generic"), ("x-team", "core")])
    );
    assert_eq!(headers_of(&config.logs), pairs(&[("api-key", "logs")]));

    // A whitespace-only per-signal value is unset, so the generic one applies.
    let (config, _) = resolve(&[
        ("OTEL_EXPORTER_OTLP_HEADERS", "a=1"),
        ("OTEL_EXPORTER_OTLP_METRICS_HEADERS", "   "),
    ]);
    assert_eq!(headers_of(&config.metrics), pairs(&[("a", "1")]));
}

#[test]
fn headers_debug_and_display_redact_values() {
    let (config, _) = resolve(&[(
        "OTEL_EXPORTER_OTLP_HEADERS",
        "api-key=s3cr3tVALUE,x-team=a%20b",
    )]);
    let headers = &config.traces.headers;
    assert_eq!(
        format!("{headers:?}"),
        "[api-key=<redacted>,x-team=<redacted>]"
    );
    assert_eq!(
        headers.to_string(),
        "[api-key=<redacted>,x-team=<redacted>]"
    );
    assert!(!format!("{config:?}").contains("s3cr3tVALUE"));
    assert!(!format!("{config:#?}").contains("s3cr3tVALUE"));
    assert_eq!(format!("{:?}", Headers::default()), "[]");
}

const SECRET: &str = "s3cr3tVALUE";

#[test]
fn malformed_header_entries_warn_without_leaking_the_secret() {
    // (raw value, expected surviving headers, expected warning value)
    let cases: &[(String, &[(&str, &str)], &str)] = &[
        (format!("api-key={SECRET}%zz"), &[], "api-key=<redacted>"),
        (format!("api-key={SECRET}%"), &[], "api-key=<redacted>"),
        (format!("api-key={SECRET}%0A"), &[], "api-key=<redacted>"),
        (format!("api-key={SECRET}%FF"), &[], "api-key=<redacted>"),
        (format!("api-key={SECRET}\u{7f}"), &[], "api-key=<redacted>"),
        (format!("api-key={SECRET}\u{1}"), &[], "api-key=<redacted>"),
        (format!("bad key={SECRET}"), &[], "<redacted>"),
        (format!("={SECRET}"), &[], "<redacted>"),
        (format!("api-key:{SECRET}"), &[], "<redacted>"),
        (format!("api key: {SECRET}"), &[], "<redacted>"),
        (format!("k\u{e9}y={SECRET}"), &[], "<redacted>"),
        (
            format!("x-team=ok,api key={SECRET}"),
            &[("x-team", "ok")],
            "<redacted>",
        ),
        (
            format!("api-key={SECRET}%zz,x-team=ok"),
            &[("x-team", "ok")],
            "api-key=<redacted>",
        ),
    ];
    for per_signal in [false, true] {
        let var = if per_signal {
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS"
        } else {
            "OTEL_EXPORTER_OTLP_HEADERS"
        };
        for (raw, surviving, shown) in cases {
            let (config, warnings) = resolve(&[(var, raw.as_str())]);
            let context = format!("{var}={raw:?}");
            assert_eq!(headers_of(&config.traces), pairs(surviving), "{context}");
            let w = only_warning_about(&warnings, var, &context);
            assert_eq!(w.value, *shown, "{context}");
            assert_eq!(w.used_instead, "the other entries", "{context}");
            for text in warning_texts(&warnings) {
                assert!(
                    !text.contains(SECRET),
                    "{context}: secret leaked in {text:?}"
                );
            }
            assert!(
                !format!("{config:?}").contains(SECRET),
                "{context}: secret in Debug"
            );
        }
    }
}

#[test]

fn header_entry_without_equals_does_not_leak() {
    for raw in [
        SECRET.to_owned(),
        format!("api-key=abc,{SECRET}"),
        format!("x-team=ok,{SECRET}-tail"),
    ] {
        let (_, warnings) = resolve(&[("OTEL_EXPORTER_OTLP_HEADERS", raw.as_str())]);
        assert!(!warnings.is_empty(), "{raw:?}");
        for text in warning_texts(&warnings) {
            assert!(!text.contains(SECRET), "{raw:?}: secret leaked in {text:?}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Timeout
// ---------------------------------------------------------------------------------------------

#[test]
fn timeout_valid_values() {
    let cases = [
        ("500", Some(Duration::from_millis(500))),
        ("10000", Some(Duration::from_secs(10))),
        ("1", Some(Duration::from_millis(1))),
        (" 2500 ", Some(Duration::from_millis(2500))),
        ("0", None),
        ("000", None),
    ];
    for (value, expected) in cases {
        let (config, warnings) = resolve(&[("OTEL_EXPORTER_OTLP_TIMEOUT", value)]);
        assert_no_warnings(&warnings, value);
        for signal in Signal::ALL {
            assert_eq!(
                config.signal(signal).timeout,
                expected,
                "TIMEOUT={value:?} {signal}"
            );
        }
    }
}

#[test]
fn timeout_huge_value_is_finite() {
    let (config, warnings) = resolve(&[("OTEL_EXPORTER_OTLP_TIMEOUT", "18446744073709551615")]);
    assert_no_warnings(&warnings, "u64::MAX");
    let t = config
        .traces
        .timeout
        .expect("a huge timeout is still a timeout");
    assert!(
        t >= DEFAULT_EXPORT_TIMEOUT && t <= Duration::from_secs(24 * 60 * 60),
        "{t:?}"
    );
}

#[test]
fn timeout_per_signal_beats_generic() {
    let (config, warnings) = resolve(&[
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "1000"),
        ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "0"),
        ("OTEL_EXPORTER_OTLP_LOGS_TIMEOUT", "250"),
    ]);
    assert_no_warnings(&warnings, "timeouts");
    assert_eq!(config.traces.timeout, None);
    assert_eq!(config.metrics.timeout, Some(Duration::from_secs(1)));
    assert_eq!(config.logs.timeout, Some(Duration::from_millis(250)));
}

#[test]
fn timeout_invalid_values_warn_and_use_default() {
    // (value, substring of the reason)
    let cases = [
        ("-1", "negative"),
        ("-5000", "negative"),
        ("abc", "milliseconds"),
        ("1.5", "milliseconds"),
        ("10s", "milliseconds"),
        ("1e3", "milliseconds"),
        ("99999999999999999999999", "milliseconds"),
    ];
    for (value, reason) in cases {
        let (config, warnings) = resolve(&[("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", value)]);
        let context = format!("TRACES_TIMEOUT={value:?}");
        assert_eq!(
            config.traces.timeout,
            Some(DEFAULT_EXPORT_TIMEOUT),
            "{context}"
        );
        let w = only_warning_about(&warnings, "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", &context);
        assert_eq!(warnings.len(), 1, "{context}");
        assert_eq!(w.value, value, "{context}");
        assert!(w.reason.contains(reason), "{context}: {w:?}");
        assert!(w.used_instead.contains("10000 ms"), "{context}: {w:?}");

        // The same value in the generic variable affects every signal.
        let (config, warnings) = resolve(&[("OTEL_EXPORTER_OTLP_TIMEOUT", value)]);
        for signal in Signal::ALL {
            assert_eq!(
                config.signal(signal).timeout,
                Some(DEFAULT_EXPORT_TIMEOUT),
                "{context}"
            );
        }
        only_warning_about(&warnings, "OTEL_EXPORTER_OTLP_TIMEOUT", &context);
    }
}

#[test]
fn timeout_invalid_per_signal_falls_back_to_generic() {
    let (config, warnings) = resolve(&[
        ("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "-1"),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "2000"),
    ]);
    assert_eq!(config.metrics.timeout, Some(Duration::from_secs(2)));
    let w = only_warning_about(
        &warnings,
        "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT",
        "metrics timeout",
    );
    assert!(
        w.used_instead.contains("OTEL_EXPORTER_OTLP_TIMEOUT"),
        "{w:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Compression
// ---------------------------------------------------------------------------------------------

#[test]
fn compression_values() {
    // (value, expected, warns)
    let cases = [
        ("gzip", Compression::Gzip, false),
        ("GZIP", Compression::Gzip, false),
        ("Gzip", Compression::Gzip, false),
        ("none", Compression::None, false),
        ("NONE", Compression::None, false),
        ("zstd", Compression::None, true),
        ("deflate", Compression::None, true),
        ("gzip9", Compression::None, true),
    ];
    for (value, expected, warns) in cases {
        let (config, warnings) = resolve(&[("OTEL_EXPORTER_OTLP_COMPRESSION", value)]);
        let context = format!("COMPRESSION={value:?}");
        for signal in Signal::ALL {
            assert_eq!(config.signal(signal).compression, expected, "{context}");
        }
        if warns {
            let w = only_warning_about(&warnings, "OTEL_EXPORTER_OTLP_COMPRESSION", &context);
            assert_eq!(w.value, value);
            assert_eq!(w.used_instead, "no compression");
        } else {
            assert_no_warnings(&warnings, &context);
        }
    }
}

#[test]
fn compression_per_signal_beats_generic() {
    let (config, warnings) = resolve(&[
        ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
        ("OTEL_EXPORTER_OTLP_LOGS_COMPRESSION", "none"),
        ("OTEL_EXPORTER_OTLP_METRICS_COMPRESSION", "zstd"),
    ]);
    assert_eq!(config.traces.compression, Compression::Gzip);
    assert_eq!(config.logs.compression, Compression::None);
    // Invalid per-signal falls back to the generic gzip.
    assert_eq!(config.metrics.compression, Compression::Gzip);
    let w = only_warning_about(
        &warnings,
        "OTEL_EXPORTER_OTLP_METRICS_COMPRESSION",
        "metrics zstd",
    );
    assert!(
        w.used_instead.contains("OTEL_EXPORTER_OTLP_COMPRESSION"),
        "{w:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Sampler
// ---------------------------------------------------------------------------------------------

#[test]
fn sampler_names_are_case_insensitive() {
    let cases = [
        ("always_on", Sampler::AlwaysOn),
        ("ALWAYS_ON", Sampler::AlwaysOn),
        ("always_off", Sampler::AlwaysOff),
        ("Always_Off", Sampler::AlwaysOff),
        ("traceidratio", Sampler::TraceIdRatio(1.0)),
        ("TraceIdRatio", Sampler::TraceIdRatio(1.0)),
        ("parentbased_always_on", Sampler::ParentBasedAlwaysOn),
        ("ParentBased_Always_On", Sampler::ParentBasedAlwaysOn),
        ("parentbased_always_off", Sampler::ParentBasedAlwaysOff),
        ("PARENTBASED_ALWAYS_OFF", Sampler::ParentBasedAlwaysOff),
        (
            "parentbased_traceidratio",
            Sampler::ParentBasedTraceIdRatio(1.0),
        ),
        (
            "ParentBased_TraceIdRatio",
            Sampler::ParentBasedTraceIdRatio(1.0),
        ),
        ("  always_on  ", Sampler::AlwaysOn),
    ];
    for (value, expected) in cases {
        let (config, warnings) = resolve(&[("OTEL_TRACES_SAMPLER", value)]);
        assert_eq!(config.sampler, expected, "OTEL_TRACES_SAMPLER={value:?}");
        assert_no_warnings(&warnings, value);
    }
}

#[test]
fn sampler_ratio_argument() {
    let cases = [
        ("0.25", 0.25),
        ("0", 0.0),
        ("0.0", 0.0),
        ("1", 1.0),
        ("1.0", 1.0),
        (" 0.5 ", 0.5),
        ("1e-1", 0.1),
        (".75", 0.75),
    ];
    for (arg, ratio) in cases {
        let (config, warnings) = resolve(&[
            ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", arg),
        ]);
        assert_eq!(config.sampler, Sampler::TraceIdRatio(ratio), "ARG={arg:?}");
        assert_no_warnings(&warnings, arg);
        let (config, warnings) = resolve(&[
            ("OTEL_TRACES_SAMPLER", "ParentBased_TraceIdRatio"),
            ("OTEL_TRACES_SAMPLER_ARG", arg),
        ]);
        assert_eq!(
            config.sampler,
            Sampler::ParentBasedTraceIdRatio(ratio),
            "ARG={arg:?}"
        );
        assert_no_warnings(&warnings, arg);
    }
}

#[test]
fn sampler_bad_ratio_warns_and_uses_one() {
    for arg in [
        "1.5", "-0.1", "2", "half", "50%", "NaN", "inf", "-inf", "0,5",
    ] {
        for (name, expected) in [
            ("traceidratio", Sampler::TraceIdRatio(1.0)),
            (
                "parentbased_traceidratio",
                Sampler::ParentBasedTraceIdRatio(1.0),
            ),
        ] {
            let (config, warnings) = resolve(&[
                ("OTEL_TRACES_SAMPLER", name),
                ("OTEL_TRACES_SAMPLER_ARG", arg),
            ]);
            let context = format!("{name} ARG={arg:?}");
            assert_eq!(config.sampler, expected, "{context}");
            let w = only_warning_about(&warnings, "OTEL_TRACES_SAMPLER_ARG", &context);
            assert_eq!(warnings.len(), 1, "{context}");
            assert_eq!(w.value, arg, "{context}");
            assert_eq!(w.used_instead, "1.0", "{context}");
        }
    }
}

#[test]
fn sampler_arg_is_ignored_for_samplers_without_a_ratio() {
    for name in [
        "always_on",
        "always_off",
        "parentbased_always_on",
        "parentbased_always_off",
    ] {
        let (_, warnings) = resolve(&[
            ("OTEL_TRACES_SAMPLER", name),
            ("OTEL_TRACES_SAMPLER_ARG", "garbage"),
        ]);
        assert_no_warnings(&warnings, name);
    }
    // And without a sampler at all.
    let (config, warnings) = resolve(&[("OTEL_TRACES_SAMPLER_ARG", "0.1")]);
    assert_eq!(config.sampler, Sampler::ParentBasedAlwaysOn);
    assert_no_warnings(&warnings, "arg only");
}

#[test]
fn unknown_sampler_warns_and_uses_parent_based_always_on() {
    for value in [
        "jaeger_remote",
        "parentbased_jaeger_remote",
        "xray",
        "always",
        "traceidratio(0.5)",
    ] {
        let (config, warnings) = resolve(&[
            ("OTEL_TRACES_SAMPLER", value),
            ("OTEL_TRACES_SAMPLER_ARG", "0.5"),
        ]);
        let context = format!("OTEL_TRACES_SAMPLER={value:?}");
        assert_eq!(config.sampler, Sampler::ParentBasedAlwaysOn, "{context}");
        let w = only_warning_about(&warnings, "OTEL_TRACES_SAMPLER", &context);
        assert_eq!(warnings.len(), 1, "{context}");
        assert_eq!(w.value, value);
        assert_eq!(w.used_instead, "parentbased_always_on");
    }
}

#[test]
fn sampler_display() {
    let cases = [
        (Sampler::AlwaysOn, "always_on"),
        (Sampler::AlwaysOff, "always_off"),
        (Sampler::TraceIdRatio(0.25), "traceidratio(0.25)"),
        (Sampler::ParentBasedAlwaysOn, "parentbased_always_on"),
        (Sampler::ParentBasedAlwaysOff, "parentbased_always_off"),
        (
            Sampler::ParentBasedTraceIdRatio(0.5),
            "parentbased_traceidratio(0.5)",
        ),
    ];
    for (sampler, text) in cases {
        assert_eq!(sampler.to_string(), text);
    }
}

// ---------------------------------------------------------------------------------------------
// Propagators
// ---------------------------------------------------------------------------------------------

#[test]
fn propagators() {
    use Propagator::{Baggage, TraceContext};
    // (value, expected, warns)
    let cases: &[(&str, &[Propagator], bool)] = &[
        ("tracecontext", &[TraceContext], false),
        ("baggage", &[Baggage], false),
        ("tracecontext,baggage", &[TraceContext, Baggage], false),
        ("baggage,tracecontext", &[Baggage, TraceContext], false),
        ("TraceContext, BAGGAGE", &[TraceContext, Baggage], false),
        ("tracecontext,tracecontext", &[TraceContext], false),
        ("none", &[], false),
        ("NONE", &[], false),
        ("none,tracecontext", &[], false),
        ("tracecontext,,", &[TraceContext], false),
        ("ottrace,tracecontext", &[TraceContext], true),
        ("jaeger,baggage", &[Baggage], true),
        ("xray,ottrace,tracecontext", &[TraceContext], true),
    ];
    for (value, expected, warns) in cases {
        let (config, warnings) = resolve(&[("OTEL_PROPAGATORS", value)]);
        let context = format!("OTEL_PROPAGATORS={value:?}");
        assert_eq!(config.propagators, *expected, "{context}");
        if *warns {
            let w = only_warning_about(&warnings, "OTEL_PROPAGATORS", &context);
            assert_eq!(w.value, *value, "{context}");
        } else {
            assert_no_warnings(&warnings, &context);
        }
    }
}

#[test]
fn unknown_propagator_warning_names_it() {
    let (_, warnings) = resolve(&[("OTEL_PROPAGATORS", "xray,tracecontext")]);
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].reason.contains("xray"), "{:?}", warnings[0]);
    let (_, warnings) = resolve(&[("OTEL_PROPAGATORS", "ottrace,xray")]);
    assert_eq!(
        warnings.len(),
        2,
        "one warning per unknown propagator: {warnings:#?}"
    );
    // Only unknown names: still warned about (what is used instead is "the other listed").
    let (_, warnings) = resolve(&[("OTEL_PROPAGATORS", "xray")]);
    only_warning_about(&warnings, "OTEL_PROPAGATORS", "xray alone");
}

#[test]
fn b3_single_and_multi_are_propagators_in_the_order_given() {
    let (config, warnings) = resolve(&[("OTEL_PROPAGATORS", "b3,tracecontext,B3Multi")]);
    assert_eq!(
        config.propagators,
        [
            Propagator::B3,
            Propagator::TraceContext,
            Propagator::B3Multi
        ]
    );
    assert_no_warnings(&warnings, "b3");
}

// ---------------------------------------------------------------------------------------------
// Log filter
// ---------------------------------------------------------------------------------------------

#[test]
fn log_level_bare_levels() {
    let cases = [
        ("info", "info"),
        ("INFO", "info"),
        ("Info", "info"),
        ("warn", "warn"),
        ("WARN", "warn"),
        ("warning", "warn"),
        ("Warning", "warn"),
        ("error", "error"),
        ("ERROR", "error"),
        ("fatal", "error"),
        ("debug", "debug"),
        ("DEBUG", "debug"),
        ("trace", "trace"),
        ("TRACE", "trace"),
        ("off", "off"),
        ("none", "off"),
    ];
    for var in ["LOG_LEVEL", "RUST_LOG"] {
        for (value, level) in cases {
            let (config, warnings) = resolve(&[(var, value)]);
            let context = format!("{var}={value:?}");
            assert_eq!(
                first_directive(&config.log_filter),
                level,
                "{context}: {}",
                config.log_filter
            );
            assert!(
                config.log_filter.ends_with(",opentelemetry=warn"),
                "{context}: {}",
                config.log_filter
            );
            assert_no_warnings(&warnings, &context);
            assert!(
                EnvFilter::builder().parse(&config.log_filter).is_ok(),
                "{context}: {}",
                config.log_filter
            );
        }
    }
}

#[test]
fn bare_debug_and_trace_cap_noisy_transport_crates() {
    for value in ["debug", "TRACE"] {
        let (config, _) = resolve(&[("LOG_LEVEL", value)]);
        for target in [
            "h2",
            "hyper",
            "hyper_util",
            "tonic",
            "tower",
            "reqwest",
            "rustls",
        ] {
            let directive = format!(",{target}=info");
            assert!(
                config.log_filter.contains(&directive),
                "{value}: {} lacks {directive}",
                config.log_filter
            );
        }
    }
    for value in [
        "info",
        "warn",
        "error",
        "off",
        "debug,hyper=warn",
        "my_crate=debug",
    ] {
        let (config, _) = resolve(&[("LOG_LEVEL", value)]);
        assert!(
            !config.log_filter.contains("h2=info"),
            "{value}: {}",
            config.log_filter
        );
        assert!(
            !config.log_filter.contains("tonic=info"),
            "{value}: {}",
            config.log_filter
        );
    }
}

#[test]
fn log_level_directives_are_kept() {
    for value in [
        "info,hyper=warn",
        "warn,my_crate=debug",
        "my_crate::db=trace",
        "info,my_crate[span]=debug",
    ] {
        let (config, warnings) = resolve(&[("LOG_LEVEL", value)]);
        assert_no_warnings(&warnings, value);
        assert!(
            config.log_filter.starts_with(value),
            "{value}: {}",
            config.log_filter
        );
        assert!(
            config.log_filter.ends_with(",opentelemetry=warn"),
            "{value}: {}",
            config.log_filter
        );
    }
}

#[test]
fn log_level_precedence() {
    // (env, Defaults.log_level, expected first directive)
    let cases: &[(&[(&str, &str)], Option<&str>, &str)] = &[
        (
            &[("LOG_LEVEL", "warn"), ("RUST_LOG", "debug")],
            Some("error"),
            "warn",
        ),
        (&[("RUST_LOG", "debug")], Some("error"), "debug"),
        (&[], Some("error"), "error"),
        (&[], Some("WARNING"), "warn"),
        (&[], Some("my_crate=debug"), "my_crate=debug"),
        (&[], None, "info"),
        (
            &[("LOG_LEVEL", "   "), ("RUST_LOG", "error")],
            None,
            "error",
        ),
        // Invalid LOG_LEVEL falls through to RUST_LOG, then the code default, then info.
        (
            &[("LOG_LEVEL", "info,hyper=loud"), ("RUST_LOG", "warn")],
            Some("error"),
            "warn",
        ),
        (&[("LOG_LEVEL", "info,hyper=loud")], Some("error"), "error"),
        (&[("LOG_LEVEL", "info,hyper=loud")], None, "info"),
        (&[("RUST_LOG", "=debug=")], None, "info"),
        // An unusable code default is ignored.
        (&[], Some("info,hyper=loud"), "info"),
    ];
    for (vars, default, expected) in cases {
        let defaults = Defaults {
            log_level: default.map(str::to_owned),
            ..Defaults::default()
        };
        let (config, _) = resolve_with(&defaults, vars);
        assert_eq!(
            first_directive(&config.log_filter),
            *expected,
            "{vars:?} default {default:?}: {}",
            config.log_filter
        );
    }
}

#[test]
fn invalid_log_level_warns_naming_the_fallback() {
    // (env, Defaults.log_level, warned variable, substring of used_instead)
    let cases: &[(&[(&str, &str)], Option<&str>, &str, &str)] = &[
        (
            &[("LOG_LEVEL", "info,hyper=loud"), ("RUST_LOG", "warn")],
            None,
            "LOG_LEVEL",
            "RUST_LOG",
        ),
        (
            &[("LOG_LEVEL", "info,hyper=loud")],
            Some("error"),
            "LOG_LEVEL",
            "error",
        ),
        (
            &[("LOG_LEVEL", "info,hyper=loud")],
            None,
            "LOG_LEVEL",
            "info",
        ),
        (
            &[("LOG_LEVEL", "hyper=notalevel")],
            None,
            "LOG_LEVEL",
            "info",
        ),
        (&[("LOG_LEVEL", "[")], None, "LOG_LEVEL", "info"),
        (&[("RUST_LOG", "=debug=")], Some("warn"), "RUST_LOG", "warn"),
        (
            &[
                ("LOG_LEVEL", "info,hyper=loud"),
                (
                    "OTEL_RESOURCE_ATTRIBUTES",
                    "deployment.environment.name=development",
                ),
            ],
            None,
            "LOG_LEVEL",
            "debug",
        ),
    ];
    for (vars, default, variable, used) in cases {
        let defaults = Defaults {
            log_level: default.map(str::to_owned),
            ..Defaults::default()
        };
        let (_, warnings) = resolve_with(&defaults, vars);
        let context = format!("{vars:?} default {default:?}");
        let w = only_warning_about(&warnings, variable, &context);
        assert_eq!(warnings.len(), 1, "{context}");
        assert!(w.used_instead.contains(used), "{context}: {w:?}");
        assert!(
            w.reason.contains("filter") || w.reason.contains("level"),
            "{context}: {w:?}"
        );
    }
}

#[test]
fn development_environment_defaults_to_debug() {
    // (OTEL_RESOURCE_ATTRIBUTES, dev?)
    let cases = [
        ("deployment.environment.name=development", true),
        ("deployment.environment=local", true),
        ("deployment.environment.name=dev", true),
        ("deployment.environment=Development", true),
        ("team=a,deployment.environment.name=LOCAL", true),
        ("deployment.environment.name=production", false),
        ("deployment.environment=staging", false),
        ("environment=development", false),
        ("deployment.environment.name=developer", false),
    ];
    for (attrs, dev) in cases {
        let (config, warnings) = resolve(&[("OTEL_RESOURCE_ATTRIBUTES", attrs)]);
        assert_no_warnings(&warnings, attrs);
        let expected = if dev { "debug" } else { "info" };
        assert_eq!(
            first_directive(&config.log_filter),
            expected,
            "{attrs}: {}",
            config.log_filter
        );
        assert_eq!(
            config.log_filter.contains(",h2=info"),
            dev,
            "{attrs}: {}",
            config.log_filter
        );
        assert!(
            config.log_filter.ends_with(",opentelemetry=warn"),
            "{attrs}: {}",
            config.log_filter
        );
    }

    // Explicit LOG_LEVEL / RUST_LOG still win in development.
    for var in ["LOG_LEVEL", "RUST_LOG"] {
        let (config, _) = resolve(&[
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment.name=development",
            ),
            (var, "warn"),
        ]);
        assert_eq!(first_directive(&config.log_filter), "warn", "{var}");
    }
}

#[test]

fn code_default_log_level_beats_development_default() {
    let defaults = Defaults {
        log_level: Some("warn".into()),
        ..Defaults::default()
    };
    let (config, _) = resolve_with(
        &defaults,
        &[(
            "OTEL_RESOURCE_ATTRIBUTES",
            "deployment.environment.name=development",
        )],
    );
    assert_eq!(
        first_directive(&config.log_filter),
        "warn",
        "{}",
        config.log_filter
    );
}

#[test]
fn otel_log_level_sets_the_sdk_directive() {
    // (OTEL_LOG_LEVEL, expected opentelemetry directive, warns)
    let cases = [
        (None, "opentelemetry=warn", false),
        (Some("debug"), "opentelemetry=debug", false),
        (Some("DEBUG"), "opentelemetry=debug", false),
        (Some("info"), "opentelemetry=info", false),
        (Some("warning"), "opentelemetry=warn", false),
        (Some("error"), "opentelemetry=error", false),
        (Some("trace"), "opentelemetry=trace", false),
        (Some("off"), "opentelemetry=off", false),
        (Some("loud"), "opentelemetry=warn", true),
        (Some("info,hyper=warn"), "opentelemetry=warn", true),
        (Some("5"), "opentelemetry=warn", true),
    ];
    for (value, directive, warns) in cases {
        let vars: Vec<(&str, &str)> = value.iter().map(|v| ("OTEL_LOG_LEVEL", *v)).collect();
        let (config, warnings) = resolve(&vars);
        let context = format!("OTEL_LOG_LEVEL={value:?}");
        assert!(
            config.log_filter.ends_with(&format!(",{directive}")),
            "{context}: {}",
            config.log_filter
        );
        assert_eq!(
            config.log_filter.matches("opentelemetry=").count(),
            1,
            "{context}: {}",
            config.log_filter
        );
        assert!(
            config.log_filter.starts_with("info"),
            "{context}: {}",
            config.log_filter
        );
        if warns {
            let w = only_warning_about(&warnings, "OTEL_LOG_LEVEL", &context);
            assert_eq!(w.used_instead, "warn", "{context}");
            assert_eq!(Some(w.value.as_str()), value, "{context}");
        } else {
            assert_no_warnings(&warnings, &context);
        }
    }
    // Combined with a verbose service level.
    let (config, _) = resolve(&[("LOG_LEVEL", "debug"), ("OTEL_LOG_LEVEL", "error")]);
    assert!(
        config.log_filter.starts_with("debug,"),
        "{}",
        config.log_filter
    );
    assert!(
        config.log_filter.contains("hyper=info"),
        "{}",
        config.log_filter
    );
    assert!(
        config.log_filter.ends_with(",opentelemetry=error"),
        "{}",
        config.log_filter
    );
}

#[test]

fn explicit_opentelemetry_directive_in_rust_log_is_respected() {
    for var in ["LOG_LEVEL", "RUST_LOG"] {
        let (config, _) = resolve(&[(var, "info,opentelemetry=debug")]);
        let effective = EnvFilter::builder()
            .parse(&config.log_filter)
            .unwrap()
            .to_string();
        assert!(
            effective.contains("opentelemetry=debug"),
            "{var}: {} -> {effective}",
            config.log_filter
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Unsupported TLS variables
// ---------------------------------------------------------------------------------------------

#[test]
fn tls_files_resolve_per_signal_then_generic_each_on_its_own() {
    let (config, warnings) = resolve(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector:4318"),
        ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/etc/ca.pem"),
        (
            "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
            "/etc/traces-ca.pem",
        ),
        ("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", "/etc/client.pem"),
        ("OTEL_EXPORTER_OTLP_CLIENT_KEY", "/etc/client.key"),
        ("OTEL_EXPORTER_OTLP_LOGS_CLIENT_KEY", "/etc/logs.key"),
    ]);
    assert_no_warnings(&warnings, "valid tls");
    let path = |p: &str| Some(std::path::PathBuf::from(p));
    assert_eq!(config.traces.tls.certificate, path("/etc/traces-ca.pem"));
    assert_eq!(config.metrics.tls.certificate, path("/etc/ca.pem"));
    assert_eq!(
        config.metrics.tls.client_certificate,
        path("/etc/client.pem")
    );
    assert_eq!(config.metrics.tls.client_key, path("/etc/client.key"));
    assert_eq!(config.logs.tls.client_key, path("/etc/logs.key"));
}

#[test]
fn tls_files_on_a_plaintext_endpoint_or_half_a_client_pair_warn_and_are_ignored() {
    let (config, warnings) = resolve(&[("OTEL_EXPORTER_OTLP_CERTIFICATE", "/etc/ca.pem")]);
    let w = only_warning_about(&warnings, "OTEL_EXPORTER_OTLP_CERTIFICATE", "plaintext");
    assert_eq!(
        warnings.len(),
        1,
        "one warning, not one per signal: {warnings:#?}"
    );
    assert!(w.reason.contains("https"), "{w:?}");
    assert!(config.traces.tls.is_empty() && config.logs.tls.is_empty());

    let (config, warnings) = resolve(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector:4318"),
        ("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", "/etc/client.pem"),
    ]);
    let w = only_warning_about(&warnings, "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", "no key");
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(w.reason.contains("needs its key"), "{w:?}");
    assert!(config.traces.tls.client_certificate.is_none());

    let (_, warnings) = resolve(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector:4318"),
        ("OTEL_EXPORTER_OTLP_CLIENT_KEY", "/etc/client.key"),
    ]);
    only_warning_about(&warnings, "OTEL_EXPORTER_OTLP_CLIENT_KEY", "no certificate");
}

// ---------------------------------------------------------------------------------------------
// Empty values, garbage, warnings
// ---------------------------------------------------------------------------------------------

#[test]
fn empty_and_whitespace_values_behave_like_unset() {
    let (baseline, _) = resolve_on(&[]);
    for blank in ["", " ", "   ", "\t", " \t\n "] {
        // One at a time.
        for var in ALL_VARIABLES {
            let (config, warnings) = resolve_on(&[(var, blank)]);
            assert_no_warnings(&warnings, &format!("{var}={blank:?}"));
            assert_eq!(config, baseline, "{var}={blank:?}");
        }
        // All at once.
        let all: Vec<(&str, &str)> = ALL_VARIABLES.iter().map(|v| (*v, blank)).collect();
        let (config, warnings) = resolve_on(&all);
        assert_no_warnings(&warnings, &format!("all={blank:?}"));
        assert_eq!(config, baseline, "all={blank:?}");
    }
}

#[test]
fn warning_value_is_truncated() {
    let long_ascii = "x".repeat(10_000);
    let long_unicode = "é".repeat(300);
    let exact = "y".repeat(200);
    // (value, expected warning value)
    let cases = [
        (long_ascii.clone(), format!("{}...", "x".repeat(200))),
        (long_unicode.clone(), format!("{}...", "é".repeat(200))),
        (exact.clone(), exact.clone()),
        ("bogus".to_owned(), "bogus".to_owned()),
    ];
    for (value, expected) in cases {
        let (_, warnings) = resolve(&[("OTEL_TRACES_SAMPLER", value.as_str())]);
        assert_eq!(warnings.len(), 1);
        assert_eq!(
            warnings[0].value,
            expected,
            "{} chars",
            value.chars().count()
        );
    }
}

#[test]
fn config_warning_display_mentions_variable_value_and_fallback() {
    let (_, warnings) = resolve(&[("OTEL_TRACES_SAMPLER", "bogus")]);
    let text = warnings[0].to_string();
    assert_eq!(
        text,
        "OTEL_TRACES_SAMPLER=\"bogus\" ignored: unknown or unsupported sampler; using parentbased_always_on"
    );

    let (_, warnings) = resolve_on(&[("OTEL_ENABLED", "maybe")]);
    let text = warnings[0].to_string();
    assert!(text.contains("OTEL_ENABLED"), "{text}");
    assert!(text.contains("\"maybe\""), "{text}");
    assert!(text.contains(&warnings[0].reason), "{text}");
    assert!(text.contains("the default (true)"), "{text}");

    // Quotes and control characters in the value are escaped.
    let w = ConfigWarning {
        variable: "V".into(),
        value: "a\"b\nc".into(),
        reason: "r".into(),
        used_instead: "u".into(),
        kind: ConfigWarningKind::Rejected,
    };
    assert_eq!(w.to_string(), "V=\"a\\\"b\\nc\" ignored: r; using u");
}

fn weird_values() -> Vec<String> {
    vec![
        "ünïcødé 🚀 ✓".to_owned(),
        "=".to_owned(),
        "==,==".to_owned(),
        ",,,".to_owned(),
        "a=b=c,=,".to_owned(),
        "=a,b=".to_owned(),
        "x".repeat(10_000),
        "🚀".repeat(10_000),
        format!("{}=v", "k".repeat(10_000)),
        format!("k={}%zz", "v".repeat(10_000)),
        "a,".repeat(5_000),
        "-1".to_owned(),
        "-99999999999999999999".to_owned(),
        "-0".to_owned(),
        "1e309".to_owned(),
        "NaN".to_owned(),
        "%".to_owned(),
        "%zz%".to_owned(),
        "\u{0}\u{1}\u{7f}".to_owned(),
        "http://".to_owned(),
        "://".to_owned(),
        "[{".to_owned(),
        "\"quoted\"".to_owned(),
        "true,false".to_owned(),
    ]
}

/// The config is usable: nothing empty where a value is needed, endpoints parse, the log filter
/// parses, ratios are in range.
fn assert_usable(config: &Config, context: &str) {
    assert!(!config.service_name.is_empty(), "{context}");
    for signal in Signal::ALL {
        let s = config.signal(signal);
        let uri: http::Uri = s.endpoint.parse().unwrap_or_else(|e| {
            panic!(
                "{context}: {signal} endpoint {:?} does not parse: {e}",
                s.endpoint
            )
        });
        assert!(
            matches!(uri.scheme_str(), Some("http") | Some("https")),
            "{context}: {}",
            s.endpoint
        );
        assert!(
            uri.host().is_some_and(|h| !h.is_empty()),
            "{context}: {}",
            s.endpoint
        );
        for (k, v) in s.headers.iter() {
            assert!(
                http::HeaderName::from_bytes(k.as_bytes()).is_ok(),
                "{context}: header {k:?}"
            );
            assert!(
                http::HeaderValue::from_str(v).is_ok(),
                "{context}: header value of {k:?}"
            );
        }
        if let Some(t) = s.timeout {
            assert!(t > Duration::ZERO, "{context}");
        }
        let b = s.batch;
        assert!(
            (1..=MAX_QUEUE_SIZE).contains(&b.max_queue_size),
            "{context}: {b:?}"
        );
        assert!(
            (1..=b.max_queue_size).contains(&b.max_export_batch_size),
            "{context}: {b:?}"
        );
        assert!(b.schedule_delay >= Duration::from_millis(1), "{context}");
        assert!(b.export_timeout >= Duration::from_millis(1), "{context}");
        assert!(s.export_timeout() > Duration::ZERO, "{context}");
        assert!(s.value_length_limit >= 1, "{context}");
    }
    match config.sampler {
        Sampler::TraceIdRatio(r) | Sampler::ParentBasedTraceIdRatio(r) => {
            assert!((0.0..=1.0).contains(&r), "{context}: ratio {r}");
        }
        _ => {}
    }
    assert!(
        EnvFilter::builder().parse(&config.log_filter).is_ok(),
        "{context}: log filter {:?} does not parse",
        config.log_filter.chars().take(300).collect::<String>()
    );
}

fn assert_warnings_bounded(warnings: &[ConfigWarning], context: &str) {
    for w in warnings {
        assert!(!w.variable.is_empty(), "{context}");
        assert!(
            ALL_VARIABLES.contains(&w.variable.as_str()),
            "{context}: unknown variable {}",
            w.variable
        );
        assert!(
            w.value.chars().count() <= 203,
            "{context}: {} chars in value of {}",
            w.value.chars().count(),
            w.variable
        );
        assert!(
            !w.reason.is_empty() && !w.used_instead.is_empty(),
            "{context}: {w:?}"
        );
    }
}

#[test]
fn garbage_everywhere_does_not_panic_and_stays_usable() {
    let weird = weird_values();
    for defaults in [Defaults::default(), enabled_defaults()] {
        // Every variable set to the same weird value.
        for value in &weird {
            let all: Vec<(&str, &str)> =
                ALL_VARIABLES.iter().map(|v| (*v, value.as_str())).collect();
            let (config, warnings) = resolve_with(&defaults, &all);
            let context = format!("all = {:?}", value.chars().take(30).collect::<String>());
            assert_usable(&config, &context);
            assert_warnings_bounded(&warnings, &context);
        }
        // Every variable set to a different weird value, rotated so each pairing occurs.
        for shift in 0..weird.len() {
            let all: Vec<(&str, &str)> = ALL_VARIABLES
                .iter()
                .enumerate()
                .map(|(i, v)| (*v, weird[(i + shift) % weird.len()].as_str()))
                .collect();
            let (config, warnings) = resolve_with(&defaults, &all);
            let context = format!("rotation {shift}");
            assert_usable(&config, &context);
            assert_warnings_bounded(&warnings, &context);
            assert!(!warnings.is_empty(), "{context}");
        }
    }
}

#[test]
fn garbage_values_in_valid_shapes() {
    // Values that look almost right.
    let vars = [
        ("OTEL_ENABLED", "truee"),
        ("OTEL_SERVICE_NAME", "svc=with,odd=chars ✓"),
        ("OTEL_RESOURCE_ATTRIBUTES", "k=v,service.name=%E2%9C%93"),
        ("OTEL_TRACES_EXPORTER", "otlp,,console,"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc "),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317?x=1"),
        ("OTEL_EXPORTER_OTLP_HEADERS", "a=1,b==2,c=%3D"),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "+500"),
        ("OTEL_TRACES_SAMPLER", "traceidratio"),
        ("OTEL_TRACES_SAMPLER_ARG", "-0.0"),
        ("OTEL_PROPAGATORS", ",baggage,"),
        ("LOG_LEVEL", "Warning"),
    ];
    let (config, warnings) = resolve_on(&vars);
    assert_warnings_bounded(&warnings, "almost right");
    let flagged: Vec<&str> = warnings.iter().map(|w| w.variable.as_str()).collect();
    assert_eq!(flagged, ["OTEL_ENABLED"], "{warnings:#?}");
    assert!(config.export_enabled);
    assert_eq!(config.service_name, "svc=with,odd=chars ✓");
    assert_eq!(config.resource_attributes, pairs(&[("k", "v")]));
    assert!(config.traces.otlp && config.traces.console);
    assert_eq!(config.traces.protocol, Protocol::Grpc);
    assert_eq!(config.traces.endpoint, "http://collector:4317?x=1");
    assert_eq!(
        headers_of(&config.logs),
        pairs(&[("a", "1"), ("b", "=2"), ("c", "=")])
    );
    assert_eq!(config.metrics.timeout, Some(Duration::from_millis(500)));
    assert!(matches!(config.sampler, Sampler::TraceIdRatio(r) if r == 0.0));
    assert_eq!(config.propagators, vec![Propagator::Baggage]);
    assert_eq!(first_directive(&config.log_filter), "warn");
    assert_usable(&config, "almost right");
}

#[test]

fn warning_display_is_bounded() {
    let huge = "z".repeat(10_000);
    let cases = [
        ("OTEL_TRACES_EXPORTER", huge.clone()),
        ("OTEL_PROPAGATORS", huge.clone()),
        ("OTEL_RESOURCE_ATTRIBUTES", format!("{huge}=%zz")),
        ("LOG_LEVEL", format!("{huge}=loud")),
        (
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            format!("ftp://{huge}"),
        ),
    ];
    let mut too_long = Vec::new();
    for (var, value) in cases {
        let (_, warnings) = resolve(&[(var, value.as_str())]);
        assert!(!warnings.is_empty(), "{var}");
        for w in &warnings {
            let len = w.to_string().chars().count();
            if len > 1_000 {
                too_long.push(format!("{var}: {len} chars"));
            }
        }
    }
    assert!(too_long.is_empty(), "warnings too long: {too_long:?}");
}

#[test]

fn invalid_generic_variable_warns_once() {
    let cases = [
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "not a url"),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "-1"),
        ("OTEL_EXPORTER_OTLP_COMPRESSION", "zstd"),
        ("OTEL_EXPORTER_OTLP_INSECURE", "maybe"),
        ("OTEL_EXPORTER_OTLP_HEADERS", "bad key=x"),
    ];
    for (var, value) in cases {
        let (_, warnings) = resolve(&[(var, value)]);
        assert_eq!(
            warnings_for(&warnings, var).len(),
            1,
            "{var}={value:?}: {warnings:#?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Shutdown timings
// ---------------------------------------------------------------------------------------------

#[test]
fn shutdown_defaults_to_the_orchestrators_grace_period() {
    let (config, warnings) = resolve(&[]);
    assert_eq!(config.shutdown.timeout, Duration::from_secs(30));
    assert_eq!(config.shutdown.drain_delay, Duration::ZERO);
    assert!(warnings.is_empty());
}

#[test]
fn shutdown_env_overrides_code_defaults() {
    let defaults = Defaults {
        shutdown_timeout: Some(Duration::from_secs(20)),
        shutdown_drain_delay: Some(Duration::from_secs(2)),
        ..Defaults::default()
    };
    let (config, _) = resolve_with(&defaults, &[]);
    assert_eq!(config.shutdown.timeout, Duration::from_secs(20));
    assert_eq!(config.shutdown.drain_delay, Duration::from_secs(2));
    let (config, warnings) = resolve_with(
        &defaults,
        &[
            ("SHUTDOWN_TIMEOUT_MS", " 45000 "),
            ("SHUTDOWN_DRAIN_DELAY_MS", "5000"),
        ],
    );
    assert_eq!(config.shutdown.timeout, Duration::from_secs(45));
    assert_eq!(config.shutdown.drain_delay, Duration::from_secs(5));
    assert!(warnings.is_empty(), "{warnings:?}");
}

#[test]
fn invalid_shutdown_values_warn_and_fall_back() {
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "SHUTDOWN_TIMEOUT_MS",
            "30s",
            "not a whole number",
            "30000 ms",
        ),
        ("SHUTDOWN_TIMEOUT_MS", "-5", "negative", "30000 ms"),
        (
            "SHUTDOWN_TIMEOUT_MS",
            "0",
            "exit before any step",
            "30000 ms",
        ),
        (
            "SHUTDOWN_TIMEOUT_MS",
            "99999999999999999999",
            "not a whole number",
            "30000 ms",
        ),
        (
            "SHUTDOWN_TIMEOUT_MS",
            "86400001",
            "longer than a day",
            "30000 ms",
        ),
        (
            "SHUTDOWN_DRAIN_DELAY_MS",
            "1.5",
            "not a whole number",
            "0 ms",
        ),
        (
            "SHUTDOWN_DRAIN_DELAY_MS",
            "30000",
            "not shorter than the shutdown budget",
            "0 ms",
        ),
    ];
    for (variable, value, reason, used) in cases {
        let (config, warnings) = resolve(&[(variable, value)]);
        let w = only_warning_about(&warnings, variable, value);
        assert_eq!(w.value, *value);
        assert!(
            w.reason.contains(reason),
            "{variable}={value}: {}",
            w.reason
        );
        assert_eq!(w.used_instead, *used, "{variable}={value}");
        assert_eq!(config.shutdown.timeout, Duration::from_secs(30));
        assert_eq!(config.shutdown.drain_delay, Duration::ZERO);
    }
}

#[test]
fn drain_delay_is_checked_against_the_effective_budget() {
    let (config, warnings) = resolve(&[
        ("SHUTDOWN_TIMEOUT_MS", "2000"),
        ("SHUTDOWN_DRAIN_DELAY_MS", "2500"),
    ]);
    assert_eq!(config.shutdown.timeout, Duration::from_secs(2));
    assert_eq!(config.shutdown.drain_delay, Duration::ZERO);
    let w = only_warning_about(&warnings, "SHUTDOWN_DRAIN_DELAY_MS", "drain 2500");
    assert!(w.reason.contains("2000 ms"), "{}", w.reason);
}

#[test]
fn shutdown_config_from_lookup_is_the_same_resolver() {
    let (config, warnings) = ShutdownConfig::from_lookup(env(&[
        ("SHUTDOWN_TIMEOUT_MS", "1000"),
        ("SHUTDOWN_DRAIN_DELAY_MS", "nope"),
    ]));
    assert_eq!(config.timeout, Duration::from_secs(1));
    assert_eq!(config.drain_delay, Duration::ZERO);
    assert_eq!(warnings.len(), 1);
    let capped = ShutdownConfig::new(Duration::ZERO, Duration::from_secs(9));
    assert_eq!(capped.timeout, Duration::from_millis(1));
    assert!(capped.drain_delay < capped.timeout);
}

// ---------------------------------------------------------------------------------------------
// Batching and value limits
// ---------------------------------------------------------------------------------------------

#[test]
fn batching_defaults_follow_the_spec_per_signal() {
    let (config, warnings) = resolve(&[]);
    assert_no_warnings(&warnings, "empty env");
    assert_eq!(config.traces.batch, Batching::default_for(Signal::Traces));
    assert_eq!(config.traces.batch.schedule_delay, Duration::from_secs(5));
    assert_eq!(config.logs.batch.schedule_delay, Duration::from_secs(1));
    assert_eq!(config.metrics.batch.schedule_delay, Duration::from_secs(60));
    assert_eq!(config.logs.batch.max_queue_size, 2048);
    assert_eq!(config.traces.batch.max_export_batch_size, 512);
    assert_eq!(config.traces.value_length_limit, DEFAULT_VALUE_LENGTH_LIMIT);
    // The OTLP timeout (10 s) is the shorter bound.
    assert_eq!(config.traces.export_timeout(), Duration::from_secs(10));
}

#[test]
fn batching_variables_apply_to_their_own_signal() {
    let (config, warnings) = resolve(&[
        ("OTEL_BSP_MAX_QUEUE_SIZE", "100"),
        ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "10"),
        ("OTEL_BSP_SCHEDULE_DELAY", "250"),
        ("OTEL_BSP_EXPORT_TIMEOUT", "2000"),
        ("OTEL_BLRP_MAX_QUEUE_SIZE", "50"),
        ("OTEL_METRIC_EXPORT_INTERVAL", "1500"),
        ("OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", "64"),
        ("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "128"),
    ]);
    assert_no_warnings(&warnings, "valid batching");
    let t = config.traces.batch;
    assert_eq!(
        (t.max_queue_size, t.max_export_batch_size, t.schedule_delay),
        (100, 10, Duration::from_millis(250))
    );
    assert_eq!(config.traces.export_timeout(), Duration::from_secs(2));
    assert_eq!(config.logs.batch.max_queue_size, 50);
    assert_eq!(
        config.logs.batch.max_export_batch_size, 50,
        "capped at the queue"
    );
    assert_eq!(config.logs.batch.schedule_delay, Duration::from_secs(1));
    assert_eq!(
        config.metrics.batch.schedule_delay,
        Duration::from_millis(1500)
    );
    assert_eq!(config.traces.value_length_limit, 64);
    assert_eq!(config.logs.value_length_limit, 128);
}

#[test]
fn invalid_batching_values_warn_and_use_the_default() {
    let cases: &[(&str, &str, &str)] = &[
        ("OTEL_BSP_MAX_QUEUE_SIZE", "0", "at least 1"),
        ("OTEL_BSP_MAX_QUEUE_SIZE", "1000000000000", "maximum"),
        ("OTEL_BSP_MAX_QUEUE_SIZE", "-5", "negative"),
        ("OTEL_BLRP_MAX_QUEUE_SIZE", "lots", "whole number"),
        ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "4096", "maximum (2048)"),
        ("OTEL_BSP_SCHEDULE_DELAY", "0", "at least 1 ms"),
        ("OTEL_BLRP_SCHEDULE_DELAY", "5s", "whole number"),
        ("OTEL_METRIC_EXPORT_INTERVAL", "-1", "negative"),
        (
            "OTEL_METRIC_EXPORT_TIMEOUT",
            "99999999999999",
            "longer than a day",
        ),
        ("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "0", "at least 1"),
        (
            "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT",
            "big",
            "whole number",
        ),
    ];
    for (var, value, reason) in cases {
        let (config, warnings) = resolve(&[(var, value)]);
        let w = only_warning_about(&warnings, var, value);
        assert_eq!(warnings.len(), 1, "{var}={value}: {warnings:?}");
        assert_eq!(w.value, *value);
        assert!(w.reason.contains(reason), "{var}={value}: {w:?}");
        assert!(w.used_instead.contains("default"), "{var}={value}: {w:?}");
        assert_usable(&config, &format!("{var}={value}"));
        assert_eq!(config.traces.batch, Batching::default_for(Signal::Traces));
        assert_eq!(config.logs.batch, Batching::default_for(Signal::Logs));
    }
}

mod hostile {
    use super::*;
    use proptest::prelude::*;

    /// Values chosen to hit parser edges, mixed with arbitrary unicode.
    fn hostile_value() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            "[ -~]{0,40}",
            "[=,%;: ]{0,12}",
            "-?[0-9]{1,25}",
            "(http|https|grpc)://[a-z0-9.:\\[\\]%@/?#=,]{0,30}",
            "([a-zA-Z0-9_.-]{0,8}=[^,]{0,8},?){0,6}",
            proptest::sample::select(weird_values()),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Any subset of the variables, each with any value: resolution never panics, the
        /// result is usable and every warning names a variable the crate reads, with a
        /// bounded value.
        #[test]
        fn any_environment_resolves_to_a_usable_config(
            vars in proptest::collection::btree_map(
                proptest::sample::select(ALL_VARIABLES.to_vec()),
                hostile_value(),
                0..ALL_VARIABLES.len(),
            ),
            export_on in any::<bool>(),
        ) {
            let pairs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let defaults = Defaults { export_enabled: export_on, ..Defaults::default() };
            let (config, warnings) = resolve_with(&defaults, &pairs);
            assert_usable(&config, &format!("{pairs:?}"));
            assert_warnings_bounded(&warnings, &format!("{pairs:?}"));
            // A variable whose value was rejected is always reported.
            for w in &warnings {
                prop_assert!(vars.contains_key(w.variable.as_str()), "{:?}", w);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Resource detectors, metric settings, Prometheus
// ---------------------------------------------------------------------------------------------

#[test]
fn prometheus_is_a_metrics_exporter_only() {
    let (config, warnings) = resolve_on(&[("OTEL_METRICS_EXPORTER", "prometheus")]);
    assert!(config.metrics.prometheus && !config.metrics.otlp);
    assert!(config.exports(Signal::Metrics));
    assert_no_warnings(&warnings, "prometheus alone");
    let (config, warnings) = resolve_on(&[("OTEL_METRICS_EXPORTER", "otlp,Prometheus")]);
    assert!(config.metrics.prometheus && config.metrics.otlp);
    assert_no_warnings(&warnings, "otlp,prometheus");
    for var in ["OTEL_TRACES_EXPORTER", "OTEL_LOGS_EXPORTER"] {
        let (config, warnings) = resolve_on(&[(var, "prometheus")]);
        let w = only_warning_about(&warnings, var, var);
        assert!(w.reason.contains("prometheus"), "{w:?}");
        assert!(!config.traces.prometheus && !config.logs.prometheus);
    }
    let (config, _) = resolve_on(&[]);
    assert!(!config.metrics.prometheus);
    assert_eq!(
        config.metric_settings.prometheus,
        PrometheusEndpoint::default()
    );
}

#[test]
fn prometheus_host_and_port() {
    let (config, warnings) = resolve_on(&[
        ("OTEL_EXPORTER_PROMETHEUS_HOST", "0.0.0.0"),
        ("OTEL_EXPORTER_PROMETHEUS_PORT", "9100"),
    ]);
    assert_no_warnings(&warnings, "valid");
    assert_eq!(config.metric_settings.prometheus.host, "0.0.0.0");
    assert_eq!(config.metric_settings.prometheus.port, 9100);
    let (config, _) = resolve_on(&[("OTEL_EXPORTER_PROMETHEUS_HOST", "[::1]")]);
    assert_eq!(config.metric_settings.prometheus.host, "::1");
    for (var, value) in [
        ("OTEL_EXPORTER_PROMETHEUS_PORT", "70000"),
        ("OTEL_EXPORTER_PROMETHEUS_PORT", "-1"),
        ("OTEL_EXPORTER_PROMETHEUS_PORT", "http"),
        ("OTEL_EXPORTER_PROMETHEUS_HOST", "http://x/"),
    ] {
        let (config, warnings) = resolve_on(&[(var, value)]);
        let w = only_warning_about(&warnings, var, value);
        assert!(w.used_instead.contains("default"), "{w:?}");
        assert_eq!(
            config.metric_settings.prometheus,
            PrometheusEndpoint::default()
        );
    }
}

#[test]
fn temporality_and_histogram_aggregation() {
    let cases = [
        ("cumulative", Temporality::Cumulative),
        ("DELTA", Temporality::Delta),
        ("LowMemory", Temporality::LowMemory),
    ];
    for (value, expected) in cases {
        let (config, warnings) =
            resolve_on(&[("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", value)]);
        assert_eq!(config.metric_settings.temporality, expected, "{value}");
        assert_no_warnings(&warnings, value);
    }
    let (config, warnings) = resolve_on(&[(
        "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE",
        "sometimes",
    )]);
    let w = only_warning_about(
        &warnings,
        "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE",
        "bad temporality",
    );
    assert!(w.used_instead.contains("cumulative"), "{w:?}");
    assert_eq!(config.metric_settings.temporality, Temporality::Cumulative);

    const AGG: &str = "OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION";
    let (config, warnings) = resolve_on(&[(AGG, "Base2_Exponential_Bucket_Histogram")]);
    assert_no_warnings(&warnings, "exponential");
    assert_eq!(
        config.metric_settings.histogram_aggregation,
        HistogramAggregation::Base2Exponential
    );
    let (config, warnings) = resolve_on(&[(AGG, "summary")]);
    only_warning_about(&warnings, AGG, "summary");
    assert_eq!(
        config.metric_settings.histogram_aggregation,
        HistogramAggregation::ExplicitBucket
    );
}

#[test]
fn cardinality_limit_from_env_over_code() {
    let (config, _) = resolve_on(&[]);
    assert_eq!(
        config.metric_settings.cardinality_limit,
        DEFAULT_CARDINALITY_LIMIT
    );
    let code = Defaults {
        cardinality_limit: Some(50),
        ..enabled_defaults()
    };
    let (config, _) = resolve_with(&code, &[]);
    assert_eq!(config.metric_settings.cardinality_limit, 50);
    let (config, warnings) = resolve_with(&code, &[("OTEL_METRICS_CARDINALITY_LIMIT", "300")]);
    assert_eq!(config.metric_settings.cardinality_limit, 300);
    assert_no_warnings(&warnings, "300");
    for bad in ["0", "-5", "lots", "99999999999"] {
        let (config, warnings) = resolve_with(&code, &[("OTEL_METRICS_CARDINALITY_LIMIT", bad)]);
        let w = only_warning_about(&warnings, "OTEL_METRICS_CARDINALITY_LIMIT", bad);
        assert!(w.used_instead.contains("50"), "{w:?}");
        assert_eq!(config.metric_settings.cardinality_limit, 50, "{bad}");
    }
}

#[test]
fn builtin_metric_switches() {
    let (config, _) = resolve_on(&[]);
    assert!(config.metric_settings.process_metrics && config.metric_settings.tokio_metrics);
    let code = Defaults {
        tokio_metrics: Some(false),
        ..enabled_defaults()
    };
    let (config, warnings) = resolve_with(&code, &[("OTEL_PROCESS_METRICS_ENABLED", "false")]);
    assert!(!config.metric_settings.process_metrics && !config.metric_settings.tokio_metrics);
    assert_no_warnings(&warnings, "switches");
    let (config, _) = resolve_with(&code, &[("OTEL_TOKIO_METRICS_ENABLED", "true")]);
    assert!(config.metric_settings.tokio_metrics);
    let (config, warnings) = resolve_on(&[("OTEL_TOKIO_METRICS_ENABLED", "maybe")]);
    only_warning_about(&warnings, "OTEL_TOKIO_METRICS_ENABLED", "maybe");
    assert!(config.metric_settings.tokio_metrics);
}

#[test]
fn resource_detectors_can_be_turned_off_one_by_one() {
    let (config, _) = resolve_on(&[]);
    assert_eq!(config.resource_detectors, ResourceDetector::ALL.to_vec());
    let (config, warnings) = resolve_on(&[("OTEL_RESOURCE_DETECTORS_DISABLED", "ECS, k8s")]);
    assert_no_warnings(&warnings, "ecs,k8s");
    assert_eq!(
        config.resource_detectors,
        [
            ResourceDetector::Host,
            ResourceDetector::Os,
            ResourceDetector::Process,
            ResourceDetector::Container
        ]
    );
    let (config, _) = resolve_on(&[("OTEL_RESOURCE_DETECTORS_DISABLED", "all")]);
    assert!(config.resource_detectors.is_empty());
    let (config, warnings) = resolve_on(&[("OTEL_RESOURCE_DETECTORS_DISABLED", "gcp,host")]);
    let w = only_warning_about(&warnings, "OTEL_RESOURCE_DETECTORS_DISABLED", "gcp");
    assert!(w.reason.contains("gcp"), "{w:?}");
    assert!(!config.resource_detectors.contains(&ResourceDetector::Host));
    assert_eq!(config.resource_detectors.len(), 5);
    // The code's list applies only while the variable is unset.
    let code = Defaults {
        disabled_detectors: vec![ResourceDetector::Ecs],
        ..enabled_defaults()
    };
    let (config, _) = resolve_with(&code, &[]);
    assert!(!config.resource_detectors.contains(&ResourceDetector::Ecs));
    let (config, _) = resolve_with(&code, &[("OTEL_RESOURCE_DETECTORS_DISABLED", "none")]);
    assert_eq!(config.resource_detectors, ResourceDetector::ALL.to_vec());
}

/// rpc-migration.md: `rpc` emits the stable conventions, `rpc/dup` both (winning over `rpc`),
/// anything else the code's choice; values for other domains are not ours to warn about.
#[test]
fn rpc_conventions_from_the_opt_in_list_over_code() {
    const VAR: &str = "OTEL_SEMCONV_STABILITY_OPT_IN";
    let (config, _) = resolve_on(&[]);
    assert_eq!(config.rpc_conventions, RpcConventions::Stable);
    let code = Defaults {
        rpc_conventions: Some(RpcConventions::Experimental),
        ..enabled_defaults()
    };
    for (raw, want) in [
        (None, RpcConventions::Experimental),
        (Some("http,database/dup"), RpcConventions::Experimental),
        (Some("rpc"), RpcConventions::Stable),
        (Some(" RPC , http"), RpcConventions::Stable),
        (Some("rpc,rpc/dup"), RpcConventions::Duplicate),
        (Some("rpc/dup"), RpcConventions::Duplicate),
        (Some("rpcx"), RpcConventions::Experimental),
    ] {
        let vars: Vec<(&str, &str)> = raw.map(|r| (VAR, r)).into_iter().collect();
        let (config, warnings) = resolve_with(&code, &vars);
        assert_eq!(config.rpc_conventions, want, "{raw:?}");
        assert_no_warnings(&warnings, raw.unwrap_or_default());
    }
}

#[test]
fn log_format_from_env_over_code_and_a_bad_value_warns() {
    let (config, _) = resolve_on(&[]);
    assert_eq!(config.log_format, LogFormat::Json);
    let (config, warnings) = resolve_on(&[("LOG_FORMAT", " Pretty ")]);
    assert_eq!(config.log_format, LogFormat::Pretty);
    assert_no_warnings(&warnings, "Pretty");
    let code = Defaults {
        log_format: Some(LogFormat::Pretty),
        ..enabled_defaults()
    };
    let (config, _) = resolve_with(&code, &[]);
    assert_eq!(config.log_format, LogFormat::Pretty);
    let (config, _) = resolve_with(&code, &[("LOG_FORMAT", "json")]);
    assert_eq!(config.log_format, LogFormat::Json);
    let (config, warnings) = resolve_on(&[("LOG_FORMAT", "yaml")]);
    assert_eq!(config.log_format, LogFormat::Json);
    let w = only_warning_about(&warnings, "LOG_FORMAT", "yaml");
    assert_eq!(w.used_instead, "json");
    let (config, warnings) = resolve_with(&code, &[("LOG_FORMAT", "yaml")]);
    assert_eq!(config.log_format, LogFormat::Pretty);
    assert_eq!(
        only_warning_about(&warnings, "LOG_FORMAT", "yaml").used_instead,
        "pretty"
    );
}

#[test]
fn a_live_log_filter_is_normalised_like_log_level_and_bad_ones_say_why() {
    assert_eq!(
        live_log_filter("WARNING").as_deref(),
        Ok("warn,opentelemetry=warn")
    );
    let debug = live_log_filter("debug").expect("debug");
    assert!(debug.starts_with("debug,"), "{debug}");
    assert!(
        debug.contains("hyper=info"),
        "transports stay quiet: {debug}"
    );
    assert_eq!(
        live_log_filter("info,opentelemetry_sdk=debug").as_deref(),
        Ok("info,opentelemetry_sdk=debug")
    );
    let err = live_log_filter("verbose").expect_err("a lone unknown word");
    assert!(err.contains("unknown level"), "{err}");
    assert!(live_log_filter("info,hyper=loud").is_err());
}

// ---------------------------------------------------------------------------------------------
// An endpoint on the other protocol's well-known port
// ---------------------------------------------------------------------------------------------

#[test]
fn grpc_port_with_the_default_http_protocol_warns_once_naming_the_protocol_variable() {
    let (config, warnings) = resolve_on(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://otel:4317")]);
    let w = only_warning_about(&warnings, "OTEL_EXPORTER_OTLP_ENDPOINT", "4317 + http");
    assert_eq!(
        warnings.len(),
        1,
        "one warning for three signals: {warnings:#?}"
    );
    assert_eq!(w.kind, ConfigWarningKind::Mismatch);
    assert_eq!(w.value, "http://otel:4317");
    assert!(
        w.reason.contains("4317") && w.reason.contains("gRPC"),
        "{w}"
    );
    assert!(w.reason.contains("the default"), "{w}");
    assert!(
        w.used_instead
            .contains("set OTEL_EXPORTER_OTLP_PROTOCOL=grpc"),
        "{w}"
    );
    assert!(w.used_instead.contains("port 4318"), "{w}");
    assert!(w.to_string().contains("is used as given"), "{w}");
    // Nothing is guessed: the endpoint and the protocol stay as configured.
    assert_eq!(config.traces.endpoint, "http://otel:4317/v1/traces");
    assert_eq!(config.traces.protocol, Protocol::HttpProtobuf);
}

#[test]
fn http_port_with_grpc_names_the_variable_that_chose_grpc() {
    let (config, warnings) = resolve_on(&[
        ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc"),
        (
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://127.0.0.1:4318",
        ),
    ]);
    let w = only_warning_about(
        &warnings,
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "4318 + grpc",
    );
    assert_eq!(w.kind, ConfigWarningKind::Mismatch);
    assert!(
        w.reason.contains("from OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"),
        "{w}"
    );
    assert!(
        w.used_instead
            .contains("set OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=http/protobuf"),
        "{w}"
    );
    assert!(w.used_instead.contains("port 4317"), "{w}");
    assert_eq!(config.traces.endpoint, "http://127.0.0.1:4318");
}

#[test]
fn matching_ports_other_ports_and_defaults_do_not_warn() {
    for pairs in [
        vec![("OTEL_EXPORTER_OTLP_ENDPOINT", "http://otel:4318")],
        vec![
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://otel:4317"),
        ],
        vec![("OTEL_EXPORTER_OTLP_ENDPOINT", "http://otel:14317")],
        vec![("OTEL_EXPORTER_OTLP_ENDPOINT", "http://otel")],
        vec![("OTEL_EXPORTER_OTLP_ENDPOINT", "http://[::1]:4318/base")],
        vec![("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")],
        vec![],
    ] {
        let (_, warnings) = resolve_on(&pairs);
        assert_no_warnings(&warnings, &format!("{pairs:?}"));
    }
    let (_, warnings) = resolve_on(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://[::1]:4317/")]);
    assert_eq!(
        warnings.len(),
        1,
        "IPv6 host with the gRPC port: {warnings:#?}"
    );
}
