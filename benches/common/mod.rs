//! Pieces shared by the benches: exporters and a writer that discard, and env tables.
#![allow(dead_code)]

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use criterion::BenchmarkGroup;
use criterion::measurement::WallTime;

use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::logs::{LogBatch, LogExporter};
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use service_telemetry::{LogWriter, ScopedTelemetry, Telemetry, TelemetryBuilder};

/// Accepts every batch at once and counts what it was given: what is measured is the service
/// side of export, and the count shows whether a variant exported what it claims.
///
/// By default it frees each batch on the export thread as it arrives, so the export thread
/// does little but free spans while the timed thread allocates them, and with glibc the two
/// contend for the timed thread's arena lock all the time (against a real collector the
/// export thread mostly encodes and sends, and frees a batch in one burst after that). With
/// `BENCH_UNTIMED_FREES` set (to anything but empty or `0`), it keeps the batches instead and [`timed_in_chunks`] frees them
/// between timed stretches: the other end of the range, with no cross-thread frees timed.
#[derive(Debug, Default, Clone)]
pub struct NoopSpanExporter(pub Arc<AtomicU64>);

impl SpanExporter for NoopSpanExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        self.0.fetch_add(batch.len() as u64, Ordering::Relaxed);
        if frees_untimed() {
            let mut kept = lock_kept();
            // A bench that never frees between stretches (not timed by `timed_in_chunks`) is
            // bounded all the same: beyond a few stretches, batches are freed here again.
            if kept.iter().map(Vec::len).sum::<usize>() < 4 * CHUNK as usize {
                kept.push(batch);
                return Ok(());
            }
        }
        black_box(batch);
        Ok(())
    }
}

/// Batches [`NoopSpanExporter`] keeps for [`timed_in_chunks`] to free, untimed.
static KEPT: Mutex<Vec<Vec<SpanData>>> = Mutex::new(Vec::new());

fn lock_kept() -> std::sync::MutexGuard<'static, Vec<Vec<SpanData>>> {
    KEPT.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Whether `BENCH_UNTIMED_FREES` is set, and not empty or `0` (read once, and said once on
/// stderr).
pub fn frees_untimed() -> bool {
    static SET: OnceLock<bool> = OnceLock::new();
    *SET.get_or_init(|| {
        let set =
            std::env::var_os("BENCH_UNTIMED_FREES").is_some_and(|v| !v.is_empty() && v != "0");
        if set {
            eprintln!("BENCH_UNTIMED_FREES: exported spans are freed between timed stretches");
        }
        set
    })
}

#[derive(Debug, Default, Clone)]
pub struct NoopLogExporter(pub Arc<AtomicU64>);

impl LogExporter for NoopLogExporter {
    async fn export(&self, batch: LogBatch<'_>) -> OTelSdkResult {
        self.0
            .fetch_add(batch.iter().count() as u64, Ordering::Relaxed);
        black_box(batch);
        Ok(())
    }
}

/// Queue size for every variant that exports: large enough that a no-op exporter keeps up with
/// a criterion loop, so the kept path is what is timed, not the drop at a full queue.
pub const KEEP_UP_QUEUE: usize = 65_536;

/// The same queue for this crate, through its environment.
pub const KEEP_UP_ENV: &[(&str, &str)] = &[
    ("OTEL_BSP_MAX_QUEUE_SIZE", "65536"),
    ("OTEL_BLRP_MAX_QUEUE_SIZE", "65536"),
];

/// Most items one timed stretch produces: half the queue, so even an exporter that fell behind
/// cannot make the queue drop.
pub const CHUNK: u64 = (KEEP_UP_QUEUE / 2) as u64;

/// Times `iters` calls of `one` in stretches of at most [`CHUNK`], calling `settle` (which waits
/// until the exporter has caught up) untimed between them. The export thread still runs beside
/// the timed stretches, as in a service; only the waiting for it is left out.
pub fn timed_in_chunks(iters: u64, mut one: impl FnMut(), settle: &dyn Fn()) -> Duration {
    let mut timed = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(CHUNK);
        let start = Instant::now();
        for _ in 0..n {
            one();
        }
        timed += start.elapsed();
        settle();
        drop(std::mem::take(&mut *lock_kept()));
        left -= n;
    }
    timed
}

/// Benchmarks `one` as variant `name` with [`timed_in_chunks`]; returns how many times it ran.
pub fn bench_counted(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    settle: &dyn Fn(),
    mut one: impl FnMut(),
) -> u64 {
    let mut runs = 0u64;
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            runs += iters;
            timed_in_chunks(iters, &mut one, settle)
        })
    });
    runs
}

