//! The route layer (VirtualService `http[]`): a validated route table and the [`Router`] that,
//! per request, finds the first matching route, redirects or rewrites, applies header
//! operations, mirrors, picks a weighted destination and sends the request down the route's own
//! `fault → timeout → retry` stack.
//!
//! Promise: [`RouteTable::from_proto`] either returns a table whose every regex, header and
//! duration is valid, or names the field that is not; matching follows Istio (routes in order,
//! first match wins, match blocks ORed, conditions ANDed); a request no route matches fails with
//! [`ProxyError::NoRoute`] (404 NR); a mirror never delays or fails the request it copies.

use super::budget::RetryBudget;
use super::fault::{Fault, FaultPolicy, Percent};
use super::replay::{MAX_REPLAY_BYTES, ReplayBody};
use super::retry::{Budgets, Retry, RetryPolicy};
use super::timeout::Timeout;
use super::{DestinationKey, PreviousHosts};
use crate::config::ConfigError;
use crate::http::{Body, ProxyError};
use bytes::Bytes;
use futures_util::future::{self, BoxFuture};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::{Either, Full};
use regex::Regex;
use sinew_proto::config::v1 as pb;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tower::{Service, ServiceExt};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A service's validated HTTP routes, in order.
#[derive(Debug)]
pub struct RouteTable {
    service: Arc<str>,
    routes: Box<[Route]>,
}

/// One `http[]` entry.
#[derive(Debug)]
pub struct Route {
    pub name: Arc<str>,
    matches: Box<[Match]>,
    action: Action,
    rewrite: Option<Rewrite>,
    /// Whole request, retries included.
    pub timeout: Option<Duration>,
    pub retry: Arc<RetryPolicy>,
    pub fault: Option<Arc<FaultPolicy>>,
    request_headers: HeaderOps,
    response_headers: HeaderOps,
    mirrors: Box<[Mirror]>,
}

#[derive(Debug)]
enum Action {
    Forward(Destinations),
    Redirect(Redirect),
}

/// Weighted destinations; weights are relative, zero weights dropped when there are several.
#[derive(Debug)]
struct Destinations {
    list: Box<[Destination]>,
    total: u32,
}

#[derive(Debug)]
pub struct Destination {
    pub key: DestinationKey,
    pub weight: u32,
    request_headers: HeaderOps,
    response_headers: HeaderOps,
}

/// One match block: all conditions ANDed.
#[derive(Debug, Default)]
struct Match {
    uri: Option<StrMatch>,
    scheme: Option<StrMatch>,
    method: Option<StrMatch>,
    authority: Option<StrMatch>,
    headers: Box<[(HeaderName, StrMatch)]>,
    query_params: Box<[(Box<str>, StrMatch)]>,
    without_headers: Box<[(HeaderName, StrMatch)]>,
    ignore_uri_case: bool,
}

#[derive(Debug)]
enum StrMatch {
    Exact(Box<str>),
    Prefix(Box<str>),
    /// Anchored: the whole value must match.
    Regex(Regex),
    /// No kind set: any value (for headers and query parameters: present).
    Any,
}

#[derive(Debug)]
struct Redirect {
    uri: Option<Box<str>>,
    authority: Option<Box<str>>,
    port: Option<u16>,
    scheme: Option<Box<str>>,
    status: StatusCode,
}

#[derive(Debug)]
struct Rewrite {
    uri: Option<Box<str>>,
    authority: Option<HeaderValue>,
}

/// Envoy's header mutations for one level: removals first, then `set` (overwrite), then `add`
/// (append).
#[derive(Debug, Default)]
pub struct HeaderOps {
    set: Box<[(HeaderName, HeaderValue)]>,
    add: Box<[(HeaderName, HeaderValue)]>,
    remove: Box<[HeaderName]>,
}

#[derive(Debug)]
struct Mirror {
    key: DestinationKey,
    percent: Percent,
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

// === impl RouteTable ===

impl RouteTable {
    /// Validates `routes` (at `field`, e.g. `services[0].http`) of the service named `service`
    /// (its resource name, where destinations with no service go). No routes: Istio's default
    /// route, to this service with the default retry policy and no timeout.
    pub fn from_proto(
        field: &str,
        service: &str,
        routes: &[pb::HttpRoute],
    ) -> Result<Self, ConfigError> {
        let service: Arc<str> = Arc::from(service);
        if routes.is_empty() {
            return Ok(Self::default_route(service));
        }
        let routes = routes
            .iter()
            .enumerate()
            .map(|(i, r)| Route::from_proto(&format!("{field}[{i}]"), &service, r))
            .collect::<Result<_, _>>()?;
        Ok(Self { service, routes })
    }

