//! The `sinew-control-plane` binary: `serve` the CA and config streaming from a registry
//! directory or a Kubernetes cluster, or mint a local-mode `token` for a pod.

#![forbid(unsafe_code)]

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use sinew_control_plane::app::{AUDIENCE, ControlPlane, Options, Source, TOKEN_KEY};
use sinew_control_plane::auth::{Caller, LocalTokens};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "sinew-control-plane",
    version,
    about = "Sinew's control plane: mesh CA and per-proxy config"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the CA and discovery (gRPC over TLS) and monitoring.
    Serve(Box<ServeArgs>),
    /// Print a local-mode credential for a pod (what `sinewctl` hands each sidecar).
    Token(TokenArgs),
    /// Rotate the mesh root without restarting pods: writes the next root (generated, or the
    /// plug-in CA in --plugin-ca) into --state-dir; the running control plane then trusts both
    /// roots, re-issues every proxy under the new one, and drops the old (docs/security.md).
    RotateRoot(RotateRootArgs),
}

#[derive(clap::Args)]
struct RotateRootArgs {
    /// The state directory of the control plane to rotate (its `serve --state-dir`).
    #[arg(long)]
    state_dir: PathBuf,
    /// For a control plane serving with `--plugin-ca`: a directory with the NEXT plug-in CA
    /// (ca-cert.pem, ca-key.pem, cert-chain.pem, root-cert.pem). Without it a self-signed root
    /// is generated (for a control plane with a self-signed root).
    #[arg(long)]
    plugin_ca: Option<PathBuf>,
    /// The trust domain (the new self-signed root's organisation).
    #[arg(long, default_value = "cluster.local")]
    trust_domain: String,
    /// How long each phase waits for every connected proxy before the rotation stops (safely,
    /// both roots trusted) and says which proxies it waited for.
    #[arg(long, default_value_t = 600, value_name = "SECS")]
    phase_timeout_secs: u64,
    /// Retry a rotation that stopped (after fixing or removing the proxies it named).
    #[arg(long)]
    resume: bool,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Local mode: a directory of Kubernetes-shaped YAML (Namespaces, ServiceAccounts, Services,
    /// Pods, Deployments, DestinationRules, VirtualServices); reloaded on change. Without it the
    /// control plane watches a Kubernetes cluster (--kubeconfig, or in-cluster in a pod).
    #[arg(long, requires = "state_dir", conflicts_with_all = ["kubeconfig", "namespace"])]
    registry: Option<PathBuf>,
    /// Local mode: pod IPs and service VIPs assigned by the local runner (see
    /// docs/control-plane.md).
    #[arg(long, requires = "registry")]
    assignments: Option<PathBuf>,
    /// Local mode: where the CA root and the token key are kept (created on first start).
    #[arg(long, requires = "registry")]
    state_dir: Option<PathBuf>,
    /// Local mode: a plug-in CA directory with ca-cert.pem, ca-key.pem, cert-chain.pem and
    /// root-cert.pem (Istio's layout); without it a self-signed root is created in --state-dir.
    /// In a cluster the plug-in CA is the `cacerts` Secret.
    #[arg(long, requires = "registry")]
    plugin_ca: Option<PathBuf>,
    /// Kubernetes: the kubeconfig to reach the API server with (its current context). Without
    /// it (and without --registry) the pod's in-cluster service account is used.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Kubernetes: the webhooks (HTTPS, certificate from the mesh CA): the API server calls
    /// `/validate` for DestinationRules and VirtualServices and `/inject` for new pods.
    #[arg(long, default_value = "0.0.0.0:15017", value_name = "ADDR")]
    webhook_listen: SocketAddr,
    /// Kubernetes: the sidecar injector's settings (YAML; the chart mounts the ConfigMap
    /// `sinew-injector` at /etc/sinew/injector/config.yaml). Without it, the defaults in
    /// docs/injection.md. Read once at start: an invalid file stops the start, naming the field.
    #[arg(long, value_name = "FILE")]
    injector_config: Option<PathBuf>,
    /// Kubernetes: the control plane's own namespace, where its CA Secret (`sinew-ca`, or
    /// Istio's plug-in `cacerts`) is kept. Default `sinew-system`.
    #[arg(long)]
    namespace: Option<String>,
    #[arg(long, default_value = "cluster.local")]
    trust_domain: String,
    /// gRPC (CA + discovery) over TLS.
    #[arg(long, default_value = "0.0.0.0:15012")]
    listen: SocketAddr,
    /// Monitoring: /metrics, /ready, /debug/proxies.
    #[arg(long, default_value = "0.0.0.0:15014")]
    monitoring: SocketAddr,
    /// Extra DNS names for the serving certificate.
    #[arg(long)]
    dns_name: Vec<String>,
    /// A range of service addresses (VIPs), as a CIDR; repeatable. With --pod-cidr, the mesh's
    /// address ranges sent to every proxy: an address inside them that a proxy cannot resolve
    /// (control plane unreachable) is refused instead of sent in plaintext.
    #[arg(long = "service-cidr", value_name = "CIDR")]
    service_cidr: Vec<sinew_proto::net::IpNet>,
    /// A range of pod addresses, as a CIDR; repeatable. See --service-cidr.
    #[arg(long = "pod-cidr", value_name = "CIDR")]
    pod_cidr: Vec<sinew_proto::net::IpNet>,
    /// The root namespace: its DestinationRules (exported ones) apply to every namespace that
    /// has none of its own for a host, after the proxy's and the service's namespaces (Istio's
    /// `rootNamespace`, `istio-system` there). Default `sinew-system`.
    #[arg(long, default_value = sinew_control_plane::compile::DEFAULT_ROOT_NAMESPACE)]
    root_namespace: String,
    /// The OTLP/gRPC collector every proxy exports spans to (`http://jaeger-collector:4317`).
    /// Empty (the default): each proxy keeps its own (`SINEW_OTLP_ENDPOINT`), else exports none.
    #[arg(long, value_name = "URL", default_value = "", value_parser = parse_otlp_endpoint)]
    otlp_endpoint: String,
    /// Percent (0-100) of requests arriving without a sampling decision that are traced,
    /// mesh-wide; Telemetry resources override it. Without it each proxy keeps its own
    /// (`SINEW_TRACE_SAMPLING`), else 1 (Istio's default).
    #[arg(long, value_name = "PCT", value_parser = parse_percentage)]
    trace_sampling: Option<f64>,
    /// Access logging on for every proxy (Istio's `meshConfig.accessLogFile`); Telemetry
    /// resources may turn it off per namespace or workload. Without it, only Telemetries (or a
    /// proxy's own flag) turn it on.
    #[arg(long)]
    access_log: bool,
    /// What the access log (Telemetry provider `envoy`) writes: Envoy's default `text` format or
    /// one `json` object per line (Istio's `meshConfig.accessLogEncoding`).
    #[arg(long, value_enum, default_value = "text", value_name = "ENCODING")]
    access_log_encoding: AccessLogEncoding,
    #[arg(long, default_value = "info")]
    log_level: String,
}

/// `--access-log-encoding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum AccessLogEncoding {
    Text,
    Json,
}

