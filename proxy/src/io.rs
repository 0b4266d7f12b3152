//! Byte-stream plumbing: replaying bytes read during detection, and copying both ways.

use bytes::{Buf, Bytes};
use std::io;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// An I/O that first yields `prefix` (bytes already read while detecting the protocol) and then
/// reads from `io`. Writes go straight to `io`.
pub struct Prefixed<I> {
    prefix: Bytes,
    io: I,
}

impl<I> Prefixed<I> {
    pub fn new(prefix: impl Into<Bytes>, io: I) -> Self {
        Self {
            prefix: prefix.into(),
            io,
        }
    }

    pub fn get_ref(&self) -> &I {
        &self.io
    }
}

// === impl Prefixed ===

impl<I: AsyncRead + Unpin> AsyncRead for Prefixed<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

/// Implements `AsyncWrite` for a read-side wrapper by forwarding every call to its `io` field.
macro_rules! forward_async_write {
    ($ty:ident) => {
        impl<I: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for $ty<I> {
            fn poll_write(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::pin::Pin::new(&mut self.io).poll_write(cx, buf)
            }

            fn poll_write_vectored(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                bufs: &[std::io::IoSlice<'_>],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::pin::Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
            }

            fn is_write_vectored(&self) -> bool {
                self.io.is_write_vectored()
            }

            fn poll_flush(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.io).poll_flush(cx)
            }

            fn poll_shutdown(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
            }
        }
    };
}
pub(crate) use forward_async_write;

forward_async_write!(Prefixed);

/// Copies both ways until both sides are done; returns (bytes a→b, bytes b→a).
///
/// 16 KiB buffers match a full TLS record, so a mesh stream moves one record per syscall.
pub async fn copy_bidirectional<A, B>(a: &mut A, b: &mut B) -> io::Result<(u64, u64)>
where
    A: AsyncRead + AsyncWrite + Unpin + ?Sized,
    B: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    tokio::io::copy_bidirectional_with_sizes(a, b, 16 * 1024, 16 * 1024).await
}

/// [`copy_bidirectional`] that ends once no byte moved either way for `idle.after`: the
/// result is then an error of kind `TimedOut` and the close is counted in `idle.closed`.
pub async fn copy_with_idle_timeout<A, B>(
    a: &mut A,
    b: &mut B,
    idle: crate::idle::Timeout,
) -> io::Result<(u64, u64)>
where
    A: AsyncRead + AsyncWrite + Unpin + ?Sized,
    B: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    let activity = crate::idle::Activity::new();
    // Every byte either way passes through `a`, so watching one side is enough.
    let mut a = crate::idle::Tracked::new(a, activity.clone());
    tokio::select! {
        res = copy_bidirectional(&mut a, b) => res,
        () = activity.expired(idle.after) => {
            idle.closed.inc();
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("closed after {:?} without a byte either way", idle.after),
            ))
        }
    }
}

/// Applies the socket options every proxied TCP connection wants.
pub fn tune(stream: &tokio::net::TcpStream) {
    // Latency over batching: requests and responses are usually small.
    let _ = stream.set_nodelay(true);
}

/// A destination's `connectionPool.tcp.tcpKeepalive`: its presence turns SO_KEEPALIVE on; each
/// field set overrides the OS default (`time`: TCP_KEEPIDLE, `interval`: TCP_KEEPINTVL,
/// `probes`: TCP_KEEPCNT). Copy and hashable: it is part of the key of pooled connections.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TcpKeepalive {
    pub probes: Option<NonZeroU32>,
    pub time: Option<Duration>,
    pub interval: Option<Duration>,
}

// === impl TcpKeepalive ===

impl TcpKeepalive {
    /// Sets the options on a connected socket. The kernel counts whole seconds: a sub-second
    /// duration is rounded up (0 would be refused).
    pub fn apply(&self, stream: &tokio::net::TcpStream) -> io::Result<()> {
        let secs = |d: Duration| Duration::from_secs(d.as_secs() + u64::from(d.subsec_nanos() > 0));
        let mut ka = socket2::TcpKeepalive::new();
        if let Some(t) = self.time {
            ka = ka.with_time(secs(t));
        }
        if let Some(i) = self.interval {
            ka = ka.with_interval(secs(i));
        }
        if let Some(p) = self.probes {
            ka = ka.with_retries(p.get());
        }
        // Turns SO_KEEPALIVE on, then sets only the fields given.
        socket2::SockRef::from(stream).set_tcp_keepalive(&ka)
    }
}

/// Applies `keepalive` (if any) to an upstream socket. A failure is logged, not fatal: the
/// connection works without keep-alive probes.
pub fn keepalive(stream: &tokio::net::TcpStream, keepalive: Option<&TcpKeepalive>) {
    if let Some(k) = keepalive
        && let Err(error) = k.apply(stream)
    {
        tracing::debug!(%error, ?k, "could not set TCP keep-alive on an upstream socket");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn prefix_is_read_before_the_stream() {
        let (mut a, b) = tokio::io::duplex(64);
        a.write_all(b" world").await.unwrap();
        drop(a);
        let mut p = Prefixed::new(Bytes::from_static(b"hello"), b);
        let mut out = String::new();
        p.read_to_string(&mut out).await.unwrap();
        assert_eq!(out, "hello world");
    }
}
