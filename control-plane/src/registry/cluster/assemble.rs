//! From the reflectors' stores to a [`Snapshot`]: each object decoded once per resourceVersion
//! with local mode's checks, invalid custom objects replaced by their last accepted version,
//! EndpointSlices attached to their Services.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, Pod, Service, ServiceAccount};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::DynamicObject;
use kube::runtime::reflector::Store;

use super::kinds::{BUILTIN, CustomKind, KindId};
use super::reflect::Note;
use crate::registry::model::Snapshot;

/// The reflectors' stores: read, never written, here.
pub(super) struct Stores {
    pub namespaces: Store<Namespace>,
    pub service_accounts: Store<ServiceAccount>,
    pub services: Store<Service>,
    pub slices: Store<EndpointSlice>,
    pub pods: Store<Pod>,
    /// A custom kind's store while its CRD is installed.
    pub custom: [Option<Store<DynamicObject>>; 4],
}

/// Which lists have completed, and the decoded objects by resourceVersion.
pub(super) struct Assembler {
    stores: Stores,
    synced: BTreeSet<KindId>,
    /// `None` until the CRD list has completed.
    crds: Option<[bool; 4]>,
    cache: HashMap<ObjectKey, Decoded>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ObjectKey {
    kind: KindId,
    namespace: String,
    name: String,
}

// === impl Assembler ===

impl Assembler {
    pub fn new(stores: Stores) -> Self {
        Self {
            stores,
            synced: BTreeSet::new(),
            crds: None,
            cache: HashMap::new(),
        }
    }

    pub fn note(&mut self, note: Note) {
        match note {
            Note::Changed(_) => {}
            Note::Synced(kind) => {
                self.synced.insert(kind);
            }
            Note::CustomStore(kind, store) => {
                self.synced.remove(&KindId::Custom(kind));
                self.stores.custom[custom_index(kind)] = store;
            }
            Note::Crds(installed) => self.crds = Some(installed),
        }
    }

    /// Every built-in kind listed, the CRD list done, and every installed custom kind listed.
    pub fn ready(&self) -> bool {
        self.waiting_for().is_empty()
    }

    /// What [`ready`](Self::ready) still waits for, by kind name.
    pub fn waiting_for(&self) -> Vec<&'static str> {
        let mut waiting: Vec<&'static str> = BUILTIN
            .iter()
            .filter(|k| !self.synced.contains(k))
            .map(|k| k.name())
            .collect();
        match self.crds {
            None => waiting.push(KindId::CustomResourceDefinition.name()),
            Some(installed) => waiting.extend(
                CustomKind::ALL
                    .iter()
                    .zip(installed)
                    .filter(|(k, installed)| {
                        *installed && !self.synced.contains(&KindId::Custom(**k))
                    })
                    .map(|(k, _)| KindId::Custom(*k).name()),
            ),
        }
        waiting
    }
}

fn custom_index(kind: CustomKind) -> usize {
    CustomKind::ALL
        .iter()
        .position(|k| *k == kind)
        .unwrap_or_default()
}

// === pruning: what the registry never reads is not kept ===

/// Every kind: `managedFields` (often the largest part of an object) and the last-applied
/// annotation `kubectl apply` leaves (a copy of the whole object).
pub(super) fn prune_meta<K: kube::Resource>(object: &mut K) {
    trim_meta(object.meta_mut());
}

fn trim_meta(meta: &mut ObjectMeta) {
    meta.managed_fields = None;
    if let Some(annotations) = &mut meta.annotations {
        annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

pub(super) fn prune_service_account(sa: &mut ServiceAccount) {
    trim_meta(&mut sa.metadata);
    sa.secrets = None;
    sa.image_pull_secrets = None;
}

/// A Pod keeps its labels, annotations, service account, host networking, container names and
/// ports (named target ports resolve through them), and its IPs.
pub(super) fn prune_pod(pod: &mut Pod) {
    trim_meta(&mut pod.metadata);
    if let Some(spec) = &mut pod.spec {
        let keep = |c: &mut k8s_openapi::api::core::v1::Container| {
            *c = k8s_openapi::api::core::v1::Container {
                name: std::mem::take(&mut c.name),
                ports: c.ports.take(),
                restart_policy: c.restart_policy.take(),
                ..Default::default()
            };
        };
        spec.containers.iter_mut().for_each(keep);
        spec.init_containers.iter_mut().flatten().for_each(keep);
        spec.volumes = None;
        spec.affinity = None;
        spec.tolerations = None;
        spec.ephemeral_containers = None;
        spec.topology_spread_constraints = None;
    }
    if let Some(status) = &mut pod.status {
        *status = k8s_openapi::api::core::v1::PodStatus {
            pod_ip: status.pod_ip.take(),
            pod_ips: status.pod_ips.take(),
            phase: status.phase.take(),
            ..Default::default()
        };
    }
}

#[allow(dead_code)]
fn _arc<T>(_: Arc<T>) {}
