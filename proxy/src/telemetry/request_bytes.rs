//! The request body both directions carry: the client's, metered for `istio_request_bytes` and
//! `%BYTES_RECEIVED%`.
//!
//! Promise: a body whose size is known before it is read (empty, an exact size hint — hyper's,
//! from `content-length` — or a `content-length` header) is not metered and costs nothing; only a
//! body of unknown length gets one shared counter, which the report reads when the request ends.

use bytes::Buf;
use http::{HeaderMap, Request};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};

/// The request body both directions' stacks carry: the client's, metered.
pub type InBody = RequestBytes<hyper::body::Incoming>;

pin_project! {
    /// A request body that counts the bytes it passes, for `istio_request_bytes` and
    /// `%BYTES_RECEIVED%`. Only a body of unknown length is metered (one shared counter); an
    /// empty body and one with a `content-length` cost nothing.
    pub struct RequestBytes<B> {
        #[pin]
        inner: B,
        count: Option<Arc<AtomicU64>>,
    }
}

impl<B: Body> Body for RequestBytes<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        if let (Some(Ok(f)), Some(count)) = (&frame, this.count.as_ref())
            && let Some(d) = f.data_ref()
        {
            count.fetch_add(d.remaining() as u64, Ordering::Relaxed);
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

/// How many bytes a request's body had.
pub(super) enum RequestSize {
    /// Empty, or the `content-length` it declared.
    Known(u64),
    /// Streamed: counted as it passes.
    Metered(Arc<AtomicU64>),
}

impl RequestSize {
    pub(super) fn get(&self) -> u64 {
        match self {
            Self::Known(n) => *n,
            Self::Metered(c) => c.load(Ordering::Relaxed),
        }
    }
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| std::str::from_utf8(v.as_bytes()).ok()?.parse().ok())
}

/// Meters `req`'s body unless its size is known already (hyper knows it exactly from a
/// `content-length`).
pub(super) fn meter<B: Body>(req: Request<B>) -> (Request<RequestBytes<B>>, RequestSize) {
    let (parts, inner) = req.into_parts();
    let (count, size) = if inner.is_end_stream() {
        (None, RequestSize::Known(0))
    } else if let Some(n) = inner
        .size_hint()
        .exact()
        .or_else(|| content_length(&parts.headers))
    {
        (None, RequestSize::Known(n))
    } else {
        let c = Arc::new(AtomicU64::new(0));
        (Some(c.clone()), RequestSize::Metered(c))
    };
    (
        Request::from_parts(parts, RequestBytes { inner, count }),
        size,
    )
}
