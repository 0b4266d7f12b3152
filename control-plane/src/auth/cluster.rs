//! Kubernetes credentials: a proxy's projected service-account token, verified by a TokenReview.
//!
//! What it promises:
//! - **Only the API server's word counts.** A token is accepted only after a TokenReview
//!   (`authentication.k8s.io/v1`) with `spec.audiences = [<audience>]` comes back authenticated
//!   *and* lists that audience in `status.audiences` (an empty list means "valid for the API
//!   server", which is not us). The caller is `system:serviceaccount:<ns>:<sa>` in group
//!   `system:serviceaccounts`, and must be bound to a pod (`authentication.kubernetes.io/pod-name`):
//!   proxies run in pods, so a token that is not pod-bound is refused.
//! - **Cached, but not past the token's life.** A verified token (keyed by its SHA-256, never the
//!   token itself) is trusted without a new review until shortly before its `exp` (read from the
//!   JWT payload only after the review vouched for it), or its `kubernetes.io.warnafter` when the
//!   API server extended `exp`, and never longer than [`ReviewConfig::max_fresh`] (10 minutes)
//!   without a new review, so a deleted pod's token stops working within that time.
//! - **An outage revokes nothing.** When a re-review cannot reach the API server, a caller cached
//!   earlier is still accepted until its token's own expiry; a token never seen before fails with
//!   [`AuthError::Unavailable`] (the proxy retries), not as refused. A review that *denies* a
//!   cached token drops it at once.
//! - **Bounded work.** Concurrent requests with one token share one review (single flight); at
//!   most [`ReviewConfig::max_in_flight`] reviews run at once (10,000 proxies reconnecting after a
//!   restart must not stampede the API server); the cache holds at most
//!   [`ReviewConfig::max_entries`] tokens. Denials are not cached.
//! - Metrics: review latency (`sinew_cp_token_review_duration_seconds`), failures by reason
//!   (`sinew_cp_token_review_failures_total{reason}`), cache hits and stale answers served.

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec, TokenReviewStatus};
use kube::Api;
use kube::api::PostParams;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;

use super::{AuthError, AuthFuture, Authenticator, Caller, LOCAL_AUDIENCE};
use crate::cluster::{ApiFailure, classify};

/// The `user.extra` key the API server puts the bound pod's name under.
pub const POD_NAME_EXTRA: &str = "authentication.kubernetes.io/pod-name";
/// The group every service account is in.
const SERVICE_ACCOUNTS_GROUP: &str = "system:serviceaccounts";
const SERVICE_ACCOUNT_PREFIX: &str = "system:serviceaccount:";
/// Projected tokens are about 1 KiB; refusing huge ones early bounds what a stranger can make us
/// send to the API server.
const MAX_TOKEN_LEN: usize = 16 * 1024;

/// How reviews are asked for and cached. Every default is named below.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReviewConfig {
    /// The audience tokens must be minted for ([`LOCAL_AUDIENCE`], `sinew-ca`).
    pub audience: String,
    /// Longest a token is trusted without a new review (10 min).
    pub max_fresh: Duration,
    /// Stop trusting a token this long before it expires (30 s), so a certificate request never
    /// races the token's expiry.
    pub expiry_margin: Duration,
    /// Most tokens cached (50,000: two per proxy at 10,000 proxies across token rotation, with
    /// room to spare).
    pub max_entries: usize,
    /// Most reviews in flight at once (32).
    pub max_in_flight: usize,
    /// A review not answered within this is `Unavailable` (10 s).
    pub review_timeout: Duration,
}

/// Review metrics; register them once with [`ReviewMetrics::register`].
#[derive(Clone, Debug)]
pub struct ReviewMetrics {
    latency: Histogram,
    failures: Family<FailureLabels, Counter>,
    cache_hits: Counter,
    stale_served: Counter,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    reason: &'static str,
}

/// Verifies projected service-account tokens with TokenReview; see the module docs.
/// Cheap to clone (shared state).
#[derive(Clone)]
pub struct TokenReviewAuthenticator {
    inner: Arc<Inner>,
}

struct Inner {
    reviews: Api<TokenReview>,
    config: ReviewConfig,
    state: Mutex<State>,
    permits: Semaphore,
    metrics: ReviewMetrics,
}

/// SHA-256 of a token.
type Key = [u8; 32];

#[derive(Default)]
struct State {
    verified: HashMap<Key, Verified>,
    /// Reviews running now; late arrivals wait on the same answer.
    in_flight: HashMap<Key, watch::Receiver<Option<Outcome>>>,
}

