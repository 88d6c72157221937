//! `LOG_FORMAT=pretty`: each JSON line re-rendered for a person reading a terminal.
//!
//! The JSON layer stays the one formatter, so both formats carry the same fields; this writer
//! sits between it and the destination. Parsing each line again costs a few microseconds,
//! which a laptop can spend; the JSON path pays nothing for it.

use std::sync::Arc;

use serde_json::Value;

use super::writer::LogWriter;

/// Keys shown in their own place, not as `key=value` fields.
const PLACED: &[&str] = &[
    "timestamp",
    "level",
    "message",
    "target",
    "trace_id",
    "span_id",
    "span",
    "spans",
];

/// Re-renders JSON lines as `07:53:47.521  INFO target: message key=value trace=4bf92f35`.
pub(crate) struct PrettyWriter {
    inner: Arc<dyn LogWriter>,
    colour: bool,
}

impl PrettyWriter {
    pub(crate) fn new(inner: Arc<dyn LogWriter>, colour: bool) -> Self {
        PrettyWriter { inner, colour }
    }
}

impl LogWriter for PrettyWriter {
    fn write_line(&self, line: &[u8]) {
        match render(line, self.colour) {
            Some(pretty) => self.inner.write_line(pretty.as_bytes()),
            None => self.inner.write_line(line),
        }
    }

    fn flush(&self) {
        self.inner.flush();
    }

    fn dropped_lines(&self) -> u64 {
        self.inner.dropped_lines()
    }

    fn close(&self) {
        self.inner.close();
    }
}

fn paint(out: &mut String, colour: bool, code: &str, text: &str) {
    if colour {
        out.push_str("\x1b[");
        out.push_str(code);
        out.push('m');
        out.push_str(text);
        out.push_str("\x1b[0m");
    } else {
        out.push_str(text);
    }
}

/// `None` when the line is not a JSON object (written as it is).
pub(crate) fn render(line: &[u8], colour: bool) -> Option<String> {
    let Value::Object(fields) = serde_json::from_slice::<Value>(line).ok()? else {
        return None;
    };
    let text = |key: &str| fields.get(key).and_then(Value::as_str).unwrap_or_default();
    let mut out = String::with_capacity(line.len());
    // `2026-12-02T07:53:47.521015Z` -> `07:53:47.521`: the date and the zone rarely matter here.
    let timestamp = text("timestamp");
    let time = timestamp
        .split_once('T')
        .map_or(timestamp, |(_, t)| t.get(..12).unwrap_or(t));
    paint(&mut out, colour, "2", time);
    let level = text("level");
    let (label, code) = match level {
        "error" => ("ERROR", "31"),
        "warn" => (" WARN", "33"),
        "info" => (" INFO", "32"),
        "debug" => ("DEBUG", "34"),
        "trace" => ("TRACE", "35"),
        _ => ("  LOG", "0"),
    };
    out.push(' ');
    paint(&mut out, colour, code, label);
    out.push(' ');
    paint(&mut out, colour, "2", &format!("{}:", text("target")));
    out.push(' ');
    out.push_str(text("message"));
    for (key, value) in &fields {
        if PLACED.contains(&key.as_str()) {
            continue;
        }
        out.push(' ');
        paint(&mut out, colour, "3", key);
        out.push('=');
        push_value(&mut out, value);
    }
    if let Some(span) = fields
        .get("span")
        .and_then(|s| s.get("name"))
        .and_then(Value::as_str)
    {
        out.push(' ');
        paint(&mut out, colour, "2", &format!("in {span}"));
    }
    if let Some(trace) = fields.get("trace_id").and_then(Value::as_str) {
        out.push(' ');
        paint(
            &mut out,
            colour,
            "2",
            &format!("trace={}", trace.get(..8).unwrap_or(trace)),
        );
    }
    out.push('\n');
    Some(out)
}

/// Strings bare unless they hold a space, a quote or nothing; everything else as JSON.
fn push_value(out: &mut String, value: &Value) {
    match value {
        Value::String(s) if !s.is_empty() && !s.contains([' ', '"', '=', '\n']) => out.push_str(s),
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = r#"{"timestamp":"2026-12-02T07:53:47.521015Z","level":"warn","message":"readiness check \"database\" failing","target":"service_telemetry::health","check":"database","reason":"connection refused","attempts":3,"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7","span":{"name":"probe"},"spans":[{"name":"probe"}]}"#;

    #[test]
    fn a_line_reads_as_time_level_target_message_fields_and_short_trace() {
        let pretty = render(LINE.as_bytes(), false).expect("a JSON object");
        assert_eq!(
            pretty,
            "07:53:47.521  WARN service_telemetry::health: readiness check \"database\" failing \
             attempts=3 check=database reason=\"connection refused\" in probe trace=4bf92f35\n"
        );
    }

    #[test]
    fn colour_wraps_the_parts_in_ansi_codes_and_plain_has_none() {
        let coloured = render(LINE.as_bytes(), true).expect("a JSON object");
        assert!(coloured.contains("\x1b[33m WARN\x1b[0m"), "{coloured:?}");
        assert!(
            !render(LINE.as_bytes(), false)
                .unwrap_or_default()
                .contains('\x1b')
        );
    }

    #[test]
    fn anything_but_a_json_object_is_left_alone() {
        assert_eq!(render(b"not json\n", false), None);
        assert_eq!(render(b"[1,2]\n", false), None);
    }
}
