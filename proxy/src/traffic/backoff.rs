//! Retry backoff: exponential from a base interval with full jitter, capped at ten times the
//! base (Envoy's `JitteredExponentialBackOffStrategy` defaults).
//!
//! Promise: the n-th retry (1-based) waits a uniformly random time in
//! `[0, min((2^n - 1) × base, 10 × base))`, so retries spread out instead of arriving together.

use std::time::Duration;

/// Envoy's and Istio's default base interval.
pub const DEFAULT_BASE: Duration = Duration::from_millis(25);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    base: Duration,
    max: Duration,
}

// === impl Backoff ===

impl Backoff {
    pub fn new(base: Duration) -> Self {
        Self {
            base,
            max: base * 10,
        }
    }

    pub fn base(&self) -> Duration {
        self.base
    }

    /// The upper bound (exclusive) of the wait before retry `n` (1-based).
    pub fn ceiling(&self, n: u32) -> Duration {
        // 2^n - 1 saturates long before it matters: the cap is 10 × base.
        let factor = 1u32.checked_shl(n.min(31)).map_or(u32::MAX, |f| f - 1);
        self.base.saturating_mul(factor.max(1)).min(self.max)
    }

    /// The wait before retry `n` (1-based), drawn from `rng`.
    pub fn delay(&self, n: u32, rng: &mut fastrand::Rng) -> Duration {
        let ceiling = self.ceiling(n).as_nanos().min(u64::MAX as u128) as u64;
        Duration::from_nanos(rng.u64(0..ceiling.max(1)))
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(DEFAULT_BASE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceiling_grows_exponentially_then_caps_at_ten_times_base() {
        let b = Backoff::default();
        let ms = |n| b.ceiling(n).as_millis();
        assert_eq!(
            [ms(1), ms(2), ms(3), ms(4), ms(5), ms(40)],
            [25, 75, 175, 250, 250, 250]
        );
    }

    #[test]
    fn delays_stay_below_the_ceiling_and_spread_over_it() {
        let b = Backoff::new(Duration::from_millis(100));
        let mut rng = fastrand::Rng::with_seed(7);
        for n in 1..6 {
            let ceiling = b.ceiling(n);
            let delays: Vec<_> = (0..2000).map(|_| b.delay(n, &mut rng)).collect();
            assert!(delays.iter().all(|d| *d < ceiling));
            // Full jitter: both the lowest and the highest tenth of the range are used.
            assert!(delays.iter().any(|d| *d < ceiling / 10), "retry {n}");
            assert!(delays.iter().any(|d| *d > ceiling * 9 / 10), "retry {n}");
        }
    }
}
