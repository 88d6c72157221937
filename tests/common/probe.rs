//! Child-process probes: a test re-runs its own binary with `--exact probe --ignored`, so the
//! child installs the global telemetry in a fresh process with an environment of our choosing.

use std::io::Read;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use service_telemetry::Telemetry;
use service_telemetry::opentelemetry::{KeyValue, global};

pub struct ProbeRun {
    pub status: ExitStatus,
    pub elapsed: Duration,
    /// Every stdout line that parsed as a JSON object (the test harness prints other lines).
    pub json: Vec<Value>,
    pub stdout: String,
    pub stderr: String,
}

impl ProbeRun {
    pub fn line_with_message(&self, message: &str) -> &Value {
        self.json
            .iter()
            .find(|l| l["message"] == message)
            .unwrap_or_else(|| {
                panic!(
                    "no log line {message:?}; stdout:\n{}\nstderr:\n{}",
                    self.stdout, self.stderr
                )
            })
    }

    pub fn warnings(&self) -> Vec<&Value> {
        self.json.iter().filter(|l| l["level"] == "warn").collect()
    }

    /// The crate's warnings about exporters, and the signals they name in order.
    pub fn export_warnings(&self) -> (Vec<&Value>, Vec<&str>) {
        let warnings: Vec<&Value> = self
            .warnings()
            .into_iter()
            .filter(|w| w["target"] == "service_telemetry::export")
            .collect();
        let signals = warnings
            .iter()
            .map(|w| w["signal"].as_str().unwrap_or_default())
            .collect();
        (warnings, signals)
    }

    /// Exit 0 and no panic reported.
    pub fn assert_clean_exit(&self) {
        assert!(
            self.status.success(),
            "exit {:?}\nstdout:\n{}\nstderr:\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
        assert!(
            !self.stderr.contains("panicked"),
            "a panic was reported:\n{}",
            self.stderr
        );
    }
}

/// Runs the `probe` test of the current test binary with `env` (and no inherited telemetry
/// variables); kills it after `limit`.
pub fn run_probe(env: &[(&str, &str)], limit: Duration) -> ProbeRun {
    let exe = std::env::current_exe().expect("current test binary");
    let mut cmd = Command::new(exe);
    cmd.args([
        "probe",
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ]);
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if key.starts_with("OTEL_")
            || key.starts_with("ECS_CONTAINER_METADATA_URI")
            || ["LOG_LEVEL", "RUST_LOG", "KUBERNETES_SERVICE_HOST"].contains(&key.as_ref())
        {
            cmd.env_remove(key.as_ref());
        }
    }
    cmd.envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = cmd.spawn().expect("spawn probe");
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait probe") {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let status = child.wait().expect("wait killed probe");
            let stdout = out_reader.join().unwrap_or_default();
            panic!("probe still running after {limit:?} (killed: {status}); stdout:\n{stdout}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let elapsed = started.elapsed();
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    let json = stdout
        .lines()
        // libtest prints "test probe ... " without a newline before the probe's first line.
        .map(|l| l.strip_prefix("test probe ... ").unwrap_or(l))
        .filter(|l| l.starts_with('{'))
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {l}"))
        })
        .collect();
    ProbeRun {
        status,
        elapsed,
        json,
        stdout,
        stderr,
    }
}

/// The child side: init (timed, logged as `probe-init`), one span with a log line inside, one
/// counter and one histogram, then a bounded shutdown whose outcome is logged as
/// `probe-shutdown`. Driven by `PROBE_RUNTIME` (`none`, `current`, `multi`), `PROBE_TAG`,
/// `PROBE_SHUTDOWN_MS`, `PROBE_DETECTION_ROOT` (the detectors' file-system root) and
/// `PROBE_SERIES` (distinct `probe.series` values on the counter, default 1).
pub fn probe_main() {
    let runtime = std::env::var("PROBE_RUNTIME").unwrap_or_else(|_| "none".into());
    match runtime.as_str() {
        "current" => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("current-thread runtime")
            .block_on(async { probe_body() }),
        "multi" => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("multi-thread runtime")
            .block_on(async { probe_body() }),
        _ => probe_body(),
    }
}

fn probe_body() {
    let tag = std::env::var("PROBE_TAG").unwrap_or_else(|_| "untagged".into());
    let timeout = std::env::var("PROBE_SHUTDOWN_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(Duration::from_secs(10), Duration::from_millis);
    let mut builder = Telemetry::builder()
        .service_name("probe-default")
        .flush_timeout(timeout);
    if let Some(root) = std::env::var_os("PROBE_DETECTION_ROOT") {
        builder = builder.resource_detection_root(root);
    }
    let init_started = Instant::now();
    let telemetry = builder.try_init().expect("first init in this process");
    tracing::info!(
        init_us = init_started.elapsed().as_micros() as u64,
        "probe-init"
    );
    let series: usize = std::env::var("PROBE_SERIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    if std::env::var_os("PROBE_DEBUG_TELEMETRY").is_some() {
        tracing::info!(telemetry = ?telemetry, config = ?telemetry.config(), "probe-debug");
    }
    let counter = global::meter("probe")
        .u64_counter(format!("probe.counter.{tag}"))
        .build();
    {
        let span = tracing::info_span!("probe-span", probe.tag = %tag);
        let _entered = span.enter();
        tracing::info!(probe.tag = %tag, "probe-log-{tag}");
        for i in 0..series {
            let mut attributes = vec![KeyValue::new("probe.tag", tag.clone())];
            if series > 1 {
                attributes.push(KeyValue::new("probe.series", i as i64));
            }
            counter.add(7, &attributes);
        }
        global::meter("probe")
            .f64_histogram(format!("probe.histogram.{tag}"))
            .with_unit("s")
            .build()
            .record(0.25, &[KeyValue::new("probe.tag", tag.clone())]);
    }
    let started = Instant::now();
    let result = telemetry.shutdown(timeout);
    tracing::info!(
        ok = result.is_ok(),
        error = result
            .as_ref()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "probe-shutdown"
    );
}
