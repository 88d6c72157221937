//! The log filter changed while the service runs, seen from another thread; installs the
//! global subscriber, so it has this file alone.

use std::sync::mpsc;
use std::time::Duration;

use service_telemetry::{LogFilterError, MemoryWriter, Telemetry};

fn messages(logs: &MemoryWriter) -> Vec<String> {
    logs.json_lines()
        .into_iter()
        .filter_map(|l| l["message"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn a_live_filter_change_takes_effect_on_the_next_event_on_every_thread() {
    let logs = MemoryWriter::new();
    let telemetry = Telemetry::builder()
        .with_writer(logs.clone())
        .env_lookup(|name| (name == "LOG_LEVEL").then(|| "info".to_owned()))
        .try_init()
        .expect("first init");

    // A worker that logs one debug and one info line each time it is asked.
    let (ask, asked) = mpsc::channel::<u32>();
    let (done, finished) = mpsc::channel::<()>();
    let worker = std::thread::spawn(move || {
        for round in asked {
            tracing::debug!(round, "debug line {round}");
            tracing::info!(round, "info line {round}");
            let _ = done.send(());
        }
    });
    let round = |n: u32| {
        ask.send(n).expect("worker alive");
        finished
            .recv_timeout(Duration::from_secs(10))
            .expect("worker answered");
    };

    round(1);
    let before = messages(&logs);
    assert!(before.contains(&"info line 1".to_owned()), "{before:?}");
    assert!(
        !before.contains(&"debug line 1".to_owned()),
        "info filters debug out"
    );

    telemetry
        .set_log_filter("debug,hyper=warn")
        .expect("valid directives");
    round(2);
    let after = messages(&logs);
    assert!(after.contains(&"debug line 2".to_owned()), "{after:?}");
    let change = logs
        .json_lines()
        .into_iter()
        .find(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("log filter changed to debug,hyper=warn"))
        })
        .expect("the change is logged");
    assert_eq!(change["level"], "info");

    // Invalid directives say why, and the filter in force stays.
    let err = telemetry
        .set_log_filter("debug,hyper=loud")
        .expect_err("not a level");
    assert!(
        matches!(&err, LogFilterError::Invalid { directives, .. } if directives == "debug,hyper=loud"),
        "{err:?}"
    );
    assert!(err.to_string().contains("hyper=loud"), "{err}");
    round(3);
    assert!(messages(&logs).contains(&"debug line 3".to_owned()));

    telemetry.set_log_filter("warn").expect("a bare level");
    round(4);
    let last = messages(&logs);
    assert!(!last.contains(&"info line 4".to_owned()), "{last:?}");

    drop(ask);
    worker.join().expect("worker");
}
