//! Who a pod is for telemetry: the workload it belongs to and its canonical service and revision,
//! derived as Istio derives them, so the `*_workload`, `*_canonical_service` and
//! `*_canonical_revision` labels read the same as under Istio and existing dashboards keep working.
//!
//! The workload name is the pod's controller, with the generated parts taken off:
//! - a ReplicaSet made by a Deployment is named `<deployment>-<pod-template-hash>`: the
//!   Deployment's name (the hash is the pod's `pod-template-hash` label; without the label, a
//!   last segment that is a Kubernetes-generated hash — 5 to 10 characters of its vowel-free
//!   alphabet — is taken off too);
//! - a Job made by a CronJob is named `<cronjob>-<scheduled minute>` (8 to 11 digits): the
//!   CronJob's name;
//! - any other controller (StatefulSet, DaemonSet, Job, ReplicaSet, ReplicationController): its
//!   name;
//! - no controller: the pod's own name. Local mode's pods made from a Deployment carry their
//!   Deployment's name ([`PodEntry::owner`]), as in a cluster.

use sinew_proto::config::v1::Workload;

use super::entry::PodEntry;

/// The label every Deployment-made pod carries: its ReplicaSet's name suffix.
const POD_TEMPLATE_HASH: &str = "pod-template-hash";

/// The characters Kubernetes' `rand.SafeEncodeString` makes generated names of (no vowels, so no
/// words; no 0, 1 or 3, which look like letters).
const GENERATED_ALPHABET: &str = "bcdfghjklmnpqrstvwxz2456789";

/// The pod's workload: name, namespace, app, version, canonical service and revision, pod.
pub fn workload(pod: &PodEntry) -> Workload {
    let name = workload_name(pod);
    let label = |key: &str| pod.labels.get(key).filter(|v| !v.is_empty()).cloned();
    let canonical_service = label("service.istio.io/canonical-name")
        .or_else(|| label("app.kubernetes.io/name"))
        .or_else(|| label("app"))
        .unwrap_or_else(|| name.clone());
    let canonical_revision = label("service.istio.io/canonical-revision")
        .or_else(|| label("app.kubernetes.io/version"))
        .or_else(|| label("version"))
        .unwrap_or_else(|| "latest".to_string());
    Workload {
        namespace: pod.namespace.clone(),
        app: label("app").unwrap_or_default(),
        version: label("version").unwrap_or_default(),
        canonical_service,
        canonical_revision,
        pod: pod.name.clone(),
        name,
    }
}

/// The workload name (see the module docs).
pub fn workload_name(pod: &PodEntry) -> String {
    if let Some(deployment) = &pod.owner {
        return deployment.clone();
    }
    let controller = pod
        .object
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true));
    let Some(controller) = controller else {
        return pod.name.clone();
    };
    let name = controller.name.as_str();
    match controller.kind.as_str() {
        "ReplicaSet" => {
            let hash = pod.labels.get(POD_TEMPLATE_HASH).map(String::as_str);
            deployment_of(name, hash).unwrap_or(name).to_string()
        }
        "Job" => cron_job_of(name).unwrap_or(name).to_string(),
        _ => name.to_string(),
    }
}

/// `reviews-v1` of the ReplicaSet `reviews-v1-5d8f7c9b4`, if it is a Deployment's.
fn deployment_of<'a>(replica_set: &'a str, hash: Option<&str>) -> Option<&'a str> {
    let (deployment, suffix) = replica_set.rsplit_once('-')?;
    let generated = match hash {
        Some(hash) => suffix == hash,
        None => {
            (5..=10).contains(&suffix.len())
                && suffix.chars().all(|c| GENERATED_ALPHABET.contains(c))
        }
    };
    (generated && !deployment.is_empty()).then_some(deployment)
}

