//! The proxy's config: the `sinew.config.v1.ProxyConfig` message, validated once into types that
//! cannot be invalid.
//!
//! Promises: [`Config::from_proto`] either returns a config whose every address, identity and
//! duration is usable, or an error naming the offending field (`services[1].endpoints[0].address`)
//! and why. Nothing downstream re-validates. Every default lives here, named.

use crate::tls::Identity;
use sinew_proto::config::v1 as pb;
use sinew_proto::net::IpNet;
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub mod bootstrap;
pub mod trace;

pub const DEFAULT_OUTBOUND_PORT: u16 = 15001;
pub const DEFAULT_INBOUND_PORT: u16 = 15006;
pub const DEFAULT_ADMIN_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 15000);
pub const DEFAULT_HEALTH_ADDR: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 15021);
pub const DEFAULT_METRICS_ADDR: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 15020);
pub const DEFAULT_MESH_PORT: u16 = DEFAULT_INBOUND_PORT;
pub const DEFAULT_DETECT_TIMEOUT: Duration = Duration::from_secs(1);
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Downstream HTTP idle: longer than the common client pools' own idle timeouts (Go 90 s,
/// OkHttp 5 min), so a client rarely reuses a connection just as the proxy closes it.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Opaque TCP idle: Istio's default, because database pools keep quiet connections for long.
pub const DEFAULT_TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_MAX_HEADER_BYTES: usize = 64 * 1024;
pub const DEFAULT_MAX_HEADERS: usize = 100;
/// Two file descriptors per proxied connection: fits under the usual 65536 `nofile` with room
/// for the pools and listeners.
pub const DEFAULT_MAX_CONNECTIONS: usize = 16384;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not a valid ProxyConfig: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
}

/// A [`ConfigError::Invalid`] naming `field` (the proto field path) and why.
pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

/// A validated proxy config.
#[derive(Debug)]
pub struct Config {
    /// The message this was built from, for `/config_dump`.
    pub source: pb::ProxyConfig,
    pub tls: Option<TlsPaths>,
    /// What inbound plaintext is allowed on ports `port_inbound_modes` does not list
    /// (use [`Config::inbound_mode`]).
    pub inbound_mode: InboundMode,
    /// Per workload port (PeerAuthentication `portLevelMtls`).
    port_inbound_modes: HashMap<u16, InboundMode>,
    /// The workload's AuthorizationPolicies, compiled.
    pub authorization: Arc<crate::authz::Authorizer>,
    pub listeners: Vec<Listener>,
    services: HashMap<SocketAddr, Arc<Service>>,
    opaque_ports: PortSet,
    excluded_outbound_ports: PortSet,
    /// This pod's own ports with a declared protocol.
    inbound_ports: HashMap<u16, ServiceProtocol>,
    /// Connection-pool limits on this pod's own ports (`inboundPorts[].connectionPool`).
    pub inbound_limits: HashMap<u16, crate::traffic::breaker::Limits>,
    pub timeouts: Timeouts,
    pub limits: Limits,
    pub admin: AdminAddrs,
    pub version: String,
    pub control_plane: Option<ControlPlane>,
    /// The mesh's service and pod ranges: unresolved destinations inside fail closed.
    pub mesh_ranges: Vec<IpNet>,
    /// Who this proxy reports as, its pod's services, tracing and access-log settings.
    pub telemetry: Telemetry,
}

/// `telemetry`, validated, with every default applied.
#[derive(Clone, Debug)]
pub struct Telemetry {
    /// This proxy's workload: `telemetry.workload`, else derived from the pod (see
    /// [`crate::telemetry::workload`]).
    pub workload: Arc<crate::telemetry::Workload>,
    /// The FQDNs of the Services selecting this pod (valid label values only).
    pub services: Arc<[Arc<str>]>,
    pub tracing: crate::telemetry::trace::Settings,
    /// `None`: no access log (unless the proxy flag forces one).
    pub access_log: Option<crate::telemetry::access_log::Format>,
}

/// Where certificates and config come from at run time.
#[derive(Clone, Debug)]
pub struct ControlPlane {
    pub address: String,
    pub root_cert: PathBuf,
    pub identity: Identity,
    pub token_file: PathBuf,
    pub certificate_ttl: Duration,
    pub resolve_timeout: Duration,
    pub pod: String,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
}

