//! The error layer of both directions (right inside [`crate::telemetry::layer`], which reports
//! what it renders): turns a [`ProxyError`] into the response a client sees, as Envoy would
//! answer it, and accounts every request once.
//!
//! Promises, for each request:
//! - an error becomes Envoy's status and body text (`no healthy upstream`, `upstream request
//!   timeout`, `upstream connect error or disconnect/reset before headers. reset reason: …`),
//!   the `sinew-response-flags` header, `x-envoy-overloaded: true` on overflow, and the
//!   [`ResponseFlags`] in the response's extensions (absent on responses that collected none);
//! - the error is logged here and only here (debug for the expected ones: no endpoints yet,
//!   overflow, no route, injected faults; info otherwise);
//! - the request is counted once in `sinew_requests_total`, and overflows and timeouts in their
//!   per-service counters.
//!
//! Generic over the request body; the inner stack's errors are [`ProxyError`], this layer's are
//! `Infallible`.

use super::{Body, ProxyError, RESPONSE_FLAGS};
use crate::metrics::{Direction, Metrics};
use crate::traffic::ResponseFlags;
use crate::traffic::breaker::OVERFLOW_BODY;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response};
use http_body_util::{Either, Full};
use pin_project_lite::pin_project;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

pub use crate::traffic::breaker::X_ENVOY_OVERLOADED;

const RESET_BEFORE_HEADERS: &str = "upstream connect error or disconnect/reset before headers. ";

/// The errors layer around `inner`.
#[derive(Clone)]
pub struct Errors<S> {
    inner: S,
    direction: Direction,
    metrics: Arc<Metrics>,
    /// The service the requests are for (outbound), for the per-service counters.
    service: Option<Arc<str>>,
}

// === impl Errors ===

impl<S> Errors<S> {
    pub fn new(inner: S, direction: Direction, metrics: Arc<Metrics>) -> Self {
        Self {
            inner,
            direction,
            metrics,
            service: None,
        }
    }

    /// Counts timeouts against `service`.
    pub fn with_service(mut self, service: Arc<str>) -> Self {
        self.service = Some(service);
        self
    }
}

impl<B, S> tower::Service<Request<B>> for Errors<S>
where
    S: tower::Service<Request<B>, Response = Response<Body>, Error = ProxyError>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Rendered<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // The stack below is always ready (limits answer at once, as Envoy's overflow); an
        // error here would have no request to answer, so it is left to `call`.
        let _ = ready!(self.inner.poll_ready(cx));
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        Rendered {
            inner: self.inner.call(req),
            direction: self.direction,
            metrics: self.metrics.clone(),
            service: self.service.clone(),
        }
    }
}

pin_project! {
    /// The inner response, or the rendered error; counted when it completes.
    pub struct Rendered<F> {
        #[pin]
        inner: F,
        direction: Direction,
        metrics: Arc<Metrics>,
        service: Option<Arc<str>>,
    }
}

impl<F> Future for Rendered<F>
where
    F: Future<Output = Result<Response<Body>, ProxyError>>,
{
    type Output = Result<Response<Body>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let rsp = match ready!(this.inner.poll(cx)) {
            Ok(rsp) => rsp,
            Err(e) => {
                log(&e, *this.direction);
                count(&e, this.metrics, this.service.as_deref());
                let mut rsp = render(&e);
                let added = e.added_flags();
                if !added.is_empty() {
                    add_flags(&mut rsp, added);
                }
                rsp
            }
        };
        this.metrics.request(*this.direction, Some(rsp.status()));
        Poll::Ready(Ok(rsp))
    }
}

