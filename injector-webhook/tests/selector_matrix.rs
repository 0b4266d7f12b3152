//! The injector's rule against the injection table (tests/fixtures/selector-matrix.yaml), the
//! same table the chart's test checks the webhook configuration's selectors against: so the
//! API server's filter and the injector's own decision cannot drift apart unnoticed.
//!
//! Every row is decided with the namespace's labels known (as local mode and the control
//! plane's re-check do): a row saying `inject: true` must be injected, and a row saying no must
//! be refused for one of the reasons the row lists.

use std::collections::BTreeMap;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::Pod;
use serde::Deserialize;
use serde_json::{Value, json};
use sinew_injector::decide::Place;
use sinew_injector::{Decision, Namespace, Skip, decide};

#[derive(Deserialize)]
struct Matrix {
    namespaces: BTreeMap<String, NamespaceRow>,
    pods: BTreeMap<String, PodParts>,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct NamespaceRow {
    labels: BTreeMap<String, String>,
}

/// The parts of a pod the rules read.
#[derive(Deserialize)]
struct PodParts {
    metadata: Value,
    spec: serde_json::Map<String, Value>,
}

/// A row; its `selectors` and `conditions` are the chart's business.
#[derive(Deserialize)]
struct Case {
    namespace: String,
    pod: String,
    inject: bool,
    reasons: Vec<String>,
}

fn matrix() -> Matrix {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/selector-matrix.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The table's pod with one app container, which the table leaves out (no rule reads it).
fn pod(parts: &PodParts) -> Pod {
    let mut spec = parts.spec.clone();
    spec.entry("containers")
        .or_insert_with(|| json!([{"name": "app", "image": "app"}]));
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": parts.metadata, "spec": spec,
    }))
    .expect("the table's pod is a pod")
}

/// The table's name for a reason; `None` for reasons the table has no rows for.
fn reason(skip: &Skip) -> Option<&'static str> {
    match skip {
        Skip::HostNetwork => Some("host-network"),
        Skip::SystemNamespace(_) => Some("system-namespace"),
        Skip::OptedOut(Place::Label) => Some("opted-out-by-label"),
        Skip::OptedOut(Place::Annotation) => Some("opted-out-by-annotation"),
        Skip::IstioNamespace(_) => Some("istio-namespace"),
        Skip::NamespaceNotEnabled(_) => Some("namespace-not-labelled"),
        Skip::AlreadyInjected | Skip::IstioSidecar => None,
    }
}

/// What is wrong with the decision for one row, if anything.
fn disagreement(case: &Case, decision: &Decision) -> Option<String> {
    match decision {
        Decision::Inject if case.inject => None,
        Decision::Inject => Some(format!("injected, the table says no ({:?})", case.reasons)),
        Decision::Skip(skip) if case.inject => Some(format!("not injected ({skip})")),
        Decision::Skip(skip) => match reason(skip) {
            Some(name) if case.reasons.iter().any(|r| r == name) => None,
            name => Some(format!(
                "not injected for {name:?} ({skip}), the table's reasons are {:?}",
                case.reasons
            )),
        },
    }
}

#[test]
fn decide_agrees_with_the_selector_matrix() {
    let matrix = matrix();
    assert!(
        matrix.cases.len() >= matrix.namespaces.len() * matrix.pods.len(),
        "the table has a row for every namespace and pod"
    );
    let mut wrong = Vec::new();
    for case in &matrix.cases {
        let (Some(ns), Some(parts)) = (
            matrix.namespaces.get(&case.namespace),
            matrix.pods.get(&case.pod),
        ) else {
            panic!(
                "{}/{}: no such namespace or pod in the table",
                case.namespace, case.pod
            );
        };
        let namespace = Namespace {
            name: &case.namespace,
            labels: Some(&ns.labels),
        };
        let decision = decide(&pod(parts), namespace);
        if let Some(what) = disagreement(case, &decision) {
            wrong.push(format!("{}/{}: {what}", case.namespace, case.pod));
        }
    }
    assert!(
        wrong.is_empty(),
        "rows the injector disagrees with:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn a_row_the_injector_disagrees_with_is_reported() {
    // The comparison itself, so a pass above means the rows were checked.
    let case = |inject, reasons: &[&str]| Case {
        namespace: "shop".into(),
        pod: "plain".into(),
        inject,
        reasons: reasons.iter().map(|r| r.to_string()).collect(),
    };
    let not_labelled = Decision::Skip(Skip::NamespaceNotEnabled("shop".into()));
    assert_eq!(disagreement(&case(true, &[]), &Decision::Inject), None);
    assert!(disagreement(&case(false, &["host-network"]), &Decision::Inject).is_some());
    assert!(disagreement(&case(true, &[]), &not_labelled).is_some());
    assert!(disagreement(&case(false, &["host-network"]), &not_labelled).is_some());
    assert_eq!(
        disagreement(
            &case(false, &["host-network", "namespace-not-labelled"]),
            &not_labelled
        ),
        None
    );
    assert!(
        disagreement(
            &case(false, &["host-network"]),
            &Decision::Skip(Skip::AlreadyInjected)
        )
        .is_some()
    );
}
