//! Value checks of DestinationRules and VirtualServices (Telemetries: [`telemetry`];
//! PeerAuthentications and AuthorizationPolicies: [`peer_authentication`],
//! [`authorization_policy`]), as istiod's
//! validating webhook makes them
//! (`pkg/config/validation/validation.go`, reference §1.8): what the schema's types cannot say
//! (durations of at least 1 ms in whole milliseconds, percents 0–100, non-negative pool sizes,
//! unique DNS-1123 subset names, prime maglev tables, compiling regexes, known retry conditions,
//! routes with destinations xor a redirect, …).
//!
//! Promise: every problem is reported with the path of its field
//! (`spec.trafficPolicy.outlierDetection.interval`), which a file source turns into that field's
//! line; a document with any problem is refused, so the compiler only ever sees values it can
//! use as they are. Accepted-but-not-applied parts come back as warnings.

use std::collections::{BTreeMap, BTreeSet};

use super::Rejection;
use crate::registry::istio::virtual_service::{
    Destination, Headers, HttpMatchRequest, HttpRoute, Percent, StringMatch, VirtualServiceSpec,
};
use crate::registry::istio::{
    ConnectionPool, DestinationRuleSpec, LoadBalancer, OutlierDetection, TrafficPolicy,
    parse_duration,
};
use crate::registry::{hosts, selector};

/// Envoy's retry conditions istiod accepts in `retryOn` (besides bare HTTP status codes).
pub(crate) const RETRY_ON: &[&str] = &[
    "5xx",
    "gateway-error",
    "reset",
    "reset-before-request",
    "connect-failure",
    "envoy-ratelimited",
    "retriable-4xx",
    "refused-stream",
    "retriable-status-codes",
    "retriable-headers",
    "http3-post-connect-failure",
    "cancelled",
    "deadline-exceeded",
    "internal",
    "resource-exhausted",
    "unavailable",
];

/// Conditions istiod accepts that Sinew's proxy has no equivalent for: accepted with a warning
/// and left out of the compiled policy.
pub(crate) const RETRY_ON_IGNORED: &[&str] = &[
    "retriable-headers",
    "envoy-ratelimited",
    "http3-post-connect-failure",
];

/// What the checks found: problems refuse the document, warnings are reported with it.
#[derive(Debug, Default)]
pub(crate) struct Report {
    /// (field path, reason).
    pub errors: Vec<(String, String)>,
    pub warnings: Vec<(String, String)>,
}

// === impl Report ===

impl Report {
    fn error(&mut self, path: impl Into<String>, reason: impl Into<String>) {
        self.errors.push((path.into(), reason.into()));
    }

    fn warn(&mut self, path: impl Into<String>, reason: impl Into<String>) {
        self.warnings.push((path.into(), reason.into()));
    }

    /// The errors as rejections (the object is refused), or else the warnings as rejections
    /// (the object is accepted with them). Each names its field, `spec.x: reason`, and keeps the
    /// path so a file source can point at the field's line.
    pub(crate) fn into_rejections(self) -> Result<Vec<Rejection>, Vec<Rejection>> {
        let named = |(path, reason): (String, String)| Rejection {
            reason: format!("{path}: {reason}"),
            path,
        };
        if self.errors.is_empty() {
            Ok(self.warnings.into_iter().map(named).collect())
        } else {
            Err(self.errors.into_iter().map(named).collect())
        }
    }
}

// === shared checks ===

/// Istio's `ValidateDuration`: at least 1 ms, whole milliseconds.
fn duration(r: &mut Report, path: &str, value: Option<&String>) {
    let Some(text) = value else { return };
    match parse_duration(text) {
        None => r.error(
            path,
            format!("{text:?} is not a duration (write e.g. 500ms, 10s, 1m)"),
        ),
        Some(d) if d.as_nanos() < 1_000_000 => {
            r.error(path, format!("must be at least 1ms, not {text:?}"));
        }
        Some(d) if d.as_nanos() % 1_000_000 != 0 => {
            r.error(
                path,
                format!("must be a whole number of milliseconds, not {text:?}"),
            );
        }
        Some(_) => {}
    }
}

/// A duration that may also be zero (disables), such as `tcp.idleTimeout`.
fn duration_or_zero(r: &mut Report, path: &str, value: Option<&String>) {
    if value
        .and_then(|t| parse_duration(t))
        .is_some_and(|d| d.is_zero())
    {
        return;
    }
    duration(r, path, value);
}

fn percent(r: &mut Report, path: &str, value: Option<f64>) {
    if let Some(v) = value
        && !(0.0..=100.0).contains(&v)
    {
        r.error(path, format!("must be between 0 and 100, not {v}"));
    }
}

fn non_negative(r: &mut Report, path: &str, value: Option<i32>) {
    if let Some(v) = value
        && v < 0
    {
        r.error(path, format!("must not be negative, not {v}"));
    }
}

