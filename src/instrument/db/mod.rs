//! What the database integrations share: the client-call span's outcome, the
//! `db.client.operation.duration` histogram, statement truncation and a light SQL reading.

#[cfg(feature = "redis")]
pub mod redis;
#[cfg(feature = "sqlx")]
pub mod sqlx;

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::{OnceLock, RwLock};
use std::time::{Duration, SystemTime};

use opentelemetry::KeyValue;
use opentelemetry::metrics::Histogram;
use opentelemetry::trace::{SpanKind, Status, TraceContextExt as _, Tracer as _};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::instrument::TARGET;

/// The longest `db.query.text` recorded by default, in bytes; longer statements are cut at a
/// character boundary and end in `…`. The statement sent to the server is never changed.
pub const DEFAULT_MAX_QUERY_TEXT_LEN: usize = 2048;

/// The bucket boundaries the database metric conventions recommend (seconds).
const DB_DURATION_BOUNDARIES: [f64; 9] = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0];

fn operation_duration() -> &'static Histogram<f64> {
    static HISTOGRAM: OnceLock<Histogram<f64>> = OnceLock::new();
    HISTOGRAM.get_or_init(|| {
        opentelemetry::global::meter("service-telemetry")
            .f64_histogram("db.client.operation.duration")
            .with_unit("s")
            .with_description("Duration of database client operations.")
            .with_boundaries(DB_DURATION_BOUNDARIES.to_vec())
            .build()
    })
}

/// How many distinct operation names and query summaries are kept for the process's life.
const MAX_INTERNED_NAMES: usize = 512;

/// `name` as a string that lives as long as the process, when it is one of the first
/// [`MAX_INTERNED_NAMES`] names seen (and short): the names of commands and statements repeat,
/// and a span's owned strings are freed on the export thread, where every free contends with
/// the caller's allocations. Past the cap (or if the table is poisoned) the name is copied.
pub(crate) fn interned(name: &str) -> Cow<'static, str> {
    static NAMES: OnceLock<RwLock<HashSet<&'static str>>> = OnceLock::new();
    let names = NAMES.get_or_init(RwLock::default);
    if let Some(known) = names.read().ok().and_then(|set| set.get(name).copied()) {
        return Cow::Borrowed(known);
    }
    let Ok(mut set) = names.write() else {
        return Cow::Owned(name.to_owned());
    };
    if let Some(known) = set.get(name) {
        return Cow::Borrowed(known);
    }
    if set.len() >= MAX_INTERNED_NAMES || name.len() > MAX_SUMMARY {
        return Cow::Owned(name.to_owned());
    }
    let kept: &'static str = Box::leak(name.to_owned().into_boxed_str());
    set.insert(kept);
    Cow::Borrowed(kept)
}

/// `text` cut to at most `limit` bytes (plus the `…` marker) at a character boundary.
pub(crate) fn truncate_query_text(text: &str, limit: usize) -> Cow<'_, str> {
    if text.len() <= limit {
        return Cow::Borrowed(text);
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}…", &text[..end]))
}

/// How a call ended, in the low-cardinality terms the conventions want. Error messages are
/// left out on purpose: servers echo parameter values into them (PostgreSQL's `invalid input
/// syntax for type integer: "…"`, Redis's `unknown command …, with args beginning with: …`).
pub(crate) enum Outcome {
    Ok,
    Failed {
        /// `error.type`: the server's code (SQLSTATE, Redis error prefix) or the client's kind.
        error_type: String,
        /// `db.response.status_code`, when the server answered with one.
        status_code: Option<String>,
    },
    /// The caller dropped the future before it finished (a timeout around it, say).
    Cancelled,
}

/// The `CLIENT` span of one database call, a child of the current span.
///
/// Under this crate's subscriber it is built with the OpenTelemetry API alone: no caller holds
/// it and none of the caller's code runs inside it, so it skips the `tracing` registry, the
/// JSON layer and tracing-opentelemetry's per-span bookkeeping, which were most of a call's
/// cost. Under any other subscriber (tracing-opentelemetry installed by hand) it is a `tracing`
/// span, so whatever exports that subscriber's spans exports it too.
pub(crate) enum DbSpan {
    /// Built by this crate's tracer; the context holds the span, not sampled included.
    Direct(opentelemetry::Context),
    /// A `tracing` span whose OpenTelemetry side carries the attributes.
    Tracing(Span),
    /// The level filter turns the crate's instrumentation spans off.
    Disabled,
}

