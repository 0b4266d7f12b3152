//! The HTTP client `frontend` and `load` share: plain HTTP/1 GETs with a deadline.
//!
//! Host names go through the system resolver (getaddrinfo), so the `/etc/hosts` entries local mode
//! writes (`ratings.demo.svc.cluster.local`) work as they would in a cluster.

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use std::{error::Error, time::Duration};

pub type HttpClient = Client<HttpConnector, Empty<Bytes>>;

pub fn new() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new()).build(connector)
}

/// GETs `uri` with `headers` and reads the whole body, all within `timeout`. The error is one
/// line meant for a person: the full cause chain, or the deadline that passed.
pub async fn get(
    client: &HttpClient,
    uri: &Uri,
    headers: HeaderMap,
    timeout: Duration,
) -> Result<(StatusCode, Bytes), String> {
    let mut req = Request::get(uri.clone())
        .body(Empty::new())
        .map_err(|e| e.to_string())?;
    *req.headers_mut() = headers;
    let exchange = async {
        let resp = client.request(req).await.map_err(|e| chain(&e))?;
        let status = resp.status();
        let body = resp.into_body().collect().await.map_err(|e| chain(&e))?;
        Ok((status, body.to_bytes()))
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or_else(|_| Err(format!("no response within {} ms", timeout.as_millis())))
}

/// Parses a `--backend`/`--target` URL: absolute `http://`, since the sidecar does the TLS.
pub fn parse_url(s: &str) -> Result<Uri, String> {
    let uri: Uri = s.parse().map_err(|e| format!("{e}"))?;
    match uri.scheme_str() {
        Some("http") if uri.authority().is_some() => Ok(uri),
        Some("https") => Err("use http://: the Sinew sidecar adds mTLS between pods".into()),
        _ => Err("expected an absolute URL like http://ratings:8080/".into()),
    }
}

/// Parses a whole positive number of milliseconds (`--timeout-ms`).
pub fn parse_millis(s: &str) -> Result<Duration, String> {
    match s.parse::<u64>() {
        Ok(ms) if ms > 0 => Ok(Duration::from_millis(ms)),
        _ => Err("expected a whole number of milliseconds above 0".into()),
    }
}

/// Parses a positive number of seconds, fractions allowed (`--duration 0.5`).
pub fn parse_secs(s: &str) -> Result<Duration, String> {
    match s.parse::<f64>().ok().map(Duration::try_from_secs_f64) {
        Some(Ok(d)) if !d.is_zero() => Ok(d),
        _ => Err("expected a number of seconds above 0".into()),
    }
}

/// Milliseconds with one decimal, as every output of the demo shows durations.
pub fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 10_000.0).round() / 10.0
}

/// `e` and its sources joined by ": "; hyper's own message ("client error (Connect)") alone does not
/// say what went wrong.
fn chain(e: &dyn Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}