pub const DEFAULT_CONTROL_PLANE_IDENTITY: &str =
    "spiffe://cluster.local/ns/sinew-system/sa/sinew-control-plane";
pub const DEFAULT_CERTIFICATE_TTL: Duration = Duration::from_secs(24 * 3600);
pub const DEFAULT_RESOLVE_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Clone, Debug)]
pub struct TlsPaths {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub trust_bundle: PathBuf,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum InboundMode {
    Permissive,
    Strict,
    /// Clients are told to send plaintext; mesh mTLS is still accepted (see the proto).
    Disable,
}

#[derive(Clone, Debug)]
pub struct Listener {
    pub name: String,
    pub addr: SocketAddr,
    pub kind: ListenerKind,
}

#[derive(Clone, Debug)]
pub enum ListenerKind {
    /// App → mesh. `fixed` replaces SO_ORIGINAL_DST for explicit listeners.
    Outbound { fixed: Option<SocketAddr> },
    /// Mesh → app. `app_port` replaces the original destination port.
    Inbound { app_port: Option<u16> },
}

/// A mesh service: the addresses that name it, the endpoints that serve it and the traffic
/// policy the control plane resolved for it. Plain data: live state (balancers, counters,
/// ejections) lives in the per-service cache ([`crate::traffic::cache`]).
#[derive(Debug, PartialEq)]
pub struct Service {
    pub name: Arc<str>,
    /// The name routes use for it: `name:port` when the port is known, else `name`.
    pub key: Arc<str>,
    pub protocol: ServiceProtocol,
    /// The Service port (not the target port), when the control plane said.
    pub port: Option<u16>,
    pub endpoints: Vec<Endpoint>,
    /// Policy for requests to no subset.
    pub policy: Policy,
    pub subsets: Vec<Subset>,
    /// HTTP routes, validated (`httpRoutes`); Istio's default route when none.
    pub http_routes: Routes,
    pub tcp_routes: crate::traffic::tcp_route::TcpRoutes,
    pub policy_sources: Vec<String>,
}

/// A destination's policy (a DestinationRule `trafficPolicy`, subset blocks already merged by
/// the control plane), every block validated by the module that enforces it.
#[derive(Clone, Debug)]
pub struct Policy {
    pub load_balancer: crate::traffic::balance::LoadBalancer,
    /// `connectionPool`; unset: unlimited (Istio's default).
    pub limits: crate::traffic::breaker::Limits,
    /// `outlierDetection`; unset: no outlier detection (Istio's default).
    pub outlier: Option<crate::traffic::outlier::Settings>,
    /// `tls`; unset: auto mTLS.
    pub tls: crate::tls::originate::ClientTls,
    /// `maxRetries` and `retryBudget`, for the retry layer.
    pub retry: RetryLimits,
    /// The block as sent: two policies are the same when their sources are.
    pub source: Option<pb::TrafficPolicy>,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            load_balancer: Default::default(),
            limits: crate::traffic::breaker::Limits::unlimited(),
            outlier: None,
            tls: crate::tls::originate::ClientTls::Auto,
            retry: RetryLimits::default(),
            source: None,
        }
    }
}

impl PartialEq for Policy {
    /// Same source, same policy, except TLS origination: its files are re-read at each push
    /// (a rotated certificate takes effect then), so such a policy is never "unchanged".
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
            && !matches!(self.tls, crate::tls::originate::ClientTls::Originate(_))
    }
}

/// A service's validated HTTP route table and the routes it came from.
#[derive(Clone, Debug)]
pub struct Routes {
    pub table: Arc<crate::traffic::route::RouteTable>,
    pub source: Vec<pb::HttpRoute>,
}

impl PartialEq for Routes {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

/// Retry limits of a destination: `connectionPool.http.maxRetries` and `retryBudget`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RetryLimits {
    /// 0: unlimited.
    pub max_retries: u32,
    /// `(percent, minRetryConcurrency)`.
    pub budget: Option<(f64, u32)>,
}

