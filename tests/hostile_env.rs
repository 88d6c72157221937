//! `init()` in a real process, with hostile values in the environment: the crate's resolver
//! and the SDK's own environment reading both see them. The service always starts, never
//! panics, exits 0, and reports what it could not use.

mod common;

use std::time::Duration;

use common::probe::{probe_main, run_probe};
use proptest::prelude::*;

#[test]
#[ignore = "child-process entry point of the end-to-end tests, run by them"]
fn probe() {
    probe_main();
}

/// Every variable the crate or the SDK reads.
const VARIABLES: &[&str] = &[
    "OTEL_ENABLED",
    "OTEL_SDK_DISABLED",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_TRACES_EXPORTER",
    "OTEL_METRICS_EXPORTER",
    "OTEL_LOGS_EXPORTER",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
    "OTEL_EXPORTER_OTLP_INSECURE",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_METRICS_HEADERS",
    "OTEL_EXPORTER_OTLP_TIMEOUT",
    "OTEL_EXPORTER_OTLP_COMPRESSION",
    "OTEL_EXPORTER_OTLP_CERTIFICATE",
    "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
    "OTEL_EXPORTER_OTLP_CLIENT_KEY",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_PROPAGATORS",
    "OTEL_BSP_SCHEDULE_DELAY",
    "OTEL_BSP_MAX_QUEUE_SIZE",
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
    "OTEL_BSP_EXPORT_TIMEOUT",
    "OTEL_BLRP_MAX_QUEUE_SIZE",
    "OTEL_BLRP_SCHEDULE_DELAY",
    "OTEL_METRIC_EXPORT_INTERVAL",
    "OTEL_METRIC_EXPORT_TIMEOUT",
    "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT",
    "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT",
    "OTEL_SPAN_EVENT_COUNT_LIMIT",
    "OTEL_METRICS_EXEMPLAR_FILTER",
    "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE",
    "LOG_LEVEL",
    "RUST_LOG",
    "OTEL_LOG_LEVEL",
    "SHUTDOWN_TIMEOUT_MS",
];

fn hostile_value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[ -~]{0,40}",
        "[=,%;: ]{0,12}",
        "-?[0-9]{1,25}",
        "(http|https|grpc)://[a-z0-9.:%@/?#=,]{0,30}",
        "([a-zA-Z0-9_.-]{0,8}=[^,]{0,8},?){0,6}",
        Just("x".repeat(100_000)),
        Just("🚀".repeat(5_000)),
    ]
    // A process environment cannot hold NUL bytes.
    .prop_map(|v| v.replace('\0', ""))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn init_never_panics_never_fails_and_warns(
        vars in proptest::collection::btree_map(
            proptest::sample::select(VARIABLES.to_vec()),
            hostile_value(),
            1..VARIABLES.len(),
        ),
        garbage in "[a-z]{3,12}",
    ) {
        // One value known to be invalid, so there is always something to warn about; export
        // on so the exporters are built from whatever else the environment says.
        let sampler = format!("not-a-sampler-{garbage}");
        let mut env: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        env.retain(|(k, _)| *k != "OTEL_TRACES_SAMPLER" && *k != "OTEL_ENABLED");
        env.push(("OTEL_TRACES_SAMPLER", &sampler));
        env.push(("OTEL_ENABLED", "true"));
        env.push(("PROBE_TAG", "hostile"));
        env.push(("PROBE_SHUTDOWN_MS", "2000"));
        let run = run_probe(&env, Duration::from_secs(60));
        prop_assert!(run.status.success(), "exit {:?} for {:?}\n{}", run.status, vars, run.stderr);
        prop_assert!(!run.stderr.contains("panicked"), "panic for {:?}\n{}", vars, run.stderr);
        // A log filter from the environment may hide warnings; otherwise they are there.
        let filtered = vars.contains_key("LOG_LEVEL") || vars.contains_key("RUST_LOG");
        if !filtered {
            prop_assert!(
                run.warnings().iter().any(|w| w["variable"] == "OTEL_TRACES_SAMPLER"),
                "no warning for the bad sampler: {}", run.stdout
            );
            let shutdown = run.line_with_message("probe-shutdown");
            prop_assert!(shutdown["elapsed_ms"].as_u64() <= Some(2500), "{}", shutdown);
        }
    }
}
