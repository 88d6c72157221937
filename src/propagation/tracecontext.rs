//! W3C Trace Context (`traceparent`, `tracestate`), parsed to the letter of the
//! specification (Level 1, with the Level 2 `random` flag kept; the spans' tracer sets it on
//! the traces the crate starts, see `random_flag`). The SDK's propagator accepts
//! fields of the wrong length, reads only the first of several header lines and keeps
//! `tracestate` members the grammar rejects; this one does not.
//!
//! Rules, by section of the specification (<https://www.w3.org/TR/trace-context/>):
//! - 3.2.2 `traceparent`: `version-traceid-parentid-flags`, lowercase hex only; version `ff`
//!   is invalid; version `00` is exactly 55 characters; a higher version is at least 55 and, when
//!   longer, has a `-` after the flags; all-zero trace or parent ids are invalid.
//! - 3.2.2.5 flags: `sampled` (bit 0) and, Level 2, `random` (bit 1) are propagated; other
//!   bits are set to zero.
//! - 3.2 / RFC 9110 5.3: several `traceparent` lines are invalid together; several
//!   `tracestate` lines are one list, joined with `,`.
//! - 3.3.1 `tracestate` grammar: keys `lcalpha 0*255(lcalpha / DIGIT / _ - * /)` or
//!   `tenant@system` (tenant 1 to 241, system 1 to 14 characters); values 1 to 256 printable
//!   characters without `,` or `=`, not ending in a space; empty members are allowed and not
//!   counted; more than 32 members, an invalid member or a key given twice discards the whole
//!   header; an invalid `traceparent` means `tracestate` is not read at all.
//! - 3.3.1.1: an empty `tracestate` is never sent.

use opentelemetry::Context;
use opentelemetry::propagation::text_map_propagator::FieldIter;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState,
};

const TRACEPARENT: &str = "traceparent";
const TRACESTATE: &str = "tracestate";
static FIELDS: std::sync::LazyLock<[String; 2]> =
    std::sync::LazyLock::new(|| [TRACEPARENT.to_owned(), TRACESTATE.to_owned()]);

/// Most `tracestate` list members (3.3.1.1).
pub(crate) const MAX_MEMBERS: usize = 32;

/// The flags this implementation understands: `sampled` and, Level 2, `random`.
const KNOWN_FLAGS: u8 = 0b11;

/// The `tracecontext` propagator of `OTEL_PROPAGATORS`.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct W3cTraceContext;

impl TextMapPropagator for W3cTraceContext {
    fn inject_context(&self, cx: &Context, injector: &mut dyn Injector) {
        let span = cx.span();
        let sc = span.span_context();
        if !sc.is_valid() {
            return;
        }
        injector.set(
            TRACEPARENT,
            format!(
                "00-{}-{}-{:02x}",
                sc.trace_id(),
                sc.span_id(),
                sc.trace_flags().to_u8() & KNOWN_FLAGS
            ),
        );
        let state = sc.trace_state().header();
        if !state.is_empty() {
            injector.set(TRACESTATE, state);
        }
    }

    fn extract_with_context(&self, cx: &Context, extractor: &dyn Extractor) -> Context {
        match extract(extractor) {
            Some(sc) => cx.with_remote_span_context(sc),
            None => cx.clone(),
        }
    }

    fn fields(&self) -> FieldIter<'_> {
        FieldIter::new(FIELDS.as_slice())
    }
}

