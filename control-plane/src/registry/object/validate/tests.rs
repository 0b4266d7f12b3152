use crate::registry::testutil::{parse_files, problems};

/// A DestinationRule with `policy` under `trafficPolicy` (which starts on line 6).
fn dr(policy: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: web}}\nspec:\n  host: web\n  trafficPolicy:\n{policy}"
    )
}

/// A VirtualService with one HTTP route `route` (which starts on line 7).
fn vs(route: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: web}}\nspec:\n  hosts: [web]\n  http:\n{route}"
    )
}

fn one(text: &str) -> String {
    let got = problems(&[("x.yaml", text)]);
    assert_eq!(got.len(), 1, "{got:?}");
    got[0].clone()
}

#[test]
fn a_duration_under_1ms_or_not_whole_ms_or_unparsable_is_refused_at_its_line() {
    assert_eq!(
        one(&dr("    outlierDetection:\n      interval: 500us\n")),
        "x.yaml: document 1 (line 8): DestinationRule \"web\": spec.trafficPolicy.outlierDetection.interval: must be at least 1ms, not \"500us\""
    );
    assert_eq!(
        one(&dr(
            "    outlierDetection:\n      baseEjectionTime: 1.5ms\n"
        )),
        "x.yaml: document 1 (line 8): DestinationRule \"web\": spec.trafficPolicy.outlierDetection.baseEjectionTime: must be a whole number of milliseconds, not \"1.5ms\""
    );
    assert!(
        one(&dr(
            "    connectionPool:\n      tcp: {connectTimeout: 10 seconds}\n"
        ))
        .contains(
            "spec.trafficPolicy.connectionPool.tcp.connectTimeout: \"10 seconds\" is not a duration"
        )
    );
    // tcp.idleTimeout alone may be 0s (disables).
    parse_files(&[(
        "x.yaml",
        &dr("    connectionPool:\n      tcp: {idleTimeout: 0s}\n"),
    )])
    .expect("0s idle timeout disables");
}

#[test]
fn percents_outside_0_to_100_and_negative_pool_sizes_are_refused() {
    assert_eq!(
        one(&dr(
            "    outlierDetection:\n      maxEjectionPercent: 150\n"
        )),
        "x.yaml: document 1 (line 8): DestinationRule \"web\": spec.trafficPolicy.outlierDetection.maxEjectionPercent: must be between 0 and 100, not 150"
    );
    assert_eq!(
        one(&dr(
            "    connectionPool:\n      http:\n        http2MaxRequests: -1\n"
        )),
        "x.yaml: document 1 (line 9): DestinationRule \"web\": spec.trafficPolicy.connectionPool.http.http2MaxRequests: must not be negative, not -1"
    );
}

#[test]
fn subset_names_must_be_unique_dns_labels() {
    let text = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: web}\nspec:\n  host: web\n  subsets:\n  - name: V1\n  - name: v2\n  - name: v2\n";
    assert_eq!(
        problems(&[("x.yaml", text)]),
        [
            "x.yaml: document 1 (line 7): DestinationRule \"web\": spec.subsets[0].name: \"V1\" is not a DNS-1123 label (lowercase letters, digits and '-')",
            "x.yaml: document 1 (line 9): DestinationRule \"web\": spec.subsets[2].name: \"v2\" is used by two subsets",
        ]
    );
}

#[test]
fn a_maglev_table_must_be_a_prime_below_5000011() {
    let lb = |n: u64| {
        dr(&format!(
            "    loadBalancer:\n      consistentHash:\n        httpHeaderName: x-user\n        maglev: {{tableSize: {n}}}\n"
        ))
    };
    assert_eq!(
        one(&lb(65536)),
        "x.yaml: document 1 (line 10): DestinationRule \"web\": spec.trafficPolicy.loadBalancer.consistentHash.maglev.tableSize: must be a prime below 5000011, not 65536"
    );
    assert!(one(&lb(5_000_011)).contains("must be a prime below 5000011"));
    parse_files(&[("x.yaml", &lb(65537))]).expect("65537 is prime");
}

#[test]
fn a_cookie_the_proxy_sets_needs_a_name_and_path_that_fit_set_cookie() {
    let cookie = |name: &str, path: &str, ttl: &str| {
        dr(&format!(
            "    loadBalancer:\n      consistentHash:\n        httpCookie: {{name: {name:?}, path: {path:?}{ttl}}}\n"
        ))
    };
    let bad_name = one(&cookie("a;b", "/", ", ttl: 60s"));
    assert!(
        bad_name.contains("spec.trafficPolicy.loadBalancer.consistentHash.httpCookie.name: \"a;b\" is not a cookie name"),
        "{bad_name}"
    );
    let bad_path = one(&cookie("user", "/a b", ", ttl: 0s"));
    assert!(
        bad_path.contains("consistentHash.httpCookie.path: \"/a b\" is not a cookie path"),
        "{bad_path}"
    );
    // Without a ttl the proxy only reads the cookie: any name will do, as in Istio.
    parse_files(&[("x.yaml", &cookie("a;b", "/a b", ""))]).expect("lookup-only cookie");
    parse_files(&[("x.yaml", &cookie("user", "/shop", ", ttl: 60s"))]).expect("valid cookie");
}

