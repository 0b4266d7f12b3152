//! Traffic policy resolution: which DestinationRule and VirtualService apply to one service port
//! as seen from one proxy, with Istio's rules exactly (reference §1.9, §3), compiled into the
//! `Service` fields 5–10 the proxy applies as they are.
//!
//! Promises:
//! - DestinationRule lookup: the proxy's namespace (every rule there, whatever its `exportTo`),
//!   then the service's namespace, then the root namespace (rules exported to the proxy's
//!   namespace); in each, the most specific host wins (exact, then the longest wildcard); a
//!   same-namespace rule whose `workloadSelector` matches the proxy's labels beats selector-less
//!   ones (outbound only); rules for the same host merge oldest first: the oldest policy wins,
//!   subsets are concatenated and a repeated subset name is dropped.
//! - Port-level settings replace the service-level blocks for that port (no inheritance); a
//!   subset's blocks replace the service's block by block.
//! - VirtualService: the ones exported to the proxy's namespace whose hosts cover the service;
//!   the proxy's namespace first, then exact hosts before wildcards, then the oldest; routes that
//!   cannot match this proxy or port (`port`, `sourceLabels`, `sourceNamespace`, `gateways`) are
//!   left out; destinations become resource names `fqdn:port`.
//! - Everything is a pure function of the rules, the proxy context and the service: the same
//!   inputs give the same bytes (and so the same version).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use pbjson_types::Duration as PbDuration;
use sinew_proto::config::v1 as pb;

use crate::registry::istio::virtual_service::{
    Destination, HeaderOperations, HttpMatchRequest, HttpRoute, StringMatch, VirtualServiceSpec,
};
use crate::registry::istio::{self, parse_duration};
use crate::registry::{DestinationRule, Snapshot, VirtualService, hosts};

/// Istio's default retry conditions (≥ 1.24: no 503), used when a route's `retries` names none.
pub const DEFAULT_RETRY_ON: [&str; 5] = [
    "connect-failure",
    "refused-stream",
    "unavailable",
    "cancelled",
    "retriable-status-codes",
];

/// Who is asking: the proxy's namespace and its pod's labels. Everything policy depends on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProxyContext {
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
}

/// The traffic rules of one snapshot, ready to resolve per proxy.
#[derive(Debug, Default, PartialEq)]
pub struct Rules {
    root_namespace: String,
    /// With their expanded hosts, oldest first.
    destination_rules: Vec<(String, DestinationRule)>,
    virtual_services: Vec<VirtualService>,
    /// Service ports by FQDN (a destination without a port takes the only one).
    ports: HashMap<String, Vec<u16>>,
    /// The label keys any rule reads (workload selectors, source labels): the only labels of a
    /// proxy that can change what it gets.
    label_keys: BTreeSet<String>,
}

/// The four blocks a port-level setting can hold, plus the retry budget.
#[derive(Debug, Clone, Default)]
struct Blocks<'r> {
    load_balancer: Option<&'r istio::LoadBalancer>,
    connection_pool: Option<&'r istio::ConnectionPool>,
    outlier_detection: Option<&'r istio::OutlierDetection>,
    tls: Option<&'r istio::ClientTls>,
    retry_budget: Option<&'r istio::RetryBudget>,
}

/// The merged DestinationRules for one host.
struct Merged<'r> {
    policy: Option<&'r istio::TrafficPolicy>,
    subsets: Vec<&'r istio::Subset>,
    sources: Vec<String>,
}

// === impl Rules ===

impl Rules {
    pub fn new(snapshot: &Snapshot, root_namespace: &str) -> Self {
        let mut ports: HashMap<String, Vec<u16>> = HashMap::new();
        for svc in snapshot.services().values() {
            ports.insert(svc.fqdn(), svc.ports.iter().map(|p| p.port).collect());
        }
        let mut label_keys = BTreeSet::new();
        for r in snapshot.destination_rules() {
            if let Some(sel) = &r.typed.workload_selector {
                label_keys.extend(sel.match_labels.iter().flatten().map(|(k, _)| k.clone()));
            }
        }
        for vs in snapshot.virtual_services() {
            let http = vs
                .spec
                .http
                .iter()
                .flatten()
                .flat_map(|r| r.matches.iter().flatten());
            for m in http {
                label_keys.extend(m.source_labels.iter().flatten().map(|(k, _)| k.clone()));
            }
            let tcp = vs
                .spec
                .tcp
                .iter()
                .flatten()
                .flat_map(|r| r.matches.iter().flatten());
            for m in tcp {
                label_keys.extend(m.source_labels.iter().flatten().map(|(k, _)| k.clone()));
            }
        }
        Self {
            label_keys,
            root_namespace: root_namespace.to_string(),
            destination_rules: snapshot
                .destination_rules()
                .iter()
                .map(|r| (hosts::expand(&r.host, &r.namespace), r.clone()))
                .collect(),
            virtual_services: snapshot.virtual_services().to_vec(),
            ports,
        }
    }

