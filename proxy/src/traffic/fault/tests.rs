use super::*;
use crate::traffic::test_util::*;
use tokio::time::Instant;

type Req = Request<()>;

fn policy(delay: Option<(u64, f64)>, abort: Option<(u32, &str, f64)>) -> Arc<FaultPolicy> {
    let f = pb::Fault {
        delay: delay.map(|(ms, p)| pb::FaultDelay {
            fixed_delay: Some(dur(ms)),
            percentage: p,
        }),
        abort: abort.map(|(http, grpc, p)| pb::FaultAbort {
            http_status: http,
            grpc_status: grpc.into(),
            percentage: p,
        }),
    };
    Arc::new(FaultPolicy::from_proto("f", Some(&f)).unwrap().unwrap())
}

fn request() -> Req {
    Request::new(())
}

#[tokio::test(start_paused = true)]
async fn delay_at_100_percent_holds_the_request_for_fixed_delay_and_flags_di() {
    let (svc, mut handle) = mock::<()>();
    let svc = Fault::new(Some(policy(Some((300, 100.0)), None)), svc);
    let start = Instant::now();
    let task = tokio::spawn(svc.oneshot(request()));
    let (_, send) = handle.next_request().await.unwrap();
    assert_eq!(Instant::now() - start, Duration::from_millis(300));
    send.send_response(rsp(200));
    let rsp = task.await.unwrap().unwrap();
    assert_eq!(
        rsp.extensions().get::<ResponseFlags>(),
        Some(&ResponseFlags::DI)
    );
}

#[tokio::test(start_paused = true)]
async fn delay_at_0_percent_never_delays() {
    let (svc, mut handle) = mock::<()>();
    let svc = Fault::new(Some(policy(Some((300, 0.0)), None)), svc);
    for _ in 0..100 {
        let start = Instant::now();
        let task = tokio::spawn(svc.clone().oneshot(request()));
        let (_, send) = handle.next_request().await.unwrap();
        assert_eq!(Instant::now(), start);
        send.send_response(rsp(200));
        assert!(
            task.await
                .unwrap()
                .unwrap()
                .extensions()
                .get::<ResponseFlags>()
                .is_none()
        );
    }
}

#[tokio::test(start_paused = true)]
async fn delay_on_an_error_is_flagged_on_the_error() {
    let (svc, mut handle) = mock::<()>();
    let svc = Fault::new(Some(policy(Some((10, 100.0)), None)), svc);
    let task = tokio::spawn(svc.oneshot(request()));
    handle
        .next_request()
        .await
        .unwrap()
        .1
        .send_error(connect_err());
    let err = task.await.unwrap().unwrap_err();
    assert_eq!(err.added_flags(), ResponseFlags::DI);
    assert_eq!(
        err.status_and_flag().1,
        "UF",
        "the error's own flag is kept"
    );
}

#[tokio::test(start_paused = true)]
async fn http_abort_at_100_percent_answers_without_calling_upstream() {
    let (svc, mut handle) = mock::<()>();
    let svc = Fault::new(Some(policy(None, Some((418, "", 100.0)))), svc);
    let err = svc.oneshot(request()).await.unwrap_err();
    assert!(matches!(err, ProxyError::FaultAbort(s) if s == StatusCode::IM_A_TEAPOT));
    assert_eq!(err.status_and_flag(), (StatusCode::IM_A_TEAPOT, "FI"));
    assert!(handle.next_request().await.is_none(), "upstream was called");
}

#[tokio::test(start_paused = true)]
async fn grpc_abort_answers_a_trailers_only_response_with_the_status() {
    let (svc, mut handle) = mock::<()>();
    let svc = Fault::new(Some(policy(None, Some((0, "UNAVAILABLE", 100.0)))), svc);
    let rsp = svc.oneshot(request()).await.unwrap();
    assert_eq!(rsp.status(), 200);
    assert_eq!(rsp.headers()["grpc-status"], "14");
    assert_eq!(rsp.headers()["content-type"], "application/grpc");
    assert_eq!(
        rsp.extensions().get::<ResponseFlags>(),
        Some(&ResponseFlags::FI)
    );
    assert!(handle.next_request().await.is_none(), "upstream was called");
}

