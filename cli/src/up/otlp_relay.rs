//! The OTLP relay: how spans from the pods reach a collector on the host's loopback.
//!
//! Pods live in network namespaces on the run's bridge; `127.0.0.1` there is the pod itself, so a
//! collector started on the host (`docker run -p 4317:4317 jaegertracing/jaeger`) is out of their
//! reach. The relay listens inside the control plane's namespace, on the bridge
//! (`CONTROL_PLANE_IP:4317`, which every pod reaches as it reaches the control plane), and copies
//! each connection, byte for byte, to the collector the user named, dialled from the host's
//! namespace. It knows nothing of OTLP: gRPC passes through unchanged.
//!
//! Promises: bounded — at most [`Limits::connections`] relayed at once (more are closed at once)
//! and [`Limits::buffer`] bytes of buffer each way per connection; a collector that cannot be
//! reached is reported once per outage (and its return once), not per connection; the relay and
//! every connection it carries end when its task is aborted, which the run does at teardown.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

/// OTLP/gRPC's port, where the relay listens and the default of a collector URL without one.
pub const OTLP_GRPC_PORT: u16 = 4317;

/// A collector endpoint as the user gave it: `http://HOST[:PORT][/]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collector {
    pub host: String,
    pub port: u16,
}

// === impl Collector ===

impl Collector {
    /// Reads `http://HOST[:PORT]`; anything the relay cannot carry is refused with the reason.
    pub fn parse(url: &str) -> Result<Collector, String> {
        let bad = |why: &str| format!("--otlp-endpoint {url:?}: {why}");
        let rest = match url.split_once("://") {
            Some(("http", rest)) => rest,
            Some(("https", _)) => {
                return Err(bad(
                    "local mode relays plaintext OTLP/gRPC only; use http:// (a local Jaeger listens on http://127.0.0.1:4317)",
                ));
            }
            _ => return Err(bad("expected http://HOST:PORT, e.g. http://127.0.0.1:4317")),
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains(['/', '?', '#', '@']) || authority.is_empty() {
            return Err(bad("expected http://HOST:PORT with no path, query or user"));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| bad("unclosed [ in the host"))?;
            (host, after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        let port = match port {
            None => OTLP_GRPC_PORT,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| bad("the port must be a number from 1 to 65535"))?,
        };
        let host_ok = !host.is_empty()
            && host.len() <= 253
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b':' | b'_'));
        if !host_ok {
            return Err(bad("the host is not a name or an IP address"));
        }
        Ok(Collector {
            host: host.to_string(),
            port,
        })
    }
}

impl std::fmt::Display for Collector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "http://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "http://{}:{}", self.host, self.port)
        }
    }
}

/// How much the relay may hold.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections relayed at once (each proxy keeps one to export its spans).
    pub connections: usize,
    /// Bytes buffered each way per connection.
    pub buffer: usize,
    /// How long dialling the collector may take.
    pub connect_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            connections: 1024,
            buffer: 16 * 1024,
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// Relays every connection accepted on `listener` to `collector` until the task is aborted;
/// says on `events` when the collector stops (and starts again) answering.
pub async fn serve(
    listener: TcpListener,
    collector: Collector,
    limits: Limits,
    events: mpsc::Sender<String>,
) {
    let permits = Arc::new(Semaphore::new(limits.connections));
    let state = Arc::new(Outage::default());
    // Owned here: aborting this task drops the set, which aborts every relayed connection.
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let Ok((inbound, _)) = accepted else {
            // Out of descriptors or similar: give it a moment rather than spin.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            if !state.full.swap(true, Ordering::Relaxed) {
                let _ = events.try_send(format!(
                    "OTLP relay: at its limit of {} connections; closing new ones",
                    limits.connections
                ));
            }
            continue;
        };
        state.full.store(false, Ordering::Relaxed);
        let (collector, state, events) = (collector.clone(), state.clone(), events.clone());
        connections.spawn(async move {
            let _permit = permit;
            relay(inbound, &collector, limits, &state, &events).await;
        });
    }
}

/// What has been said about the collector, so each outage is reported once.
#[derive(Default)]
struct Outage {
    down: AtomicBool,
    full: AtomicBool,
}

async fn relay(
    mut inbound: TcpStream,
    collector: &Collector,
    limits: Limits,
    state: &Outage,
    events: &mpsc::Sender<String>,
) {
    let dialled = tokio::time::timeout(limits.connect_timeout, dial(collector))
        .await
        .unwrap_or_else(|_| {
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no answer in {:?}", limits.connect_timeout),
            ))
        });
    let mut outbound = match dialled {
        Ok(s) => s,
        Err(e) => {
            if !state.down.swap(true, Ordering::Relaxed) {
                let _ = events.try_send(format!(
                    "the OTLP collector at {collector} cannot be reached ({e}); the proxies drop their spans until it answers"
                ));
            }
            return;
        }
    };
    if state.down.swap(false, Ordering::Relaxed) {
        let _ = events.try_send(format!("the OTLP collector at {collector} answers again"));
    }
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    let _ = tokio::io::copy_bidirectional_with_sizes(
        &mut inbound,
        &mut outbound,
        limits.buffer,
        limits.buffer,
    )
    .await;
}

/// Connects to the collector from the host's network namespace, trying each address its name
/// resolves to (resolved on every connection, so a changed name is followed).
async fn dial(c: &Collector) -> io::Result<TcpStream> {
    let mut last = io::Error::new(
        io::ErrorKind::NotFound,
        format!("{} resolves to nothing", c.host),
    );
    for addr in tokio::net::lookup_host((c.host.as_str(), c.port)).await? {
        match TcpStream::connect(addr).await {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Where the relay listens: the control plane's address on the bridge.
pub fn listen_address() -> SocketAddr {
    SocketAddr::new(crate::state::CONTROL_PLANE_IP.into(), OTLP_GRPC_PORT)
}

#[cfg(test)]
mod tests;
