//! What the crate's own OTLP exporters share: when to retry, and the two things they read
//! from a collector's protobuf (the partial success of a response, the `RetryInfo` of a gRPC
//! status), read with a field reader of a few lines rather than generated types.

use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

use super::otlp::Retries;

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const LONGEST_BACKOFF: Duration = Duration::from_millis(1600);
const MAX_JITTER_MS: u64 = 100;
/// A server asking for a longer pause is not waited for beyond the export timeout anyway; this
/// only keeps the arithmetic sane.
const LONGEST_SERVER_DELAY: Duration = Duration::from_secs(600);

/// When one export retries: after a retryable failure, at most [`Retries::max_retries`] times,
/// pausing as [`Backoff`] says, and never past the export timeout.
pub(crate) struct RetrySchedule {
    started: Instant,
    timeout: Duration,
    retries_left: u32,
    retries: u32,
    backoff: Backoff,
}

impl RetrySchedule {
    pub(crate) fn start(retries: Retries, timeout: Duration) -> Self {
        RetrySchedule {
            started: Instant::now(),
            timeout,
            retries_left: retries.max_retries(),
            retries: 0,
            backoff: Backoff::new(),
        }
    }

    /// What is left of the export timeout, the bound of the next attempt.
    pub(crate) fn remaining(&self) -> Duration {
        self.timeout.saturating_sub(self.started.elapsed())
    }

    /// The pause before the next attempt after a failure described by `message`, or the
    /// export's error: the failure is final, no retry is left, or the pause would outlast the
    /// timeout.
    pub(crate) fn after_failure(
        &mut self,
        message: String,
        retryable: bool,
        asked_by_server: Option<Duration>,
    ) -> Result<Duration, String> {
        if !retryable || self.retries_left == 0 {
            return Err(message);
        }
        self.retries_left -= 1;
        self.retries += 1;
        let pause = self.backoff.pause(asked_by_server);
        if pause >= self.remaining() {
            return Err(format!(
                "{message}; no time left in the {} ms export timeout for retry {}",
                self.timeout.as_millis(),
                self.retries
            ));
        }
        Ok(pause)
    }
}

/// Exponential backoff from 100 ms to 1.6 s with up to 100 ms of jitter, as opentelemetry-otlp's
/// recommended policy; a delay the server asks for is waited for instead when it is longer.
struct Backoff {
    next: Duration,
}

impl Backoff {
    fn new() -> Self {
        Backoff {
            next: FIRST_BACKOFF,
        }
    }

    /// The pause before the next retry.
    fn pause(&mut self, asked_by_server: Option<Duration>) -> Duration {
        let pause = match asked_by_server {
            Some(asked) => asked.min(LONGEST_SERVER_DELAY).max(self.next),
            None => self.next.saturating_add(jitter()),
        };
        self.next = self.next.saturating_mul(2).min(LONGEST_BACKOFF);
        pause
    }
}

fn jitter() -> Duration {
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    Duration::from_millis(random % (MAX_JITTER_MS + 1))
}

