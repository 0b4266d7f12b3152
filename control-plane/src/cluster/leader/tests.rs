use serde_json::{Value, json};
use tokio::time::Instant;

use super::*;
use crate::cluster::mock::{self, ApiServer, Exchange};

const LEASE_PATH: &str =
    "/apis/coordination.k8s.io/v1/namespaces/sinew-system/leases/sinew-control-plane-leader";
const LEASES_PATH: &str = "/apis/coordination.k8s.io/v1/namespaces/sinew-system/leases";

fn start(identity: &str) -> (watch::Receiver<bool>, ApiServer) {
    let (client, api) = mock::client();
    let rx = spawn(client, LeaseConfig::new("sinew-system", identity)).unwrap();
    (rx, api)
}

fn lease(holder: &str, rv: &str, renew_time: &str, transitions: i32) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": { "name": "sinew-control-plane-leader", "namespace": "sinew-system", "resourceVersion": rv },
        "spec": { "holderIdentity": holder, "leaseDurationSeconds": 30, "renewTime": renew_time,
                  "acquireTime": "2026-01-01T00:00:00.000000Z", "leaseTransitions": transitions },
    })
}

async fn expect_get(api: &mut ApiServer) -> Exchange {
    let ex = api.next().await;
    assert_eq!(ex.method, http::Method::GET, "{}", ex.line());
    assert_eq!(ex.path, LEASE_PATH);
    ex
}

async fn expect_patch(api: &mut ApiServer) -> Exchange {
    let ex = api.next().await;
    assert_eq!(ex.method, http::Method::PATCH, "{}", ex.line());
    assert_eq!(ex.path, LEASE_PATH);
    assert_eq!(
        ex.content_type.as_deref(),
        Some("application/merge-patch+json")
    );
    ex
}

