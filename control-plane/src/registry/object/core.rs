//! The core and Istio kinds' own checks, object by object, as the API server (and istiod's
//! webhook, for the minimal DestinationRule fields indexed here) makes them: names, namespaces,
//! ports, pod specs, Deployment selectors. Each returns the entry or the first thing wrong, as a
//! [`Rejection`] about the whole object (its reason names the field).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod, PodSpec, Service, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::Rejection;
use crate::registry::entry::{
    Age, DEFAULT_NAMESPACE, DeploymentDoc, DestinationRule, Endpoints, INJECTION_LABEL,
    NamespaceEntry, PodEntry, ServiceAccountEntry, ServiceEntry, ServicePortEntry, TargetPort,
    protocol_for_port, service_account_of,
};
use crate::registry::error::Origin;
use crate::registry::istio;
use crate::registry::selector;

pub(super) fn json_type(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a sequence",
        serde_json::Value::Object(_) => "a mapping",
    }
}

pub(super) fn str_at<'v>(value: &'v serde_json::Value, path: &[&str]) -> Option<&'v str> {
    path.iter()
        .try_fold(value, |v, key| v.get(key))
        .and_then(|v| v.as_str())
}

/// `metadata.name`, checked against the kind's naming rule.
pub(super) fn name_of(meta: &ObjectMeta, rule: NameRule) -> Result<String, Rejection> {
    let name = meta.name.as_deref().unwrap_or_default();
    if name.is_empty() {
        return Err(Rejection::whole("metadata.name is required"));
    }
    let (ok, what) = match rule {
        NameRule::Label => (
            selector::is_dns_label(name),
            "a DNS label (lowercase letters, digits and '-', at most 63)",
        ),
        NameRule::Label1035 => (
            selector::is_dns1035_label(name),
            "a DNS label starting with a letter (lowercase letters, digits and '-', at most 63)",
        ),
        NameRule::Subdomain => (
            selector::is_dns_subdomain(name),
            "a DNS subdomain (lowercase letters, digits, '-' and '.', at most 253)",
        ),
    };
    if ok {
        Ok(name.to_string())
    } else {
        Err(Rejection::whole(format!("metadata.name must be {what}")))
    }
}

#[derive(Clone, Copy)]
pub(super) enum NameRule {
    Label,
    Label1035,
    Subdomain,
}

pub(super) fn namespace_of(meta: &ObjectMeta) -> String {
    meta.namespace
        .as_deref()
        .filter(|ns| !ns.is_empty())
        .unwrap_or(DEFAULT_NAMESPACE)
        .to_string()
}

/// A Namespace: its name (a DNS label) and whether injection is on (`sinew-injection=enabled`).
pub fn namespace(object: Namespace, origin: &Origin) -> Result<NamespaceEntry, Rejection> {
    let name = name_of(&object.metadata, NameRule::Label)?;
    let labels = object.metadata.labels.clone().unwrap_or_default();
    let (key, value) = INJECTION_LABEL;
    Ok(NamespaceEntry {
        name,
        injection_enabled: labels.get(key).map(String::as_str) == Some(value),
        labels,
        origin: Some(origin.clone()),
        object: Some(object),
    })
}

/// A ServiceAccount: its name (a DNS subdomain), in its namespace.
pub fn service_account(
    object: ServiceAccount,
    origin: &Origin,
) -> Result<ServiceAccountEntry, Rejection> {
    Ok(ServiceAccountEntry {
        namespace: namespace_of(&object.metadata),
        name: name_of(&object.metadata, NameRule::Subdomain)?,
        origin: origin.clone(),
        object,
    })
}