/// A named subset: the endpoints whose labels include `labels`, with its own complete policy.
#[derive(Clone, Debug, PartialEq)]
pub struct Subset {
    pub name: Arc<str>,
    pub labels: BTreeMap<String, String>,
    pub policy: Policy,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ServiceProtocol {
    Detect,
    Http1,
    Http2,
    Tcp,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// Where the app listens.
    pub addr: SocketAddr,
    /// The peer proxy's identity; None for an endpoint without a sidecar.
    pub identity: Option<Identity>,
    /// Where the peer proxy's inbound listener is (same IP as `addr`).
    pub mesh_addr: SocketAddr,
    pub labels: BTreeMap<String, String>,
    /// The workload behind the endpoint (the control plane's word), for the `destination_*`
    /// labels a client reports; `None` for endpoints without a pod.
    pub workload: Option<Arc<crate::telemetry::Workload>>,
}

#[derive(Copy, Clone, Debug)]
pub struct Timeouts {
    pub detect: Duration,
    pub connect: Duration,
    pub header_read: Duration,
    pub idle: Duration,
    pub tcp_idle: Duration,
    pub drain: Duration,
    pub tls_handshake: Duration,
}

#[derive(Copy, Clone, Debug)]
pub struct Limits {
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub max_connections: usize,
}

#[derive(Copy, Clone, Debug)]
pub struct AdminAddrs {
    pub admin: SocketAddr,
    pub health: SocketAddr,
    pub metrics: SocketAddr,
}

/// A set of TCP ports as a bitmap: one cache line of lookups on the accept path.
#[derive(Clone)]
struct PortSet(Box<[u64; 1024]>);

impl PortSet {
    fn new(ports: impl IntoIterator<Item = u16>) -> Self {
        let mut bits = Box::new([0u64; 1024]);
        for p in ports {
            bits[p as usize / 64] |= 1 << (p % 64);
        }
        Self(bits)
    }
    fn contains(&self, port: u16) -> bool {
        self.0[port as usize / 64] & (1 << (port % 64)) != 0
    }
    fn iter(&self) -> impl Iterator<Item = u16> + '_ {
        (0..=u16::MAX).filter(|p| self.contains(*p))
    }
}

impl std::fmt::Debug for PortSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

// === impl Config ===

