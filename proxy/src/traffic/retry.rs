//! The retry layer: sends a request again when its try failed in a way the route's `retries`
//! name, within the destination's retry budget and `maxRetries`, with jittered exponential
//! backoff, a per-try timeout, and the body replayed from a bounded buffer.
//!
//! Promise: at most `1 + attempts` tries; a retry is only attempted when its condition matches
//! (Envoy's `retryOn` semantics), the body can be replayed (≤ [`MAX_REPLAY_BYTES`]), and the
//! budget grants a permit; otherwise the last response or error is returned unchanged, flagged
//! URX when the attempts ran out and UO when a limit refused the retry (as Envoy's router does).

use super::ResponseFlags;
use super::backoff::{self, Backoff};
use super::budget::RetryBudget;
use super::flags;
use super::proto_values::at_least_1ms;
use super::replay::{MAX_REPLAY_BYTES, ReplayBody};
use crate::config::ConfigError;
use crate::http::{Body, ProxyError};
use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{Request, Response, StatusCode};
use sinew_proto::config::v1 as pb;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tower::{Service, ServiceExt};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A route's validated `retries`.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Retries, not tries.
    pub retries: u32,
    pub per_try_timeout: Option<Duration>,
    on: Conditions,
    /// `retriable-status-codes` (and bare codes in `retryOn`).
    codes: Box<[u16]>,
    pub backoff: Backoff,
    /// Envoy's `previous_hosts` predicate: prefer another endpoint on a retry.
    pub previous_hosts: bool,
}

/// Envoy's `retryOn` conditions, as a bit set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Conditions(u16);

// === impl Conditions ===

impl Conditions {
    pub const FIVE_XX: Self = Self(1);
    pub const GATEWAY_ERROR: Self = Self(1 << 1);
    pub const RESET: Self = Self(1 << 2);
    pub const RESET_BEFORE_REQUEST: Self = Self(1 << 3);
    pub const CONNECT_FAILURE: Self = Self(1 << 4);
    pub const REFUSED_STREAM: Self = Self(1 << 5);
    pub const RETRIABLE_4XX: Self = Self(1 << 6);
    pub const RETRIABLE_STATUS_CODES: Self = Self(1 << 7);
    pub const CANCELLED: Self = Self(1 << 8);
    pub const DEADLINE_EXCEEDED: Self = Self(1 << 9);
    pub const INTERNAL: Self = Self(1 << 10);
    pub const RESOURCE_EXHAUSTED: Self = Self(1 << 11);
    pub const UNAVAILABLE: Self = Self(1 << 12);

    const NAMES: [(&'static str, Self); 13] = [
        ("5xx", Self::FIVE_XX),
        ("gateway-error", Self::GATEWAY_ERROR),
        ("reset", Self::RESET),
        ("reset-before-request", Self::RESET_BEFORE_REQUEST),
        ("connect-failure", Self::CONNECT_FAILURE),
        ("refused-stream", Self::REFUSED_STREAM),
        ("retriable-4xx", Self::RETRIABLE_4XX),
        ("retriable-status-codes", Self::RETRIABLE_STATUS_CODES),
        ("cancelled", Self::CANCELLED),
        ("deadline-exceeded", Self::DEADLINE_EXCEEDED),
        ("internal", Self::INTERNAL),
        ("resource-exhausted", Self::RESOURCE_EXHAUSTED),
        ("unavailable", Self::UNAVAILABLE),
    ];

    pub fn from_name(name: &str) -> Option<Self> {
        Self::NAMES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, c)| *c)
    }

    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 != 0
    }

    fn insert(&mut self, other: Self) {
        self.0 |= other.0;
    }

    fn any(list: &[Self]) -> Self {
        Self(list.iter().fold(0, |acc, c| acc | c.0))
    }
}

// === impl RetryPolicy ===

impl RetryPolicy {
    /// Istio ≥ 1.24's default (no `retries` on the route, or no VirtualService): 2 retries on
    /// connect-failure, refused-stream, unavailable, cancelled and retriable-status-codes with
    /// no codes (503 is not retried), previous hosts avoided, no per-try timeout.
    pub fn istio_default() -> Self {
        Self {
            retries: 2,
            per_try_timeout: None,
            on: Self::default_conditions(),
            codes: Box::new([]),
            backoff: Backoff::default(),
            previous_hosts: true,
        }
    }

