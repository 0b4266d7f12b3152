//! End to end on local mode, for observability: traces from real proxies reach a real OTLP
//! receiver on the host's loopback (through `sinewctl up --otlp-endpoint`'s relay) as one trace
//! per request; a real Prometheus scrapes the proxies and answers the PromQL of Istio's standard
//! dashboards; `sinewctl stat` shows live traffic. Pods, proxies, iptables and network namespaces
//! are all real, as in `local_mode.rs`, and everything is removed at the end (also on failure:
//! `LocalMesh`, `Receiver` and `Prometheus` clean up on drop).
//!
//! Needs root, iproute2, iptables, util-linux (setpriv), curl and, for the Prometheus test,
//! Debian's `prometheus`; without them each test fails, or skips with `SINEW_ALLOW_SKIP=1`.

mod support;

use serde_json::Value;
use sinew_tests::bins;
use sinew_tests::host;
use sinew_tests::local::LocalMesh;
use sinew_tests::process::{run_bounded, signal, wait_exit, wait_until};
use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use support::{Scratch, pod_state, state};

/// A meshed namespace: `client-0` calls `frontend`, whose app calls `backend` and passes the
/// trace headers on (examples/demo's app).
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
metadata: {name: frontend, namespace: shop}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: backend, namespace: shop}
---
apiVersion: v1
kind: Service
metadata: {name: frontend, namespace: shop}
spec:
  selector: {app: frontend}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: frontend, namespace: shop}
spec:
  selector: {matchLabels: {app: frontend}}
  template:
    metadata: {labels: {app: frontend}}
    spec:
      serviceAccountName: frontend
      containers:
        - name: app
          command: [sinew-demo, frontend, --listen, "0.0.0.0:8080",
                    --backend, "http://backend.shop.svc.cluster.local/"]
---
apiVersion: v1
kind: Service
metadata: {name: backend, namespace: shop}
spec:
  selector: {app: backend}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: backend, namespace: shop}
spec:
  selector: {matchLabels: {app: backend}}
  template:
    metadata: {labels: {app: backend}}
    spec:
      serviceAccountName: backend
      containers:
        - name: app
          command: [sinew-demo, backend, --name, backend, --listen, "0.0.0.0:8080"]
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

const FRONTEND_URL: &str = "http://frontend.shop.svc.cluster.local/";
const FRONTEND_SVC: &str = "frontend.shop.svc.cluster.local";
const BACKEND_SVC: &str = "backend.shop.svc.cluster.local";

/// The OTLP receiver standing in for Jaeger's collector: a real OTLP/gRPC `TraceService`
/// (opentelemetry-proto's generated server) that prints one JSON line per span it receives.
const RECEIVER: bins::Set = bins::Set {
    bins: &[(
        "sinew-otlp-receiver",
        "sinew-otlp-receiver",
        &["tests/otlp-receiver/src", "tests/otlp-receiver/Cargo.toml"],
    )],
};

/// The receiver as a child process on the host's loopback, and every span it printed.
struct Receiver {
    child: Option<Child>,
    addr: SocketAddr,
    spans: Arc<Mutex<Vec<Value>>>,
}

