//! The logs' batch processor: records kept where they are emitted and exported by the thread
//! that fills a batch.
//!
//! The SDK's `BatchLogProcessor` clones every record and its scope into a box, sends the box
//! through a channel to a thread of its own, and frees it there. In this crate only the log
//! handoff's thread (see `log_bridge`) emits records, and it already runs apart from the
//! service's threads, so [`BatchedLogs`] takes the record over instead of copying it and
//! exports a full batch on that same thread: no copy, no second queue, no third thread, and
//! every record is freed by the thread that built it. The handoff thread also flushes the
//! provider once the schedule delay has passed since its first unflushed record, which is the
//! SDK processor's timer.
//!
//! Bounded: at most one batch waits here, and one more is being exported; while an export
//! blocks, the handoff's own bounded queue fills and counts what it drops.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use opentelemetry::logs::{Logger as _, LoggerProvider as _};
use opentelemetry::{Context, InstrumentationScope};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::logs::{LogBatch, LogExporter, LogProcessor, SdkLogRecord, SdkLogger};

/// Whether the processor may take the record it is handed, or must copy it because another
/// processor after it still reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RecordUse {
    /// The last processor of the provider: the record is moved out.
    Take,
    /// Another processor follows: the record is cloned.
    Copy,
}

/// Records gathered for the next export, each with the index of its scope.
#[derive(Default)]
struct Batch {
    records: Vec<(SdkLogRecord, usize)>,
    scopes: Vec<InstrumentationScope>,
}

impl Batch {
    fn scope_index(&mut self, scope: &InstrumentationScope) -> usize {
        match self.scopes.iter().rposition(|s| s == scope) {
            Some(index) => index,
            None => {
                self.scopes.push(scope.clone());
                self.scopes.len() - 1
            }
        }
    }

    fn clear(&mut self) {
        self.records.clear();
        self.scopes.clear();
    }
}

struct Gathered {
    batch: Batch,
    /// The last exported batch, emptied, so its allocation serves again.
    spare: Batch,
}

/// A batching log processor that exports on the emitting thread (see the module docs).
pub(crate) struct BatchedLogs<E> {
    gathered: Mutex<Gathered>,
    /// Held for a whole export, and while the batch to export is taken, so that exports run
    /// one at a time and in order, and a flush returns after every earlier record is out.
    exporter: Mutex<E>,
    max_batch: usize,
    record_use: RecordUse,
    closed: AtomicBool,
    /// Mints the blank records left behind when a record is taken.
    blank: SdkLogger,
}

impl<E> std::fmt::Debug for BatchedLogs<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchedLogs")
            .field("max_batch", &self.max_batch)
            .field("record_use", &self.record_use)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<E: LogExporter> BatchedLogs<E> {
    /// Exports every `max_batch` records, and whatever waits at a flush or shutdown.
    pub(crate) fn new(exporter: E, max_batch: usize, record_use: RecordUse) -> Self {
        let blank = opentelemetry_sdk::logs::SdkLoggerProvider::builder()
            .build()
            .logger("service-telemetry");
        BatchedLogs {
            gathered: Mutex::new(Gathered {
                batch: Batch::default(),
                spare: Batch::default(),
            }),
            exporter: Mutex::new(exporter),
            max_batch: max_batch.max(1),
            record_use,
            closed: AtomicBool::new(false),
            blank,
        }
    }

    /// Exports what has gathered so far; `Ok` when there was nothing.
    fn export_gathered(&self) -> OTelSdkResult {
        // The exporter's own events (a transport's connection errors, say) must not come
        // back as records.
        let _quiet = Context::enter_telemetry_suppressed_scope();
        let exporter = lock(&self.exporter);
        let mut batch = {
            let mut gathered = lock(&self.gathered);
            if gathered.batch.records.is_empty() {
                return Ok(());
            }
            let spare = std::mem::take(&mut gathered.spare);
            std::mem::replace(&mut gathered.batch, spare)
        };
        let result = {
            let Batch { records, scopes } = &batch;
            let items: Vec<(&SdkLogRecord, &InstrumentationScope)> = records
                .iter()
                .filter_map(|(record, index)| scopes.get(*index).map(|scope| (record, scope)))
                .collect();
            futures_executor::block_on(exporter.export(LogBatch::new(&items)))
        };
        drop(exporter);
        batch.clear();
        let mut gathered = lock(&self.gathered);
        if gathered.spare.records.capacity() < batch.records.capacity() {
            gathered.spare = batch;
        }
        result
    }
}

