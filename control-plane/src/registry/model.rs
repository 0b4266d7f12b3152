//! The registry's model: an immutable [`Snapshot`] of what runs where, built from parsed
//! documents after the checks that need more than one document (duplicates, references to
//! namespaces and service accounts, Deployment expansion), and re-addressed by [`Assignments`].

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Pod;

use super::assignments::Assignments;
use super::crosscheck::ObjectWarning;
use super::entry::{AuthorizationPolicy, PeerAuthentication};
use super::entry::{
    DEFAULT_NAMESPACE, DEFAULT_SERVICE_ACCOUNT, DeploymentDoc, DestinationRule, Endpoints,
    INJECT_OPT_OUT, NamespaceEntry, PodEntry, SIDECAR_CONTAINER, ServiceAccountEntry, ServiceEntry,
    TargetPort, Telemetry, VirtualService, service_account_of,
};
use super::error::{Origin, Problem, RegistryError};
use super::object::{Doc, Object, Parsed};

/// Everything the registry knows at one moment. Immutable once built; shared as
/// `Arc<Snapshot>`. Maps are keyed by `(namespace, name)` and iterate in that order, so
/// everything derived from a snapshot is deterministic.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    generation: u64,
    namespaces: BTreeMap<String, NamespaceEntry>,
    service_accounts: BTreeMap<(String, String), ServiceAccountEntry>,
    services: BTreeMap<(String, String), ServiceEntry>,
    pods: BTreeMap<(String, String), PodEntry>,
    destination_rules: Vec<DestinationRule>,
    virtual_services: Vec<VirtualService>,
    telemetries: Vec<Telemetry>,
    peer_authentications: Vec<PeerAuthentication>,
    authorization_policies: Vec<AuthorizationPolicy>,
    warnings: Vec<String>,
    object_warnings: Vec<ObjectWarning>,
    rejected: Vec<Rejected>,
}

// === impl Snapshot ===

impl Snapshot {
    /// Starts at 1 for the first load and grows by one with every published change.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Declared namespaces, plus `default` (always present).
    pub fn namespaces(&self) -> &BTreeMap<String, NamespaceEntry> {
        &self.namespaces
    }

    /// Declared service accounts (the implicit `default` ones are not listed).
    pub fn service_accounts(&self) -> &BTreeMap<(String, String), ServiceAccountEntry> {
        &self.service_accounts
    }

    pub fn services(&self) -> &BTreeMap<(String, String), ServiceEntry> {
        &self.services
    }

    /// Pods written as Pods and pods generated from Deployments.
    pub fn pods(&self) -> &BTreeMap<(String, String), PodEntry> {
        &self.pods
    }

    /// Oldest first (by [`Age`](super::Age): document order in files).
    pub fn destination_rules(&self) -> &[DestinationRule] {
        &self.destination_rules
    }

    /// Mesh VirtualServices, oldest first (by [`Age`](super::Age): document order in files).
    pub fn virtual_services(&self) -> &[VirtualService] {
        &self.virtual_services
    }

    /// Istio `Telemetry` resources, oldest first (by [`Age`](super::Age)).
    pub fn telemetries(&self) -> &[Telemetry] {
        &self.telemetries
    }

    /// Istio `PeerAuthentication` resources, oldest first (by [`Age`](super::Age)).
    pub fn peer_authentications(&self) -> &[PeerAuthentication] {
        &self.peer_authentications
    }

    /// Istio `AuthorizationPolicy` resources, oldest first (by [`Age`](super::Age)).
    pub fn authorization_policies(&self) -> &[AuthorizationPolicy] {
        &self.authorization_policies
    }

    /// Things that are allowed but probably not what the user meant (skipped kinds, named
    /// target ports no selected pod has).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The cross-object warnings about DestinationRules and VirtualServices, each attributed to
    /// the object it is about (their text is also in [`warnings`](Self::warnings)).
    pub fn object_warnings(&self) -> &[ObjectWarning] {
        &self.object_warnings
    }

    /// Objects left out because of their problems (built with [`Acceptance::PerObject`]; always
    /// empty for files, where any problem refuses the snapshot), in origin order.
    pub fn rejected(&self) -> &[Rejected] {
        &self.rejected
    }

