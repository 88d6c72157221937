//! What the database integrations share: the client-call span's outcome, the
//! `db.client.operation.duration` histogram, statement truncation and a light SQL reading.

use std::borrow::Cow;
use std::sync::OnceLock;
use std::time::Instant;

use opentelemetry::KeyValue;
use opentelemetry::metrics::Histogram;
use tracing::Span;

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

/// One database call: its span (already carrying the request-side attributes), the metric
/// attributes, and the start time. Ends exactly once, through `finish` or on drop.
pub(crate) struct DbCall {
    pub(crate) span: Span,
    started: Instant,
    attributes: Vec<KeyValue>,
    finished: bool,
}

impl DbCall {
    pub(crate) fn new(span: Span, attributes: Vec<KeyValue>) -> Self {
        DbCall {
            span,
            started: Instant::now(),
            attributes,
            finished: false,
        }
    }

    /// Rows the call returned (`db.response.returned_rows`), when it returns rows.
    pub(crate) fn record_returned_rows(&self, rows: u64) {
        self.span.record(
            "db.response.returned_rows",
            i64::try_from(rows).unwrap_or(i64::MAX),
        );
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
                self.span.record("error.type", error_type.as_str());
                self.span.record("otel.status_code", "ERROR");
                self.span
                    .record("otel.status_description", error_type.as_str());
                if let Some(code) = status_code {
                    self.span.record("db.response.status_code", code.as_str());
                    attributes.push(KeyValue::new("db.response.status_code", code));
                }
                attributes.push(KeyValue::new("error.type", error_type));
            }
            Outcome::Cancelled => {
                self.span.record("error.type", "cancelled");
                self.span.record("otel.status_code", "ERROR");
                self.span
                    .record("otel.status_description", "cancelled before completion");
                attributes.push(KeyValue::new("error.type", "cancelled"));
            }
        }
        operation_duration().record(self.started.elapsed().as_secs_f64(), &attributes);
    }
}

impl Drop for DbCall {
    fn drop(&mut self) {
        self.finish(Outcome::Cancelled);
    }
}

/// A SQL statement's operation (`SELECT`, `INSERT`, …) and, when the statement names exactly
/// one table, that table. A reading for span names, not a parser: when unsure it says less.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct SqlSummary<'a> {
    pub(crate) operation: Option<String>,
    pub(crate) collection: Option<&'a str>,
}

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

/// The statement's first keyword and its single table, if it has exactly one.
pub(crate) fn summarize_sql(sql: &str) -> SqlSummary<'_> {
    let mut tokens = sql_tokens(sql).peekable();
    let operation = tokens
        .peek()
        .filter(|t| t.len() <= 32 && t.bytes().all(|b| b.is_ascii_alphabetic()))
        .map(|t| t.to_ascii_uppercase());
    let mut tables: Vec<&str> = Vec::new();
    let mut previous: Option<&str> = None;
    let mut after_table_keyword = false;
    for token in tokens {
        if after_table_keyword {
            // `TABLE IF NOT EXISTS x`, `FROM ONLY x`: the table is further on.
            if ["IF", "NOT", "EXISTS", "ONLY"]
                .iter()
                .any(|k| token.eq_ignore_ascii_case(k))
            {
                previous = Some(token);
                continue;
            }
            after_table_keyword = false;
            let identifier =
                token.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_' || c == '"');
            if identifier && !is_keyword(token) && !tables.contains(&token) {
                tables.push(token);
            }
        }
        let table_follows = token.eq_ignore_ascii_case("FROM")
            || token.eq_ignore_ascii_case("JOIN")
            || token.eq_ignore_ascii_case("INTO")
            || (token.eq_ignore_ascii_case("UPDATE") && previous.is_none())
            || (token.eq_ignore_ascii_case("TABLE") && previous.is_some());
        if table_follows {
            after_table_keyword = true;
        }
        // `FROM a, b` names two tables; a comma right after a table name means more follow.
        if token == "," && previous.is_some_and(|p| tables.last() == Some(&p)) {
            tables.push(",");
        }
        previous = Some(token);
    }
    let collection = match tables.as_slice() {
        [one] => Some(*one),
        _ => None,
    };
    SqlSummary {
        operation,
        collection,
    }
}

/// Words that can follow `FROM` or `JOIN` without being a table.
fn is_keyword(token: &str) -> bool {
    const KEYWORDS: [&str; 4] = ["SELECT", "LATERAL", "UNNEST", "GENERATE_SERIES"];
    KEYWORDS.iter().any(|k| token.eq_ignore_ascii_case(k))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(sql: &str) -> (Option<String>, Option<&str>) {
        let s = summarize_sql(sql);
        (s.operation, s.collection)
    }

    #[test]
    fn operations_and_single_tables() {
        assert_eq!(
            summary("SELECT id, name FROM users WHERE id = $1"),
            (Some("SELECT".into()), Some("users"))
        );
        assert_eq!(
            summary("  insert into orders (customer, amount) values ($1, $2) returning id"),
            (Some("INSERT".into()), Some("orders"))
        );
        assert_eq!(
            summary("UPDATE public.orders SET amount = $1"),
            (Some("UPDATE".into()), Some("public.orders"))
        );
        assert_eq!(
            summary("DELETE FROM \"Order Items\" WHERE id = $1"),
            (Some("DELETE".into()), Some("\"Order Items\""))
        );
        assert_eq!(
            summary("-- lookup\n/* by id */ select * from t where s = 'FROM x'"),
            (Some("SELECT".into()), Some("t"))
        );
        assert_eq!(
            summary("CREATE TABLE IF NOT EXISTS orders (id bigserial)"),
            (Some("CREATE".into()), Some("orders"))
        );
    }

    #[test]
    fn says_less_when_unsure() {
        // Two tables: no collection.
        assert_eq!(
            summary("SELECT * FROM a JOIN b ON a.id = b.id"),
            (Some("SELECT".into()), None)
        );
        assert_eq!(summary("SELECT * FROM a, b"), (Some("SELECT".into()), None));
        // No table at all.
        assert_eq!(
            summary("SELECT $1::text::int4"),
            (Some("SELECT".into()), None)
        );
        assert_eq!(summary("SELECT 1"), (Some("SELECT".into()), None));
        assert_eq!(summary(""), (None, None));
        assert_eq!(summary("(SELECT 1)"), (None, None));
        assert_eq!(summary("'unterminated"), (None, None));
        assert_eq!(summary("é FROM ü"), (None, None));
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
