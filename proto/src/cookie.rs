//! What a `consistentHash.httpCookie` the proxy writes into a `set-cookie` header may contain:
//! the rule for the control plane's validation and the proxy's config check alike.

/// A cookie name: visible ASCII, none of `=`, `;`, `,` or `"`.
pub fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && !b"=;,\"".contains(&b))
}

/// A cookie `Path`: visible ASCII without `;` (empty: no `Path` attribute).
pub fn is_path(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_graphic() && b != b';')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_paths_that_fit_a_set_cookie_header() {
        assert!(is_name("session-id"));
        for bad in ["", "a=b", "a;b", "a b", "a\"b", "é"] {
            assert!(!is_name(bad), "{bad:?}");
        }
        assert!(is_path("") && is_path("/shop"));
        for bad in ["/a;b", "/a b", "/é"] {
            assert!(!is_path(bad), "{bad:?}");
        }
    }
}
