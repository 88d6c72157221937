//! A service with a database and a cache: every request is a trace whose children are its SQL
//! queries and Redis commands.
//!
//! ```text
//! DATABASE_URL=postgres://app@127.0.0.1/shop REDIS_URL=redis://127.0.0.1/ \
//!     cargo run --example orders --features axum,sqlx,redis
//! ```
//!
//! - `POST /orders` with `{"customer": "ada", "amount": 42}`: an `INSERT`, then one Redis
//!   pipeline that caches the order and counts it, then a `GET` that reads it back.
//! - `GET /orders/{id}`: Redis first, PostgreSQL on a miss.
//! - `POST /orders/broken` with `{"customer": ".."}`: a query on a missing table and one whose
//!   cast fails (PostgreSQL quotes the value in its message); both spans are errors, the request
//!   answers 500 with the SQLSTATEs.
//! - `GET /queue/pop?timeout_ms=N`: `BRPOP` on the `jobs` list for up to N ms.
//!
//! Without `DATABASE_URL` or `REDIS_URL` the service still starts, says which is missing, and
//! those routes answer 503. `PORT` (default 8080; 0 picks a free port) sets the port.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use redis::AsyncCommands as _;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::Deserialize;
use serde_json::{Value, json};
use service_telemetry::Shutdown;
use service_telemetry::instrument::HttpServerLayer;
use service_telemetry::instrument::redis::TracedConnection;
use service_telemetry::instrument::sqlx::TracedPool;
use service_telemetry::shutdown::Step;
use tracing::{info, warn};

/// Blocking commands wait up to this long; the client's response timeout must be longer.
const LONGEST_BLOCK: Duration = Duration::from_secs(10);

#[derive(Clone)]
struct Stores {
    db: Option<TracedPool>,
    cache: Option<TracedConnection<ConnectionManager>>,
}

type Reply = (StatusCode, Json<Value>);

fn unavailable(what: &str) -> Reply {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({ "error": format!("{what} is not configured") })),
    )
}

/// The low-cardinality part of an error, safe to log: PostgreSQL's messages can quote values.
fn sql_code(error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::Database(e) => e
            .code()
            .map_or_else(|| "database".into(), |c| c.into_owned()),
        sqlx::Error::PoolTimedOut => "pool_timed_out".into(),
        _ => "client".into(),
    }
}

#[tokio::main]
async fn main() {
    let telemetry = service_telemetry::Telemetry::builder()
        .service_name("orders")
        .service_version(env!("CARGO_PKG_VERSION"))
        .init();
    let mut shutdown = Shutdown::new(telemetry);

    let stores = Stores {
        db: connect_database().await,
        cache: connect_cache().await,
    };
    let listener = match tokio::net::TcpListener::bind(("0.0.0.0", port())).await {
        Ok(listener) => listener,
        Err(e) => {
            shutdown.handle().fail(format!("cannot listen: {e}"));
            shutdown.run().await;
            return;
        }
    };
    if let Ok(address) = listener.local_addr() {
        info!(address = %address, "listening");
    }

    let app = Router::new()
        .route("/orders", post(create_order))
        .route("/orders/{id}", get(read_order))
        .route("/orders/broken", post(broken_queries))
        .route("/queue/pop", get(pop_job))
        .layer(HttpServerLayer::new())
        .with_state(Arc::new(stores.clone()));
    shutdown.spawn_service("drain http server", |stop| {
        axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned())
    });
    if let Some(db) = stores.db {
        shutdown.add(
            Step::new(
                "close database pool",
                move || async move { db.close().await },
            )
            .timeout(Duration::from_secs(5)),
        );
    }
    shutdown.run().await;
}

async fn connect_database() -> Option<TracedPool> {
    let Ok(url) = std::env::var("DATABASE_URL") else {
        warn!(
            variable = "DATABASE_URL",
            "not set: the order routes answer 503"
        );
        return None;
    };
    // The one line that makes every query a span: wrap the pool.
    let pool = match sqlx::postgres::PgPoolOptions::new()
        .max_connections(5)
        .acquire_timeout(Duration::from_secs(5))
        .connect(&url)
        .await
    {
        Ok(pool) => TracedPool::new(pool),
        Err(e) => {
            warn!(variable = "DATABASE_URL", error = %sql_code(&e), "cannot connect: the order routes answer 503");
            return None;
        }
    };
    let schema = "CREATE TABLE IF NOT EXISTS orders (\
        id BIGSERIAL PRIMARY KEY, customer TEXT NOT NULL, amount BIGINT NOT NULL)";
    if let Err(e) = sqlx::query(schema).execute(&pool).await {
        warn!(error = %sql_code(&e), "cannot create the orders table");
        return None;
    }
    Some(pool)
}

async fn connect_cache() -> Option<TracedConnection<ConnectionManager>> {
    let Ok(url) = std::env::var("REDIS_URL") else {
        warn!(
            variable = "REDIS_URL",
            "not set: the cache and queue routes answer 503"
        );
        return None;
    };
    let client = match redis::Client::open(url.as_str()) {
        Ok(client) => client,
        Err(e) => {
            warn!(variable = "REDIS_URL", error = ?e.kind(), "invalid: the cache and queue routes answer 503");
            return None;
        }
    };
    let config = ConnectionManagerConfig::new()
        .set_response_timeout(Some(LONGEST_BLOCK + Duration::from_secs(1)));
    match client.get_connection_manager_with_config(config).await {
        // The one line that makes every command a span: wrap the connection.
        Ok(manager) => Some(TracedConnection::new(manager, &client)),
        Err(e) => {
            warn!(variable = "REDIS_URL", error = ?e.kind(), "cannot connect: the cache and queue routes answer 503");
            None
        }
    }
}