    fn default_conditions() -> Conditions {
        Conditions::any(&[
            Conditions::CONNECT_FAILURE,
            Conditions::REFUSED_STREAM,
            Conditions::UNAVAILABLE,
            Conditions::CANCELLED,
            Conditions::RETRIABLE_STATUS_CODES,
        ])
    }

    /// No retries at all (`attempts: 0`).
    pub fn none() -> Self {
        Self {
            retries: 0,
            ..Self::istio_default()
        }
    }

    /// Validates a route's `retries` at `field` (`…http[0].retries`); `None` is Istio's default.
    /// Fields left unset keep the default's values, as istiod's `ConvertPolicy` does (an empty
    /// `retryOn` keeps the default conditions).
    pub fn from_proto(field: &str, p: Option<&pb::RetryPolicy>) -> Result<Self, ConfigError> {
        let Some(p) = p else {
            return Ok(Self::istio_default());
        };
        let invalid = |sub: &str, reason: String| ConfigError::Invalid {
            field: format!("{field}.{sub}"),
            reason,
        };
        let mut policy = Self::istio_default();
        policy.retries = p.attempts;
        if let Some(d) = &p.per_try_timeout {
            policy.per_try_timeout = Some(at_least_1ms(&format!("{field}.perTryTimeout"), d)?);
        }
        if let Some(d) = &p.backoff {
            policy.backoff = Backoff::new(at_least_1ms(&format!("{field}.backoff"), d)?);
        }
        if let Some(ignore) = p.retry_ignore_previous_hosts {
            policy.previous_hosts = ignore;
        }
        let mut codes: Vec<u16> = Vec::new();
        for (i, c) in p.retriable_status_codes.iter().enumerate() {
            codes.push(status_code(*c).ok_or_else(|| {
                invalid(
                    &format!("retriableStatusCodes[{i}]"),
                    format!("{c} is not an HTTP status code"),
                )
            })?);
        }
        let names = p
            .retry_on
            .iter()
            .flat_map(|s| s.split(','))
            .map(str::trim)
            .filter(|s| !s.is_empty());
        let mut on = Conditions::default();
        for name in names {
            if let Some(c) = Conditions::from_name(name) {
                on.insert(c);
            } else if let Ok(code) = name.parse::<u32>() {
                // Bare codes are retriable status codes (istiod's `parseRetryOn`).
                let code = status_code(code).ok_or_else(|| {
                    invalid("retryOn", format!("{name} is not an HTTP status code"))
                })?;
                codes.push(code);
                on.insert(Conditions::RETRIABLE_STATUS_CODES);
            } else {
                return Err(invalid(
                    "retryOn",
                    format!(
                        "unknown retry condition {name:?} (known: {}, or an HTTP status code)",
                        Conditions::NAMES.map(|(n, _)| n).join(", ")
                    ),
                ));
            }
        }
        if on != Conditions::default() {
            policy.on = on;
        } else if !codes.is_empty() {
            policy.on.insert(Conditions::RETRIABLE_STATUS_CODES);
        }
        codes.sort_unstable();
        codes.dedup();
        policy.codes = codes.into_boxed_slice();
        Ok(policy)
    }

    pub fn conditions(&self) -> Conditions {
        self.on
    }

    pub fn retriable_codes(&self) -> &[u16] {
        &self.codes
    }

    /// Whether a try's outcome is worth another try under this policy.
    pub fn is_retriable<B>(&self, res: &Result<Response<B>, ProxyError>) -> bool {
        match res {
            Ok(rsp) => self.response_retriable(rsp),
            Err(e) => self.error_retriable(e),
        }
    }

