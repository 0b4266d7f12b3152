//! `backend`: a service that says who it is and who called it.
//!
//! Every request gets `200 {"service", "pod", "path", "caller", "trace"}`, where `caller` is the
//! mesh identity the sidecar put in `x-forwarded-client-cert` (null for plaintext) and `trace` the
//! trace headers the request arrived with (name → value, the ones a sidecar or a caller set), so
//! one `curl` shows the context each hop saw. To give the mesh's
//! resilience features something to do it can answer `503` to a share of requests and stall a
//! share of others; `GET /healthz` is exempt from both.

use crate::server::{self, Body};
use crate::trace_headers;
use http::{Request, Response, StatusCode};
use serde_json::json;
use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;

/// How a backend answers.
#[derive(Clone, Debug, clap::Args)]
pub struct BackendOpts {
    /// Service name reported in every answer.
    #[arg(long)]
    pub name: String,
    /// Pod name reported in every answer; the host name if unset.
    #[arg(long, env = "POD_NAME", default_value_t = hostname())]
    pub pod: String,
    /// Percentage of requests answered `503` ("injected failure").
    #[arg(
        long,
        value_name = "PERCENT",
        default_value_t = 0,
        value_parser = clap::value_parser!(u8).range(0..=100),
    )]
    pub fail_percent: u8,
    /// Percentage of requests delayed by --slow-ms before answering.
    #[arg(
        long,
        value_name = "PERCENT",
        default_value_t = 0,
        value_parser = clap::value_parser!(u8).range(0..=100),
    )]
    pub slow_percent: u8,
    /// Delay of a slow request, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 300)]
    pub slow_ms: u64,
    /// `M/N`: answer `503` to the first M of every N requests, in arrival order (a deterministic
    /// flaky backend, for showing retries). Applied after --fail-percent.
    #[arg(long, value_name = "M/N", value_parser = parse_fail_sequence)]
    pub fail_sequence: Option<FailSequence>,
}

/// The first `fail` of every `every` requests fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FailSequence {
    pub fail: u64,
    pub every: u64,
}

fn parse_fail_sequence(s: &str) -> Result<FailSequence, String> {
    let bad = || format!("{s:?} is not M/N with 0 <= M <= N and N > 0 (e.g. 2/3)");
    let (m, n) = s.split_once('/').ok_or_else(bad)?;
    let fail: u64 = m.trim().parse().map_err(|_| bad())?;
    let every: u64 = n.trim().parse().map_err(|_| bad())?;
    if every == 0 || fail > every {
        return Err(bad());
    }
    Ok(FailSequence { fail, every })
}

/// Serves the backend on `listener` until `shutdown` resolves.
pub async fn serve_backend(
    listener: TcpListener,
    opts: BackendOpts,
    shutdown: impl Future<Output = ()>,
) {
    let backend = Arc::new(Backend {
        opts,
        rng: Rng::seeded(),
        served: AtomicU64::new(0),
    });
    let handler = move |req| Arc::clone(&backend).handle(req);
    server::serve(listener, handler, shutdown).await;
}

struct Backend {
    opts: BackendOpts,
    rng: Rng,
    /// Requests seen (not counting `/healthz`), for --fail-sequence.
    served: AtomicU64,
}

// === impl Backend ===

impl Backend {
    async fn handle<B>(self: Arc<Self>, req: Request<B>) -> Response<Body> {
        if server::is_healthz(&req) {
            return server::healthz();
        }
        let opts = &self.opts;
        if self.rng.chance(opts.slow_percent) {
            tokio::time::sleep(Duration::from_millis(opts.slow_ms)).await;
        }
        let n = self.served.fetch_add(1, Ordering::Relaxed);
        let sequenced = opts.fail_sequence.is_some_and(|f| n % f.every < f.fail);
        if self.rng.chance(opts.fail_percent) || sequenced {
            let body = json!({ "service": opts.name, "error": "injected failure" });
            return server::json(StatusCode::SERVICE_UNAVAILABLE, &body);
        }
        let body = json!({
            "service": opts.name,
            "pod": opts.pod,
            "path": req.uri().path(),
            "caller": server::caller(req.headers()),
            "trace": trace_context(req.headers()),
        });
        server::json(StatusCode::OK, &body)
    }
}

/// The trace headers of a request as a JSON object (a repeated header: its values joined by ",",
/// as HTTP allows; bytes that are not UTF-8 shown lossily).
fn trace_context(headers: &http::HeaderMap) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for name in &trace_headers::PROPAGATED {
        let values: Vec<String> = headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        if !values.is_empty() {
            out.insert(name.as_str().to_string(), values.join(",").into());
        }
    }
    out.into()
}

/// The host name, or "" if it cannot be read. (In local mode pods share the host's UTS namespace,
/// which is why the manifests set `POD_NAME`.)
fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

/// A xorshift64 generator: deciding which requests fail needs no cryptographic randomness, just a
/// different sequence per process, so replicas do not fail in lockstep.
struct Rng(AtomicU64);

// === impl Rng ===

impl Rng {
    fn seeded() -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let seed = nanos ^ (u64::from(std::process::id()) << 32);
        // xorshift never leaves zero.
        Self(AtomicU64::new(seed | 1))
    }

    fn next(&self) -> u64 {
        let step = |mut x: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let prev = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |x| Some(step(x)))
            .unwrap_or_else(|x| x);
        step(prev)
    }

    /// True with probability `percent`/100.
    fn chance(&self, percent: u8) -> bool {
        percent > 0 && self.next() % 100 < u64::from(percent)
    }
}
