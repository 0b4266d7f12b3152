use super::*;
use crate::http::{Body, ProxyError};
use crate::traffic::budget::RetryBudget;
use crate::traffic::replay::{MAX_REPLAY_BYTES, ReplayBody};
use crate::traffic::test_util::*;
use crate::traffic::{PreviousHosts, ResponseFlags};
use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use pb::string_match::Kind;
use tower::ServiceExt;

const SVC: &str = "reviews.shop.svc.cluster.local:9080";

type B = Full<Bytes>;

fn exact(s: &str) -> Option<pb::StringMatch> {
    Some(pb::StringMatch {
        kind: Some(Kind::Exact(s.into())),
    })
}
fn prefix(s: &str) -> Option<pb::StringMatch> {
    Some(pb::StringMatch {
        kind: Some(Kind::Prefix(s.into())),
    })
}
fn regex(s: &str) -> Option<pb::StringMatch> {
    Some(pb::StringMatch {
        kind: Some(Kind::Regex(s.into())),
    })
}
fn sm(m: Option<pb::StringMatch>) -> pb::StringMatch {
    m.unwrap_or_default()
}

fn dest(subset: &str, weight: u32) -> pb::RouteDestination {
    pb::RouteDestination {
        subset: subset.into(),
        weight,
        ..Default::default()
    }
}

/// A route to subset `subset` with match blocks `matches`.
fn route(subset: &str, matches: Vec<pb::HttpMatch>) -> pb::HttpRoute {
    pb::HttpRoute {
        name: subset.into(),
        matches,
        destinations: vec![dest(subset, 0)],
        ..Default::default()
    }
}

fn table(routes: Vec<pb::HttpRoute>) -> RouteTable {
    RouteTable::from_proto("services[0].http", SVC, &routes).unwrap()
}

fn req(method: &str, uri: &str, headers: &[(&str, &str)]) -> Request<B> {
    let mut b = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Full::new(Bytes::new())).unwrap()
}

/// The subset (route name) the table picks for a request, or `None`.
fn routed(t: &RouteTable, r: &Request<B>) -> Option<String> {
    t.find(r).map(|(i, _)| t.routes()[i].name.to_string())
}

#[test]
fn no_routes_gives_the_default_route_to_this_service_with_istios_retries() {
    let t = RouteTable::from_proto("services[0].http", SVC, &[]).unwrap();
    assert_eq!(t.routes().len(), 1);
    let r = &t.routes()[0];
    assert_eq!(*r.retry, RetryPolicy::istio_default());
    assert_eq!(r.timeout, None);
    assert!(r.fault.is_none());
    let d = r.destinations();
    assert_eq!(d.len(), 1);
    assert_eq!(&*d[0].key.service, SVC);
    assert_eq!(d[0].key.subset, None);
    assert!(t.find(&req("DELETE", "/anything?x=1", &[])).is_some());
}

#[test]
fn uri_matches_exact_prefix_and_anchored_regex() {
    let t = table(vec![
        route(
            "exact",
            vec![pb::HttpMatch {
                uri: exact("/a"),
                ..Default::default()
            }],
        ),
        route(
            "prefix",
            vec![pb::HttpMatch {
                uri: prefix("/api/"),
                ..Default::default()
            }],
        ),
        route(
            "regex",
            vec![pb::HttpMatch {
                uri: regex("/v[0-9]+"),
                ..Default::default()
            }],
        ),
    ]);
    assert_eq!(routed(&t, &req("GET", "/a", &[])).as_deref(), Some("exact"));
    assert_eq!(
        routed(&t, &req("GET", "/a?q=1", &[])).as_deref(),
        Some("exact")
    );
    assert_eq!(routed(&t, &req("GET", "/ab", &[])), None);
    assert_eq!(
        routed(&t, &req("GET", "/api/x", &[])).as_deref(),
        Some("prefix")
    );
    assert_eq!(
        routed(&t, &req("GET", "/v12", &[])).as_deref(),
        Some("regex")
    );
    // Whole-value: the regex does not match a part of the path.
    assert_eq!(routed(&t, &req("GET", "/v12/x", &[])), None);
    assert_eq!(routed(&t, &req("GET", "/x/v12", &[])), None);
}

