use std::sync::Arc;

use serde_json::{Value, json};

use super::*;

/// An AdmissionReview as a 1.33 API server sends it for `kubectl apply` of the seed
/// DestinationRule (captured shape; uid and user are the test's).
const CAPTURED_CREATE: &str = r#"{
  "kind": "AdmissionReview",
  "apiVersion": "admission.k8s.io/v1",
  "request": {
    "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
    "kind": {"group": "networking.istio.io", "version": "v1beta1", "kind": "DestinationRule"},
    "resource": {"group": "networking.istio.io", "version": "v1beta1", "resource": "destinationrules"},
    "requestKind": {"group": "networking.istio.io", "version": "v1beta1", "kind": "DestinationRule"},
    "requestResource": {"group": "networking.istio.io", "version": "v1beta1", "resource": "destinationrules"},
    "name": "example-destination",
    "namespace": "default",
    "operation": "CREATE",
    "userInfo": {"username": "kubernetes-admin", "groups": ["kubeadm:cluster-admins", "system:authenticated"]},
    "object": {
      "apiVersion": "networking.istio.io/v1beta1",
      "kind": "DestinationRule",
      "metadata": {
        "name": "example-destination",
        "namespace": "default",
        "uid": "3c9a6a43-0f2b-4c84-9a55-1b1f2b1d8a11",
        "creationTimestamp": "2026-12-01T10:00:00Z",
        "generation": 1,
        "annotations": {
          "kubectl.kubernetes.io/last-applied-configuration": "{}\n"
        },
        "managedFields": [{
          "manager": "kubectl-client-side-apply",
          "operation": "Update",
          "apiVersion": "networking.istio.io/v1beta1",
          "time": "2026-12-01T10:00:00Z",
          "fieldsType": "FieldsV1",
          "fieldsV1": {"f:spec": {".": {}, "f:host": {}}}
        }]
      },
      "spec": {
        "host": "myservice.default.svc.cluster.local",
        "trafficPolicy": {
          "tls": {"mode": "ISTIO_MUTUAL"},
          "connectionPool": {"http": {"http1MaxPendingRequests": 100, "maxRequestsPerConnection": 10}},
          "outlierDetection": {
            "consecutive5xxErrors": 2,
            "interval": "1m",
            "baseEjectionTime": "30s",
            "maxEjectionPercent": 100
          }
        }
      }
    },
    "oldObject": null,
    "dryRun": false,
    "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1", "fieldManager": "kubectl-client-side-apply", "fieldValidation": "Strict"}
  }
}"#;

/// The captured review with `edit` applied to it.
fn captured(edit: impl FnOnce(&mut Value)) -> Value {
    let mut review: Value = serde_json::from_str(CAPTURED_CREATE).expect("fixture is JSON");
    edit(&mut review);
    review
}

