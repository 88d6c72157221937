//! The database wrappers in process, against real PostgreSQL and Redis servers and an
//! in-memory exporter: statement truncation, transactions, streams dropped early, cancelled
//! queries, keys on request, transactions in Redis and server error replies. Installs a global
//! subscriber, so it has this file alone.
#![cfg(all(feature = "sqlx", feature = "redis"))]

mod common;

use common::memory::global_memory_exporter;

use std::time::Duration;

use common::servers::{Postgres, Redis};
use opentelemetry::trace::Status;
use opentelemetry_sdk::trace::SpanData;
use redis::AsyncCommands as _;
use service_telemetry::instrument::redis::TracedConnection;
use service_telemetry::instrument::sqlx::TracedPool;
use tracing::Instrument as _;

fn take_spans() -> Vec<SpanData> {
    let spans = global_memory_exporter()
        .get_finished_spans()
        .expect("spans");
    global_memory_exporter().reset();
    spans
}

fn named<'a>(spans: &'a [SpanData], name: &str) -> &'a SpanData {
    spans
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no span {name:?} among {:#?}", names(spans)))
}

fn names(spans: &[SpanData]) -> Vec<String> {
    spans.iter().map(|s| s.name.to_string()).collect()
}

fn attr(span: &SpanData, key: &str) -> Option<opentelemetry::Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.clone())
}

