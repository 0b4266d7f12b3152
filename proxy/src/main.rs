//! The `sinew-proxy` binary: `run` the sidecar, `init` the pod's interception rules, or `wait`
//! until the sidecar is ready.

#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};
use sinew_proxy::app::Proxy;
use sinew_proxy::app_health::{self, AppHealth, spec::Probers};
use sinew_proxy::config::bootstrap;
use std::path::PathBuf;
use std::sync::Arc;
use tracing_subscriber::{EnvFilter, prelude::*, reload};

/// The pod's IP, from the downward API (the injector's contract).
const POD_IP_ENV: &str = "SINEW_POD_IP";

#[derive(Parser)]
#[command(name = "sinew-proxy", version, about = "Sinew's sidecar proxy")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the sidecar.
    Run(RunArgs),
    /// Install the pod's traffic interception rules (iptables nat), or remove them with --cleanup.
    Init(sinew_proxy::init::InitArgs),
    /// Return once the proxy answers its readiness URL with 200; exit status 1 after --timeout-seconds.
    Wait(sinew_proxy::wait::WaitArgs),
}

#[derive(clap::Args)]
struct RunArgs {
    /// Static bootstrap config (YAML or JSON form of sinew.config.v1.ProxyConfig). Without it,
    /// the config is the JSON in env SINEW_PROXY_CONFIG (not both).
    #[arg(long, env = "SINEW_CONFIG")]
    config: Option<PathBuf>,
    /// Worker threads for the data path; 1 runs everything on one thread.
    #[arg(long, env = "SINEW_WORKERS", default_value_t = 2)]
    workers: usize,
    /// Log filter (tracing EnvFilter syntax), changeable later with POST /logging?level=.
    #[arg(long, env = "SINEW_LOG", default_value = "info")]
    log_level: String,
    /// OTLP/gRPC collector for spans, http://host:port; overrides the bootstrap's
    /// telemetry.tracing.otlpEndpoint (empty: keep it).
    #[arg(long, env = "SINEW_OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,
    /// Percentage (0-100) of new traces sampled; overrides the bootstrap's
    /// telemetry.tracing.randomSamplingPercentage (empty: keep it; default 1).
    #[arg(long, env = "SINEW_TRACE_SAMPLING")]
    trace_sampling: Option<String>,
    /// Write an access-log line per request and TCP connection on stdout, in Envoy's default
    /// text format or as JSON, whatever the config says (default: as the config says; off).
    #[arg(long, env = "SINEW_ACCESS_LOG", value_parser = ["text", "json"])]
    access_log: Option<String>,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let res = match cli.command {
        Command::Run(args) => run(args),
        Command::Init(args) => sinew_proxy::init::run(&args),
        Command::Wait(args) => sinew_proxy::wait::run(&args),
    };
    match res {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sinew-proxy: {}", report(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

/// The error and each of its causes, once. Our error types put their cause's text in their own
/// message (so a log line reads whole), and `{:#}` would print it a second time.
fn report(e: &anyhow::Error) -> String {
    let mut out = e.to_string();
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
    }
    out
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(&args.log_level)
        .map_err(|e| anyhow::anyhow!("invalid --log-level {:?}: {e}", args.log_level))?;
    let (filter, handle) = reload::Layer::new(filter);
    tracing_subscriber::registry()
        .with(filter)
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .init();
    let set_level: sinew_proxy::admin::SetLogLevel = Arc::new(move |level: &str| {
        let f = EnvFilter::try_new(level).map_err(|e| e.to_string())?;
        handle.reload(f).map_err(|e| e.to_string())
    });

    let config = bootstrap::load(
        args.config.as_deref(),
        std::env::var_os(bootstrap::ENV).as_deref(),
    )?;
    let config = bootstrap::with_tracing(
        config,
        args.otlp_endpoint.as_deref(),
        args.trace_sampling.as_deref(),
    )?;
    let access_log = args
        .access_log
        .as_deref()
        .map(str::parse::<sinew_proxy::telemetry::access_log::Format>)
        .transpose()
        .map_err(|e| anyhow::anyhow!("invalid --access-log: {e}"))?;
    let probers = Probers::from_env(std::env::var_os(app_health::spec::ENV).as_deref())?;
    // The kubelet's probes carry the pod's IP as their Host; the downward API gives it to us.
    let pod_ip = std::env::var(POD_IP_ENV)
        .ok()
        .and_then(|ip| ip.parse().ok());
    let runtime = if args.workers <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.workers)
            .enable_all()
            .build()?
    };
    runtime.block_on(async move {
        let mut proxy = Proxy::bind(config, Some(set_level)).await?;
        if let Some(format) = access_log {
            proxy = proxy.with_access_log(format);
        }
        if !probers.is_empty() {
            tracing::info!(
                probes = probers.len(),
                "answering the app's probes on /app-health/"
            );
            proxy = proxy.with_app_health(AppHealth::new(probers, pod_ip));
        }
        proxy.run(std::future::pending()).await
    })?;
    // Don't wait for connection tasks still open past the drain deadline.
    runtime.shutdown_background();
    Ok(())
}
