//! HTTP pieces shared by both directions: the body type, the headers proxies exchange, header
//! hygiene, the conversion of HTTP/1 requests into HTTP/2 between proxies and back, and the
//! mapping of proxy errors to responses.

pub mod body;
pub mod client;
pub mod errors;
pub mod guard;
pub mod server;
pub mod upgrade;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::{Either, Full};
use std::net::SocketAddr;
use std::sync::Arc;

/// Response bodies: the upstream's, streamed, or one the proxy made.
pub type Body = Either<body::UpstreamBody, Full<Bytes>>;

/// Original protocol of a request carried over the HTTP/2 connection between proxies.
pub static ORIG_PROTO: HeaderName = HeaderName::from_static("sinew-orig-proto");
/// Target port on the peer (the app's port), set by the client proxy.
pub static DST_PORT: HeaderName = HeaderName::from_static("sinew-dst-port");
/// On responses the proxy generated: Envoy-style response flags (UF, UH, UT, ...).
pub static RESPONSE_FLAGS: HeaderName = HeaderName::from_static("sinew-response-flags");
pub static XFCC: HeaderName = HeaderName::from_static("x-forwarded-client-cert");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Why the proxy could not get a response from upstream.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("service {0} has no endpoints")]
    NoEndpoints(Arc<str>),
    #[error("connecting to {addr} failed: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("connecting to {addr} timed out after {timeout:?}")]
    ConnectTimeout {
        addr: SocketAddr,
        timeout: std::time::Duration,
    },
    #[error("mesh TLS with {addr} failed: {reason}")]
    Tls { addr: SocketAddr, reason: String },
    #[error("{addr} did not negotiate sinew mTLS (is its proxy running?)")]
    NoMeshAlpn { addr: SocketAddr },
    #[error("HTTP/2 handshake with {addr} failed: {source}")]
    Handshake {
        addr: SocketAddr,
        source: hyper::Error,
    },
    #[error("upstream request failed: {0}")]
    Upstream(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("the client's request body was malformed or cut short: {0}")]
    Downstream(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("request names no usable target port")]
    NoTargetPort,
    /// A client's HTTP/1 request whose `Host` cannot name a destination: the client's mistake,
    /// answered before any upstream is tried.
    #[error("bad request: {0}")]
    BadHost(String),
    #[error("mesh TLS config: {0}")]
    TlsConfig(#[from] crate::tls::TlsError),
    /// A connection-pool limit (circuit breaker) is full: answered at once, no upstream attempt.
    #[error("{service}: {limit} overflow")]
    Overflow { service: Arc<str>, limit: Overflow },
    /// Every endpoint is ejected (and panic mode is off), or none matches the subset.
    #[error("service {0} has no healthy endpoint")]
    NoHealthy(Arc<str>),
    /// The service has routes and none matches the request, or a route names a destination the
    /// proxy does not know.
    #[error("no route: {0}")]
    NoRoute(String),
    /// A route sends to a service or subset the proxy does not have (a VirtualService naming a
    /// subset no DestinationRule defines): Istio's 503 NR.
    #[error("no route: {0}")]
    UnknownDestination(String),
    /// The route's timeout or a try's `perTryTimeout` expired before a response.
    #[error("upstream request timed out after {0:?}")]
    Timeout(std::time::Duration),
    /// A VirtualService fault aborted the request.
    #[error("fault injected: abort with {0}")]
    FaultAbort(StatusCode),
    /// The workload's AuthorizationPolicies deny the request (the decision is logged and
    /// counted by [`crate::authz`]).
    #[error("RBAC: access denied")]
    Denied,
    /// The request path has a `%` that is no percent-encoding: it cannot be normalised for
    /// authorization, and a server could read it either way.
    #[error("invalid percent-encoding in the request path")]
    InvalidPath,
    #[error("{0}")]
    Shared(Arc<ProxyError>),
    /// An error a route-level layer added response flags to on its way out (URX when the
    /// retries ran out, DI after an injected delay, …); the error layer renders `error` with
    /// `flags` added to its own. Only failed requests allocate it.
    #[error("{error}")]
    Flagged {
        flags: crate::traffic::ResponseFlags,
        error: Box<ProxyError>,
    },
}

