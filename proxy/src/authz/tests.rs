//! Istio's evaluation order and match rules, one behaviour per test.

use super::*;
use http::{HeaderMap, HeaderValue};
use sinew_proto::config::v1::{
    AuthorizationAction as A, AuthorizationCondition, AuthorizationOperation, AuthorizationPolicy,
    AuthorizationRule, AuthorizationSource,
};

const ORDERS: &str = "cluster.local/ns/shop/sa/orders";
const BILLING: &str = "cluster.local/ns/shop/sa/billing";

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn policy(name: &str, action: A, rules: Vec<AuthorizationRule>) -> AuthorizationPolicy {
    AuthorizationPolicy {
        name: name.into(),
        action: action as i32,
        dry_run: false,
        rules,
    }
}

fn from_principals(p: &[&str]) -> AuthorizationSource {
    AuthorizationSource {
        principals: strings(p),
        ..Default::default()
    }
}

fn rule(
    from: Vec<AuthorizationSource>,
    to: Vec<AuthorizationOperation>,
    when: Vec<AuthorizationCondition>,
) -> AuthorizationRule {
    AuthorizationRule { from, to, when }
}

fn get_orders() -> AuthorizationOperation {
    AuthorizationOperation {
        methods: strings(&["GET"]),
        paths: strings(&["/orders/*"]),
        ..Default::default()
    }
}

fn authorizer(policies: Vec<AuthorizationPolicy>) -> Authorizer {
    Authorizer::compile(&pb::Authorization { policies }).expect("policies compile")
}

fn source(principal: Option<&str>, ip: &str) -> Source {
    let mut s = Source::new(
        principal.map(|p| format!("spiffe://{p}")).as_deref(),
        ip.parse().unwrap(),
        Some("198.18.0.10".parse().unwrap()),
    );
    s.sni = None;
    s
}

/// A request and the verdict's (allowed, policy, rule).
struct Req {
    principal: Option<&'static str>,
    ip: &'static str,
    port: u16,
    method: &'static str,
    path: &'static str,
    host: Option<&'static str>,
    headers: HeaderMap,
}

impl Req {
    fn new(principal: Option<&'static str>, method: &'static str, path: &'static str) -> Self {
        Self {
            principal,
            ip: "198.18.0.2",
            port: 8080,
            method,
            path,
            host: Some("orders.shop.svc.cluster.local"),
            headers: HeaderMap::new(),
        }
    }

    fn decide(&self, a: &Authorizer) -> (bool, Option<(String, usize)>) {
        let src = source(self.principal, self.ip);
        let check = Check {
            source: &src,
            port: self.port,
            http: Some(HttpAttrs {
                host: self.host,
                method: self.method,
                path: self.path,
                headers: &self.headers,
            }),
        };
        let v = a.decide(&check, &AuthzMetrics::default());
        (v.allowed, v.policy().map(|(p, r)| (p.to_string(), r)))
    }

    fn allowed(&self, a: &Authorizer) -> bool {
        self.decide(a).0
    }
}

fn tcp_allowed(a: &Authorizer, principal: Option<&str>, port: u16) -> bool {
    allows_tcp(
        a,
        &source(principal, "198.18.0.2"),
        port,
        &AuthzMetrics::default(),
    )
}

#[test]
fn with_no_policy_everything_is_allowed() {
    let a = authorizer(vec![]);
    assert!(a.is_empty());
    assert!(Req::new(None, "DELETE", "/admin").allowed(&a));
    assert!(tcp_allowed(&a, None, 5432));
}

#[test]
fn an_allow_policy_admits_what_it_matches_and_denies_the_rest() {
    let a = authorizer(vec![policy(
        "shop/orders-read",
        A::Allow,
        vec![rule(
            vec![from_principals(&[ORDERS])],
            vec![get_orders()],
            vec![],
        )],
    )]);
    assert_eq!(
        Req::new(Some(ORDERS), "GET", "/orders/17").decide(&a),
        (true, Some(("shop/orders-read".into(), 0)))
    );
    assert_eq!(
        Req::new(Some(ORDERS), "POST", "/orders/17").decide(&a),
        (false, None)
    );
    assert!(!Req::new(Some(ORDERS), "GET", "/admin").allowed(&a));
    assert!(!Req::new(Some(BILLING), "GET", "/orders/17").allowed(&a));
    assert!(
        !Req::new(None, "GET", "/orders/17").allowed(&a),
        "plaintext has no principal"
    );
}

