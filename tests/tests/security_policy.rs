//! End to end on local mode: PeerAuthentication and AuthorizationPolicy, applied as users write
//! them, decide who reaches real pods. Callers are real pods: meshed ones with their own service
//! accounts, and an unmeshed one (`sinew.dev/inject: "false"`) that speaks plaintext.
//!
//! Needs root, iproute2, iptables, util-linux (setpriv) and curl; without them each test fails,
//! or skips with `SINEW_ALLOW_SKIP=1` (see `sinew_tests::host`).

mod support;

use sinew_tests::local::LocalMesh;
use sinew_tests::process::wait_until;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;
use support::Scratch;

/// Namespace `shop` (meshed): `orders` (HTTP on 8080), `db` (the same app, declared TCP), and
/// callers `frontend` and `billing`, each with its own service account; namespace `outside`
/// (not meshed): `outsider`.
const MESH: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {sinew-injection: enabled}}
---
apiVersion: v1
kind: Namespace
metadata: {name: outside}
---
apiVersion: v1
kind: Service
metadata: {name: orders, namespace: shop}
spec:
  selector: {app: orders}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: shop}
spec:
  selector: {app: db}
  ports: [{name: tcp-db, port: 5000, targetPort: 8080}]
"#;

fn pod(ns: &str, name: &str, sa: &str, app: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: {sa}, namespace: {ns}}}\n---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {ns}, labels: {{app: {app}}}}}\nspec:\n  serviceAccountName: {sa}\n  containers:\n    - name: app\n      command: [sinew-demo, backend, --name, {app}, --listen, \"0.0.0.0:8080\"]\n"
    )
}

fn mesh_yaml(extra: &[&str]) -> String {
    let mut docs = vec![
        MESH.to_string(),
        pod("shop", "orders-0", "orders", "orders"),
        pod("shop", "db-0", "db", "db"),
        pod("shop", "frontend-0", "frontend", "frontend"),
        pod("shop", "billing-0", "billing", "billing"),
        pod("outside", "outsider", "outsider", "outsider"),
    ];
    docs.extend(extra.iter().map(|s| s.to_string()));
    docs.join("---\n")
}

fn up(test: &str, scratch: &Scratch, extra: &[&str]) -> Option<LocalMesh> {
    let bin_dir = support::prerequisites(&format!("security_policy::{test}"))?;
    let dir = scratch.mesh_dir(&mesh_yaml(extra));
    Some(LocalMesh::up(
        &bin_dir,
        &dir,
        &LocalMesh::unique_name("sec"),
    ))
}

/// The HTTP status `pod` gets for `method url`, or `None` when the connection was closed or
/// refused without an answer.
fn status(mesh: &LocalMesh, ns: &str, pod: &str, method: &str, url: &str) -> Option<u16> {
    let (ok, out) = mesh.exec(
        ns,
        pod,
        &[
            "curl",
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "10",
            "-X",
            method,
            url,
        ],
    );
    let code: u16 = out.trim().parse().unwrap_or(0);
    (ok && code != 0).then_some(code)
}