#[test]
fn an_empty_traffic_policy_and_an_empty_port_level_entry_are_refused() {
    assert!(one(&dr("    {}\n")).contains("spec.trafficPolicy: must set at least one field"));
    assert!(
        one(&dr("    portLevelSettings:\n    - port: {number: 80}\n")).contains(
            "spec.trafficPolicy.portLevelSettings[0]: must set one of loadBalancer, connectionPool, outlierDetection or tls"
        )
    );
}

#[test]
fn a_workload_selector_rule_may_not_be_exported() {
    let text = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: web}\nspec:\n  host: web\n  exportTo: ['*']\n  workloadSelector: {matchLabels: {app: a}}\n";
    assert!(one(text).contains(
        "(line 6): DestinationRule \"web\": spec.exportTo: a rule with a workloadSelector"
    ));
}

#[test]
fn negative_weights_and_all_zero_splits_are_refused() {
    let got = one(&vs(
        "  - route:\n    - destination: {host: web}\n      weight: -5\n    - destination: {host: web}\n      weight: 5\n",
    ));
    assert_eq!(
        got,
        "x.yaml: document 1 (line 9): VirtualService \"web\": spec.http[0].route[0].weight: must not be negative, not -5"
    );
    assert!(
        one(&vs("  - route:\n    - destination: {host: a}\n      weight: 0\n    - destination: {host: b}\n      weight: 0\n"))
            .contains("spec.http[0].route: the destinations' weights add up to 0")
    );
}

#[test]
fn a_route_needs_destinations_or_a_redirect_but_not_both() {
    assert_eq!(
        one(&vs(
            "  - name: both\n    route: [{destination: {host: web}}]\n    redirect: {uri: /x}\n"
        )),
        "x.yaml: document 1 (line 7): VirtualService \"web\": spec.http[0]: a route cannot have both destinations and a redirect"
    );
    assert!(
        one(&vs("  - name: neither\n    timeout: 1s\n"))
            .contains("spec.http[0]: a route needs destinations (route) or a redirect")
    );
}

#[test]
fn a_match_regex_must_compile() {
    let got = one(&vs(
        "  - match:\n    - uri: {regex: '/a(b'}\n    route: [{destination: {host: web}}]\n",
    ));
    assert!(
        got.starts_with("x.yaml: document 1 (line 8): VirtualService \"web\": spec.http[0].match[0].uri.regex: \"/a(b\" is not a valid regex"),
        "{got}"
    );
}

#[test]
fn retry_on_names_must_be_envoy_conditions_or_status_codes() {
    let route = |on: &str| {
        vs(&format!(
            "  - route: [{{destination: {{host: web}}}}]\n    retries:\n      attempts: 2\n      retryOn: '{on}'\n"
        ))
    };
    let got = one(&route("5xx,connect-failure,503,conect-failure"));
    assert!(
        got.starts_with("x.yaml: document 1 (line 10): VirtualService \"web\": spec.http[0].retries.retryOn: \"conect-failure\" is not a retry condition"),
        "{got}"
    );
    parse_files(&[("x.yaml", &route("gateway-error,reset,503,retriable-4xx"))])
        .expect("known conditions and a status");
}

#[test]
fn hosts_are_required_and_star_is_not_for_the_mesh() {
    let text = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: web}\nspec:\n  hosts: []\n  http: [{route: [{destination: {host: web}}]}]\n";
    assert_eq!(
        one(text),
        "x.yaml: document 1 (line 5): VirtualService \"web\": spec.hosts: is required (at least one host)"
    );
    assert!(
        one(&text.replace("hosts: []", "hosts: ['*']"))
            .contains("spec.hosts[0]: \"*\" is not allowed")
    );
}

#[test]
fn fault_percentages_and_abort_statuses_are_checked() {
    let got = problems(&[(
        "x.yaml",
        &vs(
            "  - route: [{destination: {host: web}}]\n    fault:\n      delay: {fixedDelay: 1s, percentage: {value: 101}}\n      abort: {httpStatus: 700}\n",
        ),
    )]);
    assert_eq!(
        got,
        [
            "x.yaml: document 1 (line 9): VirtualService \"web\": spec.http[0].fault.delay.percentage.value: must be between 0 and 100, not 101",
            "x.yaml: document 1 (line 10): VirtualService \"web\": spec.http[0].fault.abort.httpStatus: must be an HTTP status between 200 and 599, not 700",
        ]
    );
}

