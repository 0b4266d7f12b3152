//! One pod's life in local mode: its network namespace, interception rules, sidecar and
//! containers, in the order a kubelet with native sidecars uses — the proxy first, the app's
//! containers only once the proxy is ready — and the reverse on the way out.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use k8s_openapi::api::core::v1::{Container, Pod};
use sinew_control_plane::registry::{NamespaceEntry, PodEntry};
use sinew_proto::config::v1 as pb;
use tokio::sync::watch;

use crate::host::{self, ServiceRoute};
use crate::process::{Board, RestartPolicy, Slot, Spec, Supervised};
use crate::state::{PodPhase, PodState, ProcessState};
use crate::sys;

/// The proxy's UID and GID (excluded from interception by `sinew-proxy init`).
pub const PROXY_UID: u32 = 1337;
/// Containers run as this user unless `securityContext.runAsUser` says otherwise. Kubernetes
/// would use the image's user; there is no image here, and nobody is the safe choice.
pub const DEFAULT_APP_UID: u32 = 65534;
/// Pod annotation choosing what the sidecar accepts inbound: `PERMISSIVE` (default) or `STRICT`.
pub const INBOUND_MODE_ANNOTATION: &str = "sinew.dev/inbound-mode";
const HEALTH_ADDR: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 15021);
/// When a proxy that is still not ready is reported as a problem.
const PROXY_READY_REPORT: Duration = Duration::from_secs(30);
/// How long containers get between SIGTERM and SIGKILL (capped: locally nobody waits 30 s).
const MAX_GRACE: Duration = Duration::from_secs(10);

/// What every pod needs from the run.
pub struct Env {
    pub bridge_netns: String,
    pub proxy_bin: PathBuf,
    /// Prepended to containers' `PATH`, so `command: [sinew-demo, …]` finds our binaries.
    pub bin_dir: PathBuf,
    pub control_plane_address: String,
    pub trust_bundle: PathBuf,
    pub tokens: sinew_control_plane::auth::LocalTokens,
    pub trust_domain: String,
}

/// Services as pods see them: names for `/etc/hosts` and VIP rules for the service chain.
#[derive(Debug, Default)]
pub struct NetView {
    /// Grows with every view published; a pod records the one it applied.
    pub seq: u64,
    pub hosts: BTreeMap<(String, String), Vec<Ipv4Addr>>,
    pub routes: Vec<ServiceRoute>,
}

impl NetView {
    /// The same services and routes (whatever the sequence number).
    pub fn same_as(&self, other: &NetView) -> bool {
        self.hosts == other.hosts && self.routes == other.routes
    }
}

/// Everything decided about a pod before it starts.
#[derive(Debug, Clone)]
pub struct Plan {
    pub namespace: String,
    pub name: String,
    pub netns: String,
    pub index: u32,
    pub ip: Ipv4Addr,
    pub dir: PathBuf,
    pub meshed: bool,
    pub identity: Option<String>,
    pub service_account: String,
    pub labels: BTreeMap<String, String>,
    pub strict: bool,
    /// `sinew-proxy`'s arguments for the interception rules (`init` and its flags): the
    /// injector's, from the pod's `traffic.sidecar.istio.io/*` annotations, as the `sinew-init`
    /// container gets them in a cluster. Empty when the pod is not meshed.
    pub init_args: Vec<String>,
    pub user: (u32, u32),
    pub containers: Vec<Spec>,
    pub grace: Duration,
    /// Problems that do not stop the pod (a container without a command, unsupported env).
    pub warnings: Vec<String>,
}

