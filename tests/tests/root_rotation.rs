//! End to end on local mode: `sinewctl root rotate` under steady load. The control plane trusts
//! both roots, re-issues every proxy under the new one and drops the old one, and not one
//! request fails; nothing restarts.
//!
//! Needs what `local_mode.rs` needs (root, iproute2, iptables, util-linux, curl).

mod support;

use sinew_tests::local::LocalMesh;
use sinew_tests::process::{run_bounded, wait_until};
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use support::Scratch;

const MESH: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {sinew-injection: enabled}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: client, namespace: shop}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: web, namespace: shop}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      serviceAccountName: web
      containers:
        - name: app
          command: [sinew-demo, backend, --name, web, --listen, "0.0.0.0:8080"]
---
apiVersion: v1
kind: Pod
metadata: {name: client-0, namespace: shop}
spec:
  serviceAccountName: client
  containers:
    - name: app
      command: [sinew-demo, backend, --name, client, --listen, "0.0.0.0:8080"]
"#;

/// Hex SHA-256 of each certificate in a PEM file.
fn sha256s(path: &Path) -> Vec<String> {
    let pem = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    sinew_proxy::tls::pem_sha256s(&pem).unwrap()
}

/// `sinewctl status --json`.
fn status(mesh: &LocalMesh) -> serde_json::Value {
    let out = mesh.ctl(&["status", "--json"]);
    serde_json::from_slice(&out.stdout).unwrap_or_default()
}

