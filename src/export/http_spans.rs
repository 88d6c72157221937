//! The OTLP/HTTP span exporter: spans encoded by [`super::span_encoder`] and posted with the
//! signal's blocking client on the batch processor's thread.
//!
//! It replaces opentelemetry-otlp's HTTP span exporter only to skip that exporter's conversion
//! to the generated message types; what goes over the wire, and how failures are retried, is
//! what the OTLP/HTTP specification asks and opentelemetry-otlp does:
//! - `POST` of `application/x-protobuf` to the resolved endpoint, with the configured headers,
//!   gzip when configured;
//! - a retry after no response at all, 429, 502, 503 or 504; any other status is final; a
//!   `Retry-After` in seconds on 429 or 503 is waited for;
//! - exponential backoff from 100 ms to 1.6 s with up to 100 ms of jitter, at most 3 retries
//!   while running and none once the final flush has begun, all within the export timeout;
//! - a partial success in the response is reported as opentelemetry-otlp reports it.

use std::io::Write as _;
use std::time::Duration;

use bytes::Bytes;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};

use super::otlp::Retries;
use super::otlp_wire::{RetrySchedule, Via, append_causes, report_partial_success};
use super::span_encoder::SpanRequests;
use crate::config::{Compression, SignalConfig};

#[derive(Debug)]
pub(crate) struct HttpSpanExporter {
    client: reqwest::blocking::Client,
    endpoint: reqwest::Url,
    headers: HeaderMap,
    gzip: bool,
    timeout: Duration,
    retries: Retries,
    requests: SpanRequests,
}

impl HttpSpanExporter {
    pub(crate) fn new(
        config: &SignalConfig,
        client: reqwest::blocking::Client,
        retries: Retries,
    ) -> Result<Self, String> {
        let endpoint = reqwest::Url::parse(&config.endpoint).map_err(|e| {
            format!(
                "endpoint {} (from {}) is not a URL: {e}",
                config.endpoint, config.endpoint_source
            )
        })?;
        let mut headers = HeaderMap::new();
        for (name, value) in config.headers.iter() {
            // The configuration has already warned about, and left out, any header it could
            // not use; one that http still rejects is left out the same way.
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                headers.insert(name, value);
            }
        }
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-protobuf"),
        );
        let gzip = matches!(config.compression, Compression::Gzip);
        if gzip {
            headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        Ok(HttpSpanExporter {
            client,
            endpoint,
            headers,
            gzip,
            timeout: config.export_timeout(),
            retries,
            requests: SpanRequests::default(),
        })
    }

    fn gzipped(&self, body: Vec<u8>) -> Result<Bytes, String> {
        if !self.gzip {
            return Ok(body.into());
        }
        let mut encoder = flate2::write::GzEncoder::new(
            Vec::with_capacity(body.len() / 4),
            flate2::Compression::default(),
        );
        encoder
            .write_all(&body)
            .and_then(|()| encoder.finish())
            .map(Bytes::from)
            .map_err(|e| format!("cannot gzip the OTLP request: {e}"))
    }

    fn send(&self, body: Bytes) -> Result<(), String> {
        let mut schedule = RetrySchedule::start(self.retries, self.timeout);
        loop {
            let failure = match self.send_once(body.clone(), schedule.remaining()) {
                Ok(response) => {
                    report_partial_success(&response, Via::Http);
                    return Ok(());
                }
                Err(failure) => failure,
            };
            let pause =
                schedule.after_failure(failure.message, failure.retryable, failure.retry_after)?;
            std::thread::sleep(pause);
        }
    }

    fn send_once(&self, body: Bytes, timeout: Duration) -> Result<Bytes, Failure> {
        let response = self
            .client
            .post(self.endpoint.clone())
            .headers(self.headers.clone())
            .timeout(timeout)
            .body(body)
            .send()
            .map_err(|e| Failure {
                message: {
                    let mut text = format!("HTTP export failed: {e}");
                    append_causes(&mut text, std::error::Error::source(&e));
                    text
                },
                retryable: true,
                retry_after: None,
            })?;
        let status = response.status().as_u16();
        if response.status().is_success() {
            // A body that cannot be read is no reason to resend what was accepted.
            return Ok(response.bytes().unwrap_or_default());
        }
        let throttled = matches!(status, 429 | 503);
        let retry_after = throttled
            .then(|| response.headers().get(reqwest::header::RETRY_AFTER))
            .flatten()
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        Err(Failure {
            message: format!("HTTP export failed with status code {status}"),
            retryable: throttled || matches!(status, 502 | 504),
            retry_after,
        })
    }
}

struct Failure {
    message: String,
    retryable: bool,
    retry_after: Option<Duration>,
}

impl SpanExporter for HttpSpanExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let body = self.requests.encode(&batch)?;
        let body = self.gzipped(body).map_err(OTelSdkError::InternalFailure)?;
        // The spans' strings are freed here, before the request, not after it.
        drop(batch);
        self.send(body).map_err(OTelSdkError::InternalFailure)
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        self.requests.shut_down()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.requests.set_resource(resource);
    }
}

#[cfg(test)]
mod tests;
