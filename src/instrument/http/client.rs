//! The HTTP client side: one `CLIENT` span per call, its context injected into the request.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use http::{HeaderMap, Method, Request, Response, Uri, Version};
use opentelemetry::KeyValue;
use tower_layer::Layer;
use tower_service::Service;
use tracing::Span;
use tracing::field::Empty;

use crate::instrument::TARGET;
use crate::instrument::semconv;

/// One outgoing call, from span start to the response headers.
pub(crate) struct ClientCall {
    pub(crate) span: Span,
    started: Instant,
    method: &'static str,
    address: String,
    port: Option<u16>,
    version: &'static str,
}

impl ClientCall {
    /// Starts the span as a child of the current one and writes its context into `headers`.
    pub(crate) fn start(
        method: &Method,
        uri: &Uri,
        version: Version,
        headers: &mut HeaderMap,
    ) -> Self {
        let attr_method = semconv::method(method);
        let address = uri.host().unwrap_or("").to_owned();
        let port = uri.port_u16().or(match uri.scheme_str() {
            Some("https") => Some(443),
            Some("http") => Some(80),
            _ => None,
        });
        let version = semconv::protocol_version(version);
        // Recorded as text: through `%` both layers would format it again.
        let full_url = semconv::url_full(uri);
        let span = tracing::info_span!(
            target: TARGET,
            "HTTP client request",
            otel.name = semconv::method_for_name(method),
            otel.kind = "client",
            http.request.method = attr_method,
            server.address = address.as_str(),
            server.port = port.map(i64::from),
            url.full = full_url.as_str(),
            http.request.method_original =
                (attr_method == "_OTHER").then(|| method.as_str()),
            network.protocol.version = version,
            http.response.status_code = Empty,
            error.type = Empty,
            otel.status_code = Empty,
        );
        crate::propagation::inject_context(&crate::propagation::context_of(&span), headers);
        ClientCall {
            span,
            started: Instant::now(),
            method: attr_method,
            address,
            port,
            version,
        }
    }

    /// Records the outcome: a status code, or the transport error (its `error.type` and its
    /// text, which is recorded with every URL in it redacted).
    pub(crate) fn finish(self, outcome: Result<u16, (&'static str, String)>) {
        let ClientCall {
            span,
            started,
            method,
            address,
            port,
            version,
        } = self;
        // Sized for every attribute at once: a reallocation here would take the allocator's
        // lock while the export thread may hold it freeing earlier spans.
        let mut attributes = Vec::with_capacity(6);
        attributes.extend([
            KeyValue::new("http.request.method", method),
            KeyValue::new("server.address", address),
            KeyValue::new("network.protocol.version", version),
        ]);
        if let Some(port) = port {
            attributes.push(KeyValue::new("server.port", i64::from(port)));
        }
        match outcome {
            Ok(status) => {
                span.record("http.response.status_code", i64::from(status));
                attributes.push(KeyValue::new(
                    "http.response.status_code",
                    i64::from(status),
                ));
                // Client spans treat 4xx as errors too (the call did not succeed).
                if status >= 400 {
                    span.record("error.type", status.to_string());
                    span.record("otel.status_code", "ERROR");
                    attributes.push(KeyValue::new("error.type", status.to_string()));
                }
            }
            Err((error_type, text)) => {
                span.record("error.type", error_type);
                crate::spans::set_status(
                    &span,
                    opentelemetry::trace::Status::error(semconv::redact_urls(&text)),
                );
                attributes.push(KeyValue::new("error.type", error_type));
            }
        }
        semconv::instruments()
            .client_duration
            .record(started.elapsed().as_secs_f64(), &attributes);
    }
}

/// For tower HTTP clients (hyper-util's legacy client, tower-http stacks): a `CLIENT` span per
/// call named `{method}`, the client-side HTTP attributes, the trace context injected into the
/// request headers, and `http.client.request.duration`.
#[derive(Clone, Debug, Default)]
pub struct HttpClientLayer {
    _private: (),
}

impl HttpClientLayer {
    /// The layer.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<S> Layer<S> for HttpClientLayer {
    type Service = HttpClient<S>;

    fn layer(&self, inner: S) -> Self::Service {
        HttpClient { inner }
    }
}

/// The service made by [`HttpClientLayer`].
#[derive(Clone, Debug)]
pub struct HttpClient<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for HttpClient<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Error: std::fmt::Display,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ClientFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        // Taken apart so the headers can be written while the method and URI are read,
        // without cloning either.
        let (mut parts, body) = request.into_parts();
        let call = ClientCall::start(&parts.method, &parts.uri, parts.version, &mut parts.headers);
        let request = Request::from_parts(parts, body);
        let inner = call.span.in_scope(|| self.inner.call(request));
        ClientFuture {
            inner,
            call: Some(call),
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`HttpClient`].
    pub struct ClientFuture<F> {
        #[pin]
        inner: F,
        call: Option<ClientCall>,
    }
}

impl<F, ResBody, E> Future for ClientFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
    E: std::fmt::Display,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let polled = match this.call.as_ref() {
            Some(call) => {
                let _entered = call.span.enter();
                this.inner.poll(cx)
            }
            None => this.inner.poll(cx),
        };
        if let Poll::Ready(result) = &polled {
            if let Some(call) = this.call.take() {
                call.finish(match result {
                    Ok(response) => Ok(response.status().as_u16()),
                    Err(e) => {
                        let text = e.to_string();
                        Err((semconv::error_type_from_text(&text), text))
                    }
                });
            }
        }
        polled
    }
}
