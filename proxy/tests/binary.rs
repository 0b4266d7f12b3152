//! The `sinew-proxy` binary itself: what an operator sees when start-up fails, and `wait`, the
//! injector's `postStart` hold, against real loopback servers and a real `run`.

mod support;

use serde_json::json;
use sinew_proxy::testing::{TempDir, TestCa};
use std::io::{Read as _, Write as _};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use support::process::{Running, free_port};

fn run(config: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sinew-proxy"))
        .arg("run")
        .arg("--config")
        .arg(config)
        .env_remove("SINEW_CONFIG")
        .env_remove("SINEW_PROXY_CONFIG")
        .env_remove("SINEW_LOG")
        .output()
        .expect("the binary runs")
}

/// `sinew-proxy run` with `args` and the bootstrap config in env `SINEW_PROXY_CONFIG`.
fn run_with_env_config(args: &[&str], json: &str) -> Output {
    run_with_env(args, &[("SINEW_PROXY_CONFIG", json)])
}

fn run_with_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sinew-proxy"))
        .arg("run")
        .args(args)
        .env_remove("SINEW_CONFIG")
        .env_remove("SINEW_PROXY_CONFIG")
        .env_remove("SINEW_APP_PROBERS")
        .env_remove("SINEW_LOG")
        .envs(env.iter().copied())
        .output()
        .expect("the binary runs")
}

/// Exit status 1 and exactly one line on stderr, which is returned.
fn one_line_failure(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.starts_with("sinew-proxy: "), "{stderr}");
    stderr
}

/// Exit status 1 and one line on stderr that names `path` and carries the OS error once.
fn assert_one_line_naming(out: &Output, path: &Path) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.starts_with("sinew-proxy: "), "{stderr}");
    assert!(stderr.contains(&path.display().to_string()), "{stderr}");
    let os_error = std::fs::read(path).unwrap_err().to_string();
    assert_eq!(
        stderr.matches(&os_error).count(),
        1,
        "the OS error exactly once: {stderr}"
    );
}

#[test]
fn a_missing_certificate_file_stops_start_up_with_one_line_naming_it() {
    let dir = TempDir::new("binary-cert");
    // Key and bundle exist: only the certificate is missing.
    let files = TestCa::new("binary").write_workload(
        dir.path(),
        "app",
        "spiffe://cluster.local/ns/default/sa/app",
    );
    let cert = dir.path().join("missing").join("cert.pem");
    let config = dir.path().join("proxy.yaml");
    std::fs::write(
        &config,
        format!(
            "tls: {{certFile: '{}', keyFile: '{}', trustBundleFile: '{}'}}\n\
             listeners: [{{name: in, address: '127.0.0.1:0', direction: INBOUND, appPort: 8080}}]\n\
             admin: {{adminAddress: '127.0.0.1:0', healthAddress: '127.0.0.1:0', metricsAddress: '127.0.0.1:0'}}\n",
            cert.display(),
            files.key.display(),
            files.bundle.display(),
        ),
    )
    .unwrap();
    let out = run(&config);
    assert_one_line_naming(&out, &cert);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("certificate file"),
        "says which file it is: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_missing_config_file_stops_start_up_with_one_line_naming_it() {
    let dir = TempDir::new("binary-config");
    let config = dir.path().join("missing.yaml");
    assert_one_line_naming(&run(&config), &config);
}

#[test]
fn the_config_in_sinew_proxy_config_is_the_one_the_proxy_starts_with() {
    let dir = TempDir::new("binary-env");
    let files = TestCa::new("binary-env").write_workload(
        dir.path(),
        "app",
        "spiffe://cluster.local/ns/default/sa/app",
    );
    let cert = dir.path().join("absent-cert.pem");
    // Valid as a config; start-up then fails on the certificate it names, which proves the
    // proxy went on with this config.
    let json = format!(
        r#"{{"tls": {{"certFile": "{}", "keyFile": "{}", "trustBundleFile": "{}"}},
            "listeners": [{{"address": "127.0.0.1:0", "direction": "INBOUND", "appPort": 8080}}],
            "admin": {{"adminAddress": "127.0.0.1:0", "healthAddress": "127.0.0.1:0", "metricsAddress": "127.0.0.1:0"}}}}"#,
        cert.display(),
        files.key.display(),
        files.bundle.display(),
    );
    assert_one_line_naming(&run_with_env_config(&[], &json), &cert);
}

