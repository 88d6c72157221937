//! What the gRPC server layer costs for one call and for each streamed message, in process (no
//! socket, so the layer's own work is what differs): a bidirectional call of N request and N
//! response messages (8-byte payloads, gRPC length-prefixed, `grpc-status: 0` trailers),
//! driven to the end of the response, for N = 1 (unary) and N = 32, through:
//!
//! - `plain`: the service alone, the floor;
//! - `tower_http_trace`: tower-http's `TraceLayer::new_for_grpc()` with tracing-opentelemetry
//!   defaults behind the SDK's batch processor: the common alternative, one span per call and
//!   nothing per message;
//! - `ours`: `GrpcServerLayer` with this crate installed, traces exported: one span per call
//!   and, from the second message of a direction, a child span per message (up to 64).
//!
//! The per-message cost is the slope between the two N. Each variant prints the spans its
//! exporter received and the spans dropped, so a variant cannot look cheap by dropping.
//!
//! Run with `cargo bench --bench grpc_stream --features tonic`.

mod common;

use std::convert::Infallible;
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, criterion_group, criterion_main};
use http::{HeaderMap, Request, Response};
use http_body::Frame;
use http_body_util::{BodyExt as _, StreamBody};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use service_telemetry::instrument::{GrpcServerLayer, MAX_MESSAGE_SPANS};
use tower::{Layer, Service, ServiceExt as _};
use tracing::dispatcher::Dispatch;
use tracing_subscriber::layer::SubscriberExt as _;

type Frames = tokio_stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>;
type GrpcBody = StreamBody<Frames>;

/// tracing-opentelemetry defaults over the SDK's batch processor with a counting no-op
/// exporter, for tower-http's `TraceLayer`.
fn tower_http_subscriber() -> (Dispatch, SdkTracerProvider, Arc<AtomicU64>) {
    let (provider, exported) =
        common::sdk_provider(opentelemetry_sdk::trace::Sampler::ParentBased(Box::new(
            opentelemetry_sdk::trace::Sampler::AlwaysOn,
        )));
    let dispatch = Dispatch::new(
        tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("bench"))),
    );
    (dispatch, provider, exported)
}

/// This crate installed for the thread, traces to a counting no-op exporter. The queue is
/// 65 536: 65 spans a call arrive faster than a 2048-span queue drains between batches.
fn ours_installed() -> (service_telemetry::ScopedTelemetry, Arc<AtomicU64>) {
    let exporter = common::NoopSpanExporter::default();
    let exported = exporter.0.clone();
    let scoped = service_telemetry::Telemetry::builder()
        .with_writer(common::Discard)
        .without_panic_hook()
        .env_lookup(common::lookup(common::KEEP_UP_ENV))
        .with_span_exporter(exporter)
        .set_default();
    (scoped, exported)
}

/// N messages of 8 bytes, each its own data frame, then `trailers` when given.
fn body(messages: usize, trailers: Option<HeaderMap>) -> GrpcBody {
    let mut frames: Vec<Result<Frame<Bytes>, Infallible>> = (0..messages)
        .map(|i| {
            let mut message = vec![0u8, 0, 0, 0, 8];
            message.extend_from_slice(&(i as u64).to_be_bytes());
            Ok(Frame::data(Bytes::from(message)))
        })
        .collect();
    if let Some(trailers) = trailers {
        frames.push(Ok(Frame::trailers(trailers)));
    }
    StreamBody::new(tokio_stream::iter(frames))
}

fn ok_trailers() -> HeaderMap {
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
    trailers
}

fn request(messages: usize) -> Request<GrpcBody> {
    Request::builder()
        .method("POST")
        .uri("http://127.0.0.1:50051/echo.v1.Echo/Chat")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(body(messages, None))
        .expect("request")
}

/// Reads the whole request stream, then answers with as many messages.
async fn echo<B: http_body::Body>(request: Request<B>) -> Result<Response<GrpcBody>, Infallible> {
    let mut inbound = std::pin::pin!(request.into_body());
    let mut messages = 0;
    while let Some(frame) = inbound.frame().await {
        if frame.is_ok_and(|f| f.is_data()) {
            messages += 1;
        }
    }
    let mut response = Response::new(body(messages, Some(ok_trailers())));
    response.headers_mut().insert(
        "content-type",
        http::HeaderValue::from_static("application/grpc"),
    );
    Ok(response)
}

/// One call through `service`, its response read to the trailers; returns the calls made.
fn bench_calls<S, B>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    messages: usize,
    runtime: &tokio::runtime::Runtime,
    service: S,
) -> u64
where
    S: Service<Request<GrpcBody>, Response = Response<B>> + Clone,
    S::Error: std::fmt::Debug,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let calls = AtomicU64::new(0);
    group.bench_with_input(BenchmarkId::new(name, messages), &messages, |b, &n| {
        b.iter(|| {
            calls.fetch_add(1, Ordering::Relaxed);
            runtime.block_on(async {
                let response = service.clone().oneshot(request(n)).await.expect("response");
                let collected = response.into_body().collect().await.expect("body");
                black_box(collected.trailers().is_some());
            })
        })
    });
    calls.into_inner()
}