// === impl ProxyError ===

impl ProxyError {
    /// The status and Envoy-style response flag a client sees.
    pub fn status_and_flag(&self) -> (StatusCode, &'static str) {
        match self {
            Self::NoEndpoints(_) => (StatusCode::SERVICE_UNAVAILABLE, "UH"),
            Self::ConnectTimeout { .. } => (StatusCode::SERVICE_UNAVAILABLE, "UF"),
            Self::Connect { .. } | Self::Tls { .. } | Self::NoMeshAlpn { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, "UF")
            }
            Self::Handshake { .. } | Self::TlsConfig(_) => (StatusCode::SERVICE_UNAVAILABLE, "UF"),
            Self::Upstream(_) => (StatusCode::SERVICE_UNAVAILABLE, "UC"),
            Self::Downstream(_) => (StatusCode::BAD_REQUEST, "DPE"),
            Self::NoTargetPort => (StatusCode::BAD_REQUEST, "NR"),
            Self::BadHost(_) => (StatusCode::BAD_REQUEST, "DPE"),
            Self::Overflow { .. } => (StatusCode::SERVICE_UNAVAILABLE, "UO"),
            Self::NoHealthy(_) => (StatusCode::SERVICE_UNAVAILABLE, "UH"),
            Self::NoRoute(_) => (StatusCode::NOT_FOUND, "NR"),
            Self::UnknownDestination(_) => (StatusCode::SERVICE_UNAVAILABLE, "NR"),
            Self::Timeout(_) => (StatusCode::GATEWAY_TIMEOUT, "UT"),
            Self::FaultAbort(status) => (*status, "FI"),
            // Envoy's RBAC filter sets no response flag.
            Self::Denied => (StatusCode::FORBIDDEN, "-"),
            Self::InvalidPath => (StatusCode::BAD_REQUEST, "DPE"),
            Self::Shared(e) => e.status_and_flag(),
            Self::Flagged { error, .. } => error.status_and_flag(),
        }
    }

    /// A response telling the client what went wrong, as Envoy words it (see [`errors`]).
    pub fn into_response(self) -> Response<Body> {
        errors::render(&self)
    }

    /// The error itself, through any [`ProxyError::Shared`] or [`ProxyError::Flagged`]
    /// wrapping.
    pub fn root(&self) -> &ProxyError {
        match self {
            Self::Shared(e) => e.root(),
            Self::Flagged { error, .. } => error.root(),
            e => e,
        }
    }

    /// The flags layers added on the way out ([`ProxyError::flag`]), besides the error's own.
    pub fn added_flags(&self) -> crate::traffic::ResponseFlags {
        match self {
            Self::Flagged { flags, error } => {
                let mut all = error.added_flags();
                all.insert(*flags);
                all
            }
            Self::Shared(e) => e.added_flags(),
            _ => crate::traffic::ResponseFlags::default(),
        }
    }

    /// Adds `flag` to the flags this error is rendered with.
    pub fn flag(self, flag: crate::traffic::ResponseFlags) -> Self {
        match self {
            Self::Flagged { mut flags, error } => {
                flags.insert(flag);
                Self::Flagged { flags, error }
            }
            error => Self::Flagged {
                flags: flag,
                error: Box::new(error),
            },
        }
    }
}

/// Which connection-pool limit overflowed (Envoy's `upstream_rq_pending_overflow`,
/// `upstream_cx_overflow`, `upstream_rq_retry_overflow`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Overflow {
    /// `http1MaxPendingRequests`: the queue for a request slot is full.
    Pending,
    /// `http2MaxRequests` with no queue allowed.
    Requests,
    /// `maxConnections`.
    Connections,
    /// `maxRetries` or the retry budget: the retry is not attempted.
    Retries,
}

