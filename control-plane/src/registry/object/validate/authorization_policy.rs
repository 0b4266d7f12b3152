//! Value checks of Istio's `AuthorizationPolicy`, as istiod's webhook makes them
//! (`ValidateAuthorizationPolicy`): one of `selector` or `targetRef(s)`, non-empty `from`/`to`
//! entries, `serviceAccounts` apart from principals and namespaces, ports 1–65535, IPs and CIDRs
//! that parse, path wildcards and templates Sinew's proxy matches exactly, and `when` keys it can
//! evaluate. What Sinew cannot enforce is refused by name rather than dropped: a policy enforced
//! without one of its clauses would allow (or deny) more than its author wrote.

use std::net::IpAddr;

use super::{Report, labels};
use crate::registry::istio::authorization_policy::{
    AuthorizationAction, AuthorizationPolicySpec, Condition, Operation, PolicyTargetReference,
    Source,
};

/// Istio's dry-run annotation: evaluated and logged, never enforced.
pub(crate) const DRY_RUN_ANNOTATION: &str = "istio.io/dry-run";

/// The `when` keys the proxy evaluates (besides `request.headers[<name>]`).
pub(crate) const CONDITION_KEYS: &[&str] = &[
    "source.ip",
    "remote.ip",
    "source.namespace",
    "source.principal",
    "destination.ip",
    "destination.port",
    "connection.sni",
];

const NO_REQUEST_AUTHENTICATION: &str = "JWT request principals are not supported by Sinew: it has no RequestAuthentication to verify them";

pub(crate) fn authorization_policy(spec: &AuthorizationPolicySpec, namespace: &str) -> Report {
    let mut r = Report::default();
    if let Some(sel) = &spec.selector {
        labels(
            &mut r,
            "spec.selector.matchLabels",
            sel.match_labels.as_ref(),
        );
    }
    let refs: Vec<(String, &PolicyTargetReference)> = spec
        .target_ref
        .iter()
        .map(|t| ("spec.targetRef".to_string(), t))
        .chain(
            spec.target_refs
                .iter()
                .flatten()
                .enumerate()
                .map(|(i, t)| (format!("spec.targetRefs[{i}]"), t)),
        )
        .collect();
    if spec.selector.is_some() && !refs.is_empty() {
        r.error(
            "spec.selector",
            "only one of selector or targetRef/targetRefs may be set",
        );
    }
    if spec.target_ref.is_some() && spec.target_refs.as_ref().is_some_and(|t| !t.is_empty()) {
        r.error(
            "spec.targetRef",
            "only one of targetRef or targetRefs may be set",
        );
    }
    for (path, target) in &refs {
        target_ref(&mut r, path, target, namespace);
    }
    match spec.action {
        Some(AuthorizationAction::CUSTOM) => r.error(
            "spec.action",
            "CUSTOM (external authorization) is not supported by Sinew",
        ),
        _ if spec.provider.is_some() => r.error(
            "spec.provider",
            "may only be set with action CUSTOM (which Sinew does not support)",
        ),
        _ => {}
    }
    for (i, rule) in spec.rules.iter().flatten().enumerate() {
        let at = format!("spec.rules[{i}]");
        if let Some(from) = &rule.from {
            if from.is_empty() {
                r.error(
                    format!("{at}.from"),
                    "must not be empty when set (leave it out to match any source)",
                );
            }
            for (j, f) in from.iter().enumerate() {
                let path = format!("{at}.from[{j}].source");
                match &f.source {
                    None => r.error(path, "is required"),
                    Some(s) if is_empty_source(s) => r.error(path, "must set at least one field"),
                    Some(s) => source(&mut r, &path, s),
                }
            }
        }
        if let Some(to) = &rule.to {
            if to.is_empty() {
                r.error(
                    format!("{at}.to"),
                    "must not be empty when set (leave it out to match any operation)",
                );
            }
            for (j, t) in to.iter().enumerate() {
                let path = format!("{at}.to[{j}].operation");
                match &t.operation {
                    None => r.error(path, "is required"),
                    Some(o) if is_empty_operation(o) => {
                        r.error(path, "must set at least one field")
                    }
                    Some(o) => operation(&mut r, &path, o),
                }
            }
        }
        for (j, c) in rule.when.iter().flatten().enumerate() {
            condition(&mut r, &format!("{at}.when[{j}]"), c);
        }
    }
    r
}

/// Whether `istio.io/dry-run` says so; `Err` when it is not a boolean (Go's `ParseBool`).
pub(crate) fn dry_run(value: Option<&str>) -> Result<bool, String> {
    match value {
        None => Ok(false),
        Some("1" | "t" | "T" | "true" | "TRUE" | "True") => Ok(true),
        Some("0" | "f" | "F" | "false" | "FALSE" | "False") => Ok(false),
        Some(other) => Err(format!(
            "metadata.annotations.{DRY_RUN_ANNOTATION}: must be \"true\" or \"false\", not {other:?}"
        )),
    }
}

