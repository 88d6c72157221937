//! The service always starts: garbage configuration, an unreachable or silent collector, an
//! unknown protocol or an https endpoint without TLS each give warnings and a no-op or
//! default, never a failure, a panic or a hang.

mod common;

use std::time::Duration;

#[cfg_attr(not(all(feature = "grpc", feature = "http")), allow(unused_imports))]
use common::collector::{Collector, free_port};
use common::probe::{ProbeRun, probe_main, run_probe};

#[test]
#[ignore = "child-process entry point of the end-to-end tests, run by them"]
fn probe() {
    probe_main();
}

fn warned_about(run: &ProbeRun, variable: &str) -> bool {
    run.warnings().iter().any(|w| w["variable"] == variable)
}

fn assert_clean_exit(run: &ProbeRun) {
    run.assert_clean_exit();
}

#[test]
fn garbage_in_every_variable_starts_warns_and_exits_zero() {
    let long = "x".repeat(100_000);
    let env: Vec<(&str, &str)> = vec![
        ("OTEL_ENABLED", "true"),
        ("OTEL_SDK_DISABLED", "maybe"),
        ("OTEL_SERVICE_NAME", "svc-\u{1F600}-=,"),
        ("OTEL_RESOURCE_ATTRIBUTES", "a=%zz,=,,b"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "::not a url::"),
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "ftp://127.0.0.1:1"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "carrier-pigeon"),
        ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "http/json"),
        ("OTEL_EXPORTER_OTLP_HEADERS", "=,api-key,\u{1}=\u{7f}"),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "-5"),
        ("OTEL_EXPORTER_OTLP_COMPRESSION", "lzma"),
        ("OTEL_TRACES_EXPORTER", "zipkin"),
        ("OTEL_METRICS_EXPORTER", "jaeger,,"),
        ("OTEL_LOGS_EXPORTER", "\u{00e9}"),
        ("OTEL_TRACES_SAMPLER", "sometimes"),
        ("OTEL_PROPAGATORS", "b3,xray,=="),
        ("LOG_LEVEL", &long),
        ("OTEL_LOG_LEVEL", "loud"),
        ("PROBE_SHUTDOWN_MS", "3000"),
        ("PROBE_TAG", "garbage"),
    ];
    let run = run_probe(&env, Duration::from_secs(30));
    assert_clean_exit(&run);
    for variable in [
        "OTEL_SDK_DISABLED",
        "OTEL_RESOURCE_ATTRIBUTES",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
        "OTEL_EXPORTER_OTLP_HEADERS",
        "OTEL_EXPORTER_OTLP_TIMEOUT",
        "OTEL_EXPORTER_OTLP_COMPRESSION",
        "OTEL_TRACES_EXPORTER",
        "OTEL_METRICS_EXPORTER",
        "OTEL_LOGS_EXPORTER",
        "OTEL_TRACES_SAMPLER",
        "OTEL_PROPAGATORS",
        "LOG_LEVEL",
        "OTEL_LOG_LEVEL",
    ] {
        assert!(
            warned_about(&run, variable),
            "no warning for {variable}; warnings: {:#?}",
            run.warnings()
        );
    }
    // Each warning names the value it rejected and what it used instead, and never echoes
    // a whole huge value.
    for w in run
        .warnings()
        .iter()
        .filter(|w| w["target"] == "service_telemetry::config")
    {
        assert!(
            w["value"].is_string() && w["used_instead"].is_string(),
            "{w}"
        );
        assert!(
            w["value"].as_str().unwrap_or_default().len() < 1_000,
            "value not truncated: {w}"
        );
    }
    // Logging still works and carries ids.
    let line = run.line_with_message("probe-log-garbage");
    assert_eq!(line["trace_id"].as_str().map(str::len), Some(32));
    assert_eq!(line["level"], "info", "fell back to the info level");
}

