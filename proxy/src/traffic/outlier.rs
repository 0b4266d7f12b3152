//! Outlier detection: Envoy's consecutive-errors detector, as Istio configures it, taking a bad
//! endpoint out of its service's balancer for a while.
//!
//! Promises:
//! - one [`Detector`] per destination (service or subset) holds the state of its endpoints, keyed
//!   by address; it survives config pushes ([`Detector::update_endpoints`] keeps the state of
//!   addresses still present, [`Detector::update_settings`] keeps all state);
//! - an endpoint is ejected *inline*, by the call that brings one of its consecutive-error counts
//!   to its threshold, if the ejected share stays within `maxEjectionPercent` (one ejection is
//!   always allowed);
//! - an ejection lasts `baseEjectionTime × times ejected`, at most `max(300 s, base)`, and ends at
//!   the first `interval` sweep after it expired (as in Envoy, so it may last up to one interval
//!   longer); the multiplier goes down by one at each later sweep that finds the endpoint healthy;
//! - the balancer's per-request questions ([`Endpoint::is_ejected`], [`Detector::candidates`]) are
//!   a few relaxed atomic loads; only ejection bookkeeping takes a lock.
//!
//! Sweeps run in one tokio task per detector, spawned by [`Detector::new`]. The task holds only a
//! weak reference and is aborted when the last handle to the detector is dropped, so a destination
//! removed by a push leaves no task behind. (Lazy sweeps on access would put a clock read on
//! every request; a sleeping task costs nothing per request.)

use crate::config::ConfigError;
use crate::http::ProxyError;
use crate::traffic::proto_values::{invalid, percent, positive};
use http::{Request, Response, StatusCode};
use pin_project_lite::pin_project;
use sinew_proto::config::v1 as pb;
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::time::Instant;

/// Envoy's `max_ejection_time` default; Istio does not expose it.
pub const MAX_EJECTION_TIME: Duration = Duration::from_secs(300);
pub const DEFAULT_CONSECUTIVE_5XX: u32 = 5;
pub const DEFAULT_CONSECUTIVE_LOCAL_ORIGIN: u32 = 5;
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
pub const DEFAULT_BASE_EJECTION_TIME: Duration = Duration::from_secs(30);
pub const DEFAULT_MAX_EJECTION_PERCENT: u32 = 10;

/// Validated `outlierDetection`. A threshold of 0 disables its detector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// `consecutive5xxErrors`: any 5xx, resets, and (unsplit) local-origin failures.
    pub consecutive_5xx: u32,
    /// `consecutiveGatewayErrors`: 502, 503, 504, resets, and (unsplit) local-origin failures.
    pub consecutive_gateway: u32,
    /// `splitExternalLocalOriginErrors`.
    pub split_local_origin: bool,
    /// `consecutiveLocalOriginFailures`: 0 unless split.
    pub consecutive_local_origin: u32,
    pub interval: Duration,
    pub base_ejection_time: Duration,
    pub max_ejection_percent: u32,
    /// Below this share of healthy endpoints the balancer ignores ejection (panic); 0 = never.
    pub min_health_percent: u32,
}

/// What one call to an endpoint came to, as the detector counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The endpoint answered with this status.
    Status(StatusCode),
    /// We could not reach it: connect failure or timeout, TLS or HTTP/2 handshake failure.
    LocalOriginFailure,
    /// The exchange was reset after the connection was made; counted as a 503 (Envoy's
    /// `ExtOriginRequestFailed`).
    Reset,
    /// No response in time (a per-try timeout applied below this layer): Envoy's
    /// `LocalOriginTimeout`, a local-origin failure when split, else counted as a 504.
    Timeout,
    /// A TCP connection was made and that is the whole exchange (TCP services): a success.
    Connected,
}

/// Which detector ejected an endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Consecutive5xx,
    ConsecutiveGateway,
    ConsecutiveLocalOrigin,
}

/// What the balancer may pick from, right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Candidates {
    /// Every endpoint: none is ejected, or the destination is in panic.
    All,
    /// Only endpoints whose [`Endpoint::is_ejected`] is false.
    Healthy,
    /// Every endpoint is ejected and panic is off: answer `503 UH` ([`ProxyError::NoHealthy`]).
    NoHealthy,
}

/// The detector of one destination; cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct Detector {
    shared: Arc<Shared>,
}

