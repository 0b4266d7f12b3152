//! Opaque TCP: to a mesh endpoint over mTLS (with a header naming the target port), to an
//! endpoint without a sidecar directly, or straight through when the destination is not ours.
//! A stream with no byte either way for `timeouts.tcpIdle` is closed.

use crate::config::Service;
use crate::ctx::Ctx;
use crate::io::Prefixed;
use crate::metrics::Direction;
use crate::telemetry::UpstreamInfo;
use crate::telemetry::layer::Reports;
use crate::telemetry::tcp::TcpReport;
use crate::tls::originate::ClientTls;
use crate::tls::{ALPN_TCP_PEER, OFFER_TCP};
use crate::traffic::ResponseFlags;
use crate::traffic::balance::{BalanceTarget, HashKey, PickInput};
use crate::traffic::cache::TcpSlot;
use crate::traffic::endpoint::ActiveGuard;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tracing::debug;

/// The stream header on `sinew/tcp` connections: magic, version, target port.
pub const MAGIC: &[u8; 4] = b"SNW\x01";
/// The stream header on `sinew/tcp-peer` connections: magic, version 2, target port, then the
/// length (2 bytes, big-endian) and bytes of the client's peer metadata (the `x-sinew-peer`
/// value, at most [`crate::telemetry::peer::MAX_LEN`]; length 0: none).
pub const MAGIC_PEER: &[u8; 4] = b"SNW\x02";

pub fn header(port: u16) -> [u8; 6] {
    let p = port.to_be_bytes();
    [MAGIC[0], MAGIC[1], MAGIC[2], MAGIC[3], p[0], p[1]]
}

/// The `sinew/tcp-peer` header: metadata longer than the receiver reads is left out.
pub fn header_with_peer(port: u16, meta: &[u8]) -> Vec<u8> {
    let meta = if meta.len() <= crate::telemetry::peer::MAX_LEN {
        meta
    } else {
        &[]
    };
    let mut h = Vec::with_capacity(8 + meta.len());
    h.extend_from_slice(MAGIC_PEER);
    h.extend_from_slice(&port.to_be_bytes());
    h.extend_from_slice(&(meta.len() as u16).to_be_bytes());
    h.extend_from_slice(meta);
    h
}

/// The header for the stream `tls` negotiated: with this proxy's peer metadata when the server
/// takes it.
fn stream_header(ctx: &Ctx, svc: &Service, tls: &TlsStream<TcpStream>, port: u16) -> Vec<u8> {
    if tls.get_ref().1.alpn_protocol() != Some(ALPN_TCP_PEER) {
        return header(port).to_vec();
    }
    let own = ctx.config().telemetry.workload.clone();
    let meta = ctx
        .tls
        .current()
        .and_then(|s| crate::telemetry::peer::encode(&own, s.creds.identity.as_str(), &svc.name));
    header_with_peer(port, meta.as_ref().map_or(&[][..], |v| v.as_bytes()))
}

/// The far end of an opaque stream: a peer proxy over mTLS (stream header already sent) or an
/// endpoint without a sidecar. Counts as one active request on its endpoint while open.
pub struct Upstream {
    io: UpstreamIo,
    _active: Option<(ActiveGuard, TcpSlot)>,
    /// The endpoint, for the stream's report.
    info: Arc<UpstreamInfo>,
}

enum UpstreamIo {
    Mesh(Box<TlsStream<TcpStream>>),
    Plain(TcpStream),
}

