use std::net::IpAddr;

use super::*;
use crate::registry::entry::Age;
use crate::registry::testutil::{demo, key, parse_files};

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test IP")
}

fn demo_assignments() -> Assignments {
    let mut a = Assignments::default();
    a.pod_ips
        .insert(key("shop", "reviews-0"), ip("198.18.0.10"));
    a.pod_ips
        .insert(key("shop", "reviews-1"), ip("198.18.0.11"));
    a.pod_ips.insert(key("legacy", "db"), ip("198.18.0.13"));
    a.service_vips
        .insert(key("shop", "reviews"), ip("198.19.0.1"));
    a.service_vips
        .insert(key("legacy", "db"), ip("198.19.0.50"));
    a.pod_ips
        .insert(key("shop", "not-a-pod"), ip("198.18.0.99"));
    a
}

#[test]
fn assignments_fill_in_pod_ips_and_vips() {
    let base = parse_files(&demo()).expect("demo is valid");
    let snap = base.with_assignments(&demo_assignments());
    assert_eq!(
        snap.pod("shop", "reviews-0").and_then(|p| p.ip),
        Some(ip("198.18.0.10"))
    );
    assert_eq!(
        snap.pod("shop", "reviews-1").and_then(|p| p.ip),
        Some(ip("198.18.0.11"))
    );
    assert_eq!(
        snap.pod("shop", "ratings").and_then(|p| p.ip),
        None,
        "not assigned"
    );
    assert_eq!(
        snap.service("shop", "reviews").and_then(|s| s.vip),
        Some(ip("198.19.0.1"))
    );
    assert!(
        snap.pod("shop", "not-a-pod").is_none(),
        "assignments add no objects"
    );

    // Replacing the assignments replaces the addresses; the YAML-less base is untouched.
    let again = snap.with_assignments(&Assignments::default());
    assert_eq!(again.pod("shop", "reviews-0").and_then(|p| p.ip), None);
    assert!(again.same_content(&base));
}

#[test]
fn declared_cluster_ip_and_pod_ip_win_over_assignments() {
    let text = r#"apiVersion: v1
kind: Pod
metadata: {name: fixed, labels: {app: fixed}}
spec: {containers: [{name: app}]}
status: {podIP: 198.18.1.1}
---
apiVersion: v1
kind: Service
metadata: {name: fixed}
spec: {clusterIP: 198.19.1.1, selector: {app: fixed}, ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: headless}
spec: {clusterIP: None, selector: {app: fixed}, ports: [{port: 80}]}
"#;
    let base = parse_files(&[("f.yaml", text)]).expect("valid");
    let mut a = Assignments::default();
    a.pod_ips.insert(key("default", "fixed"), ip("198.18.9.9"));
    a.service_vips
        .insert(key("default", "fixed"), ip("198.19.9.9"));
    a.service_vips
        .insert(key("default", "headless"), ip("198.19.9.8"));
    let snap = base.with_assignments(&a);
    assert_eq!(
        snap.pod("default", "fixed").and_then(|p| p.ip),
        Some(ip("198.18.1.1"))
    );
    assert_eq!(
        snap.service("default", "fixed").and_then(|s| s.vip),
        Some(ip("198.19.1.1"))
    );
    assert_eq!(
        snap.service("default", "headless").and_then(|s| s.vip),
        None
    );

    // And the demo's db service keeps its YAML clusterIP too.
    let demo = parse_files(&demo())
        .expect("demo")
        .with_assignments(&demo_assignments());
    assert_eq!(
        demo.service("legacy", "db").and_then(|s| s.vip),
        Some(ip("198.19.0.99"))
    );
}

#[test]
fn same_content_ignores_only_the_generation() {
    let a = parse_files(&demo()).expect("demo");
    let mut b = a.clone();
    b.set_generation(7);
    assert!(a.same_content(&b));
    assert_ne!(a, b);
    let c = a.with_assignments(&demo_assignments());
    assert!(!a.same_content(&c));
}

