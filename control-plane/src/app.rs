//! Starting the control plane: CA, credentials, registry, compiler and servers, wired together.
//!
//! [`ControlPlane::start`] does everything that can fail (reading the plug-in CA, the first
//! registry load, binding ports) before anything is served, and returns the bound addresses, so
//! the binary and tests start it the same way.

use crate::auth::LocalTokens;
use crate::ca::{Ca, CaConfig, FileRootStore, WorkloadId};
use crate::registry::{Debounce, FileRegistry, RegistryHandle};
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

pub struct Options {
    pub registry: PathBuf,
    pub assignments: Option<PathBuf>,
    pub state_dir: PathBuf,
    pub plugin_ca: Option<PathBuf>,
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
}

pub struct ControlPlane {
    pub grpc_addr: SocketAddr,
    pub monitoring_addr: SocketAddr,
    pub ca: Arc<Ca>,
    pub tokens: Arc<LocalTokens>,
    pub registry: RegistryHandle,
    pub status: Arc<server::status::Status>,
    index: tokio::sync::watch::Receiver<Arc<crate::compile::Index>>,
    grpc: TcpListener,
    monitoring: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    router: server::Router,
    /// The trust bundle every discovery stream pushes: a plug-in CA reload or root rotation
    /// publishes a new one here. Kept alive while serving: dropping it would end every stream.
    pub bundle: tokio::sync::watch::Sender<Arc<Vec<String>>>,
}

// === impl ControlPlane ===

impl ControlPlane {
    pub async fn start(o: Options) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&o.state_dir)
            .with_context(|| format!("cannot create {}", o.state_dir.display()))?;
        let config = CaConfig {
            trust_domain: o.trust_domain.clone(),
            ..CaConfig::default()
        };
        let ca = match &o.plugin_ca {
            Some(dir) => {
                let read = |f: &str| {
                    std::fs::read_to_string(dir.join(f)).with_context(|| {
                        format!("plug-in CA: cannot read {}", dir.join(f).display())
                    })
                };
                Ca::plug_in(
                    &read("ca-cert.pem")?,
                    &read("ca-key.pem")?,
                    &read("cert-chain.pem")?,
                    &read("root-cert.pem")?,
                    config,
                )?
            }
            None => Ca::self_signed(&FileRootStore::new(o.state_dir.clone()), config)?,
        };
        let ca = Arc::new(ca);
        std::fs::write(
            o.state_dir.join(TRUST_BUNDLE_FILE),
            ca.trust_bundle().join("\n"),
        )
        .with_context(|| {
            format!(
                "cannot write the trust bundle into {}",
                o.state_dir.display()
            )
        })?;
        let tokens = Arc::new(LocalTokens::load_or_create(
            &o.state_dir.join(TOKEN_KEY),
            AUDIENCE,
        )?);

        let (snapshots, registry) = FileRegistry::spawn(
            o.registry.clone(),
            o.assignments.clone(),
            Debounce::default(),
        )
        .await
        .with_context(|| format!("registry {}", o.registry.display()))?;
        let index = compile::spawn(snapshots, o.trust_domain.clone(), o.root_namespace.clone());

        let grpc = TcpListener::bind(o.listen)
            .await
            .with_context(|| format!("cannot listen on {}", o.listen))?;
        let monitoring = TcpListener::bind(o.monitoring)
            .await
            .with_context(|| format!("cannot listen on {}", o.monitoring))?;
        let grpc_addr = grpc.local_addr()?;

        let mut dns = vec![
            "localhost".to_string(),
            "sinew-control-plane.sinew-system.svc".to_string(),
        ];
        dns.extend(o.dns_names.iter().cloned());
        let mut ips = vec![IpAddr::from([127, 0, 0, 1])];
        if !grpc_addr.ip().is_unspecified() && !ips.contains(&grpc_addr.ip()) {
            ips.push(grpc_addr.ip());
        }
        let (chain, key) = ca.serving_cert(
            &WorkloadId {
                namespace: "sinew-system".into(),
                service_account: "sinew-control-plane".into(),
            },
            &dns,
            &ips,
        )?;
        let tls = server::tls_config(&chain, &key)?;
        let status = Arc::new(server::status::Status::default());
        // A plug-in CA reload or root rotation publishes a new bundle here.
        let (bundle_tx, bundle_rx) = tokio::sync::watch::channel(Arc::new(ca.trust_bundle()));
        let router = server::Router::new(
            server::ca::CertificateService {
                ca: ca.clone(),
                auth: tokens.clone(),
                status: status.clone(),
            },
            server::discovery::DiscoveryService {
                index: index.clone(),
                bundle: bundle_rx,
                settings: sinew_proto::discovery::v1::ProxySettings {
                    mesh_address_ranges: o.mesh_ranges.iter().map(|r| r.to_string()).collect(),
                    ..Default::default()
                },
                auth: tokens.clone(),
                status: status.clone(),
                nonces: Default::default(),
            },
        );
        Ok(Self {
            grpc_addr,
            monitoring_addr: monitoring.local_addr()?,
            ca,
            tokens,
            registry,
            status,
            index,
            grpc,
            monitoring,
            tls,
            router,
            bundle: bundle_tx,
        })
    }

    /// Serves until the future is dropped.
    pub async fn serve(self) {
        let registry = self.registry.clone();
        tokio::spawn(server::serve_monitoring(
            self.monitoring,
            self.status.clone(),
            Arc::new(move || registry.last_error()),
            self.index,
        ));
        let _bundle = self.bundle;
        server::serve_grpc(self.grpc, self.tls, self.router).await
    }
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
