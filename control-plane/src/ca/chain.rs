//! Checks on CA certificates we are handed (a stored root, a plug-in intermediate and its chain)
//! and PEM encoding for what we hand out.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rcgen::KeyPair;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, UnixTime};
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::oid_registry::{OID_PKCS1_SHA1WITHRSA, OID_SHA1_WITH_RSA};
use x509_parser::prelude::FromDer;

/// Every certificate in a PEM bundle, in order; `what` names the input in errors.
pub(super) fn parse_pem_certs(
    pem: &str,
    what: &str,
) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{what} is not valid PEM ({e})"))?;
    Ok(certs)
}

/// Exactly one certificate from a PEM input.
pub(super) fn parse_one_pem_cert(pem: &str, what: &str) -> Result<CertificateDer<'static>, String> {
    let mut certs = parse_pem_certs(pem, what)?;
    match certs.len() {
        1 => Ok(certs.remove(0)),
        0 => Err(format!("{what} holds no PEM CERTIFICATE block")),
        n => Err(format!(
            "{what} holds {n} certificates; give just the one certificate here"
        )),
    }
}

pub(super) fn parse_x509<'a>(
    der: &'a CertificateDer<'_>,
    what: &str,
) -> Result<X509Certificate<'a>, String> {
    match X509Certificate::from_der(der.as_ref()) {
        Ok(([], cert)) => Ok(cert),
        Ok(_) => Err(format!("{what} has trailing bytes after the certificate")),
        Err(e) => Err(format!("{what} is not an X.509 certificate ({e})")),
    }
}

/// A certificate that may sign others: CA:TRUE, keyCertSign if key usage is present, and valid
/// now.
pub(super) fn check_ca_cert(
    cert: &X509Certificate<'_>,
    what: &str,
    now: OffsetDateTime,
) -> Result<(), String> {
    if !cert.is_ca() {
        return Err(format!(
            "{what} ({}) is not a CA certificate (basicConstraints CA:TRUE is missing)",
            cert.subject()
        ));
    }
    match cert.key_usage() {
        Ok(Some(ku)) if !ku.value.key_cert_sign() => {
            return Err(format!(
                "{what} ({}) has a key usage without keyCertSign, so verifiers will refuse what it \
                 signs",
                cert.subject()
            ));
        }
        Ok(_) => {}
        Err(e) => return Err(format!("{what} has an unreadable key usage ({e})")),
    }
    let validity = cert.validity();
    if validity.not_after.to_datetime() <= now {
        return Err(format!(
            "{what} ({}) expired at {}",
            cert.subject(),
            validity.not_after
        ));
    }
    if validity.not_before.to_datetime() > now {
        return Err(format!(
            "{what} ({}) is not valid before {}; check this host's clock",
            cert.subject(),
            validity.not_before
        ));
    }
    Ok(())
}

/// `child` names `parent` as its issuer and carries `parent`'s signature.
pub(super) fn check_signed_by(
    child: &X509Certificate<'_>,
    child_what: &str,
    parent: &X509Certificate<'_>,
    parent_what: &str,
) -> Result<(), String> {
    // Verifiers (webpki included) match names byte for byte, so compare the raw encoding.
    if child.issuer().as_raw() != parent.subject().as_raw() {
        return Err(format!(
            "{child_what} is issued by \"{}\" but {parent_what} is \"{}\"",
            child.issuer(),
            parent.subject()
        ));
    }
    let alg = &child.signature_algorithm.algorithm;
    if *alg == OID_PKCS1_SHA1WITHRSA || *alg == OID_SHA1_WITH_RSA {
        return Err(format!(
            "{child_what} is signed with SHA-1, which rustls refuses; re-sign it with SHA-256"
        ));
    }
    child
        .verify_signature(Some(parent.public_key()))
        .map_err(|e| format!("{child_what} is not signed by {parent_what}'s key ({e})"))
}

/// The private key belongs to the certificate.
pub(super) fn check_key_matches(
    cert: &X509Certificate<'_>,
    key: &KeyPair,
    what: &str,
) -> Result<(), String> {
    if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
        return Err(format!(
            "the private key does not belong to {what} ({}); pass the key that was certified",
            cert.subject()
        ));
    }
    Ok(())
}

/// Path validation of a client (workload) leaf exactly as a peer proxy's rustls runs it.
pub(super) fn webpki_check_client_leaf(
    leaf: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'static>],
    roots: &[CertificateDer<'static>],
) -> Result<(), String> {
    let mut store = rustls::RootCertStore::empty();
    for root in roots {
        store
            .add(root.clone())
            .map_err(|e| format!("a root is not usable as a trust anchor: {e}"))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(store), provider)
            .build()
            .map_err(|e| e.to_string())?;
    verifier
        .verify_client_cert(leaf, intermediates, UnixTime::now())
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// PEM-encodes a DER certificate.
pub(super) fn pem_encode(der: &[u8]) -> String {
    pem_encode_block("CERTIFICATE", der)
}

/// PEM-encodes DER under `label` with 64-column lines, as `openssl` writes it.
pub(super) fn pem_encode_block(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = String::with_capacity(2 * label.len() + b64.len() + b64.len() / 64 + 40);
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    // Base64 output is ASCII, so splitting the bytes never splits a character.
    for line in b64.as_bytes().chunks(64) {
        out.extend(line.iter().map(|&b| char::from(b)));
        out.push('\n');
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
    out
}
