//! A real Prometheus server (Debian's, installed by scripts/install-test-prometheus.sh)
//! scrapes the service example's `/metrics` endpoint; the test asks Prometheus's HTTP API for
//! the request rate and for `target_info`, and checks that the endpoint is stopped only after
//! a final scrape once SIGTERM arrives.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::child::{Running, Signal, example_binary, http_get, http_post_json};
use common::collector::free_port;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);

fn prometheus_binary() -> PathBuf {
    let path = std::env::var_os("PROMETHEUS_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/prometheus"));
    assert!(
        path.exists(),
        "Prometheus not installed at {}: run scripts/install-test-prometheus.sh (scripts/test.sh does)",
        path.display()
    );
    path
}

/// A Prometheus server on loopback scraping `target` every second.
struct Prometheus {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Prometheus {
    fn start(target: u16) -> Prometheus {
        let port = free_port();
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("prometheus-{port}-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("data")).expect("prometheus dir");
        std::fs::write(
            dir.join("prometheus.yml"),
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: service\n    static_configs:\n      - targets: ['127.0.0.1:{target}']\n"
            ),
        )
        .expect("prometheus.yml");
        let log = std::fs::File::create(dir.join("prometheus.log")).expect("log file");
        let child = Command::new(prometheus_binary())
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("spawn prometheus");
        let prometheus = Prometheus { child, port, dir };
        let deadline = Instant::now() + WAIT;
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
                && http_get(port, "/-/ready").0 == 200
            {
                return prometheus;
            }
            assert!(
                Instant::now() < deadline,
                "Prometheus not ready:\n{}",
                prometheus.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    /// The result vector of an instant query.
    fn query(&self, promql: &str) -> Vec<Value> {
        let encoded: String = promql
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' | b'-' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        let (status, body) = http_get(self.port, &format!("/api/v1/query?query={encoded}"));
        assert_eq!(status, 200, "{promql}: {body}");
        let json = &body[body.find('{').unwrap_or(0)..=body.rfind('}').unwrap_or(body.len() - 1)];
        let answer: Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {body}"));
        assert_eq!(answer["status"], "success", "{answer}");
        answer["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Polls `promql` until `accept` holds for its result.
    fn wait_for(
        &self,
        promql: &str,
        accept: impl Fn(&[Value]) -> bool,
        keep_busy: impl Fn(),
    ) -> Vec<Value> {
        let deadline = Instant::now() + WAIT;
        loop {
            keep_busy();
            let result = self.query(promql);
            if accept(&result) {
                return result;
            }
            assert!(
                Instant::now() < deadline,
                "{promql} never satisfied; last answer {result:?}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn prometheus_scrapes_the_service_example_and_answers_rate_and_target_info() {
    let metrics_port = free_port();
    let metrics_port_text = metrics_port.to_string();
    let mut service = Running::spawn(
        Command::new(example_binary("service")),
        &[
            ("PORT", "0"),
            ("OTEL_ENABLED", "true"),
            ("OTEL_SERVICE_NAME", "prom-service"),
            ("OTEL_TRACES_EXPORTER", "none"),
            ("OTEL_LOGS_EXPORTER", "none"),
            ("OTEL_METRICS_EXPORTER", "prometheus"),
            ("OTEL_EXPORTER_PROMETHEUS_HOST", "127.0.0.1"),
            ("OTEL_EXPORTER_PROMETHEUS_PORT", &metrics_port_text),
        ],
    );
    let started = service.wait_for_message("telemetry initialised", WAIT);
    assert_eq!(
        started["metrics"],
        format!("prometheus http://127.0.0.1:{metrics_port}/metrics"),
        "{started}"
    );
    let instance_id = started["service.instance.id"]
        .as_str()
        .expect("instance id")
        .to_owned();
    let port = service.wait_for_listening_port(WAIT);

    // The endpoint itself: the text format, GET /metrics only.
    assert_eq!(http_get(port, "/work?ms=1").0, 200);
    let (status, text) = http_get(metrics_port, "/metrics");
    assert_eq!(status, 200);
    assert!(
        text.contains("# TYPE http_server_request_duration_seconds histogram"),
        "{text}"
    );
    assert!(text.contains("process_cpu_time_seconds_total{"), "{text}");
    assert!(text.contains("tokio_worker_count{"), "{text}");
    assert!(
        text.contains(&format!("service_instance_id=\"{instance_id}\"")),
        "target_info: {text}"
    );
    assert_eq!(http_get(metrics_port, "/other").0, 404);
    assert_eq!(http_post_json(metrics_port, "/metrics", "{}").0, 405);

    let prometheus = Prometheus::start(metrics_port);
    let busy = || {
        for _ in 0..5 {
            assert_eq!(http_get(port, "/work?ms=1").0, 200);
        }
    };
    let rate = prometheus.wait_for(
        "rate(http_server_request_duration_seconds_count[1m])",
        |r| {
            r.iter().any(|s| {
                s["value"][1]
                    .as_str()
                    .and_then(|v| v.parse::<f64>().ok())
                    .is_some_and(|v| v > 0.0)
            })
        },
        busy,
    );
    eprintln!("rate(http_server_request_duration_seconds_count[1m]) = {rate:?}");
    let series = &rate[0]["metric"];
    assert_eq!(series["job"], "service");
    assert_eq!(series["http_route"], "/work", "{series}");
    assert_eq!(series["http_request_method"], "GET", "{series}");
    assert_eq!(series["otel_scope_name"], "service-telemetry", "{series}");

    let target_info = prometheus.wait_for("target_info", |r| !r.is_empty(), || {});
    eprintln!("target_info = {target_info:?}");
    let labels = &target_info[0]["metric"];
    assert_eq!(
        labels["service_instance_id"],
        instance_id.as_str(),
        "{labels}"
    );
    assert_eq!(labels["service_name"], "prom-service", "{labels}");
    assert!(
        labels["host_name"].as_str().is_some_and(|h| !h.is_empty()),
        "{labels}"
    );
    assert!(labels.get("process_command_args").is_none(), "{labels}");

    // SIGTERM: the endpoint stays up for the final scrape (every second here), then the
    // process exits well before the 5 s window would have run out.
    let stopped = Instant::now();
    service.signal(Signal::TERM);
    let status = service.wait_exit(WAIT);
    let took = stopped.elapsed();
    assert!(status.success(), "exit {status:?}\n{}", service.output());
    assert!(took < Duration::from_millis(4500), "exit took {took:?}");
    let up = prometheus.query("up{job=\"service\"}");
    eprintln!("up after exit = {up:?}; exit took {took:?}");
}

#[test]
fn a_port_in_use_gives_one_warning_and_the_service_still_starts() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("address").port().to_string();
    let mut service = Running::spawn(
        Command::new(example_binary("service")),
        &[
            ("PORT", "0"),
            ("OTEL_ENABLED", "true"),
            ("OTEL_TRACES_EXPORTER", "none"),
            ("OTEL_LOGS_EXPORTER", "none"),
            ("OTEL_METRICS_EXPORTER", "prometheus"),
            ("OTEL_EXPORTER_PROMETHEUS_HOST", "127.0.0.1"),
            ("OTEL_EXPORTER_PROMETHEUS_PORT", &port),
        ],
    );
    let web = service.wait_for_listening_port(WAIT);
    assert_eq!(http_get(web, "/livez").0, 200, "the service serves");
    let warnings: Vec<Value> = service
        .json()
        .into_iter()
        .filter(|l| l["level"] == "warn")
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(warnings[0]["signal"], "metrics");
    let cause = warnings[0]["cause"].as_str().unwrap_or_default();
    assert!(
        cause.contains("no Prometheus endpoint") && cause.contains(&port),
        "{cause}"
    );
    service.signal(Signal::TERM);
    assert!(service.wait_exit(WAIT).success(), "{}", service.output());
}

#[test]
fn with_otlp_beside_a_prometheus_port_in_use_the_startup_line_fails_only_the_endpoint() {
    let collector = common::collector::Collector::start();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("address").port().to_string();
    let endpoint = collector.http_endpoint();
    let mut service = Running::spawn(
        Command::new(example_binary("service")),
        &[
            ("PORT", "0"),
            ("OTEL_ENABLED", "true"),
            ("OTEL_TRACES_EXPORTER", "none"),
            ("OTEL_LOGS_EXPORTER", "none"),
            ("OTEL_METRICS_EXPORTER", "otlp,prometheus"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_METRIC_EXPORT_INTERVAL", "200"),
            ("OTEL_EXPORTER_PROMETHEUS_HOST", "127.0.0.1"),
            ("OTEL_EXPORTER_PROMETHEUS_PORT", &port),
        ],
    );
    let started = service.wait_for_message("telemetry initialised", WAIT);
    let metrics = started["metrics"].as_str().unwrap_or_default();
    assert!(
        metrics.starts_with("otlp http/protobuf ") && !metrics.contains("(failed: no-op)"),
        "the OTLP half works: {metrics}"
    );
    assert!(
        metrics.ends_with("prometheus (failed: no endpoint)"),
        "{metrics}"
    );
    // And it does: the service's metrics reach the collector.
    collector.wait_for("a metric over OTLP", WAIT, |r| r["signal"] == "metric");
    service.signal(Signal::TERM);
    assert!(service.wait_exit(WAIT).success(), "{}", service.output());
}
