//! `sinewctl up DIR`: the supervisor of a local mesh. It validates the YAML, builds the bridge,
//! starts the control plane, then keeps the pods in line with the applied objects — creating,
//! replacing and removing pods — until Ctrl-C, when it removes everything it made.
//!
//! This module is the supervisor's loop (start-up, reconciliation, teardown); its parts are
//! [`addresses`] (pod IPs and service VIPs), [`handout`] (which addresses the control plane and
//! the pods see, and when), [`console`] (what the user reads) and [`control_plane`] (its process
//! and its start).

mod addresses;
mod console;
mod control_plane;
mod handout;
mod otlp_relay;

pub use control_plane::{AccessLogEncoding, parse_sampling};
pub use otlp_relay::Collector;

use std::collections::{BTreeMap, BTreeSet};
use std::io::IsTerminal as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use sinew_control_plane::app::{AUDIENCE, TOKEN_KEY, TRUST_BUNDLE_FILE};
use sinew_control_plane::auth::LocalTokens;
use sinew_control_plane::registry::SKIPPED_KIND;
use sinew_control_plane::registry::{Debounce, FileRegistry, PodEntry, Snapshot};
use tokio::sync::watch;

use crate::host;
use crate::manifests::{self, Store};
use crate::pod::{self, Env};
use crate::process::{Board, Slot, Supervised};
use crate::stat;
use crate::state::{CONTROL_PLANE_GRPC_PORT, CONTROL_PLANE_IP, PodPhase, Run, now_unix_ms};
use crate::sys;
use addresses::Addresses;
use console::{Console, Invocation};
use handout::Handout;

const TRUST_DOMAIN: &str = "cluster.local";

/// Programs local mode needs on the host, and the Debian package that has each.
const HOST_TOOLS: [(&str, &str); 5] = [
    ("ip", "iproute2"),
    ("iptables", "iptables"),
    ("iptables-restore", "iptables"),
    ("setpriv", "util-linux"),
    ("sysctl", "procps"),
];

pub struct Options {
    pub source: PathBuf,
    pub bin_dir: PathBuf,
    /// A collector on the host the proxies' spans are relayed to.
    pub otlp: Option<Collector>,
    /// Passed on to the control plane's `--trace-sampling`.
    pub trace_sampling: Option<f64>,
    /// Passed on to the control plane's `--access-log --access-log-encoding`.
    pub access_log: Option<AccessLogEncoding>,
}

/// Root, the host tools and our binaries: checked before anything is created.
pub fn preflight(bin_dir: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    if !sys::is_root() {
        bail!(
            "local mode needs root: it creates network namespaces and iptables rules (run it with sudo)"
        );
    }
    let missing: Vec<String> = HOST_TOOLS
        .iter()
        .filter(|(tool, _)| sys::which(tool).is_none())
        .map(|(tool, pkg)| format!("{tool} (apt-get install {pkg})"))
        .collect();
    if !missing.is_empty() {
        bail!("missing on this machine: {}", missing.join(", "));
    }
    let find = |name: &str| -> anyhow::Result<PathBuf> {
        let p = bin_dir.join(name);
        if p.is_file() {
            Ok(p)
        } else {
            bail!(
                "{} not found (build it with `cargo build -p {name}`, or point --bin-dir at where it is)",
                p.display()
            )
        }
    };
    Ok((find("sinew-proxy")?, find("sinew-control-plane")?))
}

