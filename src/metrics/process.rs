//! Process metrics of the semantic conventions v1.44.0 (`docs/system/process-metrics.md`,
//! `model/process/metrics.yaml`), read from `/proc/self` on Linux on the metric reader's
//! cadence, never on the request path. Elsewhere only `process.uptime` is reported.
//!
//! One sample (`stat`, `status` and the `fd` folder) serves every instrument of one
//! collection: the first instrument's callback (`process.cpu.time`, registered first) reads
//! the files, and the others reuse a sample younger than [`SAMPLE_REUSE`].

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use opentelemetry::KeyValue;
use opentelemetry::metrics::Meter;

/// How long one sample serves the callbacks of a collection.
const SAMPLE_REUSE: Duration = Duration::from_millis(200);

/// One reading of the process's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Sample {
    pub(crate) user_seconds: f64,
    pub(crate) system_seconds: f64,
    pub(crate) resident_bytes: u64,
    pub(crate) virtual_bytes: u64,
    pub(crate) threads: u64,
    pub(crate) open_fds: Option<u64>,
    pub(crate) voluntary_switches: Option<u64>,
    pub(crate) involuntary_switches: Option<u64>,
}

/// Reads [`Sample`]s under a root (`/`; a fixture folder in tests).
#[derive(Debug)]
pub(crate) struct ProcessReader {
    root: PathBuf,
    ticks_per_second: f64,
    page_size: u64,
    started: SystemTime,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    last: Option<(Instant, Sample)>,
    /// The previous fresh sample, for utilization over the interval between collections.
    previous: Option<(Instant, Sample)>,
}

impl ProcessReader {
    pub(crate) fn new(root: PathBuf) -> Self {
        let started = crate::resource::process_start_time(&root).unwrap_or_else(SystemTime::now);
        ProcessReader {
            root,
            ticks_per_second: rustix::param::clock_ticks_per_second().max(1) as f64,
            page_size: rustix::param::page_size() as u64,
            started,
            state: Mutex::new(State::default()),
        }
    }

    /// Reads the files once; `None` off Linux or when `/proc` is not mounted.
    pub(crate) fn read(&self) -> Option<Sample> {
        let stat = std::fs::read_to_string(self.root.join("proc/self/stat")).ok()?;
        let field = |n| crate::resource::stat_field(&stat, n);
        let status =
            std::fs::read_to_string(self.root.join("proc/self/status")).unwrap_or_default();
        let status_value = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|rest| rest.trim_start_matches(':').trim().parse::<u64>().ok())
        };
        let open_fds = std::fs::read_dir(self.root.join("proc/self/fd"))
            .ok()
            // The listing's own descriptor is counted too; it is the one being read.
            .map(|entries| entries.count().saturating_sub(1) as u64);
        Some(Sample {
            user_seconds: field(14)? as f64 / self.ticks_per_second,
            system_seconds: field(15)? as f64 / self.ticks_per_second,
            threads: field(20)?,
            virtual_bytes: field(23)?,
            resident_bytes: field(24)?.saturating_mul(self.page_size),
            open_fds,
            voluntary_switches: status_value("voluntary_ctxt_switches"),
            involuntary_switches: status_value("nonvoluntary_ctxt_switches"),
        })
    }

    /// The sample for this collection: a recent one, or a fresh reading.
    fn sample(&self) -> Option<Sample> {
        self.sample_within(SAMPLE_REUSE)
    }

    fn sample_within(&self, reuse: Duration) -> Option<Sample> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        if let Some((at, sample)) = state.last {
            if now.duration_since(at) < reuse {
                return Some(sample);
            }
        }
        let sample = self.read()?;
        state.previous = state.last.take();
        state.last = Some((now, sample));
        Some(sample)
    }

    /// CPU time per mode over wall time times the CPUs available, since the previous
    /// collection (since the process started, for the first).
    fn utilization(&self) -> Option<(f64, f64)> {
        let current = self.sample()?;
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let (now, _) = state.last?;
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let (user, system, wall) = match state.previous {
            Some((then, before)) => (
                current.user_seconds - before.user_seconds,
                current.system_seconds - before.system_seconds,
                now.duration_since(then).as_secs_f64(),
            ),
            None => (
                current.user_seconds,
                current.system_seconds,
                SystemTime::now()
                    .duration_since(self.started)
                    .unwrap_or_default()
                    .as_secs_f64(),
            ),
        };
        (wall > 0.0).then(|| (user / (wall * cpus), system / (wall * cpus)))
    }

    fn uptime(&self) -> f64 {
        SystemTime::now()
            .duration_since(self.started)
            .unwrap_or_default()
            .as_secs_f64()
    }
}

/// An up-down counter read from a sample: name, unit, description, value.
type Gauge = (
    &'static str,
    &'static str,
    &'static str,
    fn(&Sample) -> Option<u64>,
);

fn cpu_mode(mode: &'static str) -> [KeyValue; 1] {
    [KeyValue::new("cpu.mode", mode)]
}

