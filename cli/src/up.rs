//! `sinewctl up DIR`: the supervisor of a local mesh. It validates the YAML, builds the bridge,
//! starts the control plane, then keeps the pods in line with the applied objects — creating,
//! replacing and removing pods, assigning addresses, rewriting hosts files and service rules —
//! until Ctrl-C, when it removes everything it made.

use std::collections::{BTreeMap, BTreeSet};
use std::io::IsTerminal as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use sinew_control_plane::app::{AUDIENCE, TOKEN_KEY, TRUST_BUNDLE_FILE};
use sinew_control_plane::auth::LocalTokens;
use sinew_control_plane::registry::SKIPPED_KIND;
use sinew_control_plane::registry::{
    Assignments, Debounce, FileRegistry, PodEntry, Snapshot, TargetPort,
};
use tokio::sync::watch;

use crate::host::{self, ServiceRoute};
use crate::manifests::{self, Store};
use crate::pod::{self, Env, NetView};
use crate::process::{Board, RestartPolicy, Slot, Spec, Supervised};
use crate::state::{
    CONTROL_PLANE_GRPC_PORT, CONTROL_PLANE_IP, CONTROL_PLANE_MONITORING_PORT, POD_CIDR, POD_RANGE,
    Run, VIP_CIDR, VIP_RANGE, now_unix_ms,
};
use crate::status;
use crate::sys;

/// How long the control plane gets to answer `/ready`.
const CONTROL_PLANE_START: Duration = Duration::from_secs(30);
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
        println!(
            "sinew: {} is left out ({}: annotated {}); `{}{} apply -f {}` applies it",
            file.display(),
            objects.join(", "),
            manifests::SKIP_ON_UP,
            crate::invoked_as(),
            name_flag(&run),
            file.display()
        );
    }
    // From here on this process is the run's supervisor (or it stops: another one is).
    let _lock = run.claim()?;
    let swept = crate::down::sweep_leftovers(&run).await;
    if !swept.is_empty() {
        println!("sinew: removed what an earlier run left behind: {swept}");
    }
    // The whole set is checked before anything runs; a mistake leaves nothing behind.
    if let Err(e) = Store::new(run.manifests()).apply(&docs) {
        let _ = std::fs::remove_dir_all(&run.dir);
        return Err(e);
    }
    for w in manifests::unused_warnings(&docs) {
        println!("sinew: {w}");
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

    let board = Board::default();
    let mut mesh = Mesh::new(run.clone(), board.clone());
    let result = mesh.run(&opts, proxy_bin, cp_bin, started, shutdown).await;
    if let Err(e) = &result {
        eprintln!("sinewctl: {e:#}");
    }
    println!("sinew: stopping");
    let removed = mesh.tear_down().await;
    println!("sinew: removed {removed}; nothing of this run is left");
    result.map_err(|_| anyhow::anyhow!("local mesh {:?} stopped after an error", run.name))
}

fn name_flag(run: &Run) -> String {
    if run.name == "local" {
        String::new()
    } else {
        format!(" --name {}", run.name)
    }
}

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
    pods: BTreeMap<(String, String), Running>,
    assignments: Assignments,
    next_index: u32,
    net: Option<watch::Sender<Arc<NetView>>>,
    env: Option<Arc<Env>>,
    /// Messages already printed, so a problem is reported once, not on every reload.
    reported: BTreeSet<String>,
    created_netns: bool,
    /// A pod and a service URL for the "Try:" hint.
    try_hint: Option<(String, String, String)>,
    /// The start-up summary has been printed: later pods are announced one by one.
    announced: bool,
    /// Pods announced as starting after that, until they are announced ready.
    starting: BTreeMap<(String, String), Instant>,
    /// Stdout is a terminal showing the live line, which events must clear first.
    live: bool,
    /// The last snapshot reconciled, and the ready pods whose addresses were last handed out.
    snapshot: Option<Snapshot>,
    published_ready: BTreeSet<(String, String)>,
    /// The last services view published to pods, and the newest registry generation the
    /// control plane was seen serving a handed-out change with.
    view_seq: u64,
    served_generation: u64,
}

