//! `sinew-proxy wait`: returns once the proxy in this pod is ready. It is the injector's
//! `postStart` hook in the fallback mode (the proxy a regular container, for API servers before
//! 1.29): the kubelet starts the pod's next container only when the hook returns, so the app
//! starts after the proxy can carry its traffic.
//!
//! What it promises:
//! - It asks `GET <url>` (default `http://127.0.0.1:15021/healthz/ready`, the proxy's readiness)
//!   until the answer is `200`, one attempt at a time, each on a fresh connection and bounded by
//!   [`ATTEMPT_TIMEOUT`]; after a failed attempt it sleeps `interval` before the next, so a proxy
//!   that is not even listening yet costs one refused connect per interval, never a spin.
//! - It ends by its deadline: `Ok` with the number of attempts, or [`NotReady`] (one line: how
//!   long it waited, what the last attempt saw, and where to look). Nothing it opens outlives the
//!   call; the body of an answer is never read.
//! - A URL it cannot use (not `http://`, no host, user info, a port that is not 1-65535) is
//!   refused before any attempt.

use bytes::Bytes;
use futures_util::FutureExt as _;
use http::uri::{PathAndQuery, Uri};
use http::{Request, StatusCode, header};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;
use tokio::time::Instant;

/// What the injector's hook asks by default: the proxy's readiness on its health port.
pub const DEFAULT_URL: &str = "http://127.0.0.1:15021/healthz/ready";
/// How long the proxy may take to become ready by default: its first certificate and config
/// from the control plane, after a cold start. Istio's `pilot-agent wait` waits as long.
pub const DEFAULT_TIMEOUT_SECONDS: u64 = 60;
/// The pause after a failed attempt, by default.
pub const DEFAULT_INTERVAL_MILLIS: u64 = 250;
/// One attempt, from connect to the status line: a readiness endpoint on loopback answers in
/// microseconds, so an attempt this slow is stuck (a half-open listener) and a fresh one is
/// likelier to get through.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);
/// Sent as the User-Agent, so the proxy's logs can tell the hook's requests apart.
const USER_AGENT: &str = "sinew-proxy-wait";

/// `sinew-proxy wait` flags.
#[derive(clap::Args, Debug, Clone)]
pub struct WaitArgs {
    /// The readiness URL to poll (plain http://), answered 200 once the proxy is ready.
    #[arg(long, value_name = "URL", default_value = DEFAULT_URL)]
    pub url: ReadyUrl,
    /// Give up after this many seconds (exit status 1).
    #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_TIMEOUT_SECONDS,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub timeout_seconds: u64,
    /// Pause between attempts, in milliseconds.
    #[arg(long, value_name = "MILLIS", default_value_t = DEFAULT_INTERVAL_MILLIS,
          value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub interval_millis: u64,
}

/// An `http://host[:port]/path` URL, checked once.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadyUrl {
    /// What to connect to: a name or an address (IPv6 without brackets).
    host: String,
    port: u16,
    /// The Host header: the URL's authority as written.
    authority: String,
    path: PathAndQuery,
}

/// What the last attempt saw.
#[derive(Debug, Clone, PartialEq)]
pub enum Attempt {
    /// An answer other than 200.
    Answered(StatusCode),
    /// No connection, or not an HTTP answer (the reason).
    Failed(String),
    /// Nothing within the attempt's time.
    NoAnswer(Duration),
}

/// The proxy did not become ready in time.
#[derive(Debug, thiserror::Error)]
#[error(
    "not ready after {}s ({attempts} attempts): GET {url} {last}; {}",
    waited.as_secs(),
    last.hint()
)]
pub struct NotReady {
    pub url: ReadyUrl,
    pub waited: Duration,
    pub attempts: u32,
    pub last: Attempt,
}

// === impl ReadyUrl ===

