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

/// One instrument's name, unit and description.
type Describe = (&'static str, &'static str, &'static str);

/// An up-down counter of how many of something the runtime has now.
fn gauge(
    meter: &Meter,
    slot: &Arc<RuntimeSlot>,
    (name, unit, description): Describe,
    read: fn(&RuntimeMetrics) -> usize,
) {
    let slot = slot.clone();
    meter
        .i64_observable_up_down_counter(name)
        .with_unit(unit)
        .with_description(description)
        .with_callback(move |o| {
            if let Some(m) = slot.metrics() {
                o.observe(i64::try_from(read(&m)).unwrap_or(i64::MAX), &[]);
            }
        })
        .build();
}

/// An up-down counter per worker, by `tokio.worker.index`.
#[cfg(tokio_unstable)]
fn gauge_per_worker(
    meter: &Meter,
    slot: &Arc<RuntimeSlot>,
    (name, unit, description): Describe,
    read: fn(&RuntimeMetrics, usize) -> usize,
) {
    let slot = slot.clone();
    meter
        .i64_observable_up_down_counter(name)
        .with_unit(unit)
        .with_description(description)
        .with_callback(move |o| {
            if let Some(m) = slot.metrics() {
                for i in 0..m.num_workers() {
                    o.observe(i64::try_from(read(&m, i)).unwrap_or(i64::MAX), &worker(i));
                }
            }
        })
        .build();
}

/// A counter of events since the runtime started.
#[cfg(all(tokio_unstable, target_has_atomic = "64"))]
fn counter(
    meter: &Meter,
    slot: &Arc<RuntimeSlot>,
    (name, unit, description): Describe,
    read: fn(&RuntimeMetrics) -> u64,
) {
    let slot = slot.clone();
    meter
        .u64_observable_counter(name)
        .with_unit(unit)
        .with_description(description)
        .with_callback(move |o| {
            if let Some(m) = slot.metrics() {
                o.observe(read(&m), &[]);
            }
        })
        .build();
}

/// A counter per worker, by `tokio.worker.index`.
#[cfg(target_has_atomic = "64")]
fn counter_per_worker(
    meter: &Meter,
    slot: &Arc<RuntimeSlot>,
    (name, unit, description): Describe,
    read: fn(&RuntimeMetrics, usize) -> u64,
) {
    let slot = slot.clone();
    meter
        .u64_observable_counter(name)
        .with_unit(unit)
        .with_description(description)
        .with_callback(move |o| {
            if let Some(m) = slot.metrics() {
                for i in 0..m.num_workers() {
                    o.observe(read(&m, i), &worker(i));
                }
            }
        })
        .build();
}

/// Registers the runtime instruments on `meter`; each reports nothing until a runtime is known.
pub(crate) fn register(meter: &Meter, slot: Arc<RuntimeSlot>) {
    gauge(
        meter,
        &slot,
        (
            "tokio.worker.count",
            "{worker}",
            "Worker threads of the runtime (1 for a current-thread runtime).",
        ),
        RuntimeMetrics::num_workers,
    );
    gauge(
        meter,
        &slot,
        (
            "tokio.task.alive.count",
            "{task}",
            "Tasks spawned on the runtime that have not finished yet.",
        ),
        RuntimeMetrics::num_alive_tasks,
    );
    gauge(
        meter,
        &slot,
        (
            "tokio.global_queue.depth",
            "{task}",
            "Tasks waiting in the runtime's global (injection) queue.",
        ),
        RuntimeMetrics::global_queue_depth,
    );
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
        counter_per_worker(
            meter,
            &slot,
            (
                "tokio.worker.parks",
                "{park}",
                "Times each worker has parked (gone idle), by tokio.worker.index.",
            ),
            RuntimeMetrics::worker_park_count,
        );
    }
    #[cfg(tokio_unstable)]
    {
        gauge(
            meter,
            &slot,
            (
                "tokio.blocking_thread.count",
                "{thread}",
                "Threads of the blocking pool (spawn_blocking).",
            ),
            RuntimeMetrics::num_blocking_threads,
        );
        gauge(
            meter,
            &slot,
            (
                "tokio.blocking_queue.depth",
                "{task}",
                "Tasks waiting for a blocking-pool thread.",
            ),
            RuntimeMetrics::blocking_queue_depth,
        );
        gauge_per_worker(
            meter,
            &slot,
            (
                "tokio.worker.local_queue.depth",
                "{task}",
                "Tasks in each worker's local queue, by tokio.worker.index.",
            ),
            RuntimeMetrics::worker_local_queue_depth,
        );
    }
    #[cfg(all(tokio_unstable, target_has_atomic = "64"))]
    {
        counter(
            meter,
            &slot,
            (
                "tokio.task.spawned",
                "{task}",
                "Tasks spawned on the runtime since it started.",
            ),
            RuntimeMetrics::spawned_tasks_count,
        );
        counter(
            meter,
            &slot,
            (
                "tokio.budget.forced_yields",
                "{yield}",
                "Times a task was made to yield after using up its budget.",
            ),
            RuntimeMetrics::budget_forced_yield_count,
        );
        counter_per_worker(
            meter,
            &slot,
            (
                "tokio.worker.polls",
                "{poll}",
                "Task polls by each worker, by tokio.worker.index.",
            ),
            RuntimeMetrics::worker_poll_count,
        );
        counter_per_worker(
            meter,
            &slot,
            (
                "tokio.worker.steals",
                "{task}",
                "Tasks each worker stole from another, by tokio.worker.index.",
            ),
            RuntimeMetrics::worker_steal_count,
        );
    }
}
