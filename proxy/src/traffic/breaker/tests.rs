use super::*;
use http_body_util::BodyExt;
use tokio_test::{assert_pending, assert_ready, task};
use tower::{Layer, Service, ServiceExt};
use tower_test::mock;

const FIELD: &str = "services[0].trafficPolicy.connectionPool";

type Mock = mock::Mock<Request<()>, Response<()>>;
type Handle = mock::Handle<Request<()>, Response<()>>;

fn pb_duration(secs: i64) -> Option<pbjson_types::Duration> {
    Some(pbjson_types::Duration {
        seconds: secs,
        nanos: 0,
    })
}

type Upstream = tower::util::MapErr<Mock, fn(tower::BoxError) -> ProxyError>;

/// A breaker over a mock endpoint that answers only when the test says so (a slow upstream).
fn service(limits: Limits) -> (BreakerService<Upstream>, Handle, Breaker) {
    let (mock, handle) = mock::pair::<Request<()>, Response<()>>();
    let inner = mock.map_err(ProxyError::Upstream as fn(tower::BoxError) -> ProxyError);
    let breaker = Breaker::new("reviews:9080".into(), &limits);
    let svc = BreakerLayer::new(breaker.clone()).layer(inner);
    (svc, handle, breaker)
}

fn h2() -> Request<()> {
    let mut req = Request::new(());
    *req.version_mut() = Version::HTTP_2;
    req
}

fn h1() -> Request<()> {
    let mut req = Request::new(());
    *req.version_mut() = Version::HTTP_11;
    req
}

fn limits(max_requests: usize, max_pending: usize) -> Limits {
    Limits {
        max_requests: Some(max_requests),
        max_pending: Some(max_pending),
        ..Limits::unlimited()
    }
}

/// `maxConnections` and `http1MaxPendingRequests`: what makes HTTP/1 requests wait.
fn conn_limits(max_connections: usize, max_pending: usize) -> Limits {
    Limits {
        max_connections: Some(max_connections),
        max_pending: Some(max_pending),
        ..Limits::unlimited()
    }
}

fn is_overflow<B>(r: &Result<Response<B>, ProxyError>, kind: Overflow) -> bool {
    matches!(r, Err(ProxyError::Overflow { limit, .. }) if *limit == kind)
}

fn is_pending_overflow(r: &Result<Response<()>, ProxyError>) -> bool {
    matches!(
        r,
        Err(ProxyError::Overflow {
            limit: Overflow::Pending,
            ..
        })
    )
}

// --- limits ---

#[test]
fn an_empty_pool_is_unlimited_with_istios_timeouts() {
    let l = Limits::from_proto(FIELD, &pb::ConnectionPool::default()).unwrap();
    assert_eq!(l, Limits::unlimited());
    assert_eq!(l.max_requests, None);
    assert_eq!(l.max_pending, None);
    assert_eq!(l.max_connections, None);
    assert_eq!(l.max_retries, None);
    assert_eq!(
        l.connect_timeout, None,
        "the proxy's timeouts.connect applies"
    );
    assert_eq!(l.idle_timeout, Some(Duration::from_secs(3600)));
    assert_eq!(l.max_connection_duration, None);
    assert_eq!(l.max_requests_per_connection, None);
    assert_eq!(l.max_concurrent_streams, None);
    assert_eq!(l.tcp_keepalive, None);
}

#[test]
fn every_field_is_read() {
    let cp = pb::ConnectionPool {
        max_connections: 7,
        connect_timeout: pb_duration(2),
        tcp_keepalive: Some(pb::TcpKeepalive {
            probes: 3,
            time: pb_duration(60),
            interval: None,
        }),
        max_connection_duration: pb_duration(600),
        idle_timeout: pb_duration(30),
        http1_max_pending_requests: 4,
        http2_max_requests: 5,
        max_requests_per_connection: 1,
        max_retries: 6,
        max_concurrent_streams: 100,
    };
    let l = Limits::from_proto(FIELD, &cp).unwrap();
    assert_eq!(
        l,
        Limits {
            max_requests: Some(5),
            max_pending: Some(4),
            max_connections: Some(7),
            max_retries: Some(6),
            connect_timeout: Some(Duration::from_secs(2)),
            idle_timeout: Some(Duration::from_secs(30)),
            max_connection_duration: Some(Duration::from_secs(600)),
            max_requests_per_connection: NonZeroU32::new(1),
            max_concurrent_streams: NonZeroU32::new(100),
            tcp_keepalive: Some(TcpKeepalive {
                probes: NonZeroU32::new(3),
                time: Some(Duration::from_secs(60)),
                interval: None,
            }),
        }
    );
}

