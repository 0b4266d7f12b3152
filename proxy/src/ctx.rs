//! What every connection handler shares: the current config and credentials, clients, metrics
//! and the drain watch.

use crate::config::Config;
use crate::http::client::{H2Pool, PlainClient};
use crate::metrics::Metrics;
use crate::tls;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

pub struct Ctx {
    config: RwLock<Arc<Config>>,
    pub tls: Option<tls::Store>,
    pub metrics: Arc<Metrics>,
    /// HTTP/2 connections to peer proxies, one per (mesh address, expected identity).
    pub mesh: H2Pool<(SocketAddr, tls::Identity)>,
    /// Plaintext delivery to the local app and to endpoints without a sidecar.
    pub plain: PlainClient,
}

impl Ctx {
    pub fn new(config: Arc<Config>, tls: Option<tls::Store>, metrics: Arc<Metrics>) -> Self {
        let plain = PlainClient::new(config.timeouts.connect, config.timeouts.idle);
        Self {
            config: RwLock::new(config),
            tls,
            metrics,
            mesh: H2Pool::new(),
            plain,
        }
    }

    /// The config in force now (connections keep the one they started with).
    pub fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Installs a new config for new connections.
    pub fn set_config(&self, config: Arc<Config>) {
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = config;
    }

    /// The current TLS state, or an error saying the proxy has no mesh credentials.
    pub fn tls(&self) -> Result<Arc<tls::TlsState>, crate::http::ProxyError> {
        self.tls.as_ref().map(|s| s.current()).ok_or_else(|| {
            crate::http::ProxyError::TlsConfig(tls::TlsError::Rustls(rustls::Error::General(
                "no mesh certificate configured (set tls in the config)".into(),
            )))
        })
    }
}
