//! The per-service cache: live state per destination (a service, and each of its subsets),
//! derived from the config and carried from one config version to the next.
//!
//! Promises:
//! - [`Services::update`] returns the state for a new config, reusing the previous state of
//!   every service whose config did not change (same `Arc`s: balancer cursor, hash tables,
//!   counters), and of every destination (service or subset) whose endpoints and policy did
//!   not change;
//! - an endpoint address still present keeps its [`EndpointStats`] (active requests, and the
//!   outlier detector's state when it lands) across any change of its service; a removed
//!   endpoint's state goes with it, as does a removed service's;
//! - nothing here is mutated in place by a push: a request in flight keeps the `Arc`s it
//!   started with and finishes on that policy.

use super::DestinationKey;
use super::balance::{BalanceTarget, Balancer};
use super::breaker::Breaker;
use super::budget::RetryBudget;
use super::endpoint::{EndpointState, EndpointStats};
use super::outlier;
use crate::config::{self, Config, Policy};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use tokio::time::Instant;

/// The live state of every service of one config version.
#[derive(Debug, Default)]
pub struct Services {
    by_key: HashMap<Arc<str>, Arc<ServiceState>>,
}

/// One service: its config, its destinations, and the stats of its endpoint addresses.
#[derive(Debug)]
pub struct ServiceState {
    pub service: Arc<config::Service>,
    /// Requests to no subset.
    pub default: Arc<Destination>,
    /// In the config's order.
    pub subsets: Vec<Arc<Destination>>,
    stats: HashMap<SocketAddr, Arc<EndpointStats>>,
    /// Some destination's balancer reads the app connection's addresses.
    needs_connection: bool,
}

/// What requests to one destination share: its endpoints (filtered by subset labels), its
/// policy, balancer, connection-pool limits and outlier detector.
///
/// The breaker and the detector belong to the destination's key, not to one version: a new
/// version of the destination takes them over (limits and settings updated in place), so
/// requests in flight, queued requests and ejections carry across pushes.
#[derive(Debug)]
pub struct Destination {
    pub key: DestinationKey,
    /// The service's name (without port).
    pub name: Arc<str>,
    pub policy: Policy,
    endpoints: Vec<Arc<EndpointState>>,
    balancer: Balancer,
    pub breaker: Breaker,
    /// `maxRetries` and the retry budget, read by the retry layer.
    pub retry_budget: Arc<RetryBudget>,
    /// Retries and refused retries (maxRetries or budget) the metrics have seen.
    retries_reported: Arc<[AtomicU64; 2]>,
    outlier: Option<Outlier>,
    /// Open TCP connections (what `maxConnections` limits for TCP services).
    tcp_connections: Arc<AtomicUsize>,
}

/// A destination's outlier detector and how many of its ejections the metrics have seen.
#[derive(Clone, Debug)]
struct Outlier {
    detector: outlier::Detector,
    reported: Arc<AtomicU64>,
}

// === impl Services ===

impl Services {
    /// The state for `config`, carrying over what `prev` holds for unchanged services and
    /// endpoints. `now` stamps endpoints that join a running service (warmup).
    pub fn update(prev: &Services, config: &Config, now: Instant) -> Services {
        let mut by_key = HashMap::new();
        for svc in config.services() {
            if by_key.contains_key(&svc.key) {
                continue;
            }
            let state = match prev.by_key.get(&svc.key) {
                Some(old) if *old.service == **svc => old.clone(),
                old => Arc::new(ServiceState::new(svc.clone(), old.map(|o| &**o), now)),
            };
            by_key.insert(svc.key.clone(), state);
        }
        Services { by_key }
    }

    /// The service whose key (`name:port`) is `key`.
    pub fn service(&self, key: &str) -> Option<&Arc<ServiceState>> {
        self.by_key.get(key)
    }

    /// The destination a route named; `None` for an unknown service or subset.
    pub fn destination(&self, key: &DestinationKey) -> Option<&Arc<Destination>> {
        let svc = self.by_key.get(&key.service)?;
        match &key.subset {
            None => Some(&svc.default),
            Some(name) => svc.subset(name),
        }
    }

