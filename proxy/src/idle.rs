//! Idle timeouts: a connection that moves no bytes (and, for HTTP, has no request in flight) for
//! the configured time is closed, so idle connections cannot pile up and hold memory and file
//! descriptors (`timeouts.idle` for HTTP, `timeouts.tcpIdle` for opaque TCP).
//!
//! Promises: [`Activity::expired`] resolves only after at least `after` with no I/O progress
//! and nothing busy, and at most a quarter of `after` later. The I/O path pays one relaxed
//! atomic store per read or write that made progress, and one atomic add and sub per HTTP
//! request; no locks, no clock reads. The watcher wakes four times per `after`.

use bytes::Buf;
use http::{Request, Response};
use prometheus_client::metrics::counter::Counter;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// How long a connection may stay idle, and the counter of connections closed for it.
#[derive(Clone, Debug)]
pub struct Timeout {
    pub after: Duration,
    pub closed: Counter,
}

/// What a connection's I/O and requests report, and what its watcher reads.
#[derive(Debug, Default)]
pub struct Activity {
    /// Set by every read or write that made progress; cleared by the watcher each tick.
    active: AtomicBool,
    /// Requests whose response has not finished yet.
    busy: AtomicUsize,
}

// === impl Activity ===

impl Activity {
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    fn touch(&self) {
        self.active.store(true, Ordering::Relaxed);
    }

    /// Marks one request in flight until the guard is dropped.
    pub fn busy(self: &Arc<Self>) -> BusyGuard {
        self.busy.fetch_add(1, Ordering::Relaxed);
        BusyGuard(self.clone())
    }

    /// Resolves once the connection has been idle for `after` (see the module promise).
    pub async fn expired(&self, after: Duration) {
        // Checking in quarters bounds the overshoot without re-arming a timer per byte.
        let tick = (after / 4).max(Duration::from_millis(1));
        let mut quiet = Duration::ZERO;
        loop {
            tokio::time::sleep(tick).await;
            let moved = self.active.swap(false, Ordering::Relaxed);
            if moved || self.busy.load(Ordering::Relaxed) > 0 {
                quiet = Duration::ZERO;
            } else {
                quiet += tick;
                if quiet >= after {
                    return;
                }
            }
        }
    }
}

/// One request in flight (see [`Activity::busy`]).
#[derive(Debug)]
pub struct BusyGuard(Arc<Activity>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        // The end of a response counts as activity: the idle period starts from here.
        self.0.touch();
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

pin_project_lite::pin_project! {
    /// An I/O that reports progress to an [`Activity`].
    pub struct Tracked<I> {
        #[pin]
        io: I,
        activity: Arc<Activity>,
    }
}

impl<I> Tracked<I> {
    pub fn new(io: I, activity: Arc<Activity>) -> Self {
        Self { io, activity }
    }
}

impl<I: AsyncRead> AsyncRead for Tracked<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let res = ready!(this.io.poll_read(cx, buf));
        if buf.filled().len() > before {
            this.activity.touch();
        }
        Poll::Ready(res)
    }
}

impl<I: AsyncWrite> AsyncWrite for Tracked<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let res = ready!(this.io.poll_write(cx, buf));
        if matches!(res, Ok(n) if n > 0) {
            this.activity.touch();
        }
        Poll::Ready(res)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let res = ready!(this.io.poll_write_vectored(cx, bufs));
        if matches!(res, Ok(n) if n > 0) {
            this.activity.touch();
        }
        Poll::Ready(res)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_shutdown(cx)
    }
}

/// A hyper service wrapper that keeps the connection busy from each request until its
/// response body is finished (or dropped), so a slow upstream or a long stream is not idle.
#[derive(Clone, Debug)]
pub struct BusyService<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S> BusyService<S> {
    pub fn new(inner: S, activity: Arc<Activity>) -> Self {
        Self { inner, activity }
    }
}

impl<S, ReqB, ResB> hyper::service::Service<Request<ReqB>> for BusyService<S>
where
    S: hyper::service::Service<Request<ReqB>, Response = Response<ResB>>,
{
    type Response = Response<BusyBody<ResB>>;
    type Error = S::Error;
    type Future = BusyFuture<S::Future>;

    fn call(&self, req: Request<ReqB>) -> Self::Future {
        let guard = Some(self.activity.busy());
        BusyFuture {
            inner: self.inner.call(req),
            guard,
        }
    }
}

pin_project_lite::pin_project! {
    pub struct BusyFuture<F> {
        #[pin]
        inner: F,
        guard: Option<BusyGuard>,
    }
}

impl<F, B, E> Future for BusyFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<BusyBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let res = ready!(this.inner.poll(cx));
        let guard = this.guard.take();
        Poll::Ready(res.map(|rsp| rsp.map(|body| BusyBody { body, guard })))
    }
}

pin_project_lite::pin_project! {
    /// A response body that holds its request's [`BusyGuard`] until it ends or is dropped.
    pub struct BusyBody<B> {
        #[pin]
        body: B,
        guard: Option<BusyGuard>,
    }
}

impl<B: http_body::Body> http_body::Body for BusyBody<B>
where
    B::Data: Buf,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.body.poll_frame(cx));
        if frame.is_none() {
            this.guard.take();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::time::Instant;

    const AFTER: Duration = Duration::from_secs(60);

    #[tokio::test(start_paused = true)]
    async fn expires_after_the_idle_time_and_not_before() {
        let a = Activity::new();
        let start = Instant::now();
        a.expired(AFTER).await;
        let waited = start.elapsed();
        assert!(waited >= AFTER && waited <= AFTER + AFTER / 4, "{waited:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn bytes_either_way_restart_the_idle_time() {
        let a = Activity::new();
        let (client, mut peer) = tokio::io::duplex(64);
        let mut io = Tracked::new(client, a.clone());
        let start = Instant::now();
        let traffic = async {
            // Activity every 40 s for 160 s: never 60 s quiet.
            for i in 0..4 {
                tokio::time::sleep(Duration::from_secs(40)).await;
                if i % 2 == 0 {
                    io.write_all(b"x").await.unwrap();
                    peer.read_exact(&mut [0]).await.unwrap();
                } else {
                    peer.write_all(b"y").await.unwrap();
                    io.read_exact(&mut [0]).await.unwrap();
                }
            }
            Instant::now()
        };
        let (last, ()) = tokio::join!(traffic, a.expired(AFTER));
        let quiet = start.elapsed() - (last - start);
        assert!(last - start >= Duration::from_secs(160));
        assert!(quiet >= AFTER && quiet <= AFTER + AFTER / 4, "{quiet:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_in_flight_is_not_idle() {
        let a = Activity::new();
        let guard = a.busy();
        let start = Instant::now();
        let release = async {
            tokio::time::sleep(Duration::from_secs(300)).await;
            drop(guard);
            Instant::now()
        };
        let (released, ()) = tokio::join!(release, a.expired(AFTER));
        let quiet = Instant::now() - released;
        assert!(released - start >= Duration::from_secs(300));
        assert!(quiet >= AFTER && quiet <= AFTER + AFTER / 4, "{quiet:?}");
    }
}
