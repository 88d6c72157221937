//! The Prometheus scrape endpoint: `GET /metrics` in the text exposition format, served by
//! hyper on a thread and a runtime of its own, so a slow scraper never touches the service's
//! runtime. Built on opentelemetry-prometheus (the name translation, `target_info` with the
//! resource, `otel_scope_*` labels) and the `prometheus` crate's text encoder.

use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio_util::sync::CancellationToken;

use super::OverflowReporter;
use crate::config::PrometheusEndpoint;

const OVERFLOW_LABEL: &str = "otel_metric_overflow";

/// The running endpoint; stopped by [`PrometheusServer::stop`].
#[derive(Debug)]
pub(crate) struct PrometheusServer {
    addresses: Vec<SocketAddr>,
    scrapes: Arc<Scrapes>,
    stop: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Binds the endpoint and starts serving; the reader goes to the meter provider. Fails (the
/// caller warns and goes on without the endpoint) when the host does not resolve or no address
/// can be bound.
pub(crate) fn start(
    endpoint: &PrometheusEndpoint,
    overflow: Arc<OverflowReporter>,
) -> Result<
    (
        opentelemetry_prometheus::PrometheusExporter,
        PrometheusServer,
    ),
    String,
> {
    let shown = if endpoint.host.contains(':') {
        format!("[{}]:{}", endpoint.host, endpoint.port)
    } else {
        format!("{}:{}", endpoint.host, endpoint.port)
    };
    let mut resolved: Vec<SocketAddr> = (endpoint.host.as_str(), endpoint.port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {shown}: {e}"))?
        .collect();
    resolved.dedup();
    let mut listeners = Vec::new();
    let mut errors = Vec::new();
    for address in resolved {
        // Port 0 picks a free port once; the other addresses of the name then share it.
        let address = match listeners.first().map(|l: &TcpListener| l.local_addr()) {
            Some(Ok(bound)) if address.port() == 0 => SocketAddr::new(address.ip(), bound.port()),
            _ => address,
        };
        match TcpListener::bind(address).and_then(|l| l.set_nonblocking(true).map(|()| l)) {
            Ok(listener) => listeners.push(listener),
            Err(e) => errors.push(format!("{address}: {e}")),
        }
    }
    if listeners.is_empty() {
        return Err(format!("cannot listen on {shown} ({})", errors.join("; ")));
    }
    let addresses: Vec<SocketAddr> = listeners
        .iter()
        .filter_map(|l| l.local_addr().ok())
        .collect();

    let registry = prometheus::Registry::new();
    let exporter = opentelemetry_prometheus::exporter()
        .with_registry(registry.clone())
        .build()
        .map_err(|e| format!("cannot build the Prometheus exporter: {e}"))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| format!("cannot start the Prometheus endpoint's runtime: {e}"))?;
    let (scrapes, stop) = (Arc::new(Scrapes::default()), CancellationToken::new());
    let state = Arc::new(Scrape {
        registry,
        overflow,
        scrapes: scrapes.clone(),
    });
    let token = stop.clone();
    let thread = std::thread::Builder::new()
        .name("telemetry-prometheus".into())
        .spawn(move || {
            runtime.block_on(async move {
                let mut accepting = Vec::new();
                for listener in listeners {
                    if let Ok(listener) = tokio::net::TcpListener::from_std(listener) {
                        accepting.push(tokio::spawn(accept(
                            listener,
                            state.clone(),
                            token.clone(),
                        )));
                    }
                }
                token.cancelled().await;
                for task in accepting {
                    task.abort();
                }
            });
        })
        .map_err(|e| format!("cannot start the Prometheus endpoint's thread: {e}"))?;
    Ok((
        exporter,
        PrometheusServer {
            addresses,
            scrapes,
            stop,
            thread: Some(thread),
        },
    ))
}

struct Scrape {
    registry: prometheus::Registry,
    overflow: Arc<OverflowReporter>,
    scrapes: Arc<Scrapes>,
}

/// How many scrapes were answered; shutdown waits on it for the final one.
#[derive(Debug, Default)]
struct Scrapes {
    answered: Mutex<u64>,
    changed: Condvar,
}

impl Scrapes {
    fn record(&self) {
        *self.answered.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        self.changed.notify_all();
    }
}

async fn accept(listener: tokio::net::TcpListener, state: Arc<Scrape>, stop: CancellationToken) {
    loop {
        let (stream, _) = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(connection) => connection,
                // Out of descriptors, say: wait rather than spin.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let state = state.clone();
                async move { Ok::<_, std::convert::Infallible>(respond(&state, &request)) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn respond<B>(state: &Scrape, request: &http::Request<B>) -> http::Response<Full<Bytes>> {
    let plain = |status: http::StatusCode, text: &'static str| {
        let mut response = http::Response::new(Full::new(Bytes::from_static(text.as_bytes())));
        *response.status_mut() = status;
        response
    };
    if request.uri().path() != "/metrics" {
        return plain(
            http::StatusCode::NOT_FOUND,
            "only /metrics is served here\n",
        );
    }
    if request.method() != http::Method::GET {
        let mut response = plain(http::StatusCode::METHOD_NOT_ALLOWED, "GET only\n");
        response
            .headers_mut()
            .insert(http::header::ALLOW, http::HeaderValue::from_static("GET"));
        return response;
    }
    let families = state.registry.gather();
    let overflowed: Vec<&str> = families
        .iter()
        .filter(|f| {
            f.get_metric()
                .iter()
                .any(|m| m.get_label().iter().any(|l| l.name() == OVERFLOW_LABEL))
        })
        .map(|f| f.name())
        .collect();
    if !overflowed.is_empty() {
        state.overflow.report(overflowed);
    }
    let encoder = prometheus::TextEncoder::new();
    let mut body = Vec::new();
    if let Err(e) = prometheus::Encoder::encode(&encoder, &families, &mut body) {
        let mut response = http::Response::new(Full::new(Bytes::from(format!("{e}\n"))));
        *response.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
        return response;
    }
    state.scrapes.record();
    let mut response = http::Response::new(Full::new(Bytes::from(body)));
    if let Ok(value) = http::HeaderValue::from_str(prometheus::Encoder::format_type(&encoder)) {
        response
            .headers_mut()
            .insert(http::header::CONTENT_TYPE, value);
    }
    response
}

impl PrometheusServer {
    /// The addresses it listens on.
    pub(crate) fn addresses(&self) -> &[SocketAddr] {
        &self.addresses
    }

    /// Returns once one more scrape has been answered or `window` has passed, so the last
    /// values reach Prometheus.
    pub(crate) fn wait_for_final_scrape(&self, window: Duration) {
        let deadline = Instant::now() + window;
        let mut answered = self
            .scrapes
            .answered
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let before = *answered;
        while *answered == before {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            answered = self
                .scrapes
                .changed
                .wait_timeout(answered, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Stops serving.
    pub(crate) fn stop(&mut self) {
        self.stop.cancel();
        if let Some(thread) = self.thread.take() {
            // A scrape in progress is abandoned: the thread ends with the process if stuck.
            let _ = thread.join();
        }
    }
}

impl Drop for PrometheusServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    fn get(address: SocketAddr, request: &str) -> String {
        let mut stream = std::net::TcpStream::connect(address).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        write!(stream, "{request}\r\nHost: x\r\nConnection: close\r\n\r\n").expect("write");
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        response
    }

    fn server() -> PrometheusServer {
        let endpoint = PrometheusEndpoint {
            host: "127.0.0.1".into(),
            port: 0,
        };
        let overflow = Arc::new(OverflowReporter::new(Duration::from_secs(30), 10));
        start(&endpoint, overflow).expect("endpoint").1
    }

    #[test]
    fn only_get_metrics_is_served() {
        let mut server = server();
        let address = server.addresses()[0];
        assert!(get(address, "GET /metrics HTTP/1.1").starts_with("HTTP/1.1 200"));
        assert!(get(address, "GET / HTTP/1.1").starts_with("HTTP/1.1 404"));
        let post = get(address, "POST /metrics HTTP/1.1");
        assert!(post.starts_with("HTTP/1.1 405"), "{post}");
        assert!(post.to_ascii_lowercase().contains("allow: get"), "{post}");
        server.stop();
        assert!(
            std::net::TcpStream::connect(address).is_err(),
            "closed after stop"
        );
    }

    #[test]
    fn the_final_scrape_window_ends_at_the_next_scrape_or_at_its_bound() {
        let mut server = server();
        let address = server.addresses()[0];
        let waited = Instant::now();
        server.wait_for_final_scrape(Duration::from_millis(300));
        let idle = waited.elapsed();
        assert!(
            idle >= Duration::from_millis(300) && idle < Duration::from_secs(3),
            "{idle:?}"
        );

        let done = Arc::new(AtomicBool::new(false));
        let scraper = {
            let done = done.clone();
            std::thread::spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    get(address, "GET /metrics HTTP/1.1");
                }
            })
        };
        let waited = Instant::now();
        server.wait_for_final_scrape(Duration::from_secs(20));
        let scraped = waited.elapsed();
        done.store(true, Ordering::Relaxed);
        scraper.join().expect("scraper");
        assert!(scraped < Duration::from_secs(5), "{scraped:?}");
        server.stop();
    }

    #[test]
    fn a_port_in_use_is_an_error_not_a_panic() {
        let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
        let endpoint = PrometheusEndpoint {
            host: "127.0.0.1".into(),
            port: taken.local_addr().expect("address").port(),
        };
        let overflow = Arc::new(OverflowReporter::new(Duration::from_secs(30), 10));
        let error = start(&endpoint, overflow).expect_err("in use");
        assert!(error.contains("cannot listen"), "{error}");
    }
}
