//! The deployment kit in `deploy/` is kept true: the manifests validate against the Kubernetes
//! schemas offline, every file parses, the variables they set are ones the crate reads, the
//! service example started with the Kubernetes manifest's environment reaches a real collector
//! and answers its probes, and the dashboard selects only metrics the crate emits.
//!
//! What this cannot check here: that the images pull and the compose stack or the ECS task
//! runs (no registry for images), and the collector configurations beyond their structure (the
//! contrib collector is an image, not a package).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::child::{KeepAlive, Running, Signal, example_binary, http_get};
use common::collector::{Collector, free_port};
use serde_json::Value;
use service_telemetry::{MemoryWriter, Telemetry};

/// The Kubernetes version the manifests are validated against.
const KUBERNETES_VERSION: &str = "1.33.0";
const WAIT: Duration = Duration::from_secs(30);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn python() -> PathBuf {
    std::env::var_os("OTEL_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".tools/rotel-venv/bin/python"))
}

/// Runs `deploy/check.py COMMAND`; returns stdout, panicking with stderr on failure.
fn check(command: &str) -> String {
    let out = Command::new(python())
        .arg(root().join("deploy/check.py"))
        .arg(command)
        .output()
        .expect("run deploy/check.py (scripts/install-test-collector.sh installs its Python)");
    assert!(
        out.status.success(),
        "deploy/check.py {command} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn every_file_parses_and_the_manifests_and_prometheus_config_validate() {
    let parsed = check("parse");
    assert!(parsed.contains("YAML and"), "{parsed}");

    let validator = python().with_file_name("kubernetes-validate");
    let manifests: Vec<PathBuf> = ["service.yaml", "otel-collector-daemonset.yaml"]
        .iter()
        .map(|f| root().join("deploy/kubernetes").join(f))
        .collect();
    let out = Command::new(&validator)
        .args(["-k", KUBERNETES_VERSION, "--strict"])
        .args(&manifests)
        .output()
        .expect("run kubernetes-validate");
    let report =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{report}");
    for kind in [
        "deployment/checkout",
        "service/checkout",
        "daemonset/otel-collector",
        "configmap/otel-collector",
        "clusterrole/otel-collector",
    ] {
        assert!(
            report.contains(&format!("passed for resource {kind}")),
            "{kind} not validated:\n{report}"
        );
    }

    let promtool = std::env::var_os("PROMETHEUS_BIN")
        .map(|p| Path::new(&p).with_file_name("promtool"))
        .unwrap_or_else(|| PathBuf::from("promtool"));
    let out = Command::new(&promtool)
        .args(["check", "config"])
        .arg(root().join("deploy/compose/prometheus.yml"))
        .output()
        .expect("run promtool (Debian's prometheus package)");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every variable name the crate looks up, read off the crate itself: a lookup that records
/// each name, through configuration, start-up (resource detection) and shutdown settings.
fn variables_the_crate_reads() -> BTreeSet<String> {
    let asked = Arc::new(Mutex::new(BTreeSet::new()));
    let recorder = asked.clone();
    let lookup = move |name: &str| {
        recorder.lock().unwrap().insert(name.to_owned());
        match name {
            // Export on, so that detection runs; nothing is sent anywhere.
            "OTEL_ENABLED" => Some("true".to_owned()),
            "OTEL_TRACES_EXPORTER" | "OTEL_METRICS_EXPORTER" | "OTEL_LOGS_EXPORTER" => {
                Some("none".to_owned())
            }
            "LOG_FORMAT" => Some("pretty".to_owned()),
            _ => None,
        }
    };
    let scoped = Telemetry::builder()
        .with_writer(MemoryWriter::new())
        .env_lookup(lookup)
        .set_default();
    drop(scoped);
    let (_, _) = service_telemetry::ShutdownConfig::from_lookup(|name: &str| {
        asked.lock().unwrap().insert(name.to_owned());
        None
    });
    let names = std::mem::take(&mut *asked.lock().unwrap());
    names.into_iter().collect()
}

struct Container {
    file: String,
    stop_timeout: Option<u64>,
    env: Vec<(String, Option<String>, Option<String>)>,
}

/// The service's containers in the kit (not the collectors').
fn service_containers() -> Vec<Container> {
    let all: Vec<Value> = serde_json::from_str(&check("env")).expect("env JSON");
    all.iter()
        .filter(|c| c["container"] == "checkout")
        .map(|c| Container {
            file: c["file"].as_str().unwrap_or_default().to_owned(),
            stop_timeout: c["stop_timeout"].as_u64(),
            env: c["env"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| {
                    (
                        e["name"].as_str().unwrap_or_default().to_owned(),
                        e["value"].as_str().map(str::to_owned),
                        e["field_ref"].as_str().map(str::to_owned),
                    )
                })
                .collect(),
        })
        .collect()
}

#[test]
fn every_variable_the_kit_sets_is_one_the_crate_reads() {
    let read = variables_the_crate_reads();
    // The table is real: it holds the spec's variables and the crate's own.
    for known in [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_RESOURCE_ATTRIBUTES_POD_NAME",
        "SHUTDOWN_DRAIN_DELAY_MS",
        "LOG_LEVEL",
        "LOG_FORMAT",
        "NO_COLOR",
        "KUBERNETES_SERVICE_HOST",
        "ECS_CONTAINER_METADATA_URI_V4",
    ] {
        assert!(read.contains(known), "{known} not among {read:?}");
    }
    let containers = service_containers();
    assert!(
        containers.iter().any(|c| c.file.starts_with("kubernetes/"))
            && containers.iter().any(|c| c.file.starts_with("ecs/")),
        "both the Deployment and the task definition are checked"
    );
    for container in &containers {
        let referenced: BTreeSet<String> = container
            .env
            .iter()
            .filter_map(|(_, value, _)| value.as_deref())
            .flat_map(|v| v.split("$(").skip(1))
            .filter_map(|rest| rest.split(')').next())
            .map(str::to_owned)
            .collect();
        for (name, _, _) in &container.env {
            // PORT is the service example's own; a variable only substituted into another
            // (NODE_IP) is the manifest's plumbing.
            let ok = read.contains(name) || name == "PORT" || referenced.contains(name);
            assert!(
                ok,
                "{}: {name} is not a variable the crate reads (renamed?)",
                container.file
            );
        }
    }
    // ECS: the stop timeout leaves the watchdog time to act before SIGKILL.
    let ecs = containers
        .iter()
        .find(|c| c.file.starts_with("ecs/"))
        .expect("ECS service container");
    let budget_ms: u64 = ecs
        .env
        .iter()
        .find(|(n, _, _)| n == "SHUTDOWN_TIMEOUT_MS")
        .and_then(|(_, v, _)| v.as_deref()?.parse().ok())
        .expect("SHUTDOWN_TIMEOUT_MS in the task definition");
    let stop_ms = ecs.stop_timeout.expect("stopTimeout") * 1000;
    assert!(
        budget_ms < stop_ms,
        "budget {budget_ms} ms vs stopTimeout {stop_ms} ms"
    );
}

/// The Kubernetes manifest's environment for a pod on this machine: the downward API's
/// fields given values a kubelet would, `$(VAR)` substituted, and a free port.
fn manifest_environment(port: &str) -> Vec<(String, String)> {
    let container = service_containers()
        .into_iter()
        .find(|c| c.file == "kubernetes/service.yaml")
        .expect("the Deployment's container");
    let mut resolved: BTreeMap<String, String> = BTreeMap::new();
    let mut ordered = Vec::new();
    for (name, value, field) in container.env {
        let value = match (value, field.as_deref()) {
            (Some(v), _) => resolved
                .iter()
                .fold(v, |v, (k, r)| v.replace(&format!("$({k})"), r)),
            (None, Some("status.hostIP")) => "127.0.0.1".to_owned(),
            (None, Some("metadata.name")) => "checkout-5d8f7b9c4-x2x7q".to_owned(),
            (None, Some("metadata.uid")) => "0f6d1f0a-5b7c-4c1e-9a51-3f6c1d2e7a90".to_owned(),
            (None, Some("metadata.namespace")) => "shop".to_owned(),
            (None, Some("spec.nodeName")) => "node-a".to_owned(),
            (None, other) => panic!("{name}: no test value for the field {other:?}"),
        };
        let value = if name == "PORT" {
            port.to_owned()
        } else {
            value
        };
        resolved.insert(name.clone(), value.clone());
        ordered.push((name, value));
    }
    ordered
}

#[test]
fn the_service_with_the_deployments_environment_reaches_the_collector_and_answers_probes() {
    // The manifest sends OTLP/gRPC to the node's port 4317.
    let collector = Collector::start_on(4317, free_port());
    let port = free_port().to_string();
    let env = manifest_environment(&port);
    let endpoint = env
        .iter()
        .find(|(n, _)| n == "OTEL_EXPORTER_OTLP_ENDPOINT")
        .map(|(_, v)| v.clone());
    assert_eq!(endpoint.as_deref(), Some("http://127.0.0.1:4317"));
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut child = Running::spawn(Command::new(example_binary("service")), &pairs);
    let port: u16 = child.wait_for_listening_port(WAIT);
    // The probes the manifest declares.
    let ready = (0..200)
        .map(|_| {
            let answer = http_get(port, "/readyz");
            if answer.0 != 200 {
                std::thread::sleep(Duration::from_millis(50));
            }
            answer
        })
        .find(|(status, _)| *status == 200)
        .expect("ready within 10 s");
    assert_eq!(ready.1, r#"{"status":"ready","checks":{"database":"ok"}}"#);
    assert_eq!(http_get(port, "/livez").0, 200);
    let mut client = KeepAlive::connect(port);
    assert_eq!(client.get("/work?ms=1"), 200);
    drop(client);

    let span = collector.wait_for("the request span", WAIT, |r| {
        r["signal"] == "span" && r["name"] == "GET /work"
    });
    let resource = &span["resource"];
    assert_eq!(resource["service.name"], "checkout", "{resource}");
    assert_eq!(
        resource["k8s.pod.name"], "checkout-5d8f7b9c4-x2x7q",
        "{resource}"
    );
    assert_eq!(resource["k8s.namespace.name"], "shop", "{resource}");
    assert_eq!(resource["k8s.node.name"], "node-a", "{resource}");
    assert_eq!(resource["k8s.container.name"], "checkout", "{resource}");
    assert_eq!(
        resource["deployment.environment.name"], "production",
        "{resource}"
    );
    // No warning: the manifest sets nothing the crate rejects or finds contradictory.
    let warnings: Vec<Value> = child
        .json()
        .into_iter()
        .filter(|l| l["level"] == "warn" && l["target"] == "service_telemetry::config")
        .collect();
    assert!(warnings.is_empty(), "{warnings:?}");

    child.signal(Signal::TERM);
    let status = child.wait_exit(WAIT);
    assert!(status.success(), "{status:?}\n{}", child.output());
}

/// `http.server.request.duration` (unit s) -> `http_server_request_duration_seconds`, the
/// translation Prometheus and the collector's exporter apply.
fn prometheus_family(otel_name: &str, unit: &str) -> String {
    let suffix = match unit {
        "s" => "_seconds",
        "By" => "_bytes",
        _ => "",
    };
    format!("{}{suffix}", otel_name.replace('.', "_"))
}

#[test]
fn the_dashboard_selects_only_metrics_the_crate_emits() {
    // What the service example really emits, scraped from its own endpoint while it also
    // exports traces and logs over OTLP (so the exporter metrics exist).
    let collector = Collector::start();
    let metrics_port = free_port().to_string();
    let endpoint = collector.grpc_endpoint();
    let mut child = Running::spawn(
        Command::new(example_binary("service")),
        &[
            ("PORT", "0"),
            ("OTEL_ENABLED", "true"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("OTEL_BLRP_SCHEDULE_DELAY", "100"),
            ("OTEL_METRICS_EXPORTER", "prometheus"),
            ("OTEL_EXPORTER_PROMETHEUS_HOST", "127.0.0.1"),
            ("OTEL_EXPORTER_PROMETHEUS_PORT", metrics_port.as_str()),
        ],
    );
    let port = child.wait_for_listening_port(WAIT);
    let mut client = KeepAlive::connect(port);
    for _ in 0..5 {
        assert_eq!(client.get("/work?ms=0"), 200);
    }
    drop(client);
    collector.wait_for("a request span", WAIT, |r| r["signal"] == "span");
    let metrics_port: u16 = metrics_port.parse().expect("port");
    let mut families = BTreeSet::new();
    for _ in 0..100 {
        let (status, body) = http_get(metrics_port, "/metrics");
        assert_eq!(status, 200);
        families = body
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split_whitespace().next())
            .map(str::to_owned)
            .collect();
        if families.contains("otel_sdk_exporter_log_exported_total") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.signal(Signal::TERM);
    let _ = child.wait_exit(WAIT);
    // The translation rule, checked on a real scrape.
    assert!(
        families.contains(&prometheus_family("http.server.request.duration", "s")),
        "{families:?}"
    );
    // gRPC and database metrics: the service example makes neither call, so their names come
    // from the instrumentation's own instruments, translated by the rule just checked.
    let instrumented = [
        prometheus_family("rpc.server.call.duration", "s"),
        prometheus_family("db.client.operation.duration", "s"),
    ];
    let selected: Vec<String> =
        serde_json::from_str(&check("dashboard")).expect("dashboard names JSON");
    assert!(selected.len() >= 6, "{selected:?}");
    for name in &selected {
        let family = ["_bucket", "_count", "_sum"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        assert!(
            families.contains(family)
                || families.contains(name.as_str())
                || instrumented.iter().any(|i| i == family),
            "the dashboard selects {name}, which the crate does not emit; scraped: {families:?}"
        );
    }
}
