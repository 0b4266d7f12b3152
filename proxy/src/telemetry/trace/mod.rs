//! Distributed tracing: trace context propagation (W3C `traceparent`/`tracestate`, B3 multi and
//! single header), `x-request-id`, sampling, and span export over OTLP/gRPC.
//!
//! The request path calls [`Tracer::start`] when a request arrives (both directions) and
//! [`Span::finish`] when its response has ended. Promises: `start` never blocks or fails and
//! always leaves the request with a valid `traceparent` and `x-request-id`; a span that is not
//! sampled (or not reported) allocates nothing beyond those headers; `finish` hands a sampled
//! span to a bounded queue without waiting ([`export`]). Propagation works with or without a
//! collector: the endpoint only decides whether spans leave the proxy.
//!
//! One job per file: [`context`] reads and writes the headers, [`sampler`] decides, [`span`]
//! turns a finished hop into an OpenTelemetry span, [`export`] sends batches.

pub mod context;
pub mod export;
pub mod sampler;
pub mod span;

use super::{RequestProtocol, Workload};
use crate::traffic::ResponseFlags;
use context::Outgoing;
use http::HeaderMap;
use opentelemetry::InstrumentationScope;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

/// Which side of a hop a span describes: the caller's proxy (outbound) or the callee's (inbound).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpanKind {
    Client,
    Server,
}

/// The tracing settings in force, from the config.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// OTLP/gRPC collector, `http://host:port`; `None`: nothing is exported.
    pub endpoint: Option<String>,
    /// Percentage (0–100) of requests without an incoming decision that are sampled.
    pub sampling_percent: f64,
    /// Istio's `disableSpanReporting` inverted.
    pub report: bool,
    /// This proxy's workload: the spans' resource (`service.name` is
    /// `<canonical service>.<namespace>`, Istio's convention).
    pub workload: Workload,
    /// This proxy's pod (`k8s.pod.name`).
    pub pod: Arc<str>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            endpoint: None,
            sampling_percent: sampler::DEFAULT_SAMPLING_PERCENT,
            report: true,
            workload: Workload::default(),
            pod: Arc::from(""),
        }
    }
}

// === impl Settings ===

impl Settings {
    /// `service.name` and the rest of the resource the spans are exported with.
    pub fn resource(&self) -> Vec<(&'static str, String)> {
        let w = &self.workload;
        let base = if w.canonical_service.is_empty() {
            &w.name
        } else {
            &w.canonical_service
        };
        let service = match (base.is_empty(), w.namespace.is_empty()) {
            (true, _) => "sinew-proxy".to_string(),
            (false, true) => base.to_string(),
            (false, false) => format!("{base}.{}", w.namespace),
        };
        let mut r = vec![("service.name", service)];
        for (key, value) in [
            ("service.version", &w.canonical_revision),
            ("k8s.namespace.name", &w.namespace),
            ("k8s.pod.name", &self.pod),
        ] {
            if !value.is_empty() {
                r.push((key, value.to_string()));
            }
        }
        r
    }
}

/// The proxy's tracer: cheap to clone, shared by every connection.
#[derive(Clone, Default)]
pub struct Tracer {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    sampler: sampler::Sampler,
    /// Sampled spans are built and queued (an endpoint is set, reporting is on and the export
    /// task runs).
    exporting: AtomicBool,
    /// Started by the first `configure` that names an endpoint.
    queue: OnceLock<export::Queue>,
    counters: export::Counters,
    limits: Option<export::Limits>,
    scope: OnceLock<InstrumentationScope>,
}

impl std::fmt::Debug for Tracer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracer")
            .field("exporting", &self.inner.exporting.load(Ordering::Relaxed))
            .finish()
    }
}

// === impl Tracer ===

impl Tracer {
    /// Propagates context and ids but exports nothing (until configured with an endpoint);
    /// counts into counters of its own.
    pub fn disabled() -> Self {
        Self::default()
    }

    /// A tracer counting into `counters` (the proxy's metrics).
    pub fn new(counters: export::Counters) -> Self {
        Self::with_limits(counters, export::DEFAULT_LIMITS)
    }

    /// [`Self::new`] with other queue and batch sizes (tests).
    pub fn with_limits(counters: export::Counters, limits: export::Limits) -> Self {
        Self {
            inner: Arc::new(Inner {
                counters,
                limits: Some(limits),
                ..Inner::default()
            }),
        }
    }

