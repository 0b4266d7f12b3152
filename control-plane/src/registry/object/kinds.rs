//! Which kinds exist, for the kinds the registry does not run. A kind that exists in its API
//! group (a ConfigMap, a Gateway) is kept and skipped with a warning, so a directory
//! written for a cluster still runs; a kind its group does not have (`apps/v1 Deploymnet`) is a
//! typo, and an error that suggests the kind meant, as the API server would refuse it too.
//! Groups not listed here (CRDs of other projects) are not second-guessed.

use super::{DESTINATION_RULE_VERSIONS, SECURITY_VERSIONS, TELEMETRY_VERSIONS};

/// The kinds of the API versions we know, as the API server serves them.
const KNOWN: &[(&[&str], &[&str])] = &[
    (
        &["v1"],
        &[
            "Binding",
            "ComponentStatus",
            "ConfigMap",
            "Endpoints",
            "Event",
            "LimitRange",
            "List",
            "Namespace",
            "Node",
            "PersistentVolume",
            "PersistentVolumeClaim",
            "Pod",
            "PodTemplate",
            "ReplicationController",
            "ResourceQuota",
            "Secret",
            "Service",
            "ServiceAccount",
        ],
    ),
    (
        &["apps/v1"],
        &[
            "ControllerRevision",
            "DaemonSet",
            "Deployment",
            "ReplicaSet",
            "StatefulSet",
        ],
    ),
    (&["batch/v1"], &["CronJob", "Job"]),
    (
        &["networking.k8s.io/v1"],
        &["Ingress", "IngressClass", "NetworkPolicy"],
    ),
    (
        &[
            "networking.istio.io/v1",
            "networking.istio.io/v1beta1",
            "networking.istio.io/v1alpha3",
        ],
        &[
            "DestinationRule",
            "EnvoyFilter",
            "Gateway",
            "ProxyConfig",
            "ServiceEntry",
            "Sidecar",
            "VirtualService",
            "WorkloadEntry",
            "WorkloadGroup",
        ],
    ),
    (
        &["security.istio.io/v1", "security.istio.io/v1beta1"],
        &[
            "AuthorizationPolicy",
            "PeerAuthentication",
            "RequestAuthentication",
        ],
    ),
    (
        &["telemetry.istio.io/v1", "telemetry.istio.io/v1alpha1"],
        &["Telemetry"],
    ),
    (
        &["sinew.dev/v1alpha1"],
        &["DestinationRule", "VirtualService"],
    ),
];

/// Whether the registry runs objects of this kind (the others are stored and skipped).
pub(crate) fn is_used(api_version: &str, kind: &str) -> bool {
    match kind {
        "Namespace" | "ServiceAccount" | "Service" | "Pod" => api_version == "v1",
        "Deployment" => api_version == "apps/v1",
        "DestinationRule" | "VirtualService" => DESTINATION_RULE_VERSIONS.contains(&api_version),
        "Telemetry" => TELEMETRY_VERSIONS.contains(&api_version),
        "PeerAuthentication" | "AuthorizationPolicy" => SECURITY_VERSIONS.contains(&api_version),
        _ => false,
    }
}

/// `Ok` for a kind that exists (or of a group we do not know); otherwise why not, with the kind
/// probably meant.
pub(super) fn check(api_version: &str, kind: &str) -> Result<(), String> {
    let Some((_, kinds)) = KNOWN.iter().find(|(v, _)| v.contains(&api_version)) else {
        return Ok(());
    };
    if kinds.contains(&kind) {
        return Ok(());
    }
    // The right kind under another apiVersion: `v1 Deployment`.
    if let Some((versions, _)) = KNOWN.iter().find(|(_, k)| k.contains(&kind)) {
        return Err(format!(
            "kind {kind} is not served by apiVersion {api_version}; it is {}",
            versions[0]
        ));
    }
    match closest(kind, kinds) {
        Some(k) => Err(format!(
            "apiVersion {api_version} has no kind {kind:?}; did you mean {k}?"
        )),
        None => Err(format!(
            "apiVersion {api_version} has no kind {kind:?} (it has {})",
            kinds.join(", ")
        )),
    }
}

/// The name among `known` that `written` is probably a slip of (a typo or a case slip, not
/// another word), if any.
pub(super) fn closest<'k>(written: &str, known: &[&'k str]) -> Option<&'k str> {
    known
        .iter()
        .map(|k| {
            (
                distance(&k.to_ascii_lowercase(), &written.to_ascii_lowercase()),
                *k,
            )
        })
        .min()
        .filter(|(d, _)| *d <= 2.max(written.len() / 4))
        .map(|(_, k)| k)
}

/// Edit distance (insertions, deletions, substitutions, adjacent swaps count one).
fn distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_misspelt_kind_of_a_known_group_suggests_the_kind_meant() {
        assert_eq!(
            check("apps/v1", "Deploymnet"),
            Err("apiVersion apps/v1 has no kind \"Deploymnet\"; did you mean Deployment?".into())
        );
        assert_eq!(
            check("networking.istio.io/v1", "DestinationRul"),
            Err(
                "apiVersion networking.istio.io/v1 has no kind \"DestinationRul\"; did you mean DestinationRule?"
                    .into()
            )
        );
        assert_eq!(
            check("v1", "Deployment"),
            Err("kind Deployment is not served by apiVersion v1; it is apps/v1".into())
        );
    }

    #[test]
    fn existing_kinds_and_unknown_groups_pass() {
        assert_eq!(check("v1", "ConfigMap"), Ok(()));
        assert_eq!(
            check("networking.istio.io/v1beta1", "VirtualService"),
            Ok(())
        );
        assert_eq!(check("example.com/v1", "Widget"), Ok(()));
        assert!(!is_used("v1", "ConfigMap"));
        assert!(is_used("sinew.dev/v1alpha1", "DestinationRule"));
    }
}