pub async fn up(run: Run, opts: Options) -> anyhow::Result<()> {
    let started = Instant::now();
    let (proxy_bin, cp_bin) = preflight(&opts.bin_dir)?;
    let console = Console::stdout();
    let how = invocation(&run);
    let docs = manifests::read_inputs(std::slice::from_ref(&opts.source))?;
    // Changes the directory ships for later (the demo's policy.yaml): said once per file.
    let (held, docs): (Vec<_>, Vec<_>) = docs.into_iter().partition(manifests::skipped_on_up);
    let mut held_files: BTreeMap<&Path, Vec<String>> = BTreeMap::new();
    for d in &held {
        let place = if d.namespace.is_empty() {
            d.name.clone()
        } else {
            format!("{}/{}", d.namespace, d.name)
        };
        held_files
            .entry(d.origin.file().unwrap_or(Path::new("")))
            .or_default()
            .push(format!("{} {place}", d.kind));
    }
    for (file, objects) in held_files {
        console.say(&console::held_file(file, &objects, &how));
    }
    // From here on this process is the run's supervisor (or it stops: another one is).
    let _lock = run.claim()?;
    let swept = crate::down::sweep_leftovers(&run).await;
    if !swept.is_empty() {
        console.say(&format!("removed what an earlier run left behind: {swept}"));
    }
    // The whole set is checked before anything runs; a mistake leaves nothing behind.
    if let Err(e) = Store::new(run.manifests()).apply(&docs) {
        let _ = std::fs::remove_dir_all(&run.dir);
        return Err(e);
    }
    for w in manifests::unused_warnings(&docs) {
        console.say(&w);
    }

    let (shutdown_tx, shutdown) = watch::channel(false);
    tokio::spawn(async move {
        sinew_control_plane::app::shutdown_signal().await;
        let _ = shutdown_tx.send(true);
        // A second Ctrl-C while cleaning up is ignored: leaving half the mesh would be worse.
        loop {
            sinew_control_plane::app::shutdown_signal().await;
            eprintln!("sinew: still cleaning up, one moment");
        }
    });

    let mut mesh = Mesh::new(run.clone(), Board::default(), console, how);
    let result = mesh.run(&opts, proxy_bin, cp_bin, started, shutdown).await;
    if let Err(e) = &result {
        eprintln!("sinewctl: {e:#}");
    }
    mesh.console.say("stopping");
    let removed = mesh.tear_down().await;
    mesh.console
        .say(&format!("removed {removed}; nothing of this run is left"));
    result.map_err(|_| anyhow::anyhow!("local mesh {:?} stopped after an error", run.name))
}

/// How the user runs us, for the commands we suggest.
fn invocation(run: &Run) -> Invocation {
    Invocation {
        me: crate::invoked_as(),
        name_flag: if run.name == "local" {
            String::new()
        } else {
            format!(" --name {}", run.name)
        },
    }
}

/// A pod, by `(namespace, name)`.
type PodKey = (String, String);

/// A running pod as the supervisor tracks it.
struct Running {
    handle: pod::Handle,
    digest: String,
}

/// The supervisor's view of the mesh.
struct Mesh {
    run: Run,
    board: Board,
    control_plane: Option<Supervised>,
    /// Carries the proxies' spans to the host's collector (`--otlp-endpoint`).
    relay: Option<tokio::task::JoinHandle<()>>,
    pods: BTreeMap<PodKey, Running>,
    /// Names each new pod's veth on the bridge (`v<index>`), never reused within a run.
    next_index: u32,
    /// What every pod needs from the run; set once the control plane runs.
    env: Option<std::sync::Arc<Env>>,
    created_netns: bool,
    /// The last snapshot reconciled.
    snapshot: Option<Snapshot>,
    addresses: Addresses,
    handout: Handout,
    console: Console,
    how: Invocation,
}

// === impl Mesh ===

impl Mesh {
    fn new(run: Run, board: Board, console: Console, how: Invocation) -> Mesh {
        Mesh {
            handout: Handout::new(run.clone()),
            run,
            board,
            control_plane: None,
            relay: None,
            pods: BTreeMap::new(),
            next_index: 1,
            env: None,
            created_netns: false,
            snapshot: None,
            addresses: Addresses::default(),
            console,
            how,
        }
    }

