//! Connection-pool limits (Envoy's circuit breakers) per client proxy per destination: caps on
//! requests in flight, requests queued, connections and retries, shed at once with `503 UO`.
//!
//! Promises:
//! - a request takes an active slot (`http2MaxRequests`); if none is free it fails at once with
//!   [`ProxyError::Overflow`] (`Overflow::Requests`), as Envoy's `max_requests` does, and the inner
//!   service is not called;
//! - a request that also needs a connection slot (HTTP/1, below) and finds none waits for one,
//!   first come first served, in a queue of at most `http1MaxPendingRequests`; if the queue is
//!   full it fails at once (`Overflow::Pending`). A waiter granted its connection when every
//!   active slot is taken fails then (`Overflow::Requests`): Envoy checks `max_requests` when the
//!   request gets its connection;
//! - our proxies carry HTTP/1 requests over multiplexed HTTP/2, where a request costs no
//!   connection. In Envoy each in-flight HTTP/1 request holds one upstream connection, so users
//!   size `maxConnections` with that in mind: an in-flight request whose original protocol is
//!   HTTP/1 (its version, or [`crate::http::ORIG_PROTO`] once converted) also holds one of
//!   `maxConnections`. HTTP/2 requests do not;
//! - a slot is held until the response body ends, fails or is dropped (as Envoy counts a request
//!   until its stream ends): the upstream body keeps it ([`HoldUntilEnd`]); an error or a local
//!   reply frees it at once;
//! - [`Breaker::update`] changes limits in place: counts in flight and the queue are kept; a raised
//!   limit admits waiters at once, a lowered one admits no one until the count drops below it;
//! - with every limit unlimited (Istio's default) a request costs a few uncontended atomic
//!   operations and no lock.

use crate::config::ConfigError;
use crate::http::body::{EndGuard, HoldUntilEnd};
use crate::http::{Body, ORIG_PROTO, Overflow, ProxyError, RESPONSE_FLAGS};
use crate::traffic::proto_values::{invalid, non_negative, positive};
use bytes::Bytes;
use futures_util::task::AtomicWaker;
use http::header::{self, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use http_body_util::{Either, Full};
use pin_project_lite::pin_project;
use sinew_proto::config::v1 as pb;
use std::collections::VecDeque;
use std::future::Future;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

/// Istio's default `idleTimeout` for upstream connections.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);

/// Envoy's body text for an overflow reply.
pub const OVERFLOW_BODY: &str =
    "upstream connect error or disconnect/reset before headers. reset reason: overflow";

/// Set by Envoy's router on overflow replies.
pub static X_ENVOY_OVERLOADED: HeaderName = HeaderName::from_static("x-envoy-overloaded");

/// Validated `connectionPool`. `None` means unlimited, or unset where a caller default applies.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// `http2MaxRequests`: requests in flight to all endpoints together.
    pub max_requests: Option<usize>,
    /// `http1MaxPendingRequests`: requests waiting for a slot.
    pub max_pending: Option<usize>,
    /// `maxConnections` (here: in-flight HTTP/1 requests; for TCP services, connections).
    pub max_connections: Option<usize>,
    /// `maxRetries`: retries in flight to all endpoints together.
    pub max_retries: Option<usize>,
    /// `connectTimeout`; `None`: the proxy's `timeouts.connect` (10 s by default).
    pub connect_timeout: Option<Duration>,
    /// `idleTimeout`: 1 h when unset; `None` when set to 0 (disabled).
    pub idle_timeout: Option<Duration>,
    /// `maxConnectionDuration`: none by default.
    pub max_connection_duration: Option<Duration>,
    /// `maxRequestsPerConnection`; 1 disables keep-alive.
    pub max_requests_per_connection: Option<NonZeroU32>,
    /// `maxConcurrentStreams` per upstream HTTP/2 connection.
    pub max_concurrent_streams: Option<NonZeroU32>,
    /// `tcpKeepalive`: set means SO_KEEPALIVE on; unset fields keep the OS defaults.
    pub tcp_keepalive: Option<TcpKeepalive>,
}

