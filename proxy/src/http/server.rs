//! Serving one downstream HTTP connection (either protocol) until it ends or the proxy drains.
//!
//! On drain, hyper's graceful shutdown sends GOAWAY on HTTP/2 and closes idle HTTP/1 keep-alive
//! connections, while requests in flight run to completion. The same graceful close ends a
//! connection that had no request in flight and no byte either way for `timeouts.idle`.

use super::guard::{Guarded, UpgradeSignal};
use crate::config::{Limits, Timeouts};
use crate::drain;
use crate::idle::{Activity, BusyService, Timeout, Tracked};
use futures_util::future::{BoxFuture, Either};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::Service;
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
    S: Service<Request<Incoming>, Response = Response<B>> + Send,
    S::Future: Send + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    let activity = Activity::new();
    let signal = UpgradeSignal::default();
    let svc = AnswerUpgrades {
        inner: BusyService::new(svc, activity.clone()),
        signal: signal.clone(),
    };
    let io = Tracked::new(io, activity.clone());
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(timeouts.header_read)
        .max_buf_size(limits.max_header_bytes.max(MIN_BUF))
        .max_headers(limits.max_headers)
        .keep_alive(true);
    let io = Guarded::with_upgrade_signal(io, limits.max_header_bytes.max(MIN_BUF), signal);
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
    S: Service<Request<Incoming>, Response = Response<B>> + Send,
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

/// Tells the smuggling guard how each upgrade request was answered, so it hands over the raw
/// stream only after a real switch. Only upgrade requests pay for the extra future.
struct AnswerUpgrades<S> {
    inner: S,
    signal: UpgradeSignal,
}

// === impl AnswerUpgrades ===

impl<S, B> Service<Request<Incoming>> for AnswerUpgrades<S>
where
    S: Service<Request<Incoming>, Response = Response<B>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response<B>;
    type Error = S::Error;
    type Future = Either<S::Future, BoxFuture<'static, Result<Response<B>, S::Error>>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        if !UpgradeSignal::asks_to_upgrade(&req) {
            return Either::Left(self.inner.call(req));
        }
        let connect = req.method() == http::Method::CONNECT;
        let signal = self.signal.clone();
        let response = self.inner.call(req);
        Either::Right(Box::pin(async move {
            let res = response.await;
            let switched = res.as_ref().is_ok_and(|rsp| {
                rsp.status() == StatusCode::SWITCHING_PROTOCOLS
                    || (connect && rsp.status().is_success())
            });
            signal.answer(switched);
            res
        }))
    }
}