/// A Service: ports (1–65535, named when several, no duplicates, TCP/UDP/SCTP), target ports,
/// selector, clusterIP (`None` for headless). Its endpoints start as [`Endpoints::FromSelector`];
/// an API source replaces them with the Service's slices when it has any.
pub fn service(object: Service, origin: &Origin) -> Result<ServiceEntry, Rejection> {
    let name = name_of(&object.metadata, NameRule::Label1035)?;
    let spec = object.spec.clone().unwrap_or_default();
    let cluster_ip = spec.cluster_ip.as_deref().unwrap_or_default();
    let headless = cluster_ip == "None";
    let declared_cluster_ip = match cluster_ip {
        "" | "None" => None,
        ip => Some(ip.parse::<IpAddr>().map_err(|_| {
            Rejection::whole(format!(
                "spec.clusterIP {ip:?} is not an IP address (or None for a headless service)"
            ))
        })?),
    };
    let external_name = spec.type_.as_deref() == Some("ExternalName");
    let written = spec.ports.as_deref().unwrap_or_default();
    if written.is_empty() && !headless && !external_name {
        return Err(Rejection::whole("spec.ports is required"));
    }

    let mut ports = Vec::with_capacity(written.len());
    let mut names = BTreeSet::new();
    let mut numbers = BTreeSet::new();
    for (i, p) in written.iter().enumerate() {
        let at = format!("spec.ports[{i}]");
        let port = match p.port {
            0 => return Err(Rejection::whole(format!("{at}.port is required"))),
            n => u16::try_from(n).ok().filter(|n| *n > 0).ok_or_else(|| {
                Rejection::whole(format!("{at}.port must be between 1 and 65535, not {n}"))
            })?,
        };
        let transport = p.protocol.as_deref().unwrap_or("TCP").to_string();
        if !matches!(transport.as_str(), "TCP" | "UDP" | "SCTP") {
            return Err(Rejection::whole(format!(
                "{at}.protocol must be TCP, UDP or SCTP, not {transport:?}"
            )));
        }
        let name = p.name.clone().filter(|n| !n.is_empty());
        match &name {
            None if written.len() > 1 => {
                return Err(Rejection::whole(format!(
                    "{at}.name is required when a Service has more than one port"
                )));
            }
            Some(n) if !names.insert(n.clone()) => {
                return Err(Rejection::whole(format!(
                    "{at}.name {n:?} is used by two ports"
                )));
            }
            _ => {}
        }
        if !numbers.insert((port, transport.clone())) {
            return Err(Rejection::whole(format!(
                "{at}: port {port}/{transport} is listed twice"
            )));
        }
        let target_port = match &p.target_port {
            None => TargetPort::Number(port),
            Some(IntOrString::Int(n)) => {
                TargetPort::Number(u16::try_from(*n).ok().filter(|n| *n > 0).ok_or_else(|| {
                    Rejection::whole(format!(
                        "{at}.targetPort must be between 1 and 65535, not {n}"
                    ))
                })?)
            }
            Some(IntOrString::String(s)) if selector::is_port_name(s) => {
                TargetPort::Name(s.clone())
            }
            Some(IntOrString::String(s)) => {
                return Err(Rejection::whole(format!(
                    "{at}.targetPort {s:?} is neither a port number nor a valid port name"
                )));
            }
        };
        ports.push(ServicePortEntry {
            protocol: protocol_for_port(name.as_deref(), p.app_protocol.as_deref()),
            name,
            port,
            target_port,
            transport,
            app_protocol: p.app_protocol.clone(),
        });
    }

    let selector = spec.selector.clone().filter(|s| !s.is_empty());
    Ok(ServiceEntry {
        namespace: namespace_of(&object.metadata),
        name,
        ports,
        selector,
        headless,
        declared_cluster_ip,
        vip: declared_cluster_ip,
        endpoints: Endpoints::FromSelector,
        origin: origin.clone(),
        object,
    })
}

/// The checks a pod spec needs to be runnable and addressable, at `prefix` (`spec` for a Pod,
/// `spec.template.spec` for a Deployment).
fn check_pod_spec(spec: Option<&PodSpec>, prefix: &str) -> Result<(), Rejection> {
    let containers = spec.map(|s| s.containers.as_slice()).unwrap_or_default();
    if containers.is_empty() {
        return Err(Rejection::whole(format!("{prefix}.containers is required")));
    }
    let mut names = BTreeSet::new();
    let mut port_names = BTreeMap::new();
    for (i, c) in containers.iter().enumerate() {
        let at = format!("{prefix}.containers[{i}]");
        if c.name.is_empty() {
            return Err(Rejection::whole(format!("{at}.name is required")));
        }
        if !names.insert(c.name.as_str()) {
            return Err(Rejection::whole(format!(
                "{at}.name {:?} is used twice",
                c.name
            )));
        }
        for (j, p) in c.ports.iter().flatten().enumerate() {
            let at = format!("{at}.ports[{j}]");
            if !(1..=65535).contains(&p.container_port) {
                return Err(Rejection::whole(match p.container_port {
                    0 => format!("{at}.containerPort is required"),
                    n => format!("{at}.containerPort must be between 1 and 65535, not {n}"),
                }));
            }
            if let Some(name) = p.name.as_deref().filter(|n| !n.is_empty()) {
                if !selector::is_port_name(name) {
                    return Err(Rejection::whole(format!(
                        "{at}.name {name:?} is not a valid port name"
                    )));
                }
                // Named target ports must resolve to one number per pod.
                if let Some(prev) = port_names.insert(name, p.container_port)
                    && prev != p.container_port
                {
                    return Err(Rejection::whole(format!(
                        "{at}.name {name:?} names two different ports ({prev} and {})",
                        p.container_port
                    )));
                }
            }
        }
    }
    Ok(())
}