#[test]
fn ignore_uri_case_applies_to_every_uri_kind() {
    let m = |uri| {
        vec![pb::HttpMatch {
            uri,
            ignore_uri_case: true,
            ..Default::default()
        }]
    };
    let t = table(vec![
        route("exact", m(exact("/Login"))),
        route("prefix", m(prefix("/Static/"))),
        route("regex", m(regex("/img/[a-z]+"))),
    ]);
    assert_eq!(
        routed(&t, &req("GET", "/LOGIN", &[])).as_deref(),
        Some("exact")
    );
    assert_eq!(
        routed(&t, &req("GET", "/static/a.css", &[])).as_deref(),
        Some("prefix")
    );
    assert_eq!(
        routed(&t, &req("GET", "/IMG/Cat", &[])).as_deref(),
        Some("regex")
    );
    let strict = table(vec![route(
        "exact",
        vec![pb::HttpMatch {
            uri: exact("/Login"),
            ..Default::default()
        }],
    )]);
    assert_eq!(routed(&strict, &req("GET", "/login", &[])), None);
}

#[test]
fn method_scheme_and_authority_conditions() {
    let t = table(vec![
        route(
            "post",
            vec![pb::HttpMatch {
                method: exact("POST"),
                ..Default::default()
            }],
        ),
        route(
            "https",
            vec![pb::HttpMatch {
                scheme: exact("https"),
                ..Default::default()
            }],
        ),
        route(
            "host",
            vec![pb::HttpMatch {
                authority: prefix("reviews.shop"),
                ..Default::default()
            }],
        ),
    ]);
    assert_eq!(routed(&t, &req("POST", "/", &[])).as_deref(), Some("post"));
    assert_eq!(
        routed(&t, &req("GET", "https://x/", &[])).as_deref(),
        Some("https")
    );
    // HTTP/1: the Host header is the authority.
    assert_eq!(
        routed(&t, &req("GET", "/", &[("host", "reviews.shop:9080")])).as_deref(),
        Some("host")
    );
    // HTTP/2 (absolute URI): `:authority`.
    assert_eq!(
        routed(&t, &req("GET", "http://reviews.shop:9080/", &[])).as_deref(),
        Some("host")
    );
    assert_eq!(routed(&t, &req("GET", "/", &[("host", "ratings")])), None);
}

#[test]
fn header_conditions_and_without_headers() {
    let mut headers = std::collections::BTreeMap::new();
    headers.insert("End-User".to_string(), sm(exact("jason")));
    headers.insert("x-canary".to_string(), pb::StringMatch::default());
    let mut without = std::collections::BTreeMap::new();
    without.insert("x-debug".to_string(), sm(regex("on|yes")));
    let t = table(vec![route(
        "v2",
        vec![pb::HttpMatch {
            headers,
            without_headers: without,
            ..Default::default()
        }],
    )]);
    let hit = req("GET", "/", &[("end-user", "jason"), ("x-canary", "")]);
    assert_eq!(routed(&t, &hit).as_deref(), Some("v2"));
    // Every condition must hold.
    assert_eq!(routed(&t, &req("GET", "/", &[("end-user", "jason")])), None);
    assert_eq!(
        routed(
            &t,
            &req("GET", "/", &[("end-user", "bob"), ("x-canary", "1")])
        ),
        None
    );
    // withoutHeaders: a matching value excludes; another value or none does not.
    let debug = |v| {
        req(
            "GET",
            "/",
            &[("end-user", "jason"), ("x-canary", "1"), ("x-debug", v)],
        )
    };
    assert_eq!(routed(&t, &debug("yes")), None);
    assert_eq!(routed(&t, &debug("no")).as_deref(), Some("v2"));
}

