//! What one connection's requests share for their reports: where reports go, who the parties
//! are, and the label sets resolved for them.
//!
//! Promise: a label set is resolved (strings hashed, interned) once per (connection, peer): a
//! request from the same peer header (inbound) or answered by the same endpoint (outbound) as the
//! one before reuses it under an uncontended lock.

use super::access_log::AccessLog;
use super::labels::{DestinationService, Labels, Reporter, Security, Shared};
use super::peer;
use super::trace::{SpanKind, Tracer};
use super::{UNKNOWN, Upstream, Workload};
use crate::metrics::Metrics;
use http::HeaderValue;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// What one connection's requests share: where reports go and who the parties are.
pub struct Conn {
    pub(super) metrics: Arc<Metrics>,
    pub(super) tracer: Tracer,
    pub(super) log: Arc<AccessLog>,
    pub(super) side: Side,
    own: Arc<Workload>,
    own_principal: Arc<str>,
    pub(super) local: Option<SocketAddr>,
    pub(super) remote: Option<SocketAddr>,
    cache: Mutex<Cache>,
}

pub(super) enum Side {
    /// The app's connection: requests to `service` (its host).
    Outbound { service: Arc<str> },
    /// A connection from a peer proxy (`peer`: its verified identity) or a plaintext client.
    Inbound {
        peer: Option<Arc<str>>,
        services: Arc<[Arc<str>]>,
    },
}

/// The label sets this connection resolved last: a request from the same peer (or to the same
/// endpoint) reuses them without hashing strings.
#[derive(Default)]
struct Cache {
    /// Inbound: the peer header last seen and its labels.
    inbound: Option<(Option<HeaderValue>, Shared)>,
    /// Outbound: the endpoint last answered from and its labels.
    upstream: Option<(Arc<super::UpstreamInfo>, Shared)>,
    /// Outbound: local replies (no endpoint answered).
    local: Option<Shared>,
}

/// Who this proxy is, where reports go: what [`Conn`] is built from.
#[derive(Clone)]
pub struct Reports {
    pub metrics: Arc<Metrics>,
    pub tracer: Tracer,
    pub log: Arc<AccessLog>,
    pub own: Arc<Workload>,
    /// This proxy's SPIFFE identity, "unknown" without a certificate yet.
    pub own_principal: Arc<str>,
}

// === impl Reports ===

impl Reports {
    /// The proxy's reports under `config` (its own workload), with its current identity.
    pub fn new(ctx: &crate::ctx::Ctx, config: &crate::config::Config) -> Self {
        Self {
            metrics: ctx.metrics.clone(),
            tracer: ctx.tracer.clone(),
            log: ctx.access_log.clone(),
            own: config.telemetry.workload.clone(),
            own_principal: ctx.tls.current().map_or_else(
                || Arc::from(UNKNOWN),
                |s| Arc::from(s.creds.identity.as_str()),
            ),
        }
    }
}

// === impl Conn ===

impl Conn {
    /// An app connection whose requests go to `service`.
    pub fn outbound(
        r: Reports,
        service: Arc<str>,
        local: Option<SocketAddr>,
        remote: Option<SocketAddr>,
    ) -> Arc<Self> {
        Self::new(r, Side::Outbound { service }, local, remote)
    }

    /// A connection to this pod: from a peer proxy with the verified identity `peer`, or
    /// plaintext (`None`); the pod serves `services`.
    pub fn inbound(
        r: Reports,
        peer: Option<Arc<str>>,
        services: Arc<[Arc<str>]>,
        local: Option<SocketAddr>,
        remote: Option<SocketAddr>,
    ) -> Arc<Self> {
        Self::new(r, Side::Inbound { peer, services }, local, remote)
    }

    fn new(
        r: Reports,
        side: Side,
        local: Option<SocketAddr>,
        remote: Option<SocketAddr>,
    ) -> Arc<Self> {
        Arc::new(Self {
            metrics: r.metrics,
            tracer: r.tracer,
            log: r.log,
            side,
            own: r.own,
            own_principal: r.own_principal,
            local,
            remote,
            cache: Mutex::new(Cache::default()),
        })
    }

    pub(super) fn kind(&self) -> SpanKind {
        match self.side {
            Side::Outbound { .. } => SpanKind::Client,
            Side::Inbound { .. } => SpanKind::Server,
        }
    }

    /// The labels of an inbound request that carried `header`.
    pub(super) fn inbound_labels(&self, header: Option<HeaderValue>) -> Option<Shared> {
        let Side::Inbound { peer, services } = &self.side else {
            return None;
        };
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((h, labels)) = &cache.inbound
            && *h == header
        {
            return Some(labels.clone());
        }
        let src = peer::resolve(header.as_ref(), peer.as_deref(), services);
        let labels = self.metrics.istio.labels(Labels {
            reporter: Reporter::Destination,
            source: src.workload,
            source_principal: src.principal,
            destination: (*self.own).clone(),
            destination_principal: self.own_principal.clone(),
            destination_service: src.destination_service,
            security: if peer.is_some() {
                Security::MutualTls
            } else {
                Security::None
            },
        });
        cache.inbound = Some((header, labels.clone()));
        Some(labels)
    }

    /// The labels of an outbound request answered from `upstream` (`None`: a local reply).
    pub(super) fn outbound_labels(&self, upstream: Option<&Upstream>) -> Shared {
        let service = match &self.side {
            Side::Outbound { service } => service,
            Side::Inbound { .. } => {
                return self.metrics.istio.interner.overflow_set(Reporter::Source);
            }
        };
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let Some(Upstream(info)) = upstream else {
            if let Some(l) = &cache.local {
                return l.clone();
            }
            let l = self.metrics.istio.labels(Labels {
                destination_service: DestinationService::from_host(service),
                ..self.source_side(None, None)
            });
            cache.local = Some(l.clone());
            return l;
        };
        if let Some((i, l)) = &cache.upstream
            && Arc::ptr_eq(i, info)
        {
            return l.clone();
        }
        let l = self.metrics.istio.labels(Labels {
            destination_service: DestinationService::from_host(&info.service),
            ..self.source_side(info.workload.as_deref(), info.principal.clone())
        });
        cache.upstream = Some((info.clone(), l.clone()));
        l
    }

    /// The client's side of a request: `connection_security_policy` is "unknown" there, as in
    /// Istio (the server's proxy is the one that knows the policy it enforced).
    fn source_side(&self, destination: Option<&Workload>, principal: Option<Arc<str>>) -> Labels {
        Labels {
            reporter: Reporter::Source,
            source: (*self.own).clone(),
            source_principal: self.own_principal.clone(),
            destination: destination.cloned().unwrap_or_else(Workload::unknown),
            destination_principal: principal.unwrap_or_else(|| Arc::from(UNKNOWN)),
            destination_service: DestinationService::unknown(),
            security: Security::Unknown,
        }
    }
}
