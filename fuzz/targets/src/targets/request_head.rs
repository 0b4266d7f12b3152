//! hyper's HTTP/1 server parsing behind our request-smuggling guard, configured like
//! `sinew_proxy::http::server::serve_h1` (minus the timer): the input is what a client sends on one
//! connection, followed by a half-close.
//!
//! Contract checked:
//! - never panics (in the guard, in hyper, or in the service);
//! - the response bytes, if any, start with `HTTP/1.1 ` (or `HTTP/1.0 ` when the input has a
//!   request that says `HTTP/1.0`: hyper answers 1.0 clients in 1.0, see the README).
//!
//! Each input runs on one current-thread tokio runtime built once, bounded by a 1 s timeout.

use super::split::MAX_HEAD;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, body::Incoming};
use hyper_util::rt::TokioIo;
use sinew_proxy::http::guard::Guarded;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::runtime::Runtime;

thread_local! {
    // One per thread: the CI test runs targets on several threads.
    static RT: Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
}
static TIMEOUTS: AtomicUsize = AtomicUsize::new(0);

async fn ok(_req: Request<Incoming>) -> Result<Response<String>, Infallible> {
    Ok(Response::new(String::from("ok")))
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Checks one input; returns its outcome.
pub fn check(data: &[u8]) -> String {
    let rsp = RT.with(|rt| {
        rt.block_on(async {
            let (client, server) = tokio::io::duplex(64 * 1024);
            let conn = tokio::spawn(async move {
                let mut builder = http1::Builder::new();
                builder.max_buf_size(MAX_HEAD).keep_alive(true);
                if std::env::var_os("SINEW_FUZZ_HALF_CLOSE").is_some() {
                    // For reproducing by hand: answer every request before closing on EOF.
                    builder.half_close(true);
                }
                if super::split::no_guard() {
                    // For comparing by hand: hyper alone.
                    let io = TokioIo::new(server);
                    let _ = builder
                        .serve_connection(io, service_fn(ok))
                        .with_upgrades()
                        .await;
                    return;
                }
                let io = TokioIo::new(Guarded::new(server, MAX_HEAD));
                let _ = builder
                    .serve_connection(io, service_fn(ok))
                    .with_upgrades()
                    .await;
            });
            let (mut rd, mut wr) = tokio::io::split(client);
            let exchange = async {
                let write = async {
                    let _ = wr.write_all(data).await;
                    let _ = wr.shutdown().await;
                };
                let read = async {
                    let mut rsp = Vec::new();
                    let _ = rd.read_to_end(&mut rsp).await;
                    rsp
                };
                tokio::join!(write, read).1
            };
            let rsp = tokio::time::timeout(Duration::from_secs(1), exchange).await;
            conn.abort();
            if let Err(e) = conn.await
                && e.is_panic()
            {
                std::panic::resume_unwind(e.into_panic());
            }
            rsp.ok()
        })
    });
    let Some(rsp) = rsp else {
        let n = TIMEOUTS.fetch_add(1, Ordering::Relaxed) + 1;
        eprintln!("request_head: no end of response within 1 s (timeout #{n})");
        return "timeout".into();
    };
    if super::split::debug() {
        eprintln!("response: {:?}", String::from_utf8_lossy(&rsp));
    }
    if !rsp.is_empty() {
        // hyper answers a request that says HTTP/1.0 with an `HTTP/1.0 ` status line on purpose
        // (it speaks 1.0 to 1.0 clients); anything else must be HTTP/1.1.
        let http10_ok = rsp.starts_with(b"HTTP/1.0 ") && contains(data, b"HTTP/1.0");
        assert!(
            rsp.starts_with(b"HTTP/1.1 ") || http10_ok,
            "response does not start with 'HTTP/1.1 ': {:?}",
            String::from_utf8_lossy(&rsp[..rsp.len().min(64)])
        );
    }
    // The status codes hyper answered with, in order (the first few).
    let mut outcome = String::new();
    for (i, w) in rsp.windows(9).enumerate() {
        if (w == b"HTTP/1.1 " || w == b"HTTP/1.0 ") && outcome.len() < 40 {
            let code = rsp.get(i + 9..i + 12).unwrap_or_default();
            outcome.push_str(&String::from_utf8_lossy(code));
            outcome.push(' ');
        }
    }
    outcome
}
