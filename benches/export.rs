//! Startup, shutdown flush and sustained export against the real test collector (rotel on
//! loopback, installed by `scripts/install-test-collector.sh`; `ROTEL_BIN` overrides the path).
//! Each group runs the common alternative in the same process: a hand-written
//! opentelemetry-otlp + tracing-opentelemetry + `fmt().json()` setup, as in their docs.
//!
//! - `init`: time to build and install the whole pipeline (export to a live collector), also
//!   with every resource detector off, which gives the detectors' share.
//! - `flush_2000_spans`: time for a flush to deliver 2000 queued spans.
//! - `export_throughput`: spans per second sustained to the collector with the default queue,
//!   the producer backing off when the queue is three quarters full, so nothing is dropped;
//!   after each variant it prints what was created, exported and dropped, and the CPU per
//!   exported span over the timed iterations (every thread of this process, from
//!   `/proc/self/task/*/schedstat`), split into the producing thread and the rest (the batch
//!   processor, the encoding, the HTTP client or tonic).
//!
//! Run with `cargo bench --bench export`. Without the collector installed it says so and
//! measures nothing.

mod common;

use std::cell::Cell;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::Discard;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use opentelemetry::trace::TracerProvider as _;
use service_telemetry::{ScopedTelemetry, Telemetry};
use tracing::dispatcher::Dispatch;
use tracing_subscriber::layer::SubscriberExt;

struct Collector {
    child: Child,
    grpc: u16,
    http: u16,
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free loopback port")
}

