use super::*;
use sinew_proto::config::v1 as pb;
use std::sync::Weak;

fn config(yaml: &str) -> Config {
    let msg: pb::ProxyConfig = serde_saphyr::from_str(yaml).expect("test yaml");
    Config::from_proto(msg).expect("valid test config")
}

fn reviews(endpoints: &str) -> Config {
    config(&format!(
        r#"
services:
  - name: reviews
    port: 9080
    addresses: ["10.0.0.1:9080"]
    endpoints: [{endpoints}]
    subsets: [{{name: v1, labels: {{version: v1}}}}, {{name: v2, labels: {{version: v2}}}}]
  - name: ratings
    addresses: ["10.0.0.2:80"]
    endpoints: [{{address: "10.1.0.9:80"}}]
"#
    ))
}

const TWO: &str = r#"{address: "10.1.0.1:9080", labels: {version: v1}}, {address: "10.1.0.2:9080", labels: {version: v2}}"#;
const THREE: &str = r#"{address: "10.1.0.1:9080", labels: {version: v1}}, {address: "10.1.0.2:9080", labels: {version: v2}}, {address: "10.1.0.3:9080", labels: {version: v1}}"#;

fn key(service: &str, subset: Option<&str>) -> DestinationKey {
    DestinationKey {
        service: service.into(),
        subset: subset.map(Into::into),
    }
}

