//! What a proxy's Istio metrics say happened between two scrapes: requests, failures, the latency
//! histogram and open TCP connections, per direction — and the numbers `sinewctl stat` and the
//! live line of `sinewctl up` show from them.
//!
//! Promises: the definitions are those of Istio's standard dashboards and PromQL, so `stat` and a
//! Prometheus agree: a failure is a request whose `response_code` matches `5.*`; a counter that
//! went down between the scrapes was reset (a restarted proxy) and its whole new value is the
//! increase, as PromQL's `increase` reads it; a series absent from the first scrape is new and
//! counts from zero; quantiles interpolate linearly inside the bucket as `histogram_quantile`
//! does; no number is made up — an empty window has no success rate and no latency (`None`).

use std::collections::{BTreeMap, HashMap};

use super::prom::{self, Sample};

pub const REQUESTS: &str = "istio_requests_total";
pub const DURATION_BUCKETS: &str = "istio_request_duration_milliseconds_bucket";
pub const TCP_OPENED: &str = "istio_tcp_connections_opened_total";
pub const TCP_CLOSED: &str = "istio_tcp_connections_closed_total";

/// The families read; the rest of a proxy's metrics are skipped unparsed.
fn wanted(name: &str) -> bool {
    matches!(name, REQUESTS | DURATION_BUCKETS | TCP_OPENED | TCP_CLOSED)
}

/// Which side of the proxy reported the traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Requests to the pod's app: `reporter="destination"`.
    Inbound,
    /// Requests the pod's app sent: `reporter="source"`.
    Outbound,
}

// === impl Direction ===

impl Direction {
    fn reporter(self) -> &'static str {
        match self {
            Direction::Inbound => "destination",
            Direction::Outbound => "source",
        }
    }

    /// The labels naming the workload on the other end.
    fn peer_labels(self) -> (&'static str, &'static str) {
        match self {
            Direction::Inbound => ("source_workload_namespace", "source_workload"),
            Direction::Outbound => ("destination_workload_namespace", "destination_workload"),
        }
    }
}

impl std::fmt::Display for Direction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        })
    }
}

/// The series that count: one direction, and optionally only traffic with one peer workload
/// (`--from` for inbound, `--to` for outbound).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub direction: Direction,
    /// `(namespace, workload)` of the peer.
    pub peer: Option<(String, String)>,
}

// === impl Filter ===

impl Filter {
    pub fn direction(direction: Direction) -> Filter {
        Filter {
            direction,
            peer: None,
        }
    }

    fn matches(&self, s: &Sample) -> bool {
        if s.label("reporter") != self.direction.reporter() {
            return false;
        }
        let Some((ns, name)) = &self.peer else {
            return true;
        };
        let (ns_label, name_label) = self.direction.peer_labels();
        s.label(ns_label) == ns && s.label(name_label) == name
    }
}

/// One proxy's metrics at one moment (the families this module reads).
#[derive(Debug, Default, Clone)]
pub struct Scrape {
    samples: Vec<Sample>,
    /// Position of each series in `samples`, to find it in the other scrape of a window.
    index: HashMap<(String, Vec<(String, String)>), usize>,
    /// Lines of the proxy's answer that were not understood.
    pub malformed: usize,
}

// === impl Scrape ===

impl Scrape {
    pub fn parse(text: &str) -> Scrape {
        let parsed = prom::parse(text, wanted);
        let index = parsed
            .samples
            .iter()
            .enumerate()
            .map(|(i, s)| ((s.name.clone(), s.labels.clone()), i))
            .collect();
        Scrape {
            samples: parsed.samples,
            index,
            malformed: parsed.malformed,
        }
    }

    fn get(&self, s: &Sample) -> Option<f64> {
        let i = *self.index.get(&(s.name.clone(), s.labels.clone()))?;
        Some(self.samples[i].value)
    }
}

/// What a counter grew by from `before` to `after`: a drop means a reset (the process
/// restarted), after which the whole new value is new; a series not seen before starts at zero.
pub fn increase(before: Option<f64>, after: f64) -> f64 {
    if !after.is_finite() || after < 0.0 {
        return 0.0;
    }
    match before {
        Some(b) if b.is_finite() && after >= b => after - b,
        _ => after,
    }
}

/// The traffic of one filter over a window, summable across proxies.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Traffic {
    pub requests: f64,
    /// Requests answered 5xx.
    pub failures: f64,
    /// Cumulative histogram increase by upper bound (`le`, as `f64` bits: bounds are not
    /// negative, and the bits of non-negative floats sort as the floats do).
    buckets: BTreeMap<u64, f64>,
    /// Connections open at the end of the window (opened minus closed).
    pub tcp_open: f64,
}