    /// `proxy` with only the labels some rule reads: contexts equal here resolve equally.
    pub fn relevant(&self, proxy: &ProxyContext) -> ProxyContext {
        ProxyContext {
            namespace: proxy.namespace.clone(),
            labels: proxy
                .labels
                .iter()
                .filter(|(k, _)| self.label_keys.contains(*k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }

    /// Whether any rule exists at all (without rules every service compiles as it is).
    pub fn is_empty(&self) -> bool {
        self.destination_rules.is_empty() && self.virtual_services.is_empty()
    }

    /// Fills `service`'s policy fields (5–10) for `proxy`, for port `port` of the service named
    /// `fqdn` in `namespace`.
    pub fn resolve(
        &self,
        proxy: &ProxyContext,
        namespace: &str,
        fqdn: &str,
        port: u16,
        service: &mut pb::Service,
    ) {
        service.port = u32::from(port);
        let merged = self.merge(&self.destination_rules_for(proxy, namespace, fqdn, true));
        if let Some(m) = &merged {
            let top = m.policy.map(|tp| port_blocks(tp, port)).unwrap_or_default();
            service.traffic_policy = traffic_policy(&top);
            service.subsets = m
                .subsets
                .iter()
                .map(|s| pb::Subset {
                    name: s.name.clone().unwrap_or_default(),
                    labels: s.labels.clone().unwrap_or_default().into_iter().collect(),
                    traffic_policy: traffic_policy(&subset_blocks(&top, s, port)),
                })
                .collect();
            service.policy_sources.extend(m.sources.iter().cloned());
        }
        if let Some(vs) = self.virtual_service_for(proxy, fqdn) {
            let spec = &vs.spec;
            // A declared protocol uses one table (as Istio builds one per port); a sniffed
            // port gets both, the proxy picks by what it detects.
            let protocol = pb::Protocol::try_from(service.protocol).unwrap_or_default();
            if protocol != pb::Protocol::Tcp {
                service.http_routes = self.http_routes(proxy, vs, spec, port);
            }
            if matches!(protocol, pb::Protocol::Tcp | pb::Protocol::Detect) {
                service.tcp_routes = self.tcp_routes(proxy, vs, spec, port);
            }
            service.policy_sources.push(format!(
                "VirtualService {}/{} ({})",
                vs.namespace,
                vs.name,
                vs.group()
            ));
        }
    }

    /// The connection pool for a pod's own port: the rule that applies to the Service selecting
    /// it (Istio applies connectionPool to inbound clusters; workload selectors are outbound only).
    pub fn inbound_pool(
        &self,
        proxy: &ProxyContext,
        namespace: &str,
        fqdn: &str,
        port: u16,
    ) -> Option<pb::ConnectionPool> {
        let merged = self.merge(&self.destination_rules_for(proxy, namespace, fqdn, false))?;
        let blocks = port_blocks(merged.policy?, port);
        blocks.connection_pool.map(connection_pool)
    }

    /// The rules that apply, oldest first (empty: none).
    fn destination_rules_for(
        &self,
        proxy: &ProxyContext,
        namespace: &str,
        fqdn: &str,
        outbound: bool,
    ) -> Vec<&DestinationRule> {
        let mut tried = BTreeSet::new();
        let lookups = [
            (proxy.namespace.as_str(), true),
            (namespace, false),
            (self.root_namespace.as_str(), false),
        ];
        for (ns, local) in lookups {
            if !tried.insert(ns) {
                continue;
            }
            let candidates: Vec<(&str, &DestinationRule, bool)> = self
                .destination_rules
                .iter()
                .filter(|(host, r)| r.namespace == ns && hosts::matches(host, fqdn))
                .filter_map(|(host, r)| {
                    let selected = match &r.typed.workload_selector {
                        None => false,
                        // Private to their namespace and outbound only, and only for their pods.
                        Some(sel) if local && outbound => {
                            let wanted = sel.match_labels.clone().unwrap_or_default();
                            if !wanted.iter().all(|(k, v)| proxy.labels.get(k) == Some(v)) {
                                return None;
                            }
                            true
                        }
                        Some(_) => return None,
                    };
                    let visible = local
                        || exported_to(r.typed.export_to.as_ref(), &r.namespace, &proxy.namespace);
                    visible.then_some((host.as_str(), r, selected))
                })
                .collect();
            // The most specific host: exact, then the longest wildcard, then alphabetical.
            let Some(best) = candidates.iter().map(|(h, _, _)| *h).max_by(|a, b| {
                hosts::specificity(a)
                    .cmp(&hosts::specificity(b))
                    .then_with(|| b.cmp(a))
            }) else {
                continue;
            };
            let for_host: Vec<_> = candidates
                .into_iter()
                .filter(|(h, _, _)| *h == best)
                .collect();
            let any_selected = for_host.iter().any(|(_, _, s)| *s);
            return for_host
                .into_iter()
                .filter(|(_, _, s)| *s == any_selected)
                .map(|(_, r, _)| r)
                .collect();
        }
        Vec::new()
    }

    fn merge<'r>(&self, rules: &[&'r DestinationRule]) -> Option<Merged<'r>> {
        if rules.is_empty() {
            return None;
        }
        let mut names = BTreeSet::new();
        let mut subsets = Vec::new();
        for r in rules {
            for s in r.typed.subsets.iter().flatten() {
                // A repeated name is dropped (warned about when the snapshot was built).
                if names.insert(s.name.as_deref().unwrap_or_default()) {
                    subsets.push(s);
                }
            }
        }
        Some(Merged {
            policy: rules.iter().find_map(|r| r.typed.traffic_policy.as_ref()),
            subsets,
            sources: rules
                .iter()
                .map(|r| format!("DestinationRule {}/{} ({})", r.namespace, r.name, r.group()))
                .collect(),
        })
    }

