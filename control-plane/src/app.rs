//! Starting the control plane: CA, credentials, registry, compiler and servers, wired together.
//!
//! [`ControlPlane::start`] does everything that can fail (reading the plug-in CA, the first
//! registry load, binding ports) before anything is served, and returns the bound addresses, so
//! the binary and tests start it the same way. The [`Source`] decides where the registry, the CA
//! and the credentials come from: files and a state directory (local mode), or a Kubernetes API
//! server (reflectors, the CA in a Secret, TokenReview); everything after that is the same.

use crate::auth::{Authenticator, LocalTokens};
use crate::ca::rotation::{ActiveCa, Rotation, RotationStatus};
use crate::ca::{Ca, CaConfig, FileRootStore, SharedCa, TrustBundle, WorkloadId};
use crate::registry::{Debounce, FileRegistry, RegistryHandle, Snapshot};
use crate::{compile, server};
use anyhow::Context as _;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::net::TcpListener;

/// The token key file in the state directory.
pub const TOKEN_KEY: &str = "token-key";
/// The trust bundle written for proxies to bootstrap from.
pub const TRUST_BUNDLE_FILE: &str = "trust-bundle.pem";
/// Audience of local-mode credentials.
pub const AUDIENCE: &str = "sinew-ca";

/// Where the registry, the CA and the credentials come from.
pub enum Source {
    /// Local mode: a directory of manifests (and the runner's address assignments); the CA root
    /// and the token key in `state_dir` (or the CA from `plugin_ca`); local-mode tokens.
    Files {
        registry: PathBuf,
        assignments: Option<PathBuf>,
        state_dir: PathBuf,
        plugin_ca: Option<PathBuf>,
    },
    /// A cluster: the registry from the API server, the CA from a Secret in the control plane's
    /// namespace, projected service-account tokens checked with TokenReview.
    #[cfg(feature = "kubernetes")]
    Kubernetes(crate::cluster::KubeOptions),
}

pub struct Options {
    pub source: Source,
    pub trust_domain: String,
    pub listen: SocketAddr,
    pub monitoring: SocketAddr,
    pub dns_names: Vec<String>,
    /// The mesh's service and pod ranges (`--service-cidr`, `--pod-cidr`), sent to every proxy
    /// in its settings: a proxy refuses, rather than sends in plaintext, a connection to an
    /// address inside them that it could not resolve (see docs/proxy.md).
    pub mesh_ranges: Vec<sinew_proto::net::IpNet>,
    /// The namespace whose DestinationRules apply mesh-wide (after the proxy's and the
    /// service's namespaces); see [`compile::DEFAULT_ROOT_NAMESPACE`].
    pub root_namespace: String,
    /// The webhooks' HTTPS address (`--webhook-listen`): the validating webhook `/validate` and
    /// the sidecar injector `/inject`; served with a Kubernetes source only.
    pub webhook: Option<SocketAddr>,
    /// The injector's settings (`--injector-config`), for `/inject`.
    pub injector: sinew_injector::Settings,
    /// The mesh's telemetry defaults (`--otlp-endpoint`, `--trace-sampling`, `--access-log`,
    /// `--access-log-encoding`), under the Telemetry resources in every proxy's settings.
    pub telemetry: compile::MeshTelemetry,
}

pub struct ControlPlane {
    pub grpc_addr: SocketAddr,
    pub monitoring_addr: SocketAddr,
    /// Where the webhooks listen (Kubernetes source only).
    pub webhook_addr: Option<SocketAddr>,
    /// The signing CA (a root rotation swaps it).
    pub ca: Arc<SharedCa>,
    /// Local mode's root rotation, watching the state directory (`None` with a Kubernetes
    /// source: rotating a root kept in a Secret is not supported yet).
    rotation: Option<Rotation>,
    /// What `/debug/rotation` shows.
    pub rotation_status: Arc<std::sync::Mutex<RotationStatus>>,
    /// Local mode's token minter (`None` with a Kubernetes source).
    pub tokens: Option<Arc<LocalTokens>>,
    /// The file registry's handle (`None` with a Kubernetes source).
    pub registry: Option<RegistryHandle>,
    monitor: server::SourceMonitor,
    pub status: Arc<server::status::Status>,
    index: tokio::sync::watch::Receiver<Arc<crate::compile::Index>>,
    grpc: TcpListener,
    monitoring: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    serving: Arc<server::serving_cert::ServingCert>,
    /// The webhooks' listener (Kubernetes source only, hence only with that feature).
    #[cfg(feature = "kubernetes")]
    webhook: Option<TcpListener>,
    /// What the webhook listener answers (the injector reads namespace labels from the registry).
    #[cfg(feature = "kubernetes")]
    webhooks: Arc<crate::cluster::webhook::Webhooks>,
    router: server::Router,
    /// The trust bundle every discovery stream pushes: a plug-in CA reload or root rotation
    /// publishes a new one here. Kept alive while serving: dropping it would end every stream.
    pub bundle: tokio::sync::watch::Sender<Arc<TrustBundle>>,
}

