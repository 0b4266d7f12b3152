//! The discovery stream: one task per connected proxy, answering its subscriptions and pushing
//! what changed.
//!
//! Promises (the protocol rules are in docs/protocol.md):
//! - the first response carries the base resources (settings, trust bundle);
//! - every subscribed name is answered, with the service or `not_found`;
//! - after that a name is re-sent only when its version changes, and names whose resource
//!   disappears are listed in `removed` (as `not_found` answers for names still subscribed);
//! - a NACK changes nothing on either side except the status: the control plane remembers the
//!   reason (for `sinewctl status` and logs) and does not re-send the same version.

use crate::auth::Authenticator;
use crate::ca::TrustBundle;
use crate::compile::{Index, ProxyContext};
use crate::server::status::{ProxyState, Status as MeshStatus};
use futures_util::{Stream, StreamExt};
use sinew_proto::discovery::v1 as pb;
use sinew_proto::discovery::v1::discovery_request::Kind;
use sinew_proto::discovery::v1::resource::Kind as ResourceKind;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;
use tokio::sync::{mpsc, oneshot, watch};
use tonic::{Request, Response, Status, Streaming};

pub const SETTINGS: &str = "settings";
pub const TRUST_BUNDLE: &str = "trust-bundle";
const MAX_PENDING: usize = 256;

pub struct DiscoveryService {
    pub index: watch::Receiver<Arc<Index>>,
    pub bundle: watch::Receiver<Arc<TrustBundle>>,
    pub settings: pb::ProxySettings,
    pub auth: Arc<dyn Authenticator>,
    pub status: Arc<MeshStatus>,
    pub nonces: Arc<AtomicU64>,
}

type ResponseStream = Pin<Box<dyn Stream<Item = Result<pb::DiscoveryResponse, Status>> + Send>>;

#[tonic::async_trait]
impl pb::discovery_server::Discovery for DiscoveryService {
    type StreamStream = ResponseStream;

    async fn stream(
        &self,
        req: Request<Streaming<pb::DiscoveryRequest>>,
    ) -> Result<Response<ResponseStream>, Status> {
        let caller = super::authenticate(self.auth.as_ref(), req.metadata()).await?;
        let inbound = req.into_inner();
        // Responses only: tokio allocates a channel's slots 32 at a time, and a `Result` with
        // tonic's `Status` in it is 2.5 times the size of a response (≈ 3.5 KiB more per
        // connected proxy). The error that ends a session, if any, comes through `end`.
        let (tx, mut rx) = mpsc::channel::<pb::DiscoveryResponse>(16);
        let (end_tx, mut end) = oneshot::channel::<Status>();
        let session = Session {
            caller: format!("{}/{}", caller.namespace, caller.service_account),
            namespace: caller.namespace.clone(),
            pod: caller.pod.clone().unwrap_or_default(),
            hello_labels: Default::default(),
            index: self.index.clone(),
            bundle: self.bundle.clone(),
            settings: self.settings.clone(),
            status: self.status.clone(),
            nonces: self.nonces.clone(),
            settings_sent: None,
            inbound_sent: Vec::new(),
            telemetry_sent: None,
            security_sent: None,
            sent: HashMap::new(),
            pending: HashMap::new(),
            bundle_sent: None,
            tx,
        };
        tokio::spawn(session.run(inbound, end_tx));
        let out = futures_util::stream::poll_fn(move |cx| match rx.poll_recv(cx) {
            Poll::Ready(Some(response)) => Poll::Ready(Some(Ok(response))),
            // The session sends its error before it drops `tx`, so it is here by now.
            Poll::Ready(None) => Poll::Ready(end.try_recv().ok().map(Err)),
            Poll::Pending => Poll::Pending,
        });
        Ok(Response::new(Box::pin(out)))
    }
}

/// What a proxy holds of one subscribed name.
#[derive(Clone, PartialEq, Eq)]
enum Sent {
    Version(String),
    NotFound,
}

struct Session {
    caller: String,
    /// The verified caller's namespace and pod: whose inbound ports the settings describe.
    namespace: String,
    pod: String,
    /// The labels the proxy said it has (used when the registry does not know its pod).
    hello_labels: std::collections::BTreeMap<String, String>,
    index: watch::Receiver<Arc<Index>>,
    bundle: watch::Receiver<Arc<TrustBundle>>,
    /// The nonce of the last response that carried a trust bundle, and its version: its ACK
    /// means the proxy holds that bundle (root rotation waits for it).
    bundle_sent: Option<(String, String)>,
    settings: pb::ProxySettings,
    status: Arc<MeshStatus>,
    nonces: Arc<AtomicU64>,
    /// The version of the settings last sent.
    settings_sent: Option<String>,
    /// The pod's inbound ports in the settings last sent: the only part that changes, compared
    /// so an index change that does not touch them costs no encoding and digest per proxy.
    inbound_sent: Vec<sinew_proto::config::v1::InboundPort>,
    /// The telemetry in the settings last sent (the index's shared value: an index that did not
    /// change it hands back the same `Arc`).
    telemetry_sent: Option<Arc<sinew_proto::config::v1::Telemetry>>,
    /// The security settings last sent (the index's shared value, like `telemetry_sent`).
    security_sent: Option<Arc<crate::compile::PodSecurity>>,
    /// Subscribed names and what was last sent for each (None: not answered yet).
    sent: HashMap<String, Option<Sent>>,
    /// Responses awaiting ACK/NACK, by nonce: the names they carried.
    pending: HashMap<String, usize>,
    tx: mpsc::Sender<pb::DiscoveryResponse>,
}

