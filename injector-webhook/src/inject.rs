//! One pod in, the pod with its sidecar out: the whole injection, used alike by the webhook
//! (then turned into a patch) and by `kube-inject` (on pod templates).
//!
//! What it promises:
//! - The pod is edited as JSON, never re-encoded from typed structs, so fields this code (or
//!   k8s-openapi) does not know are kept byte for byte; typed decoding is only for reading.
//! - What is added: the init container `sinew-init`; the proxy `sinew-proxy` as a native
//!   sidecar right after it (so the app's own init containers already have the mesh) or, in the
//!   fallback, `sinew-init` after the app's init containers (they keep the plain network) and the
//!   proxy as the first container; three volumes; the probe rewrites; the label
//!   `security.sinew.dev/tlsMode: sinew`; the annotations `sinew.dev/status`,
//!   `kubectl.kubernetes.io/default-container` (the first app container, so `kubectl logs` and
//!   `exec` do not land in the proxy) unless set, and `prometheus.io/{scrape,port,path}` unless
//!   the pod already has `prometheus.io/` annotations of its own (those are the app's and stay).
//! - Never a broken pod: a pod that cannot be read, or whose names collide with ours, is left
//!   unchanged with a warning saying why; an annotation with a value that cannot be used refuses
//!   the pod, naming the annotation.

use k8s_openapi::api::core::v1::{Container, Pod};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::contract::*;
use crate::decide::{Decision, Namespace, Skip, decide};
use crate::overrides::{self, Problem};
use crate::probes::{self, AppProbers};
use crate::settings::Settings;
use crate::{init, sidecar};

/// What became of a pod.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The pod with its sidecar.
    Injected { pod: Value, warnings: Vec<String> },
    /// Left as it was.
    Unchanged {
        why: Unchanged,
        warnings: Vec<String>,
    },
    /// An annotation asks for something that cannot be done: the pod should not be created.
    Refused {
        problems: Vec<Problem>,
        warnings: Vec<String>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Unchanged {
    /// The rules say no.
    Skipped(Skip),
    /// Not a pod this code can read (the reason says what is wrong).
    Unreadable(String),
    /// The pod already uses a name the sidecar needs.
    NameTaken(String),
}

/// Annotation naming the container `kubectl logs` and `exec` use by default.
pub const DEFAULT_CONTAINER_ANNOTATION: &str = "kubectl.kubernetes.io/default-container";
const PROMETHEUS_PREFIX: &str = "prometheus.io/";
/// Names the sidecar's parts use, which the pod must not already use.
const OUR_PORT_NAMES: [&str; 2] = ["sinew-metrics", "sinew-health"];
const OUR_VOLUMES: [&str; 3] = [TOKEN_VOLUME, ROOT_CERT_VOLUME, DATA_VOLUME];

/// What `sinew.dev/status` records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub native_sidecar: bool,
    pub init_containers: Vec<String>,
    pub containers: Vec<String>,
    pub volumes: Vec<String>,
    pub proxy_image: String,
}

// === impl Unchanged ===

impl std::fmt::Display for Unchanged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unchanged::Skipped(skip) => skip.fmt(f),
            Unchanged::Unreadable(why) => write!(f, "the pod cannot be read: {why}"),
            Unchanged::NameTaken(what) => write!(f, "the pod already has {what}"),
        }
    }
}

impl Unchanged {
    /// Whether the user should hear about it: everything but a rule's plain "no".
    pub fn is_surprising(&self) -> bool {
        match self {
            Unchanged::Skipped(skip) => skip.is_surprising(),
            Unchanged::Unreadable(_) | Unchanged::NameTaken(_) => true,
        }
    }
}

