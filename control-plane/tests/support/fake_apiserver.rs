//! A fake Kubernetes API server for end-to-end tests: `fake_apiserver.py` (beside this file; kmock
//! 0.8 + aiohttp) run as a child process, with a kubeconfig pointing at it.
//!
//! Promises: [`FakeApiServer::start`] returns a server that is listening (its `FAKE_APISERVER_READY`
//! line was read within [`READY_TIMEOUT`]) and a kubeconfig file whose user's bearer token is the
//! only one the server accepts; or, when the venv python is missing, fails the test naming
//! `scripts/test.sh`, unless `SINEW_ALLOW_SKIP=1`, when it records the skip in `SINEW_SKIP_REPORT`
//! and returns `None`. [`FakeApiServer::stop`] / [`FakeApiServer::restart`] keep the port and the
//! state file, so clients reconnect to the same URL and find the same objects. Dropping the server
//! kills the child's whole process group. The launcher's stderr (one line per request) is in
//! [`FakeApiServer::log`], and its tail is in every failure message here.
//!
//! Use: `mod support;` then `support::fake_apiserver::FakeApiServer` (add `pub mod
//! fake_apiserver;` to `support/mod.rs`):
//!
//! ```ignore
//! let dir = TempDir::new("kube");
//! let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}});
//! let Some(mut api) = FakeApiServer::start("kubernetes_end_to_end", dir.path(), &[ns]).await
//! else {
//!     return; // skipped (SINEW_ALLOW_SKIP=1 and no venv)
//! };
//! api.set_tokens(&json!({"tok-a": {"namespace": "shop", "serviceAccount": "reviews",
//!     "pod": "reviews-0", "audiences": ["sinew-ca"]}}));
//! // kube: Config::from_custom_kubeconfig(Kubeconfig::read_from(&api.kubeconfig)?, &Default::default())
//! // or the control plane's `--kubeconfig api.kubeconfig`.
//! let (status, list) = api.request("GET", "/api/v1/namespaces", None).await;
//! api.restart().await; // same URL, same objects; watches resumed from old RVs get a 410
//! ```

#![allow(dead_code)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// The python (of a venv with kmock 0.8) that runs the launcher; `scripts/test.sh` sets it.
pub const PYTHON_ENV: &str = "SINEW_FAKE_APISERVER_PYTHON";
/// How long the launcher may take to print its ready line (it starts in about half a second).
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);
const LAUNCHER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/support/fake_apiserver.py"
);
/// Where `scripts/test.sh` puts the venv when CARGO_TARGET_DIR is not set: found without the
/// variable, for a plain `cargo test` after one `scripts/test.sh`.
const DEFAULT_VENV_PYTHON: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/../target/py-venv/bin/python");

/// A running (or stopped, between [`FakeApiServer::stop`] and [`FakeApiServer::start_again`])
/// fake API server.
pub struct FakeApiServer {
    python: PathBuf,
    dir: PathBuf,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    pub port: u16,
    /// A kubeconfig for `kube::Config::from_custom_kubeconfig` / `--kubeconfig`: cluster `fake`,
    /// user `test` with [`FakeApiServer::token`], namespace `default`.
    pub kubeconfig: PathBuf,
    /// The bearer token the server requires (written into the kubeconfig).
    pub token: String,
    /// The state file: every object, rewritten after each change.
    pub state: PathBuf,
    /// The TokenReview answers, re-read by the server on every review (see [`Self::set_tokens`]).
    pub tokens: PathBuf,
    /// The launcher's stderr: one line per request, `METHOD path?query status`.
    pub log: PathBuf,
    seed: PathBuf,
    child: Option<tokio::process::Child>,
}

