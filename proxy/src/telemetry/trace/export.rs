//! Span export: a bounded queue between the request path and one task that sends batches over
//! OTLP/gRPC.
//!
//! Promises: [`Queue::offer`] never waits and never allocates beyond the span it is given: a full
//! queue drops the span and counts it. The task holds at most one batch besides the queue, so
//! memory is bounded by `queue + batch` spans whatever the collector does. A collector that
//! refuses, fails or never answers costs one batch per attempt (dropped and counted after at most
//! `export_timeout`), never a request's time. The exporter is rebuilt only when the endpoint
//! changes; a new resource (the workload's names) is applied in place.

use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use prometheus_client::metrics::counter::Counter;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

/// Sizes and times of the export pipeline.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Spans waiting for the export task; one more is dropped.
    pub queue: usize,
    /// A batch is sent when it has this many spans…
    pub max_batch: usize,
    /// …or when this long has passed since the last send, whichever comes first.
    pub interval: Duration,
    /// An export that has not answered by then is abandoned and its spans dropped.
    pub export_timeout: Duration,
}

/// The OpenTelemetry SDK's batch processor sizes (2048 queued, 512 a batch), a shorter interval
/// (spans show up in Jaeger within a second), and a 10 s export deadline.
pub const DEFAULT_LIMITS: Limits = Limits {
    queue: 2048,
    max_batch: 512,
    interval: Duration::from_secs(1),
    export_timeout: Duration::from_secs(10),
};

/// The export counters, shared with the proxy's metrics (`sinew_trace_spans_*_total`).
#[derive(Clone, Debug, Default)]
pub struct Counters {
    /// Spans lost: queue full, or their batch failed or timed out.
    pub dropped: Counter,
    /// Spans the collector accepted.
    pub exported: Counter,
    /// Batches that failed or timed out.
    pub failed: Counter,
}

/// Where spans go and what they say about this proxy.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    pub endpoint: String,
    /// The resource's attributes (`service.name`, `k8s.pod.name`, …).
    pub resource: Vec<(&'static str, String)>,
}

/// The request path's side of the pipeline.
#[derive(Debug)]
pub struct Queue {
    tx: mpsc::Sender<SpanData>,
    target: watch::Sender<Option<Target>>,
    counters: Counters,
}

// === impl Queue ===

impl Queue {
    /// Starts the export task on the current tokio runtime. `make` builds an exporter for an
    /// endpoint (inside the task: tonic's channel needs the runtime).
    pub fn spawn<E, F>(counters: Counters, limits: Limits, make: F) -> Self
    where
        E: SpanExporter + 'static,
        F: Fn(&str) -> Result<E, String> + Send + 'static,
    {
        let (tx, rx) = mpsc::channel(limits.queue.max(1));
        let (target, target_rx) = watch::channel(None);
        let worker = Worker {
            rx,
            target: target_rx,
            counters: counters.clone(),
            limits,
            make,
            exporter: None,
            endpoint: None,
            batch: Vec::new(),
            failing: false,
        };
        tokio::spawn(worker.run());
        Self {
            tx,
            target,
            counters,
        }
    }

    /// Hands a finished span to the export task, or drops (and counts) it when the queue is full.
    pub fn offer(&self, span: SpanData) {
        if self.tx.try_send(span).is_err() {
            self.counters.dropped.inc();
        }
    }

    /// Points the export at `target` (`None`: export nothing; queued spans are dropped).
    pub fn retarget(&self, target: Option<Target>) {
        self.target.send_if_modified(|cur| {
            let changed = *cur != target;
            *cur = target;
            changed
        });
    }

