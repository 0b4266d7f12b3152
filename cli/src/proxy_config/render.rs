//! Reads a proxy's `/config_dump` and `/clusters` documents and lays them out for a person: per
//! service, its routes, the policy it applies (every value the proxy will use, Istio's defaults
//! filled in and marked), and its endpoints with their health per destination.
//!
//! It promises never to fail on what a proxy says: a field missing from `/clusters` is shown
//! as `-`, a service whose config cannot be read is listed with the reason, and a proxy without
//! `/clusters` still gets its routes and policy shown.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use pbjson_types::Duration;
use serde_json::Value;
use sinew_proto::config::v1 as pb;

/// Istio ≥ 1.24's retry policy for a route that sets none (docs/traffic-policy.md).
const DEFAULT_RETRIES: &str = "2 on connect-failure,refused-stream,unavailable,cancelled (default)";

/// What one proxy reported, read leniently.
#[derive(Debug)]
pub struct View {
    version: String,
    identity: Option<String>,
    services: Vec<ServiceView>,
    /// `/clusters` entries, or why there are none.
    clusters: Result<Vec<Cluster>, String>,
}

#[derive(Debug)]
struct ServiceView {
    /// `name:port`, the resource name `/clusters` uses.
    key: String,
    /// The config, or why it could not be read.
    config: Result<pb::Service, String>,
}

/// One `/clusters` entry: a destination (service, or one subset of it) and its endpoints.
#[derive(Debug, Clone)]
struct Cluster {
    service: String,
    subset: Option<String>,
    load_balancer: Option<String>,
    active: Option<u64>,
    pending: Option<u64>,
    endpoints: Vec<EndpointHealth>,
}

#[derive(Debug, Clone)]
struct EndpointHealth {
    address: Option<String>,
    identity: Option<String>,
    healthy: Option<bool>,
    ejected_for_ms: Option<u64>,
    times_ejected: Option<u64>,
    active: Option<u64>,
}

// === impl View ===

impl View {
    /// `dump` is `/config_dump` (its `config` is the `ProxyConfig` in proto3 JSON); `clusters`
    /// is `/clusters`, or why it could not be had.
    pub fn read(dump: &Value, clusters: Result<Value, String>) -> View {
        let services = dump["config"]["services"]
            .as_array()
            .map(|all| all.iter().map(ServiceView::read).collect())
            .unwrap_or_default();
        let clusters = clusters.and_then(|c| match c["services"].as_array() {
            Some(all) => Ok(all.iter().map(Cluster::read).collect()),
            None => Err("GET /clusters has no \"services\" list".to_string()),
        });
        View {
            version: dump["version"].as_str().unwrap_or_default().to_string(),
            identity: dump["tls"]["identity"].as_str().map(str::to_string),
            services,
            clusters,
        }
    }

    /// The whole report; `only` keeps the services whose `name:port` contains it.
    pub fn render(&self, pod: &str, only: Option<&str>) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "pod {pod}: proxy {}, config version {}",
            self.identity.as_deref().unwrap_or("(no certificate yet)"),
            or_dash(&self.version)
        );
        if let Err(why) = &self.clusters {
            let _ = writeln!(out, "endpoint health unavailable: {why}");
        }
        let mut services: Vec<&ServiceView> = self
            .services
            .iter()
            .filter(|s| only.is_none_or(|f| s.key.contains(f)))
            .collect();
        services.sort_by(|a, b| a.key.cmp(&b.key));
        if services.is_empty() {
            let _ = match only {
                Some(f) => writeln!(out, "\nno service matching {f:?} in this proxy's config"),
                // Discovery is on demand: a proxy holds only what its pod has talked to.
                None => writeln!(
                    out,
                    "\nno services yet: the proxy subscribes to a service when its pod first sends to it"
                ),
            };
        }
        let clusters: &[Cluster] = self.clusters.as_deref().unwrap_or_default();
        for s in services {
            out.push('\n');
            match &s.config {
                Ok(svc) => render_service(&mut out, &s.key, svc, clusters),
                Err(why) => {
                    let _ = writeln!(out, "{}\n  cannot read its config: {why}", s.key);
                }
            }
        }
        // Destinations the proxy balances but whose config is not in the dump (static
        // listeners, or a dump and a /clusters taken either side of a push).
        let known: Vec<&str> = self.services.iter().map(|s| s.key.as_str()).collect();
        let orphans: Vec<&Cluster> = clusters
            .iter()
            .filter(|c| !known.contains(&c.service.as_str()))
            .filter(|c| only.is_none_or(|f| c.service.contains(f)))
            .collect();
        for c in orphans {
            let _ = writeln!(out, "\n{} (in /clusters only)", c.service);
            render_endpoints(&mut out, Some(c), &[]);
        }
        out
    }
}

