//! The route layer's service: per request, find the route, redirect or rewrite, apply header
//! operations, start mirrors, pick a weighted destination and call that destination's
//! `fault → timeout → retry → destination` stack (built once per route table: a request carries
//! no routing state of its own below this layer).

use super::{Action, Route, RouteTable};
use crate::http::{Body, ProxyError};
use crate::traffic::budget::RetryBudget;
use crate::traffic::fault::Fault;
use crate::traffic::replay::{MAX_REPLAY_BYTES, ReplayBody};
use crate::traffic::retry::Retry;
use crate::traffic::timeout::Timeout;
use crate::traffic::{DestinationKey, PreviousHosts};
use bytes::Bytes;
use futures_util::future::{self, BoxFuture, Either};
use http::header::{self, HeaderValue};
use http::{Request, Response, Uri};
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::{Service, ServiceExt};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// One route's stack to one destination.
type RouteStack<S> = Fault<Timeout<Retry<S>>>;

/// What the router reaches one destination through (built by [`crate::traffic::dispatch`]).
pub struct Target<S> {
    /// The destination's stack below the retry layer.
    pub service: S,
    /// The destination's retry limits (`maxRetries`, retry budget).
    pub budget: Arc<RetryBudget>,
    /// More than one endpoint: worth tracking the hosts a request tried (with one, Envoy's
    /// previous-hosts predicate has no other choice to make).
    pub several_endpoints: bool,
}

/// One weighted destination of one route.
struct DestinationStack<S> {
    stack: RouteStack<S>,
    track_hosts: bool,
}

impl<S: Clone> Clone for DestinationStack<S> {
    fn clone(&self) -> Self {
        Self {
            stack: self.stack.clone(),
            track_hosts: self.track_hosts,
        }
    }
}

/// The route layer: a tower service over one [`RouteTable`]. Build a new one when the table
/// changes; requests in flight keep the stacks they started with.
pub struct Router<S> {
    table: Arc<RouteTable>,
    /// Per route, per weighted destination (in the route's order).
    stacks: Arc<[Box<[DestinationStack<S>]>]>,
    /// Per route, per mirror (in the route's order).
    mirrors: Arc<[Box<[S]>]>,
}

impl<S> Clone for Router<S> {
    fn clone(&self) -> Self {
        Self {
            table: self.table.clone(),
            stacks: self.stacks.clone(),
            mirrors: self.mirrors.clone(),
        }
    }
}

// === impl Router ===

impl<S: Clone> Router<S> {
    /// Builds each route's `fault → timeout → retry → destination` stack for each of its
    /// destinations once, with `target` resolving a destination.
    pub fn new(
        table: Arc<RouteTable>,
        mut target: impl FnMut(&DestinationKey) -> Target<S>,
    ) -> Self {
        let stacks = table
            .routes
            .iter()
            .map(|r| {
                let dests: &[_] = match &r.action {
                    Action::Forward(d) => &d.list,
                    Action::Redirect(_) => &[],
                };
                dests
                    .iter()
                    .map(|d| {
                        let t = target(&d.key);
                        let retry = Retry::new(r.retry.clone(), t.budget, t.service);
                        DestinationStack {
                            stack: Fault::new(r.fault.clone(), Timeout::new(r.timeout, retry)),
                            track_hosts: r.retry.retries > 0
                                && r.retry.previous_hosts
                                && t.several_endpoints,
                        }
                    })
                    .collect()
            })
            .collect();
        let mirrors = table
            .routes
            .iter()
            .map(|r| r.mirrors.iter().map(|m| target(&m.key).service).collect())
            .collect();
        Self {
            table,
            stacks,
            mirrors,
        }
    }

    pub fn table(&self) -> &Arc<RouteTable> {
        &self.table
    }
}

