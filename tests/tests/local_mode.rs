//! End to end on local mode: `sinewctl up` runs a mesh from Kubernetes YAML — pods in network
//! namespaces with real iptables interception, sidecars with certificates from the control
//! plane's CA, config streamed over gRPC — and the tests talk to it only the way a user would:
//! `sinewctl exec`, `apply`, `status`, `down`, and killing processes.
//!
//! Needs root, iproute2, iptables, util-linux (setpriv) and curl; without them each test fails,
//! or skips with `SINEW_ALLOW_SKIP=1` (see `sinew_tests::host`).

mod support;

use sinew_tests::local::LocalMesh;
use sinew_tests::process::{run_bounded, wait_until};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use support::{Scratch, manifests, pod_state, state};

const CLIENT_ID: &str = "spiffe://cluster.local/ns/shop/sa/client";

/// Two namespaces: `shop` is meshed (the injection label), `legacy` is not. In shop: `web`
/// (a Deployment), `strict-web` (a pod that accepts only mTLS) and a client pod; in legacy: a
/// plain service and a client of its own.
const MESH: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {sinew-injection: enabled}}
---
apiVersion: v1
kind: Namespace
metadata: {name: legacy}
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
  replicas: 1
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
kind: Service
metadata: {name: strict-web, namespace: shop}
spec:
  selector: {app: strict-web}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Pod
metadata:
  name: strict-web-0
  namespace: shop
  labels: {app: strict-web}
  annotations: {sinew.dev/inbound-mode: STRICT}
spec:
  serviceAccountName: web
  containers:
    - name: app
      command: [sinew-demo, backend, --name, strict-web, --listen, "0.0.0.0:8080"]
---
apiVersion: v1
kind: Pod
metadata: {name: client-0, namespace: shop}
spec:
  serviceAccountName: client
  containers:
    - name: app
      command: [sinew-demo, backend, --name, client, --listen, "0.0.0.0:8080"]
---
apiVersion: v1
kind: Service
metadata: {name: gateway, namespace: shop}
spec:
  selector: {app: gateway}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Pod
metadata: {name: gateway-0, namespace: shop, labels: {app: gateway}}
spec:
  serviceAccountName: client
  containers:
    - name: app
      # Calls a service that does not exist yet: it is applied while this process runs.
      command: [sinew-demo, frontend, --listen, "0.0.0.0:8080", --backend, "http://extra.shop/"]
---
apiVersion: v1
kind: Service
metadata: {name: plain, namespace: legacy}
spec:
  selector: {app: plain}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Pod
metadata: {name: plain-0, namespace: legacy, labels: {app: plain}}
spec:
  containers:
    - name: app
      command: [sinew-demo, backend, --name, plain, --listen, "0.0.0.0:8080"]
---
apiVersion: v1
kind: Pod
metadata: {name: outsider-0, namespace: legacy}
spec:
  containers:
    - name: app
      command: [sinew-demo, backend, --name, outsider, --listen, "0.0.0.0:8080"]
"#;

/// Applied while the mesh runs: a new service and its pod.
const EXTRA: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: extra, namespace: shop}
spec:
  selector: {app: extra}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Pod
metadata: {name: extra-0, namespace: shop, labels: {app: extra}}
spec:
  serviceAccountName: web
  containers:
    - name: app
      command: [sinew-demo, backend, --name, extra, --listen, "0.0.0.0:8080"]
"#;

/// The web Deployment of [`MESH`] with a second replica.
fn web_scaled() -> String {
    let deployment = MESH
        .split("\n---\n")
        .find(|d| d.contains("kind: Deployment"))
        .expect("MESH has the web Deployment");
    assert!(deployment.contains("replicas: 1"));
    deployment.replace("replicas: 1", "replicas: 2")
}

/// GET through the mesh from a pod (curl as the pod's app user): the JSON the demo backend
/// answered, or why not.
fn get(mesh: &LocalMesh, ns: &str, pod: &str, url: &str) -> Result<serde_json::Value, String> {
    let (ok, body) = mesh.exec(ns, pod, &["curl", "-sS", "--fail", "--max-time", "5", url]);
    if !ok {
        return Err(format!("curl {url} from {ns}/{pod} failed: {body}"));
    }
    serde_json::from_str(&body).map_err(|e| format!("not JSON from {url}: {e}: {body:?}"))
}