/// `--otlp-endpoint`: empty, or `http://host:port` (what the proxies accept: they export
/// OTLP/gRPC in plaintext, so an endpoint they would refuse is refused here, not NACKed by each).
fn parse_otlp_endpoint(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Ok(String::new());
    }
    if s.starts_with("https://") {
        return Err(
            "https is not supported: the proxies export OTLP/gRPC in plaintext; use http://host:port"
                .into(),
        );
    }
    let authority = s
        .strip_prefix("http://")
        .ok_or("must start with http:// (OTLP over gRPC, e.g. http://jaeger:4317)")?;
    let authority = authority.strip_suffix('/').unwrap_or(authority);
    let port_ok = authority
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if !port_ok
        || authority.contains(['/', '?', '#', '@'])
        || authority
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err("must be http://host:port with no path, e.g. http://jaeger:4317".into());
    }
    Ok(format!("http://{authority}"))
}

/// `--trace-sampling`: a percentage, 0 to 100.
fn parse_percentage(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(p) if (0.0..=100.0).contains(&p) => Ok(p),
        _ => Err("must be a percentage between 0 and 100 (e.g. 1 or 0.5)".into()),
    }
}

impl ServeArgs {
    /// The mesh's telemetry defaults, from the flags.
    fn telemetry(&self) -> sinew_control_plane::compile::MeshTelemetry {
        use sinew_proto::config::v1::AccessLogEncoding as Encoding;
        sinew_control_plane::compile::MeshTelemetry {
            otlp_endpoint: self.otlp_endpoint.clone(),
            random_sampling_percentage: self.trace_sampling,
            access_log: self.access_log,
            access_log_encoding: match self.access_log_encoding {
                AccessLogEncoding::Text => Encoding::Text,
                AccessLogEncoding::Json => Encoding::Json,
            },
        }
    }
}