/// The target kinds Istio accepts; only a core `Service` selects pods here.
fn target_ref(r: &mut Report, path: &str, t: &PolicyTargetReference, namespace: &str) {
    let group = t.group.as_deref().unwrap_or_default();
    let kind = t.kind.as_deref().unwrap_or_default();
    if kind.is_empty() {
        r.error(format!("{path}.kind"), "is required");
    }
    if t.name.as_deref().unwrap_or_default().is_empty() {
        r.error(format!("{path}.name"), "is required");
    }
    if let Some(ns) = t
        .namespace
        .as_deref()
        .filter(|ns| !ns.is_empty() && *ns != namespace)
    {
        r.error(
            format!("{path}.namespace"),
            format!("must be the policy's own namespace {namespace:?}, not {ns:?}"),
        );
    }
    match (group, kind) {
        (_, "") => {}
        ("" | "core", "Service") => {}
        ("gateway.networking.k8s.io", "Gateway" | "GatewayClass")
        | ("networking.istio.io", "ServiceEntry") => r.warn(
            path,
            format!(
                "{kind} targets apply to nothing in Sinew, which runs no gateways or waypoints; only Services of the policy's namespace select pods"
            ),
        ),
        _ => r.error(
            path,
            format!(
                "group {group:?} kind {kind:?} cannot be targeted; supported: Service (core), and gateway.networking.k8s.io Gateway and GatewayClass, networking.istio.io ServiceEntry"
            ),
        ),
    }
}

fn is_empty_source(s: &Source) -> bool {
    [
        &s.principals,
        &s.not_principals,
        &s.request_principals,
        &s.not_request_principals,
        &s.namespaces,
        &s.not_namespaces,
        &s.service_accounts,
        &s.not_service_accounts,
        &s.ip_blocks,
        &s.not_ip_blocks,
        &s.remote_ip_blocks,
        &s.not_remote_ip_blocks,
    ]
    .iter()
    .all(|f| f.as_ref().is_none_or(Vec::is_empty))
}

fn is_empty_operation(o: &Operation) -> bool {
    [
        &o.hosts,
        &o.not_hosts,
        &o.ports,
        &o.not_ports,
        &o.methods,
        &o.not_methods,
        &o.paths,
        &o.not_paths,
    ]
    .iter()
    .all(|f| f.as_ref().is_none_or(Vec::is_empty))
}

fn set(values: &Option<Vec<String>>) -> bool {
    values.as_ref().is_some_and(|v| !v.is_empty())
}

fn source(r: &mut Report, path: &str, s: &Source) {
    for (field, values) in [
        ("requestPrincipals", &s.request_principals),
        ("notRequestPrincipals", &s.not_request_principals),
    ] {
        if set(values) {
            r.error(format!("{path}.{field}"), NO_REQUEST_AUTHENTICATION);
        }
    }
    let accounts = set(&s.service_accounts) || set(&s.not_service_accounts);
    let others = set(&s.principals)
        || set(&s.not_principals)
        || set(&s.namespaces)
        || set(&s.not_namespaces);
    if accounts && others {
        let field = match set(&s.service_accounts) {
            true => "serviceAccounts",
            false => "notServiceAccounts",
        };
        r.error(
            format!("{path}.{field}"),
            "cannot be combined with principals or namespaces in one source",
        );
    }
    for (field, values) in [
        ("serviceAccounts", &s.service_accounts),
        ("notServiceAccounts", &s.not_service_accounts),
    ] {
        for (k, v) in values.iter().flatten().enumerate() {
            let well_formed = v
                .split_once('/')
                .is_some_and(|(ns, sa)| !ns.is_empty() && !sa.is_empty() && !sa.contains('/'));
            if !well_formed {
                r.error(
                    format!("{path}.{field}[{k}]"),
                    format!("{v:?} is not of the form namespace/serviceaccount"),
                );
            }
        }
    }
    for (field, values) in [
        ("ipBlocks", &s.ip_blocks),
        ("notIpBlocks", &s.not_ip_blocks),
        ("remoteIpBlocks", &s.remote_ip_blocks),
        ("notRemoteIpBlocks", &s.not_remote_ip_blocks),
    ] {
        for (k, v) in values.iter().flatten().enumerate() {
            if !is_ip_or_cidr(v) {
                r.error(
                    format!("{path}.{field}[{k}]"),
                    format!("{v:?} is not an IP address or CIDR"),
                );
            }
        }
    }
}

fn operation(r: &mut Report, path: &str, o: &Operation) {
    for (field, values) in [("ports", &o.ports), ("notPorts", &o.not_ports)] {
        for (k, v) in values.iter().flatten().enumerate() {
            if !is_port(v) {
                r.error(
                    format!("{path}.{field}[{k}]"),
                    format!("{v:?} is not a port number (1-65535)"),
                );
            }
        }
    }
    for (field, values) in [("paths", &o.paths), ("notPaths", &o.not_paths)] {
        for (k, v) in values.iter().flatten().enumerate() {
            if let Some(reason) = path_problem(v) {
                r.error(format!("{path}.{field}[{k}]"), format!("{v:?}: {reason}"));
            }
        }
    }
}

