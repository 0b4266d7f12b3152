//! The layer under tower-test: what reaches the app, what is refused, and policies pushed
//! between two requests of one connection.

use super::*;
use crate::config::Config;
use crate::metrics::Metrics;
use http::StatusCode;
use sinew_proto::config::v1 as pb;
use tower::ServiceExt;

const ORDERS: &str = "spiffe://cluster.local/ns/shop/sa/orders";

fn config(yaml: &str) -> Arc<Config> {
    let msg: pb::ProxyConfig = serde_saphyr::from_str(yaml).expect("test yaml");
    Arc::new(Config::from_proto(msg).expect("valid"))
}

/// GET /orders/* from the orders service account only; nothing under /admin, from anyone.
const POLICIES: &str = r#"
authorization:
  policies:
    - name: shop/orders-read
      action: ALLOW
      rules:
        - from: [{principals: ["cluster.local/ns/shop/sa/orders"]}]
          to: [{methods: [GET], paths: ["/orders/*"]}]
    - name: shop/no-admin
      action: DENY
      rules:
        - to: [{paths: ["/admin", "/admin/*"]}]
"#;

type Handle = tower_test::mock::Handle<Request<()>, Response<Body>>;

fn layer(
    ctx: &Arc<Ctx>,
    identity: Option<&str>,
) -> (
    Authorize<impl tower::Service<Request<()>, Response = Response<Body>, Error = ProxyError>>,
    Handle,
) {
    let (mock, handle) = tower_test::mock::pair::<Request<()>, Response<Body>>();
    let inner = mock.map_err(|e| match e.downcast::<ProxyError>() {
        Ok(e) => *e,
        Err(_) => ProxyError::NoTargetPort,
    });
    let source = Source::new(identity, "198.18.0.2".parse().unwrap(), None);
    let svc = Authorize::new(inner, ctx.clone(), source, identity.is_some(), Some(8080));
    (svc, handle)
}

fn ctx(yaml: &str) -> Arc<Ctx> {
    Arc::new(Ctx::new(
        config(yaml),
        crate::tls::Store::empty(),
        Arc::new(Metrics::new()),
    ))
}

fn get(uri: &str) -> Request<()> {
    Request::get(uri).body(()).unwrap()
}

/// Sends `req`; the request the app received, or the status of the proxy's own answer.
async fn send_full<S>(
    svc: &mut S,
    handle: &mut Handle,
    req: Request<()>,
) -> Result<Request<()>, StatusCode>
where
    S: tower::Service<Request<()>, Response = Response<Body>, Error = ProxyError>,
{
    svc.ready().await.expect("ready");
    let fut = svc.call(req);
    tokio::pin!(fut);
    tokio::select! {
        biased;
        res = &mut fut => match res {
            Ok(_) => unreachable!("the mock answers only after the request is taken"),
            Err(e) => Err(e.status_and_flag().0),
        },
        Some((req, respond)) = handle.next_request() => {
            respond.send_response(Response::new(crate::http::empty_body()));
            fut.await.expect("answered");
            Ok(req)
        }
    }
}

/// Sends `req`; the path the app received, or the status of the proxy's own answer.
async fn send<S>(svc: &mut S, handle: &mut Handle, req: Request<()>) -> Result<String, StatusCode>
where
    S: tower::Service<Request<()>, Response = Response<Body>, Error = ProxyError>,
{
    let seen = send_full(svc, handle, req).await?;
    Ok(seen.uri().path_and_query().unwrap().to_string())
}