// === impl ControlPlane ===

impl ControlPlane {
    pub async fn start(o: Options) -> anyhow::Result<Self> {
        let config = CaConfig {
            trust_domain: o.trust_domain.clone(),
            ..CaConfig::default()
        };
        let started = match &o.source {
            Source::Files {
                registry,
                assignments,
                state_dir,
                plugin_ca,
            } => {
                start_files(
                    registry,
                    assignments,
                    state_dir,
                    plugin_ca.as_deref(),
                    config,
                )
                .await?
            }
            #[cfg(feature = "kubernetes")]
            Source::Kubernetes(kube) => start_kubernetes(kube, config).await?,
        };
        let Started {
            ca,
            auth,
            tokens,
            snapshots,
            registry,
            monitor,
            #[cfg(feature = "kubernetes")]
            cluster,
        } = started;
        #[cfg(feature = "kubernetes")]
        let cluster = cluster.map(|c| (c, snapshots.clone()));
        #[cfg(feature = "kubernetes")]
        let webhooks = Arc::new(crate::cluster::webhook::Webhooks {
            injector: Some(crate::cluster::webhook::Injector::new(
                o.injector.clone(),
                snapshots.clone(),
            )),
        });
        let ca = SharedCa::new(ca);
        let index = compile::spawn(
            snapshots,
            o.trust_domain.clone(),
            o.root_namespace.clone(),
            o.telemetry.clone(),
        );

        let grpc = TcpListener::bind(o.listen)
            .await
            .with_context(|| format!("cannot listen on {}", o.listen))?;
        let monitoring = TcpListener::bind(o.monitoring)
            .await
            .with_context(|| format!("cannot listen on {}", o.monitoring))?;
        let grpc_addr = grpc.local_addr()?;
        #[cfg(feature = "kubernetes")]
        let webhook = match (&o.source, o.webhook) {
            (Source::Kubernetes(_), Some(addr)) => Some(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr}"))?,
            ),
            _ => None,
        };