#[test]
fn a_malformed_sinew_proxy_config_stops_start_up_naming_the_field() {
    let out = run_with_env_config(
        &[],
        r#"{"controlPlane": {"address": "cp:15012", "rootCertFile": 7}}"#,
    );
    let line = one_line_failure(&out);
    assert!(line.contains("SINEW_PROXY_CONFIG"), "{line}");
    assert!(line.contains("controlPlane.rootCertFile"), "{line}");

    let out = run_with_env_config(&[], r#"{"listeners": [{"address": "localhost"}]}"#);
    let line = one_line_failure(&out);
    assert!(line.contains("listeners[0].address"), "{line}");
}

#[test]
fn a_config_file_and_sinew_proxy_config_together_are_refused() {
    let dir = TempDir::new("binary-both");
    let file = dir.path().join("proxy.yaml");
    std::fs::write(&file, "{}\n").unwrap();
    let out = run_with_env_config(&["--config", &file.display().to_string()], "{}");
    let line = one_line_failure(&out);
    assert!(line.contains("not both"), "{line}");
}

#[test]
fn a_malformed_sinew_app_probers_stops_start_up_naming_the_entry() {
    let out = run_with_env(
        &[],
        &[
            ("SINEW_PROXY_CONFIG", "{}"),
            (
                "SINEW_APP_PROBERS",
                r#"{"/app-health/web/readyz": {"tcpSocket": {"port": 8080}},
                    "/app-health/web/livez": {"httpGet": {"port": "http"}}}"#,
            ),
        ],
    );
    let line = one_line_failure(&out);
    assert!(
        line.contains(r#"SINEW_APP_PROBERS["/app-health/web/livez"]: httpGet.port"#),
        "{line}"
    );
}

/// `sinew-proxy wait` with `args`.
fn wait(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sinew-proxy"))
        .arg("wait")
        .args(args)
        .output()
        .expect("the binary runs")
}

/// A readiness endpoint on 127.0.0.1, served from a thread for the rest of the test process:
/// the n-th `GET /healthz/ready` (from 1) is answered `status(n)`. Its port, and how many such
/// requests it has answered.
fn readiness_server(status: fn(u32) -> u16) -> (u16, Arc<AtomicU32>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = Arc::new(AtomicU32::new(0));
    let answered = count.clone();
    std::thread::spawn(move || {
        for tcp in listener.incoming() {
            let Ok(mut tcp) = tcp else { continue };
            let _ = tcp.set_read_timeout(Some(std::time::Duration::from_secs(5)));
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match tcp.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            if !head.starts_with(b"GET /healthz/ready HTTP/1.1\r\n") {
                continue;
            }
            let code = status(answered.fetch_add(1, Ordering::SeqCst) + 1);
            let _ = write!(
                tcp,
                "HTTP/1.1 {code} {}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                if code == 200 {
                    "OK"
                } else {
                    "Service Unavailable"
                }
            );
        }
    });
    (port, count)
}

