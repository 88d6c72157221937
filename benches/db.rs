//! What a span per database call costs, against real servers on loopback (started by the
//! bench, as the tests start them; `DATABASE_URL` / `REDIS_URL` point it at others):
//!
//! - group `postgres_query`: `SELECT $1::int4` through a plain `PgPool`, the baseline, and
//!   through `TracedPool`, with this crate installed (traces exported to a no-op exporter) and
//!   a request span entered in both;
//! - group `redis_command`: `GET` on a plain multiplexed connection and on a `TracedConnection`
//!   over the same connection, likewise;
//! - group `redis_instrumentation`: the same `GET` on a connection that answers at once without
//!   a server, plain and wrapped, so the difference is the wrapper's own cost, free of the
//!   round trip's noise; and the common alternative, a `tracing` span per command with the same
//!   attributes as fields (what a hand-written wrapper or `#[instrument]` does), exported
//!   through the same subscriber.
//!
//! Run with `cargo bench --bench db --features sqlx,redis`.

#[path = "../tests/common/answering_redis.rs"]
mod answering_redis;
mod common;
#[path = "../tests/common/servers.rs"]
#[allow(dead_code)]
mod servers;

use std::hint::black_box;
use std::time::Duration;

use answering_redis::Answering;
use common::{Export, Tally, bench_counted, ours};
use criterion::{Criterion, criterion_group, criterion_main};
use redis::aio::ConnectionLike;
use redis::{Cmd, Pipeline, RedisFuture, Value};
use service_telemetry::ScopedTelemetry;
use service_telemetry::instrument::redis::TracedConnection;
use service_telemetry::instrument::sqlx::TracedPool;

/// Times `call` on the traced variant in stretches the span queue can hold, the exporter caught
/// up untimed between them; returns the calls made.
fn traced_bench(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    telemetry: &ScopedTelemetry,
    call: impl FnMut(),
) -> u64 {
    let settle = || {
        let _ = telemetry.telemetry().flush();
    };
    bench_counted(group, name, &settle, call)
}

/// The spans the crate's ledger says were exported so far, after a flush.
fn exported_so_far(telemetry: &ScopedTelemetry) -> u64 {
    let _ = telemetry.telemetry().flush();
    telemetry.telemetry().export_stats().traces.exported
}

/// [`check_spans`] for the variant that ran after `before` spans were already exported.
fn check_spans_since(name: &str, telemetry: &ScopedTelemetry, before: u64, calls: u64) {
    let mut tally = Tally::ours_spans(name, calls, telemetry);
    tally.exported = tally.exported.saturating_sub(before);
    tally.check(true);
}

/// Prints the spans the traced variant made and exported; fails the run on a drop.
fn check_spans(name: &str, telemetry: &ScopedTelemetry, calls: u64) {
    Tally::ours_spans(name, calls, telemetry).check(true);
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

async fn select_seven<'c>(executor: impl sqlx::Executor<'c, Database = sqlx::Postgres>) -> i32 {
    let (n,): (i32,) = sqlx::query_as("SELECT $1::int4")
        .bind(black_box(7))
        .fetch_one(executor)
        .await
        .expect("query");
    n
}

async fn get_key(connection: &mut (impl ConnectionLike + Send)) -> Option<String> {
    redis::cmd("GET")
        .arg(black_box("bench:key"))
        .query_async(connection)
        .await
        .expect("get")
}

fn postgres_query(c: &mut Criterion) {
    let server = servers::Postgres::start();
    let rt = runtime();
    let telemetry = ours(Export::Traces, &[]);
    let plain = rt
        .block_on(
            sqlx::postgres::PgPoolOptions::new()
                .max_connections(1)
                .connect(&server.url),
        )
        .expect("connect");
    let traced = TracedPool::new(plain.clone());
    let request = tracing::info_span!("request");
    let _entered = request.enter();

    let mut group = c.benchmark_group("postgres_query");
    group.measurement_time(Duration::from_secs(4));
    group.bench_function("plain PgPool", |b| {
        b.iter(|| rt.block_on(select_seven(&plain)))
    });
    let calls = traced_bench(&mut group, "TracedPool", &telemetry, || {
        black_box(rt.block_on(select_seven(&traced)));
    });
    group.finish();
    check_spans("TracedPool", &telemetry, calls);
    rt.block_on(plain.close());
}

