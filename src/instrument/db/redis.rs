//! Redis through the `redis` crate: every command sent through a [`TracedConnection`] is a
//! `CLIENT` span, child of the current span, and a pipeline is one span listing its commands.
//!
//! The one line to change is where the connection is made; commands keep the crate's own API
//! (`AsyncCommands`, `redis::cmd(..).query_async`, `redis::pipe()`):
//!
//! ```no_run
//! # async fn run() -> redis::RedisResult<()> {
//! use redis::AsyncCommands as _;
//! use service_telemetry::instrument::redis::TracedConnection;
//!
//! let client = redis::Client::open("redis://127.0.0.1/")?;
//! let mut redis = TracedConnection::new(client.get_connection_manager().await?, &client);
//!
//! redis.set::<_, _, ()>("greeting", "hello").await?;
//! let _: Option<String> = redis.get("greeting").await?;
//! # Ok(()) }
//! ```
//!
//! | Attribute | Value |
//! |---|---|
//! | span name, `db.operation.name` | the command (`GET`, `BRPOP`, `CONFIG GET`); `PIPELINE` or `MULTI` for a pipeline |
//! | `db.system.name` | `redis` |
//! | `db.query.text` | the command with every argument as `?` (`SET ? ? ? ?`); keys shown with [`TracedConnection::show_keys`]; a pipeline's commands joined by `; ` |
//! | `db.namespace` | the database index (`0`) |
//! | `server.address`, `server.port` | from the client's connection info |
//! | `db.operation.batch.size` | the number of commands in a pipeline |
//! | `error.type`, `db.response.status_code` | on failure: the server's error code (`WRONGTYPE`), or the client's error kind |
//!
//! Values are never recorded, nor are server error messages (some echo arguments). A blocking
//! command's span lasts as long as it blocks: a `BRPOP` with a 5 s timeout and no data is a
//! 5 s span. The crate's own response timeout (500 ms by default) still applies to it; raise it
//! with `AsyncConnectionConfig` or `ConnectionManagerConfig` for blocking commands.

use std::fmt;
use std::sync::Arc;

use ::redis::aio::ConnectionLike;
use ::redis::{
    Arg, Client, Cmd, ConnectionAddr, ConnectionInfo, Pipeline, RedisError, RedisFuture, Value,
};
use opentelemetry::KeyValue;
use tracing::Instrument as _;

use super::{self as db, DbCall, Outcome};

/// Commands named by two words: the second is part of the operation, not an argument.
const CONTAINER_COMMANDS: [&str; 16] = [
    "ACL", "CLIENT", "CLUSTER", "COMMAND", "CONFIG", "FUNCTION", "LATENCY", "MEMORY", "MODULE",
    "OBJECT", "PUBSUB", "SCRIPT", "SLOWLOG", "XGROUP", "XINFO", "DEBUG",
];

/// Where a command's keys are among its arguments, as Redis's `COMMAND INFO` gives them:
/// first key, last key (negative: counted from the end, -1 the last argument) and step.
/// Argument 0 is the command's name. Commands not listed show no keys.
fn key_positions(command: &str) -> Option<(usize, isize, usize)> {
    const ONE_KEY: [&str; 77] = [
        "APPEND",
        "BITCOUNT",
        "BITPOS",
        "DECR",
        "DECRBY",
        "DUMP",
        "EXPIRE",
        "EXPIREAT",
        "EXPIRETIME",
        "GET",
        "GETBIT",
        "GETDEL",
        "GETEX",
        "GETRANGE",
        "GETSET",
        "HDEL",
        "HEXISTS",
        "HGET",
        "HGETALL",
        "HINCRBY",
        "HINCRBYFLOAT",
        "HKEYS",
        "HLEN",
        "HMGET",
        "HMSET",
        "HRANDFIELD",
        "HSCAN",
        "HSET",
        "HSETNX",
        "HSTRLEN",
        "HVALS",
        "INCR",
        "INCRBY",
        "INCRBYFLOAT",
        "LINDEX",
        "LINSERT",
        "LLEN",
        "LPOP",
        "LPOS",
        "LPUSH",
        "LPUSHX",
        "LRANGE",
        "LREM",
        "LSET",
        "LTRIM",
        "PERSIST",
        "PEXPIRE",
        "PEXPIREAT",
        "PFADD",
        "PSETEX",
        "PTTL",
        "RESTORE",
        "RPOP",
        "RPUSH",
        "RPUSHX",
        "SADD",
        "SCARD",
        "SET",
        "SETBIT",
        "SETEX",
        "SETNX",
        "SETRANGE",
        "SISMEMBER",
        "SMEMBERS",
        "SPOP",
        "SRANDMEMBER",
        "SREM",
        "SSCAN",
        "STRLEN",
        "TTL",
        "TYPE",
        "XADD",
        "XLEN",
        "ZADD",
        "ZCARD",
        "ZINCRBY",
        "ZSCORE",
    ];
    const ALL_KEYS: [&str; 11] = [
        "DEL", "EXISTS", "MGET", "PFCOUNT", "SDIFF", "SINTER", "SUNION", "TOUCH", "UNLINK",
        "WATCH", "PFMERGE",
    ];
    const KEYS_THEN_TIMEOUT: [&str; 4] = ["BLPOP", "BRPOP", "BZPOPMAX", "BZPOPMIN"];
    const TWO_KEYS: [&str; 7] = [
        "BLMOVE",
        "BRPOPLPUSH",
        "COPY",
        "LMOVE",
        "RENAME",
        "RENAMENX",
        "RPOPLPUSH",
    ];
    if ONE_KEY.contains(&command) || command.starts_with('Z') && command.contains("RANGE") {
        Some((1, 1, 1))
    } else if ALL_KEYS.contains(&command) {
        Some((1, -1, 1))
    } else if KEYS_THEN_TIMEOUT.contains(&command) {
        Some((1, -2, 1))
    } else if TWO_KEYS.contains(&command) {
        Some((1, 2, 1))
    } else if command == "MSET" || command == "MSETNX" {
        Some((1, -1, 2))
    } else {
        None
    }
}

