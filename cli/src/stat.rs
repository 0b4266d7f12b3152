//! `sinewctl stat`: live success rate, requests per second, latency percentiles and open TCP
//! connections per workload, pod or namespace, inbound and outbound — Linkerd's `viz stat` for a
//! local mesh. The numbers come from the proxies themselves: each meshed pod's
//! `:15020/stats/prometheus` (Istio's metrics) is scraped twice, `--window` apart, from inside the
//! pod's network namespace, and [`traffic`] turns the two scrapes into the same numbers Istio's
//! dashboards compute in PromQL. `sinewctl up`'s live line uses [`traffic`] too.
//!
//! Promises: a pod whose proxy does not answer is named below the table, never counted as idle
//! traffic without saying so; rows are sorted (namespace, name, direction), so a `--watch`
//! refresh does not reorder them; nothing here changes the mesh.

mod prom;
pub mod traffic;

use std::collections::{BTreeMap, HashMap};
use std::io::{IsTerminal as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::bail;
use sinew_control_plane::registry::FileRegistry;

use crate::state::{PodState, Run, RunState};
use crate::sys;
use traffic::{Direction, Filter, Scrape, Stats, Traffic};

/// Where every proxy serves Istio's metrics, inside its pod.
pub const METRICS: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 15020);
pub const METRICS_PATH: &str = "/stats/prometheus";
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(2);
/// The shortest window: below a second the counters say more about scrape timing than traffic.
const MIN_WINDOW: Duration = Duration::from_secs(1);
const MAX_WINDOW: Duration = Duration::from_secs(3600);

/// What a row is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// A Deployment's pods together (pods written as bare Pods are not in any).
    #[value(name = "deploy", alias = "deployment", alias = "deployments")]
    Deploy,
    /// Each pod alone.
    #[value(name = "pod", alias = "pods", alias = "po")]
    Pod,
    /// Every pod of a namespace together.
    #[value(name = "ns", alias = "namespace", alias = "namespaces")]
    Namespace,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Table,
    Json,
}

/// `sinewctl stat` as asked.
#[derive(Debug, Clone)]
pub struct Query {
    pub kind: Kind,
    pub name: Option<String>,
    /// `None`: every namespace (`-A`).
    pub namespace: Option<String>,
    /// Only inbound traffic from this `(namespace, workload)`.
    pub from: Option<(String, String)>,
    /// Only outbound traffic to this `(namespace, workload)`.
    pub to: Option<(String, String)>,
    pub window: Duration,
    pub watch: bool,
    pub output: Output,
}

/// `10s`, `1m`, `1500ms`, `2.5s`: a window between one second and an hour.
pub fn parse_window(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let scale = match unit {
        "ms" => 0.001,
        "s" | "" => 1.0,
        "m" => 60.0,
        _ => return Err(format!("{s:?}: expected a duration like 10s, 1m or 1500ms")),
    };
    let secs = number
        .parse::<f64>()
        .ok()
        .map(|n| n * scale)
        .filter(|n| n.is_finite())
        .ok_or_else(|| format!("{s:?}: expected a duration like 10s, 1m or 1500ms"))?;
    let d = Duration::from_secs_f64(secs.clamp(0.0, 1e9));
    if !(MIN_WINDOW..=MAX_WINDOW).contains(&d) {
        return Err(format!(
            "{s:?}: the window must be between {}s and {}s",
            MIN_WINDOW.as_secs(),
            MAX_WINDOW.as_secs()
        ));
    }
    Ok(d)
}

/// `--from`/`--to`: `[NAMESPACE/]WORKLOAD` (a Deployment's name, or a bare pod's), with
/// `deploy/` or `pod/` allowed in front as Linkerd writes it.
pub fn parse_peer(s: &str, default_namespace: &str) -> Result<(String, String), String> {
    let bad = || format!("{s:?}: expected [NAMESPACE/]WORKLOAD, e.g. demo/frontend");
    let parts: Vec<&str> = s.split('/').collect();
    let parts = match parts.as_slice() {
        [kind, rest @ ..] if !rest.is_empty() && is_kind_word(kind) => rest.to_vec(),
        [ns, kind, name] if is_kind_word(kind) => vec![*ns, *name],
        other => other.to_vec(),
    };
    let (ns, name) = match parts.as_slice() {
        [name] => (default_namespace, *name),
        [ns, name] => (*ns, *name),
        _ => return Err(bad()),
    };
    let valid = |v: &str| {
        !v.is_empty()
            && v.len() <= 253
            && v.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    };
    if !valid(ns) || !valid(name) {
        return Err(bad());
    }
    Ok((ns.to_string(), name.to_string()))
}