    fn virtual_service_for(&self, proxy: &ProxyContext, fqdn: &str) -> Option<&VirtualService> {
        self.virtual_services
            .iter()
            .filter(|vs| exported_to(vs.spec.export_to.as_ref(), &vs.namespace, &proxy.namespace))
            .filter_map(|vs| {
                let best = vs
                    .expanded_hosts()
                    .filter(|h| hosts::matches(h, fqdn))
                    .map(|h| hosts::specificity(&h))
                    .max()?;
                Some((
                    vs.namespace != proxy.namespace,
                    std::cmp::Reverse(best),
                    &vs.age,
                    vs,
                ))
            })
            .min_by(|a, b| (a.0, a.1, a.2).cmp(&(b.0, b.1, b.2)))
            .map(|(_, _, _, vs)| vs)
    }

    fn destination_name(&self, d: &Destination, vs: &VirtualService, port: u16) -> String {
        let fqdn = hosts::expand(d.host.as_deref().unwrap_or_default(), &vs.namespace);
        let port = d
            .port
            .as_ref()
            .and_then(|p| p.number)
            .and_then(|n| u16::try_from(n).ok())
            .or_else(|| match self.ports.get(&fqdn).map(Vec::as_slice) {
                Some([only]) => Some(*only),
                _ => None,
            })
            .unwrap_or(port);
        format!("{fqdn}:{port}")
    }

    fn http_routes(
        &self,
        proxy: &ProxyContext,
        vs: &VirtualService,
        spec: &VirtualServiceSpec,
        port: u16,
    ) -> Vec<pb::HttpRoute> {
        let mut out = Vec::new();
        for (i, route) in spec.http.iter().flatten().enumerate() {
            let written = route.matches.as_deref().unwrap_or_default();
            let kept: Vec<&HttpMatchRequest> = written
                .iter()
                .filter(|m| {
                    applies(
                        proxy,
                        port,
                        m.port,
                        m.source_labels.as_ref(),
                        m.source_namespace.as_deref(),
                        m.gateways.as_ref(),
                    )
                })
                .collect();
            if !written.is_empty() && kept.is_empty() {
                continue;
            }
            out.push(self.http_route(vs, route, i, &kept, port));
        }
        out
    }