#[test]
fn wait_exits_0_once_the_url_answers_200() {
    let (port, answered) = readiness_server(|n| if n < 3 { 503 } else { 200 });
    let url = format!("--url=http://127.0.0.1:{port}/healthz/ready");
    let out = wait(&[&url, "--interval-millis=10", "--timeout-seconds=30"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(stderr, "", "nothing to say when ready");
    assert_eq!(answered.load(Ordering::SeqCst), 3, "polled until the 200");
}

#[test]
fn wait_gives_up_at_its_timeout_with_one_line_naming_the_url_and_the_last_answer() {
    let (port, answered) = readiness_server(|_| 503);
    let url = format!("http://127.0.0.1:{port}/healthz/ready");
    let out = wait(&[
        &format!("--url={url}"),
        "--timeout-seconds=1",
        "--interval-millis=100",
    ]);
    let line = one_line_failure(&out);
    // How many attempts fit in the second is the paused-time unit tests' business; here, that
    // the line counts the ones the server answered.
    let attempts = answered.load(Ordering::SeqCst);
    assert!(attempts > 1, "it polled: {attempts}");
    assert!(
        line.contains(&format!(
            "not ready after 1s ({attempts} attempts): GET {url} answered 503 Service Unavailable; "
        )),
        "{line}"
    );

    // Nothing listening: said as plainly.
    let port = free_port();
    let out = wait(&[
        &format!("--url=http://127.0.0.1:{port}/healthz/ready"),
        "--timeout-seconds=1",
    ]);
    let line = one_line_failure(&out);
    assert!(
        line.contains(&format!("connect to 127.0.0.1:{port}")),
        "{line}"
    );
    assert!(line.contains("is `sinew-proxy run` running"), "{line}");
}

#[test]
fn wait_refuses_a_url_it_cannot_use_before_trying() {
    for (url, says) in [
        ("https://127.0.0.1:15021/healthz/ready", "only http://"),
        ("http://127.0.0.1:70000/healthz/ready", "is not a port"),
    ] {
        let out = wait(&[&format!("--url={url}"), "--timeout-seconds=60"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "a usage error: {stderr}");
        assert!(stderr.contains(says), "{url}: {stderr}");
    }
    let out = wait(&["--interval-millis=0"]);
    assert_eq!(out.status.code(), Some(2), "no busy loop on request");
}

#[test]
fn the_injected_post_start_hook_holds_until_the_proxy_beside_it_is_ready() {
    // The hook exactly as the injector writes it in the fallback (a regular container).
    let settings = sinew_injector::Settings::from_yaml("nativeSidecar: false\n").expect("valid");
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"containers": [{"name": "web", "image": "web:1"}]}
    });
    let sinew_injector::Injected::Changed { object, .. } =
        sinew_injector::inject_object(&pod, &settings)
    else {
        panic!("the pod is injected");
    };
    let sidecar = &object["spec"]["containers"][0];
    assert_eq!(sidecar["name"], "sinew-proxy");
    let hook: Vec<String> =
        serde_json::from_value(sidecar["lifecycle"]["postStart"]["exec"]["command"].clone())
            .expect("an exec hook");
    assert_eq!(
        hook[0], "sinew-proxy",
        "the binary's name on the image's PATH"
    );

    // In a pod it asks 127.0.0.1:15021; here the proxy's health endpoint is on a free port.
    let health = free_port();
    let in_pod = "http://127.0.0.1:15021/healthz/ready";
    let args: Vec<String> = hook[1..]
        .iter()
        .map(|a| a.replace(in_pod, &format!("http://127.0.0.1:{health}/healthz/ready")))
        .collect();
    assert_ne!(args, hook[1..], "the hook names {in_pod}: {hook:?}");

    let dir = TempDir::new("binary-hold");
    let files = TestCa::new("binary-hold").write_workload(
        dir.path(),
        "web",
        "spiffe://cluster.local/ns/shop/sa/web",
    );
    let config = dir.path().join("proxy.yaml");
    std::fs::write(
        &config,
        format!(
            "tls: {{certFile: '{}', keyFile: '{}', trustBundleFile: '{}'}}\n\
             listeners: [{{name: in, address: '127.0.0.1:0', direction: INBOUND, appPort: 8080}}]\n\
             admin: {{adminAddress: '127.0.0.1:0', healthAddress: '127.0.0.1:{health}', metricsAddress: '127.0.0.1:0'}}\n",
            files.cert.display(),
            files.key.display(),
            files.bundle.display(),
        ),
    )
    .unwrap();

    // The hook starts first, as the kubelet runs it right after starting the container: its
    // first attempts are refused.
    let hold = Command::new(env!("CARGO_BIN_EXE_sinew-proxy"))
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the hook runs");
    let _proxy = Running(
        Command::new(env!("CARGO_BIN_EXE_sinew-proxy"))
            .args(["run", "--config"])
            .arg(&config)
            .env_remove("SINEW_CONFIG")
            .env_remove("SINEW_PROXY_CONFIG")
            .env_remove("SINEW_APP_PROBERS")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the proxy runs"),
    );
    let out = hold.wait_with_output().expect("the hook ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "the hook returns once ready: {stderr}"
    );
    // What it waited for is there: the proxy's own readiness answers 200.
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", health)).unwrap();
    tcp.write_all(b"GET /healthz/ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// A plaintext HTTP/1.1 app answering every request `200 ok`, on a thread.
fn tiny_app() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        }
    });
    port
}

