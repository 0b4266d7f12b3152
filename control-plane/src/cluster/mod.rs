//! The control plane's side of a Kubernetes cluster: how it connects to the API server, what a
//! failed API call means, and which replica leads.
//!
//! What it promises:
//! - **One way in**: [`connect`] builds the only `kube::Client` the control plane uses, from
//!   `--kubeconfig PATH` or, without the flag, the pod's in-cluster service account. Never
//!   `Config::infer()`: a stray `~/.kube/config` on a node must not silently win over the pod's
//!   own identity.
//! - **Failures by meaning**: [`classify`] reduces a `kube::Error` to an [`ApiFailure`] by the
//!   HTTP code (reasons differ between API servers and fakes), so callers decide on "not found",
//!   "someone else wrote first" or "try again later", never on message text.
//! - **One leader**: [`leader::spawn`] runs a `coordination.k8s.io/v1` Lease election and reports
//!   through a `watch::Receiver<bool>` whether this replica may do the single-writer work now.
//! - **Status written back**: [`status::spawn`] keeps DestinationRules' and VirtualServices'
//!   `status.conditions` saying what the registry made of them, while this replica leads.
//!
//! Named `cluster`, not `kube`: a module `kube` would make `use kube::…` ambiguous with the
//! extern crate (E0659).

pub mod bundle;
mod client;
pub mod crd;
mod errors;
pub mod leader;
pub mod status;
pub mod webhook;

#[cfg(test)]
pub(crate) mod mock;

pub use self::client::{ClusterAccess, ConnectError, KubeOptions, connect};
pub use self::errors::{ApiFailure, classify};

/// The namespace the control plane keeps its own objects in (CA Secret, Lease) unless told
/// otherwise.
pub const DEFAULT_NAMESPACE: &str = "sinew-system";