/// `exportTo`: `.`, `*` or namespace names, no duplicates, `*` alone.
fn export_to(r: &mut Report, values: Option<&Vec<String>>) {
    let Some(values) = values else { return };
    let mut seen = BTreeSet::new();
    for (i, v) in values.iter().enumerate() {
        let path = format!("spec.exportTo[{i}]");
        if !(v == "." || v == "*" || selector::is_dns_label(v)) {
            r.error(
                &path,
                format!("{v:?} is not \".\", \"*\" or a namespace name"),
            );
        }
        if !seen.insert(v.as_str()) {
            r.error(&path, format!("{v:?} is listed twice"));
        }
    }
    if seen.contains("*") && seen.len() > 1 {
        r.error(
            "spec.exportTo",
            "\"*\" cannot be combined with other entries",
        );
    }
}

fn labels(r: &mut Report, path: &str, labels: Option<&BTreeMap<String, String>>) {
    for (k, v) in labels.into_iter().flatten() {
        if k.is_empty() || k.contains('*') || v.contains('*') {
            r.error(
                format!("{path}.{k}"),
                "label keys must be non-empty and keys and values must not contain '*'",
            );
        }
    }
}

fn is_prime(n: u64) -> bool {
    n >= 2
        && (2..)
            .take_while(|d| d * d <= n)
            .all(|d| !n.is_multiple_of(d))
}

// === DestinationRule ===

pub(super) fn destination_rule(spec: &DestinationRuleSpec, namespace: &str) -> Report {
    let mut r = Report::default();
    if let Some(host) = &spec.host
        && let Err(e) = hosts::check(host)
    {
        r.error("spec.host", e);
    }
    export_to(&mut r, spec.export_to.as_ref());
    if let Some(sel) = &spec.workload_selector {
        labels(
            &mut r,
            "spec.workloadSelector.matchLabels",
            sel.match_labels.as_ref(),
        );
        let private = spec
            .export_to
            .iter()
            .flatten()
            .all(|e| e == "." || e == namespace);
        if !private {
            r.error(
                "spec.exportTo",
                "a rule with a workloadSelector applies only in its own namespace: exportTo may only be \".\"",
            );
        }
    }
    if let Some(tp) = &spec.traffic_policy {
        traffic_policy(&mut r, "spec.trafficPolicy", tp);
    }
    let mut names = BTreeSet::new();
    for (i, s) in spec.subsets.iter().flatten().enumerate() {
        let path = format!("spec.subsets[{i}]");
        match s.name.as_deref() {
            None | Some("") => r.error(format!("{path}.name"), "is required"),
            Some(n) if !selector::is_dns_label(n) => r.error(
                format!("{path}.name"),
                format!("{n:?} is not a DNS-1123 label (lowercase letters, digits and '-')"),
            ),
            Some(n) if !names.insert(n) => {
                r.error(
                    format!("{path}.name"),
                    format!("{n:?} is used by two subsets"),
                );
            }
            Some(_) => {}
        }
        labels(&mut r, &format!("{path}.labels"), s.labels.as_ref());
        if let Some(tp) = &s.traffic_policy {
            traffic_policy(&mut r, &format!("{path}.trafficPolicy"), tp);
        }
    }
    r
}

fn traffic_policy(r: &mut Report, path: &str, tp: &TrafficPolicy) {
    if *tp == TrafficPolicy::default() {
        r.error(path, "must set at least one field");
        return;
    }
    if tp.tunnel.is_some() && tp.proxy_protocol.is_some() {
        r.error(path, "tunnel and proxyProtocol cannot both be set");
    }
    if tp.tunnel.is_some() {
        r.warn(
            format!("{path}.tunnel"),
            "is accepted but not applied by Sinew yet",
        );
    }
    if tp.proxy_protocol.is_some() {
        r.warn(
            format!("{path}.proxyProtocol"),
            "is accepted but not applied by Sinew yet",
        );
    }
    blocks(
        r,
        path,
        tp.load_balancer.as_ref(),
        tp.connection_pool.as_ref(),
        tp.outlier_detection.as_ref(),
        tp.tls.as_ref(),
    );
    if let Some(b) = &tp.retry_budget {
        percent(r, &format!("{path}.retryBudget.percent"), b.percent);
        duration(
            r,
            &format!("{path}.retryBudget.budgetInterval"),
            b.budget_interval.as_ref(),
        );
    }
    let mut ports = BTreeSet::new();
    for (i, p) in tp.port_level_settings.iter().flatten().enumerate() {
        let at = format!("{path}.portLevelSettings[{i}]");
        match p.port.as_ref().and_then(|p| p.number) {
            None | Some(0) => r.error(format!("{at}.port"), "is required"),
            Some(n) if n > 65535 => r.error(
                format!("{at}.port.number"),
                format!("must be between 1 and 65535, not {n}"),
            ),
            Some(n) if !ports.insert(n) => r.error(
                format!("{at}.port.number"),
                format!("port {n} has two entries"),
            ),
            Some(_) => {}
        }
        if p.load_balancer.is_none()
            && p.connection_pool.is_none()
            && p.outlier_detection.is_none()
            && p.tls.is_none()
        {
            r.error(
                &at,
                "must set one of loadBalancer, connectionPool, outlierDetection or tls",
            );
        }
        blocks(
            r,
            &at,
            p.load_balancer.as_ref(),
            p.connection_pool.as_ref(),
            p.outlier_detection.as_ref(),
            p.tls.as_ref(),
        );
    }
}

