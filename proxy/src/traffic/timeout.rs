//! The route timeout: the whole request, retries and backoff included, must produce a response
//! within the route's `timeout`, or the client gets `504` with flag UT.
//!
//! Promise: with no timeout the inner future runs untouched; with one, it is dropped (its tries
//! cancelled) when the deadline passes and [`ProxyError::Timeout`] is returned. Only the time to
//! response headers counts: the body streams afterwards, as Envoy's route timeout.

use crate::http::ProxyError;
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::time::Sleep;
use tower::Service;

#[derive(Clone, Debug)]
pub struct Timeout<S> {
    timeout: Option<Duration>,
    inner: S,
}

pin_project! {
    /// The inner response future raced against the route's deadline (no allocation).
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        #[pin]
        sleep: Option<Sleep>,
        timeout: Duration,
    }
}

// === impl Timeout ===

impl<S> Timeout<S> {
    pub fn new(timeout: Option<Duration>, inner: S) -> Self {
        Self { timeout, inner }
    }
}

impl<S, R> Service<R> for Timeout<S>
where
    S: Service<R, Error = ProxyError>,
{
    type Response = S::Response;
    type Error = ProxyError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> Self::Future {
        ResponseFuture {
            inner: self.inner.call(req),
            sleep: self.timeout.map(tokio::time::sleep),
            timeout: self.timeout.unwrap_or_default(),
        }
    }
}

// === impl ResponseFuture ===

impl<F, T> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, ProxyError>>,
{
    type Output = Result<T, ProxyError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(res) = this.inner.poll(cx) {
            return Poll::Ready(res);
        }
        match this.sleep.as_pin_mut() {
            None => Poll::Pending,
            Some(sleep) => {
                ready!(sleep.poll(cx));
                Poll::Ready(Err(ProxyError::Timeout(*this.timeout)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::traffic::test_util::{mock, rsp};
    use tokio::time::Instant;
    use tower::ServiceExt;

    #[tokio::test(start_paused = true)]
    async fn answers_504_ut_when_the_route_timeout_passes() {
        let (svc, mut handle) = mock::<()>();
        let svc = Timeout::new(Some(Duration::from_millis(500)), svc);
        let start = Instant::now();
        let task = tokio::spawn(svc.oneshot(http::Request::new(())));
        // Held, never answered.
        let (_req, _send) = handle.next_request().await.expect("request reaches inner");
        let err = task.await.unwrap().unwrap_err();
        assert_eq!(Instant::now() - start, Duration::from_millis(500));
        assert!(matches!(err, ProxyError::Timeout(d) if d == Duration::from_millis(500)));
        assert_eq!(
            err.status_and_flag(),
            (http::StatusCode::GATEWAY_TIMEOUT, "UT")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn no_timeout_waits_as_long_as_the_inner_service() {
        let (svc, mut handle) = mock::<()>();
        let svc = Timeout::new(None, svc);
        let start = Instant::now();
        let task = tokio::spawn(svc.oneshot(http::Request::new(())));
        let (_req, send) = handle.next_request().await.expect("request reaches inner");
        // No timer: an hour of (paused) time passes without an answer.
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert!(!task.is_finished());
        send.send_response(rsp(200));
        assert_eq!(task.await.unwrap().unwrap().status(), 200);
        assert_eq!(Instant::now() - start, Duration::from_secs(3600));
    }
}
