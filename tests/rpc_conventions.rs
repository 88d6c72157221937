//! The RPC conventions' migration modes at the real collector: the experimental v1.37.0 names
//! chosen in code (in this process, which installs the globals; so this file), and `rpc/dup`
//! chosen by `OTEL_SEMCONV_STABILITY_OPT_IN` over the code's default (in the `backend` example,
//! a child process).
#![cfg(all(feature = "axum", feature = "tonic"))]

mod common;

use std::process::Command;
use std::time::Duration;

use common::child::{Running, Signal, example_binary};
use common::collector::Collector;
use serde_json::Value;
use service_telemetry::instrument::{GrpcClientLayer, GrpcServerLayer};
use service_telemetry::{MemoryWriter, RpcConventions, Telemetry};
use tonic_health::ServingStatus;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

const METHOD: &str = "grpc.health.v1.Health/Check";
const WAIT: Duration = Duration::from_secs(20);

fn is_kind(record: &Value, kind: &str) -> bool {
    record["kind"].as_str().is_some_and(|k| k.contains(kind))
}

fn metric(collector: &Collector, service: &str, name: &str) -> Value {
    collector.wait_for(&format!("{name} of {service}"), WAIT, |r| {
        r["signal"] == "metric" && r["service"] == service && r["name"] == name
    })
}

fn no_metric(collector: &Collector, service: &str, name: &str) {
    let found = collector
        .records()
        .into_iter()
        .find(|r| r["signal"] == "metric" && r["service"] == service && r["name"] == name);
    assert!(found.is_none(), "{name} should not be emitted: {found:?}");
}

/// The v1.37.0 attributes of a health check, and none of the v1.44.0 ones.
fn assert_experimental_only(attributes: &Value, what: &str) {
    assert_eq!(attributes["rpc.system"], "grpc", "{what}: {attributes}");
    assert_eq!(
        attributes["rpc.service"], "grpc.health.v1.Health",
        "{what}: {attributes}"
    );
    assert_eq!(attributes["rpc.method"], "Check", "{what}: {attributes}");
    assert_eq!(
        attributes["rpc.grpc.status_code"], 0,
        "{what}: {attributes}"
    );
    for stable in ["rpc.system.name", "rpc.response.status_code", "error.type"] {
        assert!(
            attributes[stable].is_null(),
            "{what}: {stable} in {attributes}"
        );
    }
}

#[test]
fn the_experimental_conventions_chosen_in_code_emit_only_the_v1_37_names() {
    let collector = Collector::start();
    let endpoint = collector.grpc_endpoint();
    let telemetry = Telemetry::builder()
        .service_name("rpc-experimental")
        .rpc_conventions(RpcConventions::Experimental)
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
    assert_eq!(
        telemetry.config().rpc_conventions,
        RpcConventions::Experimental
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let (reporter, health) = tonic_health::server::health_reporter();
        reporter
            .set_service_status("", ServingStatus::Serving)
            .await;
        tokio::spawn(
            tonic::transport::Server::builder()
                .layer(GrpcServerLayer::new())
                .add_service(health)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        let target = format!("http://{address}");
        let channel = tonic::transport::Endpoint::from_shared(target.clone())
            .expect("endpoint")
            .connect_lazy();
        let mut client = HealthClient::new(
            tower::ServiceBuilder::new()
                .layer(GrpcClientLayer::for_target(&target))
                .service(channel),
        );
        client
            .check(HealthCheckRequest::default())
            .await
            .expect("health check");
    });
    telemetry.flush().expect("flush");

    for kind in ["SERVER", "CLIENT"] {
        let span = collector.wait_for(&format!("the {kind} span"), WAIT, |r| {
            r["signal"] == "span" && r["name"] == METHOD && is_kind(r, kind)
        });
        assert_experimental_only(&span["attributes"], kind);
    }
    let client = collector.wait_for("the client span", WAIT, |r| {
        r["signal"] == "span" && r["name"] == METHOD && is_kind(r, "CLIENT")
    });
    assert_eq!(client["attributes"]["server.address"], "127.0.0.1");

    for name in ["rpc.server.duration", "rpc.client.duration"] {
        let point = metric(&collector, "rpc-experimental", name);
        assert_eq!(point["unit"], "ms", "{point}");
        assert_experimental_only(&point["attributes"], name);
    }
    for name in ["rpc.server.call.duration", "rpc.client.call.duration"] {
        no_metric(&collector, "rpc-experimental", name);
    }
    let _ = telemetry.shutdown(Duration::from_secs(5));
}

#[test]
fn rpc_dup_from_the_environment_emits_both_conventions_each_with_its_own_metric() {
    let collector = Collector::start();
    let endpoint = collector.grpc_endpoint();
    let service = format!("rpc-dup-{}", std::process::id());
    let mut backend = Running::spawn(
        Command::new(example_binary("backend")),
        &[
            ("OTEL_ENABLED", "true"),
            ("OTEL_SERVICE_NAME", service.as_str()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_METRIC_EXPORT_INTERVAL", "200"),
            ("OTEL_SEMCONV_STABILITY_OPT_IN", "http,rpc,rpc/dup"),
            ("PORT", "0"),
            ("GRPC_PORT", "0"),
        ],
    );
    let listening = backend.wait_for_message("listening", WAIT);
    let grpc_address = listening["grpc_address"]
        .as_str()
        .unwrap_or_else(|| panic!("no grpc_address in {listening}"))
        .to_owned();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{grpc_address}"))
            .expect("endpoint")
            .connect()
            .await
            .expect("connect");
        let mut client = HealthClient::new(channel);
        client
            .check(HealthCheckRequest::default())
            .await
            .expect("health check");
    });
    // Closes the connection: the backend's graceful drain waits for its clients to leave.
    drop(runtime);

    let span = collector.wait_for("the backend's server span", WAIT, |r| {
        r["signal"] == "span" && r["service"] == service.as_str() && r["name"] == METHOD
    });
    let attributes = &span["attributes"];
    // Both sets; rpc.method keeps its stable, fully qualified value.
    assert_eq!(attributes["rpc.system.name"], "grpc", "{span}");
    assert_eq!(attributes["rpc.method"], METHOD, "{span}");
    assert_eq!(attributes["rpc.response.status_code"], "OK", "{span}");
    assert_eq!(attributes["rpc.system"], "grpc", "{span}");
    assert_eq!(attributes["rpc.service"], "grpc.health.v1.Health", "{span}");
    assert_eq!(attributes["rpc.grpc.status_code"], 0, "{span}");
    // rpc-spans.md: the server's peer, from tonic's connection info.
    assert_eq!(attributes["network.peer.address"], "127.0.0.1", "{span}");
    assert!(
        attributes["network.peer.port"]
            .as_i64()
            .is_some_and(|p| p > 0),
        "{span}"
    );

    let stable = metric(&collector, &service, "rpc.server.call.duration");
    assert_eq!(stable["unit"], "s", "{stable}");
    assert_eq!(stable["attributes"]["rpc.method"], METHOD, "{stable}");
    assert_eq!(stable["attributes"]["rpc.response.status_code"], "OK");
    assert!(stable["attributes"]["rpc.system"].is_null(), "{stable}");
    let experimental = metric(&collector, &service, "rpc.server.duration");
    assert_eq!(experimental["unit"], "ms", "{experimental}");
    assert_experimental_only(&experimental["attributes"], "rpc.server.duration");

    backend.signal(Signal::TERM);
    let status = backend.wait_exit(WAIT);
    assert_eq!(status.code(), Some(0), "{}", backend.output());
}