/// A review of `object` (a `group/version` kind) for `operation`, shaped like the capture.
fn request_for(operation: &str, object: Value) -> Value {
    let api_version = object["apiVersion"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let (group, version) = api_version.split_once('/').unwrap_or(("", &api_version));
    let kind = object["kind"].clone();
    captured(|review| {
        let request = &mut review["request"];
        let gvk = json!({"group": group, "version": version, "kind": kind});
        request["kind"] = gvk.clone();
        request["requestKind"] = gvk;
        request["name"] = object["metadata"]["name"].clone();
        request["operation"] = json!(operation);
        request["object"] = object;
    })
}

/// The JSON answer to a review, as the API server would read it.
fn answer(review: &Value) -> Value {
    let body = serde_json::to_vec(review).expect("serialisable");
    serde_json::from_slice(&review_json(&body)).expect("the answer is JSON")
}

fn message(answer: &Value) -> &str {
    answer["response"]["status"]["message"]
        .as_str()
        .unwrap_or_default()
}

#[test]
fn seed_destination_rule_is_allowed_and_answered_with_the_request_uid() {
    let answer = answer(&captured(|_| {}));
    assert_eq!(answer["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(answer["kind"], "AdmissionReview");
    assert_eq!(
        answer["response"]["uid"],
        "705ab4f5-6393-11e8-b7cc-42010a800002"
    );
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
    assert!(answer["response"].get("warnings").is_none(), "{answer}");
}

#[test]
fn misspelled_load_balancer_is_denied_naming_spec_traffic_policy_load_balancer_simple() {
    let answer = answer(&captured(|review| {
        review["request"]["object"]["spec"]["trafficPolicy"]["loadBalancer"] =
            json!({"simple": "ROUND_ROBBIN"});
    }));
    assert_eq!(answer["response"]["allowed"], false);
    let message = message(&answer);
    assert!(
        message.starts_with("DestinationRule default/example-destination is invalid: "),
        "{message}"
    );
    assert!(
        message.contains("spec.trafficPolicy.loadBalancer.simple: unknown value \"ROUND_ROBBIN\""),
        "{message}"
    );
    assert_eq!(answer["response"]["status"]["code"], 422);
    assert_eq!(
        answer["response"]["status"]["details"]["causes"][0]["field"],
        "spec.trafficPolicy.loadBalancer.simple"
    );
}

#[test]
fn unknown_field_is_denied_with_its_path_and_the_field_meant() {
    let answer = answer(&captured(|review| {
        review["request"]["object"]["spec"]["trafficPolicy"]["loadBalancer"] =
            json!({"simpel": "RANDOM"});
    }));
    assert_eq!(answer["response"]["allowed"], false);
    assert!(
        message(&answer).contains(
            "spec.trafficPolicy.loadBalancer.simpel: unknown field; did you mean simple?"
        ),
        "{}",
        message(&answer)
    );
}

#[test]
fn every_reason_is_listed_each_with_its_field() {
    let answer = answer(&captured(|review| {
        let spec = &mut review["request"]["object"]["spec"];
        spec["trafficPolicy"]["outlierDetection"]["interval"] = json!("1x");
        spec["trafficPolicy"]["outlierDetection"]["maxEjectionPercent"] = json!(150);
        spec["subsets"] = json!([{"labels": {"version": "v1"}}]);
    }));
    assert_eq!(answer["response"]["allowed"], false);
    let fields: Vec<&str> = answer["response"]["status"]["details"]["causes"]
        .as_array()
        .map(|c| c.iter().filter_map(|c| c["field"].as_str()).collect())
        .unwrap_or_default();
    let mut sorted = fields.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        [
            "spec.subsets[0].name",
            "spec.trafficPolicy.outlierDetection.interval",
            "spec.trafficPolicy.outlierDetection.maxEjectionPercent",
        ]
    );
    let message = message(&answer);
    for field in fields {
        assert!(
            message.contains(&format!("{field}: ")),
            "{field} missing from {message}"
        );
    }
}

#[test]
fn a_generated_name_is_named_from_the_object() {
    let answer = answer(&captured(|review| {
        let request = &mut review["request"];
        request["name"] = json!("");
        request["object"]["metadata"]["name"] = json!("example-x7k2p");
        request["object"]["spec"]["host"] = json!("");
    }));
    assert_eq!(answer["response"]["allowed"], false);
    assert!(
        message(&answer).starts_with("DestinationRule default/example-x7k2p is invalid: "),
        "{}",
        message(&answer)
    );
}

#[test]
fn delete_is_allowed_without_reading_the_object() {
    let answer = answer(&captured(|review| {
        let request = &mut review["request"];
        request["operation"] = json!("DELETE");
        request["oldObject"] = request["object"].take();
        request["oldObject"]["spec"]["trafficPolicy"] = json!({"loadBalancer": {"simple": "NOPE"}});
    }));
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
    assert_eq!(
        answer["response"]["uid"],
        "705ab4f5-6393-11e8-b7cc-42010a800002"
    );
}

#[test]
fn another_kind_is_allowed_without_reading_it() {
    let service_entry = json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": {"name": "external", "namespace": "default"},
        "spec": {"hosts": ["example.com"], "whatever": {"simple": "NOPE"}}
    });
    let answer = answer(&request_for("CREATE", service_entry));
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
}

