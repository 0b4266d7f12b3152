//! Checks across traffic rules that Istio accepts and then quietly gets wrong, reported as
//! snapshot warnings (and so in the control plane's status and `sinewctl status`):
//! - a VirtualService route naming a subset that no DestinationRule for its host defines (Istio
//!   fails such requests with NR, typically found in production);
//! - two DestinationRules for one host whose subsets share a name (the newer one is dropped);
//! - two VirtualServices for one host in one namespace (only the older one is used).
//!
//! Every warning names both objects with their file and line, and is attributed to the object
//! it is about ([`ObjectWarning`]), so an API source can report it on that object's status.

use std::collections::BTreeMap;

use super::entry::{DestinationRule, VirtualService};
use super::error::Origin;
use super::hosts;

/// A cross-object warning about one DestinationRule or VirtualService.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectWarning {
    /// The object the warning is about (the whole object: an API origin, or a file's document).
    pub origin: Origin,
    pub kind: WarningKind,
    /// The full text, as listed in [`Snapshot::warnings`](super::Snapshot::warnings).
    pub message: String,
}

/// What a cross-object warning says, by the condition it affects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WarningKind {
    /// A route or mirror names a subset no DestinationRule for its host defines.
    SubsetNotFound,
    /// A subset name another DestinationRule for the same host already defines (this one's is
    /// dropped).
    DuplicateSubset,
    /// A host an older VirtualService in the namespace already routes (this one is not used
    /// for it).
    HostConflict,
}

/// A destination `subset` no DestinationRule for the destination's host defines.
pub(crate) fn undefined_subsets(
    services: &[VirtualService],
    rules: &[DestinationRule],
) -> Vec<ObjectWarning> {
    let rules: Vec<(String, &DestinationRule)> = rules
        .iter()
        .map(|r| (hosts::expand(&r.host, &r.namespace), r))
        .collect();
    let mut out = Vec::new();
    for vs in services {
        let http = vs
            .spec
            .http
            .iter()
            .flatten()
            .enumerate()
            .flat_map(|(i, r)| {
                r.route.iter().flatten().enumerate().map(move |(j, d)| {
                    (
                        format!("spec.http[{i}].route[{j}].destination"),
                        d.destination.as_ref(),
                    )
                })
            });
        let tcp = vs.spec.tcp.iter().flatten().enumerate().flat_map(|(i, r)| {
            r.route.iter().flatten().enumerate().map(move |(j, d)| {
                (
                    format!("spec.tcp[{i}].route[{j}].destination"),
                    d.destination.as_ref(),
                )
            })
        });
        // Mirrors name subsets too (a mirror to an undefined one is silently lost).
        let mirrors = vs
            .spec
            .http
            .iter()
            .flatten()
            .enumerate()
            .flat_map(|(i, r)| {
                let single = r
                    .mirror
                    .as_ref()
                    .map(|m| (format!("spec.http[{i}].mirror"), Some(m)));
                let listed = r.mirrors.iter().flatten().enumerate().map(move |(j, m)| {
                    (
                        format!("spec.http[{i}].mirrors[{j}].destination"),
                        m.destination.as_ref(),
                    )
                });
                single.into_iter().chain(listed)
            });
        for (path, dest) in http.chain(tcp).chain(mirrors) {
            let Some(dest) = dest else { continue };
            let (Some(host), Some(subset)) = (dest.host.as_deref(), dest.subset.as_deref()) else {
                continue;
            };
            let fqdn = hosts::expand(host, &vs.namespace);
            let for_host: Vec<&DestinationRule> = rules
                .iter()
                .filter(|(pattern, _)| hosts::matches(pattern, &fqdn))
                .map(|(_, r)| *r)
                .collect();
            let defined = for_host.iter().any(|r| {
                r.typed
                    .subsets
                    .iter()
                    .flatten()
                    .any(|s| s.name.as_deref() == Some(subset))
            });
            if defined {
                continue;
            }
            let at = vs.origin_of(&path).to_string();
            let rules_said = if for_host.is_empty() {
                format!("no DestinationRule has host {fqdn:?}")
            } else {
                for_host
                    .iter()
                    .map(|r| {
                        let names: Vec<&str> = r
                            .typed
                            .subsets
                            .iter()
                            .flatten()
                            .filter_map(|s| s.name.as_deref())
                            .collect();
                        format!(
                            "DestinationRule {}/{} at {} defines {}",
                            r.namespace,
                            r.name,
                            r.origin,
                            if names.is_empty() {
                                "no subsets".to_string()
                            } else {
                                format!("subsets {}", names.join(", "))
                            }
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
            };
            out.push(ObjectWarning {
                origin: vs.origin.clone(),
                kind: WarningKind::SubsetNotFound,
                message: format!(
                    "{at}: VirtualService {:?}: {path}: subset {subset:?} of host {fqdn:?} is not defined ({rules_said}): requests routed there fail with NR (no route)",
                    vs.name
                ),
            });
        }
    }
    out
}

/// Subset names defined twice among the rules that merge for one host (the later is dropped).
pub(crate) fn duplicate_subsets(rules: &[DestinationRule]) -> Vec<ObjectWarning> {
    // Rules merge per namespace, host and workload selector.
    let mut first: BTreeMap<(String, String, String, String), &DestinationRule> = BTreeMap::new();
    let mut out = Vec::new();
    for r in rules {
        let host = hosts::expand(&r.host, &r.namespace);
        let selector = format!("{:?}", r.typed.workload_selector);
        for s in r.typed.subsets.iter().flatten() {
            let Some(name) = s.name.clone() else { continue };
            let key = (r.namespace.clone(), host.clone(), selector.clone(), name);
            match first.get(&key) {
                Some(earlier) if earlier.name != r.name => out.push(ObjectWarning {
                    origin: r.origin.clone(),
                    kind: WarningKind::DuplicateSubset,
                    message: format!(
                        "{}: DestinationRule {:?}: subset {:?} of host {host:?} is already defined by DestinationRule {:?} at {}; this one is dropped",
                        r.origin, r.name, key.3, earlier.name, earlier.origin
                    ),
                }),
                Some(_) => {}
                None => {
                    first.insert(key, r);
                }
            }
        }
    }
    out
}

/// A second VirtualService for a host in the same namespace: only the older applies.
pub(crate) fn shared_hosts(services: &[VirtualService]) -> Vec<ObjectWarning> {
    let mut first: BTreeMap<(String, String), &VirtualService> = BTreeMap::new();
    let mut out = Vec::new();
    for vs in services {
        for host in vs.expanded_hosts() {
            match first.get(&(vs.namespace.clone(), host.clone())) {
                Some(earlier) if earlier.name != vs.name => out.push(ObjectWarning {
                    origin: vs.origin.clone(),
                    kind: WarningKind::HostConflict,
                    message: format!(
                        "{}: VirtualService {:?}: host {host:?} is already routed by VirtualService {:?} at {}; only the older one applies to it",
                        vs.origin, vs.name, earlier.name, earlier.origin
                    ),
                }),
                Some(_) => {}
                None => {
                    first.insert((vs.namespace.clone(), host), vs);
                }
            }
        }
    }
    out
}