/// Requests a pod's sidecar has sent and got a 2xx for (its Prometheus counter).
fn outbound_ok(mesh: &LocalMesh, ns: &str, pod: &str) -> u64 {
    let (_, metrics) = mesh.exec(ns, pod, &["curl", "-s", "http://127.0.0.1:15020/metrics"]);
    metrics
        .lines()
        .find(|l| l.starts_with(r#"sinew_requests_total{direction="outbound",status_class="2xx"}"#))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// The host's links and iptables rules, to compare before and after a run: a run never adds
/// either (its links and rules live in its own namespaces).
fn host_view() -> (BTreeSet<String>, BTreeSet<String>) {
    let output = |program: &str, args: &[&str]| {
        let mut cmd = Command::new(program);
        cmd.args(args);
        let out = run_bounded(cmd, Duration::from_secs(30)).expect(program);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let links = output("ip", &["-o", "link", "show"])
        .lines()
        .map(|l| l.split(':').nth(1).unwrap_or_default().trim().to_string())
        .collect();
    let rules = output("iptables-save", &[])
        .lines()
        .filter(|l| l.starts_with("-A"))
        .map(str::to_string)
        .collect();
    (links, rules)
}

fn leftovers(run: &str) -> Vec<String> {
    let prefix = format!("sinew-{run}.");
    let mut out = Vec::new();
    for dir in ["/run/netns", "/etc/netns"] {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with(&prefix) {
                    out.push(format!("{dir}/{name}"));
                }
            }
        }
    }
    out
}

fn pids_of(state: &serde_json::Value) -> Vec<u64> {
    let mut pids = vec![state["supervisorPid"].as_u64().unwrap_or(0)];
    pids.extend(state["controlPlane"]["pid"].as_u64());
    for pod in state["pods"].as_array().into_iter().flatten() {
        pids.extend(pod["proxy"]["pid"].as_u64());
        for c in pod["containers"].as_array().into_iter().flatten() {
            pids.extend(c["pid"].as_u64());
        }
    }
    pids.retain(|p| *p != 0);
    pids
}

fn alive(pid: u64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .and_then(|(_, r)| r.trim().chars().next())
            != Some('Z')
    })
}

