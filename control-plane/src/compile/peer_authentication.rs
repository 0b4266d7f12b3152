//! Each workload's inbound mTLS mode, from Istio's `PeerAuthentication` resources.
//!
//! Scope and precedence are Istio's (`ComposePeerAuthentication`):
//! 1. mesh: the policy without a selector in the root namespace (`--root-namespace`);
//! 2. namespace: the policy without a selector in the workload's namespace;
//! 3. workload: a policy with a selector in the workload's (non-root) namespace that matches it.
//!
//! At each level the oldest policy is the one that counts (the model warns about the others),
//! and its mode `UNSET` (or no `mtls`) inherits the level above; at the top, `UNSET` is
//! PERMISSIVE. Port-level modes come from the workload policy only; `UNSET` there is the
//! workload's resolved mode. Selector policies in the root namespace are ignored (a warning
//! says so), as Istio ignores them.

use std::collections::{BTreeMap, HashMap};

use sinew_proto::config::v1::InboundMode;

use crate::registry::istio::peer_authentication::MtlsMode;
use crate::registry::{PeerAuthentication, Snapshot};

/// A workload's resolved modes: the workload-wide one and those its policy sets per port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodMtls {
    pub mode: InboundMode,
    /// Every port the workload policy names, resolved (also those equal to `mode`).
    pub ports: BTreeMap<u32, InboundMode>,
}

impl Default for PodMtls {
    fn default() -> Self {
        Self {
            mode: InboundMode::Permissive,
            ports: BTreeMap::new(),
        }
    }
}

impl PodMtls {
    /// The mode on workload port `port`.
    pub fn mode_on(&self, port: u16) -> InboundMode {
        self.ports
            .get(&u32::from(port))
            .copied()
            .unwrap_or(self.mode)
    }
}

/// A workload-level policy: its selector, its mode, its ports' modes (`None`: UNSET).
#[derive(Debug, Clone, PartialEq)]
struct Selecting {
    labels: BTreeMap<String, String>,
    mode: Option<InboundMode>,
    ports: BTreeMap<u32, Option<InboundMode>>,
}

/// The PeerAuthentications of one snapshot by scope, ready to resolve per workload.
#[derive(Debug, Default, PartialEq)]
pub struct PeerAuthenticationRules {
    root_namespace: String,
    /// The oldest selector-less policy of the root namespace (`None` inside: UNSET).
    mesh: Option<Option<InboundMode>>,
    /// The oldest selector-less policy of each other namespace.
    namespaces: HashMap<String, Option<InboundMode>>,
    /// Each non-root namespace's selecting policies, oldest first.
    workloads: HashMap<String, Vec<Selecting>>,
    /// Whether any policy says DISABLE: without one no endpoint needs a look (the common case).
    any_disable: bool,
    /// Policies that are accepted and never apply (selectors in the root namespace).
    warnings: Vec<String>,
}

// === impl PeerAuthenticationRules ===

impl PeerAuthenticationRules {
    pub fn new(snapshot: &Snapshot, root_namespace: &str) -> Self {
        let mut rules = Self {
            root_namespace: root_namespace.to_string(),
            ..Self::default()
        };
        // Oldest first: the first of a scope stays.
        for p in snapshot.peer_authentications() {
            let mode = mode_of(p.spec.mtls.as_ref().and_then(|m| m.mode));
            rules.any_disable |= mode == Some(InboundMode::Disable);
            match (p.match_labels(), p.namespace == root_namespace) {
                (None, true) => {
                    rules.mesh.get_or_insert(mode);
                }
                (None, false) => {
                    rules.namespaces.entry(p.namespace.clone()).or_insert(mode);
                }
                (Some(_), true) => rules.warnings.push(root_selector_warning(p)),
                (Some(labels), false) => {
                    let ports: BTreeMap<u32, Option<InboundMode>> = p
                        .spec
                        .port_level_mtls
                        .iter()
                        .flatten()
                        .filter_map(|(port, m)| {
                            Some((u32::try_from(port.0).ok()?, mode_of(m.mode)))
                        })
                        .collect();
                    rules.any_disable |= ports.values().any(|m| *m == Some(InboundMode::Disable));
                    rules
                        .workloads
                        .entry(p.namespace.clone())
                        .or_default()
                        .push(Selecting {
                            labels: labels.clone(),
                            mode,
                            ports,
                        });
                }
            }
        }
        rules
    }

    /// The modes of a workload in `namespace` whose pod has `labels`.
    pub fn resolve(&self, namespace: &str, labels: &BTreeMap<String, String>) -> PodMtls {
        let mesh = self.mesh.flatten();
        let namespace_mode = match namespace == self.root_namespace {
            // The root namespace's own workloads: its selector-less policy is their namespace's.
            true => None,
            false => self.namespaces.get(namespace).copied().flatten(),
        };
        let workload = self.workloads.get(namespace).and_then(|ps| {
            ps.iter()
                .find(|p| p.labels.iter().all(|(k, v)| labels.get(k) == Some(v)))
        });
        let mode = workload
            .and_then(|w| w.mode)
            .or(namespace_mode)
            .or(mesh)
            .unwrap_or(InboundMode::Permissive);
        let ports = workload
            .map(|w| {
                w.ports
                    .iter()
                    .map(|(port, m)| (*port, m.unwrap_or(mode)))
                    .collect()
            })
            .unwrap_or_default();
        PodMtls { mode, ports }
    }

    /// Whether clients must reach this workload's `port` in plaintext (its mode there is
    /// DISABLE): Istio's auto-mTLS, as the client side decides it.
    pub fn plaintext(&self, namespace: &str, labels: &BTreeMap<String, String>, port: u16) -> bool {
        self.any_disable && self.resolve(namespace, labels).mode_on(port) == InboundMode::Disable
    }

    /// What was accepted and is never applied.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }
}

/// `UNSET` (or nothing) is `None`: inherited.
fn mode_of(mode: Option<MtlsMode>) -> Option<InboundMode> {
    match mode? {
        MtlsMode::UNSET => None,
        MtlsMode::DISABLE => Some(InboundMode::Disable),
        MtlsMode::PERMISSIVE => Some(InboundMode::Permissive),
        MtlsMode::STRICT => Some(InboundMode::Strict),
    }
}

fn root_selector_warning(p: &PeerAuthentication) -> String {
    format!(
        "{}: PeerAuthentication {:?}: a selector in the root namespace {:?} is ignored (as in Istio); put workload policies in the workload's namespace, or drop the selector for a mesh-wide policy",
        p.origin, p.name, p.namespace
    )
}

#[cfg(test)]
mod tests;