    pub fn service(&self, namespace: &str, name: &str) -> Option<&ServiceEntry> {
        self.services
            .get(&(namespace.to_string(), name.to_string()))
    }

    pub fn pod(&self, namespace: &str, name: &str) -> Option<&PodEntry> {
        self.pods.get(&(namespace.to_string(), name.to_string()))
    }

    /// The same snapshot with addresses from `assignments` filled in where the YAML gave none.
    /// Earlier assignments are replaced, not merged: the argument is the whole current set.
    pub fn with_assignments(&self, assignments: &Assignments) -> Snapshot {
        let mut next = self.clone();
        for (key, pod) in &mut next.pods {
            pod.ip = pod
                .declared_ip
                .or_else(|| assignments.pod_ips.get(key).copied());
        }
        for (key, svc) in &mut next.services {
            svc.vip = if svc.headless {
                None
            } else {
                svc.declared_cluster_ip
                    .or_else(|| assignments.service_vips.get(key).copied())
            };
        }
        next
    }

    /// Equal in everything but the generation: publishing it again would change nothing.
    pub fn same_content(&self, other: &Snapshot) -> bool {
        self.namespaces == other.namespaces
            && self.service_accounts == other.service_accounts
            && self.services == other.services
            && self.pods == other.pods
            && self.destination_rules == other.destination_rules
            && self.virtual_services == other.virtual_services
            && self.telemetries == other.telemetries
            && self.peer_authentications == other.peer_authentications
            && self.authorization_policies == other.authorization_policies
            && self.warnings == other.warnings
            && self.rejected == other.rejected
    }

    /// For tests that shape a snapshot the file source cannot (EndpointSlices).
    #[cfg(test)]
    pub(crate) fn services_mut(&mut self) -> &mut BTreeMap<(String, String), ServiceEntry> {
        &mut self.services
    }

    pub(crate) fn set_generation(&mut self, generation: u64) {
        self.generation = generation;
    }
}

// === building ===

/// Which objects share a name space for the duplicate check.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct ObjectKey {
    kind: String,
    namespace: String,
    name: String,
}

/// Remembers where each object was first defined.
#[derive(Default)]
struct Seen(BTreeMap<ObjectKey, Origin>);

impl Seen {
    /// Records the object; a second definition is a problem naming both places.
    fn first(&mut self, key: ObjectKey, origin: &Origin, what: &str) -> Result<(), Problem> {
        match self.0.get(&key) {
            Some(first) => Err(Problem::new(
                origin.clone(),
                format!(
                    "{what} in namespace {:?} is already defined at {first}",
                    key.namespace
                ),
            )),
            None => {
                self.0.insert(key, origin.clone());
                Ok(())
            }
        }
    }
}

fn key(kind: &str, namespace: &str, name: &str) -> ObjectKey {
    ObjectKey {
        kind: kind.to_string(),
        namespace: namespace.to_string(),
        name: name.to_string(),
    }
}

/// How [`build`] treats objects with problems.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acceptance {
    /// Any problem refuses the whole snapshot ([`RegistryError::Invalid`] lists them all): a
    /// directory of files is one change a person makes, fixed and saved again (local mode).
    AllOrNothing,
    /// Each object stands alone (the API source): a rejected object is left out and listed in
    /// [`Snapshot::rejected`], and the snapshot is built from the rest. Never an error. A pod
    /// whose service account is not listed is kept with a warning: the API server lets a pod
    /// outlive its account, and the pod still runs.
    PerObject,
}

/// An object left out of a snapshot built with [`Acceptance::PerObject`], and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub origin: Origin,
    /// Every reason found, in the order found.
    pub reasons: Vec<String>,
}

