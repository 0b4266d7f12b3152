//! The mesh CA: signs workload certificates from CSRs, under a self-signed root or a plug-in
//! intermediate.
//!
//! What it promises:
//! - **The identity comes from the caller's verified credential only.** [`Ca::issue`] takes a
//!   [`WorkloadId`] (from [`crate::auth`]) and ignores the CSR's subject and SANs; the CSR only
//!   contributes its public key, and only once its self-signature verifies.
//! - **One leaf profile**: an empty subject, one URI SAN `spiffe://<td>/ns/<ns>/sa/<sa>`
//!   (critical, as RFC 5280 requires with an empty subject), CA:FALSE, key usage
//!   digitalSignature, EKU serverAuth + clientAuth, a random 128-bit serial, valid from one
//!   minute ago (clock skew between nodes) for the requested lifetime clamped to
//!   [[`MIN_TTL`], `max_ttl`], and never past the issuing certificate's own expiry.
//! - **Per-identity rate limiting** (token bucket, [`RateLimit`]) so one crash-looping proxy
//!   cannot starve the rest of the mesh.
//! - **Checked material**: a stored root or plug-in intermediate is validated when the `Ca` is
//!   built (key matches certificate, CA:TRUE, not expired, chain signatures link to the root), and
//!   a probe leaf must pass rustls/webpki path validation before the `Ca` is returned, so a `Ca`
//!   that exists issues certificates peers accept.
//!
//! [`Ca::issue`] is synchronous and CPU-bound (one ECDSA verify plus one sign, ~0.1 ms); callers
//! in async code may call it inline at mesh request rates.

mod chain;
#[cfg(feature = "kubernetes")]
pub mod cluster;
mod config;
mod csr;
mod error;
mod rate;
pub mod rotation;
mod shared;
mod store;

#[cfg(test)]
mod tests;

use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
    PublicKeyData, SanType, SerialNumber,
};
use ring::rand::{SecureRandom, SystemRandom};
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;

pub use self::config::{
    CaConfig, DEFAULT_BURST, DEFAULT_MAX_TTL, DEFAULT_PER_MINUTE, DEFAULT_TRUST_DOMAIN,
    DEFAULT_TTL, MIN_TTL, RateLimit, WorkloadId,
};
pub use self::error::CaError;
use self::rate::RateLimiter;
pub use self::shared::{SharedCa, TrustBundle};
pub use self::store::{FileRootStore, ROOT_CERT_FILE, ROOT_KEY_FILE, RootMaterial, RootStore};

/// Common name of the self-signed root.
pub const ROOT_COMMON_NAME: &str = "sinew mesh root";
/// Lifetime of a self-signed root: 10 years, so rotation is a planned event, not an outage.
pub const ROOT_TTL: Duration = Duration::from_secs(3650 * 24 * 60 * 60);
/// Backdating of a new root, so nodes whose clocks run behind accept it at once.
const ROOT_BACKDATE: time::Duration = time::Duration::hours(1);
/// Backdating of a leaf, for the same reason at workload scale.
const LEAF_BACKDATE: time::Duration = time::Duration::minutes(1);

/// The mesh certificate authority. `Send + Sync`: share one behind an `Arc`.
pub struct Ca {
    config: CaConfig,
    /// Signs leaves; its names and key identifier come from the issuing certificate itself.
    issuer: Issuer<'static, KeyPair>,
    issuer_not_after: OffsetDateTime,
    /// PEM of the issuing certificate and its chain, up to but excluding the root; empty when the
    /// root signs leaves directly.
    intermediates: Vec<String>,
    roots: Vec<String>,
    /// Hex SHA-256 of the DER of the root the issuing chain leads to.
    signing_root_sha256: String,
    limiter: RateLimiter,
    rng: SystemRandom,
}

/// A freshly issued workload certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issued {
    /// PEM certificates, leaf first, then intermediates (never the root).
    pub chain_pem: Vec<String>,
    /// The SPIFFE id in the leaf.
    pub identity: String,
    /// When the leaf expires (whole seconds, as encoded in the certificate).
    pub not_after: SystemTime,
}

