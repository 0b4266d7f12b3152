//! Value checks of Istio's `PeerAuthentication`, as istiod's webhook makes them
//! (`ValidatePeerAuthentication`): label selectors well formed, `portLevelMtls` only with a
//! selector (port-level modes are about one workload's ports), ports 1–65535. What depends on
//! where the policy lives (a selector in the root namespace is ignored) is said by the compiler,
//! which knows the root namespace.

use super::{Report, labels};
use crate::registry::istio::peer_authentication::PeerAuthenticationSpec;

pub(crate) fn peer_authentication(spec: &PeerAuthenticationSpec) -> Report {
    let mut r = Report::default();
    let match_labels = spec.selector.as_ref().and_then(|s| s.match_labels.as_ref());
    labels(&mut r, "spec.selector.matchLabels", match_labels);
    let selects = match_labels.is_some_and(|m| !m.is_empty());
    let ports = spec.port_level_mtls.iter().flatten();
    if !selects && ports.clone().next().is_some() {
        r.error(
            "spec.portLevelMtls",
            "requires a selector with matchLabels: port-level modes are about one workload's ports, so mesh and namespace policies cannot set them",
        );
    }
    for (port, _) in ports {
        if !(1..=65535).contains(&port.0) {
            r.error(
                format!("spec.portLevelMtls.{}", port.0),
                format!("port must be between 1 and 65535, not {}", port.0),
            );
        }
    }
    r
}

#[cfg(test)]
mod tests;