#[test]
fn a_deny_beats_an_allow_that_also_matches() {
    let a = authorizer(vec![
        policy(
            "shop/allow-all",
            A::Allow,
            vec![rule(vec![], vec![], vec![])],
        ),
        policy(
            "shop/no-delete",
            A::Deny,
            vec![rule(
                vec![],
                vec![AuthorizationOperation {
                    methods: strings(&["DELETE"]),
                    ..Default::default()
                }],
                vec![],
            )],
        ),
    ]);
    assert_eq!(
        Req::new(Some(ORDERS), "DELETE", "/orders/1").decide(&a),
        (false, Some(("shop/no-delete".into(), 0)))
    );
    assert_eq!(
        Req::new(Some(ORDERS), "GET", "/orders/1").decide(&a),
        (true, Some(("shop/allow-all".into(), 0)))
    );
}

#[test]
fn only_deny_policies_leave_everything_else_allowed() {
    let a = authorizer(vec![policy(
        "shop/deny-billing",
        A::Deny,
        vec![rule(vec![from_principals(&[BILLING])], vec![], vec![])],
    )]);
    assert!(!Req::new(Some(BILLING), "GET", "/").allowed(&a));
    assert_eq!(Req::new(Some(ORDERS), "GET", "/").decide(&a), (true, None));
    assert!(Req::new(None, "GET", "/").allowed(&a));
}

#[test]
fn an_allow_policy_without_rules_denies_everything_and_one_empty_rule_allows_everything() {
    let deny_all = authorizer(vec![policy("shop/deny-all", A::Allow, vec![])]);
    assert!(!Req::new(Some(ORDERS), "GET", "/").allowed(&deny_all));
    assert!(!tcp_allowed(&deny_all, Some(ORDERS), 5432));
    let allow_all = authorizer(vec![policy(
        "shop/allow-all",
        A::Allow,
        vec![rule(vec![], vec![], vec![])],
    )]);
    assert!(Req::new(None, "DELETE", "/admin").allowed(&allow_all));
    assert!(tcp_allowed(&allow_all, None, 5432));
    // A DENY policy without rules matches nothing.
    let empty_deny = authorizer(vec![policy("shop/nothing", A::Deny, vec![])]);
    assert!(Req::new(None, "GET", "/").allowed(&empty_deny));
}

#[test]
fn fields_are_anded_and_values_ored() {
    let src = AuthorizationSource {
        principals: strings(&[ORDERS, BILLING]),
        ip_blocks: strings(&["198.18.0.0/24"]),
        ..Default::default()
    };
    let a = authorizer(vec![policy(
        "p/a",
        A::Allow,
        vec![rule(vec![src], vec![], vec![])],
    )]);
    assert!(Req::new(Some(ORDERS), "GET", "/").allowed(&a));
    assert!(Req::new(Some(BILLING), "GET", "/").allowed(&a));
    let mut other_net = Req::new(Some(ORDERS), "GET", "/");
    other_net.ip = "198.19.0.2";
    assert!(
        !other_net.allowed(&a),
        "principal matches, ipBlocks does not"
    );
}

#[test]
fn not_fields_exclude_and_a_missing_principal_is_not_any_principal() {
    // Istio's "require mTLS": DENY notPrincipals ["*"].
    let a = authorizer(vec![policy(
        "mesh/require-mtls",
        A::Deny,
        vec![rule(
            vec![AuthorizationSource {
                not_principals: strings(&["*"]),
                ..Default::default()
            }],
            vec![],
            vec![],
        )],
    )]);
    assert!(
        !Req::new(None, "GET", "/").allowed(&a),
        "plaintext is denied"
    );
    assert!(Req::new(Some(ORDERS), "GET", "/").allowed(&a));
    // ALLOW principals ["*"]: any authenticated caller.
    let b = authorizer(vec![policy(
        "mesh/any-mtls",
        A::Allow,
        vec![rule(vec![from_principals(&["*"])], vec![], vec![])],
    )]);
    assert!(!Req::new(None, "GET", "/").allowed(&b));
    assert!(Req::new(Some(BILLING), "GET", "/").allowed(&b));
    // notMethods inside an ALLOW.
    let c = authorizer(vec![policy(
        "shop/read-only",
        A::Allow,
        vec![rule(
            vec![],
            vec![AuthorizationOperation {
                not_methods: strings(&["POST", "PUT", "DELETE"]),
                ..Default::default()
            }],
            vec![],
        )],
    )]);
    assert!(Req::new(None, "GET", "/").allowed(&c));
    assert!(!Req::new(None, "PUT", "/").allowed(&c));
}

