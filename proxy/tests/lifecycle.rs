//! Process-level behaviour: readiness, admin endpoints, graceful drain.

mod support;

use http_body_util::Full;
use hyper::Request;
use std::time::Duration;
use support::*;

#[tokio::test]
async fn drain_lets_requests_in_flight_finish_then_stops_accepting() {
    let (app, _t, seen) = start_recording_echo_app().await;
    let mut mesh = Mesh::start(app.port()).await;
    let outbound = mesh.outbound();
    let mut c = h1_client(outbound).await;
    let in_flight = tokio::spawn(async move {
        let rsp = c.send_request(get("/slow/700")).await.unwrap();
        (rsp.status(), body_string(rsp).await)
    });
    // The drain must start while the request is in flight: wait until it is at the app.
    eventually("the slow request at the app", || async {
        seen.lock().unwrap().iter().any(|r| r == "GET /slow/700")
    })
    .await;
    let mut health = h1_client(mesh.a.health).await;
    assert_eq!(
        health
            .send_request(get("/healthz/ready"))
            .await
            .unwrap()
            .status(),
        200
    );
    assert!(
        !in_flight.is_finished(),
        "the request must still be in flight when the drain starts"
    );
    let stopped = mesh.a.stop();
    let result = tokio::time::timeout(Duration::from_secs(10), stopped).await;
    let (status, body) = in_flight.await.unwrap();
    assert_eq!(
        status, 200,
        "the request in flight completes during the drain"
    );
    assert_eq!(body, "slow done");
    result
        .expect("drain finishes once the request is done")
        .unwrap()
        .unwrap();
    assert!(
        tokio::net::TcpStream::connect(outbound).await.is_err(),
        "no longer accepting"
    );
}

#[tokio::test]
async fn admin_endpoints_report_config_readiness_and_take_shutdown() {
    let (app, _t) = start_echo_app().await;
    let mut mesh = Mesh::start(app.port()).await;
    let mut admin = h1_client(mesh.a.admin).await;
    let rsp = admin.send_request(get("/config_dump")).await.unwrap();
    assert_eq!(rsp.status(), 200);
    let dump: serde_json::Value = serde_json::from_str(&body_string(rsp).await).unwrap();
    assert_eq!(dump["tls"]["identity"], CLIENT_ID);
    assert!(dump["tls"]["certificateNotAfterUnix"].as_u64().unwrap() > 0);
    assert_eq!(
        dump["config"]["services"][0]["name"],
        "server.default.svc.cluster.local"
    );
    let mut health = h1_client(mesh.a.health).await;
    assert_eq!(
        health
            .send_request(get("/healthz/ready"))
            .await
            .unwrap()
            .status(),
        200
    );
    let rsp = admin
        .send_request(
            Request::post("/logging?level=debug")
                .header("host", "a")
                .body(Full::default())
                .unwrap(),
        )
        .await
        .unwrap();
    // Tests run without a reloadable subscriber: the endpoint says so instead of pretending.
    assert_eq!(rsp.status(), 501);
    let rsp = admin
        .send_request(
            Request::post("/shutdown")
                .header("host", "a")
                .body(Full::default())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(rsp.status(), 200);
    tokio::time::timeout(Duration::from_secs(10), mesh.a.stop())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
