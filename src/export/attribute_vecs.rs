//! Span attribute vectors that go back to the threads creating spans instead of being freed
//! on the export thread.
//!
//! A span's attribute vector is allocated by the thread that starts the span and freed, after
//! the export, by the batch processor's thread. With glibc every such free takes the lock of
//! the allocating thread's arena, and the allocating thread, which never finds that size in
//! its own cache, takes the same lock for its next vector: a profile of the direct span layer
//! put a tenth of the caller's time in the lock's futex calls. So before an export,
//! [`RecyclingExporter`] moves each span's attributes into a vector of the export thread's
//! own and hands the emptied original (its allocation) back through a bounded pool;
//! [`attribute_vec`] serves the crate's own spans from it. Both threads then free only what
//! they allocated.
//!
//! Spans whose vectors other code sized (`tracing-opentelemetry`'s are smaller than any pool
//! vector) trade theirs for a pool vector as they are queued ([`adopt`]), on the thread that
//! ended them, which frees the original there.
//!
//! Vectors travel in bundles, one lock per bundle, and each thread keeps at most one bundle.
//! The pool keeps at most [`MAX_BUNDLES`] bundles of vectors with room for [`MIN_CAPACITY`] to
//! [`MAX_KEPT_CAPACITY`] attributes, so that any of them fits most spans without growing; when
//! it is full, the export thread leaves the batch as it is.

use std::cell::RefCell;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};

/// Vectors per bundle.
const BUNDLE: usize = 32;
/// Bundles the pool keeps: one default batch (512 spans) of vectors.
const MAX_BUNDLES: usize = 16;
/// Larger vectors are freed as before, which bounds the memory kept.
const MAX_KEPT_CAPACITY: usize = 16;
/// A fresh vector has room for at least this many attributes, so that once recycled it fits
/// most spans.
const MIN_CAPACITY: usize = 8;

type Bundle = Vec<Vec<KeyValue>>;

/// Empty vectors waiting for a span, in bundles.
struct Pool {
    bundles: Mutex<Vec<Bundle>>,
}

static POOL: Pool = Pool::new();

thread_local! {
    /// The bundle this thread takes its vectors from.
    static TAKEN: RefCell<Bundle> = const { RefCell::new(Vec::new()) };
}

impl Pool {
    const fn new() -> Self {
        Pool {
            bundles: Mutex::new(Vec::new()),
        }
    }

    fn has_room(&self) -> bool {
        self.bundles
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
            < MAX_BUNDLES
    }

    fn take_bundle(&self) -> Option<Bundle> {
        self.bundles
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
    }

    /// Keeps `bundle` if there is room; `false` when it was dropped.
    fn keep(&self, bundle: Bundle) -> bool {
        let mut bundles = self.bundles.lock().unwrap_or_else(PoisonError::into_inner);
        if bundles.len() >= MAX_BUNDLES {
            return false;
        }
        bundles.push(bundle);
        true
    }

    /// Gives every span of `batch` whose vector can be kept a vector of this thread's with the
    /// same attributes in the same order, and keeps the emptied originals while there is room.
    fn recycle(&self, batch: &mut [SpanData]) {
        if !self.has_room() {
            return;
        }
        let mut bundle = Vec::with_capacity(BUNDLE);
        for span in batch {
            let capacity = span.attributes.capacity();
            if !(MIN_CAPACITY..=MAX_KEPT_CAPACITY).contains(&capacity) {
                continue;
            }
            let mut own = Vec::with_capacity(span.attributes.len());
            own.append(&mut span.attributes);
            bundle.push(std::mem::replace(&mut span.attributes, own));
            if bundle.len() == BUNDLE
                && !self.keep(std::mem::replace(&mut bundle, Vec::with_capacity(BUNDLE)))
            {
                return;
            }
        }
        if !bundle.is_empty() {
            self.keep(bundle);
        }
    }
}

/// An empty vector with room for `capacity` attributes, recycled when one is available.
pub(crate) fn attribute_vec(capacity: usize) -> Vec<KeyValue> {
    let recycled = TAKEN
        .try_with(|taken| {
            let mut taken = taken.try_borrow_mut().ok()?;
            if taken.is_empty() {
                *taken = POOL.take_bundle()?;
            }
            taken.pop()
        })
        .ok()
        .flatten();
    match recycled {
        Some(mut attributes) => {
            attributes.reserve(capacity);
            attributes
        }
        None => Vec::with_capacity(capacity.max(MIN_CAPACITY)),
    }
}

/// Moves the attributes of a span about to be queued for export into a vector from the pool
/// when theirs did not come from it (code such as `tracing-opentelemetry` sizes its own), and
/// frees the original here, on the thread that most likely allocated it: the export thread
/// then frees nothing of this thread's, and this thread's next vector of that size is the
/// one just freed.
pub(crate) fn adopt(attributes: &mut Vec<KeyValue>) {
    if attributes.capacity() >= MIN_CAPACITY {
        return;
    }
    let mut pooled = attribute_vec(attributes.len());
    pooled.append(attributes);
    drop(std::mem::replace(attributes, pooled));
}

/// A span exporter that recycles each batch's attribute vectors (see the module docs) before
/// passing the batch on.
#[derive(Debug)]
pub(crate) struct RecyclingExporter<E> {
    inner: E,
}

