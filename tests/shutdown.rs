//! Graceful shutdown, end to end: real child processes, real signals, a real collector.
//!
//! Scenario children are this test binary re-run as the ignored `shutdown_probe` test; the
//! health, in-flight and telemetry tests run the `service` example.

mod common;

use std::future::pending;
use std::time::{Duration, Instant};

use common::child::{Running, Signal, example_binary, http_get};
use common::collector::Collector;
use serde_json::Value;
use service_telemetry::Shutdown;
use service_telemetry::shutdown::Step;

const READY: Duration = Duration::from_secs(30);
const EXIT: Duration = Duration::from_secs(30);

/// Child entry point. `PROBE_SCENARIO` picks the steps; `PROBE_RUNTIME` is `current` or
/// `multi`. Prints `probe ready` once the signal handlers are installed.
#[test]
#[ignore = "child-process entry point of the shutdown tests, run by them"]
fn shutdown_probe() {
    let mut runtime = match std::env::var("PROBE_RUNTIME").as_deref() {
        Ok("multi") => tokio::runtime::Builder::new_multi_thread(),
        _ => tokio::runtime::Builder::new_current_thread(),
    };
    let runtime = runtime.enable_all().build().expect("runtime");
    runtime.block_on(async {
        let telemetry = service_telemetry::Telemetry::builder()
            .service_name("shutdown-probe")
            .init();
        let mut shutdown = Shutdown::new(telemetry);
        let scenario = std::env::var("PROBE_SCENARIO").unwrap_or_default();
        match scenario.as_str() {
            "normal" => {
                for name in ["first", "second", "third"] {
                    shutdown.add_step(name, move || async move {
                        tracing::info!("step {name} ran");
                    });
                }
            }
            "isolation" => {
                shutdown.add_step("fails", || async {
                    Err::<(), _>(std::io::Error::other("database said no"))
                });
                shutdown.add_step("panics", || async {
                    if true {
                        panic!("step exploded");
                    }
                });
                shutdown.add_step("after", || async { tracing::info!("step after ran") });
            }
            "step_timeout" => {
                shutdown.add(Step::new("hangs", pending::<()>).timeout(Duration::from_millis(300)));
                shutdown.add_step("after", || async { tracing::info!("step after ran") });
            }
            "blocked" => {
                shutdown.add_step("quick", || async {});
                // Blocks the only thread of the current-thread runtime.
                shutdown.add_step("stuck", || async {
                    std::thread::sleep(Duration::from_secs(600));
                });
                shutdown.add_step("never", || async {});
            }
            "slow" => {
                shutdown.add_step("slow", || tokio::time::sleep(Duration::from_secs(600)));
                shutdown.add_step("never", || async {});
            }
            other => panic!("unknown PROBE_SCENARIO {other:?}"),
        }
        tracing::info!("probe ready");
        shutdown.run().await;
    });
}

fn start_probe(scenario: &str, env: &[(&str, &str)]) -> Running {
    let mut vars = vec![("PROBE_SCENARIO", scenario)];
    vars.extend_from_slice(env);
    let mut child = Running::probe("shutdown_probe", &vars);
    child.wait_for_message("probe ready", READY);
    child
}

fn report_line(child: &mut Running) -> Value {
    child.wait_for_message("shutdown complete", EXIT)
}