    /// Spans waiting in the queue (tests and debugging).
    pub fn len(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

struct Worker<E, F> {
    rx: mpsc::Receiver<SpanData>,
    target: watch::Receiver<Option<Target>>,
    counters: Counters,
    limits: Limits,
    make: F,
    exporter: Option<E>,
    endpoint: Option<String>,
    batch: Vec<SpanData>,
    /// The last export failed: the next failure is not logged as news.
    failing: bool,
}

// === impl Worker ===

impl<E, F> Worker<E, F>
where
    E: SpanExporter + 'static,
    F: Fn(&str) -> Result<E, String> + Send + 'static,
{
    /// Ends when the tracer is dropped (both channels closed).
    async fn run(mut self) {
        let mut tick = tokio::time::interval(self.limits.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                changed = self.target.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let target = self.target.borrow_and_update().clone();
                    self.retarget(target);
                }
                span = self.rx.recv() => {
                    let Some(span) = span else { return };
                    if self.exporter.is_none() {
                        self.counters.dropped.inc();
                        continue;
                    }
                    self.batch.push(span);
                    if self.batch.len() >= self.limits.max_batch {
                        self.flush().await;
                        tick.reset();
                    }
                }
                _ = tick.tick() => {
                    if !self.batch.is_empty() {
                        self.flush().await;
                    }
                }
            }
        }
    }

    fn retarget(&mut self, target: Option<Target>) {
        let Some(target) = target else {
            self.drop_batch();
            self.exporter = None;
            self.endpoint = None;
            return;
        };
        if self.endpoint.as_deref() != Some(target.endpoint.as_str()) {
            self.drop_batch();
            self.exporter = match (self.make)(&target.endpoint) {
                Ok(e) => {
                    info!(endpoint = %target.endpoint, "exporting spans over OTLP/gRPC");
                    Some(e)
                }
                Err(error) => {
                    warn!(endpoint = %target.endpoint, %error, "cannot export spans to this OTLP endpoint; spans are dropped");
                    None
                }
            };
            self.endpoint = Some(target.endpoint.clone());
            self.failing = false;
        }
        if let Some(e) = &mut self.exporter {
            let resource = Resource::builder_empty()
                .with_attributes(
                    target
                        .resource
                        .iter()
                        .map(|(k, v)| opentelemetry::KeyValue::new(*k, v.clone())),
                )
                .build();
            e.set_resource(&resource);
        }
    }

    fn drop_batch(&mut self) {
        self.counters.dropped.inc_by(self.batch.len() as u64);
        self.batch.clear();
    }

    async fn flush(&mut self) {
        let Some(exporter) = &self.exporter else {
            self.drop_batch();
            return;
        };
        // Grown as spans come rather than reserved at `max_batch`: at low rates a batch holds a
        // few dozen spans.
        let batch = std::mem::take(&mut self.batch);
        let n = batch.len() as u64;
        let res = tokio::time::timeout(self.limits.export_timeout, exporter.export(batch)).await;
        let error = match res {
            Ok(Ok(())) => {
                self.counters.exported.inc_by(n);
                if std::mem::take(&mut self.failing) {
                    info!("span export recovered");
                }
                return;
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {:?}", self.limits.export_timeout),
        };
        self.counters.failed.inc();
        self.counters.dropped.inc_by(n);
        let endpoint = self.endpoint.as_deref().unwrap_or_default();
        // Said once per outage: a down collector would otherwise log every second.
        if std::mem::replace(&mut self.failing, true) {
            debug!(endpoint, %error, spans = n, "span export failed; spans dropped");
        } else {
            warn!(endpoint, %error, spans = n, "span export failed; spans are dropped (and counted in sinew_trace_spans_dropped_total) until the collector answers");
        }
    }
}

/// The OTLP/gRPC exporter for `endpoint` (`http://host:port`), one attempt per batch (a failed
/// batch is dropped; the next one tries again).
pub fn otlp(endpoint: &str, timeout: Duration) -> Result<opentelemetry_otlp::SpanExporter, String> {
    use opentelemetry_otlp::{WithExportConfig, WithTonicConfig};
    opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .with_timeout(timeout)
        .with_retry_policy(opentelemetry_otlp::RetryPolicy::disabled())
        .build()
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests;
