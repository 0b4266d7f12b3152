//! A request body that can be sent more than once: the first reader streams it from the client
//! while keeping a bounded copy, later readers (retries, a mirror) replay the copy and then read
//! on where the first stopped.
//!
//! Promise: the body is never awaited as a whole before the first try; at most
//! [`MAX_REPLAY_BYTES`] are kept per request; a body that grew past the limit is not replayable
//! ([`ReplayBody::can_replay`] says so before a retry is attempted), and a reader that can no longer
//! be served fails with [`NotReplayable`] instead of sending a truncated body.

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

/// Bodies larger than this are not retried (and not mirrored): Linkerd's choice, 64 KiB. It
/// covers nearly all API calls while keeping a retried request's memory bounded.
pub const MAX_REPLAY_BYTES: usize = 64 * 1024;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

pin_project! {
/// The body of a request the retry layer may send again. Cheap when the body is empty (no
/// allocation) or when replay is off (`limit` 0).
pub struct ReplayBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        // Nothing to send, ever: replays freely.
        Empty,
        // Replay off: the client's body, as is.
        Direct { #[pin] body: B },
        Shared { reader: Reader<B> },
    }
}

struct Reader<B> {
    shared: Arc<Mutex<Shared<B>>>,
    /// Next frame index to hand out.
    pos: usize,
    trailers_sent: bool,
    /// Primaries pull the client's body; secondaries (mirrors) only read what a primary
    /// buffered, so a mirror can never take bytes the main request needs.
    primary: bool,
}

struct Shared<B> {
    // Boxed so that `B` need not be `Unpin`.
    inner: Pin<Box<B>>,
    /// Data frames seen so far, while replayable.
    frames: Vec<Bytes>,
    /// Number of data frames pulled from the client (≥ `frames.len()` once overflowed).
    pulled: usize,
    bytes: usize,
    limit: usize,
    overflowed: bool,
    trailers: Option<HeaderMap>,
    done: bool,
    failed: bool,
    primaries: usize,
    /// Readers waiting for another reader to pull the next frame.
    waiters: Vec<Waker>,
}

/// A reader fell behind a body that outgrew the replay buffer, or the client's body failed
/// during an earlier try.
#[derive(Debug, thiserror::Error)]
#[error("request body cannot be replayed (larger than {MAX_REPLAY_BYTES} bytes, or it failed)")]
pub struct NotReplayable;

// === impl ReplayBody ===

impl<B> ReplayBody<B>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    /// Wraps `body`, keeping up to `limit` bytes for replay (0: no replay).
    pub fn new(body: B, limit: usize) -> Self {
        let kind = if body.is_end_stream() {
            Kind::Empty
        } else if limit == 0 {
            Kind::Direct { body }
        } else {
            let overflowed = body.size_hint().lower() > limit as u64;
            Kind::Shared {
                reader: Reader {
                    shared: Arc::new(Mutex::new(Shared {
                        inner: Box::pin(body),
                        frames: Vec::new(),
                        pulled: 0,
                        bytes: 0,
                        limit,
                        overflowed,
                        trailers: None,
                        done: false,
                        failed: false,
                        primaries: 1,
                        waiters: Vec::new(),
                    })),
                    pos: 0,
                    trailers_sent: false,
                    primary: true,
                },
            }
        };
        Self { kind }
    }

    /// Whether a fresh reader could send the whole body again.
    pub fn can_replay(&self) -> bool {
        match &self.kind {
            Kind::Empty => true,
            Kind::Direct { .. } => false,
            Kind::Shared { reader: r } => {
                let s = lock(&r.shared);
                !s.overflowed && !s.failed
            }
        }
    }

    /// Whether the body is known to fit the replay limit before it is read: empty, or its
    /// length (size hint) is at most `limit`. Mirrors are only sent for such bodies.
    pub fn fits(&self, limit: usize) -> bool {
        match &self.kind {
            Kind::Empty => true,
            Kind::Direct { .. } => false,
            Kind::Shared { reader: r } => {
                let s = lock(&r.shared);
                !s.overflowed
                    && !s.failed
                    && s.limit >= limit
                    && s.inner
                        .size_hint()
                        .upper()
                        .is_some_and(|u| u <= limit as u64)
            }
        }
    }

    /// A reader that sends the body again from its start. `None` when the body is not
    /// replayable.
    pub fn replay(&self) -> Option<Self> {
        self.reader(true)
    }

    /// A reader for a mirror: it never pulls the client's body itself while a primary reader
    /// lives.
    pub fn mirror(&self) -> Option<Self> {
        self.reader(false)
    }

    fn reader(&self, primary: bool) -> Option<Self> {
        if !self.can_replay() {
            return None;
        }
        let kind = match &self.kind {
            Kind::Empty => Kind::Empty,
            Kind::Direct { .. } => return None,
            Kind::Shared { reader: r } => {
                if primary {
                    lock(&r.shared).primaries += 1;
                }
                Kind::Shared {
                    reader: Reader {
                        shared: r.shared.clone(),
                        pos: 0,
                        trailers_sent: false,
                        primary,
                    },
                }
            }
        };
        Some(Self { kind })
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn wake_all(waiters: &mut Vec<Waker>) {
    for w in waiters.drain(..) {
        w.wake();
    }
}

impl<B> Body for ReplayBody<B>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project().kind.project() {
            KindProj::Empty => Poll::Ready(None),
            KindProj::Direct { body } => body.poll_frame(cx).map_err(Into::into),
            KindProj::Shared { reader } => reader.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Empty => true,
            Kind::Direct { body } => body.is_end_stream(),
            Kind::Shared { reader: r } => {
                let s = lock(&r.shared);
                s.done && r.pos >= s.pulled && (r.trailers_sent || s.trailers.is_none())
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Empty => SizeHint::with_exact(0),
            Kind::Direct { body } => body.size_hint(),
            Kind::Shared { reader: r } => {
                let s = lock(&r.shared);
                if r.pos == 0 && s.done && !s.overflowed {
                    SizeHint::with_exact(s.bytes as u64)
                } else if r.pos == 0 && s.pulled == 0 {
                    s.inner.size_hint()
                } else {
                    SizeHint::default()
                }
            }
        }
    }
}