// === impl Session ===

impl Session {
    async fn run(
        mut self,
        mut inbound: Streaming<pb::DiscoveryRequest>,
        end: oneshot::Sender<Status>,
    ) {
        let id = self
            .status
            .connect(ProxyState::new(&self.caller, &self.pod));
        let res = self.serve(&mut inbound, id).await;
        if let Err(e) = res {
            tracing::debug!(caller = %self.caller, error = %e, "discovery stream ended");
            // The proxy learns why (a protocol error) unless it is the one that went away.
            let _ = end.send(e);
        }
        self.status.disconnect(id);
    }

    async fn serve(
        &mut self,
        inbound: &mut Streaming<pb::DiscoveryRequest>,
        id: u64,
    ) -> Result<(), Status> {
        // The first message must be the hello.
        let hello = match inbound.next().await {
            Some(Ok(pb::DiscoveryRequest {
                kind: Some(Kind::Hello(h)),
            })) => h,
            Some(Ok(_)) => return Err(Status::invalid_argument("the first message must be hello")),
            Some(Err(e)) => return Err(e),
            None => return Ok(()),
        };
        self.hello_labels = hello.labels.into_iter().collect();
        let known: HashMap<String, String> = hello
            .known
            .into_iter()
            .map(|k| (k.name, k.version))
            .collect();
        for name in hello.subscribe {
            let already = known.get(&name).map(|v| Sent::Version(v.clone()));
            self.sent.insert(name, already);
        }
        let known_bundle = known.get(TRUST_BUNDLE).cloned();
        if known_bundle.as_deref() == Some(self.bundle.borrow().version().as_str()) {
            self.status
                .update(id, |s| s.trust_bundle_version = known_bundle.clone());
        }
        self.send_base(known_bundle).await?;
        self.push_changes(id).await?;
        loop {
            tokio::select! {
                msg = inbound.next() => {
                    let Some(msg) = msg else { return Ok(()) };
                    match msg?.kind {
                        Some(Kind::Subscribe(n)) => {
                            for name in n.names {
                                self.sent.entry(name).or_insert(None);
                            }
                            self.push_changes(id).await?;
                        }
                        Some(Kind::Unsubscribe(n)) => {
                            for name in n.names {
                                self.sent.remove(&name);
                            }
                            self.status.update(id, |s| s.subscriptions = self.sent.len());
                        }
                        Some(Kind::Ack(a)) => {
                            self.pending.remove(&a.nonce);
                            let bundle = match &self.bundle_sent {
                                Some((nonce, version)) if *nonce == a.nonce => Some(version.clone()),
                                _ => None,
                            };
                            self.status.update(id, |s| {
                                if bundle.is_some() {
                                    s.trust_bundle_version = bundle;
                                }
                                s.acks += 1;
                                s.last_answer_unix = Some(super::status::unix_now());
                            });
                        }
                        Some(Kind::Nack(n)) => {
                            self.pending.remove(&n.nonce);
                            tracing::warn!(caller = %self.caller, pod = %self.pod, nonce = %n.nonce, reason = %n.reason, "proxy rejected config (NACK)");
                            self.status.update(id, |s| {
                                s.nacks += 1;
                                s.last_answer_unix = Some(super::status::unix_now());
                                s.last_nack = Some(n.reason.clone());
                            });
                        }
                        Some(Kind::Hello(_)) => return Err(Status::invalid_argument("hello sent twice")),
                        None => {}
                    }
                }
                changed = self.index.changed() => {
                    if changed.is_err() { return Ok(()) }
                    self.push_changes(id).await?;
                }
                changed = self.bundle.changed() => {
                    if changed.is_err() { return Ok(()) }
                    self.send_base(None).await?;
                }
            }
        }
    }

    fn nonce(&self) -> String {
        self.nonces.fetch_add(1, Ordering::Relaxed).to_string()
    }

    async fn send(&mut self, rsp: pb::DiscoveryResponse) -> Result<(), Status> {
        // A proxy that never answers must not grow this without bound.
        if self.pending.len() >= MAX_PENDING {
            self.pending.clear();
        }
        self.pending.insert(rsp.nonce.clone(), rsp.resources.len());
        self.tx
            .send(rsp)
            .await
            .map_err(|_| Status::cancelled("proxy went away"))
    }

