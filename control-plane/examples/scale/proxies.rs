//! The simulated proxies: one discovery stream each, over its own TLS connection (a separate
//! `sinew_proxy::control::Channel` per proxy, as real sidecars have). Each says hello, ACKs the
//! base response, subscribes to its K names, ACKs every response, and records when each
//! service revision arrives.

use super::registry;
use sinew_proto::discovery::v1 as pb;
use sinew_proto::discovery::v1::discovery_client::DiscoveryClient;
use sinew_proto::discovery::v1::discovery_request::Kind;
use sinew_proto::discovery::v1::resource::Kind as ResourceKind;
use sinew_proxy::config::ControlPlane;
use sinew_proxy::control::Channel;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

/// One service revision arriving at one proxy.
#[derive(Clone, Copy, Debug)]
pub struct Event {
    pub rev: u32,
    pub proxy: u32,
    /// Microseconds since the recorder's start.
    pub at_us: u64,
}

/// What every proxy task reports into.
pub struct Recorder {
    start: Instant,
    /// Proxies holding their first complete answer.
    pub subscribed: AtomicUsize,
    /// Proxies that failed before being subscribed.
    pub failed: AtomicUsize,
    /// Streams that ended after being subscribed.
    pub ended: AtomicUsize,
    /// Responses after the subscription answer (pushes).
    pub pushes: AtomicU64,
    /// Service resources in those pushes.
    pub pushed_resources: AtomicU64,
    /// Pushed service resources with the revision the proxy already held: a re-send of
    /// unchanged content.
    pub unchanged_resends: AtomicU64,
    pub alive: Vec<AtomicBool>,
    errors: Mutex<Vec<String>>,
    /// Per service: every revision > 0 that reached a proxy.
    events: Vec<Mutex<Vec<Event>>>,
    /// (service, revision) being waited for; service u32::MAX means any service.
    watch: AtomicU64,
    pub watch_hits: AtomicU64,
}

pub const ANY_SERVICE: u32 = u32::MAX;

impl Recorder {
    pub fn new(proxies: usize, services: usize) -> Self {
        Self {
            start: Instant::now(),
            subscribed: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            ended: AtomicUsize::new(0),
            pushes: AtomicU64::new(0),
            pushed_resources: AtomicU64::new(0),
            unchanged_resends: AtomicU64::new(0),
            alive: (0..proxies).map(|_| AtomicBool::new(false)).collect(),
            errors: Mutex::new(Vec::new()),
            events: (0..services).map(|_| Mutex::new(Vec::new())).collect(),
            watch: AtomicU64::new(u64::MAX),
            watch_hits: AtomicU64::new(0),
        }
    }

