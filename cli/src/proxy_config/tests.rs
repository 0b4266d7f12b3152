//! `sinewctl proxy-config`'s reading and layout, from fixture documents shaped as the proxy
//! serves them (no network).

use serde_json::{Value, json};
use sinew_proto::config::v1 as pb;

use super::render::{View, duration};

const DUMP: &str = include_str!("testdata/config_dump.json");
const CLUSTERS: &str = include_str!("testdata/clusters.json");

fn doc(text: &str) -> Value {
    serde_json::from_str(text).expect("fixture is JSON")
}

fn report(only: Option<&str>) -> String {
    View::read(&doc(DUMP), Ok(doc(CLUSTERS))).render("demo/frontend-0", only)
}

/// The lines of one service's block: from its header to the next blank line.
fn block(out: &str, key: &str) -> String {
    let start = out
        .find(&format!("\n{key}  "))
        .unwrap_or_else(|| panic!("no block for {key} in:\n{out}"));
    let rest = &out[start + 1..];
    rest.split("\n\n").next().unwrap_or(rest).to_string()
}

#[test]
fn a_service_shows_its_route_retries_policy_and_endpoint_health() {
    let out = report(None);
    assert_eq!(
        block(&out, "ratings.demo.svc.cluster.local:80"),
        "\
ratings.demo.svc.cluster.local:80  HTTP1  198.19.0.3:80
  policy from: DestinationRule demo/ratings (networking.istio.io); VirtualService demo/ratings (networking.istio.io)
  routes:
    ROUTE           MATCH  DESTINATIONS       TIMEOUT  RETRIES                                   OTHER
    demo/ratings#0  *      this service 100%  -        3 on 5xx,connect-failure,409, per try 2s  -
  policy:
    load balancer      LEAST_REQUEST (default)
    connection pool    unlimited (default)
    outlier detection  consecutive5xxErrors 2, consecutiveGatewayErrors off, interval 1m, baseEjectionTime 30s, maxEjectionPercent 100, minHealthPercent 0 (no panic)
    tls                auto: mesh mTLS to sidecars, plaintext to the rest (default)
    retry budget       none (default: retries capped by maxRetries only)
    endpoints (LEAST_REQUEST, 1 active, 0 pending):
      ADDRESS           HEALTH               EJECTIONS  ACTIVE  IDENTITY
      198.18.0.12:9080  ejected, 12.3s left  2          1       spiffe://cluster.local/ns/demo/sa/ratings"
    );
}

#[test]
fn a_service_without_rules_shows_istios_defaults() {
    let out = report(Some("frontend"));
    let b = block(&out, "frontend.demo.svc.cluster.local:80");
    assert!(b.contains("policy from: none (Istio's defaults)"), "{b}");
    assert!(
        b.contains(
            "(default)  *      this service 100%  -        2 on connect-failure,refused-stream,unavailable,cancelled (default)"
        ),
        "{b}"
    );
    assert!(b.contains("LEAST_REQUEST (default)"), "{b}");
    assert!(b.contains("unlimited (default)"), "{b}");
    assert!(b.contains("outlier detection  off (default)"), "{b}");
    // Not in /clusters: the configured endpoint is listed, its health unknown, and a peer
    // without a sidecar says so.
    assert!(b.contains("endpoints (health not reported):"), "{b}");
    assert!(
        b.contains("198.18.0.13:8080  -       -          -       (no sidecar: plaintext)"),
        "{b}"
    );
}

#[test]
fn routes_show_ored_matches_weights_redirects_faults_and_disabled_retries() {
    let b = block(&report(None), "reviews.demo.svc.cluster.local:80");
    let lines: Vec<&str> = b.lines().collect();
    let route = |name: &str| {
        lines
            .iter()
            .find(|l| l.trim_start().starts_with(name))
            .unwrap_or_else(|| panic!("no route {name} in:\n{b}"))
            .split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        route("jason"),
        [
            "jason",
            "uri^=/api header[end-user]=jason | method~PUT|POST",
            "this service/v2 100%",
            "500ms",
            "2 on connect-failure,refused-stream,unavailable,cancelled (default)",
            "abort 503 for 12.5%",
        ]
    );
    assert_eq!(
        route("old"),
        [
            "old",
            "uri=/old",
            "redirect 301 reviews.demo/new",
            "-",
            "2 on connect-failure,refused-stream,unavailable,cancelled (default)",
            "-",
        ]
    );
    assert_eq!(
        route("demo/reviews#2"),
        [
            "demo/reviews#2",
            "*",
            "this service/v1 90%, this service/v2 10%",
            "-",
            "off",
            "-",
        ]
    );
    assert!(
        b.contains(
            "connection pool    http1MaxPendingRequests 1, http2MaxRequests 1, connectTimeout 250ms"
        ),
        "{b}"
    );
}

