//! The compiler: registry snapshots → versioned per-name resources that proxies subscribe to.
//!
//! Promises: an [`Index`] is immutable in what it answers; a resource's version is a digest of
//! its encoded content, so an unchanged service keeps its version across snapshots and is never
//! re-sent, and a changed one always gets a new version. Building an index is O(services); it
//! runs once per snapshot (the registry already debounces bursts). A change recompiles only what
//! it touches ([`Index::rebuild`]): a service port whose resource did not change keeps its value
//! (not encoded or digested again) and, while the rules are unchanged, the policy already resolved
//! for it; only the touched ones are encoded and resolved again.
//!
//! Traffic policy depends on who asks ([`ProxyContext`]: namespace and labels), so
//! [`Index::service_for`] resolves it ([`policy`]) on first use per (name, context) and memoises
//! the encoded result: proxies with the same inputs share one resource and one version, and a
//! service no rule touches is the shared base resource itself.

pub mod authorization;
pub mod peer_authentication;
pub mod policy;
pub mod security;
pub mod telemetry;

pub use self::policy::{ProxyContext, Rules};
pub use self::security::{PodSecurity, SecurityRules};
pub use self::telemetry::{MeshTelemetry, TelemetryRules};

use crate::registry::{CLUSTER_DOMAIN, Snapshot};
use prost::Message;
use sinew_proto::config::v1 as pb;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// The root namespace's default: rules there apply mesh-wide (Istio's is `istio-system`).
pub const DEFAULT_ROOT_NAMESPACE: &str = "sinew-system";

/// Resolved resources: by context (only the labels some rule reads) and name, and by version
/// so that equal content resolved for different contexts is one shared value.
#[derive(Debug, Default)]
struct Memo {
    by_context: HashMap<ProxyContext, HashMap<String, Arc<Versioned>>>,
    by_version: HashMap<String, Arc<Versioned>>,
}

// === impl Memo ===

impl Memo {
    /// The entries whose name `keep` accepts, for the next index.
    fn carried(&self, keep: impl Fn(&str) -> bool) -> Memo {
        let mut next = Memo::default();
        for (context, names) in &self.by_context {
            let kept: HashMap<String, Arc<Versioned>> = names
                .iter()
                .filter(|(name, _)| keep(name))
                .map(|(name, resolved)| (name.clone(), resolved.clone()))
                .collect();
            if kept.is_empty() {
                continue;
            }
            for resolved in kept.values() {
                next.by_version
                    .entry(resolved.version.clone())
                    .or_insert_with(|| resolved.clone());
            }
            next.by_context.insert(context.clone(), kept);
        }
        next
    }
}

/// A service resource with its content version.
#[derive(Debug, PartialEq)]
pub struct Versioned {
    pub version: String,
    pub service: pb::Service,
}

/// Every name a proxy may subscribe to, resolved.
#[derive(Debug, Default)]
pub struct Index {
    /// The registry generation this was built from.
    pub generation: u64,
    /// Without policy (what a proxy no rule applies to gets).
    by_name: HashMap<String, Arc<Versioned>>,
    /// Which Service port each name is: (namespace, fqdn, port).
    keys: HashMap<String, (String, String, u16)>,
    rules: Rules,
    /// Per-proxy resources already resolved.
    memo: Mutex<Memo>,
    /// Each pod's own ports as the Services selecting it declare them, by (namespace, pod).
    inbound: HashMap<(String, String), Vec<pb::InboundPort>>,
    /// Pods' labels, by (namespace, pod): what policy sees of an authenticated proxy.
    pod_labels: HashMap<(String, String), BTreeMap<String, String>>,
    /// The snapshot's warnings (for status).
    warnings: Vec<String>,
    /// The Telemetry resources and mesh defaults, for proxies whose pod the registry lacks.
    telemetry_rules: TelemetryRules,
    /// Each meshed pod's telemetry settings, by (namespace, pod); a value equal to the previous
    /// index's is that very `Arc`, so streams tell "unchanged" by pointer.
    telemetry: HashMap<(String, String), Arc<pb::Telemetry>>,
    /// The PeerAuthentications and AuthorizationPolicies, for proxies whose pod the registry
    /// lacks.
    security_rules: SecurityRules,
    /// Each meshed pod's security settings, by (namespace, pod); like `telemetry`, an unchanged
    /// value is the previous index's `Arc`.
    security: HashMap<(String, String), Arc<PodSecurity>>,
}