#[derive(Deserialize)]
struct NewOrder {
    customer: String,
    amount: i64,
}

async fn create_order(State(stores): State<Arc<Stores>>, Json(order): Json<NewOrder>) -> Reply {
    let (Some(db), Some(cache)) = (&stores.db, &stores.cache) else {
        return unavailable("DATABASE_URL or REDIS_URL");
    };
    let inserted: Result<(i64,), _> =
        sqlx::query_as("INSERT INTO orders (customer, amount) VALUES ($1, $2) RETURNING id")
            .bind(&order.customer)
            .bind(order.amount)
            .fetch_one(db)
            .await;
    let id = match inserted {
        Ok((id,)) => id,
        Err(e) => {
            warn!(error = %sql_code(&e), "insert failed");
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(json!({ "error": sql_code(&e) })),
            );
        }
    };
    let key = format!("order:{id}");
    let cached =
        json!({ "id": id, "customer": order.customer, "amount": order.amount }).to_string();
    let mut cache = cache.clone();
    let stored: redis::RedisResult<()> = redis::pipe()
        .set_ex(&key, &cached, 300)
        .ignore()
        .incr("orders:created", 1)
        .ignore()
        .query_async(&mut cache)
        .await;
    if let Err(e) = stored {
        warn!(error = ?e.kind(), "caching the order failed");
    }
    let read_back: redis::RedisResult<Option<String>> = cache.get(&key).await;
    info!(order.id = id, "order created");
    (
        StatusCode::CREATED,
        Json(json!({ "id": id, "cached": matches!(read_back, Ok(Some(_))) })),
    )
}

async fn read_order(State(stores): State<Arc<Stores>>, Path(id): Path<i64>) -> Reply {
    let (Some(db), Some(cache)) = (&stores.db, &stores.cache) else {
        return unavailable("DATABASE_URL or REDIS_URL");
    };
    let mut cache = cache.clone();
    if let Ok(Some(hit)) = cache.get::<_, Option<String>>(format!("order:{id}")).await {
        if let Ok(order) = serde_json::from_str::<Value>(&hit) {
            return (
                StatusCode::OK,
                Json(json!({ "order": order, "from": "cache" })),
            );
        }
    }
    let row: Result<Option<(String, i64)>, _> =
        sqlx::query_as("SELECT customer, amount FROM orders WHERE id = $1")
            .bind(id)
            .fetch_optional(db)
            .await;
    match row {
        Ok(Some((customer, amount))) => (
            StatusCode::OK,
            Json(
                json!({ "order": { "id": id, "customer": customer, "amount": amount }, "from": "database" }),
            ),
        ),
        Ok(None) => (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": "no such order" })),
        ),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({ "error": sql_code(&e) })),
        ),
    }
}

#[derive(Deserialize)]
struct Customer {
    customer: String,
}

async fn broken_queries(State(stores): State<Arc<Stores>>, Json(who): Json<Customer>) -> Reply {
    let Some(db) = &stores.db else {
        return unavailable("DATABASE_URL");
    };
    let mut codes = Vec::new();
    let missing_table = sqlx::query("SELECT amount FROM order_archive WHERE customer = $1")
        .bind(&who.customer)
        .fetch_all(db)
        .await;
    let bad_cast = sqlx::query("SELECT $1::text::int4")
        .bind(&who.customer)
        .fetch_one(db)
        .await;
    for result in [missing_table.map(drop), bad_cast.map(drop)] {
        if let Err(e) = result {
            warn!(error = %sql_code(&e), "query failed");
            codes.push(sql_code(&e));
        }
    }
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        Json(json!({ "errors": codes })),
    )
}

#[derive(Deserialize)]
struct Pop {
    #[serde(default)]
    timeout_ms: u64,
}

async fn pop_job(State(stores): State<Arc<Stores>>, Query(pop): Query<Pop>) -> Reply {
    let Some(cache) = &stores.cache else {
        return unavailable("REDIS_URL");
    };
    let timeout = Duration::from_millis(pop.timeout_ms).min(LONGEST_BLOCK);
    let popped: redis::RedisResult<Option<(String, String)>> =
        cache.clone().brpop("jobs", timeout.as_secs_f64()).await;
    match popped {
        Ok(job) => (
            StatusCode::OK,
            Json(json!({ "job": job.map(|(_, job)| job) })),
        ),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({ "error": format!("{:?}", e.kind()) })),
        ),
    }
}

fn port() -> u16 {
    const DEFAULT_PORT: u16 = 8080;
    match std::env::var("PORT") {
        Err(_) => DEFAULT_PORT,
        Ok(raw) => raw.trim().parse().unwrap_or_else(|_| {
            warn!(variable = "PORT", value = %raw, used_instead = DEFAULT_PORT, "invalid PORT");
            DEFAULT_PORT
        }),
    }
}
