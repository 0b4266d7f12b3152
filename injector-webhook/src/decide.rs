//! Whether a pod gets the sidecar: the one rule the webhook, `sinewctl kube-inject` and local mode
//! all run.
//!
//! What it promises, in the order checked (the first that applies is the answer):
//! 1. `hostNetwork` pods never (interception would rewrite the node's own traffic);
//! 2. pods in `kube-system` or `kube-public` never;
//! 3. the pod label or annotation `sinew.dev/inject: "false"` opts out;
//! 4. a pod that already has the sidecar (annotation `sinew.dev/status` or a `sinew-proxy`
//!    container) is left as it is: injection is idempotent;
//! 5. a pod that already has Istio's sidecar (`istio-proxy`) is Istio's;
//! 6. when the namespace's labels are known: a namespace Istio injects (`istio-injection=enabled`,
//!    or `istio.io/rev` with any value) is Istio's, even if also labelled for Sinew (two sidecars
//!    would fight over the same iptables rules); `istio-injection` with any other value
//!    (`disabled`) is not Istio's. Otherwise the namespace must be labelled
//!    `sinew-injection=enabled`. `sinew.dev/inject: "true"` on a pod is not enough without it.
//!
//! When the labels are not known ([`Namespace::labels`] is `None`: the webhook's API server has
//! already filtered by them with the configuration's `namespaceSelector`; `kube-inject` is asked
//! explicitly) step 6 is skipped. Every "no" has a typed reason that says why in words.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1::Pod;

use crate::contract::{INJECT_KEY, INJECTION_LABEL, PROXY_CONTAINER, STATUS_ANNOTATION};

/// Namespaces whose pods never get a sidecar.
pub const SYSTEM_NAMESPACES: [&str; 2] = ["kube-system", "kube-public"];
/// Istio's legacy namespace label: the namespace is Istio's when it says `enabled`.
pub const ISTIO_INJECTION_LABEL: (&str, &str) = ("istio-injection", "enabled");
/// Istio's revision label: the namespace is Istio's whatever its value. (Istio itself ignores it
/// beside `istio-injection=disabled`; we keep out of such a namespace anyway, as the webhook
/// configuration's `istio.io/rev DoesNotExist` does.)
pub const ISTIO_REVISION_LABEL: &str = "istio.io/rev";
/// Istio's sidecar container.
pub const ISTIO_PROXY_CONTAINER: &str = "istio-proxy";

/// The namespace a pod is created in, as far as the caller knows it.
#[derive(Debug, Clone, Copy)]
pub struct Namespace<'a> {
    pub name: &'a str,
    /// `None`: not known here; the namespace rule (step 6) is not checked.
    pub labels: Option<&'a BTreeMap<String, String>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Inject,
    Skip(Skip),
}

/// Why a pod is not injected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    HostNetwork,
    SystemNamespace(String),
    OptedOut(Place),
    AlreadyInjected,
    IstioSidecar,
    /// The namespace's Istio label, as `key=value`.
    IstioNamespace(String),
    NamespaceNotEnabled(String),
}

/// Where an opt-out was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    Label,
    Annotation,
}

/// The rule (see the module docs). `namespace.name` wins over the pod's `metadata.namespace`,
/// which a pod created through a controller does not carry.
pub fn decide(pod: &Pod, namespace: Namespace<'_>) -> Decision {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    if spec.and_then(|s| s.host_network).unwrap_or(false) {
        return Decision::Skip(Skip::HostNetwork);
    }
    if SYSTEM_NAMESPACES.contains(&namespace.name) {
        return Decision::Skip(Skip::SystemNamespace(namespace.name.to_string()));
    }
    let says_false = |map: &Option<BTreeMap<String, String>>| {
        map.as_ref()
            .and_then(|m| m.get(INJECT_KEY))
            .is_some_and(|v| v == "false")
    };
    if says_false(&meta.labels) {
        return Decision::Skip(Skip::OptedOut(Place::Label));
    }
    if says_false(&meta.annotations) {
        return Decision::Skip(Skip::OptedOut(Place::Annotation));
    }
    let has_container = |name: &str| {
        spec.is_some_and(|s| {
            s.containers
                .iter()
                .chain(s.init_containers.iter().flatten())
                .any(|c| c.name == name)
        })
    };
    let has_status = meta
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(STATUS_ANNOTATION));
    if has_status || has_container(PROXY_CONTAINER) {
        return Decision::Skip(Skip::AlreadyInjected);
    }
    if has_container(ISTIO_PROXY_CONTAINER) {
        return Decision::Skip(Skip::IstioSidecar);
    }
    if let Some(labels) = namespace.labels {
        if let Some(label) = istio_label(labels) {
            return Decision::Skip(Skip::IstioNamespace(label));
        }
        let (key, value) = INJECTION_LABEL;
        if labels.get(key).map(String::as_str) != Some(value) {
            return Decision::Skip(Skip::NamespaceNotEnabled(namespace.name.to_string()));
        }
    }
    Decision::Inject
}

/// The label that makes a namespace Istio's, as `key=value`, if any.
fn istio_label(labels: &BTreeMap<String, String>) -> Option<String> {
    let (key, enabled) = ISTIO_INJECTION_LABEL;
    if labels.get(key).is_some_and(|v| v == enabled) {
        return Some(format!("{key}={enabled}"));
    }
    labels
        .get(ISTIO_REVISION_LABEL)
        .map(|rev| format!("{ISTIO_REVISION_LABEL}={rev}"))
}

// === impl Skip ===

impl Skip {
    /// Whether the user should hear about it (in the admission warnings or on stderr): the
    /// reasons that are likely a mistake rather than a choice. An unlabelled namespace is one
    /// where the labels are checked at all: the webhook was called for the pod, so the API
    /// server's view of the labels and the caller's disagree (a label changed a moment ago).
    pub fn is_surprising(&self) -> bool {
        matches!(
            self,
            Skip::IstioSidecar | Skip::IstioNamespace(_) | Skip::NamespaceNotEnabled(_)
        )
    }
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Skip::HostNetwork => f.write_str("a hostNetwork pod is never injected"),
            Skip::SystemNamespace(ns) => write!(f, "pods in {ns} are never injected"),
            Skip::OptedOut(place) => {
                let place = match place {
                    Place::Label => "label",
                    Place::Annotation => "annotation",
                };
                write!(f, "the pod opts out ({place} {INJECT_KEY}: \"false\")")
            }
            Skip::AlreadyInjected => f.write_str("the pod already has the sidecar"),
            Skip::IstioSidecar => write!(
                f,
                "the pod already has Istio's sidecar ({ISTIO_PROXY_CONTAINER}); one mesh per pod"
            ),
            Skip::IstioNamespace(label) => write!(
                f,
                "the namespace is labelled {label}, so Istio injects there; remove that label to use Sinew"
            ),
            Skip::NamespaceNotEnabled(ns) => write!(
                f,
                "namespace {ns} is not labelled {}={}",
                INJECTION_LABEL.0, INJECTION_LABEL.1
            ),
        }
    }
}

#[cfg(test)]
mod tests;
