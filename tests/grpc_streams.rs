//! A real tonic server-streaming call through both gRPC layers on loopback, against an
//! in-memory exporter: one span per side for the whole stream, its messages counted, the
//! trace carried across. Installs globals, so it has this file alone.
#![cfg(feature = "tonic")]

use opentelemetry::trace::{SpanKind, Status, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use service_telemetry::instrument::{GrpcClientLayer, GrpcServerLayer};
use tonic_health::ServingStatus;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use tracing::Instrument as _;
use tracing_subscriber::layer::SubscriberExt as _;

fn attr(span: &SpanData, key: &str) -> Option<opentelemetry::Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.clone())
}

fn messages(span: &SpanData, kind: &str) -> usize {
    span.events
        .iter()
        .filter(|e| {
            e.name == "rpc.message"
                && e.attributes
                    .iter()
                    .any(|kv| kv.key.as_str() == "rpc.message.type" && kv.value.as_str() == kind)
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_stream_is_one_span_per_side_with_its_messages_counted() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    tracing::subscriber::set_global_default(
        tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test"))),
    )
    .expect("only global subscriber");
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (reporter, service) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("", ServingStatus::Serving)
        .await;
    let stop = stop_signal();
    let server = tokio::spawn({
        let stop = stop.clone();
        async move {
            tonic::transport::Server::builder()
                .layer(GrpcServerLayer::new())
                .add_service(service)
                .serve_with_incoming_shutdown(
                    tokio_stream::wrappers::TcpListenerStream::new(listener),
                    async move { stop.notified().await },
                )
                .await
        }
    });

    let channel = tonic::transport::Channel::from_shared(format!("http://{address}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = HealthClient::new(
        tower::ServiceBuilder::new()
            .layer(GrpcClientLayer::new())
            .service(channel),
    );
    let root = tracing::info_span!("caller");
    let trace_id = {
        use opentelemetry::trace::TraceContextExt as _;
        use tracing_opentelemetry::OpenTelemetrySpanExt as _;
        root.context().span().span_context().trace_id()
    };
    async {
        let mut stream = client
            .watch(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .expect("watch")
            .into_inner();
        let first = stream.message().await.unwrap().unwrap();
        assert_eq!(first.status, ServingStatus::Serving as i32);
        reporter
            .set_service_status("", ServingStatus::NotServing)
            .await;
        let second = stream.message().await.unwrap().unwrap();
        assert_eq!(second.status, ServingStatus::NotServing as i32);
        // The client walks away from the stream.
        drop(stream);
    }
    .instrument(root.clone())
    .await;
    drop(root);

    // The server side ends when it notices the cancellation.
    let name = "grpc.health.v1.Health/Watch";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let spans = loop {
        let spans = exporter.get_finished_spans().unwrap();
        if spans.iter().filter(|s| s.name == name).count() == 2 {
            break spans;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "spans so far: {spans:#?}"
        );
        tokio::task::yield_now().await;
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    stop.notify_one();
    let _ = server.await;

    let client_span = spans
        .iter()
        .find(|s| s.name == name && s.span_kind == SpanKind::Client)
        .expect("client span");
    let server_span = spans
        .iter()
        .find(|s| s.name == name && s.span_kind == SpanKind::Server)
        .expect("server span");
    assert_eq!(client_span.span_context.trace_id(), trace_id);
    assert_eq!(server_span.span_context.trace_id(), trace_id);
    assert_eq!(
        server_span.parent_span_id,
        client_span.span_context.span_id()
    );

    // The deprecated rpc.message events are not emitted by default (v1.44.0); the counts are.
    for span in [client_span, server_span] {
        assert_eq!(messages(span, "SENT") + messages(span, "RECEIVED"), 0);
    }
    assert_eq!(
        attr(client_span, "service_telemetry.rpc.messages.sent"),
        Some(1i64.into())
    );
    assert_eq!(
        attr(client_span, "service_telemetry.rpc.messages.received"),
        Some(2i64.into())
    );
    assert_eq!(
        attr(server_span, "service_telemetry.rpc.messages.received"),
        Some(1i64.into())
    );
    assert_eq!(
        attr(server_span, "service_telemetry.rpc.messages.sent"),
        Some(2i64.into())
    );
    // Cancelled by the client: CANCELLED on both sides, an error on neither.
    assert_eq!(
        attr(client_span, "rpc.response.status_code"),
        Some("CANCELLED".into())
    );
    assert_eq!(
        attr(server_span, "rpc.response.status_code"),
        Some("CANCELLED".into())
    );
    assert_eq!(attr(client_span, "error.type"), None);
    assert_eq!(attr(client_span, "rpc.method"), Some(name.into()));
    assert_eq!(client_span.status, Status::Unset);
    assert_eq!(server_span.status, Status::Unset);
    drop(provider);
}

fn stop_signal() -> std::sync::Arc<tokio::sync::Notify> {
    std::sync::Arc::new(tokio::sync::Notify::new())
}