#[test]
fn an_unknown_virtual_service_field_is_an_error_naming_it_and_its_line() {
    assert_eq!(
        one(&vs(
            "  - route: [{destination: {host: web}}]\n    retrys: {attempts: 3}\n"
        )),
        "x.yaml: document 1 (line 8): VirtualService \"web\": spec.http[0].retrys: unknown field; did you mean retries?"
    );
}

#[test]
fn gateway_only_services_are_skipped_and_unenforced_parts_are_warnings() {
    let gateway = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: edge}\nspec:\n  hosts: [web.example.com]\n  gateways: [ingress]\n  http: [{route: [{destination: {host: web}}]}]\n";
    let snap = parse_files(&[("g.yaml", gateway)]).expect("valid");
    assert!(snap.virtual_services().is_empty());
    assert_eq!(
        snap.warnings(),
        [
            "g.yaml: document 1 (line 1): VirtualService \"edge\": spec.gateways [\"ingress\"] does not include \"mesh\": it configures gateways only, which Sinew does not run; skipped"
        ]
    );
    let text = vs(
        "  - route: [{destination: {host: web}}]\n    retries: {attempts: 1, retryRemoteLocalities: true}\n    corsPolicy: {allowOrigins: [{exact: 'https://a'}]}\n",
    );
    let snap = parse_files(&[("x.yaml", &text)]).expect("valid");
    assert_eq!(snap.virtual_services().len(), 1);
    assert_eq!(
        snap.warnings(),
        [
            "x.yaml: document 1 (line 8): VirtualService \"web\": spec.http[0].retries.retryRemoteLocalities: is accepted and ignored (Sinew has no localities yet)",
            "x.yaml: document 1 (line 9): VirtualService \"web\": spec.http[0].corsPolicy: is accepted but not enforced by Sinew yet",
        ]
    );
}

#[test]
fn a_route_to_a_subset_no_rule_defines_is_a_warning_naming_both_objects() {
    let rule = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: web}\nspec:\n  host: web\n  subsets: [{name: v1, labels: {version: v1}}]\n";
    let service = vs(
        "  - route:\n    - destination: {host: web, subset: v1}\n      weight: 50\n    - destination: {host: web.default.svc.cluster.local, subset: v2}\n      weight: 50\n",
    );
    let snap = parse_files(&[("dr.yaml", rule), ("vs.yaml", &service)]).expect("valid");
    assert_eq!(
        snap.warnings(),
        [
            "vs.yaml: document 1 (line 10): VirtualService \"web\": spec.http[0].route[1].destination: subset \"v2\" of host \"web.default.svc.cluster.local\" is not defined (DestinationRule default/web at dr.yaml: document 1 (line 1) defines subsets v1): requests routed there fail with NR (no route)"
        ]
    );
    let snap = parse_files(&[("vs.yaml", &service)]).expect("valid");
    assert_eq!(snap.warnings().len(), 2);
    assert!(
        snap.warnings()[0].contains("subset \"v1\" of host \"web.default.svc.cluster.local\" is not defined (no DestinationRule has host"),
        "{:?}",
        snap.warnings()
    );
}

#[test]
fn a_second_virtual_service_for_a_host_is_a_warning_naming_both() {
    let a = vs("  - route: [{destination: {host: web}}]\n");
    let b = a.replace("name: web}", "name: web2}");
    let snap = parse_files(&[("a.yaml", &a), ("b.yaml", &b)]).expect("valid");
    assert_eq!(
        snap.warnings(),
        [
            "b.yaml: document 1 (line 1): VirtualService \"web2\": host \"web.default.svc.cluster.local\" is already routed by VirtualService \"web\" at a.yaml: document 1 (line 1); only the older one applies to it"
        ]
    );
}

