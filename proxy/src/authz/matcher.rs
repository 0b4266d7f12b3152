//! The value matchers of an AuthorizationPolicy: Istio's string forms, IP blocks and path
//! templates, compiled once per config.

use std::net::IpAddr;

/// Istio's string match: `*` (any non-empty value), `abc*` (prefix), `*abc` (suffix), or exact.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StringMatch {
    Presence,
    Prefix(Box<str>),
    Suffix(Box<str>),
    Exact(Box<str>),
}

// === impl StringMatch ===

impl StringMatch {
    pub fn new(pattern: &str) -> Self {
        if pattern == "*" {
            Self::Presence
        } else if let Some(p) = pattern.strip_suffix('*') {
            Self::Prefix(p.into())
        } else if let Some(s) = pattern.strip_prefix('*') {
            Self::Suffix(s.into())
        } else {
            Self::Exact(pattern.into())
        }
    }

    /// Whether `value` matches; an absent value matches nothing (not even `*`).
    pub fn matches(&self, value: Option<&str>) -> bool {
        self.matches_bytes(value.map(str::as_bytes))
    }

    /// As [`Self::matches`], on bytes as they came (header values).
    pub fn matches_bytes(&self, value: Option<&[u8]>) -> bool {
        let Some(v) = value else { return false };
        match self {
            Self::Presence => !v.is_empty(),
            Self::Prefix(p) => v.starts_with(p.as_bytes()),
            Self::Suffix(s) => v.ends_with(s.as_bytes()),
            Self::Exact(e) => v == e.as_bytes(),
        }
    }

    /// As [`Self::matches`], ignoring ASCII case (hosts).
    pub fn matches_ignore_case(&self, value: Option<&str>) -> bool {
        let Some(v) = value else { return false };
        let v = v.as_bytes();
        match self {
            Self::Presence => !v.is_empty(),
            Self::Prefix(p) => {
                v.len() >= p.len() && v[..p.len()].eq_ignore_ascii_case(p.as_bytes())
            }
            Self::Suffix(s) => {
                v.len() >= s.len() && v[v.len() - s.len()..].eq_ignore_ascii_case(s.as_bytes())
            }
            Self::Exact(e) => v.eq_ignore_ascii_case(e.as_bytes()),
        }
    }
}

/// An IP address or CIDR block (`10.0.0.0/8`, `2001:db8::/32`, `198.51.100.7`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpBlock {
    net: IpAddr,
    prefix: u8,
}

// === impl IpBlock ===