#[derive(clap::Args)]
struct TokenArgs {
    #[arg(long)]
    state_dir: PathBuf,
    #[arg(long, default_value = "default")]
    namespace: String,
    #[arg(long, default_value = "default")]
    service_account: String,
    #[arg(long)]
    pod: Option<String>,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 86400)]
    ttl_secs: u64,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let res = match cli.command {
        Command::Serve(a) => serve(*a),
        Command::Token(a) => token(a),
        Command::RotateRoot(a) => rotate_root(a),
    };
    match res {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sinew-control-plane: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn token(a: TokenArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&a.state_dir)
        .with_context(|| format!("cannot create {}", a.state_dir.display()))?;
    let tokens = LocalTokens::load_or_create(&a.state_dir.join(TOKEN_KEY), AUDIENCE)?;
    let caller = Caller {
        namespace: a.namespace,
        service_account: a.service_account,
        pod: a.pod,
    };
    println!("{}", tokens.mint(&caller, Duration::from_secs(a.ttl_secs)));
    Ok(())
}

fn rotate_root(a: RotateRootArgs) -> anyhow::Result<()> {
    let config = sinew_control_plane::ca::CaConfig {
        trust_domain: a.trust_domain,
        ..Default::default()
    };
    let said = sinew_control_plane::ca::rotation::request(
        &a.state_dir,
        a.plugin_ca.as_deref(),
        config,
        Duration::from_secs(a.phase_timeout_secs),
        a.resume,
    )?;
    println!("{said}; follow it at the control plane's /debug/rotation (port 15014)");
    Ok(())
}

fn serve(a: ServeArgs) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(&a.log_level)
        .map_err(|e| anyhow::anyhow!("invalid --log-level {:?}: {e}", a.log_level))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(a))
}

async fn run(a: ServeArgs) -> anyhow::Result<()> {
    let telemetry = a.telemetry();
    let mut mesh_ranges = a.service_cidr;
    mesh_ranges.extend(a.pod_cidr);
    if mesh_ranges.is_empty() {
        tracing::warn!(
            "no --service-cidr/--pod-cidr: proxies that cannot reach the control plane will send connections to unresolved mesh addresses in plaintext"
        );
    }
    let injector = match &a.injector_config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("--injector-config {}", path.display()))?;
            sinew_injector::Settings::from_yaml(&text)
                .with_context(|| format!("--injector-config {}", path.display()))?
        }
        None => sinew_injector::Settings::default(),
    };
    let source = match (a.registry, a.state_dir) {
        (Some(registry), Some(state_dir)) => Source::Files {
            registry,
            assignments: a.assignments,
            state_dir,
            plugin_ca: a.plugin_ca,
        },
        (Some(_), None) => anyhow::bail!("--registry needs --state-dir"),
        (None, _) => kubernetes_source(a.kubeconfig, a.namespace)?,
    };
    let cp = ControlPlane::start(Options {
        source,
        trust_domain: a.trust_domain,
        listen: a.listen,
        monitoring: a.monitoring,
        dns_names: a.dns_name,
        mesh_ranges,
        root_namespace: a.root_namespace,
        webhook: Some(a.webhook_listen),
        injector,
        telemetry,
    })
    .await?;
    tracing::info!(grpc = %cp.grpc_addr, monitoring = %cp.monitoring_addr, "control plane serving");
    tokio::select! {
        _ = cp.serve() => {}
        _ = sinew_control_plane::app::shutdown_signal() => tracing::info!("shutting down"),
    }
    Ok(())
}

#[cfg(feature = "kubernetes")]
fn kubernetes_source(
    kubeconfig: Option<PathBuf>,
    namespace: Option<String>,
) -> anyhow::Result<Source> {
    Ok(Source::Kubernetes(
        sinew_control_plane::cluster::KubeOptions::new(kubeconfig, namespace)?,
    ))
}

