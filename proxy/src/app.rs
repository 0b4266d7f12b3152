//! Running the proxy: load credentials, bind every listener, serve, and drain on shutdown.
//!
//! Start-up errors (unreadable certificate, address in use) are returned before anything is
//! served, each naming the file or address. Shutdown (SIGTERM, SIGINT or `POST /shutdown`) stops
//! accepting, lets connections finish up to the drain deadline, and returns.
//!
//! Accepted connections, both directions together, are capped at `limits.maxConnections`: one
//! more is closed (reset) at once and counted, so a flood of idle connections cannot take the
//! file descriptors the app's own traffic needs.

use crate::admin::{self, Admin};
use crate::app_health::AppHealth;
use crate::config::{Config, ListenerKind};
use crate::conn_limit::ConnLimit;
use crate::ctx::Ctx;
use crate::drain;
use crate::metrics::{ActiveGuard, Direction, Metrics, RefuseReason};
use crate::tls;
use anyhow::Context as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

/// A proxy whose listeners are bound and ready to serve.
pub struct Proxy {
    admin: Arc<Admin>,
    listeners: Vec<(TcpListener, ListenerKind)>,
    admin_listeners: Vec<(TcpListener, admin::Endpoint)>,
    shutdown_rx: mpsc::Receiver<()>,
    control: Option<(crate::control::Channel, crate::config::ControlPlane)>,
    app_health: Option<Arc<AppHealth>>,
    /// Where each configured listener actually bound (port 0 resolves here).
    pub bound: Vec<(String, SocketAddr)>,
    pub admin_addrs: [SocketAddr; 3],
}

// === impl Proxy ===

impl Proxy {
    /// Loads credentials and binds every socket; nothing is served yet.
    pub async fn bind(
        config: Config,
        set_log_level: Option<admin::SetLogLevel>,
    ) -> anyhow::Result<Self> {
        let tls = match &config.tls {
            Some(p) => {
                let creds = tls::Credentials::load(&p.cert, &p.key, &p.trust_bundle)?;
                info!(identity = %creds.identity, "loaded workload certificate");
                tls::Store::new(tls::TlsState::new(creds)?)
            }
            // Its normal start: the certificate comes later, from the control plane.
            None if config.control_plane.is_some() => {
                info!("starting without a certificate: asking the control plane for one");
                tls::Store::empty()
            }
            None => {
                warn!("no tls configured: mesh connections are impossible in either direction");
                tls::Store::empty()
            }
        };
        let control = match &config.control_plane {
            Some(cp) => {
                let channel = crate::control::Channel::new(cp)
                    .with_context(|| format!("control plane at {}", cp.address))?;
                info!(address = %cp.address, "certificates and config come from the control plane");
                Some((channel, cp.clone()))
            }
            None => None,
        };
        let mut listeners = Vec::new();
        let mut bound = Vec::new();
        for l in &config.listeners {
            let sock = TcpListener::bind(l.addr)
                .await
                .with_context(|| format!("cannot listen on {} for listener {}", l.addr, l.name))?;
            bound.push((l.name.clone(), sock.local_addr()?));
            listeners.push((sock, l.kind.clone()));
        }
        let mut admin_listeners = Vec::new();
        let mut admin_addrs = [
            config.admin.admin,
            config.admin.health,
            config.admin.metrics,
        ];
        for (i, (addr, which)) in [
            (config.admin.admin, admin::Endpoint::Admin),
            (config.admin.health, admin::Endpoint::Health),
            (config.admin.metrics, admin::Endpoint::Metrics),
        ]
        .into_iter()
        .enumerate()
        {
            let sock = TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} for the admin endpoints"))?;
            admin_addrs[i] = sock.local_addr()?;
            admin_listeners.push((sock, which));
        }
        let metrics = Arc::new(Metrics::new());
        let ctx = Arc::new(Ctx::new(Arc::new(config), tls, metrics));
        let (shutdown_tx, shutdown_rx) = mpsc::channel(1);
        let admin = Arc::new(Admin {
            ctx,
            ready: false.into(),
            shutdown: shutdown_tx,
            set_log_level,
        });
        Ok(Self {
            admin,
            listeners,
            admin_listeners,
            shutdown_rx,
            control,
            app_health: None,
            bound,
            admin_addrs,
        })
    }

    /// Answers the app's probes on the metrics port (`GET /app-health/...`), from
    /// `SINEW_APP_PROBERS`.
    pub fn with_app_health(mut self, prober: AppHealth) -> Self {
        self.app_health = Some(Arc::new(prober));
        self
    }

    /// Writes access-log lines in `format` whatever the config says (`--access-log`).
    pub fn with_access_log(self, format: crate::telemetry::access_log::Format) -> Self {
        self.admin.ctx.access_log.force(format);
        self
    }

    /// Serves until a shutdown signal, then drains. `extra_shutdown` lets tests stop the proxy.
    pub async fn run(mut self, extra_shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let ctx = self.admin.ctx.clone();
        for (sock, which) in self.admin_listeners.drain(..) {
            let prober = matches!(which, admin::Endpoint::Metrics)
                .then(|| self.app_health.clone())
                .flatten();
            tokio::spawn(admin::serve(self.admin.clone(), sock, which, prober));
        }
        let (signal, watch) = drain::channel();
        let max = ctx.config().limits.max_connections;
        ctx.metrics.connections_limit.set(max as i64);
        let limit = ConnLimit::new(max);
        for (sock, kind) in self.listeners.drain(..) {
            tokio::spawn(accept_loop(
                ctx.clone(),
                sock,
                kind,
                limit.clone(),
                watch.clone(),
            ));
        }
        drop(watch);
        match self.control.take() {
            None => {
                self.admin.ready.store(true, Ordering::Release);
                ctx.metrics.ready.set(1);
                info!(listeners = ?self.bound, "proxy ready");
            }
            Some((channel, cp)) => spawn_control(&self.admin, channel, cp),
        }

        tokio::select! {
            _ = shutdown_signal() => info!("received a termination signal"),
            _ = self.shutdown_rx.recv() => info!("shutdown requested through the admin API"),
            _ = extra_shutdown => info!("shutdown requested"),
        }
        self.admin.ready.store(false, Ordering::Release);
        ctx.metrics.ready.set(0);
        let deadline = ctx.config().timeouts.drain;
        info!(
            ?deadline,
            "draining: no new connections, waiting for requests in flight"
        );
        if tokio::time::timeout(deadline, signal.drain())
            .await
            .is_err()
        {
            warn!(
                ?deadline,
                "drain deadline passed with connections still open; exiting anyway"
            );
        } else {
            info!("drained");
        }
        Ok(())
    }
}

