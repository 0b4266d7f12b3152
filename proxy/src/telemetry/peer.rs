//! Peer metadata exchange: how the server's proxy learns the client's workload labels.
//!
//! The client's proxy adds `x-sinew-peer` to each request it sends to a meshed endpoint:
//!
//! ```text
//! x-sinew-peer: 1;<spiffe identity>;<namespace>;<workload>;<app>;<version>;<canonical service>;<canonical revision>;<destination service>
//! ```
//!
//! The value is the same for every request of a destination, so HPACK indexes it after the
//! first request and it costs a byte or two on the wire after that.
//!
//! Promises, on the server's side ([`resolve`]):
//! - the header is read only on mTLS connections, and believed only when its identity equals
//!   the verified peer identity and its namespace is that identity's; otherwise the source workload labels are "unknown" (the
//!   principal is still the verified one);
//! - `destination_service` is the header's only if it names one of this pod's services
//!   (`telemetry.services`), else this pod's only service if it has exactly one, else "unknown";
//! - any bytes at all (non-UTF-8, oversized, too few or too many fields, hostile characters)
//!   give a result, never a panic: a malformed header is ignored whole, a malformed field reads
//!   "unknown".
//!
//! Both proxies remove the header from what the app sees or sends: the client's proxy drops an
//! app's own `x-sinew-peer` before adding its own, the server's proxy strips it before the app.

use super::labels::{self, DestinationService};
use super::{UNKNOWN, Workload};
use http::{HeaderName, HeaderValue};
use std::sync::Arc;

pub static PEER: HeaderName = HeaderName::from_static("x-sinew-peer");

/// The longest header value read; longer ones are ignored.
pub const MAX_LEN: usize = 2048;

const VERSION: &str = "1";
const FIELDS: usize = 9;

/// The header value this proxy sends for requests to `destination_service`.
pub fn encode(own: &Workload, identity: &str, destination_service: &str) -> Option<HeaderValue> {
    let v = [
        VERSION,
        identity,
        &own.namespace,
        &own.name,
        &own.app,
        &own.version,
        &own.canonical_service,
        &own.canonical_revision,
        destination_service,
    ]
    .join(";");
    HeaderValue::from_str(&v).ok()
}

/// What a peer claims, parsed: every field checked.
#[derive(Debug, PartialEq)]
pub struct Claim {
    /// The identity the sender says it has (`None`: malformed).
    pub identity: Option<Arc<str>>,
    pub workload: Workload,
    /// Its destination service as sent (checked as a label value).
    pub destination_service: Option<Arc<str>>,
}

/// Parses a header value; `None` if it is not a well-formed version-1 value.
pub fn parse(v: &HeaderValue) -> Option<Claim> {
    let bytes = v.as_bytes();
    if bytes.len() > MAX_LEN {
        return None;
    }
    let s = std::str::from_utf8(bytes).ok()?;
    let mut f = s.split(';');
    let mut next = || f.next();
    if next()? != VERSION {
        return None;
    }
    let fields: [&str; FIELDS - 1] = [
        next()?,
        next()?,
        next()?,
        next()?,
        next()?,
        next()?,
        next()?,
        next()?,
    ];
    if next().is_some() {
        return None;
    }
    let [identity, ns, name, app, version, cs, cr, dst] = fields;
    let v = labels::value_or_unknown;
    Some(Claim {
        identity: labels::principal(identity).map(Arc::from),
        workload: Workload {
            name: v(name),
            namespace: v(ns),
            app: v(app),
            version: v(version),
            canonical_service: v(cs),
            canonical_revision: v(cr),
        },
        destination_service: labels::value(dst).map(Arc::from),
    })
}

/// What the server's proxy believes about a request's source.
#[derive(Clone, Debug, PartialEq)]
pub struct Source {
    pub workload: Workload,
    /// The verified principal, or "unknown" without mTLS.
    pub principal: Arc<str>,
    pub destination_service: DestinationService,
}

/// The source of a request arriving with `header` over a connection whose verified peer is
/// `verified` (`None`: not mTLS), for a pod serving `services`.
pub fn resolve(
    header: Option<&HeaderValue>,
    verified: Option<&str>,
    services: &[Arc<str>],
) -> Source {
    let only = || match services {
        [one] => DestinationService::from_host(one),
        _ => DestinationService::unknown(),
    };
    let Some(verified) = verified else {
        return Source {
            workload: Workload::unknown(),
            principal: Arc::from(UNKNOWN),
            destination_service: only(),
        };
    };
    let principal = labels::principal_or_unknown(verified);
    // The claimed namespace must be the identity's own: the certificate vouches for it.
    let claim = header.and_then(parse).filter(|c| {
        c.identity.as_deref() == Some(verified)
            && namespace_of(verified) == Some(&*c.workload.namespace)
    });
    match claim {
        Some(c) => {
            let dst = c
                .destination_service
                .filter(|d| services.iter().any(|s| s == d))
                .map_or_else(only, |d| DestinationService::from_host(&d));
            Source {
                workload: c.workload,
                principal,
                destination_service: dst,
            }
        }
        None => Source {
            workload: Workload::unknown(),
            principal,
            destination_service: only(),
        },
    }
}

/// The namespace a SPIFFE identity names (`spiffe://<trust domain>/ns/<namespace>/sa/<sa>`).
fn namespace_of(identity: &str) -> Option<&str> {
    let mut path = identity.strip_prefix("spiffe://")?.split('/').skip(1);
    match (
        path.next(),
        path.next(),
        path.next(),
        path.next(),
        path.next(),
    ) {
        (Some("ns"), Some(ns), Some("sa"), Some(_), None) => Some(ns),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
