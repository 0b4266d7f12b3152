use super::*;
use tower::{Layer, Service, ServiceExt};

const FIELD: &str = "services[0].trafficPolicy.outlierDetection";

fn addr(n: u8) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, n], 8080))
}

fn pb_duration(secs: i64) -> Option<pbjson_types::Duration> {
    Some(pbjson_types::Duration {
        seconds: secs,
        nanos: 0,
    })
}

/// A detector over endpoints 10.0.0.1..=n and their handles.
fn detector(settings: Settings, n: u8) -> (Detector, Vec<Endpoint>) {
    let d = Detector::new(settings);
    let addrs: Vec<_> = (1..=n).map(addr).collect();
    d.update_endpoints(&addrs);
    let eps = addrs.iter().filter_map(|a| d.endpoint(*a)).collect();
    (d, eps)
}

fn fail(ep: &Endpoint, code: u16, times: usize) {
    for _ in 0..times {
        ep.record(Outcome::Status(StatusCode::from_u16(code).unwrap()));
    }
}

fn health(d: &Detector, a: SocketAddr) -> EndpointHealth {
    d.snapshot().into_iter().find(|h| h.addr == a).unwrap()
}

/// Lets the test's clock reach `t` (paused time), running the sweep task on the way.
async fn at(t: Instant) {
    tokio::time::sleep_until(t).await;
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

// --- settings ---

#[test]
fn an_empty_block_takes_istios_defaults() {
    let s = Settings::from_proto(FIELD, &pb::OutlierDetection::default()).unwrap();
    assert_eq!(s.consecutive_5xx, 5);
    assert_eq!(s.consecutive_gateway, 0);
    assert!(!s.split_local_origin);
    assert_eq!(s.consecutive_local_origin, 0);
    assert_eq!(s.interval, Duration::from_secs(10));
    assert_eq!(s.base_ejection_time, Duration::from_secs(30));
    assert_eq!(s.max_ejection_percent, 10);
    assert_eq!(s.min_health_percent, 0);
    assert_eq!(s, Settings::default());
}

#[test]
fn every_field_is_read() {
    let od = pb::OutlierDetection {
        consecutive_5xx_errors: Some(0),
        consecutive_gateway_errors: Some(3),
        split_external_local_origin_errors: true,
        consecutive_local_origin_failures: Some(7),
        interval: pb_duration(2),
        base_ejection_time: pb_duration(4),
        max_ejection_percent: Some(50),
        min_health_percent: 25,
    };
    let s = Settings::from_proto(FIELD, &od).unwrap();
    assert_eq!(
        s,
        Settings {
            consecutive_5xx: 0,
            consecutive_gateway: 3,
            split_local_origin: true,
            consecutive_local_origin: 7,
            interval: Duration::from_secs(2),
            base_ejection_time: Duration::from_secs(4),
            max_ejection_percent: 50,
            min_health_percent: 25,
        }
    );
}

#[test]
fn split_without_a_local_origin_threshold_defaults_to_5() {
    let od = pb::OutlierDetection {
        split_external_local_origin_errors: true,
        ..Default::default()
    };
    let s = Settings::from_proto(FIELD, &od).unwrap();
    assert_eq!(s.consecutive_local_origin, 5);
}

#[test]
fn max_ejection_percent_zero_keeps_the_default_as_istio_does() {
    let od = pb::OutlierDetection {
        max_ejection_percent: Some(0),
        ..Default::default()
    };
    let s = Settings::from_proto(FIELD, &od).unwrap();
    assert_eq!(s.max_ejection_percent, 10);
}

#[test]
fn invalid_fields_are_named() {
    let cases = [
        (
            pb::OutlierDetection {
                interval: pb_duration(0),
                ..Default::default()
            },
            "interval",
        ),
        (
            pb::OutlierDetection {
                base_ejection_time: pb_duration(-1),
                ..Default::default()
            },
            "baseEjectionTime",
        ),
        (
            pb::OutlierDetection {
                max_ejection_percent: Some(101),
                ..Default::default()
            },
            "maxEjectionPercent",
        ),
        (
            pb::OutlierDetection {
                min_health_percent: 150,
                ..Default::default()
            },
            "minHealthPercent",
        ),
        (
            pb::OutlierDetection {
                consecutive_local_origin_failures: Some(3),
                ..Default::default()
            },
            "consecutiveLocalOriginFailures",
        ),
    ];
    for (od, name) in cases {
        match Settings::from_proto(FIELD, &od) {
            Err(ConfigError::Invalid { field, .. }) => assert_eq!(field, format!("{FIELD}.{name}")),
            other => panic!("{name}: expected an error, got {other:?}"),
        }
    }
}

#[test]
fn ejection_time_is_base_times_multiplier_capped_at_300s() {
    let s = Settings {
        base_ejection_time: Duration::from_secs(200),
        ..Settings::default()
    };
    assert_eq!(s.ejection_time(1), Duration::from_secs(200));
    assert_eq!(s.ejection_time(2), Duration::from_secs(300));
    assert_eq!(s.ejection_time(9), Duration::from_secs(300));
    // Envoy never caps below the base.
    let long = Settings {
        base_ejection_time: Duration::from_secs(400),
        ..Settings::default()
    };
    assert_eq!(long.ejection_time(3), Duration::from_secs(400));
}

// --- detectors ---

fn lenient() -> Settings {
    Settings {
        max_ejection_percent: 100,
        ..Settings::default()
    }
}

#[tokio::test(start_paused = true)]
async fn ejects_endpoint_inline_at_exactly_the_nth_consecutive_5xx() {
    let (d, eps) = detector(lenient(), 2);
    fail(&eps[0], 500, 4);
    assert!(!eps[0].is_ejected());
    assert_eq!(health(&d, addr(1)).consecutive_5xx, 4);
    fail(&eps[0], 500, 1);
    assert!(
        eps[0].is_ejected(),
        "the 5th 5xx ejects, without waiting for a sweep"
    );
    assert!(d.is_ejected(&addr(1)));
    assert!(!d.is_ejected(&addr(2)));
    let stats = d.stats();
    assert_eq!(stats.ejections_consecutive_5xx, 1);
    assert_eq!(stats.ejections_total, 1);
    assert_eq!(stats.ejected, 1);
}

#[tokio::test(start_paused = true)]
async fn a_success_resets_the_consecutive_count() {
    let (_d, eps) = detector(lenient(), 2);
    fail(&eps[0], 503, 4);
    fail(&eps[0], 200, 1);
    fail(&eps[0], 503, 4);
    assert!(!eps[0].is_ejected());
    fail(&eps[0], 404, 1); // a 4xx is a success for outlier detection
    fail(&eps[0], 503, 4);
    assert!(!eps[0].is_ejected());
    fail(&eps[0], 503, 1);
    assert!(eps[0].is_ejected());
}

#[tokio::test(start_paused = true)]
async fn zero_consecutive_5xx_disables_that_detector() {
    let s = Settings {
        consecutive_5xx: 0,
        ..lenient()
    };
    let (d, eps) = detector(s, 2);
    fail(&eps[0], 500, 50);
    assert!(!eps[0].is_ejected());
    assert_eq!(d.stats().ejections_total, 0);
}

#[tokio::test(start_paused = true)]
async fn gateway_errors_eject_at_their_own_threshold() {
    let s = Settings {
        consecutive_gateway: 3,
        ..lenient()
    };
    let (d, eps) = detector(s, 2);
    fail(&eps[0], 502, 1);
    fail(&eps[0], 504, 1);
    assert!(!eps[0].is_ejected());
    fail(&eps[0], 503, 1);
    assert!(eps[0].is_ejected());
    assert_eq!(d.stats().ejections_consecutive_gateway, 1);
    assert_eq!(d.stats().ejections_consecutive_5xx, 0);
}

#[tokio::test(start_paused = true)]
async fn a_non_gateway_5xx_breaks_a_gateway_run_but_not_a_5xx_run() {
    let s = Settings {
        consecutive_gateway: 3,
        consecutive_5xx: 5,
        ..lenient()
    };
    let (d, eps) = detector(s, 2);
    fail(&eps[0], 503, 2);
    fail(&eps[0], 500, 1);
    fail(&eps[0], 503, 1);
    assert!(
        !eps[0].is_ejected(),
        "503 503 500 503 is not 3 gateway errors in a row"
    );
    fail(&eps[0], 503, 1);
    assert!(eps[0].is_ejected(), "but it is the 5th 5xx in a row");
    assert_eq!(d.stats().ejections_consecutive_5xx, 1);
}

#[tokio::test(start_paused = true)]
async fn unsplit_local_origin_failures_count_as_5xx_and_gateway() {
    let s = Settings {
        consecutive_gateway: 3,
        ..lenient()
    };
    let (d, eps) = detector(s, 2);
    eps[0].record(Outcome::LocalOriginFailure);
    eps[0].record(Outcome::LocalOriginFailure);
    assert_eq!(health(&d, addr(1)).consecutive_5xx, 2);
    eps[0].record(Outcome::LocalOriginFailure);
    assert!(eps[0].is_ejected());
    assert_eq!(d.stats().ejections_consecutive_gateway, 1);
}

#[tokio::test(start_paused = true)]
async fn split_local_origin_failures_count_only_toward_their_own_threshold() {
    let s = Settings {
        consecutive_5xx: 2,
        split_local_origin: true,
        consecutive_local_origin: 3,
        ..lenient()
    };
    let (d, eps) = detector(s, 2);
    eps[0].record(Outcome::LocalOriginFailure);
    eps[0].record(Outcome::LocalOriginFailure);
    assert!(
        !eps[0].is_ejected(),
        "unsplit, two would reach consecutive5xx"
    );
    assert_eq!(health(&d, addr(1)).consecutive_5xx, 0);
    // Any response means the connection worked: the local-origin run is broken.
    fail(&eps[0], 500, 1);
    eps[0].record(Outcome::LocalOriginFailure);
    eps[0].record(Outcome::LocalOriginFailure);
    assert!(!eps[0].is_ejected());
    eps[0].record(Outcome::LocalOriginFailure);
    assert!(eps[0].is_ejected());
    assert_eq!(d.stats().ejections_consecutive_local_origin, 1);
}

#[tokio::test(start_paused = true)]
async fn a_reset_counts_as_a_503() {
    let s = Settings {
        consecutive_gateway: 2,
        ..lenient()
    };
    let (d, eps) = detector(s, 2);
    eps[0].record(Outcome::Reset);
    assert_eq!(health(&d, addr(1)).consecutive_5xx, 1);
    eps[0].record(Outcome::Reset);
    assert!(eps[0].is_ejected());
    assert_eq!(d.stats().ejections_consecutive_gateway, 1);
}

#[tokio::test(start_paused = true)]
async fn timeouts_count_as_504_unsplit_and_as_local_origin_split() {
    let s = Settings {
        consecutive_gateway: 2,
        ..lenient()
    };
    let (d, eps) = detector(s, 2);
    eps[0].record(Outcome::Timeout);
    eps[0].record(Outcome::Timeout);
    assert!(eps[0].is_ejected());
    assert_eq!(d.stats().ejections_consecutive_gateway, 1);

    let split = Settings {
        split_local_origin: true,
        consecutive_local_origin: 2,
        ..lenient()
    };
    let (d, eps) = detector(split, 2);
    eps[0].record(Outcome::Timeout);
    assert_eq!(health(&d, addr(1)).consecutive_5xx, 0);
    eps[0].record(Outcome::Timeout);
    assert_eq!(d.stats().ejections_consecutive_local_origin, 1);
}

#[tokio::test(start_paused = true)]
async fn a_tcp_connection_made_resets_the_counts() {
    let (d, eps) = detector(lenient(), 2);
    for _ in 0..4 {
        eps[0].record(Outcome::LocalOriginFailure);
    }
    eps[0].record(Outcome::Connected);
    assert_eq!(health(&d, addr(1)).consecutive_5xx, 0);
    for _ in 0..4 {
        eps[0].record(Outcome::LocalOriginFailure);
    }
    assert!(!eps[0].is_ejected());
}

#[tokio::test(start_paused = true)]
async fn an_ejection_lasts_until_the_first_sweep_after_it_expires() {
    // Sweeps at t0+10, 20, 30, 40, ...; ejected at t0+5 for 30s: expires at 35, ends at 40.
    let t0 = Instant::now();
    let (d, eps) = detector(lenient(), 2);
    at(t0 + secs(5.0)).await;
    fail(&eps[0], 500, 5);
    assert!(eps[0].is_ejected());
    assert_eq!(
        health(&d, addr(1)).ejected_for,
        Some(Duration::from_secs(30))
    );
    at(t0 + secs(39.5)).await;
    assert!(eps[0].is_ejected(), "expired at 35 but no sweep since");
    assert_eq!(health(&d, addr(1)).ejected_for, Some(Duration::ZERO));
    at(t0 + secs(40.5)).await;
    assert!(!eps[0].is_ejected(), "the sweep at 40 returns it");
    assert_eq!(d.stats().ejected, 0);
}

#[tokio::test(start_paused = true)]
async fn a_second_ejection_lasts_twice_the_base() {
    let t0 = Instant::now();
    let (d, eps) = detector(lenient(), 2);
    fail(&eps[0], 500, 5); // ejected at 0 for 30s, back at the sweep at 30
    at(t0 + secs(30.5)).await;
    assert!(!eps[0].is_ejected());
    fail(&eps[0], 500, 5); // ejected at 30.5 for 60s: expires at 90.5, back at 100
    let h = health(&d, addr(1));
    assert_eq!(h.times_ejected, 2);
    assert_eq!(h.ejections, 2);
    assert_eq!(h.ejected_for, Some(Duration::from_secs(60)));
    at(t0 + secs(99.5)).await;
    assert!(
        eps[0].is_ejected(),
        "a 1x ejection would have ended at the sweep at 70"
    );
    at(t0 + secs(100.5)).await;
    assert!(!eps[0].is_ejected());
}

#[tokio::test(start_paused = true)]
async fn ejection_time_stops_growing_at_300s() {
    let t0 = Instant::now();
    let s = Settings {
        base_ejection_time: Duration::from_secs(200),
        interval: Duration::from_secs(1),
        ..lenient()
    };
    let (d, eps) = detector(s, 2);
    fail(&eps[0], 500, 5);
    at(t0 + secs(200.5)).await;
    assert!(!eps[0].is_ejected());
    fail(&eps[0], 500, 5);
    assert_eq!(
        health(&d, addr(1)).ejected_for,
        Some(Duration::from_secs(300))
    );
    at(t0 + secs(501.5)).await;
    assert!(!eps[0].is_ejected());
    fail(&eps[0], 500, 5);
    // No healthy sweep in between: still capped, not 3 × 200s.
    assert_eq!(
        health(&d, addr(1)).ejected_for,
        Some(Duration::from_secs(300))
    );
}

#[tokio::test(start_paused = true)]
async fn the_multiplier_goes_down_after_healthy_sweeps() {
    let t0 = Instant::now();
    let (d, eps) = detector(lenient(), 2);
    fail(&eps[0], 500, 5); // back at the sweep at 30
    at(t0 + secs(35.0)).await;
    assert_eq!(health(&d, addr(1)).times_ejected, 1);
    at(t0 + secs(40.5)).await; // the sweep at 40 finds it healthy
    assert_eq!(health(&d, addr(1)).times_ejected, 0);
    fail(&eps[0], 500, 5);
    assert_eq!(
        health(&d, addr(1)).ejected_for,
        Some(Duration::from_secs(30)),
        "a 1x ejection again, not 2x"
    );
}

#[tokio::test(start_paused = true)]
async fn max_ejection_percent_limits_how_many_are_ejected() {
    let s = Settings {
        max_ejection_percent: 20,
        ..Settings::default()
    };
    let (d, eps) = detector(s, 10);
    for ep in &eps[..3] {
        fail(ep, 500, 5);
    }
    assert!(eps[0].is_ejected());
    assert!(eps[1].is_ejected());
    assert!(!eps[2].is_ejected(), "a third would be 30% > 20%");
    assert_eq!(d.stats().ejected, 2);
    assert_eq!(d.stats().ejections_overflow, 1);
}

#[tokio::test(start_paused = true)]
async fn one_endpoint_may_always_be_ejected() {
    // 1 of 3 is 33% > 10%, allowed because none is ejected yet; a second is not.
    let (d, eps) = detector(Settings::default(), 3);
    fail(&eps[0], 500, 5);
    fail(&eps[1], 500, 5);
    assert!(eps[0].is_ejected());
    assert!(!eps[1].is_ejected());
    assert_eq!(d.stats().ejections_overflow, 1);
}

#[tokio::test(start_paused = true)]
async fn all_ejected_without_panic_leaves_no_healthy_endpoint() {
    let (d, eps) = detector(lenient(), 2);
    assert_eq!(d.candidates(), Candidates::All);
    fail(&eps[0], 500, 5);
    assert_eq!(d.candidates(), Candidates::Healthy);
    fail(&eps[1], 500, 5);
    assert_eq!(d.candidates(), Candidates::NoHealthy);
    assert!(!d.panic());
}

#[tokio::test(start_paused = true)]
async fn below_min_health_percent_the_balancer_ignores_ejection() {
    let s = Settings {
        min_health_percent: 50,
        ..lenient()
    };
    let (d, eps) = detector(s, 4);
    fail(&eps[0], 500, 5);
    fail(&eps[1], 500, 5);
    assert_eq!(
        d.candidates(),
        Candidates::Healthy,
        "50% healthy is not below 50%"
    );
    assert!(!d.panic());
    fail(&eps[2], 500, 5);
    assert!(d.panic(), "25% healthy");
    assert_eq!(d.candidates(), Candidates::All);
    fail(&eps[3], 500, 5);
    assert_eq!(d.candidates(), Candidates::All, "panic, not 503 UH");
}

#[tokio::test(start_paused = true)]
async fn state_survives_an_endpoint_update() {
    let (d, eps) = detector(lenient(), 3);
    fail(&eps[0], 500, 5);
    fail(&eps[1], 500, 3);
    d.update_endpoints(&[addr(1), addr(2), addr(4)]);
    assert!(d.is_ejected(&addr(1)));
    assert_eq!(health(&d, addr(2)).consecutive_5xx, 3);
    assert_eq!(d.stats().endpoints, 3);
    assert!(d.endpoint(addr(3)).is_none());
    // The handle the endpoint layer already holds still counts toward the same state.
    fail(&eps[1], 500, 2);
    assert!(d.is_ejected(&addr(2)));
    // A removed endpoint's handle cannot eject anything.
    fail(&eps[2], 500, 5);
    assert_eq!(d.stats().ejected, 2);
    // Removing an ejected endpoint takes it out of the count.
    d.update_endpoints(&[addr(2), addr(4)]);
    assert_eq!(d.stats().ejected, 1);
    assert_eq!(d.candidates(), Candidates::Healthy);
}

#[tokio::test(start_paused = true)]
async fn new_settings_keep_ejections_and_counts() {
    let (d, eps) = detector(lenient(), 2);
    fail(&eps[0], 500, 5);
    fail(&eps[1], 500, 2);
    d.update_settings(Settings {
        consecutive_5xx: 3,
        ..lenient()
    });
    assert!(eps[0].is_ejected());
    fail(&eps[1], 500, 1);
    assert!(
        eps[1].is_ejected(),
        "2 before the push + 1 after reach the new threshold 3"
    );
}

#[tokio::test(start_paused = true)]
async fn the_sweep_task_ends_with_the_detector() {
    let metrics = tokio::runtime::Handle::current().metrics();
    let before = metrics.num_alive_tasks();
    let d = Detector::new(Settings::default());
    assert_eq!(metrics.num_alive_tasks(), before + 1);
    drop(d);
    tokio::task::yield_now().await;
    assert_eq!(metrics.num_alive_tasks(), before);
}

// --- the layer ---

/// What the mock endpoint does with a request.
#[derive(Clone, Copy)]
enum Plan {
    Status(u16),
    Refused,
    Reset,
    ClientBodyBroke,
}

fn endpoint_service() -> impl Service<
    Request<Plan>,
    Response = Response<()>,
    Error = ProxyError,
    Future = impl Future<Output = Result<Response<()>, ProxyError>>,
> + Clone {
    tower::service_fn(|req: Request<Plan>| async move {
        match *req.body() {
            Plan::Status(code) => {
                let mut rsp = Response::new(());
                *rsp.status_mut() = StatusCode::from_u16(code).unwrap();
                Ok(rsp)
            }
            Plan::Refused => Err(ProxyError::Connect {
                addr: addr(1),
                source: std::io::ErrorKind::ConnectionRefused.into(),
            }),
            Plan::Reset => Err(ProxyError::Upstream("stream reset".into())),
            Plan::ClientBodyBroke => Err(ProxyError::Downstream("cut short".into())),
        }
    })
}

async fn send(svc: &mut (impl Service<Request<Plan>, Error = ProxyError> + Clone), plan: Plan) {
    let _ = svc
        .ready()
        .await
        .unwrap_or_else(|_| unreachable!())
        .call(Request::new(plan))
        .await;
}

#[tokio::test(start_paused = true)]
async fn the_layer_records_statuses_connect_failures_and_resets() {
    let (d, eps) = detector(lenient(), 2);
    let mut svc = OutlierLayer::new(eps[0].clone()).layer(endpoint_service());
    send(&mut svc, Plan::Status(503)).await;
    send(&mut svc, Plan::Refused).await;
    send(&mut svc, Plan::Reset).await;
    assert_eq!(health(&d, addr(1)).consecutive_5xx, 3);
    send(&mut svc, Plan::Status(200)).await;
    assert_eq!(health(&d, addr(1)).consecutive_5xx, 0);
    for _ in 0..5 {
        send(&mut svc, Plan::Status(500)).await;
    }
    assert!(eps[0].is_ejected());
}

#[tokio::test(start_paused = true)]
async fn the_layer_does_not_blame_the_endpoint_for_the_clients_body() {
    let (d, eps) = detector(lenient(), 2);
    let mut svc = OutlierLayer::new(eps[0].clone()).layer(endpoint_service());
    for _ in 0..10 {
        send(&mut svc, Plan::ClientBodyBroke).await;
    }
    assert_eq!(health(&d, addr(1)).consecutive_5xx, 0);
    assert!(!eps[0].is_ejected());
}
