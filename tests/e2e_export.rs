//! End to end against a real collector: spans, metrics and log records arrive over gRPC and
//! HTTP/protobuf, from a program with no runtime, a current-thread runtime and a multi-thread
//! runtime, and the `trace_id` in the JSON log line is the one the collector received.

mod common;

use std::time::Duration;

use common::collector::Collector;
use common::probe::{probe_main, run_probe};
use serde_json::Value;

#[test]
#[ignore = "child-process entry point of the end-to-end tests, run by them"]
fn probe() {
    probe_main();
}

const WAIT: Duration = Duration::from_secs(15);

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit()) && s.bytes().any(|b| b != b'0')
}

fn roundtrip(protocol: &str, runtime: &str) {
    let collector = Collector::start();
    let tag = format!(
        "{}-{runtime}-{}",
        protocol.replace('/', "-"),
        std::process::id()
    );
    let service = format!("svc-{tag}");
    let endpoint = if protocol == "grpc" {
        collector.grpc_endpoint()
    } else {
        collector.http_endpoint()
    };
    let run = run_probe(
        &[
            ("OTEL_ENABLED", "true"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_SERVICE_NAME", &service),
            ("PROBE_RUNTIME", runtime),
            ("PROBE_TAG", &tag),
        ],
        Duration::from_secs(60),
    );
    assert!(
        run.status.success(),
        "probe failed: {}\n{}",
        run.stdout,
        run.stderr
    );
    assert!(
        run.warnings().is_empty(),
        "unexpected warnings: {:?}",
        run.warnings()
    );

    let line = run.line_with_message(&format!("probe-log-{tag}"));
    let trace_id = line["trace_id"].as_str().expect("trace_id in log line");
    let span_id = line["span_id"].as_str().expect("span_id in log line");
    assert!(is_hex(trace_id, 32) && is_hex(span_id, 16), "ids: {line}");
    let shutdown = run.line_with_message("probe-shutdown");
    assert_eq!(shutdown["ok"], true, "shutdown: {shutdown}");

    let span = collector.wait_for("the probe span", WAIT, |r| {
        r["signal"] == "span" && r["attributes"]["probe.tag"] == tag.as_str()
    });
    assert_eq!(span["name"], "probe-span");
    assert_eq!(span["service"], service.as_str());
    assert_eq!(
        span["trace_id"], trace_id,
        "collector trace id equals the JSON line's"
    );
    assert_eq!(span["span_id"], span_id);

    let body = format!("probe-log-{tag}");
    let log = collector.wait_for("the probe log record", WAIT, |r| {
        r["signal"] == "log" && r["body"] == body.as_str()
    });
    assert_eq!(log["service"], service.as_str());
    assert_eq!(log["trace_id"], trace_id);
    assert_eq!(log["span_id"], span_id);
    assert_eq!(log["severity_number"], 9);
    // semconv v1.44.0: no event name unless the code gives one (tracing's `event file:line`
    // is not one); spans carry registry `code.*` attributes only, and no bare `target`.
    assert_eq!(log["event_name"].as_str().unwrap_or(""), "", "{log}");
    let span_attributes = span["attributes"].as_object().expect("attributes");
    assert!(span_attributes.contains_key("code.file.path"), "{span}");
    assert!(span_attributes.contains_key("code.line.number"), "{span}");
    for key in ["code.module.name", "target"] {
        assert!(!span_attributes.contains_key(key), "{key} in {span}");
    }

    let metric_name = format!("probe.counter.{tag}");
    let metric = collector.wait_for("the probe counter", WAIT, |r| {
        r["signal"] == "metric" && r["name"] == metric_name.as_str()
    });
    assert_eq!(metric["service"], service.as_str());
    assert_eq!(metric["value"], Value::from(7.0));
    assert_eq!(metric["attributes"]["probe.tag"], tag.as_str());
}

#[test]
fn grpc_without_runtime() {
    roundtrip("grpc", "none");
}

#[test]
fn grpc_current_thread_runtime() {
    roundtrip("grpc", "current");
}

#[test]
fn grpc_multi_thread_runtime() {
    roundtrip("grpc", "multi");
}

#[test]
fn http_without_runtime() {
    roundtrip("http/protobuf", "none");
}

#[test]
fn http_current_thread_runtime() {
    roundtrip("http/protobuf", "current");
}

#[test]
fn http_multi_thread_runtime() {
    roundtrip("http/protobuf", "multi");
}

#[test]
fn console_exporters_print_readable_telemetry_to_stderr() {
    let run = run_probe(
        &[
            ("OTEL_ENABLED", "true"),
            ("OTEL_TRACES_EXPORTER", "console"),
            ("OTEL_METRICS_EXPORTER", "console"),
            ("OTEL_LOGS_EXPORTER", "console"),
            ("PROBE_TAG", "console"),
        ],
        Duration::from_secs(60),
    );
    assert!(run.status.success(), "{}", run.stderr);
    let line = run.line_with_message("probe-log-console");
    let trace_id = line["trace_id"].as_str().expect("trace id");
    let span_line = run
        .stderr
        .lines()
        .find(|l| l.starts_with("[span] probe-span"))
        .unwrap_or_else(|| panic!("no span on stderr:\n{}", run.stderr));
    assert!(
        span_line.contains(&format!("trace_id={trace_id}")),
        "{span_line}"
    );
    assert!(span_line.contains("probe.tag=console"), "{span_line}");
    assert!(
        run.stderr
            .lines()
            .any(|l| l.starts_with("[metric] probe.counter.console sum value=7")),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.lines().any(|l| l.starts_with("[log] INFO")
            && l.contains("probe-log-console")
            && l.contains(trace_id)),
        "{}",
        run.stderr
    );
    // Stdout stays pure JSON lines.
    assert!(run.stdout.lines().all(|l| !l.starts_with('[')));
}
