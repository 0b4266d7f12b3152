//! The endpoint hand-out: which addresses the control plane and the pods get to see, and when.
//!
//! Promises:
//! - Endpoints are ready pods, as in Kubernetes: the assignments file the control plane reads
//!   lists every service VIP but only the pod IPs of pods that run (sidecar ready, containers
//!   started) and are not being stopped. It is rewritten only when its content changes.
//! - Pods see a change (hosts files, service rules: the [`NetView`]) only once discovery serves
//!   it, or after [`SERVE_WAIT`] at most (then the delay is reported): a new VIP handed out early
//!   could make a proxy hear "no such service" from a control plane a moment behind and pass the
//!   request through in plaintext; a new endpoint announced early would be dialled by pods but
//!   not by proxies.
//! - [`Handout::drained`] waits (at most [`DRAIN_WAIT`]) until a change is in force in every
//!   proxy and every running pod: what a preStop delay guesses at in a cluster.

use std::collections::BTreeSet;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use sinew_control_plane::registry::{Assignments, PodEntry, Snapshot, TargetPort};
use tokio::sync::watch;
use tokio::time::Instant;

use super::PodKey;
use crate::host::ServiceRoute;
use crate::pod::NetView;
use crate::process::Board;
use crate::state::{CONTROL_PLANE_IP, CONTROL_PLANE_MONITORING_PORT, PodPhase, Run};
use crate::sys;

/// At most this long between taking a pod out of the endpoints and stopping it.
pub const DRAIN_WAIT: Duration = Duration::from_secs(2);

/// How long a new VIP may wait for the control plane before it is handed out anyway.
pub const SERVE_WAIT: Duration = Duration::from_secs(3);

/// What has been handed out, to the control plane and to the pods.
pub struct Handout {
    run: Run,
    /// The services view pods apply; `None` until pods can be started (the control plane runs).
    net: Option<watch::Sender<Arc<NetView>>>,
    /// The pods whose addresses were last handed out as endpoints.
    published_ready: BTreeSet<PodKey>,
    /// The last view's sequence number, and the newest registry generation the control plane
    /// was seen serving a handed-out change with.
    view_seq: u64,
    served_generation: u64,
}

// === impl Handout ===

impl Handout {
    pub fn new(run: Run) -> Self {
        Self {
            run,
            net: None,
            published_ready: BTreeSet::new(),
            view_seq: 0,
            served_generation: 0,
        }
    }

    /// From now on changes reach pods (and wait for the control plane to serve them first).
    pub fn open_to_pods(&mut self) {
        let (net, _) = watch::channel(Arc::new(NetView::default()));
        self.net = Some(net);
    }

    /// What a new pod watches for its hosts file and service rules.
    pub fn subscribe(&self) -> watch::Receiver<Arc<NetView>> {
        match &self.net {
            Some(net) => net.subscribe(),
            None => watch::channel(Arc::new(NetView::default())).1,
        }
    }

    /// The pods last handed out as endpoints.
    pub fn published_ready(&self) -> &BTreeSet<PodKey> {
        &self.published_ready
    }

    /// Hands out `assignments` for `snapshot`, with only the pod IPs of `ready` pods: the
    /// assignments file, then (once served) the pods' view. Returns the problems.
    pub async fn publish(
        &mut self,
        snapshot: &Snapshot,
        assignments: &Assignments,
        ready: BTreeSet<PodKey>,
    ) -> Vec<String> {
        let mut errors = Vec::new();
        let published = endpoints_only(assignments, &ready);
        self.published_ready = ready;
        let path = self.run.assignments();
        if let Err(e) = write_if_changed(&path, &published) {
            errors.push(format!("cannot write {}: {e}", path.display()));
        }
        let Some(net) = &self.net else {
            return errors;
        };
        let assigned = snapshot.with_assignments(&published);
        let mut view = net_view(&assigned);
        let changed = changed_routes(&net.borrow(), &view);
        let netns = self.run.control_plane_netns();
        match wait_served(changed, |names| served(netns.clone(), names)).await {
            Ok(generation) => self.served_generation = self.served_generation.max(generation),
            Err(late) => {
                let shown: Vec<String> = late.iter().map(|n| service_at(&assigned, n)).collect();
                errors.push(format!(
                    "the control plane was slow to pick up new endpoints (over {}s); requests to {} may fail for a moment until it does",
                    SERVE_WAIT.as_secs(),
                    shown.join(", ")
                ));
            }
        }
        if !net.borrow().same_as(&view) {
            self.view_seq += 1;
            view.seq = self.view_seq;
            net.send_replace(Arc::new(view));
        }
        errors
    }

