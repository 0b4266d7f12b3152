//! Label selectors and Kubernetes name rules, as the API server applies them.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// A Service's selector: every key must be present with an equal value. An empty selector selects
/// nothing here — Kubernetes treats a Service without a selector as "endpoints managed by hand",
/// which local mode has no way to express.
pub(crate) fn service_selects(
    selector: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Whether a `LabelSelector` (matchLabels and matchExpressions) selects `labels`. An unknown
/// operator or a malformed requirement is an error, as in the API server.
pub(crate) fn label_selector_matches(
    selector: &LabelSelector,
    labels: &BTreeMap<String, String>,
) -> Result<bool, String> {
    let by_label = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let mut by_expression = true;
    for (i, req) in selector.match_expressions.iter().flatten().enumerate() {
        let values = req.values.as_deref().unwrap_or_default();
        let value = labels.get(&req.key);
        let ok = match req.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => {
                return Err(format!(
                    "matchExpressions[{i}]: values are required for operator {}",
                    req.operator
                ));
            }
            "Exists" | "DoesNotExist" if !values.is_empty() => {
                return Err(format!(
                    "matchExpressions[{i}]: values must be empty for operator {}",
                    req.operator
                ));
            }
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => !value.is_some_and(|v| values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            other => {
                return Err(format!(
                    "matchExpressions[{i}]: unknown operator {other:?} (use In, NotIn, Exists or DoesNotExist)"
                ));
            }
        };
        by_expression &= ok;
    }
    Ok(by_label && by_expression)
}

/// A selector with no requirements matches everything, which a Deployment may not have.
pub(crate) fn label_selector_is_empty(selector: &LabelSelector) -> bool {
    selector.match_labels.as_ref().is_none_or(|m| m.is_empty())
        && selector
            .match_expressions
            .as_ref()
            .is_none_or(|e| e.is_empty())
}

/// RFC 1123 label (namespaces).
pub(crate) use sinew_proto::names::is_dns1123_label as is_dns_label;

/// RFC 1035 label (Services, whose names become DNS names): an RFC 1123 label starting with a
/// letter.
pub(crate) fn is_dns1035_label(s: &str) -> bool {
    is_dns_label(s) && s.starts_with(|c: char| c.is_ascii_lowercase())
}

/// RFC 1123 subdomain (most object names): dot-separated labels, at most 253 bytes.
pub(crate) fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// IANA service name (named ports): at most 15 of `[a-z0-9-]`, at least one letter, no hyphen at
/// either end or twice in a row.
pub(crate) fn is_port_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 15
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && s.bytes().any(|b| b.is_ascii_lowercase())
        && !s.starts_with('-')
        && !s.ends_with('-')
        && !s.contains("--")
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn service_selector_needs_every_key_and_selects_nothing_when_empty() {
        let pod = labels(&[("app", "reviews"), ("version", "v1")]);
        assert!(service_selects(&labels(&[("app", "reviews")]), &pod));
        assert!(!service_selects(&labels(&[("app", "ratings")]), &pod));
        assert!(!service_selects(
            &labels(&[("app", "reviews"), ("tier", "x")]),
            &pod
        ));
        assert!(!service_selects(&labels(&[]), &pod));
    }

    #[test]
    fn label_selector_applies_expressions_and_rejects_unknown_operators() {
        let pod = labels(&[("app", "reviews"), ("version", "v1")]);
        let req = |key: &str, op: &str, values: &[&str]| LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: (!values.is_empty()).then(|| values.iter().map(|v| v.to_string()).collect()),
        };
        let sel = |reqs| LabelSelector {
            match_labels: Some(labels(&[("app", "reviews")])),
            match_expressions: Some(reqs),
        };
        assert_eq!(
            label_selector_matches(&sel(vec![req("version", "In", &["v1", "v2"])]), &pod),
            Ok(true)
        );
        assert_eq!(
            label_selector_matches(&sel(vec![req("version", "NotIn", &["v1"])]), &pod),
            Ok(false)
        );
        assert_eq!(
            label_selector_matches(&sel(vec![req("canary", "DoesNotExist", &[])]), &pod),
            Ok(true)
        );
        assert_eq!(
            label_selector_matches(&sel(vec![req("canary", "Exists", &[])]), &pod),
            Ok(false)
        );
        let err = label_selector_matches(&sel(vec![req("version", "Equals", &["v1"])]), &pod)
            .expect_err("unknown operator");
        assert!(err.contains("unknown operator \"Equals\""), "{err}");
        assert!(label_selector_matches(&sel(vec![req("version", "In", &[])]), &pod).is_err());
    }

    #[test]
    fn names_follow_kubernetes_rules() {
        assert!(is_dns_label("shop-1"));
        assert!(!is_dns_label("Shop"));
        assert!(!is_dns_label("-shop"));
        assert!(!is_dns_label(&"a".repeat(64)));
        assert!(is_dns1035_label("reviews"));
        assert!(!is_dns1035_label("1reviews"));
        assert!(is_dns_subdomain("reviews.v1"));
        assert!(!is_dns_subdomain("reviews..v1"));
        assert!(is_port_name("http-web"));
        assert!(!is_port_name("8080"));
        assert!(!is_port_name("http--web"));
        assert!(!is_port_name("a-very-long-port-name"));
    }
}