fn log(e: &ProxyError, direction: Direction) {
    let dir = match direction {
        Direction::Inbound => "inbound",
        Direction::Outbound => "outbound",
    };
    match e.root() {
        // No endpoints is what a service looks like while its pods start: the 503 and its UH
        // flag say so; a log line per such request made a healthy start look broken. Overflow
        // and injected faults are policy working as configured.
        ProxyError::NoEndpoints(_)
        | ProxyError::NoHealthy(_)
        | ProxyError::Overflow { .. }
        | ProxyError::NoRoute(_)
        | ProxyError::UnknownDestination(_)
        | ProxyError::FaultAbort(_)
        | ProxyError::Denied
        | ProxyError::InvalidPath => {
            tracing::debug!(direction = dir, error = %e, "request failed");
        }
        _ => tracing::info!(direction = dir, error = %e, "request failed"),
    }
}

fn count(e: &ProxyError, metrics: &Metrics, service: Option<&str>) {
    match (e.root(), service) {
        (ProxyError::Overflow { service, limit }, _) => metrics.upstream(service).overflow(*limit),
        (ProxyError::Timeout(_), Some(service)) => {
            metrics.upstream(service).timeouts.inc();
        }
        _ => {}
    }
}

/// Adds `extra` to a rendered reply's flags: extension and header.
fn add_flags(rsp: &mut Response<Body>, extra: ResponseFlags) {
    let mut all = rsp
        .extensions()
        .get::<ResponseFlags>()
        .copied()
        .unwrap_or_default();
    all.insert(extra);
    rsp.extensions_mut().insert(all);
    if let Ok(v) = HeaderValue::from_str(&all.to_string()) {
        rsp.headers_mut().insert(RESPONSE_FLAGS.clone(), v);
    }
}

/// The response for `e`: Envoy's status, flag and body text.
pub fn render(e: &ProxyError) -> Response<Body> {
    let (status, flag) = e.status_and_flag();
    let root = e.root();
    let body: Bytes = match root {
        ProxyError::NoEndpoints(_) | ProxyError::NoHealthy(_) => {
            Bytes::from_static(b"no healthy upstream")
        }
        ProxyError::Timeout(_) => Bytes::from_static(b"upstream request timeout"),
        ProxyError::Overflow { .. } => Bytes::from_static(OVERFLOW_BODY.as_bytes()),
        ProxyError::Connect { .. }
        | ProxyError::ConnectTimeout { .. }
        | ProxyError::Tls { .. }
        | ProxyError::NoMeshAlpn { .. }
        | ProxyError::Handshake { .. }
        | ProxyError::TlsConfig(_) => Bytes::from(format!(
            "{RESET_BEFORE_HEADERS}reset reason: connection failure, transport failure reason: {root}"
        )),
        ProxyError::Upstream(_) => Bytes::from(format!(
            "{RESET_BEFORE_HEADERS}reset reason: connection termination"
        )),
        // Envoy's route table answers 404 with no body.
        ProxyError::NoRoute(_) => Bytes::new(),
        ProxyError::UnknownDestination(_) => Bytes::new(),
        ProxyError::FaultAbort(_) => Bytes::from_static(b"fault filter abort"),
        ProxyError::Denied => Bytes::from_static(b"RBAC: access denied"),
        ProxyError::Downstream(_)
        | ProxyError::NoTargetPort
        | ProxyError::InvalidPath
        | ProxyError::BadHost(_)
        | ProxyError::Shared(_)
        | ProxyError::Flagged { .. } => Bytes::from(format!("{root}\n")),
    };
    let mut rsp = Response::new(Either::Right(Full::new(body)));
    *rsp.status_mut() = status;
    let h = rsp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    if flag != "-" {
        h.insert(RESPONSE_FLAGS.clone(), HeaderValue::from_static(flag));
    }
    match root {
        ProxyError::Overflow { .. } => {
            h.insert(X_ENVOY_OVERLOADED.clone(), HeaderValue::from_static("true"));
        }
        // The client speaks broken HTTP/1: do not wait for its next request.
        ProxyError::BadHost(_) => {
            h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        _ => {}
    }
    if let Some(f) = ResponseFlags::from_name(flag) {
        rsp.extensions_mut().insert(f);
    }
    rsp
}

#[cfg(test)]
mod tests;
