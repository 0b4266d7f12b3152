use crate::registry::testutil::{parse_files, problems};

/// An AuthorizationPolicy named `a` in `default` with `spec` (which starts on line 5).
fn policy(spec: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: a}}\nspec:\n{spec}"
    )
}

/// Every problem of a policy with `spec`, without the file, line and object prefix.
fn reasons(spec: &str) -> Vec<String> {
    problems(&[("x.yaml", &policy(spec))])
        .into_iter()
        .map(|p| match p.split_once("AuthorizationPolicy \"a\": ") {
            Some((_, reason)) => reason.to_string(),
            None => p,
        })
        .collect()
}

/// The one problem of a policy with `spec`.
fn reason(spec: &str) -> String {
    let got = reasons(spec);
    assert_eq!(got.len(), 1, "{got:#?}");
    got[0].clone()
}

fn warnings(spec: &str) -> Vec<String> {
    match parse_files(&[("x.yaml", &policy(spec))]) {
        Ok(snapshot) => snapshot.warnings().to_vec(),
        Err(e) => panic!("expected the policy to be accepted: {e}"),
    }
}

#[test]
fn unknown_fields_and_actions_are_refused_at_their_line() {
    let got = problems(&[(
        "x.yaml",
        &policy("  rules:\n  - from:\n    - source: {principal: [a]}\n"),
    )]);
    assert_eq!(
        got,
        [
            "x.yaml: document 1 (line 7): AuthorizationPolicy \"a\": spec.rules[0].from[0].source.principal: unknown field; did you mean principals?"
        ]
    );
    let action = reason("  action: REJECT\n");
    assert!(
        action.contains("unknown value \"REJECT\"; expected one of ALLOW, DENY, AUDIT, CUSTOM"),
        "{action}"
    );
    // Istio's Source has no trustDomains, so neither has ours.
    let trust = reason("  rules:\n  - from:\n    - source: {trustDomains: [cluster.local]}\n");
    assert!(trust.contains("trustDomains: unknown field"), "{trust}");
}

#[test]
fn custom_and_providers_are_refused() {
    assert_eq!(
        reason("  action: CUSTOM\n  provider: {name: opa}\n  rules: [{}]\n"),
        "spec.action: CUSTOM (external authorization) is not supported by Sinew"
    );
    assert_eq!(
        reason("  action: DENY\n  provider: {name: opa}\n"),
        "spec.provider: may only be set with action CUSTOM (which Sinew does not support)"
    );
}

#[test]
fn jwt_principals_and_conditions_are_refused_for_want_of_request_authentication() {
    let principals = reasons(
        "  rules:\n  - from:\n    - source: {requestPrincipals: [\"*\"], notRequestPrincipals: [x/y]}\n",
    );
    assert_eq!(
        principals,
        [
            "spec.rules[0].from[0].source.requestPrincipals: JWT request principals are not supported by Sinew: it has no RequestAuthentication to verify them",
            "spec.rules[0].from[0].source.notRequestPrincipals: JWT request principals are not supported by Sinew: it has no RequestAuthentication to verify them",
        ]
    );
    assert_eq!(
        reason("  rules:\n  - when: [{key: \"request.auth.claims[iss]\", values: [x]}]\n"),
        "spec.rules[0].when[0].key: request.auth.claims[iss]: JWT conditions are not supported by Sinew: it has no RequestAuthentication to verify them"
    );
    assert_eq!(
        reason(
            "  rules:\n  - when: [{key: \"experimental.envoy.filters.network.mysql_proxy[db.table]\", values: [x]}]\n"
        ),
        "spec.rules[0].when[0].key: experimental.envoy.filters.network.mysql_proxy[db.table]: experimental conditions are not supported by Sinew"
    );
}