fn text(span: &SpanData, key: &str) -> String {
    attr(span, key)
        .map(|v| v.as_str().into_owned())
        .unwrap_or_else(|| panic!("no {key} on {span:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrappers_in_detail() {
    global_memory_exporter();
    let postgres = Postgres::start();
    let redis_server = Redis::start();
    postgres_details(&postgres).await;
    redis_details(&redis_server).await;
}

async fn postgres_details(postgres: &Postgres) {
    let pool = sqlx::PgPool::connect(&postgres.url).await.expect("connect");
    let pool = TracedPool::new(pool)
        .max_query_text_len(40)
        .record_returned_rows(true);
    take_spans();

    // A statement longer than the limit runs whole; only the attribute is cut.
    let padding = "x".repeat(200);
    let long = format!("SELECT 41 + 1 AS answer, '{padding}' AS padding");
    let (answer, padded): (i32, String) = sqlx::query_as(&long)
        .fetch_one(&pool)
        .await
        .expect("long query");
    assert_eq!((answer, padded.len()), (42, 200));
    let spans = take_spans();
    let query_text = text(named(&spans, "SELECT"), "db.query.text");
    assert_eq!(query_text, format!("{}…", &long[..40]));

    // A transaction: BEGIN, the statements and COMMIT, all children of the caller's span.
    async {
        sqlx::query("CREATE TABLE IF NOT EXISTS ledger (id SERIAL PRIMARY KEY, note TEXT)")
            .execute(&pool)
            .await
            .expect("create");
        let mut tx = pool.begin().await.expect("begin");
        sqlx::query("INSERT INTO ledger (note) VALUES ($1)")
            .bind("first")
            .execute(&mut tx)
            .await
            .expect("insert");
        let (count,): (i64,) = sqlx::query_as("SELECT count(*) FROM ledger")
            .fetch_one(&mut tx)
            .await
            .expect("count");
        assert!(count >= 1);
        tx.commit().await.expect("commit");
    }
    .instrument(tracing::info_span!("unit of work"))
    .await;
    let spans = take_spans();
    let parent = named(&spans, "unit of work").span_context.span_id();
    for name in ["CREATE ledger", "INSERT ledger", "SELECT ledger"] {
        assert_eq!(named(&spans, name).parent_span_id, parent, "{name}");
    }
    for name in ["BEGIN", "COMMIT"] {
        let span = named(&spans, name);
        assert_eq!(span.parent_span_id, parent, "{name}");
        assert_eq!(span.status, Status::Unset, "{name}");
    }

    // A connection of one's own: a session setting, a transaction on it and a savepoint
    // rolled back inside that, all spans under the caller's; the savepoint really undid its
    // insert, and the setting held for the whole connection.
    async {
        let mut conn = pool.acquire().await.expect("acquire");
        sqlx::query("SET application_name = 'ledger-audit'")
            .execute(&mut conn)
            .await
            .expect("set");
        let mut tx = conn.begin().await.expect("begin");
        sqlx::query("INSERT INTO ledger (note) VALUES ($1)")
            .bind("kept")
            .execute(&mut tx)
            .await
            .expect("insert kept");
        let mut savepoint = tx.begin().await.expect("savepoint");
        sqlx::query("INSERT INTO ledger (note) VALUES ($1)")
            .bind("undone")
            .execute(&mut savepoint)
            .await
            .expect("insert undone");
        savepoint
            .rollback()
            .await
            .expect("rollback to the savepoint");
        let notes: Vec<(String,)> =
            sqlx::query_as("SELECT note FROM ledger WHERE note IN ('kept', 'undone')")
                .fetch_all(&mut tx)
                .await
                .expect("notes");
        assert_eq!(notes, [("kept".to_owned(),)]);
        tx.commit().await.expect("commit");
        let (application,): (String,) =
            sqlx::query_as("SELECT current_setting('application_name')")
                .fetch_one(&mut conn)
                .await
                .expect("setting");
        assert_eq!(application, "ledger-audit");
    }
    .instrument(tracing::info_span!("audit"))
    .await;
    let spans = take_spans();
    let audit = named(&spans, "audit").span_context.span_id();
    let statements: Vec<(String, String)> = spans
        .iter()
        .filter(|s| s.name != "audit")
        .inspect(|s| assert_eq!(s.parent_span_id, audit, "{}", s.name))
        .map(|s| (s.name.to_string(), text(s, "db.query.text")))
        .collect();
    let expected = [
        ("SET".into(), "SET application_name = 'ledger-audit'"),
        ("BEGIN".into(), "BEGIN"),
        (
            "INSERT ledger".into(),
            "INSERT INTO ledger (note) VALUES ($1)",
        ),
        ("SAVEPOINT".into(), "SAVEPOINT _sqlx_savepoint_1"),
        (
            "INSERT ledger".into(),
            "INSERT INTO ledger (note) VALUES ($1)",
        ),
        ("ROLLBACK".into(), "ROLLBACK TO SAVEPOINT _sqlx_savepoint_1"),
        (
            "SELECT ledger".into(),
            "SELECT note FROM ledger WHERE note IN ('…",
        ),
        ("COMMIT".into(), "COMMIT"),
        ("SELECT".into(), "SELECT current_setting('application_name…"),
    ]
    .map(|(name, text)| (name, text.to_owned()));
    assert_eq!(statements, expected);

    // A stream dropped after two rows: not an error, two rows returned.
    {
        use futures_util_free::next;
        let mut rows = sqlx::query("SELECT generate_series(1, 5)").fetch(&pool);
        next(&mut rows).await.expect("row 1").expect("ok");
        next(&mut rows).await.expect("row 2").expect("ok");
    }
    let spans = take_spans();
    let streamed = named(&spans, "SELECT");
    assert_eq!(
        attr(streamed, "db.response.returned_rows"),
        Some(2i64.into())
    );
    assert_eq!(streamed.status, Status::Unset);

    // A query abandoned by a timeout around it: an error span marked cancelled.
    let abandoned = tokio::time::timeout(
        Duration::from_millis(100),
        sqlx::query("SELECT pg_sleep(5)").execute(&pool),
    )
    .await;
    assert!(abandoned.is_err(), "the timeout fired");
    let spans = take_spans();
    let cancelled = named(&spans, "SELECT");
    assert_eq!(text(cancelled, "error.type"), "cancelled");
    assert!(matches!(cancelled.status, Status::Error { .. }));
    pool.close().await;
}

async fn redis_details(server: &Redis) {
    let client = redis::Client::open(server.url.as_str()).expect("client");
    let connection = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let mut redis = TracedConnection::new(connection, &client).show_keys(true);
    take_spans();

    // Keys on request, values never.
    let () = redis.set("greeting", "s3cr3t-hello").await.expect("set");
    let spans = take_spans();
    assert_eq!(
        text(named(&spans, "SET"), "db.query.text"),
        "SET greeting ?"
    );

    // An atomic pipeline is one MULTI span listing its commands.
    let (a, b): (i64, i64) = redis::pipe()
        .atomic()
        .incr("counter", 1)
        .incr("counter", 1)
        .query_async(&mut redis)
        .await
        .expect("pipeline");
    assert_eq!(b, a + 1);
    let spans = take_spans();
    let multi = named(&spans, "MULTI");
    assert_eq!(
        text(multi, "db.query.text"),
        "INCRBY counter ?; INCRBY counter ?"
    );
    assert_eq!(attr(multi, "db.operation.batch.size"), Some(2i64.into()));

    // A server error reply: error status with the reply's code.
    let wrong: redis::RedisResult<i64> = redis.lpush("greeting", "x").await;
    assert!(wrong.is_err());
    let spans = take_spans();
    let lpush = named(&spans, "LPUSH");
    assert_eq!(text(lpush, "error.type"), "WRONGTYPE");
    assert!(matches!(lpush.status, Status::Error { .. }));
    for span in spans.iter() {
        for kv in &span.attributes {
            assert!(!kv.value.as_str().contains("s3cr3t"), "{span:#?}");
        }
    }
}

/// `StreamExt::next` without a futures dependency: one poll loop over `Stream`.
mod futures_util_free {
    use std::future::poll_fn;
    use std::pin::Pin;

    pub async fn next<S: futures_core::Stream + Unpin>(stream: &mut S) -> Option<S::Item> {
        poll_fn(|cx| Pin::new(&mut *stream).poll_next(cx)).await
    }
}