/// The remote span context the headers carry, when `traceparent` is valid.
fn extract(extractor: &dyn Extractor) -> Option<SpanContext> {
    let lines = extractor.get_all(TRACEPARENT)?;
    let [line] = lines.as_slice() else {
        return None;
    };
    let (trace_id, span_id, flags) = parse_traceparent(line)?;
    let state = extractor
        .get_all(TRACESTATE)
        .map(|lines| lines.join(","))
        .and_then(|joined| parse_tracestate(&joined))
        .unwrap_or_default();
    Some(SpanContext::new(trace_id, span_id, flags, true, state))
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `traceparent` (3.2.2), surrounding spaces and tabs ignored.
pub(crate) fn parse_traceparent(value: &str) -> Option<(TraceId, SpanId, TraceFlags)> {
    let value = value.trim_matches([' ', '\t']);
    let version = value.get(0..2)?;
    if !is_lower_hex(version) || version == "ff" {
        return None;
    }
    let fits = match version {
        "00" => value.len() == 55,
        // A later version may append fields; what this version knows must still be there.
        _ => value.len() == 55 || (value.len() > 55 && value.as_bytes()[55] == b'-'),
    };
    if !fits || !value.is_char_boundary(55.min(value.len())) {
        return None;
    }
    let bytes = value.as_bytes();
    if bytes[2] != b'-' || bytes[35] != b'-' || bytes[52] != b'-' {
        return None;
    }
    let (trace, parent, flags) = (&value[3..35], &value[36..52], &value[53..55]);
    if !is_lower_hex(trace) || !is_lower_hex(parent) || !is_lower_hex(flags) {
        return None;
    }
    let trace_id = TraceId::from_hex(trace)
        .ok()
        .filter(|t| *t != TraceId::INVALID)?;
    let span_id = SpanId::from_hex(parent)
        .ok()
        .filter(|s| *s != SpanId::INVALID)?;
    let flags = u8::from_str_radix(flags, 16).ok()? & KNOWN_FLAGS;
    Some((trace_id, span_id, TraceFlags::new(flags)))
}

fn key_char(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'*' | b'/')
}

/// A `tracestate` key (3.3.1.3.1).
pub(crate) fn valid_key(key: &str) -> bool {
    let bytes = key.as_bytes();
    match key.split_once('@') {
        None => {
            (1..=256).contains(&bytes.len())
                && bytes[0].is_ascii_lowercase()
                && bytes.iter().all(|b| key_char(*b))
        }
        Some((tenant, system)) => {
            let (t, s) = (tenant.as_bytes(), system.as_bytes());
            (1..=241).contains(&t.len())
                && (t[0].is_ascii_lowercase() || t[0].is_ascii_digit())
                && t.iter().all(|b| key_char(*b))
                && (1..=14).contains(&s.len())
                && s[0].is_ascii_lowercase()
                && s.iter().all(|b| key_char(*b))
        }
    }
}

/// A `tracestate` value (3.3.1.3.2): 1 to 256 characters of `%x20-2B / %x2D-3C / %x3E-7E`,
/// the last not a space.
pub(crate) fn valid_value(value: &str) -> bool {
    let bytes = value.as_bytes();
    (1..=256).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| matches!(b, 0x20..=0x2B | 0x2D..=0x3C | 0x3E..=0x7E))
        && bytes[bytes.len() - 1] != b' '
}