#[test]
fn query_param_conditions() {
    let mut q = std::collections::BTreeMap::new();
    q.insert("version".to_string(), sm(regex("v[12]")));
    q.insert("debug".to_string(), pb::StringMatch::default());
    let t = table(vec![route(
        "q",
        vec![pb::HttpMatch {
            query_params: q,
            ..Default::default()
        }],
    )]);
    assert_eq!(
        routed(&t, &req("GET", "/p?debug&version=v2", &[])).as_deref(),
        Some("q")
    );
    assert_eq!(routed(&t, &req("GET", "/p?version=v2", &[])), None);
    assert_eq!(routed(&t, &req("GET", "/p?debug=1&version=v3", &[])), None);
}

#[test]
fn match_blocks_are_ored_and_the_first_matching_route_wins() {
    let t = table(vec![
        route(
            "either",
            vec![
                pb::HttpMatch {
                    uri: exact("/a"),
                    ..Default::default()
                },
                pb::HttpMatch {
                    method: exact("PUT"),
                    ..Default::default()
                },
            ],
        ),
        route("catch-all", vec![]),
        route(
            "never",
            vec![pb::HttpMatch {
                uri: exact("/b"),
                ..Default::default()
            }],
        ),
    ]);
    assert_eq!(
        routed(&t, &req("GET", "/a", &[])).as_deref(),
        Some("either")
    );
    assert_eq!(
        routed(&t, &req("PUT", "/z", &[])).as_deref(),
        Some("either")
    );
    assert_eq!(
        routed(&t, &req("GET", "/b", &[])).as_deref(),
        Some("catch-all")
    );
}

#[test]
fn invalid_routes_name_the_field() {
    let err = |routes: Vec<pb::HttpRoute>| {
        RouteTable::from_proto("services[3].http", SVC, &routes)
            .unwrap_err()
            .to_string()
    };
    let e = err(vec![route(
        "x",
        vec![pb::HttpMatch {
            uri: regex("(unclosed"),
            ..Default::default()
        }],
    )]);
    assert!(
        e.starts_with("services[3].http[0].matches[0].uri.regex: invalid regex"),
        "{e}"
    );
    let mut h = std::collections::BTreeMap::new();
    h.insert("x".to_string(), sm(regex("[")));
    let e = err(vec![
        route("ok", vec![]),
        route(
            "x",
            vec![pb::HttpMatch {
                headers: h,
                ..Default::default()
            }],
        ),
    ]);
    assert!(
        e.starts_with("services[3].http[1].matches[0].headers[x].regex:"),
        "{e}"
    );
    let e = err(vec![pb::HttpRoute {
        name: "none".into(),
        ..Default::default()
    }]);
    assert!(e.starts_with("services[3].http[0].destinations:"), "{e}");
    let e = err(vec![pb::HttpRoute {
        destinations: vec![dest("a", 0), dest("b", 0)],
        ..Default::default()
    }]);
    assert!(
        e.starts_with("services[3].http[0].destinations: destination weights add up to 0"),
        "{e}"
    );
    let mut bad = route("x", vec![]);
    bad.request_headers = Some(pb::HeaderOps {
        remove: vec!["bad header".into()],
        ..Default::default()
    });
    let e = err(vec![bad]);
    assert!(
        e.starts_with("services[3].http[0].requestHeaders.remove[0]:"),
        "{e}"
    );
    let mut bad = route("x", vec![]);
    bad.timeout = Some(dur(0));
    assert!(err(vec![bad]).starts_with("services[3].http[0].timeout:"));
    let mut bad = route("x", vec![]);
    bad.mirrors = vec![pb::Mirror {
        percentage: Some(200.0),
        ..Default::default()
    }];
    assert!(err(vec![bad]).starts_with("services[3].http[0].mirrors[0].percentage:"));
    let bad = pb::HttpRoute {
        redirect: Some(pb::Redirect {
            redirect_code: 200,
            ..Default::default()
        }),
        ..Default::default()
    };
    assert!(err(vec![bad]).starts_with("services[3].http[0].redirect.redirectCode:"));
}

