//! The proxy's own HTTP endpoints: admin (config dump, shutdown, log level) on localhost,
//! readiness for the kubelet, and Prometheus metrics.

use crate::app_health::{self, AppHealth};
use crate::ctx::Ctx;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// Changes the log filter at run time (wired to tracing-subscriber's reload handle by main).
pub type SetLogLevel = Arc<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// Shared state of the admin endpoints.
pub struct Admin {
    pub ctx: Arc<Ctx>,
    pub ready: AtomicBool,
    pub shutdown: mpsc::Sender<()>,
    pub set_log_level: Option<SetLogLevel>,
}

#[derive(Clone, Copy)]
pub enum Endpoint {
    Admin,
    Health,
    Metrics,
}

/// Serves one of the admin endpoints on `listener` forever. The metrics endpoint also answers
/// the app-health prober's paths when there is one.
pub async fn serve(
    admin: Arc<Admin>,
    listener: TcpListener,
    which: Endpoint,
    app_health: Option<Arc<AppHealth>>,
) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let admin = admin.clone();
        let app_health = app_health.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let admin = admin.clone();
                let app_health = app_health.clone();
                async move {
                    if let (Endpoint::Metrics, &Method::GET, Some(prober)) =
                        (which, req.method(), &app_health)
                        && req.uri().path().starts_with(app_health::PATH_PREFIX)
                    {
                        let ua = req.headers().get(header::USER_AGENT);
                        return Ok::<_, Infallible>(prober.answer(req.uri().path(), ua).await);
                    }
                    Ok::<_, Infallible>(admin.handle(which, req))
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(10))
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        "text/plain; charset=utf-8"
            .parse()
            .expect("invariant: static"),
    );
    r
}

// === impl Admin ===

impl Admin {
    fn handle(&self, which: Endpoint, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let path = req.uri().path();
        match (which, req.method(), path) {
            (Endpoint::Health, &Method::GET, "/healthz/ready")
            | (Endpoint::Admin, &Method::GET, "/ready") => self.readiness(),
            // `/stats/prometheus` is Istio's path (what its scrape annotations name).
            (
                Endpoint::Metrics | Endpoint::Admin,
                &Method::GET,
                "/metrics" | "/stats/prometheus",
            ) => {
                self.sync_policy_counters();
                let mut r = text(StatusCode::OK, self.ctx.metrics.encode());
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    "text/plain; version=0.0.4; charset=utf-8"
                        .parse()
                        .expect("invariant: static"),
                );
                r
            }
            (Endpoint::Admin, &Method::GET, "/config_dump") => {
                let mut r = text(StatusCode::OK, self.config_dump());
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    "application/json".parse().expect("invariant: static"),
                );
                r
            }
            (Endpoint::Admin, &Method::GET, "/clusters") => {
                let mut r = text(StatusCode::OK, self.clusters());
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    "application/json".parse().expect("invariant: static"),
                );
                r
            }
            (Endpoint::Admin, &Method::POST, "/shutdown") => {
                let _ = self.shutdown.try_send(());
                text(StatusCode::OK, "draining\n")
            }
            (Endpoint::Admin, &Method::POST, "/logging") => {
                let level = req
                    .uri()
                    .query()
                    .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("level=")))
                    .unwrap_or("");
                match (&self.set_log_level, level) {
                    (_, "") => text(
                        StatusCode::BAD_REQUEST,
                        "usage: POST /logging?level=<filter>, e.g. level=debug or level=info,sinew_proxy=trace\n",
                    ),
                    (None, _) => text(
                        StatusCode::NOT_IMPLEMENTED,
                        "log level is fixed in this process\n",
                    ),
                    (Some(set), l) => match set(l) {
                        Ok(()) => text(StatusCode::OK, format!("log level set to {l}\n")),
                        Err(e) => text(
                            StatusCode::BAD_REQUEST,
                            format!("invalid level {l:?}: {e}\n"),
                        ),
                    },
                }
            }
            (Endpoint::Admin, _, "/") => text(
                StatusCode::OK,
                "GET /config_dump\nGET /clusters\nGET /metrics\nGET /stats/prometheus\nGET /ready\nPOST /shutdown\nPOST /logging?level=<filter>\n",
            ),
            _ => text(StatusCode::NOT_FOUND, "not found\n"),
        }
    }

    fn readiness(&self) -> Response<Full<Bytes>> {
        if self.ready.load(Ordering::Acquire) {
            text(StatusCode::OK, "ready\n")
        } else {
            text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
        }
    }

    /// Brings the counters kept by the policy modules (ejections, retries) into the metrics.
    fn sync_policy_counters(&self) {
        self.ctx
            .snapshot()
            .services
            .report_counters(&self.ctx.metrics);
    }

    /// Every service and subset this proxy sends to, with its policy and the live state of
    /// each endpoint (Envoy's `/clusters`, as JSON).
    fn clusters(&self) -> String {
        let snap = self.ctx.snapshot();
        let mut services: Vec<_> = snap.services.iter().collect();
        services.sort_by(|a, b| a.service.key.cmp(&b.service.key));
        // One entry per destination (a service, then each of its subsets): the shape
        // `sinewctl proxy-config` reads. This pod's own ports with limits follow, named
        // `inbound|<port>`.
        let mut entries: Vec<serde_json::Value> = services
            .iter()
            .flat_map(|s| std::iter::once(&s.default).chain(&s.subsets))
            .map(|d| destination(d))
            .collect();
        let mut ports: Vec<_> = snap.inbound.iter().collect();
        ports.sort_by_key(|(p, _)| **p);
        for (port, breaker) in ports {
            let stats = breaker.stats();
            entries.push(serde_json::json!({
                "service": format!("inbound|{port}"),
                "subset": null,
                "active": stats.active,
                "pending": stats.pending,
                "endpoints": [],
            }));
        }
        let dump = serde_json::json!({
            "version": snap.config.version,
            "services": entries,
        });
        serde_json::to_string_pretty(&dump).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }

    /// The effective config plus run-time facts (identity, certificate expiry), as JSON.
    fn config_dump(&self) -> String {
        let config = self.ctx.config();
        let tls = self.ctx.tls.current().map(|st| {
            let expiry = st
                .creds
                .not_after
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            serde_json::json!({
                "identity": st.creds.identity.as_str(),
                "certificateNotAfterUnix": expiry,
                "trustAnchors": st.creds.roots.len(),
                "trustAnchorsSha256": st.creds.roots_sha256,
                "certificateRootSha256": st.creds.chain_root_sha256,
            })
        });
        let dump = serde_json::json!({
            "version": config.version,
            "resourceVersions": self.ctx.resource_versions(),
            "lastRejectedConfig": self.ctx.last_config_error(),
            "config": config.source,
            "tls": tls,
            "listeners": config.listeners.iter().map(|l| serde_json::json!({
                "name": l.name,
                "address": l.addr.to_string(),
                "kind": format!("{:?}", l.kind),
            })).collect::<Vec<_>>(),
            "timeouts": format!("{:?}", config.timeouts),
            "limits": format!("{:?}", config.limits),
        });
        serde_json::to_string_pretty(&dump).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }
}

