//! How the route-level layers hand Envoy's response flags outward.
//!
//! Promise: a flag a layer sets reaches the outer error layer on both paths. On a response it
//! goes into the response's [`ResponseFlags`] extension (merged with what is there); on an error
//! it wraps the [`ProxyError`] ([`ProxyError::Flagged`]: rendered with its own flag, e.g. UF or
//! UT, plus the added ones: URX, UO for a retry overflow, DI). Nothing is allocated for a request
//! that collects no flag.

use super::ResponseFlags;
use crate::http::ProxyError;
use http::Response;

/// Adds `flag` to the response's [`ResponseFlags`] extension.
pub fn add_to_response<B>(rsp: &mut Response<B>, flag: ResponseFlags) {
    match rsp.extensions_mut().get_mut::<ResponseFlags>() {
        Some(flags) => flags.insert(flag),
        None => {
            rsp.extensions_mut().insert(flag);
        }
    }
}

/// Adds `flag` where the error layer will see it: the response's extensions, or the error.
pub fn add<B>(
    res: Result<Response<B>, ProxyError>,
    flag: ResponseFlags,
) -> Result<Response<B>, ProxyError> {
    match res {
        Ok(mut rsp) => {
            add_to_response(&mut rsp, flag);
            Ok(rsp)
        }
        Err(e) => Err(e.flag(flag)),
    }
}