/// The control plane's `/metrics`, fetched inside its network namespace.
fn control_plane_metrics(mesh: &LocalMesh) -> String {
    let s = support::state(mesh);
    let netns = s["controlPlaneNetns"].as_str().expect("run.json names it");
    let address = s["controlPlaneAddress"]
        .as_str()
        .expect("run.json names it");
    let ip = address.rsplit_once(':').expect("ip:port").0;
    let mut cmd = Command::new("ip");
    cmd.args([
        "netns",
        "exec",
        netns,
        "curl",
        "-sS",
        "--fail",
        "--max-time",
        "5",
    ])
    .arg(format!("http://{ip}:15014/metrics"));
    let out = run_bounded(cmd, Duration::from_secs(10)).expect("run curl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("metrics are UTF-8")
}

/// The meshed pods, as (namespace, name).
fn meshed_pods(mesh: &LocalMesh) -> Vec<(String, String)> {
    let s = status(mesh);
    s["pods"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["pod"]["meshed"] == true)
        .map(|p| {
            (
                p["pod"]["namespace"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                p["pod"]["name"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// The TLS part of a pod's proxy's `/config_dump`.
fn proxy_tls(mesh: &LocalMesh, ns: &str, pod: &str) -> serde_json::Value {
    let (_, body) = mesh.exec(
        ns,
        pod,
        &[
            "curl",
            "-sS",
            "--max-time",
            "5",
            "http://127.0.0.1:15000/config_dump",
        ],
    );
    serde_json::from_str::<serde_json::Value>(&body).unwrap_or_default()["tls"].clone()
}

/// Requests a pod's sidecar has sent and got a 2xx for.
fn outbound_ok(mesh: &LocalMesh, ns: &str, pod: &str) -> u64 {
    let (_, metrics) = mesh.exec(ns, pod, &["curl", "-s", "http://127.0.0.1:15020/metrics"]);
    metrics
        .lines()
        .find(|l| l.starts_with(r#"sinew_requests_total{direction="outbound",status_class="2xx"}"#))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

#[test]
fn the_root_rotates_under_load_without_a_failed_request_or_a_restart() {
    let Some(bin_dir) = support::prerequisites(
        "root_rotation::the_root_rotates_under_load_without_a_failed_request_or_a_restart",
    ) else {
        return;
    };
    let scratch = Scratch::new("rotation");
    let dir = scratch.mesh_dir(MESH);
    let run = LocalMesh::unique_name("rot");
    let mut mesh = LocalMesh::up(&bin_dir, &dir, &run);
    let cp_dir = mesh.dir().join("control-plane");
    let pods = meshed_pods(&mesh);
    assert_eq!(pods.len(), 3, "{pods:?}");

    // Before: one root, and every proxy's certificate chains to it.
    let old = sha256s(&cp_dir.join("root-cert.pem"));
    assert_eq!(old.len(), 1);
    let old = old[0].clone();
    assert_eq!(sha256s(&cp_dir.join("trust-bundle.pem")), [old.as_str()]);
    let pids_before: Vec<_> = pods
        .iter()
        .map(|(ns, pod)| support::pod_state(&mesh, ns, pod)["proxy"]["pid"].clone())
        .collect();
    for (ns, pod) in &pods {
        wait_until(
            &format!("{ns}/{pod} holds a certificate"),
            Duration::from_secs(30),
            || {
                let tls = proxy_tls(&mesh, ns, pod);
                if tls["certificateRootSha256"] == old.as_str() {
                    Ok(())
                } else {
                    Err(tls.to_string())
                }
            },
        )
        .unwrap();
    }

    // Steady load from client-0 to web for the whole rotation (bounded: 60 s at 20/s).
    let load = {
        let mut cmd = Command::new(&mesh.sinewctl);
        cmd.args(["--name", &run, "--state-root"])
            .arg(&mesh.state_root)
            .args(["exec", "-n", "shop", "client-0", "--"])
            .args(["sinew-demo", "load", "--target", "http://web.shop/"])
            .args(["--rps", "20", "--duration", "60", "--report-secs", "120"]);
        std::thread::spawn(move || run_bounded(cmd, Duration::from_secs(120)))
    };
    let sent_before = outbound_ok(&mesh, "shop", "client-0");
    wait_until("the load is flowing", Duration::from_secs(30), || {
        let now = outbound_ok(&mesh, "shop", "client-0");
        if now >= sent_before + 20 {
            Ok(())
        } else {
            Err(format!("{now} (from {sent_before})"))
        }
    })
    .unwrap();

    let rotate = mesh.ctl(&["root", "rotate", "--phase-timeout-secs", "40"]);
    assert!(
        rotate.status.success(),
        "{}{}",
        String::from_utf8_lossy(&rotate.stdout),
        String::from_utf8_lossy(&rotate.stderr)
    );
    // A rotation that stops (a wait timed out) fails the test at once, with the reason.
    wait_until("the rotation is done", Duration::from_secs(90), || {
        let rotation = status(&mesh)["controlPlane"]["rotation"].clone();
        match rotation["phase"].as_str() {
            Some("done") => Ok(()),
            _ if !rotation["error"].is_null() => panic!("the rotation stopped: {rotation}"),
            _ => Err(rotation.to_string()),
        }
    })
    .unwrap();
    assert!(
        !load.is_finished(),
        "the load ended before the rotation did: it did not cover the whole rotation"
    );
    // The control plane's metrics say the same, for alerts.
    let metrics = control_plane_metrics(&mesh);
    for line in [
        "sinew_cp_root_rotation_phase{phase=\"done\"} 1",
        "sinew_cp_root_rotation_phase{phase=\"issue\"} 0",
        "sinew_cp_root_rotation_stopped 0",
        "sinew_cp_root_rotation_pending_proxies 0",
        "sinew_cp_root_rotations_completed_total 1",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "{line:?} not in:\n{metrics}"
        );
    }

    // After: the stored root and the bundle are the new root alone; the old one is archived.
    let new = sha256s(&cp_dir.join("root-cert.pem"));
    assert_eq!(new.len(), 1);
    let new = new[0].clone();
    assert_ne!(new, old, "the root did not change");
    assert_eq!(sha256s(&cp_dir.join("trust-bundle.pem")), [new.as_str()]);
    let archived: Vec<String> = std::fs::read_dir(cp_dir.join("root-archive"))
        .unwrap()
        .flat_map(|e| sha256s(&e.unwrap().path().join("root-cert.pem")))
        .collect();
    assert_eq!(archived, [old.as_str()]);

    // Every proxy: a certificate under the new root, a bundle without the old one; same
    // process as before (nothing restarted).
    for (ns, pod) in &pods {
        wait_until(
            &format!("{ns}/{pod} trusts only the new root"),
            Duration::from_secs(30),
            || {
                let tls = proxy_tls(&mesh, ns, pod);
                if tls["certificateRootSha256"] == new.as_str()
                    && tls["trustAnchorsSha256"] == serde_json::json!([new])
                {
                    Ok(())
                } else {
                    Err(tls.to_string())
                }
            },
        )
        .unwrap();
    }
    let pids_after: Vec<_> = pods
        .iter()
        .map(|(ns, pod)| support::pod_state(&mesh, ns, pod)["proxy"]["pid"].clone())
        .collect();
    assert_eq!(pids_after, pids_before, "a proxy restarted");

    let out = load.join().unwrap().expect("load generator finished");
    let report = String::from_utf8_lossy(&out.stdout);
    let total = report
        .lines()
        .find(|l| l.starts_with("load: total"))
        .unwrap_or_else(|| {
            panic!(
                "no total line: {report}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    assert!(total.contains(" 0 failed"), "{total}");
    assert!(!total.starts_with("load: total 0 sent"), "{total}");
    // New connections after the rotation work too.
    let (ok, body) = mesh.exec(
        "shop",
        "client-0",
        &[
            "curl",
            "-sS",
            "--fail",
            "--max-time",
            "5",
            "http://web.shop/",
        ],
    );
    assert!(ok, "{body}");

    let said = mesh.down();
    assert!(said.contains("stopping local mesh"), "{said}");
}
