//! The `x-sinew-peer` header (`telemetry::peer`): what a client's proxy claims about its
//! workload, read by the server's proxy from any mTLS peer.
//!
//! Contract checked:
//! - never panics, whatever the value (non-UTF-8, oversized, too few or many fields);
//! - a parsed claim re-encodes (`peer::encode`) to a value that parses to the same claim;
//! - `resolve` believes a claim only for the identity it names: for another verified peer the
//!   workload is "unknown", and the principal is always the verified one.

use http::HeaderValue;
use sinew_proxy::telemetry::peer::{encode, parse, resolve};
use std::sync::Arc;

const OTHER: &str = "spiffe://cluster.local/ns/fuzz/sa/other";

/// Checks one input; returns its outcome.
pub fn check(data: &[u8]) -> String {
    let Ok(value) = HeaderValue::from_bytes(data) else {
        return "not a header value".into();
    };
    let claim = parse(&value);
    if let Some(c) = &claim
        && let (Some(id), Some(dst)) = (&c.identity, &c.destination_service)
    {
        let again = encode(&c.workload, id, dst).expect("a parsed claim encodes");
        assert_eq!(parse(&again).as_ref(), Some(c), "claim round trip");
        let src = resolve(Some(&value), Some(id), &[Arc::clone(dst)]);
        assert_eq!(&*src.principal, &**id, "principal");
    }
    let claimed = claim.as_ref().and_then(|c| c.identity.as_deref());
    if claimed != Some(OTHER) {
        let src = resolve(Some(&value), Some(OTHER), &[]);
        assert_eq!(&*src.principal, OTHER, "principal of another peer");
        assert_eq!(
            &*src.workload.name, "unknown",
            "a claim believed for another peer"
        );
    }
    let _ = resolve(Some(&value), None, &[]);
    match claim {
        None => "malformed".into(),
        Some(c) => format!(
            "claim: identity {} dst {}",
            c.identity.is_some(),
            c.destination_service.is_some()
        ),
    }
}
