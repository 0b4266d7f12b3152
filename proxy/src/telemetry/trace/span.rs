//! A finished hop as an OpenTelemetry span: its name, attributes and status, per the HTTP
//! semantic conventions plus the mesh's own attributes (Istio's names where Istio has one).
//!
//! Naming: `{method}` (`GET`), as the HTTP semantic conventions name a span whose route is not
//! known, and `HTTP` for a method outside the standard set. Istio's Envoy names spans
//! `{host}:{port}/{path}`; we do not, because a path is unbounded (every id in a URL would be a
//! new "operation" in Jaeger's list). The service, host and path are attributes.
//!
//! Status: Error when the response was a 5xx, when no response reached the client, or when a
//! gRPC status says the server failed; the description is the response flags (`UF,URX`) when
//! there are any, else the status code. A 4xx leaves the status unset on both span kinds.

use super::context::Outgoing;
use super::{Outcome, SpanKind};
use crate::telemetry::{RequestProtocol, Workload};
use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind as OtelKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue, Value};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
use std::borrow::Cow;
use std::time::SystemTime;

/// The longest `url.path` recorded; a longer one is cut (at a character boundary) so one
/// request cannot make a span, or a batch, arbitrarily large.
pub const MAX_PATH_LEN: usize = 1024;

/// gRPC codes that mean the server failed (the semantic conventions' server-side list).
const GRPC_SERVER_ERRORS: [u32; 6] = [2, 4, 12, 13, 14, 15];

/// What a sampled span remembers between `start` and `finish`.
#[derive(Clone, Debug)]
pub struct Started {
    pub kind: SpanKind,
    pub context: Outgoing,
    pub start: SystemTime,
    pub request_id: http::HeaderValue,
}

pub fn scope() -> InstrumentationScope {
    InstrumentationScope::builder("sinew-proxy")
        .with_version(env!("CARGO_PKG_VERSION"))
        .build()
}

/// The span for a finished hop.
pub fn build(
    started: &Started,
    outcome: &Outcome<'_>,
    end: SystemTime,
    scope: &InstrumentationScope,
) -> SpanData {
    let ctx = &started.context;
    let (method, known) = method(outcome.method);
    let mut attrs = Vec::with_capacity(24);
    attrs.push(KeyValue::new("http.request.method", method));
    if !known {
        attrs.push(KeyValue::new(
            "http.request.method_original",
            outcome.method.as_str().to_string(),
        ));
    }
    if let Some(status) = outcome.status {
        attrs.push(KeyValue::new(
            "http.response.status_code",
            i64::from(status.as_u16()),
        ));
    }
    attrs.push(KeyValue::new(
        "url.path",
        truncate(outcome.uri.path(), MAX_PATH_LEN).to_string(),
    ));
    if let Some((host, port)) = outcome.authority.and_then(authority) {
        attrs.push(KeyValue::new("server.address", host.to_string()));
        attrs.push(KeyValue::new("server.port", i64::from(port)));
    }
    attrs.push(KeyValue::new("network.protocol.name", "http"));
    if let Some(v) = version(outcome.version) {
        attrs.push(KeyValue::new("network.protocol.version", v));
    }
    if outcome.protocol == RequestProtocol::Grpc {
        attrs.push(KeyValue::new("rpc.system", "grpc"));
        if let Some(code) = outcome.grpc_status {
            attrs.push(KeyValue::new("rpc.grpc.status_code", i64::from(code)));
        }
    }
    if outcome.request_bytes > 0 {
        attrs.push(KeyValue::new(
            "http.request.body.size",
            saturating_i64(outcome.request_bytes),
        ));
    }
    attrs.push(KeyValue::new(
        "http.response.body.size",
        saturating_i64(outcome.response_bytes),
    ));
    if outcome.retries > 0 {
        attrs.push(KeyValue::new(
            "http.request.resend_count",
            i64::from(outcome.retries),
        ));
    }
    // The mesh's own: Istio's and Envoy's tag names, so queries written for Istio work.
    if let Ok(id) = started.request_id.to_str() {
        attrs.push(KeyValue::new("guid:x-request-id", id.to_string()));
    }
    attrs.push(KeyValue::new("response_flags", outcome.flags.to_string()));
    if let Some(c) = outcome.upstream_cluster {
        attrs.push(KeyValue::new("upstream_cluster", c.to_string()));
    }
    if let Some(h) = outcome.upstream_host {
        attrs.push(KeyValue::new("upstream_host", h.to_string()));
        attrs.push(KeyValue::new("network.peer.address", h.ip().to_string()));
        attrs.push(KeyValue::new("network.peer.port", i64::from(h.port())));
    }
    if let Some(p) = outcome.peer_identity {
        attrs.push(KeyValue::new("peer.identity", p.to_string()));
    }
    if let Some(w) = outcome.source {
        workload(&mut attrs, "source", w);
    }
    if let Some(w) = outcome.destination {
        workload(&mut attrs, "destination", w);
    }
    if let Some(s) = outcome.destination_service {
        attrs.push(KeyValue::new("istio.destination_service", s.to_string()));
    }
    let (status, error_type) = status(outcome);
    if let Some(e) = error_type {
        attrs.push(KeyValue::new("error.type", e));
    }

    SpanData {
        span_context: SpanContext::new(
            TraceId::from(ctx.trace_id),
            SpanId::from(ctx.span_id),
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        ),
        parent_span_id: ctx.parent_span_id.map_or(SpanId::INVALID, SpanId::from),
        parent_span_is_remote: ctx.parent_span_id.is_some(),
        span_kind: match started.kind {
            SpanKind::Client => OtelKind::Client,
            SpanKind::Server => OtelKind::Server,
        },
        name: Cow::Borrowed(if known { method } else { "HTTP" }),
        start_time: started.start,
        end_time: end.max(started.start),
        attributes: attrs,
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status,
        instrumentation_scope: scope.clone(),
    }
}

