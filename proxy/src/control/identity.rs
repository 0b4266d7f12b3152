//! The certificate manager: a fresh ECDSA P-256 key per certificate, a CSR to the control plane's
//! CA, renewal at about half-life with jitter, exponential backoff on failure.
//!
//! Promises: the private key never leaves the process; a certificate is replaced only by a newer
//! one, never dropped because renewal failed; new connections use the new certificate at once
//! (through [`tls::Store`]), established ones keep theirs.
//!
//! Root rotation: the CA says which root each certificate chains to, and every pushed trust
//! bundle which root the CA signs under now. When they differ the certificate is renewed at
//! once (after up to [`ROOT_CHANGE_JITTER`], so a mesh does not hit the CA in one instant)
//! instead of at half-life: that is how a rotation re-issues every workload without a restart.
//! A bundle that no longer holds our certificate's root is still installed (our peers have it
//! too, and refusing it would not make our certificate acceptable to them); the renewal it
//! triggers is what fixes it.

use super::{Backoff, Channel};
use crate::config::ControlPlane;
use crate::tls::{self, Credentials, TlsState};
use sinew_proto::ca::v1 as pb;
use sinew_proto::ca::v1::certificate_service_client::CertificateServiceClient;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::watch;
use tracing::{info, warn};

/// The longest a proxy waits before renewing under a new signing root.
pub const ROOT_CHANGE_JITTER: Duration = Duration::from_secs(2);

/// The PEM pieces the TLS state is built from. The trust bundle may change on its own (root
/// rotation pushed over discovery), so the key and chain are kept to rebuild with.
#[derive(Default)]
pub struct Material {
    key_pem: Option<String>,
    chain_pem: Option<String>,
    bundle_pem: Option<String>,
    /// The root the held certificate was issued under, as the CA said (hex SHA-256; empty when
    /// the CA did not say).
    cert_root: String,
}

/// Shared between the certificate manager and the discovery client.
#[derive(Clone)]
pub struct TlsMaterial {
    material: Arc<Mutex<Material>>,
    /// The root the CA signs under, as the latest pushed bundle says (empty: not said).
    signing_root: watch::Sender<String>,
}

impl Default for TlsMaterial {
    fn default() -> Self {
        Self {
            material: Default::default(),
            signing_root: watch::channel(String::new()).0,
        }
    }
}

impl TlsMaterial {
    fn lock(&self) -> std::sync::MutexGuard<'_, Material> {
        self.material.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// True when the held certificate was issued under another root than the one the CA signs
    /// under now (both known).
    pub fn signed_under_another_root(&self) -> bool {
        let wanted = self.signing_root.borrow();
        let held = &self.lock().cert_root;
        !wanted.is_empty() && !held.is_empty() && *held != *wanted
    }

    /// Installs a new certificate (and the bundle it came with) and rebuilds the TLS state.
    pub fn set_certificate(
        &self,
        key_pem: String,
        chain_pem: String,
        bundle_pem: String,
        cert_root: String,
        store: &tls::Store,
    ) -> Result<Credentials, tls::TlsError> {
        let creds = credentials(&key_pem, &chain_pem, &bundle_pem)?;
        let mut m = self.lock();
        m.key_pem = Some(key_pem);
        m.chain_pem = Some(chain_pem);
        m.cert_root = cert_root;
        // A bundle pushed over discovery is at least as new as the one in the CA's answer.
        let bundle = m.bundle_pem.clone().unwrap_or(bundle_pem);
        m.bundle_pem = Some(bundle.clone());
        let (k, c) = (m.key_pem.clone(), m.chain_pem.clone());
        drop(m);
        let state = TlsState::new(credentials(
            &k.unwrap_or_default(),
            &c.unwrap_or_default(),
            &bundle,
        )?)?;
        store.replace(state);
        Ok(creds)
    }

    /// Installs a new trust bundle, naming the root the CA signs under now (`signing_root`,
    /// hex SHA-256, empty if not said); rebuilds the TLS state if a certificate is held. A
    /// signing root other than our certificate's wakes the certificate manager.
    pub fn set_bundle(
        &self,
        bundle_pem: String,
        signing_root: String,
        store: &tls::Store,
    ) -> Result<(), tls::TlsError> {
        let mut m = self.lock();
        if let (Some(k), Some(c)) = (m.key_pem.clone(), m.chain_pem.clone()) {
            // Validate before committing: a bundle that does not parse changes nothing.
            let state = TlsState::new(credentials(&k, &c, &bundle_pem)?)?;
            m.bundle_pem = Some(bundle_pem);
            drop(m);
            store.replace(state);
        } else {
            m.bundle_pem = Some(bundle_pem);
            drop(m);
        }
        self.signing_root.send_if_modified(|s| {
            let changed = *s != signing_root;
            *s = signing_root;
            changed
        });
        Ok(())
    }
}

fn credentials(key: &str, chain: &str, bundle: &str) -> Result<Credentials, tls::TlsError> {
    let p = Path::new("<from the control plane>");
    Credentials::from_pem(
        chain.as_bytes(),
        key.as_bytes(),
        bundle.as_bytes(),
        [p, p, p],
    )
}