fn blocks(
    r: &mut Report,
    path: &str,
    lb: Option<&LoadBalancer>,
    pool: Option<&ConnectionPool>,
    outlier: Option<&OutlierDetection>,
    tls: Option<&super::istio::ClientTls>,
) {
    if let Some(lb) = lb {
        load_balancer(r, &format!("{path}.loadBalancer"), lb);
    }
    if let Some(pool) = pool {
        connection_pool(r, &format!("{path}.connectionPool"), pool);
    }
    if let Some(o) = outlier {
        outlier_detection(r, &format!("{path}.outlierDetection"), o);
    }
    if let Some(t) = tls {
        client_tls(r, &format!("{path}.tls"), t);
    }
}

fn load_balancer(r: &mut Report, path: &str, lb: &LoadBalancer) {
    if lb.simple.is_some() && lb.consistent_hash.is_some() {
        r.error(path, "simple and consistentHash cannot both be set");
    }
    if let Some(ch) = &lb.consistent_hash {
        let at = format!("{path}.consistentHash");
        let keys = [
            ch.http_header_name.is_some(),
            ch.http_cookie.is_some(),
            ch.use_source_ip == Some(true),
            ch.http_query_parameter_name.is_some(),
        ];
        if keys.iter().filter(|k| **k).count() != 1 {
            r.error(
                &at,
                "exactly one of httpHeaderName, httpCookie, useSourceIp and httpQueryParameterName is required",
            );
        }
        if let Some(cookie) = &ch.http_cookie {
            if cookie.name.as_deref().unwrap_or_default().is_empty() {
                r.error(format!("{at}.httpCookie.name"), "is required");
            }
            if let Some(ttl) = &cookie.ttl {
                duration_or_zero(r, &format!("{at}.httpCookie.ttl"), Some(ttl));
                // With a ttl the proxy writes the cookie: name and path go into `set-cookie`.
                let name = cookie.name.as_deref().unwrap_or_default();
                if !name.is_empty() && !sinew_proto::cookie::is_name(name) {
                    r.error(
                        format!("{at}.httpCookie.name"),
                        format!("{name:?} is not a cookie name (the proxy sets this cookie: ttl is given)"),
                    );
                }
                let path = cookie.path.as_deref().unwrap_or_default();
                if !sinew_proto::cookie::is_path(path) {
                    r.error(
                        format!("{at}.httpCookie.path"),
                        format!("{path:?} is not a cookie path (the proxy sets this cookie: ttl is given)"),
                    );
                }
            }
            let mut names = BTreeSet::new();
            for (i, a) in cookie.attributes.iter().flatten().enumerate() {
                let n = a.name.as_deref().unwrap_or_default();
                if n.is_empty() || !names.insert(n) {
                    r.error(
                        format!("{at}.httpCookie.attributes[{i}].name"),
                        "must be set and unique",
                    );
                }
            }
        }
        if let Some(h) = &ch.http_header_name
            && http::HeaderName::from_bytes(h.to_ascii_lowercase().as_bytes()).is_err()
        {
            r.error(
                format!("{at}.httpHeaderName"),
                format!("{h:?} is not a header name"),
            );
        }
        // Envoy's largest ring.
        let ring = ch
            .ring_hash
            .as_ref()
            .and_then(|r| r.minimum_ring_size)
            .or(ch.minimum_ring_size);
        if let Some(n) = ring
            && n > 8 * 1024 * 1024
        {
            r.error(
                format!("{at}.ringHash.minimumRingSize"),
                format!("must be at most 8388608, not {n}"),
            );
        }
        if ch.ring_hash.is_some() && ch.maglev.is_some() {
            r.error(&at, "ringHash and maglev cannot both be set");
        }
        if let Some(m) = &ch.maglev {
            match m.table_size {
                None | Some(0) => r.error(format!("{at}.maglev.tableSize"), "is required"),
                Some(n) if n >= 5_000_011 || !is_prime(n) => r.error(
                    format!("{at}.maglev.tableSize"),
                    format!("must be a prime below 5000011, not {n}"),
                ),
                Some(_) => {}
            }
        }
    }
    if lb.locality_lb_setting.is_some() && lb.zone_aware_lb_setting.is_some() {
        r.error(
            path,
            "localityLbSetting and zoneAwareLbSetting cannot both be set",
        );
    }
    if lb.locality_lb_setting.is_some() {
        r.warn(
            format!("{path}.localityLbSetting"),
            "is accepted but not applied (Sinew has no localities yet)",
        );
    }
    if lb.warmup_duration_secs.is_some() && lb.warmup.is_some() {
        r.error(path, "warmupDurationSecs and warmup cannot both be set");
    }
    duration(
        r,
        &format!("{path}.warmupDurationSecs"),
        lb.warmup_duration_secs.as_ref(),
    );
    let warms = lb.warmup.is_some() || lb.warmup_duration_secs.is_some();
    let balanced = lb.consistent_hash.is_none()
        && !matches!(
            lb.simple,
            Some(super::istio::SimpleLb::RANDOM | super::istio::SimpleLb::PASSTHROUGH)
        );
    if warms && !balanced {
        r.error(
            format!("{path}.warmup"),
            "only ROUND_ROBIN and LEAST_REQUEST support warmup",
        );
    }
    if let Some(w) = &lb.warmup {
        let at = format!("{path}.warmup");
        match &w.duration {
            None => r.error(format!("{at}.duration"), "is required"),
            d => duration(r, &format!("{at}.duration"), d.as_ref()),
        }
        percent(r, &format!("{at}.minimumPercent"), w.minimum_percent);
        if let Some(a) = w.aggression
            && a <= 0.0
        {
            r.error(
                format!("{at}.aggression"),
                format!("must be greater than 0, not {a}"),
            );
        }
    }
}

