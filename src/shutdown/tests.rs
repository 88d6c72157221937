use std::future::pending;
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::*;
use crate::config::ShutdownConfig;

struct Harness {
    shutdown: Shutdown,
    signals: SignalSender,
    exits: Receiver<i32>,
}

fn harness(budget_ms: u64, drain_ms: u64) -> Harness {
    harness_with(budget_ms, drain_ms, |b| b)
}

fn harness_with(
    budget_ms: u64,
    drain_ms: u64,
    configure: impl FnOnce(ShutdownBuilder) -> ShutdownBuilder,
) -> Harness {
    let (source, signals) = SignalSource::manual();
    let (tx, exits) = channel();
    let builder = Shutdown::builder()
        .config(ShutdownConfig::new(
            Duration::from_millis(budget_ms),
            Duration::from_millis(drain_ms),
        ))
        .signals(source)
        .exit_with(move |code| {
            let _ = tx.send(code);
        });
    Harness {
        shutdown: configure(builder).build(),
        signals,
        exits,
    }
}

/// A runtime with neither the timer nor the IO driver: the sequence must need neither.
fn bare_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
}

fn recorder() -> (Arc<Mutex<Vec<&'static str>>>, impl Fn(&'static str) + Clone) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let push = {
        let log = log.clone();
        move |what| log.lock().unwrap().push(what)
    };
    (log, push)
}

#[test]
fn steps_run_in_registration_order_and_the_report_lists_each() {
    let Harness {
        mut shutdown,
        signals,
        exits,
    } = harness(5_000, 0);
    let (log, push) = recorder();
    for name in ["first", "second", "third"] {
        let push = push.clone();
        shutdown.add_step(name, move || async move { push(name) });
    }
    signals.send(ShutdownSignal::Terminate);
    let report = bare_runtime().block_on(shutdown.run());
    assert_eq!(*log.lock().unwrap(), ["first", "second", "third"]);
    assert_eq!(report.trigger, "SIGTERM");
    assert_eq!(report.exit_code, 0);
    let names: Vec<_> = report.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["first", "second", "third"]);
    assert!(
        report
            .steps
            .iter()
            .all(|s| s.outcome == StepOutcome::Completed)
    );
    assert_eq!(exits.try_recv(), Ok(0));
    assert!(exits.try_recv().is_err(), "exit called once");
}

#[test]
fn errors_and_panics_are_isolated_with_their_messages() {
    let Harness {
        mut shutdown,
        signals,
        exits,
    } = harness(5_000, 0);
    let (log, push) = recorder();
    shutdown.add_step("fails", || async {
        Err::<(), _>(std::io::Error::other("database said no"))
    });
    shutdown.add_step("panics", || async {
        if true {
            panic!("step exploded");
        }
    });
    shutdown.add_step(
        "panics while building its future",
        || -> std::future::Ready<()> { panic!("before the first poll") },
    );
    shutdown.add(Step::blocking(
        "blocking panics",
        || -> Result<(), String> { panic!("blocking {}", "boom") },
    ));
    shutdown.add(Step::blocking("blocking fails", || {
        Err::<(), _>("pool busy")
    }));
    let after = push.clone();
    shutdown.add_step("after", move || async move { after("after") });
    signals.send(ShutdownSignal::Interrupt);
    let report = bare_runtime().block_on(shutdown.run());
    let outcomes: Vec<_> = report.steps.iter().map(|s| s.outcome.clone()).collect();
    assert_eq!(
        outcomes,
        [
            StepOutcome::Failed("database said no".into()),
            StepOutcome::Panicked("step exploded".into()),
            StepOutcome::Panicked("before the first poll".into()),
            StepOutcome::Panicked("blocking boom".into()),
            StepOutcome::Failed("pool busy".into()),
            StepOutcome::Completed,
        ]
    );
    assert_eq!(*log.lock().unwrap(), ["after"]);
    assert_eq!(report.trigger, "SIGINT");
    assert_eq!(report.exit_code, 0, "a failed step is reported, not fatal");
    assert_eq!(exits.try_recv(), Ok(0));
}