    fn default_route(service: Arc<str>) -> Self {
        let route = Route {
            name: Arc::from("default"),
            matches: Box::new([]),
            action: Action::Forward(Destinations {
                list: Box::new([Destination {
                    key: DestinationKey {
                        service: service.clone(),
                        subset: None,
                    },
                    weight: 100,
                    request_headers: HeaderOps::default(),
                    response_headers: HeaderOps::default(),
                }]),
                total: 100,
            }),
            rewrite: None,
            timeout: None,
            retry: Arc::new(RetryPolicy::istio_default()),
            fault: None,
            request_headers: HeaderOps::default(),
            response_headers: HeaderOps::default(),
            mirrors: Box::new([]),
        };
        Self {
            service,
            routes: Box::new([route]),
        }
    }

    pub fn service(&self) -> &Arc<str> {
        &self.service
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The first route matching `req` and the index of its match block that matched (`None`
    /// when the route has no match blocks).
    pub fn find<B>(&self, req: &Request<B>) -> Option<(usize, Option<usize>)> {
        let view = View::of(req);
        self.routes.iter().enumerate().find_map(|(i, r)| {
            if r.matches.is_empty() {
                return Some((i, None));
            }
            r.matches
                .iter()
                .position(|m| m.matches(&view, req.headers()))
                .map(|m| (i, Some(m)))
        })
    }
}

// === impl Route ===

impl Route {
    fn from_proto(field: &str, service: &Arc<str>, r: &pb::HttpRoute) -> Result<Self, ConfigError> {
        let matches = r
            .matches
            .iter()
            .enumerate()
            .map(|(i, m)| Match::from_proto(&format!("{field}.matches[{i}]"), m))
            .collect::<Result<_, _>>()?;
        let action = match (&r.redirect, r.destinations.is_empty()) {
            (Some(_), false) => {
                return Err(invalid(
                    format!("{field}.redirect"),
                    "a route has either destinations or a redirect, not both",
                ));
            }
            (Some(redirect), true) => Action::Redirect(Redirect::from_proto(
                &format!("{field}.redirect"),
                redirect,
            )?),
            (None, true) => {
                return Err(invalid(
                    format!("{field}.destinations"),
                    "a route needs destinations or a redirect",
                ));
            }
            (None, false) => Action::Forward(Destinations::from_proto(
                &format!("{field}.destinations"),
                service,
                &r.destinations,
            )?),
        };
        let rewrite = match &r.rewrite {
            None => None,
            Some(rw) => {
                let authority = match rw.authority.as_str() {
                    "" => None,
                    a => Some(
                        HeaderValue::from_str(a)
                            .ok()
                            .filter(|_| http::uri::Authority::try_from(a).is_ok())
                            .ok_or_else(|| {
                                invalid(
                                    format!("{field}.rewrite.authority"),
                                    format!("{a:?} is not a valid authority"),
                                )
                            })?,
                    ),
                };
                let uri = match rw.uri.as_str() {
                    "" => None,
                    u if u.starts_with('/') && http::uri::PathAndQuery::try_from(u).is_ok() => {
                        Some(u.into())
                    }
                    u => {
                        return Err(invalid(
                            format!("{field}.rewrite.uri"),
                            format!("{u:?} is not a path starting with /"),
                        ));
                    }
                };
                (uri.is_some() || authority.is_some()).then_some(Rewrite { uri, authority })
            }
        };
        if rewrite.is_some() && matches!(action, Action::Redirect(_)) {
            return Err(invalid(
                format!("{field}.rewrite"),
                "a redirect route cannot also rewrite",
            ));
        }
        let timeout = r
            .timeout
            .as_ref()
            .map(|d| super::retry::duration(field, "timeout", d))
            .transpose()?;
        let mirrors = r
            .mirrors
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let f = format!("{field}.mirrors[{i}]");
                Ok(Mirror {
                    key: destination_key(service, &m.service, &m.subset),
                    percent: match m.percentage {
                        None => Percent::ALL,
                        Some(p) => Percent::from_proto(&format!("{f}.percentage"), p)?,
                    },
                })
            })
            .collect::<Result<_, ConfigError>>()?;
        Ok(Self {
            name: Arc::from(r.name.as_str()),
            matches,
            action,
            rewrite,
            timeout,
            retry: Arc::new(RetryPolicy::from_proto(
                &format!("{field}.retries"),
                r.retries.as_ref(),
            )?),
            fault: FaultPolicy::from_proto(&format!("{field}.fault"), r.fault.as_ref())?
                .map(Arc::new),
            request_headers: HeaderOps::from_proto(
                &format!("{field}.requestHeaders"),
                r.request_headers.as_ref(),
            )?,
            response_headers: HeaderOps::from_proto(
                &format!("{field}.responseHeaders"),
                r.response_headers.as_ref(),
            )?,
            mirrors,
        })
    }