/// The command's name and its `db.query.text`: every argument `?`, except the subcommand of
/// container commands and, when `show_keys`, the keys.
fn describe_command(cmd: &Cmd, show_keys: bool) -> (String, String) {
    let args: Vec<Arg<&[u8]>> = cmd.args_iter().collect();
    let word = |i: usize| match args.get(i) {
        Some(Arg::Simple(bytes)) if bytes.len() <= 64 => {
            Some(String::from_utf8_lossy(bytes).to_ascii_uppercase())
        }
        _ => None,
    };
    let Some(name) = word(0) else {
        return ("_OTHER".to_owned(), String::new());
    };
    let keys = if show_keys {
        key_positions(&name)
    } else {
        None
    };
    let subcommand = CONTAINER_COMMANDS
        .contains(&name.as_str())
        .then(|| word(1))
        .flatten();
    let first_argument = if subcommand.is_some() { 2 } else { 1 };
    let operation = match subcommand {
        Some(sub) => format!("{name} {sub}"),
        None => name,
    };
    let is_key = |i: usize| {
        keys.is_some_and(|(first, last, step)| {
            let last = if last < 0 {
                args.len() as isize + last
            } else {
                last
            };
            i >= first && (i as isize) <= last && (i - first) % step == 0
        })
    };
    let key = |i: usize| match args.get(i) {
        Some(Arg::Simple(bytes)) if is_key(i) => Some(*bytes),
        _ => None,
    };
    // As long as the text will be (a key that is not UTF-8 grows it): the span keeps the text
    // as a boxed `str`, and spare capacity would be one more reallocation on the caller's thread.
    let length = operation.len()
        + (first_argument..args.len())
            .map(|i| 1 + key(i).map_or(1, <[u8]>::len))
            .sum::<usize>();
    let mut text = String::with_capacity(length);
    text.push_str(&operation);
    for i in first_argument..args.len() {
        text.push(' ');
        match key(i) {
            Some(bytes) => text.push_str(&String::from_utf8_lossy(bytes)),
            None => text.push('?'),
        }
    }
    (operation, text)
}

fn error_outcome(error: &RedisError) -> Outcome {
    match error.code() {
        Some(code) => Outcome::Failed {
            error_type: code.to_owned(),
            status_code: Some(code.to_owned()),
        },
        None if error.is_timeout() => Outcome::Failed {
            error_type: "timeout".to_owned(),
            status_code: None,
        },
        None => Outcome::Failed {
            error_type: format!("{:?}", error.kind()),
            status_code: None,
        },
    }
}

/// An error reply inside an `Ok` value (the multiplexed connection passes them up that way).
fn value_outcome(value: &Value) -> Outcome {
    match value {
        Value::ServerError(e) => {
            let code = e.code().to_owned();
            Outcome::Failed {
                error_type: code.clone(),
                status_code: Some(code),
            }
        }
        _ => Outcome::Ok,
    }
}