// === impl Reader ===

impl<B> Reader<B>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut s = lock(&self.shared);
        // Replay what is buffered first.
        if self.pos < s.pulled {
            if s.overflowed {
                return Poll::Ready(Some(Err(NotReplayable.into())));
            }
            let frame = s.frames[self.pos].clone();
            self.pos += 1;
            return Poll::Ready(Some(Ok(Frame::data(frame))));
        }
        if s.done {
            if !self.trailers_sent
                && let Some(t) = &s.trailers
            {
                self.trailers_sent = true;
                return Poll::Ready(Some(Ok(Frame::trailers(t.clone()))));
            }
            return Poll::Ready(None);
        }
        if s.failed {
            return Poll::Ready(Some(Err(NotReplayable.into())));
        }
        if !self.primary && s.primaries > 0 {
            // Wait for a primary to pull the next frame.
            if !s.waiters.iter().any(|w| w.will_wake(cx.waker())) {
                s.waiters.push(cx.waker().clone());
            }
            return Poll::Pending;
        }
        let polled = s.inner.as_mut().poll_frame(cx);
        let out = match polled {
            Poll::Pending => {
                // The client's body wakes only the last reader that polled it; that reader
                // wakes the others when it gets something.
                if !s.waiters.iter().any(|w| w.will_wake(cx.waker())) {
                    s.waiters.push(cx.waker().clone());
                }
                return Poll::Pending;
            }
            Poll::Ready(None) => {
                s.done = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                s.failed = true;
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                Ok(data) => {
                    s.pulled += 1;
                    self.pos += 1;
                    s.bytes += data.len();
                    if !s.overflowed {
                        if s.bytes > s.limit {
                            // Too large to replay: free the copy, keep streaming.
                            s.overflowed = true;
                            s.frames = Vec::new();
                        } else {
                            s.frames.push(data.clone());
                        }
                    }
                    Poll::Ready(Some(Ok(Frame::data(data))))
                }
                Err(frame) => match frame.into_trailers() {
                    Ok(t) => {
                        s.done = true;
                        self.trailers_sent = true;
                        s.trailers = Some(t.clone());
                        Poll::Ready(Some(Ok(Frame::trailers(t))))
                    }
                    // Neither data nor trailers: hyper has no other kind today.
                    Err(_) => Poll::Ready(Some(Ok(Frame::data(Bytes::new())))),
                },
            },
        };
        let own = cx.waker();
        s.waiters.retain(|w| !w.will_wake(own));
        wake_all(&mut s.waiters);
        out
    }
}

impl<B> Drop for Reader<B> {
    fn drop(&mut self) {
        let mut s = lock(&self.shared);
        if self.primary {
            s.primaries -= 1;
        }
        // This reader may have been the one the client's body would wake: let the others poll.
        wake_all(&mut s.waiters);
    }
}

#[cfg(test)]
mod tests;
