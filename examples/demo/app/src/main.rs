//! `sinew-demo`: the application `sinewctl up examples/demo` runs in each pod.
//!
//! One binary with three modes, so the demo needs one build:
//! - `backend` answers every request with JSON naming itself and the caller's mesh identity, and can
//!   inject failures and latency so retries, timeouts and outlier detection have something to do;
//! - `frontend` calls every backend for each request and reports what each answered, so one `curl`
//!   shows the whole call graph and the identity each hop saw;
//! - `load` sends requests at a fixed rate and prints success rate and latency per interval, to watch
//!   the mesh react (and to measure how long until the first request gets through).
//!
//! The app knows nothing of the mesh: it speaks plaintext HTTP and the sidecar intercepts it. It
//! does what the mesh asks of every app for tracing: the frontend passes the trace headers of each
//! request on to the backend calls it causes, so a request shows up as one trace. Every mode exits 0
//! on SIGTERM or SIGINT.

#![forbid(unsafe_code)]

mod backend;
mod client;
mod frontend;
mod load;
mod server;
#[cfg(test)]
mod tests;
mod trace_headers;

use clap::{Parser, Subcommand};
use std::{io, net::SocketAddr, process::ExitCode};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

#[derive(Parser)]
#[command(
    name = "sinew-demo",
    version,
    about = "The Sinew demo application: backend, frontend and load generator"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Answer every request with JSON naming this service and its caller; optionally fail or stall.
    Backend {
        /// Address to listen on.
        #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:8080")]
        listen: SocketAddr,
        #[command(flatten)]
        opts: backend::BackendOpts,
    },
    /// Call every backend for each request; 200 if all answered 2xx, else 502.
    Frontend {
        /// Address to listen on.
        #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:8080")]
        listen: SocketAddr,
        #[command(flatten)]
        opts: frontend::FrontendOpts,
    },
    /// Send GETs at a fixed rate and print success rate and latency per interval.
    Load(load::LoadOpts),
}

#[tokio::main(worker_threads = 2)]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sinew-demo: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    // Watch signals before binding, so a SIGTERM right after start is not lost.
    let shutdown = shutdown_signal()?;
    match command {
        Command::Backend { listen, opts } => {
            let listener = bind(listen).await?;
            eprintln!("sinew-demo: backend {:?} listening on {listen}", opts.name);
            backend::serve_backend(listener, opts, shutdown).await;
        }
        Command::Frontend { listen, opts } => {
            let listener = bind(listen).await?;
            eprintln!("sinew-demo: frontend listening on {listen}");
            frontend::serve_frontend(listener, opts, shutdown).await;
        }
        Command::Load(opts) => {
            load::run_load(opts, shutdown, &mut io::stdout()).await;
        }
    }
    Ok(())
}

/// Resolves on the first SIGTERM or SIGINT.
fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()>> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| {
        let hint = match e.kind() {
            io::ErrorKind::AddrInUse => "; is another process (or pod) using the port?",
            io::ErrorKind::PermissionDenied => "; ports below 1024 need CAP_NET_BIND_SERVICE",
            io::ErrorKind::AddrNotAvailable => "; that address is not on this host (try 0.0.0.0)",
            _ => "",
        };
        anyhow::anyhow!("cannot listen on {addr}: {e}{hint}")
    })
}