pub use crate::io::TcpKeepalive;

/// The shared limit state of one destination, for one client proxy; cheap to clone.
#[derive(Clone)]
pub struct Breaker {
    shared: Arc<Shared>,
}

/// Counts for the admin endpoint and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub active: usize,
    pub pending: usize,
    /// In-flight HTTP/1 requests (what `maxConnections` limits).
    pub connections: usize,
    pub retries: usize,
    /// `upstream_rq_pending_overflow`: requests refused because the queue was full.
    pub overflow_pending: u64,
    /// `upstream_cx_overflow`: HTTP/1 requests that `maxConnections` (not `http2MaxRequests`, not
    /// others queued ahead) made wait or, with the queue full, fail (then also counted in
    /// `overflow_pending`).
    pub overflow_connections: u64,
    /// Requests refused because `http2MaxRequests` were in flight (Envoy counts these in
    /// `upstream_rq_pending_overflow` too).
    pub overflow_requests: u64,
    /// `upstream_rq_retry_overflow`: retries not attempted.
    pub overflow_retries: u64,
}

/// A request's slot; released on drop.
pub struct Permit {
    shared: Arc<Shared>,
    http1: bool,
}

/// A retry's slot (`maxRetries`); released on drop.
pub struct RetryPermit {
    shared: Arc<Shared>,
}

const UNLIMITED: usize = usize::MAX;

struct Shared {
    service: Arc<str>,
    max_requests: AtomicUsize,
    max_pending: AtomicUsize,
    max_connections: AtomicUsize,
    max_retries: AtomicUsize,
    active: AtomicUsize,
    connections: AtomicUsize,
    retries: AtomicUsize,
    /// Mirrors the queue's length, so the fast path need not lock it.
    queued: AtomicUsize,
    queue: Mutex<VecDeque<Arc<Slot>>>,
    overflow_pending: AtomicU64,
    overflow_connections: AtomicU64,
    overflow_requests: AtomicU64,
    overflow_retries: AtomicU64,
}

/// A queued request, granted its slot by whoever frees one.
struct Slot {
    http1: bool,
    /// [`WAITING`], [`GRANTED`] or [`REFUSED`].
    state: AtomicU8,
    waker: AtomicWaker,
}

const WAITING: u8 = 0;
const GRANTED: u8 = 1;
/// Its connection came while every active slot was taken.
const REFUSED: u8 = 2;

enum Acquire {
    Granted(Permit),
    Queued(Waiter),
    Overflow(Overflow),
}

// === impl Limits ===

impl Limits {
    /// Validates `field` (e.g. `services[0].trafficPolicy.connectionPool`); 0 means unlimited
    /// for the counts, as in Istio.
    pub fn from_proto(field: &str, cp: &pb::ConnectionPool) -> Result<Self, ConfigError> {
        let f = |name: &str| format!("{field}.{name}");
        let count = |n: u32| (n > 0).then_some(n as usize);
        let idle_timeout = match non_negative(&f("idleTimeout"), &cp.idle_timeout)? {
            None => Some(DEFAULT_IDLE_TIMEOUT),
            Some(Duration::ZERO) => None,
            Some(d) if d < Duration::from_millis(1) => {
                return Err(invalid(f("idleTimeout"), "must be 0s or at least 1ms"));
            }
            Some(d) => Some(d),
        };
        let tcp_keepalive = match &cp.tcp_keepalive {
            None => None,
            Some(k) => Some(TcpKeepalive {
                probes: NonZeroU32::new(k.probes),
                time: positive(&f("tcpKeepalive.time"), &k.time)?,
                interval: positive(&f("tcpKeepalive.interval"), &k.interval)?,
            }),
        };
        Ok(Self {
            max_requests: count(cp.http2_max_requests),
            max_pending: count(cp.http1_max_pending_requests),
            max_connections: count(cp.max_connections),
            max_retries: count(cp.max_retries),
            connect_timeout: positive(&f("connectTimeout"), &cp.connect_timeout)?,
            idle_timeout,
            max_connection_duration: positive(
                &f("maxConnectionDuration"),
                &cp.max_connection_duration,
            )?,
            max_requests_per_connection: NonZeroU32::new(cp.max_requests_per_connection),
            max_concurrent_streams: NonZeroU32::new(cp.max_concurrent_streams),
            tcp_keepalive,
        })
    }