#[test]
fn condition_keys_must_be_known_and_have_values() {
    assert_eq!(
        reason("  rules:\n  - when: [{key: source.color, values: [red]}]\n"),
        "spec.rules[0].when[0].key: unknown condition key \"source.color\"; Sinew supports source.ip, remote.ip, source.namespace, source.principal, destination.ip, destination.port, connection.sni, request.headers[<name>]"
    );
    assert_eq!(
        reason("  rules:\n  - when: [{key: source.namespace}]\n"),
        "spec.rules[0].when[0]: at least one of values or notValues must be set for key source.namespace"
    );
    assert_eq!(
        reason("  rules:\n  - when: [{key: \"request.headers[]\", values: [x]}]\n"),
        "spec.rules[0].when[0].key: request.headers[]: a header condition is written request.headers[<name>], with a valid header name"
    );
    assert_eq!(
        reason("  rules:\n  - when: [{key: \"request.headers[x user]\", values: [x]}]\n"),
        "spec.rules[0].when[0].key: request.headers[x user]: a header condition is written request.headers[<name>], with a valid header name"
    );
    assert_eq!(
        reason("  rules:\n  - when: [{key: destination.port, notValues: [\"0\"]}]\n"),
        "spec.rules[0].when[0].notValues: \"0\" is not a port number (1-65535)"
    );
    assert_eq!(
        reason("  rules:\n  - when: [{key: source.ip, values: [10.0.0.0/33]}]\n"),
        "spec.rules[0].when[0].values: \"10.0.0.0/33\" is not an IP address or CIDR"
    );
    assert_eq!(
        reason("  rules:\n  - when: [{values: [x]}]\n"),
        "spec.rules[0].when[0].key: is required"
    );
    // Every supported key passes.
    warnings(
        "  rules:\n  - when:\n    - {key: source.ip, values: [10.0.0.1, 10.0.0.0/8]}\n    - {key: remote.ip, values: [\"::1\"]}\n    - {key: source.namespace, values: [a]}\n    - {key: source.principal, values: [\"*\"]}\n    - {key: destination.ip, values: [10.1.0.0/16]}\n    - {key: destination.port, values: [\"8080\"]}\n    - {key: connection.sni, values: [a.b]}\n    - {key: \"request.headers[x-user]\", notValues: [bob]}\n",
    );
}

#[test]
fn present_but_empty_from_to_source_and_operation_are_refused() {
    assert_eq!(
        reason("  rules:\n  - from: []\n"),
        "spec.rules[0].from: must not be empty when set (leave it out to match any source)"
    );
    assert_eq!(
        reason("  rules:\n  - to: []\n"),
        "spec.rules[0].to: must not be empty when set (leave it out to match any operation)"
    );
    assert_eq!(
        reason("  rules:\n  - from: [{}]\n"),
        "spec.rules[0].from[0].source: is required"
    );
    assert_eq!(
        reason("  rules:\n  - from: [{source: {principals: []}}]\n"),
        "spec.rules[0].from[0].source: must set at least one field"
    );
    assert_eq!(
        reason("  rules:\n  - to: [{operation: {}}]\n"),
        "spec.rules[0].to[0].operation: must set at least one field"
    );
    assert_eq!(
        reason("  rules:\n  - to: [{}]\n"),
        "spec.rules[0].to[0].operation: is required"
    );
    // An empty rule matches everything, and no rules at all nothing: both valid.
    warnings("  rules: [{}]\n");
    warnings("  {}\n");
}

#[test]
fn service_accounts_stand_alone_and_are_namespace_slash_name() {
    assert_eq!(
        reason(
            "  rules:\n  - from: [{source: {serviceAccounts: [shop/web], namespaces: [shop]}}]\n"
        ),
        "spec.rules[0].from[0].source.serviceAccounts: cannot be combined with principals or namespaces in one source"
    );
    assert_eq!(
        reason(
            "  rules:\n  - from: [{source: {notServiceAccounts: [shop/web], principals: [cluster.local/ns/a/sa/b]}}]\n"
        ),
        "spec.rules[0].from[0].source.notServiceAccounts: cannot be combined with principals or namespaces in one source"
    );
    assert_eq!(
        reason("  rules:\n  - from: [{source: {serviceAccounts: [web]}}]\n"),
        "spec.rules[0].from[0].source.serviceAccounts[0]: \"web\" is not of the form namespace/serviceaccount"
    );
    warnings(
        "  rules:\n  - from: [{source: {serviceAccounts: [shop/web], ipBlocks: [10.0.0.0/8]}}]\n",
    );
}

#[test]
fn ports_and_ip_blocks_must_parse() {
    assert_eq!(
        reasons(
            "  rules:\n  - to: [{operation: {ports: [\"80\", \"0\", http], notPorts: [\"65536\"]}}]\n"
        ),
        [
            "spec.rules[0].to[0].operation.ports[1]: \"0\" is not a port number (1-65535)",
            "spec.rules[0].to[0].operation.ports[2]: \"http\" is not a port number (1-65535)",
            "spec.rules[0].to[0].operation.notPorts[0]: \"65536\" is not a port number (1-65535)",
        ]
    );
    assert_eq!(
        reasons(
            "  rules:\n  - from: [{source: {ipBlocks: [10.0.0.1, 10.0.0.0/8, 300.0.0.1], notRemoteIpBlocks: [\"fe80::/129\"]}}]\n"
        ),
        [
            "spec.rules[0].from[0].source.ipBlocks[2]: \"300.0.0.1\" is not an IP address or CIDR",
            "spec.rules[0].from[0].source.notRemoteIpBlocks[0]: \"fe80::/129\" is not an IP address or CIDR",
        ]
    );
    // Prefix lengths written "08" or "+8" are typos (and the proxy refuses them).
    assert_eq!(
        reasons(
            "  rules:\n  - from: [{source: {ipBlocks: [10.0.0.0/08, 10.0.0.0/+8, 10.0.0.0/0]}}]\n"
        ),
        [
            "spec.rules[0].from[0].source.ipBlocks[0]: \"10.0.0.0/08\" is not an IP address or CIDR",
            "spec.rules[0].from[0].source.ipBlocks[1]: \"10.0.0.0/+8\" is not an IP address or CIDR",
        ]
    );
}