/// One endpoint's handle for the endpoint layer and the balancer: records outcomes, answers
/// [`Endpoint::is_ejected`] with one atomic load.
#[derive(Clone)]
pub struct Endpoint {
    shared: Arc<Shared>,
    host: Arc<Host>,
}

/// One endpoint's health, for the admin endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointHealth {
    pub addr: SocketAddr,
    pub healthy: bool,
    /// While ejected: time left until the ejection expires (it ends at the first sweep after).
    pub ejected_for: Option<Duration>,
    /// The ejection-time multiplier (Envoy's backoff): up at each ejection, down at each
    /// healthy sweep.
    pub times_ejected: u32,
    /// Ejections since the endpoint appeared.
    pub ejections: u64,
    pub consecutive_5xx: u32,
    pub consecutive_gateway: u32,
    pub consecutive_local_origin: u32,
}

/// Counters for metrics (`ejections_*` as Envoy names them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Endpoints ejected right now.
    pub ejected: usize,
    pub endpoints: usize,
    pub ejections_total: u64,
    pub ejections_consecutive_5xx: u64,
    pub ejections_consecutive_gateway: u64,
    pub ejections_consecutive_local_origin: u64,
    /// Ejections refused because of `maxEjectionPercent` (Envoy's `ejections_overflow`).
    pub ejections_overflow: u64,
}

struct Shared {
    /// The full settings, for bookkeeping; the thresholds the hot path reads are copied below.
    settings: RwLock<Settings>,
    thresholds: [AtomicU32; 3],
    split: AtomicBool,
    min_health_percent: AtomicU32,
    hosts: RwLock<HashMap<SocketAddr, Arc<Host>>>,
    /// Serializes ejections, un-ejections and endpoint updates, so that the ejected count the
    /// max-percent check reads is the one it changes.
    decisions: Mutex<()>,
    ejected: AtomicUsize,
    total: AtomicUsize,
    counters: [AtomicU64; 4],
    sweeper: Option<tokio::task::AbortHandle>,
}

struct Host {
    addr: SocketAddr,
    ejected: AtomicBool,
    /// Consecutive counts, indexed by [`Kind`].
    consecutive: [AtomicU32; 3],
    ejection: Mutex<Ejection>,
}

#[derive(Default)]
struct Ejection {
    since: Option<Instant>,
    multiplier: u32,
    ejections: u64,
}

// === impl Settings ===

impl Default for Settings {
    /// Istio's values for `outlierDetection: {}`.
    fn default() -> Self {
        Self {
            consecutive_5xx: DEFAULT_CONSECUTIVE_5XX,
            consecutive_gateway: 0,
            split_local_origin: false,
            consecutive_local_origin: 0,
            interval: DEFAULT_INTERVAL,
            base_ejection_time: DEFAULT_BASE_EJECTION_TIME,
            max_ejection_percent: DEFAULT_MAX_EJECTION_PERCENT,
            min_health_percent: 0,
        }
    }
}

impl Settings {
    /// Validates `field` (e.g. `services[0].trafficPolicy.outlierDetection`) as istiod does and
    /// fills Istio's defaults.
    pub fn from_proto(field: &str, od: &pb::OutlierDetection) -> Result<Self, ConfigError> {
        let f = |name: &str| format!("{field}.{name}");
        let local = od.consecutive_local_origin_failures;
        if !od.split_external_local_origin_errors && local.is_some_and(|n| n > 0) {
            return Err(invalid(
                f("consecutiveLocalOriginFailures"),
                "only applies with splitExternalLocalOriginErrors: true",
            ));
        }
        let max_ejection_percent = match od.max_ejection_percent {
            // Istio copies the value only when > 0, so 0 leaves Envoy's default.
            None | Some(0) => DEFAULT_MAX_EJECTION_PERCENT,
            Some(p) => percent(&f("maxEjectionPercent"), p)?,
        };
        Ok(Self {
            consecutive_5xx: od.consecutive_5xx_errors.unwrap_or(DEFAULT_CONSECUTIVE_5XX),
            consecutive_gateway: od.consecutive_gateway_errors.unwrap_or(0),
            split_local_origin: od.split_external_local_origin_errors,
            consecutive_local_origin: match od.split_external_local_origin_errors {
                true => local.unwrap_or(DEFAULT_CONSECUTIVE_LOCAL_ORIGIN),
                false => 0,
            },
            interval: positive(&f("interval"), &od.interval)?.unwrap_or(DEFAULT_INTERVAL),
            base_ejection_time: positive(&f("baseEjectionTime"), &od.base_ejection_time)?
                .unwrap_or(DEFAULT_BASE_EJECTION_TIME),
            max_ejection_percent,
            min_health_percent: percent(&f("minHealthPercent"), od.min_health_percent)?,
        })
    }

