//! Proxy metrics in Prometheus' text format.
//!
//! Counters on the request path are resolved once at start-up and then only incremented
//! (an atomic add): no label hashing or locking per request.

use crate::http::Overflow;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    Inbound,
    Outbound,
}

impl Direction {
    fn as_str(self) -> &'static str {
        match self {
            Self::Inbound => "inbound",
            Self::Outbound => "outbound",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConnLabels {
    direction: &'static str,
    protocol: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReqLabels {
    direction: &'static str,
    status_class: &'static str,
}

/// What a connection turned out to be, for the connection counters.
#[derive(Clone, Copy, Debug)]
pub enum ConnKind {
    Http1,
    Http2,
    Tcp,
    MeshH2,
    MeshH1,
    MeshTcp,
    Passthrough,
    Refused,
}

const CONN_KINDS: [(ConnKind, &str); 8] = [
    (ConnKind::Http1, "http1"),
    (ConnKind::Http2, "http2"),
    (ConnKind::Tcp, "tcp"),
    (ConnKind::MeshH2, "mesh_h2"),
    (ConnKind::MeshH1, "mesh_h1"),
    (ConnKind::MeshTcp, "mesh_tcp"),
    (ConnKind::Passthrough, "passthrough"),
    (ConnKind::Refused, "refused"),
];
/// Why a connection was closed as soon as it was accepted.
#[derive(Clone, Copy, Debug)]
pub enum RefuseReason {
    /// `limits.maxConnections` connections were already open.
    Limit,
    /// An outbound destination inside `meshAddressRanges` that the control plane did not
    /// resolve in time: closed rather than sent in plaintext.
    Unresolved,
}

const REFUSE_REASONS: [(RefuseReason, &str); 2] = [
    (RefuseReason::Limit, "limit"),
    (RefuseReason::Unresolved, "unresolved"),
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceLabel {
    service: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OverflowLabels {
    service: String,
    kind: &'static str,
}

const OVERFLOW_KINDS: [Overflow; 4] = [
    Overflow::Pending,
    Overflow::Requests,
    Overflow::Connections,
    Overflow::Retries,
];

/// Traffic-policy counters of one upstream service. Resolve once (per destination or per
/// error) and increment: the label lookup takes a lock, the increments do not.
#[derive(Clone, Debug, Default)]
pub struct Upstream {
    overflows: [Counter; 4],
    pub ejections: Counter,
    pub retries: Counter,
    pub timeouts: Counter,
}

impl Upstream {
    pub fn overflow(&self, kind: Overflow) {
        self.overflows[kind as usize].inc();
    }

    pub fn overflow_by(&self, kind: Overflow, n: u64) {
        self.overflows[kind as usize].inc_by(n);
    }
}

const CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "error"];

pub struct Metrics {
    registry: Registry,
    /// Istio's standard metrics (`istio_*`, unprefixed), served alongside ours.
    pub istio: crate::telemetry::metrics::IstioMetrics,
    /// Access-log lines dropped because the writer fell behind.
    pub access_log_dropped: Counter,
    /// Authorization decisions (`sinew_authz_decisions_total`).
    pub authz: crate::authz::AuthzMetrics,
    conns: [[Counter; 8]; 2],
    refused: [[Counter; 2]; 2],
    idle_closed: [Counter; 2],
    pub connections_limit: Gauge,
    requests: [[Counter; 6]; 2],
    pub active_connections: [Gauge; 2],
    pub detect_timeouts: Counter,
    pub tls_failures: [Counter; 2],
    pub ready: Gauge,
    pub config_rejections: Counter,
    overflows: Family<OverflowLabels, Counter>,
    ejections: Family<ServiceLabel, Counter>,
    retries: Family<ServiceLabel, Counter>,
    timeouts: Family<ServiceLabel, Counter>,
    /// Span export (`sinew_trace_spans_*_total`), counted by the tracer.
    pub trace: crate::telemetry::trace::export::Counters,
}

// === impl Metrics ===

impl Metrics {
    pub fn new() -> Self {
        Self::with_series_cap(
            crate::telemetry::metrics::DEFAULT_MAX_SERIES,
            crate::telemetry::metrics::DEFAULT_MAX_LABEL_SETS,
        )
    }

    /// With `max_series` Istio series per group and `max_label_sets` peer label sets (see
    /// [`crate::telemetry::metrics`]).
    pub fn with_series_cap(max_series: usize, max_label_sets: usize) -> Self {
        let mut root = Registry::default();
        let overflowed = Counter::default();
        let istio = crate::telemetry::metrics::IstioMetrics::register(
            &mut root,
            max_series,
            max_label_sets,
            overflowed.clone(),
        );
        let registry = root.sub_registry_with_prefix("sinew");
        registry.register(
            "metrics_label_overflow",
            "Istio metric label sets or series past the cap, counted in the series whose peer \
             labels read \"unknown\" instead",
            overflowed,
        );
        let access_log_dropped = Counter::default();
        registry.register(
            "access_log_dropped",
            "Access-log lines dropped because the writer fell behind (the request never waits)",
            access_log_dropped.clone(),
        );
        let authz = crate::authz::AuthzMetrics::register(registry);
        let conn_family = Family::<ConnLabels, Counter>::default();
        let req_family = Family::<ReqLabels, Counter>::default();
        let active = Family::<[(&'static str, &'static str); 1], Gauge>::default();
        let tls = Family::<[(&'static str, &'static str); 1], Counter>::default();
        registry.register(
            "tcp_connections_opened",
            "TCP connections accepted, by direction and detected protocol",
            conn_family.clone(),
        );
        registry.register(
            "requests",
            "HTTP requests proxied, by direction and response status class",
            req_family.clone(),
        );
        registry.register(
            "tcp_connections_active",
            "Connections currently open, by direction",
            active.clone(),
        );
        let refused = Family::<[(&'static str, &'static str); 2], Counter>::default();
        registry.register(
            "tcp_connections_refused",
            "Connections closed as soon as they were accepted, by direction and reason \
             (limit: limits.maxConnections reached; unresolved: a mesh-range destination the \
             control plane did not resolve in time)",
            refused.clone(),
        );
        let idle = Family::<[(&'static str, &'static str); 1], Counter>::default();
        registry.register(
            "tcp_connections_idle_closed",
            "Connections the proxy closed because they stayed idle for timeouts.idle (HTTP) or \
             timeouts.tcpIdle (opaque TCP), by direction",
            idle.clone(),
        );
        let connections_limit = Gauge::default();
        registry.register(
            "tcp_connections_limit",
            "limits.maxConnections: most connections open at once, both directions together",
            connections_limit.clone(),
        );
        let detect_timeouts = Counter::default();
        registry.register(
            "protocol_detect_timeouts",
            "Connections treated as opaque TCP because the client sent nothing in time",
            detect_timeouts.clone(),
        );
        registry.register(
            "tls_handshake_failures",
            "Mesh TLS handshakes that failed, by direction",
            tls.clone(),
        );
        let config_rejections = Counter::default();
        registry.register(
            "config_rejections",
            "Config responses from the control plane that could not be applied (NACKed)",
            config_rejections.clone(),
        );
        let ready = Gauge::default();
        registry.register("ready", "1 once the proxy is ready to serve", ready.clone());
        // Per upstream service: one series per service this proxy sends to (bounded by its
        // config), created on first use.
        let overflows = Family::<OverflowLabels, Counter>::default();
        registry.register(
            "upstream_rq_overflow",
            "Requests refused at once because a connection-pool limit (circuit breaker) was \
             full, by service and kind (pending, requests, connections, retries)",
            overflows.clone(),
        );
        let ejections = Family::<ServiceLabel, Counter>::default();
        registry.register(
            "outlier_ejections",
            "Endpoints ejected by outlier detection, by service",
            ejections.clone(),
        );
        let retries = Family::<ServiceLabel, Counter>::default();
        registry.register(
            "upstream_rq_retry",
            "Retries attempted, by service",
            retries.clone(),
        );
        let timeouts = Family::<ServiceLabel, Counter>::default();
        registry.register(
            "upstream_rq_timeout",
            "Requests that got 504 because the route timeout expired, by service",
            timeouts.clone(),
        );
        let trace = crate::telemetry::trace::export::Counters::default();
        registry.register(
            "trace_spans_dropped",
            "Sampled spans not exported: the export queue was full, or the collector failed or \
             did not answer in time",
            trace.dropped.clone(),
        );
        registry.register(
            "trace_spans_exported",
            "Spans the OTLP collector accepted",
            trace.exported.clone(),
        );
        registry.register(
            "trace_export_failures",
            "Span batches the OTLP collector refused or did not answer in time",
            trace.failed.clone(),
        );

        let dirs = [Direction::Inbound, Direction::Outbound];
        let conns = dirs.map(|d| {
            CONN_KINDS.map(|(_, p)| {
                conn_family
                    .get_or_create(&ConnLabels {
                        direction: d.as_str(),
                        protocol: p,
                    })
                    .clone()
            })
        });
        let requests = dirs.map(|d| {
            CLASSES.map(|c| {
                req_family
                    .get_or_create(&ReqLabels {
                        direction: d.as_str(),
                        status_class: c,
                    })
                    .clone()
            })
        });
        let active_connections =
            dirs.map(|d| active.get_or_create(&[("direction", d.as_str())]).clone());
        let tls_failures = dirs.map(|d| tls.get_or_create(&[("direction", d.as_str())]).clone());
        let refused = dirs.map(|d| {
            REFUSE_REASONS.map(|(_, r)| {
                refused
                    .get_or_create(&[("direction", d.as_str()), ("reason", r)])
                    .clone()
            })
        });
        let idle_closed = dirs.map(|d| idle.get_or_create(&[("direction", d.as_str())]).clone());
        Self {
            registry: root,
            istio,
            access_log_dropped,
            authz,
            conns,
            refused,
            idle_closed,
            connections_limit,
            requests,
            active_connections,
            detect_timeouts,
            tls_failures,
            ready,
            config_rejections,
            overflows,
            ejections,
            retries,
            timeouts,
            trace,
        }
    }

    /// The traffic-policy counters of `service` (created on first use).
    pub fn upstream(&self, service: &str) -> Upstream {
        let label = ServiceLabel {
            service: service.to_owned(),
        };
        Upstream {
            overflows: OVERFLOW_KINDS.map(|k| {
                self.overflows
                    .get_or_create(&OverflowLabels {
                        service: service.to_owned(),
                        kind: k.as_str(),
                    })
                    .clone()
            }),
            ejections: self.ejections.get_or_create(&label).clone(),
            retries: self.retries.get_or_create(&label).clone(),
            timeouts: self.timeouts.get_or_create(&label).clone(),
        }
    }

    pub fn connection(&self, dir: Direction, kind: ConnKind) {
        self.conns[dir as usize][kind as usize].inc();
    }

    pub fn refused(&self, dir: Direction, reason: RefuseReason) {
        self.refused[dir as usize][reason as usize].inc();
    }

    /// The idle timeout for one connection in `dir`, counting its close in
    /// `sinew_tcp_connections_idle_closed_total`.
    pub fn idle_timeout(&self, dir: Direction, after: std::time::Duration) -> crate::idle::Timeout {
        crate::idle::Timeout {
            after,
            closed: self.idle_closed[dir as usize].clone(),
        }
    }

    /// Counts one request by its response status, or as an error if it got no response.
    pub fn request(&self, dir: Direction, status: Option<http::StatusCode>) {
        let class = match status {
            Some(s) => (s.as_u16() / 100).clamp(1, 5) as usize - 1,
            None => 5,
        };
        self.requests[dir as usize][class].inc();
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Encoding into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Decrements the active-connection gauge when dropped.
pub struct ActiveGuard(Gauge);

impl ActiveGuard {
    pub fn new(g: &Gauge) -> Self {
        g.inc();
        Self(g.clone())
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_appear_in_the_exposition() {
        let m = Metrics::new();
        m.connection(Direction::Outbound, ConnKind::Http1);
        m.request(Direction::Inbound, Some(http::StatusCode::NOT_FOUND));
        m.request(Direction::Inbound, None);
        let text = m.encode();
        assert!(
            text.contains(
                r#"sinew_tcp_connections_opened_total{direction="outbound",protocol="http1"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"sinew_requests_total{direction="inbound",status_class="4xx"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"sinew_requests_total{direction="inbound",status_class="error"} 1"#),
            "{text}"
        );
    }

    #[test]
    fn upstream_counters_are_one_series_per_service() {
        let m = Metrics::new();
        m.upstream("reviews").overflow(Overflow::Pending);
        m.upstream("reviews").overflow(Overflow::Pending);
        m.upstream("reviews").retries.inc();
        m.upstream("ratings").timeouts.inc();
        let text = m.encode();
        for line in [
            r#"sinew_upstream_rq_overflow_total{service="reviews",kind="pending"} 2"#,
            r#"sinew_upstream_rq_retry_total{service="reviews"} 1"#,
            r#"sinew_upstream_rq_timeout_total{service="ratings"} 1"#,
            r#"sinew_outlier_ejections_total{service="ratings"} 0"#,
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
    }
}