fn apply(mesh: &LocalMesh, scratch: &Scratch, file: &str, yaml: &str) {
    let path = scratch.write(file, yaml);
    let out = mesh.ctl(&["apply", "-f", path.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "apply {file}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Waits until `pod` gets `want` for `method url` (a pushed change arrived), bounded.
fn wait_for_status(
    mesh: &LocalMesh,
    (ns, pod): (&str, &str),
    method: &str,
    url: &str,
    want: Option<u16>,
) {
    wait_until(
        &format!("{ns}/{pod}: {method} {url} → {want:?}"),
        Duration::from_secs(30),
        || match status(mesh, ns, pod, method, url) {
            got if got == want => Ok(()),
            got => Err(format!("got {got:?}")),
        },
    )
    .unwrap();
}

/// `GET /stats/prometheus` of a pod's proxy.
fn proxy_metrics(mesh: &LocalMesh, ns: &str, pod: &str) -> String {
    let (ok, out) = mesh.exec(
        ns,
        pod,
        &[
            "curl",
            "-sS",
            "--max-time",
            "5",
            "http://127.0.0.1:15020/stats/prometheus",
        ],
    );
    assert!(ok, "metrics of {ns}/{pod}: {out}");
    out
}

const ORDERS: &str = "http://orders.shop/orders/1";

#[test]
fn strict_refuses_an_unmeshed_caller_and_a_disabled_port_lets_it_in() {
    let scratch = Scratch::new("sec-peer");
    let strict = r#"
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: shop}
spec: {mtls: {mode: STRICT}}
"#;
    let Some(mesh) = up("strict", &scratch, &[strict]) else {
        return;
    };
    assert_eq!(
        status(&mesh, "shop", "frontend-0", "GET", ORDERS),
        Some(200)
    );
    assert_eq!(
        status(&mesh, "outside", "outsider", "GET", ORDERS),
        None,
        "STRICT closes plaintext without an answer"
    );
    // One port of one workload opts out: the unmeshed caller gets in, meshed callers now send
    // plaintext to it (auto-mTLS) and still get in.
    apply(
        &mesh,
        &scratch,
        "disable.yaml",
        r#"
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: orders-plain, namespace: shop}
spec:
  selector: {matchLabels: {app: orders}}
  mtls: {mode: STRICT}
  portLevelMtls: {8080: {mode: DISABLE}}
"#,
    );
    wait_for_status(&mesh, ("outside", "outsider"), "GET", ORDERS, Some(200));
    // The server's proxy has the change; frontend's proxy learns orders' endpoint is plaintext
    // from its own push, which may come a moment later.
    wait_until(
        "a DISABLE port gets plaintext from meshed clients: no verified caller",
        Duration::from_secs(30),
        || {
            let (ok, body) = mesh.exec(
                "shop",
                "frontend-0",
                &["curl", "-sS", "--max-time", "10", ORDERS],
            );
            match ok && (body.contains("\"caller\":\"\"") || body.contains("\"caller\":null")) {
                true => Ok(()),
                false => Err(body),
            }
        },
    )
    .unwrap();
    // The other workload in the namespace is still STRICT.
    assert_eq!(
        status(&mesh, "outside", "outsider", "GET", "http://db.shop:5000/"),
        None
    );
}

#[test]
fn an_allow_policy_admits_one_caller_for_get_and_a_deny_beats_it() {
    let scratch = Scratch::new("sec-authz");
    let allow = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: orders-read, namespace: shop}
spec:
  selector: {matchLabels: {app: orders}}
  action: ALLOW
  rules:
    - from: [{source: {principals: ["cluster.local/ns/shop/sa/frontend"]}}]
      to: [{operation: {methods: ["GET"], paths: ["/orders/*"]}}]
"#;
    let Some(mesh) = up("allow", &scratch, &[allow]) else {
        return;
    };
    let caller = ("shop", "frontend-0");
    wait_for_status(&mesh, caller, "GET", ORDERS, Some(200));
    assert_eq!(
        status(&mesh, "shop", "frontend-0", "POST", ORDERS),
        Some(403)
    );
    assert_eq!(
        status(
            &mesh,
            "shop",
            "frontend-0",
            "GET",
            "http://orders.shop/admin"
        ),
        Some(403)
    );
    // curl normalises dot segments itself unless told not to.
    let (_, out) = mesh.exec(
        "shop",
        "frontend-0",
        &[
            "curl",
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--path-as-is",
            "--max-time",
            "10",
            "http://orders.shop/orders/%2e%2e/admin",
        ],
    );
    assert_eq!(out.trim(), "403", "an encoded dot segment is /admin");
    assert_eq!(status(&mesh, "shop", "billing-0", "GET", ORDERS), Some(403));
    assert_eq!(
        status(&mesh, "outside", "outsider", "GET", ORDERS),
        Some(403)
    );
    let (_, body) = mesh.exec(
        "shop",
        "billing-0",
        &["curl", "-sS", "--max-time", "10", ORDERS],
    );
    assert_eq!(body, "RBAC: access denied");

    apply(
        &mesh,
        &scratch,
        "deny.yaml",
        r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-secrets, namespace: shop}
spec:
  selector: {matchLabels: {app: orders}}
  action: DENY
  rules:
    - to: [{operation: {paths: ["/orders/secret"]}}]
"#,
    );
    wait_for_status(
        &mesh,
        caller,
        "GET",
        "http://orders.shop/orders/secret",
        Some(403),
    );
    assert_eq!(
        status(&mesh, "shop", "frontend-0", "GET", ORDERS),
        Some(200)
    );
    let metrics = proxy_metrics(&mesh, "shop", "orders-0");
    assert!(
        metrics.contains(
            r#"sinew_authz_decisions_total{policy="shop/no-secrets",rule="0",decision="denied",dry_run="false"}"#
        ),
        "{metrics}"
    );
}

