//! PostgreSQL through sqlx: every query run through a [`TracedPool`] (or a transaction, a
//! savepoint or a connection taken from it) is a `CLIENT` span, child of the current span,
//! with the database semantic conventions, and is counted in `db.client.operation.duration`.
//!
//! The one line to change is where the pool is built; queries keep sqlx's own API:
//!
//! ```no_run
//! # async fn run() -> Result<(), sqlx::Error> {
//! use service_telemetry::instrument::sqlx::TracedPool;
//!
//! let pool = TracedPool::new(sqlx::PgPool::connect("postgres://app@localhost/shop").await?);
//!
//! let (count,): (i64,) = sqlx::query_as("SELECT count(*) FROM orders WHERE customer = $1")
//!     .bind("ada")
//!     .fetch_one(&pool)
//!     .await?;
//!
//! let mut tx = pool.begin().await?;
//! sqlx::query("UPDATE orders SET amount = amount + 1 WHERE customer = $1")
//!     .bind("ada")
//!     .execute(&mut tx)
//!     .await?;
//! tx.commit().await?;
//!
//! // Statements that must share a connection; nested `begin` is a savepoint.
//! let mut conn = pool.acquire().await?;
//! sqlx::query("SET application_name = 'billing'").execute(&mut conn).await?;
//! let mut tx = conn.begin().await?;
//! let savepoint = tx.begin().await?;
//! savepoint.rollback().await?;
//! tx.commit().await?;
//! # Ok(()) }
//! ```
//!
//! | Attribute | Value |
//! |---|---|
//! | span name, `db.query.summary` | each operation and the tables it names (`SELECT orders`, `INSERT shipping_details SELECT orders`), from the statement's keywords |
//! | `db.system.name` | `postgresql` |
//! | `db.query.text` | the statement as written, placeholders and all (never the bound values), cut to [`TracedPool::max_query_text_len`] |
//! | `db.namespace`, `server.address`, `server.port` | from the pool's connect options |
//! | `db.response.returned_rows` | rows the query returned, with [`TracedPool::record_returned_rows`] (opt-in) |
//!
//! `db.operation.name` and `db.collection.name` are not recorded: semconv v1.44.0 (`sql.md`)
//! says they "SHOULD NOT be extracted from `db.query.text`".
//! | `error.type`, `db.response.status_code` | on failure: the SQLSTATE (`42P01`), or the sqlx error kind (`PoolTimedOut`) |
//!
//! The server's error message is not recorded: PostgreSQL quotes parameter values in some of
//! them. sqlx's own `Display` of the error, which the caller still gets, has it.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use ::sqlx::pool::PoolConnection;
use ::sqlx::postgres::{
    PgConnectOptions, PgConnection, PgQueryResult, PgRow, PgStatement, PgTypeInfo,
};
use ::sqlx::{Describe, Either, Error, Execute, Executor, PgPool, Postgres, Transaction};
use futures_core::Stream;
use futures_core::future::BoxFuture;
use futures_core::stream::BoxStream;
use opentelemetry::KeyValue;
use tracing::Instrument as _;

use super::{self as db, DbCall, Outcome};

/// Where the queries go, read once from the pool's connect options.
#[derive(Clone, Debug)]
struct Target {
    /// Shared, as the address is, so no query copies them.
    namespace: Arc<str>,
    address: Arc<str>,
    port: Option<u16>,
    max_query_text_len: usize,
    /// `db.response.returned_rows`, opt-in in the conventions.
    returned_rows: bool,
}

impl Target {
    fn of(options: &PgConnectOptions) -> Self {
        let (address, port) = match options.get_socket() {
            Some(socket) => (socket.display().to_string().into(), None),
            None => (options.get_host().into(), Some(options.get_port())),
        };
        Target {
            // PostgreSQL's own default: the database named after the user.
            namespace: options
                .get_database()
                .unwrap_or(options.get_username())
                .into(),
            address,
            port,
            max_query_text_len: db::DEFAULT_MAX_QUERY_TEXT_LEN,
            returned_rows: false,
        }
    }

    /// Starts the span of one statement, as a child of the current span.
    fn start(&self, sql: &str) -> DbCall {
        // database-spans.md / sql.md (v1.44.0): the span is named after db.query.summary;
        // db.operation.name and db.collection.name "SHOULD NOT be extracted from
        // db.query.text", so raw statements carry neither.
        let summary = db::query_summary(sql).map(|summary| db::interned(&summary));
        let name = summary.clone().unwrap_or(Cow::Borrowed("postgresql"));
        let mut attributes = vec![
            KeyValue::new("db.system.name", "postgresql"),
            KeyValue::new("db.namespace", self.namespace.clone()),
            KeyValue::new("server.address", self.address.clone()),
        ];
        if let Some(port) = self.port {
            attributes.push(KeyValue::new("server.port", i64::from(port)));
        }
        if let Some(summary) = summary {
            attributes.push(KeyValue::new("db.query.summary", summary));
        }
        let mut span_attributes = Vec::with_capacity(attributes.len() + 1);
        span_attributes.extend_from_slice(&attributes);
        span_attributes.push(KeyValue::new(
            "db.query.text",
            db::truncate_query_text(sql, self.max_query_text_len).into_owned(),
        ));
        DbCall::start(name, span_attributes, attributes, self.returned_rows)
    }
}

