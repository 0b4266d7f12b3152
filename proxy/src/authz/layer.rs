//! The inbound authorization layer: normalises the request path and checks the request against
//! the workload's AuthorizationPolicies in force *now* (a policy pushed while a connection is
//! kept alive applies to its next request); a denial is Envoy's `403 RBAC: access denied`.
//!
//! With no policy the request passes untouched (path as sent) at the cost of one branch.

use super::path::{self, InvalidPath};
use super::{Check, HttpAttrs, Source};
use crate::ctx::Ctx;
use crate::http::{Body, ProxyError};
use futures_util::future::{Either, Ready, ready};
use http::uri::{PathAndQuery, Uri};
use http::{Method, Request, Response, header};
use std::borrow::Cow;
use std::sync::Arc;
use std::task::{Context, Poll};

/// Checks each request of one inbound connection before `inner` delivers it.
#[derive(Clone)]
pub struct Authorize<S> {
    inner: S,
    ctx: Arc<Ctx>,
    source: Arc<Source>,
    /// Mesh connections name the target port per request (`sinew-dst-port`).
    mesh: bool,
    default_port: Option<u16>,
}

// === impl Authorize ===

impl<S> Authorize<S> {
    pub fn new(
        inner: S,
        ctx: Arc<Ctx>,
        source: Source,
        mesh: bool,
        default_port: Option<u16>,
    ) -> Self {
        Self {
            inner,
            ctx,
            source: Arc::new(source),
            mesh,
            default_port,
        }
    }
}

impl<B, S> tower::Service<Request<B>> for Authorize<S>
where
    S: tower::Service<Request<B>, Response = Response<Body>, Error = ProxyError>,
{
    type Response = Response<Body>;
    type Error = ProxyError;
    type Future = Either<S::Future, Ready<Result<Response<Body>, ProxyError>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let config = self.ctx.config();
        let authz = &config.authorization;
        if authz.is_empty() {
            return Either::Left(self.inner.call(req));
        }
        if normalize_path(&mut req).is_err() {
            return Either::Right(ready(Err(ProxyError::InvalidPath)));
        }
        // The port the request is delivered to, read as delivery reads it; without one the
        // request is refused further in (no port, no delivery).
        let port = match self.mesh {
            true => crate::http::mesh_dst_port(&req).or(self.default_port),
            false => self.default_port,
        };
        let Some(port) = port else {
            return Either::Left(self.inner.call(req));
        };
        let host = req
            .uri()
            .authority()
            .map(|a| a.as_str())
            .or_else(|| req.headers().get(header::HOST)?.to_str().ok());
        let check = Check {
            source: &self.source,
            port,
            http: Some(HttpAttrs {
                host,
                method: req.method().as_str(),
                path: req.uri().path(),
                headers: req.headers(),
            }),
        };
        if authz.decide(&check, &self.ctx.metrics.authz).allowed {
            Either::Left(self.inner.call(req))
        } else {
            Either::Right(ready(Err(ProxyError::Denied)))
        }
    }
}

/// Rewrites the request's path to its normal form (the app receives what the policy saw).
/// `*` (OPTIONS) and CONNECT's authority form have no path to normalise.
fn normalize_path<B>(req: &mut Request<B>) -> Result<(), InvalidPath> {
    if req.method() == Method::CONNECT || req.uri().path() == "*" {
        return Ok(());
    }
    let normal = match path::normalize(req.uri().path())? {
        Cow::Borrowed(_) => return Ok(()),
        Cow::Owned(p) => p,
    };
    let pq = match req.uri().query() {
        Some(q) => format!("{normal}?{q}"),
        None => normal,
    };
    let mut parts = std::mem::take(req.uri_mut()).into_parts();
    parts.path_and_query = Some(PathAndQuery::from_maybe_shared(pq).map_err(|_| InvalidPath)?);
    *req.uri_mut() = Uri::from_parts(parts).map_err(|_| InvalidPath)?;
    Ok(())
}

#[cfg(test)]
mod tests;
