//! The trace context an app must pass on for the mesh's spans to join into one trace: the
//! proxies create and close spans, but only the app knows which outbound call a request caused.
//!
//! The list is Istio's (its distributed-tracing FAQ): W3C Trace Context, Envoy's request id, and
//! B3 in its multi-header and single-header forms. Values are copied byte for byte, every
//! occurrence of a repeated header included; nothing is parsed, so a malformed value is the
//! proxy's to judge, not ours.

use http::HeaderMap;
use http::header::HeaderName;

/// The headers copied from an inbound request to the outbound calls it causes.
pub const PROPAGATED: [HeaderName; 9] = [
    HeaderName::from_static("traceparent"),
    HeaderName::from_static("tracestate"),
    HeaderName::from_static("x-request-id"),
    HeaderName::from_static("x-b3-traceid"),
    HeaderName::from_static("x-b3-spanid"),
    HeaderName::from_static("x-b3-parentspanid"),
    HeaderName::from_static("x-b3-sampled"),
    HeaderName::from_static("x-b3-flags"),
    HeaderName::from_static("b3"),
];

/// The trace headers of `inbound`, to send with each outbound call it causes.
pub fn propagated(inbound: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for name in &PROPAGATED {
        for value in inbound.get_all(name) {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn copies_every_trace_header_and_nothing_else() {
        let mut inbound = HeaderMap::new();
        for name in &PROPAGATED {
            inbound.insert(name.clone(), HeaderValue::from_static("v"));
        }
        inbound.append("tracestate", HeaderValue::from_static("second=1"));
        inbound.insert("authorization", HeaderValue::from_static("secret"));
        inbound.insert("x-forwarded-client-cert", HeaderValue::from_static("URI=x"));
        let out = propagated(&inbound);
        assert_eq!(out.len(), PROPAGATED.len() + 1);
        let states: Vec<_> = out.get_all("tracestate").iter().collect();
        assert_eq!(
            states,
            ["v", "second=1"],
            "repeated headers all go, in order"
        );
        assert!(out.get("authorization").is_none());
        assert!(out.get("x-forwarded-client-cert").is_none());
    }

    #[test]
    fn copies_bytes_that_are_not_utf8_unchanged() {
        let mut inbound = HeaderMap::new();
        let odd = HeaderValue::from_bytes(b"00-\xff\xfe-01").expect("obs-text is a valid value");
        inbound.insert("traceparent", odd.clone());
        assert_eq!(propagated(&inbound).get("traceparent"), Some(&odd));
    }
}
