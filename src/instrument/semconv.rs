//! Semantic-convention names and value mappings shared by the layers.

use std::sync::OnceLock;

use http::{Method, Version};
use opentelemetry::metrics::{Histogram, Meter, UpDownCounter};

/// The explicit bucket boundaries the HTTP and RPC duration conventions recommend (seconds).
pub(crate) const DURATION_BOUNDARIES: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// `http.request.method`: the known methods as they are, anything else `_OTHER`.
pub(crate) fn method(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "_OTHER",
    }
}

/// The span-name prefix: the method, or `HTTP` when it is not a known one.
pub(crate) fn method_for_name(method: &Method) -> &'static str {
    match self::method(method) {
        "_OTHER" => "HTTP",
        known => known,
    }
}

/// `network.protocol.version`.
pub(crate) fn protocol_version(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "0.9",
        Version::HTTP_10 => "1.0",
        Version::HTTP_11 => "1.1",
        Version::HTTP_2 => "2",
        Version::HTTP_3 => "3",
        _ => "",
    }
}

fn meter() -> Meter {
    opentelemetry::global::meter("service-telemetry")
}

fn duration_histogram(name: &'static str, description: &'static str) -> Histogram<f64> {
    meter()
        .f64_histogram(name)
        .with_unit("s")
        .with_description(description)
        .with_boundaries(DURATION_BOUNDARIES.to_vec())
        .build()
}

/// Instruments created on first use, so a layer built before `init` still reports to the
/// provider `init` installs.
pub(crate) struct Instruments {
    pub(crate) server_duration: Histogram<f64>,
    pub(crate) server_active: UpDownCounter<i64>,
    pub(crate) client_duration: Histogram<f64>,
    #[cfg(feature = "tonic")]
    pub(crate) rpc_server_duration: Histogram<f64>,
    #[cfg(feature = "tonic")]
    pub(crate) rpc_client_duration: Histogram<f64>,
}

pub(crate) fn instruments() -> &'static Instruments {
    static INSTRUMENTS: OnceLock<Instruments> = OnceLock::new();
    INSTRUMENTS.get_or_init(|| Instruments {
        server_duration: duration_histogram(
            "http.server.request.duration",
            "Duration of HTTP server requests.",
        ),
        server_active: meter()
            .i64_up_down_counter("http.server.active_requests")
            .with_unit("{request}")
            .with_description("Number of active HTTP server requests.")
            .build(),
        client_duration: duration_histogram(
            "http.client.request.duration",
            "Duration of HTTP client requests.",
        ),
        #[cfg(feature = "tonic")]
        rpc_server_duration: duration_histogram(
            "rpc.server.call.duration",
            "Duration of RPCs handled by the server.",
        ),
        #[cfg(feature = "tonic")]
        rpc_client_duration: duration_histogram(
            "rpc.client.call.duration",
            "Duration of RPCs made by the client.",
        ),
    })
}

/// `server.address` and `server.port` of a request: the URI's authority (clients, HTTP/2)
/// or else the `Host` header (HTTP/1 servers); empty when neither is there.
pub(crate) fn server_address<B>(request: &http::Request<B>) -> (String, Option<u16>) {
    let host = request
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok());
    request
        .uri()
        .authority()
        .map(http::uri::Authority::as_str)
        .or(host)
        .map(split_authority)
        .unwrap_or_default()
}

/// `server.address` and `server.port` from an authority such as `example.com:8443`.
pub(crate) fn split_authority(authority: &str) -> (String, Option<u16>) {
    if let Some(rest) = authority.strip_prefix('[') {
        // [v6]:port
        if let Some((host, port)) = rest.split_once(']') {
            return (
                host.to_owned(),
                port.strip_prefix(':').and_then(|p| p.parse().ok()),
            );
        }
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => (host.to_owned(), port.parse().ok()),
        _ => (authority.to_owned(), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authority_forms() {
        assert_eq!(
            split_authority("example.com:8443"),
            ("example.com".into(), Some(8443))
        );
        assert_eq!(split_authority("example.com"), ("example.com".into(), None));
        assert_eq!(split_authority("[::1]:50051"), ("::1".into(), Some(50051)));
        assert_eq!(split_authority("[::1]"), ("::1".into(), None));
        assert_eq!(split_authority("h:notaport"), ("h".into(), None));
    }

    #[test]
    fn methods() {
        assert_eq!(method(&Method::GET), "GET");
        let odd = Method::from_bytes(b"PURGE").unwrap();
        assert_eq!(method(&odd), "_OTHER");
        assert_eq!(method_for_name(&odd), "HTTP");
    }
}