impl Overflow {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Requests => "requests",
            Self::Connections => "connections",
            Self::Retries => "retries",
        }
    }
}

impl std::fmt::Display for Overflow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Checks that an HTTP/1 request's `Host` can name a destination: at most one, and a valid
/// `host[:port]` when present. An empty `Host` counts as absent. HTTP/2 requests are checked by
/// the HTTP/2 server (`:authority`).
pub fn check_host<B>(req: &Request<B>) -> Result<(), ProxyError> {
    if req.version() == Version::HTTP_2 {
        return Ok(());
    }
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let (Some(host), None) = (hosts.next(), hosts.next()) else {
        return match req.headers().contains_key(header::HOST) {
            true => Err(ProxyError::BadHost("more than one Host header".into())),
            false => Ok(()),
        };
    };
    if host.is_empty() {
        return Ok(());
    }
    let shown = String::from_utf8_lossy(host.as_bytes()).into_owned();
    let bad = || ProxyError::BadHost(format!("Host header {shown:?} is not a valid host[:port]"));
    let authority = http::uri::Authority::try_from(host.as_bytes()).map_err(|_| bad())?;
    // The http crate accepts any digits after the colon; a port must also fit in 16 bits.
    let rest = &authority.as_str()[authority.host().len()..];
    if authority.as_str().contains('@') || (!rest.is_empty() && authority.port_u16().is_none()) {
        return Err(bad());
    }
    Ok(())
}

/// Classifies a failed upstream exchange: if our own client's body broke, it is the client's
/// fault (400); anything else is the upstream's.
pub fn upstream_error(
    e: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    body: &body::BodyFailed,
) -> ProxyError {
    if body.get() {
        ProxyError::Downstream(e.into())
    } else {
        ProxyError::Upstream(e.into())
    }
}

/// An empty response body.
pub fn empty_body() -> Body {
    Either::Right(Full::new(Bytes::new()))
}

/// A small response the proxy generates itself.
pub fn status_response(status: StatusCode, msg: &'static str) -> Response<Body> {
    let mut rsp = Response::new(Either::Right(Full::from(Bytes::from_static(
        msg.as_bytes(),
    ))));
    *rsp.status_mut() = status;
    rsp
}

/// True for requests that take over the connection: `Upgrade` (WebSocket) and `CONNECT`.
pub fn is_upgrade<B>(req: &Request<B>) -> bool {
    req.method() == http::Method::CONNECT
        || (req.version() == Version::HTTP_11 && req.headers().contains_key(header::UPGRADE))
}

/// Removes connection-specific headers (RFC 9110 §7.6.1) before a message crosses a hop.
/// `TE: trailers` survives: gRPC and HTTP/1 trailers depend on it.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if let header::Entry::Occupied(e) = headers.entry(header::CONNECTION) {
        let (_, values) = e.remove_entry_mult();
        let named: Vec<HeaderValue> = values.collect();
        for v in named {
            if let Ok(s) = v.to_str() {
                for name in s.split(',') {
                    let name = name.trim();
                    if !name.eq_ignore_ascii_case("te") {
                        headers.remove(name);
                    }
                }
            }
        }
    }
    for h in [
        &KEEP_ALIVE,
        &PROXY_CONNECTION,
        &header::TRANSFER_ENCODING,
        &header::UPGRADE,
    ] {
        headers.remove(h);
    }
    if let Some(te) = headers.get(header::TE)
        && !te.as_bytes().eq_ignore_ascii_case(b"trailers")
    {
        headers.remove(header::TE);
    }
}

