use super::*;
use crate::http::Overflow;
use http::StatusCode;
use http_body_util::BodyExt;
use std::time::Duration;
use tower::{Service, ServiceExt};

async fn body(rsp: Response<Body>) -> String {
    let bytes = rsp
        .into_body()
        .collect()
        .await
        .expect("full body")
        .to_bytes();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn addr() -> std::net::SocketAddr {
    "10.0.0.1:80".parse().expect("test address")
}

#[tokio::test]
async fn each_error_gets_envoys_status_flag_and_body() {
    let reset = "upstream connect error or disconnect/reset before headers. reset reason: ";
    let cases: Vec<(ProxyError, u16, &str, &str)> = vec![
        (
            ProxyError::NoEndpoints("a".into()),
            503,
            "UH",
            "no healthy upstream",
        ),
        (
            ProxyError::NoHealthy("a".into()),
            503,
            "UH",
            "no healthy upstream",
        ),
        (
            ProxyError::Timeout(Duration::from_millis(500)),
            504,
            "UT",
            "upstream request timeout",
        ),
        (
            ProxyError::Overflow {
                service: "a".into(),
                limit: Overflow::Pending,
            },
            503,
            "UO",
            "overflow",
        ),
        (
            ProxyError::Connect {
                addr: addr(),
                source: std::io::ErrorKind::ConnectionRefused.into(),
            },
            503,
            "UF",
            "connection failure",
        ),
        (
            ProxyError::ConnectTimeout {
                addr: addr(),
                timeout: Duration::from_secs(10),
            },
            503,
            "UF",
            "connection failure",
        ),
        (
            ProxyError::Upstream("reset".into()),
            503,
            "UC",
            "connection termination",
        ),
        (ProxyError::NoRoute("x".into()), 404, "NR", ""),
        (ProxyError::UnknownDestination("x".into()), 503, "NR", ""),
        (
            ProxyError::FaultAbort(StatusCode::IM_A_TEAPOT),
            418,
            "FI",
            "fault filter abort",
        ),
        (
            ProxyError::BadHost("more than one Host header".into()),
            400,
            "DPE",
            "more than one Host header",
        ),
    ];
    for (e, status, flag, text) in cases {
        let shown = e.to_string();
        let rsp = render(&e);
        assert_eq!(rsp.status().as_u16(), status, "{shown}");
        assert_eq!(rsp.headers()[&RESPONSE_FLAGS], flag, "{shown}");
        assert_eq!(
            rsp.extensions().get::<ResponseFlags>().copied(),
            ResponseFlags::from_name(flag),
            "{shown}"
        );
        assert_eq!(
            rsp.headers().contains_key(&X_ENVOY_OVERLOADED),
            flag == "UO",
            "{shown}"
        );
        let b = body(rsp).await;
        if flag == "UF" || flag == "UC" || flag == "UO" {
            assert!(b.starts_with(reset), "{shown}: {b}");
        }
        if text.is_empty() {
            assert!(b.is_empty(), "{shown}: {b}");
        } else {
            assert!(b.contains(text), "{shown}: {b}");
        }
    }
}

#[tokio::test]
async fn a_tls_failure_says_why_in_the_body() {
    let e = ProxyError::Tls {
        addr: addr(),
        reason: "expected spiffe://cluster.local/ns/default/sa/reviews".into(),
    };
    let b = body(render(&ProxyError::Shared(Arc::new(e)))).await;
    assert!(
        b.contains("connection failure, transport failure reason: mesh TLS"),
        "{b}"
    );
    assert!(
        b.contains("expected spiffe://cluster.local/ns/default/sa/reviews"),
        "{b}"
    );
}

#[tokio::test]
async fn the_layer_renders_errors_and_counts_every_request() {
    let metrics = Arc::new(Metrics::new());
    let (mock, mut handle) = tower_test::mock::pair::<Request<()>, Response<Body>>();
    let inner = mock.map_err(|e| match e.downcast::<ProxyError>() {
        Ok(e) => *e,
        Err(_) => ProxyError::NoTargetPort,
    });
    let mut svc =
        Errors::new(inner, Direction::Outbound, metrics.clone()).with_service("reviews".into());

    // A success passes through untouched, without flags.
    svc.ready().await.unwrap();
    let fut = svc.call(Request::new(()));
    let (_, send) = handle.next_request().await.unwrap();
    send.send_response(Response::new(crate::http::empty_body()));
    let rsp = fut.await.unwrap();
    assert_eq!(rsp.status(), StatusCode::OK);
    assert!(rsp.extensions().get::<ResponseFlags>().is_none());

    // An overflow and a timeout become responses and per-service counts.
    svc.ready().await.unwrap();
    let fut = svc.call(Request::new(()));
    let (_, send) = handle.next_request().await.unwrap();
    send.send_error(ProxyError::Overflow {
        service: "reviews".into(),
        limit: Overflow::Requests,
    });
    let rsp = fut.await.unwrap();
    assert_eq!(rsp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(rsp.headers()[&X_ENVOY_OVERLOADED], "true");

    let text = metrics.encode();
    for line in [
        r#"sinew_requests_total{direction="outbound",status_class="2xx"} 1"#,
        r#"sinew_requests_total{direction="outbound",status_class="5xx"} 1"#,
        r#"sinew_upstream_rq_overflow_total{service="reviews",kind="requests"} 1"#,
    ] {
        assert!(text.contains(line), "{line} in {text}");
    }
}

#[tokio::test]
async fn flags_set_below_are_rendered_with_the_errors_own() {
    let metrics = Arc::new(Metrics::new());
    let (mock, mut handle) = tower_test::mock::pair::<Request<()>, Response<Body>>();
    let inner = mock.map_err(|e| match e.downcast::<ProxyError>() {
        Ok(e) => *e,
        Err(_) => ProxyError::NoTargetPort,
    });
    let mut svc = Errors::new(inner, Direction::Outbound, metrics);
    svc.ready().await.unwrap();
    let fut = svc.call(Request::new(()));
    let (_req, send) = handle.next_request().await.unwrap();
    // A retry layer gave up: it flags URX on the last error and returns it.
    let refused = ProxyError::Connect {
        addr: addr(),
        source: std::io::ErrorKind::ConnectionRefused.into(),
    };
    send.send_error(refused.flag(ResponseFlags::URX));
    let rsp = fut.await.unwrap();
    assert_eq!(rsp.headers()[&RESPONSE_FLAGS], "UF,URX");
    let flags = rsp.extensions().get::<ResponseFlags>().copied().unwrap();
    assert!(flags.contains(ResponseFlags::UF) && flags.contains(ResponseFlags::URX));
}
