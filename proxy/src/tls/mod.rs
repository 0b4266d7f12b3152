//! Mesh TLS: workload credentials, SPIFFE identities and the rustls configs between proxies.
//!
//! Promises:
//! - TLS 1.3 only, ring provider, client certificates required on the mesh port.
//! - Both sides verify the peer's chain against the trust bundle. The client side also checks that
//!   the server's SPIFFE URI SAN is exactly the identity the config expects for that endpoint, and
//!   the error names both the expected and the presented identity.
//! - Credentials live in a [`Store`] that can be replaced at run time (certificate renewal): new
//!   connections use the new certificate, established ones keep theirs.

/// A `ServerCertVerifier`'s handshake-signature methods, checked with the algorithms of the
/// crypto provider `$provider` names on `self` (every verifier here checks signatures the same
/// way). `tls13` leaves `verify_tls12_signature` to the verifier (the mesh refuses TLS 1.2).
macro_rules! provider_signatures {
    (tls13, $provider:tt) => {
        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &rustls::pki_types::CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            let algorithms = &self.$provider.signature_verification_algorithms;
            rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
        }

        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            let algorithms = &self.$provider.signature_verification_algorithms;
            algorithms.supported_schemes()
        }
    };
    ($provider:tt) => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &rustls::pki_types::CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            let algorithms = &self.$provider.signature_verification_algorithms;
            rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
        }

        provider_signatures!(tls13, $provider);
    };
}

pub mod client_hello;
pub mod originate;
mod verify;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

pub use verify::IdentityMismatch;

/// ALPN of the multiplexed HTTP/2 connection between proxies (carries HTTP/1 and HTTP/2 apps).
pub const ALPN_H2: &[u8] = b"sinew/h2";
/// ALPN of a dedicated HTTP/1.1 connection between proxies, used for Upgrade and CONNECT.
pub const ALPN_H1: &[u8] = b"sinew/h1";
/// ALPN of an opaque TCP stream between proxies (a small header names the target port).
pub const ALPN_TCP: &[u8] = b"sinew/tcp";
/// ALPN of an opaque TCP stream whose header also carries the client's peer metadata (the
/// `x-sinew-peer` value). Clients offer it before `sinew/tcp`; a server that does not know it
/// picks `sinew/tcp`, so old and new proxies keep talking (the server chooses by its own order).
pub const ALPN_TCP_PEER: &[u8] = b"sinew/tcp-peer";
/// Every ALPN that marks a connection as mesh traffic, in the server's order of preference.
pub const MESH_ALPNS: &[&[u8]] = &[ALPN_H2, ALPN_H1, ALPN_TCP_PEER, ALPN_TCP];
/// What a client offers for each kind of mesh connection, preferred first.
pub const OFFER_H2: &[&[u8]] = &[ALPN_H2];
pub const OFFER_H1: &[&[u8]] = &[ALPN_H1];
pub const OFFER_TCP: &[&[u8]] = &[ALPN_TCP_PEER, ALPN_TCP];

/// A SPIFFE identity, e.g. `spiffe://cluster.local/ns/default/sa/reviews`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Identity(Arc<str>);