    async fn run(
        &mut self,
        opts: &Options,
        proxy_bin: PathBuf,
        cp_bin: PathBuf,
        started: Instant,
        mut shutdown: watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        let run = self.run.clone();
        let first = FileRegistry::load(&run.manifests())?;
        let meshed = first
            .pods()
            .values()
            .filter(|p| gets_sidecar(&first, p))
            .count();
        self.console.say(&format!(
            "local mesh {:?} from {}: {} namespaces, {} services, {} pods ({meshed} meshed)",
            run.name,
            opts.source.display(),
            first.namespaces().len(),
            first.services().len(),
            first.pods().len(),
        ));
        // Skipped kinds were announced above against the user's own files.
        for w in first
            .warnings()
            .iter()
            .filter(|w| !w.ends_with(SKIPPED_KIND))
        {
            self.console.say(&format!("warning: {w}"));
        }

        self.board.update(|s| {
            s.run = run.name.clone();
            s.supervisor_pid = std::process::id();
            s.source = opts.source.display().to_string();
            s.bin_dir = opts.bin_dir.clone();
            s.started_unix_ms = now_unix_ms();
            s.control_plane_address =
                SocketAddr::new(CONTROL_PLANE_IP.into(), CONTROL_PLANE_GRPC_PORT).to_string();
            s.control_plane_netns = run.control_plane_netns();
        });
        self.save();

        // Addresses first, so the control plane's first snapshot already has them: a proxy asking
        // about a VIP must never hear "no such service" merely because of start-up order.
        let mut errors = self.addresses.assign(&first);
        errors.extend(self.publish(&first, &BTreeSet::new()).await);
        for e in errors {
            self.console.report(e);
        }

        // The network: a bridge, and the control plane attached to it like a pod.
        self.created_netns = true;
        host::create_bridge(&run.bridge_netns()).await?;
        host::create_pod_netns(
            &run.bridge_netns(),
            &run.control_plane_netns(),
            0,
            CONTROL_PLANE_IP,
        )
        .await?;

        // Before the control plane, so the first proxy to export finds the relay listening.
        let (relay_tx, mut relay_events) = tokio::sync::mpsc::channel(16);
        let mut telemetry = control_plane::Telemetry {
            otlp_endpoint: None,
            trace_sampling: opts.trace_sampling,
            access_log: opts.access_log,
        };
        if let Some(collector) = &opts.otlp {
            let at = otlp_relay::listen_address();
            let listener = sys::listen_in(&run.control_plane_netns(), at)
                .and_then(tokio::net::TcpListener::from_std)
                .with_context(|| format!("cannot listen on {at} for the OTLP relay"))?;
            self.relay = Some(tokio::spawn(otlp_relay::serve(
                listener,
                collector.clone(),
                otlp_relay::Limits::default(),
                relay_tx,
            )));
            telemetry.otlp_endpoint = Some(format!("http://{at}"));
            self.console
                .say(&format!("spans go to {collector}, relayed from {at}"));
        }

        let cp_dir = run.control_plane_dir();
        std::fs::create_dir_all(&cp_dir)?;
        std::fs::set_permissions(&cp_dir, std::fs::Permissions::from_mode(0o755))?;
        let tokens = LocalTokens::load_or_create(&cp_dir.join(TOKEN_KEY), AUDIENCE)?;
        let cp_started = Instant::now();
        let cp_log = cp_dir.join("control-plane.log");
        self.board.update(|s| {
            s.control_plane.name = "control-plane".into();
            s.control_plane.log = cp_log.clone();
        });
        self.control_plane = Some(Supervised::spawn(
            control_plane::spec(&run, &cp_bin, &cp_dir, &cp_log, &telemetry),
            Slot::ControlPlane,
            self.board.clone(),
        ));
        let (cp_netns, trust_bundle) = (run.control_plane_netns(), cp_dir.join(TRUST_BUNDLE_FILE));
        tokio::select! {
            r = control_plane::wait_ready(&cp_netns, &trust_bundle) => {
                r.with_context(|| format!("the control plane did not start; its log: {}", cp_log.display()))?
            }
            _ = shutdown.wait_for(|s| *s) => return Ok(()),
        }
        self.console.say(&format!(
            "control plane {CONTROL_PLANE_IP}:{CONTROL_PLANE_GRPC_PORT} ready in {} ms",
            cp_started.elapsed().as_millis()
        ));

        let (mut snapshots, _registry) = FileRegistry::spawn(
            run.manifests(),
            Some(run.assignments()),
            Debounce::default(),
        )
        .await?;
        self.handout.open_to_pods();
        self.env = Some(std::sync::Arc::new(Env {
            bridge_netns: run.bridge_netns(),
            proxy_bin,
            bin_dir: opts.bin_dir.clone(),
            control_plane_address: SocketAddr::new(
                CONTROL_PLANE_IP.into(),
                CONTROL_PLANE_GRPC_PORT,
            )
            .to_string(),
            trust_bundle: cp_dir.join(TRUST_BUNDLE_FILE),
            tokens,
            trust_domain: TRUST_DOMAIN.into(),
        }));
        let snapshot = snapshots.borrow_and_update().clone();
        self.reconcile(&snapshot).await;

        let live = std::io::stdout().is_terminal();
        self.console.set_live(live);
        let mut ticker = tokio::time::interval(Duration::from_secs(1));
        let mut traffic = stat::LiveMeter::default();
        loop {
            tokio::select! {
                _ = shutdown.wait_for(|s| *s) => break,
                // Said once per outage by the relay itself (an outage may recur: not `report`).
                Some(event) = relay_events.recv() => self.console.say(&event),
                changed = snapshots.changed() => {
                    if changed.is_err() {
                        bail!("the registry watcher stopped");
                    }
                    let snapshot = snapshots.borrow_and_update().clone();
                    self.reconcile(&snapshot).await;
                }
                () = self.board.changed() => {
                    self.save();
                    self.republish_if_readiness_changed().await;
                    let running = self.running();
                    let pods = &self.pods;
                    self.console.announce_ready(&running, |k| pods.contains_key(k));
                    if !self.console.announced() && self.settled() {
                        self.board.update(|s| s.ready = true);
                        self.save();
                        let elapsed = started.elapsed().as_secs_f64();
                        self.console.announce(&self.board.get(), elapsed, &self.how);
                    }
                }
                _ = ticker.tick(), if self.console.shows_live_line() => {
                    let state = self.board.get();
                    let meter = std::mem::take(&mut traffic);
                    let line = tokio::task::spawn_blocking(move || meter.sample(&state)).await;
                    if let Ok((meter, line)) = line {
                        traffic = meter;
                        self.console.live_line(&line);
                    }
                }
            }
        }
        self.console.finish();
        Ok(())
    }

