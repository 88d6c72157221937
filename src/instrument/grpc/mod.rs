//! gRPC over HTTP/2 (tonic): one span per call, stream or not, with the RPC conventions of
//! semconv v1.44.0 (`docs/rpc/grpc.md`, `docs/rpc/rpc-spans.md`, `docs/rpc/rpc-metrics.md`).
//!
//! A streaming call is one span from the request to the end of the response stream ("the span
//! covers the full lifetime of the request and/or response streams"). The messages are counted
//! from the gRPC length prefixes and recorded when the call ends as
//! `service_telemetry.rpc.messages.sent` / `.received` (the conventions define no such
//! attribute, so the names are in the crate's namespace). The `rpc.message` events are
//! deprecated in v1.44.0 with no replacement; they are emitted only where the v1.37.0
//! names are ([`crate::RpcConventions`]: `rpc/dup` or the experimental mode), for the first
//! [`MAX_MESSAGE_EVENTS`] messages of each direction.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::{HeaderMap, Request, Response};
use http_body::Body;
use opentelemetry::KeyValue;
use opentelemetry::trace::TraceContextExt as _;
use tower_layer::Layer;
use tower_service::Service;
use tracing::Span;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::instrument::TARGET;
use crate::instrument::body::{InstrumentedBody, Observer, Unobserved};
use crate::instrument::semconv;

/// Messages per direction of one streaming call recorded as child spans; the rest are counted
/// in `service_telemetry.rpc.message_spans.dropped`.
pub const MAX_MESSAGE_SPANS: u64 = 64;

/// Messages per direction recorded as `rpc.message` span events (with `rpc/dup` only).
pub const MAX_MESSAGE_EVENTS: u64 = 64;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Server,
    Client,
}

/// `/package.Service/Method` -> (`package.Service`, `Method`); `None` for a path that names no
/// method.
fn split_path(path: &str) -> Option<(String, String)> {
    let trimmed = path.trim_start_matches('/');
    match trimmed.split_once('/') {
        Some((service, method))
            if !service.is_empty() && !method.is_empty() && !method.contains('/') =>
        {
            Some((service.to_owned(), method.to_owned()))
        }
        _ => None,
    }
}

