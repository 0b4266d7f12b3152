//! The route timeout: the whole request, retries and backoff included, must produce a response
//! within the route's `timeout`, or the client gets `504` with flag UT.
//!
//! Promise: with no timeout the inner future runs untouched; with one, it is dropped (its tries
//! cancelled) when the deadline passes and [`ProxyError::Timeout`] is returned. Only the time to
//! response headers counts: the body streams afterwards, as Envoy's route timeout.

use crate::http::ProxyError;
use futures_util::future::{BoxFuture, FutureExt};
use std::task::{Context, Poll};
use std::time::Duration;
use tower::Service;

#[derive(Clone, Debug)]
pub struct Timeout<S> {
    timeout: Option<Duration>,
    inner: S,
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
    S::Future: Send + 'static,
    S::Response: Send + 'static,
{
    type Response = S::Response;
    type Error = ProxyError;
    type Future = BoxFuture<'static, Result<S::Response, ProxyError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> Self::Future {
        let fut = self.inner.call(req);
        match self.timeout {
            None => fut.boxed(),
            Some(t) => async move {
                tokio::time::timeout(t, fut)
                    .await
                    .unwrap_or(Err(ProxyError::Timeout(t)))
            }
            .boxed(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_test::{assert_pending, assert_ready};
    use tower_test::mock;

    #[tokio::test(start_paused = true)]
    async fn answers_504_ut_when_the_route_timeout_passes() {
        let (svc, mut handle) = mock::pair::<(), ()>();
        let mut svc = Timeout::new(
            Some(Duration::from_millis(500)),
            svc.map_err(|_| unreachable_err()),
        );
        handle.allow(1);
        let mut fut = tokio_test::task::spawn(tower::ServiceExt::oneshot(&mut svc, ()));
        let (_, _rsp) = handle.next_request().await.expect("request reaches inner");
        tokio::time::advance(Duration::from_millis(499)).await;
        assert_pending!(fut.poll());
        tokio::time::advance(Duration::from_millis(1)).await;
        let err = assert_ready!(fut.poll()).unwrap_err();
        assert!(matches!(err, ProxyError::Timeout(d) if d == Duration::from_millis(500)));
        assert_eq!(
            err.status_and_flag(),
            (http::StatusCode::GATEWAY_TIMEOUT, "UT")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn no_timeout_waits_as_long_as_the_inner_service() {
        let (svc, mut handle) = mock::pair::<(), ()>();
        let mut svc = Timeout::new(None, svc.map_err(|_| unreachable_err()));
        handle.allow(1);
        let mut fut = tokio_test::task::spawn(tower::ServiceExt::oneshot(&mut svc, ()));
        let (_, rsp) = handle.next_request().await.expect("request reaches inner");
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert_pending!(fut.poll());
        rsp.send_response(());
        assert!(assert_ready!(fut.poll()).is_ok());
    }

    fn unreachable_err() -> ProxyError {
        ProxyError::NoRoute("mock failed".into())
    }

    use tower::ServiceExt as _;
}
