//! Serving: the CA and discovery gRPC services over TLS on 15012, and monitoring on 15014.
//!
//! The gRPC services are plain tower services routed by path and served with hyper over
//! tokio-rustls; the serving certificate comes from the mesh CA, so proxies trust it through the
//! root they were given at bootstrap.

pub mod ca;
pub mod discovery;
mod monitor;
pub mod serving_cert;
pub mod status;

pub use self::monitor::SourceMonitor;

use crate::auth::{Authenticator, Caller};
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::net::TcpListener;
use tonic::body::Body as GrpcBody;
use tonic::server::NamedService;

/// Verifies the `authorization: Bearer <token>` metadata. A credential that could not be checked
/// (API server down) is `unavailable`, so the proxy retries; a refused one `unauthenticated`.
pub async fn authenticate(
    auth: &dyn Authenticator,
    md: &tonic::metadata::MetadataMap,
) -> Result<Caller, tonic::Status> {
    let token = md
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| tonic::Status::unauthenticated("missing 'authorization: Bearer <token>'"))?;
    auth.authenticate(token).await.map_err(|e| {
        if e.is_unavailable() {
            tonic::Status::unavailable(e.to_string())
        } else {
            tonic::Status::unauthenticated(e.to_string())
        }
    })
}

type CaServer = sinew_proto::ca::v1::certificate_service_server::CertificateServiceServer<
    ca::CertificateService,
>;
type DiscoveryServer =
    sinew_proto::discovery::v1::discovery_server::DiscoveryServer<discovery::DiscoveryService>;

/// Routes gRPC requests to the CA or discovery service by path.
#[derive(Clone)]
pub struct Router {
    ca: CaServer,
    discovery: DiscoveryServer,
}

impl Router {
    pub fn new(ca: ca::CertificateService, discovery: discovery::DiscoveryService) -> Self {
        Self {
            ca: CaServer::new(ca),
            discovery: DiscoveryServer::new(discovery),
        }
    }
}

impl tower::Service<Request<Incoming>> for Router {
    type Response = Response<GrpcBody>;
    type Error = Infallible;
    type Future = futures_util::future::BoxFuture<'static, Result<Response<GrpcBody>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Incoming>) -> Self::Future {
        let path = req.uri().path();
        let service = path.trim_start_matches('/').split('/').next().unwrap_or("");
        if service == <CaServer as NamedService>::NAME {
            let mut s = self.ca.clone();
            Box::pin(async move { tower::Service::call(&mut s, req).await })
        } else if service == <DiscoveryServer as NamedService>::NAME {
            let mut s = self.discovery.clone();
            Box::pin(async move { tower::Service::call(&mut s, req).await })
        } else {
            Box::pin(async move { Ok(tonic::Status::unimplemented("no such service").into_http()) })
        }
    }
}

/// Accepts TLS connections and serves gRPC on each until the process exits.
pub async fn serve_grpc(listener: TcpListener, tls: Arc<rustls::ServerConfig>, router: Router) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let router = router.clone();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(
                std::time::Duration::from_secs(10),
                acceptor.accept(tcp),
            )
            .await
            {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let svc = hyper_util::service::TowerToHyperService::new(router);
            let res = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                // Streams are long-lived and idle for hours: ping to find dead peers.
                .keep_alive_interval(std::time::Duration::from_secs(30))
                .keep_alive_timeout(std::time::Duration::from_secs(10))
                .serve_connection(TokioIo::new(tls), svc)
                .await;
            if let Err(e) = res {
                tracing::debug!(%peer, error = %e, "gRPC connection ended");
            }
        });
    }
}

