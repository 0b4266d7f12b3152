use super::*;

#[test]
fn http1_round_trips_through_the_mesh_form() {
    let mut req = Request::builder()
        .method("POST")
        .uri("/a/b?c=d")
        .version(Version::HTTP_11)
        .header("host", "reviews:9080")
        .header("connection", "keep-alive, x-custom")
        .header("x-custom", "hop")
        .header("te", "trailers")
        .header("keep-alive", "timeout=5")
        .header("transfer-encoding", "chunked")
        .body(())
        .unwrap();
    to_mesh(
        &mut req,
        &HeaderValue::from(9080u16),
        "reviews.default.svc.cluster.local",
    );
    assert_eq!(req.version(), Version::HTTP_2);
    assert_eq!(req.uri().to_string(), "http://reviews:9080/a/b?c=d");
    assert!(req.headers().get("host").is_none());
    assert!(req.headers().get("x-custom").is_none());
    assert!(req.headers().get("keep-alive").is_none());
    assert!(req.headers().get("transfer-encoding").is_none());
    assert_eq!(req.headers()["te"], "trailers");
    assert_eq!(req.headers()[&ORIG_PROTO], "HTTP/1.1");

    assert_eq!(from_mesh(&mut req), Some(9080));
    assert_eq!(req.version(), Version::HTTP_11);
    assert_eq!(req.headers()["host"], "reviews:9080");
    assert!(req.headers().get(&ORIG_PROTO).is_none());
    assert!(req.headers().get(&DST_PORT).is_none());
    set_origin(&mut req);
    assert_eq!(req.uri().to_string(), "/a/b?c=d");
    assert_eq!(req.headers()["host"], "reviews:9080");

    // An absolute URI without Host: the authority moves to Host.
    let mut req = Request::builder()
        .uri("http://ratings:9080/x?y=1")
        .body(())
        .unwrap();
    set_origin(&mut req);
    assert_eq!(req.uri().to_string(), "/x?y=1");
    assert_eq!(req.headers()["host"], "ratings:9080");
}

#[test]
fn http2_requests_keep_their_authority() {
    let mut req = Request::builder()
        .uri("http://grpc.example:50051/pkg.Svc/Call")
        .version(Version::HTTP_2)
        .body(())
        .unwrap();
    to_mesh(&mut req, &HeaderValue::from(50051u16), "x");
    assert!(req.headers().get(&ORIG_PROTO).is_none());
    assert_eq!(from_mesh(&mut req), Some(50051));
    assert_eq!(req.version(), Version::HTTP_2);
    set_origin(&mut req);
    assert_eq!(req.uri().authority().unwrap(), "grpc.example:50051");
}

#[test]
fn http1_without_host_uses_the_service_name() {
    let mut req = Request::builder()
        .uri("/")
        .version(Version::HTTP_10)
        .body(())
        .unwrap();
    to_mesh(
        &mut req,
        &HeaderValue::from(80u16),
        "web.shop.svc.cluster.local",
    );
    assert_eq!(req.uri().host(), Some("web.shop.svc.cluster.local"));
    assert_eq!(req.headers()[&ORIG_PROTO], "HTTP/1.0");
    from_mesh(&mut req);
    assert_eq!(req.version(), Version::HTTP_10);
}

#[test]
fn bogus_target_ports_are_ignored() {
    for v in ["0", "70000", "x"] {
        let mut req = Request::builder().header(&DST_PORT, v).body(()).unwrap();
        assert_eq!(from_mesh(&mut req), None, "{v}");
    }
}

#[test]
fn errors_map_to_envoy_style_flags() {
    let rsp = ProxyError::NoEndpoints("a".into()).into_response();
    assert_eq!(rsp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(rsp.headers()[&RESPONSE_FLAGS], "UH");
}

#[test]
fn check_host_refuses_hosts_that_name_no_destination() {
    let req = |hosts: &[&str]| {
        let mut b = Request::builder().uri("/").version(Version::HTTP_11);
        for h in hosts {
            b = b.header("host", *h);
        }
        b.body(()).unwrap()
    };
    for ok in [
        &[][..],
        &[""],
        &["reviews"],
        &["reviews:9080"],
        &["198.19.0.1:80"],
        &["[fd00::1]:80"],
    ] {
        assert!(check_host(&req(ok)).is_ok(), "{ok:?}");
    }
    for bad in [
        &["bad host"][..],
        &["a:99999"],
        &["user@reviews"],
        &["a", "b"],
        &["reviews:"],
    ] {
        let e = check_host(&req(bad)).unwrap_err();
        assert_eq!(
            e.status_and_flag(),
            (StatusCode::BAD_REQUEST, "DPE"),
            "{bad:?}"
        );
    }
    let e = check_host(&req(&["bad host"])).unwrap_err().to_string();
    assert_eq!(
        e,
        r#"bad request: Host header "bad host" is not a valid host[:port]"#
    );
}
