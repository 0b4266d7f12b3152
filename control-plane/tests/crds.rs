//! The chart's CRDs are generated from the registry's Rust types: this test regenerates
//! `charts/sinew/crds/*.yaml` (Sinew's own group, which Helm always installs) and
//! `charts/sinew/files/istio-crds/*.yaml` (Istio's group, which the chart's `istio-crds` template
//! installs when `istioCRDs.enabled`) and fails on any difference, checks they read back as
//! `apiextensions.k8s.io/v1` CustomResourceDefinitions with structural schemas, and that the
//! seed DestinationRule our users start from fits the generated schema.

#![cfg(feature = "kubernetes")]

use std::collections::BTreeSet;
use std::path::PathBuf;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use serde_json::Value;
use sinew_control_plane::cluster::crd;

const UPDATE: &str = "SINEW_UPDATE_CRDS=1 cargo test -p sinew-control-plane --test crds";

/// The chart folder a CRD's file belongs in: Helm's `crds/` installs files unconditionally, so
/// only Sinew's group is there; Istio's is read by a template that a value switches off.
fn chart_dir(crd: &CustomResourceDefinition) -> PathBuf {
    let chart = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../charts/sinew");
    if crd.spec.group.ends_with(".istio.io") {
        chart.join("files/istio-crds")
    } else {
        chart.join("crds")
    }
}

fn crds() -> Vec<CustomResourceDefinition> {
    match crd::all_crds() {
        Ok(crds) => crds,
        Err(e) => panic!("{e}"),
    }
}

fn yaml(crd: &CustomResourceDefinition) -> String {
    crd::to_yaml(crd).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn chart_crds_match_the_rust_types() {
    let update = std::env::var_os("SINEW_UPDATE_CRDS").is_some();
    let mut expected = BTreeSet::new();
    let mut stale = Vec::new();
    for crd in crds() {
        let dir = chart_dir(&crd);
        let path = dir.join(crd::file_name(&crd));
        let rendered = yaml(&crd);
        if update {
            std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
            std::fs::write(&path, &rendered).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        } else if std::fs::read_to_string(&path).ok().as_deref() != Some(rendered.as_str()) {
            stale.push(path.display().to_string());
        }
        expected.insert(path);
    }
    // A CRD that is no longer generated (or is in the wrong folder) must not linger in the chart.
    let folders: BTreeSet<PathBuf> = crds().iter().map(chart_dir).collect();
    let present: BTreeSet<PathBuf> = folders
        .iter()
        .flat_map(|dir| std::fs::read_dir(dir).into_iter().flatten())
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    stale.extend(
        present
            .difference(&expected)
            .map(|p| format!("{} (not generated)", p.display())),
    );
    assert!(
        stale.is_empty(),
        "the chart's CRDs differ from the Rust types in {stale:?}; run `{UPDATE}`"
    );
}

#[test]
fn rendered_crds_read_back_as_apiextensions_v1() {
    for crd in crds() {
        let rendered = yaml(&crd);
        let value: Value = serde_saphyr::from_str(&rendered).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(value["apiVersion"], "apiextensions.k8s.io/v1");
        assert_eq!(value["kind"], "CustomResourceDefinition");
        let back: CustomResourceDefinition =
            serde_saphyr::from_str(&rendered).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, crd, "{} does not survive YAML", crd::file_name(&crd));
    }
}

/// A CRD's name, short names, categories and (version, served, storage).
type Names = (String, Vec<String>, Vec<String>, Vec<(String, bool, bool)>);

