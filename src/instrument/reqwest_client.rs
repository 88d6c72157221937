//! reqwest, through reqwest-middleware: a `CLIENT` span per call with the context injected.

use http::Extensions;
use reqwest_middleware::{Middleware, Next};
use tracing::Instrument as _;

use super::http_client::ClientCall;

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
            Err(e) => Err(e.to_string()),
        });
        result
    }
}
