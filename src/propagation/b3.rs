//! Zipkin B3 (<https://github.com/openzipkin/b3-propagation>), as the OpenTelemetry
//! propagators specification describes it ("B3 Requirements"): `b3` injects the single `b3`
//! header, `b3multi` the `X-B3-*` headers; both extract either form, the single header first.
//!
//! - Trace ids of 64 or 128 bits (16 or 32 lowercase hex digits; a 64-bit id is left-padded
//!   with zeros), span ids of 64 bits; all-zero ids are invalid.
//! - Sampling: `1`/`0` (`true`/`false` in `X-B3-Sampled`, as older tracers send), and the
//!   debug flag (`d`, `X-B3-Flags: 1`), which implies sampled and is propagated as received.
//!   No sampling state means not sampled, as the Python and Java propagators read it.
//! - `X-B3-ParentSpanId` and the single header's parent field are read over and never sent
//!   ("MUST NOT propagate X-B3-ParentSpanId").

use opentelemetry::Context;
use opentelemetry::propagation::text_map_propagator::FieldIter;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState,
};

const SINGLE: &str = "b3";
const TRACE_ID: &str = "x-b3-traceid";
const SPAN_ID: &str = "x-b3-spanid";
const SAMPLED: &str = "x-b3-sampled";
const FLAGS: &str = "x-b3-flags";
const PARENT: &str = "x-b3-parentspanid";

static SINGLE_FIELDS: std::sync::LazyLock<[String; 1]> =
    std::sync::LazyLock::new(|| [SINGLE.to_owned()]);
static MULTI_FIELDS: std::sync::LazyLock<[String; 4]> =
    std::sync::LazyLock::new(|| [TRACE_ID, SPAN_ID, SAMPLED, FLAGS].map(str::to_owned));

/// Carried in the context beside the remote span when B3's debug flag was received, so it is
/// sent on.
#[derive(Debug, Clone, Copy)]
struct Debug;

/// B3 in one header or several.
#[derive(Debug, Clone, Copy)]
pub(crate) struct B3 {
    multi: bool,
}

impl B3 {
    /// The single `b3` header (`OTEL_PROPAGATORS=b3`).
    pub(crate) fn single() -> Self {
        B3 { multi: false }
    }

    /// The `X-B3-*` headers (`OTEL_PROPAGATORS=b3multi`).
    pub(crate) fn multi() -> Self {
        B3 { multi: true }
    }
}

