//! A stand-in OTLP/gRPC trace collector for tests: the official generated `TraceService` (from
//! `opentelemetry-proto`) served over plaintext HTTP/2, recording every span it receives.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use sinew_otlp_receiver::Receiver;
//! use std::time::Duration;
//! let receiver = Receiver::start("127.0.0.1:0".parse().unwrap()).await?;
//! // point the exporter at receiver.endpoint() ("http://127.0.0.1:PORT"), then:
//! let spans = receiver.wait_for(2, Duration::from_secs(10)).await.expect("two spans");
//! let addr = receiver.stop().await; // Receiver::start(addr) again restarts it
//! # Ok(()) }
//! ```
//!
//! Promises: `start` returns once the socket is bound (spans sent after it are received);
//! `stop` returns once the listener is closed and every connection dropped, so an exporter sees
//! the collector gone; `wait_for` returns as soon as the count is reached, or at the deadline
//! with what arrived.

#![forbid(unsafe_code)]

use hyper_util::rt::{TokioExecutor, TokioIo};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

/// A span as received, with ids in lowercase hex.
#[derive(Clone, Debug, PartialEq)]
pub struct ReceivedSpan {
    pub trace_id: String,
    pub span_id: String,
    /// `None` for a root span.
    pub parent_span_id: Option<String>,
    pub name: String,
    pub kind: SpanKind,
    pub status: StatusCode,
    pub status_message: String,
    pub attributes: BTreeMap<String, AttrValue>,
    /// The resource's attributes (`service.name`, …).
    pub resource: BTreeMap<String, AttrValue>,
    /// The instrumentation scope's name.
    pub scope: String,
    pub start_unix_nanos: u64,
    pub end_unix_nanos: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpanKind {
    Unspecified,
    Internal,
    Server,
    Client,
    Producer,
    Consumer,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusCode {
    Unset,
    Ok,
    Error,
}

/// An attribute value; arrays, maps and bytes are kept as their debug text.
#[derive(Clone, Debug, PartialEq)]
pub enum AttrValue {
    String(String),
    Int(i64),
    Double(f64),
    Bool(bool),
    Other(String),
}

// === impl ReceivedSpan ===

impl ReceivedSpan {
    /// The string attribute `key`, if it is one.
    pub fn str(&self, key: &str) -> Option<&str> {
        match self.attributes.get(key) {
            Some(AttrValue::String(s)) => Some(s),
            _ => None,
        }
    }

    /// The integer attribute `key`, if it is one.
    pub fn int(&self, key: &str) -> Option<i64> {
        match self.attributes.get(key) {
            Some(AttrValue::Int(i)) => Some(*i),
            _ => None,
        }
    }

    /// One JSON object (what the binary prints, one line per span).
    pub fn to_json(&self) -> serde_json::Value {
        fn attrs(m: &BTreeMap<String, AttrValue>) -> serde_json::Value {
            m.iter()
                .map(|(k, v)| {
                    let v = match v {
                        AttrValue::String(s) | AttrValue::Other(s) => serde_json::json!(s),
                        AttrValue::Int(i) => serde_json::json!(i),
                        AttrValue::Double(d) => serde_json::json!(d),
                        AttrValue::Bool(b) => serde_json::json!(b),
                    };
                    (k.clone(), v)
                })
                .collect::<serde_json::Map<_, _>>()
                .into()
        }
        serde_json::json!({
            "traceId": self.trace_id,
            "spanId": self.span_id,
            "parentSpanId": self.parent_span_id,
            "name": self.name,
            "kind": format!("{:?}", self.kind).to_uppercase(),
            "status": format!("{:?}", self.status).to_uppercase(),
            "statusMessage": self.status_message,
            "attributes": attrs(&self.attributes),
            "resource": attrs(&self.resource),
            "scope": self.scope,
            "startUnixNanos": self.start_unix_nanos,
            "endUnixNanos": self.end_unix_nanos,
        })
    }
}

/// A running receiver.
pub struct Receiver {
    addr: SocketAddr,
    store: Arc<Store>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

type Sink = Box<dyn Fn(&ReceivedSpan) + Send + Sync>;

struct Store {
    spans: Mutex<Vec<ReceivedSpan>>,
    requests: AtomicU64,
    arrived: Notify,
    sink: Option<Sink>,
}

/// `wait_for`'s deadline passed first; holds what did arrive.
#[derive(Debug)]
pub struct WaitTimeout {
    pub wanted: usize,
    pub got: Vec<ReceivedSpan>,
}

impl std::fmt::Display for WaitTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "wanted {} spans, {} arrived: {:?}",
            self.wanted,
            self.got.len(),
            self.got
        )
    }
}

impl std::error::Error for WaitTimeout {}

// === impl Receiver ===