    /// No DestinationRule: every count unlimited, Istio's timeouts.
    pub fn unlimited() -> Self {
        Self {
            idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
            ..Self::default()
        }
    }
}

// === impl Breaker ===

impl Breaker {
    /// `service` names the destination in overflow errors.
    pub fn new(service: Arc<str>, limits: &Limits) -> Self {
        let shared = Shared {
            service,
            max_requests: AtomicUsize::new(UNLIMITED),
            max_pending: AtomicUsize::new(UNLIMITED),
            max_connections: AtomicUsize::new(UNLIMITED),
            max_retries: AtomicUsize::new(UNLIMITED),
            active: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
            retries: AtomicUsize::new(0),
            queued: AtomicUsize::new(0),
            queue: Mutex::new(VecDeque::new()),
            overflow_pending: AtomicU64::new(0),
            overflow_connections: AtomicU64::new(0),
            overflow_requests: AtomicU64::new(0),
            overflow_retries: AtomicU64::new(0),
        };
        let breaker = Self {
            shared: Arc::new(shared),
        };
        breaker.update(limits);
        breaker
    }

    /// New limits after a config push; counts in flight and queued requests are kept.
    pub fn update(&self, limits: &Limits) {
        let s = &self.shared;
        let or_max = |l: Option<usize>| l.unwrap_or(UNLIMITED);
        s.max_requests
            .store(or_max(limits.max_requests), Ordering::SeqCst);
        s.max_pending
            .store(or_max(limits.max_pending), Ordering::SeqCst);
        s.max_connections
            .store(or_max(limits.max_connections), Ordering::SeqCst);
        s.max_retries
            .store(or_max(limits.max_retries), Ordering::SeqCst);
        // A raised limit may admit queued requests now.
        s.grant_waiters();
    }

    /// A slot for a request whose original protocol is HTTP/1 (`http1`) or not, now or after
    /// waiting in the queue.
    pub async fn acquire(&self, http1: bool) -> Result<Permit, ProxyError> {
        match self.shared.try_acquire(http1) {
            Acquire::Granted(p) => Ok(p),
            Acquire::Queued(w) => w.await.ok_or_else(|| self.overflow(Overflow::Requests)),
            Acquire::Overflow(limit) => Err(self.overflow(limit)),
        }
    }

    /// A slot for one retry (`maxRetries`); the retry layer holds it while the retry is in flight
    /// and skips the retry on [`Overflow::Retries`].
    pub fn try_acquire_retry(&self) -> Result<RetryPermit, ProxyError> {
        let s = &self.shared;
        if take(&s.retries, s.max_retries.load(Ordering::SeqCst)) {
            return Ok(RetryPermit { shared: s.clone() });
        }
        s.overflow_retries.fetch_add(1, Ordering::Relaxed);
        Err(self.overflow(Overflow::Retries))
    }

    pub fn stats(&self) -> Stats {
        let s = &self.shared;
        Stats {
            active: s.active.load(Ordering::Relaxed),
            pending: s.queued.load(Ordering::Relaxed),
            connections: s.connections.load(Ordering::Relaxed),
            retries: s.retries.load(Ordering::Relaxed),
            overflow_pending: s.overflow_pending.load(Ordering::Relaxed),
            overflow_connections: s.overflow_connections.load(Ordering::Relaxed),
            overflow_requests: s.overflow_requests.load(Ordering::Relaxed),
            overflow_retries: s.overflow_retries.load(Ordering::Relaxed),
        }
    }

