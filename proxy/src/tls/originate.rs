//! TLS origination to services outside the mesh (DestinationRule `tls` SIMPLE and MUTUAL): the
//! proxy opens TLS to the endpoint on the app's behalf.
//!
//! Promises:
//! - [`ClientTls::from_proto`] validates as istiod does and reads every file it names then: a
//!   missing or unreadable file is a config error naming the field. The rustls config is built
//!   once per validation and cached in the [`Originate`] value; files are read again only when the
//!   policy is validated again (each config push that carries it), so a rotated certificate is
//!   picked up at the next push. The system bundle (`caCertificates` empty) is read once per
//!   process;
//! - the server certificate chains to `caCertificates` (or the system roots) and, when
//!   `subjectAltNames` is set, carries one of those DNS, URI or IP SANs; otherwise it must match
//!   the SNI name (`sni`, else the request's authority host). `insecureSkipVerify` checks nothing
//!   but the handshake signatures;
//! - TLS 1.2 and 1.3 (external servers are not ours to upgrade), ring provider, no ALPN (the
//!   connection layer speaks HTTP/1.1 over it).

use crate::config::{ConfigError, invalid};
use crate::http::client::{ConnPolicy, H1Conn, H1Pool, send_pooled_h1};
use crate::http::{Body, ProxyError};
use crate::io::TcpKeepalive;
use http::{Request, Response};
use hyper_util::rt::TokioIo;
use rustls::client::danger::{ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime, pem::PemObject};
use rustls::{ClientConfig, RootCertStore};
use sinew_proto::config::v1 as pb;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// Where the system's roots are read from when `caCertificates` is empty.
pub const SYSTEM_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// A validated DestinationRule `tls`.
#[derive(Clone, Debug)]
pub enum ClientTls {
    /// Mesh mTLS to endpoints with a sidecar, plaintext to the others (Istio's auto mTLS).
    Auto,
    /// Plaintext, even to an endpoint with a sidecar.
    Disable,
    /// Mesh mTLS only (today's mesh connection); endpoints without a sidecar cannot be reached.
    IstioMutual,
    /// SIMPLE or MUTUAL origination.
    Originate(Originate),
}

/// What SIMPLE and MUTUAL need at connect time; cheap to clone.
#[derive(Clone)]
pub struct Originate {
    config: Arc<ClientConfig>,
    sni: Option<ServerName<'static>>,
    mutual: bool,
}

// === impl ClientTls ===

impl ClientTls {
    /// Validates `field` (e.g. `services[0].trafficPolicy.tls`) and, for SIMPLE and MUTUAL, reads
    /// the files and builds the rustls config.
    pub fn from_proto(field: &str, tls: &pb::ClientTls) -> Result<Self, ConfigError> {
        use pb::client_tls::Mode;
        let f = |name: &str| format!("{field}.{name}");
        let mode = Mode::try_from(tls.mode)
            .map_err(|_| invalid(f("mode"), format!("unknown mode {}", tls.mode)))?;
        match mode {
            Mode::Auto => Ok(Self::Auto),
            Mode::Disable => Ok(Self::Disable),
            Mode::IstioMutual => {
                // As istiod: mesh certificates come from the proxy, so files are refused. `sni`
                // and `subjectAltNames` are accepted and unused (the mesh verifies identities).
                for (name, value) in [
                    ("clientCertificate", &tls.client_certificate),
                    ("privateKey", &tls.private_key),
                    ("caCertificates", &tls.ca_certificates),
                ] {
                    if !value.is_empty() {
                        return Err(invalid(f(name), "not allowed with mode ISTIO_MUTUAL"));
                    }
                }
                Ok(Self::IstioMutual)
            }
            Mode::Simple | Mode::Mutual => {
                Originate::build(field, tls, mode == Mode::Mutual).map(Self::Originate)
            }
        }
    }
}

// === impl Originate ===