#[test]
fn access_log_json_lines_go_to_stdout_with_hostile_headers_escaped() {
    let app = tiny_app();
    let inbound = free_port();
    let health = free_port();
    let json = format!(
        r#"{{"listeners": [{{"address": "127.0.0.1:{inbound}", "direction": "INBOUND", "appPort": {app}}}],
            "admin": {{"adminAddress": "127.0.0.1:0", "healthAddress": "127.0.0.1:{health}", "metricsAddress": "127.0.0.1:0"}}}}"#
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_sinew-proxy"))
        .args(["run", "--access-log", "json"])
        .env_remove("SINEW_CONFIG")
        .env_remove("SINEW_APP_PROBERS")
        .env_remove("SINEW_ACCESS_LOG")
        .env("SINEW_PROXY_CONFIG", json)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the proxy runs");
    let stdout = child.stdout.take().expect("piped");
    let _proxy = Running(child);
    let (lines_tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if lines_tx.send(line).is_err() {
                return;
            }
        }
    });
    // The listener is bound once the process is up: retry the connection (bounded).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut tcp = loop {
        match std::net::TcpStream::connect(("127.0.0.1", inbound)) {
            Ok(t) => break t,
            Err(e) if std::time::Instant::now() > deadline => panic!("proxy not up: {e}"),
            Err(_) => std::thread::yield_now(),
        }
    };
    // A User-Agent with a quote, a backslash and obs-text: one line, valid JSON.
    tcp.write_all(
        b"GET /hello?x=1 HTTP/1.1\r\nHost: web:8080\r\nUser-Agent: evil\" \\ \xff\r\n\
          x-request-id: req-7\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut answer = Vec::new();
    tcp.read_to_end(&mut answer).unwrap();
    assert!(answer.starts_with(b"HTTP/1.1 200"), "{answer:?}");
    let line = lines
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("an access-log line on stdout");
    let v: serde_json::Value = serde_json::from_str(&line).expect("one JSON object per line");
    assert_eq!(v["method"], "GET");
    assert_eq!(v["path"], "/hello?x=1");
    assert_eq!(v["protocol"], "HTTP/1.1");
    assert_eq!(v["response_code"], 200);
    assert_eq!(v["response_flags"], "-");
    assert_eq!(v["bytes_sent"], 2);
    assert_eq!(v["user_agent"], "evil\" \\ \u{fffd}");
    assert_eq!(v["request_id"], "req-7");
    assert_eq!(v["authority"], "web:8080");
    // Plaintext: no peer identity.
    assert_eq!(v["peer_identity"], serde_json::Value::Null);
}

#[test]
fn an_unknown_access_log_format_is_a_usage_error() {
    let out = run_with_env(&["--access-log", "yaml"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--access-log"), "{stderr}");
}