    fn overflow(&self, limit: Overflow) -> ProxyError {
        ProxyError::Overflow {
            service: self.shared.service.clone(),
            limit,
        }
    }
}

impl std::fmt::Debug for Breaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Breaker")
            .field("service", &self.shared.service)
            .field("stats", &self.stats())
            .finish()
    }
}

/// Whether a request counts against `maxConnections`: its original protocol is HTTP/1.
pub fn is_http1<B>(req: &Request<B>) -> bool {
    req.version() < Version::HTTP_2 || req.headers().contains_key(&ORIG_PROTO)
}

/// Envoy's overflow reply: `503`, `x-envoy-overloaded: true`, flag `UO`, Envoy's body text. The
/// error-rendering layer answers [`ProxyError::Overflow`] with this.
pub fn overflow_response() -> Response<Body> {
    let mut rsp = Response::new(Either::Right(Full::new(Bytes::from_static(
        OVERFLOW_BODY.as_bytes(),
    ))));
    *rsp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    let h = rsp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    h.insert(X_ENVOY_OVERLOADED.clone(), HeaderValue::from_static("true"));
    h.insert(RESPONSE_FLAGS.clone(), HeaderValue::from_static("UO"));
    rsp
}

/// Takes one of `max` from `count` if one is free.
fn take(count: &AtomicUsize, max: usize) -> bool {
    count
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
            (n < max).then_some(n + 1)
        })
        .is_ok()
}

// === impl Shared ===

impl Shared {
    /// Takes an active slot (and a connection for HTTP/1) if both are free; else says which
    /// limit stood in the way.
    fn take_slot(&self, http1: bool) -> Result<(), Overflow> {
        if !take(&self.active, self.max_requests.load(Ordering::SeqCst)) {
            return Err(Overflow::Requests);
        }
        if http1
            && !take(
                &self.connections,
                self.max_connections.load(Ordering::SeqCst),
            )
        {
            self.active.fetch_sub(1, Ordering::SeqCst);
            return Err(Overflow::Connections);
        }
        Ok(())
    }

    fn try_acquire(self: &Arc<Self>, http1: bool) -> Acquire {
        // Fast path, only when no one is queued: a newcomer must not overtake a waiter.
        if self.queued.load(Ordering::SeqCst) == 0 {
            match self.take_slot(http1) {
                Ok(()) => return Acquire::Granted(self.permit(http1)),
                Err(Overflow::Requests) => return self.refuse_requests(),
                Err(_) => {}
            }
        }
        // Only a request that needs a connection waits, and never for an active slot.
        if !http1 {
            return match take(&self.active, self.max_requests.load(Ordering::SeqCst)) {
                true => Acquire::Granted(self.permit(false)),
                false => self.refuse_requests(),
            };
        }
        if self.active.load(Ordering::SeqCst) >= self.max_requests.load(Ordering::SeqCst) {
            return self.refuse_requests();
        }
        let mut queue = lock(&self.queue);
        // Announce ourselves before the last try: a releaser that misses this count freed its
        // slot before our try, which then succeeds (both sides use SeqCst).
        self.queued.fetch_add(1, Ordering::SeqCst);
        let blocked = match queue.is_empty() {
            true => self.take_slot(http1).err(),
            false => Some(Overflow::Connections), // behind others: we wait for our turn
        };
        match blocked {
            None => {
                self.queued.fetch_sub(1, Ordering::SeqCst);
                return Acquire::Granted(self.permit(http1));
            }
            Some(Overflow::Requests) => {
                self.queued.fetch_sub(1, Ordering::SeqCst);
                return self.refuse_requests();
            }
            Some(_) => {
                self.overflow_connections.fetch_add(1, Ordering::Relaxed);
            }
        }
        if queue.len() >= self.max_pending.load(Ordering::SeqCst) {
            self.queued.fetch_sub(1, Ordering::SeqCst);
            self.overflow_pending.fetch_add(1, Ordering::Relaxed);
            return Acquire::Overflow(Overflow::Pending);
        }
        let slot = Arc::new(Slot {
            http1,
            state: AtomicU8::new(WAITING),
            waker: AtomicWaker::new(),
        });
        queue.push_back(slot.clone());
        Acquire::Queued(Waiter {
            shared: self.clone(),
            slot,
            done: false,
        })
    }

