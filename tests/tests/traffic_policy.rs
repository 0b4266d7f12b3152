//! End to end on local mode: DestinationRules and VirtualServices, applied as users write them,
//! change what real requests between real pods do. Each test runs its own small mesh (`sinewctl
//! up`) and talks to it only as a user would: `sinewctl exec` (curl from a pod), `apply`, and the
//! client proxy's admin API.
//!
//! Needs root, iproute2, iptables, util-linux (setpriv) and curl; without them each test fails,
//! or skips with `SINEW_ALLOW_SKIP=1` (see `sinew_tests::host`).

mod support;

use sinew_tests::local::LocalMesh;
use sinew_tests::process::wait_until;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;
use support::{Scratch, manifests, pod_state};

/// The meshed `default` namespace and a client pod to curl from.
const BASE: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: default, labels: {sinew-injection: enabled}}
---
apiVersion: v1
kind: Pod
metadata: {name: client-0}
spec:
  containers:
    - name: app
      command: [sinew-demo, backend, --name, client, --listen, "0.0.0.0:8080"]
"#;

/// A Service `name` on port 80 selecting `app: <name>`.
fn service(name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  selector: {{app: {name}}}\n  ports: [{{name: http, port: 80, targetPort: 8080}}]\n"
    )
}

/// A demo backend pod of service `app` reporting `reported` as its service name, with extra
/// labels and backend flags.
fn backend(pod: &str, app: &str, labels: &str, reported: &str, flags: &[&str]) -> String {
    let flags: String = flags.iter().map(|f| format!(", \"{f}\"")).collect();
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {pod}, labels: {{app: {app}{labels}}}}}\nspec:\n  containers:\n    - name: app\n      command: [sinew-demo, backend, --name, {reported}, --listen, \"0.0.0.0:8080\"{flags}]\n"
    )
}

fn mesh_yaml(docs: &[String]) -> String {
    let mut out = BASE.to_string();
    for d in docs {
        out.push_str("---\n");
        out.push_str(d);
    }
    out
}

/// Starts a mesh from `docs` (plus [`BASE`]); `None` when the test cannot run here.
fn up(test: &str, scratch: &Scratch, docs: &[String]) -> Option<LocalMesh> {
    let bin_dir = support::prerequisites(&format!("traffic_policy::{test}"))?;
    let dir = scratch.mesh_dir(&mesh_yaml(docs));
    Some(LocalMesh::up(&bin_dir, &dir, &LocalMesh::unique_name("tp")))
}

/// One HTTP exchange as curl saw it.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: BTreeMap<String, String>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", String::as_str)
    }

    /// The `service` the demo backend reported, or "" for an answer that is not the backend's.
    fn backend(&self) -> String {
        serde_json::from_str::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| v["service"].as_str().map(str::to_owned))
            .unwrap_or_default()
    }
}

/// `curl -i` from a pod with extra arguments; panics if curl itself fails (no HTTP answer).
fn curl(mesh: &LocalMesh, pod: &str, url: &str, extra: &[&str]) -> Answer {
    let mut cmd = vec!["curl", "-sS", "-i", "--max-time", "10"];
    cmd.extend_from_slice(extra);
    cmd.push(url);
    let (ok, out) = mesh.exec("default", pod, &cmd);
    assert!(ok, "curl {url} from {pod} failed: {out}");
    parse_answer(&out).unwrap_or_else(|| panic!("not an HTTP answer from {url}: {out:?}"))
}

fn parse_answer(text: &str) -> Option<Answer> {
    let (head, body) = text.split_once("\r\n\r\n")?;
    let mut lines = head.lines();
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Some(Answer {
        status,
        headers,
        body: body.to_string(),
    })
}

/// `GET path` on the client pod's proxy admin API (127.0.0.1:15000 in its namespace).
fn admin(mesh: &LocalMesh, path: &str) -> serde_json::Value {
    let url = format!("http://127.0.0.1:15000{path}");
    let (ok, out) = mesh.exec(
        "default",
        "client-0",
        &["curl", "-sS", "--max-time", "5", &url],
    );
    assert!(ok, "GET {path} on client-0's proxy failed: {out}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{path} is not JSON: {e}: {out}"))
}

