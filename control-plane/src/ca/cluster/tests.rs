use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use super::*;
use crate::ca::tests::plug_in_material;
use crate::cluster::mock::{self, ApiServer, Exchange};

const SECRETS: &str = "/api/v1/namespaces/sinew-system/secrets";

fn names() -> CaSecrets {
    CaSecrets::new("sinew-system")
}

fn secret(name: &str, data: &[(&str, &str)]) -> Value {
    let data: serde_json::Map<String, Value> = data
        .iter()
        .map(|(k, v)| (k.to_string(), json!(STANDARD.encode(v))))
        .collect();
    json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": { "name": name, "namespace": "sinew-system", "resourceVersion": "5" },
        "data": data,
    })
}

async fn expect_get(api: &mut ApiServer, name: &str) -> Exchange {
    let ex = api.next().await;
    assert_eq!(ex.line(), format!("GET {SECRETS}/{name}"));
    ex
}

fn start(
    api_client: kube::Client,
) -> tokio::task::JoinHandle<Result<(Ca, CaSource), CaSecretError>> {
    tokio::spawn(async move { load_ca(api_client, &names(), CaConfig::default()).await })
}

/// The PEM a created Secret carries under `key`.
fn pem_in(body: &Value, key: &str) -> String {
    let b64 = body["data"][key]
        .as_str()
        .unwrap_or_else(|| panic!("no {key} in {body}"));
    String::from_utf8(STANDARD.decode(b64).unwrap()).unwrap()
}

#[tokio::test]
async fn the_plug_in_secret_wins_over_the_self_signed_one() {
    let (client, mut api) = mock::client();
    let replica = start(client);
    let p = plug_in_material();
    let chain = format!("{}{}", p.int_pem, p.root_pem);
    expect_get(&mut api, "cacerts").await.respond(
        200,
        secret(
            "cacerts",
            &[
                ("ca-cert.pem", &p.int_pem),
                ("ca-key.pem", &p.int_key_pem),
                ("root-cert.pem", &p.root_pem),
                ("cert-chain.pem", &chain),
            ],
        ),
    );
    let (ca, source) = replica.await.unwrap().unwrap();
    assert_eq!(source, CaSource::PlugIn);
    assert_eq!(ca.trust_bundle(), vec![p.root_pem.clone()]);
    // sinew-ca was never asked for.
    assert!(!api.has_pending());
}

#[tokio::test]
async fn an_existing_root_secret_is_loaded_not_replaced() {
    let existing = generate_root("cluster.local").unwrap();
    let (client, mut api) = mock::client();
    let replica = start(client);
    expect_get(&mut api, "cacerts").await.fail(404, "NotFound");
    expect_get(&mut api, "sinew-ca").await.respond(
        200,
        secret(
            "sinew-ca",
            &[
                ("ca-cert.pem", &existing.cert_pem),
                ("ca-key.pem", &existing.key_pem),
            ],
        ),
    );
    let (ca, source) = replica.await.unwrap().unwrap();
    assert_eq!(source, CaSource::Loaded);
    assert_eq!(ca.trust_bundle(), vec![existing.cert_pem]);
    assert!(!api.has_pending());
}