#[test]
fn declared_default_namespace_replaces_the_implicit_one() {
    let text = "apiVersion: v1\nkind: Namespace\nmetadata: {name: default, labels: {sinew-injection: enabled}}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec: {containers: [{name: app}]}\n";
    let snap = parse_files(&[("n.yaml", text)]).expect("valid");
    assert!(snap.namespaces()["default"].injection_enabled);
    assert!(snap.namespaces()["default"].origin.is_some());
    assert!(snap.pod("default", "a").expect("pod").meshed);
}

#[test]
fn named_target_port_missing_on_a_selected_pod_is_a_warning() {
    let text = r#"apiVersion: v1
kind: Service
metadata: {name: web}
spec: {selector: {app: web}, ports: [{port: 80, targetPort: http}]}
---
apiVersion: v1
kind: Pod
metadata: {name: web, labels: {app: web}}
spec: {containers: [{name: app, ports: [{name: htttp, containerPort: 8080}]}]}
"#;
    let snap = parse_files(&[("w.yaml", text)]).expect("valid: Kubernetes accepts it");
    assert_eq!(
        snap.warnings(),
        [
            "w.yaml: document 1 (line 1): Service \"web\" port 80: Pod \"web\" has no container port named \"http\"; it is not an endpoint of that port"
        ]
    );
}

#[test]
fn from_yaml_reads_one_file() {
    let text =
        "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec: {containers: [{name: app}]}\n";
    let snap = Snapshot::from_yaml("pod.yaml", text).expect("valid");
    assert_eq!(snap.generation(), 1);
    assert!(snap.pod("default", "a").is_some());
    let err = Snapshot::from_yaml("pod.yaml", "apiVersion: v1\nkind: Pod\n").expect_err("no name");
    assert_eq!(
        err.to_string(),
        "pod.yaml: document 1 (line 1): Pod: metadata.name is required"
    );
}

#[test]
fn age_orders_oldest_timestamp_first_then_name_then_namespace() {
    let created = |seconds, namespace: &str, name: &str| Age::Created {
        seconds,
        name: name.into(),
        namespace: namespace.into(),
    };
    // Older wins whatever the names.
    assert!(created(100, "zz", "zz") < created(101, "aa", "aa"));
    // Same second: name first (Istio's configCompareByCreationTime), then namespace.
    assert!(created(100, "zz", "a") < created(100, "aa", "b"));
    assert!(created(100, "aa", "same") < created(100, "bb", "same"));
    // Before the epoch is older still.
    assert!(created(-5, "a", "a") < created(0, "a", "a"));
    // Files: document order.
    assert!(Age::Order(1) < Age::Order(2));
}

// === per-object acceptance (the API source) ===

/// Decodes API objects as the Kubernetes source does: each with its own origin and creation
/// time; a decode rejection becomes a problem of that object.
fn api_parsed(objects: Vec<(i64, serde_json::Value)>) -> Parsed {
    let mut parsed = Parsed::default();
    for (seconds, value) in objects {
        let kind = match value["kind"].as_str() {
            Some("Namespace") => "Namespace",
            Some("Service") => "Service",
            Some("Pod") => "Pod",
            Some("DestinationRule") => "DestinationRule",
            other => panic!("test setup: kind {other:?}"),
        };
        let name = value["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let namespace = value["metadata"]["namespace"].as_str().map(str::to_string);
        let origin = Origin::Object {
            kind,
            namespace: namespace.clone(),
            name: name.clone(),
        };
        let age = Age::Created {
            seconds,
            name,
            namespace: namespace.unwrap_or_default(),
        };
        let mut warnings = Vec::new();
        match crate::registry::object::decode(&value, &origin, age, &mut warnings) {
            Ok(Some(object)) => parsed.docs.push(crate::registry::object::Doc {
                origin: origin.clone(),
                object,
            }),
            Ok(None) => {}
            Err(rejections) => parsed
                .problems
                .extend(rejections.into_iter().map(|r| r.at(&origin))),
        }
        parsed.warnings.extend(
            warnings
                .into_iter()
                .map(|w| format!("{origin}: {}", w.reason)),
        );
    }
    parsed
}

fn shop() -> serde_json::Value {
    serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}})
}

fn api_service(namespace: &str, name: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": 80}]},
    })
}

fn api_rule(name: &str, spec: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": spec,
    })
}

