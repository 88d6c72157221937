//! OTLP exporters built from a resolved [`SignalConfig`], never from the environment.
//!
//! Everything is passed to the builders explicitly: settings given in code take precedence
//! over the environment in opentelemetry-otlp, so the SDK's own environment reading cannot
//! disagree with what [`crate::Config`] resolved and reported.

use crate::config::{Protocol, SignalConfig};

#[cfg(feature = "tls")]
pub(crate) use super::tls::TlsMaterial;

/// Without the `tls` feature there is never anything to configure.
#[cfg(not(feature = "tls"))]
#[derive(Clone, Default)]
pub(crate) struct TlsMaterial;

/// The checked TLS files for `config`'s endpoint; `None` for plaintext.
#[cfg_attr(not(any(feature = "grpc", feature = "http")), allow(dead_code))]
pub(crate) fn tls_for(config: &SignalConfig) -> Result<Option<TlsMaterial>, String> {
    #[cfg(feature = "tls")]
    return super::tls::for_endpoint(config);
    #[cfg(not(feature = "tls"))]
    {
        let _ = config;
        Ok(None)
    }
}

/// Checks what no builder checks for us before anything is built.
pub(crate) fn preflight(config: &SignalConfig) -> Result<(), String> {
    if config.endpoint.starts_with("https://") && !cfg!(feature = "tls") {
        return Err(format!(
            "endpoint {} (from {}) uses https, but this build has no TLS support; refusing to send telemetry in plaintext",
            config.endpoint, config.endpoint_source
        ));
    }
    match config.protocol {
        Protocol::Grpc if !cfg!(feature = "grpc") => Err(
            "protocol grpc is not compiled in (enable the `grpc` cargo feature of service-telemetry)".into(),
        ),
        Protocol::HttpProtobuf if !cfg!(feature = "http") => Err(
            "protocol http/protobuf is not compiled in (enable the `http` cargo feature of service-telemetry)"
                .into(),
        ),
        _ => Ok(()),
    }
}

#[cfg(any(feature = "grpc", feature = "http"))]
fn compression(config: &SignalConfig) -> Option<opentelemetry_otlp::Compression> {
    match config.compression {
        crate::config::Compression::Gzip => Some(opentelemetry_otlp::Compression::Gzip),
        crate::config::Compression::None => None,
    }
}

/// How often an export is retried. Once the final flush has begun, never: a collector that
/// fails it will not recover within the shutdown's bound, and each retry is time a rollout
/// waits for.
#[cfg(any(feature = "grpc", feature = "http"))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Retries {
    /// opentelemetry-otlp's recommended policy (3 retries with exponential backoff) within
    /// the export timeout.
    WhileRunning,
    /// One attempt.
    FinalFlush,
}

#[cfg(any(feature = "grpc", feature = "http"))]
impl Retries {
    /// The same number for the crate's own span exporters.
    pub(crate) fn max_retries(self) -> u32 {
        match self {
            Retries::WhileRunning => 3,
            Retries::FinalFlush => 0,
        }
    }

    fn policy(self) -> opentelemetry_otlp::RetryPolicy {
        match self {
            Retries::WhileRunning => opentelemetry_otlp::RetryPolicy::recommended(),
            Retries::FinalFlush => opentelemetry_otlp::RetryPolicy::disabled(),
        }
    }
}

#[cfg(feature = "grpc")]
pub(crate) fn tonic<B>(
    builder: B,
    config: &SignalConfig,
    tls: Option<&TlsMaterial>,
    retries: Retries,
) -> B
where
    B: opentelemetry_otlp::WithExportConfig + opentelemetry_otlp::WithTonicConfig,
{
    use opentelemetry_otlp::tonic_types::metadata::MetadataMap;
    let mut headers = http::HeaderMap::new();
    for (k, v) in config.headers.iter() {
        if let (Ok(k), Ok(v)) = (
            http::HeaderName::from_bytes(k.as_bytes()),
            http::HeaderValue::from_str(v),
        ) {
            headers.insert(k, v);
        }
    }
    let builder = builder
        .with_endpoint(config.endpoint.clone())
        .with_timeout(config.export_timeout())
        .with_retry_policy(retries.policy())
        .with_metadata(MetadataMap::from_headers(headers));
    #[cfg(feature = "tls")]
    let builder = match tls {
        Some(material) => builder.with_tls_config(super::tls::tonic_config(material)),
        None => builder,
    };
    #[cfg(not(feature = "tls"))]
    let _ = tls;
    match compression(config) {
        Some(c) => builder.with_compression(c),
        None => builder,
    }
}

