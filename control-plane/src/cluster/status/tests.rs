use std::time::Duration;

use serde_json::{Value, json};

use super::*;
use crate::cluster::mock::{self, ApiServer, Exchange};

const RULES: &str = "/apis/sinew.dev/v1alpha1/namespaces/shop/destinationrules";
const ISTIO_SERVICES: &str = "/apis/networking.istio.io/v1/namespaces/shop/virtualservices";

struct Harness {
    api: ApiServer,
    policy: watch::Sender<Arc<PolicyView>>,
    leader: watch::Sender<bool>,
    metrics: Arc<StatusMetrics>,
}

fn start(leading: bool, view: PolicyView) -> Harness {
    let (client, api) = mock::client();
    let (policy, policy_rx) = watch::channel(Arc::new(view));
    let (leader, leader_rx) = watch::channel(leading);
    let metrics = spawn(client, policy_rx, leader_rx);
    Harness {
        api,
        policy,
        leader,
        metrics,
    }
}

fn object(
    kind: CustomKind,
    version: &str,
    name: &str,
    rv: &str,
    status: Option<Value>,
) -> PolicyObject {
    let resource = kind.api_resource(version);
    let mut value = json!({
        "apiVersion": resource.api_version,
        "kind": resource.kind,
        "metadata": { "name": name, "namespace": "shop", "resourceVersion": rv, "generation": 3 },
        "spec": { "host": "web" },
    });
    if let Some(status) = status {
        value["status"] = status;
    }
    PolicyObject {
        kind,
        resource,
        object: Arc::new(serde_json::from_value(value).unwrap()),
    }
}

fn rule(name: &str, rv: &str, status: Option<Value>) -> PolicyObject {
    object(
        CustomKind::SinewDestinationRule,
        "v1alpha1",
        name,
        rv,
        status,
    )
}

fn origin(kind: CustomKind, name: &str) -> Origin {
    Origin::Object {
        kind: KindId::Custom(kind).name(),
        namespace: Some("shop".into()),
        name: name.into(),
    }
}

fn refused(name: &str, kept_previous: bool) -> Refused {
    Refused {
        origin: origin(CustomKind::SinewDestinationRule, name),
        reasons: vec!["spec.trafficPolicy.loadBalancer.simple: unknown variant `FASTEST`".into()],
        kept_previous,
    }
}

async fn expect_status_patch(api: &mut ApiServer, collection: &str, name: &str) -> Exchange {
    let ex = api.next().await;
    assert_eq!(ex.method, http::Method::PATCH, "{}", ex.line());
    assert_eq!(ex.path, format!("{collection}/{name}/status"));
    assert_eq!(
        ex.content_type.as_deref(),
        Some("application/merge-patch+json")
    );
    ex
}

/// Answers a status patch as the API server would: the object at `rv` with the patched status.
fn accept(ex: Exchange, rv: &str) -> Value {
    let status = ex.body["status"].clone();
    let name = ex.path.rsplit('/').nth(1).unwrap().to_string();
    ex.respond(
        200,
        json!({
            "apiVersion": "sinew.dev/v1alpha1", "kind": "DestinationRule",
            "metadata": { "name": name, "namespace": "shop", "resourceVersion": rv },
            "status": status,
        }),
    );
    status
}

fn condition<'a>(conditions: &'a Value, type_: &str) -> &'a Value {
    conditions
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == type_)
        .unwrap_or_else(|| panic!("no {type_} condition in {conditions}"))
}

#[tokio::test(start_paused = true)]
async fn an_invalid_rule_gets_accepted_false_with_the_reason_in_one_merge_patch() {
    let mut h = start(
        true,
        PolicyView {
            objects: vec![rule("r", "5", None)],
            refused: vec![refused("r", false)],
            warnings: vec![],
        },
    );
    let ex = expect_status_patch(&mut h.api, RULES, "r").await;
    // The copy we compared with is the precondition.
    assert_eq!(ex.body["metadata"]["resourceVersion"], "5");
    let conditions = &ex.body["status"]["conditions"];
    let accepted = condition(conditions, "Accepted");
    assert_eq!(accepted["status"], "False");
    assert_eq!(accepted["reason"], "Invalid");
    assert!(
        accepted["message"]
            .as_str()
            .unwrap()
            .contains("spec.trafficPolicy.loadBalancer.simple"),
        "{accepted}"
    );
    assert_eq!(accepted["observedGeneration"], 3);
    assert!(accepted["lastTransitionTime"].is_string(), "{accepted}");
    // Nothing of a refused rule without an earlier version is in force: no other condition.
    assert_eq!(conditions.as_array().unwrap().len(), 1, "{conditions}");
    accept(ex, "6");
}