#[tokio::test]
async fn two_replicas_racing_create_share_one_root() {
    // kmock answers a duplicate create with this reason; a real API server with AlreadyExists.
    for loser_reason in ["AlreadyExists", "Object Already Exists"] {
        let (client_a, mut api_a) = mock::client();
        let (client_b, mut api_b) = mock::client();
        let a = start(client_a);
        let b = start(client_b);

        // Both see neither Secret.
        expect_get(&mut api_a, "cacerts")
            .await
            .fail(404, "NotFound");
        expect_get(&mut api_b, "cacerts")
            .await
            .fail(404, "NotFound");
        expect_get(&mut api_a, "sinew-ca")
            .await
            .fail(404, "NotFound");
        expect_get(&mut api_b, "sinew-ca")
            .await
            .fail(404, "NotFound");

        // Both create; A's lands first.
        let create_a = api_a.next().await;
        let create_b = api_b.next().await;
        for create in [&create_a, &create_b] {
            assert_eq!(create.line(), format!("POST {SECRETS}?"));
            assert_eq!(create.body["metadata"]["name"], "sinew-ca");
            assert_eq!(create.body["type"], "sinew.dev/ca-root");
            assert_eq!(
                create.body["metadata"]["labels"]["app.kubernetes.io/managed-by"],
                "sinew-control-plane"
            );
            assert!(pem_in(&create.body, "ca-cert.pem").starts_with("-----BEGIN CERTIFICATE-----"));
            assert!(pem_in(&create.body, "ca-key.pem").starts_with("-----BEGIN PRIVATE KEY-----"));
        }
        let winner = create_a.body.clone();
        assert_ne!(
            pem_in(&winner, "ca-cert.pem"),
            pem_in(&create_b.body, "ca-cert.pem")
        );
        create_a.respond(201, winner.clone());
        create_b.fail(409, loser_reason);

        // B reads the winner's root.
        expect_get(&mut api_b, "sinew-ca")
            .await
            .respond(200, winner.clone());

        let (ca_a, source_a) = a.await.unwrap().unwrap();
        let (ca_b, source_b) = b.await.unwrap().unwrap();
        assert_eq!((source_a, source_b), (CaSource::Created, CaSource::Loaded));
        assert_eq!(ca_a.trust_bundle(), vec![pem_in(&winner, "ca-cert.pem")]);
        assert_eq!(ca_a.trust_bundle(), ca_b.trust_bundle(), "{loser_reason}");
    }
}

#[tokio::test]
async fn a_failure_to_read_is_an_error_never_a_new_root() {
    for (code, reason) in [(403, "Forbidden"), (503, "ServiceUnavailable")] {
        let (client, mut api) = mock::client();
        let replica = start(client);
        expect_get(&mut api, "cacerts").await.fail(404, "NotFound");
        expect_get(&mut api, "sinew-ca").await.fail(code, reason);
        let err = replica.await.unwrap().unwrap_err();
        assert!(
            matches!(err, CaSecretError::Api { action: "read", .. }),
            "{err}"
        );
        assert!(err.to_string().contains("sinew-system/sinew-ca"), "{err}");
        assert!(!api.has_pending(), "created a root after a {code}");
    }
}

#[tokio::test]
async fn a_root_secret_missing_its_key_names_the_key() {
    let existing = generate_root("cluster.local").unwrap();
    let (client, mut api) = mock::client();
    let replica = start(client);
    expect_get(&mut api, "cacerts").await.fail(404, "NotFound");
    expect_get(&mut api, "sinew-ca").await.respond(
        200,
        secret("sinew-ca", &[("ca-cert.pem", &existing.cert_pem)]),
    );
    let err = replica.await.unwrap().unwrap_err();
    assert!(
        matches!(
            err,
            CaSecretError::MissingKey {
                key: "ca-key.pem",
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn a_root_whose_key_does_not_match_is_refused_naming_the_secret() {
    let one = generate_root("cluster.local").unwrap();
    let other = generate_root("cluster.local").unwrap();
    let (client, mut api) = mock::client();
    let replica = start(client);
    expect_get(&mut api, "cacerts").await.fail(404, "NotFound");
    expect_get(&mut api, "sinew-ca").await.respond(
        200,
        secret(
            "sinew-ca",
            &[
                ("ca-cert.pem", &one.cert_pem),
                ("ca-key.pem", &other.key_pem),
            ],
        ),
    );
    let err = replica.await.unwrap().unwrap_err();
    assert!(
        matches!(err, CaSecretError::BadRoot { ref secret, .. } if secret == "sinew-system/sinew-ca"),
        "{err}"
    );
}
