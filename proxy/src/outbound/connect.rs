//! The connection layer: carries one request to the endpoint the balancer chose, over the
//! transport the destination's TLS mode asks for.
//!
//! - Meshed endpoint (auto mTLS or ISTIO_MUTUAL): the shared HTTP/2 mTLS connection to its
//!   proxy, HTTP/1 requests riding as HTTP/2 with their version in a header; upgrades get a
//!   dedicated HTTP/1.1 mTLS connection.
//! - Endpoint without a sidecar (auto), or any endpoint under `tls.mode: DISABLE`: plaintext,
//!   in the request's own protocol.
//! - ISTIO_MUTUAL to an endpoint without a sidecar: refused (503 UF), never plaintext.
//! - SIMPLE / MUTUAL: TLS originated to the endpoint's address ([`crate::tls::originate`]),
//!   HTTP/1.1 over pooled keep-alive connections ([`OriginPool`]); upgrades are refused.
//!
//! `connectionPool.tcp.connectTimeout` replaces `timeouts.connect` for the destination's mesh and
//! originated connections.

use super::OutboundBody;
use crate::config::{Config, Timeouts};
use crate::http::body::UpstreamBody;
use crate::http::client::{ConnPolicy, H2Pool, Lease, PlainClient, Reuse};
use crate::http::{self as h, Body, ProxyError};
use crate::metrics::Metrics;
use crate::telemetry::{Upstream, UpstreamInfo, Workload, peer};
use crate::tls::originate::ClientTls;
use crate::tls::originate::{OriginPool, Originate};
use crate::tls::{self, Identity, OFFER_H1, OFFER_H2};
use crate::traffic::balance::Balance;
use crate::traffic::breaker::{BreakerLayer, BreakerService};
use crate::traffic::cache::Destination;
use crate::traffic::dispatch::NewDestination;
use crate::traffic::endpoint::{Endpoint, EndpointState, NewEndpoint};
use futures_util::future::BoxFuture;
use http::{HeaderValue, Request, Response, Version};
use http_body_util::Either;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock, RwLock};
use std::task::{Context, Poll};
use tower::Layer;

/// What outbound connections share for the life of the proxy: credentials, metrics and the
/// connection pools. Stacks hold this, not the [`crate::ctx::Ctx`] (which holds the stacks).
pub struct Clients {
    pub tls: tls::Store,
    pub metrics: Arc<Metrics>,
    /// HTTP/2 connections to peer proxies, one per (mesh address, expected identity).
    /// Destinations with different reuse limits or keep-alive do not share connections.
    pub mesh: H2Pool<(SocketAddr, Identity, ConnPolicy), OutboundBody>,
    /// Plaintext delivery to endpoints without a sidecar (or under `tls.mode: DISABLE`).
    pub plain: PlainClient<OutboundBody>,
    /// SIMPLE / MUTUAL origination, pooled.
    pub originated: OriginPool<OutboundBody>,
}

/// Builds each destination's stack (balancer → endpoint → connection) for one config version.
#[derive(Clone)]
pub struct NewOutbound {
    clients: Arc<Clients>,
    timeouts: Timeouts,
    /// This proxy's workload, for the peer-metadata header.
    own: Arc<Workload>,
}

/// Builds the endpoint → connection stack for an endpoint of one destination.
#[derive(Clone)]
pub struct NewConnect {
    clients: Arc<Clients>,
    timeouts: Timeouts,
    mode: ClientTls,
    /// When the destination's pooled connections are retired; its TCP keep-alive.
    policy: ConnPolicy,
    /// The service's name: the authority of HTTP/1.0 requests that name none.
    authority: Arc<str>,
    /// The destination's Service port and subset (its Envoy cluster name).
    port: Option<u16>,
    subset: Option<Arc<str>>,
    peer: PeerHeader,
    /// Each endpoint's report, built at its first request and shared by every later one (the
    /// balancer builds an endpoint service per request; a report per request cost allocations
    /// and defeated the per-connection label cache, which compares reports by pointer).
    reports: Arc<RwLock<HashMap<SocketAddr, Arc<UpstreamInfo>, foldhash::fast::RandomState>>>,
}

