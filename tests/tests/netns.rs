//! End to end in network namespaces: two pods on a bridge, each with a sidecar behind real iptables
//! interception (`sinew-proxy init`), the proxies running as UID 1337 with a static config.
//!
//! The app in pod A dials a service VIP that nothing listens on; only interception can answer.
//! Pod A's proxy carries the request over mTLS to pod B's proxy, which hands it to B's app on
//! 127.0.0.1. The app echoes the headers it got, so the body shows the caller identity B's proxy
//! verified (XFCC). A capture on the bridge shows what crossed between the pods: TLS 1.3 to port
//! 15006 and nothing in the clear.
//!
//! Needs root and iproute2, iptables, tcpdump, curl, util-linux (setpriv) and python3; without
//! them it fails, or skips with `SINEW_ALLOW_SKIP=1` (see `sinew_tests::host`).

use sinew_proxy::testing::{TestCa, WorkloadFiles};
use sinew_tests::bins;
use sinew_tests::host::{self, Tools};
use sinew_tests::pcap::{self, Flow, Stream, tls};
use sinew_tests::process::wait_until;
use sinew_tests::testbed::{Pod, Testbed};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const ID_A: &str = "spiffe://cluster.local/ns/default/sa/a";
const ID_B: &str = "spiffe://cluster.local/ns/default/sa/b";
/// `sinew-proxy init` exempts this UID's traffic by default; the proxies must run as it.
const PROXY_UID: u32 = 1337;
/// The apps (and curl, standing in for A's app) run as an ordinary user, so they are intercepted.
const APP_UID: u32 = 1000;
const APP_PORT: u16 = 8080;
const MESH_PORT: u16 = 15006;
/// The service VIP is `<subnet>.100:80`: on the pods' /24, so the kernel has an on-link route to
/// dial it without a default route, and iptables redirects it to 15001 before it leaves the pod.
const VIP_HOST: u8 = 100;
const VIP_PORT: u16 = 80;
const HEALTH_URL: &str = "http://127.0.0.1:15021/healthz/ready";

const TOOLS: [&str; 7] = [
    "ip",
    "iptables",
    "iptables-restore",
    "tcpdump",
    "curl",
    "setpriv",
    "python3",
];
/// A second app in pod b, listening on 127.0.0.1 only.
const PRIVATE_PORT: u16 = 8081;
/// Start-up of a debug-build proxy and of Python, with room for a loaded CI machine.
const START_TIMEOUT: Duration = Duration::from_secs(30);
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// curl's own limit for the request through the mesh; the test's bound is a bit longer.
const REQUEST_MAX_SECS: u64 = 15;
const PROXY_LOG_LEVEL: &str = "info,sinew_proxy=debug";

/// B's app: answers GET with the request's headers, one `name: value` line each, and logs each
/// request's peer address and `x-sinew-probe` header to stderr.
const ECHO_APP: &str = r#"
import http.server
import sys