fn connection_pool(r: &mut Report, path: &str, pool: &ConnectionPool) {
    if pool.tcp.is_none() && pool.http.is_none() {
        r.error(path, "must set tcp or http");
    }
    if let Some(tcp) = &pool.tcp {
        let at = format!("{path}.tcp");
        non_negative(r, &format!("{at}.maxConnections"), tcp.max_connections);
        duration(
            r,
            &format!("{at}.connectTimeout"),
            tcp.connect_timeout.as_ref(),
        );
        duration(
            r,
            &format!("{at}.maxConnectionDuration"),
            tcp.max_connection_duration.as_ref(),
        );
        duration_or_zero(r, &format!("{at}.idleTimeout"), tcp.idle_timeout.as_ref());
        if let Some(k) = &tcp.tcp_keepalive {
            duration(r, &format!("{at}.tcpKeepalive.time"), k.time.as_ref());
            duration(
                r,
                &format!("{at}.tcpKeepalive.interval"),
                k.interval.as_ref(),
            );
        }
    }
    if let Some(http) = &pool.http {
        let at = format!("{path}.http");
        non_negative(
            r,
            &format!("{at}.http1MaxPendingRequests"),
            http.http1_max_pending_requests,
        );
        non_negative(
            r,
            &format!("{at}.http2MaxRequests"),
            http.http2_max_requests,
        );
        non_negative(
            r,
            &format!("{at}.maxRequestsPerConnection"),
            http.max_requests_per_connection,
        );
        non_negative(r, &format!("{at}.maxRetries"), http.max_retries);
        non_negative(
            r,
            &format!("{at}.maxConcurrentStreams"),
            http.max_concurrent_streams,
        );
        duration_or_zero(r, &format!("{at}.idleTimeout"), http.idle_timeout.as_ref());
        if http.use_client_protocol == Some(true)
            && http.h2_upgrade_policy == Some(super::istio::H2UpgradePolicy::UPGRADE)
        {
            r.error(
                format!("{at}.useClientProtocol"),
                "cannot be combined with h2UpgradePolicy UPGRADE",
            );
        }
        if let Some(k) = &http.http2_keep_alive {
            if k.interval.is_none() || k.timeout.is_none() {
                r.error(
                    format!("{at}.http2KeepAlive"),
                    "interval and timeout are both required",
                );
            }
            duration(
                r,
                &format!("{at}.http2KeepAlive.interval"),
                k.interval.as_ref(),
            );
            duration(
                r,
                &format!("{at}.http2KeepAlive.timeout"),
                k.timeout.as_ref(),
            );
        }
    }
}

fn outlier_detection(r: &mut Report, path: &str, o: &OutlierDetection) {
    if o.consecutive_errors.is_some() {
        r.warn(
            format!("{path}.consecutiveErrors"),
            "is deprecated: use consecutiveGatewayErrors (it counts 502, 503 and 504 only)",
        );
    }
    non_negative(
        r,
        &format!("{path}.consecutiveErrors"),
        o.consecutive_errors,
    );
    if o.consecutive_local_origin_failures.is_some_and(|n| n > 0)
        && o.split_external_local_origin_errors != Some(true)
    {
        r.error(
            format!("{path}.consecutiveLocalOriginFailures"),
            "needs splitExternalLocalOriginErrors: true",
        );
    }
    duration(r, &format!("{path}.interval"), o.interval.as_ref());
    duration(
        r,
        &format!("{path}.baseEjectionTime"),
        o.base_ejection_time.as_ref(),
    );
    percent(
        r,
        &format!("{path}.maxEjectionPercent"),
        o.max_ejection_percent.map(f64::from),
    );
    percent(
        r,
        &format!("{path}.minHealthPercent"),
        o.min_health_percent.map(f64::from),
    );
    for (i, c) in o
        .outlier_detection_http_error_codes
        .iter()
        .flatten()
        .enumerate()
    {
        if !(100..=599).contains(c) {
            r.error(
                format!("{path}.outlierDetectionHttpErrorCodes[{i}]"),
                format!("must be an HTTP status (100-599), not {c}"),
            );
        }
    }
    if o.outlier_detection_http_error_codes.is_some() {
        r.warn(
            format!("{path}.outlierDetectionHttpErrorCodes"),
            "is accepted but not applied by Sinew yet (5xx count)",
        );
    }
}

