//! The propagator `init` installs, through the HTTP server layer as a service receives real
//! header lines: several `tracestate` lines are one list, several `traceparent` lines start a
//! new trace, a malformed field starts a new trace, and the context the service sends on
//! carries what it received. Installs globals, so it has this file alone.
#![cfg(feature = "axum")]

use axum::body::Body;
use axum::http::Request;
use axum::routing::get;
use service_telemetry::instrument::HttpServerLayer;
use service_telemetry::propagation::inject_current;
use service_telemetry::{MemoryWriter, Telemetry};
use tower::ServiceExt as _;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

/// What the handler would send downstream: its own `traceparent` and `tracestate`.
async fn downstream() -> String {
    let mut headers = http::HeaderMap::new();
    inject_current(&mut headers);
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned()
    };
    format!("{} {}", get("traceparent"), get("tracestate"))
}

async fn call(lines: &[(&str, &str)]) -> (String, String) {
    let app = axum::Router::new()
        .route("/", get(downstream))
        .layer(HttpServerLayer::new());
    let mut request = Request::get("/");
    for (name, value) in lines {
        request = request.header(*name, *value);
    }
    let response = app
        .oneshot(request.body(Body::empty()).expect("request"))
        .await
        .expect("infallible");
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    let text = String::from_utf8(body.to_vec()).expect("utf-8");
    let (parent, state) = text.split_once(' ').expect("two fields");
    (parent.to_owned(), state.to_owned())
}

fn trace_of(traceparent: &str) -> &str {
    traceparent.split('-').nth(1).unwrap_or("")
}

#[tokio::test(flavor = "current_thread")]
async fn the_installed_propagator_follows_the_w3c_rules_through_the_server_layer() {
    let _telemetry = Telemetry::builder()
        .with_writer(MemoryWriter::new())
        .env_lookup(|_| None)
        .try_init()
        .expect("first init");
    let parent = format!("00-{TRACE}-{PARENT}-01");

    let (sent, state) = call(&[
        ("traceparent", &parent),
        ("tracestate", "rojo=00f067aa0ba902b7"),
        ("tracestate", "congo=t61rcWkgMzE"),
    ])
    .await;
    assert_eq!(trace_of(&sent), TRACE, "the trace continues: {sent}");
    assert!(sent.ends_with("-01"), "sampled: {sent}");
    assert_eq!(
        state, "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE",
        "both lines kept"
    );

    let (sent, state) = call(&[("traceparent", &parent), ("traceparent", &parent)]).await;
    assert_ne!(trace_of(&sent), TRACE, "two traceparent lines: a new trace");
    assert_eq!(state, "-", "no tracestate without a valid traceparent");

    for bad in [
        format!("00-{}-{PARENT}-01", &TRACE[..31]),
        format!("00-{TRACE}-{}-01", &PARENT[..15]),
        format!("000-{TRACE}-{PARENT}-01"),
        format!("00-{TRACE}-{PARENT}-1"),
    ] {
        let (sent, _) = call(&[("traceparent", &bad), ("tracestate", "a=1")]).await;
        assert_ne!(trace_of(&sent), TRACE, "{bad}: a new trace");
        assert_eq!(trace_of(&sent).len(), 32, "{sent}");
    }

    let (sent, state) = call(&[("traceparent", &parent), ("tracestate", "a=1,a=2")]).await;
    assert_eq!(trace_of(&sent), TRACE);
    assert_eq!(
        state, "-",
        "a duplicate key discards tracestate, and none is sent empty"
    );

    let (sent, _) = call(&[("traceparent", &format!("00-{TRACE}-{PARENT}-03"))]).await;
    assert!(
        sent.ends_with("-03"),
        "the random flag is propagated: {sent}"
    );

    // Level 2, 3.2.2.5.2: a trace started here has random ids, and says so; a sampled-out
    // parent's flags are kept as they came.
    let (sent, _) = call(&[]).await;
    let flags = u8::from_str_radix(sent.get(53..55).unwrap_or("zz"), 16);
    assert_eq!(flags.map(|f| f & 0x02), Ok(0x02), "random set: {sent}");
    let (sent, _) = call(&[("traceparent", &format!("00-{TRACE}-{PARENT}-02"))]).await;
    assert!(sent.ends_with("-02"), "not sampled, random kept: {sent}");
    let (sent, _) = call(&[("traceparent", &format!("00-{TRACE}-{PARENT}-00"))]).await;
    assert!(sent.ends_with("-00"), "not sampled, not random: {sent}");
}
