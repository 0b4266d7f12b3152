//! `sinew-otlp-receiver --listen 127.0.0.1:4317`: a stand-in OTLP/gRPC trace collector that
//! prints one JSON line per span on stdout (and `listening on ADDR` on stderr once bound, so a
//! caller that asked for port 0 learns the port). Stops on SIGTERM or SIGINT.

#![forbid(unsafe_code)]

use sinew_otlp_receiver::Receiver;
use std::io::Write as _;
use std::net::SocketAddr;

const USAGE: &str = "usage: sinew-otlp-receiver [--listen ADDR]   (default 127.0.0.1:4317)";

fn main() -> std::process::ExitCode {
    let mut args = std::env::args().skip(1);
    let mut listen: SocketAddr = ([127, 0, 0, 1], 4317).into();
    while let Some(a) = args.next() {
        match (a.as_str(), args.next()) {
            ("--listen", Some(v)) => match v.parse() {
                Ok(addr) => listen = addr,
                Err(e) => {
                    eprintln!("sinew-otlp-receiver: --listen {v:?}: {e} (want IP:PORT)");
                    return std::process::ExitCode::from(2);
                }
            },
            _ => {
                eprintln!("{USAGE}");
                return std::process::ExitCode::from(2);
            }
        }
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sinew-otlp-receiver: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let receiver = match Receiver::start_with(listen, |span| {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{}", span.to_json());
            let _ = out.flush();
        })
        .await
        {
            Ok(r) => r,
            Err(e) => {
                eprintln!("sinew-otlp-receiver: cannot listen on {listen}: {e}");
                return std::process::ExitCode::FAILURE;
            }
        };
        eprintln!("listening on {}", receiver.addr());
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => std::future::pending::<()>().await,
        }
        receiver.stop().await;
        std::process::ExitCode::SUCCESS
    })
}
