//! Who this proxy is in Istio's labels when the config does not say (`telemetry.workload`
//! unset): derived from the pod's name, namespace and labels (`controlPlane.pod/namespace/labels`,
//! or env `SINEW_POD_NAME` / `SINEW_POD_NAMESPACE`) the way Istio guesses it.
//!
//! - workload name: the pod name without its generated suffixes: `-<pod-template-hash>-<5>`
//!   for a Deployment's pod (the hash from the `pod-template-hash` label, or a generated-looking
//!   segment), `-<5>` for other generated names (Jobs, DaemonSets); else the pod name;
//! - canonical service: `service.istio.io/canonical-name`, `app.kubernetes.io/name`, `app`, then
//!   the workload name; canonical revision: `service.istio.io/canonical-revision`,
//!   `app.kubernetes.io/version`, `version`, then "latest";
//! - app / version: the `app` and `version` labels.
//!
//! Every value passes [`super::labels::value`]; what fails reads "unknown".

use super::Workload;
use super::labels::value_or_unknown;
use std::collections::BTreeMap;

pub const POD_NAME_ENV: &str = "SINEW_POD_NAME";
pub const POD_NAMESPACE_ENV: &str = "SINEW_POD_NAMESPACE";

/// The characters Kubernetes uses in generated name suffixes (no vowels, no confusables).
const GENERATED: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

fn generated(seg: &str, lens: std::ops::RangeInclusive<usize>) -> bool {
    lens.contains(&seg.len()) && seg.bytes().all(|c| GENERATED.contains(&c))
}

/// The workload name Istio would guess for `pod`.
pub fn workload_name(pod: &str, labels: &BTreeMap<String, String>) -> String {
    if let Some(hash) = labels.get("pod-template-hash").filter(|h| !h.is_empty()) {
        let marker = format!("-{hash}-");
        if let Some(i) = pod.rfind(&marker) {
            return pod[..i].to_string();
        }
    }
    let Some((rest, last)) = pod.rsplit_once('-') else {
        return pod.to_string();
    };
    if rest.is_empty() || !generated(last, 5..=5) {
        return pod.to_string();
    }
    match rest.rsplit_once('-') {
        Some((name, rs)) if !name.is_empty() && generated(rs, 6..=10) => name.to_string(),
        _ => rest.to_string(),
    }
}

/// This pod's workload from its name, namespace and labels.
pub fn from_pod(pod: &str, namespace: &str, labels: &BTreeMap<String, String>) -> Workload {
    let name = workload_name(pod, labels);
    let label = |keys: &[&str]| {
        keys.iter()
            .find_map(|k| labels.get(*k).filter(|v| !v.is_empty()))
            .cloned()
    };
    let canonical_service = label(&[
        "service.istio.io/canonical-name",
        "app.kubernetes.io/name",
        "app",
    ])
    .unwrap_or_else(|| name.clone());
    let canonical_revision = label(&[
        "service.istio.io/canonical-revision",
        "app.kubernetes.io/version",
        "version",
    ])
    .unwrap_or_else(|| "latest".into());
    Workload {
        name: value_or_unknown(&name),
        namespace: value_or_unknown(namespace),
        app: value_or_unknown(&label(&["app"]).unwrap_or_default()),
        version: value_or_unknown(&label(&["version"]).unwrap_or_default()),
        canonical_service: value_or_unknown(&canonical_service),
        canonical_revision: value_or_unknown(&canonical_revision),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_deployments_pod_name_loses_both_generated_suffixes() {
        let l = labels(&[("pod-template-hash", "545db77b95")]);
        assert_eq!(
            workload_name("reviews-v1-545db77b95-2ps7q", &l),
            "reviews-v1"
        );
        // Without the label, by the look of the segments.
        let none = BTreeMap::new();
        assert_eq!(
            workload_name("reviews-v1-545db77b95-2ps7q", &none),
            "reviews-v1"
        );
        assert_eq!(workload_name("nightly-job-x7k2p", &none), "nightly-job");
        // Names that are not generated stay whole.
        assert_eq!(workload_name("ratings", &none), "ratings");
        assert_eq!(workload_name("web-0", &none), "web-0");
        assert_eq!(workload_name("my-house", &none), "my-house");
        assert_eq!(workload_name("-bcdfg", &none), "-bcdfg");
    }

    #[test]
    fn canonical_labels_follow_istios_precedence() {
        let w = from_pod(
            "reviews-v2-7b9f8c6d5-xbcdz",
            "default",
            &labels(&[
                ("app", "reviews"),
                ("version", "v2"),
                ("app.kubernetes.io/name", "reviews-k8s"),
            ]),
        );
        assert_eq!(&*w.name, "reviews-v2");
        assert_eq!(&*w.canonical_service, "reviews-k8s");
        assert_eq!(&*w.canonical_revision, "v2");
        assert_eq!((&*w.app, &*w.version), ("reviews", "v2"));
        let bare = from_pod("db", "data", &BTreeMap::new());
        assert_eq!(&*bare.canonical_service, "db");
        assert_eq!(&*bare.canonical_revision, "latest");
        assert_eq!(&*bare.app, "unknown");
    }

    #[test]
    fn hostile_label_values_read_unknown() {
        let w = from_pod("x", "ns", &labels(&[("app", "a\"} evil 1\n")]));
        assert_eq!(&*w.app, "unknown");
    }
}
