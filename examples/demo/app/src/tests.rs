//! Behaviour tests: each mode against real servers on loopback ports chosen by the kernel.

use crate::backend::{BackendOpts, serve_backend};
use crate::client::parse_url;
use crate::frontend::{FrontendOpts, serve_frontend};
use crate::load::{LoadOpts, run_load};
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use std::{net::SocketAddr, time::Duration};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

/// A server on a loopback port; dropping `stop` (or sending on it) shuts it down.
struct Running {
    url: String,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

async fn listener() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    (listener, addr)
}

fn backend_opts(name: &str, fail_percent: u8) -> BackendOpts {
    BackendOpts {
        name: name.to_string(),
        pod: format!("{name}-0"),
        fail_percent,
        slow_percent: 0,
        slow_ms: 300,
        fail_sequence: None,
    }
}

async fn start_backend(opts: BackendOpts) -> Running {
    let (listener, addr) = listener().await;
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve_backend(listener, opts, async {
        let _ = stopped.await;
    }));
    Running {
        url: format!("http://{addr}/"),
        stop,
        task,
    }
}

async fn start_frontend(backends: &[&str]) -> Running {
    let (listener, addr) = listener().await;
    let opts = FrontendOpts {
        backends: backends
            .iter()
            .map(|u| parse_url(u).expect("url"))
            .collect(),
        timeout: Duration::from_secs(2),
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve_frontend(listener, opts, async {
        let _ = stopped.await;
    }));
    Running {
        url: format!("http://{addr}/"),
        stop,
        task,
    }
}

/// GETs `url` (with `path` appended), optionally as a mesh caller; the status and the JSON body.
async fn get(url: &str, path: &str, xfcc: Option<&str>) -> (StatusCode, Value) {
    let headers: &[(&str, &str)] = match xfcc {
        Some(v) => &[("x-forwarded-client-cert", v)],
        None => &[],
    };
    get_with(url, path, headers).await
}

/// GETs `url` (with `path` appended) with `headers`; the status and the JSON body.
async fn get_with(url: &str, path: &str, headers: &[(&str, &str)]) -> (StatusCode, Value) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let mut req = Request::get(format!("{}{path}", url.trim_end_matches('/')));
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let resp = client
        .request(req.body(Empty::new()).expect("request"))
        .await
        .expect("response");
    let status = resp.status();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    let body =
        serde_json::from_slice(&body).unwrap_or_else(|_| json!(String::from_utf8_lossy(&body)));
    (status, body)
}

/// A URL on which nothing listens: a port the kernel handed out, then closed.
async fn closed_url() -> String {
    let (_, addr) = listener().await;
    format!("http://{addr}/")
}

fn load_opts(target: &str, rps: u32, concurrency: u32, duration: Duration) -> LoadOpts {
    LoadOpts {
        target: parse_url(target).expect("url"),
        rps,
        concurrency,
        duration: Some(duration),
        report_every: Duration::from_secs(60),
        timeout: Duration::from_secs(2),
    }
}

#[tokio::test]
async fn backend_names_itself_and_echoes_caller_identity() {
    let b = start_backend(backend_opts("ratings", 0)).await;
    let xfcc =
        "By=spiffe://demo/ns/demo/sa/ratings;Hash=ab12;URI=spiffe://demo/ns/demo/sa/frontend";
    let (status, body) = get(&b.url, "/stars", Some(xfcc)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({
            "service": "ratings",
            "pod": "ratings-0",
            "path": "/stars",
            "caller": "spiffe://demo/ns/demo/sa/frontend",
            "trace": {},
        })
    );

    let (_, body) = get(&b.url, "/", None).await;
    assert_eq!(
        body["caller"],
        Value::Null,
        "plaintext callers have no identity"
    );
}

#[tokio::test]
async fn backend_with_a_fail_sequence_fails_the_first_m_of_every_n_requests() {
    let mut opts = backend_opts("flaky", 0);
    opts.fail_sequence = Some(crate::backend::FailSequence { fail: 2, every: 3 });
    let b = start_backend(opts).await;
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(get(&b.url, "/", None).await.0.as_u16());
    }
    // /healthz neither fails nor advances the sequence.
    assert_eq!(get(&b.url, "/healthz", None).await.0, StatusCode::OK);
    statuses.push(get(&b.url, "/", None).await.0.as_u16());
    assert_eq!(statuses, [503, 503, 200, 503, 503, 200, 503]);
    let _ = b.stop.send(());
    let _ = b.task.await;
}