// === impl Index ===

impl Index {
    /// An index with the default root namespace ([`DEFAULT_ROOT_NAMESPACE`]).
    pub fn build(snapshot: &Snapshot, trust_domain: &str) -> Self {
        Self::build_with_root(snapshot, trust_domain, DEFAULT_ROOT_NAMESPACE)
    }

    /// An index whose mesh-wide rules live in `root_namespace`.
    pub fn build_with_root(snapshot: &Snapshot, trust_domain: &str, root_namespace: &str) -> Self {
        Self::build_with(
            snapshot,
            trust_domain,
            root_namespace,
            &MeshTelemetry::default(),
        )
    }

    /// An index whose mesh-wide rules live in `root_namespace`, with the mesh's telemetry
    /// defaults.
    pub fn build_with(
        snapshot: &Snapshot,
        trust_domain: &str,
        root_namespace: &str,
        mesh: &MeshTelemetry,
    ) -> Self {
        Self::compile(snapshot, trust_domain, root_namespace, mesh, None)
    }

    /// The index after this one for `snapshot`: what the change did not touch is taken from
    /// `self` as it is (the same `Arc`s, so nothing re-encoded or resolved again).
    pub fn rebuild(
        &self,
        snapshot: &Snapshot,
        trust_domain: &str,
        root_namespace: &str,
        mesh: &MeshTelemetry,
    ) -> Self {
        Self::compile(snapshot, trust_domain, root_namespace, mesh, Some(self))
    }

    fn compile(
        snapshot: &Snapshot,
        trust_domain: &str,
        root_namespace: &str,
        mesh: &MeshTelemetry,
        previous: Option<&Index>,
    ) -> Self {
        let rules = Rules::new(snapshot, root_namespace);
        let telemetry_rules = TelemetryRules::new(snapshot, root_namespace, mesh);
        let security_rules = SecurityRules::new(snapshot, root_namespace);
        // The Services each pod serves, for its telemetry (`destination_service`).
        let mut pod_services: HashMap<(String, String), Vec<String>> = HashMap::new();
        let mut by_name = HashMap::new();
        let mut keys = HashMap::new();
        let mut declared: HashMap<(String, String), BTreeMap<u32, i32>> = HashMap::new();
        let mut pools: HashMap<(String, String), BTreeMap<u32, pb::ConnectionPool>> =
            HashMap::new();
        let pod_labels: HashMap<(String, String), BTreeMap<String, String>> = snapshot
            .pods()
            .iter()
            .map(|(k, p)| (k.clone(), p.labels.clone()))
            .collect();
        // A pod whose PeerAuthentication says DISABLE on a port is reached there in plaintext.
        let plaintext = |pod: &crate::registry::PodEntry, port: u16| {
            security_rules
                .peer
                .plaintext(&pod.namespace, &pod.labels, port)
        };
        for r in snapshot.service_resources_with(trust_domain, &plaintext) {
            let fqdn = format!("{}.{}.{CLUSTER_DOMAIN}", r.name, r.namespace);
            for (pod, port) in &r.pod_ports {
                // Inbound: the pool of the rule that applies to this Service, as the pod sees it.
                if !rules.is_empty() {
                    let key = (r.namespace.clone(), pod.clone());
                    let ctx = ProxyContext {
                        namespace: r.namespace.clone(),
                        labels: pod_labels.get(&key).cloned().unwrap_or_default(),
                    };
                    if let Some(pool) = rules.inbound_pool(&ctx, &r.namespace, &fqdn, r.port) {
                        pools
                            .entry(key)
                            .or_default()
                            .entry(u32::from(*port))
                            .or_insert(pool);
                    }
                }
            }
            for (pod, _) in &r.pod_ports {
                let services = pod_services
                    .entry((r.namespace.clone(), pod.clone()))
                    .or_default();
                if !services.contains(&fqdn) {
                    services.push(fqdn.clone());
                }
            }
            for (pod, port) in r.pod_ports {
                let ports = declared.entry((r.namespace.clone(), pod)).or_default();
                // A declaration beats silence; two Services declaring one pod port differently
                // cancel out and it is sniffed.
                let detect = pb::Protocol::Detect as i32;
                let declared = r.service.protocol;
                ports
                    .entry(u32::from(port))
                    .and_modify(|p| match (*p == detect, declared == detect) {
                        (true, _) => *p = declared,
                        (false, false) if *p != declared => *p = detect,
                        _ => {}
                    })
                    .or_insert(declared);
            }
            let mut service = r.service;
            service.port = u32::from(r.port);
            // Comparing is much cheaper than encoding and digesting, and keeps the memo valid.
            let unchanged = previous
                .and_then(|p| p.by_name.get(r.names.first()?))
                .filter(|v| v.service == service);
            let versioned = match unchanged {
                Some(v) => v.clone(),
                None => Arc::new(Versioned {
                    version: version_of(&service.encode_to_vec()),
                    service,
                }),
            };
            for name in r.names {
                keys.insert(name.clone(), (r.namespace.clone(), fqdn.clone(), r.port));
                by_name.insert(name, versioned.clone());
            }
        }
        let inbound = declared
            .into_iter()
            .map(|(pod, ports)| {
                let pod_pools = pools.remove(&pod).unwrap_or_default();
                let ports = ports
                    .into_iter()
                    .map(|(port, protocol)| pb::InboundPort {
                        port,
                        protocol,
                        connection_pool: pod_pools.get(&port).cloned(),
                    })
                    // Ports left to detection with no limits say nothing.
                    .filter(|p| {
                        p.protocol != pb::Protocol::Detect as i32 || p.connection_pool.is_some()
                    })
                    .collect();
                (pod, ports)
            })
            .collect();
        let memo = match previous {
            Some(p) if p.rules == rules => p.lock_memo().carried(|name| {
                // Resolution is a pure function of the rules, the base resource and its key.
                let same_base = match (by_name.get(name), p.by_name.get(name)) {
                    (Some(now), Some(before)) => Arc::ptr_eq(now, before),
                    _ => false,
                };
                same_base && keys.get(name) == p.keys.get(name)
            }),
            _ => Memo::default(),
        };
        let telemetry = pod_telemetry(snapshot, &telemetry_rules, pod_services, previous);
        let security = pod_security(snapshot, &security_rules, previous);
        let warnings = security_rules.with_registry_warnings(snapshot);
        Self {
            generation: snapshot.generation(),
            by_name,
            keys,
            rules,
            memo: Mutex::new(memo),
            inbound,
            pod_labels,
            warnings,
            telemetry_rules,
            telemetry,
            security_rules,
            security,
        }
    }