/// `istio.source_workload`, `istio.source_namespace`, … for one side; empty values are left out.
fn workload(attrs: &mut Vec<KeyValue>, side: &'static str, w: &Workload) {
    let fields: [(&'static str, &'static str, &std::sync::Arc<str>); 4] = [
        (
            "istio.source_workload",
            "istio.destination_workload",
            &w.name,
        ),
        (
            "istio.source_namespace",
            "istio.destination_namespace",
            &w.namespace,
        ),
        (
            "istio.source_canonical_service",
            "istio.destination_canonical_service",
            &w.canonical_service,
        ),
        (
            "istio.source_canonical_revision",
            "istio.destination_canonical_revision",
            &w.canonical_revision,
        ),
    ];
    for (src, dst, value) in fields {
        if !value.is_empty() {
            let key = if side == "source" { src } else { dst };
            attrs.push(KeyValue::new(key, Value::from(value.to_string())));
        }
    }
}

/// The status and `error.type` of a hop.
fn status(o: &Outcome<'_>) -> (Status, Option<String>) {
    let describe = |fallback: String| {
        if o.flags.is_empty() {
            fallback
        } else {
            o.flags.to_string()
        }
    };
    match o.status {
        None => (
            Status::error(describe("no response".into())),
            Some(if o.flags.is_empty() {
                "_OTHER".into()
            } else {
                o.flags.to_string()
            }),
        ),
        Some(s) if s.is_server_error() => (
            Status::error(describe(s.as_u16().to_string())),
            Some(s.as_u16().to_string()),
        ),
        Some(_) => match o.grpc_status {
            Some(code)
                if o.protocol == RequestProtocol::Grpc && GRPC_SERVER_ERRORS.contains(&code) =>
            {
                (
                    Status::error(describe(format!("grpc-status {code}"))),
                    Some(code.to_string()),
                )
            }
            _ => (Status::Unset, None),
        },
    }
}

/// The method as the semantic conventions spell it, and whether it is one of the standard ones
/// (others are recorded as `_OTHER`, with the original alongside).
fn method(m: &http::Method) -> (&'static str, bool) {
    match *m {
        http::Method::GET => ("GET", true),
        http::Method::HEAD => ("HEAD", true),
        http::Method::POST => ("POST", true),
        http::Method::PUT => ("PUT", true),
        http::Method::DELETE => ("DELETE", true),
        http::Method::CONNECT => ("CONNECT", true),
        http::Method::OPTIONS => ("OPTIONS", true),
        http::Method::TRACE => ("TRACE", true),
        http::Method::PATCH => ("PATCH", true),
        _ => ("_OTHER", false),
    }
}

fn version(v: http::Version) -> Option<&'static str> {
    match v {
        http::Version::HTTP_09 => Some("0.9"),
        http::Version::HTTP_10 => Some("1.0"),
        http::Version::HTTP_11 => Some("1.1"),
        http::Version::HTTP_2 => Some("2"),
        http::Version::HTTP_3 => Some("3"),
        _ => None,
    }
}

/// `host[:port]` (IPv6 in brackets) into host and port, 80 when absent; `None` when it does
/// not parse as an authority.
fn authority(a: &str) -> Option<(&str, u16)> {
    let _: http::uri::Authority = a.parse().ok()?;
    let host_port = a.rsplit_once('@').map_or(a, |(_, h)| h);
    let (host, port) = match host_port.strip_prefix('[') {
        Some(v6) => {
            let (host, rest) = v6.split_once(']')?;
            (host, rest.strip_prefix(':'))
        }
        None => match host_port.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        },
    };
    let port = match port {
        Some(p) => p.parse().ok()?,
        None => 80,
    };
    Some((host, port))
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn saturating_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests;