impl FakeApiServer {
    /// Starts the fake in `dir` (which must outlive it) with `seed` (full objects with
    /// `apiVersion`/`kind`; CRDs among them make their kinds served) and no known tokens. `test`
    /// names the test in a skip report. `None`: the python is missing and skipping was allowed;
    /// end the test.
    pub async fn start(test: &str, dir: &Path, seed: &[Value]) -> Option<Self> {
        let python = match find_python() {
            Ok(p) => p,
            Err(reason) => {
                skip_or_fail(test, &reason);
                return None;
            }
        };
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = dir.join(format!("fake-apiserver-{n}"));
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        let seed_file = dir.join("seed.json");
        write_json(&seed_file, &Value::Array(seed.to_vec()));
        let mut server = FakeApiServer {
            python,
            url: String::new(),
            port: 0,
            kubeconfig: dir.join("kubeconfig"),
            token: format!("sinew-test-{}-{n}", std::process::id()),
            state: dir.join("state.json"),
            tokens: dir.join("tokens.json"),
            log: dir.join("fake-apiserver.log"),
            seed: seed_file,
            dir,
            child: None,
        };
        server.set_tokens(&serde_json::json!({}));
        server.spawn().await;
        server.write_kubeconfig();
        Some(server)
    }

    /// Replaces the TokenReview answers: `{"TOKEN": {"namespace": .., "serviceAccount": ..,
    /// "pod": .., "audiences": [..]}}` (an `"error"` field makes that token fail with it). The
    /// next review reads them.
    pub fn set_tokens(&self, tokens: &Value) {
        write_json(&self.tokens, tokens);
    }

    /// Stops the server (SIGTERM, then waits for it): open watches and connections drop, as when a
    /// real API server goes away. The objects stay in the state file.
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Some(pid) = child.id() {
            signal_group(pid, "-TERM");
        }
        let waited = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
        match waited {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("waiting for the fake API server: {e}"),
            Err(_) => {
                let _ = child.start_kill();
                panic!(
                    "the fake API server did not stop within 10 s of SIGTERM{}",
                    self.log_tail()
                );
            }
        }
    }

    /// Starts a stopped server again on the same port, from its state file. A watch resumed from
    /// an RV of the previous run gets a 410 (as from a real API server whose watch cache is new).
    pub async fn start_again(&mut self) {
        assert!(
            self.child.is_none(),
            "start_again: the fake API server is running"
        );
        self.spawn().await;
    }

    /// [`Self::stop`] then [`Self::start_again`].
    pub async fn restart(&mut self) {
        self.stop().await;
        self.start_again().await;
    }

    /// One request with the kubeconfig's token over a fresh connection: the status and the body
    /// as JSON (`Value::String` when it is not JSON, such as a `404 page not found`). Merge patches
    /// are sent as `application/merge-patch+json`, everything else as `application/json`.
    pub async fn request(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let content_type = if method == "PATCH" {
            "application/merge-patch+json"
        } else {
            "application/json"
        };
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: {content_type}\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n",
            port = self.port,
            token = self.token,
            len = body.len(),
        );
        let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .unwrap_or_else(|e| panic!("connect to the fake API server at {}: {e}", self.url));
        tcp.write_all(head.as_bytes())
            .await
            .expect("send the request head");
        tcp.write_all(body.as_bytes())
            .await
            .expect("send the request body");
        let mut out = Vec::new();
        tcp.read_to_end(&mut out).await.expect("read the response");
        let text = String::from_utf8_lossy(&out);
        let (head, body) = text
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("a response without a head: {text:?}"));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("a response without a status: {head:?}"));
        let body = serde_json::from_str(body).unwrap_or_else(|_| Value::String(body.to_string()));
        (status, body)
    }

    /// The last lines of the launcher's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(20)..].join("\n  ");
        format!(
            "\nfake API server log ({}), last lines:\n  {tail}",
            self.log.display()
        )
    }

    async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", self.log.display()));
        let mut cmd = tokio::process::Command::new(&self.python);
        cmd.arg(LAUNCHER)
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .arg("--seed")
            .arg(&self.seed)
            .arg("--state")
            .arg(&self.state)
            .arg("--tokens")
            .arg(&self.tokens)
            .args(["--client-token", &self.token])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            // Its own group, so Drop can end it and anything it started in one go.
            .process_group(0)
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {} {LAUNCHER}: {e}", self.python.display()));
        let stdout = child.stdout.take().expect("stdout is piped");
        // Stored before waiting, so a timeout's panic still kills it (Drop).
        self.child = Some(child);
        let mut lines = BufReader::new(stdout).lines();
        let line = match tokio::time::timeout(READY_TIMEOUT, lines.next_line()).await {
            Ok(Ok(Some(line))) => line,
            Ok(Ok(None)) => panic!(
                "the fake API server exited before it was ready{}",
                self.log_tail()
            ),
            Ok(Err(e)) => panic!("reading the fake API server's stdout: {e}"),
            Err(_) => panic!(
                "the fake API server printed no FAKE_APISERVER_READY within {READY_TIMEOUT:?}{}",
                self.log_tail()
            ),
        };
        let url = line
            .strip_prefix("FAKE_APISERVER_READY ")
            .unwrap_or_else(|| panic!("unexpected first line from the fake API server: {line:?}"));
        let port: u16 = url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in the fake API server's URL {url:?}"));
        assert!(
            self.port == 0 || self.port == port,
            "the fake API server came back on port {port}, not {}",
            self.port
        );
        self.url = url.to_string();
        self.port = port;
    }

    fn write_kubeconfig(&self) {
        let config = format!(
            "apiVersion: v1\nkind: Config\n\
             clusters: [{{name: fake, cluster: {{server: \"{url}\"}}}}]\n\
             users: [{{name: test, user: {{token: \"{token}\"}}}}]\n\
             contexts: [{{name: fake, context: {{cluster: fake, user: test, namespace: default}}}}]\n\
             current-context: fake\n",
            url = self.url,
            token = self.token,
        );
        std::fs::write(&self.kubeconfig, config)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", self.kubeconfig.display()));
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = child.id() {
                signal_group(pid, "-KILL");
            }
            let _ = child.start_kill();
        }
    }
}

