//! One compiled rule of an AuthorizationPolicy: `from` sources, `to` operations, `when`
//! conditions, and whether it reads anything only HTTP has.

use super::matcher::{IpBlock, PathMatch, StringMatch};
use super::{Check, HttpAttrs};
use sinew_proto::config::v1 as pb;

/// Values that must match (any of them, when there are any) and values that must not (none).
#[derive(Debug)]
struct Field<M> {
    values: Box<[M]>,
    not_values: Box<[M]>,
}

// === impl Field ===

impl<M> Field<M> {
    fn compile<E>(
        values: &[String],
        not_values: &[String],
        f: impl Fn(&str) -> Result<M, E>,
    ) -> Result<Self, E> {
        Ok(Self {
            values: values.iter().map(|v| f(v)).collect::<Result<_, _>>()?,
            not_values: not_values.iter().map(|v| f(v)).collect::<Result<_, _>>()?,
        })
    }

    fn is_empty(&self) -> bool {
        self.values.is_empty() && self.not_values.is_empty()
    }

    fn holds(&self, matches: impl Fn(&M) -> bool) -> bool {
        (self.values.is_empty() || self.values.iter().any(&matches))
            && !self.not_values.iter().any(&matches)
    }
}

fn string(v: &str) -> Result<StringMatch, String> {
    Ok(StringMatch::new(v))
}

fn ip_block(v: &str) -> Result<IpBlock, String> {
    IpBlock::parse(v)
}

fn port(v: &str) -> Result<u16, String> {
    match v.parse::<u16>() {
        Ok(p) if p != 0 => Ok(p),
        _ => Err(format!("{v:?} is not a port (1-65535)")),
    }
}

fn service_account(v: &str) -> Result<(Box<str>, Box<str>), String> {
    match v.split_once('/') {
        Some((ns, sa)) if !ns.is_empty() && !sa.is_empty() && !sa.contains('/') => {
            Ok((ns.into(), sa.into()))
        }
        _ => Err(format!("service account {v:?} is not <namespace>/<name>")),
    }
}

#[derive(Debug)]
struct SourceMatch {
    principals: Field<StringMatch>,
    namespaces: Field<StringMatch>,
    service_accounts: Field<(Box<str>, Box<str>)>,
    trust_domains: Field<StringMatch>,
    ip_blocks: Field<IpBlock>,
    remote_ip_blocks: Field<IpBlock>,
}

#[derive(Debug)]
struct OperationMatch {
    hosts: Field<StringMatch>,
    ports: Field<u16>,
    methods: Field<StringMatch>,
    paths: Field<PathMatch>,
}

#[derive(Debug)]
enum Key {
    SourceIp,
    SourceNamespace,
    SourcePrincipal,
    DestinationIp,
    DestinationPort,
    ConnectionSni,
    Header(http::HeaderName),
}

#[derive(Debug)]
enum Values {
    Ips(Field<IpBlock>),
    Strings(Field<StringMatch>),
    Ports(Field<u16>),
}

#[derive(Debug)]
struct Condition {
    key: Key,
    values: Values,
}

#[derive(Debug)]
pub struct Rule {
    from: Vec<SourceMatch>,
    to: Vec<OperationMatch>,
    when: Vec<Condition>,
    /// Reads a host, method, path or header: cannot match a TCP connection in full.
    http_only: bool,
}

// === impl Rule ===