impl IpBlock {
    pub fn parse(s: &str) -> Result<Self, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let net: IpAddr = addr
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or CIDR block"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            // "08" and "+8" parse as 8; written so, they are typos worth refusing.
            Some(p) if p.starts_with('+') || (p.len() > 1 && p.starts_with('0')) => {
                return Err(format!("{s:?} has an invalid prefix length"));
            }
            Some(p) => match p.parse::<u8>() {
                Ok(p) if p <= max => p,
                _ => return Err(format!("{s:?} has an invalid prefix length")),
            },
        };
        Ok(Self { net, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        // A v4 client reached over a dual-stack socket shows as ::ffff:a.b.c.d.
        match (self.net, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// A path pattern: Istio's string forms, or a template of whole segments where `{*}` is one
/// segment and a final `{**}` is any number of them (zero included).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathMatch {
    String(StringMatch),
    Template {
        segments: Box<[Segment]>,
        /// Ends with `{**}`.
        rest: bool,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Segment {
    Literal(Box<str>),
    Any,
}

// === impl PathMatch ===

impl PathMatch {
    pub fn parse(pattern: &str) -> Result<Self, String> {
        if !pattern.contains('{') && !pattern.contains('}') {
            return Ok(Self::String(StringMatch::new(pattern)));
        }
        let Some(body) = pattern.strip_prefix('/') else {
            return Err(format!("path template {pattern:?} must start with '/'"));
        };
        let parts: Vec<&str> = body.split('/').collect();
        let mut segments = Vec::with_capacity(parts.len());
        let mut rest = false;
        for (i, part) in parts.iter().enumerate() {
            match *part {
                "{**}" if i + 1 == parts.len() => rest = true,
                "{**}" => {
                    return Err(format!(
                        "path template {pattern:?}: {{**}} may only be the last segment"
                    ));
                }
                "{*}" => segments.push(Segment::Any),
                p if p.contains(['{', '}', '*']) => {
                    return Err(format!(
                        "path template {pattern:?}: operators must be whole segments ({{*}} or {{**}})"
                    ));
                }
                p => segments.push(Segment::Literal(p.into())),
            }
        }
        Ok(Self::Template {
            segments: segments.into(),
            rest,
        })
    }

    /// Whether the (normalised, query-less) `path` matches.
    pub fn matches(&self, path: &str) -> bool {
        match self {
            Self::String(s) => s.matches(Some(path)),
            Self::Template { segments, rest } => {
                let Some(body) = path.strip_prefix('/') else {
                    return false;
                };
                let mut parts = body.split('/');
                for seg in segments.iter() {
                    match (seg, parts.next()) {
                        (_, None) => return false,
                        (Segment::Any, Some("")) => return false,
                        (Segment::Any, Some(_)) => {}
                        (Segment::Literal(l), Some(p)) if **l == *p => {}
                        (Segment::Literal(_), Some(_)) => return false,
                    }
                }
                *rest || parts.next().is_none()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn istios_string_forms() {
        let m = |p: &str, v: Option<&str>| StringMatch::new(p).matches(v);
        assert!(m("*", Some("x")));
        assert!(!m("*", Some("")), "presence means a non-empty value");
        assert!(!m("*", None));
        assert!(m("/orders/*", Some("/orders/1")));
        assert!(m("/orders/*", Some("/orders/")));
        assert!(!m("/orders/*", Some("/orders")));
        assert!(m("*.local", Some("a.svc.cluster.local")));
        assert!(!m("*.local", Some("a.svc.cluster.local.evil")));
        assert!(m("GET", Some("GET")));
        assert!(
            !m("GET", Some("get")),
            "methods and paths are case-sensitive"
        );
        assert!(!m("GET", None));
    }

    #[test]
    fn hosts_match_without_regard_to_case() {
        let m = |p: &str, v: &str| StringMatch::new(p).matches_ignore_case(Some(v));
        assert!(m("Orders.Example.com", "orders.EXAMPLE.com"));
        assert!(m("*.EXAMPLE.com", "api.example.COM"));
        assert!(m("API.*", "api.example.com"));
        assert!(!m("api.*", "ap"));
        assert!(!m("*.example.com", "example.com"));
    }

    #[test]
    fn ip_blocks_contain_their_addresses_only() {
        let b = |s: &str| IpBlock::parse(s).unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(b("10.0.0.0/8").contains(ip("10.255.1.2")));
        assert!(!b("10.0.0.0/8").contains(ip("11.0.0.1")));
        assert!(b("198.18.0.7").contains(ip("198.18.0.7")));
        assert!(!b("198.18.0.7").contains(ip("198.18.0.8")));
        assert!(b("0.0.0.0/0").contains(ip("203.0.113.9")));
        assert!(
            b("10.0.0.0/8").contains(ip("::ffff:10.1.2.3")),
            "v4-mapped v6 is the v4 address"
        );
        assert!(b("2001:db8::/32").contains(ip("2001:db8:1::1")));
        assert!(!b("2001:db8::/32").contains(ip("2001:db9::1")));
        assert!(!b("::/0").contains(ip("10.0.0.1")), "families never mix");
        for bad in [
            "10.0.0.0/08",
            "10.0.0.0/+8",
            "10.0.0.0/33",
            "10.0.0/8",
            "x",
            "10.0.0.0/",
            "::/129",
            "10.0.0.0/-1",
        ] {
            assert!(IpBlock::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn path_templates_match_whole_segments() {
        let m = |p: &str, v: &str| PathMatch::parse(p).unwrap().matches(v);
        assert!(m("/orders/{*}", "/orders/17"));
        assert!(!m("/orders/{*}", "/orders/17/items"));
        assert!(
            !m("/orders/{*}", "/orders/"),
            "{{*}} is one non-empty segment"
        );
        assert!(!m("/orders/{*}", "/orders"));
        assert!(m("/orders/{*}/items", "/orders/17/items"));
        assert!(m("/orders/{**}", "/orders/17/items/3"));
        assert!(m("/orders/{**}", "/orders/"));
        assert!(
            m("/orders/{**}", "/orders"),
            "{{**}} is zero or more segments"
        );
        assert!(!m("/orders/{**}", "/ordersx/1"));
        assert!(!m("/a/{*}", "a/b"));
        for bad in [
            "/a/{**}/b",
            "/a/x{*}",
            "/a/{*}x",
            "a/{*}",
            "/a/{***}",
            "/a/*/{*}",
        ] {
            assert!(PathMatch::parse(bad).is_err(), "{bad}");
        }
    }
}