/// Sends a signal to the process group led by `pid` (the child was started with
/// `process_group(0)`), with kill(1): the test crates take no libc and forbid unsafe code.
fn signal_group(pid: u32, signal: &str) {
    let _ = std::process::Command::new("kill")
        .args([signal, "--", &format!("-{pid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Writes `value` to `path` atomically (a rename): the server re-reads the tokens file on every
/// review and must never see half of it.
fn write_json(path: &Path, value: &Value) {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, value.to_string())
        .and_then(|()| std::fs::rename(&tmp, path))
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

/// The venv python: `SINEW_FAKE_APISERVER_PYTHON`, else `target/py-venv/bin/python`. `Err` is why
/// the fake cannot run.
fn find_python() -> Result<PathBuf, String> {
    let (python, from) = match std::env::var_os(PYTHON_ENV).filter(|p| !p.is_empty()) {
        Some(p) => (PathBuf::from(p), PYTHON_ENV),
        None => (PathBuf::from(DEFAULT_VENV_PYTHON), "the default venv"),
    };
    if python.is_file() {
        Ok(python)
    } else {
        Err(format!(
            "no python with kmock 0.8 for the fake Kubernetes API server: {} ({from}) does not \
             exist; scripts/test.sh makes that venv and sets {PYTHON_ENV}",
            python.display()
        ))
    }
}

/// Fails the test with `reason`, or with `SINEW_ALLOW_SKIP=1` prints `SKIPPED: <test>: <reason>`
/// and appends `<test>\t<reason>` to the `SINEW_SKIP_REPORT` file (as `sinew_tests::host::skip`).
#[track_caller]
fn skip_or_fail(test: &str, reason: &str) {
    if std::env::var_os("SINEW_ALLOW_SKIP").as_deref() != Some("1".as_ref()) {
        panic!(
            "{test} cannot run: {reason}. Run scripts/test.sh, or set SINEW_ALLOW_SKIP=1 to skip \
             it on purpose."
        );
    }
    if let Some(report) = std::env::var_os("SINEW_SKIP_REPORT").filter(|p| !p.is_empty()) {
        use std::io::Write;
        let line = format!("{test}\t{}\n", reason.replace(['\n', '\t'], " "));
        // One short write with O_APPEND: lines from parallel tests do not interleave.
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&report)
            .and_then(|mut f| f.write_all(line.as_bytes()))
            .unwrap_or_else(|e| {
                panic!("{test} skipped ({reason}) but cannot record it in SINEW_SKIP_REPORT: {e}")
            });
    }
    eprintln!("SKIPPED: {test}: {reason}");
}
