use super::*;
use crate::traffic::budget::RetryBudget;
use crate::traffic::test_util::*;
use crate::traffic::{PreviousHosts, ResponseFlags};
use http_body_util::Full;
use std::sync::atomic::Ordering;
use tokio::time::Instant;

type B = Full<Bytes>;
type Req = Request<ReplayBody<B>>;

fn policy(retry_on: &[&str], attempts: u32) -> RetryPolicy {
    RetryPolicy::from_proto(
        "r",
        Some(&pb::RetryPolicy {
            attempts,
            retry_on: retry_on.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }),
    )
    .unwrap()
}

fn request(body: &'static str) -> Req {
    Request::builder()
        .uri("http://reviews:9080/r")
        .body(ReplayBody::new(
            Full::new(Bytes::from_static(body.as_bytes())),
            MAX_REPLAY_BYTES,
        ))
        .unwrap()
}

fn retry(
    policy: RetryPolicy,
    budget: Arc<RetryBudget>,
) -> (Retry<MockSvc<ReplayBody<B>>>, MockHandle<ReplayBody<B>>) {
    let (svc, handle) = mock();
    (Retry::new(Arc::new(policy), budget, svc), handle)
}

fn spawn(
    svc: &Retry<MockSvc<ReplayBody<B>>>,
    req: Req,
) -> tokio::task::JoinHandle<Result<Response<Body>, ProxyError>> {
    tokio::spawn(svc.clone().oneshot(req))
}

/// Answers the next `n` tries with `f(i)`, returning the requests' bodies.
async fn answer(
    handle: &mut MockHandle<ReplayBody<B>>,
    n: usize,
    mut f: impl FnMut(usize) -> Result<Response<Body>, ProxyError>,
) -> Vec<Bytes> {
    let mut bodies = Vec::new();
    for i in 0..n {
        let (req, send) = handle.next_request().await.expect("a try");
        match f(i) {
            Ok(r) => send.send_response(r),
            Err(e) => send.send_error(e),
        }
        bodies.push(collect(req.into_body()).await.expect("body replays"));
    }
    bodies
}

/// Proves no further try comes: the task finished and every clone of the mock is gone.
async fn no_more_tries(svc: Retry<MockSvc<ReplayBody<B>>>, handle: &mut MockHandle<ReplayBody<B>>) {
    drop(svc);
    assert!(
        handle.next_request().await.is_none(),
        "an unexpected extra try"
    );
}

#[test]
fn default_policy_is_istio_1_24s() {
    let p = RetryPolicy::from_proto("r", None).unwrap();
    assert_eq!(p, RetryPolicy::istio_default());
    assert_eq!(p.retries, 2);
    assert!(p.previous_hosts);
    assert_eq!(p.per_try_timeout, None);
    assert_eq!(p.backoff.base(), Duration::from_millis(25));
    for c in [
        "connect-failure",
        "refused-stream",
        "unavailable",
        "cancelled",
        "retriable-status-codes",
    ] {
        assert!(
            p.conditions().contains(Conditions::from_name(c).unwrap()),
            "{c}"
        );
    }
    for c in ["5xx", "gateway-error", "reset", "retriable-4xx"] {
        assert!(
            !p.conditions().contains(Conditions::from_name(c).unwrap()),
            "{c}"
        );
    }
    assert!(p.retriable_codes().is_empty());
}

#[test]
fn bare_codes_become_retriable_status_codes_and_unknown_names_are_refused() {
    let p = policy(&["503", "gateway-error,409"], 1);
    assert_eq!(p.retriable_codes(), &[409, 503]);
    assert!(p.conditions().contains(Conditions::RETRIABLE_STATUS_CODES));
    let err = RetryPolicy::from_proto(
        "services[0].http[1].retries",
        Some(&pb::RetryPolicy {
            attempts: 1,
            retry_on: vec!["5xx,retry-on-anything".into()],
            ..Default::default()
        }),
    )
    .unwrap_err();
    assert!(
        err.to_string().starts_with(
            "services[0].http[1].retries.retryOn: unknown retry condition \"retry-on-anything\""
        ),
        "{err}"
    );
    let err = RetryPolicy::from_proto(
        "r",
        Some(&pb::RetryPolicy {
            per_try_timeout: Some(dur(0)),
            ..Default::default()
        }),
    )
    .unwrap_err();
    assert!(err.to_string().starts_with("r.perTryTimeout:"), "{err}");
    // An empty retryOn keeps the default conditions (istiod's ConvertPolicy).
    assert_eq!(
        policy(&[], 5).conditions(),
        RetryPolicy::istio_default().conditions()
    );
}

