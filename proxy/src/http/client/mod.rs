//! Upstream HTTP clients: a pool of multiplexed HTTP/2 connections keyed by destination
//! ([`h2_pool`]), the plaintext client that delivers to apps ([`plain`]), and the TCP dial and
//! HTTP/2 handshake both use.

mod h1_pool;
mod h2_pool;
mod plain;

pub(crate) use h1_pool::{H1Conn, H1Pool};
pub use h2_pool::{H2Pool, Lease, Reuse, StreamGuard};
pub use plain::PlainClient;
pub(crate) use plain::send_pooled_h1;

/// What a destination asks of the upstream connections it opens: when pooled ones retire, and
/// TCP keep-alive. Part of the pool key, so destinations that differ never share a connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ConnPolicy {
    pub reuse: Reuse,
    pub keepalive: Option<TcpKeepalive>,
}

use super::ProxyError;
use super::body::RequestBody;
use crate::io::TcpKeepalive;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};

/// Settings for HTTP/2 client connections.
#[derive(Clone, Copy, Debug)]
pub struct H2Settings {
    pub keep_alive_interval: Duration,
    pub keep_alive_timeout: Duration,
}

impl Default for H2Settings {
    fn default() -> Self {
        Self {
            keep_alive_interval: Duration::from_secs(20),
            keep_alive_timeout: Duration::from_secs(10),
        }
    }
}

/// Runs the HTTP/2 client handshake on `io` and spawns the connection driver.
pub async fn h2_handshake<I, B>(
    io: I,
    addr: SocketAddr,
    settings: H2Settings,
) -> Result<SendRequest<RequestBody<B>>, ProxyError>
where
    I: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    B: http_body::Body<Data = bytes::Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .initial_stream_window_size(1 << 20)
        .initial_connection_window_size(4 << 20)
        .keep_alive_interval(settings.keep_alive_interval)
        .keep_alive_timeout(settings.keep_alive_timeout)
        .handshake(TokioIo::new(io))
        .await
        .map_err(|source| ProxyError::Handshake { addr, source })?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(%addr, error = %e, "HTTP/2 connection closed");
        }
    });
    Ok(send)
}

/// Connects TCP to a destination's endpoint with a timeout, the usual socket options and the
/// destination's `tcpKeepalive` (none: SO_KEEPALIVE stays off).
pub async fn connect_tcp(
    addr: SocketAddr,
    timeout: Duration,
    keepalive: Option<&TcpKeepalive>,
) -> Result<tokio::net::TcpStream, ProxyError> {
    let stream = connect_tcp_from(addr, None, timeout).await?;
    crate::io::keepalive(&stream, keepalive);
    Ok(stream)
}

/// Like [`connect_tcp`] without keep-alive, from `source` when given (delivery to the app).
pub async fn connect_tcp_from(
    addr: SocketAddr,
    source: Option<IpAddr>,
    timeout: Duration,
) -> Result<tokio::net::TcpStream, ProxyError> {
    let connect = async {
        let Some(source) = source else {
            return tokio::net::TcpStream::connect(addr).await;
        };
        let socket = match addr {
            SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
            SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
        };
        socket.bind(SocketAddr::new(source, 0))?;
        socket.connect(addr).await
    };
    match tokio::time::timeout(timeout, connect).await {
        Ok(Ok(s)) => {
            crate::io::tune(&s);
            Ok(s)
        }
        Ok(Err(source)) => Err(ProxyError::Connect { addr, source }),
        Err(_) => Err(ProxyError::ConnectTimeout { addr, timeout }),
    }
}

#[cfg(test)]
mod tests;
