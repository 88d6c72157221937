//! Runs the detectors off the caller's thread, all together within one budget.
//!
//! `init` is usually called on an async worker (`#[tokio::main]`), so no detector runs there:
//! the local ones (files under `/proc` and `/etc`, `uname`) share one thread, the ECS one (HTTP
//! to the metadata endpoint) has its own, and the caller waits for both at most
//! [`DETECTION_BUDGET`]. A detector that fails, panics or overruns is reported once and
//! skipped; what the others found is kept.

use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use opentelemetry::KeyValue;

use crate::config::ResourceDetector;

/// Longest time all detectors together may add to `init`.
pub(crate) const DETECTION_BUDGET: Duration = Duration::from_millis(250);

/// The environment variables the detectors read, taken through the builder's lookup on the
/// caller's thread (so tests never touch the process environment).
#[derive(Debug, Clone, Default)]
pub(crate) struct DetectorEnv {
    pub(crate) kubernetes_service_host: Option<String>,
    pub(crate) hostname: Option<String>,
    pub(crate) pod_name: Option<String>,
    pub(crate) pod_uid: Option<String>,
    pub(crate) node_name: Option<String>,
    pub(crate) namespace_name: Option<String>,
    pub(crate) container_name: Option<String>,
    pub(crate) ecs_metadata_uri: Option<String>,
}

impl DetectorEnv {
    pub(crate) fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Self {
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        DetectorEnv {
            kubernetes_service_host: get("KUBERNETES_SERVICE_HOST"),
            hostname: get("HOSTNAME"),
            pod_name: get(crate::resource::k8s::POD_NAME_VAR),
            pod_uid: get(crate::resource::k8s::POD_UID_VAR),
            node_name: get(crate::resource::k8s::NODE_NAME_VAR),
            namespace_name: get(crate::resource::k8s::NAMESPACE_NAME_VAR),
            container_name: get(crate::resource::k8s::CONTAINER_NAME_VAR),
            ecs_metadata_uri: get(crate::resource::ecs::METADATA_URI_VAR),
        }
    }
}

/// What to detect, where the files are, and how long it may take.
#[derive(Debug, Clone)]
pub(crate) struct DetectionInput {
    pub(crate) detectors: Vec<ResourceDetector>,
    /// The file-system root the local detectors read under (`/`; a fixture folder in tests).
    pub(crate) root: PathBuf,
    pub(crate) env: DetectorEnv,
    pub(crate) budget: Duration,
}

/// One detector that found nothing usable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DetectorProblem {
    pub(crate) detector: ResourceDetector,
    pub(crate) cause: String,
}

/// What the detectors found, in detector order.
#[derive(Debug, Clone, Default)]
pub(crate) struct Detection {
    pub(crate) attributes: Vec<KeyValue>,
    pub(crate) problems: Vec<DetectorProblem>,
    pub(crate) elapsed: Duration,
}

type Found = Result<Vec<KeyValue>, String>;

