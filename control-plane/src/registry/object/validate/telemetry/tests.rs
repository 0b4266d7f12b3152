use crate::registry::testutil::{parse_files, problems};

/// A Telemetry named `t` in `default` with `spec` (which starts on line 5).
fn telemetry(spec: &str) -> String {
    format!(
        "apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {{name: t}}\nspec:\n{spec}"
    )
}

fn one(text: &str) -> String {
    let got = problems(&[("x.yaml", text)]);
    assert_eq!(got.len(), 1, "{got:?}");
    got[0].clone()
}

/// The warnings of a set of files that is accepted.
fn warnings(text: &str) -> Vec<String> {
    match parse_files(&[("x.yaml", text)]) {
        Ok(snapshot) => snapshot.warnings().to_vec(),
        Err(e) => panic!("expected the manifest to be accepted: {e}"),
    }
}

#[test]
fn a_sampling_percentage_outside_0_to_100_is_refused_at_its_line() {
    for (value, shown) in [("150", "150"), ("-0.5", "-0.5"), ("100.0001", "100.0001")] {
        assert_eq!(
            one(&telemetry(&format!(
                "  tracing:\n  - randomSamplingPercentage: {value}\n"
            ))),
            format!(
                "x.yaml: document 1 (line 6): Telemetry \"t\": spec.tracing[0].randomSamplingPercentage: must be between 0 and 100, not {shown}"
            ),
            "{value}"
        );
    }
    // YAML's infinities and NaN are refused by the decoder itself, at the line.
    for value in [".inf", ".nan", "-.inf", "1e309"] {
        let got = one(&telemetry(&format!(
            "  tracing:\n  - randomSamplingPercentage: {value}\n"
        )));
        assert!(got.contains("(line 6)") && got.contains(value), "{got}");
    }
    // The bounds themselves are fine.
    for value in ["0", "100", "0.01"] {
        warnings(&telemetry(&format!(
            "  tracing:\n  - randomSamplingPercentage: {value}\n"
        )));
    }
}

#[test]
fn wrong_types_unknown_fields_and_enum_values_are_refused_by_name() {
    let wrong_type = one(&telemetry(
        "  tracing:\n  - randomSamplingPercentage: ten\n",
    ));
    assert!(
        wrong_type.contains("line 6") && wrong_type.contains("randomSamplingPercentage"),
        "{wrong_type}"
    );
    let wrong_type = one(&telemetry("  accessLogging:\n  - disabled: maybe\n"));
    assert!(wrong_type.contains("disabled"), "{wrong_type}");
    assert_eq!(
        one(&telemetry("  tracing:\n  - randomSamplingPercent: 5\n")),
        "x.yaml: document 1 (line 6): Telemetry \"t\": spec.tracing[0].randomSamplingPercent: unknown field; did you mean randomSamplingPercentage?"
    );
    let mode = one(&telemetry("  tracing:\n  - match: {mode: BOTH}\n"));
    assert!(
        mode.contains("unknown value \"BOTH\"; expected one of CLIENT_AND_SERVER, CLIENT, SERVER"),
        "{mode}"
    );
}

#[test]
fn providers_need_names_and_selector_excludes_target_refs() {
    assert_eq!(
        one(&telemetry("  accessLogging:\n  - providers: [{}]\n")),
        "x.yaml: document 1 (line 6): Telemetry \"t\": spec.accessLogging[0].providers[0].name: is required"
    );
    let both = one(&telemetry(
        "  selector: {matchLabels: {app: web}}\n  targetRefs: [{kind: Service, name: web}]\n",
    ));
    assert!(
        both.contains("spec.selector: only one of selector or targetRef/targetRefs may be set"),
        "{both}"
    );
    let labels = one(&telemetry("  selector: {matchLabels: {app: \"*\"}}\n"));
    assert!(labels.contains("spec.selector.matchLabels.app"), "{labels}");
    let tags = one(&telemetry(
        "  metrics:\n  - overrides:\n    - tagOverrides: {request_protocol: {operation: REMOVE, value: x}}\n",
    ));
    assert!(
        tags.contains("tagOverrides.request_protocol.value: must not be set for operation REMOVE"),
        "{tags}"
    );
}

#[test]
fn what_sinew_does_not_apply_is_accepted_with_a_warning_naming_the_field() {
    let got = warnings(&telemetry(
        "  tracing:\n  - providers: [{name: otel}]\n    customTags: {team: {literal: {value: a}}}\n    match: {mode: CLIENT}\n  - randomSamplingPercentage: 5\n  accessLogging:\n  - providers: [{name: envoy}, {name: otel-logs}]\n    filter: {expression: response.code >= 400}\n  metrics:\n  - overrides: [{match: {metric: REQUEST_COUNT}, disabled: true}]\n",
    ));
    let expect = [
        "spec.tracing[0].match.mode: CLIENT is applied as CLIENT_AND_SERVER",
        "spec.tracing[0].providers: tracing providers are not looked up",
        "spec.tracing[0].customTags: accepted and not applied",
        "spec.tracing[1]: not applied: Sinew applies the first tracing entry",
        "spec.accessLogging[0].providers[1].name: provider \"otel-logs\" is not known to Sinew",
        "spec.accessLogging[0].filter: accepted and not applied",
        "spec.metrics: accepted and not applied",
    ];
    for e in expect {
        assert!(
            got.iter()
                .any(|w| w.contains(e) && w.contains("Telemetry \"t\"")),
            "no warning {e:?} in {got:#?}"
        );
    }
    assert_eq!(got.len(), expect.len(), "{got:#?}");
    let targeted = warnings(&telemetry("  targetRefs: [{kind: Service, name: web}]\n"));
    assert!(
        targeted
            .iter()
            .any(|w| w.contains("spec.targetRefs: policy attachment by targetRef is not supported by Sinew; this Telemetry is not applied")),
        "{targeted:?}"
    );
}

#[test]
fn both_istio_versions_are_one_kind_and_conflicts_are_warned() {
    let two = format!(
        "{}---\napiVersion: telemetry.istio.io/v1alpha1\nkind: Telemetry\nmetadata: {{name: t}}\nspec: {{}}\n",
        telemetry("  tracing: [{randomSamplingPercentage: 5}]\n")
    );
    let dup = one(&two);
    assert!(
        dup.contains("Telemetry \"t\" in namespace \"default\" is already defined at x.yaml"),
        "{dup}"
    );

    let text = format!(
        "{}---\napiVersion: telemetry.istio.io/v1alpha1\nkind: Telemetry\nmetadata: {{name: u}}\nspec: {{}}\n---\napiVersion: v1\nkind: Pod\nmetadata: {{name: web-0, labels: {{app: web, tier: front}}}}\nspec: {{containers: [{{name: c}}]}}\n---\napiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {{name: by-app}}\nspec: {{selector: {{matchLabels: {{app: web}}}}}}\n---\napiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {{name: by-tier}}\nspec: {{selector: {{matchLabels: {{tier: front}}}}}}\n",
        telemetry("  tracing: [{randomSamplingPercentage: 5}]\n")
    );
    let got = warnings(&text);
    assert!(
        got.iter().any(|w| w.contains(
            "Telemetry \"u\": namespace \"default\" already has Telemetry \"t\" without a selector"
        )),
        "{got:#?}"
    );
    assert!(
        got.iter().any(|w| w.contains("Telemetry \"by-tier\": selects pod \"web-0\", which the older Telemetry \"by-app\" also selects")),
        "{got:#?}"
    );
}