/// A Pod: containers and their ports checked, `status.podIP` kept as the declared address,
/// the service account (default `default`). Whether it is meshed is decided by the model (it
/// depends on the namespace).
///
/// Takes the Pod shared or owned: the Kubernetes source hands over its store's `Arc` (no copy).
pub fn pod(object: impl Into<std::sync::Arc<Pod>>, origin: &Origin) -> Result<PodEntry, Rejection> {
    let object: std::sync::Arc<Pod> = object.into();
    let name = name_of(&object.metadata, NameRule::Subdomain)?;
    check_pod_spec(object.spec.as_ref(), "spec")?;
    let declared_ip =
        match object.status.as_ref().and_then(|s| s.pod_ip.as_deref()) {
            None | Some("") => None,
            Some(ip) => Some(ip.parse::<IpAddr>().map_err(|_| {
                Rejection::whole(format!("status.podIP {ip:?} is not an IP address"))
            })?),
        };
    Ok(PodEntry {
        namespace: namespace_of(&object.metadata),
        name,
        labels: object.metadata.labels.clone().unwrap_or_default(),
        annotations: object.metadata.annotations.clone().unwrap_or_default(),
        service_account: object
            .spec
            .as_ref()
            .map(service_account_of)
            .unwrap_or_default(),
        declared_ip,
        ip: declared_ip,
        meshed: false,
        owner: None,
        origin: origin.clone(),
        object,
    })
}

pub(super) fn deployment(object: Deployment) -> Result<DeploymentDoc, Rejection> {
    let name = name_of(&object.metadata, NameRule::Subdomain)?;
    let Some(spec) = object.spec.as_ref() else {
        return Err(Rejection::whole("spec is required"));
    };
    let replicas = match spec.replicas {
        None => 1,
        Some(n) => u32::try_from(n).map_err(|_| {
            Rejection::whole(format!("spec.replicas must not be negative, not {n}"))
        })?,
    };
    check_pod_spec(spec.template.spec.as_ref(), "spec.template.spec")?;
    let template_meta = spec.template.metadata.clone().unwrap_or_default();
    if selector::label_selector_is_empty(&spec.selector) {
        return Err(Rejection::whole(
            "spec.selector is required (an empty selector would select every pod)",
        ));
    }
    let labels = template_meta.labels.clone().unwrap_or_default();
    match selector::label_selector_matches(&spec.selector, &labels) {
        Ok(true) => {}
        Ok(false) => {
            return Err(Rejection::whole(
                "spec.selector does not match spec.template.metadata.labels (the Deployment would not own its own pods)",
            ));
        }
        Err(e) => return Err(Rejection::whole(format!("spec.selector.{e}"))),
    }
    // `<name>-<index>` must itself be a valid pod name.
    if replicas > 0 && !selector::is_dns_subdomain(&format!("{name}-{}", replicas - 1)) {
        return Err(Rejection::whole(
            "metadata.name is too long to name its pods",
        ));
    }
    Ok(DeploymentDoc {
        namespace: namespace_of(&object.metadata),
        name,
        replicas,
        template_meta,
        template_spec: spec.template.spec.clone().unwrap_or_default(),
    })
}

/// Minimal checks only: the rule's spec belongs to the traffic-policy compiler, which validates
/// it against Istio's schema. `host` is needed here to index rules at all.
pub(super) fn destination_rule(
    api_version: &str,
    value: &serde_json::Value,
    origin: &Origin,
    age: Age,
) -> Result<DestinationRule, Rejection> {
    let name = match value.pointer("/metadata/name") {
        Some(serde_json::Value::String(s)) if selector::is_dns_subdomain(s) => s.clone(),
        Some(serde_json::Value::String(s)) if !s.is_empty() => {
            return Err(Rejection::whole(
                "metadata.name must be a DNS subdomain (lowercase letters, digits, '-' and '.', at most 253)",
            ));
        }
        _ => return Err(Rejection::whole("metadata.name is required")),
    };
    let namespace = match value.pointer("/metadata/namespace") {
        None | Some(serde_json::Value::Null) => DEFAULT_NAMESPACE.to_string(),
        Some(serde_json::Value::String(s)) if s.is_empty() => DEFAULT_NAMESPACE.to_string(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => {
            return Err(Rejection::whole(format!(
                "metadata.namespace must be a string, not {}",
                json_type(other)
            )));
        }
    };
    let spec = match value.get("spec") {
        Some(spec @ serde_json::Value::Object(_)) => spec.clone(),
        None | Some(serde_json::Value::Null) => return Err(Rejection::whole("spec is required")),
        Some(other) => {
            return Err(Rejection::whole(format!(
                "spec must be a mapping, not {}",
                json_type(other)
            )));
        }
    };
    let host = match spec.get("host") {
        Some(serde_json::Value::String(h)) if !h.is_empty() => h.clone(),
        None | Some(serde_json::Value::Null) => {
            return Err(Rejection::whole("spec.host is required"));
        }
        Some(serde_json::Value::String(_)) => {
            return Err(Rejection::whole("spec.host must not be empty"));
        }
        Some(other) => {
            return Err(Rejection::whole(format!(
                "spec.host must be a string, not {}",
                json_type(other)
            )));
        }
    };
    Ok(DestinationRule {
        api_version: api_version.to_string(),
        namespace,
        name,
        host,
        age,
        origin: origin.clone(),
        spec,
        typed: istio::DestinationRuleSpec::default(),
    })
}
