//! Istio's standard label set: the part that is fixed for a (connection, peer) pair, resolved once
//! and shared by reference, and the checks every label value passes first.
//!
//! Promises:
//! - every value that reaches a label is non-empty, at most [`MAX_VALUE_LEN`] bytes of
//!   `[A-Za-z0-9._-]` (plus `:` and `/` in principals and `@`, `+` nowhere): anything else reads
//!   "unknown". So a value from the network can neither break the exposition format nor carry a
//!   second series in its bytes;
//! - [`Interner::intern`] returns one `Arc` per distinct label set, at most `cap` of them; past
//!   the cap it returns the reporter's overflow set (peer labels "unknown") and counts it. Series
//!   keys compare label sets by pointer, so a request hashes a few words, not thirty strings.

use super::{UNKNOWN, Workload};
use prometheus_client::encoding::{EncodeLabelSet, LabelSetEncoder};
use prometheus_client::metrics::counter::Counter;
use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

/// Longest label value kept (a DNS name's length); longer values read "unknown".
pub const MAX_VALUE_LEN: usize = 253;

/// Istio's `source_cluster` / `destination_cluster` for a single-cluster mesh (Istio's default
/// cluster id).
pub const CLUSTER: &str = "Kubernetes";

/// `s` if it is a valid label value, else `None`.
pub fn value(s: &str) -> Option<&str> {
    valid(s, |c| {
        c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-')
    })
    .then_some(s)
}

/// `s` if it is a valid SPIFFE principal (`spiffe://` followed by label characters and `/`).
pub fn principal(s: &str) -> Option<&str> {
    let ok = s.starts_with("spiffe://")
        && valid(&s[9..], |c| {
            c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-' | b'/' | b':')
        });
    ok.then_some(s)
}

fn valid(s: &str, allowed: impl Fn(u8) -> bool) -> bool {
    !s.is_empty() && s.len() <= MAX_VALUE_LEN && s.bytes().all(allowed)
}

/// `s` as a label value, "unknown" when invalid or empty.
pub fn value_or_unknown(s: &str) -> Arc<str> {
    Arc::from(value(s).unwrap_or(UNKNOWN))
}

/// `s` as a principal label, "unknown" when invalid or empty.
pub fn principal_or_unknown(s: &str) -> Arc<str> {
    Arc::from(principal(s).unwrap_or(UNKNOWN))
}

/// Which side reports: `source` is the client's proxy (outbound), `destination` the server's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reporter {
    Source,
    Destination,
}

impl Reporter {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Source => "source",
            Self::Destination => "destination",
        }
    }
}

/// `connection_security_policy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Security {
    MutualTls,
    None,
    Unknown,
}

impl Security {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MutualTls => "mutual_tls",
            Self::None => "none",
            Self::Unknown => UNKNOWN,
        }
    }
}

/// The destination service as Istio labels it: the FQDN and its name and namespace.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DestinationService {
    pub host: Arc<str>,
    pub name: Arc<str>,
    pub namespace: Arc<str>,
}

impl DestinationService {
    pub fn unknown() -> Self {
        let u: Arc<str> = Arc::from(UNKNOWN);
        Self {
            host: u.clone(),
            name: u.clone(),
            namespace: u,
        }
    }

    /// From a service host: `reviews.default.svc.cluster.local` is name `reviews` in namespace
    /// `default`; a host that is not a cluster service name is its own name, namespace unknown.
    pub fn from_host(host: &str) -> Self {
        let Some(host) = value(host) else {
            return Self::unknown();
        };
        let mut parts = host.splitn(3, '.');
        let (name, ns, rest) = (parts.next(), parts.next(), parts.next());
        let (name, namespace) = match (name, ns, rest) {
            (Some(n), Some(ns), Some(rest)) if rest == "svc" || rest.starts_with("svc.") => (n, ns),
            _ => (host, UNKNOWN),
        };
        Self {
            host: Arc::from(host),
            name: Arc::from(name),
            namespace: Arc::from(namespace),
        }
    }
}

/// The labels fixed for one (connection, peer): everything but the per-request ones
/// (`request_protocol`, `response_code`, `grpc_response_status`, `response_flags`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Labels {
    pub reporter: Reporter,
    pub source: Workload,
    pub source_principal: Arc<str>,
    pub destination: Workload,
    pub destination_principal: Arc<str>,
    pub destination_service: DestinationService,
    pub security: Security,
}

impl Labels {
    /// The set whose peer labels are all "unknown": where the series past the cap go.
    pub fn overflow(reporter: Reporter) -> Self {
        Self {
            reporter,
            source: Workload::unknown(),
            source_principal: Arc::from(UNKNOWN),
            destination: Workload::unknown(),
            destination_principal: Arc::from(UNKNOWN),
            destination_service: DestinationService::unknown(),
            security: Security::Unknown,
        }
    }

