use super::*;

const ROOT: &str = "sinew-system";

/// Namespaces `sinew-system` and `shop`, then `telemetries` (YAML documents, oldest first).
fn rules(telemetries: &str, mesh: &MeshTelemetry) -> TelemetryRules {
    let yaml = format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: sinew-system}}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: shop}}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: other}}\n{telemetries}"
    );
    let snapshot = Snapshot::from_yaml("t.yaml", &yaml).unwrap_or_else(|e| panic!("{e}"));
    TelemetryRules::new(&snapshot, ROOT, mesh)
}

fn telemetry(namespace: &str, name: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec:\n{spec}"
    )
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn sampling(rules: &TelemetryRules, namespace: &str, pod_labels: &[(&str, &str)]) -> Option<f64> {
    rules
        .resolve(namespace, &labels(pod_labels))
        .0
        .random_sampling_percentage
}

#[test]
fn the_mesh_defaults_apply_when_no_telemetry_exists() {
    let mesh = MeshTelemetry {
        otlp_endpoint: "http://collector:4317".into(),
        random_sampling_percentage: Some(5.0),
        access_log: true,
        access_log_encoding: pb::AccessLogEncoding::Json,
    };
    let (tracing, log) = rules("", &mesh).resolve("shop", &BTreeMap::new());
    assert_eq!(
        tracing,
        pb::Tracing {
            otlp_endpoint: "http://collector:4317".into(),
            random_sampling_percentage: Some(5.0),
            disable_span_reporting: false,
        }
    );
    assert_eq!(
        log,
        Some(pb::AccessLog {
            enabled: true,
            encoding: pb::AccessLogEncoding::Json as i32
        })
    );
}

#[test]
fn without_flags_or_telemetries_sampling_and_access_log_are_left_to_the_proxy() {
    let (tracing, log) = rules("", &MeshTelemetry::default()).resolve("shop", &BTreeMap::new());
    assert_eq!(tracing.random_sampling_percentage, None);
    assert_eq!(log, None);
}

#[test]
fn workload_beats_namespace_beats_root_beats_the_flag() {
    let mesh = MeshTelemetry {
        random_sampling_percentage: Some(1.0),
        ..MeshTelemetry::default()
    };
    let all = [
        telemetry(ROOT, "mesh", "  tracing: [{randomSamplingPercentage: 10}]\n"),
        telemetry("shop", "ns", "  tracing: [{randomSamplingPercentage: 20}]\n"),
        telemetry(
            "shop",
            "reviews",
            "  selector: {matchLabels: {app: reviews}}\n  tracing: [{randomSamplingPercentage: 30}]\n",
        ),
    ]
    .concat();
    let r = rules(&all, &mesh);
    assert_eq!(sampling(&r, "shop", &[("app", "reviews")]), Some(30.0));
    assert_eq!(sampling(&r, "shop", &[("app", "web")]), Some(20.0));
    assert_eq!(sampling(&r, "other", &[("app", "reviews")]), Some(10.0));
    // Without the root one, the flag.
    let r = rules(
        &all[all
            .find("---\napiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: ns")
            .unwrap()..],
        &mesh,
    );
    assert_eq!(sampling(&r, "other", &[]), Some(1.0));
}

#[test]
fn a_level_overrides_only_the_fields_it_sets() {
    let all = [
        telemetry(
            ROOT,
            "mesh",
            "  tracing: [{randomSamplingPercentage: 10, disableSpanReporting: true}]\n",
        ),
        // Sets sampling only: span reporting stays disabled from the root.
        telemetry(
            "shop",
            "ns",
            "  tracing: [{randomSamplingPercentage: 50}]\n",
        ),
        // Sets span reporting only: sampling stays the namespace's.
        telemetry(
            "shop",
            "web",
            "  selector: {matchLabels: {app: web}}\n  tracing: [{disableSpanReporting: false}]\n",
        ),
    ]
    .concat();
    let r = rules(&all, &MeshTelemetry::default());
    let (ns, _) = r.resolve("shop", &labels(&[("app", "db")]));
    assert_eq!(
        (ns.random_sampling_percentage, ns.disable_span_reporting),
        (Some(50.0), true)
    );
    let (web, _) = r.resolve("shop", &labels(&[("app", "web")]));
    assert_eq!(
        (web.random_sampling_percentage, web.disable_span_reporting),
        (Some(50.0), false)
    );
}