/// When to renew a certificate valid from `not_before` to `not_after`: at half its lifetime,
/// moved by up to ±`jitter` of the lifetime (`unit` in [0, 1) picks where).
pub fn renew_after(
    not_before: SystemTime,
    not_after: SystemTime,
    jitter: f64,
    unit: f64,
) -> SystemTime {
    let lifetime = not_after.duration_since(not_before).unwrap_or_default();
    let offset = lifetime.mul_f64((0.5 + jitter * (2.0 * unit - 1.0)).clamp(0.1, 0.9));
    not_before + offset
}

#[derive(Debug, thiserror::Error)]
pub enum CertifyError {
    #[error("cannot read the token file {path}: {source}")]
    Token {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("the CA refused: {0}")]
    Refused(tonic::Status),
    #[error("the CA's answer is unusable: {0}")]
    BadAnswer(#[from] tls::TlsError),
    #[error("generating the key or CSR failed: {0}")]
    Csr(#[from] rcgen::Error),
}

/// Where certificates come from: the control plane's CA over gRPC, or a stand-in in tests.
pub trait CaClient: Send + Sync + 'static {
    fn create(
        &self,
        token: String,
        req: pb::CreateCertificateRequest,
    ) -> futures_util::future::BoxFuture<
        'static,
        Result<pb::CreateCertificateResponse, tonic::Status>,
    >;
}

impl CaClient for Channel {
    fn create(
        &self,
        token: String,
        req: pb::CreateCertificateRequest,
    ) -> futures_util::future::BoxFuture<
        'static,
        Result<pb::CreateCertificateResponse, tonic::Status>,
    > {
        let mut client = CertificateServiceClient::with_origin(self.clone(), self.origin());
        Box::pin(async move {
            let mut req = tonic::Request::new(req);
            if let Ok(v) = format!("Bearer {token}").parse() {
                req.metadata_mut().insert("authorization", v);
            }
            Ok(client.create_certificate(req).await?.into_inner())
        })
    }
}

pub struct Certifier {
    pub ca: Arc<dyn CaClient>,
    pub config: ControlPlane,
    pub store: tls::Store,
    pub material: TlsMaterial,
    /// Set to true once the first certificate is installed.
    pub has_cert: watch::Sender<bool>,
}

// === impl Certifier ===

impl Certifier {
    /// Runs forever: certify, sleep until renewal, repeat; back off on failure.
    pub async fn run(self) {
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(60));
        let mut expires: Option<SystemTime> = None;
        loop {
            match self.certify_once().await {
                Ok(creds) => {
                    backoff.reset();
                    let now = SystemTime::now();
                    let at = renew_after(now, creds.not_after, 0.1, super::unit_random());
                    info!(identity = %creds.identity, expires_in = ?creds.not_after.duration_since(now).unwrap_or_default(), "workload certificate installed");
                    expires = Some(creds.not_after);
                    self.has_cert.send_replace(true);
                    self.until_renewal(at.duration_since(now).unwrap_or_default())
                        .await;
                }
                Err(e) => {
                    let delay = backoff.next_delay();
                    let left = expires.and_then(|x| x.duration_since(SystemTime::now()).ok());
                    warn!(error = %e, retry_in = ?delay, current_certificate_valid_for = ?left, "certificate request failed");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// Waits `half_life` (the jittered renewal time), or less if a pushed bundle says the CA
    /// signs under another root than our certificate's: then up to [`ROOT_CHANGE_JITTER`].
    async fn until_renewal(&self, half_life: Duration) {
        let mut signing_root = self.material.signing_root.subscribe();
        let new_root = async {
            while !self.material.signed_under_another_root() {
                if signing_root.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::select! {
            () = tokio::time::sleep(half_life) => {}
            () = new_root => {
                let jitter = ROOT_CHANGE_JITTER.mul_f64(super::unit_random());
                info!(after = ?jitter, "the mesh CA signs under a new root; renewing the certificate");
                tokio::time::sleep(jitter).await;
            }
        }
    }

    /// One CSR round trip; installs the result.
    pub async fn certify_once(&self) -> Result<Credentials, CertifyError> {
        let token =
            super::read_token(&self.config.token_file).map_err(|source| CertifyError::Token {
                path: self.config.token_file.clone(),
                source,
            })?;
        let key = rcgen::KeyPair::generate()?;
        let csr = rcgen::CertificateParams::default()
            .serialize_request(&key)?
            .pem()?;
        let req = pb::CreateCertificateRequest {
            csr,
            validity: Some(pbjson_types::Duration {
                seconds: self.config.certificate_ttl.as_secs() as i64,
                nanos: 0,
            }),
        };
        let rsp = self
            .ca
            .create(token, req)
            .await
            .map_err(CertifyError::Refused)?;
        let chain = rsp.cert_chain.join("\n");
        let bundle = rsp.trust_bundle.join("\n");
        Ok(self.material.set_certificate(
            key.serialize_pem(),
            chain,
            bundle,
            rsp.signing_root_sha256,
            &self.store,
        )?)
    }
}

#[cfg(test)]
mod tests;
