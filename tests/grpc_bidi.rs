//! A real bidirectional streaming service generated from a `.proto` (tests/support/echo-proto)
//! through both gRPC layers, exporting to the real collector: one long-lived span per stream on
//! each side with a child span per message, and the status of a completed stream, a client
//! cancel, a server error mid-stream and an exceeded deadline on both sides. Installs globals,
//! so it has this file alone.
#![cfg(feature = "tonic")]

mod common;

use std::pin::Pin;
use std::time::Duration;

use common::collector::Collector;
use echo_proto::Message;
use echo_proto::echo_client::EchoClient;
use echo_proto::echo_server::{Echo, EchoServer};
use serde_json::Value;
use service_telemetry::instrument::{GrpcClientLayer, GrpcServerLayer};
use service_telemetry::{MemoryWriter, Telemetry};
use tokio_stream::{Stream, StreamExt as _};
use tracing::Instrument as _;

const METHOD: &str = "echo.v1.Echo/Chat";
const WAIT: Duration = Duration::from_secs(20);

struct Echoer;

type Replies = Pin<Box<dyn Stream<Item = Result<Message, tonic::Status>> + Send>>;

#[tonic::codegen::async_trait]
impl Echo for Echoer {
    type ChatStream = Replies;

    async fn chat(
        &self,
        request: tonic::Request<tonic::Streaming<Message>>,
    ) -> Result<tonic::Response<Replies>, tonic::Status> {
        let mut inbound = request.into_inner();
        // A first message with a delay holds the response itself back, so a deadline on the
        // call runs out before the stream opens (the server's grpc-timeout guards the response).
        let first = inbound.next().await.and_then(Result::ok);
        if let Some(first) = &first {
            tokio::time::sleep(Duration::from_millis(u64::from(first.delay_ms))).await;
        }
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        // The first message's delay was already waited out above.
        let mut waited = first.is_some();
        tokio::spawn(async move {
            let rest = async_stream_of(first, inbound);
            tokio::pin!(rest);
            while let Some(message) = rest.next().await {
                // A later message with a delay holds the response open that long, even after
                // the client closes its side, so a client's reset always finds it unfinished.
                if !std::mem::take(&mut waited) && message.delay_ms > 0 {
                    tokio::time::sleep(Duration::from_millis(u64::from(message.delay_ms))).await;
                }
                if message.fail {
                    let _ = tx.send(Err(tonic::Status::internal("asked to fail"))).await;
                    return;
                }
                if tx.send(Ok(message)).await.is_err() {
                    return;
                }
            }
        });
        Ok(tonic::Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}

/// The first message (already read) followed by the rest of the inbound stream.
fn async_stream_of(
    first: Option<Message>,
    inbound: tonic::Streaming<Message>,
) -> impl Stream<Item = Message> {
    tokio_stream::iter(first).chain(inbound.filter_map(Result::ok))
}

fn text(t: &str) -> Message {
    Message {
        text: t.to_owned(),
        ..Message::default()
    }
}

type Client = EchoClient<service_telemetry::instrument::GrpcClient<tonic::transport::Channel>>;

/// The client span and the server span of the stream whose root span is `root`, with the
/// message spans under each.
fn stream_spans(collector: &Collector, trace_id: &str) -> (Value, Value, Vec<Value>) {
    let of_trace = |r: &Value| r["signal"] == "span" && r["trace_id"] == trace_id;
    collector.wait_for("the server span", WAIT, |r| {
        of_trace(r)
            && r["name"] == METHOD
            && r["kind"].as_str().is_some_and(|k| k.contains("SERVER"))
    });
    collector.wait_for("the client span", WAIT, |r| {
        of_trace(r)
            && r["name"] == METHOD
            && r["kind"].as_str().is_some_and(|k| k.contains("CLIENT"))
    });
    let records: Vec<Value> = collector
        .records()
        .into_iter()
        .filter(|r| of_trace(r))
        .collect();
    let side = |kind: &str| {
        records
            .iter()
            .find(|r| r["name"] == METHOD && r["kind"].as_str().is_some_and(|k| k.contains(kind)))
            .cloned()
            .expect(kind)
    };
    let messages = records
        .iter()
        .filter(|r| {
            r["name"]
                .as_str()
                .is_some_and(|n| n.starts_with(&format!("{METHOD} ")))
        })
        .cloned()
        .collect();
    (side("CLIENT"), side("SERVER"), messages)
}

fn children<'a>(messages: &'a [Value], parent: &Value, direction: &str) -> Vec<&'a Value> {
    messages
        .iter()
        .filter(|m| {
            m["parent_span_id"] == parent["span_id"]
                && m["attributes"]["service_telemetry.rpc.message.direction"] == direction
        })
        .collect()
}

