//! The connection layer: carries one request to the endpoint the balancer chose, over the
//! transport the destination's TLS mode asks for.
//!
//! - Meshed endpoint (auto mTLS or ISTIO_MUTUAL): the shared HTTP/2 mTLS connection to its
//!   proxy, HTTP/1 requests riding as HTTP/2 with their version in a header; upgrades get a
//!   dedicated HTTP/1.1 mTLS connection.
//! - Endpoint without a sidecar (auto), or any endpoint under `tls.mode: DISABLE`: plaintext,
//!   in the request's own protocol.
//! - ISTIO_MUTUAL to an endpoint without a sidecar: refused (503 UF), never plaintext.
//! - SIMPLE / MUTUAL: TLS origination (`tls/originate.rs`) is not wired yet: refused (503 UF).

use super::OutboundBody;
use crate::config::{Config, TlsMode};
use crate::ctx::Ctx;
use crate::http::{self as h, Body, ProxyError};
use crate::tls::{ALPN_H1, ALPN_H2};
use crate::traffic::balance::Balance;
use crate::traffic::cache::Destination;
use crate::traffic::dispatch::NewDestination;
use crate::traffic::endpoint::{Endpoint, EndpointState, NewEndpoint};
use futures_util::future::BoxFuture;
use http::{HeaderValue, Request, Response, Version};
use http_body_util::Either;
use std::sync::Arc;
use std::task::{Context, Poll};

/// Builds each destination's stack (balancer → endpoint → connection) for one config version.
#[derive(Clone)]
pub struct NewOutbound {
    ctx: Arc<Ctx>,
    config: Arc<Config>,
}

/// Builds the endpoint → connection stack for an endpoint of one destination.
#[derive(Clone)]
pub struct NewConnect {
    ctx: Arc<Ctx>,
    config: Arc<Config>,
    mode: TlsMode,
    /// The service's name: the authority of HTTP/1.0 requests that name none.
    authority: Arc<str>,
}

/// One request to one endpoint.
pub struct Connect {
    ctx: Arc<Ctx>,
    config: Arc<Config>,
    mode: TlsMode,
    authority: Arc<str>,
    ep: Arc<EndpointState>,
}

// === impl NewOutbound ===

impl NewOutbound {
    pub fn new(ctx: Arc<Ctx>, config: Arc<Config>) -> Self {
        Self { ctx, config }
    }
}

impl NewDestination<OutboundBody> for NewOutbound {
    type Service = Balance<Destination, NewConnect>;

    fn new_destination(&self, dest: &Arc<Destination>) -> Self::Service {
        // [breaker: to come] wraps the balancer here, with the destination's limits.
        Balance::new(
            dest.clone(),
            NewConnect {
                ctx: self.ctx.clone(),
                config: self.config.clone(),
                mode: dest.policy.tls,
                authority: dest.name.clone(),
            },
        )
    }
}

// === impl NewConnect ===

impl NewEndpoint<OutboundBody> for NewConnect {
    type Service = Endpoint<Connect>;

    fn new_endpoint(&self, ep: &Arc<EndpointState>) -> Self::Service {
        // [outlier detector: to come] observes the endpoint's results here.
        Endpoint::new(
            ep.clone(),
            Connect {
                ctx: self.ctx.clone(),
                config: self.config.clone(),
                mode: self.mode,
                authority: self.authority.clone(),
                ep: ep.clone(),
            },
        )
    }
}

// === impl Connect ===

impl tower::Service<Request<OutboundBody>> for Connect {
    type Response = Response<Body>;
    type Error = ProxyError;
    type Future = BoxFuture<'static, Result<Response<Body>, ProxyError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<OutboundBody>) -> Self::Future {
        let this = Connect {
            ctx: self.ctx.clone(),
            config: self.config.clone(),
            mode: self.mode,
            authority: self.authority.clone(),
            ep: self.ep.clone(),
        };
        Box::pin(async move { this.send(req).await })
    }
}

impl Connect {
    async fn send(self, mut req: Request<OutboundBody>) -> Result<Response<Body>, ProxyError> {
        let ep = &self.ep.endpoint;
        let identity = match (self.mode, &ep.identity) {
            (TlsMode::Disable, _) | (TlsMode::Auto, None) => None,
            (TlsMode::Auto | TlsMode::IstioMutual, Some(id)) => Some(id),
            (TlsMode::IstioMutual, None) => {
                return Err(ProxyError::Tls {
                    addr: ep.addr,
                    reason: "tls.mode ISTIO_MUTUAL, and the endpoint has no sidecar".into(),
                });
            }
            (TlsMode::Simple | TlsMode::Mutual, _) => {
                return Err(ProxyError::Tls {
                    addr: ep.addr,
                    reason: "tls.mode SIMPLE and MUTUAL (TLS origination) are not supported yet"
                        .into(),
                });
            }
        };
        let Some(id) = identity else {
            if h::is_upgrade(&req) {
                let io = h::client::connect_tcp(ep.addr, self.config.timeouts.connect).await?;
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
        h::to_mesh(&mut req, ep.addr.port(), &self.authority);
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
