//! One trace across processes: the gateway and backend examples talk HTTP and gRPC, and the
//! real collector receives both services' spans in one trace with the semantic conventions;
//! traces also continue to and from the official OpenTelemetry Python SDK.
#![cfg(all(feature = "axum", feature = "tonic", feature = "reqwest"))]

mod common;

use std::process::Command;
use std::time::Duration;

use common::child::{Running, Signal, example_binary, http_get};
use common::collector::Collector;
use serde_json::Value;

const READY: Duration = Duration::from_secs(60);
const EXIT: Duration = Duration::from_secs(30);

fn export_env<'a>(collector_endpoint: &'a str, service: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("OTEL_ENABLED", "true"),
        ("OTEL_SERVICE_NAME", service),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", collector_endpoint),
    ]
}

fn port_of(line: &Value, field: &str) -> u16 {
    line[field]
        .as_str()
        .and_then(|a| a.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {field}: {line}"))
}

struct Backend {
    child: Running,
    http_port: u16,
    grpc_port: u16,
}

fn start_backend(endpoint: &str, service: &str) -> Backend {
    start_backend_with(endpoint, service, &[])
}

fn start_backend_with(endpoint: &str, service: &str, extra: &[(&str, &str)]) -> Backend {
    let mut env = export_env(endpoint, service);
    env.extend([("PORT", "0"), ("GRPC_PORT", "0")]);
    env.extend_from_slice(extra);
    let mut child = Running::spawn(Command::new(example_binary("backend")), &env);
    let listening = child.wait_for_message("listening", READY);
    Backend {
        http_port: port_of(&listening, "http_address"),
        grpc_port: port_of(&listening, "grpc_address"),
        child,
    }
}

fn start_gateway(
    endpoint: &str,
    service: &str,
    backend_url: &str,
    grpc_url: &str,
) -> (Running, u16) {
    start_gateway_with(endpoint, service, backend_url, grpc_url, &[])
}

fn start_gateway_with(
    endpoint: &str,
    service: &str,
    backend_url: &str,
    grpc_url: &str,
    extra: &[(&str, &str)],
) -> (Running, u16) {
    let mut env = export_env(endpoint, service);
    env.extend([
        ("PORT", "0"),
        ("BACKEND_URL", backend_url),
        ("BACKEND_GRPC_URL", grpc_url),
    ]);
    env.extend_from_slice(extra);
    let mut child = Running::spawn(Command::new(example_binary("gateway")), &env);
    let listening = child.wait_for_message("listening", READY);
    let port = port_of(&listening, "address");
    (child, port)
}

fn stop(child: &mut Running) {
    child.signal(Signal::TERM);
    let status = child.wait_exit(EXIT);
    assert_eq!(status.code(), Some(0), "{}", child.output());
}

fn find<'a>(records: &'a [Value], what: &str, pred: impl Fn(&Value) -> bool) -> &'a Value {
    records
        .iter()
        .find(|r| pred(r))
        .unwrap_or_else(|| panic!("no {what} among {records:#?}"))
}

fn span<'a>(records: &'a [Value], service: &str, name: &str) -> &'a Value {
    find(records, &format!("span {name:?} of {service}"), |r| {
        r["signal"] == "span" && r["service"] == service && r["name"] == name
    })
}

fn assert_kind(span: &Value, kind: &str) {
    let got = span["kind"]
        .as_str()
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(got.contains(kind), "kind {got:?} is not {kind}: {span}");
}