struct Verified {
    caller: Caller,
    /// Trusted without a new review until then.
    fresh_until: Instant,
    /// The token's own end (less the margin): served while the API server is unreachable.
    valid_until: Instant,
}

/// A review's answer, shared between every waiter for one token.
type Outcome = Result<Caller, Refusal>;

/// Why a review did not produce a caller (clonable, unlike [`AuthError`]).
#[derive(Clone, Debug, PartialEq, Eq)]
enum Refusal {
    Rejected(String),
    Audience {
        got: Vec<String>,
        want: String,
    },
    NotServiceAccount(String),
    NotPodBound {
        namespace: String,
        service_account: String,
    },
    /// The API server did not judge the token; `label` is the metric reason.
    Unavailable {
        reason: String,
        label: &'static str,
    },
}

/// How long a just-verified token may be cached: (fresh, valid), both from now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct CacheFor {
    fresh: Duration,
    valid: Duration,
}

// === impl ReviewConfig ===

impl Default for ReviewConfig {
    fn default() -> Self {
        Self {
            audience: LOCAL_AUDIENCE.to_string(),
            max_fresh: Duration::from_secs(10 * 60),
            expiry_margin: Duration::from_secs(30),
            max_entries: 50_000,
            max_in_flight: 32,
            review_timeout: Duration::from_secs(10),
        }
    }
}

// === impl ReviewMetrics ===

impl Default for ReviewMetrics {
    fn default() -> Self {
        Self {
            // 5 ms .. ~10 s.
            latency: Histogram::new(exponential_buckets(0.005, 2.0, 12)),
            failures: Family::default(),
            cache_hits: Counter::default(),
            stale_served: Counter::default(),
        }
    }
}

impl ReviewMetrics {
    /// Adds these metrics to `registry` (they stay shared with the authenticator).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "sinew_cp_token_review_duration_seconds",
            "Time the API server took to answer a TokenReview",
            self.latency.clone(),
        );
        registry.register(
            "sinew_cp_token_review_failures",
            "Tokens not verified, by reason (denied, wrong_audience, not_service_account, \
             not_pod_bound, unavailable, forbidden, error)",
            self.failures.clone(),
        );
        registry.register(
            "sinew_cp_token_review_cache_hits",
            "Credentials accepted from the review cache",
            self.cache_hits.clone(),
        );
        registry.register(
            "sinew_cp_token_review_stale_served",
            "Cached credentials accepted because the API server could not re-review them",
            self.stale_served.clone(),
        );
    }

    fn failure(&self, reason: &'static str) {
        self.failures.get_or_create(&FailureLabels { reason }).inc();
    }
}

// === impl TokenReviewAuthenticator ===

impl TokenReviewAuthenticator {
    /// Reviews through `client` (`POST /apis/authentication.k8s.io/v1/tokenreviews`).
    pub fn new(client: kube::Client, config: ReviewConfig, metrics: ReviewMetrics) -> Self {
        Self {
            inner: Arc::new(Inner {
                reviews: Api::all(client),
                permits: Semaphore::new(config.max_in_flight.max(1)),
                config,
                state: Mutex::default(),
                metrics,
            }),
        }
    }

    pub fn metrics(&self) -> &ReviewMetrics {
        &self.inner.metrics
    }

    #[cfg(test)]
    fn cached(&self) -> usize {
        self.inner.lock().verified.len()
    }
}

impl Authenticator for TokenReviewAuthenticator {
    fn authenticate<'a>(&'a self, bearer_token: &'a str) -> AuthFuture<'a> {
        Box::pin(self.inner.clone().authenticate(bearer_token))
    }
}

impl std::fmt::Debug for TokenReviewAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenReviewAuthenticator")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

