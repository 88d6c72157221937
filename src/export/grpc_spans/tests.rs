//! The exporter against a scripted OTLP trace service (tonic, on loopback): what it sends,
//! when it retries, and what its failures say.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SpanExporter as _;
use tonic::Code;

use super::GrpcSpanExporter;
use crate::export::accounting::error_type_from_text;
use crate::export::otlp::Retries;
use crate::export::span_encoder::tests::{three_spans as batch, traces_config};

type Reply = Result<ExportTraceServiceResponse, tonic::Status>;

/// Answers each call with the next scripted reply (the last one repeats); keeps what it got.
#[derive(Clone)]
struct Script {
    replies: Arc<Vec<fn() -> Reply>>,
    received: Arc<Mutex<Vec<(tonic::metadata::MetadataMap, ExportTraceServiceRequest)>>>,
}

#[tonic::async_trait]
impl TraceService for Script {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let (metadata, _, message) = request.into_parts();
        let n = {
            let mut received = self.received.lock().expect("received");
            received.push((metadata, message));
            received.len()
        };
        (self.replies[(n - 1).min(self.replies.len() - 1)])().map(tonic::Response::new)
    }
}

async fn serve(replies: &[fn() -> Reply]) -> (String, Script) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let port = listener.local_addr().expect("address").port();
    let script = Script {
        replies: Arc::new(replies.to_vec()),
        received: Arc::default(),
    };
    let service = TraceServiceServer::new(script.clone())
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    (format!("http://127.0.0.1:{port}"), script)
}

fn ok() -> Reply {
    Ok(ExportTraceServiceResponse::default())
}

fn partly_rejected() -> Reply {
    Ok(ExportTraceServiceResponse {
        partial_success: Some(ExportTracePartialSuccess {
            rejected_spans: 1,
            error_message: "one too many".into(),
        }),
    })
}

fn unavailable() -> Reply {
    Err(tonic::Status::unavailable("collector restarting"))
}

fn invalid() -> Reply {
    Err(tonic::Status::invalid_argument("bad span"))
}

fn exhausted() -> Reply {
    Err(tonic::Status::resource_exhausted("queue full"))
}

/// RESOURCE_EXHAUSTED with a `RetryInfo` of 50 ms in its details.
fn exhausted_retry_soon() -> Reply {
    let url = b"type.googleapis.com/google.rpc.RetryInfo";
    // RetryInfo { retry_delay: Duration { nanos: 50_000_000 } }
    let info = [0x0a, 0x05, 0x10, 0x80, 0xe1, 0xeb, 0x17];
    let mut any = vec![0x0a, url.len() as u8];
    any.extend_from_slice(url);
    any.extend_from_slice(&[0x12, info.len() as u8]);
    any.extend_from_slice(&info);
    let mut details = vec![0x08, 0x08, 0x1a, any.len() as u8];
    details.extend_from_slice(&any);
    Err(tonic::Status::with_details(
        Code::ResourceExhausted,
        "slow down",
        details.into(),
    ))
}

fn exporter(endpoint: &str, extra: &[(&str, &str)], retries: Retries) -> GrpcSpanExporter {
    let config = traces_config("grpc", endpoint, extra);
    let mut exporter = GrpcSpanExporter::new(&config, None, retries).expect("exporter");
    exporter.set_resource(&resource());
    exporter
}

fn resource() -> Resource {
    Resource::builder_empty().with_service_name("svc").build()
}

async fn export(exporter: &GrpcSpanExporter) -> Result<(), String> {
    exporter.export(batch()).await.map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unavailable_is_retried_and_the_service_gets_the_batch_with_the_configured_metadata() {
    let (endpoint, script) = serve(&[unavailable, partly_rejected]).await;
    let exporter = exporter(
        &endpoint,
        &[
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=secret"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
        ],
        Retries::WhileRunning,
    );
    export(&exporter).await.expect("delivered on the retry");
    let received = script.received.lock().expect("received").clone();
    assert_eq!(received.len(), 2);
    let (metadata, request) = &received[1];
    assert_eq!(
        metadata.get("x-api-key").and_then(|v| v.to_str().ok()),
        Some("secret")
    );
    assert_eq!(
        metadata.get("grpc-encoding").and_then(|v| v.to_str().ok()),
        Some("gzip")
    );
    assert!(metadata.get("grpc-timeout").is_some(), "{metadata:?}");
    let expected = ExportTraceServiceRequest {
        resource_spans: group_spans_by_resource_and_scope(
            batch(),
            &ResourceAttributesWithSchema::from(&resource()),
        ),
    };
    assert_eq!(request, &expected);
    assert_eq!(
        received[0].1, expected,
        "the retry resends the same request"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_final_status_is_not_retried_and_its_error_names_the_code() {
    let (endpoint, script) = serve(&[invalid, ok]).await;
    let error = export(&exporter(&endpoint, &[], Retries::WhileRunning))
        .await
        .expect_err("INVALID_ARGUMENT is final");
    assert!(
        error.contains("InvalidArgument") && error.contains("bad span"),
        "{error}"
    );
    assert_eq!(script.received.lock().expect("received").len(), 1);

    let (endpoint, script) = serve(&[exhausted, ok]).await;
    export(&exporter(&endpoint, &[], Retries::WhileRunning))
        .await
        .expect_err("RESOURCE_EXHAUSTED without RetryInfo is final");
    assert_eq!(script.received.lock().expect("received").len(), 1);

    let (endpoint, script) = serve(&[exhausted_retry_soon, ok]).await;
    export(&exporter(&endpoint, &[], Retries::WhileRunning))
        .await
        .expect("RESOURCE_EXHAUSTED with RetryInfo is retried");
    assert_eq!(script.received.lock().expect("received").len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unavailable_gets_three_retries_while_running_and_none_in_the_final_flush() {
    let (endpoint, script) = serve(&[unavailable]).await;
    let error = export(&exporter(&endpoint, &[], Retries::WhileRunning))
        .await
        .expect_err("always unavailable");
    assert_eq!(script.received.lock().expect("received").len(), 4);
    assert_eq!(error_type_from_text(&error), "unavailable", "{error}");

    let (endpoint, script) = serve(&[unavailable, ok]).await;
    export(&exporter(&endpoint, &[], Retries::FinalFlush))
        .await
        .expect_err("one attempt");
    assert_eq!(script.received.lock().expect("received").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_is_reported_with_its_cause_and_a_shut_down_exporter_sends_nothing() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let refused = exporter(
        &format!("http://127.0.0.1:{port}"),
        &[],
        Retries::FinalFlush,
    );
    let error = export(&refused).await.expect_err("nothing listens");
    assert_eq!(
        error_type_from_text(&error),
        "connection_refused",
        "{error}"
    );

    let (endpoint, script) = serve(&[ok]).await;
    let exporter = exporter(&endpoint, &[], Retries::WhileRunning);
    exporter
        .shutdown_with_timeout(Duration::from_secs(1))
        .expect("first shutdown");
    assert!(export(&exporter).await.is_err());
    assert!(script.received.lock().expect("received").is_empty());
}