/// The `x-sinew-peer` value for one destination: built at its first mesh request (this proxy's
/// identity is known by then) and shared by every later one.
#[derive(Clone)]
struct PeerHeader {
    own: Arc<Workload>,
    value: Arc<OnceLock<HeaderValue>>,
}

/// One request to one endpoint.
pub struct Connect {
    clients: Arc<Clients>,
    timeouts: Timeouts,
    mode: ClientTls,
    policy: ConnPolicy,
    authority: Arc<str>,
    ep: Arc<EndpointState>,
    /// What a response reports about this endpoint (telemetry).
    info: Arc<UpstreamInfo>,
    peer: PeerHeader,
}

// === impl Clients ===

impl Clients {
    pub fn new(config: &Config, tls: tls::Store, metrics: Arc<Metrics>) -> Self {
        Self {
            tls,
            metrics,
            mesh: H2Pool::new(),
            plain: PlainClient::new(config.timeouts.connect, config.timeouts.idle, None),
            originated: OriginPool::new(config.timeouts.idle),
        }
    }

    /// The current TLS state, or an error saying the proxy has no mesh credentials.
    pub fn tls(&self) -> Result<Arc<tls::TlsState>, ProxyError> {
        self.tls.current().ok_or_else(|| {
            ProxyError::TlsConfig(tls::TlsError::Rustls(rustls::Error::General(
                "no mesh certificate yet (set tls in the config, or wait for the control plane's CA)"
                    .into(),
            )))
        })
    }
}

// === impl NewOutbound ===

impl NewOutbound {
    pub fn new(clients: Arc<Clients>, config: &Config) -> Self {
        Self {
            clients,
            timeouts: config.timeouts,
            own: config.telemetry.workload.clone(),
        }
    }
}

impl NewDestination<OutboundBody> for NewOutbound {
    type Service = BreakerService<Balance<Destination, NewConnect>>;

    fn new_destination(&self, dest: &Arc<Destination>) -> Self::Service {
        let mut timeouts = self.timeouts;
        if let Some(t) = dest.policy.limits.connect_timeout {
            timeouts.connect = t;
        }
        let balance = Balance::new(
            dest.clone(),
            NewConnect {
                clients: self.clients.clone(),
                timeouts,
                mode: dest.policy.tls.clone(),
                policy: ConnPolicy {
                    reuse: Reuse {
                        max_requests: dest.policy.limits.max_requests_per_connection,
                        max_age: dest.policy.limits.max_connection_duration,
                        idle: dest.policy.limits.idle_timeout,
                        max_streams: dest.policy.limits.max_concurrent_streams,
                    },
                    keepalive: dest.policy.limits.tcp_keepalive,
                },
                authority: dest.name.clone(),
                port: dest
                    .key
                    .service
                    .rsplit_once(':')
                    .and_then(|(_, p)| p.parse().ok()),
                subset: dest.key.subset.clone(),
                peer: PeerHeader {
                    own: self.own.clone(),
                    value: Arc::new(OnceLock::new()),
                },
                reports: Arc::default(),
            },
        );
        BreakerLayer::new(dest.breaker.clone()).layer(balance)
    }
}

// === impl NewConnect ===

impl NewEndpoint<OutboundBody> for NewConnect {
    type Service = Endpoint<Connect>;

    fn new_endpoint(&self, ep: &Arc<EndpointState>) -> Self::Service {
        let mtls = matches!(self.mode, ClientTls::Auto | ClientTls::IstioMutual)
            && ep.endpoint.identity.is_some();
        let info = self.report(&ep.endpoint, mtls);
        // The endpoint layer reports each call's outcome to the outlier detector.
        Endpoint::new(
            ep.clone(),
            Connect {
                clients: self.clients.clone(),
                timeouts: self.timeouts,
                mode: self.mode.clone(),
                policy: self.policy,
                authority: self.authority.clone(),
                ep: ep.clone(),
                info,
                peer: self.peer.clone(),
            },
        )
    }
}