fn client_tls(r: &mut Report, path: &str, t: &super::istio::ClientTls) {
    use crate::registry::istio::TlsMode;
    let files = t.client_certificate.is_some() || t.private_key.is_some();
    if t.credential_name.is_some() {
        if files || t.ca_certificates.is_some() {
            r.error(
                format!("{path}.credentialName"),
                "cannot be combined with clientCertificate, privateKey or caCertificates",
            );
        }
        r.warn(
            format!("{path}.credentialName"),
            "is accepted but not applied (Sinew reads certificates from files)",
        );
    }
    match t.mode {
        Some(TlsMode::MUTUAL) if t.credential_name.is_none() => {
            if t.client_certificate.is_none() {
                r.error(
                    format!("{path}.clientCertificate"),
                    "is required in MUTUAL mode",
                );
            }
            if t.private_key.is_none() {
                r.error(format!("{path}.privateKey"), "is required in MUTUAL mode");
            }
        }
        Some(TlsMode::ISTIO_MUTUAL) => {
            let other = files
                || t.ca_certificates.is_some()
                || t.credential_name.is_some()
                || t.subject_alt_names.is_some()
                || t.sni.is_some();
            if other {
                r.error(
                    path,
                    "ISTIO_MUTUAL uses the mesh certificates: leave the other fields empty",
                );
            }
        }
        _ => {}
    }
    if t.ca_crl.is_some() {
        r.warn(
            format!("{path}.caCrl"),
            "is accepted but not applied (Sinew does not check revocation yet)",
        );
    }
    if t.insecure_skip_verify == Some(true)
        && (t.ca_certificates.is_some() || t.subject_alt_names.is_some())
    {
        r.error(
            format!("{path}.insecureSkipVerify"),
            "cannot be combined with caCertificates or subjectAltNames",
        );
    }
}

// === VirtualService ===

pub(super) fn virtual_service(spec: &VirtualServiceSpec) -> Report {
    let mut r = Report::default();
    let mesh = spec
        .gateways
        .as_ref()
        .is_none_or(|g| g.is_empty() || g.iter().any(|g| g == "mesh"));
    match spec.hosts.as_deref() {
        None | Some([]) => r.error("spec.hosts", "is required (at least one host)"),
        Some(hs) => {
            for (i, h) in hs.iter().enumerate() {
                let path = format!("spec.hosts[{i}]");
                if let Err(e) = hosts::check(h) {
                    r.error(&path, e);
                } else if h == "*" && mesh {
                    r.error(
                        &path,
                        "\"*\" is not allowed for VirtualServices that apply to the mesh",
                    );
                }
            }
        }
    }
    export_to(&mut r, spec.export_to.as_ref());
    let (http, tcp) = (
        spec.http.as_deref().unwrap_or_default(),
        spec.tcp.as_deref().unwrap_or_default(),
    );
    if http.is_empty() && tcp.is_empty() && spec.tls.as_ref().is_none_or(Vec::is_empty) {
        r.error("spec", "http, tcp or tls must be provided");
    }
    if spec.tls.as_ref().is_some_and(|t| !t.is_empty()) {
        r.warn(
            "spec.tls",
            "is accepted but not applied by Sinew yet (TLS routes by SNI)",
        );
    }
    for (i, route) in http.iter().enumerate() {
        http_route(&mut r, &format!("spec.http[{i}]"), route);
    }
    for (i, route) in tcp.iter().enumerate() {
        let path = format!("spec.tcp[{i}]");
        for (j, m) in route.matches.iter().flatten().enumerate() {
            let at = format!("{path}.match[{j}]");
            if let Some(p) = m.port
                && p > 65535
            {
                r.error(
                    format!("{at}.port"),
                    format!("must be between 1 and 65535, not {p}"),
                );
            }
            labels(
                &mut r,
                &format!("{at}.sourceLabels"),
                m.source_labels.as_ref(),
            );
            // Ignoring an address condition would send every connection down this route.
            if m.destination_subnets.is_some() {
                r.error(
                    format!("{at}.destinationSubnets"),
                    "is not supported by Sinew yet",
                );
            }
            if m.source_subnet.is_some() {
                r.error(
                    format!("{at}.sourceSubnet"),
                    "is not supported by Sinew yet",
                );
            }
        }
        let routes = route.route.as_deref().unwrap_or_default();
        if routes.is_empty() {
            r.error(
                format!("{path}.route"),
                "is required (at least one destination)",
            );
        }
        let given: Vec<Option<i32>> = routes.iter().map(|d| d.weight).collect();
        weights(&mut r, &format!("{path}.route"), &given);
        for (j, d) in routes.iter().enumerate() {
            destination(
                &mut r,
                &format!("{path}.route[{j}].destination"),
                d.destination.as_ref(),
            );
        }
    }
    r
}

