//! SQL queries and Redis commands as spans, against real servers: the `orders` example runs
//! against a throwaway PostgreSQL and Redis (or `DATABASE_URL` / `REDIS_URL`), exports to the
//! real collector, and the collector's spans are checked for parents, attributes, errors,
//! durations and the absence of every value the requests carried.
#![cfg(all(feature = "axum", feature = "sqlx", feature = "redis"))]

mod common;

use std::process::Command;
use std::time::Duration;

use common::child::{Running, Signal, example_binary, http_get, http_post_json};
use common::collector::Collector;
use common::servers::{Postgres, Redis};
use serde_json::Value;

const READY: Duration = Duration::from_secs(60);
const ARRIVAL: Duration = Duration::from_secs(30);

/// Values no span, metric or log line may carry: a bound text, a bound integer, and a text
/// that PostgreSQL quotes back in its error message. The first two also go into Redis.
const CUSTOMER: &str = "zebra-quill-7Q3X";
const AMOUNT: i64 = 987_654_321;
const ECHOED: &str = "okapi-8812-vellum";

struct Orders {
    child: Running,
    port: u16,
}

fn start_orders(collector: &Collector, postgres: &Postgres, redis: &Redis) -> Orders {
    let endpoint = collector.http_endpoint();
    let env = [
        ("OTEL_ENABLED", "true"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ("DATABASE_URL", postgres.url.as_str()),
        ("REDIS_URL", redis.url.as_str()),
        ("PORT", "0"),
    ];
    let mut child = Running::spawn(Command::new(example_binary("orders")), &env);
    let listening = child.wait_for_message("listening", READY);
    let port = listening["address"]
        .as_str()
        .and_then(|a| a.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {listening}"));
    Orders { child, port }
}

fn spans_of_trace(records: &[Value], trace_id: &str) -> Vec<Value> {
    records
        .iter()
        .filter(|r| r["signal"] == "span" && r["trace_id"] == trace_id)
        .cloned()
        .collect()
}

fn named<'a>(spans: &'a [Value], name: &str) -> &'a Value {
    spans
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no span {name:?} among {spans:#?}"))
}

fn assert_client_child_of(span: &Value, parent: &Value) {
    assert!(
        span["kind"]
            .as_str()
            .is_some_and(|k| k.to_ascii_lowercase().contains("client")),
        "not a CLIENT span: {span}"
    );
    assert_eq!(span["parent_span_id"], parent["span_id"], "{span}");
}

fn attr<'a>(span: &'a Value, key: &str) -> &'a Value {
    &span["attributes"][key]
}

fn assert_ok_status(span: &Value) {
    let status = span["status"].as_str().unwrap_or_default();
    assert!(!status.contains("ERROR"), "unexpected error status: {span}");
}

fn assert_error(span: &Value, code: &str) {
    assert!(
        span["status"].as_str().is_some_and(|s| s.contains("ERROR")),
        "not an error: {span}"
    );
    assert_eq!(attr(span, "error.type"), code, "{span}");
    assert_eq!(attr(span, "db.response.status_code"), code, "{span}");
    assert!(attr(span, "db.response.returned_rows").is_null(), "{span}");
}