/// Checks a PEM CSR as [`Ca::issue`] does before signing anything: it parses, holds a P-256
/// key, and its self-signature verifies. For the fuzz targets and dry runs.
pub fn verify_csr(csr_pem: &str) -> Result<(), CaError> {
    csr::verified_key(csr_pem).map(drop)
}

// === impl Ca ===

impl Ca {
    /// Loads the root from the store, or creates a self-signed ECDSA P-256 root valid 10 years
    /// (CN "sinew mesh root", O = trust domain, CA:TRUE critical, keyCertSign + cRLSign) and
    /// stores it.
    pub fn self_signed(store: &dyn RootStore, config: CaConfig) -> Result<Ca, CaError> {
        config.validate()?;
        let material = match store.load()? {
            Some(material) => {
                tracing::info!(store = %store.describe(), "loaded the mesh root");
                material
            }
            None => {
                let material = generate_root(&config.trust_domain)?;
                store.store(&material)?;
                tracing::info!(store = %store.describe(), "created a new mesh root");
                material
            }
        };
        Self::from_root_material(&material, config)
    }

    /// A CA signing with a self-signed root from anywhere (a file store, a Kubernetes Secret),
    /// checked as [`Ca::self_signed`] checks a stored one: key matches certificate, CA:TRUE, not
    /// expired, self-signature verifies, and a probe leaf validates.
    pub fn from_root_material(material: &RootMaterial, config: CaConfig) -> Result<Ca, CaError> {
        config.validate()?;
        Self::from_root(material, config).map_err(|reason| CaError::BadRoot { reason })
    }

    /// "Plug-in CA": an intermediate (cert + PKCS#8 key), its chain up to and including the root,
    /// and the root (one or more PEM certificates; more than one during a root rotation).
    ///
    /// Checks that the key belongs to the certificate, that every certificate is a CA and valid
    /// now, and that the chain links to a supplied root by name and signature. The chain may
    /// repeat the intermediate first and the root last, as `cert-chain.pem` files often do.
    pub fn plug_in(
        cert_pem: &str,
        key_pem: &str,
        chain_pem: &str,
        root_pem: &str,
        config: CaConfig,
    ) -> Result<Ca, CaError> {
        config.validate()?;
        Self::from_plug_in(cert_pem, key_pem, chain_pem, root_pem, config)
            .map_err(|reason| CaError::BadPlugIn { reason })
    }

    /// Issues a workload leaf for `id` from a PEM CSR. The identity comes only from `id`; the
    /// CSR's subject and SANs are ignored. `ttl`: `None` or zero means the default lifetime,
    /// anything else is clamped to [[`MIN_TTL`], `max_ttl`].
    pub fn issue(
        &self,
        csr_pem: &str,
        id: &WorkloadId,
        ttl: Option<Duration>,
    ) -> Result<Issued, CaError> {
        id.validate()?;
        let identity = id.spiffe_id(&self.config.trust_domain);
        // Before any crypto: shedding a looping client must be cheap.
        if let Err(retry_after) = self.limiter.acquire(&identity) {
            return Err(CaError::RateLimited {
                identity,
                retry_after,
            });
        }
        let key = csr::verified_key(csr_pem)?;
        let san = uri_san(&identity)?;
        let ttl = self.config.effective_ttl(ttl);
        let (leaf, not_after) = self.sign_leaf(&key, vec![san], ttl)?;
        Ok(Issued {
            chain_pem: self.chain_with(chain::pem_encode(leaf.der())),
            identity,
            not_after: SystemTime::from(not_after),
        })
    }

