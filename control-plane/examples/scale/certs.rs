//! Certificates per second: many concurrent CreateCertificate calls over a few connections, each
//! CSR for a fresh P-256 key, all prepared before the clock starts.
//!
//! The CA rate-limits per identity (burst 10, 30 per minute) — a guard against one looping proxy,
//! not a throughput limit — so requests are spread over distinct identities (namespaces
//! `certs-<j>` × service accounts `svc-<i>`), at most `per_identity` (≤ 10) each.

use crate::Minter;
use sinew_control_plane::auth::Caller;
use sinew_proto::ca::v1 as ca;
use sinew_proto::ca::v1::certificate_service_client::CertificateServiceClient;
use sinew_proxy::config::ControlPlane;
use sinew_proxy::control::Channel;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub struct Job {
    identity: String,
    token: Arc<String>,
    csr: String,
}

pub struct Outcome {
    pub issued: usize,
    pub failed: usize,
    pub first_errors: Vec<String>,
    pub elapsed: Duration,
    pub latencies_us: Vec<u64>,
}

fn csr_for(san: &str) -> anyhow::Result<String> {
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params.subject_alt_names = vec![rcgen::SanType::URI(san.try_into()?)];
    Ok(params.serialize_request(&key)?.pem()?)
}

/// Keys, CSRs and tokens for `count` requests (on every core; not timed).
pub fn prepare(
    tokens: &Minter,
    count: usize,
    per_identity: usize,
    services: usize,
) -> anyhow::Result<Vec<Job>> {
    let per_identity = per_identity.clamp(1, 10);
    let identities = count.div_ceil(per_identity);
    let sas = services.max(1);
    let ids: Vec<(String, Arc<String>)> = (0..identities)
        .map(|i| {
            let (ns, sa) = (format!("certs-{}", i / sas), format!("svc-{}", i % sas));
            let token = tokens.mint(
                &Caller {
                    namespace: ns.clone(),
                    service_account: sa.clone(),
                    pod: Some(format!("{sa}-cert")),
                },
                Duration::from_secs(3600),
            );
            (
                format!("spiffe://cluster.local/ns/{ns}/sa/{sa}"),
                Arc::new(token),
            )
        })
        .collect();
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let chunk = count.div_ceil(threads).max(1);
    let csrs: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..count)
            .step_by(chunk)
            .map(|from| {
                let to = (from + chunk).min(count);
                // What the CSR asks for is ignored by the CA; name something plausible.
                s.spawn(move || {
                    (from..to)
                        .map(|i| csr_for(&format!("spiffe://cluster.local/ns/x/sa/csr-{i}")))
                        .collect::<anyhow::Result<Vec<_>>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("CSR thread panicked"))
            .collect::<anyhow::Result<Vec<Vec<_>>>>()
            .map(|v| v.into_iter().flatten().collect())
    })?;
    Ok(csrs
        .into_iter()
        .enumerate()
        .map(|(i, csr)| {
            let (identity, token) = &ids[i / per_identity];
            Job {
                identity: identity.clone(),
                token: token.clone(),
                csr,
            }
        })
        .collect())
}

async fn create(
    client: &mut CertificateServiceClient<Channel>,
    token: &str,
    csr: String,
) -> Result<ca::CreateCertificateResponse, tonic::Status> {
    let mut req = tonic::Request::new(ca::CreateCertificateRequest {
        csr,
        validity: None,
    });
    req.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}")
            .parse()
            .map_err(|_| tonic::Status::internal("token is not ASCII"))?,
    );
    client.create_certificate(req).await.map(|r| r.into_inner())
}

/// Issues every job with `concurrency` callers over `connections` channels; the clock runs from
/// the first request to the last answer (connections are opened and warmed before).
pub async fn run(
    config: &ControlPlane,
    tokens: &Minter,
    jobs: Vec<Job>,
    concurrency: usize,
    connections: usize,
    limit: Duration,
) -> anyhow::Result<Outcome> {
    let mut clients = Vec::new();
    for c in 0..connections.max(1) {
        let channel = Channel::new(config)?;
        let mut client = CertificateServiceClient::with_origin(channel.clone(), channel.origin());
        // Warm-up (TLS handshake, HTTP/2 settings) with an identity of its own.
        let token = tokens.mint(
            &Caller {
                namespace: "certs-warmup".into(),
                service_account: format!("conn-{c}"),
                pod: None,
            },
            Duration::from_secs(600),
        );
        create(
            &mut client,
            &token,
            csr_for("spiffe://cluster.local/ns/x/sa/warmup")?,
        )
        .await
        .map_err(|e| anyhow::anyhow!("warm-up certificate: {e}"))?;
        clients.push(client);
    }
    let jobs = Arc::new(
        jobs.into_iter()
            .map(|j| std::sync::Mutex::new(Some(j)))
            .collect::<Vec<_>>(),
    );
    let cursor = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + limit;
    let mut workers = Vec::new();
    for w in 0..concurrency.max(1) {
        let mut client = clients[w % clients.len()].clone();
        let (jobs, cursor) = (jobs.clone(), cursor.clone());
        workers.push(tokio::spawn(async move {
            let (mut ok, mut failed, mut errors, mut lat) =
                (0usize, 0usize, Vec::<String>::new(), Vec::<u64>::new());
            loop {
                let i = cursor.fetch_add(1, Ordering::Relaxed);
                let Some(slot) = jobs.get(i) else { break };
                let Some(job) = slot.lock().ok().and_then(|mut j| j.take()) else {
                    continue;
                };
                let t = Instant::now();
                let res =
                    tokio::time::timeout_at(deadline, create(&mut client, &job.token, job.csr))
                        .await;
                lat.push(t.elapsed().as_micros() as u64);
                match res {
                    Ok(Ok(rsp)) if rsp.identity == job.identity && !rsp.cert_chain.is_empty() => {
                        ok += 1
                    }
                    Ok(Ok(rsp)) => {
                        failed += 1;
                        errors.push(format!(
                            "issued {} for {} ({} certificates)",
                            rsp.identity,
                            job.identity,
                            rsp.cert_chain.len()
                        ));
                    }
                    Ok(Err(e)) => {
                        failed += 1;
                        errors.push(format!("{}: {:?} {}", job.identity, e.code(), e.message()));
                    }
                    Err(_) => {
                        failed += 1;
                        errors.push("phase time limit reached".into());
                        break;
                    }
                }
                errors.truncate(5);
            }
            (ok, failed, errors, lat)
        }));
    }
    let mut out = Outcome {
        issued: 0,
        failed: 0,
        first_errors: Vec::new(),
        elapsed: Duration::ZERO,
        latencies_us: Vec::new(),
    };
    for w in workers {
        let (ok, failed, errors, lat) = w.await?;
        out.issued += ok;
        out.failed += failed;
        out.first_errors.extend(errors);
        out.latencies_us.extend(lat);
    }
    out.elapsed = started.elapsed();
    out.first_errors.truncate(10);
    Ok(out)
}
