//! Host names as Istio's traffic rules write them: short-name expansion, wildcard matching and
//! "most specific" ordering (reference §1.9). Shared by the model's cross-object checks and the
//! policy compiler, so both read a host the same way.

use super::CLUSTER_DOMAIN;

/// Istio's `ResolveShortnameToFQDN`: a host without a dot is `<host>.<namespace>.svc.cluster.local`;
/// anything with a dot is already fully qualified (`reviews.default` is *not* expanded), and `*`
/// is kept.
pub fn expand(host: &str, namespace: &str) -> String {
    if host == "*" || host.contains('.') || host.parse::<std::net::IpAddr>().is_ok() {
        host.to_string()
    } else {
        format!("{host}.{namespace}.{CLUSTER_DOMAIN}")
    }
}

/// Whether the rule host `pattern` (expanded) covers the service name `fqdn`: equal, `*`, or
/// `*.<suffix>` with `fqdn` ending in `.<suffix>`.
pub fn matches(pattern: &str, fqdn: &str) -> bool {
    if pattern == fqdn || pattern == "*" {
        return true;
    }
    pattern
        .strip_prefix('*')
        .is_some_and(|suffix| suffix.starts_with('.') && fqdn.ends_with(suffix))
}

/// Specificity of a matching pattern, larger is more specific: an exact name beats any
/// wildcard, a longer wildcard beats a shorter one (Istio's `MoreSpecific`).
pub fn specificity(pattern: &str) -> (bool, usize) {
    (!pattern.starts_with('*'), pattern.len())
}

/// Istio's `ValidateWildcardDomain`: DNS labels, with `*` allowed only as the whole leftmost label.
pub fn check(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("must not be empty".into());
    }
    if host.len() > 255 {
        return Err("is longer than 255 characters".into());
    }
    let rest = match host.strip_prefix('*') {
        Some("") => return Ok(()),
        Some(rest) => match rest.strip_prefix('.') {
            Some(rest) => rest,
            None => return Err(format!("{host:?}: '*' must be the whole leftmost label")),
        },
        None => host,
    };
    for label in rest.split('.') {
        if !super::selector::is_dns_label(label) {
            return Err(format!(
                "{host:?}: {label:?} is not a DNS label ('*' only as the leftmost label)"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_expand_in_the_rules_namespace_and_dotted_names_do_not() {
        assert_eq!(expand("reviews", "shop"), "reviews.shop.svc.cluster.local");
        assert_eq!(expand("reviews.default", "shop"), "reviews.default");
        assert_eq!(expand("*", "shop"), "*");
        assert_eq!(
            expand("*.shop.svc.cluster.local", "x"),
            "*.shop.svc.cluster.local"
        );
    }

    #[test]
    fn wildcards_match_suffixes_and_rank_below_exact_names() {
        assert!(matches(
            "*.shop.svc.cluster.local",
            "a.shop.svc.cluster.local"
        ));
        assert!(!matches(
            "*.shop.svc.cluster.local",
            "shop.svc.cluster.local"
        ));
        assert!(matches("*", "a.b"));
        assert!(specificity("a.b.c") > specificity("*.b.c"));
        assert!(specificity("*.a.b.c") > specificity("*.b.c"));
    }

    #[test]
    fn a_star_is_only_allowed_as_the_leftmost_label() {
        assert!(check("*.example.com").is_ok());
        assert!(check("*").is_ok());
        assert!(check("reviews").is_ok());
        assert!(check("a.*.com").is_err());
        assert!(check("*example.com").is_err());
        assert!(check("").is_err());
    }
}
