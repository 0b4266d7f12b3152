//! Workload CSRs as the CA reads them (`ca::verify_csr`: PEM → PKCS#10 → P-256 key → self-
//! signature), from any caller of the CA's `CreateCertificate`.
//!
//! Contract checked: never panics, whatever the bytes (non-PEM, truncated DER, wrong key
//! types, huge lengths), and gives the same answer twice.

use sinew_control_plane::ca::verify_csr;

/// Checks one input; returns its outcome.
pub fn check(data: &[u8]) -> String {
    let Ok(pem) = std::str::from_utf8(data) else {
        return "not utf-8".into(); // a protobuf string field: UTF-8 or refused before us
    };
    let first = verify_csr(pem);
    let again = verify_csr(pem);
    assert_eq!(
        first.as_ref().map_err(ToString::to_string),
        again.as_ref().map_err(ToString::to_string),
        "the same CSR read twice"
    );
    super::outcome("csr", &first)
}
