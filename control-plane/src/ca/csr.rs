//! Reading a workload's CSR: we take exactly one thing from it, the public key, and only after
//! its self-signature proves the requester holds the matching private key.
//!
//! rcgen's `CertificateSigningRequestParams::from_pem` does verify the signature, but it also
//! converts the subject and SANs and refuses extensions it does not know, so a CSR carrying a
//! harmless extension would be refused over fields we ignore anyway. We parse with x509-parser
//! directly and keep only the key.

use rcgen::{PKCS_ECDSA_P256_SHA256, PublicKeyData, SignatureAlgorithm};
use rustls_pki_types::CertificateSigningRequestDer;
use rustls_pki_types::pem::PemObject;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::oid_registry::{OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY};
use x509_parser::prelude::FromDer;

use super::CaError;

/// A verified ECDSA P-256 public key (uncompressed SEC1 point) from a CSR.
pub(super) struct CsrKey {
    point: Vec<u8>,
}

impl PublicKeyData for CsrKey {
    fn der_bytes(&self) -> &[u8] {
        &self.point
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &PKCS_ECDSA_P256_SHA256
    }
}

/// Parses a PEM CSR, verifies its self-signature and returns its P-256 key.
pub(super) fn verified_key(csr_pem: &str) -> Result<CsrKey, CaError> {
    let der = CertificateSigningRequestDer::from_pem_slice(csr_pem.as_bytes()).map_err(|e| {
        CaError::BadCsr {
            reason: format!("no PEM CERTIFICATE REQUEST block ({e})"),
        }
    })?;
    let (rest, csr) =
        X509CertificationRequest::from_der(der.as_ref()).map_err(|e| CaError::BadCsr {
            reason: format!("not a PKCS#10 request ({e})"),
        })?;
    if !rest.is_empty() {
        return Err(CaError::BadCsr {
            reason: "trailing bytes after the request".to_string(),
        });
    }

    // Check the key type first: it gives a clearer error than a signature failure for keys ring
    // cannot verify with.
    let spki = &csr.certification_request_info.subject_pki;
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok());
    if spki.algorithm.algorithm != OID_KEY_TYPE_EC_PUBLIC_KEY || curve != Some(OID_EC_P256) {
        let got = match curve {
            Some(curve) if spki.algorithm.algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY => {
                format!("EC (curve {curve})")
            }
            _ => format!("{} algorithm", spki.algorithm.algorithm),
        };
        return Err(CaError::UnsupportedKey { got });
    }

    csr.verify_signature().map_err(|_| CaError::CsrSignature)?;

    Ok(CsrKey {
        point: spki.subject_public_key.data.to_vec(),
    })
}
