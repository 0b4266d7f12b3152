//! Behaviour tests of traffic policy through a real proxy on loopback: an outbound listener in
//! front of endpoints without a sidecar (plaintext), so each test needs one proxy only.

mod support;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use sinew_proto::config::v1 as pb;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use support::*;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// An app that answers each request once the test adds a permit to `gate`, with its own name in
/// `x-app`; `seen` counts requests that reached it.
async fn gated_app(name: &'static str, gate: Arc<Semaphore>, seen: Arc<AtomicUsize>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (gate, seen) = (gate.clone(), seen.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |_req: Request<hyper::body::Incoming>| {
                    let (gate, seen) = (gate.clone(), seen.clone());
                    async move {
                        seen.fetch_add(1, Ordering::SeqCst);
                        if let Ok(p) = gate.acquire().await {
                            p.forget();
                        }
                        let mut rsp = Response::new(Full::new(Bytes::from_static(b"ok")));
                        rsp.headers_mut().insert("x-app", name.parse().unwrap());
                        Ok::<_, Infallible>(rsp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    addr
}

async fn proxy_for(endpoints: Vec<SocketAddr>, policy: pb::TrafficPolicy) -> RunningProxy {
    proxy_for_service(pb::Service {
        endpoints: endpoints
            .iter()
            .map(|a| pb::Endpoint {
                address: a.to_string(),
                ..Default::default()
            })
            .collect(),
        traffic_policy: Some(policy),
        ..Default::default()
    })
    .await
}

/// One proxy whose outbound listener sends everything to `service` (name, port, address and
/// protocol filled in), with its admin ports on port 0.
async fn proxy_for_service(service: pb::Service) -> RunningProxy {
    start_proxy(pb::ProxyConfig {
        listeners: vec![outbound_listener("outbound")],
        services: vec![pb::Service {
            name: "server.default.svc.cluster.local".into(),
            port: 8080,
            addresses: vec![SERVICE_ADDR.into()],
            protocol: pb::Protocol::Http1 as i32,
            ..service
        }],
        admin: local_admin(),
        ..Default::default()
    })
    .await
}

async fn clusters(proxy: &RunningProxy) -> serde_json::Value {
    let mut c = h1_client(proxy.admin).await;
    let rsp = c.send_request(get("/clusters")).await.unwrap();
    serde_json::from_str(&body_string(rsp).await).unwrap()
}

#[tokio::test]
async fn a_full_connection_pool_answers_503_uo_at_once_and_clusters_shows_the_queue() {
    let gate = Arc::new(Semaphore::new(0));
    let seen = Arc::new(AtomicUsize::new(0));
    let app = gated_app("a", gate.clone(), seen.clone()).await;
    let proxy = proxy_for(
        vec![app],
        pb::TrafficPolicy {
            // HTTP/1 requests wait for one of `maxConnections` (Envoy: a connection each).
            connection_pool: Some(pb::ConnectionPool {
                max_connections: 1,
                http1_max_pending_requests: 1,
                ..Default::default()
            }),
            ..Default::default()
        },
    )
    .await;
    let out = proxy.addr("outbound");
    // One request in flight at the app, one queued in the proxy.
    let first = tokio::spawn(async move { h1_client(out).await.send_request(get("/1")).await });
    eventually("the first request reaches the app", || {
        let seen = seen.clone();
        async move { seen.load(Ordering::SeqCst) == 1 }
    })
    .await;
    let second = tokio::spawn(async move { h1_client(out).await.send_request(get("/2")).await });
    eventually("the second request waits in the queue", || async {
        clusters(&proxy).await["services"][0]["pending"] == 1
    })
    .await;
    let c = clusters(&proxy).await;
    assert_eq!(c["services"][0]["active"], 1, "{c}");

    // The third overflows at once: the app is still holding the first.
    let rsp = h1_client(out).await.send_request(get("/3")).await.unwrap();
    assert_eq!(rsp.status(), 503);
    assert_eq!(rsp.headers()["x-envoy-overloaded"], "true");
    assert_eq!(rsp.headers()["sinew-response-flags"], "UO");
    assert_eq!(
        body_string(rsp).await,
        "upstream connect error or disconnect/reset before headers. reset reason: overflow"
    );

    gate.add_permits(2);
    assert_eq!(first.await.unwrap().unwrap().status(), 200);
    assert_eq!(second.await.unwrap().unwrap().status(), 200);
    assert_eq!(
        metric(
            proxy.metrics,
            r#"sinew_upstream_rq_overflow_total{service="server.default.svc.cluster.local:8080",kind="pending"}"#
        )
        .await,
        1.0
    );
}

#[tokio::test]
async fn a_failing_endpoint_is_ejected_and_the_other_takes_the_traffic() {
    let open = Arc::new(Semaphore::new(Semaphore::MAX_PERMITS));
    let good = gated_app("good", open.clone(), Arc::new(AtomicUsize::new(0))).await;
    // Nothing listens here: every connection is refused (a local-origin failure).
    let dead = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let proxy = proxy_for(
        vec![dead, good],
        pb::TrafficPolicy {
            load_balancer: Some(pb::LoadBalancer {
                simple: pb::load_balancer::Simple::RoundRobin as i32,
                ..Default::default()
            }),
            outlier_detection: Some(pb::OutlierDetection {
                consecutive_5xx_errors: Some(2),
                max_ejection_percent: Some(100),
                ..Default::default()
            }),
            ..Default::default()
        },
    )
    .await;
    let out = proxy.addr("outbound");
    // Istio's default retry policy retries a connect failure on another host: every request
    // succeeds, and the dead endpoint's failures still count towards its ejection.
    for _ in 0..6 {
        let rsp = h1_client(out).await.send_request(get("/")).await.unwrap();
        assert_eq!(rsp.status(), 200);
        assert_eq!(rsp.headers()["x-app"], "good");
    }
    assert!(
        metric(
            proxy.metrics,
            r#"sinew_upstream_rq_retry_total{service="server.default.svc.cluster.local:8080"}"#
        )
        .await
            >= 1.0
    );
    let c = clusters(&proxy).await;
    let eps = c["services"][0]["endpoints"].as_array().unwrap().clone();
    let dead_ep = eps
        .iter()
        .find(|e| e["address"] == dead.to_string())
        .unwrap();
    assert_eq!(dead_ep["healthy"], false, "{c}");
    assert_eq!(dead_ep["timesEjected"], 1, "{c}");
    for _ in 0..5 {
        let rsp = h1_client(out).await.send_request(get("/")).await.unwrap();
        assert_eq!(rsp.status(), 200);
        assert_eq!(rsp.headers()["x-app"], "good");
    }
    assert_eq!(
        metric(
            proxy.metrics,
            r#"sinew_outlier_ejections_total{service="server.default.svc.cluster.local:8080"}"#
        )
        .await,
        1.0
    );
}

#[tokio::test]
async fn no_endpoints_is_503_no_healthy_upstream() {
    let proxy = proxy_for(vec![], pb::TrafficPolicy::default()).await;
    let rsp = h1_client(proxy.addr("outbound"))
        .await
        .send_request(get("/"))
        .await
        .unwrap();
    assert_eq!(rsp.status(), 503);
    assert_eq!(rsp.headers()["sinew-response-flags"], "UH");
    assert_eq!(body_string(rsp).await, "no healthy upstream");
}

#[tokio::test]
async fn inbound_connection_pool_limits_shed_requests_to_the_app() {
    let gate = Arc::new(Semaphore::new(0));
    let seen = Arc::new(AtomicUsize::new(0));
    let app = gated_app("app", gate.clone(), seen.clone()).await;
    let proxy = start_proxy(pb::ProxyConfig {
        listeners: vec![pb::Listener {
            name: "inbound".into(),
            address: "127.0.0.1:0".into(),
            direction: pb::Direction::Inbound as i32,
            fixed_destination: String::new(),
            app_port: app.port() as u32,
        }],
        inbound_ports: vec![pb::InboundPort {
            port: app.port() as u32,
            protocol: pb::Protocol::Http1 as i32,
            // HTTP/1 requests wait for one of `maxConnections` (Envoy: a connection each).
            connection_pool: Some(pb::ConnectionPool {
                max_connections: 1,
                http1_max_pending_requests: 1,
                ..Default::default()
            }),
        }],
        admin: local_admin(),
        ..Default::default()
    })
    .await;
    let inbound = proxy.addr("inbound");
    let first = tokio::spawn(async move { h1_client(inbound).await.send_request(get("/1")).await });
    eventually("the first request reaches the app", || {
        let seen = seen.clone();
        async move { seen.load(Ordering::SeqCst) == 1 }
    })
    .await;
    let second =
        tokio::spawn(async move { h1_client(inbound).await.send_request(get("/2")).await });
    let port = format!("inbound|{}", app.port());
    eventually("the second request waits in the queue", || async {
        let c = clusters(&proxy).await;
        let entries = c["services"].as_array().cloned().unwrap_or_default();
        entries
            .iter()
            .any(|e| e["service"] == port.as_str() && e["pending"] == 1)
    })
    .await;
    // The third finds the slot taken and the queue full.
    let rsp = h1_client(inbound)
        .await
        .send_request(get("/3"))
        .await
        .unwrap();
    assert_eq!(rsp.status(), 503);
    assert_eq!(rsp.headers()["sinew-response-flags"], "UO");
    assert_eq!(rsp.headers()["x-envoy-overloaded"], "true");
    gate.add_permits(2);
    assert_eq!(first.await.unwrap().unwrap().status(), 200);
    assert_eq!(second.await.unwrap().unwrap().status(), 200);
}

#[tokio::test]
async fn a_header_match_routes_to_a_subset_and_the_rest_to_another() {
    let open = Arc::new(Semaphore::new(Semaphore::MAX_PERMITS));
    let v1 = gated_app("v1", open.clone(), Arc::new(AtomicUsize::new(0))).await;
    let v2 = gated_app("v2", open.clone(), Arc::new(AtomicUsize::new(0))).await;
    let labelled = |a: SocketAddr, version: &str| pb::Endpoint {
        address: a.to_string(),
        labels: [("version".to_string(), version.to_string())].into(),
        ..Default::default()
    };
    let subset = |name: &str| pb::Subset {
        name: name.into(),
        labels: [("version".to_string(), name.to_string())].into(),
        traffic_policy: None,
    };
    let to = |name: &str| pb::RouteDestination {
        subset: name.into(),
        ..Default::default()
    };
    let canary = pb::HttpMatch {
        headers: [(
            "x-canary".to_string(),
            pb::StringMatch {
                kind: Some(pb::string_match::Kind::Exact("1".into())),
            },
        )]
        .into(),
        ..Default::default()
    };
    let proxy = proxy_for_service(pb::Service {
        endpoints: vec![labelled(v1, "v1"), labelled(v2, "v2")],
        subsets: vec![subset("v1"), subset("v2")],
        http_routes: vec![
            pb::HttpRoute {
                matches: vec![canary],
                destinations: vec![to("v2")],
                ..Default::default()
            },
            pb::HttpRoute {
                destinations: vec![to("v1")],
                ..Default::default()
            },
        ],
        ..Default::default()
    })
    .await;
    let out = proxy.addr("outbound");
    for _ in 0..4 {
        let mut req = get("/");
        req.headers_mut().insert("x-canary", "1".parse().unwrap());
        let rsp = h1_client(out).await.send_request(req).await.unwrap();
        assert_eq!(rsp.headers()["x-app"], "v2");
        let rsp = h1_client(out).await.send_request(get("/")).await.unwrap();
        assert_eq!(rsp.headers()["x-app"], "v1");
    }
}

#[tokio::test]
async fn max_requests_per_connection_opens_a_new_mesh_connection_after_that_many_requests() {
    let (app, _app_task) = start_echo_app().await;
    let mut o = MeshOptions::new(app.port());
    o.traffic_policy = Some(pb::TrafficPolicy {
        connection_pool: Some(pb::ConnectionPool {
            max_requests_per_connection: 10,
            ..Default::default()
        }),
        ..Default::default()
    });
    let mesh = Mesh::with(o).await;
    let mut client = h1_client(mesh.outbound()).await;
    for _ in 0..25 {
        client.ready().await.unwrap();
        let rsp = client.send_request(get("/")).await.unwrap();
        assert_eq!(rsp.status(), 200);
        body_string(rsp).await;
    }
    // 25 requests, 10 per connection: three mesh connections reached B.
    let b_conns = metric(
        mesh.b.metrics,
        r#"sinew_tcp_connections_opened_total{direction="inbound",protocol="mesh_h2"}"#,
    )
    .await;
    assert_eq!(b_conns, 3.0);
}

/// An HTTP/1 app that counts the connections it accepts and the requests that asked it to
/// close theirs (`connection: close`).
async fn counting_app() -> (SocketAddr, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (accepted, closing) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (a, c) = (accepted.clone(), closing.clone());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            a.fetch_add(1, Ordering::SeqCst);
            let c = c.clone();
            let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                if req
                    .headers()
                    .get("connection")
                    .is_some_and(|v| v == "close")
                {
                    c.fetch_add(1, Ordering::SeqCst);
                }
                async { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok")))) }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), svc),
            );
        }
    });
    (addr, accepted, closing)
}

