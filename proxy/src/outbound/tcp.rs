//! Opaque TCP: to a mesh endpoint over mTLS (with a header naming the target port), to an
//! endpoint without a sidecar directly, or straight through when the destination is not ours.
//! A stream with no byte either way for `timeouts.tcpIdle` is closed.

use crate::config::Service;
use crate::ctx::Ctx;
use crate::io::Prefixed;
use crate::metrics::Direction;
use crate::tls::ALPN_TCP;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tracing::debug;

/// The stream header on `sinew/tcp` connections: magic, version, target port.
pub const MAGIC: &[u8; 4] = b"SNW\x01";

pub fn header(port: u16) -> [u8; 6] {
    let p = port.to_be_bytes();
    [MAGIC[0], MAGIC[1], MAGIC[2], MAGIC[3], p[0], p[1]]
}

/// The far end of an opaque stream: a peer proxy over mTLS (stream header already sent) or an
/// endpoint without a sidecar.
pub enum Upstream {
    Mesh(Box<TlsStream<TcpStream>>),
    Plain(TcpStream),
}

/// Connects to one of the service's endpoints; failures are logged and give `None`.
pub async fn connect(ctx: &Ctx, svc: &Service) -> Option<Upstream> {
    let Some(ep) = svc.pick() else {
        debug!(service = %svc.name, "no endpoints; closing TCP connection");
        return None;
    };
    match &ep.identity {
        Some(id) => {
            let mut tls = match super::mesh::connect(ctx, ep.mesh_addr, id, ALPN_TCP).await {
                Ok(tls) => tls,
                Err(e) => {
                    debug!(service = %svc.name, error = %e, "mesh TCP connect failed");
                    return None;
                }
            };
            match tls.write_all(&header(ep.addr.port())).await {
                Ok(()) => Some(Upstream::Mesh(Box::new(tls))),
                Err(e) => {
                    debug!(service = %svc.name, error = %e, "mesh TCP header not sent");
                    None
                }
            }
        }
        None => {
            let timeout = ctx.config().timeouts.connect;
            match crate::http::client::connect_tcp(ep.addr, timeout).await {
                Ok(up) => Some(Upstream::Plain(up)),
                Err(e) => {
                    debug!(service = %svc.name, error = %e, "TCP connect failed");
                    None
                }
            }
        }
    }
}

/// Copies both ways until either side is done or the stream idles out.
pub async fn splice<I>(ctx: &Ctx, svc: &Service, mut io: I, mut upstream: Upstream)
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    if let Err(e) = crate::io::copy_with_idle_timeout(&mut io, &mut upstream, idle(ctx)).await {
        debug!(service = %svc.name, error = %e, "TCP stream ended with an error");
    }
}

pub async fn forward<I>(ctx: &Ctx, svc: &Service, io: I)
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    if let Some(upstream) = connect(ctx, svc).await {
        splice(ctx, svc, io, upstream).await;
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

// === impl Upstream ===

impl AsyncRead for Upstream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Mesh(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Upstream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Mesh(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Mesh(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Mesh(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
