//! Failed HTTP client calls in process, against an in-memory exporter: the span's status text
//! never carries the URL's query (tokens) or user info, and `error.type` names the cause.
//! Installs globals, so it has this file alone.
#![cfg(all(feature = "reqwest", feature = "tower"))]

mod common;

use common::memory::global_memory_exporter;

use std::net::TcpListener;
use std::time::Duration;

use opentelemetry::trace::Status;
use opentelemetry_sdk::trace::SpanData;
use service_telemetry::instrument::{HttpClientLayer, ReqwestMiddleware};
use tower::{Layer as _, ServiceExt as _};

const SECRET: &str = "s3cr3t-T0KEN";

/// The tests share the exporter: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn client_span(spans: &[SpanData]) -> &SpanData {
    spans
        .iter()
        .find(|s| s.span_kind == opentelemetry::trace::SpanKind::Client)
        .unwrap_or_else(|| panic!("no client span in {spans:#?}"))
}

fn attr(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.to_string())
}

/// Nothing the span recorded mentions the secret or the credentials.
fn assert_no_secret(span: &SpanData) {
    let everything = format!("{span:?}");
    assert!(!everything.contains(SECRET), "the token leaked: {span:#?}");
    assert!(
        !everything.contains("pw@"),
        "the password leaked: {span:#?}"
    );
}

fn status_text(span: &SpanData) -> String {
    match &span.status {
        Status::Error { description } => description.to_string(),
        other => panic!("not an error status: {other:?}"),
    }
}

async fn reqwest_call(url: &str, timeout: Duration) -> SpanData {
    let exporter = global_memory_exporter();
    exporter.reset();
    let client = reqwest_middleware::ClientBuilder::new(
        reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .expect("client"),
    )
    .with(ReqwestMiddleware::new())
    .build();
    assert!(client.get(url).send().await.is_err(), "the call must fail");
    client_span(&exporter.get_finished_spans().expect("spans")).clone()
}

#[tokio::test]
async fn a_refused_connection_names_its_cause_without_the_token() {
    let _serial = SERIAL.lock().await;
    // Bound then dropped: nothing listens there any more.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let url = format!("http://user:pw@127.0.0.1:{port}/orders?token={SECRET}&page=2");
    let span = reqwest_call(&url, Duration::from_secs(5)).await;
    assert_no_secret(&span);
    assert_eq!(
        attr(&span, "error.type").as_deref(),
        Some("connection_refused")
    );
    // http-spans.md: url.full keeps the query with sensitive values redacted (reqwest moves
    // the credentials into an Authorization header before the middleware sees the URL).
    assert_eq!(
        attr(&span, "url.full").as_deref(),
        Some(format!("http://127.0.0.1:{port}/orders?token=REDACTED&page=2").as_str())
    );
    assert!(!status_text(&span).is_empty());
}

#[tokio::test]
async fn a_timeout_is_a_timeout_without_the_token() {
    let _serial = SERIAL.lock().await;
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    // Accepts and never answers.
    let _held = std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    let url = format!("http://127.0.0.1:{port}/slow?token={SECRET}");
    let span = reqwest_call(&url, Duration::from_millis(300)).await;
    assert_no_secret(&span);
    assert_eq!(attr(&span, "error.type").as_deref(), Some("timeout"));
}

#[tokio::test]
async fn the_tower_layer_redacts_urls_quoted_in_any_error_text() {
    let _serial = SERIAL.lock().await;
    let exporter = global_memory_exporter();
    exporter.reset();
    let failing = tower::service_fn(|_request: http::Request<()>| async move {
        Err::<http::Response<()>, String>(format!(
            "error sending request for url (https://api.example.com/v1/pay?token={SECRET}): connection reset by peer"
        ))
    });
    let service = HttpClientLayer::new().layer(failing);
    let request = http::Request::get(format!("https://api.example.com/v1/pay?token={SECRET}"))
        .body(())
        .expect("request");
    assert!(service.oneshot(request).await.is_err());
    let spans = exporter.get_finished_spans().expect("spans");
    let span = client_span(&spans);
    assert_no_secret(span);
    assert_eq!(
        attr(span, "error.type").as_deref(),
        Some("connection_reset")
    );
    assert!(
        status_text(span).contains("https://api.example.com/v1/pay?REDACTED"),
        "{}",
        status_text(span)
    );
}
