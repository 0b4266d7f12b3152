//! `sinewctl`: the whole mesh on one Linux machine from Kubernetes YAML. See `docs/local-mode.md`.

#![forbid(unsafe_code)]

mod down;
mod host;
mod kube_inject;
mod manifests;
mod pod;
mod process;
mod proxy_config;
mod stat;
mod state;
mod status;
mod sys;
mod up;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::manifests::Store;
use crate::state::Run;

#[derive(Parser)]
#[command(
    name = "sinewctl",
    version,
    about = "Sinew's command line: run the mesh locally from Kubernetes YAML"
)]
struct Cli {
    /// Name of the local mesh; several can run side by side under different names.
    #[arg(long, global = true, env = "SINEW_RUN", default_value = "local")]
    name: String,
    /// Where runs keep their state, manifests and logs.
    #[arg(long, global = true, env = "SINEW_STATE_ROOT", default_value = state::DEFAULT_STATE_ROOT)]
    state_root: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum RootCommand {
    /// Generate a new self-signed root and rotate the running mesh to it: both roots trusted,
    /// every proxy re-issued under the new one, then the old one dropped; no pod restarts.
    Rotate {
        /// How long each phase waits for every proxy before the rotation stops (safely, both
        /// roots trusted) and `status` says which proxies it waited for.
        #[arg(long, default_value_t = 600, value_name = "SECS")]
        phase_timeout_secs: u64,
        /// Retry a rotation that stopped.
        #[arg(long)]
        resume: bool,
    },
}

#[derive(Subcommand)]
enum Command {
    /// Run the mesh described by a directory of YAML (Namespaces, ServiceAccounts, Services,
    /// Pods, Deployments, DestinationRules) until Ctrl-C; then remove everything.
    Up {
        /// A directory (read recursively) or a single file.
        dir: PathBuf,
        /// Where sinew-proxy, sinew-control-plane and the demo app are [default: next to sinewctl].
        #[arg(long, env = "SINEW_BIN_DIR")]
        bin_dir: Option<PathBuf>,
        /// Send the proxies' spans to this OTLP/gRPC collector on the host (e.g. a Jaeger at
        /// http://127.0.0.1:4317), relayed into the mesh's network [default: no traces].
        #[arg(long, value_name = "URL", value_parser = up::Collector::parse)]
        otlp_endpoint: Option<up::Collector>,
        /// Percentage of requests without a sampling decision to trace (0-100) [default: the
        /// control plane's, 1].
        #[arg(long, value_name = "PCT", value_parser = up::parse_sampling)]
        trace_sampling: Option<f64>,
        /// Every proxy writes an access log line per request or connection, in this format.
        #[arg(long, value_enum, value_name = "FORMAT")]
        access_log: Option<up::AccessLogEncoding>,
    },
    /// Stop the running mesh, or remove what a crashed one left behind.
    Down,
    /// The mesh root: `root rotate` replaces it without restarting a pod (docs/security.md).
    #[command(subcommand)]
    Root(RootCommand),
    /// Create or update objects in the running mesh; takes effect without restarts.
    Apply {
        /// Files or directories (or - for standard input).
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<PathBuf>,
    },
    /// Delete the objects named in the files from the running mesh.
    Delete {
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<PathBuf>,
    },
    /// Run a command inside a pod: in its network namespace, as its containers' user, so its
    /// traffic goes through the sidecar.
    Exec {
        #[arg(short, long, default_value = "default")]
        namespace: String,
        pod: String,
        /// Run as this UID instead of the pod's.
        #[arg(long)]
        uid: Option<u32>,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Print a pod's container log (or the sidecar's with -c proxy).
    Logs {
        #[arg(short, long, default_value = "default")]
        namespace: String,
        pod: String,
        /// Container name, or `proxy` [default: the pod's only container].
        #[arg(short, long)]
        container: Option<String>,
        /// Keep printing what is appended.
        #[arg(short, long)]
        follow: bool,
    },
    /// Live traffic per deployment, pod or namespace, inbound and outbound: success rate,
    /// requests per second, p50/p95/p99 latency, meshed pods and open TCP connections, from
    /// each proxy's metrics scraped twice, --window apart (docs/observability.md).
    Stat {
        /// What a row is: deploy, pod or ns.
        #[arg(value_enum, default_value = "deploy")]
        kind: stat::Kind,
        /// Only this deployment, pod or namespace.
        #[arg(value_name = "NAME")]
        resource: Option<String>,
        #[arg(
            short,
            long,
            default_value = "default",
            conflicts_with = "all_namespaces"
        )]
        namespace: String,
        /// Every namespace.
        #[arg(short = 'A', long)]
        all_namespaces: bool,
        /// Only inbound traffic from this workload: [NAMESPACE/]NAME (a Deployment, or a bare
        /// pod).
        #[arg(long, value_name = "WORKLOAD")]
        from: Option<String>,
        /// Only outbound traffic to this workload: [NAMESPACE/]NAME.
        #[arg(long, value_name = "WORKLOAD")]
        to: Option<String>,
        /// How long to count: the time between the two scrapes (1s to 1h).
        #[arg(long, default_value = "10s", value_parser = stat::parse_window)]
        window: std::time::Duration,
        /// Keep refreshing, one window after the other.
        #[arg(short, long)]
        watch: bool,
        #[arg(short, long, value_enum, default_value = "table")]
        output: stat::Output,
    },
    /// Pods, identities, certificate expiry, proxy readiness, config and the last errors.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Print a manifest with the sidecar injected into its Pods and pod templates (Deployments,
    /// StatefulSets, DaemonSets, ReplicaSets, Jobs, CronJobs), exactly as the cluster's injector
    /// webhook would; other objects are printed unchanged. Needs no running mesh.
    KubeInject {
        /// The manifest (YAML, several documents allowed), or - for standard input.
        #[arg(short = 'f', long = "filename")]
        file: PathBuf,
        /// The injector's settings (the control plane's --injector-config file) [default: the
        /// defaults in docs/injection.md].
        #[arg(long, value_name = "FILE")]
        injector_config: Option<PathBuf>,
    },
    /// What a pod's proxy is using right now: routes, DestinationRule policy per service and
    /// subset, and endpoint health (from the proxy's /config_dump and /clusters).
    ProxyConfig {
        #[arg(short, long, default_value = "default")]
        namespace: String,
        pod: String,
        /// Only services whose `name:port` contains this (e.g. `ratings`).
        #[arg(long)]
        service: Option<String>,
        /// Print the proxy's /config_dump and /clusters documents, unchanged, as one JSON object.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("sinewctl: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let run = Run::new(&cli.state_root, &cli.name)?;
    let runtime = || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("cannot start the async runtime")
    };
    match cli.command {
        Command::Up {
            dir,
            bin_dir,
            otlp_endpoint,
            trace_sampling,
            access_log,
        } => {
            let bin_dir = match bin_dir {
                Some(d) => d,
                None => std::env::current_exe()?
                    .parent()
                    .map(PathBuf::from)
                    .context("cannot tell where sinewctl is")?,
            };
            runtime()?.block_on(up::up(
                run,
                up::Options {
                    source: dir,
                    bin_dir,
                    otlp: otlp_endpoint,
                    trace_sampling,
                    access_log,
                },
            ))?;
        }
        Command::Down => runtime()?.block_on(down::down(&run))?,
        Command::Apply { files } => change(&run, &files, false)?,
        Command::Delete { files } => change(&run, &files, true)?,
        Command::Exec {
            namespace,
            pod,
            uid,
            command,
        } => return exec(&run, &namespace, &pod, uid, &command),
        Command::Logs {
            namespace,
            pod,
            container,
            follow,
        } => logs(&run, &namespace, &pod, container.as_deref(), follow)?,
        Command::Status { json } => status::status(&run, json)?,
        Command::Root(RootCommand::Rotate {
            phase_timeout_secs,
            resume,
        }) => {
            let said = sinew_control_plane::ca::rotation::request(
                &run.control_plane_dir(),
                None,
                sinew_control_plane::ca::CaConfig::default(),
                std::time::Duration::from_secs(phase_timeout_secs),
                resume,
            )?;
            println!("{said}; `sinewctl status` shows the rotation's phase");
        }
        Command::Stat {
            kind,
            resource,
            namespace,
            all_namespaces,
            from,
            to,
            window,
            watch,
            output,
        } => {
            let peer = |p: Option<String>| {
                p.map(|p| stat::parse_peer(&p, &namespace).map_err(anyhow::Error::msg))
                    .transpose()
            };
            let query = stat::Query {
                kind,
                name: resource,
                from: peer(from)?,
                to: peer(to)?,
                namespace: (!all_namespaces).then_some(namespace),
                window,
                watch,
                output,
            };
            stat::stat(&run, &query)?
        }
        Command::KubeInject {
            file,
            injector_config,
        } => kube_inject::kube_inject(
            &file,
            injector_config.as_deref(),
            &mut std::io::stdout().lock(),
            &mut std::io::stderr().lock(),
        )?,
        Command::ProxyConfig {
            namespace,
            pod,
            service,
            json,
        } => proxy_config::proxy_config(&run, &namespace, &pod, service.as_deref(), json)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// `apply` and `delete`: checked as a whole against the running mesh, then written; the
/// control plane and the supervisor pick the change up within a few hundred milliseconds.
fn change(run: &Run, files: &[PathBuf], delete: bool) -> anyhow::Result<()> {
    run.load_state()?;
    if !sys::is_root() {
        anyhow::bail!("changing the mesh needs root: its files belong to root (run it with sudo)");
    }
    let docs = manifests::read_inputs(files)?;
    let _lock = run.lock_changes()?;
    let store = Store::new(run.manifests());
    let applied = if delete {
        store.delete(&docs)?
    } else {
        store.apply(&docs)?
    };
    for (name, change) in applied.changes {
        println!("{name} {change}");
    }
    if !delete {
        for w in manifests::unused_warnings(&docs) {
            eprintln!("{w}");
        }
    }
    // Applied all the same (the control plane keeps them as warnings too, in `status`).
    for w in applied.warnings {
        eprintln!("warning: {w}");
    }
    Ok(())
}

/// How the user ran sinewctl, for the commands we suggest: someone who typed `scripts/sinewctl`
/// does not have `sinewctl` on the PATH. `SINEWCTL_INVOKED_AS` (set by `scripts/sinewctl`) wins;
/// otherwise argv[0] as typed, with `sudo ` when run under sudo.
pub(crate) fn invoked_as() -> String {
    invoked_as_from(
        std::env::var("SINEWCTL_INVOKED_AS").ok(),
        std::env::args_os()
            .next()
            .map(|a| a.to_string_lossy().into_owned()),
        std::env::var_os("SUDO_USER").is_some(),
    )
}

fn invoked_as_from(env: Option<String>, argv0: Option<String>, sudo: bool) -> String {
    if let Some(env) = env.filter(|e| !e.trim().is_empty()) {
        return env.trim().to_string();
    }
    let argv0 = argv0
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| "sinewctl".to_string());
    if sudo { format!("sudo {argv0}") } else { argv0 }
}

