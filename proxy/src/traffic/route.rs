//! The route layer (VirtualService `http[]`): a validated route table and the [`Router`] that,
//! per request, finds the first matching route, redirects or rewrites, applies header
//! operations, mirrors, picks a weighted destination and sends the request down the route's own
//! `fault → timeout → retry` stack.
//!
//! Promise: [`RouteTable::from_proto`] either returns a table whose every regex, header and
//! duration is valid, or names the field that is not; matching follows Istio (routes in order,
//! first match wins, match blocks ORed, conditions ANDed); a request no route matches fails with
//! [`ProxyError::NoRoute`] (404 NR); a mirror never delays or fails the request it copies.

mod actions;
mod headers;
mod matches;
mod router;

pub use self::headers::HeaderOps;
pub use self::router::{Router, Target};

use self::actions::{Redirect, Rewrite};
use self::matches::{Match, View};
use super::DestinationKey;
use super::fault::{FaultPolicy, Percent};
use super::retry::RetryPolicy;
use crate::config::{ConfigError, invalid};
use http::Request;
use http::header::HeaderValue;
use sinew_proto::config::v1 as pb;
use std::sync::Arc;
use std::time::Duration;

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

#[derive(Debug)]
struct Mirror {
    key: DestinationKey,
    percent: Percent,
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
            .map(|d| super::proto_values::at_least_1ms(&format!("{field}.timeout"), d))
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

#[cfg(test)]
mod tests;
