//! Request matching for routes: Istio's `HTTPMatchRequest` (uri, scheme, method, authority,
//! headers, query parameters, withoutHeaders; exact, prefix or anchored regex).

use super::invalid;
use crate::config::ConfigError;
use http::Request;
use http::header::{self, HeaderMap, HeaderName};
use regex::Regex;
use sinew_proto::config::v1 as pb;

/// One match block: all conditions ANDed.
#[derive(Debug, Default)]
pub(super) struct Match {
    pub(super) uri: Option<StrMatch>,
    scheme: Option<StrMatch>,
    method: Option<StrMatch>,
    authority: Option<StrMatch>,
    headers: Box<[(HeaderName, StrMatch)]>,
    query_params: Box<[(Box<str>, StrMatch)]>,
    without_headers: Box<[(HeaderName, StrMatch)]>,
    ignore_uri_case: bool,
}

#[derive(Debug)]
pub(super) enum StrMatch {
    Exact(Box<str>),
    Prefix(Box<str>),
    /// Anchored: the whole value must match.
    Regex(Regex),
    /// No kind set: any value (for headers and query parameters: present).
    Any,
}

// === impl Match ===

impl Match {
    pub(super) fn from_proto(field: &str, m: &pb::HttpMatch) -> Result<Self, ConfigError> {
        let one = |sub: &str, s: &Option<pb::StringMatch>, nocase: bool| {
            s.as_ref()
                .map(|s| StrMatch::from_proto(&format!("{field}.{sub}"), s, nocase))
                .transpose()
        };
        let headers = |sub: &str, map: &std::collections::BTreeMap<String, pb::StringMatch>| {
            let mut out = map
                .iter()
                .map(|(name, s)| {
                    let f = format!("{field}.{sub}[{name}]");
                    let name = HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
                        .map_err(|_| invalid(&f, format!("{name:?} is not a header name")))?;
                    Ok((name, StrMatch::from_proto(&f, s, false)?))
                })
                .collect::<Result<Vec<_>, ConfigError>>()?;
            out.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
            Ok::<_, ConfigError>(out.into_boxed_slice())
        };
        let mut query_params = m
            .query_params
            .iter()
            .map(|(name, s)| {
                let f = format!("{field}.queryParams[{name}]");
                Ok((name.as_str().into(), StrMatch::from_proto(&f, s, false)?))
            })
            .collect::<Result<Vec<(Box<str>, StrMatch)>, ConfigError>>()?;
        query_params.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(Self {
            uri: one("uri", &m.uri, m.ignore_uri_case)?,
            scheme: one("scheme", &m.scheme, false)?,
            method: one("method", &m.method, false)?,
            authority: one("authority", &m.authority, false)?,
            headers: headers("headers", &m.headers)?,
            query_params: query_params.into_boxed_slice(),
            without_headers: headers("withoutHeaders", &m.without_headers)?,
            ignore_uri_case: m.ignore_uri_case,
        })
    }

    pub(super) fn matches(&self, v: &View<'_>, headers: &HeaderMap) -> bool {
        let opt = |m: &Option<StrMatch>, value: Option<&str>, nocase: bool| match m {
            None => true,
            Some(m) => value.is_some_and(|v| m.matches(v, nocase)),
        };
        opt(&self.uri, Some(v.path), self.ignore_uri_case)
            && opt(&self.scheme, Some(v.scheme), false)
            && opt(&self.method, Some(v.method), false)
            && opt(&self.authority, v.authority, false)
            && self
                .headers
                .iter()
                .all(|(name, m)| header_matches(headers, name, m))
            && self
                .without_headers
                .iter()
                .all(|(name, m)| !header_matches(headers, name, m))
            && self.query_params.iter().all(|(name, m)| {
                query_param(v.query, name).is_some_and(|value| m.matches(value, false))
            })
    }
}

/// A header condition: the values joined with `,` (as Envoy matches several values).
fn header_matches(headers: &HeaderMap, name: &HeaderName, m: &StrMatch) -> bool {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return false;
    };
    if matches!(m, StrMatch::Any) {
        return true;
    }
    match values.next() {
        None => first.to_str().is_ok_and(|v| m.matches(v, false)),
        Some(_) => {
            // Rare: allocate only for repeated headers.
            let joined = headers
                .get_all(name)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect::<Vec<_>>()
                .join(",");
            m.matches(&joined, false)
        }
    }
}

/// The first value of query parameter `name` (not percent-decoded; a parameter without `=` has
/// the empty value).
fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then_some(v)
    })
}

/// What matching reads from a request, computed once.
pub(super) struct View<'a> {
    path: &'a str,
    query: Option<&'a str>,
    scheme: &'a str,
    method: &'a str,
    authority: Option<&'a str>,
}

impl<'a> View<'a> {
    pub(super) fn of<B>(req: &'a Request<B>) -> Self {
        Self {
            path: req.uri().path(),
            query: req.uri().query(),
            scheme: req.uri().scheme_str().unwrap_or("http"),
            method: req.method().as_str(),
            authority: authority(req),
        }
    }
}

/// `:authority`, or `Host` for HTTP/1 origin-form requests.
pub(super) fn authority<B>(req: &Request<B>) -> Option<&str> {
    req.uri().authority().map(|a| a.as_str()).or_else(|| {
        req.headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
    })
}

// === impl StrMatch ===

impl StrMatch {
    fn from_proto(field: &str, s: &pb::StringMatch, nocase: bool) -> Result<Self, ConfigError> {
        use pb::string_match::Kind;
        Ok(match &s.kind {
            None => Self::Any,
            Some(Kind::Exact(e)) => Self::Exact(e.as_str().into()),
            Some(Kind::Prefix(p)) => Self::Prefix(p.as_str().into()),
            Some(Kind::Regex(r)) => {
                let flags = if nocase { "(?i)" } else { "" };
                let anchored = format!("^{flags}(?:{r})$");
                Self::Regex(Regex::new(&anchored).map_err(|e| {
                    invalid(
                        format!("{field}.regex"),
                        format!("invalid regex {r:?}: {e}"),
                    )
                })?)
            }
        })
    }

    fn matches(&self, v: &str, nocase: bool) -> bool {
        match self {
            Self::Any => true,
            Self::Exact(e) if nocase => v.eq_ignore_ascii_case(e),
            Self::Exact(e) => v == &**e,
            Self::Prefix(p) if nocase => {
                v.len() >= p.len() && v.as_bytes()[..p.len()].eq_ignore_ascii_case(p.as_bytes())
            }
            Self::Prefix(p) => v.starts_with(&**p),
            Self::Regex(r) => r.is_match(v),
        }
    }
}
