use super::*;
use crate::config;
use crate::traffic::endpoint::EndpointStats;
use std::collections::HashMap;

fn eps(n: usize) -> Vec<Arc<EndpointState>> {
    (0..n)
        .map(|i| ep(&format!("10.0.0.{}:80", i + 1)))
        .collect()
}

fn ep(addr: &str) -> Arc<EndpointState> {
    Arc::new(EndpointState::new(
        config::Endpoint::plain(addr.parse().unwrap()),
        Arc::new(EndpointStats::new(None)),
        None,
    ))
}

fn lb(kind: Kind) -> LoadBalancer {
    LoadBalancer { kind, warmup: None }
}

fn never(_: &EndpointState) -> bool {
    false
}

fn counts(b: &Balancer, e: &[Arc<EndpointState>], n: usize) -> Vec<usize> {
    let mut c = vec![0; e.len()];
    for _ in 0..n {
        c[b.pick(e, &PickInput::default(), &never).unwrap()] += 1;
    }
    c
}

#[test]
fn round_robin_visits_every_endpoint_in_turn() {
    let e = eps(3);
    let b = Balancer::new(&lb(Kind::RoundRobin), &e);
    let picks: Vec<usize> = (0..6)
        .map(|_| b.pick(&e, &PickInput::default(), &never).unwrap())
        .collect();
    // Whatever the random start, each window of three is a permutation, repeated.
    assert_eq!(picks[0..3], picks[3..6]);
    let mut first: Vec<usize> = picks[0..3].to_vec();
    first.sort();
    assert_eq!(first, [0, 1, 2]);
}

#[test]
fn random_spreads_over_every_endpoint() {
    let e = eps(4);
    let b = Balancer::new(&lb(Kind::Random), &e);
    let c = counts(&b, &e, 4000);
    // Expected 1000 each; 700 is more than nine standard deviations away.
    assert!(c.iter().all(|n| *n > 700), "{c:?}");
}

#[test]
fn least_request_prefers_the_endpoint_with_fewer_active_requests() {
    let e = eps(2);
    let _busy: Vec<_> = (0..5).map(|_| e[0].stats.start()).collect();
    let b = Balancer::new(&lb(Kind::LeastRequest), &e);
    // With two endpoints both are always compared: the idle one always wins.
    assert_eq!(counts(&b, &e, 100), [0, 100]);
}

#[test]
fn least_request_spreads_evenly_when_loads_are_equal() {
    let e = eps(3);
    let b = Balancer::new(&lb(Kind::LeastRequest), &e);
    let c = counts(&b, &e, 3000);
    assert!(c.iter().all(|n| *n > 700), "{c:?}");
}

#[test]
fn ejected_endpoints_are_skipped_by_every_balancer() {
    let e = eps(4);
    let ejected = |x: &EndpointState| x.addr() != e[2].addr();
    let key = HashKey::SourceIp;
    for kind in [
        Kind::LeastRequest,
        Kind::RoundRobin,
        Kind::Random,
        Kind::Passthrough,
        Kind::RingHash {
            key: key.clone(),
            min_ring_size: 64,
        },
        Kind::Maglev {
            key: key.clone(),
            table_size: 251,
        },
    ] {
        let b = Balancer::new(&lb(kind.clone()), &e);
        for h in 0..50u64 {
            let input = PickInput {
                hash: Some(hash::mix(h)),
                ..Default::default()
            };
            assert_eq!(b.pick(&e, &input, &ejected), Ok(2), "{kind:?}");
        }
    }
}

#[test]
fn all_ejected_is_no_healthy_and_none_is_no_endpoints() {
    let e = eps(2);
    let b = Balancer::new(&lb(Kind::LeastRequest), &e);
    assert_eq!(
        b.pick(&e, &PickInput::default(), &|_: &EndpointState| true),
        Err(Unavailable::NoHealthy)
    );
    let none: Vec<Arc<EndpointState>> = Vec::new();
    let b = Balancer::new(&lb(Kind::RoundRobin), &none);
    assert_eq!(
        b.pick(&none, &PickInput::default(), &never),
        Err(Unavailable::NoEndpoints)
    );
}