        let mut dns = vec![
            "localhost".to_string(),
            "sinew-control-plane.sinew-system.svc".to_string(),
        ];
        // The Service name the API server calls the webhook by, in our namespace.
        #[cfg(feature = "kubernetes")]
        if let Source::Kubernetes(kube) = &o.source {
            dns.push(format!("sinew-control-plane.{}.svc", kube.namespace));
        }
        dns.extend(o.dns_names.iter().cloned());
        let mut ips = vec![IpAddr::from([127, 0, 0, 1])];
        if !grpc_addr.ip().is_unspecified() && !ips.contains(&grpc_addr.ip()) {
            ips.push(grpc_addr.ip());
        }
        // Who proxies expect (`controlPlane.identity`): its service account in the namespace it
        // runs in (sinew-system locally; in a cluster, wherever the chart installed it).
        let own_namespace = match &o.source {
            #[cfg(feature = "kubernetes")]
            Source::Kubernetes(kube) => kube.namespace.clone(),
            _ => "sinew-system".to_string(),
        };
        // Renewed at half-life: the control plane outlives its certificates.
        let serving = server::serving_cert::ServingCert::issue(
            ca.clone(),
            WorkloadId {
                namespace: own_namespace,
                service_account: "sinew-control-plane".into(),
            },
            dns,
            ips,
        )?;
        let tls = serving.tls_config(&[b"h2"])?;
        let status = Arc::new(server::status::Status::default());
        // A plug-in CA reload or root rotation publishes a new bundle here.
        let (bundle_tx, bundle_rx) =
            tokio::sync::watch::channel(Arc::new(TrustBundle::of(&ca.current())));
        let rotation = match &o.source {
            Source::Files {
                state_dir,
                plugin_ca,
                ..
            } => {
                let serving = serving.clone();
                Some(Rotation::new(
                    state_dir.clone(),
                    plugin_ca
                        .clone()
                        .map_or(ActiveCa::SelfSigned, ActiveCa::PlugIn),
                    ca.clone(),
                    bundle_tx.clone(),
                    status.clone(),
                    Box::new(move || serving.renew()),
                ))
            }
            #[cfg(feature = "kubernetes")]
            Source::Kubernetes(_) => None,
        };
        let rotation_status = rotation
            .as_ref()
            .map_or_else(Default::default, Rotation::status);
        // In a cluster the leader also publishes the bundle as a ConfigMap in every namespace.
        #[cfg(feature = "kubernetes")]
        if let Some((cluster, snapshots)) = cluster {
            tokio::spawn(crate::cluster::bundle::publish(
                cluster.client,
                snapshots,
                bundle_tx.subscribe(),
                cluster.leader,
            ));
        }
        let router = server::Router::new(
            server::ca::CertificateService {
                ca: ca.clone(),
                bundle: bundle_rx.clone(),
                auth: auth.clone(),
                status: status.clone(),
            },
            server::discovery::DiscoveryService {
                index: index.clone(),
                bundle: bundle_rx,
                settings: sinew_proto::discovery::v1::ProxySettings {
                    mesh_address_ranges: o.mesh_ranges.iter().map(|r| r.to_string()).collect(),
                    ..Default::default()
                },
                auth,
                status: status.clone(),
                nonces: Default::default(),
            },
        );
        Ok(Self {
            grpc_addr,
            monitoring_addr: monitoring.local_addr()?,
            #[cfg(feature = "kubernetes")]
            webhook_addr: webhook.as_ref().map(TcpListener::local_addr).transpose()?,
            #[cfg(not(feature = "kubernetes"))]
            webhook_addr: None,
            #[cfg(feature = "kubernetes")]
            webhook,
            #[cfg(feature = "kubernetes")]
            webhooks,
            ca,
            rotation,
            rotation_status,
            tokens,
            registry,
            monitor,
            status,
            index,
            grpc,
            monitoring,
            tls,
            serving,
            router,
            bundle: bundle_tx,
        })
    }

    /// Serves until the future is dropped.
    pub async fn serve(self) {
        tokio::spawn(server::serve_monitoring(
            self.monitoring,
            self.status.clone(),
            self.monitor,
            self.index,
            self.rotation_status.clone(),
        ));
        let _rotation = self.rotation.map(|r| AbortOnDrop(tokio::spawn(r.watch())));
        #[cfg(feature = "kubernetes")]
        if let Some(listener) = self.webhook {
            // Same certificate as 15012; the API server may speak HTTP/2 or HTTP/1.1.
            match self.serving.tls_config(&[b"h2", b"http/1.1"]) {
                Ok(tls) => {
                    tokio::spawn(crate::cluster::webhook::serve(listener, tls, self.webhooks));
                }
                Err(error) => tracing::error!(%error, "cannot serve the webhook"),
            }
        }
        let _bundle = self.bundle;
        let _renewal = AbortOnDrop(self.serving.spawn_renewal());
        server::serve_grpc(self.grpc, self.tls, self.router).await
    }
}

/// Stops a background task when the server it belongs to stops.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What a source hands the rest of the control plane.
struct Started {
    ca: Ca,
    auth: Arc<dyn Authenticator>,
    tokens: Option<Arc<LocalTokens>>,
    snapshots: tokio::sync::watch::Receiver<Arc<Snapshot>>,
    registry: Option<RegistryHandle>,
    monitor: server::SourceMonitor,
    /// The API server and this replica's leadership, for the single-writer tasks.
    #[cfg(feature = "kubernetes")]
    cluster: Option<ClusterParts>,
}