    /// A serving certificate for the control plane itself: the SPIFFE id of `id` plus `dns` and
    /// `ips` as SANs, with a fresh P-256 key and the default lifetime. Not rate limited.
    /// Returns (chain PEM leaf-first, PKCS#8 key PEM).
    pub fn serving_cert(
        &self,
        id: &WorkloadId,
        dns: &[String],
        ips: &[std::net::IpAddr],
    ) -> Result<(Vec<String>, String), CaError> {
        id.validate()?;
        let mut sans = Vec::with_capacity(1 + dns.len() + ips.len());
        sans.push(uri_san(&id.spiffe_id(&self.config.trust_domain))?);
        for name in dns {
            sans.push(dns_san(name)?);
        }
        sans.extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));

        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
            .map_err(|e| CaError::Sign(format!("could not generate a P-256 key: {e}")))?;
        let (leaf, _) = self.sign_leaf(&key, sans, self.config.default_ttl)?;
        Ok((
            self.chain_with(chain::pem_encode(leaf.der())),
            key.serialize_pem(),
        ))
    }

    /// The PEM roots workloads must trust.
    pub fn trust_bundle(&self) -> Vec<String> {
        self.roots.clone()
    }

    /// Hex SHA-256 of the DER of the root its certificates chain to (one of
    /// [`Ca::trust_bundle`]): what proxies compare to know they hold a certificate under it.
    pub fn signing_root_sha256(&self) -> &str {
        &self.signing_root_sha256
    }

    /// How long the certificates it issues by default live (the serving certificate too).
    pub fn default_ttl(&self) -> std::time::Duration {
        self.config.default_ttl
    }

    pub fn trust_domain(&self) -> &str {
        &self.config.trust_domain
    }

    pub fn config(&self) -> &CaConfig {
        &self.config
    }

    fn from_root(material: &RootMaterial, config: CaConfig) -> Result<Ca, String> {
        let der = chain::parse_one_pem_cert(&material.cert_pem, "root-cert.pem")?;
        let key = parse_key(&material.key_pem, "root-key.pem")?;
        let cert = chain::parse_x509(&der, "root-cert.pem")?;
        chain::check_key_matches(&cert, &key, "root-cert.pem")?;
        chain::check_ca_cert(&cert, "root-cert.pem", OffsetDateTime::now_utc())?;
        chain::check_signed_by(&cert, "root-cert.pem", &cert, "itself")?;
        let roots = vec![der.clone()];
        Self::build(config, &der, key, Vec::new(), roots, &der)
    }

    fn from_plug_in(
        cert_pem: &str,
        key_pem: &str,
        chain_pem: &str,
        root_pem: &str,
        config: CaConfig,
    ) -> Result<Ca, String> {
        let now = OffsetDateTime::now_utc();
        let cert_der = chain::parse_one_pem_cert(cert_pem, "the CA certificate")?;
        let key = parse_key(key_pem, "the CA key")?;
        let chain_ders = chain::parse_pem_certs(chain_pem, "the chain")?;
        let root_ders = chain::parse_pem_certs(root_pem, "the root")?;
        if root_ders.is_empty() {
            return Err("the root PEM holds no certificate; pass the mesh root".to_string());
        }

        let cert = chain::parse_x509(&cert_der, "the CA certificate")?;
        chain::check_key_matches(&cert, &key, "the CA certificate")?;
        chain::check_ca_cert(&cert, "the CA certificate", now)?;

        // What lies strictly between the issuing certificate and the root.
        let links: Vec<&CertificateDer<'static>> = chain_ders
            .iter()
            .filter(|c| **c != cert_der && !root_ders.contains(c))
            .collect();

        let mut intermediates = Vec::with_capacity(1 + links.len());
        let mut anchor = cert_der.clone();
        if !root_ders.contains(&cert_der) {
            let mut child = cert;
            let mut child_what = "the CA certificate".to_string();
            intermediates.push(cert_der.clone());
            for (i, der) in links.iter().enumerate() {
                let what = format!("chain certificate #{}", i + 1);
                let parent = chain::parse_x509(der, &what)?;
                chain::check_ca_cert(&parent, &what, now)?;
                chain::check_signed_by(&child, &child_what, &parent, &what)?;
                intermediates.push((*der).clone());
                child = parent;
                child_what = what;
            }
            let at = anchor_in_roots(&child, &child_what, &root_ders, now)?;
            anchor = root_ders[at].clone();
        }
        Self::build(config, &cert_der, key, intermediates, root_ders, &anchor)
    }

    /// Assembles a `Ca` and proves it works: one probe leaf must pass webpki path validation to
    /// the roots, as a peer proxy would run it.
    fn build(
        config: CaConfig,
        issuing_der: &CertificateDer<'static>,
        key: KeyPair,
        intermediates: Vec<CertificateDer<'static>>,
        roots: Vec<CertificateDer<'static>>,
        signing_root: &CertificateDer<'static>,
    ) -> Result<Ca, String> {
        let issuing = chain::parse_x509(issuing_der, "the issuing certificate")?;
        let issuer = Issuer::from_ca_cert_der(issuing_der, key)
            .map_err(|e| format!("cannot sign with the issuing certificate: {e}"))?;
        let ca = Ca {
            limiter: RateLimiter::new(config.rate),
            config,
            issuer,
            issuer_not_after: issuing.validity().not_after.to_datetime(),
            intermediates: intermediates.iter().map(|d| chain::pem_encode(d)).collect(),
            roots: roots.iter().map(|d| chain::pem_encode(d)).collect(),
            signing_root_sha256: sha256_hex(signing_root),
            rng: SystemRandom::new(),
        };

        // rcgen re-encodes the issuer name from its parsed form; verifiers match names byte for
        // byte, so an unusual encoding in a plug-in CA would yield leaves nobody accepts. Find out
        // now rather than from every proxy's handshake.
        let probe_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
            .map_err(|e| format!("could not generate a probe key: {e}"))?;
        let probe_id = WorkloadId::new("sinew-probe", "sinew-probe").spiffe_id(ca.trust_domain());
        let san = uri_san(&probe_id).map_err(|e| e.to_string())?;
        let (probe, _) = ca
            .sign_leaf(&probe_key, vec![san], MIN_TTL)
            .map_err(|e| format!("self-test failed: {e}"))?;
        let parsed = chain::parse_x509(probe.der(), "the probe leaf")?;
        chain::check_signed_by(&parsed, "a probe leaf", &issuing, "the issuing certificate")
            .map_err(|e| format!("self-test failed: {e}"))?;
        // Name constraints, EKU restrictions or odd extensions in a plug-in chain surface here,
        // with the same verdict proxies would reach.
        chain::webpki_check_client_leaf(probe.der(), &intermediates, &roots)
            .map_err(|e| format!("self-test failed: a probe leaf does not verify ({e})"))?;
        Ok(ca)
    }

    /// Signs a non-CA leaf for `key` with the given SANs, lifetime `ttl` capped at the issuer's
    /// expiry. Returns the leaf and its notAfter.
    fn sign_leaf(
        &self,
        key: &impl PublicKeyData,
        sans: Vec<SanType>,
        ttl: Duration,
    ) -> Result<(Certificate, OffsetDateTime), CaError> {
        let now = OffsetDateTime::now_utc();
        // Certificates carry whole seconds; truncating here makes `Issued::not_after` exact.
        let now = now - time::Duration::nanoseconds(i64::from(now.nanosecond()));
        if self.issuer_not_after <= now {
            return Err(CaError::CaExpired {
                not_after: SystemTime::from(self.issuer_not_after),
            });
        }
        let not_after = time::Duration::try_from(ttl)
            .ok()
            .and_then(|ttl| now.checked_add(ttl))
            .map_or(self.issuer_not_after, |t| t.min(self.issuer_not_after));

        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.subject_alt_names = sans;
        params.not_before = now - LEAF_BACKDATE;
        params.not_after = not_after;
        params.serial_number = Some(random_serial(&self.rng)?);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;

        let cert = params
            .signed_by(key, &self.issuer)
            .map_err(|e| CaError::Sign(e.to_string()))?;
        Ok((cert, not_after))
    }

    fn chain_with(&self, leaf_pem: String) -> Vec<String> {
        let mut chain = Vec::with_capacity(1 + self.intermediates.len());
        chain.push(leaf_pem);
        chain.extend(self.intermediates.iter().cloned());
        chain
    }
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("config", &self.config)
            .field("intermediates", &self.intermediates.len())
            .field("roots", &self.roots.len())
            .field("issuer_not_after", &self.issuer_not_after)
            .finish_non_exhaustive()
    }
}