fn outcome_of(error: &Error) -> Outcome {
    let (error_type, status_code) = match error {
        Error::Database(e) => match e.code() {
            Some(code) => (code.to_string(), Some(code.to_string())),
            None => ("Database".to_owned(), None),
        },
        Error::Configuration(_) => ("Configuration".to_owned(), None),
        Error::InvalidArgument(_) => ("InvalidArgument".to_owned(), None),
        Error::Io(_) => ("Io".to_owned(), None),
        Error::Tls(_) => ("Tls".to_owned(), None),
        Error::Protocol(_) => ("Protocol".to_owned(), None),
        Error::RowNotFound => ("RowNotFound".to_owned(), None),
        Error::TypeNotFound { .. } => ("TypeNotFound".to_owned(), None),
        Error::ColumnIndexOutOfBounds { .. } => ("ColumnIndexOutOfBounds".to_owned(), None),
        Error::ColumnNotFound(_) => ("ColumnNotFound".to_owned(), None),
        Error::ColumnDecode { .. } => ("ColumnDecode".to_owned(), None),
        Error::Encode(_) => ("Encode".to_owned(), None),
        Error::Decode(_) => ("Decode".to_owned(), None),
        Error::PoolTimedOut => ("PoolTimedOut".to_owned(), None),
        Error::PoolClosed => ("PoolClosed".to_owned(), None),
        Error::WorkerCrashed => ("WorkerCrashed".to_owned(), None),
        _ => ("_OTHER".to_owned(), None),
    };
    Outcome::Failed {
        error_type,
        status_code,
    }
}

/// A `PgPool` whose queries are spans. Cheap to clone (like the pool); derefs to the pool for
/// everything that is not a query (`close`, `size`).
///
/// Use `&pool` wherever sqlx takes an executor, [`TracedPool::begin`] for transactions and
/// [`TracedPool::acquire`] for a connection of your own.
#[derive(Clone)]
pub struct TracedPool {
    pool: PgPool,
    target: Arc<Target>,
}

impl fmt::Debug for TracedPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TracedPool")
            .field("namespace", &self.target.namespace)
            .field("server", &self.target.address)
            .field("port", &self.target.port)
            .finish_non_exhaustive()
    }
}

impl TracedPool {
    /// Wraps `pool`; its connect options give `db.namespace`, `server.address` and `server.port`.
    pub fn new(pool: PgPool) -> Self {
        let target = Arc::new(Target::of(&pool.connect_options()));
        TracedPool { pool, target }
    }

    /// Cuts `db.query.text` to at most `bytes` (default [`DEFAULT_MAX_QUERY_TEXT_LEN`]); the
    /// statement sent to the server is never cut.
    ///
    /// [`DEFAULT_MAX_QUERY_TEXT_LEN`]: crate::instrument::DEFAULT_MAX_QUERY_TEXT_LEN
    #[must_use]
    pub fn max_query_text_len(mut self, bytes: usize) -> Self {
        Arc::make_mut(&mut self.target).max_query_text_len = bytes;
        self
    }

    /// Records `db.response.returned_rows` on each query's span (an opt-in attribute of the
    /// conventions; off by default).
    #[must_use]
    pub fn record_returned_rows(mut self, enabled: bool) -> Self {
        Arc::make_mut(&mut self.target).returned_rows = enabled;
        self
    }

    /// The wrapped pool, for code that needs the plain `PgPool` (its queries are not traced).
    pub fn inner(&self) -> &PgPool {
        &self.pool
    }

    /// Begins a transaction whose statements are spans, as are `BEGIN`, `COMMIT` and
    /// `ROLLBACK`. Use `&mut tx` as the executor.
    pub async fn begin(&self) -> Result<TracedTransaction<'static>, Error> {
        let transaction = traced(&self.target, "BEGIN", self.pool.begin()).await?;
        Ok(TracedConnection {
            inner: transaction,
            target: Arc::clone(&self.target),
            depth: 1,
        })
    }

    /// Takes a connection out of the pool, for statements that must share one (session
    /// settings, advisory locks, `LISTEN`). Its queries are spans; use `&mut conn` as the
    /// executor. Waiting for the connection is not a span of its own.
    pub async fn acquire(&self) -> Result<TracedPoolConnection, Error> {
        Ok(TracedConnection {
            inner: self.pool.acquire().await?,
            target: Arc::clone(&self.target),
            depth: 0,
        })
    }
}