    /// Writes the labels in Istio's order.
    pub fn encode(&self, e: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        let (s, d) = (&self.source, &self.destination);
        let svc = &self.destination_service;
        [
            ("reporter", self.reporter.as_str()),
            ("source_workload", &*s.name),
            ("source_canonical_service", &*s.canonical_service),
            ("source_canonical_revision", &*s.canonical_revision),
            ("source_workload_namespace", &*s.namespace),
            ("source_principal", &*self.source_principal),
            ("source_app", &*s.app),
            ("source_version", &*s.version),
            ("source_cluster", CLUSTER),
            ("destination_workload", &*d.name),
            ("destination_workload_namespace", &*d.namespace),
            ("destination_principal", &*self.destination_principal),
            ("destination_app", &*d.app),
            ("destination_version", &*d.version),
            ("destination_service", &*svc.host),
            ("destination_canonical_service", &*d.canonical_service),
            ("destination_canonical_revision", &*d.canonical_revision),
            ("destination_service_name", &*svc.name),
            ("destination_service_namespace", &*svc.namespace),
            ("destination_cluster", CLUSTER),
            ("connection_security_policy", self.security.as_str()),
        ]
        .encode(e)
    }
}

/// A label set compared and hashed by identity: [`Interner`] makes identity and equality agree.
#[derive(Clone, Debug)]
pub struct Shared(pub Arc<Labels>);

impl PartialEq for Shared {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Shared {}

impl Hash for Shared {
    fn hash<H: Hasher>(&self, state: &mut H) {
        std::ptr::hash(Arc::as_ptr(&self.0), state)
    }
}

impl EncodeLabelSet for Shared {
    fn encode(&self, e: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        self.0.encode(e)
    }
}

/// One `Arc` per distinct label set, at most `cap` of them.
pub struct Interner {
    sets: Mutex<HashSet<Arc<Labels>, foldhash::fast::RandomState>>,
    cap: usize,
    overflow: [Arc<Labels>; 2],
    overflowed: Counter,
}

// === impl Interner ===

impl Interner {
    pub fn new(cap: usize, overflowed: Counter) -> Self {
        Self {
            sets: Mutex::new(HashSet::default()),
            cap,
            overflow: [
                Arc::new(Labels::overflow(Reporter::Source)),
                Arc::new(Labels::overflow(Reporter::Destination)),
            ],
            overflowed,
        }
    }

    /// The shared copy of `labels`; the overflow set when `cap` sets exist already.
    pub fn intern(&self, labels: Labels) -> Shared {
        let mut sets = self.sets.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(l) = sets.get(&labels) {
            return Shared(l.clone());
        }
        if sets.len() >= self.cap {
            self.overflowed.inc();
            return self.overflow_set(labels.reporter);
        }
        let l = Arc::new(labels);
        sets.insert(l.clone());
        Shared(l)
    }

    /// The reporter's overflow set (peer labels "unknown").
    pub fn overflow_set(&self, reporter: Reporter) -> Shared {
        Shared(self.overflow[reporter as usize].clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_from_the_network_are_checked() {
        assert_eq!(value("reviews-v1"), Some("reviews-v1"));
        for bad in [
            "",
            "a\"b",
            "a\nb",
            "a b",
            "a\\b",
            "ü",
            "a}b",
            &"x".repeat(MAX_VALUE_LEN + 1),
        ] {
            assert_eq!(value(bad), None, "{bad:?}");
            assert_eq!(&*value_or_unknown(bad), "unknown");
        }
        assert!(principal("spiffe://cluster.local/ns/default/sa/bookinfo").is_some());
        assert_eq!(principal("spiffe://cluster.local/ns/a\"b"), None);
        assert_eq!(principal("http://x/ns/a/sa/b"), None);
    }

    #[test]
    fn a_cluster_service_host_splits_into_name_and_namespace() {
        let s = DestinationService::from_host("reviews.default.svc.cluster.local");
        assert_eq!((&*s.name, &*s.namespace), ("reviews", "default"));
        let s = DestinationService::from_host("api.example.com");
        assert_eq!(
            (&*s.host, &*s.name, &*s.namespace),
            ("api.example.com", "api.example.com", "unknown")
        );
        let s = DestinationService::from_host("bad host");
        assert_eq!(&*s.host, "unknown");
    }

    #[test]
    fn interning_gives_one_arc_per_set_and_overflows_past_the_cap() {
        let overflowed = Counter::default();
        let i = Interner::new(2, overflowed.clone());
        let set = |ns: &str| Labels {
            source: Workload {
                namespace: Arc::from(ns),
                ..Workload::unknown()
            },
            ..Labels::overflow(Reporter::Source)
        };
        let a = i.intern(set("a"));
        assert_eq!(a, i.intern(set("a")));
        let b = i.intern(set("b"));
        assert_ne!(a, b);
        let c = i.intern(set("c"));
        assert_eq!(c, i.overflow_set(Reporter::Source));
        assert_eq!(&*c.0.source.namespace, "unknown");
        assert_eq!(overflowed.get(), 1);
        // Sets already known still resolve.
        assert_eq!(a, i.intern(set("a")));
    }
}