/// Builds a snapshot (generation 1, no assignments) from decoded objects. With
/// [`Acceptance::AllOrNothing`], any problem (the source's decode problems in `parsed.problems`
/// or the model's own) refuses the snapshot, every problem listed; with
/// [`Acceptance::PerObject`] the objects with problems are left out and listed in
/// [`Snapshot::rejected`].
pub fn build(parsed: Parsed, acceptance: Acceptance) -> Result<Snapshot, RegistryError> {
    let Parsed {
        docs,
        mut problems,
        mut warnings,
    } = parsed;
    let mut seen = Seen::default();
    let mut snap = Snapshot {
        generation: 1,
        ..Snapshot::default()
    };

    // Namespaces first: everything else refers to them, wherever it is written.
    snap.namespaces.insert(
        DEFAULT_NAMESPACE.to_string(),
        NamespaceEntry {
            name: DEFAULT_NAMESPACE.to_string(),
            labels: BTreeMap::new(),
            injection_enabled: false,
            origin: None,
            object: None,
        },
    );
    for Doc { origin, object, .. } in &docs {
        if let Object::Namespace(ns) = object {
            let what = format!("Namespace {:?}", ns.name);
            match seen.first(key("Namespace", "", &ns.name), origin, &what) {
                // The implicit `default` is replaced by a declared one.
                Ok(()) => {
                    snap.namespaces.insert(ns.name.clone(), (**ns).clone());
                }
                Err(p) => problems.push(p),
            }
        }
    }
    let namespace_known = |ns: &str, origin: &Origin, what: &str| -> Result<(), Problem> {
        if snap.namespaces.contains_key(ns) {
            Ok(())
        } else {
            let reason = match acceptance {
                Acceptance::AllOrNothing => format!(
                    "{what}: namespace {ns:?} is not declared (add a v1 Namespace document named {ns:?})"
                ),
                // Not listed (yet): the source publishes again when it is.
                Acceptance::PerObject => format!("{what}: namespace {ns:?} is not listed"),
            };
            Err(Problem::new(origin.clone(), reason))
        }
    };

    let mut service_accounts = BTreeMap::new();
    let mut services = BTreeMap::new();
    let mut pods: BTreeMap<(String, String), PodEntry> = BTreeMap::new();
    let mut rules = Vec::new();
    let mut virtual_services = Vec::new();
    let mut telemetries = Vec::new();
    let mut peer_authentications = Vec::new();
    let mut authorization_policies = Vec::new();
    for Doc { origin, object, .. } in docs {
        let result = match object {
            Object::Namespace(_) => Ok(()),
            Object::ServiceAccount(sa) => {
                let what = format!("ServiceAccount {:?}", sa.name);
                namespace_known(&sa.namespace, &origin, &what)
                    .and_then(|()| {
                        seen.first(
                            key("ServiceAccount", &sa.namespace, &sa.name),
                            &origin,
                            &what,
                        )
                    })
                    .map(|()| {
                        service_accounts.insert((sa.namespace.clone(), sa.name.clone()), *sa);
                    })
            }
            Object::Service(svc) => {
                let what = format!("Service {:?}", svc.name);
                namespace_known(&svc.namespace, &origin, &what)
                    .and_then(|()| {
                        seen.first(key("Service", &svc.namespace, &svc.name), &origin, &what)
                    })
                    .map(|()| {
                        services.insert((svc.namespace.clone(), svc.name.clone()), *svc);
                    })
            }
            Object::Pod(pod) => {
                let what = format!("Pod {:?}", pod.name);
                namespace_known(&pod.namespace, &origin, &what)
                    .and_then(|()| {
                        seen.first(key("Pod", &pod.namespace, &pod.name), &origin, &what)
                    })
                    .map(|()| {
                        pods.insert((pod.namespace.clone(), pod.name.clone()), *pod);
                    })
            }
            Object::Deployment(dep) => {
                let what = format!("Deployment {:?}", dep.name);
                namespace_known(&dep.namespace, &origin, &what)
                    .and_then(|()| {
                        seen.first(key("Deployment", &dep.namespace, &dep.name), &origin, &what)
                    })
                    .and_then(|()| {
                        // A generated pod may collide with a Pod written by hand (or with
                        // another Deployment's pods: `a` with 11 replicas and `a-1`).
                        for pod in expand(&dep, &origin) {
                            let what = format!(
                                "Pod {:?} (replica of Deployment {:?})",
                                pod.name, dep.name
                            );
                            seen.first(key("Pod", &pod.namespace, &pod.name), &origin, &what)?;
                            pods.insert((pod.namespace.clone(), pod.name.clone()), pod);
                        }
                        Ok(())
                    })
            }
            Object::DestinationRule(dr) => {
                let what = format!("DestinationRule {:?} ({})", dr.name, dr.group());
                let kind = format!("DestinationRule.{}", dr.group());
                namespace_known(&dr.namespace, &origin, &what)
                    .and_then(|()| seen.first(key(&kind, &dr.namespace, &dr.name), &origin, &what))
                    .map(|()| rules.push(*dr))
            }
            Object::VirtualService(vs, mesh) => {
                let what = format!("VirtualService {:?} ({})", vs.name, vs.group());
                let kind = format!("VirtualService.{}", vs.group());
                namespace_known(&vs.namespace, &origin, &what)
                    .and_then(|()| seen.first(key(&kind, &vs.namespace, &vs.name), &origin, &what))
                    // Gateway-only services are checked like the rest, then left out.
                    .map(|()| {
                        if mesh {
                            virtual_services.push(*vs)
                        }
                    })
            }
            Object::Telemetry(t) => {
                let what = format!("Telemetry {:?}", t.name);
                namespace_known(&t.namespace, &origin, &what)
                    .and_then(|()| {
                        seen.first(key("Telemetry", &t.namespace, &t.name), &origin, &what)
                    })
                    .map(|()| telemetries.push(*t))
            }
            Object::PeerAuthentication(p) => {
                let what = format!("PeerAuthentication {:?}", p.name);
                namespace_known(&p.namespace, &origin, &what)
                    .and_then(|()| {
                        let key = key("PeerAuthentication", &p.namespace, &p.name);
                        seen.first(key, &origin, &what)
                    })
                    .map(|()| peer_authentications.push(*p))
            }
            Object::AuthorizationPolicy(p) => {
                let what = format!("AuthorizationPolicy {:?}", p.name);
                namespace_known(&p.namespace, &origin, &what)
                    .and_then(|()| {
                        let key = key("AuthorizationPolicy", &p.namespace, &p.name);
                        seen.first(key, &origin, &what)
                    })
                    .map(|()| authorization_policies.push(*p))
            }
        };
        if let Err(p) = result {
            problems.push(p);
        }
    }

    // Service accounts are checked once all are known: a pod may come before its account.
    for pod in pods.values_mut() {
        let sa_declared = pod.service_account == DEFAULT_SERVICE_ACCOUNT
            || service_accounts.contains_key(&(pod.namespace.clone(), pod.service_account.clone()));
        if !sa_declared {
            let problem = Problem::new(
                pod.origin.clone(),
                format!(
                    "Pod {:?}: service account {:?} is not declared in namespace {:?} (add a v1 ServiceAccount document)",
                    pod.name, pod.service_account, pod.namespace
                ),
            );
            match acceptance {
                Acceptance::AllOrNothing => problems.push(problem),
                Acceptance::PerObject => warnings.push(problem.to_string()),
            }
        }
        pod.meshed = is_meshed(pod, snap.namespaces.get(&pod.namespace));
    }

    if !problems.is_empty() {
        problems.sort_by(|a, b| a.origin.cmp(&b.origin));
        match acceptance {
            Acceptance::AllOrNothing => return Err(RegistryError::Invalid { problems }),
            // Every check above left its object out when it failed; say which and why.
            Acceptance::PerObject => snap.rejected = rejected(problems),
        }
    }

    // Oldest first, whatever order the source listed them in (files already are; an API list
    // is not): "the oldest wins" reads position in these lists.
    rules.sort_by(|a, b| a.age.cmp(&b.age));
    virtual_services.sort_by(|a, b| a.age.cmp(&b.age));
    telemetries.sort_by(|a, b| a.age.cmp(&b.age));
    warnings.extend(telemetry_conflicts(&telemetries, &pods));
    peer_authentications.sort_by(|a, b| a.age.cmp(&b.age));
    authorization_policies.sort_by(|a, b| a.age.cmp(&b.age));
    warnings.extend(peer_authentication_conflicts(&peer_authentications, &pods));
    warnings.extend(dangling_named_ports(&services, &pods));
    let mut object_warnings = super::crosscheck::duplicate_subsets(&rules);
    object_warnings.extend(super::crosscheck::shared_hosts(&virtual_services));
    object_warnings.extend(super::crosscheck::undefined_subsets(
        &virtual_services,
        &rules,
    ));
    warnings.extend(object_warnings.iter().map(|w| w.message.clone()));
    snap.object_warnings = object_warnings;
    snap.virtual_services = virtual_services;
    snap.telemetries = telemetries;
    snap.peer_authentications = peer_authentications;
    snap.authorization_policies = authorization_policies;
    snap.service_accounts = service_accounts;
    snap.services = services;
    snap.pods = pods;
    snap.destination_rules = rules;
    snap.warnings = warnings;
    Ok(snap)
}

