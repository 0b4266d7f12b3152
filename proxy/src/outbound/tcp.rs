//! Opaque TCP: to a mesh endpoint over mTLS (with a header naming the target port), to an
//! endpoint without a sidecar directly, or straight through when the destination is not ours.
//! A stream with no byte either way for `timeouts.tcpIdle` is closed.

use crate::config::Service;
use crate::ctx::Ctx;
use crate::io::Prefixed;
use crate::metrics::Direction;
use crate::tls::ALPN_TCP;
use std::net::SocketAddr;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tracing::debug;

/// The stream header on `sinew/tcp` connections: magic, version, target port.
pub const MAGIC: &[u8; 4] = b"SNW\x01";

pub fn header(port: u16) -> [u8; 6] {
    let p = port.to_be_bytes();
    [MAGIC[0], MAGIC[1], MAGIC[2], MAGIC[3], p[0], p[1]]
}

pub async fn forward(ctx: &Ctx, svc: &Service, mut io: Prefixed<TcpStream>) {
    let Some(ep) = svc.pick() else {
        debug!(service = %svc.name, "no endpoints; closing TCP connection");
        return;
    };
    let res = match &ep.identity {
        Some(id) => match super::mesh::connect(ctx, ep.mesh_addr, id, ALPN_TCP).await {
            Ok(mut tls) => match tls.write_all(&header(ep.addr.port())).await {
                Ok(()) => crate::io::copy_with_idle_timeout(&mut io, &mut tls, idle(ctx)).await,
                Err(e) => Err(e),
            },
            Err(e) => {
                debug!(service = %svc.name, error = %e, "mesh TCP connect failed");
                return;
            }
        },
        None => {
            let timeout = ctx.config().timeouts.connect;
            match crate::http::client::connect_tcp(ep.addr, timeout).await {
                Ok(mut up) => crate::io::copy_with_idle_timeout(&mut io, &mut up, idle(ctx)).await,
                Err(e) => {
                    debug!(service = %svc.name, error = %e, "TCP connect failed");
                    return;
                }
            }
        }
    };
    if let Err(e) = res {
        debug!(service = %svc.name, error = %e, "TCP stream ended with an error");
    }
}

fn idle(ctx: &Ctx) -> crate::idle::Timeout {
    ctx.metrics
        .idle_timeout(Direction::Outbound, ctx.config().timeouts.tcp_idle)
}

pub async fn passthrough(ctx: &Ctx, dst: SocketAddr, mut io: Prefixed<TcpStream>) {
    let timeout = ctx.config().timeouts.connect;
    match crate::http::client::connect_tcp(dst, timeout).await {
        Ok(mut up) => {
            if let Err(e) = crate::io::copy_with_idle_timeout(&mut io, &mut up, idle(ctx)).await {
                debug!(%dst, error = %e, "passthrough stream ended with an error");
            }
        }
        Err(e) => debug!(%dst, error = %e, "passthrough connect failed"),
    }
}