class Echo(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = "".join(f"{k}: {v}\n" for k, v in self.headers.items()).encode()
        self.send_response(200)
        self.send_header("content-type", "text/plain")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        probe = self.headers.get("x-sinew-probe", "-") if hasattr(self, "headers") else "-"
        sys.stderr.write("peer=%s probe=%s %s\n" % (self.client_address[0], probe, fmt % args))


bind = sys.argv[2] if len(sys.argv) > 2 else "0.0.0.0"
http.server.ThreadingHTTPServer((bind, int(sys.argv[1])), Echo).serve_forever()
"#;

#[test]
fn intercepted_pod_to_pod_http_carries_the_caller_identity_and_crosses_the_bridge_only_as_tls13() {
    const TEST: &str = "netns::intercepted_pod_to_pod_http_carries_the_caller_identity_and_crosses_the_bridge_only_as_tls13";
    let tools = match host::require(&TOOLS) {
        Ok(t) => t,
        Err(reason) => return host::skip(TEST, &reason),
    };
    let built = bins::proxy();
    let mut bed = Testbed::new(&tools);
    let proxy = install_proxy(&built, bed.dir());
    let a = bed.add_pod("a", 2);
    let b = bed.add_pod("b", 3);
    let vip = SocketAddrV4::new(bed.addr(VIP_HOST), VIP_PORT);

    let ca = TestCa::new("netns");
    let a_files = workload(&bed, &ca, &a, ID_A);
    let b_files = workload(&bed, &ca, &b, ID_B);
    let a_config = write_config(
        &bed,
        &a,
        &a_files,
        &format!(
            r#"services:
  - name: b.default.svc.cluster.local
    addresses: ["{vip}"]
    endpoints:
      - address: "{}:{APP_PORT}"
        identity: {ID_B}
        meshPort: {MESH_PORT}
"#,
            b.ip
        ),
    );
    let b_config = write_config(&bed, &b, &b_files, "");

    // Interception before the proxies start, as the injected init container does.
    for pod in [&a, &b] {
        bed.on_teardown(
            "sinew-proxy init --cleanup",
            &pod.netns,
            &proxy,
            &[&"init", &"--cleanup"],
        );
        let out = bed.exec(&pod.netns, None, &proxy, &[&"init"], COMMAND_TIMEOUT);
        assert!(
            out.status.success(),
            "sinew-proxy init in pod {} failed: {}",
            pod.name,
            text(&out.stderr)
        );
    }

    let app = bed.dir().join("echo_app.py");
    std::fs::write(&app, ECHO_APP).expect("write the echo app");
    let port = APP_PORT.to_string();
    bed.spawn(
        "app-b",
        &b.netns,
        Some(APP_UID),
        tools.path("python3"),
        &[&"-u", &app, &port],
    );
    for (pod, config) in [(&a, &a_config), (&b, &b_config)] {
        bed.spawn(
            &format!("proxy-{}", pod.name),
            &pod.netns,
            Some(PROXY_UID),
            &proxy,
            &[
                &"run",
                &"--config",
                config,
                &"--log-level",
                &PROXY_LOG_LEVEL,
            ],
        );
    }
    for pod in [&a, &b] {
        let label = format!("proxy-{}", pod.name);
        wait_until(&format!("{label} ready"), START_TIMEOUT, || {
            bed.ensure_running(&label)?;
            curl_ok(&bed, &tools, pod, HEALTH_URL)
        })
        .unwrap_or_else(|e| panic!("{e}"));
    }
    // Root's connections on loopback are not intercepted: this reaches the app directly.
    let app_url = format!("http://127.0.0.1:{APP_PORT}/");
    wait_until("app-b listening", START_TIMEOUT, || {
        bed.ensure_running("app-b")?;
        curl_ok(&bed, &tools, &b, &app_url)
    })
    .unwrap_or_else(|e| panic!("{e}"));

    // Capture everything the bridge forwards between the pods while the request is made.
    let capture = bed.dir().join("bridge.pcap");
    let (bridge_ns, bridge) = bed.bridge();
    let (bridge_ns, bridge) = (bridge_ns.to_owned(), bridge.to_owned());
    // -U: write each packet at once, so the file can be read while tcpdump runs. -Z root: keep
    // the rights to write into our root-owned directory. Promiscuous (the default) so frames
    // forwarded between bridge ports reach the bridge's own tap.
    bed.spawn(
        "tcpdump",
        &bridge_ns,
        None,
        tools.path("tcpdump"),
        &[
            &"-i", &bridge, &"-n", &"-U", &"-s", &"0", &"-Z", &"root", &"-w", &capture, &"tcp",
        ],
    );
    wait_until("tcpdump listening on the bridge", START_TIMEOUT, || {
        bed.ensure_running("tcpdump")?;
        let log = bed.log("tcpdump");
        if log.contains("listening on") {
            Ok(())
        } else {
            Err(format!("log so far: {log:?}"))
        }
    })
    .unwrap_or_else(|e| panic!("{e}"));

    // A value that exists only in this request: it must reach B's app and never the wire in clear.
    let probe = format!("sinew-probe-{}-{}", std::process::id(), nanos());
    let out = bed.exec(
        &a.netns,
        Some(APP_UID),
        tools.path("curl"),
        &[
            &"-q", // no ~/.curlrc
            &"-sS",
            &"--noproxy",
            &"*",
            &"--max-time",
            &REQUEST_MAX_SECS.to_string(),
            &"-H",
            &format!("x-sinew-probe: {probe}"),
            &"-w",
            &"\n%{http_code}",
            &format!("http://{vip}/"),
        ],
        Duration::from_secs(REQUEST_MAX_SECS + 10),
    );
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "curl http://{vip}/ from pod a as uid {APP_UID} failed ({}): {}{}",
        out.status,
        text(&out.stderr),
        stdout
    );
    let (body, status) = stdout
        .rsplit_once('\n')
        .expect("curl -w appends the status code");
    assert_eq!(status, "200", "response body: {body}");
    let headers = echoed_headers(body);
    assert_eq!(
        headers.get("x-sinew-probe").map(String::as_str),
        Some(probe.as_str()),
        "{body}"
    );
    let xfcc = headers
        .get("x-forwarded-client-cert")
        .unwrap_or_else(|| panic!("B's app got no x-forwarded-client-cert; it got:\n{body}"));
    assert!(
        xfcc.contains(&format!("URI={ID_A}")),
        "XFCC names the caller: {xfcc}"
    );
    assert!(
        xfcc.contains(&format!("By={ID_B}")),
        "XFCC names the receiving proxy: {xfcc}"
    );
    eprintln!("pod b's app got XFCC: {xfcc}");
    // B's proxy, not A's, delivered it, on the pod IP from its own source address (127.0.0.6,
    // which `sinew-proxy init` keeps from being redirected back into the proxy).
    let app_log = bed.log("app-b");
    assert!(
        app_log
            .lines()
            .any(|l| l.starts_with(&format!("peer=127.0.0.6 probe={probe} "))),
        "app log: {app_log}"
    );

    // The request's own TLS records are on the bridge before curl returns, but tcpdump may not
    // have written them yet: wait for them, bounded, before stopping it.
    wait_until(
        "the capture to hold the mesh exchange",
        Duration::from_secs(10),
        || {
            let bytes = std::fs::read(&capture).map_err(|e| e.to_string())?;
            let streams = pcap::streams(&pcap::tcp_segments(&bytes)?);
            let done = mesh_connections(&streams, b.ip)
                .iter()
                .any(|(_, up, down)| has_app_data(up) && has_app_data(down));
            if done {
                Ok(())
            } else {
                Err("no application data both ways yet".into())
            }
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    bed.stop("tcpdump", "INT", Duration::from_secs(10));
    let bytes = std::fs::read(&capture).expect("read the capture");
    check_wire(&bytes, &a, &b, &probe);

    // An app listening on 127.0.0.1 only is private to its pod, as under Istio since 1.10: pod
    // a's plaintext request to b's pod IP on that port is answered 503 by b's proxy.
    bed.spawn(
        "private-b",
        &b.netns,
        Some(APP_UID),
        tools.path("python3"),
        &[&"-u", &app, &PRIVATE_PORT.to_string(), &"127.0.0.1"],
    );
    let private_url = format!("http://127.0.0.1:{PRIVATE_PORT}/");
    wait_until("private-b listening", START_TIMEOUT, || {
        bed.ensure_running("private-b")?;
        curl_ok(&bed, &tools, &b, &private_url)
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let out = bed.exec(
        &a.netns,
        Some(APP_UID),
        tools.path("curl"),
        &[
            &"-q",
            &"-sS",
            &"--noproxy",
            &"*",
            &"--max-time",
            &REQUEST_MAX_SECS.to_string(),
            &"-o",
            &"/dev/null",
            &"-w",
            &"%{http_code}",
            &format!("http://{}:{PRIVATE_PORT}/", b.ip),
        ],
        Duration::from_secs(REQUEST_MAX_SECS + 10),
    );
    assert_eq!(text(&out.stdout), "503", "{}", text(&out.stderr));
    assert!(
        bed.log("private-b")
            .lines()
            .all(|l| l.starts_with("peer=127.0.0.1 ")),
        "only pod b itself reached the private app: {}",
        bed.log("private-b")
    );

    // Teardown is part of the contract: nothing of ours may outlive the test.
    let namespaces = bed.namespaces();
    drop(bed);
    let out = std::process::Command::new(tools.path("ip"))
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    let left = text(&out.stdout);
    for ns in &namespaces {
        assert!(
            !left
                .lines()
                .any(|l| l.split_whitespace().next() == Some(ns.as_str())),
            "{ns} still exists after teardown"
        );
    }
}

/// The wire between the pods: only A ↔ B:15006, every connection TLS 1.3 from its first byte, and
/// none of the request's plaintext anywhere in the capture.
fn check_wire(capture: &[u8], a: &Pod, b: &Pod, probe: &str) {
    let segments = pcap::tcp_segments(capture).expect("parse the capture");
    assert!(!segments.is_empty(), "the capture holds no TCP at all");
    for s in &segments {
        let mesh = SocketAddrV4::new(b.ip, MESH_PORT);
        assert!(
            (s.dst == mesh && *s.src.ip() == a.ip) || (s.src == mesh && *s.dst.ip() == a.ip),
            "only pod a and pod b's inbound port {MESH_PORT} may talk on the bridge; saw {} -> {}",
            s.src,
            s.dst
        );
    }
    let streams = pcap::streams(&segments);
    let conns = mesh_connections(&streams, b.ip);
    assert!(
        !conns.is_empty(),
        "no connection to {}:{MESH_PORT} with data",
        b.ip
    );
    for (client, up, down) in &conns {
        assert_eq!(
            (up.missing, down.missing),
            (0, 0),
            "the capture of {client} has holes"
        );
        let (up_recs, _) = tls::records(&up.bytes)
            .unwrap_or_else(|e| panic!("{client} -> {MESH_PORT} is not all TLS: {e}"));
        let (down_recs, _) = tls::records(&down.bytes)
            .unwrap_or_else(|e| panic!("{MESH_PORT} -> {client} is not all TLS: {e}"));
        match up_recs.first().and_then(tls::hello) {
            Some(tls::Hello::Client { versions, alpn }) => {
                assert!(
                    versions.contains(&tls::TLS13),
                    "ClientHello offers {versions:04x?}"
                );
                assert!(!alpn.is_empty(), "the mesh ClientHello offers an ALPN");
            }
            other => panic!("{client} did not start with a ClientHello: {other:?}"),
        }
        match down_recs.first().and_then(tls::hello) {
            Some(tls::Hello::Server { version }) => {
                assert_eq!(
                    version,
                    tls::TLS13,
                    "ServerHello negotiated {version:04x}, not TLS 1.3"
                )
            }
            other => panic!("the answer to {client} did not start with a ServerHello: {other:?}"),
        }
        for rec in up_recs.iter().chain(&down_recs) {
            assert_ne!(
                rec.content_type,
                tls::ALERT,
                "a TLS alert was sent (in clear) on {client}"
            );
        }
    }
    eprintln!(
        "wire: {} TCP segments, {} mesh connection(s) to {}:{MESH_PORT}, all TLS 1.3, no plaintext",
        segments.len(),
        conns.len(),
        b.ip
    );
    for clear in [
        b"HTTP/1.1".as_slice(),
        b"GET /",
        probe.as_bytes(),
        b"x-forwarded-client-cert",
    ] {
        assert!(
            !pcap::contains(capture, clear),
            "{:?} crossed the bridge in plaintext",
            String::from_utf8_lossy(clear)
        );
    }
}

/// Every connection to `<server>:15006` that carried data: (client, client→server, server→client).
fn mesh_connections(
    streams: &BTreeMap<Flow, Stream>,
    server: Ipv4Addr,
) -> Vec<(SocketAddrV4, Stream, Stream)> {
    let mesh = SocketAddrV4::new(server, MESH_PORT);
    streams
        .iter()
        .filter(|((_, dst), up)| *dst == mesh && !up.bytes.is_empty())
        .map(|((src, dst), up)| {
            let down = streams.get(&(*dst, *src)).cloned().unwrap_or_default();
            (*src, up.clone(), down)
        })
        .collect()
}

fn has_app_data(s: &Stream) -> bool {
    tls::records(&s.bytes)
        .is_ok_and(|(recs, _)| recs.iter().any(|r| r.content_type == tls::APPLICATION_DATA))
}

/// Copies the proxy into the (world-readable) work directory: UID 1337 must be able to run it,
/// and the build's target directory may sit under a home it cannot enter.
fn install_proxy(built: &Path, dir: &Path) -> PathBuf {
    let dst = dir.join("sinew-proxy");
    std::fs::copy(built, &dst).unwrap_or_else(|e| panic!("copy {}: {e}", built.display()));
    std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o755)).expect("chmod proxy");
    dst
}

/// Writes `pod`'s certificate, key (readable by the proxy's UID only) and the mesh root.
fn workload(bed: &Testbed, ca: &TestCa, pod: &Pod, identity: &str) -> WorkloadFiles {
    let dir = bed.dir().join(&pod.name);
    std::fs::create_dir_all(&dir).expect("create pod dir");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod pod dir");
    let files = ca.write_workload(&dir, "workload", identity);
    std::os::unix::fs::chown(&files.key, Some(PROXY_UID), Some(PROXY_UID)).expect("chown key");
    std::fs::set_permissions(&files.key, std::fs::Permissions::from_mode(0o600))
        .expect("chmod key");
    files
}

/// The pod's static proxy config: its credentials, default listeners and admin ports, and `rest`.
fn write_config(bed: &Testbed, pod: &Pod, files: &WorkloadFiles, rest: &str) -> PathBuf {
    let yaml = format!(
        "tls:\n  certFile: \"{}\"\n  keyFile: \"{}\"\n  trustBundleFile: \"{}\"\n{rest}",
        files.cert.display(),
        files.key.display(),
        files.bundle.display()
    );
    let path = bed.dir().join(&pod.name).join("proxy.yaml");
    std::fs::write(&path, yaml).expect("write proxy config");
    path
}

/// One GET from inside `pod` as root (never intercepted on loopback); `Err` says why it failed.
fn curl_ok(bed: &Testbed, tools: &Tools, pod: &Pod, url: &str) -> Result<(), String> {
    let out = bed.exec(
        &pod.netns,
        None,
        tools.path("curl"),
        &[
            &"-q",
            &"-sS",
            &"-f",
            &"--noproxy",
            &"*",
            &"--max-time",
            &"2",
            &"-o",
            &"/dev/null",
            &url,
        ],
        Duration::from_secs(10),
    );
    if out.status.success() {
        Ok(())
    } else {
        Err(text(&out.stderr).trim().to_owned())
    }
}

/// The echo app's body as a map of lower-cased header names to values.
fn echoed_headers(body: &str) -> BTreeMap<String, String> {
    body.lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_owned()))
        .collect()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
}