/// `backup` of the Job `backup-29123456`, if a CronJob made it.
fn cron_job_of(job: &str) -> Option<&str> {
    let (cron_job, minute) = job.rsplit_once('-')?;
    let scheduled = (8..=11).contains(&minute.len()) && minute.bytes().all(|b| b.is_ascii_digit());
    (scheduled && !cron_job.is_empty()).then_some(cron_job)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use k8s_openapi::api::core::v1::Pod;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

    use super::*;
    use crate::registry::Origin;

    fn pod(name: &str, labels: &[(&str, &str)], owner: Option<(&str, &str)>) -> PodEntry {
        let labels: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let owner_references = owner.map(|(kind, name)| {
            vec![OwnerReference {
                kind: kind.into(),
                name: name.into(),
                controller: Some(true),
                ..Default::default()
            }]
        });
        PodEntry {
            namespace: "shop".into(),
            name: name.into(),
            labels: labels.clone(),
            annotations: BTreeMap::new(),
            service_account: "default".into(),
            declared_ip: None,
            ip: None,
            meshed: true,
            owner: None,
            origin: Origin::Object {
                kind: "Pod",
                namespace: Some("shop".into()),
                name: name.into(),
            },
            object: Arc::new(Pod {
                metadata: ObjectMeta {
                    name: Some(name.into()),
                    labels: Some(labels),
                    owner_references,
                    ..Default::default()
                },
                ..Default::default()
            }),
        }
    }

    #[test]
    fn a_deployments_pod_is_named_for_the_deployment_not_its_replica_set() {
        let p = pod(
            "reviews-v1-5d8f7c9b4-x7k2p",
            &[("pod-template-hash", "5d8f7c9b4")],
            Some(("ReplicaSet", "reviews-v1-5d8f7c9b4")),
        );
        assert_eq!(workload_name(&p), "reviews-v1");
        // Without the label, a generated-looking suffix is still taken off...
        let p = pod("x", &[], Some(("ReplicaSet", "reviews-v1-5d8f7c9b4")));
        assert_eq!(workload_name(&p), "reviews-v1");
        // ...but not a word, and not when the label names another hash.
        let p = pod("x", &[], Some(("ReplicaSet", "web-canary")));
        assert_eq!(workload_name(&p), "web-canary");
        let p = pod(
            "x",
            &[("pod-template-hash", "abc")],
            Some(("ReplicaSet", "web-5d8f7c9b4")),
        );
        assert_eq!(workload_name(&p), "web-5d8f7c9b4");
    }

    #[test]
    fn other_controllers_name_the_workload_and_a_cron_jobs_job_names_the_cron_job() {
        let cases = [
            (Some(("StatefulSet", "db")), "db-0", "db"),
            (Some(("DaemonSet", "agent")), "agent-x2x", "agent"),
            (Some(("Job", "migrate")), "migrate-abcde", "migrate"),
            (
                Some(("Job", "backup-29123456")),
                "backup-29123456-q",
                "backup",
            ),
            (Some(("Job", "backup-2")), "backup-2-q", "backup-2"),
            (None, "standalone", "standalone"),
        ];
        for (owner, pod_name, want) in cases {
            assert_eq!(workload_name(&pod(pod_name, &[], owner)), want, "{owner:?}");
        }
        // An owner that is not the controller does not count.
        let mut p = pod("lone", &[], Some(("StatefulSet", "db")));
        Arc::make_mut(&mut p.object)
            .metadata
            .owner_references
            .as_mut()
            .unwrap()[0]
            .controller = None;
        assert_eq!(workload_name(&p), "lone");
    }

    #[test]
    fn local_mode_deployment_pods_carry_their_deployments_name() {
        let mut p = pod("web-0", &[], None);
        p.owner = Some("web".into());
        assert_eq!(workload_name(&p), "web");
    }

    #[test]
    fn canonical_service_and_revision_follow_istios_label_order() {
        let w = workload(&pod(
            "web-0",
            &[
                ("app", "web"),
                ("version", "v2"),
                ("app.kubernetes.io/name", "storefront"),
                ("service.istio.io/canonical-revision", "r7"),
            ],
            Some(("StatefulSet", "web")),
        ));
        assert_eq!(
            w,
            Workload {
                name: "web".into(),
                namespace: "shop".into(),
                app: "web".into(),
                version: "v2".into(),
                canonical_service: "storefront".into(),
                canonical_revision: "r7".into(),
                pod: "web-0".into(),
            }
        );
        let bare = workload(&pod("lone", &[], None));
        assert_eq!(
            (
                bare.canonical_service.as_str(),
                bare.canonical_revision.as_str()
            ),
            ("lone", "latest")
        );
        assert_eq!((bare.app.as_str(), bare.version.as_str()), ("", ""));
        let by_app = workload(&pod("x", &[("app", "cart"), ("version", "v1")], None));
        assert_eq!(
            (
                by_app.canonical_service.as_str(),
                by_app.canonical_revision.as_str()
            ),
            ("cart", "v1")
        );
    }
}