impl Config {
    /// Reads a YAML (or JSON) ProxyConfig file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_yaml(path, &text)
    }

    /// Decodes and validates a YAML (or JSON) ProxyConfig; `path` names it in errors.
    pub fn from_yaml(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let msg: pb::ProxyConfig =
            serde_saphyr::from_str(text).map_err(|e| ConfigError::Parse {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
        Self::from_proto(msg)
    }

    pub fn from_proto(msg: pb::ProxyConfig) -> Result<Self, ConfigError> {
        let tls = msg.tls.as_ref().map(|t| TlsPaths {
            cert: PathBuf::from(&t.cert_file),
            key: PathBuf::from(&t.key_file),
            trust_bundle: PathBuf::from(&t.trust_bundle_file),
        });
        if let Some(t) = &tls {
            for (name, p) in [
                ("tls.certFile", &t.cert),
                ("tls.keyFile", &t.key),
                ("tls.trustBundleFile", &t.trust_bundle),
            ] {
                if p.as_os_str().is_empty() {
                    return Err(invalid(name, "required when tls is set"));
                }
            }
        }
        let inbound_mode = inbound_mode("inboundMode", msg.inbound_mode)?;
        let mut port_inbound_modes = HashMap::with_capacity(msg.port_inbound_modes.len());
        for (&port, &mode) in &msg.port_inbound_modes {
            let field = format!("portInboundModes[{port}]");
            let port = u16::try_from(port)
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| invalid(&field, "not a port (1-65535)"))?;
            port_inbound_modes.insert(port, self::inbound_mode(&field, mode)?);
        }
        let authorization = match &msg.authorization {
            Some(a) => {
                crate::authz::Authorizer::compile(a).map_err(|e| invalid("authorization", e))?
            }
            None => crate::authz::Authorizer::default(),
        };

        let mut services = HashMap::new();
        for (i, s) in msg.services.iter().enumerate() {
            let field = format!("services[{i}]");
            let svc = Arc::new(service(&field, s)?);
            if s.addresses.is_empty() {
                return Err(invalid(
                    format!("{field}.addresses"),
                    "at least one ip:port is required",
                ));
            }
            for (j, a) in s.addresses.iter().enumerate() {
                let addr = socket_addr(&format!("{field}.addresses[{j}]"), a)?;
                if let Some(prev) = services.insert(addr, svc.clone()) {
                    return Err(invalid(
                        format!("{field}.addresses[{j}]"),
                        format!("{addr} already belongs to service {}", prev.name),
                    ));
                }
            }
        }

        let mut listeners = Vec::new();
        for (i, l) in msg.listeners.iter().enumerate() {
            let field = format!("listeners[{i}]");
            let addr = socket_addr(&format!("{field}.address"), &l.address)?;
            let kind = match pb::Direction::try_from(l.direction) {
                Ok(pb::Direction::Outbound) => {
                    if l.app_port != 0 {
                        return Err(invalid(
                            format!("{field}.appPort"),
                            "only for INBOUND listeners",
                        ));
                    }
                    let fixed = if l.fixed_destination.is_empty() {
                        None
                    } else {
                        let f = format!("{field}.fixedDestination");
                        let dst = socket_addr(&f, &l.fixed_destination)?;
                        // With a control plane the service is discovered on first use.
                        if !services.contains_key(&dst) && msg.control_plane.is_none() {
                            return Err(invalid(
                                f,
                                format!("{dst} is not an address of any service"),
                            ));
                        }
                        Some(dst)
                    };
                    ListenerKind::Outbound { fixed }
                }
                Ok(pb::Direction::Inbound) => {
                    if !l.fixed_destination.is_empty() {
                        return Err(invalid(
                            format!("{field}.fixedDestination"),
                            "only for OUTBOUND listeners",
                        ));
                    }
                    ListenerKind::Inbound {
                        app_port: (l.app_port != 0)
                            .then(|| port(&format!("{field}.appPort"), l.app_port))
                            .transpose()?,
                    }
                }
                Err(_) => return Err(invalid(format!("{field}.direction"), "unknown direction")),
            };
            let name = if l.name.is_empty() {
                format!(
                    "{}-{}",
                    if matches!(kind, ListenerKind::Inbound { .. }) {
                        "inbound"
                    } else {
                        "outbound"
                    },
                    addr.port()
                )
            } else {
                l.name.clone()
            };
            listeners.push(Listener { name, addr, kind });
        }
        if listeners.is_empty() {
            listeners = vec![
                Listener {
                    name: "outbound".into(),
                    addr: SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), DEFAULT_OUTBOUND_PORT),
                    kind: ListenerKind::Outbound { fixed: None },
                },
                Listener {
                    name: "inbound".into(),
                    addr: SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), DEFAULT_INBOUND_PORT),
                    kind: ListenerKind::Inbound { app_port: None },
                },
            ];
        }

        let mut opaque: Vec<u16> = Vec::new();
        if !msg.replace_default_opaque_ports {
            opaque.extend_from_slice(crate::detect::SERVER_FIRST_PORTS);
        }
        for (i, p) in msg.opaque_ports.iter().enumerate() {
            opaque.push(port(&format!("opaquePorts[{i}]"), *p)?);
        }
        let mut excluded = Vec::new();
        for (i, p) in msg.excluded_outbound_ports.iter().enumerate() {
            excluded.push(port(&format!("excludedOutboundPorts[{i}]"), *p)?);
        }
        let mut inbound_ports = HashMap::new();
        let mut inbound_limits = HashMap::new();
        for (i, p) in msg.inbound_ports.iter().enumerate() {
            let field = format!("inboundPorts[{i}]");
            let number = port(&format!("{field}.port"), p.port)?;
            let protocol = protocol(&format!("{field}.protocol"), p.protocol)?;
            if let Some(cp) = &p.connection_pool {
                let limits = crate::traffic::breaker::Limits::from_proto(
                    &format!("{field}.connectionPool"),
                    cp,
                )?;
                inbound_limits.insert(number, limits);
            }
            if inbound_ports.insert(number, protocol).is_some() {
                return Err(invalid(
                    format!("{field}.port"),
                    format!("port {number} is listed twice"),
                ));
            }
        }

        let t = msg.timeouts.unwrap_or_default();
        let timeouts = Timeouts {
            detect: duration(
                "timeouts.protocolDetection",
                &t.protocol_detection,
                DEFAULT_DETECT_TIMEOUT,
            )?,
            connect: duration("timeouts.connect", &t.connect, DEFAULT_CONNECT_TIMEOUT)?,
            header_read: duration(
                "timeouts.headerRead",
                &t.header_read,
                DEFAULT_HEADER_READ_TIMEOUT,
            )?,
            idle: duration("timeouts.idle", &t.idle, DEFAULT_IDLE_TIMEOUT)?,
            tcp_idle: duration("timeouts.tcpIdle", &t.tcp_idle, DEFAULT_TCP_IDLE_TIMEOUT)?,
            drain: duration("timeouts.drain", &t.drain, DEFAULT_DRAIN_TIMEOUT)?,
            tls_handshake: duration(
                "timeouts.tlsHandshake",
                &t.tls_handshake,
                DEFAULT_TLS_HANDSHAKE_TIMEOUT,
            )?,
        };
        let l = msg.limits.unwrap_or_default();
        let limits = Limits {
            max_header_bytes: match l.max_header_bytes {
                0 => DEFAULT_MAX_HEADER_BYTES,
                n if n < 1024 => {
                    return Err(invalid("limits.maxHeaderBytes", "must be at least 1024"));
                }
                n => n as usize,
            },
            max_headers: match l.max_headers {
                0 => DEFAULT_MAX_HEADERS,
                n => n as usize,
            },
            max_connections: match l.max_connections {
                0 => DEFAULT_MAX_CONNECTIONS,
                n => n as usize,
            },
        };
        let mut mesh_ranges = Vec::with_capacity(msg.mesh_address_ranges.len());
        for (i, r) in msg.mesh_address_ranges.iter().enumerate() {
            let net: IpNet = r.parse().map_err(|e: sinew_proto::net::InvalidIpNet| {
                invalid(format!("meshAddressRanges[{i}]"), e.to_string())
            })?;
            if !mesh_ranges.contains(&net) {
                mesh_ranges.push(net);
            }
        }
        let a = msg.admin.clone().unwrap_or_default();
        let admin = AdminAddrs {
            admin: optional_addr("admin.adminAddress", &a.admin_address, DEFAULT_ADMIN_ADDR)?,
            health: optional_addr(
                "admin.healthAddress",
                &a.health_address,
                DEFAULT_HEALTH_ADDR,
            )?,
            metrics: optional_addr(
                "admin.metricsAddress",
                &a.metrics_address,
                DEFAULT_METRICS_ADDR,
            )?,
        };

        let control_plane = match &msg.control_plane {
            None => None,
            Some(cp) => {
                if tls.is_some() {
                    return Err(invalid(
                        "controlPlane",
                        "set either tls (static certificate files) or controlPlane (certificates from the CA), not both",
                    ));
                }
                for (name, v) in [
                    ("controlPlane.address", &cp.address),
                    ("controlPlane.rootCertFile", &cp.root_cert_file),
                    ("controlPlane.tokenFile", &cp.token_file),
                ] {
                    if v.is_empty() {
                        return Err(invalid(name, "required"));
                    }
                }
                let identity = if cp.identity.is_empty() {
                    DEFAULT_CONTROL_PLANE_IDENTITY.to_string()
                } else {
                    cp.identity.clone()
                };
                Some(ControlPlane {
                    address: cp.address.clone(),
                    root_cert: PathBuf::from(&cp.root_cert_file),
                    identity: Identity::parse(&identity)
                        .map_err(|e| invalid("controlPlane.identity", e.to_string()))?,
                    token_file: PathBuf::from(&cp.token_file),
                    certificate_ttl: duration(
                        "controlPlane.certificateTtl",
                        &cp.certificate_ttl,
                        DEFAULT_CERTIFICATE_TTL,
                    )?,
                    resolve_timeout: duration(
                        "controlPlane.resolveTimeout",
                        &cp.resolve_timeout,
                        DEFAULT_RESOLVE_TIMEOUT,
                    )?,
                    pod: cp.pod.clone(),
                    namespace: cp.namespace.clone(),
                    labels: cp
                        .labels
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                })
            }
        };

        let telemetry = telemetry(msg.telemetry.as_ref(), msg.control_plane.as_ref(), &|k| {
            std::env::var(k).ok()
        })?;
        Ok(Self {
            telemetry,
            control_plane,
            mesh_ranges,
            version: msg.version.clone(),
            source: msg,
            tls,
            inbound_mode,
            port_inbound_modes,
            authorization: Arc::new(authorization),
            listeners,
            services,
            opaque_ports: PortSet::new(opaque),
            excluded_outbound_ports: PortSet::new(excluded),
            inbound_ports,
            inbound_limits,
            timeouts,
            limits,
            admin,
        })
    }

    /// Every service (one that several addresses name appears once per address).
    pub fn services(&self) -> impl Iterator<Item = &Arc<Service>> {
        self.services.values()
    }

    /// The service that owns `addr`, if any.
    pub fn service(&self, addr: &SocketAddr) -> Option<&Arc<Service>> {
        self.services.get(addr)
    }

    pub fn is_opaque_port(&self, port: u16) -> bool {
        self.opaque_ports.contains(port)
    }

    pub fn is_excluded_outbound_port(&self, port: u16) -> bool {
        self.excluded_outbound_ports.contains(port)
    }

    /// True when `ip` is inside one of the mesh's address ranges (`meshAddressRanges`).
    pub fn in_mesh_range(&self, ip: IpAddr) -> bool {
        self.mesh_ranges.iter().any(|r| r.contains(ip))
    }

    /// How this pod's own `port` is declared (Detect when nothing says).
    /// What inbound plaintext is allowed on workload port `port`.
    pub fn inbound_mode(&self, port: Option<u16>) -> InboundMode {
        port.and_then(|p| self.port_inbound_modes.get(&p).copied())
            .unwrap_or(self.inbound_mode)
    }

    /// Whether some port (or the workload) refuses plaintext: a plaintext connection that names
    /// no port is then refused too.
    pub fn any_strict(&self) -> bool {
        self.inbound_mode == InboundMode::Strict
            || self
                .port_inbound_modes
                .values()
                .any(|m| *m == InboundMode::Strict)
    }

    pub fn inbound_protocol(&self, port: u16) -> ServiceProtocol {
        self.inbound_ports
            .get(&port)
            .copied()
            .unwrap_or(ServiceProtocol::Detect)
    }
}