#[tokio::test(start_paused = true)]
async fn the_echo_of_our_own_write_causes_no_second_write() {
    let mut h = start(
        true,
        PolicyView {
            objects: vec![rule("r", "5", None)],
            refused: vec![refused("r", false)],
            warnings: vec![],
        },
    );
    let ex = expect_status_patch(&mut h.api, RULES, "r").await;
    let written = accept(ex, "6");

    // A batch that arrives before the echo still shows the old copy: no second write either.
    h.policy.send_replace(Arc::new(PolicyView {
        objects: vec![rule("r", "5", None), rule("first", "7", None)],
        refused: vec![refused("r", false)],
        warnings: vec![],
    }));
    // The next request is for the other rule, so none was sent for "r".
    accept(expect_status_patch(&mut h.api, RULES, "first").await, "8");

    // The echo: "r" at the version our write made, with what we wrote.
    h.policy.send_replace(Arc::new(PolicyView {
        objects: vec![
            rule("r", "6", Some(written)),
            rule("first", "7", None),
            rule("second", "9", None),
        ],
        refused: vec![refused("r", false)],
        warnings: vec![],
    }));
    accept(expect_status_patch(&mut h.api, RULES, "second").await, "10");
}

#[tokio::test(start_paused = true)]
async fn an_object_that_already_says_what_we_want_is_not_patched_and_a_change_is() {
    let mut h = start(
        true,
        PolicyView {
            objects: vec![rule("r", "5", None)],
            refused: vec![],
            warnings: vec![],
        },
    );
    let status = accept(expect_status_patch(&mut h.api, RULES, "r").await, "6");
    let accepted = condition(&status["conditions"], "Accepted").clone();
    assert_eq!(accepted["status"], "True");
    assert_eq!(
        condition(&status["conditions"], "Conflicted")["status"],
        "False"
    );

    // The echo (at a version we never wrote from) says exactly this: compared with the store's
    // copy, nothing to do.
    h.policy.send_replace(Arc::new(PolicyView {
        objects: vec![
            rule("r", "6", Some(status.clone())),
            rule("marker", "1", None),
        ],
        refused: vec![],
        warnings: vec![],
    }));
    accept(expect_status_patch(&mut h.api, RULES, "marker").await, "2");

    // The spec becomes invalid (a new version): exactly one patch, with Accepted=False, and the
    // transition time moves (the status changed).
    tokio::time::advance(Duration::from_secs(5)).await;
    h.policy.send_replace(Arc::new(PolicyView {
        objects: vec![rule("r", "7", Some(status))],
        refused: vec![refused("r", true)],
        warnings: vec![],
    }));
    let ex = expect_status_patch(&mut h.api, RULES, "r").await;
    assert_eq!(ex.body["metadata"]["resourceVersion"], "7");
    let now = condition(&ex.body["status"]["conditions"], "Accepted").clone();
    assert_eq!(now["status"], "False");
    assert!(
        now["message"]
            .as_str()
            .unwrap()
            .ends_with("the last accepted version stays in force"),
        "{now}"
    );
    // Still in force: the other conditions are still reported.
    let _ = condition(&ex.body["status"]["conditions"], "Conflicted");
    assert_ne!(now["lastTransitionTime"], accepted["lastTransitionTime"]);
    accept(ex, "8");
}

#[tokio::test(start_paused = true)]
async fn a_follower_writes_nothing_until_it_leads() {
    let mut h = start(
        false,
        PolicyView {
            objects: vec![rule("r", "5", None)],
            refused: vec![refused("r", false)],
            warnings: vec![],
        },
    );
    // With the clock paused, it only advances once every task is idle: the writer has done
    // all it would as a follower.
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(!h.api.has_pending(), "a follower sent a request");

    h.leader.send_replace(true);
    accept(expect_status_patch(&mut h.api, RULES, "r").await, "6");

    // Stepping down stops the writes for later changes too.
    h.leader.send_replace(false);
    h.policy.send_replace(Arc::new(PolicyView {
        objects: vec![rule("r", "6", None), rule("other", "1", None)],
        refused: vec![],
        warnings: vec![],
    }));
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(!h.api.has_pending(), "a replica that stepped down wrote");
}