    fn threshold(&self, kind: Kind) -> u32 {
        match kind {
            Kind::Consecutive5xx => self.consecutive_5xx,
            Kind::ConsecutiveGateway => self.consecutive_gateway,
            Kind::ConsecutiveLocalOrigin => self.consecutive_local_origin,
        }
    }

    /// How long the `multiplier`th ejection lasts: base × multiplier, capped at
    /// `max(300 s, base)` (Envoy never caps below the base).
    pub fn ejection_time(&self, multiplier: u32) -> Duration {
        let cap = MAX_EJECTION_TIME.max(self.base_ejection_time);
        self.base_ejection_time.saturating_mul(multiplier).min(cap)
    }
}

// === impl Outcome ===

impl Outcome {
    /// Classifies one call's result; `None` for failures that say nothing about the endpoint
    /// (the client's broken body, a limit, a timeout set above us).
    pub fn of<B>(result: &Result<Response<B>, ProxyError>) -> Option<Self> {
        match result {
            Ok(rsp) => Some(Self::Status(rsp.status())),
            Err(e) => Self::of_error(e),
        }
    }

    pub fn of_error(e: &ProxyError) -> Option<Self> {
        match e {
            ProxyError::Connect { .. }
            | ProxyError::ConnectTimeout { .. }
            | ProxyError::Tls { .. }
            | ProxyError::NoMeshAlpn { .. }
            | ProxyError::Handshake { .. } => Some(Self::LocalOriginFailure),
            ProxyError::Upstream(_) => Some(Self::Reset),
            ProxyError::Timeout(_) => Some(Self::Timeout),
            ProxyError::Shared(e) => Self::of_error(e),
            _ => None,
        }
    }
}

impl Kind {
    const ALL: [Kind; 3] = [
        Kind::Consecutive5xx,
        Kind::ConsecutiveGateway,
        Kind::ConsecutiveLocalOrigin,
    ];

    fn index(self) -> usize {
        self as usize
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Consecutive5xx => "consecutive_5xx",
            Kind::ConsecutiveGateway => "consecutive_gateway_failure",
            Kind::ConsecutiveLocalOrigin => "consecutive_local_origin_failure",
        }
    }
}

// === impl Detector ===

impl Detector {
    /// A detector with no endpoints yet, and its sweep task. Must be called within a tokio
    /// runtime.
    pub fn new(settings: Settings) -> Self {
        let shared = Arc::new_cyclic(|weak: &Weak<Shared>| {
            let first = Instant::now() + settings.interval;
            let sweeper = tokio::spawn(sweeps(weak.clone(), first));
            Shared::new(settings, Some(sweeper.abort_handle()))
        });
        Self { shared }
    }

    /// Replaces the settings in place: counts, ejections and multipliers are kept. A new
    /// `interval` takes effect after the next sweep.
    pub fn update_settings(&self, settings: Settings) {
        let _d = lock(&self.shared.decisions);
        self.shared.store_settings(settings);
    }

    /// Sets the endpoint list after a push: state is kept for addresses still present; the
    /// others are forgotten (handles to them still work but can no longer eject anything).
    pub fn update_endpoints(&self, addrs: &[SocketAddr]) {
        let _d = lock(&self.shared.decisions);
        let wanted: std::collections::HashSet<&SocketAddr> = addrs.iter().collect();
        let mut hosts = write(&self.shared.hosts);
        let mut ejected_gone = 0;
        hosts.retain(|addr, host| {
            let keep = wanted.contains(addr);
            if !keep && host.ejected.load(Ordering::Relaxed) {
                ejected_gone += 1;
            }
            keep
        });
        for addr in addrs {
            hosts
                .entry(*addr)
                .or_insert_with(|| Arc::new(Host::new(*addr)));
        }
        self.shared
            .ejected
            .fetch_sub(ejected_gone, Ordering::Release);
        self.shared.total.store(hosts.len(), Ordering::Release);
    }