impl Originate {
    fn build(field: &str, tls: &pb::ClientTls, mutual: bool) -> Result<Self, ConfigError> {
        let f = |name: &str| format!("{field}.{name}");
        if mutual {
            if tls.client_certificate.is_empty() {
                return Err(invalid(f("clientCertificate"), "required with mode MUTUAL"));
            }
            if tls.private_key.is_empty() {
                return Err(invalid(f("privateKey"), "required with mode MUTUAL"));
            }
        }
        if tls.insecure_skip_verify {
            if !tls.ca_certificates.is_empty() {
                return Err(invalid(
                    f("insecureSkipVerify"),
                    "cannot be combined with caCertificates",
                ));
            }
            if !tls.subject_alt_names.is_empty() {
                return Err(invalid(
                    f("insecureSkipVerify"),
                    "cannot be combined with subjectAltNames",
                ));
            }
        }
        let sni = match tls.sni.as_str() {
            "" => None,
            s => Some(
                ServerName::try_from(s.to_owned())
                    .map_err(|e| invalid(f("sni"), format!("{s:?}: {e}")))?,
            ),
        };
        for (i, san) in tls.subject_alt_names.iter().enumerate() {
            if san.is_empty() {
                return Err(invalid(f(&format!("subjectAltNames[{i}]")), "empty"));
            }
        }

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier: Arc<dyn ServerCertVerifier> = if tls.insecure_skip_verify {
            Arc::new(SkipVerify(provider.clone()))
        } else {
            let roots = match tls.ca_certificates.as_str() {
                "" => system_roots().map_err(|e| invalid(f("caCertificates"), e))?,
                path => Arc::new(load_roots(path).map_err(|e| invalid(f("caCertificates"), e))?),
            };
            if tls.subject_alt_names.is_empty() {
                rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                    .build()
                    .map_err(|e| invalid(f("caCertificates"), e.to_string()))?
            } else {
                Arc::new(SanVerifier {
                    roots,
                    sans: tls.subject_alt_names.clone(),
                    provider: provider.clone(),
                })
            }
        };
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid(f("mode"), e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let config = if mutual {
            let chain = read_certs(&tls.client_certificate)
                .map_err(|e| invalid(f("clientCertificate"), e))?;
            let key = std::fs::read(&tls.private_key)
                .map_err(|e| e.to_string())
                .and_then(|pem| PrivateKeyDer::from_pem_slice(&pem).map_err(|e| e.to_string()))
                .map_err(|e| invalid(f("privateKey"), format!("{}: {e}", tls.private_key)))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| invalid(f("privateKey"), format!("{}: {e}", tls.private_key)))?
        } else {
            builder.with_no_client_auth()
        };
        Ok(Self {
            config: Arc::new(config),
            sni,
            mutual,
        })
    }

    pub fn is_mutual(&self) -> bool {
        self.mutual
    }

    /// The name sent as SNI (and checked when no `subjectAltNames` are set): `sni`, else
    /// `authority_host` (the request's authority without its port).
    pub fn server_name(&self, authority_host: &str) -> Result<ServerName<'static>, String> {
        if let Some(sni) = &self.sni {
            return Ok(sni.clone());
        }
        // `[::1]` in an authority is an IP address.
        let host = authority_host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(ServerName::IpAddress(ip.into()));
        }
        ServerName::try_from(host.to_owned())
            .map_err(|e| format!("{authority_host:?} cannot name a TLS server: {e}"))
    }

    pub fn client_config(&self) -> Arc<ClientConfig> {
        self.config.clone()
    }
}

impl std::fmt::Debug for Originate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Originate")
            .field("mutual", &self.mutual)
            .field("sni", &self.sni)
            .finish()
    }
}