#[test]
fn an_explicit_zero_idle_timeout_disables_it() {
    let cp = pb::ConnectionPool {
        idle_timeout: pb_duration(0),
        ..Default::default()
    };
    assert_eq!(Limits::from_proto(FIELD, &cp).unwrap().idle_timeout, None);
}

#[test]
fn invalid_durations_are_named() {
    let cases = [
        (
            pb::ConnectionPool {
                connect_timeout: pb_duration(0),
                ..Default::default()
            },
            "connectTimeout",
        ),
        (
            pb::ConnectionPool {
                idle_timeout: pb_duration(-5),
                ..Default::default()
            },
            "idleTimeout",
        ),
        (
            pb::ConnectionPool {
                max_connection_duration: pb_duration(0),
                ..Default::default()
            },
            "maxConnectionDuration",
        ),
        (
            pb::ConnectionPool {
                tcp_keepalive: Some(pb::TcpKeepalive {
                    interval: pb_duration(0),
                    ..Default::default()
                }),
                ..Default::default()
            },
            "tcpKeepalive.interval",
        ),
    ];
    for (cp, name) in cases {
        match Limits::from_proto(FIELD, &cp) {
            Err(ConfigError::Invalid { field, .. }) => assert_eq!(field, format!("{FIELD}.{name}")),
            other => panic!("{name}: expected an error, got {other:?}"),
        }
    }
}

// --- the layer ---