fn is_kind_word(s: &str) -> bool {
    matches!(s, "deploy" | "deployment" | "pod" | "po" | "workload")
}

/// Pods counted together in one row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub namespace: String,
    pub name: String,
    /// `(network namespace, meshed)` of each pod.
    pub pods: Vec<(String, bool)>,
}

/// The groups `query` asks for, from the run's pods and the Deployment each came from.
pub fn groups(
    pods: &[PodState],
    owner: impl Fn(&PodState) -> Option<String>,
    query: &Query,
) -> Vec<Group> {
    let mut out: BTreeMap<(String, String), Group> = BTreeMap::new();
    for p in pods {
        if query
            .namespace
            .as_ref()
            .is_some_and(|ns| *ns != p.namespace)
            && query.kind != Kind::Namespace
        {
            continue;
        }
        let key = match query.kind {
            Kind::Deploy => match owner(p) {
                Some(d) => (p.namespace.clone(), d),
                None => continue,
            },
            Kind::Pod => (p.namespace.clone(), p.name.clone()),
            Kind::Namespace => (String::new(), p.namespace.clone()),
        };
        if query.name.as_ref().is_some_and(|n| *n != key.1) {
            continue;
        }
        out.entry(key.clone())
            .or_insert_with(|| Group {
                namespace: key.0,
                name: key.1,
                pods: Vec::new(),
            })
            .pods
            .push((p.netns.clone(), p.meshed));
    }
    out.into_values().collect()
}

/// One line of the answer.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    pub name: String,
    pub direction: Direction,
    pub meshed_pods: usize,
    pub pods: usize,
    #[serde(flatten)]
    pub stats: Stats,
}

/// The directions (and peer filters) the query shows: both, or only the side `--from`/`--to`
/// names.
pub fn filters(query: &Query) -> Vec<Filter> {
    let mut out = Vec::new();
    if query.to.is_none() || query.from.is_some() {
        out.push(Filter {
            direction: Direction::Inbound,
            peer: query.from.clone(),
        });
    }
    if query.from.is_none() || query.to.is_some() {
        out.push(Filter {
            direction: Direction::Outbound,
            peer: query.to.clone(),
        });
    }
    out
}

/// The rows for `groups` from two scrapes `secs` apart (scrapes by network namespace; a pod
/// missing from either contributes nothing).
pub fn rows(
    groups: &[Group],
    before: &HashMap<String, Scrape>,
    after: &HashMap<String, Scrape>,
    secs: f64,
    filters: &[Filter],
) -> Vec<Row> {
    let mut out = Vec::new();
    for g in groups {
        for f in filters {
            let mut t = Traffic::default();
            for (netns, _) in &g.pods {
                if let (Some(b), Some(a)) = (before.get(netns), after.get(netns)) {
                    t.add(&Traffic::between(b, a, f));
                }
            }
            out.push(Row {
                namespace: g.namespace.clone(),
                name: g.name.clone(),
                direction: f.direction,
                meshed_pods: g.pods.iter().filter(|(_, m)| *m).count(),
                pods: g.pods.len(),
                stats: Stats::of(&t, secs),
            });
        }
    }
    out
}

