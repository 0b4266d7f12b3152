//! Inbound: connections to this pod, intercepted on 15006, delivered to the app on
//! `127.0.0.1:<port>`.
//!
//! The first bytes decide: a TLS ClientHello offering a sinew ALPN is a peer proxy (mTLS is
//! terminated and the peer's identity recorded); anything else is plaintext or the app's own TLS,
//! accepted in PERMISSIVE mode and refused in STRICT mode.
//!
//! Delivery goes to the address the client reached (the pod IP under interception), from
//! [`APP_SOURCE`], as Istio does since 1.10: an app listening only on 127.0.0.1 stays private to
//! its pod instead of being exposed to the mesh by its sidecar.

mod http;
pub mod tcp_header;

pub use self::http::InboundHttp;

use crate::authz::Source;
use crate::config::{InboundMode, ServiceProtocol};
use crate::ctx::Ctx;
use crate::detect::{self, Protocol};
use crate::drain;
use crate::first_speaker::{self, Settled};
use crate::io::Prefixed;
use crate::metrics::{ConnKind, Direction};
use crate::telemetry::layer::Reports;
use crate::telemetry::tcp::TcpReport;
use crate::tls::client_hello::{self, Hello};
use crate::tls::{self, PeerInfo};
use crate::traffic::ResponseFlags;
use bytes::BytesMut;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::TcpStream;
use tracing::{debug, info, warn};

/// The source address of the proxy's connections to the app. `sinew-proxy init` lets traffic
/// from it reach the pod's own IP without redirecting it back to the inbound listener (Istio
/// uses the same address, so apps and NetworkPolicies that know Istio's see what they expect).
pub const APP_SOURCE: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 6);

/// What the first bytes of an inbound connection are.
enum First {
    Mesh,
    OtherTls,
    Plain,
}