fn messages(child: &Running) -> Vec<String> {
    child
        .json()
        .iter()
        .filter_map(|l| l["message"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn normal_shutdown_runs_steps_in_order_and_exits_0() {
    let mut child = start_probe("normal", &[]);
    child.signal(Signal::TERM);
    let report = report_line(&mut child);
    let status = child.wait_exit(EXIT);
    assert_eq!(status.code(), Some(0), "{}", child.output());
    assert_eq!(report["level"], "info");
    assert_eq!(report["trigger"], "SIGTERM");
    assert_eq!(report["exit_code"], 0);
    let steps = report["steps"].as_str().expect("steps field");
    for (i, name) in ["first", "second", "third"].iter().enumerate() {
        assert!(
            steps.contains(&format!("{}. {name}: ok (", i + 1)),
            "{steps}"
        );
    }
    let ran: Vec<_> = messages(&child)
        .into_iter()
        .filter(|m| m.starts_with("step ") && m.ends_with(" ran"))
        .collect();
    assert_eq!(ran, ["step first ran", "step second ran", "step third ran"]);
}

#[test]
fn failing_and_panicking_steps_are_reported_and_later_steps_run() {
    let mut child = start_probe("isolation", &[]);
    child.signal(Signal::INT);
    let report = report_line(&mut child);
    let status = child.wait_exit(EXIT);
    assert_eq!(status.code(), Some(0), "{}", child.output());
    assert_eq!(report["trigger"], "SIGINT");
    assert_eq!(report["failed"], 2);
    let steps = report["steps"].as_str().expect("steps field");
    assert!(
        steps.contains("1. fails: failed: database said no ("),
        "{steps}"
    );
    assert!(
        steps.contains("2. panics: panicked: step exploded ("),
        "{steps}"
    );
    assert!(steps.contains("3. after: ok ("), "{steps}");
    assert!(messages(&child).contains(&"step after ran".to_owned()));
    let lines = child.json();
    let failed = lines
        .iter()
        .find(|l| l["step"] == "fails" && l["level"] == "warn")
        .expect("a warn line naming the failed step");
    assert_eq!(failed["outcome"], "failed: database said no");
    let panicked = lines
        .iter()
        .find(|l| l["step"] == "panics" && l["level"] == "warn")
        .expect("a warn line naming the panicked step");
    assert_eq!(panicked["outcome"], "panicked: step exploded");
}

#[test]
fn a_step_past_its_own_timeout_lets_the_next_run() {
    let mut child = start_probe("step_timeout", &[]);
    let sent = Instant::now();
    child.signal(Signal::TERM);
    let report = report_line(&mut child);
    let status = child.wait_exit(EXIT);
    assert_eq!(status.code(), Some(0), "{}", child.output());
    let steps = report["steps"].as_str().expect("steps field");
    assert!(
        steps.contains("1. hangs: timed out after 300 ms ("),
        "{steps}"
    );
    assert!(steps.contains("2. after: ok ("), "{steps}");
    assert!(
        sent.elapsed() < Duration::from_secs(10),
        "{:?}",
        sent.elapsed()
    );
}

#[test]
fn watchdog_exits_1_naming_a_step_that_blocks_the_only_thread() {
    // Budget 2 s, of which 0.5 s is kept for the telemetry flush, which must still happen.
    let collector = Collector::start();
    let endpoint = collector.grpc_endpoint();
    let mut child = start_probe(
        "blocked",
        &[
            ("PROBE_RUNTIME", "current"),
            ("SHUTDOWN_TIMEOUT_MS", "2000"),
            ("OTEL_ENABLED", "true"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_BLRP_SCHEDULE_DELAY", "600000"),
        ],
    );
    let sent = Instant::now();
    child.signal(Signal::TERM);
    let status = child.wait_exit(EXIT);
    let elapsed = sent.elapsed();
    assert_eq!(status.code(), Some(1), "{}", child.output());
    assert!(
        elapsed >= Duration::from_millis(1400),
        "exited early: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_millis(2000 + 1500),
        "budget plus margin exceeded: {elapsed:?}"
    );
    let lines = child.json();
    // The export totals of the final flush come after it; nothing else does.
    let last = lines
        .iter()
        .rev()
        .find(|l| l["target"] != "service_telemetry::export")
        .expect("output");
    assert_eq!(last["level"], "error", "{}", child.output());
    assert_eq!(last["hung_step"], "stuck");
    assert_eq!(last["completed"], "quick");
    assert_eq!(last["not_started"], "never");
    assert!(
        last["hung_for_ms"].as_u64().is_some_and(|ms| ms >= 1000),
        "{last}"
    );
    let message = last["message"].as_str().expect("message");
    assert!(message.contains("step \"stuck\""), "{message}");
    assert!(message.contains("exiting with code 1"), "{message}");

    let records = collector.records();
    assert!(
        records.iter().any(|r| r["signal"] == "log"
            && r["body"]
                .as_str()
                .is_some_and(|b| b.starts_with("shutdown watchdog fired"))),
        "the watchdog's line was flushed to the collector: {records:#?}"
    );
}

#[test]
fn a_second_signal_forces_exit_1_at_once() {
    let mut child = start_probe("slow", &[("PROBE_RUNTIME", "multi")]);
    child.signal(Signal::TERM);
    child.wait_for_message("shutdown step \"slow\" started", EXIT);
    let sent = Instant::now();
    child.signal(Signal::INT);
    let status = child.wait_exit(EXIT);
    let elapsed = sent.elapsed();
    assert_eq!(status.code(), Some(1), "{}", child.output());
    assert!(elapsed < Duration::from_secs(2), "not at once: {elapsed:?}");
    let lines = child.json();
    // The export totals of the final flush come after it; nothing else does.
    let last = lines
        .iter()
        .rev()
        .find(|l| l["target"] != "service_telemetry::export")
        .expect("output");
    assert_eq!(last["level"], "error");
    assert_eq!(last["signal"], "SIGINT");
    assert_eq!(last["interrupted_step"], "slow");
    assert!(
        last["message"]
            .as_str()
            .is_some_and(|m| m.contains("step \"slow\"")),
        "{last}"
    );
    assert_eq!(last["not_started"], "never");
}

/// Polls `path` until it answers `status` (readiness follows the coordinator and the check
/// cache), returning the body.
fn wait_for_status(port: u16, path: &str, status: u16) -> String {
    let deadline = Instant::now() + READY;
    loop {
        let (got, body) = http_get(port, path);
        if got == status {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{path} still {got} {body}, not {status}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn start_service(env: &[(&str, &str)]) -> (Running, u16) {
    let mut vars = vec![("PORT", "0")];
    vars.extend_from_slice(env);
    let mut child = Running::spawn(std::process::Command::new(example_binary("service")), &vars);
    let port = child.wait_for_listening_port(READY);
    (child, port)
}

#[test]
fn health_reports_shutting_down_while_the_first_step_runs_and_in_flight_work_completes() {
    let (mut child, port) = start_service(&[]);
    assert_eq!(
        wait_for_status(port, "/health", 200),
        r#"{"status":"ready","checks":{"database":"ok"}}"#
    );
    assert_eq!(http_get(port, "/jobs?ms=2500").0, 202);
    child.wait_for_message("job started", READY);
    let in_flight = std::thread::spawn(move || http_get(port, "/work?ms=1500"));
    child.wait_for_message("work started", READY);

    child.signal(Signal::TERM);
    child.wait_for_message("shutdown step \"stop job scheduler\" started", EXIT);
    let step_seen = Instant::now();
    let health = http_get(port, "/health");
    let answered_after = step_seen.elapsed();
    assert_eq!(health, (503, r#"{"status":"shutting_down"}"#.to_owned()));

    let (status, body) = in_flight.join().expect("in-flight request");
    assert_eq!(status, 200, "the request in flight at SIGTERM completes");
    assert_eq!(body, r#"{"worked_ms":1500}"#);

    let report = report_line(&mut child);
    let exit = child.wait_exit(EXIT);
    assert_eq!(exit.code(), Some(0), "{}", child.output());
    let steps = report["steps"].as_str().expect("steps");
    // The first step, the scheduler's, was still running (its job had ~2 s left) when
    // health answered.
    let job_step = child
        .json()
        .into_iter()
        .find(|l| l["step"] == "stop job scheduler" && l["outcome"] == "ok")
        .expect("scheduler step line");
    let step_ran = Duration::from_millis(job_step["duration_ms"].as_u64().expect("duration"));
    assert!(
        answered_after + Duration::from_millis(200) < step_ran,
        "health answered {answered_after:?} into a step that ran {step_ran:?}"
    );
    assert!(steps.starts_with("1. stop job scheduler: ok"), "{steps}");
    for name in [
        "stop job scheduler",
        "stop heartbeat timer",
        "drain http server",
        "flush feature flags",
        "close database pool",
    ] {
        assert!(steps.contains(&format!("{name}: ok")), "{steps}");
    }
}

#[test]
fn telemetry_created_just_before_sigterm_reaches_the_collector() {
    let collector = Collector::start();
    let service = format!("shutdown-e2e-{}", std::process::id());
    let endpoint = collector.grpc_endpoint();
    let (mut child, port) = start_service(&[
        ("OTEL_ENABLED", "true"),
        ("OTEL_SERVICE_NAME", &service),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
        // Longer than the test: only the shutdown flush can deliver in time.
        ("OTEL_BSP_SCHEDULE_DELAY", "600000"),
        ("OTEL_BLRP_SCHEDULE_DELAY", "600000"),
    ]);
    assert_eq!(http_get(port, "/work?ms=5").0, 200);
    let done = child.wait_for_message("work done", READY);
    let trace_id = done["trace_id"].as_str().expect("trace id").to_owned();
    child.signal(Signal::TERM);
    let exit = child.wait_exit(EXIT);
    assert_eq!(exit.code(), Some(0), "{}", child.output());

    // Everything was flushed before the exit, so it is already there: no waiting.
    let records = collector.records();
    let find = |pred: &dyn Fn(&Value) -> bool| records.iter().find(|r| pred(r)).cloned();
    let span = find(&|r| r["signal"] == "span" && r["name"] == "work")
        .unwrap_or_else(|| panic!("no work span; records: {records:#?}"));
    assert_eq!(span["service"], service.as_str());
    assert_eq!(span["trace_id"], trace_id.as_str());
    let log = find(&|r| r["signal"] == "log" && r["body"] == "work done")
        .unwrap_or_else(|| panic!("no work log record; records: {records:#?}"));
    assert_eq!(log["trace_id"], trace_id.as_str());
    let report = find(&|r| {
        r["signal"] == "log"
            && r["body"]
                .as_str()
                .is_some_and(|b| b.starts_with("shutdown complete"))
    })
    .unwrap_or_else(|| panic!("no shutdown report record; records: {records:#?}"));
    assert_eq!(report["service"], service.as_str());
}

/// Kubernetes' three questions on the service example, a real process exporting to the real
/// collector: readiness follows the coordinator, the named database check and the signal;
/// liveness stays up through it all; probes make no span and no log line but are counted.
#[test]
fn readiness_follows_the_check_and_the_signal_while_liveness_stays_up_and_probes_stay_quiet() {
    let collector = Collector::start();
    let endpoint = collector.http_endpoint();
    let service = format!("probes-{}", std::process::id());
    let (mut child, port) = start_service(&[
        ("OTEL_ENABLED", "true"),
        ("OTEL_SERVICE_NAME", service.as_str()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_METRIC_EXPORT_INTERVAL", "200"),
        ("SHUTDOWN_DRAIN_DELAY_MS", "1500"),
    ]);
    assert_eq!(
        wait_for_status(port, "/readyz", 200),
        r#"{"status":"ready","checks":{"database":"ok"}}"#
    );
    assert_eq!(
        http_get(port, "/livez"),
        (200, r#"{"status":"ready"}"#.to_owned())
    );

    // The database goes away: not ready (the check's cache lasts a second), still alive, and
    // the reason is logged, not served.
    assert_eq!(common::child::http_post_json(port, "/outage", "{}").0, 200);
    let body = wait_for_status(port, "/readyz", 503);
    let json: Value = serde_json::from_str(&body).expect("JSON body");
    assert_eq!(json["status"], "not_ready", "{body}");
    assert_eq!(json["checks"]["database"], "failing", "{body}");
    assert!(
        !body.contains("refused"),
        "no error text in the body: {body}"
    );
    assert_eq!(
        http_get(port, "/livez").0,
        200,
        "a database outage is no restart"
    );
    let failing = child.wait_for_message("readiness check \"database\" failing", READY);
    assert_eq!(failing["level"], "warn", "{failing}");
    assert_eq!(failing["check"], "database", "{failing}");
    assert!(
        failing["reason"]
            .as_str()
            .is_some_and(|r| r.contains("connection refused")),
        "{failing}"
    );

    assert_eq!(
        common::child::http_post_json(port, "/recovery", "{}").0,
        200
    );
    wait_for_status(port, "/readyz", 200);

    // SIGTERM: readiness fails at once, for good; liveness holds through the drain delay.
    child.signal(Signal::TERM);
    child.wait_for_message("shutdown started", EXIT);
    assert_eq!(
        http_get(port, "/readyz"),
        (503, r#"{"status":"shutting_down"}"#.to_owned())
    );
    assert_eq!(
        http_get(port, "/health"),
        (503, r#"{"status":"shutting_down"}"#.to_owned())
    );
    assert_eq!(
        http_get(port, "/livez"),
        (200, r#"{"status":"shutting_down"}"#.to_owned())
    );
    let exit = child.wait_exit(EXIT);
    assert_eq!(exit.code(), Some(0), "{}", child.output());

    // No request line for a probe; the outage's requests have theirs.
    let lines = child.json();
    let request_lines: Vec<&str> = lines
        .iter()
        .filter(|l| l["target"] == "service_telemetry::instrument")
        .filter_map(|l| l["message"].as_str())
        .collect();
    assert!(
        request_lines
            .iter()
            .any(|m| m.starts_with("POST /outage 200")),
        "{request_lines:?}"
    );
    for probe in ["/readyz", "/livez", "/health"] {
        assert!(
            !request_lines.iter().any(|m| m.contains(probe)),
            "{probe} logged: {request_lines:?}"
        );
    }
    // At the collector: spans for the outage requests, none for a probe, and the probes in
    // the duration histogram.
    collector.wait_for("the /outage span", READY, |r| {
        r["signal"] == "span" && r["service"] == service.as_str() && r["name"] == "POST /outage"
    });
    collector.wait_for("the /readyz duration point", READY, |r| {
        r["signal"] == "metric"
            && r["service"] == service.as_str()
            && r["name"] == "http.server.request.duration"
            && r["attributes"]["http.route"] == "/readyz"
    });
    let probe_spans: Vec<Value> = collector
        .records()
        .into_iter()
        .filter(|r| {
            r["signal"] == "span"
                && r["service"] == service.as_str()
                && ["/readyz", "/livez", "/health"]
                    .iter()
                    .any(|p| r["attributes"]["url.path"] == *p)
        })
        .collect();
    assert!(probe_spans.is_empty(), "probe spans: {probe_spans:#?}");
}

#[test]
fn liveness_fails_once_the_watchdog_fires_and_not_before() {
    // A collector that never answers keeps the watchdog's final flush open for the reserve
    // (2 s of an 8 s budget), the window in which the probe is read.
    let hole = std::net::TcpListener::bind("127.0.0.1:0").expect("bind black hole");
    let endpoint = format!("http://{}", hole.local_addr().expect("address"));
    let _held = std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in hole.incoming().flatten() {
            held.push(stream);
        }
    });
    let (mut child, port) = start_service(&[
        ("OTEL_ENABLED", "true"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("SHUTDOWN_TIMEOUT_MS", "8000"),
    ]);
    wait_for_status(port, "/readyz", 200);
    // A job far longer than the budget: stopping the scheduler hangs in the first step.
    assert_eq!(http_get(port, "/jobs?ms=60000").0, 202);
    child.wait_for_message("job started", READY);
    child.signal(Signal::TERM);
    child.wait_for_message("shutdown step \"stop job scheduler\" started", READY);
    assert_eq!(
        http_get(port, "/livez"),
        (200, r#"{"status":"shutting_down"}"#.to_owned()),
        "a shutdown in progress is alive"
    );
    assert_eq!(http_get(port, "/readyz").0, 503);
    let fired = child.wait_for("the watchdog", EXIT, |l| {
        l["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("shutdown watchdog fired"))
    });
    assert_eq!(fired["hung_step"], "stop job scheduler", "{fired}");
    assert_eq!(
        http_get(port, "/livez"),
        (503, r#"{"status":"wedged"}"#.to_owned()),
        "the watchdog fired: the process is wedged"
    );
    let status = child.wait_exit(EXIT);
    assert_eq!(status.code(), Some(1), "{}", child.output());
}
