//! Load balancing: which endpoint of a destination serves a request (DestinationRule
//! `trafficPolicy.loadBalancer`).
//!
//! Promises:
//! - an ejected endpoint is never chosen while another is usable ("is ejected" is a predicate
//!   the caller supplies: the outlier detector, or nothing);
//! - an endpoint already tried by this request ([`PreviousHosts`]) is avoided while another
//!   usable one exists, and chosen again when it is the only one (Envoy's `previous_hosts`);
//! - no endpoints at all is [`Unavailable::NoEndpoints`], none usable [`Unavailable::NoHealthy`]
//!   (both 503 UH);
//! - the common case (nothing ejected, first try) costs O(1) and no allocation; a consistent
//!   hash lookup is a binary search (ring) or one index (maglev).
//!
//! The [`Balance`] layer applies a destination's balancer to a request and hands it to the chosen
//! endpoint's service.

pub mod hash;

#[cfg(test)]
mod tests;

use super::PreviousHosts;
use super::endpoint::{EndpointState, NewEndpoint};
pub use super::outlier::Candidates;
use crate::config::{ConfigError, invalid};
use crate::http::ProxyError;
use futures_util::future::{Either, Ready, ready};
use http::{HeaderName, HeaderValue, Request};
use sinew_proto::config::v1 as pb;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;

/// Envoy's (and Istio's) default minimum ring size.
pub const DEFAULT_RING_SIZE: u64 = 1024;
/// Envoy's largest ring.
pub const MAX_RING_SIZE: u64 = 8 * 1024 * 1024;
/// Maglev's default table size (prime).
pub const DEFAULT_MAGLEV_TABLE_SIZE: u64 = 65537;
/// Istio requires maglev tables below this.
pub const MAX_MAGLEV_TABLE_SIZE: u64 = 5_000_011;
/// Warmup's default starting share, percent (Istio's `minimumPercent`).
pub const DEFAULT_WARMUP_MIN_PERCENT: f64 = 10.0;
pub const DEFAULT_WARMUP_AGGRESSION: f64 = 1.0;

/// A validated `loadBalancer` block.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadBalancer {
    pub kind: Kind,
    pub warmup: Option<Warmup>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    /// Power of two choices by active requests (the default).
    LeastRequest,
    RoundRobin,
    Random,
    /// The endpoint the app dialled; balanced as LEAST_REQUEST when the app dialled the
    /// service's address instead of an endpoint's.
    Passthrough,
    RingHash {
        key: HashKey,
        min_ring_size: usize,
    },
    Maglev {
        key: HashKey,
        table_size: usize,
    },
}

/// What a consistent hash is computed from.
#[derive(Clone, Debug, PartialEq)]
pub enum HashKey {
    Header(HeaderName),
    Cookie(CookieKey),
    SourceIp,
    QueryParameter(String),
}

/// `consistentHash.httpCookie`: the cookie hashed on and, with a `ttl`, the cookie the proxy
/// sets when a request carries none (Envoy's generated cookie), so the client's next requests
/// come back to the same endpoint.
#[derive(Clone, Debug, PartialEq)]
pub struct CookieKey {
    pub name: String,
    /// `Path` of the generated cookie; empty: none.
    pub path: String,
    /// `None`: never set the cookie. Zero: a session cookie (no `Max-Age`).
    pub ttl: Option<Duration>,
}

/// New endpoints ramp up from `min_share` to a full share over `duration`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Warmup {
    pub duration: Duration,
    /// 0..=1.
    pub min_share: f64,
    pub aggression: f64,
}

// === impl LoadBalancer ===

impl Default for LoadBalancer {
    fn default() -> Self {
        Self {
            kind: Kind::LeastRequest,
            warmup: None,
        }
    }
}