#[test]
fn status_writes_are_allowed_without_reading_the_spec() {
    let answer = answer(&captured(|review| {
        let request = &mut review["request"];
        request["operation"] = json!("UPDATE");
        request["subResource"] = json!("status");
        request["object"]["spec"]["trafficPolicy"] = json!({"loadBalancer": {"simple": "NOPE"}});
    }));
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
}

#[test]
fn update_of_a_sinew_virtual_service_with_a_bad_regex_is_denied() {
    let service = json!({
        "apiVersion": "sinew.dev/v1alpha1",
        "kind": "VirtualService",
        "metadata": {"name": "reviews", "namespace": "default"},
        "spec": {
            "hosts": ["reviews"],
            "http": [{
                "match": [{"uri": {"regex": "(unclosed"}}],
                "route": [{"destination": {"host": "reviews"}}]
            }]
        }
    });
    let answer = answer(&request_for("UPDATE", service));
    assert_eq!(answer["response"]["allowed"], false);
    assert!(
        message(&answer).starts_with("VirtualService default/reviews is invalid: "),
        "{}",
        message(&answer)
    );
    assert_eq!(
        answer["response"]["status"]["details"]["causes"][0]["field"],
        "spec.http[0].match[0].uri.regex"
    );
}

#[test]
fn accepted_but_unapplied_parts_come_back_as_warnings() {
    let service = json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "reviews", "namespace": "default"},
        "spec": {
            "hosts": ["reviews"],
            "http": [{
                "corsPolicy": {"allowOrigins": [{"exact": "https://example.com"}]},
                "route": [{"destination": {"host": "reviews"}}]
            }]
        }
    });
    let answer = answer(&request_for("CREATE", service));
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
    let warnings = answer["response"]["warnings"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(warnings.len(), 1, "{answer}");
    assert!(
        warnings[0]
            .as_str()
            .is_some_and(|w| w.contains("spec.http[0].corsPolicy")),
        "{warnings:?}"
    );
}

#[test]
fn a_telemetry_sampling_150_percent_is_denied_naming_the_field() {
    let telemetry = json!({
        "apiVersion": "telemetry.istio.io/v1",
        "kind": "Telemetry",
        "metadata": {"name": "mesh-default", "namespace": "default"},
        "spec": {"tracing": [{"randomSamplingPercentage": 150}]}
    });
    let answer = answer(&request_for("CREATE", telemetry));
    assert_eq!(answer["response"]["allowed"], false, "{answer}");
    assert_eq!(
        message(&answer),
        "Telemetry default/mesh-default is invalid: spec.tracing[0].randomSamplingPercentage: must be between 0 and 100, not 150"
    );
    assert_eq!(
        answer["response"]["status"]["details"]["causes"][0]["field"],
        "spec.tracing[0].randomSamplingPercentage"
    );
}

#[test]
fn a_telemetry_with_a_wrong_type_is_denied_naming_the_field() {
    let telemetry = json!({
        "apiVersion": "telemetry.istio.io/v1alpha1",
        "kind": "Telemetry",
        "metadata": {"name": "t", "namespace": "shop"},
        "spec": {"tracing": [{"randomSamplingPercentage": "ten"}]}
    });
    let answer = answer(&request_for("CREATE", telemetry));
    assert_eq!(answer["response"]["allowed"], false, "{answer}");
    assert!(
        message(&answer).contains("spec.tracing[0].randomSamplingPercentage"),
        "{}",
        message(&answer)
    );
}

