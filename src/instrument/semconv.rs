//! Semantic-convention names and value mappings shared by the layers.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, Ordering};

use http::{Method, Version};
use opentelemetry::metrics::{Histogram, Meter, UpDownCounter};

/// The explicit bucket boundaries the HTTP and RPC duration conventions recommend (seconds).
pub(crate) const DURATION_BOUNDARIES: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

static RPC_CONVENTIONS: AtomicU8 = AtomicU8::new(0);

/// Set by `init` from `OTEL_SEMCONV_STABILITY_OPT_IN` and the builder; the layers are built by
/// the service, before or after `init`, so they read it when a call starts.
#[cfg_attr(not(feature = "tonic"), allow(dead_code))]
pub(crate) fn set_rpc_conventions(conventions: crate::config::RpcConventions) {
    use crate::config::RpcConventions::*;
    let code = match conventions {
        Stable => 0,
        Duplicate => 1,
        Experimental => 2,
    };
    RPC_CONVENTIONS.store(code, Ordering::Relaxed);
}

/// Which RPC names the gRPC layers emit: (the v1.44.0 ones, the v1.37.0 experimental ones).
#[cfg_attr(not(feature = "tonic"), allow(dead_code))]
pub(crate) fn rpc_conventions() -> RpcNames {
    match RPC_CONVENTIONS.load(Ordering::Relaxed) {
        1 => RpcNames {
            stable: true,
            experimental: true,
        },
        2 => RpcNames {
            stable: false,
            experimental: true,
        },
        _ => RpcNames {
            stable: true,
            experimental: false,
        },
    }
}

/// The sets of RPC names a call emits; at least one is true.
#[derive(Clone, Copy, Debug)]
#[cfg_attr(not(feature = "tonic"), allow(dead_code))]
pub(crate) struct RpcNames {
    pub(crate) stable: bool,
    pub(crate) experimental: bool,
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

/// Query parameters whose values are always replaced by `REDACTED` in `url.query` and `url.full`:
/// the semantic conventions' list (v1.44.0 `url` registry, notes of `url.full` and
/// `url.query`), AWS's older SigV2 names, and the names tokens and keys usually travel under.
/// Matched without regard to case; [`redact_query_parameters`] adds more.
pub const SENSITIVE_QUERY_PARAMETERS: &[&str] = &[
    // semconv v1.44.0
    "X-Amz-Signature",
    "X-Amz-Credential",
    "X-Amz-Security-Token",
    "sig",
    "X-Goog-Signature",
    // AWS Signature Version 2
    "AWSAccessKeyId",
    "Signature",
    // credentials by their usual names
    "access_token",
    "refresh_token",
    "id_token",
    "token",
    "api_key",
    "apikey",
    "key",
    "secret",
    "client_secret",
    "password",
    "passwd",
    "auth",
    "code",
];

static EXTRA_SENSITIVE: std::sync::RwLock<Vec<String>> = std::sync::RwLock::new(Vec::new());

/// Adds query parameter names whose values the HTTP layers record as `REDACTED`, beside
/// [`SENSITIVE_QUERY_PARAMETERS`]. Process-wide; call it once in `main`.
///
/// ```
/// service_telemetry::instrument::redact_query_parameters(["session", "X-Partner-Key"]);
/// ```
pub fn redact_query_parameters<S: Into<String>>(names: impl IntoIterator<Item = S>) {
    let mut extra = EXTRA_SENSITIVE
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    extra.extend(names.into_iter().map(Into::into));
}

fn is_sensitive(name: &str) -> bool {
    // Keys arrive percent-encoded; the names above have nothing to encode.
    SENSITIVE_QUERY_PARAMETERS
        .iter()
        .any(|s| s.eq_ignore_ascii_case(name))
        || EXTRA_SENSITIVE
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .any(|s| s.eq_ignore_ascii_case(name))
}

/// `url.query`: the query with the values of sensitive parameters replaced by `REDACTED`, keys
/// and order kept (`color=blue&sig=REDACTED`).
pub(crate) fn redact_query(query: &str) -> String {
    let mut out = String::with_capacity(query.len());
    push_redacted_query(&mut out, query);
    out
}

/// [`redact_query`] appended to `out`: one buffer for a whole `url.full`, no piece allocated.
fn push_redacted_query(out: &mut String, query: &str) {
    for (i, pair) in query.split('&').enumerate() {
        if i > 0 {
            out.push('&');
        }
        match pair.split_once('=') {
            Some((key, _)) if is_sensitive(key) => {
                out.push_str(key);
                out.push_str("=REDACTED");
            }
            _ => out.push_str(pair),
        }
    }
}

/// `url.full` (http-spans.md): `scheme://host[:port]path[?query]`, with user info replaced by
/// `REDACTED:REDACTED` ("MUST NOT contain credentials") and the query redacted as
/// [`redact_query`] does; no fragment (a client never sends one).
pub(crate) fn url_full(uri: &http::Uri) -> String {
    let scheme = uri.scheme_str().unwrap_or("http");
    let host = uri.host().unwrap_or("");
    let path = uri.path();
    let query = uri.query();
    let mut out = String::with_capacity(
        scheme.len() + host.len() + path.len() + query.map_or(0, str::len) + 32,
    );
    out.push_str(scheme);
    out.push_str("://");
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        out.push_str("REDACTED:REDACTED@");
    }
    out.push_str(host);
    if let Some(port) = uri.port_u16() {
        out.push(':');
        out.push_str(itoa::Buffer::new().format(port));
    }
    out.push_str(path);
    if let Some(query) = query {
        out.push('?');
        push_redacted_query(&mut out, query);
    }
    out
}