/// Seconds from rotel's `Start time` / `End time` (nanoseconds since the epoch).
fn duration_secs(span: &Value) -> f64 {
    let nanos = |field: &str| -> f64 {
        span[field]
            .as_str()
            .and_then(|t| t.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no {field} in {span}"))
    };
    (nanos("end_time") - nanos("start_time")) / 1e9
}

#[test]
fn queries_and_commands_are_children_of_the_request_with_no_values() {
    let collector = Collector::start();
    let postgres = Postgres::start();
    let redis = Redis::start();
    let mut orders = start_orders(&collector, &postgres, &redis);

    // A request that runs a query, a Redis pipeline and a Redis command.
    let (status, body) = http_post_json(
        orders.port,
        "/orders",
        &format!(r#"{{"customer":"{CUSTOMER}","amount":{AMOUNT}}}"#),
    );
    assert_eq!(status, 201, "{body}");
    let created: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(created["cached"], true, "{body}");
    let id = created["id"].as_i64().expect("id");

    // The values really went through both servers: read back from the cache.
    let (status, body) = http_get(orders.port, &format!("/orders/{id}"));
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains(CUSTOMER) && body.contains(&AMOUNT.to_string()),
        "{body}"
    );

    let server = collector.wait_for("POST /orders server span", ARRIVAL, |r| {
        r["signal"] == "span" && r["service"] == "orders" && r["name"] == "POST /orders"
    });
    let trace_id = server["trace_id"].as_str().expect("trace id").to_owned();
    collector.wait_for("the GET command span", ARRIVAL, |r| {
        r["trace_id"] == trace_id.as_str() && r["name"] == "GET"
    });
    let spans = spans_of_trace(&collector.records(), &trace_id);

    let insert = named(&spans, "INSERT orders");
    assert_client_child_of(insert, &server);
    assert_ok_status(insert);
    assert_eq!(attr(insert, "db.system.name"), "postgresql");
    assert_eq!(
        attr(insert, "db.query.text"),
        "INSERT INTO orders (customer, amount) VALUES ($1, $2) RETURNING id"
    );
    // sql.md (v1.44.0): named after db.query.summary; db.operation.name and
    // db.collection.name are not taken from the query text.
    assert_eq!(attr(insert, "db.query.summary"), "INSERT orders");
    assert!(attr(insert, "db.operation.name").is_null(), "{insert}");
    assert!(attr(insert, "db.collection.name").is_null(), "{insert}");
    assert_eq!(attr(insert, "db.namespace"), postgres.database.as_str());
    assert_eq!(attr(insert, "server.address"), postgres.host.as_str());
    assert_eq!(attr(insert, "server.port"), i64::from(postgres.port));
    // Opt-in in the conventions, and the example does not opt in.
    assert!(
        attr(insert, "db.response.returned_rows").is_null(),
        "{insert}"
    );

    let pipeline = named(&spans, "PIPELINE");
    assert_client_child_of(pipeline, &server);
    assert_ok_status(pipeline);
    assert_eq!(attr(pipeline, "db.system.name"), "redis");
    assert_eq!(attr(pipeline, "db.operation.name"), "PIPELINE");
    assert_eq!(attr(pipeline, "db.operation.batch.size"), 2);
    assert_eq!(attr(pipeline, "db.query.text"), "SETEX ? ? ?; INCRBY ? ?");

    let get = named(&spans, "GET");
    assert_client_child_of(get, &server);
    assert_ok_status(get);
    assert_eq!(attr(get, "db.system.name"), "redis");
    assert_eq!(attr(get, "db.operation.name"), "GET");
    assert_eq!(attr(get, "db.query.text"), "GET ?");
    assert_eq!(attr(get, "db.namespace"), "0");
    assert_eq!(attr(get, "server.address"), redis.host.as_str());
    assert_eq!(attr(get, "server.port"), i64::from(redis.port));

    // Failing queries: error spans with the SQLSTATE; the request still answers.
    let (status, body) = http_post_json(
        orders.port,
        "/orders/broken",
        &format!(r#"{{"customer":"{ECHOED}"}}"#),
    );
    assert_eq!(status, 500, "{body}");
    let answer: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(
        answer["errors"],
        serde_json::json!(["42P01", "22P02"]),
        "{body}"
    );
    let broken = collector.wait_for("POST /orders/broken server span", ARRIVAL, |r| {
        r["signal"] == "span" && r["name"] == "POST /orders/broken"
    });
    let trace_id = broken["trace_id"].as_str().expect("trace id").to_owned();
    let bad_cast_name = "SELECT".to_owned();
    collector.wait_for("the bad cast's span", ARRIVAL, |r| {
        r["trace_id"] == trace_id.as_str() && r["name"] == bad_cast_name.as_str()
    });
    let spans = spans_of_trace(&collector.records(), &trace_id);
    let missing_table = named(&spans, "SELECT order_archive");
    assert_client_child_of(missing_table, &broken);
    assert_error(missing_table, "42P01");
    let bad_cast = named(&spans, &bad_cast_name);
    assert_client_child_of(bad_cast, &broken);
    assert_error(bad_cast, "22P02");
    assert_eq!(attr(bad_cast, "db.query.text"), "SELECT $1::text::int4");

    // A blocking command's span lasts as long as it blocked.
    let (status, body) = http_get(orders.port, "/queue/pop?timeout_ms=1000");
    assert_eq!(status, 200, "{body}");
    let brpop = collector.wait_for("the BRPOP span", ARRIVAL, |r| {
        r["signal"] == "span" && r["name"] == "BRPOP"
    });
    assert_eq!(attr(&brpop, "db.query.text"), "BRPOP ? ?");
    let blocked = duration_secs(&brpop);
    assert!(
        (0.9..10.0).contains(&blocked),
        "BRPOP span lasted {blocked} s"
    );

    // Metrics go out at shutdown's flush: one histogram for both systems.
    orders.child.signal(Signal::TERM);
    let status = orders.child.wait_exit(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "{}", orders.child.output());
    for system in ["postgresql", "redis"] {
        collector.wait_for("db.client.operation.duration", ARRIVAL, |r| {
            r["signal"] == "metric"
                && r["name"] == "db.client.operation.duration"
                && r["attributes"]["db.system.name"] == system
        });
    }
    let failed = collector
        .records()
        .into_iter()
        .find(|r| {
            r["name"] == "db.client.operation.duration" && r["attributes"]["error.type"] == "42P01"
        })
        .unwrap_or_else(|| panic!("no failed-query duration point"));
    assert_eq!(
        failed["attributes"]["db.query.summary"], "SELECT order_archive",
        "{failed}"
    );
    // The one failed call's recorded duration is its span's, read off the same clock.
    assert_eq!(failed["count"], 1.0, "{failed}");
    let recorded = failed["sum"].as_f64().expect("a histogram sum");
    let spanned = duration_secs(missing_table);
    assert!(
        (recorded - spanned).abs() < 2e-6,
        "histogram {recorded} s against span {spanned} s: {failed}"
    );

    // No value in anything the collector received or the service wrote.
    let exported = collector.raw();
    let written = orders.child.output();
    assert!(
        written.contains("order created"),
        "the log lines are there: {written}"
    );
    for value in [CUSTOMER, &AMOUNT.to_string(), ECHOED] {
        assert!(!exported.contains(value), "{value} reached the collector");
        assert!(!written.contains(value), "{value} in the service's output");
    }
}