/// The HTTP client of one signal's exporters, built once so that the running and the final
/// exporter share its connections.
#[cfg(feature = "http")]
pub(crate) struct HttpClient(pub(crate) reqwest::blocking::Client);

#[cfg(feature = "http")]
pub(crate) fn http_client(
    config: &SignalConfig,
    tls: Option<TlsMaterial>,
) -> Result<HttpClient, String> {
    // Our own client: the SDK's default one applies no certificates, and with rustls compiled
    // in it would fail to build on an image without system CA certificates even for http.
    #[cfg(feature = "tls")]
    return super::tls::blocking_client(tls, config.export_timeout()).map(HttpClient);
    #[cfg(not(feature = "tls"))]
    {
        let _ = tls;
        let timeout = config.export_timeout();
        off_runtime(move || {
            reqwest::blocking::Client::builder()
                .timeout(timeout)
                .build()
                .map_err(|e| format!("cannot build the OTLP/HTTP client: {e}"))
        })
        .map(HttpClient)
    }
}

/// Runs `build` on a thread of its own: a blocking reqwest client starts (and, on drop, stops)
/// a runtime of its own, which panics on a thread that is already inside one, as `init` may be.
#[cfg(feature = "http")]
pub(crate) fn off_runtime<T: Send + 'static>(
    build: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    std::thread::Builder::new()
        .name("otlp-http-client".into())
        .spawn(build)
        .map_err(|e| format!("cannot start a thread to build the OTLP/HTTP client: {e}"))?
        .join()
        .map_err(|_| "building the OTLP/HTTP client panicked".to_owned())?
}

/// The crate's OTLP span exporter of either transport ([`super::grpc_spans`],
/// [`super::http_spans`]).
#[cfg(any(feature = "grpc", feature = "http"))]
#[derive(Debug)]
pub(crate) enum SpanTransport {
    #[cfg(feature = "grpc")]
    Grpc(super::grpc_spans::GrpcSpanExporter),
    #[cfg(feature = "http")]
    Http(super::http_spans::HttpSpanExporter),
}

#[cfg(any(feature = "grpc", feature = "http"))]
impl opentelemetry_sdk::trace::SpanExporter for SpanTransport {
    async fn export(
        &self,
        batch: Vec<opentelemetry_sdk::trace::SpanData>,
    ) -> opentelemetry_sdk::error::OTelSdkResult {
        match self {
            #[cfg(feature = "grpc")]
            SpanTransport::Grpc(e) => e.export(batch).await,
            #[cfg(feature = "http")]
            SpanTransport::Http(e) => e.export(batch).await,
        }
    }

    fn shutdown_with_timeout(
        &self,
        timeout: std::time::Duration,
    ) -> opentelemetry_sdk::error::OTelSdkResult {
        match self {
            #[cfg(feature = "grpc")]
            SpanTransport::Grpc(e) => e.shutdown_with_timeout(timeout),
            #[cfg(feature = "http")]
            SpanTransport::Http(e) => e.shutdown_with_timeout(timeout),
        }
    }

    fn force_flush(&self) -> opentelemetry_sdk::error::OTelSdkResult {
        match self {
            #[cfg(feature = "grpc")]
            SpanTransport::Grpc(e) => e.force_flush(),
            #[cfg(feature = "http")]
            SpanTransport::Http(e) => e.force_flush(),
        }
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        match self {
            #[cfg(feature = "grpc")]
            SpanTransport::Grpc(e) => e.set_resource(resource),
            #[cfg(feature = "http")]
            SpanTransport::Http(e) => e.set_resource(resource),
        }
    }
}

#[cfg(feature = "http")]
pub(crate) fn http<B>(builder: B, config: &SignalConfig, client: &HttpClient, retries: Retries) -> B
where
    B: opentelemetry_otlp::WithExportConfig + opentelemetry_otlp::WithHttpConfig,
{
    let headers = config
        .headers
        .iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let builder = builder
        .with_endpoint(config.endpoint.clone())
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_timeout(config.export_timeout())
        .with_retry_policy(retries.policy())
        .with_headers(headers);
    let builder = builder.with_http_client(client.0.clone());
    match compression(config) {
        Some(c) => builder.with_compression(c),
        None => builder,
    }
}