#[test]
fn namespaces_service_accounts_and_trust_domains_come_from_the_verified_principal() {
    let only = |s: AuthorizationSource| {
        authorizer(vec![policy(
            "p/a",
            A::Allow,
            vec![rule(vec![s], vec![], vec![])],
        )])
    };
    let ns = only(AuthorizationSource {
        namespaces: strings(&["shop"]),
        ..Default::default()
    });
    assert!(Req::new(Some(ORDERS), "GET", "/").allowed(&ns));
    assert!(!Req::new(Some("cluster.local/ns/other/sa/orders"), "GET", "/").allowed(&ns));
    assert!(!Req::new(None, "GET", "/").allowed(&ns));
    let sa = only(AuthorizationSource {
        service_accounts: strings(&["shop/orders"]),
        ..Default::default()
    });
    assert!(Req::new(Some(ORDERS), "GET", "/").allowed(&sa));
    assert!(!Req::new(Some(BILLING), "GET", "/").allowed(&sa));
    assert!(
        !Req::new(Some("cluster.local/ns/shop/sa/orders-x"), "GET", "/").allowed(&sa),
        "exact, not a prefix"
    );
    let td = only(AuthorizationSource {
        trust_domains: strings(&["cluster.local"]),
        ..Default::default()
    });
    assert!(Req::new(Some(ORDERS), "GET", "/").allowed(&td));
    assert!(!Req::new(Some("other.domain/ns/shop/sa/orders"), "GET", "/").allowed(&td));
}

#[test]
fn hosts_match_case_insensitively_with_or_without_the_port() {
    let a = authorizer(vec![policy(
        "p/hosts",
        A::Allow,
        vec![rule(
            vec![],
            vec![AuthorizationOperation {
                hosts: strings(&["Orders.Shop.svc.cluster.local", "*.example.com"]),
                ..Default::default()
            }],
            vec![],
        )],
    )]);
    let with_host = |h: &'static str| {
        let mut r = Req::new(None, "GET", "/");
        r.host = Some(h);
        r.allowed(&a)
    };
    assert!(with_host("orders.shop.svc.cluster.local"));
    assert!(with_host("ORDERS.shop.svc.cluster.local:8080"));
    assert!(with_host("api.EXAMPLE.com"));
    assert!(!with_host("orders.shop.svc.cluster.local.evil.com"));
    assert!(!with_host("billing.shop.svc.cluster.local"));
    let mut no_host = Req::new(None, "GET", "/");
    no_host.host = None;
    assert!(!no_host.allowed(&a));
}

#[test]
fn ports_are_the_workload_port() {
    let a = authorizer(vec![policy(
        "p/ports",
        A::Allow,
        vec![rule(
            vec![],
            vec![AuthorizationOperation {
                ports: strings(&["8080"]),
                ..Default::default()
            }],
            vec![],
        )],
    )]);
    assert!(Req::new(None, "GET", "/").allowed(&a));
    let mut other = Req::new(None, "GET", "/");
    other.port = 9090;
    assert!(!other.allowed(&a));
    assert!(tcp_allowed(&a, None, 8080));
    assert!(!tcp_allowed(&a, None, 9090));
}

#[test]
fn path_templates_and_wildcards_match_the_normalised_path() {
    let a = authorizer(vec![policy(
        "p/paths",
        A::Allow,
        vec![rule(
            vec![],
            vec![AuthorizationOperation {
                paths: strings(&["/orders/{*}/items", "/static/{**}", "*.css"]),
                ..Default::default()
            }],
            vec![],
        )],
    )]);
    assert!(Req::new(None, "GET", "/orders/7/items").allowed(&a));
    assert!(!Req::new(None, "GET", "/orders/7/8/items").allowed(&a));
    assert!(Req::new(None, "GET", "/static/a/b/c.js").allowed(&a));
    assert!(Req::new(None, "GET", "/x/site.css").allowed(&a));
    assert!(!Req::new(None, "GET", "/admin").allowed(&a));
}

