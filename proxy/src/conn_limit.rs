//! The per-proxy connection limit (`limits.maxConnections`).
//!
//! Promise: at most `max` [`Permit`]s exist at once, across every listener; a permit is given
//! back when dropped (the connection's task ended). Taking and returning one is an atomic add
//! each, never a lock, so the accept path stays cheap.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

pub struct ConnLimit {
    open: AtomicUsize,
    max: usize,
}

/// One open connection's share of the limit.
pub struct Permit(Arc<ConnLimit>);

// === impl ConnLimit ===

impl ConnLimit {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            open: AtomicUsize::new(0),
            max,
        })
    }

    /// A permit, or None when `max` connections are already open.
    pub fn try_acquire(self: &Arc<Self>) -> Option<Permit> {
        // Add first, undo if over: one atomic op on the common path instead of a CAS loop.
        if self.open.fetch_add(1, Ordering::AcqRel) >= self.max {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Permit(self.clone()))
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_past_the_limit_and_admits_again_once_one_is_returned() {
        let limit = ConnLimit::new(2);
        let a = limit.try_acquire().expect("first");
        let _b = limit.try_acquire().expect("second");
        assert!(limit.try_acquire().is_none(), "third is over the limit");
        assert!(limit.try_acquire().is_none(), "a refusal takes nothing");
        drop(a);
        assert!(
            limit.try_acquire().is_some(),
            "a returned permit admits one more"
        );
    }
}
