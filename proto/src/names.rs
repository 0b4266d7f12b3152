//! Kubernetes name rules both the control plane (validating objects) and the proxy (validating
//! the config it receives) apply.

/// RFC 1123 label, as Kubernetes (and istiod, for subset names) checks it: at most 63 of
/// `[a-z0-9-]`, alphanumeric at both ends.
pub fn is_dns1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}