/// The client proxy's resolved config for service `name` (port 80), once it has one.
fn service_config(mesh: &LocalMesh, name: &str) -> Option<serde_json::Value> {
    let fqdn = format!("{name}.default.svc.cluster.local");
    let dump = admin(mesh, "/config_dump");
    let services = dump["config"]["services"]
        .as_array()
        .or_else(|| dump["services"].as_array())?;
    services
        .iter()
        .find(|s| s["name"] == fqdn.as_str())
        .cloned()
}

/// Waits until the client proxy's config for `name` satisfies `check` (a pushed change arrived).
fn wait_for_config(
    mesh: &LocalMesh,
    name: &str,
    what: &str,
    check: impl Fn(&serde_json::Value) -> bool,
) {
    wait_until(what, Duration::from_secs(30), || {
        match service_config(mesh, name) {
            Some(s) if check(&s) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .unwrap();
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

/// The seed DestinationRule our users start from, unchanged (examples/traffic-policy/).
fn seed_rule() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/traffic-policy/seed-destinationrule.yaml");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_seed_destination_rule_applies_unchanged_and_ejects_a_replica_answering_503() {
    let scratch = Scratch::new("tp-seed");
    let docs = [
        service("myservice"),
        backend("good-0", "myservice", "", "good", &[]),
        backend("bad-0", "myservice", "", "bad", &["--fail-percent", "100"]),
    ];
    let Some(mesh) = up(
        "the_seed_destination_rule_applies_unchanged_and_ejects_a_replica_answering_503",
        &scratch,
        &docs,
    ) else {
        return;
    };
    apply(&mesh, &scratch, "seed.yaml", &seed_rule());
    // The first request subscribes the client's proxy to the service (it may go out before the
    // policy arrives, so its answer does not count); the policy follows.
    curl(&mesh, "client-0", "http://myservice/", &[]);
    wait_for_config(
        &mesh,
        "myservice",
        "the seed's policy reached client-0",
        |s| s["trafficPolicy"]["outlierDetection"]["consecutive5xxErrors"] == 2,
    );
    let svc = service_config(&mesh, "myservice").unwrap();
    let policy = &svc["trafficPolicy"];
    assert_eq!(policy["tls"]["mode"], "ISTIO_MUTUAL", "{svc}");
    assert_eq!(
        policy["connectionPool"]["http1MaxPendingRequests"], 100,
        "{svc}"
    );
    assert_eq!(
        policy["connectionPool"]["maxRequestsPerConnection"], 10,
        "{svc}"
    );
    assert_eq!(policy["outlierDetection"]["interval"], "60s", "{svc}");
    assert_eq!(
        policy["outlierDetection"]["baseEjectionTime"], "30s",
        "{svc}"
    );
    assert_eq!(
        policy["outlierDetection"]["maxEjectionPercent"], 100,
        "{svc}"
    );

    // Sequential requests: the bad replica answers 503 twice in a row (the default retry policy
    // does not retry a 503), is ejected, and every later request goes to the good one.
    let answers: Vec<Answer> = (0..30)
        .map(|_| curl(&mesh, "client-0", "http://myservice/", &[]))
        .collect();
    let failures: Vec<usize> = (0..answers.len())
        .filter(|i| answers[*i].status == 503)
        .collect();
    assert_eq!(failures.len(), 2, "503s at {failures:?}: {answers:?}");
    let last = *failures.last().unwrap();
    assert!(
        answers[last + 1..]
            .iter()
            .all(|a| a.status == 200 && a.backend() == "good"),
        "after the ejection: {:?}",
        &answers[last + 1..]
    );
    assert!(
        last + 1 < answers.len() - 10,
        "bad-0 ejected late: {failures:?}"
    );

    // The admin API says so: bad-0 ejected, good-0 healthy.
    let bad_ip = pod_state(&mesh, "default", "bad-0")["ip"]
        .as_str()
        .expect("bad-0 has an IP")
        .to_string();
    let clusters = admin(&mesh, "/clusters");
    let endpoints: Vec<&serde_json::Value> = clusters["services"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| {
            s["service"]
                .as_str()
                .is_some_and(|n| n.starts_with("myservice."))
        })
        .flat_map(|s| s["endpoints"].as_array().into_iter().flatten())
        .collect();
    assert_eq!(endpoints.len(), 2, "{clusters}");
    for e in endpoints {
        let is_bad = e["address"]
            .as_str()
            .is_some_and(|a| a.starts_with(&format!("{bad_ip}:")));
        assert_eq!(e["healthy"], !is_bad, "{e}");
        if is_bad {
            assert_eq!(e["timesEjected"], 1, "{e}");
        }
    }
}

#[test]
fn retries_hide_a_backend_failing_two_in_three_only_with_a_virtual_service() {
    let scratch = Scratch::new("tp-retry");
    let docs = [
        service("flaky"),
        backend("flaky-0", "flaky", "", "flaky", &["--fail-sequence", "2/3"]),
    ];
    let Some(mesh) = up(
        "retries_hide_a_backend_failing_two_in_three_only_with_a_virtual_service",
        &scratch,
        &docs,
    ) else {
        return;
    };
    // Istio's default policy retries connect failures and resets, never a 503 answer.
    let statuses: Vec<u16> = (0..9)
        .map(|_| curl(&mesh, "client-0", "http://flaky/", &[]).status)
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 503).count(),
        6,
        "{statuses:?}"
    );

    apply(
        &mesh,
        &scratch,
        "retries.yaml",
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: flaky}\nspec:\n  hosts: [flaky]\n  http:\n  - route: [{destination: {host: flaky}}]\n    retries: {attempts: 3, retryOn: 5xx}\n",
    );
    wait_for_config(&mesh, "flaky", "the VirtualService reached client-0", |s| {
        s["httpRoutes"][0]["retries"]["attempts"] == 3
    });
    let answers: Vec<Answer> = (0..9)
        .map(|_| curl(&mesh, "client-0", "http://flaky/", &[]))
        .collect();
    assert!(
        answers
            .iter()
            .all(|a| a.status == 200 && a.backend() == "flaky"),
        "{answers:?}"
    );
}