    /// Waits (bounded by [`DRAIN_WAIT`]) until the change last handed out is in force: every
    /// proxy has been sent the control plane's config of that moment, and every running pod but
    /// `leaving` has applied the view. Returns a problem to report if it gave up.
    pub async fn drained(&self, board: &Board, leaving: &BTreeSet<PodKey>) -> Option<String> {
        let addr = SocketAddr::new(CONTROL_PLANE_IP.into(), CONTROL_PLANE_MONITORING_PORT);
        let deadline = Instant::now() + DRAIN_WAIT;
        loop {
            let pods_done = board.get().pods.iter().all(|p| {
                p.phase != PodPhase::Running
                    || leaving.contains(&(p.namespace.clone(), p.name.clone()))
                    || p.view_applied >= self.view_seq
            });
            let (ns, generation) = (self.run.control_plane_netns(), self.served_generation);
            let proxies_done = tokio::task::spawn_blocking(move || {
                let Ok((200, body)) =
                    sys::http_get(&ns, addr, "/debug/proxies", Duration::from_millis(300))
                else {
                    return false;
                };
                every_proxy_at(&body, generation)
            })
            .await
            .unwrap_or(false);
            if pods_done && proxies_done {
                return None;
            }
            if Instant::now() > deadline {
                return Some(format!(
                    "a change did not reach every pod and proxy within {DRAIN_WAIT:?}; stopping pods anyway"
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// `assignments` with the pod IPs of `ready` pods only (every VIP stays).
fn endpoints_only(assignments: &Assignments, ready: &BTreeSet<PodKey>) -> Assignments {
    let mut published = assignments.clone();
    published.pod_ips.retain(|k, _| ready.contains(k));
    published
}

/// Writes the assignments file unless it already says exactly this (a rewrite would make the
/// control plane reload for nothing).
fn write_if_changed(path: &std::path::Path, assignments: &Assignments) -> std::io::Result<bool> {
    let unchanged = std::fs::read_to_string(path).is_ok_and(|t| t == assignments.to_yaml());
    if unchanged {
        return Ok(false);
    }
    assignments.write_file(path)?;
    Ok(true)
}

/// Service names for hosts files and VIP rules, from a snapshot with addresses filled in.
pub fn net_view(snapshot: &Snapshot) -> NetView {
    let mut view = NetView::default();
    for (key, svc) in snapshot.services() {
        let selected: Vec<&PodEntry> = snapshot
            .pods()
            .values()
            .filter(|p| svc.selects(p))
            .collect();
        let Some(vip) = v4(svc.vip) else {
            if svc.headless {
                let ips: Vec<Ipv4Addr> = selected.iter().filter_map(|p| v4(p.ip)).collect();
                view.hosts.insert(key.clone(), ips);
            }
            continue;
        };
        view.hosts.insert(key.clone(), vec![vip]);
        for port in svc.ports.iter().filter(|p| p.transport == "TCP") {
            let endpoints = selected
                .iter()
                .filter_map(|p| {
                    let target = match &port.target_port {
                        TargetPort::Number(n) => *n,
                        TargetPort::Name(name) => p.container_port(name)?,
                    };
                    Some((v4(p.ip)?, target))
                })
                .collect();
            view.routes.push(ServiceRoute {
                vip,
                port: port.port,
                endpoints,
            });
        }
    }
    view.routes.sort();
    view
}

fn v4(ip: Option<IpAddr>) -> Option<Ipv4Addr> {
    match ip {
        Some(IpAddr::V4(v4)) => Some(v4),
        _ => None,
    }
}

/// The routes of `view` that `current` does not have, as the `vip:port` discovery serves each
/// by, with the endpoints it must serve it with.
fn changed_routes(current: &NetView, view: &NetView) -> Vec<(String, BTreeSet<String>)> {
    view.routes
        .iter()
        .filter(|r| !current.routes.contains(r))
        .map(|r| {
            let endpoints = r.endpoints.iter().map(|(ip, port)| format!("{ip}:{port}"));
            (format!("{}:{}", r.vip, r.port), endpoints.collect())
        })
        .collect()
}

/// Waits (bounded by [`SERVE_WAIT`]) until `check` reports every name in `names` served with
/// exactly its endpoints; the newest registry generation seen serving them, or the names still
/// not served when time ran out.
async fn wait_served<F, Fut>(
    mut names: Vec<(String, BTreeSet<String>)>,
    mut check: F,
) -> Result<u64, Vec<String>>
where
    F: FnMut(Vec<(String, BTreeSet<String>)>) -> Fut,
    Fut: Future<Output = Vec<(String, u64)>>,
{
    let mut generation = 0;
    let deadline = Instant::now() + SERVE_WAIT;
    while !names.is_empty() {
        let served = check(names.clone()).await;
        for (_, g) in &served {
            generation = generation.max(*g);
        }
        names.retain(|(n, _)| !served.iter().any(|(s, _)| s == n));
        if names.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            // The caller says what that means for the user; the addresses go out anyway.
            return Err(names.into_iter().map(|(n, _)| n).collect());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(generation)
}

/// Asks discovery (in the control plane's namespace) about every name at once, each with a short
/// timeout, so one pass takes one round trip: the names served with exactly their endpoints,
/// and the generation each is served from.
async fn served(netns: String, names: Vec<(String, BTreeSet<String>)>) -> Vec<(String, u64)> {
    let addr = SocketAddr::new(CONTROL_PLANE_IP.into(), CONTROL_PLANE_MONITORING_PORT);
    tokio::task::spawn_blocking(move || {
        std::thread::scope(|scope| {
            let checks: Vec<_> = names
                .iter()
                .map(|(name, endpoints)| {
                    let ns = &netns;
                    scope.spawn(move || Some((name.clone(), serves(ns, addr, name, endpoints)?)))
                })
                .collect();
            checks
                .into_iter()
                .filter_map(|c| c.join().ok().flatten())
                .collect::<Vec<_>>()
        })
    })
    .await
    .unwrap_or_default()
}

/// The registry generation discovery serves `name` from, if it serves it with exactly
/// `endpoints`.
fn serves(netns: &str, addr: SocketAddr, name: &str, endpoints: &BTreeSet<String>) -> Option<u64> {
    let path = format!("/debug/resolve?name={name}");
    let Ok((200, body)) = sys::http_get(netns, addr, &path, Duration::from_millis(300)) else {
        return None;
    };
    served_from(&body, endpoints)
}

/// The generation in a `/debug/resolve` answer, if it lists exactly `endpoints`.
fn served_from(body: &str, endpoints: &BTreeSet<String>) -> Option<u64> {
    let json = serde_json::from_str::<serde_json::Value>(body).ok()?;
    let served: BTreeSet<String> = json["endpoints"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e.as_str().map(str::to_string))
        .collect();
    (served == *endpoints).then(|| json["generation"].as_u64().unwrap_or(0))
}

/// Whether a `/debug/proxies` answer has every proxy at `generation` or later.
fn every_proxy_at(body: &str, generation: u64) -> bool {
    serde_json::from_str::<serde_json::Value>(body).is_ok_and(|json| {
        json["proxies"].as_array().is_some_and(|proxies| {
            proxies
                .iter()
                .all(|p| p["generation"].as_u64().unwrap_or(0) >= generation)
        })
    })
}

/// `shop/reviews:9080` for the `<vip>:<port>` a proxy subscribes by (the name itself if no
/// service has that address).
pub fn service_at(snapshot: &Snapshot, name: &str) -> String {
    snapshot
        .services()
        .values()
        .find_map(|svc| {
            let vip = svc.vip?;
            svc.ports
                .iter()
                .find(|p| format!("{vip}:{}", p.port) == name)
                .map(|p| format!("{}/{}:{}", svc.namespace, svc.name, p.port))
        })
        .unwrap_or_else(|| name.to_string())
}

#[cfg(test)]
mod tests;