/// What a variant produced and what reached its exporter.
pub struct Tally<'a> {
    pub variant: &'a str,
    pub what: &'a str,
    pub created: u64,
    pub exported: u64,
}

impl<'a> Tally<'a> {
    /// The spans an SDK provider's exporter received (after a flush) against `created`.
    pub fn sdk_spans(
        variant: &'a str,
        created: u64,
        provider: &opentelemetry_sdk::trace::SdkTracerProvider,
        exported: &AtomicU64,
    ) -> Self {
        Tally {
            variant,
            what: "spans",
            created,
            exported: exported_by(provider, exported),
        }
    }

    /// The spans this crate's ledger counts as exported (after a flush) against `created`;
    /// prints the ledger's own counts too.
    pub fn ours_spans(variant: &'a str, created: u64, scoped: &ScopedTelemetry) -> Self {
        let _ = scoped.telemetry().flush();
        let stats = scoped.telemetry().export_stats();
        eprintln!(
            "{variant}: the crate's ledger: {} exported, {} dropped at a full queue",
            stats.traces.exported, stats.traces.dropped
        );
        Tally {
            variant,
            what: "spans",
            created,
            exported: stats.traces.exported,
        }
    }

    /// Prints the counts. With `all_kept`, a variant that lost anything fails the run: its
    /// time would be the time of a drop.
    pub fn check(&self, all_kept: bool) {
        let dropped = self.created.saturating_sub(self.exported);
        eprintln!(
            "{}: {} {} created, {} exported, {} not exported",
            self.variant, self.created, self.what, self.exported, dropped
        );
        assert!(
            !all_kept || dropped == 0,
            "{}: {dropped} of {} {} were dropped, so the timing is not the kept path",
            self.variant,
            self.created,
            self.what
        );
    }
}

/// JSON lines formatted and then discarded, like `std::io::sink` for the alternatives.
pub struct Discard;

impl LogWriter for Discard {
    fn write_line(&self, line: &[u8]) {
        black_box(line);
    }
}

pub fn lookup(
    env: &'static [(&'static str, &'static str)],
) -> impl Fn(&str) -> Option<String> + Send + Sync + 'static {
    move |k| {
        env.iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| (*v).to_owned())
    }
}

/// What this crate's export does in a variant.
#[derive(Clone, Copy)]
pub enum Export {
    Off,
    Traces,
    TracesAndLogs,
}

/// This crate installed for the current thread, lines discarded, exporters that discard.
/// `env` is read after [`KEEP_UP_ENV`]'s queue sizes, so it can override them.
pub fn ours(export: Export, env: &'static [(&'static str, &'static str)]) -> ScopedTelemetry {
    ours_with(export, env, |builder| builder)
}

/// [`ours`] with builder options of the variant's own.
pub fn ours_with(
    export: Export,
    env: &'static [(&'static str, &'static str)],
    configure: impl FnOnce(TelemetryBuilder) -> TelemetryBuilder,
) -> ScopedTelemetry {
    let env_then_queue = move |k: &str| lookup(env)(k).or_else(|| lookup(KEEP_UP_ENV)(k));
    let mut builder = Telemetry::builder()
        .with_writer(Discard)
        .without_panic_hook()
        .env_lookup(env_then_queue);
    if matches!(export, Export::Traces | Export::TracesAndLogs) {
        builder = builder.with_span_exporter(NoopSpanExporter::default());
    }
    if matches!(export, Export::TracesAndLogs) {
        builder = builder.with_log_exporter(NoopLogExporter::default());
    }
    configure(builder).set_default()
}

/// The OTel SDK's tracer provider with a batch processor (queue [`KEEP_UP_QUEUE`]) and a
/// no-op exporter, as a plain tracing-opentelemetry setup would build it; the counter holds
/// the spans exported.
pub fn sdk_provider(
    sampler: opentelemetry_sdk::trace::Sampler,
) -> (opentelemetry_sdk::trace::SdkTracerProvider, Arc<AtomicU64>) {
    use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor};
    let exporter = NoopSpanExporter::default();
    let exported = exporter.0.clone();
    let processor = BatchSpanProcessor::builder(exporter)
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_max_queue_size(KEEP_UP_QUEUE)
                .build(),
        )
        .build();
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_sampler(sampler)
        .with_span_processor(processor)
        .build();
    (provider, exported)
}

/// Flushes `provider` and reads how many spans reached its exporter.
pub fn exported_by(
    provider: &opentelemetry_sdk::trace::SdkTracerProvider,
    exported: &AtomicU64,
) -> u64 {
    let _ = provider.force_flush();
    exported.load(Ordering::Relaxed)
}
