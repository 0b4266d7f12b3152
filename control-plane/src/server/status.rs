//! What the control plane knows about connected proxies (for `/debug/proxies`, metrics and
//! `sinewctl status`).

use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Clone, Debug, Default, Serialize)]
pub struct ProxyState {
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
}

/// Now, Unix seconds.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl ProxyState {
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

    pub fn snapshot(&self) -> Vec<ProxyState> {
        self.lock().values().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, ProxyState>> {
        self.proxies.lock().unwrap_or_else(|p| p.into_inner())
    }
}
