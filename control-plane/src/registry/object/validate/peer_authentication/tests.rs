use crate::registry::istio::peer_authentication::{MtlsMode, PortKey};
use crate::registry::testutil::{parse_files, problems};

/// A PeerAuthentication named `p` in `default` with `spec` (which starts on line 5).
fn policy(spec: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {{name: p}}\nspec:\n{spec}"
    )
}

fn one(text: &str) -> String {
    let got = problems(&[("x.yaml", text)]);
    assert_eq!(got.len(), 1, "{got:?}");
    got[0].clone()
}

fn accepted(text: &str) -> crate::registry::Snapshot {
    parse_files(&[("x.yaml", text)]).unwrap_or_else(|e| panic!("expected it accepted: {e}"))
}

#[test]
fn an_unknown_field_or_mode_is_refused_at_its_line() {
    assert_eq!(
        one(&policy("  mtls: {mod: STRICT}\n")),
        "x.yaml: document 1 (line 5): PeerAuthentication \"p\": spec.mtls.mod: unknown field; did you mean mode?"
    );
    let mode = one(&policy("  mtls:\n    mode: STRICTER\n"));
    assert!(
        mode.contains("(line 6)")
            && mode.contains(
                "unknown value \"STRICTER\"; expected one of UNSET, DISABLE, PERMISSIVE, STRICT"
            ),
        "{mode}"
    );
    let lower = one(&policy("  mtls: {mode: strict}\n"));
    assert!(lower.contains("unknown value \"strict\""), "{lower}");
}

#[test]
fn modes_are_read_by_name_or_by_number_and_ports_as_integers_or_strings() {
    let snapshot = accepted(&policy(
        "  selector: {matchLabels: {app: web}}\n  mtls: {mode: 3}\n  portLevelMtls:\n    8080: {mode: DISABLE}\n    \"9090\": {mode: 2}\n",
    ));
    let spec = &snapshot.peer_authentications()[0].spec;
    assert_eq!(spec.mtls.as_ref().unwrap().mode, Some(MtlsMode::STRICT));
    let ports: Vec<(PortKey, Option<MtlsMode>)> = spec
        .port_level_mtls
        .iter()
        .flatten()
        .map(|(k, v)| (*k, v.mode))
        .collect();
    assert_eq!(
        ports,
        [
            (PortKey(8080), Some(MtlsMode::DISABLE)),
            (PortKey(9090), Some(MtlsMode::PERMISSIVE))
        ]
    );
}

#[test]
fn port_level_modes_need_a_selector_and_ports_in_range() {
    assert_eq!(
        one(&policy("  portLevelMtls:\n    8080: {mode: DISABLE}\n")),
        "x.yaml: document 1 (line 5): PeerAuthentication \"p\": spec.portLevelMtls: requires a selector with matchLabels: port-level modes are about one workload's ports, so mesh and namespace policies cannot set them"
    );
    let empty_selector = one(&policy(
        "  selector: {matchLabels: {}}\n  portLevelMtls:\n    8080: {mode: DISABLE}\n",
    ));
    assert!(
        empty_selector.contains("spec.portLevelMtls: requires a selector"),
        "{empty_selector}"
    );
    for port in ["0", "65536"] {
        assert_eq!(
            one(&policy(&format!(
                "  selector: {{matchLabels: {{app: web}}}}\n  portLevelMtls:\n    {port}: {{mode: DISABLE}}\n"
            ))),
            format!(
                "x.yaml: document 1 (line 7): PeerAuthentication \"p\": spec.portLevelMtls.{port}: port must be between 1 and 65535, not {port}"
            )
        );
    }
    let label = one(&policy("  selector: {matchLabels: {app: \"*\"}}\n"));
    assert!(label.contains("spec.selector.matchLabels.app"), "{label}");
}

#[test]
fn an_empty_spec_is_valid_and_both_versions_are_one_kind() {
    accepted(&policy("  {}\n"));
    let two = format!(
        "{}---\napiVersion: security.istio.io/v1beta1\nkind: PeerAuthentication\nmetadata: {{name: p}}\nspec: {{}}\n",
        policy("  mtls: {mode: STRICT}\n")
    );
    let dup = one(&two);
    assert!(
        dup.contains(
            "PeerAuthentication \"p\" in namespace \"default\" is already defined at x.yaml"
        ),
        "{dup}"
    );
}

#[test]
fn policies_of_one_scope_that_disagree_are_warned_and_the_oldest_named() {
    let text = format!(
        "{}---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {{name: q}}\nspec: {{mtls: {{mode: DISABLE}}}}\n---\napiVersion: v1\nkind: Pod\nmetadata: {{name: web-0, labels: {{app: web, tier: front}}}}\nspec: {{containers: [{{name: c}}]}}\n---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {{name: by-app}}\nspec: {{selector: {{matchLabels: {{app: web}}}}}}\n---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {{name: by-tier}}\nspec: {{selector: {{matchLabels: {{tier: front}}}}}}\n",
        policy("  mtls: {mode: STRICT}\n")
    );
    let got = accepted(&text).warnings().to_vec();
    assert!(
        got.iter().any(|w| w.contains("PeerAuthentication \"q\": namespace \"default\" already has PeerAuthentication \"p\" without a selector")),
        "{got:#?}"
    );
    assert!(
        got.iter().any(|w| w.contains("PeerAuthentication \"by-tier\": selects pod \"web-0\", which the older PeerAuthentication \"by-app\" also selects")),
        "{got:#?}"
    );
}
