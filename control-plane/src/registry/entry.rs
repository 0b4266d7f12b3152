//! The registry's entries: what one namespace, service account, Service, pod, DestinationRule,
//! VirtualService, Telemetry, PeerAuthentication or AuthorizationPolicy is once decoded and checked on its own, whichever source it came
//! from (a manifest file or the Kubernetes API). Entries say where they came from ([`Origin`])
//! but hold nothing file-specific beyond that; the checks that need several objects live in the
//! model.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Namespace, Pod, PodSpec, Service, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use sinew_proto::config::v1::Protocol;

use super::error::Origin;
use super::istio;
use super::{hosts, selector};

/// Namespace label that turns on the sidecar for the namespace's pods (the injector's rule).
pub const INJECTION_LABEL: (&str, &str) = sinew_injector::contract::INJECTION_LABEL;

/// Pod label or annotation that opts one pod out: `sinew.dev/inject: "false"`.
pub const INJECT_OPT_OUT: (&str, &str) = (sinew_injector::contract::INJECT_KEY, "false");

/// The name of the sidecar container the injector adds: in a cluster, a pod is meshed when it
/// has one.
pub const SIDECAR_CONTAINER: &str = sinew_injector::contract::PROXY_CONTAINER;

/// Port of a meshed pod's inbound proxy listener.
pub const MESH_INBOUND_PORT: u16 = 15006;

/// The namespace that exists without being declared, as in every cluster.
pub(crate) const DEFAULT_NAMESPACE: &str = "default";

/// The service account that exists in every namespace without being declared.
pub(crate) const DEFAULT_SERVICE_ACCOUNT: &str = "default";

/// The DNS suffix of service names (`<name>.<namespace>.svc.cluster.local`), as in a default
/// cluster; local mode writes the same names into every pod's hosts file.
pub const CLUSTER_DOMAIN: &str = "svc.cluster.local";

