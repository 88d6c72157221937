//! The OTLP/gRPC span exporter: spans encoded once by [`super::span_encoder`] and sent as the
//! raw body of a unary `TraceService/Export` call over a tonic channel.
//!
//! It replaces opentelemetry-otlp's tonic span exporter, which converts the batch to the
//! generated types (after cloning the whole batch, once per attempt). What goes over the wire,
//! and how failures are retried, is what the OTLP specification asks:
//! - the call on a channel to the resolved endpoint (TLS as configured), with the configured
//!   headers as metadata, gzip when configured, a `grpc-timeout` of what is left of the export
//!   timeout;
//! - a retry after `CANCELLED`, `DEADLINE_EXCEEDED`, `ABORTED`, `OUT_OF_RANGE`, `UNAVAILABLE` or
//!   `DATA_LOSS`, and after `RESOURCE_EXHAUSTED` only when the server's `RetryInfo` says when;
//!   that delay is waited for; any other status is final;
//! - the [`RetrySchedule`]: backoff, at most 3 retries while running and none once the final flush
//!   has begun, all within the export timeout;
//! - a partial success in the response is reported as opentelemetry-otlp reports it.

use std::time::Duration;

use bytes::{Buf as _, BufMut as _, Bytes};
use http::uri::PathAndQuery;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use super::otlp::{Retries, TlsMaterial};
use super::otlp_wire::{RetrySchedule, Via, append_causes, report_partial_success, retry_delay};
use super::span_encoder::SpanRequests;
use crate::config::{Compression, SignalConfig};

const EXPORT: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

#[derive(Debug)]
pub(crate) struct GrpcSpanExporter {
    channel: Channel,
    metadata: MetadataMap,
    gzip: bool,
    timeout: Duration,
    retries: Retries,
    requests: SpanRequests,
}

impl GrpcSpanExporter {
    /// Must be called inside the export runtime: the channel's connection task is spawned on
    /// the runtime current when it is built.
    pub(crate) fn new(
        config: &SignalConfig,
        tls: Option<&TlsMaterial>,
        retries: Retries,
    ) -> Result<Self, String> {
        let endpoint = Endpoint::from_shared(config.endpoint.clone()).map_err(|e| {
            format!(
                "endpoint {} (from {}) is not a URI: {e}",
                config.endpoint, config.endpoint_source
            )
        })?;
        #[cfg(feature = "tls")]
        let endpoint = match tls {
            Some(material) => endpoint
                .tls_config(super::tls::tonic_config(material))
                .map_err(|e| format!("cannot configure TLS for {}: {e}", config.endpoint))?,
            None => endpoint,
        };
        #[cfg(not(feature = "tls"))]
        let _ = tls;
        let channel = endpoint.timeout(config.export_timeout()).connect_lazy();
        let mut metadata = MetadataMap::new();
        for (name, value) in config.headers.iter() {
            // The configuration has already warned about, and left out, any header it could
            // not use; one that gRPC metadata still rejects is left out the same way.
            if let (Ok(name), Ok(value)) = (
                MetadataKey::from_bytes(name.as_bytes()),
                MetadataValue::try_from(value),
            ) {
                metadata.insert(name, value);
            }
        }
        Ok(GrpcSpanExporter {
            channel,
            metadata,
            gzip: matches!(config.compression, Compression::Gzip),
            timeout: config.export_timeout(),
            retries,
            requests: SpanRequests::default(),
        })
    }

    async fn send(&self, body: Bytes) -> Result<(), String> {
        let mut schedule = RetrySchedule::start(self.retries, self.timeout);
        loop {
            let status = match self.send_once(body.clone(), schedule.remaining()).await {
                Ok(response) => {
                    report_partial_success(&response, Via::Grpc);
                    return Ok(());
                }
                Err(status) => status,
            };
            let asked = retry_delay(status.details());
            let retryable = match status.code() {
                Code::Cancelled
                | Code::DeadlineExceeded
                | Code::Aborted
                | Code::OutOfRange
                | Code::Unavailable
                | Code::DataLoss => true,
                Code::ResourceExhausted => asked.is_some(),
                _ => false,
            };
            let pause = schedule.after_failure(describe(&status), retryable, asked)?;
            tokio::time::sleep(pause).await;
        }
    }

    async fn send_once(&self, body: Bytes, timeout: Duration) -> Result<Bytes, Status> {
        let mut client = tonic::client::Grpc::new(self.channel.clone());
        if self.gzip {
            client = client
                .send_compressed(CompressionEncoding::Gzip)
                .accept_compressed(CompressionEncoding::Gzip);
        }
        client
            .ready()
            .await
            .map_err(|e| Status::unavailable(format!("the channel is not ready: {e}")))?;
        let mut request = tonic::Request::new(body);
        *request.metadata_mut() = self.metadata.clone();
        request.set_timeout(timeout);
        let response = client
            .unary(request, PathAndQuery::from_static(EXPORT), RawBytes)
            .await?;
        Ok(response.into_inner())
    }
}

/// The status's code and message, and the transport error behind it (refused, reset, TLS),
/// which the export ledger tells failures apart by.
fn describe(status: &Status) -> String {
    let mut text = format!(
        "gRPC export failed with status {:?}: {}",
        status.code(),
        status.message()
    );
    append_causes(&mut text, std::error::Error::source(status));
    text
}

/// A codec for bodies that are already protobuf: the request is written as it is, the response
/// kept as bytes.
#[derive(Debug, Clone, Copy, Default)]
struct RawBytes;

impl Codec for RawBytes {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawBytes;
    type Decoder = RawBytes;

    fn encoder(&mut self) -> Self::Encoder {
        RawBytes
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawBytes
    }
}

impl Encoder for RawBytes {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawBytes {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

impl SpanExporter for GrpcSpanExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let body = self.requests.encode(&batch)?;
        // The spans' strings are freed here, before the call, not after it.
        drop(batch);
        self.send(Bytes::from(body))
            .await
            .map_err(OTelSdkError::InternalFailure)
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