fn start_collector() -> Option<Collector> {
    let agent = std::env::var_os("ROTEL_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join(".tools/rotel-venv/lib/python3.11/site-packages/rotel/rotel-agent")
        });
    if !agent.exists() {
        eprintln!(
            "export benches skipped: no collector at {} (run scripts/install-test-collector.sh)",
            agent.display()
        );
        return None;
    }
    let (grpc, http) = (free_port(), free_port());
    let child = Command::new(agent)
        .args(["start", "--exporter", "blackhole"])
        .args(["--otlp-grpc-endpoint", &format!("127.0.0.1:{grpc}")])
        .args(["--otlp-http-endpoint", &format!("127.0.0.1:{http}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let collector = Collector { child, grpc, http };
    let deadline = Instant::now() + Duration::from_secs(15);
    for port in [grpc, http] {
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                eprintln!("export benches skipped: the collector did not start");
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    Some(collector)
}

#[derive(Clone, Copy)]
enum Transport {
    Grpc,
    Http,
}

impl Transport {
    fn name(self) -> &'static str {
        match self {
            Transport::Grpc => "grpc",
            Transport::Http => "http",
        }
    }

    fn port(self, c: &Collector) -> u16 {
        match self {
            Transport::Grpc => c.grpc,
            Transport::Http => c.http,
        }
    }
}

/// This crate, spans only, to the collector.
fn ours(collector: &Collector, transport: Transport) -> ScopedTelemetry {
    ours_with(collector, transport, &[])
}

/// [`ours`] with more variables.
fn ours_with(
    collector: &Collector,
    transport: Transport,
    extra: &[(&'static str, &str)],
) -> ScopedTelemetry {
    ours_built(collector, transport, extra, |builder| builder)
}

/// [`ours_with`], the builder further configured by `configure`.
fn ours_built(
    collector: &Collector,
    transport: Transport,
    extra: &[(&'static str, &str)],
    configure: Configure,
) -> ScopedTelemetry {
    let mut env: Vec<(&'static str, String)> = vec![
        ("OTEL_ENABLED", "true".into()),
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://127.0.0.1:{}", transport.port(collector)),
        ),
        (
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            match transport {
                Transport::Grpc => "grpc",
                Transport::Http => "http/protobuf",
            }
            .into(),
        ),
        ("OTEL_METRICS_EXPORTER", "none".into()),
        ("OTEL_LOGS_EXPORTER", "none".into()),
    ];
    env.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
    configure(
        Telemetry::builder()
            .with_writer(Discard)
            .without_panic_hook()
            .env_lookup(move |k| env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())),
    )
    .set_default()
}

/// The setup the opentelemetry-otlp and tracing-opentelemetry docs show.
struct HandWritten {
    provider: opentelemetry_sdk::trace::SdkTracerProvider,
    dispatch: Dispatch,
    /// Spans its exporter delivered (the SDK alone keeps no count).
    exported: Arc<AtomicU64>,
    _runtime: Option<tokio::runtime::Runtime>,
}

/// opentelemetry-otlp's exporter, counting what it delivered; the count is all the bench adds.
#[derive(Debug)]
struct Counted<E> {
    inner: E,
    exported: Arc<AtomicU64>,
}

impl<E: opentelemetry_sdk::trace::SpanExporter> opentelemetry_sdk::trace::SpanExporter
    for Counted<E>
{
    async fn export(
        &self,
        batch: Vec<opentelemetry_sdk::trace::SpanData>,
    ) -> opentelemetry_sdk::error::OTelSdkResult {
        let n = batch.len() as u64;
        let result = self.inner.export(batch).await;
        if result.is_ok() {
            self.exported.fetch_add(n, Ordering::Relaxed);
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> opentelemetry_sdk::error::OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.inner.set_resource(resource)
    }
}

fn hand_written(collector: &Collector, transport: Transport) -> HandWritten {
    use opentelemetry_otlp::WithExportConfig as _;
    let endpoint = format!("http://127.0.0.1:{}", transport.port(collector));
    let (exporter, runtime) = match transport {
        Transport::Grpc => {
            // tonic needs a Tokio reactor when the exporter is built.
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("runtime");
            let exporter = {
                let _entered = rt.enter();
                opentelemetry_otlp::SpanExporter::builder()
                    .with_tonic()
                    .with_endpoint(endpoint)
                    .build()
                    .expect("exporter")
            };
            (exporter, Some(rt))
        }
        Transport::Http => (
            opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_endpoint(format!("{endpoint}/v1/traces"))
                .build()
                .expect("exporter"),
            None,
        ),
    };
    let exported = Arc::new(AtomicU64::new(0));
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(Counted {
            inner: exporter,
            exported: exported.clone(),
        })
        .build();
    let dispatch = Dispatch::new(
        tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("bench")))
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::sink),
            ),
    );
    HandWritten {
        provider,
        dispatch,
        exported,
        _runtime: runtime,
    }
}

fn spans(n: usize) {
    for i in 0..n {
        let span = tracing::info_span!("request", method = "GET", n = i as u64);
        drop(span.enter());
    }
}

/// CPU time of every thread of this process and of the calling thread, from the scheduler's
/// per-thread accounting (nanoseconds, where `/proc/self/stat` counts 10 ms ticks).
fn thread_cpu() -> (Duration, Duration) {
    let run_time = |path: std::path::PathBuf| -> u64 {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    let all = std::fs::read_dir("/proc/self/task")
        .map(|tasks| {
            tasks
                .flatten()
                .map(|task| run_time(task.path().join("schedstat")))
                .sum()
        })
        .unwrap_or(0);
    (Duration::from_nanos(all), own_cpu())
}

fn own_cpu() -> Duration {
    let run_time = std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    Duration::from_nanos(run_time)
}

const BATCH: u64 = 20_000;

/// Builder options of a variant of its own.
type Configure = fn(service_telemetry::TelemetryBuilder) -> service_telemetry::TelemetryBuilder;

/// What a variant's pipeline tells the producer.
struct Pipeline<'a> {
    /// Spans delivered so far.
    exported: &'a dyn Fn() -> u64,
    /// Spans waiting in the queue, given how many were created.
    queued: &'a dyn Fn(u64) -> u64,
    capacity: u64,
    /// Exports what is queued now, so that an iteration's last partial batch does not wait
    /// for the schedule delay (5 s).
    flush: &'a dyn Fn(),
}

/// Totals over the timed iterations only (criterion's warm-up and analysis left out).
#[derive(Default, Clone, Copy)]
struct Timed {
    created: u64,
    exported: u64,
    all_threads: Duration,
    /// The producing thread's CPU while creating spans.
    creating: Duration,
    /// The producing thread's CPU in all (creating, and pacing itself to the queue).
    producer: Duration,
}

/// Creates `iters * BATCH` spans on this thread, pausing while the queue is three quarters
/// full so that nothing is dropped, and waits until they are delivered.
fn sustain(iters: u64, pipeline: &Pipeline<'_>, timed: &Cell<Timed>) -> Duration {
    let (all_before, mine_before) = thread_cpu();
    let exported_before = (pipeline.exported)();
    let started = Instant::now();
    let mut totals = timed.get();
    let target = exported_before + iters * BATCH;
    let mut created = 0;
    let mut creating = Duration::ZERO;
    while created < iters * BATCH {
        let before = own_cpu();
        spans(64);
        creating += own_cpu().saturating_sub(before);
        created += 64;
        while (pipeline.queued)(totals.created + created) > pipeline.capacity * 3 / 4 {
            std::thread::sleep(Duration::from_micros(50));
        }
    }
    (pipeline.flush)();
    // A pipeline that lost spans never reaches the target: give up once it stops moving.
    let (mut last, mut moved) = ((pipeline.exported)(), Instant::now());
    while last < target && moved.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_micros(200));
        let now = (pipeline.exported)();
        if now != last {
            (last, moved) = (now, Instant::now());
        }
    }
    let elapsed = started.elapsed();
    let (all_after, mine_after) = thread_cpu();
    totals.created += created;
    totals.exported += (pipeline.exported)() - exported_before;
    totals.all_threads += all_after.saturating_sub(all_before);
    totals.producer += mine_after.saturating_sub(mine_before);
    totals.creating += creating;
    timed.set(totals);
    elapsed
}