/// Pooled HTTP/1.1 connections for SIMPLE and MUTUAL origination, as Envoy pools them: one TLS
/// handshake per connection, not per request. A connection is shared only by requests to the same
/// endpoint, for the same host (SNI), with the same TLS settings (the same rustls config value: a
/// pushed config builds a new one, so new files never reuse an old connection) and the same
/// connection policy (reuse limits, keep-alive).
pub struct OriginPool<B> {
    pool: Arc<H1Pool<OriginKey, B>>,
    /// The proxy's idle timeout; a destination's shorter `idleTimeout` wins.
    idle_timeout: Duration,
}

#[derive(Clone)]
struct OriginKey {
    addr: SocketAddr,
    host: Arc<str>,
    /// Compared by pointer; held, so no other config can take its address while pooled.
    config: Arc<ClientConfig>,
    policy: ConnPolicy,
}

// === impl OriginKey ===

impl PartialEq for OriginKey {
    fn eq(&self, other: &Self) -> bool {
        self.addr == other.addr
            && self.host == other.host
            && Arc::ptr_eq(&self.config, &other.config)
            && self.policy == other.policy
    }
}

impl Eq for OriginKey {}

impl std::hash::Hash for OriginKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.addr.hash(state);
        self.host.hash(state);
        Arc::as_ptr(&self.config).hash(state);
        self.policy.hash(state);
    }
}

// === impl OriginPool ===

impl<B> OriginPool<B>
where
    B: http_body::Body<Data = bytes::Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    pub fn new(idle_timeout: Duration) -> Self {
        Self {
            pool: Arc::new(H1Pool::new()),
            idle_timeout,
        }
    }

    /// Sends `req` (origin form, HTTP/1.1) to `addr` over TLS for `host`, on a pooled
    /// connection when one is idle.
    pub async fn send(
        &self,
        addr: SocketAddr,
        host: &str,
        tls: &Originate,
        timeout: Duration,
        policy: ConnPolicy,
        req: Request<B>,
    ) -> Result<Response<Body>, ProxyError> {
        let key = OriginKey {
            addr,
            host: Arc::from(host),
            config: tls.config.clone(),
            policy,
        };
        let reuse = policy.reuse.idle_at_most(self.idle_timeout);
        let dial = || async {
            // New connections are rare next to requests: a good moment to close expired ones.
            self.pool.sweep();
            let io = connect(addr, host, tls, timeout, policy.keepalive.as_ref()).await?;
            let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
                .await
                .map_err(|source| ProxyError::Handshake { addr, source })?;
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(%addr, error = %e, "originated TLS connection closed");
                }
            });
            Ok(H1Conn::new(send))
        };
        send_pooled_h1(&self.pool, key, reuse, req, dial).await
    }

    /// Idle pooled connections to `addr` (for tests).
    #[cfg(test)]
    pub fn idle(&self, addr: SocketAddr, host: &str, tls: &Originate, policy: ConnPolicy) -> usize {
        self.pool.idle(&OriginKey {
            addr,
            host: Arc::from(host),
            config: tls.config.clone(),
            policy,
        })
    }
}

/// Dials `addr` (with the destination's `keepalive`) and originates TLS for `authority_host`,
/// within `timeout` for both.
pub async fn connect(
    addr: SocketAddr,
    authority_host: &str,
    tls: &Originate,
    timeout: Duration,
    keepalive: Option<&TcpKeepalive>,
) -> Result<TlsStream<TcpStream>, ProxyError> {
    let name = tls
        .server_name(authority_host)
        .map_err(|reason| ProxyError::Tls { addr, reason })?;
    let deadline = tokio::time::Instant::now() + timeout;
    let tcp = match tokio::time::timeout_at(deadline, TcpStream::connect(addr)).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(source)) => return Err(ProxyError::Connect { addr, source }),
        Err(_) => return Err(ProxyError::ConnectTimeout { addr, timeout }),
    };
    let _ = tcp.set_nodelay(true);
    crate::io::keepalive(&tcp, keepalive);
    let connector = tokio_rustls::TlsConnector::from(tls.config.clone());
    match tokio::time::timeout_at(deadline, connector.connect(name, tcp)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) => Err(ProxyError::Tls {
            addr,
            reason: format!("TLS origination: {}", describe(&e)),
        }),
        Err(_) => Err(ProxyError::ConnectTimeout { addr, timeout }),
    }
}

