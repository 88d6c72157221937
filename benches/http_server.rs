//! What a traced HTTP request costs in process (`tower::ServiceExt::oneshot` on an axum router,
//! no socket, so the layers' own work is what differs): `GET /orders/42` on a route
//! `/orders/{id}` that answers `ok`, the body read to the end, through:
//!
//! - `bare_router`: the router alone, the floor;
//! - `tower_http_trace`: tower-http's `TraceLayer::new_for_http()` with its response line at
//!   `info`, tracing-opentelemetry defaults behind the SDK's batch processor and
//!   `fmt().json()` writing that line: the common alternative, a span and a line per request;
//! - `ours`: `HttpServerLayer` with this crate installed, traces exported: a span with the HTTP
//!   conventions, a request line, and the `http.server.request.duration` histogram.
//!
//! Both exporting variants have a 65 536-span queue and are timed in stretches it can hold,
//! the exporter caught up untimed between them; each prints the spans it made and exported and
//! fails the run on a drop.
//!
//! Group `http_client_call` does the same for a tower HTTP client stack (see `http_client`),
//! and group `reqwest_middleware_call` for a reqwest-middleware client (see
//! `reqwest_middleware_call`, with the `reqwest` feature).
//!
//! Run with `cargo bench --bench http_server --features axum,reqwest`.

mod common;

use std::hint::black_box;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use common::{Tally, bench_counted};
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, criterion_group, criterion_main};
use http::Request;
use http_body_util::BodyExt as _;
use opentelemetry::trace::TracerProvider as _;
use service_telemetry::instrument::HttpServerLayer;
use tower::ServiceExt as _;
use tracing::dispatcher::Dispatch;
use tracing_subscriber::layer::SubscriberExt as _;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn routes() -> Router {
    Router::new().route("/orders/{id}", get(|| async { "ok" }))
}

/// One request through `router`, the response body read to the end.
async fn request(router: &Router) {
    let response = router
        .clone()
        .oneshot(
            Request::get("/orders/42")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("infallible");
    assert_eq!(response.status(), 200);
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    black_box(body);
}

/// Times requests through `router`; returns how many were made.
fn bench_requests(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    runtime: &tokio::runtime::Runtime,
    router: &Router,
    settle: &dyn Fn(),
) -> u64 {
    bench_counted(group, name, settle, || runtime.block_on(request(router)))
}

fn http_server(c: &mut Criterion) {
    let runtime = runtime();
    let mut group = c.benchmark_group("http_server_request");

    bench_requests(&mut group, "bare_router", &runtime, &routes(), &|| ());

    let (provider, exported) = parent_based_sdk();
    let dispatch = Dispatch::new(
        tracing_subscriber::registry()
            .with(tracing_subscriber::filter::LevelFilter::INFO)
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("bench")))
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::sink),
            ),
    );
    let made = tracing::dispatcher::with_default(&dispatch, || {
        let traced = routes().layer(
            tower_http::trace::TraceLayer::new_for_http()
                .make_span_with(
                    tower_http::trace::DefaultMakeSpan::new().level(tracing::Level::INFO),
                )
                .on_response(
                    tower_http::trace::DefaultOnResponse::new().level(tracing::Level::INFO),
                ),
        );
        let settle = || {
            let _ = provider.force_flush();
        };
        bench_requests(&mut group, "tower_http_trace", &runtime, &traced, &settle)
    });
    Tally::sdk_spans("tower_http_trace", made, &provider, &exported).check(true);
    let _ = provider.shutdown();

    let scoped = common::ours(common::Export::Traces, &[]);
    let traced = routes().layer(HttpServerLayer::new());
    let settle = || {
        let _ = scoped.telemetry().flush();
    };
    let made = bench_requests(&mut group, "ours", &runtime, &traced, &settle);
    Tally::ours_spans("ours", made, &scoped).check(true);
    drop(scoped);

    let scoped = common::ours_with(common::Export::Traces, &[], |builder| {
        builder.direct_spans()
    });
    let settle = || {
        let _ = scoped.telemetry().flush();
    };
    let made = bench_requests(&mut group, "ours_direct_spans", &runtime, &traced, &settle);
    Tally::ours_spans("ours_direct_spans", made, &scoped).check(true);
    group.finish();
}