/// Starts the certificate manager and the discovery client; the proxy turns ready once it holds
/// a certificate and its first config.
fn spawn_control(
    admin: &Arc<Admin>,
    channel: crate::control::Channel,
    cp: crate::config::ControlPlane,
) {
    use crate::control::{discovery, identity};
    let ctx = admin.ctx.clone();
    let material = identity::TlsMaterial::default();
    let (has_cert, cert_rx) = tokio::sync::watch::channel(false);
    let (has_config, config_rx) = tokio::sync::watch::channel(false);
    let certifier = identity::Certifier {
        ca: Arc::new(channel.clone()),
        config: cp.clone(),
        store: ctx.tls.clone(),
        material: material.clone(),
        has_cert,
    };
    tokio::spawn(certifier.run());
    let base = ctx.config().source.clone();
    let address = cp.address.clone();
    let (handle, client) = discovery::new(channel, cp, base, ctx.clone(), material, has_config);
    let _ = ctx.discovery.set(handle);
    tokio::spawn(client.run());
    let admin = admin.clone();
    tokio::spawn(async move {
        until_ready(cert_rx, config_rx, STARTUP_PATIENCE, |missing| {
            warn!(
                "not ready after {}s: still waiting for {missing} from the control plane at {address} (is it running and reachable?)",
                STARTUP_PATIENCE.as_secs(),
            );
        })
        .await;
        admin.ready.store(true, Ordering::Release);
        admin.ctx.metrics.ready.set(1);
        let version = admin.ctx.config().version.clone();
        match admin.ctx.tls.current() {
            Some(tls) => info!(
                "ready: certificate for {} valid until {}, config version {version}",
                tls.creds.identity.as_str(),
                utc(tls.creds.not_after)
            ),
            None => info!("ready: config version {version}"),
        }
    });
}