    /// Every service, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<ServiceState>> {
        self.by_key.values()
    }

    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Brings the counters the policy modules keep (ejections, retries, refused retries) into
    /// the metrics. Each event is reported once, whichever version reports it (the counts are
    /// shared across versions); the proxy calls this at every scrape and on the outgoing
    /// snapshot of every config change, so a destination a push removes keeps its last counts.
    pub fn report_counters(&self, metrics: &crate::metrics::Metrics) {
        for s in self.iter() {
            for d in std::iter::once(&s.default).chain(&s.subsets) {
                let (ejections, retries) = (d.new_ejections(), d.new_retries());
                let refused = d.new_retry_overflows();
                if ejections > 0 || retries > 0 || refused > 0 {
                    let m = metrics.upstream(&d.key.service);
                    m.ejections.inc_by(ejections);
                    m.retries.inc_by(retries);
                    m.overflow_by(crate::http::Overflow::Retries, refused);
                }
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

// === impl ServiceState ===

impl ServiceState {
    fn new(service: Arc<config::Service>, old: Option<&ServiceState>, now: Instant) -> Self {
        // An address the service already had keeps its stats; a new one joins now (it warms
        // up), unless the service itself is new (its endpoints all start together).
        let stats: HashMap<SocketAddr, Arc<EndpointStats>> = service
            .endpoints
            .iter()
            .map(|e| {
                let s = old
                    .and_then(|o| o.stats.get(&e.addr).cloned())
                    .unwrap_or_else(|| Arc::new(EndpointStats::new(old.map(|_| now))));
                (e.addr, s)
            })
            .collect();
        let build = |subset: Option<&config::Subset>| {
            let key = DestinationKey {
                service: service.key.clone(),
                subset: subset.map(|s| s.name.clone()),
            };
            let policy = subset.map_or(&service.policy, |s| &s.policy);
            let eps: Vec<&config::Endpoint> = service
                .endpoints
                .iter()
                .filter(|e| subset.is_none_or(|s| s.selects(e)))
                .collect();
            let previous = old.and_then(|o| match &key.subset {
                None => Some(&o.default),
                Some(n) => o.subset(n),
            });
            match previous {
                Some(p) if p.policy == *policy && p.same_endpoints(&eps) => p.clone(),
                _ => Arc::new(Destination::new(
                    key,
                    service.name.clone(),
                    policy.clone(),
                    &eps,
                    &stats,
                    previous.map(|p| &**p),
                )),
            }
        };
        let default = build(None);
        let subsets: Vec<Arc<Destination>> =
            service.subsets.iter().map(|s| build(Some(s))).collect();
        let needs_connection = std::iter::once(&default)
            .chain(&subsets)
            .any(|d: &Arc<Destination>| d.policy.load_balancer.needs_connection());
        Self {
            default,
            subsets,
            stats,
            service,
            needs_connection,
        }
    }

    /// True when a pick may read the app connection's addresses ([`super::balance::ConnInfo`]).
    pub fn needs_connection(&self) -> bool {
        self.needs_connection
    }

    pub fn subset(&self, name: &str) -> Option<&Arc<Destination>> {
        self.subsets
            .iter()
            .find(|d| d.key.subset.as_deref() == Some(name))
    }
}

// === impl Destination ===

impl Destination {
    fn new(
        key: DestinationKey,
        name: Arc<str>,
        policy: Policy,
        eps: &[&config::Endpoint],
        stats: &HashMap<SocketAddr, Arc<EndpointStats>>,
        prev: Option<&Destination>,
    ) -> Self {
        let breaker = match prev {
            Some(p) => {
                p.breaker.update(&policy.limits);
                p.breaker.clone()
            }
            None => Breaker::new(key.service.clone(), &policy.limits),
        };
        let retry_budget = match prev {
            Some(p) if p.policy.retry == policy.retry => p.retry_budget.clone(),
            _ => Arc::new(RetryBudget::new(
                policy.retry.max_retries,
                policy.retry.budget,
            )),
        };
        let retries_reported = match prev {
            Some(p) if Arc::ptr_eq(&p.retry_budget, &retry_budget) => p.retries_reported.clone(),
            _ => Arc::new([AtomicU64::new(0), AtomicU64::new(0)]),
        };
        let addrs: Vec<SocketAddr> = eps.iter().map(|e| e.addr).collect();
        let outlier = match (policy.outlier, prev.and_then(|p| p.outlier.clone())) {
            (None, _) => None,
            (Some(settings), Some(o)) => {
                o.detector.update_settings(settings);
                Some(o)
            }
            // The detector's sweeps run on a tokio task; outside a runtime (a config checked
            // by a command-line tool) there is nothing to detect.
            (Some(settings), None) => tokio::runtime::Handle::try_current().ok().map(|_| Outlier {
                detector: outlier::Detector::new(settings),
                reported: Arc::new(AtomicU64::new(0)),
            }),
        };
        if let Some(o) = &outlier {
            o.detector.update_endpoints(&addrs);
        }
        let endpoints: Vec<Arc<EndpointState>> = eps
            .iter()
            .map(|e| {
                let s = stats
                    .get(&e.addr)
                    .cloned()
                    .unwrap_or_else(|| Arc::new(EndpointStats::new(None)));
                let handle = outlier.as_ref().and_then(|o| o.detector.endpoint(e.addr));
                Arc::new(EndpointState::new((*e).clone(), s, handle))
            })
            .collect();
        let balancer = Balancer::new(&policy.load_balancer, &endpoints);
        Self {
            key,
            name,
            policy,
            endpoints,
            balancer,
            breaker,
            retry_budget,
            retries_reported,
            outlier,
            tcp_connections: prev.map_or_else(Default::default, |p| p.tcp_connections.clone()),
        }
    }

    fn same_endpoints(&self, eps: &[&config::Endpoint]) -> bool {
        self.endpoints.len() == eps.len()
            && self
                .endpoints
                .iter()
                .zip(eps)
                .all(|(a, b)| a.endpoint == **b)
    }

    pub fn endpoints(&self) -> &[Arc<EndpointState>] {
        &self.endpoints
    }

    /// Requests in flight to this destination's endpoints.
    pub fn active(&self) -> usize {
        self.endpoints.iter().map(|e| e.stats.active()).sum()
    }

    /// Requests queued for a slot (the breaker's pending queue).
    pub fn pending(&self) -> usize {
        self.breaker.stats().pending
    }

    /// The outlier detector's view of each endpoint (empty without outlier detection).
    pub fn health(&self) -> Vec<outlier::EndpointHealth> {
        self.outlier
            .as_ref()
            .map(|o| o.detector.snapshot())
            .unwrap_or_default()
    }

    /// Ejections since the metrics last asked (each counted once across versions).
    pub fn new_ejections(&self) -> u64 {
        let Some(o) = &self.outlier else { return 0 };
        let total = o.detector.stats().ejections_total;
        total.saturating_sub(o.reported.swap(total, Ordering::Relaxed))
    }

    /// Retries since the metrics last asked.
    pub fn new_retries(&self) -> u64 {
        let total = self.retry_budget.stats().retries.load(Ordering::Relaxed);
        total.saturating_sub(self.retries_reported[0].swap(total, Ordering::Relaxed))
    }

    /// Retries refused by `maxRetries` or the retry budget since the metrics last asked.
    pub fn new_retry_overflows(&self) -> u64 {
        let s = self.retry_budget.stats();
        let total =
            s.overflows.load(Ordering::Relaxed) + s.budget_exhausted.load(Ordering::Relaxed);
        total.saturating_sub(self.retries_reported[1].swap(total, Ordering::Relaxed))
    }

    /// A slot for one TCP connection, or `None` when `maxConnections` are open.
    pub fn tcp_connection(&self) -> Option<TcpSlot> {
        let max = self.policy.limits.max_connections.unwrap_or(usize::MAX);
        self.tcp_connections
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| TcpSlot(self.tcp_connections.clone()))
    }
}

/// One open TCP connection of a destination; released on drop.
#[derive(Debug)]
pub struct TcpSlot(Arc<AtomicUsize>);

impl Drop for TcpSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl BalanceTarget for Destination {
    fn service_name(&self) -> &Arc<str> {
        &self.key.service
    }

    fn endpoints(&self) -> &[Arc<EndpointState>] {
        &self.endpoints
    }

    fn balancer(&self) -> &Balancer {
        &self.balancer
    }

    fn is_ejected(&self, ep: &EndpointState) -> bool {
        ep.is_ejected()
    }

    fn candidates(&self) -> outlier::Candidates {
        match &self.outlier {
            None => outlier::Candidates::All,
            Some(o) => o.detector.candidates(),
        }
    }
}

#[cfg(test)]
mod tests;
