use super::*;

fn snapshot(pod_yaml: &str) -> Snapshot {
    Snapshot::from_yaml(
        "t.yaml",
        &format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: default, labels: {{sinew-injection: enabled}}}}\n---\n{pod_yaml}"
        ),
    )
    .expect("valid test YAML")
}

const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: a, command: [x]}]}\n";

#[test]
fn a_pod_is_restarted_when_its_spec_its_sidecar_or_its_address_changes() {
    let snap = snapshot(POD);
    let pod = snap.pod("default", "p").unwrap();
    let ip = Ipv4Addr::new(198, 18, 0, 2);
    let base = digest(pod, true, ip);
    assert_eq!(base, digest(pod, true, ip), "the same pod is left running");
    assert_ne!(base, digest(pod, false, ip), "sidecar removed");
    assert_ne!(
        base,
        digest(pod, true, Ipv4Addr::new(198, 18, 0, 3)),
        "new address"
    );
    let changed = snapshot(&POD.replace("command: [x]", "command: [y]"));
    assert_ne!(
        base,
        digest(changed.pod("default", "p").unwrap(), true, ip),
        "new spec"
    );
}

#[test]
fn the_supervisor_decides_injection_with_the_pods_own_namespace() {
    let snap = snapshot(&format!(
        "{POD}---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: plain}}\n---\n{}",
        POD.replace("name: p}", "name: q, namespace: plain}")
    ));
    assert!(gets_sidecar(&snap, snap.pod("default", "p").unwrap()));
    assert!(!gets_sidecar(&snap, snap.pod("plain", "q").unwrap()));
}

#[test]
fn the_default_run_needs_no_name_flag_in_the_commands_suggested() {
    let root = Path::new("/run/sinew");
    assert_eq!(invocation(&Run::new(root, "local").unwrap()).name_flag, "");
    assert_eq!(
        invocation(&Run::new(root, "demo").unwrap()).name_flag,
        " --name demo"
    );
}