/// Returns once both a certificate and a config are there. Waiting is the normal start (info);
/// if `patience` passes first, `on_slow` is told once what is still missing, and the wait goes on.
async fn until_ready(
    mut cert: tokio::sync::watch::Receiver<bool>,
    mut config: tokio::sync::watch::Receiver<bool>,
    patience: std::time::Duration,
    on_slow: impl FnOnce(&'static str),
) {
    let (has_cert, has_config) = (cert.clone(), config.clone());
    let ready = async {
        let _ = cert.wait_for(|v| *v).await;
        let _ = config.wait_for(|v| *v).await;
    };
    tokio::pin!(ready);
    tokio::select! {
        () = &mut ready => {}
        () = tokio::time::sleep(patience) => {
            on_slow(match (*has_cert.borrow(), *has_config.borrow()) {
                (false, false) => "a certificate and a config",
                (false, true) => "a certificate",
                _ => "its first config",
            });
            ready.await;
        }
    }
}

/// How long a proxy may wait for its certificate and first config before the wait is logged
/// as a warning (local mode's pods get both in well under a second).
const STARTUP_PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);

/// `2026-12-01 23:59:00 UTC`.
fn utc(t: std::time::SystemTime) -> String {
    let t = time::OffsetDateTime::from(t);
    format!(
        "{} {:02}:{:02}:{:02} UTC",
        t.date(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

async fn accept_loop(
    ctx: Arc<Ctx>,
    sock: TcpListener,
    kind: ListenerKind,
    limit: Arc<ConnLimit>,
    mut watch: drain::Watch,
) {
    let dir = match kind {
        ListenerKind::Outbound { .. } => Direction::Outbound,
        ListenerKind::Inbound { .. } => Direction::Inbound,
    };
    loop {
        let accepted = tokio::select! {
            a = sock.accept() => a,
            _ = watch.signaled() => return,
        };
        let (tcp, client) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(permit) = limit.try_acquire() else {
            ctx.metrics.refused(dir, RefuseReason::Limit);
            debug!(%client, ?dir, "connection limit (limits.maxConnections) reached; refusing");
            crate::transport::close_with_reset(tcp);
            continue;
        };
        crate::io::tune(&tcp);
        let ctx = ctx.clone();
        let watch = watch.clone();
        match &kind {
            ListenerKind::Outbound { fixed } => {
                let fixed = *fixed;
                tokio::spawn(async move {
                    let _permit = permit;
                    let _active = ActiveGuard::new(
                        &ctx.metrics.active_connections[Direction::Outbound as usize],
                    );
                    crate::outbound::serve(ctx.clone(), fixed, tcp, client, watch).await
                });
            }
            ListenerKind::Inbound { app_port } => {
                let app_port = *app_port;
                tokio::spawn(async move {
                    let _permit = permit;
                    let _active = ActiveGuard::new(
                        &ctx.metrics.active_connections[Direction::Inbound as usize],
                    );
                    crate::inbound::serve(ctx.clone(), app_port, tcp, client, watch).await
                });
            }
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the proxy can still be stopped through the admin API.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::until_ready;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;
    use tokio::sync::watch;

    #[tokio::test(start_paused = true)]
    async fn a_wait_past_the_patience_is_reported_once_with_what_is_missing() {
        let (cert_tx, cert) = watch::channel(false);
        let (config_tx, config) = watch::channel(false);
        config_tx.send_replace(true);
        let told = Arc::new(Mutex::new(Vec::new()));
        let t = told.clone();
        let wait = tokio::spawn(until_ready(
            cert,
            config,
            Duration::from_secs(10),
            move |m| t.lock().unwrap().push(m),
        ));
        tokio::time::sleep(Duration::from_secs(11)).await;
        assert_eq!(*told.lock().unwrap(), ["a certificate"]);
        assert!(!wait.is_finished(), "still waiting for the certificate");
        cert_tx.send_replace(true);
        wait.await.unwrap();
        assert_eq!(told.lock().unwrap().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_start_within_the_patience_is_not_reported() {
        let (cert_tx, cert) = watch::channel(false);
        let (config_tx, config) = watch::channel(false);
        let told = Arc::new(Mutex::new(Vec::<&str>::new()));
        let t = told.clone();
        let wait = tokio::spawn(until_ready(
            cert,
            config,
            Duration::from_secs(10),
            move |m| t.lock().unwrap().push(m),
        ));
        tokio::time::sleep(Duration::from_secs(9)).await;
        cert_tx.send_replace(true);
        config_tx.send_replace(true);
        wait.await.unwrap();
        assert!(told.lock().unwrap().is_empty());
    }
}
