//! Who is asking: turns the bearer credential on a control-plane request into a verified
//! [`Caller`] (namespace, service account, pod).
//!
//! Everything that grants something by identity (certificates above all) takes a `Caller` from an
//! [`Authenticator`], never a name the request states about itself.
//!
//! Implementations:
//! - [`LocalTokens`] (local mode): HMAC-SHA256 tokens the local runner mints for each pod with a
//!   key shared through a `0600` file.
//! - Kubernetes (to come, as `auth/kube.rs`): projected service-account tokens with audience
//!   `sinew-ca`, verified by a TokenReview against the API server; the verified username
//!   `system:serviceaccount:<ns>:<sa>` gives namespace and service account, and the
//!   `authentication.kubernetes.io/pod-name` extra gives the pod. A TokenReview is a network
//!   round trip, so that implementation will want a short cache of verified tokens (keyed by a
//!   hash of the token, bounded by its expiry) behind this same trait, or the trait an async
//!   variant; callers should only ever depend on `dyn Authenticator`.

mod local;

use std::path::PathBuf;
use std::time::SystemTime;

pub use self::local::{LOCAL_AUDIENCE, LocalTokens, TOKEN_PREFIX};
use crate::ca::WorkloadId;

/// A verified caller.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Caller {
    pub namespace: String,
    pub service_account: String,
    pub pod: Option<String>,
}

/// Verifies a bearer credential.
pub trait Authenticator: Send + Sync {
    fn authenticate(&self, bearer_token: &str) -> Result<Caller, AuthError>;
}

/// Why a credential was refused, or the token key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("token is malformed: {0}; send the token exactly as the local runner minted it")]
    Malformed(&'static str),

    #[error("token signature does not verify: forged, or minted with another key")]
    BadSignature,

    #[error(
        "token expired at {expired_at:?}; the local runner must mint a fresh one (check the \
         clocks agree)"
    )]
    Expired { expired_at: SystemTime },

    #[error("token is for audience {got:?}, not {want:?}; mint it for {want:?}")]
    WrongAudience { got: String, want: String },

    #[error("token lacks required claims ({missing}); it was minted by an incompatible runner")]
    MissingClaims { missing: String },

    #[error("token key file: could not {action} {}: {source}", path.display())]
    KeyFileIo {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "token key file {} is unusable: {reason}; delete it to create a new key (tokens minted \
         with the old key then stop working)",
        path.display()
    )]
    BadKeyFile { path: PathBuf, reason: String },
}

// === impl Caller ===

impl Caller {
    /// The workload identity certificates for this caller carry.
    pub fn workload_id(&self) -> WorkloadId {
        WorkloadId::new(self.namespace.clone(), self.service_account.clone())
    }
}