#[test]
fn names_versions_and_subresources_are_as_istio_has_them() {
    let crds = crds();
    let summary: Vec<Names> = crds
        .iter()
        .map(|c| {
            let names = &c.spec.names;
            (
                c.metadata.name.clone().unwrap_or_default(),
                names.short_names.clone().unwrap_or_default(),
                names.categories.clone().unwrap_or_default(),
                c.spec
                    .versions
                    .iter()
                    .map(|v| (v.name.clone(), v.served, v.storage))
                    .collect(),
            )
        })
        .collect();
    let istio_versions = vec![
        ("v1".to_string(), true, true),
        ("v1alpha3".to_string(), true, false),
        ("v1beta1".to_string(), true, false),
    ];
    let istio_categories = vec!["istio-io".to_string(), "networking-istio-io".to_string()];
    assert_eq!(
        summary,
        vec![
            (
                "destinationrules.sinew.dev".into(),
                vec!["sdr".into()],
                vec!["sinew".into()],
                vec![("v1alpha1".into(), true, true)]
            ),
            (
                "virtualservices.sinew.dev".into(),
                vec!["svs".into()],
                vec!["sinew".into()],
                vec![("v1alpha1".into(), true, true)]
            ),
            (
                "destinationrules.networking.istio.io".into(),
                vec!["dr".into()],
                istio_categories.clone(),
                istio_versions.clone()
            ),
            (
                "virtualservices.networking.istio.io".into(),
                vec!["vs".into()],
                istio_categories,
                istio_versions
            ),
            (
                "telemetries.telemetry.istio.io".into(),
                vec!["telemetry".into()],
                vec!["istio-io".into(), "telemetry-istio-io".into()],
                vec![("v1".into(), true, true), ("v1alpha1".into(), true, false)]
            ),
            (
                "peerauthentications.security.istio.io".into(),
                vec!["pa".into()],
                vec!["istio-io".into(), "security-istio-io".into()],
                vec![("v1".into(), true, true), ("v1beta1".into(), true, false)]
            ),
            (
                "authorizationpolicies.security.istio.io".into(),
                vec!["ap".into()],
                vec!["istio-io".into(), "security-istio-io".into()],
                vec![("v1".into(), true, true), ("v1beta1".into(), true, false)]
            ),
        ]
    );
    for c in &crds {
        assert_eq!(c.spec.scope, "Namespaced");
        for v in &c.spec.versions {
            let columns: Vec<(&str, &str)> = v
                .additional_printer_columns
                .iter()
                .flatten()
                .map(|p| (p.name.as_str(), p.json_path.as_str()))
                .collect();
            let expected = match c.spec.names.kind.as_str() {
                "DestinationRule" => vec![
                    ("Host", ".spec.host"),
                    ("Age", ".metadata.creationTimestamp"),
                ],
                "Telemetry" => vec![("Age", ".metadata.creationTimestamp")],
                "PeerAuthentication" => vec![
                    ("Mode", ".spec.mtls.mode"),
                    ("Age", ".metadata.creationTimestamp"),
                ],
                "AuthorizationPolicy" => vec![
                    ("Action", ".spec.action"),
                    ("Age", ".metadata.creationTimestamp"),
                ],
                _ => vec![
                    ("Gateways", ".spec.gateways"),
                    ("Hosts", ".spec.hosts"),
                    ("Age", ".metadata.creationTimestamp"),
                ],
            };
            assert_eq!(columns, expected, "{:?} {}", c.metadata.name, v.name);
            let keeps_others = schema(c, &v.name)["status"].x_kubernetes_preserve_unknown_fields;
            let istio = c.spec.group.ends_with(".istio.io");
            assert_eq!(
                keeps_others,
                istio.then_some(true),
                "{:?} status",
                c.metadata.name
            );
            let status = v.subresources.as_ref().and_then(|s| s.status.as_ref());
            assert!(
                status.is_some(),
                "{:?} {} has no status subresource",
                c.metadata.name,
                v.name
            );
            let condition = &schema(c, &v.name)["status"]
                .properties
                .as_ref()
                .expect("status")["conditions"];
            let Some(JSONSchemaPropsOrArray::Schema(item)) = &condition.items else {
                panic!("conditions has no item schema");
            };
            let fields: BTreeSet<&str> = item
                .properties
                .iter()
                .flatten()
                .map(|(k, _)| k.as_str())
                .collect();
            assert_eq!(
                fields,
                BTreeSet::from([
                    "type",
                    "status",
                    "reason",
                    "message",
                    "lastTransitionTime",
                    "observedGeneration"
                ])
            );
        }
    }
}

