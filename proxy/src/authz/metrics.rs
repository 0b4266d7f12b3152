//! `sinew_authz_decisions_total`: every authorization decision by policy, rule and outcome.
//!
//! Label values come from config (policy names, rule indices), never from requests, so the
//! series are bounded by the policies in force. A counter is resolved once per rule and config
//! (the family's lock is taken once), then only incremented.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Labels {
    /// "namespace/name", or "none" when no policy matched.
    policy: String,
    /// The rule's index in the policy; empty with policy "none".
    rule: String,
    /// allowed, denied or audited.
    decision: &'static str,
    dry_run: &'static str,
}

/// The decision counters, registered with the proxy's metrics.
#[derive(Clone, Debug, Default)]
pub struct AuthzMetrics {
    family: Family<Labels, Counter>,
}

// === impl AuthzMetrics ===

impl AuthzMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "authz_decisions",
            "Authorization decisions on inbound requests and TCP connections, by the policy and \
             rule that decided (policy \"none\": no ALLOW policy matched, or none exists), \
             outcome (allowed, denied, audited) and whether the policy is a dry run",
            m.family.clone(),
        );
        m
    }

    pub(super) fn counter(
        &self,
        policy: &str,
        rule: Option<usize>,
        decision: &'static str,
        dry_run: bool,
    ) -> Counter {
        self.family
            .get_or_create(&Labels {
                policy: policy.to_owned(),
                rule: rule.map(|r| r.to_string()).unwrap_or_default(),
                decision,
                dry_run: if dry_run { "true" } else { "false" },
            })
            .clone()
    }
}