impl LoadBalancer {
    /// Validates `field` (e.g. `services[0].trafficPolicy.loadBalancer`); unset is the default.
    pub fn from_proto(field: &str, lb: Option<&pb::LoadBalancer>) -> Result<Self, ConfigError> {
        let Some(lb) = lb else {
            return Ok(Self::default());
        };
        let kind = match &lb.consistent_hash {
            Some(ch) => consistent_hash(&format!("{field}.consistentHash"), ch)?,
            None => match pb::load_balancer::Simple::try_from(lb.simple) {
                Ok(pb::load_balancer::Simple::LeastRequest) => Kind::LeastRequest,
                Ok(pb::load_balancer::Simple::RoundRobin) => Kind::RoundRobin,
                Ok(pb::load_balancer::Simple::Random) => Kind::Random,
                Ok(pb::load_balancer::Simple::Passthrough) => Kind::Passthrough,
                Err(_) => return Err(invalid(format!("{field}.simple"), "unknown algorithm")),
            },
        };
        let warmup = match &lb.warmup {
            None => None,
            Some(w) => {
                let f = format!("{field}.warmup");
                if !matches!(kind, Kind::LeastRequest | Kind::RoundRobin) {
                    return Err(invalid(
                        f,
                        "only ROUND_ROBIN and LEAST_REQUEST support warmup",
                    ));
                }
                let duration = match &w.duration {
                    None => return Err(invalid(format!("{f}.duration"), "required")),
                    Some(d) if d.seconds < 0 || d.nanos < 0 => {
                        return Err(invalid(format!("{f}.duration"), "must not be negative"));
                    }
                    Some(d) => Duration::new(d.seconds as u64, d.nanos as u32),
                };
                if duration < Duration::from_millis(1) {
                    return Err(invalid(format!("{f}.duration"), "must be at least 1ms"));
                }
                let min = w.minimum_percent.unwrap_or(DEFAULT_WARMUP_MIN_PERCENT);
                if !(0.0..=100.0).contains(&min) {
                    return Err(invalid(format!("{f}.minimumPercent"), "must be 0-100"));
                }
                let aggression = w.aggression.unwrap_or(DEFAULT_WARMUP_AGGRESSION);
                if aggression.is_nan() || aggression <= 0.0 {
                    return Err(invalid(format!("{f}.aggression"), "must be above 0"));
                }
                Some(Warmup {
                    duration,
                    min_share: min / 100.0,
                    aggression,
                })
            }
        };
        Ok(Self { kind, warmup })
    }

    /// Istio's name for the algorithm (for `/clusters`).
    pub fn name(&self) -> &'static str {
        match self.kind {
            Kind::LeastRequest => "LEAST_REQUEST",
            Kind::RoundRobin => "ROUND_ROBIN",
            Kind::Random => "RANDOM",
            Kind::Passthrough => "PASSTHROUGH",
            Kind::RingHash { .. } => "RING_HASH",
            Kind::Maglev { .. } => "MAGLEV",
        }
    }

    /// The consistent-hash key, if this balancer hashes.
    pub fn hash_key(&self) -> Option<&HashKey> {
        match &self.kind {
            Kind::RingHash { key, .. } | Kind::Maglev { key, .. } => Some(key),
            _ => None,
        }
    }

    /// True when picks read the app connection's addresses (source IP or dialled address).
    pub fn needs_connection(&self) -> bool {
        matches!(self.kind, Kind::Passthrough) || self.hash_key() == Some(&HashKey::SourceIp)
    }
}

fn consistent_hash(field: &str, ch: &pb::ConsistentHash) -> Result<Kind, ConfigError> {
    let mut keys = Vec::with_capacity(1);
    if !ch.http_header_name.is_empty() {
        let name = HeaderName::from_bytes(ch.http_header_name.to_ascii_lowercase().as_bytes())
            .map_err(|_| invalid(format!("{field}.httpHeaderName"), "not a header name"))?;
        keys.push(HashKey::Header(name));
    }
    if let Some(c) = &ch.http_cookie {
        keys.push(HashKey::Cookie(CookieKey::from_proto(
            &format!("{field}.httpCookie"),
            c,
        )?));
    }
    if ch.use_source_ip {
        keys.push(HashKey::SourceIp);
    }
    if !ch.http_query_parameter_name.is_empty() {
        keys.push(HashKey::QueryParameter(
            ch.http_query_parameter_name.clone(),
        ));
    }
    let key = match (keys.pop(), keys.is_empty()) {
        (Some(k), true) => k,
        (None, _) => {
            return Err(invalid(
                field,
                "set one of httpHeaderName, httpCookie, useSourceIp, httpQueryParameterName",
            ));
        }
        (Some(_), false) => return Err(invalid(field, "set only one hash key")),
    };
    let f = format!("{field}.tableSize");
    match pb::consistent_hash::Algorithm::try_from(ch.algorithm) {
        Ok(pb::consistent_hash::Algorithm::RingHash) => {
            let size = match ch.table_size {
                0 => DEFAULT_RING_SIZE,
                n if n > MAX_RING_SIZE => {
                    return Err(invalid(f, format!("at most {MAX_RING_SIZE}")));
                }
                n => n,
            };
            Ok(Kind::RingHash {
                key,
                min_ring_size: size as usize,
            })
        }
        Ok(pb::consistent_hash::Algorithm::Maglev) => {
            let size = match ch.table_size {
                0 => DEFAULT_MAGLEV_TABLE_SIZE,
                n if n >= MAX_MAGLEV_TABLE_SIZE => {
                    return Err(invalid(f, format!("must be below {MAX_MAGLEV_TABLE_SIZE}")));
                }
                n if !hash::is_prime(n) => return Err(invalid(f, format!("{n} is not prime"))),
                n => n,
            };
            Ok(Kind::Maglev {
                key,
                table_size: size as usize,
            })
        }
        Err(_) => Err(invalid(format!("{field}.algorithm"), "unknown algorithm")),
    }
}