#[test]
fn when_conditions_all_hold() {
    let cond = |key: &str, values: &[&str], not_values: &[&str]| AuthorizationCondition {
        key: key.into(),
        values: strings(values),
        not_values: strings(not_values),
    };
    let a = authorizer(vec![policy(
        "p/when",
        A::Allow,
        vec![rule(
            vec![],
            vec![],
            vec![
                cond("request.headers[x-tenant]", &["acme", "globex"], &[]),
                cond("source.namespace", &["shop"], &[]),
                cond("source.ip", &["198.18.0.0/16"], &["198.18.0.66"]),
                cond("destination.port", &["8080"], &[]),
                cond("destination.ip", &["198.18.0.10"], &[]),
                cond("source.principal", &["*/sa/orders"], &[]),
            ],
        )],
    )]);
    let mut r = Req::new(Some(ORDERS), "GET", "/");
    r.headers
        .insert("x-tenant", HeaderValue::from_static("acme"));
    assert!(r.allowed(&a));
    r.ip = "198.18.0.66";
    assert!(!r.allowed(&a), "notValues excludes");
    r.ip = "198.18.0.2";
    r.headers
        .insert("x-tenant", HeaderValue::from_static("initech"));
    assert!(!r.allowed(&a));
    r.headers.remove("x-tenant");
    assert!(!r.allowed(&a), "an absent header matches no value");
    let mut other = Req::new(Some(BILLING), "GET", "/");
    other
        .headers
        .insert("x-tenant", HeaderValue::from_static("acme"));
    assert!(!other.allowed(&a));
}

/// Several values of one header are read joined: `x: good` plus `x: evil` is not `good`.
#[test]
fn a_repeated_header_cannot_satisfy_an_allow_with_one_good_value() {
    let a = authorizer(vec![policy(
        "p/header",
        A::Allow,
        vec![rule(
            vec![],
            vec![],
            vec![AuthorizationCondition {
                key: "request.headers[x-role]".into(),
                values: strings(&["reader"]),
                not_values: vec![],
            }],
        )],
    )]);
    let mut r = Req::new(None, "GET", "/");
    r.headers
        .append("x-role", HeaderValue::from_static("reader"));
    assert!(r.allowed(&a));
    r.headers
        .append("x-role", HeaderValue::from_static("admin"));
    assert!(!r.allowed(&a));
}

/// A non-UTF-8 byte does not hide a header value from a DENY.
#[test]
fn a_deny_on_a_header_sees_its_bytes_as_sent() {
    let a = authorizer(vec![policy(
        "p/deny-debug",
        A::Deny,
        vec![rule(
            vec![],
            vec![],
            vec![AuthorizationCondition {
                key: "request.headers[x-debug]".into(),
                values: strings(&["on*"]),
                not_values: vec![],
            }],
        )],
    )]);
    let mut r = Req::new(None, "GET", "/");
    r.headers
        .insert("x-debug", HeaderValue::from_bytes(b"on\xff\xfe").unwrap());
    assert!(!r.allowed(&a));
}

#[test]
fn on_tcp_an_allow_rule_reading_http_never_matches_and_a_deny_rule_drops_its_http_parts() {
    let allow_get = authorizer(vec![policy(
        "p/allow-get",
        A::Allow,
        vec![rule(
            vec![from_principals(&[ORDERS])],
            vec![get_orders()],
            vec![],
        )],
    )]);
    assert!(
        !tcp_allowed(&allow_get, Some(ORDERS), 5432),
        "ALLOW with HTTP fields: denied"
    );
    let deny_post_from_billing = authorizer(vec![policy(
        "p/deny-post",
        A::Deny,
        vec![rule(
            vec![from_principals(&[BILLING])],
            vec![AuthorizationOperation {
                methods: strings(&["POST"]),
                ..Default::default()
            }],
            vec![],
        )],
    )]);
    assert!(
        !tcp_allowed(&deny_post_from_billing, Some(BILLING), 5432),
        "DENY applies without its HTTP parts"
    );
    assert!(
        tcp_allowed(&deny_post_from_billing, Some(ORDERS), 5432),
        "the rest of the rule still counts"
    );
}

