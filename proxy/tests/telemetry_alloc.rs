//! The telemetry layer's hot-path promise, measured: with the span unsampled and the access log
//! off, reporting a request (Istio metrics, body-end accounting, peer labels) allocates nothing
//! once its series exist, beyond what trace propagation itself writes into the request (the new
//! `traceparent` and `x-request-id` values), which is measured on the same request and
//! subtracted.
//!
//! A counting global allocator (per thread, so the harness's other threads do not count) wraps
//! the system one; the test counts only across the layer's own work (call, poll, body, report),
//! not the building of the request and response it is handed.

use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use http_body::Body as _;
use http_body_util::Full;
use sinew_proxy::metrics::Metrics;
use sinew_proxy::telemetry::Workload;
use sinew_proxy::telemetry::access_log::AccessLog;
use sinew_proxy::telemetry::layer::{Conn, Observe, Reports};
use sinew_proxy::telemetry::peer;
use sinew_proxy::telemetry::trace::{SpanKind, Tracer};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::convert::Infallible;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use tower::Service;

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
}

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

// SAFETY: every call is forwarded unchanged to the system allocator; counting touches only a
// const-initialised thread-local `Cell` (no allocation, no destructor).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller's contract is passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn reports() -> Reports {
    let metrics = Arc::new(Metrics::new());
    let dropped = metrics.access_log_dropped.clone();
    Reports {
        metrics,
        tracer: Tracer::disabled(),
        log: Arc::new(AccessLog::with_sink(
            None,
            dropped,
            Box::new(std::io::sink()),
            4,
        )),
        own: Arc::new(Workload::unknown()),
        own_principal: Arc::from("spiffe://cluster.local/ns/default/sa/server"),
    }
}

/// Allocations made by the layer for one request: call, response, body to its end, report.
fn one_request<S>(svc: &mut Observe<S>, req: Request<Full<Bytes>>) -> u64
where
    S: Service<
            Request<sinew_proxy::telemetry::layer::RequestBytes<Full<Bytes>>>,
            Response = Response<Full<Bytes>>,
            Error = Infallible,
        >,
{
    let mut cx = Context::from_waker(Waker::noop());
    let before = allocations();
    let fut = svc.call(req);
    let Poll::Ready(Ok(rsp)) = pin!(fut).poll(&mut cx) else {
        panic!("the inner service answers at once");
    };
    let mut body = pin!(rsp.into_body());
    while let Poll::Ready(Some(frame)) = body.as_mut().poll_frame(&mut cx) {
        frame.expect("a data frame");
    }
    allocations() - before
}

/// What propagation alone allocates: [`Tracer::start`] on a request built like the layer's.
fn propagation(make: impl Fn() -> Request<Full<Bytes>>, kind: SpanKind) -> u64 {
    let (mut req, tracer) = (make(), Tracer::disabled());
    let before = allocations();
    let span = tracer.start(kind, req.headers_mut());
    let n = allocations() - before;
    drop(span);
    n
}

fn answer(
    _req: Request<sinew_proxy::telemetry::layer::RequestBytes<Full<Bytes>>>,
) -> std::future::Ready<Result<Response<Full<Bytes>>, Infallible>> {
    std::future::ready(Ok(Response::new(Full::new(Bytes::from_static(b"ok")))))
}

#[test]
fn an_unsampled_request_with_the_access_log_off_allocates_nothing_in_the_layer() {
    let conn = Conn::outbound(
        reports(),
        Arc::from("reviews.default.svc.cluster.local"),
        None,
        None,
    );
    let mut svc = Observe::new(tower::service_fn(answer), conn);
    // The first requests create the label set and series (and warm what grows once).
    for _ in 0..10 {
        one_request(&mut svc, Request::new(Full::from("body")));
    }
    let (mut total, mut propagating) = (0, 0);
    for _ in 0..100 {
        let make = || Request::new(Full::from("body"));
        propagating += propagation(make, SpanKind::Client);
        total += one_request(&mut svc, make());
    }
    // Per request would be 100 or more; a rare amortised growth elsewhere (a map that doubles)
    // is not the layer's.
    assert!(
        total.saturating_sub(propagating) < 10,
        "{total} allocations in 100 outbound requests, {propagating} of them propagation's"
    );

    // Inbound, from a verified peer whose metadata arrives on every request.
    let identity = "spiffe://cluster.local/ns/default/sa/client";
    let header = peer::encode(
        &Workload::unknown(),
        identity,
        "reviews.default.svc.cluster.local",
    )
    .expect("header");
    let conn = Conn::inbound(
        reports(),
        Some(Arc::from(identity)),
        Arc::from(vec![Arc::<str>::from("reviews.default.svc.cluster.local")]),
        None,
        None,
    );
    let mut svc = Observe::new(tower::service_fn(answer), conn);
    let request = || {
        let mut req = Request::new(Full::default());
        req.headers_mut().insert(&peer::PEER, header.clone());
        req.headers_mut()
            .insert(http::header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        req
    };
    for _ in 0..10 {
        one_request(&mut svc, request());
    }
    let (mut total, mut propagating) = (0, 0);
    for _ in 0..100 {
        propagating += propagation(request, SpanKind::Server);
        total += one_request(&mut svc, request());
    }
    // Per request would be 100 or more; a rare amortised growth elsewhere (a map that doubles)
    // is not the layer's.
    assert!(
        total.saturating_sub(propagating) < 10,
        "{total} allocations in 100 inbound requests, {propagating} of them propagation's"
    );
}