#[derive(Debug, Clone, PartialEq)]
pub struct NamespaceEntry {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// Whether pods here get a sidecar (label `sinew-injection=enabled`).
    pub injection_enabled: bool,
    /// `None` for the implicit `default` namespace.
    pub origin: Option<Origin>,
    pub object: Option<Namespace>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServiceAccountEntry {
    pub namespace: String,
    pub name: String,
    pub origin: Origin,
    pub object: ServiceAccount,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServiceEntry {
    pub namespace: String,
    pub name: String,
    /// In the order written.
    pub ports: Vec<ServicePortEntry>,
    /// `None` when the Service has no (or an empty) selector: it then has no endpoints (unless
    /// its `endpoints` are slices).
    pub selector: Option<BTreeMap<String, String>>,
    /// `spec.clusterIP: None`: no VIP, ever.
    pub headless: bool,
    /// `spec.clusterIP` as written in the object (YAML or API); the runner's assignment applies
    /// only when this is `None`.
    pub declared_cluster_ip: Option<IpAddr>,
    /// The address clients dial: the declared clusterIP, else the runner's assignment.
    pub vip: Option<IpAddr>,
    /// Where the endpoints come from.
    pub endpoints: Endpoints,
    pub origin: Origin,
    pub object: Service,
}

/// Where a Service's endpoints come from.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Endpoints {
    /// The pods of the Service's namespace its selector matches, at the target port (files
    /// always; a cluster Service that has no EndpointSlices).
    #[default]
    FromSelector,
    /// The endpoints of the Service's EndpointSlices (`discovery.k8s.io/v1`), as listed, all
    /// slices together.
    Slices(Vec<EndpointEntry>),
}

/// One endpoint of an EndpointSlice, with its slice's ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointEntry {
    pub ip: IpAddr,
    /// The slice's ports: (name, number). The name is the Service port's name (`None` for the
    /// one unnamed port of a single-port Service).
    pub ports: Vec<(Option<String>, u16)>,
    /// `conditions.ready`; absent means `true` (`discovery.k8s.io/v1` EndpointConditions).
    pub ready: bool,
    /// `conditions.serving`: able to answer, set whether or not it is terminating; absent means
    /// `true`.
    pub serving: bool,
    /// `conditions.terminating`: shutting down; absent means `false`.
    pub terminating: bool,
    /// `targetRef` when it is a Pod: (namespace, name). Gives the endpoint its identity and
    /// labels when the pod is known.
    pub pod: Option<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePortEntry {
    pub name: Option<String>,
    pub port: u16,
    pub target_port: TargetPort,
    /// `TCP`, `UDP` or `SCTP`. Only TCP ports are mesh resources.
    pub transport: String,
    pub app_protocol: Option<String>,
    /// From `appProtocol`, else the port name's prefix (Istio's convention).
    pub protocol: Protocol,
}

/// Where a Service port's traffic goes on the pod.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum TargetPort {
    Number(u16),
    /// A container port name, resolved per pod (pods may use different numbers).
    Name(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct PodEntry {
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// `spec.serviceAccountName`, default `default`.
    pub service_account: String,
    /// `status.podIP` as written in the object (YAML or API); the runner's assignment applies
    /// only when this is `None`.
    pub declared_ip: Option<IpAddr>,
    /// The pod's address: the declared podIP, else the runner's assignment.
    pub ip: Option<IpAddr>,
    /// Gets a sidecar and a SPIFFE identity (see the module docs for the rule).
    pub meshed: bool,
    /// The Deployment this pod was generated from.
    pub owner: Option<String>,
    pub origin: Origin,
    /// The full pod (for Deployment pods: the template, named and labelled), so the runner can
    /// read containers' `command`, `args`, `env` and `workingDir`. Shared: a Kubernetes source
    /// re-assembles every snapshot from its decoded entries, and a deep copy of 50,000 typed
    /// Pods (each several KiB even pruned) per change was most of its memory and time.
    pub object: std::sync::Arc<Pod>,
}

/// A DestinationRule of either API group, kept for the traffic-policy compiler.
#[derive(Debug, Clone, PartialEq)]
pub struct DestinationRule {
    /// As written, e.g. `networking.istio.io/v1beta1`.
    pub api_version: String,
    pub namespace: String,
    pub name: String,
    /// `spec.host` as written (short names resolve in `namespace`).
    pub host: String,
    /// How old the rule is, for "the oldest rule wins".
    pub age: Age,
    pub origin: Origin,
    /// The spec as written (for dumps).
    pub spec: serde_json::Value,
    /// The spec decoded and validated once, for the policy compiler.
    pub typed: istio::DestinationRuleSpec,
}

/// A VirtualService for mesh traffic (no `gateways`, or `gateways` containing `mesh`), of either
/// API group, decoded and validated.
#[derive(Debug, Clone, PartialEq)]
pub struct VirtualService {
    /// As written, e.g. `networking.istio.io/v1`.
    pub api_version: String,
    pub namespace: String,
    pub name: String,
    /// How old the service is, for "the oldest one wins" (like a rule's `age`).
    pub age: Age,
    pub origin: Origin,
    pub spec: istio::virtual_service::VirtualServiceSpec,
    /// File lines of the fields other objects' checks name (each route and mirror
    /// destination), by path (`spec.http[0].route[1].destination`, `spec.http[0].mirror`).
    pub lines: BTreeMap<String, usize>,
}

/// An Istio `Telemetry` (`telemetry.istio.io/v1` or `v1alpha1`), decoded and validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Telemetry {
    /// As written, e.g. `telemetry.istio.io/v1`.
    pub api_version: String,
    pub namespace: String,
    pub name: String,
    /// How old it is, for "the oldest one wins" among Telemetries of equal scope.
    pub age: Age,
    pub origin: Origin,
    pub spec: istio::telemetry::TelemetrySpec,
}

/// An Istio `PeerAuthentication` (`security.istio.io/v1` or `v1beta1`), decoded and validated.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerAuthentication {
    /// As written, e.g. `security.istio.io/v1`.
    pub api_version: String,
    pub namespace: String,
    pub name: String,
    /// How old it is: the oldest of one scope applies.
    pub age: Age,
    pub origin: Origin,
    pub spec: istio::peer_authentication::PeerAuthenticationSpec,
}

/// An Istio `AuthorizationPolicy` (`security.istio.io/v1` or `v1beta1`), decoded and validated.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthorizationPolicy {
    /// As written, e.g. `security.istio.io/v1`.
    pub api_version: String,
    pub namespace: String,
    pub name: String,
    pub age: Age,
    pub origin: Origin,
    /// `istio.io/dry-run: "true"`: evaluated and logged by the proxy, never enforced.
    pub dry_run: bool,
    pub spec: istio::authorization_policy::AuthorizationPolicySpec,
}