#[test]
fn conditions_classify_responses_as_envoy() {
    let check = |on: &[&str], r: Response<Body>| policy(on, 1).is_retriable(&Ok(r));
    assert!(check(&["5xx"], rsp(500)));
    assert!(!check(&["5xx"], rsp(429)));
    assert!(check(&["gateway-error"], rsp(502)));
    assert!(check(&["gateway-error"], rsp(504)));
    assert!(!check(&["gateway-error"], rsp(500)));
    assert!(check(&["retriable-4xx"], rsp(409)));
    assert!(!check(&["retriable-4xx"], rsp(404)));
    assert!(check(&["429"], rsp(429)));
    assert!(!check(&["429"], rsp(503)));
    assert!(check(&["unavailable"], grpc_rsp(14)));
    assert!(check(&["cancelled"], grpc_rsp(1)));
    assert!(check(&["deadline-exceeded"], grpc_rsp(4)));
    assert!(check(&["resource-exhausted"], grpc_rsp(8)));
    assert!(check(&["internal"], grpc_rsp(13)));
    assert!(!check(&["unavailable"], grpc_rsp(13)));
    assert!(!check(&["unavailable"], grpc_rsp(0)));
}

#[test]
fn conditions_classify_errors_as_envoy() {
    let check = |on: &[&str], e: ProxyError| policy(on, 1).is_retriable::<Body>(&Err(e));
    let refused = || ProxyError::Upstream(Box::new(h2::Error::from(h2::Reason::REFUSED_STREAM)));
    let reset = || ProxyError::Upstream(Box::new(h2::Error::from(h2::Reason::INTERNAL_ERROR)));
    assert!(check(&["connect-failure"], connect_err()));
    assert!(check(&["reset-before-request"], connect_err()));
    assert!(check(&["5xx"], connect_err()));
    assert!(!check(&["refused-stream"], connect_err()));
    assert!(check(&["refused-stream"], refused()));
    assert!(!check(&["connect-failure"], refused()));
    assert!(!check(&["refused-stream"], reset()));
    assert!(check(&["reset"], reset()));
    assert!(check(&["5xx"], reset()));
    assert!(check(
        &["reset"],
        ProxyError::Timeout(Duration::from_secs(1))
    ));
    assert!(!check(
        &["connect-failure"],
        ProxyError::Timeout(Duration::from_secs(1))
    ));
    let overflow = || ProxyError::Overflow {
        service: Arc::from("s"),
        limit: crate::http::Overflow::Pending,
    };
    assert!(!check(
        &["5xx", "reset", "gateway-error", "connect-failure"],
        overflow()
    ));
    assert!(!check(
        &["5xx", "reset"],
        ProxyError::Downstream("cut".into())
    ));
    assert!(!check(&["5xx", "reset"], ProxyError::BadHost("x".into())));
    assert!(check(
        &["connect-failure"],
        ProxyError::Shared(Arc::new(connect_err()))
    ));
}

#[tokio::test(start_paused = true)]
async fn default_policy_retries_connect_failures_with_the_body_replayed() {
    let (svc, mut handle) = retry(
        RetryPolicy::istio_default(),
        Arc::new(RetryBudget::unlimited()),
    );
    let req = request("payload");
    let task = spawn(&svc, req);
    let bodies = answer(&mut handle, 3, |i| {
        if i < 2 {
            Err(connect_err())
        } else {
            Ok(rsp(200))
        }
    })
    .await;
    assert_eq!(bodies, ["payload", "payload", "payload"]);
    let rsp = task.await.unwrap().unwrap();
    assert_eq!(rsp.status(), 200);
    assert!(rsp.extensions().get::<ResponseFlags>().is_none());
    no_more_tries(svc, &mut handle).await;
}

#[tokio::test(start_paused = true)]
async fn default_policy_does_not_retry_a_503_response() {
    let (svc, mut handle) = retry(
        RetryPolicy::istio_default(),
        Arc::new(RetryBudget::unlimited()),
    );
    let task = spawn(&svc, request(""));
    answer(&mut handle, 1, |_| Ok(rsp(503))).await;
    assert_eq!(task.await.unwrap().unwrap().status(), 503);
    no_more_tries(svc, &mut handle).await;
}

