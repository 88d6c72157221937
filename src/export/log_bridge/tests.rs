use super::*;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::logs::{InMemoryLogExporter, SdkLoggerProvider};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt as _;

#[derive(Debug)]
struct Failure;

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("disk full")
    }
}

impl std::error::Error for Failure {}

/// Every kind of field the macros can record, at every level, inside and outside a span.
fn events() {
    let order = 7u32;
    tracing::info!(order_id = 42u64, customer = "ada", "order {order} loaded");
    tracing::warn!(
        big = u64::MAX,
        small = -3i64,
        wide = 5i128,
        huge = u128::MAX,
        "limits"
    );
    tracing::error!(
        error = &Failure as &(dyn std::error::Error + 'static),
        ok = false,
        ratio = 0.25,
        "failed"
    );
    tracing::debug!(list = ?[1, 2], shown = %"displayed", "formatted");
    tracing::trace!(target: "custom::target", "no fields");
    tracing::info!(message = "explicit message field", other = 1);
    tracing::info!(name: "order.placed", "named event");
    let span = tracing::info_span!("request", route = "/orders/{id}");
    let _entered = span.enter();
    tracing::info!(inside = true, "in a span");
}

/// What the two bridges must agree on, ids aside (each run has its own trace).
#[derive(Debug, PartialEq)]
struct Seen {
    body: Option<AnyValue>,
    attributes: Vec<(String, AnyValue)>,
    severity: Option<Severity>,
    severity_text: Option<&'static str>,
    target: Option<String>,
    event_name: Option<&'static str>,
    scope: String,
    traced: Option<(bool, Option<TraceFlags>)>,
    observed: bool,
}

fn seen(exporter: &InMemoryLogExporter) -> (Vec<Seen>, Vec<Option<(TraceId, SpanId)>>) {
    let logs = exporter.get_emitted_logs().expect("in-memory exporter");
    let mut all = Vec::new();
    let mut ids = Vec::new();
    for log in logs {
        let r = &log.record;
        all.push(Seen {
            body: r.body().cloned(),
            attributes: r
                .attributes_iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            severity: r.severity_number(),
            severity_text: r.severity_text(),
            target: r.target().map(|t| t.to_string()),
            event_name: r.event_name(),
            scope: log.instrumentation.name().to_owned(),
            traced: r
                .trace_context()
                .map(|t| (t.trace_id != TraceId::INVALID, t.trace_flags)),
            observed: r.observed_timestamp().is_some(),
        });
        ids.push(r.trace_context().map(|t| (t.trace_id, t.span_id)));
    }
    (all, ids)
}

fn logger_provider() -> (SdkLoggerProvider, InMemoryLogExporter) {
    let exporter = InMemoryLogExporter::default();
    let provider = SdkLoggerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    (provider, exporter)
}

/// Longer than any test: only the test's own flushes export.
const NO_TIMED_FLUSH: Duration = Duration::from_secs(3600);

fn always_exported(_: &str) -> bool {
    true
}

/// A handoff of `capacity` slots into `provider` and the layer that feeds it, every event
/// exported while open.
fn bridge(
    provider: &SdkLoggerProvider,
    capacity: usize,
    ledger: Option<Arc<Ledger>>,
) -> (LogHandoff, LogRecordLayer) {
    let handoff = LogHandoff::start(provider, capacity, ledger, NO_TIMED_FLUSH);
    let layer = LogRecordLayer::new(
        provider,
        handoff.clone(),
        Arc::new(AtomicBool::new(true)),
        always_exported,
    );
    (handoff, layer)
}

fn bodies(exporter: &InMemoryLogExporter) -> Vec<Option<AnyValue>> {
    exporter
        .get_emitted_logs()
        .expect("in-memory exporter")
        .iter()
        .map(|l| l.record.body().cloned())
        .collect()
}

#[test]
fn records_are_the_ones_the_appender_builds() {
    let tracer_provider = SdkTracerProvider::builder().build();

    let (reference, reference_out) = logger_provider();
    let appender = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(tracer_provider.tracer("t")))
        .with(opentelemetry_appender_tracing::layer::OpenTelemetryTracingBridge::new(&reference));
    tracing::subscriber::with_default(appender, events);

    let (ours, ours_out) = logger_provider();
    let (handoff, layer) = bridge(&ours, 64, None);
    let span_ids = Arc::new(Mutex::new(None));
    let bridge = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(tracer_provider.tracer("t")))
        .with(layer);
    tracing::subscriber::with_default(bridge, || {
        events();
        let span = tracing::info_span!("check");
        let _entered = span.enter();
        let sc = opentelemetry::Context::map_current(|cx| cx.span().span_context().clone());
        *span_ids.lock().unwrap() = Some((sc.trace_id(), sc.span_id()));
        tracing::info!("ids");
    });
    handoff.flush();

    let (expected, _) = seen(&reference_out);
    let (mut got, ids) = seen(&ours_out);
    assert_eq!(got.len(), expected.len() + 1, "one record per event");
    got.pop();
    assert_eq!(got, expected);
    // A record emitted on the handoff thread still carries the caller's span.
    assert_eq!(ids.last().cloned().flatten(), *span_ids.lock().unwrap());
    assert!(
        expected.iter().any(|s| s.traced.is_some()),
        "the reference saw a span"
    );
}