#[test]
fn a_fail_sequence_must_be_m_of_n() {
    use clap::Parser as _;
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        opts: BackendOpts,
    }
    for bad in ["3/2", "1/0", "x/3", "2"] {
        let err = Cli::try_parse_from(["t", "--name", "n", "--fail-sequence", bad])
            .err()
            .unwrap_or_else(|| panic!("{bad} was accepted"));
        assert!(err.to_string().contains("is not M/N"), "{bad}: {err}");
    }
    let ok = Cli::try_parse_from(["t", "--name", "n", "--fail-sequence", "2/3"]).unwrap();
    assert_eq!(
        ok.opts.fail_sequence,
        Some(crate::backend::FailSequence { fail: 2, every: 3 })
    );
}

#[tokio::test]
async fn backend_fails_every_request_at_fail_percent_100_but_not_healthz() {
    let b = start_backend(backend_opts("ratings", 100)).await;
    let (status, body) = get(&b.url, "/", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        body,
        json!({ "service": "ratings", "error": "injected failure" })
    );
    let (status, body) = get(&b.url, "/healthz", None).await;
    assert_eq!((status, body), (StatusCode::OK, json!("ok\n")));
}

#[tokio::test]
async fn server_returns_once_shutdown_resolves() {
    let b = start_backend(backend_opts("ratings", 0)).await;
    // An open keep-alive connection must not hold the server past shutdown.
    get(&b.url, "/", None).await;
    b.stop.send(()).expect("server running");
    tokio::time::timeout(Duration::from_secs(2), b.task)
        .await
        .expect("server stopped in time")
        .expect("server task");
}

#[tokio::test]
async fn frontend_answers_200_with_every_backend() {
    let (a, b) = (
        start_backend(backend_opts("ratings", 0)).await,
        start_backend(backend_opts("reviews", 0)).await,
    );
    let f = start_frontend(&[&a.url, &b.url]).await;
    let (status, body) = get(&f.url, "/", Some("URI=spiffe://demo/ns/demo/sa/load")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["service"], "frontend");
    assert_eq!(body["caller"], "spiffe://demo/ns/demo/sa/load");
    let backends = body["backends"].as_array().expect("backends");
    assert_eq!(backends.len(), 2);
    for (entry, (url, name)) in backends
        .iter()
        .zip([(&a.url, "ratings"), (&b.url, "reviews")])
    {
        assert_eq!(entry["url"], url.as_str());
        assert_eq!(entry["status"], 200);
        assert_eq!(entry["body"]["service"], name);
        assert!(entry["ms"].is_number(), "{entry}");
    }
}

#[tokio::test]
async fn frontend_passes_the_trace_headers_on_to_every_backend() {
    let (a, b) = (
        start_backend(backend_opts("ratings", 0)).await,
        start_backend(backend_opts("reviews", 0)).await,
    );
    let f = start_frontend(&[&a.url, &b.url]).await;
    let sent = [
        (
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ),
        ("tracestate", "vendor=1"),
        ("x-request-id", "req-7"),
        ("x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7"),
        ("x-b3-spanid", "e457b5a2e4d86bd1"),
        ("x-b3-parentspanid", "05e3ac9a4f6e3b90"),
        ("x-b3-sampled", "1"),
        ("x-b3-flags", "0"),
        ("b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1"),
    ];
    let mut headers = sent.to_vec();
    headers.push(("x-unrelated", "not forwarded"));
    let (status, body) = get_with(&f.url, "/", &headers).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let expected: serde_json::Map<String, Value> = sent
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    for entry in body["backends"].as_array().expect("backends") {
        assert_eq!(
            entry["body"]["trace"],
            Value::Object(expected.clone()),
            "{entry}"
        );
    }
    // Without trace headers a backend sees none (the app invents no context of its own).
    let (_, body) = get(&f.url, "/", None).await;
    assert_eq!(body["backends"][0]["body"]["trace"], json!({}));
}