/// Connects to an endpoint of the service, chosen by its balancer in the config in force (the
/// same per-service state as HTTP); failures are logged and give the response flag that says
/// why (NR, UH, UO, UF).
pub async fn connect(
    ctx: &Ctx,
    svc: &Service,
    client: SocketAddr,
    dst: SocketAddr,
) -> Result<Upstream, ResponseFlags> {
    let snap = ctx.snapshot();
    let Some(state) = snap.services.service(&svc.key) else {
        debug!(service = %svc.name, "service no longer configured; closing TCP connection");
        return Err(ResponseFlags::NR);
    };
    let dest = match state.service.tcp_routes.pick() {
        None => &state.default,
        Some(key) => match snap.services.destination(key) {
            Some(d) => d,
            None => {
                debug!(service = %svc.name, destination = %key.service, subset = ?key.subset, "TCP route names an unknown destination; closing");
                return Err(ResponseFlags::NR);
            }
        },
    };
    let lb = dest.balancer();
    let input = PickInput {
        hash: (lb.config().hash_key() == Some(&HashKey::SourceIp))
            .then(|| HashKey::SourceIp.hash(&http::Request::new(()), Some(client.ip())))
            .flatten(),
        dialled: Some(dst),
        previous: None,
    };
    let ep = match lb.pick(dest.endpoints(), &input, &|e| dest.is_ejected(e)) {
        Ok(i) => dest.endpoints()[i].clone(),
        Err(why) => {
            debug!(service = %svc.name, ?why, "no usable endpoint; closing TCP connection");
            return Err(ResponseFlags::UH);
        }
    };
    let Some(slot) = dest.tcp_connection() else {
        ctx.metrics
            .upstream(&dest.key.service)
            .overflow(crate::http::Overflow::Connections);
        debug!(service = %svc.name, "maxConnections reached; closing TCP connection");
        return Err(ResponseFlags::UO);
    };
    let active = ep.stats.start();
    let e = &ep.endpoint;
    let mut timeouts = snap.config.timeouts;
    if let Some(t) = dest.policy.limits.connect_timeout {
        timeouts.connect = t;
    }
    let keepalive = dest.policy.limits.tcp_keepalive.as_ref();
    let identity = match (&dest.policy.tls, &e.identity) {
        (ClientTls::Disable, _) | (ClientTls::Auto, None) => None,
        (ClientTls::Auto | ClientTls::IstioMutual, Some(id)) => Some(id),
        (mode, _) => {
            debug!(service = %svc.name, ?mode, endpoint = %e.addr, "tls mode cannot reach this endpoint over opaque TCP; closing");
            return Err(ResponseFlags::UF);
        }
    };
    let connected = match identity {
        Some(id) => {
            let dial = super::mesh::connect(
                &ctx.outbound,
                &timeouts,
                e.mesh_addr,
                id,
                OFFER_TCP,
                keepalive,
            );
            match dial.await {
                Ok(mut tls) => match tls
                    .write_all(&stream_header(ctx, svc, &tls, e.addr.port()))
                    .await
                {
                    Ok(()) => Ok(UpstreamIo::Mesh(Box::new(tls))),
                    Err(err) => Err(format!("mesh TCP header not sent: {err}")),
                },
                Err(err) => {
                    ep.record_error(&err);
                    Err(format!("mesh TCP connect failed: {err}"))
                }
            }
        }
        None => match crate::http::client::connect_tcp(e.addr, timeouts.connect, keepalive).await {
            Ok(up) => Ok(UpstreamIo::Plain(up)),
            Err(err) => {
                ep.record_error(&err);
                Err(format!("TCP connect failed: {err}"))
            }
        },
    };
    let io = match connected {
        Ok(io) => {
            if let Some(o) = &ep.outlier {
                o.record(crate::traffic::outlier::Outcome::Connected);
            }
            io
        }
        Err(why) => {
            debug!(service = %svc.name, endpoint = %e.addr, "{why}");
            return Err(ResponseFlags::UF);
        }
    };
    let info = UpstreamInfo::new(
        e,
        &svc.name,
        svc.port,
        dest.key.subset.as_deref(),
        identity.is_some(),
    );
    Ok(Upstream {
        io,
        _active: Some((active, slot)),
        info: Arc::new(info),
    })
}

/// The report of the app's stream from `client` to `dst` (a service address).
fn report(
    ctx: &Ctx,
    svc: &Service,
    upstream: Option<Arc<UpstreamInfo>>,
    client: SocketAddr,
    dst: SocketAddr,
) -> TcpReport {
    let reports = Reports::new(ctx, &ctx.config());
    TcpReport::outbound(reports, &svc.name, upstream, Some(dst), Some(client))
}

/// Reports a stream that got no upstream (`flags` say why).
pub fn report_failure(
    ctx: &Ctx,
    svc: &Service,
    client: SocketAddr,
    dst: SocketAddr,
    flags: ResponseFlags,
) {
    report(ctx, svc, None, client, dst).close(0, 0, flags);
}

/// Copies both ways until either side is done or the stream idles out, then reports it.
pub async fn splice<I>(
    ctx: &Ctx,
    svc: &Service,
    io: I,
    mut upstream: Upstream,
    (client, dst): (SocketAddr, SocketAddr),
) where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let report = report(ctx, svc, Some(upstream.info.clone()), client, dst);
    let mut io = report.wrap(io);
    if let Err(e) = crate::io::copy_with_idle_timeout(&mut io, &mut upstream, idle(ctx)).await {
        debug!(service = %svc.name, error = %e, "TCP stream ended with an error");
    }
    let (received, sent) = io.totals();
    report.close(received, sent, ResponseFlags::default());
}

pub async fn forward<I>(ctx: &Ctx, svc: &Service, client: SocketAddr, dst: SocketAddr, io: I)
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    match connect(ctx, svc, client, dst).await {
        Ok(upstream) => splice(ctx, svc, io, upstream, (client, dst)).await,
        Err(flags) => report_failure(ctx, svc, client, dst, flags),
    }
}

fn idle(ctx: &Ctx) -> crate::idle::Timeout {
    ctx.metrics
        .idle_timeout(Direction::Outbound, ctx.config().timeouts.tcp_idle)
}

pub async fn passthrough(ctx: &Ctx, dst: SocketAddr, mut io: Prefixed<TcpStream>) {
    let timeout = ctx.config().timeouts.connect;
    // Not a destination of ours: no DestinationRule, so no keep-alive.
    match crate::http::client::connect_tcp(dst, timeout, None).await {
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
        match &mut self.get_mut().io {
            UpstreamIo::Mesh(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            UpstreamIo::Plain(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Upstream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            UpstreamIo::Mesh(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            UpstreamIo::Plain(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            UpstreamIo::Mesh(s) => Pin::new(s.as_mut()).poll_flush(cx),
            UpstreamIo::Plain(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            UpstreamIo::Mesh(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            UpstreamIo::Plain(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
