//! Heap allocations on the caller's thread per log event and per span, for this crate and
//! the usual alternatives, counted by a counting global allocator (alone in this binary).
//! The JSON line path must not allocate at all in steady state; the table is printed with
//! `--nocapture` and quoted in the README.

use std::hint::black_box;
use std::io::Write;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use service_telemetry::{BufferedWriter, LogWriter, Telemetry};
use tracing::dispatcher::Dispatch;
use tracing_subscriber::layer::SubscriberExt;

const N: u64 = 2000;

#[derive(Debug)]
struct Noop;

impl SpanExporter for Noop {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        black_box(batch);
        Ok(())
    }
}

#[derive(Debug)]
struct NoopLogs;

impl opentelemetry_sdk::logs::LogExporter for NoopLogs {
    async fn export(&self, batch: opentelemetry_sdk::logs::LogBatch<'_>) -> OTelSdkResult {
        black_box(batch);
        Ok(())
    }
}

fn event() {
    tracing::info!(
        order_id = black_box(42u64),
        customer = black_box("ada"),
        "order loaded"
    );
}

fn span() {
    let span = tracing::info_span!("request", method = black_box("GET"), route = "/orders/{id}");
    drop(span.enter());
}

/// Allocations per call of `f` on this thread, after a warm-up.
fn per_call(f: impl Fn()) -> f64 {
    for _ in 0..N {
        f();
    }
    let info = allocation_counter::measure(|| {
        for _ in 0..N {
            f();
        }
    });
    info.count_total as f64 / N as f64
}

/// Like [`per_call`], in stretches of 100 with `settle` run (uncounted) after each: the log
/// records' handoff thread catching up, as it does between bursts in a service.
fn per_call_settled(f: impl Fn(), settle: impl Fn()) -> f64 {
    const STRETCH: u64 = 100;
    let mut allocations = 0;
    for measured in [false, true] {
        for _ in 0..N / STRETCH {
            let info = allocation_counter::measure(|| {
                for _ in 0..STRETCH {
                    f();
                }
            });
            settle();
            if measured {
                allocations += info.count_total;
            }
        }
    }
    allocations as f64 / N as f64
}

fn per_event_in_span(dispatch: &Dispatch) -> f64 {
    tracing::dispatcher::with_default(dispatch, || {
        let span = tracing::info_span!("request", method = "GET", route = "/orders/{id}");
        let _entered = span.enter();
        per_call(event)
    })
}

fn per_span(dispatch: &Dispatch) -> f64 {
    tracing::dispatcher::with_default(dispatch, || per_call(span))
}

fn ours(spans: bool, logs: bool) -> service_telemetry::ScopedTelemetry {
    let mut builder = Telemetry::builder()
        .env_lookup(|_| None)
        .without_panic_hook()
        .with_writer(
            BufferedWriter::builder()
                .write_interval(Duration::from_millis(1))
                .to(std::io::sink()),
        );
    if spans {
        builder = builder.with_span_exporter(Noop);
    }
    if logs {
        builder = builder.with_log_exporter(NoopLogs);
    }
    builder.set_default()
}

fn current() -> Dispatch {
    tracing::dispatcher::get_default(Clone::clone)
}