#[tokio::test]
async fn the_app_receives_the_path_the_policy_saw() {
    let ctx = ctx(POLICIES);
    let (mut svc, mut handle) = layer(&ctx, Some(ORDERS));
    assert_eq!(
        send(&mut svc, &mut handle, get("/orders/./1//items?x=%2F")).await,
        Ok("/orders/1/items?x=%2F".into()),
        "normalised path, query as sent"
    );
    assert_eq!(
        send(&mut svc, &mut handle, get("/orders/%2e%2e/admin")).await,
        Err(StatusCode::FORBIDDEN),
        "/orders/%2e%2e/admin is /admin"
    );
    assert_eq!(
        send(&mut svc, &mut handle, get("/orders%2F..%2Fadmin")).await,
        Err(StatusCode::FORBIDDEN)
    );
    assert_eq!(
        send(&mut svc, &mut handle, get("/orders/%zz")).await,
        Err(StatusCode::BAD_REQUEST)
    );
}

#[tokio::test]
async fn another_caller_and_a_plaintext_caller_are_refused() {
    let ctx = ctx(POLICIES);
    let (mut billing, mut h1) = layer(&ctx, Some("spiffe://cluster.local/ns/shop/sa/billing"));
    assert_eq!(
        send(&mut billing, &mut h1, get("/orders/1")).await,
        Err(StatusCode::FORBIDDEN)
    );
    let (mut plain, mut h2) = layer(&ctx, None);
    assert_eq!(
        send(&mut plain, &mut h2, get("/orders/1")).await,
        Err(StatusCode::FORBIDDEN)
    );
    let denied = ctx.metrics.encode();
    assert!(
        denied.contains(
            r#"sinew_authz_decisions_total{policy="none",rule="",decision="denied",dry_run="false"} 2"#
        ),
        "{denied}"
    );
}

#[tokio::test]
async fn a_policy_pushed_between_two_requests_applies_to_the_second() {
    let ctx = ctx("{}");
    let (mut svc, mut handle) = layer(&ctx, Some(ORDERS));
    // No policy: the path is left exactly as sent.
    assert_eq!(
        send(&mut svc, &mut handle, get("/admin//x")).await,
        Ok("/admin//x".into())
    );
    ctx.set_config(config(POLICIES));
    assert_eq!(
        send(&mut svc, &mut handle, get("/admin//x")).await,
        Err(StatusCode::FORBIDDEN)
    );
    ctx.set_config(config("{}"));
    assert_eq!(
        send(&mut svc, &mut handle, get("/admin/x")).await,
        Ok("/admin/x".into())
    );
}

#[tokio::test]
async fn a_mesh_request_is_checked_against_the_port_it_names() {
    let ctx = ctx(r#"
authorization:
  policies:
    - name: shop/only-9090
      rules: [{to: [{ports: ["9090"]}]}]
"#);
    let (mut svc, mut handle) = layer(&ctx, Some(ORDERS));
    let mut req = get("/");
    req.headers_mut().insert(
        &crate::http::DST_PORT,
        http::HeaderValue::from_static("9090"),
    );
    assert!(send(&mut svc, &mut handle, req).await.is_ok());
    // No port header: the connection's default (8080).
    assert_eq!(
        send(&mut svc, &mut handle, get("/")).await,
        Err(StatusCode::FORBIDDEN)
    );
}

/// `GET http://public/ HTTP/1.1` with `Host: admin`: matched and served as `public`.
#[tokio::test]
async fn a_host_header_that_contradicts_the_uri_is_replaced_by_the_uris_authority() {
    let ctx = ctx(r#"
authorization:
  policies:
    - name: shop/no-admin-host
      action: DENY
      rules: [{to: [{hosts: ["admin*"]}]}]
"#);
    let (mut svc, mut handle) = layer(&ctx, None);
    let mut req = get("http://public.example/x");
    req.headers_mut().insert(
        header::HOST,
        http::HeaderValue::from_static("admin.example"),
    );
    let seen = send_full(&mut svc, &mut handle, req)
        .await
        .expect("public is allowed");
    assert_eq!(seen.headers()[header::HOST], "public.example");
    let mut req = get("http://admin.example/x");
    req.headers_mut().insert(
        header::HOST,
        http::HeaderValue::from_static("public.example"),
    );
    assert_eq!(
        send_full(&mut svc, &mut handle, req).await.err(),
        Some(StatusCode::FORBIDDEN)
    );
}