impl Identity {
    pub fn parse(s: &str) -> Result<Self, TlsError> {
        let rest = s
            .strip_prefix("spiffe://")
            .ok_or_else(|| TlsError::BadIdentity(s.to_string()))?;
        let (domain, path) = rest
            .split_once('/')
            .ok_or_else(|| TlsError::BadIdentity(s.to_string()))?;
        if domain.is_empty() || path.is_empty() || s.chars().any(|c| c.is_whitespace()) {
            return Err(TlsError::BadIdentity(s.to_string()));
        }
        Ok(Self(Arc::from(s)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} file {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what} file {path} holds no PEM {expected}")]
    Empty {
        what: &'static str,
        path: PathBuf,
        expected: &'static str,
    },
    #[error("{what} file {path} is not valid PEM: {reason}")]
    Pem {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error(
        "the private key in {path} is not usable (ECDSA P-256/P-384, Ed25519 or RSA): {reason}"
    )]
    Key { path: PathBuf, reason: String },
    #[error("the certificate in {path} does not match its private key: {reason}")]
    KeyMismatch { path: PathBuf, reason: String },
    #[error("the certificate in {path} has no SPIFFE URI SAN (spiffe://...)")]
    NoIdentity { path: PathBuf },
    #[error("the certificate in {path} cannot be parsed: {reason}")]
    BadCert { path: PathBuf, reason: String },
    #[error("trust bundle {path} rejected: {reason}")]
    Roots { path: PathBuf, reason: String },
    #[error("'{0}' is not a SPIFFE identity (want spiffe://<trust-domain>/<path>)")]
    BadIdentity(String),
    #[error("rustls: {0}")]
    Rustls(#[from] rustls::Error),
}

/// A workload's certificate, key and trust bundle, checked for consistency.
pub struct Credentials {
    pub key: Arc<CertifiedKey>,
    pub roots: Arc<RootCertStore>,
    pub identity: Identity,
    pub not_after: SystemTime,
    /// Hex SHA-256 of each root's DER, in bundle order (for `/config_dump`).
    pub roots_sha256: Vec<String>,
    /// Hex SHA-256 of the root the certificate's chain verifies to now, if any: after a root
    /// rotation, shows whether this proxy holds a certificate its peers accept.
    pub chain_root_sha256: Option<String>,
}

/// Hex SHA-256 of DER bytes: how roots are named between the control plane and proxies.
pub fn sha256_hex(der: &[u8]) -> String {
    use std::fmt::Write as _;
    ring::digest::digest(&ring::digest::SHA256, der)
        .as_ref()
        .iter()
        .fold(String::with_capacity(64), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

/// The root (of `roots`) that `chain` (leaf first) verifies to, as hex SHA-256.
fn chain_root(
    chain: &[CertificateDer<'static>],
    roots: &[CertificateDer<'static>],
) -> Option<String> {
    let leaf = rustls::server::ParsedCertificate::try_from(chain.first()?).ok()?;
    let algs = provider().signature_verification_algorithms.all;
    let now = rustls::pki_types::UnixTime::now();
    roots.iter().find_map(|root| {
        let mut one = RootCertStore::empty();
        one.add(root.clone()).ok()?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &leaf,
            &one,
            &chain[1..],
            now,
            algs,
        )
        .ok()
        .map(|()| sha256_hex(root))
    })
}

impl Credentials {
    /// Loads PEM files; every error names the file and what is wrong with it.
    pub fn load(cert: &Path, key: &Path, bundle: &Path) -> Result<Self, TlsError> {
        let cert_pem = read("certificate", cert)?;
        let key_pem = read("private key", key)?;
        let bundle_pem = read("trust bundle", bundle)?;
        Self::from_pem(&cert_pem, &key_pem, &bundle_pem, [cert, key, bundle])
    }

    /// Builds credentials from PEM text (`paths` only label errors).
    pub fn from_pem(
        cert_pem: &[u8],
        key_pem: &[u8],
        bundle_pem: &[u8],
        paths: [&Path; 3],
    ) -> Result<Self, TlsError> {
        let [cert_path, key_path, bundle_path] = paths;
        let chain = certs("certificate", cert_path, cert_pem)?;
        let roots_der = certs("trust bundle", bundle_path, bundle_pem)?;
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::Pem {
            what: "private key",
            path: key_path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let provider = provider();
        let signing_key =
            provider
                .key_provider
                .load_private_key(key)
                .map_err(|e| TlsError::Key {
                    path: key_path.to_path_buf(),
                    reason: e.to_string(),
                })?;
        let (identity, not_after) = leaf_identity(&chain[0], cert_path)?;
        let certified = CertifiedKey::new(chain, signing_key);
        certified.keys_match().map_err(|e| TlsError::KeyMismatch {
            path: cert_path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let chain_root_sha256 = chain_root(&certified.cert, &roots_der);
        let roots_sha256 = roots_der.iter().map(|d| sha256_hex(d)).collect();
        let mut roots = RootCertStore::empty();
        for der in roots_der {
            roots.add(der).map_err(|e| TlsError::Roots {
                path: bundle_path.to_path_buf(),
                reason: e.to_string(),
            })?;
        }
        Ok(Self {
            key: Arc::new(certified),
            roots: Arc::new(roots),
            identity,
            not_after,
            roots_sha256,
            chain_root_sha256,
        })
    }
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

fn certs(
    what: &'static str,
    path: &Path,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            what,
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Empty {
            what,
            path: path.to_path_buf(),
            expected: "CERTIFICATE blocks",
        });
    }
    Ok(certs)
}

/// The SPIFFE URI SAN and expiry of a leaf certificate.
fn leaf_identity(
    der: &CertificateDer<'_>,
    path: &Path,
) -> Result<(Identity, SystemTime), TlsError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| TlsError::BadCert {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let not_after = SystemTime::UNIX_EPOCH
        + std::time::Duration::from_secs(cert.validity().not_after.timestamp().max(0) as u64);
    let id = spiffe_ids(&cert)
        .into_iter()
        .next()
        .ok_or_else(|| TlsError::NoIdentity {
            path: path.to_path_buf(),
        })?;
    Ok((Identity::parse(&id)?, not_after))
}

/// All `spiffe://` URI SANs of a certificate.
pub(crate) fn spiffe_ids(cert: &x509_parser::certificate::X509Certificate<'_>) -> Vec<String> {
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            x509_parser::extensions::GeneralName::URI(u) if u.starts_with("spiffe://") => {
                Some(u.to_string())
            }
            _ => None,
        })
        .collect()
}

/// The SPIFFE identity presented in a DER certificate, if any.
pub fn identity_of(der: &[u8]) -> Option<Identity> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    spiffe_ids(&cert)
        .into_iter()
        .next()
        .and_then(|s| Identity::parse(&s).ok())
}

/// Hex SHA-256 of each certificate in a PEM text, in order (how `/config_dump` names roots).
pub fn pem_sha256s(pem: &[u8]) -> Result<Vec<String>, TlsError> {
    let path = Path::new("<PEM>");
    Ok(certs("certificates", path, pem)?
        .iter()
        .map(|d| sha256_hex(d))
        .collect())
}

/// PEM roots pushed by the control plane, as a store.
pub fn roots_from_pem(pem: &[u8]) -> Result<RootCertStore, TlsError> {
    let path = Path::new("<trust bundle from the control plane>");
    let mut roots = RootCertStore::empty();
    for der in certs("trust bundle", path, pem)? {
        roots.add(der).map_err(|e| TlsError::Roots {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    }
    Ok(roots)
}

/// Loads PEM roots from a file (the bootstrap trust for the control plane).
pub fn load_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let pem = read("root certificate", path)?;
    let mut roots = RootCertStore::empty();
    for der in certs("root certificate", path, &pem)? {
        roots.add(der).map_err(|e| TlsError::Roots {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    }
    Ok(roots)
}

/// A client config for the control plane: TLS 1.3, ALPN h2, no client certificate (callers
/// authenticate with a bearer credential), and the server must present `expected`.
pub fn control_client_config(
    roots: ControlRoots,
    expected: Identity,
) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = provider();
    let verifier =
        verify::SpiffeServerVerifier::new(verify::Roots::Shared(roots), expected, provider.clone());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// Turns a handshake error into an operator-readable reason (an identity mismatch names both).
pub fn describe_handshake_error(e: &std::io::Error) -> String {
    if let Some(rustls::Error::InvalidCertificate(rustls::CertificateError::Other(o))) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        && let Some(m) = o.0.downcast_ref::<IdentityMismatch>()
    {
        return m.to_string();
    }
    e.to_string()
}

/// The crypto provider everything here uses: ring, TLS 1.3 suites only.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    let mut p = rustls::crypto::ring::default_provider();
    p.cipher_suites
        .retain(|s| s.version() == &rustls::version::TLS13);
    Arc::new(p)
}

/// Client configs by (expected server identity, ALPNs offered).
type ClientConfigs = HashMap<(Identity, &'static [&'static [u8]]), Arc<ClientConfig>>;

/// TLS configs derived from one set of credentials.
pub struct TlsState {
    pub creds: Credentials,
    server: Arc<ServerConfig>,
    clients: Mutex<ClientConfigs>,
}

impl TlsState {
    pub fn new(creds: Credentials) -> Result<Self, TlsError> {
        let provider = provider();
        let client_verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            creds.roots.clone(),
            provider.clone(),
        )
        .build()
        .map_err(|e| TlsError::Rustls(rustls::Error::General(e.to_string())))?;
        let mut server = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(client_verifier)
            .with_cert_resolver(Arc::new(verify::FixedCert(creds.key.clone())));
        server.alpn_protocols = MESH_ALPNS.iter().map(|a| a.to_vec()).collect();
        // Mesh connections are long-lived; tickets would only cost memory.
        server.send_tls13_tickets = 0;
        Ok(Self {
            creds,
            server: Arc::new(server),
            clients: Mutex::new(HashMap::new()),
        })
    }

    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.server.clone()
    }

    /// A client config that presents our certificate, accepts only `expected` as the server and
    /// offers the ALPNs `offer` (preferred first).
    pub fn client_config(
        &self,
        expected: &Identity,
        offer: &'static [&'static [u8]],
    ) -> Result<Arc<ClientConfig>, TlsError> {
        let key = (expected.clone(), offer);
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = clients.get(&key) {
            return Ok(c.clone());
        }
        let provider = provider();
        let verifier = verify::SpiffeServerVerifier::new(
            verify::Roots::Fixed(self.creds.roots.clone()),
            expected.clone(),
            provider.clone(),
        );
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_client_cert_resolver(Arc::new(verify::FixedCert(self.creds.key.clone())));
        config.alpn_protocols = offer.iter().map(|a| a.to_vec()).collect();
        config.resumption = rustls::client::Resumption::disabled();
        let config = Arc::new(config);
        clients.insert(key, config.clone());
        Ok(config)
    }
}

/// The roots the control-plane channel verifies the control plane with: the bootstrap
/// `root_cert_file` until the control plane pushes a trust bundle, then the latest pushed bundle.
///
/// Replaced rather than merged: after a root rotation the old root must stop being trusted here
/// too, not only between proxies — a rotation is often done because the old key may have leaked,
/// and a leaked root that still authenticates "the control plane" to every running proxy would
/// hand out config and trust bundles. The pushed bundle came over the channel the bootstrap roots
/// authenticated, and a rotation only drops a root once the serving certificate is under the new
/// one. Handshakes read the current roots; an established connection is not affected.
#[derive(Clone, Debug)]
pub struct ControlRoots(Arc<RwLock<Arc<RootCertStore>>>);

impl ControlRoots {
    pub fn new(bootstrap: RootCertStore) -> Self {
        Self(Arc::new(RwLock::new(Arc::new(bootstrap))))
    }

    pub fn current(&self) -> Arc<RootCertStore> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The next handshakes verify with `roots`.
    pub fn replace(&self, roots: Arc<RootCertStore>) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = roots;
    }
}

/// The proxy's current TLS state; replaced whole when credentials change. Empty until the first
/// certificate arrives (from files at start-up, or from the control plane's CA).
#[derive(Clone, Default)]
pub struct Store(Arc<RwLock<Option<Arc<TlsState>>>>);

impl Store {
    pub fn new(state: TlsState) -> Self {
        Self(Arc::new(RwLock::new(Some(Arc::new(state)))))
    }

    pub fn empty() -> Self {
        Self::default()
    }

    pub fn current(&self) -> Option<Arc<TlsState>> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// New connections use `state` from now on; established ones keep theirs.
    pub fn replace(&self, state: TlsState) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(state));
    }
}

/// Who is on the other end of a terminated mesh connection.
#[derive(Clone, Debug)]
pub struct PeerInfo {
    pub identity: Identity,
    /// Lower-case hex SHA-256 of the peer's leaf certificate (the `Hash=` of XFCC).
    pub cert_sha256: Arc<str>,
}

impl PeerInfo {
    pub fn from_connection(conn: &rustls::CommonState) -> Option<Self> {
        let leaf = conn.peer_certificates()?.first()?;
        let identity = identity_of(leaf)?;
        let digest = ring::digest::digest(&ring::digest::SHA256, leaf);
        let mut hex = String::with_capacity(64);
        for b in digest.as_ref() {
            use fmt::Write;
            let _ = write!(hex, "{b:02x}");
        }
        Some(Self {
            identity,
            cert_sha256: Arc::from(hex),
        })
    }
}

#[cfg(test)]
pub(crate) mod tests;
