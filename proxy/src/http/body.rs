//! The request body the proxy forwards, which remembers whether the client broke it; and the
//! upstream response body, which holds its connection's stream slot, its connection-pool slot and
//! its endpoint's active count until it ends (Envoy counts a request until its stream ends).
//!
//! When a client's body is malformed or cut short mid-stream, the upstream exchange fails with an
//! HTTP/2 reset or a closed connection that no longer says whose fault it was. [`RequestBody`]
//! records the downstream failure so the client gets `400 DPE`, not a misleading `503 UC`.

use super::client::StreamGuard;
use crate::traffic::breaker::Permit;
use crate::traffic::endpoint::ActiveGuard;
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
    /// The request's `http2MaxRequests` / `maxConnections` slot.
    permit: Option<Permit>,
    /// The endpoint's active-request count (what LEAST_REQUEST balances on).
    active: Option<ActiveGuard>,
    /// Which endpoint answered, for the request's report (set by the connection layer; a
    /// reference, so reporting it allocates nothing).
    upstream: Option<crate::telemetry::Upstream>,
}

/// Something a response keeps until its body ends.
pub enum EndGuard {
    Permit(Permit),
    Active(ActiveGuard),
}

/// A response body that can keep an [`EndGuard`] until it ends.
pub trait HoldUntilEnd {
    /// Keeps `guard` until the body ends, fails or is dropped; gives it back when the body has
    /// no more to send (or cannot hold it), so the caller releases it now.
    fn hold_until_end(&mut self, guard: EndGuard) -> Option<EndGuard>;
}

impl HoldUntilEnd for super::Body {
    fn hold_until_end(&mut self, guard: EndGuard) -> Option<EndGuard> {
        match self {
            http_body_util::Either::Left(b) if !http_body::Body::is_end_stream(&b.inner) => {
                match guard {
                    EndGuard::Permit(p) => b.permit = Some(p),
                    EndGuard::Active(a) => b.active = Some(a),
                }
                None
            }
            _ => Some(guard),
        }
    }
}

/// Test bodies hold nothing.
impl HoldUntilEnd for () {
    fn hold_until_end(&mut self, guard: EndGuard) -> Option<EndGuard> {
        Some(guard)
    }
}

impl<B: HoldUntilEnd> HoldUntilEnd for Result<http::Response<B>, super::ProxyError> {
    fn hold_until_end(&mut self, guard: EndGuard) -> Option<EndGuard> {
        match self {
            Ok(rsp) => rsp.body_mut().hold_until_end(guard),
            Err(_) => Some(guard),
        }
    }
}

// === impl UpstreamBody ===

impl UpstreamBody {
    pub fn new(inner: Incoming, stream: Option<StreamGuard>) -> Self {
        Self {
            inner,
            stream,
            permit: None,
            active: None,
            upstream: None,
        }
    }

    /// Records the endpoint this body comes from.
    pub fn set_upstream(&mut self, upstream: crate::telemetry::Upstream) {
        self.upstream = Some(upstream);
    }

    pub fn upstream(&self) -> Option<&crate::telemetry::Upstream> {
        self.upstream.as_ref()
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
        // The stream is over on the last frame or an error: free the slots now, not when the
        // body value is finally dropped somewhere up the stack.
        if frame.as_ref().is_none_or(|f| f.is_err()) || self.inner.is_end_stream() {
            self.stream = None;
            self.permit = None;
            self.active = None;
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
            .field("stream", &self.stream.is_some())
            .field("permit", &self.permit.is_some())
            .field("active", &self.active.is_some())
            .finish()
    }
}