#[test]
fn each_subset_shows_its_own_policy_and_its_own_destinations_health() {
    let b = block(&report(None), "reviews.demo.svc.cluster.local:80");
    let v1 = &b[b.find("  subset v1 (version=v1):").expect("subset v1")..];
    let v1 = &v1[..v1.find("  subset v2").expect("subset v2 follows")];
    assert!(
        v1.contains("consistent hash on header x-user (RING_HASH 1024)"),
        "{v1}"
    );
    // v1 has no /clusters entry: its members by label, health unknown.
    assert!(v1.contains("endpoints (health not reported):"), "{v1}");
    assert!(v1.contains("198.18.0.10:9080"), "{v1}");
    assert!(
        !v1.contains("198.18.0.11:9080"),
        "v2's endpoint is not in v1:\n{v1}"
    );
    let v2 = &b[b.find("  subset v2 (version=v2):").expect("subset v2")..];
    assert!(
        v2.contains("endpoints (ROUND_ROBIN, 3 active, 1 pending):"),
        "{v2}"
    );
    // Fields /clusters left out are dashes, not zeros.
    assert!(
        v2.contains("198.18.0.11:9080  healthy  -          -       -"),
        "{v2}"
    );
}

#[test]
fn a_destination_only_in_clusters_is_still_shown() {
    let out = report(None);
    assert!(
        out.contains("\nstatic.example:443 (in /clusters only)\n"),
        "{out}"
    );
    assert!(
        out.contains("      203.0.113.5:443  -       -          -       -"),
        "{out}"
    );
}

#[test]
fn without_clusters_routes_and_policy_are_still_shown_with_the_reason() {
    let out = View::read(
        &doc(DUMP),
        Err("GET /clusters answered 404; this proxy may predate it".into()),
    )
    .render("demo/frontend-0", Some("ratings"));
    assert!(
        out.starts_with(
            "pod demo/frontend-0: proxy spiffe://cluster.local/ns/demo/sa/frontend, config version cp-7\n\
             endpoint health unavailable: GET /clusters answered 404; this proxy may predate it\n"
        ),
        "{out}"
    );
    let b = block(&out, "ratings.demo.svc.cluster.local:80");
    assert!(b.contains("3 on 5xx,connect-failure,409"), "{b}");
    assert!(
        b.contains(
            "198.18.0.12:9080  -       -          -       spiffe://cluster.local/ns/demo/sa/ratings"
        ),
        "{b}"
    );
    assert!(!out.contains("reviews"), "filtered out:\n{out}");
}

#[test]
fn a_service_whose_config_cannot_be_read_is_listed_with_the_reason() {
    let dump = json!({"config": {"services": [
        {"name": "odd.demo.svc.cluster.local", "port": 80, "protocol": "CARRIER_PIGEON"},
    ]}});
    let out = View::read(&dump, Ok(json!({"services": []}))).render("demo/x", None);
    assert!(
        out.contains("odd.demo.svc.cluster.local:80\n  cannot read its config: "),
        "{out}"
    );
    assert!(
        out.contains("CARRIER_PIGEON"),
        "the reason names the value:\n{out}"
    );
}

#[test]
fn an_empty_proxy_says_why_it_has_no_services() {
    let out = View::read(&json!({}), Ok(json!({"services": []}))).render("demo/x", None);
    assert!(
        out.contains(
            "no services yet: the proxy subscribes to a service when its pod first sends to it"
        ),
        "{out}"
    );
    let out = report(Some("nothing-like-this"));
    assert!(
        out.contains("no service matching \"nothing-like-this\""),
        "{out}"
    );
}