fn inbound_mode(field: &str, mode: i32) -> Result<InboundMode, ConfigError> {
    match pb::InboundMode::try_from(mode) {
        Ok(pb::InboundMode::Permissive) => Ok(InboundMode::Permissive),
        Ok(pb::InboundMode::Strict) => Ok(InboundMode::Strict),
        Ok(pb::InboundMode::Disable) => Ok(InboundMode::Disable),
        Err(_) => Err(invalid(field, "unknown mode")),
    }
}

/// Validates `telemetry`; what it leaves unset comes from `env` (the injector's variables) and
/// the control-plane section (the pod's name, namespace and labels).
pub fn telemetry(
    t: Option<&pb::Telemetry>,
    cp: Option<&pb::ControlPlane>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Telemetry, ConfigError> {
    use crate::telemetry::{Workload, workload};
    let default = pb::Telemetry::default();
    let t = t.unwrap_or(&default);
    let workload = match (&t.workload, cp) {
        (Some(w), _) => Workload::from_proto(w),
        (None, Some(cp)) if !cp.pod.is_empty() => workload::from_pod(
            &cp.pod,
            &cp.namespace,
            &cp.labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        _ => workload::from_pod(
            &env(workload::POD_NAME_ENV).unwrap_or_default(),
            &env(workload::POD_NAMESPACE_ENV).unwrap_or_default(),
            &BTreeMap::new(),
        ),
    };
    let pod = match (&t.workload, cp) {
        (Some(w), _) if !w.pod.is_empty() => w.pod.clone(),
        (_, Some(cp)) if !cp.pod.is_empty() => cp.pod.clone(),
        _ => env(workload::POD_NAME_ENV).unwrap_or_default(),
    };
    let services = t
        .services
        .iter()
        .filter_map(|s| crate::telemetry::labels::value(s).map(Arc::from))
        .collect();
    // The injector's tracing env reaches the bootstrap through `run`'s flags
    // (`bootstrap::with_tracing`), so a config is read the same whatever process parses it.
    let tr = t.tracing.clone().unwrap_or_default();
    let mut tracing = crate::telemetry::trace::Settings {
        endpoint: trace::endpoint(&tr.otlp_endpoint)?,
        report: !tr.disable_span_reporting,
        workload: workload.clone(),
        pod: Arc::from(pod.as_str()),
        ..Default::default()
    };
    if let Some(p) = tr.random_sampling_percentage {
        tracing.sampling_percent = trace::percent(p)?;
    }
    let access_log = match &t.access_log {
        Some(a) if a.enabled => Some(match pb::AccessLogEncoding::try_from(a.encoding) {
            Ok(pb::AccessLogEncoding::Text) => crate::telemetry::access_log::Format::Text,
            Ok(pb::AccessLogEncoding::Json) => crate::telemetry::access_log::Format::Json,
            Err(_) => return Err(invalid("telemetry.accessLog.encoding", "unknown encoding")),
        }),
        _ => None,
    };
    Ok(Telemetry {
        workload: Arc::new(workload),
        services,
        tracing,
        access_log,
    })
}

fn protocol(field: &str, p: i32) -> Result<ServiceProtocol, ConfigError> {
    Ok(match pb::Protocol::try_from(p) {
        Ok(pb::Protocol::Detect) => ServiceProtocol::Detect,
        Ok(pb::Protocol::Http1) => ServiceProtocol::Http1,
        Ok(pb::Protocol::Http2 | pb::Protocol::Grpc) => ServiceProtocol::Http2,
        Ok(pb::Protocol::Tcp) => ServiceProtocol::Tcp,
        Err(_) => return Err(invalid(field, "unknown protocol")),
    })
}

fn service(field: &str, s: &pb::Service) -> Result<Service, ConfigError> {
    if s.name.is_empty() {
        return Err(invalid(format!("{field}.name"), "required"));
    }
    let protocol = protocol(&format!("{field}.protocol"), s.protocol)?;
    let mut endpoints = Vec::with_capacity(s.endpoints.len());
    for (i, e) in s.endpoints.iter().enumerate() {
        let f = format!("{field}.endpoints[{i}]");
        let addr = socket_addr(&format!("{f}.address"), &e.address)?;
        let identity = if e.identity.is_empty() {
            None
        } else {
            Some(
                Identity::parse(&e.identity)
                    .map_err(|err| invalid(format!("{f}.identity"), err.to_string()))?,
            )
        };
        let mesh_port = match e.mesh_port {
            0 => DEFAULT_MESH_PORT,
            p => port(&format!("{f}.meshPort"), p)?,
        };
        endpoints.push(Endpoint {
            addr,
            identity,
            mesh_addr: SocketAddr::new(addr.ip(), mesh_port),
            labels: e
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            workload: e
                .workload
                .as_ref()
                .map(|w| Arc::new(crate::telemetry::Workload::from_proto(w))),
        });
    }
    let port = match s.port {
        0 => None,
        p => Some(port(&format!("{field}.port"), p)?),
    };
    let policy = policy(&format!("{field}.trafficPolicy"), s.traffic_policy.as_ref())?;
    let mut subsets: Vec<Subset> = Vec::with_capacity(s.subsets.len());
    for (i, sub) in s.subsets.iter().enumerate() {
        let f = format!("{field}.subsets[{i}]");
        if !sinew_proto::names::is_dns1123_label(&sub.name) {
            return Err(invalid(
                format!("{f}.name"),
                format!(
                    "{:?} is not a DNS-1123 label (lower case letters, digits and '-', at most 63)",
                    sub.name
                ),
            ));
        }
        if subsets.iter().any(|x| *x.name == *sub.name) {
            return Err(invalid(
                format!("{f}.name"),
                format!("subset {} is defined twice", sub.name),
            ));
        }
        for k in sub.labels.keys() {
            if k.is_empty() {
                return Err(invalid(format!("{f}.labels"), "a label key is empty"));
            }
        }
        subsets.push(Subset {
            name: Arc::from(sub.name.as_str()),
            labels: sub
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            // The control plane merged the service's blocks into the subset's; an unset
            // subset policy is the service's.
            policy: match &sub.traffic_policy {
                Some(tp) => self::policy(&format!("{f}.trafficPolicy"), Some(tp))?,
                None => policy.clone(),
            },
        });
    }
    let name: Arc<str> = Arc::from(s.name.as_str());
    let key = match port {
        Some(p) => Arc::from(format!("{}:{p}", s.name)),
        None => name.clone(),
    };
    let tcp_routes = crate::traffic::tcp_route::TcpRoutes::from_proto(
        &format!("{field}.tcpRoutes"),
        &key,
        &s.tcp_routes,
    )?;
    let http_routes = Routes {
        table: Arc::new(crate::traffic::route::RouteTable::from_proto(
            &format!("{field}.httpRoutes"),
            &key,
            &s.http_routes,
        )?),
        source: s.http_routes.clone(),
    };
    Ok(Service {
        name,
        key,
        protocol,
        port,
        endpoints,
        policy,
        subsets,
        http_routes,
        tcp_routes,
        policy_sources: s.policy_sources.clone(),
    })
}

/// Validates a `trafficPolicy` (each block by the module that enforces it).
fn policy(field: &str, tp: Option<&pb::TrafficPolicy>) -> Result<Policy, ConfigError> {
    let Some(tp) = tp else {
        return Ok(Policy::default());
    };
    let load_balancer = crate::traffic::balance::LoadBalancer::from_proto(
        &format!("{field}.loadBalancer"),
        tp.load_balancer.as_ref(),
    )?;
    let limits = match &tp.connection_pool {
        None => crate::traffic::breaker::Limits::unlimited(),
        Some(cp) => {
            crate::traffic::breaker::Limits::from_proto(&format!("{field}.connectionPool"), cp)?
        }
    };
    let outlier = tp
        .outlier_detection
        .as_ref()
        .map(|od| {
            crate::traffic::outlier::Settings::from_proto(&format!("{field}.outlierDetection"), od)
        })
        .transpose()?;
    let tls = match &tp.tls {
        None => crate::tls::originate::ClientTls::Auto,
        Some(t) => crate::tls::originate::ClientTls::from_proto(&format!("{field}.tls"), t)?,
    };
    let max_retries = tp.connection_pool.as_ref().map_or(0, |cp| cp.max_retries);
    // Validated as the retry layer reads it; kept as plain numbers for the cache to build from.
    crate::traffic::budget::RetryBudget::from_proto(
        &format!("{field}.retryBudget"),
        tp.retry_budget.as_ref(),
        max_retries,
    )?;
    let retry = RetryLimits {
        max_retries,
        budget: tp.retry_budget.as_ref().map(|b| {
            (
                b.percent
                    .unwrap_or(crate::traffic::budget::DEFAULT_BUDGET_PERCENT),
                b.min_retry_concurrency
                    .unwrap_or(crate::traffic::budget::DEFAULT_MIN_RETRY_CONCURRENCY),
            )
        }),
    };
    Ok(Policy {
        load_balancer,
        limits,
        outlier,
        tls,
        retry,
        source: Some(tp.clone()),
    })
}

// === impl Service ===

impl Service {
    /// The subset named `name`.
    pub fn subset(&self, name: &str) -> Option<&Subset> {
        self.subsets.iter().find(|s| &*s.name == name)
    }
}

// === impl Subset ===

impl Subset {
    /// True when `ep` belongs to this subset (its labels include the subset's).
    pub fn selects(&self, ep: &Endpoint) -> bool {
        self.labels
            .iter()
            .all(|(k, v)| ep.labels.get(k).is_some_and(|x| x == v))
    }
}

// === impl Endpoint ===

impl Endpoint {
    /// An endpoint without a sidecar and without labels (tests and static configs).
    pub fn plain(addr: SocketAddr) -> Self {
        Self {
            addr,
            identity: None,
            mesh_addr: SocketAddr::new(addr.ip(), DEFAULT_MESH_PORT),
            labels: BTreeMap::new(),
            workload: None,
        }
    }
}

fn socket_addr(field: &str, s: &str) -> Result<SocketAddr, ConfigError> {
    s.parse()
        .map_err(|_| invalid(field, format!("'{s}' is not an ip:port address")))
}

fn optional_addr(field: &str, s: &str, default: SocketAddr) -> Result<SocketAddr, ConfigError> {
    if s.is_empty() {
        Ok(default)
    } else {
        socket_addr(field, s)
    }
}

fn port(field: &str, p: u32) -> Result<u16, ConfigError> {
    match u16::try_from(p) {
        Ok(p) if p != 0 => Ok(p),
        _ => Err(invalid(field, format!("{p} is not a TCP port (1-65535)"))),
    }
}

fn duration(
    field: &str,
    d: &Option<pbjson_types::Duration>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    match d {
        None => Ok(default),
        Some(d) if d.seconds < 0 || d.nanos < 0 => Err(invalid(field, "must not be negative")),
        Some(d) if d.seconds == 0 && d.nanos == 0 => Err(invalid(field, "must be positive")),
        Some(d) => Ok(Duration::new(d.seconds as u64, d.nanos as u32)),
    }
}

#[cfg(test)]
mod tests;
