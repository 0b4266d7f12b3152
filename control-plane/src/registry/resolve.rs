//! From the model to the proxy's config: one `sinew.config.v1.Service` per Service port, with the
//! addresses clients dial, the protocol, and the selected pods as endpoints.

use std::collections::HashMap;
use std::net::SocketAddr;

use sinew_proto::config::v1::{Endpoint, Service};

use super::entry::{
    EndpointEntry, Endpoints, MESH_INBOUND_PORT, PodEntry, ServiceEntry, ServicePortEntry,
    TargetPort,
};
use super::model::Snapshot;

/// One Service port as the proxy sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceResource {
    pub namespace: String,
    pub name: String,
    pub port: u16,
    /// The names a proxy may subscribe by: `<vip>:<port>` (when a VIP is known) and
    /// `<name>.<namespace>.svc.cluster.local:<port>`.
    pub names: Vec<String>,
    pub service: Service,
    /// The pods behind the endpoints and the port each one serves this on: (pod, target port).
    pub pod_ports: Vec<(String, u16)>,
}

/// `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`.
pub fn spiffe_identity(trust_domain: &str, namespace: &str, service_account: &str) -> String {
    format!("spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}")
}

// === impl Snapshot ===

impl Snapshot {
    /// Every TCP Service port as a proxy resource, sorted by namespace, name and port. UDP and
    /// SCTP ports are left out: the mesh only intercepts TCP.
    ///
    /// A Service's endpoints come from its EndpointSlices when it has them (see
    /// [`Endpoints::Slices`]: Kubernetes' ready/serving/terminating rules), else from its selector: the pods of the
    /// Service's namespace that its selector matches and that have an address, at
    /// `<podIP>:<targetPort>` (a named target port is looked up in the pod's containers; a pod
    /// without it is no endpoint of that port). Meshed pods carry their SPIFFE identity and the
    /// mesh port 15006; others have neither, so clients reach them in plaintext. Endpoints are
    /// sorted by address.
    pub fn service_resources(&self, trust_domain: &str) -> Vec<ServiceResource> {
        self.service_resources_with(trust_domain, &|_, _| false)
    }

    /// [`service_resources`](Self::service_resources), where a meshed pod for which
    /// `plaintext(pod, target_port)` holds is an endpoint without identity and mesh port, like
    /// an unmeshed one: its PeerAuthentication says DISABLE there, so clients send plaintext
    /// (Istio's auto-mTLS).
    pub fn service_resources_with(
        &self,
        trust_domain: &str,
        plaintext: &dyn Fn(&PodEntry, u16) -> bool,
    ) -> Vec<ServiceResource> {
        // Candidates by (namespace, label, value): a service only looks at pods carrying its
        // first selector label, instead of every pod (services × pods dominated compiling a
        // 1,000-service registry).
        let mut by_label: HashMap<(&str, &str, &str), Vec<&PodEntry>> = HashMap::new();
        for pod in self.pods().values().filter(|p| p.ip.is_some()) {
            for (k, v) in &pod.labels {
                by_label
                    .entry((pod.namespace.as_str(), k.as_str(), v.as_str()))
                    .or_default()
                    .push(pod);
            }
        }
        let mut out = Vec::new();
        for svc in self.services().values() {
            let mut ports: Vec<&ServicePortEntry> =
                svc.ports.iter().filter(|p| p.transport == "TCP").collect();
            ports.sort_by_key(|p| p.port);
            match &svc.endpoints {
                Endpoints::FromSelector => {
                    let first = svc.selector.as_ref().and_then(|s| s.iter().next());
                    let selected: Vec<&PodEntry> = match first {
                        Some((k, v)) => by_label
                            .get(&(svc.namespace.as_str(), k.as_str(), v.as_str()))
                            .map(|pods| pods.iter().copied().filter(|p| svc.selects(p)).collect())
                            .unwrap_or_default(),
                        // No selector, or an empty one, selects nothing.
                        None => Vec::new(),
                    };
                    for port in ports {
                        let found = selector_endpoints(port, &selected, trust_domain, plaintext);
                        out.push(resource(svc, port, found));
                    }
                }
                Endpoints::Slices(slices) => {
                    for port in ports {
                        let found =
                            slice_endpoints(self, svc, port, slices, trust_domain, plaintext);
                        out.push(resource(svc, port, found));
                    }
                }
            }
        }
        out
    }
}

/// One port's endpoints, as found: (address, endpoint, pod name and the port it serves on).
type Found = Vec<(SocketAddr, Endpoint, Option<(String, u16)>)>;