/// How old an object is, ordered as Istio orders configs (`configCompareByCreationTime` in
/// `pilot/pkg/model/config.go`): the oldest `creationTimestamp` first; equal timestamps (they have
/// second precision, so ties are common) by name, then namespace, so the order is total and
/// stable. In files there are no timestamps: earlier documents (files in path order) count as
/// older.
///
/// Within one snapshot every age comes from one source, so the two variants are never compared
/// in practice; the derived order puts document positions first.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Age {
    /// Position among all documents of a directory (files in path order).
    Order(usize),
    /// `metadata.creationTimestamp` in Unix seconds, then the object's name and namespace.
    /// Field order is the comparison order.
    Created {
        seconds: i64,
        name: String,
        namespace: String,
    },
}

/// A Deployment, validated, waiting to be expanded into pods.
#[derive(Debug, Clone)]
pub struct DeploymentDoc {
    pub namespace: String,
    pub name: String,
    pub replicas: u32,
    pub template_meta: ObjectMeta,
    pub template_spec: PodSpec,
}

// === impl PodEntry ===

impl PodEntry {
    /// The number of the container port called `name`, in any container.
    pub fn container_port(&self, name: &str) -> Option<u16> {
        let spec = self.object.spec.as_ref()?;
        spec.containers
            .iter()
            .flat_map(|c| c.ports.iter().flatten())
            .find(|p| p.name.as_deref() == Some(name))
            .and_then(|p| u16::try_from(p.container_port).ok())
    }
}

// === impl ServiceEntry ===

impl ServiceEntry {
    /// `<name>.<namespace>.svc.cluster.local`.
    pub fn fqdn(&self) -> String {
        format!("{}.{}.{}", self.name, self.namespace, CLUSTER_DOMAIN)
    }

    /// Whether this Service selects `pod` (same namespace, selector matches its labels).
    pub fn selects(&self, pod: &PodEntry) -> bool {
        pod.namespace == self.namespace
            && self
                .selector
                .as_ref()
                .is_some_and(|s| selector::service_selects(s, &pod.labels))
    }
}

// === impl DestinationRule ===

impl DestinationRule {
    /// `networking.istio.io` or `sinew.dev`: rules of different groups are different kinds.
    pub fn group(&self) -> &str {
        self.api_version
            .split_once('/')
            .map_or(self.api_version.as_str(), |(g, _)| g)
    }
}

// === impl Telemetry ===

impl Telemetry {
    /// Whether it selects the workload with `labels` (a Telemetry without a selector selects the
    /// whole namespace; an empty `matchLabels` too, as in Istio).
    pub fn selects(&self, labels: &BTreeMap<String, String>) -> bool {
        self.spec
            .selector
            .as_ref()
            .and_then(|s| s.match_labels.as_ref())
            .is_none_or(|m| m.iter().all(|(k, v)| labels.get(k) == Some(v)))
    }

    /// Whether it names workloads (a non-empty `selector.matchLabels`).
    pub fn has_selector(&self) -> bool {
        self.spec
            .selector
            .as_ref()
            .and_then(|s| s.match_labels.as_ref())
            .is_some_and(|m| !m.is_empty())
    }

    /// Attached by `targetRef(s)`, which Sinew does not support: not applied (a warning said
    /// so when it was accepted).
    pub fn is_targeted(&self) -> bool {
        self.spec.target_ref.is_some()
            || self
                .spec
                .target_refs
                .as_ref()
                .is_some_and(|t| !t.is_empty())
    }
}

// === impl PeerAuthentication ===

impl PeerAuthentication {
    /// Its non-empty `selector.matchLabels`, if it names workloads (an empty selector is none,
    /// as in Istio: the policy is namespace-wide).
    pub fn match_labels(&self) -> Option<&BTreeMap<String, String>> {
        self.spec
            .selector
            .as_ref()
            .and_then(|s| s.match_labels.as_ref())
            .filter(|m| !m.is_empty())
    }
}

// === impl AuthorizationPolicy ===