#[test]
fn allocations_per_log_event_and_per_span() {
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(Noop)
        .build();
    let fmt_json = Dispatch::new(
        tracing_subscriber::fmt()
            .json()
            .with_writer(std::io::sink)
            .finish(),
    );
    let otel_defaults = Dispatch::new(
        tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("t"))),
    );
    let json_subscriber = Dispatch::new(
        tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("t")))
            .with(
                json_subscriber::fmt::layer()
                    .with_opentelemetry_ids(true)
                    .with_writer(std::io::sink),
            ),
    );
    let fmt_event = per_event_in_span(&fmt_json);
    let json_subscriber_event = per_event_in_span(&json_subscriber);
    let otel_span = per_span(&otel_defaults);

    let (off_event, off_span) = {
        let _scoped = ours(false, false);
        (per_event_in_span(&current()), per_span(&current()))
    };
    let (traces_event, traces_span) = {
        let _scoped = ours(true, false);
        (per_event_in_span(&current()), per_span(&current()))
    };
    let logs_event = {
        let scoped = ours(true, true);
        let span = tracing::info_span!("request", method = "GET", route = "/orders/{id}");
        let _entered = span.enter();
        per_call_settled(event, || {
            let _ = scoped.telemetry().flush();
        })
    };
    let _ = provider.shutdown();

    println!("| variant | allocations per log event | per span |");
    println!("|---|---|---|");
    println!("| tracing-subscriber fmt().json() | {fmt_event:.1} | |");
    println!("| json-subscriber + OTel ids | {json_subscriber_event:.1} | |");
    println!("| tracing-opentelemetry defaults | | {otel_span:.1} |");
    println!("| service-telemetry, export off | {off_event:.1} | {off_span:.1} |");
    println!("| service-telemetry, traces exported | {traces_event:.1} | {traces_span:.1} |");
    println!("| service-telemetry, traces and logs exported | {logs_event:.1} | |");

    // The counter sees the alternatives' allocations, so a zero below is a real zero.
    assert!(
        fmt_event >= 1.0,
        "the counter saw no allocation in fmt().json()"
    );
    assert_eq!(off_event, 0.0, "a log line allocated with export off");
    assert_eq!(
        traces_event, 0.0,
        "a log line allocated with traces exported"
    );
    assert_eq!(
        logs_event, 0.0,
        "an event exported as a log record allocated on the caller's thread"
    );
}

/// A log destination that can be made to hang, like a pipe nobody reads, and that tells
/// when the writer thread is stuck in it.
#[derive(Clone, Default)]
struct StallingSink {
    state: Arc<(Mutex<SinkState>, Condvar)>,
}

#[derive(Default)]
struct SinkState {
    stalled: bool,
    writer_waiting: bool,
    bytes: usize,
}

impl StallingSink {
    fn set_stalled(&self, stalled: bool) {
        self.state.0.lock().unwrap().stalled = stalled;
        self.state.1.notify_all();
    }

    fn wait_until_writer_is_stuck(&self) {
        let (state, changed) = &*self.state;
        let state = state.lock().unwrap();
        let (state, _) = changed
            .wait_timeout_while(state, Duration::from_secs(10), |s| !s.writer_waiting)
            .unwrap();
        assert!(
            state.writer_waiting,
            "the writer thread never reached the sink"
        );
    }

    fn bytes(&self) -> usize {
        self.state.0.lock().unwrap().bytes
    }
}

impl Write for StallingSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let (state, changed) = &*self.state;
        let mut state = state.lock().unwrap();
        state.writer_waiting = true;
        changed.notify_all();
        while state.stalled {
            state = changed.wait(state).unwrap();
        }
        state.writer_waiting = false;
        state.bytes += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// While the writer thread is descheduled or stuck on its destination, lines pile up in the
/// buffer far beyond the trickle that came before; the caller must still not allocate.
#[test]
fn lines_piling_up_behind_a_stuck_writer_thread_do_not_allocate() {
    let sink = StallingSink::default();
    let writer = BufferedWriter::builder()
        .capacity(256 << 10)
        .write_interval(Duration::from_millis(1))
        .to(sink.clone());
    let mut line = [b'x'; 200];
    line[199] = b'\n';
    for _ in 0..10 {
        writer.write_line(&line);
        writer.flush();
    }
    sink.set_stalled(true);
    writer.write_line(&line);
    sink.wait_until_writer_is_stuck();

    let piled_up = 1000;
    let info = allocation_counter::measure(|| {
        for _ in 0..piled_up {
            writer.write_line(black_box(&line));
        }
    });
    sink.set_stalled(false);
    writer.flush();

    assert_eq!(
        info.count_total, 0,
        "appending behind a stuck writer thread allocated"
    );
    assert_eq!(writer.dropped_lines(), 0);
    assert_eq!(sink.bytes(), (11 + piled_up) * line.len());
}