/// Problems grouped by object (a file's document at any line, or an API object), in origin order.
fn rejected(problems: Vec<Problem>) -> Vec<Rejected> {
    let mut by_object: BTreeMap<Origin, Rejected> = BTreeMap::new();
    for Problem { origin, reason } in problems {
        by_object
            .entry(origin.at_line(0))
            .or_insert_with(|| Rejected {
                origin,
                reasons: Vec::new(),
            })
            .reasons
            .push(reason);
    }
    by_object.into_values().collect()
}

/// The injection rule (see the module docs).
fn is_meshed(pod: &PodEntry, namespace: Option<&NamespaceEntry>) -> bool {
    match pod.origin {
        // A cluster's pod has a sidecar only if the injector gave it one when it was created;
        // labelling its namespace later does not.
        Origin::Object { .. } => {
            let (opt_out_key, opt_out_value) = INJECT_OPT_OUT;
            let opted_out = pod.labels.get(opt_out_key).map(String::as_str) == Some(opt_out_value)
                || pod.annotations.get(opt_out_key).map(String::as_str) == Some(opt_out_value);
            let host_network = pod
                .object
                .spec
                .as_ref()
                .and_then(|s| s.host_network)
                .unwrap_or(false);
            has_sidecar(pod) && !opted_out && !host_network
        }
        // Local mode runs a sidecar for every pod the injector would inject (or has injected):
        // the injector's own rule, so the same YAML is meshed the same way in both.
        Origin::File { .. } => {
            let no_labels = BTreeMap::new();
            let namespace = sinew_injector::Namespace {
                name: &pod.namespace,
                labels: Some(namespace.map_or(&no_labels, |ns| &ns.labels)),
            };
            matches!(
                sinew_injector::decide(&pod.object, namespace),
                sinew_injector::Decision::Inject
                    | sinew_injector::Decision::Skip(sinew_injector::Skip::AlreadyInjected)
            )
        }
    }
}