#[tokio::test(start_paused = true)]
async fn exhausted_attempts_return_the_last_error_flagged_urx() {
    let budget = Arc::new(RetryBudget::unlimited());
    let (svc, mut handle) = retry(RetryPolicy::istio_default(), budget.clone());
    let task = spawn(&svc, request(""));
    answer(&mut handle, 3, |_| Err(connect_err())).await;
    let err = task.await.unwrap().unwrap_err();
    assert!(matches!(err.root(), ProxyError::Connect { .. }), "{err}");
    assert_eq!(err.added_flags(), ResponseFlags::URX);
    assert_eq!(budget.stats().retries.load(Ordering::Relaxed), 2);
    assert_eq!(budget.stats().limit_exceeded.load(Ordering::Relaxed), 1);
    no_more_tries(svc, &mut handle).await;
}

#[tokio::test(start_paused = true)]
async fn exhausted_attempts_on_a_response_flag_it_urx() {
    let (svc, mut handle) = retry(policy(&["5xx"], 1), Arc::new(RetryBudget::unlimited()));
    let task = spawn(&svc, request(""));
    answer(&mut handle, 2, |_| Ok(rsp(500))).await;
    let rsp = task.await.unwrap().unwrap();
    assert_eq!(rsp.status(), 500);
    assert_eq!(
        rsp.extensions().get::<ResponseFlags>(),
        Some(&ResponseFlags::URX)
    );
}

#[tokio::test(start_paused = true)]
async fn bare_status_code_is_retried_other_codes_are_not() {
    let (svc, mut handle) = retry(policy(&["503"], 3), Arc::new(RetryBudget::unlimited()));
    let task = spawn(&svc, request(""));
    answer(&mut handle, 2, |i| Ok(rsp(if i == 0 { 503 } else { 500 }))).await;
    assert_eq!(task.await.unwrap().unwrap().status(), 500);
    no_more_tries(svc, &mut handle).await;
}

#[tokio::test(start_paused = true)]
async fn grpc_unavailable_in_a_trailers_only_response_is_retried() {
    let (svc, mut handle) = retry(
        RetryPolicy::istio_default(),
        Arc::new(RetryBudget::unlimited()),
    );
    let task = spawn(&svc, request(""));
    answer(&mut handle, 2, |i| {
        Ok(if i == 0 { grpc_rsp(14) } else { grpc_rsp(0) })
    })
    .await;
    let rsp = task.await.unwrap().unwrap();
    assert_eq!(rsp.headers()["grpc-status"], "0");
    no_more_tries(svc, &mut handle).await;
}

#[tokio::test(start_paused = true)]
async fn attempts_zero_sends_once() {
    let (svc, mut handle) = retry(policy(&["5xx"], 0), Arc::new(RetryBudget::unlimited()));
    let task = spawn(&svc, request("x"));
    answer(&mut handle, 1, |_| Err(connect_err())).await;
    let err = task.await.unwrap().unwrap_err();
    assert!(err.added_flags().is_empty(), "no URX without retries");
    no_more_tries(svc, &mut handle).await;
}

#[tokio::test(start_paused = true)]
async fn backoff_waits_a_jittered_time_below_each_retrys_ceiling() {
    let mut waits = Vec::new();
    for _ in 0..20 {
        let (svc, mut handle) = retry(policy(&["5xx"], 2), Arc::new(RetryBudget::unlimited()));
        let task = spawn(&svc, request(""));
        let mut times = Vec::new();
        for i in 0..3 {
            let (_, send) = handle.next_request().await.unwrap();
            times.push(Instant::now());
            send.send_response(rsp(if i < 2 { 500 } else { 200 }));
        }
        task.await.unwrap().unwrap();
        let first = times[1] - times[0];
        let second = times[2] - times[1];
        // Tokio's timer rounds a sleep up to the next millisecond: a draw below the ceiling can
        // end on it.
        assert!(first <= Duration::from_millis(25), "{first:?}");
        assert!(second <= Duration::from_millis(75), "{second:?}");
        waits.push(first);
    }
    // Jitter: the waits differ (20 draws landing on the same one of 25 milliseconds: 25^-19).
    waits.sort();
    waits.dedup();
    assert!(waits.len() > 1);
}

