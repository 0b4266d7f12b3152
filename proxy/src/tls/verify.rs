//! Certificate verification between proxies: chain to the trust bundle, then the SPIFFE identity.
//!
//! Mesh certificates carry only a URI SAN, so rustls' usual DNS-name check does not apply; instead
//! the client verifier compares the server's SPIFFE ID with the identity the endpoint must have.

use super::Identity;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::sync::Arc;

/// The server presented a valid chain but the wrong identity.
#[derive(Debug, thiserror::Error)]
#[error("peer identity mismatch: expected {expected}, peer presented {presented}")]
pub struct IdentityMismatch {
    pub expected: Identity,
    pub presented: String,
}

/// Where a verifier's trust anchors come from.
#[derive(Debug)]
pub(super) enum Roots {
    /// Fixed for the verifier's life (mesh configs are rebuilt when the bundle changes).
    Fixed(Arc<RootCertStore>),
    /// Read at each handshake (the control-plane channel, whose config lives as long as the
    /// proxy).
    Shared(super::ControlRoots),
}

#[derive(Debug)]
pub(super) struct SpiffeServerVerifier {
    roots: Roots,
    expected: Identity,
    provider: Arc<CryptoProvider>,
}

impl SpiffeServerVerifier {
    pub(super) fn new(roots: Roots, expected: Identity, provider: Arc<CryptoProvider>) -> Self {
        Self {
            roots,
            expected,
            provider,
        }
    }
}

// === impl SpiffeServerVerifier ===

impl ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = rustls::server::ParsedCertificate::try_from(end_entity)?;
        let shared;
        let roots = match &self.roots {
            Roots::Fixed(r) => r,
            Roots::Shared(r) => {
                shared = r.current();
                &shared
            }
        };
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        let presented = match x509_parser::parse_x509_certificate(end_entity) {
            Ok((_, c)) => super::spiffe_ids(&c),
            Err(_) => Vec::new(),
        };
        if presented.iter().any(|p| p == self.expected.as_str()) {
            return Ok(ServerCertVerified::assertion());
        }
        let presented = if presented.is_empty() {
            "no SPIFFE identity".to_string()
        } else {
            presented.join(", ")
        };
        Err(rustls::Error::InvalidCertificate(
            rustls::CertificateError::Other(rustls::OtherError(Arc::new(IdentityMismatch {
                expected: self.expected.clone(),
                presented,
            }))),
        ))
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // TLS 1.2 is disabled in every config we build.
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    provider_signatures!(tls13, provider);
}

/// Always presents the same certificate (each config is rebuilt when the certificate changes).
#[derive(Debug)]
pub(super) struct FixedCert(pub(super) Arc<CertifiedKey>);

impl rustls::server::ResolvesServerCert for FixedCert {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

impl rustls::client::ResolvesClientCert for FixedCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}
