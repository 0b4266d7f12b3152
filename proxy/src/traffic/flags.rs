//! How the route-level layers hand Envoy's response flags outward.
//!
//! Promise: a flag a layer sets reaches the outer error layer on both paths. On a response it
//! goes into the response's [`ResponseFlags`] extension (merged with what is there); on an error
//! the [`crate::http::ProxyError`] travels unchanged (its own flag, e.g. UF or UT, is rendered by
//! the error layer) and the extra flags (URX, UO for a retry overflow, DI) go into the
//! [`RequestFlags`] the error layer put in the request's extensions, if it did.

use super::ResponseFlags;
use http::Response;
use std::sync::{Arc, Mutex};

/// A per-request slot for flags set on the way to an error. The outer error layer inserts one
/// into the request's extensions before calling the router and reads it when rendering a
/// `ProxyError`; the retry and fault layers add to it. Cloning shares the slot.
#[derive(Clone, Debug, Default)]
pub struct RequestFlags(Arc<Mutex<ResponseFlags>>);

// === impl RequestFlags ===

impl RequestFlags {
    pub fn insert(&self, flag: ResponseFlags) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(flag);
    }

    pub fn get(&self) -> ResponseFlags {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Adds `flag` to the response's [`ResponseFlags`] extension.
pub fn add_to_response<B>(rsp: &mut Response<B>, flag: ResponseFlags) {
    match rsp.extensions_mut().get_mut::<ResponseFlags>() {
        Some(flags) => flags.insert(flag),
        None => {
            rsp.extensions_mut().insert(flag);
        }
    }
}

/// Adds `flag` where it will be seen: the response's extensions, or the request's
/// [`RequestFlags`] (if any) for an error.
pub fn add<B, E>(
    res: &mut Result<Response<B>, E>,
    request: Option<&RequestFlags>,
    flag: ResponseFlags,
) {
    match res {
        Ok(rsp) => add_to_response(rsp, flag),
        Err(_) => {
            if let Some(r) = request {
                r.insert(flag);
            }
        }
    }
}
