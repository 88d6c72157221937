//! Who is speaking, end to end at the real collector: the resource of spans, metrics and log
//! records (instance id, host, process, OS; Kubernetes from a pod's environment and files; ECS
//! from a loopback metadata endpoint shaped like AWS's v4 documents), the bound on detection
//! when that endpoint hangs, and the metric cost controls (temporality, exponential
//! histograms, the cardinality limit and its warning).

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::collector::Collector;
use common::probe::{ProbeRun, probe_main, run_probe};
use serde_json::Value;

#[test]
#[ignore = "child-process entry point of the end-to-end tests, run by them"]
fn probe() {
    probe_main();
}

const WAIT: Duration = Duration::from_secs(15);

fn tag(name: &str) -> String {
    format!("{name}-{}", std::process::id())
}

/// One probe run exporting everything to `collector` over `protocol`, with `extra` variables.
fn run_exporting(
    collector: &Collector,
    protocol: &str,
    tag: &str,
    extra: &[(&str, &str)],
) -> ProbeRun {
    let endpoint = if protocol == "grpc" {
        collector.grpc_endpoint()
    } else {
        collector.http_endpoint()
    };
    let service = format!("svc-{tag}");
    let mut env = vec![
        ("OTEL_ENABLED", "true"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_SERVICE_NAME", service.as_str()),
        ("PROBE_TAG", tag),
    ];
    env.extend_from_slice(extra);
    let run = run_probe(&env, Duration::from_secs(60));
    run.assert_clean_exit();
    run
}

/// The resources of the probe's span, metric point and log record, once all three arrived.
fn resources(collector: &Collector, tag: &str) -> [Value; 3] {
    let span = collector.wait_for("the probe span", WAIT, |r| {
        r["signal"] == "span" && r["attributes"]["probe.tag"] == tag
    });
    let metric = collector.wait_for("the probe counter", WAIT, |r| {
        r["signal"] == "metric" && r["name"] == format!("probe.counter.{tag}").as_str()
    });
    let body = format!("probe-log-{tag}");
    let log = collector.wait_for("the probe log record", WAIT, |r| {
        r["signal"] == "log" && r["body"] == body.as_str()
    });
    [span, metric, log].map(|r| r["resource"].clone())
}

#[test]
fn every_signal_says_which_instance_host_and_process_it_comes_from_over_both_protocols() {
    let collector = Collector::start();
    let mut instance_ids = Vec::new();
    for protocol in ["grpc", "http/protobuf"] {
        let tag = tag(&format!("who-{}", protocol.replace('/', "-")));
        let run = run_exporting(&collector, protocol, &tag, &[]);
        assert!(run.warnings().is_empty(), "warnings: {:?}", run.warnings());
        let started = run.line_with_message("telemetry initialised");
        let resources = resources(&collector, &tag);
        for resource in &resources {
            assert_eq!(
                resource, &resources[0],
                "one resource for all three signals"
            );
        }
        let r = &resources[0];
        let id = r["service.instance.id"]
            .as_str()
            .expect("service.instance.id");
        assert!(
            id.len() == 36 && id.chars().filter(|c| *c == '-').count() == 4,
            "a UUID: {id}"
        );
        assert_eq!(
            started["service.instance.id"], id,
            "the startup line names it"
        );
        instance_ids.push(id.to_owned());
        for key in ["host.name", "host.arch", "os.type", "os.description"] {
            assert!(
                r[key].as_str().is_some_and(|v| !v.is_empty()),
                "{key} in {r}"
            );
        }
        assert_eq!(r["os.type"], std::env::consts::OS);
        assert!(r["process.pid"].as_i64().is_some_and(|p| p > 0), "{r}");
        assert!(
            r["process.executable.name"]
                .as_str()
                .is_some_and(|n| n.starts_with("fleet")),
            "{r}"
        );
        assert_eq!(r["process.runtime.name"], "rustc");
        assert!(
            r["process.runtime.version"]
                .as_str()
                .is_some_and(|v| v.starts_with("1.")),
            "{r}"
        );
        assert!(
            r["process.creation.time"]
                .as_str()
                .is_some_and(|t| t.ends_with('Z')),
            "{r}"
        );
        assert_eq!(r["telemetry.sdk.language"], "rust");
        let keys: Vec<&String> = r.as_object().expect("object").keys().collect();
        assert!(
            !keys.iter().any(|k| k.starts_with("process.command")),
            "no command line: {keys:?}"
        );
        assert!(
            !keys
                .iter()
                .any(|k| k.starts_with("k8s.") || k.starts_with("aws.")),
            "{keys:?}"
        );
    }
    assert_ne!(
        instance_ids[0], instance_ids[1],
        "each process is its own instance"
    );
}

/// A pod's file system as the detectors see it: the service-account namespace and a cgroup v2
/// line of containerd.
fn pod_root(name: &str) -> PathBuf {
    let root =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
    let sa = root.join("var/run/secrets/kubernetes.io/serviceaccount");
    std::fs::create_dir_all(&sa).expect("fixture dirs");
    std::fs::write(sa.join("namespace"), "shop\n").expect("namespace file");
    std::fs::create_dir_all(root.join("proc/self")).expect("proc dir");
    std::fs::write(
        root.join("proc/self/cgroup"),
        format!("0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod4f2a.slice/cri-containerd-{CONTAINER_ID}.scope\n"),
    )
    .expect("cgroup file");
    root
}

const CONTAINER_ID: &str = "7c1e5a9b3d2f4e6a8b0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e1f2a";

#[test]
fn a_pod_gets_kubernetes_attributes_and_a_stable_instance_id_but_hostname_alone_is_not_a_pod() {
    let collector = Collector::start();
    let root = pod_root("pod");
    let root_text = root.to_string_lossy().into_owned();
    let in_pod = tag("pod");
    run_exporting(
        &collector,
        "grpc",
        &in_pod,
        &[
            ("KUBERNETES_SERVICE_HOST", "127.0.0.1"),
            ("HOSTNAME", "checkout-7d9f8-x2kq"),
            (
                "OTEL_RESOURCE_ATTRIBUTES_POD_UID",
                "2c48913c-b29f-11e7-9350-020968147796",
            ),
            ("OTEL_RESOURCE_ATTRIBUTES_NODE_NAME", "node-a"),
            ("OTEL_RESOURCE_ATTRIBUTES_CONTAINER_NAME", "app"),
            ("PROBE_DETECTION_ROOT", &root_text),
        ],
    );
    let [span, ..] = resources(&collector, &in_pod);
    assert_eq!(span["k8s.pod.name"], "checkout-7d9f8-x2kq");
    assert_eq!(span["k8s.pod.uid"], "2c48913c-b29f-11e7-9350-020968147796");
    assert_eq!(span["k8s.node.name"], "node-a");
    assert_eq!(span["k8s.namespace.name"], "shop");
    assert_eq!(span["k8s.container.name"], "app");
    assert_eq!(span["container.id"], CONTAINER_ID);
    assert_eq!(span["service.instance.id"], "shop.checkout-7d9f8-x2kq.app");

    let laptop = tag("laptop");
    run_exporting(
        &collector,
        "grpc",
        &laptop,
        &[
            ("HOSTNAME", "dev-laptop"),
            ("PROBE_DETECTION_ROOT", &root_text),
        ],
    );
    let [span, ..] = resources(&collector, &laptop);
    let keys: Vec<&String> = span.as_object().expect("object").keys().collect();
    assert!(
        !keys.iter().any(|k| k.starts_with("k8s.")),
        "off Kubernetes: {keys:?}"
    );
    assert!(
        span["service.instance.id"]
            .as_str()
            .is_some_and(|id| id.len() == 36),
        "{span}"
    );
}

/// A loopback stand-in for the ECS agent: `GET {base}` is the container document,
/// `GET {base}/task` the task document; or, with `hang`, it accepts and never answers.
struct MetadataEndpoint {
    port: u16,
    _thread: std::thread::JoinHandle<()>,
}

fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/ecs")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

impl MetadataEndpoint {
    fn start(hang: bool) -> MetadataEndpoint {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind metadata endpoint");
        let port = listener.local_addr().expect("address").port();
        let (container, task) = (fixture("container.json"), fixture("task.json"));
        let thread = std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                if hang {
                    held.push(stream);
                    continue;
                }
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).is_ok_and(|n| n == 1) {
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head);
                let path = head.split_whitespace().nth(1).unwrap_or("");
                let (status, body) = match path {
                    "/v4/0123abcd" => ("200 OK", container.as_str()),
                    "/v4/0123abcd/task" => ("200 OK", task.as_str()),
                    _ => ("404 Not Found", "{}"),
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        MetadataEndpoint {
            port,
            _thread: thread,
        }
    }

    fn uri(&self) -> String {
        format!("http://127.0.0.1:{}/v4/0123abcd", self.port)
    }
}

#[test]
fn ecs_task_metadata_gives_cloud_and_task_attributes() {
    let collector = Collector::start();
    let endpoint = MetadataEndpoint::start(false);
    let tag = tag("ecs");
    let run = run_exporting(
        &collector,
        "http/protobuf",
        &tag,
        &[("ECS_CONTAINER_METADATA_URI_V4", &endpoint.uri())],
    );
    assert!(run.warnings().is_empty(), "warnings: {:?}", run.warnings());
    let [r, ..] = resources(&collector, &tag);
    let task_arn =
        "arn:aws:ecs:eu-west-1:123456789012:task/shop-prod/cd189a933e5849daa93386466019ab50";
    for (key, value) in [
        ("cloud.provider", "aws"),
        ("cloud.platform", "aws_ecs"),
        ("cloud.region", "eu-west-1"),
        ("cloud.account.id", "123456789012"),
        ("cloud.availability_zone", "eu-west-1b"),
        ("aws.ecs.task.arn", task_arn),
        ("aws.ecs.task.id", "cd189a933e5849daa93386466019ab50"),
        ("aws.ecs.task.family", "checkout"),
        ("aws.ecs.task.revision", "7"),
        (
            "aws.ecs.cluster.arn",
            "arn:aws:ecs:eu-west-1:123456789012:cluster/shop-prod",
        ),
        ("aws.ecs.launchtype", "fargate"),
        (
            "aws.ecs.container.arn",
            "arn:aws:ecs:eu-west-1:123456789012:container/shop-prod/cd189a933e5849daa93386466019ab50/5a1f4c2e-8d3b-4e6a-9f07-b2c1d0e9f8a7",
        ),
        (
            "container.id",
            "cd189a933e5849daa93386466019ab50-2495160603",
        ),
        ("container.name", "checkout"),
    ] {
        assert_eq!(r[key], value, "{key} in {r}");
    }
    let text = r.to_string();
    for expected in [
        "/ecs/checkout",
        "ecs/checkout/cd189a933e5849daa93386466019ab50",
        "arn:aws:logs:eu-west-1:123456789012:log-group:/ecs/checkout",
        "arn:aws:logs:eu-west-1:123456789012:log-group:/ecs/checkout:log-stream:ecs/checkout/cd189a933e5849daa93386466019ab50",
    ] {
        assert!(text.contains(expected), "{expected} in {r}");
    }
    for key in [
        "aws.log.group.names",
        "aws.log.stream.names",
        "aws.log.group.arns",
        "aws.log.stream.arns",
    ] {
        assert!(!r[key].is_null(), "{key} in {r}");
    }
    assert_eq!(
        run.line_with_message("telemetry initialised")["aws.ecs.task.arn"],
        task_arn
    );
}

/// A probe that only initialises (nothing exported, detectors on); returns the run and how
/// long `init` took in microseconds.
fn init_only(extra: &[(&str, &str)]) -> (ProbeRun, u64) {
    let mut env = vec![
        ("OTEL_ENABLED", "true"),
        ("OTEL_TRACES_EXPORTER", "none"),
        ("OTEL_METRICS_EXPORTER", "none"),
        ("OTEL_LOGS_EXPORTER", "none"),
    ];
    env.extend_from_slice(extra);
    let run = run_probe(&env, Duration::from_secs(30));
    run.assert_clean_exit();
    let init_us = run.line_with_message("probe-init")["init_us"]
        .as_u64()
        .expect("init_us");
    (run, init_us)
}

#[test]
fn a_metadata_endpoint_that_never_answers_costs_init_at_most_the_detection_budget() {
    let endpoint = MetadataEndpoint::start(true);
    let uri = endpoint.uri();
    let (run, init_us) = init_only(&[
        ("ECS_CONTAINER_METADATA_URI_V4", &uri),
        ("PROBE_TAG", "ecs-hang"),
    ]);
    // The budget is 250 ms; the margin covers thread start-up on a loaded CI machine.
    assert!(init_us < 600_000, "init took {init_us} us");
    assert!(
        init_us >= 150_000,
        "init did wait for the endpoint: {init_us} us"
    );
    let detection_ms = run.line_with_message("telemetry initialised")["resource_detection_ms"]
        .as_u64()
        .expect("resource_detection_ms");
    assert!(detection_ms <= 300, "detection took {detection_ms} ms");
    eprintln!(
        "init with a silent ECS metadata endpoint: {init_us} us (detection {detection_ms} ms)"
    );
    let warnings = run.warnings();
    assert_eq!(warnings.len(), 1, "one warning: {warnings:?}");
    assert_eq!(warnings[0]["target"], "service_telemetry::resource");
    assert_eq!(warnings[0]["detector"], "ecs");
    assert!(
        warnings[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("did not answer")),
        "{}",
        warnings[0]
    );
    // Without the variable there is nothing to wait for.
    let (_, quick_us) = init_only(&[("PROBE_TAG", "no-ecs")]);
    assert!(quick_us < 100_000, "init without ECS took {quick_us} us");
    eprintln!("init without ECS: {quick_us} us");
}

#[test]
fn delta_temporality_and_exponential_histograms_reach_the_collector_as_configured() {
    let collector = Collector::start();
    for protocol in ["grpc", "http/protobuf"] {
        let tag = tag(&format!("agg-{}", protocol.replace('/', "-")));
        run_exporting(
            &collector,
            protocol,
            &tag,
            &[
                ("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "delta"),
                (
                    "OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION",
                    "base2_exponential_bucket_histogram",
                ),
            ],
        );
        let counter = collector.wait_for("the probe counter", WAIT, |r| {
            r["signal"] == "metric" && r["name"] == format!("probe.counter.{tag}").as_str()
        });
        assert_eq!(
            counter["temporality"], "AGGREGATION_TEMPORALITY_DELTA",
            "{counter}"
        );
        let histogram = collector.wait_for("the probe histogram", WAIT, |r| {
            r["signal"] == "metric" && r["name"] == format!("probe.histogram.{tag}").as_str()
        });
        assert_eq!(histogram["type"], "ExponentialHistogram", "{histogram}");
        assert_eq!(
            histogram["temporality"], "AGGREGATION_TEMPORALITY_DELTA",
            "{histogram}"
        );
        assert_eq!(histogram["unit"], "s", "{histogram}");
    }
    // The defaults: cumulative, explicit buckets.
    let tag = tag("agg-default");
    run_exporting(&collector, "grpc", &tag, &[]);
    let histogram = collector.wait_for("the default histogram", WAIT, |r| {
        r["signal"] == "metric" && r["name"] == format!("probe.histogram.{tag}").as_str()
    });
    assert_eq!(histogram["type"], "Histogram", "{histogram}");
    assert_eq!(
        histogram["temporality"], "AGGREGATION_TEMPORALITY_CUMULATIVE",
        "{histogram}"
    );
}

#[test]
fn past_the_cardinality_limit_the_overflow_series_appears_and_one_warning_names_the_metric() {
    let collector = Collector::start();
    let tag = tag("cardinality");
    let run = run_exporting(
        &collector,
        "grpc",
        &tag,
        &[
            ("OTEL_METRICS_CARDINALITY_LIMIT", "5"),
            ("PROBE_SERIES", "40"),
        ],
    );
    let name = format!("probe.counter.{tag}");
    let overflow = collector.wait_for("the overflow series", WAIT, |r| {
        r["signal"] == "metric"
            && r["name"] == name.as_str()
            && r["attributes"]["otel.metric.overflow"] == true
    });
    // 40 series of 7 each and a limit of 5: a handful kept, the rest folded into the overflow
    // point (checked with slack for how the SDK counts the series it keeps: 30 or more).
    assert!(
        overflow["value"].as_f64().is_some_and(|v| v >= 7.0 * 30.0),
        "{overflow}"
    );
    let points = collector
        .records()
        .into_iter()
        .filter(|r| r["signal"] == "metric" && r["name"] == name.as_str())
        .count();
    assert!(
        points <= 6,
        "at most the limit plus the overflow series: {points}"
    );
    let warnings: Vec<&Value> = run
        .warnings()
        .into_iter()
        .filter(|w| w["target"] == "service_telemetry::metrics")
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(warnings[0]["metric"], name.as_str());
    assert_eq!(warnings[0]["cardinality_limit"], 5);
    assert_eq!(
        run.warnings().len(),
        1,
        "no other warning: {:?}",
        run.warnings()
    );
}

mod service_metrics {
    use super::*;
    use common::child::{Running, Signal, example_binary, http_get};

    fn metric<'a>(records: &'a [Value], name: &str) -> Vec<&'a Value> {
        records
            .iter()
            .filter(|r| r["signal"] == "metric" && r["name"] == name)
            .collect()
    }

    #[test]
    fn process_and_tokio_metrics_arrive_from_the_service_example_with_their_units() {
        let collector = Collector::start();
        let endpoint = collector.http_endpoint();
        let mut child = Running::spawn(
            std::process::Command::new(example_binary("service")),
            &[
                ("PORT", "0"),
                ("OTEL_ENABLED", "true"),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
                ("OTEL_METRIC_EXPORT_INTERVAL", "300"),
                ("OTEL_SERVICE_NAME", "fleet-service"),
            ],
        );
        let port = child.wait_for_listening_port(WAIT);
        assert_eq!(http_get(port, "/work?ms=5").0, 200);
        let expected: [(&str, &str, &str); 14] = [
            ("process.cpu.time", "s", "Sum"),
            ("process.cpu.utilization", "1", "Gauge"),
            ("process.memory.usage", "By", "Sum"),
            ("process.memory.virtual", "By", "Sum"),
            ("process.thread.count", "{thread}", "Sum"),
            (
                "process.unix.file_descriptor.count",
                "{file_descriptor}",
                "Sum",
            ),
            ("process.context_switches", "{context_switch}", "Sum"),
            ("process.uptime", "s", "Gauge"),
            ("tokio.worker.count", "{worker}", "Sum"),
            ("tokio.task.alive.count", "{task}", "Sum"),
            ("tokio.global_queue.depth", "{task}", "Sum"),
            ("tokio.worker.busy.time", "s", "Sum"),
            ("tokio.worker.parks", "{park}", "Sum"),
            ("http.server.request.duration", "s", "Histogram"),
        ];
        for (name, _, _) in expected {
            collector.wait_for(name, WAIT, |r| r["signal"] == "metric" && r["name"] == name);
        }
        child.signal(Signal::TERM);
        let status = child.wait_exit(WAIT);
        assert!(status.success(), "exit {status:?}\n{}", child.output());

        let records = collector.records();
        for (name, unit, kind) in expected {
            let points = metric(&records, name);
            let first = points[0];
            assert_eq!(first["unit"], unit, "{name}: {first}");
            assert_eq!(first["type"], kind, "{name}: {first}");
            assert_eq!(first["service"], "fleet-service");
        }
        let cpu = metric(&records, "process.cpu.time");
        for mode in ["user", "system"] {
            assert!(
                cpu.iter().any(|p| p["attributes"]["cpu.mode"] == mode),
                "{mode}: {cpu:?}"
            );
        }
        assert!(cpu.iter().all(|p| p["monotonic"] == "true"), "{cpu:?}");
        let memory = metric(&records, "process.memory.usage");
        assert!(
            memory
                .iter()
                .all(|p| p["value"].as_f64().is_some_and(|v| v > 1e6)),
            "{memory:?}"
        );
        let switches = metric(&records, "process.context_switches");
        for kind in ["voluntary", "involuntary"] {
            assert!(
                switches
                    .iter()
                    .any(|p| p["attributes"]["process.context_switch.type"] == kind),
                "{kind}: {switches:?}"
            );
        }
        // #[tokio::main] is a multi-thread runtime with one worker per core.
        let workers = metric(&records, "tokio.worker.count");
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        assert!(workers.iter().all(|p| p["value"] == cores), "{workers:?}");
        let busy = metric(&records, "tokio.worker.busy.time");
        assert!(
            busy.iter()
                .any(|p| p["attributes"]["tokio.worker.index"] == 0),
            "{busy:?}"
        );
        let alive = metric(&records, "tokio.task.alive.count");
        assert!(
            alive
                .iter()
                .any(|p| p["value"].as_f64().is_some_and(|v| v >= 2.0)),
            "the scheduler and timer tasks: {alive:?}"
        );
    }
}