impl Mesh {
    fn new(run: Run, board: Board) -> Mesh {
        Mesh {
            run,
            board,
            control_plane: None,
            pods: BTreeMap::new(),
            assignments: Assignments::default(),
            next_index: 1,
            net: None,
            env: None,
            reported: BTreeSet::new(),
            created_netns: false,
            try_hint: None,
            announced: false,
            starting: BTreeMap::new(),
            live: false,
            snapshot: None,
            published_ready: BTreeSet::new(),
            view_seq: 0,
            served_generation: 0,
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
        let meshed = first.pods().values().filter(|p| p.meshed).count();
        println!(
            "sinew: local mesh {:?} from {}: {} namespaces, {} services, {} pods ({meshed} meshed)",
            run.name,
            opts.source.display(),
            first.namespaces().len(),
            first.services().len(),
            first.pods().len(),
        );
        // Skipped kinds were announced above against the user's own files.
        for w in first
            .warnings()
            .iter()
            .filter(|w| !w.ends_with(SKIPPED_KIND))
        {
            println!("sinew: warning: {w}");
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
        let mut errors = self.assign(&first);
        errors.extend(self.publish(&first, &BTreeSet::new()).await);
        for e in errors {
            self.report(e);
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
            Spec {
                name: "control-plane".into(),
                netns: run.control_plane_netns(),
                user: None,
                argv: vec![
                    cp_bin.display().to_string(),
                    "serve".into(),
                    "--registry".into(),
                    run.manifests().display().to_string(),
                    "--assignments".into(),
                    run.assignments().display().to_string(),
                    "--state-dir".into(),
                    cp_dir.display().to_string(),
                    "--listen".into(),
                    SocketAddr::new(CONTROL_PLANE_IP.into(), CONTROL_PLANE_GRPC_PORT).to_string(),
                    "--monitoring".into(),
                    SocketAddr::new(CONTROL_PLANE_IP.into(), CONTROL_PLANE_MONITORING_PORT)
                        .to_string(),
                    "--service-cidr".into(),
                    VIP_CIDR.into(),
                    "--pod-cidr".into(),
                    POD_CIDR.into(),
                ],
                env: vec![
                    ("PATH".into(), "/usr/sbin:/usr/bin:/sbin:/bin".into()),
                    ("NO_COLOR".into(), "1".into()),
                ],
                cwd: PathBuf::from("/"),
                log: cp_log.clone(),
                restart: RestartPolicy::Always,
            },
            Slot::ControlPlane,
            self.board.clone(),
        ));
        let (cp_netns, trust_bundle) = (run.control_plane_netns(), cp_dir.join(TRUST_BUNDLE_FILE));
        tokio::select! {
            r = wait_control_plane(&cp_netns, &trust_bundle) => {
                r.with_context(|| format!("the control plane did not start; its log: {}", cp_log.display()))?
            }
            _ = shutdown.wait_for(|s| *s) => return Ok(()),
        }
        println!(
            "sinew: control plane {CONTROL_PLANE_IP}:{CONTROL_PLANE_GRPC_PORT} ready in {} ms",
            cp_started.elapsed().as_millis()
        );

        let (mut snapshots, _registry) = FileRegistry::spawn(
            run.manifests(),
            Some(run.assignments()),
            Debounce::default(),
        )
        .await?;
        let (net_tx, _) = watch::channel(Arc::new(NetView::default()));
        self.net = Some(net_tx);
        self.env = Some(Arc::new(Env {
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
        self.live = live;
        let mut ticker = tokio::time::interval(Duration::from_secs(1));
        let mut traffic = status::TrafficMeter::default();
        loop {
            tokio::select! {
                _ = shutdown.wait_for(|s| *s) => break,
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
                    self.announce_ready();
                    if !self.announced && self.settled() {
                        self.announced = true;
                        self.board.update(|s| s.ready = true);
                        self.save();
                        self.announce(started);
                    }
                }
                _ = ticker.tick(), if live && self.announced => {
                    let state = self.board.get();
                    let meter = std::mem::take(&mut traffic);
                    let line = tokio::task::spawn_blocking(move || meter.sample(&state)).await;
                    if let Ok((meter, line)) = line {
                        traffic = meter;
                        print!("\r\x1b[2K{line}");
                        let _ = std::io::Write::flush(&mut std::io::stdout());
                    }
                }
            }
        }
        if live {
            println!();
        }
        Ok(())
    }

    fn save(&self) {
        let state = self.board.get();
        if let Err(e) = self.run.save_state(&state) {
            eprintln!("sinewctl: {e:#}");
        }
    }

    /// The pods that run: sidecar ready, containers started.
    fn running(&self) -> BTreeSet<(String, String)> {
        self.board
            .get()
            .pods
            .into_iter()
            .filter(|p| p.phase == "Running")
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
                .all(|p| p.phase == "Running" || p.phase.starts_with("Failed"))
    }

    fn announce(&self, started: Instant) {
        let state = self.board.get();
        let (me, flag) = (crate::invoked_as(), name_flag(&self.run));
        for p in &state.pods {
            let mesh = match (&p.identity, p.proxy_ready_ms) {
                (Some(id), Some(ms)) => format!("{id}, proxy ready in {ms} ms"),
                (Some(id), None) => id.clone(),
                (None, _) => "not meshed".into(),
            };
            println!("sinew: pod {}/{} {} {mesh}", p.namespace, p.name, p.ip);
        }
        let running = state.pods.iter().filter(|p| p.phase == "Running").count();
        let elapsed = started.elapsed().as_secs_f64();
        if running == state.pods.len() {
            println!("sinew: all {running} pods running, {elapsed:.1} s after start");
        } else {
            println!(
                "sinew: {running} of {} pods running, {elapsed:.1} s after start; `{me}{flag} status` says why",
                state.pods.len()
            );
        }
        println!("\nTry:");
        if let Some((ns, pod, url)) = &self.try_hint {
            println!("  {me}{flag} exec -n {ns} {pod} -- curl -s {url}");
            println!("  {me}{flag} logs -n {ns} {pod} -c proxy");
            println!(
                "  {me}{flag} proxy-config -n {ns} {pod}   (the routes, policy and endpoint health its proxy uses)"
            );
        }
        println!("  {me}{flag} status");
        println!("  {me}{flag} apply -f FILE      (changes take effect live)");
        println!("Ctrl-C (or `{me}{flag} down`) stops the mesh and removes everything.\n");
    }

    /// Keeps the addresses already assigned, gives new pods and services the next free ones,
    /// and writes the assignments file the control plane reads when anything changed.
    fn assign(&mut self, snapshot: &Snapshot) -> Vec<String> {
        let mut errors = Vec::new();
        // Addresses: keep what is assigned, give new objects the next free one.
        let mut assignments = Assignments::default();
        let mut used: BTreeSet<Ipv4Addr> = BTreeSet::new();
        used.insert(CONTROL_PLANE_IP);
        for pod in snapshot.pods().values() {
            if let Some(IpAddr::V4(ip)) = pod.declared_ip {
                used.insert(ip);
            }
        }
        for svc in snapshot.services().values() {
            if let Some(IpAddr::V4(ip)) = svc.declared_cluster_ip {
                used.insert(ip);
            }
        }
        // An address assigned earlier stays with its object, unless the YAML now claims it for
        // another one: then the object gets a new address (and a pod is restarted with it).
        let claimed = used.clone();
        let keep = |ip: &IpAddr| matches!(ip, IpAddr::V4(v4) if !claimed.contains(v4));
        self.assignments
            .pod_ips
            .retain(|key, ip| snapshot.pods().contains_key(key) && keep(ip));
        self.assignments
            .service_vips
            .retain(|key, ip| snapshot.services().contains_key(key) && keep(ip));
        for ip in self
            .assignments
            .pod_ips
            .values()
            .chain(self.assignments.service_vips.values())
        {
            if let IpAddr::V4(v4) = ip {
                used.insert(*v4);
            }
        }
        for (key, pod) in snapshot.pods() {
            if pod.declared_ip.is_some() {
                continue;
            }
            let ip = self.assignments.pod_ips.get(key).copied().or_else(|| {
                let ip = next_free(&mut used, POD_RANGE)?;
                Some(IpAddr::V4(ip))
            });
            match ip {
                Some(ip) => {
                    assignments.pod_ips.insert(key.clone(), ip);
                }
                None => errors.push(format!("pod {}/{}: no free address left", key.0, key.1)),
            }
        }
        for (key, svc) in snapshot.services() {
            if svc.headless || svc.declared_cluster_ip.is_some() {
                continue;
            }
            let vip = self.assignments.service_vips.get(key).copied().or_else(|| {
                let ip = next_free(&mut used, VIP_RANGE)?;
                Some(IpAddr::V4(ip))
            });
            if let Some(vip) = vip {
                assignments.service_vips.insert(key.clone(), vip);
            }
        }
        self.assignments = assignments;
        errors
    }

    /// Hands addresses out: the assignments file (the control plane's endpoints) and what pods
    /// see (hosts files, service rules). Every service VIP, but only the pod IPs of pods that
    /// run (sidecar ready, containers started) and are not being stopped: endpoints are ready
    /// pods, as in Kubernetes, so no one dials a sidecar that is not up yet or going away.
    async fn publish(
        &mut self,
        snapshot: &Snapshot,
        leaving: &BTreeSet<(String, String)>,
    ) -> Vec<String> {
        let mut errors = Vec::new();
        let ready: BTreeSet<(String, String)> =
            self.running().difference(leaving).cloned().collect();
        let mut published = self.assignments.clone();
        published.pod_ips.retain(|k, _| ready.contains(k));
        self.published_ready = ready;
        let path = self.run.assignments();
        let unchanged = std::fs::read_to_string(&path).is_ok_and(|t| t == published.to_yaml());
        if !unchanged && let Err(e) = published.write_file(&path) {
            errors.push(format!("cannot write {}: {e}", path.display()));
        }
        if self.net.is_none() {
            return errors;
        }
        // Pods see a change (hosts files, service rules) only once discovery serves it: a new
        // VIP handed out early could make a proxy hear "no such service" from a control plane a
        // moment behind, and pass the request through in plaintext; a new endpoint announced
        // early would be dialled by pods but not by proxies.
        let assigned = snapshot.with_assignments(&published);
        let mut view = net_view(&assigned);
        let changed: Vec<(String, BTreeSet<String>)> = {
            let current = self.net.as_ref().map(|n| n.borrow().clone());
            view.routes
                .iter()
                .filter(|r| current.as_ref().is_none_or(|c| !c.routes.contains(r)))
                .map(|r| {
                    let endpoints = r.endpoints.iter().map(|(ip, port)| format!("{ip}:{port}"));
                    (format!("{}:{}", r.vip, r.port), endpoints.collect())
                })
                .collect()
        };
        match wait_served(&self.run.control_plane_netns(), changed).await {
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
        if let Some(net) = &self.net
            && !net.borrow().same_as(&view)
        {
            self.view_seq += 1;
            view.seq = self.view_seq;
            net.send_replace(Arc::new(view));
        }
        errors
    }

    /// Waits (bounded) until a change handed out is in force everywhere: every proxy has been
    /// sent the control plane's config of that moment, and every running pod but `leaving` has
    /// applied its hosts file and service rules. What a preStop delay guesses at in a cluster.
    async fn drained(&mut self, leaving: &BTreeSet<(String, String)>) {
        let addr = SocketAddr::new(CONTROL_PLANE_IP.into(), CONTROL_PLANE_MONITORING_PORT);
        let deadline = Instant::now() + DRAIN_WAIT;
        loop {
            let pods_done = self.board.get().pods.iter().all(|p| {
                p.phase != "Running"
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
                serde_json::from_str::<serde_json::Value>(&body).is_ok_and(|json| {
                    json["proxies"].as_array().is_some_and(|proxies| {
                        proxies
                            .iter()
                            .all(|p| p["generation"].as_u64().unwrap_or(0) >= generation)
                    })
                })
            })
            .await
            .unwrap_or(false);
            if pods_done && proxies_done {
                return;
            }
            if Instant::now() > deadline {
                self.report(format!(
                    "a change did not reach every pod and proxy within {DRAIN_WAIT:?}; stopping pods anyway"
                ));
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Brings pods, addresses, hosts files and service rules in line with `snapshot`.
    async fn reconcile(&mut self, snapshot: &Snapshot) {
        let Some(env) = self.env.clone() else {
            return;
        };
        self.snapshot = Some(snapshot.clone());
        let mut errors = self.assign(snapshot);
        let source = snapshot;
        let snapshot = snapshot.with_assignments(&self.assignments);
        // "Try:": a meshed pod calling a service it is not part of.
        self.try_hint = snapshot.services().values().find_map(|svc| {
            let port = svc.ports.first()?.port;
            let port = if port == 80 {
                String::new()
            } else {
                format!(":{port}")
            };
            let client = snapshot
                .pods()
                .values()
                .find(|p| p.meshed && !svc.selects(p))?;
            Some((
                client.namespace.clone(),
                client.name.clone(),
                format!("http://{}.{}{port}/", svc.name, svc.namespace),
            ))
        });
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
                self.report(format!(
                    "pod {}/{}: hostNetwork pods are not run in local mode",
                    key.0, key.1
                ));
                continue;
            }
            let Some(IpAddr::V4(ip)) = pod.ip else {
                continue;
            };
            desired.insert(key.clone(), (pod, ip, digest(pod, ip)));
        }
        let stale: Vec<(String, String)> = self
            .pods
            .iter()
            .filter(|(k, r)| desired.get(*k).is_none_or(|(_, _, d)| *d != r.digest))
            .map(|(k, _)| k.clone())
            .collect();
        // Out of the endpoints first, then stopped — once sidecars and pods have the change.
        let leaving: BTreeSet<(String, String)> = stale.iter().cloned().collect();
        let were_endpoints = leaving.iter().any(|k| self.published_ready.contains(k));
        errors.extend(self.publish(source, &leaving).await);
        if were_endpoints {
            self.drained(&leaving).await;
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
            self.say(&format!("pod {ns}/{name} {verb}"));
        }
        for s in stops {
            let _ = s.await;
        }
        for (key, (pod, ip, digest)) in desired {
            if self.pods.contains_key(&key) {
                continue;
            }
            let index = self.next_index;
            self.next_index += 1;
            let netns = self.run.pod_netns(&key.0, &key.1);
            let dir = self.run.pod_dir(&key.0, &key.1);
            match pod::plan(pod, netns, index, ip, dir, &env) {
                Ok(plan) => {
                    for w in &plan.warnings {
                        self.report(format!("pod {}/{}: {w}", key.0, key.1));
                    }
                    let net = self
                        .net
                        .as_ref()
                        .map(|n| n.subscribe())
                        .unwrap_or_else(|| watch::channel(Arc::new(NetView::default())).1);
                    if self.announced {
                        let who = plan.identity.clone().unwrap_or_else(|| "not meshed".into());
                        self.say(&format!(
                            "pod {}/{} {} starting ({who})",
                            key.0, key.1, plan.ip
                        ));
                        self.starting.insert(key.clone(), Instant::now());
                    }
                    let handle = pod::start(plan, env.clone(), net, self.board.clone());
                    self.pods.insert(key, Running { handle, digest });
                }
                Err(e) => errors.push(format!("{e:#}")),
            }
        }
        for e in &errors {
            self.report(e.clone());
        }
        self.board.update(|s| s.errors = errors);
    }

    /// A pod became ready (or stopped being so): hand its address out (or take it back). Pods
    /// may become ready while a hand-out waits for the control plane, so it repeats until
    /// what was handed out is what runs.
    async fn republish_if_readiness_changed(&mut self) {
        loop {
            if self.running() == self.published_ready {
                return;
            }
            let Some(snapshot) = self.snapshot.clone() else {
                return;
            };
            for e in self.publish(&snapshot, &BTreeSet::new()).await {
                self.report(e);
            }
        }
    }

    /// Pods started after the summary (by `apply`) say when they run, as `up` does for its
    /// first pods: "starting" alone leaves the user guessing.
    fn announce_ready(&mut self) {
        if self.starting.is_empty() {
            return;
        }
        let running = self.running();
        let ready: Vec<_> = self
            .starting
            .keys()
            .filter(|k| running.contains(*k))
            .cloned()
            .collect();
        for key in ready {
            if let Some(since) = self.starting.remove(&key) {
                self.say(&format!(
                    "pod {}/{} ready, {} ms after it started",
                    key.0,
                    key.1,
                    since.elapsed().as_millis()
                ));
            }
        }
        // Deleted or restarted before it was ready: nothing to announce.
        let pods = &self.pods;
        self.starting.retain(|k, _| pods.contains_key(k));
    }

    fn report(&mut self, message: String) {
        if self.reported.insert(message.clone()) {
            self.say(&message);
        }
    }

    /// One event line; on a terminal it replaces the live line, which the next tick redraws.
    fn say(&self, message: &str) {
        if self.live && self.announced {
            print!("\r\x1b[2K");
        }
        println!("sinew: {message}");
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

/// What identifies a pod's spec and address: a change restarts the pod, as a new ReplicaSet
/// would.
fn digest(pod: &PodEntry, ip: Ipv4Addr) -> String {
    serde_json::to_string(&(&*pod.object, pod.meshed, ip)).unwrap_or_default()
}

fn next_free(used: &mut BTreeSet<Ipv4Addr>, (lo, hi): (Ipv4Addr, Ipv4Addr)) -> Option<Ipv4Addr> {
    let ip = (u32::from(lo)..=u32::from(hi))
        .map(Ipv4Addr::from)
        .find(|ip| !used.contains(ip))?;
    used.insert(ip);
    Some(ip)
}

/// Service names for hosts files and VIP rules, from a snapshot with addresses filled in.
fn net_view(snapshot: &Snapshot) -> NetView {
    let mut view = NetView::default();
    for (key, svc) in snapshot.services() {
        let selected: Vec<&PodEntry> = snapshot
            .pods()
            .values()
            .filter(|p| svc.selects(p))
            .collect();
        let v4 = |ip: Option<IpAddr>| match ip {
            Some(IpAddr::V4(v4)) => Some(v4),
            _ => None,
        };
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

/// At most this long between taking a pod out of the endpoints and stopping it.
const DRAIN_WAIT: Duration = Duration::from_secs(2);

/// How long a new VIP may wait for the control plane before it is handed out anyway.
const SERVE_WAIT: Duration = Duration::from_secs(3);

/// Waits (bounded) until discovery serves every `vip:port` in `names` with exactly the given
/// endpoints; the newest registry generation seen serving them.
async fn wait_served(
    netns: &str,
    mut names: Vec<(String, BTreeSet<String>)>,
) -> Result<u64, Vec<String>> {
    let mut generation = 0;
    let addr = SocketAddr::new(CONTROL_PLANE_IP.into(), CONTROL_PLANE_MONITORING_PORT);
    let deadline = Instant::now() + SERVE_WAIT;
    while !names.is_empty() {
        let ns = netns.to_string();
        let asked = names.clone();
        // All names at once, each with a short timeout: one pass takes one round trip.
        let served = tokio::task::spawn_blocking(move || {
            std::thread::scope(|scope| {
                let checks: Vec<_> = asked
                    .iter()
                    .map(|(name, endpoints)| {
                        let ns = &ns;
                        scope
                            .spawn(move || Some((name.clone(), serves(ns, addr, name, endpoints)?)))
                    })
                    .collect();
                checks
                    .into_iter()
                    .filter_map(|c| c.join().ok().flatten())
                    .collect::<Vec<_>>()
            })
        })
        .await
        .unwrap_or_default();
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

/// `shop/reviews:9080` for the `<vip>:<port>` a proxy subscribes by (the name itself if no
/// service has that address).
fn service_at(snapshot: &Snapshot, name: &str) -> String {
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

/// The registry generation discovery serves `name` from, if it serves it with exactly
/// `endpoints`.
fn serves(netns: &str, addr: SocketAddr, name: &str, endpoints: &BTreeSet<String>) -> Option<u64> {
    let path = format!("/debug/resolve?name={name}");
    let Ok((200, body)) = sys::http_get(netns, addr, &path, Duration::from_millis(300)) else {
        return None;
    };
    let json = serde_json::from_str::<serde_json::Value>(&body).ok()?;
    let served: BTreeSet<String> = json["endpoints"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e.as_str().map(str::to_string))
        .collect();
    (served == *endpoints).then(|| json["generation"].as_u64().unwrap_or(0))
}

/// Waits for the control plane's `/ready` and its trust bundle.
async fn wait_control_plane(netns: &str, trust_bundle: &Path) -> anyhow::Result<()> {
    let deadline = Instant::now() + CONTROL_PLANE_START;
    let addr = SocketAddr::new(CONTROL_PLANE_IP.into(), CONTROL_PLANE_MONITORING_PORT);
    loop {
        let ns = netns.to_string();
        let ready = tokio::task::spawn_blocking(move || {
            sys::http_get(&ns, addr, "/ready", Duration::from_millis(500))
                .is_ok_and(|(status, _)| status == 200)
        })
        .await
        .unwrap_or(false);
        if ready && trust_bundle.exists() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("no answer on {addr}/ready within {CONTROL_PLANE_START:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
