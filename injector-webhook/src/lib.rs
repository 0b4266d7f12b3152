//! sinew-injector: which pods get Sinew's sidecar, and what they get.
//!
//! The control plane serves it as a mutating admission webhook (`POST /inject` on 15017:
//! [`review::review`]), `sinewctl kube-inject` runs it on manifests
//! ([`templates::inject_object`]), and local mode's registry asks [`decide::decide`] which pods
//! are meshed: one rule and one injection everywhere. docs/injection.md is the user's guide.
//!
//! The modules, one job each:
//! - [`decide`]: the rule (namespace label, opt-out, hostNetwork, system namespaces, idempotence);
//! - [`settings`]: the injector's config file, validated;
//! - [`overrides`]: per-pod annotations over the settings;
//! - [`init`], [`sidecar`], [`probes`]: the init container, the proxy and its volumes, the probe
//!   rewrites;
//! - [`inject`]: one pod in, the injected pod out;
//! - [`patch`], [`review`]: the JSON patch and the AdmissionReview exchange;
//! - [`templates`]: workload kinds' pod templates for `kube-inject`;
//! - [`contract`]: the names, paths and ports shared with the proxy and the control plane.

#![forbid(unsafe_code)]

pub mod contract;
pub mod decide;
pub mod init;
pub mod inject;
pub mod overrides;
pub mod patch;
pub mod probes;
pub mod quantity;
pub mod review;
pub mod settings;
pub mod sidecar;
pub mod templates;

pub use self::decide::{Decision, Namespace, Skip, decide};
pub use self::inject::{Outcome, Unchanged, inject};
pub use self::review::{BadRequest, review};
pub use self::settings::{Settings, SettingsError};
pub use self::templates::{Injected, inject_object};
