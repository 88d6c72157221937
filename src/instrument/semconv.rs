//! Semantic-convention names and value mappings shared by the layers.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use http::{Method, Version};
use opentelemetry::metrics::{Histogram, Meter, UpDownCounter};

/// The explicit bucket boundaries the HTTP and RPC duration conventions recommend (seconds).
pub(crate) const DURATION_BOUNDARIES: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

static RPC_DUPLICATE: AtomicBool = AtomicBool::new(false);

/// Set by `init` from `OTEL_SEMCONV_STABILITY_OPT_IN`; the layers are built by the service,
/// before or after `init`, so they read it when a call starts.
#[cfg_attr(not(feature = "tonic"), allow(dead_code))]
pub(crate) fn set_rpc_conventions(conventions: crate::config::RpcConventions) {
    RPC_DUPLICATE.store(
        conventions == crate::config::RpcConventions::Duplicate,
        Ordering::Relaxed,
    );
}

/// Whether the experimental RPC attributes are emitted beside the stable ones (`rpc/dup`).
#[cfg_attr(not(feature = "tonic"), allow(dead_code))]
pub(crate) fn rpc_duplicate() -> bool {
    RPC_DUPLICATE.load(Ordering::Relaxed)
}

/// `rpc.response.status_code` for gRPC: the status code's name (semconv v1.44.0,
/// `docs/rpc/grpc.md`, "gRPC Status").
#[cfg_attr(not(feature = "tonic"), allow(dead_code))]
pub(crate) fn grpc_status_name(code: i64) -> &'static str {
    match code {
        0 => "OK",
        1 => "CANCELLED",
        2 => "UNKNOWN",
        3 => "INVALID_ARGUMENT",
        4 => "DEADLINE_EXCEEDED",
        5 => "NOT_FOUND",
        6 => "ALREADY_EXISTS",
        7 => "PERMISSION_DENIED",
        8 => "RESOURCE_EXHAUSTED",
        9 => "FAILED_PRECONDITION",
        10 => "ABORTED",
        11 => "OUT_OF_RANGE",
        12 => "UNIMPLEMENTED",
        13 => "INTERNAL",
        14 => "UNAVAILABLE",
        15 => "DATA_LOSS",
        16 => "UNAUTHENTICATED",
        _ => "_OTHER",
    }
}

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

/// `text` with every URL in it cut to scheme, host, port and path: error messages of HTTP
/// stacks quote the whole URL (reqwest: `error sending request for url (https://...)`), and a
/// query string or user info there carries tokens. Used for every span status description and
/// error text the layers record.
pub(crate) fn redact_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        // The scheme: the letters, digits, `+`, `-`, `.` right before `://`.
        let scheme_start = rest[..at]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
            .map_or(0, |i| i + 1);
        let end = rest[at + 3..]
            .find(|c: char| c.is_whitespace() || matches!(c, ')' | '"' | '\'' | '<' | '>' | '`'))
            .map_or(rest.len(), |i| at + 3 + i);
        out.push_str(&rest[..scheme_start]);
        let url = &rest[scheme_start..end];
        out.push_str(&redact_url_text(url));
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// One URL's text without user info, query or fragment (`?REDACTED` marks a dropped query).
fn redact_url_text(url: &str) -> String {
    let Some((scheme, after)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (before_query, had_query) = match after.find(['?', '#']) {
        Some(i) => (&after[..i], after[i..].starts_with('?')),
        None => (after, false),
    };
    let (authority, path) = match before_query.find('/') {
        Some(i) => before_query.split_at(i),
        None => (before_query, ""),
    };
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let query = if had_query { "?REDACTED" } else { "" };
    format!("{scheme}://{host}{path}{query}")
}

/// A low-cardinality `error.type` for a transport error, from the I/O error at the bottom of
/// its source chain where there is one, else from words its message uses; `_OTHER` when
/// neither says.
#[cfg_attr(not(feature = "reqwest"), allow(dead_code))]
pub(crate) fn transport_error_type(error: &(dyn std::error::Error + 'static)) -> &'static str {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if let Some(kind) = io_error_type(io.kind()) {
                return kind;
            }
        }
        current = e.source();
    }
    let mut text = String::new();
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        text.push_str(&e.to_string().to_ascii_lowercase());
        text.push(' ');
        current = e.source();
    }
    error_type_from_text(&text)
}

#[cfg_attr(not(feature = "reqwest"), allow(dead_code))]
fn io_error_type(kind: std::io::ErrorKind) -> Option<&'static str> {
    use std::io::ErrorKind as K;
    Some(match kind {
        K::ConnectionRefused => "connection_refused",
        K::ConnectionReset => "connection_reset",
        K::ConnectionAborted => "connection_aborted",
        K::TimedOut => "timeout",
        K::NotConnected => "not_connected",
        K::AddrNotAvailable => "address_not_available",
        K::BrokenPipe => "broken_pipe",
        K::UnexpectedEof => "unexpected_eof",
        _ => return None,
    })
}

pub(crate) use crate::export::error_type_from_text;

#[cfg(test)]
mod redaction_tests {
    use super::*;

    #[test]
    fn urls_in_error_texts_lose_query_user_info_and_fragment() {
        let cases = [
            (
                "error sending request for url (http://127.0.0.1:9/orders?token=SECRET&x=1)",
                "error sending request for url (http://127.0.0.1:9/orders?REDACTED)",
            ),
            (
                "https://user:pa55@api.example.com/v1/x#frag and then http://h/",
                "https://api.example.com/v1/x and then http://h/",
            ),
            ("no url here", "no url here"),
            ("ws://h:1?sig=abc", "ws://h:1?REDACTED"),
        ];
        for (input, expected) in cases {
            assert_eq!(redact_urls(input), expected, "{input}");
        }
    }

    #[test]
    fn transport_errors_are_named_by_their_cause() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(transport_error_type(&refused), "connection_refused");
        assert_eq!(error_type_from_text("operation timed out"), "timeout");
        assert_eq!(
            error_type_from_text("dns error: failed to lookup address"),
            "name_resolution_error"
        );
        assert_eq!(error_type_from_text("something odd"), "_OTHER");
    }
}
