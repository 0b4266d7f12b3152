//! The discovery client: one stream to the control plane, subscriptions on demand, ACK/NACK.
//!
//! Promises:
//! - a response is applied whole or not at all: the merged config is validated
//!   ([`Config::from_proto`]) and the trust bundle parsed before anything changes; if either
//!   fails the response is NACKed with the reason and the last good config stays in force;
//! - while the control plane is away the proxy keeps serving with what it has, and reconnects
//!   with jittered exponential backoff, telling the control plane what it already holds so only
//!   changes are sent;
//! - [`Discovery::resolve`] lets a new connection to an unknown address wait (bounded) for the
//!   control plane's answer instead of being passed through by mistake.

use super::identity::TlsMaterial;
use super::{Backoff, Channel};
use crate::config::{Config, ControlPlane};
use crate::ctx::Ctx;
use sinew_proto::config::v1 as cfg;
use sinew_proto::discovery::v1 as pb;
use sinew_proto::discovery::v1::discovery_client::DiscoveryClient;
use sinew_proto::discovery::v1::discovery_request::Kind;
use sinew_proto::discovery::v1::resource::Kind as ResourceKind;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

/// The handle the data path uses.
#[derive(Clone)]
pub struct Discovery {
    inner: Arc<Inner>,
}

struct Inner {
    subscribe: mpsc::UnboundedSender<String>,
    /// Names the control plane has answered (with a resource or "not found").
    answered: Mutex<HashSet<String>>,
    changed: watch::Sender<u64>,
    /// Destinations already logged as refused-while-unresolved (bounded), so a retrying app
    /// does not flood the log.
    refusals_logged: Mutex<HashSet<std::net::SocketAddr>>,
}

/// At most this many refused destinations are remembered for log de-duplication; past it,
/// refusals are still counted but logged at debug level.
const MAX_REFUSALS_LOGGED: usize = 1024;

// === impl Discovery ===

impl Discovery {
    pub fn is_answered(&self, name: &str) -> bool {
        self.inner
            .answered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(name)
    }

    /// True the first time `dst` is refused (up to [`MAX_REFUSALS_LOGGED`] addresses): the
    /// caller logs a warning once per destination. Only the refusal path calls this.
    pub fn first_refusal(&self, dst: std::net::SocketAddr) -> bool {
        let mut logged = self
            .inner
            .refusals_logged
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        logged.len() < MAX_REFUSALS_LOGGED && logged.insert(dst)
    }

