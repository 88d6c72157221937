use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use http::StatusCode;

use super::*;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn body(readiness: &Readiness) -> serde_json::Value {
    serde_json::from_str(&readiness.to_json()).expect("readiness body is JSON")
}

#[test]
fn the_states_run_starting_ready_shutting_down_and_liveness_holds_until_wedged() {
    runtime().block_on(async {
        let health = Health::new();
        let ready = health.readiness().await;
        assert_eq!(ready.http_status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body(&ready)["status"], "starting");
        assert_eq!(health.liveness().http_status(), StatusCode::OK);
        assert_eq!(health.liveness().to_json(), r#"{"status":"starting"}"#);

        health.set_ready();
        assert_eq!(health.readiness().await.http_status(), StatusCode::OK);
        assert_eq!(body(&health.readiness().await)["status"], "ready");

        health.set_shutting_down();
        health.set_ready();
        let ready = health.readiness().await;
        assert_eq!(
            ready.status(),
            HealthStatus::ShuttingDown,
            "never turns back"
        );
        assert_eq!(ready.http_status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body(&ready)["status"], "shutting_down");
        let live = health.liveness();
        assert_eq!(live.http_status(), StatusCode::OK, "alive through shutdown");
        assert_eq!(live.to_json(), r#"{"status":"shutting_down"}"#);

        health.set_wedged();
        assert_eq!(
            health.liveness().http_status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(health.liveness().to_json(), r#"{"status":"wedged"}"#);
    });
}

#[test]
fn a_failing_check_fails_readiness_not_liveness_and_hides_its_reason_unless_asked() {
    runtime().block_on(async {
        let health = Health::new();
        let down = Arc::new(AtomicBool::new(false));
        let flag = down.clone();
        health
            .add(
                HealthCheck::new("database", move || {
                    let down = flag.load(Ordering::SeqCst);
                    async move {
                        if down {
                            Err("connection refused to db.internal:5432".to_owned())
                        } else {
                            Ok(())
                        }
                    }
                })
                .cache_for(Duration::ZERO),
            )
            .add_check("cache", || async { Ok::<(), String>(()) });
        health.set_ready();
        let ready = health.readiness().await;
        assert_eq!(
            ready.to_json(),
            r#"{"status":"ready","checks":{"database":"ok","cache":"ok"}}"#
        );

        down.store(true, Ordering::SeqCst);
        let ready = health.readiness().await;
        assert_eq!(ready.http_status(), StatusCode::SERVICE_UNAVAILABLE);
        let json = body(&ready);
        assert_eq!(json["status"], "not_ready");
        assert_eq!(json["checks"]["database"], "failing");
        assert_eq!(json["checks"]["cache"], "ok");
        assert!(
            !ready.to_json().contains("db.internal"),
            "no error text by default: {}",
            ready.to_json()
        );
        assert_eq!(health.liveness().http_status(), StatusCode::OK);

        health.show_check_details(true);
        let json = body(&health.readiness().await);
        assert_eq!(
            json["details"]["database"],
            "connection refused to db.internal:5432"
        );
        assert!(json["details"]["cache"].is_null());
    });
}

#[test]
fn a_hanging_or_panicking_check_fails_within_its_timeout() {
    runtime().block_on(async {
        let health = Health::new();
        health
            .add(
                HealthCheck::new("hangs", || async {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    Ok::<(), String>(())
                })
                .timeout(Duration::from_millis(100)),
            )
            .add_check("panics", || async {
                if true {
                    panic!("checker bug");
                }
                Ok::<(), String>(())
            })
            .add_check(
                "panics before its future",
                || -> std::future::Ready<Result<(), String>> { panic!("closure bug") },
            );
        health.set_ready();
        let started = Instant::now();
        let ready = health.readiness().await;
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        let reasons: Vec<_> = ready
            .checks()
            .iter()
            .map(|c| {
                (
                    c.name().to_owned(),
                    c.outcome().reason().unwrap_or("").to_owned(),
                )
            })
            .collect();
        assert_eq!(
            reasons[0],
            ("hangs".into(), "timed out after 100 ms".into())
        );
        assert_eq!(
            reasons[1],
            ("panics".into(), "panicked: checker bug".into())
        );
        assert_eq!(
            reasons[2],
            (
                "panics before its future".into(),
                "panicked: closure bug".into()
            )
        );
    });
}

#[test]
fn concurrent_probes_share_one_run_of_each_check_within_its_cache_period() {
    runtime().block_on(async {
        let health = Health::new();
        let runs = Arc::new(AtomicUsize::new(0));
        let counter = runs.clone();
        health.add(
            HealthCheck::new("database", move || {
                counter.fetch_add(1, Ordering::SeqCst);
                async {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Ok::<(), String>(())
                }
            })
            .cache_for(Duration::from_secs(60)),
        );
        health.set_ready();
        let probes: Vec<_> = (0..50)
            .map(|_| {
                let health = health.clone();
                tokio::spawn(async move { health.readiness().await.is_ready() })
            })
            .collect();
        for probe in probes {
            assert!(probe.await.expect("probe"));
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1, "50 probes, one run");
    });
}

#[test]
fn checks_do_not_run_while_starting_or_shutting_down() {
    runtime().block_on(async {
        let health = Health::new();
        let runs = Arc::new(AtomicUsize::new(0));
        let counter = runs.clone();
        health.add_check("database", move || {
            counter.fetch_add(1, Ordering::SeqCst);
            async { Ok::<(), String>(()) }
        });
        assert!(health.readiness().await.checks().is_empty());
        health.set_shutting_down();
        assert!(health.readiness().await.checks().is_empty());
        assert_eq!(runs.load(Ordering::SeqCst), 0);
    });
}
