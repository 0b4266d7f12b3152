//! The CA as a running control plane holds it: one [`SharedCa`] that the certificate service
//! and the serving certificate read on every use, so a root rotation swaps the signing CA
//! without a restart; and the [`TrustBundle`] it publishes, which may hold more roots than the
//! one it signs under (old and new, while a rotation is under way).

use std::sync::{Arc, RwLock};

use super::Ca;

/// The roots proxies must trust, and which of them certificates are issued under now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustBundle {
    /// PEM roots.
    pub roots: Vec<String>,
    /// Hex SHA-256 of the DER of the root the CA signs under (empty: not said).
    pub signing_root_sha256: String,
}

/// The signing CA, swappable at run time. Readers take an `Arc<Ca>` and never hold the lock.
#[derive(Debug)]
pub struct SharedCa {
    current: RwLock<Arc<Ca>>,
}

// === impl TrustBundle ===

impl TrustBundle {
    /// The bundle of a CA on its own: its roots, naming its signing root.
    pub fn of(ca: &Ca) -> Self {
        Self {
            roots: ca.trust_bundle(),
            signing_root_sha256: ca.signing_root_sha256().to_string(),
        }
    }

    /// The version proxies ACK: it changes with the roots and with the signing root, so a bundle
    /// that only names a new signing root is pushed again.
    pub fn version(&self) -> String {
        let mut bytes = self.roots.join("").into_bytes();
        bytes.push(b'|');
        bytes.extend_from_slice(self.signing_root_sha256.as_bytes());
        crate::compile::version_of(&bytes)
    }

    /// The roots as one PEM text (what `trust-bundle.pem` and the ConfigMap hold).
    pub fn pem(&self) -> String {
        self.roots.join("\n")
    }

    /// Hex SHA-256 of each root, in order.
    pub fn root_sha256s(&self) -> Vec<String> {
        super::pem_sha256s(&self.pem())
    }
}

impl From<Vec<String>> for TrustBundle {
    fn from(roots: Vec<String>) -> Self {
        Self {
            roots,
            signing_root_sha256: String::new(),
        }
    }
}

// === impl SharedCa ===

impl SharedCa {
    pub fn new(ca: Ca) -> Arc<Self> {
        Arc::new(Self {
            current: RwLock::new(Arc::new(ca)),
        })
    }

    /// The CA that signs now.
    pub fn current(&self) -> Arc<Ca> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// From now on `ca` signs; requests already signing finish with the old one.
    pub fn replace(&self, ca: Arc<Ca>) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = ca;
    }
}
