//! A small HTTP service under the shutdown coordinator.
//!
//! Run with `cargo run --example service --features axum`, then press Ctrl-C (or `kill -TERM <pid>`): the logs
//! show the whole sequence, from `shutdown started` through each step to `shutdown complete`.
//!
//! - `GET /livez`: liveness, 200 from start to exit (`{"status":"ready"}`, then
//!   `{"status":"shutting_down"}`), never dependent on the database.
//! - `GET /readyz` (and `/health`): readiness, `{"status":"starting"}` (503) until the
//!   coordinator runs, then `{"status":"ready","checks":{"database":"ok"}}` (200), 503 with
//!   `"database":"failing"` while the database is unreachable, and `{"status":"shutting_down"}`
//!   (503) from the moment the signal arrives. Probes make no span and no log line.
//! - `POST /outage` and `POST /recovery`: simulate the database going away and coming back.
//! - `GET /work?ms=N`: traced work for N ms inside the request; a request in flight when the
//!   signal arrives completes, because the server drains before it closes.
//! - `GET /jobs?ms=N`: queues a background job of N ms; stopping the scheduler waits for the
//!   running job, while the server keeps answering (health already 503).
//!
//! `PORT` (default 8080; 0 picks a free port) sets the port; the `listening` line gives the
//! address. `SHUTDOWN_TIMEOUT_MS` and `SHUTDOWN_DRAIN_DELAY_MS` set the budget and drain delay.
//!
//! Every request is a span and counts in `http.server.request.duration`; with
//! `OTEL_ENABLED=true` the process and Tokio runtime metrics are exported too, and
//! `OTEL_METRICS_EXPORTER=prometheus` serves them all on `http://localhost:9464/metrics`.

use std::time::Duration;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::Query;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use service_telemetry::Shutdown;
use service_telemetry::health::{self, HealthCheck};
use service_telemetry::instrument::HttpServerLayer;
use service_telemetry::shutdown::Step;
use tokio::sync::mpsc;
use tracing::{Instrument, info, info_span, warn};

const DEFAULT_PORT: u16 = 8080;

#[derive(Deserialize)]
struct Work {
    #[serde(default)]
    ms: u64,
}

#[tokio::main]
async fn main() {
    let telemetry = service_telemetry::Telemetry::builder()
        .service_name("example-service")
        .service_version(env!("CARGO_PKG_VERSION"))
        .init();
    let mut shutdown = Shutdown::new(telemetry);
    let health = shutdown.health();
    // Readiness asks the database; liveness never does (a database outage must not restart
    // every pod). Many kubelets probing share one ping per second.
    let database = Database::default();
    health.add(
        HealthCheck::new("database", {
            let database = database.clone();
            move || {
                let database = database.clone();
                async move { database.ping().await }
            }
        })
        .timeout(Duration::from_millis(500)),
    );

    let listener = match tokio::net::TcpListener::bind(("0.0.0.0", port())).await {
        Ok(listener) => listener,
        Err(e) => {
            // Through the coordinator, so the error is flushed like any other line.
            shutdown.handle().fail(format!("cannot listen: {e}"));
            shutdown.run().await;
            return;
        }
    };
    if let Ok(address) = listener.local_addr() {
        info!(address = %address, "listening");
    }

    // The scheduler finishes the job it is running, then stops; queued jobs are dropped.
    let (jobs, mut queue) = mpsc::channel::<u64>(64);
    shutdown.spawn_service("stop job scheduler", |stop| async move {
        loop {
            let ms = tokio::select! {
                biased;
                _ = stop.cancelled() => return,
                Some(ms) = queue.recv() => ms,
            };
            async {
                info!(ms, "job started");
                tokio::time::sleep(Duration::from_millis(ms)).await;
                info!(ms, "job done");
            }
            .instrument(info_span!("job", job.duration_ms = ms))
            .await;
        }
    });

    // Background work stops before the server: nothing new starts once shutdown has begun.
    shutdown.spawn_service("stop heartbeat timer", |stop| async move {
        let mut ticks = tokio::time::interval(Duration::from_secs(30));
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = ticks.tick() => info!("heartbeat"),
            }
        }
    });

    let outage = database.clone();
    let recovery = database.clone();
    let app = Router::new()
        .merge(health::router(health.clone()))
        .route("/work", get(work))
        .route(
            "/outage",
            post(move || async move { outage.set_reachable(false) }),
        )
        .route(
            "/recovery",
            post(move || async move { recovery.set_reachable(true) }),
        )
        .route(
            "/jobs",
            get(move |Query(job): Query<Work>| {
                let jobs = jobs.clone();
                async move {
                    match jobs.try_send(job.ms) {
                        Ok(()) => (axum::http::StatusCode::ACCEPTED, "queued"),
                        Err(_) => (axum::http::StatusCode::SERVICE_UNAVAILABLE, "queue full"),
                    }
                }
            }),
        )
        .layer(HttpServerLayer::new());
    // Stops accepting when its turn comes, then waits for the requests in flight.
    shutdown.spawn_service("drain http server", |stop| {
        axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned())
    });

    shutdown.add(
        Step::new("flush feature flags", || async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok::<_, std::io::Error>(())
        })
        .timeout(Duration::from_secs(2)),
    );
    shutdown.add(
        Step::blocking("close database pool", move || database.close())
            .timeout(Duration::from_secs(5)),
    );

    // Telemetry is flushed after the last step; then the process exits.
    shutdown.run().await;
}

fn port() -> u16 {
    match std::env::var("PORT") {
        Err(_) => DEFAULT_PORT,
        Ok(raw) => raw.trim().parse().unwrap_or_else(|_| {
            warn!(variable = "PORT", value = %raw, used_instead = DEFAULT_PORT, "invalid PORT");
            DEFAULT_PORT
        }),
    }
}

/// Stands in for a connection pool: reachable unless an outage is simulated.
#[derive(Clone, Default)]
struct Database {
    unreachable: Arc<AtomicBool>,
}

impl Database {
    async fn ping(&self) -> Result<(), String> {
        tokio::time::sleep(Duration::from_millis(2)).await;
        if self.unreachable.load(Ordering::Relaxed) {
            Err("connection refused (simulated outage)".to_owned())
        } else {
            Ok(())
        }
    }

    fn set_reachable(&self, reachable: bool) -> &'static str {
        self.unreachable.store(!reachable, Ordering::Relaxed);
        if reachable {
            "database back"
        } else {
            "database down"
        }
    }

    fn close(&self) {
        std::thread::sleep(Duration::from_millis(10));
    }
}

async fn work(Query(work): Query<Work>) -> Json<serde_json::Value> {
    let span = info_span!("work", work.duration_ms = work.ms);
    async {
        info!(ms = work.ms, "work started");
        // Even a zero sleep waits for the timer's next millisecond tick.
        if work.ms > 0 {
            tokio::time::sleep(Duration::from_millis(work.ms)).await;
        }
        info!(ms = work.ms, "work done");
        Json(serde_json::json!({ "worked_ms": work.ms }))
    }
    .instrument(span)
    .await
}