pub(crate) fn detect(input: DetectionInput) -> Detection {
    let started = Instant::now();
    let deadline = started + input.budget;
    let (tx, rx) = mpsc::channel::<(ResourceDetector, Found)>();
    let mut pending: Vec<ResourceDetector> = Vec::new();
    let mut problems = Vec::new();

    let local: Vec<ResourceDetector> = input
        .detectors
        .iter()
        .copied()
        .filter(|d| *d != ResourceDetector::Ecs)
        .collect();
    if !local.is_empty() {
        let (tx, root, env, detectors) = (
            tx.clone(),
            input.root.clone(),
            input.env.clone(),
            local.clone(),
        );
        let spawned = std::thread::Builder::new()
            .name("telemetry-detect".into())
            .spawn(move || {
                for detector in detectors {
                    let found = guarded(|| run_local(detector, &root, &env));
                    if tx.send((detector, found)).is_err() {
                        return;
                    }
                }
            });
        match spawned {
            Ok(_) => pending.extend(local),
            Err(e) => problems.extend(local.into_iter().map(|detector| DetectorProblem {
                detector,
                cause: format!("could not start the detection thread: {e}"),
            })),
        }
    }
    // Gated on the variable the ECS agent sets: anywhere else no request is made.
    if let Some(uri) = input
        .env
        .ecs_metadata_uri
        .clone()
        .filter(|_| input.detectors.contains(&ResourceDetector::Ecs))
    {
        let tx = tx.clone();
        // Leaves time to report a timeout before the caller stops waiting.
        let ecs_deadline = deadline - (input.budget / 10).min(Duration::from_millis(20));
        let spawned = std::thread::Builder::new()
            .name("telemetry-detect-ecs".into())
            .spawn(move || {
                let found = guarded(|| super::ecs::detect(&uri, ecs_deadline));
                let _ = tx.send((ResourceDetector::Ecs, found));
            });
        match spawned {
            Ok(_) => pending.push(ResourceDetector::Ecs),
            Err(e) => problems.push(DetectorProblem {
                detector: ResourceDetector::Ecs,
                cause: format!("could not start the detection thread: {e}"),
            }),
        }
    }
    drop(tx);

    let mut found: Vec<(ResourceDetector, Vec<KeyValue>)> = Vec::new();
    while !pending.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((detector, result)) => {
                pending.retain(|d| *d != detector);
                match result {
                    Ok(attributes) => found.push((detector, attributes)),
                    Err(cause) => problems.push(DetectorProblem { detector, cause }),
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                problems.extend(pending.drain(..).map(|detector| DetectorProblem {
                    detector,
                    cause: format!(
                        "did not finish within {} ms, skipped",
                        input.budget.as_millis()
                    ),
                }));
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                problems.extend(pending.drain(..).map(|detector| DetectorProblem {
                    detector,
                    cause: "stopped without a result".to_owned(),
                }));
            }
        }
    }
    found.sort_by_key(|(d, _)| ResourceDetector::ALL.iter().position(|x| x == d));
    problems.sort_by_key(|p| ResourceDetector::ALL.iter().position(|x| *x == p.detector));
    Detection {
        attributes: found.into_iter().flat_map(|(_, a)| a).collect(),
        problems,
        elapsed: started.elapsed(),
    }
}

/// A detector's panic becomes its problem, never the service's.
fn guarded(run: impl FnOnce() -> Found) -> Found {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(run))
        .unwrap_or_else(|_| Err("panicked".to_owned()))
}

fn run_local(detector: ResourceDetector, root: &std::path::Path, env: &DetectorEnv) -> Found {
    match detector {
        ResourceDetector::Host => Ok(super::host::host(root)),
        ResourceDetector::Os => Ok(super::host::os(root)),
        ResourceDetector::Process => Ok(super::host::process(root)),
        ResourceDetector::Container => super::container::detect(root),
        ResourceDetector::Kubernetes => super::k8s::detect(root, env),
        _ => Ok(Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_enabled_costs_nothing_and_finds_nothing() {
        let detection = detect(DetectionInput {
            detectors: Vec::new(),
            root: PathBuf::from("/nonexistent"),
            env: DetectorEnv::default(),
            budget: DETECTION_BUDGET,
        });
        assert!(detection.attributes.is_empty());
        assert!(detection.problems.is_empty());
    }

    #[test]
    fn ecs_is_not_asked_without_its_variable() {
        let detection = detect(DetectionInput {
            detectors: vec![ResourceDetector::Ecs],
            root: PathBuf::from("/nonexistent"),
            env: DetectorEnv::default(),
            budget: DETECTION_BUDGET,
        });
        assert!(detection.attributes.is_empty() && detection.problems.is_empty());
        assert!(
            detection.elapsed < Duration::from_millis(50),
            "{:?}",
            detection.elapsed
        );
    }
}