// === impl Inner ===

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is a cache: after a panic elsewhere it is still consistent enough to use.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn authenticate(self: Arc<Self>, token: &str) -> Result<Caller, AuthError> {
        if token.is_empty() || token.len() > MAX_TOKEN_LEN {
            return Err(AuthError::Malformed(
                "a service-account token is between 1 byte and 16 KiB",
            ));
        }
        let key = token_key(token);
        let mut answer = {
            let mut state = self.lock();
            let now = Instant::now();
            if let Some(v) = state.verified.get(&key).filter(|v| now < v.fresh_until) {
                self.metrics.cache_hits.inc();
                return Ok(v.caller.clone());
            }
            match state.in_flight.get(&key) {
                Some(answer) => answer.clone(),
                None => {
                    let (tx, rx) = watch::channel(None);
                    state.in_flight.insert(key, rx.clone());
                    // A task, not this future: a proxy hanging up must not cancel the review
                    // everyone else with this token is waiting for.
                    tokio::spawn(self.clone().review(key, token.to_string(), tx));
                    rx
                }
            }
        };
        let waited = answer.wait_for(Option::is_some).await.map(|o| o.clone());
        let outcome = match waited {
            Ok(outcome) => outcome.unwrap_or_else(|| Err(task_ended())),
            Err(_) => {
                // The review task died without answering (a panic): clear its slot so the next
                // attempt starts a new review instead of waiting on a dead one.
                let mut state = self.lock();
                if state
                    .in_flight
                    .get(&key)
                    .is_some_and(|rx| rx.same_channel(&answer))
                {
                    state.in_flight.remove(&key);
                }
                Err(task_ended())
            }
        };
        match outcome {
            Ok(caller) => Ok(caller),
            Err(Refusal::Unavailable { reason, .. }) => {
                // The API server did not judge the token: a caller it vouched for earlier stays
                // until its token's own expiry.
                let state = self.lock();
                match state
                    .verified
                    .get(&key)
                    .filter(|v| Instant::now() < v.valid_until)
                {
                    Some(v) => {
                        self.metrics.stale_served.inc();
                        Ok(v.caller.clone())
                    }
                    None => Err(AuthError::Unavailable { reason }),
                }
            }
            Err(refusal) => Err(refusal.into()),
        }
    }

    /// Runs one review and publishes its outcome to the cache and every waiter.
    async fn review(self: Arc<Self>, key: Key, token: String, tx: watch::Sender<Option<Outcome>>) {
        let outcome = self.ask(&token).await;
        let now = Instant::now();
        let cache_for = match &outcome {
            Ok(_) => Some(cache_for(&token, SystemTime::now(), &self.config)),
            Err(_) => None,
        };
        {
            let mut state = self.lock();
            state.in_flight.remove(&key);
            match (&outcome, cache_for) {
                (Ok(caller), Some(c)) if !c.valid.is_zero() => {
                    let entry = Verified {
                        caller: caller.clone(),
                        fresh_until: now + c.fresh,
                        valid_until: now + c.valid,
                    };
                    insert_bounded(
                        &mut state.verified,
                        key,
                        entry,
                        self.config.max_entries,
                        now,
                    );
                }
                // Not judged: keep what we knew.
                (Err(Refusal::Unavailable { .. }), _) => {}
                // Denied (or expiring right now): forget it.
                _ => {
                    state.verified.remove(&key);
                }
            }
        }
        if let Err(refusal) = &outcome {
            self.metrics.failure(refusal.label());
        }
        tx.send_replace(Some(outcome));
    }

    /// The API server's verdict on `token`.
    async fn ask(&self, token: &str) -> Outcome {
        let Ok(_permit) = self.permits.acquire().await else {
            return Err(task_ended());
        };
        let review = TokenReview {
            spec: TokenReviewSpec {
                audiences: Some(vec![self.config.audience.clone()]),
                token: Some(token.to_string()),
            },
            ..TokenReview::default()
        };
        let started = Instant::now();
        let answer = tokio::time::timeout(
            self.config.review_timeout,
            self.reviews.create(&PostParams::default(), &review),
        )
        .await;
        self.metrics
            .latency
            .observe(started.elapsed().as_secs_f64());
        match answer {
            Ok(Ok(review)) => caller_from_review(review.status.as_ref(), &self.config.audience),
            Ok(Err(e)) => {
                let label = match classify(&e) {
                    ApiFailure::Unavailable => "unavailable",
                    ApiFailure::Forbidden | ApiFailure::Unauthorized => "forbidden",
                    _ => "error",
                };
                tracing::warn!(error = %e, "TokenReview failed");
                Err(Refusal::Unavailable {
                    reason: format!("the TokenReview failed ({e})"),
                    label,
                })
            }
            Err(_) => Err(Refusal::Unavailable {
                reason: format!(
                    "the API server did not answer the TokenReview within {:?}",
                    self.config.review_timeout
                ),
                label: "unavailable",
            }),
        }
    }
}

fn task_ended() -> Refusal {
    Refusal::Unavailable {
        reason: "the review was abandoned (control plane shutting down?)".to_string(),
        label: "error",
    }
}

fn token_key(token: &str) -> Key {
    let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    let mut key = [0u8; 32];
    key.copy_from_slice(digest.as_ref());
    key
}

/// Inserts, first dropping expired entries and then, if still full, the one expiring soonest.
fn insert_bounded(
    map: &mut HashMap<Key, Verified>,
    key: Key,
    entry: Verified,
    max: usize,
    now: Instant,
) {
    if map.len() >= max && !map.contains_key(&key) {
        map.retain(|_, v| now < v.valid_until);
        while map.len() >= max.max(1) {
            let Some(soonest) = map
                .iter()
                .min_by_key(|(_, v)| v.valid_until)
                .map(|(k, _)| *k)
            else {
                break;
            };
            map.remove(&soonest);
        }
    }
    map.insert(key, entry);
}

