//! A response or request body that reports its data frames, trailers and end to an observer:
//! that is how a span lasts exactly as long as a stream.

use std::pin::Pin;
use std::task::{Context, Poll};

use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};

/// What the layers learn from a body as it is streamed.
pub(crate) trait Observer: Send + 'static {
    fn on_data(&mut self, _data: &[u8]) {}
    fn on_trailers(&mut self, _trailers: &HeaderMap) {}
    /// Called once: at the end of the stream, on an error, or when the body is dropped early
    /// (`complete` false: the peer went away or the stream was cancelled).
    fn on_end(&mut self, complete: bool, error: Option<String>);
}

pin_project_lite::pin_project! {
    /// A body wrapped by one of the layers; it behaves exactly like the inner body.
    pub struct InstrumentedBody<B>
    where
        B: Body,
    {
        #[pin]
        inner: B,
        observer: Option<Box<dyn Observer>>,
    }

    impl<B> PinnedDrop for InstrumentedBody<B>
    where
        B: Body,
    {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(mut observer) = this.observer.take() {
                let complete = this.inner.is_end_stream();
                observer.on_end(complete, None);
            }
        }
    }
}

impl<B: Body> InstrumentedBody<B> {
    pub(crate) fn new(inner: B, observer: Box<dyn Observer>) -> Self {
        InstrumentedBody {
            inner,
            observer: Some(observer),
        }
    }
}

impl<B: Body> std::fmt::Debug for InstrumentedBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstrumentedBody").finish_non_exhaustive()
    }
}

impl<B> Body for InstrumentedBody<B>
where
    B: Body,
    B::Error: std::fmt::Display,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        let polled = this.inner.as_mut().poll_frame(cx);
        match &polled {
            Poll::Pending => {}
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(observer) = this.observer.as_mut() {
                    if let Some(data) = frame.data_ref() {
                        // Contiguous for `Bytes`, which is what hyper and tonic use.
                        observer.on_data(bytes::Buf::chunk(data));
                    } else if let Some(trailers) = frame.trailers_ref() {
                        observer.on_trailers(trailers);
                    }
                }
                if this.inner.is_end_stream() {
                    if let Some(mut observer) = this.observer.take() {
                        observer.on_end(true, None);
                    }
                }
            }
            Poll::Ready(Some(Err(e))) => {
                if let Some(mut observer) = this.observer.take() {
                    observer.on_end(false, Some(e.to_string()));
                }
            }
            Poll::Ready(None) => {
                if let Some(mut observer) = this.observer.take() {
                    observer.on_end(true, None);
                }
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// For a body whose exchange has already been accounted for.
pub(crate) struct Unobserved;

impl Observer for Unobserved {
    fn on_end(&mut self, _: bool, _: Option<String>) {}
}
