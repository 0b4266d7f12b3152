//! The request body the proxy forwards, which remembers whether the client broke it; and the
//! upstream response body, which holds its connection's stream slot until it ends.
//!
//! When a client's body is malformed or cut short mid-stream, the upstream exchange fails with an
//! HTTP/2 reset or a closed connection that no longer says whose fault it was. [`RequestBody`]
//! records the downstream failure so the client gets `400 DPE`, not a misleading `503 UC`.

use super::client::StreamGuard;
use bytes::Bytes;
use http::Request;
use hyper::body::{Frame, Incoming, SizeHint};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};

pub struct RequestBody<B = Incoming> {
    inner: B,
    failed: Option<Arc<AtomicBool>>,
}

/// Whether the client's body failed while it was forwarded.
#[derive(Clone, Default)]
pub struct BodyFailed(Option<Arc<AtomicBool>>);

impl BodyFailed {
    pub fn get(&self) -> bool {
        self.0.as_ref().is_some_and(|f| f.load(Ordering::Acquire))
    }
}

/// Wraps a request's body. Empty bodies (most GETs) are not tracked, so they cost nothing.
pub fn track<B: http_body::Body>(req: Request<B>) -> (Request<RequestBody<B>>, BodyFailed) {
    let (parts, inner) = req.into_parts();
    let failed =
        (!http_body::Body::is_end_stream(&inner)).then(|| Arc::new(AtomicBool::new(false)));
    let flag = BodyFailed(failed.clone());
    (
        Request::from_parts(parts, RequestBody { inner, failed }),
        flag,
    )
}

// === impl RequestBody ===

impl<B> http_body::Body for RequestBody<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        if let (Some(Err(_)), Some(f)) = (&frame, &self.failed) {
            f.store(true, Ordering::Release);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body from an upstream connection. When the pool limits streams per connection
/// (`maxConcurrentStreams`) it holds the stream's slot until the body ends, fails or is dropped;
/// otherwise it is the bare body (no guard, nothing allocated).
pub struct UpstreamBody {
    inner: Incoming,
    stream: Option<StreamGuard>,
}

// === impl UpstreamBody ===

impl UpstreamBody {
    pub fn new(inner: Incoming, stream: Option<StreamGuard>) -> Self {
        Self { inner, stream }
    }
}

impl From<Incoming> for UpstreamBody {
    fn from(inner: Incoming) -> Self {
        Self::new(inner, None)
    }
}

impl http_body::Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        // The stream is over on the last frame or an error: free the slot now, not when the
        // body value is finally dropped somewhere up the stack.
        if frame.as_ref().is_none_or(|f| f.is_err()) || self.inner.is_end_stream() {
            self.stream = None;
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl std::fmt::Debug for UpstreamBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamBody")
            .field("counted", &self.stream.is_some())
            .finish()
    }
}
