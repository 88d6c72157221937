//! `LOG_FORMAT=pretty` as a person sees it: the service example run as a child process, its
//! stdout read line by line the way a terminal shows it.

mod common;

use std::time::Duration;

use common::child::{KeepAlive, Running, Signal, example_binary};
use common::collector::free_port;

const LEVELS: &[&str] = &["ERROR", "WARN", "INFO", "DEBUG", "TRACE"];

/// One pretty line taken apart: `07:53:47.521  INFO target: message key=value ...`.
struct Pretty<'a> {
    level: &'a str,
    target: &'a str,
    rest: &'a str,
}

fn parse(line: &str) -> Option<Pretty<'_>> {
    let (time, after_time) = line.split_once(' ')?;
    let clock_like = time.len() == 12
        && time.char_indices().all(|(i, c)| match i {
            2 | 5 => c == ':',
            8 => c == '.',
            _ => c.is_ascii_digit(),
        });
    if !clock_like {
        return None;
    }
    let after_time = after_time.trim_start();
    let (level, after_level) = after_time.split_once(' ')?;
    if !LEVELS.contains(&level) {
        return None;
    }
    let (target, rest) = after_level.split_once(": ")?;
    Some(Pretty {
        level,
        target,
        rest,
    })
}

#[test]
fn pretty_lines_read_as_time_level_target_message_fields_and_never_json() {
    let port = free_port().to_string();
    let mut child = Running::spawn(
        std::process::Command::new(example_binary("service")),
        &[("PORT", port.as_str()), ("LOG_FORMAT", "pretty")],
    );
    let listening = child.wait_for_line("listening", Duration::from_secs(20), |l| {
        l.contains(": listening ")
    });
    assert!(
        listening.contains(" address=") && listening.ends_with(&format!(":{port}")),
        "{listening}"
    );
    let mut client = KeepAlive::connect(port.parse().expect("port"));
    assert_eq!(client.get("/work?ms=1"), 200);
    let work = child.wait_for_line("work done", Duration::from_secs(10), |l| {
        l.contains(": work done ")
    });
    drop(client);
    child.signal(Signal::TERM);
    let status = child.wait_exit(Duration::from_secs(20));
    assert!(status.success(), "{status:?}\n{}", child.output());

    let lines = child.raw_lines();
    assert!(lines.len() >= 5, "{}", child.output());
    for line in lines {
        assert!(
            serde_json::from_str::<serde_json::Value>(line).is_err(),
            "a JSON line in pretty output: {line}"
        );
        assert!(!line.contains('\x1b'), "colour on a pipe: {line:?}");
        assert!(
            parse(line).is_some(),
            "not time, level, target, message: {line:?}"
        );
    }

    // A request's line inside its span: the field, the span and the short trace id.
    let parsed = parse(&work).expect("parsed");
    assert_eq!(parsed.level, "INFO");
    assert_eq!(parsed.target, "service");
    assert!(parsed.rest.starts_with("work done ms=1"), "{work}");
    let trace = parsed
        .rest
        .rsplit_once("trace=")
        .map(|(_, id)| id)
        .unwrap_or_else(|| panic!("no trace id: {work}"));
    assert!(
        trace.len() == 8 && trace.chars().all(|c| c.is_ascii_hexdigit()),
        "{work}"
    );
    assert!(parsed.rest.contains(" in "), "no span name: {work}");

    // The crate's own lines take the same shape, with their fields.
    let complete = lines
        .iter()
        .find(|l| l.contains(": shutdown complete: "))
        .unwrap_or_else(|| panic!("no shutdown line\n{}", child.output()));
    let parsed = parse(complete).expect("parsed");
    assert_eq!(parsed.target, "service_telemetry::shutdown");
    assert!(parsed.rest.contains(" exit_code=0"), "{complete}");
    assert!(parsed.rest.contains(" trigger=SIGTERM"), "{complete}");
}