/// The root's properties (`spec`, `status`) of one version.
fn schema<'a>(
    crd: &'a CustomResourceDefinition,
    version: &str,
) -> &'a std::collections::BTreeMap<String, JSONSchemaProps> {
    crd.spec
        .versions
        .iter()
        .find(|v| v.name == version)
        .and_then(|v| {
            v.schema
                .as_ref()?
                .open_api_v3_schema
                .as_ref()?
                .properties
                .as_ref()
        })
        .unwrap_or_else(|| panic!("{:?} has no schema for {version}", crd.metadata.name))
}

/// Fields Sinew keeps as raw JSON (accepted with a warning, or refused by name), and the Istio
/// kinds' status that istiod also writes: the only places unknown fields may be kept.
const RAW_FIELDS: [&str; 9] = [
    "zoneAwareLbSetting",
    "tls[]",
    "directResponse",
    "delegate",
    "corsPolicy",
    "uriRegexRewrite",
    "targetRef",
    "targetRefs[]",
    "customTags",
];

/// Kubernetes' structural-schema rules that apply to what we generate: every node typed (or
/// explicitly free-form), arrays with items, no `properties` next to `additionalProperties`, no
/// logical junctors or references, and unknown fields kept only where they must be.
fn structural_errors(node: &JSONSchemaProps, path: &str, istio: bool, errors: &mut Vec<String>) {
    let preserve = node.x_kubernetes_preserve_unknown_fields == Some(true);
    let field = path.rsplit('.').next().unwrap_or(path);
    if preserve && !(RAW_FIELDS.contains(&field) || (istio && path == "status")) {
        errors.push(format!("{path}: keeps unknown fields"));
    }
    if node.type_.is_none() && !preserve && node.x_kubernetes_int_or_string != Some(true) {
        errors.push(format!("{path}: no type"));
    }
    if node.any_of.is_some() || node.one_of.is_some() || node.all_of.is_some() || node.not.is_some()
    {
        errors.push(format!("{path}: anyOf/oneOf/allOf/not"));
    }
    if node.ref_path.is_some() || node.definitions.is_some() {
        errors.push(format!("{path}: $ref or definitions"));
    }
    // The decoder reads every spec field as optional (validation names the missing ones), so the
    // schema must not refuse an object for lacking one before Sinew can say why.
    if path.starts_with("spec") && node.required.as_ref().is_some_and(|r| !r.is_empty()) {
        errors.push(format!("{path}: requires {:?}", node.required));
    }
    if node.properties.is_some() && node.additional_properties.is_some() {
        errors.push(format!("{path}: both properties and additionalProperties"));
    }
    if let Some(enum_) = &node.enum_ {
        let ty = node.type_.as_deref();
        if !enum_
            .iter()
            .all(|v| matches!((ty, &v.0), (Some("string"), Value::String(_))))
        {
            errors.push(format!("{path}: enum values that are not strings"));
        }
    }
    for (name, child) in node.properties.iter().flatten() {
        let child_path = if path.is_empty() {
            name.clone()
        } else {
            format!("{path}.{name}")
        };
        structural_errors(child, &child_path, istio, errors);
    }
    match &node.additional_properties {
        Some(JSONSchemaPropsOrBool::Schema(child)) => {
            structural_errors(child, &format!("{path}{{}}"), istio, errors);
        }
        Some(JSONSchemaPropsOrBool::Bool(_)) => {
            errors.push(format!("{path}: boolean additionalProperties"))
        }
        None => {}
    }
    match (&node.items, node.type_.as_deref()) {
        (Some(JSONSchemaPropsOrArray::Schema(child)), _) => {
            structural_errors(child, &format!("{path}[]"), istio, errors);
        }
        (Some(JSONSchemaPropsOrArray::Schemas(_)), _) => {
            errors.push(format!("{path}: tuple items"))
        }
        (None, Some("array")) => errors.push(format!("{path}: array without items")),
        (None, _) => {}
    }
}

