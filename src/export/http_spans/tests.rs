//! The exporter against a scripted HTTP server on loopback: what it sends, when it retries,
//! and what its failures say.

use std::future::Future as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SpanExporter as _;

use super::HttpSpanExporter;
use crate::export::accounting::error_type_from_text;
use crate::export::otlp::Retries;
use crate::export::span_encoder::tests::{three_spans as batch, traces_config};
use crate::export::span_encoder::{EncodedResource, encode_request};

#[derive(Debug, Clone)]
struct Received {
    head: String,
    body: Vec<u8>,
}

/// Answers each request with the next scripted response (the last one repeats).
struct Server {
    port: u16,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Server {
    fn start(responses: &[&'static str]) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let port = listener.local_addr().expect("address").port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let script: Arc<Vec<&'static str>> = Arc::new(responses.to_vec());
        let log = received.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let (log, script) = (log.clone(), script.clone());
                std::thread::spawn(move || serve(stream, &log, &script));
            }
        });
        Server { port, received }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/v1/traces", self.port)
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().expect("log").clone()
    }
}

fn serve(stream: std::net::TcpStream, log: &Mutex<Vec<Received>>, script: &[&str]) {
    let mut writer = stream.try_clone().expect("clone stream");
    let mut reader = BufReader::new(stream);
    loop {
        let mut head = String::new();
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) if line == "\r\n" => break,
                Ok(_) => head.push_str(&line),
            }
        }
        let length = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse::<usize>().ok())?
            })
            .unwrap_or(0);
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let n = {
            let mut log = log.lock().expect("log");
            log.push(Received { head, body });
            log.len()
        };
        let response = script[(n - 1).min(script.len() - 1)];
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

const OK: &str =
    "HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
const UNAVAILABLE: &str = "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n";
const BAD_REQUEST: &str = "HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n";
const THROTTLED_30S: &str =
    "HTTP/1.1 429 Too Many Requests\r\nretry-after: 30\r\ncontent-length: 0\r\n\r\n";

fn exporter(endpoint: &str, extra: &[(&str, &str)], retries: Retries) -> HttpSpanExporter {
    let config = traces_config("http/protobuf", endpoint, extra);
    let client = reqwest::blocking::Client::builder()
        .build()
        .expect("client");
    let mut exporter = HttpSpanExporter::new(&config, client, retries).expect("exporter");
    exporter.set_resource(&Resource::builder_empty().with_service_name("svc").build());
    exporter
}

/// The batch processor's way of calling it: on a plain thread, the future polled to its end
/// (this exporter never waits on a wakeup).
fn export(exporter: &HttpSpanExporter) -> Result<(), String> {
    let mut export = std::pin::pin!(exporter.export(batch()));
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    loop {
        if let std::task::Poll::Ready(result) = export.as_mut().poll(&mut cx) {
            return result.map_err(|e| e.to_string());
        }
    }
}

fn header<'a>(request: &'a Received, name: &str) -> Option<&'a str> {
    request.head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[test]
fn a_503_is_retried_and_the_request_is_gzipped_protobuf_with_the_configured_headers() {
    let server = Server::start(&[UNAVAILABLE, OK]);
    let exporter = exporter(
        &server.endpoint(),
        &[
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=secret"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
        ],
        Retries::WhileRunning,
    );
    export(&exporter).expect("delivered on the retry");
    let received = server.received();
    assert_eq!(received.len(), 2, "{received:?}");
    let request = &received[1];
    assert!(
        request.head.starts_with("POST /v1/traces HTTP/1.1"),
        "{}",
        request.head
    );
    assert_eq!(
        header(request, "content-type"),
        Some("application/x-protobuf")
    );
    assert_eq!(header(request, "content-encoding"), Some("gzip"));
    assert_eq!(header(request, "x-api-key"), Some("secret"));
    let mut body = Vec::new();
    flate2::read::GzDecoder::new(request.body.as_slice())
        .read_to_end(&mut body)
        .expect("gzip body");
    let mut expected = Vec::new();
    let resource = Resource::builder_empty().with_service_name("svc").build();
    encode_request(&mut expected, &EncodedResource::new(&resource), &batch());
    assert_eq!(body, expected);
    assert_eq!(
        received[0].body, request.body,
        "the retry resends the same body"
    );
}

#[test]
fn a_400_is_final_and_its_error_names_the_status() {
    let server = Server::start(&[BAD_REQUEST, OK]);
    let exporter = exporter(&server.endpoint(), &[], Retries::WhileRunning);
    let error = export(&exporter).expect_err("400 is not retried");
    assert_eq!(server.received().len(), 1);
    assert_eq!(error_type_from_text(&error), "400", "{error}");
    assert!(
        server.received()[0]
            .head
            .lines()
            .all(|l| !l.to_ascii_lowercase().starts_with("content-encoding"))
    );
}

#[test]
fn an_unavailable_collector_gets_three_retries_while_running_and_none_in_the_final_flush() {
    let server = Server::start(&[UNAVAILABLE]);
    let running = exporter(&server.endpoint(), &[], Retries::WhileRunning);
    let error = export(&running).expect_err("always 503");
    assert_eq!(server.received().len(), 4, "one attempt and three retries");
    assert_eq!(error_type_from_text(&error), "503", "{error}");

    let server = Server::start(&[UNAVAILABLE, OK]);
    let final_flush = exporter(&server.endpoint(), &[], Retries::FinalFlush);
    export(&final_flush).expect_err("one attempt");
    assert_eq!(server.received().len(), 1);
}

#[test]
fn a_retry_after_beyond_the_export_timeout_ends_the_export_at_once() {
    let server = Server::start(&[THROTTLED_30S, OK]);
    let exporter = exporter(
        &server.endpoint(),
        &[("OTEL_EXPORTER_OTLP_TIMEOUT", "2000")],
        Retries::WhileRunning,
    );
    let started = Instant::now();
    let error = export(&exporter).expect_err("no time to wait 30 s");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(server.received().len(), 1);
    assert!(
        error.contains("429") && error.contains("2000 ms"),
        "{error}"
    );
}

#[test]
fn a_refused_connection_is_reported_with_its_cause() {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let exporter = exporter(
        &format!("http://127.0.0.1:{port}/v1/traces"),
        &[],
        Retries::FinalFlush,
    );
    let error = export(&exporter).expect_err("nothing listens");
    assert_eq!(
        error_type_from_text(&error),
        "connection_refused",
        "{error}"
    );
}

#[test]
fn a_shut_down_exporter_sends_nothing() {
    let server = Server::start(&[OK]);
    let exporter = exporter(&server.endpoint(), &[], Retries::WhileRunning);
    exporter
        .shutdown_with_timeout(Duration::from_secs(1))
        .expect("first shutdown");
    assert!(
        exporter
            .shutdown_with_timeout(Duration::from_secs(1))
            .is_err()
    );
    assert!(export(&exporter).is_err());
    assert!(server.received().is_empty());
}