impl FromStr for ReadyUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let uri: Uri = s.parse().map_err(|e| format!("{s:?} is not a URL: {e}"))?;
        if uri.scheme_str() != Some("http") {
            return Err(format!(
                "{s:?}: only http:// URLs (the readiness endpoint is plain HTTP)"
            ));
        }
        let authority = uri
            .authority()
            .ok_or_else(|| format!("{s:?} names no host"))?;
        if authority.as_str().contains('@') {
            return Err(format!("{s:?}: user info is not supported"));
        }
        let written_host = authority.host();
        let host = written_host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(written_host);
        if host.is_empty() {
            return Err(format!("{s:?} names no host"));
        }
        // Read the port here: `Authority` keeps one it cannot read as a number without a word.
        let port = match authority.as_str()[written_host.len()..].strip_prefix(':') {
            None | Some("") => 80,
            Some(text) => match text.parse::<u16>() {
                Ok(0) | Err(_) => return Err(format!("{s:?}: {text:?} is not a port (1-65535)")),
                Ok(port) => port,
            },
        };
        Ok(Self {
            host: host.to_string(),
            port,
            authority: authority.as_str().to_string(),
            path: uri
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| PathAndQuery::from_static("/")),
        })
    }
}

impl fmt::Display for ReadyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}{}", self.authority, self.path)
    }
}

// === impl Attempt ===

impl fmt::Display for Attempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Attempt::Answered(status) => write!(f, "answered {status}"),
            Attempt::Failed(why) => write!(f, "failed: {why}"),
            Attempt::NoAnswer(after) => write!(f, "had no answer within {}ms", after.as_millis()),
        }
    }
}

impl Attempt {
    /// Where to look next.
    fn hint(&self) -> &'static str {
        match self {
            Attempt::Answered(_) => {
                "the sinew-proxy container's log says what the proxy is waiting for (a certificate or its first config from the control plane)"
            }
            Attempt::Failed(_) | Attempt::NoAnswer(_) => {
                "is `sinew-proxy run` running in this container, with its health port where --url says?"
            }
        }
    }
}

/// `sinew-proxy wait`: a small runtime of its own, then [`until_ready`].
pub fn run(args: &WaitArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(until_ready(
        &args.url,
        Duration::from_secs(args.timeout_seconds),
        Duration::from_millis(args.interval_millis),
    ))?;
    Ok(())
}

/// Asks `url` until it answers 200, for at most `timeout`: the number of attempts it took.
pub async fn until_ready(
    url: &ReadyUrl,
    timeout: Duration,
    interval: Duration,
) -> Result<u32, NotReady> {
    let start = Instant::now();
    let deadline = start + timeout;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let begun = Instant::now();
        let attempt_deadline = (begun + ATTEMPT_TIMEOUT).min(deadline);
        let last = match tokio::time::timeout_at(attempt_deadline, ask(url)).await {
            Ok(Ok(StatusCode::OK)) => return Ok(attempts),
            Ok(Ok(status)) => Attempt::Answered(status),
            Ok(Err(why)) => Attempt::Failed(why),
            Err(_) => Attempt::NoAnswer(attempt_deadline - begun),
        };
        let next = Instant::now() + interval;
        if next >= deadline {
            tokio::time::sleep_until(deadline).await;
            return Err(NotReady {
                url: url.clone(),
                waited: deadline - start,
                attempts,
                last,
            });
        }
        tokio::time::sleep_until(next).await;
    }
}

/// One `GET` on a fresh connection: the status, or why there is none.
async fn ask(url: &ReadyUrl) -> Result<StatusCode, String> {
    let tcp = tokio::net::TcpStream::connect((url.host.as_str(), url.port))
        .await
        .map_err(|e| format!("connect to {}: {e}", url.authority))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| format!("HTTP handshake: {e}"))?;
    let request = Request::get(url.path.as_str())
        .header(header::HOST, url.authority.as_str())
        .header(header::USER_AGENT, USER_AGENT)
        .header(header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("request: {e}"))?;
    // The connection is driven here rather than on a spawned task, so it ends with the call.
    let response = sender.send_request(request);
    tokio::pin!(response, conn);
    let answer = tokio::select! {
        biased;
        answer = &mut response => answer,
        // The connection may end in the same poll that handed over the answer: take it if so.
        closed = &mut conn => match (&mut response).now_or_never() {
            Some(answer) => answer,
            None => {
                return Err(match closed {
                    Ok(()) => "the connection closed without an answer".to_string(),
                    Err(e) => format!("no HTTP answer: {e}"),
                });
            }
        },
    };
    answer
        .map(|r| r.status())
        .map_err(|e| format!("no HTTP answer: {e}"))
}

#[cfg(test)]
mod tests;