/// Prints what a variant exported against what its calls made, and fails it if any was lost:
/// a variant that drops spans would look cheaper than the path it names.
fn report(variant: &str, messages: usize, calls: u64, spans_per_call: u64, exported: u64) {
    let expected = calls * spans_per_call;
    eprintln!(
        "{variant}/{messages}: {calls} calls, {expected} spans made, {exported} exported, {} dropped",
        expected.saturating_sub(exported)
    );
    assert_eq!(exported, expected, "{variant}/{messages} dropped spans");
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn grpc_stream(c: &mut Criterion) {
    let runtime = runtime();
    let mut group = c.benchmark_group("grpc_server_call");
    for messages in [1, 32] {
        let _ = bench_calls(
            &mut group,
            "plain",
            messages,
            &runtime,
            tower::service_fn(echo::<GrpcBody>),
        );

        let (dispatch, provider, exported) = tower_http_subscriber();
        let calls = tracing::dispatcher::with_default(&dispatch, || {
            let service = tower_http::trace::TraceLayer::new_for_grpc()
                .layer(tower::service_fn(echo::<GrpcBody>));
            bench_calls(&mut group, "tower_http_trace", messages, &runtime, service)
        });
        let _ = provider.force_flush();
        report(
            "tower_http_trace",
            messages,
            calls,
            1,
            exported.load(Ordering::Relaxed),
        );
        let _ = provider.shutdown();

        let (scoped, exported) = ours_installed();
        let service = GrpcServerLayer::new().layer(tower::service_fn(echo));
        let calls = bench_calls(&mut group, "ours", messages, &runtime, service);
        let _ = scoped.telemetry().flush();
        // The call's span, and from the second message a span per message each way.
        let message_spans = if messages > 1 {
            2 * (messages as u64).min(MAX_MESSAGE_SPANS)
        } else {
            0
        };
        report(
            "ours",
            messages,
            calls,
            1 + message_spans,
            exported.load(Ordering::Relaxed),
        );
        let stats = scoped.telemetry().export_stats();
        eprintln!(
            "ours/{messages}: the crate's ledger counts {} exported, {} dropped",
            stats.traces.exported, stats.traces.dropped
        );
    }
    group.finish();
}

/// One unary client call through `service` (tonic's request body type, as a `Channel` takes),
/// its response read to the trailers; returns the calls made.
fn bench_client_calls<S, B>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    runtime: &tokio::runtime::Runtime,
    service: S,
) -> u64
where
    S: Service<Request<tonic::body::Body>, Response = Response<B>> + Clone,
    S::Error: std::fmt::Debug,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let calls = AtomicU64::new(0);
    group.bench_function(name, |b| {
        b.iter(|| {
            calls.fetch_add(1, Ordering::Relaxed);
            runtime.block_on(async {
                let request = request(1).map(tonic::body::Body::new);
                let response = service.clone().oneshot(request).await.expect("response");
                let collected = response.into_body().collect().await.expect("body");
                black_box(collected.trailers().is_some());
            })
        })
    });
    calls.into_inner()
}

/// The client side of a unary call, the same way: `GrpcClientLayer` (a CLIENT span, the
/// trace context injected into the metadata) against tower-http's `TraceLayer::new_for_grpc()`
/// over tracing-opentelemetry, in front of the in-process echo service.
fn grpc_client(c: &mut Criterion) {
    let runtime = runtime();
    let mut group = c.benchmark_group("grpc_client_call");
    let _ = bench_client_calls(
        &mut group,
        "plain",
        &runtime,
        tower::service_fn(echo::<tonic::body::Body>),
    );

    let (dispatch, provider, exported) = tower_http_subscriber();
    let calls = tracing::dispatcher::with_default(&dispatch, || {
        let service = tower_http::trace::TraceLayer::new_for_grpc()
            .layer(tower::service_fn(echo::<tonic::body::Body>));
        bench_client_calls(&mut group, "tower_http_trace", &runtime, service)
    });
    let _ = provider.force_flush();
    report(
        "client tower_http_trace",
        1,
        calls,
        1,
        exported.load(Ordering::Relaxed),
    );
    let _ = provider.shutdown();

    let (scoped, exported) = ours_installed();
    let service = service_telemetry::instrument::GrpcClientLayer::for_target("127.0.0.1:50051")
        .layer(tower::service_fn(echo::<tonic::body::Body>));
    let calls = bench_client_calls(&mut group, "ours", &runtime, service);
    let _ = scoped.telemetry().flush();
    report("client ours", 1, calls, 1, exported.load(Ordering::Relaxed));
    group.finish();
}

criterion_group!(benches, grpc_stream, grpc_client);
criterion_main!(benches);
