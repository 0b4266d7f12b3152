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
mod tests {
    use super::*;

    fn run(pairs: &[(&str, &str)]) -> (Result<Vec<String>, Vec<Problem>>, Vec<String>) {
        let annotations = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut warnings = Vec::new();
        (flags(&annotations, &mut warnings), warnings)
    }

    #[test]
    fn each_traffic_annotation_becomes_its_init_flag() {
        let (args, warnings) = run(&[
            ("traffic.sidecar.istio.io/includeInboundPorts", "80, 8080"),
            ("traffic.sidecar.istio.io/excludeInboundPorts", "9090"),
            ("traffic.sidecar.istio.io/excludeOutboundPorts", "5432,6379"),
            ("traffic.sidecar.istio.io/includeOutboundIPRanges", "*"),
            (
                "traffic.sidecar.istio.io/excludeOutboundIPRanges",
                "169.254.169.254,10.0.0.0/8",
            ),
        ]);
        assert_eq!(
            args.expect("valid"),
            [
                "init",
                "--inbound-ports=80, 8080",
                "--exclude-inbound-ports=9090",
                "--exclude-outbound-ports=5432,6379",
                "--outbound-cidrs=*",
                "--exclude-outbound-cidrs=169.254.169.254,10.0.0.0/8",
            ]
        );
        assert!(warnings.is_empty());
        let (args, _) = run(&[]);
        assert_eq!(args.expect("valid"), ["init"]);
        // An empty include list redirects nothing, as `sinew-proxy init` takes it.
        let (args, _) = run(&[("traffic.sidecar.istio.io/includeInboundPorts", "")]);
        assert_eq!(args.expect("valid"), ["init", "--inbound-ports="]);
    }

    #[test]
    fn values_init_would_refuse_are_problems_naming_the_annotation() {
        let cases = [
            (
                "traffic.sidecar.istio.io/excludeOutboundPorts",
                "abc",
                "\"abc\" is not a port",
            ),
            (
                "traffic.sidecar.istio.io/excludeOutboundPorts",
                "0",
                "\"0\" is not a port",
            ),
            (
                "traffic.sidecar.istio.io/excludeInboundPorts",
                "70000",
                "\"70000\" is not a port",
            ),
            (
                "traffic.sidecar.istio.io/excludeInboundPorts",
                "80,,81",
                "empty entry",
            ),
            (
                "traffic.sidecar.istio.io/excludeInboundPorts",
                "*",
                "'*' is not allowed here",
            ),
            (
                "traffic.sidecar.istio.io/includeInboundPorts",
                "80,*",
                "cannot be combined",
            ),
            (
                "traffic.sidecar.istio.io/includeOutboundIPRanges",
                "10.0.0.0/33",
                "not an IPv4 CIDR",
            ),
            (
                "traffic.sidecar.istio.io/excludeOutboundIPRanges",
                "fd00::/8",
                "not an IPv4 CIDR",
            ),
            (
                "traffic.sidecar.istio.io/excludeOutboundIPRanges",
                "10.0.0.0/",
                "not an IPv4 CIDR",
            ),
        ];
        for (annotation, value, reason) in cases {
            let (out, _) = run(&[(annotation, value)]);
            let problems = out.expect_err("refused");
            assert_eq!(problems.len(), 1);
            assert_eq!(problems[0].annotation, annotation);
            assert!(
                problems[0].reason.contains(reason),
                "{value}: {}",
                problems[0]
            );
        }
    }

    #[test]
    fn unsupported_interception_annotations_are_warned_about() {
        let (out, warnings) = run(&[
            ("traffic.sidecar.istio.io/includeOutboundPorts", "80"),
            ("sidecar.istio.io/interceptionMode", "TPROXY"),
        ]);
        assert_eq!(out.expect("still injected"), ["init"]);
        assert_eq!(
            warnings,
            [
                "annotation traffic.sidecar.istio.io/includeOutboundPorts is not supported by Sinew's interception: ignored",
                "annotation sidecar.istio.io/interceptionMode: \"TPROXY\" is not supported; Sinew intercepts with REDIRECT",
            ]
        );
        let (_, warnings) = run(&[("sidecar.istio.io/interceptionMode", "REDIRECT")]);
        assert!(warnings.is_empty());
    }
}
