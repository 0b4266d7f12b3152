//! Which AuthorizationPolicies apply to a workload, compiled to `sinew.config.v1.Authorization`
//! for its proxy to enforce.
//!
//! Scope is Istio's:
//! - in the root namespace (`--root-namespace`), a policy without a selector applies to every
//!   workload of the mesh, and one with a selector to the matching workloads of every namespace;
//! - elsewhere, a policy without a selector applies to every workload of its namespace, and one
//!   with a selector to the matching workloads there;
//! - `targetRef(s)` to a `Service` of the policy's namespace applies to the pods that Service
//!   selects (a Sinew extension: Istio attaches those to waypoints); other kinds (gateways,
//!   ServiceEntries) apply to nothing, as Sinew runs neither gateways nor waypoints.
//!
//! Promise: every workload gets an `Authorization`, empty when no policy applies (so removing
//! the last one lifts it); its policies are sorted by `namespace/name`, each compiled once per
//! snapshot and shared by every workload it applies to.

use std::collections::BTreeMap;

use sinew_proto::config::v1 as pb;

use crate::registry::istio::authorization_policy::{
    AuthorizationAction, Condition, Operation, Rule, Source,
};
use crate::registry::{AuthorizationPolicy, Snapshot};

/// Which workloads one policy applies to.
#[derive(Debug, Clone, PartialEq)]
struct Scope {
    /// `None`: every namespace (a root-namespace policy).
    namespace: Option<String>,
    /// `None`: every workload in scope; otherwise those whose labels include one of these
    /// (none at all: the policy applies to nothing).
    selectors: Option<Vec<BTreeMap<String, String>>>,
}

/// The AuthorizationPolicies of one snapshot, compiled, with their scopes.
#[derive(Debug, Default, PartialEq)]
pub struct AuthorizationRules {
    /// Sorted by name (`namespace/name`).
    policies: Vec<(Scope, pb::AuthorizationPolicy)>,
    /// Policies that are accepted and apply to nothing (a target Service that does not exist).
    warnings: Vec<String>,
}

// === impl AuthorizationRules ===

impl AuthorizationRules {
    pub fn new(snapshot: &Snapshot, root_namespace: &str) -> Self {
        let mut rules = Self::default();
        for p in snapshot.authorization_policies() {
            let scope = rules.scope(snapshot, p, root_namespace);
            rules.policies.push((scope, compile(p)));
        }
        rules.policies.sort_by(|a, b| a.1.name.cmp(&b.1.name));
        rules
    }

    fn scope(&mut self, snapshot: &Snapshot, p: &AuthorizationPolicy, root: &str) -> Scope {
        let targets: Vec<_> = p.target_refs().collect();
        if !targets.is_empty() {
            let mut selectors = Vec::new();
            for t in targets {
                let core = matches!(t.group.as_deref(), None | Some("" | "core"));
                if !core || t.kind.as_deref() != Some("Service") {
                    continue; // Validation warned: gateways and ServiceEntries select no pods.
                }
                let name = t.name.as_deref().unwrap_or_default();
                match snapshot.service(&p.namespace, name) {
                    Some(svc) => selectors.extend(svc.selector.clone()),
                    None => self.warnings.push(format!(
                        "{}: AuthorizationPolicy {:?}: targetRef Service {name:?} does not exist in namespace {:?}; the policy applies to no workload until it does",
                        p.origin, p.name, p.namespace
                    )),
                }
            }
            // An empty Service selector selects no pod (Kubernetes' rule).
            selectors.retain(|s| !s.is_empty());
            return Scope {
                namespace: Some(p.namespace.clone()),
                selectors: Some(selectors),
            };
        }
        Scope {
            namespace: (p.namespace != root).then(|| p.namespace.clone()),
            selectors: p.match_labels().map(|m| vec![m.clone()]),
        }
    }

    /// The policies that apply to a workload in `namespace` whose pod has `labels`.
    pub fn authorization(
        &self,
        namespace: &str,
        labels: &BTreeMap<String, String>,
    ) -> pb::Authorization {
        let applies = |scope: &Scope| {
            scope.namespace.as_deref().is_none_or(|ns| ns == namespace)
                && scope.selectors.as_ref().is_none_or(|all| {
                    all.iter()
                        .any(|s| s.iter().all(|(k, v)| labels.get(k) == Some(v)))
                })
        };
        pb::Authorization {
            policies: self
                .policies
                .iter()
                .filter(|(scope, _)| applies(scope))
                .map(|(_, policy)| policy.clone())
                .collect(),
        }
    }

    /// What was accepted and applies to nothing.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }
}

/// The policy as the proxy reads it. Validation refused everything the proxy cannot enforce
/// (CUSTOM, JWT principals and conditions), so nothing here is dropped.
fn compile(p: &AuthorizationPolicy) -> pb::AuthorizationPolicy {
    let action = match p.spec.action.unwrap_or(AuthorizationAction::ALLOW) {
        AuthorizationAction::DENY => pb::AuthorizationAction::Deny,
        AuthorizationAction::AUDIT => pb::AuthorizationAction::Audit,
        AuthorizationAction::ALLOW | AuthorizationAction::CUSTOM => pb::AuthorizationAction::Allow,
    };
    pb::AuthorizationPolicy {
        name: format!("{}/{}", p.namespace, p.name),
        action: action as i32,
        dry_run: p.dry_run,
        rules: p.spec.rules.iter().flatten().map(rule).collect(),
    }
}

fn rule(r: &Rule) -> pb::AuthorizationRule {
    pb::AuthorizationRule {
        from: r
            .from
            .iter()
            .flatten()
            .filter_map(|f| f.source.as_ref())
            .map(source)
            .collect(),
        to: r
            .to
            .iter()
            .flatten()
            .filter_map(|t| t.operation.as_ref())
            .map(operation)
            .collect(),
        when: r.when.iter().flatten().map(condition).collect(),
    }
}

fn list(values: &Option<Vec<String>>) -> Vec<String> {
    values.clone().unwrap_or_default()
}

fn source(s: &Source) -> pb::AuthorizationSource {
    pb::AuthorizationSource {
        principals: list(&s.principals),
        not_principals: list(&s.not_principals),
        namespaces: list(&s.namespaces),
        not_namespaces: list(&s.not_namespaces),
        service_accounts: list(&s.service_accounts),
        not_service_accounts: list(&s.not_service_accounts),
        // Istio's Source has no trust domains; the proto keeps room for them.
        trust_domains: Vec::new(),
        not_trust_domains: Vec::new(),
        ip_blocks: list(&s.ip_blocks),
        not_ip_blocks: list(&s.not_ip_blocks),
        remote_ip_blocks: list(&s.remote_ip_blocks),
        not_remote_ip_blocks: list(&s.not_remote_ip_blocks),
    }
}

fn operation(o: &Operation) -> pb::AuthorizationOperation {
    pb::AuthorizationOperation {
        hosts: list(&o.hosts),
        not_hosts: list(&o.not_hosts),
        ports: list(&o.ports),
        not_ports: list(&o.not_ports),
        methods: list(&o.methods),
        not_methods: list(&o.not_methods),
        paths: list(&o.paths),
        not_paths: list(&o.not_paths),
    }
}

fn condition(c: &Condition) -> pb::AuthorizationCondition {
    pb::AuthorizationCondition {
        key: c.key.clone().unwrap_or_default(),
        values: list(&c.values),
        not_values: list(&c.not_values),
    }
}

#[cfg(test)]
mod tests;