fn condition(r: &mut Report, path: &str, c: &Condition) {
    let key = c.key.as_deref().unwrap_or_default();
    if key.is_empty() {
        r.error(format!("{path}.key"), "is required");
        return;
    }
    if !set(&c.values) && !set(&c.not_values) {
        r.error(
            path,
            format!("at least one of values or notValues must be set for key {key}"),
        );
    }
    if key.starts_with("request.auth.") {
        r.error(
            format!("{path}.key"),
            format!(
                "{key}: JWT conditions are not supported by Sinew: it has no RequestAuthentication to verify them"
            ),
        );
        return;
    }
    if key.starts_with("experimental.") {
        r.error(
            format!("{path}.key"),
            format!("{key}: experimental conditions are not supported by Sinew"),
        );
        return;
    }
    if let Some(rest) = key.strip_prefix("request.headers[") {
        let is_token = |name: &str| {
            name.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        };
        if rest
            .strip_suffix(']')
            .is_none_or(|name| name.is_empty() || !is_token(name))
        {
            r.error(
                format!("{path}.key"),
                format!(
                    "{key}: a header condition is written request.headers[<name>], with a valid header name"
                ),
            );
        }
        return;
    }
    if !CONDITION_KEYS.contains(&key) {
        r.error(
            format!("{path}.key"),
            format!(
                "unknown condition key {key:?}; Sinew supports {}, request.headers[<name>]",
                CONDITION_KEYS.join(", ")
            ),
        );
        return;
    }
    let values = c.values.iter().flatten().map(|v| ("values", v));
    let not_values = c.not_values.iter().flatten().map(|v| ("notValues", v));
    for (field, v) in values.chain(not_values) {
        let problem = match key {
            "source.ip" | "remote.ip" | "destination.ip" if !is_ip_or_cidr(v) => {
                "is not an IP address or CIDR"
            }
            "destination.port" if !is_port(v) => "is not a port number (1-65535)",
            _ => continue,
        };
        r.error(format!("{path}.{field}"), format!("{v:?} {problem}"));
    }
}

fn is_port(v: &str) -> bool {
    v.parse::<u16>().is_ok_and(|p| p != 0)
}

fn is_ip_or_cidr(v: &str) -> bool {
    match v.split_once('/') {
        None => v.parse::<IpAddr>().is_ok(),
        // "08" and "+8" would parse as 8: typos, and the proxy refuses them.
        Some((_, len)) if len.starts_with('+') || (len.len() > 1 && len.starts_with('0')) => false,
        Some((ip, len)) => match (ip.parse::<IpAddr>(), len.parse::<u8>()) {
            (Ok(IpAddr::V4(_)), Ok(l)) => l <= 32,
            (Ok(IpAddr::V6(_)), Ok(l)) => l <= 128,
            _ => false,
        },
    }
}

/// Why a `paths` value cannot be matched as written, if it cannot. Two styles, never mixed:
/// `*` at the start or end only (suffix/prefix/presence), or Istio's templates, whole
/// segments `{*}` (one segment) and `{**}` (any number, once, last).
fn path_problem(path: &str) -> Option<&'static str> {
    let templated = path.contains("{*}") || path.contains("{**}");
    if !templated {
        if path.contains(['{', '}']) {
            return Some("'{' and '}' are only allowed in the path templates {*} and {**}");
        }
        let inner = path.strip_prefix('*').unwrap_or(path);
        let inner = inner.strip_suffix('*').unwrap_or(inner);
        if inner.contains('*') {
            return Some(
                "'*' is only allowed at the start or the end of a path (or use the templates {*} and {**} as whole segments)",
            );
        }
        return None;
    }
    // As the proxy reads a template: from a leading '/', every '/' a separator (so nothing,
    // not even an empty segment, may follow `{**}`).
    let Some(body) = path.strip_prefix('/') else {
        return Some("a path template must start with '/'");
    };
    let segments: Vec<&str> = body.split('/').collect();
    let last = segments.len() - 1;
    for (i, segment) in segments.iter().enumerate() {
        match *segment {
            "{*}" => {}
            "{**}" if i == last => {}
            "{**}" => return Some("{**} may appear once, as the last segment of a path template"),
            s if s.contains(['{', '}']) => {
                return Some("the path templates {*} and {**} must be whole segments");
            }
            s if s.contains('*') => {
                return Some("'*' cannot be mixed with the path templates {*} and {**}");
            }
            s if !s.chars().all(is_path_char) => {
                return Some(
                    "a path template's literal segments may only hold URL path characters",
                );
            }
            _ => {}
        }
    }
    None
}

/// RFC 3986 `pchar` (percent-encodings count as their `%` and hex digits).
fn is_path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~!$&'()+,;=:@%".contains(c)
}

#[cfg(test)]
mod tests;