#[test]
fn a_full_connection_pool_fails_fast_with_503_and_x_envoy_overloaded() {
    let scratch = Scratch::new("tp-pool");
    // The backend holds every request for a minute: the two that get a slot stay in flight for
    // the whole test, and nothing here waits for them.
    let docs = [
        service("slow"),
        backend("slow-0", "slow", "", "slow", &["--slow-percent", "100", "--slow-ms", "60000"]),
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: slow}\nspec:\n  host: slow\n  trafficPolicy:\n    connectionPool:\n      tcp: {maxConnections: 1}\n      http: {http1MaxPendingRequests: 1}\n".to_string(),
    ];
    let Some(mesh) = up(
        "a_full_connection_pool_fails_fast_with_503_and_x_envoy_overloaded",
        &scratch,
        &docs,
    ) else {
        return;
    };
    // Istio's circuit-breaking task: one HTTP/1 request holds the only connection and one waits
    // for it (the proxy's /clusters says so); then eight more are refused at once, without
    // reaching the backend. The holders are killed at the end.
    let script = r#"
curl -s -o /dev/null --max-time 90 http://slow/ & h1=$!
curl -s -o /dev/null --max-time 90 http://slow/ & h2=$!
n=0
until curl -s http://127.0.0.1:15000/clusters | grep -Eq '"pending": 1(,|$)'; do
  n=$((n+1)); if [ $n -gt 300 ]; then echo "no request ever waited"; kill $h1 $h2; exit 1; fi
  sleep 0.1
done
pids=""
for i in 1 2 3 4 5 6 7 8; do
  curl -s -o /dev/null --max-time 20 -w '%{http_code} %header{x-envoy-overloaded} %header{sinew-response-flags}
' http://slow/ & pids="$pids $!"
done
wait $pids
kill $h1 $h2
"#;
    let (ok, out) = mesh.exec("default", "client-0", &["sh", "-c", script]);
    assert!(ok, "{out}");
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    assert_eq!(lines, ["503 true UO"; 8], "{out}");
}

#[test]
fn a_route_timeout_answers_504_instead_of_waiting_for_a_slow_backend() {
    let scratch = Scratch::new("tp-timeout");
    let docs = [
        service("slow"),
        backend("slow-0", "slow", "", "slow", &["--slow-percent", "100", "--slow-ms", "2000"]),
        "apiVersion: networking.istio.io/v1beta1\nkind: VirtualService\nmetadata: {name: slow}\nspec:\n  hosts: [slow.default.svc.cluster.local]\n  http:\n  - timeout: 500ms\n    route: [{destination: {host: slow}}]\n".to_string(),
    ];
    let Some(mesh) = up(
        "a_route_timeout_answers_504_instead_of_waiting_for_a_slow_backend",
        &scratch,
        &docs,
    ) else {
        return;
    };
    let a = curl(&mesh, "client-0", "http://slow/", &[]);
    assert_eq!(a.status, 504, "{a:?}");
    assert_eq!(a.header("sinew-response-flags"), "UT", "{a:?}");
    assert_eq!(a.body.trim(), "upstream request timeout", "{a:?}");
}

