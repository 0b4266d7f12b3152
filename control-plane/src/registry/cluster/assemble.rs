//! From the reflectors' stores to a [`Snapshot`]: each object decoded once per resourceVersion
//! with local mode's checks, invalid custom objects replaced by their last accepted version,
//! EndpointSlices attached to their Services.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, Pod, Service, ServiceAccount};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::DynamicObject;
use kube::runtime::reflector::Store;

use super::kinds::{BUILTIN, CUSTOM_KINDS, CustomKind, KindId};
use super::reflect::{CustomStore, Note};
use crate::registry::entry::{Age, EndpointEntry, Endpoints};
use crate::registry::error::{Origin, RegistryError};
use crate::registry::model::{self, Acceptance, Snapshot};
use crate::registry::object::{self, Doc, Object, Parsed, Rejection};

/// The reflectors' stores: read, never written, here.
pub(super) struct Stores {
    pub namespaces: Store<Namespace>,
    pub service_accounts: Store<ServiceAccount>,
    pub services: Store<Service>,
    pub slices: Store<EndpointSlice>,
    pub pods: Store<Pod>,
    /// A custom kind's store while its CRD is installed.
    pub custom: [Option<CustomStore>; CUSTOM_KINDS],
}

/// Which lists have completed, and the decoded objects by resourceVersion.
pub(super) struct Assembler {
    stores: Stores,
    synced: BTreeSet<KindId>,
    /// `None` until the CRD list has completed.
    crds: Option<[bool; CUSTOM_KINDS]>,
    cache: HashMap<ObjectKey, Decoded>,
    /// A custom object's last accepted version, kept in force while a newer one is invalid.
    accepted: HashMap<ObjectKey, Doc>,
    /// The last snapshot's objects that were refused, with why (for status and monitoring).
    rejected: Vec<Refused>,
}

/// One object as decoded at one resourceVersion.
struct Decoded {
    resource_version: String,
    result: Result<Option<Doc>, Vec<Rejection>>,
    warnings: Vec<Rejection>,
}

/// An object left out of the snapshot (or kept at its last accepted version), and why.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Refused {
    #[serde(serialize_with = "crate::registry::cluster::assemble::display")]
    pub origin: Origin,
    pub reasons: Vec<String>,
    /// Whether an earlier, accepted version of it is still in force.
    pub kept_previous: bool,
}