/// Where the commands go, and what the spans show.
#[derive(Clone, Debug)]
struct Target {
    /// Shared, so no call copies it.
    address: Arc<str>,
    port: Option<u16>,
    show_keys: bool,
    max_query_text_len: usize,
}

impl Target {
    fn of(info: &ConnectionInfo) -> Self {
        let (address, port) = match info.addr() {
            ConnectionAddr::Tcp(host, port) => (host.as_str().into(), Some(*port)),
            ConnectionAddr::TcpTls { host, port, .. } => (host.as_str().into(), Some(*port)),
            ConnectionAddr::Unix(path) => (path.display().to_string().into(), None),
            _ => ("".into(), None),
        };
        Target {
            address,
            port,
            show_keys: false,
            max_query_text_len: db::DEFAULT_MAX_QUERY_TEXT_LEN,
        }
    }

    /// Every value shared between the span's and the metric's attributes is shared, not
    /// copied: an exported span's strings are freed on the export thread, and each allocation
    /// made here is one more the caller's thread contends for with it.
    fn start(&self, operation: &str, text: String, database: i64, batch: Option<usize>) -> DbCall {
        let operation = db::interned(operation);
        let mut attributes = Vec::with_capacity(5);
        attributes.extend([
            KeyValue::new("db.system.name", "redis"),
            KeyValue::new("db.operation.name", operation.clone()),
            KeyValue::new("db.namespace", database_index(database)),
            KeyValue::new("server.address", self.address.clone()),
        ]);
        if let Some(port) = self.port {
            attributes.push(KeyValue::new("server.port", i64::from(port)));
        }
        let mut span_attributes = Vec::with_capacity(attributes.len() + 2);
        span_attributes.extend_from_slice(&attributes);
        let text = match db::truncate_query_text(&text, self.max_query_text_len) {
            std::borrow::Cow::Borrowed(_) => text,
            std::borrow::Cow::Owned(cut) => cut,
        };
        span_attributes.push(KeyValue::new("db.query.text", text));
        if let Some(batch) = batch {
            span_attributes.push(KeyValue::new(
                "db.operation.batch.size",
                i64::try_from(batch).unwrap_or(i64::MAX),
            ));
        }
        DbCall::start(operation, span_attributes, attributes, false)
    }
}

/// `db.namespace` of a database index; the sixteen a default server has need no allocation.
fn database_index(database: i64) -> opentelemetry::Value {
    const INDEXES: [&str; 16] = [
        "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15",
    ];
    match usize::try_from(database).ok().and_then(|i| INDEXES.get(i)) {
        Some(index) => (*index).into(),
        None => database.to_string().into(),
    }
}

/// A Redis connection whose commands are spans: wraps a `MultiplexedConnection`, a
/// `ConnectionManager` or any other async `ConnectionLike`, and is one itself, so
/// `AsyncCommands`, `query_async` and pipelines work on it unchanged. Clones share the
/// connection when the wrapped one does.
#[derive(Clone)]
pub struct TracedConnection<C> {
    inner: C,
    target: Arc<Target>,
}

impl<C> fmt::Debug for TracedConnection<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TracedConnection")
            .field("server", &self.target.address)
            .field("port", &self.target.port)
            .field("show_keys", &self.target.show_keys)
            .finish_non_exhaustive()
    }
}

impl<C> TracedConnection<C> {
    /// Wraps `connection`, made from `client`, whose connection info gives `server.address`
    /// and `server.port`.
    pub fn new(connection: C, client: &Client) -> Self {
        Self::with_connection_info(connection, client.get_connection_info())
    }

    /// Wraps `connection`, with `server.address` and `server.port` from `info`.
    pub fn with_connection_info(connection: C, info: &ConnectionInfo) -> Self {
        TracedConnection {
            inner: connection,
            target: Arc::new(Target::of(info)),
        }
    }

    /// Shows key names in `db.query.text` (`GET user:42` instead of `GET ?`) for the commands
    /// whose key positions are known. Off by default: keys can carry personal data.
    #[must_use]
    pub fn show_keys(mut self, show: bool) -> Self {
        Arc::make_mut(&mut self.target).show_keys = show;
        self
    }

    /// Cuts `db.query.text` to at most `bytes` (default [`DEFAULT_MAX_QUERY_TEXT_LEN`]).
    ///
    /// [`DEFAULT_MAX_QUERY_TEXT_LEN`]: crate::instrument::DEFAULT_MAX_QUERY_TEXT_LEN
    #[must_use]
    pub fn max_query_text_len(mut self, bytes: usize) -> Self {
        Arc::make_mut(&mut self.target).max_query_text_len = bytes;
        self
    }

