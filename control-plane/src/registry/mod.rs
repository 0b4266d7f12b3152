//! The registry: local mode's source of truth — a directory of Kubernetes-shaped YAML turned into
//! an immutable, validated [`Snapshot`] of namespaces, service accounts, services, pods and
//! DestinationRules, kept current while the files change.
//!
//! # What is read
//!
//! Every `*.yaml` / `*.yml` file under the directory, recursively, in byte order of the path, so
//! that the same tree always yields the same snapshot. Hidden entries (names starting with `.`)
//! are skipped: editors leave `.#app.yaml` lock files, and a ConfigMap volume keeps its real
//! files under `..data/` behind top-level symlinks (symlinks to files are followed, symlinks to
//! directories are not, so a loop cannot hang the scan). The assignments file (below) is never
//! read as a manifest even when it sits inside the directory.
//!
//! Each file may hold several documents separated by `---`. Documents that are empty (or only
//! comments, or `null`) are skipped and not counted; "document N" in an error counts the
//! remaining ones from 1, and the line is always given (the YAML library's own line for
//! syntax and type errors, the document's first line for validation errors).
//!
//! | `apiVersion` | `kind` | becomes |
//! |---|---|---|
//! | `v1` | `Namespace`, `ServiceAccount`, `Service`, `Pod` | `k8s_openapi` types |
//! | `apps/v1` | `Deployment` | `replicas` pods named `<deployment>-<index>` |
//! | `networking.istio.io/{v1,v1beta1,v1alpha3}`, `sinew.dev/v1alpha1` | `DestinationRule` | [`DestinationRule`] (typed as [`istio::DestinationRuleSpec`], validated) |
//! | `networking.istio.io/{v1,v1beta1,v1alpha3}`, `sinew.dev/v1alpha1` | `VirtualService` | [`VirtualService`] (mesh only; typed, validated) |
//! | `telemetry.istio.io/{v1,v1alpha1}` | `Telemetry` | [`Telemetry`] (typed as [`istio::telemetry::TelemetrySpec`], validated; resolved per proxy by `compile::telemetry`) |
//! | `security.istio.io/{v1,v1beta1}` | `PeerAuthentication` | [`PeerAuthentication`] (typed, validated; resolved per pod by `compile::peer_authentication`) |
//! | `security.istio.io/{v1,v1beta1}` | `AuthorizationPolicy` | [`AuthorizationPolicy`] (typed, validated; selected per pod by `compile::authorization`) |
//!
//! DestinationRules and VirtualServices are decoded strictly and validated as istiod's webhook
//! does (`object/validate.rs`); cross-object mistakes Istio accepts silently (a route to a subset
//! no rule defines) are warnings (`crosscheck.rs`).
//!
//! Anything else is a warning ([`Snapshot::warnings`]) and is skipped, so a directory written for
//! a cluster (with ConfigMaps, Ingresses, …) still runs locally.
//!
//! # What is promised
//!
//! The same YAML means the same thing here as in a cluster, so the checks are the API server's
//! where it matters: `metadata.name` is required and must be a DNS name; the namespace defaults to
//! `default`, which always exists, and any other namespace must be declared by a `Namespace`
//! document; a pod's service account defaults to `default`, which exists in every namespace, and
//! any other must be declared; Service ports need `port` (1–65535), `targetPort` defaults to
//! `port` and may name a container port; a Deployment's selector must match its template's
//! labels. Two objects of the same kind with the same namespace and name are an error that names
//! both places (the three Istio DestinationRule versions are one kind, `sinew.dev` is another).
//! Every problem in the directory is reported at once, each naming file, document and line.
//!
//! A pod is *meshed* (gets a sidecar and an identity) when the injector's rule
//! (`sinew_injector::decide`, the webhook's own code) says so: its namespace has the label
//! `sinew-injection=enabled` (and neither `istio-injection=enabled` nor `istio.io/rev`), it does
//! not opt out with the label or annotation `sinew.dev/inject: "false"`, it is not a
//! `hostNetwork` pod and not in `kube-system` or `kube-public`; so local mode meshes exactly what
//! a cluster would.
//!
//! # Addresses: the hand-over from the runner
//!
//! Users do not write pod IPs or service VIPs; local mode's runner assigns them and hands them
//! over as [`Assignments`], either in process ([`RegistryHandle::set_assignments`]) or through a
//! YAML file that the registry watches alongside the manifests:
//!
//! ```yaml
//! # Written by the local runner (see `Assignments::write_file`), read by the registry.
//! pods:
//!   - namespace: shop
//!     name: reviews-0
//!     ip: 198.18.0.10
//! services:
//!   - namespace: shop
//!     name: reviews
//!     vip: 198.19.0.10
//! ```
//!
//! Both lists may be omitted; unknown fields and duplicate entries are errors (the file is written
//! by a program, so a typo is a bug to surface, not to ignore). A missing file means "nothing
//! assigned yet". Entries set in process override the file's entry for the same object. An
//! explicit `spec.clusterIP` or `status.podIP` in the YAML always wins over an assignment, and a
//! headless service (`clusterIP: None`) never gets a VIP.
//!
//! # Watching
//!
//! [`FileRegistry::spawn`] polls the directory (no inotify: it works the same on every
//! filesystem, container mount and CI box) and republishes after a burst of changes has settled;
//! see [`Debounce`]. A change that fails to parse keeps the last good snapshot in force and is
//! reported by [`RegistryHandle::last_error`]; a snapshot is only published when its content
//! changed, with the next [`Snapshot::generation`].
//!
//! # Sources and layers
//!
//! A snapshot can come from any source: `file/` reads the directory (walk, documents, lines)
//! and the Kubernetes source lists objects from the API server. Both hand each object to
//! [`object`] (Kubernetes object → entry, no files, no lines), then [`Snapshot`]s are built from
//! the decoded objects by the model. The imports run one way: `file → object → entry`,
//! `model → object, entry`, `resolve → model, entry`.
//!
//! # Resolution
//!
//! [`Snapshot::service_resources`] turns the model into the proxy's `Service` config messages, one
//! per service port, with endpoints, identities and protocols — see [`ServiceResource`]. Files
//! always select endpoints with the Service's selector; a Service read from a cluster uses its
//! EndpointSlices ([`Endpoints::Slices`]) when it has any.

