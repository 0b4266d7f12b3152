use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use serde_json::{Value, json};

use super::*;
use crate::cluster::mock::{self, ApiServer, Exchange};

const REVIEWS: &str = "/apis/authentication.k8s.io/v1/tokenreviews";

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A JWT-shaped token with these claims (the signature is the API server's business).
fn jwt(claims: Value) -> String {
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    format!("{}.{}.c2ln", b64(&json!({"alg": "RS256"})), b64(&claims))
}

/// A projected token expiring `ttl` from now; `n` makes tokens distinct.
fn token(ttl: Duration, n: u32) -> String {
    jwt(json!({ "aud": ["sinew-ca"], "exp": unix_now() + ttl.as_secs(), "jti": n }))
}

fn start(config: ReviewConfig) -> (TokenReviewAuthenticator, ApiServer) {
    let (client, api) = mock::client();
    (
        TokenReviewAuthenticator::new(client, config, ReviewMetrics::default()),
        api,
    )
}

fn allowed(ns: &str, sa: &str, pod: &str) -> Value {
    json!({
        "authenticated": true,
        "audiences": ["sinew-ca"],
        "user": {
            "username": format!("system:serviceaccount:{ns}:{sa}"),
            "uid": "8f1c",
            "groups": ["system:serviceaccounts", format!("system:serviceaccounts:{ns}"), "system:authenticated"],
            "extra": {
                "authentication.kubernetes.io/pod-name": [pod],
                "authentication.kubernetes.io/pod-uid": ["1b7e"],
            },
        },
    })
}

/// The next request must be a TokenReview of `token`; answers with `status`.
async fn review(api: &mut ApiServer, token: &str, status: Value) {
    let ex = expect_review(api, token).await;
    let mut body = ex.body.clone();
    body["status"] = status;
    ex.respond(201, body);
}

async fn expect_review(api: &mut ApiServer, token: &str) -> Exchange {
    let ex = api.next().await;
    assert_eq!(ex.line(), format!("POST {REVIEWS}?"));
    assert_eq!(ex.body["apiVersion"], "authentication.k8s.io/v1");
    assert_eq!(ex.body["kind"], "TokenReview");
    assert_eq!(ex.body["spec"]["token"], token);
    assert_eq!(ex.body["spec"]["audiences"], json!(["sinew-ca"]));
    ex
}

fn cart() -> Caller {
    Caller {
        namespace: "shop".into(),
        service_account: "cart".into(),
        pod: Some("cart-7d9f".into()),
    }
}

// --- the review contract ---

#[tokio::test(start_paused = true)]
async fn token_review_allowed_maps_namespace_service_account_and_pod() {
    let (auth, mut api) = start(ReviewConfig::default());
    let t = token(Duration::from_secs(3600), 1);
    let call = tokio::spawn({
        let (auth, t) = (auth.clone(), t.clone());
        async move { auth.authenticate(&t).await }
    });
    review(&mut api, &t, allowed("shop", "cart", "cart-7d9f")).await;
    assert_eq!(call.await.unwrap().unwrap(), cart());
}

#[tokio::test(start_paused = true)]
async fn token_review_denied_is_refused_with_the_api_servers_reason_and_not_cached() {
    let (auth, mut api) = start(ReviewConfig::default());
    let t = token(Duration::from_secs(3600), 1);
    for _ in 0..2 {
        let call = tokio::spawn({
            let (auth, t) = (auth.clone(), t.clone());
            async move { auth.authenticate(&t).await }
        });
        // Each attempt reviews again: denials are not cached.
        review(
            &mut api,
            &t,
            json!({"authenticated": false, "error": "token has been invalidated"}),
        )
        .await;
        match call.await.unwrap() {
            Err(AuthError::Rejected { reason }) => assert_eq!(reason, "token has been invalidated"),
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_review_without_our_audience_is_refused() {
    let (auth, mut api) = start(ReviewConfig::default());
    for (n, audiences) in [json!(["https://kubernetes.default.svc"]), json!(null)]
        .into_iter()
        .enumerate()
    {
        let t = token(Duration::from_secs(3600), n as u32);
        let call = tokio::spawn({
            let (auth, t) = (auth.clone(), t.clone());
            async move { auth.authenticate(&t).await }
        });
        let mut status = allowed("shop", "cart", "cart-7d9f");
        status["audiences"] = audiences;
        review(&mut api, &t, status).await;
        match call.await.unwrap() {
            Err(AuthError::AudienceNotConfirmed { want, .. }) => assert_eq!(want, "sinew-ca"),
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn the_review_failure_metrics_count_by_reason_and_time_each_review() {
    let (auth, mut api) = start(ReviewConfig::default());
    let mut registry = Registry::default();
    auth.metrics().register(&mut registry);
    let t = token(Duration::from_secs(3600), 1);
    let call = tokio::spawn({
        let (auth, t) = (auth.clone(), t.clone());
        async move { auth.authenticate(&t).await }
    });
    let ex = expect_review(&mut api, &t).await;
    tokio::time::advance(Duration::from_millis(40)).await;
    let mut body = ex.body.clone();
    body["status"] = json!({"authenticated": false});
    ex.respond(201, body);
    assert!(call.await.unwrap().is_err());

    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(
        text.contains("sinew_cp_token_review_failures_total{reason=\"denied\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("sinew_cp_token_review_duration_seconds_count 1"),
        "{text}"
    );
    // 40 ms lands in the 0.04 bucket, not the 0.02 one.
    assert!(
        text.contains("sinew_cp_token_review_duration_seconds_bucket{le=\"0.02\"} 0"),
        "{text}"
    );
    assert!(
        text.contains("sinew_cp_token_review_duration_seconds_bucket{le=\"0.04\"} 1"),
        "{text}"
    );
}

// --- the cache ---

#[tokio::test(start_paused = true)]
async fn reviews_are_cached_until_shortly_before_expiry() {
    let (auth, mut api) = start(ReviewConfig::default());
    let t = token(Duration::from_secs(5 * 60), 1);
    let first = tokio::spawn({
        let (auth, t) = (auth.clone(), t.clone());
        async move { auth.authenticate(&t).await }
    });
    review(&mut api, &t, allowed("shop", "cart", "cart-7d9f")).await;
    assert_eq!(first.await.unwrap().unwrap(), cart());

    // 4 min 28 s later (expiry 5 min, margin 30 s; a second of slack for the wall clock's
    // fraction): answered from the cache. Had it sent a review, nobody would answer and it would
    // fail after the review timeout.
    tokio::time::advance(Duration::from_secs(4 * 60 + 28)).await;
    assert_eq!(auth.authenticate(&t).await.unwrap(), cart());
    assert!(!api.has_pending());

    // Past exp - 30 s: reviewed again.
    tokio::time::advance(Duration::from_secs(3)).await;
    let again = tokio::spawn({
        let (auth, t) = (auth.clone(), t.clone());
        async move { auth.authenticate(&t).await }
    });
    review(&mut api, &t, allowed("shop", "cart", "cart-7d9f")).await;
    assert_eq!(again.await.unwrap().unwrap(), cart());
}

#[tokio::test(start_paused = true)]
async fn concurrent_reviews_of_one_token_are_one_request() {
    let (auth, mut api) = start(ReviewConfig::default());
    let t = token(Duration::from_secs(3600), 1);
    let calls: Vec<_> = (0..100)
        .map(|_| {
            let (auth, t) = (auth.clone(), t.clone());
            tokio::spawn(async move { auth.authenticate(&t).await })
        })
        .collect();
    // Let every caller reach the single flight before answering.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    review(&mut api, &t, allowed("shop", "cart", "cart-7d9f")).await;
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap(), cart());
    }
    assert!(!api.has_pending(), "a second review was sent");
}

#[tokio::test(start_paused = true)]
async fn an_api_outage_keeps_cached_callers_and_new_tokens_fail_unavailable() {
    let (auth, mut api) = start(ReviewConfig::default());
    let known = token(Duration::from_secs(3600), 1);
    let call = tokio::spawn({
        let (auth, t) = (auth.clone(), known.clone());
        async move { auth.authenticate(&t).await }
    });
    review(&mut api, &known, allowed("shop", "cart", "cart-7d9f")).await;
    call.await.unwrap().unwrap();

    // Past the 10-minute freshness cap, the known token is reviewed again; the API server is
    // down: the caller it vouched for stays accepted (its token is valid for 50 more minutes).
    tokio::time::advance(Duration::from_secs(10 * 60 + 1)).await;
    let call = tokio::spawn({
        let (auth, t) = (auth.clone(), known.clone());
        async move { auth.authenticate(&t).await }
    });
    expect_review(&mut api, &known)
        .await
        .fail(503, "ServiceUnavailable");
    assert_eq!(call.await.unwrap().unwrap(), cart());

    // A token never seen: unavailable (retry), not refused.
    let new = token(Duration::from_secs(3600), 2);
    let call = tokio::spawn({
        let (auth, t) = (auth.clone(), new.clone());
        async move { auth.authenticate(&t).await }
    });
    expect_review(&mut api, &new)
        .await
        .fail(503, "ServiceUnavailable");
    let err = call.await.unwrap().unwrap_err();
    assert!(err.is_unavailable(), "{err}");
}

#[tokio::test(start_paused = true)]
async fn a_review_that_times_out_is_unavailable() {
    let config = ReviewConfig::default();
    let timeout = config.review_timeout;
    let (auth, mut api) = start(config);
    let t = token(Duration::from_secs(3600), 1);
    let call = tokio::spawn({
        let (auth, t) = (auth.clone(), t.clone());
        async move { auth.authenticate(&t).await }
    });
    let _unanswered = expect_review(&mut api, &t).await;
    let asked = Instant::now();
    let err = call.await.unwrap().unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    assert_eq!(Instant::now() - asked, timeout);
}

#[tokio::test(start_paused = true)]
async fn a_re_review_that_denies_drops_the_cached_caller() {
    let (auth, mut api) = start(ReviewConfig::default());
    let t = token(Duration::from_secs(3600), 1);
    let call = tokio::spawn({
        let (auth, t) = (auth.clone(), t.clone());
        async move { auth.authenticate(&t).await }
    });
    review(&mut api, &t, allowed("shop", "cart", "cart-7d9f")).await;
    call.await.unwrap().unwrap();

    // The pod was deleted: its bound token is invalid from now on.
    tokio::time::advance(Duration::from_secs(10 * 60 + 1)).await;
    let call = tokio::spawn({
        let (auth, t) = (auth.clone(), t.clone());
        async move { auth.authenticate(&t).await }
    });
    review(&mut api, &t, json!({"authenticated": false})).await;
    assert!(matches!(
        call.await.unwrap(),
        Err(AuthError::Rejected { .. })
    ));
    // Now even an outage does not bring it back.
    let call = tokio::spawn({
        let (auth, t) = (auth.clone(), t.clone());
        async move { auth.authenticate(&t).await }
    });
    expect_review(&mut api, &t)
        .await
        .fail(503, "ServiceUnavailable");
    assert!(call.await.unwrap().unwrap_err().is_unavailable());
}

#[tokio::test(start_paused = true)]
async fn the_cache_holds_at_most_max_entries_tokens() {
    let config = ReviewConfig {
        max_entries: 2,
        ..ReviewConfig::default()
    };
    let (auth, mut api) = start(config);
    for n in 0..3 {
        let t = token(Duration::from_secs(3600 + u64::from(n)), n);
        let call = tokio::spawn({
            let (auth, t) = (auth.clone(), t.clone());
            async move { auth.authenticate(&t).await }
        });
        review(&mut api, &t, allowed("shop", "cart", "cart-7d9f")).await;
        call.await.unwrap().unwrap();
        assert!(auth.cached() <= 2, "{} cached", auth.cached());
    }
    assert_eq!(auth.cached(), 2);
}

#[tokio::test]
async fn oversized_or_empty_tokens_are_refused_without_a_review() {
    let (auth, mut api) = start(ReviewConfig::default());
    assert!(matches!(
        auth.authenticate("").await,
        Err(AuthError::Malformed(_))
    ));
    let huge = "a".repeat(MAX_TOKEN_LEN + 1);
    assert!(matches!(
        auth.authenticate(&huge).await,
        Err(AuthError::Malformed(_))
    ));
    assert!(!api.has_pending());
}

// --- pure rules ---

fn status(v: Value) -> TokenReviewStatus {
    serde_json::from_value(v).unwrap()
}

#[test]
fn non_service_account_users_are_refused() {
    let mut s = allowed("shop", "cart", "p");
    s["user"]["username"] = json!("alice@example.com");
    assert_eq!(
        caller_from_review(Some(&status(s)), "sinew-ca"),
        Err(Refusal::NotServiceAccount("alice@example.com".into()))
    );
    // The right shape of name but not in the service accounts' group.
    let mut s = allowed("shop", "cart", "p");
    s["user"]["groups"] = json!(["system:authenticated"]);
    assert!(matches!(
        caller_from_review(Some(&status(s)), "sinew-ca"),
        Err(Refusal::NotServiceAccount(_))
    ));
    for bad in [
        "system:serviceaccount:shop",
        "system:serviceaccount::cart",
        "system:serviceaccount:shop:cart:x",
    ] {
        let mut s = allowed("shop", "cart", "p");
        s["user"]["username"] = json!(bad);
        assert!(
            matches!(
                caller_from_review(Some(&status(s)), "sinew-ca"),
                Err(Refusal::NotServiceAccount(_))
            ),
            "{bad}"
        );
    }
}

#[test]
fn tokens_not_bound_to_a_pod_are_refused() {
    let mut s = allowed("shop", "cart", "p");
    s["user"]["extra"] = json!({});
    assert_eq!(
        caller_from_review(Some(&status(s)), "sinew-ca"),
        Err(Refusal::NotPodBound {
            namespace: "shop".into(),
            service_account: "cart".into()
        })
    );
}

#[test]
fn an_unauthenticated_review_carries_the_api_servers_error() {
    let s = status(json!({"authenticated": false, "error": "token expired"}));
    assert_eq!(
        caller_from_review(Some(&s), "sinew-ca"),
        Err(Refusal::Rejected("token expired".into()))
    );
    // `authenticated` absent is not true.
    let s = status(json!({"audiences": ["sinew-ca"]}));
    assert!(matches!(
        caller_from_review(Some(&s), "sinew-ca"),
        Err(Refusal::Rejected(_))
    ));
    assert!(matches!(
        caller_from_review(None, "sinew-ca"),
        Err(Refusal::Rejected(_))
    ));
}

#[test]
fn the_cache_bound_is_the_earliest_of_exp_warnafter_and_the_cap() {
    let c = ReviewConfig::default();
    let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
    let at = |claims: Value| cache_for(&jwt(claims), now, &c);
    // exp in 5 min: valid and fresh until 4 min 30 s.
    assert_eq!(
        at(json!({"exp": 1_000_300})),
        CacheFor {
            fresh: Duration::from_secs(270),
            valid: Duration::from_secs(270)
        }
    );
    // exp in an hour: fresh for the 10-minute cap, valid until exp - 30 s.
    assert_eq!(
        at(json!({"exp": 1_003_600})),
        CacheFor {
            fresh: Duration::from_secs(600),
            valid: Duration::from_secs(3570)
        }
    );
    // An extended token (exp a year away) ends at warnafter.
    assert_eq!(
        at(json!({"exp": 1_000_000 + 365 * 86_400, "kubernetes.io": {"warnafter": 1_000_400}}))
            .valid,
        Duration::from_secs(370)
    );
    // Expiring within the margin, or already expired: not cached at all.
    assert_eq!(at(json!({"exp": 1_000_020})).valid, Duration::ZERO);
    assert_eq!(at(json!({"exp": 999_000})).valid, Duration::ZERO);
    // No readable expiry (not a JWT): the cap for both.
    assert_eq!(
        cache_for("opaque-token", now, &c),
        CacheFor {
            fresh: Duration::from_secs(600),
            valid: Duration::from_secs(600)
        }
    );
}