/// A valid Service, a rule that fails validation and a Service in a namespace nobody listed.
fn mixed() -> Parsed {
    api_parsed(vec![
        (1, shop()),
        (1, api_service("shop", "reviews")),
        (2, api_rule("good", serde_json::json!({"host": "reviews"}))),
        (
            3,
            api_rule(
                "bad",
                serde_json::json!({"host": "reviews", "trafficPolicy": {"loadBalancer": {"simpel": "ROUND_ROBIN"}}}),
            ),
        ),
        (4, api_service("ghost", "orphan")),
    ])
}

#[test]
fn per_object_leaves_out_rejected_objects_and_keeps_the_rest() {
    let snap = build(mixed(), Acceptance::PerObject).expect("per-object never fails");
    assert!(snap.service("shop", "reviews").is_some());
    assert!(snap.service("ghost", "orphan").is_none());
    let rules: Vec<&str> = snap
        .destination_rules()
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(rules, ["good"]);

    let rejected: Vec<(String, Vec<String>)> = snap
        .rejected()
        .iter()
        .map(|r| (r.origin.to_string(), r.reasons.clone()))
        .collect();
    assert_eq!(
        rejected,
        [
            (
                "DestinationRule shop/bad".to_string(),
                vec![
                    "spec.trafficPolicy.loadBalancer.simpel: unknown field; did you mean simple?"
                        .to_string()
                ]
            ),
            (
                "Service ghost/orphan".to_string(),
                vec!["Service \"orphan\": namespace \"ghost\" is not listed".to_string()]
            ),
        ]
    );
}

#[test]
fn all_or_nothing_refuses_the_same_objects_whole() {
    let err = build(mixed(), Acceptance::AllOrNothing).expect_err("problems refuse the snapshot");
    let origins: Vec<String> = err
        .problems()
        .iter()
        .map(|p| p.origin.to_string())
        .collect();
    assert_eq!(
        origins,
        ["DestinationRule shop/bad", "Service ghost/orphan"]
    );
}

#[test]
fn per_object_keeps_a_pod_whose_service_account_is_gone_with_a_warning() {
    let pod = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "reviews-0", "namespace": "shop"},
        "spec": {"serviceAccountName": "deleted", "containers": [{"name": "app"}]},
        "status": {"podIP": "10.0.0.7"},
    });
    let snap = build(
        api_parsed(vec![(1, shop()), (1, pod.clone())]),
        Acceptance::PerObject,
    )
    .expect("per-object never fails");
    assert!(snap.pod("shop", "reviews-0").is_some());
    assert!(snap.rejected().is_empty());
    assert!(
        snap.warnings()
            .iter()
            .any(|w| w.contains("service account \"deleted\" is not declared")),
        "{:?}",
        snap.warnings()
    );
    // Files refuse the same pod.
    assert!(
        build(
            api_parsed(vec![(1, shop()), (1, pod)]),
            Acceptance::AllOrNothing
        )
        .is_err()
    );
}

#[test]
fn rules_are_kept_oldest_first_whatever_order_they_were_listed_in() {
    let rule = |name| api_rule(name, serde_json::json!({"host": "reviews"}));
    let parsed = api_parsed(vec![
        (1, shop()),
        (300, rule("newest")),
        (100, rule("b-same-second")),
        (100, rule("a-same-second")),
        (200, rule("middle")),
    ]);
    let snap = build(parsed, Acceptance::PerObject).expect("per-object never fails");
    let rules: Vec<&str> = snap
        .destination_rules()
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(
        rules,
        ["a-same-second", "b-same-second", "middle", "newest"]
    );
}

#[test]
fn a_file_problem_list_groups_by_document_when_accepted_per_object() {
    // Two problems in one document (different lines) are one rejected object.
    let file = |line| Origin::File {
        file: "a.yaml".into(),
        document: 0,
        line,
    };
    let problems = vec![
        Problem::new(file(3), "first"),
        Problem::new(file(7), "second"),
    ];
    let grouped = rejected(problems);
    assert_eq!(grouped.len(), 1);
    assert_eq!(grouped[0].reasons, ["first", "second"]);
    assert_eq!(grouped[0].origin, file(3));
}