/// What the proxy serves is its `pb::ProxyConfig` through pbjson: the reader must take exactly
/// that, for every block it shows (a hand-written fixture alone could drift from it).
#[test]
fn reads_what_the_proxy_serialises() {
    let dur = |seconds, nanos| pbjson_types::Duration { seconds, nanos };
    let service = pb::Service {
        name: "shop.demo.svc.cluster.local".into(),
        port: 8080,
        protocol: pb::Protocol::Http2 as i32,
        endpoints: vec![pb::Endpoint {
            address: "198.18.0.20:8080".into(),
            identity: "spiffe://cluster.local/ns/demo/sa/shop".into(),
            ..Default::default()
        }],
        traffic_policy: Some(pb::TrafficPolicy {
            load_balancer: Some(pb::LoadBalancer {
                consistent_hash: Some(pb::ConsistentHash {
                    use_source_ip: true,
                    algorithm: pb::consistent_hash::Algorithm::Maglev as i32,
                    ..Default::default()
                }),
                warmup: Some(pb::Warmup {
                    duration: Some(dur(90, 0)),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            connection_pool: Some(pb::ConnectionPool {
                max_connections: 7,
                idle_timeout: Some(dur(3600, 0)),
                ..Default::default()
            }),
            outlier_detection: Some(pb::OutlierDetection {
                consecutive_5xx_errors: Some(0),
                consecutive_gateway_errors: Some(3),
                split_external_local_origin_errors: true,
                min_health_percent: 50,
                ..Default::default()
            }),
            tls: Some(pb::ClientTls {
                mode: pb::client_tls::Mode::Simple as i32,
                sni: "shop.example".into(),
                ..Default::default()
            }),
            retry_budget: Some(pb::RetryBudget {
                percent: Some(25.0),
                min_retry_concurrency: None,
            }),
        }),
        http_routes: vec![pb::HttpRoute {
            name: "r".into(),
            retries: Some(pb::RetryPolicy {
                attempts: 2,
                retry_on: vec!["gateway-error".into()],
                backoff: Some(dur(0, 50_000_000)),
                retry_ignore_previous_hosts: Some(false),
                ..Default::default()
            }),
            mirrors: vec![pb::Mirror {
                service: "shadow.demo.svc.cluster.local:8080".into(),
                percentage: Some(5.0),
                ..Default::default()
            }],
            fault: Some(pb::Fault {
                delay: Some(pb::FaultDelay {
                    fixed_delay: Some(dur(1, 500_000_000)),
                    percentage: 100.0,
                }),
                abort: None,
            }),
            ..Default::default()
        }],
        tcp_routes: vec![pb::TcpRoute {
            destinations: vec![
                pb::RouteDestination {
                    subset: "a".into(),
                    weight: 1,
                    ..Default::default()
                },
                pb::RouteDestination {
                    subset: "b".into(),
                    weight: 3,
                    ..Default::default()
                },
            ],
        }],
        ..Default::default()
    };
    let config = pb::ProxyConfig {
        services: vec![service],
        ..Default::default()
    };
    let dump =
        json!({"version": "v9", "config": serde_json::to_value(&config).expect("serialises")});
    let out = View::read(&dump, Err("none".into())).render("demo/shop-0", None);
    let b = block(&out, "shop.demo.svc.cluster.local:8080");
    for expected in [
        "shop.demo.svc.cluster.local:8080  HTTP2  -",
        "2 on gateway-error, backoff 50ms, same host allowed",
        "delay 1.5s for 100%; mirror shadow.demo.svc.cluster.local:8080 5%",
        "tcp routes: this service/a 25%, this service/b 75%",
        "load balancer      consistent hash on source IP (MAGLEV 65537), warmup 1m30s from 10%",
        "connection pool    maxConnections 7, idleTimeout 1h",
        "outlier detection  consecutive5xxErrors off, consecutiveGatewayErrors 3, consecutiveLocalOriginFailures 5 (split), interval 10s, baseEjectionTime 30s, maxEjectionPercent 10, minHealthPercent 50",
        "tls                SIMPLE, sni shop.example, CA system roots",
        "retry budget       25% of active requests, at least 3 concurrent",
    ] {
        assert!(b.contains(expected), "missing {expected:?} in:\n{b}");
    }
}

#[test]
fn durations_read_as_yaml_would_write_them() {
    let d = |seconds, nanos| duration(&pbjson_types::Duration { seconds, nanos });
    assert_eq!(d(0, 25_000_000), "25ms");
    assert_eq!(d(1, 500_000_000), "1.5s");
    assert_eq!(d(10, 0), "10s");
    assert_eq!(d(60, 0), "1m");
    assert_eq!(d(90, 0), "1m30s");
    assert_eq!(d(3600, 0), "1h");
    assert_eq!(d(0, 0), "0ms");
}
