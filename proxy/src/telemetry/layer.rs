//! The outermost per-request layer of both directions (around [`crate::http::errors::Errors`]):
//! starts the request's span, removes the peer-metadata header, and reports the request once it
//! is over — when the response body ends, fails or is dropped, or when the client goes away before
//! any response:
//!
//! ```text
//! Observe → errors → (outbound: lookup → router → … → connect | inbound: forward)
//! ```
//!
//! Promises, per request:
//! - reported exactly once: Istio metrics, the access-log line (when on), `span.finish`;
//! - request bytes are the body's bytes as forwarded, or its `content-length` when it declared
//!   one (then nothing is metered: a body cut short reports its declared length);
//! - the duration runs to the response's last byte (as Envoy's `%DURATION%`); a body that
//!   fails adds `UR`, one the client dropped before its end adds `DC`; no response at all is
//!   code 0 with `DC`;
//! - response bytes are counted as they pass;
//! - the gRPC status is read from the trailers, or from the headers of a trailers-only response;
//! - cheap when nothing but metrics is on: no allocation of its own per request but one shared
//!   counter for a request body of unknown length (the request line's fields are captured only
//!   when the span is sampled or the access log on; `tests/telemetry_alloc.rs` counts), label
//!   sets resolved once per (connection, peer) and reused while the peer stays the same.

pub use super::conn::{Conn, Reports};
pub use super::request_bytes::{InBody, RequestBytes};

use super::access_log::{self, Entry};
use super::conn::Side;
use super::labels::Shared;
use super::metrics::{GrpcStatus, HttpSample};
use super::peer;
use super::request_bytes::{RequestSize, meter};
use super::trace::{Outcome, Span};
use super::{FromUpstream, RequestProtocol, Retries, UNKNOWN, Upstream, Workload};
use crate::traffic::ResponseFlags;
use bytes::Buf;
use http::{HeaderMap, HeaderValue, Method, Request, Response, Uri, Version};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::SystemTime;
use tokio::time::Instant;

static GRPC_STATUS: http::HeaderName = http::HeaderName::from_static("grpc-status");

/// The layer's service: wraps the errors layer of one connection.
#[derive(Clone)]
pub struct Observe<S> {
    inner: S,
    conn: Arc<Conn>,
}

impl<S> Observe<S> {
    pub fn new(inner: S, conn: Arc<Conn>) -> Self {
        Self { inner, conn }
    }
}

/// The request line's fields, kept only for a sampled span or an access-log line.
struct RequestInfo {
    method: Method,
    uri: Uri,
    version: Version,
    headers: LogHeaders,
    start: SystemTime,
}

/// The request headers an access-log line shows.
#[derive(Default)]
struct LogHeaders {
    x_forwarded_for: Option<HeaderValue>,
    user_agent: Option<HeaderValue>,
    request_id: Option<HeaderValue>,
    authority: Option<HeaderValue>,
    original_path: Option<HeaderValue>,
}

static X_REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-request-id");
static X_FORWARDED_FOR: http::HeaderName = http::HeaderName::from_static("x-forwarded-for");
static X_ENVOY_ORIGINAL_PATH: http::HeaderName =
    http::HeaderName::from_static("x-envoy-original-path");

impl RequestInfo {
    fn capture<B>(req: &Request<B>) -> Box<Self> {
        let h = req.headers();
        let authority = req
            .uri()
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
            .or_else(|| h.get(http::header::HOST).cloned());
        Box::new(Self {
            method: req.method().clone(),
            uri: req.uri().clone(),
            version: req.version(),
            headers: LogHeaders {
                x_forwarded_for: h.get(&X_FORWARDED_FOR).cloned(),
                user_agent: h.get(http::header::USER_AGENT).cloned(),
                request_id: h.get(&X_REQUEST_ID).cloned(),
                authority,
                original_path: h.get(&X_ENVOY_ORIGINAL_PATH).cloned(),
            },
            start: SystemTime::now(),
        })
    }
}

/// A request in flight: what its report needs.
struct Pending {
    conn: Arc<Conn>,
    span: Span,
    start: Instant,
    protocol: RequestProtocol,
    request_bytes: RequestSize,
    /// Inbound: resolved at the request; outbound: at the response (the endpoint decides).
    labels: Option<Shared>,
    info: Option<Box<RequestInfo>>,
    status: u16,
    grpc: GrpcStatus,
    flags: ResponseFlags,
    upstream: Option<Upstream>,
    retries: u32,
}