    fn response_retriable<B>(&self, rsp: &Response<B>) -> bool {
        let status = rsp.status();
        let on = self.on;
        if status.is_server_error() && on.contains(Conditions::FIVE_XX) {
            return true;
        }
        if matches!(status.as_u16(), 502..=504) && on.contains(Conditions::GATEWAY_ERROR) {
            return true;
        }
        if status == StatusCode::CONFLICT && on.contains(Conditions::RETRIABLE_4XX) {
            return true;
        }
        if on.contains(Conditions::RETRIABLE_STATUS_CODES)
            && self.codes.binary_search(&status.as_u16()).is_ok()
        {
            return true;
        }
        // gRPC conditions read a trailers-only response's `grpc-status` header.
        let grpc = Conditions::any(&[
            Conditions::CANCELLED,
            Conditions::DEADLINE_EXCEEDED,
            Conditions::INTERNAL,
            Conditions::RESOURCE_EXHAUSTED,
            Conditions::UNAVAILABLE,
        ]);
        if on.contains(grpc)
            && let Some(code) = rsp
                .headers()
                .get("grpc-status")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u8>().ok())
        {
            let c = match code {
                1 => Conditions::CANCELLED,
                4 => Conditions::DEADLINE_EXCEEDED,
                8 => Conditions::RESOURCE_EXHAUSTED,
                13 => Conditions::INTERNAL,
                14 => Conditions::UNAVAILABLE,
                _ => return false,
            };
            return on.contains(c);
        }
        false
    }

    fn error_retriable(&self, e: &ProxyError) -> bool {
        let on = self.on;
        // Envoy counts any upstream reset or timeout as a "5xx" and as a "gateway-error".
        let any_failure = Conditions::any(&[
            Conditions::FIVE_XX,
            Conditions::GATEWAY_ERROR,
            Conditions::RESET,
        ]);
        match e {
            ProxyError::Connect { .. }
            | ProxyError::ConnectTimeout { .. }
            | ProxyError::Tls { .. }
            | ProxyError::NoMeshAlpn { .. }
            | ProxyError::Handshake { .. } => on.contains(Conditions::any(&[
                any_failure,
                Conditions::CONNECT_FAILURE,
                // The app never saw the request.
                Conditions::RESET_BEFORE_REQUEST,
            ])),
            ProxyError::Upstream(err) if is_refused_stream(err.as_ref()) => {
                on.contains(Conditions::any(&[any_failure, Conditions::REFUSED_STREAM]))
            }
            // Reset or closed before response headers (a ProxyError means no response).
            ProxyError::Upstream(_) => on.contains(any_failure),
            // A try's perTryTimeout (or an inner timeout): Envoy retries it as a reset.
            ProxyError::Timeout(_) => on.contains(any_failure),
            ProxyError::Shared(inner) => self.error_retriable(inner),
            ProxyError::Flagged { error, .. } => self.error_retriable(error),
            // Envoy never retries a local overflow (its `Overflow` reset reason); the client's
            // own errors and local replies (no route, no healthy endpoint) would fail the same
            // way again.
            ProxyError::Overflow { .. }
            | ProxyError::Downstream(_)
            | ProxyError::BadHost(_)
            | ProxyError::Denied
            | ProxyError::InvalidPath
            | ProxyError::NoEndpoints(_)
            | ProxyError::NoHealthy(_)
            | ProxyError::NoRoute(_)
            | ProxyError::UnknownDestination(_)
            | ProxyError::NoTargetPort
            | ProxyError::TlsConfig(_)
            | ProxyError::FaultAbort(_) => false,
        }
    }
}

fn status_code(c: u32) -> Option<u16> {
    u16::try_from(c).ok().filter(|c| (100..=599).contains(c))
}

/// An HTTP/2 `REFUSED_STREAM` anywhere in the error's chain: the server did not process the
/// request, so any request may be retried.
fn is_refused_stream(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(h2) = err.downcast_ref::<h2::Error>() {
            return h2.reason() == Some(h2::Reason::REFUSED_STREAM);
        }
        cur = err.source();
    }
    false
}

/// The retry layer over `S`, for one route's destination.
pub struct Retry<S> {
    policy: Arc<RetryPolicy>,
    /// The destination's retry limits.
    budget: Arc<RetryBudget>,
    inner: S,
}