#[test]
fn a_step_past_its_own_timeout_is_abandoned_and_the_next_runs() {
    let Harness {
        mut shutdown,
        signals,
        exits,
    } = harness(10_000, 0);
    let (log, push) = recorder();
    shutdown.add(Step::new("hangs", pending::<()>).timeout(Duration::from_millis(100)));
    shutdown.add(
        Step::blocking("blocks", || std::thread::sleep(Duration::from_secs(30)))
            .timeout(Duration::from_millis(100)),
    );
    let after = push.clone();
    shutdown.add_step("after", move || async move { after("after") });
    signals.send(ShutdownSignal::Terminate);
    let started = Instant::now();
    let report = bare_runtime().block_on(shutdown.run());
    let elapsed = started.elapsed();
    assert_eq!(
        report.steps[0].outcome,
        StepOutcome::TimedOut(Duration::from_millis(100))
    );
    assert_eq!(
        report.steps[1].outcome,
        StepOutcome::TimedOut(Duration::from_millis(100))
    );
    assert!(report.steps[0].duration >= Duration::from_millis(100));
    assert_eq!(*log.lock().unwrap(), ["after"]);
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
    assert_eq!(exits.try_recv(), Ok(0));
}

#[test]
fn health_flips_in_the_signal_path_and_the_token_after_the_drain_delay() {
    let Harness {
        mut shutdown,
        signals,
        exits: _exits,
    } = harness(5_000, 300);
    let health = shutdown.health();
    let token = shutdown.token();
    let handle = shutdown.handle();
    let seen = Arc::new(Mutex::new(None));
    let record = seen.clone();
    let step_token = token.clone();
    shutdown.add_step("first", move || async move {
        *record.lock().unwrap() = Some(step_token.is_cancelled());
    });
    assert_eq!(health.status(), HealthStatus::Starting);
    assert!(!handle.is_triggered());
    let sent = Instant::now();
    signals.send(ShutdownSignal::Terminate);
    // No runtime has polled anything yet: the flip happened inside `send`.
    assert_eq!(health.status(), HealthStatus::ShuttingDown);
    assert!(handle.is_triggered());
    assert!(
        !token.is_cancelled(),
        "servers keep serving during the drain delay"
    );
    let report = bare_runtime().block_on(shutdown.run());
    assert!(sent.elapsed() >= Duration::from_millis(300));
    assert!(token.is_cancelled());
    assert_eq!(*seen.lock().unwrap(), Some(true));
    assert_eq!(report.exit_code, 0);
}

#[test]
fn watchdog_exits_1_when_a_step_blocks_the_only_worker() {
    let Harness {
        mut shutdown,
        signals,
        exits,
    } = harness_with(600, 0, |b| b.telemetry_reserve(Duration::from_millis(200)));
    shutdown.add_step("ok", || async {});
    // Blocks the current-thread runtime's only thread: no async timer could fire.
    shutdown.add_step("stuck", || async {
        std::thread::sleep(Duration::from_secs(60))
    });
    shutdown.add_step("never", || async {});
    let handle = shutdown.handle();
    std::thread::spawn(move || bare_runtime().block_on(shutdown.run()));
    let sent = Instant::now();
    signals.send(ShutdownSignal::Terminate);
    let code = exits
        .recv_timeout(Duration::from_secs(10))
        .expect("the watchdog called exit");
    let elapsed = sent.elapsed();
    assert_eq!(code, 1);
    assert_eq!(
        handle.health().liveness().http_status(),
        http::StatusCode::SERVICE_UNAVAILABLE,
        "wedged: liveness fails"
    );
    // Steps get the budget minus the reserve (400 ms); the exit comes before the budget ends.
    assert!(elapsed >= Duration::from_millis(380), "{elapsed:?}");
    assert!(
        elapsed < Duration::from_millis(600) + Duration::from_secs(1),
        "{elapsed:?}"
    );
    assert!(handle.is_triggered());
    signals.send(ShutdownSignal::Terminate);
    assert!(
        exits.recv_timeout(Duration::from_millis(200)).is_err(),
        "a signal after the exit claim does not exit again"
    );
}

#[test]
fn watchdog_names_a_hung_async_step_in_the_partial_report() {
    let Harness {
        mut shutdown,
        signals,
        exits,
    } = harness_with(300, 0, |b| b.telemetry_reserve(Duration::from_millis(100)));
    shutdown.add_step("done", || async {});
    shutdown.add_step("fails", || async { Err::<(), _>("nope") });
    shutdown.add_step("hangs", pending::<()>);
    shutdown.add_step("later", || async {});
    let shared = shutdown.shared.clone();
    std::thread::spawn(move || bare_runtime().block_on(shutdown.run()));
    signals.send(ShutdownSignal::Terminate);
    assert_eq!(exits.recv_timeout(Duration::from_secs(10)), Ok(1));
    let report = shared.partial_report();
    let outcomes: Vec<_> = report
        .steps
        .iter()
        .map(|s| (s.name.as_str(), s.outcome.clone()))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("done", StepOutcome::Completed),
            ("fails", StepOutcome::Failed("nope".into())),
            ("hangs", StepOutcome::NotStarted),
            ("later", StepOutcome::NotStarted),
        ]
    );
    assert_eq!(report.exit_code, 1);
}

