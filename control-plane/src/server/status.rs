//! What the control plane knows about connected proxies (for `/debug/proxies`, metrics and
//! `sinewctl status`).

use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Clone, Debug, Default, Serialize)]
pub struct ProxyState {
    /// The verified caller, `namespace/service-account`.
    pub identity: String,
    pub pod: String,
    pub subscriptions: usize,
    pub generation: u64,
    pub acks: u64,
    pub nacks: u64,
    pub last_nack: Option<String>,
    /// When the discovery stream opened, Unix seconds.
    pub connected_at_unix: u64,
    /// When the proxy last answered a push (ACK or NACK), Unix seconds.
    pub last_answer_unix: Option<u64>,
    /// The trust-bundle version the proxy holds: ACKed, or named in its hello.
    pub trust_bundle_version: Option<String>,
}

/// Who a proxy is for root rotation's bookkeeping: its pod when the credential names one, else
/// its service account (all replicas then count as one, on their latest certificate).
pub fn proxy_key(namespace: &str, service_account: &str, pod: &str) -> String {
    if pod.is_empty() {
        format!("{namespace}/sa:{service_account}")
    } else {
        format!("{namespace}/{pod}")
    }
}

/// Now, Unix seconds.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl ProxyState {
    /// The key of [`proxy_key`].
    fn key(&self) -> String {
        let (namespace, sa) = self
            .identity
            .split_once('/')
            .unwrap_or(("", &self.identity));
        proxy_key(namespace, sa, &self.pod)
    }

    /// `namespace/pod` (or the identity without a pod), for status lines.
    fn display(&self) -> String {
        match self.identity.split_once('/') {
            Some((namespace, _)) if !self.pod.is_empty() => format!("{namespace}/{}", self.pod),
            _ => self.identity.clone(),
        }
    }

    pub fn new(identity: &str, pod: &str) -> Self {
        Self {
            identity: identity.into(),
            pod: pod.into(),
            connected_at_unix: unix_now(),
            ..Default::default()
        }
    }
}

#[derive(Default)]
pub struct Status {
    next: AtomicU64,
    proxies: Mutex<BTreeMap<u64, ProxyState>>,
    pub certificates_issued: AtomicU64,
    pub certificates_refused: AtomicU64,
    /// The signing root (hex SHA-256) of the latest certificate issued to each proxy, by
    /// [`proxy_key`]. Entries of pods gone stay (bounded by the pods that ever asked); only
    /// connected proxies are consulted.
    issued_under: Mutex<BTreeMap<String, String>>,
}

// === impl Status ===

impl Status {
    pub fn connect(&self, state: ProxyState) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(id, state);
        id
    }

    pub fn disconnect(&self, id: u64) {
        self.lock().remove(&id);
    }

    pub fn update(&self, id: u64, f: impl FnOnce(&mut ProxyState)) {
        if let Some(s) = self.lock().get_mut(&id) {
            f(s);
        }
    }

    pub fn connected(&self) -> usize {
        self.lock().len()
    }

    pub fn nacks(&self) -> u64 {
        self.lock().values().map(|s| s.nacks).sum()
    }

    /// Notes that the proxy `key` ([`proxy_key`]) now holds a certificate under `root_sha256`.
    pub fn record_issued(&self, key: String, root_sha256: &str) {
        self.issued_under
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, root_sha256.to_string());
    }

    /// Connected proxies (as `namespace/pod`) that do not hold trust-bundle `version`.
    pub fn without_bundle(&self, version: &str) -> Vec<String> {
        self.lock()
            .values()
            .filter(|s| s.trust_bundle_version.as_deref() != Some(version))
            .map(ProxyState::display)
            .collect()
    }

    /// Connected proxies whose latest certificate was not issued under `root_sha256`.
    pub fn not_issued_under(&self, root_sha256: &str) -> Vec<String> {
        let issued = self
            .issued_under
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        self.lock()
            .values()
            .filter(|s| issued.get(&s.key()).map(String::as_str) != Some(root_sha256))
            .map(ProxyState::display)
            .collect()
    }

    pub fn snapshot(&self) -> Vec<ProxyState> {
        self.lock().values().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, ProxyState>> {
        self.proxies.lock().unwrap_or_else(|p| p.into_inner())
    }
}
