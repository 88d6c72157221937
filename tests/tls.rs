//! TLS end to end: the probe exports over gRPC and OTLP/HTTP through Debian's nginx, which
//! terminates TLS with a certificate from a CA made by the test and requires a client
//! certificate, in front of the real test collector. Bad files and untrusted servers give
//! warnings and failed or no-op exports, never a panic, and nothing is ever sent in plaintext
//! to an `https` endpoint.
#![cfg(all(feature = "tls", feature = "grpc", feature = "http"))]

mod common;

use std::io::Read;
use std::net::TcpListener;
use std::time::Duration;

use common::collector::Collector;
use common::probe::{probe_main, run_probe};
use common::tls::{TlsTerminator, make_pki};

const LIMIT: Duration = Duration::from_secs(60);

#[test]
#[ignore = "child-process entry point of the end-to-end tests, run by them"]
fn probe() {
    probe_main();
}

fn protocol_endpoint(grpc: bool, nginx: &TlsTerminator) -> (&'static str, String) {
    if grpc {
        ("grpc", nginx.grpc_endpoint())
    } else {
        ("http/protobuf", nginx.http_endpoint())
    }
}

#[test]
fn private_ca_and_client_certificate_through_a_tls_terminator_grpc_and_http() {
    let pki = make_pki();
    let collector = Collector::start();
    let nginx = TlsTerminator::start(&pki, &collector);
    for grpc in [true, false] {
        let (protocol, endpoint) = protocol_endpoint(grpc, &nginx);
        let tag = format!("mtls-{}", if grpc { "grpc" } else { "http" });
        let (ca, cert, key) = (pki.ca(), pki.client_cert(), pki.client_key());
        let run = run_probe(
            &[
                ("OTEL_ENABLED", "true"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
                ("OTEL_EXPORTER_OTLP_CERTIFICATE", ca.to_str().unwrap()),
                (
                    "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
                    cert.to_str().unwrap(),
                ),
                ("OTEL_EXPORTER_OTLP_CLIENT_KEY", key.to_str().unwrap()),
                ("PROBE_TAG", &tag),
            ],
            LIMIT,
        );
        run.assert_clean_exit();
        assert!(
            run.warnings().is_empty(),
            "{protocol}: {:?}",
            run.warnings()
        );
        assert_eq!(
            run.line_with_message("probe-shutdown")["ok"],
            true,
            "{protocol}: {}",
            run.stdout
        );
        let span = collector.wait_for("the span through TLS", LIMIT, |r| {
            r["signal"] == "span" && r["attributes"]["probe.tag"] == tag.as_str()
        });
        let line = run.line_with_message(&format!("probe-log-{tag}"));
        assert_eq!(span["trace_id"], line["trace_id"], "{protocol}");
        let body = format!("probe-log-{tag}");
        collector.wait_for("the log record through TLS", LIMIT, |r| {
            r["signal"] == "log" && r["body"] == body.as_str()
        });
    }
}

#[test]
fn untrusted_server_or_missing_client_certificate_fails_exports_without_a_panic() {
    let pki = make_pki();
    let collector = Collector::start();
    let nginx = TlsTerminator::start(&pki, &collector);
    for grpc in [true, false] {
        let (protocol, endpoint) = protocol_endpoint(grpc, &nginx);
        let (ca, cert, key) = (pki.ca(), pki.client_cert(), pki.client_key());
        let scenarios: [(&str, Vec<(&str, &str)>); 2] = [
            // The system roots do not trust the test CA.
            (
                "untrusted",
                vec![
                    (
                        "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
                        cert.to_str().unwrap(),
                    ),
                    ("OTEL_EXPORTER_OTLP_CLIENT_KEY", key.to_str().unwrap()),
                ],
            ),
            // nginx requires a client certificate.
            (
                "nocert",
                vec![("OTEL_EXPORTER_OTLP_CERTIFICATE", ca.to_str().unwrap())],
            ),
        ];
        for (name, files) in scenarios {
            let tag = format!("{name}-{}", if grpc { "grpc" } else { "http" });
            let mut env = vec![
                ("OTEL_ENABLED", "true"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
                ("PROBE_TAG", tag.as_str()),
                ("PROBE_SHUTDOWN_MS", "5000"),
            ];
            env.extend(files);
            let run = run_probe(&env, LIMIT);
            run.assert_clean_exit();
            let failing: Vec<_> = run
                .warnings()
                .into_iter()
                .filter(|w| {
                    w["target"] == "service_telemetry::export"
                        && w["signal"] == "traces"
                        && w["message"]
                            .as_str()
                            .is_some_and(|m| m.contains("export failing"))
                })
                .collect();
            assert_eq!(failing.len(), 1, "{tag}: {}", run.stdout);
            let totals = run
                .json
                .iter()
                .find(|l| {
                    l["signal"] == "traces"
                        && l["message"]
                            .as_str()
                            .is_some_and(|m| m.contains("export totals"))
                })
                .unwrap_or_else(|| panic!("{tag}: no totals\n{}", run.stdout));
            assert_eq!(totals["exported"], 0, "{tag}: {totals}");
            assert!(totals["failed"].as_u64() >= Some(1), "{tag}: {totals}");
            assert!(
                !collector
                    .records()
                    .iter()
                    .any(|r| r["attributes"]["probe.tag"] == tag.as_str()),
                "{tag}: a span went through; nginx:\n{}",
                nginx.error_log()
            );
        }
    }
}

#[test]
fn unreadable_or_invalid_certificate_files_warn_once_per_signal_and_fall_back_to_noop() {
    let pki = make_pki();
    let garbage = pki.dir.join("garbage.pem");
    std::fs::write(&garbage, "this is not PEM").expect("write garbage");
    let cases = [
        (
            "OTEL_EXPORTER_OTLP_CERTIFICATE",
            "/nonexistent/ca.pem",
            "cannot read",
        ),
        (
            "OTEL_EXPORTER_OTLP_CERTIFICATE",
            garbage.to_str().unwrap(),
            "no PEM CERTIFICATE block",
        ),
    ];
    for (var, value, cause) in cases {
        for protocol in ["grpc", "http/protobuf"] {
            let run = run_probe(
                &[
                    ("OTEL_ENABLED", "true"),
                    ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://127.0.0.1:1"),
                    (var, value),
                    ("PROBE_TAG", "badfile"),
                ],
                LIMIT,
            );
            run.assert_clean_exit();
            let (warnings, signals) = run.export_warnings();
            assert_eq!(
                signals,
                ["traces", "metrics", "logs"],
                "{protocol}: {warnings:#?}"
            );
            for w in &warnings {
                let text = w["cause"].as_str().unwrap_or_default();
                assert!(text.contains(cause) && text.contains(value), "{w}");
            }
            // No-op exporters: the flush succeeds at once and ids are still minted.
            assert_eq!(run.line_with_message("probe-shutdown")["ok"], true);
            assert!(run.line_with_message("probe-log-badfile")["trace_id"].is_string());
        }
    }
}

/// Reads the first bytes each connection sends.
fn recording_listener() -> (u16, std::sync::mpsc::Receiver<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let mut buf = [0u8; 64];
                if let Ok(n) = stream.read(&mut buf) {
                    let _ = tx.send(buf[..n].to_vec());
                }
            });
        }
    });
    (port, rx)
}

#[test]
fn an_https_endpoint_only_ever_receives_tls_handshakes() {
    for protocol in ["grpc", "http/protobuf"] {
        let (port, first_bytes) = recording_listener();
        let endpoint = format!("https://127.0.0.1:{port}");
        let run = run_probe(
            &[
                ("OTEL_ENABLED", "true"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
                ("PROBE_TAG", "plaintext-check"),
                ("PROBE_SHUTDOWN_MS", "3000"),
            ],
            LIMIT,
        );
        run.assert_clean_exit();
        let received: Vec<Vec<u8>> = first_bytes.try_iter().collect();
        assert!(!received.is_empty(), "{protocol}: nothing connected");
        for bytes in &received {
            // 0x16 = TLS handshake record; plaintext would start with "POST" or "PRI *".
            assert_eq!(
                bytes.first(),
                Some(&0x16),
                "{protocol}: {:?}",
                String::from_utf8_lossy(bytes)
            );
        }
    }
}
