use super::*;

fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn read(pairs: &[(&str, &str)]) -> (Result<Effective, Vec<Problem>>, Vec<String>) {
    let mut warnings = Vec::new();
    let out = effective(&Settings::default(), &annotations(pairs), &mut warnings);
    (out, warnings)
}

fn ok(pairs: &[(&str, &str)]) -> (Effective, Vec<String>) {
    let (out, warnings) = read(pairs);
    (out.unwrap_or_else(|p| panic!("{p:?}")), warnings)
}

fn text(q: &Option<Quantity>) -> Option<&str> {
    q.as_ref().map(Quantity::as_str)
}

#[test]
fn no_annotations_mean_the_settings() {
    let (e, warnings) = ok(&[]);
    let s = Settings::default();
    assert_eq!(e.proxy_image, s.proxy_image);
    assert_eq!(e.proxy_resources, s.proxy_resources);
    assert_eq!(e.log_level, "info");
    assert!(e.native_sidecar && e.rewrite_app_probes);
    assert_eq!(e.inbound_mode, None);
    assert!(warnings.is_empty());
}

#[test]
fn each_sinew_annotation_overrides_its_setting() {
    let (e, warnings) = ok(&[
        ("sinew.dev/proxy-image", "registry.local/proxy:dev"),
        ("sinew.dev/proxy-cpu", "100m"),
        ("sinew.dev/proxy-cpu-limit", "1"),
        ("sinew.dev/proxy-memory", "64Mi"),
        ("sinew.dev/proxy-memory-limit", "1Gi"),
        ("sinew.dev/log-level", "debug"),
        ("sinew.dev/native-sidecar", "false"),
        ("sinew.dev/rewrite-app-probes", "false"),
        ("sinew.dev/inbound-mode", "strict"),
    ]);
    assert_eq!(e.proxy_image, "registry.local/proxy:dev");
    assert_eq!(text(&e.proxy_resources.requests.cpu), Some("100m"));
    assert_eq!(text(&e.proxy_resources.limits.cpu), Some("1"));
    assert_eq!(text(&e.proxy_resources.requests.memory), Some("64Mi"));
    assert_eq!(text(&e.proxy_resources.limits.memory), Some("1Gi"));
    assert_eq!(e.log_level, "debug");
    assert!(!e.native_sidecar && !e.rewrite_app_probes);
    assert_eq!(e.inbound_mode, Some(InboundMode::Strict));
    assert!(warnings.is_empty(), "{warnings:?}");
}

#[test]
fn istios_annotations_are_honoured_and_ours_win() {
    let (e, warnings) = ok(&[
        ("sidecar.istio.io/proxyImage", "istio-style:1"),
        ("sidecar.istio.io/proxyCPU", "200m"),
        ("sidecar.istio.io/proxyMemoryLimit", "512Mi"),
        ("sidecar.istio.io/logLevel", "warning"),
        ("sidecar.istio.io/rewriteAppHTTPProbers", "False"),
        ("sidecar.istio.io/nativeSidecar", "false"),
    ]);
    assert_eq!(e.proxy_image, "istio-style:1");
    assert_eq!(text(&e.proxy_resources.requests.cpu), Some("200m"));
    assert_eq!(text(&e.proxy_resources.limits.memory), Some("512Mi"));
    assert_eq!(e.log_level, "warn", "Istio's name mapped to ours");
    assert!(!e.rewrite_app_probes && !e.native_sidecar);
    assert!(warnings.is_empty(), "{warnings:?}");

    let (e, warnings) = ok(&[
        ("sinew.dev/proxy-cpu", "300m"),
        ("sidecar.istio.io/proxyCPU", "200m"),
    ]);
    assert_eq!(text(&e.proxy_resources.requests.cpu), Some("300m"));
    assert_eq!(
        warnings,
        [
            "annotations sinew.dev/proxy-cpu and sidecar.istio.io/proxyCPU disagree; sinew.dev/proxy-cpu is used"
        ]
    );
}

#[test]
fn every_unusable_value_is_a_problem_naming_its_annotation() {
    let (out, _) = read(&[
        ("sinew.dev/proxy-image", "has space"),
        ("sinew.dev/proxy-cpu", "lots"),
        ("sidecar.istio.io/proxyMemory", "-1Mi"),
        ("sinew.dev/log-level", "chatty"),
        ("sinew.dev/native-sidecar", "yes"),
        ("sinew.dev/rewrite-app-probes", "nope"),
        ("sinew.dev/inbound-mode", "strictly"),
    ]);
    let problems = out.expect_err("refused");
    let named: Vec<&str> = problems.iter().map(|p| p.annotation.as_str()).collect();
    assert_eq!(
        named,
        [
            "sinew.dev/proxy-image",
            "sinew.dev/proxy-cpu",
            "sidecar.istio.io/proxyMemory",
            "sinew.dev/log-level",
            "sinew.dev/native-sidecar",
            "sinew.dev/rewrite-app-probes",
            "sinew.dev/inbound-mode",
        ]
    );
    assert_eq!(
        problems[1].to_string(),
        "annotation sinew.dev/proxy-cpu: \"lots\" is not a resource quantity (a non-negative number with an optional suffix: 250m, 0.5, 128Mi, 1G)"
    );
}

#[test]
fn a_request_above_its_limit_names_the_annotation_that_did_it() {
    // The request raised over the settings' limit (256Mi).
    let (out, _) = read(&[("sinew.dev/proxy-memory", "512Mi")]);
    let p = out.expect_err("refused");
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].annotation, "sinew.dev/proxy-memory");
    assert!(
        p[0].reason
            .contains("more than the proxy's memory limit 256Mi"),
        "{}",
        p[0]
    );
    // The limit lowered under the request.
    let (out, _) = read(&[
        ("sinew.dev/proxy-cpu", "500m"),
        ("sinew.dev/proxy-cpu-limit", "0.2"),
    ]);
    let p = out.expect_err("refused");
    assert_eq!(p[0].annotation, "sinew.dev/proxy-cpu-limit");
    assert!(
        p[0].reason
            .contains("0.2 is less than the proxy's CPU request 500m"),
        "{}",
        p[0]
    );
    // Raised together: fine.
    let (e, _) = ok(&[
        ("sinew.dev/proxy-memory", "512Mi"),
        ("sinew.dev/proxy-memory-limit", "512Mi"),
    ]);
    assert_eq!(text(&e.proxy_resources.limits.memory), Some("512Mi"));
}

#[test]
fn typos_and_unsupported_istio_annotations_are_warned_about() {
    let (_, warnings) = ok(&[
        ("sinew.dev/proxy-cpus", "1"),
        ("sinew.dev/something-else", "x"),
        ("proxy.istio.io/config", "{}"),
        ("sinew.dev/inject", "true"),
        ("example.com/other", "x"),
    ]);
    assert_eq!(
        warnings,
        [
            "annotation proxy.istio.io/config is Istio's and not supported by Sinew: ignored",
            "annotation sinew.dev/proxy-cpus is not one Sinew reads; did you mean sinew.dev/proxy-cpu?",
            "annotation sinew.dev/something-else is not one Sinew reads",
        ]
    );
}

#[test]
fn distance_counts_edits() {
    assert_eq!(distance("kitten", "sitting"), 3);
    assert_eq!(distance("", "abc"), 3);
    assert_eq!(distance("same", "same"), 0);
}
