//! Distributed tracing: trace context propagation (W3C `traceparent`/`tracestate`, B3 multi and
//! single header), `x-request-id`, sampling, and span export over OTLP/gRPC.
//!
//! CONTRACT STUB (issue 12): the API below is what the request path calls; the implementation
//! replaces the bodies, not the signatures, without telling the other side.

use super::{RequestProtocol, Workload};
use crate::traffic::ResponseFlags;
use http::HeaderMap;
use std::net::SocketAddr;

/// Which side of a hop a span describes: the caller's proxy (outbound) or the callee's (inbound).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpanKind {
    Client,
    Server,
}

/// The tracing settings in force, from the config.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// OTLP/gRPC collector; `None`: nothing is exported.
    pub endpoint: Option<String>,
    /// Percentage (0–100) of requests without an incoming decision that are sampled.
    pub sampling_percent: f64,
    /// Istio's `disableSpanReporting` inverted.
    pub report: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            endpoint: None,
            sampling_percent: 1.0,
            report: true,
        }
    }
}

/// The proxy's tracer: cheap to clone, shared by every connection.
#[derive(Clone, Default)]
pub struct Tracer {}

impl Tracer {
    pub fn disabled() -> Self {
        Self {}
    }

    /// Applies the settings of a new config version (sampling, endpoint).
    pub fn configure(&self, _settings: &Settings) {}

    /// Starts this hop's span for a request: reads the incoming context (W3C, B3), keeps or
    /// generates `x-request-id`, decides sampling, and rewrites the propagation headers so that
    /// the next hop's span is this one's child. Malformed incoming headers are ignored (a new
    /// trace starts). Never blocks, never fails.
    pub fn start(&self, _kind: SpanKind, _headers: &mut HeaderMap) -> Span {
        Span {}
    }

    /// Spans dropped because the export queue was full or the collector failed.
    pub fn dropped_spans(&self) -> u64 {
        0
    }
}

/// One hop's span; does nothing (and allocates nothing) when not sampled.
pub struct Span {}

impl Span {
    pub fn is_sampled(&self) -> bool {
        false
    }

    /// The trace's id as 32 lowercase hex digits, for access logs.
    pub fn trace_id(&self) -> Option<String> {
        None
    }

    /// Ends the span with what the request came to; queued for export if sampled.
    pub fn finish(self, _outcome: &Outcome<'_>) {}
}

/// What a request came to: what its span, access-log line and metrics say of it.
#[derive(Clone, Copy, Debug)]
pub struct Outcome<'a> {
    pub method: &'a http::Method,
    pub uri: &'a http::Uri,
    /// `:authority` or `Host`.
    pub authority: Option<&'a str>,
    pub protocol: RequestProtocol,
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
