//! What every connection handler shares: the current config and credentials, clients, metrics
//! and the drain watch.

use crate::config::Config;
use crate::http::client::PlainClient;
use crate::metrics::Metrics;
use crate::tls;
use crate::traffic::breaker::Breaker;
use crate::traffic::cache::Services;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

/// One config version and its per-service state. A request holds the snapshot (or the parts
/// it needs) it started with, so a push never changes the policy under it.
pub struct Snapshot {
    pub config: Arc<Config>,
    pub services: Arc<Services>,
    /// Each service's outbound stack, by service key, built once for this version.
    pub outbound: HashMap<Arc<str>, crate::outbound::ServiceStack>,
    /// Connection-pool limits of this pod's own ports, carried across versions (updated in
    /// place) like the outbound destinations'.
    pub inbound: HashMap<u16, Breaker>,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("version", &self.config.version)
            .field("services", &self.services.len())
            .finish()
    }
}

// === impl Snapshot ===

impl Snapshot {
    fn new(
        config: Arc<Config>,
        prev: Option<&Snapshot>,
        clients: &Arc<crate::outbound::Clients>,
    ) -> Self {
        let empty = Services::default();
        let prev_services = prev.map_or(&empty, |p| &*p.services);
        let services = Arc::new(Services::update(
            prev_services,
            &config,
            tokio::time::Instant::now(),
        ));
        let outbound = crate::outbound::stacks(clients, &config, &services);
        let inbound = config
            .inbound_limits
            .iter()
            .map(|(port, limits)| {
                let breaker = match prev.and_then(|p| p.inbound.get(port)) {
                    Some(b) => {
                        b.update(limits);
                        b.clone()
                    }
                    None => Breaker::new(Arc::from(format!("inbound|{port}")), limits),
                };
                (*port, breaker)
            })
            .collect();
        Self {
            config,
            services,
            outbound,
            inbound,
        }
    }
}

pub struct Ctx {
    /// The config in force and the live per-service state derived from it, swapped together.
    snapshot: RwLock<Arc<Snapshot>>,
    /// Serialises config changes (each derives its state from the previous snapshot).
    updating: Mutex<()>,
    pub tls: tls::Store,
    pub metrics: Arc<Metrics>,
    /// Outbound credentials, metrics and connection pools, shared by every outbound stack.
    pub outbound: Arc<crate::outbound::Clients>,
    /// Delivery to the local app, from [`crate::inbound::APP_SOURCE`].
    pub app: PlainClient<crate::telemetry::layer::InBody>,
    /// Set when a control plane is configured: on-demand subscriptions.
    pub discovery: OnceLock<crate::control::discovery::Discovery>,
    /// Versions of the resources the control plane sent, by name (for /config_dump).
    resource_versions: RwLock<BTreeMap<String, String>>,
    /// Why the last rejected (NACKed) config was rejected; cleared by the next good one.
    last_config_error: RwLock<Option<String>>,
    /// Spans: context propagation, sampling and export (configured from the config in force).
    pub tracer: crate::telemetry::trace::Tracer,
    /// Access-log lines, when on (configured from the config in force and the proxy flag).
    pub access_log: Arc<crate::telemetry::access_log::AccessLog>,
}

impl Ctx {
    pub fn new(config: Arc<Config>, tls: tls::Store, metrics: Arc<Metrics>) -> Self {
        let outbound = Arc::new(crate::outbound::Clients::new(
            &config,
            tls.clone(),
            metrics.clone(),
        ));
        let app = PlainClient::new(
            config.timeouts.connect,
            config.timeouts.idle,
            Some(crate::inbound::APP_SOURCE.into()),
        );
        let snapshot = Snapshot::new(config.clone(), None, &outbound);
        let tracer = crate::telemetry::trace::Tracer::new(metrics.trace.clone());
        tracer.configure(&config.telemetry.tracing);
        let access_log = Arc::new(crate::telemetry::access_log::AccessLog::new(
            None,
            metrics.access_log_dropped.clone(),
        ));
        access_log.configure(config.telemetry.access_log);
        Self {
            access_log,
            snapshot: RwLock::new(Arc::new(snapshot)),
            updating: Mutex::new(()),
            tls,
            metrics,
            outbound,
            app,
            discovery: OnceLock::new(),
            resource_versions: RwLock::new(BTreeMap::new()),
            last_config_error: RwLock::new(None),
            tracer,
        }
    }

    /// The config in force now. A connection keeps the one it started with for its settings,
    /// but outbound HTTP looks its service up here per request, so a kept-alive app connection
    /// follows endpoint changes.
    pub fn config(&self) -> Arc<Config> {
        self.snapshot
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .config
            .clone()
    }

    /// The config in force now with its per-service state.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Installs a new config for new requests and connections: the per-service state is
    /// carried over from the previous config (see [`crate::traffic::cache`]) and both swap at
    /// once.
    pub fn set_config(&self, config: Arc<Config>) {
        let _updating = self.updating.lock().unwrap_or_else(|p| p.into_inner());
        let prev = self.snapshot();
        self.tracer.configure(&config.telemetry.tracing);
        self.access_log.configure(config.telemetry.access_log);
        let next = Arc::new(Snapshot::new(config, Some(&prev), &self.outbound));
        *self.snapshot.write().unwrap_or_else(|p| p.into_inner()) = next;
        // A destination this version removed would take its unreported counts with it.
        prev.services.report_counters(&self.metrics);
    }