fn id_hex(s: &str, lengths: &[usize]) -> bool {
    lengths.contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn trace_id(s: &str) -> Option<TraceId> {
    if !id_hex(s, &[16, 32]) {
        return None;
    }
    let padded = format!("{s:0>32}");
    TraceId::from_hex(&padded)
        .ok()
        .filter(|t| *t != TraceId::INVALID)
}

fn span_id(s: &str) -> Option<SpanId> {
    if !id_hex(s, &[16]) {
        return None;
    }
    SpanId::from_hex(s).ok().filter(|s| *s != SpanId::INVALID)
}

/// (sampled, debug) from a sampling state; `None` for a value B3 does not define.
fn sampling(state: &str) -> Option<(bool, bool)> {
    match state {
        "1" => Some((true, false)),
        "0" => Some((false, false)),
        "d" => Some((true, true)),
        _ => None,
    }
}

/// `{trace}-{span}[-{sampling}[-{parent}]]`; a bare sampling state carries no ids.
fn parse_single(value: &str) -> Option<(TraceId, SpanId, bool, bool)> {
    let mut fields = value.trim().split('-');
    let trace = trace_id(fields.next()?)?;
    let span = span_id(fields.next()?)?;
    let (sampled, debug) = match fields.next() {
        None => (false, false),
        Some(state) => sampling(state)?,
    };
    if let Some(parent) = fields.next() {
        span_id(parent)?;
    }
    if fields.next().is_some() {
        return None;
    }
    Some((trace, span, sampled, debug))
}

fn parse_multi(extractor: &dyn Extractor) -> Option<(TraceId, SpanId, bool, bool)> {
    let trace = trace_id(extractor.get(TRACE_ID)?.trim())?;
    let span = span_id(extractor.get(SPAN_ID)?.trim())?;
    if let Some(parent) = extractor.get(PARENT) {
        span_id(parent.trim())?;
    }
    let debug = extractor.get(FLAGS).is_some_and(|f| f.trim() == "1");
    let sampled = match extractor.get(SAMPLED).map(str::trim) {
        None => false,
        Some("1") | Some("true") => true,
        Some("0") | Some("false") => false,
        Some(_) => return None,
    };
    Some((trace, span, sampled || debug, debug))
}

impl TextMapPropagator for B3 {
    fn inject_context(&self, cx: &Context, injector: &mut dyn Injector) {
        let span = cx.span();
        let sc = span.span_context();
        if !sc.is_valid() {
            return;
        }
        let debug = cx.get::<Debug>().is_some();
        let sampled = sc.is_sampled();
        if self.multi {
            injector.set(TRACE_ID, sc.trace_id().to_string());
            injector.set(SPAN_ID, sc.span_id().to_string());
            if debug {
                injector.set(FLAGS, "1".to_owned());
            } else {
                injector.set(SAMPLED, if sampled { "1" } else { "0" }.to_owned());
            }
        } else {
            let state = if debug {
                "d"
            } else if sampled {
                "1"
            } else {
                "0"
            };
            injector.set(
                SINGLE,
                format!("{}-{}-{state}", sc.trace_id(), sc.span_id()),
            );
        }
    }

    fn extract_with_context(&self, cx: &Context, extractor: &dyn Extractor) -> Context {
        let found = match extractor.get(SINGLE) {
            Some(single) => parse_single(single),
            None => parse_multi(extractor),
        };
        let Some((trace, span, sampled, debug)) = found else {
            return cx.clone();
        };
        let flags = if sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        };
        let remote = cx.with_remote_span_context(SpanContext::new(
            trace,
            span,
            flags,
            true,
            TraceState::default(),
        ));
        if debug {
            remote.with_value(Debug)
        } else {
            remote
        }
    }

    fn fields(&self) -> FieldIter<'_> {
        if self.multi {
            FieldIter::new(MULTI_FIELDS.as_slice())
        } else {
            FieldIter::new(SINGLE_FIELDS.as_slice())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const TRACE: &str = "80f198ee56343ba864fe8b2a57d3eff7";
    const SPAN: &str = "e457b5a2e4d86bd1";

    fn extract(headers: &[(&str, &str)]) -> Option<(String, String, bool, bool)> {
        let map: HashMap<String, String> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let cx = B3::single().extract(&map);
        let sc = cx.span().span_context().clone();
        sc.is_valid().then(|| {
            (
                sc.trace_id().to_string(),
                sc.span_id().to_string(),
                sc.is_sampled(),
                cx.get::<Debug>().is_some(),
            )
        })
    }

    /// (sampled, debug) of an extracted context.
    type Sampling = Option<(bool, bool)>;

    #[test]
    fn single_header_rows() {
        let full = |state: &str| format!("{TRACE}-{SPAN}-{state}");
        let rows: Vec<(String, Sampling, &str)> = vec![
            (full("1"), Some((true, false)), "sampled"),
            (full("0"), Some((false, false)), "not sampled"),
            (full("d"), Some((true, true)), "debug implies sampled"),
            (
                format!("{TRACE}-{SPAN}"),
                Some((false, false)),
                "no sampling state",
            ),
            (
                format!("{TRACE}-{SPAN}-1-05e3ac9a4f6e3b90"),
                Some((true, false)),
                "with a parent",
            ),
            (format!("{TRACE}-{SPAN}-x"), None, "unknown sampling state"),
            (format!("{TRACE}-{SPAN}-1-bad"), None, "bad parent"),
            (
                format!("{TRACE}-{SPAN}-1-05e3ac9a4f6e3b90-extra"),
                None,
                "too many fields",
            ),
            (
                format!("{}-{SPAN}-1", TRACE.to_uppercase()),
                None,
                "uppercase",
            ),
            (
                format!("{}-{SPAN}-1", &TRACE[..31]),
                None,
                "31-digit trace id",
            ),
            (
                format!("{}-{SPAN}-1", "0".repeat(32)),
                None,
                "zero trace id",
            ),
            (
                format!("{TRACE}-{}-1", "0".repeat(16)),
                None,
                "zero span id",
            ),
            ("1".to_owned(), None, "sampling only: no ids to continue"),
        ];
        for (value, expected, rule) in rows {
            let got = extract(&[("b3", &value)]).map(|(_, _, s, d)| (s, d));
            assert_eq!(got, expected, "{rule}: {value}");
        }
        let (trace, _, _, _) =
            extract(&[("b3", &format!("{}-{SPAN}-1", &TRACE[16..]))]).expect("64-bit");
        assert_eq!(
            trace,
            format!("{:0>32}", &TRACE[16..]),
            "a 64-bit id is left-padded"
        );
    }

    #[test]
    fn multi_headers_and_the_single_header_first() {
        let multi = [
            ("x-b3-traceid", TRACE),
            ("x-b3-spanid", SPAN),
            ("x-b3-sampled", "1"),
        ];
        assert_eq!(
            extract(&multi),
            Some((TRACE.into(), SPAN.into(), true, false))
        );
        let old = [
            ("x-b3-traceid", TRACE),
            ("x-b3-spanid", SPAN),
            ("x-b3-sampled", "true"),
        ];
        assert_eq!(extract(&old).map(|t| t.2), Some(true));
        let debug = [
            ("x-b3-traceid", TRACE),
            ("x-b3-spanid", SPAN),
            ("x-b3-flags", "1"),
        ];
        assert_eq!(extract(&debug).map(|t| (t.2, t.3)), Some((true, true)));
        let bad = [
            ("x-b3-traceid", TRACE),
            ("x-b3-spanid", SPAN),
            ("x-b3-sampled", "yes"),
        ];
        assert_eq!(extract(&bad), None);
        let other = "0af7651916cd43dd8448eb211c80319c";
        let both = [
            ("b3", format!("{other}-{SPAN}-0")),
            ("x-b3-traceid", TRACE.into()),
            ("x-b3-spanid", SPAN.into()),
        ];
        let both: Vec<(&str, &str)> = both.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert_eq!(
            extract(&both).map(|t| t.0),
            Some(other.to_owned()),
            "single wins"
        );
    }

    #[test]
    fn injection_writes_the_chosen_form_and_never_the_parent() {
        let cx = B3::single().extract(&HashMap::from([(
            "b3".to_owned(),
            format!("{TRACE}-{SPAN}-d-05e3ac9a4f6e3b90"),
        )]));
        let mut single = HashMap::new();
        B3::single().inject_context(&cx, &mut single);
        assert_eq!(
            single,
            HashMap::from([("b3".to_owned(), format!("{TRACE}-{SPAN}-d"))])
        );
        let mut multi = HashMap::new();
        B3::multi().inject_context(&cx, &mut multi);
        assert_eq!(multi["x-b3-traceid"], TRACE);
        assert_eq!(multi["x-b3-spanid"], SPAN);
        assert_eq!(multi["x-b3-flags"], "1");
        assert!(!multi.contains_key("x-b3-parentspanid"));
        let plain = B3::single().extract(&HashMap::from([(
            "b3".to_owned(),
            format!("{TRACE}-{SPAN}-0"),
        )]));
        let mut out = HashMap::new();
        B3::multi().inject_context(&plain, &mut out);
        assert_eq!(out["x-b3-sampled"], "0");
        let mut none = HashMap::new();
        B3::single().inject_context(&Context::new(), &mut none);
        assert!(none.is_empty());
    }

    proptest::proptest! {
        #[test]
        fn any_header_text_is_parsed_or_rejected_without_panicking(value in "\\PC{0,80}") {
            let _ = parse_single(&value);
            let map = HashMap::from([("x-b3-traceid".to_owned(), value.clone()), ("x-b3-spanid".to_owned(), value)]);
            let _ = parse_multi(&map);
        }
    }
}
