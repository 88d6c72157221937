//! Drop-in instrumentation: every HTTP and gRPC request a span, with the OpenTelemetry
//! semantic conventions, W3C context propagation, duration histograms and one log line per
//! request.
//!
//! | Layer | Span | Metric |
//! |---|---|---|
//! | [`HttpServerLayer`] (axum, hyper) | `SERVER` `{method} {route}` | `http.server.request.duration`, `http.server.active_requests` |
//! | [`HttpClientLayer`] (tower clients), `ReqwestMiddleware` (feature `reqwest`) | `CLIENT` `{method}` | `http.client.request.duration` |
//! | `GrpcServerLayer` (tonic servers, feature `tonic`) | `SERVER` `{rpc.method}` (`package.Service/Method`), a child per stream message | `rpc.server.call.duration` |
//! | `GrpcClientLayer` (tonic channels, feature `tonic`) | `CLIENT` `{rpc.method}`, a child per stream message | `rpc.client.call.duration` |
//! | `sqlx::TracedPool` (PostgreSQL, feature `sqlx`) | `CLIENT` `{db.query.summary}` (`SELECT orders`) | `db.client.operation.duration` |
//! | `redis::TracedConnection` (feature `redis`) | `CLIENT` `{command}` | `db.client.operation.duration` |
//!
//! Spans are `tracing` spans exported through `tracing-opentelemetry`, so every log line
//! written while handling a request carries its trace id. A server span lasts until the last
//! byte of the response body (streams included); a gRPC stream is one span for its whole life.
//!
//! Build layers after `init` or not: the instruments are created on first use, from the global
//! meter provider in place then.
//!
//! Layout: one folder per protocol (`http/`, `grpc/`, `db/`, each with its whole story) around
//! the shared conventions module (`semconv.rs`: names, value mappings, redaction, instruments)
//! and the body observer the HTTP and gRPC layers share (`body.rs`).

#[cfg(feature = "tower")]
mod body;
#[cfg(any(feature = "sqlx", feature = "redis"))]
mod db;
#[cfg(feature = "tonic")]
mod grpc;
#[cfg(feature = "tower")]
mod http;
#[cfg(feature = "tower")]
mod semconv;

#[cfg(feature = "tower")]
pub use body::InstrumentedBody;
#[cfg(any(feature = "sqlx", feature = "redis"))]
pub use db::DEFAULT_MAX_QUERY_TEXT_LEN;
#[cfg(feature = "redis")]
pub use db::redis;
#[cfg(feature = "sqlx")]
pub use db::sqlx;
#[cfg(feature = "tonic")]
pub use grpc::{GrpcClient, GrpcClientLayer, GrpcServer, GrpcServerLayer, MAX_MESSAGE_SPANS};
#[cfg(feature = "reqwest")]
pub use http::ReqwestMiddleware;
#[cfg(feature = "tower")]
pub use http::{
    DEFAULT_PROBE_PATHS, HttpClient, HttpClientLayer, HttpRoute, HttpServer, HttpServerLayer,
};

pub(crate) const TARGET: &str = "service_telemetry::instrument";

#[cfg(feature = "tower")]
pub(crate) use semconv::set_rpc_conventions;
#[cfg(feature = "tower")]
pub use semconv::{SENSITIVE_QUERY_PARAMETERS, redact_query_parameters};