    /// The wrapped connection; commands sent through it directly are not traced.
    pub fn inner(&mut self) -> &mut C {
        &mut self.inner
    }

    /// Unwraps the connection.
    pub fn into_inner(self) -> C {
        self.inner
    }
}

impl<C: ConnectionLike + Send> ConnectionLike for TracedConnection<C> {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        let (operation, text) = describe_command(cmd, self.target.show_keys);
        let mut call = self
            .target
            .start(&operation, text, self.inner.get_db(), None);
        let span = call.span.scope();
        let inner = span.in_scope(|| self.inner.req_packed_command(cmd));
        Box::pin(
            async move {
                let result = inner.await;
                call.finish(match &result {
                    Ok(value) => value_outcome(value),
                    Err(e) => error_outcome(e),
                });
                result
            }
            .instrument(span),
        )
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        let show_keys = self.target.show_keys;
        let commands = pipeline.cmd_iter().count();
        let mut text = String::new();
        for (i, cmd) in pipeline.cmd_iter().enumerate() {
            // The text is cut anyway; don't build more of it than can be kept.
            if text.len() > self.target.max_query_text_len {
                break;
            }
            if i > 0 {
                text.push_str("; ");
            }
            text.push_str(&describe_command(cmd, show_keys).1);
        }
        let operation = if pipeline.is_transaction() {
            "MULTI"
        } else {
            "PIPELINE"
        };
        let batch = (commands != 1).then_some(commands);
        let mut call = self
            .target
            .start(operation, text, self.inner.get_db(), batch);
        let span = call.span.scope();
        let inner = span.in_scope(|| self.inner.req_packed_commands(pipeline, offset, count));
        Box::pin(
            async move {
                let result = inner.await;
                call.finish(match &result {
                    Ok(values) => values
                        .iter()
                        .map(value_outcome)
                        .find(|o| !matches!(o, Outcome::Ok))
                        .unwrap_or(Outcome::Ok),
                    Err(e) => error_outcome(e),
                });
                result
            }
            .instrument(span),
        )
    }

    fn get_db(&self) -> i64 {
        self.inner.get_db()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(cmd: &Cmd, show_keys: bool) -> (String, String) {
        describe_command(cmd, show_keys)
    }

    #[test]
    fn arguments_are_placeholders() {
        let mut set = ::redis::cmd("set");
        set.arg("user:42").arg("s3cr3t-value").arg("EX").arg(30);
        assert_eq!(text(&set, false), ("SET".into(), "SET ? ? ? ?".into()));
        assert_eq!(text(&set, true), ("SET".into(), "SET user:42 ? ? ?".into()));
    }

    #[test]
    fn key_positions_follow_the_command() {
        let mut brpop = ::redis::cmd("BRPOP");
        brpop.arg("q1").arg("q2").arg(5);
        assert_eq!(text(&brpop, true).1, "BRPOP q1 q2 ?");
        let mut mset = ::redis::cmd("MSET");
        mset.arg("k1").arg("v1").arg("k2").arg("v2");
        assert_eq!(text(&mset, true).1, "MSET k1 ? k2 ?");
        let mut del = ::redis::cmd("DEL");
        del.arg("a").arg("b");
        assert_eq!(text(&del, true).1, "DEL a b");
        let mut zrange = ::redis::cmd("ZRANGEBYSCORE");
        zrange.arg("board").arg(0).arg(10);
        assert_eq!(text(&zrange, true).1, "ZRANGEBYSCORE board ? ?");
        // Unknown key positions: nothing shown even when keys are on.
        let mut eval = ::redis::cmd("EVAL");
        eval.arg("return 1").arg(1).arg("k");
        assert_eq!(text(&eval, true).1, "EVAL ? ? ?");
    }

    #[test]
    fn container_commands_keep_their_subcommand() {
        let mut config = ::redis::cmd("CONFIG");
        config.arg("get").arg("maxmemory");
        assert_eq!(
            text(&config, false),
            ("CONFIG GET".into(), "CONFIG GET ?".into())
        );
    }

    #[test]
    fn empty_and_odd_commands() {
        assert_eq!(text(&Cmd::new(), false), ("_OTHER".into(), String::new()));
        let mut odd = ::redis::cmd("x");
        odd.arg(vec![0xffu8, 0xfe]);
        assert_eq!(text(&odd, true), ("X".into(), "X ?".into()));
    }
}
