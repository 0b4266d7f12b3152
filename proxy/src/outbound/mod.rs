//! Outbound: the app's connections, intercepted on 15001, carried to the destination service.
//!
//! Per connection: find the original destination, look up the service that owns it (no service
//! means pass through untouched), detect the protocol unless the port is opaque, then serve HTTP
//! per request or forward the byte stream.
//!
//! No plaintext by surprise: with a control plane, an address the proxy has not resolved waits
//! (up to `controlPlane.resolveTimeout`) for the control plane's answer. If none comes and the
//! address is inside the mesh's ranges (`meshAddressRanges`), it may be a meshed service this
//! proxy has not heard of yet, so the connection is closed (reset) rather than sent in the
//! clear. Only an address the control plane said is not a service, or one outside every range,
//! is passed through.

mod connect;
mod http;
mod mesh;
mod tcp;

pub use self::connect::Clients;
pub use self::http::{OutboundHttp, ServiceStack, stacks};

/// The request body the outbound stack carries. The connection layer and the pools are typed by
/// it; every layer above is generic (the retry layer will make this a replayable body).
pub type OutboundBody = crate::traffic::replay::ReplayBody<crate::telemetry::layer::InBody>;
pub use self::tcp::{MAGIC as TCP_MAGIC, MAGIC_PEER as TCP_MAGIC_PEER};

use crate::config::Config;
use crate::config::ServiceProtocol;
use crate::ctx::Ctx;
use crate::detect::{self, Protocol};
use crate::drain;
use crate::first_speaker::{self, Settled};
use crate::io::Prefixed;
use crate::metrics::{ConnKind, Direction, RefuseReason};
use bytes::Bytes;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpStream;
use tracing::{debug, warn};

/// Handles one accepted outbound connection until it closes.
pub async fn serve(
    ctx: Arc<Ctx>,
    fixed: Option<SocketAddr>,
    mut tcp: TcpStream,
    client: SocketAddr,
    drain: drain::Watch,
) {
    let config = ctx.config();
    let metrics = &ctx.metrics;
    let Ok(local) = tcp.local_addr() else { return };
    let dst = match fixed {
        Some(d) => d,
        None => match crate::transport::original_dst(&tcp) {
            Ok(d) => d,
            Err(e) => {
                warn!(%client, error = %e, "cannot read the original destination; closing");
                return;
            }
        },
    };
    if crate::transport::is_loop(dst, local) {
        warn!(%client, %local, "connection addressed to the outbound listener itself (no iptables redirect?); closing");
        metrics.connection(Direction::Outbound, ConnKind::Refused);
        return;
    }
    let (config, unresolved) = resolve(&ctx, config, dst).await;
    let svc = if config.is_excluded_outbound_port(dst.port()) {
        None
    } else {
        config.service(&dst).cloned()
    };
    let Some(svc) = svc else {
        if unresolved && config.in_mesh_range(dst.ip()) {
            refuse_unresolved(&ctx, &config, tcp, dst, client);
            return;
        }
        metrics.connection(Direction::Outbound, ConnKind::Passthrough);
        tcp::passthrough(&ctx, dst, Prefixed::new(Bytes::new(), tcp)).await;
        return;
    };
    // A port declared HTTP is served as HTTP whatever arrives (hyper answers 400 or 408); only
    // undeclared ports fall back to opaque TCP, and only for bytes that cannot be a request.
    let declared_http = matches!(
        svc.protocol,
        ServiceProtocol::Http1 | ServiceProtocol::Http2
    );
    if !declared_http && (svc.protocol == ServiceProtocol::Tcp || config.is_opaque_port(dst.port()))
    {
        metrics.connection(Direction::Outbound, ConnKind::Tcp);
        tcp::forward(&ctx, &svc, client, dst, tcp).await;
        return;
    }
    let detected = match detect::detect(&mut tcp, config.timeouts.detect).await {
        Ok(d) => d,
        Err(e) => {
            debug!(%client, error = %e, "connection failed during protocol detection");
            return;
        }
    };
    if detected.timed_out {
        metrics.detect_timeouts.inc();
    }
    let (protocol, buffered) = match detected.protocol {
        Protocol::Opaque if declared_http => (Protocol::Http1, detected.buffered),
        Protocol::Opaque if detected.is_silent() => {
            let upstream = match tcp::connect(&ctx, &svc, client, dst).await {
                Ok(u) => u,
                Err(flags) => return tcp::report_failure(&ctx, &svc, client, dst, flags),
            };
            match first_speaker::settle(&mut tcp, upstream, config.timeouts.header_read).await {
                Ok(Settled::Http { protocol, buffered }) => (protocol, buffered),
                Ok(Settled::Opaque { pending, upstream }) => {
                    metrics.connection(Direction::Outbound, ConnKind::Tcp);
                    let io = Prefixed::new(pending.freeze(), tcp);
                    tcp::splice(&ctx, &svc, io, upstream, (client, dst)).await;
                    return;
                }
                Err(e) => {
                    debug!(%client, error = %e, "connection failed while waiting for a first byte");
                    return;
                }
            }
        }
        protocol => (protocol, detected.buffered),
    };
    let io = Prefixed::new(buffered.freeze(), tcp);
    let http = self::http::service(ctx.clone(), &svc, dst, client);
    let svc_hyper = hyper_util::service::TowerToHyperService::new(http);
    let res = match protocol {
        Protocol::Http1 => {
            metrics.connection(Direction::Outbound, ConnKind::Http1);
            let idle = metrics.idle_timeout(Direction::Outbound, config.timeouts.idle);
            crate::http::server::serve_h1(
                io,
                svc_hyper,
                config.limits,
                config.timeouts,
                idle,
                drain,
            )
            .await
        }
        Protocol::Http2 => {
            metrics.connection(Direction::Outbound, ConnKind::Http2);
            let idle = metrics.idle_timeout(Direction::Outbound, config.timeouts.idle);
            crate::http::server::serve_h2(io, svc_hyper, config.limits, idle, drain).await
        }
        Protocol::Opaque => {
            metrics.connection(Direction::Outbound, ConnKind::Tcp);
            tcp::forward(&ctx, &svc, client, dst, io).await;
            Ok(())
        }
    };
    if let Err(e) = res {
        debug!(%client, %dst, error = %e, "outbound HTTP connection ended with an error");
    }
}

