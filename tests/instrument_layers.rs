//! The HTTP server layer in process, against an in-memory exporter: names, parents, error
//! status, and malformed propagation headers. Installs globals, so it has this file alone.
#![cfg(feature = "axum")]

mod common;

use common::memory::global_memory_exporter;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use opentelemetry::trace::{SpanKind, Status};
use opentelemetry_sdk::trace::SpanData;
use service_telemetry::instrument::HttpServerLayer;
use tower::ServiceExt as _;

fn app() -> axum::Router {
    axum::Router::new()
        .route("/users/{id}", get(|| async { "ada" }))
        .route("/hang", get(std::future::pending::<&'static str>))
        .route(
            "/boom",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "boom") }),
        )
        .layer(HttpServerLayer::new())
}

/// Sends one request through the layer, reads the whole body (which ends the span), and
/// returns the spans exported for it.
async fn roundtrip(request: Request<Body>) -> (StatusCode, Vec<SpanData>) {
    let exporter = global_memory_exporter();
    let response = app().oneshot(request).await.expect("infallible");
    let status = response.status();
    axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    let spans = exporter.get_finished_spans().expect("spans");
    exporter.reset();
    (status, spans)
}

fn attr<'a>(span: &'a SpanData, key: &str) -> Option<&'a opentelemetry::Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| &kv.value)
}

// One test, run in order: the exporter is shared and reset between requests.
#[tokio::test(flavor = "current_thread")]
async fn server_layer_spans() {
    // A matched route: SERVER span named after the template, semconv attributes, a new trace.
    let (status, spans) = roundtrip(
        Request::get("/users/7")
            .header("user-agent", "test-agent")
            .header("host", "api.example.com:8443")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(spans.len(), 1, "{spans:#?}");
    let span = &spans[0];
    assert_eq!(span.name, "GET /users/{id}");
    assert_eq!(span.span_kind, SpanKind::Server);
    assert_eq!(span.status, Status::Unset);
    assert_eq!(
        attr(span, "http.route").map(|v| v.as_str().into_owned()),
        Some("/users/{id}".into())
    );
    assert_eq!(
        attr(span, "url.path").map(|v| v.as_str().into_owned()),
        Some("/users/7".into())
    );
    assert_eq!(
        attr(span, "http.response.status_code"),
        Some(&opentelemetry::Value::I64(200))
    );
    assert_eq!(
        attr(span, "server.address").map(|v| v.as_str().into_owned()),
        Some("api.example.com".into())
    );
    assert_eq!(
        attr(span, "server.port"),
        Some(&opentelemetry::Value::I64(8443))
    );
    assert_eq!(
        attr(span, "user_agent.original").map(|v| v.as_str().into_owned()),
        Some("test-agent".into())
    );
    assert!(
        !span.parent_span_id.to_string().chars().any(|c| c != '0'),
        "a root span"
    );

    // A valid traceparent: the span continues that trace, as a child of the caller's span.
    let (_, spans) = roundtrip(
        Request::get("/users/8")
            .header(
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            )
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    let span = &spans[0];
    assert_eq!(
        span.span_context.trace_id().to_string(),
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert_eq!(span.parent_span_id.to_string(), "00f067aa0ba902b7");
    assert!(span.parent_span_is_remote);

    // Malformed headers are ignored: a new root trace, never an error.
    for bad in [
        "garbage",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        "",
    ] {
        let (status, spans) = roundtrip(
            Request::get("/users/9")
                .header("traceparent", bad)
                .header("baggage", "=;;,%%%")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{bad:?}");
        let span = &spans[0];
        assert_ne!(
            span.span_context.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736",
            "{bad:?}"
        );
        assert!(span.span_context.is_valid(), "{bad:?}");
        assert!(
            !span.parent_span_id.to_string().chars().any(|c| c != '0'),
            "{bad:?}: root"
        );
    }

    // 5xx: error status and error.type.
    let (status, spans) = roundtrip(Request::get("/boom").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    let span = &spans[0];
    assert!(
        matches!(span.status, Status::Error { .. }),
        "{:?}",
        span.status
    );
    assert_eq!(
        attr(span, "error.type").map(|v| v.as_str().into_owned()),
        Some("500".into())
    );

    // No route matched (404) keeps the span name low-cardinality: the method alone.
    let (status, spans) = roundtrip(
        Request::get("/no/such/path/123")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(spans[0].name, "GET");
    assert_eq!(spans[0].status, Status::Unset, "4xx is not a server error");

    // A request abandoned before it answers (client gone, timeout) still ends its span.
    let exporter = global_memory_exporter();
    let abandoned = tokio::time::timeout(
        std::time::Duration::from_millis(20),
        app().oneshot(Request::get("/hang").body(Body::empty()).unwrap()),
    )
    .await;
    assert!(abandoned.is_err(), "the handler never answers");
    let spans = exporter.get_finished_spans().expect("spans");
    exporter.reset();
    assert_eq!(spans.len(), 1, "{spans:#?}");
    assert_eq!(spans[0].name, "GET /hang");
    assert!(attr(&spans[0], "http.response.status_code").is_none());

    // An unknown method: `_OTHER` attribute, `HTTP` span name.
    let (_, spans) = roundtrip(
        Request::builder()
            .method(axum::http::Method::from_bytes(b"PURGE").unwrap())
            .uri("/users/1")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(
        spans[0].name, "HTTP /users/{id}",
        "semconv: HTTP for an unknown method"
    );
    assert_eq!(
        attr(&spans[0], "http.request.method").map(|v| v.as_str().into_owned()),
        Some("_OTHER".into())
    );
    assert_eq!(
        attr(&spans[0], "http.request.method_original").map(|v| v.as_str().into_owned()),
        Some("PURGE".into()),
        "http-spans.md: the original method beside _OTHER"
    );

    // A query: url.query recorded with sensitive values redacted; the client behind a proxy
    // and the peer the server saw.
    let mut request = Request::get("/users/3?sig=s3cr3t&page=2&access_token=t0k")
        .header("x-forwarded-for", "203.0.113.195, 198.51.100.10")
        .body(Body::empty())
        .unwrap();
    request
        .extensions_mut()
        .insert(axum::extract::ConnectInfo(std::net::SocketAddr::from((
            [127, 0, 0, 1],
            40_001,
        ))));
    let (_, spans) = roundtrip(request).await;
    let text = |key: &str| attr(&spans[0], key).map(|v| v.as_str().into_owned());
    assert_eq!(
        text("url.query").as_deref(),
        Some("sig=REDACTED&page=2&access_token=REDACTED")
    );
    assert_eq!(text("url.path").as_deref(), Some("/users/3"));
    assert_eq!(text("client.address").as_deref(), Some("203.0.113.195"));
    assert_eq!(text("network.peer.address").as_deref(), Some("127.0.0.1"));
    assert_eq!(
        attr(&spans[0], "network.peer.port"),
        Some(&opentelemetry::Value::I64(40_001))
    );
    assert!(!format!("{spans:?}").contains("s3cr3t"));
    // No query, no url.query.
    let (_, spans) = roundtrip(Request::get("/users/4").body(Body::empty()).unwrap()).await;
    assert!(attr(&spans[0], "url.query").is_none());
}
