use super::*;
use crate::compile::Index;
use std::sync::Arc;

/// Namespaces shop (the services), other and sinew-system (the root); reviews has two ports.
const BASE: &str = "\
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Namespace
metadata: {name: other}
---
apiVersion: v1
kind: Namespace
metadata: {name: sinew-system}
---
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: shop}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}, {name: http-admin, port: 9090}]
---
apiVersion: v1
kind: Service
metadata: {name: ratings, namespace: shop}
spec:
  selector: {app: ratings}
  ports: [{name: http, port: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: shop}
spec:
  selector: {app: db}
  ports: [{name: tcp, port: 5432}]
---
apiVersion: v1
kind: Pod
metadata: {name: reviews-0, namespace: shop, labels: {app: reviews}}
spec: {containers: [{name: app, image: x}]}
status: {podIP: 10.1.0.1}
";

const REVIEWS: &str = "reviews.shop.svc.cluster.local:9080";
const ADMIN: &str = "reviews.shop.svc.cluster.local:9090";

fn ctx(namespace: &str, labels: &[(&str, &str)]) -> ProxyContext {
    ProxyContext {
        namespace: namespace.into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

fn index(rules: &str) -> Index {
    let yaml = format!("{BASE}{rules}");
    let snapshot = Snapshot::from_yaml("t.yaml", &yaml).unwrap_or_else(|e| panic!("{e}"));
    Index::build_with_root(&snapshot, "cluster.local", "sinew-system")
}

fn service(rules: &str, name: &str, proxy: &ProxyContext) -> pb::Service {
    index(rules)
        .service_for(name, proxy)
        .expect("a known name")
        .service
        .clone()
}

/// A DestinationRule whose `maxConnections` tells which rule applied.
fn dr(namespace: &str, name: &str, host: &str, max: u32, extra: &str) -> String {
    format!(
        "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec:\n  host: {host}\n  trafficPolicy:\n    connectionPool:\n      tcp: {{maxConnections: {max}}}\n{extra}"
    )
}

fn max_connections(s: &pb::Service) -> Option<u32> {
    s.traffic_policy
        .as_ref()?
        .connection_pool
        .as_ref()
        .map(|p| p.max_connections)
}

fn secs(n: i64) -> Option<PbDuration> {
    Some(PbDuration {
        seconds: n,
        nanos: 0,
    })
}

fn millis(n: i32) -> Option<PbDuration> {
    Some(PbDuration {
        seconds: 0,
        nanos: n * 1_000_000,
    })
}

// === DestinationRule precedence ===

#[test]
fn proxy_namespace_rule_beats_service_namespace_rule_beats_root_rule() {
    let root = dr(
        "sinew-system",
        "root",
        "reviews.shop.svc.cluster.local",
        3,
        "",
    );
    let svc = dr("shop", "svc", "reviews", 2, "");
    let own = dr("other", "own", "reviews.shop.svc.cluster.local", 1, "");
    let all = format!("{root}{svc}{own}");
    let from_other = ctx("other", &[]);
    assert_eq!(
        max_connections(&service(&all, REVIEWS, &from_other)),
        Some(1)
    );
    assert_eq!(
        max_connections(&service(&format!("{root}{svc}"), REVIEWS, &from_other)),
        Some(2)
    );
    assert_eq!(
        max_connections(&service(&root, REVIEWS, &from_other)),
        Some(3)
    );
    // A proxy in a third namespace does not see `other`'s rule.
    assert_eq!(
        max_connections(&service(&all, REVIEWS, &ctx("default", &[]))),
        Some(2)
    );
}

#[test]
fn an_exact_host_beats_a_wildcard_and_a_longer_wildcard_beats_a_shorter() {
    let star = dr("shop", "star", "'*.cluster.local'", 1, "");
    let longer = dr("shop", "longer", "'*.shop.svc.cluster.local'", 2, "");
    let exact = dr("shop", "exact", "reviews", 3, "");
    let proxy = ctx("shop", &[]);
    assert_eq!(
        max_connections(&service(&format!("{star}{longer}{exact}"), REVIEWS, &proxy)),
        Some(3)
    );
    assert_eq!(
        max_connections(&service(&format!("{star}{longer}"), REVIEWS, &proxy)),
        Some(2)
    );
    assert_eq!(max_connections(&service(&star, REVIEWS, &proxy)), Some(1));
}

#[test]
fn a_dotted_host_is_not_expanded_so_reviews_dot_shop_matches_nothing() {
    let rule = dr("shop", "r", "reviews.shop", 7, "");
    let s = service(&rule, REVIEWS, &ctx("shop", &[]));
    assert_eq!(max_connections(&s), None);
    assert!(s.policy_sources.is_empty());
}

#[test]
fn rules_for_one_host_merge_the_oldest_policy_wins_and_subsets_concatenate() {
    let subsets = |names: &[&str]| {
        let mut out = "  subsets:\n".to_string();
        for n in names {
            out.push_str(&format!("  - {{name: {n}, labels: {{version: {n}}}}}\n"));
        }
        out
    };
    let older = dr("shop", "older", "reviews", 1, &subsets(&["v1", "v2"]));
    let newer = dr("shop", "newer", "reviews", 2, &subsets(&["v2", "v3"]));
    let s = service(&format!("{older}{newer}"), REVIEWS, &ctx("shop", &[]));
    assert_eq!(max_connections(&s), Some(1), "the oldest rule's policy");
    let names: Vec<&str> = s.subsets.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        ["v1", "v2", "v3"],
        "duplicate v2 of the newer dropped"
    );
    assert_eq!(
        s.subsets[1].labels.get("version").map(String::as_str),
        Some("v2")
    );
    assert_eq!(
        s.policy_sources,
        [
            "DestinationRule shop/older (networking.istio.io)",
            "DestinationRule shop/newer (networking.istio.io)"
        ]
    );
}

#[test]
fn the_duplicate_subset_of_a_merged_rule_is_a_warning_naming_both_rules() {
    let a = dr("shop", "a", "reviews", 1, "  subsets: [{name: v1}]\n");
    let b = dr("shop", "b", "reviews", 2, "  subsets: [{name: v1}]\n");
    let yaml = format!("{BASE}{a}{b}");
    let snapshot = Snapshot::from_yaml("t.yaml", &yaml).unwrap();
    let w: Vec<&String> = snapshot
        .warnings()
        .iter()
        .filter(|w| w.contains("subset \"v1\""))
        .collect();
    assert_eq!(w.len(), 1, "{:?}", snapshot.warnings());
    assert!(
        w[0].contains("DestinationRule \"b\"") && w[0].contains("DestinationRule \"a\" at t.yaml"),
        "{w:?}"
    );
}

#[test]
fn a_workload_selector_rule_beats_a_selector_less_one_only_for_matching_pods() {
    let plain = dr("shop", "plain", "reviews", 1, "");
    let selected = dr(
        "shop",
        "selected",
        "reviews",
        2,
        "  workloadSelector:\n    matchLabels: {app: frontend}\n",
    );
    let all = format!("{plain}{selected}");
    assert_eq!(
        max_connections(&service(
            &all,
            REVIEWS,
            &ctx("shop", &[("app", "frontend")])
        )),
        Some(2)
    );
    assert_eq!(
        max_connections(&service(&all, REVIEWS, &ctx("shop", &[("app", "backend")]))),
        Some(1)
    );
    // Outside its namespace a selector rule never applies, even to matching labels.
    assert_eq!(
        max_connections(&service(
            &all,
            REVIEWS,
            &ctx("other", &[("app", "frontend")])
        )),
        Some(1)
    );
}

#[test]
fn export_to_dot_hides_a_rule_from_other_namespaces_but_not_its_own() {
    let private = dr("shop", "private", "reviews", 4, "  exportTo: [\".\"]\n");
    assert_eq!(
        max_connections(&service(&private, REVIEWS, &ctx("shop", &[]))),
        Some(4)
    );
    let s = service(&private, REVIEWS, &ctx("other", &[]));
    assert_eq!(max_connections(&s), None);
    // Named namespaces: visible there only.
    let named = dr("shop", "named", "reviews", 5, "  exportTo: [other]\n");
    assert_eq!(
        max_connections(&service(&named, REVIEWS, &ctx("other", &[]))),
        Some(5)
    );
    assert_eq!(
        max_connections(&service(&named, REVIEWS, &ctx("default", &[]))),
        None
    );
}

#[test]
fn port_level_settings_replace_the_service_level_blocks_for_that_port_only() {
    let rule = "---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: r, namespace: shop}
spec:
  host: reviews
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
    connectionPool:
      tcp: {maxConnections: 10}
    portLevelSettings:
    - port: {number: 9090}
      outlierDetection: {consecutive5xxErrors: 7}
";
    let proxy = ctx("shop", &[]);
    let main = service(rule, REVIEWS, &proxy).traffic_policy.unwrap();
    assert_eq!(main.connection_pool.unwrap().max_connections, 10);
    assert_eq!(
        main.load_balancer.unwrap().simple,
        pb::load_balancer::Simple::RoundRobin as i32
    );
    assert!(main.outlier_detection.is_none());
    let admin = service(rule, ADMIN, &proxy).traffic_policy.unwrap();
    // No inheritance: the pool and balancer of the service level are gone on 9090.
    assert!(admin.connection_pool.is_none());
    assert!(admin.load_balancer.is_none());
    assert_eq!(
        admin.outlier_detection.unwrap().consecutive_5xx_errors,
        Some(7)
    );
}

#[test]
fn a_subset_policy_replaces_the_service_policy_block_by_block() {
    let rule = "---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: r, namespace: shop}
spec:
  host: reviews
  trafficPolicy:
    loadBalancer: {simple: RANDOM}
    connectionPool:
      tcp: {maxConnections: 10}
      http: {http2MaxRequests: 100}
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy:
      connectionPool:
        http: {http1MaxPendingRequests: 5}
  - name: v2
    labels: {version: v2}
";
    let s = service(rule, REVIEWS, &ctx("shop", &[]));
    let v1 = s.subsets[0].traffic_policy.clone().unwrap();
    // The pool block is the subset's, whole: its own field set, the service's fields not kept.
    let pool = v1.connection_pool.unwrap();
    assert_eq!(pool.http1_max_pending_requests, 5);
    assert_eq!(pool.max_connections, 0);
    assert_eq!(pool.http2_max_requests, 0);
    // Blocks the subset does not set are the service's.
    assert_eq!(
        v1.load_balancer.unwrap().simple,
        pb::load_balancer::Simple::Random as i32
    );
    assert_eq!(s.subsets[1].traffic_policy, s.traffic_policy);
}

// === the seed ===

#[test]
fn the_seed_destination_rule_compiles_field_by_field() {
    let seed = include_str!("../../../../examples/traffic-policy/seed-destinationrule.yaml");
    let yaml = format!(
        "{BASE}---\napiVersion: v1\nkind: Service\nmetadata: {{name: myservice}}\nspec:\n  selector: {{app: my}}\n  ports: [{{name: http, port: 80}}]\n---\n{seed}"
    );
    let snapshot = Snapshot::from_yaml("seed.yaml", &yaml).unwrap_or_else(|e| panic!("{e}"));
    let index = Index::build_with_root(&snapshot, "cluster.local", "sinew-system");
    let s = index
        .service_for("myservice.default.svc.cluster.local:80", &ctx("shop", &[]))
        .unwrap();
    let tp = s.service.traffic_policy.clone().unwrap();
    assert_eq!(
        tp.tls.unwrap().mode,
        pb::client_tls::Mode::IstioMutual as i32
    );
    let pool = tp.connection_pool.unwrap();
    assert_eq!(
        pool,
        pb::ConnectionPool {
            http1_max_pending_requests: 100,
            max_requests_per_connection: 10,
            ..Default::default()
        }
    );
    assert_eq!(
        tp.outlier_detection.unwrap(),
        pb::OutlierDetection {
            consecutive_5xx_errors: Some(2),
            interval: secs(60),
            base_ejection_time: secs(30),
            max_ejection_percent: Some(100),
            ..Default::default()
        }
    );
    assert!(tp.load_balancer.is_none() && tp.retry_budget.is_none());
    assert_eq!(
        s.service.policy_sources,
        ["DestinationRule default/example-destination (networking.istio.io)"]
    );
    assert_eq!(s.service.port, 80);
}

// === VirtualService ===

const VS: &str = "---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: shop}
spec:
  hosts: [reviews]
  http:
  - name: canary
    match:
    - headers: {X-User: {exact: jason}}
      uri: {prefix: /api}
      ignoreUriCase: true
    - port: 9090
      method: {exact: GET}
    route:
    - destination: {host: reviews, subset: v2}
      weight: 90
      headers:
        request: {set: {x-canary: 'yes'}}
    - destination: {host: reviews, subset: v3}
      weight: 10
    - destination: {host: reviews, subset: v4}
      weight: 0
    timeout: 2s
    retries: {attempts: 3, perTryTimeout: 500ms, retryOn: 'gateway-error,503', backoff: 50ms}
    mirror: {host: ratings}
    mirrorPercentage: {value: 25}
  - match:
    - sourceLabels: {app: frontend}
    route:
    - destination: {host: ratings}
    fault:
      delay: {fixedDelay: 7s, percentage: {value: 12.5}}
      abort: {httpStatus: 503}
    retries: {attempts: 1}
  - match:
    - uri: {regex: '/old/.*'}
    redirect: {uri: /new, authority: example.com, redirectCode: 308}
  - route:
    - destination: {host: reviews, port: {number: 9080}}
    rewrite: {uri: /v1, authority: reviews.internal}
    headers:
      request: {add: {x-a: b}, remove: [x-debug]}
      response: {set: {x-served-by: reviews}}
    mirrors:
    - destination: {host: db, subset: shadow}
      percentage: {value: 5}
    - destination: {host: ratings}
";

#[test]
fn matches_weights_retries_and_timeout_compile_for_the_port_they_apply_to() {
    let s = service(VS, REVIEWS, &ctx("shop", &[]));
    // The sourceLabels route is not for this proxy (no app=frontend): three routes left.
    let names: Vec<&str> = s.http_routes.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["canary", "shop/reviews#2", "shop/reviews#3"]);
    let canary = &s.http_routes[0];
    // The port-9090 match block is dropped on 9080; the header block is kept, lower-cased.
    assert_eq!(canary.matches.len(), 1);
    let m = &canary.matches[0];
    assert_eq!(
        m.headers.get("x-user").and_then(|s| s.kind.clone()),
        Some(pb::string_match::Kind::Exact("jason".into()))
    );
    assert_eq!(
        m.uri.as_ref().and_then(|s| s.kind.clone()),
        Some(pb::string_match::Kind::Prefix("/api".into()))
    );
    assert!(m.ignore_uri_case);
    // Zero-weight destinations of a split are dropped; names are resource names.
    let dests: Vec<(&str, &str, u32)> = canary
        .destinations
        .iter()
        .map(|d| (d.service.as_str(), d.subset.as_str(), d.weight))
        .collect();
    assert_eq!(dests, [(REVIEWS, "v2", 90), (REVIEWS, "v3", 10)]);
    assert_eq!(
        canary.destinations[0]
            .request_headers
            .as_ref()
            .map(|h| h.set.get("x-canary").cloned()),
        Some(Some("yes".into()))
    );
    assert_eq!(canary.timeout, secs(2));
    assert_eq!(
        canary.retries,
        Some(pb::RetryPolicy {
            attempts: 3,
            per_try_timeout: millis(500),
            retry_on: vec!["gateway-error".into(), "retriable-status-codes".into()],
            retriable_status_codes: vec![503],
            backoff: millis(50),
            retry_ignore_previous_hosts: None,
        })
    );
    // On 9090 the port-9090 block applies too.
    let admin = service(VS, ADMIN, &ctx("shop", &[]));
    let m = &admin.http_routes[0].matches;
    assert_eq!(m.len(), 2);
    assert_eq!(
        m[1].method.as_ref().and_then(|s| s.kind.clone()),
        Some(pb::string_match::Kind::Exact("GET".into()))
    );
    // A destination without a port on a two-port service takes the port being resolved.
    assert_eq!(admin.http_routes[0].destinations[0].service, ADMIN);
}

#[test]
fn source_labels_routes_apply_to_matching_proxies_with_fault_and_default_retry_conditions() {
    let s = service(VS, REVIEWS, &ctx("shop", &[("app", "frontend")]));
    let r = &s.http_routes[1];
    assert_eq!(r.name, "shop/reviews#1");
    // Matches that only selected the source leave a match-all block.
    assert_eq!(r.matches, [pb::HttpMatch::default()]);
    // ratings has one port: a destination without a port takes it.
    assert_eq!(
        r.destinations[0].service,
        "ratings.shop.svc.cluster.local:8080"
    );
    let fault = r.fault.clone().unwrap();
    assert_eq!(
        fault.delay,
        Some(pb::FaultDelay {
            fixed_delay: secs(7),
            percentage: 12.5
        })
    );
    assert_eq!(
        fault.abort,
        Some(pb::FaultAbort {
            http_status: 503,
            grpc_status: String::new(),
            percentage: 0.0,
        }),
        "no percentage: nothing is aborted (Istio's translation)"
    );
    let retries = r.retries.clone().unwrap();
    assert_eq!(retries.attempts, 1);
    assert_eq!(retries.retry_on, DEFAULT_RETRY_ON.map(String::from));
    // Routes without `retries` leave the proxy's default (unset).
    assert!(s.http_routes[2].retries.is_none());
}

#[test]
fn redirect_rewrite_headers_and_mirrors_compile() {
    let s = service(VS, REVIEWS, &ctx("shop", &[]));
    let redirect = &s.http_routes[1];
    assert!(redirect.destinations.is_empty());
    assert_eq!(
        redirect.redirect,
        Some(pb::Redirect {
            uri: "/new".into(),
            authority: "example.com".into(),
            port: 0,
            scheme: String::new(),
            redirect_code: 308,
        })
    );
    assert_eq!(
        redirect.matches[0]
            .uri
            .as_ref()
            .and_then(|s| s.kind.clone()),
        Some(pb::string_match::Kind::Regex("/old/.*".into()))
    );
    let last = &s.http_routes[2];
    assert_eq!(
        last.rewrite,
        Some(pb::Rewrite {
            uri: "/v1".into(),
            authority: "reviews.internal".into()
        })
    );
    let req = last.request_headers.clone().unwrap();
    assert_eq!(req.add.get("x-a").map(String::as_str), Some("b"));
    assert_eq!(req.remove, ["x-debug"]);
    assert_eq!(
        last.response_headers
            .as_ref()
            .and_then(|h| h.set.get("x-served-by").cloned()),
        Some("reviews".into())
    );
    assert_eq!(
        last.mirrors,
        [
            pb::Mirror {
                service: "db.shop.svc.cluster.local:5432".into(),
                subset: "shadow".into(),
                percentage: Some(5.0),
            },
            pb::Mirror {
                service: "ratings.shop.svc.cluster.local:8080".into(),
                subset: String::new(),
                percentage: None,
            },
        ]
    );
    assert_eq!(
        s.http_routes[0].mirrors,
        [pb::Mirror {
            service: "ratings.shop.svc.cluster.local:8080".into(),
            subset: String::new(),
            percentage: Some(25.0),
        }]
    );
    assert_eq!(
        s.policy_sources,
        ["VirtualService shop/reviews (networking.istio.io)"]
    );
}

#[test]
fn tcp_routes_keep_weights_and_filter_by_port() {
    let vs = "---
apiVersion: sinew.dev/v1alpha1
kind: VirtualService
metadata: {name: db, namespace: shop}
spec:
  hosts: [db.shop.svc.cluster.local]
  tcp:
  - match: [{port: 9999}]
    route: [{destination: {host: ratings}}]
  - route:
    - destination: {host: db, subset: primary}
      weight: 80
    - destination: {host: db, subset: replica}
      weight: 20
";
    let s = service(vs, "db.shop.svc.cluster.local:5432", &ctx("shop", &[]));
    assert_eq!(s.tcp_routes.len(), 1, "the port-9999 route is not for 5432");
    let d: Vec<(&str, u32)> = s.tcp_routes[0]
        .destinations
        .iter()
        .map(|d| (d.subset.as_str(), d.weight))
        .collect();
    assert_eq!(d, [("primary", 80), ("replica", 20)]);
    assert_eq!(
        s.tcp_routes[0].destinations[0].service,
        "db.shop.svc.cluster.local:5432"
    );
    assert_eq!(s.policy_sources, ["VirtualService shop/db (sinew.dev)"]);
}

#[test]
fn the_proxy_namespaces_virtual_service_wins_and_export_to_hides_one() {
    let vs = |ns: &str, route: &str, export: &str| {
        format!(
            "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: r, namespace: {ns}}}\nspec:\n  hosts: [reviews.shop.svc.cluster.local]\n  exportTo: [{export}]\n  http: [{{name: {route}, route: [{{destination: {{host: reviews.shop.svc.cluster.local}}}}]}}]\n"
        )
    };
    let yaml = format!(
        "{}{}",
        vs("shop", "from-shop", "'*'"),
        vs("other", "from-other", "'.'")
    );
    let route = |ns: &str| {
        service(&yaml, REVIEWS, &ctx(ns, &[])).http_routes[0]
            .name
            .clone()
    };
    assert_eq!(route("other"), "from-other");
    assert_eq!(route("shop"), "from-shop");
    assert_eq!(route("default"), "from-shop", "other's is private to other");
}

// === the index ===

#[test]
fn the_same_yaml_compiles_to_the_same_versions_and_equal_contexts_share_one_resource() {
    let rules = format!("{}{VS}", dr("shop", "r", "reviews", 9, ""));
    let version = |labels: &[(&str, &str)]| {
        index(&rules)
            .service_for(REVIEWS, &ctx("shop", labels))
            .unwrap()
            .version
            .clone()
    };
    let first = version(&[]);
    for _ in 0..10 {
        assert_eq!(version(&[]), first);
    }
    // sourceLabels make app=frontend see another route table: another version.
    assert_ne!(version(&[("app", "frontend")]), first);
    let index = index(&rules);
    let a = index.service_for(REVIEWS, &ctx("shop", &[])).unwrap();
    let b = index.service_for(REVIEWS, &ctx("shop", &[])).unwrap();
    assert!(Arc::ptr_eq(&a, &b), "memoised");
    // Labels no rule reads do not split proxies; equal content in another namespace is shared.
    let c = index
        .service_for(REVIEWS, &ctx("shop", &[("pod-template-hash", "abc")]))
        .unwrap();
    assert!(Arc::ptr_eq(&a, &c));
    let d = index.service_for(REVIEWS, &ctx("other", &[])).unwrap();
    assert!(Arc::ptr_eq(&a, &d), "the same rules apply from `other`");
}

#[test]
fn a_service_no_rule_touches_is_the_shared_base_resource() {
    let index = index(&dr("shop", "r", "ratings", 9, ""));
    let base = index.get(REVIEWS).unwrap().clone();
    let resolved = index.service_for(REVIEWS, &ctx("other", &[])).unwrap();
    assert!(Arc::ptr_eq(&base, &resolved));
    assert!(resolved.service.traffic_policy.is_none());
}

#[test]
fn a_pods_own_port_gets_the_connection_pool_of_the_rule_for_its_service() {
    let rule = "---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: r, namespace: shop}
spec:
  host: reviews
  trafficPolicy:
    connectionPool:
      http: {http2MaxRequests: 50}
    portLevelSettings:
    - port: {number: 9090}
      connectionPool:
        tcp: {maxConnections: 4}
";
    let index = index(rule);
    let ports: Vec<(u32, Option<pb::ConnectionPool>)> = index
        .inbound_ports("shop", "reviews-0")
        .iter()
        .map(|p| (p.port, p.connection_pool))
        .collect();
    assert_eq!(
        ports,
        [
            (
                9080,
                Some(pb::ConnectionPool {
                    http2_max_requests: 50,
                    ..Default::default()
                })
            ),
            (
                9090,
                Some(pb::ConnectionPool {
                    max_connections: 4,
                    ..Default::default()
                })
            ),
        ]
    );
}

#[test]
fn without_headers_star_compiles_to_a_match_on_any_value() {
    let vs = "---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: r, namespace: shop}
spec:
  hosts: [ratings]
  http:
  - match: [{withoutHeaders: {X-Debug: {regex: '*'}}}]
    route: [{destination: {host: ratings}}]
";
    let s = service(vs, "ratings.shop.svc.cluster.local:8080", &ctx("shop", &[]));
    assert_eq!(
        s.http_routes[0].matches[0]
            .without_headers
            .get("x-debug")
            .and_then(|m| m.kind.clone()),
        Some(pb::string_match::Kind::Regex(".*".into()))
    );
}

#[test]
fn a_declared_protocol_gets_only_its_route_table() {
    let vs = "---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: r, namespace: shop}
spec:
  hosts: [db, ratings]
  http: [{route: [{destination: {host: ratings}}]}]
  tcp: [{route: [{destination: {host: db}}]}]
";
    let proxy = ctx("shop", &[]);
    let db = service(vs, "db.shop.svc.cluster.local:5432", &proxy);
    assert!(db.http_routes.is_empty());
    assert_eq!(db.tcp_routes.len(), 1);
    let ratings = service(vs, "ratings.shop.svc.cluster.local:8080", &proxy);
    assert_eq!(ratings.http_routes.len(), 1);
    assert!(ratings.tcp_routes.is_empty());
}

#[test]
fn retry_conditions_the_proxy_lacks_are_dropped_and_never_replaced_by_the_defaults() {
    let vs = |on: &str| {
        format!(
            "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: r, namespace: shop}}\nspec:\n  hosts: [ratings]\n  http: [{{route: [{{destination: {{host: ratings}}}}], retries: {{attempts: 2, retryOn: '{on}'}}}}]\n"
        )
    };
    let proxy = ctx("shop", &[]);
    let name = "ratings.shop.svc.cluster.local:8080";
    let mixed = service(&vs("5xx,envoy-ratelimited"), name, &proxy).http_routes[0]
        .retries
        .clone()
        .unwrap();
    assert_eq!(
        (mixed.attempts, mixed.retry_on),
        (2, vec!["5xx".to_string()])
    );
    let only = service(&vs("envoy-ratelimited"), name, &proxy).http_routes[0]
        .retries
        .clone()
        .unwrap();
    assert_eq!(
        only.attempts, 0,
        "no retries rather than retries on other conditions"
    );
}

#[test]
fn a_routes_authority_header_becomes_its_authority_rewrite() {
    let vs = "---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: r, namespace: shop}
spec:
  hosts: [ratings]
  http:
  - route: [{destination: {host: ratings}}]
    rewrite: {uri: /v2}
    headers: {request: {set: {Host: ratings.internal, x-a: b}}}
";
    let s = service(vs, "ratings.shop.svc.cluster.local:8080", &ctx("shop", &[]));
    let r = &s.http_routes[0];
    assert_eq!(
        r.rewrite,
        Some(pb::Rewrite {
            uri: "/v2".into(),
            authority: "ratings.internal".into()
        })
    );
    let set = &r.request_headers.as_ref().unwrap().set;
    assert_eq!(set.keys().collect::<Vec<_>>(), ["x-a"]);
}
