use serde_json::json;

use super::*;
use crate::ca::TrustBundle;
use crate::cluster::mock::{self, ApiServer};

const MESH: &str = "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n";

fn path(namespace: &str) -> String {
    format!("/api/v1/namespaces/{namespace}/configmaps/{ROOT_CERT_CONFIG_MAP}")
}

const WEBHOOK_PATH: &str =
    "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/sinew-validator";
const INJECTOR_PATH: &str =
    "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/sinew-injector";

/// Answers both webhook configurations' reads: not installed.
async fn no_webhook_configuration(api: &mut ApiServer) {
    for path in [WEBHOOK_PATH, INJECTOR_PATH] {
        let get = api.next().await;
        assert_eq!(get.line(), format!("GET {path}"));
        get.fail(404, "NotFound");
    }
}

/// The chart's sinew-injector configuration, with these webhooks' bundles.
fn injector_configuration(bundles: &[Option<&str>]) -> serde_json::Value {
    let mut config = webhook_configuration(bundles);
    config["kind"] = json!("MutatingWebhookConfiguration");
    config["metadata"] = json!({"name": "sinew-injector", "resourceVersion": "77"});
    for webhook in config["webhooks"].as_array_mut().unwrap() {
        webhook["clientConfig"]["service"]["path"] = json!("/inject");
        webhook["reinvocationPolicy"] = json!("Never");
    }
    config
}

fn webhook_configuration(bundles: &[Option<&str>]) -> serde_json::Value {
    use base64::Engine as _;
    let webhooks: Vec<serde_json::Value> = bundles
        .iter()
        .enumerate()
        .map(|(i, bundle)| {
            let mut client = json!({"service": {"name": "sinew-control-plane", "namespace": "sinew-system", "path": "/validate"}});
            if let Some(pem) = bundle {
                client["caBundle"] = json!(base64::engine::general_purpose::STANDARD.encode(pem));
            }
            json!({"name": format!("w{i}.sinew.dev"), "clientConfig": client,
                   "sideEffects": "None", "admissionReviewVersions": ["v1"]})
        })
        .collect();
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "sinew-validator", "resourceVersion": "42"},
        "webhooks": webhooks,
    })
}

fn config_map(namespace: &str, pem: &str) -> serde_json::Value {
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": ROOT_CERT_CONFIG_MAP, "namespace": namespace, "resourceVersion": "7"},
        "data": {ROOT_CERT_KEY: pem},
    })
}

struct Running {
    api: ApiServer,
    bundle: watch::Sender<Arc<TrustBundle>>,
    leader: watch::Sender<bool>,
    _snapshots: watch::Sender<Arc<Snapshot>>,
}

fn start(leading: bool) -> Running {
    let (client, api) = mock::client();
    let snapshot = Snapshot::from_yaml("mesh.yaml", MESH).unwrap();
    let (snapshots_tx, snapshots) = watch::channel(Arc::new(snapshot));
    let (bundle_tx, bundle) =
        watch::channel(Arc::new(TrustBundle::from(vec!["ROOT-A".to_string()])));
    let (leader_tx, leader) = watch::channel(leading);
    tokio::spawn(publish(client, snapshots, bundle, leader));
    Running {
        api,
        bundle: bundle_tx,
        leader: leader_tx,
        _snapshots: snapshots_tx,
    }
}

#[tokio::test]
async fn the_leader_creates_missing_config_maps_in_every_namespace() {
    let mut r = start(true);
    for namespace in ["default", "shop"] {
        let get = r.api.next().await;
        assert_eq!(get.line(), format!("GET {}", path(namespace)));
        get.fail(404, "NotFound");
        let post = r.api.next().await;
        assert_eq!(
            post.line(),
            format!("POST /api/v1/namespaces/{namespace}/configmaps?")
        );
        assert_eq!(post.body["metadata"]["name"], ROOT_CERT_CONFIG_MAP);
        assert_eq!(post.body["data"][ROOT_CERT_KEY], "ROOT-A");
        post.respond(201, config_map(namespace, "ROOT-A"));
    }
}

#[tokio::test]
async fn a_follower_writes_nothing_until_it_leads() {
    let mut r = start(false);
    r.leader.send(true).unwrap();
    // The first request the mock sees is the new leader's: nothing was sent before.
    let get = r.api.next().await;
    assert_eq!(get.line(), format!("GET {}", path("default")));
}

#[tokio::test]
async fn a_current_config_map_is_left_alone_and_a_stale_one_patched() {
    let mut r = start(true);
    // default: already right; shop: an old bundle.
    r.api
        .next()
        .await
        .respond(200, config_map("default", "ROOT-A"));
    let get = r.api.next().await;
    assert_eq!(
        get.line(),
        format!("GET {}", path("shop")),
        "no write for default"
    );
    get.respond(200, config_map("shop", "ROOT-OLD"));
    let patch = r.api.next().await;
    assert_eq!(patch.line(), format!("PATCH {}?", path("shop")));
    assert_eq!(
        patch.content_type.as_deref(),
        Some("application/merge-patch+json")
    );
    assert_eq!(patch.body, json!({"data": {ROOT_CERT_KEY: "ROOT-A"}}));
    patch.respond(200, config_map("shop", "ROOT-A"));
    no_webhook_configuration(&mut r.api).await;

    // A new root (rotation): both are written again, and only they.
    r.bundle
        .send(Arc::new(TrustBundle::from(vec![
            "ROOT-A".into(),
            "ROOT-B".into(),
        ])))
        .unwrap();
    for namespace in ["default", "shop"] {
        r.api
            .next()
            .await
            .respond(200, config_map(namespace, "ROOT-A"));
        let patch = r.api.next().await;
        assert_eq!(patch.line(), format!("PATCH {}?", path(namespace)));
        assert_eq!(patch.body["data"][ROOT_CERT_KEY], "ROOT-A\nROOT-B");
        patch.respond(200, config_map(namespace, "ROOT-A\nROOT-B"));
    }
}