fn report(variant: &str, transport: Transport, timed: Timed, dropped: u64, failed: u64) {
    let per_span = |d: Duration| d.as_secs_f64() * 1e6 / timed.exported.max(1) as f64;
    let export = timed.all_threads.saturating_sub(timed.producer);
    eprintln!(
        "export_throughput {variant} {}: {} spans created, {} exported, {dropped} dropped, {failed} failed; \
         CPU per exported span: {:.2} us creating it (producing thread) + {:.2} us exporting it (every other thread) = {:.2} us; \
         the producer's pacing took {:.2} us more",
        transport.name(),
        timed.created,
        timed.exported,
        per_span(timed.creating),
        per_span(export),
        per_span(timed.creating + export),
        per_span(timed.producer.saturating_sub(timed.creating)),
    );
}

fn init(c: &mut Criterion, collector: &Collector) {
    let mut group = c.benchmark_group("init");
    group.sample_size(20);
    for transport in [Transport::Grpc, Transport::Http] {
        // The resource detectors' share of init (none of them is ECS here: no metadata URI).
        for (name, extra) in [
            ("service_telemetry", &[][..]),
            (
                "service_telemetry_no_detectors",
                &[("OTEL_RESOURCE_DETECTORS_DISABLED", "all")][..],
            ),
        ] {
            group.bench_function(BenchmarkId::new(name, transport.name()), |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let started = Instant::now();
                        let scoped = ours_with(collector, transport, extra);
                        total += started.elapsed();
                        drop(scoped);
                    }
                    total
                })
            });
        }
        group.bench_function(
            BenchmarkId::new("hand_written_otlp", transport.name()),
            |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let started = Instant::now();
                        let setup = hand_written(collector, transport);
                        let scope = tracing::dispatcher::set_default(&setup.dispatch);
                        total += started.elapsed();
                        drop(scope);
                        let _ = setup.provider.shutdown();
                    }
                    total
                })
            },
        );
    }
    group.finish();
}

const FLUSHED: usize = 2000;

/// Total time of `iters` flushes, each after queueing `FLUSHED` spans (not timed).
fn flush_after_spans(iters: u64, mut flush: impl FnMut()) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        spans(FLUSHED);
        let started = Instant::now();
        flush();
        total += started.elapsed();
    }
    total
}