// === impl HashKey ===

impl HashKey {
    /// The request's hash for this key; `None` when the request does not carry it (the pick
    /// is then random, as Envoy's).
    pub fn hash<B>(&self, req: &Request<B>, source: Option<IpAddr>) -> Option<u64> {
        match self {
            Self::Header(name) => req.headers().get(name).map(|v| hash::fnv1a(v.as_bytes())),
            Self::SourceIp => source.map(|ip| match ip {
                IpAddr::V4(v4) => hash::fnv1a(&v4.octets()),
                IpAddr::V6(v6) => hash::fnv1a(&v6.octets()),
            }),
            Self::Cookie(c) => req
                .headers()
                .get_all(http::header::COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(';'))
                .find_map(|kv| {
                    let (k, v) = kv.trim().split_once('=')?;
                    (k == c.name).then(|| hash::fnv1a(v.as_bytes()))
                }),
            Self::QueryParameter(name) => req.uri().query().and_then(|q| {
                q.split('&').find_map(|kv| {
                    let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                    (k == name).then(|| hash::fnv1a(v.as_bytes()))
                })
            }),
        }
    }
}

// === impl CookieKey ===

impl CookieKey {
    /// Validates `field` (`….consistentHash.httpCookie`): a name and, when the proxy is to set
    /// the cookie (`ttl`), a name and path that fit in a `set-cookie` header. Without a `ttl`
    /// the name is only compared with request cookies, so any name will do.
    pub fn from_proto(field: &str, c: &pb::HttpCookie) -> Result<Self, ConfigError> {
        if c.name.is_empty() {
            return Err(invalid(format!("{field}.name"), "required"));
        }
        let ttl = crate::traffic::proto_values::non_negative(&format!("{field}.ttl"), &c.ttl)?;
        if ttl.is_some() && !sinew_proto::cookie::is_name(&c.name) {
            return Err(invalid(
                format!("{field}.name"),
                "not a cookie name (the proxy sets this cookie: ttl is given)",
            ));
        }
        if ttl.is_some() && !sinew_proto::cookie::is_path(&c.path) {
            return Err(invalid(
                format!("{field}.path"),
                "not a cookie path (the proxy sets this cookie: ttl is given)",
            ));
        }
        Ok(Self {
            name: c.name.clone(),
            path: c.path.clone(),
            ttl,
        })
    }

    /// For a request without the cookie: when a `ttl` is configured, a new cookie value, the
    /// hash a request carrying it will have (so the pick now and the client's next requests
    /// agree), and the `set-cookie` header that hands it to the client.
    pub fn generate(&self) -> Option<(u64, HeaderValue)> {
        use std::fmt::Write;
        let ttl = self.ttl?;
        let value = format!("{:016x}", fastrand::u64(..));
        let hash = hash::fnv1a(value.as_bytes());
        let mut cookie = format!("{}={value}", self.name);
        if !ttl.is_zero() {
            // Whole seconds, rounded up: `Max-Age=0` would delete the cookie.
            let secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
            let _ = write!(cookie, "; Max-Age={secs}");
        }
        if !self.path.is_empty() {
            let _ = write!(cookie, "; Path={}", self.path);
        }
        cookie.push_str("; HttpOnly");
        // Name and path were checked with the config; the value is hex.
        HeaderValue::from_str(&cookie).ok().map(|v| (hash, v))
    }
}

