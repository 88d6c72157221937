//! reqwest, through reqwest-middleware: a `CLIENT` span per call with the context injected.

use http::Extensions;
use reqwest_middleware::{Middleware, Next};
use tracing::Instrument as _;

use super::client::ClientCall;
use crate::instrument::semconv;

/// `error.type` and the text of a failed call; reqwest's own text quotes the URL, so it is
/// taken without it (and any URL left in the chain is redacted by the caller).
fn failure(error: &reqwest_middleware::Error) -> (&'static str, String) {
    match error {
        reqwest_middleware::Error::Reqwest(e) => {
            let error_type = if e.is_timeout() {
                "timeout"
            } else {
                match semconv::transport_error_type(e) {
                    "_OTHER" if e.is_connect() => "connection_error",
                    "_OTHER" if e.is_redirect() => "redirect_error",
                    "_OTHER" if e.is_body() || e.is_decode() => "body_error",
                    other => other,
                }
            };
            let mut text = e.to_string();
            if let Some(url) = e.url() {
                text = text.replace(url.as_str(), "<url>");
            }
            (error_type, text)
        }
        reqwest_middleware::Error::Middleware(e) => {
            let text = format!("{e:#}");
            (semconv::error_type_from_text(&text), text)
        }
    }
}

/// A [`reqwest_middleware::Middleware`] that makes every call a `CLIENT` span (the
/// client-side HTTP attributes, `http.client.request.duration`) and injects its trace
/// context, so the server continues the trace:
///
/// ```
/// use service_telemetry::instrument::ReqwestMiddleware;
/// let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
///     .with(ReqwestMiddleware::new())
///     .build();
/// # let _ = client;
/// ```
#[derive(Clone, Debug, Default)]
pub struct ReqwestMiddleware {
    _private: (),
}

impl ReqwestMiddleware {
    /// The middleware.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait::async_trait]
impl Middleware for ReqwestMiddleware {
    async fn handle(
        &self,
        mut request: reqwest::Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        let uri = request
            .url()
            .as_str()
            .parse::<http::Uri>()
            .unwrap_or_default();
        let call = ClientCall::start(
            &request.method().clone(),
            &uri,
            request.version(),
            request.headers_mut(),
        );
        let span = call.span.clone();
        let result = next.run(request, extensions).instrument(span).await;
        call.finish(match &result {
            Ok(response) => Ok(response.status().as_u16()),
            Err(e) => Err(failure(e)),
        });
        result
    }
}