/// Whether the pod has the injector's sidecar container (a native sidecar among the init
/// containers, or an ordinary container).
fn has_sidecar(pod: &PodEntry) -> bool {
    pod.object.spec.as_ref().is_some_and(|spec| {
        spec.containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .any(|c| c.name == SIDECAR_CONTAINER)
    })
}

/// A Deployment's pods: `<name>-0` … `<name>-<replicas-1>`, each a copy of the template.
fn expand(dep: &DeploymentDoc, origin: &Origin) -> Vec<PodEntry> {
    (0..dep.replicas)
        .map(|i| {
            let name = format!("{}-{i}", dep.name);
            let mut metadata = dep.template_meta.clone();
            metadata.name = Some(name.clone());
            metadata.namespace = Some(dep.namespace.clone());
            let object = Pod {
                metadata,
                spec: Some(dep.template_spec.clone()),
                status: None,
            };
            PodEntry {
                namespace: dep.namespace.clone(),
                name,
                labels: dep.template_meta.labels.clone().unwrap_or_default(),
                annotations: dep.template_meta.annotations.clone().unwrap_or_default(),
                service_account: service_account_of(&dep.template_spec),
                declared_ip: None,
                ip: None,
                meshed: false,
                owner: Some(dep.name.clone()),
                origin: origin.clone(),
                object: std::sync::Arc::new(object),
            }
        })
        .collect()
}