impl<S, B> Service<Request<B>> for Router<S>
where
    S: Service<Request<ReplayBody<B>>, Response = Response<Body>, Error = ProxyError>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = ProxyError;
    /// A local answer, the destination's stack as is (no box: nearly every request), or boxed
    /// with the response header operations.
    type Future = Either<
        future::Ready<Result<Response<Body>, ProxyError>>,
        Either<
            tower::util::Oneshot<RouteStack<S>, Request<ReplayBody<B>>>,
            BoxFuture<'static, Result<Response<Body>, ProxyError>>,
        >,
    >;

    /// Always ready: each request drives the inner service's readiness on its own clone.
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let table = &self.table;
        let Some((ri, mi)) = table.find(&req) else {
            return Either::Left(future::ready(Err(ProxyError::NoRoute(format!(
                "{}: no route matches {} {}",
                table.service,
                req.method(),
                req.uri().path()
            )))));
        };
        let route = &table.routes[ri];
        let dests = match &route.action {
            Action::Redirect(r) => return Either::Left(future::ready(Ok(r.respond(&req)))),
            Action::Forward(d) => d,
        };
        if let Some(rw) = &route.rewrite {
            rw.apply(&mut req, mi.map(|m| &route.matches[m]));
        }
        let di = match dests.list.len() {
            1 => 0,
            _ => Route::pick_with(dests, fastrand::u32(0..dests.total)),
        };
        let dst = &dests.list[di];
        let target = &self.stacks[ri][di];
        // Envoy applies the most specific level first: the destination's (weighted cluster)
        // operations, then the route's, so the route's `set` wins on a conflict.
        dst.request_headers.apply(req.headers_mut());
        route.request_headers.apply(req.headers_mut());

        let replay = route.retry.retries > 0 || !route.mirrors.is_empty();
        let (mut parts, body) = req.into_parts();
        let body = ReplayBody::new(body, if replay { MAX_REPLAY_BYTES } else { 0 });
        for (m, svc) in route.mirrors.iter().zip(self.mirrors[ri].iter()) {
            if m.percent.sample_thread() && body.fits(MAX_REPLAY_BYTES) {
                mirror(&parts, &body, svc.clone());
            }
        }
        if target.track_hosts {
            parts.extensions.insert(PreviousHosts::default());
        }
        let req = Request::from_parts(parts, body);
        let call = target.stack.clone().oneshot(req);
        if dst.response_headers.is_empty() && route.response_headers.is_empty() {
            return Either::Right(Either::Left(call));
        }
        let table = table.clone();
        Either::Right(Either::Right(Box::pin(async move {
            let mut rsp = call.await?;
            let route = &table.routes[ri];
            if let Action::Forward(d) = &route.action {
                d.list[di].response_headers.apply(rsp.headers_mut());
            }
            route.response_headers.apply(rsp.headers_mut());
            Ok(rsp)
        })))
    }
}

/// Sends a copy of the request to a mirror's destination (`svc`) in the background, with
/// `-shadow` appended to the host (Envoy's convention, so the receiver can tell). Its response is
/// dropped; its failure is only logged at debug level.
fn mirror<S, B>(parts: &http::request::Parts, body: &ReplayBody<B>, svc: S)
where
    S: Service<Request<ReplayBody<B>>, Response = Response<Body>, Error = ProxyError>
        + Send
        + 'static,
    S::Future: Send,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let Some(body) = body.mirror() else { return };
    let mut req = Request::new(body);
    *req.method_mut() = parts.method.clone();
    *req.version_mut() = parts.version;
    *req.headers_mut() = parts.headers.clone();
    *req.uri_mut() = parts.uri.clone();
    shadow_authority(&mut req);
    tokio::spawn(async move {
        if let Err(e) = svc.oneshot(req).await {
            tracing::debug!(error = %e, "mirrored request failed");
        }
    });
}

/// `host[:port]` → `host-shadow[:port]` in `:authority` and `Host`.
fn shadow_authority<B>(req: &mut Request<B>) {
    fn shadow(a: &str) -> Option<String> {
        let parsed = http::uri::Authority::try_from(a).ok()?;
        Some(match parsed.port_u16() {
            Some(p) => format!("{}-shadow:{p}", parsed.host()),
            None => format!("{}-shadow", parsed.host()),
        })
    }
    if let Some(a) = req.uri().authority().and_then(|a| shadow(a.as_str())) {
        let mut parts = req.uri().clone().into_parts();
        if let Ok(a) = http::uri::Authority::try_from(a) {
            parts.authority = Some(a);
            if let Ok(uri) = Uri::from_parts(parts) {
                *req.uri_mut() = uri;
            }
        }
    }
    if let Some(v) = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(shadow)
        .and_then(|s| HeaderValue::from_str(&s).ok())
    {
        req.headers_mut().insert(header::HOST, v);
    }
}
