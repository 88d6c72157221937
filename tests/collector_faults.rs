//! What the collector or the network does cannot hurt the service: the service example runs
//! against a real collector that starts late, crashes and comes back, against a black hole
//! (accepts connections, never answers) and against a refused port. Requests keep their
//! latency, memory stays flat, losses are counted and reported a few lines at a time, and
//! shutdown keeps its budget.

mod common;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use common::child::{KeepAlive, Running, Signal, example_binary};
use common::collector::{Collector, free_port};
use serde_json::Value;

const READY: Duration = Duration::from_secs(20);

/// One test at a time: each loads both cores, and the latency and memory figures are only
/// comparable without a neighbour.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}
const ARRIVAL: Duration = Duration::from_secs(30);

/// Lines a test needs: the crate's own, warnings and errors, readiness. The two lines of every
/// `/work` request are dropped so a long run does not fill the test's memory.
fn interesting(line: &str) -> bool {
    !line.contains("\"message\":\"work ")
}

struct Service {
    child: Running,
    port: u16,
    ready_after: Duration,
}

fn start_service(grpc: bool, endpoint: &str, extra: &[(&str, &str)]) -> Service {
    let port = free_port().to_string();
    let mut env = vec![
        ("PORT", port.as_str()),
        ("OTEL_ENABLED", "true"),
        (
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            if grpc { "grpc" } else { "http/protobuf" },
        ),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ("OTEL_BLRP_SCHEDULE_DELAY", "100"),
        ("OTEL_METRIC_EXPORT_INTERVAL", "500"),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "1000"),
        ("SHUTDOWN_TIMEOUT_MS", "4000"),
    ];
    env.extend_from_slice(extra);
    let binary = example_binary("service");
    let started = Instant::now();
    let mut child = Running::spawn_keeping(std::process::Command::new(binary), &env, interesting);
    let listening = child.wait_for_message("listening", READY);
    let ready_after = started.elapsed();
    let port = listening["address"]
        .as_str()
        .and_then(|a| a.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .expect("port in the listening line");
    Service {
        child,
        port,
        ready_after,
    }
}

impl Service {
    /// SIGTERM, then the exit status and how long the shutdown took.
    fn stop(&mut self) -> (std::process::ExitStatus, Duration) {
        let signalled = Instant::now();
        self.child.signal(Signal::TERM);
        let status = self.child.wait_exit(Duration::from_secs(20));
        (status, signalled.elapsed())
    }

    fn export_lines(&self) -> Vec<Value> {
        self.child
            .json()
            .into_iter()
            .filter(|l| l["target"] == "service_telemetry::export")
            .collect()
    }