/// Hex SHA-256 of a DER certificate: how roots are named on the wire (`signing_root_sha256`).
pub fn sha256_hex(der: &[u8]) -> String {
    use std::fmt::Write as _;
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    digest
        .as_ref()
        .iter()
        .fold(String::with_capacity(64), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

/// Hex SHA-256 of each certificate in a PEM text, in order (unparseable blocks are skipped).
pub fn pem_sha256s(pem: &str) -> Vec<String> {
    chain::parse_pem_certs(pem, "the bundle")
        .map(|ders| ders.iter().map(|d| sha256_hex(d)).collect())
        .unwrap_or_default()
}

/// The top of a plug-in chain must be signed by one of the supplied roots; returns which.
fn anchor_in_roots(
    top: &x509_parser::certificate::X509Certificate<'_>,
    top_what: &str,
    roots: &[CertificateDer<'static>],
    now: OffsetDateTime,
) -> Result<usize, String> {
    let mut last_err = None;
    for (i, der) in roots.iter().enumerate() {
        let what = format!("root #{}", i + 1);
        let root = chain::parse_x509(der, &what)?;
        match chain::check_signed_by(top, top_what, &root, &what) {
            Ok(()) => return chain::check_ca_cert(&root, &what, now).map(|()| i),
            Err(e) => last_err = Some(e),
        }
    }
    Err(format!(
        "the chain does not lead to the supplied root ({}); pass the chain from the intermediate \
         up to the root that issued it",
        last_err.unwrap_or_default()
    ))
}

/// A new self-signed ECDSA P-256 root for `trust_domain`, valid 10 years (CN "sinew mesh root",
/// O = trust domain, CA:TRUE, keyCertSign + cRLSign, backdated an hour). Nothing is stored: the
/// caller decides where it lives (see [`Ca::from_root_material`]).
pub fn generate_root(trust_domain: &str) -> Result<RootMaterial, CaError> {
    let sign_err = |e: rcgen::Error| CaError::Sign(format!("could not create the mesh root: {e}"));
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(sign_err)?;
    let now = OffsetDateTime::now_utc();

    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, ROOT_COMMON_NAME);
    dn.push(DnType::OrganizationName, trust_domain);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = now - ROOT_BACKDATE;
    params.not_after = now + ROOT_TTL;
    params.serial_number = Some(random_serial(&SystemRandom::new())?);

    let cert = params.self_signed(&key).map_err(sign_err)?;
    Ok(RootMaterial {
        cert_pem: chain::pem_encode(cert.der()),
        key_pem: key.serialize_pem(),
    })
}

/// 128 random bits, positive and with a non-zero top byte so every serial encodes to the same
/// length (RFC 5280 allows up to 20 octets).
fn random_serial(rng: &SystemRandom) -> Result<SerialNumber, CaError> {
    let mut bytes = [0u8; 16];
    rng.fill(&mut bytes)
        .map_err(|_| CaError::Sign("the system random generator failed".to_string()))?;
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}

fn parse_key(pem: &str, what: &str) -> Result<KeyPair, String> {
    KeyPair::from_pem(pem).map_err(|e| {
        format!(
            "{what} is not a usable PEM PKCS#8 private key ({e}); keys must be unencrypted \
             \"BEGIN PRIVATE KEY\" blocks (convert with `openssl pkcs8 -topk8 -nocrypt`)"
        )
    })
}

fn uri_san(uri: &str) -> Result<SanType, CaError> {
    uri.try_into()
        .map(SanType::URI)
        .map_err(|e| CaError::InvalidName {
            value: uri.to_string(),
            reason: format!("{e}"),
        })
}

fn dns_san(name: &str) -> Result<SanType, CaError> {
    if name.is_empty() || name.contains(|c: char| c.is_whitespace()) {
        return Err(CaError::InvalidName {
            value: name.to_string(),
            reason: "a DNS name must be non-empty and without spaces".to_string(),
        });
    }
    name.try_into()
        .map(SanType::DnsName)
        .map_err(|e| CaError::InvalidName {
            value: name.to_string(),
            reason: format!("{e}; DNS names are ASCII"),
        })
}