/// Scrapes every meshed pod of `groups` at once: each answer, or why there is none.
pub fn scrape(pods: &[&PodState]) -> HashMap<String, Result<Scrape, String>> {
    std::thread::scope(|s| {
        let handles: Vec<_> = pods
            .iter()
            .map(|p| {
                s.spawn(move || {
                    let got = match sys::http_get(&p.netns, METRICS, METRICS_PATH, SCRAPE_TIMEOUT) {
                        Ok((200, body)) => Ok(Scrape::parse(&body)),
                        Ok((status, _)) => Err(format!("answered {status} on {METRICS_PATH}")),
                        Err(e) => Err(e.to_string()),
                    };
                    (p.netns.clone(), got)
                })
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    })
}

/// `sinewctl stat`.
pub fn stat(run: &Run, query: &Query) -> anyhow::Result<()> {
    if !sys::is_root() {
        bail!(
            "`sinewctl stat` needs root to reach the proxies inside the pods' network namespaces (run it with sudo)"
        );
    }
    let terminal = std::io::stdout().is_terminal();
    let state = run.load_state()?;
    let (first, mut before, _) = scrape_ok(run, &state, query);
    if first.is_empty() && !query.watch {
        bail!("{}", nothing_found(query));
    }
    let mut at = Instant::now();
    loop {
        std::thread::sleep(query.window);
        // The pods may have changed while we waited (`apply`, a restart).
        let state = run.load_state()?;
        let (groups, after, problems) = scrape_ok(run, &state, query);
        if groups.is_empty() && !query.watch {
            bail!("{}", nothing_found(query));
        }
        let now = Instant::now();
        let rows = rows(
            &groups,
            &before,
            &after,
            now.duration_since(at).as_secs_f64(),
            &filters(query),
        );
        let mut out = std::io::stdout().lock();
        match query.output {
            Output::Json => {
                writeln!(out, "{}", serde_json::to_string(&rows)?)?;
                // Standard output stays one JSON document per window.
                for p in &problems {
                    eprintln!("{p}");
                }
            }
            Output::Table => {
                if query.watch && terminal {
                    // Home and clear: the refreshed table replaces the last one.
                    write!(out, "\x1b[H\x1b[2J")?;
                }
                write!(out, "{}", table(&rows, query.kind))?;
                for p in &problems {
                    writeln!(out, "{p}")?;
                }
                if query.watch {
                    writeln!(out)?;
                }
            }
        }
        out.flush()?;
        if !query.watch {
            return Ok(());
        }
        (before, at) = (after, now);
    }
}

/// Scrapes the query's pods: the groups, the answers, and a line per pod that did not answer.
fn scrape_ok(
    run: &Run,
    state: &RunState,
    query: &Query,
) -> (Vec<Group>, HashMap<String, Scrape>, Vec<String>) {
    // The objects as the control plane reads them: which Deployment made each pod.
    let snapshot = FileRegistry::load(&run.manifests()).ok();
    let owner = |p: &PodState| {
        snapshot.as_ref().and_then(|s| {
            s.pods()
                .get(&(p.namespace.clone(), p.name.clone()))
                .and_then(|e| e.owner.clone())
        })
    };
    let groups = groups(&state.pods, owner, query);
    let wanted: Vec<&PodState> = state
        .pods
        .iter()
        .filter(|p| {
            p.meshed
                && groups
                    .iter()
                    .any(|g| g.pods.iter().any(|(n, _)| *n == p.netns))
        })
        .collect();
    let mut scrapes = HashMap::new();
    let mut problems = Vec::new();
    for (netns, got) in scrape(&wanted) {
        match got {
            Ok(s) => {
                if s.malformed > 0 {
                    problems.push(format!(
                        "pod {}: {} lines of its proxy's metrics were not understood and are left out",
                        pod_name(&wanted, &netns),
                        s.malformed
                    ));
                }
                scrapes.insert(netns, s);
            }
            Err(e) => {
                problems.push(format!(
                    "pod {}: its proxy's metrics did not answer ({e}); not counted",
                    pod_name(&wanted, &netns)
                ));
            }
        }
    }
    problems.sort();
    (groups, scrapes, problems)
}

/// `namespace/name` of the pod in `netns`.
fn pod_name(pods: &[&PodState], netns: &str) -> String {
    pods.iter()
        .find(|p| p.netns == netns)
        .map_or(netns.to_string(), |p| format!("{}/{}", p.namespace, p.name))
}

fn nothing_found(query: &Query) -> String {
    let what = match query.kind {
        Kind::Deploy => "deployment",
        Kind::Pod => "pod",
        Kind::Namespace => "namespace",
    };
    match (&query.name, &query.namespace) {
        (Some(n), Some(ns)) if query.kind != Kind::Namespace => {
            format!("no {what} {n:?} in namespace {ns:?}")
        }
        (Some(n), _) => format!("no {what} {n:?}"),
        (None, Some(ns)) if query.kind != Kind::Namespace => {
            format!("no {what}s in namespace {ns:?} (-A shows every namespace)")
        }
        (None, _) => format!("no {what}s in this mesh"),
    }
}

/// The table: Linkerd's columns, with a DIRECTION column since both sides are shown.
pub fn table(rows: &[Row], kind: Kind) -> String {
    let with_ns = kind != Kind::Namespace;
    let mut cells: Vec<Vec<String>> = Vec::new();
    let mut head: Vec<String> = Vec::new();
    if with_ns {
        head.push("NAMESPACE".into());
    }
    head.extend(
        [
            "NAME",
            "MESHED",
            "DIRECTION",
            "SUCCESS",
            "RPS",
            "LATENCY_P50",
            "LATENCY_P95",
            "LATENCY_P99",
            "TCP_CONN",
        ]
        .map(String::from),
    );
    cells.push(head);
    for r in rows {
        let s = &r.stats;
        let mut line = Vec::new();
        if with_ns {
            line.push(r.namespace.clone());
        }
        line.extend([
            r.name.clone(),
            format!("{}/{}", r.meshed_pods, r.pods),
            r.direction.to_string(),
            s.success_rate
                .map_or("-".into(), |v| format!("{:.2}%", v * 100.0)),
            format!("{:.1}rps", s.rps),
            ms(s.latency_ms_p50),
            ms(s.latency_ms_p95),
            ms(s.latency_ms_p99),
            format!("{}", s.tcp_connections.round() as u64),
        ]);
        cells.push(line);
    }
    let columns = cells[0].len();
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            cells
                .iter()
                .map(|r| r[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in &cells {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// A latency as Linkerd shows it (whole milliseconds), with a decimal below 10 ms, where a
/// sidecar mesh spends most requests.
fn ms(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(v) if v < 10.0 => format!("{v:.1}ms"),
        Some(v) => format!("{}ms", v.round() as u64),
    }
}

/// The live line of `sinewctl up`: requests every proxy sent (each request counted once, at
/// its caller), over the time since the previous sample.
#[derive(Debug, Default)]
pub struct LiveMeter {
    last: Option<(Instant, HashMap<String, Scrape>)>,
}

// === impl LiveMeter ===

impl LiveMeter {
    /// Scrapes every meshed pod and returns the line to show (blocking; call off the runtime).
    pub fn sample(mut self, state: &RunState) -> (LiveMeter, String) {
        let meshed: Vec<&PodState> = state.pods.iter().filter(|p| p.meshed).collect();
        let now: HashMap<String, Scrape> = scrape(&meshed)
            .into_iter()
            .filter_map(|(netns, s)| Some((netns, s.ok()?)))
            .collect();
        let at = Instant::now();
        let line = match &self.last {
            Some((then, before)) => {
                let secs = at.duration_since(*then).as_secs_f64();
                live_line(before, &now, secs, state.pods.len())
            }
            None => format!("measuring… {} pods", state.pods.len()),
        };
        self.last = Some((at, now));
        (self, line)
    }
}

/// The live line from two scrapes of every proxy.
pub fn live_line(
    before: &HashMap<String, Scrape>,
    after: &HashMap<String, Scrape>,
    secs: f64,
    pods: usize,
) -> String {
    let outbound = Filter::direction(Direction::Outbound);
    let mut t = Traffic::default();
    for (netns, a) in after {
        if let Some(b) = before.get(netns) {
            t.add(&Traffic::between(b, a, &outbound));
        }
    }
    let s = Stats::of(&t, secs);
    let success = s
        .success_rate
        .map_or("-".into(), |v| format!("{:.1}%", v * 100.0));
    format!(
        "{:.1} req/s across the mesh, success {success}, p50 {}, p99 {}, {pods} pods",
        s.rps,
        ms(s.latency_ms_p50),
        ms(s.latency_ms_p99),
    )
}

#[cfg(test)]
mod tests;