    fn save(&self) {
        let state = self.board.get();
        if let Err(e) = self.run.save_state(&state) {
            eprintln!("sinewctl: {e:#}");
        }
    }

    /// The pods that run: sidecar ready, containers started.
    fn running(&self) -> BTreeSet<PodKey> {
        self.board
            .get()
            .pods
            .into_iter()
            .filter(|p| p.phase == PodPhase::Running)
            .map(|p| (p.namespace, p.name))
            .collect()
    }

    /// Every pod has started (or failed to): time to say so.
    fn settled(&self) -> bool {
        let state = self.board.get();
        state.pods.len() == self.pods.len()
            && state
                .pods
                .iter()
                .all(|p| matches!(p.phase, PodPhase::Running | PodPhase::Failed(_)))
    }

    /// Hands out the current addresses with the running pods but `leaving` as endpoints.
    async fn publish(&mut self, snapshot: &Snapshot, leaving: &BTreeSet<PodKey>) -> Vec<String> {
        let ready = self.running().difference(leaving).cloned().collect();
        self.handout
            .publish(snapshot, self.addresses.current(), ready)
            .await
    }

    /// Brings pods, addresses, hosts files and service rules in line with `snapshot`.
    async fn reconcile(&mut self, snapshot: &Snapshot) {
        let Some(env) = self.env.clone() else {
            return;
        };
        self.snapshot = Some(snapshot.clone());
        let mut errors = self.addresses.assign(snapshot);
        let source = snapshot;
        let snapshot = snapshot.with_assignments(self.addresses.current());
        self.console
            .set_try_hint(console::try_hint(&snapshot, |p| gets_sidecar(&snapshot, p)));
        errors.extend(manifests::check_addresses(&snapshot, |o| o.to_string()));

        // Pods: stop the removed and the changed (in parallel), then start the new.
        let mut desired = BTreeMap::new();
        for (key, pod) in snapshot.pods() {
            if pod
                .object
                .spec
                .as_ref()
                .and_then(|s| s.host_network)
                .unwrap_or(false)
            {
                self.console.report(format!(
                    "pod {}/{}: hostNetwork pods are not run in local mode",
                    key.0, key.1
                ));
                continue;
            }
            let Some(IpAddr::V4(ip)) = pod.ip else {
                continue;
            };
            let meshed = gets_sidecar(&snapshot, pod);
            desired.insert(key.clone(), (pod, meshed, ip, digest(pod, meshed, ip)));
        }
        let stale: Vec<PodKey> = self
            .pods
            .iter()
            .filter(|(k, r)| desired.get(*k).is_none_or(|d| d.3 != r.digest))
            .map(|(k, _)| k.clone())
            .collect();
        // Out of the endpoints first, then stopped — once sidecars and pods have the change.
        let leaving: BTreeSet<PodKey> = stale.iter().cloned().collect();
        let were_endpoints = leaving
            .iter()
            .any(|k| self.handout.published_ready().contains(k));
        errors.extend(self.publish(source, &leaving).await);
        if were_endpoints && let Some(problem) = self.handout.drained(&self.board, &leaving).await {
            self.console.report(problem);
        }
        let stops: Vec<_> = stale
            .iter()
            .filter_map(|k| self.pods.remove(k))
            .map(|r| tokio::spawn(r.handle.stop()))
            .collect();
        for (ns, name) in &stale {
            let verb = if desired.contains_key(&(ns.clone(), name.clone())) {
                "changed; restarting"
            } else {
                "deleted"
            };
            self.console.say(&format!("pod {ns}/{name} {verb}"));
        }
        for s in stops {
            let _ = s.await;
        }
        for (key, (pod, meshed, ip, digest)) in desired {
            if self.pods.contains_key(&key) {
                continue;
            }
            let index = self.next_index;
            self.next_index += 1;
            let netns = self.run.pod_netns(&key.0, &key.1);
            let dir = self.run.pod_dir(&key.0, &key.1);
            match pod::plan(pod, meshed, netns, index, ip, dir, &env) {
                Ok(plan) => {
                    for w in &plan.warnings {
                        self.console.report(format!("pod {}/{}: {w}", key.0, key.1));
                    }
                    self.console
                        .starting(&key, &plan.ip.to_string(), plan.identity.as_deref());
                    let net = self.handout.subscribe();
                    let handle = pod::start(plan, env.clone(), net, self.board.clone());
                    self.pods.insert(key, Running { handle, digest });
                }
                Err(e) => errors.push(format!("{e:#}")),
            }
        }
        for e in &errors {
            self.console.report(e.clone());
        }
        self.board.update(|s| s.errors = errors);
    }

