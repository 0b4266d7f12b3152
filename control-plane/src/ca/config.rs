//! What the CA may issue: trust domain, certificate lifetimes and the per-identity request rate,
//! plus the workload identity those certificates name.

use std::time::Duration;

use super::CaError;

/// The trust domain when none is configured (Istio's and Linkerd's default too).
pub const DEFAULT_TRUST_DOMAIN: &str = "cluster.local";
/// Workload certificate lifetime when the proxy does not ask for one: 24 h, renewed at half-life.
pub const DEFAULT_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// The longest workload certificate the CA signs, whatever the proxy asks: 7 days.
pub const DEFAULT_MAX_TTL: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// The shortest workload certificate: anything shorter would expire before it is installed.
pub const MIN_TTL: Duration = Duration::from_secs(60);
/// Certificate requests one identity may make back to back.
pub const DEFAULT_BURST: u32 = 10;
/// Sustained certificate requests per minute per identity once the burst is spent.
pub const DEFAULT_PER_MINUTE: u32 = 30;

/// How the CA issues; validated by [`CaConfig::validate`] when a [`Ca`](super::Ca) is built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaConfig {
    /// The SPIFFE trust domain, e.g. `cluster.local`.
    pub trust_domain: String,
    /// Lifetime of a workload certificate when the request names none.
    pub default_ttl: Duration,
    /// Upper bound on any requested lifetime.
    pub max_ttl: Duration,
    /// Per-identity request rate.
    pub rate: RateLimit,
}

/// A token bucket per identity: `burst` requests at once, refilled at `per_minute`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    pub burst: u32,
    pub per_minute: u32,
}

/// A workload as the verified credential names it; the only source of a certificate's identity.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct WorkloadId {
    pub namespace: String,
    pub service_account: String,
}

// === impl CaConfig ===

impl Default for CaConfig {
    fn default() -> Self {
        Self {
            trust_domain: DEFAULT_TRUST_DOMAIN.to_string(),
            default_ttl: DEFAULT_TTL,
            max_ttl: DEFAULT_MAX_TTL,
            rate: RateLimit::default(),
        }
    }
}

impl CaConfig {
    /// Checks the config can work; [`Ca`](super::Ca) constructors call this, so a `Ca` never runs
    /// with a config that would fail at issue time.
    pub fn validate(&self) -> Result<(), CaError> {
        let bad = |msg: String| Err(CaError::InvalidConfig(msg));
        if let Err(reason) = check_trust_domain(&self.trust_domain) {
            return bad(format!(
                "trust domain {:?} {reason}; use lowercase letters, digits, '.', '-' and '_' \
                 (e.g. \"cluster.local\")",
                self.trust_domain
            ));
        }
        if self.max_ttl < MIN_TTL {
            return bad(format!(
                "max_ttl {:?} is below the minimum certificate lifetime {MIN_TTL:?}; raise it",
                self.max_ttl
            ));
        }
        if self.default_ttl < MIN_TTL || self.default_ttl > self.max_ttl {
            return bad(format!(
                "default_ttl {:?} must lie between {MIN_TTL:?} and max_ttl {:?}",
                self.default_ttl, self.max_ttl
            ));
        }
        if self.rate.burst == 0 || self.rate.per_minute == 0 {
            return bad(format!(
                "rate limit burst {} / per_minute {} would refuse every request; both must be \
                 at least 1",
                self.rate.burst, self.rate.per_minute
            ));
        }
        Ok(())
    }

    /// The lifetime to issue for a request: none or zero means the default, anything else is
    /// clamped to `[MIN_TTL, max_ttl]`.
    pub fn effective_ttl(&self, requested: Option<Duration>) -> Duration {
        match requested {
            None => self.default_ttl,
            Some(ttl) if ttl.is_zero() => self.default_ttl,
            Some(ttl) => ttl.clamp(MIN_TTL, self.max_ttl),
        }
    }
}

// === impl RateLimit ===

impl Default for RateLimit {
    fn default() -> Self {
        Self {
            burst: DEFAULT_BURST,
            per_minute: DEFAULT_PER_MINUTE,
        }
    }
}

// === impl WorkloadId ===

impl WorkloadId {
    pub fn new(namespace: impl Into<String>, service_account: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            service_account: service_account.into(),
        }
    }

    /// `spiffe://<trust_domain>/ns/<namespace>/sa/<service_account>`.
    pub fn spiffe_id(&self, trust_domain: &str) -> String {
        format!(
            "spiffe://{trust_domain}/ns/{}/sa/{}",
            self.namespace, self.service_account
        )
    }

    /// Refuses names that could smuggle extra path segments (`a/sa/b`) or characters a URI SAN
    /// cannot carry into the SPIFFE id. Namespaces are DNS labels and service accounts DNS
    /// subdomains, as in Kubernetes.
    pub fn validate(&self) -> Result<(), CaError> {
        check_k8s_name("namespace", &self.namespace, 63, false)?;
        check_k8s_name("service account", &self.service_account, 253, true)
    }
}

fn check_k8s_name(
    field: &'static str,
    value: &str,
    max_len: usize,
    dots: bool,
) -> Result<(), CaError> {
    let fail = |reason| {
        Err(CaError::InvalidIdentity {
            field,
            value: value.to_string(),
            reason,
        })
    };
    if value.is_empty() {
        return fail("it is empty");
    }
    if value.len() > max_len {
        return fail("it is too long");
    }
    let allowed =
        |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || (dots && b == b'.');
    if !value.bytes().all(allowed) {
        return fail("it contains a character Kubernetes does not allow in this name");
    }
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    if !value.starts_with(alnum) || !value.ends_with(alnum) {
        return fail("it must start and end with a letter or digit");
    }
    Ok(())
}

/// SPIFFE trust domains: lowercase letters, digits, '.', '-', '_', at most 255 bytes.
fn check_trust_domain(td: &str) -> Result<(), &'static str> {
    if td.is_empty() {
        return Err("is empty");
    }
    if td.len() > 255 {
        return Err("is longer than 255 bytes");
    }
    let allowed =
        |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_');
    if !td.bytes().all(allowed) {
        return Err("contains a character SPIFFE does not allow");
    }
    Ok(())
}