/// Handles one accepted inbound connection until it closes.
pub async fn serve(
    ctx: Arc<Ctx>,
    app_port: Option<u16>,
    mut tcp: TcpStream,
    client: SocketAddr,
    drain: drain::Watch,
) {
    let config = ctx.config();
    let metrics = &ctx.metrics;
    let Ok(local) = tcp.local_addr() else { return };
    // Without interception (a direct dial of the listener) only mesh traffic names its port.
    let original = crate::transport::original_dst(&tcp)
        .ok()
        .filter(|d| !crate::transport::is_loop(*d, local));
    let default_port = app_port.or(original.map(|d| d.port()));
    let app_ip = original.map_or(local.ip(), |d| d.ip());

    let deadline = tokio::time::Instant::now() + config.timeouts.detect;
    let mut buf = BytesMut::with_capacity(1024);
    let first = loop {
        match client_hello::parse(&buf) {
            Hello::NotTls => break First::Plain,
            Hello::ClientHello { alpn } => {
                let mesh = alpn.iter().any(|a| tls::MESH_ALPNS.contains(a));
                break if mesh { First::Mesh } else { First::OtherTls };
            }
            Hello::Incomplete => {}
        }
        match tokio::time::timeout_at(deadline, tcp.read_buf(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Ok(Ok(_)) => {}
            // A client that sends nothing (server-first protocol) is plaintext to the app.
            Err(_) => break First::Plain,
        }
    };

    match first {
        First::Mesh => {
            let io = Prefixed::new(buf.freeze(), tcp);
            let local = original.or(Some(local));
            serve_mesh(&ctx, default_port, app_ip, io, (local, client), drain).await
        }
        // A port in STRICT mode; without a port, any STRICT port (it may be the one meant).
        _ if match default_port {
            Some(port) => config.inbound_mode(Some(port)) == InboundMode::Strict,
            None => config.any_strict(),
        } =>
        {
            metrics.connection(Direction::Inbound, ConnKind::Refused);
            info!(%client, port = ?default_port, "refused a connection without mesh mTLS: the port's mTLS mode is STRICT");
        }
        First::OtherTls => {
            metrics.connection(Direction::Inbound, ConnKind::Tcp);
            let Some(port) = default_port else {
                return no_port(client);
            };
            let app = SocketAddr::new(app_ip, port);
            let side = TcpSide::plain(original.or(Some(local)), client);
            forward_tcp(&ctx, app, Prefixed::new(buf.freeze(), tcp), side).await;
        }
        First::Plain => {
            let Some(port) = default_port else {
                return no_port(client);
            };
            let app = SocketAddr::new(app_ip, port);
            let declared = config.inbound_protocol(port);
            if declared == ServiceProtocol::Tcp {
                metrics.connection(Direction::Inbound, ConnKind::Tcp);
                let side = TcpSide::plain(original.or(Some(local)), client);
                forward_tcp(&ctx, app, Prefixed::new(buf.freeze(), tcp), side).await;
                return;
            }
            let declared_http = matches!(declared, ServiceProtocol::Http1 | ServiceProtocol::Http2);
            let detected = match detect::detect_buffered(&mut tcp, buf, deadline).await {
                Ok(d) => d,
                Err(_) => return,
            };
            if detected.timed_out {
                metrics.detect_timeouts.inc();
            }
            let (protocol, buffered) = match detected.protocol {
                // A port declared HTTP is HTTP whatever arrives: hyper answers 400 or 408.
                Protocol::Opaque if declared_http => (Protocol::Http1, detected.buffered),
                Protocol::Opaque if detected.is_silent() => {
                    let Some(upstream) = connect_app(&ctx, app).await else {
                        return;
                    };
                    match first_speaker::settle(&mut tcp, upstream, config.timeouts.header_read)
                        .await
                    {
                        Ok(Settled::Http { protocol, buffered }) => (protocol, buffered),
                        Ok(Settled::Opaque { pending, upstream }) => {
                            metrics.connection(Direction::Inbound, ConnKind::Tcp);
                            let side = TcpSide::plain(original.or(Some(local)), client);
                            let allowed = side.allowed(&ctx, port);
                            let report = side.report(&ctx);
                            if !allowed {
                                report.close(0, 0, ResponseFlags::default());
                                return;
                            }
                            let io = Prefixed::new(pending.freeze(), tcp);
                            splice(&ctx, app, io, upstream, report).await;
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
            let svc = self::http::service(
                ctx.clone(),
                None,
                None,
                Some(port),
                app_ip,
                (original.or(Some(local)), client),
            );
            let res = match protocol {
                Protocol::Http1 => {
                    metrics.connection(Direction::Inbound, ConnKind::Http1);
                    crate::http::server::serve_h1(
                        io,
                        hyper_svc(svc),
                        config.limits,
                        config.timeouts,
                        metrics.idle_timeout(Direction::Inbound, config.timeouts.idle),
                        drain,
                    )
                    .await
                }
                Protocol::Http2 => {
                    metrics.connection(Direction::Inbound, ConnKind::Http2);
                    crate::http::server::serve_h2(
                        io,
                        hyper_svc(svc),
                        config.limits,
                        metrics.idle_timeout(Direction::Inbound, config.timeouts.idle),
                        drain,
                    )
                    .await
                }
                Protocol::Opaque => {
                    metrics.connection(Direction::Inbound, ConnKind::Tcp);
                    let side = TcpSide::plain(original.or(Some(local)), client);
                    forward_tcp(&ctx, app, io, side).await;
                    Ok(())
                }
            };
            if let Err(e) = res {
                debug!(%client, error = %e, "inbound HTTP connection ended with an error");
            }
        }
    }
}

fn no_port(client: SocketAddr) {
    warn!(%client, "plaintext connection with no original destination and no appPort; closing");
}

fn hyper_svc(svc: InboundHttp) -> hyper_util::service::TowerToHyperService<InboundHttp> {
    hyper_util::service::TowerToHyperService::new(svc)
}

async fn serve_mesh(
    ctx: &Arc<Ctx>,
    default_port: Option<u16>,
    app_ip: IpAddr,
    io: Prefixed<TcpStream>,
    (local, client): (Option<SocketAddr>, SocketAddr),
    drain: drain::Watch,
) {
    let config = ctx.config();
    let metrics = &ctx.metrics;
    let Some(state) = ctx.tls.current() else {
        warn!(%client, "mesh connection refused: this proxy has no certificate yet");
        return;
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(state.server_config());
    let tls = match tokio::time::timeout(config.timeouts.tls_handshake, acceptor.accept(io)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            metrics.tls_failures[Direction::Inbound as usize].inc();
            warn!(%client, error = %e, "mesh TLS handshake failed");
            return;
        }
        Err(_) => {
            metrics.tls_failures[Direction::Inbound as usize].inc();
            warn!(%client, "mesh TLS handshake timed out");
            return;
        }
    };
    let conn = tls.get_ref().1;
    let Some(peer) = PeerInfo::from_connection(conn) else {
        warn!(%client, "mesh peer presented no SPIFFE identity; closing");
        return;
    };
    let alpn = conn.alpn_protocol().map(<[u8]>::to_vec);
    let sni: Option<Arc<str>> = conn.server_name().map(Arc::from);
    debug!(%client, peer = %peer.identity, "mesh connection established");
    let identity: Arc<str> = Arc::from(peer.identity.as_str());
    let svc = self::http::service(
        ctx.clone(),
        Some(peer),
        sni.clone(),
        default_port,
        app_ip,
        (local, client),
    );
    let res = match alpn.as_deref() {
        Some(tls::ALPN_H2) => {
            metrics.connection(Direction::Inbound, ConnKind::MeshH2);
            crate::http::server::serve_h2(
                tls,
                hyper_svc(svc),
                config.limits,
                metrics.idle_timeout(Direction::Inbound, config.timeouts.idle),
                drain,
            )
            .await
        }
        Some(tls::ALPN_H1) => {
            metrics.connection(Direction::Inbound, ConnKind::MeshH1);
            crate::http::server::serve_h1(
                tls,
                hyper_svc(svc),
                config.limits,
                config.timeouts,
                metrics.idle_timeout(Direction::Inbound, config.timeouts.idle),
                drain,
            )
            .await
        }
        Some(alpn @ (tls::ALPN_TCP | tls::ALPN_TCP_PEER)) => {
            metrics.connection(Direction::Inbound, ConnKind::MeshTcp);
            let with_peer = alpn == tls::ALPN_TCP_PEER;
            let side = TcpSide {
                peer: Some(identity),
                peer_header: None,
                sni,
                local,
                client,
            };
            serve_mesh_tcp(ctx, tls, app_ip, side, with_peer).await;
            Ok(())
        }
        _ => {
            warn!(%client, "mesh connection negotiated no known ALPN; closing");
            Ok(())
        }
    };
    if let Err(e) = res {
        debug!(%client, error = %e, "mesh connection ended with an error");
    }
}

/// A `sinew/tcp` stream: read the header naming the app port (and, on `sinew/tcp-peer`, the
/// client's peer metadata), then splice.
async fn serve_mesh_tcp<I>(ctx: &Ctx, mut io: I, app_ip: IpAddr, mut side: TcpSide, with_peer: bool)
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let client = side.client;
    let timeout = ctx.config().timeouts.detect;
    let (port, meta) =
        match tokio::time::timeout(timeout, tcp_header::read(&mut io, with_peer)).await {
            Ok(Ok(Some(h))) => (h.port, h.meta),
            _ => {
                warn!(%client, "mesh TCP stream without a valid header; closing");
                return;
            }
        };
    if port == 0 {
        warn!(%client, "mesh TCP stream names port 0; closing");
        return;
    }
    side.peer_header = ::http::HeaderValue::from_bytes(&meta).ok();
    forward_tcp(ctx, SocketAddr::new(app_ip, port), io, side).await;
}

/// The client's side of an inbound TCP stream, for its report.
struct TcpSide {
    /// The verified identity of a mesh peer; `None` for plaintext.
    peer: Option<Arc<str>>,
    /// The peer metadata a `sinew/tcp-peer` stream carried (believed only for `peer`).
    peer_header: Option<::http::HeaderValue>,
    /// The SNI of the mesh TLS handshake.
    sni: Option<Arc<str>>,
    local: Option<SocketAddr>,
    client: SocketAddr,
}

impl TcpSide {
    fn plain(local: Option<SocketAddr>, client: SocketAddr) -> Self {
        Self {
            peer: None,
            peer_header: None,
            sni: None,
            local,
            client,
        }
    }

    /// Whether the workload's AuthorizationPolicies let this stream to `port` through.
    fn allowed(&self, ctx: &Ctx, port: u16) -> bool {
        let config = ctx.config();
        if config.authorization.is_empty() {
            return true;
        }
        let mut source = Source::new(
            self.peer.as_deref(),
            self.client.ip(),
            self.local.map(|l| l.ip()),
        );
        source.sni = self.sni.clone();
        crate::authz::allows_tcp(&config.authorization, &source, port, &ctx.metrics.authz)
    }

    fn report(self, ctx: &Ctx) -> TcpReport {
        let config = ctx.config();
        TcpReport::inbound(
            Reports::new(ctx, &config),
            self.peer,
            self.peer_header.as_ref(),
            &config.telemetry.services,
            self.local,
            Some(self.client),
        )
    }
}

/// Delivers an opaque stream to the app, if the workload's policies allow it (else closes it).
async fn forward_tcp<I>(ctx: &Ctx, app: SocketAddr, io: I, side: TcpSide)
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let allowed = side.allowed(ctx, app.port());
    let report = side.report(ctx);
    if !allowed {
        report.close(0, 0, ResponseFlags::default());
        return;
    }
    match connect_app(ctx, app).await {
        Some(upstream) => splice(ctx, app, io, upstream, report).await,
        None => report.close(0, 0, ResponseFlags::UF),
    }
}

async fn connect_app(ctx: &Ctx, app: SocketAddr) -> Option<TcpStream> {
    let timeout = ctx.config().timeouts.connect;
    match crate::http::client::connect_tcp_from(app, Some(APP_SOURCE.into()), timeout).await {
        Ok(stream) => Some(stream),
        Err(e) => {
            info!(%app, error = %e, "cannot reach the app");
            None
        }
    }
}

async fn splice<I>(ctx: &Ctx, app: SocketAddr, io: I, mut upstream: TcpStream, report: TcpReport)
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let idle = ctx
        .metrics
        .idle_timeout(Direction::Inbound, ctx.config().timeouts.tcp_idle);
    let mut io = report.wrap(io);
    if let Err(e) = crate::io::copy_with_idle_timeout(&mut io, &mut upstream, idle).await {
        debug!(%app, error = %e, "inbound TCP stream ended with an error");
    }
    let (received, sent) = io.totals();
    report.close(received, sent, ResponseFlags::default());
}