    /// Settings and trust bundle (unless the proxy already holds this bundle version).
    async fn send_base(&mut self, known_bundle: Option<String>) -> Result<(), Status> {
        let bundle = self.bundle.borrow_and_update().clone();
        let bundle_version = bundle.version();
        let index = self.index.borrow().clone();
        let mut resources = vec![self.settings_resource(&index)];
        let nonce = self.nonce();
        if known_bundle.as_deref() != Some(bundle_version.as_str()) {
            self.bundle_sent = Some((nonce.clone(), bundle_version.clone()));
            resources.push(pb::Resource {
                name: TRUST_BUNDLE.into(),
                version: bundle_version,
                kind: Some(ResourceKind::TrustBundle(pb::TrustBundle {
                    roots: bundle.roots.clone(),
                    signing_root_sha256: bundle.signing_root_sha256.clone(),
                })),
            });
        }
        self.send(pb::DiscoveryResponse {
            nonce,
            resources,
            removed: Vec::new(),
        })
        .await
    }

    /// This proxy's settings: the mesh-wide ones plus its pod's declared inbound ports, its
    /// telemetry, its inbound mTLS modes and the AuthorizationPolicies that apply to it.
    fn settings_resource(&mut self, index: &Index) -> pb::Resource {
        let mut settings = self.settings.clone();
        settings.inbound_ports = index.inbound_ports(&self.namespace, &self.pod).to_vec();
        self.inbound_sent.clone_from(&settings.inbound_ports);
        let telemetry = index.telemetry(&self.namespace, &self.pod, &self.hello_labels);
        settings.telemetry = Some((*telemetry).clone());
        self.telemetry_sent = Some(telemetry);
        let security = index.security(&self.namespace, &self.pod, &self.hello_labels);
        settings.inbound_mode = security.inbound_mode as i32;
        settings
            .port_inbound_modes
            .clone_from(&security.port_inbound_modes);
        // Always set, empty when no policy applies: removing the last policy must lift it.
        settings.authorization = Some(security.authorization.clone());
        self.security_sent = Some(security);
        let version = crate::compile::version_of(&prost::Message::encode_to_vec(&settings));
        self.settings_sent = Some(version.clone());
        pb::Resource {
            name: SETTINGS.into(),
            version,
            kind: Some(ResourceKind::Settings(settings)),
        }
    }

    /// Who this proxy is for policy: its namespace (verified) and its pod's labels from the
    /// registry when the pod is known there, else the labels its hello declared.
    fn context(&self, index: &Index) -> ProxyContext {
        let labels = index
            .pod_labels(&self.namespace, &self.pod)
            .cloned()
            .unwrap_or_else(|| self.hello_labels.clone());
        ProxyContext {
            namespace: self.namespace.clone(),
            labels,
        }
    }

    /// Answers unanswered names and re-sends names whose version changed (and the settings,
    /// when this pod's declared ports or telemetry changed).
    async fn push_changes(&mut self, id: u64) -> Result<(), Status> {
        let index = self.index.borrow_and_update().clone();
        let mut resources = Vec::new();
        let inbound_changed = self.settings_sent.is_none()
            || index.inbound_ports(&self.namespace, &self.pod) != self.inbound_sent.as_slice();
        let telemetry_changed = || {
            let now = index.telemetry(&self.namespace, &self.pod, &self.hello_labels);
            self.telemetry_sent
                .as_ref()
                .is_none_or(|sent| !Arc::ptr_eq(sent, &now) && **sent != *now)
        };
        let security_changed = || {
            let now = index.security(&self.namespace, &self.pod, &self.hello_labels);
            self.security_sent
                .as_ref()
                .is_none_or(|sent| !Arc::ptr_eq(sent, &now) && **sent != *now)
        };
        if inbound_changed || telemetry_changed() || security_changed() {
            let sent_settings = self.settings_sent.clone();
            let settings = self.settings_resource(&index);
            if sent_settings.as_ref() != Some(&settings.version) {
                resources.push(settings);
            }
        }
        let mut removed = Vec::new();
        let proxy = self.context(&index);
        for (name, sent) in self.sent.iter_mut() {
            let resolved = index.service_for(name, &proxy);
            let now = match &resolved {
                Some(v) => Sent::Version(v.version.clone()),
                None => Sent::NotFound,
            };
            if sent.as_ref() == Some(&now) {
                continue;
            }
            match resolved {
                Some(v) => resources.push(pb::Resource {
                    name: name.clone(),
                    version: v.version.clone(),
                    kind: Some(ResourceKind::Service(v.service.clone())),
                }),
                None if matches!(sent, Some(Sent::Version(_))) => removed.push(name.clone()),
                None => resources.push(pb::Resource {
                    name: name.clone(),
                    version: String::new(),
                    kind: Some(ResourceKind::NotFound(pb::NotFound {})),
                }),
            }
            *sent = Some(now);
        }
        let subs = self.sent.len();
        self.status.update(id, |s| {
            s.subscriptions = subs;
            s.generation = index.generation;
        });
        if resources.is_empty() && removed.is_empty() {
            return Ok(());
        }
        let nonce = self.nonce();
        self.send(pb::DiscoveryResponse {
            nonce,
            resources,
            removed,
        })
        .await
    }
}
