//! The probe endpoints as an axum router.

use axum::Router;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;

use super::Health;

/// `GET /livez` (liveness), `GET /readyz` (readiness with the named checks) and `GET /health`
/// (readiness, kept for compatibility), each a JSON body. Merge it into the service's router
/// (`app.merge(health::router(health))`); [`HttpServerLayer`](crate::instrument::HttpServerLayer)
/// counts these paths in its metrics but makes no span or log line for them.
pub fn router(health: Health) -> Router {
    let live = health.clone();
    let ready = health.clone();
    Router::new()
        .route("/livez", get(move || liveness(live.clone())))
        .route("/readyz", get(move || readiness(ready.clone())))
        .route("/health", get(move || readiness(health.clone())))
}

async fn liveness(health: Health) -> impl IntoResponse {
    let answer = health.liveness();
    (
        answer.http_status(),
        [(CONTENT_TYPE, "application/json")],
        answer.to_json(),
    )
}

async fn readiness(health: Health) -> impl IntoResponse {
    let answer = health.readiness().await;
    (
        answer.http_status(),
        [(CONTENT_TYPE, "application/json")],
        answer.to_json(),
    )
}