fn grpc_status(headers: &HeaderMap) -> Option<i64> {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// The call's deadline as a `grpc-timeout` header gives it (PROTOCOL-HTTP2.md: up to eight
/// digits and a unit of `H`, `M`, `S`, `m`, `u` or `n`); a malformed value is no deadline.
fn grpc_timeout(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get("grpc-timeout")?.to_str().ok()?;
    let unit = value.chars().last()?;
    let digits = &value[..value.len() - unit.len_utf8()];
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        'H' => Duration::from_secs(amount * 3600),
        'M' => Duration::from_secs(amount * 60),
        'S' => Duration::from_secs(amount),
        'm' => Duration::from_millis(amount),
        'u' => Duration::from_micros(amount),
        'n' => Duration::from_nanos(amount),
        _ => return None,
    })
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
    /// When a client's `grpc-timeout` runs out.
    deadline: Option<Instant>,
    /// `package.Service/Method` as requested, or the raw path when it names no method.
    requested: String,
    /// (`package.Service`, `Method`), when the path names a method.
    parts: Option<(String, String)>,
    /// Which conventions' names the call emits.
    names: semconv::RpcNames,
    address: String,
    port: Option<u16>,
    status: Option<i64>,
    sent: u64,
    received: u64,
    /// The first message of each direction (sent, received), held back until a second one
    /// shows the call is a stream: a unary call gets no message spans.
    first: [Option<(std::time::SystemTime, u64)>; 2],
    message_spans_dropped: u64,
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
        if self.names.experimental && id <= MAX_MESSAGE_EVENTS {
            self.span.add_event(
                "rpc.message",
                vec![
                    KeyValue::new("rpc.message.type", if sent { "SENT" } else { "RECEIVED" }),
                    KeyValue::new("rpc.message.id", id as i64),
                    KeyValue::new("rpc.message.compressed_size", size as i64),
                ],
            );
        }
        let now = std::time::SystemTime::now();
        let slot = usize::from(!sent);
        match id {
            1 => self.first[slot] = Some((now, size)),
            2 => {
                if let Some((at, first_size)) = self.first[slot].take() {
                    self.message_span(sent, 1, first_size, at);
                }
                self.message_span(sent, 2, size, now);
            }
            _ if id <= MAX_MESSAGE_SPANS => self.message_span(sent, id, size, now),
            _ => self.message_spans_dropped += 1,
        }
    }

    /// One message of a stream as a child span of the call, `{rpc.method} send` or
    /// `{rpc.method} receive` (the operation names of the messaging conventions; the RPC
    /// conventions define none for messages). Built with the OpenTelemetry API so the first
    /// message, recorded once the second shows a stream, keeps its own time.
    fn message_span(&self, sent: bool, id: u64, size: u64, at: std::time::SystemTime) {
        let parent = crate::spans::context(&self.span);
        if !parent.span().span_context().is_sampled() {
            return;
        }
        match crate::propagation::current_tracer() {
            Some(tracer) => self.emit_message_span(&tracer, &parent, sent, id, size, at),
            None => {
                let tracer = opentelemetry::global::tracer("service-telemetry");
                self.emit_message_span(&tracer, &parent, sent, id, size, at);
            }
        }
    }

    fn emit_message_span<T: opentelemetry::trace::Tracer>(
        &self,
        tracer: &T,
        parent: &opentelemetry::Context,
        sent: bool,
        id: u64,
        size: u64,
        at: std::time::SystemTime,
    ) {
        use opentelemetry::trace::{Span as _, SpanKind};
        let direction = if sent { "send" } else { "receive" };
        let mut attributes = self.call_attributes(self.requested.as_str());
        attributes.extend([
            KeyValue::new(
                "service_telemetry.rpc.message.direction",
                if sent { "sent" } else { "received" },
            ),
            KeyValue::new("service_telemetry.rpc.message.id", id as i64),
            KeyValue::new("service_telemetry.rpc.message.size", size as i64),
        ]);
        let mut span = tracer
            .span_builder(format!("{} {direction}", self.requested))
            .with_kind(SpanKind::Internal)
            .with_start_time(at)
            .with_attributes(attributes)
            .start_with_context(tracer, parent);
        span.end_with_timestamp(at);
    }

    /// What names the call, in the conventions it emits: v1.44.0 `rpc.system.name` and the
    /// fully qualified `rpc.method` (`method`, which may be `_OTHER`); v1.37.0 `rpc.system`,
    /// `rpc.service` and the short `rpc.method` (when both, `rpc.method` keeps the stable value).
    fn call_attributes(&self, method: &str) -> Vec<KeyValue> {
        let mut attributes = Vec::with_capacity(4);
        if self.names.stable {
            attributes.push(KeyValue::new("rpc.system.name", "grpc"));
            attributes.push(KeyValue::new("rpc.method", method.to_owned()));
        }
        if self.names.experimental {
            attributes.push(KeyValue::new("rpc.system", "grpc"));
            if let Some((service, short)) = &self.parts {
                attributes.push(KeyValue::new("rpc.service", service.clone()));
                if !self.names.stable {
                    attributes.push(KeyValue::new("rpc.method", short.clone()));
                }
            }
        }
        attributes
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
        // A client whose deadline ran out got DEADLINE_EXCEEDED whichever timer won: tonic's
        // server answers its own expiry with CANCELLED "Timeout expired", its client reports
        // CANCELLED for both, and which side fires first is a race the caller cannot see.
        let code = if self.side == Side::Client
            && code == 1
            && !cancelled_here
            && self.deadline.is_some_and(|d| Instant::now() >= d)
        {
            4
        } else {
            code
        };
        let status = semconv::grpc_status_name(code);
        // "rpc.method ... MUST be set to `_OTHER`" when the framework does not know the method:
        // a server answering UNIMPLEMENTED, or a path that names none (rpc-spans.md).
        let recognized = self.parts.is_some() && !(self.side == Side::Server && code == 12);
        let method = if recognized {
            self.requested.as_str()
        } else {
            "_OTHER"
        };
        if self.names.stable {
            self.span.record("rpc.method", method);
            if !recognized {
                self.span
                    .record("rpc.method_original", self.requested.as_str());
                // "{rpc.method} if it is available and not set to _OTHER", else the system.
                crate::spans::context(&self.span).span().update_name("grpc");
            }
            self.span.record("rpc.response.status_code", status);
        } else if let Some((_, short)) = &self.parts {
            self.span.record("rpc.method", short.as_str());
        }
        if self.names.experimental {
            self.span.record("rpc.grpc.status_code", code);
        }
        crate::spans::set_attribute(
            &self.span,
            KeyValue::new("service_telemetry.rpc.messages.sent", self.sent as i64),
        );
        crate::spans::set_attribute(
            &self.span,
            KeyValue::new(
                "service_telemetry.rpc.messages.received",
                self.received as i64,
            ),
        );
        if self.message_spans_dropped > 0 {
            crate::spans::set_attribute(
                &self.span,
                KeyValue::new(
                    "service_telemetry.rpc.message_spans.dropped",
                    self.message_spans_dropped as i64,
                ),
            );
        }
        let failed = match self.side {
            // grpc.md "gRPC Status": only these codes make a server span an error.
            Side::Server => is_server_error(code),
            // "All status codes except OK SHOULD be considered errors"; a client that drops
            // its own stream cancelled it on purpose.
            Side::Client => code != 0 && !cancelled_here,
        };
        if failed {
            if self.names.stable {
                self.span.record("error.type", status);
            }
            self.span.record("otel.status_code", "ERROR");
            if let Some(error) = &error {
                self.span.record(
                    "otel.status_description",
                    semconv::redact_urls(error).as_str(),
                );
            }
        }
        let elapsed = self.started.elapsed();
        let instruments = semconv::instruments();
        let (stable_histogram, experimental_histogram) = match self.side {
            Side::Server => (
                &instruments.rpc_server_duration,
                &instruments.rpc_server_duration_ms,
            ),
            Side::Client => (
                &instruments.rpc_client_duration,
                &instruments.rpc_client_duration_ms,
            ),
        };
        // rpc-metrics.md (v1.44.0): server.address and server.port are opt-in on the server;
        // v1.37.0 recommended them on both sides.
        let address = |attributes: &mut Vec<KeyValue>| {
            if !self.address.is_empty() {
                attributes.push(KeyValue::new("server.address", self.address.clone()));
                if let Some(port) = self.port {
                    attributes.push(KeyValue::new("server.port", i64::from(port)));
                }
            }
        };
        if self.names.stable {
            let mut attributes = vec![
                KeyValue::new("rpc.system.name", "grpc"),
                KeyValue::new("rpc.method", method.to_owned()),
                KeyValue::new("rpc.response.status_code", status),
            ];
            if failed {
                attributes.push(KeyValue::new("error.type", status));
            }
            if self.side == Side::Client {
                address(&mut attributes);
            }
            stable_histogram.record(elapsed.as_secs_f64(), &attributes);
        }
        if self.names.experimental {
            let mut attributes = vec![
                KeyValue::new("rpc.system", "grpc"),
                KeyValue::new("rpc.grpc.status_code", code),
            ];
            if let Some((service, short)) = &self.parts {
                attributes.push(KeyValue::new("rpc.service", service.clone()));
                attributes.push(KeyValue::new("rpc.method", short.clone()));
            }
            address(&mut attributes);
            experimental_histogram.record(elapsed.as_secs_f64() * 1000.0, &attributes);
        }
        if self.side == Side::Server {
            let duration_ms = elapsed.as_secs_f64() * 1000.0;
            tracing::info!(
                target: TARGET,
                parent: &self.span,
                duration_ms,
                rpc.method = %method,
                rpc.response.status_code = status,
                "{} {status} {duration_ms:.1} ms",
                self.requested
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

fn start_call<B>(request: &Request<B>, side: Side, target: Option<&ServerTarget>) -> Shared {
    let path = request.uri().path();
    let parts = split_path(path);
    let requested = match &parts {
        Some((service, method)) => format!("{service}/{method}"),
        None => path.to_owned(),
    };
    let (address, port) = match target {
        Some(t) => (t.address.clone(), t.port),
        None => semconv::server_address(request),
    };
    let kind = match side {
        Side::Server => "server",
        Side::Client => "client",
    };
    let name = if parts.is_some() {
        requested.as_str()
    } else {
        "grpc"
    };
    // The remote parent is current while the span opens (see the HTTP server layer).
    let remote_parent = Some(side)
        .filter(|side| *side == Side::Server)
        .map(|_| crate::propagation::extract_headers(request.headers()))
        .filter(|parent| parent.span().span_context().is_valid())
        .map(opentelemetry::Context::attach);
    let span = tracing::info_span!(
        target: TARGET,
        "gRPC call",
        otel.name = name,
        otel.kind = kind,
        rpc.system.name = Empty,
        rpc.method = Empty,
        rpc.method_original = Empty,
        server.address = Empty,
        server.port = Empty,
        rpc.response.status_code = Empty,
        error.type = Empty,
        otel.status_code = Empty,
        otel.status_description = Empty,
        rpc.system = Empty,
        rpc.service = Empty,
        rpc.grpc.status_code = Empty,
        network.peer.address = Empty,
        network.peer.port = Empty,
    );
    drop(remote_parent);
    // rpc-spans.md: network.peer.* is recommended; only a server knows its peer's socket.
    if let Some(peer) = semconv::peer_address(request).filter(|_| side == Side::Server) {
        span.record("network.peer.address", peer.ip().to_string().as_str());
        span.record("network.peer.port", i64::from(peer.port()));
    }
    if !address.is_empty() {
        span.record("server.address", address.as_str());
        if let Some(port) = port {
            span.record("server.port", i64::from(port));
        }
    }
    let names = semconv::rpc_conventions();
    if names.stable {
        span.record("rpc.system.name", "grpc");
    }
    if names.experimental {
        span.record("rpc.system", "grpc");
        if let Some((service, _)) = &parts {
            span.record("rpc.service", service.as_str());
        }
    }
    let started = Instant::now();
    let deadline = grpc_timeout(request.headers())
        .filter(|_| side == Side::Client)
        .and_then(|timeout| started.checked_add(timeout));
    std::sync::Arc::new(std::sync::Mutex::new(Call {
        span,
        side,
        started,
        deadline,
        requested,
        parts,
        names,
        address,
        port,
        status: None,
        sent: 0,
        received: 0,
        first: [None, None],
        message_spans_dropped: 0,
        finished: false,
    }))
}

/// `server.address` / `server.port` of a client channel, from its target string as grpc.md
/// ("Attributes", `server.address` note) reads one: `host:port`, `http://host:port`,
/// `dns://resolver/host:port`, `unix:///path` (the path, no port); any other scheme
/// (`zk://...`, `ipv4:a:p,b:p`) is recorded whole.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ServerTarget {
    address: String,
    port: Option<u16>,
}

impl ServerTarget {
    fn parse(target: &str) -> ServerTarget {
        let target = target.trim();
        if let Some(path) = target
            .strip_prefix("unix://")
            .or_else(|| target.strip_prefix("unix:"))
        {
            return ServerTarget {
                address: path.to_owned(),
                port: None,
            };
        }
        let (scheme, rest) = match target.split_once("://") {
            Some((scheme, rest)) => (Some(scheme), rest),
            None => (None, target),
        };
        let authority = match scheme {
            None | Some("http") | Some("https") => rest.split('/').next().unwrap_or(rest),
            // dns://[resolver]/host:port
            Some("dns") => rest.rsplit('/').next().unwrap_or(rest),
            Some(_) => {
                return ServerTarget {
                    address: target.to_owned(),
                    port: None,
                };
            }
        };
        if authority.contains(',') {
            return ServerTarget {
                address: target.to_owned(),
                port: None,
            };
        }
        let (address, port) = semconv::split_authority(authority);
        let port = port.or(match scheme {
            Some("https") => Some(443),
            Some("http") => Some(80),
            _ => None,
        });
        ServerTarget { address, port }
    }
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
/// per call named `{rpc.method}` (`package.Service/Method`), continuing the caller's trace,
/// with `rpc.system.name`, `rpc.method` (`_OTHER` and `rpc.method_original` for a method the
/// server does not implement), `rpc.response.status_code`, `error.type`, the
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
/// `FooClient::new(ServiceBuilder::new().layer(GrpcClientLayer::for_target("backend:50051")).service(channel))`.
/// One `CLIENT` span per call with the trace context injected into the metadata.
///
/// The conventions require `server.address` on client spans, taken from the channel's target,
/// which a tonic `Channel` does not expose to the layers above it: give it with
/// [`for_target`](Self::for_target) (what [`new`](Self::new) finds in the request is used
/// otherwise, usually nothing).
#[derive(Clone, Debug, Default)]
pub struct GrpcClientLayer {
    target: Option<ServerTarget>,
}

impl GrpcClientLayer {
    /// The layer, with `server.address` from the request when it carries one.
    pub fn new() -> Self {
        Self::default()
    }

    /// The layer for a channel to `target`, as given to `Channel::from_static` or a gRPC
    /// target string: `http://backend:50051`, `backend:50051`, `dns:///backend:50051`,
    /// `unix:///run/app.sock`.
    pub fn for_target(target: &str) -> Self {
        GrpcClientLayer {
            target: Some(ServerTarget::parse(target)),
        }
    }
}

impl<S> Layer<S> for GrpcClientLayer {
    type Service = GrpcClient<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcClient {
            inner,
            target: self.target.clone(),
        }
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
    target: Option<ServerTarget>,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for GrpcServer<S>
where
    S: Service<Request<InstrumentedBody<ReqBody>>, Response = Response<ResBody>>,
    S::Error: std::fmt::Display + std::fmt::Debug,
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
        let call = start_call(&request, Side::Server, None);
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
    S::Error: std::fmt::Display + std::fmt::Debug,
    ResBody: Body,
{
    type Response = Response<InstrumentedBody<ResBody>>;
    type Error = S::Error;
    type Future = GrpcFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<tonic::body::Body>) -> Self::Future {
        let call = start_call(&request, Side::Client, self.target.as_ref());
        let span = lock(&call).span.clone();
        let (mut parts, body) = request.into_parts();
        crate::propagation::inject_context(
            &crate::propagation::context_of(&span),
            &mut parts.headers,
        );
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
    E: std::fmt::Display + std::fmt::Debug,
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
                state.status = Some(match state.side {
                    Side::Server => 13,
                    // The Debug form shows the source chain (tonic's Display says only
                    // "transport error").
                    Side::Client => client_transport_code(&format!("{e:?}")),
                });
                state.finish(true, Some(e.to_string()));
                Err(e)
            }
        })
    }
}

