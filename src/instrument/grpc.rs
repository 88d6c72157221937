//! gRPC over HTTP/2 (tonic): one span per call, stream or not, with the RPC conventions.
//!
//! A streaming call is one span from the request to the end of the response stream. Each
//! message is a span event (`rpc.message`, with `rpc.message.type` `SENT`/`RECEIVED`,
//! `rpc.message.id` and `rpc.message.compressed_size`) rather than a child span: a stream can
//! carry millions of messages, and events cost no span each. Only the first
//! [`MAX_MESSAGE_EVENTS`] messages of each direction become events, so a long-lived stream
//! cannot grow the span without bound; the totals are recorded as `rpc.messages.sent` and
//! `rpc.messages.received` when the call ends.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use http::{HeaderMap, Request, Response};
use http_body::Body;
use opentelemetry::KeyValue;
use opentelemetry::trace::TraceContextExt as _;
use tower_layer::Layer;
use tower_service::Service;
use tracing::Span;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use super::TARGET;
use super::body::{InstrumentedBody, Observer, Unobserved};
use super::semconv;

/// Messages per direction recorded as span events.
pub const MAX_MESSAGE_EVENTS: u64 = 64;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Server,
    Client,
}

/// `/package.Service/Method` -> (`package.Service`, `Method`).
fn split_path(path: &str) -> (String, String) {
    let trimmed = path.trim_start_matches('/');
    match trimmed.split_once('/') {
        Some((service, method)) if !service.is_empty() && !method.is_empty() => {
            (service.to_owned(), method.to_owned())
        }
        _ => ("unknown".to_owned(), trimmed.to_owned()),
    }
}

