//! HTTP: the server layer (any tower/hyper server, axum's matched routes), the client layer
//! for tower clients, and the reqwest middleware, with the HTTP semantic conventions
//! (semconv v1.44.0 `docs/http/http-spans.md`, `http-metrics.md`).

pub(crate) mod client;
#[cfg(feature = "reqwest")]
mod reqwest;
mod server;

pub use client::{HttpClient, HttpClientLayer};
#[cfg(feature = "reqwest")]
pub use reqwest::ReqwestMiddleware;
pub use server::{DEFAULT_PROBE_PATHS, HttpRoute, HttpServer, HttpServerLayer};