#[test]
fn dry_run_and_audit_policies_never_change_the_decision() {
    let mut deny = policy("p/dry-deny", A::Deny, vec![rule(vec![], vec![], vec![])]);
    deny.dry_run = true;
    let mut allow = policy(
        "p/dry-allow",
        A::Allow,
        vec![rule(vec![from_principals(&[ORDERS])], vec![], vec![])],
    );
    allow.dry_run = true;
    let audit = policy("p/audit", A::Audit, vec![rule(vec![], vec![], vec![])]);
    let a = authorizer(vec![deny, allow, audit]);
    assert!(!a.is_empty());
    assert_eq!(Req::new(Some(BILLING), "GET", "/").decide(&a), (true, None));
    assert!(tcp_allowed(&a, None, 5432));
}

#[test]
fn every_decision_is_counted_under_its_policy_and_rule() {
    let metrics = AuthzMetrics::register(&mut prometheus_client::registry::Registry::default());
    let mut dry = policy(
        "shop/dry",
        A::Deny,
        vec![rule(vec![from_principals(&[BILLING])], vec![], vec![])],
    );
    dry.dry_run = true;
    let a = authorizer(vec![
        policy(
            "shop/allow",
            A::Allow,
            vec![
                rule(vec![from_principals(&[BILLING])], vec![], vec![]),
                rule(vec![from_principals(&[ORDERS])], vec![], vec![]),
            ],
        ),
        dry,
    ]);
    let check = |p: Option<&str>| {
        let src = source(p, "198.18.0.2");
        let headers = HeaderMap::new();
        let c = Check {
            source: &src,
            port: 8080,
            http: Some(HttpAttrs {
                host: None,
                method: "GET",
                path: "/",
                headers: &headers,
            }),
        };
        a.decide(&c, &metrics).allowed
    };
    assert!(check(Some(ORDERS)));
    assert!(check(Some(ORDERS)));
    assert!(check(Some(BILLING)));
    assert!(!check(None));
    let count = |policy: &str, rule: Option<usize>, decision: &'static str, dry: bool| {
        metrics.counter(policy, rule, decision, dry).get()
    };
    assert_eq!(count("shop/allow", Some(1), "allowed", false), 2);
    assert_eq!(count("shop/allow", Some(0), "allowed", false), 1);
    assert_eq!(count("none", None, "denied", false), 1);
    assert_eq!(
        count("shop/dry", Some(0), "denied", true),
        1,
        "billing would have been denied"
    );
    assert_eq!(count("none", None, "allowed", true), 3);
}

#[test]
fn a_policy_that_cannot_compile_names_itself_its_rule_and_field() {
    let bad = |op: AuthorizationOperation| {
        Authorizer::compile(&pb::Authorization {
            policies: vec![policy(
                "shop/bad",
                A::Allow,
                vec![rule(vec![], vec![], vec![]), rule(vec![], vec![op], vec![])],
            )],
        })
        .unwrap_err()
    };
    let e = bad(AuthorizationOperation {
        ports: strings(&["http"]),
        ..Default::default()
    });
    assert!(
        e.contains("shop/bad")
            && e.contains("rules[1]")
            && e.contains("to[0]")
            && e.contains("\"http\""),
        "{e}"
    );
    let e = bad(AuthorizationOperation {
        paths: strings(&["/a/{**}/b"]),
        ..Default::default()
    });
    assert!(e.contains("{**}"), "{e}");
    let e = Authorizer::compile(&pb::Authorization {
        policies: vec![policy(
            "shop/jwt",
            A::Allow,
            vec![rule(
                vec![],
                vec![],
                vec![AuthorizationCondition {
                    key: "request.auth.claims[iss]".into(),
                    values: strings(&["x"]),
                    not_values: vec![],
                }],
            )],
        )],
    })
    .unwrap_err();
    assert!(e.contains("unsupported key"), "{e}");
}