#[test]
fn a_local_mesh_from_yaml_works_end_to_end_and_leaves_nothing() {
    let Some(bin_dir) = support::prerequisites(
        "local_mode::a_local_mesh_from_yaml_works_end_to_end_and_leaves_nothing",
    ) else {
        return;
    };
    let scratch = Scratch::new("mesh");
    let dir = scratch.0.join("mesh");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("mesh.yaml"), MESH).unwrap();
    let before = host_view();
    let run = LocalMesh::unique_name("e2e");
    let mut mesh = LocalMesh::up(&bin_dir, &dir, &run);

    // Meshed → meshed over mTLS: the callee's proxy verified the caller's SPIFFE identity.
    let web = get(
        &mesh,
        "shop",
        "client-0",
        "http://web.shop.svc.cluster.local/",
    )
    .unwrap();
    assert_eq!(web["service"], "web");
    assert_eq!(web["caller"], CLIENT_ID, "{web}");
    // Short names resolve in the pod's own namespace.
    let web = get(&mesh, "shop", "client-0", "http://web/").unwrap();
    assert_eq!(web["caller"], CLIENT_ID);

    // Meshed → unmeshed: the sidecar sends plaintext, there is no identity to show.
    let plain = get(&mesh, "shop", "client-0", "http://plain.legacy/").unwrap();
    assert_eq!(plain["service"], "plain");
    assert!(plain["caller"].is_null(), "{plain}");

    // Unmeshed → meshed in PERMISSIVE: plaintext accepted, no caller identity.
    let web = get(&mesh, "legacy", "outsider-0", "http://web.shop/").unwrap();
    assert_eq!(web["service"], "web");
    assert!(web["caller"].is_null(), "{web}");

    // STRICT: plaintext from outside the mesh is refused; mesh callers get through.
    let refused = mesh.ctl(&[
        "exec",
        "-n",
        "legacy",
        "outsider-0",
        "--",
        "curl",
        "-sS",
        "--max-time",
        "5",
        "http://strict-web.shop/",
    ]);
    // 52: the connection closed without a reply; 56: reset. Not a timeout, not an answer.
    assert!(
        matches!(refused.status.code(), Some(52 | 56)),
        "STRICT did not refuse plaintext: {:?} {}{}",
        refused.status,
        String::from_utf8_lossy(&refused.stdout),
        String::from_utf8_lossy(&refused.stderr)
    );
    let strict = get(&mesh, "shop", "client-0", "http://strict-web.shop/").unwrap();
    assert_eq!(strict["caller"], CLIENT_ID);

    // Status shows identities, readiness and certificate expiry.
    let status = mesh.ctl(&["status"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "{text}");
    let client_line = text
        .lines()
        .find(|l| l.contains("client-0"))
        .unwrap_or_else(|| panic!("no client-0 in status: {text}"));
    assert!(
        client_line.contains("  ready  ") && client_line.contains(CLIENT_ID),
        "{text}"
    );
    assert!(
        !text.contains("not ready") && !text.contains("NOT READY"),
        "{text}"
    );
    // A 24 h certificate issued a moment ago shows 23h59m, or 24h0m when status rounds up.
    assert!(
        text.contains("23h") || text.contains("24h0m") || text.contains("1d"),
        "certificate expiry: {text}"
    );

    // A second `up` under the same name is refused plainly.
    let mut again = Command::new(&mesh.sinewctl);
    again
        .args(["--name", &run, "--state-root"])
        .arg(&mesh.state_root)
        .arg("up")
        .arg(&dir);
    let again = run_bounded(again, Duration::from_secs(60)).unwrap();
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("is already running"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );

    // Live config change: a new service and pod, reachable by name without restarting anything.
    let extra = scratch.write("extra.yaml", EXTRA);
    let applied = mesh.ctl(&["apply", "-f", extra.to_str().unwrap()]);
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );
    assert!(String::from_utf8_lossy(&applied.stdout).contains("service/extra created"));
    // The supervisor hands the new name out (hosts files) only once discovery serves its VIP,
    // so no request to it ever goes out in plaintext: every answer shows the caller's identity.
    // Until the new pod's sidecar is up, requests may fail; they never succeed unprotected.
    let reached = wait_until(
        "the applied service answers",
        Duration::from_secs(60),
        || {
            let body = get(&mesh, "shop", "client-0", "http://extra.shop/")?;
            assert_eq!(
                body["caller"], CLIENT_ID,
                "a request to a new service went out in plaintext"
            );
            Ok::<_, String>(body)
        },
    )
    .unwrap();
    assert_eq!(reached["service"], "extra");
    // A process that was already running resolves the new name too (its hosts file is the
    // same file, rewritten in place).
    let via = wait_until(
        "the gateway reaches the new service",
        Duration::from_secs(30),
        || get(&mesh, "shop", "client-0", "http://gateway.shop/"),
    )
    .unwrap();
    assert_eq!(via["backends"][0]["body"]["service"], "extra", "{via}");
    // Scaling a Deployment adds a pod and leaves the running one alone; the new pod takes traffic.
    let web0 = pod_state(&mesh, "shop", "web-0")["containers"][0]["pid"].as_u64();
    assert!(web0.is_some(), "web-0's app runs");
    let scaled = scratch.write("web.yaml", &web_scaled());
    let applied = mesh.ctl(&["apply", "-f", scaled.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&applied.stdout).contains("deployment.apps/web configured"));
    wait_until("web-1 answers", Duration::from_secs(60), || {
        let pod = get(&mesh, "shop", "client-0", "http://web.shop/")?["pod"].clone();
        if pod == "web-1" {
            Ok(())
        } else {
            Err(format!("answered by {pod}"))
        }
    })
    .unwrap();
    assert_eq!(
        pod_state(&mesh, "shop", "web-0")["containers"][0]["pid"].as_u64(),
        web0
    );
    // Deleting removes the pod, its namespace and its name.
    let deleted = mesh.ctl(&["delete", "-f", extra.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&deleted.stdout).contains("pod/extra-0 deleted"));
    wait_until("extra-0 is gone", Duration::from_secs(30), || {
        let gone = !mesh.state().contains("\"extra-0\"")
            && !Path::new(&format!("/run/netns/sinew-{run}.shop.extra-0")).exists();
        if gone {
            Ok(())
        } else {
            Err("still there".to_string())
        }
    })
    .unwrap();
    assert!(get(&mesh, "shop", "client-0", "http://extra.shop/").is_err());

    // An invalid change is refused with file and line, and nothing changes.
    let bad = scratch.write(
        "bad.yaml",
        "apiVersion: v1\nkind: Service\nmetadata: {name: broken, namespace: shop}\nspec:\n  ports: [{port: 0}]\n",
    );
    let manifests_before = manifests(&mesh);
    assert!(!manifests_before.is_empty(), "the run keeps its manifests");
    let refused = mesh.ctl(&["apply", "-f", bad.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        err.contains(&format!("{}: document 1 (line", bad.display())),
        "{err}"
    );
    assert_eq!(
        manifests(&mesh),
        manifests_before,
        "a refused apply changed what the control plane reads"
    );
    assert!(get(&mesh, "shop", "client-0", "http://web.shop/").is_ok());

    // A container that dies is restarted (with backoff) and serves again.
    let app = pod_state(&mesh, "shop", "web-0")["containers"][0].clone();
    let old_pid = app["pid"].as_u64().expect("web-0's app runs");
    assert!(
        Command::new("kill")
            .arg(old_pid.to_string())
            .status()
            .unwrap()
            .success()
    );
    wait_until("web-0's app restarted", Duration::from_secs(30), || {
        let c = pod_state(&mesh, "shop", "web-0")["containers"][0].clone();
        match (c["pid"].as_u64(), c["restarts"].as_u64()) {
            (Some(pid), Some(n)) if pid != old_pid && n >= 1 => Ok(()),
            _ => Err(format!("{c}")),
        }
    })
    .unwrap();
    // web-1 could answer for web.shop while web-0's new app is not listening yet: the load
    // below would then meet it.
    mesh.wait_serving(Duration::from_secs(30)).unwrap();
    wait_until(
        "web answers after its restart",
        Duration::from_secs(30),
        || get(&mesh, "shop", "client-0", "http://web.shop/"),
    )
    .unwrap();

    // The control plane restarts under traffic: proxies keep their config and certificates,
    // not one request fails, and they reconnect.
    let cp_pid = state(&mesh)["controlPlane"]["pid"]
        .as_u64()
        .expect("control plane runs");
    let load = {
        let mut cmd = Command::new(&mesh.sinewctl);
        cmd.args(["--name", &run, "--state-root"])
            .arg(&mesh.state_root)
            .args(["exec", "-n", "shop", "client-0", "--"])
            .args(["sinew-demo", "load", "--target", "http://web.shop/"])
            .args(["--rps", "50", "--duration", "6", "--report-secs", "60"]);
        std::thread::spawn(move || run_bounded(cmd, Duration::from_secs(60)))
    };
    // Kill the control plane once the load is flowing: 20 more requests through client-0's proxy.
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
    assert!(
        Command::new("kill")
            .arg(cp_pid.to_string())
            .status()
            .unwrap()
            .success()
    );
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
    wait_until(
        "the control plane is back with every proxy",
        Duration::from_secs(60),
        || {
            let out = mesh.ctl(&["status", "--json"]);
            let s: serde_json::Value =
                serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
            let meshed = s["pods"].as_array().map_or(0, |p| {
                p.iter().filter(|p| p["pod"]["meshed"] == true).count()
            });
            let cp = &s["controlPlane"];
            let restarted = cp["process"]["pid"].as_u64().is_some_and(|p| p != cp_pid);
            if restarted && cp["ready"] == true && cp["connectedProxies"] == meshed {
                Ok(())
            } else {
                Err(format!("{cp} ({meshed} meshed pods)"))
            }
        },
    )
    .unwrap();

    // Down: nothing of ours is left — processes, namespaces (with their veths, bridge and
    // iptables rules), hosts files, state — and the host's own links and rules are as before.
    let pids = pids_of(&state(&mesh));
    assert!(pids.len() > 10, "{pids:?}");
    let said = mesh.down();
    assert!(said.contains("stopping local mesh"), "{said}");
    assert_eq!(leftovers(&run), Vec::<String>::new());
    let running: Vec<u64> = pids.into_iter().filter(|p| alive(*p)).collect();
    assert!(running.is_empty(), "still running: {running:?}");
    assert!(!mesh.dir().exists(), "{} is left", mesh.dir().display());
    assert_eq!(
        host_view(),
        before,
        "the host's links or iptables rules changed"
    );
}