/// Why no endpoint could be chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unavailable {
    NoEndpoints,
    NoHealthy,
}

/// What a pick reads from the request.
#[derive(Clone, Copy, Default)]
pub struct PickInput<'a> {
    /// The consistent-hash value of the request's key, if the balancer hashes and the request
    /// has the key.
    pub hash: Option<u64>,
    /// The address the app dialled (PASSTHROUGH).
    pub dialled: Option<SocketAddr>,
    pub previous: Option<&'a PreviousHosts>,
}

/// The balancer of one destination version: its algorithm and the state that algorithm keeps
/// over that version's endpoint list (the round-robin cursor, the hash table).
#[derive(Debug)]
pub struct Balancer {
    lb: LoadBalancer,
    next: AtomicUsize,
    table: Table,
}

#[derive(Debug)]
enum Table {
    None,
    Ring(hash::Ring),
    Maglev(hash::Maglev),
}

// === impl Balancer ===

impl Balancer {
    /// Builds the balancer for `endpoints` (the table of a consistent hash is built here, once).
    pub fn new(lb: &LoadBalancer, endpoints: &[Arc<EndpointState>]) -> Self {
        let addrs = || endpoints.iter().map(|e| e.addr()).collect::<Vec<_>>();
        let table = match &lb.kind {
            Kind::RingHash { min_ring_size, .. } => {
                Table::Ring(hash::Ring::new(&addrs(), *min_ring_size))
            }
            Kind::Maglev { table_size, .. } => {
                Table::Maglev(hash::Maglev::new(&addrs(), *table_size))
            }
            _ => Table::None,
        };
        Self {
            lb: lb.clone(),
            // Proxies that start together should not all begin with the first endpoint.
            next: AtomicUsize::new(fastrand::usize(..endpoints.len().max(1))),
            table,
        }
    }

    pub fn config(&self) -> &LoadBalancer {
        &self.lb
    }

    /// Chooses an endpoint index of `endpoints` (the list this balancer was built with).
    pub fn pick<E>(
        &self,
        endpoints: &[Arc<EndpointState>],
        input: &PickInput<'_>,
        ejected: &E,
    ) -> Result<usize, Unavailable>
    where
        E: Fn(&EndpointState) -> bool + ?Sized,
    {
        if endpoints.is_empty() {
            return Err(Unavailable::NoEndpoints);
        }
        let previous = input.previous.filter(|p| !p.is_empty());
        let fresh = |e: &EndpointState| previous.is_none_or(|p| !p.contains(&e.addr()));
        let usable = |e: &EndpointState| !ejected(e);
        let first = |e: &EndpointState| usable(e) && fresh(e);
        // Two passes: endpoints not yet tried, then (falling back) any usable one.
        for pass in [Pass::Fresh, Pass::Any] {
            let ok = |e: &EndpointState| match pass {
                Pass::Fresh => first(e),
                Pass::Any => usable(e),
            };
            if let Some(i) = self.pick_pass(endpoints, input, &ok) {
                return Ok(i);
            }
            if previous.is_none() {
                break;
            }
        }
        Err(Unavailable::NoHealthy)
    }

    fn pick_pass(
        &self,
        eps: &[Arc<EndpointState>],
        input: &PickInput<'_>,
        ok: &dyn Fn(&EndpointState) -> bool,
    ) -> Option<usize> {
        match (&self.lb.kind, &self.table, input.hash) {
            (Kind::RingHash { .. }, Table::Ring(ring), Some(h)) => {
                ring.walk(h).find(|i| ok(&eps[*i]))
            }
            (Kind::Maglev { .. }, Table::Maglev(m), Some(h)) => m.walk(h).find(|i| ok(&eps[*i])),
            // A request without the hash key goes anywhere, as Envoy's.
            (Kind::RingHash { .. } | Kind::Maglev { .. }, _, _) | (Kind::Random, _, _) => {
                random(eps, ok)
            }
            (Kind::RoundRobin, _, _) => self.round_robin(eps, ok),
            (Kind::Passthrough, _, _) => {
                match input
                    .dialled
                    .and_then(|d| eps.iter().position(|e| e.addr() == d))
                {
                    Some(i) if ok(&eps[i]) => Some(i),
                    Some(_) => None,
                    None => self.least_request(eps, ok),
                }
            }
            (Kind::LeastRequest, _, _) => self.least_request(eps, ok),
        }
    }

