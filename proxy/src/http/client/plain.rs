//! Plaintext delivery to apps and to endpoints without a sidecar: an HTTP/1 keep-alive pool and
//! HTTP/2 prior knowledge over an [`H2Pool`].

use super::{ConnPolicy, H2Pool, H2Settings, Lease, connect_tcp_from, h2_handshake};
use crate::http::body::{RequestBody, UpstreamBody};
use crate::http::{Body, ProxyError};
use crate::io::TcpKeepalive;
use http::{Request, Response};
use http_body_util::Either;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Plaintext delivery to an app (or to an endpoint without a sidecar).
pub struct PlainClient<B = Incoming> {
    h1: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        RequestBody<B>,
    >,
    h2: H2Pool<(SocketAddr, ConnPolicy), B>,
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

    /// Sends `req` to `addr` in the request's own protocol. HTTP/2 connections follow `policy`
    /// (reuse limits, TCP keep-alive); the HTTP/1 pool does not yet.
    pub async fn send(
        &self,
        addr: SocketAddr,
        policy: ConnPolicy,
        mut req: Request<B>,
    ) -> Result<Response<Body>, ProxyError> {
        if req.version() == http::Version::HTTP_2 {
            let (timeout, source) = (self.connect_timeout, self.source);
            let Lease { mut send, stream } = self
                .h2
                .get_with(&(addr, policy), policy.reuse, move || async move {
                    let io = dial(addr, source, timeout, policy.keepalive.as_ref()).await?;
                    h2_handshake(io, addr, H2Settings::default()).await
                })
                .await?;
            let (req, failed) = crate::http::body::track(req);
            let rsp = send
                .send_request(req)
                .await
                .map_err(|e| crate::http::upstream_error(e, &failed))?;
            return Ok(rsp.map(|b| Either::Left(UpstreamBody::new(b, stream))));
        }
        crate::http::set_origin(&mut req, addr);
        let (req, failed) = crate::http::body::track(req);
        match self.h1.request(req).await {
            Ok(rsp) => Ok(rsp.map(|b| Either::Left(b.into()))),
            Err(e) if e.is_connect() => Err(ProxyError::Connect {
                addr,
                source: std::io::Error::new(std::io::ErrorKind::ConnectionRefused, e.to_string()),
            }),
            Err(e) => Err(crate::http::upstream_error(e, &failed)),
        }
    }
}

/// A plaintext connection to `addr`, from `source` when given, with the destination's
/// keep-alive.
pub(super) async fn dial(
    addr: SocketAddr,
    source: Option<IpAddr>,
    timeout: Duration,
    keepalive: Option<&TcpKeepalive>,
) -> Result<tokio::net::TcpStream, ProxyError> {
    let io = connect_tcp_from(addr, source, timeout).await?;
    crate::io::keepalive(&io, keepalive);
    Ok(io)
}
