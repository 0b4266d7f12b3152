//! Who is asking: turns the bearer credential on a control-plane request into a verified
//! [`Caller`] (namespace, service account, pod).
//!
//! Everything that grants something by identity (certificates above all) takes a `Caller` from an
//! [`Authenticator`], never a name the request states about itself.
//!
//! Implementations:
//! - [`LocalTokens`] (local mode): HMAC-SHA256 tokens the local runner mints for each pod with a
//!   key shared through a `0600` file.
//! - [`TokenReviewAuthenticator`] (Kubernetes, feature `kubernetes`): projected service-account
//!   tokens with audience `sinew-ca`, verified by a TokenReview against the API server; the
//!   verified username `system:serviceaccount:<ns>:<sa>` gives namespace and service account, and
//!   the `authentication.kubernetes.io/pod-name` extra gives the pod. Verified tokens are cached
//!   (keyed by a hash of the token, bounded by its expiry).
//!
//! The trait is async (a TokenReview is a network round trip) and dyn-compatible: callers only
//! ever depend on `dyn Authenticator`.

#[cfg(feature = "kubernetes")]
pub mod cluster;
mod local;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::SystemTime;

#[cfg(feature = "kubernetes")]
pub use self::cluster::{ReviewConfig, ReviewMetrics, TokenReviewAuthenticator};
pub use self::local::{LOCAL_AUDIENCE, LocalTokens, TOKEN_PREFIX};
use crate::ca::WorkloadId;

/// A verified caller.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Caller {
    pub namespace: String,
    pub service_account: String,
    pub pod: Option<String>,
}

/// What [`Authenticator::authenticate`] returns: boxed so the trait stays dyn-compatible.
pub type AuthFuture<'a> = Pin<Box<dyn Future<Output = Result<Caller, AuthError>> + Send + 'a>>;

/// Verifies a bearer credential.
pub trait Authenticator: Send + Sync {
    fn authenticate<'a>(&'a self, bearer_token: &'a str) -> AuthFuture<'a>;
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

    /// The API server reviewed the token and did not authenticate it.
    #[error("token rejected by the Kubernetes API server: {reason}")]
    Rejected { reason: String },

    /// The review succeeded but did not confirm the audience we asked for.
    #[error(
        "token audience not confirmed: asked for {want:?}, the API server confirmed {got:?}; \
         project the service-account token with audience {want:?}"
    )]
    AudienceNotConfirmed { got: Vec<String>, want: String },

    /// The token authenticates someone who is not a service account.
    #[error(
        "token belongs to {username:?}, not a service account; proxies present their pod's \
         projected service-account token"
    )]
    NotServiceAccount { username: String },

    /// A service-account token not bound to a pod (a legacy Secret-based token, or one minted
    /// with `kubectl create token` without `--bound-object-kind Pod`).
    #[error(
        "token for {namespace}/{service_account} is not bound to a pod; proxies present their \
         pod's projected token"
    )]
    NotPodBound {
        namespace: String,
        service_account: String,
    },

    /// The credential could not be checked now (the API server did not answer); retry.
    #[error("token could not be verified now: {reason}; retry later")]
    Unavailable { reason: String },

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

// === impl AuthError ===

impl AuthError {
    /// Whether the credential may be fine and only checking it failed: callers should retry
    /// rather than treat it as refused.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}

// === impl Caller ===

impl Caller {
    /// The workload identity certificates for this caller carry.
    pub fn workload_id(&self) -> WorkloadId {
        WorkloadId::new(self.namespace.clone(), self.service_account.clone())
    }
}