    fn round_robin(
        &self,
        eps: &[Arc<EndpointState>],
        ok: &dyn Fn(&EndpointState) -> bool,
    ) -> Option<usize> {
        let n = eps.len();
        let now = self.lb.warmup.map(|_| Instant::now());
        // A warming endpoint keeps its turn with probability equal to its share; a few skips
        // are allowed before any usable endpoint is taken, so the loop stays bounded.
        for attempt in 0..2 * n {
            let i = self.next.fetch_add(1, Ordering::Relaxed) % n;
            if !ok(&eps[i]) {
                continue;
            }
            match (now, self.lb.warmup) {
                (Some(now), Some(w)) if attempt < n => {
                    let share = warmup_share(&eps[i], now, &w);
                    if share < 1.0 && fastrand::f64() >= share {
                        continue;
                    }
                    return Some(i);
                }
                _ => return Some(i),
            }
        }
        None
    }

    /// Power of two choices: two distinct random usable endpoints, the one with fewer active
    /// requests (weighted by its warmup share) wins.
    fn least_request(
        &self,
        eps: &[Arc<EndpointState>],
        ok: &dyn Fn(&EndpointState) -> bool,
    ) -> Option<usize> {
        let n = eps.len();
        let (a, b) = if n == 1 {
            return ok(&eps[0]).then_some(0);
        } else {
            // Fast path: two distinct random endpoints, both usable (nothing ejected, first
            // try). Otherwise sample among the usable ones.
            let a = fastrand::usize(..n);
            let b = (a + 1 + fastrand::usize(..n - 1)) % n;
            if ok(&eps[a]) && ok(&eps[b]) {
                (a, b)
            } else {
                let count = eps.iter().filter(|e| ok(e)).count();
                match count {
                    0 => return None,
                    1 => return eps.iter().position(|e| ok(e)),
                    c => {
                        let ka = fastrand::usize(..c);
                        let kb = (ka + 1 + fastrand::usize(..c - 1)) % c;
                        (nth_ok(eps, ok, ka)?, nth_ok(eps, ok, kb)?)
                    }
                }
            }
        };
        let load = |i: usize| {
            let active = eps[i].stats.active() as f64 + 1.0;
            match self.lb.warmup {
                Some(w) => active / warmup_share(&eps[i], Instant::now(), &w),
                None => active,
            }
        };
        Some(if load(b) < load(a) { b } else { a })
    }
}

#[derive(Clone, Copy)]
enum Pass {
    Fresh,
    Any,
}

fn random(eps: &[Arc<EndpointState>], ok: &dyn Fn(&EndpointState) -> bool) -> Option<usize> {
    let i = fastrand::usize(..eps.len());
    if ok(&eps[i]) {
        return Some(i);
    }
    let count = eps.iter().filter(|e| ok(e)).count();
    if count == 0 {
        return None;
    }
    nth_ok(eps, ok, fastrand::usize(..count))
}

fn nth_ok(
    eps: &[Arc<EndpointState>],
    ok: &dyn Fn(&EndpointState) -> bool,
    k: usize,
) -> Option<usize> {
    eps.iter()
        .enumerate()
        .filter(|(_, e)| ok(e))
        .nth(k)
        .map(|(i, _)| i)
}

/// An endpoint's share of traffic during warmup, in (0, 1]: Envoy's slow start,
/// `max(min, (age / duration) ^ (1 / aggression))`.
fn warmup_share(ep: &EndpointState, now: Instant, w: &Warmup) -> f64 {
    let Some(added) = ep.stats.added else {
        return 1.0;
    };
    let age = now.saturating_duration_since(added);
    if age >= w.duration {
        return 1.0;
    }
    let t = age.as_secs_f64() / w.duration.as_secs_f64();
    t.powf(1.0 / w.aggression).max(w.min_share).max(0.01)
}

