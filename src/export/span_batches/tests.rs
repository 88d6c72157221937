use std::borrow::Cow;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::SystemTime;

use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status};
use opentelemetry_sdk::trace::{SpanEvents, SpanLinks};

use super::*;

/// Long enough never to fire in a test that does not wait for it.
const NEVER: Duration = Duration::from_secs(3600);
/// Bound on every wait for the export thread.
const PATIENCE: Duration = Duration::from_secs(10);
/// How long the processors here let a flush wait.
const FLUSH_WAIT: Duration = Duration::from_millis(200);

fn span(name: &str) -> SpanData {
    SpanData {
        span_context: SpanContext::empty_context(),
        parent_span_id: SpanId::INVALID,
        parent_span_is_remote: false,
        span_kind: SpanKind::Internal,
        name: Cow::Owned(name.to_owned()),
        start_time: SystemTime::UNIX_EPOCH,
        end_time: SystemTime::UNIX_EPOCH,
        attributes: Vec::new(),
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status: Status::Unset,
        instrumentation_scope: opentelemetry::InstrumentationScope::default(),
    }
}

/// Sends each batch's span names to the test; optionally waits for a go-ahead before each
/// export, so that spans pile up behind it; tells when it was shut down.
#[derive(Debug)]
struct Recording {
    batches: Sender<Vec<String>>,
    gate: Option<Mutex<Receiver<()>>>,
    shut: Sender<Duration>,
}

impl SpanExporter for Recording {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        if let Some(gate) = &self.gate {
            let _ = lock(gate).recv();
        }
        let names = batch.iter().map(|s| s.name.to_string()).collect();
        let _ = self.batches.send(names);
        Ok(())
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let _ = self.shut.send(timeout);
        Ok(())
    }
}

struct Harness {
    processor: BatchedSpans<Recording>,
    batches: Receiver<Vec<String>>,
    shut: Receiver<Duration>,
    gate: Option<Sender<()>>,
}

fn harness(max_queue: usize, max_batch: usize, delay: Duration, gated: bool) -> Harness {
    let (batch_tx, batches) = channel();
    let (shut_tx, shut) = channel();
    let (gate, gate_rx) = if gated {
        let (tx, rx) = channel();
        (Some(tx), Some(Mutex::new(rx)))
    } else {
        (None, None)
    };
    let processor = BatchedSpans::new(
        Recording {
            batches: batch_tx,
            gate: gate_rx,
            shut: shut_tx,
        },
        Batching {
            max_queue,
            max_batch,
            delay,
            flush_timeout: FLUSH_WAIT,
        },
    );
    Harness {
        processor,
        batches,
        shut,
        gate,
    }
}

fn names(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("s{i}")).collect()
}

fn end_all(processor: &BatchedSpans<Recording>, range: std::ops::Range<usize>) {
    for name in names(range) {
        processor.on_end(span(&name));
    }
}

/// Everything exported so far, batch by batch, without waiting.
fn exported_now(batches: &Receiver<Vec<String>>) -> Vec<Vec<String>> {
    batches.try_iter().collect()
}

/// Returns once the export thread waits for work.
fn until_waiting(processor: &BatchedSpans<Recording>) {
    let deadline = Instant::now() + PATIENCE;
    while lock(&processor.shared.waiting).waits == 0 {
        assert!(Instant::now() < deadline, "the export thread never waited");
        std::thread::yield_now();
    }
}

#[test]
fn a_full_batch_wakes_the_export_thread_and_the_rest_waits_for_a_flush() {
    let h = harness(100, 3, NEVER, false);
    until_waiting(&h.processor);
    end_all(&h.processor, 0..3);
    let first = h.batches.recv_timeout(PATIENCE).expect("the full batch");
    assert_eq!(first, names(0..3));
    end_all(&h.processor, 3..4);
    assert_eq!(
        lock(&h.processor.shared.waiting).queued(3),
        1,
        "the fourth waits"
    );
    assert!(exported_now(&h.batches).is_empty());
    h.processor.force_flush().unwrap();
    assert_eq!(exported_now(&h.batches), vec![names(3..4)]);
    h.processor.force_flush().unwrap();
    assert!(
        exported_now(&h.batches).is_empty(),
        "an empty flush exports nothing"
    );
}

#[test]
fn the_schedule_delay_exports_a_partial_batch() {
    let h = harness(100, 512, Duration::from_millis(20), false);
    end_all(&h.processor, 0..2);
    let batch = h
        .batches
        .recv_timeout(PATIENCE)
        .expect("the timer's export");
    assert_eq!(batch, names(0..2));
}