    fn http_route(
        &self,
        vs: &VirtualService,
        route: &HttpRoute,
        index: usize,
        matches: &[&HttpMatchRequest],
        port: u16,
    ) -> pb::HttpRoute {
        let written = route.route.as_deref().unwrap_or_default();
        let several = written.len() > 1;
        let destinations = written
            .iter()
            // Istio drops zero-weight destinations of a split.
            .filter(|d| !several || d.weight.unwrap_or(0) > 0)
            .filter_map(|d| {
                let dest = d.destination.as_ref()?;
                let headers = d.headers.as_ref();
                Some(pb::RouteDestination {
                    service: self.destination_name(dest, vs, port),
                    subset: dest.subset.clone().unwrap_or_default(),
                    weight: d.weight.map_or(0, |w| w.max(0).unsigned_abs()),
                    request_headers: headers.and_then(|h| header_ops(h.request.as_ref())),
                    response_headers: headers.and_then(|h| header_ops(h.response.as_ref())),
                })
            })
            .collect();
        let mut mirrors = Vec::new();
        if let Some(m) = &route.mirror {
            let percentage = route
                .mirror_percentage
                .as_ref()
                .and_then(|p| p.value)
                .or(route.mirror_percent.map(f64::from));
            mirrors.push(pb::Mirror {
                service: self.destination_name(m, vs, port),
                subset: m.subset.clone().unwrap_or_default(),
                percentage,
            });
        }
        for m in route.mirrors.iter().flatten() {
            let Some(dest) = &m.destination else { continue };
            mirrors.push(pb::Mirror {
                service: self.destination_name(dest, vs, port),
                subset: dest.subset.clone().unwrap_or_default(),
                percentage: m.percentage.as_ref().and_then(|p| p.value),
            });
        }
        pb::HttpRoute {
            name: route
                .name
                .clone()
                .unwrap_or_else(|| format!("{}/{}#{index}", vs.namespace, vs.name)),
            matches: matches.iter().map(|m| http_match(m)).collect(),
            destinations,
            redirect: route.redirect.as_ref().map(|r| pb::Redirect {
                uri: r.uri.clone().unwrap_or_default(),
                authority: r.authority.clone().unwrap_or_default(),
                port: r.port.unwrap_or(0),
                scheme: r.scheme.clone().unwrap_or_default(),
                redirect_code: r.redirect_code.unwrap_or(0),
            }),
            rewrite: rewrite(route),
            timeout: duration(route.timeout.as_ref()),
            retries: route.retries.as_ref().map(retry_policy),
            fault: route.fault.as_ref().map(|f| pb::Fault {
                delay: f.delay.as_ref().map(|d| pb::FaultDelay {
                    fixed_delay: duration(d.fixed_delay.as_ref()),
                    // No percentage: nothing is delayed (Istio's translation).
                    percentage: d
                        .percentage
                        .as_ref()
                        .and_then(|p| p.value)
                        .or(d.percent.map(f64::from))
                        .unwrap_or(0.0),
                }),
                abort: f.abort.as_ref().map(|a| pb::FaultAbort {
                    http_status: a.http_status.map_or(0, |s| s.max(0).unsigned_abs()),
                    grpc_status: a.grpc_status.clone().unwrap_or_default(),
                    percentage: a.percentage.as_ref().and_then(|p| p.value).unwrap_or(0.0),
                }),
            }),
            request_headers: route
                .headers
                .as_ref()
                .and_then(|h| header_ops(h.request.as_ref()))
                .map(without_authority),
            response_headers: route
                .headers
                .as_ref()
                .and_then(|h| header_ops(h.response.as_ref())),
            mirrors,
        }
    }