/// One destination for `/clusters`.
fn destination(d: &crate::traffic::cache::Destination) -> serde_json::Value {
    use crate::traffic::balance::BalanceTarget;
    let health = d.health();
    let endpoints: Vec<_> = d
        .endpoints()
        .iter()
        .map(|e| {
            let h = health.iter().find(|h| h.addr == e.addr());
            serde_json::json!({
                "address": e.addr().to_string(),
                "identity": e.endpoint.identity.as_ref().map(|i| i.as_str()),
                "healthy": !d.is_ejected(e),
                "ejectedForMs": h.and_then(|h| h.ejected_for).map(|t| t.as_millis() as u64),
                "timesEjected": h.map_or(0, |h| h.times_ejected),
                "ejections": h.map_or(0, |h| h.ejections),
                "active": e.stats.active(),
                "total": e.stats.total(),
            })
        })
        .collect();
    serde_json::json!({
        "service": &*d.key.service,
        "subset": d.key.subset.as_deref(),
        "loadBalancer": d.policy.load_balancer.name(),
        "tls": format!("{:?}", d.policy.tls),
        "limits": d.policy.source.as_ref().and_then(|s| s.connection_pool.as_ref()),
        "outlierDetection": d.policy.source.as_ref().and_then(|s| s.outlier_detection.as_ref()),
        "active": d.active(),
        "pending": d.pending(),
        "endpoints": endpoints,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use sinew_proto::config::v1 as pb;

    #[tokio::test]
    async fn clusters_lists_each_destination_with_its_endpoints_live_state() {
        let msg: pb::ProxyConfig = serde_saphyr::from_str(
            r#"
services:
  - name: reviews
    port: 9080
    addresses: ["10.0.0.1:9080"]
    policySources: ["DestinationRule shop/reviews (networking.istio.io)"]
    trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}, connectionPool: {http2MaxRequests: 7}}
    endpoints:
      - {address: "10.1.0.1:9080", identity: "spiffe://cluster.local/ns/shop/sa/reviews", labels: {version: v1}}
      - {address: "10.1.0.2:9080", labels: {version: v2}}
    subsets: [{name: v2, labels: {version: v2}}]
"#,
        )
        .expect("test yaml");
        let ctx = Arc::new(Ctx::new(
            Arc::new(Config::from_proto(msg).expect("valid")),
            crate::tls::Store::empty(),
            Arc::new(crate::metrics::Metrics::new()),
        ));
        let snap = ctx.snapshot();
        let dest = &snap
            .services
            .service("reviews:9080")
            .expect("reviews")
            .default;
        let _busy = dest.endpoints()[0].stats.start();
        let admin = Admin {
            ctx: ctx.clone(),
            ready: AtomicBool::new(true),
            shutdown: mpsc::channel(1).0,
            set_log_level: None,
        };
        let v: serde_json::Value = serde_json::from_str(&admin.clusters()).expect("JSON");
        let default = &v["services"][0];
        assert_eq!(default["service"], "reviews:9080");
        assert_eq!(default["subset"], serde_json::Value::Null);
        assert_eq!(default["loadBalancer"], "ROUND_ROBIN");
        assert_eq!(default["limits"]["http2MaxRequests"], 7);
        assert_eq!(default["active"], 1);
        let ep = &default["endpoints"][0];
        assert_eq!(ep["address"], "10.1.0.1:9080");
        assert_eq!(ep["identity"], "spiffe://cluster.local/ns/shop/sa/reviews");
        assert_eq!(ep["healthy"], true);
        assert_eq!(ep["active"], 1);
        let v2 = &v["services"][1];
        assert_eq!(v2["service"], "reviews:9080");
        assert_eq!(v2["subset"], "v2");
        assert_eq!(v2["endpoints"].as_array().map(Vec::len), Some(1));
        // The subset shares the endpoint's live state with the service.
        assert_eq!(v2["endpoints"][0]["address"], "10.1.0.2:9080");
    }
}
