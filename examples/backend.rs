//! The backend of the two-service example: HTTP on `PORT` (default 8081) and gRPC on
//! `GRPC_PORT` (default 50051), both instrumented, under the shutdown coordinator.
//!
//! `cargo run --example backend --features axum,tonic`, then run the gateway
//! (`examples/gateway.rs`) and `curl localhost:8080/`: one trace spans both processes.
//!
//! - `GET /api/items/{id}`: a JSON item, with a child span for the "database" work.
//! - gRPC `grpc.health.v1.Health/Check`: the standard health service (tonic-health), which
//!   turns `NOT_SERVING` when shutdown starts.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Json;
use axum::extract::Path;
use axum::routing::get;
use service_telemetry::instrument::{GrpcServerLayer, HttpServerLayer};
use service_telemetry::{Shutdown, health};
use tracing::{Instrument, info, info_span};

fn port(name: &str, default: u16) -> u16 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let telemetry = service_telemetry::Telemetry::builder()
        .service_name("example-backend")
        .service_version(env!("CARGO_PKG_VERSION"))
        .init();
    let mut shutdown = Shutdown::new(telemetry);
    let health = shutdown.health();

    let http = match tokio::net::TcpListener::bind(("0.0.0.0", port("PORT", 8081))).await {
        Ok(listener) => listener,
        Err(e) => {
            shutdown
                .handle()
                .fail(format!("cannot listen on PORT: {e}"));
            shutdown.run().await;
            return;
        }
    };
    let grpc = match tokio::net::TcpListener::bind(("0.0.0.0", port("GRPC_PORT", 50051))).await {
        Ok(listener) => listener,
        Err(e) => {
            shutdown
                .handle()
                .fail(format!("cannot listen on GRPC_PORT: {e}"));
            shutdown.run().await;
            return;
        }
    };
    let http_address = http.local_addr().map(|a| a.to_string()).unwrap_or_default();
    let grpc_address: Option<SocketAddr> = grpc.local_addr().ok();
    info!(
        http_address = %http_address,
        grpc_address = %grpc_address.map(|a| a.to_string()).unwrap_or_default(),
        "listening"
    );

    let app = axum::Router::new()
        .route("/api/items/{id}", get(item))
        .merge(health::router(health.clone()))
        .layer(HttpServerLayer::new());
    shutdown.spawn_service("drain http server", |stop| {
        axum::serve(http, app).with_graceful_shutdown(stop.cancelled_owned())
    });

    // SERVING once ready, NOT_SERVING from the moment shutdown starts.
    let health_service = health::grpc_health_service(&health);
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(grpc);
    shutdown.spawn_service("drain grpc server", |stop| {
        tonic::transport::Server::builder()
            .layer(GrpcServerLayer::new())
            .add_service(health_service)
            .serve_with_incoming_shutdown(incoming, stop.cancelled_owned())
    });

    shutdown.run().await;
}

async fn item(Path(id): Path<u64>) -> Json<serde_json::Value> {
    let row = async {
        tokio::time::sleep(Duration::from_millis(3)).await;
        info!(item.id = id, "item loaded");
        format!("item-{id}")
    }
    .instrument(info_span!("load item", item.id = id))
    .await;
    Json(serde_json::json!({ "id": id, "name": row }))
}
