use std::collections::BTreeMap;
use std::net::IpAddr;

use sinew_proto::config::v1::Protocol;

use super::*;
use crate::registry::Assignments;
use crate::registry::testutil::{demo, key, parse_files};

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test IP")
}

/// The demo with every pod and the reviews service addressed.
fn addressed_demo() -> Snapshot {
    let mut a = Assignments::default();
    a.pod_ips
        .insert(key("shop", "reviews-1"), ip("198.18.0.11"));
    a.pod_ips
        .insert(key("shop", "reviews-0"), ip("198.18.0.10"));
    a.pod_ips.insert(key("shop", "ratings"), ip("198.18.0.12"));
    a.pod_ips.insert(key("legacy", "db"), ip("198.18.0.13"));
    a.service_vips
        .insert(key("shop", "reviews"), ip("198.19.0.1"));
    parse_files(&demo())
        .expect("demo is valid")
        .with_assignments(&a)
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn service_resources_one_per_tcp_port_with_endpoints_and_identities() {
    let resources = addressed_demo().service_resources("cluster.local");
    let index: Vec<_> = resources
        .iter()
        .map(|r| (r.namespace.as_str(), r.name.as_str(), r.port))
        .collect();
    assert_eq!(
        index,
        [
            ("legacy", "db", 5432),
            ("shop", "ratings", 8080),
            ("shop", "reviews", 9080),
            ("shop", "reviews", 9090),
            ("shop", "reviews", 9100),
        ],
        "sorted, and the UDP port 53 is not a mesh resource"
    );

    let http = &resources[2];
    assert_eq!(
        http.names,
        ["198.19.0.1:9080", "reviews.shop.svc.cluster.local:9080"]
    );
    let reviews_labels = labels(&[("app", "reviews"), ("version", "v1")]);
    let identity = "spiffe://cluster.local/ns/shop/sa/reviews";
    assert_eq!(
        http.service,
        Service {
            name: "reviews.shop.svc.cluster.local".into(),
            addresses: vec!["198.19.0.1:9080".into()],
            endpoints: vec![
                Endpoint {
                    address: "198.18.0.10:9080".into(),
                    identity: identity.into(),
                    mesh_port: 15006,
                    labels: reviews_labels.clone(),
                    workload: Some(reviews_workload("reviews-0")),
                },
                Endpoint {
                    address: "198.18.0.11:9080".into(),
                    identity: identity.into(),
                    mesh_port: 15006,
                    labels: reviews_labels.clone(),
                    workload: Some(reviews_workload("reviews-1")),
                },
            ],
            protocol: Protocol::Http1 as i32,
            port: 9080,
            ..Default::default()
        }
    );
    // targetPort defaults to the port.
    let grpc = &resources[3];
    assert_eq!(grpc.service.protocol, Protocol::Grpc as i32);
    assert_eq!(
        grpc.service
            .endpoints
            .iter()
            .map(|e| e.address.as_str())
            .collect::<Vec<_>>(),
        ["198.18.0.10:9090", "198.18.0.11:9090"]
    );
    assert_eq!(
        resources[4].service.protocol,
        Protocol::Tcp as i32,
        "appProtocol wins over the name"
    );

    // The trust domain is the caller's.
    let other = addressed_demo().service_resources("example.org");
    assert_eq!(
        other[2].service.endpoints[0].identity,
        "spiffe://example.org/ns/shop/sa/reviews"
    );
}

#[test]
fn unmeshed_endpoints_have_no_identity() {
    let resources = addressed_demo().service_resources("cluster.local");
    // ratings opted out; db lives in a namespace without injection.
    let ratings = &resources[1];
    assert_eq!(
        ratings.service.protocol,
        Protocol::Detect as i32,
        "unnamed port is sniffed"
    );
    assert_eq!(
        ratings.service.endpoints,
        [Endpoint {
            address: "198.18.0.12:8080".into(),
            identity: String::new(),
            mesh_port: 0,
            labels: labels(&[("app", "ratings")]),
            workload: Some(sinew_proto::config::v1::Workload {
                name: "ratings".into(),
                namespace: "shop".into(),
                app: "ratings".into(),
                version: String::new(),
                canonical_service: "ratings".into(),
                canonical_revision: "latest".into(),
                pod: "ratings".into(),
            }),
        }]
    );
    let db = &resources[0];
    assert_eq!(
        db.service.addresses,
        ["198.19.0.99:5432"],
        "clusterIP from the YAML"
    );
    assert_eq!(
        db.names,
        ["198.19.0.99:5432", "db.legacy.svc.cluster.local:5432"]
    );
    assert_eq!(db.service.protocol, Protocol::Tcp as i32);
    assert_eq!(db.service.endpoints.len(), 1);
    assert!(db.service.endpoints[0].identity.is_empty());
}

#[test]
fn pods_without_an_address_are_not_endpoints_and_services_without_vip_have_no_address() {
    let snap = parse_files(&demo()).expect("demo is valid");
    let resources = snap.service_resources("cluster.local");
    let reviews = &resources[2];
    assert!(reviews.service.endpoints.is_empty());
    assert!(reviews.service.addresses.is_empty());
    assert_eq!(reviews.names, ["reviews.shop.svc.cluster.local:9080"]);
}

#[test]
fn named_target_port_resolves_per_pod() {
    // Two versions listen on different numbers under the same port name.
    let text = r#"apiVersion: v1
kind: Service
metadata: {name: web}
spec: {selector: {app: web}, ports: [{name: http, port: 80, targetPort: web}]}
---
apiVersion: v1
kind: Pod
metadata: {name: web-v1, labels: {app: web}}
spec: {containers: [{name: app, ports: [{name: web, containerPort: 8080}]}]}
status: {podIP: 198.18.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: web-v2, labels: {app: web}}
spec: {containers: [{name: side}, {name: app, ports: [{name: web, containerPort: 9090}]}]}
status: {podIP: 198.18.0.2}
---
apiVersion: v1
kind: Pod
metadata: {name: web-v3, labels: {app: web}}
spec: {containers: [{name: app, ports: [{name: other, containerPort: 7070}]}]}
status: {podIP: 198.18.0.3}
---
apiVersion: v1
kind: Pod
metadata: {name: elsewhere, labels: {app: api}}
spec: {containers: [{name: app, ports: [{name: web, containerPort: 8080}]}]}
status: {podIP: 198.18.0.4}
"#;
    let snap = parse_files(&[("w.yaml", text)]).expect("valid");
    let resources = snap.service_resources("cluster.local");
    let addresses: Vec<_> = resources[0]
        .service
        .endpoints
        .iter()
        .map(|e| e.address.as_str())
        .collect();
    assert_eq!(addresses, ["198.18.0.1:8080", "198.18.0.2:9090"]);
    assert_eq!(
        snap.warnings().len(),
        1,
        "web-v3 lacks the port: {:?}",
        snap.warnings()
    );
}

#[test]
fn ipv6_addresses_are_bracketed() {
    let text = "apiVersion: v1\nkind: Service\nmetadata: {name: v6}\nspec: {clusterIP: \"fd00::1\", selector: {app: v6}, ports: [{port: 80}]}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: v6, labels: {app: v6}}\nspec: {containers: [{name: app}]}\nstatus: {podIP: \"fd00::2\"}\n";
    let snap = parse_files(&[("v6.yaml", text)]).expect("valid");
    let r = &snap.service_resources("cluster.local")[0];
    assert_eq!(r.service.addresses, ["[fd00::1]:80"]);
    assert_eq!(r.service.endpoints[0].address, "[fd00::2]:80");
}

// === endpoints from EndpointSlices ===

/// `shop` (meshed) with Service `web` (ports `http` 80 and `grpc` 9090, selector `app: web`) and
/// pod `web-0` at 10.0.0.1; `web`'s endpoints are then `slices`.
fn with_slices(slices: Vec<EndpointEntry>) -> Snapshot {
    let text = "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {sinew-injection: enabled}}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\nspec: {selector: {app: web}, clusterIP: 10.96.0.10, ports: [{name: http, port: 80, targetPort: 8080}, {name: grpc, port: 9090}]}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: web-0, namespace: shop, labels: {app: web, version: v1}}\nspec: {containers: [{name: app}]}\nstatus: {podIP: 10.0.0.1}\n";
    let mut snap = parse_files(&[("web.yaml", text)]).expect("valid");
    let web = snap
        .services_mut()
        .get_mut(&key("shop", "web"))
        .expect("web is declared");
    web.endpoints = Endpoints::Slices(slices);
    snap
}

/// A slice endpoint serving `http` on 8080 and `grpc` on 9090.
fn slice_endpoint(ip: &str, ready: bool, serving: bool, terminating: bool) -> EndpointEntry {
    EndpointEntry {
        ip: ip.parse().expect("test IP"),
        ports: vec![(Some("http".into()), 8080), (Some("grpc".into()), 9090)],
        ready,
        serving,
        terminating,
        pod: None,
    }
}

/// The endpoint addresses of `web`'s port `port`.
fn addresses(snap: &Snapshot, port: u16) -> Vec<String> {
    let r = snap
        .service_resources("cluster.local")
        .into_iter()
        .find(|r| r.name == "web" && r.port == port)
        .expect("web has the port");
    r.service.endpoints.into_iter().map(|e| e.address).collect()
}

#[test]
fn slices_replace_the_selector_and_serve_at_the_slice_port_of_the_same_name() {
    // 10.0.0.1 is also a selected pod; the slices decide, not the selector.
    let mut other_ports = slice_endpoint("10.0.0.3", true, true, false);
    other_ports.ports = vec![(Some("metrics".into()), 9100)];
    let snap = with_slices(vec![
        slice_endpoint("10.0.0.2", true, true, false),
        other_ports,
    ]);
    assert_eq!(addresses(&snap, 80), ["10.0.0.2:8080"]);
    assert_eq!(addresses(&snap, 9090), ["10.0.0.2:9090"]);
}

#[test]
fn an_unnamed_service_port_matches_the_unnamed_slice_port() {
    let mut snap = with_slices(vec![EndpointEntry {
        ports: vec![(None, 8081)],
        ..slice_endpoint("10.0.0.2", true, true, false)
    }]);
    let web = snap
        .services_mut()
        .get_mut(&key("shop", "web"))
        .expect("declared");
    web.ports.truncate(1);
    web.ports[0].name = None;
    assert_eq!(addresses(&snap, 80), ["10.0.0.2:8081"]);
}

#[test]
fn only_ready_endpoints_serve_while_any_is_ready() {
    let snap = with_slices(vec![
        slice_endpoint("10.0.0.2", true, true, false),
        // Terminating but still serving: not used while a ready one exists.
        slice_endpoint("10.0.0.3", false, true, true),
        // Starting, not ready yet.
        slice_endpoint("10.0.0.4", false, false, false),
    ]);
    assert_eq!(addresses(&snap, 80), ["10.0.0.2:8080"]);
}

#[test]
fn serving_terminating_endpoints_are_used_when_none_is_ready() {
    let snap = with_slices(vec![
        slice_endpoint("10.0.0.3", false, true, true),
        // Terminating and no longer serving: never.
        slice_endpoint("10.0.0.4", false, false, true),
        // Serving but not terminating (not ready for another reason): not a fallback.
        slice_endpoint("10.0.0.5", false, true, false),
    ]);
    assert_eq!(addresses(&snap, 80), ["10.0.0.3:8080"]);
}

#[test]
fn no_ready_and_no_serving_terminating_endpoint_means_no_endpoints() {
    let snap = with_slices(vec![slice_endpoint("10.0.0.4", false, false, false)]);
    assert_eq!(addresses(&snap, 80), Vec::<String>::new());
}

#[test]
fn a_slice_endpoint_of_a_known_meshed_pod_gets_its_identity_and_labels() {
    let snap = with_slices(vec![
        EndpointEntry {
            pod: Some(("shop".into(), "web-0".into())),
            ..slice_endpoint("10.0.0.1", true, true, false)
        },
        EndpointEntry {
            pod: Some(("shop".into(), "not-listed-yet".into())),
            ..slice_endpoint("10.0.0.9", true, true, false)
        },
    ]);
    let r = snap
        .service_resources("cluster.local")
        .into_iter()
        .find(|r| r.port == 80)
        .expect("web:80");
    let [known, unknown] = r.service.endpoints.as_slice() else {
        panic!("two endpoints: {:?}", r.service.endpoints);
    };
    assert_eq!(known.address, "10.0.0.1:8080");
    assert_eq!(known.identity, "spiffe://cluster.local/ns/shop/sa/default");
    assert_eq!(known.mesh_port, u32::from(MESH_INBOUND_PORT));
    assert_eq!(known.labels.get("version").map(String::as_str), Some("v1"));
    assert_eq!(unknown.address, "10.0.0.9:8080");
    assert_eq!((unknown.identity.as_str(), unknown.mesh_port), ("", 0));
    assert!(unknown.labels.is_empty());
    // Only the known pod is told which port it serves.
    assert_eq!(r.pod_ports, [("web-0".to_string(), 8080)]);
}

#[test]
fn an_address_in_two_slices_is_one_endpoint() {
    let snap = with_slices(vec![
        slice_endpoint("10.0.0.2", true, true, false),
        slice_endpoint("10.0.0.2", true, true, false),
    ]);
    assert_eq!(addresses(&snap, 80), ["10.0.0.2:8080"]);
}

/// A pod of the demo's `reviews` Deployment, as its endpoints describe it: the Deployment's
/// name, its `app` and `version` labels.
fn reviews_workload(pod: &str) -> sinew_proto::config::v1::Workload {
    sinew_proto::config::v1::Workload {
        name: "reviews".into(),
        namespace: "shop".into(),
        app: "reviews".into(),
        version: "v1".into(),
        canonical_service: "reviews".into(),
        canonical_revision: "v1".into(),
        pod: pod.into(),
    }
}