    fn tcp_routes(
        &self,
        proxy: &ProxyContext,
        vs: &VirtualService,
        spec: &VirtualServiceSpec,
        port: u16,
    ) -> Vec<pb::TcpRoute> {
        let mut out = Vec::new();
        for route in spec.tcp.iter().flatten() {
            let written = route.matches.as_deref().unwrap_or_default();
            let applicable = written.is_empty()
                || written.iter().any(|m| {
                    applies(
                        proxy,
                        port,
                        m.port,
                        m.source_labels.as_ref(),
                        m.source_namespace.as_deref(),
                        m.gateways.as_ref(),
                    )
                });
            if !applicable {
                continue;
            }
            let all = route.route.as_deref().unwrap_or_default();
            let several = all.len() > 1;
            let destinations = all
                .iter()
                .filter(|d| !several || d.weight.unwrap_or(0) > 0)
                .filter_map(|d| {
                    let dest = d.destination.as_ref()?;
                    Some(pb::RouteDestination {
                        service: self.destination_name(dest, vs, port),
                        subset: dest.subset.clone().unwrap_or_default(),
                        weight: d.weight.map_or(0, |w| w.max(0).unsigned_abs()),
                        ..Default::default()
                    })
                })
                .collect();
            out.push(pb::TcpRoute { destinations });
        }
        out
    }
}

/// `exportTo`: empty is everywhere; `.` the rule's own namespace; `*` everywhere; else names.
fn exported_to(export_to: Option<&Vec<String>>, own: &str, to: &str) -> bool {
    match export_to {
        None => true,
        Some(list) if list.is_empty() => true,
        Some(list) => list
            .iter()
            .any(|e| e == "*" || e == to || (e == "." && own == to)),
    }
}

/// Whether a match block can match this proxy at this port (the parts the control plane
/// resolves; the rest is the proxy's per request).
fn applies(
    proxy: &ProxyContext,
    port: u16,
    match_port: Option<u32>,
    source_labels: Option<&BTreeMap<String, String>>,
    source_namespace: Option<&str>,
    gateways: Option<&Vec<String>>,
) -> bool {
    match_port.is_none_or(|p| p == u32::from(port))
        && source_labels
            .into_iter()
            .flatten()
            .all(|(k, v)| proxy.labels.get(k) == Some(v))
        && source_namespace.is_none_or(|ns| ns.is_empty() || ns == proxy.namespace)
        && gateways.is_none_or(|g| g.is_empty() || g.iter().any(|g| g == "mesh"))
}

// === DestinationRule blocks ===

/// The service-level blocks for `port`: a matching port-level entry replaces them all.
fn port_blocks(tp: &istio::TrafficPolicy, port: u16) -> Blocks<'_> {
    let entry = tp
        .port_level_settings
        .iter()
        .flatten()
        .find(|p| p.port.as_ref().and_then(|p| p.number) == Some(u32::from(port)));
    match entry {
        // No inheritance, and only the four blocks a port entry has (Istio drops the rest).
        Some(p) => Blocks {
            load_balancer: p.load_balancer.as_ref(),
            connection_pool: p.connection_pool.as_ref(),
            outlier_detection: p.outlier_detection.as_ref(),
            tls: p.tls.as_ref(),
            retry_budget: None,
        },
        None => Blocks {
            load_balancer: tp.load_balancer.as_ref(),
            connection_pool: tp.connection_pool.as_ref(),
            outlier_detection: tp.outlier_detection.as_ref(),
            tls: tp.tls.as_ref(),
            retry_budget: tp.retry_budget.as_ref(),
        },
    }
}

/// A subset's blocks over the service's, block by block; its own port-level entry for `port`
/// then replaces the four port blocks.
fn subset_blocks<'r>(top: &Blocks<'r>, subset: &'r istio::Subset, port: u16) -> Blocks<'r> {
    let mut b = top.clone();
    let Some(tp) = &subset.traffic_policy else {
        return b;
    };
    b.load_balancer = tp.load_balancer.as_ref().or(b.load_balancer);
    b.connection_pool = tp.connection_pool.as_ref().or(b.connection_pool);
    b.outlier_detection = tp.outlier_detection.as_ref().or(b.outlier_detection);
    b.tls = tp.tls.as_ref().or(b.tls);
    b.retry_budget = tp.retry_budget.as_ref().or(b.retry_budget);
    if let Some(p) = tp
        .port_level_settings
        .iter()
        .flatten()
        .find(|p| p.port.as_ref().and_then(|p| p.number) == Some(u32::from(port)))
    {
        b.load_balancer = p.load_balancer.as_ref();
        b.connection_pool = p.connection_pool.as_ref();
        b.outlier_detection = p.outlier_detection.as_ref();
        b.tls = p.tls.as_ref();
    }
    b
}

