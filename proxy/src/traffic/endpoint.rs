//! One endpoint of a destination: its live state (active requests, when it joined) and the layer
//! that accounts a request to it.
//!
//! Promises: an endpoint's [`EndpointStats`] belong to its address, not to a config version: the
//! per-service cache hands the same stats to every version of a destination that still lists the
//! address, so counters (and the outlier detector's state, when it lands) survive pushes. The
//! [`Endpoint`] layer counts a request as active from `call` until its response head (or error)
//! arrives, records the endpoint in the request's [`PreviousHosts`] when a retry layer put
//! one there, and reports the call's outcome to the destination's outlier detector.

use super::PreviousHosts;
use super::outlier;
use crate::config;
use crate::http::ProxyError;
use crate::http::body::{EndGuard, HoldUntilEnd};
use http::Request;
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use tokio::time::Instant;

/// Counters of one endpoint address, shared across config versions.
#[derive(Debug)]
pub struct EndpointStats {
    /// Requests sent and not yet answered (the least-request balancer's input).
    active: AtomicUsize,
    /// Requests sent, ever.
    total: AtomicU64,
    /// When the endpoint joined an already-running destination (warmup); `None` for the
    /// endpoints a destination started with, which take full traffic at once.
    pub added: Option<Instant>,
}

/// An endpoint as one destination version sees it: its config, its shared stats and its
/// handle in the destination's outlier detector (when the destination has one).
#[derive(Debug)]
pub struct EndpointState {
    pub endpoint: config::Endpoint,
    /// The endpoint's port as the mesh's destination-port header carries it, built once (the
    /// endpoint service is built per request).
    pub port_header: http::HeaderValue,
    pub stats: Arc<EndpointStats>,
    pub outlier: Option<outlier::Endpoint>,
}

// === impl EndpointStats ===

impl EndpointStats {
    pub fn new(added: Option<Instant>) -> Self {
        Self {
            active: AtomicUsize::new(0),
            total: AtomicU64::new(0),
            added,
        }
    }

    pub fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// Counts a request as active until the guard drops.
    pub fn start(self: &Arc<Self>) -> ActiveGuard {
        self.active.fetch_add(1, Ordering::Relaxed);
        self.total.fetch_add(1, Ordering::Relaxed);
        ActiveGuard(self.clone())
    }
}

// === impl EndpointState ===

impl EndpointState {
    pub fn new(
        endpoint: config::Endpoint,
        stats: Arc<EndpointStats>,
        outlier: Option<outlier::Endpoint>,
    ) -> Self {
        Self {
            port_header: http::HeaderValue::from(endpoint.addr.port()),
            endpoint,
            stats,
            outlier,
        }
    }

    /// True while the outlier detector has this endpoint ejected (one atomic load).
    pub fn is_ejected(&self) -> bool {
        self.outlier.as_ref().is_some_and(|o| o.is_ejected())
    }

    /// Tells the outlier detector (if any) that a call to this endpoint failed with `e`.
    pub fn record_error(&self, e: &ProxyError) {
        if let Some(o) = &self.outlier
            && let Some(outcome) = outlier::Outcome::of_error(e)
        {
            o.record(outcome);
        }
    }

    /// Tells the outlier detector (if any) how one call to this endpoint went.
    pub fn record<B>(&self, result: &Result<http::Response<B>, ProxyError>) {
        if let Some(o) = &self.outlier
            && let Some(outcome) = outlier::Outcome::of(result)
        {
            o.record(outcome);
        }
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.endpoint.addr
    }
}

/// Decrements an endpoint's active count when dropped (the request finished, failed or was
/// cancelled).
#[derive(Debug)]
pub struct ActiveGuard(Arc<EndpointStats>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Builds the per-endpoint service below this layer.
pub trait NewEndpoint<B> {
    type Service: tower::Service<Request<B>, Response = http::Response<crate::http::Body>, Error = ProxyError>;
    fn new_endpoint(&self, ep: &Arc<EndpointState>) -> Self::Service;
}

/// The endpoint layer: accounts one request to the endpoint the balancer chose.
pub struct Endpoint<S> {
    ep: Arc<EndpointState>,
    inner: S,
}

// === impl Endpoint ===

impl<S> Endpoint<S> {
    pub fn new(ep: Arc<EndpointState>, inner: S) -> Self {
        Self { ep, inner }
    }
}

impl<B, S, RspB> tower::Service<Request<B>> for Endpoint<S>
where
    S: tower::Service<Request<B>, Response = http::Response<RspB>, Error = ProxyError>,
    RspB: HoldUntilEnd,
{
    type Response = S::Response;
    type Error = ProxyError;
    type Future = Accounted<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        if let Some(prev) = req.extensions().get::<PreviousHosts>() {
            prev.record(self.ep.addr());
        }
        let guard = self.ep.stats.start();
        Accounted {
            inner: self.inner.call(req),
            guard: Some(guard),
            ep: self.ep.clone(),
        }
    }
}

