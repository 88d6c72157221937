//! The gRPC health service (`grpc.health.v1.Health`, tonic-health) following [`Health`].

use std::future::Future;
use std::task::{Context, Poll, Waker};

use tonic_health::ServingStatus;
use tonic_health::pb::health_server::HealthServer;
use tonic_health::server::{HealthReporter, HealthService};

use super::{Health, HealthStatus, TARGET};

/// The standard gRPC health service for the overall server (service name `""`): `SERVING`
/// while [`Health`] is ready, `NOT_SERVING` while starting and from the moment shutdown
/// starts. Named checks are not consulted (a gRPC health `Check` has no place to say which
/// failed; serve `/readyz` for them). Other service names answer `NOT_FOUND`.
///
/// Call it inside a Tokio runtime: a task follows the state for as long as the server lives.
pub fn grpc_health_service(health: &Health) -> HealthServer<HealthService> {
    let reporter = HealthReporter::new();
    let mut states = health.subscribe();
    set_now(&reporter, serving(*states.borrow_and_update()));
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            let reporter = reporter.clone();
            runtime.spawn(async move {
                while states.changed().await.is_ok() {
                    let status = serving(*states.borrow_and_update());
                    reporter.set_service_status("", status).await;
                }
            });
        }
        Err(_) => tracing::error!(
            target: TARGET,
            "grpc_health_service called outside a Tokio runtime: the gRPC health status will not follow shutdown"
        ),
    }
    HealthServer::new(HealthService::from_health_reporter(reporter))
}

fn serving(status: HealthStatus) -> ServingStatus {
    match status {
        HealthStatus::Ready => ServingStatus::Serving,
        _ => ServingStatus::NotServing,
    }
}

/// Sets the first status before the server is handed out: the reporter's lock is new and
/// uncontended, so its future completes on the first poll.
fn set_now(reporter: &HealthReporter, status: ServingStatus) {
    let future = std::pin::pin!(reporter.set_service_status("", status));
    let mut cx = Context::from_waker(Waker::noop());
    if future.poll(&mut cx) == Poll::Pending {
        tracing::warn!(target: TARGET, "the gRPC health status could not be set at once");
    }
}