    /// The destinations and their weights (empty for a redirect).
    pub fn destinations(&self) -> &[Destination] {
        match &self.action {
            Action::Forward(d) => &d.list,
            Action::Redirect(_) => &[],
        }
    }

    /// Picks a destination index for one request, weighted, from `roll` in `0..total`.
    fn pick_with(d: &Destinations, roll: u32) -> usize {
        let mut acc = 0;
        for (i, dst) in d.list.iter().enumerate() {
            acc += dst.weight;
            if roll < acc {
                return i;
            }
        }
        d.list.len() - 1
    }

    /// A weighted pick using `rng` (tests use a seeded one).
    pub fn pick(&self, rng: &mut fastrand::Rng) -> Option<&Destination> {
        match &self.action {
            Action::Forward(d) => Some(&d.list[Self::pick_with(d, rng.u32(0..d.total))]),
            Action::Redirect(_) => None,
        }
    }
}

fn destination_key(own: &Arc<str>, service: &str, subset: &str) -> DestinationKey {
    DestinationKey {
        service: if service.is_empty() || service == &**own {
            own.clone()
        } else {
            Arc::from(service)
        },
        subset: (!subset.is_empty()).then(|| Arc::from(subset)),
    }
}

// === impl Destinations ===

impl Destinations {
    fn from_proto(
        field: &str,
        service: &Arc<str>,
        list: &[pb::RouteDestination],
    ) -> Result<Self, ConfigError> {
        let single = list.len() == 1;
        let mut out = Vec::with_capacity(list.len());
        let mut total: u32 = 0;
        for (i, d) in list.iter().enumerate() {
            let f = format!("{field}[{i}]");
            // Istio: a single destination gets 100 %; weight 0 among several is dropped.
            let weight = if single { 100 } else { d.weight };
            if weight == 0 {
                continue;
            }
            total = total
                .checked_add(weight)
                .ok_or_else(|| invalid(format!("{f}.weight"), "weights add up past 2^32"))?;
            out.push(Destination {
                key: destination_key(service, &d.service, &d.subset),
                weight,
                request_headers: HeaderOps::from_proto(
                    &format!("{f}.requestHeaders"),
                    d.request_headers.as_ref(),
                )?,
                response_headers: HeaderOps::from_proto(
                    &format!("{f}.responseHeaders"),
                    d.response_headers.as_ref(),
                )?,
            });
        }
        if total == 0 {
            return Err(invalid(field, "destination weights add up to 0"));
        }
        Ok(Self {
            list: out.into_boxed_slice(),
            total,
        })
    }
}

// === impl Match ===

impl Match {
    fn from_proto(field: &str, m: &pb::HttpMatch) -> Result<Self, ConfigError> {
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

    fn matches(&self, v: &View<'_>, headers: &HeaderMap) -> bool {
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
struct View<'a> {
    path: &'a str,
    query: Option<&'a str>,
    scheme: &'a str,
    method: &'a str,
    authority: Option<&'a str>,
}

impl<'a> View<'a> {
    fn of<B>(req: &'a Request<B>) -> Self {
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
fn authority<B>(req: &Request<B>) -> Option<&str> {
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

// === impl Redirect ===

impl Redirect {
    fn from_proto(field: &str, r: &pb::Redirect) -> Result<Self, ConfigError> {
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
    fn respond<B>(&self, req: &Request<B>) -> Response<Body> {
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
    fn apply<B>(&self, req: &mut Request<B>, matched: Option<&Match>) {
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

// === impl HeaderOps ===

impl HeaderOps {
    fn from_proto(field: &str, ops: Option<&pb::HeaderOps>) -> Result<Self, ConfigError> {
        let Some(ops) = ops else {
            return Ok(Self::default());
        };
        let pairs = |sub: &str, map: &std::collections::BTreeMap<String, String>| {
            let mut out = map
                .iter()
                .map(|(k, v)| {
                    let f = format!("{field}.{sub}[{k}]");
                    let name = HeaderName::from_bytes(k.to_ascii_lowercase().as_bytes())
                        .map_err(|_| invalid(&f, format!("{k:?} is not a header name")))?;
                    let value = HeaderValue::from_str(v)
                        .map_err(|_| invalid(&f, format!("{v:?} is not a header value")))?;
                    Ok((name, value))
                })
                .collect::<Result<Vec<_>, ConfigError>>()?;
            // Maps have no order; make application deterministic.
            out.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
            Ok::<_, ConfigError>(out.into_boxed_slice())
        };
        let remove = ops
            .remove
            .iter()
            .enumerate()
            .map(|(i, k)| {
                HeaderName::from_bytes(k.to_ascii_lowercase().as_bytes()).map_err(|_| {
                    invalid(
                        format!("{field}.remove[{i}]"),
                        format!("{k:?} is not a header name"),
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            set: pairs("set", &ops.set)?,
            add: pairs("add", &ops.add)?,
            remove,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }

    /// Removals, then `set` (replacing every value), then `add` (appending), as Envoy's header
    /// parser evaluates one level.
    pub fn apply(&self, headers: &mut HeaderMap) {
        for name in &self.remove {
            headers.remove(name);
        }
        for (name, value) in &self.set {
            headers.insert(name.clone(), value.clone());
        }
        for (name, value) in &self.add {
            headers.append(name.clone(), value.clone());
        }
    }
}

/// One route's stack below the router.
type RouteStack<S> = Fault<Timeout<Retry<S>>>;

/// The route layer: a tower service over one [`RouteTable`]. Build a new one when the table
/// changes; requests in flight keep the stacks they started with.
pub struct Router<S> {
    table: Arc<RouteTable>,
    stacks: Arc<[RouteStack<S>]>,
    inner: S,
}

impl<S: Clone> Clone for Router<S> {
    fn clone(&self) -> Self {
        Self {
            table: self.table.clone(),
            stacks: self.stacks.clone(),
            inner: self.inner.clone(),
        }
    }
}

// === impl Router ===

impl<S: Clone> Router<S> {
    /// Builds each route's `fault → timeout → retry → inner` stack once. `budgets` gives the
    /// retry limits of a destination (the per-service cache's).
    pub fn new(table: Arc<RouteTable>, inner: S, budgets: Budgets) -> Self {
        let stacks = table
            .routes
            .iter()
            .map(|r| {
                let retry = Retry::new(r.retry.clone(), budgets.clone(), inner.clone());
                Fault::new(r.fault.clone(), Timeout::new(r.timeout, retry))
            })
            .collect();
        Self {
            table,
            stacks,
            inner,
        }
    }

    /// A router whose destinations have no retry limits (no DestinationRule anywhere).
    pub fn without_budgets(table: Arc<RouteTable>, inner: S) -> Self {
        let unlimited = Arc::new(RetryBudget::unlimited());
        Self::new(table, inner, Arc::new(move |_| unlimited.clone()))
    }

    pub fn table(&self) -> &Arc<RouteTable> {
        &self.table
    }
}

impl<S, B> Service<Request<B>> for Router<S>
where
    S: Service<Request<ReplayBody<B>>, Response = Response<Body>, Error = ProxyError>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = ProxyError;
    type Future = BoxFuture<'static, Result<Response<Body>, ProxyError>>;

    /// Always ready: each request drives the inner service's readiness on its own clone.
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let table = &self.table;
        let Some((ri, mi)) = table.find(&req) else {
            return Box::pin(future::ready(Err(ProxyError::NoRoute(format!(
                "{}: no route matches {} {}",
                table.service,
                req.method(),
                req.uri().path()
            )))));
        };
        let route = &table.routes[ri];
        let dests = match &route.action {
            Action::Redirect(r) => return Box::pin(future::ready(Ok(r.respond(&req)))),
            Action::Forward(d) => d,
        };
        if let Some(rw) = &route.rewrite {
            rw.apply(&mut req, mi.map(|m| &route.matches[m]));
        }
        let di = match dests.list.len() {
            1 => 0,
            _ => Route::pick_with(dests, fastrand::u32(0..dests.total)),
        };
        let dst = &dests.list[di];
        // Envoy applies the most specific level first: the destination's (weighted cluster)
        // operations, then the route's, so the route's `set` wins on a conflict.
        dst.request_headers.apply(req.headers_mut());
        route.request_headers.apply(req.headers_mut());

        let replay = route.retry.retries > 0 || !route.mirrors.is_empty();
        let (mut parts, body) = req.into_parts();
        let body = ReplayBody::new(body, if replay { MAX_REPLAY_BYTES } else { 0 });
        for m in route.mirrors.iter() {
            if m.percent.sample_thread() && body.fits(MAX_REPLAY_BYTES) {
                self.mirror(&parts, &body, m);
            }
        }
        parts.extensions.insert(dst.key.clone());
        if route.retry.retries > 0 && route.retry.previous_hosts {
            parts.extensions.insert(PreviousHosts::default());
        }
        let req = Request::from_parts(parts, body);
        let call = self.stacks[ri].clone().oneshot(req);
        if dst.response_headers.is_empty() && route.response_headers.is_empty() {
            return Box::pin(call);
        }
        let table = table.clone();
        Box::pin(async move {
            let mut rsp = call.await?;
            let route = &table.routes[ri];
            if let Action::Forward(d) = &route.action {
                d.list[di].response_headers.apply(rsp.headers_mut());
            }
            route.response_headers.apply(rsp.headers_mut());
            Ok(rsp)
        })
    }
}

impl<S> Router<S> {
    /// Sends a copy of the request to the mirror's destination in the background, with
    /// `-shadow` appended to the host (Envoy's convention, so the receiver can tell). Its
    /// response is dropped; its failure is only logged at debug level.
    fn mirror<B>(&self, parts: &http::request::Parts, body: &ReplayBody<B>, m: &Mirror)
    where
        S: Service<Request<ReplayBody<B>>, Response = Response<Body>, Error = ProxyError>
            + Clone
            + Send
            + 'static,
        S::Future: Send,
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let Some(body) = body.mirror() else { return };
        let mut req = Request::new(body);
        *req.method_mut() = parts.method.clone();
        *req.version_mut() = parts.version;
        *req.headers_mut() = parts.headers.clone();
        *req.uri_mut() = parts.uri.clone();
        shadow_authority(&mut req);
        req.extensions_mut().insert(m.key.clone());
        let inner = self.inner.clone();
        tokio::spawn(async move {
            if let Err(e) = inner.oneshot(req).await {
                tracing::debug!(error = %e, "mirrored request failed");
            }
        });
    }
}

/// `host[:port]` → `host-shadow[:port]` in `:authority` and `Host`.
fn shadow_authority<B>(req: &mut Request<B>) {
    fn shadow(a: &str) -> Option<String> {
        let parsed = http::uri::Authority::try_from(a).ok()?;
        Some(match parsed.port_u16() {
            Some(p) => format!("{}-shadow:{p}", parsed.host()),
            None => format!("{}-shadow", parsed.host()),
        })
    }
    if let Some(a) = req.uri().authority().and_then(|a| shadow(a.as_str())) {
        let mut parts = req.uri().clone().into_parts();
        if let Ok(a) = http::uri::Authority::try_from(a) {
            parts.authority = Some(a);
            if let Ok(uri) = Uri::from_parts(parts) {
                *req.uri_mut() = uri;
            }
        }
    }
    if let Some(v) = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(shadow)
        .and_then(|s| HeaderValue::from_str(&s).ok())
    {
        req.headers_mut().insert(header::HOST, v);
    }
}

#[cfg(test)]
mod tests;