/// Telemetries Istio calls invalid together: two without a selector in one namespace, or two
/// whose selectors pick the same pod. The oldest applies (the list is oldest first); the others
/// are named in a warning, once each.
fn telemetry_conflicts(
    telemetries: &[Telemetry],
    pods: &BTreeMap<(String, String), PodEntry>,
) -> Vec<String> {
    let mut out = Vec::new();
    let applied = telemetries.iter().filter(|t| !t.is_targeted());
    let mut namespace_wide: BTreeMap<&str, &Telemetry> = BTreeMap::new();
    for t in applied.clone().filter(|t| !t.has_selector()) {
        if let Some(first) = namespace_wide.get(t.namespace.as_str()) {
            out.push(format!(
                "{}: Telemetry {:?}: namespace {:?} already has Telemetry {:?} without a selector (at {}); the older one applies and this one is ignored",
                t.origin, t.name, t.namespace, first.name, first.origin
            ));
        } else {
            namespace_wide.insert(&t.namespace, t);
        }
    }
    // By namespace, oldest first: a pod is only compared with its own namespace's.
    let mut selecting: BTreeMap<&str, Vec<&Telemetry>> = BTreeMap::new();
    for t in applied.filter(|t| t.has_selector()) {
        selecting.entry(&t.namespace).or_default().push(t);
    }
    let mut shadowed = BTreeSet::new();
    for pod in pods.values() {
        let Some(candidates) = selecting.get(pod.namespace.as_str()) else {
            continue;
        };
        let mut matching = candidates.iter().filter(|t| t.selects(&pod.labels));
        let Some(first) = matching.next() else {
            continue;
        };
        for t in matching {
            if shadowed.insert((t.namespace.clone(), t.name.clone())) {
                out.push(format!(
                    "{}: Telemetry {:?}: selects pod {:?}, which the older Telemetry {:?} also selects; the older one applies to it",
                    t.origin, t.name, pod.name, first.name
                ));
            }
        }
    }
    out
}

/// PeerAuthentications of one scope that disagree about a pod: two without a selector in one
/// namespace, or two whose selectors pick the same pod. The oldest applies (Istio's rule; the
/// list is oldest first); the others are named in a warning, once each.
fn peer_authentication_conflicts(
    policies: &[PeerAuthentication],
    pods: &BTreeMap<(String, String), PodEntry>,
) -> Vec<String> {
    let mut out = Vec::new();
    let mut namespace_wide: BTreeMap<&str, &PeerAuthentication> = BTreeMap::new();
    for p in policies.iter().filter(|p| p.match_labels().is_none()) {
        match namespace_wide.get(p.namespace.as_str()) {
            Some(first) => out.push(format!(
                "{}: PeerAuthentication {:?}: namespace {:?} already has PeerAuthentication {:?} without a selector (at {}); the older one applies and this one is ignored",
                p.origin, p.name, p.namespace, first.name, first.origin
            )),
            None => {
                namespace_wide.insert(&p.namespace, p);
            }
        }
    }
    let mut selecting: BTreeMap<&str, Vec<&PeerAuthentication>> = BTreeMap::new();
    for p in policies.iter().filter(|p| p.match_labels().is_some()) {
        selecting.entry(&p.namespace).or_default().push(p);
    }
    let mut shadowed = BTreeSet::new();
    for pod in pods.values() {
        let Some(candidates) = selecting.get(pod.namespace.as_str()) else {
            continue;
        };
        let mut matching = candidates.iter().filter(|p| {
            p.match_labels()
                .is_some_and(|m| m.iter().all(|(k, v)| pod.labels.get(k) == Some(v)))
        });
        let Some(first) = matching.next() else {
            continue;
        };
        for p in matching {
            if shadowed.insert((p.namespace.clone(), p.name.clone())) {
                out.push(format!(
                    "{}: PeerAuthentication {:?}: selects pod {:?}, which the older PeerAuthentication {:?} also selects; the older one applies to it",
                    p.origin, p.name, pod.name, first.name
                ));
            }
        }
    }
    out
}

/// A named targetPort that a selected pod lacks leaves that pod out of the port's endpoints
/// (as in Kubernetes); say so, since it is almost always a typo.
fn dangling_named_ports(
    services: &BTreeMap<(String, String), ServiceEntry>,
    pods: &BTreeMap<(String, String), PodEntry>,
) -> Vec<String> {
    let mut out = BTreeSet::new();
    for svc in services
        .values()
        .filter(|s| s.endpoints == Endpoints::FromSelector)
    {
        for port in &svc.ports {
            let TargetPort::Name(target) = &port.target_port else {
                continue;
            };
            for pod in pods.values().filter(|p| svc.selects(p)) {
                if pod.container_port(target).is_none() {
                    out.insert(format!(
                        "{}: Service {:?} port {}: Pod {:?} has no container port named {target:?}; it is not an endpoint of that port",
                        svc.origin, svc.name, port.port, pod.name
                    ));
                }
            }
        }
    }
    out.into_iter().collect()
}

#[cfg(test)]
mod tests;
