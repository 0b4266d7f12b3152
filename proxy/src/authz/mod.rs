//! Inbound authorization: Istio's AuthorizationPolicy, evaluated for every request and every
//! opaque TCP connection to this workload.
//!
//! Istio's order ([`Authorizer::decide`]): a matching DENY policy denies; with no ALLOW policy
//! the request is allowed; a matching ALLOW policy allows it; anything else is denied. AUDIT
//! policies are logged and counted. Dry-run policies (`istio.io/dry-run`) are the same
//! algorithm over themselves only: logged and counted as `dry_run_*`, never enforced.
//!
//! A TCP connection has no host, method, path or headers: an ALLOW (or AUDIT) rule that needs
//! one of them does not match it, and a DENY rule is applied without them, as Istio's sidecars
//! do (both err on the side of denying).
//!
//! The policies are compiled once per config ([`Authorizer::compile`]): patterns parsed, IP
//! blocks read, ports numbered. An empty `Authorizer` costs a request one branch.

pub mod layer;
pub mod matcher;
mod metrics;
pub mod path;
mod rule;

#[cfg(test)]
mod tests;

pub use self::layer::Authorize;
pub use self::metrics::AuthzMetrics;

use self::rule::Rule;
use http::HeaderMap;
use prometheus_client::metrics::counter::Counter;
use sinew_proto::config::v1 as pb;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

/// Who is calling and where, as the connection tells it.
#[derive(Clone, Debug)]
pub struct Source {
    /// The verified peer identity without `spiffe://` (`cluster.local/ns/a/sa/b`); `None` for
    /// plaintext.
    pub principal: Option<Arc<str>>,
    /// Where the principal splits into `<td>/ns/<ns>/sa/<sa>`, read once per connection rather
    /// than per rule: (end of the trust domain, start and end of the namespace, start of the
    /// service account).
    parts: Option<[usize; 4]>,
    /// The connection's peer address.
    pub ip: IpAddr,
    /// The address the client reached (the pod IP under interception).
    pub destination_ip: Option<IpAddr>,
    /// The SNI of the mesh TLS handshake, if the client sent one.
    pub sni: Option<Arc<str>>,
}

// === impl Source ===

impl Source {
    pub fn new(identity: Option<&str>, ip: IpAddr, destination_ip: Option<IpAddr>) -> Self {
        let principal: Option<Arc<str>> =
            identity.map(|id| Arc::from(id.strip_prefix("spiffe://").unwrap_or(id)));
        let parts = principal.as_deref().and_then(|p| {
            let td_end = p.find("/ns/")?;
            let ns_start = td_end + "/ns/".len();
            let ns_len = p[ns_start..].find("/sa/")?;
            Some([
                td_end,
                ns_start,
                ns_start + ns_len,
                ns_start + ns_len + "/sa/".len(),
            ])
        });
        Self {
            principal,
            parts,
            ip,
            destination_ip,
            sni: None,
        }
    }

    /// `<td>/ns/<namespace>/sa/<sa>`: the namespace.
    fn namespace(&self) -> Option<&str> {
        self.service_account().map(|(ns, _)| ns)
    }

    /// `<namespace>/<sa>`, for `serviceAccounts`.
    fn service_account(&self) -> Option<(&str, &str)> {
        let (p, [_, ns, ns_end, sa]) = (self.principal.as_deref()?, self.parts?);
        Some((&p[ns..ns_end], &p[sa..]))
    }

    fn trust_domain(&self) -> Option<&str> {
        let (p, [td_end, ..]) = (self.principal.as_deref()?, self.parts?);
        Some(&p[..td_end])
    }
}

/// What a request adds to its connection's [`Source`]: everything HTTP-only.
#[derive(Clone, Copy, Debug)]
pub struct HttpAttrs<'a> {
    pub host: Option<&'a str>,
    pub method: &'a str,
    /// Normalised, without the query.
    pub path: &'a str,
    pub headers: &'a HeaderMap,
}

/// One check: the connection's source, the workload port, and the request if it is HTTP.
#[derive(Clone, Copy, Debug)]
pub struct Check<'a> {
    pub source: &'a Source,
    pub port: u16,
    pub http: Option<HttpAttrs<'a>>,
}

/// The outcome, and what decided it.
#[derive(Clone, Copy, Debug)]
pub struct Verdict<'p> {
    pub allowed: bool,
    /// The policy and rule that decided; `None` when no policy matched (allowed because no
    /// ALLOW policy exists, or denied because none matched).
    by: Option<(&'p Policy, usize)>,
}

// === impl Verdict ===

impl<'p> Verdict<'p> {
    /// "namespace/name" of the deciding policy and the rule's index.
    pub fn policy(&self) -> Option<(&'p str, usize)> {
        self.by.map(|(p, i)| (&*p.name, i))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    Allow,
    Deny,
    Audit,
}

impl Action {
    fn decision(self) -> &'static str {
        match self {
            Self::Allow => "allowed",
            Self::Deny => "denied",
            Self::Audit => "audited",
        }
    }
}

#[derive(Debug)]
struct Policy {
    name: Arc<str>,
    action: Action,
    dry_run: bool,
    rules: Vec<Rule>,
    /// Per rule: its decisions' counter, resolved on first use.
    counters: Box<[OnceLock<Counter>]>,
}

// === impl Policy ===

impl Policy {
    fn count(&self, rule: usize, metrics: &AuthzMetrics) {
        self.counters[rule]
            .get_or_init(|| {
                metrics.counter(&self.name, Some(rule), self.action.decision(), self.dry_run)
            })
            .inc();
    }
}