fn grpc_status(headers: &HeaderMap) -> Option<i64> {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// Status codes that make a server span an error; a client span errs on every non-OK code.
fn is_server_error(code: i64) -> bool {
    // UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS
    matches!(code, 2 | 4 | 12 | 13 | 14 | 15)
}

/// Counts length-prefixed gRPC messages across data frames of any size.
#[derive(Default)]
struct Framing {
    header: [u8; 5],
    have: usize,
    remaining: u64,
}

impl Framing {
    fn feed(&mut self, mut data: &[u8], mut on_message: impl FnMut(u64)) {
        while !data.is_empty() {
            if self.remaining > 0 {
                let n = data
                    .len()
                    .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
                self.remaining -= n as u64;
                data = &data[n..];
                continue;
            }
            let n = (5 - self.have).min(data.len());
            self.header[self.have..self.have + n].copy_from_slice(&data[..n]);
            self.have += n;
            data = &data[n..];
            if self.have == 5 {
                let len = u32::from_be_bytes([
                    self.header[1],
                    self.header[2],
                    self.header[3],
                    self.header[4],
                ]);
                self.have = 0;
                self.remaining = u64::from(len);
                on_message(u64::from(len));
            }
        }
    }
}

/// The part of a call each body observer shares.
struct Call {
    span: Span,
    side: Side,
    started: Instant,
    service: String,
    method: String,
    address: String,
    port: Option<u16>,
    status: Option<i64>,
    sent: u64,
    received: u64,
    finished: bool,
}

/// A call whose future is dropped before any response is still timed and recorded.
impl Drop for Call {
    fn drop(&mut self) {
        self.finish(false, None);
    }
}

type Shared = std::sync::Arc<std::sync::Mutex<Call>>;

fn lock(call: &Shared) -> std::sync::MutexGuard<'_, Call> {
    call.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Call {
    fn message(&mut self, sent: bool, size: u64) {
        let id = if sent {
            self.sent += 1;
            self.sent
        } else {
            self.received += 1;
            self.received
        };
        if id <= MAX_MESSAGE_EVENTS {
            self.span.add_event(
                "rpc.message",
                vec![
                    KeyValue::new("rpc.message.type", if sent { "SENT" } else { "RECEIVED" }),
                    KeyValue::new("rpc.message.id", id as i64),
                    KeyValue::new("rpc.message.compressed_size", size as i64),
                ],
            );
        }
    }

    /// `complete` is false when the response stream was dropped before its end.
    fn finish(&mut self, complete: bool, error: Option<String>) {
        if self.finished {
            return;
        }
        self.finished = true;
        // No status: a stream dropped before its end was cancelled (by the client, or the
        // client went away); one that ended without a status is UNKNOWN.
        let cancelled_here = self.status.is_none() && !complete && error.is_none();
        let code = self
            .status
            .unwrap_or(if complete && error.is_none() { 2 } else { 1 });
        self.span.record("rpc.grpc.status_code", code);
        self.span
            .set_attribute("rpc.messages.sent", self.sent as i64);
        self.span
            .set_attribute("rpc.messages.received", self.received as i64);
        let failed = match self.side {
            Side::Server => is_server_error(code),
            // A client that drops its own stream cancelled it on purpose.
            Side::Client => code != 0 && !cancelled_here,
        };
        if failed {
            self.span.record("error.type", code.to_string());
            self.span.record("otel.status_code", "ERROR");
            if let Some(error) = &error {
                self.span.record("otel.status_description", error.as_str());
            }
        }
        let elapsed = self.started.elapsed();
        let mut attributes = vec![
            KeyValue::new("rpc.system", "grpc"),
            KeyValue::new("rpc.service", self.service.clone()),
            KeyValue::new("rpc.method", self.method.clone()),
            KeyValue::new("rpc.grpc.status_code", code),
            KeyValue::new("server.address", self.address.clone()),
        ];
        if let Some(port) = self.port {
            attributes.push(KeyValue::new("server.port", i64::from(port)));
        }
        let instruments = semconv::instruments();
        let histogram = match self.side {
            Side::Server => &instruments.rpc_server_duration,
            Side::Client => &instruments.rpc_client_duration,
        };
        histogram.record(elapsed.as_secs_f64(), &attributes);
        if self.side == Side::Server {
            let duration_ms = elapsed.as_secs_f64() * 1000.0;
            tracing::info!(
                target: TARGET,
                parent: &self.span,
                duration_ms,
                rpc.service = %self.service,
                rpc.method = %self.method,
                rpc.grpc.status_code = code,
                "{}/{} grpc-status {code} {duration_ms:.1} ms",
                self.service,
                self.method
            );
        }
        self.span = Span::none();
    }
}

/// Observes one direction of a call.
struct Direction {
    call: Shared,
    sent: bool,
    framing: Framing,
    /// The response side ends the call; the request side only counts.
    ends_call: bool,
}

impl Observer for Direction {
    fn on_data(&mut self, data: &[u8]) {
        let mut call = lock(&self.call);
        let sent = self.sent;
        self.framing.feed(data, |size| call.message(sent, size));
    }

    fn on_trailers(&mut self, trailers: &HeaderMap) {
        if let Some(code) = grpc_status(trailers) {
            lock(&self.call).status = Some(code);
        }
    }

    fn on_end(&mut self, complete: bool, error: Option<String>) {
        if self.ends_call {
            lock(&self.call).finish(complete, error);
        }
    }
}

fn start_call<B>(request: &Request<B>, side: Side) -> Shared {
    let (service, method) = split_path(request.uri().path());
    let (address, port) = semconv::server_address(request);
    let name = format!("{service}/{method}");
    let kind = match side {
        Side::Server => "server",
        Side::Client => "client",
    };
    let span = tracing::info_span!(
        target: TARGET,
        "gRPC call",
        otel.name = %name,
        otel.kind = kind,
        rpc.system = "grpc",
        rpc.service = %service,
        rpc.method = %method,
        server.address = address.as_str(),
        server.port = port.map(i64::from),
        rpc.grpc.status_code = Empty,
        error.type = Empty,
        otel.status_code = Empty,
        otel.status_description = Empty,
    );
    if side == Side::Server {
        let parent = crate::propagation::extract_headers(request.headers());
        if parent.span().span_context().is_valid() {
            let _ = span.set_parent(parent);
        }
    }
    std::sync::Arc::new(std::sync::Mutex::new(Call {
        span,
        side,
        started: Instant::now(),
        service,
        method,
        address,
        port,
        status: None,
        sent: 0,
        received: 0,
        finished: false,
    }))
}

fn observe<B: Body>(body: B, call: &Shared, sent: bool, ends_call: bool) -> InstrumentedBody<B> {
    InstrumentedBody::new(
        body,
        Box::new(Direction {
            call: call.clone(),
            sent,
            framing: Framing::default(),
            ends_call,
        }),
    )
}

/// For tonic servers: `Server::builder().layer(GrpcServerLayer::new())`. One `SERVER` span
/// per call named `{rpc.service}/{rpc.method}`, continuing the caller's trace, with
/// `rpc.system`, `rpc.service`, `rpc.method`, `rpc.grpc.status_code`, message events, the
/// `rpc.server.call.duration` histogram and one log line per call.
#[derive(Clone, Debug, Default)]
pub struct GrpcServerLayer {
    _private: (),
}

impl GrpcServerLayer {
    /// The layer.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<S> Layer<S> for GrpcServerLayer {
    type Service = GrpcServer<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcServer { inner }
    }
}

/// For tonic clients: wrap the channel,
/// `FooClient::new(ServiceBuilder::new().layer(GrpcClientLayer::new()).service(channel))`.
/// One `CLIENT` span per call with the trace context injected into the metadata.
#[derive(Clone, Debug, Default)]
pub struct GrpcClientLayer {
    _private: (),
}

impl GrpcClientLayer {
    /// The layer.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<S> Layer<S> for GrpcClientLayer {
    type Service = GrpcClient<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcClient { inner }
    }
}

