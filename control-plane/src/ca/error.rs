//! The CA's error type: every variant names what went wrong and what the operator or caller can
//! do about it.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

/// Why the CA could not start, load its root, or issue a certificate.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// The [`CaConfig`](super::CaConfig) cannot work; caught once, at start-up.
    #[error("invalid CA config: {0}")]
    InvalidConfig(String),

    /// A namespace or service account that cannot appear in a SPIFFE id.
    #[error(
        "invalid {field} {value:?} for a workload identity: {reason} \
         (Kubernetes names are lowercase letters, digits, '-' and '.')"
    )]
    InvalidIdentity {
        field: &'static str,
        value: String,
        reason: &'static str,
    },

    /// Reading or writing the root files failed.
    #[error("root store: could not {action} {}: {source}", path.display())]
    StoreIo {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The root store holds half of a root, or a backend other than files failed.
    #[error("root store: {0}")]
    Store(String),

    /// The root material from the store cannot be used as it is.
    #[error(
        "the stored mesh root is unusable: {reason}; restore the matching root-cert.pem and \
         root-key.pem, or remove both to create a new root (every workload then needs a new \
         certificate)"
    )]
    BadRoot { reason: String },

    /// The plug-in CA material (intermediate, key, chain, root) does not fit together.
    #[error("plug-in CA rejected: {reason}")]
    BadPlugIn { reason: String },

    /// The issuing certificate has expired, so anything it signs would be rejected.
    #[error(
        "the issuing CA certificate expired at {not_after:?}; rotate the root (self-signed mode) \
         or install a new plug-in intermediate"
    )]
    CaExpired { not_after: SystemTime },

    /// The CSR is not a PEM PKCS#10 request we can read.
    #[error(
        "certificate signing request could not be read: {reason}; send one PEM \
         \"CERTIFICATE REQUEST\" block (PKCS#10)"
    )]
    BadCsr { reason: String },

    /// The CSR's self-signature does not verify with the key it carries.
    #[error(
        "certificate signing request signature does not verify: it was altered in transit or \
         signed with a key other than the one it carries; generate a new CSR with the workload key"
    )]
    CsrSignature,

    /// The CSR carries a key type the mesh does not issue for.
    #[error("certificate signing request carries a {got} key; Sinew workload keys are ECDSA P-256")]
    UnsupportedKey { got: String },

    /// This identity asked for certificates faster than the per-identity rate allows.
    #[error(
        "too many certificate requests for {identity}; retry in {retry_after:?} (a healthy proxy \
         renews about twice a day, so a loop is re-requesting certificates)"
    )]
    RateLimited {
        identity: String,
        retry_after: Duration,
    },

    /// A DNS name or other value given for a serving certificate cannot be encoded.
    #[error("invalid subject alternative name {value:?}: {reason}")]
    InvalidName { value: String, reason: String },

    /// Building or signing a certificate failed; this points at a bug or a broken key.
    #[error("signing failed: {0}")]
    Sign(String),
}