/// The policies of one set (enforced, or dry-run), by action.
#[derive(Debug, Default)]
struct PolicySet {
    deny: Vec<Policy>,
    allow: Vec<Policy>,
    audit: Vec<Policy>,
    /// Decisions no policy made: [allowed, denied].
    unmatched: [OnceLock<Counter>; 2],
}

/// The workload's compiled AuthorizationPolicies.
#[derive(Debug, Default)]
pub struct Authorizer {
    enforced: PolicySet,
    dry_run: PolicySet,
}

// === impl Authorizer ===

impl Authorizer {
    /// Compiles `msg`; an error names the policy, rule and field.
    pub fn compile(msg: &pb::Authorization) -> Result<Self, String> {
        let mut out = Self::default();
        for p in &msg.policies {
            let action = match pb::AuthorizationAction::try_from(p.action) {
                Ok(pb::AuthorizationAction::Allow) => Action::Allow,
                Ok(pb::AuthorizationAction::Deny) => Action::Deny,
                Ok(pb::AuthorizationAction::Audit) => Action::Audit,
                Err(_) => return Err(format!("policy {:?}: unknown action {}", p.name, p.action)),
            };
            let rules = p
                .rules
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    Rule::compile(r).map_err(|e| format!("policy {:?} rules[{i}]: {e}", p.name))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let policy = Policy {
                name: Arc::from(p.name.as_str()),
                action,
                dry_run: p.dry_run,
                counters: rules.iter().map(|_| OnceLock::new()).collect(),
                rules,
            };
            let set = if p.dry_run {
                &mut out.dry_run
            } else {
                &mut out.enforced
            };
            match action {
                Action::Allow => set.allow.push(policy),
                Action::Deny => set.deny.push(policy),
                Action::Audit => set.audit.push(policy),
            }
        }
        Ok(out)
    }

    /// No policy at all: every request is allowed, nothing is counted, paths are left as sent.
    pub fn is_empty(&self) -> bool {
        self.enforced.is_empty() && self.dry_run.is_empty()
    }

    /// Istio's evaluation of the enforced policies; audit and dry-run policies are evaluated,
    /// logged and counted on the side. Every decision is counted and logged (denials at info).
    pub fn decide(&self, check: &Check<'_>, metrics: &AuthzMetrics) -> Verdict<'_> {
        let verdict = self.enforced.decide(check);
        if self.is_empty() {
            return verdict;
        }
        self.enforced.count(&verdict, metrics, false);
        report(&verdict, check, false);
        for p in &self.enforced.audit {
            if let Some(rule) = p.rules.iter().position(|r| r.matches(check, false)) {
                p.count(rule, metrics);
                tracing::info!(
                    policy = &*p.name,
                    rule,
                    principal = principal(check),
                    source = %check.source.ip,
                    port = check.port,
                    "AUDIT: request matched"
                );
            }
        }
        if !self.dry_run.is_empty() {
            let shadow = self.dry_run.decide(check);
            self.dry_run.count(&shadow, metrics, true);
            report(&shadow, check, true);
        }
        verdict
    }
}

/// Whether an opaque TCP connection from `source` to workload port `port` may proceed (decided,
/// logged and counted like a request, without HTTP attributes).
pub fn allows_tcp(authz: &Authorizer, source: &Source, port: u16, metrics: &AuthzMetrics) -> bool {
    if authz.is_empty() {
        return true;
    }
    let check = Check {
        source,
        port,
        http: None,
    };
    authz.decide(&check, metrics).allowed
}

fn principal<'a>(check: &Check<'a>) -> &'a str {
    check.source.principal.as_deref().unwrap_or("-")
}

fn report(v: &Verdict<'_>, check: &Check<'_>, dry_run: bool) {
    let (policy, rule) = match v.policy() {
        Some((p, r)) => (p, Some(r)),
        None => ("none", None),
    };
    let (method, path) = check.http.map_or(("-", "-"), |h| (h.method, h.path));
    let principal = principal(check);
    let (source, port) = (check.source.ip, check.port);
    if v.allowed {
        tracing::debug!(dry_run, policy, rule, principal, %source, port, method, path, "RBAC: allowed");
    } else if dry_run {
        tracing::info!(policy, rule, principal, %source, port, method, path, "RBAC (dry run): would deny");
    } else {
        tracing::info!(policy, rule, principal, %source, port, method, path, "RBAC: access denied");
    }
}

// === impl PolicySet ===

impl PolicySet {
    fn is_empty(&self) -> bool {
        self.deny.is_empty() && self.allow.is_empty() && self.audit.is_empty()
    }

    fn decide(&self, check: &Check<'_>) -> Verdict<'_> {
        if let Some(by) = first_match(&self.deny, check) {
            return Verdict {
                allowed: false,
                by: Some(by),
            };
        }
        if self.allow.is_empty() {
            return Verdict {
                allowed: true,
                by: None,
            };
        }
        let by = first_match(&self.allow, check);
        Verdict {
            allowed: by.is_some(),
            by,
        }
    }

    fn count(&self, v: &Verdict<'_>, metrics: &AuthzMetrics, dry_run: bool) {
        match v.by {
            Some((policy, rule)) => policy.count(rule, metrics),
            None => {
                let (slot, decision) = match v.allowed {
                    true => (0, "allowed"),
                    false => (1, "denied"),
                };
                self.unmatched[slot]
                    .get_or_init(|| metrics.counter("none", None, decision, dry_run))
                    .inc();
            }
        }
    }
}

fn first_match<'p>(policies: &'p [Policy], check: &Check<'_>) -> Option<(&'p Policy, usize)> {
    policies.iter().find_map(|p| {
        let deny = p.action == Action::Deny;
        p.rules
            .iter()
            .position(|r| r.matches(check, deny))
            .map(|i| (p, i))
    })
}