/// A handshake error for the operator: a SAN mismatch names both sides.
fn describe(e: &std::io::Error) -> String {
    if let Some(rustls::Error::InvalidCertificate(rustls::CertificateError::Other(o))) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        && let Some(m) = o.0.downcast_ref::<SanMismatch>()
    {
        return m.to_string();
    }
    super::describe_handshake_error(e)
}

fn read_certs(path: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{path}: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{path} holds no PEM CERTIFICATE blocks"));
    }
    Ok(certs)
}

fn load_roots(path: &str) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(read_certs(path)?);
    if added == 0 {
        return Err(format!("{path} holds no usable root certificate"));
    }
    Ok(roots)
}

/// The system roots, read once per process.
fn system_roots() -> Result<Arc<RootCertStore>, String> {
    static ROOTS: OnceLock<Result<Arc<RootCertStore>, String>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            load_roots(SYSTEM_BUNDLE)
                .map(Arc::new)
                .map_err(|e| format!("empty, and the system bundle cannot be used: {e}"))
        })
        .clone()
}

/// The server presented a valid chain without any of the SANs the policy names.
#[derive(Debug, thiserror::Error)]
#[error("server certificate SAN mismatch: expected one of [{expected}], presented [{presented}]")]
pub struct SanMismatch {
    pub expected: String,
    pub presented: String,
}

/// Chain to the roots, then one of `subjectAltNames` instead of the SNI name.
#[derive(Debug)]
struct SanVerifier {
    roots: Arc<RootCertStore>,
    sans: Vec<String>,
    provider: Arc<CryptoProvider>,
}

// === impl SanVerifier ===

impl ServerCertVerifier for SanVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = rustls::server::ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        let presented = presented_sans(end_entity);
        if self
            .sans
            .iter()
            .any(|want| presented.iter().any(|p| san_matches(want, p)))
        {
            return Ok(ServerCertVerified::assertion());
        }
        Err(rustls::Error::InvalidCertificate(
            rustls::CertificateError::Other(rustls::OtherError(Arc::new(SanMismatch {
                expected: self.sans.join(", "),
                presented: presented.join(", "),
            }))),
        ))
    }

    provider_signatures!(provider);
}

/// DNS, URI and IP SANs of a certificate, as text.
fn presented_sans(der: &CertificateDer<'_>) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return Vec::new();
    };
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::DNSName(d) => Some(d.to_string()),
            GeneralName::URI(u) => Some(u.to_string()),
            GeneralName::IPAddress(b) => match b.len() {
                4 => <[u8; 4]>::try_from(*b)
                    .ok()
                    .map(|a| IpAddr::from(a).to_string()),
                16 => <[u8; 16]>::try_from(*b)
                    .ok()
                    .map(|a| IpAddr::from(a).to_string()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// Exact match (DNS case-insensitively), or a `*.` wildcard in the certificate covering one label.
fn san_matches(want: &str, presented: &str) -> bool {
    if want.eq_ignore_ascii_case(presented) {
        return true;
    }
    match presented.strip_prefix("*.") {
        Some(suffix) => want
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest.eq_ignore_ascii_case(suffix)),
        None => false,
    }
}

/// `insecureSkipVerify`: any certificate, but the handshake must still be signed by its key.
/// (Also the app-health prober's HTTPS, as the kubelet's probes verify nothing.)
#[derive(Debug)]
pub(crate) struct SkipVerify(pub(crate) Arc<CryptoProvider>);

impl ServerCertVerifier for SkipVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    provider_signatures!(0);
}

#[cfg(test)]
mod tests;
