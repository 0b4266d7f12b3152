//! The `sinew-init` container: `sinew-proxy init` with the pod's interception annotations
//! (Istio's `traffic.sidecar.istio.io/*`, as local mode maps them) turned into flags.
//!
//! What it promises: [`flags`] checks every value with the grammar `sinew-proxy init` uses (ports
//! 1–65535, IPv4 CIDRs or addresses, `*` only where it means "all"), so a typo refuses the pod
//! naming the annotation instead of leaving an init container that fails at every start; Istio
//! interception annotations Sinew does not implement are warnings. The container runs as root
//! with `NET_ADMIN` and `NET_RAW` only, every other capability dropped, no privilege escalation.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{Capabilities, Container, SeccompProfile, SecurityContext};

use crate::contract::INIT_CONTAINER;
use crate::overrides::{Effective, Problem};
use crate::settings::Settings;
use crate::sidecar::resources;

/// Annotation → `sinew-proxy init` flag, and the values it takes.
pub const TRAFFIC_ANNOTATIONS: [(&str, &str, Grammar); 5] = [
    (
        "traffic.sidecar.istio.io/includeInboundPorts",
        "--inbound-ports",
        Grammar::PortsOrAll,
    ),
    (
        "traffic.sidecar.istio.io/excludeInboundPorts",
        "--exclude-inbound-ports",
        Grammar::Ports,
    ),
    (
        "traffic.sidecar.istio.io/excludeOutboundPorts",
        "--exclude-outbound-ports",
        Grammar::Ports,
    ),
    (
        "traffic.sidecar.istio.io/includeOutboundIPRanges",
        "--outbound-cidrs",
        Grammar::CidrsOrAll,
    ),
    (
        "traffic.sidecar.istio.io/excludeOutboundIPRanges",
        "--exclude-outbound-cidrs",
        Grammar::Cidrs,
    ),
];

/// Istio's interception annotations Sinew does not implement.
const UNSUPPORTED: [&str; 4] = [
    "traffic.sidecar.istio.io/includeOutboundPorts",
    "traffic.sidecar.istio.io/excludeInterfaces",
    "traffic.sidecar.istio.io/kubevirtInterfaces",
    "istio.io/reroute-virtual-interfaces",
];
const INTERCEPTION_MODE: &str = "sidecar.istio.io/interceptionMode";

/// What a flag's value may be (as `sinew-proxy init` parses it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grammar {
    Ports,
    PortsOrAll,
    Cidrs,
    CidrsOrAll,
}

/// The `sinew-proxy init` arguments for a pod with these annotations (`init` first), or every
/// annotation whose value it would refuse.
pub fn flags(
    annotations: &BTreeMap<String, String>,
    warnings: &mut Vec<String>,
) -> Result<Vec<String>, Vec<Problem>> {
    let mut args = vec!["init".to_string()];
    let mut problems = Vec::new();
    for (annotation, flag, grammar) in TRAFFIC_ANNOTATIONS {
        let Some(value) = annotations.get(annotation) else {
            continue;
        };
        match check(value, grammar) {
            Ok(()) => args.push(format!("{flag}={}", value.trim())),
            Err(reason) => problems.push(Problem {
                annotation: annotation.to_string(),
                reason,
            }),
        }
    }
    for key in UNSUPPORTED {
        if annotations.contains_key(key) {
            warnings.push(format!(
                "annotation {key} is not supported by Sinew's interception: ignored"
            ));
        }
    }
    if let Some(mode) = annotations.get(INTERCEPTION_MODE)
        && mode != "REDIRECT"
    {
        warnings.push(format!(
            "annotation {INTERCEPTION_MODE}: {mode:?} is not supported; Sinew intercepts with REDIRECT"
        ));
    }
    if problems.is_empty() {
        Ok(args)
    } else {
        Err(problems)
    }
}

/// The init container.
pub fn container(settings: &Settings, pod: &Effective, args: Vec<String>) -> Container {
    Container {
        name: INIT_CONTAINER.to_string(),
        image: Some(pod.proxy_image.clone()),
        image_pull_policy: Some(settings.image_pull_policy.clone()),
        command: Some(vec!["sinew-proxy".to_string()]),
        args: Some(args),
        resources: Some(resources(&settings.init_resources)),
        // Root for iptables, and nothing else: two capabilities, the rest dropped. The root
        // filesystem stays writable: iptables takes its lock file in /run.
        security_context: Some(SecurityContext {
            run_as_user: Some(0),
            run_as_group: Some(0),
            run_as_non_root: Some(false),
            privileged: Some(false),
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(false),
            capabilities: Some(Capabilities {
                add: Some(vec!["NET_ADMIN".to_string(), "NET_RAW".to_string()]),
                drop: Some(vec!["ALL".to_string()]),
            }),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".to_string(),
                localhost_profile: None,
            }),
            ..SecurityContext::default()
        }),
        ..Container::default()
    }
}

/// `Ok` when `sinew-proxy init` would take `value`; else why not.
fn check(value: &str, grammar: Grammar) -> Result<(), String> {
    let value = value.trim();
    let all_allowed = matches!(grammar, Grammar::PortsOrAll | Grammar::CidrsOrAll);
    if value == "*" {
        return if all_allowed {
            Ok(())
        } else {
            Err("'*' is not allowed here: list what to exclude".to_string())
        };
    }
    if value.is_empty() {
        return Ok(());
    }
    for item in value.split(',').map(str::trim) {
        match (item, grammar) {
            ("", _) => return Err(format!("{value:?} has an empty entry")),
            ("*", _) => {
                return Err("'*' means all and cannot be combined with other entries".into());
            }
            (port, Grammar::Ports | Grammar::PortsOrAll) if !is_port(port) => {
                return Err(format!("{port:?} is not a port (1-65535)"));
            }
            (cidr, Grammar::Cidrs | Grammar::CidrsOrAll) if !is_ipv4_cidr(cidr) => {
                return Err(format!(
                    "{cidr:?} is not an IPv4 CIDR or address (10.0.0.0/8, 10.1.2.3)"
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

fn is_port(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && s.parse::<u16>().is_ok_and(|p| p > 0)
}

fn is_ipv4_cidr(s: &str) -> bool {
    let (address, prefix) = s.split_once('/').unwrap_or((s, "32"));
    address.parse::<Ipv4Addr>().is_ok()
        && !prefix.is_empty()
        && prefix.bytes().all(|b| b.is_ascii_digit())
        && prefix.parse::<u8>().is_ok_and(|p| p <= 32)
}

#[cfg(test)]
mod tests;