#[tokio::test]
async fn max_requests_per_connection_1_turns_keepalive_off_for_an_endpoint_without_a_sidecar() {
    let (app, accepted, closing) = counting_app().await;
    let proxy = proxy_for(
        vec![app],
        pb::TrafficPolicy {
            connection_pool: Some(pb::ConnectionPool {
                max_requests_per_connection: 1,
                ..Default::default()
            }),
            ..Default::default()
        },
    )
    .await;
    let mut client = h1_client(proxy.addr("outbound")).await;
    for _ in 0..4 {
        client.ready().await.unwrap();
        let rsp = client.send_request(get("/")).await.unwrap();
        assert_eq!(rsp.status(), 200);
        body_string(rsp).await;
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        4,
        "a connection per request"
    );
    assert_eq!(
        closing.load(Ordering::SeqCst),
        4,
        "each sent with connection: close"
    );
}

#[tokio::test]
async fn an_http_cookie_with_a_ttl_is_set_by_the_proxy_and_keeps_the_client_on_one_endpoint() {
    let open = Arc::new(Semaphore::new(Semaphore::MAX_PERMITS));
    let mut apps = Vec::new();
    for name in ["a", "b", "c", "d"] {
        apps.push(gated_app(name, open.clone(), Arc::new(AtomicUsize::new(0))).await);
    }
    let proxy = proxy_for(
        apps,
        pb::TrafficPolicy {
            load_balancer: Some(pb::LoadBalancer {
                consistent_hash: Some(pb::ConsistentHash {
                    http_cookie: Some(pb::HttpCookie {
                        name: "affinity".into(),
                        path: "/".into(),
                        ttl: Some(pbjson_types::Duration {
                            seconds: 3600,
                            nanos: 0,
                        }),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        },
    )
    .await;
    let out = proxy.addr("outbound");
    let mut endpoints = Vec::new();
    for _ in 0..8 {
        // A new client: the proxy picks an endpoint and hands out the cookie.
        let rsp = h1_client(out).await.send_request(get("/")).await.unwrap();
        let first = rsp.headers()["x-app"].clone();
        let set = rsp.headers()["set-cookie"].to_str().unwrap().to_owned();
        assert!(set.ends_with("; Max-Age=3600; Path=/; HttpOnly"), "{set}");
        let pair = set.split(';').next().unwrap().to_owned();
        for _ in 0..4 {
            let mut req = get("/");
            req.headers_mut().insert("cookie", pair.parse().unwrap());
            let rsp = h1_client(out).await.send_request(req).await.unwrap();
            assert_eq!(rsp.headers()["x-app"], first, "{pair}");
            assert!(rsp.headers().get("set-cookie").is_none());
        }
        endpoints.push(first);
    }
    endpoints.sort();
    endpoints.dedup();
    assert!(endpoints.len() > 1, "new clients spread over the endpoints");
}