/// A started pod: stop it to tear it down.
pub struct Handle {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Handle {
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Local mode's injection decision: whether `pod` (in `namespace`) gets a sidecar.
///
/// The registry's [`PodEntry::meshed`], which is the injector's own rule
/// (`sinew_injector::decide` on the pod and its namespace's labels), so local mode, the control
/// plane reading the same files and the webhook in a cluster all agree.
pub fn injects_sidecar(pod: &PodEntry, namespace: Option<&NamespaceEntry>) -> bool {
    // The namespace is what the injector's decision reads; the registry already folded it in.
    let _ = namespace;
    pod.meshed
}

/// Decides how `pod` runs, with a sidecar when `meshed` ([`injects_sidecar`]). Errors are about
/// the pod spec (an inbound mode that is not one).
pub fn plan(
    pod: &PodEntry,
    meshed: bool,
    netns: String,
    index: u32,
    ip: Ipv4Addr,
    dir: PathBuf,
    env: &Env,
) -> anyhow::Result<Plan> {
    let spec = pod.object.spec.clone().unwrap_or_default();
    let mut warnings = Vec::new();
    let strict = match pod.annotations.get(INBOUND_MODE_ANNOTATION) {
        None => false,
        Some(m) => match sinew_injector::overrides::InboundMode::parse(m) {
            Some(mode) => mode == sinew_injector::overrides::InboundMode::Strict,
            None => anyhow::bail!(
                "Pod {:?}: annotation {INBOUND_MODE_ANNOTATION} must be PERMISSIVE or STRICT, not {:?}",
                pod.name,
                m.to_ascii_uppercase()
            ),
        },
    };
    // Checked as the webhook checks them (a bad value refuses the pod, naming the annotation),
    // and only for a pod that gets the sidecar, as there.
    let init_args = if meshed {
        sinew_injector::init::flags(&pod.annotations, &mut warnings).map_err(|problems| {
            let problems: Vec<String> = problems.iter().map(ToString::to_string).collect();
            anyhow::anyhow!("Pod {:?}: {}", pod.name, problems.join("; "))
        })?
    } else {
        Vec::new()
    };
    // IDs are checked: `-1` or `2^32` would reach setpriv as "no change" or 0, i.e. root.
    let id = |value: Option<i64>, what: &str| -> anyhow::Result<Option<u32>> {
        value
            .map(|v| {
                u32::try_from(v)
                    .ok()
                    .filter(|v| *v != u32::MAX)
                    .ok_or_else(|| {
                        anyhow::anyhow!("Pod {:?}: {what} {v} is not a valid ID", pod.name)
                    })
            })
            .transpose()
    };
    let pod_sc = spec.security_context.as_ref();
    let pod_uid = id(
        pod_sc.and_then(|s| s.run_as_user),
        "securityContext.runAsUser",
    )?;
    let pod_gid = id(
        pod_sc.and_then(|s| s.run_as_group),
        "securityContext.runAsGroup",
    )?;
    let restart = RestartPolicy::parse(spec.restart_policy.as_deref());
    let grace = spec
        .termination_grace_period_seconds
        .map_or(MAX_GRACE, |s| {
            Duration::from_secs(s.max(0) as u64).min(MAX_GRACE)
        });
    if spec.init_containers.as_ref().is_some_and(|c| !c.is_empty()) {
        warnings.push("initContainers are not run in local mode".into());
    }
    if spec.volumes.as_ref().is_some_and(|v| !v.is_empty()) {
        warnings.push("volumes are not mounted in local mode".into());
    }
    let mut user = None;
    let mut containers = Vec::new();
    for c in &spec.containers {
        let sc = c.security_context.as_ref();
        let uid = id(sc.and_then(|s| s.run_as_user), "runAsUser")?.or(pod_uid);
        let gid = id(sc.and_then(|s| s.run_as_group), "runAsGroup")?
            .or(pod_gid)
            .or(uid);
        let uid = uid.unwrap_or(DEFAULT_APP_UID);
        let gid = gid.unwrap_or(DEFAULT_APP_UID);
        if c.env_from.as_ref().is_some_and(|e| !e.is_empty()) {
            warnings.push(format!(
                "container {:?}: envFrom is not supported in local mode",
                c.name
            ));
        }
        if uid == PROXY_UID && meshed {
            warnings.push(format!(
                "container {:?} runs as UID {PROXY_UID}, the proxy's: its traffic is not intercepted",
                c.name
            ));
        }
        user.get_or_insert((uid, gid));
        let mut argv: Vec<String> = c.command.clone().unwrap_or_default();
        let vars = container_env(c, &pod.object, &pod.service_account, ip, &mut warnings);
        argv.extend(c.args.clone().unwrap_or_default());
        let argv: Vec<String> = argv.iter().map(|a| expand(a, &vars)).collect();
        if c.command.as_ref().is_none_or(|c| c.is_empty()) {
            warnings.push(format!(
                "container {:?} has no command: local mode runs commands, not images; it is skipped",
                c.name
            ));
            continue;
        }
        let mut env = vec![
            (
                "PATH".to_string(),
                format!(
                    "{}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    env.bin_dir.display()
                ),
            ),
            ("HOME".to_string(), "/".to_string()),
            ("HOSTNAME".to_string(), pod.name.clone()),
        ];
        env.extend(vars);
        containers.push(Spec {
            name: c.name.clone(),
            netns: netns.clone(),
            user: Some((uid, gid)),
            argv,
            env,
            cwd: c
                .working_dir
                .as_deref()
                .filter(|d| !d.is_empty())
                .map_or_else(|| PathBuf::from("/"), PathBuf::from),
            log: dir.join(format!("{}.log", c.name)),
            restart,
        });
    }
    let identity = meshed.then(|| {
        sinew_control_plane::registry::spiffe_identity(
            &env.trust_domain,
            &pod.namespace,
            &pod.service_account,
        )
    });
    Ok(Plan {
        namespace: pod.namespace.clone(),
        name: pod.name.clone(),
        netns,
        index,
        ip,
        dir,
        meshed,
        identity,
        service_account: pod.service_account.clone(),
        labels: pod.labels.clone(),
        strict,
        init_args,
        user: user.unwrap_or((DEFAULT_APP_UID, DEFAULT_APP_UID)),
        containers,
        grace,
        warnings,
    })
}

/// The container's `env`: plain values and the downward API fields that make sense locally.
fn container_env(
    c: &Container,
    pod: &Pod,
    service_account: &str,
    ip: Ipv4Addr,
    warnings: &mut Vec<String>,
) -> Vec<(String, String)> {
    let meta = &pod.metadata;
    let mut out: Vec<(String, String)> = Vec::new();
    for var in c.env.iter().flatten() {
        let value = match (&var.value, &var.value_from) {
            (Some(v), _) => Some(expand(v, &out)),
            (None, Some(from)) => match from.field_ref.as_ref().map(|f| f.field_path.as_str()) {
                Some("metadata.name") => meta.name.clone(),
                Some("metadata.namespace") => meta.namespace.clone(),
                Some("status.podIP") => Some(ip.to_string()),
                Some("spec.serviceAccountName") => Some(service_account.to_string()),
                Some("spec.nodeName") => Some("local".to_string()),
                Some(path) => {
                    warnings.push(format!(
                        "container {:?}: env {}: fieldRef {path} is not available locally",
                        c.name, var.name
                    ));
                    None
                }
                None => {
                    warnings.push(format!(
                        "container {:?}: env {}: only value and fieldRef are supported locally",
                        c.name, var.name
                    ));
                    None
                }
            },
            (None, None) => Some(String::new()),
        };
        if let Some(value) = value {
            out.retain(|(k, _)| k != &var.name);
            out.push((var.name.clone(), value));
        }
    }
    out
}

/// Kubernetes' `$(VAR)` expansion in commands, args and env values, the later definition of a
/// name winning (the injector's, so local mode expands exactly as the kubelet would).
fn expand(s: &str, vars: &[(String, String)]) -> String {
    sinew_injector::sidecar::expand_with(s, |name| {
        vars.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    })
}

/// Starts the pod in the background; it reports through `board`.
pub fn start(
    plan: Plan,
    env: Arc<Env>,
    net: watch::Receiver<Arc<NetView>>,
    board: Board,
) -> Handle {
    let (stop, stopped) = watch::channel(false);
    board.update(|s| {
        s.pods
            .retain(|p| !(p.namespace == plan.namespace && p.name == plan.name));
        s.pods.push(PodState {
            namespace: plan.namespace.clone(),
            name: plan.name.clone(),
            netns: plan.netns.clone(),
            ip: plan.ip.to_string(),
            meshed: plan.meshed,
            identity: plan.identity.clone(),
            uid: plan.user.0,
            gid: plan.user.1,
            phase: PodPhase::Pending,
            proxy: plan.meshed.then(|| ProcessState {
                name: "proxy".into(),
                log: plan.dir.join("proxy.log"),
                ..Default::default()
            }),
            proxy_ready_ms: None,
            network_error: None,
            view_applied: 0,
            containers: plan
                .containers
                .iter()
                .map(|c| ProcessState {
                    name: c.name.clone(),
                    log: c.log.clone(),
                    ..Default::default()
                })
                .collect(),
        });
        s.pods
            .sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    });
    let task = tokio::spawn(run(plan, env, net, board, stopped));
    Handle { stop, task }
}

fn set_phase(board: &Board, plan: &Plan, phase: PodPhase) {
    board.update(|s| {
        if let Some(p) = s
            .pods
            .iter_mut()
            .find(|p| p.namespace == plan.namespace && p.name == plan.name)
        {
            p.phase = phase;
        }
    });
}

async fn run(
    plan: Plan,
    env: Arc<Env>,
    mut net: watch::Receiver<Arc<NetView>>,
    board: Board,
    mut stopped: watch::Receiver<bool>,
) {
    let mut proxy = None;
    let mut containers = Vec::new();
    // Setting up the sandbox is retried with backoff, as a kubelet does: a failure here is
    // usually the machine's (a command that timed out), not the pod's.
    let mut backoff = Duration::from_secs(1);
    loop {
        let attempt = async {
            set_up(&plan, &env).await?;
            let view = net.borrow_and_update().clone();
            apply_net(&plan, &view).await?;
            record_view(&board, &plan, view.seq, None);
            Ok::<_, anyhow::Error>(())
        }
        .await;
        let Err(e) = attempt else { break };
        set_phase(
            &board,
            &plan,
            PodPhase::Failed(format!("{e:#} (retrying in {}s)", backoff.as_secs())),
        );
        host::delete_netns(&plan.netns, Duration::from_secs(2)).await;
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = until_stopped(&mut stopped) => break,
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
    let result: anyhow::Result<()> = async {
        if *stopped.borrow() {
            return Ok(());
        }
        if plan.meshed {
            set_phase(&board, &plan, PodPhase::Starting);
            let started = Instant::now();
            let spec = proxy_spec(&plan, &env);
            proxy = Some(Supervised::spawn(
                spec,
                Slot::Proxy {
                    namespace: plan.namespace.clone(),
                    pod: plan.name.clone(),
                },
                board.clone(),
            ));
            // A startup probe: no containers until the sidecar is ready. A proxy that is slow
            // to get there (a control plane that refuses it, say) is reported, and waited for.
            let slow = async {
                tokio::time::sleep(PROXY_READY_REPORT).await;
                set_phase(
                    &board,
                    &plan,
                    PodPhase::Failed(format!(
                        "proxy not ready after {}s, still waiting ({} logs -n {} {} -c proxy)",
                        PROXY_READY_REPORT.as_secs(),
                        crate::invoked_as(),
                        plan.namespace,
                        plan.name
                    )),
                );
                std::future::pending::<()>().await
            };
            tokio::select! {
                () = wait_ready(&plan.netns) => {}
                () = slow => {}
                () = until_stopped(&mut stopped) => return Ok(()),
            }
            let ms = started.elapsed().as_millis() as u64;
            board.update(|s| {
                if let Some(p) = s
                    .pods
                    .iter_mut()
                    .find(|p| p.namespace == plan.namespace && p.name == plan.name)
                {
                    p.proxy_ready_ms = Some(ms);
                }
            });
        }
        for (index, spec) in plan.containers.iter().enumerate() {
            containers.push(Supervised::spawn(
                spec.clone(),
                Slot::Container {
                    namespace: plan.namespace.clone(),
                    pod: plan.name.clone(),
                    index,
                },
                board.clone(),
            ));
        }
        set_phase(&board, &plan, PodPhase::Running);
        Ok(())
    }
    .await;
    if let Err(e) = result {
        set_phase(&board, &plan, PodPhase::Failed(format!("{e:#}")));
    }
    loop {
        tokio::select! {
            () = until_stopped(&mut stopped) => break,
            changed = net.changed() => {
                if changed.is_err() {
                    break;
                }
                let view = net.borrow_and_update().clone();
                // A failed update leaves the pod running (it is retried with the next change);
                // it is a problem to show, not a reason to stop being an endpoint.
                match apply_net(&plan, &view).await {
                    Ok(()) => record_view(&board, &plan, view.seq, None),
                    Err(e) => record_view(&board, &plan, 0, Some(format!("{e:#}"))),
                }
            }
        }
    }
    set_phase(&board, &plan, PodPhase::Terminating);
    // Containers first, the sidecar last: the app may still send while it shuts down.
    let grace = plan.grace;
    let stops: Vec<_> = containers
        .into_iter()
        .map(|c| tokio::spawn(c.stop(grace)))
        .collect();
    for s in stops {
        let _ = s.await;
    }
    if let Some(proxy) = proxy {
        proxy.stop(plan.grace).await;
    }
    host::delete_netns(&plan.netns, Duration::from_secs(2)).await;
    let _ = std::fs::remove_dir_all(&plan.dir);
    board.update(|s| {
        s.pods
            .retain(|p| !(p.namespace == plan.namespace && p.name == plan.name));
    });
}

/// Records the view a pod applied (`seq` 0: none, the update failed) and the failure, if any.
fn record_view(board: &Board, plan: &Plan, seq: u64, error: Option<String>) {
    board.update(|s| {
        if let Some(p) = s
            .pods
            .iter_mut()
            .find(|p| p.namespace == plan.namespace && p.name == plan.name)
        {
            if seq > 0 {
                p.view_applied = seq;
            }
            p.network_error = error;
        }
    });
}

async fn until_stopped(stopped: &mut watch::Receiver<bool>) {
    let _ = stopped.wait_for(|s| *s).await;
}

/// Network namespace, files, and (meshed) interception rules and credentials.
async fn set_up(plan: &Plan, env: &Env) -> anyhow::Result<()> {
    std::fs::create_dir_all(&plan.dir)
        .with_context(|| format!("cannot create {}", plan.dir.display()))?;
    std::fs::set_permissions(&plan.dir, std::fs::Permissions::from_mode(0o755))?;
    host::create_pod_netns(&env.bridge_netns, &plan.netns, plan.index, plan.ip).await?;
    if plan.meshed {
        let mut args = vec![
            "netns".to_string(),
            "exec".into(),
            plan.netns.clone(),
            env.proxy_bin.display().to_string(),
        ];
        args.extend(plan.init_args.iter().cloned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        host::run("ip", &args, None)
            .await
            .context("sinew-proxy init")?;
        write_credentials(plan, env)?;
    }
    host::install_services_chain(&plan.netns).await
}

/// The pod's token (readable by the proxy only) and the proxy's bootstrap config.
fn write_credentials(plan: &Plan, env: &Env) -> anyhow::Result<()> {
    use std::os::unix::fs::chown;
    let caller = sinew_control_plane::auth::Caller {
        namespace: plan.namespace.clone(),
        service_account: plan.service_account.clone(),
        pod: Some(plan.name.clone()),
    };
    // Re-read by the proxy on every use; a month outlives any local run.
    let token = env
        .tokens
        .mint(&caller, Duration::from_secs(30 * 24 * 3600));
    let token_file = plan.dir.join("token");
    {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        // Readable by the proxy only, from the first byte on.
        let _ = std::fs::remove_file(&token_file);
        let mut f = std::fs::OpenOptions::new()
            .create_new(true)
            .write(true)
            .mode(0o400)
            .open(&token_file)
            .with_context(|| format!("cannot create {}", token_file.display()))?;
        chown(&token_file, Some(PROXY_UID), Some(PROXY_UID))?;
        f.write_all(token.as_bytes())?;
    }
    let config = bootstrap_config(plan, env, &token_file);
    std::fs::write(
        plan.dir.join("proxy.json"),
        serde_json::to_string_pretty(&config)?,
    )?;
    Ok(())
}

/// The proxy's bootstrap config: certificates and config from the control plane, with the
/// pod's token, as the injector's sidecar gets it in a cluster.
fn bootstrap_config(plan: &Plan, env: &Env, token_file: &std::path::Path) -> pb::ProxyConfig {
    pb::ProxyConfig {
        control_plane: Some(pb::ControlPlane {
            address: env.control_plane_address.clone(),
            root_cert_file: env.trust_bundle.display().to_string(),
            token_file: token_file.display().to_string(),
            pod: plan.name.clone(),
            namespace: plan.namespace.clone(),
            labels: plan.labels.clone(),
            ..Default::default()
        }),
        inbound_mode: if plan.strict {
            pb::InboundMode::Strict
        } else {
            pb::InboundMode::Permissive
        } as i32,
        // Also sent by the control plane; here too so they hold while it is unreachable.
        mesh_address_ranges: vec![
            crate::state::VIP_CIDR.to_string(),
            crate::state::POD_CIDR.to_string(),
        ],
        ..Default::default()
    }
}

fn proxy_spec(plan: &Plan, env: &Env) -> Spec {
    Spec {
        name: "proxy".into(),
        netns: plan.netns.clone(),
        user: Some((PROXY_UID, PROXY_UID)),
        argv: vec![
            env.proxy_bin.display().to_string(),
            "run".into(),
            "--config".into(),
            plan.dir.join("proxy.json").display().to_string(),
            "--workers".into(),
            "1".into(),
        ],
        // Logs go to a file: no colour codes.
        env: vec![
            ("SINEW_LOG".into(), "info".into()),
            ("NO_COLOR".into(), "1".into()),
        ],
        cwd: PathBuf::from("/"),
        log: plan.dir.join("proxy.log"),
        restart: RestartPolicy::Always,
    }
}

/// Polls the proxy's readiness (a startup probe, 10 ms apart) until it answers 200.
async fn wait_ready(netns: &str) {
    loop {
        let ns = netns.to_string();
        let ready = tokio::task::spawn_blocking(move || {
            sys::http_get(
                &ns,
                HEALTH_ADDR,
                "/healthz/ready",
                Duration::from_millis(500),
            )
            .is_ok_and(|(status, _)| status == 200)
        })
        .await
        .unwrap_or(false);
        if ready {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Writes the pod's hosts file and replaces its service rules.
async fn apply_net(plan: &Plan, view: &NetView) -> anyhow::Result<()> {
    host::write_etc(
        &plan.netns,
        &host::hosts_file(&plan.name, plan.ip, &plan.namespace, &view.hosts),
    )?;
    host::iptables_restore(&plan.netns, &host::services_script(&view.routes)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(dir: &std::path::Path) -> Env {
        Env {
            bridge_netns: "sinew-t.net".into(),
            proxy_bin: "/bin/sinew-proxy".into(),
            bin_dir: "/opt/sinew".into(),
            control_plane_address: "198.18.0.1:15012".into(),
            trust_bundle: dir.join("bundle.pem"),
            tokens: sinew_control_plane::auth::LocalTokens::load_or_create(
                &dir.join("key"),
                "sinew-ca",
            )
            .unwrap(),
            trust_domain: "cluster.local".into(),
        }
    }

    fn plan_of(yaml: &str) -> anyhow::Result<Plan> {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("sinewctl-plan-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let snapshot = sinew_control_plane::registry::Snapshot::from_yaml("p.yaml", yaml).unwrap();
        let pod = snapshot.pods().values().next().unwrap();
        let ip = Ipv4Addr::new(198, 18, 0, 7);
        let plan = plan(
            pod,
            injects_sidecar(pod, snapshot.namespaces().get(&pod.namespace)),
            "sinew-t.default.p".into(),
            1,
            ip,
            dir.join("p"),
            &env(&dir),
        );
        let _ = std::fs::remove_dir_all(&dir);
        plan
    }

    const NS: &str = "apiVersion: v1\nkind: Namespace\nmetadata: {name: default, labels: {sinew-injection: enabled}}\n---\n";

    #[test]
    fn a_pod_becomes_processes_with_its_env_user_and_annotations() {
        let plan = plan_of(&format!(
            "{NS}apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations: {{sinew.dev/inbound-mode: strict, traffic.sidecar.istio.io/excludeOutboundPorts: '5432'}}\nspec:\n  securityContext: {{runAsUser: 1000}}\n  containers:\n    - name: app\n      command: [server, --name, $(POD), --ip, $(IP), $$(kept)]\n      env:\n        - {{name: POD, valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}}}\n        - {{name: IP, valueFrom: {{fieldRef: {{fieldPath: status.podIP}}}}}}\n      workingDir: /srv\n    - name: sidecar-image-only\n"
        ))
        .unwrap();
        assert!(plan.meshed && plan.strict);
        assert_eq!(
            plan.identity.as_deref(),
            Some("spiffe://cluster.local/ns/default/sa/default")
        );
        assert_eq!(plan.init_args, ["init", "--exclude-outbound-ports=5432"]);
        assert_eq!(plan.user, (1000, 1000));
        assert_eq!(
            plan.containers.len(),
            1,
            "the container without a command is skipped"
        );
        let c = &plan.containers[0];
        assert_eq!(
            c.argv,
            ["server", "--name", "p", "--ip", "198.18.0.7", "$(kept)"]
        );
        assert_eq!(c.user, Some((1000, 1000)));
        assert_eq!(c.cwd, PathBuf::from("/srv"));
        assert!(
            c.env
                .iter()
                .any(|(k, v)| k == "PATH" && v.starts_with("/opt/sinew:"))
        );
        assert!(
            plan.warnings
                .iter()
                .any(|w| w.contains("sidecar-image-only"))
        );
    }

    #[test]
    fn interception_annotations_become_the_injectors_init_flags() {
        let annotations = "{traffic.sidecar.istio.io/includeInboundPorts: '8080, 9090', \
             traffic.sidecar.istio.io/excludeInboundPorts: '8081', \
             traffic.sidecar.istio.io/excludeOutboundPorts: '5432', \
             traffic.sidecar.istio.io/includeOutboundIPRanges: '*', \
             traffic.sidecar.istio.io/excludeOutboundIPRanges: '10.0.0.0/8,169.254.169.254', \
             traffic.sidecar.istio.io/excludeInterfaces: eth1}";
        let pod = |ns: &str| {
            format!(
                "{NS}apiVersion: v1\nkind: Namespace\nmetadata: {{name: plain}}\n---\n\
                 apiVersion: v1\nkind: Pod\nmetadata: {{name: p, namespace: {ns}, annotations: {annotations}}}\n\
                 spec: {{containers: [{{name: a, command: [x]}}]}}\n"
            )
        };
        let plan = plan_of(&pod("default")).unwrap();
        assert_eq!(
            plan.init_args,
            [
                "init",
                "--inbound-ports=8080, 9090",
                "--exclude-inbound-ports=8081",
                "--exclude-outbound-ports=5432",
                "--outbound-cidrs=*",
                "--exclude-outbound-cidrs=10.0.0.0/8,169.254.169.254",
            ]
        );
        // The injector's words for what it does not implement, as the webhook warns.
        assert!(
            plan.warnings
                .iter()
                .any(|w| w.contains("excludeInterfaces is not supported")),
            "{:?}",
            plan.warnings
        );
        let unmeshed = plan_of(&pod("plain")).unwrap();
        assert!(!unmeshed.meshed);
        assert!(unmeshed.init_args.is_empty());
        assert!(unmeshed.warnings.is_empty(), "{:?}", unmeshed.warnings);
    }

    #[test]
    fn a_bad_interception_annotation_refuses_a_meshed_pod_naming_it() {
        let pod = |ns: &str| {
            format!(
                "{NS}apiVersion: v1\nkind: Namespace\nmetadata: {{name: plain}}\n---\n\
                 apiVersion: v1\nkind: Pod\nmetadata: {{name: p, namespace: {ns}, annotations: \
                 {{traffic.sidecar.istio.io/excludeOutboundPorts: '5432,70000'}}}}\n\
                 spec: {{containers: [{{name: a, command: [x]}}]}}\n"
            )
        };
        let err = plan_of(&pod("default")).unwrap_err().to_string();
        assert!(
            err.contains("annotation traffic.sidecar.istio.io/excludeOutboundPorts")
                && err.contains("\"70000\" is not a port"),
            "{err}"
        );
        // No sidecar, no interception: the annotation means nothing there.
        assert!(plan_of(&pod("plain")).is_ok());
    }

    #[test]
    fn ids_that_would_mean_root_and_unknown_modes_are_refused() {
        for sc in ["runAsUser: -1", "runAsUser: 4294967296", "runAsGroup: -1"] {
            let err = plan_of(&format!(
                "{NS}apiVersion: v1\nkind: Pod\nmetadata: {{name: p}}\nspec:\n  securityContext: {{{sc}}}\n  containers: [{{name: a, command: [x]}}]\n"
            ))
            .unwrap_err();
            assert!(err.to_string().contains("is not a valid ID"), "{sc}: {err}");
        }
        let err = plan_of(&format!(
            "{NS}apiVersion: v1\nkind: Pod\nmetadata: {{name: p, annotations: {{sinew.dev/inbound-mode: strictly}}}}\nspec: {{containers: [{{name: a, command: [x]}}]}}\n"
        ))
        .unwrap_err();
        assert!(err.to_string().contains("PERMISSIVE or STRICT"), "{err}");
    }

    #[test]
    fn the_bootstrap_config_is_a_typed_proxy_config_in_its_json_form() {
        let dir = std::env::temp_dir().join(format!("sinewctl-boot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let env = env(&dir);
        let mut plan = plan_of(&format!(
            "{NS}apiVersion: v1\nkind: Pod\nmetadata: {{name: p, labels: {{app: web}}}}\nspec: {{containers: [{{name: a, command: [x]}}]}}\n"
        ))
        .unwrap();
        let token = PathBuf::from("/run/sinew/local/pods/default/p/token");
        let json = serde_json::to_value(bootstrap_config(&plan, &env, &token)).unwrap();
        // What the proxy reads: protobuf-JSON names, the default inbound mode left out.
        assert_eq!(
            json,
            serde_json::json!({
                "controlPlane": {
                    "address": "198.18.0.1:15012",
                    "rootCertFile": dir.join("bundle.pem").display().to_string(),
                    "tokenFile": "/run/sinew/local/pods/default/p/token",
                    "pod": "p",
                    "namespace": "default",
                    "labels": {"app": "web"},
                },
                "meshAddressRanges": ["198.19.0.0/16", "198.18.0.0/16"],
            })
        );
        plan.strict = true;
        let json = serde_json::to_string(&bootstrap_config(&plan, &env, &token)).unwrap();
        let back: pb::ProxyConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back.inbound_mode, pb::InboundMode::Strict as i32);
        assert!(json.contains(r#""inboundMode":"STRICT""#), "{json}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_injection_decision_follows_the_namespace_label_and_the_opt_out() {
        let snapshot = sinew_control_plane::registry::Snapshot::from_yaml(
            "p.yaml",
            &format!(
                "{NS}apiVersion: v1\nkind: Namespace\nmetadata: {{name: plain}}\n---\n\
                 apiVersion: v1\nkind: Pod\nmetadata: {{name: in}}\nspec: {{containers: [{{name: a}}]}}\n---\n\
                 apiVersion: v1\nkind: Pod\nmetadata: {{name: out, annotations: {{sinew.dev/inject: 'false'}}}}\nspec: {{containers: [{{name: a}}]}}\n---\n\
                 apiVersion: v1\nkind: Pod\nmetadata: {{name: host}}\nspec: {{hostNetwork: true, containers: [{{name: a}}]}}\n---\n\
                 apiVersion: v1\nkind: Pod\nmetadata: {{name: elsewhere, namespace: plain}}\nspec: {{containers: [{{name: a}}]}}\n"
            ),
        )
        .unwrap();
        let decide = |ns: &str, name: &str| {
            let pod = snapshot.pod(ns, name).unwrap();
            injects_sidecar(pod, snapshot.namespaces().get(ns))
        };
        assert!(decide("default", "in"));
        assert!(!decide("default", "out"));
        assert!(!decide("default", "host"));
        assert!(!decide("plain", "elsewhere"));
    }

    #[test]
    fn expands_variables_like_kubernetes() {
        let vars = vec![
            ("A".to_string(), "1".to_string()),
            ("B".to_string(), "x y".to_string()),
        ];
        assert_eq!(expand("$(A)-$(B)", &vars), "1-x y");
        assert_eq!(expand("$$(A) $(C) $ end$", &vars), "$(A) $(C) $ end$");
        assert_eq!(expand("no vars", &vars), "no vars");
    }
}