    /// A pod became ready (or stopped being so): hand its address out (or take it back). Pods
    /// may become ready while a hand-out waits for the control plane, so it repeats until
    /// what was handed out is what runs.
    async fn republish_if_readiness_changed(&mut self) {
        loop {
            if &self.running() == self.handout.published_ready() {
                return;
            }
            let Some(snapshot) = self.snapshot.clone() else {
                return;
            };
            for e in self.publish(&snapshot, &BTreeSet::new()).await {
                self.console.report(e);
            }
        }
    }

    /// Stops everything in order (pods, then the control plane), removes the network and the
    /// run's files, and sweeps for anything a failure left behind. Says what it removed.
    async fn tear_down(&mut self) -> String {
        let pods = self.pods.len();
        let stops: Vec<_> = std::mem::take(&mut self.pods)
            .into_values()
            .map(|r| tokio::spawn(r.handle.stop()))
            .collect();
        for s in stops {
            let _ = s.await;
        }
        if let Some(cp) = self.control_plane.take() {
            cp.stop(Duration::from_secs(5)).await;
        }
        if let Some(relay) = self.relay.take() {
            relay.abort();
            let _ = relay.await;
        }
        if self.created_netns {
            host::delete_netns(&self.run.control_plane_netns(), Duration::from_secs(2)).await;
            host::delete_netns(&self.run.bridge_netns(), Duration::from_secs(2)).await;
        }
        let mut swept = crate::down::sweep(&self.run).await;
        // Removing the run's directory is the plan, not a leftover.
        swept.state_dir = false;
        let mut out = format!("{pods} pods, the control plane, the bridge and the run's files");
        if !swept.is_empty() {
            out.push_str(&format!(" (and {swept})"));
        }
        out
    }
}

/// Local mode's injection decision for `pod`, made with the injector's rule (see
/// [`pod::injects_sidecar`]).
fn gets_sidecar(snapshot: &Snapshot, pod: &PodEntry) -> bool {
    pod::injects_sidecar(pod, snapshot.namespaces().get(&pod.namespace))
}

/// What identifies a pod's spec, sidecar and address: a change restarts the pod, as a new
/// ReplicaSet would.
fn digest(pod: &PodEntry, meshed: bool, ip: Ipv4Addr) -> String {
    serde_json::to_string(&(&*pod.object, meshed, ip)).unwrap_or_default()
}

#[cfg(test)]
mod tests;
