//! Istio's standard metrics: `istio_requests_total`, `istio_request_duration_milliseconds`,
//! `istio_request_bytes`, `istio_response_bytes` and the `istio_tcp_*` counters, with Istio's
//! label set ([`super::labels`]) and Envoy's default histogram buckets (what Istio's dashboards'
//! `histogram_quantile` queries were written against).
//!
//! Promises:
//! - a request costs one read-locked hash lookup of a few words (label set by pointer, protocol,
//!   code, gRPC status, flags) and atomic adds / histogram observations; series are created
//!   (families' label hashing, allocation) only on first sight;
//! - at most `max_series` HTTP series and `max_series` TCP series: past it, a new combination is
//!   counted in the overflow set (peer labels "unknown") and in
//!   `sinew_metrics_label_overflow_total`. The gRPC status label is one of `0`–`16`, `""` (not
//!   gRPC) or "unknown"; the status code is three digits: values from the network cannot multiply
//!   series beyond these bounds.

use super::RequestProtocol;
use super::labels::{Interner, Labels, Shared};
use crate::traffic::ResponseFlags;
use prometheus_client::encoding::{
    EncodeLabelSet, EncodeLabelValue, LabelSetEncoder, LabelValueEncoder,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::RwLock;
use std::time::Duration;

/// Most series per group (HTTP, TCP) before new label combinations go to the overflow set.
pub const DEFAULT_MAX_SERIES: usize = 10_000;
/// Most distinct (connection, peer) label sets before new peers read "unknown".
pub const DEFAULT_MAX_LABEL_SETS: usize = 2_000;

/// Envoy's default histogram buckets, which Istio's standard metrics use for durations (ms) and
/// sizes (bytes) alike.
pub const BUCKETS: [f64; 19] = [
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
];

type Hasher = foldhash::fast::RandomState;
type HistogramFamily<K> = Family<K, Histogram, fn() -> Histogram>;

/// `grpc_response_status`: a valid status, none (not gRPC: `""`) or an unparsable one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum GrpcStatus {
    #[default]
    None,
    Code(u8),
    Unknown,
}

const GRPC_CODES: [&str; 17] = [
    "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15", "16",
];

impl GrpcStatus {
    /// From a `grpc-status` value: a code `0`–`16`, else unknown.
    pub fn parse(v: &[u8]) -> Self {
        match std::str::from_utf8(v)
            .ok()
            .and_then(|s| s.parse::<u8>().ok())
        {
            Some(c) if (c as usize) < GRPC_CODES.len() => Self::Code(c),
            _ => Self::Unknown,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "",
            Self::Code(c) => GRPC_CODES[c as usize],
            Self::Unknown => super::UNKNOWN,
        }
    }

    pub fn code(self) -> Option<u32> {
        match self {
            Self::Code(c) => Some(c as u32),
            _ => None,
        }
    }
}

/// What one HTTP request came to, for its series.
#[derive(Clone, Copy, Debug)]
pub struct HttpSample {
    pub protocol: RequestProtocol,
    /// 0: no response reached the client.
    pub code: u16,
    pub grpc: GrpcStatus,
    pub flags: ResponseFlags,
    pub duration: Duration,
    pub request_bytes: u64,
    pub response_bytes: u64,
}

/// The key of an HTTP series.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HttpKey {
    labels: Shared,
    protocol: RequestProtocol,
    code: u16,
    grpc: GrpcStatus,
    flags: ResponseFlags,
}

/// The key of a TCP series.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TcpKey {
    labels: Shared,
    flags: ResponseFlags,
}

#[derive(Clone)]
struct HttpSeries {
    requests: Counter,
    duration: Histogram,
    request_bytes: Histogram,
    response_bytes: Histogram,
}

/// The counters of one TCP series: bytes are added as they flow.
#[derive(Clone, Debug, Default)]
pub struct TcpSeries {
    pub sent: Counter,
    pub received: Counter,
    pub opened: Counter,
    pub closed: Counter,
}

/// The `istio_*` families and the series index in front of them.
pub struct IstioMetrics {
    pub interner: Interner,
    max_series: usize,
    overflowed: Counter,
    http: RwLock<HashMap<HttpKey, HttpSeries, Hasher>>,
    tcp: RwLock<HashMap<TcpKey, TcpSeries, Hasher>>,
    requests: Family<HttpKey, Counter>,
    duration: HistogramFamily<HttpKey>,
    request_bytes: HistogramFamily<HttpKey>,
    response_bytes: HistogramFamily<HttpKey>,
    tcp_sent: Family<TcpKey, Counter>,
    tcp_received: Family<TcpKey, Counter>,
    tcp_opened: Family<TcpKey, Counter>,
    tcp_closed: Family<TcpKey, Counter>,
}

fn histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

// === impl IstioMetrics ===