impl NewConnect {
    /// The report of requests answered by `endpoint`: the one built for it before, else a new
    /// one (the map holds at most this destination's endpoints of one config version).
    fn report(&self, endpoint: &crate::config::Endpoint, mtls: bool) -> Arc<UpstreamInfo> {
        let same = |i: &Arc<UpstreamInfo>| i.principal.is_some() == mtls;
        if let Some(i) = self
            .reports
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&endpoint.addr)
            .filter(|i| same(i))
        {
            return i.clone();
        }
        let info = Arc::new(UpstreamInfo::new(
            endpoint,
            &self.authority,
            self.port,
            self.subset.as_deref(),
            mtls,
        ));
        self.reports
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(endpoint.addr, info.clone());
        info
    }
}

// === impl PeerHeader ===

impl PeerHeader {
    /// Adds this proxy's peer metadata for requests to `service`.
    fn add(&self, clients: &Clients, service: &str, headers: &mut http::HeaderMap) {
        let value = match self.value.get() {
            Some(v) => v,
            None => {
                let Some(tls) = clients.tls.current() else {
                    return;
                };
                let Some(v) = peer::encode(&self.own, tls.creds.identity.as_str(), service) else {
                    return;
                };
                self.value.get_or_init(|| v)
            }
        };
        headers.insert(peer::PEER.clone(), value.clone());
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
            clients: self.clients.clone(),
            timeouts: self.timeouts,
            mode: self.mode.clone(),
            policy: self.policy,
            authority: self.authority.clone(),
            ep: self.ep.clone(),
            info: self.info.clone(),
            peer: self.peer.clone(),
        };
        Box::pin(async move {
            let info = this.info.clone();
            let mut res = this.send(req).await;
            if let Ok(rsp) = &mut res {
                match rsp.body_mut() {
                    Either::Left(body) => body.set_upstream(Upstream(info)),
                    // A body the proxy made (rare here): the extension costs an allocation.
                    Either::Right(_) => {
                        rsp.extensions_mut().insert(Upstream(info));
                    }
                }
            }
            res
        })
    }
}