#[tokio::test(start_paused = true)]
async fn one_active_one_pending_and_the_rest_fail_fast_with_uo() {
    let (mut svc, mut handle, breaker) = service(conn_limits(1, 1));
    let mut calls = Vec::new();
    for _ in 0..10 {
        svc.ready().await.unwrap();
        calls.push(task::spawn(svc.call(h1())));
    }
    let mut iter = calls.iter_mut();
    let (first, second) = (iter.next().unwrap(), iter.next().unwrap());
    assert_pending!(first.poll());
    assert_pending!(second.poll());
    for rest in iter {
        let r = assert_ready!(rest.poll());
        assert!(is_pending_overflow(&r), "{r:?}");
        let (status, flag) = r.unwrap_err().status_and_flag();
        assert_eq!((status.as_u16(), flag), (503, "UO"));
    }
    let stats = breaker.stats();
    assert_eq!(
        (stats.active, stats.pending, stats.overflow_pending),
        (1, 1, 8)
    );

    // Only the first reached the upstream.
    let (_req, respond) = handle.next_request().await.unwrap();
    respond.send_response(Response::new(()));
    assert!(assert_ready!(first.poll()).is_ok());

    // The queued request goes as soon as the first one completes.
    assert!(second.is_woken());
    assert_pending!(second.poll());
    assert_eq!((breaker.stats().active, breaker.stats().pending), (1, 0));
    let (_req, respond) = handle.next_request().await.unwrap();
    respond.send_response(Response::new(()));
    assert!(assert_ready!(second.poll()).is_ok());
    assert_eq!((breaker.stats().active, breaker.stats().pending), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn an_overflow_never_reaches_the_upstream() {
    let (mut svc, mut handle, _breaker) = service(limits(1, 1));
    let mut calls = Vec::new();
    for _ in 0..3 {
        svc.ready().await.unwrap();
        let mut call = task::spawn(svc.call(h2()));
        let _ = call.poll();
        calls.push(call);
    }
    let (_req, respond) = handle.next_request().await.unwrap();
    // The third failed; the mock must have seen exactly one request.
    let mut peek = task::spawn(handle.next_request());
    assert_pending!(peek.poll());
    drop(peek);
    respond.send_response(Response::new(()));
}

#[tokio::test(start_paused = true)]
async fn queued_requests_go_in_arrival_order() {
    let (mut svc, mut handle, _breaker) = service(conn_limits(1, 5));
    let mut calls = Vec::new();
    for i in 0..3u16 {
        svc.ready().await.unwrap();
        let mut req = h1();
        req.headers_mut().insert("n", i.into());
        let mut call = task::spawn(svc.call(req));
        assert_pending!(call.poll());
        calls.push(call);
    }
    for (i, call) in calls.iter_mut().enumerate() {
        if i > 0 {
            // Woken by the previous completion: this poll sends it upstream.
            assert!(call.is_woken());
            assert_pending!(call.poll());
        }
        let (req, respond) = handle.next_request().await.unwrap();
        assert_eq!(req.headers()["n"], i.to_string().as_str());
        respond.send_response(Response::new(()));
        assert!(assert_ready!(call.poll()).is_ok());
    }
}

#[tokio::test(start_paused = true)]
async fn a_dropped_waiter_leaves_the_queue() {
    let (mut svc, _handle, breaker) = service(conn_limits(1, 1));
    svc.ready().await.unwrap();
    let mut first = task::spawn(svc.call(h1()));
    assert_pending!(first.poll());
    svc.ready().await.unwrap();
    let mut second = task::spawn(svc.call(h1()));
    assert_pending!(second.poll());
    assert_eq!(breaker.stats().pending, 1);
    drop(second);
    assert_eq!(breaker.stats().pending, 0);
    svc.ready().await.unwrap();
    let mut third = task::spawn(svc.call(h1()));
    assert_pending!(third.poll(), "the queue has room again");
    assert_eq!(breaker.stats().pending, 1);
}

#[tokio::test(start_paused = true)]
async fn with_defaults_nothing_queues_or_overflows() {
    let (mut svc, mut handle, breaker) = service(Limits::unlimited());
    let mut calls = Vec::new();
    for _ in 0..100 {
        svc.ready().await.unwrap();
        let mut call = task::spawn(svc.call(h1()));
        assert_pending!(call.poll());
        calls.push(call);
    }
    for _ in 0..100 {
        let (_req, respond) = handle.next_request().await.unwrap();
        respond.send_response(Response::new(()));
    }
    // Give the test task a fresh tokio coop budget: each ready oneshot poll spends from it.
    tokio::task::yield_now().await;
    for call in &mut calls {
        assert!(assert_ready!(call.poll()).is_ok());
    }
    let stats = breaker.stats();
    assert_eq!(stats.overflow_pending + stats.overflow_connections, 0);
    assert_eq!(stats.active, 0);
}

#[tokio::test(start_paused = true)]
async fn requests_over_http2_max_requests_fail_at_once_and_never_queue() {
    let l = Limits {
        max_requests: Some(1),
        ..Limits::unlimited()
    };
    let (mut svc, _handle, breaker) = service(l);
    svc.ready().await.unwrap();
    let mut first = task::spawn(svc.call(h2()));
    assert_pending!(first.poll());
    for req in [h2(), h1(), h2()] {
        svc.ready().await.unwrap();
        let mut call = task::spawn(svc.call(req));
        let r = assert_ready!(call.poll());
        assert!(is_overflow(&r, Overflow::Requests), "{r:?}");
        assert_eq!(r.unwrap_err().status_and_flag().1, "UO");
    }
    let stats = breaker.stats();
    assert_eq!(
        (stats.active, stats.pending, stats.overflow_requests),
        (1, 0, 3)
    );
}

#[tokio::test(start_paused = true)]
async fn unlimited_pending_with_limited_connections_queues_http1() {
    let l = Limits {
        max_connections: Some(1),
        ..Limits::unlimited()
    };
    let (mut svc, _handle, breaker) = service(l);
    let mut calls = Vec::new();
    for _ in 0..50 {
        svc.ready().await.unwrap();
        let mut call = task::spawn(svc.call(h1()));
        assert_pending!(call.poll());
        calls.push(call);
    }
    assert_eq!((breaker.stats().active, breaker.stats().pending), (1, 49));
}

#[tokio::test(start_paused = true)]
async fn a_waiter_whose_connection_comes_with_every_request_slot_taken_is_refused() {
    let l = Limits {
        max_requests: Some(2),
        ..conn_limits(1, 5)
    };
    let (mut svc, mut handle, breaker) = service(l.clone());
    svc.ready().await.unwrap();
    let mut a = task::spawn(svc.call(h1()));
    assert_pending!(a.poll());
    svc.ready().await.unwrap();
    let mut waiting = task::spawn(svc.call(h1()));
    assert_pending!(waiting.poll(), "waits for the connection");
    svc.ready().await.unwrap();
    let mut b = task::spawn(svc.call(h2()));
    assert_pending!(b.poll());
    // One request slot fewer while it waits: when `a` frees the connection, `b` holds the only
    // request slot.
    breaker.update(&Limits {
        max_requests: Some(1),
        ..l
    });
    let (_req, respond) = handle.next_request().await.unwrap();
    respond.send_response(Response::new(()));
    assert!(assert_ready!(a.poll()).is_ok());
    assert!(waiting.is_woken());
    let r = assert_ready!(waiting.poll());
    assert!(is_overflow(&r, Overflow::Requests), "{r:?}");
    assert_eq!(
        (breaker.stats().pending, breaker.stats().connections),
        (0, 0)
    );
    drop(b);
}

#[tokio::test(start_paused = true)]
async fn in_flight_http1_requests_count_against_max_connections() {
    let l = Limits {
        max_connections: Some(1),
        ..Limits::unlimited()
    };
    let (mut svc, mut handle, breaker) = service(l);
    svc.ready().await.unwrap();
    let mut a = task::spawn(svc.call(h1()));
    assert_pending!(a.poll());
    // HTTP/2 requests need no connection of their own.
    svc.ready().await.unwrap();
    let mut b = task::spawn(svc.call(h2()));
    assert_pending!(b.poll());
    assert_eq!(breaker.stats().active, 2);
    // A second HTTP/1 request (here converted for the mesh) waits for the first.
    let mut converted = h2();
    converted
        .headers_mut()
        .insert(ORIG_PROTO.clone(), HeaderValue::from_static("HTTP/1.1"));
    svc.ready().await.unwrap();
    let mut c = task::spawn(svc.call(converted));
    assert_pending!(c.poll());
    let stats = breaker.stats();
    assert_eq!((stats.active, stats.pending, stats.connections), (2, 1, 1));
    assert_eq!(stats.overflow_connections, 1);
    let (_req, respond) = handle.next_request().await.unwrap(); // a
    respond.send_response(Response::new(()));
    assert!(assert_ready!(a.poll()).is_ok());
    assert!(c.is_woken());
    assert_pending!(c.poll());
    assert_eq!(breaker.stats().connections, 1);
    drop(b);
}

#[tokio::test(start_paused = true)]
async fn lowered_limits_keep_the_counts_in_flight() {
    let (mut svc, mut handle, breaker) = service(conn_limits(2, 10));
    let mut running = Vec::new();
    for _ in 0..2 {
        svc.ready().await.unwrap();
        let mut call = task::spawn(svc.call(h1()));
        assert_pending!(call.poll());
        running.push(call);
    }
    breaker.update(&conn_limits(1, 10));
    assert_eq!(breaker.stats().connections, 2, "counts survive the push");
    svc.ready().await.unwrap();
    let mut queued = task::spawn(svc.call(h1()));
    assert_pending!(queued.poll());
    assert_eq!(breaker.stats().pending, 1);

    // One finishes: 1 connection is still the new limit, so the waiter keeps waiting.
    let (_req, respond) = handle.next_request().await.unwrap();
    respond.send_response(Response::new(()));
    assert!(assert_ready!(running[0].poll()).is_ok());
    assert!(!queued.is_woken());
    assert_eq!(breaker.stats().pending, 1);
    // The other finishes: now it goes.
    let (_req, respond) = handle.next_request().await.unwrap();
    respond.send_response(Response::new(()));
    assert!(assert_ready!(running[1].poll()).is_ok());
    assert!(queued.is_woken());
    assert_eq!(breaker.stats().pending, 0);
}

#[tokio::test(start_paused = true)]
async fn a_raised_limit_admits_waiters_at_once() {
    let (mut svc, _handle, breaker) = service(conn_limits(1, 10));
    svc.ready().await.unwrap();
    let mut a = task::spawn(svc.call(h1()));
    assert_pending!(a.poll());
    svc.ready().await.unwrap();
    let mut b = task::spawn(svc.call(h1()));
    assert_pending!(b.poll());
    breaker.update(&conn_limits(2, 10));
    assert!(b.is_woken());
    assert_eq!((breaker.stats().active, breaker.stats().pending), (2, 0));
}

#[tokio::test(start_paused = true)]
async fn readiness_is_the_upstreams() {
    let (mut svc, mut handle, _breaker) = service(Limits::unlimited());
    handle.allow(0);
    let mut ready = task::spawn(svc.ready());
    assert_pending!(ready.poll());
    handle.allow(1);
    assert!(ready.is_woken());
    assert!(assert_ready!(ready.poll()).is_ok());
}

#[test]
fn max_retries_caps_retries_in_flight() {
    let breaker = Breaker::new(
        "reviews:9080".into(),
        &Limits {
            max_retries: Some(2),
            ..Limits::unlimited()
        },
    );
    let a = breaker.try_acquire_retry().unwrap();
    let _b = breaker.try_acquire_retry().unwrap();
    let third = breaker.try_acquire_retry();
    assert!(matches!(
        third,
        Err(ProxyError::Overflow {
            limit: Overflow::Retries,
            ..
        })
    ));
    assert_eq!(breaker.stats().overflow_retries, 1);
    drop(a);
    assert!(
        breaker.try_acquire_retry().is_ok(),
        "a finished retry frees its slot"
    );
}

#[test]
fn retries_are_unlimited_by_default() {
    let breaker = Breaker::new("reviews:9080".into(), &Limits::unlimited());
    let permits: Vec<_> = (0..1000).map(|_| breaker.try_acquire_retry()).collect();
    assert!(permits.iter().all(Result::is_ok));
    assert_eq!(breaker.stats().retries, 1000);
}

#[tokio::test]
async fn the_overflow_reply_is_envoys() {
    let rsp = overflow_response();
    assert_eq!(rsp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(rsp.headers()["x-envoy-overloaded"], "true");
    assert_eq!(rsp.headers()[&RESPONSE_FLAGS], "UO");
    let body = rsp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        body,
        "upstream connect error or disconnect/reset before headers. reset reason: overflow"
    );
}

#[tokio::test(start_paused = true)]
async fn acquire_waits_in_the_queue_then_gets_its_slot() {
    let breaker = Breaker::new("reviews:9080".into(), &conn_limits(1, 1));
    let held = breaker.acquire(true).await.unwrap();
    let mut waiting = task::spawn(breaker.acquire(true));
    assert_pending!(waiting.poll());
    let overflow = breaker.acquire(true).await;
    assert!(matches!(
        overflow,
        Err(ProxyError::Overflow {
            limit: Overflow::Pending,
            ..
        })
    ));
    drop(held);
    assert!(waiting.is_woken());
    let permit = assert_ready!(waiting.poll()).unwrap();
    assert_eq!(breaker.stats().connections, 1);
    drop(permit);
    assert_eq!(
        (breaker.stats().active, breaker.stats().connections),
        (0, 0)
    );
}

type StreamingSvc = BreakerService<
    tower::util::MapErr<mock::Mock<Request<()>, Response<Body>>, fn(tower::BoxError) -> ProxyError>,
>;

/// A breaker with one request slot, and one request through it whose upstream body streams what
/// the test sends.
async fn one_streaming_response() -> (
    (StreamingSvc, mock::Handle<Request<()>, Response<Body>>),
    Breaker,
    Response<Body>,
    tokio::sync::mpsc::UnboundedSender<Result<http_body::Frame<bytes::Bytes>, tower::BoxError>>,
) {
    use crate::traffic::test_util::streaming_upstream_response;
    let (mock, mut handle) = mock::pair::<Request<()>, Response<Body>>();
    let inner = mock.map_err(ProxyError::Upstream as fn(tower::BoxError) -> ProxyError);
    let breaker = Breaker::new("reviews:9080".into(), &limits(1, 0));
    let mut svc = BreakerLayer::new(breaker.clone()).layer(inner);
    svc.ready().await.unwrap();
    let call = tokio::spawn(svc.call(h2()));
    let (_req, respond) = handle.next_request().await.unwrap();
    let (upstream, tx) = streaming_upstream_response().await;
    respond.send_response(upstream);
    let rsp = call.await.unwrap().unwrap();
    ((svc, handle), breaker, rsp, tx)
}

#[tokio::test]
async fn a_streaming_response_holds_its_slot_until_the_body_ends() {
    use crate::traffic::test_util::data;
    let ((mut svc, _handle), breaker, rsp, tx) = one_streaming_response().await;
    let mut body = rsp.into_body();
    tx.send(data("first")).unwrap();
    assert_eq!(
        body.frame().await.unwrap().unwrap().into_data().unwrap(),
        "first"
    );
    assert_eq!(breaker.stats().active, 1, "the body is still streaming");
    svc.ready().await.unwrap();
    let refused = svc.call(h2()).await;
    assert!(is_overflow(&refused, Overflow::Requests), "{refused:?}");
    drop(tx);
    while let Some(frame) = body.frame().await {
        frame.unwrap();
    }
    assert_eq!(breaker.stats().active, 0, "released when the body ended");
}

#[tokio::test]
async fn a_dropped_streaming_body_releases_its_slot() {
    let (_svc, breaker, rsp, _tx) = one_streaming_response().await;
    assert_eq!(breaker.stats().active, 1);
    drop(rsp);
    assert_eq!(breaker.stats().active, 0);
}