pin_project! {
    /// The inner future, with the endpoint's active count held until it completes; its result
    /// goes to the outlier detector.
    pub struct Accounted<F> {
        #[pin]
        inner: F,
        guard: Option<ActiveGuard>,
        ep: Arc<EndpointState>,
    }
}

impl<F, B> Future for Accounted<F>
where
    F: Future<Output = Result<http::Response<B>, ProxyError>>,
    B: HoldUntilEnd,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let mut out = ready!(this.inner.poll(cx));
        if let Some(g) = this.guard.take() {
            // Active (for LEAST_REQUEST) while the response body streams, as Envoy counts it.
            drop(out.hold_until_end(EndGuard::Active(g)));
        }
        this.ep.record(&out);
        Poll::Ready(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Body;
    use tower::{Service, ServiceExt};

    pub(crate) fn state(addr: &str) -> Arc<EndpointState> {
        Arc::new(EndpointState::new(
            config::Endpoint::plain(addr.parse().expect("test address")),
            Arc::new(EndpointStats::new(None)),
            None,
        ))
    }

    #[tokio::test]
    async fn a_request_is_active_until_its_response_and_recorded_in_previous_hosts() {
        let ep = state("10.0.0.1:80");
        let (mock, mut handle) = tower_test::mock::pair::<Request<()>, http::Response<Body>>();
        let mut svc = Endpoint::new(ep.clone(), mock.map_err(|_| ProxyError::NoTargetPort));
        let prev = PreviousHosts::default();
        let mut req = Request::new(());
        req.extensions_mut().insert(prev.clone());
        svc.ready().await.unwrap();
        let fut = tokio::spawn(svc.call(req));
        let (_, send) = handle.next_request().await.unwrap();
        assert_eq!(ep.stats.active(), 1);
        assert!(prev.contains(&"10.0.0.1:80".parse().unwrap()));
        send.send_response(http::Response::new(crate::http::empty_body()));
        fut.await.unwrap().unwrap();
        assert_eq!(ep.stats.active(), 0);
        assert_eq!(ep.stats.total(), 1);
    }

    #[tokio::test]
    async fn a_cancelled_request_stops_counting_as_active() {
        let ep = state("10.0.0.1:80");
        let (mock, mut handle) = tower_test::mock::pair::<Request<()>, http::Response<Body>>();
        let mut svc = Endpoint::new(ep.clone(), mock.map_err(|_| ProxyError::NoTargetPort));
        svc.ready().await.unwrap();
        let fut = svc.call(Request::new(()));
        let _pending = handle.next_request().await.unwrap();
        assert_eq!(ep.stats.active(), 1);
        drop(fut);
        assert_eq!(ep.stats.active(), 0);
    }

    #[tokio::test]
    async fn a_streaming_response_stays_active_until_its_body_ends() {
        use crate::traffic::test_util::{data, streaming_upstream_response};
        use http_body_util::BodyExt;
        let ep = state("10.0.0.1:80");
        let (mock, mut handle) = tower_test::mock::pair::<Request<()>, http::Response<Body>>();
        let mut svc = Endpoint::new(ep.clone(), mock.map_err(|_| ProxyError::NoTargetPort));
        svc.ready().await.unwrap();
        let fut = tokio::spawn(svc.call(Request::new(())));
        let (_, send) = handle.next_request().await.unwrap();
        let (upstream, tx) = streaming_upstream_response().await;
        send.send_response(upstream);
        let mut body = fut.await.unwrap().unwrap().into_body();
        tx.send(data("chunk")).unwrap();
        body.frame().await.unwrap().unwrap();
        assert_eq!(ep.stats.active(), 1, "LEAST_REQUEST still counts it");
        drop(tx);
        while let Some(frame) = body.frame().await {
            frame.unwrap();
        }
        assert_eq!(ep.stats.active(), 0);
    }
}