fn http_route(r: &mut Report, path: &str, route: &HttpRoute) {
    if route.delegate.is_some() {
        r.error(format!("{path}.delegate"), "is not supported by Sinew yet");
    }
    if route.direct_response.is_some() {
        r.error(
            format!("{path}.directResponse"),
            "is not supported by Sinew yet",
        );
    }
    let destinations = route.route.as_deref().unwrap_or_default();
    match (destinations.is_empty(), route.redirect.is_some()) {
        (true, false) if route.delegate.is_none() && route.direct_response.is_none() => {
            r.error(path, "a route needs destinations (route) or a redirect");
        }
        (false, true) => r.error(path, "a route cannot have both destinations and a redirect"),
        _ => {}
    }
    if route.redirect.is_some() && route.fault.is_some() {
        r.error(path, "a route cannot have both a fault and a redirect");
    }
    if route.redirect.is_some() && route.rewrite.is_some() {
        r.error(path, "a route cannot have both a rewrite and a redirect");
    }
    // The authority may be rewritten in one place only.
    let authority_sets = route
        .headers
        .as_ref()
        .and_then(|h| h.request.as_ref())
        .map_or(0, |ops| {
            ops.set
                .iter()
                .flatten()
                .chain(ops.add.iter().flatten())
                .filter(|(k, _)| is_authority(k))
                .count()
        });
    let rewrites_authority = route
        .rewrite
        .as_ref()
        .is_some_and(|rw| rw.authority.is_some());
    if authority_sets + usize::from(rewrites_authority) > 1 {
        r.error(
            format!("{path}.headers.request"),
            "the authority is set more than once (rewrite.authority and host/:authority headers)",
        );
    }
    for (i, m) in route.matches.iter().flatten().enumerate() {
        http_match(r, &format!("{path}.match[{i}]"), m);
    }
    let given: Vec<Option<i32>> = destinations.iter().map(|d| d.weight).collect();
    weights(r, &format!("{path}.route"), &given);
    for (i, d) in destinations.iter().enumerate() {
        let at = format!("{path}.route[{i}]");
        destination(r, &format!("{at}.destination"), d.destination.as_ref());
        headers(r, &format!("{at}.headers"), d.headers.as_ref());
        // Per destination there is nothing to turn an authority header into.
        let authority = d
            .headers
            .as_ref()
            .and_then(|h| h.request.as_ref())
            .is_some_and(|ops| {
                ops.set
                    .iter()
                    .flatten()
                    .chain(ops.add.iter().flatten())
                    .any(|(k, _)| is_authority(k))
            });
        if authority {
            r.error(
                format!("{at}.headers.request"),
                "setting the authority per destination is not supported by Sinew yet (set it on the route)",
            );
        }
    }
    if let Some(redirect) = &route.redirect {
        // Istio accepts any 3xx; Envoy (and Sinew) can only answer these five.
        if let Some(code) = redirect.redirect_code
            && ![301, 302, 303, 307, 308].contains(&code)
        {
            r.error(
                format!("{path}.redirect.redirectCode"),
                format!("must be 301, 302, 303, 307 or 308, not {code}"),
            );
        }
        if let Some(uri) = redirect.uri.as_deref()
            && !uri.is_empty()
            && !uri.starts_with('/')
        {
            r.error(
                format!("{path}.redirect.uri"),
                format!("{uri:?} must be a path starting with /"),
            );
        }
        if redirect.port.is_some_and(|p| p > 65535) {
            r.error(format!("{path}.redirect.port"), "must be at most 65535");
        }
        if redirect.port.is_some() && redirect.derive_port.is_some() {
            r.error(
                format!("{path}.redirect"),
                "port and derivePort cannot both be set",
            );
        }
        if redirect.derive_port.is_some() {
            r.warn(
                format!("{path}.redirect.derivePort"),
                "is accepted but not applied (the redirect keeps the request's port)",
            );
        }
    }
    if let Some(rw) = &route.rewrite {
        if rw.uri.is_none() && rw.authority.is_none() && rw.uri_regex_rewrite.is_none() {
            r.error(format!("{path}.rewrite"), "must set uri or authority");
        }
        if let Some(uri) = rw.uri.as_deref()
            && !uri.is_empty()
            && !uri.starts_with('/')
        {
            r.error(
                format!("{path}.rewrite.uri"),
                format!("{uri:?} must be a path starting with /"),
            );
        }
        if let Some(a) = rw.authority.as_deref()
            && http::uri::Authority::try_from(a).is_err()
        {
            r.error(
                format!("{path}.rewrite.authority"),
                format!("{a:?} is not a valid authority"),
            );
        }
    }
    if route
        .rewrite
        .as_ref()
        .is_some_and(|rw| rw.uri_regex_rewrite.is_some())
    {
        r.error(
            format!("{path}.rewrite.uriRegexRewrite"),
            "is not supported by Sinew yet",
        );
    }
    duration(r, &format!("{path}.timeout"), route.timeout.as_ref());
    if let Some(retry) = &route.retries {
        let at = format!("{path}.retries");
        non_negative(r, &format!("{at}.attempts"), retry.attempts);
        duration(
            r,
            &format!("{at}.perTryTimeout"),
            retry.per_try_timeout.as_ref(),
        );
        duration(r, &format!("{at}.backoff"), retry.backoff.as_ref());
        for cond in retry.retry_on.as_deref().unwrap_or_default().split(',') {
            let cond = cond.trim();
            let is_status = cond.parse::<u32>().is_ok_and(|c| (100..=599).contains(&c));
            if RETRY_ON_IGNORED.contains(&cond) {
                r.warn(
                    format!("{at}.retryOn"),
                    format!(
                        "{cond:?} is accepted and ignored (Sinew's proxy has no such condition)"
                    ),
                );
            }
            if !cond.is_empty() && !is_status && !RETRY_ON.contains(&cond) {
                r.error(
                    format!("{at}.retryOn"),
                    format!(
                        "{cond:?} is not a retry condition (one of {}, or an HTTP status code)",
                        RETRY_ON.join(", ")
                    ),
                );
            }
        }
        if retry.retry_remote_localities.is_some() {
            r.warn(
                format!("{at}.retryRemoteLocalities"),
                "is accepted and ignored (Sinew has no localities yet)",
            );
        }
    }
    if let Some(fault) = &route.fault {
        let at = format!("{path}.fault");
        if fault.delay.is_none() && fault.abort.is_none() {
            r.error(&at, "needs a delay or an abort");
        }
        if let Some(d) = &fault.delay {
            if d.exponential_delay.is_some() {
                r.error(
                    format!("{at}.delay.exponentialDelay"),
                    "is not supported (use fixedDelay)",
                );
            } else if d.fixed_delay.is_none() {
                r.error(format!("{at}.delay.fixedDelay"), "is required");
            }
            duration(r, &format!("{at}.delay.fixedDelay"), d.fixed_delay.as_ref());
            percentage(r, &format!("{at}.delay.percentage"), d.percentage.as_ref());
            percent(r, &format!("{at}.delay.percent"), d.percent.map(f64::from));
        }
        if let Some(a) = &fault.abort {
            let kinds = [
                a.http_status.is_some(),
                a.grpc_status.is_some(),
                a.http2_error.is_some(),
            ];
            if kinds.iter().filter(|k| **k).count() != 1 {
                r.error(
                    format!("{at}.abort"),
                    "exactly one of httpStatus and grpcStatus is required",
                );
            }
            if a.http2_error.is_some() {
                r.error(
                    format!("{at}.abort.http2Error"),
                    "is not supported (use httpStatus or grpcStatus)",
                );
            }
            if let Some(s) = a.http_status
                && !(200..=599).contains(&s)
            {
                r.error(
                    format!("{at}.abort.httpStatus"),
                    format!("must be an HTTP status between 200 and 599, not {s}"),
                );
            }
            if let Some(g) = &a.grpc_status
                && !sinew_proto::grpc::STATUS_NAMES.contains(&g.as_str())
            {
                r.error(
                    format!("{at}.abort.grpcStatus"),
                    format!("{g:?} is not a gRPC status name (e.g. UNAVAILABLE)"),
                );
            }
            percentage(r, &format!("{at}.abort.percentage"), a.percentage.as_ref());
        }
    }
    if let Some(m) = &route.mirror {
        destination(r, &format!("{path}.mirror"), Some(m));
    }
    if route.mirror.is_some() && route.mirrors.is_some() {
        r.error(path, "mirror and mirrors cannot both be set");
    }
    percent(
        r,
        &format!("{path}.mirrorPercent"),
        route.mirror_percent.map(f64::from),
    );
    if route.mirror_percent.is_some() {
        r.warn(
            format!("{path}.mirrorPercent"),
            "is deprecated: use mirrorPercentage",
        );
    }
    percentage(
        r,
        &format!("{path}.mirrorPercentage"),
        route.mirror_percentage.as_ref(),
    );
    for (i, m) in route.mirrors.iter().flatten().enumerate() {
        let at = format!("{path}.mirrors[{i}]");
        destination(r, &format!("{at}.destination"), m.destination.as_ref());
        percentage(r, &format!("{at}.percentage"), m.percentage.as_ref());
    }
    if route.cors_policy.is_some() {
        r.warn(
            format!("{path}.corsPolicy"),
            "is accepted but not enforced by Sinew yet",
        );
    }
    headers(r, &format!("{path}.headers"), route.headers.as_ref());
}

