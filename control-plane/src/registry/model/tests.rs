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
