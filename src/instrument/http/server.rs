//! The HTTP server layer: one `SERVER` span per request, continuing the caller's trace.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use http::{Request, Response};
use http_body::Body;
use opentelemetry::KeyValue;
use opentelemetry::trace::TraceContextExt as _;
use tower_layer::Layer;
use tower_service::Service;
use tracing::Span;
use tracing::field::Empty;

use crate::instrument::TARGET;
use crate::instrument::body::{InstrumentedBody, Observer, Unobserved};
use crate::instrument::semconv;

/// The route template of a request (`/users/{id}`), for stacks other than axum: insert it
/// into the request's extensions before [`HttpServerLayer`] sees the request. With the `axum`
/// feature, axum's `MatchedPath` is used.
#[derive(Clone, Debug)]
pub struct HttpRoute(pub Cow<'static, str>);

/// Makes every request a `SERVER` span named `{method} {route}`, with the stable HTTP
/// semantic-convention attributes, continuing the trace context of the incoming headers;
/// records `http.server.request.duration` and `http.server.active_requests`; logs one `info`
/// line per request carrying its trace id.
///
/// Probes are not traffic: requests to the probe paths (`/livez`, `/readyz`, `/health`,
/// `/healthz` by default; [`probe_paths`](HttpServerLayer::probe_paths)) make no span and no
/// log line, but still count in `http.server.request.duration`. Kubelets probing every few
/// seconds would otherwise outnumber real requests in the traces.
///
/// With axum, add it with `Router::layer` so it sees the matched route:
///
/// ```
/// # #[cfg(feature = "axum")] {
/// use service_telemetry::instrument::HttpServerLayer;
/// let app: axum::Router = axum::Router::new()
///     .route("/users/{id}", axum::routing::get(|| async { "ada" }))
///     .layer(HttpServerLayer::new());
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct HttpServerLayer {
    probes: Arc<Probes>,
}

/// The paths whose requests are probes, and whether they are traced anyway.
#[derive(Debug)]
struct Probes {
    paths: Vec<String>,
    traced: bool,
}

impl Probes {
    fn is_quiet(&self, path: &str) -> bool {
        !self.traced && self.paths.iter().any(|p| p == path)
    }
}

/// The paths [`HttpServerLayer`] treats as probes unless told otherwise.
pub const DEFAULT_PROBE_PATHS: [&str; 4] = ["/livez", "/readyz", "/health", "/healthz"];

impl Default for HttpServerLayer {
    fn default() -> Self {
        HttpServerLayer {
            probes: Arc::new(Probes {
                paths: DEFAULT_PROBE_PATHS
                    .iter()
                    .map(|p| (*p).to_owned())
                    .collect(),
                traced: false,
            }),
        }
    }
}

impl HttpServerLayer {
    /// The layer, with the default probe paths left untraced.
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces the probe paths (exact request paths, without the query); an empty list makes
    /// every request traffic.
    pub fn probe_paths<I, P>(self, paths: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<String>,
    {
        HttpServerLayer {
            probes: Arc::new(Probes {
                paths: paths.into_iter().map(Into::into).collect(),
                traced: self.probes.traced,
            }),
        }
    }

    /// Traces probe requests like any other (span and log line) when `true`.
    pub fn trace_probes(self, traced: bool) -> Self {
        HttpServerLayer {
            probes: Arc::new(Probes {
                paths: self.probes.paths.clone(),
                traced,
            }),
        }
    }
}

impl<S> Layer<S> for HttpServerLayer {
    type Service = HttpServer<S>;

    fn layer(&self, inner: S) -> Self::Service {
        HttpServer {
            inner,
            probes: self.probes.clone(),
        }
    }
}

/// The service made by [`HttpServerLayer`].
#[derive(Clone, Debug)]
pub struct HttpServer<S> {
    inner: S,
    probes: Arc<Probes>,
}

fn route_of<B>(request: &Request<B>) -> Option<String> {
    #[cfg(feature = "axum")]
    if let Some(path) = request.extensions().get::<axum::extract::MatchedPath>() {
        return Some(path.as_str().to_owned());
    }
    request
        .extensions()
        .get::<HttpRoute>()
        .map(|r| r.0.clone().into_owned())
}

/// What the span and the metrics need once the response is done.
struct Exchange {
    span: Span,
    started: Instant,
    method: &'static str,
    route: Option<String>,
    path: String,
    scheme: &'static str,
    version: &'static str,
    status: Option<u16>,
    error: Option<String>,
    finished: bool,
    /// A probe: metrics only, no span and no log line.
    quiet: bool,
}

/// A request whose future is dropped before it answers (the client went away, a timeout
/// layer gave up) is still counted, timed and logged.
impl Drop for Exchange {
    fn drop(&mut self) {
        self.finish(false);
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for HttpServer<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Error: std::fmt::Display,
    ResBody: Body,
{
    type Response = Response<InstrumentedBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let started = Instant::now();
        let method = semconv::method(request.method());
        let route = route_of(&request);
        let name = match &route {
            Some(route) => format!("{} {route}", semconv::method_for_name(request.method())),
            None => semconv::method_for_name(request.method()).to_owned(),
        };
        let scheme = match request.uri().scheme_str() {
            Some("https") => "https",
            _ => "http",
        };
        let version = semconv::protocol_version(request.version());
        let (address, port) = semconv::server_address(&request);
        let user_agent = request
            .headers()
            .get(http::header::USER_AGENT)
            .and_then(|h| h.to_str().ok());
        let path = request.uri().path().to_owned();
        // http-spans.md: url.query is required when the request has one, redacted.
        let query = request.uri().query().map(semconv::redact_query);
        let peer = semconv::peer_address(&request);
        let peer_ip = peer.map(|p| p.ip().to_string());
        let client = semconv::client_address(&request).or_else(|| peer_ip.clone());
        let quiet = self.probes.is_quiet(&path);
        // The remote parent is current while the span opens, so that whichever layer builds
        // the OpenTelemetry span (it may do so at once) takes it as the parent.
        let remote_parent = (!quiet)
            .then(|| crate::propagation::extract_headers(request.headers()))
            .filter(|parent| parent.span().span_context().is_valid())
            .map(opentelemetry::Context::attach);
        let span = if quiet {
            Span::none()
        } else {
            tracing::info_span!(
            target: TARGET,
            "HTTP request",
            otel.name = %name,
            otel.kind = "server",
            http.request.method = method,
            http.request.method_original =
                (method == "_OTHER").then(|| request.method().as_str()),
            url.path = %path,
            url.query = query.as_deref(),
            url.scheme = scheme,
            client.address = client.as_deref(),
            network.peer.address = peer_ip.as_deref(),
            network.peer.port = peer.map(|p| i64::from(p.port())),
            http.route = route.as_deref(),
            server.address = address.as_str(),
            server.port = port.map(i64::from),
            user_agent.original = user_agent,
            network.protocol.version = version,
            http.response.status_code = Empty,
            error.type = Empty,
            otel.status_code = Empty,
            )
        };
        drop(remote_parent);
        semconv::instruments()
            .server_active
            .add(1, &active_attributes(method, scheme));
        let future = span.in_scope(|| self.inner.call(request));
        ResponseFuture {
            inner: future,
            exchange: Some(Exchange {
                span,
                started,
                method,
                route,
                path,
                scheme,
                version,
                status: None,
                error: None,
                finished: false,
                quiet,
            }),
        }
    }
}

fn active_attributes(method: &'static str, scheme: &'static str) -> [KeyValue; 2] {
    [
        KeyValue::new("http.request.method", method),
        KeyValue::new("url.scheme", scheme),
    ]
}

pin_project_lite::pin_project! {
    /// The future of [`HttpServer`].
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        exchange: Option<Exchange>,
    }
}

impl<F, ResBody, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
    E: std::fmt::Display,
    ResBody: Body,
{
    type Output = Result<Response<InstrumentedBody<ResBody>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let polled = match this.exchange.as_ref() {
            Some(exchange) => {
                let _entered = exchange.span.enter();
                this.inner.poll(cx)
            }
            None => this.inner.poll(cx),
        };
        let Poll::Ready(result) = polled else {
            return Poll::Pending;
        };
        let Some(mut exchange) = this.exchange.take() else {
            // Polled after completion: the inner future decides what that means.
            return Poll::Ready(
                result.map(|r| r.map(|b| InstrumentedBody::new(b, Box::new(Unobserved)))),
            );
        };
        Poll::Ready(match result {
            Ok(response) => {
                let status = response.status().as_u16();
                exchange.status = Some(status);
                exchange
                    .span
                    .record("http.response.status_code", i64::from(status));
                if status >= 500 {
                    exchange.span.record("error.type", status.to_string());
                    exchange.span.record("otel.status_code", "ERROR");
                }
                Ok(response.map(|body| InstrumentedBody::new(body, Box::new(exchange))))
            }
            Err(e) => {
                let text = semconv::redact_urls(&e.to_string());
                exchange.error = Some(text.clone());
                exchange.span.record("error.type", "_OTHER");
                exchange.span.record("otel.status_code", "ERROR");
                crate::spans::set_status(&exchange.span, opentelemetry::trace::Status::error(text));
                exchange.finish(false);
                Err(e)
            }
        })
    }
}

impl Observer for Exchange {
    fn on_end(&mut self, complete: bool, error: Option<String>) {
        if let Some(error) = error {
            self.error = Some(error);
        }
        self.finish(complete);
    }
}

impl Exchange {
    fn finish(&mut self, complete: bool) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        let elapsed = self.started.elapsed();
        let instruments = semconv::instruments();
        instruments
            .server_active
            .add(-1, &active_attributes(self.method, self.scheme));
        let mut attributes = vec![
            KeyValue::new("http.request.method", self.method),
            KeyValue::new("url.scheme", self.scheme),
            KeyValue::new("network.protocol.version", self.version),
        ];
        if let Some(route) = &self.route {
            attributes.push(KeyValue::new("http.route", route.clone()));
        }
        if let Some(status) = self.status {
            attributes.push(KeyValue::new(
                "http.response.status_code",
                i64::from(status),
            ));
            if status >= 500 {
                attributes.push(KeyValue::new("error.type", status.to_string()));
            }
        } else {
            attributes.push(KeyValue::new("error.type", "_OTHER"));
        }
        instruments
            .server_duration
            .record(elapsed.as_secs_f64(), &attributes);
        if self.quiet {
            return;
        }
        let duration_ms = elapsed.as_secs_f64() * 1000.0;
        let target = self.route.as_deref().unwrap_or(&self.path);
        let status = self
            .status
            .map_or_else(|| "-".to_owned(), |s| s.to_string());
        let outcome = match (&self.error, complete) {
            (Some(error), _) => format!(" failed: {error}"),
            (None, false) => " (client went away before the end of the response)".to_owned(),
            (None, true) => String::new(),
        };
        tracing::info!(
            target: TARGET,
            parent: &self.span,
            duration_ms,
            http.request.method = self.method,
            http.route = self.route.as_deref(),
            url.path = %self.path,
            http.response.status_code = self.status,
            "{} {target} {status} {duration_ms:.1} ms{outcome}",
            self.method
        );
        // The span ends when this (its last handle) is dropped with the exchange.
        self.span = Span::none();
    }
}