#[test]
fn weighted_choice_follows_relative_weights_and_drops_zero_weights() {
    let t = table(vec![pb::HttpRoute {
        destinations: vec![dest("v1", 3), dest("v2", 1), dest("v3", 0)],
        ..Default::default()
    }]);
    let r = &t.routes()[0];
    assert_eq!(r.destinations().len(), 2, "weight 0 dropped");
    let mut rng = fastrand::Rng::with_seed(9);
    let n = 100_000;
    let v1 = (0..n)
        .filter(|_| r.pick(&mut rng).unwrap().key.subset.as_deref() == Some("v1"))
        .count();
    // Seeded (the count is fixed); the bound is 75 % ± 1 %.
    assert!((74_000..=76_000).contains(&v1), "{v1}");
    // A single destination takes everything, whatever its weight.
    let single = table(vec![pb::HttpRoute {
        destinations: vec![dest("only", 0)],
        ..Default::default()
    }]);
    assert_eq!(single.routes()[0].destinations()[0].weight, 100);
}

// --- the Router, over a mock destination dispatcher ---

type Handle = MockHandle<ReplayBody<B>>;

/// One mock behind every destination; it tags each request with the destination the router
/// sent it to, so the tests can tell them apart.
#[derive(Clone)]
struct Tagged {
    key: DestinationKey,
    inner: MockSvc<ReplayBody<B>>,
}

impl tower::Service<Request<ReplayBody<B>>> for Tagged {
    type Response = Response<Body>;
    type Error = ProxyError;
    type Future = <MockSvc<ReplayBody<B>> as tower::Service<Request<ReplayBody<B>>>>::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), ProxyError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReplayBody<B>>) -> Self::Future {
        req.extensions_mut().insert(self.key.clone());
        self.inner.call(req)
    }
}

fn router_with(routes: Vec<pb::HttpRoute>, several_endpoints: bool) -> (Router<Tagged>, Handle) {
    let (svc, handle) = mock();
    let unlimited = Arc::new(RetryBudget::unlimited());
    let r = Router::new(Arc::new(table(routes)), |key| Target {
        service: Tagged {
            key: key.clone(),
            inner: svc.clone(),
        },
        budget: unlimited.clone(),
        several_endpoints,
    });
    (r, handle)
}

fn router(routes: Vec<pb::HttpRoute>) -> (Router<Tagged>, Handle) {
    router_with(routes, true)
}

fn call(r: &Router<Tagged>, req: Request<B>) -> tower::util::Oneshot<Router<Tagged>, Request<B>> {
    r.clone().oneshot(req)
}

#[tokio::test(start_paused = true)]
async fn router_sends_to_the_destination_with_a_previous_hosts_slot() {
    let (r, mut handle) = router(vec![]);
    let task = tokio::spawn(call(&r, req("GET", "/", &[])));
    let (sent, send) = handle.next_request().await.unwrap();
    assert_eq!(
        sent.extensions().get::<DestinationKey>(),
        Some(&DestinationKey {
            service: Arc::from(SVC),
            subset: None
        })
    );
    assert!(
        sent.extensions()
            .get::<PreviousHosts>()
            .is_some_and(|p| p.is_empty())
    );
    send.send_response(rsp(204));
    assert_eq!(task.await.unwrap().unwrap().status(), 204);
}

