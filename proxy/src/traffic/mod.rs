//! Traffic policy on the outbound request path: DestinationRule and VirtualService semantics as
//! a stack of small tower layers.
//!
//! ```text
//! errors (render ProxyError, metrics; shared with inbound)     http/errors.rs
//!   → lookup (the connection's service in the config in force)  outbound/http.rs
//!   → route (match → weighted destination, rewrite, redirect, headers)
//!     → fault → timeout → retry (budget, backoff, previous hosts)
//!       → destination (per service or subset, from the per-service cache)  dispatch.rs, cache.rs
//!         → breaker (connection-pool limits)                               breaker.rs
//!           → balancer                                                     balance/
//!             → endpoint (active requests, previous hosts, outlier)        endpoint.rs, outlier.rs
//!               → connection (mesh mTLS, TLS origination or plaintext)     outbound/connect.rs
//! ```
//!
//! Everything below the lookup is built once per service per config version and kept with the
//! config ([`crate::ctx::Snapshot`]); the state that must outlive a version (endpoint counters,
//! ejections, breaker counts) lives in [`cache`], keyed by destination and address.
//!
//! The types here are what the layers hand each other in request and response extensions; each
//! layer lives in its own module.

pub mod backoff;
pub mod balance;
pub mod breaker;
pub mod budget;
pub mod cache;
pub mod dispatch;
pub mod endpoint;
pub mod fault;
pub mod flags;
pub mod outlier;
mod proto_values;
pub mod replay;
pub mod retry;
pub mod route;
pub mod tcp_route;
#[cfg(test)]
pub(crate) mod test_util;
pub mod timeout;

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// Where the route layer sent a request: a service (by resource name, e.g.
/// `reviews.shop.svc.cluster.local:9080`) and optionally one of its subsets. Put in the request's
/// extensions by the route layer, read by the destination layer.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DestinationKey {
    pub service: Arc<str>,
    pub subset: Option<Arc<str>>,
}

/// Endpoints this request has already been sent to, oldest first. The retry layer puts one in
/// the request's extensions; the endpoint layer records each endpoint it sends to; the balancer
/// avoids them when another endpoint is available (Envoy's `previous_hosts` predicate).
#[derive(Clone, Debug, Default)]
pub struct PreviousHosts(Arc<Mutex<Vec<SocketAddr>>>);

// === impl PreviousHosts ===

impl PreviousHosts {
    pub fn record(&self, addr: SocketAddr) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(addr);
    }

    pub fn contains(&self, addr: &SocketAddr) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(addr)
    }

    pub fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Envoy's response flags (`%RESPONSE_FLAGS%`) a request collected on its way, kept in the
/// response's extensions for access logs and metrics; local replies also carry them in the
/// `sinew-response-flags` header.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ResponseFlags(u16);

// === impl ResponseFlags ===

impl ResponseFlags {
    /// Upstream overflow: a connection-pool limit (circuit breaker) tripped.
    pub const UO: Self = Self(1);
    /// Upstream connection failure.
    pub const UF: Self = Self(1 << 1);
    /// Upstream retry limit exceeded.
    pub const URX: Self = Self(1 << 2);
    /// No healthy upstream.
    pub const UH: Self = Self(1 << 3);
    /// No route.
    pub const NR: Self = Self(1 << 4);
    /// Upstream request timeout.
    pub const UT: Self = Self(1 << 5);
    /// Upstream connection termination.
    pub const UC: Self = Self(1 << 6);
    /// Fault-injected delay.
    pub const DI: Self = Self(1 << 7);
    /// Fault-injected abort.
    pub const FI: Self = Self(1 << 8);
    /// Downstream protocol error.
    pub const DPE: Self = Self(1 << 9);
    /// Upstream remote reset.
    pub const UR: Self = Self(1 << 10);
    /// Downstream connection termination: the client went away before the response ended.
    pub const DC: Self = Self(1 << 11);

    const NAMES: [(Self, &'static str); 12] = [
        (Self::UO, "UO"),
        (Self::UF, "UF"),
        (Self::URX, "URX"),
        (Self::UH, "UH"),
        (Self::NR, "NR"),
        (Self::UT, "UT"),
        (Self::UC, "UC"),
        (Self::DI, "DI"),
        (Self::FI, "FI"),
        (Self::DPE, "DPE"),
        (Self::UR, "UR"),
        (Self::DC, "DC"),
    ];

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn insert(&mut self, other: Self) {
        self.0 |= other.0;
    }

    /// The flag named `name` (`"UO"`), for turning [`crate::http::ProxyError`]'s flag into a value.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::NAMES
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(f, _)| *f)
    }
}

impl fmt::Display for ResponseFlags {
    /// Comma-separated, as Envoy writes them; `-` when empty.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("-");
        }
        let mut first = true;
        for (flag, name) in Self::NAMES {
            if self.contains(flag) {
                if !first {
                    f.write_str(",")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for ResponseFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ResponseFlags({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_print_in_envoys_order_comma_separated() {
        let mut flags = ResponseFlags::default();
        assert_eq!(flags.to_string(), "-");
        flags.insert(ResponseFlags::URX);
        flags.insert(ResponseFlags::UO);
        assert_eq!(flags.to_string(), "UO,URX");
        assert_eq!(ResponseFlags::from_name("URX"), Some(ResponseFlags::URX));
        assert_eq!(ResponseFlags::from_name("XX"), None);
    }
}