impl Receiver {
    /// Listens on `addr` (`127.0.0.1:0` picks a port) and records spans.
    pub async fn start(addr: SocketAddr) -> std::io::Result<Self> {
        Self::start_inner(addr, None).await
    }

    /// [`Self::start`], also calling `sink` with each span as it arrives.
    pub async fn start_with(
        addr: SocketAddr,
        sink: impl Fn(&ReceivedSpan) + Send + Sync + 'static,
    ) -> std::io::Result<Self> {
        Self::start_inner(addr, Some(Box::new(sink))).await
    }

    async fn start_inner(addr: SocketAddr, sink: Option<Sink>) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let store = Arc::new(Store {
            spans: Mutex::new(Vec::new()),
            requests: AtomicU64::new(0),
            arrived: Notify::new(),
            sink,
        });
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(serve(listener, store.clone(), stopped));
        Ok(Self {
            addr,
            store,
            stop,
            task,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`: what an OTLP/gRPC exporter is pointed at.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every span received so far, in arrival order.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.store
            .spans
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Export calls answered so far.
    pub fn export_requests(&self) -> u64 {
        self.store.requests.load(Ordering::Acquire)
    }

    /// Waits until at least `n` spans have arrived (returning all of them), or `within` passes.
    pub async fn wait_for(
        &self,
        n: usize,
        within: Duration,
    ) -> Result<Vec<ReceivedSpan>, WaitTimeout> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let arrived = self.store.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            let spans = self.spans();
            if spans.len() >= n {
                return Ok(spans);
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                return Err(WaitTimeout {
                    wanted: n,
                    got: self.spans(),
                });
            }
        }
    }

    /// Closes the listener and every connection; returns the address (to restart on).
    pub async fn stop(self) -> SocketAddr {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        self.addr
    }
}

async fn serve(listener: TcpListener, store: Arc<Store>, mut stopped: watch::Receiver<bool>) {
    // Dropped on return: every connection task is aborted with it.
    let mut conns = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stopped.wait_for(|s| *s) => return,
        };
        let Ok((tcp, _)) = accepted else { continue };
        let service = TraceServiceServer::new(Collector {
            store: store.clone(),
        });
        conns.spawn(async move {
            let svc = hyper_util::service::TowerToHyperService::new(service);
            let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
        // Reap finished connections so a long run does not accumulate them.
        while conns.try_join_next().is_some() {}
    }
}

struct Collector {
    store: Arc<Store>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut received = Vec::new();
        for rs in request.into_inner().resource_spans {
            let resource = rs
                .resource
                .map(|r| attributes(r.attributes))
                .unwrap_or_default();
            for ss in rs.scope_spans {
                let scope = ss.scope.map(|s| s.name).unwrap_or_default();
                for s in ss.spans {
                    let status = s.status.unwrap_or_default();
                    received.push(ReceivedSpan {
                        trace_id: hex(&s.trace_id),
                        span_id: hex(&s.span_id),
                        parent_span_id: (!s.parent_span_id.is_empty())
                            .then(|| hex(&s.parent_span_id)),
                        name: s.name,
                        kind: match s.kind {
                            1 => SpanKind::Internal,
                            2 => SpanKind::Server,
                            3 => SpanKind::Client,
                            4 => SpanKind::Producer,
                            5 => SpanKind::Consumer,
                            _ => SpanKind::Unspecified,
                        },
                        status: match status.code {
                            1 => StatusCode::Ok,
                            2 => StatusCode::Error,
                            _ => StatusCode::Unset,
                        },
                        status_message: status.message,
                        attributes: attributes(s.attributes),
                        resource: resource.clone(),
                        scope: scope.clone(),
                        start_unix_nanos: s.start_time_unix_nano,
                        end_unix_nanos: s.end_time_unix_nano,
                    });
                }
            }
        }
        if let Some(sink) = &self.store.sink {
            received.iter().for_each(sink);
        }
        self.store
            .spans
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(received);
        self.store.requests.fetch_add(1, Ordering::AcqRel);
        self.store.arrived.notify_waiters();
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

fn attributes(kvs: Vec<KeyValue>) -> BTreeMap<String, AttrValue> {
    kvs.into_iter()
        .map(|kv| (kv.key, value(kv.value)))
        .collect()
}

fn value(v: Option<AnyValue>) -> AttrValue {
    match v.and_then(|v| v.value) {
        Some(any_value::Value::StringValue(s)) => AttrValue::String(s),
        Some(any_value::Value::IntValue(i)) => AttrValue::Int(i),
        Some(any_value::Value::DoubleValue(d)) => AttrValue::Double(d),
        Some(any_value::Value::BoolValue(b)) => AttrValue::Bool(b),
        Some(other) => AttrValue::Other(format!("{other:?}")),
        None => AttrValue::Other(String::new()),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
