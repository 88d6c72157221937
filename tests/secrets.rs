//! API keys in `OTEL_EXPORTER_OTLP_HEADERS` never reach a log line, a `Debug` output or an
//! error message, even with every log level at its most verbose, over both transports, with a
//! collector that accepts and with one that refuses.

mod common;

use std::time::Duration;

use common::collector::{Collector, free_port};
use common::probe::{probe_main, run_probe};

#[test]
#[ignore = "child-process entry point of the end-to-end tests, run by them"]
fn probe() {
    probe_main();
}

const SECRET: &str = "S3CRET-api-key-7f3a";

#[test]
fn header_values_never_appear_in_logs_debug_output_or_errors() {
    let collector = Collector::start();
    let generic = format!(
        "api-key={SECRET}-1,authorization=Bearer%20{SECRET}-2,{SECRET}-3,bad header={SECRET}-4"
    );
    let traces = format!("x-api-key={SECRET}-5,=={SECRET}-6");
    let refused = format!("http://127.0.0.1:{}", free_port());
    for protocol in ["grpc", "http/protobuf"] {
        let reachable = if protocol == "grpc" {
            collector.grpc_endpoint()
        } else {
            collector.http_endpoint()
        };
        for endpoint in [reachable.as_str(), refused.as_str()] {
            let run = run_probe(
                &[
                    ("OTEL_ENABLED", "true"),
                    ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
                    ("OTEL_EXPORTER_OTLP_HEADERS", &generic),
                    ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", &traces),
                    (
                        "LOG_LEVEL",
                        "trace,h2=trace,hyper=trace,hyper_util=trace,tonic=trace,tower=trace,reqwest=trace,rustls=trace",
                    ),
                    ("OTEL_LOG_LEVEL", "debug"),
                    ("PROBE_DEBUG_TELEMETRY", "1"),
                    ("PROBE_TAG", "secrets"),
                    ("PROBE_SHUTDOWN_MS", "3000"),
                ],
                Duration::from_secs(60),
            );
            let context = format!("{protocol} {endpoint}");
            assert!(
                run.status.success(),
                "{context}: exit {:?}\n{}",
                run.status,
                run.stderr
            );
            assert!(
                !run.stdout.contains("S3CRET") && !run.stderr.contains("S3CRET"),
                "{context}: a header value leaked:\n{}\n{}",
                run.stdout
                    .lines()
                    .filter(|l| l.contains("S3CRET"))
                    .collect::<Vec<_>>()
                    .join("\n"),
                run.stderr
            );
            // The startup report and Debug name the headers and redact their values.
            let report = run.line_with_message("telemetry initialised");
            let traces_report = report["traces"].as_str().unwrap_or_default();
            assert!(
                traces_report.contains("x-api-key=<redacted>"),
                "{context}: {report}"
            );
            let logs_report = report["logs"].as_str().unwrap_or_default();
            assert!(
                logs_report.contains("api-key=<redacted>")
                    && logs_report.contains("authorization=<redacted>"),
                "{context}: {report}"
            );
            let debug = run.line_with_message("probe-debug");
            assert!(
                debug["config"]
                    .as_str()
                    .is_some_and(|d| d.contains("<redacted>")),
                "{context}: {debug}"
            );
            // The malformed entries are reported without their values.
            assert!(
                run.warnings()
                    .iter()
                    .any(|w| w["variable"] == "OTEL_EXPORTER_OTLP_HEADERS"),
                "{context}: {:?}",
                run.warnings()
            );
            // A very verbose run really did log the transports' and the SDK's internals.
            assert!(
                run.json.len() > 20,
                "{context}: only {} lines",
                run.json.len()
            );
        }
    }
}
