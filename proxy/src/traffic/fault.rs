//! Fault injection (VirtualService `fault`): delay a share of requests by a fixed time (flag
//! DI), abort a share with an HTTP status (flag FI) or a gRPC status.
//!
//! Promise: percentages are Envoy's (0–100, fractional, resolved to one in a million); the delay
//! comes first and the abort is decided independently after it, as Envoy's fault filter; an
//! aborted request never reaches the inner service.

use super::ResponseFlags;
use super::flags;
use crate::config::ConfigError;
use crate::http::{Body, ProxyError};
use bytes::Bytes;
use futures_util::future::{self, BoxFuture};
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{Either, Full};
use sinew_proto::config::v1 as pb;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tower::util::Oneshot;
use tower::{Service, ServiceExt};

/// A share of requests, in millionths (Envoy's `FractionalPercent` with `MILLION`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Percent(u32);

const MILLION: u32 = 1_000_000;

// === impl Percent ===

impl Percent {
    pub const ALL: Self = Self(MILLION);
    pub const NONE: Self = Self(0);

    /// `field`'s value, 0–100.
    pub fn from_proto(field: &str, p: f64) -> Result<Self, ConfigError> {
        if !(0.0..=100.0).contains(&p) {
            return Err(ConfigError::Invalid {
                field: field.into(),
                reason: format!("{p} is not a percentage (0-100)"),
            });
        }
        Ok(Self((p * 10_000.0).round() as u32))
    }

    /// Whether this request falls in the share, with `roll` uniform in `0..1_000_000`.
    fn hit(self, roll: u32) -> bool {
        roll < self.0
    }

    /// Draws from `rng`.
    pub fn sample(self, rng: &mut fastrand::Rng) -> bool {
        self.0 >= MILLION || (self.0 > 0 && self.hit(rng.u32(0..MILLION)))
    }

    /// Draws from the thread's generator (no allocation, no lock).
    pub fn sample_thread(self) -> bool {
        self.0 >= MILLION || (self.0 > 0 && self.hit(fastrand::u32(0..MILLION)))
    }
}

/// What an aborted request gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Abort {
    /// A local reply with this status ([`ProxyError::FaultAbort`], flag FI).
    Http(StatusCode),
    /// A gRPC trailers-only response (HTTP 200) with this `grpc-status`.
    Grpc(u8),
}

/// A route's validated `fault`.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultPolicy {
    pub delay: Option<(Duration, Percent)>,
    pub abort: Option<(Abort, Percent)>,
}

// === impl FaultPolicy ===

impl FaultPolicy {
    /// `None` when the route injects nothing.
    pub fn from_proto(field: &str, f: Option<&pb::Fault>) -> Result<Option<Self>, ConfigError> {
        let Some(f) = f else { return Ok(None) };
        let delay = match &f.delay {
            None => None,
            Some(d) => {
                let Some(fixed) = &d.fixed_delay else {
                    return Err(ConfigError::Invalid {
                        field: format!("{field}.delay.fixedDelay"),
                        reason: "a delay needs a fixedDelay".into(),
                    });
                };
                let fixed =
                    super::proto_values::at_least_1ms(&format!("{field}.delay.fixedDelay"), fixed)?;
                let pct = Percent::from_proto(&format!("{field}.delay.percentage"), d.percentage)?;
                Some((fixed, pct))
            }
        };
        let abort = match &f.abort {
            None => None,
            Some(a) => {
                let f = |sub: &str| format!("{field}.abort.{sub}");
                let kind = match (a.http_status, a.grpc_status.as_str()) {
                    (0, "") => {
                        return Err(ConfigError::Invalid {
                            field: f("httpStatus"),
                            reason: "an abort needs an httpStatus or a grpcStatus".into(),
                        });
                    }
                    (code, "") => {
                        let status = u16::try_from(code)
                            .ok()
                            .filter(|c| (200..=599).contains(c))
                            .and_then(|c| StatusCode::from_u16(c).ok())
                            .ok_or_else(|| ConfigError::Invalid {
                                field: f("httpStatus"),
                                reason: format!("{code} is not an HTTP status (200-599)"),
                            })?;
                        Abort::Http(status)
                    }
                    (0, name) => {
                        Abort::Grpc(sinew_proto::grpc::status_code(name).ok_or_else(|| {
                            ConfigError::Invalid {
                                field: f("grpcStatus"),
                                reason: format!("{name:?} is not a gRPC status (e.g. UNAVAILABLE)"),
                            }
                        })?)
                    }
                    _ => {
                        return Err(ConfigError::Invalid {
                            field: f("grpcStatus"),
                            reason: "set only one of httpStatus and grpcStatus".into(),
                        });
                    }
                };
                Some((kind, Percent::from_proto(&f("percentage"), a.percentage)?))
            }
        };
        if delay.is_none() && abort.is_none() {
            return Ok(None);
        }
        Ok(Some(Self { delay, abort }))
    }
}

/// A gRPC trailers-only response: HTTP 200, `grpc-status` in the headers, no body.
fn grpc_response(code: u8) -> Response<Body> {
    let mut rsp = Response::new(Either::Right(Full::new(Bytes::new())));
    let h = rsp.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    h.insert("grpc-status", HeaderValue::from(u16::from(code)));
    h.insert(
        "grpc-message",
        HeaderValue::from_static("fault%20filter%20abort"),
    );
    rsp
}

/// The fault layer over `S`, for one route.
#[derive(Clone)]
pub struct Fault<S> {
    policy: Option<Arc<FaultPolicy>>,
    inner: S,
}

// === impl Fault ===

impl<S> Fault<S> {
    pub fn new(policy: Option<Arc<FaultPolicy>>, inner: S) -> Self {
        Self { policy, inner }
    }
}

impl<S, B> Service<Request<B>> for Fault<S>
where
    S: Service<Request<B>, Response = Response<Body>, Error = ProxyError> + Clone + Send + 'static,
    S::Future: Send,
    B: Send + 'static,
{
    type Response = Response<Body>;
    type Error = ProxyError;
    /// Without a fault the inner call is not boxed: most routes have none.
    type Future = future::Either<
        Oneshot<S, Request<B>>,
        BoxFuture<'static, Result<Response<Body>, ProxyError>>,
    >;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let inner = self.inner.clone();
        let Some(policy) = self.policy.clone() else {
            return future::Either::Left(inner.oneshot(req));
        };
        // Decided now, so the draw does not depend on when the future is polled.
        let delay = policy
            .delay
            .filter(|(_, p)| p.sample_thread())
            .map(|(d, _)| d);
        future::Either::Right(Box::pin(async move {
            if let Some(d) = delay {
                tokio::time::sleep(d).await;
            }
            let abort = policy.abort.as_ref().filter(|(_, p)| p.sample_thread());
            let res = match abort {
                Some((Abort::Http(status), _)) => Err(ProxyError::FaultAbort(*status)),
                Some((Abort::Grpc(code), _)) => {
                    let mut rsp = grpc_response(*code);
                    flags::add_to_response(&mut rsp, ResponseFlags::FI);
                    Ok(rsp)
                }
                None => inner.oneshot(req).await,
            };
            match delay {
                Some(_) => flags::add(res, ResponseFlags::DI),
                None => res,
            }
        }))
    }
}

#[cfg(test)]
mod tests;
