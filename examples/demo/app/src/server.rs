//! The HTTP server loop `backend` and `frontend` share, and the bits of request and response they
//! both need.
//!
//! Connections speak HTTP/1.1 or h2c (prior knowledge), whichever the client opens with. On shutdown
//! the server stops accepting, asks every connection to finish its in-flight requests, and gives
//! them [`DRAIN_GRACE`] before returning.

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::{convert::Infallible, time::Duration};
use tokio::{net::TcpListener, sync::watch, task::JoinSet};

/// The response body of every demo server: small and complete up front.
pub type Body = Full<Bytes>;

/// How long in-flight requests get to finish after shutdown is asked for; a client holding a
/// request open must not keep the process alive past its pod's termination grace period.
pub const DRAIN_GRACE: Duration = Duration::from_secs(5);

/// After an accept error (such as running out of file descriptors) wait this long before the next
/// accept: retrying at once would spin a core while the condition lasts.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves `handler` on `listener` until `shutdown` resolves, then drains connections.
pub async fn serve<H, F>(listener: TcpListener, handler: H, shutdown: impl Future<Output = ()>)
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let (stop_tx, stop_rx) = watch::channel(());
    let mut conns = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            () = &mut shutdown => break,
            // Reap finished connections so the set does not grow with every client ever seen.
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
            res = listener.accept() => match res {
                Ok((stream, _)) => stream,
                Err(e) => {
                    eprintln!("sinew-demo: accept failed: {e}");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let mut stop = stop_rx.clone();
        conns.spawn(async move {
            let svc = service_fn(move |req| {
                let resp = handler(req);
                async move { Ok::<_, Infallible>(resp.await) }
            });
            let builder = auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection(TokioIo::new(stream), svc);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => return,
                _ = stop.changed() => conn.as_mut().graceful_shutdown(),
            }
            let _ = conn.await;
        });
    }
    drop(listener);
    // Dropping the sender wakes every `stop.changed()`.
    drop(stop_tx);
    let drain = async { while conns.join_next().await.is_some() {} };
    if tokio::time::timeout(DRAIN_GRACE, drain).await.is_err() {
        eprintln!("sinew-demo: connections still open after {DRAIN_GRACE:?}; closing them");
    }
}

/// A JSON response.
pub fn json(status: StatusCode, body: &serde_json::Value) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    resp
}

/// The `200 ok` health check answer.
pub fn healthz() -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from_static(b"ok\n")));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain"),
    );
    resp
}

/// Whether `req` is the health check, which must answer even when the demo injects failures (else
/// the readiness probe would take the pod out and the failures would never be seen).
pub fn is_healthz<B>(req: &Request<B>) -> bool {
    req.method() == http::Method::GET && req.uri().path() == "/healthz"
}

/// The caller's identity as the sidecar reported it: the `URI=` field of the last element of
/// `x-forwarded-client-cert` (the hop closest to us). `None` for plaintext callers.
pub fn caller(headers: &HeaderMap) -> Option<String> {
    let value = headers.get("x-forwarded-client-cert")?.to_str().ok()?;
    let element = split_unquoted(value, ',').pop()?;
    split_unquoted(element, ';').into_iter().find_map(|field| {
        let (key, v) = field.split_once('=')?;
        if !key.trim().eq_ignore_ascii_case("uri") {
            return None;
        }
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(v);
        Some(v.to_string())
    })
}

/// Splits on `sep` outside double quotes: XFCC quotes values that contain `,`, `;` or `=`.
fn split_unquoted(s: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == sep && !quoted => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

#[cfg(test)]
mod tests {
    use super::caller;
    use http::HeaderMap;

    fn caller_of(xfcc: &str) -> Option<String> {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-client-cert",
            xfcc.parse().expect("header value"),
        );
        caller(&headers)
    }

    #[test]
    fn caller_is_the_uri_of_the_last_xfcc_element() {
        assert_eq!(
            caller_of("By=spiffe://a;Hash=1;URI=spiffe://x,By=spiffe://b;Hash=2;URI=spiffe://y"),
            Some("spiffe://y".into())
        );
    }

    #[test]
    fn caller_ignores_separators_inside_quotes() {
        assert_eq!(
            caller_of(r#"Subject="CN=a,O=b;c";URI="spiffe://demo/sa/x""#),
            Some("spiffe://demo/sa/x".into())
        );
    }

    #[test]
    fn caller_is_none_without_a_uri() {
        assert_eq!(caller_of("By=spiffe://a;Hash=1"), None);
        assert_eq!(caller(&HeaderMap::new()), None);
    }
}