/// The service made by [`GrpcServerLayer`].
#[derive(Clone, Debug)]
pub struct GrpcServer<S> {
    inner: S,
}

/// The service made by [`GrpcClientLayer`].
#[derive(Clone, Debug)]
pub struct GrpcClient<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for GrpcServer<S>
where
    S: Service<Request<InstrumentedBody<ReqBody>>, Response = Response<ResBody>>,
    S::Error: std::fmt::Display,
    ReqBody: Body,
    ResBody: Body,
{
    type Response = Response<InstrumentedBody<ResBody>>;
    type Error = S::Error;
    type Future = GrpcFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let call = start_call(&request, Side::Server);
        let request = request.map(|body| observe(body, &call, false, false));
        let span = lock(&call).span.clone();
        let inner = span.in_scope(|| self.inner.call(request));
        GrpcFuture {
            inner,
            call: Some(call),
            span,
        }
    }
}

/// tonic's `Channel` takes `tonic::body::Body` only, so the observed request body is boxed
/// back into one.
impl<S, ResBody> Service<Request<tonic::body::Body>> for GrpcClient<S>
where
    S: Service<Request<tonic::body::Body>, Response = Response<ResBody>>,
    S::Error: std::fmt::Display,
    ResBody: Body,
{
    type Response = Response<InstrumentedBody<ResBody>>;
    type Error = S::Error;
    type Future = GrpcFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<tonic::body::Body>) -> Self::Future {
        let call = start_call(&request, Side::Client);
        let span = lock(&call).span.clone();
        let (mut parts, body) = request.into_parts();
        crate::propagation::inject_context(&span.context(), &mut parts.headers);
        let body = tonic::body::Body::new(observe(body, &call, true, false));
        let request = Request::from_parts(parts, body);
        let inner = span.in_scope(|| self.inner.call(request));
        GrpcFuture {
            inner,
            call: Some(call),
            span,
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`GrpcServer`] and [`GrpcClient`].
    pub struct GrpcFuture<F> {
        #[pin]
        inner: F,
        call: Option<Shared>,
        span: Span,
    }
}

impl<F, ResBody, E> Future for GrpcFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
    E: std::fmt::Display,
    ResBody: Body,
{
    type Output = Result<Response<InstrumentedBody<ResBody>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let polled = {
            let _entered = this.span.enter();
            this.inner.poll(cx)
        };
        let Poll::Ready(result) = polled else {
            return Poll::Pending;
        };
        let Some(call) = this.call.take() else {
            // Polled after completion: the inner future decides what that means.
            return Poll::Ready(
                result.map(|r| r.map(|b| InstrumentedBody::new(b, Box::new(Unobserved)))),
            );
        };
        Poll::Ready(match result {
            Ok(response) => {
                let sent_by_us = lock(&call).side == Side::Server;
                {
                    let mut state = lock(&call);
                    // A trailers-only response (an immediate error) carries the status here.
                    if let Some(code) = grpc_status(response.headers()) {
                        state.status = Some(code);
                    } else if !response.status().is_success() {
                        state.status = Some(http_to_grpc(response.status().as_u16()));
                    }
                }
                Ok(response.map(|body| observe(body, &call, sent_by_us, true)))
            }
            Err(e) => {
                let mut state = lock(&call);
                state.status = Some(if state.side == Side::Server { 13 } else { 14 });
                state.finish(true, Some(e.to_string()));
                Err(e)
            }
        })
    }
}

/// The gRPC spec's mapping of HTTP statuses seen instead of a gRPC status.
fn http_to_grpc(status: u16) -> i64 {
    match status {
        400 => 13,
        401 => 16,
        403 => 7,
        404 => 12,
        429 | 502 | 503 | 504 => 14,
        _ => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(
            split_path("/grpc.health.v1.Health/Check"),
            ("grpc.health.v1.Health".into(), "Check".into())
        );
        assert_eq!(split_path("/odd"), ("unknown".into(), "odd".into()));
        assert_eq!(split_path(""), ("unknown".into(), "".into()));
    }

    #[test]
    fn framing_counts_messages_split_and_merged_across_frames() {
        let mut wire = Vec::new();
        for len in [3u32, 0, 70_000, 1] {
            wire.push(0);
            wire.extend_from_slice(&len.to_be_bytes());
            wire.extend(std::iter::repeat_n(7u8, len as usize));
        }
        for chunk in [1, 2, 5, 7, 4096, wire.len()] {
            let mut framing = Framing::default();
            let mut sizes = Vec::new();
            for piece in wire.chunks(chunk) {
                framing.feed(piece, |len| sizes.push(len));
            }
            assert_eq!(sizes, [3, 0, 70_000, 1], "chunk size {chunk}");
        }
    }
}
