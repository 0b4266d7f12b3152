use super::*;

const ROOT: &str = "sinew-system";

/// Namespaces `sinew-system`, `shop` and `other`, then `policies` (YAML documents, oldest first).
fn rules(policies: &str) -> PeerAuthenticationRules {
    let yaml = format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: sinew-system}}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: shop}}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: other}}\n{policies}"
    );
    let snapshot = Snapshot::from_yaml("p.yaml", &yaml).unwrap_or_else(|e| panic!("{e}"));
    PeerAuthenticationRules::new(&snapshot, ROOT)
}

fn policy(namespace: &str, name: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec:\n{spec}"
    )
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn mode(rules: &PeerAuthenticationRules, namespace: &str, pod: &[(&str, &str)]) -> InboundMode {
    rules.resolve(namespace, &labels(pod)).mode
}

use InboundMode::{Disable, Permissive, Strict};

#[test]
fn without_policies_every_workload_is_permissive() {
    let r = rules("");
    assert_eq!(
        r.resolve("shop", &labels(&[("app", "web")])),
        PodMtls::default()
    );
    assert_eq!(PodMtls::default().mode, Permissive);
    assert!(!r.plaintext("shop", &labels(&[]), 80));
}

#[test]
fn workload_beats_namespace_beats_mesh() {
    let all = [
        policy(ROOT, "mesh", "  mtls: {mode: STRICT}\n"),
        policy("shop", "ns", "  mtls: {mode: PERMISSIVE}\n"),
        policy(
            "shop",
            "web",
            "  selector: {matchLabels: {app: web}}\n  mtls: {mode: DISABLE}\n",
        ),
    ];
    let r = rules(&all.concat());
    assert_eq!(mode(&r, "shop", &[("app", "web")]), Disable);
    assert_eq!(mode(&r, "shop", &[("app", "db")]), Permissive);
    assert_eq!(mode(&r, "other", &[("app", "web")]), Strict);
    assert_eq!(mode(&r, ROOT, &[("app", "web")]), Strict);
    // Each level alone.
    assert_eq!(mode(&rules(&all[0]), "shop", &[]), Strict);
    assert_eq!(mode(&rules(&all[1]), "shop", &[]), Permissive);
    assert_eq!(mode(&rules(&all[2]), "shop", &[("app", "web")]), Disable);
}

#[test]
fn unset_inherits_the_level_above_and_is_permissive_at_the_top() {
    let r = rules(
        &[
            policy(ROOT, "mesh", "  mtls: {mode: STRICT}\n"),
            policy("shop", "ns", "  mtls: {mode: UNSET}\n"),
            policy("shop", "web", "  selector: {matchLabels: {app: web}}\n"),
        ]
        .concat(),
    );
    assert_eq!(mode(&r, "shop", &[("app", "web")]), Strict);
    assert_eq!(mode(&r, "shop", &[]), Strict);
    let top = rules(&policy(ROOT, "mesh", "  mtls: {mode: UNSET}\n"));
    assert_eq!(mode(&top, "shop", &[]), Permissive);
}

#[test]
fn within_one_level_the_oldest_policy_wins_even_when_it_is_unset() {
    // Documents count as older the earlier they come.
    let r = rules(
        &[
            policy(ROOT, "mesh", "  mtls: {mode: STRICT}\n"),
            policy("shop", "first", "  mtls: {mode: UNSET}\n"),
            policy("shop", "second", "  mtls: {mode: DISABLE}\n"),
            policy(
                "shop",
                "by-app",
                "  selector: {matchLabels: {app: web}}\n  mtls: {mode: PERMISSIVE}\n",
            ),
            policy(
                "shop",
                "by-tier",
                "  selector: {matchLabels: {tier: front}}\n  mtls: {mode: DISABLE}\n",
            ),
        ]
        .concat(),
    );
    // "first" (UNSET) is the namespace's policy, so the mesh's STRICT shows through.
    assert_eq!(mode(&r, "shop", &[]), Strict);
    assert_eq!(
        mode(&r, "shop", &[("app", "web"), ("tier", "front")]),
        Permissive
    );
    assert_eq!(mode(&r, "shop", &[("tier", "front")]), Disable);
}

#[test]
fn port_level_modes_override_the_workload_and_unset_ports_take_its_mode() {
    let r = rules(
        &[
            policy("shop", "ns", "  mtls: {mode: STRICT}\n"),
            policy(
                "shop",
                "web",
                "  selector: {matchLabels: {app: web}}\n  portLevelMtls:\n    8080: {mode: DISABLE}\n    9090: {mode: UNSET}\n    9443: {mode: PERMISSIVE}\n",
            ),
        ]
        .concat(),
    );
    let web = r.resolve("shop", &labels(&[("app", "web")]));
    assert_eq!(web.mode, Strict, "no workload mode: the namespace's");
    assert_eq!(
        web.ports,
        BTreeMap::from([(8080, Disable), (9090, Strict), (9443, Permissive)])
    );
    assert_eq!(web.mode_on(8080), Disable);
    assert_eq!(web.mode_on(7000), Strict);
    assert!(r.plaintext("shop", &labels(&[("app", "web")]), 8080));
    assert!(!r.plaintext("shop", &labels(&[("app", "web")]), 9090));
    assert!(!r.plaintext("shop", &labels(&[("app", "db")]), 8080));
}

#[test]
fn selector_policies_in_the_root_namespace_are_ignored_with_a_warning() {
    let r = rules(&policy(
        ROOT,
        "root-web",
        "  selector: {matchLabels: {app: web}}\n  mtls: {mode: DISABLE}\n",
    ));
    assert_eq!(mode(&r, "shop", &[("app", "web")]), Permissive);
    assert_eq!(mode(&r, ROOT, &[("app", "web")]), Permissive);
    assert_eq!(r.warnings().len(), 1);
    assert!(
        r.warnings()[0].contains("PeerAuthentication \"root-web\": a selector in the root namespace \"sinew-system\" is ignored"),
        "{:?}",
        r.warnings()
    );
}