    /// The handle of endpoint `addr`, if it is one of this destination's.
    pub fn endpoint(&self, addr: SocketAddr) -> Option<Endpoint> {
        let host = read(&self.shared.hosts).get(&addr)?.clone();
        Some(Endpoint {
            shared: self.shared.clone(),
            host,
        })
    }

    /// Whether `addr` is ejected (false for unknown addresses). A map lookup under a read lock;
    /// a balancer holding [`Endpoint`]s should ask them instead.
    pub fn is_ejected(&self, addr: &SocketAddr) -> bool {
        read(&self.shared.hosts)
            .get(addr)
            .is_some_and(|h| h.ejected.load(Ordering::Relaxed))
    }

    /// What the balancer may pick from; two or three atomic loads.
    pub fn candidates(&self) -> Candidates {
        let ejected = self.shared.ejected.load(Ordering::Acquire);
        if ejected == 0 {
            return Candidates::All;
        }
        if self.panic() {
            return Candidates::All;
        }
        match self.shared.total.load(Ordering::Acquire) > ejected {
            true => Candidates::Healthy,
            false => Candidates::NoHealthy,
        }
    }

    /// Panic: healthy endpoints are fewer than `minHealthPercent` of all, so the balancer
    /// ignores ejection (Envoy's `healthy_panic_threshold`; 0 = never).
    pub fn panic(&self) -> bool {
        let min = self.shared.min_health_percent.load(Ordering::Relaxed) as usize;
        let total = self.shared.total.load(Ordering::Acquire);
        let healthy = total.saturating_sub(self.shared.ejected.load(Ordering::Acquire));
        min > 0 && total > 0 && healthy * 100 < min * total
    }

    /// One interval sweep: un-ejects endpoints whose ejection time is up (returned), and lowers
    /// the multiplier of endpoints found healthy. The sweep task calls this every `interval`.
    pub fn sweep(&self) -> Vec<SocketAddr> {
        self.shared.sweep(Instant::now())
    }

    pub fn snapshot(&self) -> Vec<EndpointHealth> {
        let now = Instant::now();
        let _d = lock(&self.shared.decisions);
        let settings = *read(&self.shared.settings);
        let hosts = read(&self.shared.hosts);
        let mut out: Vec<EndpointHealth> = hosts
            .values()
            .map(|h| {
                let e = lock(&h.ejection);
                let ejected = h.ejected.load(Ordering::Relaxed);
                let count = |k: Kind| h.consecutive[k.index()].load(Ordering::Relaxed);
                EndpointHealth {
                    addr: h.addr,
                    healthy: !ejected,
                    ejected_for: match (ejected, e.since) {
                        (true, Some(since)) => Some(
                            (since + settings.ejection_time(e.multiplier))
                                .saturating_duration_since(now),
                        ),
                        _ => None,
                    },
                    times_ejected: e.multiplier,
                    ejections: e.ejections,
                    consecutive_5xx: count(Kind::Consecutive5xx),
                    consecutive_gateway: count(Kind::ConsecutiveGateway),
                    consecutive_local_origin: count(Kind::ConsecutiveLocalOrigin),
                }
            })
            .collect();
        out.sort_by_key(|h| h.addr);
        out
    }

    pub fn stats(&self) -> Stats {
        let c = |i: usize| self.shared.counters[i].load(Ordering::Relaxed);
        Stats {
            ejected: self.shared.ejected.load(Ordering::Relaxed),
            endpoints: self.shared.total.load(Ordering::Relaxed),
            ejections_consecutive_5xx: c(Kind::Consecutive5xx.index()),
            ejections_consecutive_gateway: c(Kind::ConsecutiveGateway.index()),
            ejections_consecutive_local_origin: c(Kind::ConsecutiveLocalOrigin.index()),
            ejections_total: c(0) + c(1) + c(2),
            ejections_overflow: c(OVERFLOW),
        }
    }
}

impl std::fmt::Debug for Detector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Detector")
            .field("stats", &self.stats())
            .finish()
    }
}

/// Index of the overflow counter after the three [`Kind`]s.
const OVERFLOW: usize = 3;

/// Sweeps every `interval` until the detector is gone (the task is also aborted on drop).
async fn sweeps(shared: Weak<Shared>, mut next: Instant) {
    loop {
        tokio::time::sleep_until(next).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        for addr in shared.sweep(next) {
            tracing::debug!(%addr, "outlier detection: endpoint returns to the balancer");
        }
        next += read(&shared.settings).interval;
    }
}

