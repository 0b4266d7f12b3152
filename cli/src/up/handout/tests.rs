use super::*;
use std::collections::BTreeMap;

/// Service `web` (port 80 → named `http`, port 81 → 9000, a UDP port), headless `db`, and
/// pods `web-a`, `web-b` (container port `http` 8080) and `db-0`.
const MESH: &str = "\
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports:
    - {name: http, port: 80, targetPort: http}
    - {name: admin, port: 81, targetPort: 9000}
    - {name: dns, port: 53, protocol: UDP}
---
apiVersion: v1
kind: Service
metadata: {name: db}
spec: {clusterIP: None, selector: {app: db}, ports: [{port: 5432}]}
---
apiVersion: v1
kind: Pod
metadata: {name: web-a, labels: {app: web}}
spec: {containers: [{name: a, ports: [{name: http, containerPort: 8080}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: web-b, labels: {app: web}}
spec: {containers: [{name: a, ports: [{name: http, containerPort: 8080}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: db-0, labels: {app: db}}
spec: {containers: [{name: a}]}
";

fn key(name: &str) -> PodKey {
    ("default".to_string(), name.to_string())
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn assignments() -> Assignments {
    Assignments {
        pod_ips: BTreeMap::from([
            (key("web-a"), ip("198.18.0.2")),
            (key("web-b"), ip("198.18.0.3")),
            (key("db-0"), ip("198.18.0.4")),
        ]),
        service_vips: BTreeMap::from([(key("web"), ip("198.19.0.1"))]),
    }
}

fn snapshot() -> Snapshot {
    Snapshot::from_yaml("mesh.yaml", MESH).expect("valid test YAML")
}

fn route(vip: &str, port: u16, endpoints: &[(&str, u16)]) -> ServiceRoute {
    ServiceRoute {
        vip: vip.parse().unwrap(),
        port,
        endpoints: endpoints
            .iter()
            .map(|(ip, p)| (ip.parse().unwrap(), *p))
            .collect(),
    }
}

#[test]
fn only_ready_pods_are_endpoints_and_every_vip_is_handed_out() {
    let ready = BTreeSet::from([key("web-b")]);
    let out = endpoints_only(&assignments(), &ready);
    assert_eq!(
        out.pod_ips,
        BTreeMap::from([(key("web-b"), ip("198.18.0.3"))])
    );
    assert_eq!(out.service_vips, assignments().service_vips);
}

#[test]
fn the_view_routes_each_tcp_port_to_the_selected_pods_target_ports() {
    let view = net_view(&snapshot().with_assignments(&assignments()));
    assert_eq!(
        view.routes,
        [
            route(
                "198.19.0.1",
                80,
                &[("198.18.0.2", 8080), ("198.18.0.3", 8080)]
            ),
            route(
                "198.19.0.1",
                81,
                &[("198.18.0.2", 9000), ("198.18.0.3", 9000)]
            ),
        ],
        "the UDP port has no route"
    );
    let vip: Ipv4Addr = "198.19.0.1".parse().unwrap();
    let db: Ipv4Addr = "198.18.0.4".parse().unwrap();
    assert_eq!(view.hosts[&key("web")], [vip]);
    assert_eq!(
        view.hosts[&key("db")],
        [db],
        "headless: the pods' own addresses"
    );
}

#[test]
fn a_pod_not_handed_out_is_in_no_route() {
    let ready = BTreeSet::from([key("web-b")]);
    let published = endpoints_only(&assignments(), &ready);
    let view = net_view(&snapshot().with_assignments(&published));
    assert_eq!(
        view.routes[0],
        route("198.19.0.1", 80, &[("198.18.0.3", 8080)])
    );
    assert!(view.hosts[&key("db")].is_empty());
}

#[test]
fn only_new_or_changed_routes_wait_for_the_control_plane() {
    let old = NetView {
        routes: vec![route("198.19.0.1", 80, &[("198.18.0.2", 8080)])],
        ..NetView::default()
    };
    let new = NetView {
        routes: vec![
            route(
                "198.19.0.1",
                80,
                &[("198.18.0.2", 8080), ("198.18.0.3", 8080)],
            ),
            route("198.19.0.2", 443, &[]),
        ],
        ..NetView::default()
    };
    assert_eq!(
        changed_routes(&old, &new),
        [
            (
                "198.19.0.1:80".to_string(),
                BTreeSet::from(["198.18.0.2:8080".to_string(), "198.18.0.3:8080".to_string()])
            ),
            ("198.19.0.2:443".to_string(), BTreeSet::new()),
        ]
    );
    assert!(changed_routes(&new, &new).is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_change_goes_out_once_every_name_is_served_with_the_newest_generation() {
    let names = vec![
        ("198.19.0.1:80".to_string(), BTreeSet::new()),
        ("198.19.0.1:81".to_string(), BTreeSet::new()),
    ];
    let mut passes = 0;
    let result = wait_served(names, |asked| {
        passes += 1;
        let pass = passes;
        async move {
            match pass {
                // The first pass sees one of them, the second the other (a newer generation).
                1 => vec![("198.19.0.1:80".to_string(), 7)],
                _ => {
                    assert_eq!(asked.len(), 1, "served names are not asked again");
                    vec![("198.19.0.1:81".to_string(), 9)]
                }
            }
        }
    })
    .await;
    assert_eq!(result, Ok(9));
    assert_eq!(passes, 2);
}

#[tokio::test(start_paused = true)]
async fn a_control_plane_that_does_not_serve_a_change_is_waited_for_three_seconds_at_most() {
    let start = Instant::now();
    let names = vec![
        ("198.19.0.1:80".to_string(), BTreeSet::new()),
        ("198.19.0.9:80".to_string(), BTreeSet::new()),
    ];
    let result = wait_served(names, |_| async { vec![("198.19.0.1:80".to_string(), 3)] }).await;
    assert_eq!(result, Err(vec!["198.19.0.9:80".to_string()]));
    let waited = start.elapsed();
    assert!(
        waited > SERVE_WAIT && waited < SERVE_WAIT + Duration::from_millis(100),
        "{waited:?}"
    );
}

#[tokio::test]
async fn nothing_to_wait_for_returns_at_once() {
    let mut asked = 0;
    let result = wait_served(Vec::new(), |_| {
        asked += 1;
        async { Vec::new() }
    })
    .await;
    assert_eq!((result, asked), (Ok(0), 0));
}

#[test]
fn a_name_counts_as_served_only_with_exactly_its_endpoints() {
    let want = BTreeSet::from(["198.18.0.2:8080".to_string()]);
    let body = r#"{"generation": 4, "endpoints": ["198.18.0.2:8080"]}"#;
    assert_eq!(served_from(body, &want), Some(4));
    let more = r#"{"generation": 5, "endpoints": ["198.18.0.2:8080", "198.18.0.3:8080"]}"#;
    assert_eq!(served_from(more, &want), None);
    assert_eq!(served_from("not json", &want), None);
    assert_eq!(
        served_from(r#"{"generation": 1}"#, &BTreeSet::new()),
        Some(1)
    );
}

#[test]
fn proxies_count_as_drained_once_each_has_the_generation() {
    let body = r#"{"proxies": [{"generation": 4}, {"generation": 5}]}"#;
    assert!(every_proxy_at(body, 4));
    assert!(!every_proxy_at(body, 5));
    assert!(every_proxy_at(r#"{"proxies": []}"#, 9));
    assert!(!every_proxy_at("{}", 0));
    assert!(!every_proxy_at("<html>", 0));
}

#[test]
fn a_late_name_is_shown_as_the_service_behind_it() {
    let snap = snapshot().with_assignments(&assignments());
    assert_eq!(service_at(&snap, "198.19.0.1:81"), "default/web:81");
    assert_eq!(service_at(&snap, "198.19.0.7:80"), "198.19.0.7:80");
}

#[tokio::test]
async fn before_pods_run_the_file_is_written_once_with_ready_pods_only() {
    let root = std::env::temp_dir().join(format!("sinewctl-handout-{}", std::process::id()));
    let run = Run::new(&root, "t").unwrap();
    std::fs::create_dir_all(&run.dir).unwrap();
    let mut handout = Handout::new(run.clone());
    let ready = BTreeSet::from([key("web-a")]);
    let errors = handout
        .publish(&snapshot(), &assignments(), ready.clone())
        .await;
    assert!(errors.is_empty(), "{errors:?}");
    let written = std::fs::read_to_string(run.assignments()).unwrap();
    let file = Assignments::from_yaml(&written).unwrap();
    assert_eq!(file, endpoints_only(&assignments(), &ready));
    assert_eq!(handout.published_ready(), &ready);
    // Same content: not rewritten (the control plane would reload for nothing).
    let path = run.assignments();
    assert!(!write_if_changed(&path, &file).unwrap());
    assert!(write_if_changed(&path, &assignments()).unwrap());
    let _ = std::fs::remove_dir_all(&root);
}
