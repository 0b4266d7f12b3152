//! Serving one downstream HTTP connection (either protocol) until it ends or the proxy drains.
//!
//! On drain, hyper's graceful shutdown sends GOAWAY on HTTP/2 and closes idle HTTP/1 keep-alive
//! connections, while requests in flight run to completion. The same graceful close ends a
//! connection that had no request in flight and no byte either way for `timeouts.idle`.

use crate::config::{Limits, Timeouts};
use crate::drain;
use crate::idle::{Activity, BusyService, Timeout, Tracked};
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};

/// hyper refuses read buffers below this.
const MIN_BUF: usize = 8 * 1024;

pub async fn serve_h1<I, S, B>(
    io: I,
    svc: S,
    limits: Limits,
    timeouts: Timeouts,
    idle: Timeout,
    drain: drain::Watch,
) -> Result<(), hyper::Error>
where
    I: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>> + Send,
    S::Future: Send + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let activity = Activity::new();
    let svc = BusyService::new(svc, activity.clone());
    let io = Tracked::new(io, activity.clone());
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
        close = closing(drain, &activity, &idle) => {
            close.count(&idle);
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    }
}

pub async fn serve_h2<I, S, B>(
    io: I,
    svc: S,
    limits: Limits,
    idle: Timeout,
    drain: drain::Watch,
) -> Result<(), hyper::Error>
where
    I: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>> + Send,
    S::Future: Send + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let activity = Activity::new();
    let svc = BusyService::new(svc, activity.clone());
    let io = Tracked::new(io, activity.clone());
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
        close = closing(drain, &activity, &idle) => {
            close.count(&idle);
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    }
}

/// Why a connection is being closed gracefully.
enum Close {
    Drain,
    Idle,
}

impl Close {
    fn count(&self, idle: &Timeout) {
        if let Self::Idle = self {
            idle.closed.inc();
        }
    }
}

async fn closing(mut drain: drain::Watch, activity: &Activity, idle: &Timeout) -> Close {
    tokio::select! {
        _ = drain.signaled() => Close::Drain,
        () = activity.expired(idle.after) => Close::Idle,
    }
}