#[tokio::test(start_paused = true)]
async fn a_try_that_times_out_is_retried_and_the_last_timeout_is_504_ut() {
    let mut p = policy(&["reset"], 1);
    p.per_try_timeout = Some(Duration::from_millis(100));
    let (svc, mut handle) = retry(p, Arc::new(RetryBudget::unlimited()));
    let start = Instant::now();
    let task = spawn(&svc, request(""));
    // Two tries, neither answered.
    let (_r1, _s1) = handle.next_request().await.unwrap();
    let t1 = Instant::now();
    let (_r2, _s2) = handle.next_request().await.unwrap();
    assert!(Instant::now() - t1 >= Duration::from_millis(100));
    let err = task.await.unwrap().unwrap_err();
    assert!(matches!(err.root(), ProxyError::Timeout(d) if *d == Duration::from_millis(100)));
    assert_eq!(err.status_and_flag().1, "UT");
    assert_eq!(err.added_flags(), ResponseFlags::URX);
    let total = Instant::now() - start;
    // Two per-try timeouts and one backoff below 25 ms, which tokio's timer may round up to 25.
    assert!(
        total >= Duration::from_millis(200) && total <= Duration::from_millis(225),
        "{total:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_body_larger_than_64_kib_is_sent_once() {
    let (svc, mut handle) = retry(
        RetryPolicy::istio_default(),
        Arc::new(RetryBudget::unlimited()),
    );
    let big = Bytes::from(vec![7u8; MAX_REPLAY_BYTES + 1]);
    let req = Request::new(ReplayBody::new(Full::new(big), MAX_REPLAY_BYTES));
    let task = spawn(&svc, req);
    let bodies = answer(&mut handle, 1, |_| Err(connect_err())).await;
    assert_eq!(bodies[0].len(), MAX_REPLAY_BYTES + 1);
    let err = task.await.unwrap().unwrap_err();
    assert!(err.added_flags().is_empty());
    no_more_tries(svc, &mut handle).await;
}

#[tokio::test(start_paused = true)]
async fn a_streamed_body_that_outgrows_the_buffer_during_the_try_is_not_retried() {
    let (svc, mut handle) = mock::<ReplayBody<ChanBody>>();
    let svc = Retry::new(
        Arc::new(RetryPolicy::istio_default()),
        Arc::new(RetryBudget::unlimited()),
        svc,
    );
    let (tx, body) = chan_body();
    let req = Request::new(ReplayBody::new(body, MAX_REPLAY_BYTES));
    let task = tokio::spawn(svc.clone().oneshot(req));
    let (req, send) = handle.next_request().await.unwrap();
    tx.send(Ok(http_body::Frame::data(Bytes::from(vec![
        1u8;
        MAX_REPLAY_BYTES
            + 10
    ]))))
    .unwrap();
    drop(tx);
    assert_eq!(
        collect(req.into_body()).await.unwrap().len(),
        MAX_REPLAY_BYTES + 10
    );
    send.send_error(connect_err());
    assert!(task.await.unwrap().is_err());
    drop(svc);
    assert!(
        handle.next_request().await.is_none(),
        "retried a body it could not replay"
    );
}

#[tokio::test(start_paused = true)]
async fn a_spent_budget_refuses_the_retry_flagged_uo() {
    // One active request, 20 % of it is 0 and no minimum: no retry allowed.
    let budget = Arc::new(RetryBudget::new(0, Some((20.0, 0))));
    let (svc, mut handle) = retry(RetryPolicy::istio_default(), budget.clone());
    let task = spawn(&svc, request(""));
    answer(&mut handle, 1, |_| Err(connect_err())).await;
    let err = task.await.unwrap().unwrap_err();
    assert!(matches!(err.root(), ProxyError::Connect { .. }));
    assert_eq!(err.added_flags(), ResponseFlags::UO);
    assert_eq!(budget.stats().budget_exhausted.load(Ordering::Relaxed), 1);
    assert_eq!(budget.stats().retries.load(Ordering::Relaxed), 0);
    no_more_tries(svc, &mut handle).await;
}

#[tokio::test(start_paused = true)]
async fn max_retries_caps_retries_in_flight_across_requests() {
    let budget = Arc::new(RetryBudget::new(1, None));
    let (svc, mut handle) = retry(RetryPolicy::istio_default(), budget.clone());
    // Request A fails and retries: its retry holds the only permit.
    let a = spawn(&svc, request("a"));
    answer(&mut handle, 1, |_| Err(connect_err())).await;
    let (_, a_retry) = handle.next_request().await.unwrap();
    assert_eq!(budget.retries_in_flight(), 1);
    // Request B fails meanwhile: its retry is not attempted.
    let b = spawn(&svc, request("b"));
    answer(&mut handle, 1, |_| Err(connect_err())).await;
    let err = b.await.unwrap().unwrap_err();
    assert!(matches!(err.root(), ProxyError::Connect { .. }));
    assert_eq!(err.added_flags(), ResponseFlags::UO);
    assert_eq!(budget.stats().overflows.load(Ordering::Relaxed), 1);
    a_retry.send_response(rsp(200));
    assert_eq!(a.await.unwrap().unwrap().status(), 200);
    assert_eq!(budget.retries_in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn previous_hosts_survive_across_tries() {
    let (svc, mut handle) = retry(
        RetryPolicy::istio_default(),
        Arc::new(RetryBudget::unlimited()),
    );
    let mut req = request("");
    req.extensions_mut().insert(PreviousHosts::default());
    let task = spawn(&svc, req);
    let (r1, s1) = handle.next_request().await.unwrap();
    r1.extensions()
        .get::<PreviousHosts>()
        .unwrap()
        .record("198.18.0.1:80".parse().unwrap());
    s1.send_error(connect_err());
    let (r2, s2) = handle.next_request().await.unwrap();
    let hosts = r2.extensions().get::<PreviousHosts>().unwrap();
    assert!(hosts.contains(&"198.18.0.1:80".parse().unwrap()));
    s2.send_response(rsp(200));
    task.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_route_timeout_covers_all_retries() {
    // Each try fails at once with 500; backoff 100 ms; 10 attempts would take ~1 s. The
    // 250 ms route timeout ends it with 504 UT.
    let mut p = policy(&["5xx"], 10);
    p.backoff = Backoff::new(Duration::from_millis(100));
    let (svc, mut handle) = retry(p, Arc::new(RetryBudget::unlimited()));
    let svc = crate::traffic::timeout::Timeout::new(Some(Duration::from_millis(250)), svc);
    let start = Instant::now();
    let task = tokio::spawn(svc.oneshot(request("")));
    let mut tries = 0;
    while let Some((_, send)) = handle.next_request().await {
        tries += 1;
        send.send_response(rsp(500));
    }
    let err = task.await.unwrap().unwrap_err();
    assert_eq!(err.status_and_flag(), (StatusCode::GATEWAY_TIMEOUT, "UT"));
    assert_eq!(Instant::now() - start, Duration::from_millis(250));
    assert!((2..=10).contains(&tries), "{tries}");
}

#[test]
fn with_the_default_conditions_an_idempotent_request_is_retried_after_a_lost_connection() {
    let default = RetryPolicy::istio_default();
    let reset = || {
        Err::<Response<Body>, _>(ProxyError::Upstream(Box::new(h2::Error::from(
            h2::Reason::INTERNAL_ERROR,
        ))))
    };
    assert!(
        default.is_retriable_for(&reset(), true),
        "GET: the replica died mid-request"
    );
    assert!(
        !default.is_retriable_for(&reset(), false),
        "POST: it may have been applied"
    );
    assert!(
        !default.is_retriable_for(
            &Err::<Response<Body>, _>(ProxyError::Timeout(Duration::from_secs(1))),
            true
        ),
        "a timeout is not a lost connection"
    );
    // retryOn written out: Envoy's conditions exactly.
    let explicit = policy(&["connect-failure"], 2);
    assert!(!explicit.is_retriable_for(&reset(), true));
    // attempts set, retryOn left empty: the default conditions, idempotent resets included.
    let attempts_only = RetryPolicy::from_proto(
        "r",
        Some(&pb::RetryPolicy {
            attempts: 3,
            ..Default::default()
        }),
    )
    .unwrap();
    assert!(attempts_only.is_retriable_for(&reset(), true));
}

#[tokio::test(start_paused = true)]
async fn a_get_whose_replica_died_mid_request_is_retried_and_a_post_is_not() {
    let reset = || ProxyError::Upstream(Box::new(h2::Error::from(h2::Reason::INTERNAL_ERROR)));
    let (svc, mut handle) = retry(
        RetryPolicy::istio_default(),
        Arc::new(RetryBudget::unlimited()),
    );
    let task = spawn(&svc, request(""));
    answer(&mut handle, 2, |i| {
        if i == 0 { Err(reset()) } else { Ok(rsp(200)) }
    })
    .await;
    assert_eq!(task.await.unwrap().unwrap().status(), 200);

    let mut post = request("order");
    *post.method_mut() = http::Method::POST;
    let task = spawn(&svc, post);
    answer(&mut handle, 1, |_| Err(reset())).await;
    let err = task.await.unwrap().unwrap_err();
    assert!(matches!(err.root(), ProxyError::Upstream(_)), "{err}");
    no_more_tries(svc, &mut handle).await;
}
