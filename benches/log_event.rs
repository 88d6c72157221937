//! One `info!` with two fields inside an entered span with two fields; lines formatted in
//! full and discarded. Every alternative runs in the same process and the same group:
//!
//! - `tracing-subscriber` `fmt().json()`, the baseline (no trace ids);
//! - the same plus the `tracing-opentelemetry` layer (ids exist but are not printed);
//! - `json-subscriber` with OpenTelemetry ids, the usual way to get correlated JSON;
//! - this crate with export off (ids still minted and printed), with traces exported, and
//!   with traces and log records exported (no-op exporters behind the real batch processors).
//!
//! The variant that exports log records is timed in stretches the queue can hold, with the
//! exporter caught up (untimed) in between, and fails the run if any record was dropped.
//!
//! Run with `cargo bench --bench log_event`.

mod common;

use std::hint::black_box;

use common::{Export, Tally, bench_counted, ours};
use criterion::{Criterion, criterion_group, criterion_main};
use opentelemetry::trace::TracerProvider as _;
use tracing::dispatcher::Dispatch;
use tracing_subscriber::layer::SubscriberExt;

/// Times one event under `dispatch`, letting the exporter catch up (`settle`) untimed between
/// stretches; returns how many events were written.
fn event_in_span(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    dispatch: &Dispatch,
    settle: &dyn Fn(),
) -> u64 {
    tracing::dispatcher::with_default(dispatch, || {
        let span = tracing::info_span!("request", method = "GET", route = "/orders/{id}");
        let _entered = span.enter();
        bench_counted(group, name, settle, || {
            tracing::info!(
                order_id = black_box(42u64),
                customer = black_box("ada"),
                "order loaded"
            )
        })
    })
}

fn ours_variant(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    export: Export,
) {
    let scoped = ours(export, &[]);
    let dispatch = tracing::dispatcher::get_default(Clone::clone);
    let settle = || {
        let _ = scoped.telemetry().flush();
    };
    let events = event_in_span(group, name, &dispatch, &settle);
    let _ = scoped.telemetry().flush();
    let stats = scoped.telemetry().export_stats();
    eprintln!(
        "{name}: the crate's ledger: spans exported {} dropped {}, log records exported {} dropped {}",
        stats.traces.exported, stats.traces.dropped, stats.logs.exported, stats.logs.dropped
    );
    if matches!(export, Export::TracesAndLogs) {
        // Every event is also a log record: all of them must have reached the exporter.
        Tally {
            variant: name,
            what: "log records",
            created: events,
            exported: stats.logs.exported,
        }
        .check(true);
    } else {
        assert_eq!(
            stats.logs.exported, 0,
            "{name}: no log records without a log exporter"
        );
        eprintln!("{name}: {events} events, none exported as records (by design)");
    }
    drop(scoped);
}

fn log_event(c: &mut Criterion) {
    let mut group = c.benchmark_group("log_event");

    let fmt_json = Dispatch::new(
        tracing_subscriber::fmt()
            .json()
            .with_writer(std::io::sink)
            .finish(),
    );
    event_in_span(&mut group, "tracing_subscriber_fmt_json", &fmt_json, &|| ());

    let (provider, _) = common::sdk_provider(opentelemetry_sdk::trace::Sampler::AlwaysOn);
    let fmt_json_otel = Dispatch::new(
        tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("bench")))
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::sink),
            ),
    );
    event_in_span(
        &mut group,
        "fmt_json_plus_tracing_opentelemetry",
        &fmt_json_otel,
        &|| (),
    );

    let json_subscriber_ids = Dispatch::new(
        tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("bench")))
            .with(
                json_subscriber::fmt::layer()
                    .with_opentelemetry_ids(true)
                    .with_writer(std::io::sink),
            ),
    );
    event_in_span(
        &mut group,
        "json_subscriber_with_otel_ids",
        &json_subscriber_ids,
        &|| (),
    );

    ours_variant(&mut group, "service_telemetry_export_off", Export::Off);
    ours_variant(
        &mut group,
        "service_telemetry_traces_exported",
        Export::Traces,
    );
    ours_variant(
        &mut group,
        "service_telemetry_traces_and_logs_exported",
        Export::TracesAndLogs,
    );
    group.finish();
    let _ = provider.shutdown();
}

/// A sink that never accepts a byte, as a pipe nobody reads.
struct Stalled;

impl std::io::Write for Stalled {
    fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
        std::thread::park();
        Ok(0)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The cost on the caller's thread of handing one finished 300-byte line to the writer:
/// a direct `write` per line (what `Stdout` and `fmt().json()` do) against the buffered
/// writer, both to `/dev/null`, and the buffered writer whose destination has stalled (every
/// line dropped and counted).
fn log_writer(c: &mut Criterion) {
    use service_telemetry::{BufferedWriter, LogWriter};
    use std::io::Write as _;

    let mut line = "x".repeat(299).into_bytes();
    line.push(b'\n');
    let mut group = c.benchmark_group("log_writer");
    let null = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/null")
        .expect("/dev/null");
    group.bench_function("direct_write_per_line", |b| {
        b.iter(|| (&null).write_all(black_box(&line)))
    });
    let buffered = BufferedWriter::builder().to(null.try_clone().expect("dup /dev/null"));
    group.bench_function("buffered_writer", |b| {
        b.iter(|| buffered.write_line(black_box(&line)))
    });
    eprintln!(
        "buffered_writer: {} lines dropped",
        buffered.dropped_lines()
    );
    let stalled = BufferedWriter::builder().to(Stalled);
    group.bench_function("buffered_writer_stalled_drop_and_count", |b| {
        b.iter(|| stalled.write_line(black_box(&line)))
    });
    eprintln!(
        "buffered_writer_stalled_drop_and_count: {} lines dropped",
        stalled.dropped_lines()
    );
    group.finish();
    // The stalled writer's thread never returns; leave it to the process exit.
    std::mem::forget(stalled);
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50).measurement_time(std::time::Duration::from_secs(4));
    targets = log_event, log_writer
}
criterion_main!(benches);
