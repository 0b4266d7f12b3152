//! Leader election on a `coordination.k8s.io/v1` Lease: which replica does the single-writer work
//! (status conditions, trust-bundle ConfigMaps) right now.
//!
//! What it promises:
//! - **At most one leader while clocks tick at the same rate**: a replica takes over another's
//!   Lease only after it has seen the *same* record (holder, renewTime, resourceVersion) unchanged
//!   for the holder's `leaseDurationSeconds` **by its own clock**; it never compares its clock
//!   with the holder's `renewTime` (nodes' clocks differ). Every write carries the
//!   `resourceVersion` it read as a precondition, so of two replicas racing, one gets 409 and
//!   stays a follower.
//! - **A leader that cannot renew steps down first**: after `renew_deadline` (shorter than the
//!   lease) without a successful renewal the receiver says `false`, before anyone else may take
//!   over.
//! - The receiver says `true` only after a write of ours succeeded.
//!
//! The algorithm is client-go's (which istiod vendors), reduced to what we need: no release on
//! shutdown (a successor waits one lease duration), no preferred holder.

#[cfg(test)]
mod tests;

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::sync::watch;
use tokio::time::Instant;

use super::{ApiFailure, classify};

/// The Lease the control plane's replicas compete for, unless configured otherwise.
pub const DEFAULT_LEASE_NAME: &str = "sinew-control-plane-leader";
/// How long a holder's record must stay unchanged before another replica takes over (Istio's
/// default TTL).
pub const DEFAULT_LEASE_DURATION: Duration = Duration::from_secs(30);
/// A leader that has not renewed for this long stops leading (before the lease can expire).
pub const DEFAULT_RENEW_DEADLINE: Duration = Duration::from_secs(20);
/// How often a leader renews and a follower looks.
pub const DEFAULT_RETRY_PERIOD: Duration = Duration::from_secs(10);

/// Who competes, for which Lease, on what schedule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// This replica, as written into `holderIdentity` (the pod name in a cluster).
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

/// A `LeaseConfig` that cannot work.
#[derive(Debug, thiserror::Error)]
#[error("invalid leader election config: {0}")]
pub struct LeaseConfigError(&'static str);

/// What one attempt found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// We created the Lease or took it over.
    Acquired,
    /// We held it and wrote a new renewTime.
    Renewed,
    /// Another replica holds it (or won a race with us).
    HeldByOther,
}

/// The last record of another holder we saw, and since when (our clock) it has not changed.
#[derive(Debug)]
struct Observed {
    holder: String,
    renew_time: Option<MicroTime>,
    resource_version: Option<String>,
    duration: Duration,
    since: Instant,
}

struct Elector {
    api: Api<Lease>,
    config: LeaseConfig,
    observed: Option<Observed>,
}

// === impl LeaseConfig ===

impl LeaseConfig {
    /// The defaults above for `identity` competing in `namespace`.
    pub fn new(namespace: impl Into<String>, identity: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: DEFAULT_LEASE_NAME.to_string(),
            identity: identity.into(),
            lease_duration: DEFAULT_LEASE_DURATION,
            renew_deadline: DEFAULT_RENEW_DEADLINE,
            retry_period: DEFAULT_RETRY_PERIOD,
        }
    }

    /// This replica's identity in a cluster: `POD_NAME` (set it from the downward API,
    /// `fieldRef: metadata.name`), else `HOSTNAME` (a pod's hostname is its name), else a name
    /// with the process id. Must differ between replicas.
    pub fn identity_from_env() -> String {
        ["POD_NAME", "HOSTNAME"]
            .iter()
            .find_map(|var| std::env::var(var).ok().filter(|v| !v.is_empty()))
            .unwrap_or_else(|| format!("sinew-control-plane-{}", std::process::id()))
    }

    /// The orderings the safety argument needs: retry < renew deadline < lease duration, and an
    /// identity to write.
    pub fn validate(&self) -> Result<(), LeaseConfigError> {
        if self.identity.is_empty() {
            return Err(LeaseConfigError("the identity is empty; set POD_NAME"));
        }
        if self.retry_period.is_zero() || self.retry_period >= self.renew_deadline {
            return Err(LeaseConfigError(
                "the retry period must be non-zero and shorter than the renew deadline",
            ));
        }
        if self.renew_deadline >= self.lease_duration {
            return Err(LeaseConfigError(
                "the renew deadline must be shorter than the lease duration, or two replicas \
                 could lead at once",
            ));
        }
        if self.lease_duration.as_secs() == 0 || self.lease_duration.as_secs() > i32::MAX as u64 {
            return Err(LeaseConfigError(
                "the lease duration must be whole seconds, at least 1",
            ));
        }
        Ok(())
    }

    fn duration_seconds(&self) -> i32 {
        // validate() bounds it to i32.
        i32::try_from(self.lease_duration.as_secs()).unwrap_or(i32::MAX)
    }
}

/// Starts competing for the Lease. The receiver says whether this replica leads right now; the
/// election stops when every receiver is dropped.
pub fn spawn(
    client: kube::Client,
    config: LeaseConfig,
) -> Result<watch::Receiver<bool>, LeaseConfigError> {
    config.validate()?;
    let (tx, rx) = watch::channel(false);
    let elector = Elector {
        api: Api::namespaced(client, &config.namespace),
        config,
        observed: None,
    };
    tokio::spawn(elector.run(tx));
    Ok(rx)
}

// === impl Elector ===