/// The API server's review → the caller, or why not. Pure.
fn caller_from_review(status: Option<&TokenReviewStatus>, audience: &str) -> Outcome {
    let Some(status) = status else {
        return Err(Refusal::Rejected(
            "the review came back without a status".to_string(),
        ));
    };
    if status.authenticated != Some(true) {
        let reason = status
            .error
            .clone()
            .filter(|e| !e.is_empty())
            .unwrap_or_else(|| "not authenticated".to_string());
        return Err(Refusal::Rejected(reason));
    }
    let audiences = status.audiences.as_deref().unwrap_or_default();
    if !audiences.iter().any(|a| a == audience) {
        return Err(Refusal::Audience {
            got: audiences.to_vec(),
            want: audience.to_string(),
        });
    }
    let user = status.user.as_ref();
    let username = user.and_then(|u| u.username.as_deref()).unwrap_or_default();
    let in_group = user
        .and_then(|u| u.groups.as_deref())
        .unwrap_or_default()
        .iter()
        .any(|g| g == SERVICE_ACCOUNTS_GROUP);
    let parsed = username
        .strip_prefix(SERVICE_ACCOUNT_PREFIX)
        .and_then(|rest| rest.split_once(':'))
        .filter(|(ns, sa)| !ns.is_empty() && !sa.is_empty() && !sa.contains(':'));
    let (Some((namespace, service_account)), true) = (parsed, in_group) else {
        return Err(Refusal::NotServiceAccount(username.to_string()));
    };
    let pod = user
        .and_then(|u| u.extra.as_ref())
        .and_then(|extra| extra.get(POD_NAME_EXTRA))
        .and_then(|names| names.first())
        .filter(|name| !name.is_empty());
    let Some(pod) = pod else {
        return Err(Refusal::NotPodBound {
            namespace: namespace.to_string(),
            service_account: service_account.to_string(),
        });
    };
    Ok(Caller {
        namespace: namespace.to_string(),
        service_account: service_account.to_string(),
        pod: Some(pod.clone()),
    })
}

/// How long to cache a token the API server just verified, from its JWT claims (not verified
/// here: the review did that). The end is the earlier of `exp` and `kubernetes.io.warnafter`
/// (set when the API server extended `exp` to a year), less the margin; freshness is also capped
/// by `max_fresh`. No readable expiry: `max_fresh` for both.
fn cache_for(token: &str, now: SystemTime, config: &ReviewConfig) -> CacheFor {
    let now_secs = now
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let claims = jwt_claims(token);
    let numeric = |v: Option<&serde_json::Value>| v.and_then(serde_json::Value::as_f64);
    let exp = numeric(claims.as_ref().and_then(|c| c.get("exp")));
    let warn_after = numeric(
        claims
            .as_ref()
            .and_then(|c| c.get("kubernetes.io"))
            .and_then(|k| k.get("warnafter")),
    );
    let end = match (exp, warn_after) {
        (Some(e), Some(w)) => Some(e.min(w)),
        (e, w) => e.or(w),
    };
    let valid = match end {
        Some(end) => Duration::try_from_secs_f64(end - now_secs)
            .unwrap_or(Duration::ZERO)
            .saturating_sub(config.expiry_margin),
        None => config.max_fresh,
    };
    CacheFor {
        fresh: valid.min(config.max_fresh),
        valid,
    }
}

/// The payload of a JWT (`header.payload.signature`, base64url), if it is one.
fn jwt_claims(token: &str) -> Option<serde_json::Value> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

// === impl Refusal ===

impl Refusal {
    fn label(&self) -> &'static str {
        match self {
            Self::Rejected(_) => "denied",
            Self::Audience { .. } => "wrong_audience",
            Self::NotServiceAccount(_) => "not_service_account",
            Self::NotPodBound { .. } => "not_pod_bound",
            Self::Unavailable { label, .. } => label,
        }
    }
}

impl From<Refusal> for AuthError {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::Rejected(reason) => AuthError::Rejected { reason },
            Refusal::Audience { got, want } => AuthError::AudienceNotConfirmed { got, want },
            Refusal::NotServiceAccount(username) => AuthError::NotServiceAccount { username },
            Refusal::NotPodBound {
                namespace,
                service_account,
            } => AuthError::NotPodBound {
                namespace,
                service_account,
            },
            Refusal::Unavailable { reason, .. } => AuthError::Unavailable { reason },
        }
    }
}
