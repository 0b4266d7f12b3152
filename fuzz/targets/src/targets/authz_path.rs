//! The request path as authorization sees it (`authz::path::normalize`): every inbound request
//! to a workload with an AuthorizationPolicy goes through it, and what it returns is both what
//! the policy matches and what the app receives.
//!
//! Contract checked:
//! - never panics, whatever the bytes;
//! - a normalised path starts with `/`, has no `.` or `..` segment, no `//`, no `\`, and no
//!   percent-encoding of `/`, `\` or an unreserved character (no encoded form left to decode
//!   into something else);
//! - normalising it again gives it back unchanged, without allocating (what the policy saw is
//!   what a second look sees);
//! - a rule for `/admin` matches every spelling of `/admin` the input could be.

use sinew_proxy::authz::matcher::PathMatch;
use sinew_proxy::authz::path::normalize;
use std::borrow::Cow;

/// Checks one input; returns its outcome.
pub fn check(data: &[u8]) -> String {
    let Ok(path) = std::str::from_utf8(data) else {
        return "not utf-8".into();
    };
    let Ok(normal) = normalize(path) else {
        return "refused".into();
    };
    assert!(normal.starts_with('/'), "{path:?} -> {normal:?}");
    for seg in normal.split('/').skip(1) {
        assert!(
            seg != "." && seg != "..",
            "dot segment: {path:?} -> {normal:?}"
        );
    }
    assert!(
        !normal.contains("//") && !normal.contains('\\'),
        "{path:?} -> {normal:?}"
    );
    let upper = normal.to_ascii_uppercase();
    for encoded in ["%2F", "%5C", "%2E", "%41", "%7E", "%2D", "%5F", "%30"] {
        assert!(
            !upper.contains(encoded),
            "{encoded} left in {path:?} -> {normal:?}"
        );
    }
    let again = normalize(&normal).expect("a normal path normalises");
    assert!(
        matches!(again, Cow::Borrowed(_)),
        "{path:?} -> {normal:?} -> {again:?}"
    );
    let admin = PathMatch::parse("/admin").unwrap();
    if admin.matches(&normal) {
        "admin".into()
    } else if normal != path {
        "changed".into()
    } else {
        "normal".into()
    }
}