impl Receiver {
    fn start() -> Receiver {
        let bin = bins::locate(&RECEIVER).join("sinew-otlp-receiver");
        let mut child = Command::new(&bin)
            .args(["--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let spans = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().expect("piped stdout");
        let sink = spans.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                match serde_json::from_str::<Value>(&line) {
                    Ok(span) => sink.lock().unwrap().push(span),
                    Err(e) => eprintln!("receiver printed a line that is not JSON ({e}): {line}"),
                }
            }
        });
        // It says `listening on ADDR` on stderr once bound (the port the kernel chose).
        let err = child.stderr.take().expect("piped stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                match line
                    .strip_prefix("listening on ")
                    .map(str::parse::<SocketAddr>)
                {
                    Some(Ok(addr)) => {
                        let _ = tx.send(addr);
                    }
                    _ => eprintln!("receiver: {line}"),
                }
            }
        });
        let mut receiver = Receiver {
            child: Some(child),
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            spans,
        };
        receiver.addr = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the OTLP receiver says where it listens");
        wait_until("the OTLP receiver listens", Duration::from_secs(30), || {
            TcpStream::connect(receiver.addr).map_err(|e| e.to_string())
        })
        .unwrap();
        receiver
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The spans of trace `trace_id` received so far.
    fn trace(&self, trace_id: &str) -> Vec<Value> {
        self.spans
            .lock()
            .unwrap()
            .iter()
            .filter(|s| field(s, &["trace_id", "traceId"]) == trace_id)
            .cloned()
            .collect()
    }

    /// Waits for `n` spans of `trace_id`.
    fn wait_for(&self, trace_id: &str, n: usize) -> Vec<Value> {
        wait_until(
            &format!("{n} spans of trace {trace_id}"),
            Duration::from_secs(60),
            || {
                let spans = self.trace(trace_id);
                if spans.len() >= n {
                    Ok(spans)
                } else {
                    Err(format!("{} so far: {spans:?}", spans.len()))
                }
            },
        )
        .unwrap()
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A span's field by any of the names the receiver may use (OTLP's JSON mapping is camelCase,
/// the proto's fields snake_case), as a lower-case string.
fn field(span: &Value, names: &[&str]) -> String {
    names
        .iter()
        .find_map(|n| match &span[*n] {
            Value::String(s) => Some(s.to_ascii_lowercase()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
        .unwrap_or_default()
}

/// A span's kind: "client", "server", or what the receiver wrote.
fn kind(span: &Value) -> String {
    let k = field(span, &["kind"]);
    match k.as_str() {
        "2" => "server".into(),
        "3" => "client".into(),
        _ if k.contains("server") => "server".into(),
        _ if k.contains("client") => "client".into(),
        _ => k,
    }
}

/// An attribute of a span, whether the receiver writes attributes as an object or as OTLP's
/// `[{key, value: {intValue|stringValue…}}]` list.
fn attribute(span: &Value, key: &str) -> Value {
    let attrs = &span["attributes"];
    if let Some(v) = attrs.get(key) {
        return v.clone();
    }
    attrs
        .as_array()
        .and_then(|list| list.iter().find(|a| a["key"] == key))
        .map(|a| {
            let v = &a["value"];
            v.as_object()
                .and_then(|o| o.values().next().cloned())
                .unwrap_or_else(|| v.clone())
        })
        .unwrap_or(Value::Null)
}

fn status_code(span: &Value) -> Option<u64> {
    let v = attribute(span, "http.response.status_code");
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

/// A trace id nobody else uses: this process, this test, this moment.
fn new_trace_id(tag: u8) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{:08x}{tag:02x}{:022x}",
        std::process::id(),
        nanos & ((1 << 88) - 1)
    )
}

/// `client-0` GETs the frontend with a `traceparent` (`sampled` or not): the frontend's answer.
fn traced_get(mesh: &LocalMesh, trace_id: &str, parent: &str, sampled: bool) -> Value {
    let flags = if sampled { "01" } else { "00" };
    let header = format!("traceparent: 00-{trace_id}-{parent}-{flags}");
    let (ok, body) = mesh.exec(
        "shop",
        "client-0",
        &[
            "curl",
            "-sS",
            "--fail",
            "--max-time",
            "10",
            "-H",
            &header,
            FRONTEND_URL,
        ],
    );
    assert!(ok, "the traced request failed: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

fn prerequisites(test: &str, extra: &[&'static str]) -> Option<PathBuf> {
    let mut tools = support::TOOLS.to_vec();
    tools.extend_from_slice(extra);
    match host::require(&tools) {
        Ok(_) => Some(bins::locate(&bins::LOCAL_MODE)),
        Err(reason) => {
            host::skip(test, &reason);
            None
        }
    }
}

/// The mesh of [`MESH`] with `flags` for `up`.
fn start_mesh(bin_dir: &Path, scratch: &Scratch, tag: &str, flags: &[&str]) -> LocalMesh {
    let dir = scratch.mesh_dir(MESH);
    LocalMesh::up_with(bin_dir, &dir, &LocalMesh::unique_name(tag), flags)
}

#[test]
fn a_request_through_two_meshed_hops_is_one_trace() {
    let Some(bin_dir) = prerequisites(
        "observability::a_request_through_two_meshed_hops_is_one_trace",
        &[],
    ) else {
        return;
    };
    let receiver = Receiver::start();
    let scratch = Scratch::new("trace");
    // Sampling 0 %: only the request's own sampled flag makes it traced.
    let mesh = start_mesh(
        &bin_dir,
        &scratch,
        "trace",
        &["--otlp-endpoint", &receiver.url(), "--trace-sampling", "0"],
    );
    let trace_id = new_trace_id(1);
    let root = "00f067aa0ba902b7";
    let answer = traced_get(&mesh, &trace_id, root, true);
    assert_eq!(answer["backends"][0]["status"], 200, "{answer}");

    // client-0's proxy: client span; frontend's: server span, then a client span for the call its
    // app made; backend's: server span.
    let spans = receiver.wait_for(&trace_id, 4);
    let id = |s: &Value| field(s, &["span_id", "spanId"]);
    let parent = |s: &Value| field(s, &["parent_span_id", "parentSpanId"]);
    let child_of = |p: &str, k: &str| -> Value {
        let found: Vec<&Value> = spans
            .iter()
            .filter(|s| parent(s) == p && kind(s) == k)
            .collect();
        assert_eq!(
            found.len(),
            1,
            "one {k} span whose parent is {p}: {spans:#?}"
        );
        found[0].clone()
    };
    let client_1 = child_of(root, "client");
    let server_1 = child_of(&id(&client_1), "server");
    let client_2 = child_of(&id(&server_1), "client");
    let server_2 = child_of(&id(&client_2), "server");
    assert_eq!(spans.len(), 4, "{spans:#?}");
    for s in [&client_1, &server_1, &client_2, &server_2] {
        assert_eq!(status_code(s), Some(200), "{s:#}");
    }
    // The backend's app saw its own proxy's server span as the parent in the header.
    let seen = answer["backends"][0]["body"]["trace"]["traceparent"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(
        seen,
        format!("00-{trace_id}-{}-01", id(&server_2)),
        "{answer}"
    );
}

#[test]
fn an_unsampled_traceparent_makes_no_span_and_a_sampled_one_does() {
    let Some(bin_dir) = prerequisites(
        "observability::an_unsampled_traceparent_makes_no_span_and_a_sampled_one_does",
        &[],
    ) else {
        return;
    };
    let receiver = Receiver::start();
    let scratch = Scratch::new("sampling");
    // 100 %: a request without a decision would be traced; an unsampled parent still wins.
    let mesh = start_mesh(
        &bin_dir,
        &scratch,
        "sampling",
        &[
            "--otlp-endpoint",
            &receiver.url(),
            "--trace-sampling",
            "100",
        ],
    );
    let unsampled = new_trace_id(2);
    traced_get(&mesh, &unsampled, "1111111111111111", false);
    let sampled = new_trace_id(3);
    traced_get(&mesh, &sampled, "2222222222222222", true);
    // Each proxy exports its finished spans in order: once the later request's four spans are
    // in, any span of the earlier one would be too.
    receiver.wait_for(&sampled, 4);
    assert_eq!(receiver.trace(&unsampled), Vec::<Value>::new());
}

/// A proxy's resident memory, from /proc.
fn rss_kib(pid: u64) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"))
}

/// `n` sampled requests from client-0 to the frontend in one curl; how many answered 200.
fn burst(mesh: &LocalMesh, n: u32, trace_id: &str) -> usize {
    let header = format!("traceparent: 00-{trace_id}-3333333333333333-01");
    // In chunks: each `sinewctl exec` is bounded (60 s), and thousands of requests through four
    // debug-built hops can take longer than that on a loaded machine.
    const CHUNK: u32 = 500;
    let mut ok = 0;
    for first in (1..=n).step_by(CHUNK as usize) {
        let last = (first + CHUNK - 1).min(n);
        let url = format!("{FRONTEND_URL}?[{first}-{last}]");
        let out = mesh.ctl(&[
            "exec",
            "-n",
            "shop",
            "client-0",
            "--",
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}\\n",
            "--max-time",
            "10",
            "-H",
            &header,
            &url,
        ]);
        let codes = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            codes.lines().count(),
            (last - first + 1) as usize,
            "{codes}"
        );
        ok += codes.lines().filter(|c| *c == "200").count();
    }
    ok
}

/// A counter without labels from a pod's proxy's metrics.
fn proxy_counter(mesh: &LocalMesh, pod: &str, name: &str) -> f64 {
    let (_, text) = mesh.exec(
        "shop",
        pod,
        &["curl", "-s", "http://127.0.0.1:15020/metrics"],
    );
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {pod}'s metrics:\n{text}"))
}

#[test]
fn with_the_collector_gone_requests_flow_and_proxy_memory_stays_flat() {
    let Some(bin_dir) = prerequisites(
        "observability::with_the_collector_gone_requests_flow_and_proxy_memory_stays_flat",
        &[],
    ) else {
        return;
    };
    let mut receiver = Receiver::start();
    let scratch = Scratch::new("deadcollector");
    let mesh = start_mesh(
        &bin_dir,
        &scratch,
        "dead",
        &["--otlp-endpoint", &receiver.url(), "--trace-sampling", "0"],
    );
    // Traces flow first, so the proxies' exporters are connected when the collector goes.
    let first = new_trace_id(4);
    traced_get(&mesh, &first, "4444444444444444", true);
    receiver.wait_for(&first, 4);
    receiver.stop();

    let trace_id = new_trace_id(5);
    // Warm-up: more spans than any proxy's export queue and batch hold (2048 + 512), so what
    // follows can only grow by a leak.
    const WARM_UP: u32 = 3000;
    const MEASURED: u32 = 4000;
    assert_eq!(burst(&mesh, WARM_UP, &trace_id), WARM_UP as usize);
    let proxies: Vec<(String, u64)> = ["client-0", "frontend-0", "backend-0"]
        .iter()
        .map(|p| {
            let pid = pod_state(&mesh, "shop", p)["proxy"]["pid"]
                .as_u64()
                .unwrap_or_else(|| panic!("{p}'s proxy runs"));
            (p.to_string(), pid)
        })
        .collect();
    let before: Vec<u64> = proxies.iter().map(|(_, pid)| rss_kib(*pid)).collect();
    assert_eq!(burst(&mesh, MEASURED, &trace_id), MEASURED as usize);
    // Each of these requests makes one or two spans in every proxy; keeping them would cost far
    // more than this (a few hundred bytes a span, 4000+ spans).
    const GROWTH_KIB: u64 = 1536;
    for ((pod, pid), before) in proxies.iter().zip(before) {
        let after = rss_kib(*pid);
        eprintln!(
            "{pod}'s proxy: {before} KiB after the warm-up, {after} KiB after {MEASURED} more requests"
        );
        assert!(
            after <= before + GROWTH_KIB,
            "{pod}'s proxy grew from {before} KiB to {after} KiB over {MEASURED} requests with the collector gone"
        );
    }
    // The test proves something only if the proxies made spans they could not send.
    let dropped = proxy_counter(&mesh, "frontend-0", "sinew_trace_spans_dropped_total");
    assert!(
        dropped >= f64::from(MEASURED),
        "frontend-0's proxy dropped {dropped} spans: it was not tracing these requests"
    );
    // The run said so, once.
    let said = mesh.output();
    assert_eq!(
        said.matches("cannot be reached").count(),
        1,
        "the relay reports an outage once: {said}"
    );
}

/// One series of an instant query's answer: its labels and value.
type Series = (BTreeMap<String, String>, f64);

/// A Prometheus inside the control plane's network namespace (it must reach the pods' IPs),
/// scraping every meshed pod's proxy each second.
struct Prometheus {
    child: Option<Child>,
    netns: String,
    port: u16,
}

impl Prometheus {
    fn start(mesh: &LocalMesh, scratch: &Scratch, prometheus: &Path) -> Prometheus {
        let s = state(mesh);
        let netns = s["controlPlaneNetns"]
            .as_str()
            .expect("run.json names it")
            .to_string();
        let targets: Vec<String> = s["pods"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["meshed"] == true)
            .map(|p| format!("\"{}:15020\"", p["ip"].as_str().unwrap_or_default()))
            .collect();
        assert_eq!(targets.len(), 3, "{s}");
        let config = scratch.write(
            "prometheus.yml",
            &format!(
                "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
                 scrape_configs:\n\
                 - job_name: sinew-proxies\n  \
                   metrics_path: /stats/prometheus\n  \
                   static_configs: [{{targets: [{}]}}]\n",
                targets.join(", ")
            ),
        );
        let data = scratch.0.join("prometheus-data");
        let port = 19090;
        let child = Command::new("ip")
            .args(["netns", "exec", &netns])
            .arg(prometheus)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", data.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(scratch.0.join("prometheus.log")).unwrap())
            .spawn()
            .expect("start prometheus");
        Prometheus {
            child: Some(child),
            netns,
            port,
        }
    }

    /// An instant query's result vector: `(labels, value)` per series.
    fn query(&self, promql: &str) -> Result<Vec<Series>, String> {
        let mut cmd = Command::new("ip");
        cmd.args([
            "netns",
            "exec",
            &self.netns,
            "curl",
            "-sS",
            "--max-time",
            "5",
            "-G",
        ])
        .arg("--data-urlencode")
        .arg(format!("query={promql}"))
        .arg(format!("http://127.0.0.1:{}/api/v1/query", self.port));
        let out = run_bounded(cmd, Duration::from_secs(30)).map_err(|e| e.to_string())?;
        let body: Value = serde_json::from_slice(&out.stdout)
            .map_err(|e| format!("{e}: {}", String::from_utf8_lossy(&out.stdout)))?;
        if body["status"] != "success" {
            return Err(format!("{promql}: {body}"));
        }
        Ok(body["data"]["result"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| {
                let labels = r["metric"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect();
                let value = r["value"][1]
                    .as_str()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(f64::NAN);
                (labels, value)
            })
            .collect())
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(child.id(), "TERM");
            if wait_exit(&mut child, Duration::from_secs(10)).is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// Steady traffic client-0 → frontend → backend in the background, stopped when dropped (SIGTERM
/// to its process group: `sinewctl exec` and the load it runs), so a test waits for what it
/// checks and not for the load to run out. `--duration` only bounds a test that hangs.
struct Load {
    child: Child,
}

fn load(mesh: &LocalMesh) -> Load {
    let mut cmd = Command::new(&mesh.sinewctl);
    cmd.args(["--name", &mesh.run, "--state-root"])
        .arg(&mesh.state_root)
        .args(["exec", "-n", "shop", "client-0", "--"])
        .args([
            "sinew-demo",
            "load",
            "--target",
            FRONTEND_URL,
            "--rps",
            "20",
        ])
        .args(["--duration", "300", "--report-secs", "600"])
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    Load {
        child: cmd.spawn().expect("start the load"),
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        for sig in ["-TERM", "-KILL"] {
            let _ = Command::new("kill")
                .args([sig, "--", &group])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            if wait_exit(&mut self.child, Duration::from_secs(10)).is_some() {
                return;
            }
        }
    }
}

/// `(service, value)` for the query's series, by `destination_service`.
fn by_service(series: Vec<Series>) -> BTreeMap<String, f64> {
    series
        .into_iter()
        .map(|(l, v)| (l.get("destination_service").cloned().unwrap_or_default(), v))
        .collect()
}

#[test]
fn prometheus_answers_the_promql_of_istios_dashboards() {
    let Some(bin_dir) = prerequisites(
        "observability::prometheus_answers_the_promql_of_istios_dashboards",
        &["prometheus"],
    ) else {
        return;
    };
    let prometheus = host::require(&["prometheus"]).expect("checked above");
    let scratch = Scratch::new("prometheus");
    let mesh = start_mesh(&bin_dir, &scratch, "prom", &[]);
    let prom = Prometheus::start(&mesh, &scratch, prometheus.path("prometheus"));
    let traffic = load(&mesh);

    // Istio's service dashboard: request rate by destination service, success rate (non-5xx
    // share), and p99 from the duration histogram — over the server side (reporter destination).
    const RATE: &str =
        r#"sum(rate(istio_requests_total{reporter="destination"}[15s])) by (destination_service)"#;
    const SUCCESS: &str = r#"sum(rate(istio_requests_total{reporter="destination",response_code!~"5.*"}[15s])) by (destination_service) / sum(rate(istio_requests_total{reporter="destination"}[15s])) by (destination_service)"#;
    const P99: &str = r#"histogram_quantile(0.99, sum(rate(istio_request_duration_milliseconds_bucket{reporter="destination"}[15s])) by (le, destination_service))"#;
    let answers = wait_until(
        "Prometheus has the dashboards' series for both services",
        Duration::from_secs(60),
        || {
            let rate = by_service(prom.query(RATE)?);
            let success = by_service(prom.query(SUCCESS)?);
            let p99 = by_service(prom.query(P99)?);
            for svc in [FRONTEND_SVC, BACKEND_SVC] {
                let have = |m: &BTreeMap<String, f64>| m.get(svc).copied().unwrap_or(f64::NAN);
                if !(have(&rate) > 0.0
                    && have(&success) == 1.0
                    && have(&p99) > 0.0
                    && have(&p99).is_finite())
                {
                    return Err(format!(
                        "{svc}: rate {rate:?}, success {success:?}, p99 {p99:?}"
                    ));
                }
            }
            Ok((rate, p99))
        },
    )
    .unwrap_or_else(|e| {
        let log = std::fs::read_to_string(scratch.0.join("prometheus.log")).unwrap_or_default();
        panic!("{e}\nprometheus said:\n{log}")
    });
    // The load is 20 requests/s, each one frontend request and one backend call.
    for (svc, rps) in &answers.0 {
        assert!(*rps < 100.0, "{svc}: {rps} requests/s from a 20/s load");
    }
    drop(prom);
    drop(traffic);
}

#[test]
fn stat_shows_each_workloads_live_traffic() {
    let Some(bin_dir) = prerequisites("observability::stat_shows_each_workloads_live_traffic", &[])
    else {
        return;
    };
    let scratch = Scratch::new("stat");
    let mesh = start_mesh(&bin_dir, &scratch, "stat", &[]);
    let traffic = load(&mesh);
    let rows = wait_until("stat sees the load", Duration::from_secs(45), || {
        let out = mesh.ctl(&[
            "stat", "deploy", "-n", "shop", "--window", "2s", "-o", "json",
        ]);
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        let rows: Vec<Value> = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
        let row = |name: &str, dir: &str| {
            rows.iter()
                .find(|r| r["name"] == name && r["direction"] == dir)
                .cloned()
                .unwrap_or(Value::Null)
        };
        let busy = [
            ("frontend", "inbound"),
            ("frontend", "outbound"),
            ("backend", "inbound"),
        ]
        .iter()
        .all(|(n, d)| row(n, d)["rps"].as_f64().is_some_and(|r| r > 0.0));
        if busy {
            Ok(rows)
        } else {
            Err(format!("{rows:?}"))
        }
    })
    .unwrap();
    for r in &rows {
        assert_eq!(r["namespace"], "shop", "{r}");
        assert_eq!(
            (r["meshedPods"].as_u64(), r["pods"].as_u64()),
            (Some(1), Some(1)),
            "{r}"
        );
        if r["rps"].as_f64().is_some_and(|v| v > 0.0) {
            assert_eq!(r["successRate"], 1.0, "{r}");
            assert!(r["latencyMsP99"].as_f64().is_some_and(|v| v > 0.0), "{r}");
        }
    }
    let names: Vec<&str> = rows.iter().filter_map(|r| r["name"].as_str()).collect();
    assert_eq!(
        names,
        ["backend", "backend", "frontend", "frontend"],
        "client-0 is no Deployment"
    );

    // The table, as a person reads it.
    let out = mesh.ctl(&["stat", "pod", "-n", "shop", "--window", "2s"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{table}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(table.starts_with("NAMESPACE  NAME "), "{table}");
    let frontend = table
        .lines()
        .find(|l| l.contains("frontend-0") && l.contains("inbound"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(frontend.contains("100.00%"), "{table}");
    // A name that is not there is an error, not an empty table.
    let out = mesh.ctl(&["stat", "deploy", "nope", "-n", "shop", "--window", "1s"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no deployment \"nope\""));
    drop(traffic);
}