    /// The telemetry settings of the proxy of pod `namespace/pod`: precomputed when the registry
    /// knows the pod as meshed; otherwise resolved from its namespace and the labels its hello
    /// declared, without a workload (the proxy derives its own).
    pub fn telemetry(
        &self,
        namespace: &str,
        pod: &str,
        hello_labels: &BTreeMap<String, String>,
    ) -> Arc<pb::Telemetry> {
        match self.telemetry.get(&(namespace.to_owned(), pod.to_owned())) {
            Some(known) => known.clone(),
            None => {
                Arc::new(
                    self.telemetry_rules
                        .telemetry(namespace, hello_labels, None, Vec::new()),
                )
            }
        }
    }

    /// The security settings of the proxy of pod `namespace/pod`: precomputed when the registry
    /// knows the pod as meshed; otherwise resolved from its namespace and the labels its hello
    /// declared.
    pub fn security(
        &self,
        namespace: &str,
        pod: &str,
        hello_labels: &BTreeMap<String, String>,
    ) -> Arc<PodSecurity> {
        match self.security.get(&(namespace.to_owned(), pod.to_owned())) {
            Some(known) => known.clone(),
            None => Arc::new(self.security_rules.resolve(namespace, hello_labels)),
        }
    }

    /// The resource for `name` as the proxy described by `proxy` must see it: the service with
    /// the DestinationRule and VirtualService that apply to that proxy resolved in. Memoised:
    /// labels no rule reads are not told apart, and every context that resolves to the same
    /// content gets the same `Arc` (so memory grows with distinct policies, not with proxies).
    pub fn service_for(&self, name: &str, proxy: &ProxyContext) -> Option<Arc<Versioned>> {
        let base = self.by_name.get(name)?;
        if self.rules.is_empty() {
            return Some(base.clone());
        }
        let (namespace, fqdn, port) = self.keys.get(name)?;
        let proxy = self.rules.relevant(proxy);
        if let Some(hit) = self
            .lock_memo()
            .by_context
            .get(&proxy)
            .and_then(|names| names.get(name))
        {
            return Some(hit.clone());
        }
        // Resolved outside the lock: concurrent first uses compute the same bytes.
        let mut service = base.service.clone();
        self.rules
            .resolve(&proxy, namespace, fqdn, *port, &mut service);
        let resolved = if service == base.service {
            base.clone()
        } else {
            Arc::new(Versioned {
                version: version_of(&service.encode_to_vec()),
                service,
            })
        };
        let mut memo = self.lock_memo();
        let shared = memo
            .by_version
            .entry(resolved.version.clone())
            .or_insert(resolved)
            .clone();
        memo.by_context
            .entry(proxy)
            .or_default()
            .insert(name.to_string(), shared.clone());
        Some(shared)
    }