/// One call through a client `service`: `GET http://backend.internal/orders/42`, answered at
/// once with `200 ok` by an in-process service, the response body read to the end.
async fn call<S, B>(service: &S)
where
    S: tower::Service<Request<Body>, Response = http::Response<B>> + Clone,
    S::Error: std::fmt::Debug,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let response = service
        .clone()
        .oneshot(
            Request::get("http://backend.internal/orders/42")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("call");
    assert_eq!(response.status(), 200);
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    black_box(body);
}

fn backend() -> impl tower::Service<
    Request<Body>,
    Response = http::Response<Body>,
    Error = std::convert::Infallible,
    Future = impl Send,
> + Clone {
    tower::service_fn(|_request: Request<Body>| async {
        Ok::<_, std::convert::Infallible>(http::Response::new(Body::from("ok")))
    })
}

fn bench_calls<S, B>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    runtime: &tokio::runtime::Runtime,
    service: &S,
    settle: &dyn Fn(),
) -> u64
where
    S: tower::Service<Request<Body>, Response = http::Response<B>> + Clone,
    S::Error: std::fmt::Debug,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    bench_counted(group, name, settle, || runtime.block_on(call(service)))
}

/// The SDK's provider as the alternatives use it: parent-based, always on, the batch
/// processor in front of a counting no-op exporter.
fn parent_based_sdk() -> (
    opentelemetry_sdk::trace::SdkTracerProvider,
    std::sync::Arc<std::sync::atomic::AtomicU64>,
) {
    common::sdk_provider(opentelemetry_sdk::trace::Sampler::ParentBased(Box::new(
        opentelemetry_sdk::trace::Sampler::AlwaysOn,
    )))
}

/// tracing-opentelemetry defaults at `info` over [`parent_based_sdk`]: what the client
/// alternatives record into.
fn client_spans_over_sdk() -> (
    Dispatch,
    opentelemetry_sdk::trace::SdkTracerProvider,
    std::sync::Arc<std::sync::atomic::AtomicU64>,
) {
    let (provider, exported) = parent_based_sdk();
    let dispatch = Dispatch::new(
        tracing_subscriber::registry()
            .with(tracing_subscriber::filter::LevelFilter::INFO)
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("bench"))),
    );
    (dispatch, provider, exported)
}

/// The client side, the same way: a tower HTTP client stack in front of an in-process backend,
/// bare, with tower-http's `TraceLayer` (span at `info`, no line, as ours writes none) over
/// tracing-opentelemetry, and with `HttpClientLayer` (CLIENT span, the client conventions, the
/// trace context injected into the request).
fn http_client(c: &mut Criterion) {
    use tower::Layer as _;
    let runtime = runtime();
    let mut group = c.benchmark_group("http_client_call");

    bench_calls(&mut group, "bare_service", &runtime, &backend(), &|| ());

    let (dispatch, provider, exported) = client_spans_over_sdk();
    let made = tracing::dispatcher::with_default(&dispatch, || {
        let traced = tower_http::trace::TraceLayer::new_for_http()
            .make_span_with(tower_http::trace::DefaultMakeSpan::new().level(tracing::Level::INFO))
            .layer(backend());
        let settle = || {
            let _ = provider.force_flush();
        };
        bench_calls(&mut group, "tower_http_trace", &runtime, &traced, &settle)
    });
    Tally::sdk_spans("client tower_http_trace", made, &provider, &exported).check(true);
    let _ = provider.shutdown();

    let scoped = common::ours(common::Export::Traces, &[]);
    let traced = service_telemetry::instrument::HttpClientLayer::new().layer(backend());
    let settle = || {
        let _ = scoped.telemetry().flush();
    };
    let made = bench_calls(&mut group, "ours", &runtime, &traced, &settle);
    Tally::ours_spans("client ours", made, &scoped).check(true);
    drop(scoped);

    let scoped = common::ours_with(common::Export::Traces, &[], |builder| {
        builder.direct_spans()
    });
    let settle = || {
        let _ = scoped.telemetry().flush();
    };
    let made = bench_calls(&mut group, "ours_direct_spans", &runtime, &traced, &settle);
    Tally::ours_spans("client ours_direct_spans", made, &scoped).check(true);
    group.finish();
}