#[test]
fn bad_input_gets_a_plain_error_and_creates_nothing() {
    let Some(bin_dir) =
        support::prerequisites("local_mode::bad_input_gets_a_plain_error_and_creates_nothing")
    else {
        return;
    };
    let scratch = Scratch::new("bad");
    let sinewctl = bin_dir.join("sinewctl");
    let state_root = scratch.0.join("state");
    let up = |file: &Path, envs: &[(&str, &str)], uid: Option<u32>| {
        let run = LocalMesh::unique_name("bad");
        let mut cmd = match uid {
            Some(uid) => {
                let mut c = Command::new("setpriv");
                c.arg(format!("--reuid={uid}"))
                    .arg(format!("--regid={uid}"))
                    .args(["--clear-groups", "--"])
                    .arg(&sinewctl);
                c
            }
            None => Command::new(&sinewctl),
        };
        cmd.args(["--name", &run, "--state-root"])
            .arg(&state_root)
            .arg("up")
            .arg(file)
            .envs(envs.iter().copied());
        let out = run_bounded(cmd, Duration::from_secs(60)).unwrap();
        assert!(!out.status.success(), "up succeeded on bad input");
        assert!(leftovers(&run).is_empty(), "{:?}", leftovers(&run));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };

    let invalid = scratch.write(
        "invalid.yaml",
        "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec:\n  ports: [{port: 80}]\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: c, command: [x]]\n",
    );
    let err = up(&invalid, &[], None);
    assert!(
        err.contains(&format!("{}: document 2 (line", invalid.display())),
        "{err}"
    );

    let clash = scratch.write(
        "clash.yaml",
        "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {ports: [{port: 80}]}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {ports: [{port: 81}]}\n",
    );
    let err = up(&clash, &[], None);
    assert!(err.contains("is also defined at"), "{err}");

    let addresses = scratch.write(
        "addresses.yaml",
        "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {clusterIP: 198.19.0.7, ports: [{port: 80}]}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: b}\nspec: {clusterIP: 198.19.0.7, ports: [{port: 80}]}\n",
    );
    let err = up(&addresses, &[], None);
    assert!(
        err.contains("address 198.19.0.7 is already used by"),
        "{err}"
    );

    let fine = scratch.write(
        "fine.yaml",
        "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {ports: [{port: 80}]}\n",
    );
    let err = up(&fine, &[("PATH", "/nonexistent")], None);
    assert!(
        err.contains("missing on this machine") && err.contains("iptables"),
        "{err}"
    );
    let err = up(&fine, &[], Some(65534));
    assert!(err.contains("needs root"), "{err}");
}

