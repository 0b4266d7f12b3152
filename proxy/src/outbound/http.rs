//! The outbound HTTP service of one app connection: finds the connection's service in the
//! config in force for each request and sends the request down that service's stack.
//!
//! ```text
//! telemetry → errors → lookup (this module) → router → fault → timeout → retry → breaker → balancer →
//!   endpoint → connect
//! ```
//!
//! Everything below the lookup is built once per service per config version ([`stacks`], kept
//! in the [`crate::ctx::Snapshot`]); a request clones its service's stack (reference counts, no
//! allocation).
//!
//! The service is looked up per request, not per connection: an app's keep-alive connection
//! outlives config changes (new endpoints, say), and each request must see them. If the address
//! no longer belongs to that service (removed, or another service's now), its old endpoints may
//! be other pods' addresses already: the request is refused rather than sent there. While the
//! config is unchanged, a connection reuses the stack its last request found (no lookups).

use super::OutboundBody;
use super::connect::{Clients, NewOutbound};
use crate::config::{Config, Service};
use crate::ctx::{Ctx, Snapshot};
use crate::http::errors::Errors;
use crate::http::{self as h, Body, ProxyError};
use crate::metrics::Direction;
use crate::telemetry::layer::InBody;
use crate::telemetry::layer::{self as telemetry, Observe, Reports};
use crate::traffic::balance::ConnInfo;
use crate::traffic::cache::Services;
use crate::traffic::dispatch::{self, Dispatch, NewDestination};
use crate::traffic::route::Router;
use futures_util::future::{Either, Ready, ready};
use http::{Request, Response};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};

/// The per-connection service hyper drives.
pub type OutboundHttp = Observe<Errors<Lookup>>;

/// Builds the service for one app connection to `dst`, which `svc` owned when it was accepted.
pub fn service(ctx: Arc<Ctx>, svc: &Service, dst: SocketAddr, client: SocketAddr) -> OutboundHttp {
    let metrics = ctx.metrics.clone();
    let reports = Reports::new(&ctx, &ctx.config());
    let conn = telemetry::Conn::outbound(reports, svc.name.clone(), Some(dst), Some(client));
    let errors = Errors::new(
        Lookup(Arc::new(Connection {
            ctx,
            key: svc.key.clone(),
            name: svc.name.clone(),
            dst,
            conn: ConnInfo {
                source: client.ip(),
                dialled: dst,
            },
            last: Mutex::new(None),
        })),
        Direction::Outbound,
        metrics,
    )
    .with_service(svc.key.clone());
    Observe::new(errors, conn)
}

/// Looks the connection's service up in the config in force and dispatches. hyper clones the
/// service per request, so the connection's state is shared.
#[derive(Clone)]
pub struct Lookup(Arc<Connection>);

/// One app connection.
struct Connection {
    ctx: Arc<Ctx>,
    key: Arc<str>,
    name: Arc<str>,
    dst: SocketAddr,
    conn: ConnInfo,
    /// The stack the last request used, and the snapshot it came from: the next request on
    /// this connection skips the lookups while the config is unchanged. Weak, so the connection
    /// does not hold an old snapshot (and, since a weak reference keeps its allocation, no newer
    /// snapshot can ever have the same address).
    last: Mutex<Option<Last>>,
}

struct Last {
    snapshot: Weak<Snapshot>,
    stack: ServiceStack,
    needs_connection: bool,
}

/// One service's outbound stack below the lookup.
pub type ServiceStack = Router<Dispatch<<NewOutbound as NewDestination<OutboundBody>>::Service>>;

type StackFuture = <ServiceStack as tower::Service<Request<InBody>>>::Future;

/// Builds every service's stack for one config version.
pub fn stacks(
    clients: &Arc<Clients>,
    config: &Config,
    services: &Arc<Services>,
) -> HashMap<Arc<str>, ServiceStack> {
    let new = NewOutbound::new(clients.clone(), config);
    services
        .iter()
        .map(|state| {
            let stack = Router::new(state.service.http_routes.table.clone(), |key| {
                dispatch::target(services, key, &new)
            });
            (state.service.key.clone(), stack)
        })
        .collect()
}

// === impl Lookup ===

impl tower::Service<Request<InBody>> for Lookup {
    type Response = Response<Body>;
    type Error = ProxyError;
    type Future = Either<Ready<Result<Response<Body>, ProxyError>>, StackFuture>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<InBody>) -> Self::Future {
        if let Err(e) = h::check_host(&req) {
            return Either::Left(ready(Err(e)));
        }
        let c = &*self.0;
        let snap = c.ctx.snapshot();
        let mut last = c.last.lock().unwrap_or_else(|p| p.into_inner());
        let fresh = last
            .as_ref()
            .is_some_and(|l| std::ptr::eq(l.snapshot.as_ptr(), Arc::as_ptr(&snap)));
        if !fresh {
            let found = match snap.config.service(&c.dst) {
                Some(svc) if svc.key == c.key => snap
                    .services
                    .service(&svc.key)
                    .zip(snap.outbound.get(&svc.key)),
                _ => None,
            };
            let Some((state, stack)) = found else {
                *last = None;
                return Either::Left(ready(Err(ProxyError::NoEndpoints(c.name.clone()))));
            };
            *last = Some(Last {
                snapshot: Arc::downgrade(&snap),
                stack: stack.clone(),
                needs_connection: state.needs_connection(),
            });
        }
        let Some(l) = last.as_ref() else {
            return Either::Left(ready(Err(ProxyError::NoEndpoints(c.name.clone()))));
        };
        if l.needs_connection {
            req.extensions_mut().insert(c.conn);
        }
        let mut stack = l.stack.clone();
        drop(last);
        Either::Right(tower::Service::call(&mut stack, req))
    }
}