impl IstioMetrics {
    /// Registers the families in `registry` (which must have no prefix: the names are Istio's).
    /// `overflowed` counts label sets and series sent to the overflow set.
    pub fn register(
        registry: &mut Registry,
        max_series: usize,
        max_label_sets: usize,
        overflowed: Counter,
    ) -> Self {
        let requests = Family::default();
        let duration = HistogramFamily::new_with_constructor(histogram as fn() -> Histogram);
        let request_bytes = HistogramFamily::new_with_constructor(histogram as fn() -> Histogram);
        let response_bytes = HistogramFamily::new_with_constructor(histogram as fn() -> Histogram);
        let (tcp_sent, tcp_received, tcp_opened, tcp_closed) = Default::default();
        registry.register(
            "istio_requests",
            "HTTP and gRPC requests, by Istio's standard labels",
            Family::clone(&requests),
        );
        registry.register(
            "istio_request_duration_milliseconds",
            "Request duration in milliseconds, to the response's last byte",
            HistogramFamily::clone(&duration),
        );
        registry.register(
            "istio_request_bytes",
            "Request body sizes in bytes",
            HistogramFamily::clone(&request_bytes),
        );
        registry.register(
            "istio_response_bytes",
            "Response body sizes in bytes",
            HistogramFamily::clone(&response_bytes),
        );
        registry.register(
            "istio_tcp_sent_bytes",
            "Bytes sent to the client of an opaque TCP connection (the response direction)",
            Family::clone(&tcp_sent),
        );
        registry.register(
            "istio_tcp_received_bytes",
            "Bytes received from the client of an opaque TCP connection (the request direction)",
            Family::clone(&tcp_received),
        );
        registry.register(
            "istio_tcp_connections_opened",
            "Opaque TCP connections opened",
            Family::clone(&tcp_opened),
        );
        registry.register(
            "istio_tcp_connections_closed",
            "Opaque TCP connections closed",
            Family::clone(&tcp_closed),
        );
        Self {
            interner: Interner::new(max_label_sets, overflowed.clone()),
            max_series,
            overflowed,
            http: RwLock::new(HashMap::default()),
            tcp: RwLock::new(HashMap::default()),
            requests,
            duration,
            request_bytes,
            response_bytes,
            tcp_sent,
            tcp_received,
            tcp_opened,
            tcp_closed,
        }
    }

    /// The shared label set for `labels` (see [`Interner::intern`]).
    pub fn labels(&self, labels: Labels) -> Shared {
        self.interner.intern(labels)
    }

    /// Counts one HTTP request in its series.
    pub fn record_http(&self, labels: &Shared, s: &HttpSample) {
        let key = HttpKey {
            labels: labels.clone(),
            protocol: s.protocol,
            code: s.code,
            grpc: s.grpc,
            flags: s.flags,
        };
        {
            let http = self.http.read().unwrap_or_else(|p| p.into_inner());
            if let Some(series) = http.get(&key) {
                series.observe(s);
                return;
            }
        }
        let mut http = self.http.write().unwrap_or_else(|p| p.into_inner());
        let key = self.bounded(
            key,
            http.len(),
            |k| http.contains_key(k),
            |k, l| HttpKey { labels: l, ..k },
        );
        let series = http.entry(key).or_insert_with_key(|k| HttpSeries {
            requests: self.requests.get_or_create_owned(k),
            duration: self.duration.get_or_create_owned(k),
            request_bytes: self.request_bytes.get_or_create_owned(k),
            response_bytes: self.response_bytes.get_or_create_owned(k),
        });
        series.observe(s);
    }

    /// The TCP series of a connection with `labels` ending with `flags`.
    pub fn tcp(&self, labels: &Shared, flags: ResponseFlags) -> TcpSeries {
        let key = TcpKey {
            labels: labels.clone(),
            flags,
        };
        {
            let tcp = self.tcp.read().unwrap_or_else(|p| p.into_inner());
            if let Some(series) = tcp.get(&key) {
                return series.clone();
            }
        }
        let mut tcp = self.tcp.write().unwrap_or_else(|p| p.into_inner());
        let key = self.bounded(
            key,
            tcp.len(),
            |k| tcp.contains_key(k),
            |k, l| TcpKey { labels: l, ..k },
        );
        tcp.entry(key)
            .or_insert_with_key(|k| TcpSeries {
                sent: self.tcp_sent.get_or_create_owned(k),
                received: self.tcp_received.get_or_create_owned(k),
                opened: self.tcp_opened.get_or_create_owned(k),
                closed: self.tcp_closed.get_or_create_owned(k),
            })
            .clone()
    }

    /// `key`, or its overflow twin when the group is full and `key` is new.
    fn bounded<K: HasLabels>(
        &self,
        key: K,
        len: usize,
        exists: impl Fn(&K) -> bool,
        relabel: impl Fn(K, Shared) -> K,
    ) -> K {
        if len < self.max_series || exists(&key) {
            return key;
        }
        self.overflowed.inc();
        let reporter = key.labels().0.reporter;
        relabel(key, self.interner.overflow_set(reporter))
    }
}

trait HasLabels {
    fn labels(&self) -> &Shared;
}

impl HasLabels for HttpKey {
    fn labels(&self) -> &Shared {
        &self.labels
    }
}

impl HasLabels for TcpKey {
    fn labels(&self) -> &Shared {
        &self.labels
    }
}

// === impl HttpSeries ===

impl HttpSeries {
    fn observe(&self, s: &HttpSample) {
        self.requests.inc();
        self.duration.observe(s.duration.as_secs_f64() * 1000.0);
        self.request_bytes.observe(s.request_bytes as f64);
        self.response_bytes.observe(s.response_bytes as f64);
    }
}

/// `response_flags`, as Envoy prints them (`-` when none).
struct Flags(ResponseFlags);

impl EncodeLabelValue for Flags {
    fn encode(&self, e: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        write!(e, "{}", self.0)
    }
}

impl EncodeLabelSet for HttpKey {
    fn encode(&self, e: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        self.labels.encode(e)?;
        ("request_protocol", self.protocol.as_str()).encode(e.encode_label())?;
        ("response_code", self.code).encode(e.encode_label())?;
        ("grpc_response_status", self.grpc.as_str()).encode(e.encode_label())?;
        ("response_flags", Flags(self.flags)).encode(e.encode_label())
    }
}

impl EncodeLabelSet for TcpKey {
    fn encode(&self, e: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        self.labels.encode(e)?;
        ("request_protocol", "tcp").encode(e.encode_label())?;
        ("response_flags", Flags(self.flags)).encode(e.encode_label())
    }
}

use prometheus_client::encoding::EncodeLabel as _;

#[cfg(test)]
mod tests;
