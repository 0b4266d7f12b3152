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