fn traffic_policy(b: &Blocks<'_>) -> Option<pb::TrafficPolicy> {
    let tp = pb::TrafficPolicy {
        load_balancer: b.load_balancer.map(load_balancer),
        connection_pool: b.connection_pool.map(connection_pool),
        outlier_detection: b.outlier_detection.map(outlier_detection),
        tls: b.tls.map(client_tls),
        retry_budget: b.retry_budget.map(|r| pb::RetryBudget {
            percent: r.percent,
            min_retry_concurrency: r.min_retry_concurrency,
        }),
    };
    (tp != pb::TrafficPolicy::default()).then_some(tp)
}

fn duration(text: Option<&String>) -> Option<PbDuration> {
    let d = parse_duration(text?)?;
    Some(PbDuration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    })
}

/// Istio applies pool sizes only when positive (zero and unset cannot be told apart).
fn positive(n: Option<i32>) -> u32 {
    n.filter(|n| *n > 0).map_or(0, i32::unsigned_abs)
}

fn load_balancer(lb: &istio::LoadBalancer) -> pb::LoadBalancer {
    use istio::SimpleLb;
    use pb::load_balancer::Simple;
    let simple = match lb.simple {
        Some(SimpleLb::ROUND_ROBIN) => Simple::RoundRobin,
        Some(SimpleLb::RANDOM) => Simple::Random,
        Some(SimpleLb::PASSTHROUGH) => Simple::Passthrough,
        // UNSPECIFIED, LEAST_CONN (deprecated alias) and unset: Istio's default.
        _ => Simple::LeastRequest,
    };
    let consistent_hash = lb.consistent_hash.as_ref().map(|ch| {
        use pb::consistent_hash::Algorithm;
        let (algorithm, table_size) = match (&ch.maglev, &ch.ring_hash) {
            (Some(m), _) => (Algorithm::Maglev, m.table_size.unwrap_or(65537)),
            (None, Some(r)) => (
                Algorithm::RingHash,
                r.minimum_ring_size.filter(|n| *n > 0).unwrap_or(1024),
            ),
            (None, None) => (
                Algorithm::RingHash,
                ch.minimum_ring_size.filter(|n| *n > 0).unwrap_or(1024),
            ),
        };
        pb::ConsistentHash {
            http_header_name: ch.http_header_name.clone().unwrap_or_default(),
            http_cookie: ch.http_cookie.as_ref().map(|c| pb::HttpCookie {
                name: c.name.clone().unwrap_or_default(),
                path: c.path.clone().unwrap_or_default(),
                ttl: duration(c.ttl.as_ref()),
            }),
            use_source_ip: ch.use_source_ip.unwrap_or(false),
            http_query_parameter_name: ch.http_query_parameter_name.clone().unwrap_or_default(),
            algorithm: algorithm as i32,
            table_size,
        }
    });
    let warmup = match (&lb.warmup, &lb.warmup_duration_secs) {
        (Some(w), _) => Some(pb::Warmup {
            duration: duration(w.duration.as_ref()),
            minimum_percent: w.minimum_percent,
            aggression: w.aggression,
        }),
        (None, Some(d)) => Some(pb::Warmup {
            duration: duration(Some(d)),
            ..Default::default()
        }),
        (None, None) => None,
    };
    pb::LoadBalancer {
        simple: simple as i32,
        consistent_hash,
        warmup,
    }
}