/// Monitoring on 15014: `/metrics` (the source's too: Kubernetes watch errors and re-lists,
/// TokenReview latency and failures), `/ready`, `/debug/proxies` (JSON: connected proxies, the
/// registry's last error and its warnings, such as routes to undefined subsets),
/// `/debug/connections` (each discovery stream: the caller's verified identity and pod, when it
/// connected and last answered, subscriptions, ACKs and NACKs), `/debug/registryz` (services with their endpoints, pods, rules as the control plane sees
/// them, and the source's state), `/debug/rotation` (the root rotation's phase, roots and the
/// proxies it waits for; see docs/security.md), and
/// `/debug/resolve?name=<vip:port | host:port>` (200 with the version, endpoint addresses and
/// registry generation discovery would serve for that name now, 404 if none: how a runner knows
/// a change is live before it hands addresses out); with `&namespace=<ns>[&pod=<pod>]` the
/// resource as that proxy gets it, traffic policy resolved (`service`, `policySources`).
pub async fn serve_monitoring(
    listener: TcpListener,
    status: Arc<status::Status>,
    source: SourceMonitor,
    index: tokio::sync::watch::Receiver<Arc<crate::compile::Index>>,
    rotation: Arc<std::sync::Mutex<crate::ca::rotation::RotationStatus>>,
) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let status = status.clone();
        let source = source.clone();
        let index = index.clone();
        let rotation = rotation.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let status = status.clone();
                let source = source.clone();
                let index = index.clone();
                let rotation = rotation.clone();
                async move {
                    let (code, body) = match req.uri().path() {
                        "/debug/resolve" => {
                            let param = |key: &str| {
                                req.uri()
                                    .query()
                                    .and_then(|q| {
                                        q.split('&')
                                            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
                                    })
                                    .map(percent_decode)
                            };
                            let name = param("name").unwrap_or_default();
                            let name = name.as_str();
                            let index = index.borrow();
                            // With `namespace` (and `pod`): as that proxy sees it, policy included.
                            let found = match param("namespace") {
                                None => index.get(name).cloned(),
                                Some(namespace) => {
                                    let pod = param("pod").unwrap_or_default();
                                    let labels = index
                                        .pod_labels(&namespace, &pod)
                                        .cloned()
                                        .unwrap_or_default();
                                    let proxy = crate::compile::ProxyContext { namespace, labels };
                                    index.service_for(name, &proxy)
                                }
                            };
                            let found = found.map(|v| {
                                let endpoints: Vec<&str> = v
                                    .service
                                    .endpoints
                                    .iter()
                                    .map(|e| e.address.as_str())
                                    .collect();
                                serde_json::json!({
                                    "name": name,
                                    "version": v.version,
                                    "endpoints": endpoints,
                                    "generation": index.generation,
                                    "policySources": v.service.policy_sources,
                                    "service": v.service,
                                })
                                .to_string()
                            });
                            match found {
                                Some(body) => (200, body),
                                None => (404, format!("{name:?} is not a known name\n")),
                            }
                        }
                        "/ready" => (200, "ready\n".to_string()),
                        "/debug/rotation" => {
                            let now = rotation.lock().unwrap_or_else(|p| p.into_inner()).clone();
                            (200, serde_json::to_string_pretty(&now).unwrap_or_default())
                        }
                        "/metrics" => {
                            let mut text = metrics_text(&status);
                            rotation
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .render_metrics(&mut text);
                            text.push_str(&source.render_metrics());
                            (200, text)
                        }
                        "/debug/connections" => (
                            200,
                            serde_json::to_string_pretty(&serde_json::json!({
                                "connections": status.snapshot(),
                            }))
                            .unwrap_or_default(),
                        ),
                        "/debug/registryz" => (
                            200,
                            serde_json::to_string_pretty(&source.registryz()).unwrap_or_default(),
                        ),
                        "/debug/proxies" => (
                            200,
                            serde_json::to_string_pretty(&serde_json::json!({
                                "proxies": status.snapshot(),
                                "registryError": source.last_error(),
                                "registryWarnings": index.borrow().warnings(),
                            }))
                            .unwrap_or_default(),
                        ),
                        _ => (404, "not found\n".to_string()),
                    };
                    let mut rsp = Response::new(Full::new(Bytes::from(body)));
                    *rsp.status_mut() = http::StatusCode::from_u16(code).unwrap_or_default();
                    Ok::<_, Infallible>(rsp)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}

/// `%XX` escapes and `+` of a query value; malformed escapes are kept as written.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn metrics_text(status: &status::Status) -> String {
    use std::sync::atomic::Ordering;
    format!(
        "# HELP sinew_cp_connected_proxies Proxies with an open discovery stream.\n# TYPE sinew_cp_connected_proxies gauge\nsinew_cp_connected_proxies {}\n\
         # HELP sinew_cp_certificates_issued_total Workload certificates issued.\n# TYPE sinew_cp_certificates_issued_total counter\nsinew_cp_certificates_issued_total {}\n\
         # HELP sinew_cp_certificates_refused_total Certificate requests refused.\n# TYPE sinew_cp_certificates_refused_total counter\nsinew_cp_certificates_refused_total {}\n\
         # HELP sinew_cp_nacks_total Config responses proxies rejected (connected proxies).\n# TYPE sinew_cp_nacks_total counter\nsinew_cp_nacks_total {}\n",
        status.connected(),
        status.certificates_issued.load(Ordering::Relaxed),
        status.certificates_refused.load(Ordering::Relaxed),
        status.nacks(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{AuthError, AuthFuture};

    struct Fixed(fn() -> Result<Caller, AuthError>);

    impl Authenticator for Fixed {
        fn authenticate<'a>(&'a self, _: &'a str) -> AuthFuture<'a> {
            Box::pin(std::future::ready((self.0)()))
        }
    }

    fn bearer() -> tonic::metadata::MetadataMap {
        let mut md = tonic::metadata::MetadataMap::new();
        md.insert("authorization", "Bearer t0ken".parse().unwrap());
        md
    }

    #[tokio::test]
    async fn a_credential_that_could_not_be_checked_is_unavailable_not_unauthenticated() {
        let down = Fixed(|| {
            Err(AuthError::Unavailable {
                reason: "API server down".into(),
            })
        });
        let err = authenticate(&down, &bearer()).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unavailable);

        let refused = Fixed(|| {
            Err(AuthError::Rejected {
                reason: "invalidated".into(),
            })
        });
        let err = authenticate(&refused, &bearer()).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated);
    }
}