/// Appends each cause in `source`'s chain that `text` does not already say. A transport error's
/// own message often names only the URL; the cause (refused, reset, timed out, a TLS error) is
/// in its sources, and the export ledger tells failures apart by it.
pub(crate) fn append_causes(
    text: &mut String,
    mut source: Option<&(dyn std::error::Error + 'static)>,
) {
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
}

/// Which exporter read the response, for the name of the event that reports it.
#[derive(Clone, Copy)]
pub(crate) enum Via {
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    Http,
    #[cfg_attr(not(feature = "grpc"), allow(dead_code))]
    Grpc,
}

/// Logs a partial success as opentelemetry-otlp does: under its event names and target, so the
/// log layers treat it as the SDK's own diagnostics (never exported, filtered with them).
pub(crate) fn report_partial_success(response: &[u8], via: Via) {
    let Some((rejected, message)) = partial_success(response) else {
        return;
    };
    if rejected == 0 && message.is_empty() {
        return;
    }
    match via {
        Via::Http => tracing::warn!(
            name: "HttpTraceClient.PartialSuccess",
            target: "opentelemetry-otlp",
            rejected_spans = rejected,
            error_message = message,
            "the collector accepted only part of a span export"
        ),
        Via::Grpc => tracing::warn!(
            name: "TonicTracesClient.PartialSuccess",
            target: "opentelemetry-otlp",
            rejected_spans = rejected,
            error_message = message,
            "the collector accepted only part of a span export"
        ),
    }
}

/// `ExportTraceServiceResponse.partial_success` (field 1): `rejected_spans` (1) and
/// `error_message` (2). Anything unreadable is ignored, as opentelemetry-otlp does.
pub(crate) fn partial_success(response: &[u8]) -> Option<(i64, &str)> {
    let partial = proto_fields(response).find_map(|(field, value)| match (field, value) {
        (1, Field::Bytes(message)) => Some(message),
        _ => None,
    })?;
    let mut rejected = 0;
    let mut message = "";
    for (field, value) in proto_fields(partial) {
        match (field, value) {
            (1, Field::Varint(n)) => rejected = n as i64,
            (2, Field::Bytes(text)) => message = std::str::from_utf8(text).unwrap_or(""),
            _ => {}
        }
    }
    Some((rejected, message))
}

enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Other,
}

/// The top-level fields of a protobuf message; stops at the first malformed one.
fn proto_fields(mut input: &[u8]) -> impl Iterator<Item = (u64, Field<'_>)> {
    std::iter::from_fn(move || {
        let key = read_varint(&mut input)?;
        let field = match key & 7 {
            0 => Field::Varint(read_varint(&mut input)?),
            1 => {
                input = input.get(8..)?;
                Field::Other
            }
            2 => {
                let len = usize::try_from(read_varint(&mut input)?).ok()?;
                let (value, rest) = input.split_at_checked(len)?;
                input = rest;
                Field::Bytes(value)
            }
            5 => {
                input = input.get(4..)?;
                Field::Other
            }
            _ => return None,
        };
        Some((key >> 3, field))
    })
}

fn read_varint(input: &mut &[u8]) -> Option<u64> {
    let mut value = 0_u64;
    for (i, byte) in input.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            *input = &input[i + 1..];
            return Some(value);
        }
    }
    None
}

const RETRY_INFO: &[u8] = b"type.googleapis.com/google.rpc.RetryInfo";

/// The delay of the `google.rpc.RetryInfo` in a gRPC status's details (a `google.rpc.Status`
/// whose `details` (3) are `Any`s: `type_url` (1), `value` (2)); `RetryInfo.retry_delay` (1)
/// is a `Duration`: `seconds` (1), `nanos` (2).
#[cfg_attr(not(feature = "grpc"), allow(dead_code))]
pub(crate) fn retry_delay(status_details: &[u8]) -> Option<Duration> {
    proto_fields(status_details).find_map(|(field, value)| {
        let (3, Field::Bytes(any)) = (field, value) else {
            return None;
        };
        let mut type_url = None;
        let mut info = None;
        for (field, value) in proto_fields(any) {
            match (field, value) {
                (1, Field::Bytes(url)) => type_url = Some(url),
                (2, Field::Bytes(bytes)) => info = Some(bytes),
                _ => {}
            }
        }
        if type_url? != RETRY_INFO {
            return None;
        }
        let delay = proto_fields(info?).find_map(|(field, value)| match (field, value) {
            (1, Field::Bytes(delay)) => Some(delay),
            _ => None,
        })?;
        let (mut seconds, mut nanos) = (0_u64, 0_u32);
        for (field, value) in proto_fields(delay) {
            match (field, value) {
                (1, Field::Varint(s)) => seconds = s.min(i64::MAX as u64),
                (2, Field::Varint(n)) => nanos = u32::try_from(n).unwrap_or(0).min(999_999_999),
                _ => {}
            }
        }
        Some(Duration::new(seconds, nanos))
    })
}

#[cfg(test)]
mod tests;