#[tokio::test(start_paused = true)]
async fn no_previous_hosts_slot_without_another_endpoint_to_prefer_or_without_retries() {
    let no_retries = pb::HttpRoute {
        destinations: vec![dest("", 0)],
        retries: Some(pb::RetryPolicy {
            attempts: 0,
            ..Default::default()
        }),
        ..Default::default()
    };
    for (routes, several) in [(vec![], false), (vec![no_retries], true)] {
        let (r, mut handle) = router_with(routes, several);
        let task = tokio::spawn(call(&r, req("GET", "/", &[])));
        let (sent, send) = handle.next_request().await.unwrap();
        assert!(sent.extensions().get::<PreviousHosts>().is_none());
        send.send_response(rsp(204));
        assert_eq!(task.await.unwrap().unwrap().status(), 204);
    }
}

#[tokio::test(start_paused = true)]
async fn router_default_route_retries_connect_failures() {
    let (r, mut handle) = router(vec![]);
    let task = tokio::spawn(call(&r, req("GET", "/", &[])));
    handle
        .next_request()
        .await
        .unwrap()
        .1
        .send_error(connect_err());
    handle
        .next_request()
        .await
        .unwrap()
        .1
        .send_response(rsp(200));
    assert_eq!(task.await.unwrap().unwrap().status(), 200);
}

#[tokio::test(start_paused = true)]
async fn router_answers_404_nr_when_no_route_matches() {
    let (r, mut handle) = router(vec![route(
        "a",
        vec![pb::HttpMatch {
            uri: exact("/a"),
            ..Default::default()
        }],
    )]);
    let err = call(&r, req("GET", "/b", &[])).await.unwrap_err();
    assert_eq!(err.status_and_flag(), (StatusCode::NOT_FOUND, "NR"));
    drop(r);
    assert!(handle.next_request().await.is_none());
}

#[tokio::test(start_paused = true)]
async fn redirect_answers_without_calling_upstream() {
    let redirect = |r: pb::Redirect| pb::HttpRoute {
        redirect: Some(r),
        ..Default::default()
    };
    let (r, mut handle) = router(vec![redirect(pb::Redirect {
        uri: "/v2/login".into(),
        authority: "auth.shop".into(),
        port: 8443,
        scheme: "https".into(),
        redirect_code: 308,
    })]);
    let rsp = call(
        &r,
        req("GET", "/login?next=%2F", &[("host", "web.shop:80")]),
    )
    .await
    .unwrap();
    assert_eq!(rsp.status(), 308);
    assert_eq!(
        rsp.headers()["location"],
        "https://auth.shop:8443/v2/login?next=%2F"
    );
    drop(r);
    assert!(
        handle.next_request().await.is_none(),
        "redirect called upstream"
    );

    // Defaults: 301, the request's scheme and host, only the port replaced.
    let (r, _h) = router(vec![redirect(pb::Redirect {
        port: 8080,
        ..Default::default()
    })]);
    let rsp = call(&r, req("GET", "/x", &[("host", "web.shop:80")]))
        .await
        .unwrap();
    assert_eq!(rsp.status(), 301);
    assert_eq!(rsp.headers()["location"], "http://web.shop:8080/x");
}