// === impl ServiceView ===

impl ServiceView {
    fn read(v: &Value) -> ServiceView {
        let name = v["name"].as_str().unwrap_or("(unnamed)");
        let key = match v["port"].as_u64() {
            Some(port) if port > 0 => format!("{name}:{port}"),
            _ => name.to_string(),
        };
        let config = serde_json::from_value::<pb::Service>(v.clone()).map_err(|e| e.to_string());
        ServiceView { key, config }
    }
}

// === impl Cluster ===

impl Cluster {
    fn read(v: &Value) -> Cluster {
        Cluster {
            service: v["service"].as_str().unwrap_or("-").to_string(),
            subset: v["subset"].as_str().map(str::to_string),
            load_balancer: v["loadBalancer"].as_str().map(str::to_string),
            active: v["active"].as_u64(),
            pending: v["pending"].as_u64(),
            endpoints: v["endpoints"]
                .as_array()
                .map(|all| {
                    all.iter()
                        .map(|e| EndpointHealth {
                            address: e["address"].as_str().map(str::to_string),
                            identity: e["identity"].as_str().map(str::to_string),
                            healthy: e["healthy"].as_bool(),
                            ejected_for_ms: e["ejectedForMs"].as_u64(),
                            times_ejected: e["timesEjected"].as_u64(),
                            active: e["active"].as_u64(),
                        })
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

fn render_service(out: &mut String, key: &str, svc: &pb::Service, clusters: &[Cluster]) {
    let protocol = pb::Protocol::try_from(svc.protocol).map_or("?", |p| p.as_str_name());
    let _ = writeln!(
        out,
        "{key}  {protocol}  {}",
        or_dash(&svc.addresses.join(", "))
    );
    let sources = if svc.policy_sources.is_empty() {
        "none (Istio's defaults)".to_string()
    } else {
        svc.policy_sources.join("; ")
    };
    let _ = writeln!(out, "  policy from: {sources}");

    let _ = writeln!(out, "  routes:");
    let mut rows = vec![row([
        "ROUTE",
        "MATCH",
        "DESTINATIONS",
        "TIMEOUT",
        "RETRIES",
        "OTHER",
    ])];
    if svc.http_routes.is_empty() {
        rows.push(row([
            "(default)",
            "*",
            "this service 100%",
            "-",
            DEFAULT_RETRIES,
            "-",
        ]));
    }
    for r in &svc.http_routes {
        rows.push(vec![
            or_dash(&r.name).to_string(),
            matches(&r.matches),
            destinations(&r.destinations, r.redirect.as_ref(), key),
            r.timeout.as_ref().map_or("-".into(), duration),
            retries(r.retries.as_ref()),
            route_extras(r),
        ]);
    }
    table(out, "    ", &rows);
    if !svc.tcp_routes.is_empty() {
        let tcp: Vec<String> = svc
            .tcp_routes
            .iter()
            .map(|r| destinations(&r.destinations, None, key))
            .collect();
        let _ = writeln!(out, "  tcp routes: {}", tcp.join(" | "));
    }

    let _ = writeln!(out, "  policy:");
    render_policy(out, svc.traffic_policy.as_ref(), "    ");
    let service_cluster = clusters
        .iter()
        .find(|c| c.service == key && c.subset.is_none());
    render_endpoints(out, service_cluster, &svc.endpoints);

    for subset in &svc.subsets {
        let labels: Vec<String> = subset
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let _ = writeln!(
            out,
            "  subset {} ({}):",
            subset.name,
            or_dash(&labels.join(","))
        );
        render_policy(out, subset.traffic_policy.as_ref(), "    ");
        let cluster = clusters
            .iter()
            .find(|c| c.service == key && c.subset.as_deref() == Some(&subset.name));
        let members: Vec<pb::Endpoint> = svc
            .endpoints
            .iter()
            .filter(|e| {
                subset
                    .labels
                    .iter()
                    .all(|(k, v)| e.labels.get(k) == Some(v))
            })
            .cloned()
            .collect();
        render_endpoints(out, cluster, &members);
    }
}

/// The policy the proxy applies: every block, with Istio's default named where unset.
fn render_policy(out: &mut String, policy: Option<&pb::TrafficPolicy>, indent: &str) {
    let p = policy.cloned().unwrap_or_default();
    let rows = vec![
        row(["load balancer", &load_balancer(p.load_balancer.as_ref())]),
        row([
            "connection pool",
            &connection_pool(p.connection_pool.as_ref()),
        ]),
        row([
            "outlier detection",
            &outlier_detection(p.outlier_detection.as_ref()),
        ]),
        row(["tls", &tls(p.tls.as_ref())]),
        row(["retry budget", &retry_budget(p.retry_budget.as_ref())]),
    ];
    table(out, indent, &rows);
}

/// The endpoints of one destination: health from `/clusters` when the proxy gave it, else the
/// config's endpoint list with health unknown.
fn render_endpoints(out: &mut String, cluster: Option<&Cluster>, configured: &[pb::Endpoint]) {
    let mut rows = vec![row([
        "ADDRESS",
        "HEALTH",
        "EJECTIONS",
        "ACTIVE",
        "IDENTITY",
    ])];
    match cluster {
        Some(c) => {
            let _ = writeln!(
                out,
                "    endpoints ({}, {} active, {} pending):",
                c.load_balancer.as_deref().unwrap_or("-"),
                opt(c.active),
                opt(c.pending)
            );
            for e in &c.endpoints {
                rows.push(vec![
                    e.address.clone().unwrap_or_else(|| "-".into()),
                    health(e),
                    opt(e.times_ejected),
                    opt(e.active),
                    identity(e.identity.as_deref()),
                ]);
            }
        }
        None => {
            let _ = writeln!(out, "    endpoints (health not reported):");
            for e in configured {
                rows.push(vec![
                    e.address.clone(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    identity(Some(&e.identity)),
                ]);
            }
        }
    }
    if rows.len() == 1 {
        let _ = writeln!(out, "      none (requests get 503 UH)");
        return;
    }
    table(out, "      ", &rows);
}

fn health(e: &EndpointHealth) -> String {
    match (e.healthy, e.ejected_for_ms) {
        (Some(true), _) => "healthy".into(),
        (_, Some(ms)) => format!("ejected, {} left", millis(ms)),
        (Some(false), None) => "unhealthy".into(),
        (None, None) => "-".into(),
    }
}

fn identity(id: Option<&str>) -> String {
    match id {
        Some("") => "(no sidecar: plaintext)".into(),
        Some(id) => id.to_string(),
        None => "-".into(),
    }
}

fn matches(all: &[pb::HttpMatch]) -> String {
    if all.is_empty() {
        return "*".into();
    }
    let ored: Vec<String> = all.iter().map(one_match).collect();
    ored.join(" | ")
}

/// One match block, its conditions ANDed (`uri^=/api method=GET header[x-user]=jason`).
fn one_match(m: &pb::HttpMatch) -> String {
    let mut parts = Vec::new();
    let mut push = |what: String, s: Option<&pb::StringMatch>| {
        if let Some(s) = s {
            parts.push(format!("{what}{}", string_match(s)));
        }
    };
    push("uri".into(), m.uri.as_ref());
    push("scheme".into(), m.scheme.as_ref());
    push("method".into(), m.method.as_ref());
    push("authority".into(), m.authority.as_ref());
    for (k, v) in &m.headers {
        push(format!("header[{k}]"), Some(v));
    }
    for (k, v) in &m.query_params {
        push(format!("query[{k}]"), Some(v));
    }
    for (k, v) in &m.without_headers {
        push(format!("!header[{k}]"), Some(v));
    }
    if m.ignore_uri_case {
        parts.push("(uri case ignored)".into());
    }
    if parts.is_empty() {
        return "*".into();
    }
    parts.join(" ")
}

/// `=exact`, `^=prefix`, `~regex` (the operators of CSS and most matchers).
fn string_match(s: &pb::StringMatch) -> String {
    use pb::string_match::Kind;
    match &s.kind {
        Some(Kind::Exact(v)) => format!("={v}"),
        Some(Kind::Prefix(v)) => format!("^={v}"),
        Some(Kind::Regex(v)) => format!("~{v}"),
        None => " present".into(),
    }
}

/// `this` is the service the routes belong to: named "this service" rather than in full.
fn destinations(
    all: &[pb::RouteDestination],
    redirect: Option<&pb::Redirect>,
    this: &str,
) -> String {
    if let Some(r) = redirect {
        let code = if r.redirect_code == 0 {
            301
        } else {
            r.redirect_code
        };
        let mut to = String::new();
        if !r.scheme.is_empty() {
            let _ = write!(to, "{}://", r.scheme);
        }
        to.push_str(&r.authority);
        if r.port != 0 {
            let _ = write!(to, ":{}", r.port);
        }
        to.push_str(&r.uri);
        return format!("redirect {code} {}", or_dash(&to));
    }
    if all.is_empty() {
        return "-".into();
    }
    // Weights are relative; a lone destination with weight 0 takes everything, and with
    // several a weight of 0 takes nothing (Istio drops it).
    let total: u64 = all.iter().map(|d| u64::from(d.weight)).sum();
    let shown: Vec<String> = all
        .iter()
        .map(|d| {
            let share = match (all.len(), total) {
                (1, _) => 100.0,
                (_, 0) => 100.0 / all.len() as f64,
                _ => 100.0 * f64::from(d.weight) / total as f64,
            };
            let mut name = if d.service.is_empty() || d.service == this {
                "this service".to_string()
            } else {
                d.service.clone()
            };
            if !d.subset.is_empty() {
                let _ = write!(name, "/{}", d.subset);
            }
            format!("{name} {}%", trim_float(share))
        })
        .collect();
    shown.join(", ")
}

fn retries(r: Option<&pb::RetryPolicy>) -> String {
    let Some(r) = r else {
        return DEFAULT_RETRIES.into();
    };
    if r.attempts == 0 {
        return "off".into();
    }
    let mut on: Vec<String> = r.retry_on.clone();
    on.extend(r.retriable_status_codes.iter().map(u32::to_string));
    let mut s = format!("{} on {}", r.attempts, or_dash(&on.join(",")));
    if let Some(t) = &r.per_try_timeout {
        let _ = write!(s, ", per try {}", duration(t));
    }
    if let Some(b) = &r.backoff {
        let _ = write!(s, ", backoff {}", duration(b));
    }
    if r.retry_ignore_previous_hosts == Some(false) {
        s.push_str(", same host allowed");
    }
    s
}

/// Fault, rewrite, header changes and mirrors: what else a route does to a request.
fn route_extras(r: &pb::HttpRoute) -> String {
    let mut parts = Vec::new();
    if let Some(f) = &r.fault {
        if let Some(d) = &f.delay {
            let by = d.fixed_delay.as_ref().map_or("-".into(), duration);
            parts.push(format!("delay {by} for {}%", trim_float(d.percentage)));
        }
        if let Some(a) = &f.abort {
            let what = if a.grpc_status.is_empty() {
                a.http_status.to_string()
            } else {
                format!("grpc {}", a.grpc_status)
            };
            parts.push(format!("abort {what} for {}%", trim_float(a.percentage)));
        }
    }
    if let Some(rw) = &r.rewrite {
        if !rw.uri.is_empty() {
            parts.push(format!("rewrite uri {}", rw.uri));
        }
        if !rw.authority.is_empty() {
            parts.push(format!("rewrite authority {}", rw.authority));
        }
    }
    let ops = |h: &Option<pb::HeaderOps>| {
        h.as_ref()
            .is_some_and(|h| !(h.set.is_empty() && h.add.is_empty() && h.remove.is_empty()))
    };
    if ops(&r.request_headers) {
        parts.push("request headers".into());
    }
    if ops(&r.response_headers) {
        parts.push("response headers".into());
    }
    for m in &r.mirrors {
        let mut to = m.service.clone();
        if !m.subset.is_empty() {
            let _ = write!(to, "/{}", m.subset);
        }
        parts.push(format!(
            "mirror {} {}%",
            or_dash(&to),
            trim_float(m.percentage.unwrap_or(100.0))
        ));
    }
    if parts.is_empty() {
        return "-".into();
    }
    parts.join("; ")
}

fn load_balancer(lb: Option<&pb::LoadBalancer>) -> String {
    let Some(lb) = lb else {
        return "LEAST_REQUEST (default)".into();
    };
    let mut s = match &lb.consistent_hash {
        Some(h) => {
            let key = if !h.http_header_name.is_empty() {
                format!("header {}", h.http_header_name)
            } else if let Some(c) = &h.http_cookie {
                format!("cookie {}", c.name)
            } else if h.use_source_ip {
                "source IP".into()
            } else if !h.http_query_parameter_name.is_empty() {
                format!("query parameter {}", h.http_query_parameter_name)
            } else {
                "-".into()
            };
            let algorithm = pb::consistent_hash::Algorithm::try_from(h.algorithm)
                .unwrap_or(pb::consistent_hash::Algorithm::RingHash);
            let size = match (h.table_size, algorithm) {
                (0, pb::consistent_hash::Algorithm::RingHash) => 1024,
                (0, pb::consistent_hash::Algorithm::Maglev) => 65537,
                (n, _) => n,
            };
            format!(
                "consistent hash on {key} ({} {size})",
                algorithm.as_str_name()
            )
        }
        None => pb::load_balancer::Simple::try_from(lb.simple)
            .map_or("?".into(), |s| s.as_str_name().to_string()),
    };
    if let Some(w) = &lb.warmup {
        let _ = write!(
            s,
            ", warmup {} from {}%",
            w.duration.as_ref().map_or("-".into(), duration),
            trim_float(w.minimum_percent.unwrap_or(10.0))
        );
    }
    s
}

/// Only what is set: every unset limit is unlimited, as in Istio.
fn connection_pool(pool: Option<&pb::ConnectionPool>) -> String {
    let Some(p) = pool else {
        return "unlimited (default)".into();
    };
    let mut parts = Vec::new();
    let mut limit = |name: &str, v: u32| {
        if v > 0 {
            parts.push(format!("{name} {v}"));
        }
    };
    limit("maxConnections", p.max_connections);
    limit("http1MaxPendingRequests", p.http1_max_pending_requests);
    limit("http2MaxRequests", p.http2_max_requests);
    limit("maxRequestsPerConnection", p.max_requests_per_connection);
    limit("maxRetries", p.max_retries);
    limit("maxConcurrentStreams", p.max_concurrent_streams);
    for (name, d) in [
        ("connectTimeout", &p.connect_timeout),
        ("idleTimeout", &p.idle_timeout),
        ("maxConnectionDuration", &p.max_connection_duration),
    ] {
        if let Some(d) = d {
            parts.push(format!("{name} {}", duration(d)));
        }
    }
    if let Some(k) = &p.tcp_keepalive {
        parts.push(format!(
            "tcpKeepalive (probes {}, time {}, interval {})",
            if k.probes == 0 {
                "OS".into()
            } else {
                k.probes.to_string()
            },
            k.time.as_ref().map_or("OS".into(), duration),
            k.interval.as_ref().map_or("OS".into(), duration)
        ));
    }
    if parts.is_empty() {
        return "unlimited (default)".into();
    }
    parts.join(", ")
}

/// Every value in force, Istio's defaults filled in: what `outlierDetection: {}` means is the
/// question people have.
fn outlier_detection(od: Option<&pb::OutlierDetection>) -> String {
    let Some(od) = od else {
        return "off (default)".into();
    };
    let count = |v: Option<u32>, default: u32| match v.unwrap_or(default) {
        0 => "off".to_string(),
        n => n.to_string(),
    };
    let mut parts = vec![
        format!(
            "consecutive5xxErrors {}",
            count(od.consecutive_5xx_errors, 5)
        ),
        format!(
            "consecutiveGatewayErrors {}",
            count(od.consecutive_gateway_errors, 0)
        ),
    ];
    if od.split_external_local_origin_errors {
        parts.push(format!(
            "consecutiveLocalOriginFailures {} (split)",
            count(od.consecutive_local_origin_failures, 5)
        ));
    }
    parts.push(format!(
        "interval {}",
        od.interval.as_ref().map_or("10s".into(), duration)
    ));
    parts.push(format!(
        "baseEjectionTime {}",
        od.base_ejection_time
            .as_ref()
            .map_or("30s".into(), duration)
    ));
    parts.push(format!(
        "maxEjectionPercent {}",
        od.max_ejection_percent.unwrap_or(10)
    ));
    parts.push(match od.min_health_percent {
        0 => "minHealthPercent 0 (no panic)".into(),
        n => format!("minHealthPercent {n}"),
    });
    parts.join(", ")
}

fn tls(t: Option<&pb::ClientTls>) -> String {
    use pb::client_tls::Mode;
    let Some(t) = t else {
        return "auto: mesh mTLS to sidecars, plaintext to the rest (default)".into();
    };
    let mode = Mode::try_from(t.mode).unwrap_or(Mode::Auto);
    let mut s = match mode {
        Mode::Auto => "auto: mesh mTLS to sidecars, plaintext to the rest".to_string(),
        m => m.as_str_name().to_string(),
    };
    if matches!(mode, Mode::Simple | Mode::Mutual) {
        if !t.sni.is_empty() {
            let _ = write!(s, ", sni {}", t.sni);
        }
        if !t.subject_alt_names.is_empty() {
            let _ = write!(s, ", SANs {}", t.subject_alt_names.join(","));
        }
        let _ = write!(
            s,
            ", CA {}",
            if t.ca_certificates.is_empty() {
                "system roots"
            } else {
                &t.ca_certificates
            }
        );
        if t.insecure_skip_verify {
            s.push_str(", NOT VERIFIED (insecureSkipVerify)");
        }
    }
    s
}

fn retry_budget(b: Option<&pb::RetryBudget>) -> String {
    match b {
        None => "none (default: retries capped by maxRetries only)".into(),
        Some(b) => format!(
            "{}% of active requests, at least {} concurrent",
            trim_float(b.percent.unwrap_or(20.0)),
            b.min_retry_concurrency.unwrap_or(3)
        ),
    }
}

/// `25ms`, `1.5s`, `1m`, `1m30s`, `2h`: how the YAML would say it.
pub(super) fn duration(d: &Duration) -> String {
    let total_ms = d.seconds.saturating_mul(1000) + i64::from(d.nanos) / 1_000_000;
    if total_ms < 0 {
        return format!("{}s", d.seconds);
    }
    millis(total_ms as u64)
}

fn millis(ms: u64) -> String {
    if ms < 1000 {
        return format!("{ms}ms");
    }
    if !ms.is_multiple_of(1000) && ms < 60_000 {
        return format!("{}s", trim_float(ms as f64 / 1000.0));
    }
    let secs = ms / 1000;
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        let _ = write!(out, "{h}h");
    }
    if m > 0 {
        let _ = write!(out, "{m}m");
    }
    if s > 0 || out.is_empty() {
        let _ = write!(out, "{s}s");
    }
    out
}

/// `10`, `12.5`, `33.3`: one decimal at most, none when whole.
fn trim_float(v: f64) -> String {
    let s = format!("{v:.1}");
    s.strip_suffix(".0").map(str::to_string).unwrap_or(s)
}

fn opt(v: Option<u64>) -> String {
    v.map_or("-".into(), |v| v.to_string())
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}

fn row<const N: usize>(cells: [&str; N]) -> Vec<String> {
    cells.iter().map(|c| c.to_string()).collect()
}

/// Left-aligned columns two spaces apart, as `sinewctl status` prints.
fn table(out: &mut String, indent: &str, rows: &[Vec<String>]) {
    let mut widths: BTreeMap<usize, usize> = BTreeMap::new();
    for r in rows {
        for (i, cell) in r.iter().enumerate() {
            let w = widths.entry(i).or_default();
            *w = (*w).max(cell.chars().count());
        }
    }
    for r in rows {
        let cells: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, cell)| format!("{cell:<w$}", w = widths[&i]))
            .collect();
        let _ = writeln!(out, "{indent}{}", cells.join("  ").trim_end());
    }
}