impl<S: Clone> Clone for Retry<S> {
    fn clone(&self) -> Self {
        Self {
            policy: self.policy.clone(),
            budget: self.budget.clone(),
            inner: self.inner.clone(),
        }
    }
}

// === impl Retry ===

impl<S> Retry<S> {
    pub fn new(policy: Arc<RetryPolicy>, budget: Arc<RetryBudget>, inner: S) -> Self {
        Self {
            policy,
            budget,
            inner,
        }
    }
}

impl<S, B> Service<Request<ReplayBody<B>>> for Retry<S>
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

    /// Always ready: each try drives the inner service's readiness itself.
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<ReplayBody<B>>) -> Self::Future {
        let policy = self.policy.clone();
        let budget = (policy.retries > 0).then(|| self.budget.clone());
        let inner = self.inner.clone();
        Box::pin(run(policy, budget, inner, req))
    }
}

async fn run<S, B>(
    policy: Arc<RetryPolicy>,
    budget: Option<Arc<RetryBudget>>,
    mut inner: S,
    req: Request<ReplayBody<B>>,
) -> Result<Response<Body>, ProxyError>
where
    S: Service<Request<ReplayBody<B>>, Response = Response<Body>, Error = ProxyError>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let first = match policy.retries {
        0 => None,
        _ => req.body().replay(),
    };
    let Some(first) = first else {
        // No retries, or a body too large to replay: one try.
        return try_once(policy.per_try_timeout, &mut inner, req).await;
    };
    let _active = budget.as_ref().map(|b| b.track());
    let (parts, handle) = req.into_parts();
    let mut body = first;
    let mut retries = 0;
    let mut rng: Option<fastrand::Rng> = None;
    // Held while a retry is in flight.
    let mut permit = None;
    loop {
        let mut req = Request::new(body);
        *req.method_mut() = parts.method.clone();
        *req.uri_mut() = parts.uri.clone();
        *req.version_mut() = parts.version;
        *req.headers_mut() = parts.headers.clone();
        *req.extensions_mut() = parts.extensions.clone();
        let mut res = try_once(policy.per_try_timeout, &mut inner, req).await;
        if retries > 0
            && let Ok(rsp) = &mut res
        {
            // For the request's report (metrics, access log, span).
            rsp.extensions_mut()
                .insert(crate::telemetry::Retries(retries));
        }
        if !policy.is_retriable(&res) {
            return res;
        }
        if retries >= policy.retries {
            if let Some(b) = &budget {
                b.stats()
                    .limit_exceeded
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            return flags::add(res, ResponseFlags::URX);
        }
        let Some(next) = handle.replay() else {
            // The body outgrew the replay buffer during this try.
            return res;
        };
        drop(permit.take());
        if let Some(b) = &budget {
            match b.try_retry() {
                Ok(p) => permit = Some(p),
                Err(_) => {
                    // Envoy's router flags a retry refused by a circuit breaker as an overflow.
                    return flags::add(res, ResponseFlags::UO);
                }
            }
        }
        // Free the failed try's response before waiting.
        drop(res);
        retries += 1;
        let rng = rng.get_or_insert_with(fastrand::Rng::new);
        tokio::time::sleep(policy.backoff.delay(retries, rng)).await;
        body = next;
    }
}

async fn try_once<S, R>(
    per_try_timeout: Option<Duration>,
    inner: &mut S,
    req: R,
) -> Result<Response<Body>, ProxyError>
where
    S: Service<R, Response = Response<Body>, Error = ProxyError>,
{
    let send = async { inner.ready().await?.call(req).await };
    match per_try_timeout {
        None => send.await,
        Some(t) => tokio::time::timeout(t, send)
            .await
            .unwrap_or(Err(ProxyError::Timeout(t))),
    }
}

/// The default base backoff, re-exported for callers describing the policy.
pub const DEFAULT_BACKOFF: Duration = backoff::DEFAULT_BASE;

/// The replay limit, re-exported for callers describing the policy.
pub const MAX_RETRY_BODY_BYTES: usize = MAX_REPLAY_BYTES;

#[cfg(test)]
mod tests;
