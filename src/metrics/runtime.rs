//! Tokio runtime metrics for the runtime `init` was called on, or else the one
//! [`crate::Shutdown::run`] is awaited on.
//!
//! The semantic conventions have no Tokio metrics, so the names are the crate's own, in the
//! conventions' style (`tokio.` namespace, UCUM units, `.count` for up-down counters of
//! things that exist now). The default set needs stable Tokio only; built with
//! `RUSTFLAGS="--cfg tokio_unstable"` the unstable counters are added.

use std::sync::{Arc, Mutex, PoisonError};

use opentelemetry::KeyValue;
use opentelemetry::metrics::Meter;
use tokio::runtime::{Handle, RuntimeMetrics};

/// The runtime whose metrics are reported; the first one offered is kept.
#[derive(Debug, Default)]
pub(crate) struct RuntimeSlot(Mutex<Option<Handle>>);

impl RuntimeSlot {
    pub(crate) fn offer(&self, handle: Handle) {
        let mut slot = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.is_none() {
            *slot = Some(handle);
        }
    }

    pub(crate) fn offer_current(&self) {
        if let Ok(handle) = Handle::try_current() {
            self.offer(handle);
        }
    }

    fn metrics(&self) -> Option<RuntimeMetrics> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(Handle::metrics)
    }
}

fn worker(index: usize) -> [KeyValue; 1] {
    [KeyValue::new("tokio.worker.index", index as i64)]
}

fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Registers the runtime instruments on `meter`; each reports nothing until a runtime is known.
pub(crate) fn register(meter: &Meter, slot: Arc<RuntimeSlot>) {
    let s = slot.clone();
    meter
        .i64_observable_up_down_counter("tokio.worker.count")
        .with_unit("{worker}")
        .with_description("Worker threads of the runtime (1 for a current-thread runtime).")
        .with_callback(move |o| {
            if let Some(m) = s.metrics() {
                o.observe(count(m.num_workers()), &[]);
            }
        })
        .build();
    let s = slot.clone();
    meter
        .i64_observable_up_down_counter("tokio.task.alive.count")
        .with_unit("{task}")
        .with_description("Tasks spawned on the runtime that have not finished yet.")
        .with_callback(move |o| {
            if let Some(m) = s.metrics() {
                o.observe(count(m.num_alive_tasks()), &[]);
            }
        })
        .build();
    let s = slot.clone();
    meter
        .i64_observable_up_down_counter("tokio.global_queue.depth")
        .with_unit("{task}")
        .with_description("Tasks waiting in the runtime's global (injection) queue.")
        .with_callback(move |o| {
            if let Some(m) = s.metrics() {
                o.observe(count(m.global_queue_depth()), &[]);
            }
        })
        .build();
    #[cfg(target_has_atomic = "64")]
    {
        let s = slot.clone();
        meter
            .f64_observable_counter("tokio.worker.busy.time")
            .with_unit("s")
            .with_description("Time each worker has spent polling tasks, by tokio.worker.index.")
            .with_callback(move |o| {
                if let Some(m) = s.metrics() {
                    for i in 0..m.num_workers() {
                        o.observe(m.worker_total_busy_duration(i).as_secs_f64(), &worker(i));
                    }
                }
            })
            .build();
        let s = slot.clone();
        meter
            .u64_observable_counter("tokio.worker.parks")
            .with_unit("{park}")
            .with_description("Times each worker has parked (gone idle), by tokio.worker.index.")
            .with_callback(move |o| {
                if let Some(m) = s.metrics() {
                    for i in 0..m.num_workers() {
                        o.observe(m.worker_park_count(i), &worker(i));
                    }
                }
            })
            .build();
    }
    #[cfg(tokio_unstable)]
    register_unstable(meter, slot);
    #[cfg(not(tokio_unstable))]
    let _ = slot;
}

#[cfg(tokio_unstable)]
fn register_unstable(meter: &Meter, slot: Arc<RuntimeSlot>) {
    let s = slot.clone();
    meter
        .i64_observable_up_down_counter("tokio.blocking_thread.count")
        .with_unit("{thread}")
        .with_description("Threads of the blocking pool (spawn_blocking).")
        .with_callback(move |o| {
            if let Some(m) = s.metrics() {
                o.observe(count(m.num_blocking_threads()), &[]);
            }
        })
        .build();
    let s = slot.clone();
    meter
        .i64_observable_up_down_counter("tokio.blocking_queue.depth")
        .with_unit("{task}")
        .with_description("Tasks waiting for a blocking-pool thread.")
        .with_callback(move |o| {
            if let Some(m) = s.metrics() {
                o.observe(count(m.blocking_queue_depth()), &[]);
            }
        })
        .build();
    let s = slot.clone();
    meter
        .i64_observable_up_down_counter("tokio.worker.local_queue.depth")
        .with_unit("{task}")
        .with_description("Tasks in each worker's local queue, by tokio.worker.index.")
        .with_callback(move |o| {
            if let Some(m) = s.metrics() {
                for i in 0..m.num_workers() {
                    o.observe(count(m.worker_local_queue_depth(i)), &worker(i));
                }
            }
        })
        .build();
    #[cfg(target_has_atomic = "64")]
    {
        let s = slot.clone();
        meter
            .u64_observable_counter("tokio.task.spawned")
            .with_unit("{task}")
            .with_description("Tasks spawned on the runtime since it started.")
            .with_callback(move |o| {
                if let Some(m) = s.metrics() {
                    o.observe(m.spawned_tasks_count(), &[]);
                }
            })
            .build();
        let s = slot.clone();
        meter
            .u64_observable_counter("tokio.budget.forced_yields")
            .with_unit("{yield}")
            .with_description("Times a task was made to yield after using up its budget.")
            .with_callback(move |o| {
                if let Some(m) = s.metrics() {
                    o.observe(m.budget_forced_yield_count(), &[]);
                }
            })
            .build();
        let s = slot.clone();
        meter
            .u64_observable_counter("tokio.worker.polls")
            .with_unit("{poll}")
            .with_description("Task polls by each worker, by tokio.worker.index.")
            .with_callback(move |o| {
                if let Some(m) = s.metrics() {
                    for i in 0..m.num_workers() {
                        o.observe(m.worker_poll_count(i), &worker(i));
                    }
                }
            })
            .build();
        meter
            .u64_observable_counter("tokio.worker.steals")
            .with_unit("{task}")
            .with_description("Tasks each worker stole from another, by tokio.worker.index.")
            .with_callback(move |o| {
                if let Some(m) = slot.metrics() {
                    for i in 0..m.num_workers() {
                        o.observe(m.worker_steal_count(i), &worker(i));
                    }
                }
            })
            .build();
    }
}