#[test]
fn down_cleans_up_after_a_crashed_run_while_another_runs_beside_it() {
    let Some(bin_dir) = support::prerequisites(
        "local_mode::down_cleans_up_after_a_crashed_run_while_another_runs_beside_it",
    ) else {
        return;
    };
    let scratch = Scratch::new("crash");
    // One meshed and one unmeshed pod: enough to leave every kind of thing behind.
    let yaml = MESH
        .split("\n---\n")
        .filter(|d| {
            d.contains("kind: Namespace")
                || d.contains("name: client, namespace: shop")
                || d.contains("name: client-0")
                || d.contains("name: outsider-0")
        })
        .collect::<Vec<_>>()
        .join("\n---\n");
    let dir = scratch.0.join("crash");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("mesh.yaml"), yaml).unwrap();
    let run = LocalMesh::unique_name("crash");
    let mut mesh = LocalMesh::up(&bin_dir, &dir, &run);
    // Supervisor, control plane, client-0's proxy and app, outsider-0's app.
    let pids = wait_until("every process recorded", Duration::from_secs(10), || {
        let pids = pids_of(&state(&mesh));
        if pids.len() >= 5 {
            Ok(pids)
        } else {
            Err(format!("{pids:?}"))
        }
    })
    .unwrap();

    // kill -9: the supervisor cannot clean up; its pods and control plane keep running.
    let supervisor = mesh.supervisor_pid().expect("up runs");
    assert!(
        Command::new("kill")
            .args(["-9", &supervisor.to_string()])
            .status()
            .unwrap()
            .success()
    );
    wait_until("the supervisor is gone", Duration::from_secs(10), || {
        if alive(u64::from(supervisor)) {
            Err("alive".to_string())
        } else {
            Ok(())
        }
    })
    .unwrap();
    assert!(
        !leftovers(&run).is_empty(),
        "nothing left to clean: the test proves nothing"
    );
    assert!(
        pids.iter().skip(1).any(|p| alive(*p)),
        "the pods died with the supervisor"
    );

    // Not running any more, as far as the tools can tell; `down` removes what is left. The
    // kernel releases the supervisor's lock on `up.pid` when its last thread has exited, which
    // can be a moment after its main thread shows as a zombie: wait for it, not for a time.
    wait_until("status says no mesh runs", Duration::from_secs(10), || {
        let status = mesh.ctl(&["status"]);
        let said = String::from_utf8_lossy(&status.stderr).into_owned();
        if said.contains("no local mesh") {
            Ok(())
        } else {
            Err(format!(
                "status said: {said}{}",
                String::from_utf8_lossy(&status.stdout)
            ))
        }
    })
    .unwrap();
    let said = mesh.down();
    assert!(said.contains("removed"), "{said}");
    assert_eq!(leftovers(&run), Vec::<String>::new());
    let running: Vec<u64> = pids.into_iter().filter(|p| alive(*p)).collect();
    assert!(running.is_empty(), "still running: {running:?}");
    assert!(!mesh.dir().exists());
}