/// `network.peer.address` / `.port` of a server request: the socket address the server put in
/// the request's extensions (axum's `ConnectInfo<SocketAddr>`, from
/// `into_make_service_with_connect_info`; tonic's `TcpConnectInfo`, which its server adds to
/// every request before the layers run; or a `SocketAddr` a hyper server inserted).
pub(crate) fn peer_address<B>(request: &http::Request<B>) -> Option<std::net::SocketAddr> {
    #[cfg(feature = "tonic")]
    if let Some(address) = request
        .extensions()
        .get::<tonic::transport::server::TcpConnectInfo>()
        .and_then(tonic::transport::server::TcpConnectInfo::remote_addr)
    {
        return Some(address);
    }
    #[cfg(feature = "axum")]
    if let Some(info) = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
    {
        return Some(info.0);
    }
    request.extensions().get::<std::net::SocketAddr>().copied()
}

/// `client.address` (http-spans.md): the original client behind proxies, from the first
/// `for=` of `Forwarded`, else the first `X-Forwarded-For` entry; `None` when neither says.
pub(crate) fn client_address<B>(request: &http::Request<B>) -> Option<String> {
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let forwarded = header("forwarded").and_then(|value| {
        value.split([',', ';']).find_map(|part| {
            let (key, v) = part.trim().split_once('=')?;
            key.eq_ignore_ascii_case("for").then(|| {
                let v = v.trim().trim_matches('"');
                // `[2001:db8::1]:4711` or `192.0.2.43:47011`: the address without the port.
                match v.strip_prefix('[') {
                    Some(rest) => rest.split(']').next().unwrap_or(rest).to_owned(),
                    None => v.split(':').next().unwrap_or(v).to_owned(),
                }
            })
        })
    });
    forwarded
        .or_else(|| {
            header("x-forwarded-for")
                .and_then(|v| v.split(',').next().map(|first| first.trim().to_owned()))
        })
        .filter(|a| !a.is_empty() && !a.eq_ignore_ascii_case("unknown"))
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

/// The v1.37.0 RPC duration metrics were in milliseconds; the same boundaries, scaled.
#[cfg(feature = "tonic")]
fn duration_histogram_ms(name: &'static str, description: &'static str) -> Histogram<f64> {
    meter()
        .f64_histogram(name)
        .with_unit("ms")
        .with_description(description)
        .with_boundaries(DURATION_BOUNDARIES.iter().map(|s| s * 1000.0).collect())
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
    /// `rpc.server.duration` (ms), the v1.37.0 name, for `rpc/dup` and the experimental mode.
    #[cfg(feature = "tonic")]
    pub(crate) rpc_server_duration_ms: Histogram<f64>,
    /// `rpc.client.duration` (ms), likewise.
    #[cfg(feature = "tonic")]
    pub(crate) rpc_client_duration_ms: Histogram<f64>,
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
        #[cfg(feature = "tonic")]
        rpc_server_duration_ms: duration_histogram_ms(
            "rpc.server.duration",
            "Measures the duration of inbound RPC.",
        ),
        #[cfg(feature = "tonic")]
        rpc_client_duration_ms: duration_histogram_ms(
            "rpc.client.duration",
            "Measures the duration of outbound RPC.",
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
    fn client_address_from_forwarded_then_x_forwarded_for() {
        let request = |headers: &[(&str, &str)]| {
            let mut builder = http::Request::builder();
            for (k, v) in headers {
                builder = builder.header(*k, *v);
            }
            builder.body(()).unwrap()
        };
        assert_eq!(
            client_address(&request(&[(
                "forwarded",
                "for=\"[2001:db8:cafe::17]:4711\";proto=https"
            )])),
            Some("2001:db8:cafe::17".into())
        );
        assert_eq!(
            client_address(&request(&[(
                "forwarded",
                "proto=http;for=192.0.2.43:47011, for=198.51.100.17"
            )])),
            Some("192.0.2.43".into())
        );
        assert_eq!(
            client_address(&request(&[(
                "x-forwarded-for",
                "203.0.113.195, 70.41.3.18"
            )])),
            Some("203.0.113.195".into())
        );
        assert_eq!(client_address(&request(&[])), None);
        let mut with_peer = request(&[]);
        with_peer
            .extensions_mut()
            .insert(std::net::SocketAddr::from(([127, 0, 0, 1], 4000)));
        assert_eq!(peer_address(&with_peer).map(|p| p.port()), Some(4000));
    }

    #[test]
    fn sensitive_query_values_are_redacted_keys_and_order_kept() {
        assert_eq!(
            redact_query("color=blue&sig=abc&X-Amz-Signature=s&page=2&flag"),
            "color=blue&sig=REDACTED&X-Amz-Signature=REDACTED&page=2&flag"
        );
        assert_eq!(redact_query("ACCESS_TOKEN=t"), "ACCESS_TOKEN=REDACTED");
        redact_query_parameters(["session"]);
        assert_eq!(redact_query("session=s&x=1"), "session=REDACTED&x=1");
        let uri: http::Uri = "https://user:pw@api.example.com:8443/v1/pay?token=t&amount=5"
            .parse()
            .unwrap();
        assert_eq!(
            url_full(&uri),
            "https://REDACTED:REDACTED@api.example.com:8443/v1/pay?token=REDACTED&amount=5"
        );
        let plain: http::Uri = "http://h/p".parse().unwrap();
        assert_eq!(url_full(&plain), "http://h/p");
    }

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