/// A DestinationRule or VirtualService as the API server last showed it.
#[derive(Debug, Clone)]
pub struct PolicyObject {
    pub kind: CustomKind,
    /// The group/version it is watched at (its `/status` is written there).
    pub resource: kube::core::ApiResource,
    pub object: Arc<DynamicObject>,
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
            accepted: HashMap::new(),
            rejected: Vec::new(),
        }
    }

    pub fn note(&mut self, note: Note) {
        match note {
            Note::Changed(kind) => tracing::trace!(%kind, "changed"),
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

    /// What the last [`assemble`](Self::assemble) refused.
    pub fn rejected(&self) -> &[Refused] {
        &self.rejected
    }

    /// The custom objects as the stores hold them now (status included), with the version each
    /// is watched at.
    pub fn custom_objects(&self) -> Vec<PolicyObject> {
        CustomKind::ALL
            .iter()
            .zip(&self.stores.custom)
            .filter_map(|(kind, custom)| Some((*kind, custom.as_ref()?)))
            .flat_map(|(kind, custom)| {
                custom
                    .store
                    .state()
                    .into_iter()
                    .map(move |object| PolicyObject {
                        kind,
                        resource: custom.resource.clone(),
                        object,
                    })
            })
            .collect()
    }

    /// The snapshot of the stores as they are now, with `generation`. Objects are decoded only
    /// when their resourceVersion changed since the last call.
    pub fn assemble(&mut self, generation: u64) -> Result<Snapshot, RegistryError> {
        let mut parsed = Parsed::default();
        let mut rejected = Vec::new();
        let mut live = HashSet::new();
        macro_rules! typed {
            ($kind:expr, $store:expr, $decode:path, $variant:path) => {
                for obj in $store.state() {
                    let key = self.decode_into(
                        $kind,
                        &obj.metadata,
                        &mut parsed,
                        &mut rejected,
                        |origin, _| {
                            $decode((*obj).clone(), origin)
                                .map(|entry| Some($variant(Box::new(entry))))
                                .map_err(|r| vec![r])
                        },
                    );
                    live.insert(key);
                }
            };
        }
        typed!(
            KindId::Namespace,
            self.stores.namespaces,
            object::namespace,
            Object::Namespace
        );
        typed!(
            KindId::ServiceAccount,
            self.stores.service_accounts,
            object::service_account,
            Object::ServiceAccount
        );
        typed!(
            KindId::Service,
            self.stores.services,
            object::service,
            Object::Service
        );
        // Pods are shared with the store rather than copied (a typed Pod is several KiB even
        // pruned, and a cluster has tens of thousands).
        for obj in self.stores.pods.state() {
            let key = self.decode_into(
                KindId::Pod,
                &obj.metadata,
                &mut parsed,
                &mut rejected,
                |origin, _| {
                    object::pod(obj.clone(), origin)
                        .map(|entry| Some(Object::Pod(Box::new(entry))))
                        .map_err(|r| vec![r])
                },
            );
            live.insert(key);
        }
        for kind in CustomKind::ALL {
            let Some(custom) = self.stores.custom[custom_index(kind)].clone() else {
                continue;
            };
            for obj in custom.store.state() {
                let age = age_of(&obj.metadata);
                let key = self.decode_into(
                    KindId::Custom(kind),
                    &obj.metadata,
                    &mut parsed,
                    &mut rejected,
                    |origin, warnings| match serde_json::to_value(&*obj) {
                        Ok(value) => object::decode(&value, origin, age, warnings),
                        Err(e) => Err(vec![Rejection {
                            path: String::new(),
                            reason: format!("cannot read the object: {e}"),
                        }]),
                    },
                );
                live.insert(key);
            }
        }
        // Forget what is gone, so a re-created object starts fresh.
        self.cache.retain(|key, _| live.contains(key));
        self.accepted.retain(|key, _| live.contains(key));

        attach_slices(&mut parsed, &self.stores.slices.state());
        let mut snapshot = model::build(parsed, Acceptance::PerObject)?;
        snapshot.set_generation(generation);
        rejected.extend(snapshot.rejected().iter().map(|r| Refused {
            origin: r.origin.clone(),
            reasons: r.reasons.clone(),
            kept_previous: false,
        }));
        rejected.sort_by(|a: &Refused, b| a.origin.cmp(&b.origin));
        self.rejected = rejected;
        Ok(snapshot)
    }

    /// Decodes (or reuses) one object and adds it to `parsed`; returns its key. A refused
    /// custom object is replaced by its last accepted version, if it had one.
    fn decode_into(
        &mut self,
        kind: KindId,
        meta: &ObjectMeta,
        parsed: &mut Parsed,
        rejected: &mut Vec<Refused>,
        decode: impl FnOnce(&Origin, &mut Vec<Rejection>) -> Result<Option<Object>, Vec<Rejection>>,
    ) -> ObjectKey {
        let key = ObjectKey {
            kind,
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
        };
        let origin = Origin::Object {
            kind: kind.name(),
            namespace: meta.namespace.clone(),
            name: key.name.clone(),
        };
        let resource_version = meta.resource_version.clone().unwrap_or_default();
        let fresh = self.cache.get(&key).is_some_and(|d| {
            d.resource_version == resource_version && !resource_version.is_empty()
        });
        if !fresh {
            let mut warnings = Vec::new();
            let result = decode(&origin, &mut warnings).map(|o| {
                o.map(|object| Doc {
                    origin: origin.clone(),
                    object,
                })
            });
            self.cache.insert(
                key.clone(),
                Decoded {
                    resource_version,
                    result,
                    warnings,
                },
            );
        }
        let Some(decoded) = self.cache.get(&key) else {
            return key;
        };
        parsed.warnings.extend(
            decoded
                .warnings
                .iter()
                .map(|w| format!("{origin}: {}", w.reason)),
        );
        match &decoded.result {
            Ok(None) => {}
            Ok(Some(doc)) => {
                if matches!(kind, KindId::Custom(_)) {
                    self.accepted.insert(key.clone(), doc.clone());
                }
                parsed.docs.push(doc.clone());
            }
            Err(reasons) => {
                let previous = self.accepted.get(&key);
                if let Some(doc) = previous {
                    parsed.docs.push(doc.clone());
                }
                rejected.push(Refused {
                    origin,
                    reasons: reasons.iter().map(|r| r.reason.clone()).collect(),
                    kept_previous: previous.is_some(),
                });
            }
        }
        key
    }
}

/// Istio's "oldest first" order for an API object: creation time, then name and namespace.
fn age_of(meta: &ObjectMeta) -> Age {
    Age::Created {
        seconds: meta
            .creation_timestamp
            .as_ref()
            .map_or(0, |t| t.0.as_second()),
        name: meta.name.clone().unwrap_or_default(),
        namespace: meta.namespace.clone().unwrap_or_default(),
    }
}

/// Gives each Service with EndpointSlices (label `kubernetes.io/service-name`) their endpoints;
/// a Service without slices keeps the endpoints its selector picks from Pods.
fn attach_slices(parsed: &mut Parsed, slices: &[Arc<EndpointSlice>]) {
    let mut by_service: HashMap<(&str, &str), Vec<EndpointEntry>> = HashMap::new();
    for slice in slices {
        let (Some(namespace), Some(service)) = (
            slice.metadata.namespace.as_deref(),
            slice
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SERVICE_NAME_LABEL))
                .map(String::as_str),
        ) else {
            continue;
        };
        by_service
            .entry((namespace, service))
            .or_default()
            .extend(slice_endpoints(slice));
    }
    for doc in &mut parsed.docs {
        if let Object::Service(svc) = &mut doc.object
            && let Some(endpoints) = by_service.remove(&(svc.namespace.as_str(), svc.name.as_str()))
        {
            svc.endpoints = Endpoints::Slices(endpoints);
        }
    }
}

