//! Upstream HTTP clients: a pool of multiplexed HTTP/2 connections keyed by destination, and the
//! plaintext client that delivers to apps (HTTP/1 keep-alive pool and HTTP/2 prior knowledge).
//!
//! Promise of [`H2Pool`]: at most one connection attempt per key at a time; concurrent requests
//! for a key that is still connecting wait for that attempt instead of opening their own.

use super::body::RequestBody;
use super::{Body, ProxyError};
use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use http::{Request, Response};
use http_body_util::Either;
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};

type Connecting<B> =
    Shared<BoxFuture<'static, Result<SendRequest<RequestBody<B>>, Arc<ProxyError>>>>;

enum Slot<B> {
    Ready(SendRequest<RequestBody<B>>),
    Connecting(Connecting<B>),
}

/// HTTP/2 connections shared by every request to the same key, for requests with bodies of
/// type `B`.
pub struct H2Pool<K, B = Incoming> {
    slots: Mutex<HashMap<K, Slot<B>>>,
}

// === impl H2Pool ===

impl<K: Hash + Eq + Clone, B> H2Pool<K, B> {
    pub fn new() -> Self {
        Self {
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// Returns a live connection for `key`, connecting with `connect` if there is none.
    pub async fn get<F, Fut>(
        &self,
        key: &K,
        connect: F,
    ) -> Result<SendRequest<RequestBody<B>>, ProxyError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<SendRequest<RequestBody<B>>, ProxyError>> + Send + 'static,
        B: 'static,
    {
        let fut = {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            match slots.get(key) {
                Some(Slot::Ready(s)) if !s.is_closed() => return Ok(s.clone()),
                Some(Slot::Connecting(f)) => f.clone(),
                _ => {
                    let f = connect().map(|r| r.map_err(Arc::new)).boxed().shared();
                    slots.insert(key.clone(), Slot::Connecting(f.clone()));
                    f
                }
            }
        };
        let res = fut.await;
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(Slot::Connecting(_)) = slots.get(key) {
            match &res {
                Ok(s) => {
                    slots.insert(key.clone(), Slot::Ready(s.clone()));
                }
                Err(_) => {
                    slots.remove(key);
                }
            }
        }
        res.map_err(ProxyError::Shared)
    }

    /// Number of keys with a connection or an attempt in flight.
    pub fn len(&self) -> usize {
        self.slots.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<K: Hash + Eq + Clone, B> Default for H2Pool<K, B> {
    fn default() -> Self {
        Self::new()
    }
}

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

/// Connects TCP with a timeout and the usual socket options.
pub async fn connect_tcp(
    addr: SocketAddr,
    timeout: Duration,
) -> Result<tokio::net::TcpStream, ProxyError> {
    connect_tcp_from(addr, None, timeout).await
}

/// Like [`connect_tcp`], from `source` when given.
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

/// Plaintext delivery to an app (or to an endpoint without a sidecar).
pub struct PlainClient<B = Incoming> {
    h1: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        RequestBody<B>,
    >,
    h2: H2Pool<SocketAddr, B>,
    connect_timeout: Duration,
    source: Option<IpAddr>,
}

// === impl PlainClient ===

impl<B> PlainClient<B>
where
    B: http_body::Body<Data = bytes::Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    /// A client whose connections come from `source` when given (see [`crate::inbound::APP_SOURCE`]).
    pub fn new(connect_timeout: Duration, idle_timeout: Duration, source: Option<IpAddr>) -> Self {
        let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_local_address(source);
        connector.set_connect_timeout(Some(connect_timeout));
        let h1 = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(idle_timeout)
            .set_host(false)
            .build(connector);
        Self {
            h1,
            h2: H2Pool::new(),
            connect_timeout,
            source,
        }
    }

    /// Sends `req` to `addr` in the request's own protocol.
    pub async fn send(
        &self,
        addr: SocketAddr,
        mut req: Request<B>,
    ) -> Result<Response<Body>, ProxyError> {
        if req.version() == http::Version::HTTP_2 {
            let (timeout, source) = (self.connect_timeout, self.source);
            let mut send = self
                .h2
                .get(&addr, move || async move {
                    let io = connect_tcp_from(addr, source, timeout).await?;
                    h2_handshake(io, addr, H2Settings::default()).await
                })
                .await?;
            let (req, failed) = super::body::track(req);
            let rsp = send
                .send_request(req)
                .await
                .map_err(|e| super::upstream_error(e, &failed))?;
            return Ok(rsp.map(Either::Left));
        }
        super::set_origin(&mut req, addr);
        let (req, failed) = super::body::track(req);
        match self.h1.request(req).await {
            Ok(rsp) => Ok(rsp.map(Either::Left)),
            Err(e) if e.is_connect() => Err(ProxyError::Connect {
                addr,
                source: std::io::Error::new(std::io::ErrorKind::ConnectionRefused, e.to_string()),
            }),
            Err(e) => Err(super::upstream_error(e, &failed)),
        }
    }
}