/// The selected pods at the port's target port.
fn selector_endpoints(
    port: &ServicePortEntry,
    selected: &[&PodEntry],
    trust_domain: &str,
    plaintext: &dyn Fn(&PodEntry, u16) -> bool,
) -> Found {
    selected
        .iter()
        .filter_map(|pod| {
            let ip = pod.ip?;
            let target = match &port.target_port {
                TargetPort::Number(n) => *n,
                TargetPort::Name(name) => pod.container_port(name)?,
            };
            let address = SocketAddr::new(ip, target);
            let endpoint = endpoint(address, Some(pod), trust_domain, plaintext);
            Some((address, endpoint, Some((pod.name.clone(), target))))
        })
        .collect()
}

/// A Service port's endpoints from its EndpointSlices, with Kubernetes' semantics (as
/// kube-proxy applies them):
///
/// - an endpoint serves the port when its slice lists a port of the same name as the Service
///   port (both unnamed for a single-port Service), at that slice port's number;
/// - the ready endpoints are the endpoints; when none is ready, the ones that are serving *and*
///   terminating are used instead (graceful termination: a rollout's last pods keep answering
///   until replacements are ready), and otherwise there are none;
/// - an endpoint whose pod the registry knows takes the pod's identity and labels (and the mesh
///   port when it is meshed); one without (no `targetRef`, or a pod not listed yet) is reached
///   in plaintext with no labels;
/// - an address listed twice (slices overlap while the controller moves endpoints) counts once.
fn slice_endpoints(
    snapshot: &Snapshot,
    svc: &ServiceEntry,
    port: &ServicePortEntry,
    slices: &[EndpointEntry],
    trust_domain: &str,
    plaintext: &dyn Fn(&PodEntry, u16) -> bool,
) -> Found {
    let wanted = port.name.as_deref().filter(|n| !n.is_empty());
    let serving_port = |e: &EndpointEntry| {
        e.ports
            .iter()
            .find(|(name, _)| name.as_deref().filter(|n| !n.is_empty()) == wanted)
            .map(|(_, number)| *number)
    };
    let any_ready = slices.iter().any(|e| e.ready && serving_port(e).is_some());
    let mut found: Found = slices
        .iter()
        .filter(|e| {
            if any_ready {
                e.ready
            } else {
                e.serving && e.terminating
            }
        })
        .filter_map(|e| {
            let number = serving_port(e)?;
            let address = SocketAddr::new(e.ip, number);
            let pod = e
                .pod
                .as_ref()
                .and_then(|(ns, name)| snapshot.pod(ns, name))
                .filter(|p| p.namespace == svc.namespace);
            // Only a known pod has a proxy to tell which port it serves.
            let pod_port = pod.map(|p| (p.name.clone(), number));
            let endpoint = endpoint(address, pod, trust_domain, plaintext);
            Some((address, endpoint, pod_port))
        })
        .collect();
    found.sort_by_key(|(addr, ..)| *addr);
    found.dedup_by_key(|(addr, ..)| *addr);
    found
}

/// The endpoint at `address`: with the pod's identity, mesh port, labels and workload when it is
/// a known pod (identity and mesh port only when it is meshed and takes mTLS on that port).
fn endpoint(
    address: SocketAddr,
    pod: Option<&PodEntry>,
    trust_domain: &str,
    plaintext: &dyn Fn(&PodEntry, u16) -> bool,
) -> Endpoint {
    let (identity, mesh_port) = match pod {
        Some(pod) if pod.meshed && !plaintext(pod, address.port()) => {
            let id = spiffe_identity(trust_domain, &pod.namespace, &pod.service_account);
            (id, u32::from(MESH_INBOUND_PORT))
        }
        _ => (String::new(), 0),
    };
    Endpoint {
        address: address.to_string(),
        identity,
        mesh_port,
        labels: pod.map(|p| p.labels.clone()).unwrap_or_default(),
        workload: pod.map(super::workload::workload),
    }
}

fn resource(svc: &ServiceEntry, port: &ServicePortEntry, mut found: Found) -> ServiceResource {
    let vip = svc.vip.map(|ip| SocketAddr::new(ip, port.port).to_string());
    let host = format!("{}:{}", svc.fqdn(), port.port);
    // The pod ports in the order found (the selected pods' order), before sorting by address.
    let pod_ports = found.iter().filter_map(|(_, _, p)| p.clone()).collect();
    found.sort_by_key(|(addr, ..)| *addr);

    ServiceResource {
        namespace: svc.namespace.clone(),
        name: svc.name.clone(),
        port: port.port,
        names: vip.iter().cloned().chain([host]).collect(),
        service: Service {
            name: svc.fqdn(),
            addresses: vip.into_iter().collect(),
            endpoints: found.into_iter().map(|(_, e, _)| e).collect(),
            protocol: port.protocol as i32,
            port: u32::from(port.port),
            ..Default::default()
        },
        pod_ports,
    }
}

#[cfg(test)]
mod tests;