fn connection_pool(pool: &istio::ConnectionPool) -> pb::ConnectionPool {
    let tcp = pool.tcp.as_ref();
    let http = pool.http.as_ref();
    pb::ConnectionPool {
        max_connections: positive(tcp.and_then(|t| t.max_connections)),
        connect_timeout: duration(tcp.and_then(|t| t.connect_timeout.as_ref())),
        tcp_keepalive: tcp
            .and_then(|t| t.tcp_keepalive.as_ref())
            .map(|k| pb::TcpKeepalive {
                probes: k.probes.unwrap_or(0),
                time: duration(k.time.as_ref()),
                interval: duration(k.interval.as_ref()),
            }),
        max_connection_duration: duration(tcp.and_then(|t| t.max_connection_duration.as_ref())),
        // http.idleTimeout wins over tcp.idleTimeout (Istio's order).
        idle_timeout: duration(
            http.and_then(|h| h.idle_timeout.as_ref())
                .or(tcp.and_then(|t| t.idle_timeout.as_ref())),
        ),
        http1_max_pending_requests: positive(http.and_then(|h| h.http1_max_pending_requests)),
        http2_max_requests: positive(http.and_then(|h| h.http2_max_requests)),
        max_requests_per_connection: positive(http.and_then(|h| h.max_requests_per_connection)),
        max_retries: positive(http.and_then(|h| h.max_retries)),
        max_concurrent_streams: positive(http.and_then(|h| h.max_concurrent_streams)),
    }
}

fn outlier_detection(o: &istio::OutlierDetection) -> pb::OutlierDetection {
    // Deprecated `consecutiveErrors` means gateway errors and turns 5xx counting off, unless
    // `consecutive5xxErrors` says otherwise (Istio's translation).
    let legacy = o
        .consecutive_errors
        .filter(|n| *n > 0)
        .map(i32::unsigned_abs);
    pb::OutlierDetection {
        consecutive_5xx_errors: o.consecutive_5xx_errors.or(legacy.map(|_| 0)),
        consecutive_gateway_errors: o.consecutive_gateway_errors.or(legacy),
        split_external_local_origin_errors: o.split_external_local_origin_errors.unwrap_or(false),
        consecutive_local_origin_failures: o.consecutive_local_origin_failures,
        interval: duration(o.interval.as_ref()),
        base_ejection_time: duration(o.base_ejection_time.as_ref()),
        max_ejection_percent: o
            .max_ejection_percent
            .filter(|n| *n > 0)
            .map(i32::unsigned_abs),
        min_health_percent: positive(o.min_health_percent),
    }
}

fn client_tls(t: &istio::ClientTls) -> pb::ClientTls {
    use istio::TlsMode;
    use pb::client_tls::Mode;
    let mode = match t.mode {
        // A `tls` block without a mode is DISABLE, Istio's zero value.
        None | Some(TlsMode::DISABLE) => Mode::Disable,
        Some(TlsMode::SIMPLE) => Mode::Simple,
        Some(TlsMode::MUTUAL) => Mode::Mutual,
        Some(TlsMode::ISTIO_MUTUAL) => Mode::IstioMutual,
    };
    pb::ClientTls {
        mode: mode as i32,
        client_certificate: t.client_certificate.clone().unwrap_or_default(),
        private_key: t.private_key.clone().unwrap_or_default(),
        ca_certificates: t.ca_certificates.clone().unwrap_or_default(),
        subject_alt_names: t.subject_alt_names.clone().unwrap_or_default(),
        sni: t.sni.clone().unwrap_or_default(),
        insecure_skip_verify: t.insecure_skip_verify.unwrap_or(false),
    }
}

// === VirtualService parts ===

fn string_match(m: &StringMatch) -> pb::StringMatch {
    use pb::string_match::Kind;
    let kind = match (&m.exact, &m.prefix, &m.regex) {
        (Some(e), _, _) => Kind::Exact(e.clone()),
        (None, Some(p), _) => Kind::Prefix(p.clone()),
        (None, None, Some(r)) => Kind::Regex(r.clone()),
        // Validation requires one; an empty prefix matches anything.
        (None, None, None) => Kind::Prefix(String::new()),
    };
    pb::StringMatch { kind: Some(kind) }
}

fn string_matches(
    map: Option<&BTreeMap<String, StringMatch>>,
    lower: bool,
) -> BTreeMap<String, pb::StringMatch> {
    map.into_iter()
        .flatten()
        .map(|(k, v)| {
            let k = if lower {
                k.to_ascii_lowercase()
            } else {
                k.clone()
            };
            (k, string_match(v))
        })
        .collect()
}

