//! What a route does besides forwarding: a redirect answered by the proxy, and a rewrite of the
//! path and authority before the request goes on.

use super::invalid;
use super::matches::{Match, StrMatch, authority};
use crate::config::ConfigError;
use crate::http::Body;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::{Either, Full};
use sinew_proto::config::v1 as pb;

#[derive(Debug)]
pub(super) struct Redirect {
    uri: Option<Box<str>>,
    authority: Option<Box<str>>,
    port: Option<u16>,
    scheme: Option<Box<str>>,
    status: StatusCode,
}

#[derive(Debug)]
pub(super) struct Rewrite {
    pub(super) uri: Option<Box<str>>,
    pub(super) authority: Option<HeaderValue>,
}

// === impl Redirect ===

impl Redirect {
    pub(super) fn from_proto(field: &str, r: &pb::Redirect) -> Result<Self, ConfigError> {
        let status = match r.redirect_code {
            0 => StatusCode::MOVED_PERMANENTLY,
            c @ (301 | 302 | 303 | 307 | 308) => StatusCode::from_u16(c as u16)
                .map_err(|_| invalid(format!("{field}.redirectCode"), "not a status"))?,
            c => {
                return Err(invalid(
                    format!("{field}.redirectCode"),
                    format!("{c} is not a redirect status (301, 302, 303, 307, 308)"),
                ));
            }
        };
        let port =
            match r.port {
                0 => None,
                p => Some(u16::try_from(p).map_err(|_| {
                    invalid(format!("{field}.port"), format!("{p} is not a TCP port"))
                })?),
            };
        let nonempty = |s: &str| (!s.is_empty()).then(|| s.into());
        if !r.uri.is_empty() && !r.uri.starts_with('/') {
            return Err(invalid(
                format!("{field}.uri"),
                format!("{:?} is not a path starting with /", r.uri),
            ));
        }
        Ok(Self {
            uri: nonempty(&r.uri),
            authority: nonempty(&r.authority),
            port,
            scheme: nonempty(&r.scheme),
            status,
        })
    }

    /// The redirect response for `req`: `Location` built from the request with this redirect's
    /// parts replaced (the query string is kept unless the new `uri` has one).
    pub(super) fn respond<B>(&self, req: &Request<B>) -> Response<Body> {
        let scheme = self
            .scheme
            .as_deref()
            .unwrap_or_else(|| req.uri().scheme_str().unwrap_or("http"));
        let authority = self
            .authority
            .as_deref()
            .or_else(|| authority(req))
            .unwrap_or("");
        let host = match self.port {
            None => authority.to_owned(),
            Some(port) => {
                let host = http::uri::Authority::try_from(authority)
                    .map(|a| a.host().to_owned())
                    .unwrap_or_else(|_| authority.to_owned());
                format!("{host}:{port}")
            }
        };
        let path = self.uri.as_deref().unwrap_or(req.uri().path());
        let mut location = format!("{scheme}://{host}{path}");
        if !path.contains('?')
            && let Some(q) = req.uri().query()
        {
            location.push('?');
            location.push_str(q);
        }
        let mut rsp = Response::new(Either::Right(Full::new(Bytes::new())));
        *rsp.status_mut() = self.status;
        if let Ok(v) = HeaderValue::from_str(&location) {
            rsp.headers_mut().insert(header::LOCATION, v);
        }
        rsp
    }
}

// === impl Rewrite ===

impl Rewrite {
    /// Replaces the matched prefix (or the whole path for exact and regex matches, or when the
    /// route matched without a uri condition) and the authority.
    pub(super) fn apply<B>(&self, req: &mut Request<B>, matched: Option<&Match>) {
        if let Some(new) = &self.uri {
            let path = req.uri().path();
            let rest = match matched.and_then(|m| m.uri.as_ref()) {
                Some(StrMatch::Prefix(p)) => path.get(p.len()..).unwrap_or(""),
                _ => "",
            };
            let mut pq = String::with_capacity(new.len() + rest.len() + 16);
            pq.push_str(new);
            pq.push_str(rest);
            if let Some(q) = req.uri().query() {
                pq.push('?');
                pq.push_str(q);
            }
            let mut parts = req.uri().clone().into_parts();
            if let Ok(p) = http::uri::PathAndQuery::try_from(pq) {
                parts.path_and_query = Some(p);
                if let Ok(uri) = Uri::from_parts(parts) {
                    *req.uri_mut() = uri;
                }
            }
        }
        if let Some(authority) = &self.authority {
            if req.uri().authority().is_some() {
                let mut parts = req.uri().clone().into_parts();
                if let Ok(a) = http::uri::Authority::try_from(authority.as_bytes()) {
                    parts.authority = Some(a);
                    if let Ok(uri) = Uri::from_parts(parts) {
                        *req.uri_mut() = uri;
                    }
                }
            }
            if req.headers().contains_key(header::HOST) || req.uri().authority().is_none() {
                req.headers_mut().insert(header::HOST, authority.clone());
            }
        }
    }
}