impl<E> RecyclingExporter<E> {
    pub(crate) fn new(inner: E) -> Self {
        RecyclingExporter { inner }
    }
}

impl<E: SpanExporter> SpanExporter for RecyclingExporter<E> {
    async fn export(&self, mut batch: Vec<SpanData>) -> OTelSdkResult {
        POOL.recycle(&mut batch);
        self.inner.export(batch).await
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{SpanContext, SpanKind, Status};
    use opentelemetry_sdk::trace::{SpanEvents, SpanLinks};
    use std::borrow::Cow;
    use std::time::SystemTime;

    fn span_with(attributes: Vec<KeyValue>) -> SpanData {
        SpanData {
            span_context: SpanContext::empty_context(),
            parent_span_id: opentelemetry::trace::SpanId::INVALID,
            parent_span_is_remote: false,
            span_kind: SpanKind::Internal,
            name: Cow::Borrowed("test"),
            start_time: SystemTime::UNIX_EPOCH,
            end_time: SystemTime::UNIX_EPOCH,
            attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: Status::Unset,
            instrumentation_scope: opentelemetry::InstrumentationScope::default(),
        }
    }

    fn attributes(n: usize) -> Vec<KeyValue> {
        let mut attributes = Vec::with_capacity(n.max(MIN_CAPACITY));
        attributes.extend((0..n).map(|i| KeyValue::new(format!("k{i}"), i as i64)));
        attributes
    }

    #[test]
    fn the_exported_span_keeps_its_attributes_and_the_original_vector_comes_back_empty() {
        let pool = Pool::new();
        let mut batch = vec![span_with(attributes(3)), span_with(attributes(5))];
        let originals: Vec<*const KeyValue> =
            batch.iter().map(|span| span.attributes.as_ptr()).collect();
        pool.recycle(&mut batch);

        assert_eq!(batch[0].attributes, attributes(3));
        assert_eq!(batch[1].attributes, attributes(5));
        assert!(
            batch
                .iter()
                .zip(&originals)
                .all(|(span, original)| span.attributes.as_ptr() != *original)
        );
        let bundle = pool.take_bundle().expect("the vectors were kept");
        assert!(pool.take_bundle().is_none());
        let returned: Vec<*const KeyValue> = bundle.iter().map(|v| v.as_ptr()).collect();
        assert_eq!(returned, originals);
        assert!(
            bundle
                .iter()
                .all(|v| v.is_empty() && v.capacity() >= MIN_CAPACITY)
        );
    }

    #[test]
    fn small_large_and_unallocated_vectors_stay_with_their_spans() {
        let pool = Pool::new();
        let large = attributes(MAX_KEPT_CAPACITY + 1);
        let large_at = large.as_ptr();
        let small = vec![KeyValue::new("k", 1)];
        let small_at = small.as_ptr();
        let mut batch = vec![span_with(large), span_with(Vec::new()), span_with(small)];
        pool.recycle(&mut batch);
        assert_eq!(batch[0].attributes.as_ptr(), large_at);
        assert_eq!(batch[2].attributes.as_ptr(), small_at);
        assert_eq!(batch[0].attributes.len(), MAX_KEPT_CAPACITY + 1);
        assert!(pool.take_bundle().is_none());
    }

    #[test]
    fn the_pool_keeps_a_bounded_number_of_vectors_and_then_leaves_batches_alone() {
        let pool = Pool::new();
        let spans = BUNDLE * (MAX_BUNDLES + 2);
        let mut batch: Vec<SpanData> = (0..spans).map(|_| span_with(attributes(2))).collect();
        pool.recycle(&mut batch);
        let mut kept = 0;
        while let Some(bundle) = pool.take_bundle() {
            assert!(bundle.len() <= BUNDLE);
            kept += bundle.len();
        }
        assert_eq!(kept, BUNDLE * MAX_BUNDLES);
        assert!(batch.iter().all(|span| span.attributes == attributes(2)));

        for _ in 0..MAX_BUNDLES {
            assert!(pool.keep(Vec::new()));
        }
        let mut more = vec![span_with(attributes(2))];
        let untouched = more[0].attributes.as_ptr();
        pool.recycle(&mut more);
        assert_eq!(more[0].attributes.as_ptr(), untouched);
    }

    #[test]
    fn a_small_vector_is_traded_for_a_pool_sized_one_with_the_same_attributes() {
        let mut foreign = Vec::with_capacity(3);
        foreign.extend((0..3).map(|i| KeyValue::new(format!("k{i}"), i as i64)));
        adopt(&mut foreign);
        assert_eq!(foreign, attributes(3));
        assert!(foreign.capacity() >= MIN_CAPACITY);

        let mut ours = attributes(3);
        let ours_at = ours.as_ptr();
        adopt(&mut ours);
        assert_eq!(ours.as_ptr(), ours_at);
    }

    #[test]
    fn a_vector_is_empty_with_the_room_asked_for() {
        for capacity in [0, 3, MIN_CAPACITY, 40] {
            let attributes = attribute_vec(capacity);
            assert!(attributes.is_empty());
            assert!(attributes.capacity() >= capacity);
        }
    }
}