/// Injects `pod` (a Pod's JSON) created in `namespace`.
pub fn inject(pod: &Value, namespace: Namespace<'_>, settings: &Settings) -> Outcome {
    let mut warnings = Vec::new();
    let unchanged = |why: Unchanged, mut warnings: Vec<String>| {
        if why.is_surprising() {
            warnings.push(format!("no sidecar injected: {why}"));
        }
        Outcome::Unchanged { why, warnings }
    };
    let typed = match read(pod) {
        Ok(typed) => typed,
        Err(why) => return unchanged(Unchanged::Unreadable(why), warnings),
    };
    if let Decision::Skip(skip) = decide(&typed, namespace) {
        return unchanged(Unchanged::Skipped(skip), warnings);
    }
    let spec = typed
        .spec
        .as_ref()
        .expect("invariant: read() checked the spec");
    if let Some(taken) = name_taken(spec) {
        return unchanged(Unchanged::NameTaken(taken), warnings);
    }
    let annotations = typed.metadata.annotations.clone().unwrap_or_default();
    let effective = overrides::effective(settings, &annotations, &mut warnings);
    let init_args = init::flags(&annotations, &mut warnings);
    let (effective, init_args) = match (effective, init_args) {
        (Ok(e), Ok(a)) => (e, a),
        (e, a) => {
            let mut problems = e.err().unwrap_or_default();
            problems.extend(a.err().unwrap_or_default());
            return Outcome::Refused { problems, warnings };
        }
    };

    let mut out = pod.clone();
    let probers = if effective.rewrite_app_probes {
        rewrite_probes(&mut out, spec, &mut warnings)
    } else {
        AppProbers::new()
    };
    let probers = (!probers.is_empty())
        .then(|| serde_json::to_string(&probers).expect("invariant: probers serialise"));
    let proxy = json(sidecar::proxy_container(settings, &effective, probers));
    let init = json(init::container(settings, &effective, init_args));
    let spec_json = object(&mut out, "spec");
    let (init_containers, containers) = if effective.native_sidecar {
        let list = array(spec_json, "initContainers");
        list.splice(0..0, [init, proxy]);
        (vec![INIT_CONTAINER, PROXY_CONTAINER], vec![])
    } else {
        array(spec_json, "initContainers").push(init);
        array(spec_json, "containers").insert(0, proxy);
        (vec![INIT_CONTAINER], vec![PROXY_CONTAINER])
    };
    array(spec_json, "volumes").extend(sidecar::volumes().into_iter().map(json));

    let status = Status {
        native_sidecar: effective.native_sidecar,
        init_containers: init_containers.iter().map(|s| s.to_string()).collect(),
        containers: containers.iter().map(|s| s.to_string()).collect(),
        volumes: OUR_VOLUMES.iter().map(|s| s.to_string()).collect(),
        proxy_image: effective.proxy_image.clone(),
    };
    let metadata = object(&mut out, "metadata");
    let (key, value) = MESHED_LABEL;
    object_in(metadata, "labels").insert(key.into(), value.into());
    let annotations_json = object_in(metadata, "annotations");
    annotations_json.insert(
        STATUS_ANNOTATION.into(),
        serde_json::to_string(&status)
            .expect("invariant: the status serialises")
            .into(),
    );
    if !annotations.contains_key(DEFAULT_CONTAINER_ANNOTATION) {
        annotations_json.insert(
            DEFAULT_CONTAINER_ANNOTATION.into(),
            spec.containers[0].name.clone().into(),
        );
    }
    if annotations.keys().any(|k| k.starts_with(PROMETHEUS_PREFIX)) {
        warnings.push(format!(
            "the pod's own {PROMETHEUS_PREFIX}* annotations are kept: Prometheus scrapes the app, not the proxy's {METRICS_PORT}{METRICS_PATH}"
        ));
    } else {
        for (key, value) in [
            ("prometheus.io/scrape", "true".to_string()),
            ("prometheus.io/port", METRICS_PORT.to_string()),
            ("prometheus.io/path", METRICS_PATH.to_string()),
        ] {
            annotations_json.insert(key.into(), value.into());
        }
    }
    Outcome::Injected { pod: out, warnings }
}

/// The pod decoded, if it is one this code can inject: a spec with containers, each named.
fn read(pod: &Value) -> Result<Pod, String> {
    if !pod.is_object() {
        return Err("it is not a JSON object".to_string());
    }
    let typed = Pod::deserialize(pod).map_err(|e| e.to_string())?;
    let Some(spec) = &typed.spec else {
        return Err("it has no spec".to_string());
    };
    if spec.containers.is_empty() {
        return Err("spec.containers is empty".to_string());
    }
    let all = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten());
    if all.into_iter().any(|c| c.name.is_empty()) {
        return Err("a container has no name".to_string());
    }
    if spec.os.as_ref().is_some_and(|os| os.name != "linux") {
        return Err("only Linux pods can have the sidecar".to_string());
    }
    Ok(typed)
}

/// A name the sidecar needs that the pod already uses, described.
fn name_taken(spec: &k8s_openapi::api::core::v1::PodSpec) -> Option<String> {
    let containers = || {
        spec.containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
    };
    if let Some(c) = containers().find(|c| c.name == INIT_CONTAINER) {
        return Some(format!("a container named {}", c.name));
    }
    if let Some(v) = spec
        .volumes
        .iter()
        .flatten()
        .find(|v| OUR_VOLUMES.contains(&v.name.as_str()))
    {
        return Some(format!("a volume named {}", v.name));
    }
    containers()
        .flat_map(|c: &Container| c.ports.iter().flatten())
        .filter_map(|p| p.name.as_deref())
        .find(|name| OUR_PORT_NAMES.contains(name))
        .map(|name| format!("a port named {name}"))
}

/// Rewrites the probes of the app's containers and its own native sidecars.
fn rewrite_probes(
    out: &mut Value,
    spec: &k8s_openapi::api::core::v1::PodSpec,
    warnings: &mut Vec<String>,
) -> AppProbers {
    let mut probers = AppProbers::new();
    let restartable = |c: &Container| c.restart_policy.as_deref() == Some("Always");
    for (list, typed) in [
        ("containers", spec.containers.iter().collect::<Vec<_>>()),
        (
            "initContainers",
            spec.init_containers.iter().flatten().collect::<Vec<_>>(),
        ),
    ] {
        for (i, container) in typed.into_iter().enumerate() {
            if list == "initContainers" && !restartable(container) {
                continue;
            }
            let json = out
                .get_mut("spec")
                .and_then(|s| s.get_mut(list))
                .and_then(|l| l.get_mut(i));
            if let Some(json) = json {
                probes::rewrite(json, container, &mut probers, warnings);
            }
        }
    }
    probers
}

/// The object at `key` of `parent`, created when missing or null.
fn object<'a>(parent: &'a mut Value, key: &str) -> &'a mut Map<String, Value> {
    let map = parent
        .as_object_mut()
        .expect("invariant: read() checked this is an object");
    object_in(map, key)
}

fn object_in<'a>(map: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let slot = map.entry(key).or_insert(Value::Null);
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    slot.as_object_mut()
        .expect("invariant: just made an object")
}

/// The array at `key`, created when missing or null.
fn array<'a>(map: &'a mut Map<String, Value>, key: &str) -> &'a mut Vec<Value> {
    let slot = map.entry(key).or_insert(Value::Null);
    if !slot.is_array() {
        *slot = Value::Array(Vec::new());
    }
    slot.as_array_mut().expect("invariant: just made an array")
}

fn json<T: Serialize>(value: T) -> Value {
    serde_json::to_value(value).expect("invariant: Kubernetes types serialise")
}

#[cfg(test)]
mod tests;
