//! The request body the proxy forwards, which remembers whether the client broke it.
//!
//! When a client's body is malformed or cut short mid-stream, the upstream exchange fails with an
//! HTTP/2 reset or a closed connection that no longer says whose fault it was. [`RequestBody`]
//! records the downstream failure so the client gets `400 DPE`, not a misleading `503 UC`.

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