#[test]
fn routes_by_header_and_by_weighted_subsets_and_injects_faults() {
    let scratch = Scratch::new("tp-routes");
    let docs = [
        service("canary"),
        backend("canary-v1-0", "canary", ", version: v1", "canary-v1", &[]),
        backend("canary-v2-0", "canary", ", version: v2", "canary-v2", &[]),
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: canary}\nspec:\n  host: canary\n  subsets:\n  - {name: v1, labels: {version: v1}}\n  - {name: v2, labels: {version: v2}}\n".to_string(),
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: canary}\nspec:\n  hosts: [canary]\n  http:\n  - match: [{headers: {x-canary: {exact: \"yes\"}}}]\n    route: [{destination: {host: canary, subset: v2}}]\n  - match: [{uri: {prefix: /teapot}}]\n    fault: {abort: {httpStatus: 418, percentage: {value: 100}}}\n    route: [{destination: {host: canary, subset: v1}}]\n  - route:\n    - {destination: {host: canary, subset: v1}, weight: 100}\n    - {destination: {host: canary, subset: v2}, weight: 0}\n".to_string(),
    ];
    let Some(mesh) = up(
        "routes_by_header_and_by_weighted_subsets_and_injects_faults",
        &scratch,
        &docs,
    ) else {
        return;
    };
    for _ in 0..10 {
        assert_eq!(
            curl(&mesh, "client-0", "http://canary/", &[]).backend(),
            "canary-v1"
        );
        let canary = curl(
            &mesh,
            "client-0",
            "http://canary/",
            &["-H", "x-canary: yes"],
        );
        assert_eq!(canary.backend(), "canary-v2", "{canary:?}");
    }
    let teapot = curl(&mesh, "client-0", "http://canary/teapot", &[]);
    assert_eq!(teapot.status, 418, "{teapot:?}");
    assert_eq!(teapot.header("sinew-response-flags"), "FI", "{teapot:?}");

    // Half and half: both subsets serve within 40 requests (the chance that one does not is
    // 2 in 2^40).
    apply(
        &mesh,
        &scratch,
        "split.yaml",
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: canary}\nspec:\n  hosts: [canary]\n  http:\n  - route:\n    - {destination: {host: canary, subset: v1}, weight: 50}\n    - {destination: {host: canary, subset: v2}, weight: 50}\n",
    );
    wait_for_config(&mesh, "canary", "the 50/50 split reached client-0", |s| {
        s["httpRoutes"][0]["destinations"][1]["weight"] == 50
    });
    let seen: std::collections::BTreeSet<String> = (0..40)
        .map(|_| curl(&mesh, "client-0", "http://canary/", &[]).backend())
        .collect();
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        ["canary-v1", "canary-v2"]
    );
}

#[test]
fn an_invalid_destination_rule_is_refused_naming_the_field_and_nothing_changes() {
    let scratch = Scratch::new("tp-invalid");
    let docs = [service("web"), backend("web-0", "web", "", "web", &[])];
    let Some(mesh) = up(
        "an_invalid_destination_rule_is_refused_naming_the_field_and_nothing_changes",
        &scratch,
        &docs,
    ) else {
        return;
    };
    assert_eq!(curl(&mesh, "client-0", "http://web/", &[]).backend(), "web");
    let before = manifests(&mesh);
    let bad = scratch.write(
        "bad.yaml",
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: web}\nspec:\n  host: web\n  trafficPolicy:\n    outlierDetection:\n      interval: 500us\n",
    );
    let out = mesh.ctl(&["apply", "-f", bad.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(&format!("{}: document 1 (line", bad.display()))
            && err.contains("spec.trafficPolicy.outlierDetection.interval"),
        "{err}"
    );
    assert_eq!(
        manifests(&mesh),
        before,
        "a refused apply changed the manifests"
    );
    let svc = service_config(&mesh, "web").expect("client-0 knows web");
    assert!(svc["trafficPolicy"]["outlierDetection"].is_null(), "{svc}");
    assert_eq!(curl(&mesh, "client-0", "http://web/", &[]).backend(), "web");
}
