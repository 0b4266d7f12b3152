//! The app-health prober: the kubelet's probes of the app, run by the proxy.
//!
//! With STRICT mTLS the kubelet's plaintext probes cannot reach the app, so the injector
//! rewrites each container's httpGet/tcpSocket/grpc probe to `GET :15020/app-health/<container>/
//! <livez|readyz|startupz>` and passes the originals in env `SINEW_APP_PROBERS` ([`spec`]). Here
//! each such request runs the original probe against 127.0.0.1 (the proxy's own connections,
//! from UID 1337, are not intercepted) and answers for the app.
//!
//! Promises:
//! - 200 when the app's probe passes; the app's own status when its HTTP answer is a failure
//!   (400 and up); 503 otherwise (refused, timed out, TLS failure, gRPC not SERVING), each with
//!   a one-line reason; 404 for a path with no probe.
//! - Each probe, from waiting for its turn to the app's answer, ends within its
//!   `timeoutSeconds` (default 1 s). At most [`MAX_CONCURRENT_PROBES`] run at once; one that
//!   cannot start within its timeout fails with 503.
//! - Nothing outlives a probe: each opens its own connection, drives it itself (no spawned
//!   task) and drops it with the answer. Only the parsed probes are kept.
//! - Served on the metrics port only: the data path (15001/15006) does not see it.

pub mod grpc;
pub mod http;
pub mod spec;

use ::http::{HeaderValue, Response, StatusCode, header};
use bytes::Bytes;
use http_body_util::Full;
use spec::{Action, Probe, Probers};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// Probes running at once: a pod's containers have three probes each at most, and the bound
/// keeps a flood of requests to the metrics port from becoming a flood of connections to the
/// app.
pub const MAX_CONCURRENT_PROBES: usize = 32;
/// The path prefix the injector rewrites probes to.
pub const PATH_PREFIX: &str = "/app-health/";
/// What the kubelet's own User-Agent starts with (its version follows).
const USER_AGENT_PREFIX: &str = "kube-probe/";
/// Sent when the request did not come from a kubelet (someone curling the endpoint).
const DEFAULT_USER_AGENT: &str = "kube-probe/1.33";

/// Why a probe did not pass: the app's own failing HTTP status, if it gave one.
#[derive(Debug, PartialEq)]
pub struct Failure {
    pub status: Option<StatusCode>,
    pub reason: String,
}

impl Failure {
    fn new(reason: impl Into<String>) -> Self {
        Self {
            status: None,
            reason: reason.into(),
        }
    }
}

/// The prober: the app's probes and what running them needs.
pub struct AppHealth {
    probers: Probers,
    permits: Semaphore,
    /// HTTPS probes verify nothing, as the kubelet does (`InsecureSkipVerify`).
    tls: Arc<rustls::ClientConfig>,
    /// The Host header when the probe names no host: the pod's IP (what the kubelet dials)
    /// when known.
    default_host: String,
}

// === impl AppHealth ===

impl AppHealth {
    /// A prober for `probers`; `pod_ip` (env `SINEW_POD_IP`) makes the Host header the one the
    /// kubelet would send.
    pub fn new(probers: Probers, pod_ip: Option<std::net::IpAddr>) -> Self {
        Self::with_limit(probers, pod_ip, MAX_CONCURRENT_PROBES)
    }

    fn with_limit(probers: Probers, pod_ip: Option<std::net::IpAddr>, limit: usize) -> Self {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("invariant: ring supports the default protocol versions")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(crate::tls::originate::SkipVerify(provider)))
            .with_no_client_auth();
        Self {
            probers,
            permits: Semaphore::new(limit),
            tls: Arc::new(tls),
            default_host: pod_ip.unwrap_or(Ipv4Addr::LOCALHOST.into()).to_string(),
        }
    }

    /// How many probes there are (for the start-up log).
    pub fn len(&self) -> usize {
        self.probers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.probers.is_empty()
    }

    /// Answers `GET <path>` (a path under [`PATH_PREFIX`]); `user_agent` is the caller's.
    pub async fn answer(
        &self,
        path: &str,
        user_agent: Option<&HeaderValue>,
    ) -> Response<Full<Bytes>> {
        let Some(probe) = self.probers.get(path) else {
            return text(StatusCode::NOT_FOUND, format!("no app probe at {path}\n"));
        };
        match self.run(probe, user_agent).await {
            Ok(()) => text(StatusCode::OK, "ok\n".to_string()),
            Err(f) => text(
                f.status.unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
                format!("{}\n", f.reason),
            ),
        }
    }

    /// Runs one probe within its timeout, waiting for a turn first.
    async fn run(&self, probe: &Probe, user_agent: Option<&HeaderValue>) -> Result<(), Failure> {
        let user_agent = http::user_agent(user_agent);
        let deadline = tokio::time::Instant::now() + probe.timeout;
        let Ok(Ok(_permit)) = tokio::time::timeout_at(deadline, self.permits.acquire()).await
        else {
            return Err(Failure::new(format!(
                "too many probes in flight (over {MAX_CONCURRENT_PROBES}); not started within {}",
                secs(probe.timeout)
            )));
        };
        let attempt = async {
            match &probe.action {
                Action::Http(get) => {
                    http::probe(get, &user_agent, &self.tls, &self.default_host).await
                }
                Action::Tcp { port } => tcp(*port).await,
                Action::Grpc { port, service } => grpc::probe(*port, service, &user_agent).await,
            }
        };
        tokio::time::timeout_at(deadline, attempt)
            .await
            .unwrap_or_else(|_| {
                Err(Failure::new(format!(
                    "{} timed out after {}",
                    probe.action.describe(),
                    secs(probe.timeout)
                )))
            })
    }
}

/// `tcpSocket`: the port accepts a connection (closed at once).
async fn tcp(port: u16) -> Result<(), Failure> {
    let addr = SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port);
    tokio::net::TcpStream::connect(addr)
        .await
        .map(drop)
        .map_err(|e| Failure::new(format!("TCP connect to {addr}: {e}")))
}

// === impl Action ===

impl Action {
    fn describe(&self) -> String {
        match self {
            Action::Http(get) => format!(
                "GET {}://127.0.0.1:{}{}",
                if get.https { "https" } else { "http" },
                get.port,
                get.path
            ),
            Action::Tcp { port } => format!("TCP connect to 127.0.0.1:{port}"),
            Action::Grpc { port, .. } => format!("gRPC health check on 127.0.0.1:{port}"),
        }
    }
}

fn secs(d: Duration) -> String {
    format!("{}s", d.as_secs())
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

#[cfg(test)]
mod tests;