#[test]
fn second_signal_forces_exit_1_at_once() {
    let Harness {
        mut shutdown,
        signals,
        exits,
    } = harness(30_000, 0);
    let (started_tx, started_rx) = channel();
    shutdown.add_step("slow", move || async move {
        let _ = started_tx.send(());
        pending::<()>().await
    });
    std::thread::spawn(move || bare_runtime().block_on(shutdown.run()));
    signals.send(ShutdownSignal::Terminate);
    started_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("step started");
    let sent = Instant::now();
    signals.send(ShutdownSignal::Interrupt);
    assert_eq!(exits.try_recv(), Ok(1), "exit is called on the signal path");
    assert!(sent.elapsed() < Duration::from_millis(500));
}

#[test]
fn second_signal_is_ignored_when_so_configured() {
    let Harness {
        mut shutdown,
        signals,
        exits,
    } = harness_with(30_000, 0, |b| b.second_signal_forces_exit(false));
    let resend = signals.clone();
    shutdown.add_step("supervisor resends", move || async move {
        resend.send(ShutdownSignal::Terminate);
    });
    signals.send(ShutdownSignal::Terminate);
    let report = bare_runtime().block_on(shutdown.run());
    assert_eq!(report.exit_code, 0);
    assert_eq!(exits.try_recv(), Ok(0));
}

#[test]
fn programmatic_trigger_runs_the_same_sequence() {
    let Harness {
        mut shutdown,
        signals: _signals,
        exits,
    } = harness(5_000, 0);
    let handle = shutdown.handle();
    shutdown.add_step("only", || async {});
    handle.trigger("fatal: lost the database");
    handle.trigger("a later trigger is ignored");
    let report = bare_runtime().block_on(shutdown.run());
    assert_eq!(report.trigger, "fatal: lost the database");
    assert_eq!(report.steps.len(), 1);
    assert_eq!(exits.try_recv(), Ok(0));
    assert!(exits.try_recv().is_err());
}

#[test]
fn fail_runs_the_sequence_and_exits_1() {
    let Harness {
        mut shutdown,
        signals: _signals,
        exits,
    } = harness(5_000, 0);
    let (log, push) = recorder();
    shutdown.add_step("cleanup", move || async move { push("cleanup") });
    shutdown.handle().fail("pub/sub connection lost");
    let report = bare_runtime().block_on(shutdown.run());
    assert_eq!(*log.lock().unwrap(), ["cleanup"]);
    assert_eq!(report.trigger, "pub/sub connection lost");
    assert_eq!(report.exit_code, 1);
    assert_eq!(exits.try_recv(), Ok(1));
}

#[test]
fn a_service_is_stopped_by_its_step_and_drains_first() {
    let Harness {
        mut shutdown,
        signals,
        exits: _exits,
    } = harness(5_000, 0);
    let (log, push) = recorder();
    let runtime = bare_runtime();
    let first = push.clone();
    shutdown.add_step("before", move || async move { first("before") });
    let drained = push.clone();
    let _guard = runtime.enter();
    shutdown.spawn_service("server", move |stop| async move {
        stop.cancelled().await;
        drained("server drained");
        Ok::<_, std::io::Error>(())
    });
    let after = push.clone();
    shutdown.add_step("after", move || async move { after("after") });
    signals.send(ShutdownSignal::Terminate);
    let report = runtime.block_on(shutdown.run());
    assert_eq!(*log.lock().unwrap(), ["before", "server drained", "after"]);
    assert!(report.steps.iter().all(|s| s.outcome.is_ok()), "{report:?}");
}

#[test]
fn a_service_that_fails_early_triggers_shutdown_with_its_error() {
    let Harness {
        mut shutdown,
        signals: _signals,
        exits,
    } = harness(5_000, 0);
    let runtime = bare_runtime();
    let _guard = runtime.enter();
    shutdown.spawn_service("server", |_stop| async {
        Err::<(), _>(std::io::Error::other("address in use"))
    });
    let report = runtime.block_on(shutdown.run());
    assert_eq!(report.trigger, "service \"server\" failed: address in use");
    assert_eq!(
        report.steps[0].outcome,
        StepOutcome::Failed("address in use".into())
    );
    assert_eq!(report.exit_code, 1, "a dead service is a failure");
    assert_eq!(exits.try_recv(), Ok(1));
}

