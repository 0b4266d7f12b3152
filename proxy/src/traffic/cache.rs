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
use super::endpoint::{EndpointState, EndpointStats};
use crate::config::{self, Config, Policy};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
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
/// policy and balancer; the breaker and outlier detector attach here.
#[derive(Debug)]
pub struct Destination {
    pub key: DestinationKey,
    /// The service's name (without port).
    pub name: Arc<str>,
    pub policy: Policy,
    endpoints: Vec<Arc<EndpointState>>,
    balancer: Balancer,
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
    ) -> Self {
        let endpoints: Vec<Arc<EndpointState>> = eps
            .iter()
            .map(|e| {
                let s = stats
                    .get(&e.addr)
                    .cloned()
                    .unwrap_or_else(|| Arc::new(EndpointStats::new(None)));
                Arc::new(EndpointState::new((*e).clone(), s))
            })
            .collect();
        let balancer = Balancer::new(&policy.load_balancer, &endpoints);
        Self {
            key,
            name,
            policy,
            endpoints,
            balancer,
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

    /// Requests queued for a slot (the breaker's pending queue; none until it lands).
    pub fn pending(&self) -> usize {
        0
    }

    /// The outlier detector's view of `ep` (never ejected until it lands).
    pub fn health(&self, _ep: &EndpointState) -> EndpointHealth {
        EndpointHealth::default()
    }
}

/// What `/clusters` shows of an endpoint's ejection state.
#[derive(Clone, Copy, Debug, Default)]
pub struct EndpointHealth {
    /// Time left until the ejection ends.
    pub ejected_for: Option<std::time::Duration>,
    pub times_ejected: u32,
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

    /// Seam for the outlier detector: nothing is ejected until it lands.
    fn is_ejected(&self, _ep: &EndpointState) -> bool {
        false
    }
}

#[cfg(test)]
mod tests;