impl DbSpan {
    /// Starts `name` under the current span with `attributes`, at the level the crate's other
    /// instrumentation spans have, so the same `LOG_LEVEL` directives turn it off. A direct
    /// span starts at `started`.
    pub(crate) fn start(
        name: Cow<'static, str>,
        attributes: Vec<KeyValue>,
        started: SystemTime,
    ) -> DbSpan {
        let enabled = tracing::enabled!(
            kind: tracing::metadata::Kind::SPAN,
            target: TARGET,
            tracing::Level::INFO
        );
        if !enabled {
            return DbSpan::Disabled;
        }
        // Under the crate's subscriber, tracing-opentelemetry makes each entered span's context
        // current (and a skipped span's kept one is made current too), so the current context
        // is the parent a `tracing` span would have had.
        let mut attributes = Some(attributes);
        let mut name = Some(name);
        let direct = crate::propagation::with_current_tracer(|tracer| {
            let parent = opentelemetry::Context::current();
            let span = tracer
                .span_builder(name.take().unwrap_or_default())
                .with_kind(SpanKind::Client)
                .with_start_time(started)
                .with_attributes(attributes.take().unwrap_or_default())
                .start_with_context(tracer, &parent);
            span.into_context(&parent)
        });
        if let Some(cx) = direct {
            return DbSpan::Direct(cx);
        }
        let name = name.unwrap_or_default();
        let span = tracing::info_span!(
            target: TARGET,
            "database call",
            otel.name = &*name,
            otel.kind = "client"
        );
        for attribute in attributes.unwrap_or_default() {
            span.set_attribute(attribute.key, attribute.value);
        }
        DbSpan::Tracing(span)
    }

    /// The span to enter while the call's own code runs: the `tracing` one, or none.
    pub(crate) fn scope(&self) -> Span {
        match self {
            DbSpan::Tracing(span) => span.clone(),
            DbSpan::Direct(_) | DbSpan::Disabled => Span::none(),
        }
    }

    fn set_attribute(&self, attribute: KeyValue) {
        match self {
            DbSpan::Direct(cx) => cx.span().set_attribute(attribute),
            DbSpan::Tracing(span) => span.set_attribute(attribute.key, attribute.value),
            DbSpan::Disabled => {}
        }
    }

    fn set_error(&self, description: impl Into<Cow<'static, str>>) {
        self.set_status(Status::error(description));
    }

    fn set_status(&self, status: Status) {
        match self {
            DbSpan::Direct(cx) => cx.span().set_status(status),
            DbSpan::Tracing(span) => span.set_status(status),
            DbSpan::Disabled => {}
        }
    }

    /// Ends a direct span at `ended`; a `tracing` span ends when its last handle is dropped.
    fn end(&self, ended: SystemTime) {
        if let DbSpan::Direct(cx) = self {
            cx.span().end_with_timestamp(ended);
        }
    }
}

/// One database call: its span (already carrying the request-side attributes), the metric
/// attributes, and the start time. Ends exactly once, through `finish` or on drop.
///
/// The span and the metric read one clock, the SDK's wall clock, once at each end, so a
/// call's `db.client.operation.duration` is its span's duration exactly.
pub(crate) struct DbCall {
    pub(crate) span: DbSpan,
    started: SystemTime,
    attributes: Vec<KeyValue>,
    finished: bool,
    returned_rows: bool,
}

impl DbCall {
    /// Starts the call's span now; `returned_rows`: whether `db.response.returned_rows`
    /// (opt-in) is recorded.
    pub(crate) fn start(
        name: Cow<'static, str>,
        span_attributes: Vec<KeyValue>,
        attributes: Vec<KeyValue>,
        returned_rows: bool,
    ) -> Self {
        let started = SystemTime::now();
        DbCall {
            span: DbSpan::start(name, span_attributes, started),
            started,
            attributes,
            finished: false,
            returned_rows,
        }
    }

    /// Rows the call returned (`db.response.returned_rows`), when it returns rows and the
    /// attribute is switched on.
    pub(crate) fn record_returned_rows(&self, rows: u64) {
        if !self.returned_rows {
            return;
        }
        self.span.set_attribute(KeyValue::new(
            "db.response.returned_rows",
            i64::try_from(rows).unwrap_or(i64::MAX),
        ));
    }

    pub(crate) fn is_finished(&self) -> bool {
        self.finished
    }

