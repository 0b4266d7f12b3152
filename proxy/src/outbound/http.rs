//! The outbound HTTP service: one request from the app to an endpoint of the destination service.
//!
//! Meshed endpoints get the request over the shared HTTP/2 connection to their proxy (HTTP/1
//! requests ride as HTTP/2 with their original version in a header); upgrades get a dedicated
//! HTTP/1.1 mTLS connection; endpoints without a sidecar are called directly in plaintext.

use crate::config::Service;
use crate::ctx::Ctx;
use crate::http::{self as h, Body, ProxyError};
use crate::metrics::Direction;
use crate::tls::{ALPN_H1, ALPN_H2};
use futures_util::future::BoxFuture;
use http::{HeaderValue, Request, Response, Version};
use http_body_util::Either;
use hyper::body::Incoming;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

#[derive(Clone)]
pub struct OutboundHttp {
    ctx: Arc<Ctx>,
    svc: Arc<Service>,
    dst: SocketAddr,
}

// === impl OutboundHttp ===

impl OutboundHttp {
    pub fn new(ctx: Arc<Ctx>, svc: Arc<Service>, dst: SocketAddr) -> Self {
        Self { ctx, svc, dst }
    }

    async fn forward(&self, mut req: Request<Incoming>) -> Result<Response<Body>, ProxyError> {
        // The service as configured now, not as it was when the connection was accepted: an
        // app's keep-alive connection outlives config changes (new endpoints, say), and each
        // request must see them. If the address no longer belongs to that service (removed, or
        // another service's now), its old endpoints may be other pods' addresses already: the
        // request is refused rather than sent there.
        h::check_host(&req)?;
        let config = self.ctx.config();
        let svc = match config.service(&self.dst) {
            Some(svc) if svc.name == self.svc.name => svc,
            _ => return Err(ProxyError::NoEndpoints(self.svc.name.clone())),
        };
        let ep = svc
            .pick()
            .ok_or_else(|| ProxyError::NoEndpoints(svc.name.clone()))?;
        let Some(id) = &ep.identity else {
            if h::is_upgrade(&req) {
                let timeout = self.ctx.config().timeouts.connect;
                let io = h::client::connect_tcp(ep.addr, timeout).await?;
                return h::upgrade::forward(io, req).await;
            }
            h::strip_hop_by_hop(req.headers_mut());
            return self.ctx.plain.send(ep.addr, req).await;
        };
        if h::is_upgrade(&req) {
            let io = super::mesh::connect(&self.ctx, ep.mesh_addr, id, ALPN_H1).await?;
            req.headers_mut()
                .insert(h::DST_PORT.clone(), HeaderValue::from(ep.addr.port()));
            return h::upgrade::forward(io, req).await;
        }
        let addr = ep.mesh_addr;
        let ctx = self.ctx.clone();
        let identity = id.clone();
        let mut send = self
            .ctx
            .mesh
            .get(&(addr, id.clone()), move || async move {
                let io = super::mesh::connect(&ctx, addr, &identity, ALPN_H2).await?;
                h::client::h2_handshake(io, addr, Default::default()).await
            })
            .await?;
        let version = req.version();
        h::to_mesh(&mut req, ep.addr.port(), &svc.name);
        let (req, failed) = h::body::track(req);
        let mut rsp = send
            .send_request(req)
            .await
            .map_err(|e| h::upstream_error(e, &failed))?;
        if version != Version::HTTP_2 {
            *rsp.version_mut() = version;
        }
        Ok(rsp.map(Either::Left))
    }
}

impl tower::Service<Request<Incoming>> for OutboundHttp {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Incoming>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let rsp = match this.forward(req).await {
                Ok(rsp) => rsp,
                // No endpoints is what a service looks like while its pods start: the 503 and
                // its UH flag say so; a log line per such request made a healthy start look
                // broken.
                Err(e @ ProxyError::NoEndpoints(_)) => {
                    tracing::debug!(service = %this.svc.name, dst = %this.dst, error = %e, "outbound request failed");
                    e.into_response()
                }
                Err(e) => {
                    tracing::info!(service = %this.svc.name, dst = %this.dst, error = %e, "outbound request failed");
                    e.into_response()
                }
            };
            this.ctx
                .metrics
                .request(Direction::Outbound, Some(rsp.status()));
            Ok(rsp)
        })
    }
}