#[test]
fn among_equals_the_oldest_applies() {
    let all = [
        telemetry("shop", "first", "  tracing: [{randomSamplingPercentage: 2}]\n"),
        telemetry("shop", "second", "  tracing: [{randomSamplingPercentage: 3}]\n"),
        telemetry(
            "shop",
            "sel-a",
            "  selector: {matchLabels: {app: web}}\n  tracing: [{randomSamplingPercentage: 4}]\n",
        ),
        telemetry(
            "shop",
            "sel-b",
            "  selector: {matchLabels: {tier: front}}\n  tracing: [{randomSamplingPercentage: 5}]\n",
        ),
    ]
    .concat();
    let r = rules(&all, &MeshTelemetry::default());
    assert_eq!(sampling(&r, "shop", &[]), Some(2.0));
    assert_eq!(
        sampling(&r, "shop", &[("app", "web"), ("tier", "front")]),
        Some(4.0)
    );
    assert_eq!(sampling(&r, "shop", &[("tier", "front")]), Some(5.0));
}

#[test]
fn a_selector_in_the_root_namespace_selects_only_root_namespace_workloads() {
    let all = telemetry(
        ROOT,
        "gw",
        "  selector: {matchLabels: {app: gw}}\n  tracing: [{randomSamplingPercentage: 70}]\n",
    );
    let r = rules(&all, &MeshTelemetry::default());
    assert_eq!(sampling(&r, ROOT, &[("app", "gw")]), Some(70.0));
    assert_eq!(sampling(&r, "shop", &[("app", "gw")]), None);
}

#[test]
fn access_logging_turns_on_and_off_by_level_with_the_flags_encoding() {
    let mesh = MeshTelemetry {
        access_log_encoding: pb::AccessLogEncoding::Json,
        ..MeshTelemetry::default()
    };
    let all = [
        telemetry(
            "shop",
            "on",
            "  accessLogging: [{providers: [{name: envoy}]}]\n",
        ),
        telemetry(
            "shop",
            "quiet",
            "  selector: {matchLabels: {app: db}}\n  accessLogging: [{disabled: true}]\n",
        ),
        telemetry(
            "other",
            "otel",
            "  accessLogging: [{providers: [{name: otel}]}]\n",
        ),
    ]
    .concat();
    let r = rules(&all, &mesh);
    let log = |ns: &str, l: &[(&str, &str)]| r.resolve(ns, &labels(l)).1;
    let on = pb::AccessLog {
        enabled: true,
        encoding: pb::AccessLogEncoding::Json as i32,
    };
    let off = pb::AccessLog {
        enabled: false,
        ..on
    };
    assert_eq!(log("shop", &[("app", "web")]), Some(on));
    assert_eq!(log("shop", &[("app", "db")]), Some(off));
    // A provider Sinew does not know writes nothing (validation warned).
    assert_eq!(log("other", &[]), Some(off));
    // Untouched namespaces are left to the proxy.
    assert_eq!(log(ROOT, &[]), None);

    // With --access-log on, a namespace can turn it off, and an entry without providers
    // re-enables it with the inherited ones.
    let mesh = MeshTelemetry {
        access_log: true,
        ..MeshTelemetry::default()
    };
    let all = [
        telemetry("shop", "off", "  accessLogging: [{disabled: true}]\n"),
        telemetry(
            "shop",
            "web",
            "  selector: {matchLabels: {app: web}}\n  accessLogging: [{}]\n",
        ),
    ]
    .concat();
    let r = rules(&all, &mesh);
    let text_on = pb::AccessLog {
        enabled: true,
        encoding: pb::AccessLogEncoding::Text as i32,
    };
    assert_eq!(r.resolve("other", &BTreeMap::new()).1, Some(text_on));
    assert_eq!(
        r.resolve("shop", &BTreeMap::new()).1.map(|l| l.enabled),
        Some(false)
    );
    assert_eq!(
        r.resolve("shop", &labels(&[("app", "web")])).1,
        Some(text_on)
    );
}

#[test]
fn a_telemetry_attached_by_target_ref_is_not_applied() {
    let all = telemetry(
        "shop",
        "gw",
        "  targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: gw}]\n  tracing: [{randomSamplingPercentage: 90}]\n",
    );
    assert_eq!(
        sampling(&rules(&all, &MeshTelemetry::default()), "shop", &[]),
        None
    );
}
