//! Installs the global subscriber, so it lives alone in this test binary (one test).

use service_telemetry::{InitError, MemoryWriter, Telemetry};

#[test]
fn global_install_panic_hook_and_second_init() {
    let logs = MemoryWriter::new();
    let telemetry = Telemetry::builder()
        .service_name("global-test")
        .with_writer(logs.clone())
        .env_lookup(|name| (name == "LOG_LEVEL").then(|| "debug".to_owned()))
        .try_init()
        .expect("first init");
    assert_eq!(telemetry.config().service_name, "global-test");
    assert!(!telemetry.config().export_enabled);

    // A panic inside a span is logged as one error line with the span's ids.
    let result = std::panic::catch_unwind(|| {
        let span = tracing::info_span!("doomed", job = "nightly");
        let _entered = span.enter();
        panic!("boom {}", 42);
    });
    assert!(result.is_err());
    let lines = logs.json_lines();
    let panics: Vec<_> = lines.iter().filter(|l| l["target"] == "panic").collect();
    assert_eq!(panics.len(), 1, "{lines:#?}");
    let p = panics[0];
    assert_eq!(p["level"], "error");
    assert_eq!(p["panic.message"], "boom 42");
    assert!(
        p["location"]
            .as_str()
            .unwrap_or_default()
            .starts_with("tests/global_init.rs:"),
        "{p}"
    );
    assert_eq!(p["trace_id"].as_str().map(str::len), Some(32));
    assert_eq!(p["span"]["job"], "nightly");

    // The startup report is there and the level came from the lookup.
    let report = lines
        .iter()
        .find(|l| l["message"] == "telemetry initialised")
        .expect("startup line");
    assert!(
        report["log_filter"]
            .as_str()
            .unwrap_or_default()
            .starts_with("debug"),
        "{report}"
    );

    // A second global install is refused with a typed error, and `init` never fails.
    let second = Telemetry::builder()
        .with_writer(MemoryWriter::new())
        .env_lookup(|_| None)
        .try_init();
    assert!(matches!(second, Err(InitError::SubscriberAlreadySet)));
    let degraded = Telemetry::builder()
        .with_writer(MemoryWriter::new())
        .env_lookup(|_| None)
        .init();
    assert!(!degraded.config().export_enabled);
    drop(degraded);

    telemetry.flush().expect("flush with export off");
    telemetry
        .shutdown(std::time::Duration::from_secs(1))
        .expect("shutdown");
    // Idempotent.
    telemetry
        .shutdown(std::time::Duration::from_secs(1))
        .expect("second shutdown");
}
