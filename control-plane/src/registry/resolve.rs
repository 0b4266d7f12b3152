//! From the model to the proxy's config: one `sinew.config.v1.Service` per Service port, with the
//! addresses clients dial, the protocol, and the selected pods as endpoints.

use std::collections::HashMap;
use std::net::SocketAddr;

use sinew_proto::config::v1::{Endpoint, Service};

use super::entry::{MESH_INBOUND_PORT, PodEntry, ServiceEntry, ServicePortEntry, TargetPort};
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
    /// Endpoints are the pods of the Service's namespace that its selector matches and that have
    /// an address, at `<podIP>:<targetPort>` (a named target port is looked up in the pod's
    /// containers; a pod without it is no endpoint of that port). Meshed pods carry their SPIFFE
    /// identity and the mesh port 15006; others have neither, so clients reach them in
    /// plaintext. Endpoints are sorted by address.
    pub fn service_resources(&self, trust_domain: &str) -> Vec<ServiceResource> {
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
            let first = svc.selector.as_ref().and_then(|s| s.iter().next());
            let selected: Vec<&PodEntry> = match first {
                Some((k, v)) => by_label
                    .get(&(svc.namespace.as_str(), k.as_str(), v.as_str()))
                    .map(|pods| pods.iter().copied().filter(|p| svc.selects(p)).collect())
                    .unwrap_or_default(),
                // No selector, or an empty one, selects nothing.
                None => Vec::new(),
            };
            let mut ports: Vec<&ServicePortEntry> =
                svc.ports.iter().filter(|p| p.transport == "TCP").collect();
            ports.sort_by_key(|p| p.port);
            for port in ports {
                out.push(resource(svc, port, &selected, trust_domain));
            }
        }
        out
    }
}

fn resource(
    svc: &ServiceEntry,
    port: &ServicePortEntry,
    selected: &[&PodEntry],
    trust_domain: &str,
) -> ServiceResource {
    let vip = svc.vip.map(|ip| SocketAddr::new(ip, port.port).to_string());
    let host = format!("{}:{}", svc.fqdn(), port.port);
    let mut pod_ports = Vec::new();
    let mut endpoints: Vec<(SocketAddr, Endpoint)> = selected
        .iter()
        .filter_map(|pod| {
            let ip = pod.ip?;
            let target = match &port.target_port {
                TargetPort::Number(n) => *n,
                TargetPort::Name(name) => pod.container_port(name)?,
            };
            let address = SocketAddr::new(ip, target);
            pod_ports.push((pod.name.clone(), target));
            let (identity, mesh_port) = if pod.meshed {
                let id = spiffe_identity(trust_domain, &pod.namespace, &pod.service_account);
                (id, u32::from(MESH_INBOUND_PORT))
            } else {
                (String::new(), 0)
            };
            let labels = pod.labels.clone();
            Some((
                address,
                Endpoint {
                    address: address.to_string(),
                    identity,
                    mesh_port,
                    labels,
                },
            ))
        })
        .collect();
    endpoints.sort_by_key(|(addr, _)| *addr);

    ServiceResource {
        namespace: svc.namespace.clone(),
        name: svc.name.clone(),
        port: port.port,
        names: vip.iter().cloned().chain([host]).collect(),
        service: Service {
            name: svc.fqdn(),
            addresses: vip.into_iter().collect(),
            endpoints: endpoints.into_iter().map(|(_, e)| e).collect(),
            protocol: port.protocol as i32,
            port: u32::from(port.port),
            ..Default::default()
        },
        pod_ports,
    }
}

#[cfg(test)]
mod tests;
