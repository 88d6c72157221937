//! How far the shutdown has got, as the exporters and the log layer see it.
//!
//! Two moments matter. When the final flush begins, exports stop retrying (a collector that
//! fails then will not recover within the shutdown's bound). When the export totals have been
//! logged, the SDK's own diagnostics are no longer written: a processor thread abandoned at the
//! deadline still reports its timeout later, and the totals line must stay the last word.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

const RUNNING: u8 = 0;
const FINAL_FLUSH: u8 = 1;
const REPORTED: u8 = 2;

/// Shared by every exporter of one [`crate::Telemetry`] and its log layer.
#[derive(Clone, Debug)]
pub(crate) struct Closing(Arc<AtomicU8>);

impl Default for Closing {
    fn default() -> Self {
        Closing(Arc::new(AtomicU8::new(RUNNING)))
    }
}

impl Closing {
    /// The final flush starts: exports from now on make one attempt.
    pub(crate) fn begin_final_flush(&self) {
        self.0.fetch_max(FINAL_FLUSH, Ordering::AcqRel);
    }

    #[cfg_attr(not(any(feature = "grpc", feature = "http")), allow(dead_code))]
    pub(crate) fn in_final_flush(&self) -> bool {
        self.0.load(Ordering::Acquire) >= FINAL_FLUSH
    }

    /// The totals are out: nothing the SDK says afterwards is written.
    pub(crate) fn totals_reported(&self) {
        self.0.store(REPORTED, Ordering::Release);
    }

    pub(crate) fn sdk_silenced(&self) -> bool {
        self.0.load(Ordering::Relaxed) == REPORTED
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moves_forward_only() {
        let closing = Closing::default();
        assert!(!closing.in_final_flush() && !closing.sdk_silenced());
        closing.begin_final_flush();
        assert!(closing.in_final_flush() && !closing.sdk_silenced());
        closing.totals_reported();
        closing.begin_final_flush();
        assert!(closing.in_final_flush() && closing.sdk_silenced());
    }
}
