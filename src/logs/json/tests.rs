use std::sync::Arc;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use proptest::prelude::*;
use serde_json::Value;
use tracing::{info, info_span};
use tracing_subscriber::Registry;
use tracing_subscriber::layer::SubscriberExt;

use super::JsonLayer;
use crate::export::Closing;
use crate::logs::MemoryWriter;

/// Runs `f` under a scoped subscriber with the OTel span layer and the JSON layer; returns the
/// parsed lines and the spans the SDK finished.
fn capture(f: impl FnOnce()) -> (Vec<Value>, Vec<SpanData>) {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let writer = MemoryWriter::new();
    let subscriber = Registry::default()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")))
        .with(JsonLayer::new(
            Arc::new(writer.clone()),
            crate::config::DEFAULT_VALUE_LENGTH_LIMIT,
            Closing::default(),
        ));
    tracing::subscriber::with_default(subscriber, f);
    let _ = provider.force_flush();
    for line in writer.lines() {
        assert!(
            serde_json::from_str::<Value>(&line).is_ok(),
            "not JSON: {line}"
        );
    }
    (
        writer.json_lines(),
        exporter.get_finished_spans().unwrap_or_default(),
    )
}

fn span_named<'a>(spans: &'a [SpanData], name: &str) -> &'a SpanData {
    spans
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no span {name}"))
}

#[test]
fn ids_inside_a_span_equal_the_exported_span_context() {
    let (lines, spans) = capture(|| {
        let span = info_span!("request", method = "GET", route = "/orders/{id}");
        let _entered = span.enter();
        info!(order = 7, "loaded order");
    });
    let line = &lines[0];
    let exported = span_named(&spans, "request");
    assert_eq!(
        line["trace_id"],
        exported.span_context.trace_id().to_string()
    );
    assert_eq!(line["span_id"], exported.span_context.span_id().to_string());
    assert_eq!(line["trace_id"].as_str().map(str::len), Some(32));
    assert_eq!(line["span_id"].as_str().map(str::len), Some(16));
    assert_eq!(line["message"], "loaded order");
    assert_eq!(line["level"], "info");
    assert_eq!(line["order"], 7);
    assert_eq!(line["span"]["name"], "request");
    assert_eq!(line["span"]["method"], "GET");
    assert_eq!(line["span"]["route"], "/orders/{id}");
}

#[test]
fn no_ids_outside_spans() {
    let (lines, _) = capture(|| info!("outside"));
    let line = lines[0].as_object().expect("object");
    assert!(
        !line.contains_key("trace_id") && !line.contains_key("span_id"),
        "{line:?}"
    );
    assert!(!line.contains_key("span") && !line.contains_key("spans"));
}

#[test]
fn nested_spans_list_root_first_and_ids_follow_the_innermost() {
    let (lines, spans) = capture(|| {
        let outer = info_span!("request", route = "/x");
        let _o = outer.enter();
        let inner = info_span!("db.query", table = "orders");
        let _i = inner.enter();
        info!("querying");
    });
    let line = &lines[0];
    let names: Vec<_> = line["spans"]
        .as_array()
        .expect("spans")
        .iter()
        .map(|s| s["name"].clone())
        .collect();
    assert_eq!(names, ["request", "db.query"]);
    assert_eq!(line["spans"][0]["route"], "/x");
    assert_eq!(line["span"]["table"], "orders");
    let inner = span_named(&spans, "db.query");
    let outer = span_named(&spans, "request");
    assert_eq!(line["span_id"], inner.span_context.span_id().to_string());
    assert_eq!(line["trace_id"], outer.span_context.trace_id().to_string());
    assert_eq!(inner.parent_span_id, outer.span_context.span_id());
}

#[test]
fn explicit_parent_carries_that_spans_ids() {
    let (lines, spans) = capture(|| {
        let job = info_span!("job");
        info!(parent: &job, "from outside the span");
    });
    let job = span_named(&spans, "job");
    assert_eq!(lines[0]["span_id"], job.span_context.span_id().to_string());
    assert_eq!(lines[0]["span"]["name"], "job");
}

#[test]
fn recorded_span_fields_appear_in_later_lines() {
    let (lines, _) = capture(|| {
        let span = info_span!("request", status = tracing::field::Empty);
        let _e = span.enter();
        info!("before");
        span.record("status", 201);
        info!("after");
    });
    assert!(lines[0]["span"].get("status").is_none());
    assert_eq!(lines[1]["span"]["status"], 201);
}