// === impl Shared ===

impl Shared {
    fn new(settings: Settings, sweeper: Option<tokio::task::AbortHandle>) -> Self {
        let shared = Self {
            settings: RwLock::new(settings),
            thresholds: Default::default(),
            split: AtomicBool::new(false),
            min_health_percent: AtomicU32::new(0),
            hosts: RwLock::default(),
            decisions: Mutex::new(()),
            ejected: AtomicUsize::new(0),
            total: AtomicUsize::new(0),
            counters: Default::default(),
            sweeper,
        };
        shared.store_settings(settings);
        shared
    }

    fn store_settings(&self, settings: Settings) {
        *write(&self.settings) = settings;
        for kind in Kind::ALL {
            self.thresholds[kind.index()].store(settings.threshold(kind), Ordering::Relaxed);
        }
        self.split
            .store(settings.split_local_origin, Ordering::Relaxed);
        self.min_health_percent
            .store(settings.min_health_percent, Ordering::Relaxed);
    }

    /// Counts one failure of `kind`; true if it is the Nth in a row.
    fn bump(&self, host: &Host, kind: Kind) -> bool {
        let threshold = self.thresholds[kind.index()].load(Ordering::Relaxed);
        let n = host.consecutive[kind.index()].fetch_add(1, Ordering::Relaxed);
        threshold != 0 && n.wrapping_add(1) == threshold
    }

    fn record(&self, host: &Arc<Host>, outcome: Outcome) {
        let split = self.split.load(Ordering::Relaxed);
        let (is_5xx, is_gateway) = match outcome {
            Outcome::Status(s) => {
                let gateway = matches!(s.as_u16(), 502..=504);
                (s.is_server_error(), gateway)
            }
            Outcome::Reset => (true, true),
            Outcome::Connected => (false, false),
            Outcome::LocalOriginFailure | Outcome::Timeout if split => {
                if self.bump(host, Kind::ConsecutiveLocalOrigin) {
                    self.eject(host, Kind::ConsecutiveLocalOrigin);
                }
                return;
            }
            // Unsplit, Envoy counts a connect failure as a 503 and a timeout as a 504.
            Outcome::LocalOriginFailure | Outcome::Timeout => (true, true),
        };
        if split && matches!(outcome, Outcome::Status(_) | Outcome::Connected) {
            // The connection worked: local-origin failures are no longer consecutive.
            host.reset(Kind::ConsecutiveLocalOrigin);
        }
        if !is_5xx {
            host.reset(Kind::Consecutive5xx);
            host.reset(Kind::ConsecutiveGateway);
            if !split {
                host.reset(Kind::ConsecutiveLocalOrigin);
            }
            return;
        }
        if is_gateway {
            if self.bump(host, Kind::ConsecutiveGateway) {
                self.eject(host, Kind::ConsecutiveGateway);
            }
        } else {
            host.reset(Kind::ConsecutiveGateway);
        }
        if self.bump(host, Kind::Consecutive5xx) {
            self.eject(host, Kind::Consecutive5xx);
        }
    }