#[test]
#[cfg(all(feature = "grpc", feature = "http"))]
fn unreachable_collector_does_not_delay_start_or_exit() {
    let endpoint = format!("http://127.0.0.1:{}", free_port());
    for protocol in ["grpc", "http/protobuf"] {
        let run = run_probe(
            &[
                ("OTEL_ENABLED", "true"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
                ("PROBE_SHUTDOWN_MS", "3000"),
                ("PROBE_TAG", "refused"),
            ],
            Duration::from_secs(30),
        );
        assert_clean_exit(&run);
        // Shutdown is bounded by the 3 s budget (plus process start and teardown).
        assert!(
            run.elapsed < Duration::from_secs(8),
            "{protocol}: took {:?}",
            run.elapsed
        );
        let shutdown = run.line_with_message("probe-shutdown");
        assert!(
            shutdown["elapsed_ms"].as_u64().unwrap_or(u64::MAX) <= 3_500,
            "{protocol}: {shutdown}"
        );
        assert_eq!(
            shutdown["ok"], false,
            "{protocol}: the refused export is reported: {shutdown}"
        );
    }
}

#[test]
#[cfg(all(feature = "grpc", feature = "http"))]
fn silent_collector_cannot_stretch_shutdown_past_its_bound() {
    // Accepts connections and never answers: the worst case for an exporter.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    let endpoint = format!("http://127.0.0.1:{port}");
    for protocol in ["grpc", "http/protobuf"] {
        let run = run_probe(
            &[
                ("OTEL_ENABLED", "true"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
                ("PROBE_SHUTDOWN_MS", "1500"),
                ("PROBE_TAG", "blackhole"),
            ],
            Duration::from_secs(30),
        );
        assert_clean_exit(&run);
        let shutdown = run.line_with_message("probe-shutdown");
        let took = shutdown["elapsed_ms"].as_u64().unwrap_or(u64::MAX);
        assert!(
            took <= 2_500,
            "{protocol}: shutdown took {took} ms with a 1500 ms bound"
        );
        assert_eq!(shutdown["ok"], false, "{protocol}: {shutdown}");
        assert!(
            run.elapsed < Duration::from_secs(8),
            "{protocol}: process took {:?}",
            run.elapsed
        );
    }
}

#[test]
#[cfg(feature = "http")]
fn unknown_protocol_warns_and_uses_http_protobuf() {
    let collector = Collector::start();
    let run = run_probe(
        &[
            ("OTEL_ENABLED", "true"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "carrier-pigeon"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &collector.http_endpoint()),
            ("OTEL_SERVICE_NAME", "pigeon"),
            ("PROBE_TAG", "pigeon"),
        ],
        Duration::from_secs(30),
    );
    assert_clean_exit(&run);
    let warning = run
        .warnings()
        .into_iter()
        .find(|w| w["variable"] == "OTEL_EXPORTER_OTLP_PROTOCOL")
        .expect("a warning for the protocol");
    assert_eq!(warning["value"], "carrier-pigeon");
    assert!(
        warning["used_instead"]
            .as_str()
            .unwrap_or_default()
            .contains("http/protobuf"),
        "{warning}"
    );
    let trace_id = run.line_with_message("probe-log-pigeon")["trace_id"].clone();
    let span = collector.wait_for(
        "the span over http/protobuf",
        Duration::from_secs(15),
        |r| r["signal"] == "span" && r["service"] == "pigeon",
    );
    assert_eq!(span["trace_id"], trace_id);
}

/// Built without the `tls` feature (the CI leg with no default features); with it, see
/// `tests/tls.rs`.
#[cfg(not(feature = "tls"))]
#[test]
fn https_without_tls_support_falls_back_to_noop_with_one_warning_per_signal() {
    let run = run_probe(
        &[
            ("OTEL_ENABLED", "true"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://127.0.0.1:1"),
            ("PROBE_TAG", "tls"),
        ],
        Duration::from_secs(30),
    );
    assert_clean_exit(&run);
    let (export_warnings, signals) = run.export_warnings();
    assert_eq!(
        signals,
        ["traces", "metrics", "logs"],
        "{export_warnings:#?}"
    );
    assert!(
        export_warnings
            .iter()
            .all(|w| w["cause"].as_str().unwrap_or_default().contains("TLS"))
    );
    // No-op exporters flush instantly and successfully.
    assert_eq!(run.line_with_message("probe-shutdown")["ok"], true);
    assert!(run.line_with_message("probe-log-tls")["trace_id"].is_string());
}

#[test]
fn export_disabled_still_logs_json_with_ids() {
    let run = run_probe(&[("PROBE_TAG", "off")], Duration::from_secs(30));
    assert_clean_exit(&run);
    let init = run.line_with_message("telemetry initialised");
    assert_eq!(init["export_enabled"], false);
    assert_eq!(init["traces"], "none");
    let line = run.line_with_message("probe-log-off");
    assert_eq!(line["trace_id"].as_str().map(str::len), Some(32));
    assert_eq!(line["span_id"].as_str().map(str::len), Some(16));
    assert_eq!(line["span"]["name"], "probe-span");
    assert_eq!(line["span"]["probe.tag"], "off");
}

#[test]
#[cfg(not(all(feature = "grpc", feature = "http")))]
fn a_transport_compiled_out_degrades_to_noop_with_a_warning() {
    let protocol = if cfg!(feature = "grpc") {
        "http/protobuf"
    } else {
        "grpc"
    };
    let run = run_probe(
        &[
            ("OTEL_ENABLED", "true"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1"),
            ("PROBE_TAG", "compiled-out"),
        ],
        Duration::from_secs(30),
    );
    assert_clean_exit(&run);
    let causes: Vec<_> = run
        .warnings()
        .into_iter()
        .filter(|w| w["target"] == "service_telemetry::export")
        .map(|w| w["cause"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(causes.len(), 3, "one warning per signal: {causes:#?}");
    assert!(
        causes.iter().all(|c| c.contains("not compiled in")),
        "{causes:#?}"
    );
    assert_eq!(run.line_with_message("probe-shutdown")["ok"], true);
    assert_eq!(
        run.line_with_message("probe-log-compiled-out")["trace_id"]
            .as_str()
            .map(str::len),
        Some(32)
    );
}
