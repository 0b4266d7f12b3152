//! The control plane's own serving certificate (gRPC on 15012, the webhook on 15017), issued by
//! the mesh CA and renewed at half its lifetime, so a control plane that runs for weeks never
//! presents an expired certificate. New handshakes get the new certificate; open connections
//! keep theirs.

use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::ca::{Ca, SharedCa, WorkloadId};

/// A failed renewal is tried again this often (the current certificate still has half its life).
const RETRY: Duration = Duration::from_secs(60);

/// The current serving certificate, and how to get the next one.
#[derive(Debug)]
pub struct ServingCert {
    /// Read at each renewal: after a root rotation swaps it, [`ServingCert::renew`] re-issues
    /// under the new root.
    ca: Arc<SharedCa>,
    id: WorkloadId,
    dns: Vec<String>,
    ips: Vec<IpAddr>,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
}

// === impl ServingCert ===

impl ServingCert {
    /// Issues the first certificate for `id` with `dns` and `ips` as SANs.
    pub fn issue(
        ca: Arc<SharedCa>,
        id: WorkloadId,
        dns: Vec<String>,
        ips: Vec<IpAddr>,
    ) -> anyhow::Result<Arc<Self>> {
        let provider = Arc::new(tls13_provider());
        let first = certified_key(&ca.current(), &id, &dns, &ips, &provider)?;
        Ok(Arc::new(Self {
            ca,
            id,
            dns,
            ips,
            provider,
            current: RwLock::new(first),
        }))
    }

    /// Replaces the certificate with a fresh one.
    pub fn renew(&self) -> anyhow::Result<()> {
        let next = certified_key(
            &self.ca.current(),
            &self.id,
            &self.dns,
            &self.ips,
            &self.provider,
        )?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = next;
        Ok(())
    }

    /// The certificate new handshakes get.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Renews at half the CA's default lifetime, for as long as the returned task runs.
    pub fn spawn_renewal(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let cert = Arc::downgrade(self);
        let half_life = self.ca.current().default_ttl() / 2;
        tokio::spawn(async move {
            let mut wait = half_life;
            loop {
                tokio::time::sleep(wait).await;
                let Some(cert) = cert.upgrade() else {
                    return;
                };
                wait = match cert.renew() {
                    Ok(()) => {
                        tracing::info!("serving certificate renewed");
                        half_life
                    }
                    Err(error) => {
                        tracing::warn!(%error, "cannot renew the serving certificate; retrying");
                        RETRY
                    }
                };
            }
        })
    }

    /// A TLS 1.3 server config presenting the current certificate, with `alpn`.
    pub fn tls_config(
        self: &Arc<Self>,
        alpn: &[&[u8]],
    ) -> anyhow::Result<Arc<rustls::ServerConfig>> {
        let mut config = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }
}

impl ResolvesServerCert for ServingCert {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// ring, TLS 1.3 suites only.
fn tls13_provider() -> CryptoProvider {
    let mut provider = rustls::crypto::ring::default_provider();
    provider
        .cipher_suites
        .retain(|s| s.version() == &rustls::version::TLS13);
    provider
}

fn certified_key(
    ca: &Ca,
    id: &WorkloadId,
    dns: &[String],
    ips: &[IpAddr],
    provider: &CryptoProvider,
) -> anyhow::Result<Arc<CertifiedKey>> {
    let (chain_pem, key_pem) = ca.serving_cert(id, dns, ips)?;
    let mut chain = Vec::new();
    for pem in &chain_pem {
        chain.push(CertificateDer::from_pem_slice(pem.as_bytes())?);
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())?;
    Ok(Arc::new(CertifiedKey::from_der(chain, key, provider)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::{CaConfig, FileRootStore};

    #[tokio::test(start_paused = true)]
    async fn the_certificate_is_renewed_at_half_its_lifetime() {
        let dir = sinew_proxy::testing::TempDir::new("serving-cert");
        let config = CaConfig {
            default_ttl: Duration::from_secs(3600),
            ..CaConfig::default()
        };
        let ca = SharedCa::new(
            Ca::self_signed(&FileRootStore::new(dir.path().to_path_buf()), config).unwrap(),
        );
        let id = WorkloadId {
            namespace: "sinew-system".into(),
            service_account: "sinew-control-plane".into(),
        };
        let cert = ServingCert::issue(ca, id, vec!["localhost".into()], vec![]).unwrap();
        let first = cert.current();
        let _renewal = cert.spawn_renewal();
        tokio::time::sleep(Duration::from_secs(1790)).await;
        assert_eq!(cert.current().cert, first.cert, "kept before half-life");
        tokio::time::sleep(Duration::from_secs(20)).await;
        assert_ne!(cert.current().cert, first.cert, "renewed after half-life");
    }
}