#[tokio::test(start_paused = true)]
async fn rewrite_replaces_the_matched_prefix_or_the_whole_path_and_the_authority() {
    let rewrite = |uri: Option<pb::StringMatch>, to: &str| pb::HttpRoute {
        matches: vec![pb::HttpMatch {
            uri,
            ..Default::default()
        }],
        destinations: vec![dest("", 0)],
        rewrite: Some(pb::Rewrite {
            uri: to.into(),
            authority: "ratings.shop:9080".into(),
        }),
        ..Default::default()
    };
    let cases = [
        (
            rewrite(prefix("/old/"), "/new/"),
            "/old/a/b?x=1",
            "/new/a/b?x=1",
        ),
        (
            rewrite(exact("/exact"), "/other"),
            "/exact?x=1",
            "/other?x=1",
        ),
        (rewrite(regex("/r[0-9]"), "/whole"), "/r7", "/whole"),
        (rewrite(None, "/all"), "/anything/here", "/all"),
    ];
    for (route, from, to) in cases {
        let (r, mut handle) = router(vec![route]);
        let task = tokio::spawn(call(&r, req("GET", from, &[("host", "reviews.shop:9080")])));
        let (sent, send) = handle.next_request().await.unwrap();
        assert_eq!(sent.uri().path_and_query().unwrap().as_str(), to, "{from}");
        assert_eq!(sent.headers()["host"], "ratings.shop:9080");
        send.send_response(rsp(200));
        task.await.unwrap().unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn header_operations_apply_to_request_and_response_destination_level_first() {
    let ops = |set: &[(&str, &str)], add: &[(&str, &str)], remove: &[&str]| {
        Some(pb::HeaderOps {
            set: set
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            add: add
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            remove: remove.iter().map(|s| s.to_string()).collect(),
        })
    };
    let mut d = dest("v1", 0);
    d.request_headers = ops(&[("x-level", "destination"), ("x-dst", "1")], &[], &[]);
    d.response_headers = ops(&[("x-rsp-level", "destination")], &[], &[]);
    let route = pb::HttpRoute {
        destinations: vec![d],
        request_headers: ops(&[("x-level", "route")], &[("x-add", "two")], &["x-secret"]),
        response_headers: ops(&[], &[("x-rsp-add", "r")], &["server"]),
        ..Default::default()
    };
    let (r, mut handle) = router(vec![route]);
    let request = req(
        "GET",
        "/",
        &[("x-secret", "s"), ("x-add", "one"), ("x-level", "client")],
    );
    let task = tokio::spawn(call(&r, request));
    let (sent, send) = handle.next_request().await.unwrap();
    let h = sent.headers();
    assert!(!h.contains_key("x-secret"));
    // The route's `set` runs after the destination's, as Envoy (less specific level last).
    assert_eq!(h["x-level"], "route");
    assert_eq!(h["x-dst"], "1");
    let added: Vec<_> = h.get_all("x-add").iter().collect();
    assert_eq!(added, ["one", "two"]);
    let mut upstream = rsp(200);
    upstream
        .headers_mut()
        .insert("server", "app".parse().unwrap());
    send.send_response(upstream);
    let got = task.await.unwrap().unwrap();
    assert!(!got.headers().contains_key("server"));
    assert_eq!(got.headers()["x-rsp-add"], "r");
    assert_eq!(got.headers()["x-rsp-level"], "destination");
}

#[tokio::test(start_paused = true)]
async fn mirror_sends_a_shadow_copy_and_never_waits_for_it() {
    let route = pb::HttpRoute {
        destinations: vec![dest("v1", 0)],
        mirrors: vec![pb::Mirror {
            service: "mirror.shop.svc.cluster.local:9080".into(),
            subset: "v2".into(),
            percentage: None,
        }],
        ..Default::default()
    };
    let (r, mut handle) = router(vec![route]);
    let mut request = req("POST", "/m", &[("host", "reviews.shop:9080")]);
    *request.body_mut() = Full::new(Bytes::from_static(b"copy me"));
    let task = tokio::spawn(call(&r, request));
    let mut main = None;
    let mut mirror = None;
    for _ in 0..2 {
        let (sent, send) = handle.next_request().await.unwrap();
        let key = sent.extensions().get::<DestinationKey>().unwrap().clone();
        if key.subset.as_deref() == Some("v2") {
            assert_eq!(&*key.service, "mirror.shop.svc.cluster.local:9080");
            assert_eq!(sent.headers()["host"], "reviews.shop-shadow:9080");
            mirror = Some((sent, send));
        } else {
            assert_eq!(sent.headers()["host"], "reviews.shop:9080");
            main = Some((sent, send));
        }
    }
    let (main_req, main_send) = main.expect("main request");
    let (mirror_req, mirror_send) = mirror.expect("mirror request");
    assert_eq!(collect(main_req.into_body()).await.unwrap(), "copy me");
    assert_eq!(collect(mirror_req.into_body()).await.unwrap(), "copy me");
    // The main response comes back while the mirror has not answered.
    main_send.send_response(rsp(200));
    assert_eq!(task.await.unwrap().unwrap().status(), 200);
    // A failing mirror changes nothing.
    mirror_send.send_error(connect_err());
}

#[tokio::test(start_paused = true)]
async fn mirror_is_skipped_at_0_percent_and_for_large_bodies() {
    let mirrored = |pct: f64| pb::HttpRoute {
        destinations: vec![dest("v1", 0)],
        mirrors: vec![pb::Mirror {
            subset: "v2".into(),
            percentage: Some(pct),
            ..Default::default()
        }],
        ..Default::default()
    };
    for (route, body) in [
        (mirrored(0.0), Bytes::from_static(b"small")),
        (
            mirrored(100.0),
            Bytes::from(vec![0u8; MAX_REPLAY_BYTES + 1]),
        ),
    ] {
        let (r, mut handle) = router(vec![route]);
        let mut request = req("POST", "/", &[]);
        *request.body_mut() = Full::new(body);
        let task = tokio::spawn(call(&r, request));
        let (sent, send) = handle.next_request().await.unwrap();
        assert_eq!(
            sent.extensions()
                .get::<DestinationKey>()
                .unwrap()
                .subset
                .as_deref(),
            Some("v1")
        );
        send.send_response(rsp(200));
        task.await.unwrap().unwrap();
        drop((r, sent));
        assert!(handle.next_request().await.is_none(), "a mirror was sent");
    }
}

#[tokio::test(start_paused = true)]
async fn route_timeout_covers_retries_and_an_abort_fault_skips_upstream() {
    // The timeout (100 ms) covers the retries of a hanging upstream: 504 UT.
    let timed = pb::HttpRoute {
        destinations: vec![dest("", 0)],
        timeout: Some(dur(100)),
        retries: Some(pb::RetryPolicy {
            attempts: 5,
            retry_on: vec!["5xx".into()],
            ..Default::default()
        }),
        ..Default::default()
    };
    let (r, mut handle) = router(vec![timed]);
    let task = tokio::spawn(call(&r, req("GET", "/", &[])));
    let (_sent, _hang) = handle.next_request().await.unwrap();
    let err = task.await.unwrap().unwrap_err();
    assert_eq!(err.status_and_flag(), (StatusCode::GATEWAY_TIMEOUT, "UT"));

    // An abort fault answers before any upstream call.
    let faulty = pb::HttpRoute {
        destinations: vec![dest("", 0)],
        fault: Some(pb::Fault {
            delay: None,
            abort: Some(pb::FaultAbort {
                http_status: 503,
                grpc_status: String::new(),
                percentage: 100.0,
            }),
        }),
        ..Default::default()
    };
    let (r, mut handle) = router(vec![faulty]);
    let err = call(&r, req("GET", "/", &[])).await.unwrap_err();
    assert_eq!(err.status_and_flag().1, "FI");
    drop(r);
    assert!(handle.next_request().await.is_none());
}

#[tokio::test(start_paused = true)]
async fn router_takes_retry_limits_from_the_destinations_budget() {
    let budget = Arc::new(RetryBudget::new(0, Some((20.0, 0))));
    let mut seen = Vec::<DestinationKey>::new();
    let (svc, mut handle) = mock();
    let r = Router::new(Arc::new(table(vec![route("v1", vec![])])), |k| {
        seen.push(k.clone());
        Target {
            service: Tagged {
                key: k.clone(),
                inner: svc.clone(),
            },
            budget: budget.clone(),
            several_endpoints: true,
        }
    });
    let task = tokio::spawn(call(&r, req("GET", "/", &[])));
    handle
        .next_request()
        .await
        .unwrap()
        .1
        .send_error(connect_err());
    let err = task.await.unwrap().unwrap_err();
    assert_eq!(
        err.added_flags(),
        ResponseFlags::UO,
        "the budget refused the retry"
    );
    assert_eq!(seen[0].subset.as_deref(), Some("v1"));
}