#[test]
fn redirects_exclude_faults_and_rewrites_and_the_authority_is_set_once() {
    let got = problems(&[(
        "x.yaml",
        &vs(
            "  - redirect: {uri: /x}\n    rewrite: {uri: /y}\n    fault: {abort: {httpStatus: 500, percentage: {value: 1}}}\n",
        ),
    )]);
    assert_eq!(
        got,
        [
            "x.yaml: document 1 (line 7): VirtualService \"web\": spec.http[0]: a route cannot have both a fault and a redirect",
            "x.yaml: document 1 (line 7): VirtualService \"web\": spec.http[0]: a route cannot have both a rewrite and a redirect",
        ]
    );
    assert!(one(&vs("  - route: [{destination: {host: web}}]\n    rewrite: {authority: a}\n    headers: {request: {set: {host: b}}}\n"))
        .contains("the authority is set more than once"));
    // One authority change is fine; other internal headers are not the user's.
    parse_files(&[("x.yaml", &vs("  - route: [{destination: {host: web}}]\n    headers: {request: {set: {':authority': b}}}\n"))])
        .expect("an authority header set once");
    assert!(one(&vs("  - route: [{destination: {host: web}}]\n    headers: {response: {remove: [':status']}}\n"))
        .contains("\":status\" is an internal header"));
}

#[test]
fn without_headers_star_means_present_and_is_not_a_regex() {
    parse_files(&[(
        "x.yaml",
        &vs("  - match: [{withoutHeaders: {x-debug: {regex: '*'}}}]\n    route: [{destination: {host: web}}]\n"),
    )])
    .expect("`*` is a presence match");
}

#[test]
fn redirects_use_the_five_codes_a_proxy_can_answer_and_paths_start_with_a_slash() {
    let redirect = |r: &str| vs(&format!("  - redirect: {r}\n"));
    assert_eq!(
        one(&redirect("{uri: /x, redirectCode: 300}")),
        "x.yaml: document 1 (line 7): VirtualService \"web\": spec.http[0].redirect.redirectCode: must be 301, 302, 303, 307 or 308, not 300"
    );
    assert!(
        one(&redirect("{uri: x}"))
            .contains("spec.http[0].redirect.uri: \"x\" must be a path starting with /")
    );
    assert!(
        one(&vs(
            "  - route: [{destination: {host: web}}]\n    rewrite: {uri: v1}\n"
        ))
        .contains("spec.http[0].rewrite.uri: \"v1\" must be a path starting with /")
    );
    assert!(
        one(&vs(
            "  - route: [{destination: {host: web}}]\n    rewrite: {}\n"
        ))
        .contains("spec.http[0].rewrite: must set uri or authority")
    );
}

#[test]
fn header_values_must_be_valid_and_the_authority_is_not_set_per_destination() {
    assert!(
        one(&vs("  - route: [{destination: {host: web}}]\n    headers: {request: {set: {x-a: \"a\\nb\"}}}\n"))
            .contains("spec.http[0].headers.request.set.x-a: \"a\\nb\" is not a valid header value")
    );
    assert!(
        one(&vs("  - route:\n    - destination: {host: web}\n      headers: {request: {set: {host: b}}}\n"))
            .contains("spec.http[0].route[0].headers.request: setting the authority per destination is not supported")
    );
}

#[test]
fn warmup_needs_a_balancer_that_ramps_and_rings_stay_within_envoys_limit() {
    assert!(
        one(&dr("    loadBalancer:\n      simple: RANDOM\n      warmup: {duration: 30s}\n"))
            .contains("spec.trafficPolicy.loadBalancer.warmup: only ROUND_ROBIN and LEAST_REQUEST support warmup")
    );
    parse_files(&[(
        "x.yaml",
        &dr("    loadBalancer:\n      simple: ROUND_ROBIN\n      warmup: {duration: 30s, minimumPercent: 20}\n"),
    )])
    .expect("round robin ramps");
    assert!(
        one(&dr("    loadBalancer:\n      consistentHash:\n        useSourceIp: true\n        ringHash: {minimumRingSize: 9000000}\n"))
            .contains("must be at most 8388608, not 9000000")
    );
}

#[test]
fn a_mirror_to_an_undefined_subset_is_a_warning_at_its_line() {
    let service = vs(
        "  - route: [{destination: {host: web}}]\n    mirrors:\n    - destination: {host: web, subset: shadow}\n",
    );
    let snap = parse_files(&[("vs.yaml", &service)]).expect("valid");
    assert_eq!(snap.warnings().len(), 1, "{:?}", snap.warnings());
    assert!(
        snap.warnings()[0].starts_with(
            "vs.yaml: document 1 (line 9): VirtualService \"web\": spec.http[0].mirrors[0].destination: subset \"shadow\""
        ),
        "{:?}",
        snap.warnings()
    );
}

#[test]
fn tcp_address_matches_are_refused_rather_than_ignored() {
    let text = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: db}\nspec:\n  hosts: [db]\n  tcp:\n  - match: [{destinationSubnets: [10.0.0.0/8]}]\n    route: [{destination: {host: db}}]\n";
    assert_eq!(
        one(text),
        "x.yaml: document 1 (line 7): VirtualService \"db\": spec.tcp[0].match[0].destinationSubnets: is not supported by Sinew yet"
    );
}