    pub(crate) fn finish(&mut self, outcome: Outcome) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        let mut attributes = std::mem::take(&mut self.attributes);
        match outcome {
            Outcome::Ok => {}
            Outcome::Failed {
                error_type,
                status_code,
            } => {
                let error_type = KeyValue::new("error.type", error_type);
                self.span.set_attribute(error_type.clone());
                self.span.set_error(error_type.value.to_string());
                if let Some(code) = status_code {
                    let code = KeyValue::new("db.response.status_code", code);
                    self.span.set_attribute(code.clone());
                    attributes.push(code);
                }
                attributes.push(error_type);
            }
            Outcome::Cancelled => {
                let error_type = KeyValue::new("error.type", "cancelled");
                self.span.set_attribute(error_type.clone());
                self.span.set_error("cancelled before completion");
                attributes.push(error_type);
            }
        }
        let ended = SystemTime::now();
        self.span.end(ended);
        // A wall clock stepped back during the call gives zero rather than nothing.
        let duration = ended.duration_since(self.started).unwrap_or(Duration::ZERO);
        operation_duration().record(duration.as_secs_f64(), &attributes);
    }
}

impl Drop for DbCall {
    fn drop(&mut self) {
        self.finish(Outcome::Cancelled);
    }
}

/// A SQL statement's operation (`SELECT`, `INSERT`, …) and, when the statement names exactly
/// one table, that table. A reading for span names, not a parser: when unsure it says less.
/// Splits SQL into words and punctuation, skipping comments and string literals.
fn sql_tokens(sql: &str) -> impl Iterator<Item = &str> {
    let bytes = sql.as_bytes();
    let mut at = 0;
    std::iter::from_fn(move || {
        loop {
            let rest = bytes.get(at..)?;
            let first = *rest.first()?;
            if first.is_ascii_whitespace() {
                at += 1;
            } else if rest.starts_with(b"--") {
                at += rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
            } else if rest.starts_with(b"/*") {
                at += rest
                    .windows(2)
                    .position(|w| w == b"*/")
                    .map_or(rest.len(), |p| p + 2);
            } else if first == b'\'' {
                // A literal, '' escapes included: skip to the quote that closes it.
                let mut i = 1;
                while i < rest.len() {
                    if rest[i] == b'\'' {
                        if rest.get(i + 1) == Some(&b'\'') {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
                at += (i + 1).min(rest.len());
            } else if first.is_ascii_alphanumeric() || first == b'_' || first == b'"' {
                let start = at;
                let mut i = 0;
                let mut quoted = false;
                while i < rest.len() {
                    let b = rest[i];
                    if b == b'"' {
                        quoted = !quoted;
                    } else if !(quoted
                        || b.is_ascii_alphanumeric()
                        || b == b'_'
                        || b == b'.'
                        || b == b'$')
                    {
                        break;
                    }
                    i += 1;
                }
                at += i;
                // Identifiers are ASCII-bounded here, so the slice is on char boundaries.
                return sql.get(start..at);
            } else {
                let len = sql[at..].chars().next().map_or(1, char::len_utf8);
                let start = at;
                at += len;
                return sql.get(start..at);
            }
        }
    })
}

/// Longest `db.query.summary` (database-spans.md: "SHOULD truncate the summary to 255
/// characters").
const MAX_SUMMARY: usize = 255;

/// `db.query.summary` generated from the statement, as the conventions describe for
/// instrumentation that parses queries (database-spans.md, `db.query.summary`): each operation
/// followed by the tables it names, in order, `{operation} {target} {operation} {target}`
/// (`SELECT orders`, `INSERT shipping_details SELECT orders`). The operations are the
/// statement's first keyword and every later `SELECT` (a subquery, `INSERT ... SELECT`,
/// `UNION SELECT`); `None` when the statement does not start with a keyword. No literal or
/// parameter ever reaches it.
pub(crate) fn query_summary(sql: &str) -> Option<String> {
    let mut parts: Vec<String> = Vec::new();
    let mut previous: Option<&str> = None;
    let mut after_table_keyword = false;
    for token in sql_tokens(sql) {
        let upper = token.to_ascii_uppercase();
        let first = previous.is_none();
        if first && !(upper.len() <= 32 && upper.bytes().all(|b| b.is_ascii_alphabetic())) {
            return None;
        }
        if after_table_keyword {
            // `TABLE IF NOT EXISTS x`, `FROM ONLY x`: the table is further on.
            if ["IF", "NOT", "EXISTS", "ONLY"].contains(&upper.as_str()) {
                previous = Some(token);
                continue;
            }
            after_table_keyword = false;
            let identifier =
                token.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_' || c == '"');
            if identifier && !is_keyword(token) && parts.last().is_none_or(|p| p != token) {
                parts.push(token.to_owned());
            }
        }
        if first || upper == "SELECT" {
            parts.push(upper.clone());
        }
        let table_follows = upper == "FROM"
            || upper == "JOIN"
            || upper == "INTO"
            || (upper == "UPDATE" && first)
            || (upper == "TABLE" && !first);
        if table_follows {
            after_table_keyword = true;
        }
        previous = Some(token);
    }
    let mut summary = parts.join(" ");
    if summary.len() > MAX_SUMMARY {
        let mut cut = MAX_SUMMARY;
        while !summary.is_char_boundary(cut) {
            cut -= 1;
        }
        summary.truncate(cut);
    }
    (!summary.is_empty()).then_some(summary)
}

/// Words that can follow `FROM` or `JOIN` without being a table.
fn is_keyword(token: &str) -> bool {
    const KEYWORDS: [&str; 4] = ["SELECT", "LATERAL", "UNNEST", "GENERATE_SERIES"];
    KEYWORDS.iter().any(|k| token.eq_ignore_ascii_case(k))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_interned_up_to_the_cap_and_copied_after() {
        let first = interned("GET interned-test");
        let again = interned("GET interned-test");
        match (&first, &again) {
            (Cow::Borrowed(a), Cow::Borrowed(b)) => assert!(std::ptr::eq(*a, *b)),
            other => panic!("not interned: {other:?}"),
        }
        assert!(matches!(
            interned(&"x".repeat(MAX_SUMMARY + 1)),
            Cow::Owned(_)
        ));
        for i in 0..MAX_INTERNED_NAMES {
            let _ = interned(&format!("filler {i}"));
        }
        let late = interned("a name past the cap");
        assert_eq!(late, "a name past the cap");
        assert!(matches!(late, Cow::Owned(_)), "the table stays bounded");
        assert!(matches!(interned("GET interned-test"), Cow::Borrowed(_)));
    }

    fn summary(sql: &str) -> Option<String> {
        query_summary(sql)
    }

    #[test]
    fn summaries_name_each_operation_and_its_tables() {
        let cases = [
            ("SELECT id, name FROM users WHERE id = $1", "SELECT users"),
            (
                "  insert into orders (customer, amount) values ($1, $2) returning id",
                "INSERT orders",
            ),
            (
                "UPDATE public.orders SET amount = $1",
                "UPDATE public.orders",
            ),
            (
                "DELETE FROM \"Order Items\" WHERE id = $1",
                "DELETE \"Order Items\"",
            ),
            (
                "-- lookup\n/* by id */ select * from t where s = 'FROM x'",
                "SELECT t",
            ),
            (
                "CREATE TABLE IF NOT EXISTS orders (id bigserial)",
                "CREATE orders",
            ),
            (
                "INSERT INTO shipping_details SELECT * FROM orders",
                "INSERT shipping_details SELECT orders",
            ),
            ("SELECT * FROM a JOIN b ON a.id = b.id", "SELECT a b"),
            (
                "SELECT * FROM a WHERE id IN (SELECT id FROM b)",
                "SELECT a SELECT b",
            ),
            ("SELECT 1", "SELECT"),
            ("SELECT $1::text::int4", "SELECT"),
            ("BEGIN", "BEGIN"),
            ("SAVEPOINT _sqlx_savepoint_1", "SAVEPOINT"),
        ];
        for (sql, expected) in cases {
            assert_eq!(summary(sql).as_deref(), Some(expected), "{sql}");
        }
    }

    #[test]
    fn no_summary_when_the_statement_starts_with_no_keyword() {
        assert_eq!(summary(""), None);
        assert_eq!(summary("(SELECT 1)"), None);
        assert_eq!(summary("'unterminated"), None);
        assert_eq!(summary("é FROM ü"), None);
        assert_eq!(summary("LISTEN channel").as_deref(), Some("LISTEN"));
        let long = format!("SELECT * FROM {}", "t".repeat(400));
        assert_eq!(summary(&long).map(|s| s.len()), Some(255));
    }

    #[test]
    fn truncation_is_on_a_char_boundary() {
        assert_eq!(truncate_query_text("SELECT 1", 100), "SELECT 1");
        assert_eq!(truncate_query_text("SELECT 1", 6), "SELECT…");
        // 'é' is two bytes; a cut inside it moves back.
        assert_eq!(truncate_query_text("aé", 2), "a…");
        assert_eq!(truncate_query_text("abc", 0), "…");
    }
}
