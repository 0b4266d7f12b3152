use super::*;
use crate::registry::testutil::{TempDir, key};

#[test]
fn assignments_file_round_trips() {
    let mut a = Assignments::default();
    a.pod_ips
        .insert(key("shop", "reviews-0"), "198.18.0.10".parse().unwrap());
    a.pod_ips
        .insert(key("shop", "reviews-1"), "198.18.0.11".parse().unwrap());
    a.service_vips
        .insert(key("shop", "reviews"), "198.19.0.10".parse().unwrap());
    let text = a.to_yaml();
    assert_eq!(Assignments::from_yaml(&text), Ok(a.clone()), "{text}");

    let dir = TempDir::new("assignments-round-trip");
    let path = dir.path().join("assignments.yaml");
    a.write_file(&path).unwrap();
    assert_eq!(Assignments::read_file(&path).unwrap(), a);
    // Only the file itself is left: the temporary was renamed over it.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("assignments.yaml")]);
}

#[test]
fn documented_format_parses() {
    let text = "pods:\n  - namespace: shop\n    name: reviews-0\n    ip: 198.18.0.10\nservices:\n  - namespace: shop\n    name: reviews\n    vip: 198.19.0.10\n";
    let a = Assignments::from_yaml(text).unwrap();
    assert_eq!(
        a.pod_ips[&key("shop", "reviews-0")].to_string(),
        "198.18.0.10"
    );
    assert_eq!(
        a.service_vips[&key("shop", "reviews")].to_string(),
        "198.19.0.10"
    );
}

#[test]
fn missing_or_empty_file_is_nothing_assigned() {
    let dir = TempDir::new("assignments-missing");
    assert_eq!(
        Assignments::read_file(&dir.path().join("nope.yaml")).unwrap(),
        Assignments::default()
    );
    assert_eq!(Assignments::from_yaml(""), Ok(Assignments::default()));
    assert_eq!(
        Assignments::from_yaml("pods: []\n"),
        Ok(Assignments::default())
    );
}

#[test]
fn assignments_file_errors_name_the_entry() {
    let bad_ip = "pods:\n- namespace: shop\n  name: a\n  ip: 198.18.0.300\n";
    assert_eq!(
        Assignments::from_yaml(bad_ip),
        Err("pods[0].ip \"198.18.0.300\" is not an IP address".to_string())
    );
    let twice = "services:\n- {namespace: shop, name: a, vip: 198.19.0.1}\n- {namespace: shop, name: a, vip: 198.19.0.2}\n";
    assert_eq!(
        Assignments::from_yaml(twice),
        Err("services[1]: service shop/a is assigned twice".to_string())
    );
    let no_ns = "pods:\n- {namespace: '', name: a, ip: 198.18.0.1}\n";
    assert_eq!(
        Assignments::from_yaml(no_ns),
        Err("pods[0].namespace is required".to_string())
    );
    let typo = "pods:\n- {namespace: shop, name: a, ipp: 198.18.0.1}\n";
    let err = Assignments::from_yaml(typo).unwrap_err();
    assert!(err.contains("ipp"), "{err}");

    let dir = TempDir::new("assignments-bad");
    let path = dir.path().join("assignments.yaml");
    std::fs::write(&path, bad_ip).unwrap();
    let err = Assignments::read_file(&path).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!(
            "{}: invalid assignments file: pods[0].ip",
            path.display()
        )),
        "{err}"
    );
}

#[test]
fn overlay_replaces_per_entry() {
    let mut base = Assignments::default();
    base.pod_ips
        .insert(key("shop", "a"), "198.18.0.1".parse().unwrap());
    base.pod_ips
        .insert(key("shop", "b"), "198.18.0.2".parse().unwrap());
    let mut over = Assignments::default();
    over.pod_ips
        .insert(key("shop", "b"), "198.18.0.20".parse().unwrap());
    let merged = base.overlaid_with(&over);
    assert_eq!(merged.pod_ips[&key("shop", "a")].to_string(), "198.18.0.1");
    assert_eq!(merged.pod_ips[&key("shop", "b")].to_string(), "198.18.0.20");
}
