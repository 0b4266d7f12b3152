//! The inbound HTTP service: one request from a peer proxy or a plaintext client to the app.
//!
//! Mesh requests lose the headers proxies exchange (`x-sinew-peer` is read and removed by the
//! telemetry layer in front) and gain `x-forwarded-client-cert` naming the
//! caller; plaintext requests lose any `x-forwarded-client-cert` they brought (only the mesh may
//! vouch for a caller) and any sinew headers. A port with connection-pool limits
//! (`inboundPorts[].connectionPool`) sheds requests over them with `503 UO`.

use crate::authz::{Authorize, Source};
use crate::ctx::Ctx;
use crate::http::body::{EndGuard, HoldUntilEnd};
use crate::http::client::ConnPolicy;
use crate::http::errors::Errors;
use crate::http::{self as h, Body, ProxyError};
use crate::metrics::Direction;
use crate::telemetry::layer::InBody;
use crate::telemetry::layer::{self as telemetry, Observe, Reports};
use crate::tls::PeerInfo;
use crate::traffic::breaker;
use futures_util::future::BoxFuture;
use http::{HeaderValue, Request, Response, Version};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::task::{Context, Poll};

/// The per-connection service hyper drives: the telemetry, errors and authorization layers
/// around [`Forward`].
pub type InboundHttp = Observe<Errors<Authorize<Forward>>>;

/// Builds the service for one inbound connection from `client` to `local`.
pub fn service(
    ctx: Arc<Ctx>,
    peer: Option<PeerInfo>,
    sni: Option<Arc<str>>,
    default_port: Option<u16>,
    app_ip: IpAddr,
    (local, client): (Option<SocketAddr>, SocketAddr),
) -> InboundHttp {
    let metrics = ctx.metrics.clone();
    let config = ctx.config();
    let conn = telemetry::Conn::inbound(
        Reports::new(&ctx, &config),
        peer.as_ref().map(|p| Arc::from(p.identity.as_str())),
        config.telemetry.services.clone(),
        local,
        Some(client),
    );
    let mut source = Source::new(
        peer.as_ref().map(|p| p.identity.as_str()),
        client.ip(),
        local.map(|l| l.ip()),
    );
    source.sni = sni;
    let mesh = peer.is_some();
    let forward = Forward::new(ctx.clone(), peer, default_port, app_ip);
    Observe::new(
        Errors::new(
            Authorize::new(forward, ctx, source, mesh, default_port),
            Direction::Inbound,
            metrics,
        ),
        conn,
    )
}

/// Delivers one request to the app.
#[derive(Clone)]
pub struct Forward {
    ctx: Arc<Ctx>,
    /// Set for mesh connections.
    peer: Option<Arc<PeerInfo>>,
    /// The XFCC value for this connection's requests, built once.
    xfcc: Option<HeaderValue>,
    default_port: Option<u16>,
    /// Where the app is reached: the address the client dialled (see [`super::APP_SOURCE`]).
    app_ip: IpAddr,
}

// === impl Forward ===

impl Forward {
    pub fn new(
        ctx: Arc<Ctx>,
        peer: Option<PeerInfo>,
        default_port: Option<u16>,
        app_ip: IpAddr,
    ) -> Self {
        let xfcc = peer.as_ref().and_then(|p| {
            let by = ctx
                .tls
                .current()
                .map(|s| s.creds.identity.to_string())
                .unwrap_or_default();
            HeaderValue::from_str(&format!(
                "By={by};Hash={};URI={}",
                p.cert_sha256, p.identity
            ))
            .ok()
        });
        Self {
            ctx,
            peer: peer.map(Arc::new),
            xfcc,
            default_port,
            app_ip,
        }
    }

    async fn forward(&self, mut req: Request<InBody>) -> Result<Response<Body>, ProxyError> {
        let port = if self.peer.is_some() {
            h::from_mesh(&mut req).or(self.default_port)
        } else {
            let hs = req.headers_mut();
            hs.remove(&h::DST_PORT);
            hs.remove(&h::ORIG_PROTO);
            self.default_port
        };
        let port = port.ok_or(ProxyError::NoTargetPort)?;
        // The port's connection-pool limits (Istio applies them to inbound too): the slot is
        // held until the app's response body ends.
        let permit = match self.ctx.inbound_breaker(port) {
            Some(b) => Some(b.acquire(breaker::is_http1(&req)).await?),
            None => None,
        };
        let hs = req.headers_mut();
        hs.remove(&h::XFCC);
        if let Some(v) = &self.xfcc {
            hs.insert(h::XFCC.clone(), v.clone());
        }
        let addr = SocketAddr::new(self.app_ip, port);
        if h::is_upgrade(&req) {
            let timeout = self.ctx.config().timeouts.connect;
            let source = Some(super::APP_SOURCE.into());
            let io = h::client::connect_tcp_from(addr, source, timeout).await?;
            return h::upgrade::forward(io, req).await;
        }
        if req.version() != Version::HTTP_2 {
            h::strip_hop_by_hop(req.headers_mut());
        }
        // The app is no DestinationRule's destination: no reuse limits, no keep-alive.
        let mut rsp = self.ctx.app.send(addr, ConnPolicy::default(), req).await?;
        h::clean_response(&mut rsp);
        if let Some(p) = permit {
            drop(rsp.body_mut().hold_until_end(EndGuard::Permit(p)));
        }
        Ok(rsp)
    }
}

impl tower::Service<Request<InBody>> for Forward {
    type Response = Response<Body>;
    type Error = ProxyError;
    type Future = BoxFuture<'static, Result<Response<Body>, ProxyError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<InBody>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { this.forward(req).await })
    }
}