#[test]
fn a_valid_telemetry_is_allowed_with_warnings_for_what_is_not_applied() {
    let telemetry = json!({
        "apiVersion": "telemetry.istio.io/v1",
        "kind": "Telemetry",
        "metadata": {"name": "t", "namespace": "shop"},
        "spec": {
            "tracing": [{"randomSamplingPercentage": 10}],
            "metrics": [{"overrides": [{"disabled": true}]}]
        }
    });
    let answer = answer(&request_for("CREATE", telemetry));
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
    let warnings = answer["response"]["warnings"].to_string();
    assert!(
        warnings.contains("spec.metrics: accepted and not applied"),
        "{warnings}"
    );
}

#[test]
fn a_body_that_is_not_a_review_is_answered_as_invalid() {
    let answer: Value = serde_json::from_slice(&review_json(b"{\"kind\": 3")).expect("JSON");
    assert_eq!(answer["response"]["allowed"], false);
    assert!(
        message(&answer).starts_with("cannot read the AdmissionReview"),
        "{answer}"
    );
}

#[test]
fn a_review_without_a_request_is_answered_as_invalid() {
    let review: AdmissionReview<DynamicObject> = serde_json::from_value(json!({
        "kind": "AdmissionReview",
        "apiVersion": "admission.k8s.io/v1"
    }))
    .expect("a review");
    let answer = super::review(review);
    assert_eq!(answer.response.map(|r| r.allowed), Some(false));
}

// === over HTTP ===

fn post(
    path: &str,
    body: impl Into<bytes::Bytes>,
) -> http::Request<http_body_util::Full<bytes::Bytes>> {
    http::Request::builder()
        .method(http::Method::POST)
        .uri(format!(
            "https://sinew-control-plane.sinew-system.svc:15017{path}"
        ))
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(body.into()))
        .expect("a request")
}

async fn body_of(response: http::Response<http_body_util::Full<bytes::Bytes>>) -> bytes::Bytes {
    use http_body_util::BodyExt;
    match response.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(never) => match never {},
    }
}

#[tokio::test]
async fn posted_review_is_answered_200_with_the_review_as_json() {
    let denied = captured(|review| {
        review["request"]["object"]["spec"]["trafficPolicy"]["loadBalancer"] =
            json!({"simple": "ROUND_ROBBIN"});
    });
    let response = handle(
        post(PATH, serde_json::to_vec(&denied).expect("JSON")),
        &Webhooks::default(),
    )
    .await;
    assert_eq!(response.status(), http::StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/json");
    let answer: Value = serde_json::from_slice(&body_of(response).await).expect("JSON");
    assert_eq!(
        answer["response"]["uid"],
        "705ab4f5-6393-11e8-b7cc-42010a800002"
    );
    assert_eq!(answer["response"]["allowed"], false);
}

#[tokio::test]
async fn other_paths_and_methods_get_no_review() {
    let response = handle(post("/mutate", CAPTURED_CREATE), &Webhooks::default()).await;
    assert_eq!(response.status(), http::StatusCode::NOT_FOUND);
    let mut get = post(PATH, CAPTURED_CREATE);
    *get.method_mut() = http::Method::GET;
    assert_eq!(
        handle(get, &Webhooks::default()).await.status(),
        http::StatusCode::METHOD_NOT_ALLOWED
    );
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_unread() {
    let response = handle(post(PATH, vec![b' '; MAX_BODY + 1]), &Webhooks::default()).await;
    assert_eq!(response.status(), http::StatusCode::PAYLOAD_TOO_LARGE);
}

/// A server config for `name` (self-signed) and a client config trusting it, both HTTP/1.1 as
/// the API server's Go client speaks to webhooks without h2.
fn tls_pair(name: &str) -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    let certified = rcgen::generate_simple_self_signed(vec![name.to_string()]).expect("a cert");
    let cert = certified.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .and_then(|b| {
            b.with_no_client_auth()
                .with_single_cert(vec![cert.clone()], key)
        })
        .expect("server config");
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).expect("a root");
    let mut client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("client config")
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.alpn_protocols = vec![b"http/1.1".to_vec()];
    (Arc::new(server), Arc::new(client))
}