fn protocol(headers: &HeaderMap) -> RequestProtocol {
    match headers.get(http::header::CONTENT_TYPE) {
        Some(ct) if ct.as_bytes().starts_with(b"application/grpc") => RequestProtocol::Grpc,
        _ => RequestProtocol::Http,
    }
}

impl<S, B, RB> tower::Service<Request<B>> for Observe<S>
where
    S: tower::Service<Request<RequestBytes<B>>, Response = Response<RB>, Error = Infallible>,
    B: Body,
    RB: Body + FromUpstream,
{
    type Response = Response<Observed<RB>>;
    type Error = Infallible;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let start = Instant::now();
        let (mut req, request_bytes) = meter(req);
        let conn = &self.conn;
        let span = conn.tracer.start(conn.kind(), req.headers_mut());
        // Both sides: an app's header never reaches a peer as ours, a peer's never the app.
        let header = req.headers_mut().remove(&peer::PEER);
        let labels = conn.inbound_labels(header);
        let info =
            (span.is_sampled() || conn.log.format().is_some()).then(|| RequestInfo::capture(&req));
        let pending = Pending {
            conn: conn.clone(),
            span,
            start,
            protocol: protocol(req.headers()),
            request_bytes,
            labels,
            info,
            status: 0,
            grpc: GrpcStatus::None,
            flags: ResponseFlags::default(),
            upstream: None,
            retries: 0,
        };
        ResponseFuture {
            inner: self.inner.call(req),
            pending: Some(pending),
        }
    }
}

pin_project! {
    /// The response head; reports the request as unanswered if dropped before it.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        pending: Option<Pending>,
    }

    impl<F> PinnedDrop for ResponseFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            if let Some(p) = this.project().pending.take() {
                p.finish(0, End::Dropped);
            }
        }
    }
}

impl<F, RB> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<RB>, Infallible>>,
    RB: Body + FromUpstream,
{
    type Output = Result<Response<Observed<RB>>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Ok(rsp) = ready!(this.inner.poll(cx));
        let Some(mut p) = this.pending.take() else {
            // Polled again after completion: nothing more to report.
            return Poll::Ready(Ok(rsp.map(Observed::done)));
        };
        p.status = rsp.status().as_u16();
        let ext = rsp.extensions();
        p.flags = ext.get::<ResponseFlags>().copied().unwrap_or_default();
        p.upstream = rsp
            .body()
            .upstream()
            .or_else(|| ext.get::<Upstream>())
            .cloned();
        p.retries = ext.get::<Retries>().map_or(0, |r| r.0);
        if p.protocol == RequestProtocol::Grpc
            && let Some(s) = rsp.headers().get(&GRPC_STATUS)
        {
            // A trailers-only response.
            p.grpc = GrpcStatus::parse(s.as_bytes());
        }
        Poll::Ready(Ok(rsp.map(|body| Observed {
            inner: body,
            pending: Some(p),
            bytes: 0,
        })))
    }
}

pin_project! {
    /// The response body: counts its bytes and reports the request when it ends, fails or is
    /// dropped.
    pub struct Observed<B: Body> {
        #[pin]
        inner: B,
        pending: Option<Pending>,
        bytes: u64,
    }

    impl<B: Body> PinnedDrop for Observed<B> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(p) = this.pending.take() {
                // A body already at its end is often dropped unpolled (hyper does not poll an
                // empty body): that is a complete response, not a client gone away.
                let end = if this.inner.is_end_stream() {
                    End::Complete
                } else {
                    End::Dropped
                };
                p.finish(*this.bytes, end);
            }
        }
    }
}

impl<B: Body> Observed<B> {
    fn done(inner: B) -> Self {
        Self {
            inner,
            pending: None,
            bytes: 0,
        }
    }
}