fn stats(s: &Services, addr: &str) -> Arc<EndpointStats> {
    let d = s.destination(&key("reviews:9080", None)).unwrap();
    let a: SocketAddr = addr.parse().unwrap();
    d.endpoints()
        .iter()
        .find(|e| e.addr() == a)
        .map(|e| e.stats.clone())
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn an_unchanged_service_keeps_its_state_across_a_push() {
    let first = Services::update(&Services::default(), &reviews(TWO), Instant::now());
    let guard = stats(&first, "10.1.0.1:9080").start();
    // The same config again (a push that changed something else, or nothing).
    let second = Services::update(&first, &reviews(TWO), Instant::now());
    assert!(Arc::ptr_eq(
        first.service("reviews:9080").unwrap(),
        second.service("reviews:9080").unwrap()
    ));
    assert_eq!(stats(&second, "10.1.0.1:9080").active(), 1);
    drop(guard);
    assert_eq!(stats(&second, "10.1.0.1:9080").active(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_push_that_adds_an_endpoint_keeps_the_state_of_the_others() {
    let first = Services::update(&Services::default(), &reviews(TWO), Instant::now());
    let _guard = stats(&first, "10.1.0.1:9080").start();
    let v2_before = first
        .destination(&key("reviews:9080", Some("v2")))
        .unwrap()
        .clone();
    tokio::time::advance(std::time::Duration::from_secs(5)).await;
    let second = Services::update(&first, &reviews(THREE), Instant::now());
    let kept = stats(&second, "10.1.0.1:9080");
    assert!(Arc::ptr_eq(&kept, &stats(&first, "10.1.0.1:9080")));
    assert_eq!(kept.active(), 1);
    assert_eq!(kept.added, None, "present from the start: no warmup");
    assert_eq!(
        stats(&second, "10.1.0.3:9080").added,
        Some(Instant::now()),
        "joined a running service: warms up from now"
    );
    // The v2 subset did not change (the new endpoint is v1): same destination state.
    assert!(Arc::ptr_eq(
        &v2_before,
        second
            .destination(&key("reviews:9080", Some("v2")))
            .unwrap()
    ));
    let v1 = second
        .destination(&key("reviews:9080", Some("v1")))
        .unwrap();
    let v1_addrs: Vec<String> = v1
        .endpoints()
        .iter()
        .map(|e| e.addr().to_string())
        .collect();
    assert_eq!(v1_addrs, ["10.1.0.1:9080", "10.1.0.3:9080"]);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_endpoint_and_a_dropped_service_lose_their_state() {
    let first = Services::update(&Services::default(), &reviews(THREE), Instant::now());
    let gone: Weak<EndpointStats> = Arc::downgrade(&stats(&first, "10.1.0.3:9080"));
    let only_reviews = config(&format!(
        r#"services: [{{name: reviews, port: 9080, addresses: ["10.0.0.1:9080"], endpoints: [{TWO}],
           subsets: [{{name: v1, labels: {{version: v1}}}}, {{name: v2, labels: {{version: v2}}}}]}}]"#
    ));
    let second = Services::update(&first, &only_reviews, Instant::now());
    drop(first);
    assert!(
        gone.upgrade().is_none(),
        "the removed endpoint's stats are freed"
    );
    assert!(second.service("ratings").is_none());
    assert!(second.destination(&key("ratings", None)).is_none());
    assert_eq!(second.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_request_in_flight_keeps_the_destination_it_started_with() {
    let first = Services::update(&Services::default(), &reviews(TWO), Instant::now());
    let in_flight = first
        .destination(&key("reviews:9080", None))
        .unwrap()
        .clone();
    let changed = reviews(TWO).source.clone();
    let mut changed = changed;
    changed.services[0].traffic_policy = Some(pb::TrafficPolicy {
        load_balancer: Some(pb::LoadBalancer {
            simple: pb::load_balancer::Simple::Random as i32,
            ..Default::default()
        }),
        ..Default::default()
    });
    let second = Services::update(
        &first,
        &Config::from_proto(changed).unwrap(),
        Instant::now(),
    );
    drop(first);
    assert_eq!(in_flight.policy.load_balancer.name(), "LEAST_REQUEST");
    let now = second.destination(&key("reviews:9080", None)).unwrap();
    assert_eq!(now.policy.load_balancer.name(), "RANDOM");
    // The endpoints' stats are shared by both versions.
    assert!(Arc::ptr_eq(
        &in_flight.endpoints()[0].stats,
        &now.endpoints()[0].stats
    ));
}

#[test]
fn an_unknown_subset_is_no_destination() {
    let s = Services::update(&Services::default(), &reviews(TWO), Instant::now());
    assert!(s.destination(&key("reviews:9080", Some("v3"))).is_none());
    assert!(s.destination(&key("reviews", None)).is_none());
    assert!(s.destination(&key("ratings", None)).is_some());
}

mod with_policy {
    use super::*;
    use crate::http::{Body, ProxyError};
    use crate::traffic::balance::{Balance, BalanceTarget};
    use crate::traffic::endpoint::{Endpoint, NewEndpoint};
    use futures_util::future::{Ready, ready};
    use http::{Request, Response, StatusCode};
    use std::task::{Context, Poll};
    use tower::Service;

    /// Endpoints whose address ends in `.1` answer 503, the others 200; the status says who.
    #[derive(Clone)]
    struct Statuses;
    struct Fixed(SocketAddr);

    impl NewEndpoint<()> for Statuses {
        type Service = Endpoint<Fixed>;
        fn new_endpoint(&self, ep: &Arc<crate::traffic::endpoint::EndpointState>) -> Self::Service {
            Endpoint::new(ep.clone(), Fixed(ep.addr()))
        }
    }

    impl Service<Request<()>> for Fixed {
        type Response = Response<Body>;
        type Error = ProxyError;
        type Future = Ready<Result<Response<Body>, ProxyError>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, _: Request<()>) -> Self::Future {
            let mut rsp = Response::new(crate::http::empty_body());
            if self.0.ip().to_string().ends_with(".1") {
                *rsp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            }
            rsp.headers_mut()
                .insert("x-endpoint", self.0.to_string().parse().expect("ascii"));
            ready(Ok(rsp))
        }
    }

    fn outlier_config(endpoints: &str) -> Config {
        config(&format!(
            r#"
services:
  - name: reviews
    port: 9080
    addresses: ["10.0.0.1:9080"]
    endpoints: [{endpoints}]
    trafficPolicy:
      connectionPool: {{http2MaxRequests: 5}}
      outlierDetection: {{consecutive5xxErrors: 2, interval: 1s, baseEjectionTime: 30s, maxEjectionPercent: 100}}
"#
        ))
    }

    async fn answers(dest: &Arc<Destination>, n: usize) -> Vec<String> {
        let mut out = Vec::new();
        for _ in 0..n {
            let mut svc = Balance::new(dest.clone(), Statuses);
            let rsp = svc
                .call(Request::new(()))
                .await
                .expect("an endpoint answers");
            out.push(
                rsp.headers()["x-endpoint"]
                    .to_str()
                    .expect("ascii")
                    .to_owned(),
            );
        }
        out
    }

    #[tokio::test(start_paused = true)]
    async fn an_ejected_endpoint_gets_no_requests_and_stays_ejected_across_a_push() {
        let two = r#"{address: "10.1.0.1:9080"}, {address: "10.1.0.2:9080"}"#;
        let first = Services::update(&Services::default(), &outlier_config(two), Instant::now());
        let dest = first
            .destination(&key("reviews:9080", None))
            .unwrap()
            .clone();
        // Least request over two endpoints: both get traffic until .1 fails twice in a row.
        let seen = answers(&dest, 20).await;
        assert!(seen.iter().any(|a| a == "10.1.0.1:9080"));
        let bad = dest.endpoints()[0].clone();
        assert!(bad.is_ejected(), "two consecutive 503s eject the endpoint");
        let after = answers(&dest, 20).await;
        assert!(after.iter().all(|a| a == "10.1.0.2:9080"), "{after:?}");

        // A push that adds an endpoint: the detector and the ejection carry over.
        let three =
            r#"{address: "10.1.0.1:9080"}, {address: "10.1.0.2:9080"}, {address: "10.1.0.3:9080"}"#;
        let second = Services::update(&first, &outlier_config(three), Instant::now());
        let dest2 = second
            .destination(&key("reviews:9080", None))
            .unwrap()
            .clone();
        assert!(!Arc::ptr_eq(&dest, &dest2));
        assert!(dest2.endpoints()[0].is_ejected());
        let after = answers(&dest2, 30).await;
        assert!(!after.iter().any(|a| a == "10.1.0.1:9080"), "{after:?}");
        assert_eq!(dest2.new_ejections(), 1);
        assert_eq!(dest2.new_ejections(), 0, "each ejection is reported once");
        // The breaker is the same one, its limit updated in place.
        assert_eq!(dest2.breaker.stats().active, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn every_endpoint_ejected_is_no_healthy_upstream() {
        let one = r#"{address: "10.1.0.1:9080"}"#;
        let s = Services::update(&Services::default(), &outlier_config(one), Instant::now());
        let dest = s.destination(&key("reviews:9080", None)).unwrap().clone();
        let _ = answers(&dest, 2).await;
        assert_eq!(
            dest.candidates(),
            crate::traffic::outlier::Candidates::NoHealthy
        );
        let mut svc = Balance::new(dest.clone(), Statuses);
        let err = svc.call(Request::new(())).await.unwrap_err();
        assert!(matches!(err, ProxyError::NoHealthy(_)), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn tcp_connections_are_limited_by_max_connections() {
        let s = Services::update(
            &Services::default(),
            &config(
                r#"services: [{name: db, addresses: ["10.0.0.3:5432"], trafficPolicy: {connectionPool: {maxConnections: 1}}}]"#,
            ),
            Instant::now(),
        );
        let dest = s.destination(&key("db", None)).unwrap();
        let first = dest.tcp_connection();
        assert!(first.is_some());
        assert!(
            dest.tcp_connection().is_none(),
            "the second connection overflows"
        );
        drop(first);
        assert!(
            dest.tcp_connection().is_some(),
            "a closed connection frees its slot"
        );
    }
}