#[test]
fn paths_use_edge_wildcards_or_whole_segment_templates_never_both() {
    let ok = [
        "/api",
        "/api/*",
        "*.js",
        "*",
        "/a/{*}/b",
        "/a/{**}",
        "/{*}",
        "/a/{*}/{**}",
        "/a/%20b/{*}",
    ];
    for p in ok {
        warnings(&format!(
            "  rules:\n  - to: [{{operation: {{paths: [\"{p}\"]}}}}]\n"
        ));
    }
    let bad = [
        (
            "/a/*/b",
            "'*' is only allowed at the start or the end of a path (or use the templates {*} and {**} as whole segments)",
        ),
        (
            "/a/{id}",
            "'{' and '}' are only allowed in the path templates {*} and {**}",
        ),
        (
            "/a/{**}/b",
            "{**} may appear once, as the last segment of a path template",
        ),
        (
            "/{**}/{**}",
            "{**} may appear once, as the last segment of a path template",
        ),
        (
            "/a/{*}.txt",
            "the path templates {*} and {**} must be whole segments",
        ),
        (
            "/a/{*}/b*",
            "'*' cannot be mixed with the path templates {*} and {**}",
        ),
        ("a/{*}", "a path template must start with '/'"),
        (
            "/a/{**}/",
            "{**} may appear once, as the last segment of a path template",
        ),
        (
            "/a b/{*}",
            "a path template's literal segments may only hold URL path characters",
        ),
    ];
    for (p, why) in bad {
        assert_eq!(
            reason(&format!(
                "  rules:\n  - to: [{{operation: {{notPaths: [\"{p}\"]}}}}]\n"
            )),
            format!("spec.rules[0].to[0].operation.notPaths[0]: \"{p}\": {why}"),
            "{p}"
        );
    }
}

#[test]
fn selector_and_target_refs_exclude_each_other_and_targets_are_checked() {
    assert_eq!(
        reason(
            "  selector: {matchLabels: {app: web}}\n  targetRefs: [{kind: Service, name: web}]\n"
        ),
        "spec.selector: only one of selector or targetRef/targetRefs may be set"
    );
    assert_eq!(
        reason(
            "  targetRef: {kind: Service, name: web}\n  targetRefs: [{kind: Service, name: db}]\n"
        ),
        "spec.targetRef: only one of targetRef or targetRefs may be set"
    );
    assert_eq!(
        reason("  targetRefs: [{kind: Service, name: web, namespace: other}]\n"),
        "spec.targetRefs[0].namespace: must be the policy's own namespace \"default\", not \"other\""
    );
    assert_eq!(
        reason("  targetRefs: [{kind: Service}]\n"),
        "spec.targetRefs[0].name: is required"
    );
    assert_eq!(
        reason("  targetRefs: [{group: apps, kind: Deployment, name: web}]\n"),
        "spec.targetRefs[0]: group \"apps\" kind \"Deployment\" cannot be targeted; supported: Service (core), and gateway.networking.k8s.io Gateway and GatewayClass, networking.istio.io ServiceEntry"
    );
    let gateway =
        warnings("  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: gw}]\n");
    assert!(
        gateway
            .iter()
            .any(|w| w.contains("spec.targetRefs[0]: Gateway targets apply to nothing in Sinew")),
        "{gateway:#?}"
    );
    assert!(warnings("  targetRef: {group: \"\", kind: Service, name: web}\n").is_empty());
}

#[test]
fn the_dry_run_annotation_is_read_and_must_be_a_boolean() {
    let annotated = |value: &str| {
        format!(
            "apiVersion: security.istio.io/v1beta1\nkind: AuthorizationPolicy\nmetadata:\n  name: a\n  annotations: {{istio.io/dry-run: \"{value}\"}}\nspec: {{action: DENY, rules: [{{}}]}}\n"
        )
    };
    for (value, dry_run) in [("true", true), ("false", false), ("1", true)] {
        let snapshot = parse_files(&[("x.yaml", &annotated(value))]).unwrap();
        assert_eq!(
            snapshot.authorization_policies()[0].dry_run,
            dry_run,
            "{value}"
        );
    }
    let plain = parse_files(&[("x.yaml", &policy("  rules: [{}]\n"))]).unwrap();
    assert!(!plain.authorization_policies()[0].dry_run);
    let got = problems(&[("x.yaml", &annotated("yes"))]);
    assert!(
        got.len() == 1
            && got[0].contains(
                "metadata.annotations.istio.io/dry-run: must be \"true\" or \"false\", not \"yes\""
            ),
        "{got:?}"
    );
}