#[test]
fn spans_that_piled_up_go_out_in_order_in_the_batches_they_filled() {
    let h = harness(100, 4, NEVER, true);
    let gate = h.gate.as_ref().unwrap();
    // The first full batch holds the export thread at the gate; ten more pile up behind it.
    end_all(&h.processor, 0..14);
    // One go-ahead per export, however the thread splits the spans.
    for _ in 0..14 {
        gate.send(()).unwrap();
    }
    let mut seen = vec![h.batches.recv_timeout(PATIENCE).unwrap()];
    let flushed = std::thread::scope(|s| {
        let flush = s.spawn(|| h.processor.force_flush());
        while seen.iter().map(Vec::len).sum::<usize>() < 14 {
            seen.push(h.batches.recv_timeout(PATIENCE).expect("every span"));
        }
        flush.join().unwrap()
    });
    flushed.unwrap();
    // Whether the thread took the first batch before the others filled or after, each goes
    // out as it was filled: full batches, then the partial one.
    assert_eq!(
        seen.iter().map(Vec::len).collect::<Vec<_>>(),
        [4, 4, 4, 2],
        "{seen:?}"
    );
    assert_eq!(seen.concat(), names(0..14));
}

#[test]
fn at_most_max_queue_spans_wait_and_the_rest_are_dropped() {
    let h = harness(5, 5, NEVER, true);
    let gate = h.gate.as_ref().unwrap();
    // Five fill a batch, which the export thread takes and holds at the gate; five more wait;
    // the queue is then full.
    end_all(&h.processor, 0..5);
    let deadline = Instant::now() + PATIENCE;
    while lock(&h.processor.shared.waiting).queued(5) > 0 {
        assert!(
            Instant::now() < deadline,
            "the export thread never took the batch"
        );
        std::thread::yield_now();
    }
    end_all(&h.processor, 5..13);
    for _ in 0..2 {
        gate.send(()).unwrap();
    }
    h.processor.force_flush().unwrap();
    assert_eq!(exported_now(&h.batches).concat(), names(0..10));
}

#[test]
fn shutdown_exports_what_waits_shuts_the_exporter_and_refuses_the_rest() {
    let h = harness(100, 10, NEVER, false);
    end_all(&h.processor, 0..3);
    h.processor
        .shutdown_with_timeout(Duration::from_secs(7))
        .unwrap();
    assert_eq!(exported_now(&h.batches), vec![names(0..3)]);
    assert_eq!(h.shut.try_recv(), Ok(Duration::from_secs(7)));
    end_all(&h.processor, 3..4);
    assert!(matches!(
        h.processor.force_flush(),
        Err(OTelSdkError::AlreadyShutdown)
    ));
    assert!(matches!(
        h.processor.shutdown_with_timeout(Duration::from_secs(1)),
        Err(OTelSdkError::AlreadyShutdown)
    ));
    assert!(
        exported_now(&h.batches).is_empty(),
        "nothing after shutdown"
    );
}

#[test]
fn shutdown_stops_waiting_for_an_export_that_hangs() {
    let h = harness(100, 1, NEVER, true);
    end_all(&h.processor, 0..1);
    let started = Instant::now();
    let result = h
        .processor
        .shutdown_with_timeout(Duration::from_millis(100));
    assert!(
        matches!(result, Err(OTelSdkError::Timeout(_))),
        "{result:?}"
    );
    assert!(started.elapsed() < PATIENCE);
    // Released, the thread finishes: the span is exported and the exporter shut down.
    drop(h.gate);
    assert_eq!(h.batches.recv_timeout(PATIENCE), Ok(names(0..1)));
    assert!(h.shut.recv_timeout(PATIENCE).is_ok());
}

#[test]
fn a_flush_waits_only_so_long_for_an_export_that_hangs() {
    let h = harness(100, 100, NEVER, true);
    end_all(&h.processor, 0..1);
    let started = Instant::now();
    let result = h.processor.force_flush();
    assert!(
        matches!(result, Err(OTelSdkError::Timeout(_))),
        "{result:?}"
    );
    let waited = started.elapsed();
    assert!(waited >= FLUSH_WAIT && waited < PATIENCE, "{waited:?}");
    drop(h.gate);
    assert_eq!(h.batches.recv_timeout(PATIENCE), Ok(names(0..1)));
}

#[test]
fn dropping_the_processor_ends_its_thread_after_exporting_what_waits() {
    let h = harness(100, 100, NEVER, false);
    end_all(&h.processor, 0..2);
    let Harness {
        processor,
        batches,
        shut,
        ..
    } = h;
    drop(processor);
    assert_eq!(batches.recv_timeout(PATIENCE), Ok(names(0..2)));
    assert!(
        shut.recv_timeout(PATIENCE).is_ok(),
        "the exporter was shut down"
    );
}