#[test]
fn previous_hosts_are_avoided_while_another_endpoint_is_usable() {
    let e = eps(3);
    let prev = PreviousHosts::default();
    prev.record(e[0].addr());
    prev.record(e[1].addr());
    let input = PickInput {
        previous: Some(&prev),
        hash: Some(7),
        ..Default::default()
    };
    for kind in [
        Kind::LeastRequest,
        Kind::RoundRobin,
        Kind::Random,
        Kind::RingHash {
            key: HashKey::SourceIp,
            min_ring_size: 64,
        },
        Kind::Maglev {
            key: HashKey::SourceIp,
            table_size: 251,
        },
    ] {
        let b = Balancer::new(&lb(kind.clone()), &e);
        for _ in 0..20 {
            assert_eq!(b.pick(&e, &input, &never), Ok(2), "{kind:?}");
        }
    }
}

#[test]
fn previous_hosts_fall_back_to_a_tried_endpoint_when_it_is_the_only_one() {
    let e = eps(2);
    let prev = PreviousHosts::default();
    prev.record(e[0].addr());
    let input = PickInput {
        previous: Some(&prev),
        ..Default::default()
    };
    let b = Balancer::new(&lb(Kind::LeastRequest), &e);
    // e[1] is ejected: the only usable endpoint is the one already tried.
    let ejected = |x: &EndpointState| x.addr() == e[1].addr();
    assert_eq!(b.pick(&e, &input, &ejected), Ok(0));
}

#[test]
fn passthrough_sends_to_the_dialled_endpoint() {
    let e = eps(3);
    let b = Balancer::new(&lb(Kind::Passthrough), &e);
    let input = PickInput {
        dialled: Some(e[1].addr()),
        ..Default::default()
    };
    for _ in 0..10 {
        assert_eq!(b.pick(&e, &input, &never), Ok(1));
    }
    let ejected = |x: &EndpointState| x.addr() == e[1].addr();
    assert_eq!(b.pick(&e, &input, &ejected), Err(Unavailable::NoHealthy));
}

fn assignments(kind: &Kind, e: &[Arc<EndpointState>]) -> Vec<SocketAddr> {
    let b = Balancer::new(&lb(kind.clone()), e);
    (0..2000u64)
        .map(|k| {
            let input = PickInput {
                hash: Some(hash::fnv1a(&k.to_be_bytes())),
                ..Default::default()
            };
            e[b.pick(e, &input, &never).unwrap()].addr()
        })
        .collect()
}

#[test]
fn consistent_hash_is_stable_for_a_key_and_moves_few_keys_when_an_endpoint_is_added() {
    for kind in [
        Kind::RingHash {
            key: HashKey::SourceIp,
            min_ring_size: 1024,
        },
        Kind::Maglev {
            key: HashKey::SourceIp,
            table_size: 65537,
        },
    ] {
        let four = eps(4);
        let before = assignments(&kind, &four);
        // Stable: the same keys on a freshly built balancer over the same endpoints.
        assert_eq!(before, assignments(&kind, &eps(4)), "{kind:?}");
        let mut spread: HashMap<SocketAddr, usize> = HashMap::new();
        for a in &before {
            *spread.entry(*a).or_default() += 1;
        }
        assert!(spread.values().all(|n| *n > 300), "{kind:?}: {spread:?}");

        let five = eps(5);
        let added = five[4].addr();
        let after = assignments(&kind, &five);
        let moved: Vec<usize> = (0..before.len())
            .filter(|i| before[*i] != after[*i])
            .collect();
        let to_new = moved.iter().filter(|i| after[**i] == added).count();
        // Ideal: a fifth of the keys move, all to the new endpoint.
        assert!(
            moved.len() < before.len() * 3 / 10,
            "{kind:?}: {}",
            moved.len()
        );
        assert!(
            to_new * 10 >= moved.len() * 9,
            "{kind:?}: {to_new} of {}",
            moved.len()
        );
    }
}

#[test]
fn hash_keys_read_header_cookie_query_and_source() {
    let req = Request::builder()
        .uri("/p?a=1&user=bob")
        .header("x-user", "bob")
        .header("cookie", "theme=dark; session=bob")
        .body(())
        .unwrap();
    let bob = Some(hash::fnv1a(b"bob"));
    assert_eq!(
        HashKey::Header(HeaderName::from_static("x-user")).hash(&req, None),
        bob
    );
    assert_eq!(cookie("session", None).hash(&req, None), bob);
    assert_eq!(HashKey::QueryParameter("user".into()).hash(&req, None), bob);
    assert_eq!(cookie("absent", None).hash(&req, None), None);
    let ip: IpAddr = "10.9.8.7".parse().unwrap();
    assert_eq!(
        HashKey::SourceIp.hash(&req, Some(ip)),
        Some(hash::fnv1a(&[10, 9, 8, 7]))
    );
}