/// Prepares an app's request for the HTTP/2 connection between proxies. HTTP/1 requests become
/// HTTP/2 with their version in [`ORIG_PROTO`]; the target port travels in [`DST_PORT`].
///
/// `dst_port` is the port's header value, built once per endpoint. The request target's path is
/// kept as hyper parsed it (no copy).
pub fn to_mesh<B>(req: &mut Request<B>, dst_port: &HeaderValue, fallback_authority: &str) {
    let version = req.version();
    if version != Version::HTTP_2 {
        // The authority the request named (absolute form, else `Host`), else the service's; a
        // `Host` that is no valid authority leaves the target as it is. The target's parts are
        // moved, not cloned (a clone of hyper's parsed bytes would allocate).
        let mut parts = std::mem::take(req.uri_mut()).into_parts();
        let authority = match parts.authority.take() {
            Some(a) => Some(a),
            None => match req
                .headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .filter(|h| !h.is_empty())
            {
                Some(host) => http::uri::Authority::try_from(host).ok(),
                None => http::uri::Authority::try_from(fallback_authority).ok(),
            },
        };
        if authority.is_some() {
            parts.scheme = Some(http::uri::Scheme::HTTP);
            parts.authority = authority;
        } else {
            parts.scheme = None;
        }
        if parts.path_and_query.is_none() {
            parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
        }
        // Scheme and authority are set together and the path is present: this cannot fail.
        if let Ok(uri) = Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
        let h = req.headers_mut();
        h.remove(header::HOST);
        strip_hop_by_hop(h);
        h.insert(
            ORIG_PROTO.clone(),
            HeaderValue::from_static(if version == Version::HTTP_10 {
                "HTTP/1.0"
            } else {
                "HTTP/1.1"
            }),
        );
        *req.version_mut() = Version::HTTP_2;
    }
    req.headers_mut().insert(DST_PORT.clone(), dst_port.clone());
}

/// Undoes [`to_mesh`] on the receiving proxy: returns the target port if the request named one,
/// and restores HTTP/1 requests (version, `Host`, origin-form target).
pub fn from_mesh<B>(req: &mut Request<B>) -> Option<u16> {
    let port = mesh_dst_port(req);
    req.headers_mut().remove(&DST_PORT);
    if let Some(orig) = req.headers_mut().remove(&ORIG_PROTO) {
        *req.version_mut() = if orig.as_bytes() == b"HTTP/1.0" {
            Version::HTTP_10
        } else {
            Version::HTTP_11
        };
        if let Some(a) = req.uri().authority().cloned()
            && !req.headers().contains_key(header::HOST)
            && let Ok(v) = HeaderValue::from_str(a.as_str())
        {
            req.headers_mut().insert(header::HOST, v);
        }
    }
    port
}

/// The target port a mesh request names (`sinew-dst-port`), as [`from_mesh`] reads it.
pub fn mesh_dst_port<B>(req: &Request<B>) -> Option<u16> {
    req.headers()
        .get(&DST_PORT)
        .and_then(|v| v.to_str().ok()?.parse::<u16>().ok())
        .filter(|p| *p != 0)
}

/// Readies a request for the plaintext HTTP/1 pool: origin form on the wire (`GET /path`), with
/// the authority in `Host` if the request named it only in its URI. HTTP/2 keeps its
/// `:authority`.
pub fn set_origin<B>(req: &mut Request<B>) {
    if req.version() == Version::HTTP_2 {
        return;
    }
    if !req.headers().contains_key(header::HOST)
        && let Some(v) = req
            .uri()
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    {
        req.headers_mut().insert(header::HOST, v);
    }
    if req.uri().scheme().is_some() || req.uri().authority().is_some() {
        // The path as parsed, moved (no copy).
        let pq = std::mem::take(req.uri_mut()).into_parts().path_and_query;
        let mut parts = http::uri::Parts::default();
        parts.path_and_query =
            Some(pq.unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")));
        if let Ok(uri) = Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
    }
}

/// Response headers that must not cross into HTTP/2.
pub fn clean_response<B>(rsp: &mut Response<B>) {
    strip_hop_by_hop(rsp.headers_mut());
}

#[cfg(test)]
mod tests;