    /// A pod's labels as the registry knows them.
    pub fn pod_labels(&self, namespace: &str, pod: &str) -> Option<&BTreeMap<String, String>> {
        self.pod_labels.get(&(namespace.to_owned(), pod.to_owned()))
    }

    /// The registry's warnings for this snapshot (undefined subsets, skipped kinds, …).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    fn lock_memo(&self) -> std::sync::MutexGuard<'_, Memo> {
        self.memo.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The declared protocols of a pod's own ports and the connection pools DestinationRules set
    /// on them, by port (ports left to detection without a pool omitted).
    pub fn inbound_ports(&self, namespace: &str, pod: &str) -> &[pb::InboundPort] {
        self.inbound
            .get(&(namespace.to_owned(), pod.to_owned()))
            .map_or(&[], Vec::as_slice)
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Versioned>> {
        self.by_name.get(name)
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

/// Every meshed pod's telemetry settings; an unchanged one is the previous index's `Arc`.
fn pod_telemetry(
    snapshot: &Snapshot,
    rules: &TelemetryRules,
    mut pod_services: HashMap<(String, String), Vec<String>>,
    previous: Option<&Index>,
) -> HashMap<(String, String), Arc<pb::Telemetry>> {
    snapshot
        .pods()
        .iter()
        .filter(|(_, pod)| pod.meshed)
        .map(|(key, pod)| {
            let mut services = pod_services.remove(key).unwrap_or_default();
            services.sort();
            let now = rules.telemetry(
                &pod.namespace,
                &pod.labels,
                Some(crate::registry::workload::workload(pod)),
                services,
            );
            let kept = previous
                .and_then(|p| p.telemetry.get(key))
                .filter(|before| ***before == now)
                .cloned();
            (key.clone(), kept.unwrap_or_else(|| Arc::new(now)))
        })
        .collect()
}

/// Every meshed pod's security settings; an unchanged one is the previous index's `Arc`.
fn pod_security(
    snapshot: &Snapshot,
    rules: &SecurityRules,
    previous: Option<&Index>,
) -> HashMap<(String, String), Arc<PodSecurity>> {
    snapshot
        .pods()
        .iter()
        .filter(|(_, pod)| pod.meshed)
        .map(|(key, pod)| {
            let now = rules.resolve(&pod.namespace, &pod.labels);
            let kept = previous
                .and_then(|p| p.security.get(key))
                .filter(|before| ***before == now)
                .cloned();
            (key.clone(), kept.unwrap_or_else(|| Arc::new(now)))
        })
        .collect()
}

/// A short content digest (hex of the first 8 bytes of SHA-256).
pub fn version_of(bytes: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, bytes);
    d.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// Rebuilds the index whenever the registry publishes a snapshot.
pub fn spawn(
    mut snapshots: watch::Receiver<Arc<Snapshot>>,
    trust_domain: String,
    root_namespace: String,
    mesh: MeshTelemetry,
) -> watch::Receiver<Arc<Index>> {
    let first = Index::build_with(
        &snapshots.borrow_and_update(),
        &trust_domain,
        &root_namespace,
        &mesh,
    );
    let (tx, rx) = watch::channel(Arc::new(first));
    tokio::spawn(async move {
        while snapshots.changed().await.is_ok() {
            let snapshot = snapshots.borrow_and_update().clone();
            let previous = tx.borrow().clone();
            let index = previous.rebuild(&snapshot, &trust_domain, &root_namespace, &mesh);
            drop(previous);
            tracing::debug!(
                generation = index.generation,
                names = index.len(),
                "compiled registry snapshot"
            );
            if tx.send(Arc::new(index)).is_err() {
                return;
            }
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  selector: {app: web}\n  clusterIP: 10.0.0.1\n  ports: [{name: http, port: 80}]\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: web-0, labels: {app: web, a: '1', b: '2', c: '3', d: '4'}}\nspec: {containers: [{name: app, image: x}]}\nstatus: {podIP: 10.1.0.1}\n";

    #[test]
    fn the_same_registry_compiles_to_the_same_versions() {
        // Found by the scale simulation: labels encoded in HashMap order gave unchanged services
        // new versions, so every change was re-sent to every proxy.
        let versions = |_: usize| {
            let snapshot = Snapshot::from_yaml("web.yaml", YAML).unwrap();
            let index = Index::build(&snapshot, "cluster.local");
            assert_eq!(index.len(), 2, "vip:port and host:port");
            index.get("10.0.0.1:80").unwrap().version.clone()
        };
        let first = versions(0);
        for i in 1..20 {
            assert_eq!(versions(i), first);
        }
    }

    /// Two services with a rule each; `web_ip` is web-0's address and `max` db's pool size.
    fn two_services(web_ip: &str, max: u32) -> Snapshot {
        let mut yaml = String::new();
        for (name, vip, ip) in [("web", "10.0.0.1", web_ip), ("db", "10.0.0.2", "10.1.0.9")] {
            let limit = if name == "db" { max } else { 5 };
            yaml.push_str(&format!(
                "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  selector: {{app: {name}}}\n  clusterIP: {vip}\n  ports: [{{name: http, port: 80}}]\n---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {name}-0, labels: {{app: {name}}}}}\nspec: {{containers: [{{name: app, image: x}}]}}\nstatus: {{podIP: {ip}}}\n---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: {name}}}\nspec:\n  host: {name}\n  trafficPolicy: {{connectionPool: {{tcp: {{maxConnections: {limit}}}}}}}\n"
            ));
        }
        Snapshot::from_yaml("mesh.yaml", &yaml).unwrap()
    }

    #[test]
    fn a_change_recompiles_only_the_service_it_touches() {
        let proxy = ProxyContext {
            namespace: "default".into(),
            labels: BTreeMap::new(),
        };
        let first = Index::build(&two_services("10.1.0.1", 7), "cluster.local");
        let web_before = first.service_for("10.0.0.1:80", &proxy).unwrap();
        let db_before = first.service_for("10.0.0.2:80", &proxy).unwrap();

        // web-0 moves: only web's resource is new; db's is the very same value, policy and all.
        let next = first.rebuild(
            &two_services("10.1.0.2", 7),
            "cluster.local",
            DEFAULT_ROOT_NAMESPACE,
            &MeshTelemetry::default(),
        );
        let web_after = next.service_for("10.0.0.1:80", &proxy).unwrap();
        let db_after = next.service_for("10.0.0.2:80", &proxy).unwrap();
        assert!(Arc::ptr_eq(
            first.get("10.0.0.2:80").unwrap(),
            next.get("10.0.0.2:80").unwrap()
        ));
        assert!(
            Arc::ptr_eq(&db_before, &db_after),
            "db's resolved policy is kept"
        );
        assert_ne!(web_before.version, web_after.version);
        let endpoint = &web_after.service.endpoints[0];
        assert_eq!(endpoint.address, "10.1.0.2:80");

        // What a rebuild produces is what a build from scratch produces.
        let fresh = Index::build(&two_services("10.1.0.2", 7), "cluster.local");
        for name in ["10.0.0.1:80", "10.0.0.2:80"] {
            let (rebuilt, scratch) = (
                next.service_for(name, &proxy).unwrap(),
                fresh.service_for(name, &proxy).unwrap(),
            );
            assert_eq!(*rebuilt, *scratch, "{name}");
        }
    }

    #[test]
    fn a_rule_change_resolves_every_service_again() {
        let proxy = ProxyContext {
            namespace: "default".into(),
            labels: BTreeMap::new(),
        };
        let first = Index::build(&two_services("10.1.0.1", 7), "cluster.local");
        let web_before = first.service_for("10.0.0.1:80", &proxy).unwrap();
        let next = first.rebuild(
            &two_services("10.1.0.1", 8),
            "cluster.local",
            DEFAULT_ROOT_NAMESPACE,
            &MeshTelemetry::default(),
        );
        // The base resources are unchanged, but resolved policy is not carried over a rule change.
        assert!(Arc::ptr_eq(
            first.get("10.0.0.1:80").unwrap(),
            next.get("10.0.0.1:80").unwrap()
        ));
        let web_after = next.service_for("10.0.0.1:80", &proxy).unwrap();
        assert!(!Arc::ptr_eq(&web_before, &web_after), "resolved again");
        assert_eq!(web_before.version, web_after.version, "to the same content");
        let pool = |v: &Versioned| {
            let policy = v.service.traffic_policy.as_ref()?;
            policy.connection_pool.as_ref().map(|p| p.max_connections)
        };
        let db = next.service_for("10.0.0.2:80", &proxy).unwrap();
        assert_eq!(pool(&db), Some(8));
    }

    #[test]
    fn a_pods_telemetry_is_kept_as_the_same_value_until_something_it_reads_changes() {
        let mesh = MeshTelemetry::default();
        let snapshot = |extra: &str| {
            let yaml = format!(
                "apiVersion: v1\nkind: Namespace\nmetadata: {{name: default, labels: {{sinew-injection: enabled}}}}\n---\n{YAML}{extra}"
            );
            // The namespace injects, so web-0 is meshed and has a proxy to tell.
            Snapshot::from_yaml("web.yaml", &yaml).unwrap()
        };
        let no_labels = BTreeMap::new();
        let first = Index::build_with(
            &snapshot(""),
            "cluster.local",
            DEFAULT_ROOT_NAMESPACE,
            &mesh,
        );
        let before = first.telemetry("default", "web-0", &no_labels);
        let workload = before.workload.as_ref().expect("a known pod's workload");
        assert_eq!(
            (workload.name.as_str(), workload.app.as_str()),
            ("web-0", "web")
        );
        assert_eq!(before.services, ["web.default.svc.cluster.local"]);

        // Another service appears: web-0's telemetry is the very same value.
        let other = "---\napiVersion: v1\nkind: Service\nmetadata: {name: db}\nspec:\n  selector: {app: db}\n  clusterIP: 10.0.0.9\n  ports: [{name: tcp, port: 5432}]\n";
        let next = first.rebuild(
            &snapshot(other),
            "cluster.local",
            DEFAULT_ROOT_NAMESPACE,
            &mesh,
        );
        assert!(Arc::ptr_eq(
            &before,
            &next.telemetry("default", "web-0", &no_labels)
        ));

        // A Telemetry for its namespace: a new value, with the sampling.
        let telemetry = "---\napiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: t}\nspec: {tracing: [{randomSamplingPercentage: 5}]}\n";
        let last = next.rebuild(
            &snapshot(&format!("{other}{telemetry}")),
            "cluster.local",
            DEFAULT_ROOT_NAMESPACE,
            &mesh,
        );
        let after = last.telemetry("default", "web-0", &no_labels);
        assert!(!Arc::ptr_eq(&before, &after));
        assert_eq!(
            after
                .tracing
                .as_ref()
                .and_then(|t| t.random_sampling_percentage),
            Some(5.0)
        );
        // A pod the registry does not know: its namespace's settings, no workload.
        let unknown = last.telemetry("default", "ghost-0", &no_labels);
        assert_eq!(unknown.workload, None);
        assert_eq!(
            unknown
                .tracing
                .as_ref()
                .and_then(|t| t.random_sampling_percentage),
            Some(5.0)
        );
    }

    #[test]
    fn a_pods_own_ports_carry_the_protocol_its_services_declare() {
        let yaml = "\
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  clusterIP: 10.0.0.1
  ports:
  - {name: http-web, port: 80, targetPort: 8080}
  - {name: db, port: 5000, targetPort: 5000, appProtocol: tcp}
  - {name: metrics, port: 9090, targetPort: metrics}
  - {name: other, port: 7000}
---
apiVersion: v1
kind: Service
metadata: {name: web-grpc}
spec:
  selector: {app: web}
  clusterIP: 10.0.0.2
  ports:
  - {name: grpc, port: 80, targetPort: 8080}
  - {name: http-metrics, port: 9090, targetPort: 9191}
---
apiVersion: v1
kind: Pod
metadata: {name: web-0, labels: {app: web}}
spec: {containers: [{name: app, image: x, ports: [{name: metrics, containerPort: 9191}]}]}
status: {podIP: 10.1.0.1}
";
        let snapshot = Snapshot::from_yaml("web.yaml", yaml).unwrap();
        let index = Index::build(&snapshot, "cluster.local");
        let ports: Vec<(u32, pb::Protocol)> = index
            .inbound_ports("default", "web-0")
            .iter()
            .map(|p| (p.port, pb::Protocol::try_from(p.protocol).unwrap()))
            .collect();
        // 8080: http-web and grpc disagree, so it is sniffed (left out); 9191: declared HTTP by
        // one Service and not by the other; 7000: nothing declared.
        assert_eq!(
            ports,
            [(5000, pb::Protocol::Tcp), (9191, pb::Protocol::Http1)]
        );
        assert!(index.inbound_ports("default", "web-1").is_empty());
    }

    /// A meshed `web` (ports 80 → 8080 and 90 → 9090) and `db` in `default`, plus `extra`.
    fn meshed(extra: &str) -> Snapshot {
        let yaml = format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: default, labels: {{sinew-injection: enabled}}}}\n---\napiVersion: v1\nkind: Service\nmetadata: {{name: web}}\nspec:\n  selector: {{app: web}}\n  clusterIP: 10.0.0.1\n  ports: [{{name: http, port: 80, targetPort: 8080}}, {{name: tcp, port: 90, targetPort: 9090}}]\n---\napiVersion: v1\nkind: Pod\nmetadata: {{name: web-0, labels: {{app: web}}}}\nspec: {{containers: [{{name: app, image: x}}]}}\nstatus: {{podIP: 10.1.0.1}}\n---\napiVersion: v1\nkind: Service\nmetadata: {{name: db}}\nspec:\n  selector: {{app: db}}\n  clusterIP: 10.0.0.2\n  ports: [{{name: tcp, port: 5432}}]\n---\napiVersion: v1\nkind: Pod\nmetadata: {{name: db-0, labels: {{app: db}}}}\nspec: {{containers: [{{name: app, image: x}}]}}\nstatus: {{podIP: 10.1.0.2}}\n{extra}"
        );
        Snapshot::from_yaml("mesh.yaml", &yaml).unwrap_or_else(|e| panic!("{e}"))
    }

    const WEB_8080_DISABLED: &str = "---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: web}\nspec:\n  selector: {matchLabels: {app: web}}\n  mtls: {mode: STRICT}\n  portLevelMtls: {8080: {mode: DISABLE}}\n";

    #[test]
    fn an_endpoint_is_plaintext_only_on_the_ports_its_peer_authentication_disables() {
        let index = Index::build(&meshed(WEB_8080_DISABLED), "cluster.local");
        let endpoint = |name: &str| index.get(name).unwrap().service.endpoints[0].clone();
        let http = endpoint("10.0.0.1:80");
        assert_eq!(http.address, "10.1.0.1:8080");
        assert_eq!((http.identity.as_str(), http.mesh_port), ("", 0));
        let tcp = endpoint("10.0.0.1:90");
        assert_eq!(tcp.identity, "spiffe://cluster.local/ns/default/sa/default");
        assert_eq!(tcp.mesh_port, u32::from(crate::registry::MESH_INBOUND_PORT));
        let db = endpoint("10.0.0.2:5432");
        assert_eq!(db.identity, "spiffe://cluster.local/ns/default/sa/default");

        // STRICT and PERMISSIVE keep the identity: clients always use mTLS to meshed pods.
        let strict = Index::build(
            &meshed(
                "---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: all}\nspec: {mtls: {mode: STRICT}}\n",
            ),
            "cluster.local",
        );
        assert!(
            !strict.get("10.0.0.1:80").unwrap().service.endpoints[0]
                .identity
                .is_empty()
        );
        // A namespace-wide DISABLE: every endpoint of the namespace is plaintext.
        let disabled = Index::build(
            &meshed(
                "---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: all}\nspec: {mtls: {mode: DISABLE}}\n",
            ),
            "cluster.local",
        );
        for name in ["10.0.0.1:80", "10.0.0.1:90", "10.0.0.2:5432"] {
            assert_eq!(
                disabled.get(name).unwrap().service.endpoints[0].identity,
                "",
                "{name}"
            );
        }
    }

    #[test]
    fn a_peer_authentication_change_gives_the_affected_services_new_versions_only() {
        let first = Index::build(&meshed(""), "cluster.local");
        let next = first.rebuild(
            &meshed(WEB_8080_DISABLED),
            "cluster.local",
            DEFAULT_ROOT_NAMESPACE,
            &MeshTelemetry::default(),
        );
        let version = |index: &Index, name: &str| index.get(name).unwrap().version.clone();
        assert_ne!(
            version(&first, "10.0.0.1:80"),
            version(&next, "10.0.0.1:80")
        );
        assert_ne!(
            version(&first, "web.default.svc.cluster.local:80"),
            version(&next, "web.default.svc.cluster.local:80")
        );
        assert_eq!(
            version(&first, "10.0.0.1:90"),
            version(&next, "10.0.0.1:90")
        );
        assert!(Arc::ptr_eq(
            first.get("10.0.0.2:5432").unwrap(),
            next.get("10.0.0.2:5432").unwrap()
        ));
        // What a proxy resolves with rules in force changes too (the memo is not carried).
        let proxy = ProxyContext {
            namespace: "default".into(),
            labels: BTreeMap::new(),
        };
        assert_eq!(
            next.service_for("10.0.0.1:80", &proxy)
                .unwrap()
                .service
                .endpoints[0]
                .identity,
            ""
        );
        // Back to no policy: the old version again.
        let last = next.rebuild(
            &meshed(""),
            "cluster.local",
            DEFAULT_ROOT_NAMESPACE,
            &MeshTelemetry::default(),
        );
        assert_eq!(
            version(&first, "10.0.0.1:80"),
            version(&last, "10.0.0.1:80")
        );
    }

    #[test]
    fn a_pods_security_settings_are_resolved_once_and_shared_until_they_change() {
        let no_labels = BTreeMap::new();
        let first = Index::build(&meshed(""), "cluster.local");
        let before = first.security("default", "web-0", &no_labels);
        assert_eq!(*before, PodSecurity::default(), "permissive, no policies");

        let deny = "---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: deny-db}\nspec:\n  selector: {matchLabels: {app: db}}\n  action: DENY\n  rules: [{}]\n";
        let next = first.rebuild(
            &meshed(&format!("{WEB_8080_DISABLED}{deny}")),
            "cluster.local",
            DEFAULT_ROOT_NAMESPACE,
            &MeshTelemetry::default(),
        );
        let web = next.security("default", "web-0", &no_labels);
        assert_eq!(web.inbound_mode, pb::InboundMode::Strict);
        assert_eq!(
            web.port_inbound_modes,
            BTreeMap::from([(8080, pb::InboundMode::Disable as i32)])
        );
        assert!(web.authorization.policies.is_empty());
        let db = next.security("default", "db-0", &no_labels);
        assert_eq!(db.authorization.policies[0].name, "default/deny-db");
        assert_eq!(db.inbound_mode, pb::InboundMode::Permissive);

        // An unrelated change keeps the very same values.
        let last = next.rebuild(
            &meshed(&format!("{WEB_8080_DISABLED}{deny}---\napiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: extra}}\n")),
            "cluster.local",
            DEFAULT_ROOT_NAMESPACE,
            &MeshTelemetry::default(),
        );
        assert!(Arc::ptr_eq(
            &web,
            &last.security("default", "web-0", &no_labels)
        ));
        // A pod the registry does not know: resolved from its hello's labels.
        let ghost = last.security(
            "default",
            "ghost-0",
            &BTreeMap::from([("app".to_string(), "db".to_string())]),
        );
        assert_eq!(ghost.authorization.policies.len(), 1);
    }
}