mod assignments;
#[cfg(feature = "kubernetes")]
pub mod cluster;
mod crosscheck;
mod debounce;
mod entry;
mod error;
pub(crate) mod file;
pub mod hosts;
pub mod istio;
mod model;
pub mod object;
mod resolve;
mod selector;
pub mod workload;

pub use self::assignments::Assignments;
pub use self::crosscheck::{ObjectWarning, WarningKind};
pub use self::debounce::Debounce;
pub use self::entry::{
    Age, AuthorizationPolicy, CLUSTER_DOMAIN, DestinationRule, EndpointEntry, Endpoints,
    INJECT_OPT_OUT, INJECTION_LABEL, MESH_INBOUND_PORT, NamespaceEntry, PeerAuthentication,
    PodEntry, SIDECAR_CONTAINER, ServiceAccountEntry, ServiceEntry, ServicePortEntry, TargetPort,
    Telemetry, VirtualService, protocol_for_port,
};
pub use self::error::{Origin, Problem, RegistryError};
pub use self::file::watch::{FileRegistry, RegistryHandle};
pub use self::file::{ManifestDoc, SKIPPED_KIND, split_manifest};
pub use self::model::{Acceptance, Rejected, Snapshot, build};
pub(crate) use self::object::validate::{ENVOY_PROVIDER, RETRY_ON_IGNORED};
pub use self::resolve::{ServiceResource, spiffe_identity};

#[cfg(test)]
mod testutil;