#[tokio::test]
async fn frontend_answers_502_naming_the_failing_backend() {
    let (ok, failing) = (
        start_backend(backend_opts("ratings", 0)).await,
        start_backend(backend_opts("reviews", 100)).await,
    );
    let f = start_frontend(&[&ok.url, &failing.url]).await;
    let (status, body) = get(&f.url, "/", None).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(body["backends"][0]["status"], 200);
    let entry = &body["backends"][1];
    assert_eq!(entry["url"], failing.url.as_str());
    assert_eq!(entry["status"], 503);
    assert_eq!(entry["body"]["error"], "injected failure");
}

#[tokio::test]
async fn frontend_answers_502_with_an_error_for_an_unreachable_backend() {
    let closed = closed_url().await;
    let f = start_frontend(&[&closed]).await;
    let (status, body) = get(&f.url, "/", None).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    let entry = &body["backends"][0];
    assert_eq!(entry["url"], closed.as_str());
    assert_eq!(entry["status"], Value::Null);
    let error = entry["error"].as_str().expect("error string");
    assert!(error.contains("refused"), "error names the cause: {error}");
}

#[tokio::test]
async fn load_counts_every_request_to_a_failing_backend_as_failed() {
    let b = start_backend(backend_opts("ratings", 100)).await;
    let mut out = Vec::new();
    let opts = load_opts(&b.url, 100, 32, Duration::from_millis(200));
    let total = run_load(opts, std::future::pending(), &mut out).await;
    let out = String::from_utf8(out).expect("utf-8");
    assert!(total.sent > 0);
    assert_eq!((total.ok, total.failed), (0, total.sent), "{total:?}");
    assert!(!out.contains("first success"), "{out}");
    let last = out.lines().last().expect("a total line");
    let expected = format!(
        "load: total {} sent, 0 ok (0.0%), {} failed, p50 ",
        total.sent, total.sent
    );
    assert!(last.starts_with(&expected), "{last}");
}

#[tokio::test]
async fn load_counts_ok_requests_and_reports_the_first_success() {
    let b = start_backend(backend_opts("ratings", 0)).await;
    let mut out = Vec::new();
    let opts = load_opts(&b.url, 100, 32, Duration::from_millis(200));
    let total = run_load(opts, std::future::pending(), &mut out).await;
    let out = String::from_utf8(out).expect("utf-8");
    assert!(total.sent > 0);
    assert_eq!((total.ok, total.failed, total.skipped), (total.sent, 0, 0));
    let first = out.lines().next().expect("output");
    let ms = first
        .strip_prefix("load: first success after ")
        .and_then(|s| s.strip_suffix(" ms"))
        .and_then(|s| s.parse::<f64>().ok());
    // How soon is a benchmark's question; the behaviour is one report, first, with a time.
    assert!(ms.is_some_and(|ms| ms >= 0.0), "{first}");
    assert_eq!(out.matches("first success").count(), 1, "{out}");
}

#[tokio::test]
async fn load_skips_ticks_while_concurrency_is_exhausted() {
    let mut opts = backend_opts("ratings", 0);
    (opts.slow_percent, opts.slow_ms) = (100, 300);
    let b = start_backend(opts).await;
    let opts = load_opts(&b.url, 100, 1, Duration::from_millis(200));
    let total = run_load(opts, std::future::pending(), &mut Vec::new()).await;
    // The first tick's request takes 300 ms; every tick during it finds no free slot.
    assert_eq!((total.sent, total.ok), (1, 1), "{total:?}");
    assert!(total.skipped >= 10, "{total:?}");
}

#[tokio::test]
async fn load_stops_when_shutdown_resolves() {
    let b = start_backend(backend_opts("ratings", 0)).await;
    let mut opts = load_opts(&b.url, 100, 32, Duration::from_secs(3600));
    opts.duration = None;
    let shutdown = tokio::time::sleep(Duration::from_millis(100));
    let mut out = Vec::new();
    let run = run_load(opts, shutdown, &mut out);
    let total = tokio::time::timeout(Duration::from_secs(2), run)
        .await
        .expect("load stopped on shutdown");
    assert_eq!(total.ok, total.sent);
    let out = String::from_utf8(out).expect("utf-8");
    assert!(
        out.lines()
            .last()
            .is_some_and(|l| l.starts_with("load: total ")),
        "{out}"
    );
}