/// The status a tonic client reports for a transport error, from the error's `Debug` text
/// (which shows its source chain): an HTTP/2 stream reset with CANCEL is CANCELLED, the
/// channel's deadline (`TimeoutExpired`, from `Request::set_timeout`) is DEADLINE_EXCEEDED, as
/// the gRPC status codes define it (tonic itself hands the caller CANCELLED "Timeout expired"),
/// anything else UNAVAILABLE.
fn client_transport_code(text: &str) -> i64 {
    let text = text.to_ascii_lowercase();
    if text.contains("timeoutexpired") || text.contains("timed out") || text.contains("deadline") {
        4
    } else if text.contains("stream no longer needed") || text.contains("cancel") {
        1
    } else {
        14
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
            Some(("grpc.health.v1.Health".into(), "Check".into()))
        );
        assert_eq!(split_path("/odd"), None);
        assert_eq!(split_path("/a/b/c"), None);
        assert_eq!(split_path(""), None);
    }

    #[test]
    fn targets_as_grpc_md_reads_them() {
        let t = |s: &str| {
            let t = ServerTarget::parse(s);
            (t.address, t.port)
        };
        assert_eq!(t("grpc.io:50051"), ("grpc.io".into(), Some(50051)));
        assert_eq!(t("http://backend:8081"), ("backend".into(), Some(8081)));
        assert_eq!(
            t("https://api.example.com"),
            ("api.example.com".into(), Some(443))
        );
        assert_eq!(
            t("dns://1.2.3.4/grpc.io:50051"),
            ("grpc.io".into(), Some(50051))
        );
        assert_eq!(t("dns:///grpc.io:50051"), ("grpc.io".into(), Some(50051)));
        assert_eq!(
            t("unix:///run/containerd/containerd.sock"),
            ("/run/containerd/containerd.sock".into(), None)
        );
        assert_eq!(
            t("zk://zk.example.com:2181/service"),
            ("zk://zk.example.com:2181/service".into(), None)
        );
        assert_eq!(
            t("ipv4:198.51.100.123:50051,198.51.100.124:50051"),
            (
                "ipv4:198.51.100.123:50051,198.51.100.124:50051".into(),
                None
            )
        );
        assert_eq!(t("[::1]:50051"), ("::1".into(), Some(50051)));
    }

    #[test]
    fn transport_errors_get_the_status_tonic_reports() {
        assert_eq!(
            client_transport_code("http2 error: stream error received: stream no longer needed"),
            1
        );
        assert_eq!(
            client_transport_code(
                "tonic::transport::Error(Transport, hyper::Error(Http2, Error { kind: Reset(StreamId(1), CANCEL, Remote) }))"
            ),
            1
        );
        assert_eq!(client_transport_code("request timed out"), 4);
        assert_eq!(
            client_transport_code("tonic::transport::Error(Transport, TimeoutExpired(()))"),
            4
        );
        assert_eq!(
            client_transport_code("tcp connect error: Connection refused"),
            14
        );
    }

    #[test]
    fn status_names() {
        assert_eq!(semconv::grpc_status_name(0), "OK");
        assert_eq!(semconv::grpc_status_name(14), "UNAVAILABLE");
        assert_eq!(semconv::grpc_status_name(16), "UNAUTHENTICATED");
        assert_eq!(semconv::grpc_status_name(99), "_OTHER");
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

    /// A service answering every request with an empty body and this `grpc-status`.
    fn responder<B>(
        status: &str,
    ) -> impl FnMut(
        Request<B>,
    ) -> std::future::Ready<
        Result<Response<http_body_util::Empty<bytes::Bytes>>, std::convert::Infallible>,
    > {
        let status = status.to_owned();
        move |_request| {
            let mut response = Response::new(http_body_util::Empty::<bytes::Bytes>::new());
            if let Ok(value) = status.parse() {
                response.headers_mut().insert("grpc-status", value);
            }
            std::future::ready(Ok(response))
        }
    }

    /// One call through a layer over `respond`, in a scoped subscriber exporting to memory.
    fn exported_call(
        server: bool,
        path: &str,
        grpc_status: &str,
        target: Option<&str>,
    ) -> opentelemetry_sdk::trace::SpanData {
        exported_request(server, Request::builder().uri(path), grpc_status, target)
    }

    /// [`exported_call`] for a request with headers of its own.
    fn exported_request(
        server: bool,
        request: http::request::Builder,
        grpc_status: &str,
        target: Option<&str>,
    ) -> opentelemetry_sdk::trace::SpanData {
        use http_body_util::BodyExt as _;
        use opentelemetry::trace::TracerProvider as _;
        use tracing_subscriber::layer::SubscriberExt as _;

        let exporter = opentelemetry_sdk::trace::InMemorySpanExporter::default();
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let status = grpc_status.to_owned();
        tracing::subscriber::with_default(subscriber, || {
            runtime.block_on(async {
                let response = if server {
                    let mut service =
                        GrpcServerLayer::new().layer(tower::service_fn(responder(&status)));
                    let request = request
                        .body(http_body_util::Empty::<bytes::Bytes>::new())
                        .expect("request");
                    tower_service::Service::call(&mut service, request)
                        .await
                        .expect("response")
                } else {
                    let layer =
                        target.map_or_else(GrpcClientLayer::new, GrpcClientLayer::for_target);
                    let mut service = layer.layer(tower::service_fn(responder(&status)));
                    let request = request.body(tonic::body::Body::empty()).expect("request");
                    tower_service::Service::call(&mut service, request)
                        .await
                        .expect("response")
                };
                let _ = response.into_body().collect().await;
            })
        });
        let mut spans = exporter.get_finished_spans().expect("spans");
        assert_eq!(spans.len(), 1, "{spans:#?}");
        spans.remove(0)
    }

    #[test]
    fn grpc_timeouts_read_as_the_protocol_writes_them() {
        let read = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert("grpc-timeout", value.parse().expect("header"));
            grpc_timeout(&headers)
        };
        assert_eq!(read("300m"), Some(Duration::from_millis(300)));
        assert_eq!(read("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(read("99999999n"), Some(Duration::from_nanos(99_999_999)));
        assert_eq!(read("5S"), Some(Duration::from_secs(5)));
        for bad in ["", "m", "123456789m", "12x", "1.5S", "-1S", "S5"] {
            assert_eq!(read(bad), None, "{bad:?}");
        }
        assert_eq!(grpc_timeout(&HeaderMap::new()), None);
    }

    #[test]
    fn a_client_past_its_deadline_got_deadline_exceeded_even_when_the_server_said_cancelled() {
        let call = |timeout: Option<&str>| {
            let mut request = Request::builder().uri("/pkg.Orders/Get");
            if let Some(timeout) = timeout {
                request = request.header("grpc-timeout", timeout);
            }
            let span = exported_request(false, request, "1", Some("http://127.0.0.1:50051"));
            attribute(&span, "rpc.response.status_code")
        };
        // tonic's server answers its own expired deadline with CANCELLED "Timeout expired".
        assert_eq!(call(Some("1n")).as_deref(), Some("DEADLINE_EXCEEDED"));
        // Within the deadline, or without one, CANCELLED is what the server meant.
        assert_eq!(call(Some("1H")).as_deref(), Some("CANCELLED"));
        assert_eq!(call(None).as_deref(), Some("CANCELLED"));
        // A server's span keeps the status it answered.
        let span = exported_request(
            true,
            Request::builder()
                .uri("/pkg.Orders/Get")
                .header("grpc-timeout", "1n"),
            "1",
            None,
        );
        assert_eq!(
            attribute(&span, "rpc.response.status_code").as_deref(),
            Some("CANCELLED")
        );
    }

    fn attribute(span: &opentelemetry_sdk::trace::SpanData, key: &str) -> Option<String> {
        span.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.to_string())
    }

    // One test for both modes: the mode is process-wide.
    #[test]
    fn v1_44_attributes_unknown_methods_errors_and_the_dup_mode() {
        use opentelemetry::trace::Status;

        // A method the server does not implement: _OTHER, the original kept, named after the
        // system; UNIMPLEMENTED is a server error, named by its status.
        let span = exported_call(true, "/pkg.Orders/Missing", "12", None);
        assert_eq!(span.name, "grpc");
        assert_eq!(attribute(&span, "rpc.system.name").as_deref(), Some("grpc"));
        assert_eq!(attribute(&span, "rpc.method").as_deref(), Some("_OTHER"));
        assert_eq!(
            attribute(&span, "rpc.method_original").as_deref(),
            Some("pkg.Orders/Missing")
        );
        assert_eq!(
            attribute(&span, "rpc.response.status_code").as_deref(),
            Some("UNIMPLEMENTED")
        );
        assert_eq!(
            attribute(&span, "error.type").as_deref(),
            Some("UNIMPLEMENTED")
        );
        assert!(
            matches!(span.status, Status::Error { .. }),
            "{:?}",
            span.status
        );
        assert_eq!(
            attribute(&span, "rpc.grpc.status_code"),
            None,
            "not in stable mode"
        );

        // NOT_FOUND is no server error, but any non-OK code is a client error.
        let span = exported_call(true, "/pkg.Orders/Get", "5", None);
        assert_eq!(span.name, "pkg.Orders/Get");
        assert_eq!(attribute(&span, "error.type"), None);
        assert_eq!(span.status, Status::Unset);
        let span = exported_call(
            false,
            "/pkg.Orders/Get",
            "14",
            Some("http://127.0.0.1:50051"),
        );
        assert_eq!(
            attribute(&span, "rpc.method").as_deref(),
            Some("pkg.Orders/Get")
        );
        assert_eq!(
            attribute(&span, "error.type").as_deref(),
            Some("UNAVAILABLE")
        );
        assert_eq!(
            attribute(&span, "server.address").as_deref(),
            Some("127.0.0.1")
        );
        assert_eq!(attribute(&span, "server.port").as_deref(), Some("50051"));
        assert!(matches!(span.status, Status::Error { .. }));

        // rpc/dup: the experimental attributes too.
        semconv::set_rpc_conventions(crate::config::RpcConventions::Duplicate);
        let span = exported_call(true, "/pkg.Orders/Get", "0", None);
        semconv::set_rpc_conventions(crate::config::RpcConventions::Stable);
        assert_eq!(
            attribute(&span, "rpc.method").as_deref(),
            Some("pkg.Orders/Get")
        );
        assert_eq!(
            attribute(&span, "rpc.response.status_code").as_deref(),
            Some("OK")
        );
        assert_eq!(attribute(&span, "rpc.system").as_deref(), Some("grpc"));
        assert_eq!(
            attribute(&span, "rpc.service").as_deref(),
            Some("pkg.Orders")
        );
        assert_eq!(
            attribute(&span, "rpc.grpc.status_code").as_deref(),
            Some("0")
        );

        // The experimental conventions alone: v1.37.0 names, the requested method kept.
        semconv::set_rpc_conventions(crate::config::RpcConventions::Experimental);
        let ok = exported_call(true, "/pkg.Orders/Get", "0", None);
        let missing = exported_call(true, "/pkg.Orders/Missing", "12", None);
        semconv::set_rpc_conventions(crate::config::RpcConventions::Stable);
        assert_eq!(attribute(&ok, "rpc.method").as_deref(), Some("Get"));
        assert_eq!(attribute(&ok, "rpc.service").as_deref(), Some("pkg.Orders"));
        assert_eq!(attribute(&ok, "rpc.system").as_deref(), Some("grpc"));
        assert_eq!(attribute(&ok, "rpc.grpc.status_code").as_deref(), Some("0"));
        for stable in ["rpc.system.name", "rpc.response.status_code"] {
            assert_eq!(attribute(&ok, stable), None, "{stable}");
        }
        assert_eq!(missing.name, "pkg.Orders/Missing");
        assert_eq!(
            attribute(&missing, "rpc.method").as_deref(),
            Some("Missing")
        );
        assert_eq!(attribute(&missing, "rpc.method_original"), None);
        assert_eq!(attribute(&missing, "error.type"), None);
        assert!(matches!(missing.status, Status::Error { .. }));
    }
}