impl AuthorizationPolicy {
    /// Its non-empty `selector.matchLabels`, if it names workloads.
    pub fn match_labels(&self) -> Option<&BTreeMap<String, String>> {
        self.spec
            .selector
            .as_ref()
            .and_then(|s| s.match_labels.as_ref())
            .filter(|m| !m.is_empty())
    }

    /// `targetRef` and `targetRefs` together.
    pub fn target_refs(
        &self,
    ) -> impl Iterator<Item = &istio::authorization_policy::PolicyTargetReference> + '_ {
        self.spec
            .target_ref
            .iter()
            .chain(self.spec.target_refs.iter().flatten())
    }
}

// === impl VirtualService ===

impl VirtualService {
    /// `networking.istio.io` or `sinew.dev`.
    pub fn group(&self) -> &str {
        self.api_version
            .split_once('/')
            .map_or(self.api_version.as_str(), |(g, _)| g)
    }

    /// `spec.hosts`, expanded in the service's namespace.
    pub fn expanded_hosts(&self) -> impl Iterator<Item = String> + '_ {
        self.spec
            .hosts
            .iter()
            .flatten()
            .map(|h| hosts::expand(h, &self.namespace))
    }

    /// Where `path` is: the file line of `path` if recorded, else the document's origin.
    pub fn origin_of(&self, path: &str) -> Origin {
        match self.lines.get(path) {
            Some(line) => self.origin.at_line(*line),
            None => self.origin.clone(),
        }
    }
}

/// `serviceAccountName`, else the deprecated `serviceAccount`, else `default`.
pub(crate) fn service_account_of(spec: &PodSpec) -> String {
    spec.service_account_name
        .as_deref()
        .or(spec.service_account.as_deref())
        .filter(|s| !s.is_empty())
        .unwrap_or(DEFAULT_SERVICE_ACCOUNT)
        .to_string()
}

// === impl ServicePortEntry ===

/// The protocol of a Service port, by Istio's convention: `appProtocol` if set, else the port
/// name's prefix before the first `-` (`http-web` is HTTP). Protocols a proxy cannot look into
/// (TLS, databases) are opaque TCP, which also keeps server-first protocols from waiting for a
/// sniff; anything unknown is sniffed (DETECT).
pub fn protocol_for_port(name: Option<&str>, app_protocol: Option<&str>) -> Protocol {
    let from = |s: &str| match s.to_ascii_lowercase().as_str() {
        "http" | "kubernetes.io/ws" => Some(Protocol::Http1),
        "http2" | "kubernetes.io/h2c" => Some(Protocol::Http2),
        "grpc" => Some(Protocol::Grpc),
        "tcp" | "tls" | "https" | "kubernetes.io/wss" | "mysql" | "mongo" | "redis" => {
            Some(Protocol::Tcp)
        }
        _ => None,
    };
    if let Some(p) = app_protocol.filter(|p| !p.is_empty()) {
        // Istio: a set appProtocol decides, even when the port name says otherwise.
        return from(p).unwrap_or(Protocol::Detect);
    }
    name.and_then(|n| from(n.split('-').next().unwrap_or(n)))
        .unwrap_or(Protocol::Detect)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_from_app_protocol_then_port_name_prefix() {
        let cases = [
            (Some("http"), None, Protocol::Http1),
            (Some("http-web"), None, Protocol::Http1),
            (Some("HTTP"), None, Protocol::Http1),
            (Some("http2"), None, Protocol::Http2),
            (Some("grpc-api"), None, Protocol::Grpc),
            (Some("tcp-db"), None, Protocol::Tcp),
            (Some("mysql"), None, Protocol::Tcp),
            (Some("https"), None, Protocol::Tcp),
            (Some("httpx"), None, Protocol::Detect),
            (Some("web"), None, Protocol::Detect),
            (None, None, Protocol::Detect),
            (Some("web"), Some("grpc"), Protocol::Grpc),
            (Some("http"), Some("tcp"), Protocol::Tcp),
            (Some("http"), Some("kubernetes.io/h2c"), Protocol::Http2),
            (Some("http"), Some("something-else"), Protocol::Detect),
        ];
        for (name, app_protocol, want) in cases {
            assert_eq!(
                protocol_for_port(name, app_protocol),
                want,
                "name {name:?}, appProtocol {app_protocol:?}"
            );
        }
    }
}