    /// The Nth consecutive error of `kind` arrived: eject if the max percent allows it.
    fn eject(&self, host: &Arc<Host>, kind: Kind) {
        let _d = lock(&self.decisions);
        // As Envoy: the counter restarts, so the next bout of N errors is detected anew.
        host.reset(kind);
        if host.ejected.load(Ordering::Relaxed) {
            return;
        }
        let settings = *read(&self.settings);
        {
            let hosts = read(&self.hosts);
            if !hosts.get(&host.addr).is_some_and(|h| Arc::ptr_eq(h, host)) {
                return; // removed by a push while the call was in flight
            }
            let ejected = self.ejected.load(Ordering::Relaxed);
            let within =
                (ejected + 1) * 100 <= settings.max_ejection_percent as usize * hosts.len();
            if ejected > 0 && !within {
                self.counters[OVERFLOW].fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        let mut e = lock(&host.ejection);
        // Envoy's backoff grows only while base × multiplier is below the cap.
        if settings.ejection_time(e.multiplier) < MAX_EJECTION_TIME.max(settings.base_ejection_time)
        {
            e.multiplier += 1;
        }
        e.since = Some(Instant::now());
        e.ejections += 1;
        host.ejected.store(true, Ordering::Relaxed);
        self.ejected.fetch_add(1, Ordering::Release);
        self.counters[kind.index()].fetch_add(1, Ordering::Relaxed);
        tracing::debug!(addr = %host.addr, kind = kind.as_str(), multiplier = e.multiplier, "outlier detection: endpoint ejected");
    }

    fn sweep(&self, now: Instant) -> Vec<SocketAddr> {
        let _d = lock(&self.decisions);
        let settings = *read(&self.settings);
        let hosts = read(&self.hosts);
        let mut unejected = Vec::new();
        for host in hosts.values() {
            let mut e = lock(&host.ejection);
            if !host.ejected.load(Ordering::Relaxed) {
                // Healthy for a whole interval: the next ejection will be shorter.
                e.multiplier = e.multiplier.saturating_sub(1);
                continue;
            }
            let Some(since) = e.since else { continue };
            if now.saturating_duration_since(since) >= settings.ejection_time(e.multiplier) {
                for kind in Kind::ALL {
                    // Stale near-threshold counts would re-eject after very few new errors.
                    host.reset(kind);
                }
                host.ejected.store(false, Ordering::Relaxed);
                self.ejected.fetch_sub(1, Ordering::Release);
                unejected.push(host.addr);
            }
        }
        unejected
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        if let Some(sweeper) = &self.sweeper {
            sweeper.abort();
        }
    }
}

// === impl Host ===

impl Host {
    fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            ejected: AtomicBool::new(false),
            consecutive: Default::default(),
            ejection: Mutex::default(),
        }
    }

    /// Resets a counter, without writing a cache line that is already zero (the common case).
    fn reset(&self, kind: Kind) {
        let c = &self.consecutive[kind.index()];
        if c.load(Ordering::Relaxed) != 0 {
            c.store(0, Ordering::Relaxed);
        }
    }
}

// === impl Endpoint ===

impl Endpoint {
    pub fn addr(&self) -> SocketAddr {
        self.host.addr
    }

    /// One relaxed atomic load.
    pub fn is_ejected(&self) -> bool {
        self.host.ejected.load(Ordering::Relaxed)
    }

    /// Counts one call's outcome; may eject the endpoint (inline, as Envoy).
    pub fn record(&self, outcome: Outcome) {
        self.shared.record(&self.host, outcome);
    }
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("addr", &self.host.addr)
            .field("ejected", &self.is_ejected())
            .finish()
    }
}

// === impl OutlierLayer ===

/// Wraps the service that calls ONE endpoint and records each call's [`Outcome`].
#[derive(Clone, Debug)]
pub struct OutlierLayer {
    endpoint: Endpoint,
}

impl OutlierLayer {
    pub fn new(endpoint: Endpoint) -> Self {
        Self { endpoint }
    }
}

impl<S> tower::Layer<S> for OutlierLayer {
    type Service = Outlier<S>;

    fn layer(&self, inner: S) -> Outlier<S> {
        Outlier {
            inner,
            endpoint: self.endpoint.clone(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Outlier<S> {
    inner: S,
    endpoint: Endpoint,
}

// === impl Outlier ===

impl<S, B, RspB> tower::Service<Request<B>> for Outlier<S>
where
    S: tower::Service<Request<B>, Response = Response<RspB>, Error = ProxyError>,
{
    type Response = Response<RspB>;
    type Error = ProxyError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        let ready = ready!(self.inner.poll_ready(cx));
        // A connection layer may fail here (the dial happens before the call).
        if let Err(e) = &ready
            && let Some(outcome) = Outcome::of_error(e)
        {
            self.endpoint.record(outcome);
        }
        Poll::Ready(ready)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        ResponseFuture {
            inner: self.inner.call(req),
            endpoint: Some(self.endpoint.clone()),
        }
    }
}

pin_project! {
    /// Records the outcome when the inner future completes.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        endpoint: Option<Endpoint>,
    }
}

impl<F, RspB> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<RspB>, ProxyError>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        if let (Some(endpoint), Some(outcome)) = (this.endpoint.take(), Outcome::of(&result)) {
            endpoint.record(outcome);
        }
        Poll::Ready(result)
    }
}

// Poisoning only means another thread panicked mid-update of plain counters: keep going.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests;