#[tokio::test(start_paused = true)]
async fn a_warming_endpoint_gets_a_small_share_that_grows() {
    let e = vec![
        ep("10.0.0.1:80"),
        Arc::new(EndpointState::new(
            config::Endpoint::plain("10.0.0.2:80".parse().unwrap()),
            Arc::new(EndpointStats::new(Some(Instant::now()))),
            None,
        )),
    ];
    let warm = LoadBalancer {
        kind: Kind::RoundRobin,
        warmup: Some(Warmup {
            duration: Duration::from_secs(100),
            min_share: 0.1,
            aggression: 1.0,
        }),
    };
    let b = Balancer::new(&warm, &e);
    let new_share = |b: &Balancer| counts(b, &e, 2000)[1];
    let early = new_share(&b);
    // Round robin would give it 1000; at 10 % it is kept on about a tenth of its turns.
    assert!(early < 400, "{early}");
    tokio::time::advance(Duration::from_secs(100)).await;
    let late = new_share(&b);
    assert!(late > 900, "{late}");
}

#[test]
fn maglev_table_sizes_must_be_prime() {
    assert!(hash::is_prime(65537) && hash::is_prime(251) && !hash::is_prime(65536));
}

// --- httpCookie with ttl: the proxy sets the affinity cookie ---

fn cookie(name: &str, ttl: Option<Duration>) -> HashKey {
    HashKey::Cookie(CookieKey {
        name: name.into(),
        path: "/".into(),
        ttl,
    })
}

mod affinity {
    use super::*;
    use crate::http::Body;
    use futures_util::FutureExt;
    use futures_util::future::BoxFuture;
    use http::Response;
    use tower::Service;
    use tower_test::mock::{self, Handle, Mock};

    type Mocked = Mock<Request<()>, Response<Body>>;
    type Handles = Vec<Handle<Request<()>, Response<Body>>>;

    struct Target {
        name: Arc<str>,
        eps: Vec<Arc<EndpointState>>,
        balancer: Balancer,
    }

    impl BalanceTarget for Target {
        fn service_name(&self) -> &Arc<str> {
            &self.name
        }
        fn endpoints(&self) -> &[Arc<EndpointState>] {
            &self.eps
        }
        fn balancer(&self) -> &Balancer {
            &self.balancer
        }
        fn is_ejected(&self, _: &EndpointState) -> bool {
            false
        }
    }

    /// Endpoint `i` of the target is served by mock `i`.
    #[derive(Clone)]
    struct Mocks {
        eps: Vec<Arc<EndpointState>>,
        mocks: Arc<Vec<Mocked>>,
    }

    struct ByMock(Mocked);

    impl NewEndpoint<()> for Mocks {
        type Service = ByMock;
        fn new_endpoint(&self, ep: &Arc<EndpointState>) -> ByMock {
            let i = self.eps.iter().position(|e| Arc::ptr_eq(e, ep)).unwrap();
            ByMock(self.mocks[i].clone())
        }
    }