/// The connection-level facts a pick may read; present only for balancers that need them.
#[derive(Clone, Copy, Debug)]
pub struct ConnInfo {
    pub source: IpAddr,
    pub dialled: SocketAddr,
}

/// The destination a [`Balance`] serves: its endpoints, balancer and ejection predicate.
pub trait BalanceTarget: Send + Sync {
    fn service_name(&self) -> &Arc<str>;
    fn endpoints(&self) -> &[Arc<EndpointState>];
    fn balancer(&self) -> &Balancer;
    fn is_ejected(&self, ep: &EndpointState) -> bool;
    /// Which endpoints a pick may consider right now (the outlier detector's answer: all of
    /// them when none is ejected or in panic mode).
    fn candidates(&self) -> Candidates {
        Candidates::All
    }
}

/// The balance layer: picks an endpoint of `target` and calls the service built for it.
pub struct Balance<T, N> {
    target: Arc<T>,
    new_endpoint: N,
}

// === impl Balance ===

impl<T, N: Clone> Balance<T, N> {
    pub fn new(target: Arc<T>, new_endpoint: N) -> Self {
        Self {
            target,
            new_endpoint,
        }
    }
}

impl<T, N: Clone> Clone for Balance<T, N> {
    fn clone(&self) -> Self {
        Self {
            target: self.target.clone(),
            new_endpoint: self.new_endpoint.clone(),
        }
    }
}

impl<B, T, N> tower::Service<Request<B>> for Balance<T, N>
where
    T: BalanceTarget,
    N: NewEndpoint<B>,
{
    type Response = http::Response<crate::http::Body>;
    type Error = ProxyError;
    type Future = Either<
        Ready<Result<Self::Response, ProxyError>>,
        SetCookie<<N::Service as tower::Service<Request<B>>>::Future>,
    >;

    /// Always ready: limits answer at once (Envoy's overflow), they do not push back.
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let t = &*self.target;
        let lb = t.balancer().config();
        let conn = lb
            .needs_connection()
            .then(|| req.extensions().get::<ConnInfo>().copied())
            .flatten();
        let mut cookie = None;
        let hash = match lb.hash_key() {
            None => None,
            Some(k) => match (k.hash(&req, conn.map(|c| c.source)), k) {
                (Some(h), _) => Some(h),
                // No affinity cookie yet: make one (with a ttl) and pick by it.
                (None, HashKey::Cookie(c)) => c.generate().map(|(h, v)| {
                    cookie = Some(v);
                    h
                }),
                (None, _) => None,
            },
        };
        let input = PickInput {
            hash,
            dialled: conn.map(|c| c.dialled),
            previous: req.extensions().get::<PreviousHosts>(),
        };
        let eps = t.endpoints();
        let picked = match t.candidates() {
            Candidates::All => t.balancer().pick(eps, &input, &|_| false),
            Candidates::Healthy => t.balancer().pick(eps, &input, &|e| t.is_ejected(e)),
            Candidates::NoHealthy if eps.is_empty() => Err(Unavailable::NoEndpoints),
            Candidates::NoHealthy => Err(Unavailable::NoHealthy),
        };
        match picked {
            Ok(i) => {
                let mut svc = self.new_endpoint.new_endpoint(&eps[i]);
                Either::Right(SetCookie {
                    inner: tower::Service::call(&mut svc, req),
                    cookie,
                })
            }
            Err(Unavailable::NoEndpoints) => Either::Left(ready(Err(ProxyError::NoEndpoints(
                t.service_name().clone(),
            )))),
            Err(Unavailable::NoHealthy) => {
                Either::Left(ready(Err(ProxyError::NoHealthy(t.service_name().clone()))))
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// The endpoint's response, with the affinity cookie the pick generated (if any) added.
    pub struct SetCookie<F> {
        #[pin]
        inner: F,
        cookie: Option<HeaderValue>,
    }
}

impl<F, RspB> std::future::Future for SetCookie<F>
where
    F: std::future::Future<Output = Result<http::Response<RspB>, ProxyError>>,
{
    type Output = F::Output;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut rsp = std::task::ready!(this.inner.poll(cx))?;
        if let Some(c) = this.cookie.take() {
            rsp.headers_mut().append(http::header::SET_COOKIE, c);
        }
        Poll::Ready(Ok(rsp))
    }
}