    /// Subscribes to `name` if needed and waits up to `timeout` for the control plane's answer.
    pub async fn resolve(&self, name: String, timeout: Duration) {
        if self.is_answered(&name) {
            return;
        }
        let mut changed = self.inner.changed.subscribe();
        let _ = self.inner.subscribe.send(name.clone());
        let _ = tokio::time::timeout(timeout, async {
            while !self.is_answered(&name) {
                if changed.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
    }
}

/// The task that owns the stream.
pub struct Client {
    channel: Channel,
    config: ControlPlane,
    /// The proxy's own config file: listeners, timeouts, static services.
    base: cfg::ProxyConfig,
    ctx: Arc<Ctx>,
    material: TlsMaterial,
    has_config: watch::Sender<bool>,
    inner: Arc<Inner>,
    subscribe_rx: mpsc::UnboundedReceiver<String>,
    /// Resources held, by subscribed name (or base resource name).
    resources: BTreeMap<String, pb::Resource>,
    subscribed: BTreeSet<String>,
}

pub fn new(
    channel: Channel,
    config: ControlPlane,
    base: cfg::ProxyConfig,
    ctx: Arc<Ctx>,
    material: TlsMaterial,
    has_config: watch::Sender<bool>,
) -> (Discovery, Client) {
    let (tx, rx) = mpsc::unbounded_channel();
    let inner = Arc::new(Inner {
        subscribe: tx,
        answered: Mutex::new(HashSet::new()),
        changed: watch::channel(0).0,
        refusals_logged: Mutex::new(HashSet::new()),
    });
    let handle = Discovery {
        inner: inner.clone(),
    };
    let client = Client {
        channel,
        config,
        base,
        ctx,
        material,
        has_config,
        inner,
        subscribe_rx: rx,
        resources: BTreeMap::new(),
        subscribed: BTreeSet::new(),
    };
    (handle, client)
}

#[derive(Debug, thiserror::Error)]
enum StreamError {
    #[error("cannot read the token file {0}: {1}")]
    Token(String, std::io::Error),
    #[error("{0}")]
    Grpc(#[from] tonic::Status),
    #[error("the control plane closed the stream")]
    Closed,
}

// === impl Client ===

impl Client {
    pub async fn run(mut self) {
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        loop {
            match self.session(&mut backoff).await {
                Ok(()) => {}
                Err(e) => {
                    let delay = backoff.next_delay();
                    warn!(error = %e, retry_in = ?delay, "discovery stream lost; keeping the last good config");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    async fn session(&mut self, backoff: &mut Backoff) -> Result<(), StreamError> {
        let token = super::read_token(&self.config.token_file)
            .map_err(|e| StreamError::Token(self.config.token_file.display().to_string(), e))?;
        let (tx, mut rx) = mpsc::channel::<pb::DiscoveryRequest>(64);
        let hello = pb::Hello {
            pod: self.config.pod.clone(),
            namespace: self.config.namespace.clone(),
            labels: self.config.labels.clone().into_iter().collect(),
            known: self
                .resources
                .iter()
                .filter(|(_, r)| !r.version.is_empty())
                .map(|(n, r)| pb::ResourceVersion {
                    name: n.clone(),
                    version: r.version.clone(),
                })
                .collect(),
            subscribe: self.subscribed.iter().cloned().collect(),
        };
        let _ = tx.try_send(request(Kind::Hello(hello)));
        let outbound = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
        let mut req = tonic::Request::new(outbound);
        if let Ok(v) = format!("Bearer {token}").parse() {
            req.metadata_mut().insert("authorization", v);
        }
        let mut client = DiscoveryClient::with_origin(self.channel.clone(), self.channel.origin());
        let mut responses = client.stream(req).await?.into_inner();
        info!("discovery stream open");
        loop {
            tokio::select! {
                msg = responses.message() => {
                    let Some(rsp) = msg? else { return Err(StreamError::Closed) };
                    backoff.reset();
                    let nonce = rsp.nonce.clone();
                    let reply = match self.apply(rsp) {
                        Ok(()) => Kind::Ack(pb::Ack { nonce }),
                        Err(reason) => {
                            warn!(%nonce, %reason, "rejected config from the control plane (NACK); keeping the last good config");
                            Kind::Nack(pb::Nack { nonce, reason })
                        }
                    };
                    if tx.send(request(reply)).await.is_err() {
                        return Err(StreamError::Closed);
                    }
                }
                Some(name) = self.subscribe_rx.recv() => {
                    if self.subscribed.insert(name.clone()) {
                        debug!(%name, "subscribing");
                        let sub = Kind::Subscribe(pb::Names { names: vec![name] });
                        if tx.send(request(sub)).await.is_err() {
                            return Err(StreamError::Closed);
                        }
                    }
                }
            }
        }
    }

    /// Applies one response whole, or returns why it cannot be applied.
    fn apply(&mut self, rsp: pb::DiscoveryResponse) -> Result<(), String> {
        let prepared = prepare(&self.base, &self.resources, rsp);
        let (config, next, bundle) = match prepared {
            Ok(p) => p,
            Err(reason) => {
                self.ctx.metrics.config_rejections.inc();
                self.ctx.set_last_config_error(Some(reason.clone()));
                return Err(reason);
            }
        };
        if let Some((pem, signing_root)) = bundle {
            let reject = |e: crate::tls::TlsError| {
                self.ctx.metrics.config_rejections.inc();
                let reason = format!("invalid trust bundle: {e}");
                self.ctx.set_last_config_error(Some(reason.clone()));
                reason
            };
            // Parsed before anything changes, so a bad bundle changes neither trust.
            let roots = crate::tls::roots_from_pem(pem.as_bytes()).map_err(reject)?;
            self.material
                .set_bundle(pem, signing_root, &self.ctx.tls)
                .map_err(reject)?;
            self.channel.roots().replace(Arc::new(roots));
        }
        self.ctx.set_last_config_error(None);
        self.ctx.set_config(Arc::new(config));
        self.ctx.set_resource_versions(
            next.iter()
                .map(|(n, r)| {
                    (
                        n.clone(),
                        if r.version.is_empty() {
                            "not-found".into()
                        } else {
                            r.version.clone()
                        },
                    )
                })
                .collect(),
        );
        {
            let mut answered = self
                .inner
                .answered
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            answered.extend(next.keys().cloned());
        }
        // Routes may send to other services (a VirtualService's destinations and mirrors):
        // subscribe to those now, so their endpoints are here before a request needs them.
        for name in route_destinations(&next) {
            if !self.subscribed.contains(&name) {
                let _ = self.inner.subscribe.send(name);
            }
        }
        self.resources = next;
        self.inner.changed.send_modify(|g| *g += 1);
        self.has_config.send_replace(true);
        Ok(())
    }
}

/// The merged config, the resources held after the response, and a new trust bundle (PEM and
/// the root the CA signs under).
pub type Prepared = (
    Config,
    BTreeMap<String, pb::Resource>,
    Option<(String, String)>,
);

/// Validates a response against what is held: the merged config and any new trust bundle, or
/// the reason to NACK. Changes nothing. (Public for the fuzz targets.)
pub fn prepare(
    base: &cfg::ProxyConfig,
    held: &BTreeMap<String, pb::Resource>,
    rsp: pb::DiscoveryResponse,
) -> Result<Prepared, String> {
    let mut next = held.clone();
    let mut bundle = None;
    for r in rsp.resources {
        if let Some(ResourceKind::TrustBundle(b)) = &r.kind {
            if b.roots.is_empty() {
                return Err("trust bundle with no roots".into());
            }
            bundle = Some((b.roots.join("\n"), b.signing_root_sha256.clone()));
        }
        next.insert(r.name.clone(), r);
    }
    for name in rsp.removed {
        // Still subscribed, so the answer is now "not found".
        next.insert(
            name.clone(),
            pb::Resource {
                name,
                version: String::new(),
                kind: Some(ResourceKind::NotFound(pb::NotFound {})),
            },
        );
    }
    let merged = merge(base, &next, &rsp.nonce);
    let config = Config::from_proto(merged).map_err(|e| format!("invalid config: {e}"))?;
    Ok((config, next, bundle))
}

/// The services that the held services' routes name (by resource name), other than themselves.
fn route_destinations(resources: &BTreeMap<String, pb::Resource>) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for r in resources.values() {
        let Some(ResourceKind::Service(s)) = &r.kind else {
            continue;
        };
        let http = s.http_routes.iter().flat_map(|route| {
            let to = route.destinations.iter().map(|d| &d.service);
            to.chain(route.mirrors.iter().map(|m| &m.service))
        });
        let tcp = s
            .tcp_routes
            .iter()
            .flat_map(|route| route.destinations.iter().map(|d| &d.service));
        names.extend(http.chain(tcp).filter(|n| !n.is_empty()).cloned());
    }
    names
}

fn request(kind: Kind) -> pb::DiscoveryRequest {
    pb::DiscoveryRequest { kind: Some(kind) }
}

/// The proxy's file config plus everything discovered. A discovered service is added once even
/// if several subscribed names lead to it; an address the file already claims stays the file's.
fn merge(
    base: &cfg::ProxyConfig,
    resources: &BTreeMap<String, pb::Resource>,
    nonce: &str,
) -> cfg::ProxyConfig {
    let mut merged = base.clone();
    merged.version = format!("discovery-{nonce}");
    let mut claimed: HashSet<String> = merged
        .services
        .iter()
        .flat_map(|s| s.addresses.iter().cloned())
        .collect();
    for r in resources.values() {
        match &r.kind {
            Some(ResourceKind::Service(s)) => {
                // No address: nothing can dial it (yet); an address someone claims: theirs.
                if s.addresses.is_empty() || s.addresses.iter().any(|a| claimed.contains(a)) {
                    continue;
                }
                claimed.extend(s.addresses.iter().cloned());
                merged.services.push(s.clone());
            }
            Some(ResourceKind::Settings(s)) => {
                // The stricter mode wins: a STRICT written in the bootstrap file (local mode's
                // `sinew.dev/inbound-mode` annotation) is never relaxed from afar.
                // A mode this proxy does not know is taken as the strictest.
                let strict = cfg::InboundMode::Strict as i32;
                let known = cfg::InboundMode::try_from(s.inbound_mode).is_ok();
                if s.inbound_mode == strict || base.inbound_mode == strict || !known {
                    merged.inbound_mode = strict;
                } else {
                    merged.inbound_mode = s.inbound_mode;
                }
                // Per port likewise: the file's STRICT (workload-wide or on the port) stands.
                for (&port, &mode) in &s.port_inbound_modes {
                    let known = cfg::InboundMode::try_from(mode).is_ok();
                    let file_strict = base.inbound_mode == strict
                        || base.port_inbound_modes.get(&port) == Some(&strict);
                    let mode = if file_strict || !known { strict } else { mode };
                    merged.port_inbound_modes.insert(port, mode);
                }
                // The file's policies (if any) and the control plane's all apply.
                if let Some(from_cp) = &s.authorization {
                    let mut all = base.authorization.clone().unwrap_or_default();
                    all.policies.extend(from_cp.policies.iter().cloned());
                    merged.authorization = Some(all);
                }
                merged.opaque_ports.extend(s.opaque_ports.iter().copied());
                // Both lists count: the file's ranges hold before the control plane answers,
                // and the control plane may know ranges the file does not.
                for r in &s.mesh_address_ranges {
                    if !merged.mesh_address_ranges.contains(r) {
                        merged.mesh_address_ranges.push(r.clone());
                    }
                }
                // A port the bootstrap file declares stays as the file says.
                let mut ports: Vec<cfg::InboundPort> = s
                    .inbound_ports
                    .iter()
                    .filter(|p| !base.inbound_ports.iter().any(|b| b.port == p.port))
                    .cloned()
                    .collect();
                ports.sort_by_key(|p| p.port);
                ports.dedup_by_key(|p| p.port);
                merged.inbound_ports.extend(ports);
                if let Some(from_cp) = &s.telemetry {
                    merged.telemetry = Some(merge_telemetry(base.telemetry.as_ref(), from_cp));
                }
            }
            _ => {}
        }
    }
    merged
}

/// The control plane's telemetry over the bootstrap's: each field the control plane sets wins;
/// an OTLP endpoint the bootstrap names stays when the control plane sends none.
fn merge_telemetry(base: Option<&cfg::Telemetry>, cp: &cfg::Telemetry) -> cfg::Telemetry {
    let mut m = base.cloned().unwrap_or_default();
    if cp.workload.is_some() {
        m.workload = cp.workload.clone();
    }
    if !cp.services.is_empty() {
        m.services = cp.services.clone();
    }
    if let Some(t) = &cp.tracing {
        let mut tracing = m.tracing.take().unwrap_or_default();
        if !t.otlp_endpoint.is_empty() {
            tracing.otlp_endpoint = t.otlp_endpoint.clone();
        }
        if t.random_sampling_percentage.is_some() {
            tracing.random_sampling_percentage = t.random_sampling_percentage;
        }
        tracing.disable_span_reporting = t.disable_span_reporting;
        m.tracing = Some(tracing);
    }
    if cp.access_log.is_some() {
        m.access_log = cp.access_log;
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(name: &str, addr: &str, endpoint: &str, identity: &str) -> pb::Resource {
        pb::Resource {
            name: addr.into(),
            version: "v1".into(),
            kind: Some(ResourceKind::Service(cfg::Service {
                name: name.into(),
                addresses: vec![addr.into()],
                endpoints: vec![cfg::Endpoint {
                    address: endpoint.into(),
                    identity: identity.into(),
                    ..Default::default()
                }],
                ..Default::default()
            })),
        }
    }

    fn rsp(resources: Vec<pb::Resource>, removed: Vec<&str>) -> pb::DiscoveryResponse {
        pb::DiscoveryResponse {
            nonce: "7".into(),
            resources,
            removed: removed.into_iter().map(String::from).collect(),
        }
    }

    #[test]
    fn services_that_routes_send_to_are_named_for_subscription() {
        let mut web = service(
            "web.shop.svc.cluster.local",
            "198.18.0.10:80",
            "198.18.1.2:8080",
            "",
        );
        if let Some(ResourceKind::Service(s)) = &mut web.kind {
            s.http_routes = vec![cfg::HttpRoute {
                destinations: vec![
                    cfg::RouteDestination::default(),
                    cfg::RouteDestination {
                        service: "web-v2.shop.svc.cluster.local:80".into(),
                        ..Default::default()
                    },
                ],
                mirrors: vec![cfg::Mirror {
                    service: "shadow.shop.svc.cluster.local:80".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }];
            s.tcp_routes = vec![cfg::TcpRoute {
                destinations: vec![cfg::RouteDestination {
                    service: "db.shop.svc.cluster.local:5432".into(),
                    ..Default::default()
                }],
            }];
        }
        let held = BTreeMap::from([("198.18.0.10:80".to_string(), web)]);
        assert_eq!(
            route_destinations(&held).into_iter().collect::<Vec<_>>(),
            [
                "db.shop.svc.cluster.local:5432",
                "shadow.shop.svc.cluster.local:80",
                "web-v2.shop.svc.cluster.local:80",
            ]
        );
    }

    #[test]
    fn a_valid_response_merges_with_the_file_config() {
        let (config, next, bundle) = prepare(
            &cfg::ProxyConfig::default(),
            &BTreeMap::new(),
            rsp(
                vec![service(
                    "web.shop.svc.cluster.local",
                    "198.18.0.10:80",
                    "198.18.1.2:8080",
                    "spiffe://cluster.local/ns/shop/sa/web",
                )],
                vec![],
            ),
        )
        .unwrap();
        assert!(config.service(&"198.18.0.10:80".parse().unwrap()).is_some());
        assert_eq!(config.version, "discovery-7");
        assert_eq!(next.len(), 1);
        assert!(bundle.is_none());
    }

    #[test]
    fn an_invalid_resource_is_refused_with_the_reason() {
        let held = BTreeMap::new();
        let err = prepare(
            &cfg::ProxyConfig::default(),
            &held,
            rsp(
                vec![service(
                    "web",
                    "198.18.0.10:80",
                    "198.18.1.2:8080",
                    "not-a-spiffe-id",
                )],
                vec![],
            ),
        )
        .err()
        .unwrap();
        assert!(
            err.contains("identity") && err.contains("not-a-spiffe-id"),
            "{err}"
        );
        let err = prepare(
            &cfg::ProxyConfig::default(),
            &held,
            rsp(
                vec![pb::Resource {
                    name: "trust-bundle".into(),
                    version: "1".into(),
                    kind: Some(ResourceKind::TrustBundle(pb::TrustBundle {
                        roots: vec![],
                        ..Default::default()
                    })),
                }],
                vec![],
            ),
        )
        .err()
        .unwrap();
        assert!(err.contains("trust bundle"), "{err}");
    }

    /// A client whose stream is never opened: only [`Client::apply`] is driven.
    fn client() -> (Client, Arc<Ctx>, crate::testing::TempDir) {
        let dir = crate::testing::TempDir::new("discovery");
        let root = dir.path().join("root.pem");
        std::fs::write(&root, crate::testing::TestCa::new("discovery").root_pem()).unwrap();
        let cp = ControlPlane {
            address: "127.0.0.1:1".into(),
            root_cert: root,
            identity: crate::tls::Identity::parse(crate::config::DEFAULT_CONTROL_PLANE_IDENTITY)
                .unwrap(),
            token_file: dir.path().join("token"),
            certificate_ttl: crate::config::DEFAULT_CERTIFICATE_TTL,
            resolve_timeout: crate::config::DEFAULT_RESOLVE_TIMEOUT,
            pod: "client-0".into(),
            namespace: "shop".into(),
            labels: Default::default(),
        };
        let channel = Channel::new(&cp).unwrap();
        let base = cfg::ProxyConfig::default();
        let ctx = Arc::new(Ctx::new(
            Arc::new(Config::from_proto(base.clone()).unwrap()),
            crate::tls::Store::default(),
            Arc::new(crate::metrics::Metrics::new()),
        ));
        let (_, client) = new(
            channel,
            cp,
            base,
            ctx.clone(),
            TlsMaterial::default(),
            watch::channel(false).0,
        );
        (client, ctx, dir)
    }

    #[tokio::test]
    async fn a_rejected_response_keeps_the_last_good_config_and_says_why() {
        let (mut client, ctx, _dir) = client();
        let web = |endpoint: &str, identity: &str| {
            service(
                "web.shop.svc.cluster.local",
                "198.18.0.10:80",
                endpoint,
                identity,
            )
        };
        let good_id = "spiffe://cluster.local/ns/shop/sa/web";
        client
            .apply(rsp(vec![web("198.18.1.2:8080", good_id)], vec![]))
            .unwrap();
        let good = ctx.config();
        let versions = ctx.resource_versions();
        let held = client.resources.clone();
        assert_eq!(ctx.last_config_error(), None);

        // A change to the held service together with a resource that does not validate: the
        // whole response is refused, the good change included.
        let mut other = service(
            "db",
            "198.18.0.11:5432",
            "198.18.1.3:5432",
            "not-a-spiffe-id",
        );
        other.version = "v9".into();
        let mut changed = web("198.18.1.9:8080", good_id);
        changed.version = "v2".into();
        let reason = client.apply(rsp(vec![changed, other], vec![])).unwrap_err();
        assert!(reason.contains("not-a-spiffe-id"), "{reason}");
        assert!(
            Arc::ptr_eq(&good, &ctx.config()),
            "the config in force changed"
        );
        assert_eq!(ctx.resource_versions(), versions);
        assert_eq!(client.resources, held);
        assert_eq!(ctx.last_config_error().as_deref(), Some(reason.as_str()));
        assert_eq!(ctx.metrics.config_rejections.get(), 1);
        let in_force = ctx.config();
        let endpoint = in_force
            .service(&"198.18.0.10:80".parse().unwrap())
            .and_then(|s| s.endpoints.first())
            .map(|e| e.addr.to_string());
        assert_eq!(endpoint.as_deref(), Some("198.18.1.2:8080"));

        // The next good response is applied and clears the rejection.
        client
            .apply(rsp(vec![web("198.18.1.9:8080", good_id)], vec![]))
            .unwrap();
        assert_eq!(ctx.last_config_error(), None);
        assert_eq!(ctx.metrics.config_rejections.get(), 1);
        let endpoint = ctx
            .config()
            .service(&"198.18.0.10:80".parse().unwrap())
            .and_then(|s| s.endpoints.first())
            .map(|e| e.addr.to_string());
        assert_eq!(endpoint.as_deref(), Some("198.18.1.9:8080"));
    }

    #[test]
    fn declared_inbound_ports_come_from_the_control_plane_unless_the_file_names_the_port() {
        let port = |port: u32, protocol: cfg::Protocol| cfg::InboundPort {
            port,
            protocol: protocol as i32,
            ..Default::default()
        };
        let mut held = BTreeMap::new();
        held.insert(
            "settings".to_string(),
            pb::Resource {
                name: "settings".into(),
                version: "1".into(),
                kind: Some(ResourceKind::Settings(pb::ProxySettings {
                    inbound_ports: vec![
                        port(8080, cfg::Protocol::Http1),
                        port(5432, cfg::Protocol::Http1),
                    ],
                    ..Default::default()
                })),
            },
        );
        let file = cfg::ProxyConfig {
            inbound_ports: vec![port(5432, cfg::Protocol::Tcp)],
            ..Default::default()
        };
        let merged = merge(&file, &held, "1");
        assert_eq!(
            merged.inbound_ports,
            [
                port(5432, cfg::Protocol::Tcp),
                port(8080, cfg::Protocol::Http1)
            ]
        );
        assert!(Config::from_proto(merged).is_ok());
    }

    #[test]
    fn settings_never_relax_a_static_strict_mode() {
        let settings = |mode: cfg::InboundMode| pb::Resource {
            name: "settings".into(),
            version: "1".into(),
            kind: Some(ResourceKind::Settings(pb::ProxySettings {
                inbound_mode: mode as i32,
                ..Default::default()
            })),
        };
        let strict_file = cfg::ProxyConfig {
            inbound_mode: cfg::InboundMode::Strict as i32,
            ..Default::default()
        };
        let mode = |base: &cfg::ProxyConfig, from_cp: cfg::InboundMode| {
            let mut held = BTreeMap::new();
            held.insert("settings".to_string(), settings(from_cp));
            merge(base, &held, "1").inbound_mode
        };
        let (strict, permissive) = (cfg::InboundMode::Strict as i32, 0);
        assert_eq!(mode(&strict_file, cfg::InboundMode::Permissive), strict);
        assert_eq!(
            mode(&cfg::ProxyConfig::default(), cfg::InboundMode::Strict),
            strict
        );
        assert_eq!(
            mode(&cfg::ProxyConfig::default(), cfg::InboundMode::Permissive),
            permissive
        );
    }

    #[test]
    fn mesh_ranges_from_the_control_plane_join_the_files() {
        let base = cfg::ProxyConfig {
            mesh_address_ranges: vec!["10.0.0.0/8".into()],
            ..Default::default()
        };
        let mut held = BTreeMap::new();
        held.insert(
            "settings".to_string(),
            pb::Resource {
                name: "settings".into(),
                version: "1".into(),
                kind: Some(ResourceKind::Settings(pb::ProxySettings {
                    mesh_address_ranges: vec!["198.18.0.0/15".into(), "10.0.0.0/8".into()],
                    ..Default::default()
                })),
            },
        );
        let (config, _, _) = prepare(&base, &held, rsp(vec![], vec![])).unwrap();
        assert_eq!(
            config.source.mesh_address_ranges,
            ["10.0.0.0/8", "198.18.0.0/15"]
        );
        assert!(config.in_mesh_range("198.19.0.1".parse().unwrap()));
        assert!(config.in_mesh_range("10.1.0.1".parse().unwrap()));
    }

    #[test]
    fn a_malformed_range_from_the_control_plane_is_nacked() {
        let err = prepare(
            &cfg::ProxyConfig::default(),
            &BTreeMap::new(),
            rsp(
                vec![pb::Resource {
                    name: "settings".into(),
                    version: "1".into(),
                    kind: Some(ResourceKind::Settings(pb::ProxySettings {
                        mesh_address_ranges: vec!["198.18.0.0/99".into()],
                        ..Default::default()
                    })),
                }],
                vec![],
            ),
        )
        .err()
        .unwrap();
        assert!(err.contains("meshAddressRanges[0]"), "{err}");
    }

    #[test]
    fn removed_names_become_not_found() {
        let mut held = BTreeMap::new();
        let r = service("web", "198.18.0.10:80", "198.18.1.2:8080", "");
        held.insert(r.name.clone(), r);
        let (config, next, _) = prepare(
            &cfg::ProxyConfig::default(),
            &held,
            rsp(vec![], vec!["198.18.0.10:80"]),
        )
        .unwrap();
        assert!(config.service(&"198.18.0.10:80".parse().unwrap()).is_none());
        assert!(matches!(
            next["198.18.0.10:80"].kind,
            Some(ResourceKind::NotFound(_))
        ));
    }

    #[test]
    fn the_same_service_under_two_names_is_added_once() {
        let mut by_vip = service("web", "198.18.0.10:80", "198.18.1.2:8080", "");
        let mut by_name = by_vip.clone();
        by_name.name = "web.shop.svc.cluster.local:80".into();
        by_vip.name = "198.18.0.10:80".into();
        let (config, _, _) = prepare(
            &cfg::ProxyConfig::default(),
            &BTreeMap::new(),
            rsp(vec![by_vip, by_name], vec![]),
        )
        .unwrap();
        assert_eq!(config.source.services.len(), 1);
    }

    #[test]
    fn the_control_planes_telemetry_wins_field_by_field_and_keeps_the_bootstraps_collector() {
        let base = cfg::ProxyConfig {
            telemetry: Some(cfg::Telemetry {
                tracing: Some(cfg::Tracing {
                    otlp_endpoint: "http://127.0.0.1:4317".into(),
                    random_sampling_percentage: Some(100.0),
                    ..Default::default()
                }),
                services: vec!["old.default.svc.cluster.local".into()],
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut held = BTreeMap::new();
        held.insert(
            "settings".to_string(),
            pb::Resource {
                name: "settings".into(),
                version: "1".into(),
                kind: Some(ResourceKind::Settings(pb::ProxySettings {
                    telemetry: Some(cfg::Telemetry {
                        workload: Some(cfg::Workload {
                            name: "reviews-v1".into(),
                            ..Default::default()
                        }),
                        services: vec!["reviews.default.svc.cluster.local".into()],
                        tracing: Some(cfg::Tracing {
                            random_sampling_percentage: Some(5.0),
                            ..Default::default()
                        }),
                        access_log: Some(cfg::AccessLog {
                            enabled: true,
                            encoding: cfg::AccessLogEncoding::Json as i32,
                        }),
                    }),
                    ..Default::default()
                })),
            },
        );
        let merged = merge(&base, &held, "1");
        let config = Config::from_proto(merged).expect("valid");
        let t = &config.telemetry;
        assert_eq!(t.tracing.endpoint.as_deref(), Some("http://127.0.0.1:4317"));
        assert_eq!(t.tracing.sampling_percent, 5.0);
        assert_eq!(&*t.workload.name, "reviews-v1");
        assert_eq!(&*t.services[0], "reviews.default.svc.cluster.local");
        assert_eq!(t.services.len(), 1);
        assert_eq!(
            t.access_log,
            Some(crate::telemetry::access_log::Format::Json)
        );
    }
}