fn http_match(r: &mut Report, path: &str, m: &HttpMatchRequest) {
    for (name, sm) in [
        ("uri", &m.uri),
        ("scheme", &m.scheme),
        ("method", &m.method),
        ("authority", &m.authority),
    ] {
        if let Some(sm) = sm {
            string_match(r, &format!("{path}.{name}"), sm);
        }
    }
    for (name, map) in [
        ("headers", &m.headers),
        ("queryParams", &m.query_params),
        ("withoutHeaders", &m.without_headers),
    ] {
        for (k, sm) in map.iter().flatten() {
            let at = format!("{path}.{name}.{k}");
            if k.is_empty() {
                r.error(&at, "names must not be empty");
            }
            // In withoutHeaders, regex `*` means "present" (not an RE2 regex).
            if name == "withoutHeaders" && sm.regex.as_deref() == Some("*") {
                continue;
            }
            string_match(r, &at, sm);
        }
    }
    if let Some(p) = m.port
        && !(1..=65535).contains(&p)
    {
        r.error(
            format!("{path}.port"),
            format!("must be between 1 and 65535, not {p}"),
        );
    }
    labels(r, &format!("{path}.sourceLabels"), m.source_labels.as_ref());
    if let Some(ns) = m.source_namespace.as_deref()
        && !ns.is_empty()
        && !selector::is_dns_label(ns)
    {
        r.error(
            format!("{path}.sourceNamespace"),
            format!("{ns:?} is not a namespace name"),
        );
    }
}