#[tokio::test(start_paused = true)]
async fn abort_at_0_percent_never_aborts() {
    let (svc, mut handle) = mock::<()>();
    let svc = Fault::new(Some(policy(None, Some((503, "", 0.0)))), svc);
    for _ in 0..100 {
        let task = tokio::spawn(svc.clone().oneshot(request()));
        handle
            .next_request()
            .await
            .unwrap()
            .1
            .send_response(rsp(200));
        assert_eq!(task.await.unwrap().unwrap().status(), 200);
    }
}

#[tokio::test(start_paused = true)]
async fn delay_then_abort_both_apply() {
    let (svc, mut handle) = mock::<()>();
    let svc = Fault::new(Some(policy(Some((50, 100.0)), Some((503, "", 100.0)))), svc);
    let start = Instant::now();
    let err = svc.oneshot(request()).await.unwrap_err();
    assert_eq!(Instant::now() - start, Duration::from_millis(50));
    assert!(matches!(err.root(), ProxyError::FaultAbort(_)));
    assert_eq!(
        err.status_and_flag(),
        (StatusCode::SERVICE_UNAVAILABLE, "FI")
    );
    assert_eq!(err.added_flags(), ResponseFlags::DI);
    assert!(handle.next_request().await.is_none());
}

#[test]
fn fractional_percentages_hit_their_share_of_a_seeded_sample() {
    let p = Percent::from_proto("p", 12.5).unwrap();
    let mut rng = fastrand::Rng::with_seed(42);
    let n = 200_000;
    let hits = (0..n).filter(|_| p.sample(&mut rng)).count();
    // Seeded: the count is fixed; the bound says it is the requested share (± 0.5 %).
    assert!((24_000..=26_000).contains(&hits), "{hits}");
    let tiny = Percent::from_proto("p", 0.0001).unwrap();
    assert_eq!(tiny, Percent(1));
    assert!((0..n).all(|_| !Percent::NONE.sample(&mut rng)));
    assert!((0..n).all(|_| Percent::ALL.sample(&mut rng)));
}

#[test]
fn invalid_faults_name_the_field() {
    let err = |f: pb::Fault| {
        FaultPolicy::from_proto("services[0].http[0].fault", Some(&f))
            .unwrap_err()
            .to_string()
    };
    let e = err(pb::Fault {
        delay: Some(pb::FaultDelay {
            fixed_delay: Some(dur(10)),
            percentage: 101.0,
        }),
        abort: None,
    });
    assert!(
        e.starts_with("services[0].http[0].fault.delay.percentage:"),
        "{e}"
    );
    let e = err(pb::Fault {
        delay: Some(pb::FaultDelay {
            fixed_delay: None,
            percentage: 1.0,
        }),
        abort: None,
    });
    assert!(
        e.starts_with("services[0].http[0].fault.delay.fixedDelay:"),
        "{e}"
    );
    let e = err(pb::Fault {
        delay: None,
        abort: Some(pb::FaultAbort {
            http_status: 99,
            grpc_status: String::new(),
            percentage: 1.0,
        }),
    });
    assert!(
        e.starts_with("services[0].http[0].fault.abort.httpStatus:"),
        "{e}"
    );
    let e = err(pb::Fault {
        delay: None,
        abort: Some(pb::FaultAbort {
            http_status: 0,
            grpc_status: "SOMETIMES".into(),
            percentage: 1.0,
        }),
    });
    assert!(
        e.starts_with("services[0].http[0].fault.abort.grpcStatus:"),
        "{e}"
    );
    assert_eq!(FaultPolicy::from_proto("f", None).unwrap(), None);
    assert_eq!(sinew_proto::grpc::status_code("unavailable"), Some(14));
    assert_eq!(sinew_proto::grpc::status_code("8"), Some(8));
}