/// Runs one statement sqlx issues itself (`BEGIN`, `COMMIT`, ...) as a span.
async fn traced<T>(
    target: &Target,
    statement: &str,
    run: impl Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    let mut call = target.start(statement);
    let result = run.instrument(call.span.scope()).await;
    call.finish(result.as_ref().map_or_else(outcome_of, |_| Outcome::Ok));
    result
}

impl Deref for TracedPool {
    type Target = PgPool;

    fn deref(&self) -> &PgPool {
        &self.pool
    }
}

impl From<PgPool> for TracedPool {
    fn from(pool: PgPool) -> Self {
        TracedPool::new(pool)
    }
}

/// A PostgreSQL connection whose queries are spans: a [`TracedPoolConnection`] from
/// [`TracedPool::acquire`], or a [`TracedTransaction`] from a `begin`. Use `&mut conn` wherever
/// sqlx takes an executor.
pub struct TracedConnection<C> {
    inner: C,
    target: Arc<Target>,
    /// Transactions open on the connection up to and including this one: 0 for a connection,
    /// 1 for a transaction, 2 and more for savepoints. Mirrors sqlx's own count, which names
    /// the savepoints.
    depth: usize,
}

/// A connection taken out of a [`TracedPool`] with [`TracedPool::acquire`]; back to the pool
/// when dropped.
pub type TracedPoolConnection = TracedConnection<PoolConnection<Postgres>>;

/// A transaction begun with [`TracedPool::begin`] or [`TracedConnection::begin`]. Dropped
/// without `commit`, it rolls back (sqlx's own behaviour).
pub type TracedTransaction<'c> = TracedConnection<Transaction<'c, Postgres>>;

impl<C> fmt::Debug for TracedConnection<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TracedConnection")
            .field("namespace", &self.target.namespace)
            .field("transaction_depth", &self.depth)
            .finish_non_exhaustive()
    }
}

impl<C: DerefMut<Target = PgConnection>> TracedConnection<C> {
    /// Begins a transaction on this connection, or a savepoint inside this transaction (sqlx's
    /// nesting); either is a span, as is its end.
    pub async fn begin(&mut self) -> Result<TracedTransaction<'_>, Error> {
        let statement = match self.depth {
            0 => Cow::Borrowed("BEGIN"),
            depth => Cow::Owned(format!("SAVEPOINT _sqlx_savepoint_{depth}")),
        };
        let transaction = traced(
            &self.target,
            &statement,
            ::sqlx::Connection::begin(&mut *self.inner),
        )
        .await?;
        Ok(TracedConnection {
            inner: transaction,
            target: Arc::clone(&self.target),
            depth: self.depth + 1,
        })
    }

    /// The sqlx connection, for what is not a query (`copy_in_raw`, `ping`). Statements run on
    /// it directly are not traced.
    pub fn inner_mut(&mut self) -> &mut C {
        &mut self.inner
    }
}

impl<'c> TracedTransaction<'c> {
    /// Commits (or releases the savepoint), as a span.
    pub async fn commit(self) -> Result<(), Error> {
        let statement = self.ending("COMMIT", "RELEASE SAVEPOINT");
        traced(&self.target, &statement, self.inner.commit()).await
    }

    /// Rolls back (to the savepoint), as a span.
    pub async fn rollback(self) -> Result<(), Error> {
        let statement = self.ending("ROLLBACK", "ROLLBACK TO SAVEPOINT");
        traced(&self.target, &statement, self.inner.rollback()).await
    }

    /// The statement sqlx sends to end this transaction, or its savepoint when nested.
    fn ending(&self, transaction: &'static str, savepoint: &str) -> Cow<'static, str> {
        match self.depth {
            0 | 1 => Cow::Borrowed(transaction),
            depth => Cow::Owned(format!("{savepoint} _sqlx_savepoint_{}", depth - 1)),
        }
    }
}

/// The rows (and results) of one statement; the span ends when the stream does, or when it is
/// dropped. Dropped between rows (`fetch(..).next()` and done), the caller chose to stop: not a
/// failure. Dropped while waiting for the server (a timeout around `execute`), it was cancelled.
struct TracedStream<'e> {
    inner: BoxStream<'e, Result<Either<PgQueryResult, PgRow>, Error>>,
    call: DbCall,
    /// The call's `tracing` span, if it has one, entered while the stream is polled.
    scope: tracing::Span,
    rows: u64,
    waiting: bool,
}