fn clamp_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Registers the process instruments on `meter`.
pub(crate) fn register(meter: &Meter, reader: Arc<ProcessReader>) {
    let r = reader.clone();
    meter
        .f64_observable_counter("process.cpu.time")
        .with_unit("s")
        .with_description("Total CPU seconds broken down by different CPU modes.")
        .with_callback(move |observer| {
            // The first callback of a collection: always a fresh reading.
            if let Some(s) = r.sample_within(Duration::ZERO) {
                observer.observe(s.user_seconds, &cpu_mode("user"));
                observer.observe(s.system_seconds, &cpu_mode("system"));
            }
        })
        .build();
    let r = reader.clone();
    meter
        .f64_observable_gauge("process.cpu.utilization")
        .with_unit("1")
        .with_description(
            "Difference in process.cpu.time since the last measurement, divided by the elapsed time and number of CPUs available to the process.",
        )
        .with_callback(move |observer| {
            if let Some((user, system)) = r.utilization() {
                observer.observe(user, &cpu_mode("user"));
                observer.observe(system, &cpu_mode("system"));
            }
        })
        .build();
    let gauges: [Gauge; 4] = [
        (
            "process.memory.usage",
            "By",
            "The amount of physical memory in use.",
            |s| Some(s.resident_bytes),
        ),
        (
            "process.memory.virtual",
            "By",
            "The amount of committed virtual memory.",
            |s| Some(s.virtual_bytes),
        ),
        (
            "process.thread.count",
            "{thread}",
            "Process threads count.",
            |s| Some(s.threads),
        ),
        // v1.44.0 name; `process.open_file_descriptor.count` is its deprecated predecessor.
        (
            "process.unix.file_descriptor.count",
            "{file_descriptor}",
            "Number of unix file descriptors in use by the process.",
            |s| s.open_fds,
        ),
    ];
    for (name, unit, description, read) in gauges {
        let r = reader.clone();
        meter
            .i64_observable_up_down_counter(name)
            .with_unit(unit)
            .with_description(description)
            .with_callback(move |observer| {
                if let Some(n) = r.sample().as_ref().and_then(read) {
                    observer.observe(clamp_i64(n), &[]);
                }
            })
            .build();
    }
    let r = reader.clone();
    meter
        .u64_observable_counter("process.context_switches")
        .with_unit("{context_switch}")
        .with_description("Number of times the process has been context switched.")
        .with_callback(move |observer| {
            if let Some(s) = r.sample() {
                for (kind, n) in [
                    ("voluntary", s.voluntary_switches),
                    ("involuntary", s.involuntary_switches),
                ] {
                    if let Some(n) = n {
                        observer.observe(n, &[KeyValue::new("process.context_switch.type", kind)]);
                    }
                }
            }
        })
        .build();
    meter
        .f64_observable_gauge("process.uptime")
        .with_unit("s")
        .with_description("The time the process has been running.")
        .with_callback(move |observer| observer.observe(reader.uptime(), &[]))
        .build();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fixture_proc_folder_is_read_into_bytes_seconds_and_counts() {
        let root = std::env::temp_dir().join(format!("st-proc-{}", std::process::id()));
        let dir = root.join("proc/self");
        std::fs::create_dir_all(dir.join("fd")).unwrap();
        for fd in ["0", "1", "2", "3"] {
            std::fs::write(dir.join("fd").join(fd), "").unwrap();
        }
        let ticks = rustix::param::clock_ticks_per_second() as u64;
        let pages = 1000u64;
        std::fs::write(
            dir.join("stat"),
            format!("77 (svc) S 1 77 77 0 -1 4194560 100 0 0 0 {} {} 0 0 20 0 5 0 100 123456789 {pages} 0", 3 * ticks, ticks),
        )
        .unwrap();
        std::fs::write(
            dir.join("status"),
            "Name:\tsvc\nThreads:\t5\nvoluntary_ctxt_switches:\t42\nnonvoluntary_ctxt_switches:\t7\n",
        )
        .unwrap();
        let sample = ProcessReader::new(root.clone()).read().expect("a sample");
        assert_eq!(sample.user_seconds, 3.0);
        assert_eq!(sample.system_seconds, 1.0);
        assert_eq!(sample.threads, 5);
        assert_eq!(sample.virtual_bytes, 123_456_789);
        assert_eq!(
            sample.resident_bytes,
            pages * rustix::param::page_size() as u64
        );
        // Four files; the listing's own descriptor is not among them here, hence 3.
        assert_eq!(sample.open_fds, Some(3));
        assert_eq!(sample.voluntary_switches, Some(42));
        assert_eq!(sample.involuntary_switches, Some(7));
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn the_real_process_reads_on_linux() {
        let reader = ProcessReader::new(PathBuf::from("/"));
        match reader.read() {
            Some(s) if cfg!(target_os = "linux") => {
                assert!(s.threads >= 1 && s.resident_bytes > 0 && s.open_fds.unwrap_or(0) >= 3);
            }
            None if !cfg!(target_os = "linux") => {}
            other => panic!("unexpected sample {other:?}"),
        }
    }
}