#[tokio::test]
async fn serves_reviews_over_tls_to_the_service_name() {
    use http_body_util::BodyExt;
    let name = "sinew-control-plane.sinew-system.svc";
    let (server_tls, client_tls) = tls_pair(name);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("an address");
    let server = tokio::spawn(serve(listener, server_tls, Arc::new(Webhooks::default())));

    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let server_name = rustls::pki_types::ServerName::try_from(name.to_string()).expect("a name");
    let tls = tokio_rustls::TlsConnector::from(client_tls)
        .connect(server_name, tcp)
        .await
        .expect("TLS handshake");
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .expect("HTTP handshake");
    tokio::spawn(connection);
    let response = sender
        .send_request(post(PATH, CAPTURED_CREATE))
        .await
        .expect("a response");
    assert_eq!(response.status(), http::StatusCode::OK);
    let body = response
        .into_body()
        .collect()
        .await
        .expect("a body")
        .to_bytes();
    let answer: Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
    assert_eq!(
        answer["response"]["uid"],
        "705ab4f5-6393-11e8-b7cc-42010a800002"
    );
    server.abort();
}

// === the injector on the same listener ===

/// A Deployment's pod as the API server sends it for injection, in `namespace`.
fn pod_review(namespace: &str) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "9c1d2e3f-0000-4000-8000-00000000000a",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": namespace, "operation": "CREATE",
            "object": {
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"generateName": "web-6b7c9-", "namespace": namespace, "labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "web:1"}]}
            }
        }
    })
}

/// Webhooks whose injector knows the namespaces of `yaml` (a registry snapshot).
fn with_injector(yaml: &str) -> Webhooks {
    let snapshot = crate::registry::Snapshot::from_yaml("ns.yaml", yaml).expect("a snapshot");
    // The injector reads the last snapshot sent, also once the registry's sender is gone.
    let (_, rx) = tokio::sync::watch::channel(Arc::new(snapshot));
    Webhooks {
        injector: Some(Injector::new(sinew_injector::Settings::default(), rx)),
    }
}

const NAMESPACES: &str = "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {sinew-injection: enabled}}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: legacy}\n";

async fn inject(
    hooks: &Webhooks,
    body: impl Into<bytes::Bytes>,
) -> (http::StatusCode, bytes::Bytes) {
    let response = handle(post(inject::PATH, body), hooks).await;
    let status = response.status();
    (status, body_of(response).await)
}

#[tokio::test]
async fn a_pod_in_a_labelled_namespace_is_answered_with_a_json_patch() {
    let hooks = with_injector(NAMESPACES);
    let (status, body) = inject(&hooks, pod_review("shop").to_string()).await;
    assert_eq!(status, http::StatusCode::OK);
    let answer: Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(
        answer["response"]["uid"],
        "9c1d2e3f-0000-4000-8000-00000000000a"
    );
    assert_eq!(answer["response"]["allowed"], true);
    assert_eq!(answer["response"]["patchType"], "JSONPatch");
    use base64::Engine as _;
    let patch = base64::engine::general_purpose::STANDARD
        .decode(answer["response"]["patch"].as_str().expect("a patch"))
        .expect("base64");
    let patch: Value = serde_json::from_slice(&patch).expect("a JSON patch");
    assert!(
        patch.as_array().is_some_and(|ops| !ops.is_empty()),
        "{patch}"
    );
}

#[tokio::test]
async fn the_registrys_namespace_labels_are_checked_again_and_unknown_namespaces_trusted() {
    let hooks = with_injector(NAMESPACES);
    let (_, body) = inject(&hooks, pod_review("legacy").to_string()).await;
    let answer: Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(answer["response"]["allowed"], true);
    assert!(answer["response"].get("patch").is_none(), "{answer}");
    assert_eq!(
        answer["response"]["warnings"][0],
        "sinew-injector: no sidecar injected: namespace legacy is not labelled sinew-injection=enabled"
    );
    // A namespace the registry has not seen yet: the API server's selector decided.
    let (_, body) = inject(&hooks, pod_review("brand-new").to_string()).await;
    let answer: Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(answer["response"]["patchType"], "JSONPatch", "{answer}");
    // `default` exists implicitly in every snapshot, but its labels were never seen.
    let (_, body) = inject(&hooks, pod_review("default").to_string()).await;
    let answer: Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(answer["response"]["patchType"], "JSONPatch", "{answer}");
}

