//! `sinewctl status`: what runs, who it is, whether
//! its proxy is ready and on which config, and what went wrong — read from the run's record and
//! asked of each proxy (admin and metrics ports, inside the pod's namespace).

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::state::{
    CONTROL_PLANE_IP, CONTROL_PLANE_MONITORING_PORT, PodState, Run, RunState, now_unix_ms,
};
use crate::sys;
use sinew_control_plane::registry::{FileRegistry, Snapshot};

const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
const ADMIN: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 15000);
const HEALTH: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 15021);

/// What one proxy says about itself.
#[derive(Debug, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProxyReport {
    pub ready: bool,
    pub identity: Option<String>,
    pub certificate_expires_in_secs: Option<i64>,
    /// Config resources held: one per service port, subscribed by name or address.
    pub resources: usize,
    /// Distinct services among them (what CONFIG shows).
    pub services: usize,
    pub version: String,
    pub last_rejected_config: Option<String>,
}

fn probe_proxy(pod: &PodState) -> ProxyReport {
    let mut report = ProxyReport {
        ready: sys::http_get(&pod.netns, HEALTH, "/healthz/ready", PROBE_TIMEOUT)
            .is_ok_and(|(s, _)| s == 200),
        ..Default::default()
    };
    let Ok((200, body)) = sys::http_get(&pod.netns, ADMIN, "/config_dump", PROBE_TIMEOUT) else {
        return report;
    };
    let Ok(dump) = serde_json::from_str::<serde_json::Value>(&body) else {
        return report;
    };
    report.identity = dump["tls"]["identity"].as_str().map(str::to_string);
    report.certificate_expires_in_secs = dump["tls"]["certificateNotAfterUnix"]
        .as_i64()
        .map(|t| t - (now_unix_ms() / 1000) as i64);
    report.resources = dump["resourceVersions"].as_object().map_or(0, |m| m.len());
    report.services = services_in(&dump);
    report.version = dump["version"].as_str().unwrap_or_default().to_string();
    report.last_rejected_config = dump["lastRejectedConfig"].as_str().map(str::to_string);
    report
}

/// The services a proxy's config holds: its resources are per service port, so a service with
/// two ports is one service, not two.
fn services_in(dump: &serde_json::Value) -> usize {
    dump["config"]["services"]
        .as_array()
        .map(|services| {
            services
                .iter()
                .filter_map(|s| s["name"].as_str())
                .collect::<std::collections::BTreeSet<_>>()
                .len()
        })
        .unwrap_or(0)
}

/// Services whose selector matches no pod of their namespace: reachable by name, answered by
/// no one (a typo in a label is the usual cause).
fn services_without_pods(snapshot: &Snapshot) -> Vec<String> {
    snapshot
        .services()
        .values()
        .filter_map(|svc| {
            let selector = svc.selector.as_ref()?;
            let matched = snapshot.pods().values().any(|p| {
                p.namespace == svc.namespace
                    && selector.iter().all(|(k, v)| p.labels.get(k) == Some(v))
            });
            let shown: Vec<String> = selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
            (!matched).then(|| {
                format!(
                    "{}/{}: Service selector {} matches no pod (no endpoints: requests to it fail)",
                    svc.namespace,
                    svc.name,
                    shown.join(",")
                )
            })
        })
        .collect()
}

