//! The `istio_tcp_*` accounting of one opaque TCP stream (mesh or plain, either direction) and
//! its access-log line.
//!
//! Promises: `istio_tcp_connections_opened_total` counts the stream when its report is made;
//! bytes are added to `istio_tcp_received_bytes_total` (from the client) and
//! `istio_tcp_sent_bytes_total` (to the client) as they pass, so a long-lived connection's bytes
//! show before it closes; `istio_tcp_connections_closed_total` and the access-log line come when
//! [`TcpReport::close`] is called, with the stream's response flags (`UF`, `UH`, `UO`, `NR` when
//! no upstream could be had).
//!
//! What is known: on the client's side, the destination workload and principal from the
//! endpoint (the control plane's word); on the server's side, the verified source principal and,
//! when the stream is `sinew/tcp-peer` (both proxies know it), the client's workload from the
//! peer metadata in its header, believed under the same rule as `x-sinew-peer`
//! ([`super::peer::resolve`]). A client that speaks plain `sinew/tcp` leaves it "unknown".

use super::access_log::{self, Entry};
use super::labels::{DestinationService, Labels, Reporter, Security, Shared};
use super::layer::Reports;
use super::metrics::TcpSeries;
use super::{UNKNOWN, UpstreamInfo, Workload, peer};
use crate::traffic::ResponseFlags;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::SystemTime;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// One TCP stream's report, from open to close.
pub struct TcpReport {
    reports: Reports,
    labels: Shared,
    series: TcpSeries,
    start: Instant,
    start_wall: SystemTime,
    upstream: Option<Arc<UpstreamInfo>>,
    peer_identity: Option<Arc<str>>,
    local: Option<SocketAddr>,
    remote: Option<SocketAddr>,
}

// === impl TcpReport ===

impl TcpReport {
    /// The app's stream to `service`, carried to `upstream` (`None`: none could be had).
    pub fn outbound(
        reports: Reports,
        service: &str,
        upstream: Option<Arc<UpstreamInfo>>,
        local: Option<SocketAddr>,
        remote: Option<SocketAddr>,
    ) -> Self {
        let u = upstream.as_deref();
        let labels = Labels {
            reporter: Reporter::Source,
            source: (*reports.own).clone(),
            source_principal: reports.own_principal.clone(),
            destination: u
                .and_then(|u| u.workload.as_deref().cloned())
                .unwrap_or_else(Workload::unknown),
            destination_principal: u
                .and_then(|u| u.principal.clone())
                .unwrap_or_else(|| Arc::from(UNKNOWN)),
            destination_service: DestinationService::from_host(service),
            // As in Istio: only the server's side reports the policy it enforced.
            security: Security::Unknown,
        };
        let peer_identity = u.and_then(|u| u.principal.clone());
        Self::open(reports, labels, upstream, peer_identity, local, remote)
    }

    /// A stream to this pod from the verified `peer` (`None`: plaintext), which sent the peer
    /// metadata `header` (a `sinew/tcp-peer` stream).
    pub fn inbound(
        reports: Reports,
        peer: Option<Arc<str>>,
        header: Option<&http::HeaderValue>,
        services: &[Arc<str>],
        local: Option<SocketAddr>,
        remote: Option<SocketAddr>,
    ) -> Self {
        let src = peer::resolve(header, peer.as_deref(), services);
        let labels = Labels {
            reporter: Reporter::Destination,
            source: src.workload,
            source_principal: src.principal,
            destination: (*reports.own).clone(),
            destination_principal: reports.own_principal.clone(),
            destination_service: src.destination_service,
            security: if peer.is_some() {
                Security::MutualTls
            } else {
                Security::None
            },
        };
        Self::open(reports, labels, None, peer, local, remote)
    }

    fn open(
        reports: Reports,
        labels: Labels,
        upstream: Option<Arc<UpstreamInfo>>,
        peer_identity: Option<Arc<str>>,
        local: Option<SocketAddr>,
        remote: Option<SocketAddr>,
    ) -> Self {
        let istio = &reports.metrics.istio;
        let labels = istio.labels(labels);
        let series = istio.tcp(&labels, ResponseFlags::default());
        series.opened.inc();
        Self {
            reports,
            labels,
            series,
            start: Instant::now(),
            start_wall: SystemTime::now(),
            upstream,
            peer_identity,
            local,
            remote,
        }
    }

    /// The client's side of the stream, counting bytes into this report's series.
    pub fn wrap<I>(&self, io: I) -> Counted<I> {
        Counted {
            inner: io,
            received: 0,
            sent: 0,
            series: self.series.clone(),
        }
    }

    /// Closes the report: `received` / `sent` are the client-side totals (see [`Counted`]).
    pub fn close(self, received: u64, sent: u64, flags: ResponseFlags) {
        let istio = &self.reports.metrics.istio;
        istio.tcp(&self.labels, flags).closed.inc();
        let log = &self.reports.log;
        if log.format().is_none() {
            return;
        }
        let u = self.upstream.as_deref();
        log.log(&Entry {
            start: Some(self.start_wall),
            flags,
            details: access_log::details(flags, false),
            bytes_received: received,
            bytes_sent: sent,
            duration_ms: self.start.elapsed().as_millis() as u64,
            upstream_host: u.map(|u| u.addr),
            upstream_cluster: u.map(|u| &*u.cluster),
            downstream_local: self.local,
            downstream_remote: self.remote,
            peer_identity: self.peer_identity.as_deref(),
            ..Entry::default()
        });
    }
}

/// A stream that adds the bytes it passes to its series as they pass, and keeps totals.
pub struct Counted<I> {
    inner: I,
    received: u64,
    sent: u64,
    series: TcpSeries,
}

impl<I> Counted<I> {
    /// Bytes read from the client and written to it.
    pub fn totals(&self) -> (u64, u64) {
        (self.received, self.sent)
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Counted<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        let n = (buf.filled().len() - before) as u64;
        if n > 0 {
            this.received += n;
            this.series.received.inc_by(n);
        }
        Poll::Ready(Ok(()))
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Counted<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let n = ready!(Pin::new(&mut this.inner).poll_write(cx, buf))?;
        this.sent += n as u64;
        this.series.sent.inc_by(n as u64);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