#[test]
fn tcp_denial_closes_the_connection_and_dry_run_only_counts() {
    let scratch = Scratch::new("sec-tcp");
    let db_policy = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: db-callers, namespace: shop}
spec:
  selector: {matchLabels: {app: db}}
  rules:
    - from: [{source: {principals: ["cluster.local/ns/shop/sa/frontend"]}}]
"#;
    let Some(mesh) = up("tcp", &scratch, &[db_policy]) else {
        return;
    };
    let db = "http://db.shop:5000/";
    wait_for_status(&mesh, ("shop", "frontend-0"), "GET", db, Some(200));
    assert_eq!(
        status(&mesh, "shop", "billing-0", "GET", db),
        None,
        "the stream is closed before the app answers"
    );

    // A dry-run DENY of everything on orders: logged and counted, never enforced.
    apply(
        &mesh,
        &scratch,
        "dry.yaml",
        r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: lockdown
  namespace: shop
  annotations: {istio.io/dry-run: "true"}
spec:
  selector: {matchLabels: {app: orders}}
  action: DENY
  rules: [{}]
"#,
    );
    let series = r#"sinew_authz_decisions_total{policy="shop/lockdown",rule="0",decision="denied",dry_run="true"}"#;
    wait_until(
        "the dry-run policy counts a request",
        Duration::from_secs(30),
        || {
            assert_eq!(status(&mesh, "shop", "billing-0", "GET", ORDERS), Some(200));
            let metrics = proxy_metrics(&mesh, "shop", "orders-0");
            match metrics.contains(series) {
                true => Ok(()),
                false => Err("not counted yet".to_string()),
            }
        },
    )
    .unwrap();
}

/// One kept-alive connection from the caller's app: a request before a policy is applied and
/// one after, on the same connection.
#[test]
fn a_policy_applied_live_applies_to_the_next_request_on_a_kept_alive_connection() {
    let scratch = Scratch::new("sec-live");
    let Some(mesh) = up("live", &scratch, &[]) else {
        return;
    };
    wait_for_status(&mesh, ("shop", "billing-0"), "GET", ORDERS, Some(200));
    let go = scratch.write("go", "");
    std::fs::remove_file(&go).unwrap();
    // The app runs as an unprivileged user: it signals in a directory anyone may write.
    let signals = scratch.0.join("signals");
    std::fs::create_dir(&signals).unwrap();
    std::fs::set_permissions(&signals, std::fs::Permissions::from_mode(0o777)).unwrap();
    let first_done = signals.join("first-done");
    // Python's http.client keeps one connection. It says `first-done` after its first answer
    // (the policy must not land before that request) and waits for `go` before the second.
    let script = format!(
        r#"
import http.client, os, time
c = http.client.HTTPConnection("orders.shop", 80, timeout=10)
c.request("GET", "/orders/1"); r = c.getresponse(); r.read(); print(r.status, flush=True)
open({first_done:?}, "w").close()
sock = c.sock
deadline = time.time() + 60
while not os.path.exists({go:?}) and time.time() < deadline: time.sleep(0.05)
c.request("GET", "/orders/1"); r = c.getresponse(); r.read(); print(r.status, c.sock is sock)
"#,
        go = go.to_str().unwrap(),
        first_done = first_done.to_str().unwrap()
    );
    let caller = std::thread::scope(|s| {
        // stderr too: a Python error is what the assertion below shows.
        let run = s.spawn(|| {
            let script_file = scratch.write("keepalive.py", &script);
            let cmd = format!("python3 {} 2>&1", script_file.display());
            mesh.exec("shop", "billing-0", &["sh", "-c", &cmd])
        });
        wait_until(
            "the caller's first request is answered",
            Duration::from_secs(30),
            || match first_done.exists() || run.is_finished() {
                true => Ok(()),
                false => Err("no answer yet".to_string()),
            },
        )
        .unwrap();
        apply(
            &mesh,
            &scratch,
            "deny-billing.yaml",
            r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-billing, namespace: shop}
spec:
  selector: {matchLabels: {app: orders}}
  action: DENY
  rules: [{from: [{source: {principals: ["cluster.local/ns/shop/sa/billing"]}}]}]
"#,
        );
        // The policy is in force once a fresh connection is refused.
        wait_for_status(&mesh, ("shop", "billing-0"), "GET", ORDERS, Some(403));
        std::fs::write(&go, "").unwrap();
        run.join().unwrap()
    });
    let (ok, out) = caller;
    assert!(ok, "{out}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["200", "403 True"],
        "same connection, allowed then denied"
    );
}