fn redis_command(c: &mut Criterion) {
    let server = servers::Redis::start();
    let rt = runtime();
    let telemetry = ours(Export::Traces, &[]);
    let client = redis::Client::open(server.url.as_str()).expect("client");
    let mut plain = rt
        .block_on(client.get_multiplexed_async_connection())
        .expect("connect");
    let mut traced = TracedConnection::new(plain.clone(), &client);
    let () = rt
        .block_on(
            redis::cmd("SET")
                .arg("bench:key")
                .arg("value")
                .query_async(&mut plain),
        )
        .expect("set");
    let request = tracing::info_span!("request");
    let _entered = request.enter();

    let mut group = c.benchmark_group("redis_command");
    group.measurement_time(Duration::from_secs(4));
    group.bench_function("plain MultiplexedConnection", |b| {
        b.iter(|| rt.block_on(get_key(&mut plain)))
    });
    let calls = traced_bench(&mut group, "TracedConnection", &telemetry, || {
        black_box(rt.block_on(get_key(&mut traced)));
    });
    group.finish();
    check_spans("redis_command/TracedConnection", &telemetry, calls);
}

/// The hand-written alternative: an `info_span!` per command carrying the attributes as
/// fields, the future instrumented with it.
struct SpanPerCommand(Answering);

impl ConnectionLike for SpanPerCommand {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        use tracing::Instrument as _;
        let operation = cmd
            .args_iter()
            .next()
            .and_then(|arg| match arg {
                redis::Arg::Simple(name) => Some(String::from_utf8_lossy(name).to_uppercase()),
                _ => None,
            })
            .unwrap_or_default();
        let span = tracing::info_span!(
            "redis command",
            otel.name = operation.as_str(),
            otel.kind = "client",
            db.system.name = "redis",
            db.operation.name = operation.as_str(),
            db.query.text = format!("{operation} ?").as_str(),
            db.namespace = "0",
            server.address = "127.0.0.1",
            server.port = 6379,
        );
        let inner = span.in_scope(|| self.0.req_packed_command(cmd));
        Box::pin(inner.instrument(span))
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        self.0.req_packed_commands(pipeline, offset, count)
    }

    fn get_db(&self) -> i64 {
        0
    }
}

fn redis_instrumentation(c: &mut Criterion) {
    let rt = runtime();
    let telemetry = ours(Export::Traces, &[]);
    let info =
        redis::IntoConnectionInfo::into_connection_info("redis://127.0.0.1:6379/").expect("info");
    let mut plain = Answering;
    let mut traced = TracedConnection::with_connection_info(Answering, &info);
    let request = tracing::info_span!("request");
    let _entered = request.enter();

    let mut by_hand = SpanPerCommand(Answering);

    let mut group = c.benchmark_group("redis_instrumentation");
    group.bench_function("plain", |b| b.iter(|| rt.block_on(get_key(&mut plain))));
    let before = exported_so_far(&telemetry);
    let calls = traced_bench(&mut group, "tracing_span_per_command", &telemetry, || {
        black_box(rt.block_on(get_key(&mut by_hand)));
    });
    check_spans_since(
        "redis_instrumentation/tracing_span_per_command",
        &telemetry,
        before,
        calls,
    );
    let before = exported_so_far(&telemetry);
    let calls = traced_bench(&mut group, "TracedConnection", &telemetry, || {
        black_box(rt.block_on(get_key(&mut traced)));
    });
    group.finish();
    check_spans_since(
        "redis_instrumentation/TracedConnection",
        &telemetry,
        before,
        calls,
    );
}

criterion_group!(
    benches,
    postgres_query,
    redis_command,
    redis_instrumentation
);
criterion_main!(benches);