/// The label that ties an EndpointSlice to its Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// One slice's endpoints with its ports; FQDN slices and unparsable addresses are skipped (a
/// mesh endpoint is an IP).
pub(super) fn slice_endpoints(slice: &EndpointSlice) -> impl Iterator<Item = EndpointEntry> + '_ {
    let ip_family = matches!(slice.address_type.as_str(), "IPv4" | "IPv6");
    let ports: Vec<(Option<String>, u16)> = slice
        .ports
        .iter()
        .flatten()
        .filter(|p| p.protocol.as_deref().unwrap_or("TCP") == "TCP")
        .filter_map(|p| {
            Some((
                p.name.clone().filter(|n| !n.is_empty()),
                u16::try_from(p.port?).ok()?,
            ))
        })
        .collect();
    slice
        .endpoints
        .iter()
        .filter(move |_| ip_family)
        .flat_map(move |endpoint| {
            let conditions = endpoint.conditions.as_ref();
            let pod = endpoint
                .target_ref
                .as_ref()
                .filter(|r| r.kind.as_deref() == Some("Pod"))
                .and_then(|r| Some((r.namespace.clone()?, r.name.clone()?)));
            let ports = ports.clone();
            endpoint.addresses.iter().filter_map(move |address| {
                Some(EndpointEntry {
                    ip: address.parse().ok()?,
                    ports: ports.clone(),
                    // The API's defaults for absent conditions.
                    ready: conditions.and_then(|c| c.ready).unwrap_or(true),
                    serving: conditions.and_then(|c| c.serving).unwrap_or(true),
                    terminating: conditions.and_then(|c| c.terminating).unwrap_or(false),
                    pod: pod.clone(),
                })
            })
        })
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

/// Serialises with `Display` (an origin reads `DestinationRule.sinew.dev shop/web`).
pub(super) fn display<T: std::fmt::Display, S: serde::Serializer>(
    value: &T,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_str(value)
}