fn http_match(m: &HttpMatchRequest) -> pb::HttpMatch {
    pb::HttpMatch {
        uri: m.uri.as_ref().map(string_match),
        scheme: m.scheme.as_ref().map(string_match),
        method: m.method.as_ref().map(string_match),
        authority: m.authority.as_ref().map(string_match),
        headers: string_matches(m.headers.as_ref(), true),
        query_params: string_matches(m.query_params.as_ref(), false),
        without_headers: string_matches(m.without_headers.as_ref(), true)
            .into_iter()
            .map(|(k, v)| match v.kind {
                // Istio's `regex: "*"` here means "the header is present": any value.
                Some(pb::string_match::Kind::Regex(re)) if re == "*" => (
                    k,
                    pb::StringMatch {
                        kind: Some(pb::string_match::Kind::Regex(".*".into())),
                    },
                ),
                kind => (k, pb::StringMatch { kind }),
            })
            .collect(),
        ignore_uri_case: m.ignore_uri_case.unwrap_or(false),
        name: m.name.clone().unwrap_or_default(),
    }
}

/// `rewrite`, with a route's `host`/`:authority` request header as its authority (Istio turns
/// that header into a host rewrite; validation allows one of the two).
fn rewrite(route: &HttpRoute) -> Option<pb::Rewrite> {
    let from_header = route
        .headers
        .as_ref()
        .and_then(|h| h.request.as_ref())
        .and_then(|ops| {
            ops.set
                .iter()
                .flatten()
                .chain(ops.add.iter().flatten())
                .find(|(k, _)| is_authority(k))
                .map(|(_, v)| v.clone())
        });
    match (&route.rewrite, from_header) {
        (None, None) => None,
        (rw, header) => Some(pb::Rewrite {
            uri: rw.as_ref().and_then(|r| r.uri.clone()).unwrap_or_default(),
            authority: header
                .or_else(|| rw.as_ref().and_then(|r| r.authority.clone()))
                .unwrap_or_default(),
        }),
    }
}

fn is_authority(name: &str) -> bool {
    name.eq_ignore_ascii_case(":authority") || name.eq_ignore_ascii_case("host")
}

/// Header operations without the authority (carried by the rewrite instead).
fn without_authority(mut ops: pb::HeaderOps) -> pb::HeaderOps {
    ops.set.retain(|k, _| !is_authority(k));
    ops.add.retain(|k, _| !is_authority(k));
    ops
}

fn header_ops(ops: Option<&HeaderOperations>) -> Option<pb::HeaderOps> {
    let ops = ops?;
    Some(pb::HeaderOps {
        set: ops.set.clone().unwrap_or_default().into_iter().collect(),
        add: ops.add.clone().unwrap_or_default().into_iter().collect(),
        remove: ops.remove.clone().unwrap_or_default(),
    })
}

/// Istio's `ConvertPolicy`: bare status codes become `retriable_status_codes` (and add the
/// `retriable-status-codes` condition); no conditions keep the default ones.
fn retry_policy(r: &crate::registry::istio::virtual_service::HttpRetry) -> pb::RetryPolicy {
    let mut retry_on = Vec::new();
    let mut codes = Vec::new();
    let mut ignored = false;
    for cond in r.retry_on.as_deref().unwrap_or_default().split(',') {
        let cond = cond.trim();
        match cond.parse::<u32>() {
            Ok(code) => codes.push(code),
            // Validation warned about the ones the proxy cannot apply.
            Err(_) if crate::registry::RETRY_ON_IGNORED.contains(&cond) => ignored = true,
            Err(_) if !cond.is_empty() && !retry_on.iter().any(|c| c == cond) => {
                retry_on.push(cond.to_string())
            }
            Err(_) => {}
        }
    }
    if !codes.is_empty() && !retry_on.iter().any(|c| c == "retriable-status-codes") {
        retry_on.push("retriable-status-codes".to_string());
    }
    // Only conditions the proxy cannot check: it must not retry on the default ones instead.
    let attempts = if retry_on.is_empty() && ignored {
        0
    } else {
        r.attempts.map_or(0, |a| a.max(0).unsigned_abs())
    };
    if retry_on.is_empty() {
        retry_on = DEFAULT_RETRY_ON.iter().map(|c| c.to_string()).collect();
    }
    pb::RetryPolicy {
        attempts,
        per_try_timeout: duration(r.per_try_timeout.as_ref()),
        retry_on,
        retriable_status_codes: codes,
        backoff: duration(r.backoff.as_ref()),
        retry_ignore_previous_hosts: r.retry_ignore_previous_hosts,
    }
}

#[cfg(test)]
mod tests;