// === impl Traffic ===

impl Traffic {
    /// What `filter`'s series of one proxy did between `before` and `after`.
    pub fn between(before: &Scrape, after: &Scrape, filter: &Filter) -> Traffic {
        let mut t = Traffic::default();
        for s in after.samples.iter().filter(|s| filter.matches(s)) {
            match s.name.as_str() {
                REQUESTS => {
                    let n = increase(before.get(s), s.value);
                    t.requests += n;
                    if s.label("response_code").starts_with('5') {
                        t.failures += n;
                    }
                }
                DURATION_BUCKETS => {
                    let Some(le) = parse_le(s.label("le")) else {
                        continue;
                    };
                    *t.buckets.entry(le.to_bits()).or_default() += increase(before.get(s), s.value);
                }
                TCP_OPENED if s.value.is_finite() => t.tcp_open += s.value,
                TCP_CLOSED if s.value.is_finite() => t.tcp_open -= s.value,
                _ => {}
            }
        }
        t.tcp_open = t.tcp_open.max(0.0);
        t
    }

    pub fn add(&mut self, other: &Traffic) {
        self.requests += other.requests;
        self.failures += other.failures;
        self.tcp_open += other.tcp_open;
        for (le, n) in &other.buckets {
            *self.buckets.entry(*le).or_default() += n;
        }
    }

    /// The `q` quantile of request duration in milliseconds.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let buckets: Vec<(f64, f64)> = self
            .buckets
            .iter()
            .map(|(le, n)| (f64::from_bits(*le), *n))
            .collect();
        histogram_quantile(q, &buckets)
    }
}

/// `le` as written: a number, `+Inf`; a negative or unreadable bound is not a duration bucket.
fn parse_le(s: &str) -> Option<f64> {
    let le = match s {
        "+Inf" | "Inf" => f64::INFINITY,
        _ => s.parse::<f64>().ok().filter(|v| v.is_finite())?,
    };
    (le >= 0.0).then_some(le)
}

/// PromQL's `histogram_quantile(q, …)` over cumulative `(upper bound, count)` buckets: `None`
/// where PromQL answers NaN (no `+Inf` bucket, fewer than two buckets, no observations, `q`
/// outside 0..=1). The rank `q × total` falls in the first bucket whose count reaches it, and the
/// answer is interpolated linearly between that bucket's bounds (the first bucket's lower bound is
/// 0); a rank in the `+Inf` bucket answers the highest finite bound.
pub fn histogram_quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    if !(0.0..=1.0).contains(&q) {
        return None;
    }
    let mut buckets = buckets.to_vec();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    if buckets.len() < 2 || buckets.last().is_none_or(|b| b.0 != f64::INFINITY) {
        return None;
    }
    // Counts scraped at slightly different moments can dip; PromQL evens them out the same way.
    let mut max = 0.0f64;
    for b in &mut buckets {
        max = max.max(b.1);
        b.1 = max;
    }
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let last = buckets.len() - 1;
    let b = buckets[..last]
        .iter()
        .position(|(_, count)| *count >= rank)
        .unwrap_or(last);
    if b == last {
        return Some(buckets[last - 1].0);
    }
    if b == 0 && buckets[0].0 <= 0.0 {
        return Some(buckets[0].0);
    }
    let (mut start, end, mut count, mut rank) = (0.0, buckets[b].0, buckets[b].1, rank);
    if b > 0 {
        start = buckets[b - 1].0;
        count -= buckets[b - 1].1;
        rank -= buckets[b - 1].1;
    }
    Some(start + (end - start) * (rank / count))
}

/// The numbers shown for one row: a filter's traffic summed over some proxies.
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    pub requests: f64,
    pub rps: f64,
    /// Share of requests not answered 5xx, 0..=1; `None` without requests.
    pub success_rate: Option<f64>,
    pub latency_ms_p50: Option<f64>,
    pub latency_ms_p95: Option<f64>,
    pub latency_ms_p99: Option<f64>,
    pub tcp_connections: f64,
}

// === impl Stats ===

impl Stats {
    /// `t` over a window of `secs` seconds.
    pub fn of(t: &Traffic, secs: f64) -> Stats {
        let secs = if secs > 0.0 { secs } else { f64::INFINITY };
        Stats {
            requests: t.requests,
            rps: t.requests / secs,
            success_rate: (t.requests > 0.0)
                .then(|| ((t.requests - t.failures) / t.requests).clamp(0.0, 1.0)),
            latency_ms_p50: t.quantile(0.5),
            latency_ms_p95: t.quantile(0.95),
            latency_ms_p99: t.quantile(0.99),
            tcp_connections: t.tcp_open,
        }
    }
}

#[cfg(test)]
mod tests;