impl Stream for TracedStream<'_> {
    type Item = Result<Either<PgQueryResult, PgRow>, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let polled = {
            let _entered = this.scope.enter();
            this.inner.as_mut().poll_next(cx)
        };
        this.waiting = polled.is_pending();
        match &polled {
            Poll::Ready(Some(Ok(Either::Right(_)))) => this.rows += 1,
            Poll::Ready(Some(Err(e))) => this.call.finish(outcome_of(e)),
            Poll::Ready(None) => {
                this.call.record_returned_rows(this.rows);
                this.call.finish(Outcome::Ok);
            }
            _ => {}
        }
        polled
    }
}

impl Drop for TracedStream<'_> {
    fn drop(&mut self) {
        if self.waiting {
            self.call.finish(Outcome::Cancelled);
        } else if !self.call.is_finished() {
            self.call.record_returned_rows(self.rows);
            self.call.finish(Outcome::Ok);
        }
    }
}

fn traced_fetch_many<'e>(
    target: &Target,
    sql: &str,
    run: impl FnOnce() -> BoxStream<'e, Result<Either<PgQueryResult, PgRow>, Error>>,
) -> BoxStream<'e, Result<Either<PgQueryResult, PgRow>, Error>> {
    let call = target.start(sql);
    let scope = call.span.scope();
    let inner = scope.in_scope(run);
    Box::pin(TracedStream {
        inner,
        call,
        scope,
        rows: 0,
        waiting: false,
    })
}

fn traced_fetch_optional<'e>(
    target: &Target,
    sql: &str,
    run: impl FnOnce() -> BoxFuture<'e, Result<Option<PgRow>, Error>>,
) -> BoxFuture<'e, Result<Option<PgRow>, Error>> {
    let mut call = target.start(sql);
    let span = call.span.scope();
    let inner = span.in_scope(run);
    Box::pin(
        async move {
            let result = inner.await;
            match &result {
                Ok(row) => {
                    call.record_returned_rows(u64::from(row.is_some()));
                    call.finish(Outcome::Ok);
                }
                Err(e) => call.finish(outcome_of(e)),
            }
            result
        }
        .instrument(span),
    )
}

impl<'p> Executor<'p> for &TracedPool {
    type Database = Postgres;

    fn fetch_many<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxStream<'e, Result<Either<PgQueryResult, PgRow>, Error>>
    where
        'p: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        let pool = &self.pool;
        traced_fetch_many(&self.target, query.sql(), || pool.fetch_many(query))
    }

    fn fetch_optional<'e, 'q: 'e, E>(self, query: E) -> BoxFuture<'e, Result<Option<PgRow>, Error>>
    where
        'p: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        let pool = &self.pool;
        traced_fetch_optional(&self.target, query.sql(), || pool.fetch_optional(query))
    }

    fn prepare_with<'e, 'q: 'e>(
        self,
        sql: &'q str,
        parameters: &'e [PgTypeInfo],
    ) -> BoxFuture<'e, Result<PgStatement<'q>, Error>>
    where
        'p: 'e,
    {
        self.pool.prepare_with(sql, parameters)
    }

    #[doc(hidden)]
    fn describe<'e, 'q: 'e>(self, sql: &'q str) -> BoxFuture<'e, Result<Describe<Postgres>, Error>>
    where
        'p: 'e,
    {
        self.pool.describe(sql)
    }
}

impl<'t, C> Executor<'t> for &'t mut TracedConnection<C>
where
    C: DerefMut<Target = PgConnection> + Send,
{
    type Database = Postgres;

    fn fetch_many<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxStream<'e, Result<Either<PgQueryResult, PgRow>, Error>>
    where
        't: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        let sql = query.sql();
        let connection = &mut *self.inner;
        traced_fetch_many(&self.target, sql, move || connection.fetch_many(query))
    }

    fn fetch_optional<'e, 'q: 'e, E>(self, query: E) -> BoxFuture<'e, Result<Option<PgRow>, Error>>
    where
        't: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        let sql = query.sql();
        let connection = &mut *self.inner;
        traced_fetch_optional(&self.target, sql, move || connection.fetch_optional(query))
    }

    fn prepare_with<'e, 'q: 'e>(
        self,
        sql: &'q str,
        parameters: &'e [PgTypeInfo],
    ) -> BoxFuture<'e, Result<PgStatement<'q>, Error>>
    where
        't: 'e,
    {
        (&mut *self.inner).prepare_with(sql, parameters)
    }

    #[doc(hidden)]
    fn describe<'e, 'q: 'e>(self, sql: &'q str) -> BoxFuture<'e, Result<Describe<Postgres>, Error>>
    where
        't: 'e,
    {
        (&mut *self.inner).describe(sql)
    }
}