#[test]
fn every_schema_is_structural_and_strict() {
    for crd in crds() {
        let istio = crd.spec.group.ends_with(".istio.io");
        for version in &crd.spec.versions {
            let root = version
                .schema
                .as_ref()
                .and_then(|s| s.open_api_v3_schema.as_ref())
                .expect("every version has a schema");
            assert_eq!(root.type_.as_deref(), Some("object"));
            let mut errors = Vec::new();
            structural_errors(root, "", istio, &mut errors);
            assert!(
                errors.is_empty(),
                "{:?} {}: {errors:#?}",
                crd.metadata.name,
                version.name
            );
        }
    }
}

/// What in `value` the schema at `node` would refuse, by path: wrong types, values outside an
/// enum, fields it does not declare. (A subset of the API server's validation, by hand: the
/// parts our schemas use.)
fn misfits(value: &Value, node: &JSONSchemaProps, path: &str, out: &mut Vec<String>) {
    if value.is_null() {
        if node.nullable != Some(true) {
            out.push(format!("{path}: null"));
        }
        return;
    }
    let fits = match (node.type_.as_deref(), value) {
        (None, _) => true,
        (Some("object"), Value::Object(_))
        | (Some("array"), Value::Array(_))
        | (Some("string"), Value::String(_))
        | (Some("boolean"), Value::Bool(_))
        | (Some("number"), Value::Number(_)) => true,
        (Some("integer"), Value::Number(n)) => n.is_i64() || n.is_u64(),
        _ => false,
    };
    if !fits {
        out.push(format!(
            "{path}: not {}",
            node.type_.as_deref().unwrap_or("?")
        ));
        return;
    }
    if let Some(enum_) = &node.enum_
        && !enum_.iter().any(|v| v.0 == *value)
    {
        out.push(format!("{path}: {value} is not one of the enum"));
    }
    if let Some(min) = node.minimum
        && value.as_f64().is_some_and(|v| v < min)
    {
        out.push(format!("{path}: below {min}"));
    }
    match value {
        Value::Object(map) => {
            for required in node.required.iter().flatten() {
                if !map.contains_key(required) {
                    out.push(format!("{path}.{required}: required"));
                }
            }
            for (key, child) in map {
                let child_path = format!("{path}.{key}");
                match (
                    node.properties.as_ref().and_then(|p| p.get(key)),
                    &node.additional_properties,
                ) {
                    (Some(schema), _) => misfits(child, schema, &child_path, out),
                    (None, Some(JSONSchemaPropsOrBool::Schema(schema))) => {
                        misfits(child, schema, &child_path, out)
                    }
                    _ if node.x_kubernetes_preserve_unknown_fields == Some(true) => {}
                    _ => out.push(format!("{child_path}: not in the schema")),
                }
            }
        }
        Value::Array(items) => {
            if let Some(JSONSchemaPropsOrArray::Schema(schema)) = &node.items {
                for (i, item) in items.iter().enumerate() {
                    misfits(item, schema, &format!("{path}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

fn seed() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/traffic-policy/seed-destinationrule.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{e}"))
}

/// The spec schema of `kind` at `api_version`.
fn spec_schema(api_version: &str, kind: &str) -> JSONSchemaProps {
    let (group, version) = api_version.split_once('/').expect("group/version");
    let crds = crds();
    let crd = crds
        .iter()
        .find(|c| c.spec.group == group && c.spec.names.kind == kind)
        .unwrap_or_else(|| panic!("no CRD for {kind} in {group}"));
    schema(crd, version)["spec"].clone()
}

#[test]
fn seed_destination_rule_fits_the_schema_of_every_version_and_group() {
    let seed = seed();
    let spec = &seed["spec"];
    assert!(
        spec["trafficPolicy"]["outlierDetection"].is_object(),
        "seed read whole"
    );
    for api_version in [
        "networking.istio.io/v1",
        "networking.istio.io/v1beta1",
        "networking.istio.io/v1alpha3",
        "sinew.dev/v1alpha1",
    ] {
        let mut out = Vec::new();
        misfits(
            spec,
            &spec_schema(api_version, "DestinationRule"),
            "spec",
            &mut out,
        );
        assert!(out.is_empty(), "{api_version}: {out:?}");
    }
}

#[test]
fn schema_refuses_a_misspelled_enum_a_number_typed_as_string_and_an_unknown_field() {
    let mut seed = seed();
    seed["spec"]["trafficPolicy"]["loadBalancer"] = serde_json::json!({ "simple": "ROUND_ROBBIN" });
    seed["spec"]["trafficPolicy"]["outlierDetection"]["interval"] = serde_json::json!(60);
    seed["spec"]["trafficPolicy"]["connectionPool"]["http"]["maxRetrys"] = serde_json::json!(3);
    let mut out = Vec::new();
    let schema = spec_schema("networking.istio.io/v1", "DestinationRule");
    misfits(&seed["spec"], &schema, "spec", &mut out);
    assert_eq!(
        out,
        vec![
            "spec.trafficPolicy.connectionPool.http.maxRetrys: not in the schema",
            "spec.trafficPolicy.loadBalancer.simple: \"ROUND_ROBBIN\" is not one of the enum",
            "spec.trafficPolicy.outlierDetection.interval: not string",
        ]
    );
}

#[test]
fn raw_fields_accept_any_object_and_durations_are_strings() {
    let schema = spec_schema("sinew.dev/v1alpha1", "VirtualService");
    let service = serde_json::json!({
        "hosts": ["reviews"],
        "http": [{
            "corsPolicy": { "allowOrigins": [{ "exact": "https://example.com" }] },
            "timeout": "1.5s",
            "retries": { "attempts": 3, "perTryTimeout": "250ms" },
            "route": [{ "destination": { "host": "reviews", "subset": "v1" }, "weight": 100 }]
        }],
        "tls": [{ "match": [{ "sniHosts": ["a"] }] }]
    });
    let mut out = Vec::new();
    misfits(&service, &schema, "spec", &mut out);
    assert!(out.is_empty(), "{out:?}");
}

#[test]
fn typed_custom_resources_read_the_seed_and_write_back_no_nulls() {
    use sinew_control_plane::cluster::crd::networking_istio_io::v1beta1::DestinationRule;
    let seed = seed();
    let rule: DestinationRule =
        serde_json::from_value(seed.clone()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        rule.spec.0.host.as_deref(),
        Some("myservice.default.svc.cluster.local")
    );
    let back = serde_json::to_value(&rule).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(back["spec"], seed["spec"]);
}

#[test]
fn the_telemetry_schema_refuses_150_percent_a_string_and_a_misspelled_field() {
    for version in ["telemetry.istio.io/v1", "telemetry.istio.io/v1alpha1"] {
        let schema = spec_schema(version, "Telemetry");
        let mut out = Vec::new();
        let good = serde_json::json!({
            "selector": {"matchLabels": {"app": "reviews"}},
            "tracing": [{"randomSamplingPercentage": 10.5, "disableSpanReporting": false,
                         "providers": [{"name": "otel"}], "match": {"mode": "CLIENT_AND_SERVER"}}],
            "accessLogging": [{"providers": [{"name": "envoy"}], "disabled": false}],
            "metrics": [{"overrides": [{"match": {"metric": "REQUEST_COUNT"}, "disabled": true}]}]
        });
        misfits(&good, &schema, "spec", &mut out);
        assert!(out.is_empty(), "{version}: {out:?}");
        let sampling = &schema.properties.as_ref().expect("properties")["tracing"];
        let Some(JSONSchemaPropsOrArray::Schema(item)) = &sampling.items else {
            panic!("tracing has no item schema");
        };
        let percentage = &item.properties.as_ref().expect("properties")["randomSamplingPercentage"];
        assert_eq!(
            (percentage.minimum, percentage.maximum),
            (Some(0.0), Some(100.0))
        );
        let bad = serde_json::json!({
            "tracing": [{"randomSamplingPercentage": "ten", "randomSamplingPercent": 5}],
            "accessLogging": [{"match": {"mode": "BOTH"}}]
        });
        misfits(&bad, &schema, "spec", &mut out);
        assert_eq!(
            out,
            [
                "spec.accessLogging[0].match.mode: \"BOTH\" is not one of the enum",
                "spec.tracing[0].randomSamplingPercent: not in the schema",
                "spec.tracing[0].randomSamplingPercentage: not number",
            ],
            "{version}"
        );
    }
}