    pub fn set_resource_versions(&self, v: BTreeMap<String, String>) {
        *self
            .resource_versions
            .write()
            .unwrap_or_else(|p| p.into_inner()) = v;
    }

    pub fn set_last_config_error(&self, e: Option<String>) {
        *self
            .last_config_error
            .write()
            .unwrap_or_else(|p| p.into_inner()) = e;
    }

    pub fn last_config_error(&self) -> Option<String> {
        self.last_config_error
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn resource_versions(&self) -> BTreeMap<String, String> {
        self.resource_versions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The connection-pool limits of this pod's `port`, if it has any. Costs a snapshot read
    /// only when some port has limits.
    pub fn inbound_breaker(&self, port: u16) -> Option<Breaker> {
        let snap = self.snapshot.read().unwrap_or_else(|p| p.into_inner());
        if snap.inbound.is_empty() {
            return None;
        }
        snap.inbound.get(&port).cloned()
    }

    /// The current TLS state, or an error saying the proxy has no mesh credentials.
    pub fn tls(&self) -> Result<Arc<tls::TlsState>, crate::http::ProxyError> {
        self.tls.current().ok_or_else(|| {
            crate::http::ProxyError::TlsConfig(tls::TlsError::Rustls(rustls::Error::General(
                "no mesh certificate yet (set tls in the config, or wait for the control plane's CA)"
                    .into(),
            )))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sinew_proto::config::v1 as pb;

    fn config(yaml: &str) -> Arc<Config> {
        let msg: pb::ProxyConfig = serde_saphyr::from_str(yaml).expect("test yaml");
        Arc::new(Config::from_proto(msg).expect("valid"))
    }

    #[test]
    fn a_destination_removed_by_a_push_keeps_its_retry_count_in_the_metrics() {
        let with_ratings = r#"
services:
  - {name: reviews, addresses: ["10.0.0.1:80"], endpoints: [{address: "10.1.0.1:80"}]}
  - {name: ratings, addresses: ["10.0.0.2:80"], endpoints: [{address: "10.1.0.2:80"}]}
"#;
        let without = r#"
services:
  - {name: reviews, addresses: ["10.0.0.1:80"], endpoints: [{address: "10.1.0.1:80"}]}
"#;
        let metrics = Arc::new(crate::metrics::Metrics::new());
        let ctx = Ctx::new(
            config(with_ratings),
            crate::tls::Store::empty(),
            metrics.clone(),
        );
        let snap = ctx.snapshot();
        let ratings = &snap.services.service("ratings").expect("ratings").default;
        // Two retries happen and finish before any scrape.
        for _ in 0..2 {
            drop(ratings.retry_budget.try_retry().expect("unlimited"));
        }
        drop(snap);
        ctx.set_config(config(without));
        assert!(ctx.snapshot().services.service("ratings").is_none());
        let text = metrics.encode();
        assert!(
            text.contains(r#"sinew_upstream_rq_retry_total{service="ratings"} 2"#),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_config_push_points_the_tracer_at_its_collector_and_sets_the_rate() {
        use crate::telemetry::trace::SpanKind;
        let receiver = sinew_otlp_receiver::Receiver::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let metrics = Arc::new(crate::metrics::Metrics::new());
        let ctx = Ctx::new(config("{}"), crate::tls::Store::empty(), metrics.clone());
        // No endpoint and 0 %: nothing sampled, nothing exported.
        ctx.set_config(config(
            "telemetry: {tracing: {randomSamplingPercentage: 0}}",
        ));
        assert!(
            !ctx.tracer
                .start(SpanKind::Client, &mut http::HeaderMap::new())
                .is_sampled()
        );
        ctx.set_config(config(&format!(
            "telemetry: {{tracing: {{otlpEndpoint: '{}', randomSamplingPercentage: 100}}}}",
            receiver.endpoint()
        )));
        let method = http::Method::GET;
        let uri: http::Uri = "/".parse().unwrap();
        let span = ctx
            .tracer
            .start(SpanKind::Client, &mut http::HeaderMap::new());
        assert!(span.is_sampled(), "100 % after the push");
        let trace_id = span.trace_id().unwrap();
        span.finish(&crate::telemetry::trace::Outcome {
            method: &method,
            uri: &uri,
            authority: None,
            protocol: crate::telemetry::RequestProtocol::Http,
            version: http::Version::HTTP_11,
            status: Some(http::StatusCode::OK),
            grpc_status: None,
            flags: Default::default(),
            upstream_host: None,
            upstream_cluster: None,
            retries: 0,
            request_bytes: 0,
            response_bytes: 0,
            peer_identity: None,
            source: None,
            destination: None,
            destination_service: None,
        });
        let spans = receiver
            .wait_for(1, std::time::Duration::from_secs(20))
            .await
            .unwrap();
        assert_eq!(spans[0].trace_id, trace_id);
        // The proxy's metrics count what the tracer exported.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
        while !metrics
            .encode()
            .contains("sinew_trace_spans_exported_total 1")
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{}",
                metrics.encode()
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }
}
