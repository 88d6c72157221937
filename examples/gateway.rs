//! The gateway of the two-service example: HTTP on `PORT` (default 8080). Each `GET /` calls
//! the backend over HTTP (`BACKEND_URL`, default `http://127.0.0.1:8081`) with reqwest and over
//! gRPC (`BACKEND_GRPC_URL`, default `http://127.0.0.1:50051`) with tonic; one trace spans
//! both processes.
//!
//! `cargo run --example gateway --features axum,tonic,reqwest` (with the backend running),
//! then `curl localhost:8080/`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};
use service_telemetry::Shutdown;
use service_telemetry::instrument::{
    GrpcClient, GrpcClientLayer, HttpServerLayer, ReqwestMiddleware,
};
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use tower::ServiceBuilder;
use tracing::{info, warn};

#[derive(Clone)]
struct Backend {
    http: ClientWithMiddleware,
    url: String,
    grpc: HealthClient<GrpcClient<Channel>>,
}

#[tokio::main]
async fn main() {
    let telemetry = service_telemetry::Telemetry::builder()
        .service_name("example-gateway")
        .service_version(env!("CARGO_PKG_VERSION"))
        .init();
    let mut shutdown = Shutdown::new(telemetry);

    let url = std::env::var("BACKEND_URL").unwrap_or_else(|_| "http://127.0.0.1:8081".into());
    let grpc_url =
        std::env::var("BACKEND_GRPC_URL").unwrap_or_else(|_| "http://127.0.0.1:50051".into());
    // Connects lazily: the gateway starts even when the backend is not up yet.
    let channel = match Channel::from_shared(grpc_url.clone()) {
        Ok(endpoint) => endpoint.connect_lazy(),
        Err(e) => {
            shutdown
                .handle()
                .fail(format!("BACKEND_GRPC_URL {grpc_url:?} is not a URI: {e}"));
            shutdown.run().await;
            return;
        }
    };
    let backend = Backend {
        http: ClientBuilder::new(reqwest::Client::new())
            .with(ReqwestMiddleware::new())
            .build(),
        url,
        grpc: HealthClient::new(
            ServiceBuilder::new()
                .layer(GrpcClientLayer::for_target(&grpc_url))
                .service(channel),
        ),
    };

    let port = std::env::var("PORT")
        .ok()
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or(8080u16);
    let listener = match tokio::net::TcpListener::bind(("0.0.0.0", port)).await {
        Ok(listener) => listener,
        Err(e) => {
            shutdown
                .handle()
                .fail(format!("cannot listen on PORT: {e}"));
            shutdown.run().await;
            return;
        }
    };
    if let Ok(address) = listener.local_addr() {
        info!(address = %address, "listening");
    }
    let app = axum::Router::new()
        .route("/", get(root))
        .with_state(backend)
        .layer(HttpServerLayer::new());
    shutdown.spawn_service("drain http server", |stop| {
        axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned())
    });
    shutdown.run().await;
}

async fn root(State(mut backend): State<Backend>) -> (StatusCode, Json<serde_json::Value>) {
    let item = match backend
        .http
        .get(format!("{}/api/items/42", backend.url))
        .send()
        .await
    {
        Ok(response) => response.json::<serde_json::Value>().await.ok(),
        Err(e) => {
            warn!(error = %e, "backend HTTP call failed");
            None
        }
    };
    let health = match backend
        .grpc
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
    {
        Ok(response) => Some(response.into_inner().status),
        Err(status) => {
            warn!(code = ?status.code(), message = status.message(), "backend gRPC call failed");
            None
        }
    };
    let status = if item.is_some() && health.is_some() {
        StatusCode::OK
    } else {
        StatusCode::BAD_GATEWAY
    };
    info!(
        http_ok = item.is_some(),
        grpc_ok = health.is_some(),
        "gateway request served"
    );
    (
        status,
        Json(serde_json::json!({ "item": item, "backend_grpc_health": health })),
    )
}
