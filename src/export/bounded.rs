//! Runs an exporter's I/O on the crate's own Tokio runtime, whatever thread polls it.
//!
//! The SDK's batch processors drive exports from their own OS threads with a plain
//! `block_on`. A tonic channel needs a Tokio reactor and timer; borrowing the service's runtime
//! fails when there is none ("no reactor running") and deadlocks on a current-thread runtime
//! whose only thread is the one waiting. Entering the crate's runtime on every poll gives the
//! export a reactor that some other thread always drives, and bounds it with a timeout.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use tokio::runtime::Handle;

use super::closing::Closing;
use super::otlp::Retries;

/// Polls the inner future inside `handle`'s runtime context, when there is one.
struct InRuntime<'a> {
    handle: Option<Handle>,
    inner: Pin<Box<dyn Future<Output = OTelSdkResult> + Send + 'a>>,
}

impl Future for InRuntime<'_> {
    type Output = OTelSdkResult;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<OTelSdkResult> {
        let this = &mut *self;
        let _entered = this.handle.as_ref().map(Handle::enter);
        this.inner.as_mut().poll(cx)
    }
}

/// The two exporters of one signal: the one used while the service runs (with retries), and
/// the one the final flush uses (one attempt each), built alike otherwise.
#[derive(Debug)]
pub(crate) struct Exporters<E> {
    running: E,
    final_flush: E,
    closing: Closing,
}

impl<E> Exporters<E> {
    /// Both exporters from one `build`, told which retry policy to use.
    pub(crate) fn build(
        closing: &Closing,
        build: impl Fn(Retries) -> Result<E, String>,
    ) -> Result<Self, String> {
        Ok(Exporters {
            running: build(Retries::WhileRunning)?,
            final_flush: build(Retries::FinalFlush)?,
            closing: closing.clone(),
        })
    }
}

/// An OTLP exporter. With a runtime (gRPC), every export runs inside it and ends within
/// `timeout`; without one (blocking HTTP, whose client has its own runtime and timeout), the
/// export is passed through. Once the final flush has begun, exports go to the exporter that
/// does not retry.
#[derive(Debug)]
pub(crate) struct OnRuntime<E> {
    inner: E,
    final_flush: E,
    closing: Closing,
    handle: Option<Handle>,
    timeout: Duration,
}

impl<E> OnRuntime<E> {
    #[cfg_attr(not(feature = "grpc"), allow(dead_code))]
    pub(crate) fn new(exporters: Exporters<E>, handle: Handle, timeout: Duration) -> Self {
        OnRuntime {
            inner: exporters.running,
            final_flush: exporters.final_flush,
            closing: exporters.closing,
            handle: Some(handle),
            timeout,
        }
    }

    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    pub(crate) fn passthrough(exporters: Exporters<E>) -> Self {
        OnRuntime {
            inner: exporters.running,
            final_flush: exporters.final_flush,
            closing: exporters.closing,
            handle: None,
            timeout: Duration::ZERO,
        }
    }

    fn current(&self) -> &E {
        if self.closing.in_final_flush() {
            &self.final_flush
        } else {
            &self.inner
        }
    }

    fn run<'a>(&self, export: impl Future<Output = OTelSdkResult> + Send + 'a) -> InRuntime<'a> {
        let timeout = self.timeout;
        let inner: Pin<Box<dyn Future<Output = OTelSdkResult> + Send + 'a>> = match self.handle {
            // The timer is created on first poll, inside the entered runtime.
            Some(_) => Box::pin(async move {
                match tokio::time::timeout(timeout, export).await {
                    Ok(result) => result,
                    Err(_) => Err(OTelSdkError::Timeout(timeout)),
                }
            }),
            None => Box::pin(export),
        };
        InRuntime {
            handle: self.handle.clone(),
            inner,
        }
    }

    fn enter(&self) -> Option<tokio::runtime::EnterGuard<'_>> {
        self.handle.as_ref().map(Handle::enter)
    }
}

impl<E: opentelemetry_sdk::trace::SpanExporter> opentelemetry_sdk::trace::SpanExporter
    for OnRuntime<E>
{
    async fn export(&self, batch: Vec<opentelemetry_sdk::trace::SpanData>) -> OTelSdkResult {
        self.run(self.current().export(batch)).await
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let _entered = self.enter();
        let _ = self.final_flush.shutdown_with_timeout(timeout);
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        let _entered = self.enter();
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.final_flush.set_resource(resource);
        self.inner.set_resource(resource)
    }
}

impl<E: opentelemetry_sdk::logs::LogExporter> opentelemetry_sdk::logs::LogExporter
    for OnRuntime<E>
{
    async fn export(&self, batch: opentelemetry_sdk::logs::LogBatch<'_>) -> OTelSdkResult {
        self.run(self.current().export(batch)).await
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let _entered = self.enter();
        let _ = self.final_flush.shutdown_with_timeout(timeout);
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.final_flush.set_resource(resource);
        self.inner.set_resource(resource)
    }
}

impl<E: opentelemetry_sdk::metrics::exporter::PushMetricExporter>
    opentelemetry_sdk::metrics::exporter::PushMetricExporter for OnRuntime<E>
{
    async fn export(
        &self,
        metrics: &opentelemetry_sdk::metrics::data::ResourceMetrics,
    ) -> OTelSdkResult {
        self.run(self.current().export(metrics)).await
    }

    fn force_flush(&self) -> OTelSdkResult {
        let _entered = self.enter();
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let _entered = self.enter();
        let _ = self.final_flush.shutdown_with_timeout(timeout);
        self.inner.shutdown_with_timeout(timeout)
    }

    fn temporality(&self) -> opentelemetry_sdk::metrics::Temporality {
        self.inner.temporality()
    }
}
