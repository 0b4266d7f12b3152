//! Trace context headers as the proxy reads them from any client (`telemetry::trace::context`:
//! W3C `traceparent`/`tracestate`, B3 single and multi, `x-request-id`) and writes them on.
//!
//! The input is header lines (`name: value`, one a line); lines that are not a valid header
//! are left out, as hyper would refuse them.
//!
//! Contract checked:
//! - never panics;
//! - what is written for the next hop reads back as this hop's context: the same trace id,
//!   our span id as the parent, the same sampling decision, from `traceparent`;
//! - the `x-request-id` in force afterwards is one sane value.

use http::{HeaderMap, HeaderName, HeaderValue};
use sinew_proxy::telemetry::trace::context::{
    self, Decision, MAX_REQUEST_ID_LEN, Outgoing, ensure_request_id,
};

/// Checks one input; returns its outcome.
pub fn check(data: &[u8]) -> String {
    let mut headers = HeaderMap::new();
    for line in data.split(|b| *b == b'\n').take(64) {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
            headers.append(n, v);
        }
    }
    let incoming = context::read(&headers);
    let out = Outgoing {
        trace_id: incoming
            .parent
            .map_or(0x0af7_6519_16cd_43dd_8448_eb21_1c80_319c, |p| p.trace_id),
        span_id: 0x00f0_67aa_0ba9_02b7,
        parent_span_id: incoming.parent.map(|p| p.span_id),
        decision: incoming.decision.unwrap_or(Decision::Sampled),
        short_trace_id: incoming.parent.is_some_and(|p| p.short_trace_id),
    };
    context::write(&mut headers, &incoming, &out);
    ensure_request_id(&mut headers, &incoming);
    let next = context::read(&headers);
    let parent = next.parent.expect("the written context reads back");
    assert_eq!(parent.trace_id, out.trace_id, "trace id");
    assert_eq!(parent.span_id, out.span_id, "span id");
    assert!(next.w3c, "traceparent is what the next hop reads");
    assert_eq!(
        next.decision.map(Decision::is_sampled),
        Some(out.decision.is_sampled()),
        "sampling decision"
    );
    let ids: Vec<&HeaderValue> = headers.get_all("x-request-id").iter().collect();
    assert_eq!(ids.len(), 1, "x-request-id values");
    assert!(
        !ids[0].is_empty() && ids[0].len() <= MAX_REQUEST_ID_LEN,
        "x-request-id length"
    );
    format!(
        "parent {} w3c {} b3 {:?} decision {:?}",
        incoming.parent.is_some(),
        incoming.w3c,
        incoming.b3,
        incoming.decision
    )
}