impl<B> Body for Observed<B>
where
    B: Body,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let mut this = self.project();
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        match &frame {
            Some(Ok(f)) => {
                if let Some(d) = f.data_ref() {
                    *this.bytes += d.remaining() as u64;
                }
                if let (Some(t), Some(p)) = (f.trailers_ref(), this.pending.as_mut())
                    && let Some(s) = t.get(&GRPC_STATUS)
                {
                    p.grpc = GrpcStatus::parse(s.as_bytes());
                }
                if this.inner.is_end_stream()
                    && let Some(p) = this.pending.take()
                {
                    p.finish(*this.bytes, End::Complete);
                }
            }
            Some(Err(_)) => {
                if let Some(p) = this.pending.take() {
                    p.finish(*this.bytes, End::Failed);
                }
            }
            None => {
                if let Some(p) = this.pending.take() {
                    p.finish(*this.bytes, End::Complete);
                }
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// How a request's exchange ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    Complete,
    /// The response body failed mid-stream.
    Failed,
    /// Dropped before its end: by the client, or before any response.
    Dropped,
}

// === impl Pending ===

impl Pending {
    fn finish(mut self, response_bytes: u64, end: End) {
        let duration = self.start.elapsed();
        let request_bytes = self.request_bytes.get();
        match end {
            End::Complete => {}
            End::Failed => self.flags.insert(ResponseFlags::UR),
            End::Dropped => self.flags.insert(ResponseFlags::DC),
        }
        let conn = self.conn.clone();
        let labels = match self.labels.take() {
            Some(l) => l,
            None => conn.outbound_labels(self.upstream.as_ref()),
        };
        conn.metrics.istio.record_http(
            &labels,
            &HttpSample {
                protocol: self.protocol,
                code: self.status,
                grpc: self.grpc,
                flags: self.flags,
                duration,
                request_bytes,
                response_bytes,
            },
        );
        let upstream = self.upstream.as_ref().map(|u| &*u.0);
        let l = &*labels.0;
        let peer_identity = match &conn.side {
            Side::Inbound { peer, .. } => peer.as_deref(),
            Side::Outbound { .. } => upstream.and_then(|u| u.principal.as_deref()),
        };
        let (source, destination) = (known(&l.source), known(&l.destination));
        let destination_service = Some(&*l.destination_service.host).filter(|s| *s != UNKNOWN);
        let info = self.info.take();
        if let Some(info) = &info
            && conn.log.format().is_some()
        {
            let h = &info.headers;
            fn bytes(v: &Option<HeaderValue>) -> Option<&[u8]> {
                v.as_ref().map(HeaderValue::as_bytes)
            }
            let path = bytes(&h.original_path)
                .or_else(|| info.uri.path_and_query().map(|p| p.as_str().as_bytes()));
            let trace_id = self.span.trace_id();
            conn.log.log(&Entry {
                start: Some(info.start),
                method: Some(info.method.as_str()),
                path,
                protocol: Some(version(info.version)),
                response_code: self.status,
                flags: self.flags,
                details: access_log::details(self.flags, upstream.is_some()),
                bytes_received: request_bytes,
                bytes_sent: response_bytes,
                duration_ms: duration.as_millis() as u64,
                x_forwarded_for: bytes(&h.x_forwarded_for),
                user_agent: bytes(&h.user_agent),
                request_id: bytes(&h.request_id),
                authority: bytes(&h.authority),
                upstream_host: upstream.map(|u| u.addr),
                upstream_cluster: upstream.map(|u| &*u.cluster),
                downstream_local: conn.local,
                downstream_remote: conn.remote,
                route_name: Some("default"),
                trace_id: trace_id.as_deref(),
                peer_identity,
            });
        }
        let unsampled = RequestInfo::placeholder();
        let info = info.as_deref().unwrap_or(unsampled);
        let authority = info
            .headers
            .authority
            .as_ref()
            .and_then(|a| a.to_str().ok());
        self.span.finish(&Outcome {
            method: &info.method,
            uri: &info.uri,
            version: info.version,
            authority,
            protocol: self.protocol,
            status: http::StatusCode::from_u16(self.status).ok(),
            grpc_status: self.grpc.code(),
            flags: self.flags,
            upstream_host: upstream.map(|u| u.addr),
            upstream_cluster: upstream.map(|u| &*u.cluster),
            retries: self.retries,
            request_bytes,
            response_bytes,
            peer_identity,
            source,
            destination,
            destination_service,
        });
    }
}

impl RequestInfo {
    /// What an unsampled span is finished with when nothing was captured (it reads nothing).
    fn placeholder() -> &'static RequestInfo {
        static NONE: std::sync::LazyLock<RequestInfo> = std::sync::LazyLock::new(|| RequestInfo {
            method: Method::GET,
            uri: Uri::default(),
            version: Version::HTTP_11,
            headers: LogHeaders::default(),
            start: SystemTime::UNIX_EPOCH,
        });
        &NONE
    }
}

fn known(w: &Workload) -> Option<&Workload> {
    (&*w.name != UNKNOWN).then_some(w)
}

fn version(v: Version) -> &'static str {
    match v {
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2",
        Version::HTTP_3 => "HTTP/3",
        _ => "-",
    }
}

#[cfg(test)]
mod tests;
