//! What the mesh reports about the traffic it carries: Istio's standard metrics, traces and
//! access logs. Nothing here may make a request wait: exporters and writers take what the request
//! path hands them without blocking, and drop (and count) what they cannot keep.
//!
//! - [`layer`]: the outermost per-request layer of both directions; it starts the span, watches
//!   the response body to its end and then reports (metrics, access log, span); `conn`: what a
//!   connection's requests share (label sets resolved once per peer); `request_bytes`: the
//!   metered request body;
//! - [`labels`]: Istio's label set, validated, resolved once per (connection, peer);
//! - [`metrics`]: the `istio_*` families, with a cap on their series;
//! - [`peer`]: the `x-sinew-peer` metadata exchange between proxies;
//! - [`access_log`]: Envoy's text format and a JSON format, written off the request path;
//! - [`tcp`]: the `istio_tcp_*` accounting of one opaque TCP stream;
//! - [`workload`]: who this proxy is when the config does not say;
//! - [`trace`]: spans (context propagation, sampling, export).

pub mod access_log;
mod conn;
pub mod labels;
pub mod layer;
pub mod metrics;
pub mod peer;
mod request_bytes;
pub mod tcp;
pub mod trace;
pub mod workload;

use std::sync::Arc;

/// A workload as Istio's standard metrics label it (`source_*` / `destination_*`). Resolved once
/// per config version (or per peer), shared by reference.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Workload {
    pub name: Arc<str>,
    pub namespace: Arc<str>,
    pub app: Arc<str>,
    pub version: Arc<str>,
    pub canonical_service: Arc<str>,
    pub canonical_revision: Arc<str>,
}

/// The application protocol of a request, as `request_protocol` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RequestProtocol {
    Http,
    Grpc,
    Tcp,
}

impl RequestProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Grpc => "grpc",
            Self::Tcp => "tcp",
        }
    }
}

/// The label value of whatever is not known (Istio's word).
pub const UNKNOWN: &str = "unknown";

// === impl Workload ===

impl Workload {
    /// A workload nothing is known about: every field "unknown".
    pub fn unknown() -> Self {
        let u: Arc<str> = Arc::from(UNKNOWN);
        Self {
            name: u.clone(),
            namespace: u.clone(),
            app: u.clone(),
            version: u.clone(),
            canonical_service: u.clone(),
            canonical_revision: u,
        }
    }

    /// From the config message: every field validated as a label value ([`labels::value`]);
    /// empty or invalid fields read "unknown".
    pub fn from_proto(w: &sinew_proto::config::v1::Workload) -> Self {
        let f = |s: &str| labels::value_or_unknown(s);
        Self {
            name: f(&w.name),
            namespace: f(&w.namespace),
            app: f(&w.app),
            version: f(&w.version),
            canonical_service: f(&w.canonical_service),
            canonical_revision: f(&w.canonical_revision),
        }
    }
}

/// What the connection layer reports about the endpoint a response came from: carried by the
/// upstream response body ([`FromUpstream`]) or, for other bodies, in the response's extensions.
/// Built once per endpoint and config version, so a response carries a reference.
#[derive(Clone, Debug)]
pub struct Upstream(pub Arc<UpstreamInfo>);

#[derive(Debug)]
pub struct UpstreamInfo {
    pub addr: std::net::SocketAddr,
    /// Envoy's cluster name: `outbound|<port>|<subset>|<service>`.
    pub cluster: Arc<str>,
    /// The service's host (`reviews.default.svc.cluster.local`).
    pub service: Arc<str>,
    pub workload: Option<Arc<Workload>>,
    /// The identity the endpoint's proxy proved (mTLS); `None` for plaintext.
    pub principal: Option<Arc<str>>,
}

impl UpstreamInfo {
    /// The report for `endpoint` of the service `service` (`subset`, Service `port`).
    pub fn new(
        endpoint: &crate::config::Endpoint,
        service: &Arc<str>,
        port: Option<u16>,
        subset: Option<&str>,
        mtls: bool,
    ) -> Self {
        let port = port.map(|p| p.to_string()).unwrap_or_default();
        Self {
            addr: endpoint.addr,
            cluster: Arc::from(format!(
                "outbound|{port}|{}|{service}",
                subset.unwrap_or_default()
            )),
            service: service.clone(),
            workload: endpoint.workload.clone(),
            principal: mtls
                .then(|| endpoint.identity.as_ref().map(|i| Arc::from(i.as_str())))
                .flatten(),
        }
    }
}

/// A response body that may say which endpoint it came from: the upstream body carries it
/// without the allocation an extension would cost.
pub trait FromUpstream {
    fn upstream(&self) -> Option<&Upstream>;
}

impl FromUpstream for crate::http::Body {
    fn upstream(&self) -> Option<&Upstream> {
        match self {
            http_body_util::Either::Left(b) => b.upstream(),
            http_body_util::Either::Right(_) => None,
        }
    }
}

impl<D> FromUpstream for http_body_util::Full<D> {
    fn upstream(&self) -> Option<&Upstream> {
        None
    }
}

impl<D> FromUpstream for http_body_util::Empty<D> {
    fn upstream(&self) -> Option<&Upstream> {
        None
    }
}

/// Retries the retry layer made for a response (absent: none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retries(pub u32);
