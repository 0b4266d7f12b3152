use super::*;

const ROOT: &str = "sinew-system";

/// Namespaces `sinew-system`, `shop` and `other`, a Service `web` in `shop` selecting
/// `app: web`, then `policies` (YAML documents).
fn rules(policies: &str) -> AuthorizationRules {
    let yaml = format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: sinew-system}}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: shop}}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: other}}\n---\napiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: shop}}\nspec:\n  selector: {{app: web}}\n  ports: [{{name: http, port: 80}}]\n{policies}"
    );
    let snapshot = Snapshot::from_yaml("a.yaml", &yaml).unwrap_or_else(|e| panic!("{e}"));
    AuthorizationRules::new(&snapshot, ROOT)
}

fn policy(namespace: &str, name: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec:\n{spec}"
    )
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The names of the policies that apply to a workload.
fn applied(r: &AuthorizationRules, namespace: &str, pod: &[(&str, &str)]) -> Vec<String> {
    r.authorization(namespace, &labels(pod))
        .policies
        .into_iter()
        .map(|p| p.name)
        .collect()
}

#[test]
fn without_policies_a_workload_gets_an_empty_authorization() {
    assert_eq!(
        rules("").authorization("shop", &labels(&[("app", "web")])),
        pb::Authorization::default()
    );
}

#[test]
fn scope_follows_istio_root_namespace_namespace_and_selector() {
    let r = rules(
        &[
            policy(ROOT, "mesh", "  action: DENY\n  rules: [{}]\n"),
            policy(
                ROOT,
                "mesh-web",
                "  selector: {matchLabels: {app: web}}\n  rules: [{}]\n",
            ),
            policy("shop", "ns", "  rules: [{}]\n"),
            policy(
                "shop",
                "db-only",
                "  selector: {matchLabels: {app: db}}\n  rules: [{}]\n",
            ),
        ]
        .concat(),
    );
    assert_eq!(
        applied(&r, "shop", &[("app", "web")]),
        ["shop/ns", "sinew-system/mesh", "sinew-system/mesh-web"],
        "sorted by namespace/name"
    );
    assert_eq!(
        applied(&r, "shop", &[("app", "db")]),
        ["shop/db-only", "shop/ns", "sinew-system/mesh"]
    );
    // Root-namespace selector policies reach matching workloads of every namespace.
    assert_eq!(
        applied(&r, "other", &[("app", "web")]),
        ["sinew-system/mesh", "sinew-system/mesh-web"]
    );
    assert_eq!(
        applied(&r, "other", &[("app", "db")]),
        ["sinew-system/mesh"]
    );
}

#[test]
fn a_target_ref_to_a_service_applies_to_the_pods_it_selects() {
    let r = rules(
        &[
            policy("shop", "to-web", "  targetRefs: [{kind: Service, name: web}]\n  rules: [{}]\n"),
            policy(
                "shop",
                "to-ghost",
                "  targetRef: {group: \"\", kind: Service, name: ghost}\n  rules: [{}]\n",
            ),
            policy(
                "shop",
                "to-gateway",
                "  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: gw}]\n  rules: [{}]\n",
            ),
        ]
        .concat(),
    );
    assert_eq!(
        applied(&r, "shop", &[("app", "web"), ("v", "1")]),
        ["shop/to-web"]
    );
    assert!(applied(&r, "shop", &[("app", "db")]).is_empty());
    // Services select in their own namespace only.
    assert!(applied(&r, "other", &[("app", "web")]).is_empty());
    assert_eq!(r.warnings().len(), 1, "{:?}", r.warnings());
    assert!(
        r.warnings()[0]
            .contains("targetRef Service \"ghost\" does not exist in namespace \"shop\""),
        "{:?}",
        r.warnings()
    );
}

#[test]
fn a_policy_is_compiled_field_by_field_with_its_action_and_dry_run() {
    let r = rules(
        "---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: deny-admin\n  namespace: shop\n  annotations: {istio.io/dry-run: \"true\"}\nspec:\n  action: DENY\n  rules:\n  - from:\n    - source: {principals: [cluster.local/ns/a/sa/b], notNamespaces: [shop], ipBlocks: [10.0.0.0/8]}\n    - source: {serviceAccounts: [shop/web], notRemoteIpBlocks: [10.1.0.1]}\n    to:\n    - operation: {hosts: [web], ports: [\"8080\"], methods: [POST], paths: [/admin/*], notPaths: [/admin/public]}\n    when:\n    - {key: \"request.headers[x-user]\", values: [bob], notValues: [alice]}\n",
    );
    let got = r.authorization("shop", &labels(&[]));
    assert_eq!(
        got.policies,
        [pb::AuthorizationPolicy {
            name: "shop/deny-admin".into(),
            action: pb::AuthorizationAction::Deny as i32,
            dry_run: true,
            rules: vec![pb::AuthorizationRule {
                from: vec![
                    pb::AuthorizationSource {
                        principals: vec!["cluster.local/ns/a/sa/b".into()],
                        not_namespaces: vec!["shop".into()],
                        ip_blocks: vec!["10.0.0.0/8".into()],
                        ..Default::default()
                    },
                    pb::AuthorizationSource {
                        service_accounts: vec!["shop/web".into()],
                        not_remote_ip_blocks: vec!["10.1.0.1".into()],
                        ..Default::default()
                    },
                ],
                to: vec![pb::AuthorizationOperation {
                    hosts: vec!["web".into()],
                    ports: vec!["8080".into()],
                    methods: vec!["POST".into()],
                    paths: vec!["/admin/*".into()],
                    not_paths: vec!["/admin/public".into()],
                    ..Default::default()
                }],
                when: vec![pb::AuthorizationCondition {
                    key: "request.headers[x-user]".into(),
                    values: vec!["bob".into()],
                    not_values: vec!["alice".into()],
                }],
            }],
        }]
    );
}

#[test]
fn allow_is_the_default_and_no_rules_stays_no_rules() {
    let r = rules(
        &[
            policy("shop", "deny-all", "  {}\n"),
            policy("shop", "audit", "  action: AUDIT\n  rules: [{}]\n"),
        ]
        .concat(),
    );
    let got = r.authorization("shop", &labels(&[])).policies;
    assert_eq!(got[0].name, "shop/audit");
    assert_eq!(got[0].action, pb::AuthorizationAction::Audit as i32);
    assert_eq!(got[0].rules, [pb::AuthorizationRule::default()]);
    assert_eq!(got[1].name, "shop/deny-all");
    assert_eq!(got[1].action, pb::AuthorizationAction::Allow as i32);
    assert!(
        got[1].rules.is_empty(),
        "an ALLOW policy without rules denies everything"
    );
    assert!(!got[1].dry_run);
}