fn flush(c: &mut Criterion, collector: &Collector) {
    let mut group = c.benchmark_group("flush_2000_spans");
    group.sample_size(20);
    for transport in [Transport::Grpc, Transport::Http] {
        let scoped = ours(collector, transport);
        group.bench_function(
            BenchmarkId::new("service_telemetry", transport.name()),
            |b| {
                b.iter_custom(|iters| {
                    flush_after_spans(iters, || scoped.telemetry().flush().expect("flush"))
                })
            },
        );
        let stats = scoped.telemetry().export_stats().traces;
        eprintln!(
            "flush {}: exported {} dropped {} failed {}",
            transport.name(),
            stats.exported,
            stats.dropped,
            stats.failed
        );
        drop(scoped);

        let setup = hand_written(collector, transport);
        // The resource detectors' share of init (none of them is ECS here: no metadata URI).
        group.bench_function(
            BenchmarkId::new("service_telemetry_no_detectors", transport.name()),
            |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let started = Instant::now();
                        let scoped = ours_with(
                            collector,
                            transport,
                            &[("OTEL_RESOURCE_DETECTORS_DISABLED", "all")],
                        );
                        total += started.elapsed();
                        drop(scoped);
                    }
                    total
                })
            },
        );
        group.bench_function(
            BenchmarkId::new("hand_written_otlp", transport.name()),
            |b| {
                tracing::dispatcher::with_default(&setup.dispatch, || {
                    b.iter_custom(|iters| {
                        flush_after_spans(iters, || setup.provider.force_flush().expect("flush"))
                    })
                })
            },
        );
        let _ = setup.provider.shutdown();
    }
    group.finish();
}

fn throughput(c: &mut Criterion, collector: &Collector) {
    let mut group = c.benchmark_group("export_throughput");
    group.sample_size(10);
    group.throughput(Throughput::Elements(BATCH));
    for transport in [Transport::Grpc, Transport::Http] {
        let setup = hand_written(collector, transport);
        let exported = || setup.exported.load(Ordering::Relaxed);
        let pipeline = Pipeline {
            exported: &exported,
            queued: &|created| created.saturating_sub(exported()),
            // The SDK's default queue.
            capacity: 2048,
            flush: &|| {
                let _ = setup.provider.force_flush();
            },
        };
        let timed = Cell::new(Timed::default());
        tracing::dispatcher::with_default(&setup.dispatch, || {
            group.bench_function(BenchmarkId::new("hand_written", transport.name()), |b| {
                b.iter_custom(|iters| sustain(iters, &pipeline, &timed))
            });
        });
        let timed = timed.get();
        let dropped = timed.created.saturating_sub(timed.exported);
        report("hand_written", transport, timed, dropped, 0);
        let _ = setup.provider.shutdown();
    }
    let variants: [(&str, Configure); 2] = [
        ("service_telemetry", |builder| builder),
        (
            "service_telemetry_direct_spans",
            service_telemetry::TelemetryBuilder::direct_spans,
        ),
    ];
    for (variant, transport) in variants
        .into_iter()
        .flat_map(|v| [Transport::Grpc, Transport::Http].map(|t| (v, t)))
    {
        let (variant, configure) = variant;
        let scoped = ours_built(collector, transport, &[], configure);
        let telemetry = scoped.telemetry();
        let pipeline = Pipeline {
            exported: &|| telemetry.export_stats().traces.exported,
            queued: &|_| telemetry.export_stats().traces.queued,
            capacity: telemetry.config().traces.batch.max_queue_size as u64,
            flush: &|| {
                let _ = telemetry.flush();
            },
        };
        let timed = Cell::new(Timed::default());
        group.bench_function(BenchmarkId::new(variant, transport.name()), |b| {
            b.iter_custom(|iters| sustain(iters, &pipeline, &timed))
        });
        let stats = telemetry.export_stats().traces;
        report(variant, transport, timed.get(), stats.dropped, stats.failed);
        drop(scoped);
    }
    group.finish();
}

fn export(c: &mut Criterion) {
    let Some(collector) = start_collector() else {
        return;
    };
    init(c, &collector);
    flush(c, &collector);
    throughput(c, &collector);
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(std::time::Duration::from_secs(5));
    targets = export
}
criterion_main!(benches);