    fn refuse_requests(&self) -> Acquire {
        self.overflow_requests.fetch_add(1, Ordering::Relaxed);
        Acquire::Overflow(Overflow::Requests)
    }

    fn permit(self: &Arc<Self>, http1: bool) -> Permit {
        Permit {
            shared: self.clone(),
            http1,
        }
    }

    fn release(&self, http1: bool) {
        if http1 {
            self.connections.fetch_sub(1, Ordering::SeqCst);
        }
        self.active.fetch_sub(1, Ordering::SeqCst);
        if self.queued.load(Ordering::SeqCst) > 0 {
            self.grant_waiters();
        }
    }

    /// Hands free connection slots to waiters, in order; a waiter whose turn comes while every
    /// active slot is taken is refused (Envoy's `max_requests` check when a request gets its
    /// connection).
    fn grant_waiters(&self) {
        let mut queue = lock(&self.queue);
        while let Some(front) = queue.front() {
            let state = match self.take_slot(front.http1) {
                Ok(()) => GRANTED,
                Err(Overflow::Requests) => {
                    self.overflow_requests.fetch_add(1, Ordering::Relaxed);
                    REFUSED
                }
                Err(_) => break,
            };
            if let Some(slot) = queue.pop_front() {
                self.queued.fetch_sub(1, Ordering::SeqCst);
                slot.state.store(state, Ordering::Release);
                slot.waker.wake();
            }
        }
    }
}

// === impl Permit ===

impl std::fmt::Debug for Permit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Permit")
            .field("http1", &self.http1)
            .finish()
    }
}

impl std::fmt::Debug for RetryPermit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RetryPermit")
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.shared.release(self.http1);
    }
}

impl Drop for RetryPermit {
    fn drop(&mut self) {
        self.shared.retries.fetch_sub(1, Ordering::SeqCst);
    }
}

// === impl Waiter ===

/// A request in the pending queue; resolves to its [`Permit`]. Dropping it leaves the queue (or
/// gives back the slot it was just granted).
pub struct Waiter {
    shared: Arc<Shared>,
    slot: Arc<Slot>,
    done: bool,
}

impl Future for Waiter {
    /// `None`: refused ([`REFUSED`]).
    type Output = Option<Permit>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Permit>> {
        self.slot.waker.register(cx.waker());
        let permit = match self.slot.state.load(Ordering::Acquire) {
            WAITING => return Poll::Pending,
            GRANTED => Some(self.shared.permit(self.slot.http1)),
            _ => None,
        };
        self.done = true;
        Poll::Ready(permit)
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let granted = {
            let mut queue = lock(&self.shared.queue);
            match queue.iter().position(|s| Arc::ptr_eq(s, &self.slot)) {
                Some(i) => {
                    queue.remove(i);
                    self.shared.queued.fetch_sub(1, Ordering::SeqCst);
                    false
                }
                // Granted under the lock before we got here: the slot is ours to give back.
                None => self.slot.state.load(Ordering::Acquire) == GRANTED,
            }
        };
        if granted {
            self.shared.release(self.slot.http1);
        } else {
            // Our leaving may unblock whoever queued behind us (e.g. we were an HTTP/1 head).
            self.shared.grant_waiters();
        }
    }
}

// === impl BreakerLayer ===

/// Applies a destination's [`Breaker`] to the service below it (the balancer).
#[derive(Clone, Debug)]
pub struct BreakerLayer {
    breaker: Breaker,
}

impl BreakerLayer {
    pub fn new(breaker: Breaker) -> Self {
        Self { breaker }
    }
}

impl<S> tower::Layer<S> for BreakerLayer {
    type Service = BreakerService<S>;

