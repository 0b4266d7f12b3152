//! Plaintext delivery to apps and to endpoints without a sidecar: HTTP/1 over an [`H1Pool`] of
//! keep-alive connections and HTTP/2 prior knowledge over an [`H2Pool`], both keyed by address
//! and the destination's [`ConnPolicy`] (reuse limits, TCP keep-alive).

use super::h1_pool::{H1Conn, H1Pool};
use super::{ConnPolicy, H2Pool, H2Settings, Lease, Reuse, connect_tcp_from, h2_handshake};
use crate::http::body::UpstreamBody;
use crate::http::{Body, ProxyError};
use crate::io::TcpKeepalive;
use http::header::{self, HeaderValue};
use http::{Request, Response};
use http_body_util::Either;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::hash::Hash;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// Plaintext delivery to an app (or to an endpoint without a sidecar).
pub struct PlainClient<B = Incoming> {
    h1: Arc<H1Pool<(SocketAddr, ConnPolicy), B>>,
    h2: H2Pool<(SocketAddr, ConnPolicy), B>,
    connect_timeout: Duration,
    /// The proxy's own idle timeout for HTTP/1 keep-alive connections; a destination's shorter
    /// `idleTimeout` wins.
    idle_timeout: Duration,
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
        Self {
            h1: Arc::new(H1Pool::new()),
            h2: H2Pool::new(),
            connect_timeout,
            idle_timeout,
            source,
        }
    }

    /// Sends `req` to `addr` in the request's own protocol, on connections that follow
    /// `policy` (reuse limits, TCP keep-alive).
    pub async fn send(
        &self,
        addr: SocketAddr,
        policy: ConnPolicy,
        req: Request<B>,
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
        self.send_h1(addr, policy, req).await
    }

    /// HTTP/1 on a pooled keep-alive connection. A request a reused connection refused before
    /// sending a byte (the app closed it just as we picked it) is sent again on a new one, as
    /// hyper's pooled client does.
    async fn send_h1(
        &self,
        addr: SocketAddr,
        policy: ConnPolicy,
        mut req: Request<B>,
    ) -> Result<Response<Body>, ProxyError> {
        let reuse = policy.reuse.idle_at_most(self.idle_timeout);
        crate::http::set_origin(&mut req);
        send_pooled_h1(&self.h1, (addr, policy), reuse, req, || {
            self.dial_h1(addr, policy)
        })
        .await
    }

    async fn dial_h1(&self, addr: SocketAddr, policy: ConnPolicy) -> Result<H1Conn<B>, ProxyError> {
        // New connections are rare next to requests: a good moment to close expired idle ones.
        self.h1.sweep();
        let io = dial(
            addr,
            self.source,
            self.connect_timeout,
            policy.keepalive.as_ref(),
        )
        .await?;
        let (send, conn) = hyper::client::conn::http1::Builder::new()
            .handshake(TokioIo::new(io))
            .await
            .map_err(|source| ProxyError::Handshake { addr, source })?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%addr, error = %e, "plaintext HTTP/1 connection closed");
            }
        });
        Ok(H1Conn::new(send))
    }

    /// Pooled idle HTTP/1 connections to `addr` under `policy` (for tests).
    #[cfg(test)]
    pub fn idle_h1(&self, addr: SocketAddr, policy: ConnPolicy) -> usize {
        self.h1.idle(&(addr, policy))
    }
}

/// Sends `req` (in origin form) on an idle connection of `pool` under `key`, or on a new one from
/// `dial`; the connection goes back to the pool once its response has been read, unless `reuse`
/// retires it (the request that reaches `maxRequestsPerConnection` is sent with
/// `connection: close`). A request a reused connection refused before sending a byte (the peer
/// closed it just as we picked it) is sent again on a new one, as hyper's pooled client does.
pub(crate) async fn send_pooled_h1<K, B, D, F>(
    pool: &Arc<H1Pool<K, B>>,
    key: K,
    reuse: Reuse,
    req: Request<B>,
    dial: D,
) -> Result<Response<Body>, ProxyError>
where
    K: Hash + Eq + Clone + Send + 'static,
    B: http_body::Body<Data = bytes::Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    D: Fn() -> F,
    F: Future<Output = Result<H1Conn<B>, ProxyError>>,
{
    let (mut req, failed) = crate::http::body::track(req);
    loop {
        let mut conn = match pool.checkout(&key) {
            Some(c) => c,
            None => dial().await?,
        };
        let last = conn.start_request(&reuse);
        let hs = req.headers_mut();
        match last {
            true => hs.insert(header::CONNECTION, HeaderValue::from_static("close")),
            false => hs.remove(header::CONNECTION),
        };
        match conn.send.try_send_request(req).await {
            Ok(mut rsp) => {
                // Hop-by-hop: a `connection: close` (ours, or the peer's) ends this upstream
                // connection, not the client's.
                crate::http::clean_response(&mut rsp);
                if !last {
                    // Back to the pool once the response body has been read.
                    let (pool, key) = (pool.clone(), key.clone());
                    tokio::spawn(async move {
                        if conn.send.ready().await.is_ok() {
                            pool.put(key, conn, &reuse);
                        }
                    });
                }
                return Ok(rsp.map(|b| Either::Left(b.into())));
            }
            Err(mut e) => match e.take_message() {
                Some(unsent) if conn.reused() => req = unsent,
                _ => return Err(crate::http::upstream_error(e.into_error(), &failed)),
            },
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