/// `sinewctl status [--json]`.
pub fn status(run: &Run, json: bool) -> anyhow::Result<()> {
    let state = run.load_state()?;
    if !sys::is_root() {
        anyhow::bail!(
            "`sinewctl status` needs root to reach the proxies inside the pods' network namespaces (run it with sudo)"
        );
    }
    let reports: Vec<Option<ProxyReport>> = std::thread::scope(|s| {
        let handles: Vec<_> = state
            .pods
            .iter()
            .map(|p| s.spawn(move || p.meshed.then(|| probe_proxy(p))))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().ok().flatten())
            .collect()
    });
    let cp = control_plane(&state);
    if json {
        let pods: Vec<serde_json::Value> = state
            .pods
            .iter()
            .zip(&reports)
            .map(|(p, r)| serde_json::json!({"pod": p, "proxy": r}))
            .collect();
        let out = serde_json::json!({
            "run": state.run,
            "ready": state.ready,
            "controlPlane": {"process": state.control_plane, "ready": cp.ready, "registryError": cp.registry_error, "registryWarnings": cp.registry_warnings, "connectedProxies": cp.proxies, "rotation": cp.rotation},
            "pods": pods,
            "errors": state.errors,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    let up_for = Duration::from_millis(now_unix_ms().saturating_sub(state.started_unix_ms));
    println!(
        "local mesh {:?} from {}: up {}, supervisor pid {}",
        state.run,
        state.source,
        human(up_for.as_secs() as i64),
        state.supervisor_pid
    );
    println!(
        "control plane {}: {} (pid {}, restarts {}), {} proxies connected{}",
        state.control_plane_address,
        if cp.ready { "ready" } else { "NOT READY" },
        state
            .control_plane
            .pid
            .map_or("-".to_string(), |p| p.to_string()),
        state.control_plane.restarts,
        cp.proxies,
        cp.registry_error
            .as_ref()
            .map_or(String::new(), |e| format!(", registry error: {e}")),
    );
    // Accepted but probably wrong (a route to a subset no DestinationRule defines answers 503).
    for w in &cp.registry_warnings {
        println!("warning: {w}");
    }
    if let Some(line) = rotation_line(&cp.rotation) {
        println!("{line}");
    }
    let mut rows = vec![
        [
            "NAMESPACE",
            "POD",
            "IP",
            "STATUS",
            "PROXY",
            "IDENTITY",
            "CERT EXPIRES",
            "CONFIG",
            "RESTARTS",
        ]
        .map(String::from),
    ];
    let mut problems = state.errors.clone();
    // The objects as the control plane reads them (a store it cannot load is reported there).
    if let Ok(snapshot) = FileRegistry::load(&run.manifests()) {
        problems.extend(services_without_pods(&snapshot));
    }
    for (p, r) in state.pods.iter().zip(&reports) {
        let restarts: u32 = p.containers.iter().map(|c| c.restarts).sum::<u32>()
            + p.proxy.as_ref().map_or(0, |x| x.restarts);
        let (proxy, identity, expires, config) = match r {
            None => ("-".into(), "(not meshed)".into(), "-".into(), "-".into()),
            Some(r) => (
                if r.ready { "ready" } else { "not ready" }.to_string(),
                r.identity
                    .clone()
                    .unwrap_or_else(|| "(no certificate yet)".into()),
                r.certificate_expires_in_secs.map_or("-".into(), human),
                match r.services {
                    1 => "1 service".to_string(),
                    n => format!("{n} services"),
                },
            ),
        };
        rows.push([
            p.namespace.clone(),
            p.name.clone(),
            p.ip.clone(),
            p.phase.to_string(),
            proxy,
            identity,
            expires,
            config,
            restarts.to_string(),
        ]);
        if let Some(rejected) = r.as_ref().and_then(|r| r.last_rejected_config.as_ref()) {
            problems.push(format!(
                "{}/{}: proxy rejected config: {rejected}",
                p.namespace, p.name
            ));
        }
        if let Some(e) = &p.network_error {
            problems.push(format!(
                "{}/{}: hosts file or service rules not updated: {e}",
                p.namespace, p.name
            ));
        }
        for c in p.containers.iter().chain(&p.proxy) {
            if let (None, Some(exit)) = (c.pid, &c.last_exit) {
                problems.push(format!(
                    "{}/{}: {} exited ({exit}); log: {}",
                    p.namespace,
                    p.name,
                    c.name,
                    c.log.display()
                ));
            }
        }
    }
    print_table(&rows);
    if !problems.is_empty() {
        println!("\nproblems:");
        for p in problems {
            println!("  {p}");
        }
    }
    Ok(())
}

struct ControlPlaneReport {
    ready: bool,
    proxies: usize,
    registry_error: Option<String>,
    /// The registry's warnings (undefined subsets, skipped kinds, …), as the control plane says.
    registry_warnings: Vec<String>,
    /// `/debug/rotation`: the root rotation's phase, roots and pending proxies.
    rotation: serde_json::Value,
}

/// One line about a root rotation under way (or stopped, or done), none when idle.
fn rotation_line(rotation: &serde_json::Value) -> Option<String> {
    let phase = rotation["phase"].as_str()?;
    let short = |key: &str| {
        rotation[key]
            .as_str()
            .map_or("-".to_string(), |s| s.chars().take(12).collect())
    };
    let pending: Vec<&str> = rotation["pending"]
        .as_array()
        .map(|p| p.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    let mut line = match phase {
        "idle" => return None,
        "done" => format!(
            "root rotation done: trusting only root {}",
            short("newRootSha256")
        ),
        _ => format!(
            "root rotation from {} to {}: phase {phase}, waiting for {} prox{}{}",
            short("oldRootSha256"),
            short("newRootSha256"),
            pending.len(),
            if pending.len() == 1 { "y" } else { "ies" },
            if pending.is_empty() {
                String::new()
            } else {
                format!(" ({})", pending.join(", "))
            }
        ),
    };
    if let Some(error) = rotation["error"].as_str() {
        line.push_str(&format!("\nroot rotation STOPPED: {error}"));
    }
    Some(line)
}

fn control_plane(state: &RunState) -> ControlPlaneReport {
    let addr = SocketAddr::new(CONTROL_PLANE_IP.into(), CONTROL_PLANE_MONITORING_PORT);
    let ns = &state.control_plane_netns;
    let ready = sys::http_get(ns, addr, "/ready", PROBE_TIMEOUT).is_ok_and(|(s, _)| s == 200);
    let debug = sys::http_get(ns, addr, "/debug/proxies", PROBE_TIMEOUT)
        .ok()
        .and_then(|(_, body)| serde_json::from_str::<serde_json::Value>(&body).ok())
        .unwrap_or_default();
    ControlPlaneReport {
        ready,
        proxies: debug["proxies"].as_array().map_or(0, Vec::len),
        registry_error: debug["registryError"].as_str().map(str::to_string),
        rotation: sys::http_get(ns, addr, "/debug/rotation", PROBE_TIMEOUT)
            .ok()
            .and_then(|(_, body)| serde_json::from_str(&body).ok())
            .unwrap_or_default(),
        registry_warnings: debug["registryWarnings"]
            .as_array()
            .map(|ws| {
                ws.iter()
                    .filter_map(|w| w.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

fn print_table(rows: &[[String; 9]]) {
    let mut widths = [0usize; 9];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
}

/// `2d3h`, `25h4m`, `5m6s`, `7s`; negative means already past.
fn human(secs: i64) -> String {
    if secs < 0 {
        return format!("expired {} ago", human(-secs));
    }
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    // Hours up to two days, so a fresh 24 h certificate (`24h0m`) compares at a glance with
    // one about to renew (`11h58m`).
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s}s"),
        (0..48, _) => format!("{h}h{m}m"),
        _ => format!("{}d{}h", h / 24, h % 24),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_kubectl() {
        assert_eq!(human(7), "7s");
        assert_eq!(human(65), "1m5s");
        assert_eq!(human(86399), "23h59m");
        assert_eq!(human(86400), "24h0m", "beside 23h58m, not 1d0h");
        assert_eq!(human(90000), "25h0m");
        assert_eq!(human(2 * 86400 + 3600), "2d1h");
        assert_eq!(human(-5), "expired 5s ago");
    }

    #[test]
    fn config_counts_services_not_their_port_resources() {
        let dump = serde_json::json!({"config": {"services": [
            {"name": "reviews.shop.svc.cluster.local", "addresses": ["198.19.0.1:9080"]},
            {"name": "reviews.shop.svc.cluster.local", "addresses": ["198.19.0.1:9090"]},
            {"name": "ratings.shop.svc.cluster.local", "addresses": ["198.19.0.2:80"]},
        ]}});
        assert_eq!(services_in(&dump), 2);
        assert_eq!(services_in(&serde_json::json!({})), 0);
    }

    #[test]
    fn a_service_whose_selector_matches_no_pod_is_a_problem() {
        let dir = std::env::temp_dir().join(format!("sinewctl-status-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("m.yaml"),
            "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {selector: {app: web}, ports: [{port: 80}]}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: api}\nspec: {selector: {app: apj}, ports: [{port: 80}]}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: web-0, labels: {app: web}}\nspec: {containers: [{name: c}]}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: api-0, labels: {app: api}}\nspec: {containers: [{name: c}]}\n",
        )
        .unwrap();
        let snapshot = FileRegistry::load(&dir).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(
            services_without_pods(&snapshot),
            [
                "default/api: Service selector app=apj matches no pod (no endpoints: requests to it fail)"
            ]
        );
    }
}