impl Connect {
    /// SIMPLE / MUTUAL: TLS to the endpoint's address for the request's authority, then the
    /// request as HTTP/1.1.
    async fn originate(
        &self,
        tls: &Originate,
        mut req: Request<OutboundBody>,
    ) -> Result<Response<Body>, ProxyError> {
        let addr = self.ep.endpoint.addr;
        if h::is_upgrade(&req) {
            return Err(ProxyError::Tls {
                addr,
                reason: "upgrades are not supported with tls.mode SIMPLE or MUTUAL".into(),
            });
        }
        let authority = req
            .uri()
            .authority()
            .map(|a| a.as_str().to_owned())
            .or_else(|| {
                req.headers()
                    .get(http::header::HOST)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| self.authority.to_string());
        let host = http::uri::Authority::try_from(authority.as_str())
            .map(|a| a.host().to_owned())
            .unwrap_or_else(|_| authority.clone());
        let version = req.version();
        // Origin form on an HTTP/1.1 connection, with the authority in Host.
        if version == Version::HTTP_2
            && let Ok(v) = HeaderValue::from_str(&authority)
        {
            req.headers_mut().insert(http::header::HOST, v);
        }
        h::strip_hop_by_hop(req.headers_mut());
        let pq = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_else(|| "/".into());
        if let Ok(uri) = pq.parse() {
            *req.uri_mut() = uri;
        }
        *req.version_mut() = Version::HTTP_11;
        let (timeout, policy) = (self.timeouts.connect, self.policy);
        let mut rsp = self
            .clients
            .originated
            .send(addr, &host, tls, timeout, policy, req)
            .await?;
        *rsp.version_mut() = version;
        Ok(rsp)
    }

    /// The request over the transport the TLS mode and the endpoint call for. Only the mesh
    /// HTTP/2 path (nearly every request) is inline; the others are boxed so that this future,
    /// boxed and moved per request, stays small.
    async fn send(self, req: Request<OutboundBody>) -> Result<Response<Body>, ProxyError> {
        let ep = &self.ep.endpoint;
        let identity = match (&self.mode, &ep.identity) {
            (ClientTls::Disable, _) | (ClientTls::Auto, None) => None,
            (ClientTls::Auto | ClientTls::IstioMutual, Some(id)) => Some(id),
            (ClientTls::IstioMutual, None) => {
                return Err(ProxyError::Tls {
                    addr: ep.addr,
                    reason: "tls.mode ISTIO_MUTUAL, and the endpoint has no sidecar".into(),
                });
            }
            (ClientTls::Originate(o), _) => return Box::pin(self.originate(o, req)).await,
        };
        match identity {
            None => Box::pin(self.plaintext(req)).await,
            Some(id) if h::is_upgrade(&req) => Box::pin(self.mesh_upgrade(id, req)).await,
            Some(id) => self.mesh(id, req).await,
        }
    }

    /// To an endpoint without a sidecar (or under `tls.mode: DISABLE`): plaintext, in the
    /// request's own protocol.
    async fn plaintext(
        &self,
        mut req: Request<OutboundBody>,
    ) -> Result<Response<Body>, ProxyError> {
        let ep = &self.ep.endpoint;
        if h::is_upgrade(&req) {
            let keepalive = self.policy.keepalive.as_ref();
            let io = h::client::connect_tcp(ep.addr, self.timeouts.connect, keepalive).await?;
            return h::upgrade::forward(io, req).await;
        }
        h::strip_hop_by_hop(req.headers_mut());
        self.clients.plain.send(ep.addr, self.policy, req).await
    }

    /// An upgrade to a meshed endpoint: a dedicated HTTP/1.1 mTLS connection.
    async fn mesh_upgrade(
        &self,
        id: &Identity,
        mut req: Request<OutboundBody>,
    ) -> Result<Response<Body>, ProxyError> {
        let ep = &self.ep.endpoint;
        let keepalive = self.policy.keepalive.as_ref();
        let (clients, timeouts) = (&self.clients, &self.timeouts);
        let io =
            super::mesh::connect(clients, timeouts, ep.mesh_addr, id, OFFER_H1, keepalive).await?;
        req.headers_mut()
            .insert(h::DST_PORT.clone(), HeaderValue::from(ep.addr.port()));
        self.peer
            .add(&self.clients, &self.authority, req.headers_mut());
        h::upgrade::forward(io, req).await
    }

    /// A meshed endpoint: the pooled HTTP/2 mTLS connection to its proxy.
    async fn mesh(
        &self,
        id: &Identity,
        mut req: Request<OutboundBody>,
    ) -> Result<Response<Body>, ProxyError> {
        let ep = &self.ep.endpoint;
        let addr = ep.mesh_addr;
        let clients = self.clients.clone();
        let timeouts = self.timeouts;
        let policy = self.policy;
        let Lease { mut send, stream } = self
            .clients
            .mesh
            .get_with(&(addr, id.clone(), self.policy), self.policy.reuse, || {
                let (clients, identity) = (clients.clone(), id.clone());
                async move {
                    let keepalive = policy.keepalive.as_ref();
                    let io = super::mesh::connect(
                        &clients, &timeouts, addr, &identity, OFFER_H2, keepalive,
                    )
                    .await?;
                    h::client::h2_handshake(io, addr, Default::default()).await
                }
            })
            .await?;
        let version = req.version();
        h::to_mesh(&mut req, &self.ep.port_header, &self.authority);
        self.peer
            .add(&self.clients, &self.authority, req.headers_mut());
        let (req, failed) = h::body::track(req);
        let mut rsp = send
            .send_request(req)
            .await
            .map_err(|e| h::upstream_error(e, &failed))?;
        if version != Version::HTTP_2 {
            *rsp.version_mut() = version;
        }
        Ok(rsp.map(|b| Either::Left(UpstreamBody::new(b, stream))))
    }
}