#[test]
fn a_full_handoff_drops_and_counts_and_a_flush_delivers_the_rest() {
    let (provider, out) = logger_provider();
    let ledger = Ledger::new(crate::config::Signal::Logs, 1000, Duration::from_secs(60));
    let (handoff, layer) = bridge(&provider, 4, Some(ledger.clone()));
    // Hold the converter so the thread cannot drain while the queue fills.
    let converter = lock(&handoff.shared.emitting);
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        for i in 0..10 {
            tracing::info!(i, "event");
        }
    });
    assert_eq!(ledger.stats().dropped, 6);
    drop(converter);
    handoff.flush();
    let first_fields: Vec<String> = out
        .get_emitted_logs()
        .unwrap()
        .iter()
        .map(|l| {
            format!(
                "{:?}",
                l.record.attributes_iter().next().map(|(_, v)| v.clone())
            )
        })
        .collect();
    assert_eq!(first_fields.len(), 4, "{first_fields:?}");
    assert!(
        first_fields[0].contains("Int(0)") && first_fields[3].contains("Int(3)"),
        "{first_fields:?}"
    );
}

#[test]
fn the_thread_delivers_without_a_flush() {
    let (provider, out) = logger_provider();
    let (_handoff, layer) = bridge(&provider, 64, None);
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        tracing::info!("one");
        tracing::info!("two");
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while out.get_emitted_logs().unwrap().len() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the handoff thread never emitted"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn closed_or_filtered_events_are_not_records_and_a_stopped_handoff_takes_none() {
    let (provider, out) = logger_provider();
    let handoff = LogHandoff::start(&provider, 64, None, NO_TIMED_FLUSH);
    let open = Arc::new(AtomicBool::new(true));
    let layer = LogRecordLayer::new(&provider, handoff.clone(), open.clone(), |t| t != "skipped");
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        tracing::info!(target: "skipped", "filtered");
        tracing::info!("kept");
        handoff.stop();
        tracing::info!("after stop");
        open.store(false, Ordering::Relaxed);
        tracing::info!("closed");
    });
    handoff.flush();
    assert_eq!(bodies(&out), vec![Some(AnyValue::from("kept".to_owned()))]);
}

/// With the global dispatcher a field's `Debug` may log while this thread's slot is being
/// filled (a scoped dispatcher drops such events itself); the inner event gets a slot of its
/// own instead of a `RefCell` panic.
#[test]
fn an_event_while_the_threads_slot_is_in_use_gets_a_fresh_one() {
    let (provider, out) = logger_provider();
    let (handoff, layer) = bridge(&provider, 64, None);
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        CALLER_SLOT.with(|slot| {
            let _in_use = slot.borrow_mut();
            tracing::info!("while in use");
        });
        tracing::info!("after");
    });
    handoff.flush();
    assert_eq!(
        bodies(&out),
        vec![
            Some(AnyValue::from("while in use".to_owned())),
            Some(AnyValue::from("after".to_owned()))
        ]
    );
}

/// The handoff thread is the logs' batch timer: with nobody flushing, a record still leaves
/// once the delay has passed since it was emitted, and not long before.
#[test]
fn records_leave_on_their_own_once_the_schedule_delay_has_passed() {
    let exporter = InMemoryLogExporter::default();
    let delay = Duration::from_millis(200);
    let provider = SdkLoggerProvider::builder()
        .with_log_processor(crate::export::log_batches::BatchedLogs::new(
            exporter.clone(),
            512,
            crate::export::log_batches::RecordUse::Take,
        ))
        .build();
    let handoff = LogHandoff::start(&provider, 64, None, delay);
    let layer = LogRecordLayer::new(
        &provider,
        handoff.clone(),
        Arc::new(AtomicBool::new(true)),
        always_exported,
    );
    let started = std::time::Instant::now();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        tracing::info!("on time");
    });
    let deadline = started + Duration::from_secs(10);
    while exporter.get_emitted_logs().unwrap().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "no timed flush within 10 s of a 200 ms delay"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let waited = started.elapsed();
    assert!(
        waited >= delay,
        "exported after {waited:?}, before the {delay:?} delay"
    );
    assert_eq!(
        bodies(&exporter),
        vec![Some(AnyValue::from("on time".to_owned()))]
    );
    handoff.stop();
}
