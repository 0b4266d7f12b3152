//! What the monitoring server shows of the registry's source, whichever it is: its last error,
//! its metrics (watch errors and re-lists, TokenReview latency and failures for Kubernetes), and
//! `/debug/registryz` (services, endpoints, pods and policies as the control plane sees them).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::watch;

use crate::registry::istio::peer_authentication::PeerMtls;
use crate::registry::{RegistryHandle, Snapshot};

/// The source's monitoring view. Cheap to clone.
#[derive(Clone)]
pub struct SourceMonitor {
    source: Source,
    snapshots: watch::Receiver<Arc<Snapshot>>,
}

#[derive(Clone)]
enum Source {
    Files(RegistryHandle),
    #[cfg(feature = "kubernetes")]
    Kubernetes {
        handle: crate::registry::cluster::KubeSourceHandle,
        registry: Arc<prometheus_client::registry::Registry>,
        status: Arc<crate::cluster::status::StatusMetrics>,
    },
}

// === impl SourceMonitor ===

impl SourceMonitor {
    pub fn files(handle: RegistryHandle, snapshots: watch::Receiver<Arc<Snapshot>>) -> Self {
        Self {
            source: Source::Files(handle),
            snapshots,
        }
    }

    #[cfg(feature = "kubernetes")]
    pub fn kubernetes(
        handle: crate::registry::cluster::KubeSourceHandle,
        reviews: crate::auth::ReviewMetrics,
        status: Arc<crate::cluster::status::StatusMetrics>,
        snapshots: watch::Receiver<Arc<Snapshot>>,
    ) -> Self {
        let mut registry = prometheus_client::registry::Registry::default();
        reviews.register(&mut registry);
        Self {
            source: Source::Kubernetes {
                handle,
                registry: Arc::new(registry),
                status,
            },
            snapshots,
        }
    }

    /// The source's last error, while it is keeping the last good snapshot in force.
    pub fn last_error(&self) -> Option<String> {
        match &self.source {
            Source::Files(handle) => handle.last_error(),
            #[cfg(feature = "kubernetes")]
            Source::Kubernetes { handle, .. } => handle.last_error(),
        }
    }

    /// The source's metrics in Prometheus text format (a file source has none).
    pub fn render_metrics(&self) -> String {
        match &self.source {
            Source::Files(_) => String::new(),
            #[cfg(feature = "kubernetes")]
            Source::Kubernetes {
                handle,
                registry,
                status,
            } => {
                let mut out = String::new();
                handle.metrics().render(&mut out);
                status.render(&mut out);
                let _ = prometheus_client::encoding::text::encode_registry(&mut out, registry);
                out
            }
        }
    }

    /// `/debug/registryz`: the current snapshot, and for Kubernetes each kind's watch state.
    pub fn registryz(&self) -> Value {
        let snapshot = self.snapshots.borrow().clone();
        let mut out = registry_json(&snapshot);
        out["source"] = match &self.source {
            Source::Files(_) => json!({"kind": "files", "lastError": self.last_error()}),
            #[cfg(feature = "kubernetes")]
            Source::Kubernetes { handle, .. } => json!({
                "kind": "kubernetes",
                "lastError": self.last_error(),
                "watches": handle.metrics().snapshot(),
                "rejected": handle.rejected(),
            }),
        };
        out
    }
}

/// Identities are not shown, so the trust domain does not matter here.
const TRUST_DOMAIN_FOR_DISPLAY: &str = "cluster.local";

/// The snapshot as JSON: what each service resolves to, the pods, the rules, and what was
/// refused.
fn registry_json(snapshot: &Snapshot) -> Value {
    let services: Vec<Value> = snapshot
        .service_resources(TRUST_DOMAIN_FOR_DISPLAY)
        .into_iter()
        .map(|r| {
            json!({
                "namespace": r.namespace,
                "name": r.name,
                "port": r.port,
                "names": r.names,
                "endpoints": r.service.endpoints.iter().map(|e| &e.address).collect::<Vec<_>>(),
            })
        })
        .collect();
    let pods: Vec<Value> = snapshot
        .pods()
        .values()
        .map(|p| {
            json!({
                "namespace": p.namespace,
                "name": p.name,
                "ip": p.ip,
                "serviceAccount": p.service_account,
                "meshed": p.meshed,
                "workload": crate::registry::workload::workload_name(p),
            })
        })
        .collect();
    let rules: Vec<Value> = snapshot
        .destination_rules()
        .iter()
        .map(|r| json!({"apiVersion": r.api_version, "namespace": r.namespace, "name": r.name, "host": r.host}))
        .collect();
    let virtual_services: Vec<Value> = snapshot
        .virtual_services()
        .iter()
        .map(|v| json!({"apiVersion": v.api_version, "namespace": v.namespace, "name": v.name}))
        .collect();
    let telemetries: Vec<Value> = snapshot
        .telemetries()
        .iter()
        .map(|t| {
            json!({
                "apiVersion": t.api_version,
                "namespace": t.namespace,
                "name": t.name,
                "selector": t.spec.selector.as_ref().and_then(|s| s.match_labels.as_ref()),
            })
        })
        .collect();
    // Enum values by name (their Debug form), as written in YAML.
    let peer_authentications: Vec<Value> = snapshot
        .peer_authentications()
        .iter()
        .map(|p| {
            let mode = |m: &PeerMtls| m.mode.map(|m| format!("{m:?}"));
            let ports: BTreeMap<u64, Option<String>> = p
                .spec
                .port_level_mtls
                .iter()
                .flatten()
                .map(|(port, m)| (port.0, mode(m)))
                .collect();
            json!({
                "apiVersion": p.api_version,
                "namespace": p.namespace,
                "name": p.name,
                "selector": p.spec.selector.as_ref().and_then(|s| s.match_labels.as_ref()),
                "mode": p.spec.mtls.as_ref().and_then(mode),
                "portLevelMtls": ports,
            })
        })
        .collect();
    let authorization_policies: Vec<Value> = snapshot
        .authorization_policies()
        .iter()
        .map(|a| {
            json!({
                "apiVersion": a.api_version,
                "namespace": a.namespace,
                "name": a.name,
                "selector": a.spec.selector.as_ref().and_then(|s| s.match_labels.as_ref()),
                "targetRefs": a
                    .spec
                    .target_ref
                    .iter()
                    .chain(a.spec.target_refs.iter().flatten())
                    .map(|t| format!(
                        "{}/{}",
                        t.kind.as_deref().unwrap_or_default(),
                        t.name.as_deref().unwrap_or_default()
                    ))
                    .collect::<Vec<_>>(),
                "action": a.spec.action.map(|x| format!("{x:?}")),
                "rules": a.spec.rules.as_ref().map_or(0, Vec::len),
                "dryRun": a.dry_run,
            })
        })
        .collect();
    json!({
        "generation": snapshot.generation(),
        "services": services,
        "pods": pods,
        "destinationRules": rules,
        "virtualServices": virtual_services,
        "telemetries": telemetries,
        "peerAuthentications": peer_authentications,
        "authorizationPolicies": authorization_policies,
        "warnings": snapshot.warnings(),
    })
}
