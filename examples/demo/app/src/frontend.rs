//! `frontend`: fans every request out to all backends and reports what each answered.
//!
//! The answer is `{"service": "frontend", "caller", "backends": [{"url", "status", "body", "ms"}]}`
//! with each backend's JSON body embedded, so one `curl` shows which pod served each call and which
//! identity it saw. It is `200` only if every backend answered 2xx, else `502`; a backend that could
//! not be reached (or missed the deadline) has `"status": null` and an `"error"`.
//!
//! Each backend call carries the inbound request's trace headers ([`trace_headers`]), so the
//! sidecars' spans of the request and of the calls it caused form one trace.

use crate::client::{self, HttpClient};
use crate::server::{self, Body};
use crate::trace_headers;
use futures_util::future::join_all;
use http::{Request, Response, StatusCode, Uri};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

/// Which backends a frontend calls.
#[derive(Clone, Debug, clap::Args)]
pub struct FrontendOpts {
    /// Backend URL to GET for each request (repeat for several), e.g.
    /// http://ratings.demo.svc.cluster.local:8080/
    #[arg(long = "backend", value_name = "URL", required = true, value_parser = client::parse_url)]
    pub backends: Vec<Uri>,
    /// Deadline for each backend call (connect, response and body), in milliseconds.
    #[arg(
        long = "timeout-ms",
        value_name = "MS",
        default_value = "2000",
        value_parser = client::parse_millis,
    )]
    pub timeout: Duration,
}

/// Serves the frontend on `listener` until `shutdown` resolves.
pub async fn serve_frontend(
    listener: TcpListener,
    opts: FrontendOpts,
    shutdown: impl Future<Output = ()>,
) {
    let frontend = Arc::new(Frontend {
        opts,
        client: client::new(),
    });
    let handler = move |req| Arc::clone(&frontend).handle(req);
    server::serve(listener, handler, shutdown).await;
}

struct Frontend {
    opts: FrontendOpts,
    client: HttpClient,
}

// === impl Frontend ===

impl Frontend {
    async fn handle<B>(self: Arc<Self>, req: Request<B>) -> Response<Body> {
        if server::is_healthz(&req) {
            return server::healthz();
        }
        let trace = trace_headers::propagated(req.headers());
        let calls = self
            .opts
            .backends
            .iter()
            .map(|uri| self.call(uri, trace.clone()));
        let results = join_all(calls).await;
        let all_ok = results.iter().all(|(ok, _)| *ok);
        let body = json!({
            "service": "frontend",
            "caller": server::caller(req.headers()),
            "backends": results.into_iter().map(|(_, v)| v).collect::<Vec<_>>(),
        });
        let status = if all_ok {
            StatusCode::OK
        } else {
            StatusCode::BAD_GATEWAY
        };
        server::json(status, &body)
    }

    /// Calls one backend: whether it answered 2xx, and its entry in the answer.
    async fn call(&self, uri: &Uri, trace: http::HeaderMap) -> (bool, Value) {
        let start = Instant::now();
        let res = client::get(&self.client, uri, trace, self.opts.timeout).await;
        let ms = client::millis(start.elapsed());
        match res {
            Ok((status, bytes)) => {
                let body = serde_json::from_slice(&bytes)
                    .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
                let entry = json!({
                    "url": uri.to_string(),
                    "status": status.as_u16(),
                    "body": body,
                    "ms": ms,
                });
                (status.is_success(), entry)
            }
            Err(error) => {
                let entry = json!({
                    "url": uri.to_string(),
                    "status": null,
                    "error": error,
                    "ms": ms,
                });
                (false, entry)
            }
        }
    }
}