impl<E: LogExporter> LogProcessor for BatchedLogs<E> {
    fn emit(&self, record: &mut SdkLogRecord, scope: &InstrumentationScope) {
        if self.closed.load(Ordering::Relaxed) {
            return;
        }
        let record = match self.record_use {
            RecordUse::Take => std::mem::replace(record, self.blank.create_log_record()),
            RecordUse::Copy => record.clone(),
        };
        let full = {
            let mut gathered = lock(&self.gathered);
            let batch = &mut gathered.batch;
            let index = batch.scope_index(scope);
            batch.records.push((record, index));
            batch.records.len() >= self.max_batch
        };
        if full {
            // The ledger counts a failed export; the error needs no second report here.
            let _ = self.export_gathered();
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        if self.closed.load(Ordering::Relaxed) {
            return Err(OTelSdkError::AlreadyShutdown);
        }
        self.export_gathered()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        if self.closed.swap(true, Ordering::Relaxed) {
            return Err(OTelSdkError::AlreadyShutdown);
        }
        let exported = self.export_gathered();
        let _quiet = Context::enter_telemetry_suppressed_scope();
        let shut = lock(&self.exporter).shutdown_with_timeout(timeout);
        exported.and(shut)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.exporter
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .set_resource(resource);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use opentelemetry::logs::{AnyValue, LogRecord as _};

    use super::*;

    /// One exported record: its body and its scope's name.
    type Seen = (String, String);

    /// Remembers every batch's bodies and scopes.
    #[derive(Debug, Clone, Default)]
    struct Recording(Arc<Mutex<Vec<Vec<Seen>>>>);

    impl LogExporter for Recording {
        async fn export(&self, batch: LogBatch<'_>) -> OTelSdkResult {
            let seen = batch
                .iter()
                .map(|(record, scope)| {
                    let body = match record.body() {
                        Some(AnyValue::String(s)) => s.to_string(),
                        _ => String::new(),
                    };
                    (body, scope.name().to_owned())
                })
                .collect();
            lock(&self.0).push(seen);
            Ok(())
        }
    }

    fn record(logger: &SdkLogger, body: &str) -> SdkLogRecord {
        let mut record = logger.create_log_record();
        record.set_body(AnyValue::from(body.to_owned()));
        record
    }

    fn scope(name: &'static str) -> InstrumentationScope {
        InstrumentationScope::builder(name).build()
    }

    #[test]
    fn full_batches_go_out_at_once_and_the_rest_at_a_flush_in_order() {
        let exported = Recording::default();
        let processor = BatchedLogs::new(exported.clone(), 2, RecordUse::Take);
        let logger = opentelemetry_sdk::logs::SdkLoggerProvider::builder()
            .build()
            .logger("t");
        let (a, b) = (scope("a"), scope("b"));
        for (body, scope) in [("1", &a), ("2", &b), ("3", &a)] {
            let mut r = record(&logger, body);
            processor.emit(&mut r, scope);
            assert_eq!(r.body(), None, "a taken record leaves a blank behind");
        }
        assert_eq!(lock(&exported.0).len(), 1, "one full batch of two");
        processor.force_flush().unwrap();
        let batches = lock(&exported.0).clone();
        let pair = |b: &str, s: &str| (b.to_owned(), s.to_owned());
        assert_eq!(
            batches,
            vec![vec![pair("1", "a"), pair("2", "b")], vec![pair("3", "a")]]
        );
        processor.force_flush().unwrap();
        assert_eq!(lock(&exported.0).len(), 2, "an empty flush exports nothing");
    }

    #[test]
    fn a_processor_that_others_follow_leaves_the_record_as_it_was() {
        let exported = Recording::default();
        let processor = BatchedLogs::new(exported.clone(), 10, RecordUse::Copy);
        let logger = opentelemetry_sdk::logs::SdkLoggerProvider::builder()
            .build()
            .logger("t");
        let mut r = record(&logger, "kept");
        processor.emit(&mut r, &scope("s"));
        assert_eq!(r.body(), Some(&AnyValue::from("kept".to_owned())));
        processor.force_flush().unwrap();
        assert_eq!(lock(&exported.0)[0][0].0, "kept");
    }

    #[test]
    fn shutdown_exports_what_waits_and_then_takes_nothing_more() {
        let exported = Recording::default();
        let processor = BatchedLogs::new(exported.clone(), 10, RecordUse::Take);
        let logger = opentelemetry_sdk::logs::SdkLoggerProvider::builder()
            .build()
            .logger("t");
        processor.emit(&mut record(&logger, "last"), &scope("s"));
        processor
            .shutdown_with_timeout(Duration::from_secs(1))
            .unwrap();
        processor.emit(&mut record(&logger, "late"), &scope("s"));
        assert!(matches!(
            processor.force_flush(),
            Err(OTelSdkError::AlreadyShutdown)
        ));
        assert!(matches!(
            processor.shutdown_with_timeout(Duration::from_secs(1)),
            Err(OTelSdkError::AlreadyShutdown)
        ));
        let batches = lock(&exported.0).clone();
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0][0].0, "last");
    }
}