    fn layer(&self, inner: S) -> BreakerService<S> {
        BreakerService {
            inner,
            breaker: self.breaker.clone(),
        }
    }
}

/// Readiness is the inner service's (no buffering here); the limit is applied in `call`, where
/// the request's protocol is known. A queued request takes the ready inner service with it and
/// leaves a clone behind (tower's usual pattern), so `S: Clone`.
#[derive(Clone, Debug)]
pub struct BreakerService<S> {
    inner: S,
    breaker: Breaker,
}

// === impl BreakerService ===

impl<S, B, RspB> tower::Service<Request<B>> for BreakerService<S>
where
    S: tower::Service<Request<B>, Response = Response<RspB>, Error = ProxyError> + Clone,
    RspB: HoldUntilEnd,
{
    type Response = Response<RspB>;
    type Error = ProxyError;
    type Future = ResponseFuture<S, Request<B>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let state = match self.breaker.shared.try_acquire(is_http1(&req)) {
            Acquire::Granted(permit) => State::Called {
                fut: self.inner.call(req),
                permit: Some(permit),
            },
            Acquire::Queued(waiter) => {
                let fresh = self.inner.clone();
                // Boxed: a queued request is the rare case, and the future every request carries
                // stays small.
                State::Waiting {
                    queued: Box::pin(Queued {
                        waiter,
                        inner: Some(std::mem::replace(&mut self.inner, fresh)),
                        req: Some(req),
                        refused: Some(self.breaker.overflow(Overflow::Requests)),
                    }),
                }
            }
            Acquire::Overflow(limit) => State::Failed {
                error: Some(self.breaker.overflow(limit)),
            },
        };
        ResponseFuture { state }
    }
}

pin_project! {
    /// Waits for a slot if queued, then holds it until the inner response (headers) arrives.
    pub struct ResponseFuture<S, Req>
    where
        S: tower::Service<Req>,
    {
        #[pin]
        state: State<S, Req>,
    }
}

pin_project! {
    /// A request waiting in the queue, with the service it will be sent through.
    pub struct Queued<S, Req> {
        #[pin]
        waiter: Waiter,
        inner: Option<S>,
        req: Option<Req>,
        // The answer if the waiter is refused.
        refused: Option<ProxyError>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, Req>
    where
        S: tower::Service<Req>,
    {
        Waiting { queued: Pin<Box<Queued<S, Req>>> },
        Called { #[pin] fut: S::Future, permit: Option<Permit> },
        Failed { error: Option<ProxyError> },
    }
}

impl<S, Req, RspB> Future for ResponseFuture<S, Req>
where
    S: tower::Service<Req, Response = Response<RspB>, Error = ProxyError>,
    RspB: HoldUntilEnd,
{
    type Output = Result<Response<RspB>, ProxyError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                StateProj::Waiting { queued } => {
                    let q = queued.as_mut().project();
                    let (waiter, inner, req, refused) = (q.waiter, q.inner, q.req, q.refused);
                    let Some(permit) = ready!(waiter.poll(cx)) else {
                        let refused = refused.take();
                        state.set(State::Failed { error: refused });
                        continue;
                    };
                    let (Some(mut inner), Some(req)) = (inner.take(), req.take()) else {
                        unreachable!("invariant: a waiting state holds its service and request");
                    };
                    // `inner` was made ready by `poll_ready` before the request was queued.
                    let fut = inner.call(req);
                    state.set(State::Called {
                        fut,
                        permit: Some(permit),
                    });
                }
                StateProj::Called { fut, permit } => {
                    let mut result = ready!(fut.poll(cx));
                    if let Some(p) = permit.take() {
                        // The slot stays taken while the response body streams.
                        drop(result.hold_until_end(EndGuard::Permit(p)));
                    }
                    return Poll::Ready(result);
                }
                StateProj::Failed { error } => {
                    return Poll::Ready(Err(error.take().unwrap_or_else(|| {
                        ProxyError::Upstream("breaker future polled after completion".into())
                    })));
                }
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests;