fn string_match(r: &mut Report, path: &str, sm: &StringMatch) {
    let set = [sm.exact.is_some(), sm.prefix.is_some(), sm.regex.is_some()];
    if set.iter().filter(|s| **s).count() != 1 {
        r.error(path, "exactly one of exact, prefix and regex is required");
    }
    if let Some(re) = &sm.regex
        && let Err(e) = regex::Regex::new(re)
    {
        let reason = e.to_string().lines().last().unwrap_or_default().to_string();
        r.error(
            format!("{path}.regex"),
            format!("{re:?} is not a valid regex: {}", reason.trim()),
        );
    }
}

fn destination(r: &mut Report, path: &str, d: Option<&Destination>) {
    let Some(d) = d else {
        r.error(path, "is required");
        return;
    };
    match d.host.as_deref() {
        None | Some("") => r.error(format!("{path}.host"), "is required"),
        Some(h) => {
            if let Err(e) = hosts::check(h) {
                r.error(format!("{path}.host"), e);
            }
        }
    }
    if let Some(s) = &d.subset
        && !selector::is_dns_label(s)
    {
        r.error(
            format!("{path}.subset"),
            format!("{s:?} is not a DNS-1123 label"),
        );
    }
    if let Some(p) = d.port.as_ref().and_then(|p| p.number)
        && !(1..=65535).contains(&p)
    {
        r.error(
            format!("{path}.port.number"),
            format!("must be between 1 and 65535, not {p}"),
        );
    }
}

/// Weights are relative: none negative, and with several destinations at least one positive.
fn weights(r: &mut Report, path: &str, weights: &[Option<i32>]) {
    for (i, w) in weights.iter().enumerate() {
        if let Some(w) = w
            && *w < 0
        {
            r.error(
                format!("{path}[{i}].weight"),
                format!("must not be negative, not {w}"),
            );
        }
    }
    if weights.len() > 1 && weights.iter().all(|w| w.unwrap_or(0) <= 0) {
        r.error(path, "the destinations' weights add up to 0");
    }
}

fn percentage(r: &mut Report, path: &str, p: Option<&Percent>) {
    percent(r, &format!("{path}.value"), p.and_then(|p| p.value));
}

fn headers(r: &mut Report, path: &str, h: Option<&Headers>) {
    let Some(h) = h else { return };
    for (dir, ops) in [("request", &h.request), ("response", &h.response)] {
        let Some(ops) = ops else { continue };
        let values = ops
            .set
            .iter()
            .flatten()
            .map(|(k, v)| ("set", k, v))
            .chain(ops.add.iter().flatten().map(|(k, v)| ("add", k, v)));
        for (op, name, value) in values {
            if http::HeaderValue::from_str(value).is_err() {
                r.error(
                    format!("{path}.{dir}.{op}.{name}"),
                    format!("{value:?} is not a valid header value"),
                );
            }
        }
        let names = ops
            .set
            .iter()
            .flatten()
            .map(|(k, _)| ("set", k))
            .chain(ops.add.iter().flatten().map(|(k, _)| ("add", k)))
            .chain(ops.remove.iter().flatten().map(|k| ("remove", k)));
        for (op, name) in names {
            // Only the request's authority may be set (Istio turns it into a host rewrite);
            // other pseudo-headers and `host` are the proxy's own.
            if dir == "request" && op != "remove" && is_authority(name) {
                continue;
            }
            if name.starts_with(':') || name.eq_ignore_ascii_case("host") {
                r.error(
                    format!("{path}.{dir}.{op}"),
                    format!("{name:?} is an internal header and cannot be changed here"),
                );
                continue;
            }
            let valid = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_!#$%&'*+.^`|~".contains(&b));
            if !valid {
                r.error(
                    format!("{path}.{dir}.{op}"),
                    format!("{name:?} is not a valid header name"),
                );
            }
        }
    }
}

fn is_authority(name: &str) -> bool {
    name.eq_ignore_ascii_case(":authority") || name.eq_ignore_ascii_case("host")
}

mod authorization_policy;
mod peer_authentication;
mod telemetry;

pub(crate) use self::authorization_policy::{DRY_RUN_ANNOTATION, authorization_policy, dry_run};
pub(crate) use self::peer_authentication::peer_authentication;
pub(crate) use self::telemetry::{ENVOY_PROVIDER, telemetry};

#[cfg(test)]
mod tests;
