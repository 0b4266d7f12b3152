//! Serving one downstream HTTP connection (either protocol) until it ends or the proxy drains.
//!
//! On drain, hyper's graceful shutdown sends GOAWAY on HTTP/2 and closes idle HTTP/1 keep-alive
//! connections, while requests in flight run to completion.

use crate::config::{Limits, Timeouts};
use crate::drain;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};

/// hyper refuses read buffers below this.
const MIN_BUF: usize = 8 * 1024;

pub async fn serve_h1<I, S>(
    io: I,
    svc: S,
    limits: Limits,
    timeouts: Timeouts,
    mut drain: drain::Watch,
) -> Result<(), hyper::Error>
where
    I: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    S: hyper::service::HttpService<Incoming> + Send,
    S::Future: Send + 'static,
    S::ResBody: Send + 'static,
    <S::ResBody as http_body::Body>::Data: Send,
    <S::ResBody as http_body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(timeouts.header_read)
        .max_buf_size(limits.max_header_bytes.max(MIN_BUF))
        .max_headers(limits.max_headers)
        .keep_alive(true);
    let io = super::guard::Guarded::new(io, limits.max_header_bytes.max(MIN_BUF));
    let conn = builder
        .serve_connection(TokioIo::new(io), svc)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        res = conn.as_mut() => res,
        _ = drain.signaled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    }
}

pub async fn serve_h2<I, S>(
    io: I,
    svc: S,
    limits: Limits,
    mut drain: drain::Watch,
) -> Result<(), hyper::Error>
where
    I: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    S: hyper::service::HttpService<Incoming> + Send,
    S::Future: Send + 'static,
    S::ResBody: Send + 'static,
    <S::ResBody as http_body::Body>::Data: Send,
    <S::ResBody as http_body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .max_header_list_size(limits.max_header_bytes as u32)
        .initial_stream_window_size(1 << 20)
        .initial_connection_window_size(4 << 20)
        .max_concurrent_streams(1024)
        .serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    tokio::select! {
        res = conn.as_mut() => res,
        _ = drain.signaled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    }
}