#[test]
fn one_request_is_one_trace_across_http_and_grpc() {
    let collector = Collector::start();
    let endpoint = collector.grpc_endpoint();
    let tag = std::process::id();
    let backend_name = format!("backend-{tag}");
    let gateway_name = format!("gateway-{tag}");
    let mut backend = start_backend(&endpoint, &backend_name);
    let (mut gateway, port) = start_gateway(
        &endpoint,
        &gateway_name,
        &format!("http://127.0.0.1:{}", backend.http_port),
        &format!("http://127.0.0.1:{}", backend.grpc_port),
    );
    let (status, body) = http_get(port, "/");
    assert_eq!(status, 200, "{body}");
    let served = gateway.wait_for_message("gateway request served", READY);
    let trace_id = served["trace_id"].as_str().expect("trace id").to_owned();
    // Stopping flushes every signal, so what follows is all there.
    stop(&mut gateway);
    stop(&mut backend.child);
    let records = collector.records();

    let entry = span(&records, &gateway_name, "GET /");
    assert_kind(entry, "server");
    assert_eq!(entry["trace_id"], trace_id.as_str());
    assert_eq!(entry["attributes"]["http.route"], "/");
    assert_eq!(entry["attributes"]["http.response.status_code"], 200);

    // HTTP: the gateway's CLIENT span is the parent of the backend's SERVER span.
    let client = span(&records, &gateway_name, "GET");
    assert_kind(client, "client");
    assert_eq!(client["trace_id"], trace_id.as_str());
    assert_eq!(client["parent_span_id"], entry["span_id"]);
    let attrs = &client["attributes"];
    assert_eq!(attrs["http.request.method"], "GET");
    assert_eq!(attrs["server.address"], "127.0.0.1");
    assert_eq!(attrs["server.port"], i64::from(backend.http_port));
    assert_eq!(
        attrs["url.full"],
        format!("http://127.0.0.1:{}/api/items/42", backend.http_port).as_str()
    );
    assert_eq!(attrs["http.response.status_code"], 200);

    let server = span(&records, &backend_name, "GET /api/items/{id}");
    assert_kind(server, "server");
    assert_eq!(
        server["trace_id"],
        trace_id.as_str(),
        "same trace in both processes"
    );
    assert_eq!(
        server["parent_span_id"], client["span_id"],
        "child of the client span"
    );
    let attrs = &server["attributes"];
    assert_eq!(attrs["http.request.method"], "GET");
    assert_eq!(attrs["http.route"], "/api/items/{id}");
    assert_eq!(attrs["url.path"], "/api/items/42");
    assert_eq!(attrs["url.scheme"], "http");
    assert_eq!(attrs["http.response.status_code"], 200);
    assert_eq!(attrs["server.address"], "127.0.0.1");
    assert_eq!(attrs["network.protocol.version"], "1.1");
    assert!(
        attrs["user_agent.original"].is_null(),
        "reqwest sends none by default"
    );
    let work = span(&records, &backend_name, "load item");
    assert_eq!(work["parent_span_id"], server["span_id"]);

    // gRPC: the same, with the RPC conventions.
    let name = "grpc.health.v1.Health/Check";
    let grpc_client = span(&records, &gateway_name, name);
    assert_kind(grpc_client, "client");
    assert_eq!(grpc_client["trace_id"], trace_id.as_str());
    assert_eq!(grpc_client["parent_span_id"], entry["span_id"]);
    let grpc_server = span(&records, &backend_name, name);
    assert_kind(grpc_server, "server");
    assert_eq!(grpc_server["trace_id"], trace_id.as_str());
    assert_eq!(grpc_server["parent_span_id"], grpc_client["span_id"]);
    // semconv v1.44.0 docs/rpc/grpc.md: the stable names, and none of the deprecated ones.
    for s in [grpc_client, grpc_server] {
        let attrs = &s["attributes"];
        assert_eq!(attrs["rpc.system.name"], "grpc", "{s}");
        assert_eq!(attrs["rpc.method"], name, "{s}");
        assert_eq!(attrs["rpc.response.status_code"], "OK", "{s}");
        assert!(attrs["error.type"].is_null(), "{s}");
        assert_eq!(attrs["service_telemetry.rpc.messages.sent"], 1, "{s}");
        assert_eq!(attrs["service_telemetry.rpc.messages.received"], 1, "{s}");
        for old in [
            "rpc.system",
            "rpc.service",
            "rpc.grpc.status_code",
            "rpc.messages.sent",
        ] {
            assert!(attrs[old].is_null(), "{old} in {s}");
        }
    }
    let client_attrs = &grpc_client["attributes"];
    assert_eq!(client_attrs["server.address"], "127.0.0.1", "{grpc_client}");
    assert_eq!(
        client_attrs["server.port"], backend.grpc_port as i64,
        "{grpc_client}"
    );

    // The per-request log line carries the request's trace id, in the JSON and at the collector.
    let line = backend
        .child
        .json()
        .into_iter()
        .find(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("GET /api/items/{id} 200"))
        })
        .unwrap_or_else(|| panic!("no request line\n{}", backend.child.output()));
    assert_eq!(line["trace_id"], trace_id.as_str());
    assert_eq!(line["http.response.status_code"], 200);
    assert!(
        line["duration_ms"].as_f64().is_some_and(|d| d > 0.0),
        "{line}"
    );

    // Duration histograms from both sides.
    for (service, metric) in [
        (&backend_name, "http.server.request.duration"),
        (&gateway_name, "http.server.request.duration"),
        (&gateway_name, "http.client.request.duration"),
        (&backend_name, "rpc.server.call.duration"),
        (&gateway_name, "rpc.client.call.duration"),
    ] {
        let point = find(&records, &format!("{metric} of {service}"), |r| {
            r["signal"] == "metric" && r["service"] == service.as_str() && r["name"] == metric
        });
        assert!(
            point["type"]
                .as_str()
                .is_some_and(|t| t.contains("Histogram")),
            "{point}"
        );
    }
    let server_point = find(&records, "backend route histogram point", |r| {
        r["signal"] == "metric"
            && r["service"] == backend_name.as_str()
            && r["name"] == "http.server.request.duration"
            && r["attributes"]["http.route"] == "/api/items/{id}"
    });
    assert_eq!(server_point["attributes"]["http.response.status_code"], 200);
    assert_eq!(server_point["attributes"]["http.request.method"], "GET");
}