    pub fn now_us(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    /// Counts arrivals of `rev` of `svc` (or of any service) in `watch_hits`, from zero.
    pub fn watch(&self, svc: u32, rev: u32) {
        self.watch
            .store((u64::from(svc) << 32) | u64::from(rev), Ordering::SeqCst);
        self.watch_hits.store(0, Ordering::SeqCst);
    }

    fn record(&self, svc: usize, rev: u32, proxy: u32) {
        let at_us = self.now_us();
        if let Some(v) = self.events.get(svc) {
            v.lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(Event { rev, proxy, at_us });
        }
        let w = self.watch.load(Ordering::SeqCst);
        let (wsvc, wrev) = ((w >> 32) as u32, w as u32);
        if wrev == rev && (wsvc == ANY_SERVICE || wsvc as usize == svc) {
            self.watch_hits.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Arrivals of `rev` of `svc`.
    pub fn events(&self, svc: usize, rev: u32) -> Vec<Event> {
        self.events[svc]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|e| e.rev == rev)
            .copied()
            .collect()
    }

    fn error(&self, e: String) {
        let mut errors = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        if errors.len() < 10 {
            errors.push(e);
        }
    }

    pub fn first_errors(&self) -> Vec<String> {
        self.errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn alive(&self, proxy: usize) -> bool {
        self.alive[proxy].load(Ordering::SeqCst)
    }
}

/// Everything a proxy task needs.
pub struct Proxy {
    pub id: u32,
    pub config: Arc<ControlPlane>,
    pub token: String,
    pub services: Vec<u32>,
}

/// Starts every proxy; at most `concurrency` are connecting (TCP + TLS + hello + first answers)
/// at once, so the control plane's accept queue is not flooded. Returns the tasks.
pub fn spawn_all(
    proxies: Vec<Proxy>,
    concurrency: usize,
    rec: Arc<Recorder>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let gate = Arc::new(Semaphore::new(concurrency));
    proxies
        .into_iter()
        .map(|p| {
            let gate = gate.clone();
            let rec = rec.clone();
            tokio::spawn(async move {
                let Ok(permit) = gate.acquire_owned().await else {
                    return;
                };
                let id = p.id as usize;
                let mut permit = Some(permit);
                let res = run(p, &rec, &mut permit).await;
                if permit.is_some() {
                    rec.failed.fetch_add(1, Ordering::SeqCst);
                } else {
                    rec.ended.fetch_add(1, Ordering::SeqCst);
                    rec.alive[id].store(false, Ordering::SeqCst);
                }
                if let Err(e) = res {
                    rec.error(format!("proxy-{id}: {e:#}"));
                }
            })
        })
        .collect()
}

fn request(kind: Kind) -> pb::DiscoveryRequest {
    pb::DiscoveryRequest { kind: Some(kind) }
}

fn ack(nonce: String) -> pb::DiscoveryRequest {
    request(Kind::Ack(pb::Ack { nonce }))
}

use registry::rev_of;

const STEP_TIMEOUT: Duration = Duration::from_secs(60);

/// One proxy's stream. Releases `permit` once subscribed; returns when the stream ends.
async fn run(
    p: Proxy,
    rec: &Recorder,
    permit: &mut Option<OwnedSemaphorePermit>,
) -> anyhow::Result<()> {
    let channel = Channel::new(&p.config)?;
    let mut client = DiscoveryClient::with_origin(channel.clone(), channel.origin());
    let (tx, mut rx) = mpsc::channel(4);
    tx.send(request(Kind::Hello(pb::Hello {
        pod: format!("proxy-{}", p.id),
        namespace: registry::NAMESPACE.into(),
        labels: [("app".to_string(), "scale-client".to_string())].into(),
        ..Default::default()
    })))
    .await?;
    let mut req = tonic::Request::new(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)));
    req.metadata_mut()
        .insert("authorization", format!("Bearer {}", p.token).parse()?);
    let mut stream = tokio::time::timeout(STEP_TIMEOUT, client.stream(req))
        .await
        .map_err(|_| anyhow::anyhow!("no stream within {STEP_TIMEOUT:?}"))??
        .into_inner();
    let base = next(&mut stream).await?;
    anyhow::ensure!(
        base.resources.iter().any(|r| r.name == "settings"),
        "the first response has no settings"
    );
    tx.send(ack(base.nonce)).await?;
    tx.send(request(Kind::Subscribe(pb::Names {
        names: p
            .services
            .iter()
            .map(|&s| registry::name_of(s as usize))
            .collect(),
    })))
    .await?;
    let mut answered = 0;
    // (service, revision) this proxy holds.
    let mut held: Vec<(usize, u32)> = Vec::with_capacity(p.services.len());
    while answered < p.services.len() {
        let rsp = next(&mut stream).await?;
        for r in &rsp.resources {
            match &r.kind {
                Some(ResourceKind::Service(s)) => {
                    answered += 1;
                    if let (Some(svc), Some(rev)) = (registry::service_of(&r.name), rev_of(s)) {
                        held.push((svc, rev));
                        if rev > 0 {
                            rec.record(svc, rev, p.id);
                        }
                    }
                }
                other => anyhow::bail!("{} answered with {other:?}", r.name),
            }
        }
        tx.send(ack(rsp.nonce)).await?;
    }
    rec.alive[p.id as usize].store(true, Ordering::SeqCst);
    rec.subscribed.fetch_add(1, Ordering::SeqCst);
    drop(permit.take());
    loop {
        let Some(rsp) = stream.message().await? else {
            anyhow::bail!("the control plane ended the stream");
        };
        rec.pushes.fetch_add(1, Ordering::Relaxed);
        for r in &rsp.resources {
            if let Some(ResourceKind::Service(s)) = &r.kind
                && let (Some(svc), Some(rev)) = (registry::service_of(&r.name), rev_of(s))
            {
                rec.pushed_resources.fetch_add(1, Ordering::Relaxed);
                match held.iter_mut().find(|(v, _)| *v == svc) {
                    Some((_, r)) if *r == rev => {
                        rec.unchanged_resends.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    Some((_, r)) => *r = rev,
                    None => held.push((svc, rev)),
                }
                rec.record(svc, rev, p.id);
            }
        }
        tx.send(ack(rsp.nonce)).await?;
    }
}

async fn next(
    stream: &mut tonic::Streaming<pb::DiscoveryResponse>,
) -> anyhow::Result<pb::DiscoveryResponse> {
    tokio::time::timeout(STEP_TIMEOUT, stream.message())
        .await
        .map_err(|_| anyhow::anyhow!("no response within {STEP_TIMEOUT:?}"))??
        .ok_or_else(|| anyhow::anyhow!("the control plane ended the stream"))
}