#[tokio::test]
async fn a_body_that_is_not_a_review_gets_400_saying_so_from_inject() {
    let hooks = with_injector(NAMESPACES);
    for (body, says) in [
        (&b"not json"[..], "the body is not JSON"),
        (
            &br#"{"kind":"Pod","apiVersion":"v1"}"#[..],
            "not an AdmissionReview",
        ),
    ] {
        let (status, text) = inject(&hooks, body.to_vec()).await;
        assert_eq!(status, http::StatusCode::BAD_REQUEST);
        assert!(String::from_utf8_lossy(&text).contains(says), "{text:?}");
    }
    // /validate keeps its own answer to the same body.
    let response = handle(post(PATH, &b"not json"[..]), &hooks).await;
    assert_eq!(response.status(), http::StatusCode::OK);
}

#[tokio::test]
async fn inject_is_not_served_without_an_injector() {
    let response = handle(post(inject::PATH, CAPTURED_CREATE), &Webhooks::default()).await;
    assert_eq!(response.status(), http::StatusCode::NOT_FOUND);
}

#[tokio::test(start_paused = true)]
async fn a_body_not_sent_in_time_is_answered_408_after_the_deadline() {
    use http_body_util::StreamBody;
    let hooks = with_injector(NAMESPACES);
    let never = futures_util::stream::pending::<
        Result<hyper::body::Frame<bytes::Bytes>, std::convert::Infallible>,
    >();
    let request = http::Request::builder()
        .method(http::Method::POST)
        .uri(inject::PATH)
        .body(StreamBody::new(never))
        .expect("a request");
    let started = tokio::time::Instant::now();
    let response = handle(request, &hooks).await;
    assert_eq!(response.status(), http::StatusCode::REQUEST_TIMEOUT);
    // Paused time: the deadline, not a wall clock.
    assert_eq!(started.elapsed(), std::time::Duration::from_secs(30));
}

#[test]
fn a_custom_authorization_policy_is_denied_naming_the_field() {
    let policy = json!({
        "apiVersion": "security.istio.io/v1",
        "kind": "AuthorizationPolicy",
        "metadata": {"name": "ext", "namespace": "shop"},
        "spec": {"action": "CUSTOM", "provider": {"name": "opa"}, "rules": [{}]}
    });
    let answer = answer(&request_for("CREATE", policy));
    assert_eq!(answer["response"]["allowed"], false, "{answer}");
    assert_eq!(
        message(&answer),
        "AuthorizationPolicy default/ext is invalid: spec.action: CUSTOM (external authorization) is not supported by Sinew"
    );
    assert_eq!(
        answer["response"]["status"]["details"]["causes"][0]["field"],
        "spec.action"
    );
}

#[test]
fn peer_authentications_are_validated_with_json_port_keys() {
    let policy = |port: &str| {
        json!({
            "apiVersion": "security.istio.io/v1beta1",
            "kind": "PeerAuthentication",
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {
                "selector": {"matchLabels": {"app": "web"}},
                "mtls": {"mode": "STRICT"},
                "portLevelMtls": {port: {"mode": "DISABLE"}}
            }
        })
    };
    let good = answer(&request_for("CREATE", policy("8080")));
    assert_eq!(good["response"]["allowed"], true, "{good}");
    let bad = answer(&request_for("UPDATE", policy("0")));
    assert_eq!(bad["response"]["allowed"], false, "{bad}");
    assert_eq!(
        message(&bad),
        "PeerAuthentication default/web is invalid: spec.portLevelMtls.0: port must be between 1 and 65535, not 0"
    );
}