/// The whole `tracestate` list, or `None` when it must be discarded.
pub(crate) fn parse_tracestate(joined: &str) -> Option<TraceState> {
    let mut members: Vec<(&str, &str)> = Vec::new();
    for member in joined.split(',') {
        let member = member.trim_matches([' ', '\t']);
        if member.is_empty() {
            continue;
        }
        let (key, value) = member.split_once('=')?;
        if !valid_key(key) || !valid_value(value) || members.iter().any(|(k, _)| *k == key) {
            return None;
        }
        members.push((key, value));
        if members.len() > MAX_MEMBERS {
            return None;
        }
    }
    // The API (opentelemetry 0.33) refuses one key the grammar allows, a system id of 14
    // characters (`system-id = lcalpha 0*13(...)`); a SpanContext cannot hold such a member,
    // so it alone is left out rather than the whole list.
    TraceState::from_key_value(members.iter().copied())
        .or_else(|_| {
            TraceState::from_key_value(
                members
                    .into_iter()
                    .filter(|member| TraceState::from_key_value([*member]).is_ok()),
            )
        })
        .ok()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const PARENT: &str = "00f067aa0ba902b7";

    /// Header lines, several per name allowed, as an HTTP message carries them.
    struct Lines(Vec<(&'static str, String)>);

    impl Extractor for Lines {
        fn get(&self, key: &str) -> Option<&str> {
            self.0
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.as_str())
        }
        fn keys(&self) -> Vec<&str> {
            self.0.iter().map(|(k, _)| *k).collect()
        }
        fn get_all(&self, key: &str) -> Option<Vec<&str>> {
            let all: Vec<&str> = self
                .0
                .iter()
                .filter(|(k, _)| *k == key)
                .map(|(_, v)| v.as_str())
                .collect();
            (!all.is_empty()).then_some(all)
        }
    }

    fn extracted(lines: &[(&'static str, &str)]) -> Option<SpanContext> {
        let lines = Lines(lines.iter().map(|(k, v)| (*k, (*v).to_owned())).collect());
        let cx = W3cTraceContext.extract(&lines);
        let sc = cx.span().span_context().clone();
        sc.is_valid().then_some(sc)
    }

    fn valid_parent() -> String {
        format!("00-{TRACE}-{PARENT}-01")
    }

    #[test]
    fn traceparent_rules_one_row_per_must() {
        let z32 = "0".repeat(32);
        let z16 = "0".repeat(16);
        let rows: Vec<(String, bool, &str)> = vec![
            (valid_parent(), true, "the spec's example"),
            (format!("00-{TRACE}-{PARENT}-00"), true, "not sampled"),
            (
                format!(" 00-{TRACE}-{PARENT}-01\t"),
                true,
                "OWS around the value",
            ),
            (
                format!("0-{TRACE}-{PARENT}-01"),
                false,
                "version of 1 digit",
            ),
            (
                format!("000-{TRACE}-{PARENT}-01"),
                false,
                "version of 3 digits",
            ),
            (
                format!("0000-{TRACE}-{PARENT}-01"),
                false,
                "version of 4 digits",
            ),
            (
                format!("ff-{TRACE}-{PARENT}-01"),
                false,
                "version ff is invalid",
            ),
            (format!("0g-{TRACE}-{PARENT}-01"), false, "version not hex"),
            (
                format!("00-{}-{PARENT}-01", &TRACE[..31]),
                false,
                "31-digit trace id",
            ),
            (
                format!("00-{TRACE}0-{PARENT}-01"),
                false,
                "33-digit trace id",
            ),
            (
                format!("00-{TRACE}-{}-01", &PARENT[..15]),
                false,
                "15-digit parent id",
            ),
            (
                format!("00-{TRACE}-{PARENT}0-01"),
                false,
                "17-digit parent id",
            ),
            (format!("00-{TRACE}-{PARENT}-1"), false, "flags of 1 digit"),
            (
                format!("00-{TRACE}-{PARENT}-011"),
                false,
                "flags of 3 digits",
            ),
            (format!("00-{z32}-{PARENT}-01"), false, "all-zero trace id"),
            (format!("00-{TRACE}-{z16}-01"), false, "all-zero parent id"),
            (
                format!("00-{}-{PARENT}-01", TRACE.to_uppercase()),
                false,
                "uppercase trace id",
            ),
            (
                format!("00-{TRACE}-{}-01", PARENT.to_uppercase()),
                false,
                "uppercase parent id",
            ),
            (format!("00-{TRACE}-{PARENT}-0A"), false, "uppercase flags"),
            (
                format!("00-{TRACE}-{PARENT}-01-extra"),
                false,
                "version 00 with more fields",
            ),
            (format!("00_{TRACE}_{PARENT}_01"), false, "wrong separators"),
            (
                format!("01-{TRACE}-{PARENT}-01"),
                true,
                "a later version, same length",
            ),
            (
                format!("cc-{TRACE}-{PARENT}-01-what-the-future-holds"),
                true,
                "a later version with more fields",
            ),
            (
                format!("cc-{TRACE}-{PARENT}-01what"),
                false,
                "a later version without a dash after the flags",
            ),
            (
                format!("cc-{TRACE}-{PARENT}-0"),
                false,
                "a later version shorter than 55",
            ),
            (String::new(), false, "empty"),
            ("00-é".repeat(14), false, "non-ASCII"),
        ];
        for (value, valid, rule) in rows {
            let got = extracted(&[("traceparent", &value)]);
            assert_eq!(got.is_some(), valid, "{rule}: {value:?}");
            if let Some(sc) = got {
                assert_eq!(sc.trace_id().to_string(), TRACE, "{rule}");
                assert_eq!(sc.span_id().to_string(), PARENT, "{rule}");
                assert!(sc.is_remote());
            }
        }
    }

    #[test]
    fn flags_keep_sampled_and_random_and_zero_the_rest() {
        for (flags, kept) in [
            ("00", 0x00),
            ("01", 0x01),
            ("02", 0x02),
            ("03", 0x03),
            ("ff", 0x03),
            ("04", 0x00),
        ] {
            let sc = extracted(&[("traceparent", &format!("00-{TRACE}-{PARENT}-{flags}"))])
                .expect(flags);
            assert_eq!(sc.trace_flags().to_u8(), kept, "{flags}");
        }
        let sc = extracted(&[("traceparent", &format!("00-{TRACE}-{PARENT}-03"))]).unwrap();
        let mut out = HashMap::new();
        W3cTraceContext.inject_context(&Context::new().with_remote_span_context(sc), &mut out);
        assert_eq!(
            out["traceparent"],
            format!("00-{TRACE}-{PARENT}-03"),
            "random is propagated"
        );
    }

    #[test]
    fn several_traceparent_lines_are_invalid_together() {
        let line = valid_parent();
        assert!(extracted(&[("traceparent", &line), ("traceparent", &line)]).is_none());
        assert!(extracted(&[("traceparent", &format!("{line},{line}"))]).is_none());
    }

    fn state_of(tracestate_lines: &[&str]) -> Option<String> {
        let parent = valid_parent();
        let mut lines = vec![("traceparent", parent.as_str())];
        lines.extend(tracestate_lines.iter().map(|v| ("tracestate", *v)));
        let sc = extracted(&lines).expect("valid traceparent");
        let header = sc.trace_state().header();
        (!header.is_empty()).then_some(header)
    }

    #[test]
    fn tracestate_rules_one_row_per_must() {
        let key256 = format!("a{}", "b".repeat(255));
        let key257 = format!("a{}", "b".repeat(256));
        let value256 = "v".repeat(256);
        let value257 = "v".repeat(257);
        let tenant241 = format!("1{}@sys", "t".repeat(240));
        let tenant242 = format!("1{}@sys", "t".repeat(241));
        let rows: Vec<(String, Option<&str>, &str)> = vec![
            (
                "congo=t61rcWkgMzE".into(),
                Some("congo=t61rcWkgMzE"),
                "one member",
            ),
            (
                "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE".into(),
                Some("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"),
                "order kept",
            ),
            (
                " a=1 ,\t, ,b=2,".into(),
                Some("a=1,b=2"),
                "OWS and empty members",
            ),
            ("".into(), None, "empty header"),
            (
                "fw529a3039@dt=x".into(),
                Some("fw529a3039@dt=x"),
                "multi-tenant key",
            ),
            (
                "t@abcdefghijklm=1".into(),
                Some("t@abcdefghijklm=1"),
                "system id of 13",
            ),
            (
                "t@abcdefghijklmn=1,a=2".into(),
                Some("a=2"),
                "system id of 14: valid, but the API cannot hold it; the rest is kept",
            ),
            ("Abc=1".into(), None, "uppercase key"),
            ("1abc=1".into(), None, "simple key starting with a digit"),
            ("a.b=1".into(), None, "illegal character in key"),
            ("a@=1".into(), None, "empty system id"),
            ("@b=1".into(), None, "empty tenant id"),
            ("a@1b=1".into(), None, "system id starting with a digit"),
            ("a@b@c=1".into(), None, "two @"),
            ("a@bcdefghijklmnop=1".into(), None, "system id of 15"),
            (key256.clone() + "=1", Some(""), "key of 256"),
            (key257 + "=1", None, "key of 257"),
            (tenant241.clone() + "=1", Some(""), "tenant id of 241"),
            (tenant242 + "=1", None, "tenant id of 242"),
            (format!("a={value256}"), Some(""), "value of 256"),
            (format!("a={value257}"), None, "value of 257"),
            ("a=".into(), None, "empty value"),
            ("a=x ".into(), Some("a=x"), "trailing OWS is OWS, not value"),
            ("a=x y".into(), Some("a=x y"), "inner space"),
            ("a=b=c".into(), None, "= in value"),
            ("a=\u{7f}".into(), None, "DEL in value"),
            ("a=é".into(), None, "non-ASCII value"),
            ("a".into(), None, "member without ="),
            ("a=1,a=2".into(), None, "duplicate key"),
            (
                "a=1,b=2,bad key=3".into(),
                None,
                "one invalid member discards all",
            ),
        ];
        for (value, expected, rule) in rows {
            let got = state_of(&[&value]);
            match expected {
                Some("") => assert!(got.is_some(), "{rule}: {value:?}"),
                Some(header) => assert_eq!(got.as_deref(), Some(header), "{rule}: {value:?}"),
                None => assert_eq!(got, None, "{rule}: {value:?}"),
            }
        }
    }

    #[test]
    fn thirty_two_members_pass_and_thirty_three_discard_the_header() {
        let members = |n: usize| {
            (0..n)
                .map(|i| format!("k{i}=v{i}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        assert_eq!(
            state_of(&[&members(32)]).map(|h| h.split(',').count()),
            Some(32)
        );
        assert_eq!(state_of(&[&members(33)]), None);
        // Empty members do not count.
        assert!(state_of(&[&format!("{},,,,", members(32))]).is_some());
    }

    #[test]
    fn several_tracestate_lines_are_one_list() {
        assert_eq!(
            state_of(&["a=1,b=2", "c=3"]).as_deref(),
            Some("a=1,b=2,c=3")
        );
        assert_eq!(state_of(&["a=1", "a=2"]), None, "a key twice across lines");
    }

    #[test]
    fn an_invalid_traceparent_means_tracestate_is_not_read_and_no_empty_tracestate_is_sent() {
        assert!(extracted(&[("traceparent", "garbage"), ("tracestate", "a=1")]).is_none());
        let sc = extracted(&[("traceparent", &valid_parent())]).expect("valid");
        let mut out: HashMap<String, String> = HashMap::new();
        W3cTraceContext.inject_context(&Context::new().with_remote_span_context(sc), &mut out);
        assert!(out.contains_key("traceparent"));
        assert!(!out.contains_key("tracestate"), "{out:?}");
        let mut none: HashMap<String, String> = HashMap::new();
        W3cTraceContext.inject_context(&Context::new(), &mut none);
        assert!(none.is_empty(), "nothing for an invalid context");
    }

    proptest::proptest! {
        #[test]
        fn any_header_text_parses_or_is_rejected_without_panicking(
            parent in "\\PC{0,80}",
            state in "\\PC{0,300}",
        ) {
            let _ = parse_traceparent(&parent);
            let _ = parse_tracestate(&state);
            let _ = extracted(&[("traceparent", &parent), ("tracestate", &state)]);
        }

        #[test]
        fn what_is_injected_is_extracted_again(
            trace in "[0-9a-f]{32}",
            span in "[0-9a-f]{16}",
            flags in 0u8..4,
            members in proptest::collection::vec(("[a-z][a-z0-9_*/-]{0,20}", "[!-+\\--<>-~]{1,30}"), 0..8),
        ) {
            let value = format!("00-{trace}-{span}-{flags:02x}");
            let mut members = members;
            members.sort();
            members.dedup_by(|a, b| a.0 == b.0);
            let state: Vec<String> = members.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let state = state.join(",");
            let lines = if state.is_empty() { vec![("traceparent", value.as_str())] } else { vec![("traceparent", value.as_str()), ("tracestate", state.as_str())] };
            let Some(sc) = extracted(&lines) else {
                // All-zero ids are the only valid-looking input that is rejected.
                proptest::prop_assert!(trace.bytes().all(|b| b == b'0') || span.bytes().all(|b| b == b'0'));
                return Ok(());
            };
            let mut out: HashMap<String, String> = HashMap::new();
            W3cTraceContext.inject_context(&Context::new().with_remote_span_context(sc), &mut out);
            proptest::prop_assert_eq!(&out["traceparent"], &value);
            proptest::prop_assert_eq!(out.get("tracestate").cloned().unwrap_or_default(), state);
        }
    }
}
