use super::*;

fn snapshot(yaml: &str) -> Snapshot {
    Snapshot::from_yaml("t.yaml", yaml).expect("valid test YAML")
}

fn pod(name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec: {{containers: [{{name: a}}]}}\n---\n"
    )
}

fn pod_at(name: &str, ip: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec: {{containers: [{{name: a}}]}}\nstatus: {{podIP: {ip}}}\n---\n"
    )
}

fn service(name: &str, extra: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec: {{selector: {{app: x}}, ports: [{{port: 80}}]{extra}}}\n---\n"
    )
}

fn ip_of(a: &Addresses, name: &str) -> Option<String> {
    a.current()
        .pod_ips
        .get(&("default".to_string(), name.to_string()))
        .map(|ip| ip.to_string())
}

fn vip_of(a: &Addresses, name: &str) -> Option<String> {
    a.current()
        .service_vips
        .get(&("default".to_string(), name.to_string()))
        .map(|ip| ip.to_string())
}

#[test]
fn new_objects_get_the_lowest_free_addresses_of_their_ranges() {
    let mut a = Addresses::default();
    let errors = a.assign(&snapshot(&format!(
        "{}{}{}",
        pod("a"),
        pod("b"),
        service("web", "")
    )));
    assert!(errors.is_empty(), "{errors:?}");
    // 198.18.0.1 is the control plane's.
    assert_eq!(ip_of(&a, "a").as_deref(), Some("198.18.0.2"));
    assert_eq!(ip_of(&a, "b").as_deref(), Some("198.18.0.3"));
    assert_eq!(vip_of(&a, "web").as_deref(), Some("198.19.0.1"));
}

#[test]
fn an_address_stays_with_its_object_while_others_come_and_go() {
    let mut a = Addresses::default();
    a.assign(&snapshot(&format!("{}{}", pod("a"), pod("b"))));
    assert_eq!(ip_of(&a, "b").as_deref(), Some("198.18.0.3"));
    // `a` goes, `c` comes: `b` keeps its address, `c` takes the one `a` freed.
    a.assign(&snapshot(&format!("{}{}", pod("b"), pod("c"))));
    assert_eq!(ip_of(&a, "a"), None);
    assert_eq!(ip_of(&a, "b").as_deref(), Some("198.18.0.3"));
    assert_eq!(ip_of(&a, "c").as_deref(), Some("198.18.0.2"));
}

#[test]
fn declared_addresses_are_never_handed_out_and_win_over_an_assigned_one() {
    let mut a = Addresses::default();
    a.assign(&snapshot(&format!("{}{}", pod("a"), pod("b"))));
    assert_eq!(ip_of(&a, "a").as_deref(), Some("198.18.0.2"));
    // `c` now declares `a`'s address: `a` moves to a free one, `c` is not in the assignments.
    a.assign(&snapshot(&format!(
        "{}{}{}",
        pod("a"),
        pod("b"),
        pod_at("c", "198.18.0.2")
    )));
    assert_eq!(ip_of(&a, "c"), None, "declared, not assigned");
    assert_eq!(ip_of(&a, "b").as_deref(), Some("198.18.0.3"));
    assert_eq!(ip_of(&a, "a").as_deref(), Some("198.18.0.4"));
    // A declared clusterIP works the same for VIPs.
    let mut a = Addresses::default();
    a.assign(&snapshot(&format!(
        "{}{}",
        service("fixed", ", clusterIP: 198.19.0.1"),
        service("web", "")
    )));
    assert_eq!(vip_of(&a, "fixed"), None);
    assert_eq!(vip_of(&a, "web").as_deref(), Some("198.19.0.2"));
}

#[test]
fn headless_services_get_no_vip() {
    let mut a = Addresses::default();
    a.assign(&snapshot(&service("db", ", clusterIP: None")));
    assert!(a.current().service_vips.is_empty());
}

#[test]
fn a_full_range_names_the_pod_left_without_an_address() {
    let lo = Ipv4Addr::new(198, 18, 0, 2);
    let mut a = Addresses::with_ranges((lo, lo), VIP_RANGE);
    let errors = a.assign(&snapshot(&format!("{}{}", pod("a"), pod("b"))));
    assert_eq!(ip_of(&a, "a").as_deref(), Some("198.18.0.2"));
    assert_eq!(ip_of(&a, "b"), None);
    assert_eq!(errors, ["pod default/b: no free address left"]);
}