/// Asks the control plane about a destination the config does not know, waiting at most
/// `controlPlane.resolveTimeout`. Returns the config to use and whether `dst` is still
/// unresolved: a control plane is configured but has not answered for it (unreachable, slow,
/// or the discovery client not started yet).
async fn resolve(ctx: &Ctx, config: Arc<Config>, dst: SocketAddr) -> (Arc<Config>, bool) {
    if config.is_excluded_outbound_port(dst.port()) || config.service(&dst).is_some() {
        return (config, false);
    }
    let Some(cp) = &config.control_plane else {
        // A static config is the whole truth: what it does not name is not a service.
        return (config, false);
    };
    let Some(d) = ctx.discovery.get() else {
        return (config, true);
    };
    let name = dst.to_string();
    if d.is_answered(&name) {
        return (config, false);
    }
    d.resolve(name.clone(), cp.resolve_timeout).await;
    (ctx.config(), !d.is_answered(&name))
}

/// Closes the connection with a reset, so the app sees a failed connection at once rather
/// than an empty reply, counts it, and warns once per destination.
fn refuse_unresolved(
    ctx: &Ctx,
    config: &Config,
    tcp: TcpStream,
    dst: SocketAddr,
    client: SocketAddr,
) {
    ctx.metrics
        .refused(Direction::Outbound, RefuseReason::Unresolved);
    crate::transport::close_with_reset(tcp);
    let first = ctx.discovery.get().is_none_or(|d| d.first_refusal(dst));
    let wait = config.control_plane.as_ref().map(|cp| cp.resolve_timeout);
    if first {
        warn!(%client, %dst, ?wait, "refused a connection to an address inside meshAddressRanges that the control plane has not resolved (is it reachable?); not sending it in plaintext");
    } else {
        debug!(%client, %dst, "refused a connection to an unresolved mesh address");
    }
}