#[cfg(not(feature = "kubernetes"))]
fn kubernetes_source(_: Option<PathBuf>, _: Option<String>) -> anyhow::Result<Source> {
    anyhow::bail!(
        "this build has no Kubernetes support (feature `kubernetes`): pass --registry DIR --state-dir DIR"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve_args(extra: &[&str]) -> Result<ServeArgs, clap::Error> {
        let mut argv = vec!["--registry", "/r", "--state-dir", "/s"];
        argv.extend_from_slice(extra);
        parse(&argv)
    }

    #[test]
    fn service_and_pod_cidrs_are_repeatable_and_normalised() {
        let a = serve_args(&[
            "--service-cidr",
            "198.19.0.0/16",
            "--pod-cidr",
            "198.18.7.7/16",
            "--pod-cidr",
            "fd00::/8",
        ])
        .unwrap();
        let shown =
            |v: &[sinew_proto::net::IpNet]| v.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        assert_eq!(shown(&a.service_cidr), ["198.19.0.0/16"]);
        assert_eq!(shown(&a.pod_cidr), ["198.18.0.0/16", "fd00::/8"]);
        assert!(serve_args(&[]).unwrap().service_cidr.is_empty());
    }

    #[test]
    fn the_root_namespace_defaults_to_sinew_system_and_can_be_changed() {
        assert_eq!(serve_args(&[]).unwrap().root_namespace, "sinew-system");
        let a = serve_args(&["--root-namespace", "mesh-root"]).unwrap();
        assert_eq!(a.root_namespace, "mesh-root");
    }

    fn parse(argv: &[&str]) -> Result<ServeArgs, clap::Error> {
        let argv = ["sinew-control-plane", "serve"].iter().chain(argv);
        match Cli::try_parse_from(argv)?.command {
            Command::Serve(a) => Ok(*a),
            Command::Token(_) | Command::RotateRoot(_) => {
                unreachable!("invariant: the argv says serve")
            }
        }
    }

    #[test]
    fn without_a_registry_directory_the_source_is_kubernetes() {
        let a = parse(&["--kubeconfig", "/k", "--namespace", "mesh"]).unwrap();
        assert!(a.registry.is_none() && a.state_dir.is_none());
        let Source::Kubernetes(kube) = kubernetes_source(a.kubeconfig, a.namespace).unwrap() else {
            panic!("a Kubernetes source");
        };
        assert_eq!(
            kube.access,
            sinew_control_plane::cluster::ClusterAccess::Kubeconfig("/k".into())
        );
        assert_eq!(kube.namespace, "mesh");
        // No flags at all: in-cluster, in sinew-system.
        let a = parse(&[]).unwrap();
        let Source::Kubernetes(kube) = kubernetes_source(a.kubeconfig, a.namespace).unwrap() else {
            panic!("a Kubernetes source");
        };
        assert_eq!(
            kube.access,
            sinew_control_plane::cluster::ClusterAccess::InCluster
        );
        assert_eq!(kube.namespace, "sinew-system");
    }

    #[test]
    fn local_mode_flags_do_not_mix_with_kubernetes_ones() {
        for argv in [
            &["--registry", "/r"][..],
            &[
                "--registry",
                "/r",
                "--state-dir",
                "/s",
                "--kubeconfig",
                "/k",
            ],
            &["--state-dir", "/s"],
            &["--assignments", "/a"],
        ] {
            assert!(parse(argv).is_err(), "{argv:?} must be refused");
        }
        assert!(kubernetes_source(None, Some("Not_A_Label".into())).is_err());
    }

    #[test]
    fn telemetry_flags_default_to_nothing_set_and_are_checked() {
        use sinew_proto::config::v1::AccessLogEncoding as Encoding;
        let defaults = serve_args(&[]).unwrap().telemetry();
        assert_eq!(
            defaults,
            sinew_control_plane::compile::MeshTelemetry::default()
        );
        let set = serve_args(&[
            "--otlp-endpoint",
            "http://jaeger.tracing:4317",
            "--trace-sampling",
            "12.5",
            "--access-log",
            "--access-log-encoding",
            "json",
        ])
        .unwrap()
        .telemetry();
        assert_eq!(
            set,
            sinew_control_plane::compile::MeshTelemetry {
                otlp_endpoint: "http://jaeger.tracing:4317".into(),
                random_sampling_percentage: Some(12.5),
                access_log: true,
                access_log_encoding: Encoding::Json,
            }
        );
        for (flag, value, says) in [
            ("--trace-sampling", "150", "between 0 and 100"),
            ("--trace-sampling", "-1", "between 0 and 100"),
            ("--trace-sampling", "NaN", "between 0 and 100"),
            ("--trace-sampling", "ten", "between 0 and 100"),
            ("--otlp-endpoint", "jaeger:4317", "http://"),
            ("--otlp-endpoint", "http://", "host:port"),
            ("--otlp-endpoint", "http://jaeger:4317/v1/traces", "no path"),
            ("--otlp-endpoint", "http://ja eger:4317", "host:port"),
            ("--otlp-endpoint", "http://jaeger", "host:port"),
            ("--otlp-endpoint", "https://jaeger:4317", "plaintext"),
            ("--access-log-encoding", "yaml", "text"),
        ] {
            let arg = format!("{flag}={value}");
            let e = serve_args(&[&arg]).err().map(|e| e.to_string());
            assert!(
                e.as_deref()
                    .is_some_and(|e| e.contains(flag) && e.contains(says)),
                "{flag} {value}: {e:?}"
            );
        }
    }

    #[test]
    fn a_malformed_cidr_is_refused_naming_the_flag_and_value() {
        let e = serve_args(&["--pod-cidr", "198.18.0.0/33"])
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("--pod-cidr") && e.contains("'198.18.0.0/33' is not an address range"),
            "{e}"
        );
    }
}