    /// Applies the settings of a new config version (sampling, endpoint, resource). The
    /// exporter is rebuilt only when the endpoint changes. Starting the export needs a tokio
    /// runtime; without one (a synchronous caller) spans are not exported.
    pub fn configure(&self, settings: &Settings) {
        let inner = &*self.inner;
        inner.sampler.set(settings.sampling_percent);
        let target = match &settings.endpoint {
            Some(endpoint) if settings.report => Some(export::Target {
                endpoint: endpoint.clone(),
                resource: settings.resource(),
            }),
            _ => None,
        };
        if target.is_some() && inner.queue.get().is_none() {
            if tokio::runtime::Handle::try_current().is_ok() {
                let limits = inner.limits.unwrap_or(export::DEFAULT_LIMITS);
                inner.queue.get_or_init(|| {
                    export::Queue::spawn(inner.counters.clone(), limits, move |endpoint| {
                        export::otlp(endpoint, limits.export_timeout)
                    })
                });
            } else {
                tracing::warn!(
                    "tracing configured outside a tokio runtime: spans are not exported"
                );
            }
        }
        let running = inner.queue.get();
        if let Some(q) = running {
            q.retarget(target.clone());
        }
        inner
            .exporting
            .store(target.is_some() && running.is_some(), Ordering::Release);
    }

    /// Starts this hop's span for a request: reads the incoming context (W3C, B3), keeps or
    /// generates `x-request-id`, decides sampling, and rewrites the propagation headers so that
    /// the next hop's span is this one's child. Malformed incoming headers are ignored (a new
    /// trace starts). Never blocks, never fails.
    pub fn start(&self, kind: SpanKind, headers: &mut HeaderMap) -> Span {
        let incoming = context::read(headers);
        let decision = self.inner.sampler.decide(incoming.decision);
        let out = Outgoing {
            trace_id: incoming
                .parent
                .map_or_else(context::new_trace_id, |p| p.trace_id),
            span_id: context::new_span_id(),
            parent_span_id: incoming.parent.map(|p| p.span_id),
            decision,
            short_trace_id: incoming.parent.is_some_and(|p| p.short_trace_id),
        };
        context::write(headers, &incoming, &out);
        let recording = if decision.is_sampled() && self.inner.exporting.load(Ordering::Acquire) {
            Some(Recording {
                tracer: self.inner.clone(),
                started: span::Started {
                    kind,
                    context: out,
                    start: SystemTime::now(),
                    request_id: context::request_id(headers, &incoming),
                },
            })
        } else {
            context::ensure_request_id(headers, &incoming);
            None
        };
        Span {
            context: out,
            recording,
        }
    }

    /// Spans dropped because the export queue was full or the collector failed.
    pub fn dropped_spans(&self) -> u64 {
        self.inner.counters.dropped.get()
    }

    /// Spans the collector accepted.
    pub fn exported_spans(&self) -> u64 {
        self.inner.counters.exported.get()
    }

    /// Spans waiting for the export task.
    pub fn queued_spans(&self) -> usize {
        self.inner.queue.get().map_or(0, export::Queue::len)
    }
}

/// One hop's span; does nothing (and allocates nothing) when not sampled.
pub struct Span {
    context: Outgoing,
    /// Only for a sampled span that will be exported.
    recording: Option<Recording>,
}

struct Recording {
    tracer: Arc<Inner>,
    started: span::Started,
}

// === impl Span ===

impl Span {
    pub fn is_sampled(&self) -> bool {
        self.context.decision.is_sampled()
    }

    /// The trace's id as 32 lowercase hex digits, for access logs.
    pub fn trace_id(&self) -> Option<String> {
        Some(format!("{:032x}", self.context.trace_id))
    }

    /// This hop's span id as 16 lowercase hex digits (the parent id the next hop receives).
    pub fn span_id(&self) -> String {
        format!("{:016x}", self.context.span_id)
    }

    /// Ends the span with what the request came to; queued for export if sampled.
    pub fn finish(self, outcome: &Outcome<'_>) {
        let Some(r) = self.recording else { return };
        let Some(queue) = r.tracer.queue.get() else {
            return;
        };
        let scope = r.tracer.scope.get_or_init(span::scope);
        queue.offer(span::build(&r.started, outcome, SystemTime::now(), scope));
    }
}

/// What a request came to: what its span, access-log line and metrics say of it.
#[derive(Clone, Copy, Debug)]
pub struct Outcome<'a> {
    pub method: &'a http::Method,
    pub uri: &'a http::Uri,
    /// `:authority` or `Host`.
    pub authority: Option<&'a str>,
    pub protocol: RequestProtocol,
    /// The HTTP version the request came in (`network.protocol.version`).
    pub version: http::Version,
    /// `None`: no response reached the client (reset, disconnect).
    pub status: Option<http::StatusCode>,
    pub grpc_status: Option<u32>,
    pub flags: ResponseFlags,
    pub upstream_host: Option<SocketAddr>,
    /// Envoy's cluster name, `outbound|9080|v1|reviews.default.svc.cluster.local`.
    pub upstream_cluster: Option<&'a str>,
    /// Retries made (0: the first attempt answered).
    pub retries: u32,
    pub request_bytes: u64,
    pub response_bytes: u64,
    /// The SPIFFE identity of the peer proxy (verified), if any.
    pub peer_identity: Option<&'a str>,
    pub source: Option<&'a Workload>,
    pub destination: Option<&'a Workload>,
    pub destination_service: Option<&'a str>,
}

#[cfg(test)]
mod tests;
