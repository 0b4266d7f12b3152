//! A workload's security settings as its proxy receives them: the inbound mTLS modes
//! ([`peer_authentication`](super::peer_authentication)) and the AuthorizationPolicies that
//! apply to it ([`authorization`](super::authorization)), resolved once per snapshot and pod.

use std::collections::BTreeMap;

use sinew_proto::config::v1 as pb;

use super::authorization::AuthorizationRules;
use super::peer_authentication::PeerAuthenticationRules;
use crate::registry::Snapshot;

/// What one proxy's settings say about security (`ProxySettings.inbound_mode`,
/// `port_inbound_modes`, `authorization`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodSecurity {
    pub inbound_mode: pb::InboundMode,
    pub port_inbound_modes: BTreeMap<u32, i32>,
    /// Always present, empty when no policy applies.
    pub authorization: pb::Authorization,
}

/// The security resources of one snapshot, by scope.
#[derive(Debug, Default, PartialEq)]
pub struct SecurityRules {
    pub peer: PeerAuthenticationRules,
    pub authorization: AuthorizationRules,
}

// === impl SecurityRules ===

impl SecurityRules {
    pub fn new(snapshot: &Snapshot, root_namespace: &str) -> Self {
        Self {
            peer: PeerAuthenticationRules::new(snapshot, root_namespace),
            authorization: AuthorizationRules::new(snapshot, root_namespace),
        }
    }

    /// The settings of a workload in `namespace` whose pod has `labels`.
    pub fn resolve(&self, namespace: &str, labels: &BTreeMap<String, String>) -> PodSecurity {
        let mtls = self.peer.resolve(namespace, labels);
        PodSecurity {
            inbound_mode: mtls.mode,
            port_inbound_modes: mtls
                .ports
                .into_iter()
                .map(|(port, mode)| (port, mode as i32))
                .collect(),
            authorization: self.authorization.authorization(namespace, labels),
        }
    }

    /// Resources accepted that never apply, for the registry's warnings.
    pub fn warnings(&self) -> impl Iterator<Item = &String> {
        self.peer
            .warnings()
            .iter()
            .chain(self.authorization.warnings())
    }

    /// Everything the control plane warns about a snapshot: the registry's warnings, then these
    /// rules' (policies that never apply).
    pub fn with_registry_warnings(&self, snapshot: &Snapshot) -> Vec<String> {
        let mut warnings = snapshot.warnings().to_vec();
        warnings.extend(self.warnings().cloned());
        warnings
    }
}