fn exec(
    run: &Run,
    namespace: &str,
    pod: &str,
    uid: Option<u32>,
    command: &[String],
) -> anyhow::Result<ExitCode> {
    if !sys::is_root() {
        anyhow::bail!(
            "`sinewctl exec` needs root to enter the pod's network namespace (run it with sudo)"
        );
    }
    let state = run.load_state()?;
    let p = state.pod(namespace, pod)?;
    let (uid, gid) = match uid {
        Some(u) => (u, u),
        None => (p.uid, p.gid),
    };
    // The same PATH the pod's containers get: our binaries first.
    let path = std::env::var_os("PATH").unwrap_or_default();
    let path = std::env::join_paths(
        std::iter::once(state.bin_dir.clone()).chain(std::env::split_paths(&path)),
    )?;
    let status = std::process::Command::new("ip")
        .env("PATH", path)
        .args(["netns", "exec", &p.netns, "setpriv"])
        .arg(format!("--reuid={uid}"))
        .arg(format!("--regid={gid}"))
        .args(["--clear-groups", "--"])
        .args(command)
        .status()
        .context("cannot run `ip netns exec`")?;
    Ok(ExitCode::from(
        status.code().unwrap_or(1).clamp(0, 255) as u8
    ))
}

fn logs(
    run: &Run,
    namespace: &str,
    pod: &str,
    container: Option<&str>,
    follow: bool,
) -> anyhow::Result<()> {
    use std::io::{Read as _, Seek as _, Write as _};
    let state = run.load_state()?;
    let p = state.pod(namespace, pod)?;
    let names: Vec<&str> = p
        .containers
        .iter()
        .chain(&p.proxy)
        .map(|c| c.name.as_str())
        .collect();
    let process = match container {
        Some(name) => p.containers.iter().chain(&p.proxy).find(|c| c.name == name),
        None if p.containers.len() == 1 => p.containers.first(),
        None => anyhow::bail!(
            "pod {namespace}/{pod} has several containers; choose one with -c ({})",
            names.join(", ")
        ),
    }
    .with_context(|| {
        format!(
            "pod {namespace}/{pod} has no container {:?} (it has {})",
            container.unwrap_or_default(),
            names.join(", ")
        )
    })?;
    let mut file = std::fs::File::open(&process.log)
        .with_context(|| format!("cannot open {}", process.log.display()))?;
    let mut out = std::io::stdout().lock();
    loop {
        let mut buf = Vec::new();
        file.read_to_end(&mut buf)?;
        out.write_all(&buf)?;
        out.flush()?;
        if !follow {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
        // A restarted run of the mesh truncates nothing, but the file may be gone after `down`.
        if !process.log.exists() {
            return Ok(());
        }
        file.stream_position()?;
    }
}

#[cfg(test)]
mod tests {
    use super::invoked_as_from;

    #[test]
    fn hints_name_sinewctl_the_way_it_was_invoked() {
        let some = |s: &str| Some(s.to_string());
        assert_eq!(
            invoked_as_from(
                some("sudo scripts/sinewctl"),
                some("/w/target/debug/sinewctl"),
                true
            ),
            "sudo scripts/sinewctl",
            "the script's variable wins"
        );
        assert_eq!(
            invoked_as_from(None, some("./sinewctl"), false),
            "./sinewctl"
        );
        assert_eq!(
            invoked_as_from(some(" "), some("sinewctl"), true),
            "sudo sinewctl"
        );
        assert_eq!(invoked_as_from(None, None, false), "sinewctl");
    }
}