/// The last middleware of every reqwest variant: answers `200 ok` at once, no socket, so the
/// middlewares in front of it are what differs.
#[cfg(feature = "reqwest")]
struct Answer;

#[cfg(feature = "reqwest")]
#[async_trait::async_trait]
impl reqwest_middleware::Middleware for Answer {
    async fn handle(
        &self,
        _request: reqwest::Request,
        _extensions: &mut http::Extensions,
        _next: reqwest_middleware::Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        Ok(reqwest::Response::from(http::Response::new("ok")))
    }
}

#[cfg(feature = "reqwest")]
fn reqwest_client(
    traced: Option<std::sync::Arc<dyn reqwest_middleware::Middleware>>,
) -> reqwest_middleware::ClientWithMiddleware {
    let mut builder = reqwest_middleware::ClientBuilder::new(reqwest::Client::new());
    if let Some(middleware) = traced {
        builder = builder.with_arc(middleware);
    }
    builder.with(Answer).build()
}

#[cfg(feature = "reqwest")]
async fn reqwest_call(client: &reqwest_middleware::ClientWithMiddleware) {
    let response = client
        .get("http://backend.internal/orders/42")
        .send()
        .await
        .expect("call");
    assert_eq!(response.status(), 200);
    black_box(response.bytes().await.expect("body"));
}

/// A reqwest-middleware client, the same way: bare, with reqwest-tracing's `TracingMiddleware`
/// over tracing-opentelemetry (its span with the client conventions; reqwest-tracing 0.7 has no
/// OpenTelemetry 0.33 feature, so it injects no context and does less than ours), and with
/// `ReqwestMiddleware` (CLIENT span, the conventions, the trace context injected).
#[cfg(feature = "reqwest")]
fn reqwest_middleware_call(c: &mut Criterion) {
    let runtime = runtime();
    let mut group = c.benchmark_group("reqwest_middleware_call");

    let bare = reqwest_client(None);
    bench_counted(&mut group, "bare_client", &|| (), || {
        runtime.block_on(reqwest_call(&bare))
    });

    let (dispatch, provider, exported) = client_spans_over_sdk();
    let made = tracing::dispatcher::with_default(&dispatch, || {
        let traced = reqwest_client(Some(std::sync::Arc::new(
            reqwest_tracing::TracingMiddleware::default(),
        )));
        let settle = || {
            let _ = provider.force_flush();
        };
        bench_counted(&mut group, "reqwest_tracing", &settle, || {
            runtime.block_on(reqwest_call(&traced))
        })
    });
    Tally::sdk_spans("reqwest_tracing", made, &provider, &exported).check(true);
    let _ = provider.shutdown();

    let scoped = common::ours(common::Export::Traces, &[]);
    let traced = reqwest_client(Some(std::sync::Arc::new(
        service_telemetry::instrument::ReqwestMiddleware::new(),
    )));
    let settle = || {
        let _ = scoped.telemetry().flush();
    };
    let made = bench_counted(&mut group, "ours", &settle, || {
        runtime.block_on(reqwest_call(&traced))
    });
    Tally::ours_spans("reqwest ours", made, &scoped).check(true);
    group.finish();
}

#[cfg(not(feature = "reqwest"))]
fn reqwest_middleware_call(_: &mut Criterion) {
    eprintln!("reqwest_middleware_call: skipped (needs --features axum,reqwest)");
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50).measurement_time(std::time::Duration::from_secs(4));
    targets = http_server, http_client, reqwest_middleware_call
}
criterion_main!(benches);