impl Rule {
    pub fn compile(r: &pb::AuthorizationRule) -> Result<Self, String> {
        let from = r
            .from
            .iter()
            .enumerate()
            .map(|(i, s)| compile_source(s).map_err(|e| format!("from[{i}]: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        let to =
            r.to.iter()
                .enumerate()
                .map(|(i, o)| compile_operation(o).map_err(|e| format!("to[{i}]: {e}")))
                .collect::<Result<Vec<_>, _>>()?;
        let when = r
            .when
            .iter()
            .enumerate()
            .map(|(i, c)| compile_condition(c).map_err(|e| format!("when[{i}]: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        let http_only = to
            .iter()
            .any(|o| !(o.hosts.is_empty() && o.methods.is_empty() && o.paths.is_empty()))
            || when.iter().any(|c| matches!(c.key, Key::Header(_)));
        Ok(Self {
            from,
            to,
            when,
            http_only,
        })
    }

    /// Whether the rule matches `check`. On a TCP connection an ALLOW or AUDIT rule that reads
    /// HTTP never matches, and a DENY rule (`deny`) is read without its HTTP parts.
    pub fn matches(&self, check: &Check<'_>, deny: bool) -> bool {
        if check.http.is_none() && self.http_only && !deny {
            return false;
        }
        (self.from.is_empty() || self.from.iter().any(|s| source_matches(s, check)))
            && (self.to.is_empty() || self.to.iter().any(|o| operation_matches(o, check)))
            && self.when.iter().all(|c| condition_holds(c, check))
    }
}

fn compile_source(s: &pb::AuthorizationSource) -> Result<SourceMatch, String> {
    Ok(SourceMatch {
        principals: Field::compile(&s.principals, &s.not_principals, string)?,
        namespaces: Field::compile(&s.namespaces, &s.not_namespaces, string)?,
        service_accounts: Field::compile(
            &s.service_accounts,
            &s.not_service_accounts,
            service_account,
        )?,
        trust_domains: Field::compile(&s.trust_domains, &s.not_trust_domains, string)?,
        ip_blocks: Field::compile(&s.ip_blocks, &s.not_ip_blocks, ip_block)?,
        remote_ip_blocks: Field::compile(&s.remote_ip_blocks, &s.not_remote_ip_blocks, ip_block)?,
    })
}

fn compile_operation(o: &pb::AuthorizationOperation) -> Result<OperationMatch, String> {
    Ok(OperationMatch {
        hosts: Field::compile(&o.hosts, &o.not_hosts, string)?,
        ports: Field::compile(&o.ports, &o.not_ports, port)?,
        methods: Field::compile(&o.methods, &o.not_methods, string)?,
        paths: Field::compile(&o.paths, &o.not_paths, PathMatch::parse)?,
    })
}

fn compile_condition(c: &pb::AuthorizationCondition) -> Result<Condition, String> {
    let key = match c.key.as_str() {
        "source.ip" | "remote.ip" => Key::SourceIp,
        "source.namespace" => Key::SourceNamespace,
        "source.principal" => Key::SourcePrincipal,
        "destination.ip" => Key::DestinationIp,
        "destination.port" => Key::DestinationPort,
        "connection.sni" => Key::ConnectionSni,
        k => {
            let name = k
                .strip_prefix("request.headers[")
                .and_then(|n| n.strip_suffix(']'))
                .ok_or_else(|| format!("unsupported key {k:?}"))?;
            Key::Header(
                http::HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| format!("{k:?} names no valid header"))?,
            )
        }
    };
    if c.values.is_empty() && c.not_values.is_empty() {
        return Err(format!("key {:?} has neither values nor notValues", c.key));
    }
    let values = match key {
        Key::SourceIp | Key::DestinationIp => {
            Values::Ips(Field::compile(&c.values, &c.not_values, ip_block)?)
        }
        Key::DestinationPort => Values::Ports(Field::compile(&c.values, &c.not_values, port)?),
        _ => Values::Strings(Field::compile(&c.values, &c.not_values, string)?),
    };
    Ok(Condition { key, values })
}

fn source_matches(s: &SourceMatch, check: &Check<'_>) -> bool {
    let src = check.source;
    let principal = src.principal.as_deref();
    s.principals.holds(|m| m.matches(principal))
        && s.namespaces.holds(|m| m.matches(src.namespace()))
        && s.service_accounts
            .holds(|(ns, sa)| src.service_account() == Some((&**ns, &**sa)))
        && s.trust_domains.holds(|m| m.matches(src.trust_domain()))
        && s.ip_blocks.holds(|b| b.contains(src.ip))
        && s.remote_ip_blocks.holds(|b| b.contains(src.ip))
}

/// HTTP fields of a TCP check (only DENY rules get this far) are left out.
fn operation_matches(o: &OperationMatch, check: &Check<'_>) -> bool {
    if !o.ports.holds(|p| *p == check.port) {
        return false;
    }
    let Some(h) = &check.http else { return true };
    o.hosts.holds(|m| host_matches(m, h.host))
        && o.methods.holds(|m| m.matches(Some(h.method)))
        && o.paths.holds(|m| m.matches(h.path))
}

/// A host pattern matches the authority as sent, or without its port (`orders:8080` is
/// `orders`), ignoring case.
fn host_matches(m: &StringMatch, host: Option<&str>) -> bool {
    let Some(host) = host else { return false };
    if m.matches_ignore_case(Some(host)) {
        return true;
    }
    match host.rsplit_once(':') {
        // Not the colons inside an IPv6 literal: "[::1]:80" has its port after ']'.
        Some((name, port))
            if !port.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit())
                && !name.ends_with(':') =>
        {
            m.matches_ignore_case(Some(name))
        }
        _ => false,
    }
}

fn condition_holds(c: &Condition, check: &Check<'_>) -> bool {
    let src = check.source;
    match (&c.key, &c.values) {
        (Key::SourceIp, Values::Ips(f)) => f.holds(|b| b.contains(src.ip)),
        (Key::DestinationIp, Values::Ips(f)) => {
            f.holds(|b| src.destination_ip.is_some_and(|ip| b.contains(ip)))
        }
        (Key::DestinationPort, Values::Ports(f)) => f.holds(|p| *p == check.port),
        (Key::SourceNamespace, Values::Strings(f)) => f.holds(|m| m.matches(src.namespace())),
        (Key::SourcePrincipal, Values::Strings(f)) => {
            f.holds(|m| m.matches(src.principal.as_deref()))
        }
        (Key::ConnectionSni, Values::Strings(f)) => f.holds(|m| m.matches(src.sni.as_deref())),
        (Key::Header(name), Values::Strings(f)) => match &check.http {
            Some(h) => header_holds(f, name, h),
            // TCP: only a DENY rule gets here; its HTTP parts are left out.
            None => true,
        },
        _ => false,
    }
}

/// Several values of one header are read joined by `,` (as Envoy's header matcher does), so an
/// ALLOW on `x: good` is not met by `x: good` plus `x: evil`. Bytes are matched as sent: a
/// non-UTF-8 byte cannot hide a value from a DENY.
fn header_holds(f: &Field<StringMatch>, name: &http::HeaderName, h: &HttpAttrs<'_>) -> bool {
    let mut all = h.headers.get_all(name).iter();
    let first = all.next();
    let joined;
    let value: Option<&[u8]> = match (first, all.next()) {
        (None, _) => None,
        (Some(v), None) => Some(v.as_bytes()),
        (Some(a), Some(b)) => {
            let mut buf = a.as_bytes().to_vec();
            for v in std::iter::once(b).chain(all) {
                buf.push(b',');
                buf.extend_from_slice(v.as_bytes());
            }
            joined = buf;
            Some(&joined)
        }
    };
    f.holds(|m| m.matches_bytes(value))
}