#[test]
fn spawn_service_outside_a_runtime_reports_instead_of_panicking() {
    let Harness {
        mut shutdown,
        signals,
        exits: _exits,
    } = harness(5_000, 0);
    shutdown.spawn_service("server", |_stop| async {});
    signals.send(ShutdownSignal::Terminate);
    let report = bare_runtime().block_on(shutdown.run());
    assert!(
        matches!(&report.steps[0].outcome, StepOutcome::Failed(m) if m.contains("outside a Tokio runtime")),
        "{report:?}"
    );
}

#[test]
fn step_lines_name_the_step_and_keep_the_message() {
    let writer = crate::MemoryWriter::default();
    let _telemetry = crate::Telemetry::builder()
        .with_writer(writer.clone())
        .env_lookup(|_| None)
        .set_default();
    let Harness {
        mut shutdown,
        signals,
        exits: _exits,
    } = harness(5_000, 0);
    shutdown.add_step("flags", || async {
        Err::<(), _>("flag service unreachable")
    });
    shutdown.add_step("pool", || async {});
    signals.send(ShutdownSignal::Terminate);
    bare_runtime().block_on(shutdown.run());
    let lines = writer.json_lines();
    let failed = lines
        .iter()
        .find(|l| l["step"] == "flags" && l["level"] == "warn")
        .unwrap_or_else(|| panic!("a warn line for the failed step in {lines:#?}"));
    assert_eq!(failed["outcome"], "failed: flag service unreachable");
    let report = lines
        .iter()
        .find(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("shutdown complete"))
        })
        .expect("report line");
    assert_eq!(report["level"], "info");
    assert_eq!(report["target"], TARGET);
    assert_eq!(
        report["steps"],
        "1. flags: failed: flag service unreachable (0 ms); 2. pool: ok (0 ms)"
    );
    assert_eq!(report["exit_code"], 0);
}

#[test]
fn a_signal_still_ends_the_process_when_run_is_never_awaited() {
    let Harness {
        mut shutdown,
        signals,
        exits,
    } = harness_with(300, 0, |b| b.telemetry_reserve(Duration::from_millis(100)));
    shutdown.add_step("never", || async {});
    let shared = shutdown.shared.clone();
    drop(shutdown);
    signals.send(ShutdownSignal::Terminate);
    assert_eq!(exits.recv_timeout(Duration::from_secs(10)), Ok(1));
    let report = shared.partial_report();
    assert_eq!(report.steps[0].outcome, StepOutcome::NotStarted);
}

#[test]
fn dropping_a_coordinator_that_never_ran_closes_its_telemetry_like_a_guard() {
    let telemetry = crate::Telemetry::builder()
        .env_lookup(|_| None)
        .build_without_installing();
    let shutdown = Shutdown::builder()
        .telemetry(telemetry)
        .signals(SignalSource::none())
        .build();
    let shared = shutdown.shared.clone();
    assert!(!shared.telemetry.as_ref().unwrap().is_shut_down());
    drop(shutdown);
    assert!(shared.telemetry.as_ref().unwrap().is_shut_down());
}

#[test]
fn run_marks_the_health_ready_unless_told_to_leave_it_to_the_service() {
    for automatic in [true, false] {
        let Harness {
            shutdown,
            signals,
            exits: _exits,
        } = harness_with(2_000, 0, |b| b.ready_when_running(automatic));
        let health = shutdown.health();
        assert_eq!(health.status(), HealthStatus::Starting);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let running = runtime.spawn(shutdown.run());
        let deadline = Instant::now() + Duration::from_secs(5);
        while automatic && health.status() != HealthStatus::Ready && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        if automatic {
            assert_eq!(health.status(), HealthStatus::Ready);
        } else {
            std::thread::sleep(Duration::from_millis(100));
            assert_eq!(
                health.status(),
                HealthStatus::Starting,
                "left to the service"
            );
            health.set_ready();
            assert_eq!(health.status(), HealthStatus::Ready);
        }
        signals.send(ShutdownSignal::Terminate);
        assert_eq!(health.status(), HealthStatus::ShuttingDown);
        let report = runtime.block_on(running).expect("run");
        assert_eq!(report.exit_code, 0);
    }
}