#[tokio::test]
async fn a_failed_write_is_retried_at_the_next_change() {
    let mut r = start(true);
    r.api.next().await.fail(503, "ServiceUnavailable");
    r.api
        .next()
        .await
        .respond(200, config_map("shop", "ROOT-A"));
    no_webhook_configuration(&mut r.api).await;
    // Leadership flaps: the failed namespace is tried again (and the good one re-checked).
    r.leader.send(false).unwrap();
    r.leader.send(true).unwrap();
    let get = r.api.next().await;
    assert_eq!(get.line(), format!("GET {}", path("default")));
}

#[tokio::test]
async fn the_webhook_ca_bundle_is_patched_only_where_it_differs() {
    use base64::Engine as _;
    let mut r = start(true);
    for namespace in ["default", "shop"] {
        r.api
            .next()
            .await
            .respond(200, config_map(namespace, "ROOT-A"));
    }
    // One webhook already right, one reset by an upgrade: the whole list goes back, at the
    // version it was read, with both bundles right.
    let get = r.api.next().await;
    assert_eq!(get.line(), format!("GET {WEBHOOK_PATH}"));
    get.respond(200, webhook_configuration(&[Some("ROOT-A"), None]));
    let patch = r.api.next().await;
    assert_eq!(patch.line(), format!("PATCH {WEBHOOK_PATH}?"));
    assert_eq!(patch.body["metadata"]["resourceVersion"], "42");
    let encoded = base64::engine::general_purpose::STANDARD.encode("ROOT-A");
    let bundles: Vec<&serde_json::Value> = patch.body["webhooks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| &w["clientConfig"]["caBundle"])
        .collect();
    assert_eq!(bundles, [&json!(encoded), &json!(encoded)]);
    assert_eq!(
        patch.body["webhooks"][1]["clientConfig"]["service"]["path"],
        "/validate"
    );
    patch.respond(
        200,
        webhook_configuration(&[Some("ROOT-A"), Some("ROOT-A")]),
    );
    // The injector's configuration the same way, its own kind and path.
    let get = r.api.next().await;
    assert_eq!(get.line(), format!("GET {INJECTOR_PATH}"));
    get.respond(200, injector_configuration(&[None]));
    let patch = r.api.next().await;
    assert_eq!(patch.line(), format!("PATCH {INJECTOR_PATH}?"));
    assert_eq!(patch.body["metadata"]["resourceVersion"], "77");
    assert_eq!(
        patch.body["webhooks"][0]["clientConfig"]["caBundle"],
        json!(encoded)
    );
    assert_eq!(
        patch.body["webhooks"][0]["clientConfig"]["service"]["path"],
        "/inject"
    );
    assert_eq!(patch.body["webhooks"][0]["reinvocationPolicy"], "Never");
    patch.respond(200, injector_configuration(&[Some("ROOT-A")]));

    // A new bundle: ConfigMaps again, then the configurations, already right here: not
    // patched, so the next request is the next pass's (the following bundle's).
    r.bundle
        .send(Arc::new(TrustBundle::from(vec!["ROOT-B".into()])))
        .unwrap();
    for namespace in ["default", "shop"] {
        r.api
            .next()
            .await
            .respond(200, config_map(namespace, "ROOT-B"));
    }
    let get = r.api.next().await;
    assert_eq!(get.line(), format!("GET {WEBHOOK_PATH}"));
    get.respond(
        200,
        webhook_configuration(&[Some("ROOT-B"), Some("ROOT-B")]),
    );
    let get = r.api.next().await;
    assert_eq!(get.line(), format!("GET {INJECTOR_PATH}"));
    get.respond(200, injector_configuration(&[Some("ROOT-B")]));
    r.bundle
        .send(Arc::new(TrustBundle::from(vec!["ROOT-C".into()])))
        .unwrap();
    let next = r.api.next().await;
    assert_eq!(
        next.line(),
        format!("GET {}", path("default")),
        "no PATCH before it"
    );
}

#[tokio::test]
async fn a_failed_injector_patch_is_retried_at_the_next_pass_and_the_validator_left_alone() {
    let mut r = start(true);
    for namespace in ["default", "shop"] {
        r.api
            .next()
            .await
            .respond(200, config_map(namespace, "ROOT-A"));
    }
    r.api
        .next()
        .await
        .respond(200, webhook_configuration(&[Some("ROOT-A")]));
    r.api
        .next()
        .await
        .respond(200, injector_configuration(&[None]));
    let patch = r.api.next().await;
    assert_eq!(patch.line(), format!("PATCH {INJECTOR_PATH}?"));
    // Someone else wrote first (a `helm upgrade`): the next pass tries again.
    patch.fail(409, "Conflict");

    // A new namespace makes the next pass: its ConfigMap, then only the injector's
    // configuration (the validator's is known to be right).
    let more = format!("{MESH}---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: web}}\n");
    let snapshot = Snapshot::from_yaml("mesh.yaml", &more).unwrap();
    r._snapshots.send(Arc::new(snapshot)).unwrap();
    let get = r.api.next().await;
    assert_eq!(get.line(), format!("GET {}", path("web")));
    get.respond(200, config_map("web", "ROOT-A"));
    let get = r.api.next().await;
    assert_eq!(get.line(), format!("GET {INJECTOR_PATH}"));
    get.respond(200, injector_configuration(&[None]));
    let patch = r.api.next().await;
    assert_eq!(patch.line(), format!("PATCH {INJECTOR_PATH}?"));
}