/// GET 404 → POST → leader; answers the POST with the created lease at `rv` "1".
async fn acquire_by_create(api: &mut ApiServer, rx: &mut watch::Receiver<bool>) {
    expect_get(api).await.fail(404, "NotFound");
    let ex = api.next().await;
    assert_eq!(ex.line(), format!("POST {LEASES_PATH}?"));
    assert_eq!(ex.body["metadata"]["name"], "sinew-control-plane-leader");
    assert_eq!(ex.body["spec"]["holderIdentity"], "replica-a");
    assert_eq!(ex.body["spec"]["leaseDurationSeconds"], 30);
    assert_eq!(ex.body["spec"]["leaseTransitions"], 0);
    assert!(ex.body["spec"]["renewTime"].is_string(), "{}", ex.body);
    ex.respond(
        201,
        lease("replica-a", "1", "2026-12-01T00:00:00.000000Z", 0),
    );
    rx.wait_for(|leading| *leading).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn an_absent_lease_is_created_and_makes_us_leader() {
    let (mut rx, mut api) = start("replica-a");
    assert!(!*rx.borrow(), "not leader before any write succeeded");
    acquire_by_create(&mut api, &mut rx).await;
}

#[tokio::test(start_paused = true)]
async fn the_leader_renews_every_retry_period_with_the_read_version_as_precondition() {
    let (mut rx, mut api) = start("replica-a");
    acquire_by_create(&mut api, &mut rx).await;
    let acquired = Instant::now();

    for (round, rv) in [(1u32, "1"), (2, "2")] {
        let get = expect_get(&mut api).await;
        assert_eq!(Instant::now() - acquired, DEFAULT_RETRY_PERIOD * round);
        get.respond(
            200,
            lease("replica-a", rv, "2026-12-01T00:00:00.000000Z", 0),
        );
        let patch = expect_patch(&mut api).await;
        assert_eq!(patch.body["metadata"]["resourceVersion"], rv);
        assert_eq!(patch.body["spec"]["holderIdentity"], "replica-a");
        assert!(
            patch.body["spec"]["renewTime"].is_string(),
            "{}",
            patch.body
        );
        // A renewal is not a transition.
        assert!(
            patch.body["spec"].get("leaseTransitions").is_none(),
            "{}",
            patch.body
        );
        let next_rv = (rv.parse::<u32>().unwrap() + 1).to_string();
        patch.respond(
            200,
            lease("replica-a", &next_rv, "2026-12-01T00:00:10.000000Z", 0),
        );
    }
    // The next round's GET arrives only after the renewal was processed.
    let _ = expect_get(&mut api).await;
    assert!(*rx.borrow(), "still leader after renewing");
}

#[tokio::test(start_paused = true)]
async fn a_conflicting_renewal_loses_leadership_at_once() {
    let (mut rx, mut api) = start("replica-a");
    acquire_by_create(&mut api, &mut rx).await;

    expect_get(&mut api).await.respond(
        200,
        lease("replica-a", "1", "2026-12-01T00:00:00.000000Z", 0),
    );
    let lost_at = Instant::now();
    expect_patch(&mut api).await.fail(409, "Conflict");
    rx.wait_for(|leading| !*leading).await.unwrap();
    assert_eq!(
        Instant::now(),
        lost_at,
        "stepped down without waiting for anything"
    );
}

#[tokio::test(start_paused = true)]
async fn a_lost_create_race_is_not_leadership() {
    let (rx, mut api) = start("replica-b");
    expect_get(&mut api).await.fail(404, "NotFound");
    let post = api.next().await;
    assert_eq!(post.method, http::Method::POST);
    // kmock's reason for a duplicate create; only the code matters.
    post.fail(409, "Object Already Exists");
    // The next round reads the winner's lease and does not write.
    expect_get(&mut api).await.respond(
        200,
        lease("replica-a", "1", "2026-12-01T00:00:00.000000Z", 0),
    );
    let _ = expect_get(&mut api).await;
    assert!(!*rx.borrow());
}

#[tokio::test(start_paused = true)]
async fn a_lease_that_keeps_being_renewed_is_never_taken_over() {
    let (rx, mut api) = start("replica-b");
    let start = Instant::now();
    // Six rounds = 60 s, twice the lease duration: every answer shows a fresh renewal, so every
    // request must be a GET (expect_get fails on a PATCH).
    for rv in 1..=6 {
        let renew = format!("2026-12-01T00:00:{:02}.000000Z", rv * 10);
        expect_get(&mut api)
            .await
            .respond(200, lease("replica-a", &rv.to_string(), &renew, 0));
    }
    let _ = expect_get(&mut api).await;
    assert_eq!(Instant::now() - start, DEFAULT_RETRY_PERIOD * 6);
    assert!(!*rx.borrow());
}

#[tokio::test(start_paused = true)]
async fn a_stale_lease_is_taken_over_after_its_duration_by_our_clock() {
    let (mut rx, mut api) = start("replica-b");
    // The holder's renewTime is years old by any clock; we still wait a full lease duration of
    // our own time with the record unchanged before taking over (its clock may be wrong).
    let stale = lease("replica-a", "7", "2020-01-01T00:00:00.000000Z", 3);
    let first_seen = Instant::now();
    for _ in 0..3 {
        expect_get(&mut api).await.respond(200, stale.clone());
    }
    // 30 s after first seeing it: take over.
    expect_get(&mut api).await.respond(200, stale.clone());
    assert_eq!(Instant::now() - first_seen, DEFAULT_LEASE_DURATION);
    let patch = expect_patch(&mut api).await;
    assert_eq!(patch.body["metadata"]["resourceVersion"], "7");
    assert_eq!(patch.body["spec"]["holderIdentity"], "replica-b");
    assert_eq!(patch.body["spec"]["leaseTransitions"], 4);
    assert!(
        patch.body["spec"]["acquireTime"].is_string(),
        "{}",
        patch.body
    );
    patch.respond(
        200,
        lease("replica-b", "8", "2026-12-01T00:00:00.000000Z", 4),
    );
    rx.wait_for(|leading| *leading).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_take_over_that_loses_the_race_stays_follower() {
    let (rx, mut api) = start("replica-b");
    let stale = lease("replica-a", "7", "2020-01-01T00:00:00.000000Z", 3);
    for _ in 0..4 {
        expect_get(&mut api).await.respond(200, stale.clone());
    }
    // replica-c wrote first: our precondition fails.
    expect_patch(&mut api).await.fail(409, "Conflict");
    let _ = expect_get(&mut api).await;
    assert!(!*rx.borrow());
}

#[tokio::test(start_paused = true)]
async fn a_leader_that_cannot_renew_steps_down_before_the_lease_expires() {
    let (mut rx, mut api) = start("replica-a");
    acquire_by_create(&mut api, &mut rx).await;
    let renewed = Instant::now();

    // The API server goes away: the first failure (10 s after the renewal) keeps us leading...
    expect_get(&mut api).await.fail(503, "ServiceUnavailable");
    let second = expect_get(&mut api).await;
    assert!(*rx.borrow(), "one failed renewal ended leadership");
    second.fail(503, "ServiceUnavailable");
    // ...the second (20 s: the renew deadline) does not, well before another replica could take
    // over (30 s after it last saw our renewal).
    rx.wait_for(|leading| !*leading).await.unwrap();
    let stepped_down = Instant::now() - renewed;
    assert_eq!(stepped_down, DEFAULT_RENEW_DEADLINE);
    assert!(stepped_down < DEFAULT_LEASE_DURATION);
}

#[test]
fn configs_that_could_elect_two_leaders_are_refused() {
    let mut c = LeaseConfig::new("sinew-system", "a");
    assert!(c.validate().is_ok());
    c.renew_deadline = c.lease_duration;
    assert!(c.validate().is_err());
    let mut c = LeaseConfig::new("sinew-system", "a");
    c.retry_period = c.renew_deadline;
    assert!(c.validate().is_err());
    assert!(LeaseConfig::new("sinew-system", "").validate().is_err());
}
