use super::*;
use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry_sdk::error::OTelSdkResult;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

fn span(i: u64) -> SpanData {
    SpanData {
        span_context: SpanContext::new(
            TraceId::from(u128::from(i) + 1),
            SpanId::from(i + 1),
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        ),
        parent_span_id: SpanId::INVALID,
        parent_span_is_remote: false,
        span_kind: SpanKind::Client,
        name: "GET".into(),
        start_time: SystemTime::UNIX_EPOCH,
        end_time: SystemTime::UNIX_EPOCH,
        attributes: Vec::new(),
        dropped_attributes_count: 0,
        events: Default::default(),
        links: Default::default(),
        status: Status::Unset,
        instrumentation_scope: Default::default(),
    }
}

/// An exporter that records batch sizes, or never answers.
#[derive(Debug, Clone, Default)]
struct Fake {
    batches: Arc<Mutex<Vec<usize>>>,
    hang: bool,
}

impl SpanExporter for Fake {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        if self.hang {
            std::future::pending::<()>().await;
        }
        self.batches.lock().unwrap().push(batch.len());
        Ok(())
    }
}

const SMALL: Limits = Limits {
    queue: 8,
    max_batch: 4,
    interval: Duration::from_secs(1),
    export_timeout: Duration::from_secs(10),
};

fn target(endpoint: &str) -> Option<Target> {
    Some(Target {
        endpoint: endpoint.into(),
        resource: vec![("service.name", "reviews.shop".into())],
    })
}

/// Lets the export task run until it waits for time or a span.
async fn settle() {
    for _ in 0..16 {
        tokio::task::yield_now().await;
    }
}

/// Advances paused time an interval at a time until every offered span is accounted for.
async fn until_accounted(c: &Counters, offered: u64) {
    for _ in 0..1000 {
        if c.dropped.get() + c.exported.get() == offered {
            return;
        }
        tokio::time::sleep(SMALL.interval).await;
    }
    panic!(
        "offered {offered}, dropped {}, exported {}",
        c.dropped.get(),
        c.exported.get()
    );
}

#[tokio::test(start_paused = true)]
async fn spans_go_in_batches_of_at_most_n_or_when_the_interval_passes() {
    let fake = Fake::default();
    let counters = Counters::default();
    let f = fake.clone();
    let q = Queue::spawn(counters.clone(), SMALL, move |_| Ok(f.clone()));
    q.retarget(target("http://collector:4317"));
    settle().await;
    for i in 0..6 {
        q.offer(span(i));
    }
    settle().await;
    assert_eq!(
        *fake.batches.lock().unwrap(),
        [4],
        "a full batch goes at once"
    );
    tokio::time::sleep(SMALL.interval).await;
    settle().await;
    assert_eq!(
        *fake.batches.lock().unwrap(),
        [4, 2],
        "the rest after the interval"
    );
    assert_eq!(counters.exported.get(), 6);
    assert_eq!(counters.dropped.get(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_collector_that_never_answers_bounds_the_queue_and_counts_every_drop() {
    let fake = Fake {
        hang: true,
        ..Fake::default()
    };
    let counters = Counters::default();
    let f = fake.clone();
    let q = Queue::spawn(counters.clone(), SMALL, move |_| Ok(f.clone()));
    q.retarget(target("http://collector:4317"));
    settle().await;
    let offered = 100;
    for i in 0..offered {
        q.offer(span(i));
        assert!(q.len() <= SMALL.queue);
    }
    // The task took nothing yet: the queue holds its capacity, the rest were dropped at once.
    assert_eq!(q.len(), SMALL.queue);
    assert_eq!(counters.dropped.get(), offered - SMALL.queue as u64);
    // Every batch the task takes hangs until the export deadline, then is dropped too.
    until_accounted(&counters, offered).await;
    assert_eq!(counters.exported.get(), 0);
    assert_eq!(counters.failed.get(), 2, "two batches of four timed out");
    assert!(q.is_empty());
}

#[tokio::test(start_paused = true)]
async fn the_exporter_is_rebuilt_only_when_the_endpoint_changes() {
    let built = Arc::new(Mutex::new(Vec::<String>::new()));
    let b = built.clone();
    let q = Queue::spawn(Counters::default(), SMALL, move |e: &str| {
        b.lock().unwrap().push(e.to_string());
        Ok(Fake::default())
    });
    q.retarget(target("http://a:4317"));
    settle().await;
    let mut other_resource = target("http://a:4317");
    other_resource.as_mut().unwrap().resource[0].1 = "ratings.shop".into();
    q.retarget(other_resource);
    settle().await;
    assert_eq!(*built.lock().unwrap(), ["http://a:4317"]);
    q.retarget(target("http://b:4317"));
    settle().await;
    assert_eq!(*built.lock().unwrap(), ["http://a:4317", "http://b:4317"]);
}

#[tokio::test(start_paused = true)]
async fn without_a_target_spans_are_dropped_and_counted() {
    let fake = Fake::default();
    let counters = Counters::default();
    let f = fake.clone();
    let q = Queue::spawn(counters.clone(), SMALL, move |_| Ok(f.clone()));
    q.retarget(target("http://a:4317"));
    settle().await;
    q.offer(span(1));
    settle().await;
    q.retarget(None);
    settle().await;
    q.offer(span(2));
    settle().await;
    until_accounted(&counters, 2).await;
    assert_eq!(
        counters.dropped.get(),
        2,
        "the batched one and the late one"
    );
    assert!(fake.batches.lock().unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn an_exporter_that_cannot_be_built_drops_and_counts() {
    let counters = Counters::default();
    let q = Queue::spawn(counters.clone(), SMALL, |_: &str| {
        Err::<Fake, _>("bad endpoint".to_string())
    });
    q.retarget(target("not a url"));
    settle().await;
    for i in 0..3 {
        q.offer(span(i));
    }
    until_accounted(&counters, 3).await;
    assert_eq!(counters.dropped.get(), 3);
}

/// The real OTLP/gRPC exporter against a port nobody listens on.
#[tokio::test(start_paused = true)]
async fn a_dead_collector_costs_dropped_spans_only() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    otlp_exporter_drops_everything(&endpoint).await;
}

/// The real OTLP/gRPC exporter against a listener that accepts and never answers.
#[tokio::test(start_paused = true)]
async fn a_silent_collector_costs_dropped_spans_only() {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", silent.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut conns = Vec::new();
        loop {
            if let Ok((c, _)) = silent.accept().await {
                conns.push(c);
            }
        }
    });
    otlp_exporter_drops_everything(&endpoint).await;
    held.abort();
}

async fn otlp_exporter_drops_everything(endpoint: &str) {
    let counters = Counters::default();
    let q = Queue::spawn(counters.clone(), SMALL, move |e: &str| {
        otlp(e, SMALL.export_timeout)
    });
    q.retarget(target(endpoint));
    settle().await;
    let offered = 50;
    for i in 0..offered {
        q.offer(span(i));
        assert!(q.len() <= SMALL.queue);
    }
    until_accounted(&counters, offered).await;
    assert_eq!(counters.exported.get(), 0);
    assert!(counters.failed.get() >= 1);
    assert!(q.is_empty());
}