#[test]
fn a_field_recorded_on_an_ancestor_appears_in_lines_of_its_descendants() {
    let (lines, _) = capture(|| {
        let outer = info_span!("request", status = tracing::field::Empty);
        let _o = outer.enter();
        let inner = info_span!("db.query", table = "orders");
        let _i = inner.enter();
        info!("first");
        info!("cached");
        outer.record("status", 503);
        info!("after");
    });
    for line in &lines[..2] {
        assert!(line["spans"][0].get("status").is_none());
        assert_eq!(line["spans"][1]["table"], "orders");
        assert_eq!(line["span"]["name"], "db.query");
    }
    assert_eq!(lines[0]["spans"], lines[1]["spans"]);
    assert_eq!(lines[2]["spans"][0]["status"], 503);
    assert_eq!(lines[2]["spans"][1]["table"], "orders");
    assert_eq!(lines[2]["span"], lines[2]["spans"][1]);
}

#[test]
fn values_of_every_kind_stay_valid_json() {
    #[derive(Debug)]
    struct Weird {
        _text: &'static str,
    }
    let err = std::io::Error::other("disk \"full\"\n");
    let (lines, _) = capture(|| {
        info!(
            quote = "say \"hi\"\\",
            control = "a\u{0}b\u{1f}c\u{7f}d\ne\tf\r",
            unicode = "żółw 🐢 \u{2028}",
            debug = ?Weird { _text: "in\"side" },
            nan = f64::NAN,
            float = 1.5f64,
            big = u128::MAX,
            negative = i64::MIN,
            yes = true,
            error = &err as &(dyn std::error::Error + 'static),
            "message with \"quotes\" and\nnewline"
        );
    });
    let l = &lines[0];
    assert_eq!(l["quote"], "say \"hi\"\\");
    assert_eq!(l["control"], "a\u{0}b\u{1f}c\u{7f}d\ne\tf\r");
    assert_eq!(l["unicode"], "żółw 🐢 \u{2028}");
    assert_eq!(l["debug"], "Weird { _text: \"in\\\"side\" }");
    assert_eq!(l["nan"], "NaN");
    assert_eq!(l["float"], 1.5);
    assert_eq!(l["big"].to_string(), u128::MAX.to_string());
    assert_eq!(l["negative"], i64::MIN);
    assert_eq!(l["yes"], true);
    assert_eq!(l["error"], "disk \"full\"\n");
    assert_eq!(l["message"], "message with \"quotes\" and\nnewline");
}

#[test]
fn reserved_names_are_prefixed_so_keys_stay_unique() {
    let (lines, _) = capture(|| {
        let span = info_span!("s");
        let _e = span.enter();
        info!(level = "custom", trace_id = "mine", target = 1, "m");
    });
    let l = &lines[0];
    assert_eq!(l["level"], "info");
    assert_eq!(l["field.level"], "custom");
    assert_eq!(l["field.trace_id"], "mine");
    assert_eq!(l["field.target"], 1);
    assert_eq!(l["trace_id"].as_str().map(str::len), Some(32));
}

#[test]
fn event_without_message_has_an_empty_one_and_a_timestamp() {
    let (lines, _) = capture(|| info!(answer = 42));
    assert_eq!(lines[0]["message"], "");
    let ts = lines[0]["timestamp"].as_str().expect("timestamp");
    assert_eq!(ts.len(), "2026-11-21T05:24:44.827171Z".len());
    assert!(ts.ends_with('Z') && ts.as_bytes()[10] == b'T', "{ts}");
}

#[test]
fn a_huge_field_is_cut_to_the_limit_with_a_note_and_the_buffer_is_released() {
    let big = "x".repeat(4 * 1024 * 1024);
    let limit = crate::config::DEFAULT_VALUE_LENGTH_LIMIT;
    let (lines, _) = capture(|| {
        info!(payload = %big, text = big.as_str(), "{}", big);
        info!("small");
    });
    assert_eq!(lines.len(), 2);
    let note = format!("...[truncated {} bytes]", big.len() - limit);
    for key in ["payload", "text", "message"] {
        let value = lines[0][key].as_str().unwrap_or_default();
        assert_eq!(value.len(), limit + note.len(), "{key}");
        assert!(value.ends_with(&note), "{key}");
    }
    super::BUFFERS.with(|b| assert!(b.borrow().line.capacity() <= super::KEEP_BUFFER_BYTES));
}

#[test]
fn megabyte_fields_do_not_stall_other_threads_or_grow_the_output() {
    let writer = MemoryWriter::new();
    let limit = crate::config::DEFAULT_VALUE_LENGTH_LIMIT;
    let subscriber = Registry::default().with(JsonLayer::new(
        Arc::new(writer.clone()),
        limit,
        Closing::default(),
    ));
    let dispatch = tracing::Dispatch::new(subscriber);
    let big = std::sync::Arc::new("z".repeat(8 * 1024 * 1024));
    let heavy = {
        let (dispatch, big) = (dispatch.clone(), big.clone());
        std::thread::spawn(move || {
            tracing::dispatcher::with_default(&dispatch, || {
                for _ in 0..50 {
                    info!(payload = %big, debug = ?big.as_str(), "huge");
                }
            })
        })
    };
    let mut slowest = std::time::Duration::ZERO;
    tracing::dispatcher::with_default(&dispatch, || {
        for i in 0..500 {
            let t = std::time::Instant::now();
            info!(i, "small");
            slowest = slowest.max(t.elapsed());
        }
    });
    heavy.join().expect("heavy logger");
    let lines = writer.lines();
    assert_eq!(lines.len(), 550);
    let longest = lines.iter().map(String::len).max().unwrap_or(0);
    // Two cut fields, the message and the line's own keys.
    assert!(longest < 3 * limit, "a line of {longest} bytes");
    // Generous: an uncut 8 MiB field costs tens of milliseconds per line in a debug build.
    assert!(
        slowest < std::time::Duration::from_millis(50),
        "a small line waited {slowest:?}"
    );
}

#[test]
fn truncation_never_splits_a_character_or_an_escape() {
    let writer = MemoryWriter::new();
    let subscriber = Registry::default().with(JsonLayer::new(
        Arc::new(writer.clone()),
        5,
        Closing::default(),
    ));
    tracing::subscriber::with_default(subscriber, || {
        info!(a = "ééé", b = "\"\"\"\"\"\"", c = ?"abcdefgh", "{}", "日本語");
    });
    let line = &writer.json_lines()[0];
    assert_eq!(line["a"], "éé...[truncated 2 bytes]");
    assert_eq!(line["b"], "\"\"\"\"\"...[truncated 1 bytes]");
    assert_eq!(line["c"], "\"abcd...[truncated 5 bytes]");
    assert_eq!(line["message"], "日...[truncated 6 bytes]");
}

#[test]
fn lines_from_many_threads_never_interleave() {
    let (lines, _) = capture(|| {
        let dispatch = tracing::dispatcher::get_default(Clone::clone);
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let dispatch = dispatch.clone();
                std::thread::spawn(move || {
                    tracing::dispatcher::with_default(&dispatch, || {
                        for i in 0..200 {
                            info!(thread = t, i, pad = %"y".repeat(300), "line");
                        }
                    })
                })
            })
            .collect();
        for h in handles {
            h.join().expect("logging thread");
        }
    });
    assert_eq!(lines.len(), 8 * 200);
    assert!(lines.iter().all(|l| l["message"] == "line"));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn every_line_parses_and_round_trips(text in any::<String>(), number in any::<i64>(), float in any::<f64>()) {
        let (lines, spans) = capture(|| {
            let span = info_span!("prop", field = %text, otel.name = %text);
            let _e = span.enter();
            info!(value = %text, debug = ?text, number, float, "{text}");
        });
        prop_assert_eq!(lines.len(), 1);
        prop_assert_eq!(spans.len(), 1);
        prop_assert_eq!(spans[0].name.as_ref(), text.as_str());
        let l = &lines[0];
        prop_assert_eq!(l["value"].as_str(), Some(text.as_str()));
        prop_assert_eq!(l["message"].as_str(), Some(text.as_str()));
        prop_assert_eq!(l["span"]["field"].as_str(), Some(text.as_str()));
        let debug = format!("{text:?}");
        prop_assert_eq!(l["debug"].as_str(), Some(debug.as_str()));
        prop_assert_eq!(l["number"].as_i64(), Some(number));
        if float.is_finite() {
            prop_assert_eq!(l["float"].as_f64(), Some(float));
        } else {
            prop_assert!(l["float"].is_string());
        }
    }
}

#[test]
fn ids_are_written_as_their_display_writes_them() {
    use opentelemetry::trace::{SpanId, TraceId};
    for (trace, span) in [
        (
            0x0000_0000_0000_0000_0000_0000_0000_00a1u128,
            0x0000_0000_0000_0b02u64,
        ),
        (u128::MAX, u64::MAX),
        (
            0x0123_4567_89ab_cdef_fedc_ba98_7654_3210,
            0x0f0e_0d0c_0b0a_0908,
        ),
    ] {
        let (trace, span) = (TraceId::from(trace), SpanId::from(span));
        let mut out = String::from("{");
        super::push_ids(&mut out, trace, span);
        assert_eq!(
            out,
            format!(r#"{{,"trace_id":"{trace}","span_id":"{span}""#)
        );
    }
}