fn status(span: &Value) -> (&str, bool) {
    (
        span["attributes"]["rpc.response.status_code"]
            .as_str()
            .unwrap_or("-"),
        span["status"].as_str().is_some_and(|s| s.contains("ERROR")),
    )
}

#[test]
fn bidirectional_streams_are_one_span_per_side_with_a_span_per_message_and_the_right_status() {
    let collector = Collector::start();
    let endpoint = collector.grpc_endpoint();
    let telemetry = Telemetry::builder()
        .service_name("bidi")
        .with_writer(MemoryWriter::new())
        .env_lookup(move |name| match name {
            "OTEL_ENABLED" => Some("true".into()),
            "OTEL_EXPORTER_OTLP_PROTOCOL" => Some("grpc".into()),
            "OTEL_EXPORTER_OTLP_ENDPOINT" => Some(endpoint.clone()),
            "OTEL_BSP_SCHEDULE_DELAY" => Some("100".into()),
            _ => None,
        })
        .try_init()
        .expect("first init");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut cases: Vec<(&str, String)> = Vec::new();
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        tokio::spawn(
            tonic::transport::Server::builder()
                .layer(GrpcServerLayer::new())
                .add_service(EchoServer::new(Echoer))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        let target = format!("http://{address}");
        let channel = tonic::transport::Endpoint::from_shared(target.clone())
            .expect("endpoint")
            .connect_lazy();
        let client: Client = EchoClient::new(
            tower::ServiceBuilder::new()
                .layer(GrpcClientLayer::for_target(&target))
                .service(channel),
        );

        // 1. A stream of three messages each way, closed by the client: OK on both sides.
        let root = tracing::info_span!("complete stream");
        let trace = trace_of(&root);
        let mut c = client.clone();
        async {
            let replies = c
                .chat(tokio_stream::iter([text("a"), text("b"), text("c")]))
                .await
                .expect("call");
            let got: Vec<String> = replies
                .into_inner()
                .map(|m| m.expect("reply").text)
                .collect()
                .await;
            assert_eq!(got, ["a", "b", "c"]);
        }
        .instrument(root)
        .await;
        cases.push(("complete", trace));

        // 1b. A long stream: message spans stop at the cap, the rest are counted.
        let root = tracing::info_span!("long stream");
        let trace = trace_of(&root);
        let mut c = client.clone();
        async {
            let many: Vec<Message> = (0..70).map(|i| text(&i.to_string())).collect();
            let replies = c.chat(tokio_stream::iter(many)).await.expect("call");
            assert_eq!(replies.into_inner().collect::<Vec<_>>().await.len(), 70);
        }
        .instrument(root)
        .await;
        cases.push(("long", trace));

        // 2. The client walks away mid-stream: CANCELLED, an error on neither side.
        let root = tracing::info_span!("cancelled stream");
        let trace = trace_of(&root);
        let mut c = client.clone();
        async {
            let (tx, rx) = tokio::sync::mpsc::channel(4);
            tx.send(text("first")).await.expect("send");
            let mut replies = c
                .chat(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await
                .expect("call")
                .into_inner();
            assert_eq!(
                replies.next().await.expect("one").expect("reply").text,
                "first"
            );
            // The server holds its response open on this one, so the client's reset (sent
            // once its request side closes below) cannot lose a race with the server's end.
            let held = Message {
                delay_ms: 60_000,
                ..text("held")
            };
            tx.send(held).await.expect("send");
            drop(replies);
            drop(tx);
        }
        .instrument(root)
        .await;
        cases.push(("cancelled", trace));

        // 3. The server fails mid-stream: INTERNAL, an error on both sides.
        let root = tracing::info_span!("failing stream");
        let trace = trace_of(&root);
        let mut c = client.clone();
        async {
            let fail = Message {
                fail: true,
                ..text("boom")
            };
            let mut replies = c
                .chat(tokio_stream::iter([text("ok"), fail]))
                .await
                .expect("call")
                .into_inner();
            assert_eq!(
                replies.next().await.expect("one").expect("reply").text,
                "ok"
            );
            let error = replies.next().await.expect("an end").expect_err("INTERNAL");
            assert_eq!(error.code(), tonic::Code::Internal);
        }
        .instrument(root)
        .await;
        cases.push(("failed", trace));

        // 4. A deadline shorter than the server's work: both sides say what the client got.
        let root = tracing::info_span!("late stream");
        let trace = trace_of(&root);
        let mut c = client.clone();
        let deadline_code = async {
            let slow = Message {
                delay_ms: 3000,
                ..text("slow")
            };
            let mut request = tonic::Request::new(tokio_stream::iter([slow]));
            request.set_timeout(Duration::from_millis(300));
            match c.chat(request).await {
                Err(status) => status.code(),
                Ok(response) => {
                    let mut replies = response.into_inner();
                    match replies.next().await {
                        Some(Err(status)) => status.code(),
                        other => panic!("the deadline did not end the stream: {other:?}"),
                    }
                }
            }
        }
        .instrument(root)
        .await;
        cases.push(("deadline", trace));
        eprintln!("deadline: the client got {deadline_code:?}");
        assert!(
            matches!(
                deadline_code,
                tonic::Code::DeadlineExceeded | tonic::Code::Cancelled
            ),
            "{deadline_code:?}"
        );
    });
    drop(runtime);
    telemetry.flush().expect("flush");

    for (case, trace) in &cases {
        let (client, server, messages) = stream_spans(&collector, trace);
        assert_eq!(server["parent_span_id"], client["span_id"], "{case}");
        let (client_status, server_status) = (status(&client), status(&server));
        eprintln!(
            "{case}: client {client_status:?}, server {server_status:?}, {} message spans",
            messages.len()
        );
        match *case {
            "complete" => {
                assert_eq!(client_status, ("OK", false));
                assert_eq!(server_status, ("OK", false));
                for (side, direction, n) in [
                    (&client, "sent", 3),
                    (&client, "received", 3),
                    (&server, "received", 3),
                    (&server, "sent", 3),
                ] {
                    let spans = children(&messages, side, direction);
                    assert_eq!(spans.len(), n, "{case}: {direction} under {}", side["kind"]);
                    let mut ids: Vec<i64> = spans
                        .iter()
                        .filter_map(|m| {
                            m["attributes"]["service_telemetry.rpc.message.id"].as_i64()
                        })
                        .collect();
                    ids.sort();
                    assert_eq!(ids, [1, 2, 3], "{case}");
                }
                assert_eq!(
                    client["attributes"]["service_telemetry.rpc.messages.sent"],
                    3
                );
            }
            "long" => {
                assert_eq!(client_status, ("OK", false));
                for (side, direction) in [(&client, "sent"), (&server, "received")] {
                    let max = service_telemetry::instrument::MAX_MESSAGE_SPANS as usize;
                    assert_eq!(children(&messages, side, direction).len(), max, "{case}");
                    assert_eq!(
                        side["attributes"]["service_telemetry.rpc.message_spans.dropped"],
                        2 * (70 - max as i64),
                        "{case}: both directions past the cap"
                    );
                }
            }
            "cancelled" => {
                assert_eq!(client_status, ("CANCELLED", false));
                assert_eq!(server_status, ("CANCELLED", false));
            }
            "failed" => {
                assert_eq!(client_status, ("INTERNAL", true));
                assert_eq!(server_status, ("INTERNAL", true));
                assert_eq!(client["attributes"]["error.type"], "INTERNAL");
                assert_eq!(server["attributes"]["error.type"], "INTERNAL");
                assert_eq!(children(&messages, &client, "sent").len(), 2, "{case}");
            }
            "deadline" => {
                // The client's deadline ran out: DEADLINE_EXCEEDED on the client (tonic hands
                // the caller CANCELLED "Timeout expired"; the gRPC status for it is this one),
                // and the server saw its stream cancelled, which is no server error.
                assert_eq!(client_status, ("DEADLINE_EXCEEDED", true));
                assert_eq!(server_status, ("CANCELLED", false));
            }
            _ => unreachable!(),
        }
    }
}

fn trace_of(span: &tracing::Span) -> String {
    use service_telemetry::opentelemetry::trace::TraceContextExt as _;
    use service_telemetry::tracing_opentelemetry::OpenTelemetrySpanExt as _;
    span.context().span().span_context().trace_id().to_string()
}
