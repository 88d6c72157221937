//! The default writer buffers lines and writes them from a background thread; these run a
//! real child process that logs from several threads and then ends in each way a service
//! ends, and check that every line reached stdout whole and in each thread's order.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::probe::{ProbeRun, run_probe};
use service_telemetry::{BufferedWriter, Shutdown, Telemetry};

const THREADS: u64 = 4;
const LINES_PER_THREAD: u64 = 2000;

/// The child: logs `THREADS * LINES_PER_THREAD` numbered lines, then ends as `PROBE_END` says.
#[test]
#[ignore = "child-process entry point of the log delivery tests, run by them"]
fn probe() {
    let end = std::env::var("PROBE_END").unwrap_or_default();
    if end == "panic" {
        // Ends the process from inside the panic hook, as `panic = "abort"` would: the crate's
        // hook (installed by init, in front of this one) is the last code to run.
        std::panic::set_hook(Box::new(|_| std::process::exit(3)));
    }
    // Lines wait in the buffer for up to 10 s, so only the flushes under test can write
    // the last ones out in time.
    let writer = BufferedWriter::builder()
        .write_interval(Duration::from_secs(10))
        .stdout();
    let telemetry = Telemetry::builder()
        .service_name("log-delivery")
        .with_writer(writer)
        .try_init()
        .expect("first init in this process");
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            std::thread::spawn(move || {
                let span = tracing::info_span!("worker", worker = t);
                let _entered = span.enter();
                for n in 0..LINES_PER_THREAD {
                    tracing::info!(thread = t, n, padding = %"x".repeat((n % 200) as usize), "numbered");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("logging thread");
    }
    match end.as_str() {
        "drop" => drop(telemetry),
        "panic" => {
            // Without the guard's drop: only the panic hook's flush can save the lines.
            std::mem::forget(telemetry);
            panic!("probe panics on purpose");
        }
        "watchdog" => {
            let runtime = tokio::runtime::Runtime::new().expect("runtime");
            runtime.block_on(async move {
                let mut shutdown = Shutdown::new(telemetry);
                shutdown.add_step("hangs", std::future::pending::<()>);
                shutdown.handle().trigger("probe");
                shutdown.run().await;
            });
            unreachable!("the watchdog exits the process");
        }
        other => panic!("unknown PROBE_END {other:?}"),
    }
}

/// Every numbered line is present, once, in order per thread; every line parsed as JSON
/// (`run_probe` fails on a torn line).
fn assert_every_line_delivered(run: &ProbeRun) {
    let mut next: HashMap<u64, u64> = HashMap::new();
    for line in run.json.iter().filter(|l| l["message"] == "numbered") {
        let thread = line["thread"].as_u64().expect("thread");
        let n = line["n"].as_u64().expect("n");
        let expected = next.entry(thread).or_insert(0);
        assert_eq!(
            n, *expected,
            "thread {thread}: line {n} where {expected} was due"
        );
        *expected += 1;
        assert_eq!(
            line["padding"].as_str().map(str::len),
            Some((n % 200) as usize)
        );
    }
    for t in 0..THREADS {
        assert_eq!(
            next.get(&t).copied().unwrap_or(0),
            LINES_PER_THREAD,
            "thread {t} lost lines; stderr:\n{}",
            run.stderr
        );
    }
}

fn run(end: &str) -> ProbeRun {
    run_probe(
        &[("PROBE_END", end), ("SHUTDOWN_TIMEOUT_MS", "1000")],
        Duration::from_secs(60),
    )
}

#[test]
fn every_line_is_written_when_the_guard_is_dropped() {
    let run = run("drop");
    run.assert_clean_exit();
    assert_every_line_delivered(&run);
}

#[test]
fn every_line_is_written_when_the_process_panics() {
    let run = run("panic");
    assert_eq!(run.status.code(), Some(3), "stderr:\n{}", run.stderr);
    assert_every_line_delivered(&run);
    let panic = run.line_with_message("panicked: probe panics on purpose");
    assert_eq!(panic["level"], "error");
}

#[test]
fn every_line_is_written_when_the_watchdog_exits() {
    let run = run("watchdog");
    assert_eq!(run.status.code(), Some(1), "stderr:\n{}", run.stderr);
    assert_every_line_delivered(&run);
    let fired = run
        .json
        .iter()
        .find(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("shutdown watchdog fired"))
        })
        .unwrap_or_else(|| panic!("no watchdog line; stdout:\n{}", run.stdout));
    assert_eq!(fired["hung_step"], "hangs");
}