fn python() -> Option<String> {
    match std::env::var("OTEL_TEST_PYTHON") {
        Ok(p) => Some(p),
        Err(_) if std::env::var_os("CI").is_some() => {
            panic!("OTEL_TEST_PYTHON is not set: run the tests with ./scripts/test.sh")
        }
        Err(_) => {
            eprintln!("skipped: OTEL_TEST_PYTHON is not set (./scripts/test.sh sets it)");
            None
        }
    }
}

/// Runs a Python client that starts a trace with the official SDK and calls our backend on
/// `port`; `setup` is Python run first (a propagator choice). Returns the ids it sent.
fn python_client(python: &str, port: u16, setup: &str) -> Value {
    let script = format!(
        r#"
import json, urllib.request
from opentelemetry import trace, propagate
from opentelemetry.sdk.trace import TracerProvider
{setup}
trace.set_tracer_provider(TracerProvider())
with trace.get_tracer("interop").start_as_current_span("python-client") as span:
    headers = {{}}
    propagate.inject(headers)
    request = urllib.request.Request("http://127.0.0.1:{port}/api/items/7", headers=headers)
    urllib.request.urlopen(request, timeout=10).read()
    ctx = span.get_span_context()
    print(json.dumps({{"trace_id": format(ctx.trace_id, "032x"), "span_id": format(ctx.span_id, "016x"), "headers": headers}}))
"#
    );
    let output = Command::new(python)
        .args(["-c", &script])
        .output()
        .expect("run python");
    assert!(
        output.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("python printed JSON")
}

/// A Python HTTP server that prints, for each request, the context `extract` (a Python
/// expression over `headers`) gives, and the propagation headers it got. Returns it and its port.
fn python_server(python: &str, setup: &str, extract: &str) -> (Running, u16) {
    let script = format!(
        r#"
import json, http.server
from opentelemetry import trace, propagate
{setup}
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        headers = dict(self.headers)
        ctx = trace.get_current_span({extract}).get_span_context()
        print(json.dumps({{"trace_id": format(ctx.trace_id, "032x"), "parent_span_id": format(ctx.span_id, "016x"), "valid": ctx.is_valid, "remote": ctx.is_remote, "sampled": ctx.trace_flags.sampled, "b3": headers.get("b3"), "traceparent": headers.get("traceparent")}}), flush=True)
        body = b'{{"id": 42}}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
print(json.dumps({{"message": "listening", "address": "127.0.0.1:%d" % server.server_port}}), flush=True)
server.serve_forever()
"#
    );
    let mut cmd = Command::new(python);
    cmd.args(["-c", &script]);
    let mut py = Running::spawn(cmd, &[]);
    let listening = py.wait_for_message("listening", READY);
    let port = port_of(&listening, "address");
    (py, port)
}

/// The official Python SDK starts a trace and calls our backend; our server span continues it.
#[test]
fn a_trace_from_the_python_sdk_continues_here() {
    let Some(python) = python() else { return };
    let collector = Collector::start();
    let endpoint = collector.grpc_endpoint();
    let backend_name = format!("backend-py-{}", std::process::id());
    let mut backend = start_backend(&endpoint, &backend_name);
    let sent = python_client(&python, backend.http_port, "");
    stop(&mut backend.child);
    let records = collector.records();
    let server = span(&records, &backend_name, "GET /api/items/{id}");
    assert_eq!(
        server["trace_id"], sent["trace_id"],
        "continues the Python trace"
    );
    assert_eq!(
        server["parent_span_id"], sent["span_id"],
        "child of the Python span"
    );
}

/// Our gateway calls a Python server; the Python SDK extracts our client span as its parent.
#[test]
fn a_trace_from_here_continues_in_the_python_sdk() {
    let Some(python) = python() else { return };
    let collector = Collector::start();
    let endpoint = collector.grpc_endpoint();
    let gateway_name = format!("gateway-py-{}", std::process::id());
    let (mut py, py_port) = python_server(&python, "", "propagate.extract(headers)");
    // No gRPC backend here: that call fails fast and the gateway answers 502, which is fine.
    let (mut gateway, port) = start_gateway(
        &endpoint,
        &gateway_name,
        &format!("http://127.0.0.1:{py_port}"),
        "http://127.0.0.1:1",
    );
    let _ = http_get(port, "/");
    let seen = py.wait_for("the extracted context", READY, |v| {
        v.get("parent_span_id").is_some()
    });
    stop(&mut gateway);
    let records = collector.records();
    let client = span(&records, &gateway_name, "GET");
    assert_eq!(seen["valid"], true);
    assert_eq!(seen["remote"], true);
    assert_eq!(
        seen["trace_id"], client["trace_id"],
        "Python continues our trace"
    );
    assert_eq!(
        seen["parent_span_id"], client["span_id"],
        "our client span is its parent"
    );
}

/// B3 both ways with the Python SDK's `opentelemetry-propagator-b3`: multi-header from Python
/// into our backend (`OTEL_PROPAGATORS=b3multi`), single header from our gateway
/// (`OTEL_PROPAGATORS=b3,tracecontext`) into a Python server.
#[test]
fn b3_interoperates_with_the_python_sdk_both_ways() {
    let Some(python) = python() else { return };
    let collector = Collector::start();
    let endpoint = collector.grpc_endpoint();

    let backend_name = format!("backend-b3-{}", std::process::id());
    let mut backend =
        start_backend_with(&endpoint, &backend_name, &[("OTEL_PROPAGATORS", "b3multi")]);
    let sent = python_client(
        &python,
        backend.http_port,
        "from opentelemetry.propagators.b3 import B3MultiFormat\npropagate.set_global_textmap(B3MultiFormat())",
    );
    let headers = sent["headers"].as_object().expect("headers sent");
    assert!(
        headers.contains_key("x-b3-traceid") && !headers.contains_key("traceparent"),
        "{headers:?}"
    );
    stop(&mut backend.child);
    let records = collector.records();
    let server = span(&records, &backend_name, "GET /api/items/{id}");
    assert_eq!(
        server["trace_id"], sent["trace_id"],
        "continues the B3 trace"
    );
    assert_eq!(
        server["parent_span_id"], sent["span_id"],
        "child of the Python span"
    );

    let gateway_name = format!("gateway-b3-{}", std::process::id());
    let (mut py, py_port) = python_server(
        &python,
        "from opentelemetry.propagators.b3 import B3SingleFormat",
        "B3SingleFormat().extract(headers)",
    );
    let (mut gateway, port) = start_gateway_with(
        &endpoint,
        &gateway_name,
        &format!("http://127.0.0.1:{py_port}"),
        "http://127.0.0.1:1",
        &[("OTEL_PROPAGATORS", "b3,tracecontext")],
    );
    let _ = http_get(port, "/");
    let seen = py.wait_for("the extracted context", READY, |v| {
        v.get("parent_span_id").is_some()
    });
    stop(&mut gateway);
    assert_eq!(seen["valid"], true, "{seen}");
    assert_eq!(seen["sampled"], true, "{seen}");
    assert!(
        seen["b3"].as_str().is_some_and(|b| b.ends_with("-1")),
        "{seen}"
    );
    assert!(
        seen["traceparent"].is_string(),
        "both propagators inject: {seen}"
    );
    let records = collector.records();
    let client = find(&records, "the gateway's client span to Python", |r| {
        r["signal"] == "span"
            && r["service"] == gateway_name.as_str()
            && r["span_id"] == seen["parent_span_id"]
    });
    assert_eq!(client["trace_id"], seen["trace_id"], "{client}");
    assert_kind(client, "client");
}