#[cfg(feature = "kubernetes")]
struct ClusterParts {
    client: kube::Client,
    leader: tokio::sync::watch::Receiver<bool>,
}

/// Local mode: the CA (plug-in directory, or the root kept in `state_dir`), the token key, the
/// trust bundle file for proxies to bootstrap from, and the watched manifest directory.
async fn start_files(
    registry: &std::path::Path,
    assignments: &Option<PathBuf>,
    state_dir: &std::path::Path,
    plugin_ca: Option<&std::path::Path>,
    config: CaConfig,
) -> anyhow::Result<Started> {
    std::fs::create_dir_all(state_dir)
        .with_context(|| format!("cannot create {}", state_dir.display()))?;
    let ca = match plugin_ca {
        Some(dir) => {
            let read = |f: &str| {
                std::fs::read_to_string(dir.join(f))
                    .with_context(|| format!("plug-in CA: cannot read {}", dir.join(f).display()))
            };
            Ca::plug_in(
                &read("ca-cert.pem")?,
                &read("ca-key.pem")?,
                &read("cert-chain.pem")?,
                &read("root-cert.pem")?,
                config,
            )?
        }
        None => Ca::self_signed(&FileRootStore::new(state_dir.to_path_buf()), config)?,
    };
    std::fs::write(
        state_dir.join(TRUST_BUNDLE_FILE),
        ca.trust_bundle().join("\n"),
    )
    .with_context(|| format!("cannot write the trust bundle into {}", state_dir.display()))?;
    let tokens = Arc::new(LocalTokens::load_or_create(
        &state_dir.join(TOKEN_KEY),
        AUDIENCE,
    )?);
    let (snapshots, handle) = FileRegistry::spawn(
        registry.to_path_buf(),
        assignments.clone(),
        Debounce::default(),
    )
    .await
    .with_context(|| format!("registry {}", registry.display()))?;
    let monitor = server::SourceMonitor::files(handle.clone(), snapshots.clone());
    Ok(Started {
        ca,
        auth: tokens.clone(),
        tokens: Some(tokens),
        snapshots,
        registry: Some(handle),
        monitor,
        #[cfg(feature = "kubernetes")]
        cluster: None,
    })
}

/// A cluster: the CA from its Secret (created on first start), TokenReview for credentials,
/// and the Kubernetes registry source (which waits for every kind's first list).
#[cfg(feature = "kubernetes")]
async fn start_kubernetes(
    options: &crate::cluster::KubeOptions,
    config: CaConfig,
) -> anyhow::Result<Started> {
    use crate::auth::{ReviewConfig, ReviewMetrics, TokenReviewAuthenticator};
    use crate::ca::cluster::{CaSecrets, load_ca};
    use crate::registry::cluster as source;

    let client = crate::cluster::connect(&options.access).await?;
    let (ca, from) = load_ca(client.clone(), &CaSecrets::new(&options.namespace), config).await?;
    tracing::info!(?from, namespace = %options.namespace, "mesh CA loaded");
    let review_metrics = ReviewMetrics::default();
    let auth = Arc::new(TokenReviewAuthenticator::new(
        client.clone(),
        ReviewConfig::default(),
        review_metrics.clone(),
    ));
    let leader = crate::cluster::leader::spawn(
        client.clone(),
        crate::cluster::leader::LeaseConfig::new(
            &options.namespace,
            crate::cluster::leader::LeaseConfig::identity_from_env(),
        ),
    )?;
    let (snapshots, handle) =
        source::spawn(client.clone(), source::KubeSourceOptions::default()).await?;
    // Status conditions on DestinationRules and VirtualServices: written by the elected replica.
    let status_metrics =
        crate::cluster::status::spawn(client.clone(), handle.policy(), leader.clone());
    let monitor = server::SourceMonitor::kubernetes(
        handle,
        review_metrics,
        status_metrics,
        snapshots.clone(),
    );
    Ok(Started {
        ca,
        auth,
        tokens: None,
        snapshots,
        registry: None,
        monitor,
        cluster: Some(ClusterParts { client, leader }),
    })
}

/// Resolves on SIGTERM or SIGINT (never, if the handlers cannot be installed). For the
/// binaries that serve until told to stop: the control plane and `sinewctl up`.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
