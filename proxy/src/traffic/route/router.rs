//! The route layer's service: per request, find the route, redirect or rewrite, apply header
//! operations, start mirrors, pick a weighted destination and call the route's own
//! `fault → timeout → retry` stack.

use super::{Action, Mirror, Route, RouteTable};
use crate::http::{Body, ProxyError};
use crate::traffic::PreviousHosts;
use crate::traffic::budget::RetryBudget;
use crate::traffic::fault::Fault;
use crate::traffic::replay::{MAX_REPLAY_BYTES, ReplayBody};
use crate::traffic::retry::{Budgets, Retry};
use crate::traffic::timeout::Timeout;
use bytes::Bytes;
use futures_util::future::{self, BoxFuture};
use http::header::{self, HeaderValue};
use http::{Request, Response, Uri};
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::{Service, ServiceExt};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// One route's stack below the router.
type RouteStack<S> = Fault<Timeout<Retry<S>>>;

/// The route layer: a tower service over one [`RouteTable`]. Build a new one when the table
/// changes; requests in flight keep the stacks they started with.
pub struct Router<S> {
    table: Arc<RouteTable>,
    stacks: Arc<[RouteStack<S>]>,
    inner: S,
}

impl<S: Clone> Clone for Router<S> {
    fn clone(&self) -> Self {
        Self {
            table: self.table.clone(),
            stacks: self.stacks.clone(),
            inner: self.inner.clone(),
        }
    }
}

// === impl Router ===

impl<S: Clone> Router<S> {
    /// Builds each route's `fault → timeout → retry → inner` stack once. `budgets` gives the
    /// retry limits of a destination (the per-service cache's).
    pub fn new(table: Arc<RouteTable>, inner: S, budgets: Budgets) -> Self {
        let stacks = table
            .routes
            .iter()
            .map(|r| {
                let retry = Retry::new(r.retry.clone(), budgets.clone(), inner.clone());
                Fault::new(r.fault.clone(), Timeout::new(r.timeout, retry))
            })
            .collect();
        Self {
            table,
            stacks,
            inner,
        }
    }

    /// A router whose destinations have no retry limits (no DestinationRule anywhere).
    pub fn without_budgets(table: Arc<RouteTable>, inner: S) -> Self {
        let unlimited = Arc::new(RetryBudget::unlimited());
        Self::new(table, inner, Arc::new(move |_| unlimited.clone()))
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
    type Future = BoxFuture<'static, Result<Response<Body>, ProxyError>>;

    /// Always ready: each request drives the inner service's readiness on its own clone.
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let table = &self.table;
        let Some((ri, mi)) = table.find(&req) else {
            return Box::pin(future::ready(Err(ProxyError::NoRoute(format!(
                "{}: no route matches {} {}",
                table.service,
                req.method(),
                req.uri().path()
            )))));
        };
        let route = &table.routes[ri];
        let dests = match &route.action {
            Action::Redirect(r) => return Box::pin(future::ready(Ok(r.respond(&req)))),
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
        // Envoy applies the most specific level first: the destination's (weighted cluster)
        // operations, then the route's, so the route's `set` wins on a conflict.
        dst.request_headers.apply(req.headers_mut());
        route.request_headers.apply(req.headers_mut());

        let replay = route.retry.retries > 0 || !route.mirrors.is_empty();
        let (mut parts, body) = req.into_parts();
        let body = ReplayBody::new(body, if replay { MAX_REPLAY_BYTES } else { 0 });
        for m in route.mirrors.iter() {
            if m.percent.sample_thread() && body.fits(MAX_REPLAY_BYTES) {
                self.mirror(&parts, &body, m);
            }
        }
        parts.extensions.insert(dst.key.clone());
        if route.retry.retries > 0 && route.retry.previous_hosts {
            parts.extensions.insert(PreviousHosts::default());
        }
        let req = Request::from_parts(parts, body);
        let call = self.stacks[ri].clone().oneshot(req);
        if dst.response_headers.is_empty() && route.response_headers.is_empty() {
            return Box::pin(call);
        }
        let table = table.clone();
        Box::pin(async move {
            let mut rsp = call.await?;
            let route = &table.routes[ri];
            if let Action::Forward(d) = &route.action {
                d.list[di].response_headers.apply(rsp.headers_mut());
            }
            route.response_headers.apply(rsp.headers_mut());
            Ok(rsp)
        })
    }
}

impl<S> Router<S> {
    /// Sends a copy of the request to the mirror's destination in the background, with
    /// `-shadow` appended to the host (Envoy's convention, so the receiver can tell). Its
    /// response is dropped; its failure is only logged at debug level.
    fn mirror<B>(&self, parts: &http::request::Parts, body: &ReplayBody<B>, m: &Mirror)
    where
        S: Service<Request<ReplayBody<B>>, Response = Response<Body>, Error = ProxyError>
            + Clone
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
        req.extensions_mut().insert(m.key.clone());
        let inner = self.inner.clone();
        tokio::spawn(async move {
            if let Err(e) = inner.oneshot(req).await {
                tracing::debug!(error = %e, "mirrored request failed");
            }
        });
    }
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