    fn totals(&self, signal: &str) -> Value {
        self.export_lines()
            .into_iter()
            .find(|l| {
                l["signal"] == signal
                    && l["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("export totals"))
            })
            .unwrap_or_else(|| panic!("no {signal} totals line\n{}", self.child.output()))
    }
}

fn assert_clean(service: &Service, status: std::process::ExitStatus) {
    let output = service.child.output();
    assert!(status.success(), "exit {status:?}\n{output}");
    assert!(!output.contains("panicked"), "a panic:\n{output}");
    // The SDK's line per failed batch is replaced by the ledger's summaries.
    assert!(
        !output.contains("ExportError") && !output.contains("Export.Failed"),
        "per-batch SDK error lines leaked:\n{output}"
    );
}

fn count(line: &Value, key: &str) -> u64 {
    line[key]
        .as_u64()
        .unwrap_or_else(|| panic!("no {key} in {line}"))
}

/// Waits for the service's first "export failing" warning about spans.
fn wait_for_trace_export_failure(service: &mut Service) {
    service
        .child
        .wait_for("an export failure warning", ARRIVAL, |l| {
            l["target"] == "service_telemetry::export"
                && l["level"] == "warn"
                && l["signal"] == "traces"
        });
}

/// Sends `/work?ms={ms}` until the collector holds such a span; returns how many were sent.
fn request_until_collected(
    client: &mut KeepAlive,
    collector: &Collector,
    ms: i64,
    service: &Service,
    what: &str,
) -> u64 {
    let deadline = Instant::now() + ARRIVAL;
    let mut sent = 0;
    while !collector.records().iter().any(work_span_with(ms)) {
        assert!(
            Instant::now() < deadline,
            "{what}\n{}",
            service.child.output()
        );
        assert_eq!(client.get(&format!("/work?ms={ms}")), 200);
        sent += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    sent
}

fn work_span_with(ms: i64) -> impl Fn(&Value) -> bool {
    move |r: &Value| {
        let value = &r["attributes"]["work.duration_ms"];
        // tracing-opentelemetry exports a u64 field as a string.
        r["signal"] == "span"
            && r["name"] == "work"
            && (*value == ms || value.as_str() == Some(ms.to_string().as_str()))
    }
}

#[test]
fn collector_down_at_start_then_up_the_service_starts_at_once_and_later_spans_arrive() {
    let _serial = one_at_a_time();
    for grpc in [true, false] {
        let (grpc_port, http_port) = (free_port(), free_port());
        let endpoint = if grpc {
            format!("http://127.0.0.1:{grpc_port}")
        } else {
            format!("http://127.0.0.1:{http_port}")
        };
        let mut service = start_service(grpc, &endpoint, &[]);
        assert!(
            service.ready_after < Duration::from_secs(5),
            "grpc={grpc}: ready after {:?}",
            service.ready_after
        );
        let mut client = KeepAlive::connect(service.port);
        for _ in 0..20 {
            assert_eq!(client.get("/work?ms=0"), 200);
        }
        wait_for_trace_export_failure(&mut service);

        let collector = Collector::start_on(grpc_port, http_port);
        request_until_collected(
            &mut client,
            &collector,
            1,
            &service,
            &format!("grpc={grpc}: no span after the collector came up"),
        );
        service.child.wait_for("a recovery line", ARRIVAL, |l| {
            l["target"] == "service_telemetry::export"
                && l["signal"] == "traces"
                && l["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("recovered"))
        });
        let (status, _) = service.stop();
        assert_clean(&service, status);
    }
}

#[test]
fn collector_killed_and_restarted_export_resumes_and_every_span_is_delivered_or_counted() {
    let _serial = one_at_a_time();
    for grpc in [true, false] {
        let mut collector = Collector::start();
        let endpoint = if grpc {
            collector.grpc_endpoint()
        } else {
            collector.http_endpoint()
        };
        let mut service = start_service(grpc, &endpoint, &[]);
        let mut client = KeepAlive::connect(service.port);
        let mut requests = 0u64;
        for _ in 0..20 {
            assert_eq!(client.get("/work?ms=0"), 200);
            requests += 1;
        }
        collector.wait_for("a first span", ARRIVAL, work_span_with(0));
        let before_crash = collector.records();

        collector.kill();
        for _ in 0..300 {
            assert_eq!(client.get("/work?ms=2"), 200);
            requests += 1;
        }
        service
            .child
            .wait_for("an export failure warning", ARRIVAL, |l| {
                l["target"] == "service_telemetry::export"
                    && l["level"] == "warn"
                    && l["signal"] == "traces"
            });

        collector.restart();
        let deadline = Instant::now() + ARRIVAL;
        while !collector.records().iter().any(work_span_with(3)) {
            assert!(
                Instant::now() < deadline,
                "grpc={grpc}: export did not resume\n{}",
                service.child.output()
            );
            assert_eq!(client.get("/work?ms=3"), 200);
            requests += 1;
            std::thread::sleep(Duration::from_millis(50));
        }
        let (status, _) = service.stop();
        assert_clean(&service, status);
        for line in service.export_lines() {
            println!("{line}");
        }

        // Every span is at a collector or counted as lost in the service's own log: each
        // request is the server span of HttpServerLayer and the handler's `work` span.
        let spans = requests * 2;
        let totals = service.totals("traces");
        let accounted = count(&totals, "exported")
            + count(&totals, "failed")
            + count(&totals, "dropped")
            + count(&totals, "undelivered");
        assert_eq!(
            accounted, spans,
            "grpc={grpc}: the ledger accounts for every span: {totals}"
        );
        let mut ids: Vec<String> = before_crash
            .iter()
            .chain(collector.records().iter())
            .filter(|r| r["signal"] == "span" && (r["name"] == "work" || r["name"] == "GET /work"))
            .filter_map(|r| r["span_id"].as_str().map(str::to_owned))
            .collect();
        ids.sort();
        ids.dedup();
        let lost =
            count(&totals, "failed") + count(&totals, "dropped") + count(&totals, "undelivered");
        assert!(
            ids.len() as u64 + lost >= spans,
            "grpc={grpc}: {} spans at the collectors + {lost} counted as lost < {spans} created: {totals}",
            ids.len()
        );
        assert!(lost > 0, "grpc={grpc}: the crash cost nothing? {totals}");
    }
}

/// Accepts connections and never answers.
fn black_hole() -> (u16, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind black hole");
    let port = listener.local_addr().expect("address").port();
    let handle = std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    (port, handle)
}

struct LatencyRun {
    name: &'static str,
    p50: Duration,
    p99: Duration,
    shutdown: Duration,
}

fn measure(
    name: &'static str,
    grpc: bool,
    endpoint: &str,
    requests: usize,
) -> (LatencyRun, Service) {
    let mut service = start_service(grpc, endpoint, &[]);
    let mut client = KeepAlive::connect(service.port);
    for _ in 0..200 {
        client.get("/work?ms=0");
    }
    let mut latencies = Vec::with_capacity(requests);
    for _ in 0..requests {
        let t = Instant::now();
        assert_eq!(client.get("/work?ms=0"), 200);
        latencies.push(t.elapsed());
    }
    latencies.sort();
    let (status, shutdown) = service.stop();
    assert_clean(&service, status);
    let run = LatencyRun {
        name,
        p50: latencies[requests / 2],
        p99: latencies[requests * 99 / 100],
        shutdown,
    };
    (run, service)
}

#[test]
fn black_hole_and_refused_port_do_not_slow_requests_and_shutdown_keeps_its_budget() {
    let _serial = one_at_a_time();
    const REQUESTS: usize = 5000;
    let budget = Duration::from_millis(4000);
    for grpc in [true, false] {
        let collector = Collector::start();
        let (hole, _hole_thread) = black_hole();
        let refused = free_port();
        let healthy_endpoint = if grpc {
            collector.grpc_endpoint()
        } else {
            collector.http_endpoint()
        };
        let (healthy, _) = measure("healthy", grpc, &healthy_endpoint, REQUESTS);
        let (silent, silent_service) = measure(
            "black hole",
            grpc,
            &format!("http://127.0.0.1:{hole}"),
            REQUESTS,
        );
        let (refusing, refused_service) = measure(
            "refused",
            grpc,
            &format!("http://127.0.0.1:{refused}"),
            REQUESTS,
        );
        for run in [&healthy, &silent, &refusing] {
            println!(
                "grpc={grpc} {:>10}: p50 {:>7.3} ms  p99 {:>7.3} ms  shutdown {:>5} ms",
                run.name,
                run.p50.as_secs_f64() * 1e3,
                run.p99.as_secs_f64() * 1e3,
                run.shutdown.as_millis()
            );
        }
        for run in [&silent, &refusing] {
            // Generous: a blocked hot path would cost the export timeout (1 s), not a ratio.
            assert!(
                run.p99 <= healthy.p99 * 3 + Duration::from_millis(2),
                "grpc={grpc} {}: p99 {:?} vs healthy {:?}",
                run.name,
                run.p99,
                healthy.p99
            );
            assert!(
                run.shutdown < budget + Duration::from_millis(1500),
                "grpc={grpc} {}: shutdown took {:?}",
                run.name,
                run.shutdown
            );
        }
        for service in [&silent_service, &refused_service] {
            let lines = service.export_lines();
            // Failure started + at most one summary per signal in a run this short, plus the
            // totals at shutdown: never a line per failed batch.
            for signal in ["traces", "logs", "metrics"] {
                let n = lines.iter().filter(|l| l["signal"] == signal).count();
                assert!(
                    (1..=4).contains(&n),
                    "grpc={grpc}: {n} export lines for {signal}:\n{}",
                    service.child.output()
                );
            }
            let traces = service.totals("traces");
            assert_eq!(count(&traces, "exported"), 0, "{traces}");
            assert!(
                count(&traces, "failed")
                    + count(&traces, "dropped")
                    + count(&traces, "undelivered")
                    >= REQUESTS as u64,
                "every span is counted as lost: {traces}"
            );
        }
        // Against the black hole the exporter is stuck for 1 s per batch: the queue fills
        // and the overflow is counted, not buffered.
        let logs = silent_service.totals("logs");
        assert!(count(&logs, "dropped") > 0, "{logs}");
    }
}

/// RSS of the service under sustained load against a black hole. `FAULT_SOAK_SECS` sets the
/// duration (default 20 s; the README's figure comes from a 300 s run).
#[test]
fn memory_stays_flat_under_sustained_load_against_a_black_hole() {
    let _serial = one_at_a_time();
    let seconds: u64 = std::env::var("FAULT_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let (hole, _hole_thread) = black_hole();
    let mut service = start_service(true, &format!("http://127.0.0.1:{hole}"), &[]);
    let mut client = KeepAlive::connect(service.port);
    let started = Instant::now();
    let warm_up = Duration::from_secs(seconds / 4);
    let mut samples: Vec<(u64, u64)> = Vec::new();
    let mut next_sample = started;
    let mut requests = 0u64;
    while started.elapsed() < Duration::from_secs(seconds) {
        assert_eq!(client.get("/work?ms=0"), 200);
        requests += 1;
        if Instant::now() >= next_sample {
            let rss = service.child.rss_kib().expect("rss");
            samples.push((started.elapsed().as_secs(), rss));
            next_sample += Duration::from_secs(1);
        }
    }
    let (status, _) = service.stop();
    assert_clean(&service, status);
    let after_warm_up: Vec<u64> = samples
        .iter()
        .filter(|(t, _)| *t >= warm_up.as_secs())
        .map(|(_, rss)| *rss)
        .collect();
    let first = after_warm_up[0];
    let max = *after_warm_up.iter().max().expect("samples");
    let last = *after_warm_up.last().expect("samples");
    println!(
        "soak {seconds} s, {requests} requests ({:.0}/s): RSS after warm-up {first} KiB, max {max} KiB, last {last} KiB, growth {} KiB",
        requests as f64 / seconds as f64,
        max.saturating_sub(first)
    );
    println!("samples (s, KiB): {samples:?}");
    assert!(
        max.saturating_sub(first) < 16 * 1024,
        "RSS grew by {} KiB after warm-up: {samples:?}",
        max - first
    );
    for line in service.export_lines() {
        println!("{line}");
    }
    let traces = service.totals("traces");
    assert!(count(&traces, "dropped") > 0, "{traces}");
    // At most the start line, one summary per interval (30 s) and the totals, per signal.
    let allowed = 2 + seconds as usize / 30 + 1;
    for signal in ["traces", "logs", "metrics"] {
        let n = service
            .export_lines()
            .iter()
            .filter(|l| l["signal"] == signal)
            .count();
        assert!(n <= allowed, "{n} export lines for {signal} in {seconds} s");
    }
}

/// The service's stdout after the first export totals line: only the other totals lines.
fn lines_after_the_totals(service: &Service) -> Vec<String> {
    let lines: Vec<Value> = service.child.json();
    let first = lines
        .iter()
        .position(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.contains("export totals"))
        })
        .unwrap_or_else(|| panic!("no totals line\n{}", service.child.output()));
    lines[first..]
        .iter()
        .filter(|l| {
            !l["message"]
                .as_str()
                .is_some_and(|m| m.contains("export totals"))
        })
        .map(Value::to_string)
        .collect()
}

#[test]
fn shutdown_against_a_black_hole_with_the_default_budget_ends_within_the_flush_bound() {
    let _serial = one_at_a_time();
    const REQUESTS: usize = 300;
    for grpc in [true, false] {
        let (hole, _hole_thread) = black_hole();
        let endpoint = format!("http://127.0.0.1:{hole}");
        // The defaults a service runs with: a 30 s budget and a 10 s export timeout (empty
        // means unset). Only the batching is quicker, so exports are in flight at SIGTERM.
        let mut service = start_service(
            grpc,
            &endpoint,
            &[
                ("SHUTDOWN_TIMEOUT_MS", ""),
                ("OTEL_EXPORTER_OTLP_TIMEOUT", ""),
            ],
        );
        let mut client = KeepAlive::connect(service.port);
        for _ in 0..REQUESTS {
            assert_eq!(client.get("/work?ms=0"), 200);
        }
        drop(client);
        let (status, took) = service.stop();
        println!(
            "grpc={grpc}: black hole, default budget: SIGTERM to exit {} ms",
            took.as_millis()
        );
        assert_clean(&service, status);
        // Steps take milliseconds; the final flush is cut at the 5 s flush timeout (the
        // reserve is 5 s too), not at what is left of the 30 s budget.
        assert!(
            took < Duration::from_millis(7000),
            "grpc={grpc}: shutdown took {took:?}\n{}",
            service.child.output()
        );
        let traces = service.totals("traces");
        assert_eq!(count(&traces, "exported"), 0, "{traces}");
        assert!(
            count(&traces, "failed") + count(&traces, "dropped") + count(&traces, "undelivered")
                >= REQUESTS as u64,
            "every span is counted as lost: {traces}"
        );
        let stopped_waiting = service
            .export_lines()
            .into_iter()
            .find(|l| {
                l["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("telemetry shutdown stopped waiting after"))
            })
            .unwrap_or_else(|| panic!("no stopped-waiting line\n{}", service.child.output()));
        assert_eq!(stopped_waiting["level"], "warn", "{stopped_waiting}");
        assert!(
            stopped_waiting["unconfirmed"]
                .as_str()
                .is_some_and(|s| s.contains("traces")),
            "{stopped_waiting}"
        );
        let after = lines_after_the_totals(&service);
        assert!(
            after.is_empty(),
            "grpc={grpc}: lines after the totals: {after:#?}"
        );
        let output = service.child.output();
        assert!(
            !output.contains("timing out") && !output.contains("InternalFailure"),
            "grpc={grpc}: SDK shutdown diagnostics leaked:\n{output}"
        );
    }
}

#[test]
fn a_clean_shutdown_against_a_refused_port_ends_with_the_totals_in_plain_words() {
    let _serial = one_at_a_time();
    for grpc in [true, false] {
        let refused = free_port();
        let mut service = start_service(grpc, &format!("http://127.0.0.1:{refused}"), &[]);
        let mut client = KeepAlive::connect(service.port);
        for _ in 0..50 {
            assert_eq!(client.get("/work?ms=0"), 200);
        }
        drop(client);
        wait_for_trace_export_failure(&mut service);
        let (status, took) = service.stop();
        assert_clean(&service, status);
        println!(
            "grpc={grpc}: refused port: SIGTERM to exit {} ms",
            took.as_millis()
        );
        // One attempt per export once shutdown began: no backoff to wait out.
        assert!(took < Duration::from_millis(2500), "grpc={grpc}: {took:?}");
        let after = lines_after_the_totals(&service);
        assert!(
            after.is_empty(),
            "grpc={grpc}: lines after the totals: {after:#?}"
        );
        let output = service.child.output();
        for jargon in ["InternalFailure", "Failed to shutdown", "queued up to 0"] {
            assert!(
                !output.contains(jargon),
                "grpc={grpc}: {jargon:?} in the output:\n{output}"
            );
        }
        let metrics = service.totals("metrics");
        assert_eq!(count(&metrics, "exported"), 0, "{metrics}");
        assert!(count(&metrics, "failed") > 0, "{metrics}");
    }
}