impl Elector {
    async fn run(mut self, tx: watch::Sender<bool>) {
        let retry = self.config.retry_period;
        // When our last write succeeded while leading.
        let mut renewed_at: Option<Instant> = None;
        loop {
            let attempt = tokio::time::timeout(retry, self.step()).await;
            let now = Instant::now();
            let leading = match attempt {
                Ok(Ok(Step::Acquired | Step::Renewed)) => {
                    renewed_at = Some(now);
                    true
                }
                Ok(Ok(Step::HeldByOther)) => {
                    renewed_at = None;
                    false
                }
                Ok(Err(error)) => {
                    tracing::warn!(lease = %self.config.name, %error, "leader election: API call failed");
                    self.still_leading(&mut renewed_at, now)
                }
                Err(_) => {
                    tracing::warn!(lease = %self.config.name, "leader election: API call timed out");
                    self.still_leading(&mut renewed_at, now)
                }
            };
            tx.send_if_modified(|current| {
                if *current == leading {
                    return false;
                }
                tracing::info!(lease = %self.config.name, identity = %self.config.identity, leading, "leadership changed");
                *current = leading;
                true
            });
            tokio::select! {
                () = tokio::time::sleep(retry) => {}
                () = tx.closed() => return,
            }
        }
    }

    /// After a failed attempt: a leader keeps leading until its renew deadline has passed.
    fn still_leading(&self, renewed_at: &mut Option<Instant>, now: Instant) -> bool {
        let ok = renewed_at.is_some_and(|t| now.duration_since(t) < self.config.renew_deadline);
        if !ok {
            *renewed_at = None;
        }
        ok
    }

    /// One round: read the Lease, then create, renew or take it over if we may.
    async fn step(&mut self) -> Result<Step, kube::Error> {
        let Some(lease) = self.api.get_opt(&self.config.name).await? else {
            return self.create().await;
        };
        let spec = lease.spec.unwrap_or_default();
        let rv = lease.metadata.resource_version;
        let holder = spec.holder_identity.filter(|h| !h.is_empty());
        let transitions = spec.lease_transitions.unwrap_or(0);
        match holder {
            Some(holder) if holder == self.config.identity => {
                self.observed = None;
                self.write(rv, None).await.map(|won| {
                    if won {
                        Step::Renewed
                    } else {
                        Step::HeldByOther
                    }
                })
            }
            // Released: nobody to wait for.
            None => self.take_over(rv, transitions).await,
            Some(holder) => {
                let duration = spec
                    .lease_duration_seconds
                    .and_then(|s| u64::try_from(s).ok())
                    .filter(|s| *s > 0)
                    .map_or(self.config.lease_duration, Duration::from_secs);
                let unchanged = self.observed.as_ref().is_some_and(|o| {
                    o.holder == holder
                        && o.renew_time == spec.renew_time
                        && o.resource_version == rv
                });
                if !unchanged {
                    self.observed = Some(Observed {
                        holder,
                        renew_time: spec.renew_time,
                        resource_version: rv,
                        duration,
                        since: Instant::now(),
                    });
                    return Ok(Step::HeldByOther);
                }
                let stale = self
                    .observed
                    .as_ref()
                    .is_some_and(|o| o.since.elapsed() >= o.duration);
                if stale {
                    tracing::info!(lease = %self.config.name, "the leader stopped renewing; taking over");
                    self.take_over(rv, transitions).await
                } else {
                    Ok(Step::HeldByOther)
                }
            }
        }
    }

    async fn create(&mut self) -> Result<Step, kube::Error> {
        let now = MicroTime(jiff::Timestamp::now());
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(self.config.name.clone()),
                namespace: Some(self.config.namespace.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.config.identity.clone()),
                lease_duration_seconds: Some(self.config.duration_seconds()),
                acquire_time: Some(now.clone()),
                renew_time: Some(now),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        };
        match self.api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(Step::Acquired),
            // Another replica created it between our GET and POST: it leads.
            Err(e) if classify(&e) == ApiFailure::Conflict => Ok(Step::HeldByOther),
            Err(e) => Err(e),
        }
    }

    async fn take_over(
        &mut self,
        rv: Option<String>,
        transitions: i32,
    ) -> Result<Step, kube::Error> {
        self.observed = None;
        let won = self.write(rv, Some(transitions.saturating_add(1))).await?;
        Ok(if won {
            Step::Acquired
        } else {
            Step::HeldByOther
        })
    }

    /// Writes us as the holder with a fresh renewTime, conditional on `rv` (a merge patch whose
    /// `metadata.resourceVersion` the API server checks). `transitions`: set on a take-over,
    /// with the acquire time. Ok(false): someone else wrote first.
    async fn write(
        &mut self,
        rv: Option<String>,
        transitions: Option<i32>,
    ) -> Result<bool, kube::Error> {
        let now = MicroTime(jiff::Timestamp::now());
        let mut spec = json!({
            "holderIdentity": self.config.identity,
            "leaseDurationSeconds": self.config.duration_seconds(),
            "renewTime": now,
        });
        if let Some(transitions) = transitions {
            spec["acquireTime"] = json!(now);
            spec["leaseTransitions"] = json!(transitions);
        }
        let mut patch = json!({ "spec": spec });
        if let Some(rv) = rv {
            patch["metadata"] = json!({ "resourceVersion": rv });
        }
        match self
            .api
            .patch(
                &self.config.name,
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if classify(&e) == ApiFailure::Conflict => Ok(false),
            Err(e) => Err(e),
        }
    }
}