    impl Service<Request<()>> for ByMock {
        type Response = Response<Body>;
        type Error = ProxyError;
        type Future = BoxFuture<'static, Result<Response<Body>, ProxyError>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, req: Request<()>) -> Self::Future {
            // The balancer calls endpoint services without `poll_ready`; the mock insists.
            let ready = futures_util::future::poll_fn(|cx| self.0.poll_ready(cx)).now_or_never();
            assert!(matches!(ready, Some(Ok(()))));
            let rsp = self.0.call(req);
            Box::pin(async move {
                rsp.await
                    .map_err(|e| ProxyError::Upstream(e.to_string().into()))
            })
        }
    }

    fn balance(key: HashKey, n: usize) -> (Balance<Target, Mocks>, Handles) {
        let e = eps(n);
        let (mocks, handles): (Vec<_>, Vec<_>) = (0..n).map(|_| mock::pair()).unzip();
        let target = Target {
            name: "reviews".into(),
            balancer: Balancer::new(
                &lb(Kind::RingHash {
                    key,
                    min_ring_size: 1024,
                }),
                &e,
            ),
            eps: e.clone(),
        };
        let svc = Balance::new(
            Arc::new(target),
            Mocks {
                eps: e,
                mocks: Arc::new(mocks),
            },
        );
        (svc, handles)
    }

    /// Sends `req`, answers it from whichever endpoint got it; returns that endpoint's index
    /// and the response.
    async fn exchange(
        svc: &mut Balance<Target, Mocks>,
        handles: &mut [Handle<Request<()>, Response<Body>>],
        req: Request<()>,
    ) -> (usize, Response<Body>) {
        let rsp = svc.call(req);
        let (i, send) = handles
            .iter_mut()
            .enumerate()
            .find_map(|(i, h)| match h.poll_request() {
                Poll::Ready(Some((_, send))) => Some((i, send)),
                _ => None,
            })
            .expect("the request reached an endpoint");
        send.send_response(Response::new(crate::http::empty_body()));
        (i, rsp.await.unwrap())
    }

    fn with_cookie(c: &str) -> Request<()> {
        Request::builder().header("cookie", c).body(()).unwrap()
    }

    #[tokio::test]
    async fn a_generated_cookie_brings_the_client_back_to_the_same_endpoint() {
        let (mut svc, mut handles) = balance(cookie("affinity", Some(Duration::from_secs(60))), 5);
        let mut first_picks = Vec::new();
        for _ in 0..20 {
            // A new client: no cookie, so the proxy makes one.
            let (first, rsp) = exchange(&mut svc, &mut handles, Request::new(())).await;
            let set = rsp.headers()[http::header::SET_COOKIE].to_str().unwrap();
            let (pair, attrs) = set.split_once("; ").unwrap();
            assert!(pair.starts_with("affinity="), "{set}");
            assert_eq!(attrs, "Max-Age=60; Path=/; HttpOnly");
            // Its next requests carry it (among others) and land where the first did.
            for c in [pair.to_string(), format!("theme=dark; {pair}")] {
                let (again, rsp) = exchange(&mut svc, &mut handles, with_cookie(&c)).await;
                assert_eq!(again, first);
                assert!(!rsp.headers().contains_key(http::header::SET_COOKIE));
            }
            first_picks.push(first);
        }
        first_picks.sort_unstable();
        first_picks.dedup();
        assert!(
            first_picks.len() > 1,
            "new clients spread over the endpoints: {first_picks:?}"
        );
    }

    #[tokio::test]
    async fn a_zero_ttl_sets_a_session_cookie() {
        let (mut svc, mut handles) = balance(cookie("affinity", Some(Duration::ZERO)), 3);
        let (_, rsp) = exchange(&mut svc, &mut handles, Request::new(())).await;
        let set = rsp.headers()[http::header::SET_COOKIE].to_str().unwrap();
        assert!(!set.contains("Max-Age"), "{set}");
        assert!(set.ends_with("; Path=/; HttpOnly"), "{set}");
    }

    #[tokio::test]
    async fn without_ttl_no_cookie_is_set() {
        let (mut svc, mut handles) = balance(cookie("affinity", None), 3);
        for _ in 0..5 {
            let (_, rsp) = exchange(&mut svc, &mut handles, Request::new(())).await;
            assert!(!rsp.headers().contains_key(http::header::SET_COOKIE));
        }
    }

    #[test]
    fn with_a_ttl_cookie_names_and_paths_must_fit_a_set_cookie_header() {
        let field = "services[0].trafficPolicy.loadBalancer.consistentHash.httpCookie";
        let parse = |name: &str, path: &str| {
            CookieKey::from_proto(
                field,
                &pb::HttpCookie {
                    name: name.into(),
                    path: path.into(),
                    ttl: Some(pbjson_types::Duration::default()),
                },
            )
        };
        assert!(parse("affinity", "/api").is_ok());
        // Without a ttl the proxy never writes the cookie: the name is only looked up.
        let lookup_only = pb::HttpCookie {
            name: "a b".into(),
            path: "/x;y".into(),
            ttl: None,
        };
        assert!(CookieKey::from_proto(field, &lookup_only).is_ok());
        for (name, path, bad) in [
            ("a b", "/", "name"),
            ("a;b", "/", "name"),
            ("ok", "/x;y", "path"),
            ("", "/", "name"),
        ] {
            match parse(name, path) {
                Err(ConfigError::Invalid { field: f, .. }) => {
                    assert_eq!(f, format!("{field}.{bad}"))
                }
                other => panic!("{name:?} {path:?}: {other:?}"),
            }
        }
    }
}