#[tokio::test(start_paused = true)]
async fn other_writers_conditions_are_kept_in_place() {
    let reconciled = json!({
        "type": "Reconciled", "status": "True", "reason": "Synced",
        "message": "istiod", "lastTransitionTime": "2026-01-01T00:00:00Z",
    });
    let stale_ours = json!({
        "type": "Accepted", "status": "False", "reason": "Invalid", "message": "old",
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    });
    let mut h = start(
        true,
        PolicyView {
            objects: vec![rule(
                "r",
                "5",
                Some(json!({ "conditions": [reconciled, stale_ours], "validationMessages": [] })),
            )],
            refused: vec![],
            warnings: vec![],
        },
    );
    let ex = expect_status_patch(&mut h.api, RULES, "r").await;
    let conditions = ex.body["status"]["conditions"].as_array().unwrap().clone();
    assert_eq!(conditions[0], reconciled, "theirs first, untouched");
    assert_eq!(conditions[1]["type"], "Accepted", "ours replaced in place");
    assert_eq!(conditions[1]["status"], "True");
    assert_eq!(conditions[2]["type"], "Conflicted");
    // The merge patch touches only conditions: other status fields stay the API server's.
    assert_eq!(
        ex.body["status"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["conditions"]
    );
    ex.respond(200, json!({}));
}

#[tokio::test(start_paused = true)]
async fn a_route_to_an_undefined_subset_is_reported_on_that_virtual_service() {
    let kind = CustomKind::IstioVirtualService;
    let vs_origin = origin(kind, "reviews");
    let message = format!(
        "{vs_origin}: VirtualService \"reviews\": spec.http[0].route[0].destination: subset \"v3\" of host \"reviews.shop.svc.cluster.local\" is not defined"
    );
    let mut h = start(
        true,
        PolicyView {
            objects: vec![object(kind, "v1", "reviews", "5", None)],
            refused: vec![],
            warnings: vec![ObjectWarning {
                origin: vs_origin,
                kind: WarningKind::SubsetNotFound,
                message,
            }],
        },
    );
    let ex = expect_status_patch(&mut h.api, ISTIO_SERVICES, "reviews").await;
    let conditions = &ex.body["status"]["conditions"];
    assert_eq!(condition(conditions, "Accepted")["status"], "True");
    let refs = condition(conditions, "ResolvedRefs");
    assert_eq!(refs["status"], "False");
    assert_eq!(refs["reason"], "SubsetNotFound");
    let text = refs["message"].as_str().unwrap();
    assert!(
        text.starts_with("VirtualService \"reviews\": spec.http[0]"),
        "{text}"
    );
    assert!(text.contains("subset \"v3\""), "{text}");
    ex.respond(200, json!({}));
}

#[tokio::test(start_paused = true)]
async fn a_stale_copy_is_written_again_only_at_its_next_version() {
    let mut h = start(
        true,
        PolicyView {
            objects: vec![rule("r", "5", None)],
            refused: vec![refused("r", false)],
            warnings: vec![],
        },
    );
    expect_status_patch(&mut h.api, RULES, "r")
        .await
        .fail(409, "Conflict");
    // The same copy again (an unrelated batch): not retried; the marker's patch comes first.
    h.policy.send_replace(Arc::new(PolicyView {
        objects: vec![rule("r", "5", None), rule("marker", "1", None)],
        refused: vec![refused("r", false)],
        warnings: vec![],
    }));
    accept(expect_status_patch(&mut h.api, RULES, "marker").await, "2");
    // The watch brings the newer version: written, with it as the precondition.
    h.policy.send_replace(Arc::new(PolicyView {
        objects: vec![rule("r", "9", None)],
        refused: vec![refused("r", false)],
        warnings: vec![],
    }));
    let ex = expect_status_patch(&mut h.api, RULES, "r").await;
    assert_eq!(ex.body["metadata"]["resourceVersion"], "9");
    accept(ex, "10");
    // The marker's write is counted; wait for the last one's to be.
    while h.metrics.patches.load(Ordering::Relaxed) < 2 {
        tokio::task::yield_now().await;
    }
    assert_eq!(h.metrics.failures.load(Ordering::Relaxed), 1);
    let mut text = String::new();
    h.metrics.render(&mut text);
    assert!(text.contains("sinew_cp_status_patches_total 2"), "{text}");
    assert!(
        text.contains("sinew_cp_status_patch_failures_total 1"),
        "{text}"
    );
}

#[test]
fn the_transition_time_moves_only_when_the_status_does() {
    let earlier = "2026-01-01T00:00:00Z";
    let current = vec![json!({
        "type": "Accepted", "status": "True", "reason": "Accepted", "message": "",
        "lastTransitionTime": earlier, "observedGeneration": 2,
    })];
    let accepted = Wanted {
        type_: ACCEPTED,
        status: "True",
        reason: "Accepted",
        message: String::new(),
    };
    let now = jiff::Timestamp::from_second(1_800_000_000).unwrap();
    // Same status, same generation: nothing to write.
    assert_eq!(
        desired_conditions(&current, std::slice::from_ref(&accepted), Some(2), now),
        None
    );
    // A new generation with the same status: written, the transition time kept.
    let next = desired_conditions(&current, std::slice::from_ref(&accepted), Some(3), now).unwrap();
    assert_eq!(next[0]["lastTransitionTime"], earlier);
    assert_eq!(next[0]["observedGeneration"], 3);
    // A status change: the transition time is now.
    let refused = Wanted {
        status: "False",
        reason: "Invalid",
        ..accepted
    };
    let next = desired_conditions(&current, &[refused], Some(3), now).unwrap();
    assert_eq!(next[0]["lastTransitionTime"], now.to_string());
}
